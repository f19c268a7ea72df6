// SPDX-License-Identifier: MIT
/*
 * The FUSE operations on libfuse's low-level API, and the helpers they share: looking up one
 * sealed name in one folder descriptor, attributes, setattr, readlink, statfs. Namespace
 * changes are in entry.c, file contents in file.c, folders in dir.c, xattrs in xattr.c.
 * Every backing call is relative to a node's O_PATH descriptor with one component and
 * O_NOFOLLOW, or goes through /proc/self/fd of the node itself; nothing follows a symlink
 * in the backing folder.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

struct fs_ctx *fs_req_ctx(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

int fs_err(const struct fs_ctx *c, int rc, int fd, uint64_t block, const char *what)
{
    if (rc != -EBADMSG)
        return rc;
    char where[PATH_MAX];
    fs_where(fd, where, sizeof(where));
    if (block != UINT64_MAX)
        fs_log(c, LOG_ERR,
               "%s: block %llu: authentication failed during %s (modified, moved or truncated "
               "ciphertext)",
               where, (unsigned long long)block, what);
    else
        fs_log(c, LOG_ERR, "%s: authentication failed during %s", where, what);
    return -EIO;
}

static int fix_stat(struct fs_ctx *c, struct fs_node *n, struct stat *st)
{
    if (S_ISREG(st->st_mode))
        return fs_image_fix_size(c, n, st);
    if (S_ISLNK(st->st_mode))
        return fs_link_size(c, n->fd, st, &st->st_size);
    return 0;
}

int fs_node_stat(struct fs_ctx *c, struct fs_node *n, struct stat *st)
{
    /* A file being written grows page by page inside one pwrite: its size is read between
     * writes, never halfway through one (that size would name no block boundary we wrote). */
    int locked = n->type == S_IFREG && n->opens > 0, rc = 0;
    if (locked)
        pthread_rwlock_rdlock(&n->lock);
    if (fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        rc = -errno;
    if (locked)
        pthread_rwlock_unlock(&n->lock);
    if (rc == 0)
        rc = fix_stat(c, n, st);
    return rc;
}

/* The node of backing entry `leaf` in `parent` (one lookup counted) and its fstat; ns_lock
 * held shared, so that a conversion's swap of the file's inode cannot come between the open and
 * the node found for it. */
static int lookup_node(struct fs_ctx *c, struct fs_node *parent, const char *leaf, struct stat *st,
                       struct fs_node **out)
{
    int fd = openat(parent->fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC), rc;
    if (fd < 0)
        return -errno;
    if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (S_ISLNK(st->st_mode)) {
        /* A symlink planted in the backing folder (its target not sealed by us) is refused
         * here, so nothing the mount does can reach through it. */
        char *plain = NULL;
        size_t len = 0;
        rc = fs_link_open(c, fd, &plain, &len);
        if (plain) {
            OPENSSL_cleanse(plain, len);
            free(plain);
        }
        if (rc == -EBADMSG) {
            char where[PATH_MAX];
            fs_where(fd, where, sizeof(where));
            fs_log(c, LOG_ERR,
                   "%s: a symlink imgcryptfs did not write (planted in the backing "
                   "folder?): refused",
                   where);
            rc = -EIO;
        }
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    if ((rc = fs_node_get(c, fd, st, out)) != 0)
        return rc;
    fs_node_name(c, *out, parent, leaf);
    return 0;
}

int fs_lookup_leaf(struct fs_ctx *c, struct fs_node *parent, const char *leaf,
                   struct fuse_entry_param *e)
{
    struct stat st;
    struct fs_node *n = NULL;
    pthread_rwlock_rdlock(&c->ns_lock);
    int rc = lookup_node(c, parent, leaf, &st, &n);
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc != 0)
        return rc;
    assert(n != NULL); /* lookup_node's 0 comes with a node */
    memset(e, 0, sizeof(*e));
    /* A file open here: its size between writes (see fs_node_stat). */
    if (!(n->type == S_IFREG && n->opens > 0 && fs_node_stat(c, n, &st) == 0) &&
        (rc = fix_stat(c, n, &st)) != 0) {
        fs_node_forget(c, n, 1); /* the head of a stored image did not read: no entry */
        return rc;
    }
    e->ino = n == &c->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
    e->attr = st;
    e->attr_timeout = c->timeout;
    e->entry_timeout = c->timeout;
    return 0;
}

int fs_seal_in(struct fs_ctx *c, struct fs_node *parent, const char *name, struct fs_name *nm)
{
    uint8_t id[KEYS_ID_BYTES];
    int rc = fs_node_dirid(c, parent, id);
    return rc != 0 ? rc : fs_name_seal(c, id, name, nm);
}

int fs_own(struct fs_ctx *c, fuse_req_t req, const struct fs_node *parent, int fd)
{
    if (!c->as_root)
        return 0;
    const struct fuse_ctx *fc = fuse_req_ctx(req);
    struct stat pst;
    gid_t gid = fc->gid;
    if (fc->uid == 0 && fc->gid == 0)
        return 0; /* root's entry: the daemon made it root's already */
    if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID))
        gid = (gid_t)-1; /* a set-group-ID folder gives its group, as the backing did */
    if (fchownat(fd, "", fc->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    return 0;
}

int fs_rename_noreplace(int afd, const char *a, int bfd, const char *b, int is_dir)
{
    if (renameat2(afd, a, bfd, b, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* A backing filesystem without RENAME_NOREPLACE (GlusterFS): a hard link fails on an
     * existing name; folders cannot be linked, so they check first (a narrow race,
     * documented). */
    if (!is_dir) {
        if (linkat(afd, a, bfd, b, 0) != 0)
            return -errno;
        (void)unlinkat(afd, a, 0);
        return 0;
    }
    struct stat st;
    if (fstatat(bfd, b, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    return renameat(afd, a, bfd, b) == 0 ? 0 : -errno;
}

int fs_place(int dir_fd, const char *tmp, const char *leaf, int is_dir)
{
    return fs_rename_noreplace(dir_fd, tmp, dir_fd, leaf, is_dir);
}

/* ---- operations ------------------------------------------------------------------------ */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* No writeback caching: every write() reaches the daemon as it happens (as gocryptfs
     * does), so nothing is lost in the kernel when the daemon stops; large writes still come
     * in 1 MiB requests. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    /* The kernel clears set-user-ID bits itself (with a setattr) when a file is written. */
    conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_READDIRPLUS)
        conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_name nm;
    struct fuse_entry_param e;
    int rc = fs_seal_in(c, fs_node_of(c, parent), name, &nm);
    if (rc == 0)
        rc = fs_lookup_leaf(c, fs_node_of(c, parent), nm.leaf, &e);
    if (rc == -ENOENT) {
        /* A negative entry, not cached: another mount of the store may create it. */
        memset(&e, 0, sizeof(e));
        fuse_reply_entry(req, &e);
        return;
    }
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    struct fs_ctx *c = fs_req_ctx(req);
    fs_node_forget(c, fs_node_of(c, ino), nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct fs_ctx *c = fs_req_ctx(req);
    for (size_t i = 0; i < count; i++)
        fs_node_forget(c, fs_node_of(c, forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct fs_ctx *c = fs_req_ctx(req);
    struct stat st;
    int rc = fs_node_stat(c, fs_node_of(c, ino), &st);
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, c->timeout);
}

static int set_times(const struct fs_node *n, const struct stat *attr, int valid)
{
    struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
    if (valid & FUSE_SET_ATTR_ATIME_NOW)
        tv[0].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_ATIME)
        tv[0] = attr->st_atim;
    if (valid & FUSE_SET_ATTR_MTIME_NOW)
        tv[1].tv_nsec = UTIME_NOW;
    else if (valid & FUSE_SET_ATTR_MTIME)
        tv[1] = attr->st_mtim;
    if (n->type == S_IFLNK)
        return utimensat(n->fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    char p[32];
    fs_fd_path(n->fd, p);
    return utimensat(AT_FDCWD, p, tv, 0) == 0 ? 0 : -errno;
}

static int set_owner_mode(struct fs_node *n, const struct stat *attr, int valid);

/* Owner, mode and times, under the node's lock: a conversion copies them into the new form of
 * the file and drops its result when they changed meanwhile (the generation). */
static int set_meta(struct fs_node *n, const struct stat *attr, int valid)
{
    pthread_rwlock_wrlock(&n->lock);
    n->gen++;
    int rc = set_owner_mode(n, attr, valid);
    if (rc == 0 && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                             FUSE_SET_ATTR_MTIME_NOW)))
        rc = set_times(n, attr, valid);
    pthread_rwlock_unlock(&n->lock);
    return rc;
}

static int set_attr(struct fs_ctx *c, struct fs_node *n, const struct stat *attr, int valid)
{
    int rc;
    if ((valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE)) &&
        (rc = set_meta(n, attr,
                       valid & ~(FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
                                 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) != 0)
        return rc;
    if ((valid & FUSE_SET_ATTR_SIZE) && (rc = fs_truncate(c, n, attr->st_size)) != 0)
        return rc;
    /* Times last: a truncate sets the modification time. */
    if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                 FUSE_SET_ATTR_MTIME_NOW))
        return set_meta(n, attr,
                        valid & ~(FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE));
    return 0;
}

static int set_owner_mode(struct fs_node *n, const struct stat *attr, int valid)
{
    char p[32];
    fs_fd_path(n->fd, p);
    if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t uid = valid & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1;
        gid_t gid = valid & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1;
        if (fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
            return -errno;
    }
    /* After chown, which clears set-user-ID bits, so that a mode given with it holds. */
    if (valid & FUSE_SET_ATTR_MODE) {
        if (n->type == S_IFLNK)
            return -EOPNOTSUPP;
        if (chmod(p, attr->st_mode & 07777) != 0)
            return -errno;
    }
    return 0;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
                       struct fuse_file_info *fi)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    struct stat st;
    (void)fi; /* one node per file: the handle adds nothing */
    int rc = set_attr(c, n, attr, valid);
    if (rc == 0)
        rc = fs_node_stat(c, n, &st);
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_attr(req, &st, c->timeout);
}

/* Permission as the backing sees it for the daemon's own user (the caller, unless the mount is
 * shared with allow_other, which implies default_permissions: the kernel checks then). */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    char p[32];
    int rc = 0;
    fs_fd_path(n->fd, p);
    if (n->type == S_IFLNK)
        rc = faccessat(n->fd, "", mask, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
    else if (faccessat(AT_FDCWD, p, mask, 0) != 0)
        rc = errno;
    fuse_reply_err(req, rc);
}

void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    char *plain = NULL;
    size_t len = 0;
    int rc = fs_link_open(c, n->fd, &plain, &len);
    if (rc != 0) {
        fuse_reply_err(req, -fs_err(c, rc, n->fd, UINT64_MAX, "readlink"));
        return;
    }
    fuse_reply_readlink(req, plain);
    OPENSSL_cleanse(plain, len);
    free(plain);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct fs_ctx *c = fs_req_ctx(req);
    struct statvfs st;
    if (fstatvfs(c->root.fd, &st) != 0) {
        fuse_reply_err(req, errno);
        return;
    }
    /* Sizes in plaintext terms: each 4096-byte block costs 4124 on disk. */
    st.f_blocks = st.f_blocks / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st.f_bfree = st.f_bfree / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st.f_bavail = st.f_bavail / CODEC_BF_SEALED * CODEC_BF_BLOCK;
    st.f_namemax = NAME_MAX;
    fuse_reply_statfs(req, &st);
}

/* No flush operation on purpose: nothing is buffered in the daemon, and the kernel, told
 * ENOSYS once, stops sending FLUSH on every close. */
const struct fuse_lowlevel_ops fs_ll_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .access = op_access,
    .setattr = op_setattr,
    .readlink = fs_op_readlink,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .open = fs_op_open,
    .read = fs_op_read,
    .write = fs_op_write,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .readdirplus = fs_op_readdirplus,
    .releasedir = fs_op_releasedir,
    .statfs = op_statfs,
    .setxattr = fs_op_setxattr,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .removexattr = fs_op_removexattr,
    .create = fs_op_create,
    .fallocate = fs_op_fallocate,
    .lseek = fs_op_lseek,
};
