// SPDX-License-Identifier: MIT
/*
 * Mount setup and teardown: open the backing folder, check its root folder id, derive the
 * purpose keys from the keyring, build the FUSE session on the low-level API, mount, serve,
 * and wipe everything on the way out. The keyring's master key itself is not kept: only the
 * derived subkeys live for the mount's lifetime.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

struct fs_mount {
    struct fs_ctx ctx;
    struct fuse_session *se;
    char *mountpoint;
    int mounted;
    unsigned max_threads;
    sigset_t sigs; /* SIGTERM, SIGINT, SIGHUP */
    pthread_t sig_thread;
    int have_sig_thread;
    pthread_t sweep_thread;
    int have_sweep_thread;
    _Atomic int signalled;    /* a shutdown signal ended the mount */
    pthread_mutex_t sig_lock; /* orders the signal thread's use of the session against its
                                 teardown */
    int closing;              /* fs_mount_free has begun; guarded by sig_lock */
};

/* The shutdown signals arrive through this pipe: a handler writes the signal's number (a
 * thread started by a library before main, such as OpenBLAS's pool, may take the signal with
 * it unblocked: the handler then runs there, harmlessly), fs_mount_free writes 0 to stop the
 * thread. One mount per process; the pipe lives as long as the process, so that a handler
 * running while the mount goes never writes to a closed descriptor. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe[1], &b, 1) != 1) { /* the pipe is full: a signal is pending anyway */
    }
    errno = saved;
}

/* Block the shutdown signals in this thread (and so in every thread it starts) and route them
 * to the pipe. */
static int route_signals(struct fs_mount *m)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&m->sigs);
    sigaddset(&m->sigs, SIGTERM);
    sigaddset(&m->sigs, SIGINT);
    sigaddset(&m->sigs, SIGHUP);
    if (pipe2(sig_pipe, O_CLOEXEC) != 0)
        return -errno;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0)
        return -errno;
    return -pthread_sigmask(SIG_BLOCK, &m->sigs, NULL);
}

/*
 * Shutdown on SIGTERM, SIGINT or SIGHUP. The signals are blocked in every thread but this one,
 * and come through the pipe, so the work is done while the FUSE workers still serve: first syncfs
 * on the mount, which makes the kernel write back what it still caches (pages of files mapped
 * shared) and wait until they were served, then the end of the loop, after which
 * fs_mount_free unmounts. Writes are not cached in the kernel otherwise (no writeback
 * caching): each write() was answered only once it was in the backing file.
 */
static void *signal_thread(void *arg)
{
    struct fs_mount *m = arg;
    unsigned char b = 0;
    ssize_t got;
    (void)pthread_sigmask(SIG_UNBLOCK, &m->sigs, NULL);
    while ((got = read(sig_pipe[0], &b, 1)) < 0 && errno == EINTR)
        ;
    int sig = b;
    if (got != 1 || sig == 0)
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
    /* Ask the loop to end, then send it one request (a lookup of a name that cannot exist, never
     * answered from the kernel's caches) so that a worker wakes up, answers it and sees the
     * request to end; the loop then stops the other workers and returns, and the unmount
     * happens in fs_mount_free. */
    pthread_mutex_lock(&m->sig_lock);
    if (!m->closing)
        fuse_session_exit(m->se);
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

static void *sweep_thread(void *arg)
{
    struct fs_ctx *c = arg;
    unsigned long n = fs_sweep(c);
    if (n)
        fs_log(c, LOG_NOTICE, "removed %lu temporary entr%s left by an interrupted mount", n,
               n == 1 ? "y" : "ies");
    return NULL;
}

void fs_log(const struct fs_ctx *c, int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->use_syslog) {
        vsyslog(prio, fmt, ap);
    } else {
        (void)fputs("imgcryptfs: ", stderr);
        (void)vfprintf(stderr, fmt, ap);
        (void)fputc('\n', stderr);
    }
    va_end(ap);
}

void fs_ctx_release(struct fs_ctx *c)
{
    keys_key_free(c->name_key);
    keys_key_free(c->content_key);
    keys_key_free(c->link_key);
    keys_key_free(c->xname_key);
    keys_key_free(c->xval_key);
    fs_nodes_release(c);
    fs_cache_release(c);
    codec_pipeline_free(c->pl);
    pthread_rwlock_destroy(&c->ns_lock);
    pthread_mutex_destroy(&c->queue_lock);
    pthread_cond_destroy(&c->queue_cond);
    pthread_cond_destroy(&c->mem_cond);
    pthread_mutex_destroy(&c->cache_lock);
    if (c->root.fd >= 0)
        close(c->root.fd);
    OPENSSL_cleanse(c->root.dirid, sizeof(c->root.dirid));
    pthread_rwlock_destroy(&c->root.lock);
    pthread_mutex_destroy(&c->table_lock);
}

/* Does the backing folder hold nothing but the keyring (a store never mounted)? */
static int fresh_store(int root_fd)
{
    int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), fresh = 1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, "imgcryptfs.keyring") != 0 &&
            strncmp(e->d_name, ".imgcryptfs.", 12) != 0)
            fresh = 0;
    closedir(d);
    return fresh;
}

/*
 * The root folder's id file holds id (16) || tag (16), the tag = the SIV of AES-SIV("root")
 * with the id as associated data under the "root folder id" subkey: a root id deleted, or replaced
 * by a sub-folder's, would otherwise silently hide or swap the whole tree. A 16-byte file (a store
 * made before the tag) gets its tag on first mount, once every top-level name opens under it.
 */
static int root_id_write(int root_fd, const uint8_t *buf, size_t len)
{
    char tmp[] = ".imgcryptfs.rootid.new";
    (void)unlinkat(root_fd, tmp, 0);
    int fd = openat(root_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444),
        rc = 0;
    if (fd < 0)
        return -errno;
    if ((rc = fs_write_all(fd, buf, len)) == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && renameat(root_fd, tmp, root_fd, FS_DIRID_NAME) != 0)
        rc = -errno;
    if (rc != 0)
        (void)unlinkat(root_fd, tmp, 0);
    return rc;
}

/* Before an untagged root id (a store made before the tag) is trusted and tagged: does every
 * name in the top folder open under it? A sub-folder's id planted there would fail. */
static int names_open(struct fs_ctx *c, const uint8_t id[KEYS_ID_BYTES])
{
    int fd = openat(c->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), ok = 1;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    char name[NAME_MAX + 2];
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int rc = fs_entry_name(c, dirfd(d), id, e->d_name, name, sizeof(name));
        ok = rc == 0 || rc == -ENOENT;
    }
    closedir(d);
    return ok;
}

static int root_id_check(struct fs_ctx *c, const struct keys_ring *ring, char *why, size_t whylen,
                         const char *backing)
{
    struct keys_key *k = NULL;
    uint8_t buf[2 * KEYS_ID_BYTES + 1], tag[KEYS_TAG_BYTES + 4];
    int rc = keys_ring_subkey(ring, "root folder id", KEYS_KEY_SIV, &k);
    if (rc != 0)
        return rc;
    struct stat st;
    int fd = fs_open_regular(c->root.fd, FS_DIRID_NAME, &st);
    ssize_t n = fd >= 0 ? codec_pread_all(fd, buf, sizeof(buf), 0) : -1;
    if (n < 0 && fd >= 0) { /* an I/O error is not damage: say which */
        rc = (int)n;
        (void)snprintf(why, whylen, "%s/%s: %s", backing, FS_DIRID_NAME, fs_strerror(-rc));
    }
    if (fd < 0 && errno == ENOENT && fresh_store(c->root.fd)) {
        /* First mount: the root folder gets its id. */
        if ((rc = keys_random(buf, KEYS_ID_BYTES)) == 0)
            n = KEYS_ID_BYTES;
    } else if (fd < 0) {
        int err = errno;
        rc = err == ENOENT || err == ELOOP || err == EINVAL ? -EBADMSG : -err;
        (void)snprintf(
            why, whylen, "%s/%s: %s", backing, FS_DIRID_NAME,
            err == ENOENT    ? "missing, yet the folder holds files: the top folder's names "
                               "cannot be read (restore the file from a backup of the store)"
            : rc == -EBADMSG ? "not a regular file (replaced; restore it from a backup of "
                               "the store)"
                             : fs_strerror(err));
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0 && n != KEYS_ID_BYTES && n != 2 * KEYS_ID_BYTES) {
        rc = -EBADMSG;
        (void)snprintf(why, whylen, "%s/%s: damaged (restore it from a backup of the store)",
                       backing, FS_DIRID_NAME);
    }
    if (rc == 0 && keys_siv_seal(k, buf, KEYS_ID_BYTES, "root", 4, tag, sizeof(tag)) != sizeof(tag))
        rc = -EIO;
    if (rc == 0 && n == 2 * KEYS_ID_BYTES &&
        CRYPTO_memcmp(tag, buf + KEYS_ID_BYTES, KEYS_TAG_BYTES) != 0) {
        rc = -EBADMSG;
        (void)snprintf(why, whylen,
                       "%s/%s: not this store's root folder id (replaced or damaged; "
                       "restore it from a backup of the store)",
                       backing, FS_DIRID_NAME);
    }
    if (rc == 0 && n == KEYS_ID_BYTES && !names_open(c, buf)) {
        rc = -EBADMSG;
        (void)snprintf(why, whylen,
                       "%s/%s: the top folder's names do not open with this id (replaced "
                       "or damaged; restore it from a backup of the store)",
                       backing, FS_DIRID_NAME);
    }
    if (rc == 0 && n == KEYS_ID_BYTES) {
        memcpy(buf + KEYS_ID_BYTES, tag, KEYS_TAG_BYTES);
        if ((rc = root_id_write(c->root.fd, buf, 2 * KEYS_ID_BYTES)) != 0)
            (void)snprintf(why, whylen, "%s/%s: cannot write: %s", backing, FS_DIRID_NAME,
                           fs_strerror(-rc));
    }
    if (rc == 0) {
        memcpy(c->root.dirid, buf, KEYS_ID_BYTES);
        c->root.have_id = 1;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    keys_key_free(k);
    return rc;
}

static int image_options(struct fs_ctx *c, const struct fs_config *cfg,
                         const struct keys_ring *ring, char *why, size_t whylen)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpus = cpus < 1 ? 1 : cpus;
    c->convert = !cfg->images_off;
    c->coder = cfg->coder ? cfg->coder : FS_CODER_DEFAULT;
    c->workers = cfg->workers ? cfg->workers : (unsigned)cpus;
    c->decode_threads = cpus > 4 ? 4 : (unsigned)cpus;
    c->cache_cap = (size_t)(cfg->cache_mb < 0 ? FS_CACHE_MB_DEFAULT : cfg->cache_mb) << 20;
    c->mem_cap = cfg->convert_mb ? (uint64_t)cfg->convert_mb << 20 : CODEC_PIPELINE_BUDGET_DEFAULT;
    /* Stored images are readable with images=off too. */
    int rc = codec_pipeline_new(ring, &c->pl);
    if (rc != 0)
        (void)snprintf(why, whylen, "cannot prepare the image pipeline: %s", fs_strerror(-rc));
    return rc;
}

int fs_ctx_init(struct fs_ctx *c, const struct fs_config *cfg, const struct keys_ring *ring,
                char *why, size_t whylen)
{
    struct stat st;
    uint8_t tag[8];
    int rc;
    c->root.fd = -1;
    c->root.data_fd = -1;
    pthread_mutex_init(&c->table_lock, NULL);
    pthread_rwlock_init(&c->root.lock, NULL);
    pthread_mutex_init(&c->root.info_lock, NULL);
    pthread_rwlock_init(&c->ns_lock, NULL);
    pthread_mutex_init(&c->queue_lock, NULL);
    pthread_cond_init(&c->queue_cond, NULL);
    pthread_cond_init(&c->mem_cond, NULL);
    pthread_mutex_init(&c->cache_lock, NULL);
    if ((rc = image_options(c, cfg, ring, why, whylen)) != 0)
        return rc;
    c->use_syslog = cfg->use_syslog;
    c->as_root = geteuid() == 0;
    c->timeout = 1.0;
    clock_gettime(CLOCK_REALTIME, &c->started);
    if ((rc = keys_random(tag, sizeof(tag))) != 0)
        return rc;
    fs_b64_encode(tag, sizeof(tag), c->tag);
    c->root.fd = open(cfg->backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->root.fd < 0 || fstat(c->root.fd, &st) != 0) {
        rc = -errno;
        (void)snprintf(why, whylen, "%s: %s", cfg->backing, fs_strerror(-rc));
        return rc;
    }
    c->root.dev = st.st_dev;
    c->root.ino = st.st_ino;
    c->root.type = S_IFDIR;
    c->root.nlookup = 1;
    if ((rc = keys_ring_subkey(ring, "names", KEYS_KEY_SIV, &c->name_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "content", KEYS_KEY_GCM, &c->content_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "symlinks", KEYS_KEY_GCM, &c->link_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "xattr names", KEYS_KEY_SIV, &c->xname_key)) != 0 ||
        (rc = keys_ring_subkey(ring, "xattr values", KEYS_KEY_GCM, &c->xval_key)) != 0) {
        (void)snprintf(why, whylen, "cannot derive keys: %s", fs_strerror(-rc));
        return rc;
    }
    return root_id_check(c, ring, why, whylen, cfg->backing);
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
        // NOLINTNEXTLINE(cert-err34-c): the kernel writes these numbers, no error to report
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mnt) == 3 &&
            strcmp(mnt, mountpoint) == 0) {
            major = a;
            minor = b;
            found = 1;
        }
    }
    (void)fclose(f);
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
    /* Modes are the caller's, already cut by the caller's umask in the kernel: the daemon's
     * own umask must not cut them a second time. */
    umask(0);
    rc = fs_ctx_init(&m->ctx, cfg, ring, why, whylen);
    if (rc != 0)
        goto fail;
    struct stat st;
    if (stat(cfg->mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = errno ? -errno : -ENOTDIR;
        (void)snprintf(why, whylen, "%s: mount point %s", cfg->mountpoint,
                       rc == -ENOTDIR ? "is not a folder" : "does not exist");
        goto fail;
    }
    /* fsname shows the backing folder in /proc/mounts, as mount(8) users expect. */
    char *backing = realpath(cfg->backing, NULL);
    rc = asprintf(&opts, "fsname=%s,subtype=imgcryptfs%s%s", backing ? backing : cfg->backing,
                  cfg->fuse_opts && *cfg->fuse_opts ? "," : "",
                  cfg->fuse_opts ? cfg->fuse_opts : "");
    free(backing);
    if (rc < 0) {
        opts = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    if (fuse_opt_add_arg(&args, "imgcryptfs") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
        fuse_opt_add_arg(&args, opts) != 0 || (cfg->debug && fuse_opt_add_arg(&args, "-d") != 0)) {
        rc = -ENOMEM;
        goto fail;
    }
    m->se = fuse_session_new(&args, &fs_ll_ops, sizeof(fs_ll_ops), &m->ctx);
    if (!m->se) {
        (void)snprintf(why, whylen, "FUSE refused the options: %s", opts);
        rc = -EINVAL;
        goto fail;
    }
    if (fuse_session_mount(m->se, cfg->mountpoint) != 0) {
        (void)snprintf(why, whylen, "%s: cannot mount (busy, not permitted, or FUSE unavailable)",
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
    if ((rc = route_signals(m)) != 0 ||
        (rc = -pthread_create(&m->sig_thread, NULL, signal_thread, m)) != 0) {
        (void)snprintf(why, whylen, "cannot start the signal thread: %s", fs_strerror(-rc));
        goto fail;
    }
    m->have_sig_thread = 1;
    m->have_sweep_thread = pthread_create(&m->sweep_thread, NULL, sweep_thread, &m->ctx) == 0;
    if ((rc = fs_convert_start(&m->ctx)) != 0) {
        (void)snprintf(why, whylen, "cannot start the conversion workers: %s", fs_strerror(-rc));
        goto fail;
    }
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
    int rc = fuse_session_loop_mt(m->se, lc);
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
    if (m->se) {
        if (m->mounted)
            fuse_session_unmount(m->se);
        fuse_session_destroy(m->se); /* closes the connection: a request still waiting fails */
    }
    if (m->have_sig_thread) {
        /* Stop the signal thread if no signal came; if one came, it ends on its own. */
        unsigned char stop = 0;
        if (write(sig_pipe[1], &stop, 1) != 1) { /* full: a signal is pending, which ends it */
        }
        pthread_join(m->sig_thread, NULL);
    }
    fs_convert_stop(&m->ctx); /* sets stopping: the sweep gives up too */
    if (m->have_sweep_thread)
        pthread_join(m->sweep_thread, NULL);
    pthread_mutex_destroy(&m->sig_lock);
    fs_ctx_release(&m->ctx);
    free(m->mountpoint);
    free(m);
}
