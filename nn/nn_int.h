/* SPDX-License-Identifier: MIT */
/*
 * nn internals: the model and context structures and the per-layer operation table.
 *
 * Each layer type is one entry of a table (struct nn_op): shape inference, parameter count and
 * initialisation, memory needs, float forward and backward. The drivers (ctx.c) know nothing
 * about a layer's arithmetic, so another family of kernels (integer-exact inference) can be a
 * second table over the same descriptors. The trade-off: a call through a pointer per layer
 * and a generic argument block (struct nn_io) instead of specialised signatures.
 */
#ifndef IMGCRYPTFS_NN_INT_H
#define IMGCRYPTFS_NN_INT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

struct nn_shape {
    uint32_t n, c, h, w;
};

static inline size_t nn_shape_count(const struct nn_shape *s)
{
    return (size_t)s->n * s->c * s->h * s->w;
}

static inline size_t nn_shape_plane(const struct nn_shape *s)
{
    return (size_t)s->h * s->w;
}

/*
 * Arguments of one layer's forward or backward pass. x/y are the packed input and output, dy
 * and dx their gradients (dx NULL when nobody needs it). aux is the layer's own memory: kept
 * from forward to backward in a training context, shared scratch otherwise. scratch is shared
 * by all layers of the context and holds nothing between calls.
 */
struct nn_io {
    const struct nn_layer_desc *d;
    const float *w; /* parameters */
    float *dw;      /* parameter gradients (accumulated), backward only */
    struct nn_shape is, os;
    const float *x;
    float *y;
    const float *dy;
    float *dx;
    float *aux;
    float *scratch;
    int train;
    /* Inference contexts, conv2d and tconv2d: the ReLU or LeakyReLU that follows, done on the
     * output in the pass that adds the bias (y = y > 0 ? y : slope * y, as layers.c does). */
    int act;
    float slope;
    int fast; /* a context made with NN_CTX_FAST */
};

struct nn_op {
    /* Check hyper-parameters (d->in_ch set); set the output channel count. 0 or -EINVAL/-EFBIG. */
    int (*check)(const struct nn_layer_desc *d, uint32_t *out_ch);
    /* Output shape for an input shape; -EINVAL if the input does not fit. */
    int (*shape)(const struct nn_layer_desc *d, const struct nn_shape *is, struct nn_shape *os);
    size_t (*nparams)(const struct nn_layer_desc *d);
    void (*init)(const struct nn_layer_desc *d, float *w, struct nn_rng *r);
    /* Floats of aux (per layer) and scratch (shared) needed; 0 or -EFBIG on overflow. */
    int (*mem)(const struct nn_layer_desc *d, const struct nn_shape *is, const struct nn_shape *os,
               int train, size_t *aux, size_t *scratch);
    void (*forward)(const struct nn_io *io);
    void (*backward)(const struct nn_io *io);
};

/* The table of float operations, indexed by enum nn_layer_type; NULL where not a leaf op. */
const struct nn_op *nn_float_op(uint32_t type);

extern const struct nn_op nn_op_conv2d, nn_op_tconv2d, nn_op_upsample, nn_op_relu, nn_op_lrelu,
    nn_op_avgpool, nn_op_maxpool, nn_op_se, nn_op_mhsa;

struct nn_layer {
    struct nn_layer_desc d;
    size_t param_off, nparams;
};

struct nn_model {
    uint32_t in_ch, cur_ch;
    struct nn_layer *layers;
    size_t nlayers, cap;
    /* Open residual blocks: layer index and channels at entry. */
    size_t open[NN_MAX_DEPTH];
    int depth;
    float *params;
    size_t nparams;
    int ready;
};

/*
 * Context flag for nn/'s own callers (nn_ae_encode, nn_ae_decode), beside NN_CTX_TRAIN: an
 * inference context whose convolutions may run without a column matrix (fconv.c) where the CPU
 * has FMA. Its results then differ from those of an ordinary context in the last bits (another
 * order of summation), which is why it is not the default: an ordinary inference context
 * computes exactly what a training context computes, and training keeps its numerics.
 */
#define NN_CTX_FAST 2u

/* The model a context runs. */
const struct nn_model *nn_ctx_model(const struct nn_ctx *c);

/* Kaiming-uniform fill: U(-b, b) with b = sqrt(gain / fan_in). */
void nn_init_uniform(float *w, size_t count, double gain, size_t fan_in, struct nn_rng *r);

/* a = a * b with overflow check; returns -EFBIG on overflow. */
static inline int nn_mul(size_t *a, size_t b)
{
    return __builtin_mul_overflow(*a, b, a) ? -EFBIG : 0;
}

/*
 * Convolution geometry of one image: c channels of h x w, kernel kh x kw, stride, zero padding,
 * giving an oh x ow grid of windows. The column matrix of output rows [oy0, oy1) has
 * c * kh * kw rows and (oy1 - oy0) * ow columns.
 */
struct nn_geom {
    uint32_t c, h, w, kh, kw, stride, pad, oh, ow;
};

/* Scratch budget (floats) of one column matrix; convolutions work in bands of output rows. */
#define NN_COL_BUDGET (1u << 20)

/* Output rows per band for a geometry: as many as fit the budget, at least one. */
uint32_t nn_band_rows(const struct nn_geom *g);
/* Copy the windows of output rows [oy0, oy1) of image x into col. */
void nn_im2col(const struct nn_geom *g, const float *x, uint32_t oy0, uint32_t oy1, float *col);
/* The adjoint: add col back into x, which the caller initialises. */
void nn_col2im(const struct nn_geom *g, const float *col, uint32_t oy0, uint32_t oy1, float *x);

/*
 * Float convolution forward from zero-padded, stride-phase planes of the input, without a column
 * matrix (fconv.c), where the CPU has FMA. nn_fconv_scratch: floats of scratch for geometry g
 * (0 on overflow). nn_fconv: one image, y (packed co x oh x ow) = W x + bias (may be NULL), then
 * y > 0 ? y : slope * y when act. AVX2 and AVX-512 give the same bits.
 */
enum nn_fkern { NN_FK_NONE = 0, NN_FK_AVX2 = 1, NN_FK_AVX512 = 2 };
enum nn_fkern nn_fkern_best(void);
int nn_fkern_supported(enum nn_fkern k);
size_t nn_fconv_scratch(const struct nn_geom *g);
/* Scratch floats a convolution layer needs beyond op->mem in a NN_CTX_FAST context (0 when it
 * does not run as fconv). 0 or -EFBIG. */
int nn_conv_fast_mem(const struct nn_layer_desc *d, const struct nn_shape *is,
                     const struct nn_shape *os, size_t *scratch);
void nn_fconv(enum nn_fkern kern, const struct nn_geom *g, uint32_t co, const float *w,
              const float *bias, int act, float slope, const float *x, float *y, float *scratch);

/* ---- Integer-exact inference (qint.c, qgemm.c, quant.c) ---- */

#define NN_Q_MIN (-32768)
#define NN_Q_MAX 32767
#define NN_Q_WMAX 127 /* int8 weights are in [-NN_Q_WMAX, NN_Q_WMAX] */
#define NN_Q_ACC_MAX INT32_MAX
#define NN_Q_LUT 1024    /* entries of the sigmoid and exponent tables */
#define NN_Q_LUT_FRAC 64 /* table inputs are in 1/64 units */
#define NN_Q_ONE 32768   /* 1.0 in table outputs (Q15) */
#define NN_Q_PBITS 14    /* attention probabilities are in 1/2^14 units */
#define NN_Q_ATT_ROWS 64 /* query rows per attention block */

/*
 * One quantised layer. w, b, k and ws are the stored arrays (see the counts in
 * nn_qlayer_counts and the layouts below); a is derived at load: the GEMM-ready int16 matrix.
 *
 * k layouts (M multiplier, S shift, pairs as in the requantisation of nn.h):
 *   conv2d, tconv2d  M[out_ch], S[out_ch]
 *   lrelu            M, S (M signed: the slope is M / 2^S)
 *   residual         Mx, Sx, Mf, Sf
 *   se               M1[hidden], S1[hidden], M2[C], S2[C], sigmoid table[NN_Q_LUT]
 *   mhsa             Mq[C], Sq[C], Mk[C], Sk[C], Mv[C], Sv[C], Me, Se, qk_max, Mo, So,
 *                    Mout[C], Sout[C], exponent table[NN_Q_LUT]
 * w: conv2d W[out_ch][C][kh][kw]; tconv2d W[C][out_ch][kh][kw]; se W1[hidden][C] W2[C][hidden];
 * mhsa Wq Wk Wv Wo, each [C][C]. b: conv/tconv b[out_ch] (bias only); se b1[hidden] b2[C]; mhsa
 * bq bk bv bo. ws: one float scale per row of w's matrices (metadata).
 */
struct nn_qlayer {
    struct nn_layer_desc d;
    float out_scale; /* scale of the layer's output activation (metadata) */
    int8_t *w;
    int32_t *b, *k;
    float *ws;
    size_t nw, nb, nk, nws;
    int16_t *a; /* strided conv: W [rows padded][K even]; se, mhsa: W1/W2, Wq..Wo widened */
    size_t arows, acols;
    struct nn_qconv *conv; /* conv of stride 1, tconv: the phase GEMMs (qconv.c) */
};

struct nn_qmodel {
    uint32_t in_ch, out_ch;
    float in_scale;
    struct nn_qlayer *layers;
    size_t nlayers;
};

/* Element counts of a quantised layer's arrays (d->in_ch set). 0, or -EINVAL/-EFBIG. */
int nn_qlayer_counts(const struct nn_layer_desc *d, size_t *nw, size_t *nb, size_t *nk,
                     size_t *nws);
/*
 * Check a quantised model made by a loader or the quantiser (descriptors chained, counts,
 * multipliers, shifts, tables, the int32 bounds) and derive the GEMM matrices. Returns 0,
 * -EINVAL, -EFBIG or -ENOMEM.
 */
int nn_qmodel_finish(struct nn_qmodel *q);
/* An empty quantised model with n zeroed layers; free with nn_qmodel_free. */
struct nn_qmodel *nn_qmodel_alloc(size_t n);
/* Width of the Q/K clamp of a head of width d: the largest q with q^2 * d <= INT32_MAX. */
int32_t nn_q_qk_limit(uint32_t d);

/* Requantise: floor((a * m + 2^(s - 1)) / 2^s), s in [1, 62], |a * m| < 2^62. */
static inline int64_t nn_q_rshift(int64_t v, int s)
{
    int64_t r = v + ((int64_t)1 << (s - 1));
    /* Floor division by 2^s without relying on the implementation's signed shift. */
    return r >= 0 ? r >> s : ~(~r >> s);
}
static inline int32_t nn_q_requant(int64_t a, int32_t m, int32_t s, int32_t lo, int32_t hi)
{
    int64_t v = nn_q_rshift(a * m, s);
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/*
 * Integer GEMM: C = A B, A int16 [m][k] (rows padded to NN_QMR with zeros, k padded to even),
 * B in pair-interleaved panels: element (k, j) at b[(k / 2) * ldb + 2 j + k % 2] (ldb >= 2 *
 * n rounded up to NN_QNR, padding zero), int32 sums (the caller proves they fit). The epilogue
 * either stores the sums as int32 or adds a bias, requantises and saturates into int16.
 * Kernels: portable C, AVX2, AVX-512BW, AVX-512 VNNI; all exact, hence identical.
 */
#define NN_QMR 4
#define NN_QNR 64
enum nn_qkern { NN_QK_C = 0, NN_QK_AVX2 = 1, NN_QK_AVX512 = 2, NN_QK_VNNI = 3 };
#define NN_QK_COUNT 4
struct nn_qepi {
    int32_t *c;                         /* int32 output, or NULL */
    int16_t *y;                         /* int16 output when c is NULL */
    ptrdiff_t sm, sn;                   /* output strides along m and n (elements) */
    const int32_t *bias, *mult, *shift; /* indexed by the channel (bias may be NULL) */
    int chan_n;                         /* channel = n instead of m */
    int uniform;                        /* mult[0], shift[0] for every channel */
    int32_t lo, hi;                     /* saturation */
};
/* Best kernel the running CPU supports. */
enum nn_qkern nn_qkern_best(void);
int nn_qkern_supported(enum nn_qkern k);
static inline size_t nn_q_round(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}
void nn_qgemm(enum nn_qkern kern, uint32_t m, uint32_t k, uint32_t n, const int16_t *a,
              const int16_t *b, size_t ldb, const struct nn_qepi *e);

/*
 * The GEMM of the convolutions (qconv.c), with B read in place: pair-row kk of B starts at
 * b + off[kk] (int16 units; column j at + 2 j), so that B can be an activation stored as
 * channel pairs (no im2col copy: each pair-row is the image shifted by one kernel tap). B is
 * read in whole tiles of NN_QNR columns: up to n rounded up to NN_QNR, which the caller keeps
 * inside its memory. Each tile of NN_QMR x NN_QNR sums gets bias, requantisation (multiplier
 * and shift of its row), saturation to [lo, hi] and, if lrelu, the LeakyReLU of nn.h (negative
 * values requantised by lm, ls to the int16 range), all vectorised; then `store` writes the
 * int16 tile v (rows r0.., columns j0.., cols of them valid) wherever it belongs.
 */
struct nn_qrow {
    int32_t bias, mult, shift; /* a padding row: 0, 0, 1 (its value is then 0) */
};
struct nn_qtile {
    uint32_t m, k2, n;          /* rows of A, pairs of B rows, columns */
    const int16_t *a;           /* [m rounded up to NN_QMR][2 k2] */
    const int16_t *b;           /* pair-row kk at b + off[kk] */
    const ptrdiff_t *off;       /* [k2] */
    const struct nn_qrow *rows; /* [m rounded up to NN_QMR] */
    int32_t lo, hi, lrelu, lm, ls;
    void (*store)(void *arg, uint32_t r0, uint32_t j0, uint32_t cols, int16_t v[NN_QMR][NN_QNR]);
    void *arg;
};
void nn_qgemm_tiles(enum nn_qkern kern, const struct nn_qtile *t);
/* Residual sums of nn.h: y[i] = sat(rq(x[i], Mx, Sx) + rq(f[i], Mf, Sf)), k = Mx, Sx, Mf, Sf
 * (y may be x). */
void nn_qres_add(enum nn_qkern kern, int16_t *y, const int16_t *x, const int16_t *f, size_t n,
                 const int32_t k[4]);

/* Pack src element (k, j) = src[k * sk + j * sn] into the interleaved layout. */
void nn_qpack(const int16_t *src, ptrdiff_t sk, ptrdiff_t sn, uint32_t k, uint32_t n, int16_t *b,
              size_t ldb);
/* The column matrix of output rows [oy0, oy1) of an int16 image, packed; tmp holds 2 * ldb / 2
 * int16 (two column rows). */
void nn_qim2col(const struct nn_geom *g, const int16_t *x, uint32_t oy0, uint32_t oy1, int16_t *b,
                size_t ldb, int16_t *tmp);
/*
 * Convolutions of stride 1 and transposed convolutions as GEMMs read in place (qconv.c).
 *
 * An activation may be stored as channel pairs ("pair layout"): channels 2q and 2q + 1
 * interleaved, element (n, c, y, x) at ((n * CP + c / 2) * Hp * Wp + (y + ph) * Wp + x + pw) * 2
 * + c % 2, CP = ceil(C / 2), Hp = H + 2 ph, Wp = W + 2 pw, with a zero border of ph rows and pw
 * columns, a zero channel C when C is odd, and slack after the last plane that GEMM tiles may
 * read (any values). Every B pair-row of a convolution is then the input shifted by one tap.
 *
 * A transposed convolution of stride s is s^2 ordinary convolutions of stride 1, one per output
 * phase (oy % s, ox % s), each reading a window of about kh / s x kw / s input pixels and
 * writing every s-th output pixel: no column matrix, no col2im, no int32 accumulator image.
 * Phases whose windows coincide share one GEMM (their rows stacked), so that the last layer
 * of the autoencoder (16 -> 1 channel, 8x8 / 4) is 4 GEMMs of 4 rows, not 16 of one row. A
 * convolution of stride 1 is the case s = 1.
 */
struct nn_qaxis {
    int32_t off;           /* tap t of output row a reads input row a + off + t */
    uint32_t taps;         /* window size (0: only the bias reaches these phases) */
    uint32_t first, count; /* the phases: phase[first .. first + count) */
};
struct nn_qconv {
    uint32_t s, cp;           /* phases per axis (the stride, 1 for a convolution); CP */
    uint32_t nay, nax;        /* windows along y and x */
    struct nn_qaxis *ay, *ax; /* [nay], [nax] */
    uint32_t *py, *px;        /* phases by window, [s] each */
    size_t *a_off, *r_off;    /* GEMM g = gy * nax + gx: its A block and its rows */
    int16_t *a;               /* rows (phase y, phase x, o), pair-rows (ty, tx, q) */
    struct nn_qrow *rows;     /* bias, multiplier, shift of each row (padding rows zero) */
};
/* An activation as a layer sees it. */
struct nn_qview {
    int16_t *p;
    struct nn_shape s;
    uint32_t pair, ph, pw; /* pair layout and its border, or packed NCHW */
};
/* Whether a layer runs as phase GEMMs (conv of stride 1, tconv). */
int nn_qconv_implicit(const struct nn_layer_desc *d);
/* Build l->conv from l->w, l->b, l->k. 0 or -ENOMEM. */
int nn_qconv_prepare(struct nn_qlayer *l);
void nn_qconv_free(struct nn_qconv *cv);
/* The border its input needs (pair layout) and the work memory of nn_qconv_run (ptrdiff_t). */
void nn_qconv_need(const struct nn_qlayer *l, const struct nn_shape *is, const struct nn_shape *os,
                   uint32_t *ph, uint32_t *pw, size_t *work);
/* int16 elements of an activation in pair layout, slack included; 0 on overflow. */
size_t nn_qpair_count(const struct nn_shape *s, uint32_t ph, uint32_t pw);
/* Store packed NCHW x (shape s) in pair layout. */
void nn_qpair_store(const int16_t *x, const struct nn_qview *dst);
/*
 * Run layer l (nn_qconv_implicit) from in to out, either layout each (out's border as planned);
 * lrelu, if not NULL, is a LeakyReLU applied in the same pass; resid, if not NULL, a residual
 * block whose sum x + f(x) this layer's output f(x) completes in place: out holds x on entry.
 * tmp holds in converted to pair layout when in is packed (nn_qpair_count with the border of
 * nn_qconv_need), work what nn_qconv_need says.
 */
void nn_qconv_run(enum nn_qkern kern, const struct nn_qlayer *l, const struct nn_qlayer *lrelu,
                  const struct nn_qlayer *resid, const struct nn_qview *in,
                  const struct nn_qview *out, int16_t *tmp, ptrdiff_t *work);

/* Force a kernel on a context (tests compare kernels); -EINVAL if the CPU lacks it. */
int nn_qctx_set_kernel(struct nn_qctx *c, enum nn_qkern k);

/* Calibration (quant.c) reads the float layers' inference-mode aux after a forward pass of one
 * image: se leaves s[C], z1[hidden], g[C] there, mhsa q, k, v, o (C x T each). attention.c
 * must keep that layout. */

/* Files (modelfile.c), shared by the model and autoencoder loaders. nn_file_write writes
 * through a fresh temporary file in the same folder, fsyncs and renames it over path (never a
 * half-written model); nn_file_read reads a regular file of at most max bytes (else -EFBIG)
 * into a new buffer (caller frees). 0 or -errno. */
int nn_file_write(const char *path, const uint8_t *buf, size_t len);
int nn_file_read(const char *path, size_t max, uint8_t **buf, size_t *len);

/* ---- Activation planning (plan.c), shared by ctx.c and qint.c ----------------------------- */

/* A shape within the engine's limits: 0, -EINVAL (a zero dimension) or -EFBIG. */
int nn_shape_ok(const struct nn_shape *s);

/*
 * Which buffer ("slot") each activation of a context lives in. With `own` (training) every
 * activation gets a slot of its own; otherwise it takes `force` when given, else the first slot
 * that is neither `avoid` nor kept by an enclosing residual block (keep[0..nkeep)).
 */
struct nn_plan {
    uint32_t *nact;          /* the context's activation count (grows) */
    struct nn_shape *ashape; /* the context's activation shapes */
    uint32_t *act_slot;      /* per activation: its slot */
    size_t *slot_size;       /* per slot: elements of its largest activation (when sized) */
    uint32_t nslot;
    uint32_t keep[NN_MAX_DEPTH + 1];
    int nkeep;
    int own;   /* one slot per activation */
    int sized; /* nn_plan_act records slot sizes (else the caller does, later) */
};

/* Add an activation of shape s; returns its index. */
uint32_t nn_plan_act(struct nn_plan *p, const struct nn_shape *s, uint32_t avoid, uint32_t force);

/* Place n units at *off rounded up to a multiple of align (*at), and advance *off past them.
 * 0 or -EFBIG on overflow. */
int nn_plan_reserve(size_t *off, size_t n, size_t align, size_t *at);

/* ---- Bytes of nn's file formats (model files, autoencoder files) ------------------------ */

/* Little-endian fixed fields, alignment-free. (codec/ has its own in codec/bytes.h: nn sits
 * below codec and includes nothing of it.) */
static inline uint32_t nn_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void nn_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* The CRC-32 of nn's files (zlib's: the PNG/zip polynomial), of n bytes, any n. */
uint32_t nn_crc32(const uint8_t *p, size_t n);

#endif
