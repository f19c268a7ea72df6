// SPDX-License-Identifier: MIT
/*
 * Unit tests of the integer-exact inference path: the integer GEMM of every kernel against a
 * naive loop; every integer layer, and whole quantised models, against a naive reference
 * written from the arithmetic specified in nn/nn.h (int64 sums, no packing, no bands), over
 * random shapes including 1x1, 1xN, prime sizes, strides and padding; bit-identical outputs
 * across kernels, OpenBLAS thread counts, repeated runs and concurrent threads; and the
 * quantised model within a stated tolerance of the float one.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "tests/unit/nn_ref.h"
#include "tests/unit/unit.h"

/* ---- helpers ---- */

static void add(struct nn_model *m, struct nn_layer_desc d)
{
    ck_assert_int_eq(nn_model_add(m, &d), 0);
}

static struct nn_layer_desc conv(uint32_t out, uint32_t kh, uint32_t kw, uint32_t s, uint32_t p,
                                 uint32_t bias)
{
    return (struct nn_layer_desc){
        .type = NN_CONV2D, .out_ch = out, .kh = kh, .kw = kw, .stride = s, .pad = p, .bias = bias};
}

static void fill(float *x, size_t n, struct nn_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * nn_rng_uniform(r);
}

/* Initialise m and give every parameter (biases included) a random value. */
static void init_random(struct nn_model *m, uint64_t seed, struct nn_rng *r)
{
    ck_assert_int_eq(nn_model_init(m, seed), 0);
    size_t n;
    float *p = nn_model_params(m, &n);
    for (size_t i = 0; i < n; i++)
        p[i] += 0.05f * (2 * nn_rng_uniform(r) - 1);
}

static struct nn_qmodel *quantize(const struct nn_model *m, uint32_t n, uint32_t h, uint32_t w,
                                  struct nn_rng *r, float **calib_out)
{
    uint32_t c = nn_model_in_channels(m);
    size_t count = (size_t)n * c * h * w;
    float *x = malloc(count * sizeof(float));
    ck_assert_ptr_nonnull(x);
    fill(x, count, r, -1, 1);
    struct nn_tensor t;
    nn_tensor_packed(&t, x, n, c, h, w);
    struct nn_quant_opts o = {.percentile = 100.0};
    struct nn_qmodel *q = NULL;
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), 0);
    if (calib_out)
        *calib_out = x;
    else
        free(x);
    return q;
}

int16_t *random_q(size_t n, struct nn_rng *r, int32_t lim)
{
    int16_t *x = malloc(n * sizeof(*x) + 1);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (int16_t)((int32_t)nn_rng_below(r, 2 * (uint32_t)lim + 1) - lim);
    return x;
}

/* ---- the naive reference (nn/nn.h's arithmetic, written out; tests/unit/nn_ref.h) ---- */

static int64_t floordiv(int64_t a, int64_t b) /* floor(a / b), b > 0 */
{
    ck_assert(b > 0);
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

int64_t ref_rq(int64_t a, int32_t m, int32_t s)
{
    return floordiv(a * m + ((int64_t)1 << (s - 1)), (int64_t)1 << s);
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int16_t ref_sat(int64_t v)
{
    return (int16_t)clamp64(v, -32768, 32767);
}

size_t rcount(struct rshape s)
{
    return (size_t)s.n * s.c * s.h * s.w;
}

static int16_t *ref_layer(const struct nn_qmodel *q, size_t i, const int16_t *x, struct rshape is,
                          struct rshape *os);

int16_t *ref_seq(const struct nn_qmodel *q, size_t first, size_t end, const int16_t *x,
                 struct rshape is, struct rshape *os)
{
    int16_t *cur = malloc(rcount(is) * sizeof(int16_t) + 1);
    ck_assert_ptr_nonnull(cur);
    memcpy(cur, x, rcount(is) * sizeof(int16_t));
    for (size_t i = first; i < end; i += 1 + q->layers[i].d.span) {
        struct rshape s;
        int16_t *y = ref_layer(q, i, cur, is, &s);
        free(cur);
        cur = y;
        is = s;
    }
    *os = is;
    return cur;
}

static int16_t *ref_layer(const struct nn_qmodel *q, size_t li, const int16_t *x, struct rshape is,
                          struct rshape *os_out)
{
    const struct nn_qlayer *l = &q->layers[li];
    const struct nn_layer_desc *d = &l->d;
    struct rshape os = is;
    uint32_t C = is.c;
    switch (d->type) {
    case NN_CONV2D:
        os.c = d->out_ch;
        os.h = (is.h + 2 * d->pad - d->kh) / d->stride + 1;
        os.w = (is.w + 2 * d->pad - d->kw) / d->stride + 1;
        break;
    case NN_TCONV2D:
        os.c = d->out_ch;
        os.h = (is.h - 1) * d->stride - 2 * d->pad + d->kh;
        os.w = (is.w - 1) * d->stride - 2 * d->pad + d->kw;
        break;
    case NN_UPSAMPLE:
        os.h *= d->factor;
        os.w *= d->factor;
        break;
    case NN_AVGPOOL:
    case NN_MAXPOOL:
        os.h = (is.h - d->kh) / d->stride + 1;
        os.w = (is.w - d->kw) / d->stride + 1;
        break;
    default:
        break;
    }
    if (d->type == NN_RESIDUAL) {
        struct rshape fs;
        int16_t *f = ref_seq(q, li + 1, li + 1 + d->span, x, is, &fs);
        int16_t *y = malloc(rcount(is) * sizeof(int16_t) + 1);
        ck_assert_ptr_nonnull(y);
        for (size_t j = 0; j < rcount(is); j++)
            y[j] = ref_sat(ref_rq(x[j], l->k[0], l->k[1]) + ref_rq(f[j], l->k[2], l->k[3]));
        free(f);
        *os_out = is;
        return y;
    }
    int16_t *y = calloc(rcount(os) + 1, sizeof(int16_t));
    ck_assert_ptr_nonnull(y);
#define X(n_, c_, y_, x_) x[(((size_t)(n_)*is.c + (c_)) * is.h + (y_)) * is.w + (x_)]
#define Y(n_, c_, y_, x_) y[(((size_t)(n_)*os.c + (c_)) * os.h + (y_)) * os.w + (x_)]
    for (uint32_t n = 0; n < is.n; n++) {
        switch (d->type) {
        case NN_CONV2D:
            for (uint32_t o = 0; o < os.c; o++)
                for (uint32_t oy = 0; oy < os.h; oy++)
                    for (uint32_t ox = 0; ox < os.w; ox++) {
                        int64_t acc = l->b ? l->b[o] : 0;
                        for (uint32_t c = 0; c < C; c++)
                            for (uint32_t a = 0; a < d->kh; a++)
                                for (uint32_t e = 0; e < d->kw; e++) {
                                    long iy = (long)(oy * d->stride + a) - (long)d->pad;
                                    long ix = (long)(ox * d->stride + e) - (long)d->pad;
                                    if (iy < 0 || ix < 0 || iy >= is.h || ix >= is.w)
                                        continue;
                                    acc += (int64_t)l->w[((o * C + c) * d->kh + a) * d->kw + e] *
                                           X(n, c, iy, ix);
                                }
                        if (acc < INT32_MIN || acc > INT32_MAX)
                            ck_abort_msg("conv sum out of int32");
                        Y(n, o, oy, ox) = ref_sat(ref_rq(acc, l->k[o], l->k[os.c + o]));
                    }
            break;
        case NN_TCONV2D: {
            int64_t *acc = calloc((size_t)os.c * os.h * os.w + 1, sizeof(int64_t));
            ck_assert_ptr_nonnull(acc);
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t iy = 0; iy < is.h; iy++)
                    for (uint32_t ix = 0; ix < is.w; ix++)
                        for (uint32_t o = 0; o < os.c; o++)
                            for (uint32_t a = 0; a < d->kh; a++)
                                for (uint32_t e = 0; e < d->kw; e++) {
                                    long oy = (long)(iy * d->stride + a) - (long)d->pad;
                                    long ox = (long)(ix * d->stride + e) - (long)d->pad;
                                    if (oy < 0 || ox < 0 || oy >= os.h || ox >= os.w)
                                        continue;
                                    acc[((size_t)o * os.h + oy) * os.w + ox] +=
                                        (int64_t)l->w[((c * os.c + o) * d->kh + a) * d->kw + e] *
                                        X(n, c, iy, ix);
                                }
            for (uint32_t o = 0; o < os.c; o++)
                for (uint32_t oy = 0; oy < os.h; oy++)
                    for (uint32_t ox = 0; ox < os.w; ox++) {
                        int64_t a = acc[((size_t)o * os.h + oy) * os.w + ox] + (l->b ? l->b[o] : 0);
                        Y(n, o, oy, ox) = ref_sat(ref_rq(a, l->k[o], l->k[os.c + o]));
                    }
            free(acc);
            break;
        }
        case NN_UPSAMPLE:
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t oy = 0; oy < os.h; oy++)
                    for (uint32_t ox = 0; ox < os.w; ox++)
                        Y(n, c, oy, ox) = X(n, c, oy / d->factor, ox / d->factor);
            break;
        case NN_RELU:
        case NN_LRELU:
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t yy = 0; yy < is.h; yy++)
                    for (uint32_t xx = 0; xx < is.w; xx++) {
                        int16_t v = X(n, c, yy, xx);
                        Y(n, c, yy, xx) =
                            (int16_t)(v >= 0               ? v
                                      : d->type == NN_RELU ? 0
                                                           : ref_sat(ref_rq(v, l->k[0], l->k[1])));
                    }
            break;
        case NN_AVGPOOL:
        case NN_MAXPOOL:
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t oy = 0; oy < os.h; oy++)
                    for (uint32_t ox = 0; ox < os.w; ox++) {
                        int64_t s = 0, mx = -40000, cnt = (int64_t)d->kh * d->kw;
                        for (uint32_t a = 0; a < d->kh; a++)
                            for (uint32_t e = 0; e < d->kw; e++) {
                                int16_t v = X(n, c, oy * d->stride + a, ox * d->stride + e);
                                s += v;
                                mx = v > mx ? v : mx;
                            }
                        /* Half up: floor(s / cnt + 1/2). */
                        Y(n, c, oy, ox) = (int16_t)(d->type == NN_MAXPOOL
                                                        ? mx
                                                        : ref_sat(floordiv(2 * s + cnt, 2 * cnt)));
                    }
            break;
        case NN_SE: {
            uint32_t Hd = d->hidden;
            int64_t P = (int64_t)is.h * is.w, mean[64], a1[64], g[64];
            ck_assert(C <= 64 && Hd <= 64);
            const int32_t *M1 = l->k, *S1 = M1 + Hd, *M2 = S1 + Hd, *S2 = M2 + C, *G = S2 + C;
            for (uint32_t c = 0; c < C; c++) {
                int64_t s = 0;
                for (uint32_t yy = 0; yy < is.h; yy++)
                    for (uint32_t xx = 0; xx < is.w; xx++)
                        s += X(n, c, yy, xx);
                mean[c] = clamp64(floordiv(2 * s + P, 2 * P), -32768, 32767);
            }
            for (uint32_t j = 0; j < Hd; j++) {
                int64_t acc = l->b[j];
                for (uint32_t c = 0; c < C; c++)
                    acc += (int64_t)l->w[j * C + c] * mean[c];
                a1[j] = clamp64(ref_rq(acc, M1[j], S1[j]), 0, 32767);
            }
            for (uint32_t c = 0; c < C; c++) {
                int64_t acc = l->b[Hd + c];
                for (uint32_t j = 0; j < Hd; j++)
                    acc += (int64_t)l->w[Hd * C + c * Hd + j] * a1[j];
                int64_t u = clamp64(ref_rq(acc, M2[c], S2[c]), -NN_Q_LUT, NN_Q_LUT);
                g[c] = G[clamp64(u + NN_Q_LUT / 2, 0, NN_Q_LUT - 1)];
            }
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t yy = 0; yy < is.h; yy++)
                    for (uint32_t xx = 0; xx < is.w; xx++)
                        Y(n, c, yy, xx) = ref_sat(floordiv(X(n, c, yy, xx) * g[c] + 16384, 32768));
            break;
        }
        case NN_MHSA: {
            size_t T = (size_t)is.h * is.w, D = C / d->heads;
            const int32_t *k = l->k, *t = k + 6 * C;
            const int32_t *Mout = t + 5, *Sout = Mout + C, *E = Sout + C;
            int64_t qk = t[2];
            int16_t *QKV = malloc(3 * C * T * sizeof(int16_t)),
                    *O = malloc(C * T * sizeof(int16_t));
            int64_t *s = malloc(T * sizeof(int64_t)), *e = malloc(T * sizeof(int64_t));
            if (!QKV || !O || !s || !e)
                ck_abort_msg("out of memory");
            const int16_t *xn = &X(n, 0, 0, 0);
            for (int i = 0; i < 3; i++)
                for (size_t r = 0; r < C; r++)
                    for (size_t tt = 0; tt < T; tt++) {
                        int64_t acc = l->b[i * C + r];
                        for (size_t c = 0; c < C; c++)
                            acc += (int64_t)l->w[i * C * C + r * C + c] * xn[c * T + tt];
                        int64_t v = ref_rq(acc, k[2 * C * i + r], k[2 * C * i + C + r]);
                        QKV[(i * C + r) * T + tt] =
                            (int16_t)(i < 2 ? clamp64(v, -qk, qk) : clamp64(v, -32768, 32767));
                    }
            const int16_t *Q = QKV, *K = QKV + C * T, *V = QKV + 2 * C * T;
            for (size_t h = 0; h < d->heads; h++)
                for (size_t tq = 0; tq < T; tq++) {
                    int64_t mx = INT64_MIN, sum = 0;
                    for (size_t ts = 0; ts < T; ts++) {
                        s[ts] = 0;
                        for (size_t dd = 0; dd < D; dd++)
                            s[ts] += (int64_t)Q[(h * D + dd) * T + tq] * K[(h * D + dd) * T + ts];
                        mx = s[ts] > mx ? s[ts] : mx;
                    }
                    for (size_t ts = 0; ts < T; ts++) {
                        int64_t dist = clamp64(mx - s[ts], 0, INT32_MAX);
                        int64_t idx = clamp64(ref_rq(dist, t[0], t[1]), 0, NN_Q_LUT);
                        e[ts] = idx < NN_Q_LUT ? E[idx] : 0;
                        sum += e[ts];
                    }
                    for (size_t dd = 0; dd < D; dd++) {
                        int64_t acc = 0;
                        for (size_t ts = 0; ts < T; ts++) {
                            int64_t p = sum ? (e[ts] * 16384 + sum / 2) / sum : 0;
                            acc += p * V[(h * D + dd) * T + ts];
                        }
                        O[(h * D + dd) * T + tq] = ref_sat(ref_rq(acc, t[3], t[4]));
                    }
                }
            for (size_t r = 0; r < C; r++)
                for (size_t tt = 0; tt < T; tt++) {
                    int64_t acc = l->b[3 * C + r];
                    for (size_t c = 0; c < C; c++)
                        acc += (int64_t)l->w[3 * C * C + r * C + c] * O[c * T + tt];
                    y[(size_t)n * C * T + r * T + tt] = ref_sat(ref_rq(acc, Mout[r], Sout[r]));
                }
            free(QKV);
            free(O);
            free(s);
            free(e);
            break;
        }
        default:
            ck_abort_msg("layer type %u", d->type);
        }
    }
#undef X
#undef Y
    *os_out = os;
    return y;
}

/* Run q on x with every kernel the CPU has and compare each with the reference. */
static void check_against_ref(const struct nn_qmodel *q, const int16_t *x, struct rshape is,
                              const char *what)
{
    struct rshape os;
    int16_t *want = ref_seq(q, 0, q->nlayers, x, is, &os);
    struct nn_qctx *c = NULL;
    ck_assert_int_eq(nn_qctx_new(q, is.n, is.h, is.w, &c), 0);
    for (int k = NN_QK_C; k <= NN_QK_AVX512; k++) {
        if (nn_qctx_set_kernel(c, (enum nn_qkern)k) != 0)
            continue;
        struct nn_qtensor in = {(int16_t *)x, is.n, is.c, is.h, is.w}, out;
        ck_assert_int_eq(nn_qforward(c, &in, &out), 0);
        ck_assert_uint_eq(out.n, os.n);
        ck_assert_uint_eq(out.c, os.c);
        ck_assert_uint_eq(out.h, os.h);
        ck_assert_uint_eq(out.w, os.w);
        size_t i = 0;
        while (i < rcount(os) && out.data[i] == want[i])
            i++;
        ck_assert_msg(i == rcount(os), "%s (kernel %d): [%zu] %d vs reference %d", what, k, i,
                      out.data[i], want[i]);
    }
    nn_qctx_free(c);
    free(want);
}

/* A one-layer model on in_ch channels, quantised on random data of the given size, checked
 * on random full-range int16 input (saturation paths included) and on calibrated input. */
static void check_layer(uint32_t in_ch, struct nn_layer_desc d, uint32_t n, uint32_t h, uint32_t w,
                        uint64_t seed, const char *what)
{
    struct nn_rng r;
    nn_rng_seed(&r, seed);
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(in_ch, &m), 0);
    add(m, d);
    init_random(m, seed, &r);
    float *calib;
    struct nn_qmodel *q = quantize(m, n, h, w, &r, &calib);
    struct rshape is = {n, in_ch, h, w};
    int16_t *x = random_q(rcount(is), &r, 32767);
    check_against_ref(q, x, is, what);
    struct nn_tensor t;
    nn_tensor_packed(&t, calib, n, in_ch, h, w);
    ck_assert_int_eq(nn_qmodel_quantize_input(q, &t, x), 0);
    check_against_ref(q, x, is, what);
    free(x);
    free(calib);
    nn_qmodel_free(q);
    nn_model_free(m);
}

/* ---- GEMM ---- */

START_TEST(test_gemm)
{
    struct nn_rng r;
    nn_rng_seed(&r, 5);
    for (int iter = 0; iter < 60; iter++) {
        uint32_t m = 1 + nn_rng_below(&r, 13), k = 1 + nn_rng_below(&r, 40),
                 n = 1 + nn_rng_below(&r, 100);
        if (iter < 6) /* 1x1x1, 1xN, prime and exact-tile sizes */
            m = (uint32_t[]){1, 1, 7, 4, 13, 8}[iter], k = (uint32_t[]){1, 1, 11, 2, 3, 64}[iter],
            n = (uint32_t[]){1, 97, 31, 32, 1, 64}[iter];
        size_t lda = nn_q_round(k, 2), ldb = 2 * nn_q_round(n, NN_QNR);
        int16_t *a = calloc(nn_q_round(m, NN_QMR) * lda, sizeof(int16_t));
        int16_t *b = random_q((size_t)k * n, &r, 32767), *bp = malloc(ldb * lda / 2 * 2 + 2);
        int32_t *c = malloc((size_t)m * n * sizeof(int32_t));
        int16_t *y = malloc((size_t)m * n * sizeof(int16_t)), *yt = malloc((size_t)m * n * 2);
        int32_t *bias = malloc((m + n) * sizeof(int32_t)), mult[1], shift[1];
        ck_assert(a && bp && c && y && yt && bias);
        /* Weights small enough for the int32 bound: |a| * k * 32768 < 2^31. */
        int32_t amax = (int32_t)(65535 / k < 127 ? 65535 / k : 127);
        for (uint32_t i = 0; i < m; i++)
            for (uint32_t j = 0; j < k; j++)
                a[i * lda + j] =
                    (int16_t)((int32_t)nn_rng_below(&r, 2 * (uint32_t)amax + 1) - amax);
        for (uint32_t i = 0; i < m + n; i++)
            bias[i] = (int32_t)nn_rng_below(&r, 20001) - 10000;
        mult[0] = 1 + (int32_t)nn_rng_below(&r, 1u << 30);
        shift[0] = 20 + (int32_t)nn_rng_below(&r, 20);
        nn_qpack(b, (ptrdiff_t)n, 1, k, n, bp, ldb);
        for (int kern = NN_QK_C; kern <= NN_QK_AVX512; kern++) {
            if (!nn_qkern_supported((enum nn_qkern)kern))
                continue;
            struct nn_qepi e32 = {.c = c, .sm = (ptrdiff_t)n, .sn = 1};
            nn_qgemm((enum nn_qkern)kern, m, k, n, a, bp, ldb, &e32);
            struct nn_qepi e16 = {.y = y,
                                  .sm = (ptrdiff_t)n,
                                  .sn = 1,
                                  .bias = bias,
                                  .mult = mult,
                                  .shift = shift,
                                  .uniform = 1,
                                  .lo = -1000,
                                  .hi = 30000};
            nn_qgemm((enum nn_qkern)kern, m, k, n, a, bp, ldb, &e16);
            /* Transposed output, channel along n. */
            struct nn_qepi et = {.y = yt,
                                 .sm = 1,
                                 .sn = (ptrdiff_t)m,
                                 .bias = bias,
                                 .mult = mult,
                                 .shift = shift,
                                 .uniform = 1,
                                 .chan_n = 1,
                                 .lo = -32768,
                                 .hi = 32767};
            nn_qgemm((enum nn_qkern)kern, m, k, n, a, bp, ldb, &et);
            size_t bad = 0;
            for (uint32_t i = 0; i < m; i++)
                for (uint32_t j = 0; j < n; j++) {
                    int64_t s = 0;
                    for (uint32_t t = 0; t < k; t++)
                        s += (int64_t)a[i * lda + t] * b[(size_t)t * n + j];
                    bad += c[i * n + j] != s;
                    bad += y[i * n + j] !=
                           clamp64(ref_rq(s + bias[i], mult[0], shift[0]), -1000, 30000);
                    bad += yt[(size_t)j * m + i] !=
                           clamp64(ref_rq(s + bias[j], mult[0], shift[0]), -32768, 32767);
                }
            ck_assert_msg(bad == 0, "kernel %d m%u k%u n%u: %zu wrong", kern, m, k, n, bad);
        }
        free(a);
        free(b);
        free(bp);
        free(c);
        free(y);
        free(yt);
        free(bias);
    }
}
END_TEST

/* The GEMM's int16 epilogue at the extremes, every kernel against the reference: sums and
 * biases near +-2^31, multipliers of either sign up to 2^31 - 1 (and 0), every shift 1..62,
 * full and narrow saturation bounds. */
START_TEST(test_gemm_epilogue_extremes)
{
    struct nn_rng r;
    nn_rng_seed(&r, 77);
    enum { M = 4, K = 64, N = 64 };
    size_t ldb = 2 * N;
    int16_t a[M * K], *bp = malloc(ldb * K / 2 * sizeof(int16_t)), y[M * N];
    int32_t c[M * N], bias[M], mult[M], shift[M];
    ck_assert_ptr_nonnull(bp);
    for (int iter = 0; iter < 400; iter++) {
        int16_t *b = random_q((size_t)K * N, &r, 32767);
        for (int i = 0; i < M * K; i++)
            a[i] = (int16_t)((int32_t)nn_rng_below(&r, 255) - 127);
        if (iter % 4 == 0) /* every weight at +-127, every input at +-32767: the largest sums */
            for (int i = 0; i < M * K; i++)
                a[i] = (int16_t)(i % 2 ? -127 : 127),
                b[i % (K * N)] = (int16_t)(i % 2 ? -32767 : 32767);
        for (int i = 0; i < M; i++) {
            const int64_t bmax = ((int64_t)1 << 31) - ((int64_t)1 << 28) - 1;
            bias[i] = (int32_t)((int64_t)(nn_rng_next(&r) % (uint64_t)(2 * bmax + 1)) - bmax);
            mult[i] = iter % 7 == 0 && i == 0 ? 0 : (int32_t)(uint32_t)nn_rng_next(&r);
            if (mult[i] == INT32_MIN)
                mult[i] = INT32_MAX;
            shift[i] = 1 + (int32_t)((iter * M + i) % 62);
        }
        int32_t lo = iter % 3 ? -32768 : -(int32_t)nn_rng_below(&r, 32768);
        int32_t hi = iter % 3 ? 32767 : (int32_t)nn_rng_below(&r, 32768);
        nn_qpack(b, N, 1, K, N, bp, ldb);
        struct nn_qepi e32 = {.c = c, .sm = N, .sn = 1};
        nn_qgemm(NN_QK_C, M, K, N, a, bp, ldb, &e32);
        for (int kern = NN_QK_C; kern <= NN_QK_VNNI; kern++) {
            if (!nn_qkern_supported((enum nn_qkern)kern))
                continue;
            struct nn_qepi e16 = {.y = y,
                                  .sm = N,
                                  .sn = 1,
                                  .bias = bias,
                                  .mult = mult,
                                  .shift = shift,
                                  .lo = lo,
                                  .hi = hi};
            nn_qgemm((enum nn_qkern)kern, M, K, N, a, bp, ldb, &e16);
            size_t bad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                    bad +=
                        y[i * N + j] !=
                        clamp64(ref_rq((int64_t)c[i * N + j] + bias[i], mult[i], shift[i]), lo, hi);
            ck_assert_msg(bad == 0, "kernel %d, iteration %d: %zu wrong", kern, iter, bad);
        }
        free(b);
    }
    free(bp);
}
END_TEST

/* Requantisation: rounding half up, saturation, the full range of shifts, negatives. */
START_TEST(test_requant)
{
    ck_assert_int_eq(nn_q_requant(3, 1, 1, -100, 100), 2);   /* 1.5 -> 2 */
    ck_assert_int_eq(nn_q_requant(-3, 1, 1, -100, 100), -1); /* -1.5 -> -1 (half up) */
    ck_assert_int_eq(nn_q_requant(-5, 1, 1, -100, 100), -2); /* -2.5 -> -2 */
    ck_assert_int_eq(nn_q_requant(-6, 1, 2, -100, 100), -1); /* -1.5 -> -1 */
    ck_assert_int_eq(nn_q_requant(-7, 1, 2, -100, 100), -2); /* -1.75 -> -2 */
    ck_assert_int_eq(nn_q_requant(1000, 1, 1, -100, 100), 100);
    ck_assert_int_eq(nn_q_requant(-1000, 1, 1, -100, 100), -100);
    ck_assert_int_eq(nn_q_requant(INT32_MAX, INT32_MAX, 62, INT32_MIN, INT32_MAX), 1);
    ck_assert_int_eq(nn_q_requant(INT32_MIN, INT32_MAX, 62, INT32_MIN, INT32_MAX), -1);
    struct nn_rng r;
    nn_rng_seed(&r, 9);
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        int64_t a = (int64_t)(int32_t)nn_rng_next(&r);
        int32_t m = (int32_t)(nn_rng_next(&r) >> 33), s = 1 + (int32_t)nn_rng_below(&r, 62);
        bad += nn_q_requant(a, m, s, INT32_MIN, INT32_MAX) !=
               clamp64(ref_rq(a, m, s), INT32_MIN, INT32_MAX);
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(nn_q_qk_limit(1), 32767);
    ck_assert_int_eq(nn_q_qk_limit(16), 11585);
    for (uint32_t d = 1; d <= 4096; d = d * 3 + 1) {
        int64_t q = nn_q_qk_limit(d);
        ck_assert(q * q * d <= INT32_MAX);
        ck_assert(q == 32767 || (q + 1) * (q + 1) * d > INT32_MAX);
    }
}
END_TEST

/* ---- layers against the reference ---- */

START_TEST(test_int_conv)
{
    struct nn_rng r;
    nn_rng_seed(&r, 77);
    for (int iter = 0; iter < 40; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), ci = 1 + nn_rng_below(&r, 5);
        uint32_t co = 1 + nn_rng_below(&r, 9), kh = 1 + nn_rng_below(&r, 4);
        uint32_t kw = 1 + nn_rng_below(&r, 4), s = 1 + nn_rng_below(&r, 2);
        uint32_t p = nn_rng_below(&r, 3), bias = nn_rng_below(&r, 2);
        uint32_t h = 1 + nn_rng_below(&r, 13), w = 1 + nn_rng_below(&r, 13);
        if (iter < 6) /* degenerate shapes first: 1x1, 1xN, Nx1, primes, 1x1 kernels */
            h = (uint32_t[]){1, 1, 7, 13, 1, 17}[iter], w = (uint32_t[]){1, 9, 1, 11, 1, 19}[iter],
            kh = kw = iter >= 4 ? 1 : kh, p = iter >= 4 ? 0 : p, s = iter == 5 ? 1 : s;
        if (iter >= 38) /* wide images: several im2col bands */
            n = 1, ci = iter == 38 ? 40 : 64, h = 9, w = iter == 38 ? 700 : 1100, co = 5,
            kh = kw = 3, s = iter == 38 ? 1 : 2, p = 1, bias = 1;
        if (h + 2 * p < kh)
            kh = h + 2 * p;
        if (w + 2 * p < kw)
            kw = w + 2 * p;
        char what[96];
        snprintf(what, sizeof(what), "conv n%u c%u->%u k%ux%u s%u p%u b%u %ux%u", n, ci, co, kh, kw,
                 s, p, bias, h, w);
        check_layer(ci, conv(co, kh, kw, s, p, bias), n, h, w, (uint64_t)iter, what);
    }
}
END_TEST

START_TEST(test_int_tconv)
{
    struct nn_rng r;
    nn_rng_seed(&r, 78);
    for (int iter = 0; iter < 30; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), ci = 1 + nn_rng_below(&r, 5);
        uint32_t co = 1 + nn_rng_below(&r, 6), k = 1 + nn_rng_below(&r, 4);
        uint32_t s = 1 + nn_rng_below(&r, 3), p = nn_rng_below(&r, k);
        uint32_t h = 1 + nn_rng_below(&r, 9), w = 1 + nn_rng_below(&r, 9);
        if (iter < 4)
            h = (uint32_t[]){1, 1, 5, 7}[iter], w = (uint32_t[]){1, 11, 1, 13}[iter], p = 0;
        if (iter == 29) /* several column blocks */
            n = 1, ci = 8, co = 32, k = 4, s = 2, p = 1, h = 40, w = 300;
        if ((h - 1) * s + k <= 2 * p || (w - 1) * s + k <= 2 * p)
            p = 0;
        struct nn_layer_desc d = {.type = NN_TCONV2D,
                                  .out_ch = co,
                                  .kh = k,
                                  .kw = k,
                                  .stride = s,
                                  .pad = p,
                                  .bias = iter & 1};
        char what[96];
        snprintf(what, sizeof(what), "tconv n%u c%u->%u k%u s%u p%u %ux%u", n, ci, co, k, s, p, h,
                 w);
        check_layer(ci, d, n, h, w, 100 + (uint64_t)iter, what);
    }
}
END_TEST

START_TEST(test_int_simple)
{
    struct nn_rng r;
    nn_rng_seed(&r, 79);
    for (int iter = 0; iter < 24; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), c = 1 + nn_rng_below(&r, 4);
        uint32_t h = 1 + nn_rng_below(&r, 12), w = 1 + nn_rng_below(&r, 12);
        uint32_t k = 1 + nn_rng_below(&r, 3), s = 1 + nn_rng_below(&r, 3);
        if (h < k)
            h = k;
        if (w < k)
            w = k;
        struct nn_layer_desc ds[] = {
            {.type = NN_RELU},
            {.type = NN_LRELU, .slope = iter % 3 == 0 ? -0.7f : 0.01f + 0.3f * nn_rng_uniform(&r)},
            {.type = NN_UPSAMPLE, .factor = 1 + nn_rng_below(&r, 3)},
            {.type = NN_AVGPOOL, .kh = k, .kw = k, .stride = s},
            {.type = NN_MAXPOOL, .kh = k, .kw = k, .stride = s},
            {.type = NN_AVGPOOL, .kh = 1, .kw = k, .stride = 1},
        };
        for (size_t j = 0; j < sizeof(ds) / sizeof(ds[0]); j++) {
            char what[64];
            snprintf(what, sizeof(what), "type %u n%u c%u %ux%u k%u s%u", ds[j].type, n, c, h, w,
                     ds[j].kh, ds[j].stride);
            check_layer(c, ds[j], n, h, w, 200 + (uint64_t)iter, what);
        }
    }
}
END_TEST

START_TEST(test_int_attention)
{
    struct nn_rng r;
    nn_rng_seed(&r, 80);
    for (int iter = 0; iter < 16; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), heads = 1 + nn_rng_below(&r, 3);
        uint32_t c = heads * (1 + nn_rng_below(&r, 5)), h = 1 + nn_rng_below(&r, 9),
                 w = 1 + nn_rng_below(&r, 11);
        if (iter < 3)
            h = (uint32_t[]){1, 1, 7}[iter], w = (uint32_t[]){1, 13, 11}[iter];
        if (iter == 15) /* several blocks of query rows */
            n = 1, heads = 2, c = 6, h = 13, w = 11;
        char what[64];
        snprintf(what, sizeof(what), "mhsa n%u c%u heads%u %ux%u", n, c, heads, h, w);
        check_layer(c, (struct nn_layer_desc){.type = NN_MHSA, .heads = heads}, n, h, w,
                    300 + (uint64_t)iter, what);
        snprintf(what, sizeof(what), "se n%u c%u %ux%u", n, c, h, w);
        check_layer(c, (struct nn_layer_desc){.type = NN_SE, .hidden = 1 + nn_rng_below(&r, 5)}, n,
                    h, w, 400 + (uint64_t)iter, what);
    }
}
END_TEST

/* A model using every layer type, nested residual blocks included. */
static struct nn_model *every_layer_model(uint64_t seed, struct nn_rng *r)
{
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(3, &m), 0);
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, (struct nn_layer_desc){.type = NN_MAXPOOL, .kh = 2, .kw = 2, .stride = 2});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 1, 1, 1, 0, 0));
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 4});
    ck_assert_int_eq(nn_model_end(m), 0);
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_AVGPOOL, .kh = 2, .kw = 2, .stride = 2});
    add(m,
        (struct nn_layer_desc){
            .type = NN_TCONV2D, .out_ch = 6, .kh = 4, .kw = 4, .stride = 2, .pad = 1, .bias = 1});
    add(m, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = 2});
    add(m, conv(2, 3, 3, 1, 1, 1));
    init_random(m, seed, r);
    return m;
}

START_TEST(test_int_model)
{
    struct nn_rng r;
    nn_rng_seed(&r, 81);
    struct nn_model *m = every_layer_model(3, &r);
    struct nn_qmodel *q = quantize(m, 3, 12, 16, &r, NULL);
    struct rshape is = {2, 3, 12, 16};
    int16_t *x = random_q(rcount(is), &r, 20000);
    check_against_ref(q, x, is, "whole model");
    free(x);
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

/* ---- determinism ---- */

struct worker {
    const struct nn_qmodel *q;
    const int16_t *inputs[2], *want[2];
    size_t in_count, out_count;
    int rounds, mismatches, errors;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct nn_qctx *c = NULL;
    if (nn_qctx_new(w->q, 2, 20, 24, &c)) {
        w->errors++;
        return NULL;
    }
    for (int i = 0; i < w->rounds; i++) {
        struct nn_qtensor in = {(int16_t *)w->inputs[i & 1], 2, 3, 20, 24}, out;
        if (nn_qforward(c, &in, &out))
            w->errors++;
        else if (memcmp(out.data, w->want[i & 1], w->out_count * sizeof(int16_t)) != 0)
            w->mismatches++;
    }
    nn_qctx_free(c);
    return NULL;
}

START_TEST(test_int_threads)
{
    struct nn_rng r;
    nn_rng_seed(&r, 82);
    struct nn_model *m = every_layer_model(4, &r);
    struct nn_qmodel *q = quantize(m, 2, 20, 24, &r, NULL);
    size_t in_count = 2 * 3 * 20 * 24;
    int16_t *in[2] = {random_q(in_count, &r, 25000), random_q(in_count, &r, 25000)};
    int16_t *want[2];
    size_t out_count = 0;
    struct nn_qctx *c = NULL;
    ck_assert_int_eq(nn_qctx_new(q, 2, 20, 24, &c), 0);
    /* One OpenBLAS thread, then two: the integer path must not notice. */
    for (int threads = 1; threads <= 2; threads++) {
        nn_set_threads(threads);
        for (int k = 0; k < 2; k++) {
            struct nn_qtensor t = {in[k], 2, 3, 20, 24}, out;
            ck_assert_int_eq(nn_qforward(c, &t, &out), 0);
            out_count = (size_t)out.n * out.c * out.h * out.w;
            if (threads == 1) {
                want[k] = malloc(out_count * sizeof(int16_t));
                ck_assert_ptr_nonnull(want[k]);
                memcpy(want[k], out.data, out_count * sizeof(int16_t));
            } else {
                ck_assert(memcmp(want[k], out.data, out_count * sizeof(int16_t)) == 0);
            }
        }
    }
    nn_set_threads(1);
    ck_assert(memcmp(want[0], want[1], out_count * sizeof(int16_t)) != 0);
    /* Every kernel gives the same bits. */
    for (int k = NN_QK_C; k <= NN_QK_AVX512; k++) {
        if (nn_qctx_set_kernel(c, (enum nn_qkern)k))
            continue;
        struct nn_qtensor t = {in[1], 2, 3, 20, 24}, out;
        ck_assert_int_eq(nn_qforward(c, &t, &out), 0);
        ck_assert(memcmp(want[1], out.data, out_count * sizeof(int16_t)) == 0);
    }
    nn_qctx_free(c);
    /* Two threads at once on one model, each with its own context, alternating inputs. */
    struct worker w[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        w[k] = (struct worker){.q = q,
                               .inputs = {in[k], in[1 - k]},
                               .want = {want[k], want[1 - k]},
                               .in_count = in_count,
                               .out_count = out_count,
                               .rounds = 40};
        ck_assert_int_eq(pthread_create(&th[k], NULL, worker_run, &w[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert_int_eq(w[k].errors, 0);
        ck_assert_int_eq(w[k].mismatches, 0);
    }
    for (int k = 0; k < 2; k++) {
        free(in[k]);
        free(want[k]);
    }
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

/* ---- accuracy ---- */

/*
 * A small encoder-decoder of the kind the autoencoder uses, quantised on 32 images and compared
 * with the float model on 4 others of the same kind. Stated tolerance: the worst output error
 * at most 3% of the largest float output, the mean error at most 0.5% of it (int8 weights give
 * ~0.4% per layer, int16 activations ~1e-4; inputs beyond the calibrated ranges saturate, which
 * is what a bigger calibration set prevents).
 */
#define ACC_CAL 32
#define ACC_EVAL 4
#define ACC_DIM 24
START_TEST(test_int_accuracy)
{
    struct nn_rng r;
    nn_rng_seed(&r, 83);
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(1, &m), 0);
    add(m, conv(8, 3, 3, 2, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 4});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m,
        (struct nn_layer_desc){
            .type = NN_TCONV2D, .out_ch = 8, .kh = 4, .kw = 4, .stride = 2, .pad = 1, .bias = 1});
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, conv(1, 3, 3, 1, 1, 1));
    init_random(m, 11, &r);
    /* Smooth images in [-0.5, 2.5): two gradients and a blob. */
    size_t plane = ACC_DIM * ACC_DIM;
    float *x = malloc((ACC_CAL + ACC_EVAL) * plane * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (int i = 0; i < ACC_CAL + ACC_EVAL; i++) {
        float a = nn_rng_uniform(&r), b = nn_rng_uniform(&r), cx = ACC_DIM * nn_rng_uniform(&r);
        float cy = ACC_DIM * nn_rng_uniform(&r);
        for (int yy = 0; yy < ACC_DIM; yy++)
            for (int xx = 0; xx < ACC_DIM; xx++)
                x[i * plane + (size_t)(yy * ACC_DIM + xx)] =
                    a * (float)xx / ACC_DIM + b * (float)yy / ACC_DIM +
                    expf(-(((float)xx - cx) * ((float)xx - cx) +
                           ((float)yy - cy) * ((float)yy - cy)) /
                         30.0f) -
                    0.5f;
    }
    struct nn_tensor calib, eval;
    nn_tensor_packed(&calib, x, ACC_CAL, 1, ACC_DIM, ACC_DIM);
    nn_tensor_packed(&eval, x + ACC_CAL * plane, ACC_EVAL, 1, ACC_DIM, ACC_DIM);
    for (int pass = 0; pass < 2; pass++) {
        struct nn_quant_opts o = {.percentile = pass ? 99.999 : 100.0,
                                  .in_scale = pass ? 0 : 1.0f / 8192};
        struct nn_qmodel *q = NULL;
        ck_assert_int_eq(nn_quantize(m, &calib, &o, &q), 0);
        if (!pass)
            ck_assert(nn_qmodel_in_scale(q) == 1.0f / 8192);
        struct nn_quant_report rep;
        ck_assert_int_eq(nn_quant_compare(q, m, &eval, &rep), 0);
        ck_assert_uint_eq(rep.count, ACC_EVAL * plane);
        printf("quantised vs float (percentile %g): max %.5f mean %.6f, largest output %.4f\n",
               o.percentile, rep.max_abs, rep.mean_abs, rep.max_ref);
        fflush(stdout);
        ck_assert(rep.max_ref > 0.01);
        ck_assert_msg(rep.max_abs <= 0.03 * rep.max_ref, "max error %g", rep.max_abs);
        ck_assert_msg(rep.mean_abs <= 0.005 * rep.max_ref, "mean error %g", rep.mean_abs);
        nn_qmodel_free(q);
    }
    free(x);
    nn_model_free(m);
}
END_TEST

/* Quantiser and context refusals. */
START_TEST(test_int_refusals)
{
    struct nn_rng r;
    nn_rng_seed(&r, 84);
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(2, &m), 0);
    add(m, conv(3, 3, 3, 1, 0, 1));
    float x[2 * 5 * 5];
    fill(x, 50, &r, -1, 1);
    struct nn_tensor t;
    nn_tensor_packed(&t, x, 1, 2, 5, 5);
    struct nn_quant_opts o = {.percentile = 100};
    struct nn_qmodel *q = NULL;
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), -EINVAL); /* not initialised */
    init_random(m, 1, &r);
    o.percentile = 50;
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), -EINVAL);
    o.percentile = 100;
    nn_tensor_packed(&t, x, 1, 1, 5, 10);
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), -EINVAL); /* channels */
    nn_tensor_packed(&t, x, 1, 2, 5, 5);
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), 0);
    struct nn_qctx *c = NULL;
    ck_assert_int_eq(nn_qctx_new(q, 1, 2, 2, &c), -EINVAL); /* smaller than the kernel */
    ck_assert_int_eq(nn_qctx_new(q, 1, 0, 5, &c), -EINVAL);
    ck_assert_int_eq(nn_qctx_new(q, 1, NN_MAX_DIM + 1, 5, &c), -EFBIG);
    ck_assert_int_eq(nn_qctx_new(q, 1, 5, 5, &c), 0);
    int16_t qi[50] = {0};
    struct nn_qtensor in = {qi, 1, 2, 5, 6}, out;
    ck_assert_int_eq(nn_qforward(c, &in, &out), -EINVAL);
    in.w = 5;
    ck_assert_int_eq(nn_qforward(c, &in, &out), 0);
    ck_assert_uint_eq(out.c, 3);
    ck_assert_uint_eq(out.h, 3);
    nn_qctx_free(c);
    nn_qctx_free(NULL);
    nn_qmodel_free(q);
    nn_qmodel_free(NULL);
    nn_model_free(m);
}
END_TEST

static Suite *nn_int_suite(void)
{
    Suite *s = suite_create("nn_int");
    TCase *tc = tcase_create("gemm");
    tcase_add_test(tc, test_gemm);
    tcase_add_test(tc, test_gemm_epilogue_extremes);
    tcase_add_test(tc, test_requant);
    suite_add_tcase(s, tc);
    tc = tcase_create("layers");
    tcase_set_timeout(tc, 300); /* slow under sanitizers */
    tcase_add_test(tc, test_int_conv);
    tcase_add_test(tc, test_int_tconv);
    tcase_add_test(tc, test_int_simple);
    tcase_add_test(tc, test_int_attention);
    tcase_add_test(tc, test_int_model);
    suite_add_tcase(s, tc);
    tc = tcase_create("determinism");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_int_threads);
    suite_add_tcase(s, tc);
    tc = tcase_create("quantisation");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_int_accuracy);
    tcase_add_test(tc, test_int_refusals);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(nn_int_suite)
