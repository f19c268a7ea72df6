// SPDX-License-Identifier: MIT
/*
 * Unit tests of model files (nn/modelfile.c): float and integer round trips through memory and
 * through files give identical models and bit-identical outputs; every truncation, every byte
 * flip (checksum) and oversized inputs are refused; with the checksum recomputed after damage,
 * a file is refused or loads into a model that runs safely; absurd shapes are refused before
 * anything is allocated for them.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "nn/nn_int.h"
#include "tests/unit/unit.h"

static void add(struct nn_model *m, struct nn_layer_desc d)
{
    ck_assert_int_eq(nn_model_add(m, &d), 0);
}

/* A small model with every layer type and a nested residual block. */
static struct nn_model *small_model(void)
{
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(2, &m), 0);
    add(m, (struct nn_layer_desc){
               .type = NN_CONV2D, .out_ch = 4, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 1});
    add(m, (struct nn_layer_desc){.type = NN_LRELU, .slope = 0.2f});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_RESIDUAL});
    add(m, (struct nn_layer_desc){.type = NN_SE, .hidden = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_MHSA, .heads = 2});
    ck_assert_int_eq(nn_model_end(m), 0);
    add(m, (struct nn_layer_desc){.type = NN_MAXPOOL, .kh = 2, .kw = 2, .stride = 2});
    add(m, (struct nn_layer_desc){.type = NN_AVGPOOL, .kh = 1, .kw = 1, .stride = 1});
    add(m, (struct nn_layer_desc){.type = NN_UPSAMPLE, .factor = 2});
    add(m, (struct nn_layer_desc){.type = NN_RELU});
    add(m,
        (struct nn_layer_desc){
            .type = NN_TCONV2D, .out_ch = 1, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 0});
    ck_assert_int_eq(nn_model_init(m, 5), 0);
    return m;
}

#define H 6
#define W 8

static float input[2 * H * W];

static void make_input(void)
{
    struct nn_rng r;
    nn_rng_seed(&r, 3);
    for (size_t i = 0; i < 2 * H * W; i++)
        input[i] = 2 * nn_rng_uniform(&r) - 1;
}

static float *float_out(const struct nn_model *m, size_t *count)
{
    struct nn_ctx *c = NULL;
    struct nn_tensor in, out;
    ck_assert_int_eq(nn_ctx_new(m, 1, H, W, 0, &c), 0);
    nn_tensor_packed(&in, input, 1, 2, H, W);
    ck_assert_int_eq(nn_forward(c, &in, &out), 0);
    *count = nn_tensor_count(&out);
    float *y = malloc(*count * sizeof(float));
    ck_assert_ptr_nonnull(y);
    memcpy(y, out.data, *count * sizeof(float));
    nn_ctx_free(c);
    return y;
}

/* Runs q on the test input; returns the output, or NULL if no context can be planned. */
static int16_t *int_out(const struct nn_qmodel *q, size_t *count)
{
    struct nn_qctx *c = NULL;
    int16_t x[2 * H * W];
    struct nn_tensor t;
    nn_tensor_packed(&t, input, 1, 2, H, W);
    if (nn_qmodel_in_channels(q) != 2 || nn_qctx_new(q, 1, H, W, &c) != 0)
        return NULL;
    ck_assert_int_eq(nn_qmodel_quantize_input(q, &t, x), 0);
    struct nn_qtensor in = {x, 1, 2, H, W}, out;
    ck_assert_int_eq(nn_qforward(c, &in, &out), 0);
    *count = (size_t)out.n * out.c * out.h * out.w;
    int16_t *y = malloc(*count * sizeof(int16_t));
    ck_assert_ptr_nonnull(y);
    memcpy(y, out.data, *count * sizeof(int16_t));
    nn_qctx_free(c);
    return y;
}

static struct nn_qmodel *small_qmodel(const struct nn_model *m)
{
    struct nn_tensor t;
    struct nn_quant_opts o = {.percentile = 100};
    struct nn_qmodel *q = NULL;
    nn_tensor_packed(&t, input, 1, 2, H, W);
    ck_assert_int_eq(nn_quantize(m, &t, &o, &q), 0);
    return q;
}

static void put_crc(uint8_t *buf, size_t len)
{
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        buf[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

START_TEST(test_float_round_trip)
{
    make_input();
    struct nn_model *m = small_model(), *back = NULL;
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len, len2, n1, n2;
    char arch[NN_ARCH_MAX + 1] = "untouched";
    ck_assert_int_eq(nn_model_save(m, "test-float v1", &buf, &len), 0);
    ck_assert_int_eq(nn_model_load(buf, len, &back, arch), 0);
    ck_assert_str_eq(arch, "test-float v1");
    ck_assert_uint_eq(nn_model_layer_count(back), nn_model_layer_count(m));
    for (size_t i = 0; i < nn_model_layer_count(m); i++)
        /* no padding; the float compares bit for bit on purpose */
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c)
        ck_assert(memcmp(nn_model_layer(m, i), nn_model_layer(back, i),
                         sizeof(struct nn_layer_desc)) == 0);
    size_t pa, pb;
    float *a = nn_model_params(m, &pa), *b = nn_model_params(back, &pb);
    ck_assert_uint_eq(pa, pb);
    ck_assert(memcmp(a, b, pa * sizeof(float)) == 0);
    float *y1 = float_out(m, &n1), *y2 = float_out(back, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(y1, y2, n1 * sizeof(float)) == 0);
    /* Canonical: saving again gives the same bytes. */
    ck_assert_int_eq(nn_model_save(back, "test-float v1", &buf2, &len2), 0);
    ck_assert_uint_eq(len, len2);
    ck_assert(memcmp(buf, buf2, len) == 0);
    /* Through a file. */
    char path[] = "/tmp/imgc-nn-file-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    nn_model_free(back);
    back = NULL;
    int saved = nn_model_save_file(m, "f", path), loaded = nn_model_load_file(path, &back, NULL);
    struct nn_qmodel *q = NULL;
    int wrong_kind = nn_qmodel_load_file(path, &q, NULL);
    unlink(path);
    ck_assert_int_eq(saved, 0);
    ck_assert_int_eq(loaded, 0);
    ck_assert_int_eq(wrong_kind, -EINVAL);
    free(y2);
    y2 = float_out(back, &n2);
    ck_assert(memcmp(y1, y2, n1 * sizeof(float)) == 0);
    /* Wrong kind: a float file is not an integer model. */
    ck_assert_int_eq(nn_qmodel_load(buf, len, &q, NULL), -EINVAL);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(nn_model_load_file(path, &back, NULL), -ENOENT);
    /* Bad ids. */
    uint8_t *none = NULL;
    ck_assert_int_eq(nn_model_save(m, "", &none, &len2), -EINVAL);
    ck_assert_int_eq(nn_model_save(m, "tab\there", &none, &len2), -EINVAL);
    char longid[NN_ARCH_MAX + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ck_assert_int_eq(nn_model_save(m, longid, &none, &len2), -EINVAL);
    longid[NN_ARCH_MAX] = '\0';
    ck_assert_int_eq(nn_model_save(m, longid, &none, &len2), 0);
    free(none);
    free(y1);
    free(y2);
    free(buf);
    free(buf2);
    nn_model_free(back);
    nn_model_free(m);
}
END_TEST

START_TEST(test_int_round_trip)
{
    make_input();
    struct nn_model *m = small_model();
    struct nn_qmodel *q = small_qmodel(m), *back = NULL;
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len, len2, n1, n2;
    char arch[NN_ARCH_MAX + 1];
    ck_assert_int_eq(nn_qmodel_save(q, "test-int", &buf, &len), 0);
    ck_assert_int_eq(nn_qmodel_load(buf, len, &back, arch), 0);
    ck_assert_str_eq(arch, "test-int");
    ck_assert(nn_qmodel_in_scale(back) == nn_qmodel_in_scale(q));
    ck_assert(nn_qmodel_out_scale(back) == nn_qmodel_out_scale(q));
    int16_t *y1 = int_out(q, &n1), *y2 = int_out(back, &n2);
    ck_assert_ptr_nonnull(y1);
    ck_assert_ptr_nonnull(y2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(y1, y2, n1 * sizeof(int16_t)) == 0);
    ck_assert_int_eq(nn_qmodel_save(back, "test-int", &buf2, &len2), 0);
    ck_assert_uint_eq(len, len2);
    ck_assert(memcmp(buf, buf2, len) == 0);
    struct nn_model *f = NULL;
    ck_assert_int_eq(nn_model_load(buf, len, &f, NULL), -EINVAL);
    char path[] = "/tmp/imgc-nn-file-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    nn_qmodel_free(back);
    back = NULL;
    int saved = nn_qmodel_save_file(q, "test-int", path);
    int loaded = nn_qmodel_load_file(path, &back, NULL);
    unlink(path);
    ck_assert_int_eq(saved, 0);
    ck_assert_int_eq(loaded, 0);
    free(y2);
    y2 = int_out(back, &n2);
    ck_assert(memcmp(y1, y2, n1 * sizeof(int16_t)) == 0);
    free(y1);
    free(y2);
    free(buf);
    free(buf2);
    nn_qmodel_free(back);
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

/* Every proper prefix of both files is refused, and so is any trailing byte. */
START_TEST(test_truncated)
{
    make_input();
    struct nn_model *m = small_model(), *fm = NULL;
    struct nn_qmodel *q = small_qmodel(m), *qm = NULL;
    uint8_t *fb = NULL, *qb = NULL;
    size_t fl, ql;
    ck_assert_int_eq(nn_model_save(m, "t", &fb, &fl), 0);
    ck_assert_int_eq(nn_qmodel_save(q, "t", &qb, &ql), 0);
    int bad = 0;
    for (size_t len = 0; len < fl; len++) {
        int ret = nn_model_load(fb, len, &fm, NULL);
        bad += ret != -EINVAL && ret != -EBADMSG;
    }
    for (size_t len = 0; len < ql; len++) {
        int ret = nn_qmodel_load(qb, len, &qm, NULL);
        bad += ret != -EINVAL && ret != -EBADMSG;
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_ptr_null(fm);
    ck_assert_ptr_null(qm);
    /* A byte appended, checksum recomputed over it: still refused (nothing may follow). */
    uint8_t *longer = malloc(ql + 1);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, qb, ql - 4);
    longer[ql - 4] = 0;
    put_crc(longer, ql + 1);
    ck_assert_int_eq(nn_qmodel_load(longer, ql + 1, &qm, NULL), -EINVAL);
    ck_assert_int_eq(nn_model_load(NULL, 10, &fm, NULL), -EINVAL);
    ck_assert_int_eq(nn_model_load(fb, NN_FILE_MAX + 1, &fm, NULL), -EFBIG);
    free(longer);
    free(fb);
    free(qb);
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

/*
 * Every bit flip is caught by the CRC. With the CRC recomputed, a damaged file must be refused
 * or load into a model that runs without harm (sanitizer builds check the "without harm").
 */
static void flips(const uint8_t *orig, size_t len, int integer, int *loaded)
{
    uint8_t *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    int not_caught = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += (i < 128 ? 1 : 7)) {
            memcpy(b, orig, len);
            b[i] ^= (uint8_t)(1u << bit);
            struct nn_model *fm = NULL;
            struct nn_qmodel *qm = NULL;
            int ret =
                integer ? nn_qmodel_load(b, len, &qm, NULL) : nn_model_load(b, len, &fm, NULL);
            not_caught += ret != -EBADMSG;
            nn_qmodel_free(qm);
            nn_model_free(fm);
            if (i >= len - 4)
                continue;
            put_crc(b, len);
            ret = integer ? nn_qmodel_load(b, len, &qm, NULL) : nn_model_load(b, len, &fm, NULL);
            if (ret == 0) {
                size_t n;
                (*loaded)++;
                if (integer)
                    free(int_out(qm, &n));
                else if (nn_model_in_channels(fm) == 2) {
                    struct nn_ctx *c = NULL;
                    if (nn_ctx_new(fm, 1, H, W, 0, &c) == 0) {
                        struct nn_tensor in, out;
                        nn_tensor_packed(&in, input, 1, 2, H, W);
                        ck_assert_int_eq(nn_forward(c, &in, &out), 0);
                    }
                    nn_ctx_free(c);
                }
            } else {
                ck_assert_msg(ret == -EINVAL || ret == -EFBIG, "byte %zu bit %d: %d", i, bit, ret);
            }
            nn_qmodel_free(qm);
            nn_model_free(fm);
        }
    }
    ck_assert_int_eq(not_caught, 0);
    free(b);
}

START_TEST(test_corrupted)
{
    make_input();
    struct nn_model *m = small_model();
    struct nn_qmodel *q = small_qmodel(m);
    uint8_t *fb = NULL, *qb = NULL;
    size_t fl, ql;
    int floaded = 0, qloaded = 0;
    ck_assert_int_eq(nn_model_save(m, "c", &fb, &fl), 0);
    ck_assert_int_eq(nn_qmodel_save(q, "c", &qb, &ql), 0);
    flips(fb, fl, 0, &floaded);
    flips(qb, ql, 1, &qloaded);
    /* Flips in weights and scales load; flips in the structure mostly do not. */
    ck_assert_int_gt(floaded, 0);
    ck_assert_int_gt(qloaded, 0);
    free(fb);
    free(qb);
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

/* Hand-made headers with absurd fields, each with a valid checksum. */
static size_t header(uint8_t *b, int kind, uint32_t in_ch, uint32_t nl)
{
    static const uint8_t magic[8] = {0x89, 'I', 'C', 'N', 'N', 0x0d, 0x0a, 0x1a};
    memcpy(b, magic, 8);
    b[8] = 1, b[9] = 0, b[10] = (uint8_t)kind, b[11] = 1, b[12] = 'x';
    for (int i = 0; i < 4; i++) {
        b[13 + i] = (uint8_t)(in_ch >> (8 * i));
        b[17 + i] = (uint8_t)(nl >> (8 * i));
    }
    return 21;
}

static size_t put_layer(uint8_t *b, size_t at, const uint32_t f[12])
{
    for (int j = 0; j < 12; j++)
        for (int i = 0; i < 4; i++)
            b[at++] = (uint8_t)(f[j] >> (8 * i));
    return at;
}

static int load_kind(uint8_t *b, size_t len, int kind)
{
    put_crc(b, len);
    struct nn_model *fm = NULL;
    struct nn_qmodel *qm = NULL;
    int ret = kind == 1 ? nn_model_load(b, len, &fm, NULL) : nn_qmodel_load(b, len, &qm, NULL);
    nn_model_free(fm);
    nn_qmodel_free(qm);
    return ret;
}

START_TEST(test_absurd)
{
    uint8_t *b = calloc(1, 1 << 16);
    ck_assert_ptr_nonnull(b);
    for (int kind = 1; kind <= 2; kind++) {
        size_t at = header(b, kind, 1u << 30, 1);
        ck_assert_int_eq(load_kind(b, at + 4, kind), -EFBIG); /* channels */
        at = header(b, kind, 3, NN_MAX_LAYERS + 1);
        ck_assert_int_eq(load_kind(b, at + 4, kind), -EFBIG); /* layers */
        at = header(b, kind, 3, 1000);
        ck_assert_int_eq(load_kind(b, at + 4, kind), -EINVAL); /* layers missing */
        /* 4096 -> 4096 channels, 64 x 64 kernel: 2^36 weights claimed in a small file. */
        at = header(b, kind, 4096, 1);
        at = put_layer(b, at, (uint32_t[12]){NN_CONV2D, 4096, 64, 64, 1, 0, 1, 0, 0, 0, 0, 0});
        memset(b + at, 0xff, 40);
        ck_assert_int_eq(load_kind(b, at + 40 + 4, kind), -EINVAL);
        at = header(b, kind, 3, 1);
        at = put_layer(b, at, (uint32_t[12]){NN_CONV2D, 1u << 31, 3, 3, 1, 0, 1, 0, 0, 0, 0, 0});
        ck_assert_int_eq(load_kind(b, at + 8 + 4, kind), -EFBIG);
        at = header(b, kind, 3, 1);
        at = put_layer(b, at, (uint32_t[12]){NN_CONV2D, 4, 3, 3, 0, 0, 1, 0, 0, 0, 0, 0});
        ck_assert_int_eq(load_kind(b, at + 8 + 4, kind), -EINVAL); /* stride 0 */
        at = header(b, kind, 3, 1);
        at = put_layer(b, at, (uint32_t[12]){99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
        ck_assert_int_eq(load_kind(b, at + 8 + 4, kind), -EINVAL); /* type */
        at = header(b, kind, 3, 2);
        at = put_layer(b, at, (uint32_t[12]){NN_RESIDUAL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0});
        at = put_layer(b, at, (uint32_t[12]){NN_RELU, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
        ck_assert_int_eq(load_kind(b, at + 8 + 4, kind), -EINVAL); /* span beyond the end */
        at = header(b, kind, 3, 1);
        at = put_layer(b, at, (uint32_t[12]){NN_LRELU, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7fc00000});
        ck_assert_int_eq(load_kind(b, at + 8 + 4, kind), -EINVAL); /* NaN slope */
    }
    /* A float file with a parameter count that disagrees with its layers. */
    size_t at = header(b, 1, 1, 1);
    at = put_layer(b, at, (uint32_t[12]){NN_CONV2D, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0});
    memset(b + at, 0, 12);
    b[at] = 2;
    ck_assert_int_eq(load_kind(b, at + 8 + 8 + 4, 1), -EINVAL);
    b[at] = 1;
    ck_assert_int_eq(load_kind(b, at + 8 + 4 + 4, 1), 0);
    memcpy(b + at + 8, (uint32_t[]){0x7f800000}, 4); /* infinite weight */
    ck_assert_int_eq(load_kind(b, at + 8 + 4 + 4, 1), -EINVAL);
    free(b);
}
END_TEST

/* Integer models whose numbers break the proofs are refused even with a valid checksum. */
START_TEST(test_int_limits)
{
    make_input();
    struct nn_model *m = NULL;
    ck_assert_int_eq(nn_model_new(2, &m), 0);
    add(m, (struct nn_layer_desc){
               .type = NN_CONV2D, .out_ch = 3, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .bias = 1});
    ck_assert_int_eq(nn_model_init(m, 1), 0);
    struct nn_qmodel *q = small_qmodel(m);
    uint8_t *b = NULL;
    size_t len;
    ck_assert_int_eq(nn_qmodel_save(q, "x", &b, &len), 0);
    /* Layout after the 21 + 48 byte header: in_scale, out_scale, 4 counts, 3 ws, 3 b, 6 k,
     * 54 weights, crc. */
    size_t ws = 21 + 48 + 4 + 4 + 16, bias = ws + 12, k = bias + 12, w = k + 24;
    ck_assert_uint_eq(w + 54 + 4, len);
    uint8_t *c = malloc(len);
    ck_assert_ptr_nonnull(c);
    struct {
        size_t at;
        uint32_t v;
    } cases[] = {
        {bias, 0x7fffffff},    /* bias breaks the int32 bound */
        {k + 12, 0},           /* shift 0 */
        {k + 12, 63},          /* shift 63 */
        {k, 0x80000000u},      /* negative multiplier */
        {ws, 0},               /* zero weight scale */
        {ws, 0x7f800000},      /* infinite weight scale */
        {21 + 48, 0xffc00000}, /* NaN input scale */
        {21 + 48 + 4, 0},      /* zero output scale */
        {21 + 48 + 8, 4},      /* count of weight scales */
        {w, 0x80808080u},      /* weights of -128 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(c, b, len);
        for (int j = 0; j < 4; j++)
            c[cases[i].at + (size_t)j] = (uint8_t)(cases[i].v >> (8 * j));
        ck_assert_msg(load_kind(c, len, 2) == -EINVAL, "case %zu", i);
    }
    memcpy(c, b, len);
    ck_assert_int_eq(load_kind(c, len, 2), 0);
    free(c);
    free(b);
    nn_qmodel_free(q);
    nn_model_free(m);
}
END_TEST

static Suite *nn_file_suite(void)
{
    Suite *s = suite_create("nn_file");
    TCase *tc = tcase_create("round_trip");
    tcase_add_test(tc, test_float_round_trip);
    tcase_add_test(tc, test_int_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_corrupted);
    tcase_add_test(tc, test_absurd);
    tcase_add_test(tc, test_int_limits);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(nn_file_suite)
