// SPDX-License-Identifier: MIT
/*
 * Model files: a float model or a quantised one, written to and read from memory or a file.
 *
 * The format favours a loader that can be proved safe over compactness: every count in it is
 * redundant (the layer list implies every tensor size, and the file says it again), and the
 * loader checks each against the implication, against the hard limits of nn/nn.h and against
 * the bytes left, with overflow-safe arithmetic, before it allocates anything. A CRC-32 catches
 * accidental damage; it is not authentication (the keyring seals models with AES-GCM).
 *
 * The format is specified byte by byte in nn/nn.h (Model files).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "nn/nn_int.h"

uint32_t nn_crc32(const uint8_t *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)crc;
}

#define MF_VERSION 1
#define MF_FLOAT 1
#define MF_INT 2
#define MF_LAYER_BYTES 48
static const uint8_t mf_magic[8] = {0x89, 'I', 'C', 'N', 'N', 0x0d, 0x0a, 0x1a};

/* ---- writing ---- */

struct wbuf {
    uint8_t *p;
    size_t at, cap;
};

static void put(struct wbuf *w, const void *src, size_t n)
{
    if (n)
        memcpy(w->p + w->at, src, n);
    w->at += n;
}

static void put_u32(struct wbuf *w, uint32_t v)
{
    uint8_t b[4];
    nn_put_le32(b, v);
    put(w, b, 4);
}

static void put_f32(struct wbuf *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(w, v);
}

static int arch_ok(const char *arch, size_t *len)
{
    if (!arch)
        return 0;
    size_t n = strlen(arch);
    if (n == 0 || n > NN_ARCH_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)arch[i] < 0x20 || (unsigned char)arch[i] > 0x7e)
            return 0;
    *len = n;
    return 1;
}

static size_t header_size(size_t arch_len, size_t nlayers)
{
    return 20 + arch_len + MF_LAYER_BYTES * nlayers;
}

static void put_header(struct wbuf *w, int kind, const char *arch, size_t alen, uint32_t in_ch,
                       const struct nn_layer_desc *(*layer)(const void *, size_t),
                       const void *model, size_t nl)
{
    uint8_t b[4] = {MF_VERSION, 0, (uint8_t)kind, (uint8_t)alen};
    put(w, mf_magic, 8);
    put(w, b, 4);
    put(w, arch, alen);
    put_u32(w, in_ch);
    put_u32(w, (uint32_t)nl);
    for (size_t i = 0; i < nl; i++) {
        const struct nn_layer_desc *d = layer(model, i);
        uint32_t f[11] = {d->type, d->out_ch, d->kh,     d->kw,    d->stride, d->pad,
                          d->bias, d->factor, d->hidden, d->heads, d->span};
        for (int j = 0; j < 11; j++)
            put_u32(w, f[j]);
        put_f32(w, d->slope);
    }
}

static int finish(struct wbuf *w, uint8_t **buf, size_t *len)
{
    put_u32(w, nn_crc32(w->p, w->at));
    if (w->at != w->cap) {
        free(w->p);
        return -EINVAL;
    }
    *buf = w->p;
    *len = w->at;
    return 0;
}

static const struct nn_layer_desc *float_layer(const void *m, size_t i)
{
    return nn_model_layer(m, i);
}

static const struct nn_layer_desc *int_layer(const void *q, size_t i)
{
    return nn_qmodel_layer(q, i);
}

int nn_model_save(const struct nn_model *m, const char *arch, uint8_t **buf, size_t *len)
{
    size_t alen;
    if (!m || !buf || !len || !m->ready || !arch_ok(arch, &alen))
        return -EINVAL;
    size_t size = m->nparams;
    if (nn_mul(&size, 4) || __builtin_add_overflow(size, header_size(alen, m->nlayers) + 12, &size))
        return -EFBIG;
    if (size > NN_FILE_MAX)
        return -EFBIG;
    struct wbuf w = {malloc(size), 0, size};
    if (!w.p)
        return -ENOMEM;
    put_header(&w, MF_FLOAT, arch, alen, m->in_ch, float_layer, m, m->nlayers);
    uint32_t lo = (uint32_t)m->nparams, hi = (uint32_t)((uint64_t)m->nparams >> 32);
    put_u32(&w, lo);
    put_u32(&w, hi);
    for (size_t i = 0; i < m->nparams; i++)
        put_f32(&w, m->params[i]);
    return finish(&w, buf, len);
}

static size_t qlayer_bytes(const struct nn_qlayer *l)
{
    /* Counts are bounded by the layer limits (each well below 2^40), so this cannot wrap. */
    return 20 + 4 * (l->nws + l->nb + l->nk) + l->nw;
}

int nn_qmodel_save(const struct nn_qmodel *q, const char *arch, uint8_t **buf, size_t *len)
{
    size_t alen;
    if (!q || !buf || !len || !arch_ok(arch, &alen))
        return -EINVAL;
    size_t size = header_size(alen, q->nlayers) + 8;
    for (size_t i = 0; i < q->nlayers; i++)
        if (__builtin_add_overflow(size, qlayer_bytes(&q->layers[i]), &size))
            return -EFBIG;
    if (size > NN_FILE_MAX)
        return -EFBIG;
    struct wbuf w = {malloc(size), 0, size};
    if (!w.p)
        return -ENOMEM;
    put_header(&w, MF_INT, arch, alen, q->in_ch, int_layer, q, q->nlayers);
    put_f32(&w, q->in_scale);
    for (size_t i = 0; i < q->nlayers; i++) {
        const struct nn_qlayer *l = &q->layers[i];
        put_f32(&w, l->out_scale);
        put_u32(&w, (uint32_t)l->nws);
        put_u32(&w, (uint32_t)l->nw);
        put_u32(&w, (uint32_t)l->nb);
        put_u32(&w, (uint32_t)l->nk);
        for (size_t j = 0; j < l->nws; j++)
            put_f32(&w, l->ws[j]);
        for (size_t j = 0; j < l->nb; j++)
            put_u32(&w, (uint32_t)l->b[j]);
        for (size_t j = 0; j < l->nk; j++)
            put_u32(&w, (uint32_t)l->k[j]);
        put(&w, l->w, l->nw);
    }
    return finish(&w, buf, len);
}

/* ---- reading ---- */

struct rbuf {
    const uint8_t *p;
    size_t left;
};

static int take(struct rbuf *r, void *dst, size_t n)
{
    if (n > r->left)
        return -EINVAL;
    if (n)
        memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

static int get_u32(struct rbuf *r, uint32_t *v)
{
    uint8_t b[4];
    int ret = take(r, b, 4);
    if (!ret)
        *v = nn_get_le32(b);
    return ret;
}

static int get_f32(struct rbuf *r, float *f)
{
    uint32_t v;
    int ret = get_u32(r, &v);
    if (!ret)
        memcpy(f, &v, 4);
    return ret;
}

/* n elements of 4 bytes: refused unless the bytes are there (no allocation before). */
static int have(const struct rbuf *r, size_t n, size_t size)
{
    return n <= r->left / size;
}

/*
 * Envelope and header: size limits, checksum, magic, version, kind, architecture, and the layer
 * list rebuilt as an (uninitialised) float model, which checks every hyper-parameter and the
 * residual structure and derives the channel chain.
 */
static int parse_head(const uint8_t *buf, size_t len, int kind, struct rbuf *r,
                      struct nn_model **out, char *arch)
{
    struct nn_model *m = NULL;
    uint8_t b[4];
    uint32_t in_ch, nl;
    size_t ends[NN_MAX_DEPTH + 1];
    int depth = 0, ret;
    if (!buf || !out)
        return -EINVAL;
    if (len > NN_FILE_MAX)
        return -EFBIG;
    if (len < 12 + 1 + 8 + 4)
        return -EINVAL;
    if (nn_crc32(buf, len - 4) != nn_get_le32(buf + len - 4))
        return -EBADMSG;
    r->p = buf;
    r->left = len - 4;
    if (memcmp(buf, mf_magic, 8) != 0)
        return -EINVAL;
    r->p += 8;
    r->left -= 8;
    if ((ret = take(r, b, 4)))
        return ret;
    if (b[0] != MF_VERSION || b[1] != 0 || b[2] != kind || b[3] == 0 || b[3] > NN_ARCH_MAX)
        return -EINVAL;
    char id[NN_ARCH_MAX + 1];
    if ((ret = take(r, id, b[3])))
        return ret;
    id[b[3]] = '\0';
    for (size_t i = 0; i < b[3]; i++)
        if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e)
            return -EINVAL;
    if ((ret = get_u32(r, &in_ch)) || (ret = get_u32(r, &nl)))
        return ret;
    if (in_ch == 0 || nl == 0)
        return -EINVAL;
    if (in_ch > NN_MAX_CHANNELS || nl > NN_MAX_LAYERS)
        return -EFBIG;
    if (!have(r, nl, MF_LAYER_BYTES))
        return -EINVAL;
    if ((ret = nn_model_new(in_ch, &m)))
        return ret;
    for (size_t i = 0; i < nl; i++) {
        uint32_t f[12] = {0};
        for (int j = 0; j < 12; j++)
            get_u32(r, &f[j]); /* bytes checked above */
        struct nn_layer_desc d = {.type = f[0],
                                  .out_ch = f[1],
                                  .kh = f[2],
                                  .kw = f[3],
                                  .stride = f[4],
                                  .pad = f[5],
                                  .bias = f[6],
                                  .factor = f[7],
                                  .hidden = f[8],
                                  .heads = f[9]};
        memcpy(&d.slope, &f[11], 4);
        if ((ret = nn_model_add(m, &d)))
            goto fail;
        ret = -EINVAL;
        if (d.type == NN_RESIDUAL) {
            /* The block holds layers i + 1 .. i + span, inside any enclosing block. */
            if (f[10] == 0 || f[10] > nl - i - 1 || depth >= NN_MAX_DEPTH ||
                (depth && i + 1 + f[10] > ends[depth - 1]))
                goto fail;
            ends[depth++] = i + 1 + f[10];
        } else if (f[10] != 0) {
            goto fail;
        }
        while (depth && ends[depth - 1] == i + 1) {
            if ((ret = nn_model_end(m)))
                goto fail;
            depth--;
        }
    }
    for (size_t i = 0; i < nl; i++)
        if (m->layers[i].d.type == NN_RESIDUAL && m->layers[i].d.span == 0)
            goto fail;
    if (depth)
        goto fail;
    if (arch)
        memcpy(arch, id, (size_t)b[3] + 1);
    *out = m;
    return 0;
fail:
    nn_model_free(m);
    return ret;
}

int nn_model_load(const uint8_t *buf, size_t len, struct nn_model **out, char *arch)
{
    struct nn_model *m = NULL;
    struct rbuf r;
    uint32_t lo, hi;
    char id[NN_ARCH_MAX + 1];
    int ret = parse_head(buf, len, MF_FLOAT, &r, &m, id);
    if (ret)
        return ret;
    size_t implied = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        if (__builtin_add_overflow(implied, m->layers[i].nparams, &implied)) {
            ret = -EFBIG;
            goto out;
        }
    ret = -EINVAL;
    if (get_u32(&r, &lo) || get_u32(&r, &hi))
        goto out;
    uint64_t n = (uint64_t)hi << 32 | lo;
    /* The count must match the layers and the bytes left, exactly. */
    if (n != implied || !have(&r, implied, 4) || r.left != 4 * implied)
        goto out;
    if ((ret = nn_model_init(m, 0)))
        goto out;
    ret = -EINVAL;
    for (size_t i = 0; i < implied; i++) {
        float f = 0;
        get_f32(&r, &f); /* bytes checked above */
        if (!isfinite(f))
            goto out;
        m->params[i] = f;
    }
    if (arch)
        memcpy(arch, id, strlen(id) + 1);
    *out = m;
    m = NULL;
    ret = 0;
out:
    nn_model_free(m);
    return ret;
}

int nn_qmodel_load(const uint8_t *buf, size_t len, struct nn_qmodel **out, char *arch)
{
    struct nn_model *m = NULL;
    struct nn_qmodel *q = NULL;
    struct rbuf r;
    char id[NN_ARCH_MAX + 1];
    int ret = parse_head(buf, len, MF_INT, &r, &m, id);
    if (ret)
        return ret;
    ret = -ENOMEM;
    q = nn_qmodel_alloc(m->nlayers);
    if (!q)
        goto out;
    q->in_ch = m->in_ch;
    ret = -EINVAL;
    if (get_f32(&r, &q->in_scale))
        goto out;
    for (size_t i = 0; i < m->nlayers; i++) {
        struct nn_qlayer *l = &q->layers[i];
        uint32_t c[4];
        size_t nw, nb, nk, nws;
        l->d = m->layers[i].d;
        if ((ret = nn_qlayer_counts(&l->d, &nw, &nb, &nk, &nws)))
            goto out;
        ret = -EINVAL;
        if (get_f32(&r, &l->out_scale) || get_u32(&r, &c[0]) || get_u32(&r, &c[1]) ||
            get_u32(&r, &c[2]) || get_u32(&r, &c[3]))
            goto out;
        if (c[0] != nws || c[1] != nw || c[2] != nb || c[3] != nk)
            goto out;
        /* Bytes before allocation: nws + nb + nk words and nw bytes must all be there. */
        size_t words = nws;
        if (__builtin_add_overflow(words, nb, &words) ||
            __builtin_add_overflow(words, nk, &words) || !have(&r, words, 4) ||
            nw > r.left - 4 * words)
            goto out;
        ret = -ENOMEM;
        l->ws = malloc(nws * sizeof(float) + 1);
        l->b = malloc(nb * sizeof(int32_t) + 1);
        l->k = malloc(nk * sizeof(int32_t) + 1);
        l->w = malloc(nw + 1);
        if (!l->ws || !l->b || !l->k || !l->w)
            goto out;
        l->nws = nws;
        l->nw = nw;
        l->nb = nb;
        l->nk = nk;
        for (size_t j = 0; j < nws; j++)
            get_f32(&r, &l->ws[j]);
        for (size_t j = 0; j < nb; j++) {
            uint32_t v = 0;
            get_u32(&r, &v); /* bytes checked above, as below */
            l->b[j] = (int32_t)v;
        }
        for (size_t j = 0; j < nk; j++) {
            uint32_t v = 0;
            get_u32(&r, &v);
            l->k[j] = (int32_t)v;
        }
        take(&r, l->w, nw);
    }
    ret = -EINVAL;
    if (r.left != 0)
        goto out;
    if ((ret = nn_qmodel_finish(q)))
        goto out;
    if (arch)
        memcpy(arch, id, strlen(id) + 1);
    *out = q;
    q = NULL;
    ret = 0;
out:
    nn_qmodel_free(q);
    nn_model_free(m);
    return ret;
}

/* ---- files ---- */

int nn_file_write(const char *path, const uint8_t *buf, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    int fd = -1, ret = 0;
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", 8);
    fd = mkstemp(tmp);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    for (size_t at = 0; at < len;) {
        ssize_t n = write(fd, buf + at, len - at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n < 0 ? -errno : -EIO;
            goto out;
        }
        at += (size_t)n;
    }
    if (fsync(fd) != 0) {
        ret = -errno;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        ret = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        ret = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (ret)
        unlink(tmp);
    free(tmp);
    return ret;
}

int nn_file_read(const char *path, size_t max, uint8_t **buf, size_t *len)
{
    struct stat st;
    uint8_t *p = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        ret = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        ret = -EFBIG;
        goto out;
    }
    size_t size = (size_t)st.st_size, at = 0;
    p = malloc(size ? size : 1);
    if (!p) {
        ret = -ENOMEM;
        goto out;
    }
    while (at < size) {
        ssize_t n = read(fd, p + at, size - at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            goto out;
        }
        if (n == 0)
            break; /* shrank meanwhile: parse what is there */
        at += (size_t)n;
    }
    *buf = p;
    *len = at;
    p = NULL;
out:
    free(p);
    close(fd);
    return ret;
}

int nn_model_save_file(const struct nn_model *m, const char *arch, const char *path)
{
    uint8_t *buf = NULL;
    size_t len;
    if (!path)
        return -EINVAL;
    int ret = nn_model_save(m, arch, &buf, &len);
    if (!ret)
        ret = nn_file_write(path, buf, len);
    free(buf);
    return ret;
}

int nn_qmodel_save_file(const struct nn_qmodel *q, const char *arch, const char *path)
{
    uint8_t *buf = NULL;
    size_t len;
    if (!path)
        return -EINVAL;
    int ret = nn_qmodel_save(q, arch, &buf, &len);
    if (!ret)
        ret = nn_file_write(path, buf, len);
    free(buf);
    return ret;
}

int nn_model_load_file(const char *path, struct nn_model **out, char *arch)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!path)
        return -EINVAL;
    int ret = nn_file_read(path, NN_FILE_MAX, &buf, &len);
    if (!ret)
        ret = nn_model_load(buf, len, out, arch);
    free(buf);
    return ret;
}

int nn_qmodel_load_file(const char *path, struct nn_qmodel **out, char *arch)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!path)
        return -EINVAL;
    int ret = nn_file_read(path, NN_FILE_MAX, &buf, &len);
    if (!ret)
        ret = nn_qmodel_load(buf, len, out, arch);
    free(buf);
    return ret;
}
