// SPDX-License-Identifier: MIT
/*
 * The block-level half of the zlib model (codec/zlib/zmodel.h): from the symbols of one block, the
 * block type zlib chooses and, for a dynamic block, the exact header it writes. zlib builds its
 * Huffman codes with a binary heap ordered by frequency, ties broken by subtree depth, limits
 * code lengths by moving leaves down a level, then run-length codes the lengths of the literal
 * and distance codes separately. Each of those steps is deterministic given the frequencies, so
 * the header is too; this file follows the steps as zlib describes them (RFC 1951 and zlib's
 * documentation of its trees), not zlib's code.
 *
 * The trade-off: the heap ordering and the overflow repair must be followed to the letter, since
 * equal frequencies make many optimal codes and only zlib's tie-breaking picks the one it wrote.
 * Anything this model gets wrong costs recipe bytes (an explicit header), never exactness.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "codec/zlib/zmodel.h"

#define ZT_L_CODES 286 /* literal/length symbols zlib uses */
#define ZT_D_CODES 30
#define ZT_BL_CODES 19
#define ZT_HEAP (2 * ZT_L_CODES + 1)
#define ZT_END_BLOCK 256
#define ZT_REP_3_6 16
#define ZT_REPZ_3_10 17
#define ZT_REPZ_11_138 18

static const uint8_t zt_bl_order[ZT_BL_CODES] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                                 11, 4,  12, 3, 13, 2, 14, 1, 15};
static const uint8_t zt_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                         2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t zt_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                          6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t zt_bl_extra[ZT_BL_CODES] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 2, 3, 7};

/* One tree being built: leaves 0..elems-1, inner nodes from elems up. */
struct zt_tree {
    uint32_t freq[ZT_HEAP];
    uint16_t dad[ZT_HEAP];
    uint16_t len[ZT_HEAP + 1]; /* + 1: the run-length scan's guard after the last code */
    int max_code;              /* largest leaf with a code */
};

struct zt_heap {
    int heap[ZT_HEAP];
    int heap_len, heap_max;
    uint8_t depth[ZT_HEAP];
};

static bool zt_smaller(const struct zt_tree *t, const struct zt_heap *h, int n, int m)
{
    return t->freq[n] < t->freq[m] || (t->freq[n] == t->freq[m] && h->depth[n] <= h->depth[m]);
}

/* Sift the node at heap position k down to its place. */
static void zt_down(const struct zt_tree *t, struct zt_heap *h, int k)
{
    int v = h->heap[k], j = k << 1;
    while (j <= h->heap_len) {
        if (j < h->heap_len && zt_smaller(t, h, h->heap[j + 1], h->heap[j]))
            j++;
        if (zt_smaller(t, h, v, h->heap[j]))
            break;
        h->heap[k] = h->heap[j];
        k = j;
        j <<= 1;
    }
    h->heap[k] = v;
}

/*
 * Code lengths for t->freq[0..elems) limited to max_len bits, into t->len (0 for unused
 * symbols). As zlib does: at least two codes always exist (symbols 0 and 1, or 0 and the one
 * used, are given a count of one); leaves are taken in heap order; lengths beyond max_len are
 * repaired by moving pairs of leaves down, then handed out again from the least frequent leaf.
 */
static void zt_build(struct zt_tree *t, int elems, int max_len)
{
    struct zt_heap h;
    unsigned bl_count[16] = {0};
    int n, m, node, overflow = 0;

    h.heap_len = 0;
    h.heap_max = ZT_HEAP;
    t->max_code = -1;
    for (n = 0; n < elems; n++) {
        if (t->freq[n] != 0) {
            h.heap[++h.heap_len] = t->max_code = n;
            h.depth[n] = 0;
        } else {
            t->len[n] = 0;
        }
    }
    while (h.heap_len < 2) {
        node = h.heap[++h.heap_len] = t->max_code < 2 ? ++t->max_code : 0;
        t->freq[node] = 1;
        h.depth[node] = 0;
    }
    for (n = h.heap_len / 2; n >= 1; n--)
        zt_down(t, &h, n);
    node = elems;
    do {
        n = h.heap[1];
        h.heap[1] = h.heap[h.heap_len--];
        zt_down(t, &h, 1);
        m = h.heap[1];
        h.heap[--h.heap_max] = n;
        h.heap[--h.heap_max] = m;
        t->freq[node] = t->freq[n] + t->freq[m];
        h.depth[node] = (uint8_t)((h.depth[n] >= h.depth[m] ? h.depth[n] : h.depth[m]) + 1);
        t->dad[n] = t->dad[m] = (uint16_t)node;
        h.heap[1] = node++;
        zt_down(t, &h, 1);
    } while (h.heap_len >= 2);
    h.heap[--h.heap_max] = h.heap[1];

    /* Lengths from the root down (the heap's tail holds nodes parents first). */
    t->len[h.heap[h.heap_max]] = 0;
    int k;
    for (k = h.heap_max + 1; k < ZT_HEAP; k++) {
        n = h.heap[k];
        int bits = t->len[t->dad[n]] + 1;
        if (bits > max_len) {
            bits = max_len;
            overflow++;
        }
        t->len[n] = (uint16_t)bits;
        if (n > t->max_code)
            continue; /* inner node */
        bl_count[bits]++;
    }
    if (overflow == 0)
        return;
    /* Move a leaf from the deepest level above max_len... */
    do {
        int bits = max_len - 1;
        while (bl_count[bits] == 0)
            bits--;
        bl_count[bits]--;
        bl_count[bits + 1] += 2;
        bl_count[max_len]--;
        overflow -= 2;
    } while (overflow > 0);
    /* ...then hand the lengths out again, least frequent leaves first. */
    for (int bits = max_len; bits != 0; bits--) {
        unsigned c = bl_count[bits];
        while (c != 0) {
            m = h.heap[--k];
            if (m > t->max_code)
                continue;
            t->len[m] = (uint16_t)bits;
            c--;
        }
    }
}

/* Walk the code lengths 0..max_code as zlib's run-length coder does, counting the code-length
 * symbols into bl (ops NULL) or writing them as deflate.h ops. */
static void zt_scan(struct zt_tree *t, uint32_t bl[ZT_BL_CODES], uint8_t *ops, unsigned *nop)
{
    int prevlen = -1, curlen, nextlen = t->len[0], count = 0, max_count = 7, min_count = 4;
    if (nextlen == 0) {
        max_count = 138;
        min_count = 3;
    }
    t->len[t->max_code + 1] = 0xffff; /* guard */
    for (int n = 0; n <= t->max_code; n++) {
        curlen = nextlen;
        nextlen = t->len[n + 1];
        if (++count < max_count && curlen == nextlen)
            continue;
        if (count < min_count) {
            if (ops)
                for (int i = 0; i < count; i++)
                    ops[(*nop)++] = (uint8_t)curlen;
            else
                bl[curlen] += (uint32_t)count;
        } else if (curlen != 0) {
            if (curlen != prevlen) {
                if (ops)
                    ops[(*nop)++] = (uint8_t)curlen;
                else
                    bl[curlen]++;
                count--;
            }
            if (ops)
                ops[(*nop)++] = (uint8_t)(16 + count - 3);
            else
                bl[ZT_REP_3_6]++;
        } else if (count <= 10) {
            if (ops)
                ops[(*nop)++] = (uint8_t)(20 + count - 3);
            else
                bl[ZT_REPZ_3_10]++;
        } else {
            if (ops)
                ops[(*nop)++] = (uint8_t)(28 + count - 11);
            else
                bl[ZT_REPZ_11_138]++;
        }
        count = 0;
        prevlen = curlen;
        if (nextlen == 0) {
            max_count = 138;
            min_count = 3;
        } else if (curlen == nextlen) {
            max_count = 6;
            min_count = 3;
        } else {
            max_count = 7;
            min_count = 4;
        }
    }
}

static unsigned zt_static_lit_len(int n)
{
    return n < 144 ? 8 : n < 256 ? 9 : n < 280 ? 7 : 8;
}

void codec_zmodel_block(const uint32_t lit_freq[CODEC_ZMODEL_NLIT],
                        const uint32_t dist_freq[CODEC_ZMODEL_NDIST], uint64_t stored_len,
                        int strategy, struct codec_zmodel_block *out)
{
    static struct zt_tree zero;
    struct zt_tree lt = zero, dt = zero, bt = zero;
    uint64_t opt = 0, stat = 0;
    uint32_t bl[ZT_BL_CODES] = {0};

    memcpy(lt.freq, lit_freq, sizeof(uint32_t) * ZT_L_CODES);
    lt.freq[ZT_END_BLOCK] = 1;
    memcpy(dt.freq, dist_freq, sizeof(uint32_t) * ZT_D_CODES);
    zt_build(&lt, ZT_L_CODES, 15);
    zt_build(&dt, ZT_D_CODES, 15);

    /* Bits of the block's symbols under each code (the forced codes have no real symbols). */
    for (int n = 0; n < ZT_L_CODES; n++) {
        uint64_t f = n == ZT_END_BLOCK ? 1 : lit_freq[n];
        unsigned x = n > ZT_END_BLOCK ? zt_len_extra[n - ZT_END_BLOCK - 1] : 0;
        opt += f * (lt.len[n] + x);
        stat += f * (zt_static_lit_len(n) + x);
    }
    for (int n = 0; n < ZT_D_CODES; n++) {
        opt += (uint64_t)dist_freq[n] * (dt.len[n] + zt_dist_extra[n]);
        stat += (uint64_t)dist_freq[n] * (5u + zt_dist_extra[n]);
    }

    /* The header: code-length code over both run-length coded sequences. */
    zt_scan(&lt, bl, NULL, NULL);
    zt_scan(&dt, bl, NULL, NULL);
    memcpy(bt.freq, bl, sizeof(bl));
    zt_build(&bt, ZT_BL_CODES, 7);
    int max_blindex;
    for (max_blindex = ZT_BL_CODES - 1; max_blindex >= 3; max_blindex--)
        if (bt.len[zt_bl_order[max_blindex]] != 0)
            break;
    for (int n = 0; n < ZT_BL_CODES; n++)
        opt += (uint64_t)bl[n] * (bt.len[n] + zt_bl_extra[n]);
    opt += 3u * ((unsigned)max_blindex + 1) + 5 + 5 + 4;

    uint64_t opt_b = (opt + 3 + 7) >> 3, stat_b = (stat + 3 + 7) >> 3;
    if (stat_b <= opt_b || strategy == CODEC_ZMODEL_FIXED)
        opt_b = stat_b;
    memset(out, 0, sizeof(*out));
    if (stored_len + 4 <= opt_b) {
        out->type = 0;
        return;
    }
    if (stat_b == opt_b) {
        out->type = 1;
        return;
    }
    out->type = 2;
    out->hlit = (uint8_t)(lt.max_code + 1 - 257);
    out->hdist = (uint8_t)dt.max_code;
    out->hclen = (uint8_t)(max_blindex + 1 - 4);
    for (int r = 0; r <= max_blindex; r++)
        out->clen[r] = (uint8_t)bt.len[zt_bl_order[r]];
    unsigned nop = 0;
    zt_scan(&lt, NULL, out->ops, &nop);
    zt_scan(&dt, NULL, out->ops, &nop);
    out->nop = (uint16_t)nop;
}
