/* SPDX-License-Identifier: MIT */
/*
 * Internals of fs/: the mount context, name translation and the open-inode table.
 *
 * Lock order (never take them the other way round):
 *   fs_ctx.inodes_lock  ->  (released)  ->  fs_inode.lock
 *   fs_ctx.dirid_lock and fs_ctx.handles_lock are leaves: nothing else is taken while holding
 *   either.
 * The inode table lock is never held while an inode's lock is taken or while doing I/O.
 */
#ifndef IMGCRYPTFS_FS_INT_H
#define IMGCRYPTFS_FS_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

#include "codec/blockfile.h"
#include "fs/fs.h"
#include "keys/keys.h"

#define FS_PATH_CAP PATH_MAX
/* Longest base64url name kept as is; longer ones are stored under a hashed name. */
#define FS_SHORT_MAX NAME_MAX
/* Sealed name: 16-byte SIV tag + name, base64url without padding. */
#define FS_ENC_CAP ((((NAME_MAX + 16) + 2) / 3) * 4 + 1)
#define FS_DIRID_SLOTS 1024

struct fs_inode {
    dev_t dev;
    ino_t ino;
    unsigned refs;         /* guarded by fs_ctx.inodes_lock */
    struct fs_inode *next; /* guarded by fs_ctx.inodes_lock */
    pthread_rwlock_t lock; /* readers share; writers, truncate and fd upgrade are exclusive */
    int fd;                /* guarded by lock */
    int writable;          /* guarded by lock */
    struct codec_bf *bf;   /* guarded by lock */
};

/* An open file handle. */
struct fs_handle {
    struct fs_inode *ino;
    char *rel;                     /* backing path at open time, for log lines */
    char *path;                    /* plaintext path at open time: only for the fsync at
                                      shutdown, never logged */
    struct fs_handle *prev, *next; /* guarded by fs_ctx.handles_lock */
};

struct fs_dirid_slot {
    uint64_t hash;
    char *path;
    uint8_t id[KEYS_ID_BYTES];
};

/* The mount context: the only mutable state shared between FUSE threads. */
struct fs_ctx {
    int root_fd;   /* backing folder, O_PATH-free real directory descriptor */
    char *backing; /* absolute path of the backing folder, for xattr calls */
    int use_syslog;
    int as_root;                  /* running as root: give new files to the caller */
    struct keys_key *name_key;    /* AES-SIV: file names, AAD = parent dir id */
    struct keys_key *content_key; /* parent of per-file keys */
    struct keys_key *link_key;    /* AES-GCM: symlink targets */
    struct keys_key *xname_key;   /* AES-SIV: user xattr names */
    struct keys_key *xval_key;    /* AES-GCM: user xattr values */

    pthread_mutex_t inodes_lock;
    struct fs_inode *inodes[256]; /* guarded by inodes_lock */

    pthread_mutex_t dirid_lock;
    struct fs_dirid_slot dirids[FS_DIRID_SLOTS]; /* guarded by dirid_lock */

    pthread_mutex_t handles_lock;
    struct fs_handle *handles; /* open file handles; guarded by handles_lock */
};

/* A plaintext path translated to the backing folder. */
struct fs_bpath {
    char rel[FS_PATH_CAP];    /* relative to root_fd; "." for the root */
    char parent[FS_PATH_CAP]; /* the parent folder, "." at top level */
    const char *leaf;         /* last component of rel */
    uint8_t parent_id[KEYS_ID_BYTES];
    int is_long; /* leaf is a hashed name; enc holds the sealed name */
    char enc[FS_ENC_CAP];
};

void fs_log(const struct fs_ctx *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* names.c */
int fs_resolve(struct fs_ctx *c, const char *path, struct fs_bpath *bp);
int fs_dirid_get(struct fs_ctx *c, const char *rel, uint8_t id[KEYS_ID_BYTES]);
void fs_dirid_flush(struct fs_ctx *c);
int fs_dirid_create(struct fs_ctx *c, const char *rel_dir);
int fs_name_decrypt(struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *enc,
                    char *out, size_t cap);
/* For a directory entry of the backing folder: the plaintext name, or -ENOENT to skip. */
int fs_entry_name(struct fs_ctx *c, int dir_fd, const uint8_t dirid[KEYS_ID_BYTES],
                  const char *entry, char *out, size_t cap);
/* Write or remove the sidecar file that holds the sealed full name of a hashed long name. */
int fs_long_write(struct fs_ctx *c, const struct fs_bpath *bp);
void fs_long_remove(struct fs_ctx *c, const struct fs_bpath *bp);
int fs_is_reserved(const char *entry);
size_t fs_b64_encode(const uint8_t *in, size_t len, char *out);
ssize_t fs_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* ops.c: plaintext paths of the files open now (malloc'ed array of malloc'ed strings). */
int fs_open_paths(struct fs_ctx *c, char ***out, size_t *count);

/* inode.c */
/* Find or add the inode of `fd` (an open backing file); takes ownership of fd. With `create`,
 * a 0-byte backing file is made an empty block file (see codec_bf_open). */
int fs_inode_get(struct fs_ctx *c, int fd, int writable, int create, struct fs_inode **out);
void fs_inode_put(struct fs_ctx *c, struct fs_inode *ino);

#endif
