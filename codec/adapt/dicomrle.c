// SPDX-License-Identifier: MIT
/*
 * DICOM RLE Lossless (transfer syntax 1.2.840.10008.1.2.5, PS3.5 Annex G): the Pixel Data is a
 * basic offset table item, one fragment per frame and a sequence delimiter; a fragment is a
 * 64-byte RLE header (segment count, 15 offsets) and one PackBits segment per byte of each
 * sample, most significant byte first. The bytes are not the samples, and writers choose their
 * runs differently (per row or across rows, replicate runs from 2 or 3 bytes on), so no encoder
 * of ours could promise the same bytes. What join needs besides the samples is therefore kept:
 * each run's PackBits header byte, in order, one byte per run (the run's data bytes are the
 * planes' bytes), and everything that is not a run (item headers, offset table, RLE headers,
 * segment padding, the delimiter) verbatim. A segment whose runs are those pydicom's encoder
 * writes (one rule, computed from the plane) costs no list at all. The trade-off: about one
 * byte per run in the envelope for other writers' segments (12% of the segments of
 * MR_small_RLE.dcm), in exchange for an argument of exactness that needs no model of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/adapt/adapt_int.h"

#define RLE_HEADER 64u       /* segment count and 15 offsets, little endian */
#define RLE_MAX_SEGMENTS 15u /* PS3.5 G.5 */
#define RLE_ITEM 0xe000u
#define RLE_SEQ_END 0xe0ddu

/* How a frame's segments map onto the planes: segment s is byte s % bps (most significant
 * first) of sample s / bps; a 32-bit sample is two 16-bit channels, low word first (codec.h). */
struct rle_map {
    struct codec_image *img;
    uint32_t bps;  /* bytes per sample: 1, 2 or 4 */
    uint32_t segs; /* segments per frame */
    size_t hw;
};

static void rle_map_init(struct rle_map *m, struct codec_image *img, bool words32)
{
    m->img = img;
    m->bps = words32 ? 4 : img->bits / 8;
    m->segs = (words32 ? img->channels / 2 : img->channels) * m->bps;
    m->hw = (size_t)img->width * img->height;
}

/* Where segment s of frame f lives: the plane's first index, and the byte's shift in a sample. */
static size_t rle_where(const struct rle_map *m, uint32_t f, uint32_t s, unsigned *shift)
{
    uint32_t c = s / m->bps, k = m->bps - 1 - s % m->bps; /* k: byte from the least significant */
    uint32_t ch = m->bps == 4 ? 2 * c + k / 2 : c;
    *shift = 8 * (k % 2);
    return ((size_t)ch * m->img->frames + f) * m->hw;
}

static uint8_t rle_get(const struct codec_image *img, size_t i, unsigned shift)
{
    if (img->bits == 8)
        return ((const uint8_t *)img->planes)[i];
    return (uint8_t)(((const uint16_t *)img->planes)[i] >> shift);
}

static void rle_set(struct codec_image *img, size_t i, unsigned shift, uint8_t v)
{
    if (img->bits == 8)
        ((uint8_t *)img->planes)[i] = v;
    else
        ((uint16_t *)img->planes)[i] |= (uint16_t)(v << shift); /* planes start zeroed */
}

/* A PackBits header's output bytes and coded bytes (header included): literal h + 1, replicate
 * 257 - h, and 128 a no-op (PS3.5 G.3.2). */
static size_t rle_out(uint8_t h)
{
    return h < 128 ? (size_t)h + 1 : h > 128 ? 257u - h : 0;
}

static size_t rle_coded(uint8_t h)
{
    return h < 128 ? (size_t)h + 2 : h > 128 ? 2 : 1;
}

/* A literal of n bytes as pydicom's encoder cuts it: 128 at a time, the rest last. */
static void rle_rule_literal(struct codec_buf *h, size_t n)
{
    for (; n >= 128; n -= 128)
        codec_buf_u8(h, 127);
    if (n)
        codec_buf_u8(h, (uint8_t)(n - 1));
}

/* The headers pydicom's encoder (encoders/native.py) writes for segment s of frame f, appended
 * to h: row by row, each run of 2 or more equal bytes a replicate (128 at a time; a last byte
 * left over, a literal of 1), the single bytes between them one literal. At most one header per
 * byte. */
static void rle_rule(const struct rle_map *m, uint32_t f, uint32_t s, struct codec_buf *h)
{
    unsigned shift;
    size_t base = rle_where(m, f, s, &shift), w = m->img->width;
    for (size_t row = 0; row < m->hw; row += w) {
        size_t lit = 0, g;
        for (size_t i = 0; i < w; i += g) {
            uint8_t v = rle_get(m->img, base + row + i, shift);
            for (g = 1; i + g < w && rle_get(m->img, base + row + i + g, shift) == v; g++)
                ;
            if (g == 1) {
                lit++;
                continue;
            }
            rle_rule_literal(h, lit);
            lit = 0;
            for (size_t r = g / 128; r > 0; r--)
                codec_buf_u8(h, 129);
            if (g % 128 > 1)
                codec_buf_u8(h, (uint8_t)(257 - g % 128));
            else if (g % 128 == 1)
                codec_buf_u8(h, 0);
        }
        rle_rule_literal(h, lit);
    }
}

/* ---- split ------------------------------------------------------------------------------- */

struct rle_split {
    const uint8_t *buf;
    size_t len;
    struct rle_map m;
    struct codec_buf skel; /* the bytes that are not runs, verbatim */
    struct codec_buf runs; /* per segment: varint gap, varint count, the headers */
    struct codec_buf hdrs; /* the current segment's headers */
    struct codec_buf rule; /* what pydicom's encoder writes for the same plane */
    size_t from;           /* the next byte of buf not yet in skel or runs */
    size_t last;           /* skel position of the previous segment */
};

static int rle_bad(char *why, size_t whylen, const char *what)
{
    return codec_why(why, whylen, -ENOTSUP, "DICOM: RLE %s", what);
}

/* Decode the segment buf[at..end) into its plane byte; its runs go to the section, what
 * follows them (padding) stays for skel. 0 or -ENOTSUP/-ENOMEM. */
static int rle_segment(struct rle_split *st, size_t at, size_t end, uint32_t f, uint32_t s)
{
    unsigned shift;
    size_t base = rle_where(&st->m, f, s, &shift), out = 0, n;
    st->hdrs.len = 0;
    while (out < st->m.hw) {
        if (at >= end)
            return -ENOTSUP; /* the segment ends before its plane is full */
        uint8_t h = st->buf[at++];
        if ((n = rle_out(h)) > st->m.hw - out || end - at < rle_coded(h) - 1)
            return -ENOTSUP; /* past the plane, or past the segment */
        for (size_t i = 0; i < n; i++)
            rle_set(st->m.img, base + out + i, shift, st->buf[h < 128 ? at + i : at]);
        at += rle_coded(h) - 1;
        out += n;
        codec_buf_u8(&st->hdrs, h);
    }
    return 0;
}

/* Move buf[from..start) to skel, and the runs of the segment buf[start..end) to runs. */
static int rle_take(struct rle_split *st, size_t start, size_t end, uint32_t f, uint32_t s)
{
    int ret;
    codec_buf_put(&st->skel, st->buf + st->from, start - st->from);
    if ((ret = rle_segment(st, start, end, f, s)) != 0)
        return ret;
    st->rule.len = 0;
    rle_rule(&st->m, f, s, &st->rule);
    bool rule = st->rule.len == st->hdrs.len && !memcmp(st->rule.p, st->hdrs.p, st->hdrs.len);
    codec_buf_var(&st->runs, st->skel.len - st->last);
    codec_buf_var(&st->runs, rule ? 0 : st->hdrs.len); /* 0: the rule's runs */
    if (!rule)
        codec_buf_put(&st->runs, st->hdrs.p, st->hdrs.len);
    st->last = st->skel.len;
    for (size_t i = 0; i < st->hdrs.len; i++)
        start += rle_coded(st->hdrs.p[i]);
    st->from = start;
    if (st->rule.err || st->hdrs.err)
        return -ENOMEM;
    return st->skel.err ? st->skel.err : st->runs.err;
}

/* One frame's fragment buf[at..at + flen): the RLE header, then its segments. */
static int rle_fragment(struct rle_split *st, size_t at, size_t flen, uint32_t f, char *why,
                        size_t whylen)
{
    const uint8_t *p = st->buf + at;
    uint32_t nseg, off, next;
    int ret;
    if (flen < RLE_HEADER)
        return rle_bad(why, whylen, "fragment shorter than its header");
    nseg = codec_get_le32(p);
    if (nseg > RLE_MAX_SEGMENTS || nseg != st->m.segs)
        return rle_bad(why, whylen, "segment count does not match the geometry");
    for (uint32_t s = 0; s < nseg; s++) {
        off = codec_get_le32(p + 4 + 4 * s);
        next = s + 1 < nseg ? codec_get_le32(p + 8 + 4 * s) : (uint32_t)flen;
        if (off < RLE_HEADER || off >= next || next > flen) /* so increasing, and no overlap */
            return rle_bad(why, whylen, "segment offsets not increasing inside the fragment");
        if ((ret = rle_take(st, at + off, at + next, f, s)) == -ENOTSUP)
            return rle_bad(why, whylen, "segment truncated or a run past the end");
        if (ret)
            return ret;
    }
    return 0;
}

/* An item or delimiter header at *at with the given element, its value inside the file; its
 * length in *vlen and *at moved past the header. 0 or -ENOTSUP. */
static int rle_item(const struct rle_split *st, size_t *at, uint16_t elem, uint32_t *vlen)
{
    const uint8_t *p = st->buf + *at;
    if (st->len - *at < 8 || codec_get_le16(p) != 0xfffe || codec_get_le16(p + 2) != elem)
        return -ENOTSUP;
    *vlen = codec_get_le32(p + 4);
    if (*vlen > st->len - *at - 8)
        return -ENOTSUP;
    *at += 8;
    return 0;
}

/* The encapsulated Pixel Data from st->from: offset table, one fragment per frame, delimiter.
 * *end gets the first byte after the delimiter. */
static int rle_walk(struct rle_split *st, size_t *end, char *why, size_t whylen)
{
    size_t at = st->from;
    uint32_t vlen;
    int ret;
    if (rle_item(st, &at, RLE_ITEM, &vlen) != 0)
        return rle_bad(why, whylen, "offset table missing or truncated");
    at += vlen;
    for (uint32_t f = 0; f < st->m.img->frames; f++) {
        if (rle_item(st, &at, RLE_ITEM, &vlen) != 0)
            return rle_bad(why, whylen, "fragment missing or truncated");
        if ((ret = rle_fragment(st, at, vlen, f, why, whylen)) != 0)
            return ret;
        at += vlen;
    }
    if (rle_item(st, &at, RLE_SEQ_END, &vlen) != 0 || vlen != 0)
        return rle_bad(why, whylen, "fragments not one per frame");
    *end = at;
    return 0;
}

/* Significant bits as the native path has them (adapt.c): Bits Stored unless a sample has a
 * bit above it. */
static uint32_t rle_significant(const struct codec_image *im, uint32_t max_value)
{
    size_t n = im->planes_bytes / (im->bits / 8);
    uint32_t max = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v =
            im->bits == 8 ? ((const uint8_t *)im->planes)[i] : ((const uint16_t *)im->planes)[i];
        max = v > max ? v : max;
    }
    return max > max_value ? im->bits : 32u - (uint32_t)__builtin_clz(max_value);
}

int codec_dicom_rle_split(const uint8_t *buf, size_t len, const struct codec_found *f,
                          struct codec_image **img, uint8_t **envelope, size_t *env_len, char *why,
                          size_t whylen)
{
    struct rle_split st = {.buf = buf, .len = len, .from = f->head_len};
    struct codec_buf env = {0};
    struct codec_image *im = NULL;
    size_t end = 0, sec;
    uint8_t var[CODEC_VAR_MAX];
    int ret = -ENOMEM;

    /* every output byte of a segment costs at least 2/129 coded bytes: a geometry the file
     * cannot hold is refused before the planes are allocated */
    if (f->raster_len / 65 > len - f->head_len)
        return rle_bad(why, whylen, "pixel data too short for the geometry");
    if (!(im = calloc(1, sizeof(*im))))
        goto out;
    *im = f->geo;
    im->planes_bytes = f->raster_len;
    if (!(im->planes = calloc(1, f->raster_len)))
        goto out;
    rle_map_init(&st.m, im, (f->layout & CODEC_LAYOUT_WORDS32) != 0);
    if ((ret = rle_walk(&st, &end, why, whylen)) != 0)
        goto out;
    codec_buf_put(&st.skel, buf + st.from, end - st.from);
    im->significant = rle_significant(im, f->max_value);
    sec = codec_put_var(var, st.skel.len) + st.skel.len + st.runs.len;
    ret = -ENOMEM;
    if (codec_buf_reserve(&env, CODEC_ENV_FIXED + f->head_len + 16 + sec + (len - end)) != 0)
        goto out;
    env.len = CODEC_ENV_FIXED;
    codec_env_header(env.p, im, CODEC_DICOM_RLE | (f->layout & CODEC_LAYOUT_WORDS32));
    codec_put_le64(env.p + CODEC_ENV_HEAD_LEN, f->head_len);
    codec_buf_put(&env, buf, f->head_len);
    codec_put_le64(env.p + env.len, sec);
    env.len += 8;
    codec_buf_var(&env, st.skel.len);
    codec_buf_put(&env, st.skel.p, st.skel.len);
    codec_buf_put(&env, st.runs.p, st.runs.len);
    codec_put_le64(env.p + env.len, len - end);
    env.len += 8;
    codec_buf_put(&env, buf + end, len - end);
    if ((ret = st.skel.err ? st.skel.err : env.err) != 0)
        goto out;
    *img = im;
    *envelope = env.p;
    *env_len = env.len;
    im = NULL;
    env.p = NULL;
out:
    free(st.skel.p);
    free(st.runs.p);
    free(st.hdrs.p);
    free(st.rule.p);
    free(env.p);
    codec_image_free(im);
    return ret;
}

/* ---- join -------------------------------------------------------------------------------- */

/* The headers of segment s of frame f: count listed at *r (moved past them), or when count is 0
 * the rule's, made in rule (room for one header per byte: no allocation). */
static const uint8_t *rle_headers(const struct rle_map *m, struct codec_rd *r, uint64_t *count,
                                  uint32_t f, uint32_t s, struct codec_buf *rule)
{
    const uint8_t *h = r->p;
    if (*count == 0) {
        rule->len = 0;
        rle_rule(m, f, s, rule);
        *count = rule->len;
        return rule->p;
    }
    r->p += *count;
    r->left -= *count;
    return h;
}

/* The RLE section (codec.h) checked against the image: the skeleton, and the runs of every
 * segment making exactly its plane. *coded gets the bytes the runs take. 0 or -EINVAL. */
static int rle_check(const struct rle_map *m, struct codec_rd r, struct codec_rd *skel,
                     struct codec_rd *runs, uint64_t *coded, struct codec_buf *rule)
{
    uint64_t slen, pos = 0, gap, count, total = 0;
    if (codec_rd_var(&r, UINT64_MAX, &slen) != 0 || slen > r.left)
        return -EINVAL;
    *skel = (struct codec_rd){r.p, (size_t)slen};
    r.p += slen;
    r.left -= slen;
    *runs = r;
    for (uint64_t k = 0; k < (uint64_t)m->img->frames * m->segs; k++) {
        size_t out = 0;
        if (codec_rd_var(&r, slen - pos, &gap) != 0 || codec_rd_var(&r, r.left, &count) != 0 ||
            count > r.left)
            return -EINVAL;
        pos += gap;
        const uint8_t *h =
            rle_headers(m, &r, &count, (uint32_t)(k / m->segs), (uint32_t)(k % m->segs), rule);
        for (uint64_t i = 0; i < count; i++) {
            if (rle_out(h[i]) > m->hw - out)
                return -EINVAL;
            out += rle_out(h[i]);
            total += rle_coded(h[i]);
        }
        if (out != m->hw)
            return -EINVAL;
    }
    *coded = total;
    return r.left == 0 ? 0 : -EINVAL;
}

/* The count runs with headers h of segment s of frame f, written at q; returns the end. */
static uint8_t *rle_emit(const struct rle_map *m, const uint8_t *h, uint64_t count, uint32_t f,
                         uint32_t s, uint8_t *q)
{
    unsigned shift;
    size_t base = rle_where(m, f, s, &shift);
    for (uint64_t i = 0; i < count; i++) {
        *q++ = h[i];
        for (size_t j = 0; j < (h[i] < 128 ? rle_out(h[i]) : h[i] > 128 ? 1 : 0); j++)
            *q++ = rle_get(m->img, base + j, shift);
        base += rle_out(h[i]);
    }
    return q;
}

/* The pixel data between head and tail: the skeleton with each segment's runs put back. */
static void rle_render(const struct rle_map *m, struct codec_rd skel, struct codec_rd runs,
                       struct codec_buf *rule, uint8_t *q)
{
    const uint8_t *s = skel.p;
    uint64_t gap, count;
    for (uint64_t k = 0; k < (uint64_t)m->img->frames * m->segs; k++) {
        uint32_t f = (uint32_t)(k / m->segs), seg = (uint32_t)(k % m->segs);
        codec_rd_var(&runs, UINT64_MAX, &gap); /* checked by rle_check */
        codec_rd_var(&runs, UINT64_MAX, &count);
        memcpy(q, s, gap);
        q += gap;
        s += gap;
        const uint8_t *h = rle_headers(m, &runs, &count, f, seg, rule);
        q = rle_emit(m, h, count, f, seg, q);
    }
    memcpy(q, s, skel.left - (size_t)(s - skel.p));
}

int codec_dicom_rle_join(const struct codec_image *img, const uint8_t *env, size_t env_len,
                         uint8_t **out, size_t *out_len)
{
    struct codec_found f = {.geo = *img};
    struct codec_rd skel = {0}, runs = {0};
    struct codec_buf rule = {0};
    struct rle_map m;
    uint64_t head_len, sec_len, tail_len, coded = 0, total;
    size_t pos = CODEC_ENV_FIXED;
    uint8_t flags, *o = NULL;
    int ret;

    /* the image within the limits and its planes as large as it says; only the flags split
     * makes (a 32-bit sample is two 16-bit channels) */
    if (codec_env_check(img, env, env_len) != 0 || env_len < CODEC_ENV_FIXED + 24 ||
        codec_found_size(&f, NULL, 0) != 0 || f.raster_len != img->planes_bytes)
        return -EINVAL;
    flags = env[CODEC_ENV_FLAGS];
    if ((flags & ~(CODEC_DICOM_RLE | CODEC_DICOM_WORDS32)) != 0 ||
        ((flags & CODEC_DICOM_WORDS32) && (img->bits != 16 || img->channels % 2)))
        return -EINVAL;
    head_len = codec_get_le64(env + CODEC_ENV_HEAD_LEN);
    if (head_len > env_len - pos - 16)
        return -EINVAL;
    pos += head_len;
    sec_len = codec_get_le64(env + pos);
    if (sec_len > env_len - pos - 16)
        return -EINVAL;
    pos += 8 + sec_len;
    tail_len = codec_get_le64(env + pos);
    rle_map_init(&m, (struct codec_image *)img, (flags & CODEC_DICOM_WORDS32) != 0);
    if (tail_len != env_len - pos - 8)
        return -EINVAL;
    if (codec_buf_reserve(&rule, m.hw) != 0)
        return -ENOMEM;
    ret = rle_check(&m, (struct codec_rd){env + CODEC_ENV_FIXED + head_len + 8, sec_len}, &skel,
                    &runs, &coded, &rule);
    /* each part is bounded by env_len, or 129 × the planes: no overflow in 64 bits */
    total = head_len + skel.left + coded + tail_len;
    if (ret == 0 && total > CODEC_MAX_FILE_BYTES)
        ret = -EFBIG;
    if (ret == 0 && !(o = malloc(total ? total : 1)))
        ret = -ENOMEM;
    if (ret == 0) {
        memcpy(o, env + CODEC_ENV_FIXED, head_len);
        rle_render(&m, skel, runs, &rule, o + head_len);
        memcpy(o + total - tail_len, env + pos + 8, tail_len);
        *out = o;
        *out_len = total;
    }
    free(rule.p);
    return ret;
}
