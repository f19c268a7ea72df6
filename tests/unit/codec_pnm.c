// SPDX-License-Identifier: MIT
/*
 * Unit tests of the PNM adapter: generated P5/P6 files (8/16-bit, comments, odd whitespace,
 * thin and prime sizes) and the MRI slices in tests/data must join back byte for byte, with
 * planes that match an independent decode written here; malformed files must be refused
 * cleanly (run under ASan+UBSan for the "no crash, no leak" half).
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "tests/unit/unit.h"

static uint8_t *pnm_read_file(const char *name, size_t *len)
{
    char path[4096];
    const char *dir = getenv("IMGC_TESTDATA");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", name);
    return unit_read_file(path, len);
}

/* Split, join, compare. Returns the image (caller frees) or NULL when split refused; any
 * answer other than success or -ENOTSUP/-EFBIG fails the test. */
static struct codec_image *pnm_roundtrip(const uint8_t *buf, size_t len, int *ret)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    size_t env_len = 0, out_len = 0;
    char why[128] = "";
    *ret = codec_split(buf, len, &img, &env, &env_len, why, sizeof(why));
    if (*ret != 0) {
        ck_assert_msg(*ret == -ENOTSUP || *ret == -EFBIG, "split: %d", *ret);
        ck_assert_msg(why[0] != 0, "refusal without a reason");
        return NULL;
    }
    ck_assert_int_eq(img->format, CODEC_FORMAT_PNM);
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, len);
    ck_assert_msg(memcmp(out, buf, len) == 0, "join differs");
    free(out);
    free(env);
    return img;
}

/* An independent reading of a binary PNM header: tokens separated by whitespace, '#'
 * comments to the end of the line, one whitespace byte after maxval. */
struct pnm_ref {
    int channels;
    unsigned width, height, maxval;
    size_t raster;
};

static int pnm_ref_header(const uint8_t *b, size_t len, struct pnm_ref *r)
{
    size_t p = 2;
    unsigned v[3];
    if (len < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6'))
        return -1;
    for (int i = 0; i < 3; i++) {
        while (p < len && (strchr(" \t\r\n\v\f", b[p]) || b[p] == '#')) {
            if (b[p] == '#')
                while (p < len && b[p] != '\n' && b[p] != '\r')
                    p++;
            else
                p++;
        }
        v[i] = 0;
        while (p < len && b[p] >= '0' && b[p] <= '9')
            v[i] = v[i] * 10 + (unsigned)(b[p++] - '0');
    }
    r->channels = b[1] == '6' ? 3 : 1;
    r->width = v[0];
    r->height = v[1];
    r->maxval = v[2];
    r->raster = p + 1;
    return 0;
}

/* Planes against the independent decode. */
static void pnm_check_planes(const uint8_t *buf, size_t len, const struct codec_image *img)
{
    struct pnm_ref r;
    ck_assert_int_eq(pnm_ref_header(buf, len, &r), 0);
    ck_assert_uint_eq(img->channels, (unsigned)r.channels);
    ck_assert_uint_eq(img->width, r.width);
    ck_assert_uint_eq(img->height, r.height);
    ck_assert_uint_eq(img->frames, 1);
    ck_assert_uint_eq(img->bits, r.maxval > 255 ? 16 : 8);
    unsigned sig = 0;
    while ((1u << sig) - 1 < r.maxval)
        sig++;
    ck_assert_uint_eq(img->significant, sig);
    size_t hw = (size_t)r.width * r.height, bps = r.maxval > 255 ? 2 : 1;
    for (size_t i = 0; i < hw; i++) {
        for (int c = 0; c < r.channels; c++) {
            const uint8_t *s = buf + r.raster + (i * (size_t)r.channels + (size_t)c) * bps;
            unsigned want = bps == 2 ? (unsigned)(s[0] << 8 | s[1]) : s[0];
            unsigned got = bps == 2 ? ((const uint16_t *)img->planes)[(size_t)c * hw + i]
                                    : ((const uint8_t *)img->planes)[(size_t)c * hw + i];
            ck_assert_uint_eq(got, want);
        }
    }
}

/* A generated file: header text given, raster of pseudo-random samples up to maxval. */
static uint8_t *pnm_make(const char *header, int channels, unsigned w, unsigned h, unsigned maxval,
                         const char *trailer, size_t *len, unsigned seed)
{
    size_t hl = strlen(header), tl = trailer ? strlen(trailer) : 0, bps = maxval > 255 ? 2 : 1;
    size_t n = (size_t)w * h * (size_t)channels;
    uint8_t *b = malloc(hl + n * bps + tl + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b, header, hl); // NOLINT(bugprone-not-null-terminated-result): bytes
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)rand() % (maxval + 1);
        if (i == n / 2)
            v = maxval; /* the top value occurs */
        if (bps == 2) {
            b[hl + 2 * i] = (uint8_t)(v >> 8);
            b[hl + 2 * i + 1] = (uint8_t)v;
        } else {
            b[hl + i] = (uint8_t)v;
        }
    }
    if (tl)
        memcpy(b + hl + n * bps, trailer, tl); // NOLINT(bugprone-not-null-terminated-result): bytes
    *len = hl + n * bps + tl;
    return b;
}

START_TEST(test_pnm_files)
{
    static const char *const names[] = {"mri-t1-axial-8bit.pgm", "mri-t1-axial-12bit.pgm"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len;
        int ret;
        uint8_t *buf = pnm_read_file(names[i], &len);
        ck_assert_int_eq(codec_sniff(buf, len), CODEC_FORMAT_PNM);
        struct codec_image *img = pnm_roundtrip(buf, len, &ret);
        ck_assert_msg(img != NULL, "%s refused", names[i]);
        pnm_check_planes(buf, len, img);
        codec_image_free(img);
        free(buf);
    }
}
END_TEST

START_TEST(test_pnm_generated)
{
    static const struct {
        const char *header; /* holds width, height and maxval as the fields below */
        int channels;
        unsigned w, h, maxval;
        const char *trailer;
    } cases[] = {
        {"P5\n1 1\n255\n", 1, 1, 1, 255, NULL},
        {"P5 1 97 255 ", 1, 1, 97, 255, NULL},
        {"P5\n97\n1\n255\n", 1, 97, 1, 255, NULL},
        {"P5\n# a comment\n31 17\n# another\n4095\n", 1, 31, 17, 4095, NULL},
        {"P5#comment right after the magic\n\t13\r\n7\f65535\t", 1, 13, 7, 65535, NULL},
        {"P5\r\n101 3\r\n1\r", 1, 101, 3, 1, NULL},
        {"P5 2  # width\n  2 # height\n256\n", 1, 2, 2, 256, NULL},
        {"P6\n1 1\n255\n", 3, 1, 1, 255, NULL},
        {"P6\n# rgb\n37 11\n255\n", 3, 37, 11, 255, NULL},
        {"P6 5 23 65535\n", 3, 5, 23, 65535, NULL},
        {"P6\n3\t3\n1000\n", 3, 3, 3, 1000, NULL},
        {"P5\n8 8\n255\n", 1, 8, 8, 255, "trailing bytes\n"},
        {"P5\n4 4\n255\n", 1, 4, 4, 255, "P5\n1 1\n255\n\x7f"},
        {"P5\n0003 05\n00255\n", 1, 3, 5, 255, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        int ret;
        uint8_t *buf = pnm_make(cases[i].header, cases[i].channels, cases[i].w, cases[i].h,
                                cases[i].maxval, cases[i].trailer, &len, (unsigned)i + 1);
        struct codec_image *img = pnm_roundtrip(buf, len, &ret);
        ck_assert_msg(img != NULL, "case %zu refused: %d", i, ret);
        pnm_check_planes(buf, len, img);
        codec_image_free(img);
        free(buf);
    }
}
END_TEST

static void pnm_expect(const char *text, size_t len, int want)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL;
    size_t env_len = 0;
    char why[128] = "";
    int ret = codec_split((const uint8_t *)text, len, &img, &env, &env_len, why, sizeof(why));
    ck_assert_msg(ret == want, "'%.20s': %d (%s), wanted %d", text, ret, why, want);
    ck_assert_ptr_null(img);
    ck_assert_ptr_null(env);
}

/* ---- plain (ASCII) P2/P3 ---------------------------------------------------------------- */

/* A plain file as a writer lays it out: samples (pseudo-random up to maxval) in shortest
 * decimal, sep between the samples of a line, trail: sep after a line's last sample too; a
 * line break (eol) every per_line samples (0: none) and, when row_breaks, at each row's end;
 * final: a line break after the last line; then trailer. *planes gets the samples in plane
 * order (caller frees). */
struct pnm_plain {
    const char *magic; /* "P2" or "P3" */
    unsigned w, h, maxval;
    char sep;
    const char *eol;
    bool trail, row_breaks, final;
    unsigned per_line;
    const char *trailer;
};

static uint8_t *pnm_plain_make(const struct pnm_plain *o, size_t *len, uint16_t **planes)
{
    int ch = strcmp(o->magic, "P3") == 0 ? 3 : 1;
    size_t n = (size_t)o->w * o->h * (size_t)ch, hw = (size_t)o->w * o->h, at = 0;
    size_t cap = 64 + n * 8 + (o->trailer ? strlen(o->trailer) : 0);
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    *planes = malloc(n * sizeof(**planes));
    ck_assert_ptr_nonnull(*planes);
    at += (size_t)snprintf(b, cap, "%s\n%u %u\n%u\n", o->magic, o->w, o->h, o->maxval);
    unsigned on_line = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned v = (unsigned)((k * 7919u + k / 3) % (o->maxval + 1u));
        (*planes)[(k % (size_t)ch) * hw + k / (size_t)ch] = (uint16_t)v;
        at += (size_t)snprintf(b + at, cap - at, "%u", v);
        on_line++;
        bool last = k + 1 == n;
        bool brk = (o->per_line && on_line == o->per_line) ||
                   (o->row_breaks && (k + 1) % ((size_t)o->w * (size_t)ch) == 0) || last;
        if (!brk) {
            b[at++] = o->sep;
            continue;
        }
        if (last && !o->final)
            break;
        if (o->trail)
            b[at++] = o->sep;
        at += (size_t)snprintf(b + at, cap - at, "%s", o->eol);
        on_line = 0;
    }
    if (o->trailer)
        at += (size_t)snprintf(b + at, cap - at, "%s", o->trailer);
    *len = at;
    return (uint8_t *)b;
}

/* Round trip, planes as made, and the layout section a few bytes. */
static void pnm_plain_check(const struct pnm_plain *o, const char *what)
{
    size_t len, env_len = 0;
    uint16_t *want;
    int ret;
    uint8_t *buf = pnm_plain_make(o, &len, &want), *env = NULL;
    struct codec_image *img = pnm_roundtrip(buf, len, &ret);
    ck_assert_msg(img != NULL, "%s refused: %d", what, ret);
    ck_assert_uint_eq(img->bits, o->maxval > 255 ? 16 : 8);
    size_t n = img->planes_bytes / (img->bits / 8);
    for (size_t k = 0; k < n; k++) {
        unsigned got = img->bits == 16 ? ((const uint16_t *)img->planes)[k]
                                       : ((const uint8_t *)img->planes)[k];
        ck_assert_msg(got == want[k], "%s: sample %zu: %u, want %u", what, k, got, want[k]);
    }
    codec_image_free(img);
    img = NULL;
    ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, NULL, 0), 0);
    struct codec_envelope_info info;
    ck_assert_int_eq(codec_envelope_info(env, env_len, &info), 0);
    ck_assert_msg(info.recipe_bytes > 0 && info.recipe_bytes <= 8 + 4 + 2 * 10 * (o->h + 1),
                  "%s: layout section of %llu bytes", what, (unsigned long long)info.recipe_bytes);
    codec_image_free(img);
    free(env);
    free(want);
    free(buf);
}

START_TEST(test_pnm_plain)
{
    static const struct pnm_plain cases[] = {
        /* netpbm: one space, 17 per line, rows on their own lines */
        {"P2", 61, 7, 255, ' ', "\n", false, true, true, 17, NULL},
        /* ImageMagick: a space after every sample, rows on their own lines */
        {"P2", 40, 3, 255, ' ', "\n", true, true, true, 0, NULL},
        {"P2", 30, 2, 65535, ' ', "\n", true, true, true, 0, NULL},
        {"P3", 8, 2, 255, ' ', "\n", true, true, true, 0, NULL},
        {"P3", 9, 4, 1000, ' ', "\n", false, true, true, 5, NULL},
        /* tabs, CRLF, CR, no final line break, everything on one line, trailing bytes */
        {"P2", 5, 5, 15, '\t', "\r\n", false, true, true, 0, NULL},
        {"P2", 5, 5, 15, ' ', "\r", true, false, true, 3, NULL},
        {"P2", 6, 3, 255, ' ', "\n", false, true, false, 0, NULL},
        {"P2", 6, 3, 255, ' ', "\n", true, true, false, 0, "garbage after"},
        {"P2", 9, 9, 200, ' ', "\n", false, false, false, 0, NULL},
        {"P2", 1, 1, 1, ' ', "\n", false, true, true, 0, NULL},
        {"P2", 1, 12, 9, ' ', "\n", true, true, true, 0, "\n\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[32];
        snprintf(what, sizeof(what), "plain case %zu", i);
        pnm_plain_check(&cases[i], what);
    }
}
END_TEST

/* The plain test file (ImageMagick's convert -compress none), and ImageMagick itself at run
 * time when it is installed. */
START_TEST(test_pnm_plain_files)
{
    size_t len, len5;
    int ret;
    uint8_t *buf = pnm_read_file("mri-t1-sagittal-64-plain.pgm", &len);
    struct codec_image *img = pnm_roundtrip(buf, len, &ret);
    ck_assert_msg(img != NULL, "refused: %d", ret);
    ck_assert_uint_eq(img->width, 64);
    ck_assert_uint_eq(img->height, 64);
    ck_assert_uint_eq(img->significant, 8);
    /* the same pixels as its binary twin */
    uint8_t *bin = pnm_read_file("mri-t1-sagittal-64.pgm", &len5);
    struct codec_image *img5 = pnm_roundtrip(bin, len5, &ret);
    ck_assert_ptr_nonnull(img5);
    ck_assert_uint_eq(img->planes_bytes, img5->planes_bytes);
    ck_assert_mem_eq(img->planes, img5->planes, img->planes_bytes);
    codec_image_free(img5);
    codec_image_free(img);
    free(bin);
    free(buf);
}
END_TEST

START_TEST(test_pnm_plain_refused)
{
    static const char *const bad[] = {
        "P2\n2 2\n255\n1 2 03 4\n",        /* leading zero */
        "P2\n2 2\n255\n1  2 3 4\n",        /* two blanks */
        "P2\n2 3\n255\n1 2\r\n3 4\n5 6\n", /* mixed line breaks */
        "P2\n2 3\n255\n1 2 \n3 4\n5 6\n",  /* trailing blank on one line only */
        "P2\n2 2\n255\n1 2\t3 4\n",        /* mixed separators */
        "P2\n2 2\n255\n1 2 # c\n3 4\n",
        "P2\n2 2\n255\n1 2\n\n3 4\n", /* blank line */
        "P2\n2 2\n255\n1 2 3 256\n",  /* above maxval */
        "P2\n2 2\n255\n1 2 3\n",      /* too few samples */
        "P2\n2 2\n255\n1 2 3 +4\n",
        "P2\n2 2\n255\n\n1 2 3 4\n",   /* a blank line before the samples */
        "P2\n40000 40000\n255\n1 2\n", /* declared beyond what the text holds */
        "P3\n1 1\n255\n1 2\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        pnm_expect(bad[i], strlen(bad[i]), -ENOTSUP);
    pnm_expect("P2\n65536 65536\n65535\n", 21, -EFBIG);
}
END_TEST

/* Every envelope cut short is refused by join. */
static void joins_refuse_cuts(const struct codec_image *img, const uint8_t *env, size_t env_len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    for (size_t cut = 0; cut < env_len; cut++) {
        uint8_t *copy = malloc(cut + 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, env, cut);
        ck_assert_int_eq(codec_join(img, copy, cut, &out, &out_len), -EINVAL);
        free(copy);
    }
}

/* Every prefix and single-bit flip of a plain file; every cut of its envelope. */
START_TEST(test_pnm_plain_malformed)
{
    static const struct pnm_plain o = {"P3", 5, 3, 300, ' ', "\n", true, true, true, 4, "x"};
    size_t len, env_len, out_len;
    uint16_t *planes;
    int ret;
    uint8_t *buf = pnm_plain_make(&o, &len, &planes), *env = NULL, *out = NULL;
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t *copy = malloc(cut + 1);
        memcpy(copy, buf, cut);
        codec_image_free(pnm_roundtrip(copy, cut, &ret));
        free(copy);
    }
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            codec_image_free(pnm_roundtrip(buf, len, &ret));
            buf[i] ^= (uint8_t)(1u << bit);
        }
    struct codec_image *img = NULL;
    ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, NULL, 0), 0);
    joins_refuse_cuts(img, env, env_len);
    for (size_t i = CODEC_ENV_FIXED; i < env_len; i++) {
        env[i] ^= 0x41;
        out = NULL;
        ret = codec_join(img, env, env_len, &out, &out_len);
        ck_assert(ret == 0 || ret == -EINVAL);
        free(out);
        env[i] ^= 0x41;
    }
    codec_image_free(img);
    free(env);
    free(planes);
    free(buf);
}
END_TEST

START_TEST(test_pnm_refused)
{
    pnm_expect("P4\n8 1\n\xff", 8, -ENOTSUP);
    pnm_expect("P5\n2 2\n255\n\1\2\3", 14, -ENOTSUP);   /* raster truncated */
    pnm_expect("P5\n2 2\n0\n\0\0\0\0", 13, -ENOTSUP);   /* maxval 0 */
    pnm_expect("P5\n1 1\n65536\n\0\0", 15, -ENOTSUP);   /* maxval too big */
    pnm_expect("P5\n1 1\n15\n\x10", 11, -ENOTSUP);      /* sample above maxval */
    pnm_expect("P5\n1 1\n300\n\x01\x2d", 13, -ENOTSUP); /* 301 > 300 */
    pnm_expect("P5\n0 1\n255\n", 11, -ENOTSUP);         /* empty */
    pnm_expect("P5\n1 1\n255", 10, -ENOTSUP);           /* no whitespace */
    pnm_expect("P5\n1 1\n255#\n\0", 13, -ENOTSUP);      /* comment after maxval */
    pnm_expect("P5\n1 # never ends", 18, -ENOTSUP);
    pnm_expect("P5\nx 1\n255\n\0", 12, -ENOTSUP);
    pnm_expect("P5\n99999999999999999999 1\n255\n", 30, -EFBIG);
    pnm_expect("P5\n70000 1\n255\n", 15, -EFBIG);
    pnm_expect("P6\n65536 65536\n65535\n", 21, -EFBIG); /* 24 GiB of pixels, not allocated */
    pnm_expect("P5\n40000 40000\n255\n", 19, -ENOTSUP); /* in limits; the raster is missing */
    pnm_expect("not an image", 12, -ENOTSUP);
    pnm_expect("", 0, -ENOTSUP);
}
END_TEST

START_TEST(test_pnm_sniff)
{
    ck_assert_int_eq(codec_sniff((const uint8_t *)"P5\n", 3), CODEC_FORMAT_PNM);
    ck_assert_int_eq(codec_sniff((const uint8_t *)"P6#", 3), CODEC_FORMAT_PNM);
    ck_assert_int_eq(codec_sniff((const uint8_t *)"P5", 2), CODEC_FORMAT_NONE);
    ck_assert_int_eq(codec_sniff((const uint8_t *)"P7\n", 3), CODEC_FORMAT_NONE);
    ck_assert_int_eq(codec_sniff((const uint8_t *)"P5x", 3), CODEC_FORMAT_NONE);
    ck_assert_int_eq(codec_sniff((const uint8_t *)"\x89PNG\r\n\x1a\n", 8), CODEC_FORMAT_PNG);
    ck_assert_int_eq(codec_sniff(NULL, 0), CODEC_FORMAT_NONE);
}
END_TEST

/* Every prefix of a small file, and every single-bit flip of it: success with an exact join,
 * or a clean refusal. */
START_TEST(test_pnm_malformed)
{
    size_t len;
    int ret;
    uint8_t *buf = pnm_make("P6\n# c\n5 3\n65535\n", 3, 5, 3, 65535, "x", &len, 7);
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t *copy = malloc(cut + 1); /* exact size: ASan sees any overread */
        memcpy(copy, buf, cut);
        codec_image_free(pnm_roundtrip(copy, cut, &ret));
        free(copy);
    }
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            codec_image_free(pnm_roundtrip(buf, len, &ret));
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(buf);
}
END_TEST

/* join checks the envelope and the image against each other and never reads out of bounds. */
START_TEST(test_pnm_join_checks)
{
    size_t len, env_len, out_len;
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    uint8_t *buf = pnm_make("P5\n# c\n7 5\n255\n", 1, 7, 5, 255, "tail", &len, 3);
    ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, NULL, 0), 0);
    joins_refuse_cuts(img, env, env_len);
    img->width++;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    img->width--;
    img->format = CODEC_FORMAT_DICOM;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    img->format = CODEC_FORMAT_PNM;
    env[28] ^= 0x80; /* head length */
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    env[28] ^= 0x80;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
    ck_assert_uint_eq(out_len, len);
    ck_assert_mem_eq(out, buf, len);
    free(out);
    /* Changed pixels come back as changed pixels, in place. */
    ((uint8_t *)img->planes)[7 * 2 + 3] = 0xab;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
    ck_assert_uint_eq(out[len - 4 - 35 + 17], 0xab);
    free(out);
    ck_assert_int_eq(codec_join(NULL, env, env_len, &out, &out_len), -EINVAL);
    codec_image_free(img);
    codec_image_free(NULL);
    free(env);
    free(buf);
}
END_TEST

static Suite *codec_pnm_suite(void)
{
    Suite *s = suite_create("codec_pnm");
    TCase *tc = tcase_create("files");
    tcase_add_test(tc, test_pnm_files);
    tcase_add_test(tc, test_pnm_generated);
    tcase_add_test(tc, test_pnm_plain);
    tcase_add_test(tc, test_pnm_plain_files);
    suite_add_tcase(s, tc);
    tc = tcase_create("refused");
    tcase_add_test(tc, test_pnm_refused);
    tcase_add_test(tc, test_pnm_sniff);
    tcase_add_test(tc, test_pnm_plain_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_set_timeout(tc, 300); /* thousands of round trips, slow under sanitizers */
    tcase_add_test(tc, test_pnm_malformed);
    tcase_add_test(tc, test_pnm_join_checks);
    tcase_add_test(tc, test_pnm_plain_malformed);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(codec_pnm_suite)
