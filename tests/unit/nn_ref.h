/* SPDX-License-Identifier: MIT */
/*
 * The naive reference of the integer inference path, shared by the nn test suites (defined in
 * tests/unit/nn_int.c): every layer of a quantised model run with nn/nn.h's arithmetic written
 * out (int64 sums, no layouts, no fusion), to hold the kernels to.
 */
#ifndef IMGCRYPTFS_TESTS_NN_REF_H
#define IMGCRYPTFS_TESTS_NN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn_int.h"

struct rshape {
    uint32_t n, c, h, w;
};

/* Values of a shape. */
size_t rcount(struct rshape s);
/* n values uniform in [-lim, lim] (one spare element); the caller frees. */
int16_t *random_q(size_t n, struct nn_rng *r, int32_t lim);
/* Requantisation: floor((a m + 2^(s-1)) / 2^s); saturation to int16. */
int64_t ref_rq(int64_t a, int32_t m, int32_t s);
int16_t ref_sat(int64_t v);
/* Run layers [first, end) of q's top sequence on x (shape is); a new buffer, shape in *os. */
int16_t *ref_seq(const struct nn_qmodel *q, size_t first, size_t end, const int16_t *x,
                 struct rshape is, struct rshape *os);

#endif
