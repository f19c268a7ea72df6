#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Paths of any depth (issue 12, A: the whole encrypted path was built in one PATH_MAX buffer,
# so a 4,095-byte plaintext path of 127-byte names failed with ENAMETOOLONG and nesting stopped
# at 21 levels of 127-byte names). Through the mount, relative to it: mkdir -p of 31 folders of
# 127-byte names, a file at the bottom (a 4,095-byte path), write, read, stat, list, rename,
# unlink, rmdir all the way up; then 40 levels of 127-byte names reached one chdir at a time,
# with a file at the bottom that reads back after a remount.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log"; }
umnt() { unmount_fg "$M"; }

cat >"$WORK/deep.py" <<'PYEOF'
import errno, os, stat, sys
mnt, phase = sys.argv[1], sys.argv[2]
fails = []
def name(c, i):  # a 127-byte name
    return (f"{c}{i:03d}" + c * 127)[:127]
def step(what, fn, *a):
    try:
        return fn(*a)
    except OSError as e:
        fails.append(f"{what}: {errno.errorcode.get(e.errno, e.errno)}")
        raise
def read(p):
    with open(p, "rb") as f:
        return f.read()
def write(p, data):
    with open(p, "wb") as f:
        f.write(data)

os.chdir(mnt)
if phase == "run":
    # 31 folders + a file: 32 names of 127 bytes and 31 slashes = 4,095 bytes.
    dirs = "/".join(name("d", i) for i in range(31))
    f1, f2 = dirs + "/" + name("f", 0), dirs + "/" + name("g", 0)
    assert len(f1) == 4095 and len(f2) == 4095
    try:
        step(f"mkdir -p of {len(dirs)} bytes (31 levels)", os.makedirs, dirs)
        step("create a file at a 4,095-byte path", write, f1, b"deep" * 1000)
        data = step("read it", read, f1)
        if data != b"deep" * 1000:
            fails.append(f"read back {len(data)} bytes, not what was written")
        st = step("stat it", os.stat, f1)
        if not stat.S_ISREG(st.st_mode) or st.st_size != 4000:
            fails.append(f"stat: mode {st.st_mode:o}, size {st.st_size}")
        if step("list the bottom folder", os.listdir, dirs) != [name("f", 0)]:
            fails.append(f"listing: {os.listdir(dirs)}")
        step("rename at 4,095 bytes", os.rename, f1, f2)
        if step("read after the rename", read, f2) != b"deep" * 1000:
            fails.append("content after the rename")
        if os.path.lexists(f1):
            fails.append("the old name is still there after the rename")
        step("unlink at 4,095 bytes", os.unlink, f2)
        for i in range(31, 0, -1):
            step(f"rmdir at level {i}", os.rmdir, "/".join(name("d", j) for j in range(i)))
        if os.listdir(".") != []:
            fails.append(f"the mount lists {os.listdir('.')[:3]} after the rmdirs")
    except OSError:
        pass
    # Deeper than any path: 40 levels, one chdir at a time (the limit was 21).
    level = 0
    try:
        for level in range(1, 41):
            step(f"mkdir at level {level}", os.mkdir, name("n", level))
            step(f"chdir to level {level}", os.chdir, name("n", level))
        step("create a file at level 40", write, "bottom", b"bottom of 40 levels")
        if step("read it", read, "bottom") != b"bottom of 40 levels":
            fails.append("content at level 40")
        step("list level 40", os.listdir, ".")
    except OSError:
        fails.append(f"nesting stopped at level {level} of 40")
else:
    try:
        for level in range(1, 41):
            step(f"after a remount: chdir to level {level}", os.chdir, name("n", level))
        if step("after a remount: read the file at level 40", read, "bottom") != b"bottom of 40 levels":
            fails.append("after a remount: content at level 40")
        os.unlink("bottom")
        for level in range(40, 0, -1):
            os.chdir("..")
            step(f"after a remount: rmdir level {level}", os.rmdir, name("n", level))
    except OSError:
        pass
for f in fails:
    print("FAILED:", f)
sys.exit(1 if fails else 0)
PYEOF

mnt
limit 60 "$PY" "$WORK/deep.py" "$M" run || check_fail "deep paths (see above)"
umnt
mnt
limit 60 "$PY" "$WORK/deep.py" "$M" verify || check_fail "deep paths after a remount (see above)"
umnt
lib_finish
