// SPDX-License-Identifier: MIT
/*
 * The neural predictor (pixnet.h): coding order, features, the integer network per pass, the
 * model file.
 *
 * A pass is gathered into a feature matrix chunk by chunk (CHUNK pixels, the last chunk padded
 * with zeros) and run through nn_qforward with a context planned once per worker: inference
 * allocates nothing and costs one small integer GEMM per layer per chunk. Everything that turns
 * the network's output into a mean and a context is integer arithmetic fixed by the format.
 */
#include "codec/pixel/pixnet.h"
#include "codec/bytes.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#define F CODEC_PIXNET_FEATURES
#define CHUNK 2048u
#define NPASS 6 /* D(4) C(4) D(2) C(2) D(1) C(1) */
#define FMAX 2047

struct codec_pixnet {
    struct nn_qmodel *net[CODEC_PIXNET_NETS];
    struct codec_pixnet_consts k[CODEC_PIXNET_NETS];
    uint8_t contexts;
    struct codec_pixcode_predictor pred;
};

/* ---- integer helpers ---------------------------------------------------------------------- */

static unsigned bitlen32(uint32_t v)
{
    return v ? 32u - (unsigned)__builtin_clz(v) : 0u;
}

/* floor(a / 2^sh) without relying on how >> treats negative numbers. */
static inline int64_t floor_shr(int64_t a, unsigned sh)
{
    return a >= 0 ? a >> sh : -((-a + ((int64_t)1 << sh) - 1) >> sh);
}

static inline int32_t floor_div8(int32_t a)
{
    return a >= 0 ? a / 8 : -((-a + 7) / 8);
}

int32_t codec_pixnet_log16(uint32_t u)
{
    static const uint8_t lt[16] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 12, 13, 14, 15};
    if (u == 0)
        return 0;
    unsigned b = bitlen32(u) - 1;
    uint32_t m = b >= 4 ? (u >> (b - 4)) & 15u : (u << (4 - b)) & 15u;
    return (int32_t)(16 * b + lt[m]);
}

/* ---- features ----------------------------------------------------------------------------- */

/* Offsets in units of s: nearest four, then the ring of eight (pixnet.h). */
static const int8_t off_d[12][2] = {{-1, -1}, {-1, 1}, {1, -1}, {1, 1}, {-3, -1}, {-3, 1},
                                    {-1, -3}, {-1, 3}, {1, -3}, {1, 3}, {3, -1},  {3, 1}};
static const int8_t off_c[12][2] = {{-1, 0},  {0, -1}, {0, 1},  {1, 0}, {-2, -1}, {-2, 1},
                                    {-1, -2}, {-1, 2}, {1, -2}, {1, 2}, {2, -1},  {2, 1}};

/* One stripe's geometry and samples. */
struct grid {
    const uint16_t *v;
    uint32_t w, rows, maxval;
};

/* Normalise the differences d[12] (pixnet.h): f_0..14, u. */
static inline void finish_features(const int32_t *d, int32_t a4, int32_t a8, uint32_t s,
                                   uint32_t maxval, int16_t *f, size_t stride, int32_t ref,
                                   int32_t *ref_out, int32_t *u_out)
{
    int32_t u = 1 + (2 * a4 + a8) / 8;
    int64_t rec = ((int64_t)1 << 20) / u;
    for (unsigned i = 0; i < 12; i++) {
        /* floor((d rec + 2^15) / 2^16) without a branch on the sign: |d rec| < 2^37, so the
         * biased sum is positive and a logical shift floors it */
        int64_t a = (int64_t)d[i] * rec + (1 << 15) + ((int64_t)1 << 40);
        int64_t q = (int64_t)((uint64_t)a >> 16) - ((int64_t)1 << 24);
        f[i * stride] = (int16_t)(q < -FMAX ? -FMAX : q > FMAX ? FMAX : q);
    }
    f[12 * stride] = (int16_t)codec_pixnet_log16((uint32_t)u);
    f[13 * stride] = (int16_t)(16 * (bitlen32(s) - 1));
    f[14 * stride] = (int16_t)(16 * bitlen32(maxval));
    *ref_out = ref;
    *u_out = u;
}

/* gather() for a pixel whose neighbours are all inside: c points at it, po[i] are the
 * offsets of its twelve neighbours in the stripe's samples. */
static inline void gather_in(const uint16_t *c, const ptrdiff_t *po, uint32_t s, uint32_t maxval,
                             int16_t *f, size_t stride, int32_t *ref_out, int32_t *u_out)
{
    int32_t d[12], a4 = 0, a8 = 0;
    int32_t n0 = c[po[0]], n1 = c[po[1]], n2 = c[po[2]], n3 = c[po[3]];
    int32_t ref = (n0 + n1 + n2 + n3 + 2) / 4;
    d[0] = n0 - ref;
    d[1] = n1 - ref;
    d[2] = n2 - ref;
    d[3] = n3 - ref;
    for (unsigned i = 0; i < 4; i++)
        a4 += d[i] < 0 ? -d[i] : d[i];
    for (unsigned i = 4; i < 12; i++) {
        d[i] = (int32_t)c[po[i]] - ref;
        a8 += d[i] < 0 ? -d[i] : d[i];
    }
    finish_features(d, a4, a8, s, maxval, f, stride, ref, ref_out, u_out);
}

/*
 * The features of pixel (y, x) of a pass of type `pass` at step s: f[i * stride] for
 * i < F, and its ref and u. Only known pixels are read (pixnet.h says which).
 */
static void gather(const struct grid *g, enum codec_pixnet_pass pass, uint32_t s, uint32_t y,
                   uint32_t x, int16_t *f, size_t stride, int32_t *ref_out, int32_t *u_out)
{
    const int8_t(*off)[2] = pass == CODEC_PIXNET_PASS_D ? off_d : off_c;
    bool tr = pass == CODEC_PIXNET_PASS_C && y % (2 * s) == s;
    int32_t val[12];
    bool have[12];
    const int64_t sy = (int64_t)s, H = g->rows, W = g->w;
    const bool inside = (int64_t)y >= 3 * sy && (int64_t)y + 3 * sy < H && (int64_t)x >= 3 * sy &&
                        (int64_t)x + 3 * sy < W;
    for (unsigned i = 0; i < 12; i++) {
        int64_t dy = off[i][0] * sy, dx = off[i][1] * sy;
        if (tr) {
            int64_t t = dy;
            dy = dx;
            dx = t;
        }
        int64_t yy = (int64_t)y + dy, xx = (int64_t)x + dx;
        if (!inside) {
            if (yy < 0 || yy >= H)
                yy = (int64_t)y - dy;
            if (xx < 0 || xx >= W)
                xx = (int64_t)x - dx;
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) {
                have[i] = false;
                val[i] = 0;
                continue;
            }
        }
        have[i] = true;
        val[i] = g->v[(size_t)yy * g->w + (size_t)xx];
    }
    int32_t sum = 0, k = 0;
    for (unsigned i = 0; i < 4; i++)
        if (have[i]) {
            sum += val[i];
            k++;
        }
    /* k >= 1: n0 of D and n1 of C are always inside (pixnet.h) */
    for (unsigned i = 0; i < 4; i++)
        if (!have[i])
            val[i] = (sum + k / 2) / k;
    int32_t ref = (val[0] + val[1] + val[2] + val[3] + 2) / 4;
    int32_t a4 = 0, a8 = 0, d[12];
    for (unsigned i = 0; i < 12; i++) {
        d[i] = (i < 4 || have[i] ? val[i] : ref) - ref;
        int32_t ad = d[i] < 0 ? -d[i] : d[i];
        if (i < 4)
            a4 += ad;
        else
            a8 += ad;
    }
    finish_features(d, a4, a8, s, g->maxval, f, stride, ref, ref_out, u_out);
}

/* Pass p (0..NPASS-1): its type and step. */
static void pass_of(unsigned p, enum codec_pixnet_pass *type, uint32_t *s)
{
    *type = p & 1 ? CODEC_PIXNET_PASS_C : CODEC_PIXNET_PASS_D;
    *s = CODEC_PIXNET_BASE >> (1 + p / 2);
}

/* Whether (y, x) belongs to pass type/s. */
static inline bool in_pass(enum codec_pixnet_pass type, uint32_t s, uint32_t y, uint32_t x)
{
    uint32_t ry = y % (2 * s), rx = x % (2 * s);
    if (type == CODEC_PIXNET_PASS_D)
        return ry == s && rx == s;
    return (ry == 0 && rx == s) || (ry == s && rx == 0);
}

/* Base-grid MED prediction and context (pixnet.h). */
static void base_predict(const struct grid *g, uint32_t y, uint32_t x, uint32_t nctx,
                         uint16_t *mean, uint8_t *ctx)
{
    const uint32_t B = CODEC_PIXNET_BASE;
    const uint16_t *v = g->v;
    const size_t w = g->w;
    int32_t W, N, NW, NE;
    if (y == 0) {
        W = x ? v[x - B] : 0;
        N = NW = NE = W;
    } else {
        const uint16_t *up = v + (size_t)(y - B) * w;
        N = up[x];
        NE = x + B < w ? up[x + B] : N;
        if (x) {
            W = v[(size_t)y * w + x - B];
            NW = up[x - B];
        } else {
            W = NW = N;
        }
    }
    int32_t mx = W > N ? W : N, mn = W > N ? N : W;
    int32_t p = NW >= mx ? mn : NW <= mn ? mx : W + N - NW;
    uint32_t act = (uint32_t)(abs(W - NW) + abs(N - NW) + abs(NE - N));
    uint32_t q = act < 2 ? act : 2 * (bitlen32(act) - 1) + ((act >> (bitlen32(act) - 2)) & 1u);
    *mean = (uint16_t)p;
    *ctx = (uint8_t)(q < nctx ? q : nctx - 1);
}

/* Mean and context from the network's outputs (pixnet.h). */
static inline void finish(const struct codec_pixnet_consts *k, int32_t qmu, int32_t qls,
                          int32_t ref, int32_t u, uint32_t maxval, uint32_t nctx, uint16_t *mean,
                          uint8_t *ctx)
{
    int64_t m = ref + floor_shr((int64_t)qmu * u * k->mu_mult + ((int64_t)1 << (k->mu_shift - 1)),
                                k->mu_shift);
    *mean = (uint16_t)(m < 0 ? 0 : m > (int64_t)maxval ? maxval : m);
    int64_t t =
        floor_shr((int64_t)qls * k->ls_mult + ((int64_t)1 << (k->ls_shift - 1)), k->ls_shift) +
        codec_pixnet_log16((uint32_t)u);
    if (t < -(1 << 24))
        t = -(1 << 24);
    if (t > (1 << 24))
        t = 1 << 24;
    int32_t c = floor_div8((int32_t)t + k->ctx_offset);
    *ctx = (uint8_t)(c < 0 ? 0 : c >= (int32_t)nctx ? (int32_t)nctx - 1 : c);
}

/* ---- the predictor ------------------------------------------------------------------------ */

struct pn_state {
    const struct codec_pixnet *m;
    struct grid g;
    uint32_t width_cap;
    struct nn_qctx *qc[CODEC_PIXNET_NETS];
    int16_t *feat;    /* F x CHUNK */
    int32_t *ref, *u; /* CHUNK */
    uint32_t by, bx;  /* next base pixel */
    unsigned pass;    /* next network pass */
    bool base_done;
};

static void pn_free(void *st)
{
    struct pn_state *s = st;
    if (!s)
        return;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++)
        nn_qctx_free(s->qc[i]);
    free(s->feat);
    free(s->ref);
    free(s->u);
    free(s);
}

static void *pn_new(const struct codec_pixcode_predictor *p, uint32_t width, uint32_t rows)
{
    (void)rows;
    const struct codec_pixnet *m = p->model;
    struct pn_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->m = m;
    s->width_cap = width;
    s->feat = calloc((size_t)F * CHUNK, sizeof(int16_t));
    s->ref = malloc(CHUNK * sizeof(int32_t));
    s->u = malloc(CHUNK * sizeof(int32_t));
    bool ok = s->feat && s->ref && s->u;
    for (unsigned i = 0; ok && i < CODEC_PIXNET_NETS; i++)
        ok = nn_qctx_new(m->net[i], 1, 1, CHUNK, &s->qc[i]) == 0;
    if (!ok) {
        pn_free(s);
        return NULL;
    }
    return s;
}

static void pn_begin(void *st, const struct codec_pixcode_view *view)
{
    struct pn_state *s = st;
    s->g = (struct grid){view->v, view->width, view->rows, view->maxval};
    s->by = s->bx = 0;
    s->pass = 0;
    s->base_done = false;
}

/* Run network `type` on the n gathered pixels and write their means and contexts. */
static int run_chunk(struct pn_state *s, enum codec_pixnet_pass type, size_t n, uint16_t *mean,
                     uint8_t *ctx)
{
    const struct codec_pixnet *m = s->m;
    for (unsigned c = 0; c < F; c++) /* padding columns: any fixed value will do */
        memset(s->feat + (size_t)c * CHUNK + n, 0, (CHUNK - n) * sizeof(int16_t));
    struct nn_qtensor in = {s->feat, 1, F, 1, CHUNK}, out;
    if (nn_qforward(s->qc[type], &in, &out) != 0)
        return -EINVAL;
    const int16_t *qmu = out.data, *qls = out.data + CHUNK;
    for (size_t i = 0; i < n; i++)
        finish(&m->k[type], qmu[i], qls[i], s->ref[i], s->u[i], s->g.maxval, m->contexts, &mean[i],
               &ctx[i]);
    return 0;
}

static size_t pn_next(void *st, uint32_t *pos, uint16_t *mean, uint8_t *ctx, size_t cap)
{
    struct pn_state *s = st;
    const struct grid *g = &s->g;
    const uint32_t B = CODEC_PIXNET_BASE;
    (void)cap; /* cap >= the stripe's pixels (pixcode allocates a stripe per worker) */
    if (!s->base_done) {
        uint32_t y = s->by, x = s->bx;
        pos[0] = y * g->w + x;
        base_predict(g, y, x, s->m->contexts, &mean[0], &ctx[0]);
        s->bx += B;
        if (s->bx >= g->w) {
            s->bx = 0;
            s->by += B;
            if (s->by >= g->rows)
                s->base_done = true;
        }
        return 1;
    }
    while (s->pass < NPASS) {
        enum codec_pixnet_pass type;
        uint32_t step;
        pass_of(s->pass++, &type, &step);
        size_t n = 0, c = 0;
        const bool isd = type == CODEC_PIXNET_PASS_D;
        for (uint32_t y = isd ? step : 0; y < g->rows; y += isd ? 2 * step : step) {
            uint32_t x0 = isd || y % (2 * step) == 0 ? step : 0, dx = 2 * step;
            /* offsets of the neighbours for this row (the transposition depends on it) */
            const int8_t(*off)[2] = isd ? off_d : off_c;
            const bool tr = !isd && y % (2 * step) == step;
            ptrdiff_t po[12];
            for (unsigned i = 0; i < 12; i++) {
                ptrdiff_t oy = off[i][tr], ox = off[i][!tr];
                po[i] = (oy * (ptrdiff_t)g->w + ox) * (ptrdiff_t)step;
            }
            const bool rows_in = y >= 3 * step && y + 3 * step < g->rows;
            for (uint32_t x = x0; x < g->w; x += dx) {
                pos[n] = y * g->w + x;
                if (rows_in && x >= 3 * step && x + 3 * step < g->w)
                    gather_in(g->v + (size_t)y * g->w + x, po, step, g->maxval, s->feat + c, CHUNK,
                              &s->ref[c], &s->u[c]);
                else
                    gather(g, type, step, y, x, s->feat + c, CHUNK, &s->ref[c], &s->u[c]);
                n++;
                if (++c == CHUNK) {
                    if (run_chunk(s, type, c, mean + n - c, ctx + n - c) != 0)
                        return 0;
                    c = 0;
                }
            }
        }
        if (c && run_chunk(s, type, c, mean + n - c, ctx + n - c) != 0)
            return 0;
        if (n)
            return n;
    }
    return 0;
}

const struct codec_pixcode_predictor *codec_pixnet_predictor(const struct codec_pixnet *m)
{
    return m ? &m->pred : NULL;
}

/* ---- training samples and packing --------------------------------------------------------- */

int codec_pixnet_samples(const uint16_t *v, uint32_t h, uint32_t w, uint32_t maxval,
                         uint32_t stripe_rows, codec_pixnet_sample_fn fn, void *arg)
{
    if (!v || !fn || h == 0 || w == 0 || maxval > 65535)
        return -EINVAL;
    if (stripe_rows == 0)
        stripe_rows = CODEC_PIXCODE_DEFAULT_STRIPE_ROWS;
    int16_t f[F];
    for (uint32_t y0 = 0; y0 < h; y0 += stripe_rows) {
        uint32_t rows = h - y0 < stripe_rows ? h - y0 : stripe_rows;
        struct grid g = {v + (size_t)y0 * w, w, rows, maxval};
        for (unsigned p = 0; p < NPASS; p++) {
            enum codec_pixnet_pass type;
            uint32_t s;
            pass_of(p, &type, &s);
            for (uint32_t y = 0; y < rows; y++)
                for (uint32_t x = 0; x < w; x++) {
                    if (!in_pass(type, s, y, x))
                        continue;
                    int32_t ref, u;
                    gather(&g, type, s, y, x, f, 1, &ref, &u);
                    int rc = fn(arg, type, f, ref, u, g.v[(size_t)y * w + x]);
                    if (rc)
                        return rc;
                }
        }
    }
    return 0;
}

int codec_pixnet_pack(const void *plane, uint32_t bits, size_t n, uint16_t *out, uint32_t *maxval)
{
    if (!plane || !out || !maxval || (bits != 8 && bits != 16))
        return -EINVAL;
    uint16_t *map = calloc(65536, sizeof(uint16_t));
    if (!map)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        map[bits == 8 ? ((const uint8_t *)plane)[i] : ((const uint16_t *)plane)[i]] = 1;
    uint32_t k = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint32_t used = map[v];
        map[v] = (uint16_t)k;
        k += used;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = map[bits == 8 ? ((const uint8_t *)plane)[i] : ((const uint16_t *)plane)[i]];
    *maxval = k ? k - 1 : 0;
    free(map);
    return 0;
}

/* ---- model file --------------------------------------------------------------------------- */

static bool consts_ok(const struct codec_pixnet_consts *k)
{
    return k->mu_mult > -(1 << 24) && k->mu_mult < (1 << 24) && k->ls_mult > -(1 << 24) &&
           k->ls_mult < (1 << 24) && k->ctx_offset > -(1 << 20) && k->ctx_offset < (1 << 20) &&
           k->mu_shift >= 1 && k->mu_shift <= 40 && k->ls_shift >= 1 && k->ls_shift <= 40;
}

/* A network the predictor can run: 15 in, 2 out, pointwise layers only. */
static bool net_ok(const struct nn_qmodel *q)
{
    if (nn_qmodel_in_channels(q) != F || nn_qmodel_out_channels(q) != 2)
        return false;
    size_t n = nn_qmodel_layer_count(q);
    for (size_t i = 0; i < n; i++) {
        const struct nn_layer_desc *d = nn_qmodel_layer(q, i);
        if (d->type == NN_RELU || d->type == NN_LRELU)
            continue;
        if (d->type != NN_CONV2D || d->kh != 1 || d->kw != 1 || d->stride != 1 || d->pad != 0)
            return false;
    }
    return true;
}

void codec_pixnet_free(struct codec_pixnet *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++)
        nn_qmodel_free(m->net[i]);
    free(m);
}

int codec_pixnet_load(const uint8_t *buf, size_t len, struct codec_pixnet **out)
{
    if (!buf || !out || len < CODEC_PIXNET_HEADER)
        return -EINVAL;
    if (memcmp(buf, CODEC_PIXNET_MAGIC, 4) != 0 || buf[4] != CODEC_PIXNET_VERSION ||
        buf[5] != CODEC_PIXNET_NETS || buf[6] < 1 || buf[6] > CODEC_PIXCODE_MAX_CTX || buf[7] != F)
        return -EINVAL;
    struct codec_pixnet *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = -EINVAL;
    m->contexts = buf[6];
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        const uint8_t *h = buf + 8 + 16 * i;
        struct codec_pixnet_consts *k = &m->k[i];
        k->mu_mult = (int32_t)codec_get_le32(h);
        k->mu_shift = h[4];
        k->ls_shift = h[5];
        k->ls_mult = (int32_t)codec_get_le32(h + 8);
        k->ctx_offset = (int32_t)codec_get_le32(h + 12);
        if (h[6] || h[7] || !consts_ok(k))
            goto fail;
    }
    size_t off = CODEC_PIXNET_HEADER;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        if (len - off < 4)
            goto fail;
        uint32_t b = codec_get_le32(buf + off);
        off += 4;
        if (b < 1 || b > CODEC_PIXNET_MAX_NET || b > len - off)
            goto fail;
        char arch[NN_ARCH_MAX + 1];
        if ((rc = nn_qmodel_load(buf + off, b, &m->net[i], arch)) != 0)
            goto fail;
        rc = -EINVAL;
        if (strcmp(arch, CODEC_PIXNET_ARCH) != 0 || !net_ok(m->net[i]))
            goto fail;
        off += b;
    }
    if (off != len)
        goto fail;
    m->pred = (struct codec_pixcode_predictor){.id = CODEC_PIXNET_ID,
                                               .contexts = m->contexts,
                                               .state_new = pn_new,
                                               .state_free = pn_free,
                                               .begin = pn_begin,
                                               .next = pn_next,
                                               .model = m};
    *out = m;
    return 0;
fail:
    codec_pixnet_free(m);
    return rc;
}

int codec_pixnet_save(const struct nn_qmodel *const nets[CODEC_PIXNET_NETS],
                      const struct codec_pixnet_consts consts[CODEC_PIXNET_NETS], uint8_t contexts,
                      uint8_t **buf, size_t *len)
{
    if (!nets || !consts || !buf || !len || contexts < 1 || contexts > CODEC_PIXCODE_MAX_CTX)
        return -EINVAL;
    uint8_t *nb[CODEC_PIXNET_NETS] = {NULL};
    size_t nl[CODEC_PIXNET_NETS] = {0}, total = CODEC_PIXNET_HEADER;
    int rc = -EINVAL;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        if (!nets[i] || !net_ok(nets[i]) || !consts_ok(&consts[i]))
            goto out;
        if ((rc = nn_qmodel_save(nets[i], CODEC_PIXNET_ARCH, &nb[i], &nl[i])) != 0)
            goto out;
        rc = -EINVAL;
        if (nl[i] > CODEC_PIXNET_MAX_NET)
            goto out;
        total += 4 + nl[i];
    }
    rc = -ENOMEM;
    uint8_t *p = calloc(1, total);
    if (!p)
        goto out;
    memcpy(p, CODEC_PIXNET_MAGIC, 4); // NOLINT(bugprone-not-null-terminated-result): bytes
    p[4] = CODEC_PIXNET_VERSION;
    p[5] = CODEC_PIXNET_NETS;
    p[6] = contexts;
    p[7] = F;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        uint8_t *h = p + 8 + 16 * i;
        codec_put_le32(h, (uint32_t)consts[i].mu_mult);
        h[4] = consts[i].mu_shift;
        h[5] = consts[i].ls_shift;
        codec_put_le32(h + 8, (uint32_t)consts[i].ls_mult);
        codec_put_le32(h + 12, (uint32_t)consts[i].ctx_offset);
    }
    size_t off = CODEC_PIXNET_HEADER;
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++) {
        codec_put_le32(p + off, (uint32_t)nl[i]);
        memcpy(p + off + 4, nb[i], nl[i]);
        off += 4 + nl[i];
    }
    *buf = p;
    *len = total;
    rc = 0;
out:
    for (unsigned i = 0; i < CODEC_PIXNET_NETS; i++)
        free(nb[i]);
    return rc;
}
