// SPDX-License-Identifier: MIT
/*
 * Unit tests of codec/: the block file against an in-memory model of the plaintext, its size
 * arithmetic, and every tampering it must refuse.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "codec/store/blockfile.h"
#include "keys/keys.h"

static struct keys_key *test_key(uint8_t seed)
{
    /* A content key derived through the public API from a throwaway keyring-free path: a
     * child of a child keeps raw bytes out of the test. */
    struct keys_key *root = NULL, *k = NULL;
    uint8_t ctx[16];
    memset(ctx, seed, sizeof(ctx));
    /* keys_key_derive needs a parent; make one from a fresh random subkey chain. */
    extern int keys_key_from_bytes(const uint8_t *, enum keys_key_kind, struct keys_key **);
    uint8_t raw[32];
    memset(raw, seed, sizeof(raw));
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_GCM, &root), 0);
    ck_assert_int_eq(keys_key_derive(root, "content", ctx, sizeof(ctx), KEYS_KEY_GCM, &k), 0);
    keys_key_free(root);
    return k;
}

static int temp_file(char *path)
{
    strcpy(path, "/tmp/imgc-bf-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    return fd;
}

START_TEST(test_sizes)
{
    ck_assert_uint_eq(codec_bf_backing_size(0), 60);
    ck_assert_uint_eq(codec_bf_backing_size(1), 32 + 1 + 28);
    ck_assert_uint_eq(codec_bf_backing_size(4096), 32 + 4124);
    ck_assert_uint_eq(codec_bf_backing_size(4097), 32 + 4124 + 1 + 28);
    for (uint64_t s = 0; s < 3 * 4096 + 5; s += 7)
        ck_assert_uint_eq(codec_bf_plain_size(codec_bf_backing_size(s)), s);
    ck_assert_uint_eq(codec_bf_plain_size(60), 0);
    /* Impossible sizes count the damaged block in, so that reading it reports the damage. */
    ck_assert_uint_eq(codec_bf_plain_size(32), 4096);
    ck_assert_uint_eq(codec_bf_plain_size(0), 4096);
    ck_assert_uint_eq(codec_bf_plain_size(32 + 4124 + 10), 8192);
    ck_assert_uint_eq(codec_bf_plain_size(32 + 4124 + 28), 8192);
}
END_TEST

/* Random writes (past the end too: holes), truncates and punched holes within `span` bytes,
 * against a model; then read everything back. Writes, truncates and punches are often whole
 * blocks, so holes meet, merge and split. */
static void run_model(unsigned seed, size_t span)
{
    char path[64];
    int fd = temp_file(path);
    struct keys_key *k = test_key(1);
    struct codec_bf *bf = NULL;
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    size_t cap = span + span / 4, size = 0;
    uint8_t *model = calloc(1, cap), *buf = malloc(cap), *data = malloc(cap);
    srand(seed);
    for (int op = 0; op < 3000; op++) {
        int kind = rand() % 12;
        if (kind < 7) {
            size_t off = (size_t)rand() % span, len = (size_t)rand() % (span / 8) + 1;
            if (rand() % 4 == 0)
                off = off / 4096 * 4096; /* aligned writes too */
            for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)rand();
            ck_assert_int_eq(codec_bf_write(bf, data, len, off, NULL), (ssize_t)len);
            memcpy(model + off, data, len);
            if (off + len > size)
                size = off + len;
        } else if (kind < 9) {
            size_t ns = (size_t)rand() % (span + span / 8);
            if (rand() % 2 == 0)
                ns = ns / 4096 * 4096;
            ck_assert_int_eq(codec_bf_truncate(bf, ns, NULL), 0);
            if (ns > size)
                memset(model + size, 0, ns - size);
            else
                memset(model + ns, 0, size - ns);
            size = ns;
        } else if (kind == 9) {
            size_t off = (size_t)rand() % (size + 1), len = (size_t)rand() % (span / 4) + 1;
            if (rand() % 2 == 0)
                off = off / 4096 * 4096;
            if (rand() % 2 == 0)
                len = (len + 4095) / 4096 * 4096;
            ck_assert_int_eq(codec_bf_punch(bf, off, len, NULL), 0);
            if (off < size)
                memset(model + off, 0, len < size - off ? len : size - off);
        } else {
            size_t off = (size_t)rand() % (size + 1), len = (size_t)rand() % (span / 5);
            ssize_t n = codec_bf_read(bf, buf, len, off, NULL);
            size_t want = off >= size ? 0 : (len < size - off ? len : size - off);
            ck_assert_int_eq(n, (ssize_t)want);
            ck_assert_mem_eq(buf, model + off, want);
        }
        uint64_t s = 0;
        ck_assert_int_eq(codec_bf_size(bf, &s), 0);
        ck_assert_uint_eq(s, size);
    }
    ck_assert_int_eq(codec_bf_read(bf, buf, cap, 0, NULL), (ssize_t)size);
    ck_assert_mem_eq(buf, model, size);
    codec_bf_close(bf);
    /* Reopening sees the same file. */
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_read(bf, buf, cap, 0, NULL), (ssize_t)size);
    ck_assert_mem_eq(buf, model, size);
    codec_bf_close(bf);
    keys_key_free(k);
    free(model);
    free(buf);
    free(data);
    close(fd);
    unlink(path);
}

/* Files of up to 37 blocks (several seeds). */
START_TEST(test_model)
{
    run_model(42 + (unsigned)_i, 150000);
}
END_TEST

/* Files of up to 16 blocks: holes side by side are frequent (several seeds). */
START_TEST(test_model_small)
{
    run_model(1042 + (unsigned)_i, 16 * 4096);
}
END_TEST

/* Write `blocks` full blocks of a pattern plus a partial one into a fresh file. */
static int make_file(char *path, struct keys_key *k, size_t len, uint8_t seed)
{
    int fd = temp_file(path);
    struct codec_bf *bf = NULL;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 7 + seed);
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, data, len, 0, NULL), (ssize_t)len);
    codec_bf_close(bf);
    free(data);
    return fd;
}

/* Read the whole file; return the first failing block or -1 if all is well. */
static long read_all(int fd, struct keys_key *k, uint8_t seed)
{
    struct codec_bf *bf = NULL;
    int rc = codec_bf_open(fd, k, 1, &bf);
    if (rc != 0)
        return -2;
    uint64_t size = 0, bad = UINT64_MAX;
    codec_bf_size(bf, &size);
    uint8_t *buf = malloc(size + 1);
    ssize_t n = codec_bf_read(bf, buf, size, 0, &bad);
    long result = -1;
    if (n == -EBADMSG) {
        result = (long)bad;
        for (uint64_t i = 0; i < size; i++)
            ck_assert_int_eq(buf[i], 0); /* wiped, never partial plaintext */
    } else {
        ck_assert_int_eq(n, (ssize_t)size);
        for (uint64_t i = 0; i < size; i++)
            ck_assert_int_eq(buf[i], (uint8_t)(i * 7 + seed));
    }
    free(buf);
    codec_bf_close(bf);
    return result;
}

static void pread_block(int fd, uint64_t i, uint8_t *b)
{
    ck_assert_int_eq(pread(fd, b, CODEC_BF_SEALED, 32 + (off_t)i * CODEC_BF_SEALED),
                     CODEC_BF_SEALED);
}

static void pwrite_block(int fd, uint64_t i, const uint8_t *b)
{
    ck_assert_int_eq(pwrite(fd, b, CODEC_BF_SEALED, 32 + (off_t)i * CODEC_BF_SEALED),
                     CODEC_BF_SEALED);
}

START_TEST(test_tamper)
{
    char p1[64], p2[64];
    struct keys_key *k = test_key(2);
    size_t len = 4 * 4096 + 100;
    uint8_t a[CODEC_BF_SEALED], b[CODEC_BF_SEALED];

    /* Untouched file reads fine. */
    int fd = make_file(p1, k, len, 1);
    ck_assert_int_eq(read_all(fd, k, 1), -1);

    /* Flip one byte of block 1 (in the nonce, the ciphertext and the tag). */
    for (int where = 0; where < 3; where++) {
        off_t at = 32 + CODEC_BF_SEALED + (where == 0 ? 3 : where == 1 ? 2000 : 4120);
        uint8_t c;
        ck_assert_int_eq(pread(fd, &c, 1, at), 1);
        c ^= 0x01;
        ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
        ck_assert_int_eq(read_all(fd, k, 1), 1);
        c ^= 0x01;
        ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
        ck_assert_int_eq(read_all(fd, k, 1), -1);
    }

    /* Swap blocks 0 and 2. */
    pread_block(fd, 0, a);
    pread_block(fd, 2, b);
    pwrite_block(fd, 0, b);
    pwrite_block(fd, 2, a);
    ck_assert_int_eq(read_all(fd, k, 1), 0);
    pwrite_block(fd, 0, a);
    pwrite_block(fd, 2, b);

    /* Move block 1 of another file (same key, same position) into this one. */
    int fd2 = make_file(p2, k, len, 1);
    pread_block(fd2, 1, b);
    pread_block(fd, 1, a);
    pwrite_block(fd, 1, b);
    ck_assert_int_eq(read_all(fd, k, 1), 1);
    pwrite_block(fd, 1, a);

    /* Zero a block. */
    memset(b, 0, sizeof(b));
    pwrite_block(fd, 2, b);
    ck_assert_int_eq(read_all(fd, k, 1), 2);
    pread_block(fd2, 2, b); /* restore from the twin is not possible: rebuild the file */
    close(fd);
    unlink(p1);
    fd = make_file(p1, k, len, 1);

    /* Truncate at a block boundary: drop the partial last block, then the last full one. */
    ck_assert_int_eq(ftruncate(fd, 32 + 4 * CODEC_BF_SEALED), 0);
    ck_assert_int_eq(read_all(fd, k, 1), 3);
    ck_assert_int_eq(ftruncate(fd, 32 + 2 * CODEC_BF_SEALED), 0);
    ck_assert_int_eq(read_all(fd, k, 1), 1);

    /* Cut down to the header alone, or to nothing: refused, not an empty file. */
    {
        char p3[64];
        int f3 = make_file(p3, k, 100, 1);
        ck_assert_int_eq(ftruncate(f3, 32), 0);
        ck_assert_int_eq(read_all(f3, k, 1), 0);
        ck_assert_int_eq(ftruncate(f3, 0), 0);
        struct codec_bf *nb = NULL;
        ck_assert_int_eq(codec_bf_open(f3, k, 0, &nb), -EBADMSG);
        close(f3);
        unlink(p3);
        /* An empty file whose empty block was replaced by garbage is refused too. */
        f3 = make_file(p3, k, 1, 1);
        ck_assert_int_eq(ftruncate(f3, 0), 0);
        ck_assert_int_eq(codec_bf_open(f3, k, 1, &nb), 0);
        /* O_CREAT | O_TRUNC on the file this open just made costs nothing more... */
        struct stat before, after;
        ck_assert_int_eq(fstat(f3, &before), 0);
        ck_assert_int_eq(codec_bf_truncate(nb, 0, NULL), 0);
        ck_assert_int_eq(fstat(f3, &after), 0);
        ck_assert_int_eq(before.st_size, 60);
        ck_assert_int_eq(after.st_size, 60);
        /* ...but once it was written, truncation seals a new empty block. */
        ck_assert_int_eq(codec_bf_write(nb, "z", 1, 0, NULL), 1);
        ck_assert_int_eq(codec_bf_truncate(nb, 0, NULL), 0);
        uint8_t junk[28];
        memset(junk, 0x5a, sizeof(junk));
        ck_assert_int_eq(pwrite(f3, junk, sizeof(junk), 32), 28);
        uint8_t one;
        uint64_t badb = 99;
        ck_assert_int_eq(codec_bf_read(nb, &one, 1, 0, &badb), -EBADMSG);
        ck_assert_uint_eq(badb, 0);
        struct codec_bf *again = NULL;
        ck_assert_int_eq(codec_bf_open(f3, k, 0, &again), -EBADMSG);
        /* Truncating to zero repairs it. */
        ck_assert_int_eq(codec_bf_truncate(nb, 0, NULL), 0);
        ck_assert_int_eq(codec_bf_read(nb, &one, 1, 0, NULL), 0);
        codec_bf_close(nb);
        close(f3);
        unlink(p3);
    }

    /* A damaged header is refused at open. */
    uint8_t m = 'X';
    ck_assert_int_eq(pwrite(fd, &m, 1, 0), 1);
    ck_assert_int_eq(read_all(fd, k, 1), -2);

    /* The wrong key opens nothing. */
    close(fd);
    unlink(p1);
    fd = make_file(p1, k, len, 1);
    struct keys_key *other = test_key(3);
    ck_assert_int_eq(read_all(fd, other, 1), 0);
    keys_key_free(other);

    close(fd);
    close(fd2);
    unlink(p1);
    unlink(p2);
    keys_key_free(k);
}
END_TEST

START_TEST(test_fresh_ids)
{
    char p1[64], p2[64];
    struct keys_key *k = test_key(4);
    int f1 = make_file(p1, k, 5000, 9), f2 = make_file(p2, k, 5000, 9);
    uint8_t h1[32], h2[32], b1[5000 + 100], b2[5000 + 100];
    ck_assert_int_eq(pread(f1, h1, 32, 0), 32);
    ck_assert_int_eq(pread(f2, h2, 32, 0), 32);
    ck_assert_mem_eq(h1, "IMGCBF", 6);
    ck_assert(memcmp(h1 + 8, h2 + 8, 16) != 0); /* distinct file ids */
    ssize_t n1 = pread(f1, b1, sizeof(b1), 32), n2 = pread(f2, b2, sizeof(b2), 32);
    ck_assert_int_eq(n1, n2);
    ck_assert(memcmp(b1, b2, (size_t)n1) != 0); /* same content, different ciphertext */
    /* Rewriting the same bytes changes the stored block (fresh nonce). */
    struct codec_bf *bf = NULL;
    uint8_t before[CODEC_BF_SEALED], after[CODEC_BF_SEALED], same[10];
    ck_assert_int_eq(pread(f1, before, sizeof(before), 32), (ssize_t)sizeof(before));
    ck_assert_int_eq(codec_bf_open(f1, k, 0, &bf), 0);
    ck_assert_int_eq(codec_bf_read(bf, same, 10, 0, NULL), 10);
    ck_assert_int_eq(codec_bf_write(bf, same, 10, 0, NULL), 10);
    codec_bf_close(bf);
    ck_assert_int_eq(pread(f1, after, sizeof(after), 32), (ssize_t)sizeof(after));
    ck_assert(memcmp(before, after, CODEC_BF_NONCE) != 0);
    close(f1);
    close(f2);
    unlink(p1);
    unlink(p2);
    keys_key_free(k);
}
END_TEST

START_TEST(test_empty_and_holes)
{
    char path[64];
    int fd = temp_file(path);
    struct keys_key *k = test_key(5);
    struct codec_bf *bf = NULL;
    uint8_t buf[20000];
    struct stat st;
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_read(bf, buf, 10, 0, NULL), 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, 60); /* header and the sealed empty block */
    /* A write far past the end leaves a hole that reads as zeros. */
    ck_assert_int_eq(codec_bf_write(bf, "xyz", 3, 10000, NULL), 3);
    ck_assert_int_eq(codec_bf_read(bf, buf, sizeof(buf), 0, NULL), 10003);
    for (int i = 0; i < 10000; i++)
        ck_assert_int_eq(buf[i], 0);
    ck_assert_mem_eq(buf + 10000, "xyz", 3);
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq((uint64_t)st.st_size, codec_bf_backing_size(10003));
    ck_assert_int_eq(codec_bf_truncate(bf, 0, NULL), 0);
    ck_assert_int_eq(codec_bf_read(bf, buf, 10, 0, NULL), 0);
    ck_assert_int_eq(codec_bf_write(bf, NULL, 5, CODEC_BF_MAX_SIZE, NULL), -EFBIG);
    codec_bf_close(bf);
    keys_key_free(k);
    close(fd);
    unlink(path);
}
END_TEST

/* Growing a file whose last block is full, by a write that starts before that block. */
START_TEST(test_grow_from_inside)
{
    char path[64];
    int fd = temp_file(path);
    struct keys_key *k = test_key(6);
    struct codec_bf *bf = NULL;
    static uint8_t a[8192], b[10000], out[12000];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, a, sizeof(a), 0, NULL), (ssize_t)sizeof(a));
    ck_assert_int_eq(codec_bf_write(bf, b, sizeof(b), 0, NULL), (ssize_t)sizeof(b));
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 0, NULL), 10000);
    ck_assert_mem_eq(out, b, sizeof(b));
    /* And from the middle of an earlier block, growing by less than a block. */
    ck_assert_int_eq(codec_bf_truncate(bf, 8192, NULL), 0);
    ck_assert_int_eq(codec_bf_write(bf, a, 5000, 3000, NULL), 5000);
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 0, NULL), 8192);
    ck_assert_mem_eq(out, b, 3000);
    ck_assert_mem_eq(out + 3000, a, 5000);
    ck_assert_mem_eq(out + 8000, b, 192);
    ck_assert_int_eq(codec_bf_write(bf, a, 6000, 4000, NULL), 6000);
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 0, NULL), 10000);
    ck_assert_mem_eq(out + 4000, a, 6000);
    codec_bf_close(bf);
    keys_key_free(k);
    close(fd);
    unlink(path);
}
END_TEST

/* A write that grows the file and cannot complete (the backing refuses more bytes, as on a
 * full disk; here a file size limit) leaves every byte already stored readable, and later
 * writes work once there is room again. Check runs each test in its own process, so the
 * limit stays here. */
START_TEST(test_failed_grow_keeps_data)
{
    char path[64];
    int fd = temp_file(path);
    struct keys_key *k = test_key(7);
    struct codec_bf *bf = NULL;
    static uint8_t data[10000], more[20000], out[40000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 1);
    memset(more, 'm', sizeof(more));
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 0, NULL), (ssize_t)sizeof(data));
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = codec_bf_backing_size(sizeof(data)) + 100,
                         .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    /* An append, a truncate-grow, and a write past the end all fail ... */
    ck_assert_int_eq(codec_bf_write(bf, more, sizeof(more), sizeof(data), NULL), -EFBIG);
    ck_assert_int_eq(codec_bf_truncate(bf, 30000, NULL), -EFBIG);
    ck_assert_int_eq(codec_bf_write(bf, more, 10, 25000, NULL), -EFBIG);
    /* ... and the file is as it was. */
    uint64_t size = 0;
    ck_assert_int_eq(codec_bf_size(bf, &size), 0);
    ck_assert_uint_eq(size, sizeof(data));
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 0, NULL), (ssize_t)sizeof(data));
    ck_assert_mem_eq(out, data, sizeof(data));
    lim.rlim_cur = RLIM_INFINITY;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_int_eq(codec_bf_write(bf, more, sizeof(more), sizeof(data), NULL),
                     (ssize_t)sizeof(more));
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 0, NULL), 30000);
    ck_assert_mem_eq(out, data, sizeof(data));
    ck_assert_mem_eq(out + sizeof(data), more, sizeof(more));
    /* An empty file that cannot grow stays a readable empty file. */
    ck_assert_int_eq(codec_bf_truncate(bf, 0, NULL), 0);
    lim.rlim_cur = codec_bf_backing_size(0) + 10;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_int_eq(codec_bf_write(bf, more, 5000, 0, NULL), -EFBIG);
    ck_assert_int_eq(codec_bf_read(bf, out, 10, 0, NULL), 0);
    codec_bf_close(bf);
    keys_key_free(k);
    close(fd);
    unlink(path);
}
END_TEST

/* Blocks of the backing file actually stored, in bytes. */
static uint64_t allocated(int fd)
{
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

/* Growth by truncate and by a write far past the end costs the blocks it writes, not the size;
 * punched blocks are given back; every byte reads as the model says. */
START_TEST(test_sparse_cost)
{
    char path[64];
    int fd = temp_file(path);
    struct keys_key *k = test_key(7);
    struct codec_bf *bf = NULL;
    static uint8_t data[65536], out[65536];
    const uint64_t tb = (uint64_t)1 << 40;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13 + 5);
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, data, 10000, 0, NULL), 10000);
    ck_assert_int_eq(codec_bf_truncate(bf, tb, NULL), 0);
    uint64_t size = 0;
    ck_assert_int_eq(codec_bf_size(bf, &size), 0);
    ck_assert_uint_eq(size, tb);
    ck_assert_uint_lt(allocated(fd), 64 * 1024);
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), tb / 2 + 1234, NULL),
                     (ssize_t)sizeof(out));
    for (size_t i = 0; i < sizeof(out); i++)
        ck_assert_int_eq(out[i], 0);
    ck_assert_int_eq(codec_bf_read(bf, out, 10000, 0, NULL), 10000);
    ck_assert_mem_eq(out, data, 10000);
    ck_assert_int_eq(codec_bf_read(bf, out, 100, tb - 100, NULL), 100);
    for (size_t i = 0; i < 100; i++)
        ck_assert_int_eq(out[i], 0);
    /* A write in the middle of the hole splits it: both parts still read as zeros. */
    const uint64_t mid = tb / 3 + 77;
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), mid, NULL), (ssize_t)sizeof(data));
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), mid, NULL), (ssize_t)sizeof(out));
    ck_assert_mem_eq(out, data, sizeof(data));
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), mid - 40000, NULL), (ssize_t)sizeof(out));
    for (size_t i = 0; i < 40000; i++)
        ck_assert_int_eq(out[i], 0);
    ck_assert_mem_eq(out + 40000, data, sizeof(out) - 40000);
    ck_assert_int_eq(codec_bf_read(bf, out, 5000, mid + sizeof(data), NULL), 5000);
    for (size_t i = 0; i < 5000; i++)
        ck_assert_int_eq(out[i], 0);
    ck_assert_uint_lt(allocated(fd), 256 * 1024);
    /* SEEK_DATA and SEEK_HOLE see the holes. */
    uint64_t at = 0, mid_block = mid / 4096 * 4096;
    uint64_t after = (mid + sizeof(data) + 4095) / 4096 * 4096;
    ck_assert_int_eq(codec_bf_seek(bf, 0, SEEK_HOLE, &at), 0);
    ck_assert_uint_eq(at, 12288);
    ck_assert_int_eq(codec_bf_seek(bf, 5, SEEK_DATA, &at), 0);
    ck_assert_uint_eq(at, 5);
    ck_assert_int_eq(codec_bf_seek(bf, 20000, SEEK_DATA, &at), 0);
    ck_assert_uint_eq(at, mid_block);
    ck_assert_int_eq(codec_bf_seek(bf, 20000, SEEK_HOLE, &at), 0);
    ck_assert_uint_eq(at, 20000);
    ck_assert_int_eq(codec_bf_seek(bf, mid + 1, SEEK_HOLE, &at), 0);
    ck_assert_uint_eq(at, after);
    ck_assert_int_eq(codec_bf_seek(bf, after, SEEK_DATA, &at), 0);
    ck_assert_uint_eq(at, tb - 4096);
    ck_assert_int_eq(codec_bf_seek(bf, tb - 10, SEEK_HOLE, &at), 0);
    ck_assert_uint_eq(at, tb);
    ck_assert_int_eq(codec_bf_seek(bf, tb, SEEK_DATA, &at), -ENXIO);
    /* Cut inside the hole, then a write far past the new end. */
    ck_assert_int_eq(codec_bf_truncate(bf, tb / 4 + 3, NULL), 0);
    ck_assert_int_eq(codec_bf_read(bf, out, 10, tb / 4 - 7, NULL), 10);
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(out[i], 0);
    ck_assert_int_eq(codec_bf_write(bf, "end", 3, tb / 2, NULL), 3);
    ck_assert_int_eq(codec_bf_read(bf, out, 10, tb / 2 - 5, NULL), 8);
    ck_assert_mem_eq(out + 5, "end", 3);
    /* Punching the data back out gives its blocks back. */
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 4096 * 100, NULL),
                     (ssize_t)sizeof(data));
    uint64_t before = allocated(fd);
    ck_assert_int_eq(codec_bf_punch(bf, 4096 * 100, sizeof(data), NULL), 0);
    ck_assert_uint_lt(allocated(fd), before - 32768);
    ck_assert_int_eq(codec_bf_read(bf, out, sizeof(out), 4096 * 100, NULL), (ssize_t)sizeof(out));
    for (size_t i = 0; i < sizeof(out); i++)
        ck_assert_int_eq(out[i], 0);
    ck_assert_int_eq(codec_bf_read(bf, out, 10000, 0, NULL), 10000);
    ck_assert_mem_eq(out, data, 10000);
    codec_bf_close(bf);
    /* Reopened, the same. */
    ck_assert_int_eq(codec_bf_open(fd, k, 0, &bf), 0);
    ck_assert_int_eq(codec_bf_read(bf, out, 10, tb / 2 - 5, NULL), 8);
    ck_assert_mem_eq(out + 5, "end", 3);
    ck_assert_int_eq(codec_bf_read(bf, out, 1000, tb / 8, NULL), 1000);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_int_eq(out[i], 0);
    codec_bf_close(bf);
    keys_key_free(k);
    close(fd);
    unlink(path);
}
END_TEST

/* Holes punched side by side merge into one; data written later into the block that ended the
 * first of them, then into the block after it, stays (a marker once overwrote it: the merged
 * hole's marker still named the first hole's start). Also in a file as earlier versions left
 * it, the first hole's marker still in place inside the merged hole. */
START_TEST(test_adjacent_holes)
{
    char path[64];
    struct keys_key *k = test_key(9);
    static uint8_t data[4096 * 40], out[4096 * 40];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 11 + 3);
    static uint8_t marker[CODEC_BF_SEALED];
    for (int variant = 0; variant < 6; variant++) {
        int fd = temp_file(path);
        struct codec_bf *bf = NULL;
        ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
        ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 0, NULL), (ssize_t)sizeof(data));
        memcpy(out, data, sizeof(data));
        /* Blocks 10-19 a hole, then 20-29 next to it (or in the other order). */
        uint64_t first = variant & 1 ? 20 : 10, second = variant & 1 ? 10 : 20;
        if (variant >= 4)
            first = 10, second = 20;
        ck_assert_int_eq(codec_bf_punch(bf, first * 4096, 10 * 4096, NULL), 0);
        pread_block(fd, 19, marker);
        ck_assert_int_eq(codec_bf_punch(bf, second * 4096, 10 * 4096, NULL), 0);
        if (variant >= 4)
            pwrite_block(fd, 19, marker);
        memset(out + 10 * 4096, 0, 20 * 4096);
        /* Data into block 19, then into 20 (whole blocks, or a few bytes each). */
        size_t n = variant & 2 ? 100 : 4096;
        for (uint64_t b = 19; b <= 20; b++) {
            ck_assert_int_eq(codec_bf_write(bf, data + b * 4096 + 7, n, b * 4096, NULL),
                             (ssize_t)n);
            memcpy(out + b * 4096, data + b * 4096 + 7, n);
        }
        static uint8_t got[sizeof(data)];
        ck_assert_int_eq(codec_bf_read(bf, got, sizeof(got), 0, NULL), (ssize_t)sizeof(got));
        for (uint64_t b = 0; b < 40; b++)
            ck_assert_msg(memcmp(got + b * 4096, out + b * 4096, 4096) == 0,
                          "variant %d: block %llu differs", variant, (unsigned long long)b);
        codec_bf_close(bf);
        close(fd);
        unlink(path);
    }
    keys_key_free(k);
}
END_TEST

/* Read block i of a file (whole file path), or the error. */
static ssize_t read_at(int fd, struct keys_key *k, uint64_t i, uint8_t *out)
{
    struct codec_bf *bf = NULL;
    ck_assert_int_eq(codec_bf_open(fd, k, 0, &bf), 0);
    ssize_t n = codec_bf_read(bf, out, CODEC_BF_BLOCK, i * CODEC_BF_BLOCK, NULL);
    codec_bf_close(bf);
    return n;
}

/* A hole is only ever a run of zero blocks that an authenticated end marker of this file, at
 * its place, names: zeroing data, moving or zeroing a marker, or taking the file back to
 * version 1 reads as damage, never as zeros. */
START_TEST(test_sparse_tamper)
{
    char path[64], p2[64];
    struct keys_key *k = test_key(8);
    static uint8_t data[4096 * 4], out[CODEC_BF_BLOCK], keep[CODEC_BF_SEALED],
        zero[CODEC_BF_SEALED];
    memset(data, 'd', sizeof(data));
    /* Blocks 0-3 data, 4-9 a hole (marker in 9), 10-13 data, 14-19 a hole, 20 the final. */
    int fd = temp_file(path);
    struct codec_bf *bf = NULL;
    ck_assert_int_eq(codec_bf_open(fd, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 0, NULL), (ssize_t)sizeof(data));
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 10 * 4096, NULL),
                     (ssize_t)sizeof(data));
    ck_assert_int_eq(codec_bf_truncate(bf, 20 * 4096 + 10, NULL), 0);
    codec_bf_close(bf);
    for (uint64_t i = 0; i <= 20; i++)
        ck_assert_int_eq(read_at(fd, k, i, out), i == 20 ? 10 : 4096);
    /* Zeroing a data block next to a hole, inside the data, or before it. */
    uint64_t victims[] = {3, 10, 11, 0};
    for (size_t v = 0; v < sizeof(victims) / sizeof(victims[0]); v++) {
        pread_block(fd, victims[v], keep);
        pwrite_block(fd, victims[v], zero);
        ck_assert_int_eq(read_at(fd, k, victims[v], out), -EBADMSG);
        pwrite_block(fd, victims[v], keep);
        ck_assert_int_eq(read_at(fd, k, victims[v], out), 4096);
    }
    /* Zeroing the marker: the hole's blocks no longer open. */
    pread_block(fd, 9, keep);
    pwrite_block(fd, 9, zero);
    ck_assert_int_eq(read_at(fd, k, 5, out), -EBADMSG);
    ck_assert_int_eq(read_at(fd, k, 9, out), -EBADMSG);
    /* Moving it to the other hole's end: refused there (wrong place) and here (gone). */
    static uint8_t keep19[CODEC_BF_SEALED];
    pread_block(fd, 19, keep19);
    pwrite_block(fd, 19, keep);
    ck_assert_int_eq(read_at(fd, k, 15, out), -EBADMSG);
    pwrite_block(fd, 9, keep);
    pwrite_block(fd, 19, keep19);
    ck_assert_int_eq(read_at(fd, k, 5, out), 4096);
    ck_assert_int_eq(read_at(fd, k, 15, out), 4096);
    /* A marker from another file, same place. */
    int fd2 = temp_file(p2);
    ck_assert_int_eq(codec_bf_open(fd2, k, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, data, sizeof(data), 0, NULL), (ssize_t)sizeof(data));
    ck_assert_int_eq(codec_bf_truncate(bf, 20 * 4096 + 10, NULL), 0);
    codec_bf_close(bf);
    uint8_t other[CODEC_BF_SEALED];
    pread_block(fd2, 19, other);
    pwrite_block(fd, 9, other);
    ck_assert_int_eq(read_at(fd, k, 5, out), -EBADMSG);
    pwrite_block(fd, 9, keep);
    /* Back to version 1: holes are damage again. */
    uint8_t v1 = CODEC_BF_VERSION;
    ck_assert_int_eq(pwrite(fd, &v1, 1, 6), 1);
    ck_assert_int_eq(read_at(fd, k, 5, out), -EBADMSG);
    ck_assert_int_eq(read_at(fd, k, 2, out), 4096);
    close(fd);
    close(fd2);
    unlink(path);
    unlink(p2);
    keys_key_free(k);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *t = tcase_create("blockfile_sizes");
    tcase_add_test(t, test_sizes);
    suite_add_tcase(s, t);
    t = tcase_create("blockfile_model");
    tcase_add_loop_test(t, test_model, 0, 4);
    tcase_add_loop_test(t, test_model_small, 0, 16);
    tcase_add_test(t, test_empty_and_holes);
    tcase_add_test(t, test_grow_from_inside);
    tcase_add_test(t, test_failed_grow_keeps_data);
    tcase_add_test(t, test_sparse_cost);
    tcase_add_test(t, test_adjacent_holes);
    suite_add_tcase(s, t);
    t = tcase_create("blockfile_tamper");
    tcase_add_test(t, test_tamper);
    tcase_add_test(t, test_fresh_ids);
    tcase_add_test(t, test_sparse_tamper);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(codec_suite());
}
