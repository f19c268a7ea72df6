/* SPDX-License-Identifier: MIT */
/*
 * The latent coder: the autoencoder's quantised features (nn/ae.h, values -127..127 in planes
 * of a small grid) to a compact stream and back, exactly. It is what the container seals as
 * the features of an image (container.h, features coding 2).
 *
 * Model. Each plane is coded under a two-sided geometric distribution around a centre m: the
 * offset d = q - m has weight theta^|d|, theta one of CODEC_LATCODE_SHAPES fixed values (the
 * shape), chosen per plane and per neighbourhood bucket by the encoder and stored. Why this and
 * not the autoencoder's learned prior: a prior in floating point would have to be turned into
 * integer tables identically on every machine years later, and libm's exp() is not the same
 * everywhere; a shape index into integer weights is (the tables below are built by integer
 * arithmetic only). Fitting the centre and shapes to each image also beats one prior for all
 * images, for 1 + K bytes per plane.
 *
 * Buckets. With K buckets (1..4), a value's bucket is the first b with a <= {0, 3, 10, inf}[b],
 * clamped to K - 1, where a = |W - m| + |N - m| from its left (W) and upper (N) neighbours in
 * the plane (m where there is none): busy neighbourhoods get wider distributions.
 *
 * Tables. For shape t, theta = CODEC_LATCODE_THETA[t] / 2^16 (latcode.c); symbols 0..62 are the
 * offsets d = s - 31, symbol 63 the escape. Weights in integers: w(0) = 2^16,
 * w(k + 1) = (w(k) theta + 2^15) >> 16, each raised to at least 1; the escape weighs 1; symbol
 * s weighs w(|s - 31|). With W the sum of all 64 weights, frequency f(s) = max(1,
 * floor(w 4096 / W)), and symbol 31 takes what makes the frequencies sum to exactly 4096. The
 * rANS coder (rans.h) codes the symbols with these tables.
 *
 * Stream:
 *   1 byte   K, 1..CODEC_LATCODE_MAX_BUCKETS
 *   per plane, in order: 1 byte m (two's complement, -127..127), K bytes shapes (< 64)
 *   varint A (unsigned LEB128, minimal): the rANS bytes (rans.h stream, symbol i by state i & 1)
 *   A bytes  rANS: every value of every plane, planes in order, raster order within a plane
 *   E bytes  the escapes, one per escape symbol in coding order: the value itself (two's
 *            complement), which must lie more than 31 from m and in -127..127
 * Nothing may follow the escapes.
 */
#ifndef IMGCRYPTFS_CODEC_LATCODE_H
#define IMGCRYPTFS_CODEC_LATCODE_H

#include <stddef.h>
#include <stdint.h>

#define CODEC_LATCODE_SHAPES 64u
#define CODEC_LATCODE_MAX_BUCKETS 4u
#define CODEC_LATCODE_QMAX 127
#define CODEC_LATCODE_MAX_VALUES ((size_t)1 << 28)

/*
 * Code planes x height x width values q (each -127..127) into a new stream (*out, caller
 * frees). Tries 1 and 3 buckets and keeps the smaller. Returns 0, -EINVAL (a value out of
 * range, zero or too many values) or -ENOMEM.
 */
int codec_latcode_encode(const int8_t *q, uint32_t planes, uint32_t height, uint32_t width,
                         uint8_t **out, size_t *out_len);

/*
 * Decode buf[0..len) (untrusted) into q[planes x height x width]. Returns 0, -EINVAL (a
 * malformed or corrupt stream, trailing bytes) or -ENOMEM. On failure q holds unspecified
 * values.
 */
int codec_latcode_decode(const uint8_t *buf, size_t len, int8_t *q, uint32_t planes,
                         uint32_t height, uint32_t width);

#endif
