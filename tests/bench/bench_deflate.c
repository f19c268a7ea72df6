// SPDX-License-Identifier: MIT
/*
 * Benchmark of codec/deflate: record (inflate) and emit throughput in MB/s of decompressed data,
 * and the raw description ("recipe" before the match-finder model) as % of the compressed
 * stream, for the IDAT stream of each PNG named. Built by hand, not by CMake:
 *
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -I. tests/bench/bench_deflate.c codec/zlib/deflate.c \
 *       -o /tmp/bench_deflate && /tmp/bench_deflate FILE.png...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/zlib/deflate.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int bench(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 64 << 20;
    uint8_t *png = malloc(cap), *idat = malloc(cap);
    size_t n = png ? fread(png, 1, cap, f) : 0, m = 0;
    fclose(f);
    uint32_t w = n >= 24 ? be32(png + 16) : 0, h = n >= 24 ? be32(png + 20) : 0;
    for (size_t at = 8; at + 12 <= n;) {
        size_t cl = be32(png + at);
        if (cl > n - at - 12)
            break;
        if (memcmp(png + at + 4, "IDAT", 4) == 0) {
            memcpy(idat + m, png + at + 8, cl);
            m += cl;
        }
        at += 12 + cl;
    }
    uint8_t *out = NULL, *em = NULL;
    size_t ol = 0, el = 0;
    struct codec_deflate_desc *d = NULL;
    int reps = 0, rc;
    double t0 = now(), t_rec, t_emit;
    do {
        free(out);
        codec_deflate_desc_free(d);
        if ((rc = codec_deflate_record_zlib(idat, m, CODEC_DEFLATE_MAX_OUT, &out, &ol, &d)) != 0) {
            fprintf(stderr, "%s: record: %d\n", path, rc);
            free(png);
            free(idat);
            return 1;
        }
        reps++;
    } while (now() - t0 < 1.0);
    t_rec = (now() - t0) / reps;
    int ereps = 0;
    t0 = now();
    do {
        free(em);
        if ((rc = codec_deflate_emit(d, out, ol, &em, &el)) != 0) {
            fprintf(stderr, "%s: emit: %d\n", path, rc);
            free(png);
            free(idat);
            return 1;
        }
        ereps++;
    } while (now() - t0 < 1.0);
    t_emit = (now() - t0) / ereps;
    struct codec_deflate_info info;
    codec_deflate_desc_info(d, &info);
    size_t rs = codec_deflate_desc_size(d);
    printf("%s: %ux%u, file %zu, IDAT %zu -> %zu bytes, %zu blocks (%zu stored %zu fixed "
           "%zu dynamic), %zu literals %zu matches\n"
           "  exact: %s   record %.1f MB/s   emit %.1f MB/s   raw recipe %zu bytes = %.1f%% of "
           "IDAT, %.1f%% of file\n",
           path, w, h, n, m, ol, info.blocks, info.stored, info.fixed, info.dynamic, info.literals,
           info.matches, el == m && memcmp(em, idat, m) == 0 ? "yes" : "NO",
           (double)ol / t_rec / 1e6, (double)ol / t_emit / 1e6, rs, 100.0 * (double)rs / (double)m,
           100.0 * (double)rs / (double)n);
    free(em);
    free(out);
    free(png);
    free(idat);
    codec_deflate_desc_free(d);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= bench(argv[i]);
    return rc;
}
