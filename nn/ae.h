/* SPDX-License-Identifier: MIT */
/*
 * nn_ae: the autoencoder whose quantised latent is kept (sealed) next to every stored image and
 * gives its preview. Float encoder and decoder built from nn.h layers, a factorised entropy
 * model of the latent (one discretised logistic per latent channel, learned location and scale)
 * that measures its rate, training on image crops, quality metrics, and the model file.
 *
 * Geometry. Each image channel is coded as its own plane (3- and 4-channel images go through a
 * YCoCg transform of their first three channels first, so a grey image stored as RGB costs
 * about one plane). A plane is normalised to [0, 1] by its depth: the bit length of the
 * largest sample of the image (so 12-bit data in 16-bit words is scaled by 4095, not 65535),
 * padded by edge replication to a multiple of NN_AE_FACTOR, and mapped to a grid of
 * latent-channels x ceil(H / 16) x ceil(W / 16) integers in [-NN_AE_QMAX, NN_AE_QMAX].
 *
 * Architecture (config fields in brackets; conv KxK/S is kernel K, stride S):
 *   encoder  conv 8x8/4 1->[w1], LReLU, conv 4x4/2 ->[w2], LReLU, conv 4x4/2 ->[w3], LReLU,
 *            conv 3x3 ->[latent]                                                 (1/16 scale)
 *   decoder  conv 3x3 [latent]->[w3], LReLU, [nres] x residual{conv 3x3, LReLU, conv 3x3},
 *            tconv 4x4/2 ->[w2], LReLU, tconv 4x4/2 ->[w1], LReLU, conv 3x3 ->[w1], LReLU,
 *            tconv 8x8/4 ->1                                                      (full scale)
 * Padding (kernel - stride) / 2, so every stage scales by exactly its stride. LReLU slope 0.1;
 * the encoder sees x - 1/2 and the decoder's output is x - 1/2. Nothing runs at full
 * resolution but the first and the last layer, which touch each pixel 4 times.
 *
 * Rate. The ideal code length of a latent under the prior: value q of channel c costs
 * -log2 P(q), P the mass of [q - 0.5, q + 0.5] under a logistic of location mu_c and scale
 * exp(ls_c), the end values +-NN_AE_QMAX taking the tails (the convention of nn_loss_bits).
 * Bits per pixel are that total over the image's height x width.
 *
 * Threads: an autoencoder is read-only after training or loading; encode, decode, rate and the
 * metrics may run on any number of threads at once (each call plans its own nn context for
 * the image's shape). Training modifies it and must run alone. OpenBLAS threads: nn_set_threads.
 *
 * Integer decoder. Beside the float decoder (training, nn_ae_decode) a model may hold its
 * post-training quantisation (nn_quantize in nn.h): int8 weights, int16 activations, integer
 * requantisation, so that nn_ae_decode_int gives the same samples on every machine, compiler,
 * SIMD width and thread count; this is the decoder the coder and the previews use. Its input
 * scale is exactly 1, so the integer input is the latent itself; its activation ranges come from
 * latents of training images (nn_ae_quantize). From the integer output q (out scale s = m 2^-k,
 * m < 2^24 a whole number, 1 <= k <= NN_AE_QK_MAX) sample values are made in integers only:
 * F = q m + 2^(k-1) stands for the plane value (x + 1/2) 2^k; for 3 and 4 channels the YCoCg
 * transform is undone on the F (G = Y + Cg', R = Y - Cg' + Co', B = Y - Cg' - Co', with
 * Co' = q_Co m and Cg' = q_Cg m); a sample is min(P, floor((F P + 2^(k-1)) / 2^k)), 0 for F <= 0,
 * P = 2^depth - 1.
 *
 * Model file (version 2; integers little-endian, floats IEEE-754 binary32 little-endian):
 *
 *   offset      size  field
 *   0           4     magic "IMAE"
 *   4           4     version = 2 (version 1 files, without the fields marked v2, still load)
 *   8           4     config words K = 8
 *   12          4K    config: latent, w1, w2, w3, nres, qmax (= NN_AE_QMAX), 0, 0
 *   12+4K       8     parameter count P; must equal the count the config implies
 *   20+4K       4P    parameters: encoder (nn_model_params order), decoder, then the prior:
 *                     mu[latent], ls[latent]
 *   20+4K+4P    8     v2: byte count Q of the integer decoder, 0 when the model has none
 *   28+4K+4P    Q     v2: the integer decoder as a quantised model file (nn.h, nn/modelfile.c),
 *                     architecture id NN_AE_QDEC_ARCH; its layers must be the float decoder's,
 *                     its input scale exactly 1.0, its output scale within the limits above
 *   28+4K+4P+Q  4     CRC-32 (ISO-HDLC, the CRC of zlib and PNG) of all the bytes before it
 *   32+4K+4P+Q        end of file; nothing may follow
 *
 * Why a container of its own rather than nn/modelfile.c's format for the float models: the
 * file names an architecture by its five config words, and the loader builds that one
 * architecture and nothing else, so a file cannot hand the encoder or decoder an arbitrary
 * layer list; the prior, which is not a layer, rides along under the same CRC; and the float
 * parameters stay one flat array, whose count the config fixes before anything is allocated.
 * The integer decoder, which has no such formula (scales, multipliers and tables come from
 * calibration), is kept in the engine's own format and checked against the float decoder's
 * layers.
 *
 * Limits: 1 <= latent <= NN_AE_MAX_LATENT, 1 <= w1, w2, w3 <= NN_AE_MAX_WIDTH,
 * nres <= NN_AE_MAX_RES; every parameter finite; Q <= NN_FILE_MAX. Anything else is refused
 * (-EBADMSG for a bad CRC, magic or size; -EINVAL for a config outside the limits or an integer
 * decoder that is malformed or does not fit the float one).
 */
#ifndef IMGCRYPTFS_NN_AE_H
#define IMGCRYPTFS_NN_AE_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

#define NN_AE_FACTOR 16 /* down-sampling factor of the latent grid, each axis */
#define NN_AE_QMAX 127  /* latent values lie in [-QMAX, QMAX] */
#define NN_AE_MAX_LATENT 64
#define NN_AE_MAX_WIDTH 256
#define NN_AE_MAX_RES 8
#define NN_AE_MAX_CHANNELS 4 /* image channels */
#define NN_AE_MAGIC "IMAE"
#define NN_AE_VERSION 2
#define NN_AE_QDEC_ARCH "ae-decoder-int-v1"
#define NN_AE_QK_MAX 44 /* output scale 2^-k: F P stays below 2^63 */
#define NN_AE_CONFIG_WORDS 8

struct nn_ae_config {
    uint32_t latent;     /* latent channels per image plane */
    uint32_t w1, w2, w3; /* widths at 1/4, 1/8 and 1/16 scale */
    uint32_t nres;       /* residual blocks of the decoder at 1/16 scale */
};

/* An image: planar samples, channel c, row y, column x at (c * height + y) * width + x, of type
 * uint8_t (bits 8) or uint16_t (bits 16, host order). */
struct nn_ae_image {
    uint32_t channels; /* 1..NN_AE_MAX_CHANNELS */
    uint32_t height, width;
    uint32_t bits; /* 8 or 16 */
    void *pixels;
};

/* A quantised latent and what the decoder needs to rebuild the image's geometry. */
struct nn_ae_latent {
    uint32_t channels, height, width, bits; /* of the image */
    uint32_t depth;                         /* 1..bits: samples were scaled by 2^depth - 1 */
    uint32_t lc, lh, lw;                    /* latent channels per plane, grid height, width */
    int8_t *q;                              /* channels x lc x lh x lw values */
};

/* The autoencoder: config, encoder and decoder models, prior. Opaque. */
struct nn_ae;

/* The configuration of the shipped model. */
void nn_ae_default_config(struct nn_ae_config *cfg);

/* A new autoencoder with weights initialised from seed (deterministic). Returns 0 and *out
 * (caller frees with nn_ae_free), -EINVAL (config outside the limits) or -ENOMEM. */
int nn_ae_new(const struct nn_ae_config *cfg, uint64_t seed, struct nn_ae **out);
void nn_ae_free(struct nn_ae *ae);
const struct nn_ae_config *nn_ae_get_config(const struct nn_ae *ae);
/* Parameters in all (encoder, decoder, prior). */
size_t nn_ae_param_count(const struct nn_ae *ae);
/* The two float models, for inspection and for the integer path (valid while ae lives). */
struct nn_model *nn_ae_encoder(struct nn_ae *ae);
struct nn_model *nn_ae_decoder(struct nn_ae *ae);
/* The prior: mu[latent] then ls[latent] (valid while ae lives). */
const float *nn_ae_prior(const struct nn_ae *ae);

/*
 * Encode an image. Returns 0 and *out (caller frees with nn_ae_latent_free), -EINVAL (bad
 * image: channels, bits, zero size, a sample above 65535 or 255), -EFBIG (beyond NN_MAX_*
 * limits) or -ENOMEM. Allocates the context for the image's shape on each call.
 */
int nn_ae_encode(const struct nn_ae *ae, const struct nn_ae_image *img, struct nn_ae_latent **out);
/* Free a latent, wiping its values first (they describe the image); NULL is accepted. */
void nn_ae_latent_free(struct nn_ae_latent *lat);

/* Decode a latent into a new image of its geometry (the preview). Returns 0 and *out (caller
 * frees with nn_ae_image_free), -EINVAL (latent not matching the model or its own geometry),
 * -EFBIG or -ENOMEM. */
int nn_ae_decode(const struct nn_ae *ae, const struct nn_ae_latent *lat, struct nn_ae_image **out);
/* Free an image from nn_ae_decode (struct and pixels); NULL is accepted. */
void nn_ae_image_free(struct nn_ae_image *img);

/*
 * Quantise the decoder for integer-exact decoding (replacing any integer decoder the model
 * had). Calibration latents: the float encoder's rounded latents of up to 64 planes of
 * 256 x 256 taken evenly from the images (their centres, edge-replicated where smaller), fed
 * with input scale 1; activation ranges are the maxima seen. Deterministic for a given model
 * and images (with one OpenBLAS thread, like training). Returns 0, -EINVAL (no images, a bad
 * image, an output scale outside the limits above), -EFBIG or -ENOMEM. Not concurrent with
 * other calls on ae.
 */
int nn_ae_quantize(struct nn_ae *ae, const struct nn_ae_image *imgs, size_t n);
/* The integer decoder, or NULL when the model has none (valid while ae lives). */
const struct nn_qmodel *nn_ae_int_decoder(const struct nn_ae *ae);

/*
 * Decode a latent with the integer decoder: bit-identical on every machine, thread count and
 * BLAS build (no BLAS, no floating point). Plans an integer decoding context for the latent's
 * geometry (nn_ae_qdec_new below), runs it once and frees it. Reentrant like nn_ae_decode.
 * Returns 0 and *out (free with nn_ae_image_free), -ENOENT (the model has no integer decoder),
 * -EINVAL, -EFBIG or -ENOMEM.
 */
int nn_ae_decode_int(const struct nn_ae *ae, const struct nn_ae_latent *lat,
                     struct nn_ae_image **out);

/* A planned integer decoder for images of one geometry: all its memory is allocated by
 * nn_ae_qdec_new, so that nn_ae_qdec_run allocates nothing and cannot fail for memory (previews
 * of a series of equal slices). Opaque; one thread at a time; ae must outlive it. */
struct nn_ae_qdec;
/* Plan for latents of channels x height x width images. 0 and *out (free with
 * nn_ae_qdec_free), -ENOENT (no integer decoder), -EINVAL, -EFBIG or -ENOMEM. */
int nn_ae_qdec_new(const struct nn_ae *ae, uint32_t channels, uint32_t height, uint32_t width,
                   struct nn_ae_qdec **out);
void nn_ae_qdec_free(struct nn_ae_qdec *d);
/* Decode lat (of the planned geometry) into img, which the caller provides: the latent's
 * channels, height, width and bits, and pixels to hold them. Returns 0 or -EINVAL. */
int nn_ae_qdec_run(struct nn_ae_qdec *d, const struct nn_ae_latent *lat, struct nn_ae_image *img);

/* Ideal code length in bits of the latent under the model's prior. Returns 0 or -EINVAL. */
int nn_ae_rate(const struct nn_ae *ae, const struct nn_ae_latent *lat, double *bits);

/*
 * Quality of `b` against the reference `a` (same geometry and bits), on the value range
 * L = 2^depth - 1, depth the bit length of a's largest sample. PSNR in dB over all samples
 * (INFINITY when equal); SSIM is the mean over channels of the mean SSIM of the 11x11
 * Gaussian windows (sigma 1.5) that fit inside the image, K1 0.01, K2 0.03 (an image smaller
 * than 11 in either axis uses one window covering all of it). Return 0 or -EINVAL/-ENOMEM.
 */
int nn_ae_psnr(const struct nn_ae_image *a, const struct nn_ae_image *b, double *db);
int nn_ae_ssim(const struct nn_ae_image *a, const struct nn_ae_image *b, double *ssim);

/* Training progress, reported after every step. */
struct nn_ae_progress {
    uint32_t epoch, epochs; /* epoch counts from 1 */
    uint32_t step, steps;   /* step within the epoch, from 1 */
    double loss;            /* this step: distortion + lambda * rate */
    double mse;             /* this step, normalised samples */
    double bpp;             /* this step, latent bits per pixel (noisy relaxation) */
    double lambda;
    double epoch_loss, epoch_mse, epoch_bpp; /* means over the epoch so far */
};

struct nn_ae_train_opts {
    uint32_t epochs;  /* >= 1 */
    uint32_t steps;   /* steps per epoch; 0: enough crops to cover the data's area once */
    uint32_t batch;   /* crops per step, >= 1 */
    uint32_t crop;    /* crop side, a multiple of NN_AE_FACTOR */
    float lr, lr_end; /* Adam step size, decayed geometrically from lr to lr_end */
    float lambda;     /* initial rate weight (loss = mse + lambda * bpp) */
    float target_bpp; /* > 0: lambda adapts so the rate stays at this target; 0: fixed */
    uint64_t seed;    /* crops, flips, noise */
    /* Called after each step (may be NULL); a non-zero return stops training (-ECANCELED). */
    int (*progress)(void *arg, const struct nn_ae_progress *p);
    void *arg;
};

/* Sensible defaults for the options above (epochs 1, seed 1, no progress callback). */
void nn_ae_train_defaults(struct nn_ae_train_opts *o);

/*
 * Train ae on random crops of the images (edge-replicated where an image is smaller than a
 * crop, random flips), with Adam: decoder on the rounded latent (straight-through gradient),
 * rate on the latent plus uniform noise. Drops the integer decoder, which no longer matches:
 * call nn_ae_quantize afterwards. Deterministic for a given model, data, options and
 * OpenBLAS thread count of 1. Returns 0, -EINVAL (no images, bad options), -ECANCELED or
 * -ENOMEM.
 */
int nn_ae_train(struct nn_ae *ae, const struct nn_ae_image *imgs, size_t n,
                const struct nn_ae_train_opts *o);

/* Serialise into a new buffer (caller frees) in the model file format. 0 or -ENOMEM. */
int nn_ae_save(const struct nn_ae *ae, uint8_t **buf, size_t *len);
/* Load from the bytes of a model file (untrusted). 0, -EBADMSG, -EINVAL, -ENOMEM. */
int nn_ae_load(const uint8_t *buf, size_t len, struct nn_ae **out);
/* The same through a file; the file is written to PATH.tmp and renamed. 0 or -errno. */
int nn_ae_save_file(const struct nn_ae *ae, const char *path);
int nn_ae_load_file(const char *path, struct nn_ae **out);
/* The shipped model, built into the library (models/ae-default.params). */
int nn_ae_load_default(struct nn_ae **out);
/* The bytes of the shipped model file. */
const uint8_t *nn_ae_default_bytes(size_t *len);

#endif
