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
 * the filter heuristics over every row. An interlaced (Adam7) file is seven reduced images one
 * after the other in the same stream: each pass is filtered on its own, and its samples land at
 * their places in the full planes, so the coder always sees the de-interlaced image.
 */
#include <assert.h>
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

/* One reduced image of the filtered stream: the whole image, or an Adam7 pass. Its sample
 * (x, y) is the image's (x0 + x × dx, y0 + y × dy). */
struct png_pass {
    uint32_t w, h;
    uint32_t x0, y0, dx, dy;
    size_t rowbytes; /* packed row, without the filter byte */
};

/* The raster geometry IHDR gives: channels, bit depth, the passes that hold data, bytes of the
 * filtered stream, and the planes. */
struct png_geo {
    uint32_t width, height;
    uint8_t depth, ctype, interlace;
    uint32_t channels;
    size_t bpp;      /* filter distance: bytes per complete pixel, at least 1 */
    size_t rowbytes; /* packed row of the whole image, without the filter byte (the longest) */
    unsigned npass;  /* passes with data: 1, or up to 7 when interlaced */
    struct png_pass pass[7];
    size_t rows;     /* filtered rows of all passes (height when not interlaced) */
    size_t filtered; /* the passes' rows × (their rowbytes + 1), summed */
    size_t planes;   /* bytes of all planes */
};

/* Adam7: first column, first row, column step, row step of each pass (PNG 8.2). */
static const uint8_t adam7[7][4] = {
    {0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
    {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2},
};

/* The passes of g (width, height, interlace, channels and depth set) that hold data, with
 * their rows and the filtered stream's size. 0 or -EFBIG. */
static int png_passes(struct png_geo *g, size_t bits_per_pixel)
{
    static const uint8_t whole[4] = {0, 0, 1, 1};
    unsigned n = g->interlace ? 7 : 1;
    size_t total = 0, part;
    g->npass = 0;
    g->rows = 0;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *a = g->interlace ? adam7[i] : whole;
        struct png_pass *p = &g->pass[g->npass];
        if (g->width <= a[0] || g->height <= a[1])
            continue; /* an empty pass has no rows, not even filter bytes */
        p->x0 = a[0], p->y0 = a[1], p->dx = a[2], p->dy = a[3];
        p->w = (g->width - a[0] + a[2] - 1) / a[2];
        p->h = (g->height - a[1] + a[3] - 1) / a[3];
        p->rowbytes = ((size_t)p->w * bits_per_pixel + 7) / 8;
        if (__builtin_mul_overflow(p->rowbytes + 1, (size_t)p->h, &part) ||
            __builtin_add_overflow(total, part, &total))
            return -EFBIG;
        g->rows += p->h;
        g->npass++;
    }
    g->filtered = total;
    return total < CODEC_DEFLATE_MAX_OUT ? 0 : -EFBIG;
}

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
    if (png_passes(g, bits_per_pixel) != 0)
        return codec_why(why, whylen, -EFBIG, "PNG: image data beyond limits");
    return 0;
}

int codec_png_probe(const uint8_t *buf, size_t len, struct codec_image *geo)
{
    struct png_geo g;
    if (len < 8 + 8 + 13 + 4 || memcmp(buf, png_sig, sizeof(png_sig)) != 0 ||
        codec_get_be32(buf + 8) != 13 || memcmp(buf + 12, "IHDR", 4) != 0)
        return -ENOTSUP;
    int rc = png_ihdr(buf + 16, &g, NULL, 0);
    if (rc != 0)
        return rc;
    memset(geo, 0, sizeof(*geo));
    geo->format = CODEC_FORMAT_PNG;
    geo->channels = g.channels;
    geo->frames = 1;
    geo->height = g.height;
    geo->width = g.width;
    geo->bits = g.depth == 16 ? 16 : 8;
    geo->planes_bytes = g.planes;
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

/* Unfiltered row y of pass ps → planes. Returns false when the padding bits after the last
 * sample of a sub-byte row are not zero (planes cannot hold them). The plane index of the
 * row's sample x is base + x × dx. */
static bool row_to_planes(const struct png_geo *g, const struct png_pass *ps, const uint8_t *raw,
                          size_t y, void *planes)
{
    size_t hw = (size_t)g->width * g->height, dx = ps->dx;
    size_t base = (ps->y0 + y * ps->dy) * g->width + ps->x0;
    if (g->depth == 16) {
        uint16_t *p = planes;
        for (size_t x = 0; x < ps->w; x++)
            for (size_t c = 0; c < g->channels; c++) {
                const uint8_t *s = raw + 2 * (x * g->channels + c);
                p[c * hw + base + x * dx] = (uint16_t)(s[0] << 8 | s[1]);
            }
        return true;
    }
    uint8_t *p = planes;
    if (g->depth == 8) {
        for (size_t x = 0; x < ps->w; x++)
            for (size_t c = 0; c < g->channels; c++)
                p[c * hw + base + x * dx] = raw[x * g->channels + c];
        return true;
    }
    /* 1, 2, 4 bits, one channel: samples from the most significant bits first. */
    unsigned d = g->depth, per = 8 / d, mask = (1u << d) - 1;
    for (size_t x = 0; x < ps->w; x++) {
        unsigned shift = 8 - d * (unsigned)(x % per + 1);
        p[base + x * dx] = (uint8_t)(raw[x / per] >> shift & mask);
    }
    size_t used = (size_t)ps->w * d % 8;
    return used == 0 || (raw[ps->rowbytes - 1] & (0xffu >> used)) == 0;
}

/* Planes → raw row y of pass ps, the inverse of row_to_planes. False when a sample does not
 * fit the bit depth. */
static bool planes_to_row(const struct png_geo *g, const struct png_pass *ps, const void *planes,
                          size_t y, uint8_t *raw)
{
    size_t hw = (size_t)g->width * g->height, dx = ps->dx;
    size_t base = (ps->y0 + y * ps->dy) * g->width + ps->x0;
    if (g->depth == 16) {
        const uint16_t *p = planes;
        for (size_t x = 0; x < ps->w; x++)
            for (size_t c = 0; c < g->channels; c++) {
                uint8_t *s = raw + 2 * (x * g->channels + c);
                s[0] = (uint8_t)(p[c * hw + base + x * dx] >> 8);
                s[1] = (uint8_t)p[c * hw + base + x * dx];
            }
        return true;
    }
    const uint8_t *p = planes;
    if (g->depth == 8) {
        for (size_t x = 0; x < ps->w; x++)
            for (size_t c = 0; c < g->channels; c++)
                raw[x * g->channels + c] = p[c * hw + base + x * dx];
        return true;
    }
    unsigned d = g->depth, per = 8 / d;
    memset(raw, 0, ps->rowbytes);
    for (size_t x = 0; x < ps->w; x++) {
        unsigned v = p[base + x * dx];
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

/* Decode buf with libpng (no transforms but unpacking sub-byte samples and, for an interlaced
 * file, combining the passes) and compare every sample with planes. 0 when they agree,
 * -ENOTSUP when libpng refuses the file or disagrees, -ENOMEM. An interlaced image is held
 * whole (as large as the planes: libpng's passes fill in each row), else one row at a time. */
static int png_referee(const uint8_t *buf, size_t len, const struct png_geo *g, const void *planes,
                       char *why, size_t whylen)
{
    struct png_mem mem = {buf, len, 0};
    png_structp png = NULL;
    png_infop info = NULL;
    size_t sbytes = g->depth == 16 ? 2 : 1, rowlen = (size_t)g->width * g->channels * sbytes;
    size_t hw = (size_t)g->width * g->height, nrows = g->interlace ? g->height : 1;
    uint8_t *pix = calloc(nrows, rowlen); /* rowlen × height = planes: no overflow */
    volatile int ret = -ENOMEM;

    if (!pix)
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
        png_get_interlace_type(png, info) != g->interlace) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng reads another header");
        goto out;
    }
    if (g->depth < 8)
        png_set_packing(png);
    int passes = g->interlace ? png_set_interlace_handling(png) : 1;
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != rowlen) {
        ret = codec_why(why, whylen, -ENOTSUP, "PNG: libpng row size differs");
        goto out;
    }
    /* a row is complete once the last pass has gone over it */
    for (int pass = 0; pass < passes - 1; pass++)
        for (size_t y = 0; y < g->height; y++)
            png_read_row(png, pix + (y % nrows) * rowlen, NULL);
    for (size_t y = 0; y < g->height; y++) {
        uint8_t *row = pix + (y % nrows) * rowlen;
        png_read_row(png, row, NULL);
        for (size_t x = 0; x < g->width; x++)
            for (size_t c = 0; c < g->channels; c++) {
                size_t i = x * g->channels + c, at = c * hw + y * g->width + x;
                unsigned want = sbytes == 2 ? (unsigned)(row[2 * i] << 8 | row[2 * i + 1]) : row[i];
                /* planes: filled by split (the analyzer cannot see it) */
                unsigned got = // NOLINT(clang-analyzer-core.uninitialized.Assign)
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
    free(pix);
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

/* ---- the envelope body and its IDAT section (codec.h) ----------------------------------- */

/* Where the chunks of a PNG file lie: head || IDAT chunks || tail. */
struct png_chunks {
    size_t head_len; /* the signature and every chunk before the first IDAT */
    size_t tail_pos; /* the first byte after the last IDAT chunk */
    size_t nidat;    /* IDAT chunks */
    size_t idat_len; /* their data together */
};

/* The envelope body of a PNG (codec.h: head, IDAT section, tail), pointing into the envelope. */
struct png_body {
    const uint8_t *head, *sec, *tail;
    uint64_t head_len, sec_len, tail_len;
};

/* The IDAT section, parsed and checked (its varint lists are re-read from the saved readers). */
struct png_idat {
    uint64_t nidat;        /* K: IDAT chunks */
    uint8_t cmode;         /* 0: lengths listed (in lens), 1: every chunk `even` but the last */
    uint64_t even;         /* cmode 1: C */
    struct codec_rd lens;  /* cmode 0: the K lengths */
    uint8_t fmode;         /* 0 listed (types), 1 one type (ftype), 2.. heuristic fmode - 2 */
    const uint8_t *types;  /* fmode 0: one byte per row */
    uint8_t ftype;         /* fmode 1 */
    uint64_t nexc;         /* fmode >= 2: rows whose type differs, listed in exc */
    struct codec_rd exc;   /* fmode >= 2: gap, type pairs */
    const uint8_t *recipe; /* the rest of the section */
    size_t recipe_len;
};

/* Walk the chunks through IEND (what follows IEND is the tail's, verbatim): IHDR first and
 * once, every CRC, the IDAT chunks consecutive. 0 or -ENOTSUP (why says why). */
static int png_walk(const uint8_t *buf, size_t len, struct png_geo *g, struct png_chunks *c,
                    char *why, size_t whylen)
{
    size_t pos = sizeof(png_sig);
    int state = 0; /* 0 before IDAT, 1 in the IDAT run, 2 after it */
    bool ihdr = false, iend = false;
    int ret;
    memset(c, 0, sizeof(*c));
    if (len < sizeof(png_sig) || memcmp(buf, png_sig, sizeof(png_sig)) != 0)
        return codec_why(why, whylen, -ENOTSUP, "PNG: bad signature");
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
            if ((ret = png_ihdr(buf + pos + 8, g, why, whylen)) != 0)
                return ret;
            ihdr = true;
        } else if (memcmp(type, "IHDR", 4) == 0) {
            return codec_why(why, whylen, -ENOTSUP, "PNG: second IHDR");
        }
        if (is_idat) {
            if (state == 2)
                return codec_why(why, whylen, -ENOTSUP, "PNG: IDAT chunks not consecutive");
            if (state == 0)
                c->head_len = pos;
            state = 1;
            c->nidat++;
            c->idat_len += clen; /* <= len: no overflow */
        } else if (state == 1) {
            state = 2;
            c->tail_pos = pos;
        }
        iend = memcmp(type, "IEND", 4) == 0;
        pos += 12 + (size_t)clen;
    }
    if (state != 2)
        return codec_why(why, whylen, -ENOTSUP, "PNG: no image data");
    return 0;
}

/* The IDAT chunks' data, concatenated: the zlib stream (*out, caller frees). */
static int png_idat_stream(const uint8_t *buf, const struct png_chunks *c, uint8_t **out)
{
    uint8_t *idat = malloc(c->idat_len ? c->idat_len : 1);
    if (!idat)
        return -ENOMEM;
    for (size_t p = c->head_len, o = 0; p < c->tail_pos; p += 12 + codec_get_be32(buf + p)) {
        memcpy(idat + o, buf + p + 8, codec_get_be32(buf + p));
        o += codec_get_be32(buf + p);
    }
    *out = idat;
    return 0;
}

/* The deflate description as the section's recipe (*zr, caller frees): modelled on zlib when
 * that is smaller, else raw; then compressed with zlib when that is smaller still (a stream
 * from another deflater leaves thousands of corrections, which compress). */
static int png_recipe(const struct codec_deflate_desc *desc, const uint8_t *data, size_t data_len,
                      unsigned threads, uint8_t **zr, size_t *zr_len)
{
    size_t recipe_len;
    int ret = codec_zrecipe_make(desc, data, data_len, threads, zr, zr_len, NULL);
    if (ret == -ENOMEM)
        return ret;
    recipe_len = codec_deflate_desc_size(desc);
    if (ret != 0 || *zr_len >= recipe_len) {
        free(*zr);
        *zr_len = 0;
        if (!(*zr = malloc(recipe_len)))
            return -ENOMEM;
        *zr_len = recipe_len;
        if (codec_deflate_desc_serialise(desc, *zr, *zr_len) != (ssize_t)*zr_len)
            return -EIO;
    }
    return recipe_pack(zr, zr_len);
}

/* Unfilter the rows in place into the planes, noting each row's filter type and what each
 * heuristic would have chosen for it. 0 or -ENOTSUP (why says why). */
static int png_unfilter(const struct png_geo *g, uint8_t *data, void *planes, uint8_t *types,
                        uint8_t *guess, uint8_t *scratch, char *why, size_t whylen)
{
    size_t r = 0; /* rows of all passes so far */
    for (unsigned i = 0; i < g->npass; i++) {
        const struct png_pass *ps = &g->pass[i];
        size_t n = ps->rowbytes;
        for (size_t y = 0; y < ps->h; y++, r++, data += n + 1) {
            const uint8_t *prev = y ? data - n : NULL; /* each pass starts afresh */
            if (data[0] > 4)
                return codec_why(why, whylen, -ENOTSUP, "PNG: bad filter type");
            types[r] = data[0];
            unfilter_row(data[0], data + 1, prev, n, g->bpp);
            guess_filters(data + 1, prev, scratch, n, g->bpp, guess + PNG_HEURISTICS * r);
            if (!row_to_planes(g, ps, data + 1, y, planes))
                return codec_why(why, whylen, -ENOTSUP, "PNG: row padding bits set");
        }
    }
    return 0;
}

/* Section: the chunk lengths (listed, or even). Returns the end of what it wrote. */
static uint8_t *put_chunk_lengths(uint8_t *q, const uint8_t *buf, const struct png_chunks *c)
{
    uint32_t first = codec_get_be32(buf + c->head_len), last = 0;
    bool even = true;
    for (size_t p = c->head_len; p < c->tail_pos; p += 12 + codec_get_be32(buf + p)) {
        last = codec_get_be32(buf + p);
        if (p + 12 + last < c->tail_pos && last != first)
            even = false;
    }
    even = even && last >= 1 && last <= first;
    q += codec_put_var(q, c->nidat);
    *q++ = even ? 1 : 0;
    if (even)
        q += codec_put_var(q, first);
    else
        for (size_t p = c->head_len; p < c->tail_pos; p += 12 + codec_get_be32(buf + p))
            q += codec_put_var(q, codec_get_be32(buf + p));
    return q;
}

/* Section: the filter types, all one type, a heuristic's picks and the rows where it
 * differs, or verbatim, whichever is shortest. Returns the end of what it wrote. */
static uint8_t *put_filter_types(uint8_t *q, const uint8_t *types, const uint8_t *guess,
                                 size_t height)
{
    size_t nsame = 0, nexc[PNG_HEURISTICS] = {0};
    int best = 0;
    for (size_t y = 0; y < height; y++) {
        nsame += types[y] == types[0];
        for (int h = 0; h < PNG_HEURISTICS; h++)
            nexc[h] += types[y] != guess[PNG_HEURISTICS * y + (size_t)h];
    }
    for (int h = 1; h < PNG_HEURISTICS; h++)
        if (nexc[h] < nexc[best])
            best = h;
    if (nsame == height) {
        *q++ = 1;
        *q++ = types[0];
    } else if (nexc[best] < height / 2) {
        *q++ = (uint8_t)(2 + best);
        q += codec_put_var(q, nexc[best]);
        for (size_t y = 0, prev = 0; y < height; y++) {
            if (types[y] == guess[PNG_HEURISTICS * y + (size_t)best])
                continue;
            q += codec_put_var(q, y - prev);
            *q++ = types[y];
            prev = y + 1;
        }
    } else {
        *q++ = 0;
        memcpy(q, types, height);
        q += height;
    }
    return q;
}

/* Write the envelope body after the fixed fields: head, IDAT section, tail. Returns the
 * envelope's length. */
static size_t put_body(uint8_t *env, const uint8_t *buf, size_t len, const struct png_chunks *c,
                       const uint8_t *types, const uint8_t *guess, size_t height,
                       const uint8_t *recipe, size_t recipe_len)
{
    uint8_t *e = env + CODEC_ENV_HEAD_LEN;
    codec_put_le64(e, c->head_len);
    memcpy(e + 8, buf, c->head_len);
    e += 8 + c->head_len;
    uint8_t *sec = e + 8, *q = sec;
    q = put_chunk_lengths(q, buf, c);
    q = put_filter_types(q, types, guess, height);
    memcpy(q, recipe, recipe_len);
    q += recipe_len;
    codec_put_le64(e, (uint64_t)(q - sec));
    e = q;
    codec_put_le64(e, len - c->tail_pos);
    memcpy(e + 8, buf + c->tail_pos, len - c->tail_pos);
    return (size_t)(e + 8 + (len - c->tail_pos) - env);
}

/* The body of an envelope already checked by codec_env_check: three length-prefixed parts,
 * the head starting with the signature and an IHDR that matches img. 0 or -EINVAL. */
static int body_parse(const struct codec_image *img, const uint8_t *env, size_t env_len,
                      struct png_geo *g, struct png_body *b)
{
    const uint8_t *e = env + CODEC_ENV_HEAD_LEN;
    size_t rest = env_len - CODEC_ENV_HEAD_LEN;
    const uint8_t **part[2] = {&b->head, &b->sec};
    uint64_t *plen[2] = {&b->head_len, &b->sec_len};
    for (int i = 0; i < 2; i++) {
        if (rest < 8)
            return -EINVAL;
        *plen[i] = codec_get_le64(e);
        e += 8, rest -= 8;
        if (*plen[i] > rest)
            return -EINVAL;
        *part[i] = e;
        e += *plen[i], rest -= (size_t)*plen[i];
        if (i > 0)
            continue;
        /* The head is the signature and IHDR first (split made it so); IHDR says the layout. */
        if (b->head_len < 33 || memcmp(b->head, png_sig, 8) != 0 ||
            codec_get_be32(b->head + 8) != 13 || memcmp(b->head + 12, "IHDR", 4) != 0 ||
            png_ihdr(b->head + 16, g, NULL, 0) != 0)
            return -EINVAL;
        if (g->width != img->width || g->height != img->height || g->channels != img->channels ||
            (g->depth == 16 ? 16u : 8u) != img->bits || img->frames != 1 ||
            g->planes != img->planes_bytes)
            return -EINVAL;
    }
    if (rest < 8)
        return -EINVAL;
    b->tail_len = codec_get_le64(e);
    b->tail = e + 8;
    return b->tail_len == rest - 8 ? 0 : -EINVAL;
}

/* Parse and check the IDAT section of an image of `height` filtered rows (all passes).
 * 0 or -EINVAL. */
static int idat_parse(const uint8_t *sec, uint64_t sec_len, size_t height, struct png_idat *s)
{
    struct codec_rd r = {sec, (size_t)sec_len};
    uint64_t v;
    memset(s, 0, sizeof(*s));
    /* each chunk costs 12 bytes of output at least */
    if (codec_rd_var(&r, CODEC_MAX_FILE_BYTES / 12, &s->nidat) || s->nidat == 0 ||
        codec_rd_u8(&r, &s->cmode) || s->cmode > 1)
        return -EINVAL;
    if (s->cmode == 1) {
        if (codec_rd_var(&r, 0x7fffffffu, &s->even) || s->even == 0)
            return -EINVAL;
    } else {
        s->lens = r;
        for (uint64_t i = 0; i < s->nidat; i++)
            if (codec_rd_var(&r, 0x7fffffffu, &v))
                return -EINVAL;
    }
    if (codec_rd_u8(&r, &s->fmode) || s->fmode > 1 + PNG_HEURISTICS)
        return -EINVAL;
    if (s->fmode == 0) {
        if (r.left < height)
            return -EINVAL;
        s->types = r.p;
        for (size_t y = 0; y < height; y++)
            if (s->types[y] > 4)
                return -EINVAL;
        r.p += height, r.left -= height;
    } else if (s->fmode == 1) {
        if (codec_rd_u8(&r, &s->ftype) || s->ftype > 4)
            return -EINVAL;
    } else {
        if (codec_rd_var(&r, height, &s->nexc))
            return -EINVAL;
        s->exc = r;
        for (uint64_t i = 0; i < s->nexc; i++) {
            uint8_t t;
            if (codec_rd_var(&r, height, &v) || codec_rd_u8(&r, &t) || t > 4)
                return -EINVAL;
        }
    }
    s->recipe = r.p;
    s->recipe_len = r.left;
    return 0;
}

/* Where idat_refilter is in the section's list of filter types. */
struct png_types_rd {
    struct codec_rd exc;
    uint64_t nexc, next_exc;
};

/* The filter type of row r (of all passes) whose raw bytes are cur (n bytes; prev the row
 * before in its pass or NULL). */
static uint8_t idat_type(const struct png_geo *g, const struct png_idat *s, struct png_types_rd *t,
                         size_t r, const uint8_t *cur, const uint8_t *prev, size_t n,
                         uint8_t *scratch)
{
    uint8_t type;
    uint64_t v;
    if (s->fmode == 0)
        return s->types[r];
    if (s->fmode == 1)
        return s->ftype;
    if (r == t->next_exc) {
        codec_rd_u8(&t->exc, &type); /* checked by idat_parse */
        t->next_exc = UINT64_MAX;
        if (--t->nexc > 0) {
            codec_rd_var(&t->exc, g->rows, &v);
            t->next_exc = r + 1 + v;
        }
        return type;
    }
    uint8_t pick[PNG_HEURISTICS];
    guess_filters(cur, prev, scratch, n, g->bpp, pick);
    return pick[s->fmode - 2];
}

/* Filter the passes' rows of img's planes into data (g->filtered bytes) with the section's
 * types; raw holds two unfiltered rows, scratch one. 0 or -EINVAL. */
static int idat_refilter(const struct png_geo *g, const struct codec_image *img,
                         const struct png_idat *s, uint8_t *data, uint8_t *raw, uint8_t *scratch)
{
    struct png_types_rd t = {s->exc, s->nexc, UINT64_MAX};
    size_t r = 0;
    if (t.nexc > 0 && codec_rd_var(&t.exc, g->rows, &t.next_exc))
        return -EINVAL;
    for (unsigned i = 0; i < g->npass; i++) {
        const struct png_pass *ps = &g->pass[i];
        size_t n = ps->rowbytes;
        for (size_t y = 0; y < ps->h; y++, r++, data += n + 1) {
            uint8_t *cur = raw + (y % 2) * n, *prev = y ? raw + ((y + 1) % 2) * n : NULL;
            if (!planes_to_row(g, ps, img->planes, y, cur))
                return -EINVAL;
            data[0] = idat_type(g, s, &t, r, cur, prev, n, scratch);
            filter_row(data[0], cur, prev, data + 1, n, g->bpp);
        }
    }
    return t.nexc == 0 ? 0 : -EINVAL;
}

/* Whether the section's chunk lengths cut a zlib stream of zlen bytes exactly: as listed, or
 * all `even` long but the last (1..even bytes). */
static bool idat_lengths_fit(const struct png_idat *s, size_t zlen)
{
    if (s->cmode == 1)
        return !(zlen <= (s->nidat - 1) * s->even || zlen - (s->nidat - 1) * s->even > s->even ||
                 (s->nidat - 1) > zlen / s->even);
    struct codec_rd lr = s->lens;
    uint64_t sum = 0, v;
    for (uint64_t i = 0; i < s->nidat; i++) {
        codec_rd_var(&lr, 0x7fffffffu, &v); /* checked by idat_parse */
        sum += v;                           /* < 2^31 each, nidat < 2^32 of them */
    }
    return sum == zlen;
}

/* Cut the zlib stream into the section's IDAT chunks at o. Returns the bytes written. */
static size_t idat_write(uint8_t *o, const struct png_idat *s, const uint8_t *z, size_t zlen)
{
    struct codec_rd lr = s->lens;
    size_t p = 0, zp = 0;
    uint64_t v;
    for (uint64_t i = 0; i < s->nidat; i++) {
        uint32_t l;
        if (s->cmode == 1) {
            l = (uint32_t)(i + 1 < s->nidat ? s->even : zlen - zp);
        } else {
            codec_rd_var(&lr, 0x7fffffffu, &v);
            l = (uint32_t)v;
        }
        p += codec_put_chunk(o + p, "IDAT", z + zp, l);
        zp += l;
    }
    return p;
}

/* ---- split ------------------------------------------------------------------------------ */

int codec_png_split(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                    uint8_t **envelope, size_t *env_len, char *why, size_t whylen)
{
    struct png_geo g = {0};
    struct png_chunks c = {0};
    struct codec_deflate_desc *desc = NULL;
    struct codec_image *im = NULL;
    uint8_t *idat = NULL, *data = NULL, *env = NULL, *zr = NULL, *types = NULL, *guess = NULL;
    uint8_t *scratch = NULL;
    size_t data_len = 0, elen, zr_len = 0;
    int ret;

    if ((ret = png_walk(buf, len, &g, &c, why, whylen)) != 0)
        return ret;
    if ((ret = png_idat_stream(buf, &c, &idat)) != 0)
        goto out;
    ret = codec_deflate_record_zlib(idat, c.idat_len, g.filtered + 1, &data, &data_len, &desc);
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
    if ((ret = png_recipe(desc, data, data_len, threads, &zr, &zr_len)) != 0)
        goto out;

    /* Each term is bounded by len or by the planes: no overflow in 64-bit size_t. The IDAT
     * section is at most 3 + 10 (count) + 10 K (lengths) + 10 + 11 Y (filter types) bytes
     * before its recipe. */
    elen = CODEC_ENV_FIXED + c.head_len + 8 + 23 + 10 * c.nidat + 11 * g.rows + zr_len + 8 +
           (len - c.tail_pos);
    ret = -ENOMEM;
    assert(g.rows > 0); /* png_walk refuses an image without rows */
    im = calloc(1, sizeof(*im));
    env = malloc(elen);
    types = calloc(g.rows, 1);
    guess = calloc(g.rows, PNG_HEURISTICS);
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
    if ((ret = png_unfilter(&g, data, im->planes, types, guess, scratch, why, whylen)) != 0 ||
        (ret = png_referee(buf, len, &g, im->planes, why, whylen)) != 0)
        goto out;

    codec_env_header(env, im, 0);
    elen = put_body(env, buf, len, &c, types, guess, g.rows, zr, zr_len);
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
    struct png_body b;
    struct png_idat s;
    struct codec_deflate_desc *desc = NULL;
    uint8_t *data = NULL, *raw = NULL, *z = NULL, *o = NULL, *scratch = NULL, *unpacked = NULL;
    const uint8_t *rec;
    size_t zlen = 0, total, rec_len;
    int ret = -EINVAL;

    if (codec_env_check(img, env, env_len) != 0 || env[CODEC_ENV_FLAGS] != 0 ||
        body_parse(img, env, env_len, &g, &b) != 0 || idat_parse(b.sec, b.sec_len, g.rows, &s) ||
        g.filtered == 0)
        goto out;

    /* Re-filter: raw holds the current and the previous unfiltered row. */
    ret = -ENOMEM;
    data = malloc(g.filtered);
    raw = malloc(2 * g.rowbytes);
    scratch = malloc(g.rowbytes);
    if (!data || !raw || !scratch)
        goto out;
    if ((ret = idat_refilter(&g, img, &s, data, raw, scratch)) != 0)
        goto out;
    if ((ret = recipe_unpack(s.recipe, s.recipe_len, g.filtered, &rec, &rec_len, &unpacked)))
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
    if (!idat_lengths_fit(&s, zlen))
        goto out;
    ret = -EFBIG;
    if (__builtin_add_overflow(b.head_len + b.tail_len, zlen, &total) ||
        __builtin_add_overflow(total, 12 * s.nidat, &total) ||
        (uint64_t)total > CODEC_MAX_FILE_BYTES)
        goto out;
    ret = -ENOMEM;
    o = malloc(total);
    if (!o)
        goto out;
    memcpy(o, b.head, b.head_len);
    size_t p = b.head_len + idat_write(o + b.head_len, &s, z, zlen);
    memcpy(o + p, b.tail, b.tail_len);
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
