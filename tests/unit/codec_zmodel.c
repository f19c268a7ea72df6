// SPDX-License-Identifier: MIT
/*
 * Unit tests of codec/zmodel: the model of zlib's match finder must predict the tokens of
 * streams that python3's zlib writes, over the filtered scanlines of the test PNGs and over
 * text, token for token. The streams are made at test time and recorded with codec/deflate;
 * the agreement is printed per setting, so a regression shows where it is.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "codec/zlib/deflate.h"
#include "codec/zlib/zmodel.h"
#include "codec/zlib/zrecipe.h"

#define MAX_OUT ((size_t)64 << 20)

/*
 * Writes inputs, then streams. Input: 'I', name length (1), length (4, BE), name, bytes.
 * Stream: 'S', input index (1), level, memLevel, windowBits, strategy (1 each), length (4, BE),
 * zlib stream. Arguments: the test data folder, then settings "level:mem:wbits:strategy".
 */
static const char fixture_py[] =
    "import os, struct, sys, zlib, inspect, argparse, typing, textwrap\n"
    "d = sys.argv[1]\n"
    "o = sys.stdout.buffer\n"
    "def idat(path):\n"
    "    b = open(path, 'rb').read(); i = 8; s = b''\n"
    "    while i + 8 <= len(b):\n"
    "        n, t = struct.unpack('>I4s', b[i:i + 8])\n"
    "        if t == b'IDAT': s += b[i + 8:i + 8 + n]\n"
    "        i += 12 + n\n"
    "    return s\n"
    "inputs = []\n"
    "for f in sorted(os.listdir(d)):\n"
    "    if f.endswith('.png'): inputs.append((f, zlib.decompress(idat(os.path.join(d, f)))))\n"
    "text = b''.join(open(m.__file__, 'rb').read() for m in (inspect, argparse, typing, "
    "textwrap))\n"
    "inputs.append(('python sources', text))\n"
    "for name, raw in inputs:\n"
    "    n = name.encode()[:255]\n"
    "    o.write(b'I' + struct.pack('>BI', len(n), len(raw)) + n + raw)\n"
    "for arg in sys.argv[2:]:\n"
    "    level, mem, wbits, strat = map(int, arg.split(':'))\n"
    "    for i, (name, raw) in enumerate(inputs):\n"
    "        c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem, strat)\n"
    "        s = c.compress(raw) + c.flush()\n"
    "        o.write(b'S' + struct.pack('>BBBBBI', i, level, mem, wbits, strat, len(s)) + s)\n";

struct fixture {
    uint8_t *all;
    size_t len;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Run the fixture script for the settings given; the caller frees f->all. */
static void fixture_run(const char *settings, struct fixture *f)
{
    const char *dir = getenv("IMGC_TESTDATA");
    ck_assert_msg(dir != NULL, "IMGC_TESTDATA not set");
    char path[] = "/tmp/imgc-zmodel-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *py = fdopen(fd, "w");
    ck_assert_ptr_nonnull(py);
    fputs(fixture_py, py);
    fclose(py);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s '%s' %s", path, dir, settings);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 22, len = 0, n;
    uint8_t *all = malloc(cap);
    while (all && (n = fread(all + len, 1, cap - len, p)) > 0) {
        len += n;
        if (len == cap)
            all = realloc(all, cap *= 2);
    }
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(pclose(p), 0);
    unlink(path);
    f->all = all;
    f->len = len;
}

struct tally {
    int level, mem, wbits, strategy;
    size_t tokens, equal, streams, exact_streams;
    size_t perfect_recipes; /* no correction, no block exception, zlib's block layout */
    size_t recipe_bytes, raw_bytes, stream_bytes;
};

#define MAX_INPUTS 32
#define MAX_SETTINGS 64

/*
 * Record every stream of the fixture, predict it, and tally the agreement per setting. Prints
 * one line per setting; returns the number of settings in t.
 */
static size_t measure(const char *settings, struct tally *t)
{
    struct fixture f;
    fixture_run(settings, &f);
    const uint8_t *in[MAX_INPUTS];
    size_t in_len[MAX_INPUTS], ninputs = 0, nt = 0;
    const char *in_name[MAX_INPUTS];
    int in_name_len[MAX_INPUTS];
    for (size_t at = 0; at < f.len;) {
        ck_assert_uint_ge(f.len - at, 6);
        if (f.all[at] == 'I') {
            ck_assert_uint_lt(ninputs, MAX_INPUTS);
            size_t nl = f.all[at + 1], rl = be32(f.all + at + 2);
            ck_assert_uint_le(nl + rl, f.len - at - 6);
            in_name[ninputs] = (const char *)f.all + at + 6;
            in_name_len[ninputs] = (int)nl;
            in[ninputs] = f.all + at + 6 + nl;
            in_len[ninputs++] = rl;
            at += 6 + nl + rl;
            continue;
        }
        ck_assert_int_eq(f.all[at], 'S');
        ck_assert_uint_ge(f.len - at, 10);
        const uint8_t *h = f.all + at + 1;
        size_t i = h[0], cl = be32(h + 5);
        ck_assert_uint_lt(i, ninputs);
        ck_assert_uint_le(cl, f.len - at - 10);
        const uint8_t *comp = f.all + at + 10;
        at += 10 + cl;
        struct codec_zmodel_params p = {h[1], h[2], h[3], h[4]};
        if (nt == 0 || t[nt - 1].level != p.level || t[nt - 1].mem != p.mem_level ||
            t[nt - 1].wbits != p.window_bits || t[nt - 1].strategy != p.strategy) {
            ck_assert_uint_lt(nt, MAX_SETTINGS);
            t[nt++] = (struct tally){.level = p.level,
                                     .mem = p.mem_level,
                                     .wbits = p.window_bits,
                                     .strategy = p.strategy};
        }
        struct tally *cur = &t[nt - 1];
        uint8_t *out = NULL;
        size_t out_len = 0, ntoks = 0;
        struct codec_deflate_desc *d = NULL;
        struct codec_zmodel_token *toks = NULL;
        struct codec_zmodel_agreement a;
        ck_assert_int_eq(codec_deflate_record_zlib(comp, cl, MAX_OUT, &out, &out_len, &d), 0);
        ck_assert_uint_eq(out_len, in_len[i]);
        ck_assert(out_len == 0 || memcmp(out, in[i], out_len) == 0);
        ck_assert_int_eq(codec_zmodel_predict(out, out_len, &p, &toks, &ntoks), 0);
        ck_assert_int_eq(codec_zmodel_compare(toks, ntoks, d, &a), 0);
        if (a.equal != a.tokens)
            printf("  zmodel: level %d mem %d wbits %d strategy %d, %.*s: %zu of %zu tokens, "
                   "first divergence at byte %zu of %zu\n",
                   p.level, p.mem_level, p.window_bits, p.strategy, in_name_len[i], in_name[i],
                   a.equal, a.tokens, a.first_divergence, out_len);
        /* the modelled recipe: rebuilt from the data alone, the stream comes back exactly */
        uint8_t *rec = NULL, *again = NULL;
        size_t rec_len = 0, again_len = 0;
        struct codec_zrecipe_info info;
        struct codec_deflate_desc *back = NULL;
        ck_assert_int_eq(codec_zrecipe_make(d, out, out_len, 1, &rec, &rec_len, &info), 0);
        ck_assert_int_eq(codec_zrecipe_parse(rec, rec_len, out, out_len, MAX_OUT, 1, &back), 0);
        ck_assert_int_eq(codec_deflate_emit(back, out, out_len, &again, &again_len), 0);
        ck_assert(again_len == cl && memcmp(again, comp, cl) == 0);
        bool perfect = info.corrections == 0 && info.block_exceptions == 0 && !info.explicit_layout;
        if (!perfect)
            printf("  zrecipe: level %d mem %d wbits %d strategy %d, %.*s: found level %d mem %d "
                   "wbits %d strategy %d, %zu corrections (%zu tokens), %zu of %zu block heads "
                   "differ, layout %s, %zu bytes\n",
                   p.level, p.mem_level, p.window_bits, p.strategy, in_name_len[i], in_name[i],
                   info.params.level, info.params.mem_level, info.params.window_bits,
                   info.params.strategy, info.corrections, info.corrected_tokens,
                   info.block_exceptions, info.blocks, info.explicit_layout ? "stored" : "zlib's",
                   rec_len);
        cur->perfect_recipes += perfect;
        cur->recipe_bytes += rec_len;
        cur->raw_bytes += codec_deflate_desc_size(d);
        cur->stream_bytes += cl;
        free(rec);
        free(again);
        codec_deflate_desc_free(back);
        cur->tokens += a.tokens;
        cur->equal += a.equal;
        cur->streams++;
        cur->exact_streams += a.equal == a.tokens;
        free(toks);
        free(out);
        codec_deflate_desc_free(d);
    }
    for (size_t k = 0; k < nt; k++)
        printf("zmodel: level %d mem %d wbits %2d strategy %d: %zu of %zu tokens (%.4f%%), "
               "%zu of %zu streams exact; recipes: %zu perfect, %zu bytes (raw %zu) for %zu "
               "bytes of streams\n",
               t[k].level, t[k].mem, t[k].wbits, t[k].strategy, t[k].equal, t[k].tokens,
               t[k].tokens ? 100.0 * (double)t[k].equal / (double)t[k].tokens : 100.0,
               t[k].exact_streams, t[k].streams, t[k].perfect_recipes, t[k].recipe_bytes,
               t[k].raw_bytes, t[k].stream_bytes);
    fflush(stdout);
    free(f.all);
    return nt;
}

/* Levels 1-9, memLevel 8 and 9, windowBits 15, default strategy: every token. */
START_TEST(test_levels)
{
    char settings[1024] = "";
    size_t want = 0;
    for (int mem = 8; mem <= 9; mem++)
        for (int level = 1; level <= 9; level++) {
            if (unit_quick() && (mem == 9 || level % 4 != 1))
                continue; /* 1, 5, 9 */
            size_t at = strlen(settings);
            snprintf(settings + at, sizeof(settings) - at, " %d:%d:15:0", level, mem);
            want++;
        }
    struct tally t[MAX_SETTINGS];
    size_t nt = measure(settings, t);
    ck_assert_uint_eq(nt, want);
    for (size_t k = 0; k < nt; k++) {
        ck_assert_uint_gt(t[k].tokens, 0);
        ck_assert_msg(t[k].equal == t[k].tokens, "level %d mem %d: %zu of %zu tokens", t[k].level,
                      t[k].mem, t[k].equal, t[k].tokens);
        ck_assert_msg(t[k].perfect_recipes == t[k].streams, "level %d mem %d: %zu of %zu recipes",
                      t[k].level, t[k].mem, t[k].perfect_recipes, t[k].streams);
    }
}
END_TEST

/* Other strategies, small windows and memLevels, where the slide and short chains matter. */
START_TEST(test_variants)
{
    const char *settings = "1:8:15:1 6:8:15:1 9:8:15:1 1:8:15:2 6:8:15:2 1:8:15:3 6:8:15:3 "
                           "6:8:15:4 1:8:9:0 6:8:9:0 9:8:9:0 3:8:11:0 6:8:12:0 9:8:13:0 "
                           "1:1:15:0 6:1:15:0 9:1:10:0 4:5:14:1";
    if (unit_quick())
        settings = "6:8:15:1 1:8:15:2 6:8:15:3 6:8:15:4 9:8:9:0 1:1:15:0";
    struct tally t[MAX_SETTINGS];
    size_t nt = measure(settings, t);
    ck_assert_uint_eq(nt, unit_quick() ? 6 : 18);
    for (size_t k = 0; k < nt; k++) {
        ck_assert_uint_gt(t[k].tokens, 0);
        ck_assert_msg(t[k].equal == t[k].tokens, "level %d mem %d wbits %d strategy %d: %zu of %zu",
                      t[k].level, t[k].mem, t[k].wbits, t[k].strategy, t[k].equal, t[k].tokens);
        ck_assert_msg(t[k].perfect_recipes == t[k].streams,
                      "level %d mem %d wbits %d strategy %d: %zu of %zu recipes", t[k].level,
                      t[k].mem, t[k].wbits, t[k].strategy, t[k].perfect_recipes, t[k].streams);
    }
}
END_TEST

/* Bad parameters, empty data, and a prediction that does not cover the stream. */
START_TEST(test_edges)
{
    static const uint8_t data[] = "abcabcabcabcabcabc";
    struct codec_zmodel_token *toks = NULL;
    size_t n = 99;
    const struct codec_zmodel_params bad[] = {
        {0, 8, 15, 0}, {10, 8, 15, 0}, {6, 0, 15, 0}, {6, 10, 15, 0},
        {6, 8, 7, 0},  {6, 8, 16, 0},  {6, 8, 15, 5}, {6, 8, 15, -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(codec_zmodel_predict(data, sizeof(data) - 1, &bad[i], &toks, &n), -EINVAL);
    ck_assert_uint_eq(n, 99);
    const struct codec_zmodel_params p = {6, 8, 8, 0};
    ck_assert_int_eq(codec_zmodel_predict(data, 0, &p, &toks, &n), 0);
    ck_assert_ptr_null(toks);
    ck_assert_uint_eq(n, 0);
    /* "abca" then a match of 14 at distance 3: zlib never matches back to offset 0, which its
       hash chains use as "none" */
    ck_assert_int_eq(codec_zmodel_predict(data, sizeof(data) - 1, &p, &toks, &n), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(toks[3].dist, 0);
    ck_assert_uint_eq(toks[4].len, 14);
    ck_assert_uint_eq(toks[4].dist, 3);

    /* zlib.compress(b'abcabcabcabcabcabc', 6) */
    static const uint8_t z[] = {0x78, 0x9c, 0x4b, 0x4c, 0x4a, 0x4e, 0x44,
                                0x45, 0x00, 0x41, 0x7c, 0x06, 0xe5};
    uint8_t *out = NULL;
    size_t out_len;
    struct codec_deflate_desc *d = NULL;
    struct codec_zmodel_agreement a;
    ck_assert_int_eq(codec_deflate_record_zlib(z, sizeof(z), MAX_OUT, &out, &out_len, &d), 0);
    ck_assert_uint_eq(out_len, sizeof(data) - 1);
    ck_assert_int_eq(codec_zmodel_compare(toks, n, d, &a), 0);
    ck_assert_uint_eq(a.tokens, 5);
    ck_assert_uint_eq(a.equal, 5);
    ck_assert_uint_eq(a.first_divergence, SIZE_MAX);
    /* a wrong prediction: the match one shorter, then a literal */
    struct codec_zmodel_token wrong[6];
    memcpy(wrong, toks, 5 * sizeof(*toks));
    wrong[4].len = 13;
    wrong[5] = (struct codec_zmodel_token){1, 0};
    ck_assert_int_eq(codec_zmodel_compare(wrong, 6, d, &a), 0);
    ck_assert_uint_eq(a.tokens, 5);
    ck_assert_uint_eq(a.equal, 4);
    ck_assert_uint_eq(a.first_divergence, 4);
    /* not covering the output */
    ck_assert_int_eq(codec_zmodel_compare(toks, 4, d, &a), -EINVAL);
    free(out);
    free(toks);
    codec_deflate_desc_free(d);
}
END_TEST

/*
 * Two workers predict exactly what one does (codec_zmodel_predict_threads): at every lazy level
 * and both strategies that share the data out in segments, several windows and hash sizes, on
 * data where the segments meet at once (image-like rows), late or never (random bytes: no
 * match, so no state to meet in; the second worker gives such segments up), partly (random
 * bytes, then rows), with matches running across the cuts (zeros, repeated text),
 * with 2 to 8 segments and sizes on both sides of the 64 KiB below which one worker does it
 * all. The greedy levels and the other strategies go through the same call.
 */
START_TEST(test_threads)
{
    enum { N = 300000 };
    uint8_t *img = malloc(N), *rnd = malloc(N), *zero = calloc(1, N), *text = malloc(N);
    uint8_t *mixed = malloc(N);
    ck_assert(img && rnd && zero && text && mixed);
    uint32_t x = 12345;
    for (size_t i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        size_t row = i / 512, col = i % 512;
        /* filtered-looking rows: mostly small values, some structure, some noise */
        img[i] = (uint8_t)(col == 0 ? 1
                                    : ((row * 7 + col / 16) % 5) +
                                          ((x >> 16) % 3 == 0 ? (x >> 24) % 7 : 0));
        rnd[i] = (uint8_t)(x >> 24);
    }
    static const char words[] = "the quick brown fox jumps over the lazy dog; pack my box with "
                                "five dozen liquor jugs. ";
    for (size_t i = 0; i < N; i++)
        text[i] = (uint8_t)words[(i * 7 / 5 + i / 1000) % (sizeof(words) - 1)];
    memcpy(mixed, rnd, N / 2);
    memcpy(mixed + N / 2, img, N - N / 2);
    const struct {
        const uint8_t *d;
        size_t len;
    } in[] = {{img, N},      {img, 65535}, {img, 65536}, {rnd, 70000},
              {rnd, 150000}, {mixed, N},   {zero, N},    {text, 150001}};
    const int geo[][2] = {{8, 15}, {1, 9}, {9, 12}}; /* memLevel, windowBits */
    for (size_t k = 0; k < sizeof(in) / sizeof(in[0]); k++)
        for (int level = 1; level <= 9; level++)
            for (int strat = 0; strat <= 4; strat++)
                for (size_t g = 0; g < sizeof(geo) / sizeof(geo[0]); g++) {
                    /* the cut applies at 4-9, default and filtered: there, all of them; else
                     * one setting each */
                    bool cut = level >= 4 && strat <= 1;
                    if (!cut && (g > 0 || (level != 1 && level != 6)))
                        continue;
                    if (cut && (level == 9 ? g > 0 : level != 4 && level != 6 && g > 0))
                        continue;
                    const struct codec_zmodel_params p = {level, geo[g][0], geo[g][1], strat};
                    struct codec_zmodel_token *t1 = NULL, *t2 = NULL;
                    size_t n1 = 0, n2 = 0;
                    ck_assert_int_eq(
                        codec_zmodel_predict_threads(in[k].d, in[k].len, &p, 1, &t1, &n1), 0);
                    ck_assert_int_eq(
                        codec_zmodel_predict_threads(in[k].d, in[k].len, &p, 2, &t2, &n2), 0);
                    ck_assert_msg(
                        n1 == n2 && memcmp(t1, t2, n1 * sizeof(*t1)) == 0,
                        "input %zu level %d strategy %d mem %d wbits %d: %zu vs %zu tokens", k,
                        level, strat, geo[g][0], geo[g][1], n1, n2);
                    size_t covered = 0;
                    for (size_t i = 0; i < n2; i++)
                        covered += t2[i].len;
                    ck_assert_uint_eq(covered, in[k].len);
                    free(t1);
                    free(t2);
                }
    free(img);
    free(mixed);
    free(rnd);
    free(zero);
    free(text);
}
END_TEST

/*
 * A modelled recipe is untrusted when read back: every truncation must be refused, and every
 * byte flip refused or turned into a description whose stream (if emit accepts it) still
 * inflates to exactly the data: never a crash, never other bytes.
 */
START_TEST(test_recipe_malformed)
{
    /* a zlib stream of text with matches, fixed and dynamic blocks: Python's textwrap module */
    struct fixture f;
    fixture_run("6:8:15:0", &f);
    const uint8_t *data = NULL, *comp = NULL;
    size_t data_len = 0, comp_len = 0;
    for (size_t at = 0; at < f.len;) {
        if (f.all[at] == 'I') {
            size_t nl = f.all[at + 1], rl = be32(f.all + at + 2);
            data = f.all + at + 6 + nl; /* the last input: the Python sources */
            data_len = rl;
            at += 6 + nl + rl;
        } else {
            size_t cl = be32(f.all + at + 6);
            comp = f.all + at + 10; /* the last stream: of the last input */
            comp_len = cl;
            at += 10 + cl;
        }
    }
    ck_assert_ptr_nonnull(comp);
    uint8_t *out = NULL, *rec = NULL;
    size_t out_len = 0, rec_len = 0;
    struct codec_deflate_desc *d = NULL;
    ck_assert_int_eq(codec_deflate_record_zlib(comp, comp_len, MAX_OUT, &out, &out_len, &d), 0);
    ck_assert_uint_eq(out_len, data_len);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(data);
    ck_assert(memcmp(out, data, data_len) == 0);
    ck_assert_int_eq(codec_zrecipe_make(d, out, out_len, 1, &rec, &rec_len, NULL), 0);
    for (size_t cut = 0; cut < rec_len; cut++) {
        struct codec_deflate_desc *p = NULL;
        ck_assert_int_eq(codec_zrecipe_parse(rec, cut, out, out_len, MAX_OUT, 1, &p), -EINVAL);
    }
    size_t refused = 0, other = 0;
    for (size_t i = 0; i < rec_len; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            rec[i] ^= (uint8_t)(1u << bit);
            struct codec_deflate_desc *p = NULL, *back = NULL;
            uint8_t *z = NULL, *again = NULL;
            size_t zl = 0, al = 0;
            int rc = codec_zrecipe_parse(rec, rec_len, out, out_len, MAX_OUT, 1, &p);
            ck_assert(rc == 0 || rc == -EINVAL || rc == -EFBIG);
            if (rc == 0 && codec_deflate_emit(p, out, out_len, &z, &zl) == 0) {
                ck_assert_int_eq(codec_deflate_record_zlib(z, zl, MAX_OUT, &again, &al, &back), 0);
                ck_assert(al == out_len && memcmp(again, out, al) == 0);
                other += zl != comp_len || memcmp(z, comp, zl) != 0;
            } else {
                refused++;
            }
            free(z);
            free(again);
            codec_deflate_desc_free(p);
            codec_deflate_desc_free(back);
            rec[i] ^= (uint8_t)(1u << bit);
        }
    printf("zrecipe: %zu-byte recipe, every truncation refused; flips: %zu refused, %zu give "
           "another valid stream of the same data\n",
           rec_len, refused, other);
    free(rec);
    free(out);
    codec_deflate_desc_free(d);
    free(f.all);
}
END_TEST

static Suite *codec_zmodel_suite(void)
{
    Suite *s = suite_create("codec_zmodel");
    TCase *t = tcase_create("zmodel");
    tcase_add_test(t, test_levels);
    tcase_add_test(t, test_variants);
    tcase_add_test(t, test_edges);
    tcase_add_test(t, test_threads);
    tcase_add_test(t, test_recipe_malformed);
    suite_add_tcase(s, t);
    return s;
}

UNIT_SUITE(codec_zmodel_suite)
