// SPDX-License-Identifier: MIT
/*
 * Unit tests of the PNG adapter: every PNG must join back byte for byte. The corpus is the
 * PNGs in tests/data plus files made at test time by libpng (every zlib level, strategy, filter,
 * memLevel and window size; every colour type and bit depth; thin, tiny and prime sizes; many
 * IDAT chunks), by Pillow (compress_level 0-9, optimize on/off), by ImageMagick, and recompressed
 * by zopflipng, advpng, optipng and pngcrush (each skipped, and said so, when absent). Generated
 * files are also checked sample by sample against the values they were made from. Each group
 * prints the IDAT section's size (the recipe) as a share of the file (median and worst). Malformed
 * files (every truncation, bit flips with and without repaired CRCs, absurd IHDRs) must be refused
 * cleanly; run under ASan+UBSan for the "no crash, no leak" half. With IMGC_DUMP=path set, a
 * file whose join fails is written there for a closer look.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <zlib.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec/codec.h"
#include "tests/unit/unit.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* The IDAT section's size (chunk lengths, filter types, recipe), as the envelope reports it. */
static size_t png_recipe_len(const uint8_t *env, size_t env_len)
{
    struct codec_envelope_info info;
    ck_assert_int_eq(codec_envelope_info(env, env_len, &info), 0);
    ck_assert_int_eq(info.format, CODEC_FORMAT_PNG);
    return (size_t)info.recipe_bytes;
}

/* Recipe sizes of a group of files, as per mille of the file. */
struct png_stats {
    const char *name;
    double pct[4096];
    size_t n;
    double worst;
    char worst_what[160];
    double max_median; /* the median must not exceed this (0: no bound) */
};

static int png_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void png_stats_print(struct png_stats *s)
{
    if (s->n == 0) {
        printf("codec_png: %-12s no files\n", s->name);
        return;
    }
    qsort(s->pct, s->n, sizeof(double), png_cmp_double);
    printf("codec_png: %-12s %4zu files exact; recipe %% of file: median %.2f, worst %.2f (%s)\n",
           s->name, s->n, s->pct[s->n / 2], s->pct[s->n - 1], s->worst_what);
    /* zlib-written files must be described by the model, not token by token */
    if (s->max_median > 0)
        ck_assert_msg(s->pct[s->n / 2] <= s->max_median, "%s: median recipe %.2f%% above %.2f%%",
                      s->name, s->pct[s->n / 2], s->max_median);
    fflush(stdout);
}

/*
 * Split, join, compare; the image (caller frees) or a failed test. Calls alternate between a
 * split with two workers and a join with one, and the other way round: either way must give
 * back the file (codec_zmodel_predict_threads cuts the zlib replay in two).
 */
static struct codec_image *png_roundtrip(const uint8_t *buf, size_t len, const char *what,
                                         struct png_stats *st)
{
    static unsigned calls;
    unsigned split_threads = calls % 2 ? 2 : 1, join_threads = 3 - split_threads;
    calls++;
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    size_t env_len = 0, out_len = 0;
    char why[128] = "";
    int ret = codec_split_threads(buf, len, split_threads, &img, &env, &env_len, why, sizeof(why));
    ck_assert_msg(ret == 0, "%s: split %d (%s)", what, ret, why);
    ck_assert_int_eq(img->format, CODEC_FORMAT_PNG);
    ret = codec_join_threads(img, env, env_len, join_threads, &out, &out_len);
    if (ret != 0 && getenv("IMGC_DUMP")) {
        FILE *f = fopen(getenv("IMGC_DUMP"), "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
    }
    ck_assert_msg(ret == 0, "%s: join %d (threads %u, %u)", what, ret, split_threads, join_threads);
    ck_assert_msg(out_len == len && memcmp(out, buf, len) == 0, "%s: join differs (threads %u, %u)",
                  what, split_threads, join_threads);
    if (st && st->n < sizeof(st->pct) / sizeof(st->pct[0])) {
        double pct = 100.0 * (double)png_recipe_len(env, env_len) / (double)len;
        st->pct[st->n++] = pct;
        if (st->n == 1 || pct > st->worst) {
            st->worst = pct;
            snprintf(st->worst_what, sizeof(st->worst_what), "%s, %zu bytes", what, len);
        }
    }
    free(out);
    free(env);
    return img;
}

/* Split must refuse cleanly, or the file must come back exactly. */
static void png_refused_or_exact(const uint8_t *buf, size_t len)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    size_t env_len = 0, out_len = 0;
    char why[128] = "";
    int ret = codec_split(buf, len, &img, &env, &env_len, why, sizeof(why));
    if (ret != 0) {
        ck_assert_msg(ret == -ENOTSUP || ret == -EFBIG, "split: %d", ret);
        ck_assert_msg(why[0] != 0, "refusal without a reason");
        ck_assert_ptr_null(img);
        ck_assert_ptr_null(env);
        return;
    }
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
    ck_assert_msg(out_len == len && memcmp(out, buf, len) == 0, "join differs");
    free(out);
    free(env);
    codec_image_free(img);
}

/* ---- a PNG writer over libpng ----------------------------------------------------------- */

struct png_buf {
    uint8_t *p;
    size_t n, cap;
};

static void png_buf_write(png_structp png, png_bytep d, size_t n)
{
    struct png_buf *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            png_error(png, "out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void png_buf_flush(png_structp png)
{
    (void)png;
}

struct png_opts {
    uint32_t w, h;
    int ctype, depth;
    int level, strategy, filters, mem_level, window_bits; /* -1: libpng's default */
    size_t zbuf;                                          /* 0: default IDAT size */
    int interlace;
    int extras; /* tRNS (palette), tEXt, a chunk after IDAT */
};

static int png_channels(int ctype)
{
    return ctype == 2 ? 3 : ctype == 4 ? 2 : ctype == 6 ? 4 : 1;
}

/* Sample (x, y, c) of the generated picture: gradients, a repeated pattern and noise, so that
 * every filter and the match finder have work to do. */
static unsigned png_sample(const struct png_opts *o, uint32_t x, uint32_t y, int c)
{
    unsigned max = (1u << o->depth) - 1;
    unsigned v = (x * 7u + y * 3u + (unsigned)c * 50u) + ((x / 5 + y / 3) % 4) * 9u;
    uint32_t h = (x * 2654435761u) ^ (y * 40503u) ^ ((uint32_t)c * 97u);
    if ((h >> 7) % 5 == 0)
        v += (h >> 11) % 23;
    if (o->depth == 16)
        v = v * 257u + (h >> 3) % 7;
    return v & max;
}

/* A PNG made by libpng with the given settings (caller frees). */
static uint8_t *png_make(const struct png_opts *o, size_t *len)
{
    struct png_buf b = {NULL, 0, 0};
    const volatile int ch = png_channels(o->ctype);
    size_t rowbytes = ((size_t)o->w * (size_t)ch * (size_t)o->depth + 7) / 8;
    uint8_t *row = calloc(1, rowbytes);
    ck_assert_ptr_nonnull(row);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(png);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    if (setjmp(png_jmpbuf(png)))
        ck_abort_msg("libpng failed to write");
    png_set_write_fn(png, &b, png_buf_write, png_buf_flush);
    png_set_IHDR(png, info, o->w, o->h, o->depth, o->ctype,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (o->ctype == 3) {
        png_color pal[256];
        int n = 1 << o->depth;
        for (int i = 0; i < n; i++) {
            pal[i].red = (png_byte)(i * 3);
            pal[i].green = (png_byte)(255 - i);
            pal[i].blue = (png_byte)(i * 7);
        }
        png_set_PLTE(png, info, pal, n);
        if (o->extras) {
            png_byte alpha[4] = {0, 128, 200, 255};
            png_set_tRNS(png, info, alpha, n < 4 ? n : 4, NULL);
        }
    }
    if (o->extras) {
        png_text t[1];
        memset(t, 0, sizeof(t));
        t[0].compression = PNG_TEXT_COMPRESSION_NONE;
        t[0].key = (png_charp) "Comment";
        t[0].text = (png_charp) "made by the imgcryptfs PNG tests";
        png_set_text(png, info, t, 1);
    }
    if (o->level >= 0)
        png_set_compression_level(png, o->level);
    if (o->strategy >= 0)
        png_set_compression_strategy(png, o->strategy);
    if (o->mem_level > 0)
        png_set_compression_mem_level(png, o->mem_level);
    if (o->window_bits > 0)
        png_set_compression_window_bits(png, o->window_bits);
    if (o->filters >= 0)
        png_set_filter(png, 0, o->filters);
    if (o->zbuf)
        png_set_compression_buffer_size(png, o->zbuf);
    png_write_info(png, info);
    int passes = o->interlace ? png_set_interlace_handling(png) : 1;
    for (int pass = 0; pass < passes; pass++) {
        for (uint32_t y = 0; y < o->h; y++) {
            memset(row, 0, rowbytes);
            for (uint32_t x = 0; x < o->w; x++)
                for (int c = 0; c < ch; c++) {
                    unsigned v = png_sample(o, x, y, c);
                    size_t i = (size_t)x * (size_t)ch + (size_t)c;
                    if (o->depth == 16) {
                        row[2 * i] = (uint8_t)(v >> 8);
                        row[2 * i + 1] = (uint8_t)v;
                    } else if (o->depth == 8) {
                        row[i] = (uint8_t)v;
                    } else {
                        size_t per = 8 / (size_t)o->depth;
                        row[i / per] |= (uint8_t)(v << (8 - o->depth * (int)(i % per + 1)));
                    }
                }
            png_write_row(png, row);
        }
    }
    if (o->extras) {
        png_text t[1];
        memset(t, 0, sizeof(t));
        t[0].compression = PNG_TEXT_COMPRESSION_zTXt;
        t[0].key = (png_charp) "Description";
        t[0].text = (png_charp) "a zTXt chunk after the image data, kept in the tail";
        png_set_text(png, info, t, 1);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    *len = b.n;
    return b.p;
}

/* Round trip of a generated file, and its planes against the samples it was made from. */
static void png_check_generated(const struct png_opts *o, struct png_stats *st)
{
    size_t len;
    char what[160];
    uint8_t *buf = png_make(o, &len);
    snprintf(what, sizeof(what), "%ux%u type %d depth %d level %d strategy %d filters %d", o->w,
             o->h, o->ctype, o->depth, o->level, o->strategy, o->filters);
    struct codec_image *img = png_roundtrip(buf, len, what, st);
    int ch = png_channels(o->ctype);
    ck_assert_uint_eq(img->channels, (unsigned)ch);
    ck_assert_uint_eq(img->width, o->w);
    ck_assert_uint_eq(img->height, o->h);
    ck_assert_uint_eq(img->frames, 1);
    ck_assert_uint_eq(img->bits, o->depth == 16 ? 16 : 8);
    ck_assert_uint_eq(img->significant, (unsigned)o->depth);
    size_t hw = (size_t)o->w * o->h;
    for (uint32_t y = 0; y < o->h; y++)
        for (uint32_t x = 0; x < o->w; x++)
            for (int c = 0; c < ch; c++) {
                size_t at = (size_t)c * hw + (size_t)y * o->w + x;
                unsigned got = o->depth == 16 ? ((const uint16_t *)img->planes)[at]
                                              : ((const uint8_t *)img->planes)[at];
                ck_assert_uint_eq(got, png_sample(o, x, y, c));
            }
    codec_image_free(img);
    free(buf);
}

static struct png_opts png_default(uint32_t w, uint32_t h, int ctype, int depth)
{
    struct png_opts o = {w, h, ctype, depth, -1, -1, -1, 0, 0, 0, 0, 0};
    return o;
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(test_png_files)
{
    static const char *const names[] = {
        "mri-t1-axial-8bit.png",  "mri-t1-axial-12in16bit.png",         "mri-t1-sagittal-256.png",
        "mri-t1-coronal-512.png", "mri-t1-coronal-512-imagemagick.png", "mri-t1-rgb.png"};
    static struct png_stats st = {.name = "test files", .max_median = 1.0};
    const char *dir = getenv("IMGC_TESTDATA");
    char path[4096];
    st.n = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", names[i]);
        uint8_t *buf = unit_read_file(path, &len);
        codec_image_free(png_roundtrip(buf, len, names[i], &st));
        free(buf);
    }
    png_stats_print(&st);
}
END_TEST

START_TEST(test_png_libpng_formats)
{
    static const int types[][2] = {{0, 1}, {0, 2}, {0, 4}, {0, 8}, {0, 16}, {2, 8}, {2, 16}, {3, 1},
                                   {3, 2}, {3, 4}, {3, 8}, {4, 8}, {4, 16}, {6, 8}, {6, 16}};
    static const uint32_t sizes[][2] = {{1, 1},  {1, 17},  {17, 1}, {3, 5},
                                        {13, 7}, {61, 31}, {64, 64}};
    static struct png_stats st = {.name = "libpng fmt"};
    st.n = 0;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            struct png_opts o = png_default(sizes[s][0], sizes[s][1], types[t][0], types[t][1]);
            o.extras = (int)(s % 2);
            o.filters = s % 3 == 0 ? PNG_ALL_FILTERS : -1;
            png_check_generated(&o, &st);
        }
    png_stats_print(&st);
}
END_TEST

/* Adam7: every colour type and depth, sizes where some passes are empty or one pixel wide;
 * the planes are the de-interlaced image. */
START_TEST(test_png_adam7_formats)
{
    static const int types[][2] = {{0, 1}, {0, 2}, {0, 4}, {0, 8}, {0, 16}, {2, 8}, {2, 16}, {3, 1},
                                   {3, 2}, {3, 4}, {3, 8}, {4, 8}, {4, 16}, {6, 8}, {6, 16}};
    static const uint32_t sizes[][2] = {{1, 1}, {2, 1}, {1, 5},  {5, 1},
                                        {3, 3}, {8, 8}, {13, 7}, {61, 31}};
    static struct png_stats st = {.name = "libpng adam7"};
    st.n = 0;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            struct png_opts o = png_default(sizes[s][0], sizes[s][1], types[t][0], types[t][1]);
            o.interlace = 1;
            o.extras = (int)(s % 2);
            o.filters = s % 3 == 0 ? PNG_ALL_FILTERS : -1;
            png_check_generated(&o, &st);
        }
    /* zlib settings and a filter set over passes */
    for (int level = 0; level <= 9; level += 3) {
        struct png_opts o = png_default(97, 89, 2, 8);
        o.interlace = 1;
        o.level = level;
        o.zbuf = 211;
        png_check_generated(&o, &st);
    }
    png_stats_print(&st);
}
END_TEST

/* ImageMagick's interlaced copies of two test files: exact, small recipes, and the same planes
 * as the files they were made from. */
START_TEST(test_png_adam7_files)
{
    static const char *const names[][2] = {
        {"mri-t1-sagittal-256-adam7.png", "mri-t1-sagittal-256.png"},
        {"mri-t1-axial-12in16bit-adam7.png", "mri-t1-axial-12in16bit.png"}};
    static struct png_stats st = {.name = "adam7 files", .max_median = 1.0};
    const char *dir = getenv("IMGC_TESTDATA");
    char path[4096];
    st.n = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len, len0;
        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", names[i][0]);
        uint8_t *buf = unit_read_file(path, &len);
        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", names[i][1]);
        uint8_t *buf0 = unit_read_file(path, &len0);
        struct codec_image *img = png_roundtrip(buf, len, names[i][0], &st);
        struct codec_image *img0 = png_roundtrip(buf0, len0, names[i][1], NULL);
        ck_assert_uint_eq(img->planes_bytes, img0->planes_bytes);
        ck_assert_msg(memcmp(img->planes, img0->planes, img->planes_bytes) == 0,
                      "%s: planes differ from the non-interlaced file", names[i][0]);
        codec_image_free(img);
        codec_image_free(img0);
        free(buf);
        free(buf0);
    }
    png_stats_print(&st);
}
END_TEST

START_TEST(test_png_libpng_zlib)
{
    static const int filters[] = {PNG_FILTER_NONE, PNG_FILTER_SUB,   PNG_FILTER_UP,
                                  PNG_FILTER_AVG,  PNG_FILTER_PAETH, PNG_ALL_FILTERS};
    static struct png_stats st = {.name = "libpng zlib", .max_median = 1.0};
    st.n = 0;
    for (int ctype = 0; ctype <= 2; ctype += 2) {
        /* every level with every strategy */
        for (int level = 0; level <= 9; level++)
            for (int strategy = 0; strategy <= 4; strategy++) {
                if (unit_quick() && level % 3 != 0)
                    continue;
                struct png_opts o = png_default(97, 89, ctype, 8);
                o.level = level;
                o.strategy = strategy;
                png_check_generated(&o, &st);
            }
        for (size_t f = 0; f < sizeof(filters) / sizeof(filters[0]); f++) {
            struct png_opts o = png_default(101, 67, ctype, 8);
            o.filters = filters[f];
            png_check_generated(&o, &st);
            o.depth = 16;
            png_check_generated(&o, &st);
        }
        for (int m = 1; m <= 9; m++) {
            struct png_opts o = png_default(131, 71, ctype, 8);
            o.mem_level = m;
            png_check_generated(&o, &st);
        }
        for (int wb = 8; wb <= 15; wb++) {
            struct png_opts o = png_default(257, 129, ctype, 8);
            o.window_bits = wb;
            o.level = 9;
            png_check_generated(&o, &st);
        }
        /* many small IDAT chunks */
        struct png_opts o = png_default(211, 97, ctype, 8);
        o.zbuf = 97;
        o.extras = 1;
        png_check_generated(&o, &st);
    }
    png_stats_print(&st);
}
END_TEST

/* Run a command with /bin/sh; its exit status, or -1. */
static int png_run(const char *cmd)
{
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Round trip every file in dir; returns how many. */
static size_t png_roundtrip_dir(const char *dir, struct png_stats *st)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    char path[4096];
    size_t n = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".png"))
            continue;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        uint8_t *buf = unit_read_file(path, &len);
        codec_image_free(png_roundtrip(buf, len, de->d_name, st));
        free(buf);
        unlink(path);
        n++;
    }
    closedir(d);
    return n;
}

static const char png_pil_script[] =
    "import sys\n"
    "from PIL import Image\n"
    "src, out = sys.argv[1], sys.argv[2]\n"
    "base = Image.open(src).convert('L')\n"
    "rgb = Image.merge('RGB', (base, base.rotate(90), base.transpose(Image.FLIP_LEFT_RIGHT)))\n"
    "modes = {'L': base, 'RGB': rgb, 'RGBA': rgb.convert('RGBA'), 'LA': base.convert('LA'),\n"
    "         'P': rgb.quantize(64), 'P4': base.quantize(16), '1': base.convert('1'),\n"
    "         'I16': base.point(lambda v: v * 200).convert('I;16')}\n"
    "for name, im in modes.items():\n"
    "    if name == 'I16':\n"
    "        im = base.convert('I').point(lambda v: v * 200).convert('I;16')\n"
    "    for level in map(int, sys.argv[3].split(',')):\n"
    "        im.save('%s/%s-c%d.png' % (out, name, level), compress_level=level)\n"
    "    im.save('%s/%s-opt.png' % (out, name), optimize=True)\n"
    "    im.save('%s/%s-bits.png' % (out, name), bits=4) if name == 'P4' else None\n";

START_TEST(test_png_pillow)
{
    static struct png_stats st = {.name = "Pillow", .max_median = 1.0};
    char dir[] = "/tmp/imgc-png-pil-XXXXXX", cmd[8192], script[256];
    const char *data = getenv("IMGC_TESTDATA");
    st.n = 0;
    if (png_run("/usr/bin/python3 -c 'import PIL' 2>/dev/null") != 0) {
        printf("codec_png: Pillow SKIPPED (/usr/bin/python3 with PIL not found)\n");
        return;
    }
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(script, sizeof(script), "%s/gen.py", dir);
    FILE *f = fopen(script, "w");
    ck_assert_ptr_nonnull(f);
    fputs(png_pil_script, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s/mri-t1-sagittal-256.png %s %s", script,
             data ? data : "tests/data", dir, unit_quick() ? "0,1,6,9" : "0,1,2,3,4,5,6,7,8,9");
    ck_assert_int_eq(png_run(cmd), 0);
    unlink(script);
    ck_assert_uint_ge(png_roundtrip_dir(dir, &st), unit_quick() ? 40 : 80);
    rmdir(dir);
    png_stats_print(&st);
}
END_TEST

START_TEST(test_png_imagemagick)
{
    static struct png_stats st = {.name = "ImageMagick", .max_median = 1.0};
    static const char *const args[] = {"",
                                       "-define png:compression-level=0",
                                       "-define png:compression-level=1",
                                       "-define png:compression-level=9",
                                       "-define png:compression-filter=0",
                                       "-define png:compression-filter=5",
                                       "-define png:compression-strategy=1",
                                       "-define png:compression-strategy=2",
                                       "-define png:compression-strategy=3",
                                       "-quality 95",
                                       "-quality 0",
                                       "-depth 16",
                                       "-type Palette",
                                       "-type TrueColor",
                                       "-type TrueColorAlpha",
                                       "-type GrayscaleAlpha",
                                       "-type Bilevel",
                                       "-colors 4",
                                       "-strip",
                                       "-define png:color-type=2 -define png:bit-depth=16",
                                       "-resize 37x53!",
                                       "-interlace PNG",
                                       "-interlace PNG -depth 16",
                                       "-interlace PNG -type Palette",
                                       "-interlace PNG -type Bilevel",
                                       "-interlace PNG -type TrueColorAlpha",
                                       "-interlace PNG -define png:compression-level=1",
                                       "-interlace PNG -resize 5x3!"};
    char dir[] = "/tmp/imgc-png-im-XXXXXX", cmd[8192];
    const char *data = getenv("IMGC_TESTDATA");
    st.n = 0;
    if (png_run("command -v convert >/dev/null 2>&1 && convert -version >/dev/null 2>&1") != 0) {
        printf("codec_png: ImageMagick SKIPPED (convert not found)\n");
        return;
    }
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        snprintf(cmd, sizeof(cmd), "convert %s/mri-t1-sagittal-256.png %s %s/im-%zu.png",
                 data ? data : "tests/data", args[i], dir, i);
        ck_assert_msg(png_run(cmd) == 0, "%s", cmd);
    }
    ck_assert_uint_eq(png_roundtrip_dir(dir, &st), sizeof(args) / sizeof(args[0]));
    rmdir(dir);
    png_stats_print(&st);
}
END_TEST

/* Recompressors (other deflaters than zlib: zopfli, 7-zip's in advpng, and zlib driven by
 * optipng and pngcrush). Each tool that is installed must give exact files; absent ones are
 * reported as skipped. */
/*
 * Slices of the brain MRI volumes of mricron-data (scripts/nii_slices.py): 8-bit (ch2) and
 * 16-bit (inia19), as Pillow writes them and as ImageMagick rewrites them, and the same slices
 * as PGM through the PNM adapter: every file exact, the PNG recipes small.
 */
START_TEST(test_png_mricron)
{
    static struct png_stats st = {.name = "mricron", .max_median = 1.0};
    char dir[] = "/tmp/imgc-png-nii-XXXXXX", cmd[8192];
    const char *data = getenv("IMGC_TESTDATA");
    st.n = 0;
    if (png_run("test -d /usr/share/mricron/templates") != 0) {
        printf("codec_png: mricron SKIPPED (mricron-data not installed)\n");
        return;
    }
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* the script lives beside tests/data: ../../scripts */
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s/../../scripts/nii_slices.py --out %s --per-axis %d "
             "--volumes ch2,inia19-t1-brain >/dev/null && "
             "/usr/bin/python3 %s/../../scripts/nii_slices.py --out %s --per-axis 1 "
             "--volumes ch2,inia19-t1-brain --format pgm >/dev/null && "
             "for f in %s/*.png; do convert \"$f\" \"${f%%.png}-im.png\"; done",
             data ? data : "tests/data", dir, unit_quick() ? 1 : 3, data ? data : "tests/data", dir,
             dir);
    ck_assert_msg(png_run(cmd) == 0, "%s", cmd);
    ck_assert_uint_ge(png_roundtrip_dir(dir, &st), unit_quick() ? 12 : 36);
    /* the PGMs */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    size_t npgm = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".pgm"))
            continue;
        char path[4096];
        size_t len, env_len, out_len;
        struct codec_image *img = NULL;
        uint8_t *env = NULL, *out = NULL;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        uint8_t *buf = unit_read_file(path, &len);
        ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, NULL, 0), 0);
        ck_assert_int_eq(img->format, CODEC_FORMAT_PNM);
        ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
        ck_assert(out_len == len && memcmp(out, buf, len) == 0);
        free(out);
        free(env);
        free(buf);
        codec_image_free(img);
        unlink(path);
        npgm++;
    }
    closedir(d);
    ck_assert_uint_eq(npgm, 6);
    rmdir(dir);
    png_stats_print(&st);
}
END_TEST

START_TEST(test_png_recompressors)
{
    static struct png_stats st = {.name = "recompress"};
    static const struct {
        const char *tool, *cmd; /* shell: $SRC the source, $OUT the output folder */
    } tools[] = {
        {"zopflipng", "zopflipng -y -q --iterations=5 $SRC $OUT/zopfli.png >/dev/null"},
        {"zopflipng", "zopflipng -y -m --filters=0me $SRC $OUT/zopfli-m.png >/dev/null"},
        {"advpng", "cp $SRC $OUT/adv4.png && advpng -z -4 -f -q $OUT/adv4.png"},
        {"advpng", "cp $SRC $OUT/adv3.png && advpng -z -3 -f -q $OUT/adv3.png"},
        {"optipng", "optipng -quiet -o2 -out $OUT/opti2.png $SRC"},
        {"optipng", "optipng -quiet -o7 -zm1-9 -out $OUT/opti7.png $SRC"},
        {"pngcrush", "pngcrush -q $SRC $OUT/crush.png >/dev/null 2>&1"},
        {"pngcrush", "pngcrush -q -brute $SRC $OUT/crush-brute.png >/dev/null 2>&1"},
    };
    static const char *const srcs[] = {"mri-t1-sagittal-256.png", "mri-t1-rgb.png"};
    char dir[] = "/tmp/imgc-png-re-XXXXXX", cmd[8192], src[4096], probe[256];
    const char *data = getenv("IMGC_TESTDATA");
    size_t ran = 0;
    st.n = 0;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t s = 0; s < sizeof(srcs) / sizeof(srcs[0]); s++) {
        snprintf(src, sizeof(src), "%s/%s", data ? data : "tests/data", srcs[s]);
        for (size_t t = 0; t < sizeof(tools) / sizeof(tools[0]); t++) {
            if (s > 0 && t % 2 == 1)
                continue; /* the slow settings on the small source only */
            snprintf(probe, sizeof(probe), "command -v %s >/dev/null 2>&1", tools[t].tool);
            if (png_run(probe) != 0) {
                if (s == 0)
                    printf("codec_png: %s SKIPPED (not installed)\n", tools[t].tool);
                continue;
            }
            snprintf(cmd, sizeof(cmd), "SRC='%s' OUT='%s'; %s", src, dir, tools[t].cmd);
            ck_assert_msg(png_run(cmd) == 0, "%s", cmd);
            ran++;
        }
        png_roundtrip_dir(dir, &st);
    }
    rmdir(dir);
    if (ran)
        png_stats_print(&st);
}
END_TEST

static uint32_t png_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void png_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t png_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Recompute the CRC of every whole chunk (so that a flipped bit reaches the parsers). */
static void png_fix_crcs(uint8_t *b, size_t len)
{
    for (size_t p = 8; len - p >= 12;) {
        uint32_t n = png_be32(b + p);
        if (n > len - p - 12)
            break;
        png_put_be32(b + p + 8 + n, png_crc(b + p + 4, 4 + (size_t)n));
        p += 12 + (size_t)n;
    }
}

static int png_split_ret(const uint8_t *buf, size_t len, char *why, size_t whylen)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL;
    size_t env_len = 0;
    int ret = codec_split(buf, len, &img, &env, &env_len, why, whylen);
    free(env);
    codec_image_free(img);
    return ret;
}

START_TEST(test_png_malformed)
{
    struct png_opts o = png_default(13, 7, 3, 2);
    o.extras = 1;
    size_t len;
    uint8_t *good = png_make(&o, &len);
    uint8_t *b = malloc(len + 64);
    ck_assert_ptr_nonnull(b);
    char why[128];

    /* every truncation */
    for (size_t n = 0; n < len; n++)
        ck_assert_int_eq(png_split_ret(good, n, why, sizeof(why)), -ENOTSUP);
    /* every bit flipped: the CRCs refuse, or the file comes back exactly */
    for (size_t i = 0; i < len * 8; i++) {
        memcpy(b, good, len);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        png_refused_or_exact(b, len);
        png_fix_crcs(b, len); /* and again with the CRCs repaired, to reach zlib and libpng */
        png_refused_or_exact(b, len);
    }
    /* the same on an 8-bit RGB file with several IDAT chunks */
    free(good);
    o = png_default(9, 6, 2, 8);
    o.zbuf = 40;
    good = png_make(&o, &len);
    b = realloc(b, len + 64);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len * 8; i += 3) {
        memcpy(b, good, len);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        png_fix_crcs(b, len);
        png_refused_or_exact(b, len);
    }

    /* a bad CRC alone */
    memcpy(b, good, len);
    b[29] ^= 1; /* IHDR's CRC */
    ck_assert_int_eq(png_split_ret(b, len, why, sizeof(why)), -ENOTSUP);
    ck_assert_str_eq(why, "PNG: bad CRC");
    /* trailing bytes after IEND are kept */
    memcpy(b, good, len);
    memcpy(b + len, "trailing garbage", 16); // NOLINT(bugprone-not-null-terminated-result): bytes
    codec_image_free(png_roundtrip(b, len + 16, "trailing", NULL));

    /* absurd IHDRs, CRC repaired */
    static const struct {
        uint32_t w, h;
        uint8_t depth, ctype, comp, filt, lace;
        int want;
    } bad[] = {
        {0, 6, 8, 2, 0, 0, 0, -ENOTSUP},
        {9, 0, 8, 2, 0, 0, 0, -ENOTSUP},
        {0x80000000u, 6, 8, 2, 0, 0, 0, -ENOTSUP},
        {0xffffffffu, 0xffffffffu, 8, 2, 0, 0, 0, -ENOTSUP},
        {70000, 6, 8, 2, 0, 0, 0, -EFBIG},
        {65536, 65536, 16, 6, 0, 0, 0, -EFBIG},
        {0x7fffffffu, 0x7fffffffu, 8, 2, 0, 0, 0, -EFBIG},
        {9, 6, 3, 2, 0, 0, 0, -ENOTSUP},
        {9, 6, 8, 5, 0, 0, 0, -ENOTSUP},
        {9, 6, 4, 2, 0, 0, 0, -ENOTSUP},
        {9, 6, 16, 3, 0, 0, 0, -ENOTSUP},
        {9, 6, 8, 2, 1, 0, 0, -ENOTSUP},
        {9, 6, 8, 2, 0, 1, 0, -ENOTSUP},
        {9, 6, 8, 2, 0, 0, 2, -ENOTSUP},
        {9, 6, 8, 2, 0, 0, 1, -ENOTSUP},
        {10, 6, 8, 2, 0, 0, 0, -ENOTSUP},
        {9, 5, 8, 2, 0, 0, 0, -ENOTSUP},
        {9, 6, 16, 2, 0, 0, 0, -ENOTSUP},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(b, good, len);
        png_put_be32(b + 16, bad[i].w);
        png_put_be32(b + 20, bad[i].h);
        b[24] = bad[i].depth;
        b[25] = bad[i].ctype;
        b[26] = bad[i].comp;
        b[27] = bad[i].filt;
        b[28] = bad[i].lace;
        png_fix_crcs(b, len);
        ck_assert_msg(png_split_ret(b, len, why, sizeof(why)) == bad[i].want, "IHDR case %zu", i);
    }
    free(good);
    free(b);

    /* an interlaced file: a bad filter type in a later pass, the interlace flag cleared (the
     * stream is longer than the rows), and cuts and byte flips refused or exact */
    o = png_default(17, 11, 2, 8);
    o.interlace = 1;
    o.level = 0; /* stored blocks: the filter bytes are in the file as is */
    good = png_make(&o, &len);
    codec_image_free(png_roundtrip(good, len, "adam7 stored", NULL));
    b = malloc(len);
    ck_assert_ptr_nonnull(b);
    size_t idat = 8;
    while (memcmp(good + idat + 4, "IDAT", 4) != 0)
        idat += 12 + png_be32(good + idat);
    /* zlib header 2, one final stored block (head 5); pass 1 (3x2, 10-byte rows) and pass 2
     * (2x2, 7-byte rows) before pass 3's first row, whose filter byte is made 5; the zlib
     * checksum is made right again */
    const uint8_t *blk = good + idat + 8 + 2;
    size_t stored = (size_t)blk[1] | (size_t)blk[2] << 8;
    ck_assert_uint_eq(blk[0], 1);
    memcpy(b, good, len);
    b[idat + 8 + 2 + 5 + 2 * 10 + 2 * 7] = 5;
    png_put_be32(b + idat + 8 + 2 + 5 + stored,
                 (uint32_t)adler32(1, b + idat + 8 + 2 + 5, (uInt)stored));
    png_fix_crcs(b, len);
    ck_assert_int_eq(png_split_ret(b, len, why, sizeof(why)), -ENOTSUP);
    ck_assert_str_eq(why, "PNG: bad filter type");
    memcpy(b, good, len);
    b[28] = 0;
    png_fix_crcs(b, len);
    ck_assert_int_eq(png_split_ret(b, len, why, sizeof(why)), -ENOTSUP);
    ck_assert_str_eq(why, "PNG: too much image data"); /* passes add filter bytes */
    for (size_t n = 0; n < len; n += 7)
        png_refused_or_exact(good, n);
    for (size_t i = 0; i < len; i += 3) {
        memcpy(b, good, len);
        b[i] ^= 0x20;
        png_fix_crcs(b, len);
        png_refused_or_exact(b, len);
    }
    free(b);
    free(good);
}
END_TEST

/* IDAT chunks split by another chunk, and a chunk order libpng refuses. */
START_TEST(test_png_layout)
{
    struct png_opts o = png_default(31, 17, 0, 8);
    o.zbuf = 64;
    size_t len;
    char why[128];
    uint8_t *good = png_make(&o, &len);
    uint8_t *b = malloc(len + 64);
    ck_assert_ptr_nonnull(b);
    /* find the first IDAT; put a tEXt chunk after it */
    size_t p = 8;
    while (memcmp(good + p + 4, "IDAT", 4) != 0)
        p += 12 + png_be32(good + p);
    size_t after = p + 12 + png_be32(good + p);
    ck_assert_int_eq(memcmp(good + after + 4, "IDAT", 4), 0);
    static const uint8_t text[] = {0, 0, 0, 3, 't', 'E', 'X', 't', 'a', 0, 'b', 0, 0, 0, 0};
    memcpy(b, good, after);
    memcpy(b + after, text, sizeof(text));
    memcpy(b + after + sizeof(text), good + after, len - after);
    png_fix_crcs(b, len + sizeof(text));
    ck_assert_int_eq(png_split_ret(b, len + sizeof(text), why, sizeof(why)), -ENOTSUP);
    ck_assert_str_eq(why, "PNG: IDAT chunks not consecutive");
    /* the tEXt chunk before IHDR */
    memcpy(b, good, 8);
    memcpy(b + 8, text, sizeof(text));
    memcpy(b + 8 + sizeof(text), good + 8, len - 8);
    png_fix_crcs(b, len + sizeof(text));
    ck_assert_int_eq(png_split_ret(b, len + sizeof(text), why, sizeof(why)), -ENOTSUP);
    /* an unknown critical chunk: libpng refuses, so do we */
    static const uint8_t crit[] = {0, 0, 0, 1, 'X', 'x', 'X', 'x', 7, 0, 0, 0, 0};
    memcpy(b, good, 33);
    memcpy(b + 33, crit, sizeof(crit));
    memcpy(b + 33 + sizeof(crit), good + 33, len - 33);
    png_fix_crcs(b, len + sizeof(crit));
    ck_assert_int_eq(png_split_ret(b, len + sizeof(crit), why, sizeof(why)), -ENOTSUP);
    /* an empty IDAT chunk in the run is kept */
    static const uint8_t empty[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 0, 0};
    memcpy(b, good, after);
    memcpy(b + after, empty, sizeof(empty));
    memcpy(b + after + sizeof(empty), good + after, len - after);
    png_fix_crcs(b, len + sizeof(empty));
    codec_image_free(png_roundtrip(b, len + sizeof(empty), "empty IDAT", NULL));
    free(b);
    free(good);
}
END_TEST

/* join refuses damaged envelopes and samples that do not fit the bit depth. */
START_TEST(test_png_join_checks)
{
    struct png_opts o = png_default(23, 9, 0, 4);
    size_t len, env_len, out_len;
    uint8_t *buf = png_make(&o, &len), *env, *out;
    struct codec_image *img;
    char why[128];
    ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, why, sizeof(why)), 0);
    for (size_t n = 0; n < env_len; n++) {
        out = NULL;
        ck_assert_int_ne(codec_join(img, env, n, &out, &out_len), 0);
        ck_assert_ptr_null(out);
    }
    for (size_t i = 0; i < env_len; i++) {
        env[i] ^= 0x41;
        out = NULL;
        int ret = codec_join(img, env, env_len, &out, &out_len);
        ck_assert(ret == 0 || ret == -EINVAL || ret == -EFBIG);
        free(out);
        env[i] ^= 0x41;
    }
    ((uint8_t *)img->planes)[5] = 16; /* does not fit 4 bits */
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    ((uint8_t *)img->planes)[5] ^= 1; /* fits, but the recipe's matches no longer agree */
    ((uint8_t *)img->planes)[5] = (uint8_t)(png_sample(&o, 5, 0, 0) ^ 1);
    out = NULL;
    int ret = codec_join(img, env, env_len, &out, &out_len);
    ck_assert_msg(ret == -EINVAL || (ret == 0 && (out_len != len || memcmp(out, buf, len) != 0)),
                  "changed pixels joined to the original");
    free(out);
    free(env);
    codec_image_free(img);
    free(buf);
}
END_TEST

static Suite *codec_png_suite(void)
{
    Suite *s = suite_create("codec_png");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_png_files);
    tcase_add_test(tc, test_png_libpng_formats);
    tcase_add_test(tc, test_png_adam7_formats);
    tcase_add_test(tc, test_png_adam7_files);
    tcase_add_test(tc, test_png_libpng_zlib);
    tcase_add_test(tc, test_png_pillow);
    tcase_add_test(tc, test_png_imagemagick);
    tcase_add_test(tc, test_png_recompressors);
    tcase_add_test(tc, test_png_mricron);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_png_malformed);
    tcase_add_test(tc, test_png_layout);
    tcase_add_test(tc, test_png_join_checks);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(codec_png_suite)
