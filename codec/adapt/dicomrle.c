// SPDX-License-Identifier: MIT
/*
 * DICOM RLE Lossless (transfer syntax 1.2.840.10008.1.2.5, PS3.5 Annex G): the Pixel Data is a
 * basic offset table item, one fragment per frame and a sequence delimiter; a fragment is a
 * 64-byte RLE header (segment count, 15 offsets) and one PackBits segment per byte of each
 * sample, most significant byte first. The bytes are not the samples, and writers choose their
 * runs differently (per row or across rows, replicate runs from 2 or 3 bytes on), so no encoder
 * of ours could promise the same bytes. What join needs besides the samples is therefore kept:
 * the header byte of each run, in order (its data bytes are the planes' bytes), and everything
 * that is not a run (item headers, offset table, RLE headers, segment padding, the delimiter)
 * verbatim. The headers are mostly predictable: writers encode row by row, replicating from 2
 * (pydicom) or 3 equal bytes on, so a segment is stored as the predictor it follows and the
 * runs where it does not (exceptions), or as the list of headers when that is smaller. The
 * trade-off: join recomputes the prediction from the planes (a few ns a byte), in exchange for
 * an envelope of a few bytes per segment (MR_small_RLE.dcm: 33 bytes for 722 runs) and an
 * argument of exactness that needs no model of any writer: an exception is whatever the file
 * holds.
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

/* How many equal bytes start at byte p of a plane (segment at base, shift), up to 128 and end. */
static size_t rle_same(const struct rle_map *m, size_t base, unsigned shift, size_t p, size_t end)
{
    uint8_t v = rle_get(m->img, base + p, shift);
    size_t g = 1;
    while (g < 128 && p + g < end && rle_get(m->img, base + p + g, shift) == v)
        g++;
    return g;
}

/* The header of the run a row-by-row encoder writes at byte p of a plane: a replicate of the
 * equal bytes there when there are at least min of them (at most 128), else a literal up to
 * where such a run starts (at most 128); never across the end of a row. With min 2 it is
 * pydicom's encoder (encoders/native.py) but for a byte left over after 128 equal ones. */
static uint8_t rle_predict(const struct rle_map *m, size_t base, unsigned shift, size_t p,
                           unsigned min)
{
    size_t w = m->img->width, end = (p / w + 1) * w, q = p;
    size_t g = rle_same(m, base, shift, p, end);
    if (g >= min)
        return (uint8_t)(257 - g);
    while (q < end && q - p < 128 && rle_same(m, base, shift, q, end) < min)
        q++;
    return (uint8_t)(q - p - 1);
}

/* The runs of a segment, from its record in the RLE section (codec.h): listed, or predicted
 * with exceptions. */
struct rle_it {
    const struct rle_map *m;
    size_t base;
    unsigned shift;
    uint8_t mode;   /* RLE_LISTED, or the predictor's min */
    uint64_t left;  /* listed: headers left; predicted: exceptions left */
    uint64_t next;  /* predicted: index of the run of the next exception */
    uint64_t index; /* of the next run */
    size_t p;       /* plane byte of the next run */
    struct codec_rd r;
};

#define RLE_LISTED 0u

/* Start reading the record at *r for segment s of frame f. 0 or -EINVAL. */
static int rle_it_init(struct rle_it *it, const struct rle_map *m, uint32_t f, uint32_t s,
                       struct codec_rd r)
{
    *it = (struct rle_it){.m = m, .r = r};
    it->base = rle_where(m, f, s, &it->shift);
    if (codec_rd_u8(&it->r, &it->mode) != 0 ||
        (it->mode != RLE_LISTED && it->mode != 2 && it->mode != 3) ||
        codec_rd_var(&it->r, it->r.left, &it->left) != 0)
        return -EINVAL;
    if (it->mode != RLE_LISTED && it->left && codec_rd_var(&it->r, m->hw, &it->next) != 0)
        return -EINVAL;
    return 0;
}

/* The next run's header in *h, its first plane byte in *at. 0, or -EINVAL when the record has
 * no more runs or the run passes the end of the plane. */
static int rle_it_next(struct rle_it *it, uint8_t *h, size_t *at)
{
    uint64_t gap;
    if (it->mode == RLE_LISTED || (it->left && it->index == it->next)) {
        if (!it->left || codec_rd_u8(&it->r, h) != 0)
            return -EINVAL;
        if (--it->left && it->mode != RLE_LISTED) {
            if (codec_rd_var(&it->r, it->m->hw, &gap) != 0)
                return -EINVAL;
            it->next = it->index + 1 + gap;
        }
    } else {
        *h = rle_predict(it->m, it->base, it->shift, it->p, it->mode);
    }
    if (rle_out(*h) > it->m->hw - it->p)
        return -EINVAL;
    *at = it->p;
    it->p += rle_out(*h);
    it->index++;
    return 0;
}

/* ---- split ------------------------------------------------------------------------------- */

struct rle_split {
    const uint8_t *buf;
    size_t len;
    struct rle_map m;
    struct codec_buf skel;   /* the bytes that are not runs, verbatim */
    struct codec_buf runs;   /* per segment: varint gap, its record */
    struct codec_buf hdrs;   /* the current segment's headers */
    struct codec_buf ex;     /* the current segment's exceptions to one prediction */
    struct codec_buf rec[2]; /* records of the current segment: the best, another */
    size_t from;             /* the next byte of buf not yet in skel or runs */
    size_t last;             /* skel position of the previous segment */
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

/* The current segment's record predicted with min (its exceptions) in rec. */
static void rle_predicted(struct rle_split *st, uint32_t f, uint32_t s, unsigned min,
                          struct codec_buf *rec)
{
    unsigned shift;
    size_t base = rle_where(&st->m, f, s, &shift), p = 0, next = 0, count = 0;
    st->ex.len = 0;
    for (size_t i = 0; i < st->hdrs.len; p += rle_out(st->hdrs.p[i++])) {
        if (rle_predict(&st->m, base, shift, p, min) == st->hdrs.p[i])
            continue;
        codec_buf_var(&st->ex, i - next);
        codec_buf_u8(&st->ex, st->hdrs.p[i]);
        next = i + 1;
        count++;
    }
    rec->len = 0;
    codec_buf_u8(rec, (uint8_t)min);
    codec_buf_var(rec, count);
    codec_buf_put(rec, st->ex.p, st->ex.len);
}

/* Append the current segment's record to runs: listed, or predicted (min 2 or 3), whichever is
 * smallest. */
static void rle_record(struct rle_split *st, uint32_t f, uint32_t s)
{
    struct codec_buf *best = &st->rec[0], *alt = &st->rec[1], *t;
    best->len = 0;
    codec_buf_u8(best, RLE_LISTED);
    codec_buf_var(best, st->hdrs.len);
    codec_buf_put(best, st->hdrs.p, st->hdrs.len);
    for (unsigned min = 2; min <= 3; min++) {
        rle_predicted(st, f, s, min, alt);
        if (alt->len < best->len) {
            t = best;
            best = alt;
            alt = t;
        }
    }
    codec_buf_put(&st->runs, best->p, best->len);
}

/* Move buf[from..start) to skel, and the runs of the segment buf[start..end) to runs. */
static int rle_take(struct rle_split *st, size_t start, size_t end, uint32_t f, uint32_t s)
{
    int ret;
    codec_buf_put(&st->skel, st->buf + st->from, start - st->from);
    if ((ret = rle_segment(st, start, end, f, s)) != 0)
        return ret;
    codec_buf_var(&st->runs, st->skel.len - st->last);
    rle_record(st, f, s);
    st->last = st->skel.len;
    for (size_t i = 0; i < st->hdrs.len; i++)
        start += rle_coded(st->hdrs.p[i]);
    st->from = start;
    if (st->ex.err || st->rec[0].err || st->rec[1].err || st->hdrs.err)
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
    free(st.ex.p);
    free(st.rec[0].p);
    free(st.rec[1].p);
    free(env.p);
    codec_image_free(im);
    return ret;
}

/* ---- join -------------------------------------------------------------------------------- */

/* The RLE section (codec.h) checked against the image: the skeleton, and the runs of every
 * segment making exactly its plane. *coded gets the bytes the runs take. 0 or -EINVAL. */
static int rle_check(const struct rle_map *m, struct codec_rd r, struct codec_rd *skel,
                     struct codec_rd *runs, uint64_t *coded)
{
    uint64_t slen, pos = 0, gap, total = 0;
    struct rle_it it;
    uint8_t h;
    size_t at;
    if (codec_rd_var(&r, UINT64_MAX, &slen) != 0 || slen > r.left)
        return -EINVAL;
    *skel = (struct codec_rd){r.p, (size_t)slen};
    r.p += slen;
    r.left -= slen;
    *runs = r;
    for (uint64_t k = 0; k < (uint64_t)m->img->frames * m->segs; k++) {
        if (codec_rd_var(&r, slen - pos, &gap) != 0 ||
            rle_it_init(&it, m, (uint32_t)(k / m->segs), (uint32_t)(k % m->segs), r) != 0)
            return -EINVAL;
        pos += gap;
        while (it.p < m->hw) {
            if (rle_it_next(&it, &h, &at) != 0)
                return -EINVAL;
            total += rle_coded(h);
        }
        if (it.left != 0)
            return -EINVAL; /* headers or exceptions past the plane's end */
        r = it.r;
    }
    *coded = total;
    return r.left == 0 ? 0 : -EINVAL;
}

/* The pixel data between head and tail: the skeleton with each segment's runs put back (a
 * literal: its header and bytes; a replicate: its header and the first of its bytes). */
static void rle_render(const struct rle_map *m, struct codec_rd skel, struct codec_rd runs,
                       uint8_t *q)
{
    const uint8_t *s = skel.p;
    uint64_t gap;
    struct rle_it it;
    uint8_t h;
    size_t at;
    for (uint64_t k = 0; k < (uint64_t)m->img->frames * m->segs; k++) {
        codec_rd_var(&runs, UINT64_MAX, &gap); /* all checked by rle_check */
        rle_it_init(&it, m, (uint32_t)(k / m->segs), (uint32_t)(k % m->segs), runs);
        memcpy(q, s, gap);
        q += gap;
        s += gap;
        while (it.p < m->hw && rle_it_next(&it, &h, &at) == 0) {
            *q++ = h;
            for (size_t j = 0; j < (h < 128 ? rle_out(h) : h > 128 ? 1 : 0); j++)
                *q++ = rle_get(m->img, it.base + at + j, it.shift);
        }
        runs = it.r;
    }
    memcpy(q, s, skel.left - (size_t)(s - skel.p));
}

int codec_dicom_rle_join(const struct codec_image *img, const uint8_t *env, size_t env_len,
                         uint8_t **out, size_t *out_len)
{
    struct codec_found f = {.geo = *img};
    struct codec_rd skel, runs;
    struct rle_map m;
    struct codec_env_parts e;
    uint64_t coded, total;
    uint8_t flags, *o;

    /* the image within the limits and its planes as large as it says; only the flags split
     * makes (a 32-bit sample is two 16-bit channels) */
    if (codec_env_check(img, env, env_len) != 0 || codec_env_parts(env, env_len, &e) != 0 ||
        codec_found_size(&f, NULL, 0) != 0 || f.raster_len != img->planes_bytes)
        return -EINVAL;
    flags = env[CODEC_ENV_FLAGS];
    if ((flags & ~(CODEC_DICOM_RLE | CODEC_DICOM_WORDS32)) != 0 ||
        ((flags & CODEC_DICOM_WORDS32) && (img->bits != 16 || img->channels % 2)))
        return -EINVAL;
    rle_map_init(&m, (struct codec_image *)img, (flags & CODEC_DICOM_WORDS32) != 0);
    if (rle_check(&m, (struct codec_rd){e.sec, e.sec_len}, &skel, &runs, &coded) != 0)
        return -EINVAL;
    /* each part is bounded by env_len, or 129 × the planes: no overflow in 64 bits */
    total = e.head_len + skel.left + coded + e.tail_len;
    if (total > CODEC_MAX_FILE_BYTES)
        return -EFBIG;
    if (!(o = malloc(total ? total : 1)))
        return -ENOMEM;
    memcpy(o, e.head, e.head_len);
    rle_render(&m, skel, runs, o + e.head_len);
    memcpy(o + total - e.tail_len, e.tail, e.tail_len);
    *out = o;
    *out_len = total;
    return 0;
}
