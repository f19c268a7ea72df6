/* SPDX-License-Identifier: MIT */
/*
 * fs: the FUSE filesystem (libfuse's low-level API). A mount serves the plaintext view of a
 * backing folder whose names, contents, symlink targets and user xattrs are sealed with keys
 * from an unlocked keyring. Only this module speaks FUSE; the daemon in mount-tools hands it a
 * keyring and options. It also converts a store's images offline (fs_offline_convert, for
 * imgcrypt convert).
 */
#ifndef IMGCRYPTFS_FS_H
#define IMGCRYPTFS_FS_H

#include <stddef.h>

#include "codec/pipeline.h"
#include "keys/keys.h"

/* Reserved names in the backing folder; none of them ever appears in the mount. */
#define FS_DIRID_NAME ".imgcryptfs.dirid"
#define FS_LONG_PREFIX ".imgcryptfs.long."
#define FS_LONG_SUFFIX ".name"
#define FS_TMP_PREFIX ".imgcryptfs.tmp."
/* In the root folder: the sealed target of a symlink too long to be held by its backing one. */
#define FS_LINK_PREFIX ".imgcryptfs.link."

struct fs_config {
    const char *backing;    /* backing folder */
    const char *mountpoint; /* where to mount */
    const char *fuse_opts;  /* comma-separated FUSE mount options (allow_other, ro, ...) or NULL */
    int debug;              /* FUSE debug output (-d) */
    int use_syslog;         /* log to syslog (daemonised) rather than stderr */
    unsigned max_threads;   /* FUSE worker threads, 0 for the default */
    int images_off;         /* -o images=off: closed images stay block files */
    int coder;              /* enum codec_pipeline_coder for conversions; 0: the default */
    unsigned workers;       /* conversion threads; 0: one per core */
    long cache_mb;          /* plaintext cache of stored images, MiB; < 0: the default */
    unsigned long convert_mb; /* memory budget of the conversion workers, MiB; 0: the default
                                 (CODEC_PIPELINE_BUDGET_DEFAULT) */
};

/* Defaults of the image options. */
#define FS_CODER_DEFAULT CODEC_PIPELINE_CODER_NEURAL
#define FS_CACHE_MB_DEFAULT 256

/* A live mount. Opaque. */
struct fs_mount;

/*
 * Prepare the filesystem over cfg->backing with keys derived from `ring` and mount it at
 * cfg->mountpoint. The ring must outlive the mount (the image pipeline reads its models from
 * it): close it after fs_mount_free. When this returns 0 the mount is live. A
 * backing folder whose root folder id is missing, damaged or not this keyring's is refused
 * with -EBADMSG and the reason in why.
 * Returns 0, -ENOENT/-ENOTDIR for a missing backing folder or mount point, -EBUSY when the
 * mount point is already a mount, -EIO when FUSE refuses (message in why), or -errno.
 */
int fs_mount_new(const struct fs_config *cfg, const struct keys_ring *ring, struct fs_mount **out,
                 char *why, size_t whylen);

/* Serve requests until the filesystem is unmounted or SIGTERM/SIGINT/SIGHUP arrives.
 * Returns 0 or a negative errno. */
int fs_mount_run(struct fs_mount *m);

/* Unmount if still mounted, release everything and wipe the keys. Accepts NULL. */
void fs_mount_free(struct fs_mount *m);

/* Counts of an offline conversion (fs_offline_convert). */
struct fs_offline_stats {
    unsigned long long files;       /* regular files found so far */
    unsigned long long converted;   /* block files now stored as images */
    unsigned long long images;      /* stored as images already */
    unsigned long long not_images;  /* not images: they stay block files */
    unsigned long long not_smaller; /* images whose container would not be smaller: likewise */
    unsigned long long linked;      /* files with more than one link: likewise */
    unsigned long long failed;      /* each one reported to the progress callback */
    unsigned long long removed;     /* leftover temporary entries removed first */
    unsigned long long bytes_before, bytes_after; /* backing bytes of the converted files */
    int walked;                                   /* every file was found: files is the total */
};

struct fs_offline_opts {
    int coder;                /* enum codec_pipeline_coder; 0: FS_CODER_DEFAULT */
    unsigned threads;         /* worker threads; 0: one per core */
    unsigned long convert_mb; /* their memory budget, MiB, as the mount's; 0: the default */
    /* When it becomes non-zero (set by a signal thread, say), no further file is started or
     * renamed. NULL: never. */
    const _Atomic int *stop;
    /* Called after each file with the counts so far; for a failure also with the file's or
     * folder's backing path and the reason (never a plaintext name). One call at a time, from
     * the worker threads. May be NULL. */
    void (*progress)(void *arg, const struct fs_offline_stats *st, const char *where,
                     const char *reason);
    void *arg;
};

/*
 * Offline conversion (imgcrypt convert): store as images, with the mount's rule (verify, write a
 * temporary file with the original's owner, mode, times and xattrs, fsync, rename over the block
 * file, fsync the folder), the block files of the store at `backing` that hold images, with one
 * link, whose container is smaller. paths[0..npaths) are plaintext paths from the store's root
 * (a folder: everything under it); none: the whole store. Leftover temporary entries of an
 * interrupted mount or run are removed first. The store must not be mounted: this is checked
 * before and during the run, and a second run on the same store is refused. Not for the
 * daemon: it starts opts->threads threads and returns when they end; the ring must be unlocked.
 * Returns 0 when every file was looked at (the failures are counted in *st); -EINTR when
 * opts->stop ended it (a file not yet renamed stays a block file; run again to go on); -EBUSY
 * (the store is mounted, or another run holds it), -EBADMSG (the keyring is not this store's,
 * or its root id is damaged), -ENOENT/-ENOTDIR/-EINVAL (a PATH names nothing to convert), or
 * -errno, with the reason in why (backing paths only). *st holds the counts in every case.
 */
int fs_offline_convert(const char *backing, const struct keys_ring *ring, const char *const *paths,
                       size_t npaths, const struct fs_offline_opts *opts,
                       struct fs_offline_stats *st, char *why, size_t whylen);

#endif
