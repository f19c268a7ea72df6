#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Conversion is bounded: a 255 KB PNG that declares 16,384 x 16,384 pixels (a decompression
# bomb: 268 MB of pixels) written into the mount stays a block file, reads back exactly, and the
# daemon never grows past a few hundred MB (without the bound it took 2.3 GB and 50 s); with
# -o convert_mb=64 a real 2048 x 2048 slice stays a block file too, with a log line naming the
# budget, and the same slice is converted under the default budget. imgcrypt encrypt stores
# the bomb as a block file, saying so about the input, and exits 0.
. "$(dirname "$0")/lib.sh"
lib_setup

K=$WORK/key B=$WORK/backing M=$WORK/mnt LOG=$WORK/daemon.log
make_keyring "$B" "$K"

"$PY" - "$WORK" "$IMGC_TESTDATA/mri-t1-axial-8bit.pgm" <<'PYEOF'
import struct, sys, zlib
work, slice_pgm = sys.argv[1], sys.argv[2]
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
w = h = 16384
idat = zlib.compress(b"\0" * ((w + 1) * h), 9)
with open(f"{work}/bomb.png", "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
# a real slice tiled to 2048 x 2048 (4 MiB of pixels: an estimate of about 96 MiB)
hdr, rest = open(slice_pgm, "rb").read().split(b"\n", 1)
dims, rest = rest.split(b"\n", 1)
sw, sh = map(int, dims.split())
_, pix = rest.split(b"\n", 1)
n = 2048
rows = b"".join((pix[(y % sh) * sw:(y % sh) * sw + sw] * (n // sw + 1))[:n] for y in range(n))
open(f"{work}/big.pgm", "wb").write(b"P5\n%d %d\n255\n" % (n, n) + rows)
PYEOF

wait_idle() {
    local i b
    for ((i = 0; i < 600; i++)); do
        b=$(getfattr --absolute-names -n user.imgcryptfs.backlog --only-values "$M" 2>/dev/null) || b=
        [ "$b" = 0 ] && return 0
        sleep 0.1
    done
    fail "conversion backlog still '$b' after 60 s"
}
storage() { getfattr --absolute-names -n user.imgcryptfs.storage --only-values "$1"; }
same() { [ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ] || fail "$1 does not read back as $2"; }

step "a decompression bomb stays a block file, the daemon stays small"
mount_fg "$B" "$M" "$K" "$LOG"
cp "$WORK/bomb.png" "$M/bomb.png"
wait_idle
[ "$(storage "$M/bomb.png")" = blocks ] || fail "the bomb is stored as '$(storage "$M/bomb.png")'"
same "$M/bomb.png" "$WORK/bomb.png"
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$DAEMON_PID/status")
echo "   daemon peak resident memory: $((hwm / 1024)) MiB"
[ "$hwm" -lt $((400 * 1024)) ] || fail "the daemon reached $((hwm / 1024)) MiB"
grep -q "conversion of .*: too large to code within the conversion memory budget" "$LOG" ||
    fail "no log line says why the bomb stays a block file"

step "the default budget converts a 2048 x 2048 slice"
cp "$WORK/big.pgm" "$M/big.pgm"
wait_idle
case $(storage "$M/big.pgm") in image*) ;; *) fail "big.pgm: $(storage "$M/big.pgm")" ;; esac
same "$M/big.pgm" "$WORK/big.pgm"
unmount_fg "$M"

step "-o convert_mb=64 keeps it a block file"
mount_fg "$B" "$M" "$K" "$LOG" convert_mb=64
cp "$WORK/big.pgm" "$M/big2.pgm"
wait_idle
[ "$(storage "$M/big2.pgm")" = blocks ] || fail "big2.pgm: $(storage "$M/big2.pgm") under 64 MiB"
same "$M/big2.pgm" "$WORK/big.pgm"
same "$M/big.pgm" "$WORK/big.pgm"
unmount_fg "$M"
rc=0
"$IMGC_BIN/imgcryptfs" -f -o "keyfile=$K,convert_mb=1" "$B" "$M" 2>"$WORK/err" || rc=$?
[ "$rc" = 2 ] && grep -q "convert_mb= takes 64 to" "$WORK/err" ||
    fail "convert_mb=1: exit $rc, $(cat "$WORK/err")"

step "imgcrypt encrypt stores the bomb as a block file and says so"
out=$("$IMGC_BIN/imgcrypt" encrypt --keyfile "$K" "$B" "$WORK/bomb.png" "$WORK/bomb.enc" 2>&1) ||
    fail "imgcrypt encrypt exited $?: $out"
case $out in *bomb.png:*"stored as a block file"*) ;; *) fail "message: $out" ;; esac
[ "$(head -c 6 "$WORK/bomb.enc")" = IMGCBF ] || fail "bomb.enc is not a block file"
"$IMGC_BIN/imgcrypt" decrypt --keyfile "$K" "$B" "$WORK/bomb.enc" "$WORK/bomb.dec" ||
    fail "decrypt failed"
same "$WORK/bomb.dec" "$WORK/bomb.png"
lib_finish
