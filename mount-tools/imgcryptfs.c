// SPDX-License-Identifier: MIT
/*
 * imgcryptfs: the filesystem daemon. Parses `[-f] [-d] [-o OPTS] BACKING MOUNTPOINT`, unlocks
 * the keyring, mounts, and serves until unmounted or signalled.
 *
 * Without -f it forks first and the parent waits on a pipe for the child's verdict, so the
 * command returns only once the mount is live (or with the reason it is not). Forking before
 * the keys are unlocked, rather than after, keeps the keys in the one process that serves the
 * mount: locked memory is not inherited across fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#include <dirent.h>

#include "fs/fs.h"
#include "nn/nn.h"
#include "keys/keys.h"
#include "mount-tools/tool.h"

static const char usage_text[] =
    "usage: imgcryptfs [-f] [-d] [-o OPTIONS] BACKING MOUNTPOINT\n"
    "\n"
    "  -f            stay in the foreground, log to stderr\n"
    "  -d            FUSE debug output (implies -f)\n"
    "  -o OPTIONS    comma-separated: keyring=PATH, passfile=FILE, extpass=CMD, keyfile=FILE,\n"
    "                threads=N, nonempty, images=network|off, "
    "coder=neural|fixed|smallest|neural-only,\n"
    "                workers=N, cache_mb=N, convert_mb=N, and FUSE options (allow_other,\n"
    "                default_permissions, ro, ...); fstab-only options (nofail, _netdev,\n"
    "                x-systemd.*) are ignored\n"
    "\n"
    "See imgcryptfs(8).\n";

struct args {
    int foreground, debug, nonempty;
    unsigned threads;
    int images_off, coder;
    unsigned workers;
    long cache_mb;
    unsigned long convert_mb;
    const char *backing, *mountpoint, *keyring;
    struct keys_source src;
    int have_src;
    char fuse_opts[4096];
    size_t fuse_len;
    char *copies[32]; /* the -o strings, split in place: option values point into them */
    int ncopies;
};

static int ignored_option(const char *o)
{
    static const char *const words[] = {"nofail", "_netdev",  "auto",  "noauto", "user", "users",
                                        "nouser", "defaults", "owner", "group",  NULL};
    for (int i = 0; words[i]; i++)
        if (strcmp(o, words[i]) == 0)
            return 1;
    return strncmp(o, "x-", 2) == 0 || strncmp(o, "comment=", 8) == 0;
}

static int add_fuse_opt(struct args *a, const char *o)
{
    size_t len = strlen(o);
    if (a->fuse_len + len + 2 > sizeof(a->fuse_opts))
        return -E2BIG;
    if (a->fuse_len)
        a->fuse_opts[a->fuse_len++] = ',';
    memcpy(a->fuse_opts + a->fuse_len, o, len + 1);
    a->fuse_len += len;
    return 0;
}

/* NAME=V with V a whole number in [lo, hi], else a message naming the option. */
static int number_option(const char *o, long lo, long hi, long *v)
{
    const char *eq = strchr(o, '=');
    char *end = NULL;
    errno = 0;
    *v = strtol(eq + 1, &end, 10);
    if (!eq[1] || *end || errno || *v < lo || *v > hi) {
        tool_error("%.*s takes %ld to %ld", (int)(eq - o + 1), o, lo, hi);
        return -1;
    }
    return 0;
}

/* Split one -o argument; our options are consumed, FUSE ones collected. Modifies `s`. */
static int parse_o(struct args *a, char *s)
{
    for (char *save = NULL, *o = strtok_r(s, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(o, '=');
        if (eq && (strncmp(o, "passfile=", 9) == 0 || strncmp(o, "extpass=", 8) == 0 ||
                   strncmp(o, "keyfile=", 8) == 0)) {
            *eq = '\0';
            if (tool_set_source(&a->src, &a->have_src, o, eq + 1) != 0) {
                tool_error("give one of passfile=, extpass=, keyfile= at most");
                return TOOL_EXIT_USAGE;
            }
        } else if (strncmp(o, "keyring=", 8) == 0) {
            a->keyring = o + 8;
        } else if (strncmp(o, "threads=", 8) == 0) {
            long v;
            if (number_option(o, 1, 256, &v) != 0)
                return TOOL_EXIT_USAGE;
            a->threads = (unsigned)v;
        } else if (strncmp(o, "workers=", 8) == 0) {
            long v;
            if (number_option(o, 1, 256, &v) != 0)
                return TOOL_EXIT_USAGE;
            a->workers = (unsigned)v;
        } else if (strncmp(o, "convert_mb=", 11) == 0) {
            long v;
            if (number_option(o, 64, 1L << 20, &v) != 0)
                return TOOL_EXIT_USAGE;
            a->convert_mb = (unsigned long)v;
        } else if (strncmp(o, "cache_mb=", 9) == 0) {
            if (number_option(o, 0, 1L << 20, &a->cache_mb) != 0)
                return TOOL_EXIT_USAGE;
        } else if (strncmp(o, "images=", 7) == 0) {
            if (strcmp(o + 7, "network") != 0 && strcmp(o + 7, "off") != 0) {
                tool_error("images= takes network or off");
                return TOOL_EXIT_USAGE;
            }
            a->images_off = strcmp(o + 7, "off") == 0;
        } else if (strncmp(o, "coder=", 6) == 0) {
            if ((a->coder = tool_parse_coder(o + 6)) < 0) {
                tool_error("coder= takes neural, fixed, smallest or neural-only");
                return TOOL_EXIT_USAGE;
            }
        } else if (strcmp(o, "nonempty") == 0) {
            a->nonempty = 1;
        } else if (ignored_option(o)) {
            continue;
        } else {
            if (strcmp(o, "allow_other") == 0 && add_fuse_opt(a, "default_permissions") != 0)
                return TOOL_EXIT_USAGE;
            if (add_fuse_opt(a, o) != 0) {
                tool_error("too many options");
                return TOOL_EXIT_USAGE;
            }
        }
    }
    return TOOL_EXIT_OK;
}

/* Does the folder hold anything besides imgcryptfs's own names (so init would refuse it)? */
static int store_holds_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    if (!d)
        return 0;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return found;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    const char *pos[2];
    int npos = 0;
    memset(a, 0, sizeof(*a));
    a->src.kind = KEYS_SRC_TTY;
    a->cache_mb = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            (void)fputs(usage_text, stdout);
            exit(TOOL_EXIT_OK);
        } else if (strcmp(s, "--version") == 0 || strcmp(s, "-V") == 0) {
            printf("imgcryptfs %s\n", IMGCRYPTFS_VERSION);
            exit(TOOL_EXIT_OK);
        } else if (strcmp(s, "-f") == 0) {
            a->foreground = 1;
        } else if (strcmp(s, "-d") == 0) {
            a->debug = a->foreground = 1;
        } else if (strncmp(s, "-o", 2) == 0) {
            const char *v = s[2] ? s + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                tool_error("-o needs a value");
                return TOOL_EXIT_USAGE;
            }
            if (a->ncopies == (int)(sizeof(a->copies) / sizeof(a->copies[0]))) {
                tool_error("too many -o options");
                return TOOL_EXIT_USAGE;
            }
            char *copy = strdup(v);
            if (!copy)
                return TOOL_EXIT_IO;
            a->copies[a->ncopies++] = copy;
            int rc = parse_o(a, copy);
            if (rc != TOOL_EXIT_OK)
                return rc;
        } else if (s[0] == '-' && s[1]) {
            tool_error("unknown option %s", s);
            (void)fputs(usage_text, stderr);
            return TOOL_EXIT_USAGE;
        } else if (npos < 2) {
            pos[npos++] = s;
        } else {
            tool_error("too many arguments");
            return TOOL_EXIT_USAGE;
        }
    }
    if (npos != 2) {
        (void)fputs(usage_text, stderr);
        return TOOL_EXIT_USAGE;
    }
    a->backing = pos[0];
    a->mountpoint = pos[1];
    return TOOL_EXIT_OK;
}

/* Refuse a mount point that is missing, already a mount, or (without nonempty) not empty. */
static int check_mountpoint(const struct args *a)
{
    struct stat st, up;
    char parent[PATH_MAX];
    if (stat(a->mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tool_error("%s: mount point %s", a->mountpoint,
                   errno == ENOENT ? "does not exist" : "is not a folder");
        return TOOL_EXIT_MOUNT;
    }
    /* systemd's x-systemd.automount puts an autofs trigger there first: mounting over that is
     * what it expects; any other mount there means the mount point is busy. */
    struct statfs sf;
    int autofs = statfs(a->mountpoint, &sf) == 0 && sf.f_type == AUTOFS_SUPER_MAGIC;
    if (!autofs && snprintf(parent, sizeof(parent), "%s/..", a->mountpoint) < (int)sizeof(parent) &&
        stat(parent, &up) == 0 && (up.st_dev != st.st_dev || up.st_ino == st.st_ino)) {
        tool_error("%s: already a mount point (busy); unmount it first", a->mountpoint);
        return TOOL_EXIT_MOUNT;
    }
    if (!a->nonempty && !autofs) {
        DIR *d = opendir(a->mountpoint);
        struct dirent *e;
        int used = 0;
        while (d && (e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                used = 1;
        if (d)
            closedir(d);
        if (used) {
            tool_error("%s: mount point is not empty (use -o nonempty to mount over it)",
                       a->mountpoint);
            return TOOL_EXIT_MOUNT;
        }
    }
    return TOOL_EXIT_OK;
}

/* Tell the waiting parent how it went; after this the child is on its own. */
static void report(int *pipe_fd, int code)
{
    if (*pipe_fd < 0)
        return;
    unsigned char b = (unsigned char)code;
    if (write(*pipe_fd, &b, 1) != 1) { /* the parent is gone: nothing to tell */
    }
    close(*pipe_fd);
    *pipe_fd = -1;
}

static void detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)dup2(fd, STDIN_FILENO);
    (void)dup2(fd, STDOUT_FILENO);
    (void)dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Called once, at the first secret keys/ could not mlock (keys_set_memlock_warning). */
#define MEMLOCK_WARNING                                                                            \
    "warning: cannot lock %zu bytes of key memory (%s): keys may reach swap; raise the memlock "   \
    "limit (ulimit -l, LimitMEMLOCK=) or use encrypted swap"
static void memlock_warn_stderr(void *arg, int err, size_t len)
{
    (void)arg;
    tool_error(MEMLOCK_WARNING, len, strerror(-err));
}

static void memlock_warn_syslog(void *arg, int err, size_t len)
{
    (void)arg;
    syslog(LOG_WARNING, MEMLOCK_WARNING, len, strerror(-err));
}

static int run(int argc, char **argv, struct args *ap)
{
    struct args a;
    char keyring[PATH_MAX], why[1024] = "";
    char backing[PATH_MAX], mnt[PATH_MAX];
    struct keys_ring *ring = NULL;
    struct fs_mount *m = NULL;
    int status_fd = -1;

    int rc = parse_args(argc, argv, &a);
    *ap = a; /* the caller frees the option strings, whichever way this returns */
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (!realpath(a.backing, backing)) {
        tool_error("%s: backing folder: %s", a.backing, strerror(errno));
        return TOOL_EXIT_IO;
    }
    if (!realpath(a.mountpoint, mnt)) {
        tool_error("%s: mount point does not exist", a.mountpoint);
        return TOOL_EXIT_MOUNT;
    }
    a.backing = backing;
    a.mountpoint = mnt;
    if ((rc = check_mountpoint(&a)) != TOOL_EXIT_OK)
        return rc;
    if (tool_keyring_path(a.backing, a.keyring, keyring, sizeof(keyring)) != 0) {
        tool_error("keyring path too long");
        return TOOL_EXIT_USAGE;
    }
    if (access(keyring, F_OK) != 0) {
        if (store_holds_files(a.backing)) /* a store whose keyring lives elsewhere, or is lost */
            tool_error("%s: no keyring; this folder holds a store: give -o keyring=PATH, or "
                       "restore the keyring from its backup",
                       keyring);
        else
            tool_error("%s: no keyring (create one with: imgcrypt init %s)", keyring, a.backing);
        return TOOL_EXIT_IO;
    }

    if (!a.foreground) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            tool_error("pipe: %s", strerror(errno));
            return TOOL_EXIT_IO;
        }
        pid_t pid = fork();
        if (pid < 0) {
            tool_error("fork: %s", strerror(errno));
            return TOOL_EXIT_IO;
        }
        if (pid > 0) {
            unsigned char b = TOOL_EXIT_MOUNT;
            close(p[1]);
            ssize_t n;
            while ((n = read(p[0], &b, 1)) < 0 && errno == EINTR)
                ;
            if (n != 1) {
                /* The child died before reporting. */
                int st = 0;
                waitpid(pid, &st, 0);
                b = WIFEXITED(st) && WEXITSTATUS(st) ? (unsigned char)WEXITSTATUS(st)
                                                     : TOOL_EXIT_MOUNT;
            }
            return b;
        }
        close(p[0]);
        status_fd = p[1];
    }

    keys_harden_process();
    keys_set_memlock_warning(a.foreground ? memlock_warn_stderr : memlock_warn_syslog, NULL);
    rc = tool_unlock(keyring, &a.src, &ring);
    if (rc != TOOL_EXIT_OK) {
        report(&status_fd, rc);
        return rc;
    }
    struct fs_config cfg = {
        .backing = a.backing,
        .mountpoint = a.mountpoint,
        .fuse_opts = a.fuse_opts,
        .debug = a.debug,
        .use_syslog = !a.foreground,
        .max_threads = a.threads,
        .images_off = a.images_off,
        .coder = a.coder,
        .workers = a.workers,
        .cache_mb = a.cache_mb,
        .convert_mb = a.convert_mb,
    };
    if (!a.foreground)
        openlog("imgcryptfs", LOG_PID, LOG_DAEMON);
    /* Conversion workers code one image each: the matrix library gets one thread. */
    nn_set_threads(1);
    int frc = fs_mount_new(&cfg, ring, &m, why, sizeof(why));
    if (frc != 0) {
        keys_ring_close(ring);
        tool_error("%s", why[0] ? why : strerror(-frc));
        rc = frc == -EBUSY || frc == -EINVAL || frc == -ENOTDIR ? TOOL_EXIT_MOUNT
                                                                : tool_exit_code(frc);
        report(&status_fd, rc);
        return rc;
    }
    if (!a.foreground) {
        if (setsid() < 0) { /* already a session leader: fine */
        }
        if (chdir("/") != 0) { /* every path we use is absolute */
        }
        detach_stdio();
        syslog(LOG_INFO, "mounted %s on %s", a.backing, a.mountpoint);
    }
    report(&status_fd, TOOL_EXIT_OK);
    rc = fs_mount_run(m);
    fs_mount_free(m);
    keys_ring_close(ring); /* the image pipeline read its models from it */
    if (!a.foreground)
        syslog(LOG_INFO, "unmounted %s", a.mountpoint);
    return rc == 0 ? TOOL_EXIT_OK : TOOL_EXIT_IO;
}

int main(int argc, char **argv)
{
    struct args a;
    memset(&a, 0, sizeof(a));
    tool_set_prog("imgcryptfs");
    int rc = run(argc, argv, &a);
    for (int i = 0; i < a.ncopies; i++)
        free(a.copies[i]);
    return rc;
}
