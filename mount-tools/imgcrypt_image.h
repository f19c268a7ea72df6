/* SPDX-License-Identifier: MIT */
/*
 * The offline image commands of imgcrypt: `encrypt` turns a file into its stored form (an image
 * container, codec/store/container.h, or a generic block file), `decrypt` gives back the original
 * bytes, `preview` renders the sealed features of a container as a PNG. Each takes the
 * command's own argument vector (argv[0] is the command name) and returns an exit code of
 * mount-tools/tool.h.
 */
#ifndef IMGCRYPTFS_IMGCRYPT_IMAGE_H
#define IMGCRYPTFS_IMGCRYPT_IMAGE_H

/* Usage lines, for the program's help text. */
extern const char imgcrypt_image_usage[];

int imgcrypt_encrypt(int argc, char **argv);
int imgcrypt_decrypt(int argc, char **argv);
int imgcrypt_preview(int argc, char **argv);

#endif
