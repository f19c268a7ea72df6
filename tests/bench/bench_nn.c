// SPDX-License-Identifier: MIT
/*
 * Benchmark of nn/: the conv path against the machine's own BLAS peak, in one run.
 *
 *   bench_nn conv     16->16 and 32->32 3x3 convolutions at 256^2 and 512^2, float (im2col +
 *                     sgemm; and the fast inference context of the autoencoder, without column
 *                     matrix, where the CPU has FMA) and integer (int16 pairs -> int32 GEMM read
 *                     in place), on 1 and 2 threads;
 *                     beside them OpenBLAS sgemm alone on the same matrix shape and on 1024^3
 *                     (the peak this machine reaches)
 *   bench_nn ae       the shipped autoencoder: encoder and decoder time per 8-bit image
 *                     at 256^2 and 512^2 (an MRI-like synthetic image), one image on one and on two
 *                     BLAS threads, two images at once on two threads (one context each) for the
 *                     throughput of two cores, and the preview of a series: the integer decoder
 *                     planned once (nn_ae_qdec_new), then run per image (nn_ae_qdec_run)
 *
 * Figures are the best of enough repetitions to fill 0.5 s (1 s per line of the autoencoder; the
 * minimum is the most repeatable figure of a shared machine). GFLOP/s counts a multiply-add as
 * two operations; for the integer path the same count is called Gop/s.
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/ae.h"
#include "nn/nn.h"
#include "nn/nn_int.h" /* NN_CTX_FAST */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define BEST_OF(best, stmt)                                                                        \
    do {                                                                                           \
        double end_ = now() + 0.5;                                                                 \
        (best) = 1e30;                                                                             \
        for (int rep_ = 0; rep_ < 3 || now() < end_; rep_++) {                                     \
            double t0_ = now();                                                                    \
            stmt;                                                                                  \
            double dt_ = now() - t0_;                                                              \
            if (dt_ < (best))                                                                      \
                (best) = dt_;                                                                      \
        }                                                                                          \
    } while (0)

static void fill(float *p, size_t n, struct nn_rng *r)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(nn_rng_uniform(r) * 2 - 1);
}

static double sgemm_gflops(int m, int n, int k)
{
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
    float *c = malloc(sizeof(float) * (size_t)m * n);
    struct nn_rng r;
    double t;
    nn_rng_seed(&r, 1);
    fill(a, (size_t)m * k, &r);
    fill(b, (size_t)k * n, &r);
    BEST_OF(t, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n,
                           0.0f, c, n));
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / t / 1e9;
}

static int bench_conv(uint32_t ch, uint32_t size, int threads)
{
    struct nn_model *m = NULL;
    struct nn_ctx *ctx = NULL, *fctx = NULL;
    struct nn_qmodel *q = NULL;
    struct nn_qctx *qc = NULL;
    struct nn_rng r;
    struct nn_tensor in, out, calib;
    struct nn_qtensor qin, qout;
    size_t n = (size_t)ch * size * size;
    float *x = malloc(sizeof(float) * n);
    int16_t *xq = malloc(sizeof(int16_t) * n);
    int rc = -1;
    double tf, tff, tq;
    struct nn_layer_desc d = {
        .type = NN_CONV2D, .out_ch = ch, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 1};
    nn_set_threads(threads);
    nn_rng_seed(&r, 7);
    if (!x || !xq || nn_model_new(ch, &m) || nn_model_add(m, &d) || nn_model_init(m, 3) ||
        nn_ctx_new(m, 1, size, size, 0, &ctx) || nn_ctx_new(m, 1, size, size, NN_CTX_FAST, &fctx))
        goto out;
    fill(x, n, &r);
    nn_tensor_packed(&in, x, 1, ch, size, size);
    BEST_OF(tf, nn_forward(ctx, &in, &out));
    BEST_OF(tff, nn_forward(fctx, &in, &out));
    calib = in;
    struct nn_quant_opts qo = {0};
    qo.percentile = 100;
    if (nn_quantize(m, &calib, &qo, &q) || nn_qctx_new(q, 1, size, size, &qc) ||
        nn_qmodel_quantize_input(q, &in, xq))
        goto out;
    qin = (struct nn_qtensor){.data = xq, .n = 1, .c = ch, .h = size, .w = size};
    BEST_OF(tq, nn_qforward(qc, &qin, &qout));
    double ops = 2.0 * ch * ch * 9 * size * size;
    printf("conv %2u->%-2u 3x3 %4u^2, %d thread%s: float %7.2f ms %6.1f GFLOP/s, fast %7.2f ms "
           "%6.1f GFLOP/s | integer %7.2f ms %6.1f Gop/s | sgemm alone (%ux%u . %ux%u) %6.1f "
           "GFLOP/s\n",
           ch, ch, size, threads, threads > 1 ? "s" : " ", tf * 1e3, ops / tf / 1e9, tff * 1e3,
           ops / tff / 1e9, tq * 1e3, ops / tq / 1e9, ch, ch * 9, ch * 9, size * size,
           sgemm_gflops((int)ch, (int)(size * size), (int)ch * 9));
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "conv %u %u: setup failed\n", ch, size);
    nn_qctx_free(qc);
    nn_qmodel_free(q);
    nn_ctx_free(fctx);
    nn_ctx_free(ctx);
    nn_model_free(m);
    free(x);
    free(xq);
    return rc;
}

/* A smooth, MRI-like 8-bit test image: a bright ellipse with texture on black. */
static void synth(uint8_t *p, uint32_t size)
{
    for (uint32_t y = 0; y < size; y++)
        for (uint32_t x = 0; x < size; x++) {
            double u = (x - size / 2.0) / (size * 0.4), v = (y - size / 2.0) / (size * 0.45);
            double r = u * u + v * v;
            int val = r < 1 ? (int)(90 + 60 * (1 - r) + 25 * ((x * 7 + y * 13) % 11) / 10.0) : 0;
            p[(size_t)y * size + x] = (uint8_t)val;
        }
}

struct ae_job {
    const struct nn_ae *ae;
    struct nn_ae_image img;
    int rounds;
    int integer;     /* decode with the integer-exact decoder */
    int timed;       /* repeat for at least 1 s */
    double enc, dec; /* best seconds */
};

static void *ae_run(void *arg)
{
    struct ae_job *j = arg;
    j->enc = j->dec = 1e30;
    /* At least `rounds`, and enough for 1 s: the best of many is what a shared machine allows. */
    double end = now() + 1.0;
    for (int i = 0; i < j->rounds || (j->timed && now() < end); i++) {
        struct nn_ae_latent *lat = NULL;
        struct nn_ae_image *out = NULL;
        double t0 = now();
        if (nn_ae_encode(j->ae, &j->img, &lat) != 0)
            abort();
        double t1 = now();
        if ((j->integer ? nn_ae_decode_int(j->ae, lat, &out) : nn_ae_decode(j->ae, lat, &out)) != 0)
            abort();
        double t2 = now();
        if (t1 - t0 < j->enc)
            j->enc = t1 - t0;
        if (t2 - t1 < j->dec)
            j->dec = t2 - t1;
        nn_ae_latent_free(lat);
        nn_ae_image_free(out);
    }
    return NULL;
}

static int bench_ae(void)
{
    struct nn_ae *ae = NULL;
    if (nn_ae_load_default(&ae) != 0) {
        fprintf(stderr, "cannot load the default autoencoder\n");
        return 1;
    }
    for (uint32_t size = 256; size <= 512; size *= 2) {
        uint8_t *px = malloc((size_t)size * size);
        if (!px)
            return 1;
        synth(px, size);
        struct ae_job j = {ae, {1, size, size, 8, px}, size == 256 ? 20 : 10, 0, 1, 0, 0};
        for (int integer = 1; integer >= 0; integer--)
            for (int t = 1; t <= 2; t++) {
                nn_set_threads(t);
                j.integer = integer;
                ae_run(&j);
                printf("autoencoder %u^2 8-bit, one image, %d BLAS thread%s: encode %6.2f ms, "
                       "%s decode %6.2f ms, both %6.2f ms (%.1f images/s)\n",
                       size, t, t > 1 ? "s" : " ", j.enc * 1e3, integer ? "integer" : "float  ",
                       j.dec * 1e3, (j.enc + j.dec) * 1e3, 1.0 / (j.enc + j.dec));
            }
        /* the preview of a series: planned once, then only the pass and the samples */
        struct nn_ae_latent *lat = NULL;
        struct nn_ae_qdec *qd = NULL;
        uint8_t *prev = malloc((size_t)size * size);
        struct nn_ae_image pimg = {1, size, size, 8, prev};
        double tp;
        if (!prev || nn_ae_encode(ae, &j.img, &lat) || nn_ae_qdec_new(ae, 1, size, size, &qd))
            return 1;
        BEST_OF(tp, nn_ae_qdec_run(qd, lat, &pimg));
        printf("autoencoder %u^2 8-bit, preview of a series (integer decoder planned once): "
               "%6.2f ms\n",
               size, tp * 1e3);
        nn_ae_qdec_free(qd);
        nn_ae_latent_free(lat);
        free(prev);
        /* two images at once, one per core */
        nn_set_threads(1);
        struct ae_job k[2] = {j, j};
        k[0].timed = k[1].timed = 0;
        pthread_t th[2];
        double t0 = now();
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, ae_run, &k[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        double wall = now() - t0;
        printf("autoencoder %u^2 8-bit, two images at once on 2 threads: %.1f images/s "
               "(encode+decode, wall clock over %d rounds each)\n",
               size, 2.0 * j.rounds / wall, j.rounds);
        free(px);
    }
    nn_ae_free(ae);
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "conv";
    int rc = 0;
    if (strcmp(what, "conv") == 0) {
        for (int t = 1; t <= 2; t++) {
            nn_set_threads(t);
            printf("sgemm 1024^3, %d thread%s: %.1f GFLOP/s (peak reference)\n", t,
                   t > 1 ? "s" : "", sgemm_gflops(1024, 1024, 1024));
            for (uint32_t ch = 16; ch <= 32; ch *= 2)
                for (uint32_t s = 256; s <= 512; s *= 2)
                    rc |= bench_conv(ch, s, t);
        }
        return rc ? 1 : 0;
    }
    if (strcmp(what, "ae") == 0)
        return bench_ae();
    fprintf(stderr, "usage: bench_nn [conv|ae]\n");
    return 2;
}
