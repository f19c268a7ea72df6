/* SPDX-License-Identifier: MIT */
/*
 * imgcrypt train --coder: train, measure and install the neural predictor of the pixel coder
 * (codec/pixel/pixnet.h). Kept apart from imgcrypt.c, which trains the autoencoder.
 */
#ifndef IMGCRYPTFS_IMGCRYPT_CODER_H
#define IMGCRYPTFS_IMGCRYPT_CODER_H

#include "keys/keys.h"

/*
 * `imgcrypt train --coder ...` (argv[0] is "train"; "--coder" anywhere in argv). Returns an
 * exit code of tool.h.
 */
int imgcrypt_coder_main(int argc, char **argv);

/* Whether argv holds "--coder" (before a lone "--"). */
int imgcrypt_coder_wanted(int argc, char **argv);

/* Add the built-in coder model to an unlocked keyring's model list (imgcrypt init). 0 or a
 * negative errno; a keyring that holds it already is left as it is. */
int imgcrypt_coder_add_default(struct keys_ring *ring);

#endif
