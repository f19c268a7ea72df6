// SPDX-License-Identifier: MIT
/*
 * Static-table rANS (rans.h): table normalisation, the compact table format, the backwards
 * encoder and the decoder's checks. Normalisation spends its rounding where a frequency step
 * costs the fewest bits, which matters for the small, skewed tables of flat image regions; it
 * is quadratic in the alphabet, which is at most 128 symbols and made once per plane.
 */
#include "codec/pixel/rans.h"
#include "codec/bytes.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static int normalize_exact(const uint32_t *counts, size_t n, struct codec_rans_table *t)
{
    uint64_t total = 0;
    size_t nsym = 0;
    for (size_t s = 0; s < n; s++) {
        total += counts[s];
        if (counts[s])
            nsym = s + 1;
    }
    memset(t, 0, sizeof(*t));
    if (nsym == 0)
        return 0;
    int64_t sum = 0;
    for (size_t s = 0; s < nsym; s++) {
        if (!counts[s])
            continue;
        uint64_t f = (uint64_t)counts[s] * CODEC_RANS_PROB_SCALE / total;
        t->freq[s] = (uint16_t)(f ? f : 1);
        sum += t->freq[s];
    }
    if (sum > (int64_t)CODEC_RANS_PROB_SCALE + (int64_t)nsym)
        return -EINVAL; /* cannot happen: each symbol adds at most 1 over its share */
    /* Settle the difference one step at a time: add where counts/freq is largest (the most
     * bits saved), take where counts/freq is smallest among frequencies above 1. */
    while (sum != (int64_t)CODEC_RANS_PROB_SCALE) {
        size_t best = SIZE_MAX;
        for (size_t s = 0; s < nsym; s++) {
            if (!counts[s] || (sum > (int64_t)CODEC_RANS_PROB_SCALE && t->freq[s] <= 1))
                continue;
            if (best == SIZE_MAX) {
                best = s;
                continue;
            }
            /* counts[s] / freq[s] against counts[best] / freq[best] */
            uint64_t a = (uint64_t)counts[s] * t->freq[best];
            uint64_t b = (uint64_t)counts[best] * t->freq[s];
            if (sum < (int64_t)CODEC_RANS_PROB_SCALE ? a > b : a < b)
                best = s;
        }
        if (best == SIZE_MAX)
            return -EINVAL; /* more than 4096 symbols used */
        if (sum < (int64_t)CODEC_RANS_PROB_SCALE) {
            t->freq[best]++;
            sum++;
        } else {
            t->freq[best]--;
            sum--;
        }
    }
    t->nsym = (uint32_t)nsym;
    return 0;
}

static void set_cum(struct codec_rans_table *t)
{
    uint32_t c = 0;
    for (size_t s = 0; s < t->nsym; s++) {
        t->cum[s] = (uint16_t)c;
        c += t->freq[s];
    }
    t->cum[t->nsym] = (uint16_t)c;
}

static unsigned bit_length(uint32_t v)
{
    return v ? 32u - (unsigned)__builtin_clz(v) : 0u;
}

/* The bits of class k after class kp (kp < 0: the first of its table). */
static unsigned class_bits(enum codec_rans_form form, unsigned k, int kp)
{
    if (form == CODEC_RANS_FORM_PLAIN || kp < 0)
        return 4;
    int d = (int)k - kp;
    return d == 0 ? 1 : d == 1 || d == -1 ? 3 : 6;
}

/* The mantissa bits that follow class k in a table of precision prec. */
static unsigned keep_bits(unsigned k, uint32_t prec)
{
    return k > 1 ? (k - 1 < prec ? k - 1 : prec) : 0;
}

size_t codec_rans_table_bits(const struct codec_rans_table *t, enum codec_rans_form form)
{
    if (t->nsym < 2)
        return 8;
    size_t bits = 8 + 7 + 4;
    int kp = -1;
    for (uint32_t s = 0; s < t->nsym; s++) {
        if (s == t->big)
            continue;
        unsigned k = bit_length(t->freq[s]);
        bits += class_bits(form, k, kp) + keep_bits(k, t->prec);
        kp = (int)k;
    }
    return bits;
}

/* Round the frequencies of exact (all but the largest) to `prec` bits into t; the largest
 * takes the rest. 0, or -1 when the rest would not stay the largest. */
static int quantize(const struct codec_rans_table *exact, uint32_t prec, struct codec_rans_table *t)
{
    *t = *exact;
    t->prec = prec;
    uint32_t big = 0;
    for (uint32_t s = 1; s < t->nsym; s++)
        if (t->freq[s] > t->freq[big])
            big = s;
    t->big = big;
    uint32_t sum = 0, top = 0, before = 0;
    for (uint32_t s = 0; s < t->nsym; s++) {
        if (s == big)
            before = top;
        if (s == big || !t->freq[s])
            continue;
        uint32_t f = t->freq[s];
        unsigned k = bit_length(f);
        if (k - 1 > prec) {
            unsigned drop = k - 1 - prec;
            f = ((f + (1u << (drop - 1))) >> drop) << drop;
        }
        t->freq[s] = (uint16_t)f;
        sum += f;
        top = f > top ? f : top;
    }
    /* the rest must stay the first largest: the table has one form */
    if (sum >= CODEC_RANS_PROB_SCALE || CODEC_RANS_PROB_SCALE - sum < top ||
        CODEC_RANS_PROB_SCALE - sum <= before)
        return -1;
    t->freq[big] = (uint16_t)(CODEC_RANS_PROB_SCALE - sum);
    set_cum(t);
    return 0;
}

int codec_rans_normalize(const uint32_t *counts, size_t n, enum codec_rans_form form,
                         struct codec_rans_table *t)
{
    if (n > CODEC_RANS_MAX_SYMS)
        return -EINVAL;
    struct codec_rans_table exact, q;
    int rc = normalize_exact(counts, n, &exact);
    if (rc)
        return rc;
    if (exact.nsym < 2) {
        *t = exact;
        if (t->nsym)
            set_cum(t);
        return 0;
    }
    double best = HUGE_VAL;
    for (uint32_t prec = 0; prec <= 11; prec++) {
        if (quantize(&exact, prec, &q) != 0)
            continue;
        double bits = codec_rans_cost(counts, n, &q) + (double)codec_rans_table_bits(&q, form);
        if (bits < best) {
            best = bits;
            *t = q;
        }
    }
    if (best == HUGE_VAL) /* cannot happen: at precision 11 the frequencies are exact */
        return -EINVAL;
    return 0;
}

double codec_rans_cost(const uint32_t *counts, size_t n, const struct codec_rans_table *t)
{
    double bits = 0;
    for (size_t s = 0; s < n; s++) {
        if (!counts[s])
            continue;
        if (s >= t->nsym || !t->freq[s])
            return HUGE_VAL;
        bits += (double)counts[s] * (CODEC_RANS_PROB_BITS - log2((double)t->freq[s]));
    }
    return bits;
}

/* Bits least significant first, as in deflate. */
struct bitw {
    uint8_t *out;
    size_t cap, pos;
    uint32_t acc;
    unsigned n;
    int over;
};

static void bw_put(struct bitw *w, uint32_t v, unsigned bits)
{
    for (unsigned i = 0; i < bits; i++) {
        w->acc |= ((v >> i) & 1u) << w->n;
        if (++w->n == 8) {
            if (w->pos < w->cap)
                w->out[w->pos++] = (uint8_t)w->acc;
            else
                w->over = 1;
            w->acc = 0;
            w->n = 0;
        }
    }
}

/* Class k after class kp (class_bits). */
static void class_put(struct bitw *w, enum codec_rans_form form, unsigned k, int kp)
{
    int d = kp < 0 ? 0 : (int)k - kp;
    if (form == CODEC_RANS_FORM_PLAIN || kp < 0) {
        bw_put(w, k, 4);
    } else if (d == 0) {
        bw_put(w, 0, 1);
    } else if (d == 1 || d == -1) {
        bw_put(w, 1, 1);
        bw_put(w, 0, 1);
        bw_put(w, d < 0, 1);
    } else {
        bw_put(w, 3, 2);
        bw_put(w, k, 4);
    }
}

ssize_t codec_rans_tables_write(const struct codec_rans_table *t, size_t ntab,
                                enum codec_rans_form form, uint8_t *out, size_t cap)
{
    if (form != CODEC_RANS_FORM_PLAIN && form != CODEC_RANS_FORM_DELTA)
        return -EINVAL;
    struct bitw w = {.out = out, .cap = cap};
    for (size_t i = 0; i < ntab; i++) {
        const struct codec_rans_table *x = &t[i];
        bw_put(&w, x->nsym, 8);
        if (x->nsym < 2)
            continue;
        bw_put(&w, x->big, 7);
        bw_put(&w, x->prec, 4);
        int kp = -1;
        for (uint32_t s = 0; s < x->nsym; s++) {
            if (s == x->big)
                continue;
            unsigned k = bit_length(x->freq[s]), keep = keep_bits(k, x->prec);
            class_put(&w, form, k, kp);
            kp = (int)k;
            if (keep)
                bw_put(&w, (x->freq[s] >> (k - 1 - keep)) & ((1u << keep) - 1), keep);
        }
    }
    if (w.n)
        bw_put(&w, 0, 8 - w.n);
    if (w.over)
        return -EOVERFLOW;
    return (ssize_t)w.pos;
}

struct bitr {
    const uint8_t *in;
    size_t len, pos;
    uint32_t acc;
    unsigned n;
    int bad;
};

static uint32_t br_get(struct bitr *r, unsigned bits)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bits; i++) {
        if (r->n == 0) {
            if (r->pos == r->len) {
                r->bad = 1;
                return 0;
            }
            r->acc = r->in[r->pos++];
            r->n = 8;
        }
        v |= (r->acc & 1u) << i;
        r->acc >>= 1;
        r->n--;
    }
    return v;
}

/* Class after class kp (class_put); 13 (invalid) for a class out of range or not in its one
 * form. */
static unsigned class_get(struct bitr *r, enum codec_rans_form form, int kp)
{
    if (form == CODEC_RANS_FORM_PLAIN || kp < 0)
        return br_get(r, 4);
    if (br_get(r, 1) == 0)
        return (unsigned)kp;
    if (br_get(r, 1) == 0) {
        int k = br_get(r, 1) ? kp - 1 : kp + 1;
        return k < 0 ? 13u : (unsigned)k;
    }
    unsigned k = br_get(r, 4);
    return (int)k - kp >= -1 && (int)k - kp <= 1 ? 13u : k;
}

ssize_t codec_rans_tables_read(const uint8_t *in, size_t len, enum codec_rans_form form,
                               struct codec_rans_table *t, size_t ntab)
{
    if (form != CODEC_RANS_FORM_PLAIN && form != CODEC_RANS_FORM_DELTA)
        return -EINVAL;
    struct bitr r = {.in = in, .len = len};
    for (size_t i = 0; i < ntab; i++) {
        struct codec_rans_table *x = &t[i];
        memset(x, 0, sizeof(*x));
        uint32_t nsym = br_get(&r, 8);
        if (r.bad || nsym > CODEC_RANS_MAX_SYMS)
            return -EINVAL;
        x->nsym = nsym;
        if (nsym == 1) {
            x->freq[0] = (uint16_t)CODEC_RANS_PROB_SCALE;
            set_cum(x);
        }
        if (nsym < 2)
            continue;
        x->big = br_get(&r, 7);
        x->prec = br_get(&r, 4);
        if (r.bad || x->big >= nsym || x->prec > 11)
            return -EINVAL;
        uint32_t sum = 0, kmax = 0;
        int kp = -1;
        for (uint32_t s = 0; s < nsym; s++) {
            if (s == x->big)
                continue;
            unsigned k = class_get(&r, form, kp);
            if (k > 12)
                return -EINVAL;
            kp = (int)k;
            kmax = k > kmax ? k : kmax;
            uint32_t f = 0;
            if (k) {
                unsigned keep = keep_bits(k, x->prec);
                f = (1u << (k - 1)) | (br_get(&r, keep) << (k - 1 - keep));
            }
            if (r.bad)
                return -EINVAL;
            sum += f;
            if (sum >= CODEC_RANS_PROB_SCALE)
                return -EINVAL;
            x->freq[s] = (uint16_t)f;
        }
        if (x->prec > (kmax ? kmax - 1 : 0) || (x->big != nsym - 1 && !x->freq[nsym - 1]))
            return -EINVAL; /* one form per table: no unused precision, no unused last symbol */
        x->freq[x->big] = (uint16_t)(CODEC_RANS_PROB_SCALE - sum);
        for (uint32_t s = 0; s < nsym; s++)
            if (x->freq[s] > x->freq[x->big] || (s < x->big && x->freq[s] == x->freq[x->big]))
                return -EINVAL; /* b is the first of the most frequent symbols */
        set_cum(x);
    }
    if (r.n && r.acc != 0)
        return -EINVAL; /* padding must be zero: one table block, one byte string */
    return (ssize_t)r.pos;
}

void codec_rans_dtable_init(struct codec_rans_dtable *d, const struct codec_rans_table *t)
{
    d->nsym = t->nsym;
    for (uint32_t s = 0; s < t->nsym; s++) {
        d->freq[s] = t->freq[s];
        d->cum[s] = t->cum[s];
        if (t->freq[s])
            memset(d->sym + t->cum[s], (int)s, t->freq[s]);
    }
}

int codec_rans_encode(const uint8_t *sym, const uint8_t *ctx, size_t n,
                      const struct codec_rans_table *tabs, size_t ntab, uint8_t *out, size_t cap,
                      size_t *len)
{
    if (cap < 8)
        return -EOVERFLOW;
    uint8_t *p = out + cap;
    uint32_t x[2] = {CODEC_RANS_L, CODEC_RANS_L};
    for (size_t i = n; i-- > 0;) {
        size_t c = ctx ? ctx[i] : 0;
        if (c >= ntab)
            return -EINVAL;
        const struct codec_rans_table *t = &tabs[c];
        unsigned s = sym[i];
        if (s >= t->nsym || !t->freq[s])
            return -EINVAL;
        uint32_t f = t->freq[s];
        uint32_t xs = x[i & 1];
        uint32_t xmax = ((CODEC_RANS_L >> CODEC_RANS_PROB_BITS) << 8) * f;
        while (xs >= xmax) {
            if (p == out + 8)
                return -EOVERFLOW;
            *--p = (uint8_t)xs;
            xs >>= 8;
        }
        x[i & 1] = ((xs / f) << CODEC_RANS_PROB_BITS) + (xs % f) + t->cum[s];
    }
    p -= 8;
    codec_put_le32(p, x[0]);
    codec_put_le32(p + 4, x[1]);
    size_t l = (size_t)(out + cap - p);
    memmove(out, p, l);
    *len = l;
    return 0;
}

int codec_rans_dec_init(struct codec_rans_dec *d, const uint8_t *buf, size_t len)
{
    if (len < 8)
        return -EINVAL;
    d->x[0] = codec_get_le32(buf);
    d->x[1] = codec_get_le32(buf + 4);
    for (int i = 0; i < 2; i++)
        if (d->x[i] < CODEC_RANS_L || d->x[i] >= (CODEC_RANS_L << 8))
            return -EINVAL;
    d->p = buf + 8;
    d->end = buf + len;
    d->bad = 0;
    return 0;
}

int codec_rans_dec_finish(const struct codec_rans_dec *d)
{
    if (d->bad || d->p != d->end || d->x[0] != CODEC_RANS_L || d->x[1] != CODEC_RANS_L)
        return -EINVAL;
    return 0;
}
