// SPDX-License-Identifier: MIT
/*
 * Quality of a lossy reference codec measured with the autoencoder's own metrics, for
 * bench_ae_quality.sh: the same loader as `imgcrypt train --eval` (codec_split) and the same
 * nn_ae_psnr / nn_ae_ssim, so that a codec's figures and ours differ by the decoder only.
 *
 *   bench_quality pnm IMAGE OUT.pnm
 *       Write a one-frame image (PNG, PNM, native DICOM) as a binary PGM/PPM for the reference
 *       encoders: maxval 255 for 8-bit images; for 16-bit images maxval 2^depth - 1 (depth the
 *       bit length of the largest sample, the range the autoencoder and the metrics normalise
 *       by), so a 12-bit scan goes out as 12-bit data. Prints "WIDTH HEIGHT CHANNELS BITS
 *       MAXVAL", BITS the image's sample size (8 or 16).
 *   bench_quality compare IMAGE DECODED
 *       Prints "PSNR SSIM" of DECODED, a binary PGM/PPM as the reference decoders write it,
 *       against IMAGE. Samples above DECODED's maxval are clamped to it; when that maxval differs
 *       from the one `pnm` writes for IMAGE (a decoder that widened 12-bit data to 16 bits, or
 *       narrowed it), samples are rescaled to the latter, rounding to nearest. A 3-channel
 *       DECODED of a grey IMAGE (dwebp writes RGB) is made grey by the rounded mean of its
 *       channels.
 *
 * Trade-off: rescaling and greying add at most half a step of rounding to the reference's
 * error, and clamping only removes error; refusing them would leave out codecs that cannot
 * write the original's exact format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "nn/ae.h"

#define MAX_FILE ((size_t)1 << 30)

/* The bytes of a file, or NULL (message printed). */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b = NULL;
    long n = -1;
    if (!f)
        goto out;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || (size_t)n > MAX_FILE || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
out:
    if (f)
        fclose(f);
    if (!b)
        fprintf(stderr, "bench_quality: %s: cannot read\n", path);
    *len = b ? (size_t)n : 0;
    return b;
}

/* Skip whitespace and comments, then read a decimal field of at most 65535. 0 or -1. */
static int pnm_field(const uint8_t *buf, size_t len, size_t *pos, uint32_t *v)
{
    size_t p = *pos;
    for (;;) {
        while (p < len && (buf[p] == ' ' || (buf[p] >= '\t' && buf[p] <= '\r')))
            p++;
        if (p >= len || buf[p] != '#')
            break;
        while (p < len && buf[p] != '\n')
            p++;
    }
    if (p >= len || buf[p] < '0' || buf[p] > '9')
        return -1;
    *v = 0;
    while (p < len && buf[p] >= '0' && buf[p] <= '9') {
        *v = *v * 10 + (uint32_t)(buf[p++] - '0');
        if (*v > 65535)
            return -1;
    }
    *pos = p;
    return 0;
}

/*
 * A decoder's output: a binary PGM or PPM, read here rather than by codec_split because
 * decoders do not all keep to the format (djxl writes 12-bit samples above maxval 4095 where
 * its reconstruction overshoots); such samples are clamped to maxval, as a viewer would. Planar
 * samples in *out (caller frees pixels), *maxval. Returns 0 or -1 after a message.
 */
static int load_decoded(const char *path, struct nn_ae_image *out, uint32_t *maxval)
{
    size_t len = 0, pos = 2, plane = 0, bytes = 0, need = 0;
    uint8_t *buf = read_file(path, &len);
    uint32_t w = 0, h = 0, mv = 0, ch = 0;
    uint16_t *px = NULL;
    int ret = -1;
    if (!buf)
        return -1;
    if (len < 3 || buf[0] != 'P' || (buf[1] != '5' && buf[1] != '6') ||
        pnm_field(buf, len, &pos, &w) || pnm_field(buf, len, &pos, &h) ||
        pnm_field(buf, len, &pos, &mv) || w == 0 || h == 0 || mv == 0 || pos >= len) {
        fprintf(stderr, "bench_quality: %s: not a binary PGM/PPM\n", path);
        goto out;
    }
    pos++; /* the single whitespace byte after maxval */
    ch = buf[1] == '5' ? 1 : 3;
    bytes = mv > 255 ? 2 : 1;
    plane = (size_t)w * h;
    if (__builtin_mul_overflow(plane, ch * bytes, &need) || len - pos < need) {
        fprintf(stderr, "bench_quality: %s: raster cut short\n", path);
        goto out;
    }
    px = malloc(plane * ch * sizeof(*px));
    if (!px)
        goto out;
    for (size_t p = 0; p < plane; p++)
        for (uint32_t c = 0; c < ch; c++) {
            const uint8_t *q = buf + pos + (p * ch + c) * bytes;
            uint32_t v = bytes == 2 ? (uint32_t)q[0] << 8 | q[1] : q[0];
            px[c * plane + p] = (uint16_t)(v > mv ? mv : v);
        }
    *out = (struct nn_ae_image){ch, h, w, 16, px};
    *maxval = mv;
    ret = 0;
out:
    free(buf);
    return ret;
}

/* One frame of an image file (PNG, PNM, native DICOM) as train --eval reads it: an
 * nn_ae_image whose pixels the caller frees. Returns 0 or -1 after a message. */
static int load(const char *path, struct nn_ae_image *out)
{
    size_t len = 0, env_len = 0;
    uint8_t *buf = read_file(path, &len), *env = NULL;
    struct codec_image *img = NULL;
    char why[128] = "";
    int ret = -1;
    if (!buf)
        return -1;
    if (codec_split(buf, len, &img, &env, &env_len, why, sizeof(why)) != 0) {
        fprintf(stderr, "bench_quality: %s: not an image we read (%s)\n", path, why);
        goto out;
    }
    if (img->frames != 1 || img->channels > NN_AE_MAX_CHANNELS) {
        fprintf(stderr, "bench_quality: %s: %u frames, %u channels: not handled\n", path,
                img->frames, img->channels);
        goto out;
    }
    *out = (struct nn_ae_image){img->channels, img->height, img->width, img->bits, img->planes};
    img->planes = NULL; /* now the caller's */
    ret = 0;
out:
    codec_image_free(img);
    free(env);
    free(buf);
    return ret;
}

static size_t samples(const struct nn_ae_image *im)
{
    return (size_t)im->channels * im->height * im->width;
}

/* pixels: filled by the decoder or the loader (the analyzer does not see it) */
// NOLINTBEGIN(clang-analyzer-core.uninitialized.UndefReturn)
static uint32_t sample(const struct nn_ae_image *im, size_t i)
{
    return im->bits == 8 ? ((const uint8_t *)im->pixels)[i] : ((const uint16_t *)im->pixels)[i];
}
// NOLINTEND(clang-analyzer-core.uninitialized.UndefReturn)

/* The maxval `pnm` writes for im: 255 for 8-bit, else 2^depth - 1 (at least 1). */
static uint32_t ref_maxval(const struct nn_ae_image *im)
{
    if (im->bits == 8)
        return 255;
    uint32_t top = 0, m = 1;
    for (size_t i = 0; i < samples(im); i++)
        if (sample(im, i) > top)
            top = sample(im, i);
    while (m < top)
        m = m * 2 + 1;
    return m;
}

static int cmd_pnm(const char *in, const char *outpath)
{
    struct nn_ae_image im = {0};
    uint32_t m = 0;
    size_t plane = 0;
    FILE *f = NULL;
    int ret = 1;
    if (load(in, &im))
        return 1;
    if (im.channels != 1 && im.channels != 3) {
        fprintf(stderr, "bench_quality: %s: %u channels, PNM takes 1 or 3\n", in, im.channels);
        goto out;
    }
    m = ref_maxval(&im);
    plane = (size_t)im.height * im.width;
    f = fopen(outpath, "wb");
    if (!f ||
        fprintf(f, "P%c\n%u %u\n%u\n", im.channels == 1 ? '5' : '6', im.width, im.height, m) < 0)
        goto out;
    for (size_t p = 0; p < plane; p++)
        for (uint32_t c = 0; c < im.channels; c++) {
            uint32_t v = sample(&im, c * plane + p);
            if ((m > 255 && putc((int)(v >> 8), f) == EOF) || putc((int)(v & 255), f) == EOF)
                goto out;
        }
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    printf("%u %u %u %u %u\n", im.width, im.height, im.channels, im.bits, m);
    ret = 0;
out:
    if (ret)
        fprintf(stderr, "bench_quality: %s: cannot write\n", outpath);
    if (f)
        fclose(f);
    free(im.pixels);
    return ret;
}

/* dec brought to a's channels, bits and maxval; a new image in *out (caller frees pixels). */
static int conform(const struct nn_ae_image *a, const struct nn_ae_image *dec, uint32_t dec_max,
                   struct nn_ae_image *out)
{
    size_t plane = (size_t)a->height * a->width;
    uint32_t m = ref_maxval(a);
    if (dec->height != a->height || dec->width != a->width ||
        !(dec->channels == a->channels || (a->channels == 1 && dec->channels == 3))) {
        fprintf(stderr, "bench_quality: decoded %ux%ux%u, original %ux%ux%u\n", dec->width,
                dec->height, dec->channels, a->width, a->height, a->channels);
        return -1;
    }
    if (dec_max == m)
        dec_max = m = 1; /* already on the original's scale */
    *out = (struct nn_ae_image){a->channels, a->height, a->width, a->bits, NULL};
    if (samples(a) == 0)
        return -1;
    out->pixels = calloc(samples(a), a->bits / 8);
    if (!out->pixels)
        return -1;
    for (uint32_t c = 0; c < a->channels; c++)
        for (size_t p = 0; p < plane; p++) {
            uint64_t v = sample(dec, c * plane + p);
            if (dec->channels != a->channels) /* RGB of a grey original */
                v = (sample(dec, p) + sample(dec, plane + p) + sample(dec, 2 * plane + p) + 1) / 3;
            v = (v * m + dec_max / 2) / dec_max;
            uint64_t top = a->bits == 8 ? 255 : 65535;
            v = v > top ? top : v;
            if (a->bits == 8)
                ((uint8_t *)out->pixels)[c * plane + p] = (uint8_t)v;
            else
                ((uint16_t *)out->pixels)[c * plane + p] = (uint16_t)v;
        }
    return 0;
}

static int cmd_compare(const char *orig, const char *decoded)
{
    struct nn_ae_image a = {0}, d = {0}, b = {0};
    uint32_t dmax = 0;
    double psnr = 0, ssim = 0;
    int ret = 1;
    if (load(orig, &a) || load_decoded(decoded, &d, &dmax) || conform(&a, &d, dmax, &b))
        goto out;
    if (nn_ae_psnr(&a, &b, &psnr) || nn_ae_ssim(&a, &b, &ssim)) {
        fprintf(stderr, "bench_quality: metrics failed\n");
        goto out;
    }
    printf("%.4f %.6f\n", psnr, ssim);
    ret = 0;
out:
    free(b.pixels);
    free(d.pixels);
    free(a.pixels);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "pnm") == 0)
        return cmd_pnm(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "compare") == 0)
        return cmd_compare(argv[2], argv[3]);
    fprintf(stderr, "usage: bench_quality pnm IMAGE OUT.pnm\n"
                    "       bench_quality compare IMAGE DECODED\n");
    return 2;
}
