// SPDX-License-Identifier: MIT
/*
 * File contents: create, open, read, write, truncate, fallocate, fsync, release. Contents go
 * through the node's block file under the node's lock (readers share it, writers are
 * exclusive), so every handle of a file and every name of it see one state.
 *
 * A new file is made under a temporary name in its folder, given its block-file header and
 * owner there, and only then renamed into place: a create that fails (a full disk) or a
 * daemon killed halfway leaves no entry under the file's name, never one that reads EIO.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

static struct fs_handle *handle_of(const struct fuse_file_info *fi)
{
    return (struct fs_handle *)(uintptr_t)fi->fh;
}

static int wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY;
}

/* The contents changed (or may have, after a failed write): a conversion running now is
 * dropped, and the last close queues the file. Node lock held exclusively. */
static void changed(struct fs_node *n)
{
    n->gen++;
    n->dirty = 1;
}

/* Truncate under the node's write lock, through the open block file. */
static int truncate_locked(struct fs_ctx *c, struct fs_node *n, uint64_t size)
{
    uint64_t bad = UINT64_MAX;
    int rc = n->writable && n->bf ? codec_bf_truncate(n->bf, size, &bad) : -EBADF;
    changed(n);
    return fs_err(c, rc, n->data_fd, bad, "truncate");
}

int fs_truncate(struct fs_ctx *c, struct fs_node *n, off_t size)
{
    if (size < 0)
        return -EINVAL;
    if (n->type != S_IFREG)
        return n->type == S_IFDIR ? -EISDIR : -EINVAL;
    pthread_rwlock_wrlock(&n->lock);
    /* A stored image cut to nothing needs no decode: it becomes an empty block file. */
    int rc = size == 0 && !n->image && fs_image_is_stored(c, n) ? fs_image_to_blocks(c, n, 1) : 0;
    /* Without an open handle, open the contents for this one call. */
    if (rc == 0)
        rc = fs_node_open_data(c, n, FS_DATA_WRITE);
    if (rc == 0) {
        rc = truncate_locked(c, n, (uint64_t)size);
        int dead = fs_node_close_data(c, n);
        (void)dead; /* the kernel holds a lookup of a node it sets attributes on */
    } else {
        rc = fs_err(c, rc, n->fd, UINT64_MAX, "open");
    }
    pthread_rwlock_unlock(&n->lock);
    return rc;
}

static int attach_handle(struct fuse_file_info *fi, struct fs_node *n)
{
    struct fs_handle *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->node = n;
    h->writable = wants_write(fi->flags);
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

/* What an open with these flags does with the contents: O_TRUNC writes at once. */
static enum fs_data_use data_use(int flags)
{
    if (flags & O_TRUNC)
        return FS_DATA_WRITE;
    return wants_write(flags) ? FS_DATA_WRITE_LATER : FS_DATA_READ;
}

/* The last of a handle: its node's contents are closed with the node's last handle. */
static void drop_handle(struct fs_ctx *c, struct fuse_file_info *fi)
{
    struct fs_handle *h = handle_of(fi);
    struct fs_node *n = h->node;
    pthread_rwlock_wrlock(&n->lock);
    int dead = fs_node_close_data(c, n);
    pthread_rwlock_unlock(&n->lock);
    if (dead)
        fs_node_free(c, n);
    free(h);
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    pthread_rwlock_wrlock(&n->lock);
    int rc = 0;
    /* O_TRUNC on a stored image: a fresh block file, without decoding the old contents. */
    if ((fi->flags & O_TRUNC) && !n->image && fs_image_is_stored(c, n))
        rc = fs_image_to_blocks(c, n, 1);
    if (rc == 0)
        rc = fs_node_open_data(c, n, data_use(fi->flags));
    if (rc != 0) {
        pthread_rwlock_unlock(&n->lock);
        fuse_reply_err(req, -fs_err(c, rc, n->fd, UINT64_MAX, "open"));
        return;
    }
    if ((fi->flags & O_TRUNC) && (rc = truncate_locked(c, n, 0)) == 0)
        fi->keep_cache = 0;
    if (rc == 0)
        rc = attach_handle(fi, n);
    int dead = rc != 0 ? fs_node_close_data(c, n) : 0;
    pthread_rwlock_unlock(&n->lock);
    if (dead)
        fs_node_free(c, n);
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else if (fuse_reply_open(req, fi) == -ENOENT)
        drop_handle(c, fi); /* the caller was interrupted: undo the open */
}

/* Make a block file under a temporary name in folder `parent`: *fd read-write, *bf over it.
 * The temporary entry is removed again on failure. */
static int make_tmp_file(struct fs_ctx *c, fuse_req_t req, struct fs_node *parent, mode_t mode,
                         char tmp[FS_TMP_CAP], int *fd, struct codec_bf **bf)
{
    *bf = NULL;
    int rc = fs_tmp_name(c, tmp);
    if (rc != 0)
        return rc;
    int f =
        openat(parent->fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
    if (f < 0)
        return -errno;
    if ((rc = codec_bf_create(f, c->content_key, bf)) == 0 &&
        (rc = fs_own(c, req, parent, f)) == 0 && (mode & 06000) && c->as_root &&
        fchmod(f, mode & 07777) != 0)
        rc = -errno; /* chown cleared set-ID bits the caller asked for */
    if (rc != 0) {
        if (*bf) {
            codec_bf_close(*bf);
            *bf = NULL;
        }
        close(f);
        (void)unlinkat(parent->fd, tmp, 0);
        return rc;
    }
    *fd = f;
    return 0;
}

int fs_new_file(struct fs_ctx *c, fuse_req_t req, struct fs_node *parent, const char *name,
                mode_t mode, struct fuse_entry_param *e, int *fd_out, struct codec_bf **bf_out)
{
    struct fs_name nm;
    char tmp[FS_TMP_CAP];
    struct codec_bf *bf = NULL;
    int fd = -1;
    int rc = fs_seal_in(c, parent, name, &nm);
    if (rc != 0)
        return rc;
    if ((rc = make_tmp_file(c, req, parent, mode, tmp, &fd, &bf)) != 0)
        return rc;
    if ((rc = fs_long_write(parent->fd, &nm)) == 0 &&
        (rc = fs_place(parent->fd, tmp, nm.leaf, 0)) != 0 && rc != -EEXIST)
        fs_long_remove(parent->fd, &nm);
    if (rc == 0)
        rc = fs_lookup_leaf(c, parent, nm.leaf, e);
    if (rc != 0 || !fd_out) {
        codec_bf_close(bf);
        close(fd);
        if (rc != 0)
            (void)unlinkat(parent->fd, tmp, 0);
        return rc;
    }
    *fd_out = fd;
    *bf_out = bf;
    return 0;
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fuse_entry_param e;
    struct codec_bf *bf = NULL;
    int fd = -1;
    int rc = fs_new_file(c, req, fs_node_of(c, parent), name, mode, &e, &fd, &bf);
    if (rc == -EEXIST && !(fi->flags & O_EXCL)) {
        /* Made meanwhile by someone else (another mount of the store): open that one. */
        struct fs_name nm;
        if ((rc = fs_seal_in(c, fs_node_of(c, parent), name, &nm)) == 0 &&
            (rc = fs_lookup_leaf(c, fs_node_of(c, parent), nm.leaf, &e)) == 0) {
            struct fs_node *n = fs_node_of(c, e.ino);
            pthread_rwlock_wrlock(&n->lock);
            rc = fs_node_open_data(c, n, FS_DATA_WRITE);
            if (rc == 0 && (fi->flags & O_TRUNC) && (rc = truncate_locked(c, n, 0)) != 0)
                (void)fs_node_close_data(c, n);
            pthread_rwlock_unlock(&n->lock);
            if (rc != 0)
                fs_node_forget(c, n, 1);
        }
    } else if (rc == 0) {
        struct fs_node *n = fs_node_of(c, e.ino);
        pthread_rwlock_wrlock(&n->lock);
        fs_node_adopt_data(c, n, fd, bf);
        pthread_rwlock_unlock(&n->lock);
    }
    if (rc == 0 && (rc = attach_handle(fi, fs_node_of(c, e.ino))) != 0) {
        struct fs_node *n = fs_node_of(c, e.ino);
        pthread_rwlock_wrlock(&n->lock);
        (void)fs_node_close_data(c, n);
        pthread_rwlock_unlock(&n->lock);
        fs_node_forget(c, n, 1);
    }
    if (rc != 0) {
        fuse_reply_err(req, -fs_err(c, rc, fs_node_of(c, parent)->fd, UINT64_MAX, "create"));
        return;
    }
    if (fuse_reply_create(req, &e, fi) == -ENOENT)
        drop_handle(c, fi);
}

/* Each FUSE thread keeps one read buffer of the largest request it served: a fresh 1 MiB
 * buffer per request costs the page faults of fresh memory on every read. The plaintext in it
 * is what the kernel's page cache holds too; the daemon is not dumpable. */
static pthread_once_t readbuf_once = PTHREAD_ONCE_INIT;
static pthread_key_t readbuf_key;

struct readbuf {
    size_t cap;
    char data[];
};

static void readbuf_free(void *p)
{
    struct readbuf *rb = p;
    if (rb)
        OPENSSL_cleanse(rb->data, rb->cap);
    free(rb);
}

static void readbuf_init(void)
{
    (void)pthread_key_create(&readbuf_key, readbuf_free);
}

static char *readbuf(size_t size)
{
    if (pthread_once(&readbuf_once, readbuf_init) != 0)
        return NULL;
    struct readbuf *rb = pthread_getspecific(readbuf_key);
    if (rb && rb->cap >= size)
        return rb->data;
    struct readbuf *bigger = malloc(sizeof(*bigger) + (size ? size : 1));
    if (!bigger || pthread_setspecific(readbuf_key, bigger) != 0) {
        free(bigger);
        return NULL;
    }
    bigger->cap = size ? size : 1;
    readbuf_free(rb);
    return bigger->data;
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = handle_of(fi)->node;
    uint64_t bad = UINT64_MAX;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char *buf = readbuf(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    pthread_rwlock_rdlock(&n->lock);
    ssize_t got = n->image ? fs_image_read(c, n, buf, size, off)
                           : codec_bf_read(n->bf, buf, size, (uint64_t)off, &bad);
    if (got < 0 && !n->image)
        got = fs_err(c, (int)got, n->data_fd, bad, "read");
    pthread_rwlock_unlock(&n->lock);
    if (got < 0)
        fuse_reply_err(req, (int)-got);
    else
        fuse_reply_buf(req, buf, (size_t)got);
}

/* SEEK_DATA / SEEK_HOLE (the kernel answers the other whence values itself). A stored image
 * is data throughout. */
static int seek_locked(struct fs_ctx *c, struct fs_node *n, uint64_t off, int whence, uint64_t *out)
{
    if (!n->image)
        return codec_bf_seek(n->bf, off, whence, out);
    struct stat st;
    int rc = fstatat(n->fd, "", &st, AT_EMPTY_PATH) != 0 ? -errno : fs_image_fix_size(c, n, &st);
    if (rc != 0 || off >= (uint64_t)st.st_size)
        return rc != 0 ? rc : -ENXIO;
    *out = whence == SEEK_DATA ? off : (uint64_t)st.st_size;
    return 0;
}

void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = handle_of(fi)->node;
    uint64_t at = 0;
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    pthread_rwlock_rdlock(&n->lock);
    int rc = seek_locked(c, n, (uint64_t)off, whence, &at);
    if (rc < 0 && rc != -ENXIO && !n->image)
        rc = fs_err(c, rc, n->data_fd, UINT64_MAX, "seek");
    pthread_rwlock_unlock(&n->lock);
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_lseek(req, (off_t)at);
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_handle *h = handle_of(fi);
    struct fs_node *n = h->node;
    uint64_t bad = UINT64_MAX;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    pthread_rwlock_wrlock(&n->lock);
    /* a stored image opened for writing becomes a block file at its first write */
    ssize_t done = h->writable ? fs_node_to_write(c, n) : -EBADF;
    if (done == 0)
        done =
            n->writable && n->bf ? codec_bf_write(n->bf, buf, size, (uint64_t)off, &bad) : -EBADF;
    changed(n);
    pthread_rwlock_unlock(&n->lock);
    if (done < 0)
        fuse_reply_err(req, -fs_err(c, (int)done, n->data_fd, bad, "write"));
    else
        fuse_reply_write(req, (size_t)done);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    drop_handle(fs_req_ctx(req), fi);
    fuse_reply_err(req, 0);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_node *n = handle_of(fi)->node;
    pthread_rwlock_rdlock(&n->lock);
    int rc = (datasync ? fdatasync(n->data_fd) : fsync(n->data_fd)) == 0 ? 0 : errno;
    pthread_rwlock_unlock(&n->lock);
    fuse_reply_err(req, rc);
}

/* Reserve the backing space that the sealed blocks of [off, end) take, without changing the
 * backing size (the file's size is set by the block file, not here). */
static int reserve(int fd, uint64_t off, uint64_t end)
{
    uint64_t from = codec_bf_backing_size(off / CODEC_BF_BLOCK * CODEC_BF_BLOCK);
    uint64_t to = codec_bf_backing_size(end);
    if (from >= to || fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)) == 0)
        return 0;
    return -errno;
}

/* Modes: 0 and KEEP_SIZE reserve the space (and 0 grows the file); PUNCH_HOLE (with KEEP_SIZE)
 * makes the range a hole; ZERO_RANGE makes it a hole, reserves it, and grows the file unless
 * KEEP_SIZE. COLLAPSE_RANGE and INSERT_RANGE would move every later block (their position is
 * sealed in them): EOPNOTSUPP. */
static int fallocate_locked(struct fs_node *n, int mode, uint64_t off, uint64_t end, uint64_t *bad)
{
    uint64_t size;
    int rc = codec_bf_size(n->bf, &size);
    if (rc == 0 && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
        rc = codec_bf_punch(n->bf, off, end - off, bad);
        changed(n);
    }
    if (rc == 0 && !(mode & FALLOC_FL_PUNCH_HOLE))
        rc = reserve(n->data_fd, off, end);
    if (rc == 0 && !(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
        rc = codec_bf_truncate(n->bf, end, bad);
        changed(n);
    }
    return rc;
}

void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                     struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = handle_of(fi)->node;
    uint64_t bad = UINT64_MAX;
    const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (off < 0 || len <= 0 || (uint64_t)off + (uint64_t)len > CODEC_BF_MAX_SIZE) {
        fuse_reply_err(req, off < 0 || len <= 0 ? EINVAL : EFBIG);
        return;
    }
    if ((mode & ~known) || ((mode & FALLOC_FL_PUNCH_HOLE) &&
                            (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_ZERO_RANGE)))) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    pthread_rwlock_wrlock(&n->lock);
    int rc = handle_of(fi)->writable ? fs_node_to_write(c, n) : -EBADF;
    if (rc == 0)
        rc = n->writable && n->bf
                 ? fallocate_locked(n, mode, (uint64_t)off, (uint64_t)off + (uint64_t)len, &bad)
                 : -EBADF;
    pthread_rwlock_unlock(&n->lock);
    fuse_reply_err(req, -fs_err(c, rc, n->data_fd, bad, "fallocate"));
}
