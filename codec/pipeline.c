// SPDX-License-Identifier: MIT
/*
 * The image pipeline (pipeline.h): the model shelf, and encode = split + pixel coding +
 * features + seal (container.h) + verify; decode; preview. The container format itself is
 * codec/store/container.c; this file decides what goes into its sections.
 *
 * Everything is done on whole buffers in memory: the trade-off is peak memory (about three
 * times the pixel stream) against one call per file with nothing half-done to clean up.
 * Decrypted and decoded data (envelope with patient data, pixels, features) is wiped before
 * it is freed.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <zlib.h>

#include "codec/pipeline.h"
#include "codec/bytes.h"
#include "codec/pixel/latcode.h"
#include "codec/pixel/pixcode.h"
#include "codec/pixel/pixnet.h"
#include "nn/ae.h"

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};

#define PL_LATENT_HEAD (4 * CODEC_CT_LATENT_FIELDS)

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void wipe_free(void *p, size_t n)
{
    if (p) {
        OPENSSL_cleanse(p, n);
        free(p);
    }
}

/* ---- The context: container key and models -------------------------------------------------- */

/* A model the context knows: an autoencoder or a coder model (codec/pixel/pixnet.h). */
struct pl_slot {
    uint8_t id[KEYS_ID_BYTES];
    const uint8_t *bytes; /* not owned: the keyring's or the library's */
    size_t len;
    void *obj; /* loaded on first use (struct nn_ae or codec_pixnet); guarded by codec_pipeline.lock
                */
    int bad;   /* its bytes did not load: not tried again (guarded by the lock) */
};

/* The models of one kind: the built-in one first, then the keyring's in its order. */
struct pl_shelf {
    size_t n;
    size_t enc; /* the model encoding uses: the one added last; n when there is none */
    struct pl_slot s[KEYS_MAX_MODELS + 1];
};

struct codec_pipeline {
    const struct keys_key *key; /* the container subkey */
    struct keys_key *owned;     /* the same, when derived here */
    pthread_mutex_t lock;       /* guards the slots' obj and bad (the only mutable state) */
    struct pl_shelf aes, coders;
};

/* Add a model (id: the first bytes of its SHA-256, computed when NULL); the one added last
 * encodes, also when it is one known already (the built-in model, held by the keyring too). */
static int shelf_add(struct pl_shelf *sh, const uint8_t *bytes, size_t len, const uint8_t *id)
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
    struct pl_slot *m = &sh->s[sh->n];
    memcpy(m->id, id, KEYS_ID_BYTES);
    m->bytes = bytes;
    m->len = len;
    sh->enc = sh->n++;
    return 0;
}

static int pl_alloc(struct codec_pipeline **out)
{
    struct codec_pipeline *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return -ENOMEM;
    if (pthread_mutex_init(&pl->lock, NULL) != 0) {
        free(pl);
        return -ENOMEM;
    }
    size_t len = 0;
    const uint8_t *b = nn_ae_default_bytes(&len);
    int rc = b && len ? shelf_add(&pl->aes, b, len, NULL) : 0;
    /* an empty built-in coder file means none: predictor 0 encodes */
    b = codec_pixnet_default_bytes(&len);
    if (rc == 0 && b && len)
        rc = shelf_add(&pl->coders, b, len, NULL);
    if (rc != 0) {
        codec_pipeline_free(pl);
        return rc;
    }
    *out = pl;
    return 0;
}

int codec_pipeline_new_key(const struct keys_key *container_key, struct codec_pipeline **out)
{
    struct codec_pipeline *pl = NULL;
    if (!container_key || !out)
        return -EINVAL;
    int rc = pl_alloc(&pl);
    if (rc != 0)
        return rc;
    pl->key = container_key;
    *out = pl;
    return 0;
}

int codec_pipeline_new(const struct keys_ring *ring, struct codec_pipeline **out)
{
    struct codec_pipeline *pl = NULL;
    if (!ring || !out)
        return -EINVAL;
    int rc = pl_alloc(&pl);
    if (rc == 0)
        rc = keys_ring_subkey(ring, CODEC_CT_SUBKEY_LABEL, KEYS_KEY_GCM, &pl->owned);
    for (uint32_t i = 0; rc == 0 && i < keys_ring_model_count(ring); i++) {
        struct keys_model_info info;
        const uint8_t *w = NULL;
        if (keys_ring_model(ring, i, &info, &w) != 0)
            continue;
        /* the keyring's models come after the built-in one: the last added encodes */
        if (info.kind == KEYS_MODEL_AUTOENCODER)
            rc = shelf_add(&pl->aes, w, (size_t)info.bytes, info.id);
        else if (info.kind == KEYS_MODEL_CODER)
            rc = shelf_add(&pl->coders, w, (size_t)info.bytes, info.id);
    }
    if (rc != 0) {
        codec_pipeline_free(pl);
        return rc;
    }
    pl->key = pl->owned;
    *out = pl;
    return 0;
}

void codec_pipeline_free(struct codec_pipeline *pl)
{
    if (!pl)
        return;
    for (size_t i = 0; i < pl->aes.n; i++)
        nn_ae_free(pl->aes.s[i].obj);
    for (size_t i = 0; i < pl->coders.n; i++)
        codec_pixnet_free(pl->coders.s[i].obj);
    keys_key_free(pl->owned);
    pthread_mutex_destroy(&pl->lock);
    free(pl);
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
static int shelf_get(const struct codec_pipeline *cpl, const struct pl_shelf *csh,
                     const uint8_t *id, int (*load)(const uint8_t *, size_t, void **), void **obj)
{
    struct codec_pipeline *pl =
        (struct codec_pipeline *)cpl; /* only the lazily loaded models change */
    struct pl_shelf *sh = (struct pl_shelf *)csh;
    int rc = -ENOENT;
    if (pthread_mutex_lock(&pl->lock) != 0)
        return -EIO;
    for (size_t i = 0; i < sh->n; i++) {
        struct pl_slot *m = &sh->s[i];
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
    pthread_mutex_unlock(&pl->lock);
    return rc;
}

static int get_model(const struct codec_pipeline *pl, const uint8_t *id, const struct nn_ae **ae)
{
    void *obj = NULL;
    int rc = shelf_get(pl, &pl->aes, id, load_ae, &obj);
    if (rc == 0)
        *ae = obj;
    return rc;
}

static int get_coder(const struct codec_pipeline *pl, const uint8_t *id,
                     const struct codec_pixcode_predictor **pred)
{
    void *obj = NULL;
    int rc = shelf_get(pl, &pl->coders, id, load_coder, &obj);
    if (rc == 0)
        *pred = codec_pixnet_predictor(obj);
    return rc;
}

/* ---- Features -------------------------------------------------------------------------------- */

/*
 * The pixel stream of img in *pix (caller frees) by the predictor opts->coder asks for;
 * coder_id gets the coder model's id, or stays zero for predictor 0. 0 or an error of
 * codec_pixcode_encode.
 */
static int encode_pixels(const struct codec_pipeline *pl, const struct codec_image *img,
                         const struct codec_pipeline_opts *opts, uint8_t *coder_id, uint8_t **pix,
                         size_t *pix_len)
{
    struct codec_pixcode_opts po = {.threads = opts->threads};
    const struct codec_pixcode_predictor *net = NULL;
    const struct pl_shelf *cs = &pl->coders;
    int mode =
        opts->coder == CODEC_PIPELINE_CODER_DEFAULT ? CODEC_PIPELINE_CODER_FIXED : opts->coder;
    if (mode < CODEC_PIPELINE_CODER_FIXED || mode > CODEC_PIPELINE_CODER_NEURAL_ONLY)
        return -EINVAL;
    if (mode != CODEC_PIPELINE_CODER_FIXED && cs->enc < cs->n) {
        /* a coder model this build cannot load (a later release's, say) must not stop files
         * from being stored: predictor 0 codes them, and the header says so */
        int rc = get_coder(pl, cs->s[cs->enc].id, &net);
        if (rc != 0 && rc != -ENOENT)
            return rc;
    }
    if (!net || mode == CODEC_PIPELINE_CODER_SMALLEST) {
        int rc = codec_pixcode_encode(img, &po, pix, pix_len);
        if (rc != 0 || !net)
            return rc;
    }
    uint8_t *p1 = NULL;
    size_t n1 = 0;
    po.pred = net;
    /* neural: predictor 0 where a sample of the stripes says it codes smaller */
    if (mode == CODEC_PIPELINE_CODER_NEURAL)
        po.alt = &codec_pixcode_fixed;
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
    struct codec_pixcode_info info;
    if (codec_pixcode_info(p1, n1, &info) == 0 && info.predictor != 0)
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
    int rc = codec_latcode_encode(lat->q, lat->channels * lat->lc, lat->lh, lat->lw, &lc, &lc_len);
    if (rc == -ENOMEM)
        return rc;
    int coded = rc == 0 && lc_len < values; /* otherwise a value the coder does not take */
    size_t body = coded ? lc_len : values;
    rc = -ENOMEM;
    if (!(res = malloc(CODEC_CT_FEATURES_PREFIX + PL_LATENT_HEAD + body)))
        goto out;
    memset(res, 0, CODEC_CT_FEATURES_PREFIX);
    res[0] = coded ? CODEC_CT_FEATURES_LATCODE : CODEC_CT_FEATURES_RAW;
    codec_put_le32(res + 4, (uint32_t)(PL_LATENT_HEAD + values));
    uint32_t f[CODEC_CT_LATENT_FIELDS] = {lat->channels, lat->height, lat->width, lat->bits,
                                          lat->depth,    lat->lc,     lat->lh,    lat->lw};
    for (int i = 0; i < CODEC_CT_LATENT_FIELDS; i++)
        codec_put_le32(res + CODEC_CT_FEATURES_PREFIX + 4 * i, f[i]);
    memcpy(res + CODEC_CT_FEATURES_PREFIX + PL_LATENT_HEAD, coded ? lc : (const uint8_t *)lat->q,
           body);
    *out = res;
    *out_len = CODEC_CT_FEATURES_PREFIX + PL_LATENT_HEAD + body;
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
    if (n < CODEC_CT_FEATURES_PREFIX || b[0] > CODEC_CT_FEATURES_LATCODE || !all_zero(b + 1, 3))
        return -EINVAL;
    uint32_t raw_len = codec_get_le32(b + 4);
    if (raw_len < PL_LATENT_HEAD || raw_len > CODEC_CT_MAX_CHUNK)
        return -EINVAL;
    const uint8_t *src = b + CODEC_CT_FEATURES_PREFIX;
    if (b[0] == CODEC_CT_FEATURES_LATCODE) {
        /* the head is raw; the values are decoded once the head is checked, below */
        if (n - CODEC_CT_FEATURES_PREFIX < PL_LATENT_HEAD)
            return -EINVAL;
    } else if (b[0] == CODEC_CT_FEATURES_ZLIB) {
        uLongf got = raw_len;
        raw = malloc(raw_len);
        if (!raw)
            return -ENOMEM;
        if (uncompress(raw, &got, src, (uLong)(n - CODEC_CT_FEATURES_PREFIX)) != Z_OK ||
            got != raw_len)
            goto out;
        src = raw;
    } else if (n - CODEC_CT_FEATURES_PREFIX != raw_len) {
        return -EINVAL;
    }
    uint32_t f[CODEC_CT_LATENT_FIELDS];
    for (int i = 0; i < CODEC_CT_LATENT_FIELDS; i++)
        f[i] = codec_get_le32(src + 4 * i);
    if (f[0] < 1 || f[0] > NN_AE_MAX_CHANNELS || f[1] < 1 || f[1] > CODEC_MAX_DIM || f[2] < 1 ||
        f[2] > CODEC_MAX_DIM || (f[3] != 8 && f[3] != 16) || f[4] < 1 || f[4] > f[3] || f[5] < 1 ||
        f[5] > NN_AE_MAX_LATENT || f[6] != (f[1] + NN_AE_FACTOR - 1) / NN_AE_FACTOR ||
        f[7] != (f[2] + NN_AE_FACTOR - 1) / NN_AE_FACTOR)
        goto out;
    size_t values = (size_t)f[0] * f[5] * f[6] * f[7];
    if (raw_len != PL_LATENT_HEAD + values)
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
    if (b[0] == CODEC_CT_FEATURES_LATCODE) {
        rc = codec_latcode_decode(src + PL_LATENT_HEAD,
                                  n - CODEC_CT_FEATURES_PREFIX - PL_LATENT_HEAD, lat->q,
                                  f[0] * f[5], f[6], f[7]);
        if (rc != 0)
            goto out;
    } else {
        memcpy(lat->q, src + PL_LATENT_HEAD, values);
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

/* The adapter flags of a well-formed envelope (codec.h), else 0. */
static uint8_t env_flags(const uint8_t *env, size_t env_len)
{
    struct codec_envelope_info ei;
    return codec_envelope_info(env, env_len, &ei) == 0 ? ei.flags : 0;
}

/* How many channels the features of an image have: one per 32-bit DICOM sample (two 16-bit
 * channels in the image), else one per channel. */
static uint32_t feature_channels(enum codec_format format, uint8_t flags, uint32_t channels)
{
    return format == CODEC_FORMAT_DICOM && (flags & CODEC_DICOM_WORDS32) ? channels / 2 : channels;
}

/* The bytes of an autoencoder image's pixels (planar, 8 or 16 bits). */
static size_t ae_image_bytes(const struct nn_ae_image *im)
{
    return (size_t)im->channels * im->height * im->width * (im->bits / 8);
}

/* Sample i of a planar autoencoder image (8 or 16 bits). */
static uint32_t sample_at(const struct nn_ae_image *im, size_t i)
{
    return im->bits == 8 ? ((const uint8_t *)im->pixels)[i] : ((const uint16_t *)im->pixels)[i];
}

/* Set sample i in a planar buffer of `bits` samples (sample_at reads one). */
static void sample_put(unsigned bits, void *px, size_t i, uint32_t v)
{
    if (bits == 8)
        ((uint8_t *)px)[i] = (uint8_t)v;
    else
        ((uint16_t *)px)[i] = (uint16_t)v;
}

/* The samples of a DICOM image of 32-bit samples (codec.h: each is two 16-bit channels, in file
 * order: the low word first, or the high word first when big-endian), channels / 2 per pixel,
 * scaled to 16 bits so that the largest is 65535 (a dose grid's values are far below 2^32):
 * what a viewer shows, and what the autoencoder is given. A new planar buffer, or NULL. */
static uint16_t *words32_scaled(const struct nn_ae_image *im, int big_endian)
{
    uint32_t n = im->channels / 2;
    size_t plane = (size_t)im->height * im->width;
    size_t hi = big_endian ? 0 : plane, lo = big_endian ? plane : 0;
    uint64_t max = 0;
    uint16_t *px = malloc((size_t)n * plane * sizeof(*px));
    if (!px)
        return NULL;
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < n; s++)
            for (size_t i = 0; i < plane; i++) {
                size_t at = 2 * s * plane + i;
                uint64_t v = (uint64_t)sample_at(im, at + hi) << 16 | sample_at(im, at + lo);
                if (pass == 0)
                    max = v > max ? v : max;
                else
                    px[s * plane + i] = (uint16_t)(max ? v * 65535 / max : 0);
            }
    return px;
}

/*
 * The features of an image: status, model id and the sealed-to-be plaintext (*out, or NULL
 * when absent). Only memory errors fail; an image the autoencoder refuses gets no features.
 * The autoencoder is given the first frame, 32-bit DICOM samples scaled (words32_scaled).
 */
static int make_features(const struct codec_pipeline *pl, const struct codec_image *img,
                         uint8_t flags, const uint8_t *file, size_t len, int disabled,
                         uint8_t *status, uint8_t ae_id[KEYS_ID_BYTES], uint8_t **out,
                         size_t *out_len)
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
    const struct pl_shelf *aes = &pl->aes;
    if (aes->enc >= aes->n || get_model(pl, aes->s[aes->enc].id, &ae) != 0) {
        *status = CODEC_CT_FEATURES_NO_MODEL;
        return 0;
    }
    int rc = first_frame(img, &fr, &copy);
    if (rc != 0)
        return rc;
    uint32_t channels = feature_channels(img->format, flags, img->channels);
    if (channels != img->channels) {
        uint16_t *scaled = words32_scaled(&fr, (flags & CODEC_DICOM_BE16) != 0);
        wipe_free(copy, ae_image_bytes(&fr));
        if (!scaled)
            return -ENOMEM;
        fr.pixels = copy = scaled;
        fr.channels = channels;
    }
    rc = nn_ae_encode(ae, &fr, &lat);
    wipe_free(copy, ae_image_bytes(&fr));
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

/* Decode a container just written and compare it with the input: what makes a codec bug an
 * error here rather than a lost file later. 0, or -EBADMSG when it does not round-trip. */
static int verify(const struct codec_pipeline *pl, const uint8_t *ct, size_t ct_len,
                  const uint8_t *buf, size_t len, unsigned threads)
{
    uint8_t *back = NULL;
    size_t back_len = 0;
    int rc = codec_pipeline_decode(pl, ct, ct_len, threads, &back, &back_len);
    if (rc == 0 && (back_len != len || (len && memcmp(back, buf, len) != 0)))
        rc = -EBADMSG;
    if (rc == -EINVAL || rc == -ENOENT)
        rc = -EBADMSG; /* what we just wrote must decode: a codec bug */
    wipe_free(back, back_len);
    return rc;
}

int codec_pipeline_estimate(const uint8_t *buf, size_t len, uint64_t *bytes)
{
    struct codec_image geo;
    if (!bytes)
        return -EINVAL;
    int rc = codec_probe(buf, len, &geo);
    if (rc == 0)
        *bytes = (uint64_t)geo.planes_bytes * CODEC_PIPELINE_PEAK_PER_BYTE + 2 * (uint64_t)len;
    return rc;
}

int codec_pipeline_encode(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                          const struct codec_pipeline_opts *opts, uint8_t **out, size_t *out_len)
{
    static const struct codec_pipeline_opts defaults = {0};
    struct codec_image *img = NULL;
    uint8_t *env = NULL, *feat = NULL, *pix = NULL, *evp = NULL, *ct = NULL;
    size_t env_len = 0, feat_len = 0, pix_len = 0, evp_len = 0, ct_len = 0;
    struct codec_ct_plain in = {0};
    uint8_t status = 0;
    int rc;
    if (!pl || (!buf && len) || !out || !out_len)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    if ((uint64_t)len > CODEC_MAX_FILE_BYTES)
        return -EFBIG;
    uint64_t need = 0;
    rc = 0;
    if (opts->max_bytes && (rc = codec_pipeline_estimate(buf, len, &need)) == 0 &&
        need > opts->max_bytes)
        rc = -EFBIG;
    if (rc != 0)
        return rc;
    rc = codec_split_threads(buf, len, opts->threads, &img, &env, &env_len, NULL, 0);
    if (rc != 0)
        return rc;
    if ((rc = encode_pixels(pl, img, opts, in.info.coder_id, &pix, &pix_len)) != 0)
        goto out;
    if ((rc = make_features(pl, img, env_flags(env, env_len), buf, len, opts->no_features, &status,
                            in.info.ae_id, &feat, &feat_len)) != 0)
        goto out;
    /* envelope plaintext: SHA-256 of the file, then the envelope */
    evp_len = CODEC_CT_DIGEST + env_len;
    if (!(evp = malloc(evp_len))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = keys_sha256(buf, len, evp)) != 0)
        goto out;
    memcpy(evp + CODEC_CT_DIGEST, env, env_len);

    in.info.format = img->format;
    in.info.features = (enum codec_ct_features)status;
    in.info.plain_size = len;
    in.info.channels = img->channels;
    in.info.frames = img->frames;
    in.info.height = img->height;
    in.info.width = img->width;
    in.info.bits = img->bits;
    in.features = feat;
    in.features_len = feat_len;
    in.envelope = evp;
    in.envelope_len = evp_len;
    in.pixels = pix;
    in.pixels_len = pix_len;
    if ((rc = codec_ct_write(pl->key, &in, &ct, &ct_len)) != 0)
        goto out;
    if (opts->verify && (rc = verify(pl, ct, ct_len, buf, len, opts->threads)) != 0)
        goto out;
    *out = ct;
    *out_len = ct_len;
    ct = NULL;
out:
    free(ct);
    wipe_free(evp, evp_len);
    wipe_free(feat, feat_len);
    wipe_free(pix, pix_len);
    wipe_free(env, env_len);
    if (img)
        OPENSSL_cleanse(img->planes, img->planes_bytes);
    codec_image_free(img);
    return rc;
}

/* ---- Decoding -------------------------------------------------------------------------------- */

int codec_pipeline_plain_size(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                              uint64_t *size)
{
    struct codec_ct_info info;
    if (!pl || !size)
        return -EINVAL;
    int rc = codec_ct_open_info(pl->key, buf, len, &info); /* the meta only: no pixel is read */
    if (rc == 0)
        *size = info.plain_size;
    return rc;
}

int codec_pipeline_head_info(const struct codec_pipeline *pl, const uint8_t *head, size_t len,
                             struct codec_ct_info *info)
{
    if (!pl || !info)
        return -EINVAL;
    return codec_ct_open_head(pl->key, head, len, info);
}

int codec_pipeline_decode(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                          unsigned threads, uint8_t **out, size_t *out_len)
{
    struct codec_ct_view p;
    struct keys_key *fk = NULL;
    uint8_t *pix = NULL, *evp = NULL, *feat = NULL, *file = NULL;
    size_t pix_len = 0, evp_len = 0, feat_len = 0, file_len = 0;
    struct codec_image img = {0};
    struct codec_pixcode_info pi;
    uint8_t digest[CODEC_CT_DIGEST];
    int rc;
    if (!pl || !out || !out_len)
        return -EINVAL;
    if ((rc = codec_ct_parse(buf, len, 1, &p)) != 0)
        return rc;
    if ((rc = codec_ct_file_key(pl->key, &p, &fk)) != 0)
        return rc;
    if ((rc = codec_ct_open_meta(fk, &p)) != 0)
        goto out;
    const struct codec_pixcode_predictor *pred = NULL; /* predictor 0 */
    if (!all_zero(p.info.coder_id, KEYS_ID_BYTES) &&
        (rc = get_coder(pl, p.info.coder_id, &pred)) != 0)
        goto out;
    if (p.ft) { /* checked too, though a decode does not need it */
        rc = codec_ct_open_section(fk, buf, &p, CODEC_CT_SECTION_FEATURES, &feat, &feat_len);
        if (rc != 0)
            goto out;
    }
    if ((rc = codec_ct_open_section(fk, buf, &p, CODEC_CT_SECTION_ENVELOPE, &evp, &evp_len)) ||
        (rc = codec_ct_open_section(fk, buf, &p, CODEC_CT_SECTION_PIXELS, &pix, &pix_len)))
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
    r2 = codec_join_threads(&img, evp + CODEC_CT_DIGEST, evp_len - CODEC_CT_DIGEST, threads, &file,
                            &file_len);
    if (r2 == -ENOMEM) {
        rc = r2;
        goto out;
    }
    if (r2 != 0 || file_len != p.info.plain_size || keys_sha256(file, file_len, digest) != 0 ||
        CRYPTO_memcmp(digest, evp, CODEC_CT_DIGEST) != 0)
        goto out;
    *out = file;
    *out_len = file_len;
    file = NULL;
    rc = 0;
out:
    wipe_free(file, file_len);
    wipe_free(img.planes, img.planes_bytes);
    wipe_free(pix, pix_len);
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
    codec_put_be32(ihdr, im->width);
    codec_put_be32(ihdr + 4, im->height);
    ihdr[8] = (uint8_t)im->bits;
    ihdr[9] = ctype[c];
    memcpy(png, png_sig, 8);
    size_t at = 8;
    at += codec_put_chunk(png + at, "IHDR", ihdr, sizeof(ihdr));
    at += codec_put_chunk(png + at, "IDAT", NULL, zlen);
    at += codec_put_chunk(png + at, "IEND", NULL, 0);
    *out = png;
    *out_len = at;
    png = NULL;
out:
    free(png);
    wipe_free(raw, raw_len);
    return rc;
}

/* Give the image new pixels (channels x height x width samples of its bits, made by the caller)
 * and wipe the old ones; *bytes follows. */
static void replace_pixels(struct nn_ae_image *im, void *px, uint32_t channels, uint32_t width,
                           size_t *bytes)
{
    OPENSSL_cleanse(im->pixels, *bytes);
    free(im->pixels);
    im->pixels = px;
    im->channels = channels;
    im->width = width;
    *bytes = ae_image_bytes(im);
}

/* A 16.16 fixed-point value rounded to a sample in 0..max. */
static uint32_t clamp_sample(int64_t v, uint32_t max)
{
    int64_t r = v <= 0 ? 0 : (v + 32768) >> 16;
    return r >= max ? max : (uint32_t)r;
}

/* DICOM YBR 4:2:2 (codec.h: the channels are Y of the even columns, Y of the odd columns, Cb,
 * Cr, at half width) as RGB at full width, by the full-range ITU-R BT.601 matrix (DICOM's
 * YBR_FULL_422; YBR_PARTIAL_422 shows a little flat) in 16.16 fixed point: integers, so that
 * the preview is the same on every machine. */
static int ybr422_to_rgb(struct nn_ae_image *im, size_t *bytes)
{
    uint32_t half = im->width, width = 2 * half, max = (1u << im->bits) - 1;
    size_t in = (size_t)im->height * half, plane = (size_t)im->height * width;
    int64_t mid = (int64_t)1 << (im->bits - 1);
    uint8_t *px = malloc(3 * plane * (im->bits / 8));
    if (!px)
        return -ENOMEM;
    for (size_t k = 0; k < in; k++) {
        int64_t cb = sample_at(im, 2 * in + k) - mid, cr = sample_at(im, 3 * in + k) - mid;
        for (size_t j = 0; j < 2; j++) {
            int64_t y = (int64_t)sample_at(im, j * in + k) << 16;
            size_t o = 2 * k + j; /* rows are whole pairs: pixel pair k is columns 2k, 2k+1 */
            sample_put(im->bits, px, o, clamp_sample(y + 91881 * cr, max));
            sample_put(im->bits, px, plane + o, clamp_sample(y - 22554 * cb - 46802 * cr, max));
            sample_put(im->bits, px, 2 * plane + o, clamp_sample(y + 116130 * cb, max));
        }
    }
    replace_pixels(im, px, 3, width, bytes);
    return 0;
}

/* Preview of a container made before features of 32-bit samples were of words32_scaled: the
 * autoencoder saw the raw words, and the preview shows what it can of them. */
static int words32_to_grey(struct nn_ae_image *im, int big_endian, size_t *bytes)
{
    uint16_t *px = words32_scaled(im, big_endian);
    if (!px)
        return -ENOMEM;
    replace_pixels(im, px, im->channels / 2, im->width, bytes);
    return 0;
}

/* The envelope's adapter flags of a DICOM image whose channels may not be the file's samples
 * (2 or 4 channels: YBR 4:2:2, 32-bit samples), else 0: only then is the envelope opened. */
static int display_flags(const struct keys_key *fk, const uint8_t *buf,
                         const struct codec_ct_view *p, uint8_t *flags)
{
    *flags = 0;
    if (p->info.format != CODEC_FORMAT_DICOM || (p->info.channels != 2 && p->info.channels != 4))
        return 0;
    uint8_t *evp = NULL;
    size_t evp_len = 0;
    int rc = codec_ct_open_section(fk, buf, p, CODEC_CT_SECTION_ENVELOPE, &evp, &evp_len);
    if (rc == 0)
        *flags = evp_len < CODEC_CT_DIGEST
                     ? 0
                     : env_flags(evp + CODEC_CT_DIGEST, evp_len - CODEC_CT_DIGEST);
    wipe_free(evp, evp_len);
    return rc;
}

/* The decoded features as what the file shows: YBR 4:2:2 as RGB, and the raw words of 32-bit
 * samples (containers made before their features were scaled samples) as scaled samples. */
static int to_display(struct nn_ae_image *im, uint32_t channels, uint8_t flags, size_t *bytes)
{
    if ((flags & CODEC_DICOM_YBR422) && im->channels == 4)
        return ybr422_to_rgb(im, bytes);
    if ((flags & CODEC_DICOM_WORDS32) && im->channels == channels && im->bits == 16)
        return words32_to_grey(im, (flags & CODEC_DICOM_BE16) != 0, bytes);
    return 0;
}

/* Halve the picture (2 x 2 box average, rounded) in place. */
static void halve(struct nn_ae_image *im)
{
    if (im->width == 0 || im->height == 0)
        return;
    uint32_t w = im->width / 2 ? im->width / 2 : 1, h = im->height / 2 ? im->height / 2 : 1;
    size_t plane = (size_t)im->width * im->height, half = (size_t)w * h;
    for (uint32_t ch = 0; ch < im->channels; ch++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint32_t sum = 0, cnt = 0;
                for (uint32_t dy = 0; dy < 2 && 2 * y + dy < im->height; dy++)
                    for (uint32_t dx = 0; dx < 2 && 2 * x + dx < im->width; dx++) {
                        size_t k = ch * plane + (size_t)(2 * y + dy) * im->width + 2 * x + dx;
                        sum += sample_at(im, k);
                        cnt++;
                    }
                assert(cnt > 0); /* 2 x, 2 y are inside the picture */
                sample_put(im->bits, im->pixels, ch * half + (size_t)y * w + x,
                           (sum + cnt / 2) / cnt);
            }
    im->width = w;
    im->height = h;
}

int codec_pipeline_preview(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                           uint8_t **out, size_t *out_len)
{
    return codec_pipeline_preview_fit(pl, buf, len, SIZE_MAX, out, out_len);
}

int codec_pipeline_preview_fit(const struct codec_pipeline *pl, const uint8_t *buf, size_t len,
                               size_t cap, uint8_t **out, size_t *out_len)
{
    struct codec_ct_view p;
    struct keys_key *fk = NULL;
    uint8_t *feat = NULL;
    size_t feat_len = 0;
    struct nn_ae_latent *lat = NULL;
    struct nn_ae_image *im = NULL;
    const struct nn_ae *ae = NULL;
    size_t im_bytes = 0;
    uint8_t flags = 0;
    int rc;
    if (!pl || !out || !out_len)
        return -EINVAL;
    if ((rc = codec_ct_parse(buf, len, 0, &p)) != 0)
        return rc;
    if (!p.ft)
        return -ENODATA;
    if ((rc = codec_ct_file_key(pl->key, &p, &fk)) != 0)
        return rc;
    if ((rc = codec_ct_open_meta(fk, &p)) != 0 || (rc = get_model(pl, p.info.ae_id, &ae)) != 0)
        goto out;
    if ((rc = codec_ct_open_section(fk, buf, &p, CODEC_CT_SECTION_FEATURES, &feat, &feat_len)))
        goto out;
    if ((rc = latent_unpack(feat, feat_len, &lat)) != 0 ||
        (rc = display_flags(fk, buf, &p, &flags)) != 0)
        goto out;
    if ((lat->channels != p.info.channels &&
         lat->channels != feature_channels(p.info.format, flags, p.info.channels)) ||
        lat->height != p.info.height || lat->width != p.info.width || lat->bits != p.info.bits) {
        rc = -EINVAL;
        goto out;
    }
    rc = nn_ae_decode_int(ae, lat, &im);
    if (rc == -ENOENT)
        rc = nn_ae_decode(ae, lat, &im);
    if (rc != 0)
        goto out;
    im_bytes = ae_image_bytes(im);
    if ((rc = to_display(im, p.info.channels, flags, &im_bytes)) != 0)
        goto out;
    while ((rc = write_png(im, out, out_len)) == 0 && *out_len > cap) {
        free(*out);
        *out = NULL;
        if (im->width == 1 && im->height == 1) {
            rc = -EFBIG;
            break;
        }
        halve(im);
    }
out:
    if (im) {
        OPENSSL_cleanse(im->pixels, im_bytes); /* all of it: halving keeps the first part */
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
