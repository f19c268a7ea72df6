// SPDX-License-Identifier: MIT
/*
 * The lossless pixel coder (pixcode.h): packing, the built-in fixed predictor, hybrid-integer
 * tokens, static rANS per scale context, independent stripes coded by a pool of threads.
 *
 * The encoder makes two passes over each plane: the first runs the predictor and turns every
 * pixel into a token, a context and raw bits (per stripe, in parallel) while counting tokens;
 * the counts become the tables; the second rANS-codes each stripe's tokens backwards. When the
 * used values have gaps, the first pass runs for both packings and the one estimated smaller
 * is kept: trying costs one more pass, guessing wrong costs up to a quarter of the stream.
 * The decoder checks every length against the buffer before it reads, every token and value
 * against the plane's range, and the end state of every stream: malformed input is refused,
 * never read past.
 */
#include "codec/pixel/pixcode.h"
#include "codec/bytes.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pixel/rans.h"

#define NTOK 64u        /* token alphabet: enough for any residual below 2^16 */
#define TOK_SPLIT 16u   /* tokens below this are the value itself */
#define SET_CTX 2u      /* contexts of the value-set gap stream */
#define SAMPLE_EVERY 4u /* a choice of packing is made on one stripe in this many */
#define EST_ROWS 64u    /* the stripe height of the estimates that choose a predictor */

/* ---- small helpers -------------------------------------------------------------------- */

static unsigned bitlen32(uint32_t v)
{
    return v ? 32u - (unsigned)__builtin_clz(v) : 0u;
}

/* Read a minimal varint from in[*off..len). 0 or -EINVAL. */
static int rd_varint(const uint8_t *in, size_t len, size_t *off, uint32_t *v)
{
    struct codec_rd r = {in + *off, len - *off};
    uint64_t x;
    if (codec_rd_var(&r, UINT32_MAX, &x))
        return -EINVAL;
    *off = len - r.left;
    *v = (uint32_t)x;
    return 0;
}

/* Raw bits, least significant first, into a growing buffer. */
struct rawbits {
    struct codec_buf b;
    uint64_t acc;
    unsigned n;
};

static inline void rb_put(struct rawbits *w, uint32_t v, unsigned nb)
{
    w->acc |= (uint64_t)v << w->n;
    w->n += nb;
    if (w->n >= 32) {
        uint8_t t[4];
        codec_put_le32(t, (uint32_t)w->acc);
        codec_buf_put(&w->b, t, 4);
        w->acc >>= 32;
        w->n -= 32;
    }
}

static void rb_flush(struct rawbits *w)
{
    while (w->n > 0) {
        codec_buf_u8(&w->b, (uint8_t)w->acc);
        w->acc >>= 8;
        w->n = w->n >= 8 ? w->n - 8 : 0;
    }
}

struct rawr {
    const uint8_t *p, *end;
    uint64_t acc;
    unsigned n;
    int bad;
};

static inline uint32_t rr_get(struct rawr *r, unsigned nb)
{
    if (r->n < nb) {
        while (r->n <= 56 && r->p < r->end) {
            r->acc |= (uint64_t)*r->p++ << r->n;
            r->n += 8;
        }
        if (r->n < nb) {
            r->bad = 1;
            return 0;
        }
    }
    uint32_t v = (uint32_t)(r->acc & ((1ull << nb) - 1));
    r->acc >>= nb;
    r->n -= nb;
    return v;
}

/* Every byte read, fewer than 8 bits left over, and those zero. */
static int rr_finish(const struct rawr *r)
{
    return !r->bad && r->p == r->end && r->n < 8 && r->acc == 0 ? 0 : -EINVAL;
}

/* ---- hybrid integer tokens and folding --------------------------------------------------- */

static inline unsigned tokenize(uint32_t u, uint32_t *raw, unsigned *nraw)
{
    if (u < TOK_SPLIT) {
        *nraw = 0;
        *raw = 0;
        return u;
    }
    unsigned e = bitlen32(u) - 1; /* >= 4 */
    unsigned top = (u >> (e - 2)) & 3u;
    *nraw = e - 2;
    *raw = u & ((1u << (e - 2)) - 1);
    return TOK_SPLIT + ((e - 4) << 2) + top;
}

/* The folded residual of value v around mean m, both in 0..maxv: a bijection onto 0..maxv. */
static inline uint32_t fold(uint32_t v, uint32_t m, uint32_t maxv)
{
    uint32_t d = m < maxv - m ? m : maxv - m;
    if (v >= m) {
        uint32_t e = v - m;
        return e <= d ? 2 * e : e + d;
    }
    uint32_t e = m - v;
    return e <= d ? 2 * e - 1 : e + d;
}

/* Inverse of fold; u <= maxv is checked by the caller. */
static inline uint32_t unfold(uint32_t u, uint32_t m, uint32_t maxv)
{
    uint32_t d = m < maxv - m ? m : maxv - m;
    if (u <= 2 * d)
        return u & 1 ? m - (u + 1) / 2 : m + u / 2;
    return m < maxv - m ? m + (u - d) : m - (u - d);
}

/* ---- the fixed predictor (id 0) ------------------------------------------------------------ */

#define FX_CTX 20u
#define FX_BIAS 729u

struct fx_bias {
    int32_t b, c, r;
    uint32_t n;
};

struct fx_state {
    struct codec_pixcode_view view;
    uint32_t width_cap, rows_cap;
    uint32_t x, y;
    bool have_prev;
    uint32_t prev_pos, prev_x, prev_erow;
    int32_t prev_pred, prev_med, prev_sign;
    uint32_t prev_bctx;
    uint16_t *err; /* |residual| of the row above and the current row (ping-pong) */
    struct fx_bias bias[FX_BIAS];
};

static void *fx_new(const struct codec_pixcode_predictor *p, uint32_t width, uint32_t rows)
{
    (void)p;
    struct fx_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->err = calloc((size_t)width * 2, sizeof(uint16_t));
    if (!s->err) {
        free(s);
        return NULL;
    }
    s->width_cap = width;
    s->rows_cap = rows;
    return s;
}

static void fx_free(void *st)
{
    struct fx_state *s = st;
    if (s)
        free(s->err);
    free(s);
}

static void fx_begin(void *st, const struct codec_pixcode_view *view)
{
    struct fx_state *s = st;
    s->view = *view;
    s->x = s->y = 0;
    s->have_prev = false;
    for (unsigned i = 0; i < FX_BIAS; i++) {
        s->bias[i].b = 0;
        s->bias[i].c = 0;
        s->bias[i].r = 0;
        s->bias[i].n = 0;
    }
}

static inline int32_t iabs(int32_t v)
{
    return v < 0 ? -v : v;
}

/* Gradient to one of 9 levels -4..4 (0; 1..2; 3..6; 7..20; 21 and more, with sign). */
static const int8_t gq_lut[43] = {-4, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
                                  -2, -2, -2, -2, -1, -1, 0,  1,  1,  2,  2,  2,  2,  3,  3,
                                  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  4};

static inline int32_t gq(int32_t g)
{
    g = g < -21 ? -21 : g > 21 ? 21 : g;
    return gq_lut[g + 21];
}

/* Activity to scale context: two steps per octave, FX_CTX - 1 at most. */
static inline unsigned scale_ctx(uint32_t d)
{
    if (d < 2)
        return d;
    unsigned bl = bitlen32(d);
    unsigned q = 2 * bl - 2 + ((d >> (bl - 2)) & 1u);
    return q < FX_CTX ? q : FX_CTX - 1;
}

static size_t fx_next(void *st, uint32_t *pos, uint16_t *mean, uint8_t *ctx, size_t cap)
{
    struct fx_state *s = st;
    const uint32_t w = s->view.width;
    const int32_t maxv = (int32_t)s->view.maxval;
    (void)cap;
    if (s->have_prev) {
        int32_t v = s->view.v[s->prev_pos];
        int32_t ae = iabs(v - s->prev_pred);
        s->err[s->prev_erow + s->prev_x] = (uint16_t)(ae > 65535 ? 65535 : ae);
        /* c = round(b / n), the mean error of the median in this context over a decaying
         * window, kept with r = b - c * n in (-n/2, n/2] so that it rarely needs a division */
        struct fx_bias *b = &s->bias[s->prev_bctx];
        int32_t q = (v - s->prev_med) * s->prev_sign;
        b->b += q;
        b->r += q - b->c;
        b->n++;
        if (b->n == 64) {
            b->b /= 2;
            b->n /= 2;
            b->r = 2 * (int32_t)b->n; /* forces the recomputation below */
        }
        int32_t n = (int32_t)b->n;
        if (2 * b->r > n || 2 * b->r <= -n) {
            int32_t twice = 2 * b->b + n, den = 2 * n;
            b->c = twice >= 0 ? twice / den : -((den - 1 - twice) / den);
            b->r = b->b - b->c * n;
        }
    }
    if (s->y >= s->view.rows)
        return 0;
    const uint32_t x = s->x, y = s->y;
    const uint16_t *row = s->view.v + (size_t)y * w;
    const uint16_t *ecur = s->err + (y & 1) * w, *eup = s->err + ((y & 1) ^ 1) * w;
    int32_t W, N, NW, NE, WW, eW, eN;
    if (y == 0) {
        W = x ? row[x - 1] : 0;
        WW = x > 1 ? row[x - 2] : W;
        N = NW = NE = W;
        eW = x ? ecur[x - 1] : 0;
        eN = eW;
    } else {
        const uint16_t *up = row - w;
        N = up[x];
        NE = x + 1 < w ? up[x + 1] : N;
        if (x) {
            W = row[x - 1];
            NW = up[x - 1];
            WW = x > 1 ? row[x - 2] : W;
            eW = ecur[x - 1];
        } else {
            W = NW = WW = N;
            eW = eup[0];
        }
        eN = eup[x];
    }
    int32_t mx = W > N ? W : N, mn = W > N ? N : W;
    int32_t p = NW >= mx ? mn : NW <= mn ? mx : W + N - NW;

    int32_t q1 = gq(NE - N), q2 = gq(N - NW), q3 = gq(NW - W);
    int32_t sign = 1;
    if (q1 < 0 || (q1 == 0 && (q2 < 0 || (q2 == 0 && q3 < 0)))) {
        q1 = -q1;
        q2 = -q2;
        q3 = -q3;
        sign = -1;
    }
    uint32_t bctx = (uint32_t)((q1 + 4) * 81 + (q2 + 4) * 9 + (q3 + 4));
    s->prev_med = p;
    p += sign * s->bias[bctx].c;
    p = p < 0 ? 0 : p > maxv ? maxv : p;

    uint32_t act = (uint32_t)(iabs(W - NW) + iabs(N - NW) + iabs(NE - N) + (iabs(W - WW) >> 1)) +
                   (uint32_t)eW + (uint32_t)eN;

    *pos = y * w + x;
    *mean = (uint16_t)p;
    *ctx = (uint8_t)scale_ctx(act);
    s->have_prev = true;
    s->prev_pos = *pos;
    s->prev_x = x;
    s->prev_erow = (y & 1) * w;
    s->prev_pred = p;
    s->prev_sign = sign;
    s->prev_bctx = bctx;
    if (++s->x == w) {
        s->x = 0;
        s->y++;
    }
    return 1;
}

const struct codec_pixcode_predictor codec_pixcode_fixed = {
    .id = 0,
    .contexts = FX_CTX,
    .state_new = fx_new,
    .state_free = fx_free,
    .begin = fx_begin,
    .next = fx_next,
    .model = NULL,
};

/* ---- a pool of workers over the stripes of a plane --------------------------------------- */

struct pool {
    int (*fn)(void *arg, uint32_t item, unsigned worker);
    void *arg;
    uint32_t n;
    atomic_uint next;
    atomic_int err;
};

struct pool_worker {
    struct pool *pool;
    unsigned id;
};

static void *pool_run(void *a)
{
    struct pool_worker *w = a;
    struct pool *p = w->pool;
    for (;;) {
        if (atomic_load(&p->err))
            break;
        unsigned i = atomic_fetch_add(&p->next, 1u);
        if (i >= p->n)
            break;
        int rc = p->fn(p->arg, i, w->id);
        if (rc) {
            int zero = 0;
            atomic_compare_exchange_strong(&p->err, &zero, rc);
        }
    }
    return NULL;
}

/* Run fn(arg, i, worker) for i < n on `threads` workers (worker 0 is the caller). */
static int pool_for(uint32_t n, unsigned threads, int (*fn)(void *, uint32_t, unsigned), void *arg)
{
    struct pool p = {.fn = fn, .arg = arg, .n = n};
    atomic_init(&p.next, 0u);
    atomic_init(&p.err, 0);
    pthread_t tid[CODEC_PIXCODE_MAX_THREADS];
    struct pool_worker w[CODEC_PIXCODE_MAX_THREADS];
    unsigned started = 0;
    for (unsigned t = 1; t < threads; t++) {
        w[t] = (struct pool_worker){&p, t};
        if (pthread_create(&tid[t], NULL, pool_run, &w[t]) != 0)
            break; /* fewer workers: the caller's share grows */
        started = t;
    }
    w[0] = (struct pool_worker){&p, 0};
    pool_run(&w[0]);
    for (unsigned t = 1; t <= started; t++)
        pthread_join(tid[t], NULL);
    return atomic_load(&p.err);
}

/* Per-worker scratch: predictor state and the group buffers. */
struct worker {
    void *pst;
    uint32_t *pos;
    uint16_t *mean;
    uint8_t *ctx;
    uint16_t *pk; /* decoder: one stripe of packed samples */
    size_t cap;
};

static void workers_free(struct worker *w, unsigned n, const struct codec_pixcode_predictor *pred)
{
    if (!w)
        return;
    for (unsigned i = 0; i < n; i++) {
        if (w[i].pst)
            pred->state_free(w[i].pst);
        free(w[i].pos);
        free(w[i].mean);
        free(w[i].ctx);
        free(w[i].pk);
    }
    free(w);
}

static struct worker *workers_new(unsigned n, const struct codec_pixcode_predictor *pred,
                                  uint32_t width, uint32_t rows, bool with_pk)
{
    struct worker *w = calloc(n, sizeof(*w));
    if (!w)
        return NULL;
    size_t cap = (size_t)width * rows;
    for (unsigned i = 0; i < n; i++) {
        w[i].cap = cap;
        w[i].pst = pred->state_new(pred, width, rows);
        w[i].pos = malloc(cap * sizeof(uint32_t));
        w[i].mean = malloc(cap * sizeof(uint16_t));
        w[i].ctx = malloc(cap);
        w[i].pk = with_pk ? malloc(cap * sizeof(uint16_t)) : NULL;
        if (!w[i].pst || !w[i].pos || !w[i].mean || !w[i].ctx || (with_pk && !w[i].pk)) {
            workers_free(w, n, pred);
            return NULL;
        }
    }
    return w;
}

/* ---- geometry ------------------------------------------------------------------------------ */

struct geo {
    uint32_t c, f, h, w, bits, sig, rows, nstripes, nctx;
    size_t plane_samples;
    size_t planes_bytes;
    enum codec_rans_form form; /* of the tables: the stream's version */
};

static int geo_check(struct geo *g)
{
    if (g->bits != 8 && g->bits != 16)
        return -EINVAL;
    if (g->sig < 1 || g->sig > g->bits)
        return -EINVAL;
    if (g->c < 1 || g->c > CODEC_MAX_CHANNELS || g->f < 1 || g->f > CODEC_MAX_FRAMES || g->h < 1 ||
        g->h > CODEC_MAX_DIM || g->w < 1 || g->w > CODEC_MAX_DIM)
        return -EINVAL;
    if (g->rows < 1 || g->rows > CODEC_PIXCODE_MAX_STRIPE_ROWS)
        return -EINVAL;
    if (g->nctx < 1 || g->nctx > CODEC_PIXCODE_MAX_CTX)
        return -EINVAL;
    size_t n;
    if (__builtin_mul_overflow((size_t)g->h, (size_t)g->w, &g->plane_samples) ||
        __builtin_mul_overflow(g->plane_samples, (size_t)g->c * g->f, &n) ||
        __builtin_mul_overflow(n, (size_t)(g->bits / 8), &g->planes_bytes) ||
        g->planes_bytes > CODEC_MAX_PIXEL_BYTES)
        return -EFBIG;
    g->nstripes = (g->h + g->rows - 1) / g->rows;
    return 0;
}

static bool pred_ok(const struct codec_pixcode_predictor *p)
{
    return p && p->contexts >= 1 && p->contexts <= CODEC_PIXCODE_MAX_CTX && p->state_new &&
           p->state_free && p->begin && p->next;
}

/* ---- encoder ------------------------------------------------------------------------------ */

struct trial {
    uint8_t mode;
    uint32_t lo, span, maxv;
    uint16_t *pk;      /* packed plane */
    uint8_t *tok, *cx; /* per pixel, stripe by stripe */
    uint32_t *hist;    /* nstripes x nctx x NTOK */
    struct rawbits *raw;
    struct codec_rans_table tabs[CODEC_PIXCODE_MAX_CTX];  /* per cluster */
    struct codec_rans_table bytab[CODEC_PIXCODE_MAX_CTX]; /* per context: its cluster's */
    uint32_t bounds; /* bit c: context c + 1 starts a cluster */
    uint32_t ntab;
    struct codec_buf set; /* mode 2: the value set as stored */
    double cost;          /* estimated bits */
};

struct enc {
    const struct geo *g;
    const struct codec_pixcode_predictor *pred;
    struct worker *wk;
    struct trial *t;
    uint32_t first, every; /* the stripes a trial codes: first + i every */
    struct codec_buf *ans; /* per stripe */
};

static void trial_free(struct trial *t, uint32_t nstripes)
{
    free(t->pk);
    free(t->tok);
    free(t->cx);
    free(t->hist);
    if (t->raw)
        for (uint32_t j = 0; j < nstripes; j++)
            free(t->raw[j].b.p);
    free(t->raw);
    free(t->set.p);
    memset(t, 0, sizeof(*t));
}

static int enc_tokens(void *arg, uint32_t nth, unsigned worker)
{
    struct enc *e = arg;
    const struct geo *g = e->g;
    struct trial *t = e->t;
    struct worker *wk = &e->wk[worker];
    uint32_t j = e->first + nth * e->every; /* the nth stripe the trial codes */
    uint32_t y0 = j * g->rows;
    uint32_t rows = g->h - y0 < g->rows ? g->h - y0 : g->rows;
    size_t npix = (size_t)rows * g->w, base = (size_t)y0 * g->w;
    struct codec_pixcode_view view = {t->pk + base, g->w, rows, t->maxv};
    uint8_t *tok = t->tok + base, *cx = t->cx + base;
    uint32_t *hist = t->hist + (size_t)j * g->nctx * NTOK;
    struct rawbits *rb = &t->raw[j];
    const uint32_t maxv = t->maxv, nctx = g->nctx;
    memset(hist, 0, sizeof(uint32_t) * nctx * NTOK);
    e->pred->begin(wk->pst, &view);
    size_t i = 0, n;
    while ((n = e->pred->next(wk->pst, wk->pos, wk->mean, wk->ctx, wk->cap)) > 0) {
        if (n > npix - i)
            return -EINVAL;
        for (size_t k = 0; k < n; k++) {
            uint32_t p = wk->pos[k], m = wk->mean[k], c = wk->ctx[k];
            if (p >= npix || m > maxv || c >= nctx)
                return -EINVAL;
            uint32_t raw;
            unsigned nraw;
            unsigned tk = tokenize(fold(view.v[p], m, maxv), &raw, &nraw);
            tok[i] = (uint8_t)tk;
            cx[i] = (uint8_t)c;
            hist[c * NTOK + tk]++;
            if (nraw)
                rb_put(rb, raw, nraw);
            i++;
        }
    }
    if (i != npix)
        return -EINVAL;
    rb_flush(rb);
    return rb->b.err ? -ENOMEM : 0;
}

static int enc_rans(void *arg, uint32_t j, unsigned worker)
{
    struct enc *e = arg;
    const struct geo *g = e->g;
    struct trial *t = e->t;
    (void)worker;
    uint32_t y0 = j * g->rows;
    uint32_t rows = g->h - y0 < g->rows ? g->h - y0 : g->rows;
    size_t npix = (size_t)rows * g->w, base = (size_t)y0 * g->w;
    struct codec_buf *d = &e->ans[j];
    size_t cap = CODEC_RANS_ENC_BOUND(npix);
    d->len = 0;
    if (codec_buf_reserve(d, cap) != 0)
        return -ENOMEM;
    return codec_rans_encode(t->tok + base, t->cx + base, npix, t->bytab, g->nctx, d->p, cap,
                             &d->len);
}

/* Code the gaps of the value set vals[0..k) (mode 2) into t->set. */
static int set_encode(const uint16_t *vals, uint32_t k, enum codec_rans_form form,
                      struct codec_buf *out)
{
    int rc = -ENOMEM;
    uint32_t n = k - 1;
    uint8_t *tok = malloc(n), *cx = malloc(n), *ans = NULL;
    struct rawbits rb = {0};
    uint32_t hist[SET_CTX][NTOK] = {{0}};
    struct codec_rans_table tabs[SET_CTX];
    uint8_t tb[SET_CTX * CODEC_RANS_TABLE_MAX_BYTES];
    if (!tok || !cx)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t gap = (uint32_t)vals[i + 1] - vals[i] - 1, raw;
        unsigned nraw;
        tok[i] = (uint8_t)tokenize(gap, &raw, &nraw);
        cx[i] = (uint8_t)(i > 0 && vals[i] - vals[i - 1] > 1);
        hist[cx[i]][tok[i]]++;
        if (nraw)
            rb_put(&rb, raw, nraw);
    }
    rb_flush(&rb);
    for (unsigned c = 0; c < SET_CTX; c++)
        if ((rc = codec_rans_normalize(hist[c], NTOK, form, &tabs[c])) != 0)
            goto out;
    ssize_t tl = codec_rans_tables_write(tabs, SET_CTX, form, tb, sizeof(tb));
    if (tl < 0) {
        rc = (int)tl;
        goto out;
    }
    size_t cap = CODEC_RANS_ENC_BOUND(n), al = 0;
    rc = -ENOMEM;
    if (!(ans = malloc(cap)))
        goto out;
    if ((rc = codec_rans_encode(tok, cx, n, tabs, SET_CTX, ans, cap, &al)) != 0)
        goto out;
    codec_buf_var(out, k);
    codec_buf_put(out, tb, (size_t)tl);
    codec_buf_var(out, (uint32_t)al);
    codec_buf_var(out, (uint32_t)rb.b.len);
    codec_buf_put(out, ans, al);
    codec_buf_put(out, rb.b.p, rb.b.len);
    rc = out->err || rb.b.err ? -ENOMEM : 0;
out:
    free(ans);
    free(rb.b.p);
    free(tok);
    free(cx);
    return rc;
}

/* Bits of the table made from h[0..NTOK) plus the data it codes; the table in *t. */
static double cluster_cost(const uint32_t *h, enum codec_rans_form form, struct codec_rans_table *t)
{
    if (codec_rans_normalize(h, NTOK, form, t) != 0)
        return HUGE_VAL;
    return codec_rans_cost(h, NTOK, t) + (double)codec_rans_table_bits(t, form);
}

/*
 * Merge adjacent scale contexts while that saves bits (a table costs more than it gains where
 * a context codes few pixels), greedily, best saving first. Fills t->tabs, t->bytab, t->bounds,
 * t->ntab from the summed counts hist[nctx][NTOK]; returns the estimated bits of tables and
 * tokens.
 */
static double cluster(uint32_t nctx, enum codec_rans_form form, const uint32_t *hist,
                      struct trial *t)
{
    uint32_t start[CODEC_PIXCODE_MAX_CTX + 1], n = nctx;
    uint32_t h[CODEC_PIXCODE_MAX_CTX][NTOK], m[NTOK];
    double cost[CODEC_PIXCODE_MAX_CTX], pair[CODEC_PIXCODE_MAX_CTX] = {0};
    struct codec_rans_table tab[CODEC_PIXCODE_MAX_CTX], tmp;
    for (uint32_t c = 0; c < nctx; c++) {
        start[c] = c;
        memcpy(h[c], hist + (size_t)c * NTOK, sizeof(h[c]));
        cost[c] = cluster_cost(h[c], form, &tab[c]);
    }
    start[nctx] = nctx;
    for (uint32_t c = 0; c + 1 < n; c++) {
        for (unsigned k = 0; k < NTOK; k++)
            m[k] = h[c][k] + h[c + 1][k];
        pair[c] = cluster_cost(m, form, &tmp);
    }
    while (n > 1) {
        uint32_t best = 0;
        double save = -1;
        for (uint32_t c = 0; c + 1 < n; c++)
            if (cost[c] + cost[c + 1] - pair[c] > save) {
                save = cost[c] + cost[c + 1] - pair[c];
                best = c;
            }
        if (save <= 0)
            break;
        for (unsigned k = 0; k < NTOK; k++)
            h[best][k] += h[best + 1][k];
        cost[best] = cluster_cost(h[best], form, &tab[best]);
        for (uint32_t c = best + 1; c + 1 < n; c++) {
            memcpy(h[c], h[c + 1], sizeof(h[c]));
            cost[c] = cost[c + 1];
            tab[c] = tab[c + 1];
            pair[c] = pair[c + 1];
        }
        for (uint32_t c = best + 1; c < n; c++)
            start[c] = start[c + 1];
        n--;
        for (uint32_t c = best ? best - 1 : 0; c <= best && c + 1 < n; c++) {
            for (unsigned k = 0; k < NTOK; k++)
                m[k] = h[c][k] + h[c + 1][k];
            pair[c] = cluster_cost(m, form, &tmp);
        }
    }
    double bits = 0;
    t->bounds = 0;
    t->ntab = n;
    for (uint32_t c = 0; c < n; c++) {
        bits += cost[c];
        t->tabs[c] = tab[c];
        if (c)
            t->bounds |= 1u << (start[c] - 1);
        for (uint32_t x = start[c]; x < start[c + 1]; x++)
            t->bytab[x] = tab[c];
    }
    return bits + (double)(nctx - 1);
}

/*
 * Pack the plane's samples through lut into t->pk and code it into t: every stripe (every = 1), or,
 * to choose between packings at less cost, the stripes first + i every, whose estimated bits are
 * scaled to the whole plane.
 */
static int trial_run(struct enc *e, struct trial *t, const void *plane, const uint16_t *lut,
                     unsigned threads, uint32_t every)
{
    const struct geo *g = e->g;
    size_t ns = g->plane_samples;
    e->every = every;
    e->first = every / 2;
    uint32_t nj = (g->nstripes - e->first + every - 1) / every;
    t->pk = malloc(ns * sizeof(uint16_t));
    t->tok = malloc(ns);
    t->cx = malloc(ns);
    t->hist = malloc((size_t)g->nstripes * g->nctx * NTOK * sizeof(uint32_t));
    t->raw = calloc(g->nstripes, sizeof(*t->raw));
    if (!t->pk || !t->tok || !t->cx || !t->hist || !t->raw)
        return -ENOMEM;
    if (g->bits == 8)
        for (size_t i = 0; i < ns; i++)
            t->pk[i] = lut[((const uint8_t *)plane)[i]];
    else
        for (size_t i = 0; i < ns; i++)
            t->pk[i] = lut[((const uint16_t *)plane)[i]];
    e->t = t;
    int rc = pool_for(nj, threads, enc_tokens, e);
    if (rc)
        return rc;
    /* the stripes' counts, summed into the first one's */
    uint32_t *sum = t->hist + (size_t)e->first * g->nctx * NTOK;
    size_t pix = 0;
    for (uint32_t j = e->first; j < g->nstripes; j += every) {
        const uint32_t *h = t->hist + (size_t)j * g->nctx * NTOK;
        for (size_t i = 0; j > e->first && i < (size_t)g->nctx * NTOK; i++)
            sum[i] += h[i];
        pix += (size_t)(g->h - j * g->rows < g->rows ? g->h - j * g->rows : g->rows) * g->w;
    }
    double bits = cluster(g->nctx, g->form, sum, t);
    for (uint32_t j = e->first; j < g->nstripes; j += every)
        bits += 8.0 * (double)(t->raw[j].b.len + 8);
    t->cost = bits * ((double)ns / (double)pix) + 8.0 * (double)t->set.len;
    return 0;
}

/* The geometry of the estimates that choose a packing or a predictor: stripes of at most
 * EST_ROWS rows, whatever the stream's height, so that a quarter of them is a sample even of a
 * short image. */
static struct geo est_geo(const struct geo *g)
{
    struct geo ge = *g;
    if (ge.rows > EST_ROWS) {
        ge.rows = EST_ROWS;
        ge.nstripes = (g->h + EST_ROWS - 1) / EST_ROWS;
    }
    return ge;
}

/*
 * Code one plane into out. With est: only estimate its bits on a sample of its stripes (the
 * middle one of each four; of fewer, the middle one) into *est and the packing that would be
 * chosen into *pack; out is not touched.
 */
static int enc_plane(struct enc *e, const void *plane, const struct codec_pixcode_opts *o,
                     unsigned threads, struct codec_buf *out, double *est,
                     enum codec_pixcode_pack *pack)
{
    const struct geo *g = e->g;
    const size_t ns = g->plane_samples;
    const uint32_t nvals = 1u << g->sig;
    int rc = -ENOMEM;
    uint32_t *count = calloc(nvals, sizeof(uint32_t));
    uint16_t *lut[2] = {malloc(nvals * sizeof(uint16_t)), malloc(nvals * sizeof(uint16_t))};
    uint16_t *vals = NULL;
    struct trial tr[2];
    memset(tr, 0, sizeof(tr));
    struct trial *best = NULL;
    if (!count || !lut[0] || !lut[1])
        goto out;
    rc = -EINVAL;
    if (g->bits == 8) {
        const uint8_t *p = plane;
        for (size_t i = 0; i < ns; i++) {
            if (p[i] >= nvals)
                goto out;
            count[p[i]]++;
        }
    } else {
        const uint16_t *p = plane;
        for (size_t i = 0; i < ns; i++) {
            if (p[i] >= nvals)
                goto out;
            count[p[i]]++;
        }
    }
    uint32_t lo = 0, hi = 0, k = 0;
    while (!count[lo])
        lo++;
    for (uint32_t v = lo; v < nvals; v++)
        if (count[v]) {
            hi = v;
            k++;
        }
    bool gaps = k < hi - lo + 1;
    /* trial 0: range or none */
    tr[0].mode = o->pack == CODEC_PIXCODE_PACK_NONE ? 0 : 1;
    tr[0].lo = tr[0].mode ? lo : 0;
    tr[0].span = tr[0].mode ? hi - lo : nvals - 1;
    tr[0].maxv = tr[0].span;
    bool try_range = o->pack != CODEC_PIXCODE_PACK_SET || !gaps;
    bool try_set =
        gaps && (o->pack == CODEC_PIXCODE_PACK_SET || o->pack == CODEC_PIXCODE_PACK_AUTO);
    /* Both packings: the choice is an estimate on a sample where there are four estimate
     * stripes or more (1.25 passes of the predictor and a packing's, instead of 2); a shorter
     * plane is coded both ways in full */
    struct geo ge = est_geo(g);
    if (!est && try_range && try_set && ge.nstripes >= SAMPLE_EVERY) {
        struct enc ee = *e;
        ee.g = &ge;
        double b;
        enum codec_pixcode_pack pk;
        if ((rc = enc_plane(&ee, plane, o, threads, NULL, &b, &pk)) != 0)
            goto out;
        try_range = pk != CODEC_PIXCODE_PACK_SET;
        try_set = !try_range;
    }
    uint32_t every = !est ? 1 : g->nstripes >= SAMPLE_EVERY ? SAMPLE_EVERY : g->nstripes;
    if (try_range) {
        for (uint32_t v = 0; v < nvals; v++)
            lut[0][v] = (uint16_t)(v >= tr[0].lo ? v - tr[0].lo : 0);
        if ((rc = trial_run(e, &tr[0], plane, lut[0], threads, every)) != 0)
            goto out;
        best = &tr[0];
    }
    if (try_set) {
        struct trial *t = &tr[1];
        t->mode = 2;
        t->lo = lo;
        t->span = hi - lo;
        t->maxv = k - 1;
        rc = -ENOMEM;
        assert(k > 0); /* there are gaps, so at least two values */
        if (!(vals = malloc(k * sizeof(uint16_t))))
            goto out;
        uint32_t i = 0;
        memset(lut[1], 0, nvals * sizeof(uint16_t));
        for (uint32_t v = lo; v <= hi; v++)
            if (count[v]) {
                lut[1][v] = (uint16_t)i;
                vals[i++] = (uint16_t)v;
            }
        if ((rc = set_encode(vals, k, g->form, &t->set)) != 0)
            goto out;
        if ((rc = trial_run(e, t, plane, lut[1], threads, every)) != 0)
            goto out;
        if (!best || t->cost < best->cost)
            best = t;
    }
    if (est) {
        *est = best->cost;
        *pack = best->mode == 2   ? CODEC_PIXCODE_PACK_SET
                : best->mode == 1 ? CODEC_PIXCODE_PACK_RANGE
                                  : CODEC_PIXCODE_PACK_NONE;
        rc = 0;
        goto out;
    }
    e->t = best;
    if ((rc = pool_for(g->nstripes, threads, enc_rans, e)) != 0)
        goto out;
    codec_buf_u8(out, best->mode);
    if (best->mode) {
        codec_buf_var(out, best->lo);
        codec_buf_var(out, best->span);
    }
    if (best->mode == 2)
        codec_buf_put(out, best->set.p, best->set.len);
    for (uint32_t c = 0; c + 1 < g->nctx; c += 8)
        codec_buf_u8(out, (uint8_t)(best->bounds >> c));
    uint8_t tb[CODEC_PIXCODE_MAX_CTX * CODEC_RANS_TABLE_MAX_BYTES];
    ssize_t tl = codec_rans_tables_write(best->tabs, best->ntab, g->form, tb, sizeof(tb));
    if (tl < 0) {
        rc = (int)tl;
        goto out;
    }
    codec_buf_put(out, tb, (size_t)tl);
    for (uint32_t j = 0; j < g->nstripes; j++) {
        if (e->ans[j].len > UINT32_MAX || best->raw[j].b.len > UINT32_MAX) {
            rc = -EFBIG;
            goto out;
        }
        codec_buf_var(out, (uint32_t)e->ans[j].len);
        codec_buf_var(out, (uint32_t)best->raw[j].b.len);
    }
    for (uint32_t j = 0; j < g->nstripes; j++) {
        codec_buf_put(out, e->ans[j].p, e->ans[j].len);
        codec_buf_put(out, best->raw[j].b.p, best->raw[j].b.len);
    }
    rc = out->err ? -ENOMEM : 0;
out:
    trial_free(&tr[0], g->nstripes);
    trial_free(&tr[1], g->nstripes);
    free(vals);
    free(lut[0]);
    free(lut[1]);
    free(count);
    return rc;
}

/* The estimated bits of img's planes with e's predictor (enc_plane's estimate) and the
 * packing each plane would take, into packs[plane]. */
static int estimate(const struct enc *e, const struct codec_image *img,
                    const struct codec_pixcode_opts *o, unsigned threads, double *bits,
                    enum codec_pixcode_pack *packs)
{
    /* on est_geo's stripes, whatever the stream's height */
    const struct geo ge = est_geo(e->g), *g = &ge;
    struct enc ee = *e;
    ee.g = &ge;
    size_t bps = g->bits / 8;
    *bits = 0;
    for (size_t p = 0; p < (size_t)g->c * g->f; p++) {
        const uint8_t *plane = (const uint8_t *)img->planes + p * g->plane_samples * bps;
        double b = 0;
        int rc = enc_plane(&ee, plane, o, threads, NULL, &b, &packs[p]);
        if (rc != 0)
            return rc;
        *bits += b;
    }
    return 0;
}

/* Code img with o->pred and with o->alt, each alone, and keep the smaller stream (pred's on a
 * tie). */
static int encode_both(const struct codec_image *img, const struct codec_pixcode_opts *o,
                       uint8_t **out, size_t *out_len)
{
    struct codec_pixcode_opts one = *o;
    uint8_t *s[2] = {NULL, NULL};
    size_t len[2];
    one.alt = NULL;
    int rc = codec_pixcode_encode(img, &one, &s[0], &len[0]);
    one.pred = o->alt;
    if (rc == 0)
        rc = codec_pixcode_encode(img, &one, &s[1], &len[1]);
    if (rc == 0) {
        unsigned k = len[1] < len[0];
        *out = s[k];
        *out_len = len[k];
        s[k] = NULL;
    }
    free(s[0]);
    free(s[1]);
    return rc;
}

int codec_pixcode_encode(const struct codec_image *img, const struct codec_pixcode_opts *opts,
                         uint8_t **out, size_t *out_len)
{
    if (!img || !out || !out_len || !img->planes)
        return -EINVAL;
    struct codec_pixcode_opts o = {0};
    if (opts)
        o = *opts;
    const struct codec_pixcode_predictor *pred = o.pred ? o.pred : &codec_pixcode_fixed;
    if (!pred_ok(pred) || (pred->id == 0 && pred != &codec_pixcode_fixed) || o.pack > 3)
        return -EINVAL;
    if (o.alt == pred)
        o.alt = NULL;
    if (o.alt && (!pred_ok(o.alt) || (o.alt->id == 0 && o.alt != &codec_pixcode_fixed) ||
                  o.alt->id == pred->id))
        return -EINVAL;
    struct geo g = {.c = img->channels,
                    .f = img->frames,
                    .h = img->height,
                    .w = img->width,
                    .bits = img->bits,
                    .sig = img->significant,
                    .rows = o.stripe_rows ? o.stripe_rows : CODEC_PIXCODE_DEFAULT_STRIPE_ROWS,
                    .nctx = pred->contexts,
                    .form = CODEC_RANS_FORM_DELTA};
    int rc = geo_check(&g);
    if (rc)
        return rc;
    if (img->planes_bytes != g.planes_bytes)
        return -EINVAL;
    if (g.rows > g.h)
        g.rows = g.h, g.nstripes = 1;
    if (o.alt && est_geo(&g).nstripes < SAMPLE_EVERY) /* too short for a sample */
        return encode_both(img, &o, out, out_len);
    unsigned threads = o.threads ? o.threads : 1;
    if (threads > CODEC_PIXCODE_MAX_THREADS)
        threads = CODEC_PIXCODE_MAX_THREADS;
    if (threads > g.nstripes)
        threads = g.nstripes;

    struct codec_buf d = {0};
    struct enc e = {.g = &g, .pred = pred}, ea = {0};
    struct geo ga = g;
    const size_t np = (size_t)g.c * g.f, bps = g.bits / 8;
    enum codec_pixcode_pack *packs = NULL;
    e.wk = workers_new(threads, pred, g.w, g.rows, false);
    rc = -ENOMEM;
    if (!e.wk)
        goto out;
    if (o.alt) {
        /* the predictor whose estimate on a sample is smaller codes the image, with the
         * packings that sample chose */
        ga.nctx = o.alt->contexts;
        ea = (struct enc){.g = &ga, .pred = o.alt};
        ea.wk = workers_new(threads, o.alt, g.w, g.rows, false);
        packs = calloc(2 * np, sizeof(*packs));
        if (!ea.wk || !packs)
            goto out;
        double bits[2];
        if ((rc = estimate(&e, img, &o, threads, &bits[0], packs)) != 0 ||
            (rc = estimate(&ea, img, &o, threads, &bits[1], packs + np)) != 0)
            goto out;
        if (bits[1] < bits[0]) {
            struct enc t = e;
            e = ea;
            ea = t;
            memmove(packs, packs + np, np * sizeof(*packs));
        }
    }
    assert(g.nstripes > 0); /* geo_check refuses an empty image */
    rc = -ENOMEM;
    if (!(e.ans = calloc(g.nstripes, sizeof(*e.ans))))
        goto out;
    uint8_t h[CODEC_PIXCODE_HEADER] = {0};
    memcpy(h, CODEC_PIXCODE_MAGIC, 4); // NOLINT(bugprone-not-null-terminated-result): bytes
    h[4] = CODEC_PIXCODE_VERSION;      /* tables of form CODEC_RANS_FORM_DELTA */
    h[5] = e.pred->id;
    h[6] = (uint8_t)g.bits;
    h[7] = (uint8_t)g.sig;
    codec_put_le32(h + 8, g.c);
    codec_put_le32(h + 12, g.f);
    codec_put_le32(h + 16, g.h);
    codec_put_le32(h + 20, g.w);
    codec_put_le32(h + 24, g.rows);
    h[28] = (uint8_t)e.g->nctx;
    codec_buf_put(&d, h, sizeof(h));
    for (size_t p = 0; p < np; p++) {
        const uint8_t *plane = (const uint8_t *)img->planes + p * g.plane_samples * bps;
        struct codec_pixcode_opts po = o;
        if (packs)
            po.pack = packs[p];
        if ((rc = enc_plane(&e, plane, &po, threads, &d, NULL, NULL)) != 0)
            goto out;
    }
    rc = -ENOMEM;
    if (d.err)
        goto out;
    *out = d.p;
    *out_len = d.len;
    d.p = NULL;
    rc = 0;
out:
    if (e.ans)
        for (uint32_t j = 0; j < g.nstripes; j++)
            free(e.ans[j].p);
    free(e.ans);
    workers_free(e.wk, threads, e.pred);
    if (ea.wk)
        workers_free(ea.wk, threads, ea.pred);
    free(packs);
    free(d.p);
    return rc;
}

/* ---- decoder ------------------------------------------------------------------------------ */

struct dplane {
    uint8_t mode;
    uint32_t lo, span, maxv;
    uint16_t *vals; /* mode 2 */
    struct codec_rans_dtable *dt;
    const struct codec_rans_dtable *bydt[CODEC_PIXCODE_MAX_CTX]; /* each context's table */
    const uint8_t **ans, **raw;
    uint32_t *alen, *rlen;
};

static void dplane_free(struct dplane *d)
{
    free(d->vals);
    free(d->dt);
    free(d->ans);
    free(d->raw);
    free(d->alen);
    free(d->rlen);
    memset(d, 0, sizeof(*d));
}

static int parse_header(const uint8_t *buf, size_t len, struct geo *g, uint8_t *pid)
{
    if (!buf || len < CODEC_PIXCODE_HEADER || memcmp(buf, CODEC_PIXCODE_MAGIC, 4) != 0 ||
        buf[4] < 1 || buf[4] > CODEC_PIXCODE_VERSION || buf[29] || buf[30] || buf[31])
        return -EINVAL;
    *pid = buf[5];
    *g = (struct geo){.c = codec_get_le32(buf + 8),
                      .f = codec_get_le32(buf + 12),
                      .h = codec_get_le32(buf + 16),
                      .w = codec_get_le32(buf + 20),
                      .bits = buf[6],
                      .sig = buf[7],
                      .rows = codec_get_le32(buf + 24),
                      .nctx = buf[28],
                      .form = buf[4] == 1 ? CODEC_RANS_FORM_PLAIN : CODEC_RANS_FORM_DELTA};
    int rc = geo_check(g);
    if (rc)
        return -EINVAL;
    if (g->rows > g->h) /* the encoder never writes more rows per stripe than the image has */
        return -EINVAL;
    return 0;
}

static const struct codec_pixcode_predictor *pick_pred(const struct codec_pixcode_predictor *pred,
                                                       uint8_t id, uint32_t nctx)
{
    if (id == 0)
        pred = &codec_pixcode_fixed;
    if (!pred_ok(pred) || pred->id != id || pred->contexts != nctx)
        return NULL;
    return pred;
}

/* Decode the value set of a mode-2 plane. */
static int set_decode(const uint8_t *in, size_t len, size_t *off, enum codec_rans_form form,
                      struct dplane *d)
{
    uint32_t k, al, rl;
    struct codec_rans_table tabs[SET_CTX];
    struct codec_rans_dtable *dt = NULL;
    int rc = -EINVAL;
    if (rd_varint(in, len, off, &k) || k < 2 || k > d->span)
        return -EINVAL;
    ssize_t tl = codec_rans_tables_read(in + *off, len - *off, form, tabs, SET_CTX);
    if (tl < 0)
        return -EINVAL;
    *off += (size_t)tl;
    if (rd_varint(in, len, off, &al) || rd_varint(in, len, off, &rl) || al > len - *off ||
        rl > len - *off - al)
        return -EINVAL;
    const uint8_t *ap = in + *off, *rp = ap + al;
    *off += (size_t)al + rl;
    dt = malloc(SET_CTX * sizeof(*dt));
    d->vals = malloc((size_t)k * sizeof(uint16_t));
    if (!dt || !d->vals) {
        rc = -ENOMEM;
        goto out;
    }
    for (unsigned c = 0; c < SET_CTX; c++)
        codec_rans_dtable_init(&dt[c], &tabs[c]);
    struct codec_rans_dec rd;
    struct rawr rr = {rp, rp + rl, 0, 0, 0};
    if (codec_rans_dec_init(&rd, ap, al))
        goto out;
    uint32_t v = d->lo, prevgap = 0;
    d->vals[0] = (uint16_t)v;
    for (uint32_t i = 1; i < k; i++) {
        const struct codec_rans_dtable *t = &dt[i > 1 && prevgap > 0];
        if (!t->nsym)
            goto out;
        unsigned tk = codec_rans_dec_get(&rd, t, (i - 1) & 1);
        uint32_t gap = tk;
        if (tk >= TOK_SPLIT) {
            unsigned kk = tk - TOK_SPLIT, ex = 4 + (kk >> 2);
            if (ex > 16)
                goto out;
            gap = (4u + (kk & 3u)) << (ex - 2) | rr_get(&rr, ex - 2);
        }
        /* values stay increasing and inside lo..lo+span, with room for the rest */
        if (gap > d->span || v - d->lo + gap + 1 > d->span - (k - 1 - i))
            goto out;
        v += gap + 1;
        d->vals[i] = (uint16_t)v;
        prevgap = gap;
    }
    if (v != d->lo + d->span || codec_rans_dec_finish(&rd) || rr_finish(&rr))
        goto out;
    d->maxv = k - 1;
    rc = 0;
out:
    free(dt);
    return rc;
}

/* Parse one plane from in[*off..len); with dtables, build the decoding tables. */
static int parse_plane(const uint8_t *in, size_t len, size_t *off, const struct geo *g,
                       struct dplane *d, bool dtables)
{
    memset(d, 0, sizeof(*d));
    int rc = -EINVAL;
    if (*off >= len)
        return -EINVAL;
    d->mode = in[(*off)++];
    uint32_t nvals = 1u << g->sig;
    if (d->mode > 2)
        return -EINVAL;
    if (d->mode == 0) {
        d->lo = 0;
        d->span = nvals - 1;
        d->maxv = d->span;
    } else {
        if (rd_varint(in, len, off, &d->lo) || rd_varint(in, len, off, &d->span) ||
            d->lo >= nvals || d->span > nvals - 1 - d->lo)
            return -EINVAL;
        d->maxv = d->span;
    }
    if (d->mode == 2 && (d->span < 2 || (rc = set_decode(in, len, off, g->form, d)) != 0))
        goto fail;
    rc = -EINVAL;
    uint32_t bounds = 0, ntab = 1, cl[CODEC_PIXCODE_MAX_CTX];
    for (uint32_t c = 0; c + 1 < g->nctx; c += 8) {
        if (*off >= len)
            goto fail;
        bounds |= (uint32_t)in[(*off)++] << c;
    }
    if (g->nctx - 1 < 32 && bounds >> (g->nctx - 1))
        goto fail; /* padding bits */
    cl[0] = 0;
    for (uint32_t c = 1; c < g->nctx; c++) {
        ntab += bounds >> (c - 1) & 1u;
        cl[c] = ntab - 1;
    }
    struct codec_rans_table tabs[CODEC_PIXCODE_MAX_CTX];
    ssize_t tl = codec_rans_tables_read(in + *off, len - *off, g->form, tabs, ntab);
    if (tl < 0)
        goto fail;
    *off += (size_t)tl;
    for (uint32_t c = 0; c < ntab; c++)
        if (tabs[c].nsym > NTOK)
            goto fail;
    rc = -ENOMEM;
    d->ans = malloc(g->nstripes * sizeof(*d->ans));
    d->raw = malloc(g->nstripes * sizeof(*d->raw));
    d->alen = malloc(g->nstripes * sizeof(uint32_t));
    d->rlen = malloc(g->nstripes * sizeof(uint32_t));
    if (!d->ans || !d->raw || !d->alen || !d->rlen)
        goto fail;
    rc = -EINVAL;
    size_t total = 0;
    for (uint32_t j = 0; j < g->nstripes; j++) {
        if (rd_varint(in, len, off, &d->alen[j]) || rd_varint(in, len, off, &d->rlen[j]))
            goto fail;
        total += (size_t)d->alen[j] + d->rlen[j];
        if (total > len - *off)
            goto fail;
    }
    for (uint32_t j = 0; j < g->nstripes; j++) {
        d->ans[j] = in + *off;
        *off += d->alen[j];
        d->raw[j] = in + *off;
        *off += d->rlen[j];
    }
    if (dtables) {
        rc = -ENOMEM;
        if (!(d->dt = malloc(ntab * sizeof(*d->dt))))
            goto fail;
        for (uint32_t c = 0; c < ntab; c++)
            codec_rans_dtable_init(&d->dt[c], &tabs[c]);
        for (uint32_t c = 0; c < g->nctx; c++)
            d->bydt[c] = &d->dt[cl[c]];
    }
    return 0;
fail:
    dplane_free(d);
    return rc;
}

struct dec {
    const struct geo *g;
    const struct codec_pixcode_predictor *pred;
    struct worker *wk;
    const struct dplane *dp;
    uint8_t *plane; /* output plane (whole) or one stripe's rows (stripe_only) */
    bool stripe_only;
};

static int dec_stripe(struct dec *e, uint32_t j, struct worker *wk, void *dst)
{
    const struct geo *g = e->g;
    const struct dplane *d = e->dp;
    uint32_t y0 = j * g->rows;
    uint32_t rows = g->h - y0 < g->rows ? g->h - y0 : g->rows;
    size_t npix = (size_t)rows * g->w;
    const uint32_t maxv = d->maxv, nctx = g->nctx;
    uint16_t *pk = wk->pk;
    struct codec_pixcode_view view = {pk, g->w, rows, maxv};
    struct codec_rans_dec rd;
    struct rawr rr = {d->raw[j], d->raw[j] + d->rlen[j], 0, 0, 0};
    if (codec_rans_dec_init(&rd, d->ans[j], d->alen[j]))
        return -EINVAL;
    e->pred->begin(wk->pst, &view);
    size_t i = 0, n;
    while ((n = e->pred->next(wk->pst, wk->pos, wk->mean, wk->ctx, wk->cap)) > 0) {
        if (n > npix - i)
            return -EINVAL;
        for (size_t k = 0; k < n; k++, i++) {
            uint32_t p = wk->pos[k], m = wk->mean[k], c = wk->ctx[k];
            if (p >= npix || m > maxv || c >= nctx)
                return -EINVAL;
            const struct codec_rans_dtable *t = d->bydt[c];
            if (!t->nsym)
                return -EINVAL;
            uint32_t u = codec_rans_dec_get(&rd, t, (unsigned)(i & 1));
            if (u >= TOK_SPLIT) {
                unsigned kk = u - TOK_SPLIT, ex = 4 + (kk >> 2);
                u = (4u + (kk & 3u)) << (ex - 2) | rr_get(&rr, ex - 2);
            }
            if (u > maxv)
                return -EINVAL;
            pk[p] = (uint16_t)unfold(u, m, maxv);
        }
    }
    if (i != npix || codec_rans_dec_finish(&rd) || rr_finish(&rr))
        return -EINVAL;
    /* unpack */
    if (g->bits == 8) {
        uint8_t *o = dst;
        if (d->mode == 2)
            for (size_t q = 0; q < npix; q++)
                o[q] = (uint8_t)d->vals[pk[q]];
        else
            for (size_t q = 0; q < npix; q++)
                o[q] = (uint8_t)(pk[q] + d->lo);
    } else {
        uint16_t *o = dst;
        if (d->mode == 2)
            for (size_t q = 0; q < npix; q++)
                o[q] = d->vals[pk[q]];
        else
            for (size_t q = 0; q < npix; q++)
                o[q] = (uint16_t)(pk[q] + d->lo);
    }
    return 0;
}

static int dec_job(void *arg, uint32_t j, unsigned worker)
{
    struct dec *e = arg;
    size_t off = (size_t)j * e->g->rows * e->g->w * (e->g->bits / 8);
    return dec_stripe(e, j, &e->wk[worker], e->plane + off);
}

int codec_pixcode_info(const uint8_t *buf, size_t len, struct codec_pixcode_info *info)
{
    struct geo g;
    uint8_t pid;
    if (!info || parse_header(buf, len, &g, &pid))
        return -EINVAL;
    *info = (struct codec_pixcode_info){g.c,   g.f,    g.h,        g.w, g.bits,
                                        g.sig, g.rows, g.nstripes, pid, g.planes_bytes};
    return 0;
}

int codec_pixcode_decode(const uint8_t *buf, size_t len, struct codec_image *img,
                         const struct codec_pixcode_predictor *pred, unsigned threads)
{
    struct geo g;
    uint8_t pid;
    if (!img || !img->planes || parse_header(buf, len, &g, &pid))
        return -EINVAL;
    if (img->channels != g.c || img->frames != g.f || img->height != g.h || img->width != g.w ||
        img->bits != g.bits || img->significant != g.sig || img->planes_bytes != g.planes_bytes)
        return -EINVAL;
    pred = pick_pred(pred, pid, g.nctx);
    if (!pred)
        return -EINVAL;
    if (threads < 1)
        threads = 1;
    if (threads > CODEC_PIXCODE_MAX_THREADS)
        threads = CODEC_PIXCODE_MAX_THREADS;
    if (threads > g.nstripes)
        threads = g.nstripes;
    struct dec e = {.g = &g, .pred = pred};
    e.wk = workers_new(threads, pred, g.w, g.rows, true);
    if (!e.wk)
        return -ENOMEM;
    int rc = 0;
    size_t off = CODEC_PIXCODE_HEADER, psz = g.plane_samples * (g.bits / 8);
    for (size_t p = 0; p < (size_t)g.c * g.f && rc == 0; p++) {
        struct dplane d;
        if ((rc = parse_plane(buf, len, &off, &g, &d, true)) != 0)
            break;
        e.dp = &d;
        e.plane = (uint8_t *)img->planes + p * psz;
        rc = pool_for(g.nstripes, threads, dec_job, &e);
        dplane_free(&d);
    }
    if (rc == 0 && off != len)
        rc = -EINVAL;
    workers_free(e.wk, threads, pred);
    return rc;
}

int codec_pixcode_decode_stripe(const uint8_t *buf, size_t len,
                                const struct codec_pixcode_predictor *pred, uint32_t plane,
                                uint32_t stripe, void *out, size_t out_bytes)
{
    struct geo g;
    uint8_t pid;
    if (!out || parse_header(buf, len, &g, &pid))
        return -EINVAL;
    pred = pick_pred(pred, pid, g.nctx);
    if (!pred || plane >= g.c * g.f || stripe >= g.nstripes)
        return -EINVAL;
    uint32_t y0 = stripe * g.rows;
    uint32_t rows = g.h - y0 < g.rows ? g.h - y0 : g.rows;
    if (out_bytes < (size_t)rows * g.w * (g.bits / 8))
        return -EINVAL;
    size_t off = CODEC_PIXCODE_HEADER;
    int rc = 0;
    for (uint32_t p = 0; p <= plane; p++) {
        struct dplane d;
        if ((rc = parse_plane(buf, len, &off, &g, &d, p == plane)) != 0)
            return rc;
        if (p == plane) {
            struct dec e = {.g = &g, .pred = pred, .dp = &d};
            e.wk = workers_new(1, pred, g.w, g.rows, true);
            rc = e.wk ? dec_stripe(&e, stripe, &e.wk[0], out) : -ENOMEM;
            workers_free(e.wk, 1, pred);
        }
        dplane_free(&d);
    }
    return rc;
}
