// SPDX-License-Identifier: MIT
/*
 * The modelled recipe (codec/zlib/zrecipe.h): a deflate description coded as its differences from
 * the zlib model's prediction. Both sides work on one form, a stream of symbols covering the
 * data (a literal per byte, a match per match; stored blocks as literals), so that corrections,
 * block layout and block heads are each a comparison of two arrays.
 *
 * The trade-off: four bytes of memory per byte of data for the symbol streams, and the model
 * runs once more at join time (it costs about what zlib's own compression costs); in return the
 * recipe of a zlib-written PNG does not grow with the image. Making a recipe decodes it again
 * and compares the description byte for byte with the recorded one: a model that is wrong, or a
 * stream that zlib did not write, costs recipe bytes and never exactness.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codec/zlib/zlib_int.h"
#include "codec/zlib/zrecipe.h"

/* Trial prefixes for the parameter search: a short one that throws most wrong settings out
 * cheaply, a longer one that tells apart settings that differ late (levels 7-9, say), then the
 * whole data; and the margin at a prefix's end where a prediction of the prefix alone may
 * differ from one of the whole data (a match or lazy step reaching past it). */
#define ZR_TRIAL 16384u
#define ZR_TRIAL2 65536u
#define ZR_TRIAL_MARGIN 1024u
/* Data up to this long is tried whole after the first prefix (data up to 2 ZR_TRIAL at once). */
#define ZR_TRIAL_WHOLE 131072u

static bool zr_tok_eq(struct codec_zmodel_token a, struct codec_zmodel_token b)
{
    return a.len == b.len && a.dist == b.dist;
}

/* Symbols of the description over data: *syms (n of them) and per block its symbol count. */
static int zr_unify(const struct codec_deflate_desc *d, struct codec_zmodel_token **syms,
                    size_t *nsyms, size_t **bsyms)
{
    size_t n = 0;
    struct codec_zmodel_token *s = NULL;
    size_t *bs = NULL;
    if (d->out_len > 0 && !(s = malloc(d->out_len * sizeof(*s))))
        return -ENOMEM;
    if (!(bs = malloc(d->nblocks * sizeof(*bs)))) {
        free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; i < d->nblocks; i++) {
        const struct dfl_block *b = &d->blocks[i];
        size_t first = n;
        if (b->type == 0) {
            if (b->out_len > d->out_len - n)
                goto bad;
            for (size_t k = 0; k < b->out_len; k++)
                s[n++] = (struct codec_zmodel_token){1, 0};
        } else {
            for (size_t t = b->first_tok; t < b->first_tok + b->ntok; t++) {
                uint32_t tok = d->tok[t];
                /* every symbol stands for at least one byte out: n stays within out_len */
                if ((TOK_DIST(tok) == 0 ? TOK_LEN(tok) : 1) > d->out_len - n)
                    goto bad;
                if (TOK_DIST(tok) == 0)
                    for (unsigned k = 0; k < TOK_LEN(tok); k++)
                        s[n++] = (struct codec_zmodel_token){1, 0};
                else
                    s[n++] = (struct codec_zmodel_token){(uint16_t)TOK_LEN(tok),
                                                         (uint16_t)TOK_DIST(tok)};
            }
        }
        bs[i] = n - first;
    }
    *syms = s;
    *nsyms = n;
    *bsyms = bs;
    return 0;
bad:
    free(s);
    free(bs);
    return -EINVAL;
}

/* Tokens of the recorded stream predicted exactly, over those starting before limit. */
static size_t zr_agree(const struct codec_zmodel_token *a, size_t na,
                       const struct codec_zmodel_token *p, size_t np, size_t limit, size_t *total)
{
    size_t i = 0, j = 0, oa = 0, op = 0, eq = 0, all = 0;
    while (i < na && oa < limit) {
        while (j < np && op < oa)
            op += p[j++].len;
        if (j < np && op == oa && zr_tok_eq(a[i], p[j]))
            eq++;
        all++;
        oa += a[i++].len;
    }
    *total = all;
    return eq;
}

/* The symbols of a block as zlib counts them, into its frequency tables. */
static void zr_freqs(const struct codec_zmodel_token *s, size_t n, const uint8_t *data, size_t off,
                     uint32_t lit[CODEC_ZMODEL_NLIT], uint32_t dist[CODEC_ZMODEL_NDIST])
{
    memset(lit, 0, sizeof(uint32_t) * CODEC_ZMODEL_NLIT);
    memset(dist, 0, sizeof(uint32_t) * CODEC_ZMODEL_NDIST);
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        if (s[i].dist == 0) {
            lit[data[off]]++;
        } else {
            lit[257 + codec_zlib_len_symbol(s[i].len, &x)]++;
            dist[codec_zlib_dist_symbol(s[i].dist, &x)]++;
        }
        off += s[i].len;
    }
}

static size_t zr_block_syms(const struct codec_zmodel_params *p)
{
    return ((size_t)1 << (p->mem_level + 6)) - 1;
}

/* Whether the blocks have zlib's layout for the given parameters. */
static bool zr_layout_is_zlibs(const struct codec_deflate_desc *d, const size_t *bsyms, size_t na,
                               const struct codec_zmodel_params *p)
{
    size_t per = zr_block_syms(p);
    if (d->nblocks != na / per + 1)
        return false;
    for (size_t i = 0; i < d->nblocks; i++)
        if (bsyms[i] != (i + 1 < d->nblocks ? per : na - per * (d->nblocks - 1)))
            return false;
    return true;
}

/*
 * Find the parameters under which the model agrees best with the recorded symbols, trying the
 * likeliest first (the zlib header's level hint and window size, libpng's and Pillow's memLevel
 * 8 and 9, the memLevel the first block's size gives away) and stopping at full agreement.
 * Long on purpose: the order of the trials is the tuning (it decides the split's speed), and
 * reads best as one list rather than spread over helpers that share the running best.
 */
static int zr_detect(const struct codec_deflate_desc *d, const uint8_t *data,
                     const struct codec_zmodel_token *a, size_t na, const size_t *bsyms,
                     unsigned threads, struct codec_zmodel_params *best,
                     struct codec_zmodel_token **full_pt, size_t *full_npt)
{
    /* a quick prefix to find a setting that agrees fully, a longer one to rank the others */
    size_t qlen = d->out_len <= 2 * ZR_TRIAL ? d->out_len : ZR_TRIAL;
    size_t rlen = d->out_len <= ZR_TRIAL_WHOLE ? d->out_len : ZR_TRIAL2;
    size_t rlimit = rlen == d->out_len ? rlen : rlen - ZR_TRIAL_MARGIN;
    int levels[9], nlev = 0, strategies[4], nstr = 0, mems[9], nmem = 0, wbits[7], nwb = 0;
    size_t best_eq = 0;
    bool found = false;

    /* zlib's header hint: 0 for level 1 and for the Huffman-only, RLE and fixed strategies
     * (fixed finds matches as the default strategy does, at any level) */
    int flevel = d->zlib ? d->flg >> 6 : -1;
    /* (within a hint, the cheaper levels first: a wrong level costs its own run, and where
     * several agree on the prefixes, that run is one of the whole data) */
    static const int by_flevel[4][9] = {{1, 2, 3, 4, 5, 6, 7, 8, 9}, {2, 3, 4, 5}, {6}, {7, 8, 9}};
    static const int by_flevel_n[4] = {9, 4, 1, 3};
    if (flevel >= 0) {
        for (int k = 0; k < by_flevel_n[flevel]; k++)
            levels[nlev++] = by_flevel[flevel][k];
    } else {
        for (int l = 6; l <= 9; l++)
            levels[nlev++] = l;
        for (int l = 1; l <= 5; l++)
            levels[nlev++] = l;
    }
    /* Z_FILTERED (libpng's and Pillow's choice for filtered rows) drops every match of 5 or
     * less at levels 4-9: a stream with many matches and none that short is tried as filtered
     * first */
    size_t nmatch = 0, nshort = 0;
    for (size_t i = 0; i < na; i++) {
        nmatch += a[i].dist != 0;
        nshort += a[i].dist != 0 && a[i].len <= 5;
    }
    /* (not for raw deflate, which has no level hint: Z_FIXED, recognised only from the
     * default strategy, would go unseen) */
    bool filtered_first = flevel > 0 && nmatch >= 16 && nshort == 0;
    if (filtered_first)
        strategies[nstr++] = CODEC_ZMODEL_FILTERED;
    strategies[nstr++] = CODEC_ZMODEL_DEFAULT;
    if (flevel != 0 && !filtered_first)
        strategies[nstr++] = CODEC_ZMODEL_FILTERED;
    if (flevel <= 0) {
        strategies[nstr++] = CODEC_ZMODEL_RLE;
        strategies[nstr++] = CODEC_ZMODEL_HUFFMAN_ONLY;
    }
    /* memLevel sets the block size, which the stream shows: the memLevels whose block layout
     * fits come first (libpng's and Pillow's 8 and 9 first among them), at most three of them
     * in the first pass; the others only when no setting agrees fully. */
    int n_first = 0;
    static const int mem_order[9] = {8, 9, 7, 6, 5, 4, 3, 2, 1};
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 9; k++) {
            struct codec_zmodel_params probe = {6, mem_order[k], 15, 0};
            if (zr_layout_is_zlibs(d, bsyms, na, &probe) == (pass == 0)) {
                mems[nmem++] = mem_order[k];
                if (pass == 0 && n_first < 3)
                    n_first++;
            }
        }
    if (n_first == 0)
        n_first = 2;
    int w0 = d->zlib ? (d->cmf >> 4) + 8 : 15;
    if (w0 < 9)
        w0 = 9;
    for (int w = w0; w <= 15; w++) {
        wbits[nwb++] = w;
        /* a window larger than the data and its lookahead changes nothing */
        if (((size_t)1 << w) >= d->out_len + 262 + 258)
            break;
    }

    /*
     * memLevel 8 and 9 (or the named one) first, all others only when those fall short.
     * Phase 0 looks for a setting that agrees fully: on the quick prefix, then on the longer
     * one, then on the whole data. Phase 1, only when none does (another deflater's stream),
     * ranks every setting by its agreement on the longer prefix.
     */
    for (int phase = 0; phase < (qlen == rlen ? 1 : 2) && !found; phase++)
        for (int pass = 0; pass < 2 && !found; pass++) {
            for (int mi = 0; mi < nmem && !found; mi++) {
                if ((mi < n_first) != (pass == 0))
                    continue;
                for (int wi = 0; wi < nwb && !found; wi++)
                    for (int li = 0; li < nlev && !found; li++)
                        for (int si = 0; si < nstr && !found; si++) {
                            struct codec_zmodel_params p = {levels[li], mems[mi], wbits[wi],
                                                            strategies[si]};
                            /* Z_FILTERED changes nothing below level 4, RLE and Huffman-only
                             * ignore the level */
                            if (strategies[si] == CODEC_ZMODEL_FILTERED && p.level < 4)
                                continue;
                            if (strategies[si] >= CODEC_ZMODEL_HUFFMAN_ONLY && li > 0)
                                continue;
                            struct codec_zmodel_token *pt = NULL;
                            size_t npt = 0, total;
                            size_t l = phase == 0 ? qlen : rlen;
                            int rc = codec_zmodel_predict_threads(data, l, &p, threads, &pt, &npt);
                            if (rc)
                                return rc;
                            size_t eq = zr_agree(a, na, pt, npt,
                                                 l == d->out_len ? l : l - ZR_TRIAL_MARGIN, &total);
                            if (l == rlen && (eq > best_eq || best_eq == 0)) {
                                best_eq = eq; /* the ranking (phase 0 does it when the two
                                                 prefixes are one) */
                                *best = p;
                            }
                            if (phase == 1) {
                                free(pt);
                                continue;
                            }
                            /* several settings may agree on the quick prefix: the longer prefix,
                             * then the whole data decide */
                            bool full = eq == total;
                            for (int stage = 0; stage < 2 && full && l < d->out_len; stage++) {
                                l = stage == 0 ? rlen : d->out_len;
                                if (stage == 1 && rlen == d->out_len)
                                    break;
                                free(pt);
                                if ((rc = codec_zmodel_predict_threads(data, l, &p, threads, &pt,
                                                                       &npt)) != 0)
                                    return rc;
                                eq = zr_agree(a, na, pt, npt,
                                              l == d->out_len ? l : l - ZR_TRIAL_MARGIN, &total);
                                full = eq == total;
                            }
                            if (full) {
                                found = true;
                                *best = p;
                                /* pt covers the whole data now: the caller need not predict again
                                 */
                                *full_pt = pt;
                                *full_npt = npt;
                                pt = NULL;
                            }
                            free(pt);
                        }
            }
        }
    /* memLevel also sets the block size: among the memLevels whose blocks fit, take one that
     * finds the same tokens (they differ only through hash collisions) */
    if (!zr_layout_is_zlibs(d, bsyms, na, best)) {
        free(*full_pt); /* the memLevel may change */
        *full_pt = NULL;
        if (found) { /* its agreement on the ranking prefix, to compare the others with */
            struct codec_zmodel_token *pt = NULL;
            size_t npt = 0, total;
            int rc = codec_zmodel_predict(data, rlen, best, &pt, &npt);
            if (rc)
                return rc;
            best_eq = zr_agree(a, na, pt, npt, rlimit, &total);
            free(pt);
        }
        for (int m = 1; m <= 9; m++) {
            struct codec_zmodel_params p = *best;
            p.mem_level = m;
            if (m == best->mem_level || !zr_layout_is_zlibs(d, bsyms, na, &p))
                continue;
            struct codec_zmodel_token *pt = NULL;
            size_t npt = 0, total;
            int rc = codec_zmodel_predict(data, rlen, &p, &pt, &npt);
            if (rc)
                return rc;
            size_t eq = zr_agree(a, na, pt, npt, rlimit, &total);
            free(pt);
            if (eq >= best_eq) {
                *best = p;
                break;
            }
        }
    }
    return 0;
}

/* Tokens as deflate.h writes them (count, then each), literal symbols merged into runs. */
static void zr_put_tokens(struct codec_buf *b, const struct codec_zmodel_token *s, size_t n)
{
    for (int pass = 0; pass < 2; pass++) {
        size_t count = 0;
        for (size_t i = 0; i < n; count++) {
            size_t run = 0;
            while (i < n && s[i].dist == 0)
                run++, i++;
            if (run > 0) {
                if (pass)
                    codec_buf_var(b, (uint64_t)run << 1);
                continue;
            }
            if (pass) {
                codec_buf_var(b, (uint64_t)(s[i].len - 3) << 1 | 1);
                codec_buf_var(b, s[i].dist - 1u);
            }
            i++;
        }
        if (!pass)
            codec_buf_var(b, count);
    }
}

static void zr_put_head(struct codec_buf *b, const struct codec_deflate_desc *d,
                        const struct dfl_block *blk)
{
    codec_buf_u8(b, blk->type);
    if (blk->type == 0) {
        codec_buf_u8(b, blk->pad);
    } else if (blk->type == 2) {
        codec_buf_u8(b, blk->hlit);
        codec_buf_u8(b, blk->hdist);
        codec_buf_u8(b, blk->hclen);
        for (unsigned k = 0; k < blk->hclen + 4u; k++)
            codec_buf_u8(b, blk->clen[k]);
        codec_buf_var(b, blk->nop);
        for (unsigned k = 0; k < blk->nop; k++)
            codec_buf_u8(b, d->ops[blk->first_op + k]);
    }
}

/* Whether the recorded head of blk is the predicted one. */
static bool zr_head_eq(const struct codec_deflate_desc *d, const struct dfl_block *blk,
                       const struct codec_zmodel_block *m)
{
    if (blk->type != m->type)
        return false;
    if (blk->type == 0)
        return blk->pad == 0;
    if (blk->type == 1)
        return true;
    return blk->hlit == m->hlit && blk->hdist == m->hdist && blk->hclen == m->hclen &&
           memcmp(blk->clen, m->clen, blk->hclen + 4u) == 0 && blk->nop == m->nop &&
           memcmp(d->ops + blk->first_op, m->ops, m->nop) == 0;
}

/* Block heads the model gets wrong under strategy (only the strategy changes heads). */
static size_t zr_head_misses(const struct codec_deflate_desc *d, const uint8_t *data,
                             const struct codec_zmodel_token *a, const size_t *bsyms, int strategy,
                             uint8_t *exc)
{
    size_t n = 0, first = 0, pos = 0;
    for (size_t i = 0; i < d->nblocks; i++) {
        uint32_t lit[CODEC_ZMODEL_NLIT], dist[CODEC_ZMODEL_NDIST];
        struct codec_zmodel_block m;
        zr_freqs(a + first, bsyms[i], data, pos, lit, dist);
        codec_zmodel_block(lit, dist, d->blocks[i].out_len, strategy, &m);
        bool miss = !zr_head_eq(d, &d->blocks[i], &m);
        if (exc)
            exc[i] = miss;
        n += miss;
        first += bsyms[i];
        pos += d->blocks[i].out_len;
    }
    return n;
}

/* ---- decoding ---------------------------------------------------------------------------- */

static int zr_push_block(struct codec_deflate_desc *d, const struct dfl_block *h)
{
    int rc = codec_grow((void **)&d->blocks, &d->cap_blocks, d->nblocks + 1,
                        sizeof(struct dfl_block), CODEC_DEFLATE_MAX_BLOCKS);
    if (rc)
        return rc;
    d->blocks[d->nblocks++] = *h;
    return 0;
}

/* Read a block head of the given type (exception) into h; dynamic ops go to d->ops. */
static int zr_read_head(struct codec_rd *r, struct codec_deflate_desc *d, struct dfl_block *h)
{
    uint8_t u;
    uint64_t v;
    uint8_t lens[DFL_NLIT + DFL_NDIST];
    int rc;
    if (codec_rd_u8(r, &u) || u > 2)
        return -EINVAL;
    h->type = u;
    if (u == 0)
        return codec_rd_u8(r, &h->pad) || h->pad > 127 ? -EINVAL : 0;
    if (u == 1)
        return 0;
    if (codec_rd_u8(r, &h->hlit) || codec_rd_u8(r, &h->hdist) || codec_rd_u8(r, &h->hclen) ||
        h->hclen > 15)
        return -EINVAL;
    for (unsigned k = 0; k < h->hclen + 4u; k++)
        if (codec_rd_u8(r, &h->clen[k]))
            return -EINVAL;
    if (codec_rd_var(r, DFL_MAXOPS, &v) || v == 0 || v > r->left)
        return -EINVAL;
    h->nop = (uint16_t)v;
    if ((rc = codec_grow((void **)&d->ops, &d->cap_ops, d->nops + h->nop, 1,
                         DFL_MAXOPS * CODEC_DEFLATE_MAX_BLOCKS)) != 0)
        return rc;
    h->first_op = d->nops;
    memcpy(d->ops + d->nops, r->p, h->nop);
    r->p += h->nop, r->left -= h->nop;
    d->nops += h->nop;
    return codec_zlib_dyn_lens(h, d->ops + h->first_op, lens);
}

static int zr_predicted_head(struct codec_deflate_desc *d, const struct codec_zmodel_token *s,
                             size_t n, const uint8_t *data, size_t off, size_t out_len,
                             int strategy, struct dfl_block *h)
{
    uint32_t lit[CODEC_ZMODEL_NLIT], dist[CODEC_ZMODEL_NDIST];
    struct codec_zmodel_block m;
    zr_freqs(s, n, data, off, lit, dist);
    codec_zmodel_block(lit, dist, out_len, strategy, &m);
    h->type = (uint8_t)m.type;
    if (m.type != 2)
        return 0;
    h->hlit = m.hlit;
    h->hdist = m.hdist;
    h->hclen = m.hclen;
    memcpy(h->clen, m.clen, sizeof(h->clen));
    h->nop = m.nop;
    int rc = codec_grow((void **)&d->ops, &d->cap_ops, d->nops + m.nop, 1,
                        DFL_MAXOPS * CODEC_DEFLATE_MAX_BLOCKS);
    if (rc)
        return rc;
    h->first_op = d->nops;
    memcpy(d->ops + d->nops, m.ops, m.nop);
    d->nops += m.nop;
    return 0;
}

/*
 * Rebuild the description from the recipe body at r (after the parameters) and the prediction
 * p[0..np) of data[0..len). d has its wrapper fields and out_len set.
 * Long on purpose: it reads the recipe format of zrecipe.h field by field, in the order the
 * header lists them, so that the parser can be checked against the specification top to bottom.
 */
static int zr_decode(struct codec_rd *r, struct codec_deflate_desc *d, const uint8_t *data,
                     size_t len, const struct codec_zmodel_params *par,
                     const struct codec_zmodel_token *p, size_t np)
{
    struct codec_zmodel_token *s = NULL;
    size_t ns = 0, j = 0, op = 0, off = 0, *bsyms = NULL, nb = 0;
    uint64_t ncorr, v, dist;
    uint8_t u;
    int rc = -EINVAL;

    /* at least one slot, so s is never NULL even for empty data (no symbol is then written) */
    if (!(s = malloc((len ? len : 1) * sizeof(*s))))
        return -ENOMEM;
    /* symbols: the prediction with the corrections spliced in */
    if (codec_rd_var(r, len, &ncorr))
        goto out;
    for (uint64_t c = 0; c < ncorr; c++) {
        uint64_t gap, ntok;
        /* a correction ends where the streams agree again, so the next one starts later */
        if (codec_rd_var(r, len - off, &gap) || (gap == 0 && c > 0))
            goto out;
        size_t pos = off + (size_t)gap;
        while (op < pos)
            s[ns++] = p[j], op += p[j++].len;
        if (op != pos || codec_rd_var(r, len - pos, &ntok) || ntok == 0)
            goto out;
        bool prev_run = false;
        for (uint64_t t = 0; t < ntok; t++) {
            if (codec_rd_var(r, 2 * (uint64_t)len + 1, &v))
                goto out;
            if (!(v & 1)) {
                if (v == 0 || prev_run || (v >> 1) > len - pos)
                    goto out;
                for (uint64_t k = 0; k < (v >> 1); k++)
                    s[ns++] = (struct codec_zmodel_token){1, 0};
                pos += (size_t)(v >> 1);
                prev_run = true;
            } else {
                if ((v >> 1) > 255 || codec_rd_var(r, 32767, &dist) || dist + 1 > pos ||
                    (v >> 1) + 3 > len - pos)
                    goto out;
                s[ns++] =
                    (struct codec_zmodel_token){(uint16_t)((v >> 1) + 3), (uint16_t)(dist + 1)};
                pos += (size_t)(v >> 1) + 3;
                prev_run = false;
            }
        }
        while (op < pos)
            op += p[j++].len;
        if (op != pos)
            goto out;
        off = pos;
    }
    while (j < np)
        s[ns++] = p[j++];

    /* block layout */
    if (codec_rd_u8(r, &u) || u > 1)
        goto out;
    if (u == 0) {
        size_t per = zr_block_syms(par);
        nb = ns / per + 1;
        if (nb > CODEC_DEFLATE_MAX_BLOCKS)
            goto out;
        if (!(bsyms = malloc(nb * sizeof(*bsyms)))) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < nb; i++)
            bsyms[i] = i + 1 < nb ? per : ns - per * (nb - 1);
    } else {
        size_t left = ns;
        if (codec_rd_var(r, CODEC_DEFLATE_MAX_BLOCKS, &v) || v == 0 || v > r->left)
            goto out;
        nb = (size_t)v;
        if (!(bsyms = malloc(nb * sizeof(*bsyms)))) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < nb; i++) {
            if (codec_rd_var(r, left, &v))
                goto out;
            bsyms[i] = (size_t)v;
            left -= bsyms[i];
        }
        if (left != 0)
            goto out;
    }

    /* blocks: predicted heads, except where the recipe gives one */
    uint64_t nexc, next_exc = UINT64_MAX;
    if (codec_rd_var(r, nb, &nexc))
        goto out;
    if (nexc > 0) {
        if (codec_rd_var(r, nb - 1, &next_exc))
            goto out;
    }
    size_t first = 0, pos = 0;
    for (size_t i = 0; i < nb; i++) {
        struct dfl_block h = {0};
        size_t blen = 0;
        for (size_t k = first; k < first + bsyms[i]; k++)
            /* the bsyms add up to ns (left above): s[k] was written */
            blen += s[k].len; // NOLINT(clang-analyzer-core.uninitialized.Assign)
        h.final = i + 1 == nb;
        h.out_len = blen;
        if (i == next_exc) {
            if ((rc = zr_read_head(r, d, &h)) != 0)
                goto out;
            rc = -EINVAL;
            if (--nexc > 0) {
                if (codec_rd_var(r, nb - 1 - i - 1, &v))
                    goto out;
                next_exc = i + 1 + v;
            } else {
                next_exc = UINT64_MAX;
            }
        } else if ((rc = zr_predicted_head(d, s + first, bsyms[i], data, pos, blen, par->strategy,
                                           &h)) != 0) {
            goto out;
        }
        rc = -EINVAL;
        if (h.type == 0) {
            if (blen > 65535)
                goto out;
        } else {
            h.first_tok = d->ntok;
            for (size_t k = first; k < first + bsyms[i];) {
                uint32_t tok;
                if (s[k].dist == 0) {
                    uint32_t run = 0;
                    while (k < first + bsyms[i] && s[k].dist == 0 && run < CODEC_DEFLATE_MAX_RUN)
                        run++, k++;
                    tok = run << 16;
                } else {
                    tok = (uint32_t)s[k].len << 16 | s[k].dist;
                    k++;
                }
                if ((rc = codec_zlib_push_tok(d, tok)) != 0)
                    goto out;
            }
            h.ntok = d->ntok - h.first_tok;
        }
        if ((rc = zr_push_block(d, &h)) != 0)
            goto out;
        rc = -EINVAL;
        first += bsyms[i];
        pos += blen;
    }
    if (nexc != 0 || codec_rd_u8(r, &d->end_pad) || d->end_pad > 127 ||
        codec_rd_var(r, CODEC_DEFLATE_MAX_TAIL, &v) || v != r->left)
        goto out;
    d->tail_len = (size_t)v;
    if (d->tail_len) {
        if (!(d->tail = malloc(d->tail_len))) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(d->tail, r->p, d->tail_len);
    }
    rc = 0;
out:
    free(s);
    free(bsyms);
    return rc;
}

/* Parse the fixed fields; on success d has its wrapper and length, p the parameters. */
static int zr_header(struct codec_rd *r, size_t len, struct codec_deflate_desc *d,
                     struct codec_zmodel_params *p)
{
    uint8_t u[4];
    uint64_t v;
    if (r->left < 6 || memcmp(r->p, CODEC_ZRECIPE_MAGIC, 4) != 0 ||
        r->p[4] != CODEC_ZRECIPE_VERSION || r->p[5] > 1)
        return -EINVAL;
    d->zlib = r->p[5];
    r->p += 6, r->left -= 6;
    if (d->zlib) {
        if (codec_rd_u8(r, &d->cmf) || codec_rd_u8(r, &d->flg) || (d->cmf & 15) != 8 ||
            (d->cmf >> 4) > 7 || (d->flg & 0x20) || ((unsigned)d->cmf * 256 + d->flg) % 31 != 0)
            return -EINVAL;
    }
    if (codec_rd_var(r, UINT64_MAX, &v) || v != len)
        return -EINVAL;
    d->out_len = len;
    for (int i = 0; i < 4; i++)
        if (codec_rd_u8(r, &u[i]))
            return -EINVAL;
    *p = (struct codec_zmodel_params){u[0], u[1], u[2], u[3]};
    if (p->level < 1 || p->level > 9 || p->mem_level < 1 || p->mem_level > 9 ||
        p->window_bits < 9 || p->window_bits > 15 || p->strategy < 0 ||
        p->strategy > CODEC_ZMODEL_FIXED)
        return -EINVAL;
    return 0;
}

int codec_zrecipe_parse(const uint8_t *buf, size_t buf_len, const uint8_t *data, size_t len,
                        size_t max_out, unsigned threads, struct codec_deflate_desc **desc)
{
    struct codec_rd r = {buf, buf_len};
    struct codec_deflate_desc *d = NULL;
    struct codec_zmodel_params p;
    struct codec_zmodel_token *pt = NULL;
    size_t npt = 0;
    int rc;
    if ((!buf && buf_len) || (!data && len))
        return -EINVAL;
    if (max_out > CODEC_DEFLATE_MAX_OUT)
        max_out = CODEC_DEFLATE_MAX_OUT;
    if (len > max_out)
        return -EFBIG;
    if (!(d = calloc(1, sizeof(*d))))
        return -ENOMEM;
    if ((rc = zr_header(&r, len, d, &p)) != 0 ||
        (rc = codec_zmodel_predict_threads(data, len, &p, threads, &pt, &npt)) != 0 ||
        (rc = zr_decode(&r, d, data, len, &p, pt, npt)) != 0)
        goto out;
    *desc = d;
    d = NULL;
out:
    free(pt);
    codec_deflate_desc_free(d);
    return rc == -EFBIG || rc == -ENOMEM ? rc : rc ? -EINVAL : 0;
}

/* ---- making ------------------------------------------------------------------------------ */

static void zr_encode(struct codec_buf *b, const struct codec_deflate_desc *d, const uint8_t *data,
                      const struct codec_zmodel_params *par, const struct codec_zmodel_token *a,
                      size_t na, const size_t *bsyms, const struct codec_zmodel_token *p,
                      struct codec_zrecipe_info *info)
{
    for (int i = 0; i < 4; i++)
        codec_buf_u8(b, (uint8_t)CODEC_ZRECIPE_MAGIC[i]);
    codec_buf_u8(b, CODEC_ZRECIPE_VERSION);
    codec_buf_u8(b, (uint8_t)d->zlib);
    if (d->zlib) {
        codec_buf_u8(b, d->cmf);
        codec_buf_u8(b, d->flg);
    }
    codec_buf_var(b, d->out_len);
    codec_buf_u8(b, (uint8_t)par->level);
    codec_buf_u8(b, (uint8_t)par->mem_level);
    codec_buf_u8(b, (uint8_t)par->window_bits);
    codec_buf_u8(b, (uint8_t)par->strategy);

    /* corrections: count first, so two passes */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0, j = 0, oa = 0, op = 0, prev_end = 0, count = 0;
        while (i < na) {
            if (oa == op && zr_tok_eq(a[i], p[j])) {
                oa += a[i++].len;
                op += p[j++].len;
                continue;
            }
            size_t start = oa, istart = i;
            do {
                if (oa <= op)
                    oa += a[i++].len;
                while (op < oa)
                    op += p[j++].len;
            } while (oa != op || (i < na && !zr_tok_eq(a[i], p[j])));
            count++;
            if (pass == 1) {
                codec_buf_var(b, start - prev_end);
                zr_put_tokens(b, a + istart, i - istart);
            } else {
                info->corrected_tokens += i - istart;
            }
            prev_end = oa;
        }
        if (pass == 0) {
            codec_buf_var(b, count);
            info->corrections = count;
        }
    }

    /* layout */
    bool rule = zr_layout_is_zlibs(d, bsyms, na, par);
    codec_buf_u8(b, rule ? 0 : 1);
    info->explicit_layout = !rule;
    if (!rule) {
        codec_buf_var(b, d->nblocks);
        for (size_t i = 0; i < d->nblocks; i++)
            codec_buf_var(b, bsyms[i]);
    }

    /* heads that differ */
    uint8_t *exc = calloc(d->nblocks, 1);
    if (!exc) {
        b->err = -ENOMEM;
        return;
    }
    size_t nexc = zr_head_misses(d, data, a, bsyms, par->strategy, exc);
    info->blocks = d->nblocks;
    info->block_exceptions = nexc;
    codec_buf_var(b, nexc);
    size_t last = 0;
    bool any = false;
    for (size_t i = 0; i < d->nblocks; i++) {
        if (!exc[i])
            continue;
        codec_buf_var(b, any ? i - last - 1 : i);
        zr_put_head(b, d, &d->blocks[i]);
        last = i;
        any = true;
    }
    free(exc);
    codec_buf_u8(b, d->end_pad);
    codec_buf_var(b, d->tail_len);
    for (size_t i = 0; i < d->tail_len; i++)
        codec_buf_u8(b, d->tail[i]);
}

/* Whether two descriptions are the same (their canonical serialisations are). */
static int zr_same(const struct codec_deflate_desc *x, const struct codec_deflate_desc *y)
{
    size_t nx = codec_deflate_desc_size(x), ny = codec_deflate_desc_size(y);
    uint8_t *bx = NULL, *by = NULL;
    int rc = -ENOMEM;
    if (nx != ny)
        return -ENOTSUP;
    if (!(bx = malloc(nx)) || !(by = malloc(ny)))
        goto out;
    codec_deflate_desc_serialise(x, bx, nx);
    codec_deflate_desc_serialise(y, by, ny);
    rc = memcmp(bx, by, nx) == 0 ? 0 : -ENOTSUP;
out:
    free(bx);
    free(by);
    return rc;
}

int codec_zrecipe_make(const struct codec_deflate_desc *desc, const uint8_t *data, size_t len,
                       unsigned threads, uint8_t **out, size_t *out_len,
                       struct codec_zrecipe_info *info)
{
    struct codec_zrecipe_info inf = {0};
    struct codec_buf b = {0};
    struct codec_deflate_desc *back = NULL;
    struct codec_zmodel_token *a = NULL, *pt = NULL;
    size_t na = 0, npt = 0, *bsyms = NULL;
    bool coded = false;
    int rc;

    if (!desc || (!data && len) || !out || !out_len)
        return -EINVAL;
    if (desc->out_len != len)
        return -EINVAL;
    for (size_t i = 0; i < desc->nblocks; i++)
        coded |= desc->blocks[i].type != 0 && desc->blocks[i].ntok > 0;
    if (!coded)
        return -ENOTSUP;
    if ((rc = zr_unify(desc, &a, &na, &bsyms)) != 0 ||
        (rc = zr_detect(desc, data, a, na, bsyms, threads, &inf.params, &pt, &npt)) != 0 ||
        (!pt &&
         (rc = codec_zmodel_predict_threads(data, len, &inf.params, threads, &pt, &npt)) != 0))
        goto out;
    /* Z_FIXED finds the same matches as the default strategy and only changes block heads. */
    if (inf.params.strategy == CODEC_ZMODEL_DEFAULT &&
        zr_head_misses(desc, data, a, bsyms, CODEC_ZMODEL_FIXED, NULL) <
            zr_head_misses(desc, data, a, bsyms, CODEC_ZMODEL_DEFAULT, NULL))
        inf.params.strategy = CODEC_ZMODEL_FIXED;
    zr_encode(&b, desc, data, &inf.params, a, na, bsyms, pt, &inf);
    if ((rc = b.err) != 0)
        goto out;

    /* The recipe must give back exactly the recorded description. */
    struct codec_rd r = {b.p, b.len};
    struct codec_zmodel_params p2;
    if (!(back = calloc(1, sizeof(*back)))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = zr_header(&r, len, back, &p2)) != 0 ||
        (rc = zr_decode(&r, back, data, len, &p2, pt, npt)) != 0) {
        rc = rc == -ENOMEM ? rc : -ENOTSUP;
        goto out;
    }
    if ((rc = zr_same(desc, back)) != 0)
        goto out;
    *out = b.p;
    *out_len = b.len;
    b.p = NULL;
    if (info)
        *info = inf;
out:
    free(b.p);
    free(a);
    free(pt);
    free(bsyms);
    codec_deflate_desc_free(back);
    return rc;
}
