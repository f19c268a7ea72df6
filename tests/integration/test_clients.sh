#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Real clients writing into the mount, unchanged: ImageMagick (convert, compare, identify),
# Pillow, dcmtk (a storescp DICOM receiver whose output folder is in the mount, fed by
# storescu; dcmconv and dcmodify on files in the mount), and everyday tools (tar, cp -a, git,
# sqlite). Pixels and bytes are compared with the originals, before and after a remount.
. "$(dirname "$0")/lib.sh"
lib_setup

# ImageMagick: the real one (a stand-in "convert" may come first on PATH).
IM_CONVERT=/usr/bin/convert IM_COMPARE=/usr/bin/compare IM_IDENTIFY=/usr/bin/identify
[ -x "$IM_CONVERT" ] || IM_CONVERT=$(command -v convert) || fail "ImageMagick is not installed"
[ -x "$IM_COMPARE" ] || IM_COMPARE=$(command -v compare) || fail "ImageMagick compare is missing"
[ -x "$IM_IDENTIFY" ] || IM_IDENTIFY=$(command -v identify) || fail "ImageMagick identify is missing"
for t in storescp storescu dcmdump dcmconv dcmodify; do
    command -v "$t" >/dev/null || fail "$t is missing (apt-get install dcmtk)"
done
"$PY" -c 'import PIL' 2>/dev/null || fail "Pillow is missing for $PY (apt-get install python3-pil)"

DATA=$WORK/data
mkdir -p "$DATA"
for f in MR_small.dcm CT_small.dcm mri-t1-axial-8bit.png mri-t1-axial-12in16bit.png \
    mri-t1-axial-8bit.pgm mri-t1-sagittal-256.png; do
    if [ -f "$IMGC_TESTDATA/$f" ]; then
        cp "$IMGC_TESTDATA/$f" "$DATA/"
    elif [ -f /work/shared/testdata/$f ]; then
        cp "/work/shared/testdata/$f" "$DATA/"
    fi
done
ls "$DATA"/*.dcm >/dev/null 2>&1 || fail "no DICOM test files in $IMGC_TESTDATA"
ls "$DATA"/*.png >/dev/null 2>&1 || fail "no PNG test files in $IMGC_TESTDATA"

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
mount_fs "$B" "$M" "$K"

# compare_ae A B: ImageMagick's count of differing pixels must be 0.
compare_ae() {
    local ae
    ae=$("$IM_COMPARE" -metric AE "$1" "$2" null: 2>&1)
    [ "$ae" = 0 ] || { check_fail "compare -metric AE $1 $2 gave '$ae'"; return 1; }
}

# 1. ImageMagick: into the mount as PNG/PGM/TIFF, back out, and inside the mount.
"$IM_CONVERT" -size 257x131 gradient:'#102030-#f0e0d0' -seed 7 +noise Gaussian "$DATA/gen.png" ||
    fail "convert could not make a test image"
mkdir -p "$M/im"
for src in "$DATA"/*.png "$DATA"/*.pgm; do
    n=$(basename "$src" | tr . _)
    "$IM_CONVERT" "$src" "$M/im/$n.png" || { check_fail "convert $src -> mount"; continue; }
    "$IM_CONVERT" "$M/im/$n.png" "$M/im/$n.tiff" || check_fail "convert png -> tiff in the mount"
    "$IM_CONVERT" "$M/im/$n.tiff" "$WORK/$n.back.png" || check_fail "convert tiff out of the mount"
    compare_ae "$src" "$M/im/$n.png"
    compare_ae "$src" "$M/im/$n.tiff"
    compare_ae "$src" "$WORK/$n.back.png"
    [ "$("$IM_IDENTIFY" -format '%wx%h %z' "$src")" = "$("$IM_IDENTIFY" -format '%wx%h %z' "$M/im/$n.png")" ] ||
        check_fail "identify differs for $n"
    cp "$src" "$M/im/copy_$(basename "$src")" && cmp "$src" "$M/im/copy_$(basename "$src")" ||
        check_fail "byte copy of $src"
done
# In-place edits inside the mount (ImageMagick writes the output file over the input).
cp "$DATA/gen.png" "$M/im/edit.png"
"$IM_CONVERT" "$M/im/edit.png" -flip "$M/im/edit.png" || check_fail "convert in place"
"$IM_CONVERT" "$DATA/gen.png" -flip "$WORK/flipped.png"
compare_ae "$WORK/flipped.png" "$M/im/edit.png"
say "ImageMagick done"

# 2. Pillow: save and load PNG (8 and 16 bit, RGB), TIFF, BMP in the mount.
limit 60 "$PY" - "$DATA" "$M/pil" <<'EOF' || check_fail "Pillow round trips (see above)"
import os, sys
from PIL import Image
data, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
images = {}
for n in sorted(os.listdir(data)):
    if n.endswith((".png", ".pgm")):
        images[n] = Image.open(os.path.join(data, n))
        images[n].load()
noise = Image.frombytes("L", (512, 384), os.urandom(512 * 384))
images["noise"] = noise
images["rgb"] = Image.frombytes("RGB", (300, 200), os.urandom(300 * 200 * 3))
images["i16"] = Image.frombytes("I;16", (128, 96), os.urandom(128 * 96 * 2))
bad = []
for n, im in images.items():
    for ext in ("png", "tiff", "bmp"):
        if ext == "bmp" and im.mode not in ("L", "RGB"):
            continue
        p = os.path.join(out, f"{n}.{ext}")
        im.save(p)
        back = Image.open(p)
        back.load()
        if back.size != im.size or list(back.getdata()) != list(im.getdata()):
            bad.append(f"{n}.{ext}: pixels differ ({im.mode} -> {back.mode})")
    # Save a second time over the same name (truncate + rewrite), then read again.
    p = os.path.join(out, f"{n}.png")
    im.transpose(Image.FLIP_LEFT_RIGHT).save(p)
    back = Image.open(p)
    if list(back.getdata()) != list(im.transpose(Image.FLIP_LEFT_RIGHT).getdata()):
        bad.append(f"{n}.png saved twice: pixels differ")
for b in bad:
    print("PROBLEM:", b)
sys.exit(1 if bad else 0)
EOF
say "Pillow done"

# 3. dcmtk: a storescp receiver writing into the mount, fed by storescu.
mkdir -p "$M/incoming"
PORT=$(free_port) || fail "no free port"
storescp -od "$M/incoming" -aet TEST +xa "$PORT" >"$WORK/storescp.log" 2>&1 &
SCP=$!
PIDS+=("$SCP")
CLEANUP_CMDS+=("kill $SCP; sleep 0.2; kill -9 $SCP")
for i in $(seq 100); do
    "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    pid_alive "$SCP" || fail "storescp died: $(cat "$WORK/storescp.log")"
    sleep 0.1
done
limit 60 storescu -aec TEST -aet SENDER 127.0.0.1 "$PORT" "$DATA"/*.dcm >"$WORK/storescu.log" 2>&1 ||
    check_fail "storescu failed: $(tail -n 5 "$WORK/storescu.log")"
kill "$SCP"
wait_gone "$SCP" 5 || kill -9 "$SCP"
wait "$SCP" 2>/dev/null

ndcm=$(ls "$DATA"/*.dcm | wc -l)
nrecv=$(find "$M/incoming" -type f | wc -l)
[ "$nrecv" = "$ndcm" ] || check_fail "storescp stored $nrecv files, $ndcm sent: $(ls "$M/incoming")"

# Pixel data and the dataset as dcmdump shows it (without the meta header, which storescp
# writes anew, and without trailing padding (fffc,fffc), which storescp drops), original
# against received.
dump_dataset() { dcmdump "$1" | grep -vE '^\((0002|fffc),|^# |^$' | sed 's/ *#.*//'; }
pixels_sha() {
    local d
    d=$(mktemp -d "$WORK/raw.XXXXXX")
    dcmdump +W "$d" "$1" >/dev/null || return 1
    cat "$d"/* | sha256sum | cut -d' ' -f1
}
check_dicom() { # $1: when
    local f g found
    for f in "$DATA"/*.dcm; do
        found=""
        for g in "$M"/incoming/*; do
            if [ "$(pixels_sha "$f")" = "$(pixels_sha "$g")" ]; then
                found=$g
                break
            fi
        done
        if [ -z "$found" ]; then
            check_fail "$1: no received file has the pixel data of $(basename "$f")"
            continue
        fi
        dcmdump "$found" >/dev/null 2>"$WORK/dcmdump.err" || check_fail "$1: dcmdump $found: $(cat "$WORK/dcmdump.err")"
        diff <(dump_dataset "$f") <(dump_dataset "$found") >"$WORK/dicom.diff" ||
            check_fail "$1: dataset of $(basename "$f") differs: $(head -n 6 "$WORK/dicom.diff")"
    done
}
check_dicom "received"

# dcmconv into the mount (implicit VR), dcmodify in place there (it writes a .bak and
# renames), and the pixel data must stay.
mkdir -p "$M/dcm"
MR=$DATA/MR_small.dcm
[ -f "$MR" ] || MR=$(ls "$DATA"/*.dcm | head -n1)
dcmconv +ti "$MR" "$M/dcm/conv.dcm" || check_fail "dcmconv into the mount"
cp "$MR" "$M/dcm/mod.dcm"
dcmodify -ma "(0010,0010)=Test^Renamed" "$M/dcm/mod.dcm" || check_fail "dcmodify in the mount"
# (grep without -q: with pipefail, dcmdump killed by SIGPIPE after an early match would count
# as a failure)
dcmdump "$M/dcm/mod.dcm" | grep 'Test^Renamed' >/dev/null || check_fail "dcmodify change not visible"
[ -f "$M/dcm/mod.dcm.bak" ] && cmp -s "$MR" "$M/dcm/mod.dcm.bak" || check_fail "dcmodify backup differs"
for f in "$M/dcm/conv.dcm" "$M/dcm/mod.dcm"; do
    [ "$(pixels_sha "$f")" = "$(pixels_sha "$MR")" ] || check_fail "pixel data changed in $f"
done
say "dcmtk done"

# 4. Everyday tools: tar (a tree with symlinks, a hard link, modes and times) extracted into
#    the mount and compared with tar --compare and diff -r; cp -a out again; git; sqlite.
TREE=$WORK/tree
mkdir -p "$TREE/a/b/c" "$TREE/empty"
cp "$DATA"/* "$TREE/a/"
head -c 100000 /dev/urandom >"$TREE/a/b/c/random.bin"
printf 'text\n' >"$TREE/a/b/text.txt"
ln -s ../text.txt "$TREE/a/b/c/link"
ln "$TREE/a/b/text.txt" "$TREE/a/hardlink"
chmod 0751 "$TREE/a/b"
chmod 0600 "$TREE/a/b/c/random.bin"
touch -d '2001-02-03 04:05:06' "$TREE/a/b/text.txt"
tar -C "$WORK" -cf "$WORK/tree.tar" tree || fail "tar -c"
mkdir -p "$M/tar"
tar -C "$M/tar" -xpf "$WORK/tree.tar" || check_fail "tar -x into the mount"
tar -C "$M/tar" --compare -f "$WORK/tree.tar" >"$WORK/tar.diff" 2>&1 ||
    check_fail "tar --compare: $(head -n 5 "$WORK/tar.diff")"
diff -r --no-dereference "$TREE" "$M/tar/tree" >"$WORK/tree.diff" 2>&1 ||
    check_fail "diff -r of the tree: $(head -n 5 "$WORK/tree.diff")"
[ "$(stat -c %i "$M/tar/tree/a/hardlink")" = "$(stat -c %i "$M/tar/tree/a/b/text.txt")" ] ||
    check_fail "tar: the hard link is not one inode"
cp -a "$M/tar/tree" "$WORK/tree.back" || check_fail "cp -a out of the mount"
diff -r --no-dereference "$TREE" "$WORK/tree.back" >/dev/null 2>&1 || check_fail "cp -a out: trees differ"
[ "$(stat -c '%a %Y' "$WORK/tree.back/a/b" "$WORK/tree.back/a/b/text.txt")" = "$(stat -c '%a %Y' "$TREE/a/b" "$TREE/a/b/text.txt")" ] ||
    check_fail "cp -a out: modes or times differ"
if command -v git >/dev/null; then
    (
        cd "$M" && git init -q repo && cd repo &&
            git config user.email t@example.org && git config user.name test &&
            cp -r "$TREE/a" . && git add -A && git commit -q -m one &&
            echo more >>a/b/text.txt && git commit -qam two && git gc -q && git fsck --strict
    ) >"$WORK/git.log" 2>&1 || check_fail "git in the mount: $(tail -n 5 "$WORK/git.log")"
fi
limit 60 "$PY" - "$M/db.sqlite" <<'EOF2' || check_fail "sqlite in the mount (see above)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table t (k integer primary key, v blob)")
with db:
    for i in range(3000):
        db.execute("insert into t values (?, ?)", (i, bytes([i % 256]) * (i % 700)))
with db:
    db.execute("delete from t where k % 3 = 0")
    db.execute("update t set v = x'00ff' where k % 5 = 0")
db.execute("vacuum")
ok = db.execute("pragma integrity_check").fetchone()[0]
n = db.execute("select count(*) from t").fetchone()[0]
db.close()
if ok != "ok" or n != 2000:
    sys.exit(f"sqlite: integrity {ok}, {n} rows")
EOF2
say "tar, cp -a, git, sqlite done"

# 5. Everything again after a remount, from the stored form.
unmount "$M"
mount_fs "$B" "$M" "$K"
for src in "$DATA"/*.png "$DATA"/*.pgm; do
    n=$(basename "$src" | tr . _)
    compare_ae "$src" "$M/im/$n.png"
    compare_ae "$src" "$M/im/$n.tiff"
    cmp -s "$src" "$M/im/copy_$(basename "$src")" || check_fail "after remount: copy of $n"
done
compare_ae "$WORK/flipped.png" "$M/im/edit.png"
check_dicom "after remount"
dcmdump "$M/dcm/mod.dcm" | grep 'Test^Renamed' >/dev/null || check_fail "after remount: dcmodify change lost"
tar -C "$M/tar" --compare -f "$WORK/tree.tar" >"$WORK/tar.diff" 2>&1 ||
    check_fail "after remount: tar --compare: $(head -n 5 "$WORK/tar.diff")"
if [ -d "$M/repo" ]; then
    (cd "$M/repo" && git fsck --strict && [ "$(git log --oneline | wc -l)" = 2 ]) >"$WORK/git2.log" 2>&1 ||
        check_fail "after remount: git fsck/log: $(tail -n 5 "$WORK/git2.log")"
fi
"$PY" -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ok = db.execute('pragma integrity_check').fetchone()[0]
n = db.execute('select count(*) from t').fetchone()[0]
sys.exit(0 if ok == 'ok' and n == 2000 else 1)" "$M/db.sqlite" || check_fail "after remount: sqlite"
limit 60 "$PY" - "$M/pil" <<'EOF' || check_fail "after remount: Pillow files (see above)"
import os, sys
from PIL import Image
bad = []
for n in sorted(os.listdir(sys.argv[1])):
    try:
        im = Image.open(os.path.join(sys.argv[1], n))
        im.load()
    except Exception as e:
        bad.append(f"{n}: {e}")
for b in bad:
    print("PROBLEM:", b)
sys.exit(1 if bad else 0)
EOF
unmount "$M"
lib_finish
