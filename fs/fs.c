// SPDX-License-Identifier: MIT
/*
 * Mount setup and teardown: open the backing folder, derive the purpose keys from the keyring,
 * build the FUSE session, mount, serve, and wipe everything on the way out. The keyring's
 * master key itself is not kept: only the derived subkeys live for the mount's lifetime.
 */
#define FUSE_USE_VERSION 312
#include <fuse3/fuse.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs_int.h"

extern const struct fuse_operations fs_operations;

struct fs_mount {
    struct fs_ctx ctx;
    struct fuse *fuse;
    char *mountpoint;
    int mounted;
    unsigned max_threads;
    sigset_t sigs; /* SIGTERM, SIGINT, SIGHUP, and SIGUSR2 to stop the thread */
    pthread_t sig_thread;
    int have_sig_thread;
    _Atomic int signalled;    /* a shutdown signal ended the mount */
    pthread_mutex_t sig_lock; /* orders the signal thread's use of fuse against its teardown */
    int closing;              /* fs_mount_free has begun; guarded by sig_lock */
};

/*
 * Shutdown on SIGTERM, SIGINT or SIGHUP. The signals are blocked in every thread and taken here
 * with sigwait, so the work is done while the FUSE workers still serve: first syncfs on the
 * mount and fsync of each open file, which make the kernel write back the pages it still caches
 * for open files (writeback caching) and wait until they were served, then the end of the
 * loop, after which fs_mount_free unmounts. A plain signal handler could only stop the loop,
 * and dirty pages of files still open would be lost.
 */
static void *signal_thread(void *arg)
{
    struct fs_mount *m = arg;
    int sig = 0;
    if (sigwait(&m->sigs, &sig) != 0 || sig == SIGUSR2)
        return NULL;
    pthread_mutex_lock(&m->sig_lock);
    int closing = m->closing;
    pthread_mutex_unlock(&m->sig_lock);
    if (closing)
        return NULL;
    m->signalled = 1;
    fs_log(&m->ctx, LOG_INFO, "signal %d: writing back cached data and unmounting", sig);
    int fd = open(m->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (syncfs(fd) != 0)
            fs_log(&m->ctx, LOG_ERR, "%s: syncfs before unmount failed: %m", m->mountpoint);
        close(fd);
    }
    /* syncfs starts the write-back of every cached page, but FUSE may count a page written
     * once it is queued; fsync of each open file waits until its writes were served. */
    char **paths = NULL;
    size_t n = 0;
    if (fs_open_paths(&m->ctx, &paths, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            char *full = NULL;
            if (asprintf(&full, "%s%s", m->mountpoint, paths[i]) >= 0) {
                int ffd = open(full, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
                if (ffd >= 0) {
                    (void)fsync(ffd);
                    close(ffd);
                }
                free(full);
            }
            free(paths[i]);
        }
        free(paths);
    }
    /* Ask the loop to end, then send it one request (a lookup of a name that cannot exist, never
     * answered from the kernel's caches) so that a worker wakes up, answers it and sees the
     * request to end; the loop then stops the other workers and returns, and the unmount
     * happens in fs_mount_free. */
    pthread_mutex_lock(&m->sig_lock);
    if (!m->closing)
        fuse_exit(m->fuse);
    pthread_mutex_unlock(&m->sig_lock);
    /* If the loop has already ended, this lookup waits until fs_mount_free closes the
     * connection, which answers it with an error. */
    char *wake = NULL;
    struct stat st;
    if (asprintf(&wake, "%s/.imgcryptfs.wake", m->mountpoint) >= 0) {
        (void)lstat(wake, &st);
        free(wake);
    }
    return NULL;
}

void fs_log(const struct fs_ctx *c, int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->use_syslog) {
        vsyslog(prio, fmt, ap);
    } else {
        fputs("imgcryptfs: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

static void ctx_release(struct fs_ctx *c)
{
    keys_key_free(c->name_key);
    keys_key_free(c->content_key);
    keys_key_free(c->link_key);
    keys_key_free(c->xname_key);
    keys_key_free(c->xval_key);
    for (size_t i = 0; i < FS_DIRID_SLOTS; i++)
        free(c->dirids[i].path);
    if (c->root_fd >= 0)
        close(c->root_fd);
    free(c->backing);
    pthread_mutex_destroy(&c->inodes_lock);
    pthread_mutex_destroy(&c->dirid_lock);
    pthread_mutex_destroy(&c->handles_lock);
}

static int ctx_init(struct fs_ctx *c, const struct fs_config *cfg, const struct keys_ring *ring,
                    char *why, size_t whylen)
{
    int rc;
    c->root_fd = -1;
    pthread_mutex_init(&c->inodes_lock, NULL);
    pthread_mutex_init(&c->dirid_lock, NULL);
    pthread_mutex_init(&c->handles_lock, NULL);
    c->use_syslog = cfg->use_syslog;
    c->as_root = geteuid() == 0;
    c->backing = realpath(cfg->backing, NULL);
    if (!c->backing) {
        rc = -errno;
        snprintf(why, whylen, "%s: %s", cfg->backing, strerror(-rc));
        return rc;
    }
    c->root_fd = open(c->backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->root_fd < 0) {
        rc = -errno;
        snprintf(why, whylen, "%s: %s", cfg->backing, strerror(-rc));
        return rc;
    }
    if ((rc = keys_ring_subkey(ring, "names", KEYS_KEY_SIV, &c->name_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &c->content_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "symlinks", KEYS_KEY_GCM, &c->link_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "xattr names", KEYS_KEY_SIV, &c->xname_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "xattr values", KEYS_KEY_GCM, &c->xval_key)) != 0) {
        snprintf(why, whylen, "cannot derive keys: %s", strerror(-rc));
        return rc;
    }
    /* The root folder gets its id on first mount. */
    if (faccessat(c->root_fd, FS_DIRID_NAME, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT || (rc = fs_dirid_create(c, ".")) != 0) {
            rc = rc ? rc : -errno;
            snprintf(why, whylen, "%s: cannot create %s: %s", cfg->backing, FS_DIRID_NAME,
                     strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/*
 * Let the kernel read ahead 1 MiB on this mount instead of its default 128 KiB, so that
 * sequential reads arrive as large requests that several worker threads open in parallel.
 * The mount's device number comes from /proc/self/mountinfo: asking the mount itself (stat)
 * would send a request to this very process before it serves any. Best effort: only root may
 * write the setting, and a failure changes nothing but speed.
 */
static void raise_readahead(const char *mountpoint)
{
    char line[4096], path[128];
    unsigned major = 0, minor = 0;
    int found = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        char mnt[PATH_MAX];
        unsigned a, b;
        /* id parent major:minor root mountpoint ... (later lines win: the newest mount) */
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mnt) == 3 &&
            strcmp(mnt, mountpoint) == 0) {
            major = a;
            minor = b;
            found = 1;
        }
    }
    fclose(f);
    if (!found || snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major,
                           minor) >= (int)sizeof(path))
        return;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (write(fd, "1024", 4) != 4) { /* best effort, see above */
    }
    close(fd);
}

int fs_mount_new(const struct fs_config *cfg, const struct keys_ring *ring, struct fs_mount **out,
                 char *why, size_t whylen)
{
    struct fs_mount *m = calloc(1, sizeof(*m));
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    char *opts = NULL;
    int rc;
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->sig_lock, NULL);
    rc = ctx_init(&m->ctx, cfg, ring, why, whylen);
    if (rc != 0)
        goto fail;
    struct stat st;
    if (stat(cfg->mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = errno ? -errno : -ENOTDIR;
        snprintf(why, whylen, "%s: mount point %s", cfg->mountpoint,
                 rc == -ENOTDIR ? "is not a folder" : "does not exist");
        goto fail;
    }
    /* fsname shows the backing folder in /proc/mounts, as mount(8) users expect. */
    if (asprintf(&opts, "fsname=%s,subtype=imgcryptfs%s%s", m->ctx.backing,
                 cfg->fuse_opts && *cfg->fuse_opts ? "," : "",
                 cfg->fuse_opts ? cfg->fuse_opts : "") < 0) {
        opts = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    if (fuse_opt_add_arg(&args, "imgcryptfs") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
        fuse_opt_add_arg(&args, opts) != 0 || (cfg->debug && fuse_opt_add_arg(&args, "-d") != 0)) {
        rc = -ENOMEM;
        goto fail;
    }
    m->fuse = fuse_new(&args, &fs_operations, sizeof(fs_operations), &m->ctx);
    if (!m->fuse) {
        snprintf(why, whylen, "FUSE refused the options: %s", opts);
        rc = -EINVAL;
        goto fail;
    }
    if (fuse_mount(m->fuse, cfg->mountpoint) != 0) {
        snprintf(why, whylen, "%s: cannot mount (busy, not permitted, or FUSE unavailable)",
                 cfg->mountpoint);
        rc = -EBUSY;
        goto fail;
    }
    m->mounted = 1;
    raise_readahead(cfg->mountpoint);
    if (!(m->mountpoint = strdup(cfg->mountpoint))) {
        rc = -ENOMEM;
        goto fail;
    }
    (void)signal(SIGPIPE, SIG_IGN);
    /* Block the shutdown signals in this thread, and so in every worker it starts later. */
    sigemptyset(&m->sigs);
    sigaddset(&m->sigs, SIGTERM);
    sigaddset(&m->sigs, SIGINT);
    sigaddset(&m->sigs, SIGHUP);
    sigaddset(&m->sigs, SIGUSR2);
    if ((rc = -pthread_sigmask(SIG_BLOCK, &m->sigs, NULL)) != 0 ||
        (rc = -pthread_create(&m->sig_thread, NULL, signal_thread, m)) != 0) {
        snprintf(why, whylen, "cannot start the signal thread: %s", strerror(-rc));
        goto fail;
    }
    m->have_sig_thread = 1;
    m->max_threads = cfg->max_threads;
    free(opts);
    fuse_opt_free_args(&args);
    *out = m;
    return 0;
fail:
    free(opts);
    fuse_opt_free_args(&args);
    fs_mount_free(m);
    return rc;
}

int fs_mount_run(struct fs_mount *m)
{
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    if (!lc)
        return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(lc, 0);
    fuse_loop_cfg_set_idle_threads(lc, 8);
    fuse_loop_cfg_set_max_threads(lc, m->max_threads ? m->max_threads : 16);
    int rc = fuse_loop_mt(m->fuse, lc);
    fuse_loop_cfg_destroy(lc);
    /* After a shutdown signal the loop ends at the signal thread's request: a clean exit. */
    return rc == 0 || m->signalled ? 0 : rc < 0 ? rc : -EINTR;
}

void fs_mount_free(struct fs_mount *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->sig_lock);
    m->closing = 1;
    pthread_mutex_unlock(&m->sig_lock);
    if (m->fuse) {
        if (m->mounted)
            fuse_unmount(m->fuse);
        fuse_destroy(m->fuse); /* closes the connection: a request still waiting fails now */
    }
    if (m->have_sig_thread) {
        /* Stop the signal thread if no signal came; if one came, it ends on its own. */
        pthread_kill(m->sig_thread, SIGUSR2);
        pthread_join(m->sig_thread, NULL);
    }
    pthread_mutex_destroy(&m->sig_lock);
    ctx_release(&m->ctx);
    free(m->mountpoint);
    free(m);
}
