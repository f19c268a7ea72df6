// SPDX-License-Identifier: MIT
/*
 * PNG adapter: the chunks around the image data are kept verbatim, the IDAT zlib stream is
 * recorded (deflate.h) and its filtered scanlines are unfiltered into planes; join re-filters
 * with the stored filter types, re-emits the identical zlib stream and cuts it into IDAT chunks
 * of the recorded lengths. libpng decodes every file split accepts, and any disagreement with
 * our own unfiltering refuses the file: libpng is the referee of what the pixels are, our code
 * only has to be exact. The zlib stream is described against a model of zlib (zrecipe.h),
 * and the row filters against the adaptive choice of libpng and Pillow, so that a file written
 * through zlib costs a few dozen bytes of recipe whatever its size. The trade-off: split and
 * join each run the zlib model over the image (about what zlib's own compression costs) and
 * the filter heuristics over every row. Interlaced (Adam7) files are refused.
 */
#include <errno.h>
#include <png.h>
#include <zlib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "codec/adapt/adapt_int.h"
#include "codec/zlib/deflate.h"
#include "codec/zlib/zrecipe.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* The raster geometry IHDR gives: channels, bit depth, bytes per row and of the filtered
 * stream, and the planes. */
struct png_geo {
    uint32_t width, height;
    uint8_t depth, ctype, interlace;
    uint32_t channels;
    size_t bpp;      /* filter distance: bytes per complete pixel, at least 1 */
    size_t rowbytes; /* packed row, without the filter byte */
    size_t filtered; /* height × (rowbytes + 1) */
    size_t planes;   /* bytes of all planes */
};

/* Parse the 13 bytes of IHDR data. 0, -ENOTSUP or -EFBIG. */
static int png_ihdr(const uint8_t *d, struct png_geo *g, char *why, size_t whylen)
{
    size_t n;
    memset(g, 0, sizeof(*g));
    g->width = codec_get_be32(d);
    g->height = codec_get_be32(d + 4);
    g->depth = d[8];
    g->ctype = d[9];
    g->interlace = d[12];
    if (g->width == 0 || g->height == 0 || g->width > 0x7fffffffu || g->height > 0x7fffffffu)
        return codec_why(why, whylen, -ENOTSUP, "PNG: bad dimensions");
    if (d[10] != 0 || d[11] != 0 || g->interlace > 1)
        return codec_why(why, whylen, -ENOTSUP, "PNG: unknown compression or filter method");
    switch (g->ctype) {
    case 0:
        g->channels = 1;
        if (g->depth != 1 && g->depth != 2 && g->depth != 4 && g->depth != 8 && g->depth != 16)
            return codec_why(why, whylen, -ENOTSUP, "PNG: bad bit depth");
        break;
    case 3:
        g->channels = 1;
        if (g->depth != 1 && g->depth != 2 && g->depth != 4 && g->depth != 8)
            return codec_why(why, whylen, -ENOTSUP, "PNG: bad bit depth");
        break;
    case 2:
    case 4:
    case 6:
        g->channels = g->ctype == 2 ? 3 : g->ctype == 4 ? 2 : 4;
        if (g->depth != 8 && g->depth != 16)
            return codec_why(why, whylen, -ENOTSUP, "PNG: bad bit depth");
        break;
    default:
        return codec_why(why, whylen, -ENOTSUP, "PNG: bad colour type");
    }
    if (g->interlace)
        return codec_why(why, whylen, -ENOTSUP, "PNG: interlaced");
    if (g->width > CODEC_MAX_DIM || g->height > CODEC_MAX_DIM)
        return codec_why(why, whylen, -EFBIG, "PNG: dimensions beyond limits");
    /* width <= 2^16, channels × depth <= 64: no overflow below in size_t. */
    size_t bits_per_pixel = (size_t)g->channels * g->depth;
    g->bpp = bits_per_pixel >= 8 ? bits_per_pixel / 8 : 1;
    g->rowbytes = ((size_t)g->width * bits_per_pixel + 7) / 8;
    if (__builtin_mul_overflow((size_t)g->width, (size_t)g->height, &n) ||
        __builtin_mul_overflow(n, (size_t)g->channels * (g->depth == 16 ? 2 : 1), &n) ||
        n > CODEC_MAX_PIXEL_BYTES)
        return codec_why(why, whylen, -EFBIG, "PNG: pixels beyond limits");
    g->planes = n;
    if (__builtin_mul_overflow(g->rowbytes + 1, (size_t)g->height, &n) ||
        n >= CODEC_INFLATE_MAX_OUT)
        return codec_why(why, whylen, -EFBIG, "PNG: image data beyond limits");
    g->filtered = n;
    return 0;
}

static inline uint8_t paeth(uint8_t a, uint8_t b, uint8_t c)
{
    int p = (int)a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/*
 * The filters, one loop per type: a switch inside the loop kept the compiler from vectorising,
 * and filtering every row five ways (guess_filters) is a good part of split and join. Bytes
 * before the first whole pixel (i < bpp) see a = c = 0, and without a previous row b = c = 0,
 * as PNG defines.
 */

/* Undo filter `type` on row (rowbytes n), prev the unfiltered previous row or NULL. */
static void unfilter_row(uint8_t type, uint8_t *row, const uint8_t *prev, size_t n, size_t bpp)
{
    size_t lead = bpp < n ? bpp : n;
    switch (type) {
    case 1:
        for (size_t i = lead; i < n; i++)
            row[i] = (uint8_t)(row[i] + row[i - bpp]);
        break;
    case 2:
        if (prev)
            for (size_t i = 0; i < n; i++)
                row[i] = (uint8_t)(row[i] + prev[i]);
        break;
    case 3:
        if (prev) {
            for (size_t i = 0; i < lead; i++)
                row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
            for (size_t i = lead; i < n; i++)
                row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        } else {
            for (size_t i = lead; i < n; i++)
                row[i] = (uint8_t)(row[i] + (row[i - bpp] >> 1));
        }
        break;
    case 4:
        /* without a previous row Paeth is Sub; in the first pixel it is Up */
        if (prev) {
            for (size_t i = 0; i < lead; i++)
                row[i] = (uint8_t)(row[i] + prev[i]);
            for (size_t i = lead; i < n; i++)
                row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
        } else {
            for (size_t i = lead; i < n; i++)
                row[i] = (uint8_t)(row[i] + row[i - bpp]);
        }
        break;
    default:
        break;
    }
}

/* Apply filter `type`: out = filtered raw (prev: the raw previous row or NULL). */
static void filter_row(uint8_t type, const uint8_t *raw, const uint8_t *prev, uint8_t *out,
                       size_t n, size_t bpp)
{
    size_t lead = bpp < n ? bpp : n;
    switch (type) {
    case 1:
        memcpy(out, raw, lead);
        for (size_t i = lead; i < n; i++)
            out[i] = (uint8_t)(raw[i] - raw[i - bpp]);
        break;
    case 2:
        if (!prev) {
            memcpy(out, raw, n);
            break;
        }
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)(raw[i] - prev[i]);
        break;
    case 3:
        if (prev) {
            for (size_t i = 0; i < lead; i++)
                out[i] = (uint8_t)(raw[i] - (prev[i] >> 1));
            for (size_t i = lead; i < n; i++)
                out[i] = (uint8_t)(raw[i] - ((raw[i - bpp] + prev[i]) >> 1));
        } else {
            memcpy(out, raw, lead);
            for (size_t i = lead; i < n; i++)
                out[i] = (uint8_t)(raw[i] - (raw[i - bpp] >> 1));
        }
        break;
    case 4:
        if (prev) {
            for (size_t i = 0; i < lead; i++)
                out[i] = (uint8_t)(raw[i] - prev[i]);
            for (size_t i = lead; i < n; i++)
                out[i] = (uint8_t)(raw[i] - paeth(raw[i - bpp], prev[i], prev[i - bpp]));
        } else {
            memcpy(out, raw, lead);
            for (size_t i = lead; i < n; i++)
                out[i] = (uint8_t)(raw[i] - raw[i - bpp]);
        }
        break;
    default:
        memcpy(out, raw, n);
        break;
    }
}

/*
 * Adaptive filtering as the common writers do it: each candidate filter's bytes, read as
 * signed, summed by magnitude, and the smallest sum wins, the first one tried on a tie. They
 * differ in the candidates and the order they try them in: Pillow None, Up, Sub, Paeth (and
 * Average before Paeth with optimize=True); libpng None, Sub, Up, Average, Paeth restricted to
 * the filters the writer allows (png_set_filter's mask; pngcrush, for one, allows None, Sub and
 * Up). Heuristic h is filter mode 2 + h of the envelope (codec.h).
 */
struct png_heuristic {
    uint8_t n;        /* candidates */
    uint8_t order[5]; /* in the order tried */
};

#define PNG_HEURISTICS 28
static const struct png_heuristic heuristics[PNG_HEURISTICS] = {
    {4, {0, 2, 1, 4}},    /* Pillow */
    {5, {0, 2, 1, 3, 4}}, /* Pillow, optimize=True */
    {2, {0, 1}},          {2, {0, 2}},          {2, {1, 2}},       {3, {0, 1, 2}},
    {2, {0, 3}},          {2, {1, 3}},          {3, {0, 1, 3}},    {2, {2, 3}},
    {3, {0, 2, 3}},       {3, {1, 2, 3}},       {4, {0, 1, 2, 3}}, {2, {0, 4}},
    {2, {1, 4}},          {3, {0, 1, 4}},       {2, {2, 4}},       {3, {0, 2, 4}},
    {3, {1, 2, 4}},       {4, {0, 1, 2, 4}},    {2, {3, 4}},       {3, {0, 3, 4}},
    {3, {1, 3, 4}},       {4, {0, 1, 3, 4}},    {3, {2, 3, 4}},    {4, {0, 2, 3, 4}},
    {4, {1, 2, 3, 4}},    {5, {0, 1, 2, 3, 4}},
};

/* The filter each heuristic picks for a row; scratch holds n bytes. */
static void guess_filters(const uint8_t *raw, const uint8_t *prev, uint8_t *scratch, size_t n,
                          size_t bpp, uint8_t pick[PNG_HEURISTICS])
{
    uint64_t sum[5];
    for (uint8_t t = 0; t <= 4; t++) {
        sum[t] = 0;
        filter_row(t, raw, prev, scratch, n, bpp);
        uint32_t part = 0; /* rows are under 2^20 bytes of at most 128 each */
        for (size_t i = 0; i < n; i++)
            part += scratch[i] < 128 ? scratch[i] : 256u - scratch[i];
        sum[t] = part;
    }
    for (int h = 0; h < PNG_HEURISTICS; h++) {
        const struct png_heuristic *hp = &heuristics[h];
        uint8_t best = hp->order[0];
        for (int k = 1; k < hp->n; k++)
            if (sum[hp->order[k]] < sum[best])
                best = hp->order[k];
        pick[h] = best;
    }
}

/* Unfiltered row y → planes. Returns false when the padding bits after the last sample of a
 * sub-byte row are not zero (planes cannot hold them). */
static bool row_to_planes(const struct png_geo *g, const uint8_t *raw, size_t y, void *planes)
{
    size_t hw = (size_t)g->width * g->height, base = y * g->width;
    if (g->depth == 16) {
        uint16_t *p = planes;
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++) {
                const uint8_t *s = raw + 2 * (x * g->channels + c);
                p[c * hw + base + x] = (uint16_t)(s[0] << 8 | s[1]);
            }
        return true;
    }
    uint8_t *p = planes;
    if (g->depth == 8) {
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++)
                p[c * hw + base + x] = raw[x * g->channels + c];
        return true;
    }
    /* 1, 2, 4 bits, one channel: samples from the most significant bits first. */
    unsigned d = g->depth, per = 8 / d, mask = (1u << d) - 1;
    for (size_t x = 0; x < g->width; x++) {
        unsigned shift = 8 - d * (unsigned)(x % per + 1);
        p[base + x] = (uint8_t)(raw[x / per] >> shift & mask);
    }
    size_t used = (size_t)g->width * d % 8;
    return used == 0 || (raw[g->rowbytes - 1] & (0xffu >> used)) == 0;
}

/* Planes → raw row y, the inverse of row_to_planes. False when a sample does not fit the
 * bit depth. */
static bool planes_to_row(const struct png_geo *g, const void *planes, size_t y, uint8_t *raw)
{
    size_t hw = (size_t)g->width * g->height, base = y * g->width;
    if (g->depth == 16) {
        const uint16_t *p = planes;
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++) {
                uint8_t *s = raw + 2 * (x * g->channels + c);
                s[0] = (uint8_t)(p[c * hw + base + x] >> 8);
                s[1] = (uint8_t)p[c * hw + base + x];
            }
        return true;
    }
    const uint8_t *p = planes;
    if (g->depth == 8) {
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++)
                raw[x * g->channels + c] = p[c * hw + base + x];
        return true;
    }
    unsigned d = g->depth, per = 8 / d;
    memset(raw, 0, g->rowbytes);
    for (size_t x = 0; x < g->width; x++) {
        unsigned v = p[base + x];
        if (v >> d)
            return false;
        raw[x / per] |= (uint8_t)(v << (8 - d * (unsigned)(x % per + 1)));
    }
    return true;
}

/* ---- libpng as referee ------------------------------------------------------------------ */

struct png_mem {
    const uint8_t *buf;
    size_t len, pos;
};

static void png_mem_read(png_structp png, png_bytep out, size_t n)
{
    struct png_mem *m = png_get_io_ptr(png);
    if (n > m->len - m->pos)
        png_error(png, "read past the end");
    memcpy(out, m->buf + m->pos, n);
    m->pos += n;
}

static void png_quiet_error(png_structp png, png_const_charp msg)
{
    (void)msg; /* may quote file content: never logged */
    png_longjmp(png, 1);
}

static void png_quiet_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Decode buf with libpng (no transforms but unpacking sub-byte samples) and compare every
 * sample with planes. 0 when they agree, -ENOTSUP when libpng refuses the file or disagrees,
 * -ENOMEM. */
static int png_referee(const uint8_t *buf, size_t len, const struct png_geo *g, const void *planes,
                       char *why, size_t whylen)
{
    struct png_mem mem = {buf, len, 0};
    png_structp png = NULL;
    png_infop info = NULL;
    size_t sbytes = g->depth == 16 ? 2 : 1, rowlen = (size_t)g->width * g->channels * sbytes;
    size_t hw = (size_t)g->width * g->height;
    uint8_t *row = malloc(rowlen);
    volatile int ret = -ENOMEM;

    if (!row)
        goto out;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_quiet_error, png_quiet_warning);
    if (!png)
        goto out;
    info = png_create_info_struct(png);
    if (!info)
        goto out;
    if (setjmp(png_jmpbuf(png))) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng refuses the file");
        goto out;
    }
    png_set_read_fn(png, &mem, png_mem_read);
    png_set_user_limits(png, CODEC_MAX_DIM, CODEC_MAX_DIM);
    /* Ancillary chunks are kept verbatim, not interpreted: libpng need not parse them. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_read_info(png, info);
    if (png_get_image_width(png, info) != g->width ||
        png_get_image_height(png, info) != g->height || png_get_bit_depth(png, info) != g->depth ||
        png_get_color_type(png, info) != g->ctype ||
        png_get_interlace_type(png, info) != PNG_INTERLACE_NONE) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng reads another header");
        goto out;
    }
    if (g->depth < 8)
        png_set_packing(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != rowlen) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng row size differs");
        goto out;
    }
    for (size_t y = 0; y < g->height; y++) {
        png_read_row(png, row, NULL);
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++) {
                size_t i = x * g->channels + c, at = c * hw + y * g->width + x;
                unsigned want = sbytes == 2 ? (unsigned)(row[2 * i] << 8 | row[2 * i + 1]) : row[i];
                unsigned got =
                    sbytes == 2 ? ((const uint16_t *)planes)[at] : ((const uint8_t *)planes)[at];
                if (want != got) {
                    ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng decodes other pixels");
                    goto out;
                }
            }
    }
    png_read_end(png, NULL);
    ret = 0;
out:
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(row);
    return ret;
}

/* ---- recipe packing ---------------------------------------------------------------------- */

#define RECIPE_PACKED_MAGIC "IDFZ"

/*
 * Replace *rec by "IDFZ" || varint length || zlib stream of it when that is smaller (recipes of
 * a few hundred bytes or less are left alone: nothing to gain). 0 or -ENOMEM.
 */
static int recipe_pack(uint8_t **rec, size_t *len)
{
    if (*len < 256)
        return 0;
    uLong bound = compressBound((uLong)*len);
    uint8_t *p = malloc(4 + 10 + bound);
    if (!p)
        return -ENOMEM;
    memcpy(p, RECIPE_PACKED_MAGIC, 4);
    size_t h = 4 + codec_put_var(p + 4, *len);
    uLongf zl = bound;
    if (compress2(p + h, &zl, *rec, (uLong)*len, 9) != Z_OK || h + zl >= *len) {
        free(p);
        return 0;
    }
    free(*rec);
    *rec = p;
    *len = h + zl;
    return 0;
}

/*
 * The recipe as the parsers see it: rec itself, or unpacked into *buf (caller frees). A
 * description of `rows` bytes of rows takes at most 6 bytes per byte (a token of one byte or
 * more costs at most 6) plus its block heads: more is refused before anything is allocated.
 */
static int recipe_unpack(const uint8_t *rec, size_t len, size_t rows, const uint8_t **out,
                         size_t *out_len, uint8_t **buf)
{
    const uint64_t max = 6 * (uint64_t)rows + ((uint64_t)1 << 24);
    struct codec_rd r = {rec, len};
    uint64_t n;
    *buf = NULL;
    if (len < 4 || memcmp(rec, RECIPE_PACKED_MAGIC, 4) != 0) {
        *out = rec;
        *out_len = len;
        return 0;
    }
    r.p += 4, r.left -= 4;
    if (codec_rd_var(&r, max, &n) || n == 0)
        return -EINVAL;
    if (!(*buf = malloc((size_t)n)))
        return -ENOMEM;
    uLongf got = (uLongf)n;
    if (uncompress(*buf, &got, r.p, (uLong)r.left) != Z_OK || got != n) {
        free(*buf);
        *buf = NULL;
        return -EINVAL;
    }
    *out = *buf;
    *out_len = (size_t)n;
    return 0;
}

/* ---- split ------------------------------------------------------------------------------ */

int codec_png_split(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                    uint8_t **envelope, size_t *env_len, char *why, size_t whylen)
{
    struct png_geo g;
    struct codec_deflate_desc *desc = NULL;
    struct codec_image *im = NULL;
    uint8_t *idat = NULL, *data = NULL, *env = NULL, *zr = NULL, *types = NULL, *guess = NULL;
    uint8_t *scratch = NULL;
    size_t data_len = 0, pos = sizeof(png_sig), head_len = 0, tail_pos = 0, nidat = 0;
    size_t idat_len = 0, elen, recipe_len, zr_len = 0;
    int state = 0; /* 0 before IDAT, 1 in the IDAT run, 2 after it */
    bool ihdr = false, iend = false;
    int ret;

    if (len < sizeof(png_sig) || memcmp(buf, png_sig, sizeof(png_sig)) != 0)
        return codec_why(why, whylen, -ENOTSUP, "PNG: bad signature");
    /* Walk the chunks through IEND; what follows IEND is the tail's, verbatim. */
    while (!iend) {
        if (len - pos < 12)
            return codec_why(why, whylen, -ENOTSUP, "PNG: truncated");
        uint32_t clen = codec_get_be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (clen > 0x7fffffffu || clen > len - pos - 12)
            return codec_why(why, whylen, -ENOTSUP, "PNG: truncated or bad chunk length");
        for (int i = 0; i < 4; i++)
            if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
                return codec_why(why, whylen, -ENOTSUP, "PNG: bad chunk type");
        if (codec_crc32(0, type, 4 + (size_t)clen) != codec_get_be32(buf + pos + 8 + clen))
            return codec_why(why, whylen, -ENOTSUP, "PNG: bad CRC");
        bool is_idat = memcmp(type, "IDAT", 4) == 0;
        if (!ihdr) {
            if (memcmp(type, "IHDR", 4) != 0 || clen != 13)
                return codec_why(why, whylen, -ENOTSUP, "PNG: IHDR not first");
            if ((ret = png_ihdr(buf + pos + 8, &g, why, whylen)) != 0)
                return ret;
            ihdr = true;
        } else if (memcmp(type, "IHDR", 4) == 0) {
            return codec_why(why, whylen, -ENOTSUP, "PNG: second IHDR");
        }
        if (is_idat) {
            if (state == 2)
                return codec_why(why, whylen, -ENOTSUP, "PNG: IDAT chunks not consecutive");
            if (state == 0)
                head_len = pos;
            state = 1;
            nidat++;
            idat_len += clen; /* <= len: no overflow */
        } else if (state == 1) {
            state = 2;
            tail_pos = pos;
        }
        iend = memcmp(type, "IEND", 4) == 0;
        pos += 12 + (size_t)clen;
    }
    if (state != 2)
        return codec_why(why, whylen, -ENOTSUP, "PNG: no image data");

    ret = -ENOMEM;
    idat = malloc(idat_len ? idat_len : 1);
    if (!idat)
        goto out;
    for (size_t p = head_len, o = 0; p < tail_pos; p += 12 + codec_get_be32(buf + p)) {
        memcpy(idat + o, buf + p + 8, codec_get_be32(buf + p));
        o += codec_get_be32(buf + p);
    }
    ret = codec_zlib_record(idat, idat_len, g.filtered + 1, &data, &data_len, &desc);
    if (ret == -ENOMEM)
        goto out;
    if (ret) {
        ret = codec_why(why, whylen, -ENOTSUP,
                        ret == -EFBIG     ? "PNG: too much image data"
                        : ret == -ENOTSUP ? "PNG: zlib stream not representable"
                                          : "PNG: bad zlib stream");
        goto out;
    }
    if (data_len != g.filtered) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: image data of the wrong length");
        goto out;
    }

    /* The deflate description: modelled on zlib when that is smaller, else raw; then
     * compressed with zlib when that is smaller still (a stream from another deflater leaves
     * thousands of corrections, which compress). */
    ret = codec_zrecipe_make(desc, data, data_len, threads, &zr, &zr_len, NULL);
    if (ret == -ENOMEM)
        goto out;
    recipe_len = codec_deflate_desc_size(desc);
    if (ret != 0 || zr_len >= recipe_len) {
        free(zr);
        ret = -ENOMEM;
        if (!(zr = malloc(recipe_len)))
            goto out;
        zr_len = recipe_len;
        if (codec_deflate_desc_serialise(desc, zr, zr_len) != (ssize_t)zr_len) {
            ret = -EIO;
            goto out;
        }
    }
    if ((ret = recipe_pack(&zr, &zr_len)) != 0)
        goto out;
    recipe_len = zr_len;

    /* Each term is bounded by len or by the planes: no overflow in 64-bit size_t. The IDAT
     * section is at most 3 + 10 (count) + 10 K (lengths) + 10 + 11 Y (filter types) bytes
     * before its recipe. */
    elen = CODEC_ENV_FIXED + head_len + 8 + 23 + 10 * nidat + 11 * (size_t)g.height + recipe_len +
           8 + (len - tail_pos);
    ret = -ENOMEM;
    im = calloc(1, sizeof(*im));
    env = malloc(elen);
    types = malloc(g.height ? g.height : 1);
    guess = malloc(PNG_HEURISTICS * (g.height ? (size_t)g.height : 1));
    scratch = malloc(g.rowbytes);
    if (!im || !env || !types || !guess || !scratch)
        goto out;
    im->format = CODEC_FORMAT_PNG;
    im->channels = g.channels;
    im->frames = 1;
    im->height = g.height;
    im->width = g.width;
    im->bits = g.depth == 16 ? 16 : 8;
    im->significant = g.depth;
    im->planes_bytes = g.planes;
    im->planes = malloc(g.planes);
    if (!im->planes)
        goto out;

    /* Unfilter in place, row by row, noting each filter type and libpng's choice for the row. */
    for (size_t y = 0; y < g.height; y++) {
        uint8_t *row = data + y * (g.rowbytes + 1);
        const uint8_t *prev = y ? row - g.rowbytes : NULL;
        if (row[0] > 4) {
            ret = codec_why(why, whylen, -ENOTSUP, "PNG: bad filter type");
            goto out;
        }
        types[y] = row[0];
        unfilter_row(row[0], row + 1, prev, g.rowbytes, g.bpp);
        guess_filters(row + 1, prev, scratch, g.rowbytes, g.bpp, guess + PNG_HEURISTICS * y);
        if (!row_to_planes(&g, row + 1, y, im->planes)) {
            ret = codec_why(why, whylen, -ENOTSUP, "PNG: row padding bits set");
            goto out;
        }
    }
    if ((ret = png_referee(buf, len, &g, im->planes, why, whylen)) != 0)
        goto out;

    codec_env_header(env, im, 0);
    uint8_t *e = env + 28;
    codec_put_le64(e, head_len);
    memcpy(e + 8, buf, head_len);
    e += 8 + head_len;
    /* IDAT section (codec.h): chunk lengths, filter types, recipe */
    uint8_t *sec = e + 8, *q = sec;
    uint32_t first = codec_get_be32(buf + head_len), last = 0;
    bool even = true;
    for (size_t p = head_len; p < tail_pos; p += 12 + codec_get_be32(buf + p)) {
        last = codec_get_be32(buf + p);
        if (p + 12 + last < tail_pos && last != first)
            even = false;
    }
    even = even && last >= 1 && last <= first;
    q += codec_put_var(q, nidat);
    *q++ = even ? 1 : 0;
    if (even)
        q += codec_put_var(q, first);
    else
        for (size_t p = head_len; p < tail_pos; p += 12 + codec_get_be32(buf + p))
            q += codec_put_var(q, codec_get_be32(buf + p));
    /* filter types: all one type, a heuristic's picks and the rows where it differs, or
     * verbatim, whichever is shortest */
    size_t nsame = 0, nexc[PNG_HEURISTICS] = {0};
    int best = 0;
    for (size_t y = 0; y < g.height; y++) {
        nsame += types[y] == types[0];
        for (int h = 0; h < PNG_HEURISTICS; h++)
            nexc[h] += types[y] != guess[PNG_HEURISTICS * y + (size_t)h];
    }
    for (int h = 1; h < PNG_HEURISTICS; h++)
        if (nexc[h] < nexc[best])
            best = h;
    if (nsame == g.height) {
        *q++ = 1;
        *q++ = types[0];
    } else if (nexc[best] < g.height / 2) {
        *q++ = (uint8_t)(2 + best);
        q += codec_put_var(q, nexc[best]);
        for (size_t y = 0, prev = 0; y < g.height; y++) {
            if (types[y] == guess[PNG_HEURISTICS * y + (size_t)best])
                continue;
            q += codec_put_var(q, y - prev);
            *q++ = types[y];
            prev = y + 1;
        }
    } else {
        *q++ = 0;
        memcpy(q, types, g.height);
        q += g.height;
    }
    memcpy(q, zr, recipe_len);
    q += recipe_len;
    codec_put_le64(e, (uint64_t)(q - sec));
    e = q;
    codec_put_le64(e, len - tail_pos);
    memcpy(e + 8, buf + tail_pos, len - tail_pos);
    elen = (size_t)(e + 8 + (len - tail_pos) - env);
    uint8_t *trimmed = realloc(env, elen);
    if (trimmed)
        env = trimmed;

    *img = im;
    *envelope = env;
    *env_len = elen;
    im = NULL;
    env = NULL;
    ret = 0;
out:
    codec_image_free(im);
    free(env);
    free(data);
    free(idat);
    free(zr);
    free(types);
    free(guess);
    free(scratch);
    codec_deflate_desc_free(desc);
    return ret;
}

/* ---- join ------------------------------------------------------------------------------- */

int codec_png_join(const struct codec_image *img, const uint8_t *env, size_t env_len,
                   unsigned threads, uint8_t **out, size_t *out_len)
{
    struct png_geo g;
    struct codec_deflate_desc *desc = NULL;
    uint8_t *data = NULL, *raw = NULL, *z = NULL, *o = NULL, *scratch = NULL, *unpacked = NULL;
    const uint8_t *rec;
    size_t zlen = 0, rest, total, rec_len;
    uint64_t head_len, nidat, sec_len, tail_len, even = 0, v;
    const uint8_t *e, *head, *sec, *tail;
    const uint8_t *types = NULL; /* filter mode 0: one byte per row */
    uint8_t fmode, ftype = 0, cmode;
    uint64_t nexc = 0, next_exc = UINT64_MAX;
    struct codec_rd r, lens_rd = {0}, exc_rd = {0};
    int ret = -EINVAL;

    if (codec_env_check(img, env, env_len) != 0 || env[26] != 0)
        goto out;
    e = env + 28;
    rest = env_len - 28;
#define TAKE(n)                                                                                    \
    do {                                                                                           \
        if ((uint64_t)(n) > rest)                                                                  \
            goto out;                                                                              \
        e += (n);                                                                                  \
        rest -= (n);                                                                               \
    } while (0)
    if (rest < 8)
        goto out;
    head_len = codec_get_le64(e);
    TAKE(8);
    head = e;
    TAKE(head_len);
    /* The head is the signature and IHDR first (split made it so); IHDR says the layout. */
    if (head_len < 33 || memcmp(head, png_sig, 8) != 0 || codec_get_be32(head + 8) != 13 ||
        memcmp(head + 12, "IHDR", 4) != 0 || png_ihdr(head + 16, &g, NULL, 0) != 0)
        goto out;
    if (g.width != img->width || g.height != img->height || g.channels != img->channels ||
        (g.depth == 16 ? 16u : 8u) != img->bits || img->frames != 1 ||
        g.planes != img->planes_bytes)
        goto out;
    if (rest < 8)
        goto out;
    sec_len = codec_get_le64(e);
    TAKE(8);
    sec = e;
    TAKE(sec_len);
    if (rest < 8)
        goto out;
    tail_len = codec_get_le64(e);
    TAKE(8);
    tail = e;
    if (tail_len != rest)
        goto out;
#undef TAKE

    /* The IDAT section: chunk lengths, filter types, then the recipe to its end. */
    r = (struct codec_rd){sec, (size_t)sec_len};
    /* each chunk costs 12 bytes of output at least */
    if (codec_rd_var(&r, CODEC_MAX_FILE_BYTES / 12, &nidat) || nidat == 0 ||
        codec_rd_u8(&r, &cmode) || cmode > 1)
        goto out;
    if (cmode == 1) {
        if (codec_rd_var(&r, 0x7fffffffu, &even) || even == 0)
            goto out;
    } else {
        lens_rd = r;
        for (uint64_t i = 0; i < nidat; i++)
            if (codec_rd_var(&r, 0x7fffffffu, &v))
                goto out;
    }
    if (codec_rd_u8(&r, &fmode) || fmode > 1 + PNG_HEURISTICS)
        goto out;
    if (fmode == 0) {
        if (r.left < g.height)
            goto out;
        types = r.p;
        for (size_t y = 0; y < g.height; y++)
            if (types[y] > 4)
                goto out;
        r.p += g.height, r.left -= g.height;
    } else if (fmode == 1) {
        if (codec_rd_u8(&r, &ftype) || ftype > 4)
            goto out;
    } else {
        if (codec_rd_var(&r, g.height, &nexc))
            goto out;
        exc_rd = r;
        for (uint64_t i = 0; i < nexc; i++) {
            uint8_t t;
            if (codec_rd_var(&r, g.height, &v) || codec_rd_u8(&r, &t) || t > 4)
                goto out;
        }
    }

    /* Re-filter: raw holds the current and the previous unfiltered row. */
    ret = -ENOMEM;
    data = malloc(g.filtered);
    raw = malloc(2 * g.rowbytes);
    scratch = malloc(g.rowbytes);
    if (!data || !raw || !scratch)
        goto out;
    ret = -EINVAL;
    if (nexc > 0) {
        if (codec_rd_var(&exc_rd, g.height, &next_exc))
            goto out;
    }
    for (size_t y = 0; y < g.height; y++) {
        uint8_t *cur = raw + (y % 2) * g.rowbytes, *prev = raw + ((y + 1) % 2) * g.rowbytes;
        uint8_t *row = data + y * (g.rowbytes + 1), type;
        if (!planes_to_row(&g, img->planes, y, cur))
            goto out;
        if (fmode == 0) {
            type = types[y];
        } else if (fmode == 1) {
            type = ftype;
        } else if (y == next_exc) {
            codec_rd_u8(&exc_rd, &type); /* checked above */
            if (--nexc > 0) {
                codec_rd_var(&exc_rd, g.height, &v);
                next_exc = y + 1 + v;
            } else {
                next_exc = UINT64_MAX;
            }
        } else {
            uint8_t pick[PNG_HEURISTICS];
            guess_filters(cur, y ? prev : NULL, scratch, g.rowbytes, g.bpp, pick);
            type = pick[fmode - 2];
        }
        row[0] = type;
        filter_row(type, cur, y ? prev : NULL, row + 1, g.rowbytes, g.bpp);
    }
    if (nexc != 0)
        goto out;
    if ((ret = recipe_unpack(r.p, r.left, g.filtered, &rec, &rec_len, &unpacked)) != 0)
        goto out;
    if (rec_len >= 4 && memcmp(rec, CODEC_ZRECIPE_MAGIC, 4) == 0)
        ret = codec_zrecipe_parse(rec, rec_len, data, g.filtered, g.filtered, threads, &desc);
    else
        ret = codec_deflate_desc_parse(rec, rec_len, g.filtered, &desc);
    if (ret != 0) {
        ret = ret == -ENOMEM ? ret : -EINVAL;
        goto out;
    }
    if ((ret = codec_deflate_emit(desc, data, g.filtered, &z, &zlen)) != 0)
        goto out;
    ret = -EINVAL;
    /* chunk lengths: as listed, or all `even` long but the last (1..even bytes) */
    if (cmode == 1 && (zlen <= (nidat - 1) * even || zlen - (nidat - 1) * even > even ||
                       (nidat - 1) > zlen / even))
        goto out;
    if (cmode == 0) {
        struct codec_rd lr = lens_rd;
        uint64_t sum = 0;
        for (uint64_t i = 0; i < nidat; i++) {
            codec_rd_var(&lr, 0x7fffffffu, &v); /* checked above */
            sum += v;                           /* < 2^31 each, nidat < 2^32 of them */
        }
        if (sum != zlen)
            goto out;
    }
    ret = -EFBIG;
    if (__builtin_add_overflow(head_len + tail_len, zlen, &total) ||
        __builtin_add_overflow(total, 12 * nidat, &total) || (uint64_t)total > CODEC_MAX_FILE_BYTES)
        goto out;
    ret = -ENOMEM;
    o = malloc(total);
    if (!o)
        goto out;
    memcpy(o, head, head_len);
    size_t p = head_len, zp = 0;
    struct codec_rd lr = lens_rd;
    for (uint64_t i = 0; i < nidat; i++) {
        uint32_t l;
        if (cmode == 1) {
            l = (uint32_t)(i + 1 < nidat ? even : zlen - zp);
        } else {
            codec_rd_var(&lr, 0x7fffffffu, &v);
            l = (uint32_t)v;
        }
        p += codec_png_chunk(o + p, "IDAT", z + zp, l);
        zp += l;
    }
    memcpy(o + p, tail, tail_len);
    *out = o;
    *out_len = total;
    o = NULL;
    ret = 0;
out:
    free(o);
    free(z);
    free(raw);
    free(scratch);
    free(unpacked);
    free(data);
    codec_deflate_desc_free(desc);
    return ret;
}
