#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Mounting the way sysadmins do, through mount(8): an fstab line of type imgcryptfs (mount
# runs /sbin/mount.imgcryptfs) with nofail, an fstab line of type fuse.imgcryptfs (mount runs
# mount.fuse3, which runs imgcryptfs from the default PATH), mount.fuse3 directly, and mount
# -t imgcryptfs on the command line; umount(8) to unmount; a wrong key through mount(8).
# Data written through one way is read through the next. Needs root. Links it makes in
# /sbin and /usr/local/sbin (only where nothing is installed) are removed at the end.
. "$(dirname "$0")/lib.sh"
[ -e /dev/fuse ] || skip "/dev/fuse is absent"
[ "$(id -u)" = 0 ] || skip "mount(8) with a helper needs root"
lib_setup
command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || fail "mount.fuse3 is missing (apt-get install fuse3)"

HELPER=/sbin/mount.imgcryptfs
if [ ! -e "$HELPER" ] && [ ! -L "$HELPER" ]; then
    ln -s "$IMGC_BIN/mount.imgcryptfs" "$HELPER" || fail "cannot create $HELPER"
    CLEANUP_CMDS+=("[ \"\$(readlink $HELPER)\" = \"$IMGC_BIN/mount.imgcryptfs\" ] && rm -f $HELPER")
else
    say "using the existing $HELPER -> $(readlink -f "$HELPER")"
fi

B=$WORK/backing M=$WORK/mnt K=$WORK/key FSTAB=$WORK/fstab
make_keyring "$B" "$K"
mkdir -p "$M"
MOUNTS+=("$M")

# mounted_as TYPE: the mount table line for $M has that type and the backing folder as source.
mounted_as() {
    local line
    line=$(awk -v m="$M" '$2 == m' /proc/mounts)
    [ -n "$line" ] || { check_fail "$1: $M is not mounted"; return 1; }
    [ "$(awk '{print $3}' <<<"$line")" = "$2" ] || check_fail "$1: type is not $2: $line"
    [ "$(awk '{print $1}' <<<"$line")" = "$B" ] || check_fail "$1: source is not $B: $line"
    mountpoint -q "$M" || check_fail "$1: mountpoint(1) says $M is not a mount point"
}

# do_umount WHAT: umount(8), then the daemon must be gone.
do_umount() {
    local pids p
    pids=$(daemon_pids "$WORK")
    [ -n "$pids" ] || check_fail "$1: no imgcryptfs daemon found for the mount"
    umount "$M" || { check_fail "$1: umount $M failed"; fusermount3 -u "$M"; }
    is_mounted "$M" && check_fail "$1: still mounted after umount"
    for p in $pids; do
        wait_gone "$p" 10 || check_fail "$1: daemon $p still running after umount"
    done
}

# 1. fstab, type imgcryptfs, with nofail (an fstab-only option the daemon must accept)
echo "$B $M imgcryptfs keyfile=$K,nofail 0 0" >"$FSTAB"
if limit 30 mount -T "$FSTAB" "$M" 2>"$WORK/mount1.err"; then
    mounted_as "fstab imgcryptfs" fuse.imgcryptfs
    echo "via fstab" >"$M/one" || check_fail "write through the fstab mount"
    [ "$(cat "$M/one")" = "via fstab" ] || check_fail "read through the fstab mount"
    do_umount "fstab imgcryptfs"
else
    check_fail "mount -T fstab (type imgcryptfs) failed: $(cat "$WORK/mount1.err")"
fi

# 2. fstab, type fuse.imgcryptfs: mount(8) -> mount.fuse3 -> /bin/sh -c 'imgcryptfs ...'.
#    libmount runs helpers with PATH removed (sh falls back to its default PATH), so the daemon
#    must be installed there: link /usr/local/sbin/imgcryptfs for the test unless present.
DAEMON_LINK=/usr/local/sbin/imgcryptfs
if [ ! -e "$DAEMON_LINK" ] && [ ! -L "$DAEMON_LINK" ]; then
    mkdir -p /usr/local/sbin
    ln -s "$IMGC_BIN/imgcryptfs" "$DAEMON_LINK" || fail "cannot create $DAEMON_LINK"
    CLEANUP_CMDS+=("[ \"\$(readlink $DAEMON_LINK)\" = \"$IMGC_BIN/imgcryptfs\" ] && rm -f $DAEMON_LINK")
else
    say "using the existing $DAEMON_LINK -> $(readlink -f "$DAEMON_LINK")"
fi
echo "$B $M fuse.imgcryptfs keyfile=$K 0 0" >"$FSTAB"
if PATH=$IMGC_BIN:$PATH limit 30 mount -T "$FSTAB" "$M" 2>"$WORK/mount2.err"; then
    mounted_as "fstab fuse.imgcryptfs" fuse.imgcryptfs
    [ "$(cat "$M/one" 2>/dev/null)" = "via fstab" ] || check_fail "fuse.imgcryptfs: data of the first mount"
    echo "via mount.fuse3" >"$M/two" || check_fail "write through the fuse.imgcryptfs mount"
    do_umount "fstab fuse.imgcryptfs"
else
    check_fail "mount -T fstab (type fuse.imgcryptfs) failed: $(cat "$WORK/mount2.err")"
fi
# ... and mount.fuse3 run directly, finding the daemon on PATH.
if PATH=$IMGC_BIN:$PATH limit 30 mount.fuse3 "$B" "$M" -t imgcryptfs -o "keyfile=$K" 2>"$WORK/mount2b.err"; then
    mounted_as "mount.fuse3 -t imgcryptfs" fuse.imgcryptfs
    [ "$(cat "$M/two" 2>/dev/null)" = "via mount.fuse3" ] || check_fail "mount.fuse3: data of the earlier mount"
    do_umount "mount.fuse3 -t imgcryptfs"
else
    check_fail "mount.fuse3 -t imgcryptfs failed: $(cat "$WORK/mount2b.err")"
fi

# 3. mount -t imgcryptfs on the command line
if limit 30 mount -t imgcryptfs "$B" "$M" -o "keyfile=$K" 2>"$WORK/mount3.err"; then
    mounted_as "mount -t imgcryptfs" fuse.imgcryptfs
    [ "$(cat "$M/one" 2>/dev/null)" = "via fstab" ] || check_fail "mount -t: data of the first mount"
    [ "$(cat "$M/two" 2>/dev/null)" = "via mount.fuse3" ] || check_fail "mount -t: data of the second mount"
    do_umount "mount -t imgcryptfs"
else
    check_fail "mount -t imgcryptfs failed: $(cat "$WORK/mount3.err")"
fi

# 4. A wrong key through mount(8): mount fails with a message, nothing is mounted.
head -c 32 /dev/urandom >"$WORK/wrong" && chmod 600 "$WORK/wrong"
if limit 30 mount -t imgcryptfs "$B" "$M" -o "keyfile=$WORK/wrong" 2>"$WORK/mount4.err"; then
    check_fail "mount -t imgcryptfs with a wrong key succeeded"
    umount "$M"
else
    [ -s "$WORK/mount4.err" ] || check_fail "mount with a wrong key printed nothing"
fi
is_mounted "$M" && check_fail "mounted despite the wrong key"
lib_finish
