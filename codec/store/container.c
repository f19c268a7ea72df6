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

/* nonce and AAD of a section (container.h says why the nonce never repeats under a key) */
static void section_params(const uint8_t *hdr, enum codec_ct_section kind,
                           uint8_t nonce[KEYS_NONCE_BYTES], uint8_t aad[CODEC_CT_HEADER + 1])
{
    memset(nonce, 0, KEYS_NONCE_BYTES);
    nonce[KEYS_NONCE_BYTES - 1] = (uint8_t)kind;
    memcpy(aad, hdr, CODEC_CT_HEADER);
    aad[CODEC_CT_HEADER] = (uint8_t)kind;
}

/* Seal n bytes into out (n + 16 bytes). */
static int seal(const struct keys_key *fk, const uint8_t *hdr, enum codec_ct_section kind,
                const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t nonce[KEYS_NONCE_BYTES], aad[CODEC_CT_HEADER + 1];
    section_params(hdr, kind, nonce, aad);
    return keys_gcm_seal(fk, nonce, aad, sizeof(aad), in, n, out, out + n);
}

/* Open a sealed section of sealed_len (>= 17) bytes into a new buffer of sealed_len - 16. */
static int open_section(const struct keys_key *fk, const uint8_t *hdr, enum codec_ct_section kind,
                        const uint8_t *in, size_t sealed_len, uint8_t **out)
{
    uint8_t nonce[KEYS_NONCE_BYTES], aad[CODEC_CT_HEADER + 1];
    size_t n = sealed_len - KEYS_TAG_BYTES;
    uint8_t *p = malloc(n);
    if (!p)
        return -ENOMEM;
    section_params(hdr, kind, nonce, aad);
    int rc = keys_gcm_open(fk, nonce, aad, sizeof(aad), in, n, p, in + n);
    if (rc != 0) {
        free(p); /* keys_gcm_open wiped it */
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- Parsing -------------------------------------------------------------------------------- */

int codec_ct_sniff(const uint8_t *buf, size_t len)
{
    return buf && len >= 8 + 25 + 8 && memcmp(buf, png_sig, 8) == 0 &&
           codec_get_be32(buf + 8) == 13 && memcmp(buf + 12, "IHDR", 4) == 0 &&
           codec_get_be32(buf + 33) == CODEC_CT_HEADER &&
           memcmp(buf + 37, CODEC_CT_CHUNK_HEADER, 4) == 0;
}

static int check_header(const uint8_t *h, struct codec_ct_info *info)
{
    struct codec_ct_info i;
    memset(&i, 0, sizeof(i));
    if (memcmp(h, CODEC_CT_MAGIC, 4) != 0 || h[4] != CODEC_CT_VERSION || h[7] != 0 ||
        !all_zero(h + 81, 7) || !all_zero(h + 112, 16))
        return -EINVAL;
    if (h[5] < CODEC_FORMAT_PNM || h[5] > CODEC_FORMAT_PNG || h[6] > CODEC_CT_FEATURES_NO_MODEL)
        return -EINVAL;
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
    if (i.plain_size > CODEC_MAX_FILE_BYTES || i.channels < 1 || i.channels > CODEC_MAX_CHANNELS ||
        i.frames < 1 || i.frames > CODEC_MAX_FRAMES || i.height < 1 || i.height > CODEC_MAX_DIM ||
        i.width < 1 || i.width > CODEC_MAX_DIM || (i.bits != 8 && i.bits != 16))
        return -EINVAL;
    int present = i.features == CODEC_CT_FEATURES_PRESENT;
    if (present != (i.features_bytes != 0) || present != !all_zero(i.ae_id, KEYS_ID_BYTES))
        return -EINVAL;
    if ((present && (i.features_bytes < CODEC_CT_MIN_SEALED + CODEC_CT_FEATURES_PREFIX ||
                     i.features_bytes > CODEC_CT_MAX_CHUNK)) ||
        i.envelope_bytes < KEYS_TAG_BYTES + CODEC_CT_DIGEST + CODEC_ENV_FIXED ||
        i.envelope_bytes > CODEC_CT_MAX_CHUNK || i.pixels_bytes < CODEC_CT_MIN_SEALED ||
        i.pixels_bytes > CODEC_CT_MAX_PIXELS)
        return -EINVAL;
    *info = i;
    return 0;
}

/*
 * Walk the PNG: signature, chunks in the one order allowed, every CRC (IDAT's only with
 * check_idat: a preview does not read the pixel stream), the header, and the section lengths.
 */
int codec_ct_parse(const uint8_t *buf, size_t len, int check_idat, struct codec_ct_view *p)
{
    enum { S_IHDR, S_HEAD, S_FT, S_EV, S_IDAT, S_MORE_IDAT, S_END } st = S_IHDR;
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
            if (memcmp(type, CODEC_CT_CHUNK_HEADER, 4) != 0 || n != CODEC_CT_HEADER)
                return -EINVAL;
            p->hdr = data;
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
    int rc = check_header(p->hdr, &p->info);
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
    int rc;
    if (!file_key || !buf || !v || !out || !out_len)
        return -EINVAL;
    switch (kind) {
    case CODEC_CT_SECTION_FEATURES:
        if (!v->ft)
            return -ENODATA;
        rc = open_section(file_key, v->hdr, kind, v->ft, v->ft_len, &plain);
        break;
    case CODEC_CT_SECTION_ENVELOPE:
        rc = open_section(file_key, v->hdr, kind, v->ev, v->ev_len, &plain);
        break;
    case CODEC_CT_SECTION_PIXELS:
        if ((rc = read_pixels(buf, v, &sealed)) != 0)
            return rc;
        rc = open_section(file_key, v->hdr, kind, sealed, (size_t)v->info.pixels_bytes, &plain);
        free(sealed); /* ciphertext */
        break;
    default:
        return -EINVAL;
    }
    if (rc != 0)
        return rc;
    *out = plain;
    *out_len = (kind == CODEC_CT_SECTION_FEATURES   ? v->ft_len
                : kind == CODEC_CT_SECTION_ENVELOPE ? v->ev_len
                                                    : (size_t)v->info.pixels_bytes) -
               KEYS_TAG_BYTES;
    return 0;
}

int codec_ct_write(const struct keys_key *container_key, const struct codec_ct_plain *in,
                   uint8_t **out, size_t *out_len)
{
    const struct codec_ct_info *f;
    struct keys_key *fk = NULL;
    uint8_t *png = NULL, *z = NULL, *sealed = NULL;
    size_t z_len = 0;
    uint8_t hdr[CODEC_CT_HEADER];
    int rc;
    if (!container_key || !in || !out || !out_len || (!in->features && in->features_len) ||
        !in->envelope || !in->pixels)
        return -EINVAL;
    f = &in->info;
    uint64_t fs = in->features ? in->features_len + KEYS_TAG_BYTES : 0,
             es = in->envelope_len + KEYS_TAG_BYTES, ps = (uint64_t)in->pixels_len + KEYS_TAG_BYTES;
    if (fs > CODEC_CT_MAX_CHUNK || es > CODEC_CT_MAX_CHUNK || ps > CODEC_CT_MAX_PIXELS)
        return -EFBIG;

    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, CODEC_CT_MAGIC, 4);
    hdr[4] = CODEC_CT_VERSION;
    hdr[5] = (uint8_t)f->format;
    hdr[6] = (uint8_t)f->features;
    /* A fresh id, hence a fresh per-file key, for every container written: what makes the
     * fixed per-section nonces unique (container.h). Never taken from the caller. */
    if ((rc = keys_random(hdr + 8, KEYS_ID_BYTES)) != 0)
        return rc;
    codec_put_le64(hdr + 24, f->plain_size);
    memcpy(hdr + 32, f->ae_id, KEYS_ID_BYTES);
    memcpy(hdr + 48, f->coder_id, KEYS_ID_BYTES); /* zero: the built-in fixed predictor */
    codec_put_le32(hdr + 64, f->channels);
    codec_put_le32(hdr + 68, f->frames);
    codec_put_le32(hdr + 72, f->height);
    codec_put_le32(hdr + 76, f->width);
    hdr[80] = (uint8_t)f->bits;
    codec_put_le64(hdr + 88, fs);
    codec_put_le64(hdr + 96, es);
    codec_put_le64(hdr + 104, ps);
    if ((rc = keys_key_derive(container_key, CODEC_CT_FILE_LABEL, hdr + 8, KEYS_ID_BYTES,
                              KEYS_KEY_GCM, &fk)) != 0)
        goto out;

    uint32_t w, h;
    geometry(ps, &w, &h);
    if (!(sealed = malloc((size_t)ps))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = seal(fk, hdr, CODEC_CT_SECTION_PIXELS, in->pixels, in->pixels_len, sealed)) != 0)
        goto out;
    rc = make_zlib(sealed, ps, w, h, &z, &z_len);
    free(sealed);
    sealed = NULL;
    if (rc != 0)
        goto out;

    size_t nidat = z_len / CODEC_CT_IDAT_CHUNK + (z_len % CODEC_CT_IDAT_CHUNK != 0);
    size_t total = 8 + 25 + 12 + CODEC_CT_HEADER + (fs ? 12 + (size_t)fs : 0) + 12 + (size_t)es +
                   12 * nidat + z_len + 12;
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
    if (fs) {
        rc = seal(fk, hdr, CODEC_CT_SECTION_FEATURES, in->features, in->features_len, png + at + 8);
        if (rc != 0)
            goto out;
        at += codec_put_chunk(png + at, CODEC_CT_CHUNK_FEATURES, NULL, (size_t)fs);
    }
    rc = seal(fk, hdr, CODEC_CT_SECTION_ENVELOPE, in->envelope, in->envelope_len, png + at + 8);
    if (rc != 0)
        goto out;
    at += codec_put_chunk(png + at, CODEC_CT_CHUNK_ENVELOPE, NULL, (size_t)es);
    for (size_t off = 0; off < z_len; off += CODEC_CT_IDAT_CHUNK) {
        size_t n = z_len - off < CODEC_CT_IDAT_CHUNK ? z_len - off : CODEC_CT_IDAT_CHUNK;
        at += codec_put_chunk(png + at, "IDAT", z + off, n);
    }
    at += codec_put_chunk(png + at, "IEND", NULL, 0);
    *out = png;
    *out_len = at;
    png = NULL;
out:
    free(png);
    free(z);
    free(sealed);
    keys_key_free(fk);
    return rc;
}
