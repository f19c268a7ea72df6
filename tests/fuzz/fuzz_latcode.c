// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the latent coder's decoder (codec/pixel/latcode.h) on untrusted streams. The first
 * three bytes choose the geometry (planes 1..16, height and width 1..64), the rest is the
 * stream. Decoding must refuse cleanly (-EINVAL) or give values in -127..127 that encode to a
 * stream decoding to the same values. Anything else aborts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pixel/latcode.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t planes = 1 + data[0] % 16, h = 1 + data[1] % 64, w = 1 + data[2] % 64;
    size_t n = (size_t)planes * h * w;
    int8_t *q = malloc(n), *back = malloc(n);
    if (!q || !back)
        abort();
    int rc = codec_latcode_decode(data + 3, size - 3, q, planes, h, w);
    if (rc != 0 && rc != -EINVAL)
        abort();
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            if (q[i] < -CODEC_LATCODE_QMAX)
                abort();
        uint8_t *s = NULL;
        size_t sl = 0;
        if (codec_latcode_encode(q, planes, h, w, &s, &sl) != 0 ||
            codec_latcode_decode(s, sl, back, planes, h, w) != 0 || memcmp(q, back, n) != 0)
            abort();
        free(s);
    }
    free(q);
    free(back);
    return 0;
}
