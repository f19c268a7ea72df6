// SPDX-License-Identifier: MIT
/*
 * Plain (ASCII) PNM: P2 greymaps and P3 pixmaps. Their raster is decimal text, so the bytes are
 * not the samples: what join needs besides the samples is the spelling of the text. Writers
 * spell it regularly (netpbm: samples joined by a space, a line break every 17 samples and at
 * each row's end; ImageMagick: a space after every sample, a line break at each row's end and
 * before a line would pass 2046 bytes), so the layout taken is: every sample in shortest
 * decimal, one separator byte between the samples of a line, optionally after the last one
 * too, one line-break sequence, and the number of samples of each line, run-length coded. That
 * costs a few bytes for the whole file whenever the lines repeat (netpbm, ImageMagick rows
 * that fit one line), and about one byte per line otherwise; any other spelling (leading
 * zeros, runs of blanks, comments among the samples, mixed line breaks) is refused and the
 * file stays on the generic path. The trade-off: join prints the samples again, a few ns each.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/adapt/adapt_int.h"

#define TEXT_TRAIL 1u     /* a separator after the last sample of a line too */
#define TEXT_FINAL_EOL 2u /* the last line ends with the line break */

static const char *const text_eols[3] = {"\n", "\r\n", "\r"};

/* The layout section's fixed part (codec.h). */
struct text_layout {
    uint8_t sep;   /* ' ' or '\t'; 0 while not seen */
    uint8_t eol;   /* index into text_eols; 0xff while not seen */
    uint8_t flags; /* TEXT_* */
};

/* The run-length coded line lengths: (samples, lines) pairs as varints, growing. */
struct text_runs {
    uint8_t *p;
    size_t len, cap, pairs;
    uint64_t n, r; /* the pair being counted */
};

static int runs_put(struct text_runs *u)
{
    if (u->cap - u->len < 20) {
        size_t cap = u->cap ? 2 * u->cap : 256;
        uint8_t *p = realloc(u->p, cap);
        if (!p)
            return -ENOMEM;
        u->p = p;
        u->cap = cap;
    }
    u->len += codec_put_var(u->p + u->len, u->n);
    u->len += codec_put_var(u->p + u->len, u->r);
    u->pairs++;
    return 0;
}

/* A line of n samples ended. 0 or -ENOMEM. */
static int runs_line(struct text_runs *u, uint64_t n)
{
    int ret;
    if (u->r && u->n != n) {
        if ((ret = runs_put(u)) != 0)
            return ret;
        u->r = 0;
    }
    u->n = n;
    u->r++;
    return 0;
}

/* The sample at *pos, in shortest decimal (no sign, no leading zero), at most maxval. */
static bool text_token(const uint8_t *b, size_t len, size_t *pos, uint32_t maxval, uint32_t *v)
{
    size_t p = *pos;
    uint32_t x = 0;
    if (p >= len || b[p] < '0' || b[p] > '9' ||
        (b[p] == '0' && p + 1 < len && b[p + 1] >= '0' && b[p + 1] <= '9'))
        return false;
    for (; p < len && b[p] >= '0' && b[p] <= '9'; p++) {
        x = x * 10 + (uint32_t)(b[p] - '0'); /* maxval <= 65535: no overflow */
        if (x > maxval)
            return false;
    }
    *pos = p;
    *v = x;
    return true;
}

/* The line break at p: its index into text_eols, or -1. */
static int text_eol_at(const uint8_t *b, size_t len, size_t p)
{
    if (p < len && b[p] == '\n')
        return 0;
    if (p < len && b[p] == '\r')
        return p + 1 < len && b[p + 1] == '\n' ? 1 : 2;
    return -1;
}

/* What follows a sample at *pos: 0 the separator (consumed), 1 a line break (consumed, with
 * the separator before it when the layout has one), -1 anything else. The first of each
 * fixes the layout's separator, line break and trailing separator. */
static int text_sep(const uint8_t *b, size_t len, size_t *pos, struct text_layout *t, bool *known)
{
    size_t p = *pos;
    uint8_t s = 0;
    if (p < len && (b[p] == ' ' || b[p] == '\t')) {
        s = b[p++];
        if (t->sep && s != t->sep)
            return -1;
    }
    int e = text_eol_at(b, len, p);
    if (e < 0) {
        if (!s)
            return -1;
        t->sep = s;
        *pos = p;
        return 0;
    }
    if (*known && (e != t->eol || (s != 0) != ((t->flags & TEXT_TRAIL) != 0)))
        return -1;
    if (!*known) {
        t->eol = (uint8_t)e;
        t->flags |= s ? TEXT_TRAIL : 0;
        t->sep = s ? s : t->sep;
        *known = true;
    }
    *pos = p + strlen(text_eols[e]);
    return 1;
}

/* Read the n samples from pos into the planes (interleaved channels in the text) and the
 * layout into t and u; *end gets where the text ends. 0, -ENOTSUP or -ENOMEM. */
static int text_scan(const uint8_t *b, size_t len, size_t pos, const struct codec_found *f,
                     void *planes, struct text_layout *t, struct text_runs *u, size_t *end)
{
    const struct codec_image *g = &f->geo;
    size_t hw = (size_t)g->width * g->height, n = hw * g->channels;
    uint64_t on_line = 0;
    bool known = false;
    int ret;
    for (size_t k = 0; k < n; k++) {
        uint32_t v;
        if (!text_token(b, len, &pos, f->max_value, &v))
            return -ENOTSUP;
        size_t at = (k % g->channels) * hw + k / g->channels;
        if (g->bits == 16)
            ((uint16_t *)planes)[at] = (uint16_t)v;
        else
            ((uint8_t *)planes)[at] = (uint8_t)v;
        on_line++;
        if (k + 1 == n)
            break;
        int s = text_sep(b, len, &pos, t, &known);
        if (s < 0)
            return -ENOTSUP;
        if (s == 1 && (ret = runs_line(u, on_line)) != 0)
            return ret;
        on_line = s == 1 ? 0 : on_line;
    }
    /* The last line: its line break is the text's when it is the layout's; else what follows
     * the last sample belongs to the tail. */
    struct text_layout last = *t;
    size_t p = pos;
    bool k2 = known;
    if (text_sep(b, len, &p, &last, &k2) == 1) {
        *t = last;
        t->flags |= TEXT_FINAL_EOL;
        pos = p;
    }
    if ((ret = runs_line(u, on_line)) != 0 || (ret = runs_put(u)) != 0)
        return ret;
    t->sep = t->sep ? t->sep : ' ';
    t->eol = t->eol == 0xff ? 0 : t->eol;
    *end = pos;
    return 0;
}

static size_t text_digits(uint32_t v)
{
    return v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5;
}

int codec_pnm_text_split(const uint8_t *buf, size_t len, const struct codec_found *f,
                         struct codec_image **img, uint8_t **envelope, size_t *env_len, char *why,
                         size_t whylen)
{
    struct text_layout t = {0, 0xff, 0};
    struct text_runs u = {0};
    struct codec_image *im = NULL;
    uint8_t *env = NULL;
    size_t n = f->raster_len / (f->geo.bits / 8), end = 0, sec, elen;
    int ret = -ENOMEM;

    /* Each sample takes a digit and a separator (the last one no separator): a declared size
     * the text cannot hold is refused before the planes are allocated. */
    if (n > (len - f->head_len + 1) / 2)
        return codec_why(why, whylen, -ENOTSUP, "PNM: plain raster truncated");
    if (!(im = calloc(1, sizeof(*im))))
        goto out;
    *im = f->geo;
    im->planes_bytes = f->raster_len;
    im->significant = 32u - (uint32_t)__builtin_clz(f->max_value); /* maxval >= 1 */
    if (!(im->planes = malloc(f->raster_len)))
        goto out;
    ret = text_scan(buf, len, f->head_len, f, im->planes, &t, &u, &end);
    if (ret == -ENOTSUP)
        ret = codec_why(why, whylen, -ENOTSUP,
                        "PNM: plain raster not in one regular layout (or truncated)");
    if (ret)
        goto out;
    sec = 3 + 10 + u.len;
    /* head, section and tail are bounded by len and n: no overflow */
    elen = CODEC_ENV_FIXED + f->head_len + 8 + sec + 8 + (len - end);
    ret = -ENOMEM;
    if (!(env = malloc(elen)))
        goto out;
    codec_env_header(env, im, CODEC_PNM_TEXT);
    codec_put_le64(env + CODEC_ENV_HEAD_LEN, f->head_len);
    memcpy(env + CODEC_ENV_FIXED, buf, f->head_len);
    uint8_t *q = env + CODEC_ENV_FIXED + f->head_len + 8, *s = q;
    *q++ = t.sep;
    *q++ = t.eol;
    *q++ = t.flags;
    q += codec_put_var(q, u.pairs);
    if (u.len)
        memcpy(q, u.p, u.len);
    q += u.len;
    codec_put_le64(s - 8, (uint64_t)(q - s));
    codec_put_le64(q, len - end);
    memcpy(q + 8, buf + end, len - end);
    *env_len = (size_t)(q + 8 + (len - end) - env);
    *envelope = env;
    *img = im;
    env = NULL;
    im = NULL;
    ret = 0;
out:
    free(u.p);
    free(env);
    codec_image_free(im);
    return ret;
}

/* Print v in shortest decimal at q; returns the end. */
static uint8_t *text_put(uint8_t *q, uint32_t v)
{
    size_t d = text_digits(v);
    for (size_t i = d; i-- > 0; v /= 10)
        q[i] = (uint8_t)('0' + v % 10);
    return q + d;
}

/* The layout section (codec.h), parsed and checked against n samples; its pairs are re-read
 * from runs. 0 or -EINVAL. */
static int text_section(const uint8_t *sec, size_t sec_len, uint64_t n, struct text_layout *t,
                        struct codec_rd *runs, uint64_t *lines)
{
    struct codec_rd r = {sec, sec_len};
    uint64_t pairs, a, b, ab, sum = 0;
    if (codec_rd_u8(&r, &t->sep) || codec_rd_u8(&r, &t->eol) || codec_rd_u8(&r, &t->flags) ||
        (t->sep != ' ' && t->sep != '\t') || t->eol > 2 || t->flags > 3 ||
        codec_rd_var(&r, n, &pairs) || pairs == 0)
        return -EINVAL;
    *runs = r;
    *lines = 0;
    for (uint64_t i = 0; i < pairs; i++) {
        if (codec_rd_var(&r, n, &a) || codec_rd_var(&r, n, &b) || a == 0 || b == 0 ||
            __builtin_mul_overflow(a, b, &ab) || ab > n - sum)
            return -EINVAL;
        sum += ab;
        *lines += b;
    }
    return sum == n && r.left == 0 ? 0 : -EINVAL;
}

/* The text of the samples as the section lays them out, at q. */
static void text_render(const struct codec_image *img, const struct text_layout *t,
                        struct codec_rd runs, uint64_t lines, uint8_t *q)
{
    size_t hw = (size_t)img->width * img->height, k = 0;
    const char *eol = text_eols[t->eol];
    size_t eol_len = strlen(eol);
    uint64_t line = 0, a, b;
    while (line < lines) {
        codec_rd_var(&runs, UINT64_MAX, &a); /* checked by text_section */
        codec_rd_var(&runs, UINT64_MAX, &b);
        for (uint64_t j = 0; j < b; j++, line++) {
            for (uint64_t i = 0; i < a; i++, k++) {
                size_t at = (k % img->channels) * hw + k / img->channels;
                q = text_put(q, img->bits == 16 ? ((const uint16_t *)img->planes)[at]
                                                : ((const uint8_t *)img->planes)[at]);
                if (i + 1 < a)
                    *q++ = t->sep;
            }
            if (line + 1 == lines && !(t->flags & TEXT_FINAL_EOL))
                return; /* the text ends at its last sample */
            if (t->flags & TEXT_TRAIL)
                *q++ = t->sep;
            // NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes, not a C string
            memcpy(q, eol, eol_len);
            q += eol_len;
        }
    }
}

int codec_pnm_text_join(const struct codec_image *img, const uint8_t *env, size_t env_len,
                        uint8_t **out, size_t *out_len)
{
    struct text_layout t;
    struct codec_rd runs;
    uint64_t lines, n, breaks, total;
    struct codec_found f = {.geo = *img};
    struct codec_env_parts e;
    uint8_t *o;

    /* the image within the limits (no overflow below) and its planes as large as it says */
    if (codec_env_check(img, env, env_len) != 0 || codec_env_parts(env, env_len, &e) != 0 ||
        env[CODEC_ENV_FLAGS] != CODEC_PNM_TEXT || img->frames != 1 ||
        codec_found_size(&f, NULL, 0) != 0 || f.raster_len != img->planes_bytes)
        return -EINVAL;
    n = img->planes_bytes / (img->bits / 8);
    if (text_section(e.sec, e.sec_len, n, &t, &runs, &lines))
        return -EINVAL;
    /* Digits, then separators inside lines, then the line ends (each with its trailing
     * separator): at most 6 × n + 3 × lines bytes beside head and tail, no overflow. */
    total = e.head_len + e.tail_len + (n - lines);
    for (uint64_t k = 0, hw = (uint64_t)img->width * img->height; k < n; k++) {
        size_t at = (k % img->channels) * hw + k / img->channels;
        total += text_digits(img->bits == 16 ? ((const uint16_t *)img->planes)[at]
                                             : ((const uint8_t *)img->planes)[at]);
    }
    breaks = lines - 1 + ((t.flags & TEXT_FINAL_EOL) ? 1 : 0);
    total += breaks * (strlen(text_eols[t.eol]) + ((t.flags & TEXT_TRAIL) ? 1 : 0));
    if (total > CODEC_MAX_FILE_BYTES)
        return -EFBIG;
    if (!(o = malloc(total ? total : 1)))
        return -ENOMEM;
    memcpy(o, e.head, e.head_len);
    text_render(img, &t, runs, lines, o + e.head_len);
    memcpy(o + total - e.tail_len, e.tail, e.tail_len);
    *out = o;
    *out_len = total;
    return 0;
}
