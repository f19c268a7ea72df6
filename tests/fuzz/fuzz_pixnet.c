// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the coder model parser (codec/pixel/pixnet.h) on untrusted bytes. A model file must
 * be refused cleanly or load; a model that loads must code a small image losslessly (whatever its
 * weights: the format never depends on the model's quality). Anything else aborts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pixel/pixcode.h"
#include "codec/pixel/pixnet.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct codec_pixnet *pn = NULL;
    int rc = codec_pixnet_load(data, size, &pn);
    if (rc != 0) {
        if (rc != -EINVAL && rc != -EBADMSG && rc != -EFBIG && rc != -ENOMEM)
            abort();
        return 0;
    }
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    enum { H = 23, W = 19 };
    uint16_t px[H * W], back[H * W];
    for (unsigned i = 0; i < H * W; i++)
        px[i] = (uint16_t)((i % W) * 37 + (i / W) * 11 + (i * 7919 % 13)) & 0x0fff;
    struct codec_image img = {CODEC_FORMAT_NONE, 1, 1, H, W, 16, 12, px, sizeof(px)};
    struct codec_pixcode_opts o = {.stripe_rows = 9, .pred = p};
    uint8_t *s = NULL;
    size_t sl = 0;
    if (codec_pixcode_encode(&img, &o, &s, &sl) != 0)
        abort();
    struct codec_image out = img;
    out.planes = back;
    if (codec_pixcode_decode(s, sl, &out, p, 1) != 0 || memcmp(back, px, sizeof(px)) != 0)
        abort();
    free(s);
    codec_pixnet_free(pn);
    return 0;
}
