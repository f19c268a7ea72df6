// SPDX-License-Identifier: MIT
/*
 * Execution contexts: memory planning for one input shape, and the forward and backward
 * drivers that walk the layer tree.
 *
 * Planning assigns every activation to a buffer ("slot"). A training context gives each
 * activation its own slot and a gradient buffer of the same size, because backward reads them
 * all. An inference context reuses slots greedily: a layer writes into the first slot that is
 * neither its input nor the input of an enclosing residual block, and a residual block adds
 * f(x) into x in place, so a model needs at most depth + 2 slots. Layer memory that lives from
 * forward to backward (attention matrices, gates) is per layer when training and one shared
 * region otherwise. Everything sits in one allocation made here; the passes allocate nothing.
 * An inference context also folds a ReLU or LeakyReLU that follows a convolution into it (the
 * same arithmetic, one pass over the output less), and with NN_CTX_FAST (nn_int.h) lets its
 * convolutions skip the column matrix.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#define NONE SIZE_MAX
#define ALIGN 16 /* floats: 64-byte alignment of every region inside the allocation */

struct nn_node {
    struct nn_shape is, os;
    uint32_t in_act, out_act, inner_out; /* inner_out: residual, the activation f(x) */
    size_t prev;                         /* previous layer of the same sequence, or NONE */
    size_t last_child;                   /* residual: last layer of its sequence */
    size_t aux_size;
    float *aux;
    uint32_t act;  /* inference, conv2d and tconv2d: the rectifier after it is done here */
    uint32_t skip; /* inference: a rectifier done by the layer before it */
};

struct nn_ctx {
    const struct nn_model *m;
    int train, fast, forwarded;
    struct nn_node *nodes;
    uint32_t nact, out_act;
    size_t last; /* last top-level layer */
    struct nn_shape *ashape;
    float **act, **dact;
    float *scratch, *grads;
    void *mem;
    size_t bytes;
};

struct planner {
    struct nn_ctx *c;
    struct nn_plan p;
    size_t scratch, aux_shared;
};

static int same_shape(const struct nn_shape *a, const struct nn_shape *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

static int plan_seq(struct planner *pl, size_t first, size_t end, uint32_t in, uint32_t *out,
                    size_t *last)
{
    struct nn_ctx *c = pl->c;
    const struct nn_model *m = c->m;
    uint32_t cur = in;
    size_t prev = NONE;
    int ret;
    for (size_t i = first; i < end; i += 1 + m->layers[i].d.span) {
        const struct nn_layer_desc *d = &m->layers[i].d;
        struct nn_node *nd = &c->nodes[i];
        nd->prev = prev;
        prev = i;
        nd->in_act = cur;
        nd->is = c->ashape[cur];
        if (d->type == NN_RESIDUAL) {
            uint32_t inner;
            pl->p.keep[pl->p.nkeep++] = pl->p.act_slot[cur];
            ret = plan_seq(pl, i + 1, i + 1 + d->span, cur, &inner, &nd->last_child);
            pl->p.nkeep--;
            if (ret)
                return ret;
            if (!same_shape(&c->ashape[inner], &nd->is))
                return -EINVAL;
            nd->inner_out = inner;
            nd->os = nd->is;
            nd->out_act = nn_plan_act(&pl->p, &nd->os, UINT32_MAX,
                                      c->train ? UINT32_MAX : pl->p.act_slot[cur]);
        } else {
            const struct nn_op *op = nn_float_op(d->type);
            size_t aux, scratch;
            size_t fast = 0;
            if ((ret = op->shape(d, &nd->is, &nd->os)) || (ret = nn_shape_ok(&nd->os)) ||
                (ret = op->mem(d, &nd->is, &nd->os, c->train, &aux, &scratch)) ||
                (c->fast && (ret = nn_conv_fast_mem(d, &nd->is, &nd->os, &fast))))
                return ret;
            scratch = scratch > fast ? scratch : fast;
            nd->aux_size = aux;
            if (pl->scratch < scratch)
                pl->scratch = scratch;
            if (!c->train && pl->aux_shared < aux)
                pl->aux_shared = aux;
            nd->out_act = nn_plan_act(&pl->p, &nd->os, pl->p.act_slot[cur], UINT32_MAX);
            /* A rectifier right after a convolution is applied by the convolution when nothing
             * needs the value before it (no backward pass): one pass over the output less. */
            size_t nx = i + 1;
            uint32_t nt = nx < end ? m->layers[nx].d.type : 0;
            if (!c->train && (d->type == NN_CONV2D || d->type == NN_TCONV2D) &&
                (nt == NN_RELU || nt == NN_LRELU)) {
                struct nn_node *rn = &c->nodes[nx];
                nd->act = 1;
                rn->skip = 1;
                rn->prev = i;
                rn->is = rn->os = nd->os;
                rn->in_act = rn->out_act = nd->out_act;
                prev = nx;
                i = nx;
            }
        }
        cur = nd->out_act;
    }
    *out = cur;
    *last = prev;
    return 0;
}

int nn_ctx_new(const struct nn_model *m, uint32_t n, uint32_t h, uint32_t w, unsigned flags,
               struct nn_ctx **out)
{
    struct nn_ctx *c = NULL;
    struct planner pl = {0};
    size_t *slot_off = NULL, *dslot_off = NULL, *aux_off = NULL;
    int ret;
    if (!m || !out || !m->ready || (flags & ~(NN_CTX_TRAIN | NN_CTX_FAST)) ||
        ((flags & NN_CTX_TRAIN) && (flags & NN_CTX_FAST)))
        return -EINVAL;
    struct nn_shape in = {n, m->in_ch, h, w};
    if ((ret = nn_shape_ok(&in)))
        return ret;
    size_t nl = m->nlayers, na = nl + 1;
    ret = -ENOMEM;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto out;
    c->m = m;
    c->train = !!(flags & NN_CTX_TRAIN);
    c->fast = !!(flags & NN_CTX_FAST);
    c->nodes = calloc(nl, sizeof(*c->nodes));
    c->ashape = calloc(na, sizeof(*c->ashape));
    c->act = calloc(na, sizeof(*c->act));
    c->dact = calloc(na, sizeof(*c->dact));
    pl.p.act_slot = calloc(na, sizeof(*pl.p.act_slot));
    pl.p.slot_size = calloc(na, sizeof(*pl.p.slot_size));
    slot_off = calloc(na, sizeof(*slot_off));
    dslot_off = calloc(na, sizeof(*dslot_off));
    aux_off = calloc(nl, sizeof(*aux_off));
    if (!c->nodes || !c->ashape || !c->act || !c->dact || !pl.p.act_slot || !pl.p.slot_size ||
        !slot_off || !dslot_off || !aux_off)
        goto out;
    pl.c = c;
    pl.p.nact = &c->nact;
    pl.p.ashape = c->ashape;
    pl.p.own = c->train;
    pl.p.sized = 1;
    nn_plan_act(&pl.p, &in, UINT32_MAX, UINT32_MAX);
    if ((ret = plan_seq(&pl, 0, nl, 0, &c->out_act, &c->last)))
        goto out;

    /* Lay out one allocation: slots, gradient slots, layer memory, scratch, grads. */
    size_t total = 0, shared_off = 0, scratch_off = 0, grads_off = 0;
    for (uint32_t s = 0; s < pl.p.nslot; s++)
        if ((ret = nn_plan_reserve(&total, pl.p.slot_size[s], ALIGN, &slot_off[s])))
            goto out;
    if (c->train) {
        for (uint32_t s = 0; s < pl.p.nslot; s++)
            if ((ret = nn_plan_reserve(&total, pl.p.slot_size[s], ALIGN, &dslot_off[s])))
                goto out;
        for (size_t i = 0; i < nl; i++)
            if ((ret = nn_plan_reserve(&total, c->nodes[i].aux_size, ALIGN, &aux_off[i])))
                goto out;
        if ((ret = nn_plan_reserve(&total, m->nparams, ALIGN, &grads_off)))
            goto out;
    } else if ((ret = nn_plan_reserve(&total, pl.aux_shared, ALIGN, &shared_off))) {
        goto out;
    }
    size_t slack;
    if ((ret = nn_plan_reserve(&total, pl.scratch, ALIGN, &scratch_off)) ||
        (ret = nn_plan_reserve(&total, ALIGN, ALIGN, &slack)))
        goto out;
    size_t bytes = total;
    if ((ret = nn_mul(&bytes, sizeof(float))))
        goto out;
    ret = -ENOMEM;
    /* Gradients start at zero; an inference pass writes every buffer before reading it, and
     * clearing megabytes on each plan (one per encoded image) costs more than some passes. */
    c->mem = c->train ? calloc(1, bytes) : malloc(bytes);
    if (!c->mem)
        goto out;
    c->bytes = bytes;
    /* malloc aligns to 16 bytes; shift the base so region offsets give 64-byte alignment. */
    float *base = (float *)c->mem;
    base += (ALIGN - ((uintptr_t)base / sizeof(float)) % ALIGN) % ALIGN;
    for (uint32_t a = 0; a < c->nact; a++)
        c->act[a] = base + slot_off[pl.p.act_slot[a]];
    if (c->train) {
        for (uint32_t a = 0; a < c->nact; a++)
            c->dact[a] = base + dslot_off[pl.p.act_slot[a]];
        for (size_t i = 0; i < nl; i++) {
            c->nodes[i].aux = base + aux_off[i];
            /* f(x) gets the gradient of x + f(x) unchanged: share the buffer. Pre-order visits
             * an outer block before the blocks inside it, so chains resolve. */
            if (m->layers[i].d.type == NN_RESIDUAL)
                c->dact[c->nodes[i].inner_out] = c->dact[c->nodes[i].out_act];
        }
        c->grads = base + grads_off;
    } else {
        for (size_t i = 0; i < nl; i++)
            c->nodes[i].aux = base + shared_off;
    }
    c->scratch = base + scratch_off;
    *out = c;
    c = NULL;
    ret = 0;
out:
    free(aux_off);
    free(dslot_off);
    free(slot_off);
    free(pl.p.slot_size);
    free(pl.p.act_slot);
    nn_ctx_free(c);
    return ret;
}

void nn_ctx_free(struct nn_ctx *c)
{
    if (!c)
        return;
    free(c->mem);
    free(c->dact);
    free(c->act);
    free(c->ashape);
    free(c->nodes);
    free(c);
}

const struct nn_model *nn_ctx_model(const struct nn_ctx *c)
{
    return c->m;
}

size_t nn_ctx_bytes(const struct nn_ctx *c)
{
    return c->bytes;
}

void nn_ctx_out_shape(const struct nn_ctx *c, struct nn_tensor *shape)
{
    const struct nn_shape *s = &c->ashape[c->out_act];
    nn_tensor_packed(shape, NULL, s->n, s->c, s->h, s->w);
}

static void run_seq(struct nn_ctx *c, size_t first, size_t end)
{
    const struct nn_model *m = c->m;
    for (size_t i = first; i < end; i += 1 + m->layers[i].d.span) {
        const struct nn_layer *l = &m->layers[i];
        const struct nn_node *nd = &c->nodes[i];
        if (nd->skip)
            continue;
        if (l->d.type == NN_RESIDUAL) {
            run_seq(c, i + 1, i + 1 + l->d.span);
            const float *x = c->act[nd->in_act], *f = c->act[nd->inner_out];
            float *y = c->act[nd->out_act];
            size_t count = nn_shape_count(&nd->os);
            for (size_t j = 0; j < count; j++)
                y[j] = x[j] + f[j];
            continue;
        }
        struct nn_io io = {
            .d = &l->d,
            .w = m->params + l->param_off,
            .is = nd->is,
            .os = nd->os,
            .x = c->act[nd->in_act],
            .y = c->act[nd->out_act],
            .aux = nd->aux,
            .scratch = c->scratch,
            .train = c->train,
            .fast = c->fast,
        };
        if (nd->act) {
            const struct nn_layer_desc *r = &m->layers[i + 1].d;
            io.act = 1;
            io.slope = r->type == NN_LRELU ? r->slope : 0.0f;
        }
        nn_float_op(l->d.type)->forward(&io);
    }
}

int nn_forward(struct nn_ctx *c, const struct nn_tensor *in, struct nn_tensor *out)
{
    const struct nn_shape *s = &c->ashape[0];
    struct nn_tensor dst;
    if (!in || !out || in->n != s->n || in->c != s->c || in->h != s->h || in->w != s->w)
        return -EINVAL;
    nn_tensor_packed(&dst, c->act[0], s->n, s->c, s->h, s->w);
    int ret = nn_tensor_copy(&dst, in);
    if (ret)
        return ret;
    run_seq(c, 0, c->m->nlayers);
    c->forwarded = 1;
    s = &c->ashape[c->out_act];
    nn_tensor_packed(out, c->act[c->out_act], s->n, s->c, s->h, s->w);
    return 0;
}

static void back_seq(struct nn_ctx *c, size_t last, int want_din)
{
    const struct nn_model *m = c->m;
    for (size_t i = last; i != NONE; i = c->nodes[i].prev) {
        const struct nn_layer *l = &m->layers[i];
        const struct nn_node *nd = &c->nodes[i];
        /* The input's gradient is only computed when someone asked for it. */
        int need_dx = nd->in_act != 0 || want_din;
        if (l->d.type == NN_RESIDUAL) {
            back_seq(c, nd->last_child, want_din);
            if (need_dx) {
                float *dx = c->dact[nd->in_act];
                const float *dy = c->dact[nd->out_act];
                size_t count = nn_shape_count(&nd->is);
                for (size_t j = 0; j < count; j++)
                    dx[j] += dy[j];
            }
            continue;
        }
        struct nn_io io = {
            .d = &l->d,
            .w = m->params + l->param_off,
            .dw = c->grads + l->param_off,
            .is = nd->is,
            .os = nd->os,
            .x = c->act[nd->in_act],
            .y = c->act[nd->out_act],
            .dy = c->dact[nd->out_act],
            .dx = need_dx ? c->dact[nd->in_act] : NULL,
            .aux = nd->aux,
            .scratch = c->scratch,
            .train = 1,
        };
        nn_float_op(l->d.type)->backward(&io);
    }
}

int nn_backward(struct nn_ctx *c, const float *dout, struct nn_tensor *din)
{
    if (!c->train || !c->forwarded || !dout)
        return -EINVAL;
    float *g = c->dact[c->out_act];
    if (dout != g)
        memcpy(g, dout, nn_shape_count(&c->ashape[c->out_act]) * sizeof(float));
    back_seq(c, c->last, din != NULL);
    if (din) {
        const struct nn_shape *s = &c->ashape[0];
        nn_tensor_packed(din, c->dact[0], s->n, s->c, s->h, s->w);
    }
    return 0;
}

float *nn_ctx_out_grad(struct nn_ctx *c)
{
    return c->train ? c->dact[c->out_act] : NULL;
}

float *nn_ctx_grads(struct nn_ctx *c, size_t *count)
{
    if (!c->train)
        return NULL;
    if (count)
        *count = c->m->nparams;
    return c->grads;
}

void nn_ctx_zero_grads(struct nn_ctx *c)
{
    if (c->train && c->m->nparams)
        memset(c->grads, 0, c->m->nparams * sizeof(float));
}
