// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the autoencoder model file (nn_ae_load, nn/ae.h), with its embedded integer
 * decoder. As for fuzz_model.c, each input is also tried with its last four bytes replaced by
 * the correct CRC-32, so that mutations reach the parser proper. A file either fails cleanly
 * (-EINVAL, -EFBIG, -EBADMSG) or loads into a model that saves back to the same bytes and
 * decodes a tiny latent with both decoders. Anything else aborts.
 */
#include <errno.h>
#include <stdio.h>
#include <zlib.h>

#include "nn/ae.h"
#include "tests/fuzz/fuzz_common.h"

static void decode_tiny(const struct nn_ae *ae)
{
    int8_t q[NN_AE_MAX_LATENT] = {0};
    const struct nn_ae_config *cfg = nn_ae_get_config(ae);
    for (uint32_t i = 0; i < cfg->latent; i++)
        q[i] = (int8_t)((int)(i * 37 % 255) - 127);
    struct nn_ae_latent lat = {.channels = 1,
                               .height = 16,
                               .width = 16,
                               .bits = 8,
                               .depth = 8,
                               .lc = cfg->latent,
                               .lh = 1,
                               .lw = 1,
                               .q = q};
    struct nn_ae_image *out = NULL;
    if (nn_ae_decode(ae, &lat, &out) != 0)
        abort();
    nn_ae_image_free(out);
    out = NULL;
    int ret = nn_ae_decode_int(ae, &lat, &out);
    if (ret != 0 && !(ret == -ENOENT && !nn_ae_int_decoder(ae)))
        abort();
    nn_ae_image_free(out);
}

static void one(const uint8_t *data, size_t size)
{
    struct nn_ae *ae = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int ret = nn_ae_load(data, size, &ae);
    if (ret != 0) {
        if (ret != -EINVAL && ret != -EFBIG && ret != -EBADMSG)
            abort();
        return;
    }
    /* A version 1 file comes back as version 2: 8 bytes more (no integer decoder), the
     * config and parameters unchanged. */
    int v1 = data[4] == 1;
    if (nn_ae_save(ae, &buf, &len) != 0 || len != size + (v1 ? 8 : 0) ||
        memcmp(buf + 8, data + 8, size - 12) != 0 || (!v1 && memcmp(buf, data, size) != 0))
        abort();
    free(buf);
    decode_tiny(ae);
    nn_ae_free(ae);
}

/* Seed maker: a small autoencoder with its integer decoder, written to PATH. */
static void write_seed(const char *path)
{
    const struct nn_ae_config cfg = {.latent = 2, .w1 = 2, .w2 = 3, .w3 = 4, .nres = 1};
    struct nn_ae *ae = NULL;
    uint8_t px[32 * 32];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 7 % 251);
    struct nn_ae_image img = {1, 32, 32, 8, px};
    if (nn_ae_new(&cfg, 1, &ae) || nn_ae_quantize(ae, &img, 1) || nn_ae_save_file(ae, path))
        abort();
    nn_ae_free(ae);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        if (getenv("IMGC_FUZZ_WRITE_SEED"))
            write_seed(getenv("IMGC_FUZZ_WRITE_SEED"));
        return 0;
    }
    one(data, size);
    if (size > 4 && size <= ((size_t)4 << 20)) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            abort();
        memcpy(fixed, data, size);
        uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), fixed, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            fixed[size - 4 + (size_t)i] = (uint8_t)(c >> (8 * i));
        one(fixed, size);
        free(fixed);
    }
    return 0;
}
