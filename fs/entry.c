// SPDX-License-Identifier: MIT
/*
 * Namespace changes: mknod, mkdir, symlink, link, unlink, rmdir, rename. Each works on the
 * parent folders' descriptors with one sealed component, so the depth of a path never matters
 * and nothing planted in the backing folder is followed. A folder is made under a temporary
 * name with its id inside and renamed into place, so no folder exists without its id; a
 * hashed long name gets its sidecar before the entry appears and loses it after the entry
 * goes; so does a symlink with a long target (link.c), after its last name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

/* e is read only when rc is 0; the callers zero it all the same, so that no path where rc
 * does not say what e holds (a failed call leaving errno at 0) could reply with garbage. */
static void reply_entry(fuse_req_t req, int rc, const struct fuse_entry_param *e)
{
    if (rc != 0)
        fuse_reply_err(req, -rc);
    else if (fuse_reply_entry(req, e) == -ENOENT)
        fs_node_forget(fs_req_ctx(req), fs_node_of(fs_req_ctx(req), e->ino), 1);
}

/* After the new entry `leaf` was made in `parent`: owner, set-ID bits, sidecar kept. */
static int finish_new(struct fs_ctx *c, fuse_req_t req, struct fs_node *parent, const char *leaf,
                      mode_t mode, struct fuse_entry_param *e)
{
    int fd = openat(parent->fd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC), rc;
    if (fd < 0)
        return -errno;
    rc = fs_own(c, req, parent, fd);
    if (rc == 0 && c->as_root && (mode & 06000) && !S_ISLNK(mode)) {
        char p[32];
        fs_fd_path(fd, p);
        if (chmod(p, mode & 07777) != 0)
            rc = -errno;
    }
    close(fd);
    return rc != 0 ? rc : fs_lookup_leaf(c, parent, leaf, e);
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *p = fs_node_of(c, parent);
    struct fuse_entry_param e = {0};
    struct fs_name nm;
    int rc;
    if (S_ISREG(mode)) {
        reply_entry(req, fs_new_file(c, req, p, name, mode, &e, NULL, NULL), &e);
        return;
    }
    if ((rc = fs_seal_in(c, p, name, &nm)) == 0 && (rc = fs_long_write(p->fd, &nm)) == 0) {
        if (mknodat(p->fd, nm.leaf, mode, rdev) != 0) {
            rc = -errno;
            if (rc != -EEXIST)
                fs_long_remove(p->fd, &nm);
        } else if ((rc = finish_new(c, req, p, nm.leaf, mode, &e)) != 0) {
            (void)unlinkat(p->fd, nm.leaf, 0);
            fs_long_remove(p->fd, &nm);
        }
    }
    reply_entry(req, rc, &e);
}

/* Build a folder under temporary name tmp: its id, owner and mode. */
static int make_tmp_dir(struct fs_ctx *c, fuse_req_t req, struct fs_node *parent, mode_t mode,
                        const char *tmp)
{
    uint8_t id[KEYS_ID_BYTES];
    struct stat st;
    char p[32];
    if (mkdirat(parent->fd, tmp, 0700) != 0)
        return -errno;
    int fd = openat(parent->fd, tmp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc;
    if (fd < 0)
        return -errno;
    fs_fd_path(fd, p);
    if ((rc = fs_dirid_create(fd, id)) == 0 && (rc = fs_own(c, req, parent, fd)) == 0) {
        /* A set-group-ID folder passes the bit on, as the backing did to the new folder. */
        if (fstatat(fd, "", &st, AT_EMPTY_PATH) != 0 ||
            chmod(p, (mode & 07777) | (st.st_mode & S_ISGID)) != 0)
            rc = -errno;
    }
    close(fd);
    return rc;
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *p = fs_node_of(c, parent);
    struct fuse_entry_param e = {0};
    struct fs_name nm;
    char tmp[FS_TMP_CAP];
    int rc = fs_seal_in(c, p, name, &nm);
    if (rc == 0 && (rc = fs_tmp_name(c, tmp)) == 0) {
        if ((rc = make_tmp_dir(c, req, p, mode, tmp)) == 0 &&
            (rc = fs_long_write(p->fd, &nm)) == 0 && (rc = fs_place(p->fd, tmp, nm.leaf, 1)) != 0 &&
            rc != -EEXIST)
            fs_long_remove(p->fd, &nm);
        if (rc != 0)
            (void)fs_tmp_remove(p->fd, tmp);
    }
    if (rc == 0)
        rc = fs_lookup_leaf(c, p, nm.leaf, &e);
    reply_entry(req, rc, &e);
}

void fs_op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *p = fs_node_of(c, parent);
    struct fuse_entry_param e = {0};
    struct fs_name nm;
    char stored[PATH_MAX];
    int rc = fs_seal_in(c, p, name, &nm);
    if (rc == 0 && (rc = fs_link_seal(c, target, stored)) == 0) {
        if ((rc = fs_long_write(p->fd, &nm)) == 0) {
            if (symlinkat(stored, p->fd, nm.leaf) != 0) {
                rc = -errno;
                if (rc != -EEXIST)
                    fs_long_remove(p->fd, &nm);
            } else if ((rc = finish_new(c, req, p, nm.leaf, S_IFLNK, &e)) != 0) {
                (void)unlinkat(p->fd, nm.leaf, 0);
                fs_long_remove(p->fd, &nm);
            }
        }
        if (rc != 0)
            fs_link_discard(c, stored);
    }
    reply_entry(req, rc, &e);
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *n = fs_node_of(c, ino), *p = fs_node_of(c, parent);
    struct fuse_entry_param e = {0};
    struct fs_name nm;
    int rc = fs_seal_in(c, p, name, &nm);
    /* A stored image becomes a block file first: containers have one link, so a conversion's
     * rename never splits a file's links. */
    pthread_rwlock_wrlock(&n->lock);
    if (rc == 0 && n->type == S_IFREG && fs_image_is_stored(c, n))
        rc = fs_image_to_blocks(c, n, 0);
    pthread_rwlock_rdlock(&c->ns_lock);
    if (rc == 0 && (rc = fs_long_write(p->fd, &nm)) == 0) {
        /* The node's own inode: by descriptor (root may), else through /proc. */
        if (linkat(n->fd, "", p->fd, nm.leaf, AT_EMPTY_PATH) != 0) {
            char path[32];
            fs_fd_path(n->fd, path);
            rc = errno == ENOENT || errno == EPERM
                     ? (linkat(AT_FDCWD, path, p->fd, nm.leaf, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno)
                     : -errno;
        }
        if (rc != 0 && rc != -EEXIST)
            fs_long_remove(p->fd, &nm);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    pthread_rwlock_unlock(&n->lock);
    if (rc == 0)
        rc = fs_lookup_leaf(c, p, nm.leaf, &e);
    reply_entry(req, rc, &e);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *p = fs_node_of(c, parent);
    struct fs_name nm;
    struct stat st;
    int rc = fs_seal_in(c, p, name, &nm);
    pthread_rwlock_rdlock(&c->ns_lock);
    if (rc == 0 && fstatat(p->fd, nm.leaf, &st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = -errno;
    int held = rc == 0 ? fs_link_hold(p->fd, nm.leaf, &st) : -1;
    if (rc == 0 && unlinkat(p->fd, nm.leaf, 0) != 0)
        rc = -errno;
    fs_link_release(c, held);
    if (rc == 0)
        fs_long_remove(p->fd, &nm);
    struct fs_node *gone =
        rc == 0 && st.st_nlink == 1 ? fs_node_find(c, st.st_dev, st.st_ino) : NULL;
    /* Its last name went: cached plaintext goes now, unless a handle still reads it. */
    if (gone && gone->type == S_IFREG && gone->opens == 0)
        fs_cache_drop(c, gone);
    if (gone)
        fs_node_forget(c, gone, 1);
    pthread_rwlock_unlock(&c->ns_lock);
    fuse_reply_err(req, -rc);
}

static int is_tmp(const char *entry)
{
    return strncmp(entry, FS_TMP_PREFIX, sizeof(FS_TMP_PREFIX) - 1) == 0;
}

/* Remove a temporary entry of an emptied folder: another mount's leftovers whole; this mount's
 * own files (the new form of a file whose name went, which its conversion then gives up on, or
 * a file being made here as the folder goes), but not a folder it is making. */
static int remove_tmp(struct fs_ctx *c, int dir_fd, const char *entry)
{
    if (fs_tmp_foreign(c, entry))
        return fs_tmp_remove(dir_fd, entry);
    return unlinkat(dir_fd, entry, 0) == 0 ? 0 : -errno;
}

/* 0 when the backing folder holds nothing but its id (empty as the mount sees it; temporary
 * files are removed then), else -ENOTEMPTY or -errno. Two passes: no temporary file is removed
 * from a folder that is not empty. */
static int only_id_inside(struct fs_ctx *c, int dir_fd)
{
    int dfd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        rc = -errno;
        close(dfd);
        return rc;
    }
    struct dirent *e;
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        rewinddir(d);
        while (rc == 0 && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
                !strcmp(e->d_name, FS_DIRID_NAME))
                continue;
            if (!is_tmp(e->d_name) || (pass == 1 && remove_tmp(c, dirfd(d), e->d_name) != 0))
                rc = -ENOTEMPTY;
        }
    }
    closedir(d);
    return rc;
}

/* Put a folder id back, after an operation that removed it failed. */
static void restore_id(struct fs_ctx *c, int dir_fd, const uint8_t id[KEYS_ID_BYTES])
{
    int fd =
        openat(dir_fd, FS_DIRID_NAME, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0 || fs_write_all(fd, id, KEYS_ID_BYTES) != 0) {
        char where[PATH_MAX];
        fs_where(dir_fd, where, sizeof(where));
        fs_log(c, LOG_ERR, "%s: could not restore the folder id", where);
    }
    if (fd >= 0)
        close(fd);
}

/* Empty folder `dir_fd` of its id so it can be removed or replaced; *id keeps it. */
static int strip_id(struct fs_ctx *c, int dir_fd, uint8_t id[KEYS_ID_BYTES])
{
    int rc = only_id_inside(c, dir_fd);
    if (rc == 0)
        rc = fs_dirid_read(c, dir_fd, id);
    if (rc == 0 && unlinkat(dir_fd, FS_DIRID_NAME, 0) != 0)
        rc = -errno;
    return rc;
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *p = fs_node_of(c, parent);
    struct fs_name nm;
    uint8_t id[KEYS_ID_BYTES];
    int dfd = -1;
    int rc = fs_seal_in(c, p, name, &nm);
    if (rc == 0 &&
        (dfd = openat(p->fd, nm.leaf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0 && (rc = strip_id(c, dfd, id)) == 0) {
        /* A conversion of a file unlinked here may still make its temporary file after the
         * folder was emptied: emptied again, a few times, before the folder counts as used. */
        for (int tries = 0;
             (rc = unlinkat(p->fd, nm.leaf, AT_REMOVEDIR) == 0 ? 0 : -errno) == -ENOTEMPTY &&
             tries < 3 && only_id_inside(c, dfd) == 0;
             tries++)
            ;
        if (rc != 0)
            restore_id(c, dfd, id); /* someone made an entry meanwhile */
        else
            fs_long_remove(p->fd, &nm);
    }
    if (dfd >= 0)
        close(dfd);
    fuse_reply_err(req, -rc);
}

/* Rename between resolved names; a folder may replace an empty folder (its id is in the way). */
static int rename_names(struct fs_ctx *c, int afd, const struct fs_name *a, int bfd,
                        const struct fs_name *b, unsigned int flags)
{
    struct stat sa, sb;
    uint8_t id[KEYS_ID_BYTES];
    int rc, tfd = -1;
    if (fstatat(afd, a->leaf, &sa, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    int b_exists = fstatat(bfd, b->leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    if (b_exists && !(flags & RENAME_EXCHANGE) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
        return flags & RENAME_NOREPLACE ? -EEXIST : 0; /* one file, two names: nothing to do */
    if (b_exists && !(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) && S_ISDIR(sa.st_mode) &&
        S_ISDIR(sb.st_mode)) {
        tfd = openat(bfd, b->leaf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tfd < 0)
            return -errno;
        if ((rc = strip_id(c, tfd, id)) != 0) {
            close(tfd);
            return rc;
        }
    }
    /* A long link replaced by the rename may lose its last name, and then its sidecar. */
    int held = b_exists && !(flags & RENAME_EXCHANGE) ? fs_link_hold(bfd, b->leaf, &sb) : -1;
    if ((rc = fs_long_write(bfd, b)) == 0)
        rc = flags == RENAME_NOREPLACE
                 ? fs_rename_noreplace(afd, a->leaf, bfd, b->leaf, S_ISDIR(sa.st_mode))
             : renameat2(afd, a->leaf, bfd, b->leaf, flags) == 0 ? 0
                                                                 : -errno;
    if (rc != 0) {
        if (tfd >= 0)
            restore_id(c, tfd, id);
        if (!b_exists)
            fs_long_remove(bfd, b);
    } else if (!(flags & RENAME_EXCHANGE)) {
        /* The old name is gone; with EXCHANGE both names still exist, sidecars unchanged. */
        fs_long_remove(afd, a);
    }
    fs_link_release(c, held);
    if (tfd >= 0)
        close(tfd);
    return rc;
}

/* The entry now at `nm` in folder node `dir`: its node, if the kernel knows it, learns the
 * name. ns_lock held shared. */
static void renamed(struct fs_ctx *c, struct fs_node *dir, const struct fs_name *nm)
{
    struct stat st;
    struct fs_node *n;
    if (fstatat(dir->fd, nm->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        (n = fs_node_find(c, st.st_dev, st.st_ino)) != NULL) {
        fs_node_name(c, n, dir, nm->leaf);
        fs_node_forget(c, n, 1);
    }
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags)
{
    struct fs_ctx *c = fs_req_ctx(req);
    struct fs_node *pa = fs_node_of(c, parent), *pb = fs_node_of(c, newparent);
    struct fs_name a, b;
    int rc = fs_seal_in(c, pa, name, &a);
    if (rc == 0)
        rc = fs_seal_in(c, pb, newname, &b);
    pthread_rwlock_rdlock(&c->ns_lock);
    if (rc == 0 && (rc = rename_names(c, pa->fd, &a, pb->fd, &b, flags)) == 0) {
        /* The files keep their nodes: they learn their new names (for a conversion). */
        renamed(c, pb, &b);
        if (flags & RENAME_EXCHANGE)
            renamed(c, pa, &a);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    fuse_reply_err(req, -rc);
}
