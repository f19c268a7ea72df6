/* SPDX-License-Identifier: MIT */
/*
 * Block file: the generic sealed form of every file, with random access.
 *
 * The plaintext is cut into blocks of 4096 bytes, each sealed on its own with AES-256-GCM, so a
 * read or write touches only the blocks it covers. The price is 28 bytes per block (0.7%) and
 * a read-modify-write of the first and last block of an unaligned write.
 *
 * Format (version 1). Integers little-endian.
 *
 *   offset  size  field
 *   0       6     magic "IMGCBF"
 *   6       2     version = 1
 *   8       16    file id: 128 random bits, fixed for the life of the file
 *   24      8     reserved, 0
 *   32      ...   blocks; block i starts at 32 + i * 4124 and is
 *                   12  nonce (random, drawn fresh for every write of the block)
 *                   n   ciphertext, n = 4096 for every block but the last, 1..4096 for it
 *                   16  GCM tag
 *
 * Key: HKDF-SHA256 of the filesystem's "content" subkey with the file id as salt and the label
 * "file" (keys_key_derive), so every file has its own key.
 * Associated data of block i: file id (16) || i as 64-bit little-endian || last (1 byte: 1 for
 * the final block of the file, else 0). This binds each block to its file and position and
 * marks the end, so a modified byte, a block moved within or between files, a file cut at a
 * block boundary, and an all-zero block all fail authentication.
 *
 * Holes (version 2: a file's first hole sets the version field to 2 before anything else).
 * Blocks s..e (below the final block, which always holds data) may be a hole: block e then
 * starts with an end marker, nonce(12) || the sealed 8-byte little-endian s || tag(16), sealed
 * with the associated data of block e and the flag 2 in place of the last flag; the rest of
 * block e and blocks s..e-1 read as zeros (never written, or deallocated). A block that does
 * not open as data reads as zeros only when it is such a marker, or when its first 36 bytes are
 * zero and a marker after it (looked for with SEEK_DATA, then by probing) names s at or
 * before it. Writers keep markers exact: no marker's range ever holds a data block (a write
 * into a hole seals a marker for the part before it first, and rewrites the marker after it
 * last; a hole punched next to another becomes one hole with one marker, the inner marker
 * cleared; a marker is never sealed into a block that holds data), so zeroing or moving blocks
 * never makes data read as zeros. Files written before the inner marker was cleared may hold a
 * merged hole whose marker still names a data block after such a write; they read correctly,
 * and a write into the hole after the data block makes the marker exact again.
 *
 * The last block holds 1..4096 plaintext bytes; an empty file has exactly one block, block 0,
 * with 0 plaintext bytes (28 bytes: nonce and tag), so an empty file is 60 bytes and a file cut
 * down to its header, or to nothing, is refused like any other truncation.
 * Plaintext size from the backing size B >= 60: with q = (B - 32) / 4124 and
 * r = (B - 32) % 4124, it is q * 4096 when r == 0, q * 4096 + r - 28 when r > 28, and 0 when
 * q == 0 and r == 28. Any other B (below 60, r in 1..27, r == 28 with q > 0) cannot be written
 * by imgcryptfs: reads and writes answer -EBADMSG naming block q.
 *
 * Nonces are random 96-bit values from the CSPRNG, one per block write, under a per-file key:
 * the chance of a repeat stays below 2^-32 until about 2^32 writes of one file.
 *
 * Whole-file rollback (replacing a file by an older copy of itself) is not detected.
 */
#ifndef IMGCRYPTFS_CODEC_BLOCKFILE_H
#define IMGCRYPTFS_CODEC_BLOCKFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keys/keys.h"

#define CODEC_BF_MAGIC "IMGCBF"
#define CODEC_BF_VERSION 1
#define CODEC_BF_VERSION_HOLES 2
#define CODEC_BF_HEADER 32
#define CODEC_BF_BLOCK 4096
#define CODEC_BF_NONCE 12
#define CODEC_BF_TAG 16
#define CODEC_BF_OVERHEAD (CODEC_BF_NONCE + CODEC_BF_TAG)
#define CODEC_BF_SEALED (CODEC_BF_BLOCK + CODEC_BF_OVERHEAD)
#define CODEC_BF_KEY_LABEL "file"
/* Largest plaintext size: keeps every backing offset below 2^62. */
#define CODEC_BF_MAX_SIZE ((uint64_t)1 << 61)

/* Plaintext size for a backing size (see the format above); for an impossible size, the size
 * up to and including the damaged block (what stat shows, so that reading it gets -EBADMSG). */
uint64_t codec_bf_plain_size(uint64_t backing_size);
/* Backing size for a plaintext size. */
uint64_t codec_bf_backing_size(uint64_t plain_size);

/*
 * An open block file: a backing descriptor (not owned), its file id and per-file key.
 * Not thread-safe: the caller serialises writers against each other and against readers of
 * the same file (fs/ holds a per-inode read-write lock). Several readers may share one.
 */
struct codec_bf;

/*
 * Bind a block file to `fd` (opened for reading, or reading and writing), reading its header
 * and deriving the file key from `content_key`. With `create`, a 0-byte backing file (one just
 * made with O_CREAT) becomes an empty block file with a fresh id, under flock so concurrent
 * creators agree (a backing that cannot lock fails the create with its -errno); without it, a
 * 0-byte file is damage. Returns 0, -EBADMSG for a missing or bad header, or -errno.
 */
int codec_bf_open(int fd, const struct keys_key *content_key, int create, struct codec_bf **out);
/* Make the new, empty, private file `fd` (0 bytes, read-write, that no one else can have open:
 * fs/ makes it under a temporary name) an empty block file with a fresh id, without the lock
 * and header checks of codec_bf_open's create. Returns 0 or -errno (-ENOSPC: no entry made). */
int codec_bf_create(int fd, const struct keys_key *content_key, struct codec_bf **out);
void codec_bf_close(struct codec_bf *bf);

/* Re-point an open block file at another descriptor of the same backing file. */
void codec_bf_set_fd(struct codec_bf *bf, int fd);

/* Plaintext size from the backing file's current size. 0, -EBADMSG (impossible size) or
 * -errno. */
int codec_bf_size(const struct codec_bf *bf, uint64_t *size);

/*
 * Read up to len bytes at off. Returns the number of bytes read (short only at end of file),
 * -EBADMSG when a block fails authentication (its index in *bad_block when not NULL), or -errno.
 */
ssize_t codec_bf_read(const struct codec_bf *bf, void *buf, size_t len, uint64_t off,
                      uint64_t *bad_block);

/*
 * Write len bytes at off (buf NULL writes zeros), extending the file; a gap of whole blocks
 * before off becomes a hole. Returns len, -EBADMSG when a block that must be merged fails
 * authentication, -EFBIG past CODEC_BF_MAX_SIZE, or -errno. A write that would grow the file
 * and fails (-ENOSPC, -EFBIG, -EIO from the backing) leaves the file exactly as it was.
 */
ssize_t codec_bf_write(struct codec_bf *bf, const void *buf, size_t len, uint64_t off,
                       uint64_t *bad_block);

/* Set the plaintext size; growth past the block after the old last one leaves a hole. 0, -EBADMSG,
 * -EFBIG or -errno; a grow that fails leaves the file as it was. */
int codec_bf_truncate(struct codec_bf *bf, uint64_t size, uint64_t *bad_block);

/*
 * Make bytes [off, off + len) read as zeros without changing the size (FALLOC_FL_PUNCH_HOLE):
 * whole blocks become a hole, deallocated in the backing where it can, the edges are sealed
 * zeros. 0, -EBADMSG or -errno.
 */
int codec_bf_punch(struct codec_bf *bf, uint64_t off, uint64_t len, uint64_t *bad_block);

/* lseek(2)'s SEEK_DATA and SEEK_HOLE (whence): the first offset at or after off that is data,
 * or in a hole (the end of the file counts as one), in *out. 0, -ENXIO when off is at or past
 * the end, -EBADMSG or -errno. */
int codec_bf_seek(const struct codec_bf *bf, uint64_t off, int whence, uint64_t *out);

/* The file id. */
void codec_bf_file_id(const struct codec_bf *bf, uint8_t id[KEYS_ID_BYTES]);

/* Read len bytes at off, retrying interrupted and short reads; fewer only at the end of the
 * file. Bytes read or -errno. What block files are read with, for callers that read other
 * backing files (containers, folder ids) the same way. */
ssize_t codec_pread_all(int fd, void *buf, size_t len, uint64_t off);

#endif
