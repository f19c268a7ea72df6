/* SPDX-License-Identifier: MIT */
/*
 * Internals of fs/: the mount context, the node table and name translation.
 *
 * The filesystem speaks libfuse's low-level API. Every backing entry the kernel knows is one
 * node, found by the backing (dev, ino), so all hard links of a file are one node with one
 * lock, one block-file state and one set of attributes. A node holds an O_PATH descriptor of
 * its backing entry, opened one component at a time with O_NOFOLLOW from its parent's
 * descriptor: no path is ever built, so any depth works, and no symlink planted in the backing
 * folder is ever followed. Operations that need a path use /proc/self/fd/N, which names the
 * node's own inode, not a lookup through the backing folder.
 *
 * Lock order (the one place it is written):
 *   fs_node.lock  ->  fs_ctx.table_lock
 * At most one node lock is held at a time; the table lock is taken alone or inside one node
 * lock, and never across I/O. fs_ctx.sweep_lock is a leaf.
 */
#ifndef IMGCRYPTFS_FS_INT_H
#define IMGCRYPTFS_FS_INT_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>

#include "codec/store/blockfile.h"
#include "fs/fs.h"
#include "keys/keys.h"

/* Longest base64url name kept as is; longer ones are stored under a hashed name. */
#define FS_SHORT_MAX NAME_MAX
/* Sealed name: 16-byte SIV tag + name, base64url without padding. */
#define FS_ENC_CAP ((((NAME_MAX + 16) + 2) / 3) * 4 + 1)
/* Backing leaf of a hashed long name: prefix + base64url(SHA-256). */
#define FS_LEAF_CAP (sizeof(FS_LONG_PREFIX) + 44)
/* Temporary entries: FS_TMP_PREFIX + mount tag (11) + '.' + random (11). */
#define FS_TAG_LEN 11
#define FS_TMP_CAP (sizeof(FS_TMP_PREFIX) + 2 * FS_TAG_LEN + 2)
#define FS_NODE_BUCKETS 4096
/* A sealed symlink target or xattr value: nonce || ciphertext || tag. */
#define FS_SEAL_OVERHEAD (KEYS_NONCE_BYTES + KEYS_TAG_BYTES)

/* One backing entry known to the kernel. */
struct fs_node {
    struct fs_node *next; /* hash chain; guarded by fs_ctx.table_lock */
    dev_t dev;            /* backing identity, immutable */
    ino_t ino;
    mode_t type;      /* S_IFMT of the backing entry, immutable */
    int fd;           /* O_PATH | O_NOFOLLOW descriptor of the backing entry, immutable */
    uint64_t nlookup; /* kernel lookup count; guarded by fs_ctx.table_lock */
    /* Guarded by lock (and opens also by table_lock: written holding both). Readers of the
     * contents share it; writes, truncates, opens and releases are exclusive. */
    pthread_rwlock_t lock;
    unsigned opens;      /* open file handles (read without a lock only as a hint) */
    int data_fd;         /* read or read-write descriptor while opens > 0, else -1 */
    int writable;        /* data_fd is read-write */
    struct codec_bf *bf; /* block file over data_fd while opens > 0 */
    int have_id;         /* folders: id read from .imgcryptfs.dirid */
    uint8_t dirid[KEYS_ID_BYTES];
};

/* An open file handle (fuse_file_info.fh). */
struct fs_handle {
    struct fs_node *node;
    int writable; /* opened for writing */
};

/* The mount context: the only mutable state shared between FUSE threads. */
struct fs_ctx {
    struct fs_node root; /* the backing folder; never freed by forget */
    int use_syslog;
    int as_root;                  /* running as root: give new entries to the caller */
    char tag[FS_TAG_LEN + 1];     /* this mount's tag in temporary names */
    struct timespec started;      /* when this mount began */
    struct keys_key *name_key;    /* AES-SIV: file names, AAD = parent dir id */
    struct keys_key *content_key; /* parent of per-file keys */
    struct keys_key *link_key;    /* AES-GCM: symlink targets */
    struct keys_key *xname_key;   /* AES-SIV: user xattr names */
    struct keys_key *xval_key;    /* AES-GCM: user xattr values */
    double timeout;               /* entry and attribute timeout, seconds */
    _Atomic int stopping;         /* the mount is going: the sweep gives up */

    pthread_mutex_t table_lock;
    struct fs_node *table[FS_NODE_BUCKETS]; /* guarded by table_lock */
};

/* A plaintext name sealed for one folder: the backing leaf, and for a hashed long name the
 * sealed name that its sidecar holds. */
struct fs_name {
    char leaf[FS_ENC_CAP];
    int is_long;
    char enc[FS_ENC_CAP];
};

void fs_log(const struct fs_ctx *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "/proc/self/fd/N" for a descriptor: the path that names its inode itself. */
void fs_fd_path(int fd, char out[32]);
/* The backing path of a descriptor's entry, for log lines (via /proc), or "descriptor N". */
void fs_where(int fd, char *out, size_t cap);

/* names.c */
/* Write all of buf; a short write is retried, so its cause (ENOSPC, EIO) is what is returned.
 * 0 or -errno. */
int fs_write_all(int fd, const void *buf, size_t len);
size_t fs_b64_encode(const uint8_t *in, size_t len, char *out);
ssize_t fs_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
int fs_is_reserved(const char *entry);
/* Seal a plaintext name for the folder with id `dirid`. -ENAMETOOLONG, -EINVAL or 0. */
int fs_name_seal(const struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *name,
                 struct fs_name *out);
int fs_name_decrypt(const struct fs_ctx *c, const uint8_t dirid[KEYS_ID_BYTES], const char *enc,
                    char *out, size_t cap);
/* For a directory entry of the backing folder: the plaintext name, or -ENOENT to skip. */
int fs_entry_name(const struct fs_ctx *c, int dir_fd, const uint8_t dirid[KEYS_ID_BYTES],
                  const char *entry, char *out, size_t cap);
/* Write or remove the sidecar holding the sealed full name of a hashed long name. */
int fs_long_write(int dir_fd, const struct fs_name *nm);
void fs_long_remove(int dir_fd, const struct fs_name *nm);
/* Read the folder id of the folder `dir_fd`; -EIO (logged) when missing or damaged. */
int fs_dirid_read(const struct fs_ctx *c, int dir_fd, uint8_t id[KEYS_ID_BYTES]);
/* Give the folder `dir_fd` a fresh id (fsynced); 0 or -errno. */
int fs_dirid_create(int dir_fd, uint8_t id[KEYS_ID_BYTES]);
/* A fresh temporary name in this mount's namespace. */
int fs_tmp_name(const struct fs_ctx *c, char out[FS_TMP_CAP]);
/* Is `entry` a temporary name left by another (or an earlier) mount? */
int fs_tmp_foreign(const struct fs_ctx *c, const char *entry);
/* Remove a temporary entry (a file, or a folder holding only files) in dir_fd. */
int fs_tmp_remove(int dir_fd, const char *entry);

/* node.c */
struct fs_node *fs_node_of(struct fs_ctx *c, fuse_ino_t ino);
/* Find or add the node of `fd` (an O_PATH descriptor; ownership passes to the table) and count
 * one lookup. */
int fs_node_get(struct fs_ctx *c, int fd, const struct stat *st, struct fs_node **out);
/* The kernel forgets n lookups. */
void fs_node_forget(struct fs_ctx *c, struct fs_node *n, uint64_t nlookup);
/* Folder id of a folder node (read once, then kept: a folder keeps its id for life). */
int fs_node_dirid(struct fs_ctx *c, struct fs_node *n, uint8_t id[KEYS_ID_BYTES]);
/* Open the contents of a regular-file node for a new handle (write lock held by the caller). */
int fs_node_open_data(struct fs_ctx *c, struct fs_node *n, int writable);
/* The same for a file just created: adopt its read-write descriptor and block file (both
 * owned by the node afterwards, or released when it already has its own). */
void fs_node_adopt_data(struct fs_ctx *c, struct fs_node *n, int fd, struct codec_bf *bf);
/* A handle went away (write lock held by the caller). Returns 1 when the node should be
 * freed by the caller after unlocking. */
int fs_node_close_data(struct fs_ctx *c, struct fs_node *n);
void fs_node_free(struct fs_node *n);
void fs_nodes_release(struct fs_ctx *c);

/* ops.c: shared by the operations */
struct fs_ctx *fs_req_ctx(fuse_req_t req);
/* The one place where internal codes become what the caller sees: -EBADMSG is logged with the
 * backing path of fd (and the block, unless UINT64_MAX) and becomes -EIO. */
int fs_err(const struct fs_ctx *c, int rc, int fd, uint64_t block, const char *what);
/* Attributes of a node as the mount shows them. */
int fs_node_stat(struct fs_node *n, struct stat *st);
/* Look up backing entry `leaf` in folder `parent` and fill an entry reply (one lookup
 * counted). Refuses, with a log line, a symlink whose target imgcryptfs did not seal. */
int fs_lookup_leaf(struct fs_ctx *c, struct fs_node *parent, const char *leaf,
                   struct fuse_entry_param *e);
/* Give a new entry (O_PATH or open descriptor) to the caller when the daemon runs as root;
 * the group stays the folder's when the folder is set-group-ID. 0 or -errno. */
int fs_own(struct fs_ctx *c, fuse_req_t req, const struct fs_node *parent, int fd);
/* Put temporary entry `tmp` in folder dir_fd at `leaf`, failing with -EEXIST if it exists. */
int fs_place(int dir_fd, const char *tmp, const char *leaf, int is_dir);
/* Seal `name` for the folder node `parent`. */
int fs_seal_in(struct fs_ctx *c, struct fs_node *parent, const char *name, struct fs_name *nm);

/* The operations, by file. */
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags);
void fs_op_readlink(fuse_req_t req, fuse_ino_t ino);
/* file.c */
/* A new regular file `name` in `parent`: made under a temporary name with its header and
 * owner, then renamed into place. On success e describes it (one lookup counted) and, when
 * fd_out is given, *fd_out and *bf_out are its read-write descriptor and block file. */
int fs_new_file(struct fs_ctx *c, fuse_req_t req, struct fs_node *parent, const char *name,
                mode_t mode, struct fuse_entry_param *e, int *fd_out, struct codec_bf **bf_out);
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                     struct fuse_file_info *fi);
/* Set the plaintext size of a regular-file node (its open block file, or one opened for this). */
int fs_truncate(struct fs_ctx *c, struct fs_node *n, off_t size);
/* dir.c */
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* xattr.c */
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

extern const struct fuse_lowlevel_ops fs_ll_ops;

/* sweep.c: leftovers of an interrupted mount. */
/* Remove temporary entries that no live operation of this mount made; returns the count. */
unsigned long fs_sweep(struct fs_ctx *c);

#endif
