// SPDX-License-Identifier: MIT
/*
 * Exact deflate (see deflate.h): a table-driven inflater that keeps every choice the deflater
 * made, an emitter that makes the same choices again, and the serialised description.
 *
 * Trade-off: decoding uses single-level tables as wide as the longest code (up to 2^15 entries,
 * rebuilt per dynamic block): simple to prove safe, at the price of ~64 KiB of table fill per
 * block, small against the 16-64 KiB of output zlib puts in a block. Emit checks everything it
 * is given, so a description from anywhere can never make it write a stream that does not decode
 * to the data.
 */
#include <zlib.h>
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/zlib/zlib_int.h"
#include "codec/zlib/deflate.h"

const uint8_t codec_zlib_cl_order[DFL_NCL] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                              11, 4,  12, 3, 13, 2, 14, 1, 15};
static const uint16_t len_base[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* ---- shared helpers ---------------------------------------------------------------------- */

static int zlib_header_ok(uint8_t cmf, uint8_t flg)
{
    if ((cmf & 15) != 8 || (cmf >> 4) > 7 || ((unsigned)cmf * 256 + flg) % 31 != 0)
        return -EINVAL;
    if (flg & 0x20)
        return -ENOTSUP; /* preset dictionary: the data alone would not rebuild it */
    return 0;
}

/* Kraft check: 0 for a complete or incomplete code, -EINVAL when over-subscribed. */
static int huff_check(const uint8_t *lens, unsigned n, unsigned count[DFL_MAXBITS + 1])
{
    memset(count, 0, sizeof(unsigned) * (DFL_MAXBITS + 1));
    for (unsigned i = 0; i < n; i++)
        count[lens[i]]++;
    count[0] = 0;
    int left = 1;
    for (unsigned l = 1; l <= DFL_MAXBITS; l++) {
        left = left * 2 - (int)count[l];
        if (left < 0)
            return -EINVAL;
    }
    return 0;
}

static unsigned bit_reverse(unsigned code, unsigned len)
{
    unsigned r = 0;
    for (unsigned i = 0; i < len; i++, code >>= 1)
        r = r << 1 | (code & 1);
    return r;
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed as they go on the wire. */
static int huff_codes(const uint8_t *lens, unsigned n, uint16_t *codes)
{
    unsigned count[DFL_MAXBITS + 1], next[DFL_MAXBITS + 1];
    int rc = huff_check(lens, n, count);
    if (rc)
        return rc;
    unsigned code = 0;
    for (unsigned l = 1; l <= DFL_MAXBITS; l++) {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
    }
    for (unsigned i = 0; i < n; i++)
        codes[i] = lens[i] ? (uint16_t)bit_reverse(next[lens[i]]++, lens[i]) : 0;
    return 0;
}

/* Decoding table indexed by the next *bits input bits: symbol << 4 | length, 0 = no code. */
static int huff_table(const uint8_t *lens, unsigned n, uint16_t *table, unsigned *bits)
{
    uint16_t codes[DFL_NLIT];
    int rc = huff_codes(lens, n, codes);
    if (rc)
        return rc;
    unsigned maxlen = 1;
    for (unsigned i = 0; i < n; i++)
        if (lens[i] > maxlen)
            maxlen = lens[i];
    memset(table, 0, sizeof(uint16_t) << maxlen);
    for (unsigned i = 0; i < n; i++)
        if (lens[i])
            for (unsigned j = codes[i]; j < 1u << maxlen; j += 1u << lens[i])
                table[j] = (uint16_t)(i << 4 | lens[i]);
    *bits = maxlen;
    return 0;
}

static void fixed_lens(uint8_t lit[DFL_NLIT], uint8_t dist[DFL_NDIST])
{
    for (unsigned i = 0; i < DFL_NLIT; i++)
        lit[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    memset(dist, 5, DFL_NDIST);
}

/* Code-length op byte (format in deflate.h) -> symbol, extra bits, their count. */
static void op_split(uint8_t op, unsigned *sym, unsigned *extra, unsigned *nbits)
{
    if (op < 16) {
        *sym = op, *extra = 0, *nbits = 0;
    } else if (op < 20) {
        *sym = 16, *extra = op - 16u, *nbits = 2;
    } else if (op < 28) {
        *sym = 17, *extra = op - 20u, *nbits = 3;
    } else {
        *sym = 18, *extra = op - 28u, *nbits = 7;
    }
}

/*
 * Expand a dynamic block's header into its code lengths, checking everything the format asks:
 * ops fill exactly, 16 never first, every op symbol coded, no over-subscribed code, an
 * end-of-block code. lens gets HLIT+257 then HDIST+1 lengths.
 */
int codec_zlib_dyn_lens(const struct dfl_block *b, const uint8_t *ops,
                        uint8_t lens[DFL_NLIT + DFL_NDIST])
{
    uint8_t cl[DFL_NCL] = {0};
    unsigned count[DFL_MAXBITS + 1];
    if (b->hlit > 29 || b->hdist > 31 || b->hclen > 15 || b->nop == 0 || b->nop > DFL_MAXOPS)
        return -EINVAL;
    for (unsigned i = 0; i < b->hclen + 4u; i++) {
        if (b->clen[i] > 7)
            return -EINVAL;
        cl[codec_zlib_cl_order[i]] = b->clen[i];
    }
    if (huff_check(cl, DFL_NCL, count))
        return -EINVAL;
    unsigned nlit = b->hlit + 257u, n = nlit + b->hdist + 1u, i = 0;
    for (unsigned k = 0; k < b->nop; k++) {
        unsigned sym, extra, nbits, rep = 1, v;
        if (ops[k] > 155)
            return -EINVAL;
        op_split(ops[k], &sym, &extra, &nbits);
        if (cl[sym] == 0)
            return -EINVAL;
        if (sym < 16) {
            v = sym;
        } else if (sym == 16) {
            if (i == 0)
                return -EINVAL;
            v = lens[i - 1], rep = 3 + extra;
        } else {
            v = 0, rep = (sym == 17 ? 3 : 11) + extra;
        }
        if (rep > n - i)
            return -EINVAL;
        memset(lens + i, (int)v, rep);
        i += rep;
    }
    if (i != n || lens[256] == 0)
        return -EINVAL;
    if (huff_check(lens, nlit, count) || huff_check(lens + nlit, n - nlit, count))
        return -EINVAL;
    return 0;
}

void codec_deflate_desc_free(struct codec_deflate_desc *desc)
{
    if (!desc)
        return;
    free(desc->blocks);
    free(desc->tok);
    free(desc->ops);
    free(desc->tail);
    free(desc);
}

void codec_deflate_desc_info(const struct codec_deflate_desc *desc, struct codec_deflate_info *info)
{
    memset(info, 0, sizeof(*info));
    info->zlib = desc->zlib;
    info->out_len = desc->out_len;
    info->blocks = desc->nblocks;
    info->tail_len = desc->tail_len;
    for (size_t i = 0; i < desc->nblocks; i++) {
        const struct dfl_block *b = &desc->blocks[i];
        if (b->type == 0) {
            info->stored++;
            continue;
        }
        if (b->type == 1)
            info->fixed++;
        else
            info->dynamic++;
        for (size_t t = b->first_tok; t < b->first_tok + b->ntok; t++) {
            if (TOK_DIST(desc->tok[t]))
                info->matches++;
            else
                info->literals += TOK_LEN(desc->tok[t]);
        }
    }
}

/* ---- record ------------------------------------------------------------------------------ */

/*
 * LSB-first bit reader. Past the end it feeds zero bytes and counts them (virt), so a refill
 * never reads outside the input; consuming any of those bits is truncation.
 */
struct bitrd {
    const uint8_t *start, *p, *end;
    uint64_t buf;
    unsigned cnt;
    size_t virt;
};

static inline void br_refill(struct bitrd *b)
{
    if (b->end - b->p >= 8) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) /* the compiler turns this into one load on x86/arm */
            v = v << 8 | b->p[i];
        b->buf |= v << b->cnt;
        b->p += (63 - b->cnt) >> 3;
        b->cnt |= 56;
        return;
    }
    while (b->cnt <= 56) {
        uint64_t byte = 0;
        if (b->p < b->end)
            byte = *b->p++;
        else
            b->virt++;
        b->buf |= byte << b->cnt;
        b->cnt += 8;
    }
}

/* Bits taken so far; only meaningful while br_truncated() is false. */
static inline size_t br_pos(const struct bitrd *b)
{
    return (size_t)(b->p - b->start) * 8 + b->virt * 8 - b->cnt;
}

static inline bool br_truncated(const struct bitrd *b)
{
    return b->cnt < b->virt * 8;
}

/* n <= 32 bits; call after a refill that covers them. */
static inline unsigned br_take(struct bitrd *b, unsigned n)
{
    unsigned v = (unsigned)(b->buf & ((1ull << n) - 1));
    b->buf >>= n;
    b->cnt -= n;
    return v;
}

struct inflate_state {
    uint16_t lit[1u << DFL_MAXBITS];
    uint16_t dist[1u << DFL_MAXBITS];
    uint16_t cl[1u << 7];
    unsigned litbits, distbits, clbits;
    uint8_t lens[DFL_NLIT + DFL_NDIST];
    uint8_t *out;
    size_t pos, cap, max_out;
};

static int out_reserve(struct inflate_state *s, size_t n)
{
    if (n > s->max_out - s->pos)
        return -EFBIG;
    return codec_grow((void **)&s->out, &s->cap, s->pos + n, 1, s->max_out);
}

int codec_zlib_push_tok(struct codec_deflate_desc *d, uint32_t t)
{
    /* every token produces at least one byte, so there are never more than CODEC_DEFLATE_MAX_OUT */
    int rc = codec_grow((void **)&d->tok, &d->cap_tok, d->ntok + 1, sizeof(uint32_t),
                        CODEC_DEFLATE_MAX_OUT);
    if (rc)
        return rc;
    d->tok[d->ntok++] = t;
    return 0;
}

static int read_dynamic_header(struct bitrd *br, struct inflate_state *s,
                               struct codec_deflate_desc *d, struct dfl_block *blk)
{
    uint8_t cl[DFL_NCL] = {0};
    int rc;
    br_refill(br);
    blk->hlit = (uint8_t)br_take(br, 5);
    blk->hdist = (uint8_t)br_take(br, 5);
    blk->hclen = (uint8_t)br_take(br, 4);
    if (blk->hlit > 29)
        return -EINVAL;
    for (unsigned i = 0; i < blk->hclen + 4u; i++) {
        br_refill(br);
        blk->clen[i] = (uint8_t)br_take(br, 3);
        cl[codec_zlib_cl_order[i]] = blk->clen[i];
    }
    if (br_truncated(br))
        return -EINVAL;
    if ((rc = huff_table(cl, DFL_NCL, s->cl, &s->clbits)) != 0)
        return rc;
    rc = codec_grow((void **)&d->ops, &d->cap_ops, d->nops + DFL_MAXOPS, 1,
                    DFL_MAXOPS * CODEC_DEFLATE_MAX_BLOCKS);
    if (rc)
        return rc;
    blk->first_op = d->nops;
    unsigned nlit = blk->hlit + 257u, n = nlit + blk->hdist + 1u, i = 0;
    while (i < n) {
        br_refill(br);
        unsigned e = s->cl[br->buf & ((1u << s->clbits) - 1)];
        if ((e & 15) == 0)
            return -EINVAL;
        br_take(br, e & 15);
        unsigned sym = e >> 4, rep = 1, v = sym, x;
        uint8_t op = (uint8_t)sym;
        if (sym == 16) {
            if (i == 0)
                return -EINVAL;
            x = br_take(br, 2);
            rep = 3 + x, v = s->lens[i - 1], op = (uint8_t)(16 + x);
        } else if (sym == 17) {
            x = br_take(br, 3);
            rep = 3 + x, v = 0, op = (uint8_t)(20 + x);
        } else if (sym == 18) {
            x = br_take(br, 7);
            rep = 11 + x, v = 0, op = (uint8_t)(28 + x);
        }
        if (br_truncated(br) || rep > n - i)
            return -EINVAL;
        memset(s->lens + i, (int)v, rep);
        i += rep;
        d->ops[d->nops + blk->nop++] = op; /* at most n <= DFL_MAXOPS ops */
    }
    d->nops += blk->nop;
    if (s->lens[256] == 0)
        return -EINVAL; /* the block could never end */
    if ((rc = huff_table(s->lens, nlit, s->lit, &s->litbits)) != 0)
        return rc;
    return huff_table(s->lens + nlit, n - nlit, s->dist, &s->distbits);
}

static int read_codes(struct bitrd *br, struct inflate_state *s, struct codec_deflate_desc *d)
{
    const uint64_t litmask = (1u << s->litbits) - 1, distmask = (1u << s->distbits) - 1;
    uint32_t run = 0;
    int rc;
    for (;;) {
        br_refill(br);
        unsigned e = s->lit[br->buf & litmask];
        if ((e & 15) == 0)
            return -EINVAL;
        br_take(br, e & 15);
        unsigned sym = e >> 4;
        if (sym < 256) {
            if (br_truncated(br))
                return -EINVAL;
            if (s->pos == s->cap && (rc = out_reserve(s, 1)) != 0)
                return rc;
            s->out[s->pos++] = (uint8_t)sym;
            if (++run == CODEC_DEFLATE_MAX_RUN) {
                if ((rc = codec_zlib_push_tok(d, run << 16)) != 0)
                    return rc;
                run = 0;
            }
            continue;
        }
        if (sym == 256)
            break;
        if (sym > 285)
            return -EINVAL;
        unsigned len = len_base[sym - 257] + br_take(br, len_extra[sym - 257]);
        if (sym == 284 && len == 258)
            return -ENOTSUP; /* a second coding of 258 that emit would not choose */
        e = s->dist[br->buf & distmask];
        if ((e & 15) == 0 || (e >> 4) >= 30)
            return -EINVAL;
        br_take(br, e & 15);
        unsigned dist = dist_base[e >> 4] + br_take(br, dist_extra[e >> 4]);
        if (br_truncated(br) || dist > s->pos)
            return -EINVAL;
        if (run) {
            if ((rc = codec_zlib_push_tok(d, run << 16)) != 0)
                return rc;
            run = 0;
        }
        if ((rc = codec_zlib_push_tok(d, (uint32_t)len << 16 | dist)) != 0)
            return rc;
        if (len > s->cap - s->pos && (rc = out_reserve(s, len)) != 0)
            return rc;
        uint8_t *o = s->out + s->pos;
        const uint8_t *from = o - dist;
        if (dist >= len) {
            memcpy(o, from, len);
        } else {
            for (unsigned k = 0; k < len; k++)
                o[k] = from[k];
        }
        s->pos += len;
    }
    if (br_truncated(br))
        return -EINVAL;
    if (run)
        return codec_zlib_push_tok(d, run << 16);
    return 0;
}

/* Raw deflate from in; the bytes after the final block go to *tail_at. */
static int record_raw(const uint8_t *in, size_t in_len, struct inflate_state *s,
                      struct codec_deflate_desc *d, size_t *tail_at)
{
    struct bitrd br = {.start = in, .p = in, .end = in + in_len};
    uint8_t flit[DFL_NLIT], fdist[DFL_NDIST];
    int rc;
    fixed_lens(flit, fdist);
    for (;;) {
        if ((rc = codec_grow((void **)&d->blocks, &d->cap_blocks, d->nblocks + 1,
                             sizeof(struct dfl_block), CODEC_DEFLATE_MAX_BLOCKS)) != 0)
            return rc;
        struct dfl_block *blk = &d->blocks[d->nblocks];
        memset(blk, 0, sizeof(*blk));
        size_t start = s->pos;
        br_refill(&br);
        blk->final = (uint8_t)br_take(&br, 1);
        blk->type = (uint8_t)br_take(&br, 2);
        if (br_truncated(&br) || blk->type == 3)
            return -EINVAL;
        blk->first_tok = d->ntok;
        if (blk->type == 0) {
            size_t bit = br_pos(&br);
            unsigned k = (unsigned)((8 - bit % 8) % 8);
            blk->pad = (uint8_t)br_take(&br, k);
            size_t at = (bit + k) / 8;
            if (br_truncated(&br) || in_len - at < 4)
                return -EINVAL;
            unsigned len = in[at] | in[at + 1] << 8, nlen = in[at + 2] | in[at + 3] << 8;
            if ((len ^ nlen) != 0xffff || in_len - at - 4 < len)
                return -EINVAL;
            if ((rc = out_reserve(s, len)) != 0)
                return rc;
            if (len)
                memcpy(s->out + s->pos, in + at + 4, len);
            s->pos += len;
            br = (struct bitrd){.start = in, .p = in + at + 4 + len, .end = in + in_len};
        } else {
            if (blk->type == 1) {
                huff_table(flit, DFL_NLIT, s->lit, &s->litbits);
                huff_table(fdist, DFL_NDIST, s->dist, &s->distbits);
            } else if ((rc = read_dynamic_header(&br, s, d, blk)) != 0) {
                return rc;
            }
            if ((rc = read_codes(&br, s, d)) != 0)
                return rc;
        }
        blk->ntok = d->ntok - blk->first_tok;
        blk->out_len = s->pos - start;
        d->nblocks++;
        if (blk->final)
            break;
    }
    size_t bit = br_pos(&br);
    unsigned k = (unsigned)((8 - bit % 8) % 8);
    br_refill(&br);
    d->end_pad = (uint8_t)br_take(&br, k);
    if (br_truncated(&br))
        return -EINVAL;
    d->out_len = s->pos;
    *tail_at = (bit + k) / 8;
    return 0;
}

static int record(const uint8_t *in, size_t in_len, size_t max_out, int zlib, uint8_t **out,
                  size_t *out_len, struct codec_deflate_desc **desc)
{
    struct inflate_state *s = NULL;
    struct codec_deflate_desc *d = NULL;
    size_t tail_at = 0, skip = zlib ? 2 : 0;
    int rc;
    static const uint8_t none[1];
    if (!in && in_len)
        return -EINVAL;
    if (!in)
        in = none; /* no arithmetic on NULL below */
    if (max_out > CODEC_DEFLATE_MAX_OUT)
        max_out = CODEC_DEFLATE_MAX_OUT;
    s = calloc(1, sizeof(*s));
    d = calloc(1, sizeof(*d));
    if (!s || !d) {
        rc = -ENOMEM;
        goto out;
    }
    s->max_out = max_out;
    /* A first guess at the output from the input size; growth is checked against max_out. */
    size_t guess = max_out > 1024 && in_len < (max_out - 1024) / 4 ? in_len * 4 + 1024 : max_out;
    if ((rc = codec_grow((void **)&s->out, &s->cap, guess, 1, max_out)) != 0)
        goto out;
    d->zlib = zlib;
    if (zlib) {
        rc = -EINVAL;
        if (in_len < 2)
            goto out;
        d->cmf = in[0], d->flg = in[1];
        if ((rc = zlib_header_ok(d->cmf, d->flg)) != 0)
            goto out;
    }
    if ((rc = record_raw(in + skip, in_len - skip, s, d, &tail_at)) != 0)
        goto out;
    tail_at += skip;
    if (zlib) {
        rc = -EINVAL;
        if (in_len - tail_at < 4)
            goto out;
        const uint8_t *t = in + tail_at;
        uint32_t want = codec_get_be32(t);
        if (codec_adler32(s->out, s->pos) != want)
            goto out;
        tail_at += 4;
    }
    d->tail_len = in_len - tail_at;
    if (d->tail_len > CODEC_DEFLATE_MAX_TAIL) {
        rc = -ENOTSUP;
        goto out;
    }
    if (d->tail_len) {
        if (!(d->tail = malloc(d->tail_len))) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(d->tail, in + tail_at, d->tail_len);
    }
    if (s->pos == 0) {
        free(s->out);
        s->out = NULL;
    }
    *out = s->out;
    *out_len = s->pos;
    s->out = NULL;
    *desc = d;
    d = NULL;
    rc = 0;
out:
    if (s)
        free(s->out);
    free(s);
    codec_deflate_desc_free(d);
    return rc;
}

int codec_deflate_record(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                         size_t *out_len, struct codec_deflate_desc **desc)
{
    return record(in, in_len, max_out, 0, out, out_len, desc);
}

int codec_deflate_record_zlib(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                              size_t *out_len, struct codec_deflate_desc **desc)
{
    return record(in, in_len, max_out, 1, out, out_len, desc);
}

/* ---- emit -------------------------------------------------------------------------------- */

struct bitwr {
    uint8_t *buf;
    size_t len, cap;
    uint64_t acc;
    unsigned cnt;
};

/* Output is bounded by the description: ~2 bytes a data byte at worst, plus headers and tail. */
#define EMIT_LIMIT (SIZE_MAX / 2)

static int bw_put(struct bitwr *w, uint32_t bits, unsigned n)
{
    w->acc |= (uint64_t)bits << w->cnt;
    w->cnt += n;
    if (w->cnt >= 32) {
        if (w->cap - w->len < 4) {
            int rc = codec_grow((void **)&w->buf, &w->cap, w->len + 4, 1, EMIT_LIMIT);
            if (rc)
                return rc;
        }
        for (int i = 0; i < 4; i++)
            w->buf[w->len++] = (uint8_t)(w->acc >> (8 * i));
        w->acc >>= 32;
        w->cnt -= 32;
    }
    return 0;
}

/* Write out the whole bytes pending, then the partial one (its high bits zero). */
static int bw_flush(struct bitwr *w)
{
    int rc = codec_grow((void **)&w->buf, &w->cap, w->len + 8, 1, EMIT_LIMIT);
    if (rc)
        return rc;
    while (w->cnt > 0) {
        w->buf[w->len++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->cnt = w->cnt > 8 ? w->cnt - 8 : 0;
    }
    w->acc = 0;
    return 0;
}

static int bw_bytes(struct bitwr *w, const uint8_t *p, size_t n)
{
    int rc = bw_flush(w);
    if (rc || n == 0)
        return rc;
    if ((rc = codec_grow((void **)&w->buf, &w->cap, w->len + n, 1, EMIT_LIMIT)) != 0)
        return rc;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

static int bw_pad(struct bitwr *w, uint8_t pad)
{
    unsigned k = (8 - w->cnt % 8) % 8;
    if (pad >> k)
        return -EINVAL;
    return bw_put(w, pad, k);
}

unsigned codec_zlib_len_symbol(unsigned len, unsigned *extra)
{
    unsigned x = len - 3, sym;
    if (x < 8) {
        sym = x;
    } else if (len == 258) {
        sym = 28;
    } else {
        unsigned b = 31 - (unsigned)__builtin_clz(x);
        sym = 4 * (b - 1) + ((x >> (b - 2)) & 3);
    }
    *extra = len - len_base[sym];
    return sym;
}

unsigned codec_zlib_dist_symbol(unsigned dist, unsigned *extra)
{
    unsigned x = dist - 1, sym;
    if (x < 4) {
        sym = x;
    } else {
        unsigned b = 31 - (unsigned)__builtin_clz(x);
        sym = 2 * b + ((x >> (b - 1)) & 1);
    }
    *extra = dist - dist_base[sym];
    return sym;
}

struct emit_codes {
    uint8_t litlen[DFL_NLIT], distlen[DFL_NDIST];
    uint16_t lit[DFL_NLIT], dist[DFL_NDIST];
};

static int emit_dynamic_header(struct bitwr *w, const struct codec_deflate_desc *d,
                               const struct dfl_block *b, struct emit_codes *c)
{
    uint8_t lens[DFL_NLIT + DFL_NDIST], cl[DFL_NCL] = {0};
    uint16_t clcode[DFL_NCL];
    const uint8_t *ops = d->ops + b->first_op;
    int rc = codec_zlib_dyn_lens(b, ops, lens);
    if (rc)
        return rc;
    for (unsigned i = 0; i < b->hclen + 4u; i++)
        cl[codec_zlib_cl_order[i]] = b->clen[i];
    huff_codes(cl, DFL_NCL, clcode); /* checked by dyn_lens */
    unsigned nlit = b->hlit + 257u, ndist = b->hdist + 1u;
    memset(c->litlen, 0, sizeof(c->litlen));
    memset(c->distlen, 0, sizeof(c->distlen));
    memcpy(c->litlen, lens, nlit);
    memcpy(c->distlen, lens + nlit, ndist);
    huff_codes(c->litlen, DFL_NLIT, c->lit);
    huff_codes(c->distlen, DFL_NDIST, c->dist);
    if ((rc = bw_put(w, b->hlit, 5)) || (rc = bw_put(w, b->hdist, 5)) ||
        (rc = bw_put(w, b->hclen, 4)))
        return rc;
    for (unsigned i = 0; i < b->hclen + 4u; i++)
        if ((rc = bw_put(w, b->clen[i], 3)) != 0)
            return rc;
    for (unsigned k = 0; k < b->nop; k++) {
        unsigned sym, extra, nbits;
        op_split(ops[k], &sym, &extra, &nbits);
        if ((rc = bw_put(w, clcode[sym], cl[sym])) || (rc = bw_put(w, extra, nbits)))
            return rc;
    }
    return 0;
}

static int emit_tokens(struct bitwr *w, const struct codec_deflate_desc *d,
                       const struct dfl_block *b, const struct emit_codes *c, const uint8_t *data,
                       size_t *pos)
{
    size_t p = *pos, end = p + b->out_len;
    int rc;
    for (size_t t = b->first_tok; t < b->first_tok + b->ntok; t++) {
        unsigned n = TOK_LEN(d->tok[t]), dist = TOK_DIST(d->tok[t]), ex;
        if (n > end - p)
            return -EINVAL;
        if (dist == 0) {
            for (unsigned k = 0; k < n; k++) {
                uint8_t v = data[p + k];
                if (c->litlen[v] == 0)
                    return -EINVAL;
                if ((rc = bw_put(w, c->lit[v], c->litlen[v])) != 0)
                    return rc;
            }
            p += n;
            continue;
        }
        if (dist > p || memcmp(data + p, data + p - dist, n) != 0)
            return -EINVAL;
        unsigned ls = codec_zlib_len_symbol(n, &ex);
        if (c->litlen[257 + ls] == 0)
            return -EINVAL;
        if ((rc = bw_put(w, c->lit[257 + ls], c->litlen[257 + ls])) ||
            (rc = bw_put(w, ex, len_extra[ls])))
            return rc;
        unsigned ds = codec_zlib_dist_symbol(dist, &ex);
        if (c->distlen[ds] == 0)
            return -EINVAL;
        if ((rc = bw_put(w, c->dist[ds], c->distlen[ds])) || (rc = bw_put(w, ex, dist_extra[ds])))
            return rc;
        p += n;
    }
    if (p != end || c->litlen[256] == 0)
        return -EINVAL;
    *pos = p;
    return bw_put(w, c->lit[256], c->litlen[256]);
}

int codec_deflate_emit(const struct codec_deflate_desc *desc, const uint8_t *data, size_t data_len,
                       uint8_t **out, size_t *out_len)
{
    struct bitwr w = {0};
    struct emit_codes *c = NULL;
    size_t pos = 0;
    int rc = -EINVAL;
    static const uint8_t none[1];
    if (!desc || data_len != desc->out_len || (!data && data_len))
        goto out;
    if (!data)
        data = none;
    if (!(c = malloc(sizeof(*c)))) {
        rc = -ENOMEM;
        goto out;
    }
    if (desc->zlib && ((rc = bw_put(&w, desc->cmf, 8)) || (rc = bw_put(&w, desc->flg, 8))))
        goto out;
    for (size_t i = 0; i < desc->nblocks; i++) {
        const struct dfl_block *b = &desc->blocks[i];
        rc = -EINVAL;
        if (b->out_len > data_len - pos)
            goto out;
        if ((rc = bw_put(&w, b->final, 1)) || (rc = bw_put(&w, b->type, 2)))
            goto out;
        if (b->type == 0) {
            if ((rc = bw_pad(&w, b->pad)) || (rc = bw_put(&w, (uint32_t)b->out_len, 16)) ||
                (rc = bw_put(&w, (uint32_t)b->out_len ^ 0xffff, 16)) ||
                (rc = bw_bytes(&w, data + pos, b->out_len)))
                goto out;
            pos += b->out_len;
            continue;
        }
        if (b->type == 1) {
            fixed_lens(c->litlen, c->distlen);
            huff_codes(c->litlen, DFL_NLIT, c->lit);
            huff_codes(c->distlen, DFL_NDIST, c->dist);
        } else if ((rc = emit_dynamic_header(&w, desc, b, c)) != 0) {
            goto out;
        }
        if ((rc = emit_tokens(&w, desc, b, c, data, &pos)) != 0)
            goto out;
    }
    rc = -EINVAL;
    if (pos != data_len)
        goto out;
    if ((rc = bw_pad(&w, desc->end_pad)) || (rc = bw_flush(&w)))
        goto out;
    if (desc->zlib) {
        uint32_t a = codec_adler32(data, data_len);
        uint8_t t[4];
        codec_put_be32(t, a);
        if ((rc = bw_bytes(&w, t, 4)) != 0)
            goto out;
    }
    if ((rc = bw_bytes(&w, desc->tail, desc->tail_len)) != 0)
        goto out;
    *out = w.buf;
    *out_len = w.len;
    w.buf = NULL;
    rc = 0;
out:
    free(w.buf);
    free(c);
    return rc;
}

/* ---- serialisation ----------------------------------------------------------------------- */

struct ser {
    uint8_t *buf; /* NULL: count only */
    size_t len;
};

static void ser_u8(struct ser *s, uint8_t v)
{
    if (s->buf)
        s->buf[s->len] = v;
    s->len++;
}

static void ser_var(struct ser *s, uint64_t v)
{
    uint8_t t[CODEC_VAR_MAX];
    size_t n = codec_put_var(t, v);
    for (size_t i = 0; i < n; i++)
        ser_u8(s, t[i]);
}

static void ser_desc(const struct codec_deflate_desc *d, struct ser *s)
{
    for (int i = 0; i < 4; i++)
        ser_u8(s, (uint8_t)CODEC_DEFLATE_DESC_MAGIC[i]);
    ser_u8(s, CODEC_DEFLATE_DESC_VERSION);
    ser_u8(s, (uint8_t)d->zlib);
    if (d->zlib) {
        ser_u8(s, d->cmf);
        ser_u8(s, d->flg);
    }
    ser_var(s, d->out_len);
    ser_var(s, d->nblocks);
    for (size_t i = 0; i < d->nblocks; i++) {
        const struct dfl_block *b = &d->blocks[i];
        ser_u8(s, (uint8_t)(b->final | b->type << 1));
        if (b->type == 0) {
            ser_u8(s, b->pad);
            ser_var(s, b->out_len);
            continue;
        }
        if (b->type == 2) {
            ser_u8(s, b->hlit);
            ser_u8(s, b->hdist);
            ser_u8(s, b->hclen);
            for (unsigned k = 0; k < b->hclen + 4u; k++)
                ser_u8(s, b->clen[k]);
            ser_var(s, b->nop);
            for (unsigned k = 0; k < b->nop; k++)
                ser_u8(s, d->ops[b->first_op + k]);
        }
        ser_var(s, b->ntok);
        for (size_t t = b->first_tok; t < b->first_tok + b->ntok; t++) {
            uint32_t tok = d->tok[t];
            if (TOK_DIST(tok) == 0) {
                ser_var(s, (uint64_t)TOK_LEN(tok) << 1);
            } else {
                ser_var(s, (uint64_t)(TOK_LEN(tok) - 3) << 1 | 1);
                ser_var(s, TOK_DIST(tok) - 1u);
            }
        }
    }
    ser_u8(s, d->end_pad);
    ser_var(s, d->tail_len);
    for (size_t i = 0; i < d->tail_len; i++)
        ser_u8(s, d->tail[i]);
}

ssize_t codec_deflate_desc_serialise(const struct codec_deflate_desc *desc, uint8_t *buf,
                                     size_t cap)
{
    struct ser s = {0};
    if (!desc)
        return -EINVAL;
    ser_desc(desc, &s);
    if (buf && cap >= s.len) {
        s = (struct ser){.buf = buf};
        ser_desc(desc, &s);
    }
    return (ssize_t)s.len;
}

size_t codec_deflate_desc_size(const struct codec_deflate_desc *desc)
{
    struct ser s = {0};
    ser_desc(desc, &s);
    return s.len;
}

static int parse_tokens(struct codec_rd *r, struct codec_deflate_desc *d, struct dfl_block *b,
                        size_t *pos)
{
    uint64_t ntok, v, dist;
    int rc;
    /* each token is at least one byte of input and of output */
    if (codec_rd_var(r, r->left, &ntok) || ntok > d->out_len - *pos)
        return -EINVAL;
    if ((rc = codec_grow((void **)&d->tok, &d->cap_tok, d->ntok + ntok, sizeof(uint32_t),
                         CODEC_DEFLATE_MAX_OUT)) != 0)
        return rc;
    b->first_tok = d->ntok;
    size_t start = *pos;
    uint32_t prev_run = CODEC_DEFLATE_MAX_RUN;
    for (uint64_t t = 0; t < ntok; t++) {
        uint32_t tok;
        if (codec_rd_var(r, 2 * (uint64_t)CODEC_DEFLATE_MAX_RUN, &v))
            return -EINVAL;
        if (!(v & 1)) {
            uint32_t run = (uint32_t)(v >> 1);
            if (run == 0 || prev_run != CODEC_DEFLATE_MAX_RUN)
                return -EINVAL;
            tok = run << 16;
            prev_run = run;
        } else {
            if ((v >> 1) > 255 || codec_rd_var(r, 32767, &dist) || dist + 1 > *pos)
                return -EINVAL;
            tok = (uint32_t)((v >> 1) + 3) << 16 | (uint32_t)(dist + 1);
            prev_run = CODEC_DEFLATE_MAX_RUN;
        }
        if (TOK_LEN(tok) > d->out_len - *pos)
            return -EINVAL;
        *pos += TOK_LEN(tok);
        d->tok[d->ntok++] = tok;
    }
    b->ntok = (size_t)ntok;
    b->out_len = *pos - start;
    return 0;
}

int codec_deflate_desc_parse(const uint8_t *buf, size_t len, size_t max_out,
                             struct codec_deflate_desc **desc)
{
    struct codec_deflate_desc *d = NULL;
    struct codec_rd r = {buf, len};
    uint64_t v;
    uint8_t u, lens[DFL_NLIT + DFL_NDIST];
    size_t pos = 0;
    int rc = -EINVAL;
    if (!buf && len)
        return -EINVAL;
    if (max_out > CODEC_DEFLATE_MAX_OUT)
        max_out = CODEC_DEFLATE_MAX_OUT;
    if (!(d = calloc(1, sizeof(*d)))) {
        rc = -ENOMEM;
        goto out;
    }
    if (len < 6 || memcmp(buf, CODEC_DEFLATE_DESC_MAGIC, 4) != 0 ||
        buf[4] != CODEC_DEFLATE_DESC_VERSION || buf[5] > 1)
        goto out;
    r.p += 6, r.left -= 6;
    d->zlib = buf[5];
    if (d->zlib && (codec_rd_u8(&r, &d->cmf) || codec_rd_u8(&r, &d->flg) ||
                    zlib_header_ok(d->cmf, d->flg) != 0))
        goto out;
    if (codec_rd_var(&r, UINT64_MAX, &v))
        goto out;
    if (v > max_out) {
        rc = -EFBIG;
        goto out;
    }
    d->out_len = (size_t)v;
    /* every block takes at least two bytes */
    if (codec_rd_var(&r, CODEC_DEFLATE_MAX_BLOCKS, &v) || v == 0 || v > r.left / 2)
        goto out;
    if ((rc = codec_grow((void **)&d->blocks, &d->cap_blocks, (size_t)v, sizeof(struct dfl_block),
                         CODEC_DEFLATE_MAX_BLOCKS)) != 0)
        goto out;
    rc = -EINVAL;
    d->nblocks = (size_t)v;
    memset(d->blocks, 0, d->nblocks * sizeof(struct dfl_block));
    for (size_t i = 0; i < d->nblocks; i++) {
        struct dfl_block *b = &d->blocks[i];
        if (codec_rd_u8(&r, &u) || (u >> 3) != 0 || (u >> 1) == 3 ||
            (u & 1) != (i + 1 == d->nblocks))
            goto out;
        b->final = u & 1;
        b->type = u >> 1;
        if (b->type == 0) {
            if (codec_rd_u8(&r, &b->pad) || b->pad > 127 || codec_rd_var(&r, 65535, &v) ||
                v > d->out_len - pos)
                goto out;
            b->out_len = (size_t)v;
            pos += b->out_len;
            continue;
        }
        if (b->type == 2) {
            if (codec_rd_u8(&r, &b->hlit) || codec_rd_u8(&r, &b->hdist) ||
                codec_rd_u8(&r, &b->hclen) || b->hclen > 15)
                goto out;
            for (unsigned k = 0; k < b->hclen + 4u; k++)
                if (codec_rd_u8(&r, &b->clen[k]))
                    goto out;
            if (codec_rd_var(&r, DFL_MAXOPS, &v) || v == 0 || v > r.left)
                goto out;
            b->nop = (uint16_t)v;
            if ((rc = codec_grow((void **)&d->ops, &d->cap_ops, d->nops + b->nop, 1,
                                 DFL_MAXOPS * CODEC_DEFLATE_MAX_BLOCKS)) != 0)
                goto out;
            rc = -EINVAL;
            b->first_op = d->nops;
            memcpy(d->ops + d->nops, r.p, b->nop);
            r.p += b->nop, r.left -= b->nop;
            d->nops += b->nop;
            if (codec_zlib_dyn_lens(b, d->ops + b->first_op, lens) != 0)
                goto out;
        }
        if ((rc = parse_tokens(&r, d, b, &pos)) != 0)
            goto out;
        rc = -EINVAL;
    }
    if (pos != d->out_len || codec_rd_u8(&r, &d->end_pad) || d->end_pad > 127 ||
        codec_rd_var(&r, CODEC_DEFLATE_MAX_TAIL, &v) || v != r.left)
        goto out;
    d->tail_len = (size_t)v;
    if (d->tail_len) {
        if (!(d->tail = malloc(d->tail_len))) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(d->tail, r.p, d->tail_len);
    }
    *desc = d;
    d = NULL;
    rc = 0;
out:
    codec_deflate_desc_free(d);
    return rc;
}

/* ---- reading a description --------------------------------------------------------------- */

size_t codec_deflate_desc_nblocks(const struct codec_deflate_desc *desc)
{
    return desc->nblocks;
}

void codec_deflate_desc_block(const struct codec_deflate_desc *desc, size_t i,
                              struct codec_deflate_block_view *block)
{
    assert(i < desc->nblocks);
    const struct dfl_block *b = &desc->blocks[i];
    block->final = b->final;
    block->type = b->type;
    block->out_len = b->out_len;
    block->first_token = b->first_tok;
    block->ntokens = b->type == 0 ? 0 : b->ntok;
}

void codec_deflate_desc_token(const struct codec_deflate_desc *desc, size_t i, unsigned *len,
                              unsigned *dist)
{
    assert(i < desc->ntok);
    *len = TOK_LEN(desc->tok[i]);
    *dist = TOK_DIST(desc->tok[i]);
}
