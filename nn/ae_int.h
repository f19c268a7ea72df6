/* SPDX-License-Identifier: MIT */
/*
 * Autoencoder internals shared by ae.c (model, codec, metrics, file) and ae_train.c
 * (training), and reachable by the unit tests: the object itself, the normalisation of images
 * into planes, and the logistic log-mass that both the rate and its training relaxation use.
 */
#ifndef IMGCRYPTFS_NN_AE_INT_H
#define IMGCRYPTFS_NN_AE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "nn/ae.h"
#include "nn/nn.h"

struct nn_ae {
    struct nn_ae_config cfg;
    struct nn_model *enc, *dec;
    float prior[2 * NN_AE_MAX_LATENT]; /* mu[latent], then ls[latent] */
    size_t nparams;
    struct nn_qmodel *qdec; /* integer decoder, or NULL */
    int64_t qm;             /* qdec's output scale is qm * 2^-qk */
    uint32_t qk;
};

/*
 * Make q the integer decoder of ae (taking ownership, freeing the previous one) after checking
 * that it fits the float decoder: same layers, input scale 1, output scale within the limits
 * of ae.h. Returns 0, or -EINVAL and frees q.
 */
int nn_ae_set_int_decoder(struct nn_ae *ae, struct nn_qmodel *q);

/* 1 if the image is one encode accepts (channels, bits, sizes, pixels). */
int nn_ae_image_ok(const struct nn_ae_image *img);
/* 1 if the latent fits the model and its own geometry. */
int nn_ae_latent_ok(const struct nn_ae *ae, const struct nn_ae_latent *lat);
/* 1 if the config is within the limits of ae.h. */
int nn_ae_config_ok(const struct nn_ae_config *c);
/* Parameters the config implies (encoder + decoder + prior). */
size_t nn_ae_config_params(const struct nn_ae_config *c);
/* Bit length of the image's largest sample, at least 1. */
uint32_t nn_ae_depth(const struct nn_ae_image *img);
/* The image as channels x height x width floats in [0, 1] (scaled by 2^depth - 1; the first
 * three channels of a 3- or 4-channel image as Y, Co + 1/2, Cg + 1/2). Returns 0. */
int nn_ae_planes(const struct nn_ae_image *img, uint32_t depth, float *out);
/* Copy an h x w plane into ph x pw (ph >= h, pw >= w) by edge replication, adding offset. */
void nn_ae_pad(const float *src, uint32_t h, uint32_t w, float *dst, uint32_t ph, uint32_t pw,
               float offset);
/* round(y) clamped to [-NN_AE_QMAX, NN_AE_QMAX]. */
int nn_ae_quantise(float y);
/*
 * ln of the mass of [v - 1/2, v + 1/2] under the logistic (mu, exp(ls)) (log-scales below -30
 * count as -30); lo_tail extends the bin down to -infinity, hi_tail up to +infinity. The
 * derivatives in v, mu and ls go to dv, dmu, dls when not NULL.
 */
double nn_ae_logp(double v, double mu, double ls, int lo_tail, int hi_tail, double *dv, double *dmu,
                  double *dls);

#endif
