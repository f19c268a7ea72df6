#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A full disk must not destroy data already written, nor leave broken entries (issue 12,
# defects 2 and 3). The backing folder sits on a small tmpfs; a synced 10,000-byte file is
# written, the disk is filled, then: an append and a truncate-grow fail with ENOSPC (a grow that
# succeeds is fine if it reads as the old bytes and zeros) and the file still reads back its exact
# 10,000 bytes now, after a remount, and after space is freed, when appends work again. On a
# full disk again: open(O_CREAT) fails with ENOSPC and leaves no entry (or succeeds with a
# readable empty file), touch does the same, mkdir fails with ENOSPC (not EIO) and leaves no
# entry, cp -r fails saying there is no space. Needs root (mount -t tmpfs).
. "$(dirname "$0")/lib.sh"
lib_setup
[ "$(id -u)" = 0 ] || skip "mounting a tmpfs needs root"

T=$WORK/tmpfs M=$WORK/mnt K=$WORK/key
B=$T/backing
mkdir -p "$T"
# The keyring (~600 KB with its models) and the folder ids must fit before the disk is filled.
mount -t tmpfs -o size=4m,mode=0755 tmpfs "$T" || skip "cannot mount a tmpfs"
CLEANUP_CMDS+=("umount '$T' || umount -l '$T'")
# Runs first in the trap (last in, first out): the daemon must let go of the tmpfs.
CLEANUP_CMDS+=("fusermount3 -u '$M' || fusermount3 -uz '$M'; sleep 0.3")
make_keyring "$B" "$K"
# mount_fg and a wait on its PID: lib.sh's daemon search over /proc is slow on a busy machine.
mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log"; }
umnt() { unmount_fg "$M"; }
mnt

fill() { # fill the tmpfs to the last page, beside the backing folder (as another program would)
    local i=0
    while dd if=/dev/zero of="$T/filler$i" bs=4096 2>/dev/null; do i=$((i + 1)); done
    dd if=/dev/zero of="$T/fillertail" bs=1 count=4096 2>/dev/null

    [ "$(df --output=avail -B1 "$T" | tail -n1 | tr -d ' ')" -lt 4096 ] || say "tmpfs not quite full: $(df -h "$T" | tail -n1)"
}
unfill() { rm -f "$T"/filler*; }

cat >"$WORK/enospc.py" <<'PYEOF'
import errno, hashlib, os, stat, sys
mnt, step = sys.argv[1], sys.argv[2]
data = os.path.join(mnt, "data")
OLD = bytes((i * 7 + i // 251) & 0xFF for i in range(10000))
fails = []

def check(what, ok, detail=""):
    if not ok:
        fails.append(f"{what}{': ' + detail if detail else ''}")

def ename(e):
    return errno.errorcode.get(e, str(e))

def fresh_read(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out = b""
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return out
            out += b
    finally:
        os.close(fd)

def old_intact(when):
    try:
        got = fresh_read(data)
    except OSError as e:
        check(f"{when}: the 10,000-byte file reads", False, ename(e.errno))
        return
    check(f"{when}: the file reads back its old 10,000 bytes",
          hashlib.sha256(got).digest() == hashlib.sha256(OLD).digest(),
          f"{len(got)} bytes, first difference at "
          f"{next((i for i in range(min(len(got), 10000)) if got[i] != OLD[i]), min(len(got), 10000))}")
    check(f"{when}: st_size", os.stat(data).st_size == 10000, str(os.stat(data).st_size))

def first_error(*ops):
    """Run the steps of one operation; the errno of the first that fails, or None."""
    for op in ops:
        try:
            op()
        except OSError as e:
            return e.errno
    return None

if step == "write":
    fd = os.open(data, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, OLD)
    os.fsync(fd)
    os.close(fd)
    old_intact("before filling")

elif step == "full":
    # Append 5,000 bytes: must fail with ENOSPC, at write, fsync or close.
    fd = os.open(data, os.O_WRONLY | os.O_APPEND)
    err = first_error(lambda: os.write(fd, b"A" * 5000), lambda: os.fsync(fd))
    try:
        os.close(fd)
    except OSError as e:
        err = err or e.errno
    check("append on a full disk fails with ENOSPC", err == errno.ENOSPC,
          "no error" if err is None else ename(err))
    old_intact("after the failed append")
    # Append past the last block's end: a new block is needed.
    fd = os.open(data, os.O_WRONLY)
    err = first_error(lambda: os.pwrite(fd, b"B" * 9000, 10000), lambda: os.fsync(fd))
    os.close(fd)
    check("pwrite-append of 9,000 bytes on a full disk fails with ENOSPC", err == errno.ENOSPC,
          "no error" if err is None else ename(err))
    old_intact("after the failed pwrite-append")
    # Truncate-grow: ENOSPC, or (a store with holes) success reading as the old bytes + zeros.
    try:
        os.truncate(data, 30000)
        grown = None
        try:
            grown = fresh_read(data)
        except OSError as e:
            check("truncate-grow succeeded but the file reads", False, ename(e.errno))
        if grown is not None:
            check("truncate-grow succeeded: old bytes then zeros", grown == OLD + bytes(20000),
                  f"{len(grown)} bytes")
        os.truncate(data, 10000)
        print("note: truncate-grow succeeded on the full disk")
    except OSError as e:
        check("truncate-grow on a full disk fails with ENOSPC", e.errno == errno.ENOSPC, ename(e.errno))
    old_intact("after the truncate-grow")

elif step == "check":
    old_intact(sys.argv[3])

elif step == "append":
    try:
        with open(data, "ab") as f:
            f.write(b"C" * 5000)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        check("append after space was freed", False, ename(e.errno))
    try:
        got = fresh_read(data)
        check("append after space was freed", got == OLD + b"C" * 5000, f"{len(got)} bytes")
    except OSError as e:
        check("append after space was freed: reading", False, ename(e.errno))
    try:
        os.truncate(data, 10000)
    except OSError as e:
        check("truncate back to 10,000 bytes after space was freed", False, ename(e.errno))

elif step == "create":
    # open(O_CREAT) of a new file: ENOSPC and no entry, or success and a readable empty file.
    p = os.path.join(mnt, "newfile")
    try:
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
        created = True
    except OSError as e:
        created = False
        check("open(O_CREAT) on a full disk fails with ENOSPC", e.errno == errno.ENOSPC, ename(e.errno))
    listed = "newfile" in os.listdir(mnt)
    if not created:
        check("a failed open(O_CREAT) leaves no entry", not listed and not os.path.lexists(p),
              f"listed={listed}, size={os.lstat(p).st_size if os.path.lexists(p) else '-'}")
    if listed or created:
        try:
            st = os.lstat(p)
            got = fresh_read(p)
            check("the created entry is an empty file", got == b"" and st.st_size == 0,
                  f"st_size {st.st_size}, read {len(got)} bytes")
        except OSError as e:
            check("the created entry reads", False, f"{ename(e.errno)}")
    # mkdir: ENOSPC, not EIO, and no entry.
    d = os.path.join(mnt, "newdir")
    try:
        os.mkdir(d, 0o755)
        check("mkdir on a full disk fails with ENOSPC", False, "it succeeded")
    except OSError as e:
        check("mkdir on a full disk fails with ENOSPC", e.errno == errno.ENOSPC, ename(e.errno))
    check("a failed mkdir leaves no entry", "newdir" not in os.listdir(mnt) and not os.path.lexists(d))

elif step == "listing":
    # What the mount lists must all be readable (no entry left that reads EIO).
    for n in sorted(os.listdir(mnt)):
        p = os.path.join(mnt, n)
        try:
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                fresh_read(p)
        except OSError as e:
            check(f"{sys.argv[3]}: listed entry {n!r} reads", False, ename(e.errno))

for f in fails:
    print("FAILED:", f)
sys.exit(1 if fails else 0)
PYEOF
run() { limit 60 "$PY" "$WORK/enospc.py" "$M" "$@"; }

run write || fail "could not write the 10,000-byte file"
fill
say "disk full: $(df -h "$T" | tail -n1)"
run full || check_fail "append / truncate-grow on a full disk (see above)"
run check "full disk, still mounted" || check_fail "old bytes on the full disk"
umnt
mnt
run check "after a remount on the full disk" || check_fail "old bytes after a remount"
unfill
run check "after space was freed" || check_fail "old bytes after space was freed"
run append || check_fail "append after space was freed"

# A full disk again: creations.
fill
run create || check_fail "open(O_CREAT) / mkdir on a full disk (see above)"
rm -f "$M/newfile" 2>/dev/null
if touch "$M/touched" 2>"$WORK/touch.err"; then
    # Success is only right if touch made a readable empty file.
    if [ -e "$M/touched" ] && [ "$(limit 10 cat "$M/touched" 2>&1 | wc -c)" = 0 ] && [ ! -s "$M/touched" ]; then
        say "touch on a full disk made an empty file"
    else
        check_fail "touch on a full disk exits 0 but leaves an entry of $(stat -c %s "$M/touched" 2>&1) bytes that reads: $(limit 10 cat "$M/touched" 2>&1 | head -c 100)"
    fi
    rm -f "$M/touched"
elif [ -e "$M/touched" ] || [ -L "$M/touched" ]; then
    check_fail "a failed touch leaves an entry ($(stat -c %s "$M/touched" 2>&1) bytes)"
fi
rm -f "$M/touched" 2>/dev/null
mkdir -p "$WORK/src/sub"
for i in 1 2 3; do head -c 20000 /dev/urandom >"$WORK/src/f$i"; head -c 9000 /dev/urandom >"$WORK/src/sub/g$i"; done
if cp -r "$WORK/src" "$M/copy" 2>"$WORK/cp.err"; then
    check_fail "cp -r onto a full disk exits 0"
elif ! grep -qi "no space" "$WORK/cp.err"; then
    check_fail "cp -r onto a full disk: the error does not say there is no space: $(head -n2 "$WORK/cp.err" | tr '\n' ' ')"
fi
run listing "full disk, after the failed creations" || check_fail "entries left that do not read (see above)"
rm -rf "$M/copy" 2>/dev/null
run check "after the failed creations" || check_fail "old bytes after the failed creations"
unfill
umnt
mnt
run listing "after a remount" || check_fail "entries after a remount (see above)"
run check "at the end" || check_fail "old bytes at the end"
names=$(find "$M" -mindepth 1 -maxdepth 1 -printf '%f ')
[ "$names" = "data " ] || check_fail "the mount lists more than the one file: $names"
umnt
tmp=$(find "$B" -name '.imgcryptfs.tmp.*' | head -n3)
[ -z "$tmp" ] || check_fail "temporary entries left in the backing folder: $tmp"
lib_finish
