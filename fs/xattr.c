// SPDX-License-Identifier: MIT
/*
 * Extended attributes. Only the user namespace is stored, name and value sealed: the name
 * with AES-SIV (deterministic, so it can be looked up), the value with AES-GCM under a random
 * nonce with the sealed name as associated data, so a value moved to another name fails.
 * The calls go through /proc/self/fd of the node, the node's own inode, never a path in the
 * backing folder. As on Linux, symlinks and special files take no user xattrs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

#define XATTR_USER "user."
#define XATTR_MAX_VALUE (64 * 1024)
static int seal_name(const struct fs_ctx *c, const char *name, char *out, size_t cap)
{
    size_t plen = sizeof(XATTR_USER) - 1;
    uint8_t sealed[XATTR_NAME_MAX + KEYS_TAG_BYTES];
    if (strncmp(name, XATTR_USER, plen) != 0)
        return -EOPNOTSUPP;
    size_t len = strlen(name) - plen;
    ssize_t n = keys_siv_seal(c->xname_key, "xattr", 5, name + plen, len, sealed, sizeof(sealed));
    if (n < 0)
        return (int)n;
    if (plen + ((size_t)n + 2) / 3 * 4 + 1 > cap || plen + ((size_t)n + 2) / 3 * 4 > XATTR_NAME_MAX)
        return -ERANGE;
    memcpy(out, XATTR_USER, plen);
    fs_b64_encode(sealed, (size_t)n, out + plen);
    return 0;
}

/* The node's /proc path and the sealed name, or why not (user xattrs on files and folders). */
static int locate(const struct fs_ctx *c, const struct fs_node *n, const char *name, char path[32],
                  char *sname, size_t cap)
{
    if (strncmp(name, XATTR_USER, sizeof(XATTR_USER) - 1) != 0)
        return -ENODATA;
    if (n->type != S_IFREG && n->type != S_IFDIR)
        return -EPERM;
    fs_fd_path(n->fd, path);
    return seal_name(c, name, sname, cap);
}

/* Set (value) or remove (NULL) a sealed xattr under the node's lock: a conversion copies the
 * xattrs into the new form of the file and drops its result when they changed meanwhile. */
static int changed_xattr(struct fs_node *n, const char *path, const char *sname,
                         const uint8_t *value, size_t len, int flags)
{
    pthread_rwlock_wrlock(&n->lock);
    n->gen++;
    int rc = (value ? setxattr(path, sname, value, len, flags) : removexattr(path, sname)) == 0
                 ? 0
                 : -errno;
    pthread_rwlock_unlock(&n->lock);
    return rc;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags)
{
    struct fs_ctx *c = fs_req_ctx(req);
    char path[32], sname[XATTR_NAME_MAX + 1];
    int rc = fs_image_xattr_name(name)
                 ? -EPERM
                 : locate(c, fs_node_of(c, ino), name, path, sname, sizeof(sname));
    uint8_t *sealed = NULL;
    if (rc == -ENODATA)
        rc = -EOPNOTSUPP; /* other namespaces are not stored */
    if (rc == 0 && size > XATTR_MAX_VALUE - FS_SEAL_OVERHEAD)
        rc = -E2BIG;
    if (rc == 0 && !(sealed = malloc(size + FS_SEAL_OVERHEAD)))
        rc = -ENOMEM;
    /* Random nonce per value under the xattr value key; AAD = the sealed name. */
    if (rc == 0 && (rc = keys_random(sealed, KEYS_NONCE_BYTES)) == 0 &&
        (rc = keys_gcm_seal(c->xval_key, sealed, sname, strlen(sname), value, size,
                            sealed + KEYS_NONCE_BYTES, sealed + KEYS_NONCE_BYTES + size)) == 0)
        rc = changed_xattr(fs_node_of(c, ino), path, sname, sealed, size + FS_SEAL_OVERHEAD, flags);
    free(sealed);
    fuse_reply_err(req, -rc);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    char path[32], sname[XATTR_NAME_MAX + 1];
    if (fs_image_getxattr(req, n, name, size))
        return; /* the filesystem's own, read-only */
    /* The kernel asks for security.capability before every write: answered without I/O. */
    int rc = locate(c, n, name, path, sname, sizeof(sname));
    if (rc != 0) {
        fuse_reply_err(req, rc == -EOPNOTSUPP || rc == -EPERM ? ENODATA : -rc);
        return;
    }
    uint8_t *sealed = malloc(XATTR_MAX_VALUE);
    char *plain = NULL;
    ssize_t got = sealed ? getxattr(path, sname, sealed, XATTR_MAX_VALUE) : -1;
    if (!sealed) {
        rc = -ENOMEM;
    } else if (got < 0) {
        rc = -errno;
    } else if (got < FS_SEAL_OVERHEAD) {
        rc = fs_err(c, -EBADMSG, n->fd, UINT64_MAX, "getxattr");
    } else {
        size_t len = (size_t)got - FS_SEAL_OVERHEAD;
        if (size != 0 && size < len) {
            rc = -ERANGE;
        } else if (size == 0) {
            fuse_reply_xattr(req, len);
        } else if (!(plain = malloc(len ? len : 1))) {
            rc = -ENOMEM;
        } else if ((rc = keys_gcm_open(c->xval_key, sealed, sname, strlen(sname),
                                       sealed + KEYS_NONCE_BYTES, len, plain,
                                       sealed + KEYS_NONCE_BYTES + len)) != 0) {
            rc = fs_err(c, rc, n->fd, UINT64_MAX, "getxattr");
        } else {
            fuse_reply_buf(req, plain, len);
            OPENSSL_cleanse(plain, len);
        }
        if (size == 0 && rc == 0) {
            free(sealed);
            return;
        }
    }
    free(plain);
    free(sealed);
    if (rc != 0)
        fuse_reply_err(req, -rc);
}

/* Plaintext names of the sealed user xattrs in raw (n bytes), into list (size 0: count). */
static ssize_t open_names(const struct fs_ctx *c, const char *raw, ssize_t n, char *list,
                          size_t size)
{
    size_t out = 0, plen = sizeof(XATTR_USER) - 1;
    for (const char *p = raw; p < raw + n; p += strlen(p) + 1) {
        uint8_t sealed[XATTR_NAME_MAX];
        char plain[XATTR_NAME_MAX + 1];
        if (strncmp(p, XATTR_USER, plen) != 0)
            continue;
        ssize_t m = fs_b64_decode(p + plen, strlen(p + plen), sealed, sizeof(sealed));
        if (m < 0)
            continue;
        ssize_t k = keys_siv_open(c->xname_key, "xattr", 5, sealed, (size_t)m, (uint8_t *)plain,
                                  sizeof(plain) - 1);
        if (k < 0)
            continue;
        size_t need = plen + (size_t)k + 1;
        if (size) {
            if (out + need > size)
                return -ERANGE;
            memcpy(list + out, XATTR_USER, plen);
            memcpy(list + out + plen, plain, (size_t)k);
            list[out + need - 1] = '\0';
        }
        out += need;
    }
    return (ssize_t)out;
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    char path[32];
    if (n->type != S_IFREG && n->type != S_IFDIR) {
        if (size == 0)
            fuse_reply_xattr(req, 0);
        else
            fuse_reply_buf(req, NULL, 0);
        return;
    }
    fs_fd_path(n->fd, path);
    ssize_t len = listxattr(path, NULL, 0);
    char *raw = len >= 0 ? malloc((size_t)len + 1) : NULL;
    char *list = size ? malloc(size) : NULL;
    ssize_t out = len < 0 ? -errno : -ENOMEM;
    if (raw && (!size || list)) {
        len = listxattr(path, raw, (size_t)len);
        out = len < 0 ? -errno : open_names(c, raw, len, list, size);
    }
    if (out < 0)
        fuse_reply_err(req, (int)-out);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)out);
    else
        fuse_reply_buf(req, list, (size_t)out);
    free(raw);
    free(list);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    char path[32], sname[XATTR_NAME_MAX + 1];
    if (fs_image_xattr_name(name)) {
        fuse_reply_err(req, EPERM); /* the filesystem's own, read-only */
        return;
    }
    int rc = locate(c, fs_node_of(c, ino), name, path, sname, sizeof(sname));
    if (rc == -EOPNOTSUPP || rc == -EPERM)
        rc = -ENODATA;
    if (rc == 0)
        rc = changed_xattr(fs_node_of(c, ino), path, sname, NULL, 0, 0);
    fuse_reply_err(req, -rc);
}
