// SPDX-License-Identifier: MIT
/*
 * Unit tests of codec/latcode: exact round trips (sizes 1x1, 1xN, primes; every value
 * -127..127; constant planes; far values that escape), a size close to the data's own entropy,
 * real latents of the shipped autoencoder coded smaller than zlib and close to the prior's
 * ideal rate, and refusal of bad input: every truncation, trailing bytes, bad header fields,
 * and every bit flip of a small stream refused or decoded to in-range values without harm.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tests/unit/unit.h"
#include "codec/codec.h"
#include "codec/pixel/latcode.h"
#include "nn/ae.h"

static uint32_t lat_seed = 99;
static uint32_t lrnd(void)
{
    lat_seed = lat_seed * 1664525u + 1013904223u;
    return lat_seed >> 8;
}

/* A Laplace-like value around c with scale s (inverse CDF of a uniform), clamped. */
static int8_t laplace(int c, double s)
{
    double u = ((lrnd() & 0xffff) + 0.5) / 65536.0 - 0.5;
    double d = -s * copysign(log(1 - 2 * fabs(u)), u);
    long v = c + lround(d);
    return (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
}

static void roundtrip(const int8_t *q, uint32_t planes, uint32_t h, uint32_t w, size_t *len)
{
    uint8_t *s = NULL;
    size_t sl = 0;
    size_t n = (size_t)planes * h * w;
    ck_assert_int_eq(codec_latcode_encode(q, planes, h, w, &s, &sl), 0);
    int8_t *back = malloc(n);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(codec_latcode_decode(s, sl, back, planes, h, w), 0);
    ck_assert_mem_eq(back, q, n);
    if (len)
        *len = sl;
    free(back);
    free(s);
}

START_TEST(test_roundtrip)
{
    static const uint32_t dims[][3] = {{1, 1, 1},  {1, 1, 7},    {3, 7, 1},   {12, 1, 1},
                                       {12, 2, 3}, {12, 13, 17}, {5, 31, 37}, {1, 64, 64}};
    for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
        uint32_t p = dims[d][0], h = dims[d][1], w = dims[d][2];
        size_t n = (size_t)p * h * w, area = (size_t)h * w;
        int8_t *q = malloc(n);
        ck_assert_ptr_nonnull(q);
        for (int kind = 0; kind < 4; kind++) {
            for (size_t i = 0; i < n; i++) {
                int c = (int)(i / area % 5) * 20 - 40;
                switch (kind) {
                case 0:
                    q[i] = laplace(
                        c, 0.3 + (double)(i / area)); // NOLINT(bugprone-integer-division): plane
                    break;
                case 1:
                    q[i] = (int8_t)((int)(lrnd() % 255) - 127);
                    break; /* all escapes */
                case 2:
                    q[i] = (int8_t)c;
                    break; /* constant */
                default:
                    q[i] = (int8_t)(lrnd() % 9 ? laplace(c, 2) : (lrnd() & 1 ? 127 : -127));
                }
            }
            roundtrip(q, p, h, w, NULL);
        }
        free(q);
    }
    /* every value, in one plane */
    int8_t all[255];
    for (int v = -127; v <= 127; v++)
        all[v + 127] = (int8_t)v;
    roundtrip(all, 1, 15, 17, NULL);
    roundtrip(all, 5, 3, 17, NULL);
}
END_TEST

/* Laplace data of known scales: the stream stays within 4% (plus the plane headers) of the
 * values' empirical entropy per plane, the floor of any per-plane static code. */
START_TEST(test_compact)
{
    const uint32_t planes = 12, h = 32, w = 32;
    size_t area = (size_t)h * w, n = planes * area;
    int8_t *q = malloc(n);
    ck_assert_ptr_nonnull(q);
    double entropy = 0;
    for (uint32_t p = 0; p < planes; p++) {
        uint32_t hist[256] = {0};
        for (size_t i = 0; i < area; i++) {
            q[p * area + i] = laplace((int)p - 6, 0.2 + 0.6 * p);
            hist[(uint8_t)q[p * area + i]]++;
        }
        for (int v = 0; v < 256; v++)
            if (hist[v])
                entropy -= (double)hist[v] * log2((double)hist[v] / (double)area);
    }
    size_t len = 0;
    roundtrip(q, planes, h, w, &len);
    double bits = 8.0 * (double)len, head = 8.0 * (1 + 4 * planes + 3);
    printf("latcode: laplace 12 x 32 x 32: %zu bytes, entropy %.0f bytes\n", len, entropy / 8);
    ck_assert_double_le(bits, entropy * 1.04 + head);
    free(q);
}
END_TEST

static uint8_t *read_data(const char *name, size_t *len)
{
    const char *dir = getenv("IMGC_TESTDATA");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", name);
    return unit_read_file(path, len);
}

/* Latents of the shipped autoencoder from real images: coded smaller than zlib -9 of the values
 * and within 12% (plus the headers) of the prior's ideal code length. */
START_TEST(test_real_latents)
{
    static const char *files[] = {"mri-t1-coronal-512.png", "mri-t1-sagittal-256.png",
                                  "mri-t1-axial-12in16bit.png", "CT_small.dcm"};
    struct nn_ae *ae = NULL;
    ck_assert_int_eq(nn_ae_load_default(&ae), 0);
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len = 0;
        uint8_t *file = read_data(files[f], &len);
        struct codec_image *img = NULL;
        uint8_t *env = NULL;
        size_t env_len = 0;
        ck_assert_int_eq(codec_split(file, len, &img, &env, &env_len, NULL, 0), 0);
        ck_assert_uint_eq(img->frames, 1);
        struct nn_ae_image in = {img->channels, img->height, img->width, img->bits, img->planes};
        struct nn_ae_latent *lat = NULL;
        ck_assert_int_eq(nn_ae_encode(ae, &in, &lat), 0);
        uint32_t planes = lat->channels * lat->lc;
        size_t n = (size_t)planes * lat->lh * lat->lw, sl = 0;
        double ideal = 0;
        ck_assert_int_eq(nn_ae_rate(ae, lat, &ideal), 0);
        uint8_t *s = NULL;
        ck_assert_int_eq(codec_latcode_encode(lat->q, planes, lat->lh, lat->lw, &s, &sl), 0);
        int8_t *back = malloc(n);
        ck_assert_int_eq(codec_latcode_decode(s, sl, back, planes, lat->lh, lat->lw), 0);
        ck_assert_mem_eq(back, lat->q, n);
        uLongf zl = compressBound((uLong)n);
        uint8_t *z = malloc(zl);
        ck_assert_int_eq(compress2(z, &zl, (const uint8_t *)lat->q, (uLong)n, 9), Z_OK);
        double px = (double)img->height * img->width;
        printf("latcode: %-28s %zu values: %zu bytes (%.4f bpp), zlib %lu, prior ideal %.0f\n",
               files[f], n, sl, 8.0 * (double)sl / (double)px, (unsigned long)zl, ideal / 8);
        ck_assert_uint_lt(sl, zl);
        ck_assert_double_le(8.0 * sl, ideal * 1.12 + 8.0 * (1 + 4 * planes));
        free(z);
        free(back);
        free(s);
        nn_ae_latent_free(lat);
        codec_image_free(img);
        free(env);
        free(file);
    }
    nn_ae_free(ae);
}
END_TEST

START_TEST(test_refuse)
{
    const uint32_t planes = 3, h = 5, w = 7;
    size_t n = (size_t)planes * h * w;
    int8_t q[3 * 5 * 7], back[3 * 5 * 7];
    for (size_t i = 0; i < n; i++)
        q[i] = (int8_t)(i % 11 == 0 ? 120 : laplace(0, 1.5));
    uint8_t *s = NULL;
    size_t sl = 0;
    ck_assert_int_eq(codec_latcode_encode(q, planes, h, w, &s, &sl), 0);
    ck_assert_int_eq(codec_latcode_decode(s, sl, back, planes, h, w), 0);
    for (size_t cut = 0; cut < sl; cut++)
        ck_assert_int_eq(codec_latcode_decode(s, cut, back, planes, h, w), -EINVAL);
    uint8_t *longer = malloc(sl + 1);
    memcpy(longer, s, sl);
    longer[sl] = 0;
    ck_assert_int_eq(codec_latcode_decode(longer, sl + 1, back, planes, h, w), -EINVAL);
    free(longer);
    /* header fields: K 0 and 5, a shape of 64, a centre of -128 */
    uint8_t *bad = malloc(sl);
    static const size_t at[] = {0, 0, 2, 1};
    static const uint8_t val[] = {0, 5, 64, 0x80};
    for (int i = 0; i < 4; i++) {
        memcpy(bad, s, sl);
        bad[at[i]] = val[i];
        ck_assert_int_eq(codec_latcode_decode(bad, sl, back, planes, h, w), -EINVAL);
    }
    /* every single bit flipped: refused, or values in range (a different stream) */
    size_t refused = 0, other = 0;
    for (size_t i = 0; i < sl * 8; i++) {
        memcpy(bad, s, sl);
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rc = codec_latcode_decode(bad, sl, back, planes, h, w);
        ck_assert(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            other++;
            for (size_t j = 0; j < n; j++)
                ck_assert_int_ge(back[j], -127);
        } else {
            refused++;
        }
    }
    printf("latcode: %zu-byte stream, %zu flips refused, %zu other valid streams\n", sl, refused,
           other);
    ck_assert_uint_gt(refused, sl * 8 / 2);
    free(bad);
    free(s);
    /* encoder: -128 and empty geometry refused */
    q[4] = -128;
    ck_assert_int_eq(codec_latcode_encode(q, planes, h, w, &s, &sl), -EINVAL);
    ck_assert_int_eq(codec_latcode_encode(q, 0, h, w, &s, &sl), -EINVAL);
    ck_assert_int_eq(codec_latcode_encode(q, planes, 0, w, &s, &sl), -EINVAL);
}
END_TEST

static Suite *codec_latcode_suite(void)
{
    Suite *s = suite_create("codec_latcode");
    TCase *t = tcase_create("latcode");
    tcase_add_test(t, test_roundtrip);
    tcase_add_test(t, test_compact);
    tcase_add_test(t, test_real_latents);
    tcase_add_test(t, test_refuse);
    suite_add_tcase(s, t);
    return s;
}

UNIT_SUITE(codec_latcode_suite)
