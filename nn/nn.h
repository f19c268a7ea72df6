/* SPDX-License-Identifier: MIT */
/*
 * nn: a small neural engine on OpenBLAS - float tensors, layers with forward and backward,
 * per-thread execution contexts, losses and the Adam optimiser.
 *
 * A model is a sequence of layers; a residual block is a layer that holds a sub-sequence
 * (y = x + f(x)). Every layer is described by a plain struct (type id and hyper-parameters) and
 * owns one contiguous slice of the model's float parameter array, so a model can be written out
 * as a list of descriptors plus that array, and other kernels (integer-exact inference) can run
 * the same descriptors beside the float ones.
 *
 * The main trade-off is memory for predictability: an execution context (struct nn_ctx) is
 * planned for one input shape and allocates every activation and scratch buffer once, so a
 * forward pass allocates nothing and never fails for lack of memory. A training context keeps
 * every activation (and its gradient) for the backward pass; an inference context reuses a few
 * buffers and needs about as much memory as the two largest activations, plus a few MiB of
 * convolution scratch (convolutions work in bands of rows) and one image's attention matrices.
 *
 * Threads: a model is read-only once initialised, except for the optimiser step and explicit
 * parameter edits. Any number of contexts on one model may run forward (and backward) at the
 * same time on different threads; one context is used by one thread at a time. OpenBLAS keeps
 * one global thread count, set only by nn_set_threads(); with several contexts running at once,
 * set it to 1 so that BLAS threads don't compete with the caller's threads.
 */
#ifndef IMGCRYPTFS_NN_H
#define IMGCRYPTFS_NN_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits, checked when a model is built and when a context is planned (-EFBIG beyond). */
#define NN_MAX_LAYERS 1024      /* layers of a model, residual blocks and their contents included */
#define NN_MAX_DEPTH 16         /* nesting of residual blocks */
#define NN_MAX_CHANNELS 4096    /* channels of any activation */
#define NN_MAX_DIM 65536        /* height or width of any activation, batch size */
#define NN_MAX_PLANE (1u << 26) /* height * width of any activation */
#define NN_MAX_KERNEL 64        /* kernel height or width, stride, up-sampling factor */
#define NN_MAX_TOKENS 16384     /* tokens (height * width) of a self-attention layer */

/*
 * A float tensor in NCHW order: an open descriptor (pointer, dimensions, strides in elements)
 * over memory it does not own. Element (n, c, h, w) is
 * data[n * sn + c * sc + h * sh + w * sw]. Packed means sw = 1, sh = w, sc = h * w,
 * sn = c * h * w.
 */
struct nn_tensor {
    float *data;
    uint32_t n, c, h, w;
    ptrdiff_t sn, sc, sh, sw;
};

/* Describe packed memory as a tensor (data may be NULL to describe a shape only). */
void nn_tensor_packed(struct nn_tensor *t, float *data, uint32_t n, uint32_t c, uint32_t h,
                      uint32_t w);
/* Number of elements (n * c * h * w); the dimensions are bounded by the limits above. */
size_t nn_tensor_count(const struct nn_tensor *t);
/* Address of element (n, c, h, w). */
static inline float *nn_tensor_at(const struct nn_tensor *t, uint32_t n, uint32_t c, uint32_t h,
                                  uint32_t w)
{
    return t->data + (ptrdiff_t)n * t->sn + (ptrdiff_t)c * t->sc + (ptrdiff_t)h * t->sh +
           (ptrdiff_t)w * t->sw;
}
/* Copy src into dst element by element (any strides, same dimensions). Returns 0 or -EINVAL. */
int nn_tensor_copy(struct nn_tensor *dst, const struct nn_tensor *src);

/*
 * Deterministic pseudo-random numbers (xoshiro256** seeded through splitmix64): the same seed
 * gives the same sequence on every machine. Used for weight initialisation and by training
 * loops (shuffling, mini-batches). Not for anything secret.
 */
struct nn_rng {
    uint64_t s[4];
};
void nn_rng_seed(struct nn_rng *r, uint64_t seed);
uint64_t nn_rng_next(struct nn_rng *r);
/* Uniform in [0, 1), 24 random bits. */
float nn_rng_uniform(struct nn_rng *r);
/* Uniform integer in [0, bound), bound > 0, without modulo bias. */
uint32_t nn_rng_below(struct nn_rng *r, uint32_t bound);
/* Fisher-Yates shuffle of idx[0..n). */
void nn_rng_shuffle(struct nn_rng *r, uint32_t *idx, size_t n);

/* Set the OpenBLAS thread count (process-wide; n >= 1). Nothing in nn changes it otherwise. */
void nn_set_threads(int n);
/* The OpenBLAS thread count now in force. */
int nn_threads(void);

/* Layer types. The values are part of the model file format (below): never renumber. */
enum nn_layer_type {
    NN_CONV2D = 1,   /* out_ch, kh, kw, stride, pad, bias */
    NN_TCONV2D = 2,  /* transposed convolution: out_ch, kh, kw, stride, pad, bias */
    NN_UPSAMPLE = 3, /* nearest-neighbour up-sampling by factor (both axes) */
    NN_RELU = 4,     /* max(x, 0) */
    NN_LRELU = 5,    /* x >= 0 ? x : slope * x */
    NN_AVGPOOL = 6,  /* kh x kw window, stride, no padding; output floor((H - kh) / stride) + 1 */
    NN_MAXPOOL = 7,  /* likewise; the first maximum in a window takes the gradient */
    NN_RESIDUAL = 8, /* y = x + f(x), f = the layers added until nn_model_end() */
    NN_SE = 9,       /* squeeze-and-excitation: hidden width */
    NN_MHSA = 10,    /* multi-head self-attention over the H*W tokens: heads (divides C) */
};

/*
 * A layer's type and hyper-parameters; fields a type does not use must be 0. Conv2d output is
 * (H + 2 pad - kh) / stride + 1 (rounded down); transposed conv2d output is
 * (H - 1) * stride - 2 pad + kh, its exact inverse geometry.
 *
 * Parameter layout (one contiguous float slice per layer, C = in_ch):
 *   conv2d      W[out_ch][C][kh][kw], then b[out_ch] if bias
 *   tconv2d     W[C][out_ch][kh][kw], then b[out_ch] if bias
 *   se          W1[hidden][C], b1[hidden], W2[C][hidden], b2[C]
 *   mhsa        Wq[C][C], bq[C], Wk, bk, Wv, bv, Wo, bo (same shapes)
 *   others      none
 * MHSA: tokens are the H*W positions, C-dimensional; Q = Wq x + bq etc., per head h of width
 * d = C / heads, A_h = softmax(Q_h^T K_h / sqrt(d)) row-wise, O_h = V_h A_h^T, y = Wo O + bo.
 * There is no positional encoding and no built-in skip: wrap it in a residual block.
 */
struct nn_layer_desc {
    uint32_t type;   /* enum nn_layer_type */
    uint32_t in_ch;  /* set by nn_model_add: channels entering the layer */
    uint32_t out_ch; /* conv2d, tconv2d */
    uint32_t kh, kw; /* conv2d, tconv2d, pools */
    uint32_t stride; /* conv2d, tconv2d, pools: >= 1 */
    uint32_t pad;    /* conv2d, tconv2d: < kernel size */
    uint32_t bias;   /* conv2d, tconv2d: 0 or 1 */
    uint32_t factor; /* upsample: >= 1 */
    uint32_t hidden; /* se: >= 1 */
    uint32_t heads;  /* mhsa: >= 1, divides in_ch */
    uint32_t span;   /* residual: layers inside it at any depth (set by nn_model_end) */
    float slope;     /* lrelu: finite */
};

/* A model: layers plus their parameters. Opaque. */
struct nn_model;

/*
 * Start an empty model for inputs of in_ch channels. Returns 0 and *out (owned by the caller,
 * free with nn_model_free), -EINVAL or -ENOMEM.
 */
int nn_model_new(uint32_t in_ch, struct nn_model **out);
void nn_model_free(struct nn_model *m);
/*
 * Append a layer to the innermost open residual block (or to the model). d->in_ch and d->span
 * are ignored and filled in. Adding NN_RESIDUAL opens a block: the layers that follow go inside
 * it until nn_model_end(). Returns 0, -EINVAL (bad hyper-parameters, model already
 * initialised), -EFBIG (a limit above) or -ENOMEM.
 */
int nn_model_add(struct nn_model *m, const struct nn_layer_desc *d);
/* Close the innermost open residual block. Returns 0, or -EINVAL if none is open, if it is
 * empty or if its layers change the channel count. */
int nn_model_end(struct nn_model *m);
/*
 * Finish building: allocate the parameters and initialise them from seed (Kaiming-uniform for
 * layers followed by rectifiers, variance 1/fan-in for attention projections, zero biases);
 * deterministic for a given seed and architecture. Returns 0, -EINVAL (open block, no layers,
 * already initialised) or -ENOMEM.
 */
int nn_model_init(struct nn_model *m, uint64_t seed);
/* Channels in and out of the model. */
uint32_t nn_model_in_channels(const struct nn_model *m);
uint32_t nn_model_out_channels(const struct nn_model *m);
/* Number of layers, in pre-order: a residual block comes right before the layers inside it. */
size_t nn_model_layer_count(const struct nn_model *m);
/* Descriptor of layer i (pre-order), or NULL if out of range. Valid while m lives. */
const struct nn_layer_desc *nn_model_layer(const struct nn_model *m, size_t i);
/* Parameters of layer i (count may be 0), or NULL before nn_model_init / out of range.
 * Writable: editing them between passes is allowed, never during one. */
float *nn_model_layer_params(struct nn_model *m, size_t i, size_t *count);
/* All parameters, layer slices one after another in pre-order; NULL before nn_model_init. */
float *nn_model_params(struct nn_model *m, size_t *count);
/* Where layer i's slice starts in nn_model_params() (also its place in nn_ctx_grads()). */
size_t nn_model_param_offset(const struct nn_model *m, size_t i);

/* Execution context: activations and scratch for one model and one input shape. Opaque. */
struct nn_ctx;

#define NN_CTX_TRAIN 1u /* keep what backward needs; enables nn_backward */

/*
 * Plan a context for inputs of shape (n, in_ch, h, w) on an initialised model, allocating all
 * its memory. The model must outlive the context and keep its architecture. Returns 0 and *out
 * (owned by the caller, free with nn_ctx_free), -EINVAL (model not initialised, input too small
 * for a layer, residual branch changes the shape), -EFBIG (a limit) or -ENOMEM.
 */
int nn_ctx_new(const struct nn_model *m, uint32_t n, uint32_t h, uint32_t w, unsigned flags,
               struct nn_ctx **out);
void nn_ctx_free(struct nn_ctx *c);
/* Bytes the context allocated. */
size_t nn_ctx_bytes(const struct nn_ctx *c);
/* Output shape the context was planned for (data NULL). */
void nn_ctx_out_shape(const struct nn_ctx *c, struct nn_tensor *shape);

/*
 * Run the model on `in` (shape as planned, any strides). On success *out describes the output
 * (packed, in the context's memory, valid until the next call on c). Allocates nothing.
 * Returns 0 or -EINVAL (shape mismatch).
 */
int nn_forward(struct nn_ctx *c, const struct nn_tensor *in, struct nn_tensor *out);
/*
 * Back-propagate dout (packed, output shape; may be nn_ctx_out_grad(c)) through the last
 * forward pass of a training context. Parameter gradients are added to nn_ctx_grads(c); if din
 * is not NULL, it is set to describe the gradient with respect to the input (packed, in the
 * context, valid until the next call). Returns 0 or -EINVAL (not a training context, no
 * forward pass before).
 */
int nn_backward(struct nn_ctx *c, const float *dout, struct nn_tensor *din);
/* A packed output-shaped buffer owned by a training context, for the loss gradient; NULL for
 * an inference context. */
float *nn_ctx_out_grad(struct nn_ctx *c);
/* Accumulated parameter gradients (layout of nn_model_params), NULL for inference contexts. */
float *nn_ctx_grads(struct nn_ctx *c, size_t *count);
void nn_ctx_zero_grads(struct nn_ctx *c);

/*
 * Losses over count elements, returning the mean; if grad is not NULL it receives the gradient
 * of that mean with respect to pred. grad may alias neither pred nor target.
 */
double nn_loss_mse(const float *pred, const float *target, size_t count, float *grad);
/* Mean absolute error; the gradient at pred == target is 0. */
double nn_loss_l1(const float *pred, const float *target, size_t count, float *grad);
/*
 * Bits loss: negative log-likelihood in bits of integer targets under a discretised logistic
 * distribution. pred has 2C channels: channel c < C holds the mean mu, channel C + c the log of
 * the scale s, of target channel c. Value x in [lo, hi] has the mass of [x - 0.5, x + 0.5]
 * under the logistic CDF sigma((v - mu) / s), except that the end bins take the tails:
 * P(lo) = sigma((lo + 0.5 - mu) / s), P(hi) = 1 - sigma((hi - 0.5 - mu) / s). Log-scales
 * below -30 count as -30 (zero gradient there). target is packed (pred.n, C, pred.h, pred.w).
 * On success *bits is the mean over the targets, and grad (packed, pred's shape, or NULL) its
 * gradient. Returns 0 or -EINVAL (odd channel count, lo >= hi, a target outside [lo, hi]).
 */
int nn_loss_bits(const struct nn_tensor *pred, const int32_t *target, int32_t lo, int32_t hi,
                 float *grad, double *bits);

/* Adam with bias correction and optional decoupled weight decay (AdamW). */
struct nn_adam_opts {
    float lr;           /* step size, > 0 */
    float beta1, beta2; /* in [0, 1) */
    float eps;          /* > 0 */
    float weight_decay; /* >= 0; 0 for plain Adam */
};
struct nn_adam;
/* Optimiser state for m's parameters (m initialised). Returns 0, -EINVAL or -ENOMEM. */
int nn_adam_new(const struct nn_model *m, const struct nn_adam_opts *o, struct nn_adam **out);
void nn_adam_free(struct nn_adam *a);
void nn_adam_set_lr(struct nn_adam *a, float lr);
/* One step on m's parameters with grads (layout of nn_model_params). Returns 0 or -EINVAL if m
 * is not the model the state was made for. Not concurrent with passes on m. */
int nn_adam_step(struct nn_adam *a, struct nn_model *m, const float *grads);

enum nn_loss {
    NN_LOSS_MSE = 1,
    NN_LOSS_L1 = 2,
};
/*
 * One mini-batch step on a training context: zero the gradients, forward `in`, loss against
 * target (packed, output shape), backward, Adam step on m (the context's model). *loss (may be
 * NULL) receives the loss before the step. Returns 0 or -EINVAL.
 */
int nn_train_step(struct nn_ctx *c, struct nn_adam *a, struct nn_model *m,
                  const struct nn_tensor *in, const float *target, enum nn_loss loss,
                  double *loss_out);

/* ---- Integer-exact inference ----
 *
 * A quantised model (struct nn_qmodel) runs the same layer descriptors in integer arithmetic
 * only, so its output is a function of the model and the input alone: bit-identical on every
 * machine, compiler, SIMD width, thread count and BLAS build. Numbers:
 *   - activations are int16, saturated to [-32768, 32767], symmetric (no zero point); tensor t
 *     stands for q * s_t with one float scale s_t per tensor (metadata: only quantisation and
 *     dequantisation use it, never the integer pass);
 *   - weights are int8 in [-127, 127] with one scale per output channel, biases int32 in
 *     accumulator units; products are summed in int32, and the loader proves every sum fits
 *     (sum |w| * 32768 + |b| < 2^31 per output channel), so no order of summation can overflow;
 *   - requantisation of an accumulator a by a multiplier M (|M| < 2^31) and shift sh (1..62) is
 *     floor((a * M + 2^(sh - 1)) / 2^sh) in int64: rounding half up (towards +infinity), then
 *     saturation to the output range;
 *   - LeakyReLU multiplies negative values by an integer slope M / 2^sh the same way; average
 *     pooling divides the window sum by kh * kw rounding half up; a residual block requantises
 *     x and f(x) separately to the output scale and adds them with saturation;
 *   - squeeze-and-excitation averages each channel (rounding half up), runs its two fully
 *     connected layers in int32, and maps the second one's output, requantised to 1/64 units,
 *     through a 1024-entry sigmoid table (gate in 1/32768 units, y = x * g / 2^15 rounded half up);
 *   - self-attention projects to Q and K clamped to +-qk_max (so that a head's dot product of
 *     width d fits int32: qk_max^2 * d < 2^31) and V (int16); a score's distance to its row's
 *     maximum, requantised to 1/64 nat, indexes a 1024-entry exponent table (1/32768 units, 0
 *     beyond); each probability is floor((e * 2^14 + floor(S / 2)) / S) with S the row's sum
 *     of e (integer division, rounding half up); O = V P^T in int32 (|O| < 2^15 (2^14 + T / 2)).
 * The tables are part of the model (and of its file), so no libm call is ever made at inference.
 * Integer GEMMs use SIMD (AVX2 or AVX-512BW where the CPU has them, chosen per context) or
 * plain C; all give the same bits, since integer sums are exact in any order.
 */

/* A packed int16 NCHW tensor (element (n, c, h, w) at ((n * C + c) * H + h) * W + w). */
struct nn_qtensor {
    int16_t *data;
    uint32_t n, c, h, w;
};

/* A quantised model. Opaque; read-only once made, shareable between threads. */
struct nn_qmodel;

/* Post-training quantisation options. */
struct nn_quant_opts {
    /* Clipping of every activation's range: 100 for the maximum magnitude seen during
     * calibration, or a percentile of magnitudes in [90, 100) (e.g. 99.99). */
    double percentile;
    /* > 0: fixed input scale (e.g. 1.0 / 255 for pixels fed as x / 255, so that the integer
     * input is the pixel itself); 0: from the calibration inputs' maximum magnitude. */
    float in_scale;
};

/*
 * Quantise an initialised float model, choosing activation scales from the calibration inputs
 * calib (n images of in_ch channels, any strides; run one image at a time) and weight scales
 * per output channel from their maximum magnitude (made coarser where needed for the int32
 * bound). Returns 0 and *out (free with nn_qmodel_free), -EINVAL (bad arguments, a LeakyReLU
 * slope beyond +-2^30), -EFBIG or -ENOMEM.
 */
int nn_quantize(const struct nn_model *m, const struct nn_tensor *calib,
                const struct nn_quant_opts *o, struct nn_qmodel **out);
void nn_qmodel_free(struct nn_qmodel *q);
uint32_t nn_qmodel_in_channels(const struct nn_qmodel *q);
uint32_t nn_qmodel_out_channels(const struct nn_qmodel *q);
size_t nn_qmodel_layer_count(const struct nn_qmodel *q);
/* Descriptor of layer i (pre-order, as in the float model), or NULL if out of range. */
const struct nn_layer_desc *nn_qmodel_layer(const struct nn_qmodel *q, size_t i);
/* Scales of the model's input and output (real value = integer * scale). */
float nn_qmodel_in_scale(const struct nn_qmodel *q);
float nn_qmodel_out_scale(const struct nn_qmodel *q);
/* Float input to integers at the input scale (rounded to nearest, saturated); dst is packed
 * with x's dimensions. Returns 0 or -EINVAL (channel count). */
int nn_qmodel_quantize_input(const struct nn_qmodel *q, const struct nn_tensor *x, int16_t *dst);
/* Integer output to floats: dst[i] = src[i] * output scale. */
void nn_qmodel_dequantize(const struct nn_qmodel *q, const int16_t *src, size_t count, float *dst);

/* How far a quantised model is from its float model on some inputs (dequantised outputs). */
struct nn_quant_report {
    double max_abs;  /* largest |int - float| over all outputs */
    double mean_abs; /* mean |int - float| */
    double max_ref;  /* largest |float output|, for scale */
    size_t count;    /* outputs compared */
};
/* Run both models on inputs (n images; each model's context is planned once) and compare.
 * Returns 0, -EINVAL (models disagree on shapes) or -ENOMEM. */
int nn_quant_compare(const struct nn_qmodel *q, const struct nn_model *m,
                     const struct nn_tensor *inputs, struct nn_quant_report *r);

/* Execution context of a quantised model for one input shape. Opaque. */
struct nn_qctx;
/*
 * Plan a context for inputs (n, in_ch, h, w), allocating all its memory (activations, im2col
 * bands, accumulators, attention blocks); nn_qforward allocates nothing. The model must outlive
 * it. Returns 0 and *out (free with nn_qctx_free), -EINVAL, -EFBIG or -ENOMEM.
 */
int nn_qctx_new(const struct nn_qmodel *q, uint32_t n, uint32_t h, uint32_t w,
                struct nn_qctx **out);
void nn_qctx_free(struct nn_qctx *c);
size_t nn_qctx_bytes(const struct nn_qctx *c);
/* Output shape the context was planned for (data NULL). */
void nn_qctx_out_shape(const struct nn_qctx *c, struct nn_qtensor *shape);
/*
 * Run the integer model on `in` (packed, planned shape, at the input scale). *out describes the
 * output (packed, in the context's memory, valid until the next call on c). Reentrant: contexts
 * on one model may run at once on different threads; one context is used by one thread at a
 * time. Uses no BLAS. Returns 0 or -EINVAL (shape mismatch).
 */
int nn_qforward(struct nn_qctx *c, const struct nn_qtensor *in, struct nn_qtensor *out);

/* ---- Model files ----
 *
 * A float model or a quantised one, with an architecture id (1 to NN_ARCH_MAX printable ASCII
 * characters, e.g. "ae-decoder-v1"), the layer list, the tensors and a CRC-32.
 *
 * Format, version 1. All integers little-endian; f32 is IEEE-754 binary32, s8/s32 two's
 * complement.
 *
 *   offset  size   field
 *   0       8      magic 0x89 'I' 'C' 'N' 'N' 0x0d 0x0a 0x1a
 *   8       2      u16 version = 1
 *   10      1      u8 kind: 1 float model, 2 quantised (integer) model
 *   11      1      u8 A, length of the architecture id, 1..63
 *   12      A      architecture id: bytes 0x20..0x7e, no terminator
 *   12+A    4      u32 input channels, 1..NN_MAX_CHANNELS
 *   16+A    4      u32 layer count L, 1..NN_MAX_LAYERS
 *   20+A    48 L   layers in pre-order (a residual block right before the layers inside it),
 *                  twelve u32 each: type (enum nn_layer_type), out_ch, kh, kw, stride, pad, bias,
 *                  factor, hidden, heads, span, slope (f32 bits). Unused fields are 0. A
 *                  layer's input channels are not stored: they follow from the chain.
 *   then, kind 1 (float):
 *           8      u64 parameter count N, equal to what the layers imply
 *           4 N    f32 parameters, finite, in the layout of nn_model_params()
 *   or, kind 2 (integer):
 *           4      f32 input scale (finite, > 0)
 *           per layer, in order:
 *             4    f32 output scale (finite, > 0)
 *             16   u32 nws, nw, nb, nk: element counts, each equal to what the layer implies
 *                  (nn_qlayer_counts in nn/nn_int.h)
 *             4 nws  f32 weight scales, one per output row (finite, > 0)
 *             4 nb   s32 biases, in accumulator units
 *             4 nk   s32 integer constants: multipliers, shifts, tables (layouts in nn_int.h)
 *             nw     s8 weights in [-127, 127] (layouts in nn_int.h)
 *           The loader also proves the int32 bounds of nn/nn.h from these values.
 *   last    4      u32 CRC-32 (zlib/PNG polynomial) of every byte before it
 *
 * Nothing may follow the checksum. Files are at most NN_FILE_MAX bytes.
 *
 * Loaders check
 * every field against the limits above and refuse anything malformed: -EINVAL (malformed, wrong
 * kind of model), -EFBIG (a limit, or more than NN_FILE_MAX bytes), -EBADMSG (checksum
 * mismatch), -ENOMEM, or an I/O error for the _file variants. They never read outside buf.
 */
#define NN_ARCH_MAX 63
#define NN_FILE_MAX ((size_t)256 << 20)

/* Serialise into a new buffer (*buf owned by the caller, free()). 0, -EINVAL or -ENOMEM. */
int nn_model_save(const struct nn_model *m, const char *arch, uint8_t **buf, size_t *len);
int nn_qmodel_save(const struct nn_qmodel *q, const char *arch, uint8_t **buf, size_t *len);
/* Parse a buffer. *out owned by the caller; arch (may be NULL) receives the NUL-terminated id
 * and must hold NN_ARCH_MAX + 1 bytes. Out-parameters are written only on success. */
int nn_model_load(const uint8_t *buf, size_t len, struct nn_model **out, char *arch);
int nn_qmodel_load(const uint8_t *buf, size_t len, struct nn_qmodel **out, char *arch);
/* Write to a file atomically (a temporary file in the same folder, fsync, rename; mode 0600),
 * or read one. */
int nn_model_save_file(const struct nn_model *m, const char *arch, const char *path);
int nn_qmodel_save_file(const struct nn_qmodel *q, const char *arch, const char *path);
int nn_model_load_file(const char *path, struct nn_model **out, char *arch);
int nn_qmodel_load_file(const char *path, struct nn_qmodel **out, char *arch);

#endif
