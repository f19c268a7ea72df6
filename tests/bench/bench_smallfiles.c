// SPDX-License-Identifier: MIT
/*
 * Small-file helper for bench_generic.sh (built at benchmark time, not by CMake).
 *
 *   bench_smallfiles create DIR N SIZE   create DIR/f00000 .. f(N-1), SIZE bytes each, then sync()
 *   bench_smallfiles read   DIR N SIZE   list DIR, read every file back and check its bytes
 *
 * Prints "SECONDS ERRORS" on stdout: the wall time of the whole phase (monotonic clock) and the
 * number of files that failed (open/write/read error, wrong size or wrong content, missing).
 * Doing this in one process keeps fork/exec cost out of a files-per-second figure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Content of file i: differs per file and per byte, never all zero. */
static void pattern(unsigned char *buf, size_t size, unsigned long i)
{
    uint32_t x = (uint32_t)(i * 2654435761u) ^ 0x9e3779b9u;
    for (size_t j = 0; j < size; j++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[j] = (unsigned char)x;
    }
}

static int do_create(const char *dir, unsigned long n, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    char path[4096];
    unsigned long errors = 0;
    if (!buf)
        return 1;
    double t0 = now();
    for (unsigned long i = 0; i < n; i++) {
        pattern(buf, size, i);
        snprintf(path, sizeof(path), "%s/f%05lu", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            errors++;
            continue;
        }
        size_t done = 0;
        while (done < size) {
            ssize_t w = write(fd, buf + done, size - done);
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        if (close(fd) != 0 || done != size)
            errors++;
    }
    sync();
    double t1 = now();
    printf("%.6f %lu\n", t1 - t0, errors);
    free(buf);
    return 0;
}

static int do_read(const char *dir, unsigned long n, size_t size)
{
    unsigned char *want = malloc(size ? size : 1), *got = malloc(size + 4096);
    char *seen = calloc(n ? n : 1, 1);
    unsigned long errors = 0, found = 0;
    if (!want || !got || !seen) {
        free(want);
        free(got);
        free(seen);
        return 1;
    }
    double t0 = now();
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "bench_smallfiles: %s: %s\n", dir, strerror(errno));
        free(want);
        free(got);
        free(seen);
        return 1;
    }
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        if (e->d_name[0] != 'f')
            continue;
        unsigned long i = strtoul(e->d_name + 1, &end, 10);
        if (*end || i >= n || seen[i]) {
            errors++;
            continue;
        }
        seen[i] = 1;
        found++;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            errors++;
            continue;
        }
        size_t have = 0;
        ssize_t r;
        while ((r = read(fd, got + have, size + 4096 - have)) > 0)
            have += (size_t)r;
        close(fd);
        pattern(want, size, i);
        if (r < 0 || have != size || memcmp(want, got, size) != 0)
            errors++;
    }
    closedir(d);
    double t1 = now();
    errors += n - found;
    printf("%.6f %lu\n", t1 - t0, errors);
    free(want);
    free(got);
    free(seen);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_smallfiles create|read DIR N SIZE\n");
        return 2;
    }
    unsigned long n = strtoul(argv[3], NULL, 10);
    size_t size = strtoul(argv[4], NULL, 10);
    if (strcmp(argv[1], "create") == 0)
        return do_create(argv[2], n, size);
    if (strcmp(argv[1], "read") == 0)
        return do_read(argv[2], n, size);
    fprintf(stderr, "bench_smallfiles: unknown phase %s\n", argv[1]);
    return 2;
}
