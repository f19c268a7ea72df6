/* SPDX-License-Identifier: MIT */
/*
 * Exact deflate: an inflater that records everything a deflate (RFC 1951) or zlib (RFC 1950)
 * stream is made of, and an emitter that writes the bit-identical stream back from that record
 * and the decompressed bytes. It is how a PNG's IDAT stream is rebuilt from pixels.
 *
 * Invariant: for every stream s that codec_deflate_record() accepts, codec_deflate_emit() of its
 * description and output gives s again, bit for bit, whatever deflater wrote s. What the
 * description cannot represent exactly is refused with -ENOTSUP at record time, never emitted
 * differently. The trade-off: a description holds every token (about one varint per match), so
 * a raw description is large; zrecipe.h stores one as its differences from a model of zlib,
 * which is small for streams zlib wrote. The description keeps no literal bytes: emit takes
 * them from the data, and checks every match against the data.
 *
 * What the description holds, and why nothing else is needed for exactness:
 *   - zlib wrapper: CMF and FLG as written (a preset dictionary, FDICT, is refused); the
 *     Adler-32 trailer is recomputed from the data (a wrong one is refused at record time).
 *   - per block: BFINAL and BTYPE.
 *     stored (BTYPE 0): the value of the 0..7 padding bits before LEN (their count follows from
 *       the bit position) and LEN; NLEN must be ~LEN (else the stream is invalid).
 *     fixed (1) and dynamic (2): the token sequence: literal runs (the bytes come from the data)
 *       and matches (length 3..258, distance 1..32768); end-of-block is implied.
 *     dynamic: HLIT, HDIST, HCLEN, the HCLEN+4 code-length-code lengths in transmitted
 *       (permuted) order, and the code-length sequence exactly as coded: each symbol 0..18 with
 *       the extra bits of 16/17/18, so repeats that cross from the literal/length to the distance
 *       lengths, or runs split differently than zlib would, come back as they were.
 *     Canonical Huffman codes give each symbol exactly one code, so tokens and lengths fix the
 *     bits. The one token with two codings in RFC 1951 terms is length 258, coded as symbol 285,
 *     or (outside the RFC's ranges, yet decoded by zlib) as symbol 284 with extra bits 31: the
 *     latter is refused with -ENOTSUP.
 *   - the padding bits after the final block, up to the byte boundary (value; count implied);
 *   - any bytes after the stream (after the Adler-32 trailer for zlib), verbatim, up to
 *     CODEC_DEFLATE_MAX_TAIL bytes (more: -ENOTSUP).
 *
 * Huffman code sets: an over-subscribed set is invalid (-EINVAL). An incomplete set (including
 * a single code of length 1, or no distance codes at all) is accepted as long as no unused bit
 * pattern is met while decoding: it round-trips like any other (zlib itself refuses some of
 * them, which is libpng's business, not ours). HLIT above 29 (more than 286 literal/length
 * codes) is invalid; HDIST up to 31 is legal per RFC 1951 as long as distance symbols 30 and 31
 * are never used.
 *
 * Errors of every function: -EINVAL malformed stream or description (truncated, bad code,
 * distance before the start of the output, bad LEN/NLEN, bad Adler-32, data that does not match
 * the description), -EFBIG a limit below exceeded, -ENOTSUP valid but not representable,
 * -ENOMEM.
 *
 * Serialised description ("raw recipe"), version 1. A varint is unsigned LEB128: 7 bits per
 * byte, least significant group first, high bit set on every byte but the last, at most 10
 * bytes, and minimal (a last byte of 0 is refused unless it is the only byte). Values are
 * checked against the limits named; anything else, including bytes left over, is -EINVAL.
 *
 *   size    field
 *   4       magic "IDFL"
 *   1       version = 1
 *   1       wrapper: 0 raw deflate, 1 zlib
 *   2       (zlib only) CMF, FLG: CM = 8, CINFO <= 7, FDICT = 0, (CMF * 256 + FLG) % 31 == 0
 *   varint  decompressed length, <= the caller's limit; must equal the sum over the blocks
 *   varint  block count B, 1..CODEC_DEFLATE_MAX_BLOCKS
 *   B blocks, each:
 *     1       head: bit 0 BFINAL (set on the last block only), bits 1-2 BTYPE 0..2, rest 0
 *     BTYPE 0:
 *       1       padding bits before LEN, value 0..127
 *       varint  LEN, 0..65535 (NLEN = ~LEN)
 *     BTYPE 2:
 *       1       HLIT 0..29
 *       1       HDIST 0..31
 *       1       HCLEN 0..15
 *       HCLEN+4 code-length-code lengths, 0..7 each, in transmitted order (16 17 18 0 8 7 9 6 10
 *               5 11 4 12 3 13 2 14 1 15); the code they make must not be over-subscribed
 *       varint  op count K, 1..318
 *       K       ops, one byte each: 0..15 code length (symbol 0..15); 16..19 symbol 16 with extra
 *               bits 0..3 (repeat the previous length 3..6 times, not as the first op); 20..27
 *               symbol 17 with extra 0..7 (3..10 zeros); 28..155 symbol 18 with extra 0..127
 *               (11..138 zeros). Every op symbol has a non-zero code length; together they give
 *               exactly HLIT+257 + HDIST+1 lengths, neither code over-subscribed, and a code for
 *               end-of-block (symbol 256).
 *     BTYPE 1 and 2:
 *       varint  token count T (each token produces at least one byte)
 *       T tokens, each a varint v:
 *         v even: a run of v/2 literals, 1..65535; a run directly after another run only when
 *                 that one is 65535 long (runs are as long as they can be)
 *         v odd:  a match of length (v >> 1) + 3, 3..258, followed by a varint distance - 1,
 *                 0..32767, with distance <= the bytes produced before the match
 *   1       padding bits after the final block, value 0..127
 *   varint  tail length, 0..CODEC_DEFLATE_MAX_TAIL, then that many bytes: what followed the
 *           stream (after the Adler-32 trailer for zlib)
 *
 * The form is canonical: parse then serialise gives the same bytes. Padding values too large
 * for the bit count they land on are found at emit time (-EINVAL).
 *
 * Threads: a description is immutable once made; any number of threads may emit from it or
 * serialise it at once.
 */
#ifndef IMGCRYPTFS_CODEC_DEFLATE_H
#define IMGCRYPTFS_CODEC_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Hard ceiling of any decompressed length; callers pass their own, lower, limit. */
#define CODEC_DEFLATE_MAX_OUT ((size_t)1 << 30)
/* Blocks per stream: zlib writes one per 16-64 KiB; the description costs ~64 bytes a block. */
#define CODEC_DEFLATE_MAX_BLOCKS ((size_t)1 << 20)
/* Bytes kept verbatim after the end of the stream. */
#define CODEC_DEFLATE_MAX_TAIL ((size_t)1 << 16)
/* Longest literal run of one token. */
#define CODEC_DEFLATE_MAX_RUN 65535u

#define CODEC_DEFLATE_DESC_MAGIC "IDFL"
#define CODEC_DEFLATE_DESC_VERSION 1

/* What a stream is made of, from codec_deflate_record() or codec_deflate_desc_parse(). */
struct codec_deflate_desc;

/* Figures about a description, for reports and benchmarks. */
struct codec_deflate_info {
    int zlib;       /* 1 when the zlib wrapper is present */
    size_t out_len; /* decompressed bytes */
    size_t blocks;  /* and of those: */
    size_t stored, fixed, dynamic;
    size_t literals; /* literal bytes in fixed and dynamic blocks */
    size_t matches;  /* match tokens */
    size_t tail_len; /* bytes after the stream */
};

/*
 * Decode the raw deflate stream in[0..in_len) and record it. On success *out is the
 * decompressed data (malloc'd, *out_len bytes, NULL when empty) and *desc its description, both
 * owned by the caller. max_out caps the decompressed length (at most CODEC_DEFLATE_MAX_OUT);
 * output beyond it is -EFBIG, found before anything beyond it is allocated. Bytes after the
 * final block go to the description's tail. Safe on any input: never reads outside in.
 */
int codec_deflate_record(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                         size_t *out_len, struct codec_deflate_desc **desc);

/* The same for a zlib stream (RFC 1950): header checked and kept, Adler-32 trailer verified. */
int codec_deflate_record_zlib(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                              size_t *out_len, struct codec_deflate_desc **desc);

/*
 * Write the stream described by desc for data[0..data_len) into *out (malloc'd, *out_len bytes,
 * owned by the caller). Literals come from data; every match is checked against data. Returns
 * -EINVAL when data_len is not the described length, a match disagrees with data, data needs a
 * code the block's Huffman code lacks, or a padding value does not fit its bits.
 */
int codec_deflate_emit(const struct codec_deflate_desc *desc, const uint8_t *data, size_t data_len,
                       uint8_t **out, size_t *out_len);

/*
 * Serialise desc into buf (format above). With buf NULL, or cap too small, nothing is written.
 * Returns the serialised size in bytes (also when nothing was written), or a negative errno.
 */
ssize_t codec_deflate_desc_serialise(const struct codec_deflate_desc *desc, uint8_t *buf,
                                     size_t cap);

/* The serialised size of desc in bytes. */
size_t codec_deflate_desc_size(const struct codec_deflate_desc *desc);

/*
 * Parse and validate a serialised description (untrusted bytes). The decompressed length it
 * describes must be at most max_out (at most CODEC_DEFLATE_MAX_OUT), else -EFBIG. On success
 * *desc is owned by the caller.
 */
int codec_deflate_desc_parse(const uint8_t *buf, size_t len, size_t max_out,
                             struct codec_deflate_desc **desc);

void codec_deflate_desc_info(const struct codec_deflate_desc *desc,
                             struct codec_deflate_info *info);

/* Accepts NULL. */
void codec_deflate_desc_free(struct codec_deflate_desc *desc);

/* ---- reading a description (for the zlib match-finder model, codec/zlib/zmodel.h) -------------
 */

/* One block of a description, as codec_deflate_desc_block() shows it. */
struct codec_deflate_block_view {
    int final;          /* BFINAL */
    int type;           /* BTYPE: 0 stored, 1 fixed, 2 dynamic */
    size_t out_len;     /* decompressed bytes the block produces */
    size_t first_token; /* its tokens are first_token .. first_token + ntokens - 1 */
    size_t ntokens;     /* 0 for a stored block */
};

/* Number of blocks of desc. */
size_t codec_deflate_desc_nblocks(const struct codec_deflate_desc *desc);

/* Block i of desc (i < codec_deflate_desc_nblocks(desc), else a programmer error). */
void codec_deflate_desc_block(const struct codec_deflate_desc *desc, size_t i,
                              struct codec_deflate_block_view *block);

/*
 * Token i of desc (i below the sum of the blocks' ntokens, else a programmer error): with *dist
 * 0 a run of *len literals (1..CODEC_DEFLATE_MAX_RUN; the bytes are the data's), else a match of
 * length *len (3..258) at distance *dist (1..32768). Runs are as long as they can be within a
 * block, so two runs are adjacent only when the first is CODEC_DEFLATE_MAX_RUN long.
 */
void codec_deflate_desc_token(const struct codec_deflate_desc *desc, size_t i, unsigned *len,
                              unsigned *dist);

#endif
