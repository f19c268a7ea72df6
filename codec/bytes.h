/* SPDX-License-Identifier: MIT */
/*
 * Byte helpers for every stored format of codec/ (one copy each): fixed-width integers in either
 * byte order, unsigned LEB128 varints, a reader of untrusted bytes, growable buffers and the
 * CRC-32 of PNG chunks. Internal to codec/ (all its folders); nothing here is an on-disk format
 * by itself. Fixed-width accessors are inline (they sit in inner loops); the rest is bytes.c.
 * The trade-off: a reader that checks every byte (codec_rd) is slower than pointer arithmetic,
 * and is used only where the bytes are untrusted and the loops are not per sample.
 */
#ifndef IMGCRYPTFS_CODEC_BYTES_H
#define IMGCRYPTFS_CODEC_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* ---- fixed width, alignment-free ---------------------------------------------------------- */

static inline uint16_t codec_get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t codec_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t codec_get_le64(const uint8_t *p)
{
    return (uint64_t)codec_get_le32(p) | (uint64_t)codec_get_le32(p + 4) << 32;
}

static inline void codec_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void codec_put_le64(uint8_t *p, uint64_t v)
{
    codec_put_le32(p, (uint32_t)v);
    codec_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t codec_get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t codec_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void codec_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- unsigned LEB128: 7 bits a byte, least significant first, high bit = more ------------- */

#define CODEC_VAR_MAX 10 /* bytes of the longest varint (a uint64_t) */

/* Write v minimally at p (room for CODEC_VAR_MAX bytes); returns the bytes written. */
size_t codec_put_var(uint8_t *p, uint64_t v);

/* A reader of untrusted serialised bytes: it never reads past left. */
struct codec_rd {
    const uint8_t *p;
    size_t left;
};

/* One byte, or -EINVAL at the end. */
int codec_rd_u8(struct codec_rd *r, uint8_t *v);

/* A minimal varint of at most CODEC_VAR_MAX bytes with value <= max, or -EINVAL. */
int codec_rd_var(struct codec_rd *r, uint64_t max, uint64_t *v);

/* ---- growable buffers --------------------------------------------------------------------- */

/* Grow *p (elements of elem bytes) to hold need elements, never beyond limit. 0, -EFBIG,
 * -ENOMEM. */
int codec_grow(void **p, size_t *cap, size_t need, size_t elem, size_t limit);

/* A growable output buffer (zero-initialise it). A failed allocation sticks in err, so a
 * writer can append many fields and check once; p is the caller's to free. */
struct codec_buf {
    uint8_t *p;
    size_t len, cap;
    int err; /* 0 or -ENOMEM, sticky */
};

/* Room for more bytes past len: 0, or err (-ENOMEM). */
int codec_buf_reserve(struct codec_buf *b, size_t more);
void codec_buf_put(struct codec_buf *b, const void *src, size_t n);
void codec_buf_u8(struct codec_buf *b, uint8_t v);
void codec_buf_var(struct codec_buf *b, uint64_t v);

/* ---- checksums: zlib's own functions (checksums, not parsing, come from zlib) -------------- */

/* zlib's CRC-32 (PNG's and the zip/ISO-HDLC one) continuing from crc (0 to start), for any
 * length (zlib takes uInt lengths: large inputs go in pieces). */
uint32_t codec_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* zlib's Adler-32 of n bytes (a zlib stream's trailer), for any length. */
uint32_t codec_adler32(const uint8_t *p, size_t n);

/* Write a PNG chunk at out: length (big-endian), type (4 bytes), n data bytes (copied unless
 * data already sits at out + 8; NULL: leave them), CRC of type and data. Returns 12 + n. */
size_t codec_put_chunk(uint8_t *out, const char *type, const uint8_t *data, size_t n);

#endif
