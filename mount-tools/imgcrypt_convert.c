// SPDX-License-Identifier: MIT
/*
 * imgcrypt convert: store the images of an unmounted store that are still block files as
 * containers, the way the mount does it for files closed today. fs_offline_convert does the
 * work; this file parses the options, unlocks the keyring, turns SIGINT/SIGTERM into a stop
 * after the files under way, draws a progress line on a terminal and prints the summary.
 * Messages name backing paths only, never the plaintext names of the store.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "nn/nn.h"
#include "mount-tools/imgcrypt.h"
#include "mount-tools/tool.h"

#define REASONS_MAX 16
#define REASON_CAP 96
#define DRAW_NS 100000000L /* the progress line is drawn at most ten times a second */

const char imgcrypt_convert_usage[] = "  convert [--keyring PATH] [SECRET] [--coder "
                                      "neural|fixed|smallest|neural-only] [--threads N]\n"
                                      "          [--convert-mb N] BACKING [PATH...]\n";

enum { O_KEYRING = 1, O_PASSFILE, O_EXTPASS, O_KEYFILE, O_CODER, O_THREADS, O_MEM, O_HELP };

static const struct option convert_opts[] = {
    {"keyring", required_argument, NULL, O_KEYRING},
    {"passfile", required_argument, NULL, O_PASSFILE},
    {"extpass", required_argument, NULL, O_EXTPASS},
    {"keyfile", required_argument, NULL, O_KEYFILE},
    {"coder", required_argument, NULL, O_CODER},
    {"threads", required_argument, NULL, O_THREADS},
    {"convert-mb", required_argument, NULL, O_MEM},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

struct convert_args {
    const char *keyring, *backing;
    const char *const *paths;
    size_t npaths;
    struct keys_source src;
    int have_src;
    int coder;
    unsigned threads;
    unsigned long convert_mb;
};

/* What the progress callback keeps between calls (it is called one call at a time). */
struct view {
    int tty;              /* stderr is a terminal: draw the progress line */
    int drawn;            /* a progress line is on it */
    struct timespec last; /* when it was drawn */
    char reason[REASONS_MAX][REASON_CAP];
    unsigned long long count[REASONS_MAX];
    size_t nreasons;
    unsigned long long other; /* failures past REASONS_MAX distinct reasons */
};

/* Set by SIGINT or SIGTERM: the one mutable global here, since a signal handler reaches no
 * other. A handler rather than sigwait in a thread: the matrix library's threads do not block
 * the signals, so any thread may take one. */
static _Atomic int stop_asked;

static int usage(void)
{
    (void)fputs("usage: imgcrypt convert [OPTIONS] BACKING [PATH...]\n\n", stderr);
    (void)fputs(imgcrypt_convert_usage, stderr);
    (void)fputs(
        "         (SECRET: --passfile F | --extpass CMD | --keyfile F)\n\nSee imgcrypt(1).\n",
        stderr);
    return TOOL_EXIT_USAGE;
}

static int parse_option(int c, int li, struct convert_args *a)
{
    long long n;
    switch (c) {
    case O_KEYRING:
        a->keyring = optarg;
        return TOOL_EXIT_OK;
    case O_PASSFILE:
    case O_EXTPASS:
    case O_KEYFILE:
        if (tool_set_source(&a->src, &a->have_src, convert_opts[li].name, optarg) == 0)
            return TOOL_EXIT_OK;
        tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
        return TOOL_EXIT_USAGE;
    case O_CODER:
        if ((a->coder = tool_parse_coder(optarg)) >= 0)
            return TOOL_EXIT_OK;
        tool_error("--coder takes neural, fixed, smallest or neural-only");
        return TOOL_EXIT_USAGE;
    case O_THREADS:
        if ((n = tool_number("threads", optarg, 1, 256)) < 0)
            return TOOL_EXIT_USAGE;
        a->threads = (unsigned)n;
        return TOOL_EXIT_OK;
    case O_MEM:
        if ((n = tool_number("convert-mb", optarg, 64, 1LL << 20)) < 0)
            return TOOL_EXIT_USAGE;
        a->convert_mb = (unsigned long)n;
        return TOOL_EXIT_OK;
    case O_HELP:
        (void)fputs(imgcrypt_convert_usage, stdout);
        exit(TOOL_EXIT_OK);
    default:
        return usage();
    }
}

static int parse_args(int argc, char **argv, struct convert_args *a)
{
    int c, li = 0, rc;
    memset(a, 0, sizeof(*a));
    a->src.kind = KEYS_SRC_TTY;
    a->coder = FS_CODER_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", convert_opts, &li)) != -1)
        if ((rc = parse_option(c, li, a)) != TOOL_EXIT_OK)
            return rc;
    if (optind >= argc) {
        tool_error("give BACKING");
        return usage();
    }
    a->backing = argv[optind];
    a->paths = (const char *const *)argv + optind + 1;
    a->npaths = (size_t)(argc - optind - 1);
    return TOOL_EXIT_OK;
}

/* ---- Progress and summary ----------------------------------------------------------------- */

static unsigned long long looked_at(const struct fs_offline_stats *st)
{
    return st->converted + st->images + st->not_images + st->not_smaller + st->linked + st->failed;
}

static void draw(struct view *v, const struct fs_offline_stats *st)
{
    (void)fprintf(stderr,
                  "\r\033[Kimgcrypt: %llu/%llu%s files: %llu converted, %llu already images, "
                  "%llu not images, %llu failed",
                  looked_at(st), st->files, st->walked ? "" : "+", st->converted, st->images,
                  st->not_images, st->failed);
    (void)fflush(stderr);
    v->drawn = 1;
}

static void erase(struct view *v)
{
    if (v->drawn)
        (void)fputs("\r\033[K", stderr);
    v->drawn = 0;
}

static void count_reason(struct view *v, const char *reason)
{
    for (size_t i = 0; i < v->nreasons; i++) {
        if (strcmp(v->reason[i], reason) == 0) {
            v->count[i]++;
            return;
        }
    }
    if (v->nreasons == REASONS_MAX) {
        v->other++;
        return;
    }
    (void)snprintf(v->reason[v->nreasons], REASON_CAP, "%s", reason);
    v->count[v->nreasons++] = 1;
}

static void progress(void *arg, const struct fs_offline_stats *st, const char *where,
                     const char *reason)
{
    struct view *v = arg;
    struct timespec now;
    if (where) {
        erase(v);
        (void)fputs("imgcrypt: ", stderr);
        tool_put_plain(stderr, where);
        (void)fprintf(stderr, ": %s\n", reason);
        count_reason(v, reason);
    }
    if (!v->tty)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ns =
        (long long)(now.tv_sec - v->last.tv_sec) * 1000000000LL + (now.tv_nsec - v->last.tv_nsec);
    if (ns >= DRAW_NS || where) {
        v->last = now;
        draw(v, st);
    }
}

static void summary(const struct view *v, const struct fs_offline_stats *st)
{
    printf("files:           %llu%s\n", st->files,
           st->walked ? "" : " (found before the stop; run again for the rest)");
    printf("converted:       %llu (%llu backing bytes became %llu)\n", st->converted,
           st->bytes_before, st->bytes_after);
    printf("already images:  %llu\n", st->images);
    printf("not images:      %llu\n", st->not_images);
    printf("not smaller:     %llu (images kept as block files: no smaller as containers)\n",
           st->not_smaller);
    printf("hard-linked:     %llu (kept as block files)\n", st->linked);
    printf("failed:          %llu\n", st->failed);
    for (size_t i = 0; i < v->nreasons; i++)
        printf("  %llu: %s\n", v->count[i], v->reason[i]);
    if (v->other)
        printf("  %llu: other reasons\n", v->other);
    printf("leftovers:       %llu temporary entr%s removed\n", st->removed,
           st->removed == 1 ? "y" : "ies");
}

/* ---- Signals ------------------------------------------------------------------------------ */

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

/* The first SIGINT or SIGTERM asks for a stop once the files under way are done; the handler
 * then resets itself, so a second one ends the process at once (as safe as a kill). A SIGINT
 * ignored from the start (a background job) stays ignored. */
static void catch_stop_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            (void)sigaction(sigs[i], &sa, NULL);
}

/* ---- The command -------------------------------------------------------------------------- */

static int unlock(const struct convert_args *a, struct keys_ring **ring)
{
    char path[IMGCRYPT_PATH_CAP];
    struct stat st;
    if (stat(a->backing, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tool_error("%s: %s", a->backing, errno ? strerror(errno) : "not a folder");
        return TOOL_EXIT_IO;
    }
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

/* The exit status and message for what fs_offline_convert returned. */
static int finish(int rc, const char *why, const struct fs_offline_stats *st)
{
    if (rc == -EINTR) {
        tool_error("stopped: %llu of %llu files found were not looked at; run it again to go on",
                   st->files - looked_at(st), st->files);
        return TOOL_EXIT_IO;
    }
    if (rc != 0) {
        tool_error("%s", why[0] ? why : strerror(-rc));
        return rc == -EBUSY ? TOOL_EXIT_MOUNT : tool_exit_code(rc);
    }
    return st->failed ? TOOL_EXIT_IO : TOOL_EXIT_OK;
}

int imgcrypt_convert(int argc, char **argv)
{
    struct convert_args a;
    struct keys_ring *ring = NULL;
    struct view v;
    struct fs_offline_stats st;
    char why[2 * PATH_MAX + 256] = "";
    int ret = parse_args(argc, argv, &a);
    if (ret != TOOL_EXIT_OK || (ret = unlock(&a, &ring)) != TOOL_EXIT_OK)
        return ret;
    memset(&v, 0, sizeof(v));
    v.tty = isatty(STDERR_FILENO);
    struct fs_offline_opts o = {.coder = a.coder,
                                .threads = a.threads,
                                .convert_mb = a.convert_mb,
                                .stop = &stop_asked,
                                .progress = progress,
                                .arg = &v};
    /* Each worker codes one image on one thread: the matrix library gets one too. */
    nn_set_threads(1);
    catch_stop_signals();
    int rc = fs_offline_convert(a.backing, ring, a.paths, a.npaths, &o, &st, why, sizeof(why));
    erase(&v);
    keys_ring_close(ring);
    if (rc == 0 || st.files > 0)
        summary(&v, &st);
    return tool_flush_stdout(finish(rc, why, &st));
}
