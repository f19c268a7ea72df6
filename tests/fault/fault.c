// SPDX-License-Identifier: MIT
/*
 * libimgc_fault.so: an LD_PRELOAD shim for tests that makes chosen libc calls of the process it
 * is loaded into (the imgcryptfs daemon) fail, or transfer half of what they were asked, but only
 * on files under one folder (the backing folder), so that the FUSE device, the keyring and
 * everything else stay untouched. The trade-off: a path is resolved for every call of a kind a
 * rule names (a readlink of /proc/self/fd/N), which is slow but exact, and costs nothing for
 * calls no rule names.
 *
 * Environment:
 *   IMGC_FAULT_ROOT  the folder whose files are hit (required; without it nothing is injected).
 *   IMGC_FAULT_CTL   a control file, re-read whenever its inode, size or mtime change (one stat
 *                    per intercepted call); write a new file and rename it over to change rules.
 *   IMGC_FAULT       rules used while there is no control file (';' separates rules).
 *   IMGC_FAULT_LOG   a file to which every injection appends one line: "CALL ACTION PATH"; and
 *                    every close() that finds no open descriptor (a descriptor closed twice,
 *                    never injected): "close EBADF fd=N".
 *
 * A rule, one per line ('#' starts a comment):
 *   CALL ACTION [after=N] [times=M] [prob=P] [match=SUBSTRING] [acc=ro|wo|rw]
 * CALL: pwrite, pread, write, read, fsync, fdatasync, openat (every open), renameat (rename,
 * renameat, renameat2), ftruncate, fallocate, fsetxattr (setxattr, lsetxattr, fsetxattr), lseek,
 * or '*'. ACTION: an errno name (EIO, ENOSPC, EINTR, EDQUOT, EROFS, EFBIG, ENOMEM, EAGAIN,
 * EACCES, EPERM, EOPNOTSUPP, EINVAL) or
 * "short" (read/write calls: half of the count is transferred, at least one byte). A call
 * matching a rule (its kind, the backing path containing SUBSTRING, a descriptor open with the
 * access mode acc) is counted; the first `after` matching calls pass, then at most `times` of
 * them (0: no limit, the default) are hit, each with probability P (default 1). Counts start
 * again whenever the rules are re-read. The first rule that fires wins.
 */
#undef _FILE_OFFSET_BITS /* the interposed names must be the real symbols, not their aliases */
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#define FAULT_MAX_RULES 32
#define FAULT_MATCH_CAP 128

enum fault_call {
    FAULT_PWRITE,
    FAULT_PREAD,
    FAULT_WRITE,
    FAULT_READ,
    FAULT_FSYNC,
    FAULT_FDATASYNC,
    FAULT_OPENAT,
    FAULT_RENAMEAT,
    FAULT_FTRUNCATE,
    FAULT_FALLOCATE,
    FAULT_FSETXATTR,
    FAULT_LSEEK,
    FAULT_CALLS,
    FAULT_ANY = FAULT_CALLS
};

static const char *const call_names[FAULT_CALLS] = {
    "pwrite", "pread",    "write",     "read",      "fsync",     "fdatasync",
    "openat", "renameat", "ftruncate", "fallocate", "fsetxattr", "lseek",
};

#define FAULT_SHORT (-1)

struct fault_rule {
    int call;   /* enum fault_call */
    int action; /* an errno, or FAULT_SHORT */
    unsigned long after, times, seen, fired;
    double prob;
    int acc; /* -1: any, else O_RDONLY, O_WRONLY or O_RDWR */
    char match[FAULT_MATCH_CAP];
};

/* All of the shim's state, guarded by lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault_rule rules[FAULT_MAX_RULES];
static int nrules;
static unsigned wanted; /* bit per call kind named by a rule */
static char root[PATH_MAX];
static size_t root_len;
static const char *ctl_path, *log_path;
static struct stat ctl_seen;
static int ctl_loaded;
static uint64_t rng = 0x9e3779b97f4a7c15u;
static __thread int inside; /* the shim's own calls are never hit */

static const struct {
    const char *name;
    int value;
} errnos[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EINTR", EINTR},           {"EDQUOT", EDQUOT},
    {"EROFS", EROFS},   {"EFBIG", EFBIG},   {"ENOMEM", ENOMEM},         {"EAGAIN", EAGAIN},
    {"EACCES", EACCES}, {"EPERM", EPERM},   {"EOPNOTSUPP", EOPNOTSUPP}, {"EINVAL", EINVAL},
};

static const char *action_name(int action)
{
    if (action == FAULT_SHORT)
        return "short";
    for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
        if (errnos[i].value == action)
            return errnos[i].name;
    return "?";
}

static void parse_rule(char *line)
{
    struct fault_rule r = {.call = -1, .action = 0, .prob = 1.0, .acc = -1};
    char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok || tok[0] == '#' || nrules == FAULT_MAX_RULES)
        return;
    if (strcmp(tok, "*") == 0)
        r.call = FAULT_ANY;
    for (int i = 0; i < FAULT_CALLS; i++)
        if (strcmp(tok, call_names[i]) == 0)
            r.call = i;
    if (r.call < 0 || !(tok = strtok_r(NULL, " \t\r\n", &save)))
        return;
    if (strcmp(tok, "short") == 0)
        r.action = FAULT_SHORT;
    for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
        if (strcmp(tok, errnos[i].name) == 0)
            r.action = errnos[i].value;
    if (r.action == 0)
        return;
    while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
        if (tok[0] == '#')
            break;
        if (strncmp(tok, "after=", 6) == 0)
            r.after = strtoul(tok + 6, NULL, 10);
        else if (strncmp(tok, "times=", 6) == 0)
            r.times = strtoul(tok + 6, NULL, 10);
        else if (strncmp(tok, "prob=", 5) == 0)
            r.prob = strtod(tok + 5, NULL);
        else if (strncmp(tok, "match=", 6) == 0)
            snprintf(r.match, sizeof(r.match), "%s", tok + 6);
        else if (strcmp(tok, "acc=ro") == 0)
            r.acc = O_RDONLY;
        else if (strcmp(tok, "acc=wo") == 0)
            r.acc = O_WRONLY;
        else if (strcmp(tok, "acc=rw") == 0)
            r.acc = O_RDWR;
    }
    rules[nrules++] = r;
    wanted |= r.call == FAULT_ANY ? (1u << FAULT_CALLS) - 1 : 1u << r.call;
}

static void parse_rules(char *text, const char *seps)
{
    char *save = NULL;
    nrules = 0;
    wanted = 0;
    for (char *line = strtok_r(text, seps, &save); line; line = strtok_r(NULL, seps, &save))
        parse_rule(line);
}

/* Re-read the control file if it changed; lock held. Raw system calls: nothing recurses. */
static void reload(void)
{
    struct stat st;
    if (!ctl_path)
        return;
    if (stat(ctl_path, &st) != 0) {
        if (ctl_loaded) { /* removed: no rules */
            ctl_loaded = 0;
            nrules = 0;
            wanted = 0;
        }
        return;
    }
    if (ctl_loaded && st.st_ino == ctl_seen.st_ino && st.st_size == ctl_seen.st_size &&
        st.st_mtim.tv_sec == ctl_seen.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == ctl_seen.st_mtim.tv_nsec)
        return;
    char text[8192];
    long fd = syscall(SYS_openat, AT_FDCWD, ctl_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    size_t got = 0;
    for (;;) {
        long n = syscall(SYS_read, (int)fd, text + got, sizeof(text) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    syscall(SYS_close, (int)fd);
    text[got] = '\0';
    parse_rules(text, "\n");
    ctl_seen = st;
    ctl_loaded = 1;
}

__attribute__((constructor)) static void fault_init(void)
{
    const char *r = getenv("IMGC_FAULT_ROOT");
    if (!r || !realpath(r, root))
        return;
    root_len = strlen(root);
    ctl_path = getenv("IMGC_FAULT_CTL");
    log_path = getenv("IMGC_FAULT_LOG");
    const char *inline_rules = getenv("IMGC_FAULT");
    if (inline_rules) {
        static char copy[4096];
        snprintf(copy, sizeof(copy), "%s", inline_rules);
        parse_rules(copy, ";\n");
    }
    rng ^= (uint64_t)getpid() << 17;
}

static int fd_path(int fd, char *out, size_t cap)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, out, cap - 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

/* The absolute path that (dirfd, path) names, as well as it can be told without following it. */
static int at_path(int dirfd, const char *path, char *out, size_t cap)
{
    if (!path)
        return -1;
    if (strncmp(path, "/proc/self/fd/", 14) == 0) {
        char *end;
        long fd = strtol(path + 14, &end, 10);
        if (*end == '\0')
            return fd_path((int)fd, out, cap);
    }
    if (path[0] == '/') {
        snprintf(out, cap, "%s", path);
        return 0;
    }
    char dir[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(dir, sizeof(dir)))
            return -1;
    } else if (fd_path(dirfd, dir, sizeof(dir)) != 0) {
        return -1;
    }
    int n = snprintf(out, cap, "%s/%s", dir, path);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static int under_root(const char *path)
{
    return strncmp(path, root, root_len) == 0 && (path[root_len] == '/' || !path[root_len]);
}

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void log_line(const char *call, const char *action, const char *path)
{
    if (!log_path)
        return;
    char line[PATH_MAX + 64];
    int n = snprintf(line, sizeof(line), "%s %s %s\n", call, action, path);
    long fd =
        syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (syscall(SYS_write, (int)fd, line,
                (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1)) < 0) {
    }
    syscall(SYS_close, (int)fd);
}

static void log_hit(int call, int action, const char *path)
{
    log_line(call_names[call], action_name(action), path);
}

/*
 * Should this call fail? 0: no; an errno; or FAULT_SHORT. fd >= 0 names the file by descriptor,
 * else (dirfd, path) by name. errno is kept.
 */
static int decide(int call, int fd, int dirfd, const char *path)
{
    if (!root_len || inside)
        return 0;
    int saved = errno, action = 0;
    inside = 1;
    pthread_mutex_lock(&lock);
    reload();
    if (wanted & (1u << call)) {
        char where[PATH_MAX];
        int acc = -1;
        int known = fd >= 0 ? fd_path(fd, where, sizeof(where))
                            : at_path(dirfd, path, where, sizeof(where));
        if (known == 0 && under_root(where)) {
            if (fd >= 0) {
                int fl = fcntl(fd, F_GETFL);
                acc = fl < 0 ? -1 : fl & O_ACCMODE;
            }
            for (int i = 0; i < nrules && !action; i++) {
                struct fault_rule *r = &rules[i];
                if ((r->call != call && r->call != FAULT_ANY) ||
                    (r->match[0] && !strstr(where, r->match)) || (r->acc >= 0 && r->acc != acc))
                    continue;
                if (r->action == FAULT_SHORT && call != FAULT_PWRITE && call != FAULT_PREAD &&
                    call != FAULT_WRITE && call != FAULT_READ)
                    continue;
                r->seen++;
                if (r->seen <= r->after || (r->times && r->fired >= r->times) ||
                    (r->prob < 1.0 && uniform() >= r->prob))
                    continue;
                r->fired++;
                action = r->action;
                log_hit(call, action, where);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    inside = 0;
    errno = saved;
    return action;
}

/* The next definition of libc function `name`, looked up once. */
#define REAL(name)                                                                                 \
    (__extension__({                                                                               \
        static __typeof__(&(name)) next_;                                                          \
        if (!next_)                                                                                \
            next_ = (__typeof__(&(name)))real(#name);                                              \
        next_;                                                                                     \
    }))

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f)
        abort(); /* a programmer error: a name this libc does not have */
    return f;
}

/* Return ret with errno set when the decision is an errno (evaluated once). */
#define FAIL_WITH(decision, ret)                                                                   \
    do {                                                                                           \
        int fail_ = (decision);                                                                    \
        if (fail_ > 0) {                                                                           \
            errno = fail_;                                                                         \
            return (ret);                                                                          \
        }                                                                                          \
    } while (0)

static size_t shorter(int action, size_t n)
{
    return action == FAULT_SHORT && n > 1 ? n / 2 : n;
}

/* ---- read and write ---------------------------------------------------------------------- */

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int a = decide(FAULT_PWRITE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(pwrite)(fd, buf, shorter(a, n), off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    int a = decide(FAULT_PWRITE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(pwrite64)(fd, buf, shorter(a, n), off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    int a = decide(FAULT_PREAD, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(pread)(fd, buf, shorter(a, n), off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
    int a = decide(FAULT_PREAD, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(pread64)(fd, buf, shorter(a, n), off);
}

ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t cap);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t cap)
{
    if (n > cap)
        abort();
    return pread(fd, buf, n, off);
}

ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t cap);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t cap)
{
    if (n > cap)
        abort();
    return pread64(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    int a = decide(FAULT_WRITE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(write)(fd, buf, shorter(a, n));
}

ssize_t read(int fd, void *buf, size_t n)
{
    int a = decide(FAULT_READ, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(read)(fd, buf, shorter(a, n));
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t cap);
ssize_t __read_chk(int fd, void *buf, size_t n, size_t cap)
{
    if (n > cap)
        abort();
    return read(fd, buf, n);
}

/* ---- sync, size ---------------------------------------------------------------------------- */

int fsync(int fd)
{
    int a = decide(FAULT_FSYNC, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
    int a = decide(FAULT_FDATASYNC, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(fdatasync)(fd);
}

int ftruncate(int fd, off_t len)
{
    int a = decide(FAULT_FTRUNCATE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(ftruncate)(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
    int a = decide(FAULT_FTRUNCATE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(ftruncate64)(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    int a = decide(FAULT_FALLOCATE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(fallocate)(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    int a = decide(FAULT_FALLOCATE, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(fallocate64)(fd, mode, off, len);
}

off_t lseek(int fd, off_t off, int whence)
{
    int a = decide(FAULT_LSEEK, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(lseek)(fd, off, whence);
}

off64_t lseek64(int fd, off64_t off, int whence)
{
    int a = decide(FAULT_LSEEK, fd, -1, NULL);
    FAIL_WITH(a, -1);
    return REAL(lseek64)(fd, off, whence);
}

/* ---- opening ----------------------------------------------------------------------------------
 */

static mode_t mode_arg(int flags, va_list ap)
{
    /* ap: started by the caller, the analyzer does not follow it into here */
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE
               ? (mode_t)va_arg(ap, int) // NOLINT(clang-analyzer-valist.Uninitialized)
               : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    FAIL_WITH(decide(FAULT_OPENAT, -1, AT_FDCWD, path), -1);
    return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    FAIL_WITH(decide(FAULT_OPENAT, -1, AT_FDCWD, path), -1);
    return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    FAIL_WITH(decide(FAULT_OPENAT, -1, dirfd, path), -1);
    return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    FAIL_WITH(decide(FAULT_OPENAT, -1, dirfd, path), -1);
    return REAL(openat64)(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags);
int __open_2(const char *path, int flags)
{
    return open(path, flags);
}

int __open64_2(const char *path, int flags);
int __open64_2(const char *path, int flags)
{
    return open64(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags)
{
    return openat(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags)
{
    return openat64(dirfd, path, flags);
}

/* ---- names and xattrs -------------------------------------------------------------------------
 */

int rename(const char *from, const char *to)
{
    FAIL_WITH(decide(FAULT_RENAMEAT, -1, AT_FDCWD, from), -1);
    return REAL(rename)(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    FAIL_WITH(decide(FAULT_RENAMEAT, -1, fromfd, from), -1);
    return REAL(renameat)(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    FAIL_WITH(decide(FAULT_RENAMEAT, -1, fromfd, from), -1);
    return REAL(renameat2)(fromfd, from, tofd, to, flags);
}

int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    FAIL_WITH(decide(FAULT_FSETXATTR, fd, -1, NULL), -1);
    return REAL(fsetxattr)(fd, name, value, size, flags);
}

int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    FAIL_WITH(decide(FAULT_FSETXATTR, -1, AT_FDCWD, path), -1);
    return REAL(setxattr)(path, name, value, size, flags);
}

int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
    FAIL_WITH(decide(FAULT_FSETXATTR, -1, AT_FDCWD, path), -1);
    return REAL(lsetxattr)(path, name, value, size, flags);
}

/* ---- close ------------------------------------------------------------------------------- */

/* Never failed on purpose, but watched: a close that finds no open descriptor (EBADF) means
 * the process closed one twice, and in a threaded daemon the number may already name another
 * thread's file. Each is logged as "close EBADF fd=N", for the test to find. */
int close(int fd)
{
    int rc = REAL(close)(fd);
    if (rc != 0 && errno == EBADF && root_len && !inside) {
        char what[32];
        snprintf(what, sizeof(what), "fd=%d", fd);
        log_line("close", "EBADF", what);
        errno = EBADF;
    }
    return rc;
}
