// SPDX-License-Identifier: MIT
/*
 * Training: losses (MSE, L1, and the bits loss of a discretised logistic), Adam, and one
 * mini-batch step.
 *
 * Losses accumulate and differentiate in double: a loss is a sum over up to millions of terms,
 * and the bits loss needs log-probabilities that stay exact for masses near 1 and near 0. The
 * logistic bin mass is written as sigma(a) sigma(-b) (1 - exp(b - a)) (a, b the scaled bin
 * edges), whose logarithm is a sum of softplus and log(-expm1) terms that neither cancel nor
 * overflow for any mean and scale; the cost is a few transcendental calls per sample.
 * Everything is sequential so that a seed reproduces a training run bit for bit.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

double nn_loss_mse(const float *pred, const float *target, size_t count, float *grad)
{
    if (count == 0)
        return 0.0;
    double sum = 0, k = 2.0 / (double)count;
    for (size_t i = 0; i < count; i++) {
        double e = (double)pred[i] - target[i];
        sum += e * e;
        if (grad)
            grad[i] = (float)(k * e);
    }
    return sum / (double)count;
}

double nn_loss_l1(const float *pred, const float *target, size_t count, float *grad)
{
    if (count == 0)
        return 0.0;
    double sum = 0;
    float k = (float)(1.0 / (double)count);
    for (size_t i = 0; i < count; i++) {
        double e = (double)pred[i] - target[i];
        sum += fabs(e);
        if (grad)
            grad[i] = e > 0 ? k : e < 0 ? -k : 0.0f;
    }
    return sum / (double)count;
}

/* log(1 + exp(z)) without overflow. */
static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/*
 * Natural log of the mass of x under the discretised logistic (mu, exp(ls)), and its
 * derivatives with respect to mu and ls. With u = 1/s, a = (x + 0.5 - mu) u, b = (x - 0.5 - mu) u:
 *   interior  log P = -softplus(-a) - softplus(b) + log(-expm1(-u))
 *   x == lo   log P = -softplus(-a)
 *   x == hi   log P = -softplus(b)
 */
static double logistic_logp(double mu, double ls, int32_t x, int32_t lo, int32_t hi, double *dmu,
                            double *dls)
{
    double u = exp(-ls), a = (x + 0.5 - mu) * u, b = (x - 0.5 - mu) * u;
    double lp = 0, gm = 0, gl = 0;
    if (x > lo) {
        double sb = sigmoid(b);
        lp -= softplus(b);
        gm += u * sb;
        gl += b * sb;
    }
    if (x < hi) {
        double sna = sigmoid(-a);
        lp -= softplus(-a);
        gm -= u * sna;
        gl -= a * sna;
    }
    if (x > lo && x < hi) {
        lp += log(-expm1(-u));
        /* d/dls log(1 - e^-u) = -u / (e^u - 1), which tends to -1 as u -> 0. */
        gl -= u < 1e-12 ? 1.0 : u / expm1(u);
    }
    *dmu = gm;
    *dls = gl;
    return lp;
}

int nn_loss_bits(const struct nn_tensor *pred, const int32_t *target, int32_t lo, int32_t hi,
                 float *grad, double *bits)
{
    if (!pred || !pred->data || !target || !bits || pred->c == 0 || pred->c % 2 || lo >= hi)
        return -EINVAL;
    uint32_t C = pred->c / 2;
    size_t count = (size_t)pred->n * C * pred->h * pred->w;
    for (size_t i = 0; i < count; i++)
        if (target[i] < lo || target[i] > hi)
            return -EINVAL;
    const double k = 1.0 / ((double)count * M_LN2);
    double sum = 0;
    size_t i = 0;
    size_t plane = (size_t)pred->h * pred->w;
    for (uint32_t n = 0; n < pred->n; n++)
        for (uint32_t c = 0; c < C; c++)
            for (uint32_t y = 0; y < pred->h; y++)
                for (uint32_t x = 0; x < pred->w; x++, i++) {
                    double mu = *nn_tensor_at(pred, n, c, y, x);
                    double ls = *nn_tensor_at(pred, n, C + c, y, x);
                    int clamped = ls < -30.0;
                    double dmu, dls;
                    sum -= logistic_logp(mu, clamped ? -30.0 : ls, target[i], lo, hi, &dmu, &dls);
                    if (grad) {
                        size_t at = ((size_t)n * pred->c + c) * plane + (size_t)y * pred->w + x;
                        grad[at] = (float)(-dmu * k);
                        grad[at + C * plane] = clamped ? 0.0f : (float)(-dls * k);
                    }
                }
    *bits = sum / ((double)count * M_LN2);
    return 0;
}

struct nn_adam {
    struct nn_adam_opts o;
    const struct nn_model *m;
    size_t count;
    uint64_t t;
    float *mom, *vel;
};

int nn_adam_new(const struct nn_model *m, const struct nn_adam_opts *o, struct nn_adam **out)
{
    if (!m || !o || !out || !m->ready || !(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) ||
        !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0) || !(o->weight_decay >= 0))
        return -EINVAL;
    struct nn_adam *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->o = *o;
    a->m = m;
    a->count = m->nparams;
    a->mom = calloc(a->count ? a->count : 1, sizeof(float));
    a->vel = calloc(a->count ? a->count : 1, sizeof(float));
    if (!a->mom || !a->vel) {
        nn_adam_free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

void nn_adam_free(struct nn_adam *a)
{
    if (!a)
        return;
    free(a->vel);
    free(a->mom);
    free(a);
}

void nn_adam_set_lr(struct nn_adam *a, float lr)
{
    a->o.lr = lr;
}

int nn_adam_step(struct nn_adam *a, struct nn_model *m, const float *grads)
{
    if (!a || !m || !grads || a->m != m || a->count != m->nparams)
        return -EINVAL;
    a->t++;
    const float b1 = a->o.beta1, b2 = a->o.beta2;
    /* Bias corrections folded into the step size and epsilon. */
    double c1 = 1.0 - pow(b1, (double)a->t), c2 = 1.0 - pow(b2, (double)a->t);
    float step = (float)(a->o.lr / c1), root = (float)sqrt(c2);
    float decay = a->o.lr * a->o.weight_decay;
    float *p = m->params;
    for (size_t i = 0; i < a->count; i++) {
        float g = grads[i];
        a->mom[i] = b1 * a->mom[i] + (1.0f - b1) * g;
        a->vel[i] = b2 * a->vel[i] + (1.0f - b2) * g * g;
        p[i] -= step * a->mom[i] / (sqrtf(a->vel[i]) / root + a->o.eps) + decay * p[i];
    }
    return 0;
}

int nn_train_step(struct nn_ctx *c, struct nn_adam *a, struct nn_model *m,
                  const struct nn_tensor *in, const float *target, enum nn_loss loss,
                  double *loss_out)
{
    struct nn_tensor out;
    float *g = c ? nn_ctx_out_grad(c) : NULL;
    if (!g || !a || !m || nn_ctx_model(c) != m || !target ||
        (loss != NN_LOSS_MSE && loss != NN_LOSS_L1))
        return -EINVAL;
    nn_ctx_zero_grads(c);
    int ret = nn_forward(c, in, &out);
    if (ret)
        return ret;
    size_t count = nn_tensor_count(&out);
    double l = loss == NN_LOSS_MSE ? nn_loss_mse(out.data, target, count, g)
                                   : nn_loss_l1(out.data, target, count, g);
    if ((ret = nn_backward(c, g, NULL)))
        return ret;
    if ((ret = nn_adam_step(a, m, nn_ctx_grads(c, NULL))))
        return ret;
    if (loss_out)
        *loss_out = l;
    return 0;
}
