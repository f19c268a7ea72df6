// SPDX-License-Identifier: MIT
/*
 * imgcrypt train --coder: fit the neural predictor (codec/pixel/pixnet.h) to the images of a
 * folder, write its model file and optionally add it to a keyring; or measure a model against the
 * built-in fixed predictor (bits per sample of the real pixel stream, and coding times).
 *
 * Images are read through the codec adapters, so the coder learns from exactly the planes it
 * will code. Nothing of an image but its name and figures is printed.
 */
#include "mount-tools/imgcrypt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"
#include "codec/pixel/pixcode.h"
#include "codec/pixel/pixnet.h"
#include "mount-tools/tool.h"
#include "nn/nn.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Split one file into its planes. 0, -ENOTSUP (not an image to us) or -errno. */
static int load_image(const char *path, struct codec_image **img)
{
    uint8_t *buf = NULL, *env = NULL;
    size_t len = 0, el = 0;
    int rc = tool_read_file(path, CODEC_MAX_FILE_BYTES, &buf, &len);
    if (rc == 0)
        rc = codec_split(buf, len, img, &env, &el, NULL, 0);
    free(env);
    free(buf);
    return rc == -EFBIG ? -ENOTSUP : rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the model a name gives ----------------------------------------------------------------- */

/* "default" or a file path. Returns 0 and the model's bytes (caller frees), or -errno. */
static int model_bytes(const char *name, uint8_t **out, size_t *len)
{
    if (strcmp(name, "default") == 0) {
        size_t n = 0;
        const uint8_t *b = codec_pixnet_default_bytes(&n);
        if (!(*out = malloc(n)))
            return -ENOMEM;
        memcpy(*out, b, n);
        *len = n;
        return 0;
    }
    return tool_read_file(name, CODEC_MAX_FILE_BYTES, out, len);
}

int imgcrypt_coder_add_default(struct keys_ring *ring)
{
    uint8_t digest[32];
    size_t len = 0;
    const uint8_t *bytes = codec_pixnet_default_bytes(&len);
    if (len == 0)
        return 0; /* a build without a default model */
    int rc = keys_sha256(bytes, len, digest);
    if (rc == 0)
        rc = keys_ring_add_model(ring, KEYS_MODEL_CODER, digest, bytes, len);
    return rc == -EEXIST ? 0 : rc;
}

/* ---- eval ----------------------------------------------------------------------------------- */

struct coded {
    double bps, enc_ms, dec_ms;
};

/* Code img with pred (NULL: predictor 0), best of `reps` timings; decode and compare. */
static int measure(const struct codec_image *img, const struct codec_pixcode_predictor *pred,
                   unsigned threads, unsigned reps, struct coded *r)
{
    struct codec_pixcode_opts o = {.threads = threads, .pred = pred};
    uint8_t *s = NULL;
    size_t sl = 0;
    struct codec_image back = *img;
    int rc = 0;
    r->enc_ms = r->dec_ms = 1e30;
    back.planes = malloc(img->planes_bytes);
    if (!back.planes)
        return -ENOMEM;
    for (unsigned k = 0; k < reps && rc == 0; k++) {
        free(s);
        s = NULL;
        double t0 = now_s();
        rc = codec_pixcode_encode(img, &o, &s, &sl);
        double t1 = now_s();
        if (rc == 0)
            rc = codec_pixcode_decode(s, sl, &back, pred, threads);
        double t2 = now_s();
        if (rc == 0 && memcmp(back.planes, img->planes, img->planes_bytes) != 0)
            rc = -EBADMSG;
        if (1e3 * (t1 - t0) < r->enc_ms)
            r->enc_ms = 1e3 * (t1 - t0);
        if (1e3 * (t2 - t1) < r->dec_ms)
            r->dec_ms = 1e3 * (t2 - t1);
    }
    if (rc == 0)
        r->bps = 8.0 * (double)sl /
                 ((double)img->channels * img->frames * img->height * (double)img->width);
    free(s);
    free(back.planes);
    return rc;
}

static int coder_eval(const char *model, char **files, int nfiles, unsigned threads, unsigned reps)
{
    uint8_t *mb = NULL;
    size_t ml = 0;
    struct codec_pixnet *pn = NULL;
    double *b0 = calloc((size_t)nfiles + 1, sizeof(double));
    double *b1 = calloc((size_t)nfiles + 1, sizeof(double));
    int rc = model_bytes(model, &mb, &ml), ret = TOOL_EXIT_OK;
    size_t n = 0;
    if (!b0 || !b1) {
        tool_error("out of memory");
        ret = TOOL_EXIT_IO;
        goto out;
    }
    if (rc == 0)
        rc = codec_pixnet_load(mb, ml, &pn);
    if (rc != 0) {
        tool_error("%s: not a coder model: %s", model, strerror(-rc));
        ret = tool_exit_code(rc);
        goto out;
    }
    const struct codec_pixcode_predictor *p1 = codec_pixnet_predictor(pn);
    printf("%-40s %-14s %8s %8s %7s %7s %7s %7s\n", "image", "geometry", "bps p0", "bps p1",
           "enc0 ms", "enc1 ms", "dec0 ms", "dec1 ms");
    for (int i = 0; i < nfiles; i++) {
        struct codec_image *img = NULL;
        const char *name = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
        rc = load_image(files[i], &img);
        if (rc != 0) {
            (void)fprintf(stderr, "%s: skipped (%s)\n", name, strerror(-rc));
            continue;
        }
        struct coded c0, c1;
        rc = measure(img, NULL, threads, reps, &c0);
        if (rc == 0)
            rc = measure(img, p1, threads, reps, &c1);
        if (rc != 0) {
            tool_error("%s: coding failed: %s", name, strerror(-rc));
            ret = rc == -EBADMSG ? TOOL_EXIT_MISMATCH : TOOL_EXIT_IO;
            codec_image_free(img);
            goto out;
        }
        char geo[64];
        (void)snprintf(geo, sizeof(geo), "%ux%ux%u/%u", img->channels * img->frames, img->height,
                       img->width, img->significant);
        printf("%-40.40s %-14s %8.3f %8.3f %7.2f %7.2f %7.2f %7.2f\n", name, geo, c0.bps, c1.bps,
               c0.enc_ms, c1.enc_ms, c0.dec_ms, c1.dec_ms);
        b0[n] = c0.bps;
        b1[n] = c1.bps;
        n++;
        codec_image_free(img);
    }
    if (n) {
        double s0 = 0, s1 = 0;
        for (size_t i = 0; i < n; i++) {
            s0 += b0[i];
            s1 += b1[i];
        }
        printf("%zu images: mean bps p0 %.3f p1 %.3f; median p0 %.3f p1 %.3f\n", n, s0 / (double)n,
               s1 / (double)n, median(b0, n), median(b1, n));
    }
out:
    codec_pixnet_free(pn);
    free(mb);
    free(b0);
    free(b1);
    return tool_flush_stdout(ret);
}

/* ---- train ---------------------------------------------------------------------------------- */

static void progress(void *arg, unsigned net, uint32_t epoch, double tb, double hb)
{
    double *t0 = arg;
    (void)fprintf(stderr, "net %s epoch %3u: %.4f bits/sample (held-out %.4f)  %.0f s\n",
                  net ? "C" : "D", epoch, tb, hb, now_s() - *t0);
}

/* Every image in dir (sorted by name): *imgs, *n (caller frees each and the array). */
static int load_dir(const char *dir, struct codec_image ***imgs, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t nn = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cap) {
            cap = cap ? 2 * cap : 64;
            char **t = realloc(names, cap * sizeof(*t));
            if (!t) {
                rc = -ENOMEM;
                break;
            }
            names = t;
        }
        if (!(names[nn] = strdup(e->d_name))) {
            rc = -ENOMEM;
            break;
        }
        nn++;
    }
    closedir(d);
    // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
    struct codec_image **v = rc == 0 ? calloc(nn ? nn : 1, sizeof(*v)) : NULL;
    size_t k = 0;
    if (rc == 0 && !v)
        rc = -ENOMEM;
    if (rc == 0 && nn > 1)
        qsort(names, nn, sizeof(*names), cmp_str);
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path))
            continue;
        int r = load_image(path, &v[k]);
        if (r == 0)
            k++;
        else if (r == -ENOMEM)
            rc = r;
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (rc) {
        for (size_t i = 0; i < k; i++)
            codec_image_free(v[i]);
        free(v);
        return rc;
    }
    *imgs = v;
    *n = k;
    return 0;
}

/* Write buf to path atomically enough for a tool: a new file beside it, then rename. */
static int write_file(const char *path, const uint8_t *buf, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = mkstemp(tmp), rc = 0;
    if (fd < 0)
        return -errno;
    for (size_t off = 0; off < len && rc == 0;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = w < 0 ? -errno : -EIO;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* Whether `id` is the last model of its kind in `ring`: the one that codes already. */
static int codes_already(const struct keys_ring *ring, uint32_t kind, const uint8_t *id)
{
    struct keys_model_info info;
    for (uint32_t i = keys_ring_model_count(ring); i-- > 0;) {
        if (keys_ring_model(ring, i, &info, NULL) == 0 && info.kind == kind)
            return memcmp(info.id, id, KEYS_ID_BYTES) == 0;
    }
    return 0;
}

/* Add model bytes to the keyring at `where` (a keyring file or a backing folder). A model that
 * codes already leaves the file as it is (no new copy for backups, no scrypt). */
static int store(const char *where, const struct keys_source *src, const uint8_t *buf, size_t len)
{
    char path[4096], why[512] = "", id[2 * KEYS_ID_BYTES + 1];
    struct stat st;
    int dir = stat(where, &st) == 0 && S_ISDIR(st.st_mode);
    if (tool_keyring_path(where, dir ? NULL : where, path, sizeof(path)) != 0) {
        tool_error("path too long");
        return TOOL_EXIT_USAGE;
    }
    struct keys_secret *secret = NULL;
    struct keys_ring *ring = NULL;
    struct codec_pixnet *check = NULL;
    uint8_t digest[32];
    /* only a model this build loads goes into the keyring, where every encode would use it */
    int rc = codec_pixnet_load(buf, len, &check);
    codec_pixnet_free(check);
    if (rc != 0) {
        tool_error("the coder model does not load: %s", strerror(-rc));
        return TOOL_EXIT_CORRUPT;
    }
    rc = keys_secret_read(src, "Passphrase: ", 0, &secret, why, sizeof(why));
    if (rc != 0) {
        tool_report_secret_error(rc, why);
        return tool_secret_exit_code(rc);
    }
    rc = keys_ring_open(path, secret, &ring, why, sizeof(why));
    if (rc == 0)
        rc = keys_sha256(buf, len, digest);
    int same = rc == 0 && codes_already(ring, KEYS_MODEL_CODER, digest);
    if (rc == 0 && !same) {
        /* keep the cost that unlocked the keyring (authenticated), not a header read */
        unsigned log_n = keys_ring_kdf_cost(ring) ? keys_ring_kdf_cost(ring) : KEYS_LOGN_DEFAULT;
        rc = keys_ring_add_model(ring, KEYS_MODEL_CODER, digest, buf, len);
        /* one the ring holds already becomes the last again: the one named now codes */
        if (rc == -EEXIST)
            rc = keys_ring_raise_model(ring, digest);
        if (rc == 0)
            rc = keys_ring_rewrap(ring, path, secret, log_n);
    }
    keys_ring_close(ring);
    keys_secret_free(secret);
    if (rc != 0) {
        tool_error("%s: %s", path, why[0] ? why : strerror(-rc));
        return tool_exit_code(rc);
    }
    tool_hex(digest, KEYS_ID_BYTES, id);
    (void)fprintf(stderr, "keyring %s holds coder model %s%s\n", path, id,
                  same ? " (it coded already; the keyring is unchanged)" : "");
    return TOOL_EXIT_OK;
}

int imgcrypt_coder_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--coder") == 0)
            return 1;
    }
    return 0;
}

static const char coder_usage[] =
    "usage: imgcrypt train --coder --data DIR [--epochs N] [--steps N] [--hidden N]\n"
    "                      [--layers N] [--seed S] [--out MODEL]\n"
    "                      [--keyring PATH [--passfile F|--extpass CMD|--keyfile F]]\n"
    "       imgcrypt train --coder --eval MODEL|default [--threads N] [--reps N] IMAGE...\n"
    "       imgcrypt train --coder --merge NARROW|default WIDE [--out MODEL] [--keyring ...]\n"
    "       imgcrypt train --coder --add MODEL|default --keyring PATH [SECRET]\n";

/* What `imgcrypt train --coder` was asked to do. */
struct coder_args {
    struct codec_pixnet_train_opts o;
    const char *data, *out, *eval, *keyring, *merge, *add;
    struct keys_source src;
    int have_src;
    unsigned threads, reps;
    int first_file; /* argv index of the first IMAGE (--eval) or of WIDE (--merge) */
};

#define CODER_HELP (-1) /* coder_parse: --help was printed */

enum {
    C_CODER = 1,
    C_DATA,
    C_EPOCHS,
    C_STEPS,
    C_HIDDEN,
    C_LAYERS,
    C_SEED,
    C_OUT,
    C_EVAL,
    C_THREADS,
    C_REPS,
    C_KEYRING,
    C_PASSFILE,
    C_EXTPASS,
    C_KEYFILE,
    C_MERGE,
    C_ADD,
    C_HELP
};
static const struct option opts[] = {
    {"coder", no_argument, NULL, C_CODER},
    {"data", required_argument, NULL, C_DATA},
    {"epochs", required_argument, NULL, C_EPOCHS},
    {"steps", required_argument, NULL, C_STEPS},
    {"hidden", required_argument, NULL, C_HIDDEN},
    {"layers", required_argument, NULL, C_LAYERS},
    {"seed", required_argument, NULL, C_SEED},
    {"out", required_argument, NULL, C_OUT},
    {"eval", required_argument, NULL, C_EVAL},
    {"threads", required_argument, NULL, C_THREADS},
    {"reps", required_argument, NULL, C_REPS},
    {"keyring", required_argument, NULL, C_KEYRING},
    {"passfile", required_argument, NULL, C_PASSFILE},
    {"extpass", required_argument, NULL, C_EXTPASS},
    {"keyfile", required_argument, NULL, C_KEYFILE},
    {"merge", required_argument, NULL, C_MERGE},
    {"add", required_argument, NULL, C_ADD},
    {"help", no_argument, NULL, C_HELP},
    {NULL, 0, NULL, 0},
};
/* Parse the options into *a. TOOL_EXIT_OK, CODER_HELP, or an exit code (after a message). */
static int coder_parse(int argc, char **argv, struct coder_args *a)
{
    int c, li = 0;
    long long v;
    memset(a, 0, sizeof(*a));
    codec_pixnet_train_defaults(&a->o);
    a->out = "coder.pixnet";
    a->src.kind = KEYS_SRC_TTY;
    a->threads = a->reps = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
        switch (c) {
        case C_CODER:
            break;
        case C_HELP:
            (void)fputs(coder_usage, stdout);
            return CODER_HELP;
        case C_DATA:
            a->data = optarg;
            break;
        case C_OUT:
            a->out = optarg;
            break;
        case C_EVAL:
            a->eval = optarg;
            break;
        case C_MERGE:
            a->merge = optarg;
            break;
        case C_ADD:
            a->add = optarg;
            break;
        case C_KEYRING:
            a->keyring = optarg;
            break;
        case C_PASSFILE:
        case C_EXTPASS:
        case C_KEYFILE:
            if (tool_set_source(&a->src, &a->have_src, opts[li].name, optarg) != 0) {
                tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
                return TOOL_EXIT_USAGE;
            }
            break;
        case C_EPOCHS:
            if ((v = tool_number("epochs", optarg, 0, 100000)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.epochs = (uint32_t)v;
            break;
        case C_STEPS:
            if ((v = tool_number("steps", optarg, 1, 1000000)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.steps = (uint32_t)v;
            break;
        case C_HIDDEN:
            if ((v = tool_number("hidden", optarg, 1, 256)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.hidden = (uint32_t)v;
            break;
        case C_LAYERS:
            if ((v = tool_number("layers", optarg, 1, 4)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.layers = (uint32_t)v;
            break;
        case C_SEED:
            if ((v = tool_number("seed", optarg, 0, (long long)1 << 62)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.seed = (uint64_t)v;
            break;
        case C_THREADS:
            if ((v = tool_number("threads", optarg, 1, CODEC_PIXCODE_MAX_THREADS)) < 0)
                return TOOL_EXIT_USAGE;
            a->threads = (unsigned)v;
            break;
        case C_REPS:
            if ((v = tool_number("reps", optarg, 1, 1000)) < 0)
                return TOOL_EXIT_USAGE;
            a->reps = (unsigned)v;
            break;
        default:
            (void)fputs(coder_usage, stderr);
            return TOOL_EXIT_USAGE;
        }
    }
    a->first_file = optind;
    return TOOL_EXIT_OK;
}

/* Write a model made at t0 to --out and add it to the keyring if one is named. */
static int emit(const struct coder_args *a, const uint8_t *model, size_t len, double t0)
{
    int rc = write_file(a->out, model, len);
    if (rc != 0) {
        tool_error("%s: %s", a->out, strerror(-rc));
        return TOOL_EXIT_IO;
    }
    (void)fprintf(stderr, "wrote %s (%zu bytes) in %.0f s\n", a->out, len, now_s() - t0);
    return a->keyring ? store(a->keyring, &a->src, model, len) : TOOL_EXIT_OK;
}

/* Train a coder model on the folder's images, write it, and add it to the keyring if named. */
static int coder_train(struct coder_args *a)
{
    struct codec_image **imgs = NULL;
    size_t n = 0;
    int rc = load_dir(a->data, &imgs, &n);
    if (rc != 0) {
        tool_error("%s: %s", a->data, strerror(-rc));
        return tool_exit_code(rc);
    }
    double t0 = now_s();
    a->o.progress = progress;
    a->o.progress_arg = &t0;
    (void)fprintf(stderr, "training the coder on %zu images from %s\n", n, a->data);
    uint8_t *model = NULL;
    size_t len = 0;
    rc = codec_pixnet_train((const struct codec_image *const *)imgs, n, &a->o, &model, &len);
    for (size_t i = 0; i < n; i++)
        codec_image_free(imgs[i]);
    free(imgs);
    if (rc != 0) {
        tool_error("training failed: %s%s", strerror(-rc),
                   rc == -EINVAL ? " (too few images?)" : "");
        return tool_exit_code(rc);
    }
    int ret = emit(a, model, len, t0);
    free(model);
    return ret;
}

/* One model of two network sets: --merge's for narrow planes, `wide`'s for the others. */
static int coder_merge(struct coder_args *a, const char *wide)
{
    uint8_t *nb = NULL, *wb = NULL, *model = NULL;
    size_t nl = 0, wl = 0, len = 0;
    int rc = model_bytes(a->merge, &nb, &nl), ret = TOOL_EXIT_OK;
    const char *bad = a->merge;
    if (rc == 0) {
        bad = wide;
        rc = model_bytes(wide, &wb, &wl);
    }
    if (rc == 0) {
        bad = NULL;
        rc = codec_pixnet_merge(nb, nl, wb, wl, &model, &len);
    }
    if (rc != 0) {
        if (bad)
            tool_error("%s: %s", bad, strerror(-rc));
        else
            tool_error("cannot merge %s and %s: %s", a->merge, wide,
                       rc == -EINVAL ? "each must be a one-set coder model, with the same contexts"
                                     : strerror(-rc));
        ret = tool_exit_code(rc);
    } else {
        ret = emit(a, model, len, now_s());
    }
    free(nb);
    free(wb);
    free(model);
    return ret;
}

/* Put a model file, or this build's built-in model, into the keyring: the last added encodes
 * (a keyring made by an earlier release keeps that release's model until then). */
static int coder_add(struct coder_args *a)
{
    uint8_t *model = NULL;
    size_t len = 0;
    int rc = model_bytes(a->add, &model, &len);
    if (rc != 0) {
        tool_error("%s: %s", a->add, strerror(-rc));
        return tool_exit_code(rc);
    }
    int ret = store(a->keyring, &a->src, model, len);
    free(model);
    return ret;
}

int imgcrypt_coder_main(int argc, char **argv)
{
    struct coder_args a;
    int rc = coder_parse(argc, argv, &a);
    if (rc == CODER_HELP)
        return TOOL_EXIT_OK;
    if (rc != TOOL_EXIT_OK)
        return rc;
    nn_set_threads(1);
    if (a.eval) {
        if (a.data || a.first_file >= argc) {
            tool_error("--eval takes a model and images, not --data");
            return TOOL_EXIT_USAGE;
        }
        return coder_eval(a.eval, argv + a.first_file, argc - a.first_file, a.threads, a.reps);
    }
    if (a.add) {
        if (!a.keyring || a.data || a.merge || a.first_file != argc) {
            tool_error("--add takes a model and --keyring, nothing else");
            return TOOL_EXIT_USAGE;
        }
        return coder_add(&a);
    }
    if (a.merge) {
        if (a.data || a.first_file != argc - 1) {
            tool_error("--merge takes two models (NARROW WIDE), not --data");
            return TOOL_EXIT_USAGE;
        }
        return coder_merge(&a, argv[a.first_file]);
    }
    if (!a.data || a.first_file != argc) {
        (void)fputs(coder_usage, stderr);
        return TOOL_EXIT_USAGE;
    }
    return coder_train(&a);
}
