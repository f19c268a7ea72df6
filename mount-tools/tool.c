// SPDX-License-Identifier: MIT
/* Shared helpers of the mount-tools programs: exit codes, messages, keyring unlock. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/pipeline.h"
#include "mount-tools/tool.h"

static const char *prog = "imgcrypt";

void tool_set_prog(const char *name)
{
    prog = name;
}

void tool_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)fprintf(stderr, "%s: ", prog);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started above
    (void)vfprintf(stderr, fmt, ap);
    (void)fputc('\n', stderr);
    va_end(ap);
}

int tool_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return TOOL_EXIT_OK;
    case -EINVAL:
        return TOOL_EXIT_USAGE;
    case -EKEYREJECTED:
        return TOOL_EXIT_KEY;
    case -EPERM:
        return TOOL_EXIT_PERM;
    case -EBADMSG:
    case -EFBIG:
    case -EOVERFLOW:
        return TOOL_EXIT_CORRUPT;
    case -EEXIST:
    case -ENOTEMPTY:
        return TOOL_EXIT_EXISTS;
    default:
        return TOOL_EXIT_IO;
    }
}

int tool_keyring_path(const char *backing, const char *opt, char *buf, size_t len)
{
    int n = opt ? snprintf(buf, len, "%s", opt)
                : snprintf(buf, len, "%s/%s", backing, TOOL_KEYRING_NAME);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int tool_set_source(struct keys_source *src, int *have, const char *name, const char *value)
{
    if (*have)
        return -EINVAL;
    if (strcmp(name, "passfile") == 0)
        src->kind = KEYS_SRC_PASSFILE;
    else if (strcmp(name, "extpass") == 0)
        src->kind = KEYS_SRC_EXTPASS;
    else if (strcmp(name, "keyfile") == 0)
        src->kind = KEYS_SRC_KEYFILE;
    else
        return -EINVAL;
    src->arg = value;
    *have = 1;
    return 0;
}

int tool_unlock(const char *path, const struct keys_source *src, struct keys_ring **out)
{
    char why[512] = "";
    struct keys_secret *secret = NULL;
    int rc = keys_secret_read(src, "Passphrase: ", 0, &secret, why, sizeof(why));
    if (rc != 0) {
        tool_report_secret_error(rc, why);
        return tool_secret_exit_code(rc);
    }
    rc = keys_ring_open(path, secret, out, why, sizeof(why));
    keys_secret_free(secret);
    if (rc == 0)
        return TOOL_EXIT_OK;
    if (why[0])
        tool_error("%s", why);
    else
        tool_error("%s: %s", path, strerror(-rc));
    return tool_exit_code(rc);
}

int tool_secret_exit_code(int rc)
{
    switch (rc) {
    case -EPERM:
        return TOOL_EXIT_PERM;
    case -EINVAL: /* empty passphrase, key file of the wrong size */
    case -EFBIG:  /* passphrase longer than any we accept */
    case -EKEYREJECTED:
        return TOOL_EXIT_KEY;
    default:
        return TOOL_EXIT_IO;
    }
}

void tool_report_secret_error(int rc, const char *why)
{
    if (why && why[0])
        tool_error("%s", why);
    else if (rc == -EFBIG)
        tool_error("passphrase longer than %d bytes", KEYS_MAX_PASSPHRASE);
    else
        tool_error("cannot read the secret: %s", strerror(-rc));
}

long long tool_number(const char *name, const char *v, long long lo, long long hi)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < lo || n > hi) {
        tool_error("--%s takes a whole number from %lld to %lld", name, lo, hi);
        return -1;
    }
    return n;
}

void tool_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int tool_read_fd(int fd, uint64_t limit, uint8_t **buf, size_t *len)
{
    uint8_t *b = NULL;
    size_t cap = (size_t)1 << 16, n = 0;
    struct stat st;
    int ret;
    if (limit > SIZE_MAX - 2)
        limit = SIZE_MAX - 2;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > limit)
            return -EFBIG;
        cap = (size_t)st.st_size + 1; /* one more, to see the end without growing */
    }
    if (!(b = malloc(cap)))
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            if (n > limit) {
                ret = -EFBIG;
                goto out;
            }
            size_t ncap = cap > limit / 2 ? (size_t)limit + 1 : 2 * cap;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                ret = -ENOMEM;
                goto out;
            }
            b = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > limit) {
        ret = -EFBIG;
        goto out;
    }
    *buf = b;
    *len = n;
    b = NULL;
    ret = 0;
out:
    free(b);
    return ret;
}

int tool_read_file(const char *path, uint64_t limit, uint8_t **buf, size_t *len)
{
    if (strcmp(path, "-") == 0)
        return tool_read_fd(STDIN_FILENO, limit, buf, len);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int rc = tool_read_fd(fd, limit, buf, len);
    close(fd);
    return rc;
}

void tool_put_plain(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            (void)fprintf(f, "\\x%02x", *p);
        else
            (void)fputc(*p, f);
    }
}

int tool_flush_stdout(int ret)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return ret;
    tool_error("standard output: %s", strerror(errno ? errno : EIO));
    return ret == TOOL_EXIT_OK ? TOOL_EXIT_IO : ret;
}

int tool_parse_coder(const char *s)
{
    if (strcmp(s, "fixed") == 0)
        return CODEC_PIPELINE_CODER_FIXED;
    if (strcmp(s, "neural") == 0)
        return CODEC_PIPELINE_CODER_NEURAL;
    if (strcmp(s, "smallest") == 0)
        return CODEC_PIPELINE_CODER_SMALLEST;
    if (strcmp(s, "neural-only") == 0)
        return CODEC_PIPELINE_CODER_NEURAL_ONLY;
    return -1;
}
