/* SPDX-License-Identifier: MIT */
/*
 * What the three programs of mount-tools share: exit codes, one-line error messages, and
 * unlocking a keyring from the secret source the user named.
 */
#ifndef IMGCRYPTFS_TOOL_H
#define IMGCRYPTFS_TOOL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "keys/keys.h"

/* Exit codes of imgcrypt, imgcryptfs and mount.imgcryptfs (documented in their man pages). */
enum tool_exit {
    TOOL_EXIT_OK = 0,
    TOOL_EXIT_IO = 1,       /* I/O or other system error */
    TOOL_EXIT_USAGE = 2,    /* bad command line */
    TOOL_EXIT_KEY = 3,      /* wrong passphrase or key */
    TOOL_EXIT_PERM = 4,     /* unsafe permissions on a keyring, passfile or key file */
    TOOL_EXIT_CORRUPT = 5,  /* corrupt or foreign file */
    TOOL_EXIT_EXISTS = 6,   /* refused to overwrite or to use a non-empty folder */
    TOOL_EXIT_MOUNT = 7,    /* the mount itself failed (busy or missing mount point, FUSE) */
    TOOL_EXIT_MISMATCH = 8, /* imgcrypt inspect: join(split(f)) != f, a codec bug */
};

#define TOOL_KEYRING_NAME "imgcryptfs.keyring"

/* Map a negative errno from keys/ or codec/ to an exit code. */
int tool_exit_code(int rc);

/* Print "PROG: MESSAGE\n" on stderr. */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Flush standard output: ret as it is, or, when the flush or an earlier write failed (a full
 * disk, a closed pipe), a message and TOOL_EXIT_IO in place of TOOL_EXIT_OK. */
int tool_flush_stdout(int ret);
/* The program name used in messages. */
void tool_set_prog(const char *name);

/* The keyring path: `opt` if given, else BACKING/imgcryptfs.keyring; 0 or -ENAMETOOLONG. */
int tool_keyring_path(const char *backing, const char *opt, char *buf, size_t len);

/*
 * Read the secret from `src` and unlock the keyring at `path`, printing a one-line message on
 * failure. Returns TOOL_EXIT_OK with *out set, or the exit code to leave with.
 */
int tool_unlock(const char *path, const struct keys_source *src, struct keys_ring **out);

/* Exit code and one-line message for a failure of keys_secret_read. */
int tool_secret_exit_code(int rc);
void tool_report_secret_error(int rc, const char *why);

/* Set *src from the option name ("passfile", "extpass", "keyfile") and its value; a second
 * source is a usage error. Returns 0 or -EINVAL. */
int tool_set_source(struct keys_source *src, int *have, const char *name, const char *value);

/* A whole number in [lo, hi] from the value of option --name, or -1 after a one-line message. */
long long tool_number(const char *name, const char *v, long long lo, long long hi);

/* Lowercase hex of b[0..n) into out, which holds 2 n + 1 bytes (NUL-terminated). */
void tool_hex(const uint8_t *b, size_t n, char *out);
/* "fixed", "neural", "smallest" or "neural-only" into enum codec_pipeline_coder; -1 for
 * anything else. */
int tool_parse_coder(const char *s);

/* Read a whole file ("-": standard input) into a new buffer (*buf, caller frees; not NULL on
 * success, also when empty) of *len bytes. 0; -EFBIG when it holds more than limit bytes
 * (nothing is kept); -EISDIR; -ENOMEM; or the -errno of open or read. */
int tool_read_file(const char *path, uint64_t limit, uint8_t **buf, size_t *len);
/* The same from an open descriptor, from its offset to its end (the descriptor stays open). */
int tool_read_fd(int fd, uint64_t limit, uint8_t **buf, size_t *len);

/* Put s on f for a terminal: control bytes as \xNN, so a file name cannot drive the terminal. */
void tool_put_plain(FILE *f, const char *s);

#endif
