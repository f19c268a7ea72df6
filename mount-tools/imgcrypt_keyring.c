// SPDX-License-Identifier: MIT
/*
 * imgcrypt's keyring commands: `init` makes a keyring (with the shipped models in its list),
 * `passwd` re-wraps it under a new secret, `info` shows its public header. One option parser
 * (struct opts) serves the three; each command says which options apply to it.
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
    int li = 0; /* the option matched: names come from the table, not from c */
    while ((c = getopt_long(argc, argv, "", long_opts, &li)) != -1) {
        if (c == OPT_HELP) {
            (void)fputs(imgcrypt_usage_text, stdout);
            exit(TOOL_EXIT_OK);
        }
        if (c == '?' || !strchr(allowed, c)) {
            if (c != '?') /* argv[optind - 1] is the option's value when given apart */
                tool_error("option --%s does not apply to %s", long_opts[li].name, argv[0]);
            return imgcrypt_usage();
        }
        const char *name = long_opts[li].name;
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
        return imgcrypt_usage();
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

int imgcrypt_init(int argc, char **argv)
{
    struct opts o;
    char path[IMGCRYPT_PATH_CAP], why[512] = "";
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

int imgcrypt_passwd(int argc, char **argv)
{
    struct opts o;
    char path[IMGCRYPT_PATH_CAP], why[512] = "";
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

int imgcrypt_info(int argc, char **argv)
{
    struct opts o;
    char path[IMGCRYPT_PATH_CAP], why[512] = "", id[33], when[64];
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
    (void)strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
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
