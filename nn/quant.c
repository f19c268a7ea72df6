// SPDX-License-Identifier: MIT
/*
 * Post-training quantisation: calibration of activation ranges on sample inputs, then integer
 * weights, multipliers and tables for every layer (the arithmetic is specified in nn/nn.h), and
 * a comparison of the integer model with the float one.
 *
 * Calibration runs the float layers of the nn_op table itself, one image at a time, keeping
 * every activation, so that it sees what a normal inference context hides (each activation, and
 * the inner values of the attention layers, left in their aux memory). This costs memory
 * proportional to the whole network for one image, which is fine for the small images one
 * calibrates on. Ranges are maxima of magnitudes, or a percentile from a histogram of 4096 bins
 * in a second pass. Floats and libm are used freely here: only the integer model that comes out
 * has to be exact, and it is stored with its tables.
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#define NBINS 4096

struct stat {
    double max;
    uint64_t *hist, total;
};

struct calib {
    const struct nn_model *m;
    size_t nl;
    struct nn_shape *is, *os; /* per layer */
    uint32_t *in_act, *inner;
    struct nn_shape *ashape; /* per activation: 0 input, i + 1 output of layer i */
    float **act;
    float *aux, *scratch;
    struct stat *act_st; /* per activation */
    struct stat *in_st;  /* per layer: se relu(z1); mhsa q, k, v, o (4 per layer) */
    int pass;
    double pct;
};

static void observe(struct stat *s, const float *v, size_t n, int pass, int relu)
{
    assert(v || n == 0);
    if (pass == 0) {
        for (size_t i = 0; i < n; i++) {
            double a = relu ? (v[i] > 0 ? v[i] : 0) : fabs(v[i]);
            if (a > s->max)
                s->max = a;
        }
        return;
    }
    if (!s->hist || !(s->max > 0))
        return;
    for (size_t i = 0; i < n; i++) {
        double a = relu ? (v[i] > 0 ? v[i] : 0) : fabs(v[i]);
        size_t b = (size_t)(a / s->max * (NBINS - 1));
        s->hist[b < NBINS ? b : NBINS - 1]++;
        s->total++;
    }
}

static double clip_of(const struct stat *s, double pct)
{
    if (!(s->max > 0) || !isfinite(s->max))
        return 1.0;
    if (pct >= 100.0 || !s->hist || s->total == 0)
        return s->max;
    uint64_t want = (uint64_t)ceil(pct / 100.0 * (double)s->total), run = 0;
    for (size_t b = 0; b < NBINS; b++) {
        run += s->hist[b];
        if (run >= want) {
            double edge = s->max * (double)(b + 1) / (NBINS - 1); /* upper edge of bin b */
            return edge < s->max ? edge : s->max;
        }
    }
    return s->max;
}

static int plan_seq(struct calib *k, size_t first, size_t end, uint32_t in, uint32_t *out,
                    size_t *aux, size_t *scratch)
{
    const struct nn_model *m = k->m;
    uint32_t cur = in;
    int ret;
    for (size_t i = first; i < end; i += 1 + m->layers[i].d.span) {
        const struct nn_layer_desc *d = &m->layers[i].d;
        k->in_act[i] = cur;
        k->is[i] = k->ashape[cur];
        if (d->type == NN_RESIDUAL) {
            if ((ret = plan_seq(k, i + 1, i + 1 + d->span, cur, &k->inner[i], aux, scratch)))
                return ret;
            k->os[i] = k->is[i];
        } else {
            const struct nn_op *op = nn_float_op(d->type);
            size_t a, s;
            if ((ret = op->shape(d, &k->is[i], &k->os[i])) ||
                (ret = op->mem(d, &k->is[i], &k->os[i], 0, &a, &s)))
                return ret;
            if (nn_shape_count(&k->os[i]) > NN_MAX_PLANE || k->os[i].c > NN_MAX_CHANNELS)
                return -EFBIG;
            *aux = a > *aux ? a : *aux;
            *scratch = s > *scratch ? s : *scratch;
        }
        k->ashape[i + 1] = k->os[i];
        cur = (uint32_t)(i + 1);
    }
    *out = cur;
    return 0;
}

static void run_seq(struct calib *k, size_t first, size_t end)
{
    const struct nn_model *m = k->m;
    for (size_t i = first; i < end; i += 1 + m->layers[i].d.span) {
        const struct nn_layer *l = &m->layers[i];
        const float *x = k->act[k->in_act[i]];
        float *y = k->act[i + 1];
        assert(x && y); /* calibrate allocated every activation */
        size_t count = nn_shape_count(&k->os[i]);
        if (l->d.type == NN_RESIDUAL) {
            run_seq(k, i + 1, i + 1 + l->d.span);
            const float *f = k->act[k->inner[i]];
            for (size_t j = 0; j < count; j++)
                y[j] = x[j] + f[j];
        } else {
            struct nn_io io = {.d = &l->d,
                               .w = m->params + l->param_off,
                               .is = k->is[i],
                               .os = k->os[i],
                               .x = x,
                               .y = y,
                               .aux = k->aux,
                               .scratch = k->scratch};
            nn_float_op(l->d.type)->forward(&io);
            size_t C = k->is[i].c, T = nn_shape_plane(&k->is[i]);
            if (l->d.type == NN_SE)
                observe(&k->in_st[4 * i], k->aux + C, l->d.hidden, k->pass, 1);
            if (l->d.type == NN_MHSA)
                for (int j = 0; j < 4; j++)
                    observe(&k->in_st[4 * i + (size_t)j], k->aux + (size_t)j * C * T, C * T,
                            k->pass, 0);
        }
        observe(&k->act_st[i + 1], y, count, k->pass, 0);
    }
}

static void calib_free(struct calib *k)
{
    if (k->act)
        for (size_t i = 0; i <= k->nl; i++)
            free(k->act[i]);
    if (k->act_st)
        for (size_t i = 0; i <= k->nl; i++)
            free(k->act_st[i].hist);
    if (k->in_st)
        for (size_t i = 0; i < 4 * k->nl; i++)
            free(k->in_st[i].hist);
    free(k->act);
    free(k->act_st);
    free(k->in_st);
    free(k->aux);
    free(k->scratch);
    free(k->is);
    free(k->os);
    free(k->in_act);
    free(k->inner);
    free(k->ashape);
}

static int calibrate(struct calib *k, const struct nn_model *m, const struct nn_tensor *x,
                     double pct)
{
    size_t nl = m->nlayers, aux = 0, scratch = 0;
    uint32_t out;
    int ret;
    memset(k, 0, sizeof(*k));
    k->m = m;
    k->nl = nl;
    k->pct = pct;
    k->is = calloc(nl, sizeof(*k->is));
    k->os = calloc(nl, sizeof(*k->os));
    k->in_act = calloc(nl, sizeof(*k->in_act));
    k->inner = calloc(nl, sizeof(*k->inner));
    k->ashape = calloc(nl + 1, sizeof(*k->ashape));
    k->act = calloc(nl + 1, sizeof(*k->act));
    k->act_st = calloc(nl + 1, sizeof(*k->act_st));
    k->in_st = calloc(4 * nl, sizeof(*k->in_st));
    if (!k->is || !k->os || !k->in_act || !k->inner || !k->ashape || !k->act || !k->act_st ||
        !k->in_st)
        return -ENOMEM;
    k->ashape[0] = (struct nn_shape){1, x->c, x->h, x->w};
    if ((ret = plan_seq(k, 0, nl, 0, &out, &aux, &scratch)))
        return ret;
    k->aux = calloc(aux + 1, sizeof(float));
    k->scratch = calloc(scratch + 1, sizeof(float));
    if (!k->aux || !k->scratch)
        return -ENOMEM;
    for (size_t i = 0; i <= nl; i++) {
        k->act[i] = calloc(nn_shape_count(&k->ashape[i]) + 1, sizeof(float));
        if (!k->act[i])
            return -ENOMEM;
    }
    for (k->pass = 0; k->pass < (pct < 100.0 ? 2 : 1); k->pass++) {
        if (k->pass == 1) {
            for (size_t i = 0; i <= nl; i++)
                if (!(k->act_st[i].hist = calloc(NBINS, sizeof(uint64_t))))
                    return -ENOMEM;
            for (size_t i = 0; i < 4 * nl; i++)
                if (!(k->in_st[i].hist = calloc(NBINS, sizeof(uint64_t))))
                    return -ENOMEM;
        }
        for (uint32_t n = 0; n < x->n; n++) {
            struct nn_tensor dst, src = *x;
            src.data = nn_tensor_at(x, n, 0, 0, 0);
            src.n = 1;
            nn_tensor_packed(&dst, k->act[0], 1, x->c, x->h, x->w);
            if ((ret = nn_tensor_copy(&dst, &src)))
                return ret;
            observe(&k->act_st[0], k->act[0], nn_shape_count(&k->ashape[0]), k->pass, 0);
            run_seq(k, 0, nl);
        }
    }
    return 0;
}

/* ---- building the integer layers ---- */

/* r = M / 2^S with M < 2^31, S in [1, 62] (M signed if r < 0). -EINVAL if |r| >= 2^30. */
static int to_rq(double r, int32_t *M, int32_t *S)
{
    int neg = r < 0, e;
    double a = fabs(r);
    if (!isfinite(a))
        return -EINVAL;
    if (a == 0.0) {
        *M = 0;
        *S = 1;
        return 0;
    }
    double f = frexp(a, &e); /* a = f 2^e, f in [0.5, 1) */
    int64_t m = llround(f * 2147483648.0);
    if (m == ((int64_t)1 << 31)) {
        m >>= 1;
        e++;
    }
    int s = 31 - e;
    if (s < 1)
        return -EINVAL;
    if (s > 62) {
        int drop = s - 62;
        m = drop >= 63 ? 0 : (m + ((int64_t)1 << (drop - 1))) >> drop;
        s = 62;
    }
    *M = (int32_t)(neg ? -m : m);
    *S = s;
    return 0;
}

static double scale_of(double clip, double range)
{
    double s = clip / range;
    return s > 0 && isfinite(s) && s < 1e30 ? s : 1.0 / range;
}

/*
 * Quantise rows of a float matrix (element (r, j) at w[r * cols + j]) with per-row scales,
 * coarsening a row's scale until |sum| <= 2^31 - 1 holds for inputs of magnitude 32768
 * (at input scale s_in, with the row's bias). wq has the same layout.
 */
static void quant_rows(const float *w, const float *bias, size_t rows, size_t cols, double s_in,
                       int8_t *wq, int32_t *bq, float *ws)
{
    for (size_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        double mx = 0;
        for (size_t j = 0; j < cols; j++)
            mx = fabs(wr[j]) > mx ? fabs(wr[j]) : mx;
        float sw = mx > 0 && isfinite(mx) ? (float)(mx / NN_Q_WMAX) : 1.0f;
        for (;;) {
            int64_t l1 = 0;
            for (size_t j = 0; j < cols; j++) {
                double v = nearbyint(wr[j] / (double)sw);
                v = v > NN_Q_WMAX ? NN_Q_WMAX : v < -NN_Q_WMAX ? -NN_Q_WMAX : v == v ? v : 0;
                wq[r * cols + j] = (int8_t)v;
                l1 += v < 0 ? (int64_t)-v : (int64_t)v;
            }
            double b = bias ? nearbyint(bias[r] / (s_in * (double)sw)) : 0;
            if (!(fabs(b) <= (double)NN_Q_ACC_MAX))
                b = b != b ? 0 : b > 0 ? NN_Q_ACC_MAX : -NN_Q_ACC_MAX;
            if ((double)l1 * 32768.0 + fabs(b) <= (double)NN_Q_ACC_MAX) {
                if (bq)
                    bq[r] = (int32_t)b;
                break;
            }
            sw *= 1.25f;
        }
        ws[r] = sw;
    }
}

static int alloc_layer(struct nn_qlayer *l)
{
    int ret = nn_qlayer_counts(&l->d, &l->nw, &l->nb, &l->nk, &l->nws);
    if (ret)
        return ret;
    l->w = calloc(l->nw + 1, 1);
    l->b = calloc(l->nb + 1, sizeof(int32_t));
    l->k = calloc(l->nk + 1, sizeof(int32_t));
    l->ws = calloc(l->nws + 1, sizeof(float));
    return l->w && l->b && l->k && l->ws ? 0 : -ENOMEM;
}

static int quant_conv(struct nn_qlayer *l, const float *p, double sx, double sy)
{
    const struct nn_layer_desc *d = &l->d;
    size_t Co = d->out_ch, C = d->in_ch, KK = (size_t)d->kh * d->kw, K = C * KK;
    const float *bias = d->bias ? p + Co * K : NULL;
    int ret = 0;
    if (d->type == NN_CONV2D) {
        quant_rows(p, bias, Co, K, sx, l->w, d->bias ? l->b : NULL, l->ws);
    } else {
        /* W[c][o][t] -> rows o of (c, t), and back. */
        float *t = calloc(Co * K + 1, sizeof(float));
        int8_t *tq = malloc(Co * K);
        if (!t || !tq) {
            free(t);
            free(tq);
            return -ENOMEM;
        }
        for (size_t c = 0; c < C; c++)
            for (size_t o = 0; o < Co; o++)
                for (size_t j = 0; j < KK; j++)
                    t[o * K + c * KK + j] = p[(c * Co + o) * KK + j];
        quant_rows(t, bias, Co, K, sx, tq, d->bias ? l->b : NULL, l->ws);
        for (size_t c = 0; c < C; c++)
            for (size_t o = 0; o < Co; o++)
                for (size_t j = 0; j < KK; j++)
                    l->w[(c * Co + o) * KK + j] = tq[o * K + c * KK + j];
        free(t);
        free(tq);
    }
    for (size_t o = 0; o < Co && !ret; o++)
        ret = to_rq(sx * l->ws[o] / sy, &l->k[o], &l->k[Co + o]);
    return ret;
}

static int quant_se(struct nn_qlayer *l, const float *p, double sx, double clip_z1)
{
    size_t C = l->d.in_ch, Hd = l->d.hidden;
    const float *W1 = p, *b1 = W1 + Hd * C, *W2 = b1 + Hd, *b2 = W2 + C * Hd;
    double sz = scale_of(clip_z1, NN_Q_MAX);
    int32_t *k = l->k;
    int ret = 0;
    quant_rows(W1, b1, Hd, C, sx, l->w, l->b, l->ws);
    quant_rows(W2, b2, C, Hd, sz, l->w + Hd * C, l->b + Hd, l->ws + Hd);
    for (size_t j = 0; j < Hd && !ret; j++)
        ret = to_rq(sx * l->ws[j] / sz, &k[j], &k[Hd + j]);
    for (size_t c = 0; c < C && !ret; c++)
        ret = to_rq(sz * l->ws[Hd + c] * NN_Q_LUT_FRAC, &k[2 * Hd + c], &k[2 * Hd + C + c]);
    int32_t *G = k + 2 * Hd + 2 * C;
    for (int i = 0; i < NN_Q_LUT; i++) {
        int centred = i - NN_Q_LUT / 2; /* NN_Q_LUT is even */
        double z = (double)centred / NN_Q_LUT_FRAC;
        G[i] = (int32_t)lround(NN_Q_ONE / (1.0 + exp(-z)));
    }
    return ret;
}

static int quant_mhsa(struct nn_qlayer *l, const float *p, double sx, const double clip[4],
                      double sy)
{
    size_t C = l->d.in_ch, wsz = C * C + C;
    uint32_t D = l->d.in_ch / l->d.heads;
    int32_t qk = nn_q_qk_limit(D), *k = l->k, *t = k + 6 * C;
    double s[4] = {scale_of(clip[0], qk), scale_of(clip[1], qk), scale_of(clip[2], NN_Q_MAX),
                   scale_of(clip[3], NN_Q_MAX)};
    int ret = 0;
    for (size_t i = 0; i < 4; i++) {
        const float *w = p + i * wsz;
        double s_in = i < 3 ? sx : s[3], s_out = i < 3 ? s[i] : sy;
        quant_rows(w, w + C * C, C, C, s_in, l->w + i * C * C, l->b + i * C, l->ws + i * C);
        int32_t *M = i < 3 ? k + 2 * C * i : t + 5, *S = M + C;
        for (size_t r = 0; r < C && !ret; r++)
            ret = to_rq(s_in * l->ws[i * C + r] / s_out, &M[r], &S[r]);
    }
    if (!ret)
        ret = to_rq(s[0] * s[1] / sqrt((double)D) * NN_Q_LUT_FRAC, &t[0], &t[1]);
    t[2] = qk;
    if (!ret)
        ret = to_rq(s[2] / (double)(1 << NN_Q_PBITS) / s[3], &t[3], &t[4]);
    int32_t *E = t + 5 + 2 * C;
    for (int i = 0; i < NN_Q_LUT; i++)
        E[i] = (int32_t)lround(NN_Q_ONE * exp(-(double)i / NN_Q_LUT_FRAC));
    return ret;
}

struct qbuild {
    const struct nn_model *m;
    struct calib *k;
    struct nn_qmodel *q;
    double *sc; /* per activation */
};

static int build_seq(struct qbuild *b, size_t first, size_t end, uint32_t in)
{
    const struct nn_model *m = b->m;
    double pct = b->k->pct;
    int ret;
    for (size_t i = first; i < end; i += 1 + m->layers[i].d.span) {
        const struct nn_layer *fl = &m->layers[i];
        struct nn_qlayer *l = &b->q->layers[i];
        const float *p = m->params + fl->param_off;
        double sx = b->sc[in], sy = scale_of(clip_of(&b->k->act_st[i + 1], pct), NN_Q_MAX);
        l->d = fl->d;
        if ((ret = alloc_layer(l)))
            return ret;
        switch (fl->d.type) {
        case NN_CONV2D:
        case NN_TCONV2D:
            ret = quant_conv(l, p, sx, sy);
            break;
        case NN_RESIDUAL:
            if ((ret = build_seq(b, i + 1, i + 1 + fl->d.span, in)))
                return ret;
            {
                double sf = b->sc[b->k->inner[i]];
                ret = to_rq(sx / sy, &l->k[0], &l->k[1]);
                if (!ret)
                    ret = to_rq(sf / sy, &l->k[2], &l->k[3]);
            }
            break;
        case NN_LRELU:
            sy = sx;
            ret = to_rq(fl->d.slope, &l->k[0], &l->k[1]);
            break;
        case NN_SE:
            sy = sx;
            ret = quant_se(l, p, sx, clip_of(&b->k->in_st[4 * i], pct));
            break;
        case NN_MHSA: {
            double clip[4];
            for (int j = 0; j < 4; j++)
                clip[j] = clip_of(&b->k->in_st[4 * i + (size_t)j], pct);
            ret = quant_mhsa(l, p, sx, clip, sy);
            break;
        }
        default: /* relu, pools, up-sampling keep the scale */
            sy = sx;
            break;
        }
        if (ret)
            return ret;
        b->sc[i + 1] = sy;
        l->out_scale = (float)sy;
        in = (uint32_t)(i + 1);
    }
    return 0;
}

int nn_quantize(const struct nn_model *m, const struct nn_tensor *calib,
                const struct nn_quant_opts *o, struct nn_qmodel **out)
{
    struct calib k;
    struct nn_qmodel *q = NULL;
    double *sc = NULL;
    int ret;
    if (!m || !calib || !calib->data || !o || !out || !m->ready || calib->c != m->in_ch ||
        calib->n == 0 || !(o->percentile >= 90.0 && o->percentile <= 100.0) ||
        !(o->in_scale >= 0.0f && o->in_scale < 1e30f))
        return -EINVAL;
    if ((ret = calibrate(&k, m, calib, o->percentile)))
        goto out;
    ret = -ENOMEM;
    q = nn_qmodel_alloc(m->nlayers);
    sc = calloc(m->nlayers + 1, sizeof(*sc));
    if (!q || !sc)
        goto out;
    q->in_ch = m->in_ch;
    sc[0] = o->in_scale > 0 ? o->in_scale
                            : (float)scale_of(clip_of(&k.act_st[0], o->percentile), NN_Q_MAX);
    q->in_scale = (float)sc[0];
    sc[0] = q->in_scale;
    struct qbuild b = {m, &k, q, sc};
    if ((ret = build_seq(&b, 0, m->nlayers, 0)) || (ret = nn_qmodel_finish(q)))
        goto out;
    *out = q;
    q = NULL;
out:
    free(sc);
    nn_qmodel_free(q);
    calib_free(&k);
    return ret;
}

int nn_quant_compare(const struct nn_qmodel *q, const struct nn_model *m,
                     const struct nn_tensor *inputs, struct nn_quant_report *r)
{
    struct nn_ctx *fc = NULL;
    struct nn_qctx *qc = NULL;
    int16_t *qin = NULL;
    float *deq = NULL;
    int ret;
    if (!q || !m || !inputs || !r || inputs->c != q->in_ch || m->in_ch != q->in_ch)
        return -EINVAL;
    if ((ret = nn_ctx_new(m, inputs->n, inputs->h, inputs->w, 0, &fc)) ||
        (ret = nn_qctx_new(q, inputs->n, inputs->h, inputs->w, &qc)))
        goto out;
    struct nn_tensor fo;
    struct nn_qtensor qi = {NULL, inputs->n, inputs->c, inputs->h, inputs->w}, qo;
    nn_ctx_out_shape(fc, &fo);
    nn_qctx_out_shape(qc, &qo);
    ret = -EINVAL;
    if (fo.n != qo.n || fo.c != qo.c || fo.h != qo.h || fo.w != qo.w)
        goto out;
    ret = -ENOMEM;
    size_t count = nn_tensor_count(&fo);
    qin = malloc(nn_tensor_count(inputs) * sizeof(*qin));
    deq = malloc(count * sizeof(*deq));
    if (!qin || !deq)
        goto out;
    qi.data = qin;
    if ((ret = nn_qmodel_quantize_input(q, inputs, qin)) || (ret = nn_forward(fc, inputs, &fo)) ||
        (ret = nn_qforward(qc, &qi, &qo)))
        goto out;
    nn_qmodel_dequantize(q, qo.data, count, deq);
    struct nn_quant_report rep = {0};
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)deq[i] - fo.data[i]);
        sum += e;
        rep.max_abs = e > rep.max_abs ? e : rep.max_abs;
        rep.max_ref = fabs(fo.data[i]) > rep.max_ref ? fabs(fo.data[i]) : rep.max_ref;
    }
    rep.count = count;
    rep.mean_abs = count ? sum / (double)count : 0;
    *r = rep;
    ret = 0;
out:
    free(deq);
    free(qin);
    nn_qctx_free(qc);
    nn_ctx_free(fc);
    return ret;
}
