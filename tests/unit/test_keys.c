// SPDX-License-Identifier: MIT
/*
 * Unit tests of keys/: known-answer vectors for every primitive (NIST GCM, RFC 5869, RFC 7914,
 * RFC 5297), tamper detection of the AEADs byte by byte, the per-thread cipher cache, key
 * derivation, and the keyring file: unlock, refusals (wrong secret, corrupt, truncated, unsafe
 * permissions), rewrap and models.
 *
 * The keyrings here use scrypt at log2(N) = 10, the lowest cost the format allows, so that the
 * tamper tests can run the KDF once per byte of a keyring and the whole executable stays fast.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "keys/keys.h"
#include "keys/keys_int.h"

#define LOGN 10
#define CHECKSUM 32

/* ---- Helpers ------------------------------------------------------------------------------- */

static char tmpdir[256];

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s) / 2;
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        ck_assert_int_eq(sscanf(s + 2 * i, "%2x", &v), 1); // NOLINT(cert-err34-c): test vectors
        out[i] = (uint8_t)v;
    }
    return n;
}

static int all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void tmp_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_keys.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

/* tmpdir/name into buf (static storage per call site is the caller's). */
static char *tmp_path(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", tmpdir, name);
    ck_assert(n > 0 && (size_t)n < cap);
    return buf;
}

/* Write a file with exactly `mode`, replacing any previous one. */
static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    (void)unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fchmod(fd, mode), 0);
    if (len)
        ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(close(fd), 0);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

/* A passphrase secret, read the way the tools read it: from a 0600 passfile. */
static struct keys_secret *pass_secret(const char *pass)
{
    char path[512], line[256], why[512] = "";
    struct keys_secret *s = NULL;
    struct keys_source src = {KEYS_SRC_PASSFILE, tmp_path(path, sizeof(path), "pass.tmp")};
    snprintf(line, sizeof(line), "%s\n", pass);
    write_file(path, line, strlen(line), 0600);
    int rc = keys_secret_read(&src, NULL, 0, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "passfile: %d %s", rc, why);
    ck_assert_uint_eq(s->len, strlen(pass));
    ck_assert(!keys_secret_is_keyfile(s));
    unlink(path);
    return s;
}

/* A key-file secret from 32 bytes, through a 0600 key file. */
static struct keys_secret *key_secret(const uint8_t bytes[KEYS_KEYFILE_BYTES])
{
    char path[512], why[512] = "";
    struct keys_secret *s = NULL;
    struct keys_source src = {KEYS_SRC_KEYFILE, tmp_path(path, sizeof(path), "key.tmp")};
    write_file(path, bytes, KEYS_KEYFILE_BYTES, 0600);
    int rc = keys_secret_read(&src, NULL, 0, &s, why, sizeof(why));
    ck_assert_msg(rc == 0, "keyfile: %d %s", rc, why);
    ck_assert(keys_secret_is_keyfile(s));
    unlink(path);
    return s;
}

static struct keys_ring *open_ok(const char *path, const struct keys_secret *s)
{
    char why[512] = "";
    struct keys_ring *ring = NULL;
    int rc = keys_ring_open(path, s, &ring, why, sizeof(why));
    ck_assert_msg(rc == 0, "open %s: %d %s", path, rc, why);
    ck_assert_ptr_nonnull(ring);
    return ring;
}

/* What a key does, as 32 bytes: AES-GCM (or SIV) of a fixed plaintext with a fixed nonce. */
static void fingerprint(const struct keys_key *k, enum keys_key_kind kind, uint8_t out[32])
{
    static const uint8_t nonce[KEYS_NONCE_BYTES] = {0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                                    0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
    static const uint8_t pt[16] = "fingerprint-0123";
    if (kind == KEYS_KEY_GCM) {
        ck_assert_int_eq(keys_gcm_seal(k, nonce, "fp", 2, pt, sizeof(pt), out, out + 16), 0);
    } else {
        ck_assert_int_eq(keys_siv_seal(k, "fp", 2, pt, sizeof(pt), out, 32), 32);
    }
}

static struct keys_key *raw_key(const char *hexkey, enum keys_key_kind kind)
{
    uint8_t b[64];
    struct keys_key *k = NULL;
    ck_assert_uint_eq(unhex(hexkey, b, sizeof(b)), kind == KEYS_KEY_SIV ? 64 : 32);
    ck_assert_int_eq(keys_key_from_bytes(b, kind, &k), 0);
    return k;
}

/* ---- Known answers: AES-256-GCM (GCM spec test cases 13-16) --------------------------------- */

struct gcm_vec {
    const char *key, *iv, *pt, *aad, *ct, *tag;
};

#define K15 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define P15                                                                                        \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"                             \
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
#define C15                                                                                        \
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"                             \
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"
#define ZERO32 "0000000000000000000000000000000000000000000000000000000000000000"

static const struct gcm_vec gcm_vecs[] = {
    /* 13: zero key, empty plaintext, no AAD */
    {ZERO32, "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    /* 14: zero key, one zero block */
    {ZERO32, "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    /* 15: four blocks, no AAD */
    {K15, "cafebabefacedbaddecaf888", P15, "", C15, "b094dac5d93471bdec1a502270e3cc6c"},
    /* 16: partial last block, with AAD */
    {K15, "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

/* Seal and open vector v with key k and check both directions against the vector. */
static void check_gcm_vec(const struct keys_key *k, const struct gcm_vec *v, int num)
{
    uint8_t iv[12], pt[64], aad[32], ct[64], tag[16], out[64], otag[16];
    ck_assert_uint_eq(unhex(v->iv, iv, sizeof(iv)), 12);
    size_t plen = unhex(v->pt, pt, sizeof(pt));
    size_t alen = unhex(v->aad, aad, sizeof(aad));
    ck_assert_uint_eq(unhex(v->ct, ct, sizeof(ct)), plen);
    unhex(v->tag, tag, sizeof(tag));

    memset(out, 0xee, sizeof(out));
    ck_assert_int_eq(keys_gcm_seal(k, iv, aad, alen, pt, plen, out, otag), 0);
    ck_assert_msg(memcmp(out, ct, plen) == 0, "GCM test case %d: ciphertext differs", num);
    ck_assert_msg(memcmp(otag, tag, 16) == 0, "GCM test case %d: tag differs", num);

    memset(out, 0xee, sizeof(out));
    ck_assert_int_eq(keys_gcm_open(k, iv, aad, alen, ct, plen, out, tag), 0);
    ck_assert_msg(memcmp(out, pt, plen) == 0, "GCM test case %d: plaintext differs", num);
}

START_TEST(test_gcm_kat)
{
    for (size_t i = 0; i < sizeof(gcm_vecs) / sizeof(gcm_vecs[0]); i++) {
        struct keys_key *k = raw_key(gcm_vecs[i].key, KEYS_KEY_GCM);
        check_gcm_vec(k, &gcm_vecs[i], 13 + (int)i);
        keys_key_free(k);
    }
}
END_TEST

/* ---- Known answers: HKDF-SHA256 (RFC 5869) ------------------------------------------------- */

START_TEST(test_hkdf_kat)
{
    uint8_t ikm[22], salt[13], out[42], want[42];
    memset(ikm, 0x0b, sizeof(ikm));
    /* Test case 1 (info f0..f9 has no NUL byte, so it passes as a C string). */
    unhex("000102030405060708090a0b0c", salt, sizeof(salt));
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
          want, sizeof(want));
    ck_assert_int_eq(keys_hkdf(ikm, sizeof(ikm), salt, sizeof(salt),
                               "\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9", out, sizeof(out)),
                     0);
    ck_assert_mem_eq(out, want, sizeof(want));
    /* Test case 3: empty salt and empty info. */
    unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
          want, sizeof(want));
    memset(out, 0, sizeof(out));
    ck_assert_int_eq(keys_hkdf(ikm, sizeof(ikm), NULL, 0, "", out, sizeof(out)), 0);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

/* ---- Known answers: scrypt (RFC 7914 section 12) ------------------------------------------- */

START_TEST(test_scrypt_kat)
{
    uint8_t out[64], want[64];
    unhex("77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
          "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
          want, sizeof(want));
    ck_assert_int_eq(
        keys_scrypt((const uint8_t *)"", 0, (const uint8_t *)"", 0, 4, 1, 1, out, sizeof(out)), 0);
    ck_assert_mem_eq(out, want, sizeof(want));

    unhex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
          "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
          want, sizeof(want));
    memset(out, 0, sizeof(out));
    ck_assert_int_eq(keys_scrypt((const uint8_t *)"password", 8, (const uint8_t *)"NaCl", 4, 10, 8,
                                 16, out, sizeof(out)),
                     0);
    ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

/* ---- AES-256-GCM: round trip and tamper detection ------------------------------------------ */

START_TEST(test_gcm_roundtrip)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 4096};
    uint8_t kb[32], nonce[12], aad[40], *pt = malloc(4096), *ct = malloc(4096), *out = malloc(4096),
                                        tag[16], tag2[16];
    struct keys_key *k = NULL, *k2 = NULL;
    ck_assert(pt && ct && out);
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    ck_assert_int_eq(keys_key_from_bytes(kb, KEYS_KEY_GCM, &k), 0);
    kb[0] ^= 1;
    ck_assert_int_eq(keys_key_from_bytes(kb, KEYS_KEY_GCM, &k2), 0);
    ck_assert_int_eq(keys_random(nonce, sizeof(nonce)), 0);
    ck_assert_int_eq(keys_random(aad, sizeof(aad)), 0);
    ck_assert_int_eq(keys_random(pt, 4096), 0);

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i];
        ck_assert_int_eq(keys_gcm_seal(k, nonce, aad, sizeof(aad), pt, n, ct, tag), 0);
        ck_assert(n < 16 || memcmp(ct, pt, n) != 0);
        ck_assert_int_eq(keys_gcm_open(k, nonce, aad, sizeof(aad), ct, n, out, tag), 0);
        ck_assert(memcmp(out, pt, n) == 0);
        /* In place, both ways: same result as out of place. */
        memcpy(out, pt, n);
        ck_assert_int_eq(keys_gcm_seal(k, nonce, aad, sizeof(aad), out, n, out, tag2), 0);
        ck_assert(memcmp(out, ct, n) == 0 && memcmp(tag, tag2, 16) == 0);
        ck_assert_int_eq(keys_gcm_open(k, nonce, aad, sizeof(aad), out, n, out, tag2), 0);
        ck_assert(memcmp(out, pt, n) == 0);
        /* Another key of one differing bit, or no AAD, does not open it. */
        memset(out, 0xaa, n);
        ck_assert_int_eq(keys_gcm_open(k2, nonce, aad, sizeof(aad), ct, n, out, tag), -EBADMSG);
        ck_assert(all_zero(out, n));
        ck_assert_int_eq(keys_gcm_open(k, nonce, NULL, 0, ct, n, out, tag), -EBADMSG);
    }

    /* The wrong kind of key is a programming error, not an authentication failure. */
    struct keys_key *siv = NULL;
    uint8_t sb[64] = {0};
    ck_assert_int_eq(keys_key_from_bytes(sb, KEYS_KEY_SIV, &siv), 0);
    ck_assert_int_eq(keys_gcm_seal(siv, nonce, NULL, 0, pt, 16, ct, tag), -EINVAL);
    ck_assert_int_eq(keys_gcm_open(siv, nonce, NULL, 0, ct, 16, out, tag), -EINVAL);
    ck_assert_int_eq(keys_gcm_seal(NULL, nonce, NULL, 0, pt, 16, ct, tag), -EINVAL);
    keys_key_free(siv);
    keys_key_free(k);
    keys_key_free(k2);
    free(pt);
    free(ct);
    free(out);
}
END_TEST

enum gcm_part { PART_CT, PART_TAG, PART_AAD, PART_NONCE };

START_TEST(test_gcm_tamper)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    uint8_t kb[32], nonce[12], aad[21], pt[67], ct[67], tag[16], out[67];
    struct keys_key *k = NULL;
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    ck_assert_int_eq(keys_key_from_bytes(kb, KEYS_KEY_GCM, &k), 0);
    ck_assert_int_eq(keys_random(nonce, sizeof(nonce)), 0);
    ck_assert_int_eq(keys_random(aad, sizeof(aad)), 0);
    ck_assert_int_eq(keys_random(pt, sizeof(pt)), 0);
    ck_assert_int_eq(keys_gcm_seal(k, nonce, aad, sizeof(aad), pt, sizeof(pt), ct, tag), 0);

    struct {
        enum gcm_part part;
        uint8_t *p;
        size_t len;
    } parts[] = {{PART_CT, ct, sizeof(ct)},
                 {PART_TAG, tag, sizeof(tag)},
                 {PART_AAD, aad, sizeof(aad)},
                 {PART_NONCE, nonce, sizeof(nonce)}};
    int tried = 0;
    for (size_t pi = 0; pi < 4; pi++)
        for (size_t i = 0; i < parts[pi].len; i++)
            for (size_t m = 0; m < sizeof(masks); m++) {
                parts[pi].p[i] ^= masks[m];
                memset(out, 0xaa, sizeof(out));
                int rc = keys_gcm_open(k, nonce, aad, sizeof(aad), ct, sizeof(ct), out, tag);
                parts[pi].p[i] ^= masks[m];
                ck_assert_msg(rc == -EBADMSG, "part %zu byte %zu mask %02x: rc %d", pi, i, masks[m],
                              rc);
                ck_assert_msg(all_zero(out, sizeof(out)),
                              "part %zu byte %zu: output not wiped after a failed tag", pi, i);
                tried++;
            }
    ck_assert_int_eq(tried, 3 * (67 + 16 + 21 + 12));
    /* Shorter or longer ciphertext (a truncated or extended block) fails too. */
    ck_assert_int_eq(keys_gcm_open(k, nonce, aad, sizeof(aad), ct, sizeof(ct) - 1, out, tag),
                     -EBADMSG);
    ck_assert_int_eq(keys_gcm_open(k, nonce, aad, sizeof(aad) - 1, ct, sizeof(ct), out, tag),
                     -EBADMSG);
    /* And after all those failures, the untouched message still opens in this thread. */
    ck_assert_int_eq(keys_gcm_open(k, nonce, aad, sizeof(aad), ct, sizeof(ct), out, tag), 0);
    ck_assert_mem_eq(out, pt, sizeof(pt));
    keys_key_free(k);
}
END_TEST

/* ---- AES-256-GCM: the per-thread context cache --------------------------------------------- */

START_TEST(test_gcm_two_keys)
{
    /* Alternate the keys of test cases 14 and 15, in both directions, many times. */
    struct keys_key *a = raw_key(ZERO32, KEYS_KEY_GCM), *b = raw_key(K15, KEYS_KEY_GCM);
    for (int i = 0; i < 20; i++) {
        check_gcm_vec(a, &gcm_vecs[1], 14);
        check_gcm_vec(b, &gcm_vecs[2], 15);
        check_gcm_vec(b, &gcm_vecs[3], 16);
        check_gcm_vec(a, &gcm_vecs[0], 13);
    }
    keys_key_free(a);
    keys_key_free(b);

    /* A freed handle, then a new key that may land at the very same address: the cached context
     * must not keep the old key. Try many times; record whether the address came back. */
    int reused = 0;
    for (int i = 0; i < 50; i++) {
        struct keys_key *first = raw_key(i & 1 ? K15 : ZERO32, KEYS_KEY_GCM);
        check_gcm_vec(first, &gcm_vecs[i & 1 ? 2 : 1], i & 1 ? 15 : 14);
        uintptr_t addr = (uintptr_t)first;
        keys_key_free(first);
        struct keys_key *second = raw_key(i & 1 ? ZERO32 : K15, KEYS_KEY_GCM);
        reused += (uintptr_t)second == addr;
        check_gcm_vec(second, &gcm_vecs[i & 1 ? 1 : 3], i & 1 ? 14 : 16);
        keys_key_free(second);
    }
    /* Not an assertion (the allocator decides), but say it when the case did not arise. */
    if (!reused)
        fprintf(stderr, "test_gcm_two_keys: no address was reused; cache test is weaker\n");

    /* Two handles holding the same bytes are interchangeable. */
    a = raw_key(K15, KEYS_KEY_GCM);
    b = raw_key(K15, KEYS_KEY_GCM);
    uint8_t fa[32], fb[32];
    fingerprint(a, KEYS_KEY_GCM, fa);
    fingerprint(b, KEYS_KEY_GCM, fb);
    ck_assert_mem_eq(fa, fb, 32);
    keys_key_free(a);
    keys_key_free(b);
}
END_TEST

#define NKEYS 4
#define NNONCES 8
#define NTHREADS 8
#define MSG 300

struct thread_table {
    struct keys_key *keys[NKEYS];
    uint8_t pt[MSG];
    uint8_t ct[NKEYS][NNONCES][MSG];
    uint8_t tag[NKEYS][NNONCES][16];
    atomic_int failures;
};

struct thread_arg {
    struct thread_table *t;
    int id;
};

static void make_nonce(uint8_t nonce[12], int n)
{
    memset(nonce, 0, 12);
    nonce[0] = (uint8_t)n;
    nonce[11] = 0x5a;
}

static void *gcm_thread(void *p)
{
    struct thread_arg *arg = p;
    struct thread_table *t = arg->t;
    uint8_t out[MSG], tag[16], nonce[12];
    for (int i = 0; i < 1500; i++) {
        int k = (arg->id + i) % NKEYS, n = (i * 7 + arg->id) % NNONCES;
        make_nonce(nonce, n);
        if (keys_gcm_seal(t->keys[k], nonce, "aad", 3, t->pt, MSG, out, tag) != 0 ||
            memcmp(out, t->ct[k][n], MSG) != 0 || memcmp(tag, t->tag[k][n], 16) != 0)
            atomic_fetch_add(&t->failures, 1);
        /* Open with another key than the one just used for sealing. */
        int k2 = (k + 1 + i % (NKEYS - 1)) % NKEYS;
        if (keys_gcm_open(t->keys[k2], nonce, "aad", 3, t->ct[k2][n], MSG, out, t->tag[k2][n]) !=
                0 ||
            memcmp(out, t->pt, MSG) != 0)
            atomic_fetch_add(&t->failures, 1);
        /* A short-lived key in the middle: handles come and go while others are in use. */
        if (i % 100 == 0) {
            struct keys_key *tmp = NULL;
            uint8_t kb[32] = {(uint8_t)i, (uint8_t)arg->id};
            if (keys_key_from_bytes(kb, KEYS_KEY_GCM, &tmp) != 0 ||
                keys_gcm_seal(tmp, nonce, NULL, 0, t->pt, MSG, out, tag) != 0 ||
                keys_gcm_open(tmp, nonce, NULL, 0, out, MSG, out, tag) != 0 ||
                memcmp(out, t->pt, MSG) != 0)
                atomic_fetch_add(&t->failures, 1);
            keys_key_free(tmp);
        }
    }
    return NULL;
}

START_TEST(test_gcm_threads)
{
    struct thread_table *t = calloc(1, sizeof(*t));
    pthread_t th[NTHREADS];
    struct thread_arg args[NTHREADS];
    uint8_t nonce[12];
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(keys_random(t->pt, MSG), 0);
    for (int k = 0; k < NKEYS; k++) {
        uint8_t kb[32];
        ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
        ck_assert_int_eq(keys_key_from_bytes(kb, KEYS_KEY_GCM, &t->keys[k]), 0);
        for (int n = 0; n < NNONCES; n++) {
            make_nonce(nonce, n);
            ck_assert_int_eq(
                keys_gcm_seal(t->keys[k], nonce, "aad", 3, t->pt, MSG, t->ct[k][n], t->tag[k][n]),
                0);
        }
    }
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (struct thread_arg){t, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, gcm_thread, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&t->failures), 0);
    for (int k = 0; k < NKEYS; k++)
        keys_key_free(t->keys[k]);
    free(t);
}
END_TEST

/* ---- AES-256-SIV --------------------------------------------------------------------------- */

START_TEST(test_siv)
{
    /* RFC 5297 appendix A.1 with 256-bit subkeys (the RFC itself has AES-128 only): the vector
     * the Miscreant project published, checked against Python's cryptography. */
    struct keys_key *k = raw_key("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f06f6e6d6c6b6a69686766656463626160"
                                 "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f",
                                 KEYS_KEY_SIV);
    uint8_t aad[24], pt[14], want[30], out[64], back[64];
    unhex("101112131415161718191a1b1c1d1e1f2021222324252627", aad, sizeof(aad));
    unhex("112233445566778899aabbccddee", pt, sizeof(pt));
    unhex("f125274c598065cfc26b0e71575029088b035217e380cac8919ee800c126", want, sizeof(want));
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), out, sizeof(out)), 30);
    ck_assert_mem_eq(out, want, 30);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), want, 30, back, sizeof(back)), 14);
    ck_assert_mem_eq(back, pt, 14);

    /* Deterministic; any change of AAD or plaintext changes the whole output. */
    uint8_t again[64], other[64];
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), again, sizeof(again)), 30);
    ck_assert_mem_eq(again, out, 30);
    aad[23] ^= 1;
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), other, sizeof(other)), 30);
    ck_assert(memcmp(other, out, 16) != 0 && memcmp(other + 16, out + 16, 14) != 0);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), out, 30, back, sizeof(back)), -EBADMSG);
    aad[23] ^= 1;
    pt[0] ^= 1;
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), other, sizeof(other)), 30);
    ck_assert(memcmp(other, out, 16) != 0);
    pt[0] ^= 1;

    /* Every byte of IV or ciphertext, flipped: refused and the output wiped. */
    for (size_t i = 0; i < 30; i++) {
        out[i] ^= 0x04;
        memset(back, 0xaa, sizeof(back));
        ck_assert_msg(keys_siv_open(k, aad, sizeof(aad), out, 30, back, sizeof(back)) == -EBADMSG,
                      "SIV byte %zu flipped but accepted", i);
        ck_assert(all_zero(back, 14));
        out[i] ^= 0x04;
    }

    /* Output capacity: exact fits, one byte less is refused without writing. */
    memset(other, 0x77, sizeof(other));
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), other, 29), -ENAMETOOLONG);
    ck_assert_uint_eq(other[0], 0x77);
    ck_assert_int_eq(keys_siv_seal(k, aad, sizeof(aad), pt, sizeof(pt), other, 30), 30);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), out, 30, back, 13), -ENAMETOOLONG);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), out, 30, back, 14), 14);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), out, 15, back, sizeof(back)), -EBADMSG);
    ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), out, 0, back, sizeof(back)), -EBADMSG);

    /* An empty plaintext (OpenSSL 3.0 cannot seal one with SIV): either refused, or a real
     * 16-byte tag that opens and detects tampering; never an unauthenticated output. */
    ssize_t e = keys_siv_seal(k, aad, sizeof(aad), pt, 0, other, sizeof(other));
    ck_assert(e < 0 || e == 16);
    if (e == 16) {
        ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), other, 16, back, sizeof(back)), 0);
        other[3] ^= 1;
        ck_assert_int_eq(keys_siv_open(k, aad, sizeof(aad), other, 16, back, sizeof(back)),
                         -EBADMSG);
    }

    /* Longer inputs (a 255-byte name) round-trip; a GCM key is refused. */
    uint8_t name[255], sealed[271], name2[255];
    memset(name, 'n', sizeof(name));
    ck_assert_int_eq(keys_siv_seal(k, "dir", 3, name, 255, sealed, sizeof(sealed)), 271);
    ck_assert_int_eq(keys_siv_open(k, "dir", 3, sealed, 271, name2, sizeof(name2)), 255);
    ck_assert_mem_eq(name, name2, 255);
    ck_assert_int_eq(keys_siv_open(k, "dis", 3, sealed, 271, name2, sizeof(name2)), -EBADMSG);
    struct keys_key *g = raw_key(ZERO32, KEYS_KEY_GCM);
    ck_assert_int_eq(keys_siv_seal(g, aad, 1, pt, 1, out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(keys_siv_open(g, aad, 1, want, 30, back, sizeof(back)), -EINVAL);
    keys_key_free(g);
    keys_key_free(k);
}
END_TEST

/* ---- Key derivation ------------------------------------------------------------------------ */

START_TEST(test_derive)
{
    uint8_t pb[32], ctx[16], f1[32], f2[32];
    for (int i = 0; i < 32; i++)
        pb[i] = (uint8_t)i;
    for (int i = 0; i < 16; i++)
        ctx[i] = (uint8_t)(0xa0 + i);
    struct keys_key *parent = NULL, *a = NULL, *b = NULL;
    ck_assert_int_eq(keys_key_from_bytes(pb, KEYS_KEY_GCM, &parent), 0);

    /* Known answer (computed with Python's cryptography): HKDF-SHA256(parent, salt = ctx,
     * info = "imgcryptfs v1 file"), then AES-GCM of "imgcryptfs test" under it. A change here
     * makes every stored file unreadable. */
    uint8_t nonce[12], want[31], got[31];
    memset(nonce, 0x42, sizeof(nonce));
    unhex("e94aa64900f5c854a4205f773fcc25541886e7334310f85ca39ea95879c9b4", want, sizeof(want));
    ck_assert_int_eq(keys_key_derive(parent, "file", ctx, 16, KEYS_KEY_GCM, &a), 0);
    ck_assert_int_eq(keys_gcm_seal(a, nonce, "aad", 3, "imgcryptfs test", 15, got, got + 15), 0);
    ck_assert_mem_eq(got, want, sizeof(want));

    /* Same label and context: same key. */
    ck_assert_int_eq(keys_key_derive(parent, "file", ctx, 16, KEYS_KEY_GCM, &b), 0);
    fingerprint(a, KEYS_KEY_GCM, f1);
    fingerprint(b, KEYS_KEY_GCM, f2);
    ck_assert_mem_eq(f1, f2, 32);
    keys_key_free(b);
    /* Another label, another context, no context, another parent: all different. */
    ck_assert_int_eq(keys_key_derive(parent, "filf", ctx, 16, KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, f2);
    ck_assert(memcmp(f1, f2, 32) != 0);
    keys_key_free(b);
    ctx[15] ^= 1;
    ck_assert_int_eq(keys_key_derive(parent, "file", ctx, 16, KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, f2);
    ck_assert(memcmp(f1, f2, 32) != 0);
    keys_key_free(b);
    ck_assert_int_eq(keys_key_derive(parent, "file", NULL, 0, KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, f2);
    ck_assert(memcmp(f1, f2, 32) != 0);
    keys_key_free(b);
    ck_assert_int_eq(keys_key_derive(a, "file", ctx, 16, KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, f2);
    ck_assert(memcmp(f1, f2, 32) != 0);
    keys_key_free(b);

    /* SIV children: deterministic per label, distinct across labels. */
    struct keys_key *s1 = NULL, *s2 = NULL;
    ck_assert_int_eq(keys_key_derive(parent, "names", NULL, 0, KEYS_KEY_SIV, &s1), 0);
    ck_assert_int_eq(keys_key_derive(parent, "names", NULL, 0, KEYS_KEY_SIV, &s2), 0);
    fingerprint(s1, KEYS_KEY_SIV, f1);
    fingerprint(s2, KEYS_KEY_SIV, f2);
    ck_assert_mem_eq(f1, f2, 32);
    keys_key_free(s2);
    ck_assert_int_eq(keys_key_derive(parent, "names2", NULL, 0, KEYS_KEY_SIV, &s2), 0);
    fingerprint(s2, KEYS_KEY_SIV, f2);
    ck_assert(memcmp(f1, f2, 32) != 0);
    keys_key_free(s1);
    keys_key_free(s2);

    /* Bad arguments. */
    char longlabel[200];
    memset(longlabel, 'x', sizeof(longlabel) - 1);
    longlabel[sizeof(longlabel) - 1] = '\0';
    b = NULL; /* must stay untouched on failure */
    ck_assert_int_eq(keys_key_derive(parent, longlabel, NULL, 0, KEYS_KEY_GCM, &b), -EINVAL);
    ck_assert_int_eq(keys_key_derive(NULL, "file", NULL, 0, KEYS_KEY_GCM, &b), -EINVAL);
    ck_assert_int_eq(keys_key_derive(parent, NULL, NULL, 0, KEYS_KEY_GCM, &b), -EINVAL);
    ck_assert_ptr_null(b);
    keys_key_free(a);
    keys_key_free(parent);
}
END_TEST

START_TEST(test_ring_subkey)
{
    char p1[512], p2[512];
    struct keys_secret *s = pass_secret("subkey pass");
    ck_assert_int_eq(keys_ring_create(tmp_path(p1, sizeof(p1), "r1"), s, LOGN), 0);
    ck_assert_int_eq(keys_ring_create(tmp_path(p2, sizeof(p2), "r2"), s, LOGN), 0);
    struct keys_ring *r1 = open_ok(p1, s), *r1b = open_ok(p1, s), *r2 = open_ok(p2, s);
    struct keys_key *a = NULL, *b = NULL;
    uint8_t fa[32], fb[32];

    /* Same label, same keyring (even opened twice): same key. */
    ck_assert_int_eq(keys_ring_subkey(r1, "content", KEYS_KEY_GCM, &a), 0);
    ck_assert_int_eq(keys_ring_subkey(r1b, "content", KEYS_KEY_GCM, &b), 0);
    fingerprint(a, KEYS_KEY_GCM, fa);
    fingerprint(b, KEYS_KEY_GCM, fb);
    ck_assert_mem_eq(fa, fb, 32);
    keys_key_free(b);
    /* Different label: different key. */
    ck_assert_int_eq(keys_ring_subkey(r1, "features", KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, fb);
    ck_assert(memcmp(fa, fb, 32) != 0);
    keys_key_free(b);
    /* Another keyring (another master key and filesystem id): different key. */
    ck_assert_int_eq(keys_ring_subkey(r2, "content", KEYS_KEY_GCM, &b), 0);
    fingerprint(b, KEYS_KEY_GCM, fb);
    ck_assert(memcmp(fa, fb, 32) != 0);
    keys_key_free(b);
    /* The filesystem ids differ and are what info reports. */
    uint8_t id1[16], id2[16];
    struct keys_ring_info info;
    keys_ring_fs_id(r1, id1);
    keys_ring_fs_id(r2, id2);
    ck_assert(memcmp(id1, id2, 16) != 0);
    ck_assert_int_eq(keys_ring_info(p1, &info, NULL, 0), 0);
    ck_assert_mem_eq(info.fs_id, id1, 16);
    /* SIV subkeys for names. */
    struct keys_key *n1 = NULL, *n2 = NULL;
    ck_assert_int_eq(keys_ring_subkey(r1, "names", KEYS_KEY_SIV, &n1), 0);
    ck_assert_int_eq(keys_ring_subkey(r1b, "names", KEYS_KEY_SIV, &n2), 0);
    fingerprint(n1, KEYS_KEY_SIV, fa);
    fingerprint(n2, KEYS_KEY_SIV, fb);
    ck_assert_mem_eq(fa, fb, 32);
    ck_assert_int_eq(keys_ring_subkey(NULL, "names", KEYS_KEY_SIV, &b), -EINVAL);
    keys_key_free(n1);
    keys_key_free(n2);
    keys_key_free(a);
    keys_ring_close(r1);
    keys_ring_close(r1b);
    keys_ring_close(r2);
    keys_ring_close(NULL);
    keys_secret_free(s);
}
END_TEST

/* ---- Secrets ------------------------------------------------------------------------------- */

START_TEST(test_secret_sources)
{
    char path[512], why[512];
    struct keys_secret *s = NULL;
    struct keys_source src = {KEYS_SRC_PASSFILE, tmp_path(path, sizeof(path), "pf")};

    /* Only the first line counts; a CRLF ending is dropped. */
    write_file(path, "pw one\r\nsecond line\n", 20, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s->len, 6);
    ck_assert_mem_eq(s->bytes, "pw one", 6);
    keys_secret_free(s);
    s = NULL;
    write_file(path, "no newline", 10, 0400);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s->len, 10);
    keys_secret_free(s);
    s = NULL;
    /* Empty first line, empty file. */
    write_file(path, "\nsecond", 7, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(why, path));
    write_file(path, "", 0, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EINVAL);
    /* Missing file. */
    unlink(path);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, path));

    /* The longest passphrase is KEYS_MAX_PASSPHRASE bytes; one more is refused. */
    char *long_pass = malloc(KEYS_MAX_PASSPHRASE + 2);
    ck_assert_ptr_nonnull(long_pass);
    memset(long_pass, 'p', KEYS_MAX_PASSPHRASE);
    long_pass[KEYS_MAX_PASSPHRASE] = '\n';
    write_file(path, long_pass, KEYS_MAX_PASSPHRASE + 1, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s->len, KEYS_MAX_PASSPHRASE);
    keys_secret_free(s);
    s = NULL;
    long_pass[KEYS_MAX_PASSPHRASE] = 'p';
    long_pass[KEYS_MAX_PASSPHRASE + 1] = '\n';
    write_file(path, long_pass, KEYS_MAX_PASSPHRASE + 2, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EFBIG);
    ck_assert_ptr_null(s);
    free(long_pass);

    /* Key files hold exactly 32 bytes. */
    uint8_t kb[40] = {1, 2, 3};
    src.kind = KEYS_SRC_KEYFILE;
    write_file(path, kb, 31, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "32"));
    write_file(path, kb, 33, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EINVAL);
    write_file(path, kb, 32, 0600);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert(keys_secret_is_keyfile(s));
    ck_assert_uint_eq(s->len, 32);
    ck_assert_mem_eq(s->bytes, kb, 32);
    keys_secret_free(s);
    s = NULL;

    /* extpass: the first line of the command's output; a failing command is -EIO. */
    src.kind = KEYS_SRC_EXTPASS;
    src.arg = "printf 'ext pass\\nmore\\n'";
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s->len, 8);
    ck_assert_mem_eq(s->bytes, "ext pass", 8);
    ck_assert(!keys_secret_is_keyfile(s));
    keys_secret_free(s);
    s = NULL;
    src.arg = "echo pw; exit 3";
    why[0] = '\0';
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EIO);
    ck_assert_ptr_nonnull(strstr(why, "3"));
    ck_assert_ptr_null(strstr(why, "pw"));
    src.arg = "echo";
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), -EINVAL);
    /* A command that prints much more than it is asked for is not killed by SIGPIPE. */
    src.arg = "echo long; head -c 200000 /dev/zero";
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &s, why, sizeof(why)), 0);
    ck_assert_uint_eq(s->len, 4);
    keys_secret_free(s);
    s = NULL;
    keys_secret_free(NULL);
}
END_TEST

START_TEST(test_secret_no_tty)
{
    /* Without a controlling terminal the prompt is refused with -ENOTTY and a hint. Check runs
     * each test as a process group leader, which cannot setsid(), hence one more fork. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char why[512] = "";
        struct keys_secret *s = NULL;
        struct keys_source src = {KEYS_SRC_TTY, NULL};
        if (setsid() < 0)
            _exit(10);
        int rc = keys_secret_read(&src, "Passphrase: ", 1, &s, why, sizeof(why));
        _exit(rc == -ENOTTY && strstr(why, "--passfile") && !s ? 0 : 11);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ---- The keyring: create and open ---------------------------------------------------------- */

START_TEST(test_ring_passphrase)
{
    char path[512], why[512];
    struct keys_secret *s = pass_secret("correct horse battery"),
                       *bad = pass_secret("correct horse battery!");
    struct keys_ring *ring = NULL;
    struct keys_ring_info info;
    struct stat st;
    tmp_path(path, sizeof(path), "imgcryptfs.keyring");

    ck_assert_int_eq(keys_ring_create(path, s, KEYS_LOGN_MIN - 1), -EINVAL);
    ck_assert_int_eq(keys_ring_create(path, s, KEYS_LOGN_MAX + 1), -EINVAL);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0400);

    memset(&info, 0xee, sizeof(info));
    ck_assert_int_eq(keys_ring_info(path, &info, why, sizeof(why)), 0);
    ck_assert_uint_eq(info.version, KEYS_VERSION);
    ck_assert_uint_eq(info.kdf, KEYS_KDF_SCRYPT);
    ck_assert_uint_eq(info.log_n, LOGN);
    ck_assert_uint_eq(info.r, KEYS_SCRYPT_R);
    ck_assert_uint_eq(info.p, KEYS_SCRYPT_P);
    ck_assert_uint_eq(info.model_count, 0);
    ck_assert_uint_eq(info.file_bytes, 96 + 72 + 16 + 32);
    ck_assert_uint_eq(info.file_bytes, (uint64_t)st.st_size);
    ck_assert_int_eq(info.unsafe_perms, 0);
    ck_assert(!all_zero(info.fs_id, 16));
    time_t now = time(NULL);
    ck_assert(info.created <= (uint64_t)now && info.created + 600 >= (uint64_t)now);

    ring = open_ok(path, s);
    uint8_t id[16];
    keys_ring_fs_id(ring, id);
    ck_assert_mem_eq(id, info.fs_id, 16);
    ck_assert_uint_eq(keys_ring_model_count(ring), 0);
    keys_ring_close(ring);
    ring = NULL;

    /* The same passphrase through extpass opens it too. */
    struct keys_secret *ext = NULL;
    struct keys_source src = {KEYS_SRC_EXTPASS, "echo 'correct horse battery'"};
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &ext, why, sizeof(why)), 0);
    ring = open_ok(path, ext);
    keys_ring_close(ring);
    ring = NULL;
    keys_secret_free(ext);

    /* Wrong passphrase: rejected, nothing returned, message names the file. */
    why[0] = '\0';
    ck_assert_int_eq(keys_ring_open(path, bad, &ring, why, sizeof(why)), -EKEYREJECTED);
    ck_assert_ptr_null(ring);
    ck_assert_ptr_nonnull(strstr(why, path));
    ck_assert_ptr_null(strchr(why, '\n'));
    ck_assert_ptr_null(strstr(why, "correct horse"));

    /* A key file cannot open a passphrase keyring. */
    uint8_t kb[32] = {0};
    struct keys_secret *key = key_secret(kb);
    why[0] = '\0';
    ck_assert_int_eq(keys_ring_open(path, key, &ring, why, sizeof(why)), -EKEYREJECTED);
    ck_assert_ptr_null(ring);
    ck_assert_ptr_nonnull(strstr(why, "passphrase"));

    /* Never replaces an existing keyring, not even one it could open. */
    uint8_t *before = NULL, *after = NULL;
    size_t blen = 0, alen = 0;
    before = read_file(path, &blen);
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), -EEXIST);
    ck_assert_int_eq(keys_ring_create(path, key, LOGN), -EEXIST);
    after = read_file(path, &alen);
    ck_assert_uint_eq(alen, blen);
    ck_assert_mem_eq(before, after, blen);
    free(before);
    free(after);

    /* Nothing but the keyring is left in the folder (no temporary files). */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int entries = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            ck_assert_str_eq(e->d_name, "imgcryptfs.keyring");
            entries++;
        }
    closedir(d);
    ck_assert_int_eq(entries, 1);

    /* A missing keyring, and a missing folder for a new one. */
    char missing[512];
    ck_assert_int_eq(
        keys_ring_open(tmp_path(missing, sizeof(missing), "nope"), s, &ring, why, sizeof(why)),
        -ENOENT);
    ck_assert_int_eq(keys_ring_create(tmp_path(missing, sizeof(missing), "no/such"), s, LOGN),
                     -ENOENT);
    keys_secret_free(key);
    keys_secret_free(s);
    keys_secret_free(bad);
}
END_TEST

START_TEST(test_ring_keyfile)
{
    char path[512], why[512];
    uint8_t kb[32];
    struct keys_ring *ring = NULL;
    struct keys_ring_info info;
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    struct keys_secret *key = key_secret(kb);
    kb[31] ^= 0x80;
    struct keys_secret *wrong = key_secret(kb);
    struct keys_secret *pass = pass_secret("a passphrase");
    tmp_path(path, sizeof(path), "ring");

    /* The cost does not apply to key files. */
    ck_assert_int_eq(keys_ring_create(path, key, 0), 0);
    ck_assert_int_eq(keys_ring_info(path, &info, NULL, 0), 0);
    ck_assert_uint_eq(info.kdf, KEYS_KDF_KEYFILE);
    ck_assert_uint_eq(info.log_n, 0);
    ck_assert_uint_eq(info.r, 0);
    ck_assert_uint_eq(info.p, 0);
    ring = open_ok(path, key);
    keys_ring_close(ring);
    ring = NULL;

    ck_assert_int_eq(keys_ring_open(path, wrong, &ring, why, sizeof(why)), -EKEYREJECTED);
    ck_assert_ptr_null(ring);
    why[0] = '\0';
    ck_assert_int_eq(keys_ring_open(path, pass, &ring, why, sizeof(why)), -EKEYREJECTED);
    ck_assert_ptr_null(ring);
    ck_assert_ptr_nonnull(strstr(why, "key file"));
    keys_secret_free(key);
    keys_secret_free(wrong);
    keys_secret_free(pass);
}
END_TEST

/* ---- The keyring: corrupt, truncated, foreign files ---------------------------------------- */

static void fix_checksum(uint8_t *buf, size_t len)
{
    ck_assert_int_eq(keys_sha256(buf, len - CHECKSUM, buf + len - CHECKSUM), 0);
}

/* Open a keyring image written to a scratch file; returns the error (0 is a test failure). */
static int try_image(const uint8_t *buf, size_t len, const struct keys_secret *s)
{
    char path[512], why[512] = "";
    struct keys_ring *ring = NULL;
    tmp_path(path, sizeof(path), "scratch");
    write_file(path, buf, len, 0600);
    int rc = keys_ring_open(path, s, &ring, why, sizeof(why));
    if (rc == 0) {
        keys_ring_close(ring);
        return 0;
    }
    ck_assert_msg(ring == NULL, "out-parameter written on failure");
    ck_assert_msg(why[0] && !strchr(why, '\n'), "rc %d without a one-line message", rc);
    return rc;
}

/* Flip every byte of the keyring at `path`, with and without a recomputed checksum. */
static void flip_everything(const char *path, const struct keys_secret *s, const uint8_t *masks,
                            size_t nmasks, int rotate)
{
    size_t len = 0;
    uint8_t *orig = read_file(path, &len), *buf = malloc(len);
    int rejected = 0, badmsg = 0;
    ck_assert_ptr_nonnull(buf);
    /* The untouched image, copied to the scratch file, opens. */
    ck_assert_int_eq(try_image(orig, len, s) == 0, 1);
    for (size_t m = 0; m < nmasks; m++)
        for (size_t i = 0; i < len; i++) {
            uint8_t mask = rotate ? (uint8_t)(1u << ((i + m) % 8)) : masks[m];
            memcpy(buf, orig, len);
            buf[i] ^= mask;
            int rc = try_image(buf, len, s);
            ck_assert_msg(rc == -EBADMSG, "byte %zu ^ %02x (checksum kept): rc %d", i, mask, rc);
            if (i >= len - CHECKSUM)
                continue; /* recomputing would just undo the flip */
            fix_checksum(buf, len);
            rc = try_image(buf, len, s);
            ck_assert_msg(rc == -EBADMSG || rc == -EKEYREJECTED,
                          "byte %zu ^ %02x (checksum recomputed): rc %d", i, mask, rc);
            rejected += rc == -EKEYREJECTED;
            badmsg += rc == -EBADMSG;
        }
    /* Both layers did some of the work: header validation and the GCM tag. */
    ck_assert_int_gt(rejected, 0);
    ck_assert_int_gt(badmsg, 0);
    free(orig);
    free(buf);
}

START_TEST(test_ring_flip_passphrase)
{
    char path[512];
    struct keys_secret *s = pass_secret("flip me");
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);
    /* One mask per position (rotating bits) keeps the scrypt runs to one per byte. */
    flip_everything(path, s, NULL, 1, 1);
    keys_secret_free(s);
}
END_TEST

START_TEST(test_ring_flip_models)
{
    static const uint8_t masks[] = {0x01, 0x10, 0x80, 0xff};
    char path[512];
    uint8_t kb[32], id[16], w[40];
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    struct keys_secret *s = key_secret(kb);
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, s, 0), 0);
    struct keys_ring *ring = open_ok(path, s);
    memset(id, 1, sizeof(id));
    memset(w, 0x33, sizeof(w));
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_AUTOENCODER, id, w, 40), 0);
    id[0] = 2;
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id, w, 7), 0);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, s, 0), 0);
    keys_ring_close(ring);
    /* Key-file keyring with a model table: cheap KEK, so several masks per byte. */
    flip_everything(path, s, masks, sizeof(masks), 0);
    keys_secret_free(s);
}
END_TEST

START_TEST(test_ring_malformed)
{
    char path[512], why[512];
    size_t len = 0;
    struct keys_ring *ring = NULL;
    struct keys_ring_info info;
    struct keys_secret *s = pass_secret("malformed");
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);
    uint8_t *orig = read_file(path, &len), *buf = malloc(len + 4096);
    ck_assert_ptr_nonnull(buf);

    /* Truncated at every length (0 is the empty file), as is and with a fresh checksum. */
    for (size_t n = 0; n < len; n++) {
        ck_assert_msg(try_image(orig, n, s) == -EBADMSG, "truncated to %zu accepted", n);
        if (n >= CHECKSUM + 8) {
            memcpy(buf, orig, n);
            fix_checksum(buf, n);
            int rc = try_image(buf, n, s);
            ck_assert_msg(rc == -EBADMSG, "truncated to %zu + checksum: rc %d", n, rc);
        }
    }
    /* keys_ring_info refuses them as well. */
    char scratch[512];
    tmp_path(scratch, sizeof(scratch), "scratch");
    write_file(scratch, orig, 0, 0600);
    ck_assert_int_eq(keys_ring_info(scratch, &info, why, sizeof(why)), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(why, scratch));
    write_file(scratch, orig, len - 1, 0600);
    ck_assert_int_eq(keys_ring_info(scratch, &info, why, sizeof(why)), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(why, "corrupt"));

    /* Extended: trailing bytes, with or without a checksum over them. */
    memcpy(buf, orig, len);
    buf[len] = 0;
    ck_assert_int_eq(try_image(buf, len + 1, s), -EBADMSG);
    memset(buf + len, 0, 64);
    fix_checksum(buf, len + 64);
    ck_assert_int_eq(try_image(buf, len + 64, s), -EBADMSG);

    /* Oversized: larger than any keyring can be (sparse), refused before reading it. */
    int fd = open(scratch, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, orig, len), (ssize_t)len);
    ck_assert_int_eq(ftruncate(fd, (off_t)300 << 20), 0);
    close(fd);
    ck_assert_int_eq(keys_ring_open(scratch, s, &ring, why, sizeof(why)), -EFBIG);
    ck_assert_ptr_null(ring);
    ck_assert_ptr_nonnull(strstr(why, scratch));
    ck_assert_int_eq(keys_ring_info(scratch, &info, why, sizeof(why)), -EFBIG);

    /* Random files of many sizes, with and without our magic, with and without a checksum. */
    static const size_t sizes[] = {1, 7, 8, 9, 100, 143, 144, 215, 216, 217, 1000, 4096};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int variant = 0; variant < 4; variant++) {
            size_t n = sizes[i];
            ck_assert_int_eq(keys_random(buf, n), 0);
            if (variant & 1 && n >= 8)
                memcpy(buf, KEYS_MAGIC, 8);
            if (variant & 2 && n >= CHECKSUM + 8)
                fix_checksum(buf, n);
            int rc = try_image(buf, n, s);
            ck_assert_msg(rc == -EBADMSG || rc == -EKEYREJECTED,
                          "random %zu bytes (variant %d): rc %d", n, variant, rc);
        }

    /* Well-formed headers with out-of-range fields, checksum fixed: refused by validation. */
    struct {
        size_t off;
        uint8_t val;
    } bad[] = {
        {8, 2},     /* version 2 */
        {9, 1},     /* version 257 */
        {10, 0},    /* KDF 0 */
        {10, 3},    /* KDF 3 */
        {10, 2},    /* key file KDF with scrypt parameters */
        {11, 9},    /* log_n below the minimum */
        {11, 23},   /* log_n above the maximum */
        {11, 0xff}, /* log_n absurd */
        {12, 0},    /* r = 0 */
        {12, 33},   /* r too large */
        {13, 0},    /* p = 0 */
        {13, 17},   /* p too large */
        {11, 21},   /* log_n over the memory cap (2 GiB with r = 8) */
        {11, 22},   /* log_n older builds wrote (4 GiB) */
        {12, 32},   /* r other than the 8 we write */
        {12, 7},    /* r other than the 8 we write */
        {13, 16},   /* p other than the 1 we write */
        {13, 2},    /* p other than the 1 we write */
        {14, 1},    /* reserved */
        {15, 0x80}, /* reserved */
        {72, 1},    /* model count without a table */
        {72, 65},   /* model count past the limit */
        {75, 0x80}, /* model count huge */
        {76, 73},   /* body length off by one */
        {79, 0x10}, /* body length past the limit */
        {92, 1},    /* reserved */
        {95, 1},    /* reserved */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(buf, orig, len);
        buf[bad[i].off] = bad[i].val;
        fix_checksum(buf, len);
        int rc = try_image(buf, len, s);
        ck_assert_msg(rc == -EBADMSG, "byte %zu = %u: rc %d", bad[i].off, bad[i].val, rc);
        write_file(scratch, buf, len, 0600);
        ck_assert_msg(keys_ring_info(scratch, &info, NULL, 0) == -EBADMSG,
                      "info accepted byte %zu = %u", bad[i].off, bad[i].val);
    }

    /* Not a regular file. */
    ck_assert_int_ne(keys_ring_open(tmpdir, s, &ring, why, sizeof(why)), 0);
    ck_assert_ptr_null(ring);
    free(orig);
    free(buf);
    keys_secret_free(s);
}
END_TEST

/* ---- The keyring: a planted KDF cost is refused before the KDF runs ------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_ring_hostile_cost)
{
    char path[512], scratch[512], why[512];
    size_t len = 0;
    struct keys_ring_info info;
    struct keys_secret *s = pass_secret("hostile cost");
    tmp_path(path, sizeof(path), "ring");
    tmp_path(scratch, sizeof(scratch), "hostile");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);
    uint8_t *orig = read_file(path, &len), *buf = malloc(len);
    ck_assert_ptr_nonnull(buf);

    /* Each would cost seconds to minutes and gigabytes if the KDF ran (the audit measured N=2^20,
     * r=32, p=16: 4.2 GB, still running after 15 s); each must be refused before it runs. */
    static const struct {
        uint8_t log_n, r, p;
        const char *says[2];
    } hostile[] = {
        {20, 32, 16, {"r=32, p=16", "not written by imgcrypt"}},
        {LOGN, 32, 16, {"r=32, p=16", "not written by imgcrypt"}},
        {LOGN, 8, 16, {"r=8, p=16", "not written by imgcrypt"}},
        {LOGN, 32, 1, {"r=32, p=1", "not written by imgcrypt"}},
        {21, 8, 1, {"N=2^21", "2048 MiB"}},
        {22, 8, 1, {"N=2^22", "4096 MiB"}},
        {40, 8, 1, {"N=2^40", "1024 MiB"}},
        {0xff, 8, 1, {"N=2^255 (over ", "1024 MiB"}},
    };
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        memcpy(buf, orig, len);
        buf[11] = hostile[i].log_n;
        buf[12] = hostile[i].r;
        buf[13] = hostile[i].p;
        fix_checksum(buf, len);
        write_file(scratch, buf, len, 0600);
        struct keys_ring *ring = NULL;
        why[0] = '\0';
        double t0 = now_s();
        int rc = keys_ring_open(scratch, s, &ring, why, sizeof(why));
        double dt = now_s() - t0;
        ck_assert_msg(rc == -EBADMSG, "log_n %u r %u p %u: rc %d", hostile[i].log_n, hostile[i].r,
                      hostile[i].p, rc);
        ck_assert_ptr_null(ring);
        ck_assert_msg(dt < 0.1, "refusal took %.3f s", dt);
        ck_assert_ptr_nonnull(strstr(why, scratch));
        for (int k = 0; k < 2; k++)
            ck_assert_msg(strstr(why, hostile[i].says[k]), "'%s' lacks '%s'", why,
                          hostile[i].says[k]);
        ck_assert_int_eq(keys_ring_info(scratch, &info, why, sizeof(why)), -EBADMSG);
    }
    /* The keyring as written still opens, and says which cost unlocked it. */
    struct keys_ring *ring = open_ok(path, s);
    ck_assert_uint_eq(keys_ring_kdf_cost(ring), LOGN);
    keys_ring_close(ring);

    /* keys_scrypt refuses past the cap whoever calls it, at once. */
    uint8_t out[32];
    ck_assert_int_eq(
        keys_scrypt((const uint8_t *)"x", 1, (const uint8_t *)"s", 1, 21, 8, 1, out, sizeof(out)),
        -EFBIG);
    ck_assert_int_eq(
        keys_scrypt((const uint8_t *)"x", 1, (const uint8_t *)"s", 1, 20, 9, 1, out, sizeof(out)),
        -EFBIG);
    ck_assert_int_eq(
        keys_scrypt((const uint8_t *)"x", 1, (const uint8_t *)"s", 1, 255, 8, 1, out, sizeof(out)),
        -EFBIG);
    free(orig);
    free(buf);
    keys_secret_free(s);
}
END_TEST

/* keys_ring_kdf_cost: the cost of the keyring as unlocked, which a header read made before the
 * unlock cannot change (the file swapped between the two reads). */
START_TEST(test_ring_kdf_cost)
{
    char path[512], decoy[512], kpath[512];
    uint8_t kb[KEYS_KEYFILE_BYTES];
    struct keys_secret *s = pass_secret("kdf cost");
    struct keys_ring_info info;
    tmp_path(path, sizeof(path), "ring");
    tmp_path(decoy, sizeof(decoy), "decoy");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN + 1), 0);
    ck_assert_int_eq(keys_ring_create(decoy, s, LOGN), 0);
    /* What a header read before the unlock would see, had the decoy been in place then ... */
    ck_assert_int_eq(keys_ring_info(decoy, &info, NULL, 0), 0);
    ck_assert_uint_eq(info.log_n, LOGN);
    /* ... while the file unlocked says its own cost. */
    struct keys_ring *ring = open_ok(path, s);
    ck_assert_uint_eq(keys_ring_kdf_cost(ring), LOGN + 1);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, s, keys_ring_kdf_cost(ring)), 0);
    keys_ring_close(ring);
    ck_assert_int_eq(keys_ring_info(path, &info, NULL, 0), 0);
    ck_assert_uint_eq(info.log_n, LOGN + 1);
    /* A key-file keyring has no scrypt cost. */
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    struct keys_secret *k = key_secret(kb);
    tmp_path(kpath, sizeof(kpath), "kring");
    ck_assert_int_eq(keys_ring_create(kpath, k, LOGN), 0);
    ring = open_ok(kpath, k);
    ck_assert_uint_eq(keys_ring_kdf_cost(ring), 0);
    keys_ring_close(ring);
    ck_assert_uint_eq(keys_ring_kdf_cost(NULL), 0);
    keys_secret_free(k);
    keys_secret_free(s);
}
END_TEST

/* ---- Locked memory: a failed mlock is reported once ---------------------------------------- */

static int warn_calls, warn_err;
static size_t warn_len;

static void count_warning(void *arg, int err, size_t len)
{
    ck_assert_ptr_eq(arg, &warn_calls);
    warn_calls++;
    warn_err = err;
    warn_len = len;
}

/* Child of test_memlock_warning: no right to lock memory, then two secret allocations. */
static int memlock_child(void)
{
    /* Root locks past RLIMIT_MEMLOCK with CAP_IPC_LOCK: drop it from the effective set. */
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) == 0) {
        data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
        if (syscall(SYS_capset, &hdr, data) != 0)
            return 10;
    }
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &none) != 0)
        return 11;
    keys_set_memlock_warning(count_warning, &warn_calls);
    if (keys_memlock_status() != 0)
        return 12;
    void *a = keys_secure_alloc(3 * 4096), *b = keys_secure_alloc(5 * 4096);
    if (!a || !b)
        return 13; /* the memory itself must still be there */
    keys_secure_free(a, 3 * 4096);
    keys_secure_free(b, 5 * 4096);
    if (warn_calls != 1)
        return 14; /* once, not per allocation */
    if (warn_err != -EPERM && warn_err != -ENOMEM)
        return 15;
    if (warn_len < 3 * 4096 || keys_memlock_status() != warn_err)
        return 16;
    return 0;
}

/* AddressSanitizer intercepts mlock and makes it succeed, so a refusal cannot be seen in that
 * build; the plain build checks it. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_INTERCEPTED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_INTERCEPTED 1
#endif
#endif

START_TEST(test_memlock_warning)
{
#ifdef MLOCK_INTERCEPTED
    return;
#endif
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(memlock_child());
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}
END_TEST

/* ---- The keyring: the format in keys.h, byte by byte ---------------------------------------- */

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A key-file keyring written from the description in keys.h, not by ring.c. The body's copies
 * of the public fields can be made to disagree with the header, which only someone holding the
 * KEK could do, to reach the checks behind the tag. */
struct forge {
    uint8_t keyfile[32], master[32], fs_id[16], salt[32], nonce[12];
    uint64_t created;
    uint32_t nmodels;
    uint8_t model_id[2][16];
    uint32_t model_kind[2];
    uint32_t model_len[2];
    const uint8_t *model_w[2];
    uint8_t body_fs_id_xor;
    uint64_t body_created_add;
    uint32_t body_count_add;
};

static uint8_t *forge_keyring(const struct forge *f, size_t *out_len)
{
    size_t h = KEYS_FIXED_HEADER + KEYS_MODEL_ENTRY * (size_t)f->nmodels, b = 72;
    for (uint32_t i = 0; i < f->nmodels; i++)
        b += f->model_len[i];
    size_t len = h + b + 16 + 32;
    uint8_t *buf = calloc(1, len), *body = calloc(1, b), kek[32];
    struct keys_key *k = NULL;
    ck_assert(buf && body);
    memcpy(buf, "IMGCRKEY", 8); // NOLINT(bugprone-not-null-terminated-result): bytes
    le(buf + 8, 1, 2);
    buf[10] = 2; /* key file: cost bytes and reserved stay 0 */
    memcpy(buf + 16, f->salt, 32);
    memcpy(buf + 48, f->fs_id, 16);
    le(buf + 64, f->created, 8);
    le(buf + 72, f->nmodels, 4);
    le(buf + 76, b, 4);
    memcpy(buf + 80, f->nonce, 12);
    memcpy(body, f->master, 32);
    memcpy(body + 32, f->fs_id, 16);
    body[32] ^= f->body_fs_id_xor;
    le(body + 48, f->created + f->body_created_add, 8);
    le(body + 56, f->nmodels + f->body_count_add, 4);
    size_t off = 72;
    for (uint32_t i = 0; i < f->nmodels; i++) {
        uint8_t *e = buf + 96 + 32 * i;
        memcpy(e, f->model_id[i], 16);
        le(e + 16, f->model_kind[i], 4);
        le(e + 24, f->model_len[i], 8);
        memcpy(body + off, f->model_w[i], f->model_len[i]);
        off += f->model_len[i];
    }
    ck_assert_int_eq(keys_hkdf(f->keyfile, 32, f->salt, 32, "imgcryptfs keyring kek v1", kek, 32),
                     0);
    ck_assert_int_eq(keys_key_from_bytes(kek, KEYS_KEY_GCM, &k), 0);
    ck_assert_int_eq(keys_gcm_seal(k, f->nonce, buf, h, body, b, buf + h, buf + h + b), 0);
    ck_assert_int_eq(keys_sha256(buf, len - 32, buf + len - 32), 0);
    keys_key_free(k);
    free(body);
    *out_len = len;
    return buf;
}

START_TEST(test_sha256_kat)
{
    uint8_t out[32], want[32];
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, sizeof(want));
    ck_assert_int_eq(keys_sha256("abc", 3, out), 0);
    ck_assert_mem_eq(out, want, 32);
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want, sizeof(want));
    ck_assert_int_eq(keys_sha256("", 0, out), 0);
    ck_assert_mem_eq(out, want, 32);
}
END_TEST

START_TEST(test_ring_format_read)
{
    char path[512];
    struct forge f;
    uint8_t w0[5] = {1, 2, 3, 4, 5}, w1[1] = {0xaa}, fa[32], fb[32], id[16];
    size_t len = 0;
    memset(&f, 0, sizeof(f));
    ck_assert_int_eq(keys_random(&f, offsetof(struct forge, created)), 0);
    f.created = 1700000000;
    f.nmodels = 2;
    memset(f.model_id[0], 0x10, 16);
    memset(f.model_id[1], 0x20, 16);
    f.model_kind[0] = KEYS_MODEL_AUTOENCODER;
    f.model_kind[1] = KEYS_MODEL_CODER;
    f.model_len[0] = sizeof(w0);
    f.model_len[1] = sizeof(w1);
    f.model_w[0] = w0;
    f.model_w[1] = w1;
    struct keys_secret *s = key_secret(f.keyfile);
    tmp_path(path, sizeof(path), "forged");

    /* Written by the specification: ring.c reads every field back. */
    uint8_t *buf = forge_keyring(&f, &len);
    write_file(path, buf, len, 0600);
    struct keys_ring_info info;
    ck_assert_int_eq(keys_ring_info(path, &info, NULL, 0), 0);
    ck_assert_uint_eq(info.kdf, KEYS_KDF_KEYFILE);
    ck_assert_uint_eq(info.created, 1700000000);
    ck_assert_mem_eq(info.fs_id, f.fs_id, 16);
    ck_assert_uint_eq(info.model_count, 2);
    ck_assert_uint_eq(info.models[1].kind, KEYS_MODEL_CODER);
    ck_assert_uint_eq(info.models[0].bytes, 5);
    struct keys_ring *ring = open_ok(path, s);
    keys_ring_fs_id(ring, id);
    ck_assert_mem_eq(id, f.fs_id, 16);
    struct keys_model_info mi;
    const uint8_t *w = NULL;
    ck_assert_int_eq(keys_ring_model(ring, 0, &mi, &w), 0);
    ck_assert_mem_eq(w, w0, 5);
    ck_assert_int_eq(keys_ring_model(ring, 1, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, f.model_id[1], 16);
    ck_assert_uint_eq(w[0], 0xaa);
    /* Subkeys are HKDF(master, salt = filesystem id, "imgcryptfs v1 " || label), as documented. */
    struct keys_key *master = NULL, *a = NULL, *b = NULL;
    ck_assert_int_eq(keys_key_from_bytes(f.master, KEYS_KEY_GCM, &master), 0);
    ck_assert_int_eq(keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &a), 0);
    ck_assert_int_eq(keys_key_derive(master, "content", f.fs_id, 16, KEYS_KEY_GCM, &b), 0);
    fingerprint(a, KEYS_KEY_GCM, fa);
    fingerprint(b, KEYS_KEY_GCM, fb);
    ck_assert_mem_eq(fa, fb, 32);
    keys_key_free(a);
    keys_key_free(b);
    keys_key_free(master);
    keys_ring_close(ring);
    free(buf);

    /* Sealed copies that disagree with the header: authentic, yet refused. */
    for (int which = 0; which < 3; which++) {
        struct forge g = f;
        if (which == 0)
            g.body_fs_id_xor = 1;
        else if (which == 1)
            g.body_created_add = 1;
        else
            g.body_count_add = 1;
        buf = forge_keyring(&g, &len);
        ring = NULL;
        int rc = try_image(buf, len, s);
        ck_assert_msg(rc == -EBADMSG, "inconsistent body %d: rc %d", which, rc);
        free(buf);
    }
    keys_secret_free(s);
}
END_TEST

START_TEST(test_ring_format_write)
{
    char path[512];
    size_t len = 0;
    struct keys_secret *s = pass_secret("format pass");
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);
    uint8_t *buf = read_file(path, &len), sum[32], kek[32], body[72];
    time_t now = time(NULL);

    /* Every header field where keys.h says it is. */
    ck_assert_uint_eq(len, 96 + 72 + 16 + 32);
    ck_assert_mem_eq(buf, "IMGCRKEY", 8);
    ck_assert_uint_eq(get_le(buf + 8, 2), 1);
    ck_assert_uint_eq(buf[10], KEYS_KDF_SCRYPT);
    ck_assert_uint_eq(buf[11], LOGN);
    ck_assert_uint_eq(buf[12], KEYS_SCRYPT_R);
    ck_assert_uint_eq(buf[13], KEYS_SCRYPT_P);
    ck_assert_uint_eq(get_le(buf + 14, 2), 0);
    uint64_t created = get_le(buf + 64, 8);
    ck_assert(created <= (uint64_t)now && created + 600 >= (uint64_t)now);
    ck_assert_uint_eq(get_le(buf + 72, 4), 0);
    ck_assert_uint_eq(get_le(buf + 76, 4), 72);
    ck_assert_uint_eq(get_le(buf + 92, 4), 0);
    ck_assert_int_eq(keys_sha256(buf, len - 32, sum), 0);
    ck_assert_mem_eq(sum, buf + len - 32, 32);

    /* The body opens with KEK = scrypt(passphrase, salt, N, r, p), AAD = the header. */
    struct keys_key *k = NULL, *master = NULL, *a = NULL, *b = NULL;
    ck_assert_int_eq(keys_scrypt((const uint8_t *)"format pass", 11, buf + 16, 32, LOGN,
                                 KEYS_SCRYPT_R, KEYS_SCRYPT_P, kek, 32),
                     0);
    ck_assert_int_eq(keys_key_from_bytes(kek, KEYS_KEY_GCM, &k), 0);
    ck_assert_int_eq(keys_gcm_open(k, buf + 80, buf, 96, buf + 96, 72, body, buf + 96 + 72), 0);
    ck_assert_mem_eq(body + 32, buf + 48, 16);
    ck_assert_uint_eq(get_le(body + 48, 8), created);
    ck_assert_uint_eq(get_le(body + 56, 4), 0);
    ck_assert(all_zero(body + 60, 12));
    ck_assert(!all_zero(body, 32));

    /* body[0..32] is the master key the ring derives its subkeys from. */
    uint8_t fa[32], fb[32];
    struct keys_ring *ring = open_ok(path, s);
    ck_assert_int_eq(keys_key_from_bytes(body, KEYS_KEY_GCM, &master), 0);
    ck_assert_int_eq(keys_ring_subkey(ring, "names", KEYS_KEY_SIV, &a), 0);
    ck_assert_int_eq(keys_key_derive(master, "names", buf + 48, 16, KEYS_KEY_SIV, &b), 0);
    fingerprint(a, KEYS_KEY_SIV, fa);
    fingerprint(b, KEYS_KEY_SIV, fb);
    ck_assert_mem_eq(fa, fb, 32);
    keys_key_free(a);
    keys_key_free(b);
    keys_key_free(master);
    keys_key_free(k);
    keys_ring_close(ring);
    free(buf);
    keys_secret_free(s);
}
END_TEST

/* ---- The keyring: permissions -------------------------------------------------------------- */

static void expect_unsafe(int rc, const char *why, const char *path, const char *fix)
{
    ck_assert_msg(rc == -EPERM, "%s: rc %d, expected -EPERM", path, rc);
    ck_assert_msg(strstr(why, path) != NULL, "message does not name %s: %s", path, why);
    ck_assert_msg(strstr(why, fix) != NULL, "message does not say '%s': %s", fix, why);
    ck_assert_msg(strchr(why, '\n') == NULL, "message is not one line: %s", why);
}

START_TEST(test_ring_perms)
{
    static const mode_t unsafe[] = {0640, 0604, 0660, 0644, 0602, 0620, 0610, 0601};
    char ring_path[512], pass_path[512], key_path[512], why[512];
    struct keys_ring *ring = NULL;
    struct keys_secret *s = pass_secret("perm pass"), *got = NULL;
    struct keys_ring_info info;
    uint8_t kb[32] = {9};
    tmp_path(ring_path, sizeof(ring_path), "ring");
    tmp_path(pass_path, sizeof(pass_path), "passfile");
    tmp_path(key_path, sizeof(key_path), "keyfile");
    ck_assert_int_eq(keys_ring_create(ring_path, s, LOGN), 0);
    write_file(pass_path, "perm pass\n", 10, 0600);
    write_file(key_path, kb, 32, 0600);
    struct keys_source pass_src = {KEYS_SRC_PASSFILE, pass_path};
    struct keys_source key_src = {KEYS_SRC_KEYFILE, key_path};

    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        /* The keyring: open refuses, info reads it but flags it. */
        ck_assert_int_eq(chmod(ring_path, unsafe[i]), 0);
        why[0] = '\0';
        expect_unsafe(keys_ring_open(ring_path, s, &ring, why, sizeof(why)), why, ring_path,
                      "chmod");
        ck_assert_ptr_null(ring);
        why[0] = '\0';
        ck_assert_int_eq(keys_ring_info(ring_path, &info, why, sizeof(why)), 0);
        ck_assert_int_eq(info.unsafe_perms, 1);
        ck_assert_ptr_nonnull(strstr(why, "chmod"));
        /* Passfile and key file. */
        ck_assert_int_eq(chmod(pass_path, unsafe[i]), 0);
        why[0] = '\0';
        expect_unsafe(keys_secret_read(&pass_src, NULL, 0, &got, why, sizeof(why)), why, pass_path,
                      "chmod");
        ck_assert_ptr_null(got);
        ck_assert_ptr_null(strstr(why, "perm pass"));
        ck_assert_int_eq(chmod(key_path, unsafe[i]), 0);
        why[0] = '\0';
        expect_unsafe(keys_secret_read(&key_src, NULL, 0, &got, why, sizeof(why)), why, key_path,
                      "chmod");
        ck_assert_ptr_null(got);
    }

    /* Owner-only modes are fine. */
    ck_assert_int_eq(chmod(ring_path, 0600), 0);
    ck_assert_int_eq(chmod(pass_path, 0400), 0);
    ck_assert_int_eq(chmod(key_path, 0600), 0);
    ring = open_ok(ring_path, s);
    keys_ring_close(ring);
    ring = NULL;
    ck_assert_int_eq(keys_ring_info(ring_path, &info, NULL, 0), 0);
    ck_assert_int_eq(info.unsafe_perms, 0);
    ck_assert_int_eq(keys_secret_read(&pass_src, NULL, 0, &got, why, sizeof(why)), 0);
    keys_secret_free(got);
    got = NULL;
    ck_assert_int_eq(keys_secret_read(&key_src, NULL, 0, &got, why, sizeof(why)), 0);
    keys_secret_free(got);
    got = NULL;

    /* A directory is not a secret file. */
    struct keys_source dir_src = {KEYS_SRC_PASSFILE, tmpdir};
    ck_assert_int_eq(keys_secret_read(&dir_src, NULL, 0, &got, why, sizeof(why)), -EPERM);
    ck_assert_ptr_nonnull(strstr(why, "regular file"));

    /* Files owned by another user, even with mode 0600 (only root can make them here). */
    if (geteuid() == 0) {
        const char *paths[] = {ring_path, pass_path, key_path};
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(chown(paths[i], 65534, 65534), 0);
        why[0] = '\0';
        expect_unsafe(keys_ring_open(ring_path, s, &ring, why, sizeof(why)), why, ring_path,
                      "chown");
        ck_assert_ptr_null(ring);
        why[0] = '\0';
        expect_unsafe(keys_secret_read(&pass_src, NULL, 0, &got, why, sizeof(why)), why, pass_path,
                      "chown");
        why[0] = '\0';
        expect_unsafe(keys_secret_read(&key_src, NULL, 0, &got, why, sizeof(why)), why, key_path,
                      "chown");
        ck_assert_int_eq(keys_ring_info(ring_path, &info, NULL, 0), 0);
        ck_assert_int_eq(info.unsafe_perms, 1);
        /* Owner back: accepted again. */
        ck_assert_int_eq(chown(ring_path, 0, 0), 0);
        ring = open_ok(ring_path, s);
        keys_ring_close(ring);
    } else {
        fprintf(stderr, "test_ring_perms: not root, other-owner case not run\n");
    }
    keys_secret_free(s);
}
END_TEST

/* ---- The keyring: rewrap ------------------------------------------------------------------- */

START_TEST(test_ring_rewrap)
{
    char path[512], why[512];
    struct keys_secret *old = pass_secret("old pass"), *neu = pass_secret("new pass");
    struct keys_ring *ring = NULL;
    struct keys_key *sub = NULL;
    uint8_t f_before[32], f_after[32], id_before[16], id_after[16];
    uint8_t kb[32];
    size_t len1 = 0, len2 = 0, len3 = 0;
    struct stat st;
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, old, LOGN), 0);
    uint8_t *v1 = read_file(path, &len1);

    ring = open_ok(path, old);
    ck_assert_int_eq(keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &sub), 0);
    fingerprint(sub, KEYS_KEY_GCM, f_before);
    keys_key_free(sub);
    keys_ring_fs_id(ring, id_before);
    /* An invalid cost leaves the file as it was. */
    ck_assert_int_eq(keys_ring_rewrap(ring, path, neu, KEYS_LOGN_MAX + 1), -EINVAL);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, neu, LOGN + 1), 0);
    keys_ring_close(ring);
    ring = NULL;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0400);
    uint8_t *v2 = read_file(path, &len2);
    ck_assert_uint_eq(len1, len2);
    /* Fresh salt and nonce; same filesystem id and creation time; new cost. */
    ck_assert(memcmp(v1 + 16, v2 + 16, 32) != 0);
    ck_assert(memcmp(v1 + 80, v2 + 80, 12) != 0);
    ck_assert_mem_eq(v1 + 48, v2 + 48, 24);
    ck_assert_uint_eq(v2[11], LOGN + 1);

    /* The old passphrase no longer opens it; the new one does, with the same master key. */
    ck_assert_int_eq(keys_ring_open(path, old, &ring, why, sizeof(why)), -EKEYREJECTED);
    ck_assert_ptr_null(ring);
    ring = open_ok(path, neu);
    ck_assert_int_eq(keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &sub), 0);
    fingerprint(sub, KEYS_KEY_GCM, f_after);
    keys_key_free(sub);
    ck_assert_mem_eq(f_before, f_after, 32);
    keys_ring_fs_id(ring, id_after);
    ck_assert_mem_eq(id_before, id_after, 16);

    /* Rewrap under the same passphrase still changes salt and nonce. */
    ck_assert_int_eq(keys_ring_rewrap(ring, path, neu, LOGN), 0);
    uint8_t *v3 = read_file(path, &len3);
    ck_assert(memcmp(v2 + 16, v3 + 16, 32) != 0);
    ck_assert(memcmp(v2 + 80, v3 + 80, 12) != 0);

    /* To a key file and back to a passphrase: the master key survives both. */
    ck_assert_int_eq(keys_random(kb, sizeof(kb)), 0);
    struct keys_secret *key = key_secret(kb);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, key, 0), 0);
    keys_ring_close(ring);
    ck_assert_int_eq(keys_ring_open(path, neu, &ring, why, sizeof(why)), -EKEYREJECTED);
    ring = open_ok(path, key);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, old, LOGN), 0);
    keys_ring_close(ring);
    ck_assert_int_eq(keys_ring_open(path, key, &ring, why, sizeof(why)), -EKEYREJECTED);
    ring = open_ok(path, old);
    ck_assert_int_eq(keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &sub), 0);
    fingerprint(sub, KEYS_KEY_GCM, f_after);
    ck_assert_mem_eq(f_before, f_after, 32);
    keys_key_free(sub);
    keys_ring_close(ring);

    /* No temporary file left behind. */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        ck_assert_msg(!strstr(e->d_name, ".tmp."), "left behind: %s", e->d_name);
    closedir(d);
    free(v1);
    free(v2);
    free(v3);
    keys_secret_free(key);
    keys_secret_free(old);
    keys_secret_free(neu);
}
END_TEST

/* ---- The keyring: models ------------------------------------------------------------------- */

START_TEST(test_ring_models)
{
    char path[512];
    struct keys_secret *s = pass_secret("model pass");
    struct keys_ring_info info;
    struct keys_model_info mi;
    const uint8_t *w = NULL;
    uint8_t id_a[16], id_b[16], *wa = malloc(5000), wb[3] = {7, 8, 9};
    ck_assert_ptr_nonnull(wa);
    ck_assert_int_eq(keys_random(id_a, 16), 0);
    ck_assert_int_eq(keys_random(id_b, 16), 0);
    ck_assert_int_eq(keys_random(wa, 5000), 0);
    tmp_path(path, sizeof(path), "ring");
    ck_assert_int_eq(keys_ring_create(path, s, LOGN), 0);

    struct keys_ring *ring = open_ok(path, s);
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_AUTOENCODER, id_a, wa, 5000), 0);
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id_b, wb, sizeof(wb)), 0);
    /* A known id is refused, whatever its kind or content. */
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id_a, wb, sizeof(wb)), -EEXIST);
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id_b, wb, sizeof(wb)), -EEXIST);
    ck_assert_uint_eq(keys_ring_model_count(ring), 2);
    /* The copy is taken at add time. */
    wb[0] = 0;
    ck_assert_int_eq(keys_ring_model(ring, 1, &mi, &w), 0);
    ck_assert_uint_eq(w[0], 7);
    wb[0] = 7;
    ck_assert_int_eq(keys_ring_model(ring, 2, &mi, &w), -EINVAL);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, s, LOGN), 0);
    keys_ring_close(ring);

    ring = open_ok(path, s);
    ck_assert_uint_eq(keys_ring_model_count(ring), 2);
    ck_assert_int_eq(keys_ring_model(ring, 0, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, id_a, 16);
    ck_assert_uint_eq(mi.kind, KEYS_MODEL_AUTOENCODER);
    ck_assert_uint_eq(mi.bytes, 5000);
    ck_assert_mem_eq(w, wa, 5000);
    ck_assert_int_eq(keys_ring_model(ring, 1, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, id_b, 16);
    ck_assert_uint_eq(mi.kind, KEYS_MODEL_CODER);
    ck_assert_uint_eq(mi.bytes, 3);
    ck_assert_mem_eq(w, wb, 3);
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id_a, wb, 3), -EEXIST);
    /* Raising one moves it (and its weights) to the end; an unknown id is not there. */
    uint8_t none[16] = {0};
    ck_assert_int_eq(keys_ring_raise_model(ring, none), -ENOENT);
    ck_assert_int_eq(keys_ring_raise_model(ring, id_a), 0);
    ck_assert_int_eq(keys_ring_model(ring, 0, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, id_b, 16);
    ck_assert_mem_eq(w, wb, 3);
    ck_assert_int_eq(keys_ring_model(ring, 1, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, id_a, 16);
    ck_assert_uint_eq(mi.bytes, 5000);
    ck_assert_mem_eq(w, wa, 5000);
    ck_assert_int_eq(keys_ring_raise_model(ring, id_a), 0); /* the last already */
    ck_assert_int_eq(keys_ring_model(ring, 1, &mi, &w), 0);
    ck_assert_mem_eq(mi.id, id_a, 16);
    ck_assert_int_eq(keys_ring_raise_model(ring, id_b), 0); /* back as it was */

    /* info lists them without a secret. */
    ck_assert_int_eq(keys_ring_info(path, &info, NULL, 0), 0);
    ck_assert_uint_eq(info.model_count, 2);
    ck_assert_mem_eq(info.models[0].id, id_a, 16);
    ck_assert_uint_eq(info.models[0].kind, KEYS_MODEL_AUTOENCODER);
    ck_assert_uint_eq(info.models[0].bytes, 5000);
    ck_assert_mem_eq(info.models[1].id, id_b, 16);
    ck_assert_uint_eq(info.models[1].kind, KEYS_MODEL_CODER);
    ck_assert_uint_eq(info.models[1].bytes, 3);
    ck_assert_uint_eq(info.file_bytes, 96 + 2 * 32 + 72 + 5000 + 3 + 16 + 32);

    /* Limits: one model too large; the 65th model. Empty models are allowed. */
    uint8_t id[16] = {0};
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id, wa, KEYS_MAX_MODEL_BYTES + 1),
                     -EFBIG);
    for (uint32_t i = 2; i < KEYS_MAX_MODELS; i++) {
        id[0] = (uint8_t)i;
        id[15] = 0xee;
        ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id, NULL, 0), 0);
    }
    id[0] = 0xff;
    ck_assert_int_eq(keys_ring_add_model(ring, KEYS_MODEL_CODER, id, NULL, 0), -EFBIG);
    ck_assert_uint_eq(keys_ring_model_count(ring), KEYS_MAX_MODELS);
    ck_assert_int_eq(keys_ring_rewrap(ring, path, s, LOGN), 0);
    keys_ring_close(ring);
    ring = open_ok(path, s);
    ck_assert_uint_eq(keys_ring_model_count(ring), KEYS_MAX_MODELS);
    ck_assert_int_eq(keys_ring_model(ring, KEYS_MAX_MODELS - 1, &mi, &w), 0);
    ck_assert_uint_eq(mi.bytes, 0);
    ck_assert_uint_eq(mi.id[0], KEYS_MAX_MODELS - 1);
    ck_assert_int_eq(keys_ring_model(ring, 0, &mi, &w), 0);
    ck_assert_mem_eq(w, wa, 5000);
    keys_ring_close(ring);
    free(wa);
    keys_secret_free(s);
}
END_TEST

/* ---- Suite --------------------------------------------------------------------------------- */

static TCase *tc(const char *name, const TTest *t, int fixture)
{
    TCase *c = tcase_create(name);
    if (fixture)
        /* Unchecked: runs in the parent, so the folder goes even when the test fails. */
        tcase_add_unchecked_fixture(c, tmp_setup, tmp_teardown);
    tcase_add_test(c, t);
    tcase_set_timeout(c, 120);
    return c;
}

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    suite_add_tcase(s, tc("gcm_kat", test_gcm_kat, 0));
    suite_add_tcase(s, tc("hkdf_kat", test_hkdf_kat, 0));
    suite_add_tcase(s, tc("scrypt_kat", test_scrypt_kat, 0));
    suite_add_tcase(s, tc("sha256_kat", test_sha256_kat, 0));
    suite_add_tcase(s, tc("gcm_roundtrip", test_gcm_roundtrip, 0));
    suite_add_tcase(s, tc("gcm_tamper", test_gcm_tamper, 0));
    suite_add_tcase(s, tc("gcm_two_keys", test_gcm_two_keys, 0));
    suite_add_tcase(s, tc("gcm_threads", test_gcm_threads, 0));
    suite_add_tcase(s, tc("siv", test_siv, 0));
    suite_add_tcase(s, tc("derive", test_derive, 0));
    suite_add_tcase(s, tc("ring_subkey", test_ring_subkey, 1));
    suite_add_tcase(s, tc("secret_sources", test_secret_sources, 1));
    suite_add_tcase(s, tc("secret_no_tty", test_secret_no_tty, 0));
    suite_add_tcase(s, tc("ring_passphrase", test_ring_passphrase, 1));
    suite_add_tcase(s, tc("ring_keyfile", test_ring_keyfile, 1));
    suite_add_tcase(s, tc("ring_flip_passphrase", test_ring_flip_passphrase, 1));
    suite_add_tcase(s, tc("ring_flip_models", test_ring_flip_models, 1));
    suite_add_tcase(s, tc("ring_malformed", test_ring_malformed, 1));
    suite_add_tcase(s, tc("ring_hostile_cost", test_ring_hostile_cost, 1));
    suite_add_tcase(s, tc("ring_kdf_cost", test_ring_kdf_cost, 1));
    suite_add_tcase(s, tc("memlock_warning", test_memlock_warning, 0));
    suite_add_tcase(s, tc("ring_format_read", test_ring_format_read, 1));
    suite_add_tcase(s, tc("ring_format_write", test_ring_format_write, 1));
    suite_add_tcase(s, tc("ring_perms", test_ring_perms, 1));
    suite_add_tcase(s, tc("ring_rewrap", test_ring_rewrap, 1));
    suite_add_tcase(s, tc("ring_models", test_ring_models, 1));
    return s;
}

int main(void)
{
    return unit_run(keys_suite());
}
