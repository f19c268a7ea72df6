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
    snprintf(out, 32, "/proc/self/fd/%d", fd);
}

void fs_where(int fd, char *out, size_t cap)
{
    char p[32];
    fs_fd_path(fd, p);
    ssize_t n = cap > 1 ? readlink(p, out, cap - 1) : -1;
    if (n <= 0)
        snprintf(out, cap, "descriptor %d", fd);
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

void fs_node_free(struct fs_node *n)
{
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
    int dead = n->nlookup == 0 && n->opens == 0;
    if (dead)
        unhook(c, n);
    pthread_mutex_unlock(&c->table_lock);
    if (dead)
        fs_node_free(n);
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

/* A descriptor of the node's contents, through /proc so it is the node's own inode. */
static int reopen(const struct fs_node *n, int flags)
{
    char p[32];
    fs_fd_path(n->fd, p);
    int fd = open(p, flags | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int fs_node_open_data(struct fs_ctx *c, struct fs_node *n, int writable)
{
    if (n->type != S_IFREG)
        return n->type == S_IFDIR ? -EISDIR : -EINVAL;
    if (n->bf && (n->writable || !writable)) {
        pthread_mutex_lock(&c->table_lock);
        n->opens++;
        pthread_mutex_unlock(&c->table_lock);
        return 0;
    }
    /* Read-write whenever allowed, so a later writer can share the descriptor. */
    int fd = reopen(n, O_RDWR), got_rw = 1;
    if (fd == -EACCES || fd == -EROFS || fd == -EPERM) {
        if (writable)
            return fd;
        fd = reopen(n, O_RDONLY);
        got_rw = 0;
    }
    if (fd < 0)
        return fd;
    if (n->bf) {
        /* Upgrade: the same file, now through a read-write descriptor. */
        close(n->data_fd);
        codec_bf_set_fd(n->bf, fd);
    } else {
        int rc = codec_bf_open(fd, c->content_key, 0, &n->bf);
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    n->data_fd = fd;
    n->writable = got_rw;
    pthread_mutex_lock(&c->table_lock);
    n->opens++;
    pthread_mutex_unlock(&c->table_lock);
    return 0;
}

int fs_node_close_data(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->table_lock);
    int last = --n->opens == 0;
    int dead = last && n->nlookup == 0 && n != &c->root;
    if (dead)
        unhook(c, n);
    pthread_mutex_unlock(&c->table_lock);
    if (last) {
        codec_bf_close(n->bf);
        n->bf = NULL;
        close(n->data_fd);
        n->data_fd = -1;
        n->writable = 0;
    }
    return dead;
}

void fs_nodes_release(struct fs_ctx *c)
{
    for (size_t b = 0; b < FS_NODE_BUCKETS; b++) {
        struct fs_node *n = c->table[b];
        while (n) {
            struct fs_node *next = n->next;
            fs_node_free(n);
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
    pthread_mutex_lock(&c->table_lock);
    n->opens++;
    pthread_mutex_unlock(&c->table_lock);
}
