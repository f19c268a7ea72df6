/* SPDX-License-Identifier: MIT */
/*
 * Image adapters: split an image file into pixel planes and an envelope, and join them back.
 *
 * The neural coder needs pixels, the filesystem must return the written bytes. An adapter
 * splits a file into planes (what the coder sees) and an envelope (every other byte, verbatim
 * where possible), and join rebuilds the file from the two. The contract is absolute:
 * join(split(f)) == f byte for byte, or split refuses with -ENOTSUP and the file stays on the
 * generic path. The trade-off is coverage for certainty: an adapter takes only the files whose
 * layout makes exactness structural (the raster is one contiguous run of bytes that maps
 * one-to-one onto samples), and refuses the rest rather than trusting a re-encoder. PNG and
 * DICOM RLE are the compressed formats taken: their streams are not re-encoded but re-emitted
 * from a complete record of the original (PNG: deflate.h, checked against the pixels at emit;
 * RLE: every run's header, predicted or listed).
 *
 * The envelope holds patient data (DICOM names, dates, identifiers) and comments: it is sealed
 * before it is stored, and it never goes to a log. The `why` strings never contain file bytes.
 *
 * Everything here works on whole files in memory; nothing keeps state, every function is safe
 * to call from any number of threads at once on distinct arguments.
 *
 * Envelope format (version 1). Integers little-endian.
 *
 *   offset  size  field
 *   0       4     magic "IMGE"
 *   4       1     format: 1 PNM, 2 DICOM, 3 PNG (enum codec_format)
 *   5       1     version = 1
 *   6       2     reserved, 0
 *   8       4     channels  (must equal the image's)
 *   12      4     frames
 *   16      4     height
 *   20      4     width
 *   24      1     bits per stored sample: 8 or 16
 *   25      1     significant bits
 *   26      1     adapter flags (per format, below)
 *   27      1     reserved, 0
 *   28      8     head length H
 *   36      H     head: the file's bytes before the raster, verbatim
 *   36+H    8     tail length T
 *   44+H    T     tail: the file's bytes after the raster, verbatim
 *   44+H+T        end; no other bytes may follow
 *
 * (PNG puts its IDAT section between the head and the tail length, plain PNM its layout
 * section; see below.)
 *
 * The file is head || raster(planes) || tail, where raster() is the format's sample layout:
 *
 * PNM (P5 grey, P6 RGB; flags = 0): head is the header from "P5"/"P6" through the single
 *   whitespace byte after maxval, comments and odd whitespace included. The raster is
 *   height × width × channels samples, interleaved, one byte each when maxval < 256, else two
 *   bytes big-endian. Tail is whatever follows the raster (further images of a multi-image
 *   file, garbage): kept verbatim, never interpreted. Significant bits are the bit length of
 *   maxval; a sample above maxval is refused (-ENOTSUP), because the file is not a valid PNM
 *   and the coder is promised that no sample exceeds the significant bits.
 *
 * Plain PNM (P2 grey, P3 RGB; flags = 1): the same head (from "P2"/"P3"), then, as PNG's
 *   IDAT section, an 8-byte length S and S bytes of layout section, then the tail length and
 *   the tail. The raster is the samples (interleaved, 8-bit planes when maxval < 256) printed
 *   in shortest decimal (no sign, no leading zero) and laid out in lines:
 *     1       separator: ' ' or '\t', between the samples of a line
 *     1       line break: 0 "\n", 1 "\r\n", 2 "\r"
 *     1       flags: bit 0 the separator also follows the last sample of each line (before
 *             its line break), bit 1 the last line ends with a line break too (else the text
 *             ends at its last sample); other bits 0
 *     varint  pair count P >= 1, then P pairs: varint samples per line A >= 1, varint lines
 *             B >= 1: B lines of A samples; the pairs' A × B sum to the sample count
 *   The tail is what follows the text. Split refuses (-ENOTSUP) a raster not in such a layout:
 *   leading zeros, a sign, runs of blanks, comments or blank lines among the samples, mixed
 *   separators or line breaks, a sample above maxval, too few samples.
 *
 * DICOM (flags: bit 0 planar configuration 1, bit 1 big-endian 16-bit words, bit 2 big-endian
 *   OW of 8-bit samples, i.e. byte pairs swapped, bit 3 Bits Allocated 32, bit 4
 *   YBR_FULL_422, bit 5 RLE Lossless, all three below): head is
 *   everything from the preamble through the Pixel Data (7FE0,0010) element header, tail is
 *   what the Pixel Data holds past the geometry's samples (an odd length's pad byte, or
 *   padding a writer added) and every element after it. The raster is frames × (height ×
 *   width × channels) samples, interleaved (planar configuration 0) or plane by plane (1)
 *   within each frame. Significant bits are Bits Stored when no sample has a bit above it,
 *   else Bits Allocated (signed data is sign-extended into the unused bits).
 *   Bits Allocated 32 (RT Dose grids; flag bit 3, planar configuration 0, at most 2 samples
 *   per pixel): each 32-bit sample is two 16-bit samples, its two 16-bit words in file order
 *   (little endian: low word first; big endian, flag bit 1: high word first), so the image has
 *   2 × Samples per Pixel channels of 16 bits, and the raster is read as that 16-bit raster.
 *   Significant bits: Bits Stored when it is below 16 and no word has a bit above it, else 16.
 *   YBR_FULL_422 and YBR_PARTIAL_422 (flag bit 4; 3 samples per pixel, planar configuration
 *   0, an even number of columns, 8 or 16 bits): each pair of pixels is stored as Y0 Y1 Cb Cr,
 *   so the image has 4 channels of width columns / 2: the luma of the even columns, the luma
 *   of the odd columns, then Cb and Cr at their own (half) horizontal resolution, and the
 *   raster is read as that 4-channel raster.
 *   RLE Lossless (transfer syntax 1.2.840.10008.1.2.5, flag bit 5, with bit 3 for 32-bit
 *   samples; no other bit): head ends with the Pixel Data element header (undefined length),
 *   and, as PNG's IDAT section, an 8-byte length S and S bytes of RLE section sit between the
 *   head and the tail length; the tail is what follows the sequence delimiter. The planes are
 *   those of the native file of the same samples (interleaved, little endian; Planar
 *   Configuration plays no part in RLE). The encapsulated bytes (offset table item, one
 *   fragment item per frame, sequence delimiter; a fragment is the 64-byte RLE header, then
 *   one PackBits segment per byte of each sample, most significant first, PS3.5 G.2) are a
 *   skeleton of verbatim bytes with each segment's runs cut out:
 *     varint  skeleton length K, then K bytes: every byte that is not a run (item headers,
 *             offset table, RLE headers, bytes between a segment's last run and the next
 *             segment, the delimiter), verbatim
 *     then, for each segment in file order (frames × samples per pixel × bytes per sample):
 *     varint  gap: where its runs go in the skeleton, counted from the previous segment's place
 *             (from 0 for the first), the sum at most K
 *     1       mode: 0 listed, 2 or 3 predicted (below)
 *     listed: varint run count R, then R bytes: each run's PackBits header byte, in order
 *             (0..127 a literal of h + 1 bytes, 129..255 a replicate of 257 - h, 128 a no-op)
 *     predicted: varint exception count E, then E times: varint the number of runs since the
 *             previous exception (or the first run), 1 byte the header of the run that differs
 *             from the prediction. The prediction of the run at plane byte p, with min = the
 *             mode: within p's row, a replicate of the equal bytes from p when there are at
 *             least min of them (at most 128), else a literal up to the first byte where at least
 *             min equal bytes start (at most 128 bytes). Mode 2 is pydicom's encoder (but
 *             for a byte left over after 128 equal ones followed by a literal)
 *   In either mode the runs make exactly height × width bytes, and every listed header or
 *   exception is used.
 *   Join puts each run back from the planes (a literal: its header and bytes; a replicate: its
 *   header and the first of its bytes) into the skeleton. Segment s of a frame is byte
 *   s % B (most significant first) of sample s / B, B = Bits Allocated / 8; a 32-bit sample
 *   is channels 2 × sample (low word) and 2 × sample + 1 (high word). Split refuses (-ENOTSUP)
 *   an offset table or fragment missing, fragments not one per frame, a segment count other
 *   than samples × B (at most 15), segment offsets not increasing from 64 inside the
 *   fragment, a run past its plane or its segment, a segment ending before its plane is
 *   full, YBR_422, and anything native DICOM refuses for the geometry.
 *
 * PNG (flags = 0; frames = 1). The raster is a zlib stream cut into IDAT chunks, so between the
 *   head and the tail length sits the IDAT section, and the file is
 *   head || IDAT chunks || tail:
 *
 *   offset      size  field
 *   28          8     head length H
 *   36          H     head: the signature and every chunk before the first IDAT, verbatim;
 *                     IHDR is its first chunk (13 data bytes), and says the layout below
 *   36+H        8     IDAT section length S
 *   44+H        S     IDAT section (below): what rebuilds the IDAT chunks from the pixels
 *   44+H+S      8     tail length T
 *   52+H+S      T     tail: everything after the last IDAT chunk (the later chunks, IEND, and
 *                     any bytes after IEND), verbatim
 *
 *   The filtered rows are those of the whole image, or for an Adam7-interlaced file (IHDR
 *   interlace 1) those of its seven passes one after the other, each pass a reduced image of
 *   its own (PNG 8.2: pass p holds the pixels at x0 + i × dx, y0 + j × dy, with (x0, y0, dx,
 *   dy) = (0,0,8,8) (4,0,8,8) (0,4,4,8) (2,0,4,4) (0,2,2,4) (1,0,2,2) (0,1,1,2)), its first
 *   row filtered without a previous row; a pass with no pixels has no rows.
 *
 *   The IDAT section, varints as in deflate.h (unsigned LEB128, minimal), Y = the filtered rows
 *   (height when not interlaced):
 *     varint  IDAT chunk count K, >= 1
 *     1       chunk lengths: 0 listed, K varints follow, each <= 2^31 - 1, summing to the
 *             stream's length; 1 even, one varint C (1..2^31 - 1) follows: every chunk holds
 *             C bytes but the last, which holds the rest, 1..C bytes
 *     1       row filter types: 0 listed, Y bytes 0..4 follow; 1 one type for every row, one
 *             byte 0..4 follows; 2..29 the adaptive choice of a writer, computed from the
 *             pixels: heuristic (mode - 2) of png.c's table (Pillow, Pillow with optimize=True,
 *             then libpng with each set of two or more allowed filters), except for the rows
 *             listed next: varint count E <= Y, then E times a varint gap (rows since the
 *             previous exception, or since row 0) and the row's type 0..4
 *     rest    recipe: the zlib stream's description for the filtered rows (each its row
 *             bytes + 1), either modelled on zlib (zrecipe.h, magic "IDFM") or raw (deflate.h,
 *             magic "IDFL"), whichever is smaller; when zlib makes it smaller still, packed: magic
 *             "IDFZ", varint unpacked length (at most 6 × the rows' bytes + 2^24), then the
 *             zlib stream (RFC 1950) of the recipe
 *
 *   Join packs each row (of each pass) from the planes (1/2/4-bit samples most significant
 *   first, padding bits zero; 16-bit big-endian; channels interleaved), applies the row's
 *   filter type, emits the zlib stream from the recipe and those bytes (deflate.h checks they
 *   match), and writes K chunks: length (big-endian), "IDAT", the next length bytes of the
 *   stream, CRC-32. A section whose lengths do not add up to the emitted stream is refused
 *   (-EINVAL).
 *
 *   Planes: colour type 0 grey (1 channel), 2 RGB (3), 3 palette indices (1), 4 grey + alpha
 *   (2), 6 RGBA (4); depth 16 gives 16-bit planes, every other depth 8-bit planes holding the
 *   sample or index unscaled; significant = the PNG bit depth. An interlaced file's planes are
 *   the de-interlaced image, the same as the non-interlaced file of the same pixels.
 *   Split refuses (-ENOTSUP): a bad CRC or chunk type in any chunk through IEND, a file cut
 *   short of IEND, IHDR not first, IDAT chunks not consecutive, a zlib stream that is
 *   invalid, has a preset dictionary or decompresses to other than the rows' size, a filter
 *   type above 4, non-zero padding bits after a row's last sub-byte sample, and any file
 *   libpng refuses or decodes to other samples than ours. Bytes after IEND are kept verbatim
 *   in the tail (as PNM keeps bytes after its raster): they cost nothing to keep.
 */
#ifndef IMGCRYPTFS_CODEC_CODEC_H
#define IMGCRYPTFS_CODEC_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Limits, checked with overflow-safe arithmetic before anything is allocated; beyond them
 * split answers -EFBIG. */
#define CODEC_MAX_DIM 65536u                     /* width, height */
#define CODEC_MAX_FRAMES 65536u                  /* frames of a multi-frame image */
#define CODEC_MAX_CHANNELS 4u                    /* samples per pixel */
#define CODEC_MAX_PIXEL_BYTES ((size_t)1 << 31)  /* all planes together */
#define CODEC_MAX_FILE_BYTES ((uint64_t)1 << 32) /* input to split, output of join */
#define CODEC_MAX_DICOM_ELEMENTS 1000000u        /* data elements and items walked */
#define CODEC_MAX_DICOM_DEPTH 16u                /* nested sequences */

#define CODEC_ENV_MAGIC "IMGE"
#define CODEC_ENV_VERSION 1
#define CODEC_ENV_FIXED 36 /* bytes before the head */

/* DICOM envelope flags (see above). */
#define CODEC_DICOM_PLANAR 1u
#define CODEC_DICOM_BE16 2u
#define CODEC_DICOM_BE_OW8 4u
#define CODEC_DICOM_WORDS32 8u
#define CODEC_DICOM_YBR422 16u
#define CODEC_DICOM_RLE 32u

/* PNM envelope flag (see above). */
#define CODEC_PNM_TEXT 1u

enum codec_format {
    CODEC_FORMAT_NONE = 0,
    CODEC_FORMAT_PNM = 1,
    CODEC_FORMAT_DICOM = 2,
    CODEC_FORMAT_PNG = 3,
};

/*
 * An image as the coder sees it. Sample (c, f, y, x) is at index
 * ((c * frames + f) * height + y) * width + x of `planes`, an array of uint8_t when bits is 8
 * and of host-endian uint16_t when bits is 16; `planes_bytes` is its size. The adapter fills
 * every field; the coder may change sample values only by round trip (join uses them as-is).
 */
struct codec_image {
    enum codec_format format;
    uint32_t channels; /* 1..CODEC_MAX_CHANNELS */
    uint32_t frames;   /* 1..CODEC_MAX_FRAMES */
    uint32_t height, width;
    uint32_t bits;        /* bits per stored sample: 8 or 16 */
    uint32_t significant; /* 1..bits: no sample has a bit set at or above this one */
    void *planes;
    size_t planes_bytes;
};

/* The format the content looks like (signature only; a file is never judged by its name).
 * DICOM needs the 128-byte preamble and "DICM": raw datasets without it are not recognised.
 * PNM is "P1".."P6" followed by whitespace or '#'. A format sniffed is not yet an image that
 * split accepts. */
enum codec_format codec_sniff(const uint8_t *buf, size_t len);

/*
 * The image the file declares, from its header alone (PNG: IHDR; PNM and DICOM: the header up
 * to the raster), without decoding: format, channels, frames, height, width, bits, and in
 * planes_bytes the size of its planes (planes is NULL). What a caller checks against a memory
 * budget before split; a file probe accepts may still be refused by split. 0, -ENOTSUP, -EFBIG
 * (beyond the limits above), -EINVAL.
 */
int codec_probe(const uint8_t *buf, size_t len, struct codec_image *geo);

/*
 * Split the file buf[0..len) into a new image and a new envelope (both owned by the caller:
 * codec_image_free and free). On failure nothing is allocated, the out-parameters are left
 * alone and, when why is not NULL, why[0..whylen) gets a short reason without file content
 * ("DICOM: encapsulated JPEG 2000"). Returns 0, -ENOTSUP (not an image we can store exactly:
 * other format, compressed, malformed, truncated), -EFBIG (beyond a CODEC_MAX_* limit),
 * -ENOMEM, or -EINVAL (NULL arguments).
 */
int codec_split(const uint8_t *buf, size_t len, struct codec_image **img, uint8_t **envelope,
                size_t *env_len, char *why, size_t whylen);

/*
 * codec_split with up to `threads` workers (0 or 1: the calling thread alone). Only a PNG uses
 * more than one: the replay of its zlib stream (codec/zlib/zmodel.h) runs in two halves. The result
 * is the same for every thread count.
 */
int codec_split_threads(const uint8_t *buf, size_t len, unsigned threads, struct codec_image **img,
                        uint8_t **envelope, size_t *env_len, char *why, size_t whylen);

/*
 * Rebuild the file from an image and the envelope that split made with it. *out (caller frees)
 * gets the bytes. Returns 0, -EINVAL (envelope malformed or not matching the image's format,
 * geometry or depth), -EFBIG, -ENOMEM. The image is not modified.
 */
int codec_join(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
               uint8_t **out, size_t *out_len);

/* codec_join with up to `threads` workers, as codec_split_threads. */
int codec_join_threads(const struct codec_image *img, const uint8_t *envelope, size_t env_len,
                       unsigned threads, uint8_t **out, size_t *out_len);

/* Free an image from codec_split and its planes; NULL is accepted. */
void codec_image_free(struct codec_image *img);

/* The sizes of an envelope's parts, for reports (imgcrypt inspect); never its bytes. */
struct codec_envelope_info {
    enum codec_format format;
    uint64_t head_bytes; /* file bytes kept verbatim before the raster */
    uint64_t tail_bytes; /* file bytes kept verbatim after the raster */
    /* PNG: the whole IDAT section with its length field (chunk lengths, row filter types,
     * recipe), what rebuilds the compressed stream from the pixels; plain PNM (P2/P3): the
     * layout section with its length field; DICOM RLE: the RLE section with its length field
     * (skeleton and runs); 0 for binary PNM and native DICOM */
    uint64_t recipe_bytes;
    uint8_t flags; /* the adapter flags (above): how the raster's channels map to the file's */
};

/*
 * Walk the lengths of an envelope (untrusted bytes; each is checked against env_len) and
 * report the sizes of its parts in *info, written only on success. Decodes and copies no
 * content. Returns 0, or -EINVAL (NULL argument, or not a well-formed version 1 envelope).
 */
int codec_envelope_info(const uint8_t *env, size_t env_len, struct codec_envelope_info *info);

#endif
