// SPDX-License-Identifier: MIT
/*
 * Block file I/O (format in blockfile.h). A read fetches the sealed blocks it covers with one
 * pread and opens whole blocks straight into the caller's buffer; a write builds every block
 * it touches (merging the old partial first and last blocks, re-flagging the old last block)
 * and stores them with one pwrite, so a crash leaves each block either old or new.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "codec/blockfile.h"

struct codec_bf {
    int fd;
    int have_id;
    uint8_t id[KEYS_ID_BYTES];
    const struct keys_key *content_key; /* not owned */
    struct keys_key *key;               /* per-file key, once have_id */
};

/* Largest stretch sealed or opened in one system call. */
#define BF_CHUNK_BLOCKS 256

uint64_t codec_bf_plain_size(uint64_t backing_size)
{
    if (backing_size <= CODEC_BF_HEADER)
        return 0;
    uint64_t body = backing_size - CODEC_BF_HEADER;
    uint64_t q = body / CODEC_BF_SEALED, r = body % CODEC_BF_SEALED;
    return q * CODEC_BF_BLOCK + (r > CODEC_BF_OVERHEAD ? r - CODEC_BF_OVERHEAD : 0);
}

uint64_t codec_bf_backing_size(uint64_t plain_size)
{
    if (plain_size == 0)
        return 0;
    uint64_t q = plain_size / CODEC_BF_BLOCK, r = plain_size % CODEC_BF_BLOCK;
    return CODEC_BF_HEADER + q * CODEC_BF_SEALED + (r ? r + CODEC_BF_OVERHEAD : 0);
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
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
    bf->have_id = 1;
    return 0;
}

int codec_bf_open(int fd, const struct keys_key *content_key, struct codec_bf **out)
{
    uint8_t hdr[CODEC_BF_HEADER];
    struct codec_bf *bf = calloc(1, sizeof(*bf));
    if (!bf)
        return -ENOMEM;
    bf->fd = fd;
    bf->content_key = content_key;
    ssize_t n = pread_full(fd, hdr, sizeof(hdr), 0);
    int rc = 0;
    if (n < 0) {
        rc = (int)n;
    } else if (n > 0) {
        if ((size_t)n < sizeof(hdr) || memcmp(hdr, CODEC_BF_MAGIC, 6) != 0 ||
            hdr[6] != CODEC_BF_VERSION || hdr[7] != 0)
            rc = -EBADMSG;
        else
            rc = set_id(bf, hdr + 8);
    }
    if (rc != 0) {
        codec_bf_close(bf);
        return rc;
    }
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
    if (bf->have_id)
        memcpy(id, bf->id, KEYS_ID_BYTES);
    else
        memset(id, 0, KEYS_ID_BYTES);
}

int codec_bf_size(const struct codec_bf *bf, uint64_t *size)
{
    struct stat st;
    if (fstat(bf->fd, &st) != 0)
        return -errno;
    *size = codec_bf_plain_size((uint64_t)st.st_size);
    return 0;
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
    if (sealed_len <= CODEC_BF_OVERHEAD)
        return -EBADMSG;
    size_t n = sealed_len - CODEC_BF_OVERHEAD;
    make_aad(aad, bf->id, index, last);
    return keys_gcm_open(bf->key, in, aad, sizeof(aad), in + CODEC_BF_NONCE, n, out,
                         in + CODEC_BF_NONCE + n);
}

/* Seal n plaintext bytes as block `index` into out (n + 28 bytes). */
static int seal_block(const struct codec_bf *bf, uint64_t index, int last, const uint8_t *in,
                      size_t n, uint8_t *out)
{
    uint8_t aad[KEYS_ID_BYTES + 9];
    /* A fresh random nonce for every block write: see blockfile.h for the bound. */
    int rc = keys_random(out, CODEC_BF_NONCE);
    if (rc != 0)
        return rc;
    make_aad(aad, bf->id, index, last);
    return keys_gcm_seal(bf->key, out, aad, sizeof(aad), in, n, out + CODEC_BF_NONCE,
                         out + CODEC_BF_NONCE + n);
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
    ssize_t got = pread_full(bf->fd, sealed, n + CODEC_BF_OVERHEAD, block_off(index));
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
    int rc = codec_bf_size(bf, &size);
    if (rc != 0)
        return rc;
    if (off >= size || len == 0)
        return 0;
    if (!bf->have_id)
        return -EBADMSG;
    if (len > size - off)
        len = (size_t)(size - off);
    uint64_t first = off / CODEC_BF_BLOCK, end = off + len;
    uint64_t last = (end - 1) / CODEC_BF_BLOCK, final = (size - 1) / CODEC_BF_BLOCK;
    size_t cap = (size_t)(last - first + 1 < BF_CHUNK_BLOCKS ? last - first + 1 : BF_CHUNK_BLOCKS);
    uint8_t *sealed = malloc(cap * CODEC_BF_SEALED);
    uint8_t tmp[CODEC_BF_BLOCK];
    uint8_t *dst = buf;
    if (!sealed)
        return -ENOMEM;
    for (uint64_t b0 = first; b0 <= last && rc == 0; b0 += cap) {
        uint64_t b1 = b0 + cap - 1 < last ? b0 + cap - 1 : last;
        size_t want = (size_t)(b1 - b0) * CODEC_BF_SEALED + block_len(b1, size) + CODEC_BF_OVERHEAD;
        ssize_t got = pread_full(bf->fd, sealed, want, block_off(b0));
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
    free(sealed);
    if (rc != 0) {
        OPENSSL_cleanse(buf, len);
        return rc;
    }
    return (ssize_t)len;
}

/* Give a new file its header and id. */
static int write_header(struct codec_bf *bf)
{
    uint8_t hdr[CODEC_BF_HEADER] = {0}, id[KEYS_ID_BYTES];
    memcpy(hdr, CODEC_BF_MAGIC, 6);
    hdr[6] = CODEC_BF_VERSION;
    int rc = keys_random(id, sizeof(id));
    if (rc != 0)
        return rc;
    memcpy(hdr + 8, id, KEYS_ID_BYTES);
    rc = pwrite_full(bf->fd, hdr, sizeof(hdr), 0);
    if (rc == 0)
        rc = set_id(bf, id);
    return rc;
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
    uint8_t *sealed = malloc(cap * CODEC_BF_SEALED);
    uint8_t plain[CODEC_BF_BLOCK];
    uint64_t final = (new_size - 1) / CODEC_BF_BLOCK, wend = woff + wlen;
    int rc = 0;
    if (!sealed)
        return -ENOMEM;
    for (uint64_t b0 = first; b0 <= last && rc == 0; b0 += cap) {
        uint64_t b1 = b0 + cap - 1 < last ? b0 + cap - 1 : last;
        size_t out_len = 0;
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
            if (old_n < n)
                memset(plain + old_n, 0, n - old_n);
            if (to > from) {
                if (buf)
                    memcpy(plain + from, buf + (bstart + from - woff), to - from);
                else
                    memset(plain + from, 0, to - from);
            }
            rc = seal_block(bf, b, b == final, plain, n, sealed + out_len);
            if (rc != 0)
                break;
            out_len += n + CODEC_BF_OVERHEAD;
        }
        if (rc == 0)
            rc = pwrite_full(bf->fd, sealed, out_len, block_off(b0));
    }
    OPENSSL_cleanse(plain, sizeof(plain));
    free(sealed);
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
    if ((rc = codec_bf_size(bf, &size)) != 0)
        return rc;
    if (!bf->have_id) {
        if (size != 0)
            return -EBADMSG;
        if ((rc = write_header(bf)) != 0)
            return rc;
    }
    uint64_t end = off + len, new_size = end > size ? end : size;
    uint64_t first = (off < size ? off : size) / CODEC_BF_BLOCK;
    uint64_t last = (end - 1) / CODEC_BF_BLOCK;
    /* A full old last block that stops being last must be sealed again with last = 0. */
    if (new_size > size && size > 0 && size % CODEC_BF_BLOCK == 0)
        first = (size - 1) / CODEC_BF_BLOCK;
    rc = rewrite_blocks(bf, first, last, size, new_size, buf, off, len, bad_block);
    return rc != 0 ? rc : (ssize_t)len;
}

int codec_bf_truncate(struct codec_bf *bf, uint64_t size, uint64_t *bad_block)
{
    uint64_t old;
    int rc = codec_bf_size(bf, &old);
    if (rc != 0)
        return rc;
    if (size > CODEC_BF_MAX_SIZE)
        return -EFBIG;
    if (size == old)
        return 0;
    if (size > old) {
        /* Grow by writing zeros, a bounded stretch at a time. */
        while (old < size) {
            uint64_t step = size - old < (64u << 20) ? size - old : (64u << 20);
            ssize_t n = codec_bf_write(bf, NULL, (size_t)step, old, bad_block);
            if (n < 0)
                return (int)n;
            old += step;
        }
        return 0;
    }
    if (size == 0)
        return ftruncate(bf->fd, bf->have_id ? CODEC_BF_HEADER : 0) == 0 ? 0 : -errno;
    /* Shrink: the new last block keeps its first bytes and is sealed with last = 1. */
    uint64_t lastb = (size - 1) / CODEC_BF_BLOCK;
    rc = rewrite_blocks(bf, lastb, lastb, old, size, NULL, 0, 0, bad_block);
    if (rc == 0 && ftruncate(bf->fd, (off_t)codec_bf_backing_size(size)) != 0)
        rc = -errno;
    return rc;
}
