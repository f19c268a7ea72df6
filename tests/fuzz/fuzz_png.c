// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the PNG adapter (chunk walker, the recording inflater, unfiltering, libpng as
 * referee, and the re-filtering, re-deflating join). Any input is split; success must join
 * back byte for byte, failure must be a clean -ENOTSUP or -EFBIG (fuzz_image.h). CRCs would
 * stop nearly every mutation at the chunk walker, so each input is tried twice: as it is, and
 * with the CRC of every whole chunk repaired, which lets mutations reach zlib, the filters and
 * libpng. The corpus holds small PNGs of every colour type and bit depth.
 */
#include "tests/fuzz/fuzz_image.h"

static uint32_t fuzz_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static uint32_t fuzz_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_image_check(data, size);
    if (size < 8 || size > (1u << 20))
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    for (size_t p = 8; size - p >= 12;) {
        uint32_t n = fuzz_be32(fixed + p);
        if (n > size - p - 12)
            break;
        uint32_t c = fuzz_crc(fixed + p + 4, 4 + (size_t)n);
        for (int i = 0; i < 4; i++)
            fixed[p + 8 + n + (size_t)i] = (uint8_t)(c >> (24 - 8 * i));
        p += 12 + (size_t)n;
    }
    if (memcmp(fixed, data, size) != 0)
        fuzz_image_check(fixed, size);
    free(fixed);
    return 0;
}
