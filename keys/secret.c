// SPDX-License-Identifier: MIT
/*
 * Where secrets come from: a terminal prompt without echo, a passphrase file, an external
 * command, or a 32-byte key file; and the permission check every file holding a secret passes
 * first (refuse, as ssh does, what another user could read or change).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keys/keys_int.h"

int keys_check_private(int fd, const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode)) {
        if (why)
            (void)snprintf(why, whylen, "%s: not a regular file", path);
        return -EPERM;
    }
    if (st.st_uid != geteuid()) {
        if (why)
            (void)snprintf(why, whylen,
                           "%s: owned by uid %u, not by you (uid %u); fix: chown %u %s", path,
                           (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
        return -EPERM;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        if (why)
            (void)snprintf(
                why, whylen,
                "%s: permissions %04o let others read or change it; fix: chmod go-rwx %s", path,
                (unsigned)(st.st_mode & 07777), path);
        return -EPERM;
    }
    return 0;
}

static struct keys_secret *secret_new(void)
{
    return keys_secure_alloc(sizeof(struct keys_secret));
}

void keys_secret_free(struct keys_secret *s)
{
    keys_secure_free(s, sizeof(*s));
}

int keys_secret_is_keyfile(const struct keys_secret *s)
{
    return s && s->keyfile;
}

/* Read up to the first newline (or EOF) into s; a trailing "\r" is dropped too. */
static int read_line(int fd, struct keys_secret *s)
{
    size_t len = 0;
    for (;;) {
        uint8_t c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0 || c == '\n')
            break;
        if (len == sizeof(s->bytes))
            return -EFBIG;
        s->bytes[len++] = c;
    }
    if (len > 0 && s->bytes[len - 1] == '\r')
        len--;
    if (len == 0)
        return -EINVAL;
    s->len = len;
    return 0;
}

static int open_private(const char *path, char *why, size_t whylen, int *fd_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (why) /* passphrases are read before the daemon starts a thread */
            // NOLINTNEXTLINE(concurrency-mt-unsafe)
            (void)snprintf(why, whylen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = keys_check_private(fd, path, why, whylen);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static int read_keyfile(const char *path, struct keys_secret *s, char *why, size_t whylen)
{
    int fd = -1, rc = open_private(path, why, whylen, &fd);
    if (rc != 0)
        return rc;
    ssize_t n = read(fd, s->bytes, KEYS_KEYFILE_BYTES + 1);
    rc = n < 0 ? -errno : 0;
    close(fd);
    if (rc == 0 && n != KEYS_KEYFILE_BYTES) {
        if (why)
            (void)snprintf(why, whylen,
                           "%s: a key file holds exactly %d bytes (make one with: "
                           "head -c 32 /dev/urandom > FILE)",
                           path, KEYS_KEYFILE_BYTES);
        rc = -EINVAL;
    }
    s->len = KEYS_KEYFILE_BYTES;
    s->keyfile = 1;
    return rc;
}

static int read_passfile(const char *path, struct keys_secret *s, char *why, size_t whylen)
{
    int fd = -1, rc = open_private(path, why, whylen, &fd);
    if (rc != 0)
        return rc;
    rc = read_line(fd, s);
    close(fd);
    if (rc == -EINVAL && why)
        (void)snprintf(why, whylen, "%s: the first line is empty", path);
    return rc;
}

static int read_extpass(const char *cmd, struct keys_secret *s, char *why, size_t whylen)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -e;
    }
    if (pid == 0) {
        if (dup2(pipefd[1], STDOUT_FILENO) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    int rc = read_line(pipefd[0], s);
    /* Drain what the command still prints so it is not killed by SIGPIPE. */
    uint8_t sink[256];
    while (read(pipefd[0], sink, sizeof(sink)) > 0)
        ;
    OPENSSL_cleanse(sink, sizeof(sink));
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (why)
            (void)snprintf(why, whylen, "extpass command failed (exit status %d)",
                           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return -EIO;
    }
    if (rc == -EINVAL && why)
        (void)snprintf(why, whylen, "extpass command printed an empty passphrase");
    return rc;
}

static int prompt_tty(const char *prompt, struct keys_secret *s)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -ENOTTY;
    struct termios old, quiet;
    int have_termios = tcgetattr(fd, &old) == 0;
    if (have_termios) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        (void)tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) { /* nothing to do: the read still works */
    }
    int rc = read_line(fd, s);
    if (have_termios)
        (void)tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
    }
    close(fd);
    return rc;
}

int keys_secret_read(const struct keys_source *src, const char *prompt, int confirm,
                     struct keys_secret **out, char *why, size_t whylen)
{
    struct keys_secret *s = secret_new(), *again = NULL;
    int rc;
    if (!s)
        return -ENOMEM;
    switch (src->kind) {
    case KEYS_SRC_KEYFILE:
        rc = read_keyfile(src->arg, s, why, whylen);
        break;
    case KEYS_SRC_PASSFILE:
        rc = read_passfile(src->arg, s, why, whylen);
        break;
    case KEYS_SRC_EXTPASS:
        rc = read_extpass(src->arg, s, why, whylen);
        break;
    case KEYS_SRC_TTY:
    default:
        rc = prompt_tty(prompt ? prompt : "Passphrase: ", s);
        if (rc == 0 && confirm) {
            again = secret_new();
            rc = again ? prompt_tty("Repeat passphrase: ", again) : -ENOMEM;
            if (rc == 0 &&
                (again->len != s->len || CRYPTO_memcmp(again->bytes, s->bytes, s->len) != 0)) {
                rc = -EKEYREJECTED;
                if (why)
                    (void)snprintf(why, whylen, "the passphrases do not match");
            }
        }
        /* After the confirmation too: an empty second answer needs the same message. */
        if (rc == -ENOTTY && why)
            (void)snprintf(why, whylen,
                           "no terminal to ask for the passphrase; give --passfile, "
                           "--extpass or --keyfile");
        else if (rc == -EINVAL && why)
            (void)snprintf(why, whylen, "empty passphrase");
        break;
    }
    keys_secret_free(again);
    if (rc != 0) {
        keys_secret_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
