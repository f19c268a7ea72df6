// SPDX-License-Identifier: MIT
/*
 * The FUSE operations (high-level, path-based API). Each operation resolves the plaintext path
 * to its sealed backing path and performs the same operation there with the *at() calls
 * relative to the backing folder's descriptor; contents go through the block file under the
 * inode's lock. Errors from the codec are mapped in one place (fs_err): an authentication
 * failure becomes EIO plus one log line naming the backing path and block.
 */
#define FUSE_USE_VERSION 312
#include <fuse3/fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

#define XATTR_USER "user."
#define FS_FUSE_HIDDEN ".fuse_hidden"
#define XATTR_MAX_VALUE (64 * 1024)
#define LINK_OVERHEAD (KEYS_NONCE_BYTES + KEYS_TAG_BYTES)

static struct fs_ctx *ctx(void)
{
    return fuse_get_context()->private_data;
}

static struct fs_handle *handle(const struct fuse_file_info *fi)
{
    return (struct fs_handle *)(uintptr_t)fi->fh;
}

/* The one place where internal codes become what the caller sees. */
static int fs_err(struct fs_ctx *c, int rc, const char *rel, uint64_t block, const char *what)
{
    if (rc == -EBADMSG) {
        if (block != UINT64_MAX)
            fs_log(c, LOG_ERR,
                   "%s: block %llu: authentication failed during %s (modified, "
                   "moved or truncated ciphertext)",
                   rel ? rel : "?", (unsigned long long)block, what);
        else
            fs_log(c, LOG_ERR, "%s: authentication failed during %s", rel ? rel : "?", what);
        return -EIO;
    }
    return rc;
}

/* Plaintext size of a symlink target from its sealed, base64url length. */
static off_t link_plain_size(off_t b64_len)
{
    off_t raw = b64_len / 4 * 3 + (b64_len % 4 ? b64_len % 4 - 1 : 0);
    return raw > LINK_OVERHEAD ? raw - LINK_OVERHEAD : 0;
}

static void fix_stat(struct stat *st)
{
    if (S_ISREG(st->st_mode))
        st->st_size = (off_t)codec_bf_plain_size((uint64_t)st->st_size);
    else if (S_ISLNK(st->st_mode))
        st->st_size = link_plain_size(st->st_size);
}

/* Give a new entry to the calling user when the daemon runs as root (allow_other mounts). */
static void own_entry(struct fs_ctx *c, const char *rel)
{
    if (!c->as_root)
        return;
    struct fuse_context *fc = fuse_get_context();
    if (fc->uid == 0 && fc->gid == 0)
        return;
    if (fchownat(c->root_fd, rel, fc->uid, fc->gid, AT_SYMLINK_NOFOLLOW) != 0)
        fs_log(c, LOG_WARNING, "%s: cannot give the new entry to uid %u: %m", rel,
               (unsigned)fc->uid);
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    cfg->use_ino = 1;
    cfg->nullpath_ok = 1;
    /* An unlinked file that is still open is renamed to .fuse_hidden* (not listed, see
     * readdir) rather than dropped, so requests that carry only a path, such as fstat, keep
     * working until the last close. */
    cfg->hard_remove = 0;
    cfg->entry_timeout = 1.0;
    cfg->attr_timeout = 1.0;
    cfg->negative_timeout = 0.0;
    /* No writeback caching: with it, 16 threads creating and writing one new file at once lost
     * one thread's bytes in about 2% of runs (the kernel wrote back a page it had filled from
     * the file before that thread's write reached it). Every write() is sent to the daemon
     * as it happens instead, as gocryptfs does; large writes still arrive in 1 MiB requests. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    return fuse_get_context()->private_data;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    if (fi) {
        struct fs_handle *h = handle(fi);
        if (fstat(h->ino->fd, st) != 0)
            return -errno;
    } else {
        struct fs_bpath bp;
        int rc = fs_resolve(c, path, &bp);
        if (rc != 0)
            return rc;
        if (fstatat(c->root_fd, bp.rel, st, AT_SYMLINK_NOFOLLOW) != 0)
            return -errno;
    }
    fix_stat(st);
    return 0;
}

static int op_access(const char *path, int mask)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    return faccessat(c->root_fd, bp.rel, mask, 0) == 0 ? 0 : -errno;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    char enc[PATH_MAX];
    uint8_t raw[PATH_MAX];
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    ssize_t n = readlinkat(c->root_fd, bp.rel, enc, sizeof(enc) - 1);
    if (n < 0)
        return -errno;
    ssize_t m = fs_b64_decode(enc, (size_t)n, raw, sizeof(raw));
    if (m < LINK_OVERHEAD || size == 0)
        return fs_err(c, -EBADMSG, bp.rel, UINT64_MAX, "readlink");
    size_t len = (size_t)m - LINK_OVERHEAD;
    char *plain = malloc(len + 1);
    if (!plain)
        return -ENOMEM;
    rc = keys_gcm_open(c->link_key, raw, "symlink", 7, raw + KEYS_NONCE_BYTES, len, plain,
                       raw + KEYS_NONCE_BYTES + len);
    if (rc == 0) {
        size_t copy = len < size - 1 ? len : size - 1;
        memcpy(buf, plain, copy);
        buf[copy] = '\0';
    }
    free(plain);
    return fs_err(c, rc, bp.rel, UINT64_MAX, "readlink");
}

static int op_symlink(const char *target, const char *path)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    size_t len = strlen(target);
    uint8_t raw[PATH_MAX];
    char enc[PATH_MAX];
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    if (len + LINK_OVERHEAD > sizeof(raw) || (len + LINK_OVERHEAD + 2) / 3 * 4 >= sizeof(enc))
        return -ENAMETOOLONG;
    /* Random nonce per symlink under the symlink key: see blockfile.h for the bound. */
    if ((rc = keys_random(raw, KEYS_NONCE_BYTES)) != 0 ||
        (rc = keys_gcm_seal(c->link_key, raw, "symlink", 7, target, len, raw + KEYS_NONCE_BYTES,
                            raw + KEYS_NONCE_BYTES + len)) != 0)
        return rc;
    fs_b64_encode(raw, len + LINK_OVERHEAD, enc);
    if ((rc = fs_long_write(c, &bp)) != 0)
        return rc;
    if (symlinkat(enc, c->root_fd, bp.rel) != 0) {
        rc = -errno;
        if (rc != -EEXIST)
            fs_long_remove(c, &bp);
        return rc;
    }
    own_entry(c, bp.rel);
    return 0;
}

static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    if ((rc = fs_long_write(c, &bp)) != 0)
        return rc;
    if (mknodat(c->root_fd, bp.rel, mode, rdev) != 0) {
        rc = -errno;
        if (rc != -EEXIST)
            fs_long_remove(c, &bp);
        return rc;
    }
    if (S_ISREG(mode)) {
        /* A regular file is a block file from the start: give it its header now. */
        struct fs_inode *ino = NULL;
        int fd = openat(c->root_fd, bp.rel, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || (rc = fs_inode_get(c, fd, 1, 1, &ino)) != 0) {
            rc = fd < 0 ? -errno : rc;
            (void)unlinkat(c->root_fd, bp.rel, 0);
            fs_long_remove(c, &bp);
            return rc;
        }
        fs_inode_put(c, ino);
    }
    own_entry(c, bp.rel);
    return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    char tmp[FS_PATH_CAP], rnd[16];
    uint8_t r[8];
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    /* Build the folder with its id under a temporary name, then rename it into place, so a
     * folder never exists without its id. */
    if ((rc = keys_random(r, sizeof(r))) != 0)
        return rc;
    fs_b64_encode(r, sizeof(r), rnd);
    int n = strcmp(bp.parent, ".") == 0
                ? snprintf(tmp, sizeof(tmp), FS_TMP_PREFIX "%s", rnd)
                : snprintf(tmp, sizeof(tmp), "%s/" FS_TMP_PREFIX "%s", bp.parent, rnd);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    if (mkdirat(c->root_fd, tmp, 0700) != 0)
        return -errno;
    if ((rc = fs_dirid_create(c, tmp)) != 0)
        goto fail;
    if ((rc = fs_long_write(c, &bp)) != 0)
        goto fail;
    if (renameat2(c->root_fd, tmp, c->root_fd, bp.rel, RENAME_NOREPLACE) != 0) {
        rc = -errno;
        if (rc != -EEXIST)
            fs_long_remove(c, &bp);
        goto fail;
    }
    /* mkdir's mode is subject to the umask; the kernel already applied the caller's. */
    if (fchmodat(c->root_fd, bp.rel, mode & 07777, 0) != 0)
        fs_log(c, LOG_WARNING, "%s: cannot set folder mode: %m", bp.rel);
    own_entry(c, bp.rel);
    return 0;
fail:;
    char id[FS_PATH_CAP];
    if (snprintf(id, sizeof(id), "%s/%s", tmp, FS_DIRID_NAME) < (int)sizeof(id))
        (void)unlinkat(c->root_fd, id, 0);
    (void)unlinkat(c->root_fd, tmp, AT_REMOVEDIR);
    return rc;
}

static int op_unlink(const char *path)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    if (unlinkat(c->root_fd, bp.rel, 0) != 0)
        return -errno;
    fs_long_remove(c, &bp);
    return 0;
}

/* 0 when the backing folder holds nothing but its id (empty as the mount sees it), else
 * -ENOTEMPTY or -errno. */
static int only_id_inside(struct fs_ctx *c, const char *rel)
{
    int dfd = openat(c->root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW), rc = 0;
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, FS_DIRID_NAME)) {
            rc = -ENOTEMPTY;
            break;
        }
    closedir(d);
    return rc;
}

/* Put a folder id back, after an operation that removed it failed. */
static void restore_id(struct fs_ctx *c, const char *idpath, const uint8_t id[KEYS_ID_BYTES])
{
    int fd = openat(c->root_fd, idpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0 || write(fd, id, KEYS_ID_BYTES) != KEYS_ID_BYTES)
        fs_log(c, LOG_ERR, "%s: could not restore folder id", idpath);
    if (fd >= 0)
        close(fd);
}

static int op_rmdir(const char *path)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    char idpath[FS_PATH_CAP];
    uint8_t id[KEYS_ID_BYTES];
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    if (snprintf(idpath, sizeof(idpath), "%s/%s", bp.rel, FS_DIRID_NAME) >= (int)sizeof(idpath))
        return -ENAMETOOLONG;
    if ((rc = only_id_inside(c, bp.rel)) != 0 || (rc = fs_dirid_get(c, bp.rel, id)) != 0)
        return rc;
    fs_dirid_flush(c);
    if (unlinkat(c->root_fd, idpath, 0) != 0)
        return -errno;
    if (unlinkat(c->root_fd, bp.rel, AT_REMOVEDIR) != 0) {
        rc = -errno;
        /* Someone created an entry meanwhile: put the id back as it was. */
        restore_id(c, idpath, id);
        return rc;
    }
    fs_long_remove(c, &bp);
    return 0;
}

static int rename_resolved(struct fs_ctx *c, const struct fs_bpath *a, const struct fs_bpath *b,
                           unsigned int flags)
{
    struct stat sa, sb;
    char idpath[FS_PATH_CAP];
    uint8_t id[KEYS_ID_BYTES];
    int rc, removed_id = 0;
    if (fstatat(c->root_fd, a->rel, &sa, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    int b_exists = fstatat(c->root_fd, b->rel, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    if (b_exists && !(flags & RENAME_EXCHANGE) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
        return flags & RENAME_NOREPLACE ? -EEXIST : 0; /* one file, two names: nothing to do */
    if (b_exists && !(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) && S_ISDIR(sa.st_mode) &&
        S_ISDIR(sb.st_mode)) {
        /* A folder may replace an empty folder; its id is the only thing in the way. */
        if (snprintf(idpath, sizeof(idpath), "%s/%s", b->rel, FS_DIRID_NAME) >= (int)sizeof(idpath))
            return -ENAMETOOLONG;
        if ((rc = only_id_inside(c, b->rel)) != 0 || (rc = fs_dirid_get(c, b->rel, id)) != 0)
            return rc;
        if (unlinkat(c->root_fd, idpath, 0) != 0)
            return -errno;
        removed_id = 1;
    }
    if ((rc = fs_long_write(c, b)) == 0 &&
        renameat2(c->root_fd, a->rel, c->root_fd, b->rel, flags) != 0)
        rc = -errno;
    if (rc != 0) {
        if (removed_id)
            restore_id(c, idpath, id);
        if (!b_exists)
            fs_long_remove(c, b);
    } else if (!(flags & RENAME_EXCHANGE)) {
        /* The old name is gone; with EXCHANGE both names still exist, sidecars unchanged. */
        fs_long_remove(c, a);
    }
    if (S_ISDIR(sa.st_mode) || (flags & RENAME_EXCHANGE))
        fs_dirid_flush(c);
    return rc;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    int rc = a && b ? 0 : -ENOMEM;
    if (rc == 0 && (rc = fs_resolve(c, from, a)) == 0 && (rc = fs_resolve(c, to, b)) == 0)
        rc = rename_resolved(c, a, b, flags);
    free(a);
    free(b);
    return rc;
}

static int op_link(const char *from, const char *to)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    int rc = a && b ? 0 : -ENOMEM;
    if (rc == 0 && (rc = fs_resolve(c, from, a)) == 0 && (rc = fs_resolve(c, to, b)) == 0 &&
        (rc = fs_long_write(c, b)) == 0) {
        if (linkat(c->root_fd, a->rel, c->root_fd, b->rel, 0) != 0) {
            rc = -errno;
            if (rc != -EEXIST)
                fs_long_remove(c, b);
        }
    }
    free(a);
    free(b);
    return rc;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    if (fi)
        return fchmod(handle(fi)->ino->fd, mode) == 0 ? 0 : -errno;
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    return fchmodat(c->root_fd, bp.rel, mode, 0) == 0 ? 0 : -errno;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    if (fi)
        return fchown(handle(fi)->ino->fd, uid, gid) == 0 ? 0 : -errno;
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    return fchownat(c->root_fd, bp.rel, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

/* Open the backing file for contents: read-write when allowed, else read-only. */
static int open_backing(struct fs_ctx *c, const char *rel, int flags, int *writable)
{
    int fd = openat(c->root_fd, rel, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    *writable = 1;
    if (fd < 0 && (errno == EACCES || errno == EROFS) && (flags & O_ACCMODE) == O_RDONLY) {
        fd = openat(c->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        *writable = 0;
    }
    return fd < 0 ? -errno : fd;
}

static int with_inode_truncate(struct fs_ctx *c, struct fs_inode *ino, const char *rel, off_t size)
{
    uint64_t bad = UINT64_MAX;
    if (size < 0)
        return -EINVAL;
    pthread_rwlock_wrlock(&ino->lock);
    int rc = ino->writable ? codec_bf_truncate(ino->bf, (uint64_t)size, &bad) : -EBADF;
    pthread_rwlock_unlock(&ino->lock);
    return fs_err(c, rc, rel, bad, "truncate");
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    if (fi)
        return with_inode_truncate(c, handle(fi)->ino, handle(fi)->rel, size);
    struct fs_bpath bp;
    struct fs_inode *ino = NULL;
    int writable, rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    int fd = open_backing(c, bp.rel, O_WRONLY, &writable);
    if (fd < 0)
        return fd;
    if ((rc = fs_inode_get(c, fd, writable, 0, &ino)) != 0)
        return fs_err(c, rc, bp.rel, UINT64_MAX, "open");
    rc = with_inode_truncate(c, ino, bp.rel, size);
    fs_inode_put(c, ino);
    return rc;
}

static void handle_free(struct fs_ctx *c, struct fs_handle *h)
{
    if (h->ino)
        fs_inode_put(c, h->ino);
    free(h->rel);
    free(h->path);
    free(h);
}

static int attach(struct fs_ctx *c, int fd, int writable, const char *rel, const char *path,
                  struct fuse_file_info *fi)
{
    struct fs_handle *h = calloc(1, sizeof(*h));
    int rc;
    if (!h || !(h->rel = strdup(rel)) || !(h->path = strdup(path))) {
        if (h)
            handle_free(c, h);
        close(fd);
        return -ENOMEM;
    }
    if ((rc = fs_inode_get(c, fd, writable, (fi->flags & (O_CREAT | O_TRUNC)) != 0, &h->ino)) !=
        0) {
        handle_free(c, h);
        return fs_err(c, rc, rel, UINT64_MAX, "open");
    }
    if (fi->flags & O_TRUNC) {
        rc = with_inode_truncate(c, h->ino, rel, 0);
        if (rc != 0) {
            handle_free(c, h);
            return rc;
        }
    }
    pthread_mutex_lock(&c->handles_lock);
    h->next = c->handles;
    if (h->next)
        h->next->prev = h;
    c->handles = h;
    pthread_mutex_unlock(&c->handles_lock);
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

int fs_open_paths(struct fs_ctx *c, char ***out, size_t *count)
{
    size_t n = 0, i = 0;
    pthread_mutex_lock(&c->handles_lock);
    for (struct fs_handle *h = c->handles; h; h = h->next)
        n++;
    char **paths = calloc(n ? n : 1, sizeof(*paths));
    for (struct fs_handle *h = c->handles; paths && h; h = h->next)
        if ((paths[i] = strdup(h->path)) != NULL)
            i++;
    pthread_mutex_unlock(&c->handles_lock);
    if (!paths)
        return -ENOMEM;
    *out = paths;
    *count = i;
    return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    int writable, rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    int fd = open_backing(c, bp.rel, fi->flags, &writable);
    if (fd < 0)
        return fd;
    return attach(c, fd, writable, bp.rel, path, fi);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    if ((rc = fs_long_write(c, &bp)) != 0)
        return rc;
    int fd = openat(c->root_fd, bp.rel,
                    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fi->flags & O_EXCL), mode);
    if (fd < 0) {
        rc = -errno;
        if (rc != -EEXIST)
            fs_long_remove(c, &bp);
        return rc;
    }
    own_entry(c, bp.rel);
    return attach(c, fd, 1, bp.rel, path, fi);
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    struct fs_handle *h = handle(fi);
    uint64_t bad = UINT64_MAX;
    if (off < 0)
        return -EINVAL;
    pthread_rwlock_rdlock(&h->ino->lock);
    ssize_t n = codec_bf_read(h->ino->bf, buf, size, (uint64_t)off, &bad);
    pthread_rwlock_unlock(&h->ino->lock);
    return n < 0 ? fs_err(ctx(), (int)n, h->rel, bad, "read") : (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)path;
    struct fs_handle *h = handle(fi);
    uint64_t bad = UINT64_MAX;
    if (off < 0)
        return -EINVAL;
    pthread_rwlock_wrlock(&h->ino->lock);
    ssize_t n =
        h->ino->writable ? codec_bf_write(h->ino->bf, buf, size, (uint64_t)off, &bad) : -EBADF;
    pthread_rwlock_unlock(&h->ino->lock);
    return n < 0 ? fs_err(ctx(), (int)n, h->rel, bad, "write") : (int)n;
}

static int op_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    if (fstatvfs(ctx()->root_fd, st) != 0)
        return -errno;
    /* Report sizes in plaintext terms: each 4096-byte block costs 4124 on disk. */
    st->f_blocks = st->f_blocks / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st->f_bfree = st->f_bfree / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st->f_bavail = st->f_bavail / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st->f_namemax = NAME_MAX;
    return 0;
}

/* No flush operation on purpose: nothing is buffered in the daemon, and the kernel, told ENOSYS
 * once, stops sending FLUSH on every close (it still writes its cached pages back first and
 * reports their errors from close). That is one round trip less per file. */

static int op_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct fs_ctx *c = ctx();
    struct fs_handle *h = handle(fi);
    pthread_mutex_lock(&c->handles_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        c->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&c->handles_lock);
    handle_free(c, h);
    return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    int fd = handle(fi)->ino->fd;
    return (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : -errno;
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    (void)path;
    struct fs_handle *h = handle(fi);
    uint64_t size, bad = UINT64_MAX;
    if (off < 0 || len <= 0)
        return -EINVAL;
    if (mode & ~FALLOC_FL_KEEP_SIZE)
        return -EOPNOTSUPP;
    pthread_rwlock_wrlock(&h->ino->lock);
    int rc = h->ino->writable ? codec_bf_size(h->ino->bf, &size) : -EBADF;
    if (rc == 0) {
        uint64_t end = (uint64_t)off + (uint64_t)len;
        if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size)
            rc = codec_bf_truncate(h->ino->bf, end, &bad);
        else if (mode & FALLOC_FL_KEEP_SIZE) {
            /* Reserve the sealed size of the range without changing the file. */
            uint64_t bend = codec_bf_backing_size(end);
            if (fallocate(h->ino->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bend) != 0)
                rc = -errno;
        }
    }
    pthread_rwlock_unlock(&h->ino->lock);
    return fs_err(ctx(), rc, h->rel, bad, "fallocate");
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    if (fi)
        return futimens(handle(fi)->ino->fd, tv) == 0 ? 0 : -errno;
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    return utimensat(c->root_fd, bp.rel, tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

/* An open folder: a descriptor and its id, fixed at opendir, so the handle keeps listing the
 * same folder when it, or a folder above it, is renamed (readdir gets no path). */
struct fs_dir {
    int fd;
    uint8_t id[KEYS_ID_BYTES];
    char rel[]; /* backing path at opendir, for log lines */
};

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
    struct fs_ctx *c = ctx();
    struct fs_bpath bp;
    uint8_t id[KEYS_ID_BYTES];
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0 || (rc = fs_dirid_get(c, bp.rel, id)) != 0)
        return rc;
    size_t len = strlen(bp.rel) + 1;
    struct fs_dir *d = malloc(sizeof(*d) + len);
    if (!d)
        return -ENOMEM;
    d->fd = openat(c->root_fd, bp.rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (d->fd < 0) {
        rc = -errno;
        free(d);
        return rc;
    }
    memcpy(d->id, id, sizeof(id));
    memcpy(d->rel, bp.rel, len);
    fi->fh = (uint64_t)(uintptr_t)d;
    return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
    close(d->fd);
    free(d);
    return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    struct fs_ctx *c = ctx();
    const struct fs_dir *od = (const struct fs_dir *)(uintptr_t)fi->fh;
    /* With READDIRPLUS each entry carries its attributes, which spares the kernel one LOOKUP
     * round trip per file when a program lists a folder and then opens or stats its files. */
    int plus = (flags & FUSE_READDIR_PLUS) != 0;
    char name[NAME_MAX + 2];
    int rc;
    /* A fresh descriptor of the same folder: its own position, from the start. */
    int dfd = openat(od->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    /* Entries carry the backing folder's own positions (d_off), so libfuse streams them
     * (which READDIRPLUS needs) and a later call resumes where the last one stopped. */
    if (off > 0)
        seekdir(d, (long)off);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st = {0};
        st.st_ino = e->d_ino;
        st.st_mode = (mode_t)DTTOIF(e->d_type);
        const char *shown = e->d_name;
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            rc = fs_entry_name(c, dirfd(d), od->id, e->d_name, name, sizeof(name));
            if (rc == -ENOENT)
                continue;
            if (rc != 0) {
                fs_log(c, LOG_WARNING, "%s/%s: name does not decrypt; entry hidden", od->rel,
                       e->d_name);
                continue;
            }
            /* Files unlinked while open live on under this name until their last close. */
            if (strncmp(name, FS_FUSE_HIDDEN, sizeof(FS_FUSE_HIDDEN) - 1) == 0)
                continue;
            shown = name;
        }
        enum fuse_fill_dir_flags fill_flags = 0;
        /* Hard-linked files are left to LOOKUP: each name is its own node to libfuse, so
         * attributes handed out here could not follow a change made through another name. */
        struct stat full;
        if (plus && fstatat(dirfd(d), e->d_name, &full, AT_SYMLINK_NOFOLLOW) == 0 &&
            (S_ISDIR(full.st_mode) || full.st_nlink == 1)) {
            st = full;
            fix_stat(&st);
            fill_flags = FUSE_FILL_DIR_PLUS;
        }
        if (fill(buf, shown, &st, (off_t)e->d_off, fill_flags))
            break;
    }
    closedir(d);
    return 0;
}

/* ---- user xattrs: name and value sealed; other namespaces are not stored ---------------- */

static int xattr_target(struct fs_ctx *c, const char *path, char *abs, size_t cap)
{
    struct fs_bpath bp;
    int rc = fs_resolve(c, path, &bp);
    if (rc != 0)
        return rc;
    int n = snprintf(abs, cap, "%s/%s", c->backing, bp.rel);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int xattr_seal_name(struct fs_ctx *c, const char *name, char *out, size_t cap)
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

/* The absolute backing path of `path` and the sealed name of xattr `name`. */
static int xattr_locate(struct fs_ctx *c, const char *path, const char *name, char *abs,
                        size_t abs_cap, char *sname, size_t sname_cap)
{
    int rc = xattr_target(c, path, abs, abs_cap);
    return rc != 0 ? rc : xattr_seal_name(c, name, sname, sname_cap);
}

static int op_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags)
{
    struct fs_ctx *c = ctx();
    char abs[FS_PATH_CAP + 512], sname[XATTR_NAME_MAX + 1];
    int rc = xattr_locate(c, path, name, abs, sizeof(abs), sname, sizeof(sname));
    if (rc != 0)
        return rc;
    if (size > XATTR_MAX_VALUE - LINK_OVERHEAD)
        return -E2BIG;
    uint8_t *sealed = malloc(size + LINK_OVERHEAD);
    if (!sealed)
        return -ENOMEM;
    /* Random nonce per value under the xattr value key; AAD = the sealed name. */
    if ((rc = keys_random(sealed, KEYS_NONCE_BYTES)) == 0 &&
        (rc = keys_gcm_seal(c->xval_key, sealed, sname, strlen(sname), value, size,
                            sealed + KEYS_NONCE_BYTES, sealed + KEYS_NONCE_BYTES + size)) == 0 &&
        lsetxattr(abs, sname, sealed, size + LINK_OVERHEAD, flags) != 0)
        rc = -errno;
    free(sealed);
    return rc;
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
    struct fs_ctx *c = ctx();
    char abs[FS_PATH_CAP + 512], sname[XATTR_NAME_MAX + 1];
    /* The kernel asks for security.capability before every write: answer without a lookup. */
    if (strncmp(name, XATTR_USER, sizeof(XATTR_USER) - 1) != 0)
        return -ENODATA;
    int rc = xattr_locate(c, path, name, abs, sizeof(abs), sname, sizeof(sname));
    if (rc != 0)
        return rc == -EOPNOTSUPP ? -ENODATA : rc;
    uint8_t *sealed = malloc(XATTR_MAX_VALUE);
    if (!sealed)
        return -ENOMEM;
    ssize_t n = lgetxattr(abs, sname, sealed, XATTR_MAX_VALUE);
    if (n < 0) {
        rc = -errno;
    } else if (n < LINK_OVERHEAD) {
        rc = fs_err(c, -EBADMSG, abs + strlen(c->backing) + 1, UINT64_MAX, "getxattr");
    } else {
        size_t len = (size_t)n - LINK_OVERHEAD;
        if (size == 0) {
            rc = (int)len;
        } else if (size < len) {
            rc = -ERANGE;
        } else {
            rc = keys_gcm_open(c->xval_key, sealed, sname, strlen(sname), sealed + KEYS_NONCE_BYTES,
                               len, value, sealed + KEYS_NONCE_BYTES + len);
            rc = rc == 0 ? (int)len
                         : fs_err(c, rc, abs + strlen(c->backing) + 1, UINT64_MAX, "getxattr");
        }
    }
    free(sealed);
    return rc;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
    struct fs_ctx *c = ctx();
    char abs[FS_PATH_CAP + 512];
    int rc = xattr_target(c, path, abs, sizeof(abs));
    if (rc != 0)
        return rc;
    ssize_t n = llistxattr(abs, NULL, 0);
    if (n < 0)
        return -errno;
    char *raw = malloc((size_t)n + 1);
    if (!raw)
        return -ENOMEM;
    n = llistxattr(abs, raw, (size_t)n);
    if (n < 0) {
        free(raw);
        return -errno;
    }
    size_t out = 0, plen = sizeof(XATTR_USER) - 1;
    for (char *p = raw; p < raw + n; p += strlen(p) + 1) {
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
            if (out + need > size) {
                free(raw);
                return -ERANGE;
            }
            memcpy(list + out, XATTR_USER, plen);
            memcpy(list + out + plen, plain, (size_t)k);
            list[out + need - 1] = '\0';
        }
        out += need;
    }
    free(raw);
    return (int)out;
}

static int op_removexattr(const char *path, const char *name)
{
    struct fs_ctx *c = ctx();
    char abs[FS_PATH_CAP + 512], sname[XATTR_NAME_MAX + 1];
    int rc = xattr_locate(c, path, name, abs, sizeof(abs), sname, sizeof(sname));
    if (rc != 0)
        return rc == -EOPNOTSUPP ? -ENODATA : rc;
    return lremovexattr(abs, sname) == 0 ? 0 : -errno;
}

const struct fuse_operations fs_operations = {
    .init = op_init,
    .getattr = op_getattr,
    .access = op_access,
    .readlink = op_readlink,
    .symlink = op_symlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .utimens = op_utimens,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
};
