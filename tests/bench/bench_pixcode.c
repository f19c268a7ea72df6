// SPDX-License-Identifier: MIT
/*
 * Benchmark of the pixel coder (codec/pixel/pixcode.h), run by bench_pixcode.sh.
 *
 *   bench_pixcode size FILE...   one line per image file (PNG, PNM, native DICOM):
 *       name, samples, bits per sample of the pixel stream, of the PNG's IDAT chunks (PNG
 *       only, else -) and of JPEG-LS lossless by CharLS (libcharls.so.2, loaded at run time
 *       if present, else -); every stream is decoded and compared before it counts.
 *   bench_pixcode speed THREADS FILE...   encode and decode images per second over the files
 *       (each coded repeatedly for at least a second), with THREADS workers per image.
 *   bench_pixcode dump FILE OUT.pnm OUT.raw   the planes as a PGM/PPM (maxval 255, or 65535
 *       with 16-bit big-endian samples when a sample needs more than 8 bits) and as raw samples
 * (host order): inputs for the other coders.
 *
 * Sizes exclude nothing the decoder needs: the whole pixcode stream with its header counts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "codec/pixel/pixcode.h"

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct codec_image *load(const char *path)
{
    size_t len, el;
    uint8_t *buf = read_file(path, &len), *env = NULL;
    struct codec_image *img = NULL;
    char why[128] = "";
    if (!buf || codec_split(buf, len, &img, &env, &el, why, sizeof(why)) != 0) {
        fprintf(stderr, "%s: not split (%s)\n", path, why);
        img = NULL;
    }
    free(env);
    free(buf);
    return img;
}

static size_t samples(const struct codec_image *img)
{
    return (size_t)img->channels * img->frames * img->height * img->width;
}

/* Encode, decode, compare; the stream's length, or 0 on any failure. */
static size_t ours(const struct codec_image *img, unsigned threads)
{
    struct codec_pixcode_opts o = {.threads = threads};
    uint8_t *s = NULL;
    size_t sl = 0;
    if (codec_pixcode_encode(img, &o, &s, &sl) != 0)
        return 0;
    struct codec_image back = *img;
    back.planes = malloc(img->planes_bytes);
    int ok = back.planes && codec_pixcode_decode(s, sl, &back, NULL, threads) == 0 &&
             memcmp(back.planes, img->planes, img->planes_bytes) == 0;
    free(back.planes);
    free(s);
    return ok ? sl : 0;
}

static size_t idat_bytes(const uint8_t *b, size_t len)
{
    if (len < 8 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) != 0)
        return 0;
    size_t n = 0;
    for (size_t i = 8; i + 12 <= len;) {
        size_t l = (size_t)b[i] << 24 | (size_t)b[i + 1] << 16 | (size_t)b[i + 2] << 8 | b[i + 3];
        if (memcmp(b + i + 4, "IDAT", 4) == 0)
            n += l;
        if (l > len - i - 12)
            break;
        i += l + 12;
    }
    return n;
}

/* Bits the largest sample needs (at least 1): what the other coders are told, so that a
 * 12-bit scan in a 16-bit PNG is a 12-bit image to them too. */
static uint32_t depth_needed(const struct codec_image *img)
{
    size_t n = samples(img);
    uint32_t m = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v =
            img->bits == 8 ? ((const uint8_t *)img->planes)[i] : ((const uint16_t *)img->planes)[i];
        m = v > m ? v : m;
    }
    return 32u - (uint32_t)__builtin_clz(m);
}

/* CharLS 2.x through its C API, resolved at run time so the benchmark builds without it. */
struct charls_frame_info {
    uint32_t width, height;
    int32_t bits_per_sample, component_count;
};

static size_t charls_bytes(const struct codec_image *img)
{
    static void *lib;
    if (!lib)
        lib = dlopen("libcharls.so.2", RTLD_NOW);
    if (!lib)
        return 0;
    void *(*create)(void) = (void *(*)(void))dlsym(lib, "charls_jpegls_encoder_create");
    void (*destroy)(void *) = (void (*)(void *))dlsym(lib, "charls_jpegls_encoder_destroy");
    int (*set_frame)(void *, const struct charls_frame_info *) =
        (int (*)(void *, const struct charls_frame_info *))dlsym(
            lib, "charls_jpegls_encoder_set_frame_info");
    int (*set_il)(void *, int) =
        (int (*)(void *, int))dlsym(lib, "charls_jpegls_encoder_set_interleave_mode");
    int (*est)(void *, size_t *) = (int (*)(void *, size_t *))dlsym(
        lib, "charls_jpegls_encoder_get_estimated_destination_size");
    int (*set_dst)(void *, void *, size_t) =
        (int (*)(void *, void *, size_t))dlsym(lib, "charls_jpegls_encoder_set_destination_buffer");
    int (*enc)(void *, const void *, size_t, uint32_t) =
        (int (*)(void *, const void *, size_t, uint32_t))dlsym(
            lib, "charls_jpegls_encoder_encode_from_buffer");
    int (*written)(void *, size_t *) =
        (int (*)(void *, size_t *))dlsym(lib, "charls_jpegls_encoder_get_bytes_written");
    if (!create || !destroy || !set_frame || !set_il || !est || !set_dst || !enc || !written)
        return 0;
    size_t bps = img->bits / 8, plane = (size_t)img->width * img->height * bps, total = 0;
    /* each plane (channel of each frame) as its own grey image: what the coders compared see */
    for (size_t p = 0; p < (size_t)img->channels * img->frames; p++) {
        void *e = create();
        int32_t depth = (int32_t)depth_needed(img);
        if (img->bits == 16 && depth <= 8)
            depth = 9; /* CharLS takes 16-bit samples from 9 bits on */
        struct charls_frame_info fi = {img->width, img->height, depth, 1};
        size_t cap = 0, n = 0;
        void *dst = NULL;
        int ok = e && set_frame(e, &fi) == 0 && set_il(e, 0) == 0 && est(e, &cap) == 0 &&
                 (dst = malloc(cap)) != NULL && set_dst(e, dst, cap) == 0 &&
                 enc(e, (const uint8_t *)img->planes + p * plane, plane, 0) == 0 &&
                 written(e, &n) == 0;
        free(dst);
        if (e)
            destroy(e);
        if (!ok)
            return 0;
        total += n;
    }
    return total;
}

static const char *base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int cmd_size(int argc, char **argv)
{
    int fail = 0;
    printf("%-44s %9s %8s %8s %8s\n", "image", "samples", "pixcode", "idat", "jpegls");
    for (int i = 0; i < argc; i++) {
        size_t len;
        uint8_t *buf = read_file(argv[i], &len);
        struct codec_image *img = buf ? load(argv[i]) : NULL;
        if (!img) {
            free(buf);
            fail = 1;
            continue;
        }
        double n = (double)samples(img);
        size_t sl = ours(img, 1), il = idat_bytes(buf, len), jl = charls_bytes(img);
        if (!sl) {
            fprintf(stderr, "%s: pixcode round trip FAILED\n", argv[i]);
            fail = 1;
        }
        char ib[32] = "-", jb[32] = "-";
        if (il)
            snprintf(ib, sizeof(ib), "%.4f", 8.0 * (double)il / n);
        if (jl)
            snprintf(jb, sizeof(jb), "%.4f", 8.0 * (double)jl / n);
        printf("%-44s %9.0f %8.4f %8s %8s\n", base(argv[i]), n, 8.0 * (double)sl / n, ib, jb);
        codec_image_free(img);
        free(buf);
    }
    return fail;
}

static int cmd_speed(unsigned threads, int argc, char **argv)
{
    struct codec_pixcode_opts o = {.threads = threads};
    double te = 0, td = 0;
    long images_e = 0, images_d = 0;
    for (int i = 0; i < argc; i++) {
        struct codec_image *img = load(argv[i]);
        if (!img)
            return 1;
        uint8_t *s = NULL;
        size_t sl = 0;
        double t0 = now();
        long n = 0;
        do {
            free(s);
            s = NULL;
            if (codec_pixcode_encode(img, &o, &s, &sl) != 0)
                return 1;
            n++;
        } while (now() - t0 < 1.0 / argc || n < 3);
        te += now() - t0;
        images_e += n;
        struct codec_image back = *img;
        back.planes = malloc(img->planes_bytes);
        t0 = now();
        n = 0;
        do {
            if (codec_pixcode_decode(s, sl, &back, NULL, threads) != 0)
                return 1;
            n++;
        } while (now() - t0 < 1.0 / argc || n < 3);
        td += now() - t0;
        images_d += n;
        if (memcmp(back.planes, img->planes, img->planes_bytes) != 0)
            return 1;
        free(back.planes);
        free(s);
        codec_image_free(img);
    }
    printf("threads %u: encode %.1f images/s (%.2f ms), decode %.1f images/s (%.2f ms)\n", threads,
           (double)images_e / te, 1e3 * te / (double)images_e, (double)images_d / td,
           1e3 * td / (double)images_d);
    return 0;
}

static int cmd_dump(const char *in, const char *pnm, const char *raw)
{
    struct codec_image *img = load(in);
    if (!img)
        return 1;
    if (img->frames != 1 || (img->channels != 1 && img->channels != 3)) {
        codec_image_free(img);
        return 2; /* not a PGM/PPM image: the caller skips the other coders */
    }
    FILE *f = fopen(pnm, "wb"), *r = fopen(raw, "wb");
    if (!f || !r)
        return 1;
    size_t plane = (size_t)img->width * img->height, bps = img->bits / 8;
    /* 8 or 16 bits: cjxl 0.7 codes a PNM of other depths lossily */
    uint32_t depth = depth_needed(img) > 8 ? 16 : 8;
    fprintf(f, "P%c\n%u %u\n%u\n", img->channels == 1 ? '5' : '6', img->width, img->height,
            (1u << depth) - 1);
    for (size_t q = 0; q < plane; q++)
        for (size_t c = 0; c < img->channels; c++) {
            size_t k = c * plane + q;
            if (bps == 1) {
                fputc(((const uint8_t *)img->planes)[k], f);
            } else {
                uint16_t v = ((const uint16_t *)img->planes)[k];
                if (depth > 8) {
                    fputc(v >> 8, f);
                    fputc(v & 255, f);
                } else {
                    fputc(v, f);
                }
            }
        }
    fwrite(img->planes, 1, img->planes_bytes, r);
    fclose(f);
    fclose(r);
    codec_image_free(img);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "size") == 0)
        return cmd_size(argc - 2, argv + 2);
    if (argc >= 3 && strcmp(argv[1], "speed") == 0)
        return cmd_speed((unsigned)strtoul(argv[2], NULL, 10), argc - 3, argv + 3);
    if (argc == 5 && strcmp(argv[1], "dump") == 0)
        return cmd_dump(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: bench_pixcode size FILE... | speed THREADS FILE... | "
                    "dump FILE OUT.pnm OUT.raw\n");
    return 2;
}
