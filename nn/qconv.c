// SPDX-License-Identifier: MIT
/*
 * Integer convolutions of stride 1 and transposed convolutions, as GEMMs that read their input
 * in place and write their output where it belongs (the layouts are in nn/nn_int.h).
 *
 * Why: an im2col copy of the input, a column matrix in int32 and its col2im scatter-add cost
 * more than the multiply-adds themselves for the small channel counts of the autoencoder. Here
 * the input is kept as channel pairs with a zero border, so that the B matrix of a convolution
 * is the input itself seen through one offset per (tap, channel pair), and the integer GEMM
 * (qgemm.c) hands each tile of results, already requantised (and through a LeakyReLU when one
 * follows), to a store that writes it into the next layer's layout; a residual sum that the
 * layer completes is added in the same store. A transposed convolution is split by output
 * phase into convolutions of stride 1 (nn/nn_int.h), which write every s-th pixel.
 *
 * The trade-off: output columns run over the padded width of the input, so 2 pw columns per row
 * are computed and thrown away (6% at 32 columns), and a layout to plan per activation (qint.c).
 * Integer sums are exact in any order, so the results are those of nn/nn.h's arithmetic, bit
 * for bit, whatever the order of taps and channels.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QC_X86 1
#endif

int nn_qconv_implicit(const struct nn_layer_desc *d)
{
    return d->type == NN_TCONV2D || (d->type == NN_CONV2D && d->stride == 1);
}

/* ---- the model: windows, phases and A matrices ---- */

/* Window of output phase r along an axis of kernel k: taps and offset (nn/nn_int.h). For a
 * transposed convolution, output row s a + r receives kernel rows ki = (r + pad) % s + s j,
 * j >= 0, from input rows a + (r + pad) / s - j. */
static void phase_window(const struct nn_layer_desc *d, uint32_t k, uint32_t r, int32_t *off,
                         uint32_t *taps)
{
    if (d->type == NN_CONV2D) {
        *off = -(int32_t)d->pad;
        *taps = k;
        return;
    }
    uint32_t s = d->stride, k0 = (r + d->pad) % s, c = (r + d->pad) / s;
    *taps = k0 < k ? (k - k0 + s - 1) / s : 0;
    *off = *taps ? (int32_t)c - (int32_t)(*taps - 1) : 0;
}

/* Group the phases of one axis by window. */
static uint32_t group_axis(const struct nn_layer_desc *d, uint32_t k, uint32_t s,
                           struct nn_qaxis *ax, uint32_t *phase)
{
    uint32_t n = 0, *which = phase; /* phase[] holds each phase's group until sorted below */
    for (uint32_t r = 0; r < s; r++) {
        int32_t off;
        uint32_t taps, g;
        phase_window(d, k, r, &off, &taps);
        for (g = 0; g < n && (ax[g].off != off || ax[g].taps != taps); g++)
            ;
        if (g == n)
            ax[n++] = (struct nn_qaxis){off, taps, 0, 0};
        ax[g].count++;
        which[r] = g;
    }
    uint32_t first = 0;
    for (uint32_t g = 0; g < n; g++) {
        ax[g].first = first;
        first += ax[g].count;
        ax[g].count = 0;
    }
    /* Counting sort in place needs the groups saved first. */
    uint32_t grp[NN_MAX_KERNEL];
    memcpy(grp, which, s * sizeof(*grp));
    for (uint32_t r = 0; r < s; r++) {
        struct nn_qaxis *a = &ax[grp[r]];
        phase[a->first + a->count++] = r;
    }
    return n;
}

void nn_qconv_free(struct nn_qconv *cv)
{
    if (!cv)
        return;
    free(cv->a);
    free(cv->rows);
    free(cv);
}

/* Weight of (input channel c, output channel o) at the tap that phases (ry, rx) read at window
 * position (ty, tx). */
static int16_t tap_weight(const struct nn_qlayer *l, const struct nn_qconv *cv, uint32_t c,
                          uint32_t o, uint32_t ry, uint32_t rx, const struct nn_qaxis *ay,
                          const struct nn_qaxis *ax, uint32_t ty, uint32_t tx)
{
    const struct nn_layer_desc *d = &l->d;
    size_t C = d->in_ch, Co = d->out_ch;
    if (d->type == NN_CONV2D)
        return l->w[((o * C + c) * d->kh + ty) * d->kw + tx];
    uint32_t s = cv->s;
    size_t ki = (ry + d->pad) % s + (size_t)s * (ay->taps - 1 - ty);
    size_t kj = (rx + d->pad) % s + (size_t)s * (ax->taps - 1 - tx);
    return l->w[((c * Co + o) * d->kh + ki) * d->kw + kj];
}

int nn_qconv_prepare(struct nn_qlayer *l)
{
    const struct nn_layer_desc *d = &l->d;
    uint32_t s = d->type == NN_TCONV2D ? d->stride : 1, C = d->in_ch, Co = d->out_ch;
    /* One allocation for the small arrays, two for the matrices. */
    size_t head = sizeof(struct nn_qconv) + 2 * s * sizeof(struct nn_qaxis) +
                  2 * s * sizeof(uint32_t) + 2 * (size_t)s * s * sizeof(size_t);
    struct nn_qconv *cv = calloc(1, head);
    if (!cv)
        return -ENOMEM;
    cv->s = s;
    cv->cp = (C + 1) / 2;
    cv->ay = (struct nn_qaxis *)(cv + 1);
    cv->ax = cv->ay + s;
    cv->py = (uint32_t *)(cv->ax + s);
    cv->px = cv->py + s;
    cv->a_off = (size_t *)(void *)(cv->px + s);
    cv->r_off = cv->a_off + (size_t)s * s;
    cv->nay = group_axis(d, d->kh, s, cv->ay, cv->py);
    cv->nax = group_axis(d, d->kw, s, cv->ax, cv->px);
    size_t na = 0, nr = 0;
    for (uint32_t gy = 0; gy < cv->nay; gy++)
        for (uint32_t gx = 0; gx < cv->nax; gx++) {
            size_t g = (size_t)gy * cv->nax + gx;
            size_t rows = nn_q_round((size_t)cv->ay[gy].count * cv->ax[gx].count * Co, NN_QMR);
            size_t k2 = (size_t)cv->ay[gy].taps * cv->ax[gx].taps * cv->cp;
            cv->a_off[g] = na;
            cv->r_off[g] = nr;
            na += rows * 2 * k2;
            nr += rows;
        }
    cv->a = calloc(na ? na : 1, sizeof(*cv->a));
    cv->rows = calloc(nr ? nr : 1, sizeof(*cv->rows));
    if (!cv->a || !cv->rows) {
        nn_qconv_free(cv);
        return -ENOMEM;
    }
    for (uint32_t gy = 0; gy < cv->nay; gy++)
        for (uint32_t gx = 0; gx < cv->nax; gx++) {
            const struct nn_qaxis *ay = &cv->ay[gy], *ax = &cv->ax[gx];
            size_t g = (size_t)gy * cv->nax + gx, rows = (size_t)ay->count * ax->count * Co;
            size_t k2 = (size_t)ay->taps * ax->taps * cv->cp;
            int16_t *a = cv->a + cv->a_off[g];
            struct nn_qrow *rq = cv->rows + cv->r_off[g];
            for (size_t r = 0; r < nn_q_round(rows, NN_QMR); r++)
                rq[r] = (struct nn_qrow){0, 0, 1};
            for (size_t r = 0; r < rows; r++) {
                uint32_t o = (uint32_t)(r % Co), p = (uint32_t)(r / Co);
                uint32_t ry = cv->py[ay->first + p / ax->count];
                uint32_t rx = cv->px[ax->first + p % ax->count];
                rq[r] = (struct nn_qrow){l->b ? l->b[o] : 0, l->k[o], l->k[Co + o]};
                for (uint32_t ty = 0; ty < ay->taps; ty++)
                    for (uint32_t tx = 0; tx < ax->taps; tx++)
                        for (uint32_t c = 0; c < C; c++) {
                            size_t kk = ((size_t)ty * ax->taps + tx) * cv->cp + c / 2;
                            a[r * 2 * k2 + 2 * kk + c % 2] =
                                tap_weight(l, cv, c, o, ry, rx, ay, ax, ty, tx);
                        }
            }
        }
    nn_qconv_free(l->conv);
    l->conv = cv;
    return 0;
}

/* ---- geometry of one pass ---- */

/* Output rows (or columns) of phase r: s a + r < n. */
static uint32_t phase_count(uint32_t n, uint32_t r, uint32_t s)
{
    return r < n ? (n - r + s - 1) / s : 0;
}

static uint32_t axis_count(const struct nn_qconv *cv, const uint32_t *phase,
                           const struct nn_qaxis *a, uint32_t n)
{
    uint32_t m = 0;
    for (uint32_t i = 0; i < a->count; i++) {
        uint32_t c = phase_count(n, phase[a->first + i], cv->s);
        m = c > m ? c : m;
    }
    return m;
}

/* Border an axis of input size n, output size on, needs: every window row of every valid
 * output inside it, and the valid outputs inside one padded row (for the columns). */
static uint32_t axis_pad(const struct nn_qconv *cv, const uint32_t *phase,
                         const struct nn_qaxis *ax, uint32_t na, uint32_t n, uint32_t on)
{
    long long p = 0;
    for (uint32_t g = 0; g < na; g++) {
        const struct nn_qaxis *a = &ax[g];
        long long cnt = axis_count(cv, phase, a, on);
        if (a->taps && cnt) {
            long long lo = -(long long)a->off, hi = cnt + a->off + a->taps - 1 - (long long)n;
            p = lo > p ? lo : p;
            p = hi > p ? hi : p;
        }
        if (cnt > n && (cnt - n + 1) / 2 > p)
            p = (cnt - n + 1) / 2;
    }
    return (uint32_t)p;
}

/* Largest GEMM of a layer: rows and pair-rows. */
static void gemm_max(const struct nn_qconv *cv, uint32_t co, size_t *rows, size_t *k2)
{
    *rows = *k2 = 0;
    for (uint32_t gy = 0; gy < cv->nay; gy++)
        for (uint32_t gx = 0; gx < cv->nax; gx++) {
            size_t r = (size_t)cv->ay[gy].count * cv->ax[gx].count * co;
            size_t k = (size_t)cv->ay[gy].taps * cv->ax[gx].taps * cv->cp;
            *rows = r > *rows ? r : *rows;
            *k2 = k > *k2 ? k : *k2;
        }
}

void nn_qconv_need(const struct nn_qlayer *l, const struct nn_shape *is, const struct nn_shape *os,
                   uint32_t *ph, uint32_t *pw, size_t *work)
{
    const struct nn_qconv *cv = l->conv;
    size_t rows, k2;
    *ph = axis_pad(cv, cv->py, cv->ay, cv->nay, is->h, os->h);
    *pw = axis_pad(cv, cv->px, cv->ax, cv->nax, is->w, os->w);
    gemm_max(cv, l->d.out_ch, &rows, &k2);
    *work = k2 + 2 * rows; /* pair-row offsets; per row its base and its valid extent */
}

/* ---- pair layout ---- */

static size_t pair_slack(uint32_t wp)
{
    return 2 * ((size_t)wp + 2 * NN_QNR);
}

size_t nn_qpair_count(const struct nn_shape *s, uint32_t ph, uint32_t pw)
{
    size_t hp = (size_t)s->h + 2 * (size_t)ph, wp = (size_t)s->w + 2 * (size_t)pw, n = hp;
    if (nn_mul(&n, wp) || nn_mul(&n, 2 * (((size_t)s->c + 1) / 2)) || nn_mul(&n, s->n) ||
        __builtin_add_overflow(n, pair_slack((uint32_t)wp), &n))
        return 0;
    return n;
}

/* dst[2 j] = r0[j], dst[2 j + 1] = r1[j] (r1 NULL: zeros) for j < n. */
static void interleave(const int16_t *r0, const int16_t *r1, size_t n, int16_t *dst)
{
    assert(r0 && dst);
    size_t j = 0;
#ifdef QC_X86
    /* SSE2 is part of x86-64: no run-time check needed. */
    __m128i z = _mm_setzero_si128();
    for (; j + 8 <= n; j += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(r0 + j));
        __m128i b = r1 ? _mm_loadu_si128((const __m128i *)(r1 + j)) : z;
        _mm_storeu_si128((__m128i *)(dst + 2 * j), _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128((__m128i *)(dst + 2 * j + 8), _mm_unpackhi_epi16(a, b));
    }
#endif
    for (; j < n; j++) {
        dst[2 * j] = r0[j];
        dst[2 * j + 1] = (int16_t)(r1 ? r1[j] : 0);
    }
}

struct pair_geom {
    size_t hp, wp, plane, img; /* plane and image in int16 */
    uint32_t cp;
};

static struct pair_geom pair_geom(const struct nn_qview *v)
{
    struct pair_geom g;
    g.hp = v->s.h + 2 * (size_t)v->ph;
    g.wp = v->s.w + 2 * (size_t)v->pw;
    g.plane = 2 * g.hp * g.wp;
    g.cp = (v->s.c + 1) / 2;
    g.img = g.plane * g.cp;
    return g;
}

void nn_qpair_store(const int16_t *x, const struct nn_qview *dst)
{
    struct pair_geom g = pair_geom(dst);
    size_t plane = (size_t)dst->s.h * dst->s.w, row = 2 * g.wp;
    for (uint32_t n = 0; n < dst->s.n; n++)
        for (uint32_t q = 0; q < g.cp; q++) {
            const int16_t *x0 = x + ((size_t)n * dst->s.c + 2 * q) * plane;
            const int16_t *x1 = 2 * q + 1 < dst->s.c ? x0 + plane : NULL;
            int16_t *p = dst->p + n * g.img + q * g.plane;
            memset(p, 0, dst->ph * row * sizeof(int16_t));
            p += dst->ph * row;
            for (uint32_t y = 0; y < dst->s.h; y++, p += row) {
                memset(p, 0, 2 * dst->pw * sizeof(int16_t));
                interleave(x0 + (size_t)y * dst->s.w, x1 ? x1 + (size_t)y * dst->s.w : NULL,
                           dst->s.w, p + 2 * dst->pw);
                memset(p + 2 * ((size_t)dst->pw + dst->s.w), 0, 2 * dst->pw * sizeof(int16_t));
            }
            memset(p, 0, dst->ph * row * sizeof(int16_t));
        }
    memset(dst->p + dst->s.n * g.img, 0, pair_slack((uint32_t)g.wp) * sizeof(int16_t));
}

/* Zero what a layer writing dst in pair layout does not write: the border, the zero channel of
 * an odd channel count, the slack. Leaves the inside alone (it may hold a residual's x). */
static void pair_clear_border(const struct nn_qview *v)
{
    struct pair_geom g = pair_geom(v);
    size_t row = 2 * g.wp, top = v->ph * row, side = 2 * (size_t)v->pw;
    for (uint32_t n = 0; n < v->s.n; n++)
        for (uint32_t q = 0; q < g.cp; q++) {
            int16_t *p = v->p + n * g.img + q * g.plane;
            memset(p, 0, top * sizeof(int16_t));
            memset(p + g.plane - top, 0, top * sizeof(int16_t));
            for (size_t y = v->ph; y < v->ph + (size_t)v->s.h; y++) {
                memset(p + y * row, 0, side * sizeof(int16_t));
                memset(p + y * row + side + 2 * (size_t)v->s.w, 0, side * sizeof(int16_t));
            }
            if (v->s.c % 2 && q == g.cp - 1)
                for (size_t i = top + 1; i < g.plane - top; i += 2)
                    p[i] = 0;
        }
    memset(v->p + v->s.n * g.img, 0, pair_slack((uint32_t)g.wp) * sizeof(int16_t));
}

/* ---- the pass ---- */

struct qstore {
    enum nn_qkern kern;
    uint32_t co, m, wg; /* output channels, GEMM rows, grid width (padded input width) */
    uint32_t ow, fast;
    int16_t *y;           /* output image */
    size_t wp, plane, at; /* output layout: padded width, channel (pair) plane; fast: offset */
    ptrdiff_t sy, sx;     /* output (a, b) of a row at its base + a sy + b sx */
    const ptrdiff_t *base, *extent; /* per row: base; valid a < extent >> 32, b < low half */
    const int32_t *res;             /* residual Mx, Sx, Mf, Sf, or NULL */
    uint32_t lanes;                 /* strided_avx512: the lanes a store fills, from where */
    int16_t perm[32];
};

static inline int16_t res_add(int16_t x, int16_t f, const int32_t *k)
{
    int64_t v = nn_q_rshift((int64_t)x * k[0], k[1]) + nn_q_rshift((int64_t)f * k[2], k[3]);
    return (int16_t)(v < NN_Q_MIN ? NN_Q_MIN : v > NN_Q_MAX ? NN_Q_MAX : v);
}

/*
 * Convolution into pair layout of the same padded width: output (a, b) is grid column
 * j = a wg + b, stored at (j + ph wp + pw) * 2: each tile is one contiguous run, and the
 * columns b >= ow, which wrap into the border, get zeros.
 */
static void store_fast(void *arg, uint32_t r0, uint32_t j0, uint32_t cols,
                       int16_t v[NN_QMR][NN_QNR])
{
    const struct qstore *st = arg;
    for (uint32_t j = j0 / st->wg * st->wg; j < j0 + cols; j += st->wg) {
        uint32_t g0 = j + st->ow, g1 = j + st->wg;
        g0 = g0 > j0 ? g0 - j0 : 0;
        g1 = g1 < j0 + cols ? g1 - j0 : cols;
        for (uint32_t i = 0; g0 < g1 && i < NN_QMR; i++)
            memset(&v[i][g0], 0, (g1 - g0) * sizeof(int16_t));
    }
    for (uint32_t q = 0; q < NN_QMR / 2 && r0 + 2 * q < st->co; q++) {
        int16_t *d = st->y + (size_t)(r0 / 2 + q) * st->plane + st->at + 2 * (size_t)j0;
        if (!st->res) {
            interleave(v[2 * q], v[2 * q + 1], cols, d);
            continue;
        }
        int16_t f[2 * NN_QNR];
        interleave(v[2 * q], v[2 * q + 1], cols, f);
        nn_qres_add(st->kern, d, d, f, 2 * (size_t)cols, st->res);
    }
}

/* Store n values of v at d with stride st->sx, or add them into a residual sum there. */
typedef void (*run_fn)(const struct qstore *st, int16_t *d, const int16_t *v, uint32_t n);

static void run_c(const struct qstore *st, int16_t *d, const int16_t *v, uint32_t n)
{
    if (st->res)
        for (uint32_t t = 0; t < n; t++, d += st->sx)
            *d = res_add(*d, v[t], st->res);
    else
        for (uint32_t t = 0; t < n; t++, d += st->sx)
            *d = v[t];
}

/*
 * Any layout: each row of the tile is one phase of one channel; its columns cross rows of the
 * grid, and each run inside the valid part of a grid row goes to one output row, every s-th
 * pixel (every sx-th int16).
 */
static inline __attribute__((always_inline)) void store_rows(const struct qstore *st, uint32_t r0,
                                                             uint32_t j0, uint32_t cols,
                                                             int16_t v[NN_QMR][NN_QNR], run_fn run)
{
    uint32_t a0 = j0 / st->wg, b0 = j0 % st->wg;
    for (uint32_t i = 0; i < NN_QMR && r0 + i < st->m; i++) {
        int16_t *base = st->y + st->base[r0 + i];
        uint32_t na = (uint32_t)(st->extent[r0 + i] >> 32), nb = (uint32_t)st->extent[r0 + i];
        uint32_t a = a0, b = b0;
        for (uint32_t jj = 0; jj < cols && a < na; a++, b = 0) {
            uint32_t seg = st->wg - b < cols - jj ? st->wg - b : cols - jj;
            if (b < nb)
                run(st, base + (ptrdiff_t)a * st->sy + (ptrdiff_t)b * st->sx, &v[i][jj],
                    (b + seg < nb ? b + seg : nb) - b);
            jj += seg;
        }
    }
}

static void store_c(void *arg, uint32_t r0, uint32_t j0, uint32_t cols, int16_t v[NN_QMR][NN_QNR])
{
    store_rows(arg, r0, j0, cols, v, run_c);
}

#ifdef QC_X86
/* Strides 2 to 16: each masked store fills the lanes of 32 / sx values, which one permutation
 * (vpermw) puts in place, instead of one scalar store per value. */
__attribute__((target("avx512f,avx512bw"))) static void
run_avx512(const struct qstore *st, int16_t *d, const int16_t *v, uint32_t n)
{
    uint32_t sx = (uint32_t)st->sx, per = 32 / sx;
    if (st->res || sx < 2 || sx > 16) {
        run_c(st, d, v, n);
        return;
    }
    __m512i perm = _mm512_loadu_si512((const void *)st->perm);
    __mmask32 full = (__mmask32)((1ull << per) - 1), lanes = (__mmask32)st->lanes;
    uint32_t t = 0;
    for (; t + per <= n; t += per) {
        __m512i x = _mm512_maskz_loadu_epi16(full, v + t);
        _mm512_mask_storeu_epi16(d + (size_t)t * sx, lanes, _mm512_permutexvar_epi16(perm, x));
    }
    if (t < n) {
        uint32_t k = n - t;
        __m512i x = _mm512_maskz_loadu_epi16((__mmask32)((1ull << k) - 1), v + t);
        __mmask32 m = (__mmask32)(st->lanes & (uint32_t)((1ull << (k * sx - (sx - 1))) - 1));
        _mm512_mask_storeu_epi16(d + (size_t)t * sx, m, _mm512_permutexvar_epi16(perm, x));
    }
}

__attribute__((target("avx512f,avx512bw"))) static void
store_avx512(void *arg, uint32_t r0, uint32_t j0, uint32_t cols, int16_t v[NN_QMR][NN_QNR])
{
    store_rows(arg, r0, j0, cols, v, run_avx512);
}
#endif

void nn_qconv_run(enum nn_qkern kern, const struct nn_qlayer *l, const struct nn_qlayer *lrelu,
                  const struct nn_qlayer *resid, const struct nn_qview *in,
                  const struct nn_qview *out, int16_t *tmp, ptrdiff_t *work)
{
    const struct nn_qconv *cv = l->conv;
    struct nn_qview src = *in;
    size_t maxrows, maxk2;
    gemm_max(cv, l->d.out_ch, &maxrows, &maxk2);
    ptrdiff_t *off = work, *base = work + maxk2, *extent = base + maxrows;
    if (!in->pair) {
        size_t w;
        src = (struct nn_qview){tmp, in->s, 1, 0, 0};
        nn_qconv_need(l, &in->s, &out->s, &src.ph, &src.pw, &w);
        nn_qpair_store(in->p, &src);
    }
    struct pair_geom gi = pair_geom(&src), go = pair_geom(out);
    size_t out_img = out->pair ? go.img : (size_t)out->s.c * out->s.h * out->s.w;
    uint32_t s = cv->s;
    if (out->pair)
        pair_clear_border(out);
    struct qstore st = {.kern = kern,
                        .co = l->d.out_ch,
                        .wg = (uint32_t)gi.wp,
                        .ow = out->s.w,
                        .wp = go.wp,
                        .plane = out->pair ? go.plane : (size_t)out->s.h * out->s.w,
                        .at = 2 * ((size_t)out->ph * go.wp + out->pw),
                        .sy = (ptrdiff_t)s * (out->pair ? 2 * (ptrdiff_t)go.wp : out->s.w),
                        .sx = (ptrdiff_t)s * (out->pair ? 2 : 1),
                        .base = base,
                        .extent = extent,
                        .res = resid ? resid->k : NULL};
    /* Lane i of a store takes value i / sx when sx divides i, for 32 / sx values. */
    for (uint32_t i = 0; i < 32; i++) {
        st.perm[i] = (int16_t)(i / st.sx);
        st.lanes |= (i % st.sx == 0 && i / st.sx < 32 / st.sx ? 1u : 0u) << i;
    }
    /* A convolution into a pair layout of the input's padded width writes whole runs. */
    st.fast = out->pair && s == 1 && go.wp == gi.wp && gi.wp == out->s.w + 2 * (size_t)out->pw;
    struct nn_qtile t = {.lo = NN_Q_MIN,
                         .hi = NN_Q_MAX,
                         .lrelu = lrelu != NULL,
                         .lm = lrelu ? lrelu->k[0] : 0,
                         .ls = lrelu ? lrelu->k[1] : 1,
                         .off = off,
                         .store = st.fast ? store_fast : store_c,
                         .arg = &st};
#ifdef QC_X86
    if (!st.fast && (kern == NN_QK_AVX512 || kern == NN_QK_VNNI))
        t.store = store_avx512;
#endif
    for (uint32_t gy = 0; gy < cv->nay; gy++)
        for (uint32_t gx = 0; gx < cv->nax; gx++) {
            const struct nn_qaxis *ay = &cv->ay[gy], *ax = &cv->ax[gx];
            size_t g = (size_t)gy * cv->nax + gx;
            uint32_t nrow = axis_count(cv, cv->py, ay, out->s.h);
            st.m = ay->count * ax->count * st.co;
            t.m = st.m;
            t.k2 = ay->taps * ax->taps * cv->cp;
            t.n = nrow * st.wg;
            t.a = cv->a + cv->a_off[g];
            t.rows = cv->rows + cv->r_off[g];
            if (!t.n || !axis_count(cv, cv->px, ax, out->s.w))
                continue;
            for (uint32_t ty = 0; ty < ay->taps; ty++)
                for (uint32_t tx = 0; tx < ax->taps; tx++)
                    for (uint32_t q = 0; q < cv->cp; q++) {
                        ptrdiff_t row = (ptrdiff_t)ty + ay->off + (ptrdiff_t)src.ph;
                        ptrdiff_t col = (ptrdiff_t)tx + ax->off + (ptrdiff_t)src.pw;
                        off[((size_t)ty * ax->taps + tx) * cv->cp + q] =
                            (ptrdiff_t)(q * gi.plane) + 2 * (row * (ptrdiff_t)gi.wp + col);
                    }
            /* Each row of the GEMM: phase (ry, rx) of channel o, its first output pixel and
             * how many rows and columns of that phase there are. */
            for (uint32_t r = 0; r < st.m; r++) {
                uint32_t o = r % st.co, p = r / st.co;
                uint32_t ry = cv->py[ay->first + p / ax->count];
                uint32_t rx = cv->px[ax->first + p % ax->count];
                base[r] = out->pair
                              ? (ptrdiff_t)((size_t)(o / 2) * go.plane +
                                            2 * ((ry + out->ph) * go.wp + rx + out->pw) + o % 2)
                              : (ptrdiff_t)((size_t)o * st.plane + (size_t)ry * out->s.w + rx);
                extent[r] = (ptrdiff_t)((uint64_t)phase_count(out->s.h, ry, s) << 32 |
                                        phase_count(out->s.w, rx, s));
            }
            for (uint32_t n = 0; n < in->s.n; n++) {
                t.b = src.p + n * gi.img;
                st.y = out->p + n * out_img;
                nn_qgemm_tiles(kern, &t);
            }
        }
}
