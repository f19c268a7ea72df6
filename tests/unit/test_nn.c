// SPDX-License-Identifier: MIT
/*
 * Unit tests of nn/ (float engine): tensors and the PRNG, model building and its refusals,
 * convolutions against naive loops, every layer's backward against central differences, and
 * memory planning (an inference context computes what a training context computes, in less
 * memory). Losses, training and threads are in nn_train.c.
 *
 * Gradient checks perturb one input or parameter by +-eps in float and compare
 * (L(+) - L(-)) / (actual float step) with the analytic gradient of L = sum(r * y), r random;
 * L is accumulated in double. The tolerance, |num - ana| <= GC_ATOL + GC_RTOL * max(|num|,
 * |ana|), covers float rounding in the forward pass (about 1e-6 relative on L, divided by
 * 2 eps) and the O(eps^2) truncation error; inputs of piecewise-linear layers are kept away
 * from their kinks by more than eps.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "tests/unit/unit.h"

#define GC_EPS 1e-2f
#define GC_ATOL 5e-4
#define GC_RTOL 2e-3
#define GC_MAX_COORDS 400 /* per tensor; beyond that a random subset */

/* ---- helpers ---- */

static struct nn_model *model_new(uint32_t in_ch)
{
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(in_ch, &m), 0);
    return m;
}

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

static struct nn_layer_desc tconv(uint32_t out, uint32_t k, uint32_t s, uint32_t p, uint32_t bias)
{
    return (struct nn_layer_desc){
        .type = NN_TCONV2D, .out_ch = out, .kh = k, .kw = k, .stride = s, .pad = p, .bias = bias};
}

static struct nn_layer_desc pool(uint32_t type, uint32_t k, uint32_t s)
{
    return (struct nn_layer_desc){.type = type, .kh = k, .kw = k, .stride = s};
}

static void fill_uniform(float *x, size_t n, struct nn_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * nn_rng_uniform(r);
}

enum input_kind {
    IN_UNIFORM, /* U(-1, 1) */
    IN_AWAY,    /* |x| in [0.1, 1]: no rectifier kink within eps */
    IN_SPREAD,  /* distinct values 0.05 apart: no pooling tie within eps */
};

static void fill_input(float *x, size_t n, enum input_kind kind, struct nn_rng *r)
{
    if (kind == IN_UNIFORM) {
        fill_uniform(x, n, r, -1.0f, 1.0f);
    } else if (kind == IN_AWAY) {
        for (size_t i = 0; i < n; i++) {
            float v = 0.1f + 0.9f * nn_rng_uniform(r);
            x[i] = nn_rng_next(r) & 1 ? v : -v;
        }
    } else {
        uint32_t *idx = malloc(n * sizeof(*idx));
        ck_assert_ptr_nonnull(idx);
        for (size_t i = 0; i < n; i++)
            idx[i] = (uint32_t)i;
        nn_rng_shuffle(r, idx, n);
        for (size_t i = 0; i < n; i++)
            x[i] = ((float)idx[i] - (float)n / 2) * 0.05f;
        free(idx);
    }
}

static double objective(struct nn_ctx *c, const struct nn_tensor *in, const float *r)
{
    struct nn_tensor out;
    ck_assert_int_eq(nn_forward(c, in, &out), 0);
    double s = 0;
    size_t count = nn_tensor_count(&out);
    for (size_t i = 0; i < count; i++)
        s += (double)r[i] * out.data[i];
    return s;
}

struct gc_stats {
    double worst; /* largest error / tolerance seen */
    size_t checked, kinks;
};

/*
 * Compare one coordinate. L0 is the objective at the unperturbed point, lp and lm at +-step.
 * Where a perturbation crosses a kink that no input choice can avoid (the ReLU inside
 * squeeze-and-excitation), the central difference mixes two slopes; such a coordinate is
 * accepted only if the one-sided slopes disagree (the kink is real) and the analytic value
 * matches one of them. Kinks must stay rare (checked by the caller).
 */
static void gc_compare(const char *what, const char *kind, size_t i, double lp, double l0,
                       double lm, double up, double down, double ana, struct gc_stats *st)
{
    double num = (lp - lm) / (up - down);
    double tol = GC_ATOL + GC_RTOL * fmax(fabs(num), fabs(ana));
    double err = fabs(num - ana);
    st->checked++;
    if (err > tol) {
        double right = (lp - l0) / (up - (up + down) / 2),
               left = (l0 - lm) / ((up + down) / 2 - down);
        double side_tol = 5 * (GC_ATOL + GC_RTOL * fabs(ana));
        int kink = fabs(right - left) > 2 * tol &&
                   (fabs(right - ana) <= side_tol || fabs(left - ana) <= side_tol);
        ck_assert_msg(kink, "%s: d/d%s[%zu] numeric %.6g analytic %.6g (one-sided %.6g %.6g)", what,
                      kind, i, num, ana, left, right);
        st->kinks++;
        return;
    }
    if (err / tol > st->worst)
        st->worst = err / tol;
}

/* Objective at v[i] +- GC_EPS; reports the float values actually used. */
static void central(struct nn_ctx *c, const struct nn_tensor *in, const float *r, float *v,
                    double *lp, double *lm, double *up, double *down)
{
    float keep = *v, u = keep + GC_EPS, d = keep - GC_EPS;
    *v = u;
    *lp = objective(c, in, r);
    *v = d;
    *lm = objective(c, in, r);
    *v = keep;
    *up = u;
    *down = d;
}

/* Check dL/dinput and dL/dparams of an initialised model on an input of shape (n, h, w). */
static struct gc_stats gradcheck_n(const char *what, struct nn_model *m, uint32_t n, uint32_t h,
                                   uint32_t w, enum input_kind kind, uint64_t seed, size_t maxc)
{
    struct gc_stats st = {0};
    struct nn_ctx *c = NULL;
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    ck_assert_int_eq(nn_ctx_new(m, n, h, w, NN_CTX_TRAIN, &c), 0);
    struct nn_tensor in, out, din;
    size_t in_count = (size_t)n * nn_model_in_channels(m) * h * w;
    float *x = malloc(in_count * sizeof(float));
    ck_assert_ptr_nonnull(x);
    nn_tensor_packed(&in, x, n, nn_model_in_channels(m), h, w);
    fill_input(x, in_count, kind, &rng);
    nn_ctx_out_shape(c, &out);
    size_t out_count = nn_tensor_count(&out);
    float *r = malloc(out_count * sizeof(float));
    ck_assert_ptr_nonnull(r);
    fill_uniform(r, out_count, &rng, -1.0f, 1.0f);

    size_t np;
    float *params = nn_model_params(m, &np);
    nn_ctx_zero_grads(c);
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    ck_assert_int_eq(nn_backward(c, r, &din), 0);
    ck_assert_uint_eq(nn_tensor_count(&din), in_count);
    float *dx = malloc(in_count * sizeof(float)), *dw = malloc((np + 1) * sizeof(float));
    ck_assert_ptr_nonnull(dx);
    ck_assert_ptr_nonnull(dw);
    memcpy(dx, din.data, in_count * sizeof(float));
    if (np)
        memcpy(dw, nn_ctx_grads(c, NULL), np * sizeof(float));

    double l0 = objective(c, &in, r), lp, lm, up, down;
    size_t todo = in_count < maxc ? in_count : maxc;
    for (size_t k = 0; k < todo; k++) {
        size_t i = todo == in_count ? k : nn_rng_below(&rng, (uint32_t)in_count);
        central(c, &in, r, &x[i], &lp, &lm, &up, &down);
        gc_compare(what, "x", i, lp, l0, lm, up, down, dx[i], &st);
    }
    todo = np < maxc ? np : maxc;
    for (size_t k = 0; k < todo; k++) {
        size_t i = todo == np ? k : nn_rng_below(&rng, (uint32_t)np);
        central(c, &in, r, &params[i], &lp, &lm, &up, &down);
        gc_compare(what, "w", i, lp, l0, lm, up, down, dw[i], &st);
    }
    if (getenv("NN_GC_VERBOSE"))
        fprintf(stderr, "%s: %zu coordinates, worst error/tolerance %.3f, %zu at kinks\n", what,
                st.checked, st.worst, st.kinks);
    ck_assert_msg(st.kinks <= 2 + st.checked / 50, "%s: %zu of %zu coordinates at kinks", what,
                  st.kinks, st.checked);
    free(dw);
    free(dx);
    free(r);
    free(x);
    nn_ctx_free(c);
    return st;
}

static struct gc_stats gradcheck(const char *what, struct nn_model *m, uint32_t n, uint32_t h,
                                 uint32_t w, enum input_kind kind, uint64_t seed)
{
    return gradcheck_n(what, m, n, h, w, kind, seed, GC_MAX_COORDS);
}

/* One layer on its own. */
static void gradcheck_layer(const char *what, uint32_t in_ch, struct nn_layer_desc d, uint32_t n,
                            uint32_t h, uint32_t w, enum input_kind kind)
{
    struct nn_model *m = model_new(in_ch);
    add(m, d);
    ck_assert_int_eq(nn_model_init(m, 1000 + h * 31 + w), 0);
    gradcheck(what, m, n, h, w, kind, 7 * n + h + 13 * w + d.type);
    nn_model_free(m);
}

/* ---- tensors and PRNG ---- */

START_TEST(test_rng)
{
    /* splitmix64(0) = 0xe220a8397b1dcdaf is the published first output; xoshiro256** from
     * there computed with an independent implementation. */
    struct nn_rng r;
    nn_rng_seed(&r, 0);
    ck_assert_uint_eq(r.s[0], 0xe220a8397b1dcdafull);
    ck_assert_uint_eq(nn_rng_next(&r), 0x99ec5f36cb75f2b4ull);
    ck_assert_uint_eq(nn_rng_next(&r), 0xbf6e1f784956452aull);
    nn_rng_seed(&r, 42);
    ck_assert_uint_eq(nn_rng_next(&r), 0x15780b2e0c2ec716ull);
    ck_assert_uint_eq(nn_rng_next(&r), 0x6104d9866d113a7eull);
    ck_assert_uint_eq(nn_rng_next(&r), 0xae17533239e499a1ull);
    /* Ranges, and every value of a small bound reached. */
    int seen[7] = {0};
    for (int i = 0; i < 10000; i++) {
        float u = nn_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        uint32_t b = nn_rng_below(&r, 7);
        ck_assert_uint_lt(b, 7);
        seen[b]++;
    }
    for (int i = 0; i < 7; i++)
        ck_assert_int_gt(seen[i], 1200);
    uint32_t idx[50];
    for (uint32_t i = 0; i < 50; i++)
        idx[i] = i;
    nn_rng_shuffle(&r, idx, 50);
    uint64_t mask = 0;
    for (int i = 0; i < 50; i++)
        mask |= 1ull << idx[i];
    ck_assert_uint_eq(mask, (1ull << 50) - 1);
}
END_TEST

START_TEST(test_tensor)
{
    float buf[2 * 3 * 4 * 5];
    struct nn_tensor t;
    nn_tensor_packed(&t, buf, 2, 3, 4, 5);
    ck_assert_uint_eq(nn_tensor_count(&t), 120);
    ck_assert_int_eq(t.sw, 1);
    ck_assert_int_eq(t.sh, 5);
    ck_assert_int_eq(t.sc, 20);
    ck_assert_int_eq(t.sn, 60);
    ck_assert_ptr_eq(nn_tensor_at(&t, 1, 2, 3, 4), buf + 119);
    for (int i = 0; i < 120; i++)
        buf[i] = (float)i;
    /* An NHWC view of other memory, and a copy both ways. */
    float nhwc[120], back[120];
    struct nn_tensor v = {nhwc, 2, 3, 4, 5, 60, 1, 15, 3};
    ck_assert_int_eq(nn_tensor_copy(&v, &t), 0);
    ck_assert_float_eq(nhwc[(1 * 4 * 5 + 2 * 5 + 3) * 3 + 1], buf[60 + 20 + 10 + 3]);
    struct nn_tensor b;
    nn_tensor_packed(&b, back, 2, 3, 4, 5);
    ck_assert_int_eq(nn_tensor_copy(&b, &v), 0);
    ck_assert_mem_eq(back, buf, sizeof(buf));
    /* Negative strides: a horizontal flip. */
    struct nn_tensor f = t;
    f.data = buf + 4;
    f.sw = -1;
    ck_assert_int_eq(nn_tensor_copy(&b, &f), 0);
    ck_assert_float_eq(back[0], 4.0f);
    ck_assert_float_eq(back[4], 0.0f);
    b.c = 2;
    ck_assert_int_eq(nn_tensor_copy(&b, &t), -EINVAL);
}
END_TEST

/* The engine reads inputs through their strides: a strided view gives the packed result. */
START_TEST(test_strided_input)
{
    struct nn_model *m = model_new(3);
    add(m, conv(4, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    ck_assert_int_eq(nn_model_init(m, 5), 0);
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 2, 5, 6, 0, &c), 0);
    float packed[2 * 3 * 5 * 6], nhwc[2 * 3 * 5 * 6], first[2 * 4 * 5 * 6];
    struct nn_rng r;
    nn_rng_seed(&r, 9);
    fill_uniform(packed, 180, &r, -1, 1);
    struct nn_tensor in, out, v = {nhwc, 2, 3, 5, 6, 90, 1, 18, 3};
    nn_tensor_packed(&in, packed, 2, 3, 5, 6);
    ck_assert_int_eq(nn_tensor_copy(&v, &in), 0);
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    ck_assert_uint_eq(nn_tensor_count(&out), 240);
    memcpy(first, out.data, sizeof(first));
    ck_assert_int_eq(nn_forward(c, &v, &out), 0);
    ck_assert_mem_eq(first, out.data, sizeof(first));
    v.h = 4;
    ck_assert_int_eq(nn_forward(c, &v, &out), -EINVAL);
    nn_ctx_free(c);
    nn_model_free(m);
}
END_TEST

/* ---- model building ---- */

START_TEST(test_model_build)
{
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(0, &m), -EINVAL);
    ck_assert_int_eq(nn_model_new(NN_MAX_CHANNELS + 1, &m), -EFBIG);
    m = model_new(3);
    struct nn_layer_desc d = conv(8, 3, 3, 1, 1, 1);
    d.stride = 0;
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = conv(0, 3, 3, 1, 1, 1);
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = conv(8, 3, 3, 1, 1, 2);
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = conv(8, 3, 3, 1, 1, 1);
    d.heads = 1; /* a field conv2d does not use */
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = conv(8, NN_MAX_KERNEL + 1, 3, 1, 1, 1);
    ck_assert_int_eq(nn_model_add(m, &d), -EFBIG);
    d = (struct nn_layer_desc){.type = 99};
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = (struct nn_layer_desc){.type = NN_LRELU, .slope = NAN};
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = (struct nn_layer_desc){.type = NN_MHSA, .heads = 2}; /* 3 channels */
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    d = (struct nn_layer_desc){.type = NN_UPSAMPLE};
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL);
    ck_assert_int_eq(nn_model_end(m), -EINVAL);     /* nothing open */
    ck_assert_int_eq(nn_model_init(m, 1), -EINVAL); /* no layers */

    add(m, conv(8, 3, 3, 2, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    ck_assert_int_eq(nn_model_end(m), -EINVAL); /* empty block */
    add(m, conv(4, 1, 1, 1, 0, 0));
    ck_assert_int_eq(nn_model_end(m), -EINVAL); /* 8 -> 4 channels */
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 2});
    add(m, conv(8, 3, 3, 1, 1, 1));
    ck_assert_int_eq(nn_model_init(m, 1), -EINVAL); /* block still open */
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, tconv(2, 2, 2, 0, 1));
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    ck_assert_int_eq(nn_model_add(m, &d), -EINVAL); /* frozen */
    ck_assert_int_eq(nn_model_init(m, 1), -EINVAL);

    ck_assert_uint_eq(nn_model_in_channels(m), 3);
    ck_assert_uint_eq(nn_model_out_channels(m), 2);
    ck_assert_uint_eq(nn_model_layer_count(m), 8);
    const uint32_t types[8] = {NN_CONV2D, NN_RESIDUAL, NN_CONV2D, NN_RESIDUAL,
                               NN_MHSA,   NN_SE,       NN_CONV2D, NN_TCONV2D};
    const size_t counts[8] = {
        8 * 3 * 9 + 8, 0, 4 * 8, 0, 4 * (16 + 4), 2 * 2 * 4 + 2 + 4, 8 * 4 * 9 + 8, 8 * 2 * 4 + 2};
    size_t total = 0;
    for (size_t i = 0; i < 8; i++) {
        const struct nn_layer_desc *l = nn_model_layer(m, i);
        ck_assert_uint_eq(l->type, types[i]);
        size_t count;
        float *p = nn_model_layer_params(m, i, &count);
        ck_assert_uint_eq(count, counts[i]);
        ck_assert_uint_eq(nn_model_param_offset(m, i), total);
        ck_assert_ptr_eq(p, nn_model_params(m, NULL) + total);
        total += count;
    }
    ck_assert_uint_eq(nn_model_layer(m, 1)->span, 5);
    ck_assert_uint_eq(nn_model_layer(m, 3)->span, 1);
    ck_assert_uint_eq(nn_model_layer(m, 2)->in_ch, 8);
    ck_assert_uint_eq(nn_model_layer(m, 4)->in_ch, 4);
    ck_assert_ptr_null(nn_model_layer(m, 8));
    size_t np;
    nn_model_params(m, &np);
    ck_assert_uint_eq(np, total);

    /* Kaiming-uniform bound, zero biases, and the same seed gives the same weights. */
    float *w0 = nn_model_layer_params(m, 0, NULL);
    float bound = sqrtf(6.0f / 27.0f), maxabs = 0;
    for (int i = 0; i < 8 * 27; i++)
        maxabs = fmaxf(maxabs, fabsf(w0[i]));
    ck_assert(maxabs <= bound && maxabs > 0.8f * bound);
    for (int i = 8 * 27; i < 8 * 27 + 8; i++)
        ck_assert_float_eq(w0[i], 0.0f);
    struct nn_model *m2 = model_new(3);
    add(m2, conv(8, 3, 3, 2, 1, 1));
    ck_assert_int_eq(nn_model_init(m2, 1), 0);
    ck_assert_mem_eq(nn_model_params(m2, NULL), w0, 8 * 27 * sizeof(float));
    nn_model_free(m2);

    /* Contexts: input too small, residual changing the spatial shape, limits. */
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 1, 6, 6, 0, &c), 0);
    struct nn_tensor s;
    nn_ctx_out_shape(c, &s);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(s.c, 2);
    ck_assert_uint_eq(s.h, 6);
    ck_assert_uint_eq(s.w, 6);
    ck_assert_ptr_null(nn_ctx_out_grad(c));
    ck_assert_ptr_null(nn_ctx_grads(c, NULL));
    ck_assert_int_eq(nn_backward(c, s.data, NULL), -EINVAL);
    nn_ctx_free(c);
    ck_assert_int_eq(nn_ctx_new(m, 0, 6, 6, 0, &c), -EINVAL);
    ck_assert_int_eq(nn_ctx_new(m, 1, NN_MAX_DIM + 1, 6, 0, &c), -EFBIG);
    ck_assert_int_eq(nn_ctx_new(m, 1, 258, 258, 0, &c), -EFBIG); /* 129^2 attention tokens */
    ck_assert_int_eq(nn_ctx_new(m, 1, 6, 6, 4, &c), -EINVAL);
    nn_ctx_free(NULL);
    nn_model_free(m);

    m = model_new(2);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, pool(NN_MAXPOOL, 2, 2));
    ck_assert_int_eq(nn_model_end(m), 0);
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    ck_assert_int_eq(nn_ctx_new(m, 1, 4, 4, 0, &c), -EINVAL);
    nn_model_free(m);
    m = model_new(2);
    add(m, conv(2, 5, 5, 1, 0, 0));
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    ck_assert_int_eq(nn_ctx_new(m, 1, 4, 9, 0, &c), -EINVAL);
    ck_assert_int_eq(nn_ctx_new(m, 1, 5, 5, 0, &c), 0);
    nn_ctx_free(c);
    nn_model_free(m);
    nn_model_free(NULL);
}
END_TEST

/* ---- forward passes against naive loops ---- */

/* |engine - reference| <= 1e-5 * (sum of |terms|) + 1e-6: float products summed in any order
 * stay within a few ulps of the magnitude of the terms. */
static void check_close(float got, double ref, double mag, const char *what)
{
    ck_assert_msg(fabs(got - ref) <= 1e-5 * mag + 1e-6, "%s: %.9g vs %.9g", what, got, ref);
}

START_TEST(test_conv_reference)
{
    struct nn_rng r;
    nn_rng_seed(&r, 77);
    for (int iter = 0; iter < 62; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), ci = 1 + nn_rng_below(&r, 4);
        uint32_t co = 1 + nn_rng_below(&r, 5), kh = 1 + nn_rng_below(&r, 4);
        uint32_t kw = 1 + nn_rng_below(&r, 4), s = 1 + nn_rng_below(&r, 3);
        uint32_t p = nn_rng_below(&r, 3), bias = nn_rng_below(&r, 2);
        uint32_t h = 1 + nn_rng_below(&r, 11), w = 1 + nn_rng_below(&r, 11);
        if (iter < 4) /* degenerate shapes first: 1x1, 1xN, Nx1, primes */
            h = (uint32_t[]){1, 1, 7, 13}[iter], w = (uint32_t[]){1, 9, 1, 11}[iter];
        if (iter >= 60) /* wide images: the column matrix is built in several bands of rows */
            n = 1, ci = iter == 60 ? 40 : 64, h = iter == 60 ? 9 : 11, w = iter == 60 ? 700 : 1100,
            co = 2, kh = kw = 3, s = iter == 60 ? 1 : 2, p = 1, bias = 1;
        if (h + 2 * p < kh)
            kh = h + 2 * p;
        if (w + 2 * p < kw)
            kw = w + 2 * p;
        struct nn_model *m = model_new(ci);
        add(m, conv(co, kh, kw, s, p, bias));
        ck_assert_int_eq(nn_model_init(m, (uint64_t)iter), 0);
        float *wt = nn_model_params(m, NULL), *b = wt + (size_t)co * ci * kh * kw;
        if (bias)
            fill_uniform(b, co, &r, -1, 1);
        struct nn_ctx *c = NULL;
        ck_assert_int_eq(nn_ctx_new(m, n, h, w, 0, &c), 0);
        float *x = malloc(sizeof(float) * n * ci * h * w);
        ck_assert_ptr_nonnull(x);
        fill_uniform(x, (size_t)n * ci * h * w, &r, -1, 1);
        struct nn_tensor in, out;
        nn_tensor_packed(&in, x, n, ci, h, w);
        ck_assert_int_eq(nn_forward(c, &in, &out), 0);
        uint32_t oh = (h + 2 * p - kh) / s + 1, ow = (w + 2 * p - kw) / s + 1;
        ck_assert_uint_eq(out.h, oh);
        ck_assert_uint_eq(out.w, ow);
        ck_assert_uint_eq(out.c, co);
        for (uint32_t in_ = 0; in_ < n; in_++)
            for (uint32_t o = 0; o < co; o++)
                for (uint32_t y = 0; y < oh; y++)
                    for (uint32_t xo = 0; xo < ow; xo++) {
                        double acc = bias ? b[o] : 0, mag = fabs(acc);
                        for (uint32_t i = 0; i < ci; i++)
                            for (uint32_t a = 0; a < kh; a++)
                                for (uint32_t e = 0; e < kw; e++) {
                                    long iy = (long)(y * s + a) - p, ix = (long)(xo * s + e) - p;
                                    if (iy < 0 || ix < 0 || iy >= h || ix >= w)
                                        continue;
                                    double t = (double)wt[((o * ci + i) * kh + a) * kw + e] *
                                               x[((in_ * ci + i) * h + iy) * w + ix];
                                    acc += t;
                                    mag += fabs(t);
                                }
                        check_close(*nn_tensor_at(&out, in_, o, y, xo), acc, mag, "conv2d");
                    }
        free(x);
        nn_ctx_free(c);
        nn_model_free(m);
    }
}
END_TEST

/*
 * Strided convolutions (strides 2 to 5, widths that are and are not multiples of the stride,
 * narrower than one vector) with the rectifier an inference context applies inside the
 * convolution: against naive loops, and bit for bit against a training context, which runs the
 * rectifier as its own layer.
 */
START_TEST(test_conv_strided_fused)
{
    struct nn_rng r;
    nn_rng_seed(&r, 78);
    for (int iter = 0; iter < 40; iter++) {
        uint32_t s = 2 + (uint32_t)iter % 4, ci = 1 + nn_rng_below(&r, 3);
        uint32_t co = 1 + nn_rng_below(&r, 4), k = s + nn_rng_below(&r, 2 * s);
        uint32_t p = nn_rng_below(&r, k), h = k + nn_rng_below(&r, 9);
        uint32_t w = iter < 8 ? k + (uint32_t)iter : k + nn_rng_below(&r, 40);
        float slope = iter % 3 == 0 ? 0.0f : 0.1f * (float)(iter % 5) - 0.2f;
        struct nn_model *m = model_new(ci);
        add(m, conv(co, k, k, s, p, 1));
        add(m, slope == 0.0f ? (struct nn_layer_desc){.type = NN_RELU}
                             : (struct nn_layer_desc){.type = NN_LRELU, .slope = slope});
        add(m, conv(2, 1, 1, 1, 0, 0));
        add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.3f});
        ck_assert_int_eq(nn_model_init(m, (uint64_t)iter), 0);
        float *wt = nn_model_params(m, NULL), *b = wt + (size_t)co * ci * k * k;
        fill_uniform(b, co, &r, -1, 1);
        struct nn_ctx *ci_ = NULL, *ct = NULL;
        ck_assert_int_eq(nn_ctx_new(m, 1, h, w, 0, &ci_), 0);
        ck_assert_int_eq(nn_ctx_new(m, 1, h, w, NN_CTX_TRAIN, &ct), 0);
        float *x = malloc(sizeof(float) * ci * h * w);
        ck_assert_ptr_nonnull(x);
        fill_uniform(x, (size_t)ci * h * w, &r, -1, 1);
        struct nn_tensor in, a, bt;
        nn_tensor_packed(&in, x, 1, ci, h, w);
        ck_assert_int_eq(nn_forward(ci_, &in, &a), 0);
        ck_assert_int_eq(nn_forward(ct, &in, &bt), 0);
        ck_assert_mem_eq(a.data, bt.data, nn_tensor_count(&a) * sizeof(float));
        /* The first convolution and its rectifier, alone, against the definition. */
        struct nn_model *m1 = model_new(ci);
        add(m1, conv(co, k, k, s, p, 1));
        add(m1, slope == 0.0f ? (struct nn_layer_desc){.type = NN_RELU}
                              : (struct nn_layer_desc){.type = NN_LRELU, .slope = slope});
        ck_assert_int_eq(nn_model_init(m1, 1), 0);
        memcpy(nn_model_params(m1, NULL), wt, ((size_t)co * ci * k * k + co) * sizeof(float));
        struct nn_ctx *c1 = NULL;
        ck_assert_int_eq(nn_ctx_new(m1, 1, h, w, 0, &c1), 0);
        ck_assert_int_eq(nn_forward(c1, &in, &a), 0);
        uint32_t oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
        ck_assert(a.h == oh && a.w == ow);
        for (uint32_t o = 0; o < co; o++)
            for (uint32_t y = 0; y < oh; y++)
                for (uint32_t xo = 0; xo < ow; xo++) {
                    double acc = b[o], mag = fabs(acc);
                    for (uint32_t i = 0; i < ci; i++)
                        for (uint32_t e = 0; e < k; e++)
                            for (uint32_t f = 0; f < k; f++) {
                                long iy = (long)(y * s + e) - p, ix = (long)(xo * s + f) - p;
                                if (iy < 0 || ix < 0 || iy >= h || ix >= w)
                                    continue;
                                double t = (double)wt[((o * ci + i) * k + e) * k + f] *
                                           x[(i * h + iy) * w + ix];
                                acc += t;
                                mag += fabs(t);
                            }
                    double want = acc > 0 ? acc : slope * acc;
                    check_close(*nn_tensor_at(&a, 0, o, y, xo), want, mag, "strided conv + relu");
                }
        nn_ctx_free(c1);
        nn_model_free(m1);
        free(x);
        nn_ctx_free(ct);
        nn_ctx_free(ci_);
        nn_model_free(m);
    }
}
END_TEST

/*
 * Convolutions without a column matrix (fconv.c, NN_CTX_FAST): against naive loops over random
 * geometry (kernels 1 to 8 that need not be square, strides 1 to 5, paddings up to the kernel,
 * channel counts around the tile of 8, images from 1x1 up), with and without bias and fused
 * rectifier; AVX2 and AVX-512 bit for bit; and a fast context against an ordinary one.
 */
START_TEST(test_fconv)
{
    struct nn_rng r;
    nn_rng_seed(&r, 79);
    int kernels = 0;
    for (int k = NN_FK_AVX2; k <= NN_FK_AVX512; k++)
        kernels += nn_fkern_supported((enum nn_fkern)k);
    if (!kernels)
        return; /* nothing to test: no FMA, contexts use im2col */
    for (int iter = 0; iter < 120; iter++) {
        uint32_t ci = 1 + nn_rng_below(&r, 5), co = 1 + nn_rng_below(&r, 19);
        uint32_t kh = 1 + nn_rng_below(&r, 8), kw = 1 + nn_rng_below(&r, 8);
        uint32_t s = 1 + nn_rng_below(&r, 5), p = nn_rng_below(&r, (kh < kw ? kh : kw) + 1);
        uint32_t h = 1 + nn_rng_below(&r, 20), w = 1 + nn_rng_below(&r, 40);
        int bias = iter % 3 != 0, act = iter % 2;
        float slope = iter % 4 == 1 ? 0.0f : 0.25f;
        if (h + 2 * p < kh)
            h = kh;
        if (w + 2 * p < kw)
            w = kw;
        struct nn_geom g = {
            ci, h, w, kh, kw, s, p, (h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1};
        size_t nw = (size_t)co * ci * kh * kw, nx = (size_t)ci * h * w,
               ny = (size_t)co * g.oh * g.ow;
        float *wt = malloc((nw + co) * sizeof(float)), *x = malloc(nx * sizeof(float));
        float *y[3] = {malloc(ny * sizeof(float)), malloc(ny * sizeof(float)), NULL};
        float *scratch = malloc(nn_fconv_scratch(&g) * sizeof(float));
        ck_assert(wt && x && y[0] && y[1] && scratch);
        fill_uniform(wt, nw + co, &r, -1, 1);
        fill_uniform(x, nx, &r, -1, 1);
        const float *b = bias ? wt + nw : NULL;
        int done = 0;
        for (int k = NN_FK_AVX2; k <= NN_FK_AVX512; k++) {
            if (!nn_fkern_supported((enum nn_fkern)k))
                continue;
            nn_fconv((enum nn_fkern)k, &g, co, wt, b, act, slope, x, y[done], scratch);
            done++;
        }
        if (done == 2)
            ck_assert_mem_eq(y[0], y[1], ny * sizeof(float));
        for (uint32_t o = 0; o < co; o++)
            for (uint32_t oy = 0; oy < g.oh; oy++)
                for (uint32_t ox = 0; ox < g.ow; ox++) {
                    double acc = b ? b[o] : 0, mag = fabs(acc);
                    for (uint32_t c = 0; c < ci; c++)
                        for (uint32_t a = 0; a < kh; a++)
                            for (uint32_t e = 0; e < kw; e++) {
                                long iy = (long)(oy * s + a) - p, ix = (long)(ox * s + e) - p;
                                if (iy < 0 || ix < 0 || iy >= h || ix >= w)
                                    continue;
                                double t = (double)wt[((o * ci + c) * kh + a) * kw + e] *
                                           x[(c * h + iy) * w + ix];
                                acc += t;
                                mag += fabs(t);
                            }
                    if (act && acc <= 0)
                        acc *= slope;
                    char what[96];
                    snprintf(what, sizeof(what), "fconv c%u->%u k%ux%u s%u p%u %ux%u", ci, co, kh,
                             kw, s, p, h, w);
                    /* y: written by the convolution under test (not seen by the analyzer) */
                    // NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage)
                    check_close(y[0][((size_t)o * g.oh + oy) * g.ow + ox], acc, mag, what);
                }
        free(wt);
        free(x);
        free(y[0]);
        free(y[1]);
        free(scratch);
    }
    /* Through contexts: a fast one against an ordinary one, batch of two, fused rectifiers. */
    struct nn_model *m = model_new(2);
    add(m, conv(8, 8, 8, 4, 2, 1));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, conv(12, 4, 4, 2, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, conv(5, 3, 3, 1, 1, 0));
    ck_assert_int_eq(nn_model_init(m, 5), 0);
    struct nn_ctx *cf = NULL, *co_ = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 2, 64, 48, NN_CTX_FAST, &cf), 0);
    ck_assert_int_eq(nn_ctx_new(m, 2, 64, 48, 0, &co_), 0);
    ck_assert_int_eq(nn_ctx_new(m, 2, 64, 48, NN_CTX_FAST | NN_CTX_TRAIN, &cf), -EINVAL);
    float *x = malloc(2 * 2 * 64 * 48 * sizeof(float));
    ck_assert_ptr_nonnull(x);
    fill_uniform(x, 2 * 2 * 64 * 48, &r, -1, 1);
    struct nn_tensor in, a, b2;
    nn_tensor_packed(&in, x, 2, 2, 64, 48);
    ck_assert_int_eq(nn_forward(cf, &in, &a), 0);
    ck_assert_int_eq(nn_forward(co_, &in, &b2), 0);
    ck_assert(a.c == 5 && a.h == 8 && a.w == 6);
    double worst = 0, big = 0;
    for (size_t i = 0; i < nn_tensor_count(&a); i++) {
        double d = fabs(a.data[i] - b2.data[i]);
        worst = d > worst ? d : worst;
        big = fabs(b2.data[i]) > big ? fabs(b2.data[i]) : big;
    }
    ck_assert_msg(worst <= 1e-5 * (big + 1), "fast context differs by %g", worst);
    free(x);
    nn_ctx_free(cf);
    nn_ctx_free(co_);
    nn_model_free(m);
}
END_TEST

/* Transposed convolution as its definition: every input pixel scatters its kernel. */
START_TEST(test_tconv_reference)
{
    struct nn_rng r;
    nn_rng_seed(&r, 78);
    for (int iter = 0; iter < 41; iter++) {
        uint32_t n = 1 + nn_rng_below(&r, 2), ci = 1 + nn_rng_below(&r, 4);
        uint32_t co = 1 + nn_rng_below(&r, 4), k = 1 + nn_rng_below(&r, 4);
        uint32_t s = 1 + nn_rng_below(&r, 3), p = nn_rng_below(&r, k), bias = nn_rng_below(&r, 2);
        uint32_t h = 1 + nn_rng_below(&r, 7), w = 1 + nn_rng_below(&r, 7);
        if (iter == 40) /* several bands of rows */
            n = 1, ci = 2, co = 40, k = 4, s = 2, p = 1, bias = 1, h = 5, w = 900;
        long oh = (long)(h - 1) * s - 2 * p + k, ow = (long)(w - 1) * s - 2 * p + k;
        if (oh <= 0 || ow <= 0)
            continue;
        struct nn_model *m = model_new(ci);
        add(m, tconv(co, k, s, p, bias));
        ck_assert_int_eq(nn_model_init(m, (uint64_t)iter), 0);
        float *wt = nn_model_params(m, NULL), *b = wt + (size_t)co * ci * k * k;
        if (bias)
            fill_uniform(b, co, &r, -1, 1);
        struct nn_ctx *c = NULL;
        ck_assert_int_eq(nn_ctx_new(m, n, h, w, 0, &c), 0);
        size_t xin = (size_t)n * ci * h * w, yout = (size_t)n * co * oh * ow;
        float *x = malloc(sizeof(float) * xin);
        double *ref = calloc(yout, sizeof(double)), *mag = calloc(yout, sizeof(double));
        ck_assert(x && ref && mag);
        fill_uniform(x, xin, &r, -1, 1);
        for (uint32_t in_ = 0; in_ < n; in_++)
            for (uint32_t i = 0; i < ci; i++)
                for (uint32_t y = 0; y < h; y++)
                    for (uint32_t xx = 0; xx < w; xx++)
                        for (uint32_t o = 0; o < co; o++)
                            for (uint32_t a = 0; a < k; a++)
                                for (uint32_t e = 0; e < k; e++) {
                                    long oy = (long)(y * s + a) - p, ox = (long)(xx * s + e) - p;
                                    if (oy < 0 || ox < 0 || oy >= oh || ox >= ow)
                                        continue;
                                    double t = (double)wt[((i * co + o) * k + a) * k + e] *
                                               x[((in_ * ci + i) * h + y) * w + xx];
                                    size_t at = ((in_ * co + o) * oh + oy) * ow + ox;
                                    ref[at] += t;
                                    mag[at] += fabs(t);
                                }
        struct nn_tensor in, out;
        nn_tensor_packed(&in, x, n, ci, h, w);
        ck_assert_int_eq(nn_forward(c, &in, &out), 0);
        ck_assert_uint_eq(nn_tensor_count(&out), yout);
        for (size_t i = 0; i < yout; i++) {
            double bb = bias ? b[(i / (size_t)(oh * ow)) % co] : 0;
            check_close(out.data[i], ref[i] + bb, mag[i] + fabs(bb), "tconv2d");
        }
        free(mag);
        free(ref);
        free(x);
        nn_ctx_free(c);
        nn_model_free(m);
    }
}
END_TEST

/* One layer with random parameters (biases too) on a random input; returns the output
 * (caller frees) and fills *xo with the input (caller frees) and *wo with the parameters. */
static float *run_layer(uint32_t in_ch, struct nn_layer_desc d, uint32_t n, uint32_t h, uint32_t w,
                        struct nn_rng *r, float **xo, float **wo, struct nn_tensor *shape)
{
    struct nn_model *m = model_new(in_ch);
    add(m, d);
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    size_t np;
    float *p = nn_model_params(m, &np);
    fill_uniform(p, np, r, -0.7f, 0.7f);
    *wo = malloc((np + 1) * sizeof(float));
    ck_assert_ptr_nonnull(*wo);
    memcpy(*wo, p, np * sizeof(float));
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, n, h, w, 0, &c), 0);
    size_t count = (size_t)n * in_ch * h * w;
    *xo = malloc(count * sizeof(float));
    ck_assert_ptr_nonnull(*xo);
    fill_uniform(*xo, count, r, -1.5f, 1.5f);
    struct nn_tensor in, out;
    nn_tensor_packed(&in, *xo, n, in_ch, h, w);
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    float *y = malloc(nn_tensor_count(&out) * sizeof(float));
    ck_assert_ptr_nonnull(y);
    memcpy(y, out.data, nn_tensor_count(&out) * sizeof(float));
    *shape = out;
    shape->data = y;
    nn_ctx_free(c);
    nn_model_free(m);
    return y;
}

/* Pooling, up-sampling and rectifiers are exact: bit-identical to the loops here except
 * average pooling (one rounding of the sum order, 1e-6). */
START_TEST(test_simple_reference)
{
    struct nn_rng r;
    nn_rng_seed(&r, 79);
    static const uint32_t dims[][3] = {{1, 1, 1}, {2, 5, 7}, {1, 1, 9}, {3, 8, 2}, {1, 13, 11}};
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        uint32_t n = dims[k][0], h = dims[k][1], w = dims[k][2], C = 2;
        float *x, *wt, *y;
        struct nn_tensor o;
        for (uint32_t f = 1; f <= 3; f++) {
            y = run_layer(C, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = f}, n, h, w, &r,
                          &x, &wt, &o);
            ck_assert_uint_eq(o.h, h * f);
            ck_assert_uint_eq(o.w, w * f);
            for (uint32_t i = 0; i < n * C; i++)
                for (uint32_t a = 0; a < o.h; a++)
                    for (uint32_t b = 0; b < o.w; b++)
                        ck_assert_float_eq(y[(i * o.h + a) * o.w + b],
                                           x[(i * h + a / f) * w + b / f]);
            free(y), free(x), free(wt);
        }
        for (int t = 0; t < 2; t++) {
            float slope = t ? 0.25f : 0.0f;
            y = run_layer(C, (struct nn_layer_desc){.type = t ? NN_LRELU : NN_RELU, .slope = slope},
                          n, h, w, &r, &x, &wt, &o);
            for (size_t i = 0; i < (size_t)n * C * h * w; i++)
                ck_assert_float_eq(y[i], x[i] > 0 ? x[i] : slope * x[i]);
            free(y), free(x), free(wt);
        }
        for (uint32_t ks = 1; ks <= 3; ks++)
            for (uint32_t st = 1; st <= 2; st++) {
                if (ks > h || ks > w)
                    continue;
                for (int mx = 0; mx < 2; mx++) {
                    y = run_layer(C, pool(mx ? NN_MAXPOOL : NN_AVGPOOL, ks, st), n, h, w, &r, &x,
                                  &wt, &o);
                    ck_assert_uint_eq(o.h, (h - ks) / st + 1);
                    ck_assert_uint_eq(o.w, (w - ks) / st + 1);
                    for (uint32_t i = 0; i < n * C; i++)
                        for (uint32_t a = 0; a < o.h; a++)
                            for (uint32_t b = 0; b < o.w; b++) {
                                double acc = 0, best = -INFINITY;
                                for (uint32_t u = 0; u < ks; u++)
                                    for (uint32_t v = 0; v < ks; v++) {
                                        double e = x[(i * h + a * st + u) * w + b * st + v];
                                        acc += e;
                                        best = e > best ? e : best;
                                    }
                                float got = y[(i * o.h + a) * o.w + b];
                                if (mx)
                                    ck_assert_float_eq(got, (float)best);
                                else
                                    ck_assert_double_eq_tol(got, acc / (ks * ks), 1e-6);
                            }
                    free(y), free(x), free(wt);
                }
            }
    }
}
END_TEST

/* Squeeze-and-excitation and self-attention against their formulas, in double. Tolerance
 * 1e-5 absolute on outputs of order 1: a few float roundings through softmax and sums of at
 * most a few hundred terms. */
START_TEST(test_attention_reference)
{
    struct nn_rng r;
    nn_rng_seed(&r, 80);
    static const uint32_t se_cases[][5] = {
        {5, 2, 1, 3, 4}, {1, 1, 2, 1, 1}, {3, 4, 2, 1, 7}, {8, 3, 1, 6, 5}};
    for (size_t k = 0; k < sizeof(se_cases) / sizeof(se_cases[0]); k++) {
        uint32_t C = se_cases[k][0], Hd = se_cases[k][1], n = se_cases[k][2];
        uint32_t h = se_cases[k][3], w = se_cases[k][4], P = h * w;
        float *x, *wt, *y;
        struct nn_tensor o;
        y = run_layer(C, (struct nn_layer_desc){.type = NN_SE, .hidden = Hd}, n, h, w, &r, &x, &wt,
                      &o);
        const float *W1 = wt, *b1 = W1 + Hd * C, *W2 = b1 + Hd, *b2 = W2 + C * Hd;
        for (uint32_t i = 0; i < n; i++) {
            double sq[8], hid[8];
            for (uint32_t c = 0; c < C; c++) {
                sq[c] = 0;
                for (uint32_t p = 0; p < P; p++)
                    sq[c] += x[(i * C + c) * P + p] / (double)P;
            }
            for (uint32_t j = 0; j < Hd; j++) {
                hid[j] = b1[j];
                for (uint32_t c = 0; c < C; c++)
                    hid[j] += (double)W1[j * C + c] * sq[c];
                hid[j] = hid[j] > 0 ? hid[j] : 0;
            }
            for (uint32_t c = 0; c < C; c++) {
                double z = b2[c];
                for (uint32_t j = 0; j < Hd; j++)
                    z += (double)W2[c * Hd + j] * hid[j];
                double g = 1 / (1 + exp(-z));
                for (uint32_t p = 0; p < P; p++)
                    ck_assert_double_eq_tol(y[(i * C + c) * P + p], x[(i * C + c) * P + p] * g,
                                            1e-5);
            }
        }
        free(y), free(x), free(wt);
    }

    static const uint32_t mh_cases[][5] = {
        {4, 2, 2, 3, 3}, {3, 1, 1, 1, 5}, {6, 3, 1, 2, 2}, {2, 2, 2, 1, 1}, {8, 4, 1, 5, 7}};
    for (size_t k = 0; k < sizeof(mh_cases) / sizeof(mh_cases[0]); k++) {
        uint32_t C = mh_cases[k][0], H = mh_cases[k][1], n = mh_cases[k][2];
        uint32_t T = mh_cases[k][3] * mh_cases[k][4], D = C / H;
        float *x, *wt, *y;
        struct nn_tensor o;
        y = run_layer(C, (struct nn_layer_desc){.type = NN_MHSA, .heads = H}, n, mh_cases[k][3],
                      mh_cases[k][4], &r, &x, &wt, &o);
        double *qkv = malloc(sizeof(double) * 4 * C * T), *a = malloc(sizeof(double) * T);
        ck_assert(qkv && a);
        for (uint32_t i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * C * T;
            for (uint32_t m = 0; m < 3; m++) {
                const float *W = wt + m * (C * C + C), *b = W + C * C;
                for (uint32_t c = 0; c < C; c++)
                    for (uint32_t t = 0; t < T; t++) {
                        double acc = b[c];
                        for (uint32_t e = 0; e < C; e++)
                            acc += (double)W[c * C + e] * xi[e * T + t];
                        qkv[(m * C + c) * T + t] = acc;
                    }
            }
            double *q = qkv, *kk = q + C * T, *v = kk + C * T, *att = v + C * T;
            for (uint32_t hh = 0; hh < H; hh++)
                for (uint32_t t = 0; t < T; t++) {
                    double mx = -INFINITY, sum = 0;
                    for (uint32_t s2 = 0; s2 < T; s2++) {
                        double dot = 0;
                        for (uint32_t e = hh * D; e < (hh + 1) * D; e++)
                            dot += q[e * T + t] * kk[e * T + s2];
                        a[s2] = dot / sqrt((double)D);
                        mx = a[s2] > mx ? a[s2] : mx;
                    }
                    for (uint32_t s2 = 0; s2 < T; s2++)
                        sum += a[s2] = exp(a[s2] - mx);
                    for (uint32_t e = hh * D; e < (hh + 1) * D; e++) {
                        double acc = 0;
                        for (uint32_t s2 = 0; s2 < T; s2++)
                            acc += a[s2] / sum * v[e * T + s2];
                        att[e * T + t] = acc;
                    }
                }
            const float *Wo = wt + 3 * (C * C + C), *bo = Wo + C * C;
            for (uint32_t c = 0; c < C; c++)
                for (uint32_t t = 0; t < T; t++) {
                    double acc = bo[c];
                    for (uint32_t e = 0; e < C; e++)
                        acc += (double)Wo[c * C + e] * att[e * T + t];
                    ck_assert_msg(fabs(y[((size_t)i * C + c) * T + t] - acc) <= 1e-5,
                                  "mhsa C%u H%u: %.9g vs %.9g", C, H,
                                  y[((size_t)i * C + c) * T + t], acc);
                }
        }
        free(a), free(qkv);
        free(y), free(x), free(wt);
    }
}
END_TEST

/* ---- gradient checks ---- */

START_TEST(test_grad_conv)
{
    static const struct {
        uint32_t n, ci, h, w, co, kh, kw, s, p, bias;
    } cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 1},   /* 1x1 everything */
        {2, 3, 5, 7, 4, 3, 3, 1, 1, 1},   /* batch, odd sizes, padding */
        {1, 2, 1, 9, 3, 1, 3, 1, 0, 1},   /* 1xN image and kernel */
        {1, 3, 7, 5, 2, 3, 3, 2, 1, 1},   /* stride 2 on odd sizes */
        {2, 2, 6, 6, 3, 4, 4, 2, 1, 0},   /* even kernel, no bias */
        {1, 1, 13, 11, 2, 5, 5, 3, 2, 1}, /* primes, stride 3 */
        {1, 2, 5, 5, 3, 1, 1, 2, 0, 1},   /* 1x1 kernel, stride 2 */
        {3, 4, 3, 3, 2, 1, 1, 1, 0, 1},   /* 1x1 direct path */
        {1, 2, 3, 2, 2, 3, 2, 1, 2, 1},   /* padding wider than half the kernel */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        gradcheck_layer(
            "conv2d", cases[i].ci,
            conv(cases[i].co, cases[i].kh, cases[i].kw, cases[i].s, cases[i].p, cases[i].bias),
            cases[i].n, cases[i].h, cases[i].w, IN_UNIFORM);
}
END_TEST

START_TEST(test_grad_tconv)
{
    static const struct {
        uint32_t n, ci, h, w, co, k, s, p, bias;
    } cases[] = {
        {1, 2, 3, 4, 3, 2, 2, 0, 1}, {2, 3, 5, 5, 2, 3, 2, 1, 1}, {1, 1, 1, 1, 2, 3, 1, 0, 1},
        {1, 2, 4, 3, 1, 4, 2, 1, 0}, {1, 2, 3, 5, 2, 1, 1, 0, 1}, {1, 1, 3, 3, 2, 2, 3, 0, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        gradcheck_layer("tconv2d", cases[i].ci,
                        tconv(cases[i].co, cases[i].k, cases[i].s, cases[i].p, cases[i].bias),
                        cases[i].n, cases[i].h, cases[i].w, IN_UNIFORM);
}
END_TEST

START_TEST(test_grad_simple)
{
    struct nn_layer_desc up2 = {.type = NN_UPSAMPLE, .factor = 2};
    struct nn_layer_desc up3 = {.type = NN_UPSAMPLE, .factor = 3};
    struct nn_layer_desc up1 = {.type = NN_UPSAMPLE, .factor = 1};
    gradcheck_layer("upsample", 2, up2, 2, 3, 5, IN_UNIFORM);
    gradcheck_layer("upsample", 1, up3, 1, 1, 1, IN_UNIFORM);
    gradcheck_layer("upsample", 3, up1, 1, 2, 7, IN_UNIFORM);
    struct nn_layer_desc relu = {.type = NN_RELU};
    struct nn_layer_desc lrelu = {.type = NN_LRELU, .slope = 0.2f};
    gradcheck_layer("relu", 3, relu, 2, 4, 5, IN_AWAY);
    gradcheck_layer("relu", 1, relu, 1, 1, 1, IN_AWAY);
    gradcheck_layer("lrelu", 2, lrelu, 1, 5, 3, IN_AWAY);
    gradcheck_layer("avgpool", 2, pool(NN_AVGPOOL, 2, 2), 2, 5, 7, IN_UNIFORM);
    gradcheck_layer("avgpool", 1, pool(NN_AVGPOOL, 3, 1), 1, 4, 4, IN_UNIFORM);
    gradcheck_layer("avgpool", 3, pool(NN_AVGPOOL, 2, 2), 1, 2, 2, IN_UNIFORM);
    gradcheck_layer("maxpool", 2, pool(NN_MAXPOOL, 2, 2), 2, 5, 7, IN_SPREAD);
    gradcheck_layer("maxpool", 1, pool(NN_MAXPOOL, 3, 2), 1, 7, 11, IN_SPREAD);
    gradcheck_layer("maxpool", 3, pool(NN_MAXPOOL, 2, 2), 1, 2, 3, IN_SPREAD);
}
END_TEST

START_TEST(test_grad_se)
{
    gradcheck_layer("se", 5, (struct nn_layer_desc){.type = NN_SE, .hidden = 2}, 1, 3, 4,
                    IN_UNIFORM);
    gradcheck_layer("se", 1, (struct nn_layer_desc){.type = NN_SE, .hidden = 1}, 2, 1, 1,
                    IN_UNIFORM);
    gradcheck_layer("se", 3, (struct nn_layer_desc){.type = NN_SE, .hidden = 4}, 2, 1, 7,
                    IN_UNIFORM);
}
END_TEST

START_TEST(test_grad_mhsa)
{
    gradcheck_layer("mhsa", 4, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2}, 2, 3, 3,
                    IN_UNIFORM);
    gradcheck_layer("mhsa", 3, (struct nn_layer_desc){.type = NN_MHSA, .heads = 1}, 1, 1, 5,
                    IN_UNIFORM);
    gradcheck_layer("mhsa", 6, (struct nn_layer_desc){.type = NN_MHSA, .heads = 3}, 1, 2, 2,
                    IN_UNIFORM);
    gradcheck_layer("mhsa", 2, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2}, 2, 1, 1,
                    IN_UNIFORM);
}
END_TEST

/* Wide images, where convolutions work in several bands of rows (uneven last band). */
START_TEST(test_grad_banded)
{
    struct nn_model *m = model_new(40);
    add(m, conv(2, 3, 3, 1, 1, 1));
    ck_assert_int_eq(nn_model_init(m, 6), 0);
    gradcheck_n("conv2d banded", m, 1, 9, 700, IN_UNIFORM, 4, 60);
    nn_model_free(m);
    m = model_new(2);
    add(m, tconv(40, 4, 2, 1, 1));
    ck_assert_int_eq(nn_model_init(m, 7), 0);
    gradcheck_n("tconv2d banded", m, 1, 3, 900, IN_UNIFORM, 5, 60);
    nn_model_free(m);
}
END_TEST

/* Residual blocks, nested ones, and a deeper smooth stack. */
START_TEST(test_grad_residual)
{
    struct nn_model *m = model_new(3);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(3, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    ck_assert_int_eq(nn_model_init(m, 3), 0);
    gradcheck("residual", m, 2, 4, 5, IN_UNIFORM, 1);
    nn_model_free(m);

    m = model_new(2);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(2, 1, 1, 1, 0, 1));
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, conv(2, 3, 3, 1, 1, 1));
    ck_assert_int_eq(nn_model_end(m), 0);
    ck_assert_int_eq(nn_model_init(m, 4), 0);
    gradcheck("nested residual", m, 1, 3, 3, IN_UNIFORM, 2);
    nn_model_free(m);

    /* Input-side block first (its input gradient is the model's), attention at the end. */
    m = model_new(4);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, conv(4, 3, 3, 2, 1, 1));
    add(m, tconv(4, 2, 2, 0, 1));
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 3});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 4});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, conv(2, 1, 1, 1, 0, 1));
    ck_assert_int_eq(nn_model_init(m, 5), 0);
    gradcheck("stack", m, 2, 4, 6, IN_UNIFORM, 3);
    nn_model_free(m);
}
END_TEST

/* Gradients accumulate over backward calls until zeroed. */
START_TEST(test_grad_accumulate)
{
    struct nn_model *m = model_new(2);
    add(m, conv(3, 3, 3, 1, 1, 1));
    ck_assert_int_eq(nn_model_init(m, 8), 0);
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 1, 4, 4, NN_CTX_TRAIN, &c), 0);
    float x[32], dout[48];
    struct nn_rng r;
    nn_rng_seed(&r, 8);
    fill_uniform(x, 32, &r, -1, 1);
    fill_uniform(dout, 48, &r, -1, 1);
    struct nn_tensor in, out;
    nn_tensor_packed(&in, x, 1, 2, 4, 4);
    ck_assert_int_eq(nn_backward(c, dout, NULL), -EINVAL); /* no forward yet */
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    size_t np;
    nn_ctx_zero_grads(c);
    ck_assert_int_eq(nn_backward(c, dout, NULL), 0);
    float *g = nn_ctx_grads(c, &np), once[3 * 2 * 9 + 3];
    ck_assert_uint_eq(np, 3 * 2 * 9 + 3);
    memcpy(once, g, sizeof(once));
    ck_assert_int_eq(nn_backward(c, dout, NULL), 0);
    for (size_t i = 0; i < np; i++)
        ck_assert_float_eq_tol(g[i], 2 * once[i], 1e-5f * (1 + fabsf(once[i])));
    nn_ctx_zero_grads(c);
    for (size_t i = 0; i < np; i++)
        ck_assert_float_eq(g[i], 0.0f);
    nn_ctx_free(c);
    nn_model_free(m);
}
END_TEST

/* ---- memory planning ---- */

/* A model deep in residual blocks: the in-place inference plan must compute exactly what the
 * one-buffer-per-activation training plan computes, in less memory, whatever the input. */
START_TEST(test_plan)
{
    struct nn_model *m = model_new(3);
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 3, 3, 1, 1, 1));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 2});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 1, 1, 1, 0, 1));
    ck_assert_int_eq(nn_model_end(m), 0);
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, conv(8, 3, 3, 1, 1, 1));
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, pool(NN_MAXPOOL, 2, 2));
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = 2});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv(8, 3, 3, 1, 1, 0));
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, pool(NN_AVGPOOL, 2, 2));
    add(m, tconv(2, 4, 2, 1, 1));
    ck_assert_int_eq(nn_model_init(m, 11), 0);

    struct nn_ctx *ci = NULL, *ct = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 2, 10, 14, 0, &ci), 0);
    ck_assert_int_eq(nn_ctx_new(m, 2, 10, 14, NN_CTX_TRAIN, &ct), 0);
    ck_assert_uint_lt(nn_ctx_bytes(ci) * 3, nn_ctx_bytes(ct));
    size_t before = nn_ctx_bytes(ci);
    float x[2 * 3 * 10 * 14], *keep = malloc(2 * 2 * 10 * 14 * sizeof(float));
    ck_assert_ptr_nonnull(keep);
    struct nn_rng r;
    nn_rng_seed(&r, 12);
    for (int round = 0; round < 3; round++) {
        fill_uniform(x, sizeof(x) / sizeof(x[0]), &r, -2, 2);
        struct nn_tensor in, a, b;
        nn_tensor_packed(&in, x, 2, 3, 10, 14);
        ck_assert_int_eq(nn_forward(ci, &in, &a), 0);
        ck_assert_uint_eq(a.c, 2);
        ck_assert_uint_eq(a.h, 10);
        ck_assert_uint_eq(a.w, 14);
        memcpy(keep, a.data, nn_tensor_count(&a) * sizeof(float));
        ck_assert_int_eq(nn_forward(ct, &in, &b), 0);
        ck_assert_mem_eq(keep, b.data, nn_tensor_count(&b) * sizeof(float));
        /* The input was copied: the caller's buffer is untouched and can change. */
        ck_assert_int_eq(nn_forward(ci, &in, &a), 0);
        ck_assert_mem_eq(keep, a.data, nn_tensor_count(&a) * sizeof(float));
    }
    ck_assert_uint_eq(nn_ctx_bytes(ci), before);
    free(keep);
    nn_ctx_free(ct);
    nn_ctx_free(ci);
    nn_model_free(m);
}
END_TEST

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, test_rng);
    tcase_add_test(tc, test_tensor);
    tcase_add_test(tc, test_strided_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_add_test(tc, test_model_build);
    suite_add_tcase(s, tc);
    tc = tcase_create("reference");
    tcase_add_test(tc, test_conv_reference);
    tcase_add_test(tc, test_conv_strided_fused);
    tcase_add_test(tc, test_fconv);
    tcase_add_test(tc, test_tconv_reference);
    tcase_add_test(tc, test_simple_reference);
    tcase_add_test(tc, test_attention_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradients");
    tcase_set_timeout(tc, 300); /* slow under sanitizers */
    tcase_add_test(tc, test_grad_conv);
    tcase_add_test(tc, test_grad_tconv);
    tcase_add_test(tc, test_grad_simple);
    tcase_add_test(tc, test_grad_se);
    tcase_add_test(tc, test_grad_mhsa);
    tcase_add_test(tc, test_grad_banded);
    tcase_add_test(tc, test_grad_residual);
    tcase_add_test(tc, test_grad_accumulate);
    suite_add_tcase(s, tc);
    tc = tcase_create("plan");
    tcase_add_test(tc, test_plan);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    nn_set_threads(1);
    return unit_run(nn_suite());
}
