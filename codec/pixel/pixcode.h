/* SPDX-License-Identifier: MIT */
/*
 * The lossless pixel coder of the image path: planes (codec.h) to a compact stream and back,
 * exactly, for 8- and 16-bit samples.
 *
 * Each plane is coded on its own in four layers, each replaceable without touching the others:
 * 1. histogram packing: the values a plane actually uses are mapped to 0..K-1 when that pays
 *    (medical images often use a few hundred of 4096 levels: predicting among those is what
 *    makes them cheap), else the plane's range min..max is shifted to 0;
 * 2. a causal predictor (struct codec_pixcode_predictor) gives, per pixel, a mean and a scale
 *    context; the built-in one is fixed (MED with a per-context bias correction as in
 *    JPEG-LS, scale from local gradients and neighbouring errors); a model-based predictor
 *    (an integer-exact network) plugs in through the same interface;
 * 3. the residual, folded into 0..K-1 around the mean, becomes a hybrid integer: a token
 *    (exact below 16, else exponent and two mantissa bits) plus raw low bits;
 * 4. tokens go through static rANS tables (rans.h), one per run of adjacent scale contexts,
 *    made from the whole plane in a first pass; raw bits are stored as they are.
 * The plane is cut into stripes of rows coded as independent streams over the shared tables:
 * the first row of a stripe does not look above it, and the predictor starts afresh, so
 * stripes are coded and decoded in parallel and any one decodes alone. The trade-off is a few
 * bits per stripe boundary against parallelism and random access.
 *
 * Threads: every function may be called from any number of threads at once on distinct
 * arguments; `threads` > 1 runs that many workers (pthreads) over the stripes of each plane.
 *
 * Stream format, version 2 (version 1 differs only in its tables, below, and still decodes;
 * the encoder writes version 2). Varints are unsigned LEB128, at most 5 bytes, minimal (a last
 * byte of 0 is refused, except for the value 0 itself).
 *
 *   offset  size    field
 *   0       4       magic "IMPX"
 *   4       1       version: 2, or 1
 *   5       1       predictor id: 0 the built-in fixed predictor (the only one a stream
 *                   decodes without being handed a predictor); 1 the neural predictor of
 *                   codec/pixel/pixnet.h (its coding order and features are specified there; the
 *                   model is named outside the stream, by the container's coder id)
 *   6       1       bits per sample: 8 or 16
 *   7       1       significant bits S, 1..bits: no sample is 2^S or more
 *   8       4       channels C, 1..CODEC_MAX_CHANNELS (little-endian, as all fixed fields)
 *   12      4       frames F, 1..CODEC_MAX_FRAMES
 *   16      4       height H, 1..CODEC_MAX_DIM
 *   20      4       width W, 1..CODEC_MAX_DIM
 *   24      4       stripe rows R, 1..CODEC_PIXCODE_MAX_STRIPE_ROWS: stripe j holds rows
 *                   j*R .. min(H, (j+1)*R) - 1; N = ceil(H / R) stripes per plane
 *   28      1       scale contexts X, 1..CODEC_PIXCODE_MAX_CTX (the predictor's)
 *   29      3       reserved, 0
 *   32      ...     C*F planes, plane p = c*F + f, each:
 *
 *   size    field (one plane)
 *   1       packing mode M: 0 none (K = 2^S), 1 range, 2 value set
 *   M >= 1: varint lo, varint span: the values used lie in lo .. lo+span < 2^S, both
 *           ends used; packed value = sample - lo, K = span + 1
 *   M == 2: varint K, 2..span (a set with no gap is coded as range), then the gaps
 *           g_i = v_i - v_(i-1) - 1 between the used values v_0 = lo < ... < v_(K-1) = lo+span
 *           (K - 1 of them, summing to span + 1 - K) as a token stream (below) with
 *           2 contexts, gap i having context 1 when g_(i-1) > 0 (g_0 has context 0):
 *             tables (2 tables, rans.h format, self-delimiting; form 2, the classes coded
 *             against each other, in version 2; form 1 in version 1), varint A, varint B,
 *             A rANS bytes, B raw bytes
 *           packed value = the index of the sample in v
 *   ceil((X-1)/8)  context map: bit c (least significant first) set when scale context c+1
 *           starts a new table (adjacent contexts share one where a table would cost more
 *           than it saves); T = 1 + the bits set; padding bits zero
 *   -       T tables (rans.h format and form as above) over tokens 0..63: table i serves the
 *           contexts between the i-th and (i+1)-th boundary
 *   N times varint A_j, varint B_j: stripe j's rANS bytes and raw-bit bytes
 *   N times A_j rANS bytes then B_j raw bytes of stripe j
 *
 *   Stripe j: the predictor visits its pixels (coding order: raster for predictor 0); pixel i
 *   of that order is token i of the rANS stream (state i & 1, table of the pixel's context)
 *   and its raw bits follow those of pixel i-1 in the raw bytes (least significant bit of
 *   each byte first; the token's raw bits least significant first; zero padding to a byte).
 *   Token t < 16 is the folded residual u = t; else, with k = t - 16, e = 4 + (k >> 2),
 *   u = (4 + (k & 3)) << (e - 2) | r, r being the next e - 2 raw bits. u must be < K. With
 *   the mean m (0..K-1) and d = min(m, K-1-m), the packed value is
 *     m + (u + 1) / 2 * (u odd ? -1 : 1)    when u <= 2d,
 *     m + (u - d)                           when u > 2d and m < K-1-m,
 *     m - (u - d)                           when u > 2d and m > K-1-m.
 *   Both streams must be consumed exactly and the rANS states must end at 2^23.
 *
 *   The stream ends after the last plane; trailing bytes are refused.
 *
 * Predictor 0 on the packed values v (neighbours W, N, NW, NE, WW of the current pixel within
 * its stripe; where a neighbour falls outside the stripe: in the stripe's first row N, NW and
 * NE are W, and the first pixel has all 0; in column 0 W, NW and WW are N; in the last column
 * NE is N; in column 1 WW is W) is specified by its code in pixcode.c (codec_pixcode_fixed):
 * a median edge detector, a bias correction in one of 729 gradient contexts adapted as in
 * JPEG-LS, and a scale context from the quantised sum of local gradients and the neighbours'
 * residual magnitudes. Changing it changes the stream: it is part of format versions 1 and 2.
 */
#ifndef IMGCRYPTFS_CODEC_PIXCODE_H
#define IMGCRYPTFS_CODEC_PIXCODE_H

#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"

#define CODEC_PIXCODE_MAGIC "IMPX"
#define CODEC_PIXCODE_VERSION 2
#define CODEC_PIXCODE_HEADER 32
#define CODEC_PIXCODE_MAX_CTX 32u            /* scale contexts a predictor may give */
#define CODEC_PIXCODE_MAX_STRIPE_ROWS 65536u /* = CODEC_MAX_DIM */
#define CODEC_PIXCODE_DEFAULT_STRIPE_ROWS 256u
#define CODEC_PIXCODE_MAX_THREADS 64u

/*
 * What a predictor sees of a stripe: the packed samples (0..maxval), row-major, `width` per
 * row, `rows` rows; row 0 is the stripe's first row. Only samples of groups already returned
 * by next() hold their values; the rest must not be read (the encoder has them all, the
 * decoder not yet: a predictor that peeks decodes garbage).
 */
struct codec_pixcode_view {
    const uint16_t *v;
    uint32_t width, rows;
    uint32_t maxval;
};

/*
 * A causal predictor. The coder calls begin() at the start of each stripe, then next()
 * until it returns 0; each call names a group of pixels (one, for a raster predictor; a
 * whole pass, for an interleaved network) with, for each, its offset in the view, its mean
 * (0..maxval) and its scale context (< contexts). The samples of a group become visible
 * before the next call. Every pixel of the stripe must be named exactly once. Encoder and
 * decoder make the same calls in the same order, so a predictor must be deterministic
 * (integer arithmetic only) and look only at visible samples and its own state.
 */
struct codec_pixcode_predictor {
    uint8_t id;       /* stored in the stream; 0 is reserved for codec_pixcode_fixed */
    uint8_t contexts; /* 1..CODEC_PIXCODE_MAX_CTX */
    /* State for stripes of at most `width` x `rows` (one per worker thread); NULL: -ENOMEM. */
    void *(*state_new)(const struct codec_pixcode_predictor *p, uint32_t width, uint32_t rows);
    void (*state_free)(void *st);
    void (*begin)(void *st, const struct codec_pixcode_view *view);
    /* Returns the group's size n (1..cap, cap >= width of the stripe), 0 when done. */
    size_t (*next)(void *st, uint32_t *pos, uint16_t *mean, uint8_t *ctx, size_t cap);
    const void *model; /* whatever the predictor needs (weights); not owned */
};

/* The built-in fixed predictor (id 0). */
extern const struct codec_pixcode_predictor codec_pixcode_fixed;

enum codec_pixcode_pack {
    CODEC_PIXCODE_PACK_AUTO = 0, /* value set when it measures smaller, else range */
    CODEC_PIXCODE_PACK_RANGE = 1,
    CODEC_PIXCODE_PACK_SET = 2, /* whenever the used values have a gap */
    CODEC_PIXCODE_PACK_NONE = 3,
};

struct codec_pixcode_opts {
    uint32_t stripe_rows;                       /* 0: CODEC_PIXCODE_DEFAULT_STRIPE_ROWS */
    unsigned threads;                           /* 0 or 1: the calling thread only */
    enum codec_pixcode_pack pack;               /* per plane */
    const struct codec_pixcode_predictor *pred; /* NULL: codec_pixcode_fixed */
    /* A second predictor (another id), or NULL. When given, each predictor first codes a
     * sample of the image cut into stripes of at most 64 rows (the middle one of each four,
     * of every plane; of fewer than four, the middle one), and the one whose estimated bits
     * are smaller (pred on a tie) codes the image, with the packing the sample chose per
     * plane: about a quarter more work for the predictor's own, not a second coding of the
     * whole image. An image too short for a sample (fewer than four such stripes) is coded
     * by each, and the smaller stream kept. */
    const struct codec_pixcode_predictor *alt;
};

/*
 * Encode img's planes. *out (caller frees) gets the stream. opts may be NULL (defaults).
 * Returns 0, -EINVAL (NULL argument, a geometry or depth outside the limits, planes_bytes not
 * matching it, a sample at or above 2^significant, an unusable predictor), -EFBIG, -ENOMEM.
 */
int codec_pixcode_encode(const struct codec_image *img, const struct codec_pixcode_opts *opts,
                         uint8_t **out, size_t *out_len);

/* What a stream's header says (checked against the limits; the planes are not walked). */
struct codec_pixcode_info {
    uint32_t channels, frames, height, width, bits, significant;
    uint32_t stripe_rows, stripes; /* stripes per plane */
    uint8_t predictor;
    size_t planes_bytes; /* what decoding needs */
};

/* Read the header of buf[0..len) into *info (written only on success). 0 or -EINVAL. */
int codec_pixcode_info(const uint8_t *buf, size_t len, struct codec_pixcode_info *info);

/*
 * Decode buf[0..len) (untrusted) into img, whose channels, frames, height, width, bits and
 * significant must equal the stream's and whose planes (planes_bytes of them) the caller
 * provides; format is not touched. pred: the predictor the stream names (NULL for id 0).
 * Returns 0, or -EINVAL (malformed or corrupt stream, geometry mismatch, unknown predictor),
 * -ENOMEM. On failure the planes hold unspecified values.
 */
int codec_pixcode_decode(const uint8_t *buf, size_t len, struct codec_image *img,
                         const struct codec_pixcode_predictor *pred, unsigned threads);

/*
 * Decode stripe `stripe` of plane `plane` (c * frames + f) alone into out: its rows
 * (stripe_rows, fewer in the last stripe) of width samples, 8- or 16-bit as the stream says;
 * out_bytes must be at least rows * width * bits / 8. The other stripes' data is skipped
 * unread; planes before `plane` have their headers and tables parsed. Returns 0, -EINVAL
 * (as above, or plane/stripe out of range, out too small), -ENOMEM.
 */
int codec_pixcode_decode_stripe(const uint8_t *buf, size_t len,
                                const struct codec_pixcode_predictor *pred, uint32_t plane,
                                uint32_t stripe, void *out, size_t out_bytes);

#endif
