// SPDX-License-Identifier: MIT
/*
 * imgcrypt: the administration command. This file is the usage text and the dispatch; each
 * command family is a file of its own, which parses its options into a struct and then runs:
 * keyring admin (imgcrypt_keyring.c: init, passwd, info), inspect (imgcrypt_inspect.c), the
 * autoencoder's training and evaluation (imgcrypt_train.c), the coder model's
 * (imgcrypt_coder.c), the image commands (imgcrypt_image.c: encrypt, decrypt, preview) and the
 * offline conversion of a store (imgcrypt_convert.c).
 * Every command leaves with one of the documented exit codes (mount-tools/tool.h).
 */
#include <stdio.h>
#include <string.h>

#include "mount-tools/imgcrypt.h"
#include "mount-tools/tool.h"

const char imgcrypt_usage_text[] =
    "usage: imgcrypt COMMAND [OPTIONS] BACKING|FILE...\n"
    "\n"
    "  init   [--keyring PATH] [--passfile F | --extpass CMD | --keyfile F] [--kdf-cost LOGN] "
    "BACKING\n"
    "  passwd [--keyring PATH] [--passfile F | --extpass CMD | --keyfile F]\n"
    "         [--new-passfile F | --new-extpass CMD | --new-keyfile F] [--kdf-cost LOGN] BACKING\n"
    "  info   [--keyring PATH] BACKING\n"
    "  inspect [--json] [--keyring PATH [SECRET]] FILE...\n"
    "  train  --data DIR [--epochs N] [--out MODEL] [--seed S] [--steps N] [--batch N]\n"
    "         [--crop N] [--bpp R] [--lr R] [--lr-end R]\n"
    "         [--init MODEL | --arch LATENT,W1,W2,W3,NRES] [--keyring PATH [SECRET]]\n"
    "  train  --quantize MODEL --data DIR [--out MODEL] [--keyring PATH [SECRET]]\n"
    "  train  --eval MODEL|default|keyring:ID [--keyring PATH [SECRET]] IMAGE...\n"
    "  train  --coder --data DIR [--epochs N] [--steps N] [--hidden N] [--layers N] [--seed S]\n"
    "         [--out MODEL] [--keyring PATH [SECRET]]\n"
    "  train  --coder --eval MODEL|default [--threads N] [--reps N] IMAGE...\n"
    "  train  --coder --merge NARROW|default WIDE [--out MODEL] [--keyring PATH [SECRET]]\n"
    "  train  --coder --add MODEL|default --keyring PATH [SECRET]\n"
    "         (SECRET: --passfile F | --extpass CMD | --keyfile F)\n"
    "\n"
    "See imgcrypt(1).\n";

int imgcrypt_usage(void)
{
    (void)fputs(imgcrypt_usage_text, stderr);
    (void)fputs(imgcrypt_image_usage, stderr);
    (void)fputs(imgcrypt_convert_usage, stderr);
    return TOOL_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    tool_set_prog("imgcrypt");
    if (argc < 2)
        return imgcrypt_usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        (void)fputs(imgcrypt_usage_text, stdout);
        (void)fputs(imgcrypt_image_usage, stdout);
        (void)fputs(imgcrypt_convert_usage, stdout);
        return TOOL_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("imgcrypt %s\n", IMGCRYPTFS_VERSION);
        return TOOL_EXIT_OK;
    }
    if (strcmp(cmd, "init") == 0)
        return imgcrypt_init(argc - 1, argv + 1);
    if (strcmp(cmd, "passwd") == 0)
        return imgcrypt_passwd(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0)
        return imgcrypt_info(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return imgcrypt_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0 && imgcrypt_coder_wanted(argc - 1, argv + 1))
        return imgcrypt_coder_main(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0)
        return imgcrypt_train(argc - 1, argv + 1);
    if (strcmp(cmd, "encrypt") == 0)
        return imgcrypt_encrypt(argc - 1, argv + 1);
    if (strcmp(cmd, "decrypt") == 0)
        return imgcrypt_decrypt(argc - 1, argv + 1);
    if (strcmp(cmd, "preview") == 0)
        return imgcrypt_preview(argc - 1, argv + 1);
    if (strcmp(cmd, "convert") == 0)
        return imgcrypt_convert(argc - 1, argv + 1);
    tool_error("unknown command '%s'", cmd);
    return imgcrypt_usage();
}
