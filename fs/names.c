// SPDX-License-Identifier: MIT
/*
 * Name translation: plaintext paths to backing paths and back.
 *
 * Each backing folder holds its random 16-byte id in .imgcryptfs.dirid; an entry's name is
 * base64url(AES-256-SIV(name key, AAD = parent id, name)). SIV is deterministic, so a lookup
 * needs no directory scan, and the parent id keeps equal names in different folders from
 * looking equal. Names whose sealed form exceeds NAME_MAX are stored as
 * .imgcryptfs.long.<base64url(SHA-256(sealed name))> with the sealed name in a ".name"
 * sidecar beside it. Folder ids are cached by backing path; renaming or removing a folder
 * flushes the cache, which is cheap to refill and never stale.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t fs_b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_chars[v >> 18];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = b64_chars[(v >> 6) & 63];
        out[o++] = b64_chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_chars[v >> 18];
        out[o++] = b64_chars[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_chars[v >> 18];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = b64_chars[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

ssize_t fs_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 == 1)
        return -EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -ENAMETOOLONG;
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (uint8_t)(acc >> 16);
            out[o++] = (uint8_t)(acc >> 8);
            out[o++] = (uint8_t)acc;
            acc = 0;
        }
    }
    /* Reject non-canonical tails (unused low bits set), so each name has one encoding. */
    if (len % 4 == 2) {
        if (acc & 0xf)
            return -EINVAL;
        out[o++] = (uint8_t)(acc >> 4);
    } else if (len % 4 == 3) {
        if (acc & 0x3)
            return -EINVAL;
        out[o++] = (uint8_t)(acc >> 10);
        out[o++] = (uint8_t)(acc >> 2);
    }
    return (ssize_t)o;
}

int fs_is_reserved(const char *entry)
{
    /* Every sealed name is base64url, which has no '.', so anything with a dot is ours. */
    return strchr(entry, '.') != NULL;
}

static uint64_t hash_path(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = strcmp(dir, ".") == 0 ? snprintf(out, cap, "%s", name)
                                  : snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int read_dirid(struct fs_ctx *c, const char *rel, uint8_t id[KEYS_ID_BYTES])
{
    char p[FS_PATH_CAP];
    int rc = join(p, sizeof(p), rel, FS_DIRID_NAME);
    if (rc != 0)
        return rc;
    int fd = openat(c->root_fd, p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT) {
            fs_log(c, LOG_ERR, "%s: folder has no %s: its names cannot be read", rel,
                   FS_DIRID_NAME);
            rc = -EIO;
        }
        return rc;
    }
    ssize_t n = read(fd, id, KEYS_ID_BYTES);
    rc = n == KEYS_ID_BYTES ? 0 : n < 0 ? -errno : -EIO;
    if (rc == -EIO)
        fs_log(c, LOG_ERR, "%s/%s: damaged folder id", rel, FS_DIRID_NAME);
    close(fd);
    return rc;
}

int fs_dirid_get(struct fs_ctx *c, const char *rel, uint8_t id[KEYS_ID_BYTES])
{
    uint64_t h = hash_path(rel);
    struct fs_dirid_slot *s = &c->dirids[h % FS_DIRID_SLOTS];
    pthread_mutex_lock(&c->dirid_lock);
    if (s->path && s->hash == h && strcmp(s->path, rel) == 0) {
        memcpy(id, s->id, KEYS_ID_BYTES);
        pthread_mutex_unlock(&c->dirid_lock);
        return 0;
    }
    pthread_mutex_unlock(&c->dirid_lock);
    int rc = read_dirid(c, rel, id);
    if (rc != 0)
        return rc;
    char *copy = strdup(rel);
    if (!copy)
        return 0; /* the id is right; it just is not cached */
    pthread_mutex_lock(&c->dirid_lock);
    free(s->path);
    s->path = copy;
    s->hash = h;
    memcpy(s->id, id, KEYS_ID_BYTES);
    pthread_mutex_unlock(&c->dirid_lock);
    return 0;
}

void fs_dirid_flush(struct fs_ctx *c)
{
    pthread_mutex_lock(&c->dirid_lock);
    for (size_t i = 0; i < FS_DIRID_SLOTS; i++) {
        free(c->dirids[i].path);
        c->dirids[i].path = NULL;
    }
    pthread_mutex_unlock(&c->dirid_lock);
}

int fs_dirid_create(struct fs_ctx *c, const char *rel_dir)
{
    uint8_t id[KEYS_ID_BYTES];
    char p[FS_PATH_CAP];
    int rc = join(p, sizeof(p), rel_dir, FS_DIRID_NAME);
    if (rc != 0 || (rc = keys_random(id, sizeof(id))) != 0)
        return rc;
    int fd = openat(c->root_fd, p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return -errno;
    if (write(fd, id, sizeof(id)) != (ssize_t)sizeof(id))
        rc = -EIO;
    else if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc != 0)
        (void)unlinkat(c->root_fd, p, 0);
    return rc;
}

/* Seal one name under the folder id: base64url into out. */
static int seal_name(struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *name,
                     size_t len, char *out, size_t cap)
{
    uint8_t sealed[NAME_MAX + KEYS_TAG_BYTES];
    if (len == 0 || len > NAME_MAX)
        return -ENAMETOOLONG;
    ssize_t n = keys_siv_seal(c->name_key, dirid, KEYS_ID_BYTES, name, len, sealed, sizeof(sealed));
    if (n < 0)
        return (int)n;
    if (((size_t)n + 2) / 3 * 4 + 1 > cap)
        return -ENAMETOOLONG;
    fs_b64_encode(sealed, (size_t)n, out);
    return 0;
}

int fs_name_decrypt(struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *enc,
                    char *out, size_t cap)
{
    uint8_t sealed[NAME_MAX + KEYS_TAG_BYTES + 3];
    ssize_t n = fs_b64_decode(enc, strlen(enc), sealed, sizeof(sealed));
    if (n < 0)
        return -EBADMSG;
    ssize_t m = keys_siv_open(c->name_key, dirid, KEYS_ID_BYTES, sealed, (size_t)n, (uint8_t *)out,
                              cap - 1);
    if (m < 0)
        return -EBADMSG;
    out[m] = '\0';
    /* A sealed name can only hold what a name may hold. */
    if (m == 0 || memchr(out, '/', (size_t)m) || memchr(out, '\0', (size_t)m) ||
        strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        return -EBADMSG;
    return 0;
}

/* The hashed backing name of a long sealed name. */
static void long_name(const char *enc, char *out)
{
    uint8_t h[32];
    (void)keys_sha256(enc, strlen(enc), h);
    memcpy(out, FS_LONG_PREFIX, sizeof(FS_LONG_PREFIX) - 1);
    fs_b64_encode(h, sizeof(h), out + sizeof(FS_LONG_PREFIX) - 1);
}

int fs_resolve(struct fs_ctx *c, const char *path, struct fs_bpath *bp)
{
    char enc[FS_ENC_CAP], leaf[sizeof(FS_LONG_PREFIX) + 64];
    int rc;
    strcpy(bp->rel, ".");
    strcpy(bp->parent, ".");
    bp->leaf = bp->rel;
    bp->is_long = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        strcpy(bp->parent, bp->rel);
        if ((rc = fs_dirid_get(c, bp->rel, bp->parent_id)) != 0)
            return rc;
        if ((rc = seal_name(c, bp->parent_id, p, len, enc, sizeof(enc))) != 0)
            return rc;
        size_t elen = strlen(enc);
        bp->is_long = elen > FS_SHORT_MAX;
        const char *name = enc;
        if (bp->is_long) {
            long_name(enc, leaf);
            memcpy(bp->enc, enc, elen + 1);
            name = leaf;
        }
        size_t at = strcmp(bp->rel, ".") == 0 ? 0 : strlen(bp->rel) + 1;
        if (at + strlen(name) + 1 > sizeof(bp->rel))
            return -ENAMETOOLONG;
        if (at)
            bp->rel[at - 1] = '/';
        strcpy(bp->rel + at, name);
        bp->leaf = bp->rel + at;
        if (!end)
            break;
        p = end;
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
    }
    return 0;
}

static int sidecar_path(const struct fs_bpath *bp, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", bp->rel, FS_LONG_SUFFIX);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int fs_long_write(struct fs_ctx *c, const struct fs_bpath *bp)
{
    char p[FS_PATH_CAP];
    int rc;
    if (!bp->is_long)
        return 0;
    if ((rc = sidecar_path(bp, p, sizeof(p))) != 0)
        return rc;
    int fd = openat(c->root_fd, p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return -errno;
    size_t len = strlen(bp->enc);
    if (write(fd, bp->enc, len) != (ssize_t)len)
        rc = -EIO;
    close(fd);
    return rc;
}

void fs_long_remove(struct fs_ctx *c, const struct fs_bpath *bp)
{
    char p[FS_PATH_CAP];
    if (bp->is_long && sidecar_path(bp, p, sizeof(p)) == 0)
        (void)unlinkat(c->root_fd, p, 0);
}

int fs_entry_name(struct fs_ctx *c, int dir_fd, const uint8_t dirid[KEYS_ID_BYTES],
                  const char *entry, char *out, size_t cap)
{
    size_t plen = sizeof(FS_LONG_PREFIX) - 1, slen = sizeof(FS_LONG_SUFFIX) - 1;
    size_t len = strlen(entry);
    if (!fs_is_reserved(entry))
        return fs_name_decrypt(c, dirid, entry, out, cap);
    if (len <= plen || strncmp(entry, FS_LONG_PREFIX, plen) != 0 ||
        strchr(entry + plen, '.') != NULL)
        return -ENOENT; /* .dirid, sidecars, temporary files */
    char side[NAME_MAX + 1], enc[FS_ENC_CAP + 1];
    if (len + slen >= sizeof(side))
        return -ENOENT;
    memcpy(side, entry, len);
    memcpy(side + len, FS_LONG_SUFFIX, slen + 1);
    int fd = openat(dir_fd, side, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -EBADMSG;
    ssize_t n = read(fd, enc, sizeof(enc) - 1);
    close(fd);
    if (n <= 0)
        return -EBADMSG;
    enc[n] = '\0';
    /* The sidecar must belong to this hashed name. */
    char check[sizeof(FS_LONG_PREFIX) + 64];
    long_name(enc, check);
    if (strcmp(check, entry) != 0)
        return -EBADMSG;
    return fs_name_decrypt(c, dirid, enc, out, cap);
}
