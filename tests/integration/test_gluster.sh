#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The store on GlusterFS (DESIGN: shared and distributed storage). A distributed volume of two
# bricks, folders under the test's folder addressed by this machine's name, is served by the
# glusterd that runs here (or one the test starts, and stops again) and mounted with the
# GlusterFS FUSE client; `imgcrypt init` puts a store on that mount and imgcryptfs is mounted
# over it. Real images (PNG, PGM, DICOM) and files that are not images are copied in; once
# the backlog is 0 every image says `image ...` in user.imgcryptfs.storage and its backing
# entry is a PNG that pngcheck passes, on the GlusterFS mount and in the brick that holds it,
# and every file reads back exactly, before and after a remount. Then, as a user would: an
# in-place edit of a stored image, mkdir/rmdir, rename (also renameat2 RENAME_NOREPLACE and
# RENAME_EXCHANGE), hard links, symlinks, unlink, xattrs, fsync and flock, a sparse file with a
# punched hole; everything reads
# back as in a local mirror tree after a last remount. A second machine (its own GlusterFS
# client and daemon on the same store) reads it all, writes an image this one reads, and reads
# the new bytes of a stored image rewritten here. No temporary entry remains.
# Teardown, also in the trap, in reverse order: imgcryptfs, the GlusterFS mount, the volume,
# then, only if the test started it, glusterd and the state it created under /var/lib/glusterd,
# /var/run/gluster and /var/log/glusterfs.
# Needs root and glusterfs-server (scripts/setup.sh installs it); skipped (77) when GlusterFS
# is not installed, this machine's name does not resolve, or glusterd cannot start here.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"

PATH=$PATH:/usr/sbin:/sbin
[ "$(id -u)" = 0 ] || skip "needs root: glusterd, gluster volumes and mount -t glusterfs"
for t in glusterd gluster glusterfs mount.glusterfs; do
    command -v "$t" >/dev/null ||
        skip "$t is missing: GlusterFS is not installed (apt-get install glusterfs-server; scripts/setup.sh does)"
done
HOST=$(hostname)
[ -n "$HOST" ] && getent hosts "$HOST" >/dev/null ||
    skip "this machine's name '$HOST' does not resolve: glusterd addresses its bricks by it"
for t in getfattr setfattr pngcheck; do
    command -v "$t" >/dev/null || fail "$t is missing (apt-get install attr pngcheck)"
done
lib_setup

T0=$SECONDS
G=$WORK/gluster              # the GlusterFS mount
BR1=$WORK/brick1 BR2=$WORK/brick2
B=$G/store                   # the imgcryptfs store, on GlusterFS
M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
E=$WORK/expect               # a local tree that gets every change made in the mount
VOL=imgc_${WORK##*.}         # mktemp's suffix: letters and digits
GD_SOCK=/var/run/glusterd.socket
GD_DIRS=(/var/lib/glusterd /var/run/gluster /var/log/glusterfs)
G2=$WORK/gluster2 M2=$WORK/mnt2 # the same volume and store, as a second machine sees them
GD_STARTED=0 GD_PID="" VOL_MADE=0
declare -A GD_HAD            # the entries of GD_DIRS (and the socket) before glusterd started
TIMES=()

# lap NAME: the time since the last lap, for the summary at the end.
lap() {
    local now=${EPOCHREALTIME/,/.}
    TIMES+=("$1 $(awk -v a="$LAP" -v b="$now" 'BEGIN { printf "%.1f", b - a }')s")
    LAP=$now
}
LAP=${EPOCHREALTIME/,/.}

# ---- helpers --------------------------------------------------------------------------------

UTIL=$WORK/util.py
cat >"$UTIL" <<'EOF'
import ctypes, errno, hashlib, os, sys

from images_util import fresh_read

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "sha":            # sha ROOT: `sha256 relpath` of each regular file, read fresh
    root = args[0]
    for dp, dn, fn in os.walk(root):
        dn.sort()
        for n in sorted(fn):
            p = os.path.join(dp, n)
            if os.path.islink(p):
                continue
            try:
                h = hashlib.sha256(fresh_read(p)).hexdigest()
            except OSError as e:
                h = "ERROR:" + err(e)
            print(f"{h}  {os.path.relpath(p, root)}")
elif cmd == "backing":      # backing MNT BACKING FILE...: the backing entry of each file, or -
    backing, files = args[1], args[2:]
    inodes = {}
    for dp, dn, fn in os.walk(backing):
        for n in fn:
            p = os.path.join(dp, n)
            inodes.setdefault(os.lstat(p).st_ino, os.path.relpath(p, backing))
    for f in files:
        try:
            print(inodes.get(os.stat(os.path.join(args[0], f)).st_ino, "-"))
        except OSError:
            print("-")
elif cmd == "edit":         # edit FILE OFFSET SEED: 300 bytes written in place (r+)
    path, off, seed = args[0], int(args[1]), int(args[2])
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(bytes((seed * 7 + i * 13) & 0xFF for i in range(300)))
elif cmd == "rename2":      # rename2 noreplace|exchange A B: prints ok or the errno's name
    flags = {"noreplace": 1, "exchange": 2}[args[0]]
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.renameat2(-100, args[1].encode(), -100, args[2].encode(), flags)
    print("ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
elif cmd == "sparse":       # sparse FILE: 64 MiB, data at both ends and in the middle, a
    size, mid = 64 << 20, 32 << 20  # punched hole and a zeroed range; prints the bytes it takes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(args[0], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"start" * 1000)
    os.ftruncate(fd, size)
    os.pwrite(fd, b"end", size - 3)
    os.pwrite(fd, bytes(range(256)) * 1024, mid)
    for mode, off, n in ((3, mid + 1000, 100000), (16, mid + 150000, 5000)):
        if libc.fallocate(fd, mode, off, n) != 0:  # PUNCH_HOLE | KEEP_SIZE, ZERO_RANGE
            print(errno.errorcode.get(ctypes.get_errno(), "?"))
            sys.exit(0)
    os.close(fd)
    print(os.stat(args[0]).st_blocks * 512)
elif cmd == "sync":         # sync FILE DIR: fsync, fdatasync, flock of a file, fsync of a folder
    import fcntl
    try:
        fd = os.open(args[0], os.O_RDWR)
        os.fsync(fd)
        os.fdatasync(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        dfd = os.open(args[1], os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        print("ok")
    except OSError as e:
        print(err(e))
EOF

sha_tree() { limit 120 "$PY" "$UTIL" sha "$1"; }

# same_tree WHAT: every regular file of the mount reads as its twin in $E, and no file is
# missing or extra.
same_tree() {
    local d
    d=$(diff <(sha_tree "$E") <(sha_tree "$M") | grep '^[<>]')
    [ -z "$d" ] || check_fail "$1: the mount differs from the expected tree: $(head -n 8 <<<"$d" | tr '\n' ' ')"
}

# brick_copy REL: the brick file that holds the data of backing entry REL (not a DHT link
# file, which is empty and has the sticky bit), one a line.
brick_copy() {
    local br f
    for br in "$BR1" "$BR2"; do
        f=$br/store/$1
        [ -f "$f" ] && [ -s "$f" ] && ! [ -k "$f" ] && echo "$f"
    done
    return 0
}

# brick_files BRICK: how many files of the store (not DHT link files) the brick holds.
brick_files() {
    find "$1/store" -type f ! -perm -1000 | wc -l
}

# leftovers: conversion temporaries on the GlusterFS mount and in the bricks.
leftovers() {
    find "$B" "$BR1" "$BR2" -name .glusterfs -prune -o -name '.imgcryptfs.tmp.*' -print 2>/dev/null
}

mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }

glusterd_answers() {
    [ -S "$GD_SOCK" ] && limit 30 gluster --mode=script pool list >/dev/null 2>&1
}

# Processes whose command line names our folder, by program: glusterfsd (bricks), glusterfs
# (the FUSE client). Only builtins for the processes of other programs: /proc is long here.
procs_of() {
    local p c
    for p in /proc/[0-9]*; do
        read -r c 2>/dev/null <"$p/comm" || continue
        [ "$c" = "$1" ] || continue
        { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$WORK/" && echo "${p#/proc/}"
    done
    return 0
}

# running PID: the process exists and is not a zombie (PID 1 here may reap orphans late).
running() {
    local s
    [ -n "$1" ] && s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]
}

stop_pid() {
    running "$1" || return 0
    kill -TERM "$1" 2>/dev/null
    wait_gone "$1" 15 || { kill -KILL "$1" 2>/dev/null; wait_gone "$1" 5; }
}

gd_entries() {
    local d e
    for d in "${GD_DIRS[@]}"; do
        [ -d "$d" ] || continue
        for e in "$d"/* "$d"/.[!.]* "$d"/..?*; do
            [ -e "$e" ] || [ -L "$e" ] && echo "$e"
        done
    done
    [ -e "$GD_SOCK" ] && echo "$GD_SOCK"
    return 0
}

# Everything the test set up, in reverse order; safe to run twice, and from the trap (so it
# never calls fail). Messages go to stderr (hidden when run from the trap).
gluster_teardown() {
    local i p e m
    for m in "$M2" "$M"; do
        is_mounted "$m" || continue
        for ((i = 0; i < 50; i++)); do
            fusermount3 -u "$m" 2>/dev/null && break
            sleep 0.1
        done
        is_mounted "$m" && { say "teardown: lazy unmount of $m"; fusermount3 -uz "$m"; }
    done
    for p in "${PIDS[@]}"; do
        owned_pid "$p" || continue
        wait_gone "$p" 10 || { say "teardown: imgcryptfs $p still runs"; stop_pid "$p"; }
    done
    for m in "$G2" "$G"; do
        is_mounted "$m" || continue
        for ((i = 0; i < 25; i++)); do
            umount "$m" 2>/dev/null && break
            sleep 0.2
        done
        is_mounted "$m" && { say "teardown: lazy unmount of $m"; umount -l "$m"; }
    done
    for p in $(procs_of glusterfs); do
        wait_gone "$p" 10 || stop_pid "$p"
    done
    if [ "$VOL_MADE" = 1 ]; then
        limit 60 gluster --mode=script volume stop "$VOL" force >&2 || say "teardown: volume stop $VOL failed"
        if limit 60 gluster --mode=script volume delete "$VOL" >&2; then
            VOL_MADE=0
        else
            say "teardown: volume delete $VOL failed"
        fi
    fi
    for p in $(procs_of glusterfsd) $(procs_of glusterfs); do
        say "teardown: stopping $(cat "/proc/$p/comm" 2>/dev/null) $p, still running"
        stop_pid "$p"
    done
    # Our bricks' logs; glusterd's own logs are its admin's (unless the test started it).
    for e in "$BR1" "$BR2"; do
        e=${e#/}
        rm -f "/var/log/glusterfs/bricks/${e//\//-}.log"
    done
    if [ "$GD_STARTED" = 1 ]; then
        [ -z "$GD_PID" ] && [ -s "$WORK/glusterd.pid" ] && GD_PID=$(cat "$WORK/glusterd.pid")
        if [ -n "$GD_PID" ] && [ "$(cat "/proc/$GD_PID/comm" 2>/dev/null)" = glusterd ]; then
            # Hook scripts run by the volume delete, children of glusterd, finish first.
            for ((i = 0; i < 100; i++)); do
                [ -z "$(ps -o pid= --ppid "$GD_PID" 2>/dev/null)" ] && break
                sleep 0.1
            done
            stop_pid "$GD_PID"
        fi
        if running "$GD_PID"; then
            say "teardown: glusterd $GD_PID does not stop; its state is left in place"
        else
            while read -r e; do
                [ -n "${GD_HAD[$e]:-}" ] || rm -rf -- "$e"
            done < <(gd_entries)
            GD_STARTED=0
        fi
    fi
}
CLEANUP_CMDS+=("gluster_teardown")

# ---- glusterd, the volume, the GlusterFS mount ----------------------------------------------

step "glusterd"
if glusterd_answers; then
    say "a glusterd runs here already: the test uses it and leaves it running"
else
    [ -z "$(ls -A /var/lib/glusterd/vols /var/lib/glusterd/peers 2>/dev/null)" ] ||
        skip "glusterd does not run but /var/lib/glusterd has volumes or peers: not starting it behind its admin's back"
    while read -r e; do GD_HAD[$e]=1; done < <(gd_entries)
    GD_STARTED=1
    # Returns once glusterd is initialised (a fresh one runs gsyncd a dozen times first).
    if ! limit 120 glusterd -p "$WORK/glusterd.pid" >"$WORK/glusterd.out" 2>&1; then
        skip "glusterd does not start here: $(cat "$WORK/glusterd.out") $(grep ' [EC] \[' /var/log/glusterfs/glusterd.log 2>/dev/null | tail -n 2)"
    fi
    GD_PID=$(cat "$WORK/glusterd.pid" 2>/dev/null)
    for ((i = 0; i < 150; i++)); do
        glusterd_answers && break
        running "$GD_PID" || break
        sleep 0.2
    done
    glusterd_answers || skip "glusterd started but does not answer: $(grep ' [EC] \[' /var/log/glusterfs/glusterd.log 2>/dev/null | tail -n 2)"
fi
lap glusterd

step "a distributed volume of two bricks"
mkdir -p "$BR1" "$BR2" "$G"
# force: the bricks sit on the root filesystem, which gluster warns about.
limit 60 gluster --mode=script volume create "$VOL" "$HOST:$BR1" "$HOST:$BR2" force >"$WORK/gluster.out" 2>&1 ||
    fail "gluster volume create: $(cat "$WORK/gluster.out")"
VOL_MADE=1
limit 60 gluster --mode=script volume start "$VOL" >"$WORK/gluster.out" 2>&1 ||
    fail "gluster volume start: $(cat "$WORK/gluster.out")"
lap volume

step "mount -t glusterfs"
limit 60 mount -t glusterfs -o "log-level=WARNING,log-file=$WORK/gluster-client.log" "$HOST:/$VOL" "$G" ||
    fail "mount -t glusterfs $HOST:/$VOL $G failed"
is_mounted "$G" || fail "$G is not mounted"
[ "$(awk -v m="$G" '$2 == m { print $3 }' /proc/mounts)" = fuse.glusterfs ] ||
    fail "$G is not a GlusterFS mount: $(awk -v m="$G" '$2 == m' /proc/mounts)"
lap mount

# ---- the store on it ------------------------------------------------------------------------

step "imgcrypt init on GlusterFS and mount"
make_keyring "$B" "$K"
mnt
lap init+mount

SET=$WORK/set
IMAGES=(mri-t1-axial-8bit.png mri-t1-axial-12in16bit.png mri-t1-coronal-512.png mri-t1-rgb.png
    mri-t1-axial-8bit.pgm mri-t1-axial-12bit.pgm CT_small.dcm MR_small.dcm)
OTHERS=(notes.txt random.bin JPEG2000.dcm)
mkdir -p "$SET"
for f in "${IMAGES[@]}" JPEG2000.dcm; do
    cp "$IMGC_TESTDATA/$f" "$SET/" || fail "$IMGC_TESTDATA/$f is missing"
done
seq -f 'line %g: not an image' 1 3000 >"$SET/notes.txt"
head -c 300000 /dev/urandom >"$SET/random.bin"
mkdir -p "$E"
cp -r "$SET" "$E/set"

step "copy into the mount and wait for the conversions"
limit 120 cp -r "$SET" "$M/set" || fail "cp -r into the mount"
wait_backlog "$M" 90
lap copy+convert
same_tree "read back once converted"
lap read-back

# check_stored: the storage xattr of each file, and its backing entry on the GlusterFS mount
# and in the brick; fills BACK[name].
declare -A BACK
check_stored() {
    local n i b v kind c rels copies
    local names=("${IMAGES[@]}" "${OTHERS[@]}")
    mapfile -t rels < <(limit 60 "$PY" "$UTIL" backing "$M/set" "$B" "${names[@]}")
    for i in "${!names[@]}"; do
        n=${names[$i]} b=${rels[$i]:--}
        BACK[$n]=$b
        v=$(storage_of "$M/set/$n")
        kind=blocks
        [ "$i" -lt "${#IMAGES[@]}" ] && kind=image
        if [ "$kind" = image ]; then
            [[ $v =~ ^image\ coder=([0-9a-f]{32}|fixed)\ autoencoder=([0-9a-f]{32}|none)$ ]] ||
                check_fail "$STEP: $n says '$v' in user.imgcryptfs.storage, expected image coder=... autoencoder=..."
        else
            [ "$v" = blocks ] || check_fail "$STEP: $n says '$v', expected blocks"
        fi
        if [ "$b" = - ]; then
            check_fail "$STEP: no backing entry on GlusterFS has the inode number of $n"
            continue
        fi
        if [ "$kind" = image ]; then
            [ "$(head_magic "$B/$b")" = png ] && pngcheck -q "$B/$b" >/dev/null 2>&1 ||
                check_fail "$STEP: the backing entry of $n on GlusterFS is not a PNG that pngcheck passes ($(head_magic "$B/$b"))"
        else
            [ "$(head_magic "$B/$b")" = blocks ] || check_fail "$STEP: the backing entry of $n is not a block file"
        fi
        mapfile -t copies < <(brick_copy "$b")
        if [ "${#copies[@]}" != 1 ]; then
            check_fail "$STEP: $n: ${#copies[@]} bricks hold the data of store/$b (expected 1)"
            continue
        fi
        c=${copies[0]}
        cmp -s "$c" "$B/$b" || check_fail "$STEP: $n: ${c#"$WORK"/} differs from store/$b read through GlusterFS"
        if [ "$kind" = image ]; then
            pngcheck -q "$c" >/dev/null 2>&1 || check_fail "$STEP: $n: pngcheck fails on ${c#"$WORK"/} in the brick"
        fi
    done
}
check_stored
say "the store's files: $(brick_files "$BR1") in brick1, $(brick_files "$BR2") in brick2"
lap checks

step "after a remount"
unmount_fg "$M"
mnt
lap remount
same_tree "read back after a remount"
check_stored
lap checks

# ---- what users do --------------------------------------------------------------------------

step "in-place edit (r+) of a stored image"
f=set/mri-t1-axial-8bit.pgm
size=$(stat -c %s "$E/$f")
for R in "$M" "$E"; do
    limit 30 "$PY" "$UTIL" edit "$R/$f" $((size - 5000)) 3 || check_fail "r+ edit of $R/$f failed"
done
cmp -s "$E/$f" "$M/$f" || check_fail "$f reads back other bytes right after the in-place edit"
wait_backlog "$M" 60
same_tree "after the in-place edit"
v=$(storage_of "$M/$f")
[ "${v%% *}" = image ] || check_fail "$f is '$v' after the edit and the backlog, expected image again"
lap edit

step "mkdir, rename, hard link, symlink, unlink"
for R in "$M" "$E"; do
    { mkdir -p "$R/dir/sub" "$R/empty" &&
        mv "$R/set/CT_small.dcm" "$R/dir/sub/ct.dcm" &&
        mv "$R/dir" "$R/dir2" &&
        rmdir "$R/empty" &&
        ln "$R/set/MR_small.dcm" "$R/dir2/mr-link.dcm" &&
        ln -s ../set/JPEG2000.dcm "$R/dir2/jp2-link" &&
        rm "$R/set/random.bin"; } || check_fail "mkdir/mv/rmdir/ln/rm in $R failed"
done
[ ! -e "$M/dir" ] && [ ! -e "$M/empty" ] && [ -d "$M/dir2/sub" ] || check_fail "the folder renames and rmdir are not what ls shows"
v=$(storage_of "$M/dir2/sub/ct.dcm")
[ "${v%% *}" = image ] || check_fail "ct.dcm is '$v' after two renames, expected image"
[ "$(stat -c %h "$M/set/MR_small.dcm")" = 2 ] && [ "$(stat -c %h "$M/dir2/mr-link.dcm")" = 2 ] ||
    check_fail "MR_small.dcm and its hard link do not show 2 links"
[ "$(stat -c %i "$M/set/MR_small.dcm")" = "$(stat -c %i "$M/dir2/mr-link.dcm")" ] ||
    check_fail "MR_small.dcm and its hard link have different inode numbers"
v=$(storage_of "$M/dir2/mr-link.dcm")
[ "$v" = blocks ] || check_fail "a stored image with a second link is '$v', expected blocks"
[ "$(readlink "$M/dir2/jp2-link")" = ../set/JPEG2000.dcm ] && cmp -s "$M/dir2/jp2-link" "$SET/JPEG2000.dcm" ||
    check_fail "the symlink does not read back"
b=${BACK[random.bin]:--}
if [ "$b" != - ]; then
    [ ! -e "$B/$b" ] && [ -z "$(brick_copy "$b")" ] ||
        check_fail "the backing entry of the unlinked random.bin remains on GlusterFS or in a brick"
fi
for R in "$M" "$E"; do
    rm "$R/dir2/mr-link.dcm" || check_fail "unlink of the hard link in $R failed"
done
[ "$(stat -c %h "$M/set/MR_small.dcm")" = 1 ] || check_fail "MR_small.dcm has $(stat -c %h "$M/set/MR_small.dcm") links after the unlink, expected 1"
same_tree "after mkdir, rename, link, unlink"
lap namespace

step "renameat2 RENAME_NOREPLACE and RENAME_EXCHANGE"
r=$(limit 30 "$PY" "$UTIL" rename2 noreplace "$M/set/notes.txt" "$M/dir2/notes.txt")
if [ "$r" = ok ]; then
    mv "$E/set/notes.txt" "$E/dir2/notes.txt"
    r=$(limit 30 "$PY" "$UTIL" rename2 noreplace "$M/dir2/notes.txt" "$M/set/JPEG2000.dcm")
    [ "$r" = EEXIST ] || check_fail "renameat2(RENAME_NOREPLACE) onto an existing file gave $r, expected EEXIST"
else
    check_fail "renameat2(RENAME_NOREPLACE) to a new name fails with $r (GlusterFS has no RENAME_NOREPLACE: the daemon must fall back)"
fi
r=$(limit 30 "$PY" "$UTIL" rename2 exchange "$M/set/mri-t1-rgb.png" "$M/dir2/sub/ct.dcm")
case $r in
ok) "$PY" "$UTIL" rename2 exchange "$E/set/mri-t1-rgb.png" "$E/dir2/sub/ct.dcm" >/dev/null ;;
EINVAL) say "RENAME_EXCHANGE: EINVAL, as GlusterFS itself answers (it has no atomic exchange)" ;;
*) check_fail "renameat2(RENAME_EXCHANGE) gave $r, expected ok or EINVAL" ;;
esac
same_tree "after renameat2"

step "xattrs"
XF=$M/set/mri-t1-axial-8bit.png # a stored image
for x in "$XF" "$M/dir2" "$M/set/JPEG2000.dcm"; do
    setfattr -n user.site -v "gluster brick 7" "$x" || { check_fail "setfattr user.site on $x failed"; continue; }
    [ "$(getfattr --absolute-names -n user.site --only-values "$x" 2>/dev/null)" = "gluster brick 7" ] ||
        check_fail "getfattr user.site on $x does not give the value set"
    getfattr --absolute-names -d "$x" 2>/dev/null | grep -q '^user.site=' || check_fail "listxattr of $x does not show user.site"
done
setfattr -x user.site "$M/set/JPEG2000.dcm" || check_fail "removexattr user.site failed"
getfattr --absolute-names -n user.site "$M/set/JPEG2000.dcm" >/dev/null 2>&1 && check_fail "user.site is still there after removexattr"
v=$(storage_of "$XF")
[ "${v%% *}" = image ] || check_fail "a stored image is '$v' after an xattr was set on it"
# The backing entries carry the xattr sealed: neither its name nor its value shows.
hits=$(getfattr --absolute-names -R -d -m - "$B" 2>/dev/null | grep -c -e 'user\.site' -e 'gluster brick 7')
[ "$hits" = 0 ] || check_fail "the xattr's name or value appears in plain on GlusterFS ($hits lines)"

step "fsync, fdatasync, flock"
r=$(limit 30 "$PY" "$UTIL" sync "$M/set/JPEG2000.dcm" "$M/dir2")
[ "$r" = ok ] || check_fail "fsync/fdatasync/flock of a file or fsync of a folder in the mount: $r"
lap renameat2+xattrs+sync

step "a sparse file: truncate up, a write far past the end, a punched hole, a zeroed range"
used=$(limit 60 "$PY" "$UTIL" sparse "$M/dir2/sparse.bin")
limit 60 "$PY" "$UTIL" sparse "$E/dir2/sparse.bin" >/dev/null
case $used in
'' | *[!0-9]*) check_fail "sparse file on GlusterFS: $used" ;;
*) [ "$used" -lt $((4 << 20)) ] || check_fail "a 64 MiB sparse file with 300 KB of data takes $used bytes" ;;
esac
lap sparse

step "after a last remount"
unmount_fg "$M"
mnt
lap remount
same_tree "read back after the last remount"
for f in set/mri-t1-axial-8bit.pgm set/MR_small.dcm; do
    v=$(storage_of "$M/$f")
    [ -n "$v" ] && [ "$v" != ERROR ] || check_fail "$f: no storage xattr after the remount"
done
[ "$(getfattr --absolute-names -n user.site --only-values "$XF" 2>/dev/null)" = "gluster brick 7" ] ||
    check_fail "user.site of a stored image is lost after the remount"
wait_backlog "$M" 60
lap checks

step "a second machine on the same store"
# Its own GlusterFS client and daemon, both mounts live at once.
D1=$DAEMON_PID
mkdir -p "$G2"
limit 60 mount -t glusterfs -o "log-level=WARNING,log-file=$WORK/gluster-client2.log" "$HOST:/$VOL" "$G2" ||
    fail "a second mount -t glusterfs of $VOL failed"
mount_fg "$G2/store" "$M2" "$K" "$WORK/daemon2.log"
D2=$DAEMON_PID
d=$(diff <(sha_tree "$E") <(sha_tree "$M2") | grep '^[<>]')
[ -z "$d" ] || check_fail "the second machine reads other bytes: $(head -n 8 <<<"$d" | tr '\n' ' ')"
# A new image written there is converted there and reads right here.
cp "$SET/mri-t1-axial-12bit.pgm" "$M2/set/second.pgm" && cp "$SET/mri-t1-axial-12bit.pgm" "$E/set/second.pgm" ||
    check_fail "cp into the second machine's mount failed"
wait_backlog "$M2"
v=$(storage_of "$M/set/second.pgm")
[ "${v%% *}" = image ] || check_fail "a file converted by the second machine says '$v' here, expected image"
cmp -s "$M/set/second.pgm" "$SET/mri-t1-axial-12bit.pgm" || check_fail "a file written by the second machine reads other bytes here"
# A stored image that the second machine has read (its plaintext cached there) is rewritten
# here: the second machine must read the new bytes.
cmp -s "$M2/set/mri-t1-axial-8bit.png" "$SET/mri-t1-axial-8bit.png" || check_fail "the second machine misreads mri-t1-axial-8bit.png"
for R in "$M" "$E"; do
    cp "$SET/mri-t1-coronal-512.png" "$R/set/mri-t1-axial-8bit.png" || check_fail "cp over a stored image in $R failed"
done
wait_backlog "$M"
cmp -s "$M/set/mri-t1-axial-8bit.png" "$SET/mri-t1-coronal-512.png" || check_fail "a rewritten stored image reads other bytes here"
# Another mount's change shows once the second kernel's entry and attribute cache (1 s, the
# mount's timeouts) has let the old name go: its next lookup finds the new file.
sleep 1.2
cmp -s "$M2/set/mri-t1-axial-8bit.png" "$SET/mri-t1-coronal-512.png" ||
    check_fail "the second machine reads the old bytes of a stored image rewritten here ($(cmp "$M2/set/mri-t1-axial-8bit.png" "$SET/mri-t1-coronal-512.png" 2>&1 | head -c 100))"
d=$(diff <(sha_tree "$E") <(sha_tree "$M2") | grep '^[<>]')
[ -z "$d" ] || check_fail "the second machine reads other bytes after the changes here: $(head -n 8 <<<"$d" | tr '\n' ' ')"
DAEMON_PID=$D2
unmount_fg "$M2"
DAEMON_PID=$D1
lap second-machine
same_tree "here, after the second machine"
unmount_fg "$M"
left=$(leftovers)
[ -z "$left" ] || check_fail "temporary entries left on GlusterFS or in a brick: $left"
lap checks

# ---- teardown, checked ----------------------------------------------------------------------

step "teardown"
started=$GD_STARTED
gluster_teardown
for m in "$M" "$M2" "$G" "$G2"; do
    is_mounted "$m" && check_fail "$m is still mounted"
done
[ "$VOL_MADE" = 0 ] || check_fail "volume $VOL could not be deleted"
[ -z "$(procs_of glusterfsd)$(procs_of glusterfs)" ] || check_fail "brick or client processes of the test still run"
if [ "$started" = 1 ]; then
    running "$GD_PID" && check_fail "glusterd $GD_PID, started by the test, still runs"
    extra=$(while read -r e; do [ -n "${GD_HAD[$e]:-}" ] || echo "$e"; done < <(gd_entries))
    [ -z "$extra" ] || check_fail "glusterd state left behind: $extra"
else
    limit 30 gluster --mode=script volume info "$VOL" >/dev/null 2>&1 && check_fail "volume $VOL still exists"
fi
lap teardown
say "timings: ${TIMES[*]}; total $((SECONDS - T0))s"
STEP="" # a failed check is reported where it happened, not as the teardown's
lib_finish
