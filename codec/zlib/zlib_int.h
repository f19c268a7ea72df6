/* SPDX-License-Identifier: MIT */
/*
 * Internals of the zlib replay shared by the exact inflater/emitter (deflate.c), the modelled
 * recipe (zrecipe.c): the parsed description behind
 * deflate.h's opaque struct and the RFC 1951 tables both sides need. Kept out of deflate.h so
 * that the adapters see only descriptions, never their layout.
 */
#ifndef IMGCRYPTFS_CODEC_ZLIB_ZLIB_INT_H
#define IMGCRYPTFS_CODEC_ZLIB_ZLIB_INT_H

#include <stddef.h>
#include <stdint.h>

#include "codec/bytes.h"
#include "codec/zlib/deflate.h"

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

/* Append a token to d (at most CODEC_DEFLATE_MAX_OUT: every token produces at least one
 * byte). 0, -EFBIG or -ENOMEM. */
int codec_zlib_push_tok(struct codec_deflate_desc *d, uint32_t t);

/* Code-length code order of RFC 1951 3.2.7. */
extern const uint8_t codec_zlib_cl_order[DFL_NCL];

/* Expand and check a dynamic block's header (ops in deflate.h's format) into HLIT+257 then
 * HDIST+1 code lengths. 0 or -EINVAL. */
int codec_zlib_dyn_lens(const struct dfl_block *b, const uint8_t *ops,
                        uint8_t lens[DFL_NLIT + DFL_NDIST]);

/* Length 3..258 -> length symbol 0..28 (257 subtracted) and its extra-bits value;
 * distance 1..32768 -> distance symbol 0..29 and its extra-bits value. */
unsigned codec_zlib_len_symbol(unsigned len, unsigned *extra);
unsigned codec_zlib_dist_symbol(unsigned dist, unsigned *extra);

#endif
