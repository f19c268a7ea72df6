#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A full disk during the conversion of images (issue 14). The backing folder sits on a small
# tmpfs. An image (a 1024x1024 16-bit PGM, 2 MB) is written and fsynced, the tmpfs is filled
# (by another program, beside the backing folder), and only then is the file closed, so that
# its conversion finds no room for the container's temporary file: with no byte free, and with
# 64 KiB free (the temporary file starts, then fails). Each time: the file stays `blocks`,
# reads back with its SHA-256, the log says "conversion of ...: no space left ...; it stays a
# block file", and no temporary entry remains. A stored image opened for writing (r+) or cut
# by truncate(2) on the full disk (it must first become a block file again) fails with ENOSPC
# and stays readable and stored, or succeeds with exactly the expected bytes. After a remount
# on the full disk everything reads back; once space is freed, a rewrite converts again.
# Needs root (mount -t tmpfs).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
[ "$(id -u)" = 0 ] || skip "mounting a tmpfs needs root"
images_need getfattr pil mricron

T=$WORK/tmpfs M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log POOL=$WORK/pool
B=$T/backing
mkdir -p "$T" "$POOL"
limit 120 "$PY" "$IMGU" big "$POOL/big16.pgm" 1024 16 || fail "cannot make big16.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/big8.pgm" 1024 8 || fail "cannot make big8.pgm"
# The keyring (~600 KB), three 2 MB block files and a container.
mount -t tmpfs -o size=12m,mode=0755 tmpfs "$T" || skip "cannot mount a tmpfs"
CLEANUP_CMDS+=("umount '$T' || umount -l '$T'")
CLEANUP_CMDS+=("fusermount3 -u '$M' || fusermount3 -uz '$M'; sleep 0.3")
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }
umnt() { unmount_fg "$M"; }
mnt

# fill [KEEP_KIB]: fill the tmpfs to the last page, then free KEEP_KIB KiB again.
fill() {
    local i=0 keep=${1:-0}
    [ "$keep" -gt 0 ] && dd if=/dev/zero of="$T/keep" bs=1024 count="$keep" 2>/dev/null
    while dd if=/dev/zero of="$T/filler$i" bs=65536 2>/dev/null; do i=$((i + 1)); done
    while dd if=/dev/zero of="$T/filler$i" bs=4096 2>/dev/null; do i=$((i + 1)); done
    rm -f "$T/keep"
    say "tmpfs filled, $(df --output=avail -B1 "$T" | tail -n1 | tr -d ' ') bytes free"
}
unfill() { rm -f "$T"/filler*; }

cat >"$WORK/enospc.py" <<'EOF'
import errno, hashlib, os, sys
mode, mnt, pool = sys.argv[1:4]
problems = []

def name(e):
    return errno.errorcode.get(e, str(e))

from images_util import fresh_read as fresh  # read with cached pages dropped

def storage(path):
    try:
        return os.getxattr(path, "user.imgcryptfs.storage").decode()
    except OSError as e:
        return "ERROR:" + name(e.errno)

if mode == "open":
    # Write and fsync, keep the descriptor open; the caller fills the disk, then says go.
    path, src = sys.argv[4], sys.argv[5]
    data = open(os.path.join(pool, src), "rb").read()
    fd = os.open(os.path.join(mnt, path), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    print("written", flush=True)
    sys.stdin.readline()
    os.close(fd)
    sys.exit(0)

if mode == "writes":
    # On the full disk: a stored image opened r+ and written, and cut by truncate(2).
    path, src = sys.argv[4], sys.argv[5]
    p = os.path.join(mnt, path)
    data = bytearray(open(os.path.join(pool, src), "rb").read())
    if not storage(p).startswith("image"):
        problems.append(f"{path} is '{storage(p)}' before the writes, expected an image")
    want = bytes(data)
    try:
        with open(p, "r+b") as f:
            f.seek(len(data) - 1000)
            f.write(b"\x01" * 10)
        data[len(data) - 1000:len(data) - 990] = b"\x01" * 10
        want = bytes(data)
        print("note: r+ write of a stored image on the full disk succeeded")
    except OSError as e:
        if e.errno != errno.ENOSPC:
            problems.append(f"r+ write of {path} on the full disk fails with {name(e.errno)}, not ENOSPC")
    got = fresh(p)
    if hashlib.sha256(got).digest() != hashlib.sha256(want).digest():
        problems.append(f"{path} after the r+ write on the full disk: {len(got)} bytes, not the expected ones")
    try:
        os.truncate(p, 1000)
        want = want[:1000]
        print("note: truncate of a stored image on the full disk succeeded")
    except OSError as e:
        if e.errno != errno.ENOSPC:
            problems.append(f"truncate of {path} on the full disk fails with {name(e.errno)}, not ENOSPC")
    got = fresh(p)
    if hashlib.sha256(got).digest() != hashlib.sha256(want).digest():
        problems.append(f"{path} after the truncate on the full disk: {len(got)} bytes, not the expected ones")
    with open(sys.argv[6], "wb") as f:
        f.write(want)

for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF

# close_on_full NAME SRC KEEP_KIB: write NAME from SRC and fsync, fill the disk leaving
# KEEP_KIB KiB, close, wait for the conversion; NAME must stay a block file with SRC's bytes.
nospace_lines() { grep -F "conversion of $B/" "$LOG" | grep -F "no space left" | grep -cF "stays a block file"; }
close_on_full() {
    local name=$1 src=$2 keep=$3 v line n0
    coproc W { limit 120 "$PY" "$WORK/enospc.py" open "$M" "$POOL" "$name" "$src"; }
    PIDS+=("$W_PID")
    read -r line <&"${W[0]}" || fail "$name: the writer did not write"
    [ "$line" = written ] || fail "$name: the writer says '$line'"
    fill "$keep"
    n0=$(nospace_lines)
    echo go >&"${W[1]}"
    wait "$W_PID" || check_fail "$name: the writer failed"
    wait_backlog "$M" 120
    v=$(storage_of "$M/$name")
    [ "$v" = blocks ] || check_fail "$name: '$v' after its conversion hit a full disk, expected blocks"
    [ "$(sha_list "$M" "$name" | cut -d' ' -f1)" = "$(sha256sum <"$POOL/$src" | cut -d' ' -f1)" ] ||
        check_fail "$name does not read back its bytes after the conversion hit a full disk"
    [ "$(nospace_lines)" -gt "$n0" ] ||
        check_fail "$name: no log line 'conversion of ...: no space left ...; it stays a block file': $(grep -F 'conversion of' "$LOG" | tail -n 2)"
    left=$(tmp_leftovers "$B")
    [ -z "$left" ] || check_fail "$name: temporary entries left after the failed conversion: $left"
}

step "conversion with no byte free"
close_on_full a.pgm big16.pgm 0
step "conversion with 64 KiB free"
unfill
close_on_full b.pgm big8.pgm 64
unfill

step "a stored image written and truncated on a full disk"
cp "$POOL/big8.pgm" "$M/c.pgm" || fail "cp c.pgm"
wait_backlog "$M" 120
[ "$(storage_kind "$M/c.pgm")" = image ] || check_fail "c.pgm is '$(storage_of "$M/c.pgm")' with room to spare, expected image"
fill
limit 120 "$PY" "$WORK/enospc.py" writes "$M" "$POOL" c.pgm big8.pgm "$WORK/c.expected" ||
    check_fail "writes to a stored image on the full disk (see above)"

step "after a remount on the full disk"
umnt
mnt
sha_list "$M" a.pgm b.pgm c.pgm >"$WORK/full.sha"
{
    echo "$(sha256sum <"$POOL/big16.pgm" | cut -d' ' -f1)  a.pgm"
    echo "$(sha256sum <"$POOL/big8.pgm" | cut -d' ' -f1)  b.pgm"
    echo "$(sha256sum <"$WORK/c.expected" | cut -d' ' -f1)  c.pgm"
} >"$WORK/want.sha"
same_hashes "after a remount on the full disk" "$WORK/want.sha" "$WORK/full.sha"

step "space freed: a rewrite converts again"
unfill
limit 60 "$PY" -c '
import sys
with open(sys.argv[1], "r+b") as f:
    b = f.read(1)
    f.seek(0)
    f.write(b)' "$M/a.pgm" || check_fail "rewriting a.pgm"
wait_backlog "$M" 120
v=$(storage_of "$M/a.pgm")
[ "${v%% *}" = image ] || check_fail "a.pgm is '$v' after a rewrite with room to spare, expected image"
sha_list "$M" a.pgm b.pgm c.pgm >"$WORK/end.sha"
same_hashes "at the end" "$WORK/want.sha" "$WORK/end.sha"
umnt
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left in the backing folder: $left"
lib_finish
