// SPDX-License-Identifier: MIT
/*
 * PNM adapter: binary greymaps (P5) and pixmaps (P6), maxval 1..65535. Only the header is
 * parsed; it goes to the envelope verbatim, so comments and any whitespace survive without
 * being understood. The plain (ASCII) variants P2/P3 share the header and hand their decimal
 * raster to pnmtext.c; bitmaps (P1/P4) are refused: their raster is bits (or text) whose
 * spelling a sample array cannot keep. Bytes after the first raster (a
 * multi-image file, garbage) are kept verbatim as the tail rather than refused, since keeping
 * them costs nothing and loses nothing.
 */
#include <errno.h>

#include "codec/adapt/adapt_int.h"

static bool pnm_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Skip whitespace and comments, then read a decimal number. */
static int pnm_number(const uint8_t *buf, size_t len, size_t *pos, uint32_t *value, char *why,
                      size_t whylen)
{
    size_t p = *pos;
    uint32_t v = 0;
    for (;;) {
        if (p >= len)
            return codec_why(why, whylen, -ENOTSUP, "PNM: header truncated");
        if (pnm_space(buf[p])) {
            p++;
        } else if (buf[p] == '#') {
            while (p < len && buf[p] != '\n' && buf[p] != '\r')
                p++;
        } else {
            break;
        }
    }
    if (buf[p] < '0' || buf[p] > '9')
        return codec_why(why, whylen, -ENOTSUP, "PNM: malformed header");
    while (p < len && buf[p] >= '0' && buf[p] <= '9') {
        if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, buf[p] - '0', &v) ||
            v > CODEC_MAX_DIM * 16u)
            return codec_why(why, whylen, -EFBIG, "PNM: header number beyond limits");
        p++;
    }
    *pos = p;
    *value = v;
    return 0;
}

int codec_pnm_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why, size_t whylen)
{
    uint32_t width = 0, height = 0, maxval = 0;
    size_t pos = 2;
    int ret;

    if (len < 3 || buf[0] != 'P')
        return codec_why(why, whylen, -ENOTSUP, "PNM: bad magic");
    if (buf[1] != '2' && buf[1] != '3' && buf[1] != '5' && buf[1] != '6')
        return codec_why(why, whylen, -ENOTSUP, "PNM: P%c (only greymaps and pixmaps are kept)",
                         buf[1] >= '1' && buf[1] <= '7' ? buf[1] : '?');
    if ((ret = pnm_number(buf, len, &pos, &width, why, whylen)) != 0 ||
        (ret = pnm_number(buf, len, &pos, &height, why, whylen)) != 0 ||
        (ret = pnm_number(buf, len, &pos, &maxval, why, whylen)) != 0)
        return ret;
    if (pos >= len)
        return codec_why(why, whylen, -ENOTSUP, "PNM: header truncated");
    if (!pnm_space(buf[pos]))
        return codec_why(why, whylen, -ENOTSUP, "PNM: no whitespace after maxval");
    pos++;
    if (maxval == 0 || maxval > 65535)
        return codec_why(why, whylen, -ENOTSUP, "PNM: maxval %u", maxval);
    if (width == 0 || height == 0)
        return codec_why(why, whylen, -ENOTSUP, "PNM: empty image");

    f->geo.format = CODEC_FORMAT_PNM;
    f->geo.channels = buf[1] == '6' || buf[1] == '3' ? 3 : 1;
    f->geo.frames = 1;
    f->geo.width = width;
    f->geo.height = height;
    f->geo.bits = maxval > 255 ? 16 : 8;
    if ((ret = codec_found_size(f, why, whylen)) != 0)
        return ret;
    f->text = buf[1] == '2' || buf[1] == '3';
    if (!f->text && f->raster_len > len - pos)
        return codec_why(why, whylen, -ENOTSUP, "PNM: raster truncated");
    f->head_len = pos;
    f->layout = CODEC_LAYOUT_BE16;
    f->max_value = maxval;
    f->strict = true;
    return 0;
}
