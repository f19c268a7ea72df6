// SPDX-License-Identifier: MIT
/*
 * Image adapters, the common part: sniffing, the envelope (codec.h), and the loops that turn a
 * raster into planes and back. The parsers only find the raster; keeping the copy loops here
 * means one piece of code to trust for join(split(f)) == f. The cost is a second pass over the
 * samples (unpack, then a check of the largest value) folded into one loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/adapt/adapt_int.h"

int codec_why(char *why, size_t whylen, int err, const char *fmt, ...)
{
    if (!why || !whylen)
        return err;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return err;
}

enum codec_format codec_sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!buf)
        return CODEC_FORMAT_NONE;
    if (len >= sizeof(png) && memcmp(buf, png, sizeof(png)) == 0)
        return CODEC_FORMAT_PNG;
    if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0)
        return CODEC_FORMAT_DICOM;
    if (len >= 3 && buf[0] == 'P' && buf[1] >= '1' && buf[1] <= '6' &&
        (buf[2] == '#' || buf[2] == ' ' || (buf[2] >= '\t' && buf[2] <= '\r')))
        return CODEC_FORMAT_PNM;
    return CODEC_FORMAT_NONE;
}

int codec_found_size(struct codec_found *f, char *why, size_t whylen)
{
    const struct codec_image *g = &f->geo;
    const char *fmt = g->format == CODEC_FORMAT_DICOM ? "DICOM" : "PNM";
    size_t n;
    if (g->channels == 0 || g->frames == 0 || g->height == 0 || g->width == 0)
        return codec_why(why, whylen, -ENOTSUP, "%s: empty image", fmt);
    if (g->bits != 8 && g->bits != 16)
        return codec_why(why, whylen, -ENOTSUP, "%s: %u-bit samples", fmt, g->bits);
    if (g->channels > CODEC_MAX_CHANNELS)
        return codec_why(why, whylen, -ENOTSUP, "%s: %u samples per pixel", fmt, g->channels);
    if (g->width > CODEC_MAX_DIM || g->height > CODEC_MAX_DIM || g->frames > CODEC_MAX_FRAMES)
        return codec_why(why, whylen, -EFBIG, "%s: dimensions beyond limits", fmt);
    if (__builtin_mul_overflow((size_t)g->width, (size_t)g->height, &n) ||
        __builtin_mul_overflow(n, (size_t)g->channels, &n) ||
        __builtin_mul_overflow(n, (size_t)g->frames, &n) ||
        __builtin_mul_overflow(n, (size_t)(g->bits / 8), &n) || n > CODEC_MAX_PIXEL_BYTES)
        return codec_why(why, whylen, -EFBIG, "%s: pixels beyond limits", fmt);
    f->raster_len = n;
    return 0;
}

uint8_t codec_layout_flags(enum codec_format format, uint8_t layout)
{
    return format == CODEC_FORMAT_PNM ? 0 : layout;
}

uint8_t codec_flags_layout(enum codec_format format, uint8_t flags)
{
    return format == CODEC_FORMAT_PNM ? CODEC_LAYOUT_BE16 : flags;
}

/* Whether join can take an envelope's layout for img: the flags split makes, and no others. */
static bool layout_valid(const struct codec_image *img, uint8_t layout, size_t raster_len)
{
    const uint8_t known = CODEC_LAYOUT_PLANAR | CODEC_LAYOUT_BE16 | CODEC_LAYOUT_BE_OW8 |
                          CODEC_LAYOUT_WORDS32 | CODEC_LAYOUT_YBR422;
    if (layout & ~known)
        return false;
    if ((layout & CODEC_LAYOUT_BE_OW8) && (img->bits != 8 || raster_len % 2))
        return false;
    /* 32-bit samples: 16-bit word pairs, interleaved */
    if ((layout & CODEC_LAYOUT_WORDS32) &&
        (img->bits != 16 || img->channels % 2 || (layout & CODEC_LAYOUT_PLANAR)))
        return false;
    /* subsampled chroma: pixel pairs, interleaved */
    if ((layout & CODEC_LAYOUT_YBR422) &&
        (img->channels != 4 || (layout & (CODEC_LAYOUT_PLANAR | CODEC_LAYOUT_WORDS32))))
        return false;
    return true;
}

/* Index in the raster (in samples) of sample (c, f, p), p = y * width + x. */
static inline size_t raster_index(const struct codec_image *g, uint8_t layout, size_t c, size_t f,
                                  size_t p)
{
    size_t hw = (size_t)g->height * g->width;
    if (layout & CODEC_LAYOUT_PLANAR)
        return (f * g->channels + c) * hw + p;
    return (f * hw + p) * g->channels + c;
}

/* Raster → planes; returns the largest sample. */
static uint32_t unpack(const struct codec_image *g, uint8_t layout, const uint8_t *r, void *planes)
{
    size_t hw = (size_t)g->height * g->width;
    uint32_t max = 0;
    for (size_t c = 0; c < g->channels; c++) {
        for (size_t f = 0; f < g->frames; f++) {
            size_t base = (c * g->frames + f) * hw;
            if (g->bits == 8) {
                uint8_t *out = (uint8_t *)planes + base;
                size_t swap = (layout & CODEC_LAYOUT_BE_OW8) ? 1 : 0;
                for (size_t p = 0; p < hw; p++) {
                    out[p] = r[raster_index(g, layout, c, f, p) ^ swap];
                    max = out[p] > max ? out[p] : max;
                }
            } else {
                uint16_t *out = (uint16_t *)planes + base;
                int be = (layout & CODEC_LAYOUT_BE16) != 0;
                for (size_t p = 0; p < hw; p++) {
                    const uint8_t *s = r + 2 * raster_index(g, layout, c, f, p);
                    out[p] = be ? (uint16_t)(s[0] << 8 | s[1]) : (uint16_t)(s[1] << 8 | s[0]);
                    max = out[p] > max ? out[p] : max;
                }
            }
        }
    }
    return max;
}

/* Planes → raster, the exact inverse of unpack. */
static void pack(const struct codec_image *g, uint8_t layout, uint8_t *r)
{
    size_t hw = (size_t)g->height * g->width;
    for (size_t c = 0; c < g->channels; c++) {
        for (size_t f = 0; f < g->frames; f++) {
            size_t base = (c * g->frames + f) * hw;
            if (g->bits == 8) {
                const uint8_t *in = (const uint8_t *)g->planes + base;
                size_t swap = (layout & CODEC_LAYOUT_BE_OW8) ? 1 : 0;
                for (size_t p = 0; p < hw; p++)
                    r[raster_index(g, layout, c, f, p) ^ swap] = in[p];
            } else {
                const uint16_t *in = (const uint16_t *)g->planes + base;
                int be = (layout & CODEC_LAYOUT_BE16) != 0;
                for (size_t p = 0; p < hw; p++) {
                    uint8_t *d = r + 2 * raster_index(g, layout, c, f, p);
                    d[be ? 0 : 1] = (uint8_t)(in[p] >> 8);
                    d[be ? 1 : 0] = (uint8_t)in[p];
                }
            }
        }
    }
}

void codec_env_header(uint8_t *env, const struct codec_image *im, uint8_t flags)
{
    memcpy(env, CODEC_ENV_MAGIC, 4);
    env[4] = (uint8_t)im->format;
    env[5] = CODEC_ENV_VERSION;
    env[6] = env[7] = 0;
    codec_put_le32(env + 8, im->channels);
    codec_put_le32(env + 12, im->frames);
    codec_put_le32(env + 16, im->height);
    codec_put_le32(env + 20, im->width);
    env[24] = (uint8_t)im->bits;
    env[25] = (uint8_t)im->significant;
    env[CODEC_ENV_FLAGS] = flags;
    env[27] = 0;
}

int codec_env_check(const struct codec_image *img, const uint8_t *env, size_t env_len)
{
    if (env_len < CODEC_ENV_FIXED || memcmp(env, CODEC_ENV_MAGIC, 4) != 0 ||
        env[5] != CODEC_ENV_VERSION || env[4] != (uint8_t)img->format ||
        codec_get_le32(env + 8) != img->channels || codec_get_le32(env + 12) != img->frames ||
        codec_get_le32(env + 16) != img->height || codec_get_le32(env + 20) != img->width ||
        env[24] != img->bits)
        return -EINVAL;
    return 0;
}

int codec_env_parts(const uint8_t *env, size_t env_len, struct codec_env_parts *p)
{
    size_t pos = CODEC_ENV_FIXED;
    if (env_len < CODEC_ENV_FIXED + 24)
        return -EINVAL;
    p->head = env + pos;
    p->head_len = codec_get_le64(env + CODEC_ENV_HEAD_LEN);
    if (p->head_len > env_len - pos - 16)
        return -EINVAL;
    pos += p->head_len; /* at most env_len - 16: the two lengths still fit */
    p->sec_len = codec_get_le64(env + pos);
    if (p->sec_len > env_len - pos - 16)
        return -EINVAL;
    p->sec = env + pos + 8;
    pos += 8 + p->sec_len;
    p->tail_len = codec_get_le64(env + pos);
    p->tail = env + pos + 8;
    return p->tail_len == env_len - pos - 8 ? 0 : -EINVAL;
}

static uint32_t bit_length(uint32_t v)
{
    return v ? 32u - (uint32_t)__builtin_clz(v) : 0;
}

int codec_probe(const uint8_t *buf, size_t len, struct codec_image *geo)
{
    struct codec_found f;
    int rc;
    if (!buf || !geo)
        return -EINVAL;
    memset(&f, 0, sizeof(f));
    switch (codec_sniff(buf, len)) {
    case CODEC_FORMAT_PNG:
        return codec_png_probe(buf, len, geo);
    case CODEC_FORMAT_PNM:
        rc = codec_pnm_parse(buf, len, &f, NULL, 0);
        break;
    case CODEC_FORMAT_DICOM:
        rc = codec_dicom_parse(buf, len, &f, NULL, 0);
        break;
    default:
        return -ENOTSUP;
    }
    if (rc != 0)
        return rc;
    *geo = f.geo;
    geo->planes = NULL;
    geo->planes_bytes = f.raster_len;
    return 0;
}

int codec_split(const uint8_t *buf, size_t len, struct codec_image **img, uint8_t **envelope,
                size_t *env_len, char *why, size_t whylen)
{
    return codec_split_threads(buf, len, 1, img, envelope, env_len, why, whylen);
}

int codec_split_threads(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                        uint8_t **envelope, size_t *env_len, char *why, size_t whylen)
{
    struct codec_found f;
    struct codec_image *im = NULL;
    uint8_t *env = NULL;
    size_t tail_len, elen;
    int ret;

    if (!buf || !img || !envelope || !env_len)
        return codec_why(why, whylen, -EINVAL, "bad argument");
    if ((uint64_t)len > CODEC_MAX_FILE_BYTES)
        return codec_why(why, whylen, -EFBIG, "file beyond limits");
    memset(&f, 0, sizeof(f));
    switch (codec_sniff(buf, len)) {
    case CODEC_FORMAT_PNM:
        ret = codec_pnm_parse(buf, len, &f, why, whylen);
        break;
    case CODEC_FORMAT_DICOM:
        ret = codec_dicom_parse(buf, len, &f, why, whylen);
        break;
    case CODEC_FORMAT_PNG:
        /* PNG's raster is a zlib stream, not a run of samples: its adapter makes the whole
         * envelope itself. */
        return codec_png_split(buf, len, threads, img, envelope, env_len, why, whylen);
    default:
        ret = codec_why(why, whylen, -ENOTSUP, "not a supported image format");
        break;
    }
    if (ret)
        goto out;
    if (f.text)
        return codec_pnm_text_split(buf, len, &f, img, envelope, env_len, why, whylen);
    if (f.rle)
        return codec_dicom_rle_split(buf, len, &f, img, envelope, env_len, why, whylen);
    /* The parsers check this too; the envelope arithmetic below relies on it. */
    if (f.raster_len == 0 || f.head_len > len || f.raster_len > len - f.head_len) {
        ret = codec_why(why, whylen, -ENOTSUP, "raster truncated");
        goto out;
    }
    tail_len = len - f.head_len - f.raster_len;
    /* CODEC_ENV_FIXED + 8 + head + tail <= 44 + len, and len <= 2^32: no overflow. */
    elen = CODEC_ENV_FIXED + 8 + f.head_len + tail_len;

    ret = -ENOMEM;
    im = calloc(1, sizeof(*im));
    if (!im)
        goto out;
    *im = f.geo;
    im->planes_bytes = f.raster_len;
    im->planes = malloc(f.raster_len);
    env = malloc(elen);
    if (!im->planes || !env)
        goto out;
    uint32_t max = unpack(im, f.layout, buf + f.head_len, im->planes);
    if (max > f.max_value && f.strict) {
        ret = codec_why(why, whylen, -ENOTSUP, "%s: sample %u above the maximum %u",
                        im->format == CODEC_FORMAT_PNM ? "PNM" : "DICOM", max, f.max_value);
        goto out;
    }
    im->significant = max > f.max_value ? im->bits : bit_length(f.max_value);
    if (im->significant < 1 || im->significant > im->bits)
        im->significant = im->bits;

    codec_env_header(env, im, codec_layout_flags(im->format, f.layout));
    codec_put_le64(env + CODEC_ENV_HEAD_LEN, f.head_len);
    memcpy(env + CODEC_ENV_FIXED, buf, f.head_len);
    codec_put_le64(env + CODEC_ENV_FIXED + f.head_len, tail_len);
    memcpy(env + CODEC_ENV_FIXED + 8 + f.head_len, buf + f.head_len + f.raster_len, tail_len);

    *img = im;
    *envelope = env;
    *env_len = elen;
    im = NULL;
    env = NULL;
    ret = 0;
out:
    free(env);
    codec_image_free(im);
    return ret;
}

int codec_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
               uint8_t **out, size_t *out_len)
{
    return codec_join_threads(img, envelope, env_len, 1, out, out_len);
}

int codec_join_threads(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                       unsigned threads, uint8_t **out, size_t *out_len)
{
    struct codec_found f;
    uint8_t *o = NULL;
    uint64_t head_len, tail_len;
    size_t total;
    int ret = -EINVAL;

    if (!img || !envelope || !out || !out_len || !img->planes)
        goto out;
    if (img->format == CODEC_FORMAT_PNG)
        return codec_png_join(img, envelope, env_len, threads, out, out_len);
    if (img->format == CODEC_FORMAT_PNM && env_len > CODEC_ENV_FLAGS &&
        (envelope[CODEC_ENV_FLAGS] & CODEC_PNM_TEXT))
        return codec_pnm_text_join(img, envelope, env_len, out, out_len);
    if (img->format == CODEC_FORMAT_DICOM && env_len > CODEC_ENV_FLAGS &&
        (envelope[CODEC_ENV_FLAGS] & CODEC_DICOM_RLE))
        return codec_dicom_rle_join(img, envelope, env_len, out, out_len);
    if (env_len < CODEC_ENV_FIXED + 8 || codec_env_check(img, envelope, env_len) != 0 ||
        (img->format != CODEC_FORMAT_PNM && img->format != CODEC_FORMAT_DICOM))
        goto out;
    memset(&f, 0, sizeof(f));
    f.geo = *img;
    if (codec_found_size(&f, NULL, 0) != 0 || f.raster_len != img->planes_bytes)
        goto out;
    f.layout = codec_flags_layout(img->format, envelope[CODEC_ENV_FLAGS]);
    if (!layout_valid(img, f.layout, f.raster_len))
        goto out;
    head_len = codec_get_le64(envelope + CODEC_ENV_HEAD_LEN);
    if (head_len > env_len - CODEC_ENV_FIXED - 8)
        goto out;
    tail_len = codec_get_le64(envelope + CODEC_ENV_FIXED + head_len);
    if (tail_len != env_len - CODEC_ENV_FIXED - 8 - head_len)
        goto out;
    ret = -EFBIG;
    if (__builtin_add_overflow(head_len + tail_len, f.raster_len, &total) ||
        (uint64_t)total > CODEC_MAX_FILE_BYTES)
        goto out;
    ret = -ENOMEM;
    o = malloc(total ? total : 1);
    if (!o)
        goto out;
    memcpy(o, envelope + CODEC_ENV_FIXED, head_len);
    pack(img, f.layout, o + head_len);
    memcpy(o + head_len + f.raster_len, envelope + CODEC_ENV_FIXED + 8 + head_len, tail_len);
    *out = o;
    *out_len = total;
    o = NULL;
    ret = 0;
out:
    free(o);
    return ret;
}

void codec_image_free(struct codec_image *img)
{
    if (!img)
        return;
    free(img->planes);
    free(img);
}

/*
 * Envelope sizes for reports. Kept apart from split and join: it walks only the lengths of the
 * layout in codec.h, so a tool can say how big the parts are without decoding any of them.
 */
int codec_envelope_info(const uint8_t *env, size_t env_len, struct codec_envelope_info *info)
{
    uint64_t head_len, tail_len, recipe = 0, pos;

    if (!env || !info || env_len < CODEC_ENV_FIXED + 8 || memcmp(env, CODEC_ENV_MAGIC, 4) != 0 ||
        env[5] != CODEC_ENV_VERSION)
        return -EINVAL;
    if (env[4] != CODEC_FORMAT_PNM && env[4] != CODEC_FORMAT_DICOM && env[4] != CODEC_FORMAT_PNG)
        return -EINVAL;
    head_len = codec_get_le64(env + CODEC_ENV_HEAD_LEN);
    if (head_len > env_len - CODEC_ENV_FIXED - 8)
        return -EINVAL;
    pos = CODEC_ENV_FIXED + head_len;
    if (env[4] == CODEC_FORMAT_PNG ||
        (env[4] == CODEC_FORMAT_PNM && (env[CODEC_ENV_FLAGS] & CODEC_PNM_TEXT)) ||
        (env[4] == CODEC_FORMAT_DICOM && (env[CODEC_ENV_FLAGS] & CODEC_DICOM_RLE))) {
        /* PNG's IDAT section, plain PNM's layout section or DICOM's RLE section, behind its
         * length. */
        uint64_t r;
        if (env_len - pos < 8)
            return -EINVAL;
        r = codec_get_le64(env + pos);
        pos += 8;
        if (r > env_len - pos || env_len - pos - r < 8)
            return -EINVAL;
        pos += r;
        recipe = r + 8;
    }
    if (env_len - pos < 8)
        return -EINVAL;
    tail_len = codec_get_le64(env + pos);
    if (tail_len != env_len - pos - 8)
        return -EINVAL;
    info->format = (enum codec_format)env[4];
    info->head_bytes = head_len;
    info->tail_bytes = tail_len;
    info->recipe_bytes = recipe;
    info->flags = env[CODEC_ENV_FLAGS];
    return 0;
}
