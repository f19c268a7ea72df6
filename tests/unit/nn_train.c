// SPDX-License-Identifier: MIT
/*
 * Unit tests of nn/ training and concurrency: loss values and gradients (the bits loss against
 * probabilities computed here in long double, straight from the logistic CDF), short training
 * runs that must cut the loss by a large factor and repeat bit for bit from a seed, and
 * inference on two threads at once against the same inference on one.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tests/unit/unit.h"

static void fill(float *x, size_t n, struct nn_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * nn_rng_uniform(r);
}

static void add(struct nn_model *m, struct nn_layer_desc d)
{
    ck_assert_int_eq(nn_model_add(m, &d), 0);
}

static struct nn_layer_desc conv3(uint32_t out)
{
    return (struct nn_layer_desc){
        .type = NN_CONV2D, .out_ch = out, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 1};
}

/* ---- MSE and L1 ---- */

START_TEST(test_loss_mse_l1)
{
    float p[37], t[37], g[37];
    struct nn_rng r;
    nn_rng_seed(&r, 21);
    fill(p, 37, &r, -2, 2);
    fill(t, 37, &r, -2, 2);
    for (int i = 0; i < 37; i++)
        if (fabsf(p[i] - t[i]) < 0.01f)
            p[i] += 0.05f; /* keep L1 away from its kink */
    double mse = nn_loss_mse(p, t, 37, g), want = 0;
    for (int i = 0; i < 37; i++)
        want += ((double)p[i] - t[i]) * ((double)p[i] - t[i]) / 37;
    ck_assert_double_eq_tol(mse, want, 1e-12);
    /* Central differences; both losses are exact quadratics / linear pieces, so the only error
     * is rounding of the loss (1e-16) over the step (1e-3): 1e-6 relative is generous. */
    for (int i = 0; i < 37; i++) {
        float keep = p[i], up = keep + 1e-3f, down = keep - 1e-3f;
        p[i] = up;
        double lp = nn_loss_mse(p, t, 37, NULL);
        p[i] = down;
        double lm = nn_loss_mse(p, t, 37, NULL);
        p[i] = keep;
        ck_assert_double_eq_tol((lp - lm) / ((double)up - down), g[i], 1e-6 + 1e-5 * fabs(g[i]));
    }
    double l1 = nn_loss_l1(p, t, 37, g);
    want = 0;
    for (int i = 0; i < 37; i++)
        want += fabs((double)p[i] - t[i]) / 37;
    ck_assert_double_eq_tol(l1, want, 1e-12);
    for (int i = 0; i < 37; i++) {
        float keep = p[i], up = keep + 1e-3f, down = keep - 1e-3f;
        p[i] = up;
        double lp = nn_loss_l1(p, t, 37, NULL);
        p[i] = down;
        double lm = nn_loss_l1(p, t, 37, NULL);
        p[i] = keep;
        ck_assert_double_eq_tol((lp - lm) / ((double)up - down), g[i], 1e-6);
        ck_assert_float_eq_tol(fabsf(g[i]), 1.0f / 37, 1e-9f);
    }
    ck_assert_double_eq(nn_loss_mse(p, t, 0, g), 0.0);
}
END_TEST

/* ---- bits loss ---- */

/* Probability mass of x under the discretised logistic, straight from the CDF. */
static long double ref_mass(float mu, float ls, int32_t x, int32_t lo, int32_t hi)
{
    long double s = expl((long double)ls);
    long double up = 1.0L / (1.0L + expl(-((long double)x + 0.5L - mu) / s));
    long double down = 1.0L / (1.0L + expl(-((long double)x - 0.5L - mu) / s));
    if (x == lo)
        down = 0;
    if (x == hi)
        up = 1;
    return up - down;
}

static double bits_one(float mu, float ls, int32_t x, int32_t lo, int32_t hi, float *g)
{
    float pred[2] = {mu, ls};
    struct nn_tensor t;
    nn_tensor_packed(&t, pred, 1, 2, 1, 1);
    double bits;
    ck_assert_int_eq(nn_loss_bits(&t, &x, lo, hi, g, &bits), 0);
    return bits;
}

START_TEST(test_loss_bits_value)
{
    struct nn_rng r;
    nn_rng_seed(&r, 31);
    int checked = 0;
    for (int i = 0; i < 3000; i++) {
        int32_t lo = (int32_t)nn_rng_below(&r, 10) - 5, hi = lo + 1 + (int32_t)nn_rng_below(&r, 40);
        float mu = (float)lo - 3 + (float)(hi - lo + 6) * nn_rng_uniform(&r);
        float ls = -2.0f + 4.5f * nn_rng_uniform(&r);
        int32_t x = lo + (int32_t)nn_rng_below(&r, (uint32_t)(hi - lo + 1));
        if (i % 5 == 0)
            x = i % 10 ? lo : hi; /* the edge bins often */
        long double p = ref_mass(mu, ls, x, lo, hi);
        if (p < 1e-6L)
            continue; /* the reference itself cancels there */
        double want = (double)(-log2l(p));
        ck_assert_msg(fabs(bits_one(mu, ls, x, lo, hi, NULL) - want) <= 1e-9 + 1e-12 * want,
                      "mu %g ls %g x %d [%d, %d]: %.15g vs %.15g", mu, ls, x, lo, hi,
                      bits_one(mu, ls, x, lo, hi, NULL), want);
        checked++;
    }
    ck_assert_int_gt(checked, 2000);

    /* The masses of a range sum to one, far from the range and with extreme scales too. */
    static const float params[][2] = {{3.3f, 0.0f},  {-40.0f, 1.0f}, {90.0f, -3.0f},
                                      {7.5f, -8.0f}, {7.0f, -25.0f}, {10.0f, 6.0f}};
    for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
        double total = 0;
        for (int32_t x = 0; x <= 15; x++) {
            double b = bits_one(params[k][0], params[k][1], x, 0, 15, NULL);
            ck_assert(isfinite(b) && b >= -1e-12);
            total += exp2(-b);
        }
        ck_assert_double_eq_tol(total, 1.0, 1e-9);
    }
    /* Far tails stay finite, with finite gradients; below -30 the log-scale is clamped. */
    float g[2];
    double b = bits_one(1e4f, -20.0f, 0, 0, 255, g);
    ck_assert(isfinite(b) && b > 1e6);
    ck_assert(isfinite(g[0]) && isfinite(g[1]) && g[0] > 0);
    b = bits_one(100.0f, -50.0f, 100, 0, 255, g);
    ck_assert_double_eq_tol(b, 0.0, 1e-9);
    ck_assert_float_eq(g[1], 0.0f);
    /* Uniform limit: a huge scale spreads the mass evenly over the interior... almost. */
    b = bits_one(127.5f, 12.0f, 100, 0, 255, NULL);
    ck_assert_double_eq_tol(b, -log2(1.0 / exp(12.0) / 4), 1e-3);

    /* Refusals. */
    float pred[6] = {0};
    int32_t tgt[3] = {0, 1, 2};
    struct nn_tensor t;
    double bits;
    nn_tensor_packed(&t, pred, 1, 3, 1, 2);
    ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 5, NULL, &bits), -EINVAL); /* odd channels */
    nn_tensor_packed(&t, pred, 1, 2, 1, 3);
    ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 0, NULL, &bits), -EINVAL);
    ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 1, NULL, &bits), -EINVAL); /* 2 > hi */
    ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 2, NULL, &bits), 0);
}
END_TEST

/* Gradient of the mean bits by central differences in the float inputs, on a tensor with a
 * batch, two target channels and edge values; and a strided view gives the same answer. */
START_TEST(test_loss_bits_grad)
{
    enum { N = 2, C = 2, H = 2, W = 3, P = N * 2 * C * H * W, T = N * C * H * W };
    float pred[P], g[P], g2[P];
    int32_t tgt[T];
    struct nn_rng r;
    nn_rng_seed(&r, 41);
    struct nn_tensor t;
    nn_tensor_packed(&t, pred, N, 2 * C, H, W);
    for (uint32_t n = 0; n < N; n++)
        for (uint32_t c = 0; c < C; c++)
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++) {
                    *nn_tensor_at(&t, n, c, y, x) = -2.0f + 14.0f * nn_rng_uniform(&r);
                    *nn_tensor_at(&t, n, C + c, y, x) = -1.5f + 3.0f * nn_rng_uniform(&r);
                }
    for (int i = 0; i < T; i++)
        tgt[i] = (int32_t)nn_rng_below(&r, 11);
    tgt[0] = 0;
    tgt[1] = 10;
    double bits;
    ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 10, g, &bits), 0);
    /* Mean of per-element bits. */
    double sum = 0;
    for (uint32_t n = 0, i = 0; n < N; n++)
        for (uint32_t c = 0; c < C; c++)
            for (uint32_t y = 0; y < H; y++)
                for (uint32_t x = 0; x < W; x++, i++)
                    sum += bits_one(*nn_tensor_at(&t, n, c, y, x),
                                    *nn_tensor_at(&t, n, C + c, y, x), tgt[i], 0, 10, NULL);
    ck_assert_double_eq_tol(bits, sum / T, 1e-12);
    for (int i = 0; i < P; i++) {
        float keep = pred[i], up = keep + 1e-3f, down = keep - 1e-3f;
        double bp, bm;
        pred[i] = up;
        ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 10, NULL, &bp), 0);
        pred[i] = down;
        ck_assert_int_eq(nn_loss_bits(&t, tgt, 0, 10, NULL, &bm), 0);
        pred[i] = keep;
        double num = (bp - bm) / ((double)up - down);
        /* O(eps^2) truncation on curvatures of order 1, float rounding of g: */
        ck_assert_msg(fabs(num - g[i]) <= 1e-5 + 1e-4 * fabs(num), "d/dpred[%d] %.9g vs %.9g", i,
                      num, g[i]);
    }
    /* The same values read through NHWC strides. */
    float nhwc[P];
    struct nn_tensor v = {nhwc, N, 2 * C, H, W, 2 * C * H * W, 1, W * 2 * C, 2 * C};
    ck_assert_int_eq(nn_tensor_copy(&v, &t), 0);
    double bits2;
    ck_assert_int_eq(nn_loss_bits(&v, tgt, 0, 10, g2, &bits2), 0);
    ck_assert_double_eq(bits, bits2);
    ck_assert_mem_eq(g, g2, sizeof(g));
}
END_TEST

/* ---- training ---- */

enum { SET = 32, BATCH = 8, IMG = 10 };

/* 3x3 box blur with zero padding: what the net must learn. */
static void blur(const float *x, float *y)
{
    for (int i = 0; i < IMG; i++)
        for (int j = 0; j < IMG; j++) {
            float s = 0;
            for (int a = -1; a <= 1; a++)
                for (int b = -1; b <= 1; b++)
                    if (i + a >= 0 && i + a < IMG && j + b >= 0 && j + b < IMG)
                        s += x[(i + a) * IMG + j + b];
            y[i * IMG + j] = s / 9;
        }
}

static double eval_mse(struct nn_model *m, const float *xs, const float *ys)
{
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, SET, IMG, IMG, 0, &c), 0);
    struct nn_tensor in, out;
    nn_tensor_packed(&in, (float *)xs, SET, 1, IMG, IMG);
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    double l = nn_loss_mse(out.data, ys, (size_t)SET * IMG * IMG, NULL);
    nn_ctx_free(c);
    return l;
}

/* Train conv3x3 -> LeakyReLU -> conv3x3 on random images to reproduce a blur; returns the
 * model (caller frees) and the full-set losses before and after. */
static struct nn_model *train_blur(uint64_t seed, int steps, double *before, double *after)
{
    static float xs[SET * IMG * IMG], ys[SET * IMG * IMG];
    float bx[BATCH * IMG * IMG], by[BATCH * IMG * IMG];
    struct nn_rng r;
    nn_rng_seed(&r, 1234); /* the data set is fixed; the seed drives weights and batches */
    fill(xs, sizeof(xs) / sizeof(xs[0]), &r, 0, 1);
    for (int i = 0; i < SET; i++)
        blur(xs + i * IMG * IMG, ys + i * IMG * IMG);

    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(1, &m), 0);
    add(m, conv3(8));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, conv3(1));
    ck_assert_int_eq(nn_model_init(m, seed), 0);
    *before = eval_mse(m, xs, ys);

    struct nn_ctx *c = NULL;
    struct nn_adam *a = NULL;
    struct nn_adam_opts o = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    ck_assert_int_eq(nn_ctx_new(m, BATCH, IMG, IMG, NN_CTX_TRAIN, &c), 0);
    ck_assert_int_eq(nn_adam_new(m, &o, &a), 0);
    nn_rng_seed(&r, seed);
    uint32_t order[SET];
    for (uint32_t i = 0; i < SET; i++)
        order[i] = i;
    struct nn_tensor in;
    nn_tensor_packed(&in, bx, BATCH, 1, IMG, IMG);
    for (int step = 0; step < steps; step++) {
        int at = step * BATCH % SET;
        if (at == 0)
            nn_rng_shuffle(&r, order, SET);
        for (int b = 0; b < BATCH; b++) {
            memcpy(bx + b * IMG * IMG, xs + order[at + b] * IMG * IMG, sizeof(float) * IMG * IMG);
            memcpy(by + b * IMG * IMG, ys + order[at + b] * IMG * IMG, sizeof(float) * IMG * IMG);
        }
        if (step == steps / 2)
            nn_adam_set_lr(a, 3e-3f);
        double l;
        ck_assert_int_eq(nn_train_step(c, a, m, &in, by, NN_LOSS_MSE, &l), 0);
        ck_assert(isfinite(l));
    }
    nn_adam_free(a);
    nn_ctx_free(c);
    *after = eval_mse(m, xs, ys);
    return m;
}

START_TEST(test_train_blur)
{
    double b1, a1, b2, a2, b3, a3;
    struct nn_model *m1 = train_blur(1, 400, &b1, &a1);
    struct nn_model *m2 = train_blur(1, 400, &b2, &a2);
    struct nn_model *m3 = train_blur(2, 400, &b3, &a3);
    ck_assert_msg(a1 * 100 < b1, "loss %g -> %g", b1, a1);
    ck_assert_msg(a3 * 100 < b3, "loss %g -> %g", b3, a3);
    size_t n1, n2, n3;
    float *p1 = nn_model_params(m1, &n1), *p2 = nn_model_params(m2, &n2),
          *p3 = nn_model_params(m3, &n3);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(p1, p2, n1 * sizeof(float));
    ck_assert_double_eq(a1, a2);
    ck_assert(memcmp(p1, p3, n1 * sizeof(float)) != 0);
    nn_model_free(m3);
    nn_model_free(m2);
    nn_model_free(m1);
}
END_TEST

/* The bits loss drives training too: predict mean and log-scale of a quantised blur. */
START_TEST(test_train_bits)
{
    enum { NB = 8, S = 8, LEVELS = 32 };
    float x[NB * S * S], y[NB * S * S];
    int32_t tgt[NB * S * S];
    struct nn_rng r;
    nn_rng_seed(&r, 55);
    fill(x, NB * S * S, &r, 0, 1);
    for (int n = 0; n < NB; n++)
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                float s = 0;
                for (int a = -1; a <= 1; a++)
                    for (int b = -1; b <= 1; b++) {
                        int yy = i + a < 0 ? 0 : i + a >= S ? S - 1 : i + a;
                        int xx = j + b < 0 ? 0 : j + b >= S ? S - 1 : j + b;
                        s += x[(n * S + yy) * S + xx];
                    }
                y[(n * S + i) * S + j] = s / 9;
                tgt[(n * S + i) * S + j] = (int32_t)lrintf(s / 9 * (LEVELS - 1));
            }
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(1, &m), 0);
    add(m, conv3(8));
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.1f});
    add(m, conv3(2));
    ck_assert_int_eq(nn_model_init(m, 3), 0);
    struct nn_ctx *c = NULL;
    struct nn_adam *a = NULL;
    struct nn_adam_opts o = {.lr = 2e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    ck_assert_int_eq(nn_ctx_new(m, NB, S, S, NN_CTX_TRAIN, &c), 0);
    ck_assert_int_eq(nn_adam_new(m, &o, &a), 0);
    struct nn_tensor in, out;
    nn_tensor_packed(&in, x, NB, 1, S, S);
    double first = 0, last = 0;
    for (int step = 0; step < 400; step++) {
        nn_ctx_zero_grads(c);
        ck_assert_int_eq(nn_forward(c, &in, &out), 0);
        /* Work in units of levels: mean = 31 * net output. */
        for (size_t i = 0; i < (size_t)NB * S * S; i++) {
            size_t at = (i / (S * S)) * 2 * S * S + i % (S * S);
            out.data[at] *= LEVELS - 1;
        }
        float *g = nn_ctx_out_grad(c);
        ck_assert_int_eq(nn_loss_bits(&out, tgt, 0, LEVELS - 1, g, &last), 0);
        for (size_t i = 0; i < (size_t)NB * S * S; i++)
            g[(i / (S * S)) * 2 * S * S + i % (S * S)] *= LEVELS - 1;
        if (step == 0)
            first = last;
        ck_assert_int_eq(nn_backward(c, g, NULL), 0);
        ck_assert_int_eq(nn_adam_step(a, m, nn_ctx_grads(c, NULL)), 0);
    }
    /* From about log2(32) bits down to well under 2 (the target is a deterministic function
     * of the input, so it tends towards 0). */
    ck_assert_msg(first > 3.0 && last < 1.5, "bits %g -> %g", first, last);
    (void)y;
    nn_adam_free(a);
    nn_ctx_free(c);
    nn_model_free(m);
}
END_TEST

START_TEST(test_adam)
{
    struct nn_model *m = NULL, *other = NULL;
    ck_assert_int_eq(nn_model_new(1, &m), 0);
    add(m, (struct nn_layer_desc){.type = NN_CONV2D, .out_ch = 1, .kh = 1, .kw = 1, .stride = 1});
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    ck_assert_int_eq(nn_model_new(1, &other), 0);
    add(other, (struct nn_layer_desc){.type = NN_RELU});
    ck_assert_int_eq(nn_model_init(other, 1), 0);
    struct nn_adam *a = NULL;
    struct nn_adam_opts o = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    struct nn_adam_opts bad = o;
    bad.beta1 = 1.0f;
    ck_assert_int_eq(nn_adam_new(m, &bad, &a), -EINVAL);
    bad = o;
    bad.lr = 0;
    ck_assert_int_eq(nn_adam_new(m, &bad, &a), -EINVAL);
    ck_assert_int_eq(nn_adam_new(m, &o, &a), 0);
    float *w = nn_model_params(m, NULL), g = 0.5f, w0 = w[0];
    /* The first Adam step moves every weight by lr against the sign of its gradient. */
    ck_assert_int_eq(nn_adam_step(a, m, &g), 0);
    ck_assert_float_eq_tol(w[0], w0 - 0.1f, 1e-6f);
    ck_assert_int_eq(nn_adam_step(a, other, &g), -EINVAL);
    nn_adam_free(a);

    /* Several steps of AdamW against the textbook update in double. */
    struct nn_model *big = NULL;
    ck_assert_int_eq(nn_model_new(2, &big), 0);
    add(big, conv3(3));
    ck_assert_int_eq(nn_model_init(big, 2), 0);
    size_t np;
    float *p = nn_model_params(big, &np), grads[57];
    ck_assert_uint_eq(np, 57);
    double ref[57], mom[57] = {0}, vel[57] = {0};
    for (size_t i = 0; i < np; i++)
        ref[i] = p[i];
    o = (struct nn_adam_opts){
        .lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.95f, .eps = 1e-6f, .weight_decay = 0.1f};
    ck_assert_int_eq(nn_adam_new(big, &o, &a), 0);
    struct nn_rng r;
    nn_rng_seed(&r, 3);
    for (int t = 1; t <= 6; t++) {
        fill(grads, np, &r, -1, 1);
        ck_assert_int_eq(nn_adam_step(a, big, grads), 0);
        for (size_t i = 0; i < np; i++) {
            mom[i] = 0.8 * mom[i] + 0.2 * grads[i];
            vel[i] = 0.95 * vel[i] + 0.05 * (double)grads[i] * grads[i];
            double mh = mom[i] / (1 - pow(0.8, t)), vh = vel[i] / (1 - pow(0.95, t));
            ref[i] -= 0.01 * mh / (sqrt(vh) + 1e-6) + 0.01 * 0.1 * ref[i];
            ck_assert_double_eq_tol(p[i], ref[i], 1e-6);
        }
    }
    nn_adam_free(a);
    nn_model_free(big);
    nn_adam_free(NULL);
    nn_model_free(other);
    nn_model_free(m);
}
END_TEST

/* ---- threads ---- */

struct worker {
    const struct nn_model *m;
    const float *inputs[2];
    const float *want[2];
    size_t out_count;
    int rounds, mismatches, errors;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct nn_ctx *c = NULL;
    if (nn_ctx_new(w->m, 2, 12, 10, 0, &c)) {
        w->errors++;
        return NULL;
    }
    for (int i = 0; i < w->rounds; i++) {
        struct nn_tensor in, out;
        nn_tensor_packed(&in, (float *)w->inputs[i & 1], 2, 3, 12, 10);
        if (nn_forward(c, &in, &out) || nn_tensor_count(&out) != w->out_count)
            w->errors++;
        else if (memcmp(out.data, w->want[i & 1], w->out_count * sizeof(float)) != 0)
            w->mismatches++;
    }
    nn_ctx_free(c);
    return NULL;
}

START_TEST(test_threads)
{
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(3, &m), 0);
    add(m, conv3(8));
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m, (struct nn_layer_desc){.type = NN_MAXPOOL, .kh = 2, .kw = 2, .stride = 2});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, conv3(8));
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 4});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = 2});
    add(m, conv3(2));
    ck_assert_int_eq(nn_model_init(m, 77), 0);
    nn_set_threads(1);
    ck_assert_int_eq(nn_threads(), 1);

    static float in[2][2 * 3 * 12 * 10], want[2][2 * 2 * 12 * 10];
    struct nn_rng r;
    nn_rng_seed(&r, 66);
    struct nn_ctx *c = NULL;
    ck_assert_int_eq(nn_ctx_new(m, 2, 12, 10, 0, &c), 0);
    for (int k = 0; k < 2; k++) {
        fill(in[k], sizeof(in[k]) / sizeof(float), &r, -1, 1);
        struct nn_tensor t, out;
        nn_tensor_packed(&t, in[k], 2, 3, 12, 10);
        ck_assert_int_eq(nn_forward(c, &t, &out), 0);
        ck_assert_uint_eq(nn_tensor_count(&out), sizeof(want[k]) / sizeof(float));
        memcpy(want[k], out.data, sizeof(want[k]));
    }
    /* bit for bit on purpose */
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c)
    ck_assert(memcmp(want[0], want[1], sizeof(want[0])) != 0);
    nn_ctx_free(c);

    struct worker w[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        w[k] = (struct worker){
            .m = m,
            .inputs = {in[k], in[1 - k]},
            .want = {want[k], want[1 - k]},
            .out_count = sizeof(want[0]) / sizeof(float),
            .rounds = 200,
        };
        ck_assert_int_eq(pthread_create(&th[k], NULL, worker_run, &w[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert_int_eq(w[k].errors, 0);
        ck_assert_int_eq(w[k].mismatches, 0);
    }
    nn_model_free(m);
}
END_TEST

static Suite *nn_train_suite(void)
{
    Suite *s = suite_create("nn_train");
    TCase *tc = tcase_create("loss");
    tcase_add_test(tc, test_loss_mse_l1);
    tcase_add_test(tc, test_loss_bits_value);
    tcase_add_test(tc, test_loss_bits_grad);
    suite_add_tcase(s, tc);
    tc = tcase_create("train");
    tcase_set_timeout(tc, 300); /* slow under sanitizers */
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_train_blur);
    tcase_add_test(tc, test_train_bits);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(nn_train_suite)
