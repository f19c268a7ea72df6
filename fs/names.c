// SPDX-License-Identifier: MIT
/*
 * Name translation: plaintext paths to backing paths and back.
 *
 * Each backing folder holds its random 16-byte id in .imgcryptfs.dirid; an entry's name is
 * base64url(AES-256-SIV(name key, AAD = parent id, name)). SIV is deterministic, so a lookup
 * needs no directory scan, and the parent id keeps equal names in different folders from
 * looking equal. Names whose sealed form exceeds NAME_MAX are stored as
 * .imgcryptfs.long.<base64url(SHA-256(sealed name))> with the sealed name in a ".name"
 * sidecar beside it. Everything here works on folder descriptors, one component at a time,
 * and never follows a symlink in the backing folder.
 */
#include <dirent.h>
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

int fs_dirid_read(const struct fs_ctx *c, int dir_fd, uint8_t id[KEYS_ID_BYTES])
{
    struct stat st;
    int fd = fs_open_regular(dir_fd, FS_DIRID_NAME, &st), rc;
    if (fd < 0) {
        rc = -errno;
        if (rc == -ENOENT || rc == -ELOOP || rc == -EINVAL) {
            char where[PATH_MAX];
            fs_where(dir_fd, where, sizeof(where));
            fs_log(c, LOG_ERR, "%s: folder has no %s: its names cannot be read", where,
                   FS_DIRID_NAME);
            rc = -EIO;
        }
        return rc;
    }
    uint8_t buf[KEYS_ID_BYTES];
    ssize_t n = codec_pread_all(fd, buf, sizeof(buf), 0);
    rc = n == KEYS_ID_BYTES ? 0 : n < 0 ? (int)n : -EIO;
    close(fd);
    if (rc != 0) {
        char where[PATH_MAX];
        fs_where(dir_fd, where, sizeof(where));
        fs_log(c, LOG_ERR, "%s/%s: %s", where, FS_DIRID_NAME,
               rc == -EIO && n >= 0 ? "damaged folder id" : fs_strerror(-rc));
    }
    if (rc == 0)
        memcpy(id, buf, KEYS_ID_BYTES);
    return rc;
}

int fs_write_all(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    return 0;
}

int fs_dirid_create(int dir_fd, uint8_t id[KEYS_ID_BYTES])
{
    uint8_t fresh[KEYS_ID_BYTES];
    int rc = keys_random(fresh, sizeof(fresh));
    if (rc != 0)
        return rc;
    int fd =
        openat(dir_fd, FS_DIRID_NAME, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return -errno;
    rc = fs_write_all(fd, fresh, sizeof(fresh));
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc != 0)
        (void)unlinkat(dir_fd, FS_DIRID_NAME, 0);
    else
        memcpy(id, fresh, KEYS_ID_BYTES);
    return rc;
}

/* The hashed backing name of a long sealed name. */
static void long_name(const char *enc, char *out)
{
    uint8_t h[32];
    (void)keys_sha256(enc, strlen(enc), h);
    memcpy(out, FS_LONG_PREFIX, sizeof(FS_LONG_PREFIX) - 1);
    fs_b64_encode(h, sizeof(h), out + sizeof(FS_LONG_PREFIX) - 1);
}

int fs_name_seal(const struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *name,
                 struct fs_name *out)
{
    uint8_t sealed[NAME_MAX + KEYS_TAG_BYTES];
    size_t len = strlen(name);
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    if (len == 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    ssize_t n = keys_siv_seal(c->name_key, dirid, KEYS_ID_BYTES, name, len, sealed, sizeof(sealed));
    if (n < 0)
        return (int)n;
    char enc[FS_ENC_CAP];
    size_t elen = fs_b64_encode(sealed, (size_t)n, enc);
    out->is_long = elen > FS_SHORT_MAX;
    if (out->is_long) {
        memcpy(out->enc, enc, elen + 1);
        long_name(enc, out->leaf);
    } else {
        memcpy(out->leaf, enc, elen + 1);
        out->enc[0] = '\0';
    }
    return 0;
}

int fs_name_decrypt(const struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *enc,
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

static int sidecar_name(const struct fs_name *nm, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", nm->leaf, FS_LONG_SUFFIX);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int fs_long_write(int dir_fd, const struct fs_name *nm)
{
    char p[NAME_MAX + 1];
    int rc;
    if (!nm->is_long)
        return 0;
    if ((rc = sidecar_name(nm, p, sizeof(p))) != 0)
        return rc;
    int fd = openat(dir_fd, p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return -errno;
    rc = fs_write_all(fd, nm->enc, strlen(nm->enc));
    close(fd);
    if (rc != 0)
        (void)unlinkat(dir_fd, p, 0);
    return rc;
}

void fs_long_remove(int dir_fd, const struct fs_name *nm)
{
    char p[NAME_MAX + 1];
    if (nm->is_long && sidecar_name(nm, p, sizeof(p)) == 0)
        (void)unlinkat(dir_fd, p, 0);
}

int fs_entry_name(const struct fs_ctx *c, int dir_fd, const uint8_t dirid[KEYS_ID_BYTES],
                  const char *entry, char *out, size_t cap)
{
    size_t plen = sizeof(FS_LONG_PREFIX) - 1, slen = sizeof(FS_LONG_SUFFIX) - 1;
    size_t len = strlen(entry);
    if (!fs_is_reserved(entry))
        return fs_name_decrypt(c, dirid, entry, out, cap);
    if (len <= plen || strncmp(entry, FS_LONG_PREFIX, plen) != 0 ||
        strchr(entry + plen, '.') != NULL)
        return -ENOENT; /* .dirid, sidecars, temporary entries */
    char side[NAME_MAX + 1], enc[FS_ENC_CAP + 1];
    if (len + slen >= sizeof(side))
        return -ENOENT;
    memcpy(side, entry, len);
    memcpy(side + len, FS_LONG_SUFFIX, slen);
    side[len + slen] = '\0';
    struct stat st;
    int fd = fs_open_regular(dir_fd, side, &st);
    if (fd < 0)
        return -EBADMSG;
    ssize_t n = read(fd, enc, sizeof(enc) - 1);
    close(fd);
    if (n <= 0)
        return -EBADMSG;
    enc[n] = '\0';
    /* The sidecar must belong to this hashed name. */
    char check[FS_LEAF_CAP];
    long_name(enc, check);
    if (strcmp(check, entry) != 0)
        return -EBADMSG;
    return fs_name_decrypt(c, dirid, enc, out, cap);
}

/* Temporary names: FS_TMP_PREFIX <mount tag> "." <random>. The tag tells this mount's own
 * entries, which may be in use, from leftovers of an earlier one. */
int fs_tmp_name(const struct fs_ctx *c, char out[FS_TMP_CAP])
{
    uint8_t r[8];
    char rnd[16];
    int rc = keys_random(r, sizeof(r));
    if (rc != 0)
        return rc;
    fs_b64_encode(r, sizeof(r), rnd);
    size_t plen = sizeof(FS_TMP_PREFIX) - 1;
    memcpy(out, FS_TMP_PREFIX, plen);
    memcpy(out + plen, c->tag, FS_TAG_LEN);
    out[plen + FS_TAG_LEN] = '.';
    memcpy(out + plen + FS_TAG_LEN + 1, rnd, FS_TAG_LEN + 1);
    return 0;
}

int fs_tmp_foreign(const struct fs_ctx *c, const char *entry)
{
    size_t plen = sizeof(FS_TMP_PREFIX) - 1;
    if (strncmp(entry, FS_TMP_PREFIX, plen) != 0)
        return 0;
    return !(strncmp(entry + plen, c->tag, FS_TAG_LEN) == 0 && entry[plen + FS_TAG_LEN] == '.');
}

int fs_tmp_remove(int dir_fd, const char *entry)
{
    if (unlinkat(dir_fd, entry, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    /* A folder being made: it holds its id at most. */
    int dfd = openat(dir_fd, entry, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -ENOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            (void)unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return unlinkat(dir_fd, entry, AT_REMOVEDIR) == 0 ? 0 : -errno;
}
