// SPDX-License-Identifier: MIT
/*
 * The container format (container.h): parse and check a container, open its sealed sections,
 * and seal and write one. What goes into the sections (split, pixel coding, features) is the
 * image pipeline's (codec/pipeline.c); this file knows only bytes, keys and the PNG wrapper.
 *
 * Everything is done on whole buffers in memory. The trade-off is peak memory (about three
 * times the pixel stream while the PNG rows are built) against code that is short enough to be
 * checked line by line: the parser walks the bytes once, with every length checked before use.
 * Decrypted sections are the caller's to wipe; what this file decrypts on the way is wiped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <zlib.h>

#include "codec/store/container.h"
#include "codec/bytes.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

#define CT_STORED_MAX 65535u /* bytes per deflate stored block */

/* ---- Bytes ---------------------------------------------------------------------------------- */

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* ---- Geometry and sealing ------------------------------------------------------------------ */

/* The noise picture's width and height for a sealed pixel stream of p bytes (container.h). */
static void geometry(uint64_t p, uint32_t *w, uint32_t *h)
{
    uint64_t width;
    if (p <= CODEC_CT_SQUARE_MAX) {
        width = 1;
        while (width * width < p)
            width++;
    } else {
        width = (p + CODEC_CT_MAX_ROWS - 1) / CODEC_CT_MAX_ROWS;
        if (width < 1024)
            width = 1024;
    }
    *w = (uint32_t)width;
    *h = (uint32_t)((p + width - 1) / width);
}

int codec_ct_file_key(const struct keys_key *container_key, const struct codec_ct_view *v,
                      struct keys_key **out)
{
    if (!container_key || !v || !out)
        return -EINVAL;
    return keys_key_derive(container_key, CODEC_CT_FILE_LABEL, v->info.file_id, KEYS_ID_BYTES,
                           KEYS_KEY_GCM, out);
}

/*
 * Nonce and AAD of a section; returns the AAD's length (hdr_len + 1). The nonce is the section
 * kind alone: it never repeats under a key because the per-file key belongs to one encode (a
 * fresh random file id, codec_ct_write), which seals each kind, the meta included, exactly
 * once (container.h, "Sealing").
 */
static size_t section_params(const uint8_t *hdr, size_t hdr_len, enum codec_ct_section kind,
                             uint8_t nonce[KEYS_NONCE_BYTES], uint8_t aad[CODEC_CT_HEADER + 1])
{
    memset(nonce, 0, KEYS_NONCE_BYTES);
    nonce[KEYS_NONCE_BYTES - 1] = (uint8_t)kind;
    memcpy(aad, hdr, hdr_len);
    aad[hdr_len] = (uint8_t)kind;
    return hdr_len + 1;
}

/* Seal n bytes in place: buf holds n bytes of plaintext and has room for the 16-byte tag. */
static int seal(const struct keys_key *fk, const uint8_t *hdr, size_t hdr_len,
                enum codec_ct_section kind, uint8_t *buf, size_t n)
{
    uint8_t nonce[KEYS_NONCE_BYTES], aad[CODEC_CT_HEADER + 1];
    size_t aad_len = section_params(hdr, hdr_len, kind, nonce, aad);
    return keys_gcm_seal(fk, nonce, aad, aad_len, buf, n, buf, buf + n);
}

/* Open a sealed section of sealed_len (>= 17) bytes into a new buffer of sealed_len - 16. */
static int open_section(const struct keys_key *fk, const struct codec_ct_view *v,
                        enum codec_ct_section kind, const uint8_t *in, size_t sealed_len,
                        uint8_t **out)
{
    uint8_t nonce[KEYS_NONCE_BYTES], aad[CODEC_CT_HEADER + 1];
    size_t n = sealed_len - KEYS_TAG_BYTES;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return -ENOMEM;
    size_t aad_len = section_params(v->hdr, v->hdr_len, kind, nonce, aad);
    int rc = keys_gcm_open(fk, nonce, aad, aad_len, in, n, p, in + n);
    if (rc != 0) {
        free(p); /* keys_gcm_open wiped it */
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- Parsing -------------------------------------------------------------------------------- */

uint64_t codec_ct_bucket(uint64_t n, uint64_t limit)
{
    if (n >= limit) /* also bounds the loop below for any n a header may hold */
        return limit;
    uint64_t pow = 1;
    while (pow < n)
        pow <<= 1;
    uint64_t step = pow / 16 > CODEC_CT_PAD_MIN ? pow / 16 : CODEC_CT_PAD_MIN;
    uint64_t b = (n + step - 1) / step * step; /* n < limit <= 2^33: no overflow */
    return b > limit ? limit : b;
}

int codec_ct_sniff(const uint8_t *buf, size_t len)
{
    return buf && len >= 8 + 25 + 8 && memcmp(buf, png_sig, 8) == 0 &&
           codec_get_be32(buf + 8) == 13 && memcmp(buf + 12, "IHDR", 4) == 0 &&
           (codec_get_be32(buf + 33) == CODEC_CT_HEADER ||
            codec_get_be32(buf + 33) == CODEC_CT_HEADER2) &&
           memcmp(buf + 37, CODEC_CT_CHUNK_HEADER, 4) == 0;
}

/* A version 2 section length: a bucket in [min, limit]. */
static int bucket_ok(uint64_t n, uint64_t min, uint64_t limit)
{
    return n >= min && n <= limit && codec_ct_bucket(n, limit) == n;
}

/* The version 2 header: only the file id and the section lengths are public. */
static int check_header2(const uint8_t *h, struct codec_ct_info *info)
{
    struct codec_ct_info i;
    memset(&i, 0, sizeof(i));
    if (!all_zero(h + 5, 3))
        return -EINVAL;
    i.version = 2;
    i.sealed = 1;
    memcpy(i.file_id, h + 8, KEYS_ID_BYTES);
    i.features_bytes = codec_get_le64(h + 24);
    i.envelope_bytes = codec_get_le64(h + 32);
    i.pixels_bytes = codec_get_le64(h + 40);
    if ((i.features_bytes != 0 &&
         !bucket_ok(i.features_bytes, CODEC_CT_MIN_SEALED + CODEC_CT_FEATURES_PREFIX,
                    CODEC_CT_MAX_CHUNK)) ||
        !bucket_ok(i.envelope_bytes, KEYS_TAG_BYTES + CODEC_CT_DIGEST + CODEC_ENV_FIXED,
                   CODEC_CT_MAX_CHUNK) ||
        !bucket_ok(i.pixels_bytes, CODEC_CT_MIN_SEALED, CODEC_CT_MAX_PIXELS))
        return -EINVAL;
    *info = i;
    return 0;
}

/* The fields version 1 keeps public and version 2 seals in its meta, and their agreement with
 * the section lengths; i holds the sealed lengths and the plaintext lengths. */
static int check_fields(const struct codec_ct_info *i)
{
    if (i->format < CODEC_FORMAT_PNM || i->format > CODEC_FORMAT_PNG ||
        i->features > CODEC_CT_FEATURES_NO_MODEL)
        return -EINVAL;
    if (i->plain_size > CODEC_MAX_FILE_BYTES || i->channels < 1 ||
        i->channels > CODEC_MAX_CHANNELS || i->frames < 1 || i->frames > CODEC_MAX_FRAMES ||
        i->height < 1 || i->height > CODEC_MAX_DIM || i->width < 1 || i->width > CODEC_MAX_DIM ||
        (i->bits != 8 && i->bits != 16))
        return -EINVAL;
    int present = i->features == CODEC_CT_FEATURES_PRESENT;
    if (present != (i->features_bytes != 0) || present != !all_zero(i->ae_id, KEYS_ID_BYTES))
        return -EINVAL;
    return 0;
}

static int check_header(const uint8_t *h, size_t h_len, struct codec_ct_info *info)
{
    struct codec_ct_info i;
    memset(&i, 0, sizeof(i));
    if (memcmp(h, CODEC_CT_MAGIC, 4) != 0)
        return -EINVAL;
    if (h_len == CODEC_CT_HEADER2 && h[4] == CODEC_CT_VERSION)
        return check_header2(h, info);
    if (h_len != CODEC_CT_HEADER || h[4] != CODEC_CT_VERSION_V1 || h[7] != 0 ||
        !all_zero(h + 81, 7) || !all_zero(h + 112, 16))
        return -EINVAL;
    i.version = 1;
    i.format = (enum codec_format)h[5];
    i.features = (enum codec_ct_features)h[6];
    memcpy(i.file_id, h + 8, KEYS_ID_BYTES);
    i.plain_size = codec_get_le64(h + 24);
    memcpy(i.ae_id, h + 32, KEYS_ID_BYTES);
    memcpy(i.coder_id, h + 48, KEYS_ID_BYTES);
    i.channels = codec_get_le32(h + 64);
    i.frames = codec_get_le32(h + 68);
    i.height = codec_get_le32(h + 72);
    i.width = codec_get_le32(h + 76);
    i.bits = h[80];
    i.features_bytes = codec_get_le64(h + 88);
    i.envelope_bytes = codec_get_le64(h + 96);
    i.pixels_bytes = codec_get_le64(h + 104);
    if (check_fields(&i) != 0)
        return -EINVAL;
    if ((i.features_bytes != 0 &&
         (i.features_bytes < CODEC_CT_MIN_SEALED + CODEC_CT_FEATURES_PREFIX ||
          i.features_bytes > CODEC_CT_MAX_CHUNK)) ||
        i.envelope_bytes < KEYS_TAG_BYTES + CODEC_CT_DIGEST + CODEC_ENV_FIXED ||
        i.envelope_bytes > CODEC_CT_MAX_CHUNK || i.pixels_bytes < CODEC_CT_MIN_SEALED ||
        i.pixels_bytes > CODEC_CT_MAX_PIXELS)
        return -EINVAL;
    /* no padding in version 1 */
    i.features_plain = i.features_bytes ? i.features_bytes - KEYS_TAG_BYTES : 0;
    i.envelope_plain = i.envelope_bytes - KEYS_TAG_BYTES;
    i.pixels_plain = i.pixels_bytes - KEYS_TAG_BYTES;
    *info = i;
    return 0;
}

/*
 * Walk the PNG: signature, chunks in the one order allowed, every CRC (IDAT's only with
 * check_idat: a preview does not read the pixel stream), the header, and the section lengths.
 */
int codec_ct_parse(const uint8_t *buf, size_t len, int check_idat, struct codec_ct_view *p)
{
    enum { S_IHDR, S_HEAD, S_META, S_FT, S_EV, S_IDAT, S_MORE_IDAT, S_END } st = S_IHDR;
    size_t pos = 8;
    if (!p)
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    if (!buf || len < 8 || memcmp(buf, png_sig, 8) != 0)
        return -EINVAL;
    while (st != S_END) {
        if (len - pos < 12)
            return -EINVAL;
        uint32_t n = codec_get_be32(buf + pos);
        const uint8_t *type = buf + pos + 4, *data = buf + pos + 8;
        if (n > CODEC_CT_MAX_CHUNK || len - pos - 12 < n)
            return -EINVAL;
        int is_idat = memcmp(type, "IDAT", 4) == 0;
        if (is_idat)
            p->idat_bytes += n;
        if (!is_idat || check_idat) {
            if (codec_crc32(codec_crc32(0, type, 4), data, n) != codec_get_be32(data + n))
                return -EBADMSG;
        }
        switch (st) {
        case S_IHDR:
            if (memcmp(type, "IHDR", 4) != 0 || n != 13 || data[8] != 8 || data[9] != 0 ||
                data[10] != 0 || data[11] != 0 || data[12] != 0)
                return -EINVAL;
            p->png_w = codec_get_be32(data);
            p->png_h = codec_get_be32(data + 4);
            st = S_HEAD;
            break;
        case S_HEAD:
            if (memcmp(type, CODEC_CT_CHUNK_HEADER, 4) != 0 ||
                (n != CODEC_CT_HEADER && n != CODEC_CT_HEADER2))
                return -EINVAL;
            p->hdr = data;
            p->hdr_len = n;
            st = n == CODEC_CT_HEADER2 ? S_META : S_FT; /* the version is checked below */
            break;
        case S_META:
            if (memcmp(type, CODEC_CT_CHUNK_META, 4) != 0 || n != CODEC_CT_META + KEYS_TAG_BYTES)
                return -EINVAL;
            p->mt = data;
            st = S_FT;
            break;
        case S_FT:
            if (memcmp(type, CODEC_CT_CHUNK_FEATURES, 4) == 0) {
                p->ft = data;
                p->ft_len = n;
                st = S_EV;
                break;
            }
            st = S_EV; /* no features: this chunk must be the envelope */
            continue;
        case S_EV:
            if (memcmp(type, CODEC_CT_CHUNK_ENVELOPE, 4) != 0)
                return -EINVAL;
            p->ev = data;
            p->ev_len = n;
            st = S_IDAT;
            break;
        case S_IDAT:
            if (!is_idat)
                return -EINVAL;
            p->idat_start = pos;
            st = S_MORE_IDAT;
            break;
        case S_MORE_IDAT:
            if (is_idat)
                break;
            if (memcmp(type, "IEND", 4) != 0 || n != 0)
                return -EINVAL;
            p->idat_end = pos;
            st = S_END;
            break;
        case S_END:
            break;
        }
        pos += 12 + (size_t)n;
    }
    if (pos != len)
        return -EINVAL;
    int rc = check_header(p->hdr, p->hdr_len, &p->info);
    if (rc != 0)
        return rc;
    uint32_t w, h;
    geometry(p->info.pixels_bytes, &w, &h);
    /* the pixels are ciphertext, which no deflater shortens: this bounds what read_pixels
     * allocates by the input's size */
    if (p->info.features_bytes != p->ft_len || p->info.envelope_bytes != p->ev_len ||
        p->png_w != w || p->png_h != h || p->idat_bytes < p->info.pixels_bytes)
        return -EINVAL;
    p->info.png_width = w;
    p->info.png_height = h;
    return 0;
}

int codec_ct_info(const uint8_t *buf, size_t len, struct codec_ct_info *info)
{
    struct codec_ct_view p;
    if (!info)
        return -EINVAL;
    int rc = codec_ct_parse(buf, len, 1, &p);
    if (rc == 0)
        *info = p.info;
    return rc;
}

/* A sealed length and the plaintext length the meta gives for it: the plaintext fits, and the
 * sealed length is the bucket the writer makes of it (no other padding is accepted). */
static int padded_ok(uint64_t sealed, uint64_t plain, uint64_t limit)
{
    return plain <= limit - KEYS_TAG_BYTES &&
           codec_ct_bucket(plain + KEYS_TAG_BYTES, limit) == sealed;
}

int codec_ct_open_meta(const struct keys_key *file_key, struct codec_ct_view *v)
{
    uint8_t *m = NULL;
    int rc;
    if (!file_key || !v)
        return -EINVAL;
    if (!v->info.sealed)
        return 0; /* version 1, or opened already */
    if (!v->mt)
        return -EINVAL;
    rc =
        open_section(file_key, v, CODEC_CT_SECTION_META, v->mt, CODEC_CT_META + KEYS_TAG_BYTES, &m);
    if (rc != 0)
        return rc;
    struct codec_ct_info i = v->info;
    i.format = (enum codec_format)m[0];
    i.features = (enum codec_ct_features)m[1];
    i.bits = m[2];
    i.channels = codec_get_le32(m + 4);
    i.frames = codec_get_le32(m + 8);
    i.height = codec_get_le32(m + 12);
    i.width = codec_get_le32(m + 16);
    i.plain_size = codec_get_le64(m + 24);
    memcpy(i.ae_id, m + 32, KEYS_ID_BYTES);
    memcpy(i.coder_id, m + 48, KEYS_ID_BYTES);
    i.features_plain = codec_get_le64(m + 64);
    i.envelope_plain = codec_get_le64(m + 72);
    i.pixels_plain = codec_get_le64(m + 80);
    rc = -EINVAL; /* authenticated: only an encoder bug gets here, still refused */
    if (m[3] != 0 || !all_zero(m + 20, 4) || !all_zero(m + 88, 8) || check_fields(&i) != 0)
        goto out;
    if ((i.features_bytes != 0 &&
         (i.features_plain < CODEC_CT_FEATURES_PREFIX + 1 ||
          !padded_ok(i.features_bytes, i.features_plain, CODEC_CT_MAX_CHUNK))) ||
        (i.features_bytes == 0 && i.features_plain != 0) ||
        i.envelope_plain < CODEC_CT_DIGEST + CODEC_ENV_FIXED ||
        !padded_ok(i.envelope_bytes, i.envelope_plain, CODEC_CT_MAX_CHUNK) || i.pixels_plain < 1 ||
        !padded_ok(i.pixels_bytes, i.pixels_plain, CODEC_CT_MAX_PIXELS))
        goto out;
    i.sealed = 0;
    v->info = i;
    rc = 0;
out:
    OPENSSL_cleanse(m, CODEC_CT_META);
    free(m);
    return rc;
}

int codec_ct_open_info(const struct keys_key *container_key, const uint8_t *buf, size_t len,
                       struct codec_ct_info *info)
{
    struct codec_ct_view v;
    struct keys_key *fk = NULL;
    if (!container_key || !info)
        return -EINVAL;
    int rc = codec_ct_parse(buf, len, 0, &v);
    if (rc == 0 && v.info.sealed && (rc = codec_ct_file_key(container_key, &v, &fk)) == 0)
        rc = codec_ct_open_meta(fk, &v);
    keys_key_free(fk);
    if (rc == 0)
        *info = v.info;
    return rc;
}

/* One chunk of the head at *pos: its type, length n and CRC checked; the data's offset. */
static int head_chunk(const uint8_t *buf, size_t len, size_t *pos, const char *type, uint32_t *n)
{
    if (len < *pos || len - *pos < 12)
        return -EINVAL;
    uint32_t cl = codec_get_be32(buf + *pos);
    if (cl > CODEC_CT_MAX_CHUNK || len - *pos - 12 < cl || memcmp(buf + *pos + 4, type, 4) != 0)
        return -EINVAL;
    const uint8_t *t = buf + *pos + 4, *data = buf + *pos + 8;
    if (codec_crc32(codec_crc32(0, t, 4), data, cl) != codec_get_be32(data + cl))
        return -EBADMSG;
    *n = cl;
    *pos += 8;
    return 0;
}

int codec_ct_open_head(const struct keys_key *container_key, const uint8_t *buf, size_t len,
                       struct codec_ct_info *info)
{
    struct codec_ct_view v;
    struct keys_key *fk = NULL;
    size_t pos = 8;
    uint32_t n;
    int rc;
    if (!container_key || !info || !buf || len < 8 || memcmp(buf, png_sig, 8) != 0)
        return -EINVAL;
    memset(&v, 0, sizeof(v));
    if ((rc = head_chunk(buf, len, &pos, "IHDR", &n)) != 0)
        return rc;
    if (n != 13)
        return -EINVAL;
    pos += n + 4;
    if ((rc = head_chunk(buf, len, &pos, CODEC_CT_CHUNK_HEADER, &n)) != 0)
        return rc;
    if (n != CODEC_CT_HEADER && n != CODEC_CT_HEADER2)
        return -EINVAL;
    v.hdr = buf + pos;
    v.hdr_len = n;
    pos += n + 4;
    if ((rc = check_header(v.hdr, v.hdr_len, &v.info)) != 0)
        return rc;
    if (v.info.sealed) {
        if ((rc = head_chunk(buf, len, &pos, CODEC_CT_CHUNK_META, &n)) != 0)
            return rc;
        if (n != CODEC_CT_META + KEYS_TAG_BYTES)
            return -EINVAL;
        v.mt = buf + pos;
        if ((rc = codec_ct_file_key(container_key, &v, &fk)) == 0)
            rc = codec_ct_open_meta(fk, &v);
        keys_key_free(fk);
    }
    if (rc == 0)
        *info = v.info;
    return rc;
}

/* Inflate the IDAT chunks into the sealed pixel stream (*out, pixels_bytes), checking the
 * filter bytes and the padding. */
static int read_pixels(const uint8_t *buf, const struct codec_ct_view *p, uint8_t **out)
{
    uint64_t row = (uint64_t)p->png_w + 1, total = row * p->png_h;
    uint64_t need = p->info.pixels_bytes;
    uint8_t *rows = NULL, *px = NULL;
    z_stream zs;
    int rc = 0, zrc = Z_OK;
    if (total > SIZE_MAX)
        return -EFBIG;
    rows = malloc((size_t)total);
    if (!rows)
        return -ENOMEM;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) {
        free(rows);
        return -ENOMEM;
    }
    uint64_t produced = 0;
    for (size_t pos = p->idat_start; pos < p->idat_end;
         pos += 12 + (size_t)codec_get_be32(buf + pos)) {
        if (zrc == Z_STREAM_END) {
            rc = -EINVAL; /* IDAT data after the end of the stream */
            goto out;
        }
        zs.next_in = (Bytef *)(uintptr_t)(buf + pos + 8);
        zs.avail_in = codec_get_be32(buf + pos); /* <= 2^31 - 1: fits a uInt */
        while (zs.avail_in > 0) {
            uint64_t room = total - produced;
            zs.next_out = rows + produced;
            zs.avail_out = (uInt)(room > (1u << 30) ? (1u << 30) : room);
            uInt before = zs.avail_out;
            zrc = inflate(&zs, Z_NO_FLUSH);
            produced += before - zs.avail_out;
            if (zrc == Z_STREAM_END) {
                if (zs.avail_in != 0)
                    rc = -EINVAL;
                break;
            }
            /* no progress with room left means input ran out; without room, too many rows */
            if ((zrc != Z_OK && zrc != Z_BUF_ERROR) || (zrc == Z_BUF_ERROR && room == 0))
                rc = -EINVAL;
            if (rc != 0)
                goto out;
        }
        if (rc != 0)
            goto out;
    }
    if (zrc != Z_STREAM_END || produced != total) {
        rc = -EINVAL;
        goto out;
    }
    px = malloc((size_t)need);
    if (!px) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t got = 0;
    for (uint32_t y = 0; y < p->png_h; y++) {
        const uint8_t *r = rows + y * row;
        uint64_t take = need - got < p->png_w ? need - got : p->png_w;
        if (r[0] != 0 || !all_zero(r + 1 + take, (size_t)(p->png_w - take))) {
            rc = -EINVAL;
            goto out;
        }
        memcpy(px + got, r + 1, (size_t)take);
        got += take;
    }
    *out = px;
    px = NULL;
out:
    inflateEnd(&zs);
    free(px);
    free(rows);
    return rc;
}

/* ---- Writing -----------------------------------------------------------------------------------
 */

/* The zlib stream of rows (stored blocks) for the sealed pixels: *out, *out_len. */
static int make_zlib(const uint8_t *sealed, uint64_t plen, uint32_t w, uint32_t h, uint8_t **out,
                     size_t *out_len)
{
    uint64_t row = (uint64_t)w + 1, total = row * h;
    uint64_t blocks = (total + CT_STORED_MAX - 1) / CT_STORED_MAX;
    uint64_t zlen = 2 + total + 5 * blocks + 4;
    if (zlen > SIZE_MAX)
        return -EFBIG;
    uint8_t *rows = calloc(1, (size_t)total), *z = malloc((size_t)zlen);
    if (!rows || !z) {
        free(rows);
        free(z);
        return -ENOMEM;
    }
    uint64_t got = 0;
    for (uint32_t y = 0; y < h; y++) {
        uint64_t take = plen - got < w ? plen - got : w;
        memcpy(rows + y * row + 1, sealed + got, (size_t)take);
        got += take;
    }
    size_t at = 0;
    z[at++] = 0x78; /* deflate, 32 KiB window */
    z[at++] = 0x01; /* no dictionary, fastest; (0x78 << 8 | 0x01) % 31 == 0 */
    for (uint64_t off = 0; off < total; off += CT_STORED_MAX) {
        uint32_t n = (uint32_t)(total - off < CT_STORED_MAX ? total - off : CT_STORED_MAX);
        z[at++] = off + n == total ? 1 : 0; /* BFINAL, BTYPE 00 */
        z[at++] = (uint8_t)n;
        z[at++] = (uint8_t)(n >> 8);
        z[at++] = (uint8_t)~n;
        z[at++] = (uint8_t)(~n >> 8);
        memcpy(z + at, rows + off, n);
        at += n;
    }
    codec_put_be32(z + at, codec_adler32(rows, (size_t)total));
    at += 4;
    free(rows);
    *out = z;
    *out_len = at;
    return 0;
}

int codec_ct_open_section(const struct keys_key *file_key, const uint8_t *buf,
                          const struct codec_ct_view *v, enum codec_ct_section kind, uint8_t **out,
                          size_t *out_len)
{
    uint8_t *sealed = NULL, *plain = NULL;
    uint64_t n = 0, keep = 0; /* opened and plaintext lengths: the rest is padding */
    int rc;
    if (!file_key || !buf || !v || !out || !out_len || v->info.sealed)
        return -EINVAL;
    switch (kind) {
    case CODEC_CT_SECTION_FEATURES:
        if (!v->ft)
            return -ENODATA;
        rc = open_section(file_key, v, kind, v->ft, v->ft_len, &plain);
        n = v->ft_len - KEYS_TAG_BYTES;
        keep = v->info.features_plain;
        break;
    case CODEC_CT_SECTION_ENVELOPE:
        rc = open_section(file_key, v, kind, v->ev, v->ev_len, &plain);
        n = v->ev_len - KEYS_TAG_BYTES;
        keep = v->info.envelope_plain;
        break;
    case CODEC_CT_SECTION_PIXELS:
        if ((rc = read_pixels(buf, v, &sealed)) != 0)
            return rc;
        rc = open_section(file_key, v, kind, sealed, (size_t)v->info.pixels_bytes, &plain);
        free(sealed); /* ciphertext */
        n = v->info.pixels_bytes - KEYS_TAG_BYTES;
        keep = v->info.pixels_plain;
        break;
    default:
        return -EINVAL;
    }
    if (rc != 0)
        return rc;
    if (keep > n || !all_zero(plain + keep, (size_t)(n - keep))) {
        OPENSSL_cleanse(plain, (size_t)n);
        free(plain);
        return -EINVAL; /* authenticated: an encoder bug */
    }
    *out = plain;
    *out_len = (size_t)keep;
    return 0;
}

/* A section's plaintext copied into a new buffer of its bucket (sealed length, *sealed_len),
 * zero-padded: the buffer is sealed in place. */
static int padded(const uint8_t *in, size_t n, uint64_t limit, uint8_t **out, uint64_t *sealed_len)
{
    if ((uint64_t)n > limit - KEYS_TAG_BYTES)
        return -EFBIG;
    uint64_t b = codec_ct_bucket((uint64_t)n + KEYS_TAG_BYTES, limit);
    if (b > SIZE_MAX)
        return -EFBIG;
    uint8_t *p = calloc(1, (size_t)b);
    if (!p)
        return -ENOMEM;
    if (n)
        memcpy(p, in, n);
    *out = p;
    *sealed_len = b;
    return 0;
}

int codec_ct_write(const struct keys_key *container_key, const struct codec_ct_plain *in,
                   uint8_t **out, size_t *out_len)
{
    const struct codec_ct_info *f;
    struct keys_key *fk = NULL;
    uint8_t *png = NULL, *z = NULL, *ft = NULL, *ev = NULL, *px = NULL;
    uint64_t fs = 0, es = 0, ps = 0;
    size_t z_len = 0;
    uint8_t hdr[CODEC_CT_HEADER2], meta[CODEC_CT_META + KEYS_TAG_BYTES];
    int rc;
    if (!container_key || !in || !out || !out_len || (!in->features && in->features_len) ||
        !in->envelope || !in->pixels)
        return -EINVAL;
    f = &in->info;
    memset(meta, 0, sizeof(meta));
    if ((in->features &&
         (rc = padded(in->features, in->features_len, CODEC_CT_MAX_CHUNK, &ft, &fs)) != 0) ||
        (rc = padded(in->envelope, in->envelope_len, CODEC_CT_MAX_CHUNK, &ev, &es)) != 0 ||
        (rc = padded(in->pixels, in->pixels_len, CODEC_CT_MAX_PIXELS, &px, &ps)) != 0)
        goto out;

    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, CODEC_CT_MAGIC, 4);
    hdr[4] = CODEC_CT_VERSION;
    /* A fresh id, hence a fresh per-file key, for every container written: what makes the
     * fixed per-section nonces (meta included) unique (container.h). Never taken from the
     * caller. */
    if ((rc = keys_random(hdr + 8, KEYS_ID_BYTES)) != 0)
        goto out;
    codec_put_le64(hdr + 24, fs);
    codec_put_le64(hdr + 32, es);
    codec_put_le64(hdr + 40, ps);

    meta[0] = (uint8_t)f->format;
    meta[1] = (uint8_t)f->features;
    meta[2] = (uint8_t)f->bits;
    codec_put_le32(meta + 4, f->channels);
    codec_put_le32(meta + 8, f->frames);
    codec_put_le32(meta + 12, f->height);
    codec_put_le32(meta + 16, f->width);
    codec_put_le64(meta + 24, f->plain_size);
    memcpy(meta + 32, f->ae_id, KEYS_ID_BYTES);
    memcpy(meta + 48, f->coder_id, KEYS_ID_BYTES); /* zero: the built-in fixed predictor */
    codec_put_le64(meta + 64, in->features ? in->features_len : 0);
    codec_put_le64(meta + 72, in->envelope_len);
    codec_put_le64(meta + 80, in->pixels_len);
    if ((rc = keys_key_derive(container_key, CODEC_CT_FILE_LABEL, hdr + 8, KEYS_ID_BYTES,
                              KEYS_KEY_GCM, &fk)) != 0)
        goto out;
    /* each kind sealed once under this file's key: the nonce rule of section_params */
    if ((rc = seal(fk, hdr, sizeof(hdr), CODEC_CT_SECTION_META, meta, CODEC_CT_META)) != 0 ||
        (ft && (rc = seal(fk, hdr, sizeof(hdr), CODEC_CT_SECTION_FEATURES, ft,
                          (size_t)fs - KEYS_TAG_BYTES)) != 0) ||
        (rc = seal(fk, hdr, sizeof(hdr), CODEC_CT_SECTION_ENVELOPE, ev,
                   (size_t)es - KEYS_TAG_BYTES)) != 0 ||
        (rc = seal(fk, hdr, sizeof(hdr), CODEC_CT_SECTION_PIXELS, px,
                   (size_t)ps - KEYS_TAG_BYTES)) != 0)
        goto out;

    uint32_t w, h;
    geometry(ps, &w, &h);
    if ((rc = make_zlib(px, ps, w, h, &z, &z_len)) != 0)
        goto out;

    size_t nidat = z_len / CODEC_CT_IDAT_CHUNK + (z_len % CODEC_CT_IDAT_CHUNK != 0);
    size_t total = 8 + 25 + 12 + sizeof(hdr) + 12 + sizeof(meta) + (fs ? 12 + (size_t)fs : 0) + 12 +
                   (size_t)es + 12 * nidat + z_len + 12;
    if (!(png = malloc(total))) {
        rc = -ENOMEM;
        goto out;
    }
    size_t at = 0;
    uint8_t ihdr[13] = {0};
    memcpy(png, png_sig, 8);
    at = 8;
    codec_put_be32(ihdr, w);
    codec_put_be32(ihdr + 4, h);
    ihdr[8] = 8;
    at += codec_put_chunk(png + at, "IHDR", ihdr, sizeof(ihdr));
    at += codec_put_chunk(png + at, CODEC_CT_CHUNK_HEADER, hdr, sizeof(hdr));
    at += codec_put_chunk(png + at, CODEC_CT_CHUNK_META, meta, sizeof(meta));
    if (ft)
        at += codec_put_chunk(png + at, CODEC_CT_CHUNK_FEATURES, ft, (size_t)fs);
    at += codec_put_chunk(png + at, CODEC_CT_CHUNK_ENVELOPE, ev, (size_t)es);
    for (size_t off = 0; off < z_len; off += CODEC_CT_IDAT_CHUNK) {
        size_t n = z_len - off < CODEC_CT_IDAT_CHUNK ? z_len - off : CODEC_CT_IDAT_CHUNK;
        at += codec_put_chunk(png + at, "IDAT", z + off, n);
    }
    at += codec_put_chunk(png + at, "IEND", NULL, 0);
    *out = png;
    *out_len = at;
    png = NULL;
out:
    /* each buffer holds plaintext until its seal succeeded: wiped either way */
    if (ft)
        OPENSSL_cleanse(ft, (size_t)fs);
    if (ev)
        OPENSSL_cleanse(ev, (size_t)es);
    if (px)
        OPENSSL_cleanse(px, (size_t)ps);
    OPENSSL_cleanse(meta, sizeof(meta));
    free(png);
    free(z);
    free(ft);
    free(ev);
    free(px);
    keys_key_free(fk);
    return rc;
}
