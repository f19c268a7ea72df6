// SPDX-License-Identifier: MIT
/*
 * Byte helpers of codec/ (bytes.h): varints, the checked reader, growable buffers and CRC-32.
 * Growth doubles, so appending n bytes one at a time costs O(n) copies; a sticky error lets a
 * writer check once at the end instead of after every field.
 */
#include <zlib.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bytes.h"

size_t codec_put_var(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int codec_rd_u8(struct codec_rd *r, uint8_t *v)
{
    if (r->left == 0)
        return -EINVAL;
    *v = *r->p++;
    r->left--;
    return 0;
}

int codec_rd_var(struct codec_rd *r, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < CODEC_VAR_MAX; i++) {
        uint8_t b;
        if (codec_rd_u8(r, &b))
            return -EINVAL;
        if (i == CODEC_VAR_MAX - 1 && b > 1)
            return -EINVAL;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return -EINVAL; /* not minimal */
            if (x > max)
                return -EINVAL;
            *v = x;
            return 0;
        }
    }
    return -EINVAL;
}

int codec_grow(void **p, size_t *cap, size_t need, size_t elem, size_t limit)
{
    if (need <= *cap)
        return 0;
    if (need > limit)
        return -EFBIG;
    size_t n = *cap > limit / 2 ? limit : *cap * 2;
    if (n < need)
        n = need;
    if (n < 16 && limit >= 16)
        n = 16;
    size_t bytes;
    if (__builtin_mul_overflow(n, elem, &bytes))
        return -EFBIG;
    void *q = realloc(*p, bytes);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

int codec_buf_reserve(struct codec_buf *b, size_t more)
{
    if (b->err)
        return b->err;
    if (more <= b->cap - b->len)
        return 0;
    size_t need = b->len + more;
    if (need < b->len) {
        b->err = -ENOMEM;
        return b->err;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void codec_buf_put(struct codec_buf *b, const void *src, size_t n)
{
    if (n == 0 || codec_buf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

void codec_buf_u8(struct codec_buf *b, uint8_t v)
{
    codec_buf_put(b, &v, 1);
}

void codec_buf_var(struct codec_buf *b, uint64_t v)
{
    uint8_t t[CODEC_VAR_MAX];
    codec_buf_put(b, t, codec_put_var(t, v));
}

uint32_t codec_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n > 0) {
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

uint32_t codec_adler32(const uint8_t *p, size_t n)
{
    uLong a = adler32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        a = adler32(a, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)a;
}

size_t codec_put_chunk(uint8_t *out, const char *type, const uint8_t *data, size_t n)
{
    codec_put_be32(out, (uint32_t)n);
    memcpy(out + 4, type, 4);
    if (data && n && data != out + 8)
        memcpy(out + 8, data, n);
    codec_put_be32(out + 8 + n, codec_crc32(0, out + 4, 4 + n));
    return 12 + n;
}
