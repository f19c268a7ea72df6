// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the pixel coder's decoder (codec/pixel/pixcode.h) on untrusted streams. The input is
 * a stream; when its header is sound and the image small, the whole image is decoded, then
 * each stripe alone. Both must refuse cleanly (-EINVAL) or succeed, and a stream that decodes
 * must decode the same way stripe by stripe, and encode back to a stream that decodes to the
 * same samples. Anything else aborts.
 */
#include <errno.h>
#include <stdio.h>

#include "codec/pixel/pixcode.h"
#include "tests/fuzz/fuzz_common.h"

#define FUZZ_MAX_PIXEL_BYTES ((size_t)1 << 14)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct codec_pixcode_info info;
    if (codec_pixcode_info(data, size, &info) != 0)
        return 0;
    if (info.planes_bytes > FUZZ_MAX_PIXEL_BYTES)
        return 0;
    struct codec_image img = {CODEC_FORMAT_NONE, info.channels, info.frames,
                              info.height,       info.width,    info.bits,
                              info.significant,  NULL,          info.planes_bytes};
    img.planes = malloc(info.planes_bytes);
    if (!img.planes)
        abort();
    int rc = codec_pixcode_decode(data, size, &img, NULL, 1 + (unsigned)(size & 1));
    if (rc != 0 && rc != -EINVAL)
        abort();
    size_t bps = info.bits / 8, plane = (size_t)info.height * info.width * bps;
    size_t stripe = (size_t)info.stripe_rows * info.width * bps;
    uint8_t *rows = malloc(stripe);
    if (!rows)
        abort();
    uint32_t nplanes = info.channels * info.frames;
    for (uint32_t p = 0; p < nplanes && p < 8; p++)
        for (uint32_t j = 0; j < info.stripes && j < 16; j++) {
            int r = codec_pixcode_decode_stripe(data, size, NULL, p, j, rows, stripe);
            if (r != 0 && r != -EINVAL)
                abort();
            size_t y0 = (size_t)j * info.stripe_rows;
            size_t n =
                (y0 + info.stripe_rows <= info.height ? info.stripe_rows : info.height - y0) *
                info.width * bps;
            /* a stripe of a stream that decodes whole decodes alone to the same rows */
            if (rc == 0 &&
                (r != 0 ||
                 memcmp(rows, (uint8_t *)img.planes + p * plane + y0 * info.width * bps, n) != 0))
                abort();
        }
    if (rc == 0) {
        uint8_t *s = NULL;
        size_t sl = 0;
        struct codec_pixcode_opts o = {.stripe_rows = info.stripe_rows};
        if (codec_pixcode_encode(&img, &o, &s, &sl) != 0)
            abort();
        struct codec_image back = img;
        back.planes = malloc(info.planes_bytes);
        if (!back.planes || codec_pixcode_decode(s, sl, &back, NULL, 1) != 0 ||
            memcmp(back.planes, img.planes, info.planes_bytes) != 0)
            abort();
        free(back.planes);
        free(s);
    }
    free(rows);
    free(img.planes);
    return 0;
}
