// SPDX-License-Identifier: MIT
/*
 * Unit tests of the integer convolutions run as phase GEMMs read in place (nn/qconv.c) and of
 * their GEMM (nn_qgemm_tiles): bit-identical to naive loops written from nn/nn.h's arithmetic
 * (int64 sums, no layouts, no fusion), for every kernel the CPU has (VNNI included), over
 * random shapes including 1x1, 1xN, prime sizes, odd channel counts, strides 1 to 4, kernels
 * that are not multiples of the stride and paddings up to the kernel size; with the fusions the
 * planner makes (LeakyReLU into the layer before it, a residual sum into the block's last
 * layer), the layouts it mixes (channel pairs and packed NCHW next to pooling, up-sampling and
 * strided convolutions), batches and a reused context.
 */
#include <check.h>
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

static struct nn_layer_desc conv(uint32_t out, uint32_t k, uint32_t s, uint32_t p)
{
    return (struct nn_layer_desc){
        .type = NN_CONV2D, .out_ch = out, .kh = k, .kw = k, .stride = s, .pad = p, .bias = 1};
}

static struct nn_layer_desc tconv(uint32_t out, uint32_t kh, uint32_t kw, uint32_t s, uint32_t p,
                                  uint32_t bias)
{
    return (struct nn_layer_desc){
        .type = NN_TCONV2D, .out_ch = out, .kh = kh, .kw = kw, .stride = s, .pad = p, .bias = bias};
}

static struct nn_layer_desc lrelu(float slope)
{
    return (struct nn_layer_desc){.type = NN_LRELU, .slope = slope};
}

static struct nn_qmodel *quantize(struct nn_model *m, uint32_t h, uint32_t w, uint64_t seed)
{
    struct nn_rng r;
    nn_rng_seed(&r, seed);
    ck_assert_int_eq(nn_model_init(m, seed), 0);
    size_t np;
    float *p = nn_model_params(m, &np);
    for (size_t i = 0; i < np; i++)
        p[i] += 0.05f * (2 * nn_rng_uniform(&r) - 1);
    uint32_t c = nn_model_in_channels(m);
    size_t count = (size_t)2 * c * h * w;
    float *x = malloc(count * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < count; i++)
        x[i] = 2 * nn_rng_uniform(&r) - 1;
    struct nn_tensor t;
    nn_tensor_packed(&t, x, 2, c, h, w);
    struct nn_quant_opts o = {.percentile = 100.0};
    struct nn_qmodel *q = NULL;
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), 0);
    free(x);
    return q;
}

/* Run q on x with every kernel the CPU has, twice on one context, against the reference. */
static void check_model(const struct nn_qmodel *q, const int16_t *x, struct rshape is,
                        const char *what)
{
    struct rshape os;
    int16_t *want = ref_seq(q, 0, q->nlayers, x, is, &os);
    struct nn_qctx *c = NULL;
    ck_assert_int_eq(nn_qctx_new(q, is.n, is.h, is.w, &c), 0);
    int kernels = 0;
    for (int k = NN_QK_C; k < NN_QK_COUNT; k++) {
        if (nn_qctx_set_kernel(c, (enum nn_qkern)k) != 0)
            continue;
        kernels++;
        for (int rep = 0; rep < 2; rep++) {
            struct nn_qtensor in = {(int16_t *)x, is.n, is.c, is.h, is.w}, out;
            ck_assert_int_eq(nn_qforward(c, &in, &out), 0);
            ck_assert(out.n == os.n && out.c == os.c && out.h == os.h && out.w == os.w);
            size_t i = 0;
            while (i < rcount(os) && out.data[i] == want[i])
                i++;
            ck_assert_msg(i == rcount(os), "%s (kernel %d, run %d): [%zu] %d vs reference %d", what,
                          k, rep, i, out.data[i], want[i]);
        }
    }
    ck_assert_int_ge(kernels, 1);
    nn_qctx_free(c);
    free(want);
}

/* Quantise m (inputs h x w) and check it on full-range input and on small input. */
static void check_float_model(struct nn_model *m, uint32_t n, uint32_t h, uint32_t w, uint64_t seed,
                              const char *what)
{
    struct nn_rng r;
    nn_rng_seed(&r, seed ^ 0x5a5a);
    struct nn_qmodel *q = quantize(m, h, w, seed);
    struct rshape is = {n, nn_model_in_channels(m), h, w};
    for (int pass = 0; pass < 2; pass++) {
        int16_t *x = random_q(rcount(is), &r, pass ? 300 : 32767);
        check_model(q, x, is, what);
        free(x);
    }
    nn_qmodel_free(q);
}

/* ---- the GEMM with its epilogue ---- */

struct gemm_out {
    int16_t *y;
    uint32_t n;
};

static void gemm_store(void *arg, uint32_t r0, uint32_t j0, uint32_t cols,
                       int16_t v[NN_QMR][NN_QNR])
{
    struct gemm_out *g = arg;
    for (uint32_t i = 0; i < NN_QMR; i++)
        for (uint32_t j = 0; j < cols; j++)
            g->y[(size_t)(r0 + i) * g->n + j0 + j] = v[i][j];
}

/* nn_qgemm_tiles: B pair-rows at scattered offsets, per-row requantisation, saturation to a
 * random range, LeakyReLU with a signed slope or none, against int64 loops. */
START_TEST(test_qgemm_tiles)
{
    struct nn_rng r;
    nn_rng_seed(&r, 31);
    for (int iter = 0; iter < 80; iter++) {
        uint32_t m = 1 + nn_rng_below(&r, 13), k2 = nn_rng_below(&r, 40),
                 n = 1 + nn_rng_below(&r, 200);
        if (iter < 7) /* 1x1x1, 1xN, prime, exact tiles, no depth */
            m = (uint32_t[]){1, 1, 7, 4, 13, 8, 3}[iter],
            k2 = (uint32_t[]){1, 1, 11, 2, 3, 32, 0}[iter],
            n = (uint32_t[]){1, 97, 31, 64, 1, 128, 5}[iter];
        size_t mp = nn_q_round(m, NN_QMR), lda = 2 * (size_t)k2, span = nn_q_round(n, NN_QNR);
        size_t bsize = (size_t)(k2 + 1) * 2 * (span + 7) + 1;
        int16_t *a = calloc(mp * lda + 1, sizeof(int16_t));
        int16_t *b = random_q(bsize, &r, 32767);
        int16_t *y = malloc(mp * n * sizeof(int16_t));
        ptrdiff_t *off = malloc((k2 + 1) * sizeof(ptrdiff_t));
        struct nn_qrow *rows = malloc(mp * sizeof(*rows));
        ck_assert(a && y && off && rows);
        /* The int32 bound: |a| * 2 k2 * 32768 + |bias| < 2^31. */
        int32_t amax = k2 ? (int32_t)(32767 / (2 * k2) < 127 ? 32767 / (2 * k2) : 127) : 0;
        for (uint32_t i = 0; i < m; i++)
            for (size_t j = 0; j < lda; j++)
                a[i * lda + j] =
                    (int16_t)((int32_t)nn_rng_below(&r, 2 * (uint32_t)amax + 1) - amax);
        /* Pair-rows anywhere in b, overlapping, at odd and even int16 offsets. */
        for (uint32_t kk = 0; kk < k2; kk++)
            off[kk] = (ptrdiff_t)nn_rng_below(&r, (uint32_t)(bsize - 2 * span - 1));
        for (size_t i = 0; i < mp; i++)
            rows[i] = i < m ? (struct nn_qrow){(int32_t)nn_rng_below(&r, 2000001) - 1000000,
                                               (int32_t)nn_rng_below(&r, 1u << 31),
                                               1 + (int32_t)nn_rng_below(&r, 62)}
                            : (struct nn_qrow){0, 0, 1};
        if (iter % 5 == 0) /* small shifts: the 64-bit products are all that is exact */
            for (size_t i = 0; i < m; i++)
                rows[i].shift = 1 + (int32_t)nn_rng_below(&r, 4);
        struct gemm_out go = {y, n};
        struct nn_qtile t = {.m = m,
                             .k2 = k2,
                             .n = n,
                             .a = a,
                             .b = b,
                             .off = off,
                             .rows = rows,
                             .lo = -32768 + (int32_t)nn_rng_below(&r, 30000),
                             .hi = 32767 - (int32_t)nn_rng_below(&r, 30000),
                             .lrelu = iter % 3 != 0,
                             .lm = (int32_t)nn_rng_below(&r, 1u << 31) * (iter % 2 ? 1 : -1),
                             .ls = 1 + (int32_t)nn_rng_below(&r, 40),
                             .store = gemm_store,
                             .arg = &go};
        for (int kern = NN_QK_C; kern < NN_QK_COUNT; kern++) {
            if (!nn_qkern_supported((enum nn_qkern)kern))
                continue;
            memset(y, 0x55, mp * n * sizeof(int16_t));
            nn_qgemm_tiles((enum nn_qkern)kern, &t);
            size_t bad = 0;
            for (uint32_t i = 0; i < m; i++)
                for (uint32_t j = 0; j < n; j++) {
                    int64_t s = rows[i].bias;
                    for (uint32_t kk = 0; kk < k2; kk++)
                        for (int e = 0; e < 2; e++)
                            s += (int64_t)a[i * lda + 2 * kk + e] * b[off[kk] + 2 * j + e];
                    int64_t v = ref_rq(s, rows[i].mult, rows[i].shift);
                    v = v < t.lo ? t.lo : v > t.hi ? t.hi : v;
                    if (t.lrelu && v < 0)
                        v = ref_sat(ref_rq(v, t.lm, t.ls));
                    bad += y[(size_t)i * n + j] != v;
                }
            ck_assert_msg(bad == 0, "kernel %d m%u k2 %u n%u: %zu wrong", kern, m, k2, n, bad);
        }
        free(a);
        free(b);
        free(y);
        free(off);
        free(rows);
    }
}
END_TEST

/* nn_qres_add: the residual sum of nn/nn.h, in place and not, every length up to past a
 * vector, shifts from 1 to 62, saturation both ways. */
START_TEST(test_qres_add)
{
    struct nn_rng r;
    nn_rng_seed(&r, 34);
    for (int iter = 0; iter < 200; iter++) {
        size_t n = iter < 70 ? (size_t)iter : 1 + nn_rng_below(&r, 300);
        int16_t *x = random_q(n, &r, 32767), *f = random_q(n, &r, 32767);
        int16_t *y = malloc(n * sizeof(int16_t) + 1), *want = malloc(n * sizeof(int16_t) + 1);
        ck_assert(y && want);
        int32_t k[4] = {(int32_t)nn_rng_below(&r, 1u << 31), 1 + (int32_t)nn_rng_below(&r, 62),
                        (int32_t)nn_rng_below(&r, 1u << 31), 1 + (int32_t)nn_rng_below(&r, 62)};
        if (iter % 2) /* the usual case: multipliers near 2^30, shifts near 30 */
            k[1] = 29 + (int32_t)nn_rng_below(&r, 4), k[3] = 29 + (int32_t)nn_rng_below(&r, 4);
        for (size_t i = 0; i < n; i++)
            want[i] = ref_sat(ref_rq(x[i], k[0], k[1]) + ref_rq(f[i], k[2], k[3]));
        for (int kern = NN_QK_C; kern < NN_QK_COUNT; kern++) {
            if (!nn_qkern_supported((enum nn_qkern)kern))
                continue;
            nn_qres_add((enum nn_qkern)kern, y, x, f, n, k);
            ck_assert_msg(n == 0 || memcmp(y, want, n * sizeof(int16_t)) == 0, "kernel %d n %zu",
                          kern, n);
            int16_t *xc = malloc(n * sizeof(int16_t) + 1);
            ck_assert_ptr_nonnull(xc);
            memcpy(xc, x, n * sizeof(int16_t));
            nn_qres_add((enum nn_qkern)kern, xc, xc, f, n, k);
            ck_assert(n == 0 || memcmp(xc, want, n * sizeof(int16_t)) == 0);
            free(xc);
        }
        free(x);
        free(f);
        free(y);
        free(want);
    }
}
END_TEST

/* ---- layers and chains ---- */

/* One convolution (stride 1) or transposed convolution, with or without a LeakyReLU after it
 * (fused), on random geometry. */
START_TEST(test_qconv_layers)
{
    struct nn_rng r;
    nn_rng_seed(&r, 32);
    for (int iter = 0; iter < 150; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), ci = 1 + nn_rng_below(&r, 7);
        uint32_t co = 1 + nn_rng_below(&r, 9), kh = 1 + nn_rng_below(&r, 8);
        uint32_t kw = 1 + nn_rng_below(&r, 8), s = 1 + nn_rng_below(&r, 4);
        uint32_t p = nn_rng_below(&r, (kh < kw ? kh : kw) + 1);
        uint32_t h = 1 + nn_rng_below(&r, 11), w = 1 + nn_rng_below(&r, 13);
        int transposed = iter >= 146 || iter % 2, fuse = iter % 3 != 0;
        if (iter < 8) /* 1x1, 1xN, Nx1, primes */
            h = (uint32_t[]){1, 1, 7, 13, 1, 17, 2, 1}[iter],
            w = (uint32_t[]){1, 9, 1, 11, 1, 19, 3, 23}[iter];
        if (iter >= 146) /* the autoencoder's shapes */
            n = 1, ci = 16, co = iter == 146 ? 1 : 16, kh = kw = iter == 146 ? 8 : 4,
            s = iter == 146 ? 4 : 2, p = iter == 146 ? 2 : 1, h = 9, w = 14 + (uint32_t)iter % 2;
        struct nn_layer_desc d;
        if (transposed) {
            while ((h - 1) * s + kh <= 2 * p || (w - 1) * s + kw <= 2 * p)
                p--;
            d = tconv(co, kh, kw, s, p, iter % 4 != 1);
        } else {
            while (h + 2 * p < kh || w + 2 * p < kw)
                p++;
            d = (struct nn_layer_desc){.type = NN_CONV2D,
                                       .out_ch = co,
                                       .kh = kh,
                                       .kw = kw,
                                       .stride = 1,
                                       .pad = p,
                                       .bias = iter % 4 != 0};
        }
        struct nn_model *m = NULL;
        ck_assert_int_eq(nn_model_new(ci, &m), 0);
        add(m, d);
        if (fuse)
            add(m, lrelu(iter % 5 == 0 ? -0.6f : 0.1f));
        char what[128];
        snprintf(what, sizeof(what), "%s n%u c%u->%u k%ux%u s%u p%u %ux%u lrelu %d",
                 transposed ? "tconv" : "conv", n, ci, co, kh, kw, transposed ? s : 1, p, h, w,
                 fuse);
        check_float_model(m, n, h, w, 500 + (uint64_t)iter, what);
        nn_model_free(m);
    }
}
END_TEST

/* Chains that make the planner fuse and mix layouts: a residual block whose last layer
 * completes the sum (fused) beside one that cannot (its only layer reads x), pair layouts next
 * to pooling, up-sampling and a strided convolution (packed), odd channel counts. */
START_TEST(test_qconv_chains)
{
    struct nn_rng r;
    nn_rng_seed(&r, 33);
    for (int iter = 0; iter < 24; iter++) {
        uint32_t c1 = 1 + nn_rng_below(&r, 6), c2 = 1 + nn_rng_below(&r, 6);
        uint32_t n = 1 + nn_rng_below(&r, 2), h = 1 + nn_rng_below(&r, 9),
                 w = 1 + nn_rng_below(&r, 9);
        if (iter < 3)
            h = (uint32_t[]){1, 1, 5}[iter], w = (uint32_t[]){1, 7, 1}[iter];
        struct nn_model *m = NULL;
        ck_assert_int_eq(nn_model_new(1 + nn_rng_below(&r, 3), &m), 0);
        add(m, conv(c1, 3, 1, 1));
        add(m, lrelu(0.1f));
        add(m, (struct nn_layer_desc){.type = NN_RESIDUAL}); /* fused: conv, lrelu, conv */
        add(m, conv(c2, 3, 1, 1));
        add(m, lrelu(0.2f));
        uint32_t k = 1 + 2 * nn_rng_below(&r, 2);
        add(m, conv(c1, k, 1, k / 2));
        ck_assert_int_eq(nn_model_end(m), 0);
        if (iter % 2 == 0) { /* not fused: the conv reads x itself */
            add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
            add(m, conv(c1, 3, 1, 1));
            ck_assert_int_eq(nn_model_end(m), 0);
        }
        add(m, tconv(c2, 4, 4, 2, 1, 1));
        add(m, lrelu(0.1f));
        if (iter % 3 == 0) { /* packed layouts in between */
            add(m, (struct nn_layer_desc){.type = NN_MAXPOOL, .kh = 2, .kw = 2, .stride = 2});
            add(m, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = 2});
        }
        if (iter % 3 == 1) {
            add(m, conv(c1, 3, 2, 1)); /* stride 2: im2col, packed */
            add(m, (struct nn_layer_desc){.type = NN_RELU});
        }
        add(m, (struct nn_layer_desc){.type = NN_RESIDUAL}); /* fused into a tconv */
        add(m, conv(c2, 3, 1, 1));
        add(m, lrelu(0.3f));
        add(m, tconv(iter % 3 == 1 ? c1 : c2, 3, 3, 1, 1, 1));
        ck_assert_int_eq(nn_model_end(m), 0);
        add(m, tconv(1 + nn_rng_below(&r, 2), 8, 8, 4, 2, 1));
        char what[96];
        snprintf(what, sizeof(what), "chain %d n%u c%u/%u %ux%u", iter, n, c1, c2, h, w);
        check_float_model(m, n, h, w, 700 + (uint64_t)iter, what);
        nn_model_free(m);
    }
}
END_TEST

static Suite *nn_qconv_suite(void)
{
    Suite *s = suite_create("nn_qconv");
    TCase *tc = tcase_create("gemm");
    tcase_add_test(tc, test_qgemm_tiles);
    tcase_add_test(tc, test_qres_add);
    suite_add_tcase(s, tc);
    tc = tcase_create("layers");
    tcase_set_timeout(tc, 300); /* slow under sanitizers */
    tcase_add_test(tc, test_qconv_layers);
    tcase_add_test(tc, test_qconv_chains);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(nn_qconv_suite)
