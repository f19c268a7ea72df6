// SPDX-License-Identifier: MIT
/*
 * Fuzz target: the model file loaders (nn/modelfile.c). The input is a model file; since the
 * CRC-32 would stop almost every mutation at the first check, the target also tries each input
 * with its last four bytes replaced by the correct checksum, which sends mutations into the
 * parser proper. A file either fails cleanly (-EINVAL, -EFBIG, -EBADMSG) or loads into a model
 * that saves back to the same bytes and, if small, runs on a tiny input. Anything else aborts.
 */
#include <errno.h>
#include <stdio.h>
#include <zlib.h>

#include "nn/nn.h"
#include "tests/fuzz/fuzz_common.h"

#define FUZZ_MAX_CTX ((size_t)32 << 20)

static int clean_failure(int ret)
{
    return ret == -EINVAL || ret == -EFBIG || ret == -EBADMSG;
}

/*
 * Whether every activation of a model on a 5 x 6 input stays small (a valid model may need
 * gigabytes: up-sampling by 64 at 4096 channels), so that running it is worth the fuzzer's time.
 */
static int small_enough(const struct nn_layer_desc *(*layer)(const void *, size_t),
                        const void *model, size_t nl, uint32_t in_ch)
{
    uint64_t c = in_ch, h = 5, w = 6;
    for (size_t i = 0; i < nl; i++) {
        const struct nn_layer_desc *d = layer(model, i);
        switch (d->type) {
        case NN_CONV2D:
            if (h + 2 * d->pad < d->kh || w + 2 * d->pad < d->kw)
                return 0;
            c = d->out_ch;
            h = (h + 2 * d->pad - d->kh) / d->stride + 1;
            w = (w + 2 * d->pad - d->kw) / d->stride + 1;
            break;
        case NN_TCONV2D:
            c = d->out_ch;
            h = (h - 1) * d->stride + d->kh;
            w = (w - 1) * d->stride + d->kw;
            break;
        case NN_UPSAMPLE:
            h *= d->factor;
            w *= d->factor;
            break;
        default:
            break;
        }
        /* Residual blocks keep shapes; the walk sees their insides, an upper bound. */
        if (c * h * w > ((uint64_t)1 << 20) || h * w > 4096)
            return 0;
    }
    return 1;
}

static const struct nn_layer_desc *float_layer(const void *m, size_t i)
{
    return nn_model_layer(m, i);
}

static const struct nn_layer_desc *int_layer(const void *q, size_t i)
{
    return nn_qmodel_layer(q, i);
}

static void run_float(struct nn_model *m)
{
    struct nn_ctx *c = NULL;
    uint32_t ch = nn_model_in_channels(m);
    if (ch > 8 || !small_enough(float_layer, m, nn_model_layer_count(m), ch) ||
        nn_ctx_new(m, 1, 5, 6, 0, &c) != 0)
        return;
    if (nn_ctx_bytes(c) <= FUZZ_MAX_CTX) {
        float x[8 * 5 * 6] = {0};
        struct nn_tensor in, out;
        for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
            x[i] = (float)(i % 7) - 3.0f;
        nn_tensor_packed(&in, x, 1, ch, 5, 6);
        if (nn_forward(c, &in, &out) != 0)
            abort();
    }
    nn_ctx_free(c);
}

static void run_int(struct nn_qmodel *q)
{
    struct nn_qctx *c = NULL;
    uint32_t ch = nn_qmodel_in_channels(q);
    if (ch > 8 || !small_enough(int_layer, q, nn_qmodel_layer_count(q), ch) ||
        nn_qctx_new(q, 1, 5, 6, &c) != 0)
        return;
    if (nn_qctx_bytes(c) <= FUZZ_MAX_CTX) {
        int16_t x[8 * 5 * 6];
        for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
            x[i] = (int16_t)((i * 7919) % 65536 - 32768);
        struct nn_qtensor in = {x, 1, ch, 5, 6}, out;
        if (nn_qforward(c, &in, &out) != 0)
            abort();
    }
    nn_qctx_free(c);
}

static void check_resave(const uint8_t *data, size_t size, int ret, uint8_t *buf, size_t len)
{
    if (ret != 0 || !buf || len != size || memcmp(buf, data, size) != 0)
        abort();
    free(buf);
}

static void one(const uint8_t *data, size_t size)
{
    char arch[NN_ARCH_MAX + 1];
    struct nn_model *m = NULL;
    struct nn_qmodel *q = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int ret = nn_model_load(data, size, &m, arch);
    if (ret == 0) {
        ret = nn_model_save(m, arch, &buf, &len);
        check_resave(data, size, ret, buf, len);
        run_float(m);
        nn_model_free(m);
    } else if (!clean_failure(ret)) {
        abort();
    }
    ret = nn_qmodel_load(data, size, &q, arch);
    if (ret == 0) {
        buf = NULL;
        ret = nn_qmodel_save(q, arch, &buf, &len);
        check_resave(data, size, ret, buf, len);
        run_int(q);
        nn_qmodel_free(q);
    } else if (!clean_failure(ret)) {
        abort();
    }
}

/* Seed maker: a small float model and its quantised form, written to PATH.float, PATH.int. */
static void write_seeds(const char *path)
{
    struct nn_model *m = NULL;
    struct nn_qmodel *q = NULL;
    struct nn_layer_desc ds[] = {
        {.type = NN_CONV2D, .out_ch = 4, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 1},
        {.type = NN_LRELU, .slope = 0.1f},
        {.type = NN_RESIDUAL},
        {.type = NN_SE, .hidden = 2},
        {.type = NN_MHSA, .heads = 2},
        {.type = NN_AVGPOOL, .kh = 2, .kw = 2, .stride = 2},
        {.type = NN_UPSAMPLE, .factor = 2},
        {.type = NN_TCONV2D, .out_ch = 1, .kh = 3, .kw = 3, .stride = 1, .pad = 1},
    };
    if (nn_model_new(2, &m))
        abort();
    for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
        if (nn_model_add(m, &ds[i]))
            abort();
        if (i == 4 && nn_model_end(m))
            abort();
    }
    if (nn_model_init(m, 1))
        abort();
    float x[2 * 6 * 6];
    for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
        x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    struct nn_tensor t;
    nn_tensor_packed(&t, x, 1, 2, 6, 6);
    struct nn_quant_opts o = {.percentile = 100};
    if (nn_quantize(m, &t, &o, &q))
        abort();
    char p[4096];
    snprintf(p, sizeof(p), "%s.float", path);
    if (nn_model_save_file(m, "seed-float", p))
        abort();
    snprintf(p, sizeof(p), "%s.int", path);
    if (nn_qmodel_save_file(q, "seed-int", p))
        abort();
    nn_qmodel_free(q);
    nn_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        if (getenv("IMGC_FUZZ_WRITE_SEED"))
            write_seeds(getenv("IMGC_FUZZ_WRITE_SEED"));
        return 0;
    }
    one(data, size);
    if (size > 4 && size <= ((size_t)1 << 20)) {
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
