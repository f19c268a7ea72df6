/* SPDX-License-Identifier: MIT */
/*
 * A deterministic model of zlib's match finder: given the uncompressed data and the deflateInit2
 * parameters (level 1-9, memLevel, windowBits, strategy), predict the token sequence (literals
 * and length/distance matches) zlib would write. It is what lets a PNG recipe store its tokens
 * as a few corrections instead of one varint a match. Written from the algorithm as zlib
 * documents it (RFC 1951 section 4; zlib's algorithm.txt and the parameter table of
 * deflateInit2), not from zlib's code.
 *
 * What is modelled: hash chains over 3-byte prefixes (memLevel + 7 hash bits), the per-level
 * good/lazy/nice/chain parameters, greedy matching with limited insertion for levels 1-3 and
 * lazy evaluation for 4-9, dropping length-3 matches further than 4096 back at levels 4-9,
 * Z_FILTERED (matches of 5 or less dropped at levels 4-9), Z_RLE, Z_HUFFMAN_ONLY; the window of
 * 2 << windowBits bytes with its slide, after which zlib forgets positions at or before the new
 * window start, and the largest distance of (1 << windowBits) - 262. Z_FIXED finds matches like
 * the default strategy. Block boundaries are not modelled: zlib decides them after the tokens,
 * and they never change a token.
 *
 * The trade-off: it models one stream compressed from start to Z_FINISH with fixed parameters.
 * Input may reach deflate in pieces of any size (libpng gives it a row at a time): zlib decides
 * nothing until it has a full lookahead or is told to finish, so the tokens are the same (tested
 * with pieces of 1, 513 and 4097 bytes). Not modelled, and left to the recipe's corrections:
 * Z_SYNC_FLUSH/Z_FULL_FLUSH inside the stream, deflateParams midway, preset dictionaries, level
 * 0, and a window slide that lands exactly on the threshold with a candidate exactly at the
 * largest distance (possible only when input comes in pieces).
 *
 * Threads: the functions keep no state between calls; any number of threads may use them.
 */
#ifndef IMGCRYPTFS_CODEC_ZMODEL_H
#define IMGCRYPTFS_CODEC_ZMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "codec/zlib/deflate.h"

/* Strategies, numbered as zlib's Z_* constants. */
enum codec_zmodel_strategy {
    CODEC_ZMODEL_DEFAULT = 0,
    CODEC_ZMODEL_FILTERED = 1,
    CODEC_ZMODEL_HUFFMAN_ONLY = 2,
    CODEC_ZMODEL_RLE = 3,
    CODEC_ZMODEL_FIXED = 4,
};

/* deflateInit2's parameters that decide the tokens. */
struct codec_zmodel_params {
    int level;       /* 1..9 (0, stored, has no tokens) */
    int mem_level;   /* 1..9 */
    int window_bits; /* 9..15 (8 is taken as 9, as zlib does) */
    int strategy;    /* enum codec_zmodel_strategy */
};

/* One predicted token: dist 0 a literal (len 1, the byte is the data's), else a match. */
struct codec_zmodel_token {
    uint16_t len;  /* 1 for a literal, 3..258 for a match */
    uint16_t dist; /* 0 for a literal, 1..32768 - 262 for a match */
};

/*
 * Predict the tokens zlib writes for data[0..len) with parameters p. On success *toks (malloc'd,
 * owned by the caller, NULL when len is 0) holds *ntoks tokens covering the data in order.
 * Returns 0, -EINVAL for bad parameters, -EFBIG when len exceeds CODEC_DEFLATE_MAX_OUT, -ENOMEM.
 */
int codec_zmodel_predict(const uint8_t *data, size_t len, const struct codec_zmodel_params *p,
                         struct codec_zmodel_token **toks, size_t *ntoks);

/*
 * The same prediction with up to `threads` workers (0 or 1: the calling thread alone; 2 or
 * more: two). At levels 4-9 (default and filtered strategies) on 64 KiB to 64 MiB, the data is
 * cut into segments of at least 32 KiB that a second thread predicts from the end backwards,
 * each from the state the first worker will have there, while the first runs on from the start
 * (see struct zm_share in zmodel.c): the tokens are those of one worker, always. Returns as
 * above.
 */
int codec_zmodel_predict_threads(const uint8_t *data, size_t len,
                                 const struct codec_zmodel_params *p, unsigned threads,
                                 struct codec_zmodel_token **toks, size_t *ntoks);

/* How far a prediction agrees with a recorded stream. */
struct codec_zmodel_agreement {
    size_t tokens;           /* tokens of the recorded stream, each literal counted as one */
    size_t equal;            /* of those, predicted exactly (same place, same token) */
    size_t first_divergence; /* output offset of the first token predicted wrongly, or SIZE_MAX */
    size_t stored_bytes;     /* bytes in stored blocks, which have no tokens and are not counted */
};

/*
 * Compare the prediction toks[0..ntoks) with the tokens of desc, position by position, so that
 * agreement resumes wherever both streams start a token at the same offset again. Returns 0 and
 * fills *a, or -EINVAL when the prediction does not cover the described output exactly.
 */
int codec_zmodel_compare(const struct codec_zmodel_token *toks, size_t ntoks,
                         const struct codec_deflate_desc *desc, struct codec_zmodel_agreement *a);

/* ---- blocks (ztrees.c) ------------------------------------------------------------------ */

#define CODEC_ZMODEL_NLIT 286 /* literal/length symbols: 0-255 bytes, 256 end, 257-285 lengths */
#define CODEC_ZMODEL_NDIST 30

/* What zlib writes at the start of a block: its type and, when dynamic, the header exactly as
 * deflate.h describes it (HLIT, HDIST, HCLEN, code-length-code lengths in transmitted order,
 * and the run-length ops). */
struct codec_zmodel_block {
    int type; /* 0 stored, 1 fixed, 2 dynamic */
    uint8_t hlit, hdist, hclen;
    uint8_t clen[19];
    uint16_t nop;
    uint8_t ops[318];
};

/*
 * Predict the block zlib writes for a block whose symbols have the given counts (lit_freq
 * without the end-of-block symbol, which is added; dist_freq per distance symbol), covering
 * stored_len bytes of data, under strategy (CODEC_ZMODEL_FIXED forces fixed codes): zlib's Huffman
 * construction (heap order, depth tie-break, length limit repair), its run-length coding of the
 * code lengths, and its choice between stored, fixed and dynamic by exact bit counts. Stored is
 * predicted whenever it is the smallest, as zlib does while the block's data is still in its
 * window. Cannot fail.
 */
void codec_zmodel_block(const uint32_t lit_freq[CODEC_ZMODEL_NLIT],
                        const uint32_t dist_freq[CODEC_ZMODEL_NDIST], uint64_t stored_len,
                        int strategy, struct codec_zmodel_block *out);

#endif
