#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Real clients writing images into the mount, unchanged (issue 14): a dcmtk storescp receiver
# whose output folder is in the mount, fed by storescu; Pillow saving PNG (8 and 16 bit, RGB,
# zlib levels 0, 1, 6, 9 and optimize), PGM and PPM; ImageMagick writing PNG, 16-bit PNG, PGM
# and PPM. Each client also writes the same files into a local folder, the reference: every
# file in the mount must be stored as an image once the backlog is 0 and read back with the
# reference's SHA-256. Then a Python script rewrites converted files in place (open r+, seek,
# write, close), the same edit is made to the local copies, and the edited files read back
# equal and are converted again; Pillow saves a new picture over a converted file. Everything
# again after a remount.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
images_need getfattr pydicom pil mricron dcmtk
IM_CONVERT=/usr/bin/convert
[ -x "$IM_CONVERT" ] || fail "ImageMagick's convert is missing (apt-get install imagemagick)"

SET=$WORK/set REF=$WORK/ref B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
limit 120 "$PY" "$IMGU" set "$SET" || fail "cannot build the image set"
mkdir -p "$REF"
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }
umnt() { unmount_fg "$M"; }
mnt

# expect_image DIR: every file under DIR is stored as an image; noise.png (random pixels, which
# no coder shrinks) may stay a block file.
expect_image() {
    local f v n=0
    while IFS= read -r -d '' f; do
        v=$(storage_of "$f")
        case $(basename "$f"):${v%% *} in
        *:image | noise.png:blocks) ;;
        *) check_fail "$STEP: ${f#"$M"/} is '$v', expected an image" ;;
        esac
        n=$((n + 1))
    done < <(find "$1" -type f -print0)
    [ "$n" -gt 0 ] || check_fail "$STEP: no files in ${1#"$M"/}"
}

# 1. dcmtk: storescp receiving into the mount, and the same association again into a local
#    folder (the reference: storescp writes the same bytes for the same input).
step "dcmtk storescp into the mount"
DCM=(CT_small.dcm MR_small.dcm ExplVR_BigEnd.dcm ch2-512-8.dcm inia19-512-16.dcm)
receive() { # receive DIR: run storescp writing into DIR, send the DICOMs with storescu
    local port scp i
    mkdir -p "$1"
    port=$(free_port) || fail "no free port"
    storescp -od "$1" -aet TEST +xa "$port" >>"$WORK/storescp.log" 2>&1 &
    scp=$!
    PIDS+=("$scp")
    for ((i = 0; i < 100; i++)); do
        "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
        pid_alive "$scp" || fail "storescp died: $(tail -n 5 "$WORK/storescp.log")"
        sleep 0.1
    done
    limit 120 storescu -aec TEST -aet SENDER 127.0.0.1 "$port" "${DCM[@]/#/$SET/}" >>"$WORK/storescu.log" 2>&1 ||
        check_fail "storescu into $1 failed: $(tail -n 5 "$WORK/storescu.log")"
    kill "$scp" 2>/dev/null
    wait_gone "$scp" 5 || kill -9 "$scp" 2>/dev/null
    wait "$scp" 2>/dev/null
}
receive "$M/incoming"
receive "$REF/incoming"
[ "$(find "$REF/incoming" -type f | wc -l)" = "${#DCM[@]}" ] ||
    fail "storescp stored $(find "$REF/incoming" -type f | wc -l) files locally, ${#DCM[@]} sent"

# 2. Pillow: the same pictures saved into the mount and into the reference folder.
step "Pillow into the mount"
cat >"$WORK/pil.py" <<'EOF'
import glob, os, random, sys
from PIL import Image
set_dir, outs = sys.argv[1], sys.argv[2:]
s8 = Image.open(sorted(glob.glob(os.path.join(set_dir, "ch2-*-8.png")))[0])
s16 = Image.open(sorted(glob.glob(os.path.join(set_dir, "inia19-*-16.png")))[0])
rgb = Image.open(os.path.join(set_dir, "mri-t1-rgb.png"))
for im in (s8, s16, rgb):
    im.load()
rnd = random.Random(5)
noisy = Image.frombytes("L", (300, 200), bytes(rnd.getrandbits(8) for _ in range(300 * 200)))
for out in outs:
    os.makedirs(out, exist_ok=True)
    for level in (0, 1, 6, 9):
        s8.save(os.path.join(out, f"s8-level{level}.png"), compress_level=level)
    s8.save(os.path.join(out, "s8-optimize.png"), optimize=True)
    s16.save(os.path.join(out, "s16.png"))
    rgb.save(os.path.join(out, "rgb.png"))
    noisy.save(os.path.join(out, "noise.png"))
    s8.save(os.path.join(out, "s8.pgm"))
    rgb.convert("RGB").save(os.path.join(out, "rgb.ppm"))
    s8.transpose(Image.FLIP_TOP_BOTTOM).save(os.path.join(out, "s8-flipped.pgm"))
EOF
limit 120 "$PY" "$WORK/pil.py" "$SET" "$M/pil" "$REF/pil" || check_fail "Pillow could not save into the mount"

# 3. ImageMagick: convert writing into the mount and into the reference folder (without the
#    date chunks, which would differ between the two runs).
step "ImageMagick into the mount"
mkdir -p "$M/im" "$REF/im"
for d in "$M/im" "$REF/im"; do
    for src in "$SET"/mri-t1-axial-8bit.pgm "$SET"/mri-t1-coronal-512.png "$SET"/ch2-512-8.pgm; do
        n=$(basename "$src" | tr . _)
        if ! { "$IM_CONVERT" "$src" -define png:exclude-chunks=date,time "$d/$n.png" &&
            "$IM_CONVERT" "$src" -depth 16 -define png:bit-depth=16 -define png:exclude-chunks=date,time "$d/$n.16.png" &&
            "$IM_CONVERT" "$src" -flop "$d/$n.pgm"; }; then
            check_fail "convert $src -> $d"
        fi
    done
    "$IM_CONVERT" "$SET/mri-t1-rgb.png" "$d/rgb.ppm" || check_fail "convert rgb -> $d/rgb.ppm"
done

step "wait for the conversions"
wait_backlog "$M" 180
for d in incoming pil im; do
    expect_image "$M/$d"
done
mapfile -t FILES < <(cd "$REF" && find incoming pil im -type f | LC_ALL=C sort)
sha_list "$REF" >"$WORK/ref.sha"
sha_list "$M" "${FILES[@]}" >"$WORK/mnt.sha"
same_hashes "clients' files read back" "$WORK/ref.sha" "$WORK/mnt.sha"

# 4. A converted file opened r+ and only read (as some viewers and toolkits open files): it
# reads exactly and stays a stored image, then and after the close (no decode into a block
# file, no conversion queued again).
step "a converted file opened r+ and only read stays a stored image"
f=pil/s8-level1.png
[ "$(storage_kind "$M/$f")" = image ] || check_fail "$f is '$(storage_of "$M/$f")' before the r+ read"
"$PY" - "$M/$f" "$REF/$f" <<'EOF' || check_fail "$f opened r+ and read"
import os, sys
m, ref = sys.argv[1:3]
with open(m, "r+b") as f:
    got = f.read()
    during = os.getxattr(m, "user.imgcryptfs.storage").decode()
if got != open(ref, "rb").read():
    sys.exit("the bytes read through an r+ handle differ")
if not during.startswith("image"):
    sys.exit(f"storage while open r+ and unwritten: '{during}', expected an image")
EOF
[ "$(storage_kind "$M/$f")" = image ] ||
    check_fail "$f is '$(storage_of "$M/$f")' after an r+ open that wrote nothing, expected an image"

# 5. Rewriting converted files in place: the same edit in the mount and on the local copies.
step "in-place edits of converted files (r+, seek, write)"
cat >"$WORK/edit.py" <<'EOF'
import glob, os, sys
root = sys.argv[1]
def edit(rel, at, data):
    """open r+, seek to `at` (from the end when negative), write, close."""
    with open(os.path.join(root, rel), "r+b") as f:
        f.seek(at, os.SEEK_END if at < 0 else os.SEEK_SET)
        f.write(data)
# PGM and DICOM: pixel bytes near the end change, the files stay images.
edit("im/ch2-512-8_pgm.pgm", -70000, bytes(range(256)) * 40)
edit("im/mri-t1-axial-8bit_pgm.pgm", -1, b"\x7f")
dcm = sorted(glob.glob(os.path.join(root, "incoming", "*")), key=os.path.getsize)[-1]
edit(os.path.relpath(dcm, root), -5000, b"\x01\x02" * 1000)
# PNG: the same bytes written again over the middle: the file is unchanged.
with open(os.path.join(root, "pil", "s16.png"), "rb") as f:
    f.seek(20000)
    same = f.read(3000)
edit("pil/s16.png", 20000, same)
# A PNG byte changed inside the pixel data: no longer an image we store, bytes still exact.
edit("pil/s8-level9.png", 5000, b"\x00\xff\x00")
# Pillow saving a new picture over a converted file (open with O_TRUNC).
from PIL import Image
im = Image.open(os.path.join(root, "pil", "s8-level1.png"))
im.load()
im.rotate(90).save(os.path.join(root, "pil", "s8-optimize.png"))
EOF
limit 60 "$PY" "$WORK/edit.py" "$REF" || fail "editing the local copies"
limit 60 "$PY" "$WORK/edit.py" "$M" || check_fail "editing the files in the mount"
sha_list "$REF" >"$WORK/ref2.sha"
sha_list "$M" "${FILES[@]}" >"$WORK/mnt2.sha"
same_hashes "edited files read back before their conversion" "$WORK/ref2.sha" "$WORK/mnt2.sha"
wait_backlog "$M" 120
bigdcm=$(cd "$REF" && find incoming -type f -printf '%s %p\n' | sort -n | tail -n1 | cut -d' ' -f2)
for f in im/ch2-512-8_pgm.pgm im/mri-t1-axial-8bit_pgm.pgm "$bigdcm" pil/s16.png pil/s8-optimize.png; do
    v=$(storage_of "$M/$f")
    [ "${v%% *}" = image ] || check_fail "$f is '$v' after its edit, expected an image again"
done
v=$(storage_of "$M/pil/s8-level9.png")
[ "$v" = blocks ] || check_fail "pil/s8-level9.png with a broken pixel stream is '$v', expected blocks"
sha_list "$M" "${FILES[@]}" >"$WORK/mnt3.sha"
same_hashes "edited files read back once converted again" "$WORK/ref2.sha" "$WORK/mnt3.sha"
umnt

step "after a remount"
mnt
sha_list "$M" "${FILES[@]}" >"$WORK/mnt4.sha"
same_hashes "clients' files after a remount" "$WORK/ref2.sha" "$WORK/mnt4.sha"
umnt
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left in the backing folder: $left"
lib_finish
