/* SPDX-License-Identifier: MIT */
/*
 * The test data's images, for the codec's unit tests: every regular file of IMGC_TESTDATA
 * whose name ends in `suffix` ("" for any) and which an adapter splits (codec_split) is handed
 * to fn with its image, freed after fn returns. Returns how many were handed.
 */
#ifndef IMGCRYPTFS_TESTS_UNIT_CODEC_IMAGES_H
#define IMGCRYPTFS_TESTS_UNIT_CODEC_IMAGES_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "tests/unit/unit.h"

typedef void (*unit_image_fn)(const char *name, struct codec_image *img, void *arg);

static inline int unit_each_image(const char *suffix, unit_image_fn fn, void *arg)
{
    const char *dir = getenv("IMGC_TESTDATA");
    ck_assert_msg(dir != NULL, "IMGC_TESTDATA not set");
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (e->d_name[0] == '.' || e->d_type != DT_REG || nl < sl ||
            strcmp(e->d_name + nl - sl, suffix) != 0)
            continue;
        char path[4096];
        (void)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len = 0, el = 0;
        unsigned char *buf = unit_read_file(path, &len);
        struct codec_image *img = NULL;
        uint8_t *env = NULL;
        if (codec_split(buf, len, &img, &env, &el, NULL, 0) == 0) {
            fn(e->d_name, img, arg);
            codec_image_free(img);
            free(env);
            n++;
        }
        free(buf);
    }
    closedir(d);
    return n;
}

#endif
