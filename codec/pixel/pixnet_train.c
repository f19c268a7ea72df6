// SPDX-License-Identifier: MIT
/*
 * Training of the neural predictor (pixnet.h): gather (features, target) samples from images
 * in coding order, fit one small pointwise network per pass type in float with the bits loss
 * (discretised logistic NLL in the pixel domain, so that the fit is the coding cost, not a
 * least-squares proxy), quantise it with calibration samples and write the model file.
 *
 * The trade-off: samples are drawn by reservoir sampling into a bounded pool per pass type
 * (memory stays fixed whatever the data set), so a very large set is subsampled uniformly
 * rather than streamed through every epoch.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pixel/pixnet.h"
#include "nn/nn.h"

/* Samples are taken from stripes of this many rows, whatever the coder's default: the shipped
 * model's were (its set 0 predates stripes of 256 rows), and a fixed height keeps training
 * reproducible across changes of that default. */
#define TRAIN_STRIPE_ROWS 64u

#define F CODEC_PIXNET_FEATURES
#define IN_SCALE (1.0f / 16.0f) /* float feature = integer feature / 16 */
#define LOSS_LIM 65536

struct pool {
    int16_t *f;     /* cap x F */
    int32_t *ref;   /* not needed by the loss, kept for reports */
    int32_t *u, *t; /* t = value - ref */
    size_t n, cap;
    uint64_t seen;
};

struct gather_arg {
    struct pool *pool[CODEC_PIXNET_NETS];
    struct nn_rng *rng;
};

static int take(void *arg, enum codec_pixnet_pass pass, const int16_t *f, int32_t ref, int32_t u,
                int32_t value)
{
    struct gather_arg *a = arg;
    struct pool *p = a->pool[pass];
    size_t at = p->n;
    p->seen++;
    if (p->n == p->cap) { /* reservoir: keep each of the `seen` samples with equal chance */
        uint64_t r = nn_rng_next(a->rng) % p->seen;
        if (r >= p->cap)
            return 0;
        at = (size_t)r;
    } else {
        p->n++;
    }
    memcpy(p->f + at * F, f, F * sizeof(int16_t));
    p->ref[at] = ref;
    p->u[at] = u;
    p->t[at] = value - ref;
    return 0;
}

static void pool_free(struct pool *p)
{
    free(p->f);
    free(p->ref);
    free(p->u);
    free(p->t);
}

static int pool_init(struct pool *p, size_t cap)
{
    /* every field is set here (no memset over p): the caller frees every pool, also when this
     * fails */
    *p = (struct pool){.cap = cap,
                       .f = malloc(cap * F * sizeof(int16_t)),
                       .ref = malloc(cap * sizeof(int32_t)),
                       .u = malloc(cap * sizeof(int32_t)),
                       .t = malloc(cap * sizeof(int32_t))};
    return p->f && p->ref && p->u && p->t ? 0 : -ENOMEM;
}

void codec_pixnet_train_defaults(struct codec_pixnet_train_opts *o)
{
    *o = (struct codec_pixnet_train_opts){.hidden = 16,
                                          .layers = 2,
                                          .epochs = 20,
                                          .steps = 300,
                                          .batch = 2048,
                                          .samples = 1u << 20,
                                          .lr = 2e-3f,
                                          .lr_end = 1e-4f,
                                          .seed = 1,
                                          .contexts = CODEC_PIXCODE_MAX_CTX};
}

/* Build the float network: F -> hidden (-> hidden)* -> 2, LeakyReLU between. */
static int build(const struct codec_pixnet_train_opts *o, uint64_t seed, struct nn_model **out)
{
    struct nn_model *m = NULL;
    int rc = nn_model_new(F, &m);
    uint32_t layers = o->layers ? o->layers : 1;
    for (uint32_t i = 0; rc == 0 && i <= layers; i++) {
        struct nn_layer_desc c = {.type = NN_CONV2D,
                                  .out_ch = i == layers ? 2 : o->hidden,
                                  .kh = 1,
                                  .kw = 1,
                                  .stride = 1,
                                  .bias = 1};
        rc = nn_model_add(m, &c);
        if (rc == 0 && i < layers) {
            struct nn_layer_desc a = {.type = NN_LRELU, .slope = 0.125f};
            rc = nn_model_add(m, &a);
        }
    }
    if (rc == 0)
        rc = nn_model_init(m, seed);
    if (rc == 0) {
        /* start from the fixed rule (mean = ref, scale = u / 8): a random last layer puts
         * scales many octaves off, and the first hundreds of steps only undo that */
        size_t last = nn_model_layer_count(m) - 1, cnt = 0;
        float *w = nn_model_layer_params(m, last, &cnt);
        memset(w, 0, cnt * sizeof(float));
        w[cnt - 1] = -2.0f;
    }
    if (rc) {
        nn_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Fill a (1, F, 1, B) float input from samples idx[0..B) of p. */
static void fill_input(const struct pool *p, const uint32_t *idx, uint32_t B, float *x)
{
    for (uint32_t j = 0; j < B; j++) {
        const int16_t *f = p->f + (size_t)idx[j] * F;
        for (unsigned c = 0; c < F; c++)
            x[(size_t)c * B + j] = (float)f[c] * IN_SCALE;
    }
}

/*
 * Turn network outputs (o_mu, o_ls in units of u) into the pixel domain for the bits loss:
 * mean offset o_mu * u, log-scale o_ls + ln u. With grad, chain the loss gradient back.
 */
static int batch_loss(const struct pool *p, const uint32_t *idx, uint32_t B, const float *out,
                      float *pred, int32_t *tgt, float *grad, float *gout, double *bits)
{
    for (uint32_t j = 0; j < B; j++) {
        float u = (float)p->u[idx[j]];
        pred[j] = out[j] * u;
        pred[B + j] = out[B + j] + logf(u);
        tgt[j] = p->t[idx[j]];
        if (tgt[j] < -LOSS_LIM || tgt[j] > LOSS_LIM)
            tgt[j] = tgt[j] < 0 ? -LOSS_LIM : LOSS_LIM;
    }
    struct nn_tensor pt;
    nn_tensor_packed(&pt, pred, 1, 2, 1, B);
    int rc = nn_loss_bits(&pt, tgt, -LOSS_LIM, LOSS_LIM, grad, bits);
    if (rc || !grad)
        return rc;
    for (uint32_t j = 0; j < B; j++) {
        gout[j] = grad[j] * (float)p->u[idx[j]];
        gout[B + j] = grad[B + j];
    }
    return 0;
}

/* Bits per sample of the float model over at most `count` samples of p (first ones). */
static int evaluate(struct nn_model *m, const struct pool *p, size_t first, size_t count,
                    uint32_t B, double *bits)
{
    struct nn_ctx *c = NULL;
    int rc = nn_ctx_new(m, 1, 1, B, 0, &c);
    float *x = malloc((size_t)F * B * sizeof(float)), *pred = malloc(2 * B * sizeof(float));
    int32_t *tgt = malloc(B * sizeof(int32_t));
    uint32_t *idx = malloc(B * sizeof(uint32_t));
    double sum = 0;
    size_t done = 0;
    if (rc == 0 && (!x || !pred || !tgt || !idx))
        rc = -ENOMEM;
    for (size_t s = first; rc == 0 && s + B <= first + count && s + B <= p->n; s += B) {
        for (uint32_t j = 0; j < B; j++)
            idx[j] = (uint32_t)(s + j);
        fill_input(p, idx, B, x);
        struct nn_tensor in, out;
        nn_tensor_packed(&in, x, 1, F, 1, B);
        double b = 0;
        if ((rc = nn_forward(c, &in, &out)) == 0 &&
            (rc = batch_loss(p, idx, B, out.data, pred, tgt, NULL, NULL, &b)) == 0) {
            sum += b * B;
            done += B;
        }
    }
    *bits = done ? sum / (double)done : 0;
    free(x);
    free(pred);
    free(tgt);
    free(idx);
    nn_ctx_free(c);
    return rc;
}

/* Fit one network to pool p (the last `hold` samples are held out for the report). */
static int fit(struct nn_model *m, const struct pool *p, size_t hold,
               const struct codec_pixnet_train_opts *o, unsigned net, struct nn_rng *rng)
{
    const uint32_t B = o->batch;
    struct nn_ctx *c = NULL;
    struct nn_adam *adam = NULL;
    struct nn_adam_opts ao = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    float *x = malloc((size_t)F * B * sizeof(float)), *pred = malloc(2 * B * sizeof(float));
    float *grad = malloc(2 * B * sizeof(float)), *gout = malloc(2 * B * sizeof(float));
    int32_t *tgt = malloc(B * sizeof(int32_t));
    uint32_t *idx = malloc(B * sizeof(uint32_t));
    size_t ntrain = p->n - hold;
    int rc = -ENOMEM;
    if (!x || !pred || !grad || !gout || !tgt || !idx)
        goto out;
    if ((rc = nn_ctx_new(m, 1, 1, B, NN_CTX_TRAIN, &c)) || (rc = nn_adam_new(m, &ao, &adam)))
        goto out;
    uint64_t total = (uint64_t)o->epochs * o->steps, step = 0;
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        double sum = 0;
        for (uint32_t st = 0; st < o->steps; st++, step++) {
            /* cosine-free geometric decay from lr to lr_end */
            double t = total > 1 ? (double)step / (double)(total - 1) : 0;
            nn_adam_set_lr(adam, (float)(o->lr * pow(o->lr_end / o->lr, t)));
            for (uint32_t j = 0; j < B; j++)
                idx[j] = nn_rng_below(rng, (uint32_t)ntrain);
            fill_input(p, idx, B, x);
            struct nn_tensor in, out;
            nn_tensor_packed(&in, x, 1, F, 1, B);
            double b = 0;
            nn_ctx_zero_grads(c);
            if ((rc = nn_forward(c, &in, &out)) ||
                (rc = batch_loss(p, idx, B, out.data, pred, tgt, grad, gout, &b)) ||
                (rc = nn_backward(c, gout, NULL)) ||
                (rc = nn_adam_step(adam, m, nn_ctx_grads(c, NULL))))
                goto out;
            sum += b;
        }
        if (o->progress) {
            double hb = 0;
            if ((rc = evaluate(m, p, ntrain, hold, B, &hb)) != 0)
                goto out;
            o->progress(o->progress_arg, net, ep + 1, sum / o->steps, hb);
        }
    }
    rc = 0;
out:
    nn_adam_free(adam);
    nn_ctx_free(c);
    free(x);
    free(pred);
    free(grad);
    free(gout);
    free(tgt);
    free(idx);
    return rc;
}

/* Integer constants for an output scale: mult / 2^shift ~ v, |mult| < 2^23. */
static void fixed_point(double v, int32_t *mult, uint8_t *shift)
{
    unsigned sh = 40;
    while (sh > 1 && fabs(v) * ldexp(1.0, (int)sh) >= (double)(1 << 23))
        sh--;
    *mult = (int32_t)lround(v * ldexp(1.0, (int)sh));
    *shift = (uint8_t)sh;
}

int codec_pixnet_train(const struct codec_image *const *imgs, size_t n,
                       const struct codec_pixnet_train_opts *opts, uint8_t **model, size_t *len)
{
    struct codec_pixnet_train_opts o;
    if (opts)
        o = *opts;
    else
        codec_pixnet_train_defaults(&o);
    if (!imgs || !model || !len || o.batch < 16 || o.batch > 65536 || o.samples < 2 * o.batch ||
        o.hidden < 1 || o.hidden > 256 || o.layers > 4 || o.contexts < 1 ||
        o.contexts > CODEC_PIXCODE_MAX_CTX || !(o.lr > 0) || !(o.lr_end > 0))
        return -EINVAL;
    struct pool pools[CODEC_PIXNET_NETS];
    struct nn_model *fm[CODEC_PIXNET_NETS] = {NULL};
    struct nn_qmodel *qm[CODEC_PIXNET_NETS] = {NULL};
    struct nn_rng rng;
    uint16_t *pk = NULL;
    float *cal = NULL;
    int rc = 0;
    nn_rng_seed(&rng, o.seed);
    memset(pools, 0, sizeof(pools));
    for (unsigned i = 0; i < CODEC_PIXNET_NETS && rc == 0; i++)
        rc = pool_init(&pools[i], o.samples);
    struct gather_arg ga = {{&pools[0], &pools[1]}, &rng};
    for (size_t k = 0; rc == 0 && k < n; k++) {
        const struct codec_image *img = imgs[k];
        size_t ns = (size_t)img->height * img->width;
        uint16_t *np = realloc(pk, ns * sizeof(uint16_t));
        if (!np) {
            rc = -ENOMEM;
            break;
        }
        pk = np;
        for (size_t p = 0; rc == 0 && p < (size_t)img->channels * img->frames; p++) {
            uint32_t maxv = 0;
            const uint8_t *plane = (const uint8_t *)img->planes + p * ns * (img->bits / 8);
            if ((rc = codec_pixnet_pack(plane, img->bits, ns, pk, &maxv)) == 0)
                rc = codec_pixnet_samples(pk, img->height, img->width, maxv, TRAIN_STRIPE_ROWS,
                                          take, &ga);
        }
    }
    if (rc)
        goto out;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        struct pool *p = &pools[i];
        if (p->n < 2 * (size_t)o.batch) {
            rc = -EINVAL; /* too few images to learn from */
            goto out;
        }
        /* shuffle, so that the held-out tail is a uniform sample */
        for (size_t left = p->n; left > 1; left--) {
            size_t j = left - 1, r = (size_t)(nn_rng_next(&rng) % left);
            int16_t tf[F];
            memcpy(tf, p->f + j * F, sizeof(tf));
            memcpy(p->f + j * F, p->f + r * F, sizeof(tf));
            memcpy(p->f + r * F, tf, sizeof(tf));
            int32_t t;
            t = p->ref[j], p->ref[j] = p->ref[r], p->ref[r] = t;
            t = p->u[j], p->u[j] = p->u[r], p->u[r] = t;
            t = p->t[j], p->t[j] = p->t[r], p->t[r] = t;
        }
        size_t hold = p->n / 16 / o.batch * o.batch;
        if ((rc = build(&o, o.seed * 2 + i, &fm[i])) != 0)
            goto out;
        if (o.epochs && (rc = fit(fm[i], p, hold, &o, i, &rng)) != 0)
            goto out;
        /* calibration: up to 65536 training samples as one 1 x F x 1 x N image */
        size_t nc = p->n - hold < 65536 ? p->n - hold : 65536;
        assert(nc > 0); /* n >= 2 batch, hold <= n / 16 */
        free(cal);
        rc = -ENOMEM;
        if (!(cal = malloc(nc * F * sizeof(float))))
            goto out;
        for (size_t j = 0; j < nc; j++)
            for (unsigned c = 0; c < F; c++)
                cal[c * nc + j] = (float)p->f[j * F + c] * IN_SCALE;
        struct nn_tensor ct;
        nn_tensor_packed(&ct, cal, 1, F, 1, (uint32_t)nc);
        struct nn_quant_opts qo = {.percentile = 99.99, .in_scale = IN_SCALE};
        if ((rc = nn_quantize(fm[i], &ct, &qo, &qm[i])) != 0)
            goto out;
    }
    struct codec_pixnet_consts k[CODEC_PIXNET_NETS];
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        double os = nn_qmodel_out_scale(qm[i]);
        fixed_point(os, &k[i].mu_mult, &k[i].mu_shift);
        fixed_point(os * 16.0 / log(2.0), &k[i].ls_mult, &k[i].ls_shift);
        /* context 0 at a scale of 1/8 and below: two contexts per octave above it */
        k[i].ctx_offset = 48;
    }
    rc = codec_pixnet_save((const struct nn_qmodel *const *)qm, k, (uint8_t)o.contexts, model, len);
out:
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        pool_free(&pools[i]);
        nn_model_free(fm[i]);
        nn_qmodel_free(qm[i]);
    }
    free(cal);
    free(pk);
    return rc;
}
