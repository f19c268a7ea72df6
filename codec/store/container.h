/* SPDX-License-Identifier: MIT */
/*
 * The container: the stored form of an image file. It is a valid PNG, an 8-bit grey picture of
 * noise whose pixels are the sealed pixel stream, so that any viewer or backup tool that looks
 * at it sees an ordinary image; the rest rides in private ancillary chunks that viewers skip:
 * a public header (authenticated by every section's tag), the sealed meta (what the image is),
 * the sealed autoencoder features (a preview without the pixel stream), and the sealed envelope
 * with the SHA-256 of the original bytes.
 *
 * The trade-off: a PNG wrapper costs about 60 bytes plus 5 bytes per 64 KiB of stored deflate
 * blocks and one filter byte per row, against a stored form that needs no special casing by
 * anything that copies, indexes or previews files. The pixel stream is ciphertext, so deflate
 * cannot shrink it; it is stored uncompressed (deflate "stored" blocks). A second trade-off:
 * the sections are padded to coarse buckets (below), about 6% more bytes, against lengths that
 * no longer tell the DICOM header's length or the image's compressibility.
 *
 * Two versions. The writer writes version 2, whose public header holds only what a reader
 * needs before it opens anything (file id, section lengths) and seals the rest (format,
 * geometry, plaintext size, model ids) in a meta section; version 1, written by earlier
 * releases, kept everything in a public header and is still read. Integers in the headers are
 * little-endian; PNG's own fields big-endian.
 *
 *   offset  size  field
 *   0       8     PNG signature 89 50 4E 47 0D 0A 1A 0A
 *   8       25    IHDR chunk: width W, height H (below), bit depth 8, colour type 0 (grey),
 *                 compression 0, filter 0, interlace 0
 *   33      ...   "icHd" chunk: the header (version 2: CODEC_CT_HEADER2 = 48 bytes; version 1:
 *                 CODEC_CT_HEADER = 128 bytes; below)
 *   93      124   version 2 only: "icMt" chunk: the sealed meta (CODEC_CT_META + 16 bytes)
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
 * Version 2 header ("icHd" data, CODEC_CT_HEADER2 = 48 bytes), all of it public:
 *
 *   offset  size  field
 *   0       4     magic "IMCT"
 *   4       1     version = 2
 *   5       3     reserved, 0
 *   8       16    file id: 128 random bits, drawn fresh by every encode
 *   24      8     sealed features length F: 0 (absent) or a bucket (below) >= 25
 *   32      8     sealed envelope length E: a bucket >= 16 + 32 + CODEC_ENV_FIXED
 *   40      8     sealed pixel stream length P: a bucket >= 17, <= CODEC_CT_MAX_PIXELS
 *
 * Version 2 meta ("icMt" data: CODEC_CT_META = 96 bytes sealed as section kind 4):
 *
 *   offset  size  field
 *   0       1     image format (enum codec_format of the original: 1 PNM, 2 DICOM, 3 PNG)
 *   1       1     features status (enum codec_ct_features): 0 present, else why absent
 *   2       1     bits per stored sample, 8 or 16
 *   3       1     reserved, 0
 *   4       4     image channels    (of the original, as codec_split gives them)
 *   8       4     image frames
 *   12      4     image height
 *   16      4     image width
 *   20      4     reserved, 0
 *   24      8     plaintext size: the original file's length, <= CODEC_MAX_FILE_BYTES
 *   32      16    autoencoder model id (first 16 bytes of the SHA-256 of its model file);
 *                 zero exactly when the features are absent
 *   48      16    coder model id: zero for the fixed predictor 0, else as in version 1
 *   64      8     features plaintext length (without padding): 0 when absent
 *   72      8     envelope plaintext length (without padding)
 *   80      8     pixel stream plaintext length (without padding)
 *   88      8     reserved, 0
 *
 * Padding (version 2). The features, envelope and pixel stream plaintexts are followed by zero
 * bytes before sealing, so that each sealed length is a bucket: for a sealed length L (the
 * plaintext plus the 16-byte tag) the bucket is L rounded up to a multiple of
 * max(256, 2^ceil(log2 L) / 16), capped at the section's limit (codec_ct_bucket). A length
 * thus tells at most which of 16 steps between two powers of two it falls in (256-byte steps
 * below 4 KiB): the envelope no longer tracks the DICOM metadata (patient data) byte for byte,
 * nor the pixel stream the image's compressibility. The cost is under one step: below 1/8 of
 * the section, 1/32 of the next power of two on average (about 4%). Measured on the 19 test
 * images that are stored as images (tests/data and the golden inputs, fixed predictor): 19556
 * bytes of padding in 354504 stored bytes, 5.8% more than unpadded; 2.4% to 9% for images of
 * 64 x 64 and more, 42% for a 41 x 37 PNG and 69% for a 7 x 5 PGM (324 bytes), where the 256-byte
 * steps dominate. The meta adds 44 bytes (its 124-byte chunk, against 80 header bytes fewer).
 * The padding is checked to be zero when a section is opened; the meta gives the plaintext
 * lengths.
 *
 * Version 1 header ("icHd" data, CODEC_CT_HEADER = 128 bytes), all of it public:
 *
 *   offset  size  field
 *   0       4     magic "IMCT"
 *   4       1     version = 1
 *   5       1     image format (as the version 2 meta)
 *   6       1     features status
 *   7       1     reserved, 0
 *   8       16    file id
 *   24      8     plaintext size
 *   32      16    autoencoder model id
 *   48      16    coder model id
 *   64      4     image channels
 *   68      4     image frames
 *   72      4     image height
 *   76      4     image width
 *   80      1     bits per stored sample, 8 or 16
 *   81      7     reserved, 0
 *   88      8     sealed features length F: 0 (absent) or 25 .. CODEC_CT_MAX_CHUNK
 *   96      8     sealed envelope length E: 17 .. CODEC_CT_MAX_CHUNK
 *   104     8     sealed pixel stream length P: 17 .. CODEC_CT_MAX_PIXELS
 *   112     16    reserved, 0
 * Version 1 sections carry no padding: each plaintext is its sealed length minus 16.
 *
 * The lengths are the section table: each must equal the length of its chunk's data (F and E)
 * or the stream inside the IDAT rows (P).
 *
 * Sealing. Key: the filesystem's "container" subkey (keys_ring_subkey), then per file
 * keys_key_derive(subkey, "container file v1", file id) (AES-256-GCM; both versions). Each
 * section is ciphertext || 16-byte tag, sealed with
 *   nonce = 11 zero bytes || section kind (1 features, 2 envelope, 3 pixels, 4 meta)
 *   AAD   = the header bytes (48 or 128, all of the "icHd" data) || section kind (1 byte)
 * Why a nonce never repeats under one key: the per-file key exists for exactly one encode
 * (the file id is drawn fresh from the CSPRNG every time, and never taken from a caller), and
 * that encode seals each kind once. Two encodes share a key only if their random 128-bit ids
 * collide (about 2^-64 after 2^32 encodes, and then only across different files).
 * Why the AAD: it binds every section to this header, so a changed header field (version 1:
 * size, model id, geometry; both: file id, section length), a section moved from another
 * container (other id, other key) or moved to another place of the same container (other kind,
 * other nonce and AAD) fails its tag. In version 2 the meta is bound the same way, and the
 * sections agree with it because one encode wrote them all under a key no other file has.
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
 *                       autoencoder encoded from the first frame (of a DICOM of 32-bit
 *                       samples: the samples scaled to 16 bits, one channel per sample)
 *   envelope (kind 2):  the SHA-256 of the original file (32), then the envelope (codec.h)
 *   pixels   (kind 3):  the pixel stream (codec/pixel/pixcode.h) of all planes and frames
 *
 * The image pipeline (codec/pipeline.h) fills and reads the sections; this header's functions
 * parse, open, seal and write the format. Decoding checks, and refuses: every CRC, the chunk order
 * and lengths, the header's fields and limits (version 2: the meta's too, and that every length
 * is a bucket and every section's padding zero), the geometry, the filter bytes (all 0) and the
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
#define CODEC_CT_VERSION 2    /* what codec_ct_write writes */
#define CODEC_CT_VERSION_V1 1 /* still read */
#define CODEC_CT_HEADER 128   /* version 1 header */
#define CODEC_CT_HEADER2 48   /* version 2 header */
#define CODEC_CT_META 96      /* version 2 meta plaintext */
#define CODEC_CT_PAD_MIN 256u /* smallest bucket step */
#define CODEC_CT_SUBKEY_LABEL "container"
#define CODEC_CT_FILE_LABEL "container file v1"
#define CODEC_CT_CHUNK_HEADER "icHd"
#define CODEC_CT_CHUNK_META "icMt"
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
    CODEC_CT_SECTION_META = 4, /* version 2 */
};

/* Why a container has no features (version 2 meta byte 1, version 1 header byte 6). */
enum codec_ct_features {
    CODEC_CT_FEATURES_PRESENT = 0,
    CODEC_CT_FEATURES_SMALL = 1,       /* an image side below CODEC_CT_MIN_FEATURE_DIM */
    CODEC_CT_FEATURES_UNSUPPORTED = 2, /* palette indices, or refused by the autoencoder */
    CODEC_CT_FEATURES_DISABLED = 3,    /* the encoder was asked not to make them */
    CODEC_CT_FEATURES_NO_MODEL = 4,    /* no autoencoder available */
};

/* What a container says of itself. codec_ct_info gives what anyone can read (nothing is
 * authenticated yet): of a version 2 container only version, file id, the sealed lengths and the
 * PNG geometry, with sealed set and the other fields zero; of a version 1 container everything.
 * codec_ct_open_info (with the key) gives everything of both, authenticated. */
struct codec_ct_info {
    unsigned version; /* 1 or 2 */
    int sealed;       /* 1: the fields from format to pixels_plain are in the unopened meta */
    uint8_t file_id[KEYS_ID_BYTES];
    enum codec_format format;
    enum codec_ct_features features;
    uint64_t plain_size;
    uint8_t ae_id[KEYS_ID_BYTES], coder_id[KEYS_ID_BYTES];
    uint32_t channels, frames, height, width, bits;
    uint64_t features_bytes, envelope_bytes, pixels_bytes; /* sealed lengths (with padding) */
    uint64_t features_plain, envelope_plain, pixels_plain; /* plaintext lengths (without) */
    uint32_t png_width, png_height;
};

/* Whether buf starts like a container (PNG signature, IHDR, then an "icHd" chunk). */
int codec_ct_sniff(const uint8_t *buf, size_t len);

/* Parse and check the structure (every CRC) and public header; 0 and *info (see above: of a
 * version 2 container only the public fields), or -EINVAL/-EBADMSG. Reads nothing sealed. */
int codec_ct_info(const uint8_t *buf, size_t len, struct codec_ct_info *info);

/* As codec_ct_info, without the IDAT chunks' CRCs (no pixel byte is read), then with the
 * container subkey open the version 2 meta: every field of *info, authenticated (a version 1
 * header is public and authenticated only by a decode). 0, -EINVAL, -EBADMSG (a CRC, the meta's
 * tag: wrong key or changed byte). Cheap: one 112-byte section is decrypted. Thread-safe. */
int codec_ct_open_info(const struct keys_key *container_key, const uint8_t *buf, size_t len,
                       struct codec_ct_info *info);

/* The head of a container: the first CODEC_CT_HEAD bytes of the file (or all of a shorter
 * one) hold the IHDR, header and meta chunks, which is all codec_ct_open_head reads. */
#define CODEC_CT_HEAD 256
/* As codec_ct_open_info from the head alone (buf[0..len), len <= the file's length): those
 * chunks' CRCs and the header are checked and the version 2 meta opened (authenticated); the rest
 * of the file is not looked at, so the caller learns what the file says it is (plaintext size,
 * model ids) at the cost of one small read; a decode checks everything. 0, -EINVAL, -EBADMSG. */
int codec_ct_open_head(const struct keys_key *container_key, const uint8_t *buf, size_t len,
                       struct codec_ct_info *info);

/* The bucket of a sealed length n (container.h, "Padding"): n rounded up to a multiple of
 * max(CODEC_CT_PAD_MIN, the next power of two >= n, / 16); limit when that, or n, is past it. */
uint64_t codec_ct_bucket(uint64_t n, uint64_t limit);

/* ---- The format's parts, for the image pipeline (codec/pipeline.h) ------------------------ */

/* Sizes of the section plaintexts' fixed parts (see "Section plaintexts" above). */
#define CODEC_CT_DIGEST 32         /* envelope: SHA-256 of the original file */
#define CODEC_CT_FEATURES_PREFIX 8 /* features: coding, reserved, raw length */
#define CODEC_CT_FEATURES_RAW 0    /* features coding byte */
#define CODEC_CT_FEATURES_ZLIB 1
#define CODEC_CT_FEATURES_LATCODE 2
#define CODEC_CT_LATENT_FIELDS 8 /* channels, height, width, bits, depth, lc, lh, lw */

/* A parsed container: the header and where the sections are, pointing into the buffer given
 * to codec_ct_parse (which must outlive it). Nothing in it is authenticated yet; a version 2
 * view has info.sealed set until codec_ct_open_meta fills info from the meta. */
struct codec_ct_view {
    struct codec_ct_info info;
    const uint8_t *hdr;     /* the header bytes (the sections' AAD) */
    size_t hdr_len;         /* CODEC_CT_HEADER2 or CODEC_CT_HEADER */
    const uint8_t *mt;      /* version 2: the sealed meta (CODEC_CT_META + 16 bytes) */
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

/* Open the version 2 meta of a parsed container and fill v->info from it (info.sealed cleared);
 * nothing to do for version 1. Must precede codec_ct_open_section. 0, -EINVAL (a field out of
 * its limits, lengths that disagree with the header), -EBADMSG (wrong key, a changed byte),
 * -ENOMEM; on failure v is unchanged. */
int codec_ct_open_meta(const struct keys_key *file_key, struct codec_ct_view *v);

/* Open one section of the parsed container buf (the pixels: inflated from the IDAT rows, the
 * filter bytes and padding checked) into a new buffer (*out, *out_len: the plaintext without
 * its padding, which is checked to be zero; the caller wipes and frees it). The view's meta must
 * be open (codec_ct_open_meta). 0, -ENODATA (no features), -EINVAL, -EBADMSG (wrong key, a
 * changed byte: the output is wiped), -EFBIG, -ENOMEM. Thread-safe. */
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

/* Draw a fresh file id, pad and seal the sections and the meta under its per-file key and
 * write a version 2 container (*out, caller frees). 0, -EINVAL, -EFBIG (a section past its limit),
 * -EIO (no randomness), -ENOMEM. Thread-safe. */
int codec_ct_write(const struct keys_key *container_key, const struct codec_ct_plain *in,
                   uint8_t **out, size_t *out_len);

#endif
