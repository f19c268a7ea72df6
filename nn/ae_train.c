// SPDX-License-Identifier: MIT
/*
 * Training of the autoencoder: random crops, forward through encoder and decoder, the
 * rate-distortion loss, backward through both, Adam on both models and on the prior.
 *
 * The quantiser has no gradient, so training uses the two usual stand-ins at once: the decoder
 * sees the rounded latent (what it will see in use) and passes its gradient straight through
 * the rounding, while the rate is measured on the latent plus uniform noise in [-1/2, 1/2),
 * whose density under the prior is the discretised mass and so a smooth upper bound of the
 * real code length. The rate weight lambda can follow a target rate (multiplicative dual
 * ascent), which makes one run land on a bits-per-pixel budget instead of searching lambda by
 * hand. Everything is sequential and seeded: one BLAS thread reproduces a run bit for bit.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ae.h"
#include "nn/ae_int.h"

void nn_ae_train_defaults(struct nn_ae_train_opts *o)
{
    *o = (struct nn_ae_train_opts){
        .epochs = 1,
        .steps = 0,
        .batch = 8,
        .crop = 128,
        .lr = 2e-3f,
        .lr_end = 1e-4f,
        .lambda = 0.01f,
        .target_bpp = 0.11f,
        .seed = 1,
    };
}

struct plane {
    float *data; /* normalised, minus 1/2 */
    uint32_t h, w;
    int owner; /* the first channel of an image owns the image's allocation */
};

static void release(struct plane *p, size_t count)
{
    for (size_t j = 0; p && j < count; j++)
        if (p[j].owner)
            free(p[j].data);
    free(p);
}

/* Every channel plane of every image, normalised, into *out (caller releases). */
static int collect(const struct nn_ae_image *imgs, size_t n, struct plane **out, size_t *count,
                   double *area)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct nn_ae_image *m = &imgs[i];
        if (!m->pixels || m->channels < 1 || m->channels > NN_AE_MAX_CHANNELS ||
            (m->bits != 8 && m->bits != 16) || m->height < 1 || m->width < 1 ||
            m->height > NN_MAX_DIM || m->width > NN_MAX_DIM)
            return -EINVAL;
        total += m->channels;
    }
    struct plane *p = calloc(total, sizeof(*p));
    if (!p)
        return -ENOMEM;
    *area = 0;
    for (size_t i = 0; i < n; i++) {
        const struct nn_ae_image *m = &imgs[i];
        size_t plane = (size_t)m->height * m->width;
        float *buf = malloc(plane * m->channels * sizeof(float));
        if (!buf) {
            release(p, k);
            return -ENOMEM;
        }
        nn_ae_planes(m, nn_ae_depth(m), buf);
        for (size_t j = 0; j < plane * m->channels; j++)
            buf[j] -= 0.5f;
        for (uint32_t c = 0; c < m->channels; c++, k++) {
            p[k] = (struct plane){
                .data = buf + c * plane, .h = m->height, .w = m->width, .owner = c == 0};
            *area += (double)plane;
        }
    }
    *out = p;
    *count = total;
    return 0;
}

/* One random crop of side s, edge-replicated beyond the plane, randomly flipped. */
static void crop(const struct plane *p, uint32_t s, struct nn_rng *r, float *dst)
{
    long y0 =
        p->h >= s ? (long)nn_rng_below(r, p->h - s + 1) : -(long)nn_rng_below(r, s - p->h + 1);
    long x0 =
        p->w >= s ? (long)nn_rng_below(r, p->w - s + 1) : -(long)nn_rng_below(r, s - p->w + 1);
    uint32_t flip = nn_rng_below(r, 4);
    for (uint32_t y = 0; y < s; y++) {
        long sy = y0 + (long)((flip & 1) ? s - 1 - y : y);
        sy = sy < 0 ? 0 : sy >= (long)p->h ? (long)p->h - 1 : sy;
        const float *row = p->data + (size_t)sy * p->w;
        for (uint32_t x = 0; x < s; x++) {
            long sx = x0 + (long)((flip & 2) ? s - 1 - x : x);
            sx = sx < 0 ? 0 : sx >= (long)p->w ? (long)p->w - 1 : sx;
            dst[(size_t)y * s + x] = row[sx];
        }
    }
}

/* Adam on the prior's 2 * latent floats (the same update as nn_adam_step). */
struct prior_adam {
    float m[2 * NN_AE_MAX_LATENT], v[2 * NN_AE_MAX_LATENT];
    uint64_t t;
};

static void prior_step(struct prior_adam *a, float *p, const double *g, size_t n, float lr)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    a->t++;
    double c1 = 1.0 - pow(b1, (double)a->t), c2 = 1.0 - pow(b2, (double)a->t);
    float step = (float)(lr / c1), root = (float)sqrt(c2);
    for (size_t i = 0; i < n; i++) {
        float gi = (float)g[i];
        a->m[i] = b1 * a->m[i] + (1.0f - b1) * gi;
        a->v[i] = b2 * a->v[i] + (1.0f - b2) * gi * gi;
        p[i] -= step * a->m[i] / (sqrtf(a->v[i]) / root + eps);
    }
}

int nn_ae_train(struct nn_ae *ae, const struct nn_ae_image *imgs, size_t n,
                const struct nn_ae_train_opts *o)
{
    struct plane *planes = NULL;
    size_t nplanes = 0;
    struct nn_ctx *ce = NULL, *cd = NULL;
    struct nn_adam *ae_enc = NULL, *ae_dec = NULL;
    struct prior_adam *pa = NULL;
    float *x = NULL, *yq = NULL, *gy = NULL;
    double area = 0;
    int ret;
    if (!ae || !imgs || n == 0 || !o || o->epochs == 0 || o->batch == 0 || o->crop == 0 ||
        o->crop % NN_AE_FACTOR || o->crop > 4096 || o->batch > 1024 || !(o->lr > 0) ||
        !(o->lr_end > 0) || !(o->lambda > 0) || !(o->target_bpp >= 0))
        return -EINVAL;
    if ((ret = collect(imgs, n, &planes, &nplanes, &area)))
        return ret;
    /* The float decoder is about to change: its quantisation would no longer match it. */
    nn_qmodel_free(ae->qdec);
    ae->qdec = NULL;
    const uint32_t B = o->batch, S = o->crop, L = ae->cfg.latent, G = S / NN_AE_FACTOR;
    const size_t xs = (size_t)B * S * S, ys = (size_t)B * L * G * G, grid = (size_t)G * G;
    uint32_t steps = o->steps;
    if (steps == 0) {
        double s = ceil(area / (double)xs);
        steps = s < 1 ? 1 : s > 1e6 ? 1000000u : (uint32_t)s;
    }
    ret = -ENOMEM;
    x = malloc(xs * sizeof(float));
    yq = malloc(ys * sizeof(float));
    gy = calloc(ys, sizeof(float));
    pa = calloc(1, sizeof(*pa));
    if (!x || !yq || !gy || !pa)
        goto out;
    const struct nn_adam_opts ao = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if ((ret = nn_ctx_new(ae->enc, B, S, S, NN_CTX_TRAIN, &ce)) ||
        (ret = nn_ctx_new(ae->dec, B, G, G, NN_CTX_TRAIN, &cd)) ||
        (ret = nn_adam_new(ae->enc, &ao, &ae_enc)) || (ret = nn_adam_new(ae->dec, &ao, &ae_dec)))
        goto out;

    struct nn_rng r;
    nn_rng_seed(&r, o->seed);
    double lambda = o->lambda;
    const double total_steps = (double)o->epochs * steps;
    const double inv_px = 1.0 / (double)xs;
    double gprior[2 * NN_AE_MAX_LATENT];
    uint64_t done = 0;
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        double sum_loss = 0, sum_mse = 0, sum_bpp = 0;
        for (uint32_t st = 0; st < steps; st++, done++) {
            float lr = (float)(o->lr * pow((double)o->lr_end / o->lr, (double)done / total_steps));
            nn_adam_set_lr(ae_enc, lr);
            nn_adam_set_lr(ae_dec, lr);
            for (uint32_t b = 0; b < B; b++)
                crop(&planes[nn_rng_below(&r, (uint32_t)nplanes)], S, &r, x + (size_t)b * S * S);

            struct nn_tensor tin, ty, txh, din;
            nn_ctx_zero_grads(ce);
            nn_ctx_zero_grads(cd);
            nn_tensor_packed(&tin, x, B, 1, S, S);
            if ((ret = nn_forward(ce, &tin, &ty)))
                goto out;
            /* Rate on y + noise, with its gradient in y and in the prior. */
            double nats = 0;
            memset(gprior, 0, sizeof(gprior));
            for (uint32_t b = 0; b < B; b++)
                for (uint32_t c = 0; c < L; c++) {
                    double mu = ae->prior[c], ls = ae->prior[L + c];
                    size_t base = ((size_t)b * L + c) * grid;
                    for (size_t i = 0; i < grid; i++) {
                        float y = ty.data[base + i];
                        double v = (double)y + (double)nn_rng_uniform(&r) - 0.5, dv, dmu, dls;
                        nats -= nn_ae_logp(v, mu, ls, 0, 0, &dv, &dmu, &dls);
                        gy[base + i] = (float)(-dv * lambda * inv_px / M_LN2);
                        gprior[c] -= dmu;
                        gprior[L + c] -= dls;
                        yq[base + i] = (float)nn_ae_quantise(y);
                    }
                }
            double bpp = nats / M_LN2 * inv_px;
            for (uint32_t k = 0; k < 2 * L; k++)
                gprior[k] *= lambda * inv_px / M_LN2;

            struct nn_tensor tq;
            nn_tensor_packed(&tq, yq, B, L, G, G);
            if ((ret = nn_forward(cd, &tq, &txh)))
                goto out;
            /* The preview is clamped to the sample range: so is the loss, which leaves the
             * decoder free to undershoot black backgrounds (where any ripple left would cost
             * SSIM dearly) instead of aiming exactly at their edge. */
            for (size_t i = 0; i < xs; i++)
                txh.data[i] = txh.data[i] < -0.5f ? -0.5f : txh.data[i] > 0.5f ? 0.5f : txh.data[i];
            float *g = nn_ctx_out_grad(cd);
            double mse = nn_loss_mse(txh.data, x, xs, g);
            for (size_t i = 0; i < xs; i++)
                if ((txh.data[i] == -0.5f && g[i] > 0) || (txh.data[i] == 0.5f && g[i] < 0))
                    g[i] = 0.0f;
            if (!isfinite(mse) || !isfinite(bpp)) {
                ret = -ERANGE;
                goto out;
            }
            if ((ret = nn_backward(cd, g, &din)))
                goto out;
            /* Straight through the rounding: the decoder's input gradient is the latent's. */
            for (size_t i = 0; i < ys; i++)
                gy[i] += din.data[i];
            if ((ret = nn_backward(ce, gy, NULL)) ||
                (ret = nn_adam_step(ae_enc, ae->enc, nn_ctx_grads(ce, NULL))) ||
                (ret = nn_adam_step(ae_dec, ae->dec, nn_ctx_grads(cd, NULL))))
                goto out;
            prior_step(pa, ae->prior, gprior, 2 * (size_t)L, lr);

            double loss = mse + lambda * bpp;
            /* Lambda follows the target once the first tenth of the run has shaped the
             * latent (early rates say little about the final trade-off). */
            if (o->target_bpp > 0 && (double)done >= 0.1 * total_steps) {
                double k = exp(0.01 * (bpp - o->target_bpp) / o->target_bpp);
                lambda *= k > 1.5 ? 1.5 : k;
                lambda = lambda < 1e-6 ? 1e-6 : lambda > 10 ? 10 : lambda;
            }
            sum_loss += loss;
            sum_mse += mse;
            sum_bpp += bpp;
            if (o->progress) {
                struct nn_ae_progress p = {
                    .epoch = ep + 1,
                    .epochs = o->epochs,
                    .step = st + 1,
                    .steps = steps,
                    .loss = loss,
                    .mse = mse,
                    .bpp = bpp,
                    .lambda = lambda,
                    .epoch_loss = sum_loss / (st + 1),
                    .epoch_mse = sum_mse / (st + 1),
                    .epoch_bpp = sum_bpp / (st + 1),
                };
                if (o->progress(o->arg, &p)) {
                    ret = -ECANCELED;
                    goto out;
                }
            }
        }
    }
    ret = 0;
out:
    nn_adam_free(ae_dec);
    nn_adam_free(ae_enc);
    nn_ctx_free(cd);
    nn_ctx_free(ce);
    free(pa);
    free(gy);
    free(yq);
    free(x);
    release(planes, nplanes);
    return ret;
}
