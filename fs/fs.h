/* SPDX-License-Identifier: MIT */
/*
 * fs: the FUSE filesystem (libfuse's low-level API). A mount serves the plaintext view of a
 * backing folder whose names, contents, symlink targets and user xattrs are sealed with keys
 * from an unlocked keyring. Only this module speaks FUSE; the daemon in mount-tools hands it a
 * keyring and options.
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

#endif
