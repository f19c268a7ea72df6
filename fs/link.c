// SPDX-License-Identifier: MIT
/*
 * Symlink targets. A target is sealed under the symlink key (AES-256-GCM, a random nonce per
 * link) and kept where the backing filesystem keeps targets: the backing symlink's own target
 * is base64url(nonce || C || tag). That form holds targets of up to 3041 bytes; a longer one
 * (up to PATH_MAX - 1, Linux's limit) does not fit in any backing symlink, so its sealed bytes
 * go into a sidecar file of the root folder, .imgcryptfs.link.<id>, with the random link id in
 * the associated data, and the backing symlink's target is the marker .imgcryptfs.ln.<id>.
 * The marker's length is one no base64url text has (1 mod 4), so lstat tells the two kinds
 * apart by size alone. The trade-off: the sidecar is a second file that must go with the last
 * name of its link. Removal goes by the link count of the inode held across the unlink, so
 * hard links share one sidecar safely; a crash or a change of the backing folder can leave an
 * orphaned sidecar, a few KB that nothing reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"

/* Associated data of every sealed target; a long one adds its link id. */
#define LINK_AAD "symlink"
#define LINK_AAD_LEN (sizeof(LINK_AAD) - 1)
/* Longest target kept in the backing symlink: its stored form, as earlier releases bounded
 * it (padded length), stays below PATH_MAX. */
#define LINK_SHORT_MAX 3041
#define LINK_SEALED_MAX (PATH_MAX - 1 + FS_SEAL_OVERHEAD)
/* The backing target of a long link: LINK_MARKER + base64url(id). */
#define LINK_MARKER ".imgcryptfs.ln."
#define LINK_ID_B64 22
#define LINK_MARKER_LEN (sizeof(LINK_MARKER) - 1 + LINK_ID_B64)
#define LINK_SIDECAR_CAP (sizeof(FS_LINK_PREFIX) + LINK_ID_B64)

_Static_assert((LINK_SHORT_MAX + FS_SEAL_OVERHEAD + 2) / 3 * 4 < PATH_MAX,
               "a short target's stored form fits in a backing symlink");
_Static_assert(LINK_MARKER_LEN % 4 == 1, "no base64url text is as long as a marker");
_Static_assert((KEYS_ID_BYTES * 4 + 2) / 3 == LINK_ID_B64, "base64url of a link id");

static void sidecar_name(const uint8_t id[KEYS_ID_BYTES], char out[LINK_SIDECAR_CAP])
{
    memcpy(out, FS_LINK_PREFIX, sizeof(FS_LINK_PREFIX) - 1);
    fs_b64_encode(id, KEYS_ID_BYTES, out + sizeof(FS_LINK_PREFIX) - 1);
}

/* The link id of a backing target of n bytes; -EBADMSG when it is not a marker. */
static int marker_id(const char *stored, size_t n, uint8_t id[KEYS_ID_BYTES])
{
    size_t plen = sizeof(LINK_MARKER) - 1;
    if (n != LINK_MARKER_LEN || memcmp(stored, LINK_MARKER, plen) != 0 ||
        fs_b64_decode(stored + plen, LINK_ID_B64, id, KEYS_ID_BYTES) != KEYS_ID_BYTES)
        return -EBADMSG;
    return 0;
}

/* The id of the marker that backing symlink fd holds, or -EBADMSG / -errno. */
static int read_marker(int fd, uint8_t id[KEYS_ID_BYTES])
{
    char stored[LINK_MARKER_LEN + 1];
    ssize_t n = readlinkat(fd, "", stored, sizeof(stored));
    if (n < 0)
        return -errno;
    return marker_id(stored, (size_t)n, id);
}

/* nonce || C || tag of target (len bytes) into raw. */
static int seal(const struct fs_ctx *c, const void *aad, size_t aad_len, const char *target,
                size_t len, uint8_t *raw)
{
    /* A random nonce per target under the symlink key: see blockfile.h for the bound. */
    int rc = keys_random(raw, KEYS_NONCE_BYTES);
    if (rc != 0)
        return rc;
    return keys_gcm_seal(c->link_key, raw, aad, aad_len, target, len, raw + KEYS_NONCE_BYTES,
                         raw + KEYS_NONCE_BYTES + len);
}

/* Open raw (n bytes: nonce || C || tag) into a malloc'ed, NUL-terminated *out of *len bytes. */
static int unseal(const struct fs_ctx *c, const void *aad, size_t aad_len, const uint8_t *raw,
                  size_t n, char **out, size_t *len)
{
    if (n < FS_SEAL_OVERHEAD)
        return -EBADMSG;
    size_t plen = n - FS_SEAL_OVERHEAD;
    char *plain = malloc(plen + 1);
    if (!plain)
        return -ENOMEM;
    int rc = keys_gcm_open(c->link_key, raw, aad, aad_len, raw + KEYS_NONCE_BYTES, plen, plain,
                           raw + KEYS_NONCE_BYTES + plen);
    if (rc != 0) {
        free(plain);
        return rc;
    }
    plain[plen] = '\0';
    *out = plain;
    *len = plen;
    return 0;
}

/* Put the sealed bytes of link `id` in place: a temporary file of the root folder, fsynced,
 * renamed to its sidecar name (never over another). */
static int sidecar_write(const struct fs_ctx *c, const uint8_t id[KEYS_ID_BYTES],
                         const uint8_t *raw, size_t n)
{
    char tmp[FS_TMP_CAP], name[LINK_SIDECAR_CAP];
    int fd = -1, rc = fs_tmp_name(c, tmp);
    if (rc == 0 && (fd = openat(c->root.fd, tmp,
                                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        rc = -errno;
    if (rc == 0 && (rc = fs_write_all(fd, raw, n)) == 0 && fsync(fd) != 0)
        rc = -errno;
    if (rc == 0) {
        sidecar_name(id, name);
        rc = fs_place(c->root.fd, tmp, name, 0);
    }
    if (fd >= 0) {
        close(fd);
        if (rc != 0)
            (void)unlinkat(c->root.fd, tmp, 0);
    }
    return rc;
}

/* A long link's sidecar is missing or damaged: one log line naming the link and the sidecar. */
static int long_fail(const struct fs_ctx *c, int fd, const char *name, const char *why)
{
    char where[PATH_MAX], root[PATH_MAX];
    fs_where(fd, where, sizeof(where));
    fs_where(c->root.fd, root, sizeof(root));
    fs_log(c, LOG_ERR, "%s: symlink target in %s/%s: %s", where, root, name, why);
    return -EIO;
}

/* The sidecar of link id, opened without following a symlink, with its fstat: a regular file
 * of a size a sealed long target can have. A descriptor, or -errno. */
static int sidecar_open(const struct fs_ctx *c, const char *name, struct stat *st)
{
    int fd = fs_open_regular(c->root.fd, name, st);
    if (fd < 0)
        return errno == ELOOP || errno == EINVAL ? -EBADMSG : -errno;
    if (st->st_size <= FS_SEAL_OVERHEAD || st->st_size > LINK_SEALED_MAX) {
        close(fd);
        return -EBADMSG;
    }
    return fd;
}

/* The reason a sidecar did not open, for the log line. */
static const char *sidecar_reason(int rc)
{
    return rc == -ENOENT    ? "missing"
           : rc == -EBADMSG ? "not a sealed target (wrong type or size)"
                            : fs_strerror(-rc);
}

/* Open the long target of backing symlink fd (link id in aad after LINK_AAD). */
static int open_long(const struct fs_ctx *c, int fd, const uint8_t *aad, char **out, size_t *len)
{
    char name[LINK_SIDECAR_CAP];
    uint8_t raw[LINK_SEALED_MAX];
    struct stat st = {0};
    sidecar_name(aad + LINK_AAD_LEN, name);
    int sfd = sidecar_open(c, name, &st);
    if (sfd < 0)
        return long_fail(c, fd, name, sidecar_reason(sfd));
    ssize_t n = codec_pread_all(sfd, raw, (size_t)st.st_size, 0);
    close(sfd);
    if (n != st.st_size)
        return long_fail(c, fd, name, n < 0 ? fs_strerror((int)-n) : "shorter than its size");
    int rc = unseal(c, aad, LINK_AAD_LEN + KEYS_ID_BYTES, raw, (size_t)n, out, len);
    if (rc == -EBADMSG)
        return long_fail(c, fd, name, "authentication failed (modified, or another link's)");
    return rc;
}

int fs_link_seal(const struct fs_ctx *c, const char *target, char out[PATH_MAX])
{
    size_t len = strlen(target);
    uint8_t raw[LINK_SEALED_MAX], aad[LINK_AAD_LEN + KEYS_ID_BYTES];
    int rc;
    if (len >= PATH_MAX)
        return -ENAMETOOLONG;
    if (len <= LINK_SHORT_MAX) {
        if ((rc = seal(c, LINK_AAD, LINK_AAD_LEN, target, len, raw)) == 0)
            fs_b64_encode(raw, len + FS_SEAL_OVERHEAD, out);
        return rc;
    }
    /* A random 16-byte id per long link: sidecars never collide (and a collision would fail
     * the rename, not replace another link's target). */
    memcpy(aad, LINK_AAD, LINK_AAD_LEN);
    if ((rc = keys_random(aad + LINK_AAD_LEN, KEYS_ID_BYTES)) == 0 &&
        (rc = seal(c, aad, sizeof(aad), target, len, raw)) == 0 &&
        (rc = sidecar_write(c, aad + LINK_AAD_LEN, raw, len + FS_SEAL_OVERHEAD)) == 0) {
        memcpy(out, LINK_MARKER, sizeof(LINK_MARKER) - 1);
        fs_b64_encode(aad + LINK_AAD_LEN, KEYS_ID_BYTES, out + sizeof(LINK_MARKER) - 1);
    }
    return rc;
}

void fs_link_discard(const struct fs_ctx *c, const char *stored)
{
    uint8_t id[KEYS_ID_BYTES];
    char name[LINK_SIDECAR_CAP];
    if (marker_id(stored, strlen(stored), id) == 0) {
        sidecar_name(id, name);
        (void)unlinkat(c->root.fd, name, 0);
    }
}

int fs_link_open(const struct fs_ctx *c, int fd, char **out, size_t *len)
{
    char stored[PATH_MAX];
    uint8_t raw[PATH_MAX], aad[LINK_AAD_LEN + KEYS_ID_BYTES];
    ssize_t n = readlinkat(fd, "", stored, sizeof(stored) - 1);
    if (n < 0)
        return -errno;
    if ((size_t)n == LINK_MARKER_LEN) {
        if (marker_id(stored, (size_t)n, aad + LINK_AAD_LEN) != 0)
            return -EBADMSG;
        memcpy(aad, LINK_AAD, LINK_AAD_LEN);
        return open_long(c, fd, aad, out, len);
    }
    ssize_t m = fs_b64_decode(stored, (size_t)n, raw, sizeof(raw));
    if (m < 0)
        return -EBADMSG;
    return unseal(c, LINK_AAD, LINK_AAD_LEN, raw, (size_t)m, out, len);
}

int fs_link_size(const struct fs_ctx *c, int fd, const struct stat *link, off_t *size)
{
    uint8_t id[KEYS_ID_BYTES];
    char name[LINK_SIDECAR_CAP];
    struct stat st;
    off_t stored = link->st_size;
    if (stored != (off_t)LINK_MARKER_LEN) {
        off_t raw = stored / 4 * 3 + (stored % 4 ? stored % 4 - 1 : 0);
        *size = raw > FS_SEAL_OVERHEAD ? raw - FS_SEAL_OVERHEAD : 0;
        return 0;
    }
    /* A link whose last name went (fstat of a descriptor kept): its sidecar went with it. */
    if (link->st_nlink == 0) {
        *size = 0;
        return 0;
    }
    int rc = read_marker(fd, id);
    if (rc != 0)
        return rc == -EBADMSG ? fs_err(c, rc, fd, UINT64_MAX, "lstat") : rc;
    sidecar_name(id, name);
    if (fstatat(c->root.fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return long_fail(c, fd, name, sidecar_reason(-errno));
    if (!S_ISREG(st.st_mode) || st.st_size <= FS_SEAL_OVERHEAD || st.st_size > LINK_SEALED_MAX)
        return long_fail(c, fd, name, sidecar_reason(-EBADMSG));
    *size = st.st_size - FS_SEAL_OVERHEAD;
    return 0;
}

int fs_link_hold(int dir_fd, const char *leaf, const struct stat *st)
{
    if (!S_ISLNK(st->st_mode) || st->st_size != (off_t)LINK_MARKER_LEN)
        return -1;
    return openat(dir_fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

void fs_link_release(const struct fs_ctx *c, int fd)
{
    uint8_t id[KEYS_ID_BYTES];
    char name[LINK_SIDECAR_CAP];
    struct stat st;
    if (fd < 0)
        return;
    /* No name of the inode is left, and none can be added (link(2) of an inode without links
     * fails): its sidecar goes. A link count not read leaves an orphan, never a broken link. */
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
        st.st_nlink == 0 && read_marker(fd, id) == 0) {
        sidecar_name(id, name);
        (void)unlinkat(c->root.fd, name, 0);
    }
    close(fd);
}
