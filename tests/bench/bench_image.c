// SPDX-License-Identifier: MIT
/*
 * Benchmark of the image path through the library's API (codec/store/container.h): what an image
 * costs once stored, and how fast it is stored, read back and previewed. Run by bench_image.sh,
 * which prints the reference lossless coders beside it.
 *
 *   -c CODER: the container's coder mode (codec_pipeline_opts.coder): default, fixed, neural or
 *   smallest. The "parts" of the speed lines time predictor 0 alone, whatever the mode.
 *
 *   bench_image [-k KV] size FILE...
 *       One line per file: original and stored (container) sizes, their ratio, the sections
 *       (features, envelope, pixel stream, PNG framing), latent bits per pixel (the whole
 *       "icFt" chunk, framing, tag and coding prefix included, times 8, over the first frame's
 *       pixels), the pixel stream's bits per sample (its sealed length less the 16-byte tag),
 *       and encode, decode and preview ms (median of SIZE_RUNS, threads 2). Every container is
 *       decoded and compared with the file; a mismatch or an error (other than -ENOTSUP, a file
 *       the image path does not take) makes the exit status 1.
 *   bench_image [-k KV] speed RUNS LABEL FILE...   (LABEL: one word, for the KV lines)
 *       Over the files as one set, each figure the median of RUNS passes: encode and decode
 *       images/s on two cores both ways (one image at a time with threads = 2 inside the coder
 *       and 2 OpenBLAS threads; two images at once on two threads, threads = 1 and one OpenBLAS
 *       thread each), ms per image one at a time, preview ms, and where the time goes: encode
 *       as codec_split + pixel coder + autoencoder + the rest (features coding, sealing,
 *       SHA-256, PNG framing), decode as pixel decoder + codec_join + the rest (parsing,
 *       opening, SHA-256), preview as the integer decoder + the rest. The parts are timed
 *       through their own headers on the same inputs, each right after its whole (so both see
 *       the same load); "rest" is the whole minus the parts.
 *
 * With -k, the figures are also appended to KV as lines for the script:
 *   file NAME FORMAT BITS SAMPLES PIXELS ORIGINAL STORED FEATURES ENVELOPE STREAM ENC DEC PREV
 *   refused NAME REASON...
 *   speed LABEL KEY VALUE
 *
 * The key is a fixed test key (a benchmark measures, it protects nothing). Timings come from a
 * shared machine: medians, indicative only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec/codec.h"
#include "codec/pipeline.h"
#include "codec/pixel/pixcode.h"
#include "keys/keys.h"
#include "nn/ae.h"
#include "nn/nn.h"

#define SIZE_RUNS 3
#define MAX_RUNS 101

/* keys/keys_int.h: the tests' and fuzz targets' way to a fixed key */
int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

struct input {
    const char *path, *name;
    uint8_t *buf;
    size_t len;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int read_input(const char *path, struct input *in)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    in->path = path;
    in->name = base(path);
    in->buf = NULL;
    in->len = 0;
    if (!f)
        return -errno;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0 || !(in->buf = malloc((size_t)n + 1)) ||
        fread(in->buf, 1, (size_t)n, f) != (size_t)n) {
        free(in->buf);
        in->buf = NULL;
        fclose(f);
        return -EIO;
    }
    fclose(f);
    in->len = (size_t)n;
    return 0;
}

static const char *format_name(enum codec_format f)
{
    switch (f) {
    case CODEC_FORMAT_PNM:
        return "pnm";
    case CODEC_FORMAT_DICOM:
        return "dicom";
    case CODEC_FORMAT_PNG:
        return "png";
    default:
        return "?";
    }
}

static const char *features_name(enum codec_ct_features f)
{
    switch (f) {
    case CODEC_CT_FEATURES_PRESENT:
        return "present";
    case CODEC_CT_FEATURES_SMALL:
        return "small";
    case CODEC_CT_FEATURES_UNSUPPORTED:
        return "unsupported";
    case CODEC_CT_FEATURES_DISABLED:
        return "disabled";
    case CODEC_CT_FEATURES_NO_MODEL:
        return "no-model";
    }
    return "?";
}

/* Which predictor codes (-c; codec_pipeline_opts.coder). */
static int coder_mode = CODEC_PIPELINE_CODER_DEFAULT;

/* Encode, decode and compare: 0 and the container when the round trip holds. */
static int round_trip(const struct codec_pipeline *ct, const struct input *in, unsigned threads,
                      uint8_t **out, size_t *out_len)
{
    struct codec_pipeline_opts o = {.threads = threads, .coder = coder_mode};
    uint8_t *c = NULL, *back = NULL;
    size_t cl = 0, bl = 0;
    int rc = codec_pipeline_encode(ct, in->buf, in->len, &o, &c, &cl);
    if (rc != 0)
        return rc;
    rc = codec_pipeline_decode(ct, c, cl, threads, &back, &bl);
    if (rc == 0 && (!back || !in->buf || bl != in->len || memcmp(back, in->buf, bl) != 0))
        rc = -EBADMSG;
    free(back);
    if (rc != 0) {
        free(c);
        return rc;
    }
    *out = c;
    *out_len = cl;
    return 0;
}

/* ---- size ------------------------------------------------------------------------------------ */

enum op { OP_ENCODE, OP_DECODE, OP_PREVIEW };

/* One call of the API on buf (a file to encode, or a container), its output dropped. */
static int run_op(const struct codec_pipeline *ct, enum op op, const uint8_t *buf, size_t len,
                  unsigned threads)
{
    struct codec_pipeline_opts o = {.threads = threads, .coder = coder_mode};
    uint8_t *out = NULL;
    size_t ol = 0;
    int rc;
    if (op == OP_ENCODE)
        rc = codec_pipeline_encode(ct, buf, len, &o, &out, &ol);
    else if (op == OP_DECODE)
        rc = codec_pipeline_decode(ct, buf, len, threads, &out, &ol);
    else
        rc = codec_pipeline_preview(ct, buf, len, &out, &ol);
    free(out);
    return rc;
}

/* ms of one call with threads 2, median of SIZE_RUNS; every call must succeed. */
static int time_op(const struct codec_pipeline *ct, enum op op, const uint8_t *buf, size_t len,
                   double *ms)
{
    double t[SIZE_RUNS];
    for (int r = 0; r < SIZE_RUNS; r++) {
        double t0 = now();
        int rc = run_op(ct, op, buf, len, 2);
        if (rc != 0)
            return rc;
        t[r] = 1e3 * (now() - t0);
    }
    *ms = median(t, SIZE_RUNS);
    return 0;
}

static int cmd_size(const struct codec_pipeline *ct, const struct keys_key *key, FILE *kv, int argc,
                    char **argv)
{
    int fail = 0;
    nn_set_threads(2);
    printf("%-38s %-5s %2s %-14s %9s %9s %6s %7s %7s %9s %6s %7s %7s %7s %7s %7s %s\n", "image",
           "fmt", "b", "geometry", "original", "stored", "ratio", "feat", "env", "pixels", "png",
           "lat_bpp", "px_bps", "enc_ms", "dec_ms", "prev_ms", "features");
    for (int i = 0; i < argc; i++) {
        struct input in;
        uint8_t *c = NULL;
        size_t cl = 0;
        struct codec_ct_info info;
        double enc = 0, dec = 0, prev = -1;
        int rc = read_input(argv[i], &in);
        if (rc == 0)
            rc = round_trip(ct, &in, 2, &c, &cl);
        if (rc == -ENOTSUP) {
            struct codec_image *img = NULL;
            uint8_t *env = NULL;
            size_t el = 0;
            char why[128] = "not an image";
            if (codec_split(in.buf, in.len, &img, &env, &el, why, sizeof(why)) == 0)
                snprintf(why, sizeof(why), "codec_pipeline_encode: -ENOTSUP");
            codec_image_free(img);
            free(env);
            printf("%-38s refused, stays on the generic path (%s)\n", in.name, why);
            if (kv)
                fprintf(kv, "refused %s %s\n", in.name, why);
            free(in.buf);
            continue;
        }
        if (rc == 0)
            rc = codec_ct_open_info(key, c, cl, &info); /* the sealed meta too */
        if (rc == 0)
            rc = time_op(ct, OP_ENCODE, in.buf, in.len, &enc);
        if (rc == 0)
            rc = time_op(ct, OP_DECODE, c, cl, &dec);
        if (rc == 0) {
            rc = time_op(ct, OP_PREVIEW, c, cl, &prev);
            if (rc == -ENODATA && info.features != CODEC_CT_FEATURES_PRESENT) {
                prev = -1;
                rc = 0;
            }
        }
        if (rc != 0) {
            fprintf(stderr, "%s: round trip FAILED (%s)\n", argv[i], strerror(-rc));
            printf("%-38s FAILED: %s\n", in.name, strerror(-rc));
            fail = 1;
            free(c);
            free(in.buf);
            continue;
        }
        uint64_t samples = (uint64_t)info.channels * info.frames * info.height * info.width;
        uint64_t pixels = (uint64_t)info.height * info.width;
        uint64_t feat = info.features_bytes ? info.features_bytes + 12 : 0;
        uint64_t stream = info.pixels_plain; /* without the bucket's padding */
        uint64_t png = cl - feat - (info.envelope_bytes + 12) - info.pixels_bytes;
        char geom[48], pv[16];
        int g = snprintf(geom, sizeof(geom), "%ux%u", info.width, info.height);
        if (info.channels > 1)
            g += snprintf(geom + g, sizeof(geom) - (size_t)g, "x%uc", info.channels);
        if (info.frames > 1)
            snprintf(geom + g, sizeof(geom) - (size_t)g, "x%uf", info.frames);
        if (prev >= 0)
            snprintf(pv, sizeof(pv), "%.2f", prev);
        else
            snprintf(pv, sizeof(pv), "-");
        printf("%-38s %-5s %2u %-14s %9zu %9zu %6.3f %7llu %7llu %9llu %6llu %7.4f %7.4f %7.2f "
               "%7.2f %7s %s\n",
               in.name, format_name(info.format), info.bits, geom, in.len, cl,
               (double)cl / (double)in.len, (unsigned long long)feat,
               (unsigned long long)info.envelope_bytes + 12, (unsigned long long)info.pixels_bytes,
               (unsigned long long)png, 8.0 * (double)feat / (double)pixels,
               8.0 * (double)stream / (double)samples, enc, dec, pv, features_name(info.features));
        if (kv)
            fprintf(kv, "file %s %s %u %llu %llu %zu %zu %llu %llu %llu %.3f %.3f %.3f\n", in.name,
                    format_name(info.format), info.bits, (unsigned long long)samples,
                    (unsigned long long)pixels, in.len, cl, (unsigned long long)feat,
                    (unsigned long long)info.envelope_bytes + 12, (unsigned long long)stream, enc,
                    dec, prev);
        free(c);
        free(in.buf);
    }
    return fail;
}

/* ---- speed ----------------------------------------------------------------------------------- */

struct set {
    const struct codec_pipeline *ct;
    struct input *in;
    uint8_t **ct_buf; /* the containers of the inputs */
    size_t *ct_len;
    int n;
};

struct pass {
    const struct set *s;
    enum op op;
    unsigned threads;
    int first; /* where in the set this pass starts */
    int rc;
};

/* One pass over the set: every input encoded (or its container decoded, or previewed) once. */
static void *pass_run(void *arg)
{
    struct pass *p = arg;
    const struct set *s = p->s;
    p->rc = 0;
    for (int k = 0; k < s->n && p->rc == 0; k++) {
        int i = (p->first + k) % s->n;
        if (p->op == OP_ENCODE)
            p->rc = run_op(s->ct, p->op, s->in[i].buf, s->in[i].len, p->threads);
        else
            p->rc = run_op(s->ct, p->op, s->ct_buf[i], s->ct_len[i], p->threads);
    }
    return NULL;
}

/* Seconds per pass, median of runs: one pass at a time with 2 coder threads, or (pair) two
 * passes at once on two threads with 1 each. */
static int time_passes(const struct set *s, enum op op, int pair, int runs, double *sec)
{
    double t[MAX_RUNS];
    nn_set_threads(pair ? 1 : 2);
    for (int r = 0; r < runs; r++) {
        struct pass a = {s, op, pair ? 1u : 2u, 0, 0}, b = {s, op, 1u, s->n / 2, 0};
        pthread_t th;
        double t0 = now();
        if (pair && pthread_create(&th, NULL, pass_run, &b) != 0)
            return -EAGAIN;
        pass_run(&a);
        if (pair)
            pthread_join(th, NULL);
        t[r] = now() - t0;
        if (a.rc != 0 || (pair && b.rc != 0))
            return a.rc != 0 ? a.rc : b.rc;
    }
    *sec = median(t, runs);
    return 0;
}

/*
 * Where the time goes, with the settings of one image at a time: per image, the whole call
 * (codec_pipeline_encode, _decode, _preview) and then its parts through their own headers, back to
 * back, so that a whole and its parts see the same load; per run the sums over the set, "rest"
 * the whole less the parts; each the median over the runs, in seconds per pass.
 */
enum part {
    P_ENC,    /* codec_pipeline_encode */
    P_SPLIT,  /* codec_split */
    P_PIXENC, /* codec_pixcode_encode */
    P_AE,     /* nn_ae_encode of the first frame */
    P_ENCREST,
    P_DEC,    /* codec_pipeline_decode */
    P_PIXDEC, /* codec_pixcode_decode */
    P_JOIN,   /* codec_join */
    P_DECREST,
    P_PREV,  /* codec_pipeline_preview */
    P_AEDEC, /* nn_ae_decode_int (nn_ae_decode when the model has no integer decoder) */
    P_PREVREST,
    P_COUNT
};

static const char *const part_key[P_COUNT] = {
    "p_enc_ms",    "p_split_ms", "p_pixenc_ms",  "p_ae_ms",   "p_encrest_ms", "p_dec_ms",
    "p_pixdec_ms", "p_join_ms",  "p_decrest_ms", "p_prev_ms", "p_aedec_ms",   "p_prevrest_ms"};

/* The parts of one image, added to t[part]. */
static int parts_one(const struct set *s, int i, const struct nn_ae *ae, double *t)
{
    struct codec_pixcode_opts po = {.threads = 2};
    struct codec_image *img = NULL;
    struct codec_image back = {0};
    uint8_t *env = NULL, *pix = NULL, *file = NULL;
    size_t el = 0, pl = 0, fl = 0;
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *im = NULL;
    double t0 = now();
    int rc = run_op(s->ct, OP_ENCODE, s->in[i].buf, s->in[i].len, 2);
    double t1 = now();
    if (rc == 0)
        rc = codec_split_threads(s->in[i].buf, s->in[i].len, 2, &img, &env, &el, NULL, 0);
    double t2 = now();
    if (rc == 0)
        rc = codec_pixcode_encode(img, &po, &pix, &pl);
    double t3 = now();
    /* the container gives the autoencoder the first frame (the speed sets have one) */
    if (rc == 0 && img->frames == 1 && img->height >= CODEC_CT_MIN_FEATURE_DIM &&
        img->width >= CODEC_CT_MIN_FEATURE_DIM) {
        struct nn_ae_image fr = {img->channels, img->height, img->width, img->bits, img->planes};
        rc = nn_ae_encode(ae, &fr, &lat);
    }
    double t4 = now();
    t[P_ENC] += t1 - t0;
    t[P_SPLIT] += t2 - t1;
    t[P_PIXENC] += t3 - t2;
    t[P_AE] += t4 - t3;
    if (rc != 0)
        goto out;
    back = *img;
    if (!(back.planes = malloc(img->planes_bytes))) {
        rc = -ENOMEM;
        goto out;
    }
    t0 = now();
    rc = run_op(s->ct, OP_DECODE, s->ct_buf[i], s->ct_len[i], 2);
    t1 = now();
    if (rc == 0)
        rc = codec_pixcode_decode(pix, pl, &back, NULL, 2);
    t2 = now();
    if (rc == 0)
        rc = codec_join_threads(&back, env, el, 2, &file, &fl);
    t3 = now();
    t[P_DEC] += t1 - t0;
    t[P_PIXDEC] += t2 - t1;
    t[P_JOIN] += t3 - t2;
    if (rc == 0 && (fl != s->in[i].len || memcmp(file, s->in[i].buf, fl) != 0))
        rc = -EBADMSG;
    if (rc != 0 || !lat)
        goto out;
    t0 = now();
    rc = run_op(s->ct, OP_PREVIEW, s->ct_buf[i], s->ct_len[i], 2);
    t1 = now();
    if (rc == 0) {
        rc = nn_ae_decode_int(ae, lat, &im);
        if (rc == -ENOENT)
            rc = nn_ae_decode(ae, lat, &im);
    }
    t2 = now();
    t[P_PREV] += t1 - t0;
    t[P_AEDEC] += t2 - t1;
out:
    nn_ae_image_free(im);
    nn_ae_latent_free(lat);
    free(file);
    free(back.planes);
    free(pix);
    free(env);
    codec_image_free(img);
    return rc;
}

static int time_parts(const struct set *s, int runs, double med[P_COUNT])
{
    double t[P_COUNT][MAX_RUNS];
    struct nn_ae *ae = NULL;
    int rc = nn_ae_load_default(&ae);
    if (rc != 0)
        return rc;
    nn_set_threads(2);
    for (int r = 0; r < runs && rc == 0; r++) {
        double sum[P_COUNT] = {0};
        for (int i = 0; i < s->n && rc == 0; i++)
            rc = parts_one(s, i, ae, sum);
        sum[P_ENCREST] = sum[P_ENC] - sum[P_SPLIT] - sum[P_PIXENC] - sum[P_AE];
        sum[P_DECREST] = sum[P_DEC] - sum[P_PIXDEC] - sum[P_JOIN];
        sum[P_PREVREST] = sum[P_PREV] - sum[P_AEDEC];
        for (int k = 0; k < P_COUNT; k++)
            t[k][r] = sum[k];
    }
    nn_ae_free(ae);
    if (rc != 0)
        return rc;
    for (int k = 0; k < P_COUNT; k++)
        med[k] = median(t[k], runs);
    return 0;
}

static void put_kv(FILE *kv, const char *label, const char *key, double v)
{
    if (kv)
        fprintf(kv, "speed %s %s %.4f\n", label, key, v);
}

static int cmd_speed(const struct codec_pipeline *ct, FILE *kv, int runs, const char *label,
                     int argc, char **argv)
{
    struct set s = {ct, NULL, NULL, NULL, argc};
    double enc1, enc2, dec1, dec2, prev;
    double pt[P_COUNT];
    int rc = -ENOMEM;
    if (argc < 1 || runs < 1 || runs > MAX_RUNS)
        return 2;
    s.in = calloc((size_t)argc, sizeof(*s.in));
    s.ct_buf = calloc((size_t)argc, sizeof(*s.ct_buf));
    s.ct_len = calloc((size_t)argc, sizeof(*s.ct_len));
    if (!s.in || !s.ct_buf || !s.ct_len)
        goto out;
    /* also the warm-up: the autoencoder is loaded on first use */
    nn_set_threads(2);
    for (int i = 0; i < argc; i++) {
        if ((rc = read_input(argv[i], &s.in[i])) != 0 ||
            (rc = round_trip(ct, &s.in[i], 2, &s.ct_buf[i], &s.ct_len[i])) != 0) {
            fprintf(stderr, "%s: round trip FAILED (%s)\n", argv[i], strerror(-rc));
            goto out;
        }
    }
    if ((rc = time_passes(&s, OP_ENCODE, 0, runs, &enc1)) != 0 ||
        (rc = time_passes(&s, OP_ENCODE, 1, runs, &enc2)) != 0 ||
        (rc = time_passes(&s, OP_DECODE, 0, runs, &dec1)) != 0 ||
        (rc = time_passes(&s, OP_DECODE, 1, runs, &dec2)) != 0 ||
        (rc = time_passes(&s, OP_PREVIEW, 0, runs, &prev)) != 0 ||
        (rc = time_parts(&s, runs, pt)) != 0) {
        fprintf(stderr, "%s: FAILED (%s)\n", label, strerror(-rc));
        goto out;
    }
    double n = argc, ms = 1e3 / n;
    printf("%s: %d images, median of %d runs (%ld shared cores: indicative)\n", label, argc, runs,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("  encode  one at a time (threads 2) %7.1f images/s %8.2f ms/image | two at once "
           "(threads 1 each) %7.1f images/s\n",
           n / enc1, ms * enc1, 2 * n / enc2);
    printf("  decode  one at a time (threads 2) %7.1f images/s %8.2f ms/image | two at once "
           "(threads 1 each) %7.1f images/s\n",
           n / dec1, ms * dec1, 2 * n / dec2);
    printf("  preview %8.2f ms/image\n", ms * prev);
    printf("  encode parts, ms/image: whole %.2f = split %.2f + pixel coder %.2f + autoencoder "
           "%.2f + rest %.2f (features coding, sealing, SHA-256, PNG)\n",
           ms * pt[P_ENC], ms * pt[P_SPLIT], ms * pt[P_PIXENC], ms * pt[P_AE], ms * pt[P_ENCREST]);
    printf("  decode parts, ms/image: whole %.2f = pixel decoder %.2f + join %.2f + rest %.2f "
           "(parse, open, SHA-256)\n",
           ms * pt[P_DEC], ms * pt[P_PIXDEC], ms * pt[P_JOIN], ms * pt[P_DECREST]);
    printf("  preview parts, ms/image: whole %.2f = integer decoder %.2f + rest %.2f (parse, "
           "open, PNG)\n",
           ms * pt[P_PREV], ms * pt[P_AEDEC], ms * pt[P_PREVREST]);
    put_kv(kv, label, "enc1_ips", n / enc1);
    put_kv(kv, label, "enc2_ips", 2 * n / enc2);
    put_kv(kv, label, "dec1_ips", n / dec1);
    put_kv(kv, label, "dec2_ips", 2 * n / dec2);
    put_kv(kv, label, "enc1_ms", ms * enc1);
    put_kv(kv, label, "dec1_ms", ms * dec1);
    put_kv(kv, label, "prev_ms", ms * prev);
    for (int k = 0; k < P_COUNT; k++)
        put_kv(kv, label, part_key[k], ms * pt[k]);
    rc = 0;
out:
    for (int i = 0; s.in && i < argc; i++)
        free(s.in[i].buf);
    for (int i = 0; s.ct_buf && i < argc; i++)
        free(s.ct_buf[i]);
    free(s.in);
    free(s.ct_buf);
    free(s.ct_len);
    return rc != 0;
}

int main(int argc, char **argv)
{
    static const uint8_t raw[32] = {0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
    struct keys_key *key = NULL;
    struct codec_pipeline *ct = NULL;
    FILE *kv = NULL;
    int rc = 2;
    if (argc >= 3 && strcmp(argv[1], "-k") == 0) {
        if (!(kv = fopen(argv[2], "a"))) {
            perror(argv[2]);
            return 2;
        }
        argc -= 2;
        argv += 2;
    }
    if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
        static const char *const modes[] = {"default", "fixed", "neural", "smallest",
                                            "neural-only"};
        coder_mode = -1;
        for (int m = 0; m < 5; m++)
            if (strcmp(argv[2], modes[m]) == 0)
                coder_mode = m;
        if (coder_mode < 0) {
            fprintf(stderr,
                    "bench_image: -c takes default, fixed, neural, smallest or neural-only\n");
            goto out;
        }
        argc -= 2;
        argv += 2;
    }
    if (keys_key_from_bytes(raw, KEYS_KEY_GCM, &key) != 0 ||
        codec_pipeline_new_key(key, &ct) != 0) {
        fprintf(stderr, "bench_image: no container key\n");
        goto out;
    }
    if (argc >= 2 && strcmp(argv[1], "size") == 0)
        rc = cmd_size(ct, key, kv, argc - 2, argv + 2);
    else if (argc >= 5 && strcmp(argv[1], "speed") == 0)
        rc = cmd_speed(ct, kv, (int)strtol(argv[2], NULL, 10), argv[3], argc - 4, argv + 4);
    else
        fprintf(stderr, "usage: bench_image [-k KV] [-c CODER] size FILE... | "
                        "[-k KV] [-c CODER] speed RUNS LABEL FILE...\n");
out:
    codec_pipeline_free(ct);
    keys_key_free(key);
    if (kv && fclose(kv) != 0)
        rc = rc ? rc : 1;
    return rc;
}
