// SPDX-License-Identifier: MIT
/*
 * Float convolution forward without a column matrix, for CPUs with FMA (AVX2 or AVX-512).
 *
 * Why: with the autoencoder's few channels, im2col plus OpenBLAS (which packs the column matrix
 * once more) spend as long moving data as multiplying it. Here the input is copied once into
 * zero-padded planes, one per channel and stride phase (the pixels s uy + py, s ux + px), so
 * that every kernel tap of every output row reads a contiguous run of one plane: row k = (c, ki,
 * kj) of the GEMM's B is a plane seen from one offset, and a register tile of 8 output channels
 * x 32 output columns is summed straight from them, then gets its bias and the rectifier an
 * inference context fused into the layer, and is stored. Output columns run over the plane
 * width, which is the output width plus (kw - 1) / s: those few columns per row are computed
 * and dropped.
 *
 * Each output is one chain of fused multiply-adds in the order of k, in both kernels, so AVX2
 * and AVX-512 give the same bits. The results differ from the im2col + sgemm path (conv.c, used
 * where neither is available) in the last bits only, by summation order.
 */
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FC_X86 1
#endif

#define FMR 8  /* output channels per tile */
#define FNR 32 /* output columns per tile */

int nn_fkern_supported(enum nn_fkern k)
{
    switch (k) {
#ifdef FC_X86
    case NN_FK_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NN_FK_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

enum nn_fkern nn_fkern_best(void)
{
    if (nn_fkern_supported(NN_FK_AVX512))
        return NN_FK_AVX512;
    if (nn_fkern_supported(NN_FK_AVX2))
        return NN_FK_AVX2;
    return NN_FK_NONE;
}

/* Planes of one image: phases sy x sx of each channel, hu x wu each. */
struct fplan {
    uint32_t s, sy, sx, hu, wu;
    size_t plane, k, offs; /* floats per plane; taps; floats reserved for the offsets */
};

static struct fplan fplan(const struct nn_geom *g)
{
    struct fplan p;
    p.s = g->stride;
    p.sy = g->stride < g->kh ? g->stride : g->kh;
    p.sx = g->stride < g->kw ? g->stride : g->kw;
    p.hu = g->oh + (g->kh - 1) / g->stride;
    p.wu = g->ow + (g->kw - 1) / g->stride;
    p.plane = (size_t)p.hu * p.wu;
    p.k = (size_t)g->c * g->kh * g->kw;
    p.offs = nn_q_round(p.k * sizeof(size_t) / sizeof(float) + 1, 16);
    return p;
}

size_t nn_fconv_scratch(const struct nn_geom *g)
{
    struct fplan p = fplan(g);
    size_t n = p.plane;
    if (nn_mul(&n, (size_t)g->c * p.sy * p.sx) ||
        __builtin_add_overflow(n, p.offs + p.wu + FNR, &n))
        return 0;
    return n;
}

/* The columns ux of phase px whose pixel s ux + px - pad lies inside a row: [*lo, *hi). */
static void phase_cols(const struct nn_geom *g, const struct fplan *p, uint32_t px, long long *lo,
                       long long *hi)
{
    long long s = p->s, pad = g->pad;
    long long l = pad > px ? (pad - px + s - 1) / s : 0;
    long long h = ((long long)g->w + pad - px + s - 1) / s;
    h = h < p->wu ? h : p->wu;
    *lo = l < h ? l : h;
    *hi = h;
}

/* Row iy of x split into the sx phase rows dst[px] (wu columns each). */
static void split_row(const struct nn_geom *g, const struct fplan *p, const float *xr,
                      float *const *dst)
{
    long long s = p->s, pad = g->pad, u0 = 0, u1 = 0;
#ifdef FC_X86
    /* Strides 2 and 4: four columns of every phase from one run of the row, by shuffles (SSE2
     * is part of x86-64), where the run lies inside the row and the columns inside the plane. */
    if ((s == 2 || s == 4) && p->sx == s) {
        u0 = (pad + s - 1) / s;
        for (u1 = u0; s * (u1 + 4) - pad <= (long long)g->w && u1 + 4 <= p->wu; u1 += 4) {
            const float *src = xr + s * u1 - pad;
            if (s == 2) {
                __m128 a = _mm_loadu_ps(src), b = _mm_loadu_ps(src + 4);
                _mm_storeu_ps(dst[0] + u1, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
                _mm_storeu_ps(dst[1] + u1, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
            } else {
                __m128 a = _mm_loadu_ps(src), b = _mm_loadu_ps(src + 4);
                __m128 c = _mm_loadu_ps(src + 8), d = _mm_loadu_ps(src + 12);
                _MM_TRANSPOSE4_PS(a, b, c, d);
                _mm_storeu_ps(dst[0] + u1, a);
                _mm_storeu_ps(dst[1] + u1, b);
                _mm_storeu_ps(dst[2] + u1, c);
                _mm_storeu_ps(dst[3] + u1, d);
            }
        }
    }
#endif
    for (uint32_t px = 0; px < p->sx; px++) {
        long long lo, hi;
        phase_cols(g, p, px, &lo, &hi);
        float *row = dst[px];
        const float *src = xr + px - pad;
        memset(row, 0, (size_t)lo * sizeof(float));
        if (s == 1) {
            memcpy(row + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
        } else {
            /* Around the columns done by shuffles, if any. */
            long long m0 = u0 < hi ? u0 : hi, m1 = u1 > lo ? u1 : lo;
            for (long long u = lo; u < (u1 > u0 ? m0 : hi); u++)
                row[u] = src[s * u];
            for (long long u = u1 > u0 ? m1 : hi; u < hi; u++)
                row[u] = src[s * u];
        }
        memset(row + hi, 0, (size_t)(p->wu - hi) * sizeof(float));
    }
}

/* Plane (c, py, px), row uy, column ux holds x[c][s uy + py - pad][s ux + px - pad] (0 outside),
 * then zeros for what the last tiles read past the end. */
static void build_planes(const struct nn_geom *g, const struct fplan *p, const float *x, float *pl)
{
    long long s = p->s, pad = g->pad;
    float *dst[NN_MAX_KERNEL];
    for (uint32_t c = 0; c < g->c; c++)
        for (uint32_t py = 0; py < p->sy; py++)
            for (uint32_t uy = 0; uy < p->hu; uy++) {
                long long iy = s * uy + py - pad;
                for (uint32_t px = 0; px < p->sx; px++)
                    dst[px] = pl + (((size_t)c * p->sy + py) * p->sx + px) * p->plane +
                              (size_t)uy * p->wu;
                if (iy < 0 || iy >= g->h) {
                    for (uint32_t px = 0; px < p->sx; px++)
                        memset(dst[px], 0, p->wu * sizeof(float));
                    continue;
                }
                split_row(g, p, x + ((size_t)c * g->h + (size_t)iy) * g->w, dst);
            }
    memset(pl + (size_t)g->c * p->sy * p->sx * p->plane, 0, (p->wu + FNR) * sizeof(float));
}

/* One tile: rows [0, rows) of A (lda apart; rows past it repeat the last, results unused),
 * B row k at b + off[k]; out gets act(sum + bias). */
typedef void (*ftile_fn)(size_t k, const float *a, size_t lda, uint32_t rows, const float *b,
                         const size_t *off, const float *bias, int act, float slope,
                         float out[FMR][FNR]);

#ifdef FC_X86
__attribute__((target("avx512f"))) static void
tile_avx512(size_t k, const float *a, size_t lda, uint32_t rows, const float *b, const size_t *off,
            const float *bias, int act, float slope, float out[FMR][FNR])
{
    const float *ar[FMR];
    __m512 c[FMR][2];
    for (uint32_t i = 0; i < FMR; i++) {
        ar[i] = a + (size_t)(i < rows ? i : rows - 1) * lda;
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    }
    for (size_t kk = 0; kk < k; kk++) {
        const float *bp = b + off[kk];
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        for (uint32_t i = 0; i < FMR; i++) {
            __m512 av = _mm512_set1_ps(ar[i][kk]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
        }
    }
    __m512 sl = _mm512_set1_ps(slope), z = _mm512_setzero_ps();
    for (uint32_t i = 0; i < FMR; i++)
        for (int h = 0; h < 2; h++) {
            __m512 v = c[i][h];
            if (bias)
                v = _mm512_add_ps(v, _mm512_set1_ps(bias[i < rows ? i : rows - 1]));
            if (act)
                v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, z, _CMP_LE_OQ), v, sl);
            _mm512_storeu_ps(&out[i][16 * h], v);
        }
}

__attribute__((target("avx2,fma"))) static void tile_avx2(size_t k, const float *a, size_t lda,
                                                          uint32_t rows, const float *b,
                                                          const size_t *off, const float *bias,
                                                          int act, float slope, float out[FMR][FNR])
{
    /* Sixteen registers: four quarter tiles of 4 x 16 (eight sums, two B, one A). */
    __m256 sl = _mm256_set1_ps(slope), z = _mm256_setzero_ps();
    for (uint32_t r0 = 0; r0 < FMR; r0 += 4)
        for (uint32_t j0 = 0; j0 < FNR; j0 += 16) {
            const float *ar[4];
            __m256 c[4][2];
            for (uint32_t i = 0; i < 4; i++) {
                ar[i] = a + (size_t)(r0 + i < rows ? r0 + i : rows - 1) * lda;
                c[i][0] = c[i][1] = _mm256_setzero_ps();
            }
            for (size_t kk = 0; kk < k; kk++) {
                const float *bp = b + off[kk] + j0;
                __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
                for (uint32_t i = 0; i < 4; i++) {
                    __m256 av = _mm256_broadcast_ss(ar[i] + kk);
                    c[i][0] = _mm256_fmadd_ps(av, b0, c[i][0]);
                    c[i][1] = _mm256_fmadd_ps(av, b1, c[i][1]);
                }
            }
            for (uint32_t i = 0; i < 4; i++)
                for (int h = 0; h < 2; h++) {
                    __m256 v = c[i][h];
                    uint32_t r = r0 + i < rows ? r0 + i : rows - 1;
                    if (bias)
                        v = _mm256_add_ps(v, _mm256_set1_ps(bias[r]));
                    if (act)
                        v = _mm256_blendv_ps(v, _mm256_mul_ps(v, sl),
                                             _mm256_cmp_ps(v, z, _CMP_LE_OQ));
                    _mm256_storeu_ps(&out[r0 + i][j0 + 8 * h], v);
                }
        }
}
#endif

void nn_fconv(enum nn_fkern kern, const struct nn_geom *g, uint32_t co, const float *w,
              const float *bias, int act, float slope, const float *x, float *y, float *scratch)
{
    struct fplan p = fplan(g);
    size_t *off = (size_t *)(void *)scratch;
    float *pl = scratch + p.offs;
    ftile_fn tile = NULL;
#ifdef FC_X86
    tile = kern == NN_FK_AVX512 ? tile_avx512 : tile_avx2;
#endif
    (void)kern;
    build_planes(g, &p, x, pl);
    for (uint32_t c = 0; c < g->c; c++)
        for (uint32_t ki = 0; ki < g->kh; ki++)
            for (uint32_t kj = 0; kj < g->kw; kj++)
                off[((size_t)c * g->kh + ki) * g->kw + kj] =
                    (((size_t)c * p.sy + ki % p.s) * p.sx + kj % p.s) * p.plane +
                    (size_t)(ki / p.s) * p.wu + kj / p.s;
    size_t n = (size_t)g->oh * p.wu, plane_out = (size_t)g->oh * g->ow;
    float out[FMR][FNR];
    for (size_t j0 = 0; j0 < n; j0 += FNR) {
        size_t cols = n - j0 < FNR ? n - j0 : FNR;
        for (uint32_t r0 = 0; r0 < co; r0 += FMR) {
            uint32_t rows = co - r0 < FMR ? co - r0 : FMR;
            tile(p.k, w + (size_t)r0 * p.k, p.k, rows, pl + j0, off, bias ? bias + r0 : NULL, act,
                 slope, out);
            /* Runs of valid columns: output row j / wu, columns j % wu < ow. */
            for (size_t j = j0; j < j0 + cols;) {
                size_t oy = j / p.wu, ox = j % p.wu, end = j + (p.wu - ox);
                end = end < j0 + cols ? end : j0 + cols;
                if (ox < g->ow) {
                    size_t len = (end - j < g->ow - ox ? end - j : g->ow - ox);
                    for (uint32_t i = 0; i < rows; i++)
                        memcpy(y + (r0 + i) * plane_out + oy * g->ow + ox, &out[i][j - j0],
                               len * sizeof(float));
                }
                j = end;
            }
        }
    }
}
