// SPDX-License-Identifier: MIT
/*
 * imgcrypt train (the autoencoder): fit it to a folder of images and quantise its decoder,
 * `--quantize` only quantises, `--eval` measures a model on images; with --keyring the model
 * written goes into the keyring's model list. (`train --coder` is imgcrypt_coder.c.)
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
    int rc = tool_read_file(path, CODEC_MAX_FILE_BYTES, &buf, &len);
    if (rc == 0 && len == 0)
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
        (void)fprintf(stderr,
                      "\r\033[Kepoch %u/%u  step %u/%u  loss %.6f  mse %.6f (%.2f dB)  bpp %.4f  "
                      "lambda %.4g  %.0fs",
                      p->epoch, p->epochs, p->step, p->steps, p->epoch_loss, p->epoch_mse,
                      psnr_of(p->epoch_mse), p->epoch_bpp, p->lambda, t - v->t0);
        if (end)
            (void)fputc('\n', stderr);
        (void)fflush(stderr);
    } else if (!v->tty && end) {
        (void)fprintf(stderr,
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
    char **names = NULL, path[IMGCRYPT_PATH_CAP];
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
        if (fc)
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
    char path[IMGCRYPT_PATH_CAP];
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
        (void)fprintf(stderr, "keyring %s holds model %s already\n", r->path, id);
        return TOOL_EXIT_OK;
    }
    if (rc == 0)
        rc = keys_ring_rewrap(r->ring, r->path, r->secret, r->log_n);
    if (rc) {
        tool_error("%s: cannot add the model: %s", r->path, strerror(-rc));
        return tool_exit_code(rc);
    }
    (void)fprintf(stderr, "added model %s to keyring %s\n", id, r->path);
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
            rc = codec_latcode_encode(lat->q, lat->channels * lat->lc, lat->lh, lat->lw, &code,
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
        (void)fflush(stdout);
        if (rc) {
            tool_error("%s: %s", files[i],
                       rc == -ENOTSUP ? "not an image imgcrypt can read" : strerror(-rc));
            ret = TOOL_EXIT_IO;
            continue;
        }
        char size[32];
        (void)snprintf(size, sizeof(size), "%ux%u", row.w, row.h);
        const double v[EVAL_COLS] = {row.psnr,  row.ssim,  row.bpp, row.coded,
                                     row.ipsnr, row.issim, row.ms,  row.ims};
        put_figures(v);
        printf(" %6u %-11s ", row.depth, size);
        tool_put_plain(stdout, files[i]);
        (void)fputc('\n', stdout);
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
    ret = tool_flush_stdout(ret);
out:
    for (int k = 0; k < EVAL_COLS; k++)
        free(col[k]);
    nn_ae_free(ae);
    return ret;
}

/* What `imgcrypt train` (the autoencoder) was asked to do. */
struct train_args {
    const char *data, *out, *init, *eval, *quant, *keyring;
    struct keys_source src;
    int have_src, have_arch;
    struct nn_ae_train_opts o;
    struct nn_ae_config cfg;
    int first_file; /* argv index of the first IMAGE (--eval) */
};

#define TRAIN_HELP (-1) /* train_parse: --help was printed */

/* n decimal numbers separated by commas, nothing else: 0, or -1 on anything else. */
static int parse_uints(const char *s, unsigned *w, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        if (*s < '0' || *s > '9')
            return -1;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || v > UINT_MAX || *end != (i + 1 < n ? ',' : '\0'))
            return -1;
        w[i] = (unsigned)v;
        s = end + 1;
    }
    return 0;
}

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
/* Parse train's options into *a. TOOL_EXIT_OK, TRAIN_HELP, or an exit code (after a message).
 * One case per option with its own range check: as long as the option list, no longer. */
static int train_parse(int argc, char **argv, struct train_args *a)
{
    int c, li = 0;
    long long v;
    memset(a, 0, sizeof(*a));
    a->out = "ae.params";
    a->src.kind = KEYS_SRC_TTY;
    nn_ae_train_defaults(&a->o);
    nn_ae_default_config(&a->cfg);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", train_opts, &li)) != -1) {
        switch (c) {
        case T_HELP:
            (void)fputs(imgcrypt_usage_text, stdout);
            return TRAIN_HELP;
        case T_DATA:
            a->data = optarg;
            break;
        case T_OUT:
            a->out = optarg;
            break;
        case T_INIT:
            a->init = optarg;
            break;
        case T_EVAL:
            a->eval = optarg;
            break;
        case T_QUANTIZE:
            a->quant = optarg;
            break;
        case T_KEYRING:
            a->keyring = optarg;
            break;
        case T_PASSFILE:
        case T_EXTPASS:
        case T_KEYFILE:
            if (tool_set_source(&a->src, &a->have_src, train_opts[li].name, optarg) != 0) {
                tool_error("give one secret source at most (--passfile, --extpass or --keyfile)");
                return TOOL_EXIT_USAGE;
            }
            break;
        case T_ARCH: {
            unsigned w[5];
            if (parse_uints(optarg, w, 5) != 0 ||
                !(w[0] >= 1 && w[0] <= NN_AE_MAX_LATENT && w[1] >= 1 && w[1] <= NN_AE_MAX_WIDTH &&
                  w[2] >= 1 && w[2] <= NN_AE_MAX_WIDTH && w[3] >= 1 && w[3] <= NN_AE_MAX_WIDTH &&
                  w[4] <= NN_AE_MAX_RES)) {
                tool_error("--arch takes LATENT,W1,W2,W3,NRES: latent 1-%d, widths 1-%d, "
                           "residual blocks 0-%d",
                           NN_AE_MAX_LATENT, NN_AE_MAX_WIDTH, NN_AE_MAX_RES);
                return TOOL_EXIT_USAGE;
            }
            a->cfg = (struct nn_ae_config){w[0], w[1], w[2], w[3], w[4]};
            a->have_arch = 1;
            break;
        }
        case T_EPOCHS:
            if ((v = tool_number("epochs", optarg, 1, 100000)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.epochs = (uint32_t)v;
            break;
        case T_STEPS:
            if ((v = tool_number("steps", optarg, 0, 10000000)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.steps = (uint32_t)v;
            break;
        case T_BATCH:
            if ((v = tool_number("batch", optarg, 1, 1024)) < 0)
                return TOOL_EXIT_USAGE;
            a->o.batch = (uint32_t)v;
            break;
        case T_CROP:
            if ((v = tool_number("crop", optarg, NN_AE_FACTOR, 4096)) < 0)
                return TOOL_EXIT_USAGE;
            if (v % NN_AE_FACTOR) {
                tool_error("--crop must be a multiple of %d", NN_AE_FACTOR);
                return TOOL_EXIT_USAGE;
            }
            a->o.crop = (uint32_t)v;
            break;
        case T_SEED: {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || optarg[0] == '-') {
                tool_error("--seed takes a whole number from 0 to %llu", ULLONG_MAX);
                return TOOL_EXIT_USAGE;
            }
            a->o.seed = s;
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
                a->o.lr = (float)r;
            else
                a->o.lr_end = (float)r;
            break;
        }
        case T_BPP: {
            char *end = NULL;
            double r = strtod(optarg, &end);
            if (!*optarg || *end || !(r >= 0 && r <= 64)) {
                tool_error("--bpp takes a rate in bits per pixel from 0 (fixed lambda) to 64");
                return TOOL_EXIT_USAGE;
            }
            a->o.target_bpp = (float)r;
            break;
        }
        default:
            return imgcrypt_usage();
        }
    }
    a->first_file = optind;
    return TOOL_EXIT_OK;
}

/* Option combinations train refuses. TOOL_EXIT_OK or TOOL_EXIT_USAGE (after a message). */
static int train_check(const struct train_args *a, int argc)
{
    if (a->have_src && !a->keyring) {
        tool_error("--passfile, --extpass and --keyfile go with --keyring");
        return TOOL_EXIT_USAGE;
    }
    if (a->eval) {
        if (a->data || a->init || a->have_arch || a->quant) {
            tool_error("--eval takes a model and images only");
            return TOOL_EXIT_USAGE;
        }
        if (a->first_file >= argc) {
            tool_error("missing IMAGE after --eval MODEL");
            return TOOL_EXIT_USAGE;
        }
        return TOOL_EXIT_OK;
    }
    if (!a->data) {
        tool_error(a->quant ? "missing --data DIR: the calibration images of --quantize"
                            : "missing --data DIR (or --eval MODEL IMAGE...)");
        return TOOL_EXIT_USAGE;
    }
    if (a->first_file < argc) {
        tool_error("too many arguments");
        return TOOL_EXIT_USAGE;
    }
    if (a->init && a->have_arch) {
        tool_error("--arch makes a new model: it does not go with --init");
        return TOOL_EXIT_USAGE;
    }
    if (a->quant && (a->init || a->have_arch)) {
        tool_error("--quantize takes a trained model: it does not go with --init or --arch");
        return TOOL_EXIT_USAGE;
    }
    return TOOL_EXIT_OK;
}

/* train --eval: the model from a file, the shipped one or the keyring, on the images. */
static int train_run_eval(const struct train_args *a, int argc, char **argv)
{
    struct train_ring ring = {.secret = NULL};
    int ret;
    int from_ring = strncmp(a->eval, RING_PREFIX, strlen(RING_PREFIX)) == 0;
    if (from_ring && a->keyring && (ret = ring_open(&ring, a->keyring, &a->src)) != TOOL_EXIT_OK)
        return ret;
    ret = train_eval(a->eval, &ring, argv + a->first_file, argc - a->first_file);
    ring_close(&ring);
    return ret;
}

/* train, train --quantize: fit (or only quantise) a model on the folder's images, write it,
 * and add it to the keyring when one was named. */
static int train_run(struct train_args *a)
{
    struct train_ring ring = {.secret = NULL};
    struct nn_ae *ae = NULL;
    struct nn_ae_image *imgs = NULL;
    size_t n = 0, files = 0, skipped = 0;
    int ret;
    if (a->keyring && (ret = ring_open(&ring, a->keyring, &a->src)) != TOOL_EXIT_OK)
        return ret;
    ret = gather(a->data, &imgs, &n, &files, &skipped);
    if (ret) {
        tool_error("%s: %s", a->data, strerror(-ret));
        ret = tool_exit_code(ret) == TOOL_EXIT_USAGE ? TOOL_EXIT_IO : tool_exit_code(ret);
        goto out;
    }
    if (n == 0) {
        tool_error("%s: no images imgcrypt can read (PNG, PGM/PPM, native DICOM)", a->data);
        ret = TOOL_EXIT_USAGE;
        goto out;
    }
    if (a->quant || a->init) {
        if ((ret = load_model(a->quant ? a->quant : a->init, &ring, &ae)) != TOOL_EXIT_OK)
            goto out;
    } else {
        if ((ret = nn_ae_new(&a->cfg, a->o.seed, &ae))) {
            tool_error("cannot make a model: %s", strerror(-ret));
            ret = TOOL_EXIT_IO;
            goto out;
        }
    }
    struct train_view view = {.tty = isatty(STDERR_FILENO), .t0 = now_s()};
    if (!a->quant) {
        a->o.progress = train_progress;
        a->o.arg = &view;
        (void)fprintf(stderr,
                      "training on %zu images from %zu files (%zu files skipped), %zu parameters\n",
                      n, files, skipped, nn_ae_param_count(ae));
        ret = nn_ae_train(ae, imgs, n, &a->o);
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
    if ((ret = nn_ae_save_file(ae, a->out))) {
        tool_error("%s: cannot write model: %s", a->out, strerror(-ret));
        ret = TOOL_EXIT_IO;
        goto out;
    }
    (void)fprintf(stderr, "wrote %s (%.0fs)\n", a->out, now_s() - view.t0);
    ret = ring.ring ? ring_store(&ring, ae) : TOOL_EXIT_OK;
out:
    ring_close(&ring);
    nn_ae_free(ae);
    free_frames(imgs, n);
    return ret;
}

int imgcrypt_train(int argc, char **argv)
{
    struct train_args a;
    int ret = train_parse(argc, argv, &a);
    if (ret == TRAIN_HELP)
        return TOOL_EXIT_OK;
    if (ret != TOOL_EXIT_OK || (ret = train_check(&a, argc)) != TOOL_EXIT_OK)
        return ret;
    nn_set_threads(1);
    return a.eval ? train_run_eval(&a, argc, argv) : train_run(&a);
}
