// SPDX-License-Identifier: MIT
/*
 * Unit tests of codec/container: exact round trips of the test images and of generated ones
 * (PNM, PNG and DICOM; 8 and 16 bit; grey and RGB; several frames; 1x1, 1xN, prime sizes), each
 * under a fresh key; the container read back by libpng as an ordinary PNG; previews; and
 * refusal of every changed byte of a small container, of sampled bytes of a large one, of
 * sections swapped between containers, of a wrong key and of a foreign keyring.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "codec/pipeline.h"
#include "codec/bytes.h"
#include "codec/pixel/pixnet.h"
#include "keys/keys.h"

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

struct ctx {
    struct keys_key *key;
    struct codec_pipeline *ct;
};

static void ctx_new(struct ctx *c)
{
    uint8_t raw[32];
    ck_assert_int_eq(keys_random(raw, sizeof(raw)), 0);
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_GCM, &c->key), 0);
    ck_assert_int_eq(codec_pipeline_new_key(c->key, &c->ct), 0);
}

static void ctx_free(struct ctx *c)
{
    codec_pipeline_free(c->ct);
    keys_key_free(c->key);
}

static uint32_t seed = 12345;
static uint32_t rnd(void)
{
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}

/* ---- generated images ---- */

static uint8_t *make_pnm(uint32_t w, uint32_t h, int rgb, int bits, size_t *len)
{
    char head[64];
    unsigned maxval = bits == 16 ? 4095 : 255;
    int n = snprintf(head, sizeof(head), "P%c\n%u %u\n%u\n", rgb ? '6' : '5', w, h, maxval);
    size_t samples = (size_t)w * h * (rgb ? 3 : 1), bps = bits == 16 ? 2 : 1;
    uint8_t *b = malloc((size_t)n + samples * bps);
    ck_assert_ptr_nonnull(b);
    memcpy(b, head, (size_t)n);
    for (size_t i = 0; i < samples; i++) {
        unsigned v = (unsigned)((i * 7 + (i / w) * 3) % (maxval + 1) + rnd() % 5) % (maxval + 1);
        if (bps == 2) {
            b[n + 2 * i] = (uint8_t)(v >> 8);
            b[n + 2 * i + 1] = (uint8_t)v;
        } else {
            b[n + i] = (uint8_t)v;
        }
    }
    *len = (size_t)n + samples * bps;
    return b;
}

struct membuf {
    uint8_t *p;
    size_t n;
};

static void mem_write(png_structp png, png_bytep data, png_size_t n)
{
    struct membuf *m = png_get_io_ptr(png);
    m->p = realloc(m->p, m->n + n);
    ck_assert_ptr_nonnull(m->p);
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

static void mem_flush(png_structp png)
{
    (void)png;
}

/* A PNG written by libpng: colour type 0 or 2, depth 8 or 16, a smooth gradient with noise. */
static uint8_t *make_png(uint32_t w, uint32_t h, int rgb, int bits, size_t *len)
{
    struct membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    size_t c = rgb ? 3 : 1, bps = (size_t)bits / 8, rowb = w * c * bps;
    uint8_t *row = malloc(rowb);
    ck_assert_ptr_nonnull(row);
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, bits, rgb ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++) {
        for (size_t i = 0; i < w * c; i++) {
            unsigned v = (unsigned)((i / c) * 5 + y * 3 + (i % c) * 40 + rnd() % 4);
            if (bits == 16) {
                v = (v * 37) & 0xffff;
                row[2 * i] = (uint8_t)(v >> 8);
                row[2 * i + 1] = (uint8_t)v;
            } else {
                row[i] = (uint8_t)v;
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    *len = m.n;
    return m.p;
}

/* A multi-frame DICOM, explicit VR little endian, 16-bit grey, 12 bits stored. */
static void dw(struct membuf *m, const void *p, size_t n)
{
    m->p = realloc(m->p, m->n + n);
    ck_assert_ptr_nonnull(m->p);
    memcpy(m->p + m->n, p, n);
    m->n += n;
}

static void delem(struct membuf *m, unsigned g, unsigned e, const char *vr, const void *v,
                  uint32_t n)
{
    uint8_t h[12] = {(uint8_t)g,        (uint8_t)(g >> 8), (uint8_t)e,
                     (uint8_t)(e >> 8), (uint8_t)vr[0],    (uint8_t)vr[1]};
    if (strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0) {
        h[8] = (uint8_t)n, h[9] = (uint8_t)(n >> 8), h[10] = (uint8_t)(n >> 16);
        h[11] = (uint8_t)(n >> 24);
        dw(m, h, 12);
    } else {
        h[6] = (uint8_t)n, h[7] = (uint8_t)(n >> 8);
        dw(m, h, 8);
    }
    if (v)
        dw(m, v, n);
}

static void dus(struct membuf *m, unsigned e, unsigned v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    delem(m, 0x0028, e, "US", b, 2);
}

static uint8_t *make_dicom(uint32_t w, uint32_t h, uint32_t frames, size_t *len)
{
    struct membuf m = {0};
    uint8_t pre[128] = {0};
    char nf[16];
    dw(&m, pre, sizeof(pre));
    dw(&m, "DICM", 4);
    delem(&m, 0x0002, 0x0001, "OB", "\0\1", 2);
    delem(&m, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1\0", 20);
    delem(&m, 0x0008, 0x0060, "CS", "MR", 2);
    delem(&m, 0x0010, 0x0010, "PN", "Doe^Jane", 8);
    dus(&m, 0x0002, 1);
    delem(&m, 0x0028, 0x0004, "CS", "MONOCHROME2 ", 12);
    snprintf(nf, sizeof(nf), "%u", frames);
    if (strlen(nf) % 2)
        strcat(nf, " ");
    delem(&m, 0x0028, 0x0008, "IS", nf, (uint32_t)strlen(nf));
    dus(&m, 0x0010, h);
    dus(&m, 0x0011, w);
    dus(&m, 0x0100, 16);
    dus(&m, 0x0101, 12);
    dus(&m, 0x0102, 11);
    size_t n = (size_t)w * h * frames * 2;
    uint8_t *px = malloc(n);
    ck_assert_ptr_nonnull(px);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = (unsigned)((i % w) * 9 + (i / w) * 4 + rnd() % 16) & 0xfff;
        px[2 * i] = (uint8_t)v;
        px[2 * i + 1] = (uint8_t)(v >> 8);
    }
    delem(&m, 0x7fe0, 0x0010, "OW", px, (uint32_t)n);
    free(px);
    *len = m.n;
    return m.p;
}

/* ---- checks ---- */

/* The container must read as an ordinary grey PNG of the geometry its header states. */
static void check_png(const uint8_t *c, size_t n)
{
    struct codec_ct_info info;
    png_image im;
    ck_assert_int_eq(codec_ct_info(c, n, &info), 0);
    memset(&im, 0, sizeof(im));
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_memory(&im, c, n), "libpng: %s", im.message);
    ck_assert_uint_eq(im.width, info.png_width);
    ck_assert_uint_eq(im.height, info.png_height);
    im.format = PNG_FORMAT_GRAY;
    size_t sz = PNG_IMAGE_SIZE(im);
    uint8_t *px = malloc(sz);
    ck_assert_ptr_nonnull(px);
    ck_assert_msg(png_image_finish_read(&im, NULL, px, 0, NULL), "libpng: %s", im.message);
    /* the padding after the sealed stream is zero */
    for (size_t i = (size_t)info.pixels_bytes; i < sz; i++)
        ck_assert_uint_eq(px[i], 0);
    free(px);
}

/* The preview must be a PNG of the image's geometry: the file's, so a DICOM of 4 channels
 * (YBR 4:2:2: Y0 Y1 Cb Cr at half width) is shown at full width. */
static void check_preview(const struct ctx *x, const uint8_t *c, size_t n)
{
    struct codec_ct_info info;
    uint8_t *pv = NULL;
    size_t pl = 0;
    ck_assert_int_eq(codec_ct_open_info(x->key, c, n, &info), 0);
    int rc = codec_pipeline_preview(x->ct, c, n, &pv, &pl);
    if (info.features != CODEC_CT_FEATURES_PRESENT) {
        ck_assert_int_eq(rc, -ENODATA);
        return;
    }
    ck_assert_int_eq(rc, 0);
    png_image im;
    memset(&im, 0, sizeof(im));
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_memory(&im, pv, pl), "libpng: %s", im.message);
    if (im.width != info.width)
        ck_assert(info.format == CODEC_FORMAT_DICOM && info.channels == 4 &&
                  im.width == 2 * info.width && (im.format & PNG_FORMAT_FLAG_COLOR));
    ck_assert_uint_eq(im.height, info.height);
    uint32_t shown = im.width;
    size_t sz = PNG_IMAGE_SIZE(im);
    uint8_t *px = malloc(sz);
    ck_assert_ptr_nonnull(px);
    ck_assert(png_image_finish_read(&im, NULL, px, 0, NULL));
    free(px);
    /* Fitted into a small cap (an xattr's 64 KiB, here less): halved until it fits. */
    uint8_t *small = NULL;
    size_t sl = 0, cap = pl / 3;
    ck_assert_int_eq(codec_pipeline_preview_fit(x->ct, c, n, cap, &small, &sl), 0);
    ck_assert_uint_le(sl, cap);
    memset(&im, 0, sizeof(im));
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_memory(&im, small, sl), "libpng: %s", im.message);
    ck_assert_uint_lt(im.width, shown);
    uint32_t w = shown;
    while (w > im.width)
        w = w / 2 ? w / 2 : 1;
    ck_assert_uint_eq(w, im.width); /* a halving of the image's width */
    png_image_free(&im);
    free(small);
    ck_assert_int_eq(codec_pipeline_preview_fit(x->ct, c, n, 8, &small, &sl), -EFBIG);
    free(pv);
}

/* Encode under a fresh key, decode, compare; returns the container (or NULL: -ENOTSUP). */
static uint8_t *round_trip(const struct ctx *c, const uint8_t *f, size_t n, size_t *clen,
                           const char *what)
{
    uint8_t *ct = NULL, *back = NULL;
    size_t cl = 0, bl = 0;
    struct codec_pipeline_opts o = {.threads = 2};
    int rc = codec_pipeline_encode(c->ct, f, n, &o, &ct, &cl);
    if (rc == -ENOTSUP)
        return NULL;
    ck_assert_msg(rc == 0, "%s: encode %d", what, rc);
    ck_assert_int_eq(codec_ct_sniff(ct, cl), 1);
    rc = codec_pipeline_decode(c->ct, ct, cl, 1, &back, &bl);
    ck_assert_msg(rc == 0, "%s: decode %d", what, rc);
    ck_assert_msg(bl == n && memcmp(back, f, n) == 0, "%s: bytes differ", what);
    free(back);
    check_png(ct, cl);
    /* What the header alone declares (the memory budget's input) is what was stored; a budget
     * below the estimate refuses the file before anything is decoded. */
    struct codec_image geo;
    struct codec_ct_info info;
    uint64_t need = 0;
    ck_assert_int_eq(codec_probe(f, n, &geo), 0);
    ck_assert_int_eq(codec_ct_open_info(c->key, ct, cl, &info), 0);
    ck_assert_uint_eq(geo.format, info.format);
    ck_assert_uint_eq(geo.channels, info.channels);
    ck_assert_uint_eq(geo.frames, info.frames);
    ck_assert_uint_eq(geo.height, info.height);
    ck_assert_uint_eq(geo.width, info.width);
    ck_assert_uint_eq(geo.bits, info.bits);
    ck_assert_int_eq(codec_pipeline_estimate(f, n, &need), 0);
    ck_assert_uint_ge(need, geo.planes_bytes);
    uint8_t *none = NULL;
    size_t nl = 0;
    o.max_bytes = need - 1;
    ck_assert_int_eq(codec_pipeline_encode(c->ct, f, n, &o, &none, &nl), -EFBIG);
    ck_assert_ptr_null(none);
    *clen = cl;
    return ct;
}

START_TEST(test_corpus)
{
    const char *dir = getenv("IMGC_TESTDATA");
    char path[4096];
    int stored = 0;
    ck_assert_ptr_nonnull(dir);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        struct ctx c;
        size_t n = 0, cl = 0;
        uint8_t *f = unit_read_file(path, &n);
        ctx_new(&c);
        uint8_t *ct = round_trip(&c, f, n, &cl, e->d_name);
        if (ct) {
            stored++;
            check_preview(&c, ct, cl);
            printf("container: %-36s %9zu -> %9zu bytes (%.3f)\n", e->d_name, n, cl,
                   (double)cl / (double)n);
        }
        free(ct);
        free(f);
        ctx_free(&c);
    }
    closedir(d);
    ck_assert_int_ge(stored, 10);
}
END_TEST

START_TEST(test_generated)
{
    static const uint32_t sizes[][2] = {{1, 1},   {1, 17},  {17, 1},   {13, 31},
                                        {16, 16}, {37, 53}, {101, 67}, {128, 96}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
        for (int kind = 0; kind < 2; kind++)
            for (int rgb = 0; rgb < 2; rgb++)
                for (int bits = 8; bits <= 16; bits += 8) {
                    char what[64];
                    size_t n = 0, cl = 0;
                    struct ctx c;
                    uint32_t w = sizes[s][0], h = sizes[s][1];
                    uint8_t *f =
                        kind ? make_png(w, h, rgb, bits, &n) : make_pnm(w, h, rgb, bits, &n);
                    snprintf(what, sizeof(what), "%s %ux%u %s %d", kind ? "png" : "pnm", w, h,
                             rgb ? "rgb" : "grey", bits);
                    ctx_new(&c);
                    uint8_t *ct = round_trip(&c, f, n, &cl, what);
                    ck_assert_msg(ct != NULL, "%s: not stored", what);
                    struct codec_ct_info info;
                    ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &info), 0);
                    ck_assert_uint_eq(info.channels, rgb ? 3 : 1);
                    ck_assert_uint_eq(info.bits, (unsigned)bits);
                    ck_assert_uint_eq(info.plain_size, n);
                    ck_assert_int_eq(info.features,
                                     w < CODEC_CT_MIN_FEATURE_DIM || h < CODEC_CT_MIN_FEATURE_DIM
                                         ? CODEC_CT_FEATURES_SMALL
                                         : CODEC_CT_FEATURES_PRESENT);
                    check_preview(&c, ct, cl);
                    free(ct);
                    free(f);
                    ctx_free(&c);
                }
}
END_TEST

START_TEST(test_dicom_frames)
{
    static const uint32_t cases[][3] = {{1, 1, 2}, {7, 5, 3}, {64, 48, 4}, {33, 17, 2}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 0, cl = 0;
        struct ctx c;
        uint8_t *f = make_dicom(cases[i][0], cases[i][1], cases[i][2], &n);
        ctx_new(&c);
        uint8_t *ct = round_trip(&c, f, n, &cl, "dicom");
        ck_assert_ptr_nonnull(ct);
        struct codec_ct_info info;
        ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &info), 0);
        ck_assert_uint_eq(info.frames, cases[i][2]);
        ck_assert_int_eq(info.format, CODEC_FORMAT_DICOM);
        check_preview(&c, ct, cl);
        /* patient data never shows in the stored bytes */
        ck_assert_ptr_null(memmem(ct, cl, "Doe^Jane", 8));
        free(ct);
        free(f);
        ctx_free(&c);
    }
}
END_TEST

START_TEST(test_not_image)
{
    struct ctx c;
    static const uint8_t text[] = "just some text, not an image\n";
    uint8_t *ct = NULL;
    size_t cl = 0;
    ctx_new(&c);
    ck_assert_int_eq(codec_pipeline_encode(c.ct, text, sizeof(text), NULL, &ct, &cl), -ENOTSUP);
    ck_assert_ptr_null(ct);
    ck_assert_int_eq(codec_pipeline_decode(c.ct, text, sizeof(text), 1, &ct, &cl), -EINVAL);
    ck_assert_int_eq(codec_pipeline_decode(c.ct, NULL, 0, 1, &ct, &cl), -EINVAL);
    ck_assert_ptr_null(ct);
    ctx_free(&c);
}
END_TEST

/* Decoding must fail without touching the out-parameters. */
static void expect_refused(const struct codec_pipeline *ct, const uint8_t *b, size_t n,
                           const char *w, size_t pos)
{
    uint8_t *out = (uint8_t *)&out;
    size_t ol = 4242;
    int rc = codec_pipeline_decode(ct, b, n, 1, &out, &ol);
    ck_assert_msg(rc == -EBADMSG || rc == -EINVAL, "%s at %zu: decode gave %d", w, pos, rc);
    ck_assert_ptr_eq(out, (uint8_t *)&out);
    ck_assert_uint_eq(ol, 4242);
}

START_TEST(test_tamper_small)
{
    struct ctx c;
    size_t n = 0, cl = 0;
    uint8_t *f = make_pnm(16, 16, 0, 8, &n); /* small, with features */
    ctx_new(&c);
    uint8_t *ct = round_trip(&c, f, n, &cl, "small");
    struct codec_ct_info info;
    ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &info), 0);
    ck_assert_int_eq(info.features, CODEC_CT_FEATURES_PRESENT);
    printf("container: every byte of a %zu-byte container changed in turn\n", cl);
    for (size_t i = 0; i < cl; i++) {
        uint8_t keep = ct[i];
        ct[i] ^= (uint8_t)(1u << (i % 8));
        expect_refused(c.ct, ct, cl, "bit flip", i);
        ct[i] = keep ^ 0xff;
        expect_refused(c.ct, ct, cl, "byte flip", i);
        ct[i] = keep;
    }
    /* cut at every length, and one byte more */
    for (size_t i = 0; i < cl; i++)
        expect_refused(c.ct, ct, i, "cut", i);
    uint8_t *longer = malloc(cl + 1);
    memcpy(longer, ct, cl);
    longer[cl] = 0;
    expect_refused(c.ct, longer, cl + 1, "extra byte", cl);
    free(longer);
    free(ct);
    free(f);
    ctx_free(&c);
}
END_TEST

START_TEST(test_tamper_large)
{
    char path[4096];
    struct ctx c;
    size_t n = 0, cl = 0;
    snprintf(path, sizeof(path), "%s/mri-t1-coronal-512.png", getenv("IMGC_TESTDATA"));
    uint8_t *f = unit_read_file(path, &n);
    ctx_new(&c);
    uint8_t *ct = round_trip(&c, f, n, &cl, "large");
    ck_assert_ptr_nonnull(ct);
    int samples = unit_quick() ? 60 : 400;
    for (int s = 0; s < samples; s++) {
        size_t i = s < 100 ? (size_t)s * 7 % cl : rnd() % cl;
        uint8_t keep = ct[i];
        ct[i] ^= (uint8_t)(1 + rnd() % 255);
        expect_refused(c.ct, ct, cl, "large flip", i);
        ct[i] = keep;
    }
    free(ct);
    free(f);
    ctx_free(&c);
}
END_TEST

/* Offsets of the chunks of a PNG: type, start (of the length field), whole length. */
struct chunk {
    char type[5];
    size_t at, len;
};

static size_t chunks(const uint8_t *b, size_t n, struct chunk *out, size_t cap)
{
    size_t k = 0;
    for (size_t pos = 8; pos + 12 <= n && k < cap;) {
        size_t l =
            (size_t)b[pos] << 24 | (size_t)b[pos + 1] << 16 | (size_t)b[pos + 2] << 8 | b[pos + 3];
        memcpy(out[k].type, b + pos + 4, 4);
        out[k].type[4] = 0;
        out[k].at = pos;
        out[k].len = 12 + l;
        k++;
        pos += 12 + l;
    }
    return k;
}

/* b with chunk i of b replaced by chunk j of a (CRCs stay valid: whole chunks move). */
static uint8_t *splice(const uint8_t *b, size_t bl, const struct chunk *bc, const uint8_t *a,
                       const struct chunk *ac, size_t *out_len)
{
    size_t n = bl - bc->len + ac->len;
    uint8_t *r = malloc(n);
    ck_assert_ptr_nonnull(r);
    memcpy(r, b, bc->at);
    memcpy(r + bc->at, a + ac->at, ac->len);
    memcpy(r + bc->at + ac->len, b + bc->at + bc->len, bl - bc->at - bc->len);
    *out_len = n;
    return r;
}

START_TEST(test_swap)
{
    struct ctx c, other;
    size_t n = 0, al = 0, bl = 0;
    uint8_t *f = make_pnm(48, 40, 0, 8, &n);
    ctx_new(&c);
    ctx_new(&other);
    /* the same image twice under one key, and once under another key */
    uint8_t *a = round_trip(&c, f, n, &al, "a"), *b = round_trip(&c, f, n, &bl, "b");
    size_t ol = 0;
    uint8_t *o = round_trip(&other, f, n, &ol, "other");
    ck_assert_uint_eq(al, bl);
    ck_assert_mem_ne(a, b, al); /* fresh file ids, fresh keys: nothing alike */
    struct chunk ca[16], cb[16];
    size_t ka = chunks(a, al, ca, 16), kb = chunks(b, bl, cb, 16);
    ck_assert_uint_eq(ka, kb);
    ck_assert_str_eq(ca[1].type, "icHd");
    ck_assert_str_eq(ca[2].type, "icMt");
    ck_assert_str_eq(ca[3].type, "icFt");
    ck_assert_str_eq(ca[4].type, "icEv");
    for (size_t i = 1; i + 1 < ka; i++) {
        size_t sl = 0;
        uint8_t *s = splice(b, bl, &cb[i], a, &ca[i], &sl);
        uint8_t *out = NULL;
        size_t outl = 0;
        int rc = codec_pipeline_decode(c.ct, s, sl, 1, &out, &outl);
        ck_assert_msg(rc == -EBADMSG, "chunk %s from another container: %d", ca[i].type, rc);
        if (i == 2 || i == 3) {
            rc = codec_pipeline_preview(c.ct, s, sl, &out, &outl);
            ck_assert_int_eq(rc, -EBADMSG);
        }
        free(s);
    }
    /* features and envelope in each other's place: refused (order, lengths, tags) */
    {
        uint8_t *s = malloc(al), *out = NULL;
        size_t at = ca[3].at, outl = 0;
        memcpy(s, a, al);
        memcpy(s + at, a + ca[4].at, ca[4].len);
        memcpy(s + at + ca[4].len, a + ca[3].at, ca[3].len);
        ck_assert_int_eq(codec_pipeline_decode(c.ct, s, al, 1, &out, &outl), -EINVAL);
        free(s);
    }
    /* wrong key */
    uint8_t *out = NULL;
    size_t outl = 0;
    ck_assert_int_eq(codec_pipeline_decode(other.ct, a, al, 1, &out, &outl), -EBADMSG);
    ck_assert_int_eq(codec_pipeline_preview(other.ct, a, al, &out, &outl), -EBADMSG);
    ck_assert_int_eq(codec_pipeline_decode(c.ct, o, ol, 1, &out, &outl), -EBADMSG);
    ck_assert_ptr_null(out);
    free(a);
    free(b);
    free(o);
    free(f);
    ctx_free(&c);
    ctx_free(&other);
}
END_TEST

START_TEST(test_keyring)
{
    char dir[] = "/tmp/imgc-ct-XXXXXX", kf[64], ring1[64], ring2[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(kf, sizeof(kf), "%s/key", dir);
    snprintf(ring1, sizeof(ring1), "%s/ring1", dir);
    snprintf(ring2, sizeof(ring2), "%s/ring2", dir);
    uint8_t raw[32];
    ck_assert_int_eq(keys_random(raw, sizeof(raw)), 0);
    FILE *fp = fopen(kf, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(raw, 1, sizeof(raw), fp), sizeof(raw));
    fclose(fp);
    ck_assert_int_eq(chmod(kf, 0600), 0);
    struct keys_source src = {KEYS_SRC_KEYFILE, kf};
    struct keys_secret *sec = NULL;
    struct keys_ring *r1 = NULL, *r2 = NULL;
    struct codec_pipeline *c1 = NULL, *c2 = NULL;
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &sec, NULL, 0), 0);
    ck_assert_int_eq(keys_ring_create(ring1, sec, KEYS_LOGN_MIN), 0);
    ck_assert_int_eq(keys_ring_create(ring2, sec, KEYS_LOGN_MIN), 0);
    ck_assert_int_eq(keys_ring_open(ring1, sec, &r1, NULL, 0), 0);
    ck_assert_int_eq(keys_ring_open(ring2, sec, &r2, NULL, 0), 0);
    ck_assert_int_eq(codec_pipeline_new(r1, &c1), 0);
    ck_assert_int_eq(codec_pipeline_new(r2, &c2), 0);
    size_t n = 0, cl = 0, bl = 0;
    uint8_t *f = make_png(40, 30, 1, 8, &n), *ct = NULL, *back = NULL;
    struct codec_pipeline_opts o = {.verify = 1};
    ck_assert_int_eq(codec_pipeline_encode(c1, f, n, &o, &ct, &cl), 0);
    ck_assert_int_eq(codec_pipeline_decode(c1, ct, cl, 2, &back, &bl), 0);
    ck_assert_uint_eq(bl, n);
    ck_assert_mem_eq(back, f, n);
    free(back);
    back = NULL;
    /* same key file, another keyring: another master key */
    ck_assert_int_eq(codec_pipeline_decode(c2, ct, cl, 1, &back, &bl), -EBADMSG);
    ck_assert_int_eq(codec_pipeline_preview(c2, ct, cl, &back, &bl), -EBADMSG);
    ck_assert_ptr_null(back);
    free(ct);
    free(f);
    codec_pipeline_free(c1);
    codec_pipeline_free(c2);
    keys_ring_close(r1);
    keys_ring_close(r2);
    keys_secret_free(sec);
    unlink(kf);
    unlink(ring1);
    unlink(ring2);
    rmdir(dir);
}
END_TEST

/* An untrained coder model (random networks): what a container names must round-trip whatever
 * the model's quality. */
static uint8_t *coder_model(size_t *len)
{
    struct codec_image img = {CODEC_FORMAT_NONE, 1, 1, 80, 80, 8, 8, NULL, 6400};
    const struct codec_image *imgs[1] = {&img};
    img.planes = malloc(6400);
    ck_assert_ptr_nonnull(img.planes);
    for (size_t i = 0; i < 6400; i++)
        ((uint8_t *)img.planes)[i] = (uint8_t)((i % 80) * 2 + (i / 80) + i % 3);
    struct codec_pixnet_train_opts o;
    codec_pixnet_train_defaults(&o);
    o.epochs = 0;
    o.batch = 64;
    o.samples = 4096;
    uint8_t *m = NULL;
    ck_assert_int_eq(codec_pixnet_train(imgs, 1, &o, &m, len), 0);
    free(img.planes);
    return m;
}

START_TEST(test_coder_model)
{
    char dir[] = "/tmp/imgc-ct-XXXXXX", kf[64], ring1[64], ring2[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(kf, sizeof(kf), "%s/key", dir);
    snprintf(ring1, sizeof(ring1), "%s/ring1", dir);
    snprintf(ring2, sizeof(ring2), "%s/ring2", dir);
    uint8_t raw[32], digest[32];
    ck_assert_int_eq(keys_random(raw, sizeof(raw)), 0);
    FILE *fp = fopen(kf, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(raw, 1, sizeof(raw), fp), sizeof(raw));
    fclose(fp);
    ck_assert_int_eq(chmod(kf, 0600), 0);
    struct keys_source src = {KEYS_SRC_KEYFILE, kf};
    struct keys_secret *sec = NULL;
    struct keys_ring *r1 = NULL, *r2 = NULL;
    struct codec_pipeline *c1 = NULL, *c2 = NULL;
    size_t ml = 0;
    uint8_t *model = coder_model(&ml);
    ck_assert_int_eq(keys_sha256(model, ml, digest), 0);
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &sec, NULL, 0), 0);
    ck_assert_int_eq(keys_ring_create(ring1, sec, KEYS_LOGN_MIN), 0);
    ck_assert_int_eq(keys_ring_open(ring1, sec, &r1, NULL, 0), 0);
    ck_assert_int_eq(keys_ring_add_model(r1, KEYS_MODEL_CODER, digest, model, ml), 0);
    ck_assert_int_eq(codec_pipeline_new(r1, &c1), 0);
    struct keys_key *k1 = NULL, *k2 = NULL; /* the pipelines' container keys, to read the meta */
    ck_assert_int_eq(keys_ring_subkey(r1, CODEC_CT_SUBKEY_LABEL, KEYS_KEY_GCM, &k1), 0);
    size_t n = 0, cl = 0, bl = 0;
    uint8_t *f = make_png(70, 45, 1, 16, &n), *ct = NULL, *back = NULL;
    struct codec_pipeline_opts o = {
        .verify = 1, .threads = 2, .coder = CODEC_PIPELINE_CODER_NEURAL_ONLY};
    ck_assert_int_eq(codec_pipeline_encode(c1, f, n, &o, &ct, &cl), 0);
    struct codec_ct_info info;
    ck_assert_int_eq(codec_ct_open_info(k1, ct, cl, &info), 0);
    ck_assert_mem_eq(info.coder_id, digest, KEYS_ID_BYTES);
    /* the other modes: predictor 0 by default and when asked; the smaller of the two when
     * asked for the smallest (sizes differ only by the pixel stream); neural: this untrained
     * model, or predictor 0 where a sample says it codes smaller, never more than 0.5%
     * larger than predictor 0, and the container names the model only if it coded */
    static const uint8_t none[KEYS_ID_BYTES] = {0};
    size_t sizes[5] = {0};
    for (int mode = CODEC_PIPELINE_CODER_DEFAULT; mode <= CODEC_PIPELINE_CODER_NEURAL_ONLY;
         mode++) {
        struct codec_pipeline_opts om = {.verify = 1, .threads = 1, .coder = mode};
        uint8_t *cm = NULL, *bm = NULL;
        size_t cml = 0, bml = 0;
        ck_assert_int_eq(codec_pipeline_encode(c1, f, n, &om, &cm, &cml), 0);
        ck_assert_int_eq(codec_ct_open_info(k1, cm, cml, &info), 0);
        if (mode == CODEC_PIPELINE_CODER_NEURAL_ONLY)
            ck_assert_mem_eq(info.coder_id, digest, KEYS_ID_BYTES);
        else if (mode != CODEC_PIPELINE_CODER_SMALLEST && mode != CODEC_PIPELINE_CODER_NEURAL)
            ck_assert_mem_eq(info.coder_id, none, KEYS_ID_BYTES);
        else
            ck_assert(memcmp(info.coder_id, digest, KEYS_ID_BYTES) == 0 ||
                      memcmp(info.coder_id, none, KEYS_ID_BYTES) == 0);
        ck_assert_int_eq(codec_pipeline_decode(c1, cm, cml, 2, &bm, &bml), 0);
        ck_assert_uint_eq(bml, n);
        ck_assert_mem_eq(bm, f, n);
        sizes[mode] = cml;
        free(cm);
        free(bm);
    }
    for (int bad = -1; bad <= 5; bad += 6) { /* no such mode: refused, nothing made */
        struct codec_pipeline_opts ob = {.coder = bad};
        uint8_t *cb = NULL;
        size_t cbl = 0;
        ck_assert_int_eq(codec_pipeline_encode(c1, f, n, &ob, &cb, &cbl), -EINVAL);
        ck_assert_ptr_null(cb);
    }
    ck_assert_uint_eq(sizes[CODEC_PIPELINE_CODER_DEFAULT], sizes[CODEC_PIPELINE_CODER_FIXED]);
    ck_assert_uint_eq(sizes[CODEC_PIPELINE_CODER_NEURAL_ONLY], cl);
    ck_assert_uint_le(sizes[CODEC_PIPELINE_CODER_NEURAL] * 1000,
                      sizes[CODEC_PIPELINE_CODER_FIXED] * 1005);
    ck_assert_uint_eq(sizes[CODEC_PIPELINE_CODER_SMALLEST], sizes[CODEC_PIPELINE_CODER_FIXED] < cl
                                                                ? sizes[CODEC_PIPELINE_CODER_FIXED]
                                                                : cl);
    for (unsigned th = 1; th <= 2; th++) {
        ck_assert_int_eq(codec_pipeline_decode(c1, ct, cl, th, &back, &bl), 0);
        ck_assert_uint_eq(bl, n);
        ck_assert_mem_eq(back, f, n);
        free(back);
        back = NULL;
    }
    /* the same container key without that coder model: the (sealed) meta names an unknown
     * coder */
    struct codec_pipeline *c4 = NULL;
    ck_assert_int_eq(codec_pipeline_new_key(k1, &c4), 0);
    ck_assert_int_eq(codec_pipeline_decode(c4, ct, cl, 1, &back, &bl), -ENOENT);
    ck_assert_ptr_null(back);
    codec_pipeline_free(c4);
    /* another keyring: its key does not open the meta, so not even the model is told */
    ck_assert_int_eq(keys_ring_create(ring2, sec, KEYS_LOGN_MIN), 0);
    ck_assert_int_eq(keys_ring_open(ring2, sec, &r2, NULL, 0), 0);
    ck_assert_int_eq(codec_pipeline_new(r2, &c2), 0);
    ck_assert_int_eq(codec_pipeline_decode(c2, ct, cl, 1, &back, &bl), -EBADMSG);
    ck_assert_ptr_null(back);
    /* a keyring whose last coder model this build cannot load (a later release's, say): files
     * are still stored, by predictor 0, and the header names no coder */
    struct codec_pipeline *c3 = NULL;
    uint8_t junk[64], junk_id[32];
    memset(junk, 0x5a, sizeof(junk));
    ck_assert_int_eq(keys_sha256(junk, sizeof(junk), junk_id), 0);
    ck_assert_int_eq(keys_ring_add_model(r2, KEYS_MODEL_CODER, junk_id, junk, sizeof(junk)), 0);
    ck_assert_int_eq(codec_pipeline_new(r2, &c3), 0);
    ck_assert_int_eq(keys_ring_subkey(r2, CODEC_CT_SUBKEY_LABEL, KEYS_KEY_GCM, &k2), 0);
    uint8_t *ct3 = NULL, zero[KEYS_ID_BYTES] = {0};
    size_t cl3 = 0;
    for (int k = 0; k < 2; k++) { /* the failed load is remembered, and still not an error */
        ck_assert_int_eq(codec_pipeline_encode(c3, f, n, &o, &ct3, &cl3), 0);
        ck_assert_int_eq(codec_ct_open_info(k2, ct3, cl3, &info), 0);
        ck_assert_mem_eq(info.coder_id, zero, KEYS_ID_BYTES);
        ck_assert_int_eq(codec_pipeline_decode(c3, ct3, cl3, 1, &back, &bl), 0);
        ck_assert_mem_eq(back, f, n);
        free(back);
        back = NULL;
        free(ct3);
    }
    codec_pipeline_free(c3);
    keys_key_free(k1);
    keys_key_free(k2);
    free(ct);
    free(f);
    free(model);
    codec_pipeline_free(c1);
    codec_pipeline_free(c2);
    keys_ring_close(r1);
    keys_ring_close(r2);
    keys_secret_free(sec);
    unlink(kf);
    unlink(ring1);
    unlink(ring2);
    rmdir(dir);
}
END_TEST

START_TEST(test_options)
{
    struct ctx c;
    size_t n = 0, cl = 0, pl = 0;
    uint8_t *f = make_png(64, 64, 0, 16, &n), *ct = NULL, *pv = NULL;
    struct codec_pipeline_opts o = {.no_features = 1, .verify = 1, .threads = 2};
    ctx_new(&c);
    ck_assert_int_eq(codec_pipeline_encode(c.ct, f, n, &o, &ct, &cl), 0);
    struct codec_ct_info info;
    ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &info), 0);
    ck_assert_int_eq(info.features, CODEC_CT_FEATURES_DISABLED);
    ck_assert_uint_eq(info.features_bytes, 0);
    ck_assert_int_eq(codec_pipeline_preview(c.ct, ct, cl, &pv, &pl), -ENODATA);
    free(ct);
    /* decoding with 1 and 2 threads gives the same bytes */
    ck_assert_int_eq(codec_pipeline_encode(c.ct, f, n, NULL, &ct, &cl), 0);
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    ck_assert_int_eq(codec_pipeline_decode(c.ct, ct, cl, 1, &b1, &l1), 0);
    ck_assert_int_eq(codec_pipeline_decode(c.ct, ct, cl, 2, &b2, &l2), 0);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(b1, b2, l1);
    /* previews are the same bytes every time */
    uint8_t *p1 = NULL, *p2 = NULL;
    size_t q1 = 0, q2 = 0;
    ck_assert_int_eq(codec_pipeline_preview(c.ct, ct, cl, &p1, &q1), 0);
    ck_assert_int_eq(codec_pipeline_preview(c.ct, ct, cl, &p2, &q2), 0);
    ck_assert_uint_eq(q1, q2);
    ck_assert_mem_eq(p1, p2, q1);
    free(p1);
    free(p2);
    free(b1);
    free(b2);
    free(ct);
    free(f);
    ctx_free(&c);
}
END_TEST

/* ---- what stays public (issue 17, finding 3) ---- */

/* The chunk of type t of a container, whole (length, type, data, CRC). */
static struct chunk find_chunk(const uint8_t *b, size_t n, const char *t)
{
    struct chunk cs[32];
    size_t k = chunks(b, n, cs, 32);
    for (size_t i = 0; i < k; i++)
        if (strcmp(cs[i].type, t) == 0)
            return cs[i];
    ck_abort_msg("no %s chunk", t);
    return cs[0];
}

static void assert_absent(const uint8_t *hay, size_t n, const void *needle, size_t nl,
                          const char *what)
{
    ck_assert_msg(memmem(hay, n, needle, nl) == NULL, "the public header shows the %s", what);
}

/* Needle is in none of a version 2 container's public bytes up to the end of its header
 * (chunk hd, at ct + hd.at) but the random ones: the file id and the CRC over it hold any 4
 * bytes now and then (3 zero bytes, then a file id starting with 0x40, read in big endian as
 * 64: one run in 256). */
static void assert_not_public(const uint8_t *ct, struct chunk hd, const void *needle, size_t nl,
                              const char *what)
{
    const uint8_t *fields = ct + hd.at + 8;
    assert_absent(ct, hd.at + 8 + 8, needle, nl, what); /* up to the file id */
    assert_absent(fields + 24, CODEC_CT_HEADER2 - 24, needle, nl, what);
}

/* A version 2 container's public bytes before the sealed sections (signature, IHDR, header)
 * hold neither the plaintext size, nor the image's geometry, nor a model id; the header holds
 * only magic, version, file id and bucketed lengths. */
START_TEST(test_public_header)
{
    struct ctx c;
    size_t n = 0, cl = 0;
    uint8_t *f = make_dicom(64, 64, 1, &n); /* the audit's case: a 64 x 64 16-bit DICOM */
    ctx_new(&c);
    uint8_t *ct = round_trip(&c, f, n, &cl, "dicom");
    ck_assert_ptr_nonnull(ct);
    struct codec_ct_info pub, all;
    ck_assert_int_eq(codec_ct_info(ct, cl, &pub), 0);
    ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &all), 0);
    ck_assert_uint_eq(pub.version, CODEC_CT_VERSION);
    ck_assert_int_eq(pub.sealed, 1);
    ck_assert_uint_eq(pub.plain_size, 0);
    ck_assert_uint_eq(pub.width, 0);
    ck_assert_int_eq(all.sealed, 0);
    ck_assert_uint_eq(all.plain_size, n);
    ck_assert_uint_eq(all.width, 64);
    ck_assert_uint_eq(all.height, 64);
    ck_assert_uint_eq(all.bits, 16);
    ck_assert_int_eq(all.format, CODEC_FORMAT_DICOM);
    ck_assert_int_eq(all.features, CODEC_CT_FEATURES_PRESENT);
    ck_assert_mem_eq(pub.file_id, all.file_id, KEYS_ID_BYTES);

    struct chunk hd = find_chunk(ct, cl, "icHd");
    ck_assert_uint_eq(hd.len, 12 + CODEC_CT_HEADER2);
    uint8_t v[8];
    codec_put_le64(v, n);
    assert_not_public(ct, hd, v, 4, "plaintext size (LE)");
    codec_put_be32(v, (uint32_t)n);
    assert_not_public(ct, hd, v, 4, "plaintext size (BE)");
    /* from the header chunk on: IHDR holds the noise's own geometry */
    codec_put_le32(v, 64);
    assert_not_public(ct + hd.at, (struct chunk){.at = 0}, v, 4, "width/height (LE)");
    codec_put_be32(v, 64);
    assert_not_public(ct + hd.at, (struct chunk){.at = 0}, v, 4, "width/height (BE)");
    assert_not_public(ct, hd, all.ae_id, KEYS_ID_BYTES, "autoencoder id");
    assert_not_public(ct, hd, all.ae_id, 8, "autoencoder id prefix");
    static const uint8_t magic[5] = {'I', 'M', 'C', 'T', CODEC_CT_VERSION};
    ck_assert_mem_eq(ct + hd.at + 8, magic, 5);
    ck_assert_mem_eq(ct + hd.at + 8 + 8, all.file_id, KEYS_ID_BYTES);
    /* the lengths are buckets, and the plaintext lengths sit only in the meta */
    ck_assert_uint_eq(codec_ct_bucket(all.envelope_bytes, CODEC_CT_MAX_CHUNK), all.envelope_bytes);
    ck_assert_uint_eq(codec_ct_bucket(all.pixels_bytes, CODEC_CT_MAX_PIXELS), all.pixels_bytes);
    ck_assert_uint_eq(codec_ct_bucket(all.features_bytes, CODEC_CT_MAX_CHUNK), all.features_bytes);
    ck_assert_uint_ge(all.envelope_bytes, all.envelope_plain + KEYS_TAG_BYTES);
    ck_assert_uint_ge(all.pixels_bytes, all.pixels_plain + KEYS_TAG_BYTES);
    codec_put_le64(v, all.envelope_plain);
    assert_not_public(ct, hd, v, 4, "envelope length");
    codec_put_le64(v, all.pixels_plain);
    assert_not_public(ct, hd, v, 4, "pixel stream length");

    /* the plaintext size needs the key and opens only the meta */
    uint64_t size = 0;
    ck_assert_int_eq(codec_pipeline_plain_size(c.ct, ct, cl, &size), 0);
    ck_assert_uint_eq(size, n);
    /* the head alone (what stat reads) gives the same, authenticated; a shorter head, not */
    struct codec_ct_info head;
    ck_assert_int_eq(codec_pipeline_head_info(c.ct, ct, CODEC_CT_HEAD, &head), 0);
    ck_assert_uint_eq(head.plain_size, n);
    ck_assert_mem_eq(head.ae_id, all.ae_id, KEYS_ID_BYTES);
    ck_assert_mem_eq(head.coder_id, all.coder_id, KEYS_ID_BYTES);
    ck_assert_int_eq(codec_pipeline_head_info(c.ct, ct, hd.at + hd.len + 20, &head), -EINVAL);
    struct ctx other;
    ctx_new(&other);
    ck_assert_int_eq(codec_pipeline_head_info(other.ct, ct, CODEC_CT_HEAD, &head), -EBADMSG);
    ck_assert_int_eq(codec_pipeline_plain_size(other.ct, ct, cl, &size), -EBADMSG);
    ck_assert_int_eq(codec_ct_open_info(other.key, ct, cl, &all), -EBADMSG);
    ctx_free(&other);
    free(ct);
    free(f);
    ctx_free(&c);
}
END_TEST

/* Every byte of the sealed meta changed, with the chunk's CRC made right again: the tag
 * refuses it (-EBADMSG) for decode, preview, plain size and info. */
START_TEST(test_meta_tamper)
{
    struct ctx c;
    size_t n = 0, cl = 0;
    uint8_t *f = make_pnm(24, 20, 0, 16, &n);
    ctx_new(&c);
    uint8_t *ct = round_trip(&c, f, n, &cl, "meta");
    ck_assert_ptr_nonnull(ct);
    struct chunk mt = find_chunk(ct, cl, "icMt");
    ck_assert_uint_eq(mt.len, 12 + CODEC_CT_META + KEYS_TAG_BYTES);
    uint8_t *data = ct + mt.at + 8;
    for (size_t i = 0; i < CODEC_CT_META + KEYS_TAG_BYTES; i++) {
        uint8_t keep = data[i];
        data[i] ^= (uint8_t)(1u << (i % 8));
        codec_put_be32(data + CODEC_CT_META + KEYS_TAG_BYTES,
                       codec_crc32(0, ct + mt.at + 4, 4 + CODEC_CT_META + KEYS_TAG_BYTES));
        uint8_t *out = NULL;
        size_t ol = 0;
        uint64_t size = 0;
        struct codec_ct_info info;
        ck_assert_int_eq(codec_pipeline_decode(c.ct, ct, cl, 1, &out, &ol), -EBADMSG);
        ck_assert_int_eq(codec_pipeline_preview(c.ct, ct, cl, &out, &ol), -EBADMSG);
        ck_assert_int_eq(codec_pipeline_plain_size(c.ct, ct, cl, &size), -EBADMSG);
        ck_assert_int_eq(codec_ct_open_info(c.key, ct, cl, &info), -EBADMSG);
        ck_assert_int_eq(codec_pipeline_head_info(c.ct, ct, cl, &info), -EBADMSG);
        ck_assert_ptr_null(out);
        data[i] = keep;
    }
    codec_put_be32(data + CODEC_CT_META + KEYS_TAG_BYTES,
                   codec_crc32(0, ct + mt.at + 4, 4 + CODEC_CT_META + KEYS_TAG_BYTES));
    uint64_t size = 0;
    ck_assert_int_eq(codec_pipeline_plain_size(c.ct, ct, cl, &size), 0);
    ck_assert_uint_eq(size, n);
    free(ct);
    free(f);
    ctx_free(&c);
}
END_TEST

/* The bucket grid: at least n, a multiple of its step, a fixed point, never past the limit,
 * and monotonic; the cost below one step. */
START_TEST(test_bucket)
{
    uint64_t prev = 0;
    for (uint64_t n = 1; n < 300000; n += 1 + n / 97) {
        uint64_t b = codec_ct_bucket(n, CODEC_CT_MAX_CHUNK);
        uint64_t pow = 1;
        while (pow < n)
            pow <<= 1;
        uint64_t step = pow / 16 > CODEC_CT_PAD_MIN ? pow / 16 : CODEC_CT_PAD_MIN;
        ck_assert_uint_ge(b, n);
        ck_assert_uint_lt(b - n, step);
        ck_assert_uint_eq(b % step, 0);
        ck_assert_uint_eq(codec_ct_bucket(b, CODEC_CT_MAX_CHUNK), b);
        ck_assert_uint_ge(b, prev);
        prev = b;
    }
    ck_assert_uint_eq(codec_ct_bucket(17, CODEC_CT_MAX_CHUNK), 256);
    ck_assert_uint_eq(codec_ct_bucket(4097, CODEC_CT_MAX_CHUNK), 4608);
    ck_assert_uint_eq(codec_ct_bucket(CODEC_CT_MAX_CHUNK - 5, CODEC_CT_MAX_CHUNK),
                      CODEC_CT_MAX_CHUNK);
}
END_TEST

static void copy_file(const char *from, const char *to)
{
    size_t n = 0;
    uint8_t *b = unit_read_file(from, &n);
    FILE *fp = fopen(to, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(b, 1, n, fp), n);
    ck_assert_int_eq(fclose(fp), 0);
    ck_assert_int_eq(chmod(to, 0600), 0);
    free(b);
}

/* A version 1 container (golden/v1, made by an earlier release) still reads: its public
 * header, its plaintext size without decoding, and its decode. */
START_TEST(test_version1)
{
    const char *data = getenv("IMGC_TESTDATA");
    char dir[] = "/tmp/imgc-ct-XXXXXX", kf[64], ring[64], path[4096];
    ck_assert_ptr_nonnull(data);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(kf, sizeof(kf), "%s/key", dir);
    snprintf(ring, sizeof(ring), "%s/ring", dir);
    snprintf(path, sizeof(path), "%s/golden/v1/key", data);
    copy_file(path, kf);
    snprintf(path, sizeof(path), "%s/golden/v1/store/imgcryptfs.keyring", data);
    copy_file(path, ring);
    struct keys_source src = {KEYS_SRC_KEYFILE, kf};
    struct keys_secret *sec = NULL;
    struct keys_ring *r = NULL;
    struct codec_pipeline *pl = NULL;
    ck_assert_int_eq(keys_secret_read(&src, NULL, 0, &sec, NULL, 0), 0);
    ck_assert_int_eq(keys_ring_open(ring, sec, &r, NULL, 0), 0);
    ck_assert_int_eq(codec_pipeline_new(r, &pl), 0);
    size_t n = 0, cl = 0, bl = 0;
    snprintf(path, sizeof(path), "%s/CT_small.dcm", data);
    uint8_t *f = unit_read_file(path, &n), *back = NULL;
    snprintf(path, sizeof(path), "%s/golden/v1/CT_small.dcm.ct", data);
    uint8_t *ct = unit_read_file(path, &cl);
    struct codec_ct_info info;
    ck_assert_int_eq(codec_ct_info(ct, cl, &info), 0);
    ck_assert_uint_eq(info.version, CODEC_CT_VERSION_V1);
    ck_assert_int_eq(info.sealed, 0);
    ck_assert_uint_eq(info.plain_size, n);
    uint64_t size = 0;
    ck_assert_int_eq(codec_pipeline_plain_size(pl, ct, cl, &size), 0);
    ck_assert_uint_eq(size, n);
    ck_assert_int_eq(codec_pipeline_decode(pl, ct, cl, 1, &back, &bl), 0);
    ck_assert_uint_eq(bl, n);
    ck_assert_mem_eq(back, f, n);
    free(back);
    free(ct);
    free(f);
    codec_pipeline_free(pl);
    keys_ring_close(r);
    keys_secret_free(sec);
    unlink(kf);
    unlink(ring);
    rmdir(dir);
}
END_TEST

static Suite *codec_container_suite(void)
{
    Suite *s = suite_create("codec_container");
    TCase *t = tcase_create("roundtrip");
    tcase_add_test(t, test_corpus);
    tcase_add_test(t, test_generated);
    tcase_add_test(t, test_dicom_frames);
    tcase_add_test(t, test_not_image);
    tcase_add_test(t, test_options);
    tcase_add_test(t, test_keyring);
    tcase_add_test(t, test_coder_model);
    suite_add_tcase(s, t);
    TCase *a = tcase_create("tamper");
    tcase_add_test(a, test_tamper_small);
    tcase_add_test(a, test_tamper_large);
    tcase_add_test(a, test_swap);
    suite_add_tcase(s, a);
    TCase *p = tcase_create("public");
    tcase_add_test(p, test_public_header);
    tcase_add_test(p, test_meta_tamper);
    tcase_add_test(p, test_bucket);
    tcase_add_test(p, test_version1);
    suite_add_tcase(s, p);
    return s;
}

UNIT_SUITE(codec_container_suite)
