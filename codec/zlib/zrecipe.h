/* SPDX-License-Identifier: MIT */
/*
 * The modelled recipe: a deflate description (deflate.h) stored as the differences from what
 * zlib itself would have written for the same data. For a stream that zlib wrote, that is the
 * deflateInit2 parameters and a handful of bytes, whatever the image size; the raw description
 * costs about one varint per token (a fifth to four fifths of the file). A stream from any other
 * deflater is still described exactly, only larger, and the PNG adapter keeps whichever of the
 * two forms is smaller.
 *
 * The model (codec/zlib/zmodel.h) gives, from the data and the parameters, a token stream, the
 * block boundaries (zlib ends a block every 2^(memLevel+6) - 1 symbols) and each block's type and
 * Huffman header. The recipe stores the parameters, the runs of tokens that differ, a block
 * layout only when it differs, and the block heads that differ. Making a recipe checks that it
 * rebuilds the description exactly before it is returned, so a model error can only cost bytes.
 *
 * Symbols: a literal is one symbol, a match one symbol. A stored block has no symbols in the
 * stream; here it counts as one literal symbol per byte, so that the stream of symbols always
 * covers the whole data.
 *
 * Format ("modelled recipe"), version 1. Varints as in deflate.h (unsigned LEB128, minimal).
 *
 *   size    field
 *   4       magic "IDFM"
 *   1       version = 1
 *   1       wrapper: 0 raw deflate, 1 zlib
 *   2       (zlib only) CMF, FLG, checked as in deflate.h
 *   varint  decompressed length L, <= the caller's limit, = the data's length
 *   1       level 1..9
 *   1       memLevel 1..9
 *   1       windowBits 9..15
 *   1       strategy 0..4 (zlib's Z_DEFAULT_STRATEGY .. Z_FIXED)
 *   varint  correction count C; then C corrections, in data order:
 *     varint  gap: bytes of data from the end of the previous correction (or from 0) to its
 *             start, which must be a token boundary of the prediction
 *     varint  token count T >= 1, then T tokens as in deflate.h (v even: a run of v/2 >= 1
 *             literals, never directly after another run; v odd: a match of length (v>>1)+3,
 *             then varint distance - 1, distance <= bytes before it); the data covered must
 *             end on a token boundary of the prediction, whose tokens over that span are
 *             replaced by these
 *   1       layout: 0 zlib's (every block but the last has 2^(memLevel+6) - 1 symbols, the last
 *           has the rest, possibly none), 1 explicit:
 *     varint  block count B, 1..CODEC_DEFLATE_MAX_BLOCKS
 *     B       varints: symbols of each block; a block's symbols must end on a token boundary
 *   varint  exception count E; then E blocks whose head differs from the prediction, in
 *           increasing order:
 *     varint  block index (the first), or distance to the previous exception minus one
 *     1       type 0..2, which differs from the prediction or is 2
 *     type 0: 1 byte padding bits before LEN, 0..127 (a predicted stored block has 0)
 *     type 2: HLIT, HDIST, HCLEN, HCLEN+4 code-length-code lengths, varint op count, ops, all
 *             as in deflate.h
 *   1       padding bits after the final block, 0..127
 *   varint  tail length (<= CODEC_DEFLATE_MAX_TAIL), then the tail bytes
 *
 * Anything else, including bytes left over, is -EINVAL.
 *
 * Threads: no state is kept between calls.
 */
#ifndef IMGCRYPTFS_CODEC_ZRECIPE_H
#define IMGCRYPTFS_CODEC_ZRECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "codec/zlib/deflate.h"
#include "codec/zlib/zmodel.h"

#define CODEC_ZRECIPE_MAGIC "IDFM"
#define CODEC_ZRECIPE_VERSION 1

/* What codec_zrecipe_make found, for reports and tests. */
struct codec_zrecipe_info {
    struct codec_zmodel_params params; /* the parameters chosen */
    size_t corrections;                /* runs of tokens that differ */
    size_t corrected_tokens;           /* tokens inside them */
    size_t blocks, block_exceptions;   /* blocks, and heads that differ */
    int explicit_layout;               /* 1 when the block layout is stored */
};

/*
 * Describe desc, which describes data[0..len), as a modelled recipe: the zlib parameters are
 * found by trial on the data (the zlib header's level hint first), then the differences are
 * coded. *out (malloc'd, owned by the caller) holds *out_len bytes; info (may be NULL) gets the
 * figures. threads: workers for the model's prediction of the whole data
 * (codec_zmodel_predict_threads). Returns 0; -ENOTSUP when the stream has no compressed block to
 * model or the recipe would not rebuild desc exactly; -EINVAL when data is not desc's; -EFBIG,
 * -ENOMEM.
 */
int codec_zrecipe_make(const struct codec_deflate_desc *desc, const uint8_t *data, size_t len,
                       unsigned threads, uint8_t **out, size_t *out_len,
                       struct codec_zrecipe_info *info);

/*
 * Rebuild the description from a modelled recipe (untrusted bytes) and the data it describes,
 * data[0..len) with len <= max_out (at most CODEC_DEFLATE_MAX_OUT). On success *desc is owned
 * by the caller; emitting it still checks every token against the data (deflate.h). threads:
 * as for codec_zrecipe_make. Returns 0,
 * -EINVAL (malformed, or not a recipe of this data), -EFBIG, -ENOMEM.
 */
int codec_zrecipe_parse(const uint8_t *buf, size_t buf_len, const uint8_t *data, size_t len,
                        size_t max_out, unsigned threads, struct codec_deflate_desc **desc);

#endif
