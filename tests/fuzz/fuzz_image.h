/* SPDX-License-Identifier: MIT */
/*
 * Shared by the image adapter fuzz targets (fuzz_pnm, fuzz_dicom, fuzz_png): split any input; a
 * split that succeeds must describe its planes consistently and join back to the input byte for
 * byte, and join must survive a damaged envelope. Anything else aborts. Planes are never bigger
 * than the input, except for PNG, whose pixels are compressed (and 1/2/4-bit samples unpacked),
 * and DICOM RLE (at most 65 times the input).
 */
#ifndef IMGCRYPTFS_FUZZ_IMAGE_H
#define IMGCRYPTFS_FUZZ_IMAGE_H

#include <errno.h>
#include <stdbool.h>

#include "codec/codec.h"
#include "tests/fuzz/fuzz_common.h"

static inline void fuzz_image_check(const uint8_t *data, size_t size)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    size_t env_len = 0, out_len = 0;
    char why[128];
    /* The header-only probe (the conversion budget's input) takes any bytes, and where split
     * succeeds it declares the geometry split finds. */
    struct codec_image geo;
    int probed = codec_probe(data, size, &geo);
    if (probed != 0 && probed != -ENOTSUP && probed != -EFBIG)
        abort();
    int ret = codec_split(data, size, &img, &env, &env_len, why, sizeof(why));
    if (ret == 0 &&
        (probed != 0 || geo.format != img->format || geo.channels != img->channels ||
         geo.frames != img->frames || geo.height != img->height || geo.width != img->width ||
         geo.bits != img->bits || geo.planes_bytes != img->planes_bytes))
        abort();
    if (ret != 0) {
        if ((ret != -ENOTSUP && ret != -EFBIG) || img || env)
            abort();
        return;
    }
    size_t n = (size_t)img->channels * img->frames * img->height * img->width * img->bits / 8;
    /* DICOM with a recipe is RLE: a run holds at most 128 bytes in 2 (split refuses more than 65
     * pixel bytes per file byte) */
    struct codec_envelope_info ei;
    if (codec_envelope_info(env, env_len, &ei) != 0)
        abort();
    bool rle = img->format == CODEC_FORMAT_DICOM && ei.recipe_bytes > 0;
    if ((img->bits != 8 && img->bits != 16) || img->significant < 1 ||
        img->significant > img->bits || n != img->planes_bytes ||
        (img->format != CODEC_FORMAT_PNG && n > (rle ? 65 * (uint64_t)size : size)))
        abort();
    if (codec_join(img, env, env_len, &out, &out_len) != 0 || out_len != size ||
        memcmp(out, data, size) != 0)
        abort();
    free(out);
    /* A damaged envelope: join may succeed with other bytes, but must not crash or leak. */
    size_t at = size ? data[size - 1] * 131u % env_len : 0;
    env[at] ^= 0x5a;
    out = NULL;
    ret = codec_join(img, env, env_len, &out, &out_len);
    if (ret != 0 && ret != -EINVAL && ret != -EFBIG)
        abort();
    free(out);
    ret = codec_join(img, env, at, &out, &out_len); /* cut short */
    if (ret == 0)
        abort();
    free(env);
    codec_image_free(img);
}

#endif
