// SPDX-License-Identifier: MIT
/*
 * The conversion workers: a file that was changed and whose last handle closed is queued; a
 * worker reads its block file through a descriptor of its own, encodes it with the image
 * pipeline (verify on: the container is decoded and compared with the input before it is kept),
 * writes the container under a temporary name in the same folder with the file's owner, mode,
 * times and xattrs, fsyncs it, and renames it over the block file (fs_node_swap) only if the
 * file did not change meanwhile (its generation, under its lock) and nobody has it open; then it
 * fsyncs the folder. Any failure leaves the block file as it was, with one log line naming the
 * backing path and the reason. Nothing here runs in close(2) or blocks another file's I/O.
 *
 * Which files: those whose first bytes sniff as an image the adapters store exactly, with one
 * link (a hard-linked file stays a block file, so its links stay one file), whose container is
 * smaller than their block file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

void fs_convert_closed(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->queue_lock);
    n->qnext = NULL;
    if (c->queue_tail)
        c->queue_tail->qnext = n;
    else
        c->queue_head = n;
    c->queue_tail = n;
    c->queue_len++;
    pthread_cond_signal(&c->queue_cond);
    pthread_mutex_unlock(&c->queue_lock);
}

unsigned fs_convert_backlog(struct fs_ctx *c)
{
    pthread_mutex_lock(&c->queue_lock);
    unsigned n = c->queue_len + c->converting;
    pthread_mutex_unlock(&c->queue_lock);
    return n;
}

int fs_copy_meta(int from, int to)
{
    struct stat st, cur;
    if (fstat(from, &st) != 0 || fstat(to, &cur) != 0)
        return -errno;
    ssize_t len = flistxattr(from, NULL, 0);
    char *names = len > 0 ? malloc((size_t)len) : NULL;
    uint8_t *val = malloc(XATTR_SIZE_MAX);
    int rc = len < 0 ? -errno : (len > 0 && !names) || !val ? -ENOMEM : 0;
    if (rc == 0 && len > 0 && (len = flistxattr(from, names, (size_t)len)) < 0)
        rc = -errno;
    for (ssize_t i = 0; rc == 0 && i < len; i += (ssize_t)strlen(names + i) + 1) {
        ssize_t vl = fgetxattr(from, names + i, val, XATTR_SIZE_MAX);
        if (vl < 0 || fsetxattr(to, names + i, val, (size_t)vl, 0) != 0)
            rc = -errno;
    }
    free(names);
    free(val);
    if (rc != 0)
        return rc;
    if ((cur.st_uid != st.st_uid || cur.st_gid != st.st_gid) &&
        fchown(to, st.st_uid, st.st_gid) != 0)
        return -errno;
    /* After the chown, which clears set-ID bits. */
    if (fchmod(to, st.st_mode & 07777) != 0)
        return -errno;
    struct timespec tv[2] = {st.st_atim, st.st_mtim};
    return futimens(to, tv) == 0 ? 0 : -errno;
}

int fs_convert_read(struct fs_ctx *c, int fd, uint8_t **buf, size_t *len)
{
    struct codec_bf *bf = NULL;
    uint64_t size = 0, bad = UINT64_MAX;
    uint8_t head[512];
    int rc = codec_bf_open(fd, c->content_key, 0, &bf);
    if (rc == 0)
        rc = codec_bf_size(bf, &size);
    if (rc == 0 && size > CODEC_MAX_FILE_BYTES)
        rc = FS_SKIP_NOT_IMAGE;
    ssize_t got = rc == 0 ? codec_bf_read(bf, head, sizeof(head), 0, &bad) : 0;
    if (rc == 0 && got < 0)
        rc = (int)got;
    if (rc == 0 && codec_sniff(head, (size_t)got) == CODEC_FORMAT_NONE)
        rc = FS_SKIP_NOT_IMAGE;
    uint8_t *b = rc == 0 ? malloc(size ? (size_t)size : 1) : NULL;
    if (rc == 0 && !b)
        rc = -ENOMEM;
    if (rc == 0 && (got = codec_bf_read(bf, b, (size_t)size, 0, &bad)) != (ssize_t)size)
        rc = got < 0 ? (int)got : -EAGAIN; /* shorter: it is being written */
    codec_bf_close(bf);
    if (rc != 0) {
        if (b)
            OPENSSL_cleanse(b, (size_t)size);
        free(b);
        return rc;
    }
    *buf = b;
    *len = (size_t)size;
    return 0;
}

int fs_convert_write(struct fs_ctx *c, int dfd, int fd, const uint8_t *ct, size_t ct_len,
                     char tmp[FS_TMP_CAP], int *tfd)
{
    int rc = fs_tmp_name(c, tmp);
    if (rc != 0)
        return rc;
    *tfd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*tfd < 0)
        return -errno;
    if ((rc = fs_write_all(*tfd, ct, ct_len)) == 0 && (rc = fs_copy_meta(fd, *tfd)) == 0 &&
        fsync(*tfd) != 0)
        rc = -errno;
    return rc;
}

/* Swap the container in if node n is still as it was at generation gen. */
static int commit(struct fs_ctx *c, struct fs_node *n, uint64_t gen, const char *tmp, int tfd,
                  const uint8_t *ct, size_t ct_len)
{
    struct codec_ct_info info;
    struct stat st;
    int dir_fd = -1, rc;
    pthread_rwlock_wrlock(&n->lock);
    if (n->gen != gen || n->opens > 0)
        rc = -EAGAIN;
    else if (c->stopping)
        rc = -ECANCELED;
    else if ((rc = codec_pipeline_head_info(c->pl, ct, ct_len, &info)) == 0 &&
             (rc = fs_node_swap(c, n, tmp, tfd, &dir_fd)) == 0 && fstat(tfd, &st) == 0)
        fs_image_set_store(n, FS_STORE_IMAGE, &st, &info);
    pthread_rwlock_unlock(&n->lock);
    if (dir_fd >= 0) {
        if (fsync(dir_fd) != 0) { /* converted; after a crash either form may be found */
            char where[PATH_MAX];
            fs_where(dir_fd, where, sizeof(where));
            fs_log(c, LOG_WARNING, "%s: fsync of the folder after a conversion failed: %s", where,
                   fs_strerror(errno));
        }
        close(dir_fd);
    }
    return rc;
}

/* Take (need > 0) or give back (need < 0) bytes of the conversion memory budget; a taker
 * waits until they are free. -EFBIG when the budget could never hold them, -ECANCELED at
 * unmount. */
static int reserve(struct fs_ctx *c, int64_t need)
{
    int rc = 0;
    pthread_mutex_lock(&c->queue_lock);
    if (need < 0) {
        c->mem_used -= (uint64_t)-need;
        pthread_cond_broadcast(&c->mem_cond);
    } else if ((uint64_t)need > c->mem_cap) {
        rc = -EFBIG;
    } else {
        while (c->mem_used + (uint64_t)need > c->mem_cap && !c->stopping)
            pthread_cond_wait(&c->mem_cond, &c->queue_lock);
        if (c->stopping)
            rc = -ECANCELED;
        else
            c->mem_used += (uint64_t)need;
    }
    pthread_mutex_unlock(&c->queue_lock);
    return rc;
}

int fs_convert_encode(struct fs_ctx *c, int fd, const struct stat *st, uint8_t **ct, size_t *ct_len)
{
    struct codec_pipeline_opts opts = {.threads = 1, .coder = c->coder, .verify = 1};
    uint8_t *buf = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    uint64_t need = 0;
    int rc;
    if ((uint64_t)st->st_size > c->mem_cap / 2)
        return -EFBIG; /* not even read: the file alone would take half the budget */
    if ((rc = fs_convert_read(c, fd, &buf, &len)) != 0)
        return rc;
    /* Past the budget before the cast: a need beyond INT64_MAX must not read as a release. */
    if ((rc = codec_pipeline_estimate(buf, len, &need)) == 0 &&
        (rc = need > c->mem_cap ? -EFBIG : reserve(c, (int64_t)need)) == 0) {
        rc = codec_pipeline_encode(c->pl, buf, len, &opts, &out, &out_len);
        reserve(c, -(int64_t)need);
    }
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (rc == -ENOTSUP || rc == -EINVAL)
        rc = FS_SKIP_NOT_IMAGE;
    else if (rc == -EBADMSG)
        rc = -EILSEQ; /* the verify's, not the block file's */
    else if (rc == 0 && out_len >= (size_t)st->st_size)
        rc = FS_SKIP_NOT_SMALLER;
    if (rc != 0) {
        free(out);
        return rc;
    }
    *ct = out;
    *ct_len = out_len;
    return 0;
}

/* Read, encode and put in place the block file open as fd (node n at generation gen). */
static int convert_fd(struct fs_ctx *c, struct fs_node *n, int fd, uint64_t gen)
{
    struct fs_dref *d = NULL;
    struct stat st;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    char *leaf = NULL, tmp[FS_TMP_CAP] = "";
    int tfd = -1, rc;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_nlink != 1)
        return FS_SKIP_NOT_IMAGE; /* hard links stay one file: not converted */
    if ((rc = fs_convert_encode(c, fd, &st, &ct, &ct_len)) == 0 &&
        (rc = fs_node_where(c, n, &d, &leaf)) == 0 &&
        (rc = fs_convert_write(c, d->fd, fd, ct, ct_len, tmp, &tfd)) == 0)
        rc = commit(c, n, gen, tmp, tfd, ct, ct_len);
    if (rc != 0 && tmp[0])
        (void)unlinkat(d->fd, tmp, 0);
    if (tfd >= 0)
        close(tfd);
    free(ct);
    fs_dref_put(d);
    free(leaf);
    return rc;
}

/* Convert node n; 0, an FS_SKIP_ outcome, or -errno (-EAGAIN: it changed meanwhile). */
static int convert(struct fs_ctx *c, struct fs_node *n, int *fd_out)
{
    pthread_rwlock_rdlock(&n->lock);
    uint64_t gen = n->gen;
    /* Read without touching its access time, which the container keeps (where allowed). */
    int fd = fs_node_reopen(n, O_RDONLY | O_NOATIME);
    if (fd == -EPERM)
        fd = fs_node_reopen(n, O_RDONLY);
    pthread_rwlock_unlock(&n->lock);
    *fd_out = fd;
    int rc = fd < 0 ? fd : convert_fd(c, n, fd, gen);
    /* Read through a descriptor of its own, without the node's lock: whatever went wrong
     * (a torn block, a head not yet written) while the file changed is the change's doing. */
    if (rc != 0 && rc != -EAGAIN) {
        pthread_rwlock_rdlock(&n->lock);
        if (n->gen != gen)
            rc = -EAGAIN;
        pthread_rwlock_unlock(&n->lock);
    }
    return rc;
}

const char *fs_convert_reason(int rc)
{
    switch (rc) {
    case -EBADMSG:
        return "the block file does not authenticate";
    case -EILSEQ:
        return "the container did not decode to the file (a codec bug)";
    case -EFBIG:
        return "too large to code within the conversion memory budget (-o convert_mb=)";
    case -ENOSPC:
        return "no space left in the backing folder";
    case -EMLINK:
        return "it gained a hard link";
    default:
        return fs_strerror(-rc);
    }
}

/* Convert node n; 1 when it must be tried again: it changed meanwhile and its last handle
 * has closed already (that close found it queued and did not queue it). */
static int convert_one(struct fs_ctx *c, struct fs_node *n)
{
    int fd = -1;
    int rc = convert(c, n, &fd);
    pthread_rwlock_wrlock(&n->lock);
    int changed = rc == -EAGAIN, again = changed && n->opens == 0 && n->dirty;
    /* Tried: unless it changed meanwhile, it is not tried again until it changes. */
    if (!changed && rc != -ECANCELED)
        n->dirty = 0;
    pthread_rwlock_unlock(&n->lock);
    /* Quiet: the name went (-ESTALE; -ENOENT: its folder went, or took the temporary file
     * with it), or it gained a link meanwhile. */
    if (rc < 0 && !changed && rc != -ECANCELED && rc != -ESTALE && rc != -ENOENT && rc != -EMLINK) {
        char where[PATH_MAX];
        fs_where(fd >= 0 ? fd : n->fd, where, sizeof(where));
        fs_log(c, LOG_WARNING, "conversion of %s: %s; it stays a block file", where,
               fs_convert_reason(rc));
    }
    if (fd >= 0)
        close(fd);
    return again;
}

/* The node leaves the queue: it may go now if the kernel forgot it meanwhile. */
static void unqueue(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->table_lock);
    n->queued = 0;
    int dead = n->nlookup == 0 && n->opens == 0;
    pthread_mutex_unlock(&c->table_lock);
    if (dead)
        fs_node_forget(c, n, 0);
}

static void *worker(void *arg)
{
    struct fs_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->queue_lock);
        while (!c->queue_head && !c->stopping)
            pthread_cond_wait(&c->queue_cond, &c->queue_lock);
        struct fs_node *n = c->stopping ? NULL : c->queue_head;
        if (n) {
            c->queue_head = n->qnext;
            if (!c->queue_head)
                c->queue_tail = NULL;
            c->queue_len--;
            c->converting++;
        }
        pthread_mutex_unlock(&c->queue_lock);
        if (!n)
            return NULL;
        if (convert_one(c, n) && !c->stopping)
            fs_convert_closed(c, n); /* still queued: to the back of the queue */
        else
            unqueue(c, n);
        pthread_mutex_lock(&c->queue_lock);
        c->converting--;
        pthread_mutex_unlock(&c->queue_lock);
    }
}

int fs_convert_start(struct fs_ctx *c)
{
    if (!c->convert || !c->workers)
        return 0;
    c->worker = calloc(c->workers, sizeof(*c->worker));
    if (!c->worker)
        return -ENOMEM;
    for (; c->have_workers < c->workers; c->have_workers++) {
        int rc = pthread_create(&c->worker[c->have_workers], NULL, worker, c);
        if (rc != 0)
            return -rc;
    }
    return 0;
}

void fs_convert_stop(struct fs_ctx *c)
{
    pthread_mutex_lock(&c->queue_lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->queue_cond);
    pthread_cond_broadcast(&c->mem_cond);
    pthread_mutex_unlock(&c->queue_lock);
    for (unsigned i = 0; i < c->have_workers; i++)
        pthread_join(c->worker[i], NULL);
    free(c->worker);
    c->worker = NULL;
    c->have_workers = 0;
    /* What the workers left (they take nothing more once stopping is set). */
    pthread_mutex_lock(&c->queue_lock);
    struct fs_node *n = c->queue_head;
    unsigned cancelled = c->queue_len;
    c->queue_head = c->queue_tail = NULL;
    c->queue_len = 0;
    pthread_mutex_unlock(&c->queue_lock);
    while (n) {
        struct fs_node *next = n->qnext;
        unqueue(c, n);
        n = next;
    }
    if (cancelled)
        fs_log(c, LOG_NOTICE, "%u queued conversion%s cancelled at unmount (stored as block files)",
               cancelled, cancelled == 1 ? "" : "s");
}
