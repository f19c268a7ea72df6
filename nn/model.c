// SPDX-License-Identifier: MIT
/*
 * Model building: an array of layer descriptors in pre-order (a residual block right before
 * the layers inside it, its span counting them) and one float array holding every layer's
 * parameters as consecutive slices.
 *
 * The flat pre-order array is what a model file will store, and it makes walking the tree an
 * index loop; the cost is that a block's extent is only known once nn_model_end() closes it, so
 * layers are appended strictly in order and a model is frozen by nn_model_init().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

int nn_model_new(uint32_t in_ch, struct nn_model **out)
{
    if (!out || in_ch == 0)
        return -EINVAL;
    if (in_ch > NN_MAX_CHANNELS)
        return -EFBIG;
    struct nn_model *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->in_ch = in_ch;
    m->cur_ch = in_ch;
    *out = m;
    return 0;
}

void nn_model_free(struct nn_model *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m->params);
    free(m);
}

int nn_model_add(struct nn_model *m, const struct nn_layer_desc *d)
{
    if (!m || !d || m->ready)
        return -EINVAL;
    if (m->nlayers >= NN_MAX_LAYERS)
        return -EFBIG;
    struct nn_layer_desc nd = *d;
    nd.in_ch = m->cur_ch;
    nd.span = 0;
    uint32_t out_ch = m->cur_ch;
    if (nd.type == NN_RESIDUAL) {
        if (nd.out_ch || nd.kh || nd.kw || nd.stride || nd.pad || nd.bias || nd.factor ||
            nd.hidden || nd.heads || nd.slope != 0.0f)
            return -EINVAL;
        if (m->depth >= NN_MAX_DEPTH)
            return -EFBIG;
    } else {
        const struct nn_op *op = nn_float_op(nd.type);
        if (!op)
            return -EINVAL;
        int ret = op->check(&nd, &out_ch);
        if (ret)
            return ret;
    }
    if (m->nlayers == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        struct nn_layer *l = realloc(m->layers, cap * sizeof(*l));
        if (!l)
            return -ENOMEM;
        m->layers = l;
        m->cap = cap;
    }
    struct nn_layer *l = &m->layers[m->nlayers];
    memset(l, 0, sizeof(*l));
    l->d = nd;
    if (nd.type == NN_RESIDUAL)
        m->open[m->depth++] = m->nlayers;
    else
        l->nparams = nn_float_op(nd.type)->nparams(&nd);
    m->nlayers++;
    m->cur_ch = out_ch;
    return 0;
}

int nn_model_end(struct nn_model *m)
{
    if (!m || m->ready || m->depth == 0)
        return -EINVAL;
    size_t at = m->open[m->depth - 1];
    struct nn_layer *l = &m->layers[at];
    if (m->nlayers == at + 1 || m->cur_ch != l->d.in_ch)
        return -EINVAL;
    l->d.span = (uint32_t)(m->nlayers - at - 1);
    m->depth--;
    return 0;
}

int nn_model_init(struct nn_model *m, uint64_t seed)
{
    if (!m || m->ready || m->depth != 0 || m->nlayers == 0)
        return -EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        m->layers[i].param_off = total;
        if (__builtin_add_overflow(total, m->layers[i].nparams, &total))
            return -EFBIG;
    }
    size_t bytes = total;
    if (nn_mul(&bytes, sizeof(float)))
        return -EFBIG;
    float *p = calloc(1, bytes ? bytes : 1);
    if (!p)
        return -ENOMEM;
    struct nn_rng r;
    nn_rng_seed(&r, seed);
    for (size_t i = 0; i < m->nlayers; i++) {
        const struct nn_layer *l = &m->layers[i];
        if (l->nparams)
            nn_float_op(l->d.type)->init(&l->d, p + l->param_off, &r);
    }
    m->params = p;
    m->nparams = total;
    m->ready = 1;
    return 0;
}

uint32_t nn_model_in_channels(const struct nn_model *m)
{
    return m->in_ch;
}

uint32_t nn_model_out_channels(const struct nn_model *m)
{
    return m->cur_ch;
}

size_t nn_model_layer_count(const struct nn_model *m)
{
    return m->nlayers;
}

const struct nn_layer_desc *nn_model_layer(const struct nn_model *m, size_t i)
{
    return i < m->nlayers ? &m->layers[i].d : NULL;
}

float *nn_model_layer_params(struct nn_model *m, size_t i, size_t *count)
{
    if (!m->ready || i >= m->nlayers)
        return NULL;
    if (count)
        *count = m->layers[i].nparams;
    return m->params + m->layers[i].param_off;
}

float *nn_model_params(struct nn_model *m, size_t *count)
{
    if (!m->ready)
        return NULL;
    if (count)
        *count = m->nparams;
    return m->params;
}

size_t nn_model_param_offset(const struct nn_model *m, size_t i)
{
    return i < m->nlayers ? m->layers[i].param_off : m->nparams;
}
