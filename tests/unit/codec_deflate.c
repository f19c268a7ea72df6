// SPDX-License-Identifier: MIT
/*
 * Unit tests of codec/deflate: record -> serialise -> parse -> emit gives back the very bytes of
 * streams written by zlib in every setting (made at test time by python3's zlib module, which
 * also supplies the expected decompressed bytes) and of the IDAT streams of the test PNGs; and
 * hand-made streams for what zlib never writes, plus hostile input that must fail cleanly.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "codec/zlib/deflate.h"

#define MAX_OUT ((size_t)64 << 20)

/* Full round trip of one stream; returns the record result and checks the rest. */
static int roundtrip(const uint8_t *comp, size_t n, int zlib, const uint8_t *want, size_t want_len)
{
    uint8_t *out = NULL, *ser = NULL, *again = NULL, *ser2 = NULL;
    size_t out_len = 0, again_len = 0;
    struct codec_deflate_desc *d = NULL, *p = NULL;
    int rc = zlib ? codec_deflate_record_zlib(comp, n, MAX_OUT, &out, &out_len, &d)
                  : codec_deflate_record(comp, n, MAX_OUT, &out, &out_len, &d);
    if (rc)
        return rc;
    if (want) {
        ck_assert_uint_eq(out_len, want_len);
        ck_assert(out_len == 0 || memcmp(out, want, out_len) == 0);
    }
    size_t sz = codec_deflate_desc_size(d);
    ck_assert_int_eq(codec_deflate_desc_serialise(d, NULL, 0), (ssize_t)sz);
    ck_assert_ptr_nonnull(ser = malloc(sz));
    ck_assert_int_eq(codec_deflate_desc_serialise(d, ser, sz), (ssize_t)sz);
    ck_assert_int_eq(codec_deflate_desc_parse(ser, sz, MAX_OUT, &p), 0);
    ck_assert_ptr_nonnull(ser2 = malloc(sz));
    ck_assert_int_eq(codec_deflate_desc_serialise(p, ser2, sz), (ssize_t)sz);
    ck_assert_mem_eq(ser, ser2, sz);
    ck_assert_int_eq(codec_deflate_emit(p, out, out_len, &again, &again_len), 0);
    ck_assert_uint_eq(again_len, n);
    ck_assert(n == 0 || memcmp(again, comp, n) == 0);
    free(again);
    again = NULL;
    ck_assert_int_eq(codec_deflate_emit(d, out, out_len, &again, &again_len), 0);
    ck_assert_uint_eq(again_len, n);
    ck_assert(n == 0 || memcmp(again, comp, n) == 0);
    free(again);
    free(ser);
    free(ser2);
    free(out);
    codec_deflate_desc_free(d);
    codec_deflate_desc_free(p);
    return 0;
}

/* ---- streams written by zlib, made by python3 ------------------------------------------- */

/*
 * Writes records: kind (1: 0 raw, 1 zlib), name length (1), raw length (4, BE), stream length
 * (4, BE), name, raw, stream. Arguments: the test data folder.
 */
static const char fixture_py[] =
    "import os, random, struct, sys, zlib\n"
    "d = sys.argv[1]\n"
    "o = sys.stdout.buffer\n"
    "def put(kind, name, raw, comp):\n"
    "    n = name.encode()[:255]\n"
    "    o.write(struct.pack('>BBII', kind, len(n), len(raw), len(comp)) + n + raw + comp)\n"
    "def idat(path):\n"
    "    b = open(path, 'rb').read(); i = 8; s = b''\n"
    "    while i + 8 <= len(b):\n"
    "        n, t = struct.unpack('>I4s', b[i:i + 8])\n"
    "        if t == b'IDAT': s += b[i + 8:i + 8 + n]\n"
    "        i += 12 + n\n"
    "    return s\n"
    "inputs = []\n"
    "for f in sorted(os.listdir(d)):\n"
    "    if f.endswith('.png'):\n"
    "        s = idat(os.path.join(d, f)); raw = zlib.decompress(s)\n"
    "        put(1, f + ' as written', raw, s); inputs.append((f, raw))\n"
    "    elif f.endswith('.pgm'):\n"
    "        inputs.append((f, open(os.path.join(d, f), 'rb').read()))\n"
    "r = random.Random(7)\n"
    "words = [''.join(r.choice('etaoinshrdlu') for _ in range(r.randint(1, 9))) for _ in "
    "range(300)]\n"
    "inputs.append(('text', ' '.join(r.choice(words) for _ in range(20000)).encode()))\n"
    "inputs.append(('random', bytes(r.getrandbits(8) for _ in range(40000))))\n"
    "inputs.append(('zeros', bytes(150000)))\n"
    "inputs.append(('tiny', b'a'))\n"
    "inputs.append(('empty', b''))\n"
    "S = [('default', zlib.Z_DEFAULT_STRATEGY), ('filtered', zlib.Z_FILTERED),\n"
    "     ('huffman', zlib.Z_HUFFMAN_ONLY), ('rle', zlib.Z_RLE), ('fixed', zlib.Z_FIXED)]\n"
    "def z(name, raw, level=6, wbits=15, mem=8, strat=0):\n"
    "    c = zlib.compressobj(level, zlib.DEFLATED, wbits, mem, strat)\n"
    "    put(1 if wbits > 0 else 0, '%s l%d w%d m%d s%d' % (name, level, wbits, mem, strat),\n"
    "        raw, c.compress(raw) + c.flush())\n"
    "for name, raw in inputs:\n"
    "    for level in range(10): z(name, raw, level)\n"
    "    for sn, st in S:\n"
    "        for level in (1, 6, 9): z(name, raw, level, strat=st)\n"
    "    for mem in range(1, 10):\n"
    "        for level in (6, 9): z(name, raw, level, mem=mem)\n"
    "    for wbits in range(9, 16):\n"
    "        for level in (6, 9): z(name, raw, level, wbits=wbits)\n"
    "        z(name, raw, 6, wbits=-wbits)\n"
    "    for flush in (zlib.Z_SYNC_FLUSH, zlib.Z_FULL_FLUSH):\n"
    "        c = zlib.compressobj(6); s = b''\n"
    "        for i in range(0, len(raw), 5000): s += c.compress(raw[i:i + 5000]) + c.flush(flush)\n"
    "        put(1, '%s flush %d' % (name, flush), raw, s + c.flush())\n";

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

START_TEST(test_zlib_corpus)
{
    const char *dir = getenv("IMGC_TESTDATA");
    ck_assert_msg(dir != NULL, "IMGC_TESTDATA not set");
    char path[] = "/tmp/imgc-deflate-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *py = fdopen(fd, "w");
    fputs(fixture_py, py);
    fclose(py);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "python3 %s '%s'", path, dir);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20, len = 0, n;
    uint8_t *all = malloc(cap);
    while (all && (n = fread(all + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            all = realloc(all, cap *= 2);
    }
    ck_assert_int_eq(pclose(f), 0);
    ck_assert_ptr_nonnull(all);
    unlink(path);
    int cases = 0;
    size_t stats[3] = {0};
    for (size_t at = 0; at < len;) {
        ck_assert_uint_ge(len - at, 10);
        int kind = all[at], nl = all[at + 1];
        size_t rl = be32(all + at + 2), cl = be32(all + at + 6);
        const char *name = (const char *)all + at + 10;
        const uint8_t *raw = all + at + 10 + nl, *comp = raw + rl;
        ck_assert_uint_le(rl + cl + nl, len - at - 10);
        int rc = roundtrip(comp, cl, kind, raw, rl);
        ck_assert_msg(rc == 0, "%.*s: %d", nl, name, rc);
        struct codec_deflate_info info;
        struct codec_deflate_desc *d = NULL;
        uint8_t *out = NULL;
        size_t out_len;
        ck_assert_int_eq(kind ? codec_deflate_record_zlib(comp, cl, MAX_OUT, &out, &out_len, &d)
                              : codec_deflate_record(comp, cl, MAX_OUT, &out, &out_len, &d),
                         0);
        codec_deflate_desc_info(d, &info);
        stats[0] += info.stored, stats[1] += info.fixed, stats[2] += info.dynamic;
        ck_assert_uint_eq(info.tail_len, 0);
        free(out);
        codec_deflate_desc_free(d);
        at += 10 + nl + rl + cl;
        cases++;
    }
    /* the corpus must cover every block type */
    ck_assert_int_gt(cases, 400);
    ck_assert(stats[0] && stats[1] && stats[2]);
    free(all);
}
END_TEST

/* The IDAT streams of the test PNGs, found by a chunk walker of our own. */
START_TEST(test_png_idat)
{
    static const char *const names[] = {"mri-t1-axial-8bit.png", "mri-t1-axial-12in16bit.png",
                                        "mri-t1-sagittal-256.png"};
    const char *dir = getenv("IMGC_TESTDATA");
    ck_assert_ptr_nonnull(dir);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "rb");
        ck_assert_ptr_nonnull(f);
        uint8_t *png = malloc(1 << 22), *idat = malloc(1 << 22);
        size_t n = fread(png, 1, 1 << 22, f), m = 0;
        fclose(f);
        ck_assert_uint_gt(n, 8);
        for (size_t at = 8; at + 12 <= n;) {
            size_t cl = be32(png + at);
            ck_assert_uint_le(cl, n - at - 12);
            if (memcmp(png + at + 4, "IDAT", 4) == 0) {
                memcpy(idat + m, png + at + 8, cl);
                m += cl;
            }
            at += 12 + cl;
        }
        ck_assert_uint_gt(m, 0);
        ck_assert_int_eq(roundtrip(idat, m, 1, NULL, 0), 0);
        free(png);
        free(idat);
    }
}
END_TEST

/* ---- hand-made streams ------------------------------------------------------------------- */

struct tw {
    uint8_t b[512];
    size_t bits;
};

static void tw_put(struct tw *w, unsigned v, unsigned n)
{
    for (unsigned i = 0; i < n; i++, w->bits++)
        if (v >> i & 1)
            w->b[w->bits / 8] |= (uint8_t)(1u << (w->bits % 8));
}

/* A Huffman code goes most significant bit first. */
static void tw_code(struct tw *w, unsigned code, unsigned len)
{
    for (unsigned i = len; i-- > 0;)
        tw_put(w, code >> i & 1, 1);
}

static size_t tw_len(const struct tw *w)
{
    return (w->bits + 7) / 8;
}

static void tw_fixed_lit(struct tw *w, unsigned sym)
{
    if (sym < 144)
        tw_code(w, 0x30 + sym, 8);
    else if (sym < 256)
        tw_code(w, 0x190 + sym - 144, 9);
    else if (sym < 280)
        tw_code(w, sym - 256, 7);
    else
        tw_code(w, 0xc0 + sym - 280, 8);
}

static int rec(const uint8_t *in, size_t n)
{
    uint8_t *out = NULL;
    size_t out_len;
    struct codec_deflate_desc *d = NULL;
    int rc = codec_deflate_record(in, n, MAX_OUT, &out, &out_len, &d);
    free(out);
    codec_deflate_desc_free(d);
    return rc;
}

/*
 * A dynamic block: literal/length lengths 'a' = 2, 256 = 1, 257 = 2 (HLIT 1), one distance code
 * of length 1 (HDIST 0: incomplete, legal), code-length code 18 = 1, 1 = 2, 2 = 2, then "a"
 * and a match (3, 1): "aaaa". bad selects a defect.
 */
static size_t dyn_stream(struct tw *w, int bad)
{
    memset(w, 0, sizeof(*w));
    tw_put(w, 1, 1);
    tw_put(w, 2, 2);
    tw_put(w, bad == 1 ? 30 : 1, 5); /* HLIT */
    tw_put(w, 0, 5);                 /* HDIST */
    tw_put(w, 14, 4);                /* HCLEN: 18 lengths, up to symbol 1 */
    unsigned clen[18] = {0};
    clen[2] = 1;     /* 18 */
    clen[15] = 2;    /* 2 */
    clen[17] = 2;    /* 1 */
    if (bad == 2)    /* over-subscribed code-length code */
        clen[3] = 1; /* 0 */
    if (bad == 3)
        clen[0] = 2, clen[17] = 0; /* 16 instead of 1: used as first op */
    for (int i = 0; i < 18; i++)
        tw_put(w, clen[i], 3);
    /* codes: 18 -> 0, 1 -> 10, 2 -> 11 (2 -> 10, 16 -> 11 when bad == 3) */
    if (bad == 3) {
        tw_code(w, 3, 2);
        tw_put(w, 0, 2);
    }
    tw_code(w, 0, 1), tw_put(w, 97 - 11, 7); /* 97 zeros */
    tw_code(w, bad == 4 ? 2 : 3, 2);         /* 'a' = 2 (bad 4: = 1, over-subscribed) */
    tw_code(w, 0, 1), tw_put(w, 127, 7);     /* 138 zeros */
    tw_code(w, 0, 1), tw_put(w, 20 - 11, 7); /* 20 zeros */
    tw_code(w, 2, 2);                        /* 256 = 1 */
    tw_code(w, 3, 2);                        /* 257 = 2 */
    tw_code(w, 2, 2);                        /* distance 0 = 1 */
    /* literal/length codes: 256 -> 0, 'a' -> 10, 257 -> 11; distance 0 -> 0 */
    tw_code(w, 2, 2);
    tw_code(w, 3, 2), tw_code(w, 0, 1);
    tw_code(w, 0, 1);
    return tw_len(w);
}

START_TEST(test_crafted)
{
    struct tw w;
    uint8_t buf[70000];
    /* BTYPE 3 */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 3, 2);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -EINVAL);
    /* stored block with a bad NLEN, then with non-zero padding bits and a good one */
    const uint8_t bad_nlen[] = {0x01, 0x01, 0x00, 0x00, 0x00, 'x'};
    ck_assert_int_eq(rec(bad_nlen, sizeof(bad_nlen)), -EINVAL);
    const uint8_t padded[] = {0xf9, 0x02, 0x00, 0xfd, 0xff, 'h', 'i'};
    ck_assert_int_eq(roundtrip(padded, sizeof(padded), 0, (const uint8_t *)"hi", 2), 0);
    /* an empty stored block claiming more bytes than there are */
    const uint8_t short_stored[] = {0x01, 0x05, 0x00, 0xfa, 0xff, 'a'};
    ck_assert_int_eq(rec(short_stored, sizeof(short_stored)), -EINVAL);
    /* a match before the start of the output */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2);
    tw_fixed_lit(&w, 257), tw_code(&w, 0, 5), tw_fixed_lit(&w, 256);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -EINVAL);
    /* distance symbol 30 */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2);
    tw_fixed_lit(&w, 'a'), tw_fixed_lit(&w, 257), tw_code(&w, 30, 5), tw_fixed_lit(&w, 256);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -EINVAL);
    /* length symbol 286 */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2);
    tw_fixed_lit(&w, 'a'), tw_fixed_lit(&w, 286), tw_code(&w, 0, 5), tw_fixed_lit(&w, 256);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -EINVAL);
    /* length 258 as symbol 284 + 31: decodable by zlib, not representable */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2);
    tw_fixed_lit(&w, 'a'), tw_fixed_lit(&w, 284), tw_put(&w, 31, 5), tw_code(&w, 0, 5);
    tw_fixed_lit(&w, 256);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -ENOTSUP);
    /* the same with symbol 285, and non-zero final padding bits: exact */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2);
    tw_fixed_lit(&w, 'a'), tw_fixed_lit(&w, 285), tw_code(&w, 0, 5), tw_fixed_lit(&w, 256);
    tw_put(&w, 0x7f, (unsigned)((8 - w.bits % 8) % 8));
    memset(buf, 'a', 259);
    ck_assert_int_eq(roundtrip(w.b, tw_len(&w), 0, buf, 259), 0);
    /* an empty final fixed block, then bytes after the stream */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 1, 1), tw_put(&w, 1, 2), tw_fixed_lit(&w, 256);
    memcpy(w.b + tw_len(&w), "TAIL", 4);
    ck_assert_int_eq(roundtrip(w.b, tw_len(&w) + 4, 0, NULL, 0), 0);
    /* a non-final empty fixed block and then nothing: truncated */
    memset(&w, 0, sizeof(w));
    tw_put(&w, 0, 1), tw_put(&w, 1, 2), tw_fixed_lit(&w, 256);
    ck_assert_int_eq(rec(w.b, tw_len(&w)), -EINVAL);
    /* dynamic blocks */
    size_t n = dyn_stream(&w, 0);
    ck_assert_int_eq(roundtrip(w.b, n, 0, (const uint8_t *)"aaaa", 4), 0);
    n = dyn_stream(&w, 1);
    ck_assert_int_eq(rec(w.b, n), -EINVAL); /* HLIT 30 */
    n = dyn_stream(&w, 2);
    ck_assert_int_eq(rec(w.b, n), -EINVAL); /* over-subscribed */
    n = dyn_stream(&w, 3);
    ck_assert_int_eq(rec(w.b, n), -EINVAL); /* 16 first */
    n = dyn_stream(&w, 4);
    ck_assert_int_eq(rec(w.b, n), -EINVAL); /* literal/length code over-subscribed */
    /* zlib wrapper: preset dictionary, bad check, bad Adler-32, bytes after the trailer */
    const uint8_t fdict[] = {0x78, 0x20, 0, 0, 0, 1, 0x03, 0x00, 0, 0, 0, 1};
    uint8_t *o = NULL;
    size_t ol;
    struct codec_deflate_desc *d = NULL;
    ck_assert_int_eq(codec_deflate_record_zlib(fdict, sizeof(fdict), MAX_OUT, &o, &ol, &d),
                     -ENOTSUP);
    uint8_t zs[] = {0x78, 0x9c, 0x4b, 0x04, 0x00, 0x00, 0x62, 0x00, 0x62, 'x', 'y'};
    ck_assert_int_eq(roundtrip(zs, sizeof(zs), 1, (const uint8_t *)"a", 1), 0);
    zs[1] ^= 1;
    ck_assert_int_eq(codec_deflate_record_zlib(zs, sizeof(zs), MAX_OUT, &o, &ol, &d), -EINVAL);
    zs[1] ^= 1, zs[8] ^= 1;
    ck_assert_int_eq(codec_deflate_record_zlib(zs, sizeof(zs), MAX_OUT, &o, &ol, &d), -EINVAL);
    ck_assert_ptr_null(d);
    /* limits: output beyond max_out, too many bytes after the stream */
    memset(buf, 0, sizeof(buf));
    buf[0] = 0x01, buf[1] = 0x10, buf[2] = 0x00, buf[3] = 0xef, buf[4] = 0xff;
    ck_assert_int_eq(codec_deflate_record(buf, 5 + 16, 15, &o, &ol, &d), -EFBIG);
    ck_assert_int_eq(codec_deflate_record(buf, 5 + 16, 16, &o, &ol, &d), 0);
    free(o);
    codec_deflate_desc_free(d);
    ck_assert_int_eq(rec(buf, 5 + 16 + CODEC_DEFLATE_MAX_TAIL), 0);
    ck_assert_int_eq(rec(buf, 5 + 16 + CODEC_DEFLATE_MAX_TAIL + 1), -ENOTSUP);
}
END_TEST

/* ---- hostile input ----------------------------------------------------------------------- */

/* A small zlib stream (level 9, dynamic block) of text, made by the fixture script's zlib. */
static size_t small_stream(uint8_t *out, size_t cap)
{
    FILE *f = popen("python3 -c \"import sys, zlib; sys.stdout.buffer.write(zlib.compress(b' '"
                    ".join(b'lorem ipsum dolor sit amet %d' % (i * i % 97) for i in range(60)), "
                    "9))\"",
                    "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, cap, f);
    ck_assert_int_eq(pclose(f), 0);
    ck_assert_uint_gt(n, 50);
    return n;
}

START_TEST(test_truncation_and_flips)
{
    uint8_t s[4096], t[4096];
    size_t n = small_stream(s, sizeof(s));
    uint8_t *o = NULL;
    size_t ol;
    struct codec_deflate_desc *d = NULL;
    ck_assert_int_eq(roundtrip(s, n, 1, NULL, 0), 0);
    for (size_t k = 0; k < n; k++) {
        int rc = codec_deflate_record_zlib(s, k, MAX_OUT, &o, &ol, &d);
        ck_assert_msg(rc == -EINVAL, "prefix %zu: %d", k, rc);
        if (k + 6 >= n)
            continue; /* the whole raw stream, and some of the trailer as its tail */
        rc = codec_deflate_record(s + 2, k, MAX_OUT, &o, &ol, &d);
        ck_assert_msg(rc == -EINVAL, "raw prefix %zu: %d", k, rc);
    }
    /* flipped bits: a clean error, or a stream that still round-trips exactly */
    int ok = 0;
    for (size_t bit = 0; bit < n * 8; bit++) {
        memcpy(t, s, n);
        t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = roundtrip(t + 2, n - 2, 0, NULL, 0);
        ck_assert_msg(rc == 0 || rc == -EINVAL || rc == -ENOTSUP || rc == -EFBIG, "%d", rc);
        ok += rc == 0;
    }
    ck_assert_int_gt(ok, 0); /* the flips in the trailer, at least */
}
END_TEST

START_TEST(test_hostile_description)
{
    uint8_t s[4096], *o = NULL, *e = NULL;
    size_t n = small_stream(s, sizeof(s)), ol, el;
    struct codec_deflate_desc *d = NULL, *p = NULL;
    ck_assert_int_eq(codec_deflate_record_zlib(s, n, MAX_OUT, &o, &ol, &d), 0);
    size_t sz = codec_deflate_desc_size(d);
    uint8_t *ser = malloc(sz), *t = malloc(sz), *re = malloc(sz);
    ck_assert_int_eq(codec_deflate_desc_serialise(d, ser, sz), (ssize_t)sz);
    ck_assert_int_eq(codec_deflate_desc_serialise(d, ser, sz - 1), (ssize_t)sz);
    for (size_t k = 0; k < sz; k++)
        ck_assert_int_eq(codec_deflate_desc_parse(ser, k, MAX_OUT, &p), -EINVAL);
    ck_assert_int_eq(codec_deflate_desc_parse(ser, sz, ol - 1, &p), -EFBIG);
    /* changed bytes: refused, or parsed into a canonical description whose emit is checked */
    for (size_t k = 0; k < sz; k++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            memcpy(t, ser, sz);
            t[k] ^= (uint8_t)(1u << bit);
            int rc = codec_deflate_desc_parse(t, sz, MAX_OUT, &p);
            ck_assert(rc == 0 || rc == -EINVAL || rc == -EFBIG);
            if (rc)
                continue;
            ck_assert_int_eq(codec_deflate_desc_serialise(p, re, sz), (ssize_t)sz);
            ck_assert_mem_eq(re, t, sz);
            rc = codec_deflate_emit(p, o, ol, &e, &el);
            ck_assert(rc == 0 || rc == -EINVAL);
            if (rc == 0) {
                ck_assert_int_eq(roundtrip(e, el, 1, o, ol), 0);
                free(e);
            }
            codec_deflate_desc_free(p);
        }
    }
    /* data that disagrees with a match */
    struct codec_deflate_info info;
    codec_deflate_desc_info(d, &info);
    ck_assert_uint_gt(info.matches, 0);
    int refused = 0;
    for (size_t k = 0; k < ol; k++) {
        o[k] ^= 0x55;
        int rc = codec_deflate_emit(d, o, ol, &e, &el);
        o[k] ^= 0x55;
        ck_assert(rc == 0 || rc == -EINVAL);
        refused += rc != 0;
        if (rc == 0)
            free(e);
    }
    ck_assert_int_gt(refused, 0);
    ck_assert_int_eq(codec_deflate_emit(d, o, ol - 1, &e, &el), -EINVAL);
    free(ser);
    free(t);
    free(re);
    free(o);
    codec_deflate_desc_free(d);
}
END_TEST

static Suite *codec_deflate_suite(void)
{
    Suite *s = suite_create("codec_deflate");
    TCase *t = tcase_create("deflate_zlib_streams");
    tcase_add_test(t, test_zlib_corpus);
    tcase_add_test(t, test_png_idat);
    tcase_set_timeout(t, 600);
    suite_add_tcase(s, t);
    t = tcase_create("deflate_crafted");
    tcase_add_test(t, test_crafted);
    suite_add_tcase(s, t);
    t = tcase_create("deflate_hostile");
    tcase_add_test(t, test_truncation_and_flips);
    tcase_add_test(t, test_hostile_description);
    tcase_set_timeout(t, 600);
    suite_add_tcase(s, t);
    return s;
}
UNIT_SUITE(codec_deflate_suite)
