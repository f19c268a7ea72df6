// SPDX-License-Identifier: MIT
/*
 * Block file I/O (format in blockfile.h). A read fetches the sealed blocks it covers with one
 * pread and opens whole blocks straight into the caller's buffer; a write builds every block
 * it touches (merging the old partial first and last blocks, re-flagging the old last block)
 * and stores them with one pwrite, so a crash leaves each block either old or new.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "codec/bytes.h"
#include "codec/store/blockfile.h"

struct codec_bf {
    int fd;
    uint8_t id[KEYS_ID_BYTES];
    const struct keys_key *content_key; /* not owned */
    struct keys_key *key;               /* per-file key */
    int fresh;                          /* made empty by this open and not changed since */
    int holes;                          /* version 2: may hold holes */
};

/* A hole: blocks [start, end), the last of them holding the end marker. */
struct hole {
    uint64_t start, end;
};

/* Associated-data flag of a block: 0 or 1 is the last flag of a data block, 2 a hole's end. */
#define BF_HOLE_END 2
/* An end marker: nonce, the sealed 8-byte first block of the hole, tag. */
#define BF_MARKER_PLAIN 8
#define BF_MARKER_LEN (CODEC_BF_NONCE + BF_MARKER_PLAIN + CODEC_BF_TAG)

/* Largest stretch sealed or opened in one system call. */
#define BF_CHUNK_BLOCKS 256
#define BF_SCRATCH_BYTES ((size_t)BF_CHUNK_BLOCKS * CODEC_BF_SEALED)

/* Each thread keeps one buffer for sealed blocks (ciphertext only, nothing secret), so a request
 * costs no allocation and no fresh, zeroed pages. Process-wide and immutable after first use:
 * the key that finds the buffer. */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;

static void scratch_init(void)
{
    (void)pthread_key_create(&scratch_key, free);
}

static uint8_t *scratch(void)
{
    if (pthread_once(&scratch_once, scratch_init) != 0)
        return NULL;
    uint8_t *p = pthread_getspecific(scratch_key);
    if (!p) {
        p = malloc(BF_SCRATCH_BYTES);
        if (p && pthread_setspecific(scratch_key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

/*
 * Split a backing size into the plaintext size, or say which block is missing or cut:
 * 32-byte header, whole sealed blocks, and a last block of 1..4096 plaintext bytes, or a single
 * empty block (28 bytes) for an empty file.
 */
static int layout(uint64_t backing_size, uint64_t *size, uint64_t *bad_block)
{
    if (backing_size < CODEC_BF_HEADER + CODEC_BF_OVERHEAD) {
        *bad_block = 0;
        return -EBADMSG;
    }
    uint64_t body = backing_size - CODEC_BF_HEADER;
    uint64_t q = body / CODEC_BF_SEALED, r = body % CODEC_BF_SEALED;
    if (r == 0 || r > CODEC_BF_OVERHEAD || (r == CODEC_BF_OVERHEAD && q == 0)) {
        *size = q * CODEC_BF_BLOCK + (r ? r - CODEC_BF_OVERHEAD : 0);
        return 0;
    }
    *bad_block = q;
    return -EBADMSG;
}

uint64_t codec_bf_plain_size(uint64_t backing_size)
{
    uint64_t size = 0, bad = 0;
    if (layout(backing_size, &size, &bad) == 0)
        return size;
    /* Include the damaged block, so that reading it reaches us and gets its error, rather than
     * the kernel ending the file quietly before it. */
    return (bad + 1) * CODEC_BF_BLOCK;
}

uint64_t codec_bf_backing_size(uint64_t plain_size)
{
    if (plain_size == 0)
        return CODEC_BF_HEADER + CODEC_BF_OVERHEAD;
    uint64_t q = plain_size / CODEC_BF_BLOCK, r = plain_size % CODEC_BF_BLOCK;
    return CODEC_BF_HEADER + q * CODEC_BF_SEALED + (r ? r + CODEC_BF_OVERHEAD : 0);
}

ssize_t codec_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    return 0;
}

static int set_id(struct codec_bf *bf, const uint8_t id[KEYS_ID_BYTES])
{
    struct keys_key *key = NULL;
    int rc =
        keys_key_derive(bf->content_key, CODEC_BF_KEY_LABEL, id, KEYS_ID_BYTES, KEYS_KEY_GCM, &key);
    if (rc != 0)
        return rc;
    memcpy(bf->id, id, KEYS_ID_BYTES);
    keys_key_free(bf->key);
    bf->key = key;
    return 0;
}

static int parse_header(struct codec_bf *bf, const uint8_t *hdr)
{
    static const uint8_t zero[8];
    if (memcmp(hdr, CODEC_BF_MAGIC, 6) != 0 ||
        (hdr[6] != CODEC_BF_VERSION && hdr[6] != CODEC_BF_VERSION_HOLES) || hdr[7] != 0 ||
        memcmp(hdr + 24, zero, sizeof(zero)) != 0)
        return -EBADMSG;
    bf->holes = hdr[6] == CODEC_BF_VERSION_HOLES;
    return set_id(bf, hdr + 8);
}

static int seal_one(const struct codec_bf *bf, uint64_t index, int last, const uint8_t *in,
                    size_t n, uint8_t *out);

/* A new file: header with a fresh id, then the sealed empty block. */
static int init_empty(struct codec_bf *bf)
{
    uint8_t buf[CODEC_BF_HEADER + CODEC_BF_OVERHEAD] = {0}, id[KEYS_ID_BYTES];
    memcpy(buf, CODEC_BF_MAGIC, 6);
    buf[6] = CODEC_BF_VERSION;
    int rc = keys_random(id, sizeof(id));
    if (rc != 0)
        return rc;
    memcpy(buf + 8, id, KEYS_ID_BYTES);
    if ((rc = set_id(bf, id)) != 0 || (rc = seal_one(bf, 0, 1, id, 0, buf + CODEC_BF_HEADER)) != 0)
        return rc;
    return pwrite_full(bf->fd, buf, sizeof(buf), 0);
}

int codec_bf_open(int fd, const struct keys_key *content_key, int create, struct codec_bf **out)
{
    uint8_t hdr[CODEC_BF_HEADER];
    struct codec_bf *bf = calloc(1, sizeof(*bf));
    int rc = 0, locked = 0;
    if (!bf)
        return -ENOMEM;
    bf->fd = fd;
    bf->content_key = content_key;
    ssize_t n = codec_pread_all(fd, hdr, sizeof(hdr), 0);
    if (n == 0 && create) {
        /* Two creators of one new file must agree on its id: decide under a file lock. A
         * backing that cannot lock fails the create rather than risk two ids in one file
         * (fs/ makes new files under a private temporary name, where no one competes). */
        if (flock(fd, LOCK_EX) != 0) {
            rc = -errno;
            codec_bf_close(bf);
            return rc;
        }
        locked = 1;
        n = codec_pread_all(fd, hdr, sizeof(hdr), 0);
        if (n == 0) {
            rc = init_empty(bf);
            bf->fresh = rc == 0;
            n = -1; /* done: nothing to parse */
        }
    }
    if (rc == 0 && n >= 0)
        rc = (size_t)n == sizeof(hdr) ? parse_header(bf, hdr) : -EBADMSG;
    if (rc == 0 && n >= 0) {
        /* An empty file is never read (its size says there is nothing), so prove it here. */
        uint64_t size = 1;
        uint8_t none[1];
        if (codec_bf_size(bf, &size) == 0 && size == 0 && codec_bf_read(bf, none, 1, 0, NULL) < 0)
            rc = -EBADMSG;
    } else if (rc == 0 && n < -1)
        rc = (int)n;
    if (locked)
        (void)flock(fd, LOCK_UN);
    if (rc != 0) {
        codec_bf_close(bf);
        return rc;
    }
    *out = bf;
    return 0;
}

int codec_bf_create(int fd, const struct keys_key *content_key, struct codec_bf **out)
{
    struct codec_bf *bf = calloc(1, sizeof(*bf));
    if (!bf)
        return -ENOMEM;
    bf->fd = fd;
    bf->content_key = content_key;
    int rc = init_empty(bf);
    if (rc != 0) {
        codec_bf_close(bf);
        return rc;
    }
    bf->fresh = 1;
    *out = bf;
    return 0;
}

void codec_bf_close(struct codec_bf *bf)
{
    if (!bf)
        return;
    keys_key_free(bf->key);
    free(bf);
}

void codec_bf_set_fd(struct codec_bf *bf, int fd)
{
    bf->fd = fd;
}

void codec_bf_file_id(const struct codec_bf *bf, uint8_t id[KEYS_ID_BYTES])
{
    memcpy(id, bf->id, KEYS_ID_BYTES);
}

/* Plaintext size, or -EBADMSG with the damaged block when the backing size is impossible. */
static int checked_size(const struct codec_bf *bf, uint64_t *size, uint64_t *bad_block)
{
    struct stat st;
    uint64_t bad = 0;
    *size = 0;
    if (fstat(bf->fd, &st) != 0)
        return -errno;
    int rc = layout((uint64_t)st.st_size, size, &bad);
    if (rc != 0 && bad_block)
        *bad_block = bad;
    return rc;
}

int codec_bf_size(const struct codec_bf *bf, uint64_t *size)
{
    return checked_size(bf, size, NULL);
}

/* flag: the last flag (0, 1) of a data block, or BF_HOLE_END. */
static void make_aad(uint8_t aad[KEYS_ID_BYTES + 9], const uint8_t *id, uint64_t index, int flag)
{
    memcpy(aad, id, KEYS_ID_BYTES);
    codec_put_le64(aad + KEYS_ID_BYTES, index);
    aad[KEYS_ID_BYTES + 8] = (uint8_t)flag;
}

/* Open sealed block `index` (sealed_len bytes at `in`, plaintext sealed_len - 28) into out. */
static int open_block(const struct codec_bf *bf, uint64_t index, int last, const uint8_t *in,
                      size_t sealed_len, uint8_t *out)
{
    uint8_t aad[KEYS_ID_BYTES + 9];
    if (sealed_len < CODEC_BF_OVERHEAD)
        return -EBADMSG;
    size_t n = sealed_len - CODEC_BF_OVERHEAD;
    make_aad(aad, bf->id, index, last);
    return keys_gcm_open(bf->key, in, aad, sizeof(aad), in + CODEC_BF_NONCE, n, out,
                         in + CODEC_BF_NONCE + n);
}

/* Seal n plaintext bytes as block `index` into out (n + 28 bytes) under the given nonce. */
static int seal_block(const struct codec_bf *bf, uint64_t index, int last, const uint8_t *in,
                      size_t n, const uint8_t nonce[CODEC_BF_NONCE], uint8_t *out)
{
    uint8_t aad[KEYS_ID_BYTES + 9];
    memcpy(out, nonce, CODEC_BF_NONCE);
    make_aad(aad, bf->id, index, last);
    return keys_gcm_seal(bf->key, out, aad, sizeof(aad), in, n, out + CODEC_BF_NONCE,
                         out + CODEC_BF_NONCE + n);
}

/* Seal one block under a fresh random nonce: see blockfile.h for the bound. */
static int seal_one(const struct codec_bf *bf, uint64_t index, int last, const uint8_t *in,
                    size_t n, uint8_t *out)
{
    uint8_t nonce[CODEC_BF_NONCE];
    int rc = keys_random(nonce, sizeof(nonce));
    return rc != 0 ? rc : seal_block(bf, index, last, in, n, nonce, out);
}

static uint64_t block_off(uint64_t index)
{
    return CODEC_BF_HEADER + index * CODEC_BF_SEALED;
}

/* Plaintext length of block `index` in a file of `size` bytes (0 if beyond). */
static size_t block_len(uint64_t index, uint64_t size)
{
    uint64_t start = index * CODEC_BF_BLOCK;
    if (start >= size)
        return 0;
    return size - start >= CODEC_BF_BLOCK ? CODEC_BF_BLOCK : (size_t)(size - start);
}

/* ---- Holes (version 2; format in blockfile.h) ---- */

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* A file's first hole makes it version 2, before the hole's marker is written, so that an
 * older reader refuses it as a version it does not know rather than as damage. */
static int allow_holes(struct codec_bf *bf)
{
    static const uint8_t v2 = CODEC_BF_VERSION_HOLES;
    if (bf->holes)
        return 0;
    int rc = pwrite_full(bf->fd, &v2, 1, 6);
    bf->holes = rc == 0;
    return rc;
}

/* Write the end marker of the hole [start, index + 1) into block index. */
static int write_marker(struct codec_bf *bf, uint64_t index, uint64_t start)
{
    uint8_t plain[BF_MARKER_PLAIN], out[BF_MARKER_LEN];
    codec_put_le64(plain, start);
    int rc = seal_one(bf, index, BF_HOLE_END, plain, sizeof(plain), out);
    return rc != 0 ? rc : pwrite_full(bf->fd, out, sizeof(out), block_off(index));
}

/* Whether block k's first bytes are in use (not all zero, or past the end of the backing). */
static int slot_used(const struct codec_bf *bf, uint64_t k, uint8_t head[BF_MARKER_LEN])
{
    ssize_t got = codec_pread_all(bf->fd, head, BF_MARKER_LEN, block_off(k));
    if (got < 0)
        return (int)got;
    return (size_t)got < BF_MARKER_LEN || !all_zero(head, BF_MARKER_LEN);
}

/*
 * A block in use in [from, hi), or hi when none is found: where the backing's own map
 * (SEEK_DATA) says data starts, or, from there, the first used block of probes at doubling
 * distances, narrowed by bisection. Inside a hole, where every block before the marker is
 * unused, that finds the marker in a few reads even where SEEK_DATA is not offered; elsewhere
 * it may find a later used block, which the caller then takes as a new upper bound.
 */
static int some_used(const struct codec_bf *bf, uint64_t from, uint64_t hi, uint64_t *out)
{
    uint8_t head[BF_MARKER_LEN];
    uint64_t lo = from;
    off_t at = lseek(bf->fd, (off_t)block_off(from), SEEK_DATA);
    if (at >= (off_t)block_off(from)) {
        uint64_t k = ((uint64_t)at - CODEC_BF_HEADER) / CODEC_BF_SEALED;
        lo = k < hi ? k : hi;
    }
    int used = lo < hi ? slot_used(bf, lo, head) : 1;
    if (used != 0) {
        *out = lo;
        return used < 0 ? used : 0;
    }
    uint64_t top = hi;
    for (uint64_t step = 1; lo + step < hi; step *= 2) {
        if ((used = slot_used(bf, lo + step, head)) < 0)
            return used;
        if (used) {
            top = lo + step;
            break;
        }
        lo += step;
    }
    while (top - lo > 1) {
        uint64_t mid = lo + (top - lo) / 2;
        if ((used = slot_used(bf, mid, head)) < 0)
            return used;
        *(used ? &top : &lo) = mid;
    }
    *out = top;
    return 0;
}

/* Open the end marker in the first bytes `head` of block `index`: the hole's first block in
 * *start, or -EBADMSG. */
static int open_marker(const struct codec_bf *bf, uint64_t index, const uint8_t head[BF_MARKER_LEN],
                       uint64_t *start)
{
    uint8_t plain[BF_MARKER_PLAIN], aad[KEYS_ID_BYTES + 9];
    make_aad(aad, bf->id, index, BF_HOLE_END);
    int rc = keys_gcm_open(bf->key, head, aad, sizeof(aad), head + CODEC_BF_NONCE, BF_MARKER_PLAIN,
                           plain, head + CODEC_BF_NONCE + BF_MARKER_PLAIN);
    *start = codec_get_le64(plain);
    return rc != 0 || *start > index ? -EBADMSG : 0;
}

/* Whether block `index` holds data (in use, and not an end marker): 1, 0, or -errno. */
static int holds_data(const struct codec_bf *bf, uint64_t index)
{
    uint8_t head[BF_MARKER_LEN];
    uint64_t start;
    int used = slot_used(bf, index, head);
    return used <= 0 ? used : open_marker(bf, index, head, &start) != 0;
}

/*
 * A hole that ends before `index` gets its end marker in block index - 1, unless that block
 * holds data: then a marker found after it named a start before it (a file written before
 * adjacent holes were merged cleanly, see punch_blocks), and the hole really starts after it.
 */
static int mark_before(struct codec_bf *bf, uint64_t index, uint64_t start)
{
    int data = holds_data(bf, index - 1);
    return data != 0 ? (data < 0 ? data : 0) : write_marker(bf, index - 1, start);
}

/*
 * Whether block `index`, below the final block `final`, lies in a hole: 1 with the hole in *h,
 * 0 when it does not (a data block, or damage that its own opening reports), or -errno. The
 * block is in a hole when it is the end marker of one, or when its first bytes are all zero
 * and a used block after it is the end marker of a hole that starts at or before it. Looking
 * for that marker, a used block that is not one (data, or a marker of a later hole) bounds
 * the search below it, until the marker is found or nothing is left.
 */
static int hole_at(const struct codec_bf *bf, uint64_t index, uint64_t final, struct hole *h)
{
    uint8_t head[BF_MARKER_LEN];
    uint64_t start = 0;
    if (!bf->holes || index >= final)
        return 0;
    int used = slot_used(bf, index, head);
    if (used != 0) {
        if (used < 0 || open_marker(bf, index, head, &start) != 0)
            return used < 0 ? used : 0;
        *h = (struct hole){start, index + 1};
        return 1;
    }
    for (uint64_t hi = final; hi > index + 1;) {
        uint64_t k = hi;
        int rc = some_used(bf, index + 1, hi, &k);
        if (rc != 0 || k >= hi)
            return rc;
        if ((used = slot_used(bf, k, head)) < 0)
            return used;
        int marker = open_marker(bf, k, head, &start) == 0;
        if (marker && start <= index) {
            *h = (struct hole){start, k + 1};
            return 1;
        }
        hi = marker ? start : k;
    }
    return 0;
}

/*
 * Open block b (its n plaintext bytes sealed at `in`) of a file whose final block is `final`
 * into out, or find it in a hole and give zeros. *h remembers the last hole found, so the
 * blocks of one read that share a hole look for it once.
 */
static int open_or_hole(const struct codec_bf *bf, uint64_t b, uint64_t final, const uint8_t *in,
                        size_t n, uint8_t *out, struct hole *h)
{
    int rc = -EBADMSG;
    if (b >= h->start && b < h->end) {
        rc = 0;
    } else if (!bf->holes || !all_zero(in, BF_MARKER_LEN)) {
        rc = open_block(bf, b, b == final, in, n + CODEC_BF_OVERHEAD, out);
        if (rc != -EBADMSG || !bf->holes)
            return rc;
    }
    if (rc != 0) {
        struct hole found;
        int in_hole = hole_at(bf, b, final, &found);
        if (in_hole <= 0)
            return in_hole < 0 ? in_hole : -EBADMSG;
        *h = found;
    }
    memset(out, 0, n);
    return 0;
}

/* Read and open one whole block of a file of `size` bytes. */
static int read_block(const struct codec_bf *bf, uint64_t index, uint64_t size, uint8_t *out,
                      uint64_t *bad_block)
{
    uint8_t sealed[CODEC_BF_SEALED];
    size_t n = block_len(index, size);
    uint64_t last = (size - 1) / CODEC_BF_BLOCK;
    struct hole none = {0, 0};
    ssize_t got = codec_pread_all(bf->fd, sealed, n + CODEC_BF_OVERHEAD, block_off(index));
    if (got < 0)
        return (int)got;
    int rc = (size_t)got == n + CODEC_BF_OVERHEAD
                 ? open_or_hole(bf, index, last, sealed, n, out, &none)
                 : -EBADMSG;
    if (rc == -EBADMSG && bad_block)
        *bad_block = index;
    return rc;
}

ssize_t codec_bf_read(const struct codec_bf *bf, void *buf, size_t len, uint64_t off,
                      uint64_t *bad_block)
{
    uint64_t size;
    int rc = checked_size(bf, &size, bad_block);
    if (rc != 0)
        return rc;
    if (size == 0 && len > 0) {
        /* An empty file still proves it is one: its empty block must open. */
        uint8_t sealed[CODEC_BF_OVERHEAD], none[1];
        ssize_t got = codec_pread_all(bf->fd, sealed, sizeof(sealed), CODEC_BF_HEADER);
        if (got < 0)
            return (int)got;
        rc = (size_t)got == sizeof(sealed) ? open_block(bf, 0, 1, sealed, sizeof(sealed), none)
                                           : -EBADMSG;
        if (rc == -EBADMSG && bad_block)
            *bad_block = 0;
        return rc;
    }
    if (off >= size || len == 0)
        return 0;
    if (len > size - off)
        len = (size_t)(size - off);
    uint64_t first = off / CODEC_BF_BLOCK, end = off + len;
    uint64_t last = (end - 1) / CODEC_BF_BLOCK, final = (size - 1) / CODEC_BF_BLOCK;
    size_t cap = (size_t)(last - first + 1 < BF_CHUNK_BLOCKS ? last - first + 1 : BF_CHUNK_BLOCKS);
    uint8_t *sealed = scratch();
    uint8_t tmp[CODEC_BF_BLOCK];
    uint8_t *dst = buf;
    struct hole hole = {0, 0};
    if (!sealed)
        return -ENOMEM;
    for (uint64_t b0 = first; b0 <= last && rc == 0; b0 += cap) {
        uint64_t b1 = b0 + cap - 1 < last ? b0 + cap - 1 : last;
        size_t want = (size_t)(b1 - b0) * CODEC_BF_SEALED + block_len(b1, size) + CODEC_BF_OVERHEAD;
        ssize_t got = codec_pread_all(bf->fd, sealed, want, block_off(b0));
        if (got < 0) {
            rc = (int)got;
            break;
        }
        for (uint64_t b = b0; b <= b1; b++) {
            size_t n = block_len(b, size);
            size_t at = (size_t)(b - b0) * CODEC_BF_SEALED;
            uint64_t bstart = b * CODEC_BF_BLOCK;
            size_t from = bstart < off ? (size_t)(off - bstart) : 0;
            size_t to = bstart + n > end ? (size_t)(end - bstart) : n;
            int whole = from == 0 && to == n;
            uint8_t *target = whole ? dst + (bstart + from - off) : tmp;
            if ((size_t)got < at + n + CODEC_BF_OVERHEAD)
                rc = -EBADMSG;
            else
                rc = open_or_hole(bf, b, final, sealed + at, n, target, &hole);
            if (rc != 0) {
                if (rc == -EBADMSG && bad_block)
                    *bad_block = b;
                break;
            }
            if (!whole)
                memcpy(dst + (bstart + from - off), tmp + from, to - from);
        }
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    if (rc != 0) {
        OPENSSL_cleanse(buf, len);
        return rc;
    }
    return (ssize_t)len;
}

/*
 * Seal blocks first..last of a file whose size becomes new_size, taking their plaintext from:
 * the old sealed blocks (for bytes below old_size not covered by [woff, woff + wlen)), buf (or
 * zeros when buf is NULL) inside that range, and zeros elsewhere. One pwrite per chunk.
 */
static int rewrite_blocks(struct codec_bf *bf, uint64_t first, uint64_t last, uint64_t old_size,
                          uint64_t new_size, const uint8_t *buf, uint64_t woff, uint64_t wlen,
                          uint64_t *bad_block)
{
    size_t cap = (size_t)(last - first + 1 < BF_CHUNK_BLOCKS ? last - first + 1 : BF_CHUNK_BLOCKS);
    uint8_t *sealed = scratch();
    uint8_t plain[CODEC_BF_BLOCK], nonces[BF_CHUNK_BLOCKS * CODEC_BF_NONCE];
    uint64_t final = (new_size - 1) / CODEC_BF_BLOCK, wend = woff + wlen;
    int rc = 0;
    if (!sealed)
        return -ENOMEM;
    for (uint64_t b0 = first; b0 <= last && rc == 0; b0 += cap) {
        uint64_t b1 = b0 + cap - 1 < last ? b0 + cap - 1 : last;
        size_t out_len = 0;
        /* One fresh random nonce per block write, drawn for the whole stretch at once (one
         * call to the CSPRNG, not one per block): see blockfile.h for the bound. */
        if ((rc = keys_random(nonces, (size_t)(b1 - b0 + 1) * CODEC_BF_NONCE)) != 0)
            break;
        for (uint64_t b = b0; b <= b1; b++) {
            uint64_t bstart = b * CODEC_BF_BLOCK;
            size_t n = block_len(b, new_size), old_n = block_len(b, old_size);
            size_t from = bstart < woff ? (size_t)(woff < bstart + n ? woff - bstart : n) : 0;
            size_t to = wend > bstart ? (wend < bstart + n ? (size_t)(wend - bstart) : n) : 0;
            if (to < from)
                to = from;
            /* Old bytes are needed when some of them survive outside the written range. */
            int need_old = old_n > 0 && (from > 0 || to < old_n);
            if (need_old) {
                rc = read_block(bf, b, old_size, plain, bad_block);
                if (rc != 0)
                    break;
            }
            const uint8_t *src = plain;
            if (buf && from == 0 && to == n) {
                src = buf + (bstart - woff); /* wholly new: seal straight from the caller */
            } else {
                if (old_n < n)
                    memset(plain + old_n, 0, n - old_n);
                if (to > from) {
                    if (buf)
                        memcpy(plain + from, buf + (bstart + from - woff), to - from);
                    else
                        memset(plain + from, 0, to - from);
                }
            }
            rc = seal_block(bf, b, b == final, src, n, nonces + (b - b0) * CODEC_BF_NONCE,
                            sealed + out_len);
            if (rc != 0)
                break;
            out_len += n + CODEC_BF_OVERHEAD;
        }
        if (rc == 0)
            rc = pwrite_full(bf->fd, sealed, out_len, block_off(b0));
    }
    OPENSSL_cleanse(plain, sizeof(plain));
    return rc;
}

/*
 * Seal a write of blocks first..last inside the file (or from inside it to past its end). In a
 * file with holes, a hole the write begins in keeps its part before the write (a new end
 * marker in the block before it, written first), and a hole that goes on after the write, one
 * the block after it lies in with a start at or before `last`, keeps its part after it (its end
 * marker names the block after the write as its start, written last), so no marker ever
 * claims a block that holds data.
 */
static int write_inside(struct codec_bf *bf, uint64_t first, uint64_t last, uint64_t size,
                        uint64_t new_size, const uint8_t *buf, uint64_t woff, uint64_t wlen,
                        uint64_t *bad_block)
{
    struct hole l = {0, 0}, r = {0, 0};
    uint64_t final = size > 0 ? (size - 1) / CODEC_BF_BLOCK : 0;
    int in_l = hole_at(bf, first, final, &l), in_r = hole_at(bf, last + 1, final, &r), rc = 0;
    if (in_l < 0 || in_r < 0)
        return in_l < 0 ? in_l : in_r;
    if (in_l && l.start < first)
        rc = mark_before(bf, first, l.start);
    if (rc == 0)
        rc = rewrite_blocks(bf, first, last, size, new_size, buf, woff, wlen, bad_block);
    if (rc == 0 && in_r && r.start <= last)
        rc = write_marker(bf, r.end - 1, last + 1);
    return rc;
}

/*
 * Seal a write that starts two or more blocks past the old final block: the old final block is
 * sealed again full and not last, the blocks between become a hole (its end marker in the
 * block before the write), and the written blocks follow. Nothing is written in the hole but
 * its marker, so a seek far past the end costs the same as a write at the end.
 */
static int write_past_end(struct codec_bf *bf, uint64_t last, uint64_t size, uint64_t new_size,
                          const uint8_t *buf, uint64_t woff, uint64_t wlen, uint64_t *bad_block)
{
    uint64_t old_final = size > 0 ? (size - 1) / CODEC_BF_BLOCK : 0;
    uint64_t first = woff / CODEC_BF_BLOCK;
    int rc = allow_holes(bf);
    if (rc == 0)
        rc = rewrite_blocks(bf, old_final, old_final, size, new_size, NULL, 0, 0, bad_block);
    if (rc == 0)
        rc = write_marker(bf, first - 1, old_final + 1);
    if (rc == 0)
        rc = rewrite_blocks(bf, first, last, size, new_size, buf, woff, wlen, bad_block);
    return rc;
}

/* Seal the blocks of a write of [woff, woff + wlen) to a file growing from size to new_size
 * (or keeping it), first..last being the blocks it must seal when it leaves no hole. */
static int seal_write(struct codec_bf *bf, uint64_t first, uint64_t last, uint64_t size,
                      uint64_t new_size, const uint8_t *buf, uint64_t woff, uint64_t wlen,
                      uint64_t *bad_block)
{
    uint64_t old_final = size > 0 ? (size - 1) / CODEC_BF_BLOCK : 0;
    if (woff / CODEC_BF_BLOCK >= old_final + 2)
        return write_past_end(bf, last, size, new_size, buf, woff, wlen, bad_block);
    return write_inside(bf, first, last, size, new_size, buf, woff, wlen, bad_block);
}

/* Cut the file back to `len` after a failed change: the one step that makes it readable again,
 * so a refusal is tried again (a transient EIO, EINTR) before it is given up. */
static int cut_back(int fd, uint64_t len)
{
    for (int tries = 0; tries < 3; tries++)
        if (ftruncate(fd, (off_t)len) == 0)
            return 0;
    return -errno;
}

/*
 * A write that makes the file longer rewrites the old last block (longer, or flagged as no
 * longer last) and appends. If it cannot complete (a full disk, EIO), the old last block is
 * put back exactly as it was and the file cut to its old length, so the bytes already stored
 * stay readable: the old sealed block is kept aside before anything is written.
 */
static int grow(struct codec_bf *bf, uint64_t first, uint64_t last, uint64_t size,
                uint64_t new_size, const uint8_t *buf, uint64_t woff, uint64_t wlen,
                uint64_t *bad_block)
{
    uint8_t old[CODEC_BF_SEALED];
    uint64_t old_backing = codec_bf_backing_size(size);
    uint64_t at = block_off(size > 0 ? (size - 1) / CODEC_BF_BLOCK : 0);
    ssize_t kept = codec_pread_all(bf->fd, old, (size_t)(old_backing - at), at);
    if (kept < 0)
        return (int)kept;
    int rc = seal_write(bf, first, last, size, new_size, buf, woff, wlen, bad_block);
    if (rc == 0)
        return 0;
    /* Put back what was there; both fit in space the file already had. */
    if ((kept > 0 && pwrite_full(bf->fd, old, (size_t)kept, at) != 0) ||
        cut_back(bf->fd, old_backing) != 0)
        rc = -EIO; /* the backing refuses even that: say so rather than ENOSPC */
    return rc;
}

ssize_t codec_bf_write(struct codec_bf *bf, const void *buf, size_t len, uint64_t off,
                       uint64_t *bad_block)
{
    uint64_t size;
    int rc;
    if (len == 0)
        return 0;
    if (off > CODEC_BF_MAX_SIZE || len > CODEC_BF_MAX_SIZE - off)
        return -EFBIG;
    if ((rc = checked_size(bf, &size, bad_block)) != 0)
        return rc;
    bf->fresh = 0;
    uint64_t end = off + len, new_size = end > size ? end : size;
    uint64_t first = (off < size ? off : size) / CODEC_BF_BLOCK;
    uint64_t last = (end - 1) / CODEC_BF_BLOCK;
    /* A full old last block that stops being last must be sealed again with last = 0. */
    if (new_size > size && size > 0 && size % CODEC_BF_BLOCK == 0 &&
        (size - 1) / CODEC_BF_BLOCK < first)
        first = (size - 1) / CODEC_BF_BLOCK;
    if (new_size == size)
        rc = seal_write(bf, first, last, size, new_size, buf, off, len, bad_block);
    else
        rc = grow(bf, first, last, size, new_size, buf, off, len, bad_block);
    return rc != 0 ? rc : (ssize_t)len;
}

/* A sealed block kept aside before it is rewritten in place. */
struct kept {
    uint8_t sealed[CODEC_BF_SEALED];
    size_t len;
    uint64_t at;
};

static int keep_block(struct codec_bf *bf, uint64_t index, struct kept *k)
{
    k->at = block_off(index);
    ssize_t n = codec_pread_all(bf->fd, k->sealed, sizeof(k->sealed), k->at);
    k->len = n > 0 ? (size_t)n : 0;
    return n < 0 ? (int)n : 0;
}

/*
 * The end of a shrink: block k was rewritten (rc 0) as the new last block; cut the file to
 * `backing`. If the cut fails, the kept block is put back, so that the file reads as before
 * (a block flagged last with old blocks after it would read as damaged: every byte lost); the
 * caller gets the cut's error, or EIO if even that write is refused. After a rewrite that
 * failed (rc), the kept block is put back too.
 */
static int cut(struct codec_bf *bf, uint64_t backing, const struct kept *k, int rc)
{
    if (rc == 0 && (rc = cut_back(bf->fd, backing)) == 0)
        return 0;
    if (k->len > 0 && pwrite_full(bf->fd, k->sealed, k->len, k->at) != 0)
        rc = -EIO;
    return rc;
}

int codec_bf_truncate(struct codec_bf *bf, uint64_t size, uint64_t *bad_block)
{
    uint64_t old;
    if (size > CODEC_BF_MAX_SIZE)
        return -EFBIG;
    if (size == 0 && bf->fresh)
        return 0; /* a file created by this open (O_CREAT | O_TRUNC): already empty */
    bf->fresh = 0;
    if (size == 0) {
        /* Needs nothing of the old contents, so it also recovers a damaged file. */
        uint8_t empty[CODEC_BF_OVERHEAD];
        struct kept k;
        int rc = keep_block(bf, 0, &k);
        if (rc == 0)
            rc = seal_one(bf, 0, 1, empty, 0, empty);
        if (rc == 0)
            rc = pwrite_full(bf->fd, empty, sizeof(empty), CODEC_BF_HEADER);
        return cut(bf, CODEC_BF_HEADER + CODEC_BF_OVERHEAD, &k, rc);
    }
    int rc = checked_size(bf, &old, bad_block);
    if (rc != 0)
        return rc;
    if (size == old)
        return 0;
    if (size > old) {
        /* Grow by writing zeros from the old end, or only the new final block (the blocks
         * between become a hole): a grow that fails leaves the file as it was. */
        uint64_t from = (size - 1) / CODEC_BF_BLOCK * CODEC_BF_BLOCK;
        if (from < old)
            from = old;
        ssize_t n = codec_bf_write(bf, NULL, (size_t)(size - from), from, bad_block);
        return n < 0 ? (int)n : 0;
    }
    /* Shrink: the new last block keeps its first bytes and is sealed with last = 1. */
    uint64_t lastb = (size - 1) / CODEC_BF_BLOCK;
    struct kept k;
    struct hole h = {0, 0};
    int in_hole = hole_at(bf, lastb, (old - 1) / CODEC_BF_BLOCK, &h);
    if (in_hole < 0)
        return in_hole;
    /* Cut inside a hole: its part before the new final block keeps an end marker. */
    if ((rc = keep_block(bf, lastb, &k)) == 0 && in_hole && h.start < lastb)
        rc = mark_before(bf, lastb, h.start);
    if (rc == 0)
        rc = rewrite_blocks(bf, lastb, lastb, old, size, NULL, 0, 0, bad_block);
    return cut(bf, codec_bf_backing_size(size), &k, rc);
}

/* Make bytes [from, to) of the backing read as zeros: deallocated where the backing can, else
 * (it cannot, or refuses this time) written. */
static int clear_range(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[65536];
    if (to <= from || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                                (off_t)(to - from)) == 0)
        return 0;
    for (uint64_t at = from; at < to; at += sizeof(zeros)) {
        size_t n = to - at < sizeof(zeros) ? (size_t)(to - at) : sizeof(zeros);
        int rc = pwrite_full(fd, zeros, n, at);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Make whole blocks [a, b) (all below the final block) a hole, merged with a hole it touches on
 * either side: the end marker is written first (in place, so it needs no new space), then the
 * other blocks are cleared, and with them the end marker of a hole that ended at a, so that
 * one marker ends the merged hole (a marker left inside would end a shorter hole there, and a
 * later write into its block would leave the merged one naming data). A failure in between
 * leaves some of the blocks still reading their old bytes, never anything else.
 */
static int punch_blocks(struct codec_bf *bf, uint64_t a, uint64_t b, uint64_t final)
{
    struct hole l = {a, a}, r = {b, b};
    int rc = allow_holes(bf);
    int in_l = rc == 0 && a > 0 ? hole_at(bf, a - 1, final, &l) : 0;
    int in_r = rc == 0 ? hole_at(bf, b, final, &r) : 0;
    if (rc != 0 || in_l < 0 || in_r < 0)
        return rc != 0 ? rc : in_l < 0 ? in_l : in_r;
    uint64_t start = in_l ? l.start : a, end = in_r ? r.end : b;
    uint64_t from = block_off(in_l && l.end == a ? a - 1 : a);
    if ((rc = write_marker(bf, end - 1, start)) != 0)
        return rc;
    if (end > b)
        return clear_range(bf->fd, from, block_off(b));
    rc = clear_range(bf->fd, from, block_off(b - 1));
    return rc != 0 ? rc : clear_range(bf->fd, block_off(b - 1) + BF_MARKER_LEN, block_off(b));
}

int codec_bf_punch(struct codec_bf *bf, uint64_t off, uint64_t len, uint64_t *bad_block)
{
    uint64_t size;
    int rc = checked_size(bf, &size, bad_block);
    if (rc != 0 || off >= size || len == 0)
        return rc;
    bf->fresh = 0;
    uint64_t end = len > size - off ? size : off + len;
    uint64_t final = (size - 1) / CODEC_BF_BLOCK;
    uint64_t a = (off + CODEC_BF_BLOCK - 1) / CODEC_BF_BLOCK, b = end / CODEC_BF_BLOCK;
    if (b > final)
        b = final; /* the final block holds the size: it stays sealed zeros */
    if (a >= b) {
        ssize_t n = codec_bf_write(bf, NULL, (size_t)(end - off), off, bad_block);
        return n < 0 ? (int)n : 0;
    }
    uint64_t head = a * CODEC_BF_BLOCK - off, tail_at = b * CODEC_BF_BLOCK;
    ssize_t n = head > 0 ? codec_bf_write(bf, NULL, (size_t)head, off, bad_block) : 0;
    if (n >= 0 && end > tail_at)
        n = codec_bf_write(bf, NULL, (size_t)(end - tail_at), tail_at, bad_block);
    return n < 0 ? (int)n : punch_blocks(bf, a, b, final);
}

/* SEEK_DATA: the first block at or after b that is not in a hole (the final block never is). */
static int seek_data(const struct codec_bf *bf, uint64_t b, uint64_t final, uint64_t *out)
{
    struct hole h = {0, 0};
    int rc;
    while ((rc = hole_at(bf, b, final, &h)) == 1)
        b = h.end;
    *out = b;
    return rc;
}

/* SEEK_HOLE: the first block at or after b in a hole (final + 1: none before the end). A data
 * block is all in use in the backing, so the backing's own next hole is where to look; a hole
 * whose blocks the backing holds as zeros is reported later, or as the end, as SEEK_HOLE
 * allows. */
static int seek_hole(const struct codec_bf *bf, uint64_t b, uint64_t final, uint64_t *out)
{
    struct hole h = {0, 0};
    int rc = 0;
    while (b < final && (rc = hole_at(bf, b, final, &h)) == 0) {
        off_t at = lseek(bf->fd, (off_t)block_off(b + 1), SEEK_HOLE);
        if (at < 0 && errno != ENXIO)
            return -errno;
        uint64_t k = at < 0 ? final : ((uint64_t)at - CODEC_BF_HEADER) / CODEC_BF_SEALED;
        b = k > b + 1 ? k : b + 1;
    }
    if (b < final && rc < 0)
        return rc;
    *out = b < final ? b : final + 1;
    return 0;
}

int codec_bf_seek(const struct codec_bf *bf, uint64_t off, int whence, uint64_t *out)
{
    uint64_t size;
    int rc = checked_size(bf, &size, NULL);
    if (rc != 0)
        return rc;
    if (off >= size)
        return -ENXIO;
    uint64_t b = off / CODEC_BF_BLOCK, final = (size - 1) / CODEC_BF_BLOCK, at = b;
    rc = whence == SEEK_DATA ? seek_data(bf, b, final, &at) : seek_hole(bf, b, final, &at);
    if (rc != 0)
        return rc;
    *out = at == b ? off : at * CODEC_BF_BLOCK < size ? at * CODEC_BF_BLOCK : size;
    return 0;
}
