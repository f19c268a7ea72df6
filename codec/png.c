// SPDX-License-Identifier: MIT
/*
 * PNG adapter: the chunks around the image data are kept verbatim, the IDAT zlib stream is
 * recorded (deflate.h) and its filtered scanlines are unfiltered into planes; join re-filters
 * with the stored filter types, re-emits the identical zlib stream and cuts it into IDAT chunks
 * of the recorded lengths. libpng decodes every file split accepts, and any disagreement with
 * our own unfiltering refuses the file: libpng is the referee of what the pixels are, our code
 * only has to be exact. The trade-off: the raw recipe holds every deflate token (tens of percent
 * of the file for zlib-written PNGs); the match-finder model that shrinks it comes later and
 * changes only the recipe bytes, not this layout. Interlaced (Adam7) files are refused.
 */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec_int.h"
#include "codec/deflate.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* CRC-32 of ISO 3309 / PNG, reflected polynomial 0xedb88320. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu, 0xe963a535u,
    0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu,
    0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu, 0x1adad47du,
    0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u, 0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu,
    0x14015c4fu, 0x63066cd9u, 0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u,
    0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u, 0x26d930acu,
    0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u, 0xb8bda50fu,
    0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u, 0x2f6f7c87u, 0x58684c11u, 0xc1611dabu,
    0xb6662d3du, 0x76dc4190u, 0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu,
    0x9fbfe4a5u, 0xe8b8d433u, 0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu,
    0x086d3d2du, 0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u, 0x8bbeb8eau,
    0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u, 0x4db26158u, 0x3ab551ceu,
    0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au,
    0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u,
    0x5005713cu, 0x270241aau, 0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u,
    0xce61e49fu, 0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au, 0xead54739u,
    0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u,
    0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u, 0xf00f9344u, 0x8708a3d2u, 0x1e01f268u,
    0x6906c2feu, 0xf762575du, 0x806567cbu, 0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u,
    0x10da7a5au, 0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u,
    0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu,
    0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u, 0xcc0c7795u, 0xbb0b4703u,
    0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u,
    0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du, 0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au,
    0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu,
    0x0cb61b38u, 0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u, 0x88085ae6u,
    0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u,
    0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u, 0x4969474du,
    0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu, 0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u,
    0x47b2cf7fu, 0x30b5ffe9u, 0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u,
    0xcdd70693u, 0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

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
    g->width = be32(d);
    g->height = be32(d + 4);
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

static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c)
{
    int p = (int)a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return a;
    return pb <= pc ? b : c;
}

/* Undo filter `type` on row (rowbytes), prev the unfiltered previous row or NULL. */
static void unfilter_row(uint8_t type, uint8_t *row, const uint8_t *prev, size_t n, size_t bpp)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t a = i >= bpp ? row[i - bpp] : 0, b = prev ? prev[i] : 0;
        uint8_t c = prev && i >= bpp ? prev[i - bpp] : 0;
        switch (type) {
        case 1:
            row[i] = (uint8_t)(row[i] + a);
            break;
        case 2:
            row[i] = (uint8_t)(row[i] + b);
            break;
        case 3:
            row[i] = (uint8_t)(row[i] + ((a + b) >> 1));
            break;
        case 4:
            row[i] = (uint8_t)(row[i] + paeth(a, b, c));
            break;
        default:
            break;
        }
    }
}

/* Apply filter `type`: out = filtered raw (prev: the raw previous row or NULL). */
static void filter_row(uint8_t type, const uint8_t *raw, const uint8_t *prev, uint8_t *out,
                       size_t n, size_t bpp)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t a = i >= bpp ? raw[i - bpp] : 0, b = prev ? prev[i] : 0;
        uint8_t c = prev && i >= bpp ? prev[i - bpp] : 0;
        switch (type) {
        case 1:
            out[i] = (uint8_t)(raw[i] - a);
            break;
        case 2:
            out[i] = (uint8_t)(raw[i] - b);
            break;
        case 3:
            out[i] = (uint8_t)(raw[i] - ((a + b) >> 1));
            break;
        case 4:
            out[i] = (uint8_t)(raw[i] - paeth(a, b, c));
            break;
        default:
            out[i] = raw[i];
            break;
        }
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

/* ---- split ------------------------------------------------------------------------------ */

int codec_png_split(const uint8_t *buf, size_t len, struct codec_image **img, uint8_t **envelope,
                    size_t *env_len, char *why, size_t whylen)
{
    struct png_geo g;
    struct codec_deflate_desc *desc = NULL;
    struct codec_image *im = NULL;
    uint8_t *idat = NULL, *data = NULL, *env = NULL;
    size_t data_len = 0, pos = sizeof(png_sig), head_len = 0, tail_pos = 0, nidat = 0;
    size_t idat_len = 0, elen, recipe_len;
    int state = 0; /* 0 before IDAT, 1 in the IDAT run, 2 after it */
    bool ihdr = false, iend = false;
    int ret;

    if (len < sizeof(png_sig) || memcmp(buf, png_sig, sizeof(png_sig)) != 0)
        return codec_why(why, whylen, -ENOTSUP, "PNG: bad signature");
    /* Walk the chunks through IEND; what follows IEND is the tail's, verbatim. */
    while (!iend) {
        if (len - pos < 12)
            return codec_why(why, whylen, -ENOTSUP, "PNG: truncated");
        uint32_t clen = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (clen > 0x7fffffffu || clen > len - pos - 12)
            return codec_why(why, whylen, -ENOTSUP, "PNG: truncated or bad chunk length");
        for (int i = 0; i < 4; i++)
            if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
                return codec_why(why, whylen, -ENOTSUP, "PNG: bad chunk type");
        if ((crc32_update(0xffffffffu, type, 4 + (size_t)clen) ^ 0xffffffffu) !=
            be32(buf + pos + 8 + clen))
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
    for (size_t p = head_len, o = 0; p < tail_pos; p += 12 + be32(buf + p)) {
        memcpy(idat + o, buf + p + 8, be32(buf + p));
        o += be32(buf + p);
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

    recipe_len = codec_deflate_desc_size(desc);
    /* Each term is bounded by len or by the planes: no overflow in 64-bit size_t. */
    elen = CODEC_ENV_FIXED + head_len + 4 + 4 * nidat + g.height + 8 + recipe_len + 8 +
           (len - tail_pos);
    ret = -ENOMEM;
    im = calloc(1, sizeof(*im));
    env = malloc(elen);
    if (!im || !env)
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

    /* Unfilter in place, row by row; the filter types go to the envelope. */
    uint8_t *types = env + CODEC_ENV_FIXED + head_len + 4 + 4 * nidat;
    for (size_t y = 0; y < g.height; y++) {
        uint8_t *row = data + y * (g.rowbytes + 1);
        if (row[0] > 4) {
            ret = codec_why(why, whylen, -ENOTSUP, "PNG: bad filter type");
            goto out;
        }
        types[y] = row[0];
        unfilter_row(row[0], row + 1, y ? row - g.rowbytes : NULL, g.rowbytes, g.bpp);
        if (!row_to_planes(&g, row + 1, y, im->planes)) {
            ret = codec_why(why, whylen, -ENOTSUP, "PNG: row padding bits set");
            goto out;
        }
    }
    if ((ret = png_referee(buf, len, &g, im->planes, why, whylen)) != 0)
        goto out;

    codec_env_header(env, im, 0);
    uint8_t *e = env + 28;
    le_put(e, head_len, 8);
    memcpy(e + 8, buf, head_len);
    e += 8 + head_len;
    le_put(e, nidat, 4);
    e += 4;
    for (size_t p = head_len; p < tail_pos; p += 12 + be32(buf + p), e += 4)
        le_put(e, be32(buf + p), 4);
    e += g.height; /* the filter types, written above */
    le_put(e, recipe_len, 8);
    if (codec_deflate_desc_serialise(desc, e + 8, recipe_len) != (ssize_t)recipe_len) {
        ret = -EIO;
        goto out;
    }
    e += 8 + recipe_len;
    le_put(e, len - tail_pos, 8);
    memcpy(e + 8, buf + tail_pos, len - tail_pos);

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
    codec_deflate_desc_free(desc);
    return ret;
}

/* ---- join ------------------------------------------------------------------------------- */

int codec_png_join(const struct codec_image *img, const uint8_t *env, size_t env_len, uint8_t **out,
                   size_t *out_len)
{
    struct png_geo g;
    struct codec_deflate_desc *desc = NULL;
    uint8_t *data = NULL, *raw = NULL, *z = NULL, *o = NULL;
    size_t zlen = 0, rest, total, sum = 0;
    uint64_t head_len, nidat, recipe_len, tail_len;
    const uint8_t *e, *head, *lens, *types, *recipe, *tail;
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
    head_len = le_get(e, 8);
    TAKE(8);
    head = e;
    TAKE(head_len);
    /* The head is the signature and IHDR first (split made it so); IHDR says the layout. */
    if (head_len < 33 || memcmp(head, png_sig, 8) != 0 || be32(head + 8) != 13 ||
        memcmp(head + 12, "IHDR", 4) != 0 || png_ihdr(head + 16, &g, NULL, 0) != 0)
        goto out;
    if (g.width != img->width || g.height != img->height || g.channels != img->channels ||
        (g.depth == 16 ? 16u : 8u) != img->bits || img->frames != 1 ||
        g.planes != img->planes_bytes)
        goto out;
    if (rest < 4)
        goto out;
    nidat = le_get(e, 4);
    TAKE(4);
    lens = e;
    if (nidat == 0 || nidat > rest / 4)
        goto out;
    TAKE(4 * nidat);
    types = e;
    TAKE(g.height);
    if (rest < 8)
        goto out;
    recipe_len = le_get(e, 8);
    TAKE(8);
    recipe = e;
    TAKE(recipe_len);
    if (rest < 8)
        goto out;
    tail_len = le_get(e, 8);
    TAKE(8);
    tail = e;
    if (tail_len != rest)
        goto out;
#undef TAKE
    for (size_t i = 0; i < nidat; i++) {
        uint32_t l = (uint32_t)le_get(lens + 4 * i, 4);
        if (l > 0x7fffffffu)
            goto out;
        sum += l; /* nidat < 2^62 / 4 terms of < 2^31: fits 64 bits */
    }
    for (size_t y = 0; y < g.height; y++)
        if (types[y] > 4)
            goto out;
    if ((ret = codec_deflate_desc_parse(recipe, recipe_len, g.filtered, &desc)) != 0) {
        ret = ret == -ENOMEM ? ret : -EINVAL;
        goto out;
    }

    /* Re-filter: raw holds the current and the previous unfiltered row. */
    ret = -ENOMEM;
    data = malloc(g.filtered);
    raw = malloc(2 * g.rowbytes);
    if (!data || !raw)
        goto out;
    ret = -EINVAL;
    for (size_t y = 0; y < g.height; y++) {
        uint8_t *cur = raw + (y % 2) * g.rowbytes, *prev = raw + ((y + 1) % 2) * g.rowbytes;
        uint8_t *row = data + y * (g.rowbytes + 1);
        if (!planes_to_row(&g, img->planes, y, cur))
            goto out;
        row[0] = types[y];
        filter_row(types[y], cur, y ? prev : NULL, row + 1, g.rowbytes, g.bpp);
    }
    if ((ret = codec_deflate_emit(desc, data, g.filtered, &z, &zlen)) != 0)
        goto out;
    ret = -EINVAL;
    if (zlen != sum)
        goto out;
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
    for (size_t i = 0; i < nidat; i++) {
        uint32_t l = (uint32_t)le_get(lens + 4 * i, 4);
        put_be32(o + p, l);
        memcpy(o + p + 4, "IDAT", 4);
        memcpy(o + p + 8, z + zp, l);
        put_be32(o + p + 8 + l, crc32_update(0xffffffffu, o + p + 4, 4 + (size_t)l) ^ 0xffffffffu);
        p += 12 + (size_t)l;
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
    free(data);
    codec_deflate_desc_free(desc);
    return ret;
}
