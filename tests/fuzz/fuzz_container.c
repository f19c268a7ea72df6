// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the container parser (codec/store/container.h). Any input must decode to bytes whose
 * length the header states, or be refused with -EINVAL, -EBADMSG or -ENOENT; a preview must
 * give a PNG or refuse with those or -ENODATA; never a crash. Since almost every mutation
 * breaks a CRC, inputs whose ninth byte is even (as in every container: IHDR's length starts
 * with 0) get their chunk CRCs recomputed first, so the mutations reach the header checks, the
 * geometry and the inflater; the others test the CRC checks.
 * The seeds are containers made under the fixed key below (IMGC_FUZZ_WRITE_SEED=DIR writes
 * them again).
 */
#include <errno.h>
#include <stdio.h>
#include <zlib.h>

#include "codec/pipeline.h"
#include "keys/keys.h"
#include "tests/fuzz/fuzz_common.h"

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

static const struct codec_pipeline *fuzz_ct(void)
{
    static struct keys_key *key;
    static struct codec_pipeline *ct;
    uint8_t raw[32];
    memset(raw, 0x37, sizeof(raw)); /* the container key the seeds were made with */
    if (!key && keys_key_from_bytes(raw, KEYS_KEY_GCM, &key) != 0)
        abort();
    if (!ct && codec_pipeline_new_key(key, &ct) != 0)
        abort();
    return ct;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Recompute the CRC of every whole chunk. */
static void fix_crcs(uint8_t *b, size_t n)
{
    for (size_t pos = 8; pos + 12 <= n;) {
        uint32_t l = be32(b + pos);
        if (l > n - pos - 12)
            break;
        uint32_t crc = (uint32_t)crc32(0L, b + pos + 4, (uInt)l + 4);
        b[pos + 8 + l] = (uint8_t)(crc >> 24);
        b[pos + 9 + l] = (uint8_t)(crc >> 16);
        b[pos + 10 + l] = (uint8_t)(crc >> 8);
        b[pos + 11 + l] = (uint8_t)crc;
        pos += 12 + (size_t)l;
    }
}

static void write_seeds(const char *dir)
{
    char path[4096];
    static const uint32_t dims[][2] = {{16, 16}, {1, 1}, {40, 24}};
    for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
        char head[64];
        uint32_t w = dims[i][0], h = dims[i][1];
        int hn = snprintf(head, sizeof(head), "P5\n%u %u\n255\n", w, h);
        size_t n = (size_t)hn + (size_t)w * h, cl = 0;
        uint8_t *f = malloc(n), *c = NULL;
        if (!f)
            abort();
        memcpy(f, head, (size_t)hn);
        for (size_t j = (size_t)hn; j < n; j++)
            f[j] = (uint8_t)(j * 7 + j / w);
        if (codec_pipeline_encode(fuzz_ct(), f, n, NULL, &c, &cl) != 0)
            abort();
        snprintf(path, sizeof(path), "%s/pnm-%ux%u", dir, w, h);
        FILE *o = fopen(path, "wb");
        if (!o || fwrite(c, 1, cl, o) != cl)
            abort();
        fclose(o);
        free(c);
        free(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size + 1), *out = NULL;
    size_t out_len = 0;
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    if (size > 8 && (data[8] & 1) == 0)
        fix_crcs(copy, size);
    uint64_t plain = 0;
    int ri = codec_pipeline_plain_size(fuzz_ct(), copy, size, &plain);
    struct codec_ct_info head;
    int rh = codec_pipeline_head_info(fuzz_ct(), copy, size < CODEC_CT_HEAD ? size : CODEC_CT_HEAD,
                                      &head);
    int rc = codec_pipeline_decode(fuzz_ct(), copy, size, 1 + (unsigned)(size & 1), &out, &out_len);
    if (rc == 0) {
        if (ri != 0 || out_len != plain || rh != 0 || head.plain_size != plain)
            abort();
        free(out);
    } else if (rc != -EINVAL && rc != -EBADMSG && rc != -ENOENT) {
        abort();
    }
    out = NULL;
    rc = codec_pipeline_preview(fuzz_ct(), copy, size, &out, &out_len);
    if (rc == 0)
        free(out);
    else if (rc != -EINVAL && rc != -EBADMSG && rc != -ENOENT && rc != -ENODATA)
        abort();
    free(copy);
    if (getenv("IMGC_FUZZ_WRITE_SEED") && size == 0)
        write_seeds(getenv("IMGC_FUZZ_WRITE_SEED"));
    return 0;
}
