// SPDX-License-Identifier: MIT
/*
 * The autoencoder (ae.h): model building from a config, image normalisation, encode and
 * decode, the rate of a latent under the factorised logistic prior, PSNR and SSIM, and the
 * model file. Training is in ae_train.c.
 *
 * The trade-off is speed against quality: the preview has to cost a few milliseconds per
 * 512x512 image on one core, so only the first and last layers see full resolution (a
 * stride-4 8x8 convolution in, its transpose out) and the capacity sits at 1/8 and 1/16 scale,
 * where a 3x3 convolution over w3 channels costs 64 to 256 times less per pixel. Each call plans
 * its own nn context for the image's shape: simple and reentrant, at the cost of an allocation per
 * image.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/ae.h"
#include "nn/ae_int.h"
#include "nn/nn_int.h"

#define SLOPE 0.1f
#define ENC_GAIN 8.0f /* initial scale of the encoder's last layer */
#define MAX_FILE_BYTES ((size_t)64 << 20)

void nn_ae_default_config(struct nn_ae_config *cfg)
{
    *cfg = (struct nn_ae_config){.latent = 12, .w1 = 16, .w2 = 32, .w3 = 48, .nres = 1};
}

int nn_ae_config_ok(const struct nn_ae_config *c)
{
    return c && c->latent >= 1 && c->latent <= NN_AE_MAX_LATENT && c->w1 >= 1 &&
           c->w1 <= NN_AE_MAX_WIDTH && c->w2 >= 1 && c->w2 <= NN_AE_MAX_WIDTH && c->w3 >= 1 &&
           c->w3 <= NN_AE_MAX_WIDTH && c->nres <= NN_AE_MAX_RES;
}

/* Parameters a config implies, by formula: the loader checks a file's count against it
 * before building anything. */
size_t nn_ae_config_params(const struct nn_ae_config *c)
{
    size_t L = c->latent, a = c->w1, b = c->w2, w = c->w3;
    size_t enc = (a * 64 + a) + (b * a * 16 + b) + (w * b * 16 + w) + (L * w * 9 + L);
    size_t dec = (w * L * 9 + w) + c->nres * 2 * (w * w * 9 + w) + (w * b * 16 + b) +
                 (b * a * 16 + a) + (a * a * 9 + a) + (a * 64 + 1);
    return enc + dec + 2 * L;
}

static int add(struct nn_model *m, struct nn_layer_desc d)
{
    return nn_model_add(m, &d);
}

static struct nn_layer_desc conv(uint32_t out, uint32_t k, uint32_t stride)
{
    return (struct nn_layer_desc){.type = NN_CONV2D,
                                  .out_ch = out,
                                  .kh = k,
                                  .kw = k,
                                  .stride = stride,
                                  .pad = stride > 1 ? (k - stride) / 2 : k / 2,
                                  .bias = 1};
}

/* Kernel k, stride k / 2 or k / 4 as asked, padding (k - stride) / 2: exact up-sampling. */
static struct nn_layer_desc tconv(uint32_t out, uint32_t k, uint32_t stride)
{
    return (struct nn_layer_desc){.type = NN_TCONV2D,
                                  .out_ch = out,
                                  .kh = k,
                                  .kw = k,
                                  .stride = stride,
                                  .pad = (k - stride) / 2,
                                  .bias = 1};
}

static struct nn_layer_desc lrelu(void)
{
    return (struct nn_layer_desc){.type = NN_LRELU, .slope = SLOPE};
}

static int build(const struct nn_ae_config *c, struct nn_model **enc, struct nn_model **dec)
{
    struct nn_model *e = NULL, *d = NULL;
    int ret;
    if ((ret = nn_model_new(1, &e)) || (ret = nn_model_new(c->latent, &d)))
        goto out;
    if ((ret = add(e, conv(c->w1, 8, 4))) || (ret = add(e, lrelu())) ||
        (ret = add(e, conv(c->w2, 4, 2))) || (ret = add(e, lrelu())) ||
        (ret = add(e, conv(c->w3, 4, 2))) || (ret = add(e, lrelu())) ||
        (ret = add(e, conv(c->latent, 3, 1))))
        goto out;
    if ((ret = add(d, conv(c->w3, 3, 1))) || (ret = add(d, lrelu())))
        goto out;
    for (uint32_t i = 0; i < c->nres; i++)
        if ((ret = add(d, (struct nn_layer_desc){.type = NN_RESIDUAL})) ||
            (ret = add(d, conv(c->w3, 3, 1))) || (ret = add(d, lrelu())) ||
            (ret = add(d, conv(c->w3, 3, 1))) || (ret = nn_model_end(d)))
            goto out;
    if ((ret = add(d, tconv(c->w2, 4, 2))) || (ret = add(d, lrelu())) ||
        (ret = add(d, tconv(c->w1, 4, 2))) || (ret = add(d, lrelu())) ||
        (ret = add(d, conv(c->w1, 3, 1))) || (ret = add(d, lrelu())) ||
        (ret = add(d, tconv(1, 8, 4))))
        goto out;
    *enc = e;
    *dec = d;
    return 0;
out:
    nn_model_free(d);
    nn_model_free(e);
    return ret;
}

int nn_ae_new(const struct nn_ae_config *cfg, uint64_t seed, struct nn_ae **out)
{
    if (!out || !nn_ae_config_ok(cfg))
        return -EINVAL;
    struct nn_ae *ae = calloc(1, sizeof(*ae));
    if (!ae)
        return -ENOMEM;
    int ret = build(cfg, &ae->enc, &ae->dec);
    if (!ret)
        ret = nn_model_init(ae->enc, seed);
    if (!ret)
        ret = nn_model_init(ae->dec, seed ^ 0x9e3779b97f4a7c15ull);
    if (ret) {
        nn_ae_free(ae);
        return ret;
    }
    ae->cfg = *cfg;
    /* Start with latents of a few units: below 1/2 they would all round to 0 and the decoder
     * would learn nothing until the encoder's output grew. */
    size_t last = nn_model_layer_count(ae->enc) - 1, nw;
    float *w = nn_model_layer_params(ae->enc, last, &nw);
    for (size_t i = 0; i < nw; i++)
        w[i] *= ENC_GAIN;
    w = nn_model_layer_params(ae->dec, 0, &nw); /* and the decoder's first layer sees O(1) */
    for (size_t i = 0; i < nw; i++)
        w[i] /= ENC_GAIN;
    for (uint32_t i = 0; i < cfg->latent; i++) {
        ae->prior[i] = 0.0f;
        ae->prior[cfg->latent + i] = 1.0f;
    }
    size_t ne, nd;
    nn_model_params(ae->enc, &ne);
    nn_model_params(ae->dec, &nd);
    ae->nparams = ne + nd + 2 * (size_t)cfg->latent;
    if (ae->nparams != nn_ae_config_params(cfg)) {
        nn_ae_free(ae);
        return -EINVAL; /* the formula and the layers disagree: a bug, refused loudly */
    }
    *out = ae;
    return 0;
}

void nn_ae_free(struct nn_ae *ae)
{
    if (!ae)
        return;
    nn_qmodel_free(ae->qdec);
    nn_model_free(ae->dec);
    nn_model_free(ae->enc);
    free(ae);
}

const struct nn_ae_config *nn_ae_get_config(const struct nn_ae *ae)
{
    return &ae->cfg;
}

size_t nn_ae_param_count(const struct nn_ae *ae)
{
    return ae->nparams;
}

struct nn_model *nn_ae_encoder(struct nn_ae *ae)
{
    return ae->enc;
}

struct nn_model *nn_ae_decoder(struct nn_ae *ae)
{
    return ae->dec;
}

const float *nn_ae_prior(const struct nn_ae *ae)
{
    return ae->prior;
}

/* ---- images and planes ---- */

int nn_ae_image_ok(const struct nn_ae_image *img)
{
    return img && img->pixels && img->channels >= 1 && img->channels <= NN_AE_MAX_CHANNELS &&
           img->height >= 1 && img->width >= 1 && img->height <= NN_MAX_DIM &&
           img->width <= NN_MAX_DIM && (img->bits == 8 || img->bits == 16);
}

static size_t image_plane(const struct nn_ae_image *img)
{
    return (size_t)img->height * img->width;
}

static uint32_t sample(const struct nn_ae_image *img, size_t i)
{
    return img->bits == 8 ? ((const uint8_t *)img->pixels)[i] : ((const uint16_t *)img->pixels)[i];
}

uint32_t nn_ae_depth(const struct nn_ae_image *img)
{
    size_t n = image_plane(img) * img->channels;
    uint32_t max = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = sample(img, i);
        if (v > max)
            max = v;
    }
    uint32_t d = 1;
    while (d < 16 && (max >> d))
        d++;
    return d;
}

int nn_ae_planes(const struct nn_ae_image *img, uint32_t depth, float *out)
{
    size_t plane = image_plane(img);
    const float k = 1.0f / (float)((1u << depth) - 1);
    for (size_t i = 0; i < plane * img->channels; i++)
        out[i] = (float)sample(img, i) * k;
    if (img->channels >= 3) {
        float *r = out, *g = out + plane, *b = out + 2 * plane;
        for (size_t i = 0; i < plane; i++) {
            float y = 0.25f * r[i] + 0.5f * g[i] + 0.25f * b[i];
            float co = 0.5f * r[i] - 0.5f * b[i] + 0.5f;
            float cg = -0.25f * r[i] + 0.5f * g[i] - 0.25f * b[i] + 0.5f;
            r[i] = y;
            g[i] = co;
            b[i] = cg;
        }
    }
    return 0;
}

/* Inverse of nn_ae_planes' colour transform, in place. */
static void planes_to_rgb(float *p, uint32_t channels, size_t plane)
{
    if (channels < 3)
        return;
    float *y = p, *co = p + plane, *cg = p + 2 * plane;
    for (size_t i = 0; i < plane; i++) {
        float o = co[i] - 0.5f, c = cg[i] - 0.5f, t = y[i] - c;
        float g = y[i] + c, r = t + o, b = t - o;
        y[i] = r;
        co[i] = g;
        cg[i] = b;
    }
}

static uint32_t padded(uint32_t n)
{
    return (n + NN_AE_FACTOR - 1) / NN_AE_FACTOR * NN_AE_FACTOR;
}

void nn_ae_pad(const float *src, uint32_t h, uint32_t w, float *dst, uint32_t ph, uint32_t pw,
               float offset)
{
    if (h == 0 || w == 0) { /* no pixel to repeat: the padding is the offset alone */
        for (size_t i = 0; i < (size_t)ph * pw; i++)
            dst[i] = offset;
        return;
    }
    for (uint32_t y = 0; y < ph; y++) {
        const float *row = src + (size_t)(y < h ? y : h - 1) * w;
        float *d = dst + (size_t)y * pw;
        for (uint32_t x = 0; x < pw; x++)
            d[x] = row[x < w ? x : w - 1] + offset;
    }
}

int nn_ae_encode(const struct nn_ae *ae, const struct nn_ae_image *img, struct nn_ae_latent **out)
{
    struct nn_ae_latent *lat = NULL;
    struct nn_ctx *c = NULL;
    float *planes = NULL, *in = NULL;
    int ret;
    if (!ae || !nn_ae_image_ok(img) || !out)
        return -EINVAL;
    uint32_t C = img->channels, ph = padded(img->height), pw = padded(img->width);
    size_t plane = image_plane(img), pplane = (size_t)ph * pw;
    ret = -ENOMEM;
    /* zeroed, so no path can read an unwritten value (nn_ae_planes fills it all) */
    planes = calloc(plane * C + 1, sizeof(float));
    in = malloc(pplane * C * sizeof(float));
    lat = calloc(1, sizeof(*lat));
    if (!planes || !in || !lat)
        goto out;
    lat->channels = C;
    lat->height = img->height;
    lat->width = img->width;
    lat->bits = img->bits;
    lat->depth = nn_ae_depth(img);
    lat->lc = ae->cfg.latent;
    lat->lh = ph / NN_AE_FACTOR;
    lat->lw = pw / NN_AE_FACTOR;
    nn_ae_planes(img, lat->depth, planes);
    for (uint32_t k = 0; k < C; k++)
        nn_ae_pad(planes + k * plane, img->height, img->width, in + k * pplane, ph, pw, -0.5f);
    /* The fast context: the latent is rounded anyway, and encoding is on every store. */
    if ((ret = nn_ctx_new(ae->enc, C, ph, pw, NN_CTX_FAST, &c)))
        goto out;
    struct nn_tensor t, y;
    nn_tensor_packed(&t, in, C, 1, ph, pw);
    if ((ret = nn_forward(c, &t, &y)))
        goto out;
    size_t n = nn_tensor_count(&y);
    ret = -ENOMEM;
    lat->q = malloc(n);
    if (!lat->q)
        goto out;
    for (size_t i = 0; i < n; i++)
        lat->q[i] = (int8_t)nn_ae_quantise(y.data[i]);
    *out = lat;
    lat = NULL;
    ret = 0;
out:
    nn_ctx_free(c);
    nn_ae_latent_free(lat);
    free(in);
    free(planes);
    return ret;
}

void nn_ae_latent_free(struct nn_ae_latent *lat)
{
    if (!lat)
        return;
    /* features are image content: no copy is left in freed memory */
    if (lat->q)
        explicit_bzero(lat->q, (size_t)lat->channels * lat->lc * lat->lh * lat->lw);
    free(lat->q);
    free(lat);
}

int nn_ae_latent_ok(const struct nn_ae *ae, const struct nn_ae_latent *lat)
{
    return lat && lat->q && lat->channels >= 1 && lat->channels <= NN_AE_MAX_CHANNELS &&
           lat->height >= 1 && lat->width >= 1 && lat->height <= NN_MAX_DIM &&
           lat->width <= NN_MAX_DIM && (lat->bits == 8 || lat->bits == 16) && lat->depth >= 1 &&
           lat->depth <= lat->bits && lat->lc == ae->cfg.latent &&
           lat->lh == padded(lat->height) / NN_AE_FACTOR &&
           lat->lw == padded(lat->width) / NN_AE_FACTOR;
}

int nn_ae_decode(const struct nn_ae *ae, const struct nn_ae_latent *lat, struct nn_ae_image **out)
{
    struct nn_ae_image *img = NULL;
    struct nn_ctx *c = NULL;
    float *in = NULL, *planes = NULL;
    int ret;
    if (!ae || !out || !nn_ae_latent_ok(ae, lat))
        return -EINVAL;
    uint32_t C = lat->channels, ph = lat->lh * NN_AE_FACTOR, pw = lat->lw * NN_AE_FACTOR;
    size_t plane = (size_t)lat->height * lat->width, pplane = (size_t)ph * pw;
    size_t nq = (size_t)C * lat->lc * lat->lh * lat->lw;
    ret = -ENOMEM;
    in = malloc(nq * sizeof(float));
    planes = malloc(plane * C * sizeof(float));
    img = calloc(1, sizeof(*img));
    if (!in || !planes || !img)
        goto out;
    img->pixels = malloc(plane * C * (lat->bits / 8));
    if (!img->pixels)
        goto out;
    img->channels = C;
    img->height = lat->height;
    img->width = lat->width;
    img->bits = lat->bits;
    for (size_t i = 0; i < nq; i++)
        in[i] = lat->q[i];
    if ((ret = nn_ctx_new(ae->dec, C, lat->lh, lat->lw, NN_CTX_FAST, &c)))
        goto out;
    struct nn_tensor t, y;
    nn_tensor_packed(&t, in, C, lat->lc, lat->lh, lat->lw);
    if ((ret = nn_forward(c, &t, &y)))
        goto out;
    for (uint32_t k = 0; k < C; k++)
        for (uint32_t r = 0; r < lat->height; r++)
            for (uint32_t x = 0; x < lat->width; x++)
                planes[k * plane + (size_t)r * lat->width + x] =
                    y.data[k * pplane + (size_t)r * pw + x] + 0.5f;
    planes_to_rgb(planes, C, plane);
    const float peak = (float)((1u << lat->depth) - 1);
    for (size_t i = 0; i < plane * C; i++) {
        float v = planes[i];
        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        uint32_t s = (uint32_t)lrintf(v * peak);
        if (img->bits == 8)
            ((uint8_t *)img->pixels)[i] = (uint8_t)s;
        else
            ((uint16_t *)img->pixels)[i] = (uint16_t)s;
    }
    *out = img;
    img = NULL;
    ret = 0;
out:
    nn_ctx_free(c);
    nn_ae_image_free(img);
    free(planes);
    free(in);
    return ret;
}

void nn_ae_image_free(struct nn_ae_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    free(img);
}

/* ---- rate ---- */

static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/*
 * Natural log of the mass of [v - 0.5, v + 0.5] under a logistic (mu, exp(ls)), with the tail
 * below v + 0.5 when lo_tail and above v - 0.5 when hi_tail; and its derivatives in v, mu and
 * ls (any of them may be NULL). Written as sigma(a) sigma(-b) (1 - exp(b - a)), a and b the
 * scaled bin edges, so that it neither cancels nor overflows.
 */
double nn_ae_logp(double v, double mu, double ls, int lo_tail, int hi_tail, double *dv, double *dmu,
                  double *dls)
{
    if (ls < -30.0)
        ls = -30.0;
    double u = exp(-ls), a = (v + 0.5 - mu) * u, b = (v - 0.5 - mu) * u;
    double lp = 0, gm = 0, gl = 0;
    if (!lo_tail) {
        double sb = sigmoid(b);
        lp -= softplus(b);
        gm += u * sb;
        gl += b * sb;
    }
    if (!hi_tail) {
        double sna = sigmoid(-a);
        lp -= softplus(-a);
        gm -= u * sna;
        gl -= a * sna;
    }
    if (!lo_tail && !hi_tail) {
        lp += log(-expm1(-u));
        gl -= u < 1e-12 ? 1.0 : u / expm1(u);
    }
    if (dv)
        *dv = -gm;
    if (dmu)
        *dmu = gm;
    if (dls)
        *dls = gl;
    return lp;
}

int nn_ae_quantise(float y)
{
    long q = lrintf(y);
    return q < -NN_AE_QMAX ? -NN_AE_QMAX : q > NN_AE_QMAX ? NN_AE_QMAX : (int)q;
}

int nn_ae_rate(const struct nn_ae *ae, const struct nn_ae_latent *lat, double *bits)
{
    if (!ae || !bits || !nn_ae_latent_ok(ae, lat))
        return -EINVAL;
    size_t grid = (size_t)lat->lh * lat->lw;
    double nats = 0;
    for (uint32_t k = 0; k < lat->channels; k++)
        for (uint32_t c = 0; c < lat->lc; c++) {
            const int8_t *q = lat->q + ((size_t)k * lat->lc + c) * grid;
            double mu = ae->prior[c], ls = ae->prior[lat->lc + c];
            /* One evaluation per distinct value: latents repeat a lot. */
            double cost[2 * NN_AE_QMAX + 1];
            for (int v = 0; v < 2 * NN_AE_QMAX + 1; v++)
                cost[v] = NAN;
            for (size_t i = 0; i < grid; i++) {
                int v = q[i];
                if (v < -NN_AE_QMAX || v > NN_AE_QMAX)
                    return -EINVAL;
                double *cv = &cost[v + NN_AE_QMAX];
                if (isnan(*cv))
                    *cv =
                        -nn_ae_logp(v, mu, ls, v == -NN_AE_QMAX, v == NN_AE_QMAX, NULL, NULL, NULL);
                nats += *cv;
            }
        }
    *bits = nats / M_LN2;
    return 0;
}

/* ---- metrics ---- */

static int same_geometry(const struct nn_ae_image *a, const struct nn_ae_image *b)
{
    return nn_ae_image_ok(a) && nn_ae_image_ok(b) && a->channels == b->channels &&
           a->height == b->height && a->width == b->width && a->bits == b->bits;
}

int nn_ae_psnr(const struct nn_ae_image *a, const struct nn_ae_image *b, double *db)
{
    if (!db || !same_geometry(a, b))
        return -EINVAL;
    double peak = (double)((1u << nn_ae_depth(a)) - 1), sum = 0;
    size_t n = image_plane(a) * a->channels;
    for (size_t i = 0; i < n; i++) {
        double e = (double)sample(a, i) - (double)sample(b, i);
        sum += e * e;
    }
    *db = sum == 0 ? INFINITY : 10.0 * log10(peak * peak / (sum / (double)n));
    return 0;
}

/* Mean SSIM of one plane pair (doubles, h x w), L the value range. */
static int ssim_plane(const double *x, const double *y, uint32_t h, uint32_t w, double L,
                      double *out)
{
    const double c1 = (0.01 * L) * (0.01 * L), c2 = (0.03 * L) * (0.03 * L);
    if (h < 11 || w < 11) {
        /* One window over the whole image, uniform weights. */
        double n = (double)h * w, mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
        for (size_t i = 0; i < (size_t)h * w; i++) {
            mx += x[i];
            my += y[i];
        }
        mx /= n;
        my /= n;
        for (size_t i = 0; i < (size_t)h * w; i++) {
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
            sxy += (x[i] - mx) * (y[i] - my);
        }
        sxx /= n;
        syy /= n;
        sxy /= n;
        *out =
            ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
        return 0;
    }
    double g[11], gs = 0;
    for (int i = 0; i < 11; i++) {
        g[i] = exp(-(double)((i - 5) * (i - 5)) / (2 * 1.5 * 1.5));
        gs += g[i];
    }
    for (int i = 0; i < 11; i++)
        g[i] /= gs;
    uint32_t ow = w - 10, oh = h - 10;
    /* Horizontal pass of the five moments into rows of ow, then vertical per window. */
    double *hz = malloc((size_t)h * ow * 5 * sizeof(double));
    if (!hz)
        return -ENOMEM;
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t c = 0; c < ow; c++) {
            double m[5] = {0};
            for (int k = 0; k < 11; k++) {
                double a = x[(size_t)r * w + c + k], b = y[(size_t)r * w + c + k];
                m[0] += g[k] * a;
                m[1] += g[k] * b;
                m[2] += g[k] * a * a;
                m[3] += g[k] * b * b;
                m[4] += g[k] * a * b;
            }
            memcpy(hz + ((size_t)r * ow + c) * 5, m, sizeof(m));
        }
    double total = 0;
    for (uint32_t r = 0; r < oh; r++)
        for (uint32_t c = 0; c < ow; c++) {
            double m[5] = {0};
            for (int k = 0; k < 11; k++)
                for (int j = 0; j < 5; j++)
                    m[j] += g[k] * hz[((size_t)(r + k) * ow + c) * 5 + j];
            double mx = m[0], my = m[1];
            double sxx = m[2] - mx * mx, syy = m[3] - my * my, sxy = m[4] - mx * my;
            total += ((2 * mx * my + c1) * (2 * sxy + c2)) /
                     ((mx * mx + my * my + c1) * (sxx + syy + c2));
        }
    free(hz);
    *out = total / ((double)oh * ow);
    return 0;
}

int nn_ae_ssim(const struct nn_ae_image *a, const struct nn_ae_image *b, double *ssim)
{
    if (!ssim || !same_geometry(a, b))
        return -EINVAL;
    size_t plane = image_plane(a);
    double L = (double)((1u << nn_ae_depth(a)) - 1), sum = 0;
    double *x = malloc(plane * sizeof(double)), *y = malloc(plane * sizeof(double));
    int ret = -ENOMEM;
    if (!x || !y)
        goto out;
    for (uint32_t k = 0; k < a->channels; k++) {
        for (size_t i = 0; i < plane; i++) {
            x[i] = sample(a, k * plane + i);
            y[i] = sample(b, k * plane + i);
        }
        double s;
        if ((ret = ssim_plane(x, y, a->height, a->width, L, &s)))
            goto out;
        sum += s;
    }
    *ssim = sum / a->channels;
    ret = 0;
out:
    free(y);
    free(x);
    return ret;
}

/* ---- model file ---- */

#define HEAD_BYTES (12 + 4 * NN_AE_CONFIG_WORDS + 8)

/* Visit the parameter slices in file order: encoder, decoder, prior. */
static void param_slices(const struct nn_ae *ae, float *slices[3], size_t counts[3])
{
    slices[0] = nn_model_params(ae->enc, &counts[0]);
    slices[1] = nn_model_params(ae->dec, &counts[1]);
    slices[2] = (float *)ae->prior;
    counts[2] = 2 * (size_t)ae->cfg.latent;
}

int nn_ae_save(const struct nn_ae *ae, uint8_t **buf, size_t *len)
{
    uint8_t *qb = NULL;
    size_t qlen = 0;
    int ret;
    if (!ae || !buf || !len)
        return -EINVAL;
    if (ae->qdec && (ret = nn_qmodel_save(ae->qdec, NN_AE_QDEC_ARCH, &qb, &qlen)))
        return ret;
    size_t n = HEAD_BYTES + 4 * ae->nparams + 8 + qlen + 4;
    uint8_t *b = malloc(n), *p = b;
    if (!b) {
        free(qb);
        return -ENOMEM;
    }
    memcpy(p, NN_AE_MAGIC, 4);
    nn_put_le32(p + 4, NN_AE_VERSION);
    nn_put_le32(p + 8, NN_AE_CONFIG_WORDS);
    const uint32_t cw[NN_AE_CONFIG_WORDS] = {ae->cfg.latent, ae->cfg.w1, ae->cfg.w2, ae->cfg.w3,
                                             ae->cfg.nres,   NN_AE_QMAX, 0,          0};
    for (int i = 0; i < NN_AE_CONFIG_WORDS; i++)
        nn_put_le32(p + 12 + 4 * i, cw[i]);
    p += 12 + 4 * NN_AE_CONFIG_WORDS;
    nn_put_le32(p, (uint32_t)ae->nparams);
    nn_put_le32(p + 4, (uint32_t)((uint64_t)ae->nparams >> 32));
    p += 8;
    float *sl[3];
    size_t cnt[3];
    param_slices(ae, sl, cnt);
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < cnt[s]; i++, p += 4) {
            uint32_t v;
            memcpy(&v, &sl[s][i], 4);
            nn_put_le32(p, v);
        }
    nn_put_le32(p, (uint32_t)qlen);
    nn_put_le32(p + 4, (uint32_t)((uint64_t)qlen >> 32));
    p += 8;
    if (qlen)
        memcpy(p, qb, qlen);
    p += qlen;
    nn_put_le32(p, nn_crc32(b, (size_t)(p - b)));
    free(qb);
    *buf = b;
    *len = n;
    return 0;
}

int nn_ae_load(const uint8_t *buf, size_t len, struct nn_ae **out)
{
    struct nn_ae *ae = NULL;
    struct nn_qmodel *q = NULL;
    char arch[NN_ARCH_MAX + 1];
    if (!buf || !out)
        return -EINVAL;
    if (len < HEAD_BYTES + 4 || memcmp(buf, NN_AE_MAGIC, 4) != 0 ||
        nn_crc32(buf, len - 4) != nn_get_le32(buf + len - 4))
        return -EBADMSG;
    uint32_t version = nn_get_le32(buf + 4);
    if ((version != 1 && version != NN_AE_VERSION) || nn_get_le32(buf + 8) != NN_AE_CONFIG_WORDS)
        return -EINVAL;
    const uint8_t *p = buf + 12;
    struct nn_ae_config cfg = {.latent = nn_get_le32(p),
                               .w1 = nn_get_le32(p + 4),
                               .w2 = nn_get_le32(p + 8),
                               .w3 = nn_get_le32(p + 12),
                               .nres = nn_get_le32(p + 16)};
    if (!nn_ae_config_ok(&cfg) || nn_get_le32(p + 20) != NN_AE_QMAX || nn_get_le32(p + 24) ||
        nn_get_le32(p + 28))
        return -EINVAL;
    p += 4 * NN_AE_CONFIG_WORDS;
    uint64_t count = (uint64_t)nn_get_le32(p) | (uint64_t)nn_get_le32(p + 4) << 32;
    size_t want = nn_ae_config_params(&cfg); /* below 2^27 within the limits */
    size_t body = len - HEAD_BYTES - 4;      /* parameters, and in v2 the integer decoder */
    if (count != want || body / 4 < want)
        return -EBADMSG;
    size_t rest = body - 4 * want;
    const uint8_t *qp = NULL;
    uint64_t qlen = 0;
    if (version == 1) {
        if (rest != 0)
            return -EBADMSG;
    } else {
        if (rest < 8)
            return -EBADMSG;
        const uint8_t *lp = p + 8 + 4 * want;
        qlen = (uint64_t)nn_get_le32(lp) | (uint64_t)nn_get_le32(lp + 4) << 32;
        if (qlen != rest - 8)
            return -EBADMSG;
        if (qlen > NN_FILE_MAX)
            return -EFBIG;
        qp = lp + 8;
    }
    p += 8;
    int ret = nn_ae_new(&cfg, 0, &ae);
    if (ret)
        return ret;
    float *sl[3];
    size_t cnt[3];
    param_slices(ae, sl, cnt);
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < cnt[s]; i++, p += 4) {
            uint32_t v = nn_get_le32(p);
            float f;
            memcpy(&f, &v, 4);
            if (!isfinite(f)) {
                nn_ae_free(ae);
                return -EINVAL;
            }
            sl[s][i] = f;
        }
    if (qlen) {
        /* A damaged integer decoder inside a file whose CRC holds is malformed content. */
        ret = nn_qmodel_load(qp, (size_t)qlen, &q, arch);
        if (ret == -EBADMSG)
            ret = -EINVAL;
        if (!ret && strcmp(arch, NN_AE_QDEC_ARCH) != 0) {
            nn_qmodel_free(q);
            ret = -EINVAL;
        }
        if (!ret)
            ret = nn_ae_set_int_decoder(ae, q);
        if (ret) {
            nn_ae_free(ae);
            return ret;
        }
    }
    *out = ae;
    return 0;
}

int nn_ae_save_file(const struct nn_ae *ae, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int ret;
    if (!path)
        return -EINVAL;
    if ((ret = nn_ae_save(ae, &buf, &len)) == 0)
        ret = nn_file_write(path, buf, len);
    free(buf);
    return ret;
}

int nn_ae_load_file(const char *path, struct nn_ae **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int ret;
    if (!path || !out)
        return -EINVAL;
    if ((ret = nn_file_read(path, MAX_FILE_BYTES, &buf, &len)) == 0)
        ret = nn_ae_load(buf, len, out);
    free(buf);
    return ret;
}

int nn_ae_load_default(struct nn_ae **out)
{
    size_t len;
    const uint8_t *b = nn_ae_default_bytes(&len);
    return nn_ae_load(b, len, out);
}
