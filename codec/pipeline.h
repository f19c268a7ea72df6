/* SPDX-License-Identifier: MIT */
/*
 * The image pipeline: what the filesystem's conversion worker and the tools call to turn an
 * image file into its stored form and back. Encoding is split (codec/codec.h adapters) +
 * features (the autoencoder, nn/ae.h) + pixel coding (codec/pixel/pixcode.h, with the neural
 * predictor of codec/pixel/pixnet.h) + seal and write (the container, codec/store/container.h,
 * which specifies the stored bytes) + optionally decode and compare. Decoding is the reverse,
 * and the preview opens only the features.
 *
 * The trade-off: whole buffers in memory (the caller reads the file, the pipeline returns the
 * container), about three times the pixel stream at peak, against one call per file and no
 * partial state to clean up. Models are loaded on first use and kept for the pipeline's life.
 *
 * All functions take untrusted bytes; none aborts on them. Thread-safe on distinct buffers.
 */
#ifndef IMGCRYPTFS_CODEC_PIPELINE_H
#define IMGCRYPTFS_CODEC_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "codec/store/container.h"
#include "keys/keys.h"

/*
 * What encoding and decoding need: the per-filesystem container key, the autoencoders and the
 * coder models (those in the keyring's model list, plus the ones built into the library). Opaque;
 * shared by any number of threads (models are loaded on first use under an internal lock).
 */
struct codec_pipeline;

/* From an unlocked keyring: derives the container subkey and lists the keyring's
 * autoencoders and coder models; the ring must outlive the result (model bytes are read from
 * it). Encoding uses the autoencoder added last to the keyring, else the built-in one, and, in
 * the coder modes that use one (enum codec_pipeline_coder), the coder model (KEYS_MODEL_CODER)
 * added last, else the built-in one, else the fixed predictor 0. A model whose bytes this build
 * does not load (a later release's) is remembered as such: encoding then uses predictor 0 (a coder)
 * or no features (an autoencoder) rather than failing, and decoding a container that names it gives
 * -ENOENT. 0, -ENOMEM or an error of keys_ring_subkey. Free with codec_pipeline_free. */
int codec_pipeline_new(const struct keys_ring *ring, struct codec_pipeline **out);
/* From a container key the caller holds (not owned; it must outlive the result) and only the
 * built-in models: tests, fuzzing, and callers that keep their own subkeys. */
int codec_pipeline_new_key(const struct keys_key *container_key, struct codec_pipeline **out);
void codec_pipeline_free(struct codec_pipeline *pl);

/*
 * Which predictor codes the pixels (the container names the one it used; decoding needs no
 * choice). The neural predictor (codec/pixel/pixnet.h) uses the coder model codec_pipeline_new
 * picked; without one, predictor 0 codes in every mode. The trade-off, measured in README.md: the
 * neural predictor makes most slices a few percent smaller and codes several times slower.
 */
enum codec_pipeline_coder {
    CODEC_PIPELINE_CODER_DEFAULT = 0,  /* CODEC_PIPELINE_CODER_FIXED */
    CODEC_PIPELINE_CODER_FIXED = 1,    /* predictor 0 only: the fastest */
    CODEC_PIPELINE_CODER_NEURAL = 2,   /* the neural predictor, or predictor 0 where a sample
                                        * of the stripes says it codes smaller (pixcode.h, alt) */
    CODEC_PIPELINE_CODER_SMALLEST = 3, /* both; the smaller stream is kept, predictor 0 on a tie */
    CODEC_PIPELINE_CODER_NEURAL_ONLY = 4, /* the neural predictor for every image */
};

struct codec_pipeline_opts {
    unsigned threads;   /* pixel coder workers; 0 or 1: the calling thread */
    int coder;          /* enum codec_pipeline_coder; another value: -EINVAL */
    int no_features;    /* store no features (status CODEC_CT_FEATURES_DISABLED) */
    int verify;         /* decode the result and compare it with the input before returning */
    uint64_t max_bytes; /* memory budget (codec_pipeline_estimate); past it -EFBIG; 0: none */
};

/*
 * What encoding buf[0..len) takes at its peak, in bytes, estimated from the declared geometry
 * (codec_probe) before anything is decoded: about 24 bytes per byte of the planes (measured:
 * 380 MiB for a 4096 x 4096 8-bit PGM, 2.3 GiB for a 16384 x 16384 PNG of 255 KB) plus twice
 * the file. 0, -ENOTSUP (not an image), -EFBIG (beyond codec.h's limits), -EINVAL.
 */
#define CODEC_PIPELINE_PEAK_PER_BYTE 24
/* The budget the tools and the filesystem use unless told otherwise: fits a 2 GiB machine with
 * room for the rest (planes up to about 40 MiB: a 4096 x 4096 16-bit image, 80 frames of
 * 512 x 512 at 16 bits). */
#define CODEC_PIPELINE_BUDGET_DEFAULT ((uint64_t)1 << 30)
int codec_pipeline_estimate(const uint8_t *buf, size_t len, uint64_t *bytes);

/*
 * Encode the file buf[0..len) into a new container (*out, caller frees). opts may be NULL.
 * Returns 0; -ENOTSUP when the file is not an image an adapter stores exactly (the caller
 * keeps it on the generic path); -EFBIG past a limit; -ENOMEM; -EIO (no randomness); -EINVAL
 * (NULL argument); with verify, -EBADMSG if the container does not decode to the input (a
 * codec bug). Thread-safe on distinct buffers.
 */
int codec_pipeline_encode(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                          const struct codec_pipeline_opts *opts, uint8_t **out, size_t *out_len);

/*
 * Decode a container (untrusted bytes) into the original file (*out, caller frees), exactly
 * as it was encoded. threads: pixel decoder workers (0 or 1: the calling thread). Returns 0,
 * -EINVAL, -EBADMSG, -ENOENT, -EFBIG, -ENOMEM (see above). Thread-safe.
 */
int codec_pipeline_decode(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                          unsigned threads, uint8_t **out, size_t *out_len);

/*
 * Render the preview: open only the features (the pixel stream is neither decrypted nor
 * decoded) and write the autoencoder's reconstruction as a new PNG (*out, caller frees):
 * grey, grey + alpha, RGB or RGBA by the image's channels, 8- or 16-bit by its bits, the
 * geometry of the image's first frame, rows uncompressed (stored deflate blocks: fast to
 * write, about one byte per sample). The integer decoder is used when the model has one
 * (the same bytes on every machine). Returns 0, -ENODATA (the container has no features),
 * -ENOENT (its autoencoder is not known), -EINVAL, -EBADMSG, -ENOMEM. Thread-safe.
 */
int codec_pipeline_preview(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                           uint8_t **out, size_t *out_len);
/* The same, halved (2 x 2 box average) until the PNG is at most cap bytes: what fits in an
 * xattr value (64 KiB). -EFBIG if even one pixel does not fit. */
int codec_pipeline_preview_fit(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                               size_t cap, uint8_t **out, size_t *out_len);

/*
 * The original file's size, without decoding: what stat should show for a stored image, so
 * cheap: the structure and the CRCs of every chunk but the pixels' are checked, and of a
 * version 2 container only the small sealed meta is opened with pl's key (the size is
 * authenticated by it); a version 1 container's size is in its public header (authenticated only
 * by a later decode). 0, -EINVAL (not a container, NULL argument), -EBADMSG (a CRC fails, or the
 * meta does not open: a wrong key, a changed byte), -ENOMEM. Thread-safe.
 */
int codec_pipeline_plain_size(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                              uint64_t *size);

/*
 * What a stored file says of itself, from its head alone (codec_ct_open_head: the first
 * CODEC_CT_HEAD bytes): plaintext size, coder and autoencoder ids, geometry; what stat and the
 * filesystem's storage xattr need, at the cost of one small read. 0, -EINVAL (not a container),
 * -EBADMSG (a CRC, or the meta does not open). Thread-safe.
 */
int codec_pipeline_head_info(const struct codec_pipeline *pl, const uint8_t *head, size_t len,
                             struct codec_ct_info *info);

#endif
