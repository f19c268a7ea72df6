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
 * Images: a regular file's backing entry is a block file or, once a closed image has been
 * converted (convert.c), a container (codec/store/container.h). Conversion and its reverse
 * (image.c, before a write) build the new form under a temporary name in the same folder and
 * rename it over the old one: the node then swaps its descriptor (dup2, so the number held by
 * any thread stays valid) and its table key to the new inode. Each node remembers the last name
 * it was seen under (folder descriptor and leaf) for that rename, which is made only after
 * checking, with the namespace lock held exclusively, that the name still is this inode.
 *
 * Lock order (the one place it is written):
 *   fs_node.lock  ->  fs_ctx.ns_lock  ->  fs_ctx.table_lock
 * At most one node lock is held at a time; the table lock is taken alone or inside the others,
 * and never across I/O. Operations that remove, replace or add a name (unlink, rename, link)
 * hold ns_lock shared; a conversion's final check and rename hold it exclusively (two system
 * calls). fs_node.info_lock, fs_ctx.cache_lock, fs_ctx.queue_lock and fs_ctx.sweep_lock are
 * leaves.
 */
#ifndef IMGCRYPTFS_FS_INT_H
#define IMGCRYPTFS_FS_INT_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>

#include "codec/pipeline.h"
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
#define FS_TMP_CAP (sizeof(FS_TMP_PREFIX) + 2 * (size_t)FS_TAG_LEN + 2)
#define FS_NODE_BUCKETS 4096
/* A sealed symlink target or xattr value: nonce || ciphertext || tag. */
#define FS_SEAL_OVERHEAD (KEYS_NONCE_BYTES + KEYS_TAG_BYTES)

/* A folder's descriptor, shared by the nodes of the files last seen in it; freed with the last
 * reference. */
struct fs_dref {
    _Atomic unsigned refs;
    int fd; /* O_PATH descriptor of the folder */
};

/* What a regular file's backing entry is (fs_node.store). */
enum fs_store {
    FS_STORE_UNKNOWN = 0,
    FS_STORE_BLOCKS, /* a block file (or not readable as either) */
    FS_STORE_IMAGE,  /* a container */
};

struct fs_plain; /* image.c: a decoded stored image in the plaintext cache */

/* One backing entry known to the kernel. */
struct fs_node {
    struct fs_node *next; /* hash chain; guarded by fs_ctx.table_lock */
    dev_t dev;            /* backing identity; changed only by fs_node_swap, under table_lock */
    ino_t ino;
    mode_t type; /* S_IFMT of the backing entry, immutable */
    /* O_PATH | O_NOFOLLOW descriptor of the backing entry; the number is immutable, what it
     * names changes only by fs_node_swap (node lock held exclusively) */
    int fd;
    uint64_t nlookup; /* kernel lookup count; guarded by fs_ctx.table_lock */
    /* Guarded by lock (and opens also by table_lock: written holding both). Readers of the
     * contents share it; writes, truncates, opens and releases are exclusive. */
    pthread_rwlock_t lock;
    _Atomic unsigned opens; /* open file handles (read without a lock only as a hint) */
    int data_fd;            /* read or read-write descriptor while opens > 0, else -1 */
    int writable;           /* data_fd is read-write */
    struct codec_bf *bf;    /* block file over data_fd while opens > 0 */
    int image;              /* data_fd is a stored image (no bf); reads come from the cache */
    int have_id;            /* folders: id read from .imgcryptfs.dirid */
    uint8_t dirid[KEYS_ID_BYTES];

    /* Regular files: the last name the file was seen under; guarded by table_lock. */
    struct fs_dref *dir;
    char *leaf;
    struct fs_dref *self; /* folders: the reference their files share; guarded by table_lock */

    /* Conversion state; guarded by lock. */
    uint64_t gen; /* changes with every change of the contents */
    int dirty;    /* changed since the last conversion was tried */
    /* In the conversion queue or being converted: the node lives on (guarded by table_lock). */
    int queued;
    struct fs_node *qnext; /* guarded by fs_ctx.queue_lock */

    /* What the backing entry is, valid while it is still the inode store_ino with the size and
     * mtime seen then (a block file: while it is that inode); guarded by info_lock. */
    pthread_mutex_t info_lock;
    int store; /* enum fs_store */
    ino_t store_ino;
    off_t store_bsize;
    struct timespec store_mtime;
    struct codec_ct_info img; /* a container's head: plaintext size, model ids */

    struct fs_plain *plain; /* decoded stored image; guarded by fs_ctx.cache_lock */
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

    /* Images (convert.c, image.c). */
    struct codec_pipeline *pl;  /* NULL: images=off and no stored image can be read */
    int convert;                /* images=network: closed images are converted */
    int coder;                  /* enum codec_pipeline_coder */
    unsigned workers;           /* conversion threads */
    unsigned decode_threads;    /* pixel decoder threads for a read */
    pthread_rwlock_t ns_lock;   /* see the lock order above */
    pthread_mutex_t queue_lock; /* the conversion queue */
    pthread_cond_t queue_cond;
    struct fs_node *queue_head, *queue_tail; /* guarded by queue_lock */
    unsigned queue_len, converting;          /* guarded by queue_lock */
    pthread_cond_t mem_cond;                 /* the memory budget: bytes freed */
    uint64_t mem_cap, mem_used;              /* -o convert_mb; guarded by queue_lock */
    pthread_t *worker;
    unsigned have_workers;
    pthread_mutex_t cache_lock;           /* the plaintext cache (image.c) */
    struct fs_plain *lru_head, *lru_tail; /* guarded by cache_lock; head: most recent */
    size_t cache_bytes, cache_cap;        /* guarded by cache_lock; cap: -o cache_mb */

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

/* The description of errno value err, for messages. The daemon logs from several threads and
 * strerror may write a shared buffer; strerrordesc_np (glibc 2.32) returns a constant string. */
static inline const char *fs_strerror(int err)
{
    const char *s = strerrordesc_np(err);
    return s ? s : "Unknown error";
}

/* fs.c */
/* Fill a zeroed context for the backing folder cfg->backing: its locks, the image options and
 * pipeline, the subkeys derived from `ring`, the root folder opened and its id checked (a store
 * never used gets one). What the mount and offline conversion (offline.c) share. 0 or -errno
 * with the reason in why; release with fs_ctx_release whichever way it went. */
int fs_ctx_init(struct fs_ctx *c, const struct fs_config *cfg, const struct keys_ring *ring,
                char *why, size_t whylen);
void fs_ctx_release(struct fs_ctx *c);
void fs_log(const struct fs_ctx *c, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "/proc/self/fd/N" for a descriptor: the path that names its inode itself. */
void fs_fd_path(int fd, char out[32]);
/* The backing path of a descriptor's entry, for log lines (via /proc), or "descriptor N". */
void fs_where(int fd, char *out, size_t cap);
/* openat(dir_fd, name, O_RDONLY) of one of the daemon's own files (a folder id, a sidecar),
 * which only ever is a regular file: a symlink is not followed (ELOOP), and anything else (a
 * FIFO planted to block the reader, a device) is not opened (EINVAL). Its fstat in *st. A
 * descriptor, or -1 with errno set. */
int fs_open_regular(int dir_fd, const char *name, struct stat *st);

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
/* What a new handle does with a file's contents (fs_node_open_data). */
enum fs_data_use {
    FS_DATA_READ = 0,  /* reads */
    FS_DATA_WRITE = 1, /* writes now (truncate, a new file): a stored image becomes a block file */
    FS_DATA_WRITE_LATER = 2, /* may write: read-write, but a stored image stays one until its
                              * first write (fs_node_to_write) */
};
/* Open the contents of a regular-file node for a new handle (write lock held by the caller). */
int fs_node_open_data(struct fs_ctx *c, struct fs_node *n, enum fs_data_use use);
/* Before a handle changes the contents (write lock held): a stored image becomes a block file,
 * its open handles included. 0 or -errno. */
int fs_node_to_write(struct fs_ctx *c, struct fs_node *n);
/* The same for a file just created: adopt its read-write descriptor and block file (both
 * owned by the node afterwards, or released when it already has its own). */
void fs_node_adopt_data(struct fs_ctx *c, struct fs_node *n, int fd, struct codec_bf *bf);
/* A handle went away (write lock held by the caller). Returns 1 when the node should be
 * freed by the caller after unlocking. */
int fs_node_close_data(struct fs_ctx *c, struct fs_node *n);
void fs_node_free(struct fs_ctx *c, struct fs_node *n);
void fs_nodes_release(struct fs_ctx *c);

/* Remember that regular-file node n was seen as `leaf` in folder node dir (for conversion). */
void fs_node_name(struct fs_ctx *c, struct fs_node *n, struct fs_node *dir, const char *leaf);
/* The node of a backing (dev, ino) if the kernel knows it, with one lookup counted for the
 * caller to give back (fs_node_forget), or NULL. */
struct fs_node *fs_node_find(struct fs_ctx *c, dev_t dev, ino_t ino);
/* A descriptor of the node's contents (through /proc: the node's own inode), or -errno. */
int fs_node_reopen(const struct fs_node *n, int flags);
/* Put the temporary file `tmp` (open as tmp_fd) of the node's last known folder in place of the
 * node's backing entry: with ns_lock held exclusively, check that the node's name still is
 * its inode with one link, rename, then make the node's descriptor and key the new inode.
 * Node lock held exclusively by the caller. 0, -ESTALE (the name is another's now: nothing
 * done), -EMLINK (more links) or -errno. On success *dir_fd is the folder opened for the
 * caller to fsync and close (or -1). */
int fs_node_swap(struct fs_ctx *c, struct fs_node *n, const char *tmp, int tmp_fd, int *dir_fd);
/* Whether the node's file has no name left (unlinked while open). */
int fs_node_unnamed(const struct fs_node *n);
/* The same for a node whose file has no name left: it takes the temporary file `tmp` of
 * folder dfd (any folder: the node's own may be gone too) as it is, its name removed, to live
 * on nameless through the node's descriptors. 0, -ESTALE (the node has a name) or -errno. */
int fs_node_adopt_unnamed(struct fs_ctx *c, struct fs_node *n, int dfd, const char *tmp,
                          int tmp_fd);
/* Its last known folder (a reference, fs_dref_put) and leaf (a copy), or -ESTALE. */
int fs_node_where(struct fs_ctx *c, struct fs_node *n, struct fs_dref **dir, char **leaf);
void fs_dref_put(struct fs_dref *d);

/* ops.c: shared by the operations */
struct fs_ctx *fs_req_ctx(fuse_req_t req);
/* The one place where internal codes become what the caller sees: -EBADMSG is logged with the
 * backing path of fd (and the block, unless UINT64_MAX) and becomes -EIO. */
int fs_err(const struct fs_ctx *c, int rc, int fd, uint64_t block, const char *what);
/* Attributes of a node as the mount shows them. */
int fs_node_stat(struct fs_ctx *c, struct fs_node *n, struct stat *st);
/* Look up backing entry `leaf` in folder `parent` and fill an entry reply (one lookup
 * counted). Refuses, with a log line, a symlink whose target imgcryptfs did not seal. */
int fs_lookup_leaf(struct fs_ctx *c, struct fs_node *parent, const char *leaf,
                   struct fuse_entry_param *e);
/* Give a new entry (O_PATH or open descriptor) to the caller when the daemon runs as root;
 * the group stays the folder's when the folder is set-group-ID. 0 or -errno. */
int fs_own(struct fs_ctx *c, fuse_req_t req, const struct fs_node *parent, int fd);
/* Rename a to b failing with -EEXIST if b exists, also where the backing filesystem has no
 * RENAME_NOREPLACE. */
int fs_rename_noreplace(int afd, const char *a, int bfd, const char *b, int is_dir);
/* Put temporary entry `tmp` in folder dir_fd at `leaf`, failing with -EEXIST if it exists. */
int fs_place(int dir_fd, const char *tmp, const char *leaf, int is_dir);
/* Seal `name` for the folder node `parent`. */
int fs_seal_in(struct fs_ctx *c, struct fs_node *parent, const char *name, struct fs_name *nm);

/* link.c: symlink targets. */
/* The backing target that seals `target`: base64url of the sealed bytes, or for a target too
 * long for that, a marker naming the sidecar written (fsynced) in the root folder now. 0,
 * -ENAMETOOLONG (PATH_MAX or more bytes) or -errno. */
int fs_link_seal(const struct fs_ctx *c, const char *target, char out[PATH_MAX]);
/* The backing symlink holding `stored` (from fs_link_seal) was not made: its sidecar goes. */
void fs_link_discard(const struct fs_ctx *c, const char *stored);
/* The target of backing symlink fd, malloc'ed and NUL-terminated (wipe and free), *len bytes.
 * -EBADMSG when the backing target is not one imgcryptfs sealed (not logged), -EIO when a long
 * target's sidecar is missing or does not open (logged), or -errno. */
int fs_link_open(const struct fs_ctx *c, int fd, char **out, size_t *len);
/* The size lstat shows for backing symlink fd (link: its lstat). 0, or -EIO (logged) when a
 * long target's sidecar is missing or damaged. */
int fs_link_size(const struct fs_ctx *c, int fd, const struct stat *link, off_t *size);
/* Before a name goes (unlink, or replaced by a rename): for a long link (st: its lstat), a
 * descriptor holding its inode, else -1. fs_link_release afterwards, whatever happened: it
 * removes the sidecar when the inode has no name left, and closes fd. */
int fs_link_hold(int dir_fd, const char *leaf, const struct stat *st);
void fs_link_release(const struct fs_ctx *c, int fd);

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
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
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

/* image.c: stored images in the mount. */
/* Fill in what the mount shows of a backing regular file's size (st from fstat of n->fd).
 * 0, or -errno when the file's head cannot be read. */
int fs_image_fix_size(struct fs_ctx *c, struct fs_node *n, struct stat *st);
/* The node's backing file is known to be a block file / a container with this head. */
void fs_image_set_store(struct fs_node *n, int store, const struct stat *st,
                        const struct codec_ct_info *img);
/* Read from a stored image's plaintext (decoded once into the cache); node lock held shared,
 * possibly dropped and retaken. Bytes read or -errno. */
ssize_t fs_image_read(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size, off_t off);
/* Turn the stored image of node n back into a block file (empty when `empty`), node lock held
 * exclusively; with handles open, the node then serves them from the block file. 0 or -errno. */
int fs_image_to_blocks(struct fs_ctx *c, struct fs_node *n, int empty);
/* Is the node's backing file a stored image (sniffed, then remembered)? */
int fs_image_is_stored(struct fs_ctx *c, struct fs_node *n);
/* A stored image opened afresh (st: its fstat): cached plaintext of another version goes. */
void fs_cache_check(struct fs_ctx *c, struct fs_node *n, const struct stat *st);
/* Drop the node's cached plaintext (wiped). */
void fs_cache_drop(struct fs_ctx *c, struct fs_node *n);
void fs_cache_release(struct fs_ctx *c);
/* The read-only xattrs (user.imgcryptfs.*): 1 when `name` is one (reply sent), else 0. */
int fs_image_getxattr(fuse_req_t req, struct fs_node *n, const char *name, size_t size);
int fs_image_xattr_name(const char *name);

/* convert.c: the conversion workers. */
int fs_convert_start(struct fs_ctx *c);
/* Cancel what is queued and wait for the running conversions (a cancelled file stays a block
 * file). */
void fs_convert_stop(struct fs_ctx *c);
/* A handle of node n went away and it has none left: queue it if it was changed (node lock
 * held exclusively). */
void fs_convert_closed(struct fs_ctx *c, struct fs_node *n);
/* Files queued or being converted. */
unsigned fs_convert_backlog(struct fs_ctx *c);
/* Copy owner, mode, times and xattrs of the open file `from` to the open file `to`. */
int fs_copy_meta(int from, int to);
/* Outcomes that are not failures: the file stays a block file without a log line. */
#define FS_SKIP_NOT_IMAGE 1
#define FS_SKIP_NOT_SMALLER 2
/* The plaintext of the block file open as fd (*buf, *len; wipe and free), if its first bytes
 * sniff as an image; FS_SKIP_NOT_IMAGE if they do not. */
int fs_convert_read(struct fs_ctx *c, int fd, uint8_t **buf, size_t *len);
/* Write the container ct under a fresh temporary name (tmp) in folder dfd with the owner,
 * mode, times and xattrs of the open file fd, and fsync it; *tfd stays open for the caller,
 * which removes tmp on failure. 0 or -errno. */
int fs_convert_write(struct fs_ctx *c, int dfd, int fd, const uint8_t *ct, size_t ct_len,
                     char tmp[FS_TMP_CAP], int *tfd);
/* Encode the block file open as fd (st: its fstat) by the conversion rule: within the memory
 * budget (waiting for its share), verified, and kept only when smaller. 0 and the container
 * (*ct, caller frees; *ct_len), FS_SKIP_NOT_IMAGE or FS_SKIP_NOT_SMALLER, or -errno (-EFBIG:
 * past the budget; -EILSEQ: the container did not decode to the file, a codec bug). */
int fs_convert_encode(struct fs_ctx *c, int fd, const struct stat *st, uint8_t **ct,
                      size_t *ct_len);
/* The reason a conversion failed, for a log line. */
const char *fs_convert_reason(int rc);

/* sweep.c: leftovers of an interrupted mount. */
/* Remove temporary entries that no live operation of this mount made; returns the count. */
unsigned long fs_sweep(struct fs_ctx *c);

#endif
