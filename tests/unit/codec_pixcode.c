// SPDX-License-Identifier: MIT
/*
 * Unit tests of the pixel coder (codec/pixel/pixcode.h) and its rANS layer (codec/pixel/rans.h):
 * exact round trips of the test images and of synthetic ones at every awkward size and depth, each
 * stripe decoded alone, and corrupt input (truncations, byte flips, bad tables) refused or at
 * worst decoded to other samples, never a crash or a read outside the buffer.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/pixel/pixcode.h"
#include "codec/pixel/rans.h"
#include "tests/unit/codec_images.h"
#include "tests/unit/unit.h"

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* ---- rANS ------------------------------------------------------------------------------- */

START_TEST(rans_normalize_invariants)
{
    rng_state = 1;
    for (int iter = 0; iter < 2000; iter++) {
        uint32_t n = 1 + rnd() % CODEC_RANS_MAX_SYMS, counts[CODEC_RANS_MAX_SYMS];
        for (uint32_t s = 0; s < n; s++) {
            uint32_t r = rnd() % 4;
            counts[s] = r == 0 ? 0 : r == 1 ? 1 + rnd() % 3 : rnd() % (1u << (rnd() % 24));
        }
        struct codec_rans_table t;
        enum codec_rans_form form = iter % 2 ? CODEC_RANS_FORM_PLAIN : CODEC_RANS_FORM_DELTA;
        ck_assert_int_eq(codec_rans_normalize(counts, n, form, &t), 0);
        uint32_t last = 0, sum = 0;
        for (uint32_t s = 0; s < n; s++)
            if (counts[s])
                last = s + 1;
        ck_assert_uint_eq(t.nsym, last);
        for (uint32_t s = 0; s < t.nsym; s++) {
            if (counts[s])
                ck_assert_uint_ge(t.freq[s], 1);
            else
                ck_assert_uint_eq(t.freq[s], 0);
            ck_assert_uint_eq(t.cum[s], sum);
            sum += t.freq[s];
        }
        if (t.nsym)
            ck_assert_uint_eq(sum, CODEC_RANS_PROB_SCALE);
    }
    uint32_t too_many[CODEC_RANS_MAX_SYMS + 1] = {1};
    struct codec_rans_table t;
    ck_assert_int_eq(
        codec_rans_normalize(too_many, CODEC_RANS_MAX_SYMS + 1, CODEC_RANS_FORM_DELTA, &t),
        -EINVAL);
}
END_TEST

START_TEST(rans_round_trip)
{
    rng_state = 2;
    for (int iter = 0; iter < 300; iter++) {
        uint32_t ntab = 1 + rnd() % 8, nsym = 1 + rnd() % CODEC_RANS_MAX_SYMS;
        size_t n = rnd() % 5000;
        uint8_t *sym = malloc(n + 1), *ctx = malloc(n + 1);
        uint32_t counts[8][CODEC_RANS_MAX_SYMS] = {{0}};
        /* skewed random symbols: mostly small, some anywhere in the alphabet */
        for (size_t i = 0; i < n; i++) {
            ctx[i] = (uint8_t)(rnd() % ntab);
            uint32_t s = rnd() % 8 ? (rnd() % 4) * (rnd() % 3) : rnd();
            sym[i] = (uint8_t)(s % nsym);
            counts[ctx[i]][sym[i]]++;
        }
        struct codec_rans_table tabs[8], back[8];
        enum codec_rans_form form = iter % 2 ? CODEC_RANS_FORM_PLAIN : CODEC_RANS_FORM_DELTA;
        size_t bits = 0;
        for (uint32_t c = 0; c < ntab; c++) {
            ck_assert_int_eq(codec_rans_normalize(counts[c], nsym, form, &tabs[c]), 0);
            bits += codec_rans_table_bits(&tabs[c], form);
        }
        uint8_t tb[8 * CODEC_RANS_TABLE_MAX_BYTES];
        ssize_t tl = codec_rans_tables_write(tabs, ntab, form, tb, sizeof(tb));
        ck_assert_int_eq(tl, (ssize_t)((bits + 7) / 8)); /* the size the encoder counted */
        ck_assert_int_eq(codec_rans_tables_read(tb, (size_t)tl, form, back, ntab), tl);
        struct codec_rans_dtable *dt = malloc(ntab * sizeof(*dt));
        for (uint32_t c = 0; c < ntab; c++) {
            ck_assert_uint_eq(back[c].nsym, tabs[c].nsym);
            ck_assert_mem_eq(back[c].freq, tabs[c].freq, tabs[c].nsym * sizeof(uint16_t));
            codec_rans_dtable_init(&dt[c], &back[c]);
        }
        size_t cap = CODEC_RANS_ENC_BOUND(n), len = 0;
        uint8_t *out = malloc(cap);
        ck_assert_int_eq(codec_rans_encode(sym, ctx, n, tabs, ntab, out, cap, &len), 0);
        struct codec_rans_dec d;
        ck_assert_int_eq(codec_rans_dec_init(&d, out, len), 0);
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(codec_rans_dec_get(&d, &dt[ctx[i]], i & 1), sym[i]);
        ck_assert_int_eq(codec_rans_dec_finish(&d), 0);
        /* one byte short: refused */
        if (len > 8) {
            ck_assert_int_eq(codec_rans_dec_init(&d, out, len - 1), 0);
            for (size_t i = 0; i < n; i++)
                codec_rans_dec_get(&d, &dt[ctx[i]], i & 1);
            ck_assert_int_eq(codec_rans_dec_finish(&d), -EINVAL);
        }
        free(out);
        free(dt);
        free(sym);
        free(ctx);
    }
}
END_TEST

/* Bits least significant first: fields (value, width) in order, into out; returns bytes. */
static size_t put_bits(uint8_t *out, const unsigned (*f)[2], size_t nf)
{
    size_t pos = 0;
    for (size_t i = 0; i < nf; i++)
        for (unsigned b = 0; b < f[i][1]; b++, pos++) {
            if (pos % 8 == 0)
                out[pos / 8] = 0;
            out[pos / 8] |= (uint8_t)(((f[i][0] >> b) & 1u) << (pos % 8));
        }
    return (pos + 7) / 8;
}

START_TEST(rans_delta_classes)
{
    /* 3 symbols, big 0, precision 0; symbol 1 of class 1 (4 bits), symbol 2 of class 1 again
     * ("0": the same as the one before): frequencies 4094, 1, 1 */
    const unsigned same[][2] = {{3, 8}, {0, 7}, {0, 4}, {1, 4}, {0, 1}};
    uint8_t b[8];
    struct codec_rans_table t[1];
    size_t n = put_bits(b, same, 5);
    ck_assert_int_eq(codec_rans_tables_read(b, n, CODEC_RANS_FORM_DELTA, t, 1), (ssize_t)n);
    ck_assert_uint_eq(t[0].freq[0], CODEC_RANS_PROB_SCALE - 2);
    ck_assert_uint_eq(t[0].freq[2], 1);
    /* symbol 2 one class up ("1 0 0"): frequency 2 */
    const unsigned up[][2] = {{3, 8}, {0, 7}, {0, 4}, {1, 4}, {1, 1}, {0, 1}, {0, 1}};
    n = put_bits(b, up, 7);
    ck_assert_int_eq(codec_rans_tables_read(b, n, CODEC_RANS_FORM_DELTA, t, 1), (ssize_t)n);
    ck_assert_uint_eq(t[0].freq[2], 2);
    /* the same table with class 1 spelt out ("1 1" and 4 bits): not its one form */
    const unsigned spelt[][2] = {{3, 8}, {0, 7}, {0, 4}, {1, 4}, {3, 2}, {1, 4}};
    n = put_bits(b, spelt, 6);
    ck_assert_int_eq(codec_rans_tables_read(b, n, CODEC_RANS_FORM_DELTA, t, 1), -EINVAL);
    /* class 0 then one down ("1 0 1"): below 0 */
    const unsigned below[][2] = {{3, 8}, {1, 7}, {0, 4}, {0, 4}, {1, 1}, {0, 1}, {1, 1}};
    n = put_bits(b, below, 7);
    ck_assert_int_eq(codec_rans_tables_read(b, n, CODEC_RANS_FORM_DELTA, t, 1), -EINVAL);
    /* an unknown form */
    ck_assert_int_eq(codec_rans_tables_read(b, n, (enum codec_rans_form)3, t, 1), -EINVAL);
    ck_assert_int_eq(codec_rans_tables_write(t, 1, (enum codec_rans_form)0, b, sizeof(b)), -EINVAL);
}
END_TEST

START_TEST(rans_bad_tables)
{
    const enum codec_rans_form plain = CODEC_RANS_FORM_PLAIN;
    /* nsym 2, big 0, precision 0, then class 13 (above 12): refused */
    uint8_t b[3] = {2, 0, 13 << 3};
    struct codec_rans_table t[2];
    ck_assert_int_eq(codec_rans_tables_read(b, sizeof(b), plain, t, 1), -EINVAL);
    /* a table whose frequencies leave nothing for its big symbol */
    struct codec_rans_table x = {.nsym = 3, .big = 0, .prec = 11};
    x.freq[0] = 1;
    x.freq[1] = 2048;
    x.freq[2] = 2048;
    uint8_t o[64];
    ssize_t l = codec_rans_tables_write(&x, 1, plain, o, sizeof(o));
    ck_assert_int_gt(l, 0);
    ck_assert_int_eq(codec_rans_tables_read(o, (size_t)l, plain, t, 1), -EINVAL);
    /* big symbol index out of range; too few bytes; non-zero padding */
    uint8_t c[4] = {2, 5, 0, 0};
    ck_assert_int_eq(codec_rans_tables_read(c, sizeof(c), plain, t, 1), -EINVAL);
    uint8_t one = 40;
    ck_assert_int_eq(codec_rans_tables_read(&one, 1, plain, t, 1), -EINVAL);
    uint8_t pad[3] = {2, 1, 0x08}; /* 23 bits: big 1, symbol 0 of class 1 (frequency 1) */
    ck_assert_int_eq(codec_rans_tables_read(pad, 3, plain, t, 1), 3);
    ck_assert_uint_eq(t[0].freq[0], 1);
    ck_assert_uint_eq(t[0].freq[1], CODEC_RANS_PROB_SCALE - 1);
    pad[1] = 0;
    pad[2] = 0; /* symbol 1 (last) with no frequency: not the one form of the table */
    ck_assert_int_eq(codec_rans_tables_read(pad, 3, plain, t, 1), -EINVAL);
    pad[1] = 1;
    pad[2] = 0x88; /* a padding bit set */
    ck_assert_int_eq(codec_rans_tables_read(pad, 3, plain, t, 1), -EINVAL);
    /* random garbage: parsed or refused, and what parses is a valid table */
    rng_state = 3;
    for (int i = 0; i < 20000; i++) {
        uint8_t g[48];
        size_t gl = 1 + rnd() % sizeof(g);
        for (size_t k = 0; k < gl; k++)
            g[k] = (uint8_t)rnd();
        if (rnd() % 2)
            g[0] = (uint8_t)(rnd() % 16);
        enum codec_rans_form form = i % 2 ? CODEC_RANS_FORM_PLAIN : CODEC_RANS_FORM_DELTA;
        ssize_t r = codec_rans_tables_read(g, gl, form, t, 2);
        if (r < 0) {
            ck_assert_int_eq(r, -EINVAL);
            continue;
        }
        ck_assert_uint_le((size_t)r, gl);
        for (int k = 0; k < 2; k++) {
            if (!t[k].nsym)
                continue;
            uint32_t sum = 0;
            for (uint32_t s = 0; s < t[k].nsym; s++)
                sum += t[k].freq[s];
            ck_assert_uint_eq(sum, CODEC_RANS_PROB_SCALE);
        }
    }
    /* a bad state */
    uint8_t st[8] = {0, 0, 0, 0, 0, 0, 0x80, 0};
    struct codec_rans_dec d;
    ck_assert_int_eq(codec_rans_dec_init(&d, st, sizeof(st)), -EINVAL);
    ck_assert_int_eq(codec_rans_dec_init(&d, st, 7), -EINVAL);
}
END_TEST

/* ---- images ------------------------------------------------------------------------------ */

enum kind { SMOOTH, NOISE, CONSTANT, SPARSE };

static struct codec_image *make(uint32_t c, uint32_t f, uint32_t h, uint32_t w, uint32_t bits,
                                uint32_t sig, enum kind kind, uint64_t seed)
{
    struct codec_image *img = calloc(1, sizeof(*img));
    ck_assert_ptr_nonnull(img);
    *img = (struct codec_image){CODEC_FORMAT_NONE, c, f, h, w, bits, sig, NULL, 0};
    size_t n = (size_t)c * f * h * w;
    img->planes_bytes = n * (bits / 8);
    img->planes = malloc(img->planes_bytes);
    ck_assert_ptr_nonnull(img->planes);
    rng_state = seed;
    uint32_t maxv = (1u << sig) - 1, k = rnd() % 97;
    for (size_t i = 0; i < n; i++) {
        size_t x = i % w, y = (i / w) % h, p = i / ((size_t)w * h);
        uint32_t v;
        switch (kind) {
        case SMOOTH:
            v = (uint32_t)((x * 3 + y * 5 + p * 11 + (x * y) / 7) % (maxv + 1));
            if (rnd() % 4 == 0) {
                uint32_t r = rnd() % 3;
                v = v + r > maxv ? maxv : v + r;
            }
            break;
        case NOISE:
            v = rnd() & maxv;
            break;
        case CONSTANT:
            v = k & maxv;
            break;
        default: /* a few hundred sparse levels, as in MRI slices */
            v = ((uint32_t)((x + y) % 40 + (rnd() % 3)) * 37 + p) & maxv;
            break;
        }
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

/* Encode with opts, decode with 1 and 2 threads, compare; returns the stream (caller frees). */
static uint8_t *round_trip(const struct codec_image *img, const struct codec_pixcode_opts *o,
                           size_t *len)
{
    uint8_t *s = NULL;
    size_t sl = 0;
    ck_assert_int_eq(codec_pixcode_encode(img, o, &s, &sl), 0);
    struct codec_pixcode_info info;
    ck_assert_int_eq(codec_pixcode_info(s, sl, &info), 0);
    ck_assert_uint_eq(info.planes_bytes, img->planes_bytes);
    ck_assert_uint_eq(info.width, img->width);
    for (unsigned th = 1; th <= 2; th++) {
        struct codec_image back = *img;
        back.planes = malloc(img->planes_bytes);
        memset(back.planes, 0xa5, img->planes_bytes);
        ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, th), 0);
        ck_assert_mem_eq(back.planes, img->planes, img->planes_bytes);
        free(back.planes);
    }
    *len = sl;
    return s;
}

START_TEST(synthetic_round_trips)
{
    static const uint32_t dims[][2] = {{1, 1},   {1, 37},  {41, 1},  {2, 2},
                                       {97, 89}, {3, 130}, {64, 64}, {65, 7}};
    static const uint32_t depth[][2] = {{8, 8},   {8, 1},  {8, 5}, {16, 16},
                                        {16, 12}, {16, 9}, {16, 3}};
    uint64_t seed = 10;
    for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
        for (size_t b = 0; b < sizeof(depth) / sizeof(depth[0]); b++)
            for (int kind = SMOOTH; kind <= SPARSE; kind++) {
                uint32_t c = 1 + (uint32_t)(seed % 4), f = seed % 3 == 0 ? 3 : 1;
                struct codec_image *img = make(c, f, dims[d][0], dims[d][1], depth[b][0],
                                               depth[b][1], (enum kind)kind, seed++);
                struct codec_pixcode_opts o = {.stripe_rows = (uint32_t)(seed % 3 == 0   ? 1
                                                                         : seed % 3 == 1 ? 16
                                                                                         : 0),
                                               .threads = 1 + (unsigned)(seed % 2),
                                               .pack = (enum codec_pixcode_pack)(seed % 4)};
                size_t len;
                free(round_trip(img, &o, &len));
                drop(img);
            }
}
END_TEST

START_TEST(sizes_make_sense)
{
    /* a constant plane costs next to nothing; noise costs about its bits; packing pays on
     * sparse levels */
    size_t len;
    struct codec_image *img = make(1, 1, 256, 256, 16, 16, CONSTANT, 5);
    free(round_trip(img, NULL, &len));
    ck_assert_uint_lt(len, 80);
    drop(img);
    img = make(1, 1, 256, 256, 8, 8, NOISE, 6);
    free(round_trip(img, NULL, &len));
    ck_assert_uint_le(len, 256 * 256 * 102 / 100);
    drop(img);
    img = make(1, 1, 128, 128, 16, 12, SPARSE, 7);
    size_t packed, range;
    struct codec_pixcode_opts o = {.pack = CODEC_PIXCODE_PACK_RANGE};
    free(round_trip(img, NULL, &packed));
    free(round_trip(img, &o, &range));
    ck_assert_uint_lt(packed, range);
    drop(img);
}
END_TEST

/* An image of four stripes of at most 64 rows or more has its packing chosen on a quarter of
 * them: the choice follows
 * the image (the value set on sparse levels, within 1% of the better of the two forced
 * packings on an image with a single gap), and every stream round-trips. */
START_TEST(packing_chosen_on_a_sample)
{
    for (int kind = SMOOTH; kind <= SPARSE; kind += SPARSE - SMOOTH) {
        struct codec_image *img = make(1, 1, 300, 200, 16, 12, (enum kind)kind, 8);
        if (kind == SMOOTH) /* one value missing: both packings are tried */
            for (size_t i = 0; i < 300 * 200; i++)
                if (((uint16_t *)img->planes)[i] == 100)
                    ((uint16_t *)img->planes)[i] = 101;
        size_t aut, range, set;
        struct codec_pixcode_opts o = {.stripe_rows = 32, .threads = 2};
        free(round_trip(img, &o, &aut));
        o.pack = CODEC_PIXCODE_PACK_RANGE;
        free(round_trip(img, &o, &range));
        o.pack = CODEC_PIXCODE_PACK_SET;
        free(round_trip(img, &o, &set));
        size_t best = range < set ? range : set;
        ck_assert_uint_le(aut, best + best / 100);
        if (kind == SPARSE)
            ck_assert_uint_lt(aut, range);
        drop(img);
    }
}
END_TEST

START_TEST(stripes_decode_alone)
{
    struct codec_image *img = make(2, 2, 100, 33, 16, 12, SMOOTH, 9);
    struct codec_pixcode_opts o = {.stripe_rows = 16};
    size_t sl;
    uint8_t *s = round_trip(img, &o, &sl);
    struct codec_pixcode_info info;
    ck_assert_int_eq(codec_pixcode_info(s, sl, &info), 0);
    ck_assert_uint_eq(info.stripes, 7);
    uint16_t rows[16 * 33];
    for (uint32_t p = 0; p < 4; p++)
        for (uint32_t j = 0; j < info.stripes; j++) {
            uint32_t nrows = j + 1 < info.stripes ? 16 : 100 - 16 * 6;
            memset(rows, 0, sizeof(rows));
            ck_assert_int_eq(codec_pixcode_decode_stripe(s, sl, NULL, p, j, rows, nrows * 33 * 2),
                             0);
            const uint16_t *want =
                (const uint16_t *)img->planes + (size_t)p * 100 * 33 + (size_t)j * 16 * 33;
            ck_assert_mem_eq(rows, want, (size_t)nrows * 33 * 2);
            ck_assert_int_eq(
                codec_pixcode_decode_stripe(s, sl, NULL, p, j, rows, nrows * 33 * 2 - 1), -EINVAL);
        }
    ck_assert_int_eq(codec_pixcode_decode_stripe(s, sl, NULL, 4, 0, rows, sizeof(rows)), -EINVAL);
    ck_assert_int_eq(codec_pixcode_decode_stripe(s, sl, NULL, 0, 7, rows, sizeof(rows)), -EINVAL);
    free(s);
    drop(img);
}
END_TEST

START_TEST(bad_arguments)
{
    struct codec_image *img = make(1, 1, 8, 8, 8, 6, SMOOTH, 11);
    uint8_t *s = NULL;
    size_t sl = 0;
    ck_assert_int_eq(codec_pixcode_encode(NULL, NULL, &s, &sl), -EINVAL);
    ((uint8_t *)img->planes)[5] = 64; /* above 6 significant bits */
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &s, &sl), -EINVAL);
    ((uint8_t *)img->planes)[5] = 63;
    img->planes_bytes--;
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &s, &sl), -EINVAL);
    img->planes_bytes++;
    img->bits = 12;
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &s, &sl), -EINVAL);
    img->bits = 8;
    ck_assert_int_eq(codec_pixcode_encode(img, NULL, &s, &sl), 0);
    /* geometry mismatch on decode */
    struct codec_image back = *img;
    back.planes = malloc(img->planes_bytes);
    back.significant = 7;
    ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, 1), -EINVAL);
    back.significant = 6;
    back.width = 4;
    back.height = 16;
    ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, 1), -EINVAL);
    void *planes = back.planes;
    back = *img;
    back.planes = planes;
    ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, 1), 0);
    /* an unknown predictor id */
    s[5] = 7;
    ck_assert_int_eq(codec_pixcode_decode(s, sl, &back, NULL, 1), -EINVAL);
    s[5] = 0;
    /* trailing bytes */
    uint8_t *t = malloc(sl + 1);
    memcpy(t, s, sl);
    t[sl] = 0;
    ck_assert_int_eq(codec_pixcode_decode(t, sl + 1, &back, NULL, 1), -EINVAL);
    free(t);
    free(back.planes);
    free(s);
    drop(img);
}
END_TEST

/* Decode a damaged stream: refused, or (rarely) decoded to some samples; never a crash. */
static int try_decode(const uint8_t *s, size_t sl, const struct codec_image *img)
{
    struct codec_image back = *img;
    back.planes = malloc(img->planes_bytes);
    int rc = codec_pixcode_decode(s, sl, &back, NULL, 1);
    ck_assert(rc == 0 || rc == -EINVAL);
    if (rc == 0 && memcmp(back.planes, img->planes, img->planes_bytes) != 0)
        rc = 1; /* decoded to other samples: the caller's comparison reports it */
    free(back.planes);
    return rc;
}

START_TEST(damaged_streams)
{
    struct codec_image *img = make(2, 1, 23, 19, 16, 12, SPARSE, 12);
    struct codec_pixcode_opts o = {.stripe_rows = 8, .pack = CODEC_PIXCODE_PACK_SET};
    size_t sl;
    uint8_t *s = round_trip(img, &o, &sl);
    /* every truncation is refused */
    for (size_t l = 0; l < sl; l++) {
        uint8_t *t = malloc(l ? l : 1);
        memcpy(t, s, l);
        ck_assert_int_eq(try_decode(t, l, img), -EINVAL);
        free(t);
    }
    /* every single-bit flip: refused or decoded different; count what slipped through */
    size_t refused = 0, different = 0, same = 0;
    for (size_t i = 0; i < sl; i++)
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *t = malloc(sl);
            memcpy(t, s, sl);
            t[i] ^= (uint8_t)(1u << bit);
            int rc = try_decode(t, sl, img);
            refused += rc == -EINVAL;
            different += rc == 1;
            same += rc == 0;

            free(t);
        }
    printf("pixcode: %zu-byte stream, bit flips: %zu refused, %zu decoded different, %zu same\n",
           sl, refused, different, same);
    ck_assert_uint_eq(same, 0);
    ck_assert_uint_gt(refused, (sl * 8) / 2);
    free(s);
    drop(img);
}
END_TEST

/* Every image of the test data that splits: exact round trips, default and odd settings. */
static void data_round_trip(const char *name, struct codec_image *img, void *arg)
{
    (void)arg;
    size_t sl;
    free(round_trip(img, NULL, &sl));
    double bps =
        8.0 * (double)sl / ((double)img->channels * img->frames * img->height * img->width);
    printf("pixcode: %-40s %ux%ux%ux%u %2u-bit: %.3f bits/sample\n", name, img->channels,
           img->frames, img->height, img->width, img->significant, bps);
    if (!unit_quick()) {
        struct codec_pixcode_opts o = {
            .stripe_rows = 5, .threads = 2, .pack = CODEC_PIXCODE_PACK_NONE};
        free(round_trip(img, &o, &sl));
    }
}

START_TEST(test_data_round_trips)
{
    ck_assert_int_ge(unit_each_image("", data_round_trip, NULL), 8);
}
END_TEST

static Suite *pixcode_suite(void)
{
    Suite *s = suite_create("codec_pixcode");
    TCase *tc = tcase_create("rans");
    tcase_add_test(tc, rans_normalize_invariants);
    tcase_add_test(tc, rans_round_trip);
    tcase_add_test(tc, rans_delta_classes);
    tcase_add_test(tc, rans_bad_tables);
    suite_add_tcase(s, tc);
    tc = tcase_create("round_trips");
    tcase_add_test(tc, synthetic_round_trips);
    tcase_add_test(tc, sizes_make_sense);
    tcase_add_test(tc, packing_chosen_on_a_sample);
    tcase_add_test(tc, test_data_round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("stripes");
    tcase_add_test(tc, stripes_decode_alone);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, damaged_streams);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(pixcode_suite)
