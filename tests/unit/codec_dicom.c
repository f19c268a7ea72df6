// SPDX-License-Identifier: MIT
/*
 * Unit tests of the DICOM adapter. Real files: every file of python3-pydicom's data folder
 * (IMGC_PYDICOM_DIR, Debian's path by default) and the DICOM files in tests/data must split
 * and join byte for byte or be refused with -ENOTSUP; tests/data/pydicom-manifest.txt, written
 * by tests/data/pydicom-manifest.py with pydicom as the independent parser, says which must be
 * exact and what their planes hash to. Generated files cover what the corpus lacks (nested
 * undefined lengths, UN sequences, multi-frame planar RGB, big-endian OW of 8-bit samples) and
 * the limits; truncations and bit flips must fail cleanly.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/codec.h"
#include "tests/unit/unit.h"

#define DCM_TEST_PYDICOM "/usr/lib/python3/dist-packages/pydicom/data"
#define DCM_TEST_MAX_FILE (64u << 20)

static const char *dcm_test_data(void)
{
    const char *dir = getenv("IMGC_TESTDATA");
    return dir ? dir : "tests/data";
}

/* FNV-1a over the planes, 16-bit samples as two bytes little-endian (as the manifest). */
static uint64_t dcm_test_hash(const struct codec_image *img)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t n = img->planes_bytes / (img->bits / 8);
    for (size_t i = 0; i < n; i++) {
        unsigned v = img->bits == 16 ? ((const uint16_t *)img->planes)[i]
                                     : ((const uint8_t *)img->planes)[i];
        for (unsigned b = 0; b < img->bits / 8; b++) {
            h ^= (v >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

/* Split and join: 0 with an exact join (image returned through *out if asked), or a clean
 * refusal (-ENOTSUP/-EFBIG with a reason and nothing allocated). */
static int dcm_test_roundtrip(const uint8_t *buf, size_t len, struct codec_image **out, char *why,
                              size_t whylen)
{
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *file = NULL;
    size_t env_len = 0, file_len = 0;
    why[0] = 0;
    int ret = codec_split(buf, len, &img, &env, &env_len, why, whylen);
    if (ret != 0) {
        ck_assert_msg(ret == -ENOTSUP || ret == -EFBIG, "split: %d", ret);
        ck_assert_msg(why[0] != 0, "refusal without a reason");
        ck_assert_ptr_null(img);
        return ret;
    }
    ck_assert_uint_ge(img->significant, 1);
    ck_assert_uint_le(img->significant, img->bits);
    ck_assert_int_eq(codec_join(img, env, env_len, &file, &file_len), 0);
    ck_assert_uint_eq(file_len, len);
    ck_assert_msg(memcmp(file, buf, len) == 0, "join differs");
    free(file);
    free(env);
    if (out)
        *out = img;
    else
        codec_image_free(img);
    return 0;
}

/* The manifest: one line per file, "<where>/<path> refuse|exact R C S F B HASH". */
struct dcm_manifest {
    char **lines;
    size_t count;
};

static void dcm_manifest_load(struct dcm_manifest *m)
{
    char path[4096], line[4096];
    snprintf(path, sizeof(path), "%s/pydicom-manifest.txt", dcm_test_data());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    m->lines = NULL;
    m->count = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        m->lines = realloc(m->lines, (m->count + 1) * sizeof(*m->lines));
        ck_assert_ptr_nonnull(m->lines);
        m->lines[m->count++] = strdup(line);
    }
    fclose(f);
    ck_assert_uint_gt(m->count, 0);
}

static void dcm_manifest_free(struct dcm_manifest *m)
{
    for (size_t i = 0; i < m->count; i++)
        free(m->lines[i]);
    free(m->lines);
}

/* The verdict for key ("pydicom/..." or "repo/..."), or NULL. */
static const char *dcm_manifest_find(const struct dcm_manifest *m, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < m->count; i++)
        if (strncmp(m->lines[i], key, n) == 0 && m->lines[i][n] == ' ')
            return m->lines[i] + n + 1;
    return NULL;
}

struct dcm_tally {
    const struct dcm_manifest *m;
    size_t files, dicom, listed, exact, refused;
    char reasons[32][128];
    size_t reason_count[32];
};

static void dcm_tally_reason(struct dcm_tally *t, const char *why)
{
    for (size_t i = 0; i < 32; i++) {
        if (t->reasons[i][0] == 0)
            snprintf(t->reasons[i], sizeof(t->reasons[i]), "%s", why);
        if (strcmp(t->reasons[i], why) == 0) {
            t->reason_count[i]++;
            return;
        }
    }
}

/* One file against its verdict (NULL: not in the manifest, either answer is fine). */
static void dcm_test_file(struct dcm_tally *t, const char *path, const char *verdict)
{
    size_t len;
    char why[128];
    struct codec_image *img = NULL;
    uint8_t *buf = unit_read_file(path, &len);
    t->files++;
    if (codec_sniff(buf, len) == CODEC_FORMAT_DICOM)
        t->dicom++;
    int ret = dcm_test_roundtrip(buf, len, &img, why, sizeof(why));
    if (ret == 0) {
        t->exact++;
    } else {
        t->refused++;
        dcm_tally_reason(t, why);
    }
    if (verdict) {
        t->listed++;
        if (strncmp(verdict, "exact", 5) == 0) {
            unsigned r, c, s, f, b;
            unsigned long long hash;
            /* the adapter's own verdict line: sscanf's lack of range errors does not matter */
            // NOLINTNEXTLINE(cert-err34-c)
            int got = sscanf(verdict, "exact %u %u %u %u %u %llx", &r, &c, &s, &f, &b, &hash);
            ck_assert_int_eq(got, 6);
            ck_assert_msg(ret == 0, "%s refused: %s", path, why);
            ck_assert_int_eq(img->format, CODEC_FORMAT_DICOM);
            ck_assert_uint_eq(img->height, r);
            ck_assert_uint_eq(img->width, c);
            ck_assert_uint_eq(img->channels, s);
            ck_assert_uint_eq(img->frames, f);
            ck_assert_uint_eq(img->bits, b);
            ck_assert_msg(dcm_test_hash(img) == hash, "%s: planes differ from pydicom's", path);
        } else {
            ck_assert_msg(ret == -ENOTSUP, "%s: %d, expected a refusal", path, ret);
        }
    }
    codec_image_free(img);
    free(buf);
}

static void dcm_test_walk(struct dcm_tally *t, const char *root, const char *rel)
{
    char dirpath[4096];
    snprintf(dirpath, sizeof(dirpath), "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(dirpath);
    ck_assert_msg(d != NULL, "cannot open %s", dirpath);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char sub[4096], path[8200], key[4200];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(path, sizeof(path), "%s/%s", root, sub);
        ck_assert_int_eq(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            dcm_test_walk(t, root, sub);
        } else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size <= DCM_TEST_MAX_FILE) {
            snprintf(key, sizeof(key), "pydicom/%s", sub);
            dcm_test_file(t, path, dcm_manifest_find(t->m, key));
        }
    }
    closedir(d);
}

/* Every file of pydicom's data: exact or refused, as pydicom's own reading says. Fails when
 * the folder is missing or holds no DICOM file, so an absent package cannot pass. */
START_TEST(test_dicom_pydicom)
{
    struct dcm_manifest m;
    struct dcm_tally t;
    const char *env = getenv("IMGC_PYDICOM_DIR"), *root = env ? env : DCM_TEST_PYDICOM;
    struct stat st;
    ck_assert_msg(stat(root, &st) == 0 && S_ISDIR(st.st_mode),
                  "%s missing: install python3-pydicom or set IMGC_PYDICOM_DIR", root);
    dcm_manifest_load(&m);
    memset(&t, 0, sizeof(t));
    t.m = &m;
    dcm_test_walk(&t, root, "");
    ck_assert_msg(t.dicom > 0, "no DICOM file under %s", root);
    ck_assert_msg(t.listed > 0, "no file of the manifest under %s", root);
    ck_assert_uint_gt(t.exact, 0);
    printf("pydicom corpus %s: %zu files, %zu DICOM, %zu exact, %zu refused\n", root, t.files,
           t.dicom, t.exact, t.refused);
    for (size_t i = 0; i < 32 && t.reasons[i][0]; i++)
        printf("  %4zu  %s\n", t.reason_count[i], t.reasons[i]);
    dcm_manifest_free(&m);
}
END_TEST

/* The DICOM files kept in tests/data, against the same manifest. */
START_TEST(test_dicom_repo)
{
    struct dcm_manifest m;
    struct dcm_tally t;
    static const char *const must[][2] = {
        {"MR_small.dcm", "exact"},
        {"CT_small.dcm", "exact"},
        {"MR_small_bigendian.dcm", "exact"},
        {"MR_small_implicit.dcm", "exact"},
        {"ExplVR_BigEnd.dcm", "exact"},
        {"SC_rgb_small_odd.dcm", "exact"},
        {"MR_small_RLE.dcm", "exact"},
        {"SC_rgb_rle.dcm", "exact"},
        {"SC_rgb_rle_16bit_2frame.dcm", "exact"},
        {"rtdose_rle.dcm", "exact"},
        {"rle_pydicom_runs.dcm", "exact"},
        {"JPEG2000.dcm", "refuse"},
        {"MR_small_padded.dcm", "exact"},
        {"image_dfl.dcm", "refuse"},
        {"rtdose.dcm", "exact"},
        {"rtdose_expb.dcm", "exact"},
        {"SC_ybr_full_422_uncompressed.dcm", "exact"},
    };
    dcm_manifest_load(&m);
    memset(&t, 0, sizeof(t));
    t.m = &m;
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
        char path[4096], key[256];
        snprintf(key, sizeof(key), "repo/%s", must[i][0]);
        const char *verdict = dcm_manifest_find(&m, key);
        ck_assert_msg(verdict && strncmp(verdict, must[i][1], strlen(must[i][1])) == 0,
                      "manifest: %s", key);
        snprintf(path, sizeof(path), "%s/%s", dcm_test_data(), must[i][0]);
        dcm_test_file(&t, path, verdict);
    }
    dcm_manifest_free(&m);
}
END_TEST

/* Known values, read off the files with a hex editor and dcmdump. */
START_TEST(test_dicom_values)
{
    char path[4096], why[128];
    size_t len;
    struct codec_image *img = NULL;
    snprintf(path, sizeof(path), "%s/SC_rgb_small_odd.dcm", dcm_test_data());
    uint8_t *buf = unit_read_file(path, &len);
    ck_assert_int_eq(dcm_test_roundtrip(buf, len, &img, why, sizeof(why)), 0);
    /* 3×3 RGB interleaved, 27 bytes + 1 pad byte, the last element of the file. */
    const uint8_t *raster = buf + len - 28;
    const uint8_t *planes = img->planes;
    for (size_t p = 0; p < 9; p++)
        for (size_t c = 0; c < 3; c++)
            ck_assert_uint_eq(planes[c * 9 + p], raster[p * 3 + c]);
    ck_assert_uint_eq(img->significant, 8);
    codec_image_free(img);
    free(buf);
    /* The same MR slice in three transfer syntaxes gives the same planes. */
    static const char *const mr[] = {"MR_small.dcm", "MR_small_implicit.dcm",
                                     "MR_small_bigendian.dcm"};
    uint64_t first = 0;
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dcm_test_data(), mr[i]);
        buf = unit_read_file(path, &len);
        ck_assert_int_eq(dcm_test_roundtrip(buf, len, &img, why, sizeof(why)), 0);
        /* Samples 0, 1, 64, 2080 and 4095 as pydicom reads them. */
        static const unsigned at[] = {0, 1, 64, 2080, 4095}, want[] = {905, 1019, 628, 182, 862};
        for (size_t k = 0; k < 5; k++)
            ck_assert_uint_eq(((uint16_t *)img->planes)[at[k]], want[k]);
        if (i == 0)
            first = dcm_test_hash(img);
        else
            ck_assert(dcm_test_hash(img) == first);
        codec_image_free(img);
        free(buf);
    }
}
END_TEST

/* A little DICOM writer for generated files. */
struct dcm_w {
    uint8_t *p;
    size_t n;
    bool implicit, big;
};

static void dcm_w_bytes(struct dcm_w *w, const void *data, size_t n)
{
    w->p = realloc(w->p, w->n + n + 1);
    ck_assert_ptr_nonnull(w->p);
    if (n)
        memcpy(w->p + w->n, data, n);
    w->n += n;
}

static void dcm_w_u16(struct dcm_w *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    if (w->big) {
        b[0] = (uint8_t)(v >> 8);
        b[1] = (uint8_t)v;
    }
    dcm_w_bytes(w, b, 2);
}

static void dcm_w_u32(struct dcm_w *w, uint32_t v)
{
    if (w->big) {
        dcm_w_u16(w, v >> 16);
        dcm_w_u16(w, v & 0xffff);
    } else {
        dcm_w_u16(w, v & 0xffff);
        dcm_w_u16(w, v >> 16);
    }
}

/* An element header (and value when given). len 0xffffffff: undefined. */
static void dcm_w_elem(struct dcm_w *w, unsigned g, unsigned e, const char *vr, const void *value,
                       uint32_t len)
{
    dcm_w_u16(w, g);
    dcm_w_u16(w, e);
    if (g == 0xfffe || w->implicit) {
        dcm_w_u32(w, len);
    } else {
        dcm_w_bytes(w, vr, 2);
        if (strstr("OB OW SQ UN UT UC UR OD OF OL OV SV UV", vr)) {
            dcm_w_u16(w, 0);
            dcm_w_u32(w, len);
        } else {
            dcm_w_u16(w, len);
        }
    }
    if (value)
        dcm_w_bytes(w, value, len);
}

static void dcm_w_us(struct dcm_w *w, unsigned e, unsigned v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    if (w->big) {
        b[0] = (uint8_t)(v >> 8);
        b[1] = (uint8_t)v;
    }
    dcm_w_elem(w, 0x0028, e, "US", b, 2);
}

static void dcm_w_part10(struct dcm_w *w, const char *ts)
{
    uint8_t pre[128] = {0};
    char uid[66] = {0};
    size_t n = strlen(ts);
    w->implicit = w->big = false;
    dcm_w_bytes(w, pre, sizeof(pre));
    dcm_w_bytes(w, "DICM", 4);
    dcm_w_elem(w, 0x0002, 0x0001, "OB", "\0\1", 2);
    memcpy(uid, ts, n); // NOLINT(bugprone-not-null-terminated-result): bytes
    dcm_w_elem(w, 0x0002, 0x0010, "UI", uid, (uint32_t)(n + (n & 1)));
}

struct dcm_gen {
    const char *ts;
    unsigned rows, cols, spp, frames, bits, planar;
    bool ow, nested, trailer;
};

/* A file with the given geometry; *planes gets the samples it holds, in plane order. */
static uint8_t *dcm_generate(const struct dcm_gen *g, size_t *len, uint16_t **planes)
{
    struct dcm_w w = {0};
    bool implicit = strcmp(g->ts, "1.2.840.10008.1.2") == 0;
    bool big = strcmp(g->ts, "1.2.840.10008.1.2.2") == 0;
    size_t hw = (size_t)g->rows * g->cols, n = hw * g->spp * g->frames, bps = g->bits / 8;
    char frames[16];
    dcm_w_part10(&w, g->ts);
    w.implicit = implicit;
    w.big = big;
    dcm_w_elem(&w, 0x0008, 0x0060, "CS", "MR", 2);
    if (g->nested) {
        /* SQ (undefined) > item (undefined) > SQ (defined, one defined item) + UN sequence. */
        dcm_w_elem(&w, 0x0008, 0x1140, "SQ", NULL, 0xffffffff);
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0xffffffff);
        dcm_w_elem(&w, 0x0008, 0x1150, "UI", "1.2.3\0", 6);
        dcm_w_elem(&w, 0x0008, 0x1199, "SQ", NULL, 0xffffffff);
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 20);
        dcm_w_elem(&w, 0x0028, 0x0010, "US", "\7\0", 2); /* Rows in an item: not the image's */
        dcm_w_elem(&w, 0x0008, 0x0100, "SH", "AB", 2);
        dcm_w_elem(&w, 0xfffe, 0xe0dd, NULL, NULL, 0);
        dcm_w_elem(&w, 0xfffe, 0xe00d, NULL, NULL, 0);
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0); /* an empty item */
        dcm_w_elem(&w, 0xfffe, 0xe0dd, NULL, NULL, 0);
        if (!implicit) {
            /* UN of undefined length: its content is implicit VR little endian. */
            bool b = w.big;
            dcm_w_elem(&w, 0x0009, 0x1010, "UN", NULL, 0xffffffff);
            w.implicit = true;
            w.big = false;
            dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0xffffffff);
            dcm_w_elem(&w, 0x0009, 0x1011, NULL, "abcd", 4);
            dcm_w_elem(&w, 0xfffe, 0xe00d, NULL, NULL, 0);
            dcm_w_elem(&w, 0xfffe, 0xe0dd, NULL, NULL, 0);
            w.implicit = false;
            w.big = b;
        }
    }
    dcm_w_us(&w, 0x0002, g->spp);
    dcm_w_elem(&w, 0x0028, 0x0004, "CS", g->spp == 3 ? "RGB " : "MONOCHROME2 ",
               g->spp == 3 ? 4 : 12);
    if (g->spp > 1)
        dcm_w_us(&w, 0x0006, g->planar);
    snprintf(frames, sizeof(frames), "%u", g->frames);
    if (strlen(frames) % 2)
        strcat(frames, " ");
    dcm_w_elem(&w, 0x0028, 0x0008, "IS", frames, (uint32_t)strlen(frames));
    dcm_w_us(&w, 0x0010, g->rows);
    dcm_w_us(&w, 0x0011, g->cols);
    dcm_w_us(&w, 0x0100, g->bits);
    dcm_w_us(&w, 0x0101, g->bits == 16 ? 12 : 8);
    dcm_w_us(&w, 0x0102, g->bits == 16 ? 11 : 7);
    size_t raster = n * bps, padded = raster + (raster & 1);
    dcm_w_elem(&w, 0x7fe0, 0x0010, g->ow ? "OW" : "OB", NULL, (uint32_t)padded);
    size_t at = w.n;
    uint8_t *zero = calloc(1, padded);
    dcm_w_bytes(&w, zero, padded);
    free(zero);
    *planes = malloc(n * sizeof(**planes));
    ck_assert_ptr_nonnull(*planes);
    for (size_t f = 0; f < g->frames; f++) {
        for (size_t c = 0; c < g->spp; c++) {
            for (size_t p = 0; p < hw; p++) {
                unsigned v = (unsigned)((p * 31 + c * 1000 + f * 77 + p / 3) % 4096);
                if (g->bits == 8)
                    v &= 0xff;
                (*planes)[(c * g->frames + f) * hw + p] = (uint16_t)v;
                size_t s = g->planar ? (f * g->spp + c) * hw + p : (f * hw + p) * g->spp + c;
                if (g->bits == 8)
                    w.p[at + (s ^ (big && g->ow ? 1 : 0))] = (uint8_t)v;
                else if (big)
                    w.p[at + 2 * s] = (uint8_t)(v >> 8), w.p[at + 2 * s + 1] = (uint8_t)v;
                else
                    w.p[at + 2 * s] = (uint8_t)v, w.p[at + 2 * s + 1] = (uint8_t)(v >> 8);
            }
        }
    }
    if (g->trailer)
        dcm_w_elem(&w, 0xfffc, 0xfffc, "OB", "\0\0\0\0", 4);
    *len = w.n;
    return w.p;
}

START_TEST(test_dicom_generated)
{
    static const struct dcm_gen cases[] = {
        {"1.2.840.10008.1.2.1", 5, 7, 1, 1, 16, 0, true, true, true},
        {"1.2.840.10008.1.2", 5, 7, 1, 3, 16, 0, true, true, false},
        {"1.2.840.10008.1.2.2", 5, 7, 1, 2, 16, 0, true, true, true},
        {"1.2.840.10008.1.2.1", 3, 5, 3, 2, 8, 0, false, true, true},
        {"1.2.840.10008.1.2.1", 3, 5, 3, 2, 8, 1, false, false, false},
        {"1.2.840.10008.1.2.2", 3, 5, 3, 2, 8, 1, false, true, false},
        {"1.2.840.10008.1.2.2", 4, 4, 3, 1, 8, 0, true, true, true}, /* BE OW of bytes */
        {"1.2.840.10008.1.2", 1, 1, 1, 1, 8, 0, true, false, true},  /* odd: pad byte */
        {"1.2.840.10008.1.2.1", 17, 13, 3, 3, 16, 1, true, false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint16_t *planes;
        char why[128];
        struct codec_image *img = NULL;
        uint8_t *buf = dcm_generate(&cases[i], &len, &planes);
        ck_assert_msg(dcm_test_roundtrip(buf, len, &img, why, sizeof(why)) == 0, "case %zu: %s", i,
                      why);
        ck_assert_uint_eq(img->frames, cases[i].frames);
        ck_assert_uint_eq(img->channels, cases[i].spp);
        ck_assert_uint_eq(img->significant, cases[i].bits == 16 ? 12 : 8);
        size_t n = img->planes_bytes / (img->bits / 8);
        for (size_t k = 0; k < n; k++) {
            unsigned got =
                img->bits == 16 ? ((uint16_t *)img->planes)[k] : ((uint8_t *)img->planes)[k];
            ck_assert_msg(got == planes[k], "case %zu sample %zu: %u, want %u", i, k, got,
                          planes[k]);
        }
        codec_image_free(img);
        free(planes);
        free(buf);
    }
}
END_TEST

static void dcm_expect(const uint8_t *buf, size_t len, int want, const char *reason)
{
    char why[128];
    int ret = dcm_test_roundtrip(buf, len, NULL, why, sizeof(why));
    ck_assert_msg(ret == want, "%d (%s), wanted %d", ret, why, want);
    if (reason)
        ck_assert_msg(strstr(why, reason), "reason '%s', wanted '%s'", why, reason);
}

/* Bits Allocated 32: each sample is its two 16-bit words, in file order; the little- and the
 * big-endian RT Dose grid give the same words, in the other order. */
START_TEST(test_dicom_words32)
{
    char path[4096], why[128];
    struct codec_image *img[2] = {NULL, NULL};
    static const char *const names[] = {"rtdose.dcm", "rtdose_expb.dcm"};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dcm_test_data(), names[i]);
        uint8_t *buf = unit_read_file(path, &len);
        ck_assert_int_eq(dcm_test_roundtrip(buf, len, &img[i], why, sizeof(why)), 0);
        ck_assert_uint_eq(img[i]->channels, 2);
        ck_assert_uint_eq(img[i]->frames, 15);
        ck_assert_uint_eq(img[i]->bits, 16);
        ck_assert_uint_eq(img[i]->significant, 16);
        free(buf);
    }
    /* The first sample is 0x00130ee8 (1248488 × Dose Grid Scaling 1e-6 Gy), as pydicom reads it. */
    const uint16_t *le = img[0]->planes, *be = img[1]->planes;
    size_t plane = 15 * 10 * 10;
    ck_assert_uint_eq(le[0], 0x0ee8);
    ck_assert_uint_eq(le[plane], 0x0013);
    ck_assert_int_eq(memcmp(le, be + plane, plane * 2), 0);
    ck_assert_int_eq(memcmp(le + plane, be, plane * 2), 0);
    codec_image_free(img[0]);
    codec_image_free(img[1]);
}
END_TEST

/* 32-bit files the adapter refuses: more than 2 samples per pixel (beyond 4 channels), planar
 * (the words of a sample would not be interleaved), OB in big endian (no word order). */
START_TEST(test_dicom_words32_refused)
{
    static const struct {
        const char *ts;
        unsigned spp, planar;
        const char *vr, *reason;
    } cases[] = {
        {"1.2.840.10008.1.2.1", 3, 0, "OW", "32-bit samples, 3 per pixel"},
        {"1.2.840.10008.1.2.1", 2, 1, "OW", "32-bit samples, planar"},
        {"1.2.840.10008.1.2.2", 1, 0, "OB", "32-bit OB pixel data in big endian"},
        {"1.2.840.10008.1.2.1", 2, 0, "OW", NULL}, /* taken */
    };
    static const uint8_t px[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dcm_w w = {0};
        dcm_w_part10(&w, cases[i].ts);
        w.big = strcmp(cases[i].ts, "1.2.840.10008.1.2.2") == 0;
        dcm_w_us(&w, 0x0002, cases[i].spp);
        if (cases[i].spp > 1)
            dcm_w_us(&w, 0x0006, cases[i].planar);
        dcm_w_us(&w, 0x0010, 1);
        dcm_w_us(&w, 0x0011, 2);
        dcm_w_us(&w, 0x0100, 32);
        dcm_w_elem(&w, 0x7fe0, 0x0010, cases[i].vr, px, 8 * cases[i].spp);
        dcm_expect(w.p, w.n, cases[i].reason ? -ENOTSUP : 0, cases[i].reason);
        free(w.p);
    }
}
END_TEST

/* YBR_FULL_422: pixel pairs Y0 Y1 Cb Cr are the 4 channels of a half-width image; the raster
 * is the last 20000 bytes of the file. */
START_TEST(test_dicom_ybr422)
{
    char path[4096], why[128];
    size_t len;
    struct codec_image *img = NULL;
    snprintf(path, sizeof(path), "%s/SC_ybr_full_422_uncompressed.dcm", dcm_test_data());
    uint8_t *buf = unit_read_file(path, &len);
    ck_assert_int_eq(dcm_test_roundtrip(buf, len, &img, why, sizeof(why)), 0);
    ck_assert_uint_eq(img->channels, 4);
    ck_assert_uint_eq(img->width, 50);
    ck_assert_uint_eq(img->height, 100);
    ck_assert_uint_eq(img->bits, 8);
    const uint8_t *raster = buf + len - 20000, *planes = img->planes;
    for (size_t p = 0; p < 5000; p++)
        for (size_t c = 0; c < 4; c++)
            ck_assert_uint_eq(planes[c * 5000 + p], raster[4 * p + c]);
    ck_assert_uint_eq(planes[0], 0x4c); /* Y0 Y1 Cb Cr of the first pair, as pydicom reads */
    ck_assert_uint_eq(planes[5000], 0x4c);
    ck_assert_uint_eq(planes[10000], 0x55);
    ck_assert_uint_eq(planes[15000], 0xff);
    codec_image_free(img);
    free(buf);
}
END_TEST

/* Generated YBR_FULL_422 files: 16-bit and big-endian ones taken, the layouts the standard
 * does not allow refused. */
START_TEST(test_dicom_ybr422_generated)
{
    static const struct {
        const char *ts, *photo, *vr;
        unsigned spp, planar, cols, bits;
        int want;
    } cases[] = {
        {"1.2.840.10008.1.2.1", "YBR_FULL_422", "OB", 3, 0, 4, 8, 0},
        {"1.2.840.10008.1.2.2", "YBR_FULL_422", "OW", 3, 0, 4, 8, 0},  /* byte pairs swapped */
        {"1.2.840.10008.1.2.2", "YBR_FULL_422", "OW", 3, 0, 2, 16, 0}, /* big-endian words */
        {"1.2.840.10008.1.2", "YBR_PARTIAL_422 ", "OW", 3, 0, 6, 8, 0},
        {"1.2.840.10008.1.2.1", "YBR_FULL_422", "OB", 3, 0, 3, 8, -ENOTSUP}, /* odd columns */
        {"1.2.840.10008.1.2.1", "YBR_FULL_422", "OB", 3, 1, 4, 8, -ENOTSUP}, /* planar */
        {"1.2.840.10008.1.2.1", "YBR_FULL_422", "OB", 1, 0, 4, 8, -ENOTSUP}, /* one sample */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dcm_w w = {0};
        uint8_t px[64];
        size_t n = (size_t)2 * cases[i].cols * 2 * (cases[i].bits / 8); /* 2 rows, 2 per pixel */
        for (size_t k = 0; k < n; k++)
            px[k] = (uint8_t)(k * 37 + 5);
        dcm_w_part10(&w, cases[i].ts);
        w.implicit = strcmp(cases[i].ts, "1.2.840.10008.1.2") == 0;
        w.big = strcmp(cases[i].ts, "1.2.840.10008.1.2.2") == 0;
        dcm_w_us(&w, 0x0002, cases[i].spp);
        dcm_w_elem(&w, 0x0028, 0x0004, "CS", cases[i].photo, (uint32_t)strlen(cases[i].photo));
        dcm_w_us(&w, 0x0006, cases[i].planar);
        dcm_w_us(&w, 0x0010, 2);
        dcm_w_us(&w, 0x0011, cases[i].cols);
        dcm_w_us(&w, 0x0100, cases[i].bits);
        dcm_w_elem(&w, 0x7fe0, 0x0010, cases[i].vr, px, (uint32_t)n);
        dcm_expect(w.p, w.n, cases[i].want, cases[i].want ? "YBR_422" : NULL);
        if (cases[i].want == 0) {
            struct codec_image geo;
            ck_assert_int_eq(codec_probe(w.p, w.n, &geo), 0);
            ck_assert_uint_eq(geo.channels, 4);
            ck_assert_uint_eq(geo.width, cases[i].cols / 2);
        }
        free(w.p);
    }
}
END_TEST

START_TEST(test_dicom_refused)
{
    struct dcm_w w = {0};
    size_t len;
    uint16_t *planes;
    uint8_t *buf;

    /* Absurd geometry: refused before anything is allocated. */
    dcm_w_part10(&w, "1.2.840.10008.1.2.1");
    dcm_w_us(&w, 0x0002, 3);
    dcm_w_elem(&w, 0x0028, 0x0008, "IS", "65535 ", 6);
    dcm_w_us(&w, 0x0010, 65535);
    dcm_w_us(&w, 0x0011, 65535);
    dcm_w_us(&w, 0x0100, 16);
    dcm_w_elem(&w, 0x7fe0, 0x0010, "OW", NULL, 0xfffffff0);
    dcm_expect(w.p, w.n, -EFBIG, "beyond limits");
    free(w.p);

    /* Pixel data length beyond the file, shorter than the geometry, or longer: the padding
     * after the samples is kept (an exact round trip). */
    struct dcm_gen g = {"1.2.840.10008.1.2.1", 4, 4, 1, 1, 16, 0, true, false, false};
    buf = dcm_generate(&g, &len, &planes);
    free(planes);
    dcm_expect(buf, len - 1, -ENOTSUP, "truncated");
    uint8_t *longer = malloc(len + 6);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, buf, len);
    memcpy(longer + len, "padpad", 6); // NOLINT(bugprone-not-null-terminated-result): bytes
    longer[len - 32 - 4] = 38;         /* 32 bytes of samples, 6 of padding */
    dcm_expect(longer, len + 6, 0, NULL);
    free(longer);
    buf[len - 32 - 4] = 30; /* length 30 instead of 32 */
    dcm_expect(buf, len, -ENOTSUP, "shorter than the geometry");
    buf[len - 32 - 4 + 3] = 0xff; /* a length near 4 GiB */
    dcm_expect(buf, len, -ENOTSUP, NULL);
    free(buf);

    /* Transfer syntaxes, bit depths, missing parts. */
    static const struct {
        const char *ts;
        unsigned bits;
        const char *reason;
    } refusals[] = {
        {"1.2.840.10008.1.2.1.99", 8, "deflated"},
        {"1.2.840.10008.1.2.4.50", 8, "JPEG"},
        {"1.2.840.10008.1.2.4.80", 8, "JPEG-LS"},
        {"1.2.840.10008.1.2.4.90", 8, "JPEG 2000"},
        {"1.2.840.10008.1.2.5", 8, "RLE"},
        {"1.2.3.4", 8, "transfer syntax 1.2.3.4"},
        {"1.2.840.10008.1.2.1", 32, "shorter than the geometry"},
        {"1.2.840.10008.1.2.1", 24, "Bits Allocated 24"},
        {"1.2.840.10008.1.2.1", 1, "Bits Allocated 1"},
    };
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        memset(&w, 0, sizeof(w));
        dcm_w_part10(&w, refusals[i].ts);
        dcm_w_us(&w, 0x0002, 1);
        dcm_w_us(&w, 0x0010, 2);
        dcm_w_us(&w, 0x0011, 2);
        dcm_w_us(&w, 0x0100, refusals[i].bits);
        dcm_w_elem(&w, 0x7fe0, 0x0010, "OB", "\1\2\3\4", 4);
        dcm_expect(w.p, w.n, -ENOTSUP, refusals[i].reason);
        free(w.p);
    }
    memset(&w, 0, sizeof(w));
    dcm_w_part10(&w, "1.2.840.10008.1.2.1");
    dcm_w_elem(&w, 0x0010, 0x0010, "PN", "Doe^Jane", 8);
    dcm_expect(w.p, w.n, -ENOTSUP, "no pixel data");
    dcm_w_elem(&w, 0x7fe0, 0x0010, "OB", NULL, 0xffffffff); /* encapsulated */
    dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0);
    dcm_w_elem(&w, 0xfffe, 0xe0dd, NULL, NULL, 0);
    dcm_expect(w.p, w.n, -ENOTSUP, "encapsulated");
    free(w.p);

    /* Sequences nested beyond the limit, and never closed. */
    memset(&w, 0, sizeof(w));
    dcm_w_part10(&w, "1.2.840.10008.1.2.1");
    for (int i = 0; i < 40; i++) {
        dcm_w_elem(&w, 0x0008, 0x1140, "SQ", NULL, 0xffffffff);
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0xffffffff);
    }
    dcm_expect(w.p, w.n, -EFBIG, "nested");
    free(w.p);
    memset(&w, 0, sizeof(w));
    dcm_w_part10(&w, "1.2.840.10008.1.2");
    w.implicit = true;
    dcm_w_elem(&w, 0x0008, 0x1140, NULL, NULL, 0xffffffff);
    dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0xffffffff);
    dcm_expect(w.p, w.n, -ENOTSUP, "truncated");
    free(w.p);

    /* More elements than the limit (each 8 bytes, so a few MB). */
    memset(&w, 0, sizeof(w));
    dcm_w_part10(&w, "1.2.840.10008.1.2");
    w.implicit = true;
    size_t at = w.n, count = CODEC_MAX_DICOM_ELEMENTS + 1;
    dcm_w_elem(&w, 0x0009, 0x0010, NULL, NULL, 0);
    w.p = realloc(w.p, at + 8 * count);
    ck_assert_ptr_nonnull(w.p);
    for (size_t i = 1; i < count; i++)
        memcpy(w.p + at + 8 * i, w.p + at, 8);
    w.n = at + 8 * count;
    dcm_expect(w.p, w.n, -EFBIG, "too many");
    free(w.p);

    /* No preamble: raw datasets are not taken. */
    ck_assert_int_eq(codec_sniff((const uint8_t *)"\x08\0\x05\0CS\x0a\0ISO_IR 100", 18),
                     CODEC_FORMAT_NONE);
}
END_TEST

/* An RLE Lossless case: 2 × 4 pixels, every frame's fragment the same 64-byte RLE header
 * (segment count, offsets) and segment bytes. */
struct dcm_rle {
    const char *reason; /* NULL: exact */
    unsigned spp, bits, frames, fragments;
    uint32_t nseg, off[4];
    uint8_t seg[48];
    uint32_t seg_len;
    bool no_bot, no_delimiter;
};

static uint8_t *dcm_rle_generate(const struct dcm_rle *r, size_t *len)
{
    struct dcm_w w = {0};
    uint8_t frag[64 + 48] = {0};
    char frames[8];
    dcm_w_part10(&w, "1.2.840.10008.1.2.5");
    dcm_w_us(&w, 0x0002, r->spp);
    snprintf(frames, sizeof(frames), "%u ", r->frames);
    dcm_w_elem(&w, 0x0028, 0x0008, "IS", frames, 2);
    dcm_w_us(&w, 0x0010, 2);
    dcm_w_us(&w, 0x0011, 4);
    dcm_w_us(&w, 0x0100, r->bits);
    dcm_w_elem(&w, 0x7fe0, 0x0010, "OB", NULL, 0xffffffff);
    if (!r->no_bot)
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, NULL, 0);
    frag[0] = (uint8_t)r->nseg;
    for (size_t i = 0; i < 4; i++)
        for (size_t b = 0; b < 4; b++)
            frag[4 + 4 * i + b] = (uint8_t)(r->off[i] >> (8 * b));
    memcpy(frag + 64, r->seg, r->seg_len);
    for (unsigned f = 0; f < r->fragments; f++)
        dcm_w_elem(&w, 0xfffe, 0xe000, NULL, frag, 64 + r->seg_len);
    if (!r->no_delimiter)
        dcm_w_elem(&w, 0xfffe, 0xe0dd, NULL, NULL, 0);
    dcm_w_elem(&w, 0xfffc, 0xfffc, "OB", "\0\0", 2); /* a trailer, for the tail */
    *len = w.n;
    return w.p;
}

/* RLE Lossless: literal, replicate and no-op runs, padding of any length after a segment
 * (kept verbatim), 8-, 16- and 32-bit samples, several frames; and a refusal per check. */
START_TEST(test_dicom_rle_generated)
{
    static const struct dcm_rle cases[] = {
        {NULL, 1, 8, 1, 1, 1, {64}, {0x07, 1, 2, 3, 4, 5, 6, 7, 8}, 9, false, false},
        /* a no-op, a replicate, a literal, then odd padding (an odd fragment too) */
        {NULL, 1, 8, 1, 1, 1, {64}, {0x80, 0xfd, 9, 0x03, 1, 2, 3, 4, 0}, 9, false, false},
        /* 16-bit: high bytes, 3 bytes of padding, low bytes (at 64 + 2 + 3) */
        {NULL, 1, 16, 2, 2, 2, {64, 69}, {0xf9, 0x12, 7, 7, 7, 0xf9, 0x34, 0, 0}, 9, false, false},
        /* 32-bit: four byte planes, most significant first */
        {NULL,
         1,
         32,
         1,
         1,
         4,
         {64, 66, 68, 70},
         {0xf9, 0x12, 0xf9, 0x34, 0xf9, 0x56, 0xf9, 0x78},
         8,
         false,
         false},
        {"segment truncated", 1, 8, 1, 1, 1, {64}, {0x03, 1, 2, 3, 4}, 5, false, false},
        {"run past the end", 1, 8, 1, 1, 1, {64}, {0xf8, 9}, 2, false, false},
        {"run past the end", 1, 8, 1, 1, 1, {64}, {0x07, 1, 2, 3}, 4, false, false},
        {"offsets", 1, 8, 1, 1, 1, {60}, {0x07, 1, 2, 3, 4, 5, 6, 7, 8}, 9, false, false},
        {"offsets", 1, 8, 1, 1, 1, {73}, {0x07, 1, 2, 3, 4, 5, 6, 7, 8}, 9, false, false},
        {"offsets", 1, 16, 1, 1, 2, {66, 64}, {0xf9, 1, 0xf9, 2}, 4, false, false},
        {"offsets", 1, 16, 1, 1, 2, {64, 64}, {0xf9, 1, 0xf9, 2}, 4, false, false},
        {"segment count", 1, 8, 1, 1, 2, {64, 66}, {0xf9, 1, 0xf9, 2}, 4, false, false},
        {"segment count", 1, 8, 1, 1, 16, {64}, {0xf9, 1}, 2, false, false},
        {"fragment missing", 1, 8, 2, 1, 1, {64}, {0xf9, 1}, 2, false, false},
        {"one per frame", 1, 8, 1, 2, 1, {64}, {0xf9, 1}, 2, false, false},
        /* no offset table: the one fragment is taken for it */
        {"fragment missing", 1, 8, 1, 1, 1, {64}, {0xf9, 1}, 2, true, false},
        {"offset table", 1, 8, 1, 0, 1, {64}, {0xf9, 1}, 2, true, false},
        {"one per frame", 1, 8, 1, 1, 1, {64}, {0xf9, 1}, 2, false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct dcm_rle *r = &cases[i];
        struct codec_image *img = NULL;
        char why[128];
        size_t len;
        uint8_t *buf = dcm_rle_generate(r, &len);
        int ret = dcm_test_roundtrip(buf, len, &img, why, sizeof(why));
        if (r->reason) {
            ck_assert_msg(ret == -ENOTSUP && strstr(why, r->reason), "case %zu: %d %s", i, ret,
                          why);
        } else {
            ck_assert_msg(ret == 0, "case %zu: %s", i, why);
            ck_assert_uint_eq(img->frames, r->frames);
            ck_assert_uint_eq(img->channels, r->bits == 32 ? 2 * r->spp : r->spp);
        }
        if (i == 1)
            ck_assert_uint_eq(((uint8_t *)img->planes)[7], 4);
        if (i == 2)
            ck_assert_uint_eq(((uint16_t *)img->planes)[15], 0x1234);
        if (i == 3) /* the low word first, as a native little-endian file */
            ck_assert(((uint16_t *)img->planes)[0] == 0x5678 &&
                      ((uint16_t *)img->planes)[8] == 0x1234);
        codec_image_free(img);
        free(buf);
    }
}
END_TEST

/* An RLE envelope that says otherwise is refused: without the RLE flag (a reader that knows
 * only the native layout), with a flag split never sets, or with runs that do not make the
 * planes. */
START_TEST(test_dicom_rle_envelope)
{
    char path[4096], why[128];
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *out = NULL;
    size_t len, env_len, out_len;
    snprintf(path, sizeof(path), "%s/MR_small_RLE.dcm", dcm_test_data());
    uint8_t *buf = unit_read_file(path, &len);
    ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, why, sizeof(why)), 0);
    ck_assert_uint_eq(env[26], CODEC_DICOM_RLE);
    struct codec_envelope_info ei;
    ck_assert_int_eq(codec_envelope_info(env, env_len, &ei), 0);
    ck_assert_uint_gt(ei.recipe_bytes, 0);
    ck_assert_uint_gt(ei.tail_bytes, 0);
    static const uint8_t flags[] = {0, CODEC_DICOM_RLE | 64, CODEC_DICOM_RLE | CODEC_DICOM_PLANAR,
                                    CODEC_DICOM_RLE | CODEC_DICOM_WORDS32};
    for (size_t i = 0; i < sizeof(flags); i++) {
        env[26] = flags[i];
        ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    }
    env[26] = CODEC_DICOM_RLE;
    /* the last run's header byte (before the tail and its length): one byte more or fewer
     * than the plane holds */
    size_t last = env_len - 9 - ei.tail_bytes;
    env[last] ^= 1;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), -EINVAL);
    env[last] ^= 1;
    ck_assert_int_eq(codec_join(img, env, env_len, &out, &out_len), 0);
    ck_assert(out_len == len && memcmp(out, buf, len) == 0);
    free(out);
    free(env);
    codec_image_free(img);
    free(buf);
}
END_TEST

/* Run headers are predicted: segments as pydicom's encoder writes them without exceptions
 * (rle_pydicom_runs.dcm, 4 × 300, 16-bit, written by pydicom's RLE encoder, has runs of 1, 2,
 * 127 to 130 and 300 bytes and literals longer than 128; SC_rgb_rle.dcm one run per row), and
 * MR_small_RLE.dcm's, whose writer replicates from 3 bytes on, with 13 exceptions (27 bytes)
 * for its 722 runs. A list would take a byte per run. */
START_TEST(test_dicom_rle_rule)
{
    static const struct {
        const char *name;
        uint64_t skeleton; /* the verbatim bytes: items, RLE headers, padding */
        uint64_t segments;
        uint64_t exceptions; /* bytes: a distance (1 or 2 bytes) and a header each */
    } files[] = {{"rle_pydicom_runs.dcm", 93, 2, 0},
                 {"SC_rgb_rle.dcm", 88, 3, 0},
                 {"MR_small_RLE.dcm", 93, 2, 27}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4096], why[128];
        struct codec_image *img = NULL;
        struct codec_envelope_info ei;
        uint8_t *env = NULL;
        size_t len, env_len;
        snprintf(path, sizeof(path), "%s/%s", dcm_test_data(), files[i].name);
        uint8_t *buf = unit_read_file(path, &len);
        ck_assert_int_eq(dcm_test_roundtrip(buf, len, NULL, why, sizeof(why)), 0);
        ck_assert_int_eq(codec_split(buf, len, &img, &env, &env_len, why, sizeof(why)), 0);
        ck_assert_int_eq(codec_envelope_info(env, env_len, &ei), 0);
        /* length field, skeleton and its length, per segment its place, the predictor and the
         * count of exceptions, then each exception's distance and header */
        ck_assert_uint_eq(ei.recipe_bytes,
                          8 + 1 + files[i].skeleton + 3 * files[i].segments + files[i].exceptions);
        free(env);
        codec_image_free(img);
        free(buf);
    }
}
END_TEST

/* Every prefix of small files, and bit flips: an exact join or a clean refusal. */
START_TEST(test_dicom_malformed)
{
    static const char *const names[] = {"SC_rgb_small_odd.dcm", "MR_small_implicit.dcm",
                                        "ExplVR_BigEnd.dcm",    "MR_small_bigendian.dcm",
                                        "rtdose_expb.dcm",      "SC_ybr_full_422_uncompressed.dcm",
                                        "SC_rgb_rle.dcm",       "MR_small_RLE.dcm"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[4096], why[128];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dcm_test_data(), names[i]);
        uint8_t *buf = unit_read_file(path, &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *copy = malloc(cut + 1); /* exact size: ASan sees any overread */
            memcpy(copy, buf, cut);
            dcm_test_roundtrip(copy, cut, NULL, why, sizeof(why));
            free(copy);
        }
        /* Every bit of the first 2 KB (the header; flips in the pixels prove nothing, but for
         * RLE, whose run headers sit among them: SC_rgb_rle.dcm is 2 KB long). */
        for (size_t k = 0; k < len && k < 2048; k++) {
            for (int bit = 0; bit < 8; bit++) {
                buf[k] ^= (uint8_t)(1u << bit);
                dcm_test_roundtrip(buf, len, NULL, why, sizeof(why));
                buf[k] ^= (uint8_t)(1u << bit);
            }
        }
        free(buf);
    }
}
END_TEST

static Suite *codec_dicom_suite(void)
{
    Suite *s = suite_create("codec_dicom");
    TCase *tc = tcase_create("corpus");
    tcase_add_test(tc, test_dicom_pydicom);
    tcase_add_test(tc, test_dicom_repo);
    tcase_add_test(tc, test_dicom_values);
    tcase_add_test(tc, test_dicom_words32);
    tcase_add_test(tc, test_dicom_ybr422);
    suite_add_tcase(s, tc);
    tc = tcase_create("generated");
    tcase_add_test(tc, test_dicom_generated);
    tcase_add_test(tc, test_dicom_refused);
    tcase_add_test(tc, test_dicom_words32_refused);
    tcase_add_test(tc, test_dicom_ybr422_generated);
    tcase_add_test(tc, test_dicom_rle_generated);
    tcase_add_test(tc, test_dicom_rle_envelope);
    tcase_add_test(tc, test_dicom_rle_rule);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_set_timeout(tc, 300); /* thousands of round trips, slow under sanitizers */
    tcase_add_test(tc, test_dicom_malformed);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_SUITE(codec_dicom_suite)
