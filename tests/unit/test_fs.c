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
static uint8_t rootid[KEYS_ID_BYTES];

static void setup(void)
{
    uint8_t raw[64];
    struct stat st;
    strcpy(root, "/tmp/imgc-fs-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    memset(&c, 0, sizeof(c));
    c.root.fd = open(root, O_PATH | O_DIRECTORY);
    ck_assert_int_ge(c.root.fd, 0);
    ck_assert_int_eq(fstat(c.root.fd, &st), 0);
    c.root.dev = st.st_dev;
    c.root.ino = st.st_ino;
    c.root.type = S_IFDIR;
    c.root.data_fd = -1;
    strcpy(c.tag, "AAAAAAAAAAA");
    pthread_mutex_init(&c.table_lock, NULL);
    pthread_rwlock_init(&c.root.lock, NULL);
    pthread_mutex_init(&c.cache_lock, NULL);
    pthread_rwlock_init(&c.ns_lock, NULL);
    memset(raw, 7, sizeof(raw));
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_SIV, &c.name_key), 0);
    ck_assert_int_eq(keys_key_from_bytes(raw, KEYS_KEY_GCM, &c.content_key), 0);
    ck_assert_int_eq(fs_dirid_create(c.root.fd, rootid), 0);
}

static void teardown(void)
{
    char cmd[128];
    fs_nodes_release(&c);
    keys_key_free(c.name_key);
    keys_key_free(c.content_key);
    close(c.root.fd);
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

START_TEST(test_seal_and_names)
{
    struct fs_name nm, again;
    char name[NAME_MAX + 2];
    uint8_t id[KEYS_ID_BYTES];
    ck_assert_int_eq(fs_dirid_read(&c, c.root.fd, id), 0);
    ck_assert_mem_eq(id, rootid, KEYS_ID_BYTES);
    ck_assert_int_eq(fs_name_seal(&c, rootid, "scan-0001.dcm", &nm), 0);
    ck_assert(!nm.is_long);
    ck_assert_ptr_null(strstr(nm.leaf, "scan"));
    ck_assert(!fs_is_reserved(nm.leaf));
    /* Deterministic: the same name seals the same way. */
    ck_assert_int_eq(fs_name_seal(&c, rootid, "scan-0001.dcm", &again), 0);
    ck_assert_str_eq(nm.leaf, again.leaf);
    ck_assert_int_eq(fs_name_decrypt(&c, rootid, nm.leaf, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "scan-0001.dcm");
    /* Another folder id gives another sealed name and refuses this one. */
    ck_assert_int_eq(mkdirat(c.root.fd, "sub", 0700), 0);
    int sub = openat(c.root.fd, "sub", O_PATH | O_DIRECTORY);
    uint8_t subid[KEYS_ID_BYTES];
    ck_assert_int_eq(fs_dirid_create(sub, subid), 0);
    ck_assert(memcmp(subid, rootid, KEYS_ID_BYTES) != 0);
    ck_assert_int_eq(fs_name_decrypt(&c, subid, nm.leaf, name, sizeof(name)), -EBADMSG);
    close(sub);
    /* A folder without its id cannot be read into. */
    ck_assert_int_eq(mkdirat(c.root.fd, "bare", 0700), 0);
    int bare = openat(c.root.fd, "bare", O_PATH | O_DIRECTORY);
    ck_assert_int_eq(fs_dirid_read(&c, bare, subid), -EIO);
    close(bare);
    /* Names longer than NAME_MAX, empty, or with a slash are refused. */
    char big[NAME_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(fs_name_seal(&c, rootid, big, &nm), -ENAMETOOLONG);
    ck_assert_int_eq(fs_name_seal(&c, rootid, "", &nm), -EINVAL);
    ck_assert_int_eq(fs_name_seal(&c, rootid, "a/b", &nm), -EINVAL);
    ck_assert_int_eq(fs_name_seal(&c, rootid, "..", &nm), -EINVAL);
}
END_TEST

START_TEST(test_long_names)
{
    struct fs_name nm;
    char name[NAME_MAX + 2], plain[NAME_MAX + 1];
    memset(plain, 'n', NAME_MAX);
    plain[NAME_MAX] = '\0';
    ck_assert_int_eq(fs_name_seal(&c, rootid, plain, &nm), 0);
    ck_assert(nm.is_long);
    ck_assert_uint_le(strlen(nm.leaf), NAME_MAX);
    ck_assert(strncmp(nm.leaf, FS_LONG_PREFIX, strlen(FS_LONG_PREFIX)) == 0);
    ck_assert_int_eq(fs_long_write(c.root.fd, &nm), 0);
    int fd = openat(c.root.fd, nm.leaf, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(fs_entry_name(&c, c.root.fd, rootid, nm.leaf, name, sizeof(name)), 0);
    ck_assert_str_eq(name, plain);
    /* The sidecar, the folder id and temporary entries are never shown as entries. */
    char side[NAME_MAX + 1], tmp[FS_TMP_CAP];
    snprintf(side, sizeof(side), "%s%s", nm.leaf, FS_LONG_SUFFIX);
    ck_assert_int_eq(fs_entry_name(&c, c.root.fd, rootid, side, name, sizeof(name)), -ENOENT);
    ck_assert_int_eq(fs_entry_name(&c, c.root.fd, rootid, FS_DIRID_NAME, name, sizeof(name)),
                     -ENOENT);
    ck_assert_int_eq(fs_tmp_name(&c, tmp), 0);
    ck_assert_int_eq(fs_entry_name(&c, c.root.fd, rootid, tmp, name, sizeof(name)), -ENOENT);
    /* A sidecar swapped in from another long name is refused. */
    int sfd = openat(c.root.fd, side, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(sfd, 0);
    ck_assert_int_eq(write(sfd, "AAAA", 4), 4);
    close(sfd);
    ck_assert_int_eq(fs_entry_name(&c, c.root.fd, rootid, nm.leaf, name, sizeof(name)), -EBADMSG);
    fs_long_remove(c.root.fd, &nm);
    ck_assert_int_ne(faccessat(c.root.fd, side, F_OK, 0), 0);
}
END_TEST

START_TEST(test_tmp_names)
{
    char mine[FS_TMP_CAP], other[FS_TMP_CAP];
    ck_assert_int_eq(fs_tmp_name(&c, mine), 0);
    ck_assert(!fs_tmp_foreign(&c, mine));
    ck_assert(!fs_tmp_foreign(&c, "scan"));
    memcpy(other, mine, sizeof(other));
    other[sizeof(FS_TMP_PREFIX) - 1] = 'B'; /* another mount's tag */
    ck_assert(fs_tmp_foreign(&c, other));
    /* A leftover folder (with its id) and a leftover file are removed; the sweep finds both. */
    ck_assert_int_eq(mkdirat(c.root.fd, "d", 0700), 0);
    int d = openat(c.root.fd, "d", O_PATH | O_DIRECTORY);
    uint8_t id[KEYS_ID_BYTES];
    ck_assert_int_eq(mkdirat(d, other, 0700), 0);
    int t = openat(d, other, O_PATH | O_DIRECTORY);
    ck_assert_int_eq(fs_dirid_create(t, id), 0);
    close(t);
    int f = openat(c.root.fd, other, O_CREAT | O_WRONLY, 0600);
    close(f);
    f = openat(c.root.fd, mine, O_CREAT | O_WRONLY, 0600);
    close(f);
    ck_assert_uint_eq(fs_sweep(&c), 2);
    ck_assert_int_ne(faccessat(d, other, F_OK, AT_SYMLINK_NOFOLLOW), 0);
    ck_assert_int_ne(faccessat(c.root.fd, other, F_OK, AT_SYMLINK_NOFOLLOW), 0);
    ck_assert_int_eq(faccessat(c.root.fd, mine, F_OK, AT_SYMLINK_NOFOLLOW), 0); /* in use */
    close(d);
}
END_TEST

START_TEST(test_node_table)
{
    struct fs_node *a = NULL, *b = NULL, *d = NULL;
    struct stat st;
    struct codec_bf *bf = NULL;
    int fd1 = openat(c.root.fd, "f", O_CREAT | O_RDWR, 0600);
    ck_assert_int_eq(codec_bf_open(fd1, c.content_key, 1, &bf), 0);
    ck_assert_int_eq(codec_bf_write(bf, "hello", 5, 0, NULL), 5);
    codec_bf_close(bf);
    close(fd1);
    ck_assert_int_eq(linkat(c.root.fd, "f", c.root.fd, "hard", 0), 0);
    int p1 = openat(c.root.fd, "f", O_PATH | O_NOFOLLOW), p2 = openat(c.root.fd, "hard", O_PATH);
    int p3 = openat(c.root.fd, "f", O_PATH | O_NOFOLLOW);
    ck_assert_int_eq(fstat(p1, &st), 0);
    ck_assert_int_eq(fs_node_get(&c, p1, &st, &a), 0);
    ck_assert_int_eq(fs_node_get(&c, p2, &st, &b), 0);
    ck_assert_int_eq(fs_node_get(&c, p3, &st, &d), 0);
    /* Every lookup and every hard link shares one node. */
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_eq(a, d);
    ck_assert_uint_eq(a->nlookup, 3);
    /* Contents opened read-only first, then upgraded for a writer: one block file. */
    ck_assert_int_eq(fs_node_open_data(&c, a, 0), 0);
    ck_assert_int_eq(fs_node_open_data(&c, a, 1), 0);
    ck_assert(a->writable);
    ck_assert_uint_eq(a->opens, 2);
    char buf[8];
    ck_assert_int_eq(codec_bf_read(a->bf, buf, sizeof(buf), 0, NULL), 5);
    ck_assert_mem_eq(buf, "hello", 5);
    ck_assert_int_eq(fs_node_close_data(&c, a), 0);
    /* Forgotten while open: it lives until the last close, which reports it dead. */
    fs_node_forget(&c, a, 3);
    ck_assert_int_eq(fs_node_close_data(&c, a), 1);
    fs_node_free(&c, a);
    for (size_t i = 0; i < FS_NODE_BUCKETS; i++)
        ck_assert_ptr_null(c.table[i]);
    /* The root folder is the context's own node, whoever looks it up. */
    int r = openat(c.root.fd, ".", O_PATH);
    ck_assert_int_eq(fstat(r, &st), 0);
    ck_assert_int_eq(fs_node_get(&c, r, &st, &a), 0);
    ck_assert_ptr_eq(a, &c.root);
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
    tcase_add_test(t, test_seal_and_names);
    tcase_add_test(t, test_long_names);
    tcase_add_test(t, test_tmp_names);
    suite_add_tcase(s, t);
    t = tcase_create("nodes");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_node_table);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(fs_suite());
}
