// SPDX-License-Identifier: MIT
/*
 * Integer GEMM for the exact inference path: int16 x int16 -> int32, with the packing and
 * im2col that feed it.
 *
 * B is stored as pairs of rows interleaved (k, k+1 side by side for each column), the layout the
 * x86 multiply-add of 16-bit pairs (pmaddwd, or vpdpwssd with VNNI, which also adds) consumes
 * directly: one instruction does two multiply-adds per 32-bit lane, with A's pair broadcast. A
 * micro-kernel keeps a 4 x 64 tile of int32 sums in registers for the whole depth and hands it
 * to an epilogue (bias, requantisation, saturation, LeakyReLU) that works on whole vectors: the
 * 64-bit products of the requantisation are done as two halves of even and odd lanes. Pair-rows
 * of B are found through a table of offsets when B is an activation read in place (qconv.c),
 * else at a fixed stride. The trade-off is four copies of the kernel (plain C, AVX2, AVX-512BW,
 * AVX-512 VNNI) chosen at run time; since integer sums are exact in any order, they cannot
 * disagree, and the tests check that they don't.
 */
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_Q_X86 1
#endif

/* One tile: acc[i][j] = sum over kk of A pair (i, kk) times B pair (kk, j), pair-row kk of B at
 * b + off[kk] when off is given, else at b + kk * ldb. */
typedef void (*qkern_fn)(size_t k2, const int16_t *a, size_t lda, const int16_t *b,
                         const ptrdiff_t *off, size_t ldb, int32_t acc[NN_QMR][NN_QNR]);
/* Requantise a tile of sums into int16 (struct nn_qtile's epilogue). */
typedef void (*qrq_fn)(int32_t acc[NN_QMR][NN_QNR], const struct nn_qrow *rows,
                       const struct nn_qtile *t, int16_t v[NN_QMR][NN_QNR]);

static inline int32_t pair_at(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline const int16_t *brow(const int16_t *b, const ptrdiff_t *off, size_t ldb, size_t kk)
{
    return off ? b + off[kk] : b + kk * ldb;
}

/* Portable: the same pair products, written so that the compiler can vectorise the column loop. */
static void kern_c(size_t k2, const int16_t *a, size_t lda, const int16_t *b, const ptrdiff_t *off,
                   size_t ldb, int32_t acc[NN_QMR][NN_QNR])
{
    memset(acc, 0, sizeof(int32_t) * NN_QMR * NN_QNR);
    for (size_t kk = 0; kk < k2; kk++) {
        const int16_t *bp = brow(b, off, ldb, kk);
        for (int i = 0; i < NN_QMR; i++) {
            int32_t a0 = a[i * lda + 2 * kk], a1 = a[i * lda + 2 * kk + 1];
            for (int j = 0; j < NN_QNR; j++)
                acc[i][j] += a0 * bp[2 * j] + a1 * bp[2 * j + 1];
        }
    }
}

static void rq_c(int32_t acc[NN_QMR][NN_QNR], const struct nn_qrow *rows, const struct nn_qtile *t,
                 int16_t v[NN_QMR][NN_QNR])
{
    for (int i = 0; i < NN_QMR; i++)
        for (int j = 0; j < NN_QNR; j++) {
            int32_t y = nn_q_requant((int64_t)acc[i][j] + rows[i].bias, rows[i].mult, rows[i].shift,
                                     t->lo, t->hi);
            if (t->lrelu && y < 0)
                y = nn_q_requant(y, t->lm, t->ls, NN_Q_MIN, NN_Q_MAX);
            v[i][j] = (int16_t)y;
        }
}

#ifdef NN_Q_X86
__attribute__((target("avx2"))) static void kern_avx2(size_t k2, const int16_t *a, size_t lda,
                                                      const int16_t *b, const ptrdiff_t *off,
                                                      size_t ldb, int32_t acc[NN_QMR][NN_QNR])
{
    /* Four quarter tiles of 4 x 16: eight accumulators, two B vectors, one broadcast. */
    for (int q = 0; q < NN_QNR / 16; q++) {
        __m256i c[NN_QMR][2];
        for (int i = 0; i < NN_QMR; i++)
            c[i][0] = c[i][1] = _mm256_setzero_si256();
        for (size_t kk = 0; kk < k2; kk++) {
            const int16_t *bp = brow(b, off, ldb, kk) + 32 * q;
            __m256i b0 = _mm256_loadu_si256((const __m256i *)bp);
            __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + 16));
            for (int i = 0; i < NN_QMR; i++) {
                __m256i av = _mm256_set1_epi32(pair_at(a + i * lda + 2 * kk));
                c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(av, b0));
                c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(av, b1));
            }
        }
        for (int i = 0; i < NN_QMR; i++) {
            _mm256_storeu_si256((__m256i *)&acc[i][16 * q], c[i][0]);
            _mm256_storeu_si256((__m256i *)&acc[i][16 * q + 8], c[i][1]);
        }
    }
}

/* floor(x / 2^s) of int64 lanes: AVX2 has only the logical shift, and for x < 0,
 * floor(x / 2^s) = ~(~x >> s). */
__attribute__((target("avx2"))) static inline __m256i sra64_avx2(__m256i x, __m128i s)
{
    __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
    return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(x, neg), s), neg);
}

__attribute__((target("avx2"))) static inline __m256i clamp64_avx2(__m256i x, __m256i lo,
                                                                   __m256i hi)
{
    x = _mm256_blendv_epi8(x, lo, _mm256_cmpgt_epi64(lo, x));
    return _mm256_blendv_epi8(x, hi, _mm256_cmpgt_epi64(x, hi));
}

/* nn_q_requant of eight int32 lanes: the products need 64 bits, so even and odd lanes are
 * multiplied apart (vpmuldq takes the low half of each 64-bit lane) and put back together
 * once saturated, when they fit 32 bits again. */
__attribute__((target("avx2"))) static inline __m256i rq8_avx2(__m256i v, __m256i m, __m256i round,
                                                               __m128i s, __m256i lo, __m256i hi)
{
    __m256i e = _mm256_mul_epi32(v, m), o = _mm256_mul_epi32(_mm256_srli_epi64(v, 32), m);
    e = clamp64_avx2(sra64_avx2(_mm256_add_epi64(e, round), s), lo, hi);
    o = clamp64_avx2(sra64_avx2(_mm256_add_epi64(o, round), s), lo, hi);
    return _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
}

__attribute__((target("avx2"))) static void rq_avx2(int32_t acc[NN_QMR][NN_QNR],
                                                    const struct nn_qrow *rows,
                                                    const struct nn_qtile *t,
                                                    int16_t v[NN_QMR][NN_QNR])
{
    __m256i lo = _mm256_set1_epi64x(t->lo), hi = _mm256_set1_epi64x(t->hi);
    __m256i qlo = _mm256_set1_epi64x(NN_Q_MIN), qhi = _mm256_set1_epi64x(NN_Q_MAX);
    int32_t lsh = t->lrelu ? t->ls : 1;
    __m256i lm = _mm256_set1_epi32(t->lm), lround = _mm256_set1_epi64x(1LL << (lsh - 1));
    __m128i ls = _mm_cvtsi32_si128(lsh);
    for (int i = 0; i < NN_QMR; i++) {
        __m256i bias = _mm256_set1_epi32(rows[i].bias), m = _mm256_set1_epi32(rows[i].mult);
        __m256i round = _mm256_set1_epi64x(1LL << (rows[i].shift - 1));
        __m128i s = _mm_cvtsi32_si128(rows[i].shift);
        for (int j = 0; j < NN_QNR; j += 16) {
            __m256i y[2];
            for (int h = 0; h < 2; h++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)&acc[i][j + 8 * h]);
                y[h] = rq8_avx2(_mm256_add_epi32(a, bias), m, round, s, lo, hi);
                if (t->lrelu)
                    y[h] = _mm256_blendv_epi8(y[h], rq8_avx2(y[h], lm, lround, ls, qlo, qhi),
                                              _mm256_cmpgt_epi32(_mm256_setzero_si256(), y[h]));
            }
            /* packs works within 128-bit halves: put the quarters back in order. */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(y[0], y[1]), 0xD8);
            _mm256_storeu_si256((__m256i *)&v[i][j], p);
        }
    }
}

__attribute__((target("avx512f,avx512bw"))) static void
kern_avx512(size_t k2, const int16_t *a, size_t lda, const int16_t *b, const ptrdiff_t *off,
            size_t ldb, int32_t acc[NN_QMR][NN_QNR])
{
    __m512i c[NN_QMR][4];
    for (int i = 0; i < NN_QMR; i++)
        for (int q = 0; q < 4; q++)
            c[i][q] = _mm512_setzero_si512();
    for (size_t kk = 0; kk < k2; kk++) {
        const int16_t *bp = brow(b, off, ldb, kk);
        __m512i bv[4];
        for (int q = 0; q < 4; q++)
            bv[q] = _mm512_loadu_si512((const void *)(bp + 32 * q));
        for (int i = 0; i < NN_QMR; i++) {
            __m512i av = _mm512_set1_epi32(pair_at(a + i * lda + 2 * kk));
            for (int q = 0; q < 4; q++)
                c[i][q] = _mm512_add_epi32(c[i][q], _mm512_madd_epi16(av, bv[q]));
        }
    }
    for (int i = 0; i < NN_QMR; i++)
        for (int q = 0; q < 4; q++)
            _mm512_storeu_si512((void *)&acc[i][16 * q], c[i][q]);
}

/* The same with vpdpwssd, which adds the pair products into the sums in one instruction (no
 * saturation: the int32 bound makes every partial sum exact). */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
kern_vnni(size_t k2, const int16_t *a, size_t lda, const int16_t *b, const ptrdiff_t *off,
          size_t ldb, int32_t acc[NN_QMR][NN_QNR])
{
    __m512i c[NN_QMR][4];
    for (int i = 0; i < NN_QMR; i++)
        for (int q = 0; q < 4; q++)
            c[i][q] = _mm512_setzero_si512();
    for (size_t kk = 0; kk < k2; kk++) {
        const int16_t *bp = brow(b, off, ldb, kk);
        __m512i bv[4];
        for (int q = 0; q < 4; q++)
            bv[q] = _mm512_loadu_si512((const void *)(bp + 32 * q));
        for (int i = 0; i < NN_QMR; i++) {
            __m512i av = _mm512_set1_epi32(pair_at(a + i * lda + 2 * kk));
            for (int q = 0; q < 4; q++)
                c[i][q] = _mm512_dpwssd_epi32(c[i][q], av, bv[q]);
        }
    }
    for (int i = 0; i < NN_QMR; i++)
        for (int q = 0; q < 4; q++)
            _mm512_storeu_si512((void *)&acc[i][16 * q], c[i][q]);
}

/* As rq8_avx2 on sixteen lanes; AVX-512 has the 64-bit arithmetic shift, minimum and maximum. */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i
rq16_avx512(__m512i v, __m512i m, __m512i round, __m128i s, __m512i lo, __m512i hi)
{
    __m512i e = _mm512_mul_epi32(v, m), o = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), m);
    e = _mm512_max_epi64(_mm512_min_epi64(_mm512_sra_epi64(_mm512_add_epi64(e, round), s), hi), lo);
    o = _mm512_max_epi64(_mm512_min_epi64(_mm512_sra_epi64(_mm512_add_epi64(o, round), s), hi), lo);
    return _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
}

/* floor((v M + 2^(s-1)) / 2^s) on sixteen lanes where every result fits int32 (no
 * saturation needed before the lanes are put back together). */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i
rq16n_avx512(__m512i v, __m512i m, __m512i round, __m128i s)
{
    __m512i e = _mm512_mul_epi32(v, m), o = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), m);
    e = _mm512_sra_epi64(_mm512_add_epi64(e, round), s);
    o = _mm512_sra_epi64(_mm512_add_epi64(o, round), s);
    return _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
}

/*
 * The bound c on |a| under which a M / 2^s stays within 2^30 (so rq16n's results fit int32).
 * Beyond it the requantised value is beyond +-2^29 (c M >= 2^(29 + s) as c >= 1), outside
 * every int16 bound, so clamping a to +-c first changes no saturated result (requantisation
 * is monotonic in a). With s >= 31 every int32 a is inside.
 */
static int32_t rq_bound(int32_t m, int32_t s)
{
    if (s >= 31 || m == 0)
        return INT32_MAX;
    int64_t c = ((int64_t)1 << (30 + s)) / (m < 0 ? -(int64_t)m : m);
    return c > INT32_MAX ? INT32_MAX : (int32_t)c;
}

/*
 * The epilogue in 32-bit lanes where it can be (saturation bounds within int16, LeakyReLU's
 * shift >= 16): a clamped to rq_bound, the requantised value saturated in int32, LeakyReLU's
 * product (|y| <= 2^15, |M| < 2^31: within 2^30 after the shift) and a saturating narrowing
 * to int16. Same results as rq_avx512's general path, bit for bit, in fewer instructions.
 */
__attribute__((target("avx512f,avx512bw"))) static void rq_n_avx512(int32_t acc[NN_QMR][NN_QNR],
                                                                    const struct nn_qrow *rows,
                                                                    const struct nn_qtile *t,
                                                                    int16_t v[NN_QMR][NN_QNR])
{
    __m512i lo = _mm512_set1_epi32(t->lo), hi = _mm512_set1_epi32(t->hi);
    __m512i lm = _mm512_set1_epi32(t->lm), zero = _mm512_setzero_si512();
    __m512i lround = _mm512_set1_epi64(t->lrelu ? 1LL << (t->ls - 1) : 0);
    __m128i ls = _mm_cvtsi32_si128(t->lrelu ? t->ls : 1);
    for (int i = 0; i < NN_QMR; i++) {
        __m512i bias = _mm512_set1_epi32(rows[i].bias), m = _mm512_set1_epi32(rows[i].mult);
        __m512i round = _mm512_set1_epi64(1LL << (rows[i].shift - 1));
        __m128i s = _mm_cvtsi32_si128(rows[i].shift);
        int32_t c = rq_bound(rows[i].mult, rows[i].shift);
        __m512i cmax = _mm512_set1_epi32(c), cmin = _mm512_set1_epi32(-c);
        for (int j = 0; j < NN_QNR; j += 16) {
            __m512i a = _mm512_add_epi32(_mm512_loadu_si512((const void *)&acc[i][j]), bias);
            if (c != INT32_MAX)
                a = _mm512_max_epi32(_mm512_min_epi32(a, cmax), cmin);
            __m512i y = _mm512_max_epi32(_mm512_min_epi32(rq16n_avx512(a, m, round, s), hi), lo);
            if (t->lrelu)
                y = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(y, zero), y,
                                            rq16n_avx512(y, lm, lround, ls));
            _mm256_storeu_si256((__m256i *)&v[i][j], _mm512_cvtsepi32_epi16(y));
        }
    }
}

__attribute__((target("avx512f,avx512bw"))) static void rq_avx512(int32_t acc[NN_QMR][NN_QNR],
                                                                  const struct nn_qrow *rows,
                                                                  const struct nn_qtile *t,
                                                                  int16_t v[NN_QMR][NN_QNR])
{
    if (t->lo >= NN_Q_MIN && t->hi <= NN_Q_MAX && (!t->lrelu || t->ls >= 16)) {
        rq_n_avx512(acc, rows, t, v);
        return;
    }
    __m512i lo = _mm512_set1_epi64(t->lo), hi = _mm512_set1_epi64(t->hi);
    __m512i qlo = _mm512_set1_epi64(NN_Q_MIN), qhi = _mm512_set1_epi64(NN_Q_MAX);
    int32_t lsh = t->lrelu ? t->ls : 1;
    __m512i lm = _mm512_set1_epi32(t->lm), lround = _mm512_set1_epi64(1LL << (lsh - 1));
    __m128i ls = _mm_cvtsi32_si128(lsh);
    for (int i = 0; i < NN_QMR; i++) {
        __m512i bias = _mm512_set1_epi32(rows[i].bias), m = _mm512_set1_epi32(rows[i].mult);
        __m512i round = _mm512_set1_epi64(1LL << (rows[i].shift - 1));
        __m128i s = _mm_cvtsi32_si128(rows[i].shift);
        for (int j = 0; j < NN_QNR; j += 16) {
            __m512i a = _mm512_loadu_si512((const void *)&acc[i][j]);
            __m512i y = rq16_avx512(_mm512_add_epi32(a, bias), m, round, s, lo, hi);
            if (t->lrelu)
                y = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(y, _mm512_setzero_si512()), y,
                                            rq16_avx512(y, lm, lround, ls, qlo, qhi));
            _mm256_storeu_si256((__m256i *)&v[i][j], _mm512_cvtepi32_epi16(y));
        }
    }
}

/* Residual sums, sixteen lanes: floor((x Mx + 2^(Sx-1)) / 2^Sx) + the same of f, saturated. */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i
rs_half_avx512(__m512i v, __m512i m, __m512i round, __m128i s, int odd)
{
    if (odd)
        v = _mm512_srli_epi64(v, 32);
    return _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(v, m), round), s);
}

__attribute__((target("avx512f,avx512bw"))) static void
res_avx512(int16_t *y, const int16_t *x, const int16_t *f, size_t n, const int32_t k[4])
{
    __m512i mx = _mm512_set1_epi32(k[0]), mf = _mm512_set1_epi32(k[2]);
    __m512i rx = _mm512_set1_epi64(1LL << (k[1] - 1)), rf = _mm512_set1_epi64(1LL << (k[3] - 1));
    __m128i sx = _mm_cvtsi32_si128(k[1]), sf = _mm_cvtsi32_si128(k[3]);
    __m512i lo = _mm512_set1_epi64(NN_Q_MIN), hi = _mm512_set1_epi64(NN_Q_MAX);
    /* 32 lanes a step: whole-register masked loads and stores need only AVX-512BW. */
    for (size_t i = 0; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? (__mmask32)0xFFFFFFFF : (__mmask32)((1u << (n - i)) - 1);
        __m512i x32 = _mm512_maskz_loadu_epi16(m, x + i), f32 = _mm512_maskz_loadu_epi16(m, f + i);
        __m256i out[2];
        for (int q = 0; q < 2; q++) {
            __m512i xv = _mm512_cvtepi16_epi32(q ? _mm512_extracti64x4_epi64(x32, 1)
                                                 : _mm512_castsi512_si256(x32));
            __m512i fv = _mm512_cvtepi16_epi32(q ? _mm512_extracti64x4_epi64(f32, 1)
                                                 : _mm512_castsi512_si256(f32));
            __m512i h[2];
            for (int odd = 0; odd < 2; odd++) {
                __m512i v = _mm512_add_epi64(rs_half_avx512(xv, mx, rx, sx, odd),
                                             rs_half_avx512(fv, mf, rf, sf, odd));
                h[odd] = _mm512_max_epi64(_mm512_min_epi64(v, hi), lo);
            }
            out[q] = _mm512_cvtepi32_epi16(
                _mm512_mask_blend_epi32(0xAAAA, h[0], _mm512_slli_epi64(h[1], 32)));
        }
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(out[0]), out[1], 1);
        _mm512_mask_storeu_epi16(y + i, m, v);
    }
}
#endif

void nn_qres_add(enum nn_qkern kern, int16_t *y, const int16_t *x, const int16_t *f, size_t n,
                 const int32_t k[4])
{
#ifdef NN_Q_X86
    if (kern == NN_QK_AVX512 || kern == NN_QK_VNNI) {
        res_avx512(y, x, f, n, k);
        return;
    }
#endif
    (void)kern;
    for (size_t i = 0; i < n; i++) {
        int64_t v =
            nn_q_rshift((int64_t)x[i] * k[0], k[1]) + nn_q_rshift((int64_t)f[i] * k[2], k[3]);
        y[i] = (int16_t)(v < NN_Q_MIN ? NN_Q_MIN : v > NN_Q_MAX ? NN_Q_MAX : v);
    }
}

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
    case NN_QK_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    default:
        return 0;
    }
}

enum nn_qkern nn_qkern_best(void)
{
    for (int k = NN_QK_COUNT - 1; k > NN_QK_C; k--)
        if (nn_qkern_supported((enum nn_qkern)k))
            return (enum nn_qkern)k;
    return NN_QK_C;
}

static qkern_fn kern_fn(enum nn_qkern k)
{
#ifdef NN_Q_X86
    if (k == NN_QK_VNNI)
        return kern_vnni;
    if (k == NN_QK_AVX512)
        return kern_avx512;
    if (k == NN_QK_AVX2)
        return kern_avx2;
#endif
    (void)k;
    return kern_c;
}

static qrq_fn rq_fn(enum nn_qkern k)
{
#ifdef NN_Q_X86
    if (k == NN_QK_VNNI || k == NN_QK_AVX512)
        return rq_avx512;
    if (k == NN_QK_AVX2)
        return rq_avx2;
#endif
    (void)k;
    return rq_c;
}

void nn_qgemm_tiles(enum nn_qkern kern, const struct nn_qtile *t)
{
    qkern_fn f = kern_fn(kern);
    qrq_fn rq = rq_fn(kern);
    size_t lda = 2 * (size_t)t->k2;
    int32_t acc[NN_QMR][NN_QNR];
    int16_t v[NN_QMR][NN_QNR];
    /* Columns outside, rows inside: the B tile (k2 pair-rows of one tile's width) is read once
     * from memory and reused by every row block from cache. */
    for (uint32_t j0 = 0; j0 < t->n; j0 += NN_QNR) {
        uint32_t cols = t->n - j0 < NN_QNR ? t->n - j0 : NN_QNR;
        for (uint32_t r0 = 0; r0 < t->m; r0 += NN_QMR) {
            f(t->k2, t->a + (size_t)r0 * lda, lda, t->b + 2 * (size_t)j0, t->off, 0, acc);
            rq(acc, t->rows + r0, t, v);
            t->store(t->arg, r0, j0, cols, v);
        }
    }
}

void nn_qgemm(enum nn_qkern kern, uint32_t m, uint32_t k, uint32_t n, const int16_t *a,
              const int16_t *b, size_t ldb, const struct nn_qepi *e)
{
    qkern_fn f = kern_fn(kern);
    qrq_fn rq = rq_fn(kern);
    size_t lda = nn_q_round(k, 2), k2 = lda / 2;
    int32_t acc[NN_QMR][NN_QNR];
    int16_t v[NN_QMR][NN_QNR];
    struct nn_qtile t = {.lo = e->lo, .hi = e->hi, .ls = 1};
    struct nn_qrow rows[NN_QMR];
    for (uint32_t n0 = 0; n0 < n; n0 += NN_QNR) {
        uint32_t nn = n - n0 < NN_QNR ? n - n0 : NN_QNR;
        for (uint32_t m0 = 0; m0 < m; m0 += NN_QMR) {
            uint32_t mm = m - m0 < NN_QMR ? m - m0 : NN_QMR;
            f(k2, a + (size_t)m0 * lda, lda, b + 2 * (size_t)n0, NULL, ldb, acc);
            if (!e->c && !e->chan_n) {
                /* Channel along m: the vectorised epilogue, then strided stores. */
                for (uint32_t i = 0; i < NN_QMR; i++) {
                    uint32_t row = m0 + (i < mm ? i : 0), ch = e->uniform ? 0 : row;
                    rows[i] =
                        (struct nn_qrow){e->bias ? e->bias[row] : 0, e->mult[ch], e->shift[ch]};
                }
                rq(acc, rows, &t, v);
                for (uint32_t i = 0; i < mm; i++) {
                    int16_t *y = e->y + (ptrdiff_t)(m0 + i) * e->sm + (ptrdiff_t)n0 * e->sn;
                    for (uint32_t j = 0; j < nn; j++)
                        y[(ptrdiff_t)j * e->sn] = v[i][j];
                }
                continue;
            }
            for (uint32_t i = 0; i < mm; i++) {
                uint32_t row = m0 + i;
                if (e->c) {
                    int32_t *c = e->c + (ptrdiff_t)row * e->sm + (ptrdiff_t)n0 * e->sn;
                    for (uint32_t j = 0; j < nn; j++)
                        c[(ptrdiff_t)j * e->sn] = acc[i][j];
                    continue;
                }
                int16_t *y = e->y + (ptrdiff_t)row * e->sm + (ptrdiff_t)n0 * e->sn;
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
                row[2 * j + 1] = (int16_t)(odd ? s1[(ptrdiff_t)j * sn] : 0);
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
            d[ox] = (int16_t)((ix >= 0 && ix < g->w) ? xr[ix] : 0);
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
