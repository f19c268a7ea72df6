// SPDX-License-Identifier: MIT
/*
 * The neural predictor (pixnet.h): coding order, features, the integer network per pass, the
 * model file.
 *
 * A pass is gathered into a feature matrix chunk by chunk (CHUNK pixels, the last chunk padded
 * with zeros) and run through nn_qforward with a context planned once per worker: inference
 * allocates nothing and costs one small integer GEMM per layer per chunk. Everything that turns
 * the network's output into a mean and a context is integer arithmetic fixed by the format.
 * The features of the pixels whose neighbours are all inside (most of them), and the means and
 * contexts, are computed a row run at a time in loops the compiler vectorises, one copy per
 * instruction set (plain, AVX2, AVX-512) chosen when the model is loaded; pixels near a
 * stripe's edges take the general path a pixel at a time.
 */
#include "codec/pixel/pixnet.h"
#include "codec/bytes.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#define F CODEC_PIXNET_FEATURES
#define CHUNK 512u
#define RUN 64u /* interior pixels of a row gathered at once */
#define NPASS 6 /* D(4) C(4) D(2) C(2) D(1) C(1) */
#define FMAX 2047

/* The vectorised loops, one copy per instruction set (all give the same bits). */
typedef void (*feat_fn)(const uint16_t *c, size_t step, const ptrdiff_t *po, size_t n, int16_t f13,
                        int16_t f14, int16_t *f, int32_t *ref, int32_t *u);
struct out_run {
    const int16_t *qmu, *qls;
    const int32_t *ref, *u;
    int32_t maxval, nctx;
};
typedef void (*out_fn)(const struct codec_pixnet_consts *k, const struct out_run *r, size_t n,
                       uint16_t *mean, uint8_t *ctx);
struct kernels {
    feat_fn feat;
    out_fn out;
};

#define MAX_NETS (CODEC_PIXNET_NETS * CODEC_PIXNET_MAX_SETS)

struct codec_pixnet {
    struct nn_qmodel *net[MAX_NETS]; /* set i's network of pass t: net[i * NETS + t] */
    struct codec_pixnet_consts k[MAX_NETS];
    unsigned sets;
    uint8_t contexts;
    struct kernels kern;
    struct codec_pixcode_predictor pred;
};

/* ---- integer helpers ---------------------------------------------------------------------- */

static unsigned bitlen32(uint32_t v)
{
    return v ? 32u - (unsigned)__builtin_clz(v) : 0u;
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

/*
 * rec = floor(2^20 / u) for 1 <= u < 2^24, as a float division (which vectorises): the float
 * quotient is correctly rounded, within a sixteenth of 1/u of 2^20 / u, whose distance to any
 * integer it is not is at least 1/u; so truncation gives the floor (tests check every u of
 * 16-bit images).
 */
static inline int32_t recip20(int32_t u)
{
    return (int32_t)((float)(1 << 20) / (float)u);
}

/*
 * f = clamp(floor((d rec + 2^15) / 2^16), -FMAX, FMAX) in int32 without a branch on the sign:
 * |d| < 8 u (every d is bounded by the sum that makes u), so |d rec| < 2^23, the biased sum
 * is positive and a logical shift floors it.
 */
static inline int16_t norm_feature(int32_t d, int32_t rec)
{
    int32_t q = (int32_t)((uint32_t)(d * rec + (1 << 15) + (1 << 24)) >> 16) - (1 << 8);
    return (int16_t)(q < -FMAX ? -FMAX : q > FMAX ? FMAX : q);
}

/* Normalise the differences d[12] (pixnet.h): f_0..14, u. */
static inline void finish_features(const int32_t *d, int32_t a4, int32_t a8, uint32_t s,
                                   uint32_t maxval, int16_t *f, size_t stride, int32_t ref,
                                   int32_t *ref_out, int32_t *u_out)
{
    int32_t u = 1 + (2 * a4 + a8) / 8;
    int32_t rec = recip20(u);
    for (unsigned i = 0; i < 12; i++)
        f[i * stride] = norm_feature(d[i], rec);
    f[12 * stride] = (int16_t)codec_pixnet_log16((uint32_t)u);
    f[13 * stride] = (int16_t)(16 * (bitlen32(s) - 1));
    f[14 * stride] = (int16_t)(16 * bitlen32(maxval));
    *ref_out = ref;
    *u_out = u;
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

/* ---- vectorised runs ----------------------------------------------------------------------- */

/* codec_pixnet_log16 from the float's exponent and top four mantissa bits (1 <= u < 2^24,
 * exact in a float): LT[m] is m + 1 for m in 4..11, else m. */
static inline int32_t log16_vec(int32_t u)
{
    float fu = (float)u;
    uint32_t b;
    memcpy(&b, &fu, sizeof(b));
    int32_t m = (int32_t)((b >> 19) & 15u);
    return 16 * ((int32_t)(b >> 23) - 127) + m + (m >= 4 && m <= 11);
}

/* floor(a / 2^sh) for |a| < 2^62, 1 <= sh <= 40, as a logical shift of a biased sum. */
static inline int64_t shr_floor(int64_t a, unsigned sh)
{
    const int64_t bias = (int64_t)1 << 62;
    return (int64_t)((uint64_t)(a + bias) >> sh) - (bias >> sh);
}

/*
 * The features of n <= RUN pixels of one row whose neighbours are all inside, as gather()
 * computes them for any pixel: c is the first, step the samples between two, po the
 * neighbours' offsets; f[i * CHUNK + k] gets feature i of pixel k, ref[k] and u[k] its ref
 * and u. Written as loops over the pixels, so that the compiler vectorises them.
 */
static inline __attribute__((always_inline)) void feat_body(const uint16_t *c, size_t step,
                                                            const ptrdiff_t *po, size_t n,
                                                            int16_t f13, int16_t f14, int16_t *f,
                                                            int32_t *ref, int32_t *u)
{
    int32_t v[12][RUN], rec[RUN];
    for (unsigned i = 0; i < 12; i++)
        for (size_t k = 0; k < n; k++)
            v[i][k] = c[po[i] + (ptrdiff_t)(k * step)];
    for (size_t k = 0; k < n; k++) {
        int32_t r = (int32_t)((uint32_t)(v[0][k] + v[1][k] + v[2][k] + v[3][k] + 2) >> 2);
        int32_t a4 = 0, a8 = 0;
        for (unsigned i = 0; i < 4; i++)
            a4 += abs(v[i][k] - r);
        for (unsigned i = 4; i < 12; i++)
            a8 += abs(v[i][k] - r);
        int32_t uu = 1 + (int32_t)((uint32_t)(2 * a4 + a8) >> 3);
        ref[k] = r;
        u[k] = uu;
        rec[k] = recip20(uu);
        f[12 * CHUNK + k] = (int16_t)log16_vec(uu);
        f[13 * CHUNK + k] = f13;
        f[14 * CHUNK + k] = f14;
    }
    for (unsigned i = 0; i < 12; i++)
        for (size_t k = 0; k < n; k++)
            f[i * CHUNK + k] = norm_feature(v[i][k] - ref[k], rec[k]);
}

/* The means and contexts of n pixels from the network's outputs (pixnet.h), written to
 * vectorise. */
static inline __attribute__((always_inline)) void out_body(const struct codec_pixnet_consts *kc,
                                                           const struct out_run *r, size_t n,
                                                           uint16_t *mean, uint8_t *ctx)
{
    const int64_t mm = kc->mu_mult, lm = kc->ls_mult;
    const int64_t mr = (int64_t)1 << (kc->mu_shift - 1), lr = (int64_t)1 << (kc->ls_shift - 1);
    const unsigned ms = kc->mu_shift, ls = kc->ls_shift;
    const int32_t c0 = kc->ctx_offset + (1 << 26), top = r->nctx - 1;
    for (size_t i = 0; i < n; i++) {
        /* |q_mu u MU| < 2^15 2^17 2^24 and |q_ls LM| < 2^39: shr_floor's bound holds */
        int64_t m = r->ref[i] + shr_floor((int64_t)r->qmu[i] * r->u[i] * mm + mr, ms);
        mean[i] = (uint16_t)(m < 0 ? 0 : m > r->maxval ? r->maxval : m);
        int64_t t = shr_floor((int64_t)r->qls[i] * lm + lr, ls) + log16_vec(r->u[i]);
        t = t < -(1 << 24) ? -(1 << 24) : t > (1 << 24) ? (1 << 24) : t;
        /* floor((T + C0) / 8): T + C0 + 2^26 > 0 */
        int32_t cx = (int32_t)((uint32_t)((int32_t)t + c0) >> 3) - (1 << 23);
        ctx[i] = (uint8_t)(cx < 0 ? 0 : cx > top ? top : cx);
    }
}

static void feat_c(const uint16_t *c, size_t step, const ptrdiff_t *po, size_t n, int16_t f13,
                   int16_t f14, int16_t *f, int32_t *ref, int32_t *u)
{
    feat_body(c, step, po, n, f13, f14, f, ref, u);
}

static void out_c(const struct codec_pixnet_consts *k, const struct out_run *r, size_t n,
                  uint16_t *mean, uint8_t *ctx)
{
    out_body(k, r, n, mean, ctx);
}

#if defined(__x86_64__) || defined(__i386__)
#define PN_X86 1
#define PN_AVX2 __attribute__((target("avx2")))
#define PN_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
PN_AVX2 static void feat_avx2(const uint16_t *c, size_t step, const ptrdiff_t *po, size_t n,
                              int16_t f13, int16_t f14, int16_t *f, int32_t *ref, int32_t *u)
{
    feat_body(c, step, po, n, f13, f14, f, ref, u);
}

PN_AVX2 static void out_avx2(const struct codec_pixnet_consts *k, const struct out_run *r, size_t n,
                             uint16_t *mean, uint8_t *ctx)
{
    out_body(k, r, n, mean, ctx);
}

PN_AVX512 static void feat_avx512(const uint16_t *c, size_t step, const ptrdiff_t *po, size_t n,
                                  int16_t f13, int16_t f14, int16_t *f, int32_t *ref, int32_t *u)
{
    feat_body(c, step, po, n, f13, f14, f, ref, u);
}

PN_AVX512 static void out_avx512(const struct codec_pixnet_consts *k, const struct out_run *r,
                                 size_t n, uint16_t *mean, uint8_t *ctx)
{
    out_body(k, r, n, mean, ctx);
}
#endif

int codec_pixnet_set_isa(struct codec_pixnet *m, enum codec_pixnet_isa isa)
{
    if (!m)
        return -EINVAL;
#ifdef PN_X86
    bool avx2 = __builtin_cpu_supports("avx2");
    bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (isa == CODEC_PIXNET_ISA_AUTO)
        isa = avx512 ? CODEC_PIXNET_ISA_AVX512 : avx2 ? CODEC_PIXNET_ISA_AVX2 : CODEC_PIXNET_ISA_C;
    if ((isa == CODEC_PIXNET_ISA_AVX2 && !avx2) || (isa == CODEC_PIXNET_ISA_AVX512 && !avx512))
        return -ENOTSUP;
    if (isa == CODEC_PIXNET_ISA_AVX512) {
        m->kern = (struct kernels){feat_avx512, out_avx512};
        return 0;
    }
    if (isa == CODEC_PIXNET_ISA_AVX2) {
        m->kern = (struct kernels){feat_avx2, out_avx2};
        return 0;
    }
#else
    if (isa == CODEC_PIXNET_ISA_AUTO)
        isa = CODEC_PIXNET_ISA_C;
#endif
    if (isa != CODEC_PIXNET_ISA_C)
        return -ENOTSUP;
    m->kern = (struct kernels){feat_c, out_c};
    return 0;
}

/* ---- the predictor ------------------------------------------------------------------------ */

struct pn_state {
    const struct codec_pixnet *m;
    struct grid g;
    uint32_t width_cap;
    struct nn_qctx *qc[MAX_NETS];
    unsigned set;     /* the stripe's network set: its first network's index */
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
    for (unsigned i = 0; i < MAX_NETS; i++)
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
    for (unsigned i = 0; ok && i < m->sets * CODEC_PIXNET_NETS; i++)
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
    s->set = s->m->sets > 1 && view->maxval >= CODEC_PIXNET_WIDE ? CODEC_PIXNET_NETS : 0;
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
    if (nn_qforward(s->qc[s->set + type], &in, &out) != 0)
        return -EINVAL;
    struct out_run r = {out.data, out.data + CHUNK,     s->ref,
                        s->u,     (int32_t)s->g.maxval, m->contexts};
    m->kern.out(&m->k[s->set + type], &r, n, mean, ctx);
    return 0;
}

/* A pass being gathered: n pixels named so far, the last c of them in the chunk. */
struct chunk {
    enum codec_pixnet_pass type;
    uint32_t step;
    size_t n, c;
    uint32_t *pos;
    uint16_t *mean;
    uint8_t *ctx;
};

/* k more pixels are in the chunk: run it when full. */
static int chunk_add(struct pn_state *s, struct chunk *ch, size_t k)
{
    ch->n += k;
    ch->c += k;
    if (ch->c < CHUNK)
        return 0;
    int rc = run_chunk(s, ch->type, ch->c, ch->mean + ch->n - ch->c, ch->ctx + ch->n - ch->c);
    ch->c = 0;
    return rc;
}

/* The pixels of row y of the pass into the chunk: runs of pixels whose neighbours are all
 * present at the row's offsets through the vectorised kernel, the others one at a time. */
static int pass_row(struct pn_state *s, struct chunk *ch, uint32_t y)
{
    const struct grid *g = &s->g;
    const uint32_t step = ch->step;
    const bool isd = ch->type == CODEC_PIXNET_PASS_D;
    const uint32_t x0 = isd || y % (2 * step) == 0 ? step : 0, dx = 2 * step;
    /* offsets of the neighbours for this row (the transposition depends on it) */
    const int8_t(*off)[2] = isd ? off_d : off_c;
    const bool tr = !isd && y % (2 * step) == step;
    /* A neighbour's row outside the stripe is mirrored through the pixel's (gather() does
     * this pixel by pixel): then every pixel of the row whose columns are all inside has
     * its twelve neighbours at the same offsets, unless one is absent. */
    ptrdiff_t po[12];
    bool rows_in = true;
    for (unsigned i = 0; i < 12; i++) {
        ptrdiff_t oy = off[i][tr] * (ptrdiff_t)step, ox = off[i][!tr] * (ptrdiff_t)step;
        if ((ptrdiff_t)y + oy < 0 || (ptrdiff_t)y + oy >= (ptrdiff_t)g->rows)
            oy = -oy;
        if ((ptrdiff_t)y + oy < 0 || (ptrdiff_t)y + oy >= (ptrdiff_t)g->rows)
            rows_in = false;
        po[i] = oy * (ptrdiff_t)g->w + ox;
    }
    const int16_t f13 = (int16_t)(16 * (bitlen32(step) - 1)),
                  f14 = (int16_t)(16 * bitlen32(g->maxval));
    for (uint32_t x = x0; x < g->w;) {
        size_t k = 0; /* interior pixels from x on */
        if (rows_in && x >= 3 * step && x + 3 * step < g->w)
            k = (g->w - 3 * step - 1 - x) / dx + 1;
        if (k == 0) {
            ch->pos[ch->n] = y * g->w + x;
            gather(g, ch->type, step, y, x, s->feat + ch->c, CHUNK, &s->ref[ch->c], &s->u[ch->c]);
            x += dx;
            if (chunk_add(s, ch, 1) != 0)
                return -EINVAL;
            continue;
        }
        if (k > RUN)
            k = RUN;
        if (k > CHUNK - ch->c)
            k = CHUNK - ch->c;
        for (size_t j = 0; j < k; j++)
            ch->pos[ch->n + j] = y * g->w + x + (uint32_t)j * dx;
        s->m->kern.feat(g->v + (size_t)y * g->w + x, dx, po, k, f13, f14, s->feat + ch->c,
                        &s->ref[ch->c], &s->u[ch->c]);
        x += (uint32_t)k * dx;
        if (chunk_add(s, ch, k) != 0)
            return -EINVAL;
    }
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
        const bool isd = type == CODEC_PIXNET_PASS_D;
        struct chunk ch = {type, step, 0, 0, pos, mean, ctx};
        for (uint32_t y = isd ? step : 0; y < g->rows; y += isd ? 2 * step : step)
            if (pass_row(s, &ch, y) != 0)
                return 0;
        if (ch.c && run_chunk(s, type, ch.c, mean + ch.n - ch.c, ctx + ch.n - ch.c) != 0)
            return 0;
        if (ch.n)
            return ch.n;
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
    for (unsigned i = 0; i < MAX_NETS; i++)
        nn_qmodel_free(m->net[i]);
    free(m);
}

/* The networks of a model file: version 1 has one set, version 2 two; 0 when malformed. */
static unsigned file_nets(const uint8_t *buf, size_t len)
{
    if (len < CODEC_PIXNET_HEADER || memcmp(buf, CODEC_PIXNET_MAGIC, 4) != 0 || buf[6] < 1 ||
        buf[6] > CODEC_PIXCODE_MAX_CTX || buf[7] != F)
        return 0;
    unsigned nets = buf[4] == 1 ? CODEC_PIXNET_NETS : buf[4] == 2 ? MAX_NETS : 0;
    return buf[5] == nets && len >= 8 + 16 * (size_t)nets ? nets : 0;
}

int codec_pixnet_load(const uint8_t *buf, size_t len, struct codec_pixnet **out)
{
    if (!buf || !out)
        return -EINVAL;
    unsigned nets = file_nets(buf, len);
    if (!nets)
        return -EINVAL;
    struct codec_pixnet *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = -EINVAL;
    m->contexts = buf[6];
    m->sets = nets / CODEC_PIXNET_NETS;
    for (unsigned i = 0; i < nets; i++) {
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
    size_t off = 8 + 16 * (size_t)nets;
    for (unsigned i = 0; i < nets; i++) {
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
    codec_pixnet_set_isa(m, CODEC_PIXNET_ISA_AUTO);
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
    p[4] = 1;                         /* one set of networks */
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

int codec_pixnet_merge(const uint8_t *narrow, size_t nlen, const uint8_t *wide, size_t wlen,
                       uint8_t **buf, size_t *len)
{
    if (!narrow || !wide || !buf || !len)
        return -EINVAL;
    if (file_nets(narrow, nlen) != CODEC_PIXNET_NETS ||
        file_nets(wide, wlen) != CODEC_PIXNET_NETS || narrow[6] != wide[6])
        return -EINVAL;
    struct codec_pixnet *m = NULL;
    int rc = codec_pixnet_load(narrow, nlen, &m);
    codec_pixnet_free(m);
    m = NULL;
    if (rc == 0)
        rc = codec_pixnet_load(wide, wlen, &m);
    codec_pixnet_free(m);
    if (rc != 0)
        return rc;
    /* one file: the header's constants of both, then the networks of both, as they are */
    const size_t h1 = CODEC_PIXNET_HEADER, h2 = 8 + 16 * (size_t)MAX_NETS;
    size_t total = h2 + (nlen - h1) + (wlen - h1);
    uint8_t *p = malloc(total);
    if (!p)
        return -ENOMEM;
    memcpy(p, narrow, 8);
    p[4] = CODEC_PIXNET_VERSION;
    p[5] = MAX_NETS;
    memcpy(p + 8, narrow + 8, h1 - 8);
    memcpy(p + h1, wide + 8, h1 - 8);
    memcpy(p + h2, narrow + h1, nlen - h1);
    memcpy(p + h2 + (nlen - h1), wide + h1, wlen - h1);
    *buf = p;
    *len = total;
    return 0;
}
