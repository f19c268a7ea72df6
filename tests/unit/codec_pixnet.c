// SPDX-License-Identifier: MIT
/*
 * Unit tests of the neural predictor (codec/pixel/pixnet.h) in the pixel coder: exact round trips
 * at every awkward size, depth and stripe height, with an untrained (random) model and with the
 * shipped one; each stripe decoded alone; the same stream for any thread count of the coder
 * and of OpenBLAS; malformed model files refused; and, when a default model is shipped, its
 * size against predictor 0 on the test images.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bytes.h"
#include "codec/codec.h"
#include "codec/pixel/pixcode.h"
#include "codec/pixel/pixnet.h"
#include "nn/nn.h"
#include "tests/unit/codec_images.h"
#include "tests/unit/unit.h"

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* A smooth image with some noise (or pure noise): c planes of h x w, bits/sig. */
static struct codec_image *make(uint32_t c, uint32_t h, uint32_t w, uint32_t bits, uint32_t sig,
                                int noise, uint64_t seed)
{
    struct codec_image *img = calloc(1, sizeof(*img));
    ck_assert_ptr_nonnull(img);
    *img = (struct codec_image){CODEC_FORMAT_NONE, c, 1, h, w, bits, sig, NULL, 0};
    size_t n = (size_t)c * h * w;
    img->planes_bytes = n * (bits / 8);
    img->planes = malloc(img->planes_bytes);
    ck_assert_ptr_nonnull(img->planes);
    rng_state = seed;
    uint32_t maxv = (1u << sig) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t x = i % w, y = (i / w) % h, p = i / ((size_t)w * h);
        uint32_t v =
            noise ? rnd() & maxv
                  : (uint32_t)((x * 3 + y * 5 + p * 11 + (x * y) / 7 + rnd() % 3) % (maxv + 1));
        if (bits == 8)
            ((uint8_t *)img->planes)[i] = (uint8_t)v;
        else
            ((uint16_t *)img->planes)[i] = (uint16_t)v;
    }
    return img;
}

static void drop(struct codec_image *img)
{
    if (img)
        free(img->planes);
    free(img);
}

/* An untrained model: random networks, quantised on a synthetic image. */
static uint8_t *untrained(size_t *len, uint64_t seed)
{
    struct codec_image *img = make(1, 96, 96, 8, 8, 0, seed);
    const struct codec_image *imgs[1] = {img};
    struct codec_pixnet_train_opts o;
    codec_pixnet_train_defaults(&o);
    o.epochs = 0;
    o.batch = 64;
    o.samples = 4096;
    o.seed = seed;
    uint8_t *m = NULL;
    ck_assert_int_eq(codec_pixnet_train(imgs, 1, &o, &m, len), 0);
    drop(img);
    return m;
}

static struct codec_pixnet *load(const uint8_t *b, size_t n)
{
    struct codec_pixnet *pn = NULL;
    ck_assert_int_eq(codec_pixnet_load(b, n, &pn), 0);
    return pn;
}

/* Encode with pred, decode with 1 and 2 threads, compare; returns the stream. */
static uint8_t *round_trip(const struct codec_image *img,
                           const struct codec_pixcode_predictor *pred, uint32_t rows,
                           unsigned threads, size_t *len)
{
    struct codec_pixcode_opts o = {.stripe_rows = rows, .threads = threads, .pred = pred};
    uint8_t *s = NULL;
    size_t sl = 0;
    ck_assert_int_eq(codec_pixcode_encode(img, &o, &s, &sl), 0);
    struct codec_pixcode_info info;
    ck_assert_int_eq(codec_pixcode_info(s, sl, &info), 0);
    ck_assert_uint_eq(info.predictor, pred->id);
    for (unsigned th = 1; th <= 2; th++) {
        struct codec_image back = *img;
        back.planes = malloc(img->planes_bytes);
        memset(back.planes, 0x5a, img->planes_bytes);
        ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, pred, th), 0);
        ck_assert_mem_eq(back.planes, img->planes, img->planes_bytes);
        free(back.planes);
    }
    /* a stream of predictor 1 is refused without its model */
    struct codec_image back = *img;
    back.planes = malloc(img->planes_bytes);
    ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, 1), -EINVAL);
    free(back.planes);
    *len = sl;
    return s;
}

START_TEST(random_model_round_trips)
{
    size_t ml = 0;
    uint8_t *mb = untrained(&ml, 7);
    struct codec_pixnet *pn = load(mb, ml);
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    static const uint32_t dims[][2] = {{1, 1},   {1, 37},  {41, 1}, {2, 2},   {97, 89},
                                       {3, 130}, {64, 64}, {65, 7}, {13, 17}, {131, 9}};
    static const uint32_t depth[][2] = {{8, 8}, {8, 1}, {8, 5}, {16, 16}, {16, 12}, {16, 9}};
    uint64_t seed = 100;
    for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
        for (size_t b = 0; b < sizeof(depth) / sizeof(depth[0]); b++)
            for (int noise = 0; noise <= 1; noise++) {
                struct codec_image *img = make(d % 3 == 0 ? 3 : 1, dims[d][0], dims[d][1],
                                               depth[b][0], depth[b][1], noise, seed++);
                size_t sl;
                free(round_trip(img, p, 0, 2, &sl));
                drop(img);
            }
    codec_pixnet_free(pn);
    free(mb);
}
END_TEST

/* Every stripe height from 1 to 64 (and beyond the image), on an odd-sized image. */
START_TEST(stripe_heights)
{
    size_t ml = 0;
    uint8_t *mb = untrained(&ml, 8);
    struct codec_pixnet *pn = load(mb, ml);
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    struct codec_image *img8 = make(1, 71, 53, 8, 8, 0, 5);
    struct codec_image *img16 = make(2, 37, 29, 16, 12, 0, 6);
    for (uint32_t rows = 1; rows <= 72; rows++) {
        size_t sl;
        free(round_trip(img8, p, rows, rows % 3 + 1, &sl));
        if (rows % 4 == 1 || rows > 60)
            free(round_trip(img16, p, rows, 2, &sl));
    }
    drop(img8);
    drop(img16);
    codec_pixnet_free(pn);
    free(mb);
}
END_TEST

START_TEST(stripes_decode_alone)
{
    size_t ml = 0;
    uint8_t *mb = untrained(&ml, 9);
    struct codec_pixnet *pn = load(mb, ml);
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    struct codec_image *img = make(2, 150, 77, 16, 11, 0, 9);
    size_t sl;
    uint8_t *s = round_trip(img, p, 24, 2, &sl);
    struct codec_pixcode_info info;
    ck_assert_int_eq(codec_pixcode_info(s, sl, &info), 0);
    uint16_t *out = malloc(24 * 77 * 2);
    const uint16_t *planes = img->planes;
    for (uint32_t pl = 0; pl < 2; pl++)
        for (uint32_t j = 0; j < info.stripes; j++) {
            uint32_t rows = 150 - j * 24 < 24 ? 150 - j * 24 : 24;
            ck_assert_int_eq(codec_pixcode_decode_stripe(s, sl, p, pl, j, out, 24 * 77 * 2), 0);
            ck_assert_mem_eq(out, planes + (size_t)pl * 150 * 77 + (size_t)j * 24 * 77,
                             (size_t)rows * 77 * 2);
        }
    free(out);
    free(s);
    drop(img);
    codec_pixnet_free(pn);
    free(mb);
}
END_TEST

/* The stream of img coded with model bytes mb[0..ml) (64-row stripes, one thread). */
static uint8_t *code_with(const uint8_t *mb, size_t ml, const struct codec_image *img, size_t *sl)
{
    struct codec_pixnet *pn = load(mb, ml);
    uint8_t *s = round_trip(img, codec_pixnet_predictor(pn), 64, 1, sl);
    codec_pixnet_free(pn);
    return s;
}

/*
 * A model of two sets (version 2, codec_pixnet_merge): planes of fewer than CODEC_PIXNET_WIDE
 * values code exactly as with the narrow model alone, the others as with the wide one; a
 * merged model does not merge again, nor do models of different contexts; a version 2 file
 * that names two networks, or is cut short, is refused.
 */
START_TEST(two_sets)
{
    size_t nl = 0, wl = 0, ml = 0;
    uint8_t *narrow = untrained(&nl, 31), *wide = untrained(&wl, 31), *mb = NULL;
    for (int n = 0; n < 2; n++) /* wide: the same networks, contexts offset (C0 += 24) */
        codec_put_le32(wide + 8 + 16 * n + 12, codec_get_le32(wide + 8 + 16 * n + 12) + 24);
    ck_assert_int_eq(codec_pixnet_merge(narrow, nl, wide, wl, &mb, &ml), 0);
    ck_assert_uint_eq(ml, nl + wl - CODEC_PIXNET_HEADER + 8 * 4);
    ck_assert_uint_eq(mb[4], 2);
    struct codec_image *img[3] = {make(1, 90, 70, 8, 8, 0, 33), make(1, 90, 70, 16, 12, 0, 34),
                                  make(1, 90, 70, 16, 7, 0, 35)}; /* 12 bits; 16 with 128 values */
    const uint8_t *alone[3] = {narrow, wide, narrow};
    const size_t alone_len[3] = {nl, wl, nl};
    for (int i = 0; i < 3; i++) {
        size_t a = 0, b = 0, c = 0;
        uint8_t *sa = code_with(alone[i], alone_len[i], img[i], &a);
        uint8_t *sb = code_with(mb, ml, img[i], &b);
        uint8_t *sc = code_with(alone[i] == narrow ? wide : narrow, i == 1 ? nl : wl, img[i], &c);
        ck_assert_uint_eq(a, b);
        ck_assert_mem_eq(sa, sb, a);
        ck_assert(c != a || memcmp(sc, sa, a) != 0); /* the other set codes differently */
        free(sa);
        free(sb);
        free(sc);
        drop(img[i]);
    }
    uint8_t *mm = NULL;
    size_t mml = 0;
    ck_assert_int_eq(codec_pixnet_merge(mb, ml, wide, wl, &mm, &mml), -EINVAL);
    ck_assert_int_eq(codec_pixnet_merge(narrow, nl - 1, wide, wl, &mm, &mml), -EINVAL);
    uint8_t *other = malloc(wl);
    memcpy(other, wide, wl);
    other[6] = (uint8_t)(other[6] - 1); /* contexts */
    ck_assert_int_eq(codec_pixnet_merge(narrow, nl, other, wl, &mm, &mml), -EINVAL);
    struct codec_pixnet *pn = NULL;
    mb[5] = 2;
    ck_assert_int_eq(codec_pixnet_load(mb, ml, &pn), -EINVAL);
    mb[5] = 4;
    ck_assert_int_eq(codec_pixnet_load(mb, ml - 1, &pn), -EINVAL);
    ck_assert_int_eq(codec_pixnet_load(mb, 8 + 16 * 3, &pn), -EINVAL);
    narrow[5] = 4; /* a version 1 file of four networks */
    ck_assert_int_eq(codec_pixnet_load(narrow, nl, &pn), -EINVAL);
    free(other);
    free(mb);
    free(narrow);
    free(wide);
}
END_TEST

/* The stream does not depend on the coder's or OpenBLAS's thread count. */
START_TEST(threads_identical)
{
    size_t ml = 0;
    uint8_t *mb = untrained(&ml, 10);
    struct codec_pixnet *pn = load(mb, ml);
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    struct codec_image *img = make(1, 200, 190, 8, 8, 0, 11);
    uint8_t *ref = NULL;
    size_t rl = 0;
    int blas = nn_threads();
    for (int bt = 1; bt <= 2; bt++) {
        nn_set_threads(bt);
        for (unsigned th = 1; th <= 2; th++) {
            size_t sl;
            uint8_t *s = round_trip(img, p, 0, th, &sl);
            if (!ref) {
                ref = s;
                rl = sl;
                continue;
            }
            ck_assert_uint_eq(sl, rl);
            ck_assert_mem_eq(s, ref, rl);
            free(s);
        }
    }
    nn_set_threads(blas);
    free(ref);
    drop(img);
    codec_pixnet_free(pn);
    free(mb);
}
END_TEST

/* FNV-1a, 64 bits: a short fingerprint of a stream. */
static uint64_t fnv64(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/*
 * Every instruction set of the vectorised loops gives the same stream, and the one recorded
 * here (fingerprints of version 2 streams, 64-row stripes): smooth and noisy images, 8, 12 and
 * 16 bits, where u takes values up to 2^16. The 8-bit cases are coded by the shipped model's
 * set 0, the networks of earlier releases, whose version 1 streams (the golden containers,
 * test_golden) still decode exactly; the 16-bit ones by its set 1.
 */
START_TEST(isa_identical)
{
    static const struct {
        uint32_t c, h, w, bits, sig;
        int noise;
        uint64_t seed;
        size_t len;
        uint64_t fp;
    } cases[] = {
        {1, 131, 97, 8, 8, 0, 21, 7040, 0x27c084841e38ea5dull},
        {1, 70, 90, 16, 16, 1, 22, 12686, 0x6a34e9dcfef8c373ull},
        {2, 77, 150, 16, 12, 0, 23, 10516, 0x001d8a4030a02a4cull},
        {1, 64, 64, 8, 8, 1, 24, 4156, 0xe0a5dc27299859b0ull},
    };
    size_t ml = 0;
    const uint8_t *mb = codec_pixnet_default_bytes(&ml);
    if (!mb || ml == 0)
        return; /* no shipped model in this build */
    struct codec_pixnet *pn = load(mb, ml);
    const struct codec_pixcode_predictor *p = codec_pixnet_predictor(pn);
    unsigned ran = 0;
    for (int isa = CODEC_PIXNET_ISA_C; isa <= CODEC_PIXNET_ISA_AVX512; isa++) {
        int rc = codec_pixnet_set_isa(pn, (enum codec_pixnet_isa)isa);
        if (rc == -ENOTSUP)
            continue;
        ck_assert_int_eq(rc, 0);
        ran++;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct codec_image *img = make(cases[i].c, cases[i].h, cases[i].w, cases[i].bits,
                                           cases[i].sig, cases[i].noise, cases[i].seed);
            size_t sl;
            uint8_t *s = round_trip(img, p, 64, 1, &sl);
            ck_assert_msg(sl == cases[i].len && fnv64(s, sl) == cases[i].fp,
                          "isa %d, case %zu: %zu bytes, fingerprint %016llx", isa, i, sl,
                          (unsigned long long)fnv64(s, sl));
            free(s);
            drop(img);
        }
    }
    ck_assert_uint_ge(ran, 1);
    ck_assert_int_eq(codec_pixnet_set_isa(pn, (enum codec_pixnet_isa)9), -ENOTSUP);
    codec_pixnet_free(pn);
}
END_TEST

/* The features take floor(2^20 / u) as a float division truncated (pixnet.c, recip20): exact
 * for every u the features can make (u < 2^17 with 16-bit samples; checked to 2^20). */
START_TEST(float_reciprocal_exact)
{
    for (int32_t u = 1; u <= (1 << 20); u++)
        ck_assert_int_eq((int32_t)((float)(1 << 20) / (float)u), (1 << 20) / u);
}
END_TEST

START_TEST(malformed_models)
{
    size_t ml = 0;
    uint8_t *mb = untrained(&ml, 12);
    struct codec_pixnet *pn = NULL;
    /* every truncation and extension is refused */
    for (size_t n = 0; n < ml; n += n < 64 ? 1 : 7)
        ck_assert_int_ne(codec_pixnet_load(mb, n, &pn), 0);
    uint8_t *big = malloc(ml + 1);
    memcpy(big, mb, ml);
    big[ml] = 0;
    ck_assert_int_eq(codec_pixnet_load(big, ml + 1, &pn), -EINVAL);
    free(big);
    /* header fields */
    static const size_t fields[] = {0, 4, 5, 6, 7, 12, 13, 14, 15, 11, 40, 43};
    ck_assert_uint_gt(ml, 43);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint8_t *b = malloc(ml);
        memcpy(b, mb, ml);
        b[fields[i]] ^= 0x80;
        ck_assert_int_ne(codec_pixnet_load(b, ml, &pn), 0);
        free(b);
    }
    /* any flipped byte: refused or a model that still codes losslessly, never a crash */
    struct codec_image *img = make(1, 40, 33, 8, 8, 0, 3);
    rng_state = 77;
    for (int k = 0; k < 300; k++) {
        uint8_t *b = malloc(ml);
        memcpy(b, mb, ml);
        b[rnd() % ml] ^= (uint8_t)(1u << (rnd() % 8));
        struct codec_pixnet *q = NULL;
        if (codec_pixnet_load(b, ml, &q) == 0) {
            size_t sl;
            free(round_trip(img, codec_pixnet_predictor(q), 0, 1, &sl));
            codec_pixnet_free(q);
        }
        free(b);
    }
    drop(img);
    ck_assert_int_eq(codec_pixnet_load(NULL, 0, &pn), -EINVAL);
    free(mb);
}
END_TEST

/*
 * Never larger: with predictor 0 as the alternative (pixcode.h, alt; what the pipeline's
 * neural mode does), no image the test data holds (PNG, PNM, DICOM) gets a stream more than
 * 0.5% larger than predictor 0 alone gives it, and every stream decodes exactly.
 */
struct never_larger {
    const struct codec_pixcode_predictor *p;
    int neural;
};

static void never_larger_one(const char *name, struct codec_image *img, void *arg)
{
    struct never_larger *nl = arg;
    size_t s0 = 0, s1 = 0;
    uint8_t *z = NULL;
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &z, &s0), 0);
    free(z);
    struct codec_pixcode_opts o = {.threads = 2, .pred = nl->p, .alt = &codec_pixcode_fixed};
    ck_assert_int_eq(codec_pixcode_encode(img, &o, &z, &s1), 0);
    struct codec_pixcode_info info;
    ck_assert_int_eq(codec_pixcode_info(z, s1, &info), 0);
    struct codec_image back = *img;
    back.planes = malloc(img->planes_bytes);
    ck_assert_int_eq(codec_pixcode_decode(z, s1, &back, nl->p, 2), 0);
    ck_assert_mem_eq(back.planes, img->planes, img->planes_bytes);
    free(back.planes);
    printf("pixnet: %-40s p0 %zu, chosen p%u %zu bytes\n", name, s0, (unsigned)info.predictor, s1);
    ck_assert_msg(s1 * 1000 <= s0 * 1005, "%s: %zu bytes against %zu with predictor 0", name, s1,
                  s0);
    if (img->height <= 3 * 64) { /* too short for a sample: both code it, the smaller is kept */
        size_t sn = 0;
        uint8_t *zn = NULL;
        o.alt = NULL;
        ck_assert_int_eq(codec_pixcode_encode(img, &o, &zn, &sn), 0);
        free(zn);
        ck_assert_msg(s1 == (sn < s0 ? sn : s0), "%s: %zu bytes, not the smaller of %zu and %zu",
                      name, s1, s0, sn);
    }
    nl->neural += info.predictor == CODEC_PIXNET_ID;
    free(z);
}

START_TEST(never_larger)
{
    size_t ml = 0;
    const uint8_t *def = codec_pixnet_default_bytes(&ml);
    ck_assert_uint_gt(ml, 0);
    struct codec_pixnet *pn = load(def, ml);
    struct never_larger nl = {codec_pixnet_predictor(pn), 0};
    ck_assert_int_ge(unit_each_image("", never_larger_one, &nl), 10);
    ck_assert_int_ge(nl.neural, 1); /* the network does code images */
    codec_pixnet_free(pn);
}
END_TEST

/* The test images: exact round trips with the shipped model (or an untrained one), and the
 * median bits per sample of predictors 0 and 1. */
struct sizes {
    const struct codec_pixcode_predictor *p;
    double b0[64], b1[64];
    int n;
};

static void sizes_one(const char *name, struct codec_image *img, void *arg)
{
    struct sizes *z = arg;
    if (z->n >= 64)
        return;
    size_t s0 = 0, s1 = 0;
    uint8_t *st = NULL;
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &st, &s0), 0);
    free(st);
    free(round_trip(img, z->p, 0, 2, &s1));
    double ns = (double)img->channels * img->frames * img->height * img->width;
    z->b0[z->n] = 8.0 * (double)s0 / ns;
    z->b1[z->n] = 8.0 * (double)s1 / ns;
    printf("pixnet: %-40s p0 %.3f p1 %.3f bits/sample\n", name, z->b0[z->n], z->b1[z->n]);
    z->n++;
}

START_TEST(test_data)
{
    size_t ml = 0;
    const uint8_t *def = codec_pixnet_default_bytes(&ml);
    uint8_t *mb = NULL;
    int shipped = ml > 0;
    if (!shipped)
        def = mb = untrained(&ml, 13);
    struct codec_pixnet *pn = load(def, ml);
    struct sizes *z = calloc(1, sizeof(*z));
    ck_assert_ptr_nonnull(z);
    z->p = codec_pixnet_predictor(pn);
    unit_each_image(".png", sizes_one, z);
    int n = z->n;
    double *b0 = z->b0, *b1 = z->b1;
    ck_assert_int_ge(n, 4);
    /* medians (insertion sort: a handful of values) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && b0[j] < b0[j - 1]; j--) {
            double t = b0[j];
            b0[j] = b0[j - 1];
            b0[j - 1] = t;
        }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && b1[j] < b1[j - 1]; j--) {
            double t = b1[j];
            b1[j] = b1[j - 1];
            b1[j - 1] = t;
        }
    double m0 = n % 2 ? b0[n / 2] : (b0[n / 2 - 1] + b0[n / 2]) / 2;
    double m1 = n % 2 ? b1[n / 2] : (b1[n / 2 - 1] + b1[n / 2]) / 2;
    printf("pixnet: median over %d PNGs: predictor 0 %.3f, predictor 1 (%s model) %.3f\n", n, m0,
           shipped ? "shipped" : "untrained", m1);
    /* a shipped model must not make files bigger (DESIGN.md: only a predictor that pays) */
    if (shipped)
        ck_assert_msg(m1 < m0, "predictor 1 median %.3f not below predictor 0's %.3f", m1, m0);
    free(z);
    codec_pixnet_free(pn);
    free(mb);
}
END_TEST

START_TEST(features_log)
{
    /* L(u) = floor(16 log2 u) where four mantissa bits suffice (pixnet.h) */
    ck_assert_int_eq(codec_pixnet_log16(1), 0);
    ck_assert_int_eq(codec_pixnet_log16(2), 16);
    ck_assert_int_eq(codec_pixnet_log16(3), 25);
    ck_assert_int_eq(codec_pixnet_log16(16), 64);
    ck_assert_int_eq(codec_pixnet_log16(17), 65);
    ck_assert_int_eq(codec_pixnet_log16(1u << 20), 320);
}
END_TEST

/* The built-in bytes are the shipped file (the build names it as a dependency of the .incbin). */
START_TEST(default_is_file)
{
    const char *dir = getenv("IMGC_TESTDATA");
    ck_assert_msg(dir != NULL, "IMGC_TESTDATA not set");
    char path[4096];
    snprintf(path, sizeof(path), "%s/../../models/coder-default.pixnet", dir);
    size_t fl = 0, bl = 0;
    unsigned char *f = unit_read_file(path, &fl);
    const uint8_t *b = codec_pixnet_default_bytes(&bl);
    ck_assert_uint_eq(bl, fl);
    if (fl)
        ck_assert_mem_eq(b, f, fl);
    free(f);
}
END_TEST

static Suite *pixnet_suite(void)
{
    Suite *s = suite_create("codec_pixnet");
    TCase *tc = tcase_create("round_trips");
    tcase_add_test(tc, features_log);
    tcase_add_test(tc, float_reciprocal_exact);
    tcase_add_test(tc, isa_identical);
    tcase_add_test(tc, default_is_file);
    tcase_add_test(tc, random_model_round_trips);
    tcase_add_test(tc, stripe_heights);
    tcase_add_test(tc, stripes_decode_alone);
    tcase_add_test(tc, threads_identical);
    tcase_add_test(tc, two_sets);
    tcase_add_test(tc, test_data);
    tcase_add_test(tc, never_larger);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_test(tc, malformed_models);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(pixnet_suite)
