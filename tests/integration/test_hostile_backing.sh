#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The backing folder is hostile: someone who can write it (not the keyring) swaps entries for
# symlinks to files outside, or deletes or replaces the root folder id. A root daemon mounted
# with allow_other must never follow such a symlink: every operation on the mounted path
# fails, the outside file keeps its mode, owner, times and bytes, and a log line names the
# planted entry. Sidecars of long symlink targets replaced by a symlink to an outside file or
# by a FIFO are refused the same way, without blocking, and a planted sidecar name never shows.
# A missing or swapped root folder id refuses the mount (exit 5) instead of showing an empty
# or wrong tree. Folder ids and long-name sidecars replaced by FIFOs are refused at once (EIO,
# a log line), never opened and waited on.
source "$(dirname "$0")/lib.sh"
lib_setup
[ "$(id -u)" = 0 ] || skip "needs root (a root daemon with allow_other is the case at stake)"
B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
make_keyring "$B" "$K"

mount_fg "$B" "$M" "$K" "$LOG" allow_other
echo "patient data" >"$M/scan.dcm"
mkdir "$M/study" && echo "inside" >"$M/study/slice.pgm"
long=$(printf 'x%.0s' $(seq 3500))
ln -s "$long" "$M/long-to-file" && ln -s "$long" "$M/long-to-fifo"
unmount "$M"

# Which backing entries are they? The newest top-level file and folder.
leaf_file=$(find "$B" -maxdepth 1 -type f ! -name '.imgcryptfs*' ! -name imgcryptfs.keyring -printf '%f\n')
leaf_dir=$(find "$B" -maxdepth 1 -mindepth 1 -type d -printf '%f\n')
[ -n "$leaf_file" ] && [ -n "$leaf_dir" ] || fail "backing entries not found"

# The outside targets: a 0600 file and a folder holding copies of the sealed entries.
OUT=$WORK/outside
mkdir -p "$OUT/dir"
echo "host secret" >"$OUT/file" && chmod 600 "$OUT/file"
cp -a "$B/$leaf_dir/." "$OUT/dir/"
touch -d '2020-01-01 00:00:00' "$OUT/file"
snapshot() { (stat -c '%a %u %g %Y %s' "$OUT/file"; sha256sum "$OUT/file"; \
             find "$OUT/dir" -printf '%P %m %s %T@\n' | sort) ; }
before=$(snapshot)

mv "$B/$leaf_file" "$WORK/real-file" && ln -s "$OUT/file" "$B/$leaf_file"
mv "$B/$leaf_dir" "$WORK/real-dir" && ln -s "$OUT/dir" "$B/$leaf_dir"
# The sidecars of the two long symlinks become a symlink to the outside file and a FIFO (whose
# open would block); a sidecar name no link points to is planted beside them.
sidecars=$(find "$B" -maxdepth 1 -name '.imgcryptfs.link.*' -printf '%f\n')
[ "$(echo "$sidecars" | wc -l)" = 2 ] || fail "want 2 sidecars of long symlinks: $sidecars"
side1=$(echo "$sidecars" | head -1) side2=$(echo "$sidecars" | tail -1)
rm "$B/$side1" "$B/$side2"
ln -s "$OUT/file" "$B/$side1"
mkfifo "$B/$side2"
echo "planted" >"$B/.imgcryptfs.link.AAAAAAAAAAAAAAAAAAAAAA"

mount_fg "$B" "$M" "$K" "$LOG" allow_other
ops_failed=0 ops=0
try() { # every operation must fail
    ops=$((ops + 1))
    if limit 20 "$@" >/dev/null 2>&1; then
        check_fail "succeeded through a planted symlink: $*"
    else
        ops_failed=$((ops_failed + 1))
    fi
}
try chmod 666 "$M/scan.dcm"
try chown nobody "$M/scan.dcm"
try touch "$M/scan.dcm"
try truncate -s 0 "$M/scan.dcm"
try sh -c "echo x >> '$M/scan.dcm'"
try cat "$M/scan.dcm"
try setfattr -n user.x -v y "$M/scan.dcm"
try getfattr -n user.x "$M/scan.dcm"
try ln "$M/scan.dcm" "$M/hard"
try chmod 666 "$M/study/slice.pgm"
try cat "$M/study/slice.pgm"
try touch "$M/study/new"
try mkdir "$M/study/sub"
try rm "$M/study/slice.pgm"
try ls "$M/study"
try readlink "$M/long-to-file"
try cat "$M/long-to-file"
try readlink "$M/long-to-fifo"
try stat "$M/long-to-fifo"
ls -A "$M" | grep -q imgcryptfs && check_fail "a planted sidecar shows in the listing: $(ls -A "$M")"
say "$ops_failed of $ops operations through planted symlinks failed"
after=$(snapshot)
[ "$before" = "$after" ] || check_fail "the outside file or folder changed:
$before
---
$after"
grep -q "did not write" "$LOG" || check_fail "no log line names the planted symlink"
grep "did not write" "$LOG" | head -1 | sed 's/^/    log: /' >&2
for side in "$side1" "$side2"; do
    grep -q "symlink target in .*/$side: not a sealed target" "$LOG" ||
        check_fail "no log line names the planted sidecar $side"
done
grep "symlink target in" "$LOG" | head -2 | sed 's/^/    log: /' >&2
[ -p "$B/$side2" ] && [ -L "$B/$side1" ] || check_fail "a planted sidecar was removed or replaced"
unmount "$M"

# Put the real entries back: the store mounts and reads as before.
rm "$B/$leaf_file" "$B/$leaf_dir"
mv "$WORK/real-file" "$B/$leaf_file"
mv "$WORK/real-dir" "$B/$leaf_dir"
mount_fg "$B" "$M" "$K" "$LOG" allow_other
[ "$(cat "$M/study/slice.pgm")" = inside ] || check_fail "folder unreadable after repair"
unmount "$M"

# Root folder id: deleted, replaced by a sub-folder's id, or by another store's.
cp "$B/.imgcryptfs.dirid" "$WORK/rootid"
expect_refused() {
    local what=$1 out rc=0
    out=$("$IMGC_BIN/imgcryptfs" -o "keyfile=$K" "$B" "$M" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        MOUNTS+=("$M")
        unmount "$M"
        check_fail "$what: mounted anyway"
    elif [ "$rc" != 5 ]; then
        check_fail "$what: exit $rc, want 5 ($out)"
    else
        say "$what: refused, exit 5: $out"
    fi
}
rm -f "$B/.imgcryptfs.dirid"
expect_refused "root folder id deleted"
cp "$B/$leaf_dir/.imgcryptfs.dirid" "$B/.imgcryptfs.dirid"
expect_refused "root folder id replaced by a sub-folder's"
B2=$WORK/other
make_keyring "$B2" "$WORK/key2"
mount_fg "$B2" "$M" "$WORK/key2" "$WORK/other.log"
unmount "$M"
cp "$B2/.imgcryptfs.dirid" "$B/.imgcryptfs.dirid"
expect_refused "root folder id of another store"
rm -f "$B/.imgcryptfs.dirid" && mkfifo "$B/.imgcryptfs.dirid"
expect_refused "root folder id replaced by a FIFO"
rm -f "$B/.imgcryptfs.dirid"
cp "$WORK/rootid" "$B/.imgcryptfs.dirid"
mount_fg "$B" "$M" "$K" "$LOG"
[ "$(cat "$M/scan.dcm")" = "patient data" ] || check_fail "store unreadable with its own root id"

# The daemon's own files in a folder (its id, a long name's sidecar) replaced by FIFOs: reading
# the folder fails with EIO and a log line, at once, instead of blocking on the FIFO.
long_name=$(printf 'n%.0s' $(seq 220))
mkdir "$M/fifo1" "$M/fifo2" && echo a >"$M/fifo1/a" && echo b >"$M/fifo2/$long_name"
unmount "$M"
side=$(find "$B" -mindepth 2 -maxdepth 2 -name '.imgcryptfs.long.*.name' | head -1)
[ -n "$side" ] || fail "no long-name sidecar found"
cp "$side" "$WORK/side.keep"
rm "$side" && mkfifo "$side"
mount_fg "$B" "$M" "$K" "$LOG"
start=$(date +%s)
listing=$(limit 20 ls "$M/fifo2" 2>&1)
[ $(($(date +%s) - start)) -lt 10 ] || check_fail "listing a folder whose long-name sidecar is a FIFO blocked"
echo "$listing" | grep -q "$long_name" && check_fail "a name whose sidecar is a FIFO was listed"
unmount "$M"
rm "$side" && cp "$WORK/side.keep" "$side"
for f in $(find "$B" -mindepth 2 -maxdepth 2 -name .imgcryptfs.dirid); do
    cp "$f" "$WORK/id.keep" && rm "$f" && mkfifo "$f"
    mount_fg "$B" "$M" "$K" "$LOG"
    start=$(date +%s)
    limit 20 ls "$M/fifo1" "$M/fifo2" "$M/study" >/dev/null 2>&1
    [ $(($(date +%s) - start)) -lt 10 ] || check_fail "listing a folder whose id is a FIFO blocked"
    unmount "$M"
    rm "$f" && cp "$WORK/id.keep" "$f"
done
grep -q "folder has no .imgcryptfs.dirid" "$LOG" || check_fail "no log line names a folder id that is a FIFO"
mount_fg "$B" "$M" "$K" "$LOG"
[ "$(cat "$M/fifo1/a")" = a ] && [ "$(cat "$M/fifo2/$long_name")" = b ] ||
    check_fail "the folders do not read after the FIFOs were taken away"
unmount "$M"
lib_finish
