// SPDX-License-Identifier: MIT
/*
 * Offline conversion (imgcrypt convert): the images of a store that are still block files
 * (written before images were stored as containers, or under -o images=off) become containers by
 * the mount's rule and with its functions (convert.c): read the block file, encode with verify,
 * write the container under a temporary name in the same folder with the original's owner, mode,
 * times and xattrs, fsync, rename it over the block file, fsync the folder. A kill at any point
 * leaves the block file or the container under the file's name, and at most a temporary file,
 * which the next run's sweep (sweep.c, run first) or the next mount's removes.
 *
 * The store must not be mounted meanwhile: a mount's nodes would go on naming the replaced
 * inodes. A mount of it shows in /proc/self/mountinfo as type fuse.imgcryptfs with the backing
 * folder's realpath as source (fs_mount_new's fsname); that is read before the run and again, at
 * most twice a second, before each rename. A flock on the backing folder keeps two runs apart.
 *
 * The worker threads take files from one depth-first walk under one lock: memory stays that of
 * the open folders whatever the size of the store, at the cost of a total known only at the
 * end of the walk. No name is decrypted: the walk needs none, and only PATH arguments are
 * sealed, component by component, to find where to start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fs/fs_int.h"

#define WALK_MAX_DEPTH 256        /* open folders of the walk; two descriptors each */
#define MOUNT_CHECK_NS 500000000L /* how often the mount table is read again */
#define MOUNT_TYPE "fuse.imgcryptfs"

/* What became of a file, when it did not fail (failures are -errno). */
enum outcome {
    OUT_CONVERTED = 1,
    OUT_IMAGE,
    OUT_NOT_IMAGE,
    OUT_NOT_SMALLER,
    OUT_LINKED,
    OUT_SKIPPED, /* not a regular file after all, or the run is ending: not counted */
};

struct ident {
    dev_t dev;
    ino_t ino;
};

/* Where the walk starts: a folder (leaf NULL), or one file of a folder. */
struct root {
    struct fs_dref *dir; /* O_RDONLY descriptor of the folder */
    char *leaf;
    struct ident *chain; /* the store's root, the folders down, then the entry itself */
    size_t chain_len;
};

struct level {
    DIR *d;
    struct fs_dref *dir; /* the same folder, for the files handed out (they outlive d) */
};

/* One file's result beyond its outcome. */
struct result {
    const char *reason; /* of a failure, when fs_convert_reason would not say it */
    unsigned long long before, after;
};

struct run {
    struct fs_ctx *c;
    const struct fs_offline_opts *o;
    char real[PATH_MAX]; /* the backing folder's realpath: a mount's source */
    struct root *roots;
    size_t nroots;
    pthread_mutex_t lock; /* guards the walk, the counts, the callback and the fields below */
    size_t next_root;
    struct level stack[WALK_MAX_DEPTH];
    unsigned depth;
    struct fs_offline_stats st;
    struct timespec checked; /* when the mount table was last read */
    int abort;               /* -EBUSY: the store was mounted meanwhile */
    char why[2 * PATH_MAX + 64];
};

/* ---- Is the store mounted? ---------------------------------------------------------------- */

/* Undo the octal escapes (\040 for a space, ...) of a mountinfo field, in place. */
static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* 1 when an imgcryptfs mount's source is `real` (its mount point in mnt), 0, or -errno. */
static int store_mounted(const char *real, char *mnt, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL, point[PATH_MAX], type[64], src[PATH_MAX];
    size_t n = 0;
    int found = 0;
    if (!f)
        return -errno;
    /* id parent major:minor root point options [tags] - type source superoptions */
    while (!found && getline(&line, &n, f) > 0) {
        char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
            sscanf(sep + 3, "%63s %4095s", type, src) != 2)
            continue;
        unescape(src);
        if (strcmp(type, MOUNT_TYPE) == 0 && strcmp(src, real) == 0) {
            unescape(point);
            (void)snprintf(mnt, cap, "%s", point);
            found = 1;
        }
    }
    free(line);
    (void)fclose(f);
    return found;
}

static int stop_asked(const struct run *r)
{
    return r->o->stop && *r->o->stop;
}

/* 0 when a file may be renamed: no stop was asked and the store is still not mounted (the
 * table read at most every MOUNT_CHECK_NS); else -ECANCELED. */
static int may_rename(struct run *r)
{
    struct timespec now;
    char mnt[PATH_MAX];
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&r->lock);
    long long ns = (long long)(now.tv_sec - r->checked.tv_sec) * 1000000000LL +
                   (now.tv_nsec - r->checked.tv_nsec);
    if (!r->abort && ns >= MOUNT_CHECK_NS) {
        r->checked = now;
        if (store_mounted(r->real, mnt, sizeof(mnt)) == 1) {
            r->abort = -EBUSY;
            (void)snprintf(r->why, sizeof(r->why), "%s was mounted on %s during the run: stopped",
                           r->real, mnt);
        }
    }
    int rc = r->abort || stop_asked(r) ? -ECANCELED : 0;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* The backing folder's realpath, the lock that keeps other runs out (where the backing
 * filesystem has flock), and the check that the store is not mounted. */
static int claim(struct run *r, const char *backing, int *lock_fd, char *why, size_t whylen)
{
    char mnt[PATH_MAX];
    int rc;
    if (!realpath(backing, r->real) ||
        (*lock_fd = open(r->real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        (void)snprintf(why, whylen, "%s: %s", backing, fs_strerror(-rc));
        return rc;
    }
    if (flock(*lock_fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        (void)snprintf(why, whylen, "%s: another imgcrypt convert is running on this store",
                       r->real);
        return -EBUSY;
    }
    if ((rc = store_mounted(r->real, mnt, sizeof(mnt))) < 0) {
        (void)snprintf(why, whylen, "/proc/self/mountinfo: %s", fs_strerror(-rc));
        return rc;
    }
    if (rc == 1) {
        (void)snprintf(why, whylen, "%s is mounted on %s: unmount it first", r->real, mnt);
        return -EBUSY;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->checked);
    return 0;
}

/* ---- Where to start: the PATH arguments --------------------------------------------------- */

static struct fs_dref *dref_of(int fd)
{
    struct fs_dref *d = fd >= 0 ? calloc(1, sizeof(*d)) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    d->fd = fd;
    d->refs = 1;
    return d;
}

static int chain_add(struct root *rt, int fd)
{
    struct stat st;
    struct ident *grown = realloc(rt->chain, (rt->chain_len + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    rt->chain = grown;
    if (fstat(fd, &st) != 0)
        return -errno;
    grown[rt->chain_len++] = (struct ident){st.st_dev, st.st_ino};
    return 0;
}

/* Say why PATH number i (from 1) does not resolve: never its plaintext, but the backing folder
 * reached and the sealed leaf looked for. */
static int path_error(char *why, size_t whylen, size_t i, int dfd, const char *leaf, int rc,
                      const char *reason)
{
    char where[PATH_MAX];
    fs_where(dfd, where, sizeof(where));
    (void)snprintf(why, whylen, "PATH %zu: %s (backing %s%s%s)", i,
                   reason ? reason : fs_strerror(-rc), where, leaf ? "/" : "", leaf ? leaf : "");
    return rc;
}

/* Go down one component: seal `name` for folder cur (its id read unless it is the root) and
 * open the entry (O_PATH, no symlink followed). Its descriptor (*leaf: its sealed name), or
 * -errno with the reason in why. */
static int step(struct fs_ctx *c, int cur, const char *name, char leaf[FS_ENC_CAP], size_t i,
                char *why, size_t whylen)
{
    uint8_t id[KEYS_ID_BYTES];
    struct fs_name nm;
    struct stat st;
    int rc = fstat(cur, &st) != 0 ? -errno : 0;
    if (rc == 0 && !S_ISDIR(st.st_mode))
        return path_error(why, whylen, i, cur, NULL, -ENOTDIR, "a file where a folder should be");
    if (rc == 0 && st.st_dev == c->root.dev && st.st_ino == c->root.ino)
        memcpy(id, c->root.dirid, KEYS_ID_BYTES);
    else if (rc == 0)
        rc = fs_dirid_read(c, cur, id);
    if (rc == 0 && (rc = fs_name_seal(c, id, name, &nm)) != 0)
        return path_error(why, whylen, i, cur, NULL, rc, "a name that no file can have");
    if (rc != 0)
        return path_error(why, whylen, i, cur, NULL, rc, NULL);
    int fd = openat(cur, nm.leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return path_error(why, whylen, i, cur, nm.leaf, -errno,
                          errno == ENOENT ? "no such file or folder in the store" : NULL);
    memcpy(leaf, nm.leaf, strlen(nm.leaf) + 1);
    return fd;
}

/* The walk root of what `cur` names (parent: its folder, leaf: its sealed name). */
static int make_root(int parent, int cur, const char *leaf, struct root *rt)
{
    struct stat st;
    if (fstat(cur, &st) != 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        rt->dir = dref_of(openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    else if (S_ISREG(st.st_mode) && parent >= 0 && (rt->leaf = strdup(leaf)) != NULL)
        rt->dir = dref_of(openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    else
        return S_ISREG(st.st_mode) ? -ENOMEM : -EINVAL;
    return rt->dir ? 0 : -errno ? -errno : -ENOMEM;
}

/* Resolve PATH number i (plaintext, from the store's root) into a walk root. */
static int resolve(struct fs_ctx *c, const char *path, size_t i, struct root *rt, char *why,
                   size_t whylen)
{
    char *copy = strdup(path), *save = NULL, leaf[FS_ENC_CAP] = "";
    int parent = -1, cur = fcntl(c->root.fd, F_DUPFD_CLOEXEC, 0), rc;
    rc = !copy ? -ENOMEM : cur < 0 ? -errno : chain_add(rt, cur);
    if (rc != 0)
        (void)snprintf(why, whylen, "%s", fs_strerror(-rc));
    for (char *name = copy ? strtok_r(copy, "/", &save) : NULL; rc == 0 && name;
         name = strtok_r(NULL, "/", &save)) {
        if (strcmp(name, ".") == 0)
            continue;
        if (strcmp(name, "..") == 0) {
            rc = path_error(why, whylen, i, cur, NULL, -EINVAL, "\"..\" is not allowed in a PATH");
            break;
        }
        int next = step(c, cur, name, leaf, i, why, whylen);
        if (next < 0) {
            rc = next;
            break;
        }
        if (parent >= 0)
            close(parent);
        parent = cur;
        cur = next;
        if ((rc = chain_add(rt, cur)) != 0)
            (void)snprintf(why, whylen, "%s", fs_strerror(-rc));
    }
    if (rc == 0 && (rc = make_root(parent, cur, leaf, rt)) != 0)
        path_error(why, whylen, i, parent >= 0 ? parent : cur, leaf[0] ? leaf : NULL, rc,
                   rc == -EINVAL ? "neither a file nor a folder" : NULL);
    if (parent >= 0)
        close(parent);
    if (cur >= 0)
        close(cur);
    free(copy);
    return rc;
}

/* Does root a hold root b: is a's entry b's, or a folder above it? */
static int holds(const struct root *a, const struct root *b)
{
    const struct ident *top = &a->chain[a->chain_len - 1];
    for (size_t k = 0; k < b->chain_len; k++)
        if (b->chain[k].dev == top->dev && b->chain[k].ino == top->ino)
            return 1;
    return 0;
}

static void root_free(struct root *rt)
{
    fs_dref_put(rt->dir);
    free(rt->leaf);
    free(rt->chain);
    memset(rt, 0, sizeof(*rt));
}

/* Drop the roots that another holds (the first of equal ones stays), so that no file is
 * converted twice at once. */
static int dedup(struct run *r)
{
    char *drop = calloc(r->nroots ? r->nroots : 1, 1);
    size_t kept = 0;
    if (!drop)
        return -ENOMEM;
    for (size_t b = 0; b < r->nroots; b++)
        for (size_t a = 0; a < r->nroots && !drop[b]; a++)
            drop[b] = (char)(a != b && !drop[a] && holds(&r->roots[a], &r->roots[b]) &&
                             (a < b || !holds(&r->roots[b], &r->roots[a])));
    for (size_t b = 0; b < r->nroots; b++) {
        if (drop[b])
            root_free(&r->roots[b]);
        else
            r->roots[kept++] = r->roots[b];
    }
    r->nroots = kept;
    free(drop);
    return 0;
}

static int make_roots(struct run *r, const char *const *paths, size_t npaths, char *why,
                      size_t whylen)
{
    static const char *const whole[] = {"/"};
    if (npaths == 0) {
        paths = whole;
        npaths = 1;
    }
    if (!(r->roots = calloc(npaths, sizeof(*r->roots))))
        return -ENOMEM;
    for (; r->nroots < npaths; r->nroots++) {
        int rc = resolve(r->c, paths[r->nroots], r->nroots + 1, &r->roots[r->nroots], why, whylen);
        if (rc != 0) {
            root_free(&r->roots[r->nroots]);
            return rc;
        }
    }
    return dedup(r);
}

/* ---- The walk ----------------------------------------------------------------------------- */

/* Count a failure and report it; lock held. */
static void failed_locked(struct run *r, int dfd, const char *leaf, const char *reason)
{
    char where[PATH_MAX + NAME_MAX + 2];
    fs_where(dfd, where, PATH_MAX);
    if (leaf) {
        size_t n = strlen(where);
        (void)snprintf(where + n, sizeof(where) - n, "/%s", leaf);
    }
    r->st.failed++;
    if (r->o->progress)
        r->o->progress(r->o->arg, &r->st, where, reason);
}

/* Start listing folder dir (the reference passes to the walk); lock held. */
static void push(struct run *r, struct fs_dref *dir)
{
    int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        const char *reason = fs_convert_reason(-errno);
        if (fd >= 0)
            close(fd);
        failed_locked(r, dir->fd, NULL, reason);
        fs_dref_put(dir);
        return;
    }
    r->stack[r->depth].d = d;
    r->stack[r->depth].dir = dir;
    r->depth++;
}

static void pop(struct run *r)
{
    struct level *l = &r->stack[--r->depth];
    closedir(l->d);
    fs_dref_put(l->dir);
}

static void descend(struct run *r, int parent, const char *name)
{
    if (r->depth == WALK_MAX_DEPTH) {
        failed_locked(r, parent, name, "folder nested too deep: not walked");
        return;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct fs_dref *d = fd >= 0 ? dref_of(fd) : NULL;
    if (!d)
        failed_locked(r, parent, name, fd < 0 ? fs_convert_reason(-errno) : "out of memory");
    else
        push(r, d);
}

/* DT_DIR or DT_REG for an entry to walk or convert, DT_UNKNOWN for one to pass by: names that
 * are not sealed names (the folder id, sidecars, temporary entries, the keyring) and anything
 * that is neither a folder nor a regular file. */
static int entry_kind(int dfd, const struct dirent *e)
{
    const char *name = e->d_name;
    size_t plen = sizeof(FS_LONG_PREFIX) - 1;
    struct stat st;
    if (fs_is_reserved(name) &&
        (strncmp(name, FS_LONG_PREFIX, plen) != 0 || strchr(name + plen, '.') != NULL))
        return DT_UNKNOWN;
    if (e->d_type != DT_UNKNOWN)
        return e->d_type == DT_DIR || e->d_type == DT_REG ? e->d_type : DT_UNKNOWN;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return DT_UNKNOWN;
    return S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
}

/* A file root is handed out (1); a folder root starts a listing (0). */
static int take_root(struct run *r, struct root *rt, struct fs_dref **dir, char **leaf)
{
    struct fs_dref *d = rt->dir;
    rt->dir = NULL;
    if (!rt->leaf) {
        push(r, d);
        return 0;
    }
    *dir = d;
    *leaf = rt->leaf;
    rt->leaf = NULL;
    r->st.files++;
    return 1;
}

/* The next file to look at: 1 with *dir (a reference for the caller) and *leaf (to free), 0
 * when there is none left or the run is ending. Lock held. */
static int next_locked(struct run *r, struct fs_dref **dir, char **leaf)
{
    while (!r->abort && !stop_asked(r)) {
        if (r->depth == 0) {
            if (r->next_root == r->nroots) {
                r->st.walked = 1;
                return 0;
            }
            if (take_root(r, &r->roots[r->next_root++], dir, leaf))
                return 1;
            continue;
        }
        struct level *l = &r->stack[r->depth - 1];
        errno = 0;
        struct dirent *e = readdir(l->d);
        if (!e) {
            if (errno)
                failed_locked(r, dirfd(l->d), NULL, fs_convert_reason(-errno));
            pop(r);
            continue;
        }
        int kind = entry_kind(dirfd(l->d), e);
        if (kind == DT_DIR) {
            descend(r, dirfd(l->d), e->d_name);
        } else if (kind == DT_REG && !(*leaf = strdup(e->d_name))) {
            failed_locked(r, dirfd(l->d), e->d_name, "out of memory");
        } else if (kind == DT_REG) {
            l->dir->refs++;
            *dir = l->dir;
            r->st.files++;
            return 1;
        }
    }
    return 0;
}

/* ---- One file ----------------------------------------------------------------------------- */

/* 0 for a block file to encode, or what it is: a stored image, a hard-linked file, or not a
 * regular file; -EBADMSG for a container this keyring does not open. */
static int classify(struct fs_ctx *c, int fd, const struct stat *st, struct result *res)
{
    uint8_t head[CODEC_CT_HEAD];
    struct codec_ct_info info;
    if (!S_ISREG(st->st_mode))
        return OUT_SKIPPED;
    ssize_t got = pread(fd, head, sizeof(head), 0);
    if (got < 0)
        return -errno;
    if (codec_ct_sniff(head, (size_t)got)) {
        if (codec_pipeline_head_info(c->pl, head, (size_t)got, &info) == 0)
            return OUT_IMAGE;
        res->reason = "a stored image whose head does not open with this keyring";
        return -EBADMSG;
    }
    return st->st_nlink != 1 ? OUT_LINKED : 0;
}

/* The container of the block file open as fd (*ct, *ct_len), by the mount's rule, or why
 * there is none. */
static int encode(struct fs_ctx *c, int fd, const struct stat *st, uint8_t **ct, size_t *ct_len,
                  struct result *res)
{
    int rc = fs_convert_encode(c, fd, st, ct, ct_len);
    if (rc == FS_SKIP_NOT_IMAGE)
        return OUT_NOT_IMAGE;
    if (rc == FS_SKIP_NOT_SMALLER)
        return OUT_NOT_SMALLER;
    if (rc == -EAGAIN)
        res->reason = "the block file ends before its size says (damaged)";
    if (rc == -EFBIG)
        res->reason = "too large to code within the memory budget (--convert-mb)";
    return rc;
}

/* Is `leaf` still the file that was read (st)? */
static int unchanged(int dfd, const char *leaf, const struct stat *was)
{
    struct stat now;
    return fstatat(dfd, leaf, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == was->st_dev &&
           now.st_ino == was->st_ino && now.st_nlink == 1 && now.st_size == was->st_size &&
           now.st_mtim.tv_sec == was->st_mtim.tv_sec && now.st_mtim.tv_nsec == was->st_mtim.tv_nsec;
}

/* Put the container in place of the block file `leaf` of folder dfd (open as fd, st). */
static int replace(struct fs_ctx *c, int dfd, const char *leaf, int fd, const struct stat *st,
                   const uint8_t *ct, size_t ct_len, struct result *res)
{
    char tmp[FS_TMP_CAP] = "";
    int tfd = -1;
    int rc = fs_convert_write(c, dfd, fd, ct, ct_len, tmp, &tfd);
    if (rc == 0 && !unchanged(dfd, leaf, st)) {
        rc = -ESTALE;
        res->reason = "it changed during the conversion";
    }
    if (rc == 0 && renameat(dfd, tmp, dfd, leaf) != 0)
        rc = -errno;
    if (rc != 0 && tmp[0])
        (void)unlinkat(dfd, tmp, 0);
    if (rc == 0 && fsync(dfd) != 0) {
        rc = -errno;
        res->reason = "converted, but the fsync of its folder failed (after a crash either form "
                      "may be found)";
    }
    if (tfd >= 0)
        close(tfd);
    return rc == 0 ? OUT_CONVERTED : rc;
}

/* Open without touching the access time where the owner's rights allow it. */
static int open_quiet(int dfd, const char *leaf)
{
    int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd = openat(dfd, leaf, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dfd, leaf, flags);
    return fd;
}

/* Look at one file: an outcome, or -errno (res->reason may say more). */
static int convert_file(struct run *r, int dfd, const char *leaf, struct result *res)
{
    struct stat st;
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    int fd = open_quiet(dfd, leaf), rc;
    if (fd < 0)
        return errno == ELOOP ? OUT_SKIPPED : -errno;
    rc = fstat(fd, &st) != 0 ? -errno : classify(r->c, fd, &st, res);
    if (rc == 0)
        rc = encode(r->c, fd, &st, &ct, &ct_len, res);
    if (rc == 0 && (rc = may_rename(r)) == 0)
        rc = replace(r->c, dfd, leaf, fd, &st, ct, ct_len, res);
    if (rc == OUT_CONVERTED) {
        res->before = (unsigned long long)st.st_size;
        res->after = ct_len;
    }
    free(ct);
    close(fd);
    return rc;
}

static void account(struct run *r, int dfd, const char *leaf, int rc, const struct result *res)
{
    pthread_mutex_lock(&r->lock);
    if (rc < 0 && rc != -ECANCELED) {
        failed_locked(r, dfd, leaf, res->reason ? res->reason : fs_convert_reason(rc));
        pthread_mutex_unlock(&r->lock);
        return;
    }
    r->st.converted += rc == OUT_CONVERTED;
    r->st.images += rc == OUT_IMAGE;
    r->st.not_images += rc == OUT_NOT_IMAGE;
    r->st.not_smaller += rc == OUT_NOT_SMALLER;
    r->st.linked += rc == OUT_LINKED;
    r->st.bytes_before += res->before;
    r->st.bytes_after += res->after;
    if (r->o->progress)
        r->o->progress(r->o->arg, &r->st, NULL, NULL);
    pthread_mutex_unlock(&r->lock);
}

static void *worker(void *arg)
{
    struct run *r = arg;
    struct fs_dref *dir = NULL;
    char *leaf = NULL;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        int more = next_locked(r, &dir, &leaf);
        pthread_mutex_unlock(&r->lock);
        if (!more)
            return NULL;
        struct result res = {NULL, 0, 0};
        int rc = convert_file(r, dir->fd, leaf, &res);
        account(r, dir->fd, leaf, rc, &res);
        fs_dref_put(dir);
        free(leaf);
    }
}

static void run_workers(struct run *r)
{
    unsigned n = r->c->workers ? r->c->workers : 1, started = 0;
    pthread_t *t = calloc(n, sizeof(*t));
    while (t && started < n && pthread_create(&t[started], NULL, worker, r) == 0)
        started++;
    if (started == 0) /* no thread to be had: this one does the work */
        worker(r);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
}

static void run_release(struct run *r)
{
    while (r->depth > 0)
        pop(r);
    for (size_t i = 0; i < r->nroots; i++)
        root_free(&r->roots[i]);
    free(r->roots);
    pthread_mutex_destroy(&r->lock);
}

int fs_offline_convert(const char *backing, const struct keys_ring *ring, const char *const *paths,
                       size_t npaths, const struct fs_offline_opts *opts,
                       struct fs_offline_stats *st, char *why, size_t whylen)
{
    struct fs_config cfg = {.coder = opts->coder,
                            .workers = opts->threads,
                            .cache_mb = 0,
                            .convert_mb = opts->convert_mb};
    struct run *r = calloc(1, sizeof(*r));
    int lock_fd = -1, have_ctx = 0, rc;
    memset(st, 0, sizeof(*st));
    if (!r || !(r->c = calloc(1, sizeof(*r->c)))) {
        free(r);
        return -ENOMEM;
    }
    r->o = opts;
    pthread_mutex_init(&r->lock, NULL);
    cfg.backing = r->real;
    if ((rc = claim(r, backing, &lock_fd, why, whylen)) == 0) {
        have_ctx = 1;
        rc = fs_ctx_init(r->c, &cfg, ring, why, whylen);
    }
    if (rc == 0 && (rc = make_roots(r, paths, npaths, why, whylen)) == 0) {
        r->st.removed = fs_sweep(r->c);
        run_workers(r);
        rc = r->abort ? r->abort : stop_asked(r) ? -EINTR : 0;
        if (r->abort)
            (void)snprintf(why, whylen, "%s", r->why);
    }
    *st = r->st;
    run_release(r);
    if (have_ctx)
        fs_ctx_release(r->c);
    if (lock_fd >= 0)
        close(lock_fd);
    free(r->c);
    free(r);
    return rc;
}
