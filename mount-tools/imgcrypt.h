/* SPDX-License-Identifier: MIT */
/*
 * The imgcrypt program's own interface between its files: the usage text and one entry point
 * per command, each taking the command's argc/argv (argv[0] is the command name) and returning
 * an exit code of mount-tools/tool.h. Not a library: nothing outside imgcrypt includes it.
 */
#ifndef IMGCRYPTFS_IMGCRYPT_H
#define IMGCRYPTFS_IMGCRYPT_H

#include "keys/keys.h"

#define IMGCRYPT_PATH_CAP 4096

/* imgcrypt.c: the usage text; imgcrypt_usage prints it (and the image commands') to stderr and
 * returns TOOL_EXIT_USAGE. */
extern const char imgcrypt_usage_text[];
int imgcrypt_usage(void);

/* imgcrypt_keyring.c */
int imgcrypt_init(int argc, char **argv);
int imgcrypt_passwd(int argc, char **argv);
int imgcrypt_info(int argc, char **argv);

/* imgcrypt_inspect.c */
int imgcrypt_inspect(int argc, char **argv);

/* imgcrypt_train.c: train, train --quantize, train --eval (the autoencoder). */
int imgcrypt_train(int argc, char **argv);

/* imgcrypt_image.c */
/* Usage lines, for the program's help text. */
extern const char imgcrypt_image_usage[];

int imgcrypt_encrypt(int argc, char **argv);
int imgcrypt_decrypt(int argc, char **argv);
int imgcrypt_preview(int argc, char **argv);

/* imgcrypt_convert.c: `imgcrypt convert`, offline conversion of a store's block files that hold
 * images into containers. */
extern const char imgcrypt_convert_usage[];
int imgcrypt_convert(int argc, char **argv);

/* imgcrypt_coder.c */
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
