// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the modelled recipe (codec/zlib/zrecipe.h). The first byte picks what the rest is:
 * 0 a zlib stream, which must either fail to record cleanly or come back bit for bit through
 * record -> make recipe -> parse -> emit; 1 a data length (2 bytes, big-endian, cut to what is
 * there), that many bytes of data, then a recipe (untrusted), which must either be refused
 * cleanly or describe a stream that inflates to exactly the data. Anything else aborts.
 */
#include <errno.h>
#include <stdio.h>

#include "codec/zlib/deflate.h"
#include "codec/zlib/zrecipe.h"
#include "tests/fuzz/fuzz_common.h"

#define FUZZ_MAX_OUT ((size_t)1 << 20)

static void stream_case(const uint8_t *in, size_t n)
{
    uint8_t *out = NULL, *rec = NULL, *again = NULL;
    size_t out_len = 0, rl = 0, al = 0;
    struct codec_deflate_desc *d = NULL, *p = NULL;
    int rc = codec_deflate_record_zlib(in, n, FUZZ_MAX_OUT, &out, &out_len, &d);
    if (rc == -EINVAL || rc == -ENOTSUP || rc == -EFBIG)
        return;
    if (rc != 0)
        abort();
    rc = codec_zrecipe_make(d, out, out_len, 1, &rec, &rl, NULL);
    if (rc == 0) {
        if (codec_zrecipe_parse(rec, rl, out, out_len, FUZZ_MAX_OUT, 1, &p) != 0 ||
            codec_deflate_emit(p, out, out_len, &again, &al) != 0 || al != n ||
            memcmp(again, in, n) != 0)
            abort();
    } else if (rc != -ENOTSUP) {
        abort();
    }
    free(again);
    free(rec);
    free(out);
    codec_deflate_desc_free(d);
    codec_deflate_desc_free(p);
}

static void recipe_case(const uint8_t *in, size_t n)
{
    if (n < 2)
        return;
    size_t dl = (size_t)in[0] << 8 | in[1];
    if (dl > n - 2)
        dl = n - 2;
    const uint8_t *data = in + 2, *rec = in + 2 + dl;
    size_t rl = n - 2 - dl, zl = 0, back_len = 0;
    struct codec_deflate_desc *d = NULL, *b = NULL;
    uint8_t *z = NULL, *back = NULL;
    int rc = codec_zrecipe_parse(rec, rl, data, dl, FUZZ_MAX_OUT, 1, &d);
    if (rc == -EINVAL || rc == -EFBIG)
        return;
    if (rc != 0)
        abort();
    rc = codec_deflate_emit(d, data, dl, &z, &zl);
    if (rc == 0) {
        /* whatever the recipe said, the stream holds the data */
        struct codec_deflate_info info;
        codec_deflate_desc_info(d, &info);
        rc = info.zlib ? codec_deflate_record_zlib(z, zl, FUZZ_MAX_OUT, &back, &back_len, &b)
                       : codec_deflate_record(z, zl, FUZZ_MAX_OUT, &back, &back_len, &b);
        if (rc != 0 || back_len != dl || (dl && memcmp(back, data, dl) != 0))
            abort();
    } else if (rc != -EINVAL) {
        abort();
    }
    free(z);
    free(back);
    codec_deflate_desc_free(d);
    codec_deflate_desc_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] == 0)
        stream_case(data + 1, size - 1);
    else if (data[0] == 1)
        recipe_case(data + 1, size - 1);
    return 0;
}
