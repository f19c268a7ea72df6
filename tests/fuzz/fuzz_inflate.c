// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the recording inflater and the description parser (codec/zlib/deflate.h). The first
 * byte picks what the rest is: 0 a raw deflate stream, 1 a zlib stream, 2 a serialised
 * description. A stream either fails cleanly or comes back bit for bit through record ->
 * serialise -> parse -> emit; a description either fails to parse or is canonical (serialises
 * to the same bytes) and, emitted over all-zero data (which every match agrees with), gives a
 * stream that records back to the same description. Anything else aborts.
 */
#include <errno.h>
#include <stdio.h>

#include "codec/zlib/deflate.h"
#include "tests/fuzz/fuzz_common.h"

#define FUZZ_MAX_OUT ((size_t)1 << 20)

static uint8_t *serialise(const struct codec_deflate_desc *d, size_t *len)
{
    size_t n = codec_deflate_desc_size(d);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || codec_deflate_desc_serialise(d, buf, n) != (ssize_t)n)
        abort();
    *len = n;
    return buf;
}

static int record(int zlib, const uint8_t *in, size_t n, size_t max_out, uint8_t **out,
                  size_t *out_len, struct codec_deflate_desc **d)
{
    return zlib ? codec_deflate_record_zlib(in, n, max_out, out, out_len, d)
                : codec_deflate_record(in, n, max_out, out, out_len, d);
}

static void stream_case(int zlib, const uint8_t *in, size_t n)
{
    uint8_t *out = NULL, *ser, *ser2, *again = NULL;
    size_t out_len = 0, sl, sl2, al = 0;
    struct codec_deflate_desc *d = NULL, *p = NULL;
    int rc = record(zlib, in, n, FUZZ_MAX_OUT, &out, &out_len, &d);
    if (rc == -EINVAL || rc == -ENOTSUP || rc == -EFBIG)
        return;
    if (rc != 0)
        abort();
    ser = serialise(d, &sl);
    if (codec_deflate_desc_parse(ser, sl, FUZZ_MAX_OUT, &p) != 0)
        abort();
    ser2 = serialise(p, &sl2);
    if (sl2 != sl || memcmp(ser, ser2, sl) != 0)
        abort();
    if (codec_deflate_emit(p, out, out_len, &again, &al) != 0 || al != n ||
        (n && memcmp(again, in, n) != 0))
        abort();
    free(again);
    free(ser);
    free(ser2);
    free(out);
    codec_deflate_desc_free(d);
    codec_deflate_desc_free(p);
}

static void desc_case(const uint8_t *in, size_t n)
{
    struct codec_deflate_desc *p = NULL, *q = NULL;
    struct codec_deflate_info info;
    uint8_t *ser, *zero, *em = NULL, *out = NULL, *ser2;
    size_t sl, el = 0, ol = 0, sl2;
    int rc = codec_deflate_desc_parse(in, n, FUZZ_MAX_OUT, &p);
    if (rc == -EINVAL || rc == -EFBIG)
        return;
    if (rc != 0)
        abort();
    ser = serialise(p, &sl);
    if (sl != n || memcmp(ser, in, n) != 0)
        abort();
    codec_deflate_desc_info(p, &info);
    zero = calloc(1, info.out_len ? info.out_len : 1);
    if (!zero)
        abort();
    rc = codec_deflate_emit(p, zero, info.out_len, &em, &el);
    if (rc == 0) {
        if (record(info.zlib, em, el, FUZZ_MAX_OUT, &out, &ol, &q) != 0 || ol != info.out_len ||
            (ol && memcmp(out, zero, ol) != 0))
            abort();
        ser2 = serialise(q, &sl2);
        if (sl2 != n || memcmp(ser2, in, n) != 0)
            abort();
        free(ser2);
    } else if (rc != -EINVAL) {
        abort();
    }
    free(out);
    free(em);
    free(zero);
    free(ser);
    codec_deflate_desc_free(q);
    codec_deflate_desc_free(p);
}

/* Seed maker: the description of a small zlib stream, as a mode-2 input. */
static void write_seed(const char *path)
{
    /* zlib.compress(b"hello hello hello hello", 9) */
    static const uint8_t z[] = {0x78, 0xda, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57,
                                0xc8, 0x40, 0x27, 0x01, 0x68, 0x03, 0x08, 0xb1};
    struct codec_deflate_desc *d = NULL;
    uint8_t *out = NULL, *ser;
    size_t ol, sl;
    if (codec_deflate_record_zlib(z, sizeof(z), 1024, &out, &ol, &d) != 0)
        abort();
    ser = serialise(d, &sl);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(2, f) == EOF || fwrite(ser, 1, sl, f) != sl || fclose(f) != 0)
        abort();
    free(ser);
    free(out);
    codec_deflate_desc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        if (getenv("IMGC_FUZZ_WRITE_SEED"))
            write_seed(getenv("IMGC_FUZZ_WRITE_SEED"));
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
    case 1:
        stream_case(data[0] % 3, data + 1, size - 1);
        break;
    default:
        desc_case(data + 1, size - 1);
        break;
    }
    return 0;
}
