/* SPDX-License-Identifier: MIT */
/*
 * nn internals: the model and context structures and the per-layer operation table.
 *
 * Each layer type is one entry of a table (struct nn_op): shape inference, parameter count and
 * initialisation, memory needs, float forward and backward. The drivers (ctx.c) know nothing
 * about a layer's arithmetic, so another family of kernels (integer-exact inference) can be a
 * second table over the same descriptors. The trade-off: a call through a pointer per layer
 * and a generic argument block (struct nn_io) instead of specialised signatures.
 */
#ifndef IMGCRYPTFS_NN_INT_H
#define IMGCRYPTFS_NN_INT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

struct nn_shape {
    uint32_t n, c, h, w;
};

static inline size_t nn_shape_count(const struct nn_shape *s)
{
    return (size_t)s->n * s->c * s->h * s->w;
}

static inline size_t nn_shape_plane(const struct nn_shape *s)
{
    return (size_t)s->h * s->w;
}

/*
 * Arguments of one layer's forward or backward pass. x/y are the packed input and output, dy
 * and dx their gradients (dx NULL when nobody needs it). aux is the layer's own memory: kept
 * from forward to backward in a training context, shared scratch otherwise. scratch is shared
 * by all layers of the context and holds nothing between calls.
 */
struct nn_io {
    const struct nn_layer_desc *d;
    const float *w; /* parameters */
    float *dw;      /* parameter gradients (accumulated), backward only */
    struct nn_shape is, os;
    const float *x;
    float *y;
    const float *dy;
    float *dx;
    float *aux;
    float *scratch;
    int train;
};

struct nn_op {
    /* Check hyper-parameters (d->in_ch set); set the output channel count. 0 or -EINVAL/-EFBIG. */
    int (*check)(const struct nn_layer_desc *d, uint32_t *out_ch);
    /* Output shape for an input shape; -EINVAL if the input does not fit. */
    int (*shape)(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os);
    size_t (*nparams)(const struct nn_layer_desc *d);
    void (*init)(const struct nn_layer_desc *d, float *w, struct nn_rng *r);
    /* Floats of aux (per layer) and scratch (shared) needed; 0 or -EFBIG on overflow. */
    int (*mem)(const struct nn_layer_desc *d, const struct nn_shape *is, const struct nn_shape *os,
               int train, size_t *aux, size_t *scratch);
    void (*forward)(const struct nn_io *io);
    void (*backward)(const struct nn_io *io);
};

/* The table of float operations, indexed by enum nn_layer_type; NULL where not a leaf op. */
const struct nn_op *nn_float_op(uint32_t type);

extern const struct nn_op nn_op_conv2d, nn_op_tconv2d, nn_op_upsample, nn_op_relu, nn_op_lrelu,
    nn_op_avgpool, nn_op_maxpool, nn_op_se, nn_op_mhsa;

struct nn_layer {
    struct nn_layer_desc d;
    size_t param_off, nparams;
};

struct nn_model {
    uint32_t in_ch, cur_ch;
    struct nn_layer *layers;
    size_t nlayers, cap;
    /* Open residual blocks: layer index and channels at entry. */
    size_t open[NN_MAX_DEPTH];
    int depth;
    float *params;
    size_t nparams;
    int ready;
};

/* The model a context runs. */
const struct nn_model *nn_ctx_model(const struct nn_ctx *c);

/* Kaiming-uniform fill: U(-b, b) with b = sqrt(gain / fan_in). */
void nn_init_uniform(float *w, size_t count, double gain, size_t fan_in, struct nn_rng *r);

/* a = a * b with overflow check; returns -EFBIG on overflow. */
static inline int nn_mul(size_t *a, size_t b)
{
    return __builtin_mul_overflow(*a, b, a) ? -EFBIG : 0;
}

/*
 * Convolution geometry of one image: c channels of h x w, kernel kh x kw, stride, zero padding,
 * giving an oh x ow grid of windows. The column matrix of output rows [oy0, oy1) has
 * c * kh * kw rows and (oy1 - oy0) * ow columns.
 */
struct nn_geom {
    uint32_t c, h, w, kh, kw, stride, pad, oh, ow;
};

/* Scratch budget (floats) of one column matrix; convolutions work in bands of output rows. */
#define NN_COL_BUDGET (1u << 20)

/* Output rows per band for a geometry: as many as fit the budget, at least one. */
uint32_t nn_band_rows(const struct nn_geom *g);
/* Copy the windows of output rows [oy0, oy1) of image x into col. */
void nn_im2col(const struct nn_geom *g, const float *x, uint32_t oy0, uint32_t oy1, float *col);
/* The adjoint: add col back into x, which the caller initialises. */
void nn_col2im(const struct nn_geom *g, const float *col, uint32_t oy0, uint32_t oy1, float *x);

#endif
