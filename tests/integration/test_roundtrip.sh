#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Byte-exact round trips through a real mount: files of every size around the 4096-byte block
# boundaries, a reference model of a file against hundreds of random pwrite/truncate calls
# on the mounted file, and many small files; everything is compared again after an unmount
# and a fresh mount (so nothing comes from the page cache).
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key SRC=$WORK/src
make_keyring "$B" "$K"
mount_fs "$B" "$M" "$K"
mkdir -p "$SRC"

# 1. Sizes around block boundaries, copied in with cp (and with dd in odd chunks).
SIZES="0 1 4095 4096 4097 8191 8192 8193 $((1024 * 1024 + 1)) $((5 * 1024 * 1024))"
for s in $SIZES; do
    head -c "$s" /dev/urandom >"$SRC/f$s"
    cp "$SRC/f$s" "$M/f$s" || fail "cp of $s bytes into the mount"
    dd if="$SRC/f$s" of="$M/dd$s" bs=1000 status=none || fail "dd of $s bytes into the mount"
done
(cd "$SRC" && sha256sum f*) >"$WORK/sums.f"
sed 's/  f/  dd/' "$WORK/sums.f" | cat "$WORK/sums.f" - >"$WORK/sums"

check_sizes() { # $1: when
    local s got
    (cd "$M" && sha256sum --quiet -c "$WORK/sums") || fail "$1: sha256 differs"
    for s in $SIZES; do
        got=$(stat -c %s "$M/f$s") || fail "$1: stat f$s"
        [ "$got" = "$s" ] || fail "$1: f$s has st_size $got, want $s"
    done
}
check_sizes "same mount"
unmount "$M"
mount_fs "$B" "$M" "$K"
check_sizes "after remount"
say "block-boundary sizes ok"

# 2. Rewriting an existing file in place, longer than it was (no O_TRUNC): the classic
# "overwrite a file with a bigger version" path, at sizes on and off block boundaries.
limit 60 "$PY" - "$M" "$WORK" <<'EOF' || fail "in-place overwrite"
import os, sys
mnt, work = sys.argv[1], sys.argv[2]
for old in (4096, 8192, 10000, 12288):
    for new in (old + 1, old + 5000, 2 * old + 4096):
        name = f"over_{old}_{new}"
        with open(os.path.join(mnt, name), "wb") as f:
            f.write(b"a" * old)
        fd = os.open(os.path.join(mnt, name), os.O_RDWR)
        os.pwrite(fd, b"b" * new, 0)
        os.close(fd)
        with open(os.path.join(work, name + ".ref"), "wb") as f:
            f.write(b"b" * new)
EOF
unmount "$M"
mount_fs "$B" "$M" "$K"
bad=""
for ref in "$WORK"/over_*.ref; do
    n=$(basename "$ref" .ref)
    cmp -s "$ref" "$M/$n" || bad="$bad $n($(tr -d '\n' <"$M/$n" | tr -s 'ab' | head -c 8))"
done
if [ -n "$bad" ]; then
    check_fail "overwriting a file in place with a longer version lost data (after remount;" \
        "runs of a=old b=new):$bad"
else
    say "in-place overwrite ok"
fi

# 3. A reference model against random pwrite/truncate calls.
limit 150 "$PY" - "$M/model" "$WORK/model.ref" <<'EOF' || check_fail "random write model (see above)"
import os, random, sys

path, ref_path = sys.argv[1], sys.argv[2]
rng = random.Random(1234)
model = bytearray()
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

def check(when):
    # Push everything to the daemon and drop this file's page cache, so the reads below come
    # from the backing store, not from the kernel's copy.
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    st = os.fstat(fd)
    if st.st_size != len(model):
        sys.exit(f"{when}: st_size {st.st_size}, model {len(model)}")
    got = bytearray()
    while True:
        b = os.pread(fd, 1 << 20, len(got))
        if not b:
            break
        got += b
    if got != model:
        first = next(i for i in range(min(len(got), len(model)) + 1)
                     if i >= len(got) or i >= len(model) or got[i] != model[i])
        sys.exit(f"{when}: content differs (len {len(got)} vs {len(model)}, first at {first})")

B = 4096
for op in range(600):
    r = rng.random()
    if r < 0.70:
        # Offsets clustered around block boundaries, sometimes past the end (a hole).
        base = rng.choice([0, len(model), len(model) - B * rng.randrange(1, 4),
                           rng.randrange(0, 100000)])
        off = max(0, (base // B) * B + rng.choice([0, -1, 1, rng.randrange(-3000, 3000)]))
        n = rng.choice([1, 2, 4095, 4096, 4097, 8192, rng.randrange(1, 20000)])
        data = rng.randbytes(n)
        if os.pwrite(fd, data, off) != n:
            sys.exit("short pwrite")
        if off > len(model):
            model += bytes(off - len(model))
        model[off:off + n] = data
    elif r < 0.85:
        size = rng.choice([0, len(model) // 2, len(model) + rng.randrange(1, 9000),
                           max(0, len(model) - rng.randrange(1, 9000)),
                           (len(model) // B) * B, rng.randrange(0, 100000) // B * B,
                           rng.randrange(0, 100000)])
        if rng.random() < 0.5:
            os.ftruncate(fd, size)
        else:
            os.truncate(path, size)
        if size < len(model):
            del model[size:]
        else:
            model += bytes(size - len(model))
    elif r < 0.95:
        off = rng.randrange(0, len(model) + 5000)
        n = rng.randrange(1, 20000)
        got = os.pread(fd, n, off)
        if got != bytes(model[off:off + n]):
            sys.exit(f"op {op}: pread({n}, {off}) differs from the model")
    else:
        os.close(fd)
        fd = os.open(path, os.O_RDWR)
    if rng.random() < 0.3:
        os.fsync(fd)  # hand the daemon this state, so later writes meet it in many shapes
    if op % 25 == 24:
        check(f"op {op}")
os.fsync(fd)
check("end")
os.close(fd)
with open(ref_path, "wb") as f:
    f.write(model)
print(f"model: {len(model)} bytes after 600 operations")
EOF
if [ -f "$WORK/model.ref" ]; then
    cmp "$WORK/model.ref" "$M/model" || check_fail "model file differs (same mount, new open)"
    unmount "$M"
    mount_fs "$B" "$M" "$K"
    cmp "$WORK/model.ref" "$M/model" || check_fail "model file differs after remount"
    say "random pwrite/truncate model done"
fi

# 4. Many small files in a few folders.
limit 120 "$PY" - "$M/small" "$WORK/small.sha" <<'EOF' || fail "small files"
import hashlib, os, random, sys
root, out = sys.argv[1], sys.argv[2]
rng = random.Random(99)
lines = []
for d in range(4):
    os.makedirs(os.path.join(root, f"d{d}"), exist_ok=True)
    for i in range(150):
        data = rng.randbytes(rng.randrange(0, 9000))
        rel = f"d{d}/file{i:03d}.bin"
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}\n")
with open(out, "w") as f:
    f.writelines(lines)
EOF
(cd "$M/small" && sha256sum --quiet -c "$WORK/small.sha") || fail "small files differ"
unmount "$M"
mount_fs "$B" "$M" "$K"
(cd "$M/small" && sha256sum --quiet -c "$WORK/small.sha") || fail "small files differ after remount"
[ "$(find "$M/small" -type f | wc -l)" = 600 ] || fail "small files: wrong count"
say "600 small files ok"
unmount "$M"
lib_finish
