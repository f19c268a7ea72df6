#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Tampering with the backing folder while unmounted: every modified, swapped, moved, dropped,
# zeroed or cut block must read as EIO (never other bytes) with a log line naming the backing
# path and block, while the untouched blocks of the same files still read back exactly.
# Also: broken headers, a file extended with a zero block, sealed symlink targets (in the
# backing symlink, and long ones in their sidecar: flipped, swapped, removed), xattr values and
# names. Block i of a block file is at 32 + i * 4124, 4124 bytes (nonce, 4096
# bytes of ciphertext, tag); see codec/store/blockfile.h.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
make_keyring "$B" "$K"
mount_fg "$B" "$M" "$K" "$LOG"

cat >"$WORK/tamper.py" <<'EOF'
import errno, json, os, sys

BS, HDR, SEALED = 4096, 32, 4124
mode, mnt, backing, work = sys.argv[1:5]
ORIG = os.path.join(work, "orig")
STATE = os.path.join(work, "state.json")

# name: plaintext size. Each file gets one tampering below.
FILES = {
    "control": 5 * BS + 7,
    "flip": 4 * BS + 1000,        # one byte flipped in block 2
    "swap": 4 * BS + 1000,        # blocks 1 and 3 swapped
    "movesrc": 4 * BS,            # block 1 copied from here ...
    "movedst": 4 * BS,            # ... over block 1 here (same offset)
    "trunc": 4 * BS + 500,        # last block (4) dropped: block 3 is now a false last
    "truncfull": 4 * BS,          # last full block (3) dropped: block 2 a false last
    "zero": 4 * BS + 10,          # block 1 zeroed (all 4124 bytes)
    "zerolast": 3 * BS + 2000,    # the whole last block zeroed
    "appendzero": 3 * BS,         # 4124 zero bytes appended (a fake extra block)
    "midcut": 2 * BS,             # cut 100 bytes into block 1
    "remainder": 2 * BS,          # cut to leave 10 bytes of block 1 (less than a tag)
    "hdrtrunc": 2 * BS + 5,       # cut to 16 bytes: half a header
    "hdronly": 2 * BS + 5,        # cut to the header: every block dropped (boundary 0)
    "cutzero": 2 * BS + 5,        # cut to 0 bytes
    "hdrmagic": 2 * BS + 5,       # magic damaged
    "hdrid": 2 * BS + 5,          # file id changed: every block fails
    "written": 3 * BS,            # block 1 damaged, then a partial write into it
}
# name: blocks that must fail (None: the open or the first read must fail).
BAD = {
    "control": [], "flip": [2], "swap": [1, 3], "movesrc": [], "movedst": [1],
    "trunc": [3], "truncfull": [2], "zero": [1], "zerolast": [3], "appendzero": [2, 3],
    "midcut": [1], "remainder": [], "hdrtrunc": None, "hdronly": None, "cutzero": None, "hdrmagic": None, "hdrid": [0, 1, 2],
    "written": [1],
}

# Blocks that may read or fail (both are right): a cut inside the tag of block 1 leaves
# block 0 intact but sealed as not-last; the file may be shown as ending before or after it.
MAY = {"remainder": [0, 1]}
# Long symlinks: one byte of the sidecar flipped, two sidecars swapped, one sidecar removed.
LONG_LINKS = ("longflip", "longswapa", "longswapb", "longgone")
# Files whose sequential read must end in EIO.
DAMAGED = {n for n in FILES if n not in ("control", "movesrc")}

def find_backing(ino):
    for dp, dn, fn in os.walk(backing):
        for n in fn + dn:
            p = os.path.join(dp, n)
            if os.lstat(p).st_ino == ino:
                return os.path.relpath(p, backing)
    sys.exit(f"no backing file with inode {ino}")

def prepare():
    os.makedirs(ORIG, exist_ok=True)
    state = {}
    for name, size in FILES.items():
        data = os.urandom(size)
        with open(os.path.join(mnt, name), "wb") as f:
            f.write(data)
        with open(os.path.join(ORIG, name), "wb") as f:
            f.write(data)
        state[name] = find_backing(os.stat(os.path.join(mnt, name)).st_ino)
    os.symlink("target/of/the/link", os.path.join(mnt, "link"))
    state["link"] = find_backing(os.lstat(os.path.join(mnt, "link")).st_ino)
    for name in LONG_LINKS:  # targets sealed in a sidecar of the root folder
        os.symlink(name + "/" * 3500, os.path.join(mnt, name))
        state[name] = find_backing(os.lstat(os.path.join(mnt, name)).st_ino)
    os.setxattr(os.path.join(mnt, "control"), "user.note", b"some value")
    os.mkdir(os.path.join(mnt, "dir"))
    with open(os.path.join(mnt, "dir", "renamed"), "w") as f:
        f.write("x")
    state["dir/renamed"] = find_backing(os.stat(os.path.join(mnt, "dir", "renamed")).st_ino)
    with open(STATE, "w") as f:
        json.dump(state, f)

def block(data, i):
    return data[HDR + i * SEALED:HDR + (i + 1) * SEALED]

def tamper():
    st = json.load(open(STATE))
    P = lambda n: os.path.join(backing, st[n])
    def rd(n):
        return bytearray(open(P(n), "rb").read())
    def wr(n, d):
        with open(P(n), "r+b") as f:
            f.truncate(0)
            f.write(d)
    d = rd("flip"); d[HDR + 2 * SEALED + 12 + 2000] ^= 0x01; wr("flip", d)
    d = rd("swap"); b1, b3 = block(d, 1), block(d, 3)
    d[HDR + 1 * SEALED:HDR + 2 * SEALED] = b3; d[HDR + 3 * SEALED:HDR + 4 * SEALED] = b1
    wr("swap", d)
    s, d = rd("movesrc"), rd("movedst")
    d[HDR + SEALED:HDR + 2 * SEALED] = block(s, 1); wr("movedst", d)
    d = rd("trunc"); wr("trunc", d[:HDR + 4 * SEALED])
    d = rd("truncfull"); wr("truncfull", d[:HDR + 3 * SEALED])
    d = rd("zero"); d[HDR + SEALED:HDR + 2 * SEALED] = bytes(SEALED); wr("zero", d)
    d = rd("zerolast"); d[HDR + 3 * SEALED:] = bytes(len(d) - HDR - 3 * SEALED); wr("zerolast", d)
    d = rd("appendzero"); wr("appendzero", d + bytes(SEALED))
    d = rd("midcut"); wr("midcut", d[:HDR + SEALED + 100])
    d = rd("remainder"); wr("remainder", d[:HDR + SEALED + 10])
    d = rd("hdrtrunc"); wr("hdrtrunc", d[:16])
    d = rd("hdronly"); wr("hdronly", d[:HDR])
    d = rd("cutzero"); wr("cutzero", b"")
    d = rd("hdrmagic"); d[0] ^= 0x20; wr("hdrmagic", d)
    d = rd("hdrid"); d[10] ^= 0x80; wr("hdrid", d)
    d = rd("written"); d[HDR + SEALED + 12 + 100] ^= 0xff; wr("written", d)
    # The symlink target: flip one base64 character.
    t = os.readlink(P("link"))
    t2 = t[:5] + ("A" if t[5] != "A" else "B") + t[6:]
    os.unlink(P("link")); os.symlink(t2, P("link"))
    # Long symlink targets: the sidecar a backing symlink's marker names.
    def sidecar(n):
        return os.path.join(backing, ".imgcryptfs.link." +
                            os.readlink(P(n))[len(".imgcryptfs.ln."):])
    d = bytearray(open(sidecar("longflip"), "rb").read()); d[len(d) // 2] ^= 0x01
    with open(sidecar("longflip"), "wb") as f:
        f.write(d)
    a, b = sidecar("longswapa"), sidecar("longswapb")
    os.rename(a, a + ".x"); os.rename(b, a); os.rename(a + ".x", b)
    os.unlink(sidecar("longgone"))
    # The xattr value on "control": flip one byte.
    for x in os.listxattr(P("control")):
        if x.startswith("user."):
            v = bytearray(os.getxattr(P("control"), x)); v[-1] ^= 1
            os.setxattr(P("control"), x, bytes(v))
    # A sealed name moved to another folder: the folder id is its associated data.
    os.rename(P("dir/renamed"), os.path.join(backing, os.path.basename(st["dir/renamed"])))

def check():
    st = json.load(open(STATE))
    problems, expect_log = [], []
    for name in FILES:
        orig = open(os.path.join(ORIG, name), "rb").read()
        bad = BAD[name]
        path = os.path.join(mnt, name)
        if name == "written":
            # A partial write into a damaged block must fail, not seal garbage around it.
            fd = os.open(path, os.O_RDWR)
            err = None
            try:
                os.pwrite(fd, b"new", BS + 10)
                os.fsync(fd)
            except OSError as e:
                err = e.errno
            finally:
                try:
                    os.close(fd)
                except OSError as e:
                    err = err or e.errno
            if err != errno.EIO:
                problems.append(f"{name}: partial write into a damaged block gave {err}, not EIO")
        if bad is None:
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    data = os.read(fd, 1 << 20)
                    problems.append(f"{name}: read {len(data)} bytes instead of EIO")
                finally:
                    os.close(fd)
            except OSError as e:
                if e.errno != errno.EIO:
                    problems.append(f"{name}: {e} instead of EIO")
            expect_log.append((name, st[name], None))
            continue
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead into other blocks
        size = os.fstat(fd).st_size
        nblocks = (size + BS - 1) // BS
        failed_blocks = set()
        for i in range(nblocks):
            try:
                got = os.pread(fd, BS, i * BS)
            except OSError as e:
                if e.errno != errno.EIO:
                    problems.append(f"{name} block {i}: {e}, not EIO")
                elif i not in bad and i not in MAY.get(name, []):
                    problems.append(f"{name} block {i}: untouched block gives EIO")
                else:
                    failed_blocks.add(i)
                continue
            if i in bad:
                problems.append(f"{name} block {i}: damaged block read without error "
                                f"({'same' if got == orig[i * BS:i * BS + len(got)] else 'OTHER'} bytes)")
            elif got != orig[i * BS:i * BS + BS][:len(got)] or len(got) != min(BS, size - i * BS):
                problems.append(f"{name} block {i}: untouched block reads wrong bytes")
        os.close(fd)
        # A plain sequential read: every byte it returns must be the original, and it must
        # fail before the end when a block is bad.
        fd = os.open(path, os.O_RDONLY)
        pos, failed = 0, False
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    problems.append(f"{name}: sequential read: {e}")
                failed = True
                break
            if not chunk:
                break
            if chunk != orig[pos:pos + len(chunk)]:
                problems.append(f"{name}: sequential read returned OTHER bytes at {pos}")
                break
            pos += len(chunk)
        os.close(fd)
        if name in DAMAGED and not failed:
            problems.append(f"{name}: sequential read reached the end ({pos} bytes) without EIO")
        if name in DAMAGED and not failed_blocks:
            problems.append(f"{name}: no block read failed")
        if name not in DAMAGED and (failed or pos != len(orig)):
            problems.append(f"{name}: clean file read {pos} of {len(orig)} bytes")
        for i in bad:
            expect_log.append((name, st[name], [i]))
        if MAY.get(name):
            expect_log.append((name, st[name], MAY[name]))
    # Symlink target, xattr value, moved name.
    try:
        t = os.readlink(os.path.join(mnt, "link"))
        problems.append(f"tampered symlink target read as {t!r}")
    except OSError as e:
        if e.errno != errno.EIO:
            problems.append(f"tampered symlink: {e}")
    expect_log.append(("link", st["link"], None))
    for name in LONG_LINKS:
        try:
            t = os.readlink(os.path.join(mnt, name))
            problems.append(f"{name}: tampered long symlink target read as {t[:40]!r}...")
        except OSError as e:
            if e.errno != errno.EIO:
                problems.append(f"{name}: {e}, not EIO")
        expect_log.append((name, st[name], None))
    try:
        v = os.getxattr(os.path.join(mnt, "control"), "user.note")
        problems.append(f"tampered xattr value read as {v!r}")
    except OSError as e:
        if e.errno != errno.EIO:
            problems.append(f"tampered xattr: {e}")
    listing = os.listdir(mnt)
    if any(n not in FILES and n not in ("link", "dir") + LONG_LINKS for n in listing):
        problems.append(f"a name moved between folders shows up: {sorted(listing)}")
    if os.listdir(os.path.join(mnt, "dir")):
        problems.append("dir still lists the moved entry")
    with open(os.path.join(work, "expect_log.json"), "w") as f:
        json.dump(expect_log, f)
    for p in problems:
        print("PROBLEM:", p)
    sys.exit(1 if problems else 0)

{"prepare": prepare, "tamper": tamper, "check": check}[mode]()
EOF

limit 60 "$PY" "$WORK/tamper.py" prepare "$M" "$B" "$WORK" || fail "prepare"
unmount "$M"
limit 60 "$PY" "$WORK/tamper.py" tamper "$M" "$B" "$WORK" || fail "tamper"
: >"$LOG"
mount_fg "$B" "$M" "$K" "$LOG"
limit 90 "$PY" "$WORK/tamper.py" check "$M" "$B" "$WORK" || check_fail "reads of tampered files (see above)"

# Every failure is logged once with the backing path and the block.
limit 30 "$PY" - "$WORK/expect_log.json" "$LOG" <<'EOF' || check_fail "log lines (see above)"
import json, sys
expect = json.load(open(sys.argv[1]))
log = open(sys.argv[2], errors="replace").read().splitlines()
missing = []
for name, rel, blks in expect:
    wants = [f"{rel}: block {b}:" for b in blks] if blks is not None else [f"{rel}"]
    if not any(w in line for line in log for w in wants):
        missing.append(f"{name}: no log line with {' or '.join(map(repr, wants))}")
for m in missing:
    print("PROBLEM:", m)
if not any("name does not decrypt" in l or "hidden" in l for l in log):
    print("PROBLEM: no log line for the name moved between folders")
    missing.append(1)
sys.exit(1 if missing else 0)
EOF
unmount "$M"
lib_finish
