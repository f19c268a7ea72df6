// SPDX-License-Identifier: MIT
/*
 * Block file I/O (format in blockfile.h). A read fetches the sealed blocks it covers with one
 * pread and opens whole blocks straight into the caller's buffer; a write builds every block
 * it touches (merging the old partial first and last blocks, re-flagging the old last block)
 * and stores them with one pwrite, so a crash leaves each block either old or new.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "codec/store/blockfile.h"

struct codec_bf {
    int fd;
    uint8_t id[KEYS_ID_BYTES];
    const struct keys_key *content_key; /* not owned */
    struct keys_key *key;               /* per-file key */
    int fresh;                          /* made empty by this open and not changed since */
};

/* Largest stretch sealed or opened in one system call. */
#define BF_CHUNK_BLOCKS 256
#define BF_SCRATCH_BYTES (BF_CHUNK_BLOCKS * CODEC_BF_SEALED)

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
    if (memcmp(hdr, CODEC_BF_MAGIC, 6) != 0 || hdr[6] != CODEC_BF_VERSION || hdr[7] != 0 ||
        memcmp(hdr + 24, zero, sizeof(zero)) != 0)
        return -EBADMSG;
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

static void make_aad(uint8_t aad[KEYS_ID_BYTES + 9], const uint8_t *id, uint64_t index, int last)
{
    memcpy(aad, id, KEYS_ID_BYTES);
    for (int i = 0; i < 8; i++)
        aad[KEYS_ID_BYTES + i] = (uint8_t)(index >> (8 * i));
    aad[KEYS_ID_BYTES + 8] = (uint8_t)(last != 0);
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

/* Read and open one whole block of a file of `size` bytes. */
static int read_block(const struct codec_bf *bf, uint64_t index, uint64_t size, uint8_t *out,
                      uint64_t *bad_block)
{
    uint8_t sealed[CODEC_BF_SEALED];
    size_t n = block_len(index, size);
    uint64_t last = (size - 1) / CODEC_BF_BLOCK;
    ssize_t got = codec_pread_all(bf->fd, sealed, n + CODEC_BF_OVERHEAD, block_off(index));
    if (got < 0)
        return (int)got;
    int rc = (size_t)got == n + CODEC_BF_OVERHEAD
                 ? open_block(bf, index, index == last, sealed, (size_t)got, out)
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
            if ((size_t)got < at + n + CODEC_BF_OVERHEAD) {
                rc = -EBADMSG;
            } else {
                rc = open_block(bf, b, b == final, sealed + at, n + CODEC_BF_OVERHEAD, target);
            }
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
    int rc = rewrite_blocks(bf, first, last, size, new_size, buf, woff, wlen, bad_block);
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
        rc = rewrite_blocks(bf, first, last, size, new_size, buf, off, len, bad_block);
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
        /* Grow by writing zeros, a bounded stretch at a time; a stretch that fails leaves the
         * file as it was before this call, not partly grown. */
        uint64_t at = old;
        while (at < size) {
            uint64_t step = size - at < (64u << 20) ? size - at : (64u << 20);
            ssize_t n = codec_bf_write(bf, NULL, (size_t)step, at, bad_block);
            if (n < 0) {
                if (at > old)
                    (void)codec_bf_truncate(bf, old, NULL);
                return (int)n;
            }
            at += step;
        }
        return 0;
    }
    /* Shrink: the new last block keeps its first bytes and is sealed with last = 1. */
    uint64_t lastb = (size - 1) / CODEC_BF_BLOCK;
    struct kept k;
    if ((rc = keep_block(bf, lastb, &k)) == 0)
        rc = rewrite_blocks(bf, lastb, lastb, old, size, NULL, 0, 0, bad_block);
    return cut(bf, codec_bf_backing_size(size), &k, rc);
}
