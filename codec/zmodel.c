/* SPDX-License-Identifier: MIT */
/*
 * The zlib match-finder model (codec/zmodel.h). Positions are absolute offsets into the data,
 * not offsets into a sliding buffer: the data is all in memory, so the slide is kept only as
 * what it changes, a window start (base) at or before which every stored position counts as
 * "none", exactly as zlib's position 0 does. The trade-off: one uint32_t per hash bucket and
 * per window byte, and no copying of data, at the price of following zlib's window arithmetic
 * by hand.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/zmodel.h"

#define ZM_MIN_MATCH 3u
#define ZM_MAX_MATCH 258u
/* Lookahead zlib keeps before it searches: a longest match plus the next 3-byte prefix. */
#define ZM_MIN_LOOKAHEAD (ZM_MAX_MATCH + ZM_MIN_MATCH + 1u)
/* At levels 4-9 a length-3 match further back than this costs more than three literals. */
#define ZM_TOO_FAR 4096u

/* Per-level search parameters, as zlib documents them for deflateInit2. */
struct zm_level {
    uint16_t good;  /* previous match this long: search a quarter of the chain */
    uint16_t lazy;  /* 1-3: longest match whose positions are all hashed; 4-9: no lazy search
                       once the previous match is this long */
    uint16_t nice;  /* stop searching once a match is this long */
    uint16_t chain; /* candidates tried at most */
};

static const struct zm_level zm_levels[10] = {
    {0, 0, 0, 0},         {4, 4, 8, 4},         {4, 5, 16, 8},     {4, 6, 32, 32},
    {4, 4, 16, 16},       {8, 16, 32, 32},      {8, 16, 128, 128}, {8, 32, 128, 256},
    {32, 128, 258, 1024}, {32, 258, 258, 4096},
};

struct zm {
    const uint8_t *data;
    uint32_t n; /* data length */
    uint32_t wsize, wmask, max_dist;
    uint32_t hash_bits, hash_mask, hash_shift;
    uint32_t base;   /* absolute offset of the window start: positions <= base are none */
    uint32_t filled; /* bytes of data inside the window */
    uint32_t *head;  /* per hash: latest position inserted, or a position <= base */
    uint32_t *prev;  /* per position & wmask: the position inserted before it, same hash */
    struct zm_level lv;
    int filtered;
    struct codec_zmodel_token *out;
    size_t nout;
};

static inline uint32_t zm_hash(const struct zm *z, uint32_t pos)
{
    const uint8_t *p = z->data + pos;
    return (((uint32_t)p[0] << (2 * z->hash_shift)) ^ ((uint32_t)p[1] << z->hash_shift) ^ p[2]) &
           z->hash_mask;
}

/* Hash the prefix at pos into its chain; returns the chain's previous head. */
static inline uint32_t zm_insert(struct zm *z, uint32_t pos)
{
    uint32_t h = zm_hash(z, pos), old = z->head[h];
    z->prev[pos & z->wmask] = old;
    z->head[h] = pos;
    return old;
}

/*
 * What zlib's window refill does to positions, done where zlib does it: at the top of its loop
 * when fewer than ZM_MIN_LOOKAHEAD bytes are ahead. The buffer holds 2 * wsize bytes; once the
 * current position is that close to its end, the buffer slides down by wsize and the positions
 * it held at or below the new start become "none".
 */
static inline void zm_refill(struct zm *z, uint32_t s)
{
    if (z->filled - s >= ZM_MIN_LOOKAHEAD)
        return;
    if (s - z->base >= z->wsize + z->max_dist)
        z->base += z->wsize;
    uint32_t end = z->base + 2 * z->wsize;
    z->filled = z->n < end ? z->n : end;
}

static inline void zm_emit(struct zm *z, uint32_t len, uint32_t dist)
{
    z->out[z->nout++] = (struct codec_zmodel_token){(uint16_t)len, (uint16_t)dist};
}

/* Length of the common prefix of a and b, at most max; eight bytes at a time where it can. */
static inline uint32_t zm_common(const uint8_t *a, const uint8_t *b, uint32_t max)
{
    uint32_t l = 0;
    while (max - l >= 8) {
        uint64_t x, y;
        memcpy(&x, a + l, 8);
        memcpy(&y, b + l, 8);
        if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return l + (uint32_t)__builtin_ctzll(x ^ y) / 8;
#else
            return l + (uint32_t)__builtin_clzll(x ^ y) / 8;
#endif
        }
        l += 8;
    }
    while (l < max && a[l] == b[l])
        l++;
    return l;
}

/*
 * Longest match for position s along the chain starting at cur (already known to be a real
 * position within max_dist). A candidate must beat best (the previous match's length at levels
 * 4-9); *start is updated only when one does. zlib compares past the end of the data into stale
 * buffer bytes and then clips to the lookahead; clipping first gives the same choice, because a
 * candidate that reaches the end of the data stops the search either way.
 */
static uint32_t zm_longest(const struct zm *z, uint32_t s, uint32_t cur, uint32_t best,
                           uint32_t *start)
{
    uint32_t chain = z->lv.chain, lookahead = z->n - s;
    if (best >= z->lv.good)
        chain >>= 2;
    uint32_t nice = z->lv.nice < lookahead ? z->lv.nice : lookahead;
    uint32_t max = lookahead < ZM_MAX_MATCH ? lookahead : ZM_MAX_MATCH;
    /* later candidates must be strictly closer than max_dist, and after the window start */
    uint32_t lim = s - z->base > z->max_dist ? s - z->max_dist : z->base;
    /* locals, and *start written once at the end: a store through start could alias z's
     * fields and would make the compiler reload them on every step of the chain */
    const uint8_t *data = z->data, *scan = data + s;
    const uint32_t *prev = z->prev, wmask = z->wmask;
    uint32_t found = *start;
    if (best >= max) /* no candidate can be longer: walk nothing (the chain is not counted) */
        goto done;
    /* the two bytes that end a match as long as best, and the two that start one: a candidate
     * that differs in either cannot beat best (best >= 2 always) */
    uint16_t head2, end2;
    memcpy(&head2, scan, 2);
    memcpy(&end2, scan + best - 1, 2);
    for (;;) {
        const uint8_t *m = data + cur;
        uint16_t me, mh;
        memcpy(&me, m + best - 1, 2);
        memcpy(&mh, m, 2);
        if (me == end2 && mh == head2) {
            uint32_t l = zm_common(m, scan, max);
            if (l > best) {
                found = cur;
                best = l;
                if (l >= nice || best >= max)
                    break;
                memcpy(&end2, scan + best - 1, 2);
            }
        }
        cur = prev[cur & wmask];
        if (cur <= lim || --chain == 0)
            break;
    }
done:
    *start = found;
    return best <= lookahead ? best : lookahead;
}

/* Levels 1-3: take the longest match at once; hash its positions only when it is short. */
static void zm_fast(struct zm *z)
{
    uint32_t s = 0, n = z->n, start = 0;
    while (s < n) {
        zm_refill(z, s);
        uint32_t head = 0, len = 0;
        if (n - s >= ZM_MIN_MATCH)
            head = zm_insert(z, s);
        if (head > z->base && s - head <= z->max_dist)
            len = zm_longest(z, s, head, ZM_MIN_MATCH - 1, &start);
        if (len < ZM_MIN_MATCH) {
            zm_emit(z, 1, 0);
            s++;
            continue;
        }
        zm_emit(z, len, s - start);
        if (len <= z->lv.lazy && n - s - len >= ZM_MIN_MATCH) {
            for (uint32_t q = s + 1; q < s + len; q++)
                zm_insert(z, q);
        }
        s += len;
    }
}

/*
 * A lazy prediction cut in two (codec_zmodel_predict_threads). At levels 4-9 every position
 * is hashed, so the hash chains at a position depend on the data alone, and right after a
 * match has been written the parse holds nothing either (no match pending, no byte held
 * back). A second worker therefore starts at the middle of the data in that state, with the
 * window's last wsize positions hashed, and records every position where it is in that state
 * again. The first worker runs from the start as usual; once it reaches such a position in the
 * same state, the rest of its tokens are the second worker's, token for token. If the two
 * never meet, the first worker goes on to the end alone: the result is the same either way.
 */
struct zm_sync {
    uint32_t from;    /* where the second worker starts */
    struct zm *part;  /* the second worker's model, its tokens */
    uint32_t *pos;    /* positions where the second worker was in the fresh state, increasing */
    uint32_t *tok;    /* ... and how many tokens it had written by then */
    size_t n, cap, i; /* records, their room, the first worker's cursor in them */
    pthread_t tid;
    bool running; /* the second worker's thread is not yet joined */
};

/* The second worker at s in the fresh state: record it. The first: take over there? */
static bool zm_fresh(struct zm *z, struct zm_sync *y, uint32_t s)
{
    if (z == y->part) {
        if (y->n < y->cap) {
            y->pos[y->n] = s;
            y->tok[y->n++] = (uint32_t)z->nout;
        }
        return false;
    }
    if (s < y->from)
        return false;
    if (y->running) {
        pthread_join(y->tid, NULL);
        y->running = false;
    }
    while (y->i < y->n && y->pos[y->i] < s)
        y->i++;
    if (y->i == y->n || y->pos[y->i] != s)
        return false;
    const struct zm *b = y->part;
    size_t k = y->tok[y->i];
    memcpy(z->out + z->nout, b->out + k, (b->nout - k) * sizeof(*z->out));
    z->nout += b->nout - k;
    return true;
}

/*
 * Levels 4-9: a match found at s is held back one byte; if the match at s + 1 is longer, s goes
 * out as a literal and the new match is held instead. Every position with three bytes ahead is
 * hashed. Starts at s in the fresh state; y: NULL, or the worker's part of a cut prediction.
 */
static void zm_lazy(struct zm *z, uint32_t s, struct zm_sync *y)
{
    uint32_t n = z->n, start = 0, len = ZM_MIN_MATCH - 1;
    bool pending = false; /* the byte before s is not yet written */
    if (y && zm_fresh(z, y, s))
        return;
    while (s < n) {
        zm_refill(z, s);
        uint32_t head = 0;
        if (n - s >= ZM_MIN_MATCH)
            head = zm_insert(z, s);
        uint32_t prev_len = len, prev_start = start;
        len = ZM_MIN_MATCH - 1;
        if (head > z->base && prev_len < z->lv.lazy && s - head <= z->max_dist) {
            len = zm_longest(z, s, head, prev_len, &start);
            if (len <= 5 && (z->filtered || (len == ZM_MIN_MATCH && s - start > ZM_TOO_FAR)))
                len = ZM_MIN_MATCH - 1;
        }
        if (prev_len >= ZM_MIN_MATCH && len <= prev_len) {
            zm_emit(z, prev_len, s - 1 - prev_start);
            /* s was hashed above; the rest of the match is hashed while three bytes remain */
            for (uint32_t q = s + 1; q < s - 1 + prev_len; q++) {
                if (n - q >= ZM_MIN_MATCH)
                    zm_insert(z, q);
            }
            s += prev_len - 1;
            pending = false;
            len = ZM_MIN_MATCH - 1;
            if (y && zm_fresh(z, y, s))
                return;
        } else {
            if (pending)
                zm_emit(z, 1, 0);
            pending = true;
            s++;
        }
    }
    if (pending)
        zm_emit(z, 1, 0);
}

/* Z_RLE: runs of the previous byte only, distance 1. */
static void zm_rle(struct zm *z)
{
    const uint8_t *d = z->data;
    uint32_t s = 0, n = z->n;
    while (s < n) {
        uint32_t len = 0;
        if (s > 0 && n - s >= ZM_MIN_MATCH) {
            uint32_t max = n - s < ZM_MAX_MATCH ? n - s : ZM_MAX_MATCH;
            while (len < max && d[s + len] == d[s - 1])
                len++;
        }
        if (len >= ZM_MIN_MATCH) {
            zm_emit(z, len, 1);
            s += len;
        } else {
            zm_emit(z, 1, 0);
            s++;
        }
    }
}

/* A model over data[0..len) with its tables and room for `cap` tokens; 0 or -ENOMEM. */
static int zm_init(struct zm *z, const uint8_t *data, size_t len,
                   const struct codec_zmodel_params *p, size_t cap)
{
    int wbits = p->window_bits == 8 ? 9 : p->window_bits;
    *z = (struct zm){0};
    z->data = data;
    z->n = (uint32_t)len;
    z->wsize = 1u << wbits;
    z->wmask = z->wsize - 1;
    z->max_dist = z->wsize - ZM_MIN_LOOKAHEAD;
    z->hash_bits = (uint32_t)p->mem_level + 7;
    z->hash_mask = (1u << z->hash_bits) - 1;
    z->hash_shift = (z->hash_bits + ZM_MIN_MATCH - 1) / ZM_MIN_MATCH;
    z->lv = zm_levels[p->level];
    z->filtered = p->strategy == CODEC_ZMODEL_FILTERED;
    z->out = malloc(cap * sizeof(*z->out));
    /* calloc: every position starts as 0, which is never a real candidate */
    z->head = calloc((size_t)1 << z->hash_bits, sizeof(*z->head));
    z->prev = calloc(z->wsize, sizeof(*z->prev));
    return z->out && z->head && z->prev ? 0 : -ENOMEM;
}

static void zm_fini(struct zm *z)
{
    free(z->out);
    free(z->head);
    free(z->prev);
    z->out = NULL;
    z->head = z->prev = NULL;
}

static void *zm_part_run(void *arg)
{
    struct zm_sync *y = arg;
    zm_lazy(y->part, y->from, y);
    return NULL;
}

/* Data shorter than this is predicted by one worker: a thread would cost more than it saves. */
#define ZM_CUT_MIN (32u << 10)

/*
 * Start the second worker of a cut lazy prediction at the middle of z's data, in the state
 * the first worker will have there (window start, hashed positions). Returns false when it
 * could not be started (no memory, no thread): the first worker then works alone.
 */
static bool zm_cut_start(const struct zm *z, const struct codec_zmodel_params *p, struct zm_sync *y,
                         struct zm *part)
{
    uint32_t from = z->n / 2;
    *y = (struct zm_sync){.from = from, .part = part};
    if (zm_init(part, z->data, z->n, p, z->n - from) != 0)
        goto fail;
    y->cap = (z->n - from) / ZM_MIN_MATCH + 2; /* a fresh state follows each match */
    y->pos = malloc(y->cap * sizeof(*y->pos));
    y->tok = malloc(y->cap * sizeof(*y->tok));
    if (!y->pos || !y->tok)
        goto fail;
    /* the window start as the first worker's refills leave it at from: it moves at most once
     * per refill, and the first worker refills at least every ZM_MAX_MATCH positions */
    part->filled = part->n < 2 * part->wsize ? part->n : 2 * part->wsize;
    for (uint32_t q = 0; q <= from; q++)
        zm_refill(part, q);
    /* positions a window or more back are beyond any distance: only the last wsize count */
    for (uint32_t q = from > part->wsize ? from - part->wsize : 0; q < from; q++)
        zm_insert(part, q);
    if (pthread_create(&y->tid, NULL, zm_part_run, y) != 0)
        goto fail;
    y->running = true;
    return true;
fail:
    free(y->pos);
    free(y->tok);
    zm_fini(part);
    return false;
}

int codec_zmodel_predict_threads(const uint8_t *data, size_t len,
                                 const struct codec_zmodel_params *p, unsigned threads,
                                 struct codec_zmodel_token **toks, size_t *ntoks)
{
    struct zm z = {0};
    int rc = 0;
    if (!p || (len && !data) || !toks || !ntoks)
        return -EINVAL;
    int wbits = p->window_bits == 8 ? 9 : p->window_bits;
    if (p->level < 1 || p->level > 9 || p->mem_level < 1 || p->mem_level > 9 || wbits < 9 ||
        wbits > 15 || p->strategy < CODEC_ZMODEL_DEFAULT || p->strategy > CODEC_ZMODEL_FIXED)
        return -EINVAL;
    if (len > CODEC_INFLATE_MAX_OUT)
        return -EFBIG;
    if (len == 0) {
        *toks = NULL;
        *ntoks = 0;
        return 0;
    }
    if ((rc = zm_init(&z, data, len, p, len)) != 0) /* at most one token a byte */
        goto out;
    if (p->strategy == CODEC_ZMODEL_HUFFMAN_ONLY) {
        for (size_t i = 0; i < len; i++)
            zm_emit(&z, 1, 0);
    } else if (p->strategy == CODEC_ZMODEL_RLE) {
        zm_rle(&z);
    } else if (p->level <= 3) {
        zm_fast(&z);
    } else if (threads >= 2 && len >= ZM_CUT_MIN) {
        struct zm part;
        struct zm_sync y;
        bool cut = zm_cut_start(&z, p, &y, &part);
        zm_lazy(&z, 0, cut ? &y : NULL);
        if (cut) {
            if (y.running)
                pthread_join(y.tid, NULL);
            free(y.pos);
            free(y.tok);
            zm_fini(&part);
        }
    } else {
        zm_lazy(&z, 0, NULL);
    }
    struct codec_zmodel_token *shrunk = realloc(z.out, z.nout * sizeof(*z.out));
    *toks = shrunk ? shrunk : z.out;
    *ntoks = z.nout;
    z.out = NULL;
out:
    zm_fini(&z);
    return rc;
}

int codec_zmodel_predict(const uint8_t *data, size_t len, const struct codec_zmodel_params *p,
                         struct codec_zmodel_token **toks, size_t *ntoks)
{
    return codec_zmodel_predict_threads(data, len, p, 1, toks, ntoks);
}

/* ---- comparison -------------------------------------------------------------------------- */

struct zm_cursor {
    const struct codec_zmodel_token *toks;
    size_t n, i;
    size_t pos; /* output offset where toks[i] starts */
};

/* Does the prediction hold a token (len, dist) starting at pos? Moves the cursor up to pos. */
static bool zm_match_at(struct zm_cursor *c, size_t pos, unsigned len, unsigned dist)
{
    while (c->i < c->n && c->pos < pos)
        c->pos += c->toks[c->i++].len;
    return c->i < c->n && c->pos == pos && c->toks[c->i].len == len && c->toks[c->i].dist == dist;
}

static void zm_count(struct codec_zmodel_agreement *a, bool eq, size_t pos)
{
    a->tokens++;
    if (eq)
        a->equal++;
    else if (a->first_divergence == SIZE_MAX)
        a->first_divergence = pos;
}

int codec_zmodel_compare(const struct codec_zmodel_token *toks, size_t ntoks,
                         const struct codec_deflate_desc *desc, struct codec_zmodel_agreement *a)
{
    struct codec_zmodel_agreement r = {.first_divergence = SIZE_MAX};
    struct zm_cursor c = {.toks = toks, .n = ntoks};
    size_t covered = 0, pos = 0;
    if (!desc || !a || (ntoks && !toks))
        return -EINVAL;
    for (size_t i = 0; i < ntoks; i++) {
        if (toks[i].len == 0)
            return -EINVAL;
        covered += toks[i].len;
    }
    struct codec_deflate_info info;
    codec_deflate_desc_info(desc, &info);
    if (covered != info.out_len)
        return -EINVAL;
    size_t nb = codec_deflate_desc_nblocks(desc);
    for (size_t b = 0; b < nb; b++) {
        struct codec_deflate_block_view v;
        codec_deflate_desc_block(desc, b, &v);
        if (v.type == 0) {
            r.stored_bytes += v.out_len;
            pos += v.out_len;
            continue;
        }
        for (size_t t = v.first_token; t < v.first_token + v.ntokens; t++) {
            unsigned len, dist;
            codec_deflate_desc_token(desc, t, &len, &dist);
            if (dist) {
                zm_count(&r, zm_match_at(&c, pos, len, dist), pos);
                pos += len;
                continue;
            }
            for (unsigned k = 0; k < len; k++, pos++)
                zm_count(&r, zm_match_at(&c, pos, 1, 0), pos);
        }
    }
    *a = r;
    return 0;
}
