// SPDX-License-Identifier: MIT
/*
 * Unit tests of the autoencoder (nn/ae.h): latent and preview geometry for odd, degenerate,
 * 16-bit and colour images; determinism; the rate against nn_loss_bits and against masses
 * computed here from the logistic CDF; the gradients of the log-mass; PSNR and SSIM against a
 * naive reference; a short training run that lowers the loss and repeats bit for bit; the
 * integer decoder (samples against a long double reference of its output, bit-identical across
 * runs, OpenBLAS thread counts and concurrent threads, close to the float decoder); the model
 * file round trip and its refusals; the built-in model.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/ae.h"
#include "nn/ae_int.h"
#include "nn/nn.h"
#include "tests/unit/unit.h"

static const struct nn_ae_config small_cfg = {.latent = 4, .w1 = 4, .w2 = 8, .w3 = 8, .nres = 1};

static struct nn_ae *small_ae(uint64_t seed)
{
    struct nn_ae *ae = NULL;
    ck_assert_int_eq(nn_ae_new(&small_cfg, seed, &ae), 0);
    return ae;
}

/* A smooth test image with an edge: a disc on a ramp, plus a little noise. */
static struct nn_ae_image make_image(uint32_t c, uint32_t h, uint32_t w, uint32_t bits,
                                     uint32_t maxval, uint64_t seed)
{
    struct nn_ae_image img = {c, h, w, bits, NULL};
    size_t n = (size_t)c * h * w;
    img.pixels = malloc(n * (bits / 8));
    ck_assert_ptr_nonnull(img.pixels);
    struct nn_rng r;
    nn_rng_seed(&r, seed);
    for (uint32_t k = 0; k < c; k++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                double fy = (y + 0.5) / h - 0.5, fx = (x + 0.5) / w - 0.5;
                double v = 0.2 + 0.3 * (fx + 0.5) + (fx * fx + fy * fy < 0.09 ? 0.4 : 0.0);
                v += 0.05 * (nn_rng_uniform(&r) - 0.5) + 0.05 * k;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                uint32_t s = (uint32_t)lrint(v * maxval);
                size_t i = ((size_t)k * h + y) * w + x;
                if (bits == 8)
                    ((uint8_t *)img.pixels)[i] = (uint8_t)s;
                else
                    ((uint16_t *)img.pixels)[i] = (uint16_t)s;
            }
    return img;
}

/* ---- geometry and determinism ---- */

START_TEST(test_shapes)
{
    static const uint32_t dims[][2] = {{1, 1},   {1, 37},  {23, 1},  {13, 29},
                                       {16, 16}, {17, 31}, {61, 47}, {2, 2}};
    struct nn_ae *ae = small_ae(5);
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
        for (uint32_t c = 1; c <= 4; c++)
            for (uint32_t bits = 8; bits <= 16; bits += 8) {
                if (c == 2 && bits == 16)
                    continue;
                uint32_t h = dims[i][0], w = dims[i][1], maxval = bits == 8 ? 255 : 4095;
                struct nn_ae_image img = make_image(c, h, w, bits, maxval, i);
                struct nn_ae_latent *lat = NULL, *lat2 = NULL;
                struct nn_ae_image *out = NULL, *out2 = NULL;
                ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
                ck_assert_uint_eq(lat->channels, c);
                ck_assert_uint_eq(lat->lc, small_cfg.latent);
                ck_assert_uint_eq(lat->lh, (h + 15) / 16);
                ck_assert_uint_eq(lat->lw, (w + 15) / 16);
                ck_assert_uint_eq(lat->height, h);
                ck_assert_uint_eq(lat->width, w);
                ck_assert_uint_le(lat->depth, bits == 8 ? 8 : 12);
                ck_assert_int_eq(nn_ae_encode(ae, &img, &lat2), 0);
                size_t nq = (size_t)c * lat->lc * lat->lh * lat->lw;
                ck_assert_mem_eq(lat->q, lat2->q, nq);
                ck_assert_int_eq(nn_ae_decode(ae, lat, &out), 0);
                ck_assert_int_eq(nn_ae_decode(ae, lat, &out2), 0);
                ck_assert_uint_eq(out->channels, c);
                ck_assert_uint_eq(out->height, h);
                ck_assert_uint_eq(out->width, w);
                ck_assert_uint_eq(out->bits, bits);
                size_t n = (size_t)c * h * w;
                ck_assert_mem_eq(out->pixels, out2->pixels, n * (bits / 8));
                for (size_t j = 0; bits == 16 && j < n; j++)
                    ck_assert_uint_le(((uint16_t *)out->pixels)[j], (1u << lat->depth) - 1);
                double bitsum;
                ck_assert_int_eq(nn_ae_rate(ae, lat, &bitsum), 0);
                ck_assert(isfinite(bitsum) && bitsum >= 0);
                nn_ae_image_free(out2);
                nn_ae_image_free(out);
                nn_ae_latent_free(lat2);
                nn_ae_latent_free(lat);
                free(img.pixels);
            }
    /* Refusals. */
    struct nn_ae_image img = make_image(1, 8, 8, 8, 255, 1), bad = img;
    struct nn_ae_latent *lat = NULL;
    bad.bits = 12;
    ck_assert_int_eq(nn_ae_encode(ae, &bad, &lat), -EINVAL);
    bad = img;
    bad.channels = 5;
    ck_assert_int_eq(nn_ae_encode(ae, &bad, &lat), -EINVAL);
    bad = img;
    bad.width = 0;
    ck_assert_int_eq(nn_ae_encode(ae, &bad, &lat), -EINVAL);
    ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
    struct nn_ae_image *out = NULL;
    lat->lh++; /* no longer the image's grid */
    ck_assert_int_eq(nn_ae_decode(ae, lat, &out), -EINVAL);
    lat->lh--;
    lat->depth = 9; /* more than 8-bit samples hold */
    ck_assert_int_eq(nn_ae_decode(ae, lat, &out), -EINVAL);
    nn_ae_latent_free(lat);
    free(img.pixels);
    nn_ae_free(ae);
}
END_TEST

/* Normalisation: depth is the bit length of the largest sample; a grey image stored as RGB has
 * flat chroma planes, which the colour transform maps to exactly 1/2. */
START_TEST(test_planes)
{
    uint16_t px[6] = {0, 100, 4095, 7, 8, 9};
    struct nn_ae_image img = {1, 2, 3, 16, px};
    ck_assert_uint_eq(nn_ae_depth(&img), 12);
    px[2] = 4096;
    ck_assert_uint_eq(nn_ae_depth(&img), 13);
    memset(px, 0, sizeof(px));
    ck_assert_uint_eq(nn_ae_depth(&img), 1);
    uint8_t rgb[3 * 4] = {10, 20, 30, 40, 10, 20, 30, 40, 10, 20, 30, 40};
    struct nn_ae_image c3 = {3, 2, 2, 8, rgb};
    float p[12];
    nn_ae_planes(&c3, nn_ae_depth(&c3), p);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq_tol(p[i], (float)rgb[i] / 63.0f, 1e-6f);
        ck_assert_float_eq(p[4 + i], 0.5f);
        ck_assert_float_eq(p[8 + i], 0.5f);
    }
}
END_TEST

/* ---- rate ---- */

/* Mass of integer q under the logistic, from the CDF in long double, tails at +-QMAX. */
static long double ref_mass(double mu, double ls, int q)
{
    long double s = expl((long double)ls);
    long double up = 1.0L / (1.0L + expl(-((long double)q + 0.5L - mu) / s));
    long double down = 1.0L / (1.0L + expl(-((long double)q - 0.5L - mu) / s));
    if (q == -NN_AE_QMAX)
        down = 0;
    if (q == NN_AE_QMAX) /* 1 - sigma(z) = sigma(-z): no cancellation far out in the tail */
        return 1.0L / (1.0L + expl(((long double)q - 0.5L - mu) / s));
    return up - down;
}

START_TEST(test_rate)
{
    struct nn_ae *ae = small_ae(9);
    float *prior = ae->prior;
    const uint32_t L = small_cfg.latent;
    for (uint32_t c = 0; c < L; c++) {
        prior[c] = 0.3f * (float)c - 0.4f;
        prior[L + c] = -0.5f + 0.6f * (float)c;
    }
    struct nn_ae_image img = make_image(2, 40, 50, 8, 255, 3);
    struct nn_ae_latent *lat = NULL;
    ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
    /* Spread the values, including both ends of the range. */
    struct nn_rng r;
    nn_rng_seed(&r, 4);
    size_t grid = (size_t)lat->lh * lat->lw, nq = lat->channels * L * grid;
    for (size_t i = 0; i < nq; i++)
        lat->q[i] = (int8_t)((int)nn_rng_below(&r, 21) - 10);
    lat->q[0] = -NN_AE_QMAX;
    lat->q[1] = NN_AE_QMAX;
    double bits;
    ck_assert_int_eq(nn_ae_rate(ae, lat, &bits), 0);

    /* 1. The engine's bits loss with the prior broadcast over the grid. */
    uint32_t N = lat->channels;
    float *pred = malloc((size_t)N * 2 * L * grid * sizeof(float));
    int32_t *tgt = malloc(nq * sizeof(int32_t));
    ck_assert_ptr_nonnull(pred);
    ck_assert_ptr_nonnull(tgt);
    for (uint32_t n = 0; n < N; n++)
        for (uint32_t c = 0; c < L; c++)
            for (size_t i = 0; i < grid; i++) {
                pred[((size_t)n * 2 * L + c) * grid + i] = prior[c];
                pred[((size_t)n * 2 * L + L + c) * grid + i] = prior[L + c];
                tgt[((size_t)n * L + c) * grid + i] = lat->q[((size_t)n * L + c) * grid + i];
            }
    struct nn_tensor t;
    nn_tensor_packed(&t, pred, N, 2 * L, lat->lh, lat->lw);
    double mean;
    ck_assert_int_eq(nn_loss_bits(&t, tgt, -NN_AE_QMAX, NN_AE_QMAX, NULL, &mean), 0);
    ck_assert_double_eq_tol(bits, mean * (double)nq, 1e-9 * bits);

    /* 2. The CDF, value by value. */
    long double ref = 0;
    for (uint32_t n = 0; n < N; n++)
        for (uint32_t c = 0; c < L; c++)
            for (size_t i = 0; i < grid; i++)
                ref -=
                    log2l(ref_mass(prior[c], prior[L + c], lat->q[((size_t)n * L + c) * grid + i]));
    ck_assert_double_eq_tol(bits, (double)ref, 1e-6 * bits);

    lat->lc = L + 1;
    ck_assert_int_eq(nn_ae_rate(ae, lat, &bits), -EINVAL);
    free(tgt);
    free(pred);
    nn_ae_latent_free(lat);
    free(img.pixels);
    nn_ae_free(ae);
}
END_TEST

/* The log-mass and its derivatives, by central differences. */
START_TEST(test_logp_grad)
{
    struct nn_rng r;
    nn_rng_seed(&r, 12);
    for (int i = 0; i < 300; i++) {
        double v = -6 + 12 * nn_rng_uniform(&r), mu = -2 + 4 * nn_rng_uniform(&r);
        double ls = -1.5 + 3.5 * nn_rng_uniform(&r);
        int lo = i % 7 == 0, hi = i % 11 == 0 && !lo;
        double dv, dmu, dls, h = 1e-5;
        double lp = nn_ae_logp(v, mu, ls, lo, hi, &dv, &dmu, &dls);
        ck_assert(isfinite(lp) && lp <= 1e-12);
        double nv = (nn_ae_logp(v + h, mu, ls, lo, hi, NULL, NULL, NULL) -
                     nn_ae_logp(v - h, mu, ls, lo, hi, NULL, NULL, NULL)) /
                    (2 * h);
        double nm = (nn_ae_logp(v, mu + h, ls, lo, hi, NULL, NULL, NULL) -
                     nn_ae_logp(v, mu - h, ls, lo, hi, NULL, NULL, NULL)) /
                    (2 * h);
        double nl = (nn_ae_logp(v, mu, ls + h, lo, hi, NULL, NULL, NULL) -
                     nn_ae_logp(v, mu, ls - h, lo, hi, NULL, NULL, NULL)) /
                    (2 * h);
        ck_assert_msg(fabs(nv - dv) < 1e-6 + 1e-5 * fabs(nv), "dv %g vs %g", dv, nv);
        ck_assert_msg(fabs(nm - dmu) < 1e-6 + 1e-5 * fabs(nm), "dmu %g vs %g", dmu, nm);
        ck_assert_msg(fabs(nl - dls) < 1e-6 + 1e-5 * fabs(nl), "dls %g vs %g", dls, nl);
    }
}
END_TEST

/* ---- metrics ---- */

/* SSIM of one window at (r, c), weights straight from the formula. */
static double ref_ssim(const struct nn_ae_image *a, const struct nn_ae_image *b, double L)
{
    double total = 0, w[11][11], ws = 0;
    for (int i = 0; i < 11; i++)
        for (int j = 0; j < 11; j++) {
            w[i][j] = exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5));
            ws += w[i][j];
        }
    const uint8_t *x = a->pixels, *y = b->pixels;
    uint32_t H = a->height, W = a->width;
    for (uint32_t r = 0; r + 11 <= H; r++)
        for (uint32_t c = 0; c + 11 <= W; c++) {
            double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
            for (int i = 0; i < 11; i++)
                for (int j = 0; j < 11; j++) {
                    double k = w[i][j] / ws, p = x[(r + i) * W + c + j], q = y[(r + i) * W + c + j];
                    mx += k * p;
                    my += k * q;
                }
            for (int i = 0; i < 11; i++)
                for (int j = 0; j < 11; j++) {
                    double k = w[i][j] / ws, p = x[(r + i) * W + c + j] - mx,
                           q = y[(r + i) * W + c + j] - my;
                    sxx += k * p * p;
                    syy += k * q * q;
                    sxy += k * p * q;
                }
            double c1 = 0.01 * L * 0.01 * L, c2 = 0.03 * L * 0.03 * L;
            total +=
                (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
        }
    return total / ((H - 10.0) * (W - 10.0));
}

START_TEST(test_metrics)
{
    struct nn_ae_image a = make_image(1, 20, 23, 8, 255, 1), b = make_image(1, 20, 23, 8, 255, 2);
    double psnr, ssim;
    ck_assert_int_eq(nn_ae_psnr(&a, &a, &psnr), 0);
    ck_assert(isinf(psnr));
    ck_assert_int_eq(nn_ae_ssim(&a, &a, &ssim), 0);
    ck_assert_double_eq_tol(ssim, 1.0, 1e-12);
    ck_assert_int_eq(nn_ae_ssim(&a, &b, &ssim), 0);
    ck_assert_double_eq_tol(ssim, ref_ssim(&a, &b, 255), 1e-9);
    ck_assert(ssim < 1.0);
    /* PSNR: every sample off by 3 on a 255 range. */
    memcpy(b.pixels, a.pixels, 20 * 23);
    uint8_t *pb = b.pixels;
    for (int i = 0; i < 20 * 23; i++)
        pb[i] = (uint8_t)(((uint8_t *)a.pixels)[i] > 128 ? pb[i] - 3 : pb[i] + 3);
    ck_assert_int_eq(nn_ae_psnr(&a, &b, &psnr), 0);
    ck_assert_double_eq_tol(psnr, 10 * log10(255.0 * 255.0 / 9.0), 1e-9);
    /* The range is the reference's depth: 12-bit data in 16-bit words peaks at 4095. */
    uint16_t x[4] = {0, 4095, 100, 200}, y[4] = {1, 4095, 100, 200};
    struct nn_ae_image c = {1, 2, 2, 16, x}, d = {1, 2, 2, 16, y};
    ck_assert_int_eq(nn_ae_psnr(&c, &d, &psnr), 0);
    ck_assert_double_eq_tol(psnr, 10 * log10(4095.0 * 4095.0 * 4), 1e-9);
    ck_assert_int_eq(nn_ae_ssim(&c, &d, &ssim), 0); /* tiny image: one window */
    ck_assert(ssim > 0.99 && ssim < 1.0);
    ck_assert_int_eq(nn_ae_psnr(&a, &c, &psnr), -EINVAL);
    free(b.pixels);
    free(a.pixels);
}
END_TEST

/* ---- training ---- */

enum { TSET = 6 };

static double set_mse(const struct nn_ae *ae, const struct nn_ae_image *set)
{
    double sum = 0;
    for (int i = 0; i < TSET; i++) {
        struct nn_ae_latent *lat = NULL;
        struct nn_ae_image *out = NULL;
        ck_assert_int_eq(nn_ae_encode(ae, &set[i], &lat), 0);
        ck_assert_int_eq(nn_ae_decode(ae, lat, &out), 0);
        size_t n = (size_t)set[i].height * set[i].width;
        double e = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)((uint8_t *)set[i].pixels)[j] - ((uint8_t *)out->pixels)[j];
            e += d * d;
        }
        sum += e / (double)n / TSET;
        nn_ae_image_free(out);
        nn_ae_latent_free(lat);
    }
    return sum;
}

static int count_steps(void *arg, const struct nn_ae_progress *p)
{
    int *n = arg;
    (*n)++;
    ck_assert(isfinite(p->loss) && p->step >= 1 && p->step <= p->steps);
    return 0;
}

static struct nn_ae *train_tiny(const struct nn_ae_image *set, uint64_t seed, double *before,
                                double *after)
{
    struct nn_ae *ae = small_ae(seed);
    struct nn_ae_train_opts o;
    nn_ae_train_defaults(&o);
    o.epochs = 2;
    o.steps = 60;
    o.batch = 2;
    o.crop = 32;
    o.lr = 3e-3f;
    o.lr_end = 1e-3f;
    o.lambda = 1e-4f;
    o.target_bpp = 0;
    o.seed = seed;
    int steps = 0;
    o.progress = count_steps;
    o.arg = &steps;
    *before = set_mse(ae, set);
    ck_assert_int_eq(nn_ae_train(ae, set, TSET, &o), 0);
    ck_assert_int_eq(steps, 120);
    *after = set_mse(ae, set);
    return ae;
}

static int stop_now(void *arg, const struct nn_ae_progress *p)
{
    (void)arg;
    (void)p;
    return 1;
}

START_TEST(test_train)
{
    nn_set_threads(1);
    struct nn_ae_image set[TSET];
    for (int i = 0; i < TSET; i++)
        set[i] =
            make_image(1, 24 + 4 * (uint32_t)i, 40 - 2 * (uint32_t)i, 8, 255, 100 + (uint64_t)i);
    double b1, a1, b2, a2, b3, a3;
    struct nn_ae *m1 = train_tiny(set, 7, &b1, &a1);
    struct nn_ae *m2 = train_tiny(set, 7, &b2, &a2);
    struct nn_ae *m3 = train_tiny(set, 8, &b3, &a3);
    ck_assert_msg(a1 < 0.5 * b1, "mse %g -> %g", b1, a1);
    ck_assert_msg(a3 < 0.5 * b3, "mse %g -> %g", b3, a3);
    uint8_t *f1, *f2, *f3;
    size_t l1, l2, l3;
    ck_assert_int_eq(nn_ae_save(m1, &f1, &l1), 0);
    ck_assert_int_eq(nn_ae_save(m2, &f2, &l2), 0);
    ck_assert_int_eq(nn_ae_save(m3, &f3, &l3), 0);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(f1, f2, l1);
    ck_assert_double_eq(a1, a2);
    ck_assert(l1 == l3 && memcmp(f1, f3, l1) != 0);

    /* Training changes the float decoder: the integer one is dropped. */
    ck_assert_int_eq(nn_ae_quantize(m3, set, TSET), 0);
    ck_assert_ptr_nonnull(nn_ae_int_decoder(m3));
    struct nn_ae_train_opts o;
    nn_ae_train_defaults(&o);
    o.crop = 16;
    o.steps = 1;
    o.batch = 1;
    ck_assert_int_eq(nn_ae_train(m3, set, TSET, &o), 0);
    ck_assert_ptr_null(nn_ae_int_decoder(m3));

    /* Refusals and cancellation. */
    nn_ae_train_defaults(&o);
    ck_assert_int_eq(nn_ae_train(m1, set, 0, &o), -EINVAL);
    o.crop = 24;
    ck_assert_int_eq(nn_ae_train(m1, set, TSET, &o), -EINVAL);
    nn_ae_train_defaults(&o);
    o.crop = 16;
    o.progress = stop_now;
    ck_assert_int_eq(nn_ae_train(m1, set, TSET, &o), -ECANCELED);
    free(f3);
    free(f2);
    free(f1);
    nn_ae_free(m3);
    nn_ae_free(m2);
    nn_ae_free(m1);
    for (int i = 0; i < TSET; i++)
        free(set[i].pixels);
}
END_TEST

/* ---- integer decoder ---- */

/* A small model with an integer decoder calibrated on a few generated images. */
static struct nn_ae *small_int_ae(uint64_t seed)
{
    struct nn_ae *ae = small_ae(seed);
    struct nn_ae_image set[3] = {make_image(1, 40, 56, 8, 255, 1), make_image(3, 33, 20, 8, 255, 2),
                                 make_image(1, 70, 64, 16, 4095, 3)};
    ck_assert_int_eq(nn_ae_quantize(ae, set, 3), 0);
    for (int i = 0; i < 3; i++)
        free(set[i].pixels);
    return ae;
}

/* What nn_ae_decode_int must give, from the integer network's own output: the plane values
 * q s + 1/2 (YCoCg undone for 3 and 4 channels) times P, rounded half up and clamped, computed
 * in long double, which holds these products exactly (64-bit significand). */
static void reference_samples(const struct nn_ae *ae, const struct nn_ae_latent *lat, uint32_t *ref)
{
    const struct nn_qmodel *q = nn_ae_int_decoder(ae);
    uint32_t C = lat->channels, ph = lat->lh * 16, pw = lat->lw * 16;
    size_t nq = (size_t)C * lat->lc * lat->lh * lat->lw, plane = (size_t)lat->height * lat->width;
    int16_t *in = malloc(nq * sizeof(int16_t));
    ck_assert_ptr_nonnull(in);
    for (size_t i = 0; i < nq; i++)
        in[i] = lat->q[i];
    struct nn_qctx *c = NULL;
    ck_assert_int_eq(nn_qctx_new(q, C, lat->lh, lat->lw, &c), 0);
    struct nn_qtensor t = {in, C, lat->lc, lat->lh, lat->lw}, y;
    ck_assert_int_eq(nn_qforward(c, &t, &y), 0);
    long double s = nn_qmodel_out_scale(q), P = (long double)((1u << lat->depth) - 1);
    for (uint32_t r = 0; r < lat->height; r++)
        for (uint32_t x = 0; x < lat->width; x++) {
            long double v[4];
            for (uint32_t k = 0; k < C; k++)
                v[k] = y.data[((size_t)k * ph + r) * pw + x] * s;
            if (C >= 3) {
                long double Y = v[0], co = v[1], cg = v[2];
                v[0] = Y - cg + co;
                v[1] = Y + cg;
                v[2] = Y - cg - co;
            }
            for (uint32_t k = 0; k < C; k++) {
                long double u = floorl((v[k] + 0.5L) * P + 0.5L);
                ref[k * plane + (size_t)r * lat->width + x] = u < 0   ? 0
                                                              : u > P ? (uint32_t)P
                                                                      : (uint32_t)u;
            }
        }
    nn_qctx_free(c);
    free(in);
}

static uint32_t sample_at(const struct nn_ae_image *img, size_t i)
{
    return img->bits == 8 ? ((const uint8_t *)img->pixels)[i] : ((const uint16_t *)img->pixels)[i];
}

START_TEST(test_int_decoder)
{
    ck_assert_msg(sizeof(long double) > sizeof(double), "the reference needs x87 long double");
    static const uint32_t dims[][2] = {{1, 1}, {1, 37}, {13, 29}, {16, 16}, {61, 47}, {64, 80}};
    struct nn_ae *ae = small_ae(9);
    struct nn_ae_image img = make_image(1, 20, 20, 8, 255, 1);
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *out = NULL;
    ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
    ck_assert_int_eq(nn_ae_decode_int(ae, lat, &out), -ENOENT); /* not quantised yet */
    ck_assert_ptr_null(nn_ae_int_decoder(ae));
    ck_assert_int_eq(nn_ae_quantize(ae, &img, 0), -EINVAL);
    ck_assert_int_eq(nn_ae_quantize(NULL, &img, 1), -EINVAL);
    nn_ae_latent_free(lat);
    free(img.pixels);
    nn_ae_free(ae);

    ae = small_int_ae(9);
    const struct nn_qmodel *q = nn_ae_int_decoder(ae);
    ck_assert_ptr_nonnull(q);
    ck_assert_float_eq(nn_qmodel_in_scale(q), 1.0f);
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
        for (uint32_t c = 1; c <= 4; c++)
            for (uint32_t bits = 8; bits <= 16; bits += 8) {
                uint32_t h = dims[i][0], w = dims[i][1], maxval = bits == 8 ? 255 : 4095;
                img = make_image(c, h, w, bits, maxval, 30 + i);
                struct nn_ae_image *fl = NULL;
                size_t n = (size_t)c * h * w;
                ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
                ck_assert_int_eq(nn_ae_decode_int(ae, lat, &out), 0);
                ck_assert_int_eq(nn_ae_decode(ae, lat, &fl), 0);
                ck_assert(out->channels == c && out->height == h && out->width == w &&
                          out->bits == bits);
                uint32_t *ref = calloc(n, sizeof(uint32_t));
                ck_assert_ptr_nonnull(ref);
                reference_samples(ae, lat, ref);
                double err = 0;
                for (size_t j = 0; j < n; j++) {
                    ck_assert_msg(sample_at(out, j) == ref[j], "%ux%ux%u/%u sample %zu: %u, not %u",
                                  c, h, w, bits, j, sample_at(out, j), ref[j]);
                    double d = (double)sample_at(out, j) - (double)sample_at(fl, j);
                    err += d * d;
                }
                /* Close to the float decoder: RMS below 1% of the range. */
                double range = (double)((1u << lat->depth) - 1);
                ck_assert_msg(sqrt(err / (double)n) <= 0.01 * range, "%ux%ux%u/%u: rms %g", c, h, w,
                              bits, sqrt(err / (double)n));
                free(ref);
                nn_ae_image_free(fl);
                nn_ae_image_free(out);
                nn_ae_latent_free(lat);
                free(img.pixels);
            }
    nn_ae_free(ae);
}
END_TEST

struct int_job {
    const struct nn_ae *ae;
    const struct nn_ae_latent *lat;
    const struct nn_ae_image *want;
    int same; /* out: every run matched */
};

static void *int_worker(void *arg)
{
    struct int_job *j = arg;
    j->same = 1;
    for (int r = 0; r < 8; r++) {
        struct nn_ae_image *out = NULL;
        size_t n = (size_t)j->want->channels * j->want->height * j->want->width;
        if (nn_ae_decode_int(j->ae, j->lat, &out) != 0 ||
            memcmp(out->pixels, j->want->pixels, n * (j->want->bits / 8)) != 0)
            j->same = 0;
        nn_ae_image_free(out);
    }
    return NULL;
}

/* The same samples on every run, with 1 and 2 OpenBLAS threads, and from two threads at once
 * (and through a save and load). */
START_TEST(test_int_deterministic)
{
    struct nn_ae *ae = small_int_ae(13), *back = NULL;
    struct nn_ae_image img = make_image(3, 97, 131, 16, 1023, 4);
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *ref = NULL, *out = NULL;
    size_t bytes = (size_t)3 * 97 * 131 * 2;
    nn_set_threads(1);
    ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
    ck_assert_int_eq(nn_ae_decode_int(ae, lat, &ref), 0);
    for (int t = 1; t <= 2; t++) {
        nn_set_threads(t);
        for (int r = 0; r < 2; r++) {
            ck_assert_int_eq(nn_ae_decode_int(ae, lat, &out), 0);
            ck_assert_mem_eq(out->pixels, ref->pixels, bytes);
            nn_ae_image_free(out);
        }
    }
    nn_set_threads(1);
    /* A planned decoder gives the same samples, run after run, and refuses other geometries. */
    struct nn_ae_qdec *d = NULL;
    ck_assert_int_eq(nn_ae_qdec_new(ae, 3, 97, 131, &d), 0);
    struct nn_ae_image mine = {3, 97, 131, 16, malloc(bytes)};
    ck_assert_ptr_nonnull(mine.pixels);
    for (int r = 0; r < 2; r++) {
        memset(mine.pixels, 0, bytes);
        ck_assert_int_eq(nn_ae_qdec_run(d, lat, &mine), 0);
        ck_assert_mem_eq(mine.pixels, ref->pixels, bytes);
    }
    mine.bits = 8;
    ck_assert_int_eq(nn_ae_qdec_run(d, lat, &mine), -EINVAL);
    free(mine.pixels);
    nn_ae_qdec_free(d);
    ck_assert_int_eq(nn_ae_qdec_new(ae, 3, 96, 131, &d), 0);
    mine = (struct nn_ae_image){3, 96, 131, 16, malloc(bytes)};
    ck_assert_int_eq(nn_ae_qdec_run(d, lat, &mine), -EINVAL);
    free(mine.pixels);
    nn_ae_qdec_free(d);
    ck_assert_int_eq(nn_ae_qdec_new(ae, 5, 96, 131, &d), -EINVAL);
    struct int_job jobs[2] = {{ae, lat, ref, 0}, {ae, lat, ref, 0}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, int_worker, &jobs[k]), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert_msg(jobs[k].same, "thread %d decoded other samples", k);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(nn_ae_save(ae, &buf, &len), 0);
    ck_assert_int_eq(nn_ae_load(buf, len, &back), 0);
    ck_assert_int_eq(nn_ae_decode_int(back, lat, &out), 0);
    ck_assert_mem_eq(out->pixels, ref->pixels, bytes);
    /* Quantising again on the same images gives the same integer decoder. */
    struct nn_ae *again = small_int_ae(13);
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    ck_assert_int_eq(nn_ae_save(again, &buf2, &len2), 0);
    ck_assert(len == len2 && memcmp(buf, buf2, len) == 0);
    free(buf2);
    nn_ae_free(again);
    free(buf);
    nn_ae_image_free(out);
    nn_ae_free(back);
    nn_ae_image_free(ref);
    nn_ae_latent_free(lat);
    free(img.pixels);
    nn_ae_free(ae);
}
END_TEST

/* ---- model file ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the trailing CRC-32 after an edit, so that only the edit is judged. */
static void fix_crc(uint8_t *b, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i + 4 < len; i++) {
        crc ^= b[i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
    }
    put32(b + len - 4, crc ^ 0xffffffffu);
}

START_TEST(test_file)
{
    struct nn_ae *ae = small_ae(21), *back = NULL;
    ae->prior[1] = 0.25f;
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    ck_assert_int_eq(nn_ae_save(ae, &buf, &len), 0);
    ck_assert_uint_eq(len, 12 + 4 * NN_AE_CONFIG_WORDS + 8 + 4 * nn_ae_param_count(ae) + 8 + 4);
    ck_assert_mem_eq(buf, "IMAE", 4);
    ck_assert_int_eq(nn_ae_load(buf, len, &back), 0);
    ck_assert_int_eq(nn_ae_save(back, &buf2, &len2), 0);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(buf, buf2, len);
    free(buf2);
    /* Identical outputs. */
    struct nn_ae_image img = make_image(3, 37, 45, 16, 1023, 5);
    struct nn_ae_latent *l1 = NULL, *l2 = NULL;
    struct nn_ae_image *o1 = NULL, *o2 = NULL;
    ck_assert_int_eq(nn_ae_encode(ae, &img, &l1), 0);
    ck_assert_int_eq(nn_ae_encode(back, &img, &l2), 0);
    ck_assert_mem_eq(l1->q, l2->q, (size_t)3 * l1->lc * l1->lh * l1->lw);
    ck_assert_int_eq(nn_ae_decode(ae, l1, &o1), 0);
    ck_assert_int_eq(nn_ae_decode(back, l1, &o2), 0);
    ck_assert_mem_eq(o1->pixels, o2->pixels, (size_t)3 * 37 * 45 * 2);
    double r1, r2;
    ck_assert_int_eq(nn_ae_rate(ae, l1, &r1), 0);
    ck_assert_int_eq(nn_ae_rate(back, l1, &r2), 0);
    ck_assert_double_eq(r1, r2);
    nn_ae_image_free(o2);
    nn_ae_image_free(o1);
    nn_ae_latent_free(l2);
    nn_ae_latent_free(l1);
    free(img.pixels);
    nn_ae_free(back);

    /* Through a file. */
    char path[] = "/tmp/nn_ae_test.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(nn_ae_save_file(ae, path), 0);
    back = NULL;
    ck_assert_int_eq(nn_ae_load_file(path, &back), 0);
    ck_assert_int_eq(nn_ae_save(back, &buf2, &len2), 0);
    ck_assert_mem_eq(buf, buf2, len);
    free(buf2);
    nn_ae_free(back);
    unlink(path);
    ck_assert_int_eq(nn_ae_load_file(path, &back), -ENOENT);

    /* Every truncation, a byte more, every flipped byte of the header, and a sample of the
     * rest: all refused. */
    uint8_t *b = malloc(len + 1);
    ck_assert_ptr_nonnull(b);
    for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 97) {
        memcpy(b, buf, cut);
        ck_assert_int_eq(nn_ae_load(b, cut, &back), -EBADMSG);
    }
    memcpy(b, buf, len);
    b[len] = 0;
    ck_assert_int_eq(nn_ae_load(b, len + 1, &back), -EBADMSG);
    for (size_t i = 0; i < len; i += i < 64 ? 1 : 131) {
        memcpy(b, buf, len);
        b[i] ^= 0x10;
        ck_assert_int_eq(nn_ae_load(b, len, &back), -EBADMSG);
    }
    /* Valid CRC, invalid content. */
    static const struct {
        size_t off;
        uint32_t v;
        int want;
    } edits[] = {
        {4, 3, -EINVAL}, /* version */
        {4, 0, -EINVAL},
        {8, 7, -EINVAL},  /* config words */
        {12, 0, -EINVAL}, /* latent channels */
        {12, NN_AE_MAX_LATENT + 1, -EINVAL},
        {16, NN_AE_MAX_WIDTH + 1, -EINVAL},
        {28, NN_AE_MAX_RES + 1, -EINVAL},
        {32, 63, -EINVAL},         /* qmax */
        {36, 1, -EINVAL},          /* reserved */
        {12, 5, -EBADMSG},         /* another config: the size no longer fits */
        {44, 1, -EBADMSG},         /* parameter count */
        {48, 1, -EBADMSG},         /* its high half */
        {52, 0x7fc00000, -EINVAL}, /* a NaN parameter */
        {56, 0x7f800000, -EINVAL}, /* an infinite one */
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        memcpy(b, buf, len);
        put32(b + edits[i].off, edits[i].v);
        fix_crc(b, len);
        back = NULL;
        ck_assert_msg(nn_ae_load(b, len, &back) == edits[i].want, "edit %zu", i);
        ck_assert_ptr_null(back);
    }
    /* The integer decoder's length field must account for the bytes exactly. */
    size_t qoff = len - 4 - 8;
    for (uint32_t v = 1; v < 3; v++) {
        memcpy(b, buf, len);
        put32(b + qoff, v);
        fix_crc(b, len);
        ck_assert_int_eq(nn_ae_load(b, len, &back), -EBADMSG);
    }
    /* Version 1: the same without the integer decoder's field. */
    memcpy(b, buf, qoff);
    put32(b + 4, 1);
    put32(b + qoff, 0);
    fix_crc(b, qoff + 4);
    ck_assert_int_eq(nn_ae_load(b, qoff + 4, &back), 0);
    ck_assert_ptr_null(nn_ae_int_decoder(back));
    nn_ae_free(back);
    back = NULL;
    free(b);
    free(buf);
    nn_ae_free(ae);

    /* With an integer decoder: round trip, and its bytes judged inside a valid CRC. */
    ae = small_int_ae(21);
    ck_assert_int_eq(nn_ae_save(ae, &buf, &len), 0);
    size_t plen = 12 + 4 * NN_AE_CONFIG_WORDS + 8 + 4 * nn_ae_param_count(ae);
    uint8_t *qb = NULL;
    size_t qlen = 0;
    ck_assert_int_eq(nn_qmodel_save(nn_ae_int_decoder(ae), NN_AE_QDEC_ARCH, &qb, &qlen), 0);
    ck_assert_uint_eq(len, plen + 8 + qlen + 4);
    ck_assert_mem_eq(buf + plen + 8, qb, qlen);
    ck_assert_int_eq(nn_ae_load(buf, len, &back), 0);
    ck_assert_int_eq(nn_ae_save(back, &buf2, &len2), 0);
    ck_assert(len == len2 && memcmp(buf, buf2, len) == 0);
    free(buf2);
    nn_ae_free(back);
    back = NULL;
    b = malloc(len);
    ck_assert_ptr_nonnull(b);
    for (size_t i = plen + 8; i < len - 4; i += 1 + (len - plen) / 97) {
        memcpy(b, buf, len);
        b[i] ^= 0x04;
        fix_crc(b, len);
        int rc = nn_ae_load(b, len, &back);
        /* Some bytes of a quantised model (a weight, a table entry) take any value; every
         * other change must be refused as malformed content. */
        ck_assert_msg(rc == 0 || rc == -EINVAL || rc == -EFBIG, "byte %zu: %d", i, rc);
        nn_ae_free(back);
        back = NULL;
    }
    /* Another model's integer decoder does not fit: a model of another config. */
    struct nn_ae *other = NULL;
    const struct nn_ae_config wide = {.latent = 4, .w1 = 4, .w2 = 8, .w3 = 12, .nres = 1};
    struct nn_ae_image one = make_image(1, 32, 32, 8, 255, 1);
    ck_assert_int_eq(nn_ae_new(&wide, 3, &other), 0);
    ck_assert_int_eq(nn_ae_quantize(other, &one, 1), 0);
    uint8_t *ob = NULL;
    size_t olen = 0;
    ck_assert_int_eq(nn_qmodel_save(nn_ae_int_decoder(other), NN_AE_QDEC_ARCH, &ob, &olen), 0);
    uint8_t *mixed = malloc(plen + 8 + olen + 4);
    ck_assert_ptr_nonnull(mixed);
    memcpy(mixed, buf, plen);
    put32(mixed + plen, (uint32_t)olen);
    put32(mixed + plen + 4, 0);
    memcpy(mixed + plen + 8, ob, olen);
    fix_crc(mixed, plen + 8 + olen + 4);
    ck_assert_int_eq(nn_ae_load(mixed, plen + 8 + olen + 4, &back), -EINVAL);
    /* Nor one saved under another architecture id. */
    free(ob);
    ck_assert_int_eq(nn_qmodel_save(nn_ae_int_decoder(ae), "something-else", &ob, &olen), 0);
    free(mixed);
    mixed = malloc(plen + 8 + olen + 4);
    ck_assert_ptr_nonnull(mixed);
    memcpy(mixed, buf, plen);
    put32(mixed + plen, (uint32_t)olen);
    put32(mixed + plen + 4, 0);
    memcpy(mixed + plen + 8, ob, olen);
    fix_crc(mixed, plen + 8 + olen + 4);
    ck_assert_int_eq(nn_ae_load(mixed, plen + 8 + olen + 4, &back), -EINVAL);
    free(mixed);
    free(ob);
    free(one.pixels);
    nn_ae_free(other);
    free(qb);
    free(b);
    free(buf);
    nn_ae_free(ae);
}
END_TEST

/* The built-in model loads, and is the file the repository ships. */
START_TEST(test_default)
{
    size_t len;
    const uint8_t *bytes = nn_ae_default_bytes(&len);
    struct nn_ae *ae = NULL;
    ck_assert_int_eq(nn_ae_load_default(&ae), 0);
    ck_assert_uint_le(len, 2u << 20);
    struct nn_ae_config want;
    nn_ae_default_config(&want);
    ck_assert_mem_eq(nn_ae_get_config(ae), &want, sizeof(want));
    struct nn_ae_image img = make_image(1, 64, 48, 8, 255, 1);
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *out = NULL;
    double psnr;
    ck_assert_int_eq(nn_ae_encode(ae, &img, &lat), 0);
    ck_assert_int_eq(nn_ae_decode(ae, lat, &out), 0);
    ck_assert_int_eq(nn_ae_psnr(&img, out, &psnr), 0);
    ck_assert_msg(psnr > 20, "default model: %.2f dB on a smooth image", psnr);
    nn_ae_image_free(out);
    ck_assert_ptr_nonnull(nn_ae_int_decoder(ae)); /* the shipped model has its integer decoder */
    ck_assert_int_eq(nn_ae_decode_int(ae, lat, &out), 0);
    ck_assert_int_eq(nn_ae_psnr(&img, out, &psnr), 0);
    ck_assert_msg(psnr > 20, "default model, integer decoder: %.2f dB", psnr);
    nn_ae_image_free(out);
    nn_ae_latent_free(lat);
    free(img.pixels);
    nn_ae_free(ae);
    const char *data = getenv("IMGC_TESTDATA");
    if (data) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/../../models/ae-default.params", data);
        size_t flen;
        unsigned char *file = unit_read_file(path, &flen);
        ck_assert_msg(flen == len && memcmp(file, bytes, len) == 0,
                      "the built-in model differs from %s: rebuild nn/ae_default.c", path);
        free(file);
    }
}
END_TEST

static Suite *nn_ae_suite(void)
{
    Suite *s = suite_create("nn_ae");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_planes);
    tcase_add_test(tc, test_rate);
    tcase_add_test(tc, test_logp_grad);
    tcase_add_test(tc, test_metrics);
    suite_add_tcase(s, tc);
    tc = tcase_create("train");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_train);
    suite_add_tcase(s, tc);
    tc = tcase_create("int");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_int_decoder);
    tcase_add_test(tc, test_int_deterministic);
    suite_add_tcase(s, tc);
    tc = tcase_create("file");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_file);
    tcase_add_test(tc, test_default);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(nn_ae_suite)
