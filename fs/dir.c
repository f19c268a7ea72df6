// SPDX-License-Identifier: MIT
/*
 * Folder listings. An open folder is a directory stream of the backing folder and its id,
 * fixed at opendir, so a handle keeps listing the same folder when it or a folder above it is
 * renamed. Entries carry the backing folder's own positions (d_off), so a listing resumes
 * where the last call stopped. With READDIRPLUS each entry comes with its attributes and one
 * lookup, which spares the kernel a LOOKUP round trip per file of a folder that is listed and
 * then opened or stat'ed; hard links are one node, so those attributes stay right.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"

#define FS_FUSE_HIDDEN ".fuse_hidden"

struct fs_dir {
    DIR *d;
    off_t pos; /* the position the stream is at, as handed to the kernel */
    uint8_t id[KEYS_ID_BYTES];
};

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino);
    struct fs_dir *d = calloc(1, sizeof(*d));
    int rc = d ? fs_node_dirid(c, n, d->id) : -ENOMEM;
    int fd = -1;
    if (rc == 0 && (fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0 && !(d->d = fdopendir(fd))) {
        rc = -errno;
        close(fd);
    }
    if (rc != 0) {
        free(d);
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == -ENOENT) {
        closedir(d->d);
        free(d);
    }
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
    closedir(d->d);
    free(d);
    fuse_reply_err(req, 0);
}

/* The plaintext name of a backing entry, or nonzero to skip it (logged when it is damage). */
static int shown_name(struct fs_ctx *c, struct fs_dir *d, const char *entry, char *out, size_t cap)
{
    if (!strcmp(entry, ".") || !strcmp(entry, "..")) {
        (void)snprintf(out, cap, "%s", entry);
        return 0;
    }
    int rc = fs_entry_name(c, dirfd(d->d), d->id, entry, out, cap);
    if (rc == -ENOENT)
        return 1;
    if (rc != 0) {
        char where[PATH_MAX];
        fs_where(dirfd(d->d), where, sizeof(where));
        fs_log(c, LOG_WARNING, "%s/%s: name does not decrypt; entry hidden", where, entry);
        return 1;
    }
    /* Files a store written by an older version kept while unlinked but open. */
    return strncmp(out, FS_FUSE_HIDDEN, sizeof(FS_FUSE_HIDDEN) - 1) == 0;
}

static void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                 int plus)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
    struct fs_node *dn = fs_node_of(c, ino);
    char *buf = malloc(size), name[NAME_MAX + 2];
    size_t used = 0;
    int rc = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (off != d->pos) {
        if (off == 0)
            rewinddir(d->d);
        else
            seekdir(d->d, (long)off);
        d->pos = off;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d->d);
        if (!e) {
            rc = errno ? -errno : 0;
            break;
        }
        off_t next = (off_t)e->d_off;
        if (shown_name(c, d, e->d_name, name, sizeof(name))) {
            d->pos = next;
            continue;
        }
        size_t left = size - used, len;
        int dot = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        if (plus) {
            struct fuse_entry_param ep = {0};
            if (dot) {
                ep.attr.st_ino = e->d_ino;
                ep.attr.st_mode = (mode_t)DTTOIF(e->d_type);
            } else if (fs_lookup_leaf(c, dn, e->d_name, &ep) != 0) {
                d->pos = next; /* gone meanwhile, or refused (logged) */
                continue;
            }
            len = fuse_add_direntry_plus(req, buf + used, left, name, &ep, next);
            if (len > left) {
                if (!dot)
                    fs_node_forget(c, fs_node_of(c, ep.ino), 1);
                seekdir(d->d, (long)d->pos); /* this entry comes first next time */
                break;
            }
        } else {
            struct stat st = {.st_ino = e->d_ino, .st_mode = (mode_t)DTTOIF(e->d_type)};
            len = fuse_add_direntry(req, buf + used, left, name, &st, next);
            if (len > left) {
                seekdir(d->d, (long)d->pos);
                break;
            }
        }
        used += len;
        d->pos = next;
    }
    if (rc != 0 && used == 0)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    list(req, ino, size, off, fi, 0);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    list(req, ino, size, off, fi, 1);
}
