// SPDX-License-Identifier: MIT
/*
 * The node table: one node per backing entry the kernel has looked up, keyed by the backing
 * (dev, ino) and counted by the kernel's lookups, so every name of a file (its hard links)
 * shares one node, one lock, one descriptor and one block-file state. The node's O_PATH
 * descriptor pins the backing inode: after an unlink the node lives on until the kernel
 * forgets it, and a file unlinked while open keeps its contents until the last close, then
 * the backing filesystem frees it (nothing is renamed aside).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"

static size_t bucket(dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)dev * 0xC2B2AE3D27D4EB4Full);
    return (size_t)(h >> 52) % FS_NODE_BUCKETS;
}

void fs_fd_path(int fd, char out[32])
{
    (void)snprintf(out, 32, "/proc/self/fd/%d", fd);
}

int fs_open_regular(int dir_fd, const char *name, struct stat *st)
{
    char p[32];
    int fd = -1, err = 0, pfd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -1;
    if (fstat(pfd, st) != 0)
        err = errno;
    else if (!S_ISREG(st->st_mode))
        err = S_ISLNK(st->st_mode) ? ELOOP : EINVAL;
    else {
        fs_fd_path(pfd, p);
        if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
            err = errno;
    }
    close(pfd);
    errno = err;
    return fd;
}

void fs_where(int fd, char *out, size_t cap)
{
    char p[32];
    fs_fd_path(fd, p);
    ssize_t n = cap > 1 ? readlink(p, out, cap - 1) : -1;
    if (n <= 0)
        (void)snprintf(out, cap, "descriptor %d", fd);
    else
        out[n] = '\0';
}

struct fs_node *fs_node_of(struct fs_ctx *c, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? &c->root : (struct fs_node *)(uintptr_t)ino;
}

static void node_init(struct fs_node *n, int fd, const struct stat *st)
{
    pthread_rwlock_init(&n->lock, NULL);
    pthread_mutex_init(&n->info_lock, NULL);
    n->dev = st->st_dev;
    n->ino = st->st_ino;
    n->type = st->st_mode & S_IFMT;
    n->fd = fd;
    n->data_fd = -1;
}

int fs_node_get(struct fs_ctx *c, int fd, const struct stat *st, struct fs_node **out)
{
    size_t b = bucket(st->st_dev, st->st_ino);
    struct fs_node *fresh = NULL;
    for (;;) {
        pthread_mutex_lock(&c->table_lock);
        struct fs_node *n = c->table[b];
        while (n && (n->dev != st->st_dev || n->ino != st->st_ino))
            n = n->next;
        if (!n && st->st_dev == c->root.dev && st->st_ino == c->root.ino)
            n = &c->root;
        if (n) {
            n->nlookup++;
            pthread_mutex_unlock(&c->table_lock);
            close(fd);
            if (fresh) {
                pthread_rwlock_destroy(&fresh->lock);
                pthread_mutex_destroy(&fresh->info_lock);
                free(fresh);
            }
            *out = n;
            return 0;
        }
        if (fresh) {
            fresh->nlookup = 1;
            fresh->next = c->table[b];
            c->table[b] = fresh;
            pthread_mutex_unlock(&c->table_lock);
            *out = fresh;
            return 0;
        }
        /* Allocate outside the lock, then look again: another thread may have added it. */
        pthread_mutex_unlock(&c->table_lock);
        fresh = calloc(1, sizeof(*fresh));
        if (!fresh) {
            close(fd);
            return -ENOMEM;
        }
        node_init(fresh, fd, st);
    }
}

void fs_dref_put(struct fs_dref *d)
{
    if (d && --d->refs == 0) {
        close(d->fd);
        free(d);
    }
}

void fs_node_free(struct fs_ctx *c, struct fs_node *n)
{
    fs_cache_drop(c, n);
    fs_dref_put(n->dir);
    fs_dref_put(n->self);
    free(n->leaf);
    pthread_mutex_destroy(&n->info_lock);
    codec_bf_close(n->bf);
    if (n->data_fd >= 0)
        close(n->data_fd);
    if (n->fd >= 0)
        close(n->fd);
    pthread_rwlock_destroy(&n->lock);
    memset(n->dirid, 0, sizeof(n->dirid));
    free(n);
}

/* Unhook a node whose counts both reached zero; table_lock held. */
static void unhook(struct fs_ctx *c, struct fs_node *n)
{
    struct fs_node **pp = &c->table[bucket(n->dev, n->ino)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp)
        *pp = n->next;
}

void fs_node_forget(struct fs_ctx *c, struct fs_node *n, uint64_t nlookup)
{
    if (n == &c->root)
        return;
    pthread_mutex_lock(&c->table_lock);
    n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
    int dead = n->nlookup == 0 && n->opens == 0 && !n->queued;
    if (dead)
        unhook(c, n);
    pthread_mutex_unlock(&c->table_lock);
    if (dead)
        fs_node_free(c, n);
}

struct fs_node *fs_node_find(struct fs_ctx *c, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&c->table_lock);
    struct fs_node *n = c->table[bucket(dev, ino)];
    while (n && (n->dev != dev || n->ino != ino))
        n = n->next;
    if (n)
        n->nlookup++;
    pthread_mutex_unlock(&c->table_lock);
    return n;
}

void fs_node_name(struct fs_ctx *c, struct fs_node *n, struct fs_node *dir, const char *leaf)
{
    if (n->type != S_IFREG)
        return;
    pthread_mutex_lock(&c->table_lock);
    int same = n->dir && n->dir == dir->self && strcmp(n->leaf, leaf) == 0;
    pthread_mutex_unlock(&c->table_lock);
    if (same) /* the usual case: looked up again under the name it had */
        return;
    char *copy = strdup(leaf);
    struct fs_dref *fresh = NULL, *old = NULL;
    if (!copy)
        return; /* the name is only needed to convert: the file then stays a block file */
    pthread_mutex_lock(&c->table_lock);
    if (!dir->self) {
        pthread_mutex_unlock(&c->table_lock);
        fresh = calloc(1, sizeof(*fresh));
        if (fresh && (fresh->fd = fcntl(dir->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            free(fresh);
            fresh = NULL;
        }
        pthread_mutex_lock(&c->table_lock);
        if (fresh && !dir->self) {
            fresh->refs = 1;
            dir->self = fresh;
            fresh = NULL;
        }
    }
    if (dir->self) {
        if (n->dir != dir->self) {
            old = n->dir;
            dir->self->refs++;
            n->dir = dir->self;
        }
        free(n->leaf);
        n->leaf = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&c->table_lock);
    fs_dref_put(old);
    if (fresh) {
        close(fresh->fd);
        free(fresh);
    }
    free(copy);
}

int fs_node_where(struct fs_ctx *c, struct fs_node *n, struct fs_dref **dir, char **leaf)
{
    int rc = -ESTALE;
    pthread_mutex_lock(&c->table_lock);
    if (n->dir && n->leaf && (*leaf = strdup(n->leaf)) != NULL) {
        n->dir->refs++;
        *dir = n->dir;
        rc = 0;
    }
    pthread_mutex_unlock(&c->table_lock);
    return rc;
}

/* Whether `leaf` of folder dfd is the node's inode with one link: 0, -ESTALE (another's, or
 * none), -EMLINK or -errno. */
static int still_named(const struct fs_node *n, int dfd, const char *leaf)
{
    struct stat cur;
    if (fstatat(dfd, leaf, &cur, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? -ESTALE : -errno;
    if (cur.st_dev != n->dev || cur.st_ino != n->ino)
        return -ESTALE;
    return cur.st_nlink != 1 ? -EMLINK : 0;
}

/* Point the node's descriptor at the file `tmp` of folder dfd (open as tmp_fd, whose stat goes
 * into *fresh), the old descriptor kept in *old_fd for settle: 0, or -errno with nothing
 * changed. ns_lock held exclusively. */
static int point_at(struct fs_node *n, int dfd, const char *tmp, int tmp_fd, struct stat *fresh,
                    int *old_fd)
{
    int rc = 0, path_fd = openat(dfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (path_fd < 0 || fstat(tmp_fd, fresh) != 0 ||
        (*old_fd = fcntl(n->fd, F_DUPFD_CLOEXEC, 0)) < 0 || dup2(path_fd, n->fd) < 0)
        rc = errno ? -errno : -EIO;
    if (path_fd >= 0)
        close(path_fd);
    return rc;
}

/* After point_at: the node's descriptor back on the old file after a failure (rc != 0), or the
 * node under the new file's key after a success; the old descriptor closed. */
static int settle(struct fs_ctx *c, struct fs_node *n, const struct stat *fresh, int old_fd, int rc)
{
    if (rc != 0 && old_fd >= 0) {
        (void)dup2(old_fd, n->fd);
    } else if (rc == 0) {
        /* Another key: the same node. */
        pthread_mutex_lock(&c->table_lock);
        unhook(c, n);
        n->dev = fresh->st_dev;
        n->ino = fresh->st_ino;
        size_t b = bucket(n->dev, n->ino);
        n->next = c->table[b];
        c->table[b] = n;
        pthread_mutex_unlock(&c->table_lock);
    }
    if (old_fd >= 0)
        close(old_fd);
    return rc;
}

int fs_node_swap(struct fs_ctx *c, struct fs_node *n, const char *tmp, int tmp_fd, int *dir_fd)
{
    struct fs_dref *d = NULL;
    char *leaf = NULL;
    struct stat fresh = {0};
    int rc = fs_node_where(c, n, &d, &leaf), old_fd = -1;
    if (rc != 0)
        return rc;
    pthread_rwlock_wrlock(&c->ns_lock);
    /* The node's descriptor names the new inode before the rename (the same number: a getattr
     * racing this sees the new file, one link, never the old one unlinked), and the old one
     * again if the rename fails. */
    if ((rc = still_named(n, d->fd, leaf)) == 0 &&
        (rc = point_at(n, d->fd, tmp, tmp_fd, &fresh, &old_fd)) == 0 &&
        renameat(d->fd, tmp, d->fd, leaf) != 0)
        rc = -errno;
    rc = settle(c, n, &fresh, old_fd, rc);
    pthread_rwlock_unlock(&c->ns_lock);
    if (rc == 0) /* for the caller's fsync, which an O_PATH descriptor does not take */
        *dir_fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    fs_dref_put(d);
    free(leaf);
    return rc;
}

int fs_node_unnamed(const struct fs_node *n)
{
    struct stat st;
    return fstat(n->fd, &st) == 0 && st.st_nlink == 0;
}

int fs_node_adopt_unnamed(struct fs_ctx *c, struct fs_node *n, int dfd, const char *tmp, int tmp_fd)
{
    struct stat fresh = {0};
    int rc, old_fd = -1;
    pthread_rwlock_wrlock(&c->ns_lock);
    /* nameless for good: the kernel links no inode whose link count is 0 */
    if ((rc = fs_node_unnamed(n) ? 0 : -ESTALE) == 0 &&
        (rc = point_at(n, dfd, tmp, tmp_fd, &fresh, &old_fd)) == 0 && unlinkat(dfd, tmp, 0) != 0)
        rc = -errno;
    rc = settle(c, n, &fresh, old_fd, rc);
    pthread_rwlock_unlock(&c->ns_lock);
    return rc;
}

int fs_node_dirid(struct fs_ctx *c, struct fs_node *n, uint8_t id[KEYS_ID_BYTES])
{
    pthread_rwlock_rdlock(&n->lock);
    int have = n->have_id;
    if (have)
        memcpy(id, n->dirid, KEYS_ID_BYTES);
    pthread_rwlock_unlock(&n->lock);
    if (have)
        return 0;
    if (n->type != S_IFDIR)
        return -ENOTDIR;
    int rc = fs_dirid_read(c, n->fd, id);
    if (rc != 0)
        return rc;
    pthread_rwlock_wrlock(&n->lock);
    memcpy(n->dirid, id, KEYS_ID_BYTES);
    n->have_id = 1;
    pthread_rwlock_unlock(&n->lock);
    return 0;
}

int fs_node_reopen(const struct fs_node *n, int flags)
{
    char p[32];
    fs_fd_path(n->fd, p);
    int fd = open(p, flags | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Is the file open as `fd` a stored image (1, or 0)? What it is, is remembered for its inode;
 * a read that fails is not taken for an answer (-errno). */
static int sniff_image(struct fs_ctx *c, struct fs_node *n, int fd)
{
    uint8_t head[CODEC_CT_HEAD];
    struct codec_ct_info info;
    struct stat st;
    ssize_t got = codec_pread_all(fd, head, sizeof(head), 0);
    if (got < 0)
        return (int)got;
    if (fstat(fd, &st) != 0)
        return -errno;
    int image = c->pl && codec_ct_sniff(head, (size_t)got) &&
                codec_pipeline_head_info(c->pl, head, (size_t)got, &info) == 0;
    fs_image_set_store(n, image ? FS_STORE_IMAGE : FS_STORE_BLOCKS, &st, image ? &info : NULL);
    if (image)
        fs_cache_check(c, n, &st);
    return image;
}

static void count_open(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->table_lock);
    n->opens++;
    pthread_mutex_unlock(&c->table_lock);
}

int fs_node_to_write(struct fs_ctx *c, struct fs_node *n)
{
    return n->image ? fs_image_to_blocks(c, n, 0) : 0;
}

int fs_node_open_data(struct fs_ctx *c, struct fs_node *n, enum fs_data_use use)
{
    int rc, writable = use != FS_DATA_READ;
    if (n->type != S_IFREG)
        return n->type == S_IFDIR ? -EISDIR : -EINVAL;
    /* A writer of a stored image: it becomes a block file first, open handles included. One
     * that may write goes on reading the image until it does (a program that opens r+ and
     * only reads costs no decode into a block file and no conversion back). */
    if (use == FS_DATA_WRITE && (rc = fs_node_to_write(c, n)) != 0)
        return rc;
    if ((n->bf || n->image) && (n->writable || !writable)) {
        count_open(c, n);
        return 0;
    }
    /* Read-write whenever allowed, so a later writer can share the descriptor. */
    int fd = fs_node_reopen(n, O_RDWR), got_rw = 1;
    if (fd == -EACCES || fd == -EROFS || fd == -EPERM) {
        if (writable)
            return fd;
        fd = fs_node_reopen(n, O_RDONLY);
        got_rw = 0;
    }
    if (fd < 0)
        return fd;
    if (n->bf || n->image) {
        /* Upgrade: the same file, now through a read-write descriptor. */
        close(n->data_fd);
        if (n->bf)
            codec_bf_set_fd(n->bf, fd);
    } else {
        int image = sniff_image(c, n, fd);
        if (image < 0) {
            close(fd);
            return image;
        }
        if (image) {
            if (use != FS_DATA_WRITE) {
                n->image = 1;
                n->data_fd = fd;
                n->writable = got_rw;
                count_open(c, n);
                return 0;
            }
            close(fd);
            if ((rc = fs_image_to_blocks(c, n, 0)) != 0 || (fd = fs_node_reopen(n, O_RDWR)) < 0)
                return rc != 0 ? rc : fd;
        }
        rc = codec_bf_open(fd, c->content_key, 0, &n->bf);
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    n->data_fd = fd;
    n->writable = got_rw;
    count_open(c, n);
    return 0;
}

int fs_node_close_data(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->table_lock);
    int last = --n->opens == 0;
    int queue = last && n->dirty && c->convert && !n->queued;
    if (queue)
        n->queued = 1;
    int dead = last && n->nlookup == 0 && n != &c->root && !n->queued;
    if (dead)
        unhook(c, n);
    pthread_mutex_unlock(&c->table_lock);
    if (last) {
        struct stat st;
        if (n->image && (!c->cache_cap || fstat(n->data_fd, &st) != 0 || st.st_nlink == 0))
            fs_cache_drop(c, n); /* cache off, or the file is gone: nothing outlives it */
        codec_bf_close(n->bf);
        n->bf = NULL;
        close(n->data_fd);
        n->data_fd = -1;
        n->writable = 0;
        n->image = 0;
    }
    if (queue)
        fs_convert_closed(c, n);
    return dead;
}

void fs_nodes_release(struct fs_ctx *c)
{
    for (size_t b = 0; b < FS_NODE_BUCKETS; b++) {
        struct fs_node *n = c->table[b];
        while (n) {
            struct fs_node *next = n->next;
            fs_node_free(c, n);
            n = next;
        }
        c->table[b] = NULL;
    }
}

void fs_node_adopt_data(struct fs_ctx *c, struct fs_node *n, int fd, struct codec_bf *bf)
{
    if (n->bf && n->writable) {
        codec_bf_close(bf);
        close(fd);
    } else if (n->bf) {
        codec_bf_close(bf);
        close(n->data_fd);
        codec_bf_set_fd(n->bf, fd);
        n->data_fd = fd;
        n->writable = 1;
    } else {
        n->bf = bf;
        n->data_fd = fd;
        n->writable = 1;
    }
    struct stat st;
    if (fstat(n->data_fd, &st) == 0) /* a new file: a block file */
        fs_image_set_store(n, FS_STORE_BLOCKS, &st, NULL);
    pthread_mutex_lock(&c->table_lock);
    n->opens++;
    pthread_mutex_unlock(&c->table_lock);
}
