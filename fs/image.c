// SPDX-License-Identifier: MIT
/*
 * Stored images in the mount: what a backing regular file is (a block file or a container),
 * the size stat shows for a container (from its sealed meta, without decoding), reads served
 * from a bounded plaintext cache, a stored image turned back into a block file before a write,
 * and the read-only xattrs (user.imgcryptfs.*).
 *
 * The cache: one decoded plaintext per node, reference-counted, on an LRU list with a byte
 * budget (-o cache_mb=) that files still open may exceed. A read takes a reference under
 * cache_lock and copies without any lock, so eviction never waits for a reader and a reader
 * never sees freed bytes; the last reference wipes the plaintext. Entries are dropped when the file
 * is rewritten, when its last name goes and its last handle closes, and at once at the last close
 * with cache_mb=0.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

#define FS_XATTR_PREFIX "user.imgcryptfs."
#define FS_XATTR_STORAGE FS_XATTR_PREFIX "storage"
#define FS_XATTR_PREVIEW FS_XATTR_PREFIX "preview"
#define FS_XATTR_BACKLOG FS_XATTR_PREFIX "backlog"
#define FS_PREVIEW_MAX 65536 /* the largest xattr value Linux returns */

struct fs_plain {
    _Atomic unsigned refs;        /* the cache's own (while listed) and readers' */
    struct fs_plain *prev, *next; /* LRU list; guarded by cache_lock */
    struct fs_node *node;         /* whose plaintext this is, while listed */
    ino_t ino;                    /* the container it was decoded from */
    off_t bsize;
    struct timespec mtime;
    uint8_t *data;
    size_t len;
};

static int same_ident(ino_t ino, off_t bsize, const struct timespec *mtime, const struct stat *st)
{
    return ino == st->st_ino && bsize == st->st_size && mtime->tv_sec == st->st_mtim.tv_sec &&
           mtime->tv_nsec == st->st_mtim.tv_nsec;
}

static void plain_put(struct fs_plain *p)
{
    if (p && --p->refs == 0) {
        OPENSSL_cleanse(p->data, p->len);
        free(p->data);
        free(p);
    }
}

/* Take p off the list and off its node n; cache_lock held. The caller drops the list's ref. */
static void plain_unlist(struct fs_ctx *c, struct fs_node *n, struct fs_plain *p)
{
    assert(p->node == n && n->plain == p && (p->prev == NULL) == (c->lru_head == p));
    if (p->prev)
        p->prev->next = p->next;
    else
        c->lru_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->lru_tail = p->prev;
    p->prev = p->next = NULL;
    n->plain = NULL;
    p->node = NULL;
    c->cache_bytes -= p->len;
}

static struct fs_plain *cache_get(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->cache_lock);
    struct fs_plain *p = n->plain;
    if (p) {
        p->refs++;
        if (p != c->lru_head) { /* to the front */
            assert(p->prev != NULL);
            p->prev->next = p->next;
            if (p->next)
                p->next->prev = p->prev;
            else
                c->lru_tail = p->prev;
            p->prev = NULL;
            p->next = c->lru_head;
            c->lru_head->prev = p;
            c->lru_head = p;
        }
    }
    pthread_mutex_unlock(&c->cache_lock);
    return p;
}

/* List p (one reference: the caller's, which becomes the list's) as n's plaintext, evicting
 * from the tail past the budget; p itself stays while it is in use (the caller reads it). */
static void cache_put_in(struct fs_ctx *c, struct fs_node *n, struct fs_plain *p)
{
    struct fs_plain *old = NULL, *victims = NULL;
    pthread_mutex_lock(&c->cache_lock);
    if ((old = n->plain) != NULL)
        plain_unlist(c, n, old);
    p->node = n;
    n->plain = p;
    p->next = c->lru_head;
    if (c->lru_head)
        c->lru_head->prev = p;
    c->lru_head = p;
    if (!c->lru_tail)
        c->lru_tail = p;
    c->cache_bytes += p->len;
    /* From the least recently used, past the budget; a file still open keeps its plaintext
     * (its readers would decode it again at every read). */
    for (struct fs_plain *v = c->lru_tail; v && c->cache_bytes > c->cache_cap;) {
        struct fs_plain *prev = v->prev;
        if (v != p && v->node->opens == 0) {
            plain_unlist(c, v->node, v);
            v->next = victims; /* freed outside the lock */
            victims = v;
        }
        v = prev;
    }
    pthread_mutex_unlock(&c->cache_lock);
    plain_put(old);
    while (victims) {
        struct fs_plain *v = victims;
        victims = v->next;
        plain_put(v);
    }
}

void fs_cache_check(struct fs_ctx *c, struct fs_node *n, const struct stat *st)
{
    pthread_mutex_lock(&c->cache_lock);
    struct fs_plain *p = n->plain;
    if (p && !same_ident(p->ino, p->bsize, &p->mtime, st))
        plain_unlist(c, n, p);
    else
        p = NULL;
    pthread_mutex_unlock(&c->cache_lock);
    plain_put(p);
}

void fs_cache_drop(struct fs_ctx *c, struct fs_node *n)
{
    pthread_mutex_lock(&c->cache_lock);
    struct fs_plain *p = n->plain;
    if (p)
        plain_unlist(c, n, p);
    pthread_mutex_unlock(&c->cache_lock);
    plain_put(p);
}

void fs_cache_release(struct fs_ctx *c)
{
    while (c->lru_head) {
        struct fs_plain *p = c->lru_head;
        plain_unlist(c, p->node, p);
        plain_put(p);
    }
}

void fs_image_set_store(struct fs_node *n, int store, const struct stat *st,
                        const struct codec_ct_info *img)
{
    pthread_mutex_lock(&n->info_lock);
    n->store = store;
    n->store_ino = st->st_ino;
    n->store_bsize = st->st_size;
    n->store_mtime = st->st_mtim;
    if (img)
        n->img = *img;
    else
        memset(&n->img, 0, sizeof(n->img));
    pthread_mutex_unlock(&n->info_lock);
}

/* What the backing file (st: its fstat) is: remembered, else sniffed from its head; -errno
 * when the head cannot be read. *img gets a container's head. */
static int node_store(struct fs_ctx *c, struct fs_node *n, const struct stat *st,
                      struct codec_ct_info *img)
{
    pthread_mutex_lock(&n->info_lock);
    int store = n->store;
    /* A container is known by its identity, a block file (written in place) by its inode. */
    if ((store == FS_STORE_IMAGE &&
         !same_ident(n->store_ino, n->store_bsize, &n->store_mtime, st)) ||
        (store == FS_STORE_BLOCKS && n->store_ino != st->st_ino))
        store = FS_STORE_UNKNOWN;
    *img = n->img;
    pthread_mutex_unlock(&n->info_lock);
    if (store != FS_STORE_UNKNOWN)
        return store;
    uint8_t head[CODEC_CT_HEAD];
    int fd = fs_node_reopen(n, O_RDONLY);
    ssize_t got = fd >= 0 ? codec_pread_all(fd, head, sizeof(head), 0) : fd;
    struct stat now;
    if (got < 0 && fd != -EACCES && fd != -EPERM) {
        store = (int)got; /* not an answer: asked again next time */
    } else if (fd >= 0 && fstat(fd, &now) == 0 && now.st_ino == st->st_ino) {
        store = c->pl && codec_ct_sniff(head, (size_t)got) &&
                        codec_pipeline_head_info(c->pl, head, (size_t)got, img) == 0
                    ? FS_STORE_IMAGE
                    : FS_STORE_BLOCKS;
        fs_image_set_store(n, store, &now, store == FS_STORE_IMAGE ? img : NULL);
    } else {
        /* Not readable by the daemon (a mode that shuts it out), or replaced meanwhile: shown
         * as the block file it would be, and not remembered. */
        store = FS_STORE_BLOCKS;
    }
    if (fd >= 0)
        close(fd);
    return store;
}

int fs_image_fix_size(struct fs_ctx *c, struct fs_node *n, struct stat *st)
{
    struct codec_ct_info img;
    int store = node_store(c, n, st, &img);
    if (store < 0)
        return store;
    if (store == FS_STORE_IMAGE)
        st->st_size = (off_t)img.plain_size;
    else
        st->st_size = (off_t)codec_bf_plain_size((uint64_t)st->st_size);
    return 0;
}

int fs_image_is_stored(struct fs_ctx *c, struct fs_node *n)
{
    struct stat st;
    struct codec_ct_info img;
    if (n->type != S_IFREG || fstatat(n->fd, "", &st, AT_EMPTY_PATH) != 0)
        return 0;
    return node_store(c, n, &st, &img) == FS_STORE_IMAGE; /* unreadable: not known as one */
}

/* The whole of the open file fd (*out, *len; caller frees), and its fstat. */
static int slurp(int fd, struct stat *st, uint8_t **out, size_t *len)
{
    if (fstat(fd, st) != 0)
        return -errno;
    if ((uint64_t)st->st_size > CODEC_MAX_FILE_BYTES)
        return -EFBIG;
    size_t n = (size_t)st->st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    ssize_t got = codec_pread_all(fd, buf, n, 0);
    if (got < 0 || (size_t)got != n) {
        free(buf);
        return got < 0 ? (int)got : -EBADMSG; /* shorter than it said: changed under us */
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Decode the container open as fd into a new cache entry (one reference, not listed). */
static int decode(struct fs_ctx *c, int fd, struct fs_plain **out)
{
    struct stat st;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    struct fs_plain *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int rc = c->pl ? slurp(fd, &st, &ct, &ct_len) : -EBADMSG;
    if (rc == 0)
        rc = codec_pipeline_decode(c->pl, ct, ct_len, c->decode_threads, &p->data, &p->len);
    free(ct);
    if (rc != 0) {
        free(p);
        return rc == -EINVAL || rc == -ENOENT ? -EBADMSG : rc;
    }
    p->refs = 1;
    p->ino = st.st_ino;
    p->bsize = st.st_size;
    p->mtime = st.st_mtim;
    *out = p;
    return 0;
}

/* The plaintext of node n's stored image open as fd: cached, else decoded and cached. A
 * reference for the caller. Node lock held exclusively (one decode for all readers). */
static int plain_of(struct fs_ctx *c, struct fs_node *n, int fd, struct fs_plain **out)
{
    /* A plaintext of a backing file replaced behind this mount's back goes first; nothing can
     * list another one meanwhile (only this function does, with the node lock held). */
    struct stat st;
    if (fstat(fd, &st) != 0)
        fs_cache_drop(c, n);
    else
        fs_cache_check(c, n, &st);
    struct fs_plain *p = cache_get(c, n);
    if (p) {
        *out = p;
        return 0;
    }
    int rc = decode(c, fd, &p);
    if (rc != 0)
        return fs_err(c, rc, fd, UINT64_MAX, "decoding of a stored image");
    p->refs++; /* the caller's; the first is the list's */
    cache_put_in(c, n, p);
    *out = p;
    return 0;
}

ssize_t fs_image_read(struct fs_ctx *c, struct fs_node *n, char *buf, size_t size, off_t off)
{
    struct fs_plain *p = cache_get(c, n);
    int rc = 0;
    if (!p) {
        pthread_rwlock_unlock(&n->lock);
        pthread_rwlock_wrlock(&n->lock);
        if (n->image)
            rc = plain_of(c, n, n->data_fd, &p);
        else if (n->bf) /* turned back into a block file meanwhile */
            rc = 1;
        else
            rc = -EBADF;
        pthread_rwlock_unlock(&n->lock);
        pthread_rwlock_rdlock(&n->lock);
        if (rc == 1) {
            uint64_t bad = UINT64_MAX;
            ssize_t got = n->bf ? codec_bf_read(n->bf, buf, size, (uint64_t)off, &bad) : -EBADF;
            return got < 0 ? fs_err(c, (int)got, n->data_fd, bad, "read") : got;
        }
        if (rc != 0)
            return rc;
    }
    size_t got = 0;
    if ((uint64_t)off < p->len) {
        got = p->len - (size_t)off < size ? p->len - (size_t)off : size;
        memcpy(buf, p->data + off, got);
    }
    plain_put(p);
    return (ssize_t)got;
}

/* Write the plaintext into a fresh block file `tmp` in folder dfd: *fd, *bf. */
static int write_blocks(struct fs_ctx *c, int dfd, const char *tmp, const struct fs_plain *p,
                        int *fd, struct codec_bf **bf)
{
    uint64_t bad = UINT64_MAX;
    *bf = NULL;
    *fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*fd < 0)
        return -errno;
    int rc = codec_bf_create(*fd, c->content_key, bf);
    if (rc == 0 && p && p->len) {
        ssize_t w = codec_bf_write(*bf, p->data, p->len, 0, &bad);
        rc = w < 0 ? (int)w : (size_t)w != p->len ? -EIO : 0;
    }
    return rc;
}

int fs_image_to_blocks(struct fs_ctx *c, struct fs_node *n, int empty)
{
    struct fs_plain *p = NULL;
    struct fs_dref *d = NULL;
    struct codec_bf *bf = NULL;
    char *leaf = NULL, tmp[FS_TMP_CAP];
    int src = n->image ? n->data_fd : fs_node_reopen(n, O_RDONLY), fd = -1, dir_fd = -1, rc;
    int unnamed, tdir = -1;
    struct stat st;
    if (src < 0)
        return src;
    if ((rc = fs_node_where(c, n, &d, &leaf)) != 0 || (rc = fs_tmp_name(c, tmp)) != 0)
        goto out;
    if (!empty && (rc = plain_of(c, n, src, &p)) != 0)
        goto out;
    /* A file deleted while open (its folder perhaps too) is written on in a nameless block
     * file, made in the backing root. */
    unnamed = fs_node_unnamed(n);
    tdir = unnamed ? c->root.fd : d->fd;
    if ((rc = write_blocks(c, tdir, tmp, p, &fd, &bf)) == 0 && (rc = fs_copy_meta(src, fd)) == 0 &&
        fsync(fd) != 0)
        rc = -errno;
    if (rc == 0 && !unnamed && (rc = fs_node_swap(c, n, tmp, fd, &dir_fd)) == -ESTALE &&
        fs_node_unnamed(n)) { /* deleted meanwhile */
        unnamed = 1;
        rc = 0;
    }
    if (rc == 0 && unnamed)
        rc = fs_node_adopt_unnamed(c, n, tdir, tmp, fd);
    if (rc != 0) {
        (void)unlinkat(tdir, tmp, 0);
        goto out;
    }
    if (dir_fd >= 0) {
        (void)fsync(dir_fd);
        close(dir_fd);
    }
    if (fstat(fd, &st) == 0)
        fs_image_set_store(n, FS_STORE_BLOCKS, &st, NULL);
    fs_cache_drop(c, n);
    n->gen++;
    n->dirty = 1;
    if (n->image) { /* the open handles go on with the block file; src (the image's
                     * descriptor) is closed below, once */
        n->data_fd = fd;
        n->bf = bf;
        n->image = 0;
        n->writable = 1;
        fd = -1;
        bf = NULL;
    }
out:
    if (rc != 0) {
        char where[PATH_MAX];
        fs_where(n->fd, where, sizeof(where));
        fs_log(c, LOG_ERR, "%s: turning a stored image back into a block file failed: %s", where,
               fs_strerror(rc == -EBADMSG ? EIO : -rc));
        if (rc == -EBADMSG || rc == -ESTALE || rc == -EMLINK)
            rc = -EIO;
    }
    plain_put(p);
    codec_bf_close(bf);
    if (fd >= 0)
        close(fd);
    if (src >= 0 && src != n->data_fd)
        close(src);
    fs_dref_put(d);
    free(leaf);
    return rc;
}

/* ---- The read-only xattrs -------------------------------------------------------------------- */

int fs_image_xattr_name(const char *name)
{
    return strncmp(name, FS_XATTR_PREFIX, sizeof(FS_XATTR_PREFIX) - 1) == 0;
}

static void hex_id(const uint8_t id[KEYS_ID_BYTES], const char *none,
                   char out[2 * KEYS_ID_BYTES + 1])
{
    int zero = 1;
    for (size_t i = 0; i < KEYS_ID_BYTES; i++) {
        zero &= id[i] == 0;
        (void)snprintf(out + 2 * i, 3, "%02x", id[i]);
    }
    if (zero)
        (void)snprintf(out, 2 * KEYS_ID_BYTES + 1, "%s", none);
}

static int storage_value(struct fs_ctx *c, struct fs_node *n, char *out, size_t cap)
{
    struct stat st;
    struct codec_ct_info img;
    char coder[2 * KEYS_ID_BYTES + 1], ae[2 * KEYS_ID_BYTES + 1];
    if (n->type != S_IFREG)
        return -ENODATA;
    pthread_mutex_lock(&c->table_lock);
    int queued = n->queued;
    pthread_mutex_unlock(&c->table_lock);
    if (queued)
        return snprintf(out, cap, "queued");
    if (fstatat(n->fd, "", &st, AT_EMPTY_PATH) != 0)
        return -errno;
    int store = node_store(c, n, &st, &img);
    if (store < 0)
        return store;
    if (store != FS_STORE_IMAGE)
        return snprintf(out, cap, "blocks");
    hex_id(img.coder_id, "fixed", coder);
    hex_id(img.ae_id, "none", ae);
    return snprintf(out, cap, "image coder=%s autoencoder=%s", coder, ae);
}

/* The preview PNG of a stored image (*out, caller frees). */
static int preview_value(struct fs_ctx *c, struct fs_node *n, uint8_t **out, size_t *len)
{
    struct stat st;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    if (n->type != S_IFREG || !fs_image_is_stored(c, n))
        return -ENODATA;
    int fd = fs_node_reopen(n, O_RDONLY);
    if (fd < 0)
        return fd;
    int rc = slurp(fd, &st, &ct, &ct_len);
    if (rc == 0)
        rc = codec_pipeline_preview_fit(c->pl, ct, ct_len, FS_PREVIEW_MAX, out, len);
    free(ct);
    if (rc == -EBADMSG || rc == -EINVAL)
        rc = fs_err(c, -EBADMSG, fd, UINT64_MAX, "preview");
    close(fd);
    return rc == -ENOENT ? -ENODATA : rc;
}

int fs_image_getxattr(fuse_req_t req, struct fs_node *n, const char *name, size_t size)
{
    struct fs_ctx *c = fs_req_ctx(req);
    char text[160];
    uint8_t *val = NULL;
    size_t len = 0;
    int rc;
    if (!fs_image_xattr_name(name))
        return 0;
    if (strcmp(name, FS_XATTR_STORAGE) == 0) {
        rc = storage_value(c, n, text, sizeof(text));
        len = rc > 0 ? (size_t)rc : 0;
    } else if (strcmp(name, FS_XATTR_BACKLOG) == 0 && n == &c->root) {
        rc = snprintf(text, sizeof(text), "%u", fs_convert_backlog(c));
        len = (size_t)rc;
    } else if (strcmp(name, FS_XATTR_PREVIEW) == 0) {
        rc = preview_value(c, n, &val, &len);
    } else {
        rc = -ENODATA;
    }
    if (rc < 0)
        fuse_reply_err(req, -rc);
    else if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, val ? (const char *)val : text, len);
    free(val);
    return 1;
}
