/* SPDX-License-Identifier: MIT */
/*
 * Internals of the image adapters shared by codec.c (envelope, planes) and the format parsers
 * (pnm.c, dicom.c). A parser only locates the raster and describes it; the envelope and the
 * sample loops are common, so every adapter inherits the same exactness argument: the file is
 * head || raster || tail, head and tail are copied verbatim, and the raster maps one-to-one
 * onto samples. PNG (png.c) is the exception: its raster is a zlib stream, so it writes and
 * reads its own envelope body (codec.h) behind the common fixed fields.
 */
#ifndef IMGCRYPTFS_CODEC_CODEC_INT_H
#define IMGCRYPTFS_CODEC_CODEC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"

/* Little-endian fixed fields of the codec's formats (alignment-free). */
static inline uint32_t codec_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void codec_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* How the raster's bytes hold the samples (a superset of the envelope's flags). */
#define CODEC_LAYOUT_PLANAR CODEC_DICOM_PLANAR /* plane by plane within each frame */
#define CODEC_LAYOUT_BE16 CODEC_DICOM_BE16     /* 16-bit samples big-endian */
#define CODEC_LAYOUT_BE_OW8 CODEC_DICOM_BE_OW8 /* 8-bit samples, byte pairs swapped */

/* What a parser found: the image geometry (planes and significant unset), where the raster
 * is, and how its bytes are laid out. */
struct codec_found {
    struct codec_image geo;
    size_t head_len;    /* the raster starts here */
    size_t raster_len;  /* channels × frames × height × width × bits/8 */
    uint8_t layout;     /* CODEC_LAYOUT_* */
    uint32_t max_value; /* largest valid sample (PNM maxval, DICOM 2^BitsStored - 1) */
    bool strict;        /* a sample above max_value refuses the file (else significant = bits) */
};

/* Write a reason into why (NULL-safe); returns err so callers can `return codec_why(...)`. */
int codec_why(char *why, size_t whylen, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Check the geometry against the limits and fill f->raster_len. 0, -ENOTSUP or -EFBIG. */
int codec_found_size(struct codec_found *f, char *why, size_t whylen);

/* The envelope flags a format stores, from the layout (PNM's are implied by the format). */
uint8_t codec_layout_flags(enum codec_format format, uint8_t layout);
uint8_t codec_flags_layout(enum codec_format format, uint8_t flags);

/* Write the envelope's fixed fields (offsets 0..27, codec.h) for im with the given flags. */
void codec_env_header(uint8_t *env, const struct codec_image *im, uint8_t flags);

/* Check the fixed fields against img: magic, version, format, geometry, bits. 0 or -EINVAL. */
int codec_env_check(const struct codec_image *img, const uint8_t *env, size_t env_len);

/* PNG makes the whole envelope itself (its raster is a zlib stream): codec_split and
 * codec_join hand PNG files and envelopes over to these, with the same contract. */
int codec_png_split(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                    uint8_t **envelope, size_t *env_len, char *why, size_t whylen);
int codec_png_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                   unsigned threads, uint8_t **out, size_t *out_len);

/* Parsers: fill *f from a whole file, or refuse. Return 0, -ENOTSUP or -EFBIG. */
int codec_pnm_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why,
                    size_t whylen);
int codec_dicom_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why,
                      size_t whylen);

/* ---- deflate descriptions (deflate.c), shared with the modelled recipe (zrecipe.c) -------- */

#define DFL_MAXBITS 15
#define DFL_NLIT 288
#define DFL_NDIST 32
#define DFL_NCL 19
#define DFL_MAXOPS 318 /* HLIT+257 + HDIST+1 lengths at most, one op each at worst */

/* A token: literal run (run << 16, distance field 0) or match (length << 16 | distance). */
#define TOK_LEN(t) ((t) >> 16)
#define TOK_DIST(t) ((t)&0xffffu)

struct dfl_block {
    size_t first_tok, ntok;
    size_t out_len;
    size_t first_op;
    uint16_t nop;
    uint8_t final, type, pad;
    uint8_t hlit, hdist, hclen;
    uint8_t clen[DFL_NCL]; /* transmitted order */
};

/* The description behind the opaque struct of deflate.h; the invariants are deflate.h's. */
struct codec_deflate_desc {
    int zlib;
    uint8_t cmf, flg;
    uint8_t end_pad;
    size_t out_len;
    struct dfl_block *blocks;
    size_t nblocks, cap_blocks;
    uint32_t *tok;
    size_t ntok, cap_tok;
    uint8_t *ops;
    size_t nops, cap_ops;
    uint8_t *tail;
    size_t tail_len;
};

/* Code-length code order of RFC 1951 3.2.7. */
extern const uint8_t codec_dfl_cl_order[DFL_NCL];

/* Grow *p (elements of elem bytes) to hold need elements, never beyond limit. 0, -EFBIG,
 * -ENOMEM. */
int codec_dfl_grow(void **p, size_t *cap, size_t need, size_t elem, size_t limit);

/* Expand and check a dynamic block's header (ops in deflate.h's format) into HLIT+257 then
 * HDIST+1 code lengths. 0 or -EINVAL. */
int codec_dfl_dyn_lens(const struct dfl_block *b, const uint8_t *ops,
                       uint8_t lens[DFL_NLIT + DFL_NDIST]);

/* Length 3..258 -> length symbol 0..28 (257 subtracted) and its extra-bits value;
 * distance 1..32768 -> distance symbol 0..29 and its extra-bits value. */
unsigned codec_dfl_len_symbol(unsigned len, unsigned *extra);
unsigned codec_dfl_dist_symbol(unsigned dist, unsigned *extra);

/* A reader of untrusted serialised bytes. */
struct codec_dfl_rd {
    const uint8_t *p;
    size_t left;
};

/* One byte, or -EINVAL at the end. */
int codec_dfl_rd_u8(struct codec_dfl_rd *r, uint8_t *v);

/* A minimal LEB128 varint of at most 10 bytes with value <= max, or -EINVAL. */
int codec_dfl_rd_var(struct codec_dfl_rd *r, uint64_t max, uint64_t *v);

#endif
