// SPDX-License-Identifier: MIT
/*
 * imgcrypt encrypt / decrypt / preview: the image path of the filesystem, offline. The input is
 * read whole into memory, the keyring is unlocked, and the result is written to a temporary file
 * next to OUT, synced and renamed over it only once everything succeeded (or, for `-`, written
 * to stdout only then), so that a wrong key, a changed byte or a full disk never leaves partial
 * or wrong bytes behind. The trade-off: the whole file sits in memory (images are at most
 * CODEC_MAX_FILE_BYTES), which is what the codec needs anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "codec/store/blockfile.h"
#include "codec/pipeline.h"
#include "keys/keys.h"
#include "mount-tools/imgcrypt.h"
#include "mount-tools/tool.h"

#define PATH_CAP 4096
#define IMAGE_MAX_INPUT                                                                            \
    (CODEC_MAX_FILE_BYTES + ((uint64_t)1 << 28)) /* a container of a largest file */
#define CONTENT_LABEL "content"                  /* as the filesystem's */

const char imgcrypt_image_usage[] =
    "  encrypt [--keyring PATH] [SECRET] [--threads N] [--coder "
    "fixed|neural|smallest|neural-only]\n"
    "          [--no-features] [--force] BACKING IN OUT\n"
    "  decrypt [--keyring PATH] [SECRET] [--threads N] [--force] BACKING IN OUT\n"
    "  preview [--keyring PATH] [SECRET] [--force] BACKING IN OUT.png\n"
    "         (SECRET: --passfile F | --extpass CMD | --keyfile F; IN, OUT may be -)\n";

enum {
    O_KEYRING = 1,
    O_PASSFILE,
    O_EXTPASS,
    O_KEYFILE,
    O_THREADS,
    O_NOFEAT,
    O_FORCE,
    O_CODER,
    O_HELP
};

static const struct option image_opts[] = {
    {"keyring", required_argument, NULL, O_KEYRING},
    {"passfile", required_argument, NULL, O_PASSFILE},
    {"extpass", required_argument, NULL, O_EXTPASS},
    {"keyfile", required_argument, NULL, O_KEYFILE},
    {"threads", required_argument, NULL, O_THREADS},
    {"no-features", no_argument, NULL, O_NOFEAT},
    {"force", no_argument, NULL, O_FORCE},
    {"coder", required_argument, NULL, O_CODER},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

struct image_args {
    const char *keyring, *backing, *in, *out;
    struct keys_source src;
    int have_src;
    unsigned threads;
    int no_features, force, coder;
};

static int usage(void)
{
    (void)fputs("usage: imgcrypt COMMAND [OPTIONS] BACKING IN OUT\n\n", stderr);
    (void)fputs(imgcrypt_image_usage, stderr);
    (void)fputs("\nSee imgcrypt(1).\n", stderr);
    return TOOL_EXIT_USAGE;
}

static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

/* `allowed`: the O_* values the command takes. */
static int parse_args(int argc, char **argv, const char *allowed, struct image_args *a)
{
    int c;
    memset(a, 0, sizeof(*a));
    a->src.kind = KEYS_SRC_TTY;
    a->threads = default_threads();
    a->coder = CODEC_PIPELINE_CODER_NEURAL; /* the filesystem's default too */
    optind = 1;
    int li = 0; /* the option matched: names come from the table, not from c */
    while ((c = getopt_long(argc, argv, "", image_opts, &li)) != -1) {
        if (c == O_HELP) {
            (void)fputs(imgcrypt_image_usage, stdout);
            exit(TOOL_EXIT_OK);
        }
        if (c == '?' || !strchr(allowed, c)) {
            if (c != '?')
                tool_error("option --%s does not apply to %s", image_opts[li].name, argv[0]);
            return usage();
        }
        switch (c) {
        case O_KEYRING:
            a->keyring = optarg;
            break;
        case O_PASSFILE:
        case O_EXTPASS:
        case O_KEYFILE:
            if (tool_set_source(&a->src, &a->have_src, image_opts[li].name, optarg) != 0) {
                tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
                return TOOL_EXIT_USAGE;
            }
            break;
        case O_THREADS: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > 64) {
                tool_error("--threads takes a number from 1 to 64");
                return TOOL_EXIT_USAGE;
            }
            a->threads = (unsigned)v;
            break;
        }
        case O_NOFEAT:
            a->no_features = 1;
            break;
        case O_FORCE:
            a->force = 1;
            break;
        case O_CODER:
            if ((a->coder = tool_parse_coder(optarg)) < 0) {
                tool_error("--coder takes fixed, neural, smallest or neural-only");
                return TOOL_EXIT_USAGE;
            }
            break;
        default:
            break;
        }
    }
    if (argc - optind != 3) {
        tool_error(argc - optind < 3 ? "give BACKING, IN and OUT" : "too many arguments");
        return usage();
    }
    a->backing = argv[optind];
    a->in = argv[optind + 1];
    a->out = argv[optind + 2];
    if (strcmp(a->out, "-") != 0 && !a->force && access(a->out, F_OK) == 0) {
        tool_error("%s exists; give --force to replace it", a->out);
        return TOOL_EXIT_EXISTS;
    }
    return TOOL_EXIT_OK;
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A new 0600 temporary file: next to `out`, or in $TMPDIR when out is "-". */
static int make_temp(const char *out, char *tmp, size_t cap)
{
    const char *dir = getenv("TMPDIR");
    int n = strcmp(out, "-") == 0 ? snprintf(tmp, cap, "%s/imgcrypt.XXXXXX", dir ? dir : "/tmp")
                                  : snprintf(tmp, cap, "%s.tmp.XXXXXX", out);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Put a finished temporary file in place: sync and rename over `out`, or copy it to stdout. */
static int commit_temp(int fd, const char *tmp, const char *out)
{
    if (strcmp(out, "-") == 0) {
        uint8_t *b = NULL;
        size_t n = 0;
        int rc = lseek(fd, 0, SEEK_SET) < 0 ? -errno : tool_read_fd(fd, IMAGE_MAX_INPUT, &b, &n);
        if (rc == 0)
            rc = write_all(STDOUT_FILENO, b, n);
        free(b);
        unlink(tmp);
        return rc;
    }
    if (fsync(fd) != 0 || rename(tmp, out) != 0) {
        int e = -errno;
        unlink(tmp);
        return e;
    }
    return 0;
}

/* Write a whole buffer to `out` (see the top of the file). */
static int write_output(const char *out, const uint8_t *b, size_t n)
{
    char tmp[PATH_CAP];
    if (strcmp(out, "-") == 0)
        return write_all(STDOUT_FILENO, b, n);
    int fd = make_temp(out, tmp, sizeof(tmp));
    if (fd < 0)
        return fd;
    int rc = write_all(fd, b, n);
    if (rc == 0)
        rc = commit_temp(fd, tmp, out);
    else
        unlink(tmp);
    close(fd);
    return rc;
}

static const char *name_of(const char *path)
{
    return strcmp(path, "-") == 0 ? "standard input" : path;
}

static const char *out_name(const char *path)
{
    return strcmp(path, "-") == 0 ? "standard output" : path;
}

/* The three commands' start: their options (allowed), then the whole input in *buf. Returns
 * TOOL_EXIT_OK or the exit code to leave with, after a one-line message. */
static int begin(int argc, char **argv, const char *allowed, struct image_args *a, uint8_t **buf,
                 size_t *len)
{
    int rc = parse_args(argc, argv, allowed, a);
    if (rc != TOOL_EXIT_OK)
        return rc;
    int e = tool_read_file(a->in, IMAGE_MAX_INPUT, buf, len);
    if (e != 0) {
        tool_error("%s: %s", name_of(a->in), strerror(-e));
        return TOOL_EXIT_IO;
    }
    return TOOL_EXIT_OK;
}

/* Write the result; TOOL_EXIT_OK, or TOOL_EXIT_IO after a one-line message. */
static int finish(const struct image_args *a, const uint8_t *res, size_t n)
{
    int e = write_output(a->out, res, n);
    if (e == 0)
        return TOOL_EXIT_OK;
    tool_error("%s: %s", out_name(a->out), strerror(-e));
    return TOOL_EXIT_IO;
}

static int unlock(const struct image_args *a, struct keys_ring **ring)
{
    char path[PATH_CAP];
    if (tool_keyring_path(a->backing, a->keyring, path, sizeof(path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    if (access(path, F_OK) != 0) { /* say so before asking for a passphrase */
        tool_error("%s: %s", path, strerror(errno));
        return TOOL_EXIT_IO;
    }
    return tool_unlock(path, &a->src, ring);
}

/* Exit code and message for a failure to open a stored file. */
static int report_stored(int rc, const char *in)
{
    switch (rc) {
    case -EBADMSG:
        tool_error("%s: authentication failed: wrong keyring or modified file", name_of(in));
        return TOOL_EXIT_CORRUPT;
    case -EINVAL:
        tool_error("%s: not an imgcryptfs container or block file, or damaged", name_of(in));
        return TOOL_EXIT_CORRUPT;
    case -ENOENT:
        tool_error("%s: needs a model this keyring does not hold", name_of(in));
        return TOOL_EXIT_CORRUPT;
    case -ENODATA:
        tool_error("%s: holds no features to preview (image too small or not supported)",
                   name_of(in));
        return TOOL_EXIT_IO;
    default:
        tool_error("%s: %s", name_of(in), strerror(-rc));
        return tool_exit_code(rc) == TOOL_EXIT_USAGE ? TOOL_EXIT_IO : tool_exit_code(rc);
    }
}

/* Store a file that is not an image as a generic block file. */
static int encrypt_generic(const struct keys_ring *ring, const uint8_t *buf, size_t len,
                           const char *out)
{
    struct keys_key *content = NULL;
    struct codec_bf *bf = NULL;
    char tmp[PATH_CAP];
    int fd = -1;
    int rc = keys_ring_subkey(ring, CONTENT_LABEL, KEYS_KEY_GCM, &content);
    if (rc == 0 && (fd = make_temp(out, tmp, sizeof(tmp))) < 0)
        rc = fd;
    if (rc == 0)
        rc = codec_bf_open(fd, content, 1, &bf);
    if (rc == 0 && len > 0) {
        ssize_t w = codec_bf_write(bf, buf, len, 0, NULL);
        rc = w < 0 ? (int)w : 0;
    }
    codec_bf_close(bf);
    if (rc == 0)
        rc = commit_temp(fd, tmp, out);
    else if (fd >= 0)
        unlink(tmp);
    if (fd >= 0)
        close(fd);
    keys_key_free(content);
    return rc;
}

int imgcrypt_encrypt(int argc, char **argv)
{
    struct image_args a;
    struct keys_ring *ring = NULL;
    struct codec_pipeline *ct = NULL;
    uint8_t *buf = NULL, *res = NULL;
    size_t len = 0, res_len = 0;
    int e, ret = begin(argc, argv,
                       (char[]){O_KEYRING, O_PASSFILE, O_EXTPASS, O_KEYFILE, O_THREADS, O_NOFEAT,
                                O_CODER, O_FORCE, 0},
                       &a, &buf, &len);
    if (ret != TOOL_EXIT_OK)
        return ret;
    ret = unlock(&a, &ring);
    if (ret != TOOL_EXIT_OK)
        goto out;
    if ((e = codec_pipeline_new(ring, &ct)) != 0) {
        tool_error("cannot derive the container key: %s", strerror(-e));
        ret = TOOL_EXIT_IO;
        goto out;
    }
    struct codec_pipeline_opts o = {.threads = a.threads,
                                    .coder = a.coder,
                                    .no_features = a.no_features,
                                    .verify = 1,
                                    .max_bytes = CODEC_PIPELINE_BUDGET_DEFAULT};
    e = codec_pipeline_encode(ct, buf, len, &o, &res, &res_len);
    if (e == 0) {
        e = write_output(a.out, res, res_len);
    } else if (e == -ENOTSUP || e == -EFBIG) {
        if (e == -EFBIG) /* a note, not an error: the file is stored, on the generic path */
            (void)fprintf(
                stderr,
                "imgcrypt: %s: too large to code as an image within %llu MiB; stored as a "
                "block file\n",
                name_of(a.in), (unsigned long long)(CODEC_PIPELINE_BUDGET_DEFAULT >> 20));
        e = encrypt_generic(ring, buf, len, a.out);
    } else if (e == -EBADMSG) {
        tool_error("%s: the container did not decode to the input (a codec bug); nothing written",
                   name_of(a.in));
        ret = TOOL_EXIT_MISMATCH;
        goto out;
    }
    if (e != 0) {
        tool_error("%s: %s", out_name(a.out), strerror(-e));
        ret = e == -EFBIG ? TOOL_EXIT_CORRUPT : TOOL_EXIT_IO;
    }
out:
    free(res);
    if (buf)
        OPENSSL_cleanse(buf, len);
    free(buf);
    codec_pipeline_free(ct);
    keys_ring_close(ring);
    return ret;
}

/* Open a block file held in memory, through a private temporary copy (the block file reader
 * works on a descriptor; stdin may be a pipe). */
static int decrypt_generic(const struct keys_ring *ring, const uint8_t *buf, size_t len,
                           uint8_t **out, size_t *out_len)
{
    struct keys_key *content = NULL;
    struct codec_bf *bf = NULL;
    char tmp[PATH_CAP] = "";
    uint8_t *plain = NULL;
    uint64_t size = 0;
    int fd = -1, rc = keys_ring_subkey(ring, CONTENT_LABEL, KEYS_KEY_GCM, &content);
    if (rc == 0) {
        fd = make_temp("-", tmp, sizeof(tmp));
        if (fd < 0)
            rc = fd;
        else
            rc = write_all(fd, buf, len);
    }
    if (rc == 0)
        rc = codec_bf_open(fd, content, 0, &bf);
    if (rc == 0)
        rc = codec_bf_size(bf, &size);
    if (rc == 0 && size > SIZE_MAX - 1)
        rc = -EFBIG;
    if (rc == 0 && !(plain = malloc((size_t)size + 1)))
        rc = -ENOMEM;
    if (rc == 0 && size > 0) {
        ssize_t r = codec_bf_read(bf, plain, (size_t)size, 0, NULL);
        rc = r < 0 ? (int)r : (uint64_t)r == size ? 0 : -EBADMSG;
    } else if (rc == 0) {
        uint8_t none[1];
        ssize_t r = codec_bf_read(bf, none, 1, 0, NULL); /* an empty file proves it is one */
        rc = r < 0 ? (int)r : 0;
    }
    codec_bf_close(bf);
    if (fd >= 0) {
        unlink(tmp);
        close(fd);
    }
    keys_key_free(content);
    if (rc != 0) {
        free(plain);
        return rc;
    }
    *out = plain;
    *out_len = (size_t)size;
    return 0;
}

int imgcrypt_decrypt(int argc, char **argv)
{
    struct image_args a;
    struct keys_ring *ring = NULL;
    struct codec_pipeline *ct = NULL;
    uint8_t *buf = NULL, *res = NULL;
    size_t len = 0, res_len = 0;
    int e, ret = begin(argc, argv,
                       (char[]){O_KEYRING, O_PASSFILE, O_EXTPASS, O_KEYFILE, O_THREADS, O_FORCE, 0},
                       &a, &buf, &len);
    if (ret != TOOL_EXIT_OK)
        return ret;
    int container = codec_ct_sniff(buf, len);
    int blockfile = len >= CODEC_BF_HEADER && memcmp(buf, CODEC_BF_MAGIC, 6) == 0;
    if (!container && !blockfile) {
        ret = report_stored(-EINVAL, a.in); /* before asking for a passphrase */
        goto out;
    }
    if ((ret = unlock(&a, &ring)) != TOOL_EXIT_OK)
        goto out;
    if (container) {
        if ((e = codec_pipeline_new(ring, &ct)) == 0)
            e = codec_pipeline_decode(ct, buf, len, a.threads, &res, &res_len);
    } else {
        e = decrypt_generic(ring, buf, len, &res, &res_len);
    }
    if (e != 0) {
        ret = report_stored(e, a.in);
        goto out;
    }
    ret = finish(&a, res, res_len);
out:
    if (res)
        OPENSSL_cleanse(res, res_len);
    free(res);
    free(buf);
    codec_pipeline_free(ct);
    keys_ring_close(ring);
    return ret;
}

int imgcrypt_preview(int argc, char **argv)
{
    struct image_args a;
    struct keys_ring *ring = NULL;
    struct codec_pipeline *ct = NULL;
    uint8_t *buf = NULL, *res = NULL;
    size_t len = 0, res_len = 0;
    int e,
        ret = begin(argc, argv, (char[]){O_KEYRING, O_PASSFILE, O_EXTPASS, O_KEYFILE, O_FORCE, 0},
                    &a, &buf, &len);
    if (ret != TOOL_EXIT_OK)
        return ret;
    if (!codec_ct_sniff(buf, len)) {
        tool_error("%s: not an image container (only stored images have a preview)", name_of(a.in));
        ret = TOOL_EXIT_CORRUPT;
        goto out;
    }
    if ((ret = unlock(&a, &ring)) != TOOL_EXIT_OK)
        goto out;
    if ((e = codec_pipeline_new(ring, &ct)) == 0)
        e = codec_pipeline_preview(ct, buf, len, &res, &res_len);
    if (e != 0) {
        ret = report_stored(e, a.in);
        goto out;
    }
    ret = finish(&a, res, res_len);
out:
    if (res)
        OPENSSL_cleanse(res, res_len); /* the preview is pixels */
    free(res);
    free(buf);
    codec_pipeline_free(ct);
    keys_ring_close(ring);
    return ret;
}
