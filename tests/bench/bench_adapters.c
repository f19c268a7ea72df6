// SPDX-License-Identifier: MIT
/*
 * Benchmark of the image adapters (codec/codec.h), for bench_adapters.sh: for every file given,
 * split and join (checking join(split(f)) == f), timed separately, and for PNG the IDAT section
 * (the recipe: chunk lengths, filter types, deflate description) as % of the file, for plain
 * PNM its layout section. Reference columns from the same run: libpng decoding the same PNG to
 * rows (what any reader pays), and zlib recompressing the same filtered rows at the file's own
 * level hint (what an encoder pays).
 *
 *   bench_adapters GROUP FILE...    one line per file, then the group's summary line
 *
 * Throughput is MB/s of file bytes, the best of enough repetitions to fill 0.3 s (the minimum
 * of a noisy machine's timings is its most repeatable figure). Exit status 1 when a file splits
 * but does not join back exactly, or cannot be read; files no adapter takes are listed and
 * skipped.
 */
#include <png.h>
#include <zlib.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ---- references: libpng decode, zlib recompression of the rows ---------------------------- */

struct mem {
    const uint8_t *p;
    size_t len, at;
};

static void mem_read(png_structp png, png_bytep out, size_t n)
{
    struct mem *m = png_get_io_ptr(png);
    if (n > m->len - m->at)
        png_error(png, "short");
    memcpy(out, m->p + m->at, n);
    m->at += n;
}

/* Decode the whole PNG with libpng (an interlaced one into a whole image, as a reader must);
 * height × (row bytes + 1) in *raw_len. 0 or -1. */
static int libpng_decode(const uint8_t *buf, size_t len, size_t *raw_len)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *rows = NULL;
    int rc = -1;
    if (!info)
        goto out;
    if (setjmp(png_jmpbuf(png)))
        goto out;
    struct mem m = {buf, len, 0};
    png_set_read_fn(png, &m, mem_read);
    png_read_info(png, info);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rb = png_get_rowbytes(png, info), h = png_get_image_height(png, info);
    size_t keep = passes > 1 ? h : 1;
    rows = malloc(rb * keep);
    if (!rows)
        goto out;
    for (int pass = 0; pass < passes; pass++)
        for (size_t y = 0; y < h; y++)
            png_read_row(png, rows + (y % keep) * rb, NULL);
    png_read_end(png, NULL);
    *raw_len = h * (rb + 1);
    rc = 0;
out:
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The filtered rows of a PNG (inflated IDAT) and its zlib level hint; malloc'd or NULL. */
static uint8_t *png_rows(const uint8_t *buf, size_t len, size_t *rows_len, int *level)
{
    size_t at = 8, zl = 0;
    uint8_t *z = malloc(len), *rows = NULL;
    if (!z)
        return NULL;
    while (at + 12 <= len) {
        uint32_t n = be32(buf + at);
        if (n > len - at - 12)
            break;
        if (memcmp(buf + at + 4, "IDAT", 4) == 0) {
            memcpy(z + zl, buf + at + 8, n);
            zl += n;
        }
        at += 12 + n;
    }
    if (zl < 2)
        goto out;
    static const int hint[4] = {1, 5, 6, 9};
    *level = hint[z[1] >> 6];
    uLongf cap = (uLongf)len * 64 + (1u << 20);
    rows = malloc(cap);
    if (rows && uncompress(rows, &cap, z, zl) == Z_OK) {
        *rows_len = cap;
    } else {
        free(rows);
        rows = NULL;
    }
out:
    free(z);
    return rows;
}

/* ---- the benchmark ------------------------------------------------------------------------ */

struct row {
    double recipe_pct; /* < 0 without a recipe (binary PNM, DICOM) */
    double split_mbs, join_mbs, both_mbs, ref_dec_mbs, ref_enc_mbs;
    double split_ms, join_ms, ref_dec_ms, ref_enc_ms;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median of one field over the rows (v: scratch for n values). */
static double med_of(const struct row *rows, size_t n, double *v, size_t field)
{
    for (size_t i = 0; i < n; i++)
        memcpy(&v[i], (const char *)&rows[i] + field, sizeof(double));
    return median(v, n);
}

/* Best time of fn over repetitions filling about 0.3 s. */
#define BEST_OF(best, stmt)                                                                        \
    do {                                                                                           \
        double t_end = now() + 0.3;                                                                \
        (best) = 1e30;                                                                             \
        for (int rep_ = 0; rep_ < 3 || now() < t_end; rep_++) {                                    \
            double t0_ = now();                                                                    \
            stmt;                                                                                  \
            double dt_ = now() - t0_;                                                              \
            if (dt_ < (best))                                                                      \
                (best) = dt_;                                                                      \
            if (rep_ >= 200)                                                                       \
                break;                                                                             \
        }                                                                                          \
    } while (0)

static int bench_file(const char *group, const char *path, struct row *r)
{
    size_t len = 0, env_len = 0, out_len = 0;
    uint8_t *buf = read_file(path, &len), *env = NULL, *out = NULL;
    struct codec_image *img = NULL;
    char why[128] = "";
    int rc = 1;
    if (!buf) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    if (codec_split(buf, len, &img, &env, &env_len, why, sizeof(why)) != 0) {
        printf("%-12s %-48s generic (%s)\n", group, path, why);
        free(buf);
        return 2;
    }
    if (codec_join(img, env, env_len, &out, &out_len) != 0 || out_len != len ||
        memcmp(out, buf, len) != 0) {
        fprintf(stderr, "%s: join(split(f)) differs from f\n", path);
        goto out;
    }
    double ts, tj;
    BEST_OF(ts, {
        struct codec_image *i2 = NULL;
        uint8_t *e2 = NULL;
        size_t el2;
        if (codec_split(buf, len, &i2, &e2, &el2, NULL, 0) != 0)
            abort();
        codec_image_free(i2);
        free(e2);
    });
    BEST_OF(tj, {
        uint8_t *o2 = NULL;
        size_t ol2;
        if (codec_join(img, env, env_len, &o2, &ol2) != 0)
            abort();
        free(o2);
    });
    struct codec_envelope_info info;
    codec_envelope_info(env, env_len, &info);
    double mb = (double)len / 1e6;
    r->split_mbs = mb / ts;
    r->join_mbs = mb / tj;
    r->split_ms = ts * 1e3;
    r->join_ms = tj * 1e3;
    r->both_mbs = mb / (ts + tj);
    /* PNG's IDAT section, plain PNM's layout section */
    r->recipe_pct = info.recipe_bytes ? 100.0 * (double)info.recipe_bytes / (double)len : -1;
    r->ref_dec_mbs = r->ref_enc_mbs = r->ref_dec_ms = r->ref_enc_ms = 0;
    if (img->format == CODEC_FORMAT_PNG) {
        size_t raw_len = 0, rows_len = 0;
        int level = 6;
        double td, te;
        r->recipe_pct = 100.0 * (double)info.recipe_bytes / (double)len;
        uint8_t *rows = png_rows(buf, len, &rows_len, &level);
        if (libpng_decode(buf, len, &raw_len) == 0 && rows) {
            BEST_OF(td, libpng_decode(buf, len, &raw_len));
            uLongf cap = compressBound((uLong)rows_len);
            uint8_t *z = malloc(cap);
            BEST_OF(te, {
                uLongf zl = cap;
                compress2(z, &zl, rows, (uLong)rows_len, level);
            });
            free(z);
            r->ref_dec_mbs = mb / td;
            r->ref_enc_mbs = mb / te;
            r->ref_dec_ms = td * 1e3;
            r->ref_enc_ms = te * 1e3;
        }
        free(rows);
    }
    char pct[32] = "-";
    if (r->recipe_pct >= 0)
        snprintf(pct, sizeof(pct), "%.3f%%", r->recipe_pct);
    printf("%-12s %-48s %4ux%-4u %2u-bit %9zu B  recipe %8s  split %8.2f  join %8.2f  "
           "split+join %8.2f MB/s (%.1f + %.1f ms) | libpng decode %7.1f  zlib encode %7.2f MB/s "
           "(%.1f, %.1f ms)\n",
           group, path, img->width, img->height, img->bits, len, pct, r->split_mbs, r->join_mbs,
           r->both_mbs, r->split_ms, r->join_ms, r->ref_dec_mbs, r->ref_enc_mbs, r->ref_dec_ms,
           r->ref_enc_ms);
    rc = 0;
out:
    free(out);
    free(env);
    codec_image_free(img);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_adapters GROUP FILE...\n");
        return 2;
    }
    const char *group = argv[1];
    size_t n = 0, cap = (size_t)argc;
    struct row *rows = calloc(cap, sizeof(*rows));
    double *v = calloc(cap, sizeof(double));
    int status = 0;
    if (!rows || !v) {
        free(rows);
        free(v);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        int rc = bench_file(group, argv[i], &rows[n]);
        if (rc == 0)
            n++;
        else if (rc == 1)
            status = 1;
    }
    size_t k = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++)
        if (rows[i].recipe_pct >= 0) {
            v[k++] = rows[i].recipe_pct;
            if (rows[i].recipe_pct > worst)
                worst = rows[i].recipe_pct;
        }
    double med_recipe = median(v, k);
    printf("SUMMARY %-12s files %3zu  recipe %% median %6.3f worst %6.3f  split %8.2f  join %8.2f  "
           "split+join %8.2f MB/s | libpng decode %7.1f  zlib encode %7.2f MB/s; per file: split "
           "%.1f ms, join %.1f ms, libpng decode %.1f ms, zlib encode %.1f ms (medians)\n",
           group, n, k ? med_recipe : 0.0, k ? worst : 0.0,
           med_of(rows, n, v, offsetof(struct row, split_mbs)),
           med_of(rows, n, v, offsetof(struct row, join_mbs)),
           med_of(rows, n, v, offsetof(struct row, both_mbs)),
           med_of(rows, n, v, offsetof(struct row, ref_dec_mbs)),
           med_of(rows, n, v, offsetof(struct row, ref_enc_mbs)),
           med_of(rows, n, v, offsetof(struct row, split_ms)),
           med_of(rows, n, v, offsetof(struct row, join_ms)),
           med_of(rows, n, v, offsetof(struct row, ref_dec_ms)),
           med_of(rows, n, v, offsetof(struct row, ref_enc_ms)));
    free(rows);
    free(v);
    return status;
}
