/* SPDX-License-Identifier: MIT */
/*
 * The zlib match-finder model (codec/zlib/zmodel.h). Positions are absolute offsets into the data,
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

#include "codec/zlib/zmodel.h"

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
    uint32_t n;   /* data length */
    uint32_t end; /* zm_lazy stops at the first position at or past it (n, but for the second
                     worker of a shared prediction) */
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
 * A lazy prediction shared by two workers (codec_zmodel_predict_threads). At levels 4-9 every
 * position is hashed, so the hash chains at a position depend on the data alone, and right
 * after a match has been written the parse holds nothing either (no match pending, no byte
 * held back): the "fresh" state. So the data is cut into segments, and a segment can be coded
 * by starting at its first byte in the fresh state, with the window's last wsize positions
 * hashed. The first worker runs from the start as usual and takes the segments it reaches
 * first; the second takes segments from the end backwards, each coded until it meets, in the
 * fresh state at the same position, the segment after it (whose fresh states it recorded).
 * When the first worker reaches a segment the second has taken, it waits for it, goes on
 * until it meets that segment's records, and the rest of its tokens are the second worker's,
 * token for token. Where two never meet, a worker just goes on to the end: the tokens are
 * those of one worker, always.
 */
/* ZS_BROKEN: the second worker gave the segment up (it met no later segment within
 * ZM_SEG_SLACK of its end, or only a broken one): the first runs through it itself. */
enum { ZS_FREE, ZS_SECOND, ZS_DONE, ZS_FIRST, ZS_BROKEN };

struct zm_seg {
    uint32_t from;                  /* first position */
    uint32_t end;                   /* the second worker gives up at this position */
    struct codec_zmodel_token *out; /* the second worker's tokens from `from` on */
    size_t nout;
    uint32_t *pos, *tok; /* positions where it was in the fresh state (increasing), and how
                            many tokens it had written by then */
    size_t n, cap;
    /* where it met the next segment: its tokens before that, and the next segment's record
     * there; link_rec SIZE_MAX: they never met, out runs to the end of the data */
    size_t link_tok, link_rec;
    int state; /* ZS_*, under the share's lock */
};

#define ZM_SEGS_MAX 8u

struct zm_share {
    struct zm_seg seg[ZM_SEGS_MAX];
    unsigned nseg;
    struct zm part; /* the second worker's model, reset for each segment */
    pthread_mutex_t lock;
    pthread_cond_t done; /* a segment became ZS_DONE */
    pthread_t tid;
};

/* What a worker's fresh states are checked against. */
struct zm_hook {
    struct zm_share *sh;
    bool second;
    unsigned seg;  /* second worker: the segment it codes; first: the next segment ahead */
    bool meeting;  /* first worker: that segment is the second's; meet its records */
    size_t cursor; /* in the records being met */
};

/* Advance *cursor in seg's records to s; true when seg was in the fresh state at s. */
static bool zm_meets(const struct zm_seg *g, size_t *cursor, uint32_t s)
{
    while (*cursor < g->n && g->pos[*cursor] < s)
        (*cursor)++;
    return *cursor < g->n && g->pos[*cursor] == s;
}

/* The first worker has met segment c at record r: the rest of the tokens are the second's. */
static void zm_take(struct zm *z, const struct zm_share *sh, unsigned c, size_t r)
{
    size_t k = sh->seg[c].tok[r];
    for (;;) {
        const struct zm_seg *g = &sh->seg[c];
        size_t end = g->link_rec == SIZE_MAX ? g->nout : g->link_tok;
        memcpy(z->out + z->nout, g->out + k, (end - k) * sizeof(*z->out));
        z->nout += end - k;
        if (g->link_rec == SIZE_MAX)
            return;
        k = sh->seg[c + 1].tok[g->link_rec];
        c++;
    }
}

/* A worker at s in the fresh state: record it, and stop (true) where it meets another's. */
static bool zm_fresh(struct zm *z, struct zm_hook *h, uint32_t s)
{
    struct zm_share *sh = h->sh;
    if (h->second) {
        struct zm_seg *g = &sh->seg[h->seg];
        if (g->n < g->cap) {
            g->pos[g->n] = s;
            g->tok[g->n++] = (uint32_t)z->nout;
        }
        const struct zm_seg *next = &sh->seg[h->seg + 1];
        /* (next->state is the second worker's own write: no lock needed here) */
        if (h->seg + 1 < sh->nseg && next->state == ZS_DONE && s >= next->from &&
            zm_meets(next, &h->cursor, s)) {
            g->link_tok = z->nout;
            g->link_rec = h->cursor;
            return true;
        }
        return false;
    }
    for (;;) {
        if (h->seg >= sh->nseg || s < sh->seg[h->seg].from)
            return false;
        if (!h->meeting) {
            pthread_mutex_lock(&sh->lock);
            struct zm_seg *g = &sh->seg[h->seg];
            if (g->state == ZS_FREE) {
                g->state = ZS_FIRST; /* ours: go on through it */
                pthread_mutex_unlock(&sh->lock);
                h->seg++;
                continue;
            }
            while (g->state != ZS_DONE && g->state != ZS_BROKEN)
                pthread_cond_wait(&sh->done, &sh->lock);
            bool broken = g->state == ZS_BROKEN;
            pthread_mutex_unlock(&sh->lock);
            if (broken) {
                h->seg++;
                continue;
            }
            h->meeting = true;
            h->cursor = 0;
        }
        const struct zm_seg *g = &sh->seg[h->seg];
        if (zm_meets(g, &h->cursor, s)) {
            zm_take(z, sh, h->seg, h->cursor);
            return true;
        }
        if (h->cursor < g->n)
            return false;
        /* past all its fresh states without meeting: try the next segment (the second's
         * too: it took segments from the end) */
        h->seg++;
        h->meeting = false;
    }
}

/*
 * Levels 4-9: a match found at s is held back one byte; if the match at s + 1 is longer, s goes
 * out as a literal and the new match is held instead. Every position with three bytes ahead is
 * hashed. Starts at s in the fresh state; y: NULL, or the worker's part of a shared prediction.
 */
static void zm_lazy(struct zm *z, uint32_t s, struct zm_hook *y)
{
    uint32_t n = z->n, end = z->end, start = 0, len = ZM_MIN_MATCH - 1;
    bool pending = false; /* the byte before s is not yet written */
    if (y && zm_fresh(z, y, s))
        return;
    while (s < end) {
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
    z->n = z->end = (uint32_t)len;
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

/* Reset the second worker's model to the state the first will have at `from`: the window start
 * where the first worker's refills leave it (it moves at most once per refill, and the first
 * worker refills at least every ZM_MAX_MATCH positions, so refilling every 256 gives the same),
 * and the last wsize positions hashed (any further back are beyond every distance). */
static void zm_start_at(struct zm *z, uint32_t from)
{
    memset(z->head, 0, ((size_t)1 << z->hash_bits) * sizeof(*z->head));
    memset(z->prev, 0, z->wsize * sizeof(*z->prev));
    z->base = 0;
    z->filled = z->n < 2 * z->wsize ? z->n : 2 * z->wsize;
    for (uint32_t q = 0; q < from; q += 256)
        zm_refill(z, q);
    zm_refill(z, from);
    for (uint32_t q = from > z->wsize ? from - z->wsize : 0; q < from; q++)
        zm_insert(z, q);
}

/* The second worker: segments from the last backwards, while the first has not taken them. */
static void *zm_second(void *arg)
{
    struct zm_share *sh = arg;
    for (unsigned i = sh->nseg - 1; i >= 1; i--) {
        struct zm_seg *g = &sh->seg[i];
        pthread_mutex_lock(&sh->lock);
        bool mine = g->state == ZS_FREE;
        if (mine)
            g->state = ZS_SECOND;
        pthread_mutex_unlock(&sh->lock);
        if (!mine)
            break;
        struct zm *z = &sh->part;
        zm_start_at(z, g->from);
        z->out = g->out;
        z->nout = 0;
        z->end = g->end;
        g->link_rec = SIZE_MAX;
        struct zm_hook h = {.sh = sh, .second = true, .seg = i};
        zm_lazy(z, g->from, &h);
        g->nout = z->nout;
        z->out = NULL;
        /* complete when it met the next segment or ran to the end of the data */
        bool whole = g->link_rec != SIZE_MAX || g->end == z->n;
        pthread_mutex_lock(&sh->lock);
        g->state = whole ? ZS_DONE : ZS_BROKEN;
        pthread_cond_broadcast(&sh->done);
        pthread_mutex_unlock(&sh->lock);
        if (!whole)
            break; /* an earlier segment could only meet this one: it would be given up too */
    }
    return NULL;
}

/* Segments of at least this many bytes; shorter data is predicted by one worker. A segment's
 * worker may run this far into the next one to meet it. Data over ZM_SHARE_MAX is predicted
 * by one worker too: the segments' tokens and records take up to about six bytes a byte of
 * data on top of the first worker's four. */
#define ZM_SEG_MIN (32u << 10)
#define ZM_SEG_SLACK (16u << 10)
#define ZM_SHARE_MAX (64u << 20)

static void zm_share_free(struct zm_share *sh)
{
    for (unsigned i = 0; i < sh->nseg; i++) {
        free(sh->seg[i].out);
        free(sh->seg[i].pos);
        free(sh->seg[i].tok);
    }
    zm_fini(&sh->part);
}

/*
 * Set up a shared prediction of z's data and start the second worker. Returns false when it
 * could not be started (no memory, no thread): the first worker then works alone.
 */
static bool zm_share_start(const struct zm *z, const struct codec_zmodel_params *p,
                           struct zm_share *sh)
{
    memset(sh, 0, sizeof(*sh));
    unsigned nseg = z->n / ZM_SEG_MIN;
    sh->nseg = nseg < ZM_SEGS_MAX ? nseg : ZM_SEGS_MAX;
    if (zm_init(&sh->part, z->data, z->n, p, 1) != 0) /* its tokens go to the segments */
        goto fail;
    free(sh->part.out);
    sh->part.out = NULL;
    for (unsigned i = 0; i < sh->nseg; i++) {
        struct zm_seg *g = &sh->seg[i];
        g->from = (uint32_t)((uint64_t)z->n * i / sh->nseg);
        if (i == 0)
            continue; /* the first worker's from the start */
        /* it codes up to ZM_SEG_SLACK into the next segment (tokens: at most a byte each, the
         * last may reach ZM_MAX_MATCH further), and records a fresh state after each match */
        uint64_t end = i + 1 < sh->nseg ? (uint64_t)z->n * (i + 1) / sh->nseg + ZM_SEG_SLACK : z->n;
        g->end = end < z->n ? (uint32_t)end : z->n;
        size_t span = g->end - g->from + 2 * ZM_MAX_MATCH;
        g->cap = span / ZM_MIN_MATCH + 2;
        g->out = malloc(span * sizeof(*g->out));
        g->pos = malloc(g->cap * sizeof(*g->pos));
        g->tok = malloc(g->cap * sizeof(*g->tok));
        if (!g->out || !g->pos || !g->tok)
            goto fail;
    }
    sh->seg[0].state = ZS_FIRST;
    if (pthread_mutex_init(&sh->lock, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&sh->done, NULL) != 0) {
        pthread_mutex_destroy(&sh->lock);
        goto fail;
    }
    if (pthread_create(&sh->tid, NULL, zm_second, sh) != 0) {
        pthread_cond_destroy(&sh->done);
        pthread_mutex_destroy(&sh->lock);
        goto fail;
    }
    return true;
fail:
    zm_share_free(sh);
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
    if (len > CODEC_DEFLATE_MAX_OUT)
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
    } else if (threads >= 2 && len >= 2 * ZM_SEG_MIN && len <= ZM_SHARE_MAX) {
        struct zm_share sh;
        bool shared = zm_share_start(&z, p, &sh);
        struct zm_hook h = {.sh = &sh, .seg = 1};
        zm_lazy(&z, 0, shared ? &h : NULL);
        if (shared) {
            pthread_join(sh.tid, NULL);
            pthread_cond_destroy(&sh.done);
            pthread_mutex_destroy(&sh.lock);
            zm_share_free(&sh);
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
