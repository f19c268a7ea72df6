// SPDX-License-Identifier: MIT
/*
 * DICOM adapter: Part 10 files (128-byte preamble, "DICM", file meta group in explicit VR
 * little endian) whose dataset is explicit VR little endian, implicit VR little endian or
 * explicit VR big endian, with native Pixel Data (7FE0,0010) of 8-, 16- or 32-bit samples, or
 * RLE Lossless (encapsulated) Pixel Data.
 *
 * The parser walks the dataset only as far as the top-level Pixel Data element: it needs the
 * element boundaries (defined and undefined lengths, nested sequences and items, with a depth
 * limit) and a handful of image attributes, and nothing else. Everything before the pixel
 * values and after them goes to the envelope verbatim, so exactness never depends on
 * understanding an element; what the walk buys is the certainty that the bytes taken as pixels
 * are the pixel data. Pixel data longer than the geometry (a pad byte, or padding) keeps the
 * extra bytes in the envelope. A 32-bit sample (RT Dose) is taken as two 16-bit samples, its
 * words in file order, so the coder sees two 16-bit channels and the raster needs no loop of
 * its own; subsampled chroma (YBR_FULL_422) likewise as four half-width channels, one per byte
 * (or word) of a pixel pair. RLE Lossless (encapsulated) is parsed here as far as the Pixel
 * Data element, and its fragments by dicomrle.c. Other encapsulated (compressed) and deflated
 * transfer syntaxes, 1-bit samples, pixel data shorter than the geometry and datasets without
 * the Part 10 preamble are refused.
 */
#include <errno.h>
#include <string.h>

#include "codec/adapt/adapt_int.h"

#define DCM_UNDEFINED 0xffffffffu
#define DCM_TAG(g, e) ((uint32_t)(g) << 16 | (e))
#define DCM_ITEM DCM_TAG(0xfffe, 0xe000)
#define DCM_ITEM_END DCM_TAG(0xfffe, 0xe00d)
#define DCM_SEQ_END DCM_TAG(0xfffe, 0xe0dd)
#define DCM_PIXEL_DATA DCM_TAG(0x7fe0, 0x0010)

struct dcm {
    const uint8_t *buf;
    size_t len, pos;
    bool implicit, big;
    bool rle; /* RLE Lossless: Pixel Data encapsulated, explicit VR little endian */
    uint32_t elements;
    char *why;
    size_t whylen;
};

struct dcm_elem {
    uint32_t tag;
    char vr[2]; /* "\0\0" when the encoding has no VR */
    uint32_t vlen;
    size_t hdr; /* header bytes: the value starts at pos + hdr */
};

/* The image attributes read from the top level of the dataset; -1: absent. */
struct dcm_attrs {
    long rows, cols, spp, bits_alloc, bits_stored, planar, frames;
    char ts[65];
    bool ybr422; /* Photometric Interpretation YBR_FULL_422 or YBR_PARTIAL_422 */
};

enum dcm_mode { DCM_META, DCM_TOP, DCM_ITEM_BODY };

static uint16_t dcm_u16(const struct dcm *d, size_t at)
{
    return d->big ? codec_get_be16(d->buf + at) : codec_get_le16(d->buf + at);
}

static uint32_t dcm_u32(const struct dcm *d, size_t at)
{
    return d->big ? codec_get_be32(d->buf + at) : codec_get_le32(d->buf + at);
}

static int dcm_truncated(struct dcm *d)
{
    return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: truncated or malformed dataset");
}

/* VRs whose explicit encoding has 2 reserved bytes and a 32-bit length. */
static bool dcm_long_vr(const char vr[2])
{
    static const char *const longs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++)
        if (vr[0] == longs[i][0] && vr[1] == longs[i][1])
            return true;
    return false;
}

static int dcm_read_elem(struct dcm *d, struct dcm_elem *e)
{
    size_t left = d->len - d->pos;
    if (left < 8)
        return dcm_truncated(d);
    if (++d->elements > CODEC_MAX_DICOM_ELEMENTS)
        return codec_why(d->why, d->whylen, -EFBIG, "DICOM: too many elements");
    e->tag = DCM_TAG(dcm_u16(d, d->pos), dcm_u16(d, d->pos + 2));
    e->vr[0] = e->vr[1] = 0;
    if ((e->tag >> 16) == 0xfffe || d->implicit) {
        e->vlen = dcm_u32(d, d->pos + 4);
        e->hdr = 8;
        return 0;
    }
    e->vr[0] = (char)d->buf[d->pos + 4];
    e->vr[1] = (char)d->buf[d->pos + 5];
    if (e->vr[0] < 'A' || e->vr[0] > 'Z' || e->vr[1] < 'A' || e->vr[1] > 'Z')
        return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: invalid VR");
    if (dcm_long_vr(e->vr)) {
        if (left < 12)
            return dcm_truncated(d);
        e->vlen = dcm_u32(d, d->pos + 8);
        e->hdr = 12;
    } else {
        e->vlen = dcm_u16(d, d->pos + 6);
        e->hdr = 8;
    }
    return 0;
}

static int dcm_skip(struct dcm *d, const struct dcm_elem *e)
{
    size_t left = d->len - d->pos;
    if (e->vlen == DCM_UNDEFINED || e->hdr > left || e->vlen > left - e->hdr)
        return dcm_truncated(d);
    d->pos += e->hdr + e->vlen;
    return 0;
}

/* A US value of one number; anything else makes the attribute unusable (-2). */
static long dcm_us(const struct dcm *d, const struct dcm_elem *e)
{
    return e->vlen == 2 ? dcm_u16(d, d->pos + e->hdr) : -2;
}

/* An IS value holding one positive number; -2 when it is anything else. */
static long dcm_is(const struct dcm *d, const struct dcm_elem *e)
{
    const uint8_t *p = d->buf + d->pos + e->hdr;
    size_t n = e->vlen, i = 0;
    long v = 0;
    if (n > 16)
        return -2;
    while (n && (p[n - 1] == ' ' || p[n - 1] == 0))
        n--;
    while (i < n && p[i] == ' ')
        i++;
    if (i < n && p[i] == '+')
        i++;
    if (i == n)
        return -2;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (long)CODEC_MAX_FRAMES * 10)
            return -2;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Whether a CS value is `want`, but for trailing space padding. */
static bool dcm_cs_is(const struct dcm *d, const struct dcm_elem *e, const char *want)
{
    const uint8_t *p = d->buf + d->pos + e->hdr;
    size_t n = e->vlen, w = strlen(want);
    while (n && (p[n - 1] == ' ' || p[n - 1] == 0))
        n--;
    return n == w && memcmp(p, want, w) == 0;
}

static void dcm_capture(const struct dcm *d, const struct dcm_elem *e, struct dcm_attrs *a)
{
    switch (e->tag) {
    case DCM_TAG(0x0002, 0x0010): {
        size_t n = e->vlen < sizeof(a->ts) ? e->vlen : 0;
        memcpy(a->ts, d->buf + d->pos + e->hdr, n);
        while (n && (a->ts[n - 1] == 0 || a->ts[n - 1] == ' '))
            n--;
        a->ts[n] = 0;
        for (size_t i = 0; i < n; i++)
            if ((a->ts[i] < '0' || a->ts[i] > '9') && a->ts[i] != '.')
                a->ts[0] = 0; /* not a UID: treated as missing */
        break;
    }
    case DCM_TAG(0x0028, 0x0002):
        a->spp = dcm_us(d, e);
        break;
    case DCM_TAG(0x0028, 0x0004):
        a->ybr422 = dcm_cs_is(d, e, "YBR_FULL_422") || dcm_cs_is(d, e, "YBR_PARTIAL_422");
        break;
    case DCM_TAG(0x0028, 0x0006):
        a->planar = dcm_us(d, e);
        break;
    case DCM_TAG(0x0028, 0x0008):
        a->frames = dcm_is(d, e);
        break;
    case DCM_TAG(0x0028, 0x0010):
        a->rows = dcm_us(d, e);
        break;
    case DCM_TAG(0x0028, 0x0011):
        a->cols = dcm_us(d, e);
        break;
    case DCM_TAG(0x0028, 0x0100):
        a->bits_alloc = dcm_us(d, e);
        break;
    case DCM_TAG(0x0028, 0x0101):
        a->bits_stored = dcm_us(d, e);
        break;
    default:
        break;
    }
}

static int dcm_walk(struct dcm *d, enum dcm_mode mode, unsigned depth, struct dcm_attrs *a);

/* The items of a sequence (or the fragments of encapsulated data) of undefined length, up to
 * and including the sequence delimiter. The content of a UN of undefined length is implicit
 * VR little endian whatever the transfer syntax (PS3.5 6.2.2). */
static int dcm_sequence(struct dcm *d, unsigned depth, bool un)
{
    bool implicit = d->implicit, big = d->big;
    struct dcm_elem e = {0};
    int ret;
    if (depth > CODEC_MAX_DICOM_DEPTH)
        return codec_why(d->why, d->whylen, -EFBIG, "DICOM: sequences nested too deep");
    if (un) {
        d->implicit = true;
        d->big = false;
    }
    for (;;) {
        if ((ret = dcm_read_elem(d, &e)) != 0)
            goto out;
        if (e.tag == DCM_SEQ_END) {
            d->pos += e.hdr;
            ret = e.vlen == 0 ? 0 : dcm_truncated(d);
            goto out;
        }
        if (e.tag != DCM_ITEM) {
            ret = dcm_truncated(d);
            goto out;
        }
        if (e.vlen != DCM_UNDEFINED) {
            if ((ret = dcm_skip(d, &e)) != 0)
                goto out;
            continue;
        }
        d->pos += e.hdr;
        if ((ret = dcm_walk(d, DCM_ITEM_BODY, depth, NULL)) != 0)
            goto out;
    }
out:
    d->implicit = implicit;
    d->big = big;
    return ret;
}

/*
 * Walk elements from d->pos. DCM_META: while the group is 0002, capturing the transfer syntax.
 * DCM_TOP: until the top-level Pixel Data element, left at d->pos (returns 1). DCM_ITEM_BODY:
 * until the item delimiter, consumed.
 */
static int dcm_walk(struct dcm *d, enum dcm_mode mode, unsigned depth, struct dcm_attrs *a)
{
    struct dcm_elem e = {0};
    int ret;
    for (;;) {
        if (mode == DCM_TOP && d->pos == d->len)
            return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: no pixel data");
        if (mode == DCM_META && (d->len - d->pos < 2 || dcm_u16(d, d->pos) != 0x0002))
            return 0;
        if ((ret = dcm_read_elem(d, &e)) != 0)
            return ret;
        if ((e.tag >> 16) == 0xfffe) {
            if (mode != DCM_ITEM_BODY || e.tag != DCM_ITEM_END || e.vlen != 0)
                return dcm_truncated(d);
            d->pos += e.hdr;
            return 0;
        }
        if (mode == DCM_TOP && e.tag == DCM_PIXEL_DATA)
            return 1;
        if (e.vlen == DCM_UNDEFINED) {
            bool un = !d->implicit && e.vr[0] == 'U' && e.vr[1] == 'N';
            d->pos += e.hdr;
            if ((ret = dcm_sequence(d, depth + 1, un)) != 0)
                return ret;
            continue;
        }
        if (e.hdr > d->len - d->pos || e.vlen > d->len - d->pos - e.hdr)
            return dcm_truncated(d);
        if (a && (mode == DCM_TOP || mode == DCM_META))
            dcm_capture(d, &e, a);
        d->pos += e.hdr + e.vlen;
    }
}

/* Whether the transfer syntax is one we take; else why says which it is. */
static int dcm_transfer_syntax(struct dcm *d, const char *ts)
{
    static const struct {
        const char *prefix;
        const char *what;
    } known[] = {
        {"1.2.840.10008.1.2.1.99", "deflated transfer syntax"},
        {"1.2.840.10008.1.2.4.5", "encapsulated JPEG"},
        {"1.2.840.10008.1.2.4.6", "encapsulated JPEG"},
        {"1.2.840.10008.1.2.4.70", "encapsulated JPEG lossless"},
        {"1.2.840.10008.1.2.4.8", "encapsulated JPEG-LS"},
        {"1.2.840.10008.1.2.4.9", "encapsulated JPEG 2000"},
        {"1.2.840.10008.1.2.4.10", "encapsulated MPEG"},
        {"1.2.840.10008.1.2.4.20", "encapsulated HTJ2K"},
    };
    if (strcmp(ts, "1.2.840.10008.1.2.1") == 0) {
        d->implicit = false;
        d->big = false;
        return 0;
    }
    if (strcmp(ts, "1.2.840.10008.1.2") == 0) {
        d->implicit = true;
        d->big = false;
        return 0;
    }
    if (strcmp(ts, "1.2.840.10008.1.2.2") == 0) {
        d->implicit = false;
        d->big = true;
        return 0;
    }
    if (strcmp(ts, "1.2.840.10008.1.2.5") == 0) {
        d->implicit = false;
        d->big = false;
        d->rle = true;
        return 0;
    }
    if (!ts[0])
        return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: no transfer syntax");
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strncmp(ts, known[i].prefix, strlen(known[i].prefix)) == 0)
            return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: %s", known[i].what);
    /* A UID is digits and dots (checked on capture): no file content of concern in why. */
    return codec_why(d->why, d->whylen, -ENOTSUP, "DICOM: transfer syntax %s", ts);
}

/* Bits Allocated 32: each sample as its two 16-bit words, in file order (codec.h), when the
 * words of the samples of a pixel stay interleaved. 0 or -ENOTSUP. */
static int dcm_words32(struct codec_found *f, const struct dcm_attrs *a, char *why, size_t whylen)
{
    if (a->spp > (long)CODEC_MAX_CHANNELS / 2)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: 32-bit samples, %ld per pixel", a->spp);
    if (f->layout & CODEC_LAYOUT_PLANAR)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: 32-bit samples, planar");
    f->geo.channels = 2 * (uint32_t)a->spp;
    f->geo.bits = 16;
    f->layout |= CODEC_LAYOUT_WORDS32;
    return 0;
}

/* YBR_FULL_422: a pair of pixels is Y0 Y1 Cb Cr (PS3.3 C.7.6.3.1.2), read as one pixel of 4
 * channels at half the width (codec.h). 0 or -ENOTSUP. */
static int dcm_ybr422(struct codec_found *f, const struct dcm_attrs *a, char *why, size_t whylen)
{
    if (a->spp != 3 || (f->layout & (CODEC_LAYOUT_PLANAR | CODEC_LAYOUT_WORDS32)) || a->cols % 2)
        return codec_why(why, whylen, -ENOTSUP,
                         "DICOM: YBR_422 other than 3 interleaved samples of 8 or 16 bits in "
                         "even columns");
    f->geo.channels = 4;
    f->geo.width = (uint32_t)a->cols / 2;
    f->layout |= CODEC_LAYOUT_YBR422;
    return 0;
}

int codec_dicom_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why,
                      size_t whylen)
{
    struct dcm d = {.buf = buf, .len = len, .pos = 132, .why = why, .whylen = whylen};
    struct dcm_attrs a = {-1, -1, -1, -1, -1, -1, -1, {0}, false};
    struct dcm_elem e = {0};
    size_t start;
    int ret;

    if (len < 132 || memcmp(buf + 128, "DICM", 4) != 0)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: no Part 10 preamble");
    if ((ret = dcm_walk(&d, DCM_META, 0, &a)) != 0)
        return ret;
    if ((ret = dcm_transfer_syntax(&d, a.ts)) != 0)
        return ret;
    if ((ret = dcm_walk(&d, DCM_TOP, 0, &a)) != 1)
        return ret;
    if ((ret = dcm_read_elem(&d, &e)) != 0)
        return ret;
    if ((e.vlen == DCM_UNDEFINED) != d.rle)
        return codec_why(why, whylen, -ENOTSUP,
                         d.rle ? "DICOM: RLE pixel data not encapsulated"
                               : "DICOM: encapsulated pixel data");
    if (!d.implicit && !(e.vr[0] == 'O' && (e.vr[1] == 'B' || e.vr[1] == 'W')))
        return codec_why(why, whylen, -ENOTSUP, "DICOM: Pixel Data is not OB or OW");
    if (a.rows < 0 || a.cols < 0 || a.spp < 0 || a.bits_alloc < 0)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: image attributes missing or malformed");
    if (a.bits_alloc != 8 && a.bits_alloc != 16 && a.bits_alloc != 32)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: Bits Allocated %ld", a.bits_alloc);
    if (a.bits_stored == -1)
        a.bits_stored = a.bits_alloc;
    if (a.bits_stored < 1 || a.bits_stored > a.bits_alloc)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: Bits Stored does not fit");
    if (a.frames == -1)
        a.frames = 1;
    if (a.frames < 1)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: Number of Frames malformed");
    if (a.frames > (long)CODEC_MAX_FRAMES)
        return codec_why(why, whylen, -EFBIG, "DICOM: dimensions beyond limits");
    if (a.planar == -1)
        a.planar = 0;
    if (a.planar != 0 && a.planar != 1)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: Planar Configuration malformed");

    f->geo.format = CODEC_FORMAT_DICOM;
    f->geo.channels = (uint32_t)a.spp;
    f->geo.frames = (uint32_t)a.frames;
    f->geo.height = (uint32_t)a.rows;
    f->geo.width = (uint32_t)a.cols;
    f->geo.bits = (uint32_t)a.bits_alloc;
    /* RLE keeps one segment per sample and byte whatever Planar Configuration says */
    f->layout = (a.planar && a.spp > 1 && !d.rle) ? CODEC_LAYOUT_PLANAR : 0;
    if (a.bits_alloc == 32 && (ret = dcm_words32(f, &a, why, whylen)) != 0)
        return ret;
    if (a.ybr422 && d.rle)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: RLE of YBR_422");
    if (a.ybr422 && (ret = dcm_ybr422(f, &a, why, whylen)) != 0)
        return ret;
    if ((ret = codec_found_size(f, why, whylen)) != 0)
        return ret;
    f->max_value = (uint32_t)((1ul << (a.bits_stored < 16 ? a.bits_stored : 16)) - 1);
    f->strict = false;
    if (d.rle) {
        /* the fragments, from the first item on, are dicomrle.c's to check */
        if (e.hdr > len - d.pos)
            return codec_why(why, whylen, -ENOTSUP, "DICOM: pixel data truncated");
        f->head_len = d.pos + e.hdr;
        f->rle = true;
        return 0;
    }
    /* Longer than the geometry (an odd length's pad byte, or padding some writers add): the
     * samples are the first bytes, and the rest follows the raster into the envelope's tail,
     * verbatim. */
    if (e.vlen < f->raster_len)
        return codec_why(why, whylen, -ENOTSUP,
                         "DICOM: pixel data length %u shorter than the geometry (%zu)", e.vlen,
                         f->raster_len);
    start = d.pos + e.hdr;
    if (e.hdr > len - d.pos || e.vlen > len - start)
        return codec_why(why, whylen, -ENOTSUP, "DICOM: pixel data truncated");

    if (d.big) {
        bool ow = e.vr[1] == 'W';
        if (a.bits_alloc >= 16 && !ow)
            return codec_why(why, whylen, -ENOTSUP, "DICOM: %ld-bit OB pixel data in big endian",
                             a.bits_alloc);
        if (a.bits_alloc == 8 && ow && f->raster_len % 2)
            return codec_why(why, whylen, -ENOTSUP, "DICOM: odd-length 8-bit OW in big endian");
        if (a.bits_alloc >= 16)
            f->layout |= CODEC_LAYOUT_BE16;
        else if (ow)
            f->layout |= CODEC_LAYOUT_BE_OW8;
    }
    f->head_len = start;
    return 0;
}
