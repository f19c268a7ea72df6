#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Tampering with stored images (containers) in the backing folder while unmounted (issue 14).
# Images are written through the mount and converted; then, with the chunks of each container
# parsed as PNG (IHDR, icHd header, icMt meta, icFt features, icEv envelope, IDAT pixels), one
# byte is flipped in the header (file id, a section length), the meta, the features, the
# envelope, the sealed pixel stream (inflated, flipped, deflated again), a row's filter byte,
# the zero padding after the stream, and IHDR; the CRC of the chunk is fixed each time, so
# that only the container's own checks can notice (and once left wrong, too). Sections of two
# containers of the same picture (so every length agrees) are swapped: header, meta, features,
# envelope, pixels. One container is cut short. Every tampered file must fail with EIO (cat
# says "Input/output error"), for whole and random-offset reads, never give other bytes;
# opening one for writing must not turn it into something readable; each is logged with its
# backing path. Untouched files (among them the donors) still read back with their SHA-256.
# A container replaced by another file's whole container from the same store is, as
# imgcryptfs(5) says (Out of scope: contents are bound to a random file id, not to a name), not
# detected: that file must then read as EIO or as exactly the other file, never anything else.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
images_need getfattr pil mricron

POOL=$WORK/pool B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
mkdir -p "$POOL"
limit 120 "$PY" "$IMGU" big "$POOL/x.pgm" 512 8 || fail "cannot make x.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/y.pgm" 384 16 || fail "cannot make y.pgm"
cp "$IMGC_TESTDATA/CT_small.dcm" "$IMGC_TESTDATA/mri-t1-coronal-512.png" "$POOL/" || fail "tests/data"
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }
umnt() { unmount_fg "$M"; }

# name: source. One tampering each (below); swap pairs are two copies of one picture.
FILES="control.pgm:x.pgm donor.pgm:y.pgm
hd-id.pgm:x.pgm hd-len.pgm:x.pgm mt.pgm:x.pgm ft.pgm:x.pgm ev.pgm:x.pgm ev.dcm:CT_small.dcm
px.pgm:x.pgm px.png:mri-t1-coronal-512.png filter.pgm:x.pgm pad.pgm:y.pgm ihdr.pgm:x.pgm
crc.pgm:x.pgm cut.pgm:x.pgm replaced.pgm:x.pgm rw.pgm:x.pgm
swap-hd-a.pgm:x.pgm swap-hd-b.pgm:x.pgm swap-mt-a.pgm:x.pgm swap-mt-b.pgm:x.pgm
swap-ft-a.pgm:x.pgm swap-ft-b.pgm:x.pgm swap-ev-a.pgm:x.pgm swap-ev-b.pgm:x.pgm
swap-px-a.pgm:x.pgm swap-px-b.pgm:x.pgm"

step "write the images and wait for their conversion"
mnt
for f in $FILES; do
    cp "$POOL/${f#*:}" "$M/${f%%:*}" || fail "cp ${f#*:} -> ${f%%:*}"
    echo "$(sha256sum <"$POOL/${f#*:}" | cut -d' ' -f1)  ${f%%:*}"
done >"$WORK/want.sha"
wait_backlog "$M" 120
for f in $FILES; do
    v=$(storage_of "$M/${f%%:*}")
    [ "${v%% *}" = image ] || fail "${f%%:*} is '$v', expected an image (nothing to tamper with)"
done
umnt
# The mount shows the backing inode numbers; after a remount they are the containers'.
mnt
mapfile -t NAMES < <(for f in $FILES; do echo "${f%%:*}"; done)
mapfile -t BACK < <(backing_of "$M" "$B" "${NAMES[@]/#/$M/}")
umnt
for i in "${!NAMES[@]}"; do
    [ "${BACK[$i]:--}" != - ] || fail "no backing entry has the inode number of ${NAMES[$i]}"
    echo "${NAMES[$i]} ${BACK[$i]}"
done >"$WORK/map.txt"

step "tamper with the containers"
cat >"$WORK/tamper.py" <<'EOF'
import struct, sys, zlib
backing, map_file = sys.argv[1:3]
where = dict(l.split() for l in open(map_file))

def path(n):
    return f"{backing}/{where[n]}"

def chunks(data):
    """[type, data] of each chunk, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, out = 8, []
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        out.append([kind.decode(), bytearray(data[at + 8:at + 8 + n])])
        at += 12 + n
    return out

def build(cs):
    """The PNG of these chunks, each with its CRC computed anew."""
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in cs:
        crc = zlib.crc32(kind.encode() + bytes(body))
        out += struct.pack(">I", len(body)) + kind.encode() + bytes(body) + struct.pack(">I", crc)
    return bytes(out)

def load(n):
    return chunks(open(path(n), "rb").read())

def save(n, cs):
    with open(path(n), "r+b") as f:
        f.truncate(0)
        f.write(build(cs))

def chunk(cs, kind):
    found = [c for c in cs if c[0] == kind]
    assert found, f"no {kind} chunk"
    return found[0]

def flip(n, kind, offset):
    cs = load(n)
    body = chunk(cs, kind)[1]
    body[offset % len(body)] ^= 0x01
    save(n, cs)

def pixels(cs):
    """IHDR width, height and the inflated IDAT rows (filter byte + W bytes each)."""
    w, h = struct.unpack(">II", bytes(chunk(cs, "IHDR")[1][:8]))
    raw = bytearray(zlib.decompress(b"".join(bytes(c[1]) for c in cs if c[0] == "IDAT")))
    return w, h, raw

def set_pixels(cs, raw):
    """Replace the IDAT chunks by one holding raw, deflated again."""
    first = next(i for i, c in enumerate(cs) if c[0] == "IDAT")
    rest = [c for c in cs if c[0] != "IDAT"]
    rest.insert(first, ["IDAT", bytearray(zlib.compress(bytes(raw), 6))])
    return rest

# Header: a byte of the file id (offset 8..23), and a section length (features, offset 24).
flip("hd-id.pgm", "icHd", 12)
flip("hd-len.pgm", "icHd", 24)
flip("mt.pgm", "icMt", 50)
flip("ft.pgm", "icFt", 100)
flip("ev.pgm", "icEv", 40)
flip("ev.dcm", "icEv", 60)
flip("rw.pgm", "icEv", 40)
for n in ("px.pgm", "px.png"):
    cs = load(n)
    w, h, raw = pixels(cs)
    raw[(h // 2) * (w + 1) + 1 + w // 2] ^= 0x01  # a byte of the sealed stream, mid-picture
    save(n, set_pixels(cs, raw))
cs = load("filter.pgm")
w, h, raw = pixels(cs)
raw[(h // 3) * (w + 1)] = 1  # a row's filter byte: 0 (none) -> 1 (sub)
save("filter.pgm", set_pixels(cs, raw))
cs = load("pad.pgm")
w, h, raw = pixels(cs)
# The last row ends in zero padding when the stream does not fill it; else the stream's last
# byte is flipped (the tag).
raw[-1] ^= 0x01
save("pad.pgm", set_pixels(cs, raw))
cs = load("ihdr.pgm")
ihdr = chunk(cs, "IHDR")[1]
ihdr[0:4] = struct.pack(">I", struct.unpack(">I", bytes(ihdr[0:4]))[0] + 1)
save("ihdr.pgm", cs)
# A flip in the envelope, the CRC left as it was.
data = bytearray(open(path("crc.pgm"), "rb").read())
at = data.index(b"icEv") + 4 + 40
data[at] ^= 0x01
open(path("crc.pgm"), "wb").write(bytes(data))
# Cut short: without IEND and the last 100 bytes of IDAT.
data = open(path("cut.pgm"), "rb").read()
open(path("cut.pgm"), "wb").write(data[:-112])
# Another file's container in place of this one's (same store, same key).
open(path("replaced.pgm"), "wb").write(open(path("donor.pgm"), "rb").read())
# Sections swapped between two containers of one picture: every length agrees.
for kind, a, b in (("icHd", "swap-hd-a.pgm", "swap-hd-b.pgm"), ("icMt", "swap-mt-a.pgm", "swap-mt-b.pgm"),
                   ("icFt", "swap-ft-a.pgm", "swap-ft-b.pgm"), ("icEv", "swap-ev-a.pgm", "swap-ev-b.pgm"),
                   ("IDAT", "swap-px-a.pgm", "swap-px-b.pgm")):
    ca, cb = load(a), load(b)
    ia = [i for i, c in enumerate(ca) if c[0] == kind]
    ib = [i for i, c in enumerate(cb) if c[0] == kind]
    assert [len(ca[i][1]) for i in ia] == [len(cb[i][1]) for i in ib], f"{kind}: lengths differ"
    for i, j in zip(ia, ib):
        ca[i][1], cb[j][1] = cb[j][1], ca[i][1]
    save(a, ca)
    save(b, cb)
EOF
limit 60 "$PY" "$WORK/tamper.py" "$B" "$WORK/map.txt" || fail "tampering failed"

step "read the tampered files"
: >"$LOG"
mnt
TAMPERED=$(awk '$1 != "control.pgm" && $1 != "donor.pgm" && $1 != "replaced.pgm" { print $1 }' "$WORK/map.txt")
cat >"$WORK/check.py" <<'EOF'
import errno, hashlib, os, random, sys
mnt, want_file = sys.argv[1], sys.argv[2]
tampered = sys.argv[3:]
want = {l.split()[1]: l.split()[0] for l in open(want_file)}
problems = []

def ename(e):
    return errno.errorcode.get(e, str(e))

def read_all(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        out = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return b"".join(out)
            out.append(b)
    finally:
        os.close(fd)

for n in tampered:
    p = os.path.join(mnt, n)
    try:
        got = read_all(p)
        same = hashlib.sha256(got).hexdigest() == want[n]
        problems.append(f"{n}: read {len(got)} bytes ({'its own' if same else 'OTHER'} bytes) instead of EIO")
    except OSError as e:
        if e.errno != errno.EIO:
            problems.append(f"{n}: read fails with {ename(e.errno)}, not EIO")
    # Random access: one pread in the middle.
    try:
        fd = os.open(p, os.O_RDONLY)
        try:
            b = os.pread(fd, 4096, random.randrange(1, 30000))
            problems.append(f"{n}: pread returned {len(b)} bytes instead of EIO")
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno != errno.EIO:
            problems.append(f"{n}: pread fails with {ename(e.errno)}, not EIO")
# The features' preview of a container with damaged features: never a picture.
try:
    v = os.getxattr(os.path.join(mnt, "ft.pgm"), "user.imgcryptfs.preview")
    problems.append(f"ft.pgm: the preview of damaged features gives {len(v)} bytes")
except OSError:
    pass
# Opening a damaged container for writing (it would first become a block file again): must
# fail, or at least leave a file that still fails to read; never other bytes.
p = os.path.join(mnt, "rw.pgm")
try:
    with open(p, "r+b") as f:
        f.seek(100)
        f.write(b"x")
    problems.append("rw.pgm: a damaged container opened r+ and written without an error")
except OSError as e:
    if e.errno != errno.EIO:
        problems.append(f"rw.pgm: open r+ and write fails with {ename(e.errno)}, not EIO")
try:
    got = read_all(p)
    problems.append(f"rw.pgm: after the attempt to write it reads {len(got)} bytes instead of EIO")
except OSError as e:
    if e.errno != errno.EIO:
        problems.append(f"rw.pgm: after the attempt to write: {ename(e.errno)}, not EIO")
# Untouched files still exact.
for n in ("control.pgm", "donor.pgm"):
    try:
        got = hashlib.sha256(read_all(os.path.join(mnt, n))).hexdigest()
        if got != want[n]:
            problems.append(f"{n} (untouched) reads other bytes")
    except OSError as e:
        problems.append(f"{n} (untouched) fails with {ename(e.errno)}")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
# shellcheck disable=SC2086 # names without spaces
limit 120 "$PY" "$WORK/check.py" "$M" "$WORK/want.sha" $TAMPERED || check_fail "reads of tampered containers (see above)"
# The replaced container: EIO, or the donor's bytes exactly (out of scope, imgcryptfs(5)).
got=$(sha_list "$M" replaced.pgm | cut -d' ' -f1)
donor=$(awk '$2 == "donor.pgm" { print $1 }' "$WORK/want.sha")
case $got in
ERROR:EIO) say "replaced.pgm: EIO" ;;
"$donor") say "replaced.pgm reads as the file whose container it now is (not detected, as documented)" ;;
*) check_fail "replaced.pgm (another file's container) reads '$got': neither EIO nor that file's bytes" ;;
esac
for n in $TAMPERED; do
    err=$(limit 30 cat "$M/$n" 2>&1 >/dev/null) && check_fail "cat $n succeeded"
    grep -q "Input/output error" <<<"$err" || check_fail "cat $n: '$err', not 'Input/output error'"
done
umnt

step "log lines"
# One line naming the backing path of each tampered file (rw.pgm: its damage was found).
while read -r n b; do
    case $n in control.pgm | donor.pgm | replaced.pgm) continue ;; esac
    grep -qF -- "$b" "$LOG" || check_fail "$n: no log line names its backing path $b"
done <"$WORK/map.txt"
lib_finish
