#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Modes as asked and hard links as one file (issue 12, B and C), on a mount with
# allow_other,default_permissions as root, the way pjdfstest runs. Under umask 0: a file created
# with 04777 is 04777, open(O_CREAT, 0620) gives 0620, mkfifo 0777 and mkdir 0777 give 0777
# (the daemon's own umask must not cut them again), also after a remount. Hard links: after
# link n0 n1, lstat of both names shows nlink 2 at once, chmod and chown through n1 are seen
# through n0 at once (no sleep: no stale attributes of a second kernel inode), n0's ctime moves
# on link, and after unlink n1, n0 has nlink 1. test_posix.sh covers the content side of links.
. "$(dirname "$0")/lib.sh"
lib_setup
[ "$(id -u)" = 0 ] || skip "allow_other and chown need root"

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
# The daemon starts under a common umask: the caller's umask, not the daemon's, must decide.
umask 022
mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log" allow_other,default_permissions; }
umnt() { unmount_fg "$M"; }

cat >"$WORK/modes.py" <<'PYEOF'
import errno, os, stat, sys, time
mnt, phase = sys.argv[1], sys.argv[2]
fails = []
def P(n):
    return os.path.join(mnt, n)
def eq(what, got, want, fmt="{:o}"):
    if got != want:
        fails.append(f"{what}: got {fmt.format(got)}, want {fmt.format(want)}")
def mode(n):
    return stat.S_IMODE(os.lstat(P(n)).st_mode)
def guard(what, fn):
    try:
        fn()
    except OSError as e:
        fails.append(f"{what}: {errno.errorcode.get(e.errno, e.errno)}")

MODES = {"c04777": 0o4777, "o0620": 0o620, "fifo0777": 0o777, "dir0777": 0o777, "c0777": 0o777}
os.umask(0)
if phase == "run":
    def creates():
        fd = os.open(P("c04777"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o4777)
        os.close(fd)
        eq("create with mode 04777 under umask 0", mode("c04777"), 0o4777)
        fd = os.open(P("o0620"), os.O_CREAT | os.O_WRONLY, 0o620)
        os.close(fd)
        eq("open(O_CREAT, 0620) under umask 0", mode("o0620"), 0o620)
        fd = os.open(P("c0777"), os.O_CREAT | os.O_WRONLY, 0o777)
        os.close(fd)
        eq("open(O_CREAT, 0777) under umask 0", mode("c0777"), 0o777)
    guard("creates", creates)
    guard("mkfifo", lambda: (os.mkfifo(P("fifo0777"), 0o777),
                             eq("mkfifo 0777 under umask 0", mode("fifo0777"), 0o777)))
    guard("mkdir", lambda: (os.mkdir(P("dir0777"), 0o777),
                            eq("mkdir 0777 under umask 0", mode("dir0777"), 0o777)))
    def under_umask():
        os.umask(0o077)
        fd = os.open(P("u077"), os.O_CREAT | os.O_WRONLY, 0o777)
        os.close(fd)
        eq("open(O_CREAT, 0777) under umask 077 (the caller's umask still applies)", mode("u077"), 0o700)
        os.umask(0)
    guard("create under umask 077", under_umask)

    def links():
        n0, n1 = P("n0"), P("n1")
        with open(n0, "wb") as f:
            f.write(b"one file")
        os.chmod(n0, 0o644)
        s0 = os.lstat(n0)  # the kernel now holds n0's attributes
        time.sleep(1.1)    # so that a ctime that moves can be told apart
        os.link(n0, n1)
        a, b = os.lstat(n0), os.lstat(n1)
        eq("nlink of n0 right after link n0 n1", a.st_nlink, 2, "{}")
        eq("nlink of n1 right after link n0 n1", b.st_nlink, 2, "{}")
        eq("n0 and n1 are one inode", a.st_ino == b.st_ino, True, "{}")
        if not a.st_ctime_ns > s0.st_ctime_ns:
            fails.append(f"ctime of n0 does not move on link ({s0.st_ctime_ns} -> {a.st_ctime_ns})")
        os.chmod(n1, 0o651)
        eq("mode of n0 right after chmod 0651 through n1", mode("n0"), 0o651)
        os.chown(n1, 65534, 65533)
        a = os.lstat(n0)
        eq("uid of n0 right after chown through n1", a.st_uid, 65534, "{}")
        eq("gid of n0 right after chown through n1", a.st_gid, 65533, "{}")
        os.chmod(n0, 0o640)  # and the other way round
        eq("mode of n1 right after chmod 0640 through n0", mode("n1"), 0o640)
        os.unlink(n1)
        eq("nlink of n0 right after unlink n1", os.lstat(n0).st_nlink, 1, "{}")
        # Three names, one removed in the middle.
        os.link(n0, P("n2"))
        os.link(P("n2"), P("n3"))
        eq("nlink of n0 with three names", os.lstat(n0).st_nlink, 3, "{}")
        os.unlink(P("n2"))
        eq("nlink of n3 after unlink n2", os.lstat(P("n3")).st_nlink, 2, "{}")
        eq("nlink of n0 after unlink n2", os.lstat(n0).st_nlink, 2, "{}")
    guard("hard links", links)
else:
    for n, m in MODES.items():
        guard(f"after a remount: {n}", lambda: eq(f"after a remount: mode of {n}", mode(n), m))
    guard("after a remount: links", lambda: (
        eq("after a remount: nlink of n0", os.lstat(P("n0")).st_nlink, 2, "{}"),
        eq("after a remount: mode of n3", mode("n3"), 0o640),
        eq("after a remount: owner of n3", (os.lstat(P("n3")).st_uid, os.lstat(P("n3")).st_gid),
           (65534, 65533), "{}")))
for f in fails:
    print("FAILED:", f)
sys.exit(1 if fails else 0)
PYEOF

mnt
limit 60 "$PY" "$WORK/modes.py" "$M" run || check_fail "modes and hard links (see above)"
umnt
mnt
limit 60 "$PY" "$WORK/modes.py" "$M" verify || check_fail "modes and hard links after a remount (see above)"
umnt
lib_finish
