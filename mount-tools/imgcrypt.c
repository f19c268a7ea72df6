// SPDX-License-Identifier: MIT
/*
 * imgcrypt: the administration command. `init` makes a keyring, `passwd` re-wraps it under a new
 * secret, `info` shows its public header, `inspect` shows how the image adapters see files (no
 * keyring involved). Each command reads its options with getopt_long and leaves with one of the
 * documented exit codes (mount-tools/tool.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"
#include "keys/keys.h"
#include "mount-tools/tool.h"

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
    "\n"
    "See imgcrypt(1).\n";

static int usage(void)
{
    fputs(usage_text, stderr);
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

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
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
    keys_secret_free(secret);
    if (rc != 0) {
        tool_error("%s: cannot create keyring: %s", path, strerror(-rc));
        return tool_exit_code(rc);
    }
    struct keys_ring_info info;
    if (keys_ring_info(path, &info, NULL, 0) == 0) {
        char id[33];
        hex(info.fs_id, KEYS_ID_BYTES, id);
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
    struct keys_ring_info info;
    if (!o.have_log_n && keys_ring_info(path, &info, NULL, 0) == 0 && info.kdf == KEYS_KDF_SCRYPT)
        o.log_n = info.log_n; /* keep the cost the keyring had */
    rc = tool_unlock(path, &o.src, &ring);
    if (rc != TOOL_EXIT_OK)
        return rc;
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
    hex(info.fs_id, KEYS_ID_BYTES, id);
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
        hex(info.models[i].id, KEYS_ID_BYTES, id);
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

int main(int argc, char **argv)
{
    tool_set_prog("imgcrypt");
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
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
    tool_error("unknown command '%s'", cmd);
    return usage();
}
