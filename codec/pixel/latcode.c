/* SPDX-License-Identifier: MIT */
/*
 * The latent coder (format and model in latcode.h): per plane a centre and per bucket a shape,
 * chosen by measured cost, then one rANS stream over fixed integer tables.
 */
#include "codec/pixel/latcode.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "codec/bytes.h"
#include "codec/pixel/rans.h"

#define LAT_SYMS 64u
#define LAT_ESC 63u
#define LAT_SPAN 31 /* offsets -31..31 are symbols; farther values escape */

/* theta of each shape in 1/2^16: exp(-1/sigma) for sigma from 0.25 to 60, geometrically
 * spaced; fixed here because the stream names shapes by index. */
static const uint16_t lat_theta[CODEC_LATCODE_SHAPES] = {
    1200,  1675,  2274,  3008,  3889,  4921,  6105,  7440,  8919,  10532, 12264, 14102, 16028,
    18023, 20070, 22150, 24245, 26339, 28417, 30466, 32474, 34430, 36327, 38158, 39917, 41600,
    43206, 44732, 46178, 47545, 48833, 50045, 51182, 52247, 53243, 54173, 55039, 55845, 56595,
    57291, 57936, 58534, 59088, 59600, 60073, 60510, 60914, 61286, 61630, 61946, 62237, 62506,
    62753, 62980, 63189, 63382, 63558, 63721, 63870, 64007, 64133, 64249, 64355, 64453};

/* The table of shape t, integers only (latcode.h). */
static void lat_table(unsigned t, struct codec_rans_table *tab)
{
    uint32_t w[LAT_SPAN + 1];
    uint64_t total = 1; /* the escape */
    w[0] = 1u << 16;
    for (int k = 1; k <= LAT_SPAN; k++) {
        uint32_t v = (uint32_t)(((uint64_t)w[k - 1] * lat_theta[t] + 0x8000u) >> 16);
        w[k] = v ? v : 1;
    }
    for (unsigned s = 0; s < LAT_ESC; s++)
        total += w[abs((int)s - LAT_SPAN)];
    memset(tab, 0, sizeof(*tab));
    tab->nsym = LAT_SYMS;
    uint32_t sum = 0;
    for (unsigned s = 0; s < LAT_SYMS; s++) {
        uint64_t ws = s == LAT_ESC ? 1 : w[abs((int)s - LAT_SPAN)];
        uint32_t f = (uint32_t)((ws * CODEC_RANS_PROB_SCALE) / total);
        tab->freq[s] = (uint16_t)(f ? f : 1);
        sum += tab->freq[s];
    }
    /* the centre holds at least 4096 / 64 before this, the floors add at most 63 */
    tab->freq[LAT_SPAN] = (uint16_t)(tab->freq[LAT_SPAN] + CODEC_RANS_PROB_SCALE - sum);
    tab->cum[0] = 0;
    for (unsigned s = 0; s < LAT_SYMS; s++)
        tab->cum[s + 1] = (uint16_t)(tab->cum[s] + tab->freq[s]);
}

static const uint8_t lat_bucket_top[CODEC_LATCODE_MAX_BUCKETS - 1] = {0, 3, 10};

/* The bucket of the value at (y, x) of plane v (centre m), from its left and upper values. */
static unsigned lat_bucket(const int8_t *v, uint32_t width, uint32_t y, uint32_t x, int m,
                           unsigned k)
{
    if (k == 1)
        return 0;
    int wv = x ? v[(size_t)y * width + x - 1] : m;
    int nv = y ? v[(size_t)(y - 1) * width + x] : m;
    int a = abs(wv - m) + abs(nv - m);
    unsigned b = 0;
    while (b < k - 1 && a > lat_bucket_top[b])
        b++;
    return b;
}

static unsigned lat_symbol(int q, int m)
{
    int d = q - m;
    return d < -LAT_SPAN || d > LAT_SPAN ? LAT_ESC : (unsigned)(d + LAT_SPAN);
}

/* The median of a plane's values, as the centre. */
static int lat_median(const int8_t *v, size_t n)
{
    uint32_t hist[256] = {0};
    for (size_t i = 0; i < n; i++)
        hist[(uint8_t)(v[i] + 128)]++;
    size_t seen = 0;
    for (int i = 0; i < 256; i++) {
        seen += hist[i];
        if (2 * seen >= n)
            return i - 128;
    }
    return 0;
}

/* Choose the shapes of every plane for k buckets into shape[planes * k]; returns the bits the
 * values and the plane headers would take. */
static double lat_choose(const int8_t *q, uint32_t planes, uint32_t height, uint32_t width,
                         unsigned k, const int8_t *centre, const double (*cost)[LAT_SYMS],
                         uint8_t *shape)
{
    size_t area = (size_t)height * width;
    double bits = 8.0 * (1 + (double)planes * (1 + k));
    for (uint32_t p = 0; p < planes; p++) {
        const int8_t *v = q + p * area;
        uint32_t counts[CODEC_LATCODE_MAX_BUCKETS][LAT_SYMS];
        memset(counts, 0, sizeof(counts));
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++) {
                int val = v[(size_t)y * width + x];
                unsigned s = lat_symbol(val, centre[p]);
                counts[lat_bucket(v, width, y, x, centre[p], k)][s]++;
                if (s == LAT_ESC)
                    bits += 8;
            }
        for (unsigned b = 0; b < k; b++) {
            double best = HUGE_VAL;
            shape[p * k + b] = 0;
            for (unsigned t = 0; t < CODEC_LATCODE_SHAPES; t++) {
                double c = 0;
                for (unsigned s = 0; s < LAT_SYMS; s++)
                    c += counts[b][s] * cost[t][s];
                if (c < best) {
                    best = c;
                    shape[p * k + b] = (uint8_t)t;
                }
            }
            bits += best;
        }
    }
    return bits;
}

int codec_latcode_encode(const int8_t *q, uint32_t planes, uint32_t height, uint32_t width,
                         uint8_t **out, size_t *out_len)
{
    if (!q || !out || !out_len || !planes || !height || !width)
        return -EINVAL;
    size_t area = (size_t)height * width, n = area * planes;
    if (area > CODEC_LATCODE_MAX_VALUES || n > CODEC_LATCODE_MAX_VALUES || n / planes != area)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (q[i] < -CODEC_LATCODE_QMAX)
            return -EINVAL;
    assert(n > 0); /* planes, height and width are not 0 */
    struct codec_rans_table *tabs = malloc(CODEC_LATCODE_SHAPES * sizeof(*tabs));
    double(*cost)[LAT_SYMS] = malloc(CODEC_LATCODE_SHAPES * sizeof(*cost));
    int8_t *centre = malloc(planes);
    uint8_t *shape1 = malloc(planes), *shape3 = malloc((size_t)planes * 3);
    uint8_t *sym = malloc(n), *ctx = malloc(n), *esc = malloc(n), *res = NULL;
    size_t cap = CODEC_RANS_ENC_BOUND(n);
    uint8_t *rans = malloc(cap);
    int rc = -ENOMEM;
    if (!tabs || !cost || !centre || !shape1 || !shape3 || !sym || !ctx || !esc || !rans)
        goto out;
    for (unsigned t = 0; t < CODEC_LATCODE_SHAPES; t++) {
        lat_table(t, &tabs[t]);
        for (unsigned s = 0; s < LAT_SYMS; s++)
            cost[t][s] = CODEC_RANS_PROB_BITS - log2((double)tabs[t].freq[s]);
    }
    for (uint32_t p = 0; p < planes; p++)
        centre[p] = (int8_t)lat_median(q + p * area, area);
    double b1 = lat_choose(q, planes, height, width, 1, centre, cost, shape1);
    double b3 = lat_choose(q, planes, height, width, 3, centre, cost, shape3);
    unsigned k = b3 < b1 ? 3 : 1;
    const uint8_t *shape = k == 3 ? shape3 : shape1;
    size_t ne = 0;
    for (uint32_t p = 0; p < planes; p++) {
        const int8_t *v = q + p * area;
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++) {
                size_t i = p * area + (size_t)y * width + x;
                sym[i] = (uint8_t)lat_symbol(v[(size_t)y * width + x], centre[p]);
                ctx[i] = shape[p * k + lat_bucket(v, width, y, x, centre[p], k)];
                if (sym[i] == LAT_ESC)
                    esc[ne++] = (uint8_t)v[(size_t)y * width + x];
            }
    }
    size_t alen = 0;
    if ((rc = codec_rans_encode(sym, ctx, n, tabs, CODEC_LATCODE_SHAPES, rans, cap, &alen)) != 0)
        goto out;
    size_t head = 1 + (size_t)planes * (1 + k);
    rc = -ENOMEM;
    if (!(res = malloc(head + 10 + alen + ne)))
        goto out;
    size_t at = 0;
    res[at++] = (uint8_t)k;
    for (uint32_t p = 0; p < planes; p++) {
        res[at++] = (uint8_t)centre[p];
        memcpy(res + at, shape + p * k, k);
        at += k;
    }
    at += codec_put_var(res + at, alen);
    memcpy(res + at, rans, alen);
    at += alen;
    memcpy(res + at, esc, ne);
    at += ne;
    *out = res;
    *out_len = at;
    rc = 0;
out:
    /* the symbols, escapes and rANS bytes are the features themselves: wiped, as the caller
     * wipes its own copies */
    if (sym)
        OPENSSL_cleanse(sym, n);
    if (esc)
        OPENSSL_cleanse(esc, n);
    if (rans)
        OPENSSL_cleanse(rans, cap);
    if (centre)
        OPENSSL_cleanse(centre, planes);
    free(tabs);
    free(cost);
    free(centre);
    free(shape1);
    free(shape3);
    free(sym);
    free(ctx);
    free(esc);
    free(rans);
    return rc;
}

int codec_latcode_decode(const uint8_t *buf, size_t len, int8_t *q, uint32_t planes,
                         uint32_t height, uint32_t width)
{
    if (!buf || !q || !planes || !height || !width)
        return -EINVAL;
    size_t area = (size_t)height * width, n = area * planes;
    if (area > CODEC_LATCODE_MAX_VALUES || n > CODEC_LATCODE_MAX_VALUES || n / planes != area)
        return -EINVAL;
    struct codec_rd r = {buf, len};
    uint8_t k;
    if (codec_rd_u8(&r, &k) != 0 || k < 1 || k > CODEC_LATCODE_MAX_BUCKETS)
        return -EINVAL;
    size_t head = (size_t)planes * (1 + k);
    if (r.left < head)
        return -EINVAL;
    const uint8_t *hp = r.p;
    for (uint32_t p = 0; p < planes; p++) {
        if ((int8_t)hp[p * (1 + k)] < -CODEC_LATCODE_QMAX)
            return -EINVAL;
        for (unsigned b = 0; b < k; b++)
            if (hp[p * (1 + k) + 1 + b] >= CODEC_LATCODE_SHAPES)
                return -EINVAL;
    }
    r.p += head;
    r.left -= head;
    uint64_t alen;
    if (codec_rd_var(&r, len, &alen) != 0 || alen > r.left)
        return -EINVAL;
    const uint8_t *esc = r.p + alen, *esc_end = r.p + r.left;
    struct codec_rans_dec d;
    if (codec_rans_dec_init(&d, r.p, (size_t)alen) != 0)
        return -EINVAL;
    struct codec_rans_dtable *dt[CODEC_LATCODE_SHAPES] = {0};
    int rc = -ENOMEM;
    for (size_t i = 0; i < head; i++) {
        unsigned t = hp[i];
        if (i % (1u + k) == 0 || dt[t])
            continue;
        struct codec_rans_table tab;
        if (!(dt[t] = malloc(sizeof(*dt[t]))))
            goto out;
        lat_table(t, &tab);
        codec_rans_dtable_init(dt[t], &tab);
    }
    rc = -EINVAL;
    size_t i = 0;
    for (uint32_t p = 0; p < planes; p++) {
        int8_t *v = q + p * area;
        int m = (int8_t)hp[p * (1 + k)];
        const uint8_t *shape = hp + p * (1 + k) + 1;
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++, i++) {
                unsigned s = codec_rans_dec_get(&d, dt[shape[lat_bucket(v, width, y, x, m, k)]],
                                                (unsigned)(i & 1));
                int val;
                if (s == LAT_ESC) {
                    if (esc == esc_end)
                        goto out;
                    val = (int8_t)*esc++;
                    if (val < -CODEC_LATCODE_QMAX || abs(val - m) <= LAT_SPAN)
                        goto out;
                } else {
                    val = m + (int)s - LAT_SPAN;
                    if (val < -CODEC_LATCODE_QMAX || val > CODEC_LATCODE_QMAX)
                        goto out;
                }
                v[(size_t)y * width + x] = (int8_t)val;
            }
    }
    if (codec_rans_dec_finish(&d) == 0 && esc == esc_end)
        rc = 0;
out:
    for (unsigned t = 0; t < CODEC_LATCODE_SHAPES; t++)
        free(dt[t]);
    return rc;
}
