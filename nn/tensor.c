// SPDX-License-Identifier: MIT
/*
 * Tensor descriptors, the deterministic PRNG and the OpenBLAS thread setting.
 *
 * The PRNG favours reproducibility over speed or quality beyond what training needs: integer
 * arithmetic only (xoshiro256**, splitmix64 seeding), and floats made from 24 random bits, so a
 * seed gives bit-identical initial weights on every machine and libm.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>

#include "nn/nn_int.h"

void nn_tensor_packed(struct nn_tensor *t, float *data, uint32_t n, uint32_t c, uint32_t h,
                      uint32_t w)
{
    t->data = data;
    t->n = n;
    t->c = c;
    t->h = h;
    t->w = w;
    t->sw = 1;
    t->sh = (ptrdiff_t)w;
    t->sc = (ptrdiff_t)h * (ptrdiff_t)w;
    t->sn = t->sc * (ptrdiff_t)c;
}

size_t nn_tensor_count(const struct nn_tensor *t)
{
    return (size_t)t->n * t->c * t->h * t->w;
}

int nn_tensor_copy(struct nn_tensor *dst, const struct nn_tensor *src)
{
    if (!dst || !src || !dst->data || !src->data || dst->n != src->n || dst->c != src->c ||
        dst->h != src->h || dst->w != src->w)
        return -EINVAL;
    for (uint32_t n = 0; n < src->n; n++)
        for (uint32_t c = 0; c < src->c; c++)
            for (uint32_t h = 0; h < src->h; h++) {
                const float *s = nn_tensor_at(src, n, c, h, 0);
                float *d = nn_tensor_at(dst, n, c, h, 0);
                if (src->sw == 1 && dst->sw == 1) {
                    for (uint32_t w = 0; w < src->w; w++)
                        d[w] = s[w];
                } else {
                    for (uint32_t w = 0; w < src->w; w++)
                        d[(ptrdiff_t)w * dst->sw] = s[(ptrdiff_t)w * src->sw];
                }
            }
    return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void nn_rng_seed(struct nn_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t nn_rng_next(struct nn_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float nn_rng_uniform(struct nn_rng *r)
{
    return (float)(nn_rng_next(r) >> 40) * 0x1p-24f;
}

uint32_t nn_rng_below(struct nn_rng *r, uint32_t bound)
{
    /* Lemire's multiply-and-reject: exact, no division in the common case. */
    uint64_t m = (nn_rng_next(r) >> 32) * bound;
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while (low < threshold) {
            m = (nn_rng_next(r) >> 32) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void nn_rng_shuffle(struct nn_rng *r, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = nn_rng_below(r, (uint32_t)(i > UINT32_MAX ? UINT32_MAX : i));
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void nn_init_uniform(float *w, size_t count, double gain, size_t fan_in, struct nn_rng *r)
{
    /* sqrt is correctly rounded (IEEE 754), so the bound is the same everywhere. */
    float b = (float)sqrt(gain / (double)(fan_in ? fan_in : 1));
    for (size_t i = 0; i < count; i++)
        w[i] = (2.0f * nn_rng_uniform(r) - 1.0f) * b;
}

void nn_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int nn_threads(void)
{
    return openblas_get_num_threads();
}
