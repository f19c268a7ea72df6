// SPDX-License-Identifier: MIT
/*
 * Integer-exact inference: quantised models (checking and preparing them), execution contexts
 * planned for one input shape, and the integer layer kernels. The arithmetic of every layer is
 * specified in nn/nn.h; what this file adds is how it is laid out.
 *
 * The trade-off is exactness over speed where the two conflict: every sum is an integer sum
 * whose bound is proved (by the loader for weights, by construction for attention), every
 * rounding is an explicit integer operation, and no float, libm or BLAS call happens during
 * a pass, so nothing depends on the machine. Speed comes from the integer GEMM (qgemm.c):
 * convolutions of stride 1 and transposed convolutions run as phase GEMMs that read their input
 * in place (qconv.c), which is why the planner here gives each activation a layout (channel
 * pairs with a border where only such layers read it, packed NCHW elsewhere) and folds a
 * LeakyReLU, and the sum of a residual block, into the layer before; strided convolutions are
 * im2col bands times int16 weights; self-attention runs in blocks of query rows so that a
 * context needs O(T) memory, not O(T^2).
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#define QNONE SIZE_MAX
#define Q_BUDGET (1u << 20) /* elements of an im2col band or a column block */
#define Q_ALIGN 32          /* int16 elements: 64-byte alignment of every region */

/* ---- model ---- */

int32_t nn_q_qk_limit(uint32_t d)
{
    int64_t q = (int64_t)sqrt((double)INT32_MAX / (d ? d : 1));
    while (q > 0 && q * q * (int64_t)d > INT32_MAX)
        q--;
    while ((q + 1) * (q + 1) * (int64_t)d <= INT32_MAX)
        q++;
    return q > NN_Q_MAX ? NN_Q_MAX : (int32_t)q;
}

int nn_qlayer_counts(const struct nn_layer_desc *d, size_t *nw, size_t *nb, size_t *nk, size_t *nws)
{
    size_t C = d->in_ch, w = 0, b = 0, k = 0, ws = 0;
    switch (d->type) {
    case NN_CONV2D:
    case NN_TCONV2D:
        w = (size_t)d->out_ch * C * d->kh * d->kw;
        b = d->bias ? d->out_ch : 0;
        k = 2 * (size_t)d->out_ch;
        ws = d->out_ch;
        break;
    case NN_LRELU:
        k = 2;
        break;
    case NN_RESIDUAL:
        k = 4;
        break;
    case NN_SE:
        w = 2 * (size_t)d->hidden * C;
        b = (size_t)d->hidden + C;
        k = 2 * (size_t)d->hidden + 2 * C + NN_Q_LUT;
        ws = (size_t)d->hidden + C;
        break;
    case NN_MHSA:
        w = 4 * C * C;
        b = 4 * C;
        k = 8 * C + 6 + NN_Q_LUT;
        ws = 4 * C;
        break;
    case NN_UPSAMPLE:
    case NN_RELU:
    case NN_AVGPOOL:
    case NN_MAXPOOL:
        break;
    default:
        return -EINVAL;
    }
    *nw = w;
    *nb = b;
    *nk = k;
    *nws = ws;
    return 0;
}

struct nn_qmodel *nn_qmodel_alloc(size_t n)
{
    struct nn_qmodel *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->layers = calloc(n ? n : 1, sizeof(*q->layers));
    if (!q->layers) {
        free(q);
        return NULL;
    }
    q->nlayers = n;
    return q;
}

void nn_qmodel_free(struct nn_qmodel *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nlayers; i++) {
        struct nn_qlayer *l = &q->layers[i];
        free(l->w);
        free(l->b);
        free(l->k);
        free(l->ws);
        free(l->a);
        nn_qconv_free(l->conv);
    }
    free(q->layers);
    free(q);
}

uint32_t nn_qmodel_in_channels(const struct nn_qmodel *q)
{
    return q->in_ch;
}

uint32_t nn_qmodel_out_channels(const struct nn_qmodel *q)
{
    return q->out_ch;
}

size_t nn_qmodel_layer_count(const struct nn_qmodel *q)
{
    return q->nlayers;
}

const struct nn_layer_desc *nn_qmodel_layer(const struct nn_qmodel *q, size_t i)
{
    return i < q->nlayers ? &q->layers[i].d : NULL;
}

float nn_qmodel_in_scale(const struct nn_qmodel *q)
{
    return q->in_scale;
}

/* The output is the last top-level layer's. */
static size_t last_top(const struct nn_qmodel *q)
{
    size_t last = 0;
    for (size_t i = 0; i < q->nlayers; i += 1 + q->layers[i].d.span)
        last = i;
    return last;
}

float nn_qmodel_out_scale(const struct nn_qmodel *q)
{
    return q->layers[last_top(q)].out_scale;
}

int nn_qmodel_quantize_input(const struct nn_qmodel *q, const struct nn_tensor *x, int16_t *dst)
{
    if (!q || !x || !x->data || !dst || x->c != q->in_ch)
        return -EINVAL;
    size_t i = 0;
    for (uint32_t n = 0; n < x->n; n++)
        for (uint32_t c = 0; c < x->c; c++)
            for (uint32_t h = 0; h < x->h; h++)
                for (uint32_t w = 0; w < x->w; w++) {
                    double v = nearbyint((double)*nn_tensor_at(x, n, c, h, w) / q->in_scale);
                    dst[i++] = (int16_t)(v < NN_Q_MIN   ? NN_Q_MIN
                                         : v > NN_Q_MAX ? NN_Q_MAX
                                         : v == v       ? v
                                                        : 0);
                }
    return 0;
}

void nn_qmodel_dequantize(const struct nn_qmodel *q, const int16_t *src, size_t count, float *dst)
{
    float s = nn_qmodel_out_scale(q);
    for (size_t i = 0; i < count; i++)
        dst[i] = (float)src[i] * s;
}

/* ---- checking a quantised model ---- */

static int rq_ok(const int32_t *k, int allow_negative)
{
    return k[1] >= 1 && k[1] <= 62 && (k[0] >= 0 || (allow_negative && k[0] > INT32_MIN));
}

static int rq_all_ok(const int32_t *m, const int32_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int32_t k[2] = {m[i], s[i]};
        if (!rq_ok(k, 0))
            return 0;
    }
    return 1;
}

static int table_ok(const int32_t *t)
{
    for (size_t i = 0; i < NN_Q_LUT; i++)
        if (t[i] < 0 || t[i] > NN_Q_ONE)
            return 0;
    return 1;
}

static int scales_ok(const float *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(s[i] > 0.0f && s[i] <= 3.0e38f))
            return 0;
    return 1;
}

/* Row r of a matrix: entries w[r * rs + j * cs], j < cols. Every sum of products with inputs
 * of magnitude <= 32768, plus the bias, must fit int32 in any order. */
static int rows_bounded(const int8_t *w, size_t rows, size_t cols, size_t rs, size_t cs,
                        const int32_t *bias)
{
    for (size_t r = 0; r < rows; r++) {
        int64_t l1 = 0;
        for (size_t j = 0; j < cols; j++) {
            int v = w[r * rs + j * cs];
            l1 += v < 0 ? -v : v;
        }
        int64_t b = bias ? bias[r] : 0;
        if (l1 * 32768 + (b < 0 ? -b : b) > NN_Q_ACC_MAX)
            return 0;
    }
    return 1;
}

static int weights_in_range(const int8_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (w[i] < -NN_Q_WMAX)
            return 0;
    return 1;
}

/* Copy rows x cols of int8 (element (r, j) at w[r * rs + j * cs]) into a padded int16 matrix. */
static int16_t *widen(const int8_t *w, size_t rows, size_t cols, size_t rs, size_t cs, size_t *prow,
                      size_t *pcol)
{
    size_t R = nn_q_round(rows, NN_QMR), Cc = nn_q_round(cols, 2);
    size_t count = R * Cc;
    int16_t *a = calloc(count ? count : 1, sizeof(*a));
    if (!a)
        return NULL;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++)
            a[r * Cc + j] = w[r * rs + j * cs];
    *prow = R;
    *pcol = Cc;
    return a;
}

static int check_layer(struct nn_qlayer *l)
{
    const struct nn_layer_desc *d = &l->d;
    size_t C = d->in_ch, Co = d->out_ch, KK = (size_t)d->kh * d->kw;
    if (!scales_ok(&l->out_scale, 1) || !scales_ok(l->ws, l->nws) || !weights_in_range(l->w, l->nw))
        return -EINVAL;
    switch (d->type) {
    case NN_CONV2D:
        if (!rq_all_ok(l->k, l->k + Co, Co) || !rows_bounded(l->w, Co, C * KK, C * KK, 1, l->b))
            return -EINVAL;
        if (nn_qconv_implicit(d))
            return nn_qconv_prepare(l);
        l->a = widen(l->w, Co, C * KK, C * KK, 1, &l->arows, &l->acols);
        return l->a ? 0 : -ENOMEM;
    case NN_TCONV2D:
        /* Output channel o sums W[c][o][ki][kj] over c, ki, kj (a subset per pixel). */
        if (!rq_all_ok(l->k, l->k + Co, Co))
            return -EINVAL;
        for (size_t o = 0; o < Co; o++) {
            int64_t l1 = 0;
            for (size_t c = 0; c < C; c++)
                for (size_t t = 0; t < KK; t++) {
                    int v = l->w[(c * Co + o) * KK + t];
                    l1 += v < 0 ? -v : v;
                }
            int64_t b = l->b ? l->b[o] : 0;
            if (l1 * 32768 + (b < 0 ? -b : b) > NN_Q_ACC_MAX)
                return -EINVAL;
        }
        return nn_qconv_prepare(l);
    case NN_LRELU:
        return rq_ok(l->k, 1) ? 0 : -EINVAL;
    case NN_RESIDUAL:
        return rq_ok(l->k, 0) && rq_ok(l->k + 2, 0) ? 0 : -EINVAL;
    case NN_SE: {
        size_t Hd = d->hidden;
        const int32_t *k = l->k;
        if (!rq_all_ok(k, k + Hd, Hd) || !rq_all_ok(k + 2 * Hd, k + 2 * Hd + C, C) ||
            !table_ok(k + 2 * Hd + 2 * C) || !rows_bounded(l->w, Hd, C, C, 1, l->b) ||
            !rows_bounded(l->w + Hd * C, C, Hd, Hd, 1, l->b + Hd))
            return -EINVAL;
        return 0;
    }
    case NN_MHSA: {
        const int32_t *k = l->k, *t = k + 6 * C;
        uint32_t D = d->in_ch / d->heads;
        for (int i = 0; i < 3; i++)
            if (!rq_all_ok(k + 2 * C * i, k + 2 * C * i + C, C))
                return -EINVAL;
        /* t: Me, Se, qk_max, Mo, So; then Mout[C], Sout[C], table. */
        if (!rq_ok(t, 0) || t[2] < 1 || t[2] > nn_q_qk_limit(D) || !rq_ok(t + 3, 0) ||
            !rq_all_ok(t + 5, t + 5 + C, C) || !table_ok(t + 5 + 2 * C))
            return -EINVAL;
        for (int i = 0; i < 4; i++)
            if (!rows_bounded(l->w + i * C * C, C, C, C, 1, l->b + i * C))
                return -EINVAL;
        size_t R = nn_q_round(C, NN_QMR), Cc = nn_q_round(C, 2);
        l->a = calloc(4 * R * Cc, sizeof(*l->a));
        if (!l->a)
            return -ENOMEM;
        for (int i = 0; i < 4; i++)
            for (size_t r = 0; r < C; r++)
                for (size_t j = 0; j < C; j++)
                    l->a[i * R * Cc + r * Cc + j] = l->w[i * C * C + r * C + j];
        l->arows = R;
        l->acols = Cc;
        return 0;
    }
    default:
        return 0;
    }
}

/* Descriptors: the float engine's checks, the residual structure, the channel chain. */
static int check_seq(struct nn_qmodel *q, size_t first, size_t end, uint32_t in_ch, int depth,
                     uint32_t *out_ch)
{
    uint32_t cur = in_ch;
    if (first >= end)
        return -EINVAL;
    for (size_t i = first; i < end;) {
        struct nn_qlayer *l = &q->layers[i];
        struct nn_layer_desc *d = &l->d;
        size_t nw, nb, nk, nws;
        int ret;
        if (d->in_ch != cur)
            return -EINVAL;
        if (d->type == NN_RESIDUAL) {
            uint32_t inner;
            struct nn_layer_desc z = {.type = NN_RESIDUAL, .in_ch = d->in_ch, .span = d->span};
            /* 13 four-byte fields, no padding; the float compares bit for bit on purpose */
            // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c)
            if (memcmp(&z, d, sizeof(z)) != 0 || d->span == 0 || d->span > end - i - 1)
                return -EINVAL;
            if (depth >= NN_MAX_DEPTH)
                return -EFBIG;
            if ((ret = check_seq(q, i + 1, i + 1 + d->span, cur, depth + 1, &inner)))
                return ret;
            if (inner != cur)
                return -EINVAL;
        } else {
            const struct nn_op *op = nn_float_op(d->type);
            uint32_t oc = cur;
            if (!op || d->span)
                return -EINVAL;
            if ((ret = op->check(d, &oc)))
                return ret;
            cur = oc;
        }
        if ((ret = nn_qlayer_counts(d, &nw, &nb, &nk, &nws)))
            return ret;
        if (nw != l->nw || nb != l->nb || nk != l->nk || nws != l->nws)
            return -EINVAL;
        if ((ret = check_layer(l)))
            return ret;
        i += 1 + d->span;
    }
    *out_ch = cur;
    return 0;
}

int nn_qmodel_finish(struct nn_qmodel *q)
{
    if (!q || q->nlayers == 0 || q->in_ch == 0 || !scales_ok(&q->in_scale, 1))
        return -EINVAL;
    if (q->nlayers > NN_MAX_LAYERS)
        return -EFBIG;
    if (q->in_ch > NN_MAX_CHANNELS)
        return -EFBIG;
    for (size_t i = 0; i < q->nlayers; i++) {
        struct nn_qlayer *l = &q->layers[i];
        free(l->a);
        l->a = NULL;
        nn_qconv_free(l->conv);
        l->conv = NULL;
        /* Kernels test for absent arrays (a conv without bias) by NULL. */
        if (l->nb == 0) {
            free(l->b);
            l->b = NULL;
        }
    }
    return check_seq(q, 0, q->nlayers, q->in_ch, 0, &q->out_ch);
}

/* ---- context planning ---- */

struct qnode {
    struct nn_shape is, os;
    uint32_t in_act, out_act, inner_out;
    uint32_t skip;  /* a LeakyReLU done by the layer before it */
    size_t lrelu;   /* conv, tconv: the LeakyReLU it does, or QNONE */
    size_t resid;   /* conv, tconv: the residual block whose sum it completes, or QNONE */
    uint32_t fused; /* residual: its sum is done by its last layer */
};

/* Layout of an activation (nn/nn_int.h): packed NCHW, or channel pairs with a border. */
struct qlay {
    uint32_t pair, ph, pw;
};

struct nn_qctx {
    const struct nn_qmodel *q;
    enum nn_qkern kern;
    struct qnode *nodes;
    uint32_t nact, out_act;
    struct nn_shape *ashape;
    struct qlay *alay;
    int16_t **act;
    int16_t *s16;
    int32_t *s32;
    ptrdiff_t *work;
    void *mem;
    size_t bytes;
};

struct qplan {
    struct nn_qctx *c;
    struct nn_plan p;
    size_t s16, s32, work;
};

/* Convolution band: output rows per band and the packed row length (int16) for a geometry
 * whose column matrix has k rows and `width` columns per output row. */
static void band(size_t k, size_t width, size_t rows_total, size_t *rows, size_t *ldb)
{
    size_t kp = nn_q_round(k, 2), per = kp * width, r = Q_BUDGET / (per ? per : 1);
    if (r < 1)
        r = 1;
    if (r > rows_total)
        r = rows_total;
    *rows = r;
    *ldb = 2 * nn_q_round(r * width, NN_QNR);
}

static struct nn_geom qconv_geom(const struct nn_layer_desc *d, const struct nn_shape *is,
                                 const struct nn_shape *os)
{
    return (struct nn_geom){is->c, is->h, is->w, d->kh, d->kw, d->stride, d->pad, os->h, os->w};
}

/* Attention buffers of one image (int16 offsets and int32 size). */
struct attn_mem {
    size_t q, k, v, o, xb, qa, kb, p, vb, s16, s32, ldt, ldd, lda_p;
};

static struct attn_mem attn_layout(uint32_t C, uint32_t heads, size_t T)
{
    struct attn_mem a;
    size_t D = C / heads, CT = (size_t)C * T, R = NN_Q_ATT_ROWS;
    a.ldt = 2 * nn_q_round(T, NN_QNR);
    a.ldd = 2 * nn_q_round(D, NN_QNR);
    a.lda_p = nn_q_round(T, 2);
    a.q = 0;
    a.k = a.q + nn_q_round(CT, Q_ALIGN);
    a.v = a.k + nn_q_round(CT, Q_ALIGN);
    a.o = a.v + nn_q_round(CT, Q_ALIGN);
    a.xb = a.o + nn_q_round(CT, Q_ALIGN);
    a.qa = a.xb + nn_q_round(nn_q_round(C, 2) / 2 * a.ldt, Q_ALIGN);
    a.kb = a.qa + nn_q_round(R * nn_q_round(D, 2), Q_ALIGN);
    a.p = a.kb + nn_q_round(nn_q_round(D, 2) / 2 * a.ldt, Q_ALIGN);
    a.vb = a.p + nn_q_round(R * a.lda_p, Q_ALIGN);
    a.s16 = a.vb + nn_q_round(a.lda_p / 2 * a.ldd, Q_ALIGN);
    a.s32 = R * T;
    return a;
}

/* Scratch of one layer that does not run as phase GEMMs, in int16 and int32 elements. */
static void layer_scratch(const struct nn_layer_desc *d, const struct nn_shape *is,
                          const struct nn_shape *os, size_t *s16, size_t *s32)
{
    *s16 = *s32 = 0;
    size_t rows, ldb;
    switch (d->type) {
    case NN_CONV2D: {
        size_t k = (size_t)is->c * d->kh * d->kw;
        band(k, os->w, os->h, &rows, &ldb);
        *s16 = nn_q_round(k, 2) / 2 * ldb + ldb;
        return;
    }
    case NN_SE:
        *s32 = 2 * (size_t)is->c + d->hidden;
        return;
    case NN_MHSA: {
        struct attn_mem a = attn_layout(is->c, d->heads, nn_shape_plane(is));
        *s16 = a.s16;
        *s32 = a.s32;
        return;
    }
    default:
        return;
    }
}

/*
 * Plan layers [first, end) of one sequence from activation `in`. Fusions: a LeakyReLU right
 * after a layer that runs as phase GEMMs is done by that layer's store; and when `resid` names
 * the residual block this sequence is the inside of, its last layer, if it runs as phase GEMMs
 * and does not read the block's input x, completes x + f(x) itself, writing over x (slot
 * `xslot`), and *fused says so.
 */
static int plan_seq(struct qplan *pl, size_t first, size_t end, uint32_t in, uint32_t *out,
                    size_t resid, uint32_t xslot, uint32_t *fused)
{
    struct nn_qctx *c = pl->c;
    const struct nn_qmodel *q = c->q;
    uint32_t cur = in;
    int ret;
    *fused = 0;
    for (size_t i = first; i < end; i += 1 + q->layers[i].d.span) {
        const struct nn_layer_desc *d = &q->layers[i].d;
        struct qnode *nd = &c->nodes[i];
        nd->in_act = cur;
        nd->is = c->ashape[cur];
        nd->lrelu = nd->resid = QNONE;
        if (d->type == NN_RESIDUAL) {
            uint32_t inner, x = pl->p.act_slot[cur], f;
            pl->p.keep[pl->p.nkeep++] = x;
            ret = plan_seq(pl, i + 1, i + 1 + d->span, cur, &inner, i, x, &f);
            pl->p.nkeep--;
            if (ret)
                return ret;
            const struct nn_shape *fs = &c->ashape[inner];
            if (fs->n != nd->is.n || fs->c != nd->is.c || fs->h != nd->is.h || fs->w != nd->is.w)
                return -EINVAL;
            nd->inner_out = inner;
            nd->os = nd->is;
            nd->fused = f;
            /* y = x + f(x) is elementwise: written over x. */
            nd->out_act = f ? inner : nn_plan_act(&pl->p, &nd->os, UINT32_MAX, x);
            cur = nd->out_act;
            continue;
        }
        size_t s16 = 0, s32 = 0;
        if ((ret = nn_float_op(d->type)->shape(d, &nd->is, &nd->os)) ||
            (ret = nn_shape_ok(&nd->os)))
            return ret;
        uint32_t force = UINT32_MAX;
        if (nn_qconv_implicit(d)) {
            size_t next = i + 1;
            if (next < end && q->layers[next].d.type == NN_LRELU) {
                nd->lrelu = next;
                next++;
            }
            if (next == end && resid != QNONE && pl->p.act_slot[cur] != xslot) {
                nd->resid = resid;
                force = xslot;
                *fused = 1;
            }
        } else {
            layer_scratch(d, &nd->is, &nd->os, &s16, &s32);
        }
        if (pl->s16 < s16)
            pl->s16 = s16;
        if (pl->s32 < s32)
            pl->s32 = s32;
        nd->out_act = nn_plan_act(&pl->p, &nd->os, pl->p.act_slot[cur], force);
        cur = nd->out_act;
        if (nd->lrelu != QNONE) {
            struct qnode *nl = &c->nodes[nd->lrelu];
            *nl = (struct qnode){nd->os, nd->os, cur, cur, 0, 1, QNONE, QNONE, 0};
            i++;
        }
    }
    *out = cur;
    return 0;
}

/*
 * Layouts: an activation is kept as channel pairs when its producer can write them (the input
 * copy, a layer run as phase GEMMs) and every reader reads them (a layer run as phase GEMMs, or
 * the residual sum such a layer completes); its border is the largest its readers need. A
 * fused residual block writes its output over its input, so the two share one layout.
 */
static int plan_layouts(struct qplan *pl)
{
    struct nn_qctx *c = pl->c;
    const struct nn_qmodel *q = c->q;
    struct qlay *L = c->alay;
    for (uint32_t a = 0; a < c->nact; a++)
        L[a] = (struct qlay){1, 0, 0};
    L[c->out_act].pair = 0;
    for (size_t i = 0; i < q->nlayers; i++) {
        const struct qnode *nd = &c->nodes[i];
        const struct nn_qlayer *l = &q->layers[i];
        if (nd->skip || (l->d.type == NN_RESIDUAL && nd->fused))
            continue;
        if (l->d.type == NN_RESIDUAL) {
            L[nd->in_act].pair = L[nd->inner_out].pair = L[nd->out_act].pair = 0;
        } else if (nn_qconv_implicit(&l->d)) {
            uint32_t ph, pw;
            size_t k2;
            nn_qconv_need(l, &nd->is, &nd->os, &ph, &pw, &k2);
            struct qlay *x = &L[nd->in_act];
            x->ph = ph > x->ph ? ph : x->ph;
            x->pw = pw > x->pw ? pw : x->pw;
            if (pl->work < k2)
                pl->work = k2;
        } else {
            L[nd->in_act].pair = L[nd->out_act].pair = 0;
        }
    }
    /* Residual input and output share a buffer: agree (nested blocks may chain). */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < q->nlayers; i++) {
            const struct qnode *nd = &c->nodes[i];
            if (q->layers[i].d.type != NN_RESIDUAL || !nd->fused)
                continue;
            struct qlay *x = &L[nd->in_act], *y = &L[nd->out_act];
            struct qlay u = {x->pair && y->pair, x->ph > y->ph ? x->ph : y->ph,
                             x->pw > y->pw ? x->pw : y->pw};
            if (memcmp(x, &u, sizeof(u)) != 0 || memcmp(y, &u, sizeof(u)) != 0) {
                *x = *y = u;
                changed = 1;
            }
        }
    }
    /* Slot sizes, and the pair-layout copy of a packed input of a phase-GEMM layer. */
    for (uint32_t a = 0; a < c->nact; a++) {
        size_t count = nn_shape_count(&c->ashape[a]);
        if (L[a].pair && !(count = nn_qpair_count(&c->ashape[a], L[a].ph, L[a].pw)))
            return -EFBIG;
        if (pl->p.slot_size[pl->p.act_slot[a]] < count)
            pl->p.slot_size[pl->p.act_slot[a]] = count;
    }
    for (size_t i = 0; i < q->nlayers; i++) {
        const struct qnode *nd = &c->nodes[i];
        const struct nn_qlayer *l = &q->layers[i];
        if (nd->skip || l->d.type == NN_RESIDUAL || !nn_qconv_implicit(&l->d) || L[nd->in_act].pair)
            continue;
        uint32_t ph, pw;
        size_t k2, count;
        nn_qconv_need(l, &nd->is, &nd->os, &ph, &pw, &k2);
        if (!(count = nn_qpair_count(&nd->is, ph, pw)))
            return -EFBIG;
        if (pl->s16 < count)
            pl->s16 = count;
    }
    return 0;
}

int nn_qctx_new(const struct nn_qmodel *q, uint32_t n, uint32_t h, uint32_t w, struct nn_qctx **out)
{
    struct nn_qctx *c = NULL;
    struct qplan pl = {0};
    size_t *slot_off = NULL;
    int ret;
    if (!q || !out)
        return -EINVAL;
    struct nn_shape in = {n, q->in_ch, h, w};
    if ((ret = nn_shape_ok(&in)))
        return ret;
    size_t nl = q->nlayers, na = nl + 1;
    uint32_t fused;
    ret = -ENOMEM;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto out;
    c->q = q;
    c->kern = nn_qkern_best();
    c->nodes = calloc(nl, sizeof(*c->nodes));
    c->ashape = calloc(na, sizeof(*c->ashape));
    c->alay = calloc(na, sizeof(*c->alay));
    c->act = calloc(na, sizeof(*c->act));
    pl.p.act_slot = calloc(na, sizeof(*pl.p.act_slot));
    pl.p.slot_size = calloc(na, sizeof(*pl.p.slot_size));
    slot_off = calloc(na, sizeof(*slot_off));
    if (!c->nodes || !c->ashape || !c->alay || !c->act || !pl.p.act_slot || !pl.p.slot_size ||
        !slot_off)
        goto out;
    pl.c = c;
    pl.p.nact = &c->nact;
    pl.p.ashape = c->ashape;
    nn_plan_act(&pl.p, &in, UINT32_MAX, UINT32_MAX);
    if ((ret = plan_seq(&pl, 0, nl, 0, &c->out_act, QNONE, UINT32_MAX, &fused)) ||
        (ret = plan_layouts(&pl)))
        goto out;
    size_t total = 0, off16 = 0, off32 = 0, offp = 0, b;
    for (uint32_t s = 0; s < pl.p.nslot; s++) {
        b = pl.p.slot_size[s];
        if ((ret = nn_mul(&b, sizeof(int16_t))) ||
            (ret = nn_plan_reserve(&total, b, 64, &slot_off[s])))
            goto out;
    }
    b = pl.s16;
    if ((ret = nn_mul(&b, sizeof(int16_t))) || (ret = nn_plan_reserve(&total, b, 64, &off16)))
        goto out;
    b = pl.s32;
    if ((ret = nn_mul(&b, sizeof(int32_t))) || (ret = nn_plan_reserve(&total, b, 64, &off32)))
        goto out;
    b = pl.work;
    if ((ret = nn_mul(&b, sizeof(ptrdiff_t))) || (ret = nn_plan_reserve(&total, b, 64, &offp)) ||
        (ret = nn_plan_reserve(&total, 64, 64, &b)))
        goto out;
    /* Not zeroed: every pass writes what it reads (a pair layout its border and slack too), and
     * clearing megabytes on every plan would cost more than some passes. */
    ret = -ENOMEM;
    c->mem = malloc(total);
    if (!c->mem)
        goto out;
    c->bytes = total;
    unsigned char *base = c->mem;
    base += (64 - (uintptr_t)base % 64) % 64;
    for (uint32_t a = 0; a < c->nact; a++)
        c->act[a] = (int16_t *)(void *)(base + slot_off[pl.p.act_slot[a]]);
    c->s16 = (int16_t *)(void *)(base + off16);
    c->s32 = (int32_t *)(void *)(base + off32);
    c->work = (ptrdiff_t *)(void *)(base + offp);
    *out = c;
    c = NULL;
    ret = 0;
out:
    free(slot_off);
    free(pl.p.slot_size);
    free(pl.p.act_slot);
    nn_qctx_free(c);
    return ret;
}

void nn_qctx_free(struct nn_qctx *c)
{
    if (!c)
        return;
    free(c->mem);
    free(c->act);
    free(c->ashape);
    free(c->alay);
    free(c->nodes);
    free(c);
}

size_t nn_qctx_bytes(const struct nn_qctx *c)
{
    return c->bytes;
}

void nn_qctx_out_shape(const struct nn_qctx *c, struct nn_qtensor *shape)
{
    const struct nn_shape *s = &c->ashape[c->out_act];
    *shape = (struct nn_qtensor){NULL, s->n, s->c, s->h, s->w};
}

int nn_qctx_set_kernel(struct nn_qctx *c, enum nn_qkern k)
{
    if (!nn_qkern_supported(k))
        return -EINVAL;
    c->kern = k;
    return 0;
}

/* ---- layer kernels ---- */

struct qio {
    const struct nn_qlayer *l;
    struct nn_shape is, os;
    const int16_t *x;
    int16_t *y;
    int16_t *s16;
    int32_t *s32;
    enum nn_qkern kern;
};

static int16_t sat16(int64_t v)
{
    return (int16_t)(v < NN_Q_MIN ? NN_Q_MIN : v > NN_Q_MAX ? NN_Q_MAX : v);
}

/* floor(a / b), b > 0. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static void q_conv(const struct qio *io)
{
    const struct nn_qlayer *l = io->l;
    const struct nn_layer_desc *d = &l->d;
    struct nn_geom g = qconv_geom(d, &io->is, &io->os);
    uint32_t K = g.c * g.kh * g.kw, Co = io->os.c;
    size_t P = (size_t)g.oh * g.ow, in_sz = (size_t)g.c * g.h * g.w, rows, ldb;
    band(K, g.ow, g.oh, &rows, &ldb);
    int16_t *bmat = io->s16, *tmp = io->s16 + nn_q_round(K, 2) / 2 * ldb;
    struct nn_qepi e = {.sm = (ptrdiff_t)P,
                        .sn = 1,
                        .bias = l->b,
                        .mult = l->k,
                        .shift = l->k + Co,
                        .lo = NN_Q_MIN,
                        .hi = NN_Q_MAX};
    for (uint32_t n = 0; n < io->is.n; n++) {
        const int16_t *xn = io->x + n * in_sz;
        for (uint32_t y0 = 0; y0 < g.oh; y0 += (uint32_t)rows) {
            uint32_t y1 = y0 + rows < g.oh ? y0 + (uint32_t)rows : g.oh;
            nn_qim2col(&g, xn, y0, y1, bmat, ldb, tmp);
            e.y = io->y + n * Co * P + (size_t)y0 * g.ow;
            nn_qgemm(io->kern, Co, K, (y1 - y0) * g.ow, l->a, bmat, ldb, &e);
        }
    }
}

static void q_upsample(const struct qio *io)
{
    uint32_t f = io->l->d.factor, W = io->is.w, Wo = io->os.w;
    size_t planes = (size_t)io->is.n * io->is.c;
    for (size_t p = 0; p < planes; p++) {
        const int16_t *x = io->x + p * nn_shape_plane(&io->is);
        int16_t *y = io->y + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++) {
            const int16_t *xr = x + (size_t)(oy / f) * W;
            int16_t *yr = y + (size_t)oy * Wo;
            for (uint32_t ox = 0; ox < Wo; ox++)
                yr[ox] = xr[ox / f];
        }
    }
}

static void q_relu(const struct qio *io)
{
    size_t count = nn_shape_count(&io->is);
    if (io->l->d.type == NN_RELU) {
        for (size_t i = 0; i < count; i++)
            io->y[i] = (int16_t)(io->x[i] > 0 ? io->x[i] : 0);
        return;
    }
    int32_t m = io->l->k[0], s = io->l->k[1];
    for (size_t i = 0; i < count; i++)
        io->y[i] =
            (int16_t)(io->x[i] >= 0 ? io->x[i] : nn_q_requant(io->x[i], m, s, NN_Q_MIN, NN_Q_MAX));
}

static void q_pool(const struct qio *io)
{
    const struct nn_layer_desc *d = &io->l->d;
    uint32_t W = io->is.w;
    int64_t n = (int64_t)d->kh * d->kw;
    assert(n > 0); /* pool kernels are checked when the model is built or loaded */
    size_t planes = (size_t)io->is.n * io->is.c;
    for (size_t p = 0; p < planes; p++) {
        const int16_t *x = io->x + p * nn_shape_plane(&io->is);
        int16_t *y = io->y + p * nn_shape_plane(&io->os);
        for (uint32_t oy = 0; oy < io->os.h; oy++)
            for (uint32_t ox = 0; ox < io->os.w; ox++) {
                const int16_t *xw = x + (size_t)oy * d->stride * W + (size_t)ox * d->stride;
                int64_t s = 0;
                int16_t mx = xw[0];
                for (uint32_t i = 0; i < d->kh; i++)
                    for (uint32_t j = 0; j < d->kw; j++) {
                        int16_t v = xw[(size_t)i * W + j];
                        s += v;
                        mx = (int16_t)(v > mx ? v : mx);
                    }
                /* Mean rounded half up: floor((2 s + n) / 2n). */
                y[(size_t)oy * io->os.w + ox] =
                    (int16_t)(d->type == NN_MAXPOOL ? mx : sat16(floor_div(2 * s + n, 2 * n)));
            }
    }
}

static void q_se(const struct qio *io)
{
    const struct nn_qlayer *l = io->l;
    uint32_t C = io->is.c, Hd = l->d.hidden;
    size_t P = nn_shape_plane(&io->is);
    if (P == 0) /* no pixel: nothing to average or scale */
        return;
    const int8_t *W1 = l->w, *W2 = l->w + (size_t)Hd * C;
    const int32_t *b1 = l->b, *b2 = l->b + Hd, *M1 = l->k, *S1 = M1 + Hd, *M2 = S1 + Hd,
                  *S2 = M2 + C, *G = S2 + C;
    int32_t *mean = io->s32, *a1 = mean + C, *g = a1 + Hd;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const int16_t *x = io->x + (size_t)n * C * P;
        int16_t *y = io->y + (size_t)n * C * P;
        for (uint32_t c = 0; c < C; c++) {
            int64_t s = 0;
            for (size_t p = 0; p < P; p++)
                s += x[c * P + p];
            mean[c] = sat16(floor_div(2 * s + (int64_t)P, 2 * (int64_t)P));
        }
        for (uint32_t j = 0; j < Hd; j++) {
            int32_t acc = b1[j];
            for (uint32_t c = 0; c < C; c++)
                acc += W1[(size_t)j * C + c] * mean[c];
            a1[j] = nn_q_requant(acc, M1[j], S1[j], 0, NN_Q_MAX);
        }
        for (uint32_t c = 0; c < C; c++) {
            int32_t acc = b2[c];
            for (uint32_t j = 0; j < Hd; j++)
                acc += W2[(size_t)c * Hd + j] * a1[j];
            int32_t u = nn_q_requant(acc, M2[c], S2[c], -NN_Q_LUT, NN_Q_LUT);
            int32_t idx = u + NN_Q_LUT / 2;
            idx = idx < 0 ? 0 : idx >= NN_Q_LUT ? NN_Q_LUT - 1 : idx;
            g[c] = G[idx];
        }
        for (uint32_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++)
                y[c * P + p] = sat16(nn_q_rshift((int64_t)x[c * P + p] * g[c], 15));
    }
}

/* Integer softmax of one row of scores into probabilities (1/2^14 units). */
static void q_softmax_row(const int32_t *s, size_t T, int32_t me, int32_t se, const int32_t *E,
                          int16_t *p, int32_t *e)
{
    int32_t mx = s[0];
    for (size_t i = 1; i < T; i++)
        mx = s[i] > mx ? s[i] : mx;
    int64_t sum = 0;
    for (size_t i = 0; i < T; i++) {
        int64_t dist = (int64_t)mx - s[i];
        if (dist > INT32_MAX)
            dist = INT32_MAX;
        int32_t idx = nn_q_requant(dist, me, se, 0, NN_Q_LUT);
        e[i] = idx < NN_Q_LUT ? E[idx] : 0;
        sum += e[i];
    }
    /* The maximum has distance 0, and E[0] is 1.0 for any table the quantiser makes; a table
     * from a file may hold zeros, so an all-zero row gives zero probabilities. */
    for (size_t i = 0; i < T; i++)
        p[i] = (int16_t)(sum ? (((int64_t)e[i] << NN_Q_PBITS) + sum / 2) / sum : 0);
}

static void q_mhsa(const struct qio *io)
{
    const struct nn_qlayer *l = io->l;
    uint32_t C = io->is.c, H = l->d.heads, D = C / H;
    size_t T = nn_shape_plane(&io->is), CT = (size_t)C * T, R = NN_Q_ATT_ROWS;
    struct attn_mem am = attn_layout(C, H, T);
    const int32_t *k = l->k, *t = k + 6 * C;
    int32_t me = t[0], se = t[1], qk = t[2];
    const int32_t *Mo = t + 3, *So = t + 4, *Mout = t + 5, *Sout = Mout + C, *E = Sout + C;
    size_t wblk = l->arows * l->acols;
    int16_t *Q = io->s16 + am.q, *K = io->s16 + am.k, *V = io->s16 + am.v, *O = io->s16 + am.o;
    int16_t *XB = io->s16 + am.xb, *QA = io->s16 + am.qa, *KB = io->s16 + am.kb;
    int16_t *PA = io->s16 + am.p, *VB = io->s16 + am.vb;
    int32_t *S = io->s32;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const int16_t *x = io->x + n * CT;
        nn_qpack(x, (ptrdiff_t)T, 1, C, (uint32_t)T, XB, am.ldt);
        int16_t *proj[3] = {Q, K, V};
        for (int i = 0; i < 3; i++) {
            int32_t lim = i < 2 ? qk : NN_Q_MAX;
            struct nn_qepi e = {.y = proj[i],
                                .sm = (ptrdiff_t)T,
                                .sn = 1,
                                .bias = l->b + (size_t)i * C,
                                .mult = k + 2 * C * i,
                                .shift = k + 2 * C * i + C,
                                .lo = i < 2 ? -lim : NN_Q_MIN,
                                .hi = lim};
            nn_qgemm(io->kern, C, C, (uint32_t)T, l->a + i * wblk, XB, am.ldt, &e);
        }
        for (uint32_t h = 0; h < H; h++) {
            size_t off = (size_t)h * D * T, dp = nn_q_round(D, 2);
            nn_qpack(K + off, (ptrdiff_t)T, 1, D, (uint32_t)T, KB, am.ldt);
            nn_qpack(V + off, 1, (ptrdiff_t)T, (uint32_t)T, D, VB, am.ldd);
            for (size_t t0 = 0; t0 < T; t0 += R) {
                size_t rows = T - t0 < R ? T - t0 : R, rp = nn_q_round(rows, NN_QMR);
                for (size_t r = 0; r < rows; r++) {
                    for (uint32_t dd = 0; dd < D; dd++)
                        QA[r * dp + dd] = Q[off + (size_t)dd * T + t0 + r];
                    if (dp > D)
                        QA[r * dp + D] = 0;
                }
                /* The GEMMs read whole blocks of NN_QMR rows and even depths: the context's
                 * memory is not cleared, so the padding is. */
                memset(QA + rows * dp, 0, (rp - rows) * dp * sizeof(int16_t));
                memset(PA + rows * am.lda_p, 0, (rp - rows) * am.lda_p * sizeof(int16_t));
                struct nn_qepi es = {.c = S, .sm = (ptrdiff_t)T, .sn = 1};
                nn_qgemm(io->kern, (uint32_t)rows, D, (uint32_t)T, QA, KB, am.ldt, &es);
                for (size_t r = 0; r < rows; r++) {
                    q_softmax_row(S + r * T, T, me, se, E, PA + r * am.lda_p, S + r * T);
                    if (am.lda_p > T)
                        PA[r * am.lda_p + T] = 0;
                }
                struct nn_qepi eo = {.y = O + off + t0,
                                     .sm = 1,
                                     .sn = (ptrdiff_t)T,
                                     .mult = Mo,
                                     .shift = So,
                                     .uniform = 1,
                                     .lo = NN_Q_MIN,
                                     .hi = NN_Q_MAX};
                nn_qgemm(io->kern, (uint32_t)rows, (uint32_t)T, D, PA, VB, am.ldd, &eo);
            }
        }
        nn_qpack(O, (ptrdiff_t)T, 1, C, (uint32_t)T, XB, am.ldt);
        struct nn_qepi e = {.y = io->y + n * CT,
                            .sm = (ptrdiff_t)T,
                            .sn = 1,
                            .bias = l->b + 3 * (size_t)C,
                            .mult = Mout,
                            .shift = Sout,
                            .lo = NN_Q_MIN,
                            .hi = NN_Q_MAX};
        nn_qgemm(io->kern, C, C, (uint32_t)T, l->a + 3 * wblk, XB, am.ldt, &e);
    }
}

static struct nn_qview view(const struct nn_qctx *c, uint32_t a)
{
    const struct qlay *L = &c->alay[a];
    return (struct nn_qview){c->act[a], c->ashape[a], L->pair, L->ph, L->pw};
}

static void run_seq(struct nn_qctx *c, size_t first, size_t end)
{
    const struct nn_qmodel *q = c->q;
    for (size_t i = first; i < end; i += 1 + q->layers[i].d.span) {
        const struct nn_qlayer *l = &q->layers[i];
        const struct qnode *nd = &c->nodes[i];
        if (nd->skip)
            continue;
        if (l->d.type == NN_RESIDUAL) {
            run_seq(c, i + 1, i + 1 + l->d.span);
            if (nd->fused)
                continue;
            nn_qres_add(c->kern, c->act[nd->out_act], c->act[nd->in_act], c->act[nd->inner_out],
                        nn_shape_count(&nd->os), l->k);
            continue;
        }
        if (nn_qconv_implicit(&l->d)) {
            struct nn_qview in = view(c, nd->in_act), out = view(c, nd->out_act);
            nn_qconv_run(c->kern, l, nd->lrelu != QNONE ? &q->layers[nd->lrelu] : NULL,
                         nd->resid != QNONE ? &q->layers[nd->resid] : NULL, &in, &out, c->s16,
                         c->work);
            continue;
        }
        struct qio io = {l,      nd->is, nd->os, c->act[nd->in_act], c->act[nd->out_act],
                         c->s16, c->s32, c->kern};
        switch (l->d.type) {
        case NN_CONV2D:
            q_conv(&io);
            break;
        case NN_UPSAMPLE:
            q_upsample(&io);
            break;
        case NN_RELU:
        case NN_LRELU:
            q_relu(&io);
            break;
        case NN_AVGPOOL:
        case NN_MAXPOOL:
            q_pool(&io);
            break;
        case NN_SE:
            q_se(&io);
            break;
        case NN_MHSA:
            q_mhsa(&io);
            break;
        default:
            break;
        }
    }
}

int nn_qforward(struct nn_qctx *c, const struct nn_qtensor *in, struct nn_qtensor *out)
{
    const struct nn_shape *s = &c->ashape[0];
    if (!in || !out || !in->data || in->n != s->n || in->c != s->c || in->h != s->h ||
        in->w != s->w)
        return -EINVAL;
    struct nn_qview v = view(c, 0);
    if (v.pair)
        nn_qpair_store(in->data, &v);
    else
        memcpy(c->act[0], in->data, nn_shape_count(s) * sizeof(int16_t));
    run_seq(c, 0, c->q->nlayers);
    s = &c->ashape[c->out_act];
    *out = (struct nn_qtensor){c->act[c->out_act], s->n, s->c, s->h, s->w};
    return 0;
}
