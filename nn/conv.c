// SPDX-License-Identifier: MIT
/*
 * Convolution and transposed convolution (float), by im2col and cblas_sgemm, one image of the
 * batch at a time.
 *
 * im2col spends memory and a copy to turn a convolution into a large matrix product, which
 * OpenBLAS runs near peak; a direct loop would need no scratch but would be several times slower
 * for the 3x3 kernels we use. The column matrix is built for a band of output rows at a time,
 * sized to NN_COL_BUDGET floats, so scratch stays a few MiB at any image size while each sgemm
 * still has thousands of columns. A 1x1 convolution with stride 1 and no padding skips the copy
 * (the image already is its column matrix). Transposed convolution is the adjoint: a product
 * into columns, then col2im. In a NN_CTX_FAST context, where the CPU has FMA, the forward pass of
 * a convolution that is not 1x1 skips the column matrix altogether (fconv.c): with few channels,
 * building it and letting OpenBLAS pack it again cost as much as the multiply-adds.
 */
#include <cblas.h>
#include <errno.h>
#include <string.h>
#ifdef __SSE2__
#include <immintrin.h>
#endif

#include "nn/nn_int.h"

uint32_t nn_band_rows(const struct nn_geom *g)
{
    size_t per_row = (size_t)g->c * g->kh * g->kw * g->ow;
    size_t rows = per_row ? NN_COL_BUDGET / per_row : g->oh;
    if (rows < 1)
        rows = 1;
    return rows < g->oh ? (uint32_t)rows : g->oh;
}

/*
 * Output columns [*lo, *hi) of a kernel tap kj read inside the row: ix = ox * stride + kj - pad
 * in [0, w). Outside it they read padding (im2col writes zeros, col2im drops them). Doing the
 * bounds once per row instead of per pixel leaves a plain copy (stride 1) or a strided gather
 * in the inner loop, which is most of im2col's time.
 */
static void tap_range(const struct nn_geom *g, uint32_t kj, uint32_t *lo, uint32_t *hi)
{
    long long s = g->stride, off = (long long)kj - g->pad;
    long long l = off >= 0 ? 0 : (-off + s - 1) / s; /* first ox with ix >= 0 */
    long long h = (long long)g->w - 1 - off < 0 ? 0 : ((long long)g->w - 1 - off) / s + 1;
    if (h > g->ow)
        h = g->ow;
    if (l > h)
        l = h;
    *lo = (uint32_t)l;
    *hi = (uint32_t)h;
}

void nn_im2col(const struct nn_geom *g, const float *x, uint32_t oy0, uint32_t oy1, float *col)
{
    size_t cols = (size_t)(oy1 - oy0) * g->ow;
    for (uint32_t kj = 0; kj < g->kw; kj++) {
        uint32_t lo, hi;
        tap_range(g, kj, &lo, &hi);
        long long off = (long long)kj - g->pad;
        for (uint32_t ci = 0; ci < g->c; ci++)
            for (uint32_t ki = 0; ki < g->kh; ki++) {
                float *row = col + (((size_t)ci * g->kh + ki) * g->kw + kj) * cols;
                for (uint32_t oy = oy0; oy < oy1; oy++) {
                    long long iy = (long long)oy * g->stride + ki - g->pad;
                    float *r = row + (size_t)(oy - oy0) * g->ow;
                    if (iy < 0 || iy >= g->h) {
                        memset(r, 0, (size_t)g->ow * sizeof(float));
                        continue;
                    }
                    const float *xr = x + ((size_t)ci * g->h + (size_t)iy) * g->w;
                    memset(r, 0, (size_t)lo * sizeof(float));
                    if (g->stride == 1) {
                        memcpy(r + lo, xr + lo + off, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        const float *src = xr + (long long)lo * g->stride + off;
                        for (uint32_t ox = lo; ox < hi; ox++, src += g->stride)
                            r[ox] = *src;
                    }
                    memset(r + hi, 0, (size_t)(g->ow - hi) * sizeof(float));
                }
            }
    }
}

/*
 * A strided convolution's input split by column phase: row iy of channel c becomes `stride`
 * rows, phase px holding x[c][iy][stride * u + px]. Each row of the column matrix is then a run
 * of one phase row (im2col_phased), a copy instead of a strided gather: the gather is done once
 * per input pixel here rather than once per kernel tap that reads it (kh kw / stride^2 times).
 */
static uint32_t phase_width(const struct nn_geom *g)
{
    return (g->w + g->stride - 1) / g->stride;
}

static void split_phases(const struct nn_geom *g, const float *x, float *xs)
{
    uint32_t s = g->stride, wu = phase_width(g);
    for (size_t r = 0; r < (size_t)g->c * g->h; r++) {
        const float *src = x + r * g->w;
        float *dst = xs + r * s * wu;
        uint32_t u0 = 0;
#ifdef __SSE2__
        /* Strides 2 and 4 by shuffles, four columns of each phase a step. */
        if (s == 2)
            for (; 2 * (u0 + 4) <= g->w; u0 += 4) {
                __m128 a = _mm_loadu_ps(src + 2 * u0), b = _mm_loadu_ps(src + 2 * u0 + 4);
                _mm_storeu_ps(dst + u0, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
                _mm_storeu_ps(dst + wu + u0, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
            }
        if (s == 4)
            for (; 4 * (u0 + 4) <= g->w; u0 += 4) {
                __m128 a = _mm_loadu_ps(src + 4 * u0), b = _mm_loadu_ps(src + 4 * u0 + 4);
                __m128 c = _mm_loadu_ps(src + 4 * u0 + 8), d = _mm_loadu_ps(src + 4 * u0 + 12);
                _MM_TRANSPOSE4_PS(a, b, c, d);
                _mm_storeu_ps(dst + u0, a);
                _mm_storeu_ps(dst + wu + u0, b);
                _mm_storeu_ps(dst + 2 * (size_t)wu + u0, c);
                _mm_storeu_ps(dst + 3 * (size_t)wu + u0, d);
            }
#endif
        for (uint32_t px = 0; px < s; px++)
            for (uint32_t u = u0, ix = s * u0 + px; ix < g->w; u++, ix += s)
                dst[(size_t)px * wu + u] = src[ix];
    }
}

/* nn_im2col from the split input: the same column matrix, value for value. */
static void im2col_phased(const struct nn_geom *g, const float *xs, uint32_t oy0, uint32_t oy1,
                          float *col)
{
    size_t cols = (size_t)(oy1 - oy0) * g->ow;
    uint32_t s = g->stride, wu = phase_width(g);
    for (uint32_t kj = 0; kj < g->kw; kj++) {
        uint32_t lo, hi;
        tap_range(g, kj, &lo, &hi);
        /* Column ox reads ix = s ox + kj - pad: phase px, position ox + du. */
        long long off = (long long)kj - g->pad, px = ((off % s) + s) % s, du = (off - px) / s;
        for (uint32_t ci = 0; ci < g->c; ci++)
            for (uint32_t ki = 0; ki < g->kh; ki++) {
                float *row = col + (((size_t)ci * g->kh + ki) * g->kw + kj) * cols;
                for (uint32_t oy = oy0; oy < oy1; oy++) {
                    long long iy = (long long)oy * s + ki - g->pad;
                    float *r = row + (size_t)(oy - oy0) * g->ow;
                    if (iy < 0 || iy >= g->h) {
                        memset(r, 0, (size_t)g->ow * sizeof(float));
                        continue;
                    }
                    const float *src = xs + (((size_t)ci * g->h + (size_t)iy) * s + px) * wu + du;
                    memset(r, 0, (size_t)lo * sizeof(float));
                    memcpy(r + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    memset(r + hi, 0, (size_t)(g->ow - hi) * sizeof(float));
                }
            }
    }
}

void nn_col2im(const struct nn_geom *g, const float *col, uint32_t oy0, uint32_t oy1, float *x)
{
    size_t cols = (size_t)(oy1 - oy0) * g->ow;
    for (uint32_t ci = 0; ci < g->c; ci++)
        for (uint32_t ki = 0; ki < g->kh; ki++)
            for (uint32_t kj = 0; kj < g->kw; kj++) {
                uint32_t lo, hi;
                tap_range(g, kj, &lo, &hi);
                long long off = (long long)kj - g->pad;
                const float *row = col + (((size_t)ci * g->kh + ki) * g->kw + kj) * cols;
                for (uint32_t oy = oy0; oy < oy1; oy++) {
                    long long iy = (long long)oy * g->stride + ki - g->pad;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    const float *r = row + (size_t)(oy - oy0) * g->ow;
                    float *dst = x + ((size_t)ci * g->h + (size_t)iy) * g->w +
                                 (long long)lo * g->stride + off;
                    if (g->stride == 1) {
                        for (uint32_t ox = lo; ox < hi; ox++)
                            dst[ox - lo] += r[ox];
                    } else {
                        for (uint32_t ox = lo; ox < hi; ox++, dst += g->stride)
                            *dst += r[ox];
                    }
                }
            }
}

static int conv_check(const struct nn_layer_desc *d, uint32_t *out_ch)
{
    if (d->out_ch == 0 || d->kh == 0 || d->kw == 0 || d->stride == 0 || d->bias > 1 || d->factor ||
        d->hidden || d->heads || d->slope != 0.0f)
        return -EINVAL;
    if (d->out_ch > NN_MAX_CHANNELS || d->kh > NN_MAX_KERNEL || d->kw > NN_MAX_KERNEL ||
        d->stride > NN_MAX_KERNEL || d->pad >= NN_MAX_KERNEL)
        return -EFBIG;
    *out_ch = d->out_ch;
    return 0;
}

static int conv_shape(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os)
{
    long long ph = (long long)is->h + 2LL * d->pad - d->kh;
    long long pw = (long long)is->w + 2LL * d->pad - d->kw;
    if (ph < 0 || pw < 0)
        return -EINVAL;
    os->n = is->n;
    os->c = d->out_ch;
    os->h = (uint32_t)(ph / d->stride + 1);
    os->w = (uint32_t)(pw / d->stride + 1);
    return 0;
}

static size_t conv_nparams(const struct nn_layer_desc *d)
{
    return (size_t)d->out_ch * d->in_ch * d->kh * d->kw + (d->bias ? d->out_ch : 0);
}

static void conv_init(const struct nn_layer_desc *d, float *w, struct nn_rng *r)
{
    size_t fan_in = (size_t)d->in_ch * d->kh * d->kw;
    nn_init_uniform(w, (size_t)d->out_ch * fan_in, 6.0, fan_in, r);
}

static int conv_is_1x1(const struct nn_layer_desc *d)
{
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* Geometry of a convolution: windows over the input. */
static struct nn_geom conv_geom(const struct nn_layer_desc *d, const struct nn_shape *is,
                                const struct nn_shape *os)
{
    return (struct nn_geom){is->c, is->h, is->w, d->kh, d->kw, d->stride, d->pad, os->h, os->w};
}

/* Geometry of a transposed convolution: windows over the output, one per input pixel. */
static struct nn_geom tconv_geom(const struct nn_layer_desc *d, const struct nn_shape *is,
                                 const struct nn_shape *os)
{
    return (struct nn_geom){os->c, os->h, os->w, d->kh, d->kw, d->stride, d->pad, is->h, is->w};
}

static int conv_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                    const struct nn_shape *os, int train, size_t *aux, size_t *scratch)
{
    struct nn_geom g = conv_geom(d, is, os);
    size_t s = (size_t)g.c * g.kh * g.kw * g.ow * nn_band_rows(&g);
    *aux = 0;
    *scratch = conv_is_1x1(d) ? 0 : train ? 2 * s : s;
    /* Forward of a strided convolution: the input split by phase after the column band. */
    if (!conv_is_1x1(d) && d->stride > 1) {
        size_t split = (size_t)g.c * g.h * d->stride * phase_width(&g);
        if (__builtin_add_overflow(s, split, &split))
            return -EFBIG;
        *scratch = *scratch > split ? *scratch : split;
    }
    return 0;
}

/* Bias, then the rectifier fused by an inference context, in one pass over the output. */
static void finish(float *y, const float *b, uint32_t c, size_t plane, const struct nn_io *io)
{
    for (uint32_t i = 0; i < c; i++) {
        float *yc = y + i * plane, bi = b ? b[i] : 0.0f, slope = io->slope;
        if (b && io->act)
            for (size_t p = 0; p < plane; p++) {
                float v = yc[p] + bi;
                yc[p] = v > 0.0f ? v : slope * v;
            }
        else if (b)
            for (size_t p = 0; p < plane; p++)
                yc[p] += bi;
        else if (io->act)
            for (size_t p = 0; p < plane; p++)
                yc[p] = yc[p] > 0.0f ? yc[p] : slope * yc[p];
    }
}

static void sum_bias(const float *dy, float *db, uint32_t c, size_t plane)
{
    for (uint32_t i = 0; i < c; i++) {
        double s = 0;
        for (size_t p = 0; p < plane; p++)
            s += dy[i * plane + p];
        db[i] += (float)s;
    }
}

int nn_conv_fast_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                     const struct nn_shape *os, size_t *scratch)
{
    *scratch = 0;
    if (d->type != NN_CONV2D || conv_is_1x1(d) || nn_fkern_best() == NN_FK_NONE)
        return 0;
    struct nn_geom g = conv_geom(d, is, os);
    *scratch = nn_fconv_scratch(&g);
    return *scratch ? 0 : -EFBIG;
}

static void conv_forward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    struct nn_geom g = conv_geom(d, &io->is, &io->os);
    int K = (int)(g.c * g.kh * g.kw), P = (int)(g.oh * g.ow), Co = (int)io->os.c;
    size_t in_sz = (size_t)g.c * g.h * g.w, out_sz = (size_t)Co * (size_t)P;
    const float *b = d->bias ? io->w + (size_t)Co * (size_t)K : NULL;
    uint32_t band = nn_band_rows(&g);
    int split = g.stride > 1;
    float *xs = io->scratch + (size_t)K * g.ow * band;
    enum nn_fkern fk = io->fast && !conv_is_1x1(d) ? nn_fkern_best() : NN_FK_NONE;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *xn = io->x + n * in_sz;
        float *yn = io->y + n * out_sz;
        if (fk != NN_FK_NONE) {
            nn_fconv(fk, &g, (uint32_t)Co, io->w, b, io->act, io->slope, xn, yn, io->scratch);
            continue;
        }
        if (conv_is_1x1(d)) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, P, K, 1.0f, io->w, K, xn, P,
                        0.0f, yn, P);
        } else {
            if (split)
                split_phases(&g, xn, xs);
            for (uint32_t y0 = 0; y0 < g.oh; y0 += band) {
                uint32_t y1 = y0 + band < g.oh ? y0 + band : g.oh;
                int cols = (int)((y1 - y0) * g.ow);
                if (split)
                    im2col_phased(&g, xs, y0, y1, io->scratch);
                else
                    nn_im2col(&g, xn, y0, y1, io->scratch);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, cols, K, 1.0f, io->w, K,
                            io->scratch, cols, 0.0f, yn + (size_t)y0 * g.ow, P);
            }
        }
        finish(yn, b, io->os.c, (size_t)P, io);
    }
}

static void conv_backward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    struct nn_geom g = conv_geom(d, &io->is, &io->os);
    int K = (int)(g.c * g.kh * g.kw), P = (int)(g.oh * g.ow), Co = (int)io->os.c;
    size_t in_sz = (size_t)g.c * g.h * g.w, out_sz = (size_t)Co * (size_t)P;
    uint32_t band = nn_band_rows(&g);
    float *col = io->scratch, *dcol = io->scratch + (size_t)K * g.ow * band;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *xn = io->x + n * in_sz, *dyn = io->dy + n * out_sz;
        float *dxn = io->dx ? io->dx + n * in_sz : NULL;
        if (d->bias)
            sum_bias(dyn, io->dw + (size_t)Co * (size_t)K, io->os.c, (size_t)P);
        if (conv_is_1x1(d)) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, P, 1.0f, dyn, P, xn, P,
                        1.0f, io->dw, K);
            if (dxn)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, Co, 1.0f, io->w, K, dyn,
                            P, 0.0f, dxn, P);
            continue;
        }
        if (dxn)
            memset(dxn, 0, in_sz * sizeof(float));
        for (uint32_t y0 = 0; y0 < g.oh; y0 += band) {
            uint32_t y1 = y0 + band < g.oh ? y0 + band : g.oh;
            int cols = (int)((y1 - y0) * g.ow);
            const float *dyb = dyn + (size_t)y0 * g.ow;
            nn_im2col(&g, xn, y0, y1, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, cols, 1.0f, dyb, P, col,
                        cols, 1.0f, io->dw, K);
            if (!dxn)
                continue;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, cols, Co, 1.0f, io->w, K, dyb,
                        P, 0.0f, dcol, cols);
            nn_col2im(&g, dcol, y0, y1, dxn);
        }
    }
}

const struct nn_op nn_op_conv2d = {
    .check = conv_check,
    .shape = conv_shape,
    .nparams = conv_nparams,
    .init = conv_init,
    .mem = conv_mem,
    .forward = conv_forward,
    .backward = conv_backward,
};

/* Transposed convolution: the input grid is the window grid of the adjoint convolution. */

static int tconv_shape(const struct nn_layer_desc *d, const struct nn_shape *is,
                       struct nn_shape *os)
{
    long long oh = ((long long)is->h - 1) * d->stride - 2LL * d->pad + d->kh;
    long long ow = ((long long)is->w - 1) * d->stride - 2LL * d->pad + d->kw;
    if (oh <= 0 || ow <= 0)
        return -EINVAL;
    if (oh > NN_MAX_DIM || ow > NN_MAX_DIM)
        return -EFBIG;
    os->n = is->n;
    os->c = d->out_ch;
    os->h = (uint32_t)oh;
    os->w = (uint32_t)ow;
    return 0;
}

static void tconv_init(const struct nn_layer_desc *d, float *w, struct nn_rng *r)
{
    /* Each output pixel sees about in_ch * kh * kw / stride^2 weights. */
    size_t fan_in = (size_t)d->in_ch * d->kh * d->kw / ((size_t)d->stride * d->stride);
    nn_init_uniform(w, (size_t)d->out_ch * d->in_ch * d->kh * d->kw, 6.0, fan_in, r);
}

static int tconv_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                     const struct nn_shape *os, int train, size_t *aux, size_t *scratch)
{
    (void)train;
    struct nn_geom g = tconv_geom(d, is, os);
    *aux = 0;
    *scratch = (size_t)g.c * g.kh * g.kw * g.ow * nn_band_rows(&g);
    return 0;
}

static void tconv_forward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    struct nn_geom g = tconv_geom(d, &io->is, &io->os);
    int Kc = (int)(g.c * g.kh * g.kw), P = (int)(g.oh * g.ow), C = (int)io->is.c;
    size_t in_sz = (size_t)C * (size_t)P, out_sz = (size_t)g.c * g.h * g.w;
    const float *b = d->bias ? io->w + (size_t)C * (size_t)Kc : NULL;
    uint32_t band = nn_band_rows(&g);
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *xn = io->x + n * in_sz;
        float *yn = io->y + n * out_sz;
        memset(yn, 0, out_sz * sizeof(float));
        for (uint32_t y0 = 0; y0 < g.oh; y0 += band) {
            uint32_t y1 = y0 + band < g.oh ? y0 + band : g.oh;
            int cols = (int)((y1 - y0) * g.ow);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Kc, cols, C, 1.0f, io->w, Kc,
                        xn + (size_t)y0 * g.ow, P, 0.0f, io->scratch, cols);
            nn_col2im(&g, io->scratch, y0, y1, yn);
        }
        finish(yn, b, g.c, (size_t)g.h * g.w, io);
    }
}

static void tconv_backward(const struct nn_io *io)
{
    const struct nn_layer_desc *d = io->d;
    struct nn_geom g = tconv_geom(d, &io->is, &io->os);
    int Kc = (int)(g.c * g.kh * g.kw), P = (int)(g.oh * g.ow), C = (int)io->is.c;
    size_t in_sz = (size_t)C * (size_t)P, out_sz = (size_t)g.c * g.h * g.w;
    uint32_t band = nn_band_rows(&g);
    float *dcol = io->scratch;
    for (uint32_t n = 0; n < io->is.n; n++) {
        const float *xn = io->x + n * in_sz, *dyn = io->dy + n * out_sz;
        if (d->bias)
            sum_bias(dyn, io->dw + (size_t)C * (size_t)Kc, g.c, (size_t)g.h * g.w);
        for (uint32_t y0 = 0; y0 < g.oh; y0 += band) {
            uint32_t y1 = y0 + band < g.oh ? y0 + band : g.oh;
            int cols = (int)((y1 - y0) * g.ow);
            nn_im2col(&g, dyn, y0, y1, dcol);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, Kc, cols, 1.0f,
                        xn + (size_t)y0 * g.ow, P, dcol, cols, 1.0f, io->dw, Kc);
            if (io->dx)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, cols, Kc, 1.0f, io->w, Kc,
                            dcol, cols, 0.0f, io->dx + n * in_sz + (size_t)y0 * g.ow, P);
        }
    }
}

const struct nn_op nn_op_tconv2d = {
    .check = conv_check,
    .shape = tconv_shape,
    .nparams = conv_nparams,
    .init = tconv_init,
    .mem = tconv_mem,
    .forward = tconv_forward,
    .backward = tconv_backward,
};
