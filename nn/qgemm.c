// SPDX-License-Identifier: MIT
/*
 * Integer GEMM for the exact inference path: int16 x int16 -> int32, with the packing and
 * im2col that feed it.
 *
 * B is stored as pairs of rows interleaved (k, k+1 side by side for each column), the layout the
 * x86 multiply-add of 16-bit pairs (pmaddwd) consumes directly: one instruction does two
 * multiply-adds per 32-bit lane, with A's pair broadcast. A micro-kernel keeps a 4 x 32 tile
 * of int32 sums in registers for the whole depth and hands it to an epilogue (bias,
 * requantisation, saturation), so accumulators never go to memory. The trade-off is three
 * copies of the kernel (plain C, AVX2, AVX-512BW) chosen at run time; since integer sums are
 * exact in any order, they cannot disagree, and the tests check that they don't.
 */
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_Q_X86 1
#endif

typedef void (*qkern_fn)(size_t k2, const int16_t *a, size_t lda, const int16_t *b, size_t ldb,
                         int32_t acc[NN_QMR][NN_QNR]);

static inline int32_t pair_at(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* Portable: the same pair products, written so that the compiler can vectorise the column loop. */
static void kern_c(size_t k2, const int16_t *a, size_t lda, const int16_t *b, size_t ldb,
                   int32_t acc[NN_QMR][NN_QNR])
{
    memset(acc, 0, sizeof(int32_t) * NN_QMR * NN_QNR);
    for (size_t kk = 0; kk < k2; kk++) {
        const int16_t *bp = b + kk * ldb;
        for (int i = 0; i < NN_QMR; i++) {
            int32_t a0 = a[i * lda + 2 * kk], a1 = a[i * lda + 2 * kk + 1];
            for (int j = 0; j < NN_QNR; j++)
                acc[i][j] += a0 * bp[2 * j] + a1 * bp[2 * j + 1];
        }
    }
}

#ifdef NN_Q_X86
__attribute__((target("avx2"))) static void kern_avx2(size_t k2, const int16_t *a, size_t lda,
                                                      const int16_t *b, size_t ldb,
                                                      int32_t acc[NN_QMR][NN_QNR])
{
    /* Two half tiles of 4 x 16: eight accumulators, two B vectors, one broadcast. */
    for (int half = 0; half < 2; half++) {
        __m256i c[NN_QMR][2];
        for (int i = 0; i < NN_QMR; i++)
            c[i][0] = c[i][1] = _mm256_setzero_si256();
        const int16_t *bh = b + 32 * half;
        for (size_t kk = 0; kk < k2; kk++) {
            const int16_t *bp = bh + kk * ldb;
            __m256i b0 = _mm256_loadu_si256((const __m256i *)bp);
            __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + 16));
            for (int i = 0; i < NN_QMR; i++) {
                __m256i av = _mm256_set1_epi32(pair_at(a + i * lda + 2 * kk));
                c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(av, b0));
                c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(av, b1));
            }
        }
        for (int i = 0; i < NN_QMR; i++) {
            _mm256_storeu_si256((__m256i *)&acc[i][16 * half], c[i][0]);
            _mm256_storeu_si256((__m256i *)&acc[i][16 * half + 8], c[i][1]);
        }
    }
}

__attribute__((target("avx512f,avx512bw"))) static void kern_avx512(size_t k2, const int16_t *a,
                                                                    size_t lda, const int16_t *b,
                                                                    size_t ldb,
                                                                    int32_t acc[NN_QMR][NN_QNR])
{
    __m512i c[NN_QMR][2];
    for (int i = 0; i < NN_QMR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_si512();
    for (size_t kk = 0; kk < k2; kk++) {
        const int16_t *bp = b + kk * ldb;
        __m512i b0 = _mm512_loadu_si512((const void *)bp);
        __m512i b1 = _mm512_loadu_si512((const void *)(bp + 32));
        for (int i = 0; i < NN_QMR; i++) {
            __m512i av = _mm512_set1_epi32(pair_at(a + i * lda + 2 * kk));
            c[i][0] = _mm512_add_epi32(c[i][0], _mm512_madd_epi16(av, b0));
            c[i][1] = _mm512_add_epi32(c[i][1], _mm512_madd_epi16(av, b1));
        }
    }
    for (int i = 0; i < NN_QMR; i++) {
        _mm512_storeu_si512((void *)&acc[i][0], c[i][0]);
        _mm512_storeu_si512((void *)&acc[i][16], c[i][1]);
    }
}
#endif

int nn_qkern_supported(enum nn_qkern k)
{
    switch (k) {
    case NN_QK_C:
        return 1;
#ifdef NN_Q_X86
    case NN_QK_AVX2:
        return __builtin_cpu_supports("avx2");
    case NN_QK_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
    default:
        return 0;
    }
}

enum nn_qkern nn_qkern_best(void)
{
    if (nn_qkern_supported(NN_QK_AVX512))
        return NN_QK_AVX512;
    if (nn_qkern_supported(NN_QK_AVX2))
        return NN_QK_AVX2;
    return NN_QK_C;
}

static qkern_fn kern_fn(enum nn_qkern k)
{
#ifdef NN_Q_X86
    if (k == NN_QK_AVX512)
        return kern_avx512;
    if (k == NN_QK_AVX2)
        return kern_avx2;
#endif
    (void)k;
    return kern_c;
}

void nn_qgemm(enum nn_qkern kern, uint32_t m, uint32_t k, uint32_t n, const int16_t *a,
              const int16_t *b, size_t ldb, const struct nn_qepi *e)
{
    qkern_fn f = kern_fn(kern);
    size_t lda = nn_q_round(k, 2), k2 = lda / 2;
    int32_t acc[NN_QMR][NN_QNR];
    for (uint32_t n0 = 0; n0 < n; n0 += NN_QNR) {
        uint32_t nn = n - n0 < NN_QNR ? n - n0 : NN_QNR;
        for (uint32_t m0 = 0; m0 < m; m0 += NN_QMR) {
            uint32_t mm = m - m0 < NN_QMR ? m - m0 : NN_QMR;
            f(k2, a + (size_t)m0 * lda, lda, b + 2 * (size_t)n0, ldb, acc);
            for (uint32_t i = 0; i < mm; i++) {
                uint32_t row = m0 + i;
                if (e->c) {
                    int32_t *c = e->c + (ptrdiff_t)row * e->sm + (ptrdiff_t)n0 * e->sn;
                    for (uint32_t j = 0; j < nn; j++)
                        c[(ptrdiff_t)j * e->sn] = acc[i][j];
                    continue;
                }
                int16_t *y = e->y + (ptrdiff_t)row * e->sm + (ptrdiff_t)n0 * e->sn;
                if (!e->chan_n) {
                    size_t ch = e->uniform ? 0 : row;
                    int32_t bias = e->bias ? e->bias[row] : 0, mu = e->mult[ch], sh = e->shift[ch];
                    for (uint32_t j = 0; j < nn; j++)
                        y[(ptrdiff_t)j * e->sn] =
                            (int16_t)nn_q_requant((int64_t)acc[i][j] + bias, mu, sh, e->lo, e->hi);
                } else {
                    for (uint32_t j = 0; j < nn; j++) {
                        size_t col = n0 + j, ch = e->uniform ? 0 : col;
                        int32_t bias = e->bias ? e->bias[col] : 0;
                        y[(ptrdiff_t)j * e->sn] = (int16_t)nn_q_requant(
                            (int64_t)acc[i][j] + bias, e->mult[ch], e->shift[ch], e->lo, e->hi);
                    }
                }
            }
        }
    }
}

/* dst[2 j] = r0[j], dst[2 j + 1] = r1[j] for j < n. */
static void interleave(const int16_t *r0, const int16_t *r1, size_t n, int16_t *dst)
{
    size_t j = 0;
#ifdef NN_Q_X86
    /* SSE2 is part of x86-64: no run-time check needed. */
    for (; j + 8 <= n; j += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(r0 + j));
        __m128i b = _mm_loadu_si128((const __m128i *)(r1 + j));
        _mm_storeu_si128((__m128i *)(dst + 2 * j), _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128((__m128i *)(dst + 2 * j + 8), _mm_unpackhi_epi16(a, b));
    }
#endif
    for (; j < n; j++) {
        dst[2 * j] = r0[j];
        dst[2 * j + 1] = r1[j];
    }
}

void nn_qpack(const int16_t *src, ptrdiff_t sk, ptrdiff_t sn, uint32_t k, uint32_t n, int16_t *b,
              size_t ldb)
{
    size_t k2 = nn_q_round(k, 2) / 2;
    for (size_t kk = 0; kk < k2; kk++) {
        int16_t *row = b + kk * ldb;
        int odd = 2 * kk + 1 < k;
        const int16_t *s0 = src + (ptrdiff_t)(2 * kk) * sk, *s1 = odd ? s0 + sk : s0;
        if (sn == 1 && odd) {
            interleave(s0, s1, n, row);
        } else {
            for (uint32_t j = 0; j < n; j++) {
                row[2 * j] = s0[(ptrdiff_t)j * sn];
                row[2 * j + 1] = odd ? s1[(ptrdiff_t)j * sn] : 0;
            }
        }
        memset(row + 2 * (size_t)n, 0, (ldb - 2 * (size_t)n) * sizeof(int16_t));
    }
}

/* Row (ci, ki, kj) of the column matrix for output rows [oy0, oy1). */
static void col_row(const struct nn_geom *g, const int16_t *x, uint32_t r, uint32_t oy0,
                    uint32_t oy1, int16_t *dst)
{
    uint32_t kj = r % g->kw, ki = (r / g->kw) % g->kh, ci = r / (g->kw * g->kh);
    for (uint32_t oy = oy0; oy < oy1; oy++) {
        long long iy = (long long)oy * g->stride + ki - g->pad;
        int16_t *d = dst + (size_t)(oy - oy0) * g->ow;
        if (iy < 0 || iy >= g->h) {
            memset(d, 0, (size_t)g->ow * sizeof(int16_t));
            continue;
        }
        const int16_t *xr = x + ((size_t)ci * g->h + (size_t)iy) * g->w;
        if (g->stride == 1) {
            /* Columns whose source lies inside the row: one copy, zeros around it. */
            long long first = (long long)g->pad - kj, lo = first > 0 ? first : 0;
            long long hi = (long long)g->w + g->pad - kj;
            if (hi > g->ow)
                hi = g->ow;
            if (hi < lo)
                hi = lo;
            memset(d, 0, (size_t)lo * sizeof(int16_t));
            if (hi > lo)
                memcpy(d + lo, xr + (lo + kj - g->pad), (size_t)(hi - lo) * sizeof(int16_t));
            memset(d + hi, 0, (size_t)(g->ow - hi) * sizeof(int16_t));
            continue;
        }
        for (uint32_t ox = 0; ox < g->ow; ox++) {
            long long ix = (long long)ox * g->stride + kj - g->pad;
            d[ox] = (ix >= 0 && ix < g->w) ? xr[ix] : 0;
        }
    }
}

void nn_qim2col(const struct nn_geom *g, const int16_t *x, uint32_t oy0, uint32_t oy1, int16_t *b,
                size_t ldb, int16_t *tmp)
{
    uint32_t K = g->c * g->kh * g->kw;
    size_t cols = (size_t)(oy1 - oy0) * g->ow, half = ldb / 2;
    int16_t *t0 = tmp, *t1 = tmp + half;
    for (uint32_t r = 0; r < K; r += 2) {
        col_row(g, x, r, oy0, oy1, t0);
        if (r + 1 < K)
            col_row(g, x, r + 1, oy0, oy1, t1);
        else
            memset(t1, 0, cols * sizeof(int16_t));
        int16_t *row = b + (size_t)(r / 2) * ldb;
        interleave(t0, t1, cols, row);
        memset(row + 2 * cols, 0, (ldb - 2 * cols) * sizeof(int16_t));
    }
}
