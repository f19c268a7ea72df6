// SPDX-License-Identifier: MIT
/*
 * Unit tests of fs/ below the FUSE layer: base64url, name sealing and path translation against
 * a real backing folder, long names and their sidecars, and the open-inode table.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include "fs/fs_int.h"

int keys_key_from_bytes(const uint8_t *bytes, enum keys_key_kind kind, struct keys_key **out);

static char root[64];
static struct fs_ctx c;

static void setup(void)
{
    uint8_t raw[64];
    strcpy(root, "/tmp/imgc-fs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    memset(&c, 0, sizeof(c));
    c.root_fd = open(root, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(c.root_fd, 0);
    pthread_mutex_init(&c.dirid_lock, NULL);
    pthread_mutex_init(&c.inodes_lock, NULL);
    memset(raw, 7, sizeof(raw));
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_SIV, &c.name_key), 0);
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_GCM, &c.content_key), 0);
    ck_assert_int_eq(fs_dirid_create(&c, "."), 0);
}

static void teardown(void)
{
    char cmd[128];
    fs_dirid_flush(&c);
    keys_key_free(c.name_key);
    keys_key_free(c.content_key);
    close(c.root_fd);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_b64)
{
    uint8_t in[64], out[64];
    char enc[128];
    for (size_t len = 0; len < sizeof(in); len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 37 + len);
        size_t n = fs_b64_encode(in, len, enc);
        ck_assert_uint_eq(n, (len * 4 + 2) / 3);
        ck_assert_ptr_null(strchr(enc, '='));
        ck_assert_int_eq(fs_b64_decode(enc, n, out, sizeof(out)), (ssize_t)len);
        ck_assert_mem_eq(in, out, len);
    }
    /* Non-canonical tails, bad characters and impossible lengths are refused. */
    ck_assert_int_lt(fs_b64_decode("AB", 2, out, sizeof(out)), 0); /* low bits set */
    ck_assert_int_eq(fs_b64_decode("AA", 2, out, sizeof(out)), 1);
    ck_assert_int_lt(fs_b64_decode("A", 1, out, sizeof(out)), 0);
    ck_assert_int_lt(fs_b64_decode("AA+A", 4, out, sizeof(out)), 0);
    ck_assert_int_lt(fs_b64_decode("AA=A", 4, out, sizeof(out)), 0);
    ck_assert_int_eq(fs_b64_decode("AAAA", 4, out, 2), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_resolve_and_names)
{
    struct fs_bpath bp, again;
    char name[NAME_MAX + 2];
    uint8_t rootid[KEYS_ID_BYTES];
    ck_assert_int_eq(fs_resolve(&c, "/", &bp), 0);
    ck_assert_str_eq(bp.rel, ".");
    ck_assert_int_eq(fs_resolve(&c, "/scan-0001.dcm", &bp), 0);
    ck_assert_str_eq(bp.parent, ".");
    ck_assert_ptr_null(strstr(bp.rel, "scan"));
    ck_assert(!fs_is_reserved(bp.rel));
    /* Deterministic: the same name resolves the same way. */
    ck_assert_int_eq(fs_resolve(&c, "//scan-0001.dcm", &again), 0);
    ck_assert_str_eq(bp.rel, again.rel);
    ck_assert_int_eq(fs_dirid_get(&c, ".", rootid), 0);
    ck_assert_int_eq(fs_name_decrypt(&c, rootid, bp.leaf, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "scan-0001.dcm");
    /* Another folder id gives another sealed name and refuses this one. */
    ck_assert_int_eq(mkdirat(c.root_fd, "sub", 0700), 0);
    ck_assert_int_eq(fs_dirid_create(&c, "sub"), 0);
    uint8_t subid[KEYS_ID_BYTES];
    ck_assert_int_eq(fs_dirid_get(&c, "sub", subid), 0);
    ck_assert(memcmp(subid, rootid, KEYS_ID_BYTES) != 0);
    ck_assert_int_eq(fs_name_decrypt(&c, subid, bp.leaf, name, sizeof(name)), -EBADMSG);
    /* A folder without its id cannot be resolved into. */
    ck_assert_int_eq(mkdirat(c.root_fd, "bare", 0700), 0);
    ck_assert_int_eq(fs_dirid_get(&c, "bare", subid), -EIO);
    /* Names longer than NAME_MAX are refused; an empty component is skipped. */
    char big[NAME_MAX + 3];
    memset(big, 'x', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(fs_resolve(&c, big, &bp), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_long_names)
{
    struct fs_bpath bp;
    char name[NAME_MAX + 2], plain[NAME_MAX + 1];
    uint8_t rootid[KEYS_ID_BYTES];
    memset(plain, 'n', NAME_MAX);
    plain[NAME_MAX] = '\0';
    char path[NAME_MAX + 2];
    snprintf(path, sizeof(path), "/%s", plain);
    ck_assert_int_eq(fs_resolve(&c, path, &bp), 0);
    ck_assert(bp.is_long);
    ck_assert_uint_le(strlen(bp.leaf), NAME_MAX);
    ck_assert(strncmp(bp.leaf, FS_LONG_PREFIX, strlen(FS_LONG_PREFIX)) == 0);
    ck_assert_int_eq(fs_long_write(&c, &bp), 0);
    int fd = openat(c.root_fd, bp.rel, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(fs_dirid_get(&c, ".", rootid), 0);
    ck_assert_int_eq(fs_entry_name(&c, c.root_fd, rootid, bp.leaf, name, sizeof(name)), 0);
    ck_assert_str_eq(name, plain);
    /* The sidecar and the folder id are never shown as entries. */
    char side[NAME_MAX + 1];
    snprintf(side, sizeof(side), "%s%s", bp.leaf, FS_LONG_SUFFIX);
    ck_assert_int_eq(fs_entry_name(&c, c.root_fd, rootid, side, name, sizeof(name)), -ENOENT);
    ck_assert_int_eq(fs_entry_name(&c, c.root_fd, rootid, FS_DIRID_NAME, name, sizeof(name)),
                     -ENOENT);
    /* A sidecar swapped in from another long name is refused. */
    int sfd = openat(c.root_fd, side, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(sfd, 0);
    ck_assert_int_eq(write(sfd, "AAAA", 4), 4);
    close(sfd);
    ck_assert_int_eq(fs_entry_name(&c, c.root_fd, rootid, bp.leaf, name, sizeof(name)), -EBADMSG);
    fs_long_remove(&c, &bp);
    ck_assert_int_ne(faccessat(c.root_fd, side, F_OK, 0), 0);
}
END_TEST

START_TEST(test_inode_table)
{
    struct fs_inode *a = NULL, *b = NULL, *d = NULL;
    int fd1 = openat(c.root_fd, "f", O_CREAT | O_RDWR, 0600);
    int fd2 = openat(c.root_fd, "f", O_RDONLY);
    ck_assert_int_eq(linkat(c.root_fd, "f", c.root_fd, "hard", 0), 0);
    int fd3 = openat(c.root_fd, "hard", O_RDWR);
    /* A 0-byte backing file is damage unless the caller is creating it. */
    int fd4 = openat(c.root_fd, "f", O_RDONLY);
    ck_assert_int_eq(fs_inode_get(&c, fd4, 0, 0, &a), -EBADMSG);
    ck_assert_int_eq(fs_inode_get(&c, fd1, 1, 1, &b), 0);
    ck_assert_int_eq(fs_inode_get(&c, fd2, 0, 0, &a), 0);
    ck_assert_int_eq(fs_inode_get(&c, fd3, 1, 0, &d), 0);
    /* Every handle and every hard link shares one entry, upgraded to a writable fd. */
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_eq(a, d);
    ck_assert_int_eq(a->refs, 3);
    ck_assert(a->writable);
    ck_assert_int_eq(codec_bf_write(a->bf, "hello", 5, 0, NULL), 5);
    fs_inode_put(&c, a);
    fs_inode_put(&c, b);
    char buf[8];
    ck_assert_int_eq(codec_bf_read(d->bf, buf, sizeof(buf), 0, NULL), 5);
    ck_assert_mem_eq(buf, "hello", 5);
    fs_inode_put(&c, d);
    for (size_t i = 0; i < 256; i++)
        ck_assert_ptr_null(c.inodes[i]);
}
END_TEST

static Suite *fs_suite(void)
{
    Suite *s = suite_create("fs");
    TCase *t = tcase_create("base64url");
    tcase_add_test(t, test_b64);
    suite_add_tcase(s, t);
    t = tcase_create("names");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_resolve_and_names);
    tcase_add_test(t, test_long_names);
    suite_add_tcase(s, t);
    t = tcase_create("inodes");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_inode_table);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(fs_suite());
}
