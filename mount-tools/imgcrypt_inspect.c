// SPDX-License-Identifier: MIT
/*
 * imgcrypt inspect: how the image adapters see files, as a table or one JSON object per line.
 * Only sizes, geometry and reasons are printed, never samples or envelope bytes (patient data);
 * names are escaped for the terminal or for JSON. No keyring is needed: a stored image then shows
 * only its public header (of a version 2 container: version, file id, bucketed section lengths);
 * with --keyring and a secret its sealed meta is opened and shown too.
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
#include "mount-tools/imgcrypt.h"
#include "mount-tools/tool.h"
#include "nn/ae.h"

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

static const char *format_name(enum codec_format format);

/*
 * A stored image (container.h) is a valid PNG, and inspect shows it as one; say also what it
 * is. Without a key (ckey NULL) only what its public header says: of a version 1 container
 * which models decoding it needs (ids only, nothing of the image), of a version 2 container
 * its file id and bucketed section lengths. With the container key the sealed meta too: the
 * original's format, geometry and size, and the models. Returns 0, or the error of opening
 * the meta (the note then says what is public and why no more).
 */
static int container_note(const struct keys_key *ckey, const uint8_t *buf, size_t len, char *why,
                          size_t cap)
{
    struct codec_ct_info ci;
    static const uint8_t none[KEYS_ID_BYTES] = {0};
    if (!codec_ct_sniff(buf, len) || codec_ct_info(buf, len, &ci) != 0)
        return 0;
    int rc = ckey ? codec_ct_open_info(ckey, buf, len, &ci) : 0;
    char id[2 * KEYS_ID_BYTES + 1];
    tool_hex(ci.file_id, KEYS_ID_BYTES, id);
    if (ci.sealed || rc != 0) {
        (void)snprintf(why, cap,
                       "stored image v%u, file id %s: features %llu, envelope %llu, pixels %llu "
                       "bytes sealed (bucketed); format, geometry, size and models sealed%s",
                       ci.version, id, (unsigned long long)ci.features_bytes,
                       (unsigned long long)ci.envelope_bytes, (unsigned long long)ci.pixels_bytes,
                       rc != 0 ? ": the keyring does not open them" : "");
        return rc;
    }
    char ae[17] = "", coder[17] = "", what[160] = "";
    /* the first 8 bytes of each id: enough to tell a keyring's models apart */
    tool_hex(ci.ae_id, 8, ae);
    tool_hex(ci.coder_id, 8, coder);
    const int has_ae = memcmp(ci.ae_id, none, KEYS_ID_BYTES) != 0;
    const int has_coder = memcmp(ci.coder_id, none, KEYS_ID_BYTES) != 0;
    if (ckey) /* opened (version 2) or, for version 1, public anyway: shown when asked */
        (void)snprintf(what, sizeof(what), " v%u, file id %s, %s %ux%ux%ux%u %u-bit, %llu bytes",
                       ci.version, id, format_name(ci.format), ci.channels, ci.frames, ci.height,
                       ci.width, ci.bits, (unsigned long long)ci.plain_size);
    (void)snprintf(why, cap, "stored image%s: %s%s, pixels by %s%s", what,
                   has_ae ? "features by autoencoder " : "no features", has_ae ? ae : "",
                   has_coder ? "coder model " : "the fixed predictor", has_coder ? coder : "");
    return 0;
}

/*
 * Split, join and compare one file held in memory. Returns TOOL_EXIT_OK (row filled, also for a
 * generic file), TOOL_EXIT_MISMATCH (row filled, exact = 0) or a negative errno (out of memory).
 */
static int inspect_buf(const struct keys_key *ckey, const uint8_t *buf, size_t len,
                       struct inspect_row *row)
{
    struct codec_image *img = NULL;
    struct codec_envelope_info ei;
    uint8_t *env = NULL, *joined = NULL;
    size_t env_len = 0, joined_len = 0;
    int rc = codec_split(buf, len, &img, &env, &env_len, row->why, sizeof(row->why));

    if (rc == -ENOTSUP || rc == -EFBIG) {
        row->format = CODEC_FORMAT_NONE; /* the generic path, as the filesystem would take */
        if (!row->why[0])
            (void)snprintf(row->why, sizeof(row->why), "%s", strerror(-rc));
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
        /* PNG's IDAT section, plain PNM's layout section */
        row->recipe = img->format == CODEC_FORMAT_PNG || ei.recipe_bytes ? 1 : 0;
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
        (void)snprintf(row->why, sizeof(row->why), "join failed: %s", strerror(-rc));
    else if (joined_len != len)
        (void)snprintf(row->why, sizeof(row->why), "join gave %zu bytes instead of %zu", joined_len,
                       len);
    else if (len && memcmp(joined, buf, len) != 0) {
        size_t i = 0;
        while (joined[i] == buf[i])
            i++;
        (void)snprintf(row->why, sizeof(row->why), "first difference at byte %zu", i);
    } else
        row->exact = 1;
    rc = row->exact ? TOOL_EXIT_OK : TOOL_EXIT_MISMATCH;
    if (row->exact && container_note(ckey, buf, len, row->why, sizeof(row->why)) != 0)
        rc = TOOL_EXIT_CORRUPT;
out:
    free(joined);
    free(env);
    codec_image_free(img);
    return rc;
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
    (void)fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (n == 0) {
            (void)fputs("\\ufffd", f);
            p++;
        } else if (*p == '"' || *p == '\\') {
            (void)fputc('\\', f);
            (void)fputc(*p++, f);
        } else if (*p < 0x20) {
            (void)fprintf(f, "\\u%04x", *p++);
        } else {
            (void)fwrite(p, 1, n, f);
            p += n;
        }
    }
    (void)fputc('"', f);
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
    (void)fputs("{\"file\":", stdout);
    put_json_str(stdout, name);
    if (error) {
        (void)fputs(",\"bytes\":null,\"format\":null", stdout);
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
        (void)fputs(
            ",\"channels\":null,\"frames\":null,\"height\":null,\"width\":null,\"bits\":null,"
            "\"significant\":null,\"envelope_bytes\":null",
            stdout);
    if (img && row->recipe == 1)
        printf(",\"recipe_bytes\":%llu,\"recipe_percent\":%.2f",
               (unsigned long long)row->recipe_bytes,
               100.0 * (double)row->recipe_bytes / (double)row->bytes);
    else
        (void)fputs(",\"recipe_bytes\":null,\"recipe_percent\":null", stdout);
    (void)fputs(",\"join\":", stdout);
    if (img)
        put_json_str(stdout, row->exact ? "exact" : "MISMATCH");
    else
        (void)fputs("null", stdout);
    (void)fputs(",\"reason\":", stdout);
    if (!error && row->why[0])
        put_json_str(stdout, row->why);
    else
        (void)fputs("null", stdout);
    (void)fputs(",\"error\":", stdout);
    if (error)
        put_json_str(stdout, error);
    else
        (void)fputs("null", stdout);
    (void)fputs("}\n", stdout);
}

#define INSPECT_HEADER                                                                             \
    "FORMAT   GEOMETRY        BITS        BYTES   ENVELOPE     RECIPE       %  JOIN      FILE\n"

static void print_human(const char *name, const struct inspect_row *row)
{
    char geo[64] = "-", bits[16] = "-", env[24] = "-", recipe[24] = "-", pct[16] = "-";
    const int img = row->format != CODEC_FORMAT_NONE;
    const char *join = !img ? "-" : row->exact ? "exact" : "MISMATCH";
    if (img) {
        (void)snprintf(geo, sizeof(geo), "%ux%ux%ux%u", row->geo.channels, row->geo.frames,
                       row->geo.height, row->geo.width);
        (void)snprintf(bits, sizeof(bits), "%u/%u", row->geo.bits, row->geo.significant);
        (void)snprintf(env, sizeof(env), "%zu", row->env_bytes);
        if (row->recipe == 1) {
            (void)snprintf(recipe, sizeof(recipe), "%llu", (unsigned long long)row->recipe_bytes);
            (void)snprintf(pct, sizeof(pct), "%.2f%%",
                           100.0 * (double)row->recipe_bytes / (double)row->bytes);
        } else if (row->recipe < 0) {
            (void)snprintf(recipe, sizeof(recipe), "?");
            (void)snprintf(pct, sizeof(pct), "?");
        }
    }
    printf("%-8s %-15s %-7s %10llu %10s %10s %7s  %-8s  ", format_name(row->format), geo, bits,
           (unsigned long long)row->bytes, env, recipe, pct, join);
    tool_put_plain(stdout, name);
    if (row->why[0]) {
        (void)fputs("  (", stdout);
        tool_put_plain(stdout, row->why);
        (void)fputc(')', stdout);
    }
    (void)fputc('\n', stdout);
}

int imgcrypt_inspect(int argc, char **argv)
{
    static const struct option inspect_opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"keyring", required_argument, NULL, 'k'},
        {"passfile", required_argument, NULL, 'p'},
        {"extpass", required_argument, NULL, 'e'},
        {"keyfile", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, json = 0, ret = TOOL_EXIT_OK, have_src = 0, li = 0;
    const char *keyring = NULL;
    struct keys_source src = {KEYS_SRC_TTY, NULL};
    struct keys_ring *ring = NULL;
    struct keys_key *ckey = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", inspect_opts, &li)) != -1) {
        switch (c) {
        case 'h':
            (void)fputs(imgcrypt_usage_text, stdout);
            return TOOL_EXIT_OK;
        case 'j':
            json = 1;
            break;
        case 'k':
            keyring = optarg;
            break;
        case 'p':
        case 'e':
        case 'f':
            if (tool_set_source(&src, &have_src, inspect_opts[li].name, optarg) != 0) {
                tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
                return TOOL_EXIT_USAGE;
            }
            break;
        default:
            return imgcrypt_usage();
        }
    }
    if (optind >= argc) {
        tool_error("missing FILE");
        return imgcrypt_usage();
    }
    if (have_src && !keyring) {
        tool_error("a secret needs --keyring PATH (inspect takes no BACKING)");
        return TOOL_EXIT_USAGE;
    }
    if (keyring) { /* to open the sealed meta of stored images */
        int rc = tool_unlock(keyring, &src, &ring);
        if (rc != TOOL_EXIT_OK)
            return rc;
        rc = keys_ring_subkey(ring, CODEC_CT_SUBKEY_LABEL, KEYS_KEY_GCM, &ckey);
        if (rc != 0) {
            tool_error("%s: %s", keyring, strerror(-rc));
            keys_ring_close(ring);
            return tool_exit_code(rc);
        }
    }
    if (!json)
        (void)fputs(INSPECT_HEADER, stdout);
    for (int i = optind; i < argc; i++) {
        const char *name = argv[i];
        struct inspect_row row;
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc;

        memset(&row, 0, sizeof(row));
        rc = tool_read_file(name, CODEC_MAX_FILE_BYTES, &buf, &len);
        if (rc == -EFBIG) {
            struct stat st; /* a pipe beyond the limit was read up to one byte past it */
            row.bytes = strcmp(name, "-") != 0 && stat(name, &st) == 0 && S_ISREG(st.st_mode)
                            ? (uint64_t)st.st_size
                            : CODEC_MAX_FILE_BYTES + 1;
            (void)snprintf(row.why, sizeof(row.why), "file beyond limits");
            rc = 0; /* listed as generic, with its reason */
        } else if (rc == 0) {
            row.bytes = len;
            rc = inspect_buf(ckey, buf, len, &row);
        }
        free(buf);
        (void)fflush(stdout); /* keep stdout and stderr lines in order on a terminal */
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
        if (rc == TOOL_EXIT_CORRUPT) {
            (void)fflush(stdout);
            tool_error("%s: authentication failed: wrong keyring or modified file", name);
            ret = ret == TOOL_EXIT_OK ? TOOL_EXIT_CORRUPT : ret;
        }
        if (rc == TOOL_EXIT_MISMATCH) {
            (void)fflush(stdout);
            tool_error("%s: join(split(file)) differs from the file (%s): a codec bug, please "
                       "report it",
                       name, row.why);
            ret = TOOL_EXIT_MISMATCH;
        }
    }
    keys_key_free(ckey);
    keys_ring_close(ring);
    return tool_flush_stdout(ret);
}
