// SPDX-License-Identifier: MIT
/*
 * The keyring file: parse, unlock, create and re-wrap (format in keys.h).
 *
 * The whole file is read into memory and checked (size, checksum, magic, every limit) before a
 * single expensive or secret operation runs, so a corrupt or hostile file costs nothing and
 * gets a precise message; only then does the KDF run and the body get opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keys/keys_int.h"

#define KEK_INFO "imgcryptfs keyring kek v1"
#define BODY_FIXED 72
#define SALT_BYTES 32
#define CHECKSUM_BYTES 32
#define MAX_FILE_BYTES                                                                             \
    ((uint64_t)KEYS_FIXED_HEADER + KEYS_MAX_MODELS * KEYS_MODEL_ENTRY + KEYS_MAX_BODY_BYTES +      \
     KEYS_TAG_BYTES + CHECKSUM_BYTES)

struct keys_ring {
    struct keys_key *master;
    uint8_t fs_id[KEYS_ID_BYTES];
    uint64_t created;
    unsigned log_n; /* the scrypt cost that unlocked it (authenticated: it made the KEK); 0 for
                       a key file */
    uint32_t model_count;
    struct keys_model_info models[KEYS_MAX_MODELS];
    uint8_t *weights[KEYS_MAX_MODELS]; /* locked memory, models[i].bytes long */
};

/* A parsed, not yet unlocked, keyring image. Points into the file buffer. */
struct parsed {
    struct keys_ring_info info;
    const uint8_t *salt, *nonce, *body, *tag;
    size_t header_len;
    uint32_t body_len;
};

__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t whylen, const char *fmt,
                                                          ...)
{
    va_list ap;
    if (!why)
        return;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started on the line above
    (void)vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static int parse(const uint8_t *buf, size_t len, struct parsed *p, const char *path, char *why,
                 size_t whylen)
{
    memset(p, 0, sizeof(*p));
    if (len < 8 || memcmp(buf, KEYS_MAGIC, 8) != 0) {
        set_why(why, whylen, "%s: not an imgcryptfs keyring", path);
        return -EBADMSG;
    }
    if (len < KEYS_FIXED_HEADER + KEYS_TAG_BYTES + CHECKSUM_BYTES) {
        set_why(why, whylen, "%s: keyring is truncated", path);
        return -EBADMSG;
    }
    uint8_t sum[32];
    if (keys_sha256(buf, len - CHECKSUM_BYTES, sum) != 0)
        return -EIO;
    if (memcmp(sum, buf + len - CHECKSUM_BYTES, CHECKSUM_BYTES) != 0) {
        set_why(why, whylen, "%s: keyring is corrupt (checksum mismatch); restore it from a backup",
                path);
        return -EBADMSG;
    }
    struct keys_ring_info *in = &p->info;
    in->version = keys_get16(buf + 8);
    if (in->version != KEYS_VERSION) {
        set_why(why, whylen, "%s: keyring format version not supported by this imgcryptfs", path);
        return -EBADMSG;
    }
    in->kdf = buf[10];
    in->log_n = buf[11];
    in->r = buf[12];
    in->p = buf[13];
    int kdf_ok =
        (in->kdf == KEYS_KDF_SCRYPT && in->log_n >= KEYS_LOGN_MIN && in->r >= 1 && in->p >= 1) ||
        (in->kdf == KEYS_KDF_KEYFILE && in->log_n == 0 && in->r == 0 && in->p == 0);
    if (!kdf_ok || keys_get16(buf + 14) != 0 || keys_get32(buf + 92) != 0) {
        set_why(why, whylen, "%s: keyring header is invalid", path);
        return -EBADMSG;
    }
    /* Nothing is authenticated before the KDF runs: its cost must be one we write (r, p) and
     * within the memory cap (N), or a planted keyring could stall the machine. */
    if (in->kdf == KEYS_KDF_SCRYPT && (in->r != KEYS_SCRYPT_R || in->p != KEYS_SCRYPT_P)) {
        set_why(why, whylen,
                "%s: keyring asks for an scrypt cost this build refuses (r=%u, p=%u): not written "
                "by imgcrypt",
                path, in->r, in->p);
        return -EBADMSG;
    }
    /* r is 8 here, so the shift cannot overflow below log_n 40 */
    int huge = in->log_n > 40;
    uint64_t mem = 128ull * in->r << (huge ? 40 : in->log_n);
    if (in->kdf == KEYS_KDF_SCRYPT && (huge || mem > KEYS_SCRYPT_MAX_MEM)) {
        set_why(why, whylen,
                "%s: keyring asks for scrypt N=2^%u (%s%llu MiB of memory), more than the %llu "
                "MiB this build allows: not written by this imgcrypt (an older build's keyring: "
                "re-wrap it there with imgcrypt passwd --kdf-cost %d)",
                path, in->log_n, huge ? "over " : "", (unsigned long long)(mem >> 20),
                (unsigned long long)(KEYS_SCRYPT_MAX_MEM >> 20), KEYS_LOGN_MAX);
        return -EBADMSG;
    }
    p->salt = buf + 16;
    memcpy(in->fs_id, buf + 48, KEYS_ID_BYTES);
    in->created = keys_get64(buf + 64);
    in->model_count = keys_get32(buf + 72);
    p->body_len = keys_get32(buf + 76);
    p->nonce = buf + 80;
    if (in->model_count > KEYS_MAX_MODELS || p->body_len > KEYS_MAX_BODY_BYTES) {
        set_why(why, whylen, "%s: keyring header is invalid", path);
        return -EBADMSG;
    }
    p->header_len = KEYS_FIXED_HEADER + (size_t)in->model_count * KEYS_MODEL_ENTRY;
    uint64_t want_body = BODY_FIXED;
    for (uint32_t i = 0; i < in->model_count; i++) {
        const uint8_t *e = buf + KEYS_FIXED_HEADER + (size_t)i * KEYS_MODEL_ENTRY;
        if (p->header_len > len)
            break;
        memcpy(in->models[i].id, e, KEYS_ID_BYTES);
        in->models[i].kind = keys_get32(e + 16);
        in->models[i].bytes = keys_get64(e + 24);
        if (keys_get32(e + 20) != 0 || in->models[i].bytes > KEYS_MAX_MODEL_BYTES) {
            set_why(why, whylen, "%s: keyring model table is invalid", path);
            return -EBADMSG;
        }
        want_body += in->models[i].bytes;
    }
    if (want_body != p->body_len ||
        (uint64_t)p->header_len + p->body_len + KEYS_TAG_BYTES + CHECKSUM_BYTES != len) {
        set_why(why, whylen, "%s: keyring sizes are inconsistent", path);
        return -EBADMSG;
    }
    p->body = buf + p->header_len;
    p->tag = p->body + p->body_len;
    in->file_bytes = len;
    return 0;
}

/* Read the whole file; unsafe permissions are reported through *perm_rc, not failed. */
static int slurp(const char *path, uint8_t **out, size_t *out_len, int *perm_rc, char *why,
                 size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), rc = 0;
    uint8_t *buf = NULL;
    if (fd < 0) {
        rc = -errno;
        if (why) /* keyrings are read before the daemon starts a thread */
            // NOLINTNEXTLINE(concurrency-mt-unsafe)
            (void)snprintf(why, whylen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    *perm_rc = keys_check_private(fd, path, why, whylen);
    if (!S_ISREG(st.st_mode)) {
        rc = -EBADMSG;
        goto out;
    }
    if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        set_why(why, whylen, "%s: too large to be a keyring", path);
        rc = -EFBIG;
        goto out;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = malloc(len ? len : 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EBADMSG;
            goto out;
        }
        got += (size_t)n;
    }
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int keys_ring_info(const char *path, struct keys_ring_info *out, char *why, size_t whylen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int perm_rc = 0;
    struct parsed p;
    int rc = slurp(path, &buf, &len, &perm_rc, why, whylen);
    if (rc == 0)
        rc = parse(buf, len, &p, path, why, whylen);
    if (rc == 0) {
        p.info.unsafe_perms = perm_rc != 0;
        if (perm_rc == 0 && why && whylen)
            why[0] = '\0';
        *out = p.info;
    }
    free(buf);
    return rc;
}

/* KEK for a parsed header and a secret. */
static int derive_kek(const struct keys_secret *secret, unsigned kdf, unsigned log_n, unsigned r,
                      unsigned p, const uint8_t *salt, struct keys_key **out)
{
    uint8_t raw[32];
    int rc;
    if (kdf == KEYS_KDF_KEYFILE)
        rc = keys_hkdf(secret->bytes, secret->len, salt, SALT_BYTES, KEK_INFO, raw, sizeof(raw));
    else
        rc = keys_scrypt(secret->bytes, secret->len, salt, SALT_BYTES, log_n, r, p, raw,
                         sizeof(raw));
    if (rc == 0)
        rc = keys_key_from_bytes(raw, KEYS_KEY_GCM, out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

void keys_ring_close(struct keys_ring *ring)
{
    if (!ring)
        return;
    keys_key_free(ring->master);
    for (uint32_t i = 0; i < ring->model_count; i++)
        keys_secure_free(ring->weights[i], ring->models[i].bytes);
    keys_secure_free(ring, sizeof(*ring));
}

int keys_ring_open(const char *path, const struct keys_secret *secret, struct keys_ring **out,
                   char *why, size_t whylen)
{
    uint8_t *buf = NULL, *body = NULL;
    size_t len = 0, body_cap = 0;
    int perm_rc = 0, rc;
    struct parsed p;
    struct keys_key *kek = NULL;
    struct keys_ring *ring = NULL;

    keys_harden_process();
    rc = slurp(path, &buf, &len, &perm_rc, why, whylen);
    if (rc == 0 && perm_rc != 0)
        rc = perm_rc; /* message already in why */
    if (rc != 0)
        goto out;
    rc = parse(buf, len, &p, path, why, whylen);
    if (rc != 0)
        goto out;
    if ((p.info.kdf == KEYS_KDF_KEYFILE) != (secret->keyfile != 0)) {
        if (why)
            (void)snprintf(why, whylen, "%s: this keyring is unlocked with %s", path,
                           p.info.kdf == KEYS_KDF_KEYFILE ? "a key file (--keyfile)"
                                                          : "a passphrase");
        rc = -EKEYREJECTED;
        goto out;
    }
    rc = derive_kek(secret, p.info.kdf, p.info.log_n, p.info.r, p.info.p, p.salt, &kek);
    if (rc != 0)
        goto out;
    body_cap = p.body_len;
    body = keys_secure_alloc(body_cap);
    if (!body) {
        rc = -ENOMEM;
        goto out;
    }
    rc = keys_gcm_open(kek, p.nonce, buf, p.header_len, p.body, p.body_len, body, p.tag);
    if (rc == -EBADMSG) {
        set_why(why, whylen, "%s: wrong passphrase or key (or the keyring was modified)", path);
        rc = -EKEYREJECTED;
    }
    if (rc != 0)
        goto out;
    /* The sealed copies of the public fields must agree with the header. */
    if (memcmp(body + 32, p.info.fs_id, KEYS_ID_BYTES) != 0 ||
        keys_get64(body + 48) != p.info.created || keys_get32(body + 56) != p.info.model_count ||
        keys_get32(body + 60) != 0 || keys_get64(body + 64) != 0) {
        set_why(why, whylen, "%s: keyring header does not match its sealed body", path);
        rc = -EBADMSG;
        goto out;
    }
    ring = keys_secure_alloc(sizeof(*ring));
    if (!ring) {
        rc = -ENOMEM;
        goto out;
    }
    rc = keys_key_from_bytes(body, KEYS_KEY_GCM, &ring->master);
    if (rc != 0)
        goto out;
    memcpy(ring->fs_id, p.info.fs_id, KEYS_ID_BYTES);
    ring->created = p.info.created;
    ring->log_n = p.info.kdf == KEYS_KDF_SCRYPT ? p.info.log_n : 0;
    size_t off = BODY_FIXED;
    for (uint32_t i = 0; i < p.info.model_count; i++) {
        ring->weights[i] = keys_secure_alloc(p.info.models[i].bytes);
        if (!ring->weights[i]) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(ring->weights[i], body + off, p.info.models[i].bytes);
        ring->models[i] = p.info.models[i];
        ring->model_count = i + 1;
        off += p.info.models[i].bytes;
    }
    *out = ring;
    ring = NULL;
out:
    keys_ring_close(ring);
    keys_secure_free(body, body_cap);
    keys_key_free(kek);
    free(buf);
    return rc;
}

/* Serialise `ring` sealed under `secret` into a new malloc'ed buffer. */
static int serialise(const struct keys_ring *ring, const struct keys_secret *secret, unsigned log_n,
                     uint8_t **out, size_t *out_len)
{
    int rc;
    unsigned kdf = secret->keyfile ? KEYS_KDF_KEYFILE : KEYS_KDF_SCRYPT;
    if (kdf == KEYS_KDF_SCRYPT && (log_n < KEYS_LOGN_MIN || log_n > KEYS_LOGN_MAX))
        return -EINVAL;
    size_t header_len = KEYS_FIXED_HEADER + (size_t)ring->model_count * KEYS_MODEL_ENTRY;
    uint64_t body_len = BODY_FIXED;
    for (uint32_t i = 0; i < ring->model_count; i++)
        body_len += ring->models[i].bytes;
    if (body_len > KEYS_MAX_BODY_BYTES)
        return -EFBIG;
    size_t len = header_len + (size_t)body_len + KEYS_TAG_BYTES + CHECKSUM_BYTES;
    uint8_t *buf = calloc(1, len), *body = keys_secure_alloc((size_t)body_len);
    struct keys_key *kek = NULL;
    if (!buf || !body) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(buf, KEYS_MAGIC, 8);
    keys_put16(buf + 8, KEYS_VERSION);
    buf[10] = (uint8_t)kdf;
    if (kdf == KEYS_KDF_SCRYPT) {
        buf[11] = (uint8_t)log_n;
        buf[12] = KEYS_SCRYPT_R;
        buf[13] = KEYS_SCRYPT_P;
    }
    /* Fresh salt and nonce on every write: the KEK changes with the salt, so no (KEK, nonce)
     * pair repeats even when the same secret seals the keyring again. */
    if ((rc = keys_random(buf + 16, SALT_BYTES)) != 0 ||
        (rc = keys_random(buf + 80, KEYS_NONCE_BYTES)) != 0)
        goto out;
    memcpy(buf + 48, ring->fs_id, KEYS_ID_BYTES);
    keys_put64(buf + 64, ring->created);
    keys_put32(buf + 72, ring->model_count);
    keys_put32(buf + 76, (uint32_t)body_len);
    memcpy(body, ring->master->bytes, 32);
    memcpy(body + 32, ring->fs_id, KEYS_ID_BYTES);
    keys_put64(body + 48, ring->created);
    keys_put32(body + 56, ring->model_count);
    size_t off = BODY_FIXED;
    for (uint32_t i = 0; i < ring->model_count; i++) {
        uint8_t *e = buf + KEYS_FIXED_HEADER + (size_t)i * KEYS_MODEL_ENTRY;
        memcpy(e, ring->models[i].id, KEYS_ID_BYTES);
        keys_put32(e + 16, ring->models[i].kind);
        keys_put64(e + 24, ring->models[i].bytes);
        memcpy(body + off, ring->weights[i], ring->models[i].bytes);
        off += ring->models[i].bytes;
    }
    rc = derive_kek(secret, kdf, buf[11], buf[12], buf[13], buf + 16, &kek);
    if (rc != 0)
        goto out;
    rc = keys_gcm_seal(kek, buf + 80, buf, header_len, body, (size_t)body_len, buf + header_len,
                       buf + header_len + body_len);
    if (rc != 0)
        goto out;
    rc = keys_sha256(buf, len - CHECKSUM_BYTES, buf + len - CHECKSUM_BYTES);
    if (rc != 0)
        goto out;
    *out = buf;
    *out_len = len;
    buf = NULL;
out:
    keys_key_free(kek);
    keys_secure_free(body, (size_t)body_len);
    free(buf);
    return rc;
}

static int fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    free(copy);
    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/*
 * Write buf to a temporary file beside path (mode 0400), fsync it, then put it in place:
 * with `replace`, rename over path; without, link (which never replaces) and drop the temp name.
 */
static int write_atomic(const char *path, const uint8_t *buf, size_t len, int replace)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    int fd = -1, rc = 0;
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        free(tmp);
        return rc;
    }
    if (fchmod(fd, 0400) != 0) {
        rc = -errno;
        goto fail;
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        rc = -errno;
        goto fail;
    }
    if (replace ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!replace)
        (void)unlink(tmp);
    free(tmp);
    return fsync_parent(path);
fail:
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    free(tmp);
    return rc;
}

int keys_ring_rewrap(const struct keys_ring *ring, const char *path,
                     const struct keys_secret *secret, unsigned log_n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = serialise(ring, secret, log_n, &buf, &len);
    if (rc == 0)
        rc = write_atomic(path, buf, len, 1);
    free(buf);
    return rc;
}

int keys_ring_create(const char *path, const struct keys_secret *secret, unsigned log_n)
{
    uint8_t master[32];
    uint8_t *buf = NULL;
    size_t len = 0;
    struct keys_ring *ring = keys_secure_alloc(sizeof(*ring));
    int rc;
    if (!ring)
        return -ENOMEM;
    if (access(path, F_OK) == 0) {
        rc = -EEXIST;
        goto out;
    }
    if ((rc = keys_random(master, sizeof(master))) != 0 ||
        (rc = keys_random(ring->fs_id, KEYS_ID_BYTES)) != 0 ||
        (rc = keys_key_from_bytes(master, KEYS_KEY_GCM, &ring->master)) != 0)
        goto out;
    ring->created = (uint64_t)time(NULL);
    rc = serialise(ring, secret, log_n, &buf, &len);
    if (rc == 0)
        rc = write_atomic(path, buf, len, 0);
out:
    OPENSSL_cleanse(master, sizeof(master));
    free(buf);
    keys_ring_close(ring);
    return rc;
}

void keys_ring_fs_id(const struct keys_ring *ring, uint8_t out[KEYS_ID_BYTES])
{
    memcpy(out, ring->fs_id, KEYS_ID_BYTES);
}

unsigned keys_ring_kdf_cost(const struct keys_ring *ring)
{
    return ring ? ring->log_n : 0;
}

int keys_ring_subkey(const struct keys_ring *ring, const char *label, enum keys_key_kind kind,
                     struct keys_key **out)
{
    if (!ring)
        return -EINVAL;
    return keys_key_derive(ring->master, label, ring->fs_id, KEYS_ID_BYTES, kind, out);
}

uint32_t keys_ring_model_count(const struct keys_ring *ring)
{
    return ring->model_count;
}

int keys_ring_model(const struct keys_ring *ring, uint32_t index, struct keys_model_info *info,
                    const uint8_t **weights)
{
    if (!ring || index >= ring->model_count)
        return -EINVAL;
    if (info)
        *info = ring->models[index];
    if (weights)
        *weights = ring->weights[index];
    return 0;
}

int keys_ring_add_model(struct keys_ring *ring, uint32_t kind, const uint8_t id[KEYS_ID_BYTES],
                        const void *weights, size_t len)
{
    if (!ring || !id || (len && !weights))
        return -EINVAL;
    for (uint32_t i = 0; i < ring->model_count; i++)
        if (memcmp(ring->models[i].id, id, KEYS_ID_BYTES) == 0)
            return -EEXIST;
    uint64_t total = BODY_FIXED + len;
    for (uint32_t i = 0; i < ring->model_count; i++)
        total += ring->models[i].bytes;
    if (ring->model_count == KEYS_MAX_MODELS || len > KEYS_MAX_MODEL_BYTES ||
        total > KEYS_MAX_BODY_BYTES)
        return -EFBIG;
    uint8_t *w = keys_secure_alloc(len);
    if (!w)
        return -ENOMEM;
    if (len)
        memcpy(w, weights, len);
    uint32_t i = ring->model_count;
    memcpy(ring->models[i].id, id, KEYS_ID_BYTES);
    ring->models[i].kind = kind;
    ring->models[i].bytes = len;
    ring->weights[i] = w;
    ring->model_count = i + 1;
    return 0;
}

int keys_ring_raise_model(struct keys_ring *ring, const uint8_t id[KEYS_ID_BYTES])
{
    if (!ring || !id)
        return -EINVAL;
    uint32_t i = 0;
    while (i < ring->model_count && memcmp(ring->models[i].id, id, KEYS_ID_BYTES) != 0)
        i++;
    if (i == ring->model_count)
        return -ENOENT;
    uint32_t last = ring->model_count - 1;
    struct keys_model_info info = ring->models[i];
    uint8_t *w = ring->weights[i];
    memmove(&ring->models[i], &ring->models[i + 1], (last - i) * sizeof(ring->models[0]));
    memmove(&ring->weights[i], &ring->weights[i + 1], (last - i) * sizeof(ring->weights[0]));
    ring->models[last] = info;
    ring->weights[last] = w;
    return 0;
}
