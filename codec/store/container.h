/* SPDX-License-Identifier: MIT */
/*
 * The container: the stored form of an image file. It is a valid PNG, an 8-bit grey picture of
 * noise whose pixels are the sealed pixel stream, so that any viewer or backup tool that looks
 * at it sees an ordinary image; the rest rides in private ancillary chunks that viewers skip:
 * an authenticated header, the sealed autoencoder features (a preview without the pixel
 * stream), and the sealed envelope with the SHA-256 of the original bytes.
 *
 * The trade-off: a PNG wrapper costs about 60 bytes plus 5 bytes per 64 KiB of stored deflate
 * blocks and one filter byte per row, against a stored form that needs no special casing by
 * anything that copies, indexes or previews files. The pixel stream is ciphertext, so deflate
 * cannot shrink it; it is stored uncompressed (deflate "stored" blocks).
 *
 * Format (version 1). Integers in the header are little-endian; PNG's own fields big-endian.
 *
 *   offset  size  field
 *   0       8     PNG signature 89 50 4E 47 0D 0A 1A 0A
 *   8       25    IHDR chunk: width W, height H (below), bit depth 8, colour type 0 (grey),
 *                 compression 0, filter 0, interlace 0
 *   33      ...   "icHd" chunk: the header (CODEC_CT_HEADER bytes, below)
 *           ...   "icFt" chunk: the sealed features; present exactly when their length in
 *                 the header is non-zero
 *           ...   "icEv" chunk: the sealed envelope
 *           ...   one or more "IDAT" chunks, consecutive: a zlib stream (RFC 1950, any
 *                 compression) of H rows, each a filter byte 0 then W pixel bytes; the pixel
 *                 bytes, row by row, are the sealed pixel stream followed by zero padding up to
 *                 H x W bytes; the IDAT data together is at least P bytes long (the
 *                 stream is ciphertext, which no deflater shortens; this bounds what a decoder
 *                 allocates by the size of its input)
 *           12    IEND chunk; nothing may follow
 *
 * Every chunk is length (4, big-endian, at most 2^31 - 1), type (4), data, CRC-32 of type and
 * data (PNG's). No other chunk may appear, and none in another order. The lowercase first
 * letter of the private chunk types marks them ancillary (viewers may ignore them), the
 * lowercase second letter private, the uppercase third reserved-bit clear, and the lowercase
 * fourth safe to copy: an editor that keeps unknown chunks keeps them with the pixels.
 *
 * Geometry of the noise picture, from the sealed pixel stream's length P (>= 17):
 *   P <= 2^20:  W = ceil(sqrt(P))
 *   P >  2^20:  W = max(1024, ceil(P / 2^19))   (keeps H under libpng's default row limit)
 *   H = ceil(P / W). Any other W or H is refused.
 *
 * Header ("icHd" data, CODEC_CT_HEADER = 128 bytes):
 *
 *   offset  size  field
 *   0       4     magic "IMCT"
 *   4       1     version = 1
 *   5       1     image format (enum codec_format of the original: 1 PNM, 2 DICOM, 3 PNG)
 *   6       1     features status (enum codec_ct_features): 0 present, else why absent
 *   7       1     reserved, 0
 *   8       16    file id: 128 random bits, drawn fresh by every encode
 *   24      8     plaintext size: the original file's length, <= CODEC_MAX_FILE_BYTES
 *   32      16    autoencoder model id (first 16 bytes of the SHA-256 of its model file);
 *                 zero exactly when the features are absent
 *   48      16    coder model id: zero for the built-in fixed predictor (pixel stream
 *                 predictor 0); else the first 16 bytes of the SHA-256 of the coder model file
 *                 (codec/pixel/pixnet.h) whose neural predictor coded the pixels (predictor 1)
 *   64      4     image channels    (of the original, as codec_split gives them; for reports)
 *   68      4     image frames
 *   72      4     image height
 *   76      4     image width
 *   80      1     bits per stored sample, 8 or 16
 *   81      7     reserved, 0
 *   88      8     sealed features length F: 0 (absent) or 17 .. CODEC_CT_MAX_CHUNK
 *   96      8     sealed envelope length E: 17 .. CODEC_CT_MAX_CHUNK
 *   104     8     sealed pixel stream length P: 17 .. CODEC_CT_MAX_PIXELS
 *   112     16    reserved, 0
 *
 * The three lengths are the section table: each must equal the length of its chunk's data
 * (F and E) or the stream inside the IDAT rows (P).
 *
 * Sealing. Key: the filesystem's "container" subkey (keys_ring_subkey), then per file
 * keys_key_derive(subkey, "container file v1", file id) (AES-256-GCM). Each section is
 * ciphertext || 16-byte tag, sealed with
 *   nonce = 11 zero bytes || section kind (1 features, 2 envelope, 3 pixels)
 *   AAD   = the 128 header bytes || section kind (1 byte)
 * Why a nonce never repeats under one key: the per-file key exists for exactly one encode
 * (the file id is drawn fresh from the CSPRNG every time, and never taken from a caller), and
 * that encode seals each kind once. Two encodes share a key only if their random 128-bit ids
 * collide (about 2^-64 after 2^32 encodes, and then only across different files).
 * Why the AAD: it binds every section to this header, so a changed header field (size, model
 * id, geometry, section length), a section moved from another container (other id, other key)
 * or moved to another place of the same container (other kind, other nonce and AAD) fails
 * its tag.
 *
 * Section plaintexts:
 *   features (kind 1):  offset 0: coding (1 byte: 0 raw, 1 zlib of the raw bytes, 2 latent
 *                       coder), 1: reserved (3 bytes, 0), 4: raw length (4), then the (coded)
 *                       latent; the raw latent is channels, height, width, bits, depth, lc, lh,
 *                       lw (4 bytes each: struct nn_ae_latent of nn/ae.h) then
 *                       channels x lc x lh x lw int8 values; coding 2 keeps those 32 bytes raw
 *                       and codes the values with the latent coder (codec/pixel/latcode.h) as
 *                       channels x lc planes of lh x lw; the encoder writes coding 2, or 0
 *                       where that is not smaller (all three are read); only what the
 *                       autoencoder encoded from the first frame
 *   envelope (kind 2):  the SHA-256 of the original file (32), then the envelope (codec.h)
 *   pixels   (kind 3):  the pixel stream (codec/pixel/pixcode.h) of all planes and frames
 *
 * The image pipeline (codec/pipeline.h) fills and reads the sections; this header's functions
 * parse, open, seal and write the format. Decoding checks, and refuses: every CRC, the chunk order
 * and lengths, the header's fields and limits, the geometry, the filter bytes (all 0) and the
 * padding (all 0), every tag, the pixel stream against the header's geometry, the rebuilt file's
 * length and SHA-256. Errors: -EINVAL the bytes are not a container (signature, chunk layout,
 * header fields, limits), -EBADMSG a CRC, tag or digest fails (a wrong key, a changed byte),
 * -ENOENT a model the container names is not known, -EFBIG/-ENOMEM. On failure nothing is returned.
 */
#ifndef IMGCRYPTFS_CODEC_CONTAINER_H
#define IMGCRYPTFS_CODEC_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "keys/keys.h"

#define CODEC_CT_MAGIC "IMCT"
#define CODEC_CT_VERSION 1
#define CODEC_CT_HEADER 128
#define CODEC_CT_SUBKEY_LABEL "container"
#define CODEC_CT_FILE_LABEL "container file v1"
#define CODEC_CT_CHUNK_HEADER "icHd"
#define CODEC_CT_CHUNK_FEATURES "icFt"
#define CODEC_CT_CHUNK_ENVELOPE "icEv"
#define CODEC_CT_MAX_CHUNK ((uint64_t)0x7fffffff)              /* PNG's chunk limit */
#define CODEC_CT_MAX_PIXELS (((uint64_t)1 << 32) + (1u << 26)) /* sealed pixel stream */
#define CODEC_CT_MIN_SEALED (KEYS_TAG_BYTES + 1)
#define CODEC_CT_SQUARE_MAX ((uint64_t)1 << 20) /* square noise pictures up to this */
#define CODEC_CT_MAX_ROWS ((uint64_t)1 << 19)
#define CODEC_CT_MIN_FEATURE_DIM 16u   /* smaller images get no features */
#define CODEC_CT_IDAT_CHUNK (1u << 20) /* bytes of zlib stream per IDAT chunk when writing */

enum codec_ct_section {
    CODEC_CT_SECTION_FEATURES = 1,
    CODEC_CT_SECTION_ENVELOPE = 2,
    CODEC_CT_SECTION_PIXELS = 3,
};

/* Why a container has no features (header byte 6). */
enum codec_ct_features {
    CODEC_CT_FEATURES_PRESENT = 0,
    CODEC_CT_FEATURES_SMALL = 1,       /* an image side below CODEC_CT_MIN_FEATURE_DIM */
    CODEC_CT_FEATURES_UNSUPPORTED = 2, /* palette indices, or refused by the autoencoder */
    CODEC_CT_FEATURES_DISABLED = 3,    /* the encoder was asked not to make them */
    CODEC_CT_FEATURES_NO_MODEL = 4,    /* no autoencoder available */
};

/* The public header of a container, after its structure and CRCs are checked (nothing is
 * opened, so nothing here is authenticated yet). */
struct codec_ct_info {
    uint8_t file_id[KEYS_ID_BYTES];
    enum codec_format format;
    enum codec_ct_features features;
    uint64_t plain_size;
    uint8_t ae_id[KEYS_ID_BYTES], coder_id[KEYS_ID_BYTES];
    uint32_t channels, frames, height, width, bits;
    uint64_t features_bytes, envelope_bytes, pixels_bytes; /* sealed lengths */
    uint32_t png_width, png_height;
};

/* Whether buf starts like a container (PNG signature, IHDR, then an "icHd" chunk). */
int codec_ct_sniff(const uint8_t *buf, size_t len);

/* Parse and check the structure (every CRC) and header; 0 and *info, or -EINVAL/-EBADMSG.
 * Reads nothing sealed: enough for the plaintext size (info.plain_size) without a key. */
int codec_ct_info(const uint8_t *buf, size_t len, struct codec_ct_info *info);

/* ---- The format's parts, for the image pipeline (codec/pipeline.h) ------------------------ */

/* Sizes of the section plaintexts' fixed parts (see "Section plaintexts" above). */
#define CODEC_CT_DIGEST 32         /* envelope: SHA-256 of the original file */
#define CODEC_CT_FEATURES_PREFIX 8 /* features: coding, reserved, raw length */
#define CODEC_CT_FEATURES_RAW 0    /* features coding byte */
#define CODEC_CT_FEATURES_ZLIB 1
#define CODEC_CT_FEATURES_LATCODE 2
#define CODEC_CT_LATENT_FIELDS 8 /* channels, height, width, bits, depth, lc, lh, lw */

/* A parsed container: the header and where the sections are, pointing into the buffer given
 * to codec_ct_parse (which must outlive it). Nothing in it is authenticated yet. */
struct codec_ct_view {
    struct codec_ct_info info;
    const uint8_t *hdr;     /* the CODEC_CT_HEADER header bytes (the sections' AAD) */
    const uint8_t *ft, *ev; /* sealed features (NULL when absent) and envelope */
    size_t ft_len, ev_len;
    size_t idat_start, idat_end; /* the IDAT chunks, whole, within the buffer */
    uint64_t idat_bytes;         /* their data together */
    uint32_t png_w, png_h;
};

/* Parse and check buf as codec_ct_info does; check_idat 0 skips the IDAT chunks' CRCs (a
 * preview reads no pixels). 0, -EINVAL or -EBADMSG. */
int codec_ct_parse(const uint8_t *buf, size_t len, int check_idat, struct codec_ct_view *v);

/* The per-file key of a parsed container, from the container subkey (*out, keys_key_free). */
int codec_ct_file_key(const struct keys_key *container_key, const struct codec_ct_view *v,
                      struct keys_key **out);

/* Open one section of the parsed container buf (the pixels: inflated from the IDAT rows, the
 * filter bytes and padding checked) into a new buffer (*out, *out_len; the caller wipes and
 * frees it). 0, -ENODATA (no features), -EINVAL, -EBADMSG (wrong key, a changed byte: the
 * output is wiped), -EFBIG, -ENOMEM. Thread-safe. */
int codec_ct_open_section(const struct keys_key *file_key, const uint8_t *buf,
                          const struct codec_ct_view *v, enum codec_ct_section kind, uint8_t **out,
                          size_t *out_len);

/* What codec_ct_write stores: of info, the fields format, features, plain_size, ae_id,
 * coder_id, channels, frames, height, width and bits (the file id, section lengths and PNG
 * geometry are made by the writer); and the three section plaintexts (not owned, not
 * changed; features NULL when absent). */
struct codec_ct_plain {
    struct codec_ct_info info;
    const uint8_t *features, *envelope, *pixels;
    size_t features_len, envelope_len, pixels_len;
};

/* Draw a fresh file id, seal the sections under its per-file key and write the container
 * (*out, caller frees). 0, -EINVAL, -EFBIG (a section past its limit), -EIO (no randomness),
 * -ENOMEM. Thread-safe. */
int codec_ct_write(const struct keys_key *container_key, const struct codec_ct_plain *in,
                   uint8_t **out, size_t *out_len);

#endif
