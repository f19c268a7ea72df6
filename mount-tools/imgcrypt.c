// SPDX-License-Identifier: MIT
/*
 * imgcrypt: the administration command. `init` makes a keyring, `passwd` re-wraps it under a new
 * secret, `info` shows its public header, `inspect` shows how the image adapters see files (no
 * keyring involved). Each command reads its options with getopt_long and leaves with one of the
 * documented exit codes (mount-tools/tool.h). `train` fits the autoencoder (nn/ae.h) to a folder
 * of images and quantises its decoder, `train --quantize` only quantises, `train --eval` measures
 * a model on images; with --keyring the model written goes into the keyring's model list.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"
#include "codec/store/container.h"
#include "codec/pixel/latcode.h"
#include "keys/keys.h"
#include "mount-tools/imgcrypt_coder.h"
#include "mount-tools/imgcrypt_image.h"
#include "mount-tools/tool.h"
#include "nn/ae.h"

#define PATH_CAP 4096

static const char usage_text[] =
    "usage: imgcrypt COMMAND [OPTIONS] BACKING|FILE...\n"
    "\n"
    "  init   [--keyring PATH] [--passfile F | --extpass CMD | --keyfile F] [--kdf-cost LOGN] "
    "BACKING\n"
    "  passwd [--keyring PATH] [--passfile F | --extpass CMD | --keyfile F]\n"
    "         [--new-passfile F | --new-extpass CMD | --new-keyfile F] [--kdf-cost LOGN] BACKING\n"
    "  info   [--keyring PATH] BACKING\n"
    "  inspect [--json] FILE...\n"
    "  train  --data DIR [--epochs N] [--out MODEL] [--seed S] [--steps N] [--batch N]\n"
    "         [--crop N] [--bpp R] [--lr R] [--lr-end R]\n"
    "         [--init MODEL | --arch LATENT,W1,W2,W3,NRES] [--keyring PATH [SECRET]]\n"
    "  train  --quantize MODEL --data DIR [--out MODEL] [--keyring PATH [SECRET]]\n"
    "  train  --eval MODEL|default|keyring:ID [--keyring PATH [SECRET]] IMAGE...\n"
    "  train  --coder --data DIR [--epochs N] [--steps N] [--hidden N] [--layers N] [--seed S]\n"
    "         [--out MODEL] [--keyring PATH [SECRET]]\n"
    "  train  --coder --eval MODEL|default [--threads N] [--reps N] IMAGE...\n"
    "         (SECRET: --passfile F | --extpass CMD | --keyfile F)\n"
    "\n"
    "See imgcrypt(1).\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    fputs(imgcrypt_image_usage, stderr);
    return TOOL_EXIT_USAGE;
}

struct opts {
    const char *keyring;
    struct keys_source src, new_src;
    int have_src, have_new;
    unsigned log_n;
    int have_log_n;
    const char *backing;
};

enum {
    OPT_KEYRING = 1,
    OPT_PASSFILE,
    OPT_EXTPASS,
    OPT_KEYFILE,
    OPT_NEW_PASSFILE,
    OPT_NEW_EXTPASS,
    OPT_NEW_KEYFILE,
    OPT_KDF_COST,
    OPT_HELP
};

static const struct option long_opts[] = {
    {"keyring", required_argument, NULL, OPT_KEYRING},
    {"passfile", required_argument, NULL, OPT_PASSFILE},
    {"extpass", required_argument, NULL, OPT_EXTPASS},
    {"keyfile", required_argument, NULL, OPT_KEYFILE},
    {"new-passfile", required_argument, NULL, OPT_NEW_PASSFILE},
    {"new-extpass", required_argument, NULL, OPT_NEW_EXTPASS},
    {"new-keyfile", required_argument, NULL, OPT_NEW_KEYFILE},
    {"kdf-cost", required_argument, NULL, OPT_KDF_COST},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parse the options of one command; `allowed` is a string of accepted OPT_* values. */
static int parse_opts(int argc, char **argv, const char *allowed, struct opts *o)
{
    int c;
    memset(o, 0, sizeof(*o));
    o->src.kind = o->new_src.kind = KEYS_SRC_TTY;
    o->log_n = KEYS_LOGN_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            fputs(usage_text, stdout);
            exit(TOOL_EXIT_OK);
        }
        if (c == '?' || !strchr(allowed, c)) {
            if (c != '?') /* argv[optind - 1] is the option's value when given apart */
                tool_error("option --%s does not apply to %s", long_opts[c - 1].name, argv[0]);
            return usage();
        }
        const char *name = long_opts[c - 1].name;
        int rc = 0;
        switch (c) {
        case OPT_KEYRING:
            o->keyring = optarg;
            break;
        case OPT_PASSFILE:
        case OPT_EXTPASS:
        case OPT_KEYFILE:
            rc = tool_set_source(&o->src, &o->have_src, name, optarg);
            break;
        case OPT_NEW_PASSFILE:
        case OPT_NEW_EXTPASS:
        case OPT_NEW_KEYFILE:
            rc = tool_set_source(&o->new_src, &o->have_new, name + 4, optarg);
            break;
        case OPT_KDF_COST: {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < KEYS_LOGN_MIN || v > KEYS_LOGN_MAX) {
                tool_error("--kdf-cost takes log2(N) from %d to %d", KEYS_LOGN_MIN, KEYS_LOGN_MAX);
                return TOOL_EXIT_USAGE;
            }
            o->log_n = (unsigned)v;
            o->have_log_n = 1;
            break;
        }
        default:
            break;
        }
        if (rc != 0) {
            tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
            return TOOL_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        tool_error(optind >= argc ? "missing BACKING folder" : "too many arguments");
        return usage();
    }
    o->backing = argv[optind];
    return TOOL_EXIT_OK;
}

/* 1 if `dir` has entries other than . and .., 0 if empty, negative errno on error. */
static int dir_has_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            found = 1;
            break;
        }
    closedir(d);
    return found;
}

/*
 * Put the shipped default models into a new keyring's model list, so that the containers of
 * this filesystem name models that its own keyring holds: a later release that ships other
 * defaults still decodes them, and the site keeps encoding with the model it started with.
 * Costs two more key derivations (open, and seal again with a fresh salt).
 */
static int init_models(const char *path, const struct keys_secret *secret, unsigned log_n)
{
    struct keys_ring *ring = NULL;
    uint8_t digest[32];
    size_t len = 0;
    const uint8_t *bytes = nn_ae_default_bytes(&len);
    int rc = keys_ring_open(path, secret, &ring, NULL, 0);
    if (rc == 0 && bytes && len > 0) { /* a build without a default autoencoder adds none */
        rc = keys_sha256(bytes, len, digest);
        if (rc == 0)
            rc = keys_ring_add_model(ring, KEYS_MODEL_AUTOENCODER, digest, bytes, len);
    }
    if (rc == 0)
        rc = imgcrypt_coder_add_default(ring);
    if (rc == 0)
        rc = keys_ring_rewrap(ring, path, secret, log_n);
    keys_ring_close(ring);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    struct opts o;
    char path[PATH_CAP], why[512] = "";
    struct keys_secret *secret = NULL;
    int rc = parse_opts(
        argc, argv, (char[]){OPT_KEYRING, OPT_PASSFILE, OPT_EXTPASS, OPT_KEYFILE, OPT_KDF_COST, 0},
        &o);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (tool_keyring_path(o.backing, o.keyring, path, sizeof(path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    if (access(path, F_OK) == 0) {
        tool_error("%s: a keyring exists already; imgcrypt never overwrites one", path);
        return TOOL_EXIT_EXISTS;
    }
    if (mkdir(o.backing, 0700) != 0 && errno != EEXIST) {
        tool_error("%s: cannot create: %s", o.backing, strerror(errno));
        return TOOL_EXIT_IO;
    }
    int used = dir_has_entries(o.backing);
    if (used < 0) {
        tool_error("%s: %s", o.backing, strerror(-used));
        return TOOL_EXIT_IO;
    }
    if (used) {
        tool_error("%s: folder is not empty; give an empty or new folder", o.backing);
        return TOOL_EXIT_EXISTS;
    }
    rc = keys_secret_read(&o.src, "New passphrase: ", 1, &secret, why, sizeof(why));
    if (rc != 0) {
        tool_report_secret_error(rc, why);
        return tool_secret_exit_code(rc);
    }
    rc = keys_ring_create(path, secret, o.log_n);
    if (rc == 0 && (rc = init_models(path, secret, o.log_n)) != 0)
        unlink(path); /* a fresh keyring that nothing has used yet: init can simply be run again */
    keys_secret_free(secret);
    if (rc != 0) {
        tool_error("%s: cannot create keyring: %s", path, strerror(-rc));
        return tool_exit_code(rc);
    }
    struct keys_ring_info info;
    if (keys_ring_info(path, &info, NULL, 0) == 0) {
        char id[33];
        tool_hex(info.fs_id, KEYS_ID_BYTES, id);
        printf("created keyring %s (filesystem id %s)\n", path, id);
    }
    return TOOL_EXIT_OK;
}

static int cmd_passwd(int argc, char **argv)
{
    struct opts o;
    char path[PATH_CAP], why[512] = "";
    struct keys_ring *ring = NULL;
    struct keys_secret *secret = NULL;
    int rc =
        parse_opts(argc, argv,
                   (char[]){OPT_KEYRING, OPT_PASSFILE, OPT_EXTPASS, OPT_KEYFILE, OPT_NEW_PASSFILE,
                            OPT_NEW_EXTPASS, OPT_NEW_KEYFILE, OPT_KDF_COST, 0},
                   &o);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (tool_keyring_path(o.backing, o.keyring, path, sizeof(path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    rc = tool_unlock(path, &o.src, &ring);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (!o.have_log_n && keys_ring_kdf_cost(ring)) /* the cost that unlocked it, authenticated */
        o.log_n = keys_ring_kdf_cost(ring);
    rc = keys_secret_read(&o.new_src, "New passphrase: ", 1, &secret, why, sizeof(why));
    if (rc != 0) {
        tool_report_secret_error(rc, why);
        keys_ring_close(ring);
        return tool_secret_exit_code(rc);
    }
    rc = keys_ring_rewrap(ring, path, secret, o.log_n);
    keys_secret_free(secret);
    keys_ring_close(ring);
    if (rc != 0) {
        tool_error("%s: cannot rewrite keyring: %s", path, strerror(-rc));
        return tool_exit_code(rc);
    }
    printf("keyring %s now opens with the new %s only\n", path,
           o.new_src.kind == KEYS_SRC_KEYFILE ? "key file" : "passphrase");
    return TOOL_EXIT_OK;
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case KEYS_MODEL_AUTOENCODER:
        return "autoencoder";
    case KEYS_MODEL_CODER:
        return "coder";
    default:
        return "unknown";
    }
}

static int cmd_info(int argc, char **argv)
{
    struct opts o;
    char path[PATH_CAP], why[512] = "", id[33], when[64];
    int rc = parse_opts(argc, argv, (char[]){OPT_KEYRING, 0}, &o);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (tool_keyring_path(o.backing, o.keyring, path, sizeof(path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    struct keys_ring_info info;
    rc = keys_ring_info(path, &info, why, sizeof(why));
    if (rc != 0) {
        tool_error("%s", why[0] ? why : strerror(-rc));
        return tool_exit_code(rc);
    }
    if (info.unsafe_perms)
        tool_error("warning: %s", why);
    tool_hex(info.fs_id, KEYS_ID_BYTES, id);
    time_t t = (time_t)info.created;
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
    printf("keyring:        %s (%llu bytes)\n", path, (unsigned long long)info.file_bytes);
    printf("format version: %u\n", info.version);
    if (info.kdf == KEYS_KDF_SCRYPT)
        printf("unlock:         passphrase, scrypt N=2^%u r=%u p=%u (%llu MiB)\n", info.log_n,
               info.r, info.p, (unsigned long long)((128ull * info.r << info.log_n) >> 20));
    else
        printf("unlock:         32-byte key file (HKDF-SHA256)\n");
    printf("filesystem id:  %s\n", id);
    printf("created:        %s\n", when);
    printf("models:         %u\n", info.model_count);
    for (uint32_t i = 0; i < info.model_count; i++) {
        tool_hex(info.models[i].id, KEYS_ID_BYTES, id);
        printf("  %s  %-12s %llu bytes\n", id, kind_name(info.models[i].kind),
               (unsigned long long)info.models[i].bytes);
    }
    return TOOL_EXIT_OK;
}

/*
 * inspect: how the image adapters see each file. Only sizes, geometry and reasons are printed:
 * never samples or envelope bytes, which hold patient data.
 */

/* What inspect found out about one file. */
struct inspect_row {
    uint64_t bytes;           /* file size */
    enum codec_format format; /* CODEC_FORMAT_NONE: generic (why says why) */
    struct codec_image geo;   /* geometry and depth; planes unset */
    size_t env_bytes;
    int recipe; /* 1 recipe_bytes known, 0 not applicable, -1 unknown */
    uint64_t recipe_bytes;
    int exact;     /* join(split(f)) == f */
    char why[256]; /* generic: the adapter's reason; mismatch: where */
};

/*
 * Read a whole file, or standard input for "-". Returns 0 with *buf (caller frees; NULL when
 * empty) and *len, 1 when the file is larger than CODEC_MAX_FILE_BYTES (nothing kept, split
 * would refuse it), or a negative errno.
 */
static int read_whole(const char *name, uint8_t **buf, size_t *len)
{
    const int is_stdin = strcmp(name, "-") == 0;
    const uint64_t limit =
        CODEC_MAX_FILE_BYTES < SIZE_MAX - 1 ? CODEC_MAX_FILE_BYTES : SIZE_MAX - 2;
    uint8_t *b = NULL;
    size_t cap = (size_t)1 << 16, n = 0;
    struct stat st;
    int fd = -1, ret;

    fd = is_stdin ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        ret = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        ret = -EISDIR;
        goto out;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > limit) {
            ret = 1;
            goto out;
        }
        cap = (size_t)st.st_size + 1; /* one more, to see the end without growing */
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap > limit / 2 ? (size_t)limit + 1 : 2 * cap;
            uint8_t *nb;
            if (n > limit) {
                ret = 1;
                goto out;
            }
            nb = realloc(b, ncap);
            if (!nb) {
                ret = -ENOMEM;
                goto out;
            }
            b = nb;
            cap = ncap;
        }
        if (!b && !(b = malloc(cap))) {
            ret = -ENOMEM;
            goto out;
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
        ret = 1;
        goto out;
    }
    *buf = n ? b : NULL;
    *len = n;
    if (!n)
        free(b);
    b = NULL;
    ret = 0;
out:
    if (fd >= 0 && !is_stdin)
        close(fd);
    free(b);
    return ret;
}

/*
 * A stored image (container.h) is a valid PNG, and inspect shows it as one; say also what it
 * is and which models decoding it needs (its public header: ids only, nothing of the image).
 */
static void container_note(const uint8_t *buf, size_t len, char *why, size_t cap)
{
    struct codec_ct_info ci;
    static const uint8_t none[KEYS_ID_BYTES] = {0};
    if (!codec_ct_sniff(buf, len) || codec_ct_info(buf, len, &ci) != 0)
        return;
    char ae[17] = "", coder[17] = "";
    /* the first 8 bytes of each id: enough to tell a keyring's models apart */
    tool_hex(ci.ae_id, 8, ae);
    tool_hex(ci.coder_id, 8, coder);
    const int has_ae = memcmp(ci.ae_id, none, KEYS_ID_BYTES) != 0;
    const int has_coder = memcmp(ci.coder_id, none, KEYS_ID_BYTES) != 0;
    snprintf(why, cap, "stored image: %s%s, pixels by %s%s",
             has_ae ? "features by autoencoder " : "no features", has_ae ? ae : "",
             has_coder ? "coder model " : "the fixed predictor", has_coder ? coder : "");
}

/*
 * Split, join and compare one file held in memory. Returns TOOL_EXIT_OK (row filled, also for a
 * generic file), TOOL_EXIT_MISMATCH (row filled, exact = 0) or a negative errno (out of memory).
 */
static int inspect_buf(const uint8_t *buf, size_t len, struct inspect_row *row)
{
    struct codec_image *img = NULL;
    struct codec_envelope_info ei;
    uint8_t *env = NULL, *joined = NULL;
    size_t env_len = 0, joined_len = 0;
    int rc = codec_split(buf, len, &img, &env, &env_len, row->why, sizeof(row->why));

    if (rc == -ENOTSUP || rc == -EFBIG) {
        row->format = CODEC_FORMAT_NONE; /* the generic path, as the filesystem would take */
        if (!row->why[0])
            snprintf(row->why, sizeof(row->why), "%s", strerror(-rc));
        rc = TOOL_EXIT_OK;
        goto out;
    }
    if (rc != 0)
        goto out;
    row->why[0] = '\0';
    row->format = img->format;
    row->geo = *img;
    row->geo.planes = NULL;
    row->env_bytes = env_len;
    rc = codec_envelope_info(env, env_len, &ei);
    if (rc == 0) {
        row->recipe = img->format == CODEC_FORMAT_PNG ? 1 : 0;
        row->recipe_bytes = ei.recipe_bytes;
    } else {
        /* Unknown when the format's layout is not reported yet; a malformed one is for join. */
        row->recipe = img->format == CODEC_FORMAT_PNG ? -1 : 0;
    }
    rc = codec_join(img, env, env_len, &joined, &joined_len);
    if (rc == -ENOMEM)
        goto out;
    row->exact = 0;
    if (rc != 0)
        snprintf(row->why, sizeof(row->why), "join failed: %s", strerror(-rc));
    else if (joined_len != len)
        snprintf(row->why, sizeof(row->why), "join gave %zu bytes instead of %zu", joined_len, len);
    else if (len && memcmp(joined, buf, len) != 0) {
        size_t i = 0;
        while (joined[i] == buf[i])
            i++;
        snprintf(row->why, sizeof(row->why), "first difference at byte %zu", i);
    } else
        row->exact = 1;
    rc = row->exact ? TOOL_EXIT_OK : TOOL_EXIT_MISMATCH;
    if (row->exact)
        container_note(buf, len, row->why, sizeof(row->why));
out:
    free(joined);
    free(env);
    codec_image_free(img);
    return rc;
}

/* Put s on f for a terminal: control bytes as \xNN, so a file name cannot drive the terminal. */
static void put_plain(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. p is NUL-terminated. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (*p < 0x80)
        return 1;
    if (*p >= 0xc2 && *p <= 0xdf)
        n = 2;
    else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        lo = *p == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = *p == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        lo = *p == 0xf0 ? 0x90 : 0x80;
        hi = *p == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* Put s as a JSON string; bytes that are not UTF-8 (file names may be any bytes) become U+FFFD. */
static void put_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (n == 0) {
            fputs("\\ufffd", f);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p++, f);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p++);
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
    fputc('"', f);
}

static const char *format_name(enum codec_format format)
{
    switch (format) {
    case CODEC_FORMAT_PNM:
        return "PNM";
    case CODEC_FORMAT_DICOM:
        return "DICOM";
    case CODEC_FORMAT_PNG:
        return "PNG";
    default:
        return "generic";
    }
}

static void print_json(const char *name, const struct inspect_row *row, const char *error)
{
    const int img = !error && row->format != CODEC_FORMAT_NONE;
    fputs("{\"file\":", stdout);
    put_json_str(stdout, name);
    if (error) {
        fputs(",\"bytes\":null,\"format\":null", stdout);
    } else {
        printf(",\"bytes\":%llu,\"format\":", (unsigned long long)row->bytes);
        put_json_str(stdout, format_name(row->format));
    }
    if (img)
        printf(",\"channels\":%u,\"frames\":%u,\"height\":%u,\"width\":%u,\"bits\":%u,"
               "\"significant\":%u,\"envelope_bytes\":%zu",
               row->geo.channels, row->geo.frames, row->geo.height, row->geo.width, row->geo.bits,
               row->geo.significant, row->env_bytes);
    else
        fputs(",\"channels\":null,\"frames\":null,\"height\":null,\"width\":null,\"bits\":null,"
              "\"significant\":null,\"envelope_bytes\":null",
              stdout);
    if (img && row->recipe == 1)
        printf(",\"recipe_bytes\":%llu,\"recipe_percent\":%.2f",
               (unsigned long long)row->recipe_bytes,
               100.0 * (double)row->recipe_bytes / (double)row->bytes);
    else
        fputs(",\"recipe_bytes\":null,\"recipe_percent\":null", stdout);
    fputs(",\"join\":", stdout);
    if (img)
        put_json_str(stdout, row->exact ? "exact" : "MISMATCH");
    else
        fputs("null", stdout);
    fputs(",\"reason\":", stdout);
    if (!error && row->why[0])
        put_json_str(stdout, row->why);
    else
        fputs("null", stdout);
    fputs(",\"error\":", stdout);
    if (error)
        put_json_str(stdout, error);
    else
        fputs("null", stdout);
    fputs("}\n", stdout);
}

#define INSPECT_HEADER                                                                             \
    "FORMAT   GEOMETRY        BITS        BYTES   ENVELOPE     RECIPE       %  JOIN      FILE\n"

static void print_human(const char *name, const struct inspect_row *row)
{
    char geo[64] = "-", bits[16] = "-", env[24] = "-", recipe[24] = "-", pct[16] = "-";
    const int img = row->format != CODEC_FORMAT_NONE;
    const char *join = !img ? "-" : row->exact ? "exact" : "MISMATCH";
    if (img) {
        snprintf(geo, sizeof(geo), "%ux%ux%ux%u", row->geo.channels, row->geo.frames,
                 row->geo.height, row->geo.width);
        snprintf(bits, sizeof(bits), "%u/%u", row->geo.bits, row->geo.significant);
        snprintf(env, sizeof(env), "%zu", row->env_bytes);
        if (row->recipe == 1) {
            snprintf(recipe, sizeof(recipe), "%llu", (unsigned long long)row->recipe_bytes);
            snprintf(pct, sizeof(pct), "%.2f%%",
                     100.0 * (double)row->recipe_bytes / (double)row->bytes);
        } else if (row->recipe < 0) {
            snprintf(recipe, sizeof(recipe), "?");
            snprintf(pct, sizeof(pct), "?");
        }
    }
    printf("%-8s %-15s %-7s %10llu %10s %10s %7s  %-8s  ", format_name(row->format), geo, bits,
           (unsigned long long)row->bytes, env, recipe, pct, join);
    put_plain(stdout, name);
    if (row->why[0]) {
        fputs("  (", stdout);
        put_plain(stdout, row->why);
        fputc(')', stdout);
    }
    fputc('\n', stdout);
}

static int cmd_inspect(int argc, char **argv)
{
    static const struct option inspect_opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, json = 0, ret = TOOL_EXIT_OK;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", inspect_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            return TOOL_EXIT_OK;
        }
        if (c != 'j')
            return usage();
        json = 1;
    }
    if (optind >= argc) {
        tool_error("missing FILE");
        return usage();
    }
    if (!json)
        fputs(INSPECT_HEADER, stdout);
    for (int i = optind; i < argc; i++) {
        const char *name = argv[i];
        struct inspect_row row;
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc;

        memset(&row, 0, sizeof(row));
        rc = read_whole(name, &buf, &len);
        if (rc == 1) {
            struct stat st; /* a pipe beyond the limit was read up to one byte past it */
            row.bytes = strcmp(name, "-") != 0 && stat(name, &st) == 0 && S_ISREG(st.st_mode)
                            ? (uint64_t)st.st_size
                            : CODEC_MAX_FILE_BYTES + 1;
            snprintf(row.why, sizeof(row.why), "file beyond limits");
        } else if (rc == 0) {
            row.bytes = len;
            rc = inspect_buf(buf ? buf : (const uint8_t *)"", len, &row);
        }
        free(buf);
        fflush(stdout); /* keep stdout and stderr lines in order on a terminal */
        if (rc < 0) {
            tool_error("%s: %s", name, strerror(-rc));
            if (json)
                print_json(name, &row, strerror(-rc));
            if (ret == TOOL_EXIT_OK)
                ret = TOOL_EXIT_IO;
            continue;
        }
        if (json)
            print_json(name, &row, NULL);
        else
            print_human(name, &row);
        if (rc == TOOL_EXIT_MISMATCH) {
            fflush(stdout);
            tool_error("%s: join(split(file)) differs from the file (%s): a codec bug, please "
                       "report it",
                       name, row.why);
            ret = TOOL_EXIT_MISMATCH;
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_error("standard output: %s", strerror(errno));
        return ret == TOOL_EXIT_OK ? TOOL_EXIT_IO : ret;
    }
    return ret;
}

/*
 * train: fit the autoencoder to the images of a folder, or measure a model on images. Images
 * are read through the codec adapters (PNG, PGM/PPM, native DICOM); each frame is one training
 * image. Like inspect, nothing of an image but its name and figures is printed.
 */

/* The frames of one split image as autoencoder images (each owns its pixels). */
static int frames_of(const struct codec_image *img, struct nn_ae_image **out, size_t *count)
{
    size_t plane = (size_t)img->height * img->width, bytes = img->bits / 8;
    if (img->channels > NN_AE_MAX_CHANNELS || (img->bits != 8 && img->bits != 16))
        return -ENOTSUP;
    struct nn_ae_image *f = calloc(img->frames, sizeof(*f));
    if (!f)
        return -ENOMEM;
    for (uint32_t k = 0; k < img->frames; k++) {
        f[k] = (struct nn_ae_image){img->channels, img->height, img->width, img->bits, NULL};
        f[k].pixels = malloc(plane * img->channels * bytes);
        if (!f[k].pixels) {
            while (k--)
                free(f[k].pixels);
            free(f);
            return -ENOMEM;
        }
        for (uint32_t c = 0; c < img->channels; c++)
            memcpy((uint8_t *)f[k].pixels + c * plane * bytes,
                   (const uint8_t *)img->planes + ((size_t)c * img->frames + k) * plane * bytes,
                   plane * bytes);
    }
    *out = f;
    *count = img->frames;
    return 0;
}

/* Read and split one file into frames. Returns 0, -ENOTSUP (not an image to us) or -errno. */
static int load_frames(const char *path, struct nn_ae_image **out, size_t *count)
{
    uint8_t *buf = NULL, *env = NULL;
    size_t len = 0, env_len = 0;
    struct codec_image *img = NULL;
    int rc = read_whole(path, &buf, &len);
    if (rc == 1)
        rc = -EFBIG;
    if (rc == 0 && !buf)
        rc = -ENOTSUP;
    if (rc == 0)
        rc = codec_split(buf, len, &img, &env, &env_len, NULL, 0);
    if (rc == -EFBIG)
        rc = -ENOTSUP;
    if (rc == 0)
        rc = frames_of(img, out, count);
    codec_image_free(img);
    free(env);
    free(buf);
    return rc;
}

static void free_frames(struct nn_ae_image *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++)
        free(f[i].pixels);
    free(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct train_view {
    int tty;
    double t0, last;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* PSNR of a mean squared error over [0, 1] samples. */
static double psnr_of(double mse)
{
    return mse > 0 ? -10.0 * log10(mse) : INFINITY;
}

static int train_progress(void *arg, const struct nn_ae_progress *p)
{
    struct train_view *v = arg;
    double t = now_s();
    int end = p->step == p->steps;
    if (v->tty && (end || t - v->last >= 0.2)) {
        v->last = t;
        fprintf(stderr,
                "\r\033[Kepoch %u/%u  step %u/%u  loss %.6f  mse %.6f (%.2f dB)  bpp %.4f  "
                "lambda %.4g  %.0fs",
                p->epoch, p->epochs, p->step, p->steps, p->epoch_loss, p->epoch_mse,
                psnr_of(p->epoch_mse), p->epoch_bpp, p->lambda, t - v->t0);
        if (end)
            fputc('\n', stderr);
        fflush(stderr);
    } else if (!v->tty && end) {
        fprintf(stderr,
                "epoch %u/%u: loss %.6f  mse %.6f (%.2f dB)  bpp %.4f  lambda %.4g  %.0fs\n",
                p->epoch, p->epochs, p->epoch_loss, p->epoch_mse, psnr_of(p->epoch_mse),
                p->epoch_bpp, p->lambda, t - v->t0);
    }
    return 0;
}

/* Every image of DIR (regular files, sorted by name; subfolders are not walked). */
static int gather(const char *dir, struct nn_ae_image **out, size_t *count, size_t *files,
                  size_t *skipped)
{
    DIR *d = opendir(dir);
    char **names = NULL, path[PATH_CAP];
    size_t nn = 0, cap = 0, n = 0, ncap = 0;
    struct nn_ae_image *all = NULL;
    struct dirent *e;
    int rc = 0;
    if (!d)
        return -errno;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            size_t c2 = cap ? 2 * cap : 64;
            char **nb = realloc(names, c2 * sizeof(*nb));
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            names = nb;
            cap = c2;
        }
        if (!(names[nn] = strdup(e->d_name))) {
            rc = -ENOMEM;
            goto out;
        }
        nn++;
    }
    if (nn)
        qsort(names, nn, sizeof(*names), cmp_str);
    *files = 0;
    *skipped = 0;
    for (size_t i = 0; i < nn; i++) {
        struct stat st;
        struct nn_ae_image *f = NULL;
        size_t fc = 0;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = load_frames(path, &f, &fc);
        if (rc == -ENOTSUP) {
            (*skipped)++;
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (n + fc > ncap) {
            size_t c2 = ncap ? 2 * ncap : 64;
            while (c2 < n + fc)
                c2 *= 2;
            struct nn_ae_image *nb = realloc(all, c2 * sizeof(*nb));
            if (!nb) {
                free_frames(f, fc);
                rc = -ENOMEM;
                goto out;
            }
            all = nb;
            ncap = c2;
        }
        memcpy(all + n, f, fc * sizeof(*f));
        free(f);
        n += fc;
        (*files)++;
    }
    *out = all;
    *count = n;
    all = NULL;
out:
    free_frames(all, n);
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

/*
 * The keyring train stores models in, or loads them from: unlocked once, before any work, so
 * that a wrong passphrase fails at once rather than after an hour of training. The secret is
 * kept (in locked memory) to seal the keyring again when a model is added.
 */
struct train_ring {
    char path[PATH_CAP];
    struct keys_secret *secret;
    struct keys_ring *ring;
    unsigned log_n;
};

/* Unlock the keyring at `where`: a keyring file, or a backing folder holding one. Returns
 * TOOL_EXIT_OK or the exit code to leave with, after a one-line message. */
static int ring_open(struct train_ring *r, const char *where, const struct keys_source *src)
{
    char why[512] = "";
    struct stat st;
    int dir = stat(where, &st) == 0 && S_ISDIR(st.st_mode);
    if (tool_keyring_path(where, dir ? NULL : where, r->path, sizeof(r->path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    if (access(r->path, F_OK) != 0) { /* say so before asking for a passphrase */
        tool_error("%s: %s", r->path, strerror(errno));
        return TOOL_EXIT_IO;
    }
    int rc = keys_secret_read(src, "Passphrase: ", 0, &r->secret, why, sizeof(why));
    if (rc != 0) {
        tool_report_secret_error(rc, why);
        return tool_secret_exit_code(rc);
    }
    rc = keys_ring_open(r->path, r->secret, &r->ring, why, sizeof(why));
    if (rc == 0) { /* keep the cost that unlocked it (authenticated), not a header read */
        r->log_n = keys_ring_kdf_cost(r->ring) ? keys_ring_kdf_cost(r->ring) : KEYS_LOGN_DEFAULT;
        return TOOL_EXIT_OK;
    }
    if (why[0])
        tool_error("%s", why);
    else
        tool_error("%s: %s", r->path, strerror(-rc));
    return tool_exit_code(rc);
}

static void ring_close(struct train_ring *r)
{
    keys_ring_close(r->ring);
    keys_secret_free(r->secret);
    r->ring = NULL;
    r->secret = NULL;
}

/* Add the model's file bytes to the keyring's model list, id the first 16 bytes of their
 * SHA-256, and seal the keyring again. Returns TOOL_EXIT_OK or an exit code. */
static int ring_store(struct train_ring *r, const struct nn_ae *ae)
{
    uint8_t *buf = NULL, digest[32];
    size_t len = 0;
    char id[2 * KEYS_ID_BYTES + 1];
    int rc = nn_ae_save(ae, &buf, &len);
    if (!rc)
        rc = keys_sha256(buf, len, digest);
    if (rc) {
        free(buf);
        tool_error("cannot serialise the model: %s", strerror(-rc));
        return TOOL_EXIT_IO;
    }
    tool_hex(digest, KEYS_ID_BYTES, id);
    rc = keys_ring_add_model(r->ring, KEYS_MODEL_AUTOENCODER, digest, buf, len);
    free(buf);
    if (rc == -EEXIST) {
        fprintf(stderr, "keyring %s holds model %s already\n", r->path, id);
        return TOOL_EXIT_OK;
    }
    if (rc == 0)
        rc = keys_ring_rewrap(r->ring, r->path, r->secret, r->log_n);
    if (rc) {
        tool_error("%s: cannot add the model: %s", r->path, strerror(-rc));
        return tool_exit_code(rc);
    }
    fprintf(stderr, "added model %s to keyring %s\n", id, r->path);
    return TOOL_EXIT_OK;
}

#define RING_PREFIX "keyring:"

/* The autoencoder of the keyring whose id starts with the hex digits `want` (any case; empty
 * when the keyring holds one autoencoder). Returns TOOL_EXIT_OK or an exit code. */
static int ring_model(const struct train_ring *r, const char *want, struct nn_ae **ae)
{
    size_t wl = strlen(want);
    const uint8_t *bytes = NULL;
    struct keys_model_info info, found = {0};
    uint32_t hits = 0;
    if (wl > 2 * KEYS_ID_BYTES || strspn(want, "0123456789abcdefABCDEF") != wl) {
        tool_error("%s%s: a model id is up to %d hex digits", RING_PREFIX, want, 2 * KEYS_ID_BYTES);
        return TOOL_EXIT_USAGE;
    }
    for (uint32_t i = 0; i < keys_ring_model_count(r->ring); i++) {
        const uint8_t *w = NULL;
        char id[2 * KEYS_ID_BYTES + 1];
        if (keys_ring_model(r->ring, i, &info, &w) != 0 || info.kind != KEYS_MODEL_AUTOENCODER)
            continue;
        tool_hex(info.id, KEYS_ID_BYTES, id);
        if (strncasecmp(id, want, wl) == 0) {
            hits++;
            found = info;
            bytes = w;
        }
    }
    if (hits != 1) {
        tool_error("%s: %s autoencoder model matches '%s'", r->path, hits ? "more than one" : "no",
                   want);
        return hits ? TOOL_EXIT_USAGE : TOOL_EXIT_IO;
    }
    int rc = nn_ae_load(bytes, (size_t)found.bytes, ae);
    if (rc) {
        tool_error("%s: the model in the keyring is not one this imgcrypt reads: %s", r->path,
                   strerror(-rc));
        return rc == -ENOMEM ? TOOL_EXIT_IO : TOOL_EXIT_CORRUPT;
    }
    return TOOL_EXIT_OK;
}

/* Load a model: "default" (built in), "keyring:ID" (needs the unlocked ring) or a file.
 * Returns TOOL_EXIT_OK or the exit code to leave with, after a one-line message. */
static int load_model(const char *name, const struct train_ring *r, struct nn_ae **ae)
{
    if (strncmp(name, RING_PREFIX, strlen(RING_PREFIX)) == 0) {
        if (!r || !r->ring) {
            tool_error("%s needs --keyring", name);
            return TOOL_EXIT_USAGE;
        }
        return ring_model(r, name + strlen(RING_PREFIX), ae);
    }
    int rc = strcmp(name, "default") == 0 ? nn_ae_load_default(ae) : nn_ae_load_file(name, ae);
    if (rc == 0)
        return TOOL_EXIT_OK;
    if (rc == -EBADMSG || rc == -EINVAL) {
        tool_error("%s: not an autoencoder model file, or a corrupt one", name);
        return TOOL_EXIT_CORRUPT;
    }
    tool_error("%s: cannot load model: %s", name, strerror(-rc));
    return TOOL_EXIT_IO;
}

/* Figures of one image: all its frames through encode, rate, and both decoders. */
struct eval_row {
    double psnr, ssim, bpp, ms; /* float decoder; bpp: the prior's ideal code length */
    double coded;               /* bpp as the latent coder stores it (codec/pixel/latcode.h) */
    double ipsnr, issim, ims;   /* integer decoder (when the model has one) */
    uint32_t w, h, depth;
};

static int eval_one(const struct nn_ae *ae, const char *path, struct eval_row *row)
{
    struct nn_ae_image *f = NULL;
    size_t fc = 0;
    int has_int = nn_ae_int_decoder(ae) != NULL;
    int rc = load_frames(path, &f, &fc);
    if (rc)
        return rc;
    double fig[6] = {0}, bits = 0, cbits = 0, px = 0, ms = 0, ims = 0;
    for (size_t k = 0; k < fc && rc == 0; k++) {
        struct nn_ae_latent *lat = NULL;
        struct nn_ae_image *dec = NULL, *idec = NULL;
        double b = 0, v[4] = {0}, t0 = now_s(), t1 = 0, t2 = 0;
        rc = nn_ae_encode(ae, &f[k], &lat);
        t1 = now_s();
        if (!rc)
            rc = nn_ae_decode(ae, lat, &dec);
        t2 = now_s();
        ms += (t2 - t0) * 1e3;
        if (!rc && has_int) {
            rc = nn_ae_decode_int(ae, lat, &idec);
            ims += (t1 - t0 + now_s() - t2) * 1e3;
        }
        if (!rc)
            rc = nn_ae_rate(ae, lat, &b);
        if (!rc) {
            uint8_t *code = NULL;
            size_t code_len = 0;
            rc = codec_lat_encode(lat->q, lat->channels * lat->lc, lat->lh, lat->lw, &code,
                                  &code_len);
            cbits += 8.0 * (double)code_len;
            free(code);
        }
        if (!rc)
            rc = nn_ae_psnr(&f[k], dec, &v[0]);
        if (!rc)
            rc = nn_ae_ssim(&f[k], dec, &v[1]);
        if (!rc && has_int)
            rc = nn_ae_psnr(&f[k], idec, &v[2]);
        if (!rc && has_int)
            rc = nn_ae_ssim(&f[k], idec, &v[3]);
        if (!rc) {
            for (int j = 0; j < 4; j++)
                fig[j] += v[j];
            bits += b;
            px += (double)f[k].height * f[k].width;
            row->depth = lat->depth;
        }
        nn_ae_image_free(idec);
        nn_ae_image_free(dec);
        nn_ae_latent_free(lat);
    }
    if (!rc) {
        row->psnr = fig[0] / (double)fc;
        row->ssim = fig[1] / (double)fc;
        row->ipsnr = has_int ? fig[2] / (double)fc : NAN;
        row->issim = has_int ? fig[3] / (double)fc : NAN;
        row->bpp = bits / px;
        row->coded = cbits / px;
        row->ms = ms / (double)fc;
        row->ims = has_int ? ims / (double)fc : NAN;
        row->w = f[0].width;
        row->h = f[0].height;
    }
    free_frames(f, fc);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define EVAL_COLS 8

/* One row of figures: PSNR, SSIM, BPP, CODED, integer PSNR and SSIM, the two times ("-" for
 * NaN). */
static void put_figures(const double *v)
{
    static const int width[EVAL_COLS] = {9, 7, 8, 8, 9, 8, 7, 7},
                     prec[EVAL_COLS] = {2, 4, 4, 4, 2, 4, 1, 1};
    for (int k = 0; k < EVAL_COLS; k++) {
        const char *unit = k >= 6 ? "ms" : "";
        if (k)
            putchar(' ');
        if (isnan(v[k]))
            printf("%*s", width[k] + (int)strlen(unit), "-");
        else
            printf("%*.*f%s", width[k], prec[k], v[k], unit);
    }
}

static int train_eval(const char *model, const struct train_ring *ring, char **files, int nfiles)
{
    struct nn_ae *ae = NULL;
    double *col[EVAL_COLS] = {NULL};
    size_t ok = 0;
    int ret = load_model(model, ring, &ae);
    if (ret != TOOL_EXIT_OK)
        return ret;
    for (int k = 0; k < EVAL_COLS; k++)
        if (!(col[k] = calloc((size_t)nfiles, sizeof(double)))) {
            tool_error("%s", strerror(ENOMEM));
            ret = TOOL_EXIT_IO;
            goto out;
        }
    printf("%9s %7s %8s %8s %9s %8s %9s %9s %6s %-11s %s\n", "PSNR(dB)", "SSIM", "BPP", "CODED",
           "INT-PSNR", "INT-SSIM", "ENC+DEC", "ENC+IDEC", "DEPTH", "SIZE", "FILE");
    for (int i = 0; i < nfiles; i++) {
        struct eval_row row = {0};
        int rc = eval_one(ae, files[i], &row);
        fflush(stdout);
        if (rc) {
            tool_error("%s: %s", files[i],
                       rc == -ENOTSUP ? "not an image imgcrypt can read" : strerror(-rc));
            ret = TOOL_EXIT_IO;
            continue;
        }
        char size[32];
        snprintf(size, sizeof(size), "%ux%u", row.w, row.h);
        const double v[EVAL_COLS] = {row.psnr,  row.ssim,  row.bpp, row.coded,
                                     row.ipsnr, row.issim, row.ms,  row.ims};
        put_figures(v);
        printf(" %6u %-11s ", row.depth, size);
        put_plain(stdout, files[i]);
        fputc('\n', stdout);
        for (int k = 0; k < EVAL_COLS; k++)
            col[k][ok] = v[k];
        ok++;
    }
    if (ok) {
        double m[EVAL_COLS] = {0};
        for (size_t i = 0; i < ok; i++)
            for (int k = 0; k < EVAL_COLS; k++)
                m[k] += col[k][i] / (double)ok;
        put_figures(m);
        printf(" %6s %-11s mean of %zu\n", "-", "-", ok);
        for (int k = 0; k < EVAL_COLS; k++)
            m[k] = median(col[k], ok);
        put_figures(m);
        printf(" %6s %-11s median of %zu\n", "-", "-", ok);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_error("standard output: %s", strerror(errno));
        ret = TOOL_EXIT_IO;
    }
out:
    for (int k = 0; k < EVAL_COLS; k++)
        free(col[k]);
    nn_ae_free(ae);
    return ret;
}

static int cmd_train(int argc, char **argv)
{
    enum {
        T_DATA = 1,
        T_EPOCHS,
        T_OUT,
        T_SEED,
        T_STEPS,
        T_BATCH,
        T_CROP,
        T_BPP,
        T_INIT,
        T_EVAL,
        T_ARCH,
        T_LR,
        T_LR_END,
        T_QUANTIZE,
        T_KEYRING,
        T_PASSFILE,
        T_EXTPASS,
        T_KEYFILE,
        T_HELP
    };
    static const struct option train_opts[] = {
        {"data", required_argument, NULL, T_DATA},
        {"epochs", required_argument, NULL, T_EPOCHS},
        {"out", required_argument, NULL, T_OUT},
        {"seed", required_argument, NULL, T_SEED},
        {"steps", required_argument, NULL, T_STEPS},
        {"batch", required_argument, NULL, T_BATCH},
        {"crop", required_argument, NULL, T_CROP},
        {"bpp", required_argument, NULL, T_BPP},
        {"init", required_argument, NULL, T_INIT},
        {"eval", required_argument, NULL, T_EVAL},
        {"arch", required_argument, NULL, T_ARCH},
        {"lr", required_argument, NULL, T_LR},
        {"lr-end", required_argument, NULL, T_LR_END},
        {"quantize", required_argument, NULL, T_QUANTIZE},
        {"keyring", required_argument, NULL, T_KEYRING},
        {"passfile", required_argument, NULL, T_PASSFILE},
        {"extpass", required_argument, NULL, T_EXTPASS},
        {"keyfile", required_argument, NULL, T_KEYFILE},
        {"help", no_argument, NULL, T_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *data = NULL, *out = "ae.params", *init = NULL, *eval = NULL, *quant = NULL;
    const char *keyring = NULL;
    struct keys_source src = {.kind = KEYS_SRC_TTY};
    int have_src = 0;
    struct train_ring ring = {.secret = NULL};
    struct nn_ae_train_opts o;
    struct nn_ae_config cfg;
    int have_arch = 0;
    struct nn_ae *ae = NULL;
    struct nn_ae_image *imgs = NULL;
    size_t n = 0, files = 0, skipped = 0;
    int c, ret;
    long long v;

    nn_ae_train_defaults(&o);
    nn_ae_default_config(&cfg);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", train_opts, NULL)) != -1) {
        switch (c) {
        case T_HELP:
            fputs(usage_text, stdout);
            return TOOL_EXIT_OK;
        case T_DATA:
            data = optarg;
            break;
        case T_OUT:
            out = optarg;
            break;
        case T_INIT:
            init = optarg;
            break;
        case T_EVAL:
            eval = optarg;
            break;
        case T_QUANTIZE:
            quant = optarg;
            break;
        case T_KEYRING:
            keyring = optarg;
            break;
        case T_PASSFILE:
        case T_EXTPASS:
        case T_KEYFILE:
            if (tool_set_source(&src, &have_src, train_opts[c - 1].name, optarg) != 0) {
                tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
                return TOOL_EXIT_USAGE;
            }
            break;
        case T_ARCH: {
            unsigned a[5];
            char tail;
            if (sscanf(optarg, "%u,%u,%u,%u,%u%c", &a[0], &a[1], &a[2], &a[3], &a[4], &tail) != 5 ||
                !(a[0] >= 1 && a[0] <= NN_AE_MAX_LATENT && a[1] >= 1 && a[1] <= NN_AE_MAX_WIDTH &&
                  a[2] >= 1 && a[2] <= NN_AE_MAX_WIDTH && a[3] >= 1 && a[3] <= NN_AE_MAX_WIDTH &&
                  a[4] <= NN_AE_MAX_RES)) {
                tool_error("--arch takes LATENT,W1,W2,W3,NRES: latent 1-%d, widths 1-%d, "
                           "residual blocks 0-%d",
                           NN_AE_MAX_LATENT, NN_AE_MAX_WIDTH, NN_AE_MAX_RES);
                return TOOL_EXIT_USAGE;
            }
            cfg = (struct nn_ae_config){a[0], a[1], a[2], a[3], a[4]};
            have_arch = 1;
            break;
        }
        case T_EPOCHS:
            if ((v = tool_number("epochs", optarg, 1, 100000)) < 0)
                return TOOL_EXIT_USAGE;
            o.epochs = (uint32_t)v;
            break;
        case T_STEPS:
            if ((v = tool_number("steps", optarg, 0, 10000000)) < 0)
                return TOOL_EXIT_USAGE;
            o.steps = (uint32_t)v;
            break;
        case T_BATCH:
            if ((v = tool_number("batch", optarg, 1, 1024)) < 0)
                return TOOL_EXIT_USAGE;
            o.batch = (uint32_t)v;
            break;
        case T_CROP:
            if ((v = tool_number("crop", optarg, NN_AE_FACTOR, 4096)) < 0)
                return TOOL_EXIT_USAGE;
            if (v % NN_AE_FACTOR) {
                tool_error("--crop must be a multiple of %d", NN_AE_FACTOR);
                return TOOL_EXIT_USAGE;
            }
            o.crop = (uint32_t)v;
            break;
        case T_SEED: {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || optarg[0] == '-') {
                tool_error("--seed takes a whole number from 0 to %llu", ULLONG_MAX);
                return TOOL_EXIT_USAGE;
            }
            o.seed = s;
            break;
        }
        case T_LR:
        case T_LR_END: {
            char *end = NULL;
            double r = strtod(optarg, &end);
            if (!*optarg || *end || !(r > 0 && r <= 1)) {
                tool_error("--%s takes a step size above 0, at most 1",
                           c == T_LR ? "lr" : "lr-end");
                return TOOL_EXIT_USAGE;
            }
            if (c == T_LR)
                o.lr = (float)r;
            else
                o.lr_end = (float)r;
            break;
        }
        case T_BPP: {
            char *end = NULL;
            double r = strtod(optarg, &end);
            if (!*optarg || *end || !(r >= 0 && r <= 64)) {
                tool_error("--bpp takes a rate in bits per pixel from 0 (fixed lambda) to 64");
                return TOOL_EXIT_USAGE;
            }
            o.target_bpp = (float)r;
            break;
        }
        default:
            return usage();
        }
    }
    if (have_src && !keyring) {
        tool_error("--passfile, --extpass and --keyfile go with --keyring");
        return TOOL_EXIT_USAGE;
    }
    nn_set_threads(1);
    if (eval) {
        if (data || init || have_arch || quant) {
            tool_error("--eval takes a model and images only");
            return TOOL_EXIT_USAGE;
        }
        if (optind >= argc) {
            tool_error("missing IMAGE after --eval MODEL");
            return TOOL_EXIT_USAGE;
        }
        int from_ring = strncmp(eval, RING_PREFIX, strlen(RING_PREFIX)) == 0;
        if (from_ring && keyring && (ret = ring_open(&ring, keyring, &src)) != TOOL_EXIT_OK)
            return ret;
        ret = train_eval(eval, &ring, argv + optind, argc - optind);
        ring_close(&ring);
        return ret;
    }
    if (!data) {
        tool_error(quant ? "missing --data DIR: the calibration images of --quantize"
                         : "missing --data DIR (or --eval MODEL IMAGE...)");
        return TOOL_EXIT_USAGE;
    }
    if (optind < argc) {
        tool_error("too many arguments");
        return TOOL_EXIT_USAGE;
    }
    if (init && have_arch) {
        tool_error("--arch makes a new model: it does not go with --init");
        return TOOL_EXIT_USAGE;
    }
    if (quant && (init || have_arch)) {
        tool_error("--quantize takes a trained model: it does not go with --init or --arch");
        return TOOL_EXIT_USAGE;
    }
    if (keyring && (ret = ring_open(&ring, keyring, &src)) != TOOL_EXIT_OK)
        return ret;
    ret = gather(data, &imgs, &n, &files, &skipped);
    if (ret) {
        tool_error("%s: %s", data, strerror(-ret));
        ret = tool_exit_code(ret) == TOOL_EXIT_USAGE ? TOOL_EXIT_IO : tool_exit_code(ret);
        goto out;
    }
    if (n == 0) {
        tool_error("%s: no images imgcrypt can read (PNG, PGM/PPM, native DICOM)", data);
        ret = TOOL_EXIT_USAGE;
        goto out;
    }
    if (quant || init) {
        if ((ret = load_model(quant ? quant : init, &ring, &ae)) != TOOL_EXIT_OK)
            goto out;
    } else {
        if ((ret = nn_ae_new(&cfg, o.seed, &ae))) {
            tool_error("cannot make a model: %s", strerror(-ret));
            ret = TOOL_EXIT_IO;
            goto out;
        }
    }
    struct train_view view = {.tty = isatty(STDERR_FILENO), .t0 = now_s()};
    if (!quant) {
        o.progress = train_progress;
        o.arg = &view;
        fprintf(stderr,
                "training on %zu images from %zu files (%zu files skipped), %zu parameters\n", n,
                files, skipped, nn_ae_param_count(ae));
        ret = nn_ae_train(ae, imgs, n, &o);
        if (ret) {
            tool_error("training failed: %s", strerror(-ret));
            ret = TOOL_EXIT_IO;
            goto out;
        }
    }
    /* The integer decoder is what previews and the coder use: every model written has one,
     * calibrated on the images it was trained on (or those given with --quantize). */
    if ((ret = nn_ae_quantize(ae, imgs, n))) {
        tool_error("cannot quantise the decoder: %s", strerror(-ret));
        ret = TOOL_EXIT_IO;
        goto out;
    }
    if ((ret = nn_ae_save_file(ae, out))) {
        tool_error("%s: cannot write model: %s", out, strerror(-ret));
        ret = TOOL_EXIT_IO;
        goto out;
    }
    fprintf(stderr, "wrote %s (%.0fs)\n", out, now_s() - view.t0);
    ret = ring.ring ? ring_store(&ring, ae) : TOOL_EXIT_OK;
out:
    ring_close(&ring);
    nn_ae_free(ae);
    free_frames(imgs, n);
    return ret;
}

int main(int argc, char **argv)
{
    tool_set_prog("imgcrypt");
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
        fputs(imgcrypt_image_usage, stdout);
        return TOOL_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("imgcrypt 0.1.0\n");
        return TOOL_EXIT_OK;
    }
    if (strcmp(cmd, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(cmd, "passwd") == 0)
        return cmd_passwd(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0 && imgcrypt_coder_wanted(argc - 1, argv + 1))
        return imgcrypt_coder_main(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "encrypt") == 0)
        return imgcrypt_encrypt(argc - 1, argv + 1);
    if (strcmp(cmd, "decrypt") == 0)
        return imgcrypt_decrypt(argc - 1, argv + 1);
    if (strcmp(cmd, "preview") == 0)
        return imgcrypt_preview(argc - 1, argv + 1);
    tool_error("unknown command '%s'", cmd);
    return usage();
}
