// SPDX-License-Identifier: MIT
/*
 * The two attention layers: squeeze-and-excitation channel attention and multi-head
 * self-attention over the token grid (every pixel a token of C channels).
 *
 * Self-attention works on the NCHW layout as it is: one image is a C x T matrix (T = H * W),
 * so the projections are single sgemm calls with no transposition of the activations, and the
 * per-head products use BLAS's transpose flags. A training context keeps Q, K, V, the head
 * outputs and every attention matrix (heads * T^2 floats per image) for backward, which bounds
 * the token count (NN_MAX_TOKENS); inference keeps one image's and one head's worth.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"

static int attn_fields_clear(const struct nn_layer_desc *d)
{
    return d->out_ch == 0 && d->kh == 0 && d->kw == 0 && d->stride == 0 && d->pad == 0 &&
           d->bias == 0 && d->factor == 0 && d->slope == 0.0f;
}

static int same_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    (void)d;
    *os = *is;
    return 0;
}

static float sigmoidf(float z)
{
    return z >= 0.0f ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z));
}

/* Squeeze-and-excitation: s = mean over pixels, g = sigmoid(W2 relu(W1 s + b1) + b2),
 * y = x * g per channel. */

static int se_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    if (!attn_fields_clear(d) || d->heads || d->hidden == 0)
        return -EINVAL;
    if (d->hidden > NN_MAX_CHANNELS)
        return -EFBIG;
    return 0;
}

static size_t se_nparams(const struct nn_layer_desc *d)
{
    return 2 * (size_t)d->hidden * d->in_ch + d->hidden + d->in_ch;
}

static void se_init(const struct nn_layer_desc *d, float *w, struct nn_rng *r)
{
    size_t C = d->in_ch, Hd = d->hidden;
    nn_init_uniform(w, Hd * C, 6.0, C, r);
    nn_init_uniform(w + Hd * C + Hd, C * Hd, 3.0, Hd, r);
}

static int se_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                  const struct nn_shape *os, int train, size_t *aux, size_t *scratch)
{
    (void)os;
    size_t per = 2 * (size_t)is->c + d->hidden;
    *aux = train ? per * is->n : per;
    *scratch = train ? per : 0;
    return 0;
}

static void se_forward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    uint32_t C = io->is.c, Hd = d->hidden;
    size_t P = nn_shape_plane(&io->is), per = 2 * (size_t)C + Hd;
    const float *W1 = io->w, *b1 = W1 + (size_t)Hd * C, *W2 = b1 + Hd, *b2 = W2 + (size_t)C * Hd;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *x = io->x + (size_t)n * C * P;
        float *y = io->y + (size_t)n * C * P;
        float *s = io->aux + (io->train ? n * per : 0), *z1 = s + C, *g = z1 + Hd;
        for (uint32_t c = 0; c < C; c++) {
            double acc = 0;
            for (size_t p = 0; p < P; p++)
                acc += x[c * P + p];
            s[c] = (float)(acc / (double)P);
        }
        for (uint32_t j = 0; j < Hd; j++) {
            float acc = b1[j];
            for (uint32_t c = 0; c < C; c++)
                acc += W1[(size_t)j * C + c] * s[c];
            z1[j] = acc;
        }
        for (uint32_t c = 0; c < C; c++) {
            float acc = b2[c];
            for (uint32_t j = 0; j < Hd; j++)
                acc += W2[(size_t)c * Hd + j] * (z1[j] > 0.0f ? z1[j] : 0.0f);
            g[c] = sigmoidf(acc);
        }
        for (uint32_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++)
                y[c * P + p] = x[c * P + p] * g[c];
    }
}

static void se_backward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    uint32_t C = io->is.c, Hd = d->hidden;
    size_t P = nn_shape_plane(&io->is), per = 2 * (size_t)C + Hd;
    const float *W1 = io->w, *W2 = W1 + (size_t)Hd * C + Hd;
    float *dW1 = io->dw, *db1 = dW1 + (size_t)Hd * C, *dW2 = db1 + Hd, *db2 = dW2 + (size_t)C * Hd;
    float *dz2 = io->scratch, *dz1 = dz2 + C, *ds = dz1 + Hd;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *x = io->x + (size_t)n * C * P, *dy = io->dy + (size_t)n * C * P;
        const float *s = io->aux + n * per, *z1 = s + C, *g = z1 + Hd;
        for (uint32_t c = 0; c < C; c++) {
            double acc = 0;
            for (size_t p = 0; p < P; p++)
                acc += (double)dy[c * P + p] * x[c * P + p];
            dz2[c] = (float)acc * g[c] * (1.0f - g[c]);
            db2[c] += dz2[c];
            for (uint32_t j = 0; j < Hd; j++)
                dW2[(size_t)c * Hd + j] += dz2[c] * (z1[j] > 0.0f ? z1[j] : 0.0f);
        }
        for (uint32_t j = 0; j < Hd; j++) {
            float acc = 0.0f;
            if (z1[j] > 0.0f)
                for (uint32_t c = 0; c < C; c++)
                    acc += W2[(size_t)c * Hd + j] * dz2[c];
            dz1[j] = acc;
            db1[j] += acc;
            for (uint32_t c = 0; c < C; c++)
                dW1[(size_t)j * C + c] += acc * s[c];
        }
        if (!io->dx)
            continue;
        for (uint32_t c = 0; c < C; c++) {
            float acc = 0.0f;
            for (uint32_t j = 0; j < Hd; j++)
                acc += W1[(size_t)j * C + c] * dz1[j];
            ds[c] = acc / (float)P;
        }
        float *dx = io->dx + (size_t)n * C * P;
        for (uint32_t c = 0; c < C; c++)
            for (size_t p = 0; p < P; p++)
                dx[c * P + p] = dy[c * P + p] * g[c] + ds[c];
    }
}

const struct nn_op nn_op_se = {
    .check = se_check,
    .shape = same_shape,
    .nparams = se_nparams,
    .init = se_init,
    .mem = se_mem,
    .forward = se_forward,
    .backward = se_backward,
};

/* Multi-head self-attention. Per image: X is C x T; Q = Wq X + bq (likewise K, V);
 * head h uses rows [h d, (h + 1) d) of each. */

static int mhsa_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    (void)out_ch;
    if (!attn_fields_clear(d) || d->hidden || d->heads == 0 || d->in_ch % d->heads)
        return -EINVAL;
    return 0;
}

static int mhsa_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    (void)d;
    if (nn_shape_plane(is) > NN_MAX_TOKENS)
        return -EFBIG;
    *os = *is;
    return 0;
}

static size_t mhsa_nparams(const struct nn_layer_desc *d)
{
    return 4 * ((size_t)d->in_ch * d->in_ch + d->in_ch);
}

static void mhsa_init(const struct nn_layer_desc *d, float *w, struct nn_rng *r)
{
    size_t C = d->in_ch;
    for (int i = 0; i < 4; i++)
        nn_init_uniform(w + (size_t)i * (C * C + C), C * C, 3.0, C, r);
}

static int mhsa_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                    const struct nn_shape *os, int train, size_t *aux, size_t *scratch)
{
    (void)os;
    size_t T = nn_shape_plane(is), CT = (size_t)is->c * T, TT = T * T;
    size_t per = 4 * CT + (size_t)d->heads * TT;
    if (train) {
        if (nn_mul(&per, is->n))
            return -EFBIG;
        *aux = per;
        *scratch = 4 * CT + TT;
    } else {
        *aux = 4 * CT + TT;
        *scratch = 0;
    }
    return 0;
}

/* out = W in + b for one image (C x T). */
static void project(const float *w, const float *in, float *out, int C, int T)
{
    const float *b = w + (size_t)C * (size_t)C;
    for (int c = 0; c < C; c++)
        for (int t = 0; t < T; t++)
            out[(size_t)c * (size_t)T + (size_t)t] = b[c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, T, C, 1.0f, w, C, in, T, 1.0f, out,
                T);
}

static void softmax_rows(float *s, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float *row = s + r * cols, mx = row[0];
        for (size_t i = 1; i < cols; i++)
            mx = row[i] > mx ? row[i] : mx;
        double sum = 0;
        for (size_t i = 0; i < cols; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        float inv = (float)(1.0 / sum);
        for (size_t i = 0; i < cols; i++)
            row[i] *= inv;
    }
}

static void mhsa_forward(const struct nn_io *io)
{
    int C = (int)io->is.c, T = (int)nn_shape_plane(&io->is), H = (int)io->d->heads, D = C / H;
    size_t CT = (size_t)C * (size_t)T, TT = (size_t)T * (size_t)T, wsz = (size_t)C * C + C;
    size_t per = io->train ? 4 * CT + (size_t)H * TT : 0;
    float scale = 1.0f / sqrtf((float)D);
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *x = io->x + n * CT;
        float *q = io->aux + n * per, *k = q + CT, *v = k + CT, *o = v + CT, *p0 = o + CT;
        project(io->w, x, q, C, T);
        project(io->w + wsz, x, k, C, T);
        project(io->w + 2 * wsz, x, v, C, T);
        for (int h = 0; h < H; h++) {
            size_t off = (size_t)h * (size_t)D * (size_t)T;
            float *p = io->train ? p0 + (size_t)h * TT : p0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, T, D, scale, q + off, T,
                        k + off, T, 0.0f, p, T);
            softmax_rows(p, (size_t)T, (size_t)T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, T, T, 1.0f, v + off, T, p, T,
                        0.0f, o + off, T);
        }
        project(io->w + 3 * wsz, o, io->y + n * CT, C, T);
    }
}

static void row_sums_add(const float *m, float *b, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++)
            s += m[(size_t)r * (size_t)cols + (size_t)c];
        b[r] += (float)s;
    }
}

static void mhsa_backward(const struct nn_io *io)
{
    int C = (int)io->is.c, T = (int)nn_shape_plane(&io->is), H = (int)io->d->heads, D = C / H;
    size_t CT = (size_t)C * (size_t)T, TT = (size_t)T * (size_t)T, wsz = (size_t)C * C + C;
    size_t per = 4 * CT + (size_t)H * TT;
    float scale = 1.0f / sqrtf((float)D);
    float *dq = io->scratch, *dk = dq + CT, *dv = dk + CT, *dout = dv + CT, *dp = dout + CT;
    const float *wo = io->w + 3 * wsz;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *x = io->x + n * CT, *dy = io->dy + n * CT;
        const float *q = io->aux + n * per, *k = q + CT, *v = k + CT, *o = v + CT, *p0 = o + CT;
        /* Output projection. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, T, 1.0f, dy, T, o, T, 1.0f,
                    io->dw + 3 * wsz, C);
        row_sums_add(dy, io->dw + 3 * wsz + (size_t)C * C, C, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, T, C, 1.0f, wo, C, dy, T, 0.0f,
                    dout, T);
        for (int h = 0; h < H; h++) {
            size_t off = (size_t)h * (size_t)D * (size_t)T;
            const float *p = p0 + (size_t)h * TT;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, T, T, 1.0f, dout + off, T, p,
                        T, 0.0f, dv + off, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, T, D, 1.0f, dout + off, T,
                        v + off, T, 0.0f, dp, T);
            /* Softmax backward, row by row: dS = P * (dP - sum(P * dP)). */
            for (int t = 0; t < T; t++) {
                float *dpr = dp + (size_t)t * (size_t)T;
                const float *pr = p + (size_t)t * (size_t)T;
                double dot = 0;
                for (int s = 0; s < T; s++)
                    dot += (double)pr[s] * dpr[s];
                for (int s = 0; s < T; s++)
                    dpr[s] = pr[s] * (dpr[s] - (float)dot);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, D, T, T, scale, k + off, T, dp, T,
                        0.0f, dq + off, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, T, T, scale, q + off, T, dp,
                        T, 0.0f, dk + off, T);
        }
        const float *dproj[3] = {dq, dk, dv};
        for (int i = 0; i < 3; i++) {
            float *dw = io->dw + (size_t)i * wsz;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, T, 1.0f, dproj[i], T, x, T,
                        1.0f, dw, C);
            row_sums_add(dproj[i], dw + (size_t)C * C, C, T);
            if (io->dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, T, C, 1.0f,
                            io->w + (size_t)i * wsz, C, dproj[i], T, i ? 1.0f : 0.0f,
                            io->dx + n * CT, T);
        }
    }
}

const struct nn_op nn_op_mhsa = {
    .check = mhsa_check,
    .shape = mhsa_shape,
    .nparams = mhsa_nparams,
    .init = mhsa_init,
    .mem = mhsa_mem,
    .forward = mhsa_forward,
    .backward = mhsa_backward,
};
