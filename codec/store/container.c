// SPDX-License-Identifier: MIT
/*
 * The container (format in container.h): split an image, code its pixels, encode its features,
 * seal the three sections under a per-file key and wrap them in a noise PNG; and back.
 *
 * Everything is done on whole buffers in memory. The trade-off is peak memory (about three
 * times the pixel stream while the PNG rows are built) against code that is short enough to be
 * checked line by line: the parser walks the bytes once, with every length checked before use.
 * Decrypted sections (envelope with patient data, pixels, features) are wiped before they are
 * freed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <zlib.h>

#include "codec/store/container.h"
#include "codec/bytes.h"
#include "codec/pixel/latcode.h"
#include "codec/pixel/pixcode.h"
#include "codec/pixel/pixnet.h"
#include "nn/ae.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

#define CT_FEAT_PREFIX 8 /* coding, reserved, raw length */
#define CT_FEAT_RAW 0
#define CT_FEAT_ZLIB 1
#define CT_FEAT_LATCODE 2
#define CT_LATENT_FIELDS 8
#define CT_LATENT_HEAD (4 * CT_LATENT_FIELDS)
#define CT_SHA 32
#define CT_STORED_MAX 65535u /* bytes per deflate stored block */

/* ---- The context: container key and models -------------------------------------------------- */

/* A model the context knows: an autoencoder or a coder model (codec/pixnet.h). */
struct ct_slot {
    uint8_t id[KEYS_ID_BYTES];
    const uint8_t *bytes; /* not owned: the keyring's or the library's */
    size_t len;
    void *obj; /* loaded on first use (struct nn_ae or codec_pixnet); guarded by codec_ct.lock */
    int bad;   /* its bytes did not load: not tried again (guarded by the lock) */
};

/* The models of one kind: the built-in one first, then the keyring's in its order. */
struct ct_shelf {
    size_t n;
    size_t enc; /* the model encoding uses: the one added last; n when there is none */
    struct ct_slot s[KEYS_MAX_MODELS + 1];
};

struct codec_ct {
    const struct keys_key *key; /* the container subkey */
    struct keys_key *owned;     /* the same, when derived here */
    pthread_mutex_t lock;       /* guards the slots' obj and bad (the only mutable state) */
    struct ct_shelf aes, coders;
};

/* Add a model (id: the first bytes of its SHA-256, computed when NULL); the one added last
 * encodes, also when it is one known already (the built-in model, held by the keyring too). */
static int shelf_add(struct ct_shelf *sh, const uint8_t *bytes, size_t len, const uint8_t *id)
{
    uint8_t digest[32];
    if (!id) {
        int rc = keys_sha256(bytes, len, digest);
        if (rc != 0)
            return rc;
        id = digest;
    }
    for (size_t i = 0; i < sh->n; i++)
        if (memcmp(sh->s[i].id, id, KEYS_ID_BYTES) == 0) {
            sh->enc = i;
            return 0;
        }
    struct ct_slot *m = &sh->s[sh->n];
    memcpy(m->id, id, KEYS_ID_BYTES);
    m->bytes = bytes;
    m->len = len;
    sh->enc = sh->n++;
    return 0;
}

static int ct_alloc(struct codec_ct **out)
{
    struct codec_ct *ct = calloc(1, sizeof(*ct));
    if (!ct)
        return -ENOMEM;
    if (pthread_mutex_init(&ct->lock, NULL) != 0) {
        free(ct);
        return -ENOMEM;
    }
    size_t len = 0;
    const uint8_t *b = nn_ae_default_bytes(&len);
    int rc = b && len ? shelf_add(&ct->aes, b, len, NULL) : 0;
    /* an empty built-in coder file means none: predictor 0 encodes */
    b = codec_pixnet_default_bytes(&len);
    if (rc == 0 && b && len)
        rc = shelf_add(&ct->coders, b, len, NULL);
    if (rc != 0) {
        codec_ct_free(ct);
        return rc;
    }
    *out = ct;
    return 0;
}

int codec_ct_new_key(const struct keys_key *container_key, struct codec_ct **out)
{
    struct codec_ct *ct = NULL;
    if (!container_key || !out)
        return -EINVAL;
    int rc = ct_alloc(&ct);
    if (rc != 0)
        return rc;
    ct->key = container_key;
    *out = ct;
    return 0;
}

int codec_ct_new(const struct keys_ring *ring, struct codec_ct **out)
{
    struct codec_ct *ct = NULL;
    if (!ring || !out)
        return -EINVAL;
    int rc = ct_alloc(&ct);
    if (rc == 0)
        rc = keys_ring_subkey(ring, CODEC_CT_SUBKEY_LABEL, KEYS_KEY_GCM, &ct->owned);
    for (uint32_t i = 0; rc == 0 && i < keys_ring_model_count(ring); i++) {
        struct keys_model_info info;
        const uint8_t *w = NULL;
        if (keys_ring_model(ring, i, &info, &w) != 0)
            continue;
        /* the keyring's models come after the built-in one: the last added encodes */
        if (info.kind == KEYS_MODEL_AUTOENCODER)
            rc = shelf_add(&ct->aes, w, (size_t)info.bytes, info.id);
        else if (info.kind == KEYS_MODEL_CODER)
            rc = shelf_add(&ct->coders, w, (size_t)info.bytes, info.id);
    }
    if (rc != 0) {
        codec_ct_free(ct);
        return rc;
    }
    ct->key = ct->owned;
    *out = ct;
    return 0;
}

void codec_ct_free(struct codec_ct *ct)
{
    if (!ct)
        return;
    for (size_t i = 0; i < ct->aes.n; i++)
        nn_ae_free(ct->aes.s[i].obj);
    for (size_t i = 0; i < ct->coders.n; i++)
        codec_pixnet_free(ct->coders.s[i].obj);
    keys_key_free(ct->owned);
    pthread_mutex_destroy(&ct->lock);
    free(ct);
}

static int load_ae(const uint8_t *b, size_t n, void **obj)
{
    struct nn_ae *ae = NULL;
    int rc = nn_ae_load(b, n, &ae);
    *obj = ae;
    return rc;
}

static int load_coder(const uint8_t *b, size_t n, void **obj)
{
    struct codec_pixnet *pn = NULL;
    int rc = codec_pixnet_load(b, n, &pn);
    *obj = pn;
    return rc;
}

/* The model of this id on the shelf, loaded once. -ENOENT when none has it, or when its bytes
 * are not a model this build loads (remembered: a keyring entry written by a later release is
 * not parsed again on every file). */
static int shelf_get(const struct codec_ct *cct, const struct ct_shelf *csh, const uint8_t *id,
                     int (*load)(const uint8_t *, size_t, void **), void **obj)
{
    struct codec_ct *ct = (struct codec_ct *)cct; /* only the lazily loaded models change */
    struct ct_shelf *sh = (struct ct_shelf *)csh;
    int rc = -ENOENT;
    if (pthread_mutex_lock(&ct->lock) != 0)
        return -EIO;
    for (size_t i = 0; i < sh->n; i++) {
        struct ct_slot *m = &sh->s[i];
        if (memcmp(m->id, id, KEYS_ID_BYTES) != 0 || m->bad)
            continue;
        rc = m->obj ? 0 : load(m->bytes, m->len, &m->obj);
        if (rc != 0 && rc != -ENOMEM) {
            m->bad = 1;
            rc = -ENOENT;
        }
        if (rc == 0)
            *obj = m->obj;
        break;
    }
    pthread_mutex_unlock(&ct->lock);
    return rc;
}

static int get_model(const struct codec_ct *ct, const uint8_t *id, const struct nn_ae **ae)
{
    void *obj = NULL;
    int rc = shelf_get(ct, &ct->aes, id, load_ae, &obj);
    if (rc == 0)
        *ae = obj;
    return rc;
}

static int get_coder(const struct codec_ct *ct, const uint8_t *id,
                     const struct codec_pix_predictor **pred)
{
    void *obj = NULL;
    int rc = shelf_get(ct, &ct->coders, id, load_coder, &obj);
    if (rc == 0)
        *pred = codec_pixnet_predictor(obj);
    return rc;
}

/* ---- Bytes ---------------------------------------------------------------------------------- */

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)codec_get_le32(p) | (uint64_t)codec_get_le32(p + 4) << 32;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static void wipe_free(void *p, size_t n)
{
    if (p) {
        OPENSSL_cleanse(p, n);
        free(p);
    }
}

/* PNG chunk writer: data may already sit at out + 8 (then pass data == NULL). */
static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, size_t n)
{
    put_be32(out, (uint32_t)n);
    memcpy(out + 4, type, 4);
    if (data && n)
        memcpy(out + 8, data, n);
    uLong crc = crc32(0L, out + 4, 4);
    /* zlib's crc32 takes a uInt length: feed large data in pieces */
    for (size_t done = 0; done < n;) {
        size_t step = n - done > (1u << 30) ? (1u << 30) : n - done;
        crc = crc32(crc, out + 8 + done, (uInt)step);
        done += step;
    }
    put_be32(out + 8 + n, (uint32_t)crc);
    return 12 + n;
}

static uLong crc_of(const uint8_t *p, size_t n, uLong crc)
{
    for (size_t done = 0; done < n;) {
        size_t step = n - done > (1u << 30) ? (1u << 30) : n - done;
        crc = crc32(crc, p + done, (uInt)step);
        done += step;
    }
    return crc;
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

static int file_key(const struct codec_ct *ct, const uint8_t *file_id, struct keys_key **out)
{
    return keys_key_derive(ct->key, CODEC_CT_FILE_LABEL, file_id, KEYS_ID_BYTES, KEYS_KEY_GCM, out);
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

struct parsed {
    const uint8_t *hdr; /* 128 bytes */
    const uint8_t *ft, *ev;
    size_t ft_len, ev_len;
    size_t idat_start, idat_end; /* the IDAT chunks, whole, within buf */
    uint64_t idat_bytes;         /* their data together */
    uint32_t png_w, png_h;
    struct codec_ct_info info;
};

int codec_ct_sniff(const uint8_t *buf, size_t len)
{
    return buf && len >= 8 + 25 + 8 && memcmp(buf, png_sig, 8) == 0 && get_be32(buf + 8) == 13 &&
           memcmp(buf + 12, "IHDR", 4) == 0 && get_be32(buf + 33) == CODEC_CT_HEADER &&
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
    i.plain_size = get_le64(h + 24);
    memcpy(i.ae_id, h + 32, KEYS_ID_BYTES);
    memcpy(i.coder_id, h + 48, KEYS_ID_BYTES);
    i.channels = codec_get_le32(h + 64);
    i.frames = codec_get_le32(h + 68);
    i.height = codec_get_le32(h + 72);
    i.width = codec_get_le32(h + 76);
    i.bits = h[80];
    i.features_bytes = get_le64(h + 88);
    i.envelope_bytes = get_le64(h + 96);
    i.pixels_bytes = get_le64(h + 104);
    if (i.plain_size > CODEC_MAX_FILE_BYTES || i.channels < 1 || i.channels > CODEC_MAX_CHANNELS ||
        i.frames < 1 || i.frames > CODEC_MAX_FRAMES || i.height < 1 || i.height > CODEC_MAX_DIM ||
        i.width < 1 || i.width > CODEC_MAX_DIM || (i.bits != 8 && i.bits != 16))
        return -EINVAL;
    int present = i.features == CODEC_CT_FEATURES_PRESENT;
    if (present != (i.features_bytes != 0) || present != !all_zero(i.ae_id, KEYS_ID_BYTES))
        return -EINVAL;
    if ((present && (i.features_bytes < CODEC_CT_MIN_SEALED + CT_FEAT_PREFIX ||
                     i.features_bytes > CODEC_CT_MAX_CHUNK)) ||
        i.envelope_bytes < KEYS_TAG_BYTES + CT_SHA + CODEC_ENV_FIXED ||
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
static int parse(const uint8_t *buf, size_t len, int check_idat, struct parsed *p)
{
    enum { S_IHDR, S_HEAD, S_FT, S_EV, S_IDAT, S_MORE_IDAT, S_END } st = S_IHDR;
    size_t pos = 8;
    memset(p, 0, sizeof(*p));
    if (!buf || len < 8 || memcmp(buf, png_sig, 8) != 0)
        return -EINVAL;
    while (st != S_END) {
        if (len - pos < 12)
            return -EINVAL;
        uint32_t n = get_be32(buf + pos);
        const uint8_t *type = buf + pos + 4, *data = buf + pos + 8;
        if (n > CODEC_CT_MAX_CHUNK || len - pos - 12 < n)
            return -EINVAL;
        int is_idat = memcmp(type, "IDAT", 4) == 0;
        if (is_idat)
            p->idat_bytes += n;
        if (!is_idat || check_idat) {
            uLong crc = crc_of(data, n, crc32(0L, type, 4));
            if ((uint32_t)crc != get_be32(data + n))
                return -EBADMSG;
        }
        switch (st) {
        case S_IHDR:
            if (memcmp(type, "IHDR", 4) != 0 || n != 13 || data[8] != 8 || data[9] != 0 ||
                data[10] != 0 || data[11] != 0 || data[12] != 0)
                return -EINVAL;
            p->png_w = get_be32(data);
            p->png_h = get_be32(data + 4);
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
    struct parsed p;
    if (!info)
        return -EINVAL;
    int rc = parse(buf, len, 1, &p);
    if (rc == 0)
        *info = p.info;
    return rc;
}

/* Inflate the IDAT chunks into the sealed pixel stream (*out, pixels_bytes), checking the
 * filter bytes and the padding. */
static int read_pixels(const uint8_t *buf, const struct parsed *p, uint8_t **out)
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
    for (size_t pos = p->idat_start; pos < p->idat_end; pos += 12 + (size_t)get_be32(buf + pos)) {
        if (zrc == Z_STREAM_END) {
            rc = -EINVAL; /* IDAT data after the end of the stream */
            goto out;
        }
        zs.next_in = (Bytef *)(uintptr_t)(buf + pos + 8);
        zs.avail_in = get_be32(buf + pos); /* <= 2^31 - 1: fits a uInt */
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

/* ---- Features -------------------------------------------------------------------------------- */

/*
 * The pixel stream of img in *pix (caller frees) by the predictor opts->coder asks for;
 * coder_id gets the coder model's id, or stays zero for predictor 0. 0 or an error of
 * codec_pixcode_encode.
 */
static int encode_pixels(const struct codec_ct *ct, const struct codec_image *img,
                         const struct codec_ct_opts *opts, uint8_t *coder_id, uint8_t **pix,
                         size_t *pix_len)
{
    struct codec_pixcode_opts po = {.threads = opts->threads};
    const struct codec_pix_predictor *net = NULL;
    const struct ct_shelf *cs = &ct->coders;
    int mode = opts->coder == CODEC_CT_CODER_DEFAULT ? CODEC_CT_CODER_FIXED : opts->coder;
    if (mode < CODEC_CT_CODER_FIXED || mode > CODEC_CT_CODER_SMALLEST)
        return -EINVAL;
    if (mode != CODEC_CT_CODER_FIXED && cs->enc < cs->n) {
        /* a coder model this build cannot load (a later release's, say) must not stop files
         * from being stored: predictor 0 codes them, and the header says so */
        int rc = get_coder(ct, cs->s[cs->enc].id, &net);
        if (rc != 0 && rc != -ENOENT)
            return rc;
    }
    if (!net || mode == CODEC_CT_CODER_SMALLEST) {
        int rc = codec_pixcode_encode(img, &po, pix, pix_len);
        if (rc != 0 || !net)
            return rc;
    }
    uint8_t *p1 = NULL;
    size_t n1 = 0;
    po.pred = net;
    /* the streams are the pixels in clear: the one not kept is wiped */
    int rc = codec_pixcode_encode(img, &po, &p1, &n1);
    if (rc != 0) {
        wipe_free(*pix, *pix ? *pix_len : 0);
        *pix = NULL;
        *pix_len = 0;
        return rc;
    }
    if (*pix && *pix_len <= n1) {
        wipe_free(p1, n1);
        return 0;
    }
    wipe_free(*pix, *pix ? *pix_len : 0);
    *pix = p1;
    *pix_len = n1;
    memcpy(coder_id, cs->s[cs->enc].id, KEYS_ID_BYTES);
    return 0;
}

/* The first frame of img as the autoencoder's image (pointing into img, or a new copy). */
static int first_frame(const struct codec_image *img, struct nn_ae_image *fr, void **copy)
{
    size_t sample = img->bits == 16 ? 2 : 1;
    size_t plane = (size_t)img->height * img->width * sample;
    fr->channels = img->channels;
    fr->height = img->height;
    fr->width = img->width;
    fr->bits = img->bits;
    *copy = NULL;
    if (img->frames == 1) {
        fr->pixels = img->planes;
        return 0;
    }
    uint8_t *c = malloc(plane * img->channels);
    if (!c)
        return -ENOMEM;
    for (uint32_t ch = 0; ch < img->channels; ch++)
        memcpy(c + ch * plane, (const uint8_t *)img->planes + (size_t)ch * img->frames * plane,
               plane);
    fr->pixels = c;
    *copy = c;
    return 0;
}

/* Serialise a latent: the features plaintext (container.h), the values by the latent coder,
 * or raw where that is not smaller (zlib, which the latent coder beats by a quarter, is still
 * read but no longer tried: it cost most of a millisecond per image for nothing). */
static int latent_pack(const struct nn_ae_latent *lat, uint8_t **out, size_t *out_len)
{
    size_t values = (size_t)lat->channels * lat->lc * lat->lh * lat->lw;
    uint8_t *lc = NULL, *res = NULL;
    size_t lc_len = 0;
    int rc = codec_lat_encode(lat->q, lat->channels * lat->lc, lat->lh, lat->lw, &lc, &lc_len);
    if (rc == -ENOMEM)
        return rc;
    int coded = rc == 0 && lc_len < values; /* otherwise a value the coder does not take */
    size_t body = coded ? lc_len : values;
    rc = -ENOMEM;
    if (!(res = malloc(CT_FEAT_PREFIX + CT_LATENT_HEAD + body)))
        goto out;
    memset(res, 0, CT_FEAT_PREFIX);
    res[0] = coded ? CT_FEAT_LATCODE : CT_FEAT_RAW;
    codec_put_le32(res + 4, (uint32_t)(CT_LATENT_HEAD + values));
    uint32_t f[CT_LATENT_FIELDS] = {lat->channels, lat->height, lat->width, lat->bits,
                                    lat->depth,    lat->lc,     lat->lh,    lat->lw};
    for (int i = 0; i < CT_LATENT_FIELDS; i++)
        codec_put_le32(res + CT_FEAT_PREFIX + 4 * i, f[i]);
    memcpy(res + CT_FEAT_PREFIX + CT_LATENT_HEAD, coded ? lc : (const uint8_t *)lat->q, body);
    *out = res;
    *out_len = CT_FEAT_PREFIX + CT_LATENT_HEAD + body;
    rc = 0;
out:
    if (lc)
        wipe_free(lc, lc_len);
    return rc;
}

/* Parse a features plaintext (authenticated, still checked) into a new latent. */
static int latent_unpack(const uint8_t *b, size_t n, struct nn_ae_latent **out)
{
    uint8_t *raw = NULL;
    struct nn_ae_latent *lat = NULL;
    int rc = -EINVAL;
    if (n < CT_FEAT_PREFIX || b[0] > CT_FEAT_LATCODE || !all_zero(b + 1, 3))
        return -EINVAL;
    uint32_t raw_len = codec_get_le32(b + 4);
    if (raw_len < CT_LATENT_HEAD || raw_len > CODEC_CT_MAX_CHUNK)
        return -EINVAL;
    const uint8_t *src = b + CT_FEAT_PREFIX;
    if (b[0] == CT_FEAT_LATCODE) {
        /* the head is raw; the values are decoded once the head is checked, below */
        if (n - CT_FEAT_PREFIX < CT_LATENT_HEAD)
            return -EINVAL;
    } else if (b[0] == CT_FEAT_ZLIB) {
        uLongf got = raw_len;
        raw = malloc(raw_len);
        if (!raw)
            return -ENOMEM;
        if (uncompress(raw, &got, src, (uLong)(n - CT_FEAT_PREFIX)) != Z_OK || got != raw_len)
            goto out;
        src = raw;
    } else if (n - CT_FEAT_PREFIX != raw_len) {
        return -EINVAL;
    }
    uint32_t f[CT_LATENT_FIELDS];
    for (int i = 0; i < CT_LATENT_FIELDS; i++)
        f[i] = codec_get_le32(src + 4 * i);
    if (f[0] < 1 || f[0] > NN_AE_MAX_CHANNELS || f[1] < 1 || f[1] > CODEC_MAX_DIM || f[2] < 1 ||
        f[2] > CODEC_MAX_DIM || (f[3] != 8 && f[3] != 16) || f[4] < 1 || f[4] > f[3] || f[5] < 1 ||
        f[5] > NN_AE_MAX_LATENT || f[6] != (f[1] + NN_AE_FACTOR - 1) / NN_AE_FACTOR ||
        f[7] != (f[2] + NN_AE_FACTOR - 1) / NN_AE_FACTOR)
        goto out;
    size_t values = (size_t)f[0] * f[5] * f[6] * f[7];
    if (raw_len != CT_LATENT_HEAD + values)
        goto out;
    rc = -ENOMEM;
    lat = calloc(1, sizeof(*lat));
    if (!lat || !(lat->q = malloc(values)))
        goto out;
    lat->channels = f[0];
    lat->height = f[1];
    lat->width = f[2];
    lat->bits = f[3];
    lat->depth = f[4];
    lat->lc = f[5];
    lat->lh = f[6];
    lat->lw = f[7];
    if (b[0] == CT_FEAT_LATCODE) {
        rc = codec_lat_decode(src + CT_LATENT_HEAD, n - CT_FEAT_PREFIX - CT_LATENT_HEAD, lat->q,
                              f[0] * f[5], f[6], f[7]);
        if (rc != 0)
            goto out;
        rc = -EINVAL;
    } else {
        memcpy(lat->q, src + CT_LATENT_HEAD, values);
    }
    for (size_t i = 0; i < values; i++)
        if (lat->q[i] < -NN_AE_QMAX) {
            rc = -EINVAL;
            goto out;
        }
    *out = lat;
    lat = NULL;
    rc = 0;
out:
    nn_ae_latent_free(lat); /* wipes the values decoded so far */
    wipe_free(raw, raw_len);
    return rc;
}

/*
 * The features of an image: status, model id and the sealed-to-be plaintext (*out, or NULL
 * when absent). Only memory errors fail; an image the autoencoder refuses gets no features.
 */
static int make_features(const struct codec_ct *ct, const struct codec_image *img,
                         const uint8_t *file, size_t len, int disabled, uint8_t *status,
                         uint8_t ae_id[KEYS_ID_BYTES], uint8_t **out, size_t *out_len)
{
    const struct nn_ae *ae = NULL;
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image fr;
    void *copy = NULL;
    *out = NULL;
    *out_len = 0;
    memset(ae_id, 0, KEYS_ID_BYTES);
    if (disabled) {
        *status = CODEC_CT_FEATURES_DISABLED;
        return 0;
    }
    if (img->height < CODEC_CT_MIN_FEATURE_DIM || img->width < CODEC_CT_MIN_FEATURE_DIM) {
        *status = CODEC_CT_FEATURES_SMALL;
        return 0;
    }
    /* a palette PNG's samples are indices: a picture of them would be noise */
    if (img->format == CODEC_FORMAT_PNG && len > 25 && file[25] == 3) {
        *status = CODEC_CT_FEATURES_UNSUPPORTED;
        return 0;
    }
    const struct ct_shelf *aes = &ct->aes;
    if (aes->enc >= aes->n || get_model(ct, aes->s[aes->enc].id, &ae) != 0) {
        *status = CODEC_CT_FEATURES_NO_MODEL;
        return 0;
    }
    int rc = first_frame(img, &fr, &copy);
    if (rc != 0)
        return rc;
    rc = nn_ae_encode(ae, &fr, &lat);
    if (copy)
        wipe_free(copy, (size_t)img->channels * img->height * img->width * (img->bits / 8));
    if (rc == -ENOMEM)
        return rc;
    if (rc != 0) {
        *status = CODEC_CT_FEATURES_UNSUPPORTED;
        return 0;
    }
    rc = latent_pack(lat, out, out_len);
    nn_ae_latent_free(lat);
    if (rc != 0)
        return rc;
    *status = CODEC_CT_FEATURES_PRESENT;
    memcpy(ae_id, aes->s[aes->enc].id, KEYS_ID_BYTES);
    return 0;
}

/* ---- Encoding -------------------------------------------------------------------------------- */

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
    uLong ad = adler32(0L, Z_NULL, 0);
    for (uint64_t done = 0; done < total;) {
        uint64_t step = total - done > (1u << 30) ? (1u << 30) : total - done;
        ad = adler32(ad, rows + done, (uInt)step);
        done += step;
    }
    put_be32(z + at, (uint32_t)ad);
    at += 4;
    free(rows);
    *out = z;
    *out_len = at;
    return 0;
}

int codec_ct_encode(const struct codec_ct *ct, const uint8_t *buf, size_t len,
                    const struct codec_ct_opts *opts, uint8_t **out, size_t *out_len)
{
    static const struct codec_ct_opts defaults = {0};
    struct codec_image *img = NULL;
    struct keys_key *fk = NULL;
    uint8_t *env = NULL, *feat = NULL, *pix = NULL, *evp = NULL, *png = NULL, *z = NULL;
    uint8_t *sealed = NULL;
    size_t env_len = 0, feat_len = 0, pix_len = 0, evp_len = 0, z_len = 0;
    uint8_t hdr[CODEC_CT_HEADER], ae_id[KEYS_ID_BYTES], status = 0;
    int rc;
    if (!ct || (!buf && len) || !out || !out_len)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    if ((uint64_t)len > CODEC_MAX_FILE_BYTES)
        return -EFBIG;
    rc = codec_split_threads(buf, len, opts->threads, &img, &env, &env_len, NULL, 0);
    if (rc != 0)
        return rc;
    uint8_t coder_id[KEYS_ID_BYTES] = {0};
    if ((rc = encode_pixels(ct, img, opts, coder_id, &pix, &pix_len)) != 0)
        goto out;
    if ((rc = make_features(ct, img, buf, len, opts->no_features, &status, ae_id, &feat,
                            &feat_len)) != 0)
        goto out;
    /* envelope plaintext: SHA-256 of the file, then the envelope */
    evp_len = CT_SHA + env_len;
    if (!(evp = malloc(evp_len))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = keys_sha256(buf, len, evp)) != 0)
        goto out;
    memcpy(evp + CT_SHA, env, env_len);
    uint64_t fs = feat ? feat_len + KEYS_TAG_BYTES : 0, es = evp_len + KEYS_TAG_BYTES,
             ps = (uint64_t)pix_len + KEYS_TAG_BYTES;
    if (fs > CODEC_CT_MAX_CHUNK || es > CODEC_CT_MAX_CHUNK || ps > CODEC_CT_MAX_PIXELS) {
        rc = -EFBIG;
        goto out;
    }

    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, CODEC_CT_MAGIC, 4);
    hdr[4] = CODEC_CT_VERSION;
    hdr[5] = (uint8_t)img->format;
    hdr[6] = status;
    /* A fresh id, hence a fresh per-file key, for every encode: what makes the fixed
     * per-section nonces unique (container.h). */
    if ((rc = keys_random(hdr + 8, KEYS_ID_BYTES)) != 0)
        goto out;
    put_le64(hdr + 24, len);
    memcpy(hdr + 32, ae_id, KEYS_ID_BYTES);
    memcpy(hdr + 48, coder_id, KEYS_ID_BYTES); /* zero: the built-in fixed predictor */
    codec_put_le32(hdr + 64, img->channels);
    codec_put_le32(hdr + 68, img->frames);
    codec_put_le32(hdr + 72, img->height);
    codec_put_le32(hdr + 76, img->width);
    hdr[80] = (uint8_t)img->bits;
    put_le64(hdr + 88, fs);
    put_le64(hdr + 96, es);
    put_le64(hdr + 104, ps);
    if ((rc = file_key(ct, hdr + 8, &fk)) != 0)
        goto out;

    uint32_t w, h;
    geometry(ps, &w, &h);
    if (!(sealed = malloc((size_t)ps))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = seal(fk, hdr, CODEC_CT_SECTION_PIXELS, pix, pix_len, sealed)) != 0)
        goto out;
    wipe_free(pix, pix_len);
    pix = NULL;
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
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8;
    at += put_chunk(png + at, "IHDR", ihdr, sizeof(ihdr));
    at += put_chunk(png + at, CODEC_CT_CHUNK_HEADER, hdr, sizeof(hdr));
    if (fs) {
        if ((rc = seal(fk, hdr, CODEC_CT_SECTION_FEATURES, feat, feat_len, png + at + 8)) != 0)
            goto out;
        at += put_chunk(png + at, CODEC_CT_CHUNK_FEATURES, NULL, (size_t)fs);
    }
    if ((rc = seal(fk, hdr, CODEC_CT_SECTION_ENVELOPE, evp, evp_len, png + at + 8)) != 0)
        goto out;
    at += put_chunk(png + at, CODEC_CT_CHUNK_ENVELOPE, NULL, (size_t)es);
    for (size_t off = 0; off < z_len; off += CODEC_CT_IDAT_CHUNK) {
        size_t n = z_len - off < CODEC_CT_IDAT_CHUNK ? z_len - off : CODEC_CT_IDAT_CHUNK;
        at += put_chunk(png + at, "IDAT", z + off, n);
    }
    at += put_chunk(png + at, "IEND", NULL, 0);

    if (opts->verify) {
        uint8_t *back = NULL;
        size_t back_len = 0;
        rc = codec_ct_decode(ct, png, at, opts->threads, &back, &back_len);
        if (rc == 0 && (back_len != len || (len && memcmp(back, buf, len) != 0)))
            rc = -EBADMSG;
        if (rc == -EINVAL || rc == -ENOENT)
            rc = -EBADMSG; /* what we just wrote must decode: a codec bug */
        wipe_free(back, back_len);
        if (rc != 0)
            goto out;
    }
    *out = png;
    *out_len = at;
    png = NULL;
out:
    free(png);
    free(z);
    free(sealed);
    wipe_free(evp, evp_len);
    wipe_free(feat, feat_len);
    wipe_free(pix, pix_len);
    wipe_free(env, env_len);
    if (img)
        OPENSSL_cleanse(img->planes, img->planes_bytes);
    codec_image_free(img);
    keys_key_free(fk);
    return rc;
}

/* ---- Decoding -------------------------------------------------------------------------------- */

int codec_ct_decode(const struct codec_ct *ct, const uint8_t *buf, size_t len, unsigned threads,
                    uint8_t **out, size_t *out_len)
{
    struct parsed p;
    struct keys_key *fk = NULL;
    uint8_t *sealed = NULL, *pix = NULL, *evp = NULL, *feat = NULL, *file = NULL;
    size_t pix_len = 0, evp_len = 0, feat_len = 0, file_len = 0;
    struct codec_image img = {0};
    struct codec_pixcode_info pi;
    uint8_t digest[CT_SHA];
    int rc;
    if (!ct || !out || !out_len)
        return -EINVAL;
    if ((rc = parse(buf, len, 1, &p)) != 0)
        return rc;
    const struct codec_pix_predictor *pred = NULL; /* predictor 0 */
    if (!all_zero(p.info.coder_id, KEYS_ID_BYTES) &&
        (rc = get_coder(ct, p.info.coder_id, &pred)) != 0)
        return rc;
    if ((rc = file_key(ct, p.info.file_id, &fk)) != 0)
        return rc;
    if (p.ft) { /* checked too, though a decode does not need it */
        feat_len = p.ft_len - KEYS_TAG_BYTES;
        if ((rc = open_section(fk, p.hdr, CODEC_CT_SECTION_FEATURES, p.ft, p.ft_len, &feat)))
            goto out;
    }
    evp_len = p.ev_len - KEYS_TAG_BYTES;
    if ((rc = open_section(fk, p.hdr, CODEC_CT_SECTION_ENVELOPE, p.ev, p.ev_len, &evp)) != 0)
        goto out;
    if ((rc = read_pixels(buf, &p, &sealed)) != 0)
        goto out;
    pix_len = (size_t)p.info.pixels_bytes - KEYS_TAG_BYTES;
    rc =
        open_section(fk, p.hdr, CODEC_CT_SECTION_PIXELS, sealed, (size_t)p.info.pixels_bytes, &pix);
    free(sealed);
    sealed = NULL;
    if (rc != 0)
        goto out;
    /* From here every byte is authenticated: a mismatch is an encoder bug, still refused. */
    rc = -EBADMSG;
    if (codec_pixcode_info(pix, pix_len, &pi) != 0 || pi.predictor != (pred ? pred->id : 0) ||
        pi.channels != p.info.channels || pi.frames != p.info.frames ||
        pi.height != p.info.height || pi.width != p.info.width || pi.bits != p.info.bits)
        goto out;
    img.format = p.info.format;
    img.channels = pi.channels;
    img.frames = pi.frames;
    img.height = pi.height;
    img.width = pi.width;
    img.bits = pi.bits;
    img.significant = pi.significant;
    img.planes_bytes = pi.planes_bytes;
    if (!(img.planes = malloc(img.planes_bytes))) {
        rc = -ENOMEM;
        goto out;
    }
    int r2 = codec_pixcode_decode(pix, pix_len, &img, pred, threads);
    if (r2 == -ENOMEM) {
        rc = r2;
        goto out;
    }
    if (r2 != 0)
        goto out;
    r2 = codec_join_threads(&img, evp + CT_SHA, evp_len - CT_SHA, threads, &file, &file_len);
    if (r2 == -ENOMEM) {
        rc = r2;
        goto out;
    }
    if (r2 != 0 || file_len != p.info.plain_size || keys_sha256(file, file_len, digest) != 0 ||
        CRYPTO_memcmp(digest, evp, CT_SHA) != 0)
        goto out;
    *out = file;
    *out_len = file_len;
    file = NULL;
    rc = 0;
out:
    wipe_free(file, file_len);
    wipe_free(img.planes, img.planes_bytes);
    wipe_free(pix, pix_len);
    free(sealed);
    wipe_free(evp, evp_len);
    wipe_free(feat, feat_len);
    keys_key_free(fk);
    return rc;
}

/* ---- Preview --------------------------------------------------------------------------------- */

/* A PNG of an autoencoder image (planar samples) into a new buffer. The rows go in stored
 * deflate blocks: a preview is made to be looked at at once, and zlib's fastest level would
 * take longer than the decoder (about 3 to 6 ms against 3 ms at 512 x 512 here) to make the file
 * 2 to 2.5 times smaller. */
static int write_png(const struct nn_ae_image *im, uint8_t **out, size_t *out_len)
{
    static const uint8_t ctype[5] = {0, 0, 4, 2, 6};
    size_t bps = im->bits / 8, c = im->channels;
    size_t plane = (size_t)im->height * im->width;
    size_t row = 1 + (size_t)im->width * c * bps, raw_len = row * im->height;
    uint8_t *raw = malloc(raw_len), *png = NULL;
    uLongf zlen = compressBound((uLong)raw_len);
    int rc = 0;
    if (!raw)
        return -ENOMEM;
    for (uint32_t y = 0; y < im->height; y++) {
        uint8_t *r = raw + y * row;
        *r++ = 0;
        if (c == 1 && bps == 1) {
            memcpy(r, (const uint8_t *)im->pixels + (size_t)y * im->width, im->width);
            continue;
        }
        for (uint32_t x = 0; x < im->width; x++)
            for (size_t ch = 0; ch < c; ch++) {
                size_t i = ch * plane + (size_t)y * im->width + x;
                if (bps == 1) {
                    *r++ = ((const uint8_t *)im->pixels)[i];
                } else {
                    uint16_t v = ((const uint16_t *)im->pixels)[i];
                    *r++ = (uint8_t)(v >> 8);
                    *r++ = (uint8_t)v;
                }
            }
    }
    png = malloc(8 + 25 + 12 + zlen + 12);
    if (!png) {
        rc = -ENOMEM;
        goto out;
    }
    if (compress2(png + 8 + 25 + 8, &zlen, raw, (uLong)raw_len, Z_NO_COMPRESSION) != Z_OK) {
        rc = -ENOMEM;
        goto out;
    }
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, im->width);
    put_be32(ihdr + 4, im->height);
    ihdr[8] = (uint8_t)im->bits;
    ihdr[9] = ctype[c];
    memcpy(png, png_sig, 8);
    size_t at = 8;
    at += put_chunk(png + at, "IHDR", ihdr, sizeof(ihdr));
    at += put_chunk(png + at, "IDAT", NULL, zlen);
    at += put_chunk(png + at, "IEND", NULL, 0);
    *out = png;
    *out_len = at;
    png = NULL;
out:
    free(png);
    wipe_free(raw, raw_len);
    return rc;
}

int codec_ct_preview(const struct codec_ct *ct, const uint8_t *buf, size_t len, uint8_t **out,
                     size_t *out_len)
{
    struct parsed p;
    struct keys_key *fk = NULL;
    uint8_t *feat = NULL;
    size_t feat_len = 0;
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *im = NULL;
    const struct nn_ae *ae = NULL;
    int rc;
    if (!ct || !out || !out_len)
        return -EINVAL;
    if ((rc = parse(buf, len, 0, &p)) != 0)
        return rc;
    if (!p.ft)
        return -ENODATA;
    if ((rc = get_model(ct, p.info.ae_id, &ae)) != 0)
        return rc;
    if ((rc = file_key(ct, p.info.file_id, &fk)) != 0)
        return rc;
    feat_len = p.ft_len - KEYS_TAG_BYTES;
    if ((rc = open_section(fk, p.hdr, CODEC_CT_SECTION_FEATURES, p.ft, p.ft_len, &feat)) != 0)
        goto out;
    if ((rc = latent_unpack(feat, feat_len, &lat)) != 0)
        goto out;
    if (lat->channels != p.info.channels || lat->height != p.info.height ||
        lat->width != p.info.width || lat->bits != p.info.bits) {
        rc = -EINVAL;
        goto out;
    }
    rc = nn_ae_decode_int(ae, lat, &im);
    if (rc == -ENOENT)
        rc = nn_ae_decode(ae, lat, &im);
    if (rc != 0)
        goto out;
    rc = write_png(im, out, out_len);
out:
    if (im) {
        OPENSSL_cleanse(im->pixels, (size_t)im->channels * im->height * im->width * (im->bits / 8));
        nn_ae_image_free(im);
    }
    if (lat) {
        OPENSSL_cleanse(lat->q, (size_t)lat->channels * lat->lc * lat->lh * lat->lw);
        nn_ae_latent_free(lat);
    }
    wipe_free(feat, feat_len);
    keys_key_free(fk);
    return rc;
}
