// SPDX-License-Identifier: MIT
/*
 * Activation planning shared by the float contexts (ctx.c) and the integer ones (qint.c): which
 * buffer ("slot") each activation lives in, and the aligned layout of one allocation. Reusing
 * slots greedily keeps an inference context to depth + 2 buffers; the price is that a slot's
 * size is the largest activation ever placed in it.
 */
#include <errno.h>

#include "nn/nn_int.h"

int nn_shape_ok(const struct nn_shape *s)
{
    if (s->n == 0 || s->c == 0 || s->h == 0 || s->w == 0)
        return -EINVAL;
    if (s->n > NN_MAX_DIM || s->c > NN_MAX_CHANNELS || s->h > NN_MAX_DIM || s->w > NN_MAX_DIM ||
        nn_shape_plane(s) > NN_MAX_PLANE)
        return -EFBIG;
    return 0;
}

uint32_t nn_plan_act(struct nn_plan *p, const struct nn_shape *s, uint32_t avoid, uint32_t force)
{
    uint32_t a = (*p->nact)++, slot;
    p->ashape[a] = *s;
    if (p->own) {
        slot = p->nslot++;
    } else if (force != UINT32_MAX) {
        slot = force;
    } else {
        for (slot = 0;; slot++) {
            int busy = slot == avoid;
            for (int k = 0; k < p->nkeep && !busy; k++)
                busy = p->keep[k] == slot;
            if (!busy)
                break;
        }
        if (slot == p->nslot)
            p->nslot++;
    }
    p->act_slot[a] = slot;
    if (p->sized) {
        size_t count = nn_shape_count(s);
        if (p->slot_size[slot] < count)
            p->slot_size[slot] = count;
    }
    return a;
}

int nn_plan_reserve(size_t *off, size_t n, size_t align, size_t *at)
{
    size_t a = (*off + align - 1) / align * align;
    if (a < *off || __builtin_add_overflow(a, n, off))
        return -EFBIG;
    *at = a;
    return 0;
}
