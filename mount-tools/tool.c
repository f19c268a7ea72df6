// SPDX-License-Identifier: MIT
/* Shared helpers of the mount-tools programs: exit codes, messages, keyring unlock. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
