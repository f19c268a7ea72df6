// SPDX-License-Identifier: MIT
/*
 * The autoencoder's integer decoder (ae.h): post-training quantisation of the float decoder on
 * latents of training images, the checks that bind a quantised decoder to its float model, and
 * integer-exact decoding down to the samples.
 *
 * The trade-off is a little quality for reproducibility: int8 weights cost a fraction of a dB
 * against the float decoder, but a preview (and what the coder predicts from it) comes out the
 * same on every machine, so it can be recomputed years later instead of stored. Past the integer
 * network the mapping to samples stays in integers too (the output scale is split into a whole
 * multiplier and a power of two once, at load), so no float rounding mode, contraction or libm
 * can change a sample.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ae.h"
#include "nn/ae_int.h"

#define CAL_SIDE 256 /* calibration planes are CAL_SIDE x CAL_SIDE */
#define CAL_MAX 64   /* and at most this many */

int nn_ae_set_int_decoder(struct nn_ae *ae, struct nn_qmodel *q)
{
    size_t nl = nn_model_layer_count(ae->dec);
    int ok = nn_qmodel_in_channels(q) == ae->cfg.latent && nn_qmodel_out_channels(q) == 1 &&
             nn_qmodel_layer_count(q) == nl && nn_qmodel_in_scale(q) == 1.0f;
    /* 13 four-byte fields, no padding; the float compares bit for bit on purpose */
    for (size_t i = 0; ok && i < nl; i++)
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c)
        ok = memcmp(nn_qmodel_layer(q, i), nn_model_layer(ae->dec, i),
                    sizeof(struct nn_layer_desc)) == 0;
    /* s = f 2^e with f in [1/2, 1): m = f 2^24 is a whole number (a float has 24 significant
     * bits) and s = m 2^-(24 - e). */
    float s = nn_qmodel_out_scale(q);
    int e = 0;
    float f = ok && isfinite(s) && s > 0.0f ? frexpf(s, &e) : 0.0f;
    long k = 24L - e;
    if (!ok || !(f > 0.0f) || k < 1 || k > NN_AE_QK_MAX) {
        nn_qmodel_free(q);
        return -EINVAL;
    }
    nn_qmodel_free(ae->qdec);
    ae->qdec = q;
    ae->qm = (int64_t)ldexpf(f, 24);
    ae->qk = (uint32_t)k;
    return 0;
}

const struct nn_qmodel *nn_ae_int_decoder(const struct nn_ae *ae)
{
    return ae ? ae->qdec : NULL;
}

int nn_ae_quantize(struct nn_ae *ae, const struct nn_ae_image *imgs, size_t n)
{
    const uint32_t S = CAL_SIDE, G = CAL_SIDE / NN_AE_FACTOR;
    struct nn_ctx *c = NULL;
    struct nn_qmodel *q = NULL;
    float *x = NULL, *planes = NULL, *lat = NULL;
    size_t total = 0;
    int ret;
    if (!ae || !imgs || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!nn_ae_image_ok(&imgs[i]))
            return -EINVAL;
        total += imgs[i].channels;
    }
    const uint32_t L = ae->cfg.latent;
    const size_t ncal = total < CAL_MAX ? total : CAL_MAX, per = (size_t)L * G * G;
    ret = -ENOMEM;
    x = malloc((size_t)S * S * sizeof(float));
    lat = malloc(ncal * per * sizeof(float));
    if (!x || !lat)
        goto out;
    if ((ret = nn_ctx_new(ae->enc, 1, S, S, 0, &c)))
        goto out;
    size_t img_i = 0, first = 0; /* image holding plane `want`, and its first plane's index */
    const struct nn_ae_image *loaded = NULL;
    for (size_t k = 0; k < ncal; k++) {
        size_t want = k * total / ncal;
        while (first + imgs[img_i].channels <= want)
            first += imgs[img_i++].channels;
        const struct nn_ae_image *img = &imgs[img_i];
        size_t plane = (size_t)img->height * img->width;
        if (img != loaded) {
            free(planes);
            if (!(planes = malloc(plane * img->channels * sizeof(float)))) {
                ret = -ENOMEM;
                goto out;
            }
            nn_ae_planes(img, nn_ae_depth(img), planes);
            loaded = img;
        }
        const float *p = planes + (want - first) * plane;
        /* The plane's centre, edge-replicated where it is smaller than S. */
        long y0 = ((long)img->height - (long)S) / 2, x0 = ((long)img->width - (long)S) / 2;
        for (uint32_t y = 0; y < S; y++) {
            long sy = y0 + y;
            sy = sy < 0 ? 0 : sy >= (long)img->height ? (long)img->height - 1 : sy;
            for (uint32_t xx = 0; xx < S; xx++) {
                long sx = x0 + xx;
                sx = sx < 0 ? 0 : sx >= (long)img->width ? (long)img->width - 1 : sx;
                x[(size_t)y * S + xx] = p[(size_t)sy * img->width + (size_t)sx] - 0.5f;
            }
        }
        struct nn_tensor t, y;
        nn_tensor_packed(&t, x, 1, 1, S, S);
        if ((ret = nn_forward(c, &t, &y)))
            goto out;
        for (size_t i = 0; i < per; i++)
            lat[k * per + i] = (float)nn_ae_quantise(y.data[i]);
    }
    struct nn_tensor cal;
    nn_tensor_packed(&cal, lat, (uint32_t)ncal, L, G, G);
    const struct nn_quant_opts qo = {.percentile = 100.0, .in_scale = 1.0f};
    if ((ret = nn_quantize(ae->dec, &cal, &qo, &q)))
        goto out;
    ret = nn_ae_set_int_decoder(ae, q); /* takes q, even on failure */
out:
    nn_ctx_free(c);
    free(planes);
    free(lat);
    free(x);
    return ret;
}

/* A sample from F = (plane value) 2^k: round half up of F P / 2^k, clamped to [0, P]. The
 * bounds of ae.h keep F P + 2^(k-1) below 2^63. */
static uint32_t to_sample(int64_t F, uint64_t P, uint32_t k)
{
    if (F <= 0)
        return 0;
    uint64_t v = ((uint64_t)F * P + ((uint64_t)1 << (k - 1))) >> k;
    return v > P ? (uint32_t)P : (uint32_t)v;
}

struct nn_ae_qdec {
    const struct nn_ae *ae;
    struct nn_qctx *c;
    int16_t *in;
    uint32_t channels, height, width; /* of the images it decodes */
    uint32_t lh, lw;
};

int nn_ae_qdec_new(const struct nn_ae *ae, uint32_t channels, uint32_t height, uint32_t width,
                   struct nn_ae_qdec **out)
{
    struct nn_ae_qdec *d = NULL;
    int ret;
    if (!ae || !out || channels < 1 || channels > NN_AE_MAX_CHANNELS || height < 1 || width < 1 ||
        height > NN_MAX_DIM || width > NN_MAX_DIM)
        return -EINVAL;
    if (!ae->qdec)
        return -ENOENT;
    if (!(d = calloc(1, sizeof(*d))))
        return -ENOMEM;
    d->ae = ae;
    d->channels = channels;
    d->height = height;
    d->width = width;
    d->lh = (height + NN_AE_FACTOR - 1) / NN_AE_FACTOR;
    d->lw = (width + NN_AE_FACTOR - 1) / NN_AE_FACTOR;
    ret = -ENOMEM;
    d->in = malloc((size_t)channels * ae->cfg.latent * d->lh * d->lw * sizeof(int16_t));
    if (!d->in)
        goto fail;
    if ((ret = nn_qctx_new(ae->qdec, channels, d->lh, d->lw, &d->c)))
        goto fail;
    *out = d;
    return 0;
fail:
    nn_ae_qdec_free(d);
    return ret;
}

void nn_ae_qdec_free(struct nn_ae_qdec *d)
{
    if (!d)
        return;
    nn_qctx_free(d->c);
    free(d->in);
    free(d);
}

int nn_ae_qdec_run(struct nn_ae_qdec *d, const struct nn_ae_latent *lat, struct nn_ae_image *img)
{
    const struct nn_ae *ae = d->ae;
    if (!lat || !img || !img->pixels || !nn_ae_latent_ok(ae, lat) || lat->channels != d->channels ||
        lat->height != d->height || lat->width != d->width || img->channels != lat->channels ||
        img->height != lat->height || img->width != lat->width || img->bits != lat->bits)
        return -EINVAL;
    const uint32_t C = lat->channels, ph = lat->lh * NN_AE_FACTOR, pw = lat->lw * NN_AE_FACTOR;
    const size_t plane = (size_t)lat->height * lat->width, pplane = (size_t)ph * pw;
    const size_t nq = (size_t)C * lat->lc * lat->lh * lat->lw;
    for (size_t i = 0; i < nq; i++)
        d->in[i] = lat->q[i];
    struct nn_qtensor t = {d->in, C, lat->lc, lat->lh, lat->lw}, y;
    int ret = nn_qforward(d->c, &t, &y);
    if (ret)
        return ret;
    const int64_t m = ae->qm, half = (int64_t)1 << (ae->qk - 1);
    const uint64_t P = (1u << lat->depth) - 1;
    if (C == 1) {
        /* grey, most images: one plane, a loop per row the compiler vectorises */
        for (uint32_t r = 0; r < lat->height; r++) {
            const int16_t *src = y.data + (size_t)r * pw;
            size_t row = (size_t)r * lat->width;
            if (img->bits == 8) {
                uint8_t *o = (uint8_t *)img->pixels + row;
                for (uint32_t x = 0; x < lat->width; x++)
                    o[x] = (uint8_t)to_sample((int64_t)src[x] * m + half, P, ae->qk);
            } else {
                uint16_t *o = (uint16_t *)img->pixels + row;
                for (uint32_t x = 0; x < lat->width; x++)
                    o[x] = (uint16_t)to_sample((int64_t)src[x] * m + half, P, ae->qk);
            }
        }
        return 0;
    }
    for (uint32_t r = 0; r < lat->height; r++)
        for (uint32_t x = 0; x < lat->width; x++) {
            size_t src = (size_t)r * pw + x, dst = (size_t)r * lat->width + x;
            int64_t F[NN_AE_MAX_CHANNELS];
            for (uint32_t k = 0; k < C; k++)
                F[k] = (int64_t)y.data[k * pplane + src] * m;
            if (C >= 3) {
                /* Undo ae.c's YCoCg on values less their offset 2^(k-1): the offsets of Co
                 * and Cg (1/2) cancel, Y's is added back with the others' below. */
                int64_t Y = F[0], Co = F[1], Cg = F[2];
                F[0] = Y - Cg + Co;
                F[1] = Y + Cg;
                F[2] = Y - Cg - Co;
            }
            for (uint32_t k = 0; k < C; k++) {
                uint32_t s = to_sample(F[k] + half, P, ae->qk);
                if (img->bits == 8)
                    ((uint8_t *)img->pixels)[k * plane + dst] = (uint8_t)s;
                else
                    ((uint16_t *)img->pixels)[k * plane + dst] = (uint16_t)s;
            }
        }
    return 0;
}

int nn_ae_decode_int(const struct nn_ae *ae, const struct nn_ae_latent *lat,
                     struct nn_ae_image **out)
{
    struct nn_ae_image *img = NULL;
    struct nn_ae_qdec *d = NULL;
    int ret;
    if (!ae || !out || !nn_ae_latent_ok(ae, lat))
        return -EINVAL;
    if ((ret = nn_ae_qdec_new(ae, lat->channels, lat->height, lat->width, &d)))
        return ret;
    ret = -ENOMEM;
    if (!(img = calloc(1, sizeof(*img))))
        goto out;
    *img = (struct nn_ae_image){lat->channels, lat->height, lat->width, lat->bits, NULL};
    if (!(img->pixels = malloc((size_t)lat->height * lat->width * lat->channels * (lat->bits / 8))))
        goto out;
    if ((ret = nn_ae_qdec_run(d, lat, img)))
        goto out;
    *out = img;
    img = NULL;
out:
    nn_ae_image_free(img);
    nn_ae_qdec_free(d);
    return ret;
}
