// SPDX-License-Identifier: MIT
/*
 * The open-inode table: one entry per backing file that has open handles, found by (dev, ino),
 * so every handle of a file, and every hard link to it, shares one lock, one descriptor and one
 * block-file state. That is what keeps two writers on one file from losing each other's
 * updates: the read-modify-write of a block happens under the inode's write lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"

static size_t slot(dev_t dev, ino_t ino)
{
    return (size_t)(((uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev) >> 56);
}

int fs_inode_get(struct fs_ctx *c, int fd, int writable, int create, struct fs_inode **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t s = slot(st.st_dev, st.st_ino);
    pthread_mutex_lock(&c->inodes_lock);
    struct fs_inode *ino = c->inodes[s];
    while (ino && (ino->dev != st.st_dev || ino->ino != st.st_ino))
        ino = ino->next;
    if (ino) {
        ino->refs++;
        pthread_mutex_unlock(&c->inodes_lock);
        /* A writable descriptor replaces a read-only one; otherwise the new one is spare. */
        pthread_rwlock_wrlock(&ino->lock);
        if (writable && !ino->writable) {
            close(ino->fd);
            ino->fd = fd;
            ino->writable = 1;
            codec_bf_set_fd(ino->bf, fd);
            fd = -1;
        }
        pthread_rwlock_unlock(&ino->lock);
        if (fd >= 0)
            close(fd);
        *out = ino;
        return 0;
    }
    /* New entry: set it up fully before it becomes visible. Two threads may race to add the
     * same inode; the loser's entry is dropped below. */
    pthread_mutex_unlock(&c->inodes_lock);
    struct fs_inode *fresh = calloc(1, sizeof(*fresh));
    int rc = fresh ? 0 : -ENOMEM;
    if (rc == 0)
        rc = codec_bf_open(fd, c->content_key, create && writable, &fresh->bf);
    if (rc != 0) {
        free(fresh);
        close(fd);
        return rc;
    }
    pthread_rwlock_init(&fresh->lock, NULL);
    fresh->dev = st.st_dev;
    fresh->ino = st.st_ino;
    fresh->fd = fd;
    fresh->writable = writable;
    fresh->refs = 1;
    pthread_mutex_lock(&c->inodes_lock);
    for (ino = c->inodes[s]; ino; ino = ino->next)
        if (ino->dev == st.st_dev && ino->ino == st.st_ino)
            break;
    if (ino) {
        pthread_mutex_unlock(&c->inodes_lock);
        fresh->refs = 0;
        codec_bf_close(fresh->bf);
        pthread_rwlock_destroy(&fresh->lock);
        free(fresh);
        /* Join the winner with a fresh descriptor of ours. */
        return fs_inode_get(c, fd, writable, create, out);
    }
    fresh->next = c->inodes[s];
    c->inodes[s] = fresh;
    pthread_mutex_unlock(&c->inodes_lock);
    *out = fresh;
    return 0;
}

void fs_inode_put(struct fs_ctx *c, struct fs_inode *ino)
{
    if (!ino)
        return;
    size_t s = slot(ino->dev, ino->ino);
    pthread_mutex_lock(&c->inodes_lock);
    if (--ino->refs > 0) {
        pthread_mutex_unlock(&c->inodes_lock);
        return;
    }
    struct fs_inode **pp = &c->inodes[s];
    while (*pp != ino)
        pp = &(*pp)->next;
    *pp = ino->next;
    pthread_mutex_unlock(&c->inodes_lock);
    codec_bf_close(ino->bf);
    close(ino->fd);
    pthread_rwlock_destroy(&ino->lock);
    free(ino);
}
