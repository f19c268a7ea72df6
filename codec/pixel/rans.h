/* SPDX-License-Identifier: MIT */
/*
 * Static-table rANS: the entropy coder under the pixel coder (pixcode.h), and under any other
 * stream of small tokens whose statistics are gathered before coding.
 *
 * One table per context, made once from counts and stored ahead of the data, so the decoder
 * never adapts and a stream can be cut into independent pieces that share the tables. The
 * trade-off is the table bytes (a few dozen per used context) against adaptive coding's
 * per-symbol model updates: tables win on anything larger than a few thousand symbols, and
 * they make decoding a table look-up, a multiply and a byte read.
 *
 * Coder: 32-bit state, byte-wise renormalisation to [2^23, 2^31), frequencies in 12 bits
 * (they sum to 4096), alphabets of up to CODEC_RANS_MAX_SYMS symbols. Two states interleave:
 * symbol i of a stream is coded by state i & 1, so consecutive decodes do not wait on each
 * other. The encoder works backwards over a whole stream held in memory.
 *
 * Stream ("rANS bytes"): state 0 (4 bytes, little-endian), state 1 (4 bytes, little-endian),
 * then the renormalisation bytes in the order the decoder reads them. A valid stream ends with
 * both states at 2^23 exactly when its last byte has been read: the decoder checks both, so a
 * stream cut short or extended is refused.
 *
 * Tables (a block of T tables, as codec_rans_tables_write makes it): a bit string, least
 * significant bit of each byte first, padded with zero bits to a whole byte. Per table:
 *   8 bits   n: symbols in the table, 0..CODEC_RANS_MAX_SYMS (0: the context is not used;
 *            1: symbol 0 has frequency 4096, nothing follows)
 *   n >= 2:
 *   7 bits   b < n: the symbol that takes the rest of 4096 (the most frequent one)
 *   4 bits   precision P, 0..11
 *   then, for each symbol s < n other than b:
 *     class k, 0..12: k = 0 is frequency 0; otherwise the frequency is in [2^(k-1), 2^k)
 *              and min(k-1, P) bits follow: the bits just below the leading one, the lower
 *              ones being zero. Form 1: k in 4 bits. Form 2 (CODEC_RANS_FORM_DELTA): the
 *              first class in 4 bits, each later one against the one before it (p; the
 *              symbol b is skipped): bit 0 means k = p; bits 1, 0, then a bit s mean
 *              k = p + 1 (s = 0) or p - 1 (s = 1); bits 1, 1, then k in 4 bits, only where
 *              |k - p| >= 2. Neighbouring symbols have frequencies of a like size, so this
 *              takes about 30% fewer bits.
 *   symbol b has 4096 minus the others' sum, which must be at least 1. Each table has one
 *   form: b is the first symbol of the largest frequency, P does not exceed the largest
 *   k - 1, and symbol n - 1 has a frequency.
 * Storing frequencies to P bits lets a table cost a few bytes where its context codes few
 * symbols; the encoder picks P per table for the fewest total bits.
 *
 * Nothing here keeps global state; every function is safe on distinct arguments from any
 * number of threads.
 */
#ifndef IMGCRYPTFS_CODEC_RANS_H
#define IMGCRYPTFS_CODEC_RANS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CODEC_RANS_PROB_BITS 12u
#define CODEC_RANS_PROB_SCALE (1u << CODEC_RANS_PROB_BITS)
#define CODEC_RANS_MAX_SYMS 128u
#define CODEC_RANS_L (1u << 23) /* lower end of the state interval */

/* How a table block codes the classes of its frequencies (above). */
enum codec_rans_form {
    CODEC_RANS_FORM_PLAIN = 1, /* 4 bits each */
    CODEC_RANS_FORM_DELTA = 2, /* against the class before */
};

/* A normalised table: freq[s] for s < nsym sum to 4096 (nsym == 0: unused, no symbol). */
struct codec_rans_table {
    uint32_t nsym;
    uint32_t big, prec; /* the serialised form (above): remainder symbol and precision */
    uint16_t freq[CODEC_RANS_MAX_SYMS];
    uint16_t cum[CODEC_RANS_MAX_SYMS + 1];
};

/* A table ready for decoding: the symbol of each of the 4096 slots. */
struct codec_rans_dtable {
    uint32_t nsym; /* 0: a stream that uses this table is corrupt */
    uint16_t freq[CODEC_RANS_MAX_SYMS];
    uint16_t cum[CODEC_RANS_MAX_SYMS];
    uint8_t sym[CODEC_RANS_PROB_SCALE];
};

/*
 * Make t from counts[0..n): every symbol with a non-zero count gets a frequency >= 1, symbols
 * past the last used one are dropped (t->nsym = last used + 1). Rounding is settled where it
 * costs the fewest bits, and the precision is the one that makes table plus data smallest.
 * All counts zero gives the unused table (nsym = 0). Returns 0, or -EINVAL when
 * n > CODEC_RANS_MAX_SYMS.
 */
int codec_rans_normalize(const uint32_t *counts, size_t n, enum codec_rans_form form,
                         struct codec_rans_table *t);

/* Bits the table takes in its serialised form (without the block's padding). */
size_t codec_rans_table_bits(const struct codec_rans_table *t, enum codec_rans_form form);

/* Bits that coding counts[0..n) with t costs (fractional, without the table itself); a
 * symbol counted but absent from t makes it infinite (HUGE_VAL). */
double codec_rans_cost(const uint32_t *counts, size_t n, const struct codec_rans_table *t);

/* Serialise tables t[0..ntab) (format above) into out[0..cap). Returns the bytes written, or
 * -EOVERFLOW when cap is too small (CODEC_RANS_TABLE_MAX_BYTES per table is always enough),
 * -EINVAL for an unknown form. */
#define CODEC_RANS_TABLE_MAX_BYTES (1u + (CODEC_RANS_MAX_SYMS * 18u + 7u) / 8u)
ssize_t codec_rans_tables_write(const struct codec_rans_table *t, size_t ntab,
                                enum codec_rans_form form, uint8_t *out, size_t cap);

/* Parse ntab tables from in[0..len) (untrusted). Returns the bytes consumed (the block is
 * byte-padded), or -EINVAL for anything malformed: a class above 12, a class coded in 4 bits
 * in form 2 where it is within 1 of the one before, a sum over 4095 before the last symbol,
 * non-zero padding, too few bytes, an unknown form. */
ssize_t codec_rans_tables_read(const uint8_t *in, size_t len, enum codec_rans_form form,
                               struct codec_rans_table *t, size_t ntab);

/* Fill a decoding table from a (valid) table. */
void codec_rans_dtable_init(struct codec_rans_dtable *d, const struct codec_rans_table *t);

/*
 * Encode n symbols: symbol i is sym[i] under table tabs[ctx[i]] (ctx NULL: tabs[0] for all).
 * The stream goes to out[0..cap); cap of 8 + 2 * n + 8 bytes always suffices (a symbol costs
 * at most 12 bits). *len gets its length. Returns 0, -EOVERFLOW (cap too small), -EINVAL (a
 * symbol without frequency in its table: the tables were not made from these symbols).
 */
#define CODEC_RANS_ENC_BOUND(n) ((size_t)16 + 2 * (size_t)(n))
int codec_rans_encode(const uint8_t *sym, const uint8_t *ctx, size_t n,
                      const struct codec_rans_table *tabs, size_t ntab, uint8_t *out, size_t cap,
                      size_t *len);

/* Decoder over one stream; `bad` is set (never cleared) when the stream runs out. */
struct codec_rans_dec {
    uint32_t x[2];
    const uint8_t *p, *end;
    int bad;
};

/* Start decoding buf[0..len). Returns 0, or -EINVAL (shorter than 8 bytes, or a state outside
 * [2^23, 2^31)). */
int codec_rans_dec_init(struct codec_rans_dec *d, const uint8_t *buf, size_t len);

/* Decode the next symbol with state `lane` (0 or 1, alternating from 0) under table t, which
 * must have nsym >= 1. Never reads outside the stream; a stream that runs short sets d->bad. */
static inline unsigned codec_rans_dec_get(struct codec_rans_dec *d,
                                          const struct codec_rans_dtable *t, unsigned lane)
{
    uint32_t x = d->x[lane];
    uint32_t slot = x & (CODEC_RANS_PROB_SCALE - 1);
    unsigned s = t->sym[slot];
    x = (uint32_t)t->freq[s] * (x >> CODEC_RANS_PROB_BITS) + slot - t->cum[s];
    while (x < CODEC_RANS_L) {
        if (d->p == d->end) {
            d->bad = 1;
            x = CODEC_RANS_L;
            break;
        }
        x = x << 8 | *d->p++;
    }
    d->x[lane] = x;
    return s;
}

/* After the last symbol: 0 when the stream was valid and fully read, else -EINVAL. */
int codec_rans_dec_finish(const struct codec_rans_dec *d);

#endif
