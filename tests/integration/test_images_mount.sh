#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A folder of real images copied into the mount with cp -r (issue 14): tests/data, 512x512
# slices of mricron-data's brain volumes as PNG, PGM and native DICOM, pydicom's test files,
# and files that are not images we store (text, random bytes, a JPEG, compressed DICOMs, a
# gzipped and a truncated PNG); 38 files. Once the backlog is 0: every image reports `image
# coder=<id> autoencoder=<id>` in user.imgcryptfs.storage, every other file `blocks`; in the
# backing folder an image is a PNG that pngcheck passes, whose pixels are noise, no patient
# name of a DICOM header appears anywhere, and the image set takes fewer bytes than its
# plaintext (and each image fewer than its block file would). An image has a preview (a PNG of
# at most 64 KiB), a block file none; the xattrs cannot be set or removed (EPERM) and are not
# listed. Every file reads back with the original's SHA-256: at once, after a remount (also
# copied out by cp --reflink=never), with -o cache_mb=0, and with -o images=off; with
# images=off a new copy stays block files. No temporary entry remains.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
images_need getfattr pngcheck pydicom pil mricron

SET=$WORK/set B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
step "build the image set"
limit 120 "$PY" "$IMGU" set "$SET" || fail "cannot build the image set"
sha_list "$SET" >"$WORK/orig.sha" || fail "hashing the originals"
make_keyring "$B" "$K"

mnt() { mount_fg "$B" "$M" "$K" "$LOG" "${1:-}"; }
umnt() { unmount_fg "$M"; }

# check_storage DIR: each file's storage xattr against $SET.expect (image, blocks, or any of
# the two for the edge cases); a stored image names its models.
check_storage() {
    local what name v n=0 neural=0
    while read -r what name; do
        v=$(storage_of "$1/$name")
        case $what:${v%% *} in
        image:image | blocks:blocks | any:image | any:blocks) ;;
        *) check_fail "$STEP: $name is '$v', expected $what" ;;
        esac
        if [ "${v%% *}" = image ]; then
            # the neural coder, or predictor 0 where a sample said it codes smaller
            [[ $v =~ ^image\ coder=([0-9a-f]{32}|fixed)\ autoencoder=([0-9a-f]{32}|none)$ ]] ||
                check_fail "$STEP: $name: storage '$v' does not name a coder and autoencoder"
            [[ $v =~ coder=[0-9a-f]{32} ]] && neural=$((neural + 1))
            n=$((n + 1))
        fi
    done <"$SET.expect"
    [ "$n" -eq 0 ] || [ "$neural" -gt 0 ] || check_fail "$STEP: no image names the neural coder"
    say "$STEP: $n files stored as images, $neural by the neural coder"
}

step "cp -r into the mount and wait for the conversions"
mnt
t0=$SECONDS
limit 120 cp -r "$SET" "$M/set" || fail "cp -r into the mount"
wait_backlog "$M" 180
say "converted within $((SECONDS - t0)) s"
check_storage "$M/set"
sha_list "$M/set" >"$WORK/mnt.sha"
same_hashes "read back once converted" "$WORK/orig.sha" "$WORK/mnt.sha"
# A second read, served from the plaintext cache this time.
sha_list "$M/set" >"$WORK/mnt2.sha"
same_hashes "read back a second time" "$WORK/orig.sha" "$WORK/mnt2.sha"

step "the read-only xattrs"
nprev=0
while read -r what name; do
    f=$M/set/$name
    case $(storage_kind "$f") in
    image)
        getfattr --absolute-names -n user.imgcryptfs.preview --only-values -- "$f" >"$WORK/preview.png" 2>"$WORK/preview.err" ||
            { check_fail "$name: no preview: $(cat "$WORK/preview.err")"; continue; }
        psize=$(stat -c %s "$WORK/preview.png")
        if ! { [ "$(head_magic "$WORK/preview.png")" = png ] && [ "$psize" -le 65536 ] &&
            pngcheck -q "$WORK/preview.png" >/dev/null 2>&1; }; then
            check_fail "$name: the preview ($psize bytes) is not a PNG of at most 64 KiB that pngcheck passes"
        fi
        nprev=$((nprev + 1))
        ;;
    blocks)
        if getfattr --absolute-names -n user.imgcryptfs.preview --only-values -- "$f" >/dev/null 2>"$WORK/preview.err"; then
            check_fail "$name is a block file but has a preview"
        elif ! grep -q "No such attribute" "$WORK/preview.err"; then
            check_fail "$name: the preview of a block file fails with '$(cat "$WORK/preview.err")', not ENODATA"
        fi
        ;;
    esac
done <"$SET.expect"
say "$nprev previews checked"
for x in storage preview; do
    err=$(setfattr -n "user.imgcryptfs.$x" -v 1 "$M/set/CT_small.dcm" 2>&1) &&
        check_fail "setting user.imgcryptfs.$x succeeded"
    grep -q "Operation not permitted" <<<"$err" || check_fail "setting user.imgcryptfs.$x: '$err', not EPERM"
    err=$(setfattr -x "user.imgcryptfs.$x" "$M/set/CT_small.dcm" 2>&1) &&
        check_fail "removing user.imgcryptfs.$x succeeded"
    grep -q "Operation not permitted" <<<"$err" || check_fail "removing user.imgcryptfs.$x: '$err', not EPERM"
done
listed=$(getfattr --absolute-names -d -m - "$M/set/CT_small.dcm" "$M" 2>/dev/null | grep -F user.imgcryptfs.)
[ -z "$listed" ] || check_fail "listxattr shows the read-only xattrs: $listed"
[ "$(storage_kind "$M/set/CT_small.dcm")" = image ] || check_fail "CT_small.dcm is no longer an image after the xattr attempts"
umnt

step "after a remount"
mnt
sha_list "$M/set" >"$WORK/remount.sha"
same_hashes "read back after a remount" "$WORK/orig.sha" "$WORK/remount.sha"
limit 120 cp -r --reflink=never "$M/set" "$WORK/out" || check_fail "cp -r --reflink=never out of the mount"
sha_list "$WORK/out" >"$WORK/out.sha"
same_hashes "copied out with cp --reflink=never" "$WORK/orig.sha" "$WORK/out.sha"
check_storage "$M/set"

step "the backing folder as an attacker sees it"
mapfile -t NAMES < <(awk '{print $2}' "$SET.expect")
mapfile -t BACK < <(backing_of "$M" "$B" "${NAMES[@]/#/$M/set/}")
[ "${#BACK[@]}" = "${#NAMES[@]}" ] || fail "backing_of gave ${#BACK[@]} entries for ${#NAMES[@]} files"
declare -A KIND
for i in "${!NAMES[@]}"; do KIND[${NAMES[$i]}]=$(storage_kind "$M/set/${NAMES[$i]}"); done
umnt
plain=0 stored=0 nimg=0
for i in "${!NAMES[@]}"; do
    n=${NAMES[$i]} b=${BACK[$i]}
    if [ "$b" = - ]; then
        check_fail "no backing entry has the inode number of $n"
        continue
    fi
    magic=$(head_magic "$B/$b")
    size=$(stat -c %s "$SET/$n") bsize=$(stat -c %s "$B/$b")
    case ${KIND[$n]} in
    image)
        [ "$magic" = png ] || { check_fail "$n is an image but its backing entry starts with $magic"; continue; }
        pngcheck -q "$B/$b" >"$WORK/pngcheck.out" 2>&1 ||
            check_fail "pngcheck fails on the container of $n: $(head -n 2 "$WORK/pngcheck.out")"
        # A block file of n bytes takes 32 + n + 28 per started 4 KiB block.
        blocks=$((32 + size + ((size + 4095) / 4096) * 28))
        [ "$bsize" -lt "$blocks" ] ||
            check_fail "$n: its container ($bsize bytes) is not smaller than its block file would be ($blocks)"
        if [ "$bsize" -gt 8192 ]; then
            read -r ratio raw < <("$PY" "$IMGU" noise "$B/$b") || check_fail "$n: cannot read the container's pixels"
            awk -v r="${ratio:-0}" 'BEGIN { exit !(r > 0.98) }' ||
                check_fail "$n: the container's pixels are not noise (zlib -9 makes them $ratio of $raw bytes)"
        fi
        plain=$((plain + size)) stored=$((stored + bsize)) nimg=$((nimg + 1))
        ;;
    blocks)
        [ "$magic" = blocks ] || check_fail "$n is stored as blocks but its backing entry starts with $magic"
        ;;
    *) check_fail "$n: storage ${KIND[$n]}" ;;
    esac
done
[ "$nimg" -ge 20 ] || check_fail "only $nimg files are stored as images"
say "image set: $nimg files, $plain bytes of plaintext, $stored bytes stored ($(awk -v a="$stored" -v b="$plain" 'BEGIN { printf "%.3f", b ? a / b : 0 }'))"
[ "$stored" -lt "$plain" ] || check_fail "the images take $stored bytes in the backing folder, more than their $plain bytes"
# No patient name from a DICOM header, in names or content.
for f in "$SET"/*.dcm; do
    pn=$("$PY" -c 'import sys, pydicom; print(pydicom.dcmread(sys.argv[1], force=True).get("PatientName", "") or "")' "$f" 2>/dev/null)
    [ "${#pn}" -ge 6 ] || continue
    hit=$(grep -rlaF -- "$pn" "$B" | head -n 1)
    [ -z "$hit" ] || check_fail "the patient name of $(basename "$f") appears in the backing folder: ${hit#"$B"/}"
done
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left in the backing folder: $left"

step "with -o cache_mb=0"
mnt cache_mb=0
sha_list "$M/set" >"$WORK/nocache.sha"
same_hashes "read back with cache_mb=0" "$WORK/orig.sha" "$WORK/nocache.sha"
sha_list "$M/set" >"$WORK/nocache2.sha"
same_hashes "read back again with cache_mb=0" "$WORK/orig.sha" "$WORK/nocache2.sha"
umnt

step "with -o images=off"
mnt images=off
sha_list "$M/set" >"$WORK/off-old.sha"
same_hashes "stored images read with images=off" "$WORK/orig.sha" "$WORK/off-old.sha"
limit 120 cp -r "$SET" "$M/off" || fail "cp -r into the mount with images=off"
wait_backlog "$M" 60
sleep 1
while read -r what name; do
    v=$(storage_of "$M/off/$name")
    [ "$v" = blocks ] || check_fail "images=off: $name is '$v', expected blocks"
done <"$SET.expect"
sha_list "$M/off" >"$WORK/off.sha"
same_hashes "read back with images=off" "$WORK/orig.sha" "$WORK/off.sha"
umnt
mnt
mapfile -t BACK < <(backing_of "$M" "$B" "${NAMES[@]/#/$M/off/}")
sha_list "$M/off" >"$WORK/off-remount.sha"
same_hashes "the images=off copy after a remount" "$WORK/orig.sha" "$WORK/off-remount.sha"
umnt
for i in "${!NAMES[@]}"; do
    b=${BACK[$i]:--}
    if [ "$b" = - ]; then
        check_fail "images=off: no backing entry has the inode number of ${NAMES[$i]}"
    elif [ "$(head_magic "$B/$b")" != blocks ]; then
        check_fail "images=off: the backing entry of ${NAMES[$i]} starts with $(head_magic "$B/$b")"
    fi
done
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left in the backing folder: $left"
lib_finish
