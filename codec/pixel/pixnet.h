/* SPDX-License-Identifier: MIT */
/*
 * The neural predictor of the pixel coder (pixcode.h predictor id 1): an integer-exact network
 * that predicts each pixel of an interleaved pass from the pixels of the passes before it, as a
 * mean and a scale context. The network runs on nn's integer path (nn_qforward), so encoder and
 * decoder compute the same bits on every machine, thread count and BLAS build.
 *
 * The trade-off against the raster predictor 0: a pass is predicted all at once (a batched
 * network call per pass instead of a branchy loop per pixel), and three pixels in four are
 * interpolated between known neighbours on both sides rather than extrapolated from above and
 * left; the price is the coarse base grid, which is predicted from neighbours 8 pixels away.
 *
 * Measured, the shipped model (models/coder-default.pixnet, made by scripts/train_coder.sh: two
 * sets of two networks 15-32-32-32-2, 60 x 400 steps, set 1 trained on the 16-bit slices only;
 * bits per sample, predictor 0 -> 1, stream version 2): held-out mricron slices, 8-bit median
 * 2.133 -> 1.986 (smaller on 36 of 36), 16-bit 3.002 -> 2.868 (18 of 18; with one set for
 * both, as model version 1 had, 2.905: 1.3% more); the PNGs of tests/data: axial slices 9-10%
 * smaller, the coronal 512 slice 2% and the sagittal 256 one 4% larger. A smaller model (two
 * hidden layers of 16) was within 2% of predictor 0 and is not shipped; a wider one (hidden
 * layers of 48) gained 0.3-0.5% on the 16-bit slices, for a third more arithmetic. With the
 * features and outputs vectorised (pixnet.c) it codes in two to three times predictor 0's time
 * (README.md has the figures). The pipeline's default mode (pipeline.h, "neural") codes with it
 * unless predictor 0, tried on the same sample of stripes, estimates smaller (pixcode.h, alt): so
 * no image is stored much larger than predictor 0 would store it. Where the bits go (the earlier
 * 16-wide model; ideal static code length per pass and context, coronal 512 slice; the share of the
 * pixels -> bits per sample): base grid 1.6% -> 4.0, D(4) 1.6%
 * -> 3.2, C(4) 3% -> 2.6, D(2) 6% -> 2.2, C(2) 12.5% -> 1.6, D(1) 25% -> 1.6, C(1) 50% -> 1.0: the
 * coarse passes, a quarter of the pixels, take 37% of the bits. Even with a separate table per pass
 * and context and no table cost, it codes at 1.4265 (predictor 0: 1.427 as stored) and the sagittal
 * 256 slice at 2.01 (1.973): the loss there is the prediction, not the coding. Tried on top of that
 * model, none measurably better: a scale context mixing the network's log-scale with the nearest
 * neighbours' actual residuals (+-0.3% on the held-out slices); a per-pass scale offset adapted row
 * by row from the coded residuals (2-4% worse); stripes of 8k+1 rows so the base grid covers the
 * stripe's last row (no gain); on the shipped model, a bias correction per pass and scale context
 * adapted row by row as in JPEG-LS (2-13% worse in a simulation on the held-out slices: the
 * network's mean is not biased, and the correction follows noise).
 *
 * Coding order within a stripe of R rows and W columns (rows and columns counted from the
 * stripe's first row and column; "(dy, dx)" is the pixel at row y + dy, column x + dx):
 *   1. the base grid, y % 8 == 0 and x % 8 == 0, in raster order, one pixel per group;
 *   2. for s = 4, 2, 1:
 *      pass D(s): y % 2s == s and x % 2s == s, one group, raster order;
 *      pass C(s): (y % 2s, x % 2s) == (0, s) or (s, 0), one group, raster order.
 *   Before pass D(s) every pixel with y % 2s == 0 and x % 2s == 0 is known; before pass C(s)
 *   also those of D(s).
 *
 * Base grid rule (fixed, no network), with the neighbours at distance 8 on the grid,
 * W = (0, -8), N = (-8, 0), NW = (-8, -8), NE = (-8, +8), replaced where they fall outside the
 * stripe as predictor 0 does (pixcode.h): in the grid's first row N, NW, NE = W; in its first
 * column W = NW = N; in its last column NE = N; the first pixel has all 0. Mean = the median
 * edge detector of W, N, NW (JPEG-LS); context = min(X - 1, q(|W - NW| + |N - NW| + |NE - N|)),
 * q(0) = 0, q(1) = 1, q(d) = 2 (bitlen(d) - 1) + (second highest bit of d) for d >= 2.
 *
 * Network passes. Offsets (dy, dx) of the nearest four n0..n3 and of the ring r0..r7:
 *   D(s): n = (-s,-s) (-s,+s) (+s,-s) (+s,+s)
 *         r = (-3s,-s) (-3s,+s) (-s,-3s) (-s,+3s) (+s,-3s) (+s,+3s) (+3s,-s) (+3s,+s)
 *   C(s): n = (-s,0) (0,-s) (0,+s) (+s,0)
 *         r = (-2s,-s) (-2s,+s) (-s,-2s) (-s,+2s) (+s,-2s) (+s,+2s) (+2s,-s) (+2s,+s)
 *   For a C(s) pixel with y % 2s == s (its vertical neighbours are the older grid pixels) the
 *   offsets are transposed ((dy, dx) -> (dx, dy)), so that the network always sees the older
 *   pixels in the same places. A neighbour outside the stripe is taken at the offset mirrored
 *   through the pixel: dy -> -dy when row y + dy is outside, dx -> -dx when column x + dx is
 *   (both sets are symmetric, so the mirrored pixel is known); if that is outside too, it is
 *   "absent". n0 of D(s) and n1 of C(s) (after the transposition) are never absent. With the
 * present nearest values summed to S over k of them: an absent nearest neighbour counts as floor((S
 * + k/2) / k); then ref = floor((n0 + n1 + n2 + n3 + 2) / 4) and an absent ring pixel counts as
 * ref. With d_i = value_i - ref (nearest first, then ring): u   = 1 + floor((2 (|d0| + .. + |d3|) +
 * |d4| + .. + |d11|) / 8) rec = floor(2^20 / u) f_i = clamp(floor((d_i rec + 2^15) / 2^16), -2047,
 * 2047)      i = 0..11, about 16 d_i / u f12 = L(u), f13 = 16 log2(s), f14 = 16 bitlen(maxval) with
 * L(u) = floor(16 log2 u) computed as 16 (bitlen(u) - 1) + LT[m], m the four bits below the highest
 * bit of u (zero-filled), LT = {0,1,2,3,5,6,7,8,9,10,11,12,12,13,14,15} (floor(16 log2(1 + m /
 * 16))). The 15 features, as int16, are the network's input (one pixel = one column of a 1 x 15 x 1
 * x n tensor); its two outputs q_mu, q_ls (int16) give mean = clamp(ref + floor((q_mu u MU +
 * 2^(MS-1)) / 2^MS), 0, maxval) T    = floor((q_ls LM + 2^(LS-1)) / 2^LS) + L(u)        (16 log2 of
 * the scale) ctx  = clamp(floor((T + C0) / 8), 0, X - 1)             (two contexts per octave) with
 * MU, MS, LM, LS and C0 the pass's constants from the model file.
 *
 * Model file ("coder model"; its id is the first 16 bytes of its SHA-256), version 1 or 2.
 * Integers little-endian, signed ones two's complement. A version 1 file holds one set of two
 * networks; version 2 holds two sets: set 0 predicts the stripes of planes of at most
 * CODEC_PIXNET_WIDE values (maxval < 256: 8-bit images, and deeper ones with few levels), set 1
 * the others (12- and 16-bit scans), each trained on its own kind of image (with one set for
 * both, the held-out 16-bit slices code 1.3% larger, some of them above JPEG-LS). Network n of a
 * set is the one of passes D (n = 0) or C (n = 1); the file's network i is network i % 2 of set i
 * / 2.
 *
 *   offset  size  field
 *   0       4     magic "IMPN"
 *   4       1     version: 1 or 2
 *   5       1     networks N: 2 (version 1) or 4 (version 2)
 *   6       1     scale contexts X, 1..CODEC_PIXCODE_MAX_CTX
 *   7       1     features = 15
 *   8       16 N  per network, 16 bytes:
 *                   s32 MU (|MU| < 2^24), u8 MS (1..40), u8 LS (1..40), 2 reserved 0,
 *                   s32 LM (|LM| < 2^24), s32 C0 (|C0| < 2^20)
 *   8+16N   ...   per network: u32 length B (1..CODEC_PIXNET_MAX_NET), then B bytes: an nn
 *                 quantised model file (nn/modelfile.c) with architecture id
 *                 CODEC_PIXNET_ARCH, 15 input channels, 2 output channels, and only 1x1
 *                 convolutions (stride 1, no padding), ReLU and LeakyReLU layers
 *   Nothing may follow the last network.
 */
#ifndef IMGCRYPTFS_CODEC_PIXNET_H
#define IMGCRYPTFS_CODEC_PIXNET_H

#include <stddef.h>
#include <stdint.h>

#include "codec/pixel/pixcode.h"

#define CODEC_PIXNET_MAGIC "IMPN"
#define CODEC_PIXNET_VERSION 2
#define CODEC_PIXNET_ID 1 /* the predictor id in the pixel stream */
#define CODEC_PIXNET_ARCH "pixnet-v1"
#define CODEC_PIXNET_NETS 2 /* networks of a set: passes D and C */
#define CODEC_PIXNET_MAX_SETS 2
#define CODEC_PIXNET_WIDE 256u /* planes with maxval at or above: set 1 */
#define CODEC_PIXNET_FEATURES 15
#define CODEC_PIXNET_HEADER 40          /* of a version 1 file */
#define CODEC_PIXNET_MAX_NET (1u << 20) /* bytes of one network's file */
#define CODEC_PIXNET_BASE 8u            /* base grid step */

/* Pass types, the networks' indices. */
enum codec_pixnet_pass {
    CODEC_PIXNET_PASS_D = 0,
    CODEC_PIXNET_PASS_C = 1,
};

/* A loaded coder model. Opaque; read-only, shared by any number of threads. */
struct codec_pixnet;

/*
 * Parse a model file buf[0..len) (untrusted: every field checked). *out owned by the caller
 * (codec_pixnet_free); buf is not kept. Returns 0, -EINVAL (malformed, not a coder model),
 * -EFBIG, -EBADMSG (a network's checksum), -ENOMEM.
 */
int codec_pixnet_load(const uint8_t *buf, size_t len, struct codec_pixnet **out);
void codec_pixnet_free(struct codec_pixnet *m);

/*
 * The instruction set of the predictor's vectorised loops (features, means and contexts); the
 * best the CPU has unless set. Every choice gives the same bits (tests compare them). Set it
 * before coding with m, not while m is in use. Returns 0, -EINVAL, -ENOTSUP (not on this CPU).
 */
enum codec_pixnet_isa {
    CODEC_PIXNET_ISA_AUTO = 0,
    CODEC_PIXNET_ISA_C = 1,
    CODEC_PIXNET_ISA_AVX2 = 2,
    CODEC_PIXNET_ISA_AVX512 = 3,
};
int codec_pixnet_set_isa(struct codec_pixnet *m, enum codec_pixnet_isa isa);

/* The predictor (id CODEC_PIXNET_ID) that codes with m; valid while m lives. */
const struct codec_pixcode_predictor *codec_pixnet_predictor(const struct codec_pixnet *m);

/* The coder model built into the library (models/coder-default.pixnet). */
const uint8_t *codec_pixnet_default_bytes(size_t *len);

/* The per-network constants of the file header. */
struct codec_pixnet_consts {
    int32_t mu_mult, ls_mult, ctx_offset;
    uint8_t mu_shift, ls_shift;
};

struct nn_qmodel;
/*
 * Write a model file (version 1: one set) from two quantised networks (index enum
 * codec_pixnet_pass) and their constants. *buf owned by the caller. Returns 0, -EINVAL (a
 * network of the wrong shape or layers, constants out of range), -ENOMEM.
 */
int codec_pixnet_save(const struct nn_qmodel *const nets[CODEC_PIXNET_NETS],
                      const struct codec_pixnet_consts consts[CODEC_PIXNET_NETS], uint8_t contexts,
                      uint8_t **buf, size_t *len);

/*
 * One version 2 file from two version 1 files with the same contexts: narrow's networks become
 * set 0, wide's set 1, byte for byte (so narrow codes exactly as before). *buf owned by the
 * caller. Returns 0, -EINVAL (either not a valid version 1 model, contexts differ), -ENOMEM.
 */
int codec_pixnet_merge(const uint8_t *narrow, size_t nlen, const uint8_t *wide, size_t wlen,
                       uint8_t **buf, size_t *len);

/*
 * Training samples: run the coding order over one plane of packed values (0..maxval, row-major
 * h x w, cut into stripes of stripe_rows as the coder does) and hand every network pixel to
 * fn: its pass type, features (CODEC_PIXNET_FEATURES int16), ref, u and value. fn returns 0 to
 * go on, anything else stops and is returned. Returns 0, -EINVAL or fn's value.
 */
typedef int (*codec_pixnet_sample_fn)(void *arg, enum codec_pixnet_pass pass, const int16_t *f,
                                      int32_t ref, int32_t u, int32_t value);
int codec_pixnet_samples(const uint16_t *v, uint32_t h, uint32_t w, uint32_t maxval,
                         uint32_t stripe_rows, codec_pixnet_sample_fn fn, void *arg);

/*
 * Histogram packing for training, as the coder's value-set packing: maps the values a plane
 * uses (8- or 16-bit samples, n of them) to 0..K-1 in out; *maxval = K - 1. 0, -EINVAL,
 * -ENOMEM.
 */
int codec_pixnet_pack(const void *plane, uint32_t bits, size_t n, uint16_t *out, uint32_t *maxval);

/* Training (codec/pixnet_train.c). */
struct codec_pixnet_train_opts {
    uint32_t hidden;   /* width of the hidden layers */
    uint32_t layers;   /* hidden layers, 1..4 */
    uint32_t epochs;   /* 0: the untrained (random) network, still a valid model */
    uint32_t steps;    /* mini-batches per epoch */
    uint32_t batch;    /* samples per mini-batch */
    uint32_t samples;  /* pool size per pass type (reservoir sampling) */
    float lr, lr_end;  /* Adam step size, decayed geometrically */
    uint64_t seed;     /* everything random (initialisation, sampling) comes from it */
    uint32_t contexts; /* scale contexts X of the model */
    /* Called after each epoch of network `net` with the mean training bits per sample and
     * those of the held-out sixteenth of the pool (float model). */
    void (*progress)(void *arg, unsigned net, uint32_t epoch, double train_bits,
                     double heldout_bits);
    void *progress_arg;
};
void codec_pixnet_train_defaults(struct codec_pixnet_train_opts *o);
/*
 * Train a coder model on imgs[0..n) (every plane, value-set packed as the coder packs them)
 * and write its file into *model (caller frees). Single-threaded apart from OpenBLAS (set its
 * threads with nn_set_threads). Returns 0, -EINVAL (bad options, too few samples), -ENOMEM.
 */
int codec_pixnet_train(const struct codec_image *const *imgs, size_t n,
                       const struct codec_pixnet_train_opts *opts, uint8_t **model, size_t *len);

/* Fixed-point log: floor(16 log2 u) for u >= 1 as the format defines L(u). */
int32_t codec_pixnet_log16(uint32_t u);

#endif
