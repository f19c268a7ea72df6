/* SPDX-License-Identifier: MIT */
/*
 * Internals of the image adapters shared by adapt.c (envelope, planes) and the format parsers
 * (pnm.c, dicom.c, and the raster codings pnmtext.c and dicomrle.c). A parser only locates the
 * raster and describes it; the envelope and the sample loops are common, so every adapter inherits
 * the same exactness argument: the file is head || raster || tail, head and tail are copied
 * verbatim, and the raster maps one-to-one onto samples. PNG (png.c) is the exception: its raster
 * is a zlib stream, so it writes and reads its own envelope body (codec.h) behind the common fixed
 * fields.
 */
#ifndef IMGCRYPTFS_CODEC_ADAPT_ADAPT_INT_H
#define IMGCRYPTFS_CODEC_ADAPT_ADAPT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/bytes.h"
#include "codec/codec.h"

/* Offsets of the envelope's fixed fields (codec.h) that the adapters write or read directly. */
#define CODEC_ENV_FLAGS 26    /* adapter flags */
#define CODEC_ENV_HEAD_LEN 28 /* head length H; the head follows at CODEC_ENV_FIXED */

/* How the raster's bytes hold the samples (a superset of the envelope's flags). */
#define CODEC_LAYOUT_PLANAR CODEC_DICOM_PLANAR   /* plane by plane within each frame */
#define CODEC_LAYOUT_BE16 CODEC_DICOM_BE16       /* 16-bit samples big-endian */
#define CODEC_LAYOUT_BE_OW8 CODEC_DICOM_BE_OW8   /* 8-bit samples, byte pairs swapped */
#define CODEC_LAYOUT_WORDS32 CODEC_DICOM_WORDS32 /* 32-bit samples as two 16-bit channels */
#define CODEC_LAYOUT_YBR422 CODEC_DICOM_YBR422   /* Y0 Y1 Cb Cr as 4 half-width channels */

/* What a parser found: the image geometry (planes and significant unset), where the raster
 * is, and how its bytes are laid out. */
struct codec_found {
    struct codec_image geo;
    size_t head_len;    /* the raster starts here */
    size_t raster_len;  /* channels × frames × height × width × bits/8 */
    uint8_t layout;     /* CODEC_LAYOUT_* */
    uint32_t max_value; /* largest valid sample (PNM maxval, DICOM 2^BitsStored - 1) */
    bool strict;        /* a sample above max_value refuses the file (else significant = bits) */
    bool text; /* PNM P2/P3: the raster is decimal text (pnmtext.c), not raster_len bytes */
    bool rle;  /* DICOM RLE Lossless: the raster is encapsulated RLE fragments (dicomrle.c) */
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

/* The parts of an envelope that keeps one section between a verbatim head and tail (plain PNM
 * text, DICOM RLE): after the fixed fields, the head (its length in the fixed fields), u64
 * section length, section, u64 tail length, tail, which ends the envelope. */
struct codec_env_parts {
    const uint8_t *head, *sec, *tail;
    uint64_t head_len, sec_len, tail_len;
};
/* Find the three parts in env, each checked to lie inside it. 0 or -EINVAL. */
int codec_env_parts(const uint8_t *env, size_t env_len, struct codec_env_parts *p);

/* PNG makes the whole envelope itself (its raster is a zlib stream): codec_split and
 * codec_join hand PNG files and envelopes over to these, with the same contract. */
int codec_png_split(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                    uint8_t **envelope, size_t *env_len, char *why, size_t whylen);
int codec_png_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                   unsigned threads, uint8_t **out, size_t *out_len);

/* Plain PNM (P2/P3, f from codec_pnm_parse with f->text): the envelope with its layout
 * section, made and read as codec_split and codec_join. */
int codec_pnm_text_split(const uint8_t *buf, size_t len, const struct codec_found *f,
                         struct codec_image **img, uint8_t **envelope, size_t *env_len, char *why,
                         size_t whylen);
int codec_pnm_text_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                        uint8_t **out, size_t *out_len);

/* DICOM RLE Lossless (f from codec_dicom_parse with f->rle): the envelope with its RLE
 * section, made and read as codec_split and codec_join. */
int codec_dicom_rle_split(const uint8_t *buf, size_t len, const struct codec_found *f,
                          struct codec_image **img, uint8_t **envelope, size_t *env_len, char *why,
                          size_t whylen);
int codec_dicom_rle_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                         uint8_t **out, size_t *out_len);

/* Parsers: fill *f from a whole file, or refuse. Return 0, -ENOTSUP or -EFBIG. */
/* PNG's geometry from its IHDR alone (codec_probe). */
int codec_png_probe(const uint8_t *buf, size_t len, struct codec_image *geo);
int codec_pnm_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why,
                    size_t whylen);
int codec_dicom_parse(const uint8_t *buf, size_t len, struct codec_found *f, char *why,
                      size_t whylen);

#endif
