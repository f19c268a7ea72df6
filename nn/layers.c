// SPDX-License-Identifier: MIT
/*
 * The parameter-free layers (rectifiers, pooling, nearest up-sampling) and the table that maps
 * layer types to their float operations.
 *
 * These are plain loops: they are memory-bound and cheap next to the convolutions. Max pooling
 * keeps no argmax indices for backward; it finds the maximum again, which costs a second read
 * of the input but no per-layer memory in the context.
 */
#include <errno.h>
#include <string.h>

#include "nn/nn_int.h"

static int no_params_left(const struct nn_layer_desc *d)
{
    return d->out_ch == 0 && d->bias == 0 && d->hidden == 0 && d->heads == 0;
}

static size_t zero_params(const struct nn_layer_desc *d)
{
    (void)d;
    return 0;
}

static int no_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                  const struct nn_shape *os, int train, size_t *aux, size_t *scratch)
{
    (void)d, (void)is, (void)os, (void)train;
    *aux = 0;
    *scratch = 0;
    return 0;
}

static int same_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    (void)d;
    *os = *is;
    return 0;
}

/* Rectifiers. */

static int relu_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    if (!no_params_left(d) || d->kh || d->kw || d->stride || d->pad || d->factor ||
        d->slope != 0.0f)
        return -EINVAL;
    return 0;
}

static int lrelu_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    /* NaN and infinities fail the range test. */
    if (!no_params_left(d) || d->kh || d->kw || d->stride || d->pad || d->factor ||
        !(d->slope >= -1e6f && d->slope <= 1e6f))
        return -EINVAL;
    return 0;
}

static void relu_forward(const struct nn_io *io)
{
    size_t count = nn_shape_count(&io->is);
    float slope = io->d->type == NN_LRELU ? io->d->slope : 0.0f;
    for (size_t i = 0; i < count; i++)
        io->y[i] = io->x[i] > 0.0f ? io->x[i] : slope * io->x[i];
}

static void relu_backward(const struct nn_io *io)
{
    if (!io->dx)
        return;
    size_t count = nn_shape_count(&io->is);
    float slope = io->d->type == NN_LRELU ? io->d->slope : 0.0f;
    for (size_t i = 0; i < count; i++)
        io->dx[i] = io->x[i] > 0.0f ? io->dy[i] : slope * io->dy[i];
}

const struct nn_op nn_op_relu = {
    .check = relu_check,
    .shape = same_shape,
    .nparams = zero_params,
    .mem = no_mem,
    .forward = relu_forward,
    .backward = relu_backward,
};

const struct nn_op nn_op_lrelu = {
    .check = lrelu_check,
    .shape = same_shape,
    .nparams = zero_params,
    .mem = no_mem,
    .forward = relu_forward,
    .backward = relu_backward,
};

/* Nearest up-sampling. */

static int up_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    if (!no_params_left(d) || d->kh || d->kw || d->stride || d->pad || d->factor == 0 ||
        d->slope != 0.0f)
        return -EINVAL;
    if (d->factor > NN_MAX_KERNEL)
        return -EFBIG;
    return 0;
}

static int up_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    if ((uint64_t)is->h * d->factor > NN_MAX_DIM || (uint64_t)is->w * d->factor > NN_MAX_DIM)
        return -EFBIG;
    os->n = is->n;
    os->c = is->c;
    os->h = is->h * d->factor;
    os->w = is->w * d->factor;
    return 0;
}

static void up_forward(const struct nn_io *io)
{
    uint32_t f = io->d->factor, W = io->is.w, Wo = io->os.w;
    size_t planes = (size_t)io->is.n * io->is.c;
    for (size_t p = 0; p < planes; p++) {
        const float *x = io->x + p * nn_shape_plane(&io->is);
        float *y = io->y + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++) {
            const float *xr = x + (size_t)(oy / f) * W;
            float *yr = y + (size_t)oy * Wo;
            for (uint32_t ox = 0; ox < Wo; ox++)
                yr[ox] = xr[ox / f];
        }
    }
}

static void up_backward(const struct nn_io *io)
{
    if (!io->dx)
        return;
    uint32_t f = io->d->factor, W = io->is.w, Wo = io->os.w;
    size_t planes = (size_t)io->is.n * io->is.c;
    memset(io->dx, 0, nn_shape_count(&io->is) * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        float *dx = io->dx + p * nn_shape_plane(&io->is);
        const float *dy = io->dy + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++) {
            float *dxr = dx + (size_t)(oy / f) * W;
            const float *dyr = dy + (size_t)oy * Wo;
            for (uint32_t ox = 0; ox < Wo; ox++)
                dxr[ox / f] += dyr[ox];
        }
    }
}

const struct nn_op nn_op_upsample = {
    .check = up_check,
    .shape = up_shape,
    .nparams = zero_params,
    .mem = no_mem,
    .forward = up_forward,
    .backward = up_backward,
};

/* Pooling: kh x kw windows, stride, no padding. */

static int pool_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    if (!no_params_left(d) || d->kh == 0 || d->kw == 0 || d->stride == 0 || d->pad || d->factor ||
        d->slope != 0.0f)
        return -EINVAL;
    if (d->kh > NN_MAX_KERNEL || d->kw > NN_MAX_KERNEL || d->stride > NN_MAX_KERNEL)
        return -EFBIG;
    return 0;
}

static int pool_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    if (is->h < d->kh || is->w < d->kw)
        return -EINVAL;
    os->n = is->n;
    os->c = is->c;
    os->h = (is->h - d->kh) / d->stride + 1;
    os->w = (is->w - d->kw) / d->stride + 1;
    return 0;
}

static void avgpool_forward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    uint32_t W = io->is.w;
    float inv = 1.0f / (float)(d->kh * d->kw);
    size_t planes = (size_t)io->is.n * io->is.c;
    for (size_t p = 0; p < planes; p++) {
        const float *x = io->x + p * nn_shape_plane(&io->is);
        float *y = io->y + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++)
            for (uint32_t ox = 0; ox < io->os.w; ox++) {
                const float *xw = x + (size_t)oy * d->stride * W + (size_t)ox * d->stride;
                float s = 0.0f;
                for (uint32_t i = 0; i < d->kh; i++)
                    for (uint32_t j = 0; j < d->kw; j++)
                        s += xw[(size_t)i * W + j];
                y[(size_t)oy * io->os.w + ox] = s * inv;
            }
    }
}

static void avgpool_backward(const struct nn_io *io)
{
    if (!io->dx)
        return;
    const struct nn_layer_desc *d = io->d;
    uint32_t W = io->is.w;
    float inv = 1.0f / (float)(d->kh * d->kw);
    size_t planes = (size_t)io->is.n * io->is.c;
    memset(io->dx, 0, nn_shape_count(&io->is) * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        float *dx = io->dx + p * nn_shape_plane(&io->is);
        const float *dy = io->dy + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++)
            for (uint32_t ox = 0; ox < io->os.w; ox++) {
                float *dxw = dx + (size_t)oy * d->stride * W + (size_t)ox * d->stride;
                float g = dy[(size_t)oy * io->os.w + ox] * inv;
                for (uint32_t i = 0; i < d->kh; i++)
                    for (uint32_t j = 0; j < d->kw; j++)
                        dxw[(size_t)i * W + j] += g;
            }
    }
}

/* Offset of the first maximum of a window, relative to its corner. */
static size_t window_argmax(const float *xw, uint32_t kh, uint32_t kw, uint32_t W)
{
    size_t best = 0;
    for (uint32_t i = 0; i < kh; i++)
        for (uint32_t j = 0; j < kw; j++) {
            size_t o = (size_t)i * W + j;
            if (xw[o] > xw[best])
                best = o;
        }
    return best;
}

static void maxpool_forward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    uint32_t W = io->is.w;
    size_t planes = (size_t)io->is.n * io->is.c;
    for (size_t p = 0; p < planes; p++) {
        const float *x = io->x + p * nn_shape_plane(&io->is);
        float *y = io->y + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++)
            for (uint32_t ox = 0; ox < io->os.w; ox++) {
                const float *xw = x + (size_t)oy * d->stride * W + (size_t)ox * d->stride;
                y[(size_t)oy * io->os.w + ox] = xw[window_argmax(xw, d->kh, d->kw, W)];
            }
    }
}

static void maxpool_backward(const struct nn_io *io)
{
    if (!io->dx)
        return;
    const struct nn_layer_desc *d = io->d;
    uint32_t W = io->is.w;
    size_t planes = (size_t)io->is.n * io->is.c;
    memset(io->dx, 0, nn_shape_count(&io->is) * sizeof(float));
    for (size_t p = 0; p < planes; p++) {
        const float *x = io->x + p * nn_shape_plane(&io->is);
        float *dx = io->dx + p * nn_shape_plane(&io->is);
        const float *dy = io->dy + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++)
            for (uint32_t ox = 0; ox < io->os.w; ox++) {
                size_t corner = (size_t)oy * d->stride * W + (size_t)ox * d->stride;
                dx[corner + window_argmax(x + corner, d->kh, d->kw, W)] +=
                    dy[(size_t)oy * io->os.w + ox];
            }
    }
}

const struct nn_op nn_op_avgpool = {
    .check = pool_check,
    .shape = pool_shape,
    .nparams = zero_params,
    .mem = no_mem,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

const struct nn_op nn_op_maxpool = {
    .check = pool_check,
    .shape = pool_shape,
    .nparams = zero_params,
    .mem = no_mem,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

const struct nn_op *nn_float_op(uint32_t type)
{
    switch (type) {
    case NN_CONV2D:
        return &nn_op_conv2d;
    case NN_TCONV2D:
        return &nn_op_tconv2d;
    case NN_UPSAMPLE:
        return &nn_op_upsample;
    case NN_RELU:
        return &nn_op_relu;
    case NN_LRELU:
        return &nn_op_lrelu;
    case NN_AVGPOOL:
        return &nn_op_avgpool;
    case NN_MAXPOOL:
        return &nn_op_maxpool;
    case NN_SE:
        return &nn_op_se;
    case NN_MHSA:
        return &nn_op_mhsa;
    default:
        return NULL;
    }
}
