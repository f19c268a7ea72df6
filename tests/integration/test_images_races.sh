#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Races with the conversion of images (issue 14). Every change made in the mount is made to a
# shadow copy outside it too; at the end, and after a remount, the mount must list exactly the
# shadow's names and every file must have the shadow's SHA-256. The cases, each started a
# random 0-3 s after the close that queues a conversion (so they land before, during and
# after it):
#   read      reads (whole and at random offsets) while the file converts, each exact
#   write     open r+, pwrite into the pixel data, close
#   rewrite   open O_TRUNC and write another image
#   append    bytes appended
#   truncate  shorter, longer, to zero
#   rename    to a new name, and over another (stored) image; the old name must not return
#   unlink    the name must not return, and nothing be left in the backing folder
#   link      link() while converting: both names exact, the file stays `blocks`
#   handles   a reader handle kept open across the conversion and a write through another
#             handle; a second writer handle that closes last
#   deleted   open r+, the name and its folder deleted, then a write and a read through the
#             handle
#   loop      one file closed and reopened for writing 100 times (r+ writes, every tenth an
#             O_TRUNC rewrite), read back every tenth time, `image` at the end
#   links     a file hard-linked before its last close stays `blocks`; link() to a stored
#             image works, both names read exactly
#   cache     a stored image read (and mmapped), so its plaintext is cached, then rewritten,
#             written r+, truncated, replaced by a rename, unlinked and made anew: each read
#             right after gives the new bytes
# The backing folder then holds one entry per name, and no temporary entry; the log reports no
# failed authentication (nothing was damaged).
# 3 rounds of every case; IMGC_LONG=1: 30, and 1,000 turns of the loop. The time limits are
# generous: scripts/test.sh runs this test against a daemon built with ThreadSanitizer.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
images_need getfattr pil mricron

ROUNDS=3 LOOP=100
[ "${IMGC_LONG:-0}" = 1 ] && ROUNDS=30 LOOP=1000
POOL=$WORK/pool SHADOW=$WORK/shadow B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
mkdir -p "$POOL" "$SHADOW"
step "make the images"
# Big enough that a conversion takes a while (0.1-0.5 s each on two cores), small enough for
# the ThreadSanitizer run.
limit 120 "$PY" "$IMGU" big "$POOL/big16.pgm" 768 16 || fail "cannot make big16.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/big8.pgm" 768 8 || fail "cannot make big8.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/mid12.pgm" 512 12 || fail "cannot make mid12.pgm"
cp "$IMGC_TESTDATA/CT_small.dcm" "$IMGC_TESTDATA/mri-t1-coronal-512.png" "$POOL/" || fail "tests/data"
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }
umnt() { unmount_fg "$M"; }
mnt

cat >"$WORK/races.py" <<'EOF'
import errno, hashlib, os, random, shutil, sys, threading, time

mnt, shadow, pool_dir, rounds, loop_n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(int(os.environ.get("RACE_SEED", str(time.time_ns()))))
problems = []
expect = {}  # relative path -> "image" | "blocks": what storage must say at the end

def problem(msg):
    problems.append(msg)
    print("PROBLEM:", msg, flush=True)

POOL = {n: open(os.path.join(pool_dir, n), "rb").read() for n in sorted(os.listdir(pool_dir))}
PGMS = [n for n in POOL if n.endswith(".pgm")]

def pixel_region(data):
    """Where bytes may be changed with the file staying an image: a PGM's pixels."""
    tokens, at = 0, 0
    while tokens < 4:
        while data[at:at + 1].isspace():
            at += 1
        while not data[at:at + 1].isspace():
            at += 1
        tokens += 1
    return at + 1, len(data)

def M(rel):
    return os.path.join(mnt, rel)

def S(rel):
    return os.path.join(shadow, rel)

def both(fn, rel, *a):
    """Do the same operation on the mount and on the shadow copy."""
    for root in (mnt, shadow):
        fn(os.path.join(root, rel), *a)

def both2(fn, a, b):
    """The same two-name operation (rename, link) on the mount and on the shadow copy."""
    for root in (mnt, shadow):
        fn(os.path.join(root, a), os.path.join(root, b))

def write_file(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)

def pwrite(path, off, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)

from images_util import fresh_read as fresh  # read with cached pages dropped

def storage(path):
    try:
        return os.getxattr(path, "user.imgcryptfs.storage").decode(errors="replace")
    except OSError as e:
        return "ERROR:" + errno.errorcode.get(e.errno, str(e.errno))

def pread_all(fd, n, off):
    out = []
    while n > 0:
        b = os.pread(fd, n, off)
        if not b:
            break
        out.append(b)
        n -= len(b)
        off += len(b)
    return b"".join(out)

HIT = {}  # what storage said just before each racing operation: shows which phases were hit
PHASE = {}  # the same, per file

def pause(rel=None):
    """None, 0-200 ms, 0.2-1.5 s or 1.5-3 s (a quarter of the time each: a conversion of
    these images takes 0.1-0.5 s on two cores, behind the others queued); then note the phase
    rel is in."""
    r = rnd.random()
    if r >= 0.75:
        time.sleep(1.5 + rnd.random() * 1.5)
    elif r >= 0.5:
        time.sleep(0.2 + rnd.random() * 1.3)
    elif r >= 0.25:
        time.sleep(rnd.random() * 0.2)
    if rel:
        k = storage(M(rel)).split(" ")[0]
        HIT[k] = HIT.get(k, 0) + 1
        PHASE[rel] = k

def same(rel, what):
    """The file in the mount reads as the shadow copy, now."""
    try:
        got = fresh(M(rel))
    except OSError as e:
        problem(f"{what}: {rel} does not read: {errno.errorcode.get(e.errno, e.errno)}")
        return
    want = open(S(rel), "rb").read()
    if got != want:
        problem(f"{what}: {rel} reads {len(got)} bytes, sha256 {hashlib.sha256(got).hexdigest()[:12]}, "
                f"expected {len(want)} bytes, {hashlib.sha256(want).hexdigest()[:12]}")

def img(kind=None):
    n = kind or rnd.choice(PGMS)
    return POOL[n]

def case_read(d):
    rel = f"{d}/read.pgm"
    data = img()
    both(write_file, rel, data)
    t_end = time.time() + 3
    reads = 0
    while time.time() < t_end:
        try:
            got = fresh(M(rel))
            if got != data:
                problem(f"read: whole read of {rel} while converting gives other bytes ({len(got)})")
                return
            fd = os.open(M(rel), os.O_RDONLY)
            try:
                for _ in range(4):
                    off = rnd.randrange(len(data))
                    n = rnd.randrange(1, 70000)
                    b = pread_all(fd, n, off)
                    if b != data[off:off + n]:
                        problem(f"read: pread({n}, {off}) of {rel} while converting gives other bytes")
                        return
            finally:
                os.close(fd)
        except OSError as e:
            problem(f"read: {rel} while converting: {errno.errorcode.get(e.errno, e.errno)}")
            return
        reads += 1
        if storage(M(rel)).startswith("image") and reads > 3:
            break
    expect[rel] = "image"

def case_write(d):
    rel = f"{d}/write.pgm"
    data = img()
    both(write_file, rel, data)
    pause(rel)
    lo, hi = pixel_region(data)
    off = rnd.randrange(lo, hi - 5000)
    patch = os.urandom(rnd.randrange(1, 5000))
    patch = bytes(b & 0x0F for b in patch)  # keep 16-bit samples under a 12-bit maxval
    both(pwrite, rel, off, patch)
    expect[rel] = "image"

def case_rewrite(d):
    rel = f"{d}/rewrite.pgm"
    both(write_file, rel, img())
    pause(rel)
    both(write_file, rel, img())
    expect[rel] = "image"

def case_append(d):
    rel = f"{d}/append.png"
    both(write_file, rel, POOL["mri-t1-coronal-512.png"])
    pause(rel)
    both(write_file, rel, b"appended after IEND\n" * rnd.randrange(1, 300), "ab")

def case_truncate(d):
    rel = f"{d}/truncate.pgm"
    data = img()
    both(write_file, rel, data)
    pause(rel)
    size = rnd.choice([0, 1, len(data) // 2, len(data) - 1, len(data) + 5000])
    both(os.truncate, rel, size)

def case_rename(d):
    a, b, c, e = f"{d}/ren-a.pgm", f"{d}/ren-b.pgm", f"{d}/ren-c.dcm", f"{d}/ren-over.pgm"
    both(write_file, a, img())
    pause(a)
    both2(os.rename, a, b)
    expect[b] = "image"
    # Over another image, stored or converting.
    both(write_file, e, img())
    both(write_file, c, POOL["CT_small.dcm"])
    pause(c)
    both2(os.rename, c, e)
    expect[e] = "image"

def case_unlink(d):
    rel = f"{d}/unlink.pgm"
    both(write_file, rel, img())
    pause(rel)
    both(os.unlink, rel)

def case_link(d):
    a, b = f"{d}/link-a.pgm", f"{d}/link-b.pgm"
    both(write_file, a, img())
    pause(a)
    both2(os.link, a, b)
    expect[a] = expect[b] = "blocks"

def case_handles(d):
    rel = f"{d}/handles.pgm"
    data = img()
    both(write_file, rel, data)
    # A reader opened at once, kept open while the file converts.
    fd = os.open(M(rel), os.O_RDONLY)
    try:
        pause()
        if pread_all(fd, len(data) + 1, 0) != data:
            problem(f"handles: the reader kept open across the conversion of {rel} reads other bytes")
        time.sleep(0.05)
        # A write through another handle while the reader is still open.
        lo, hi = pixel_region(data)
        off = rnd.randrange(lo, hi - 100)
        both(pwrite, rel, off, b"\x01" * 100)
        want = open(S(rel), "rb").read()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if pread_all(fd, len(want) + 1, 0) != want:
            problem(f"handles: the open reader of {rel} does not see the write through the other handle")
    finally:
        os.close(fd)
    # Two writers: the second one closes last.
    rel2 = f"{d}/handles2.pgm"
    data2 = img()
    w1 = open(M(rel2), "wb")
    w1.write(data2)
    w1.flush()
    w2 = open(M(rel2), "r+b")
    w1.close()
    pause()
    lo, hi = pixel_region(data2)
    w2.seek(lo + 10)
    w2.write(b"\x02" * 300)
    w2.close()
    s = bytearray(data2)
    s[lo + 10:lo + 310] = b"\x02" * 300
    write_file(S(rel2), bytes(s))
    expect[rel] = expect[rel2] = "image"

def case_deleted(d):
    """A file opened r+ (a stored image stays one until written), then its name and its folder
    deleted, then written and read through the handle: the write goes on, nameless, and
    nothing is left behind (the backing folder is checked at the end)."""
    sub = f"{d}/deleted"
    both(os.mkdir, sub)
    rel = f"{sub}/gone.pgm"
    data = img()
    both(write_file, rel, data)
    pause(rel)
    with open(M(rel), "r+b") as f:
        both(os.unlink, rel)
        both(os.rmdir, sub)
        lo, hi = pixel_region(data)
        off = rnd.randrange(lo, hi - 300)
        os.pwrite(f.fileno(), b"\x04" * 300, off)
        want = data[:off] + b"\x04" * 300 + data[off + 300:]
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        if pread_all(f.fileno(), len(want) + 1, 0) != want:
            problem(f"deleted: {rel}, written after its name and folder were deleted, reads other bytes")

def wait_idle(timeout=600):
    """Until the backlog has read 0 three times in a row (10 s at most without a value)."""
    zeros, errors, end = 0, 0, time.time() + timeout
    while time.time() < end:
        try:
            v = os.getxattr(mnt, "user.imgcryptfs.backlog").decode()
            errors = 0
        except OSError as e:
            v = "ERROR:" + errno.errorcode.get(e.errno, str(e.errno))
            errors += 1
            if errors >= 50:
                break
        zeros = zeros + 1 if v == "0" else 0
        if zeros >= 3:
            return True
        time.sleep(0.2)
    problem(f"the backlog is still {v} (waited {timeout} s at most)")
    return False

def case_loop(d):
    rel = f"{d}/loop.pgm"
    data = img("big8.pgm")
    both(write_file, rel, data)
    lo, hi = pixel_region(data)
    for i in range(loop_n):
        if i % 10 == 9:
            both(write_file, rel, img("big8.pgm") if i % 20 == 9 else img("mid12.pgm"))
            lo, hi = pixel_region(open(S(rel), "rb").read())
        else:
            off = rnd.randrange(lo, hi - 64)
            patch = bytes(rnd.randrange(0, 16) for _ in range(rnd.randrange(1, 64)))
            for root in (mnt, shadow):
                with open(os.path.join(root, rel), "r+b") as f:
                    f.seek(off)
                    f.write(patch)
        if i % 10 == 0:
            same(rel, f"loop turn {i}")
        if rnd.random() < 0.3:
            time.sleep(rnd.random() * 0.05)
    expect[rel] = "image"

def case_links(d):
    # Hard-linked before its last close: never converted.
    a, b = f"{d}/hl-a.pgm", f"{d}/hl-b.pgm"
    data = img()
    for root in (mnt, shadow):
        with open(os.path.join(root, a), "wb") as f:
            f.write(data)
            f.flush()
            os.link(os.path.join(root, a), os.path.join(root, b))
    expect[a] = expect[b] = "blocks"
    # link() to a stored image.
    c, e = f"{d}/stored.pgm", f"{d}/stored-link.pgm"
    both(write_file, c, img())
    wait_idle()
    st = storage(M(c))
    if not st.startswith("image"):
        problem(f"links: {c} is '{st}' before the link, expected an image")
    both2(os.link, c, e)
    same(c, "links: the stored image after link()")
    same(e, "links: the new name of a stored image")
    expect[c] = expect[e] = "blocks"

def run(case, d):
    """A case that fails with an exception is a problem too (and the others go on)."""
    try:
        case(d)
    except OSError as e:
        problem(f"{case.__name__} in {d}: {e}")
    except Exception as e:
        problem(f"{case.__name__} in {d}: {type(e).__name__}: {e}")

def mmap_read(path):
    import mmap
    with open(path, "rb") as f:
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            return bytes(mm)

def case_cache(d):
    """A stored image read (so its plaintext is cached, also through mmap), then changed in
    every way: each read right after must give the new bytes, never the cached old ones."""
    rel, other = f"{d}/cached.pgm", f"{d}/other.pgm"
    def stored_and_cached(what):
        wait_idle()
        st = storage(M(rel))
        if not st.startswith("image"):
            problem(f"cache: {rel} is '{st}' before '{what}', expected an image")
        same(rel, f"cache: before '{what}'")
        if mmap_read(M(rel)) != open(S(rel), "rb").read():
            problem(f"cache: mmap of the stored {rel} before '{what}' reads other bytes")
    both(write_file, rel, img("big8.pgm"))
    stored_and_cached("O_TRUNC rewrite")
    both(write_file, rel, img("mid12.pgm"))
    same(rel, "cache: right after an O_TRUNC rewrite of a cached image")
    stored_and_cached("r+ write")
    data = open(S(rel), "rb").read()
    lo, hi = pixel_region(data)
    both(pwrite, rel, (lo + hi) // 2, b"\x03" * 77)
    same(rel, "cache: right after an r+ write into a cached image")
    stored_and_cached("truncate")
    both(os.truncate, rel, len(data) // 3)
    same(rel, "cache: right after truncate(2) of a cached image")
    both(write_file, rel, img("big16.pgm"))
    both(write_file, other, img("big8.pgm"))
    stored_and_cached("rename over it")
    both2(os.rename, other, rel)
    same(rel, "cache: right after another image was renamed over a cached one")
    if mmap_read(M(rel)) != open(S(rel), "rb").read():
        problem(f"cache: mmap right after the rename over {rel} reads other bytes")
    stored_and_cached("unlink and create anew")
    both(os.unlink, rel)
    both(write_file, rel, img("mid12.pgm"))
    same(rel, "cache: right after a cached image was unlinked and its name written anew")
    expect[rel] = "image"

CASES = [case_read, case_write, case_rewrite, case_append, case_truncate, case_rename,
         case_unlink, case_link, case_handles, case_deleted]

def main():
    os.makedirs(os.path.join(mnt, "races"), exist_ok=True)
    os.makedirs(os.path.join(shadow, "races"), exist_ok=True)
    for r in range(rounds):
        d = f"races/r{r}"
        both(os.mkdir, d)
        cases = CASES[:]
        rnd.shuffle(cases)
        # Half of the rounds run the cases one after the other, half side by side.
        if r % 2 == 0:
            for c in cases:
                run(c, d)
        else:
            ts = [threading.Thread(target=run, args=(c, d)) for c in cases]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    both(os.mkdir, "races/loop")
    run(case_loop, "races/loop")
    both(os.mkdir, "races/links")
    run(case_links, "races/links")
    both(os.mkdir, "races/cache")
    run(case_cache, "races/cache")
    wait_idle()
    print("storage just before the racing operations:",
          ", ".join(f"{k} {v}" for k, v in sorted(HIT.items())), file=sys.stderr)
    check("once the backlog is 0")

def check(when):
    names_s = sorted(os.path.relpath(os.path.join(dp, n), shadow)
                     for dp, dn, fn in os.walk(shadow) for n in fn)
    names_m = sorted(os.path.relpath(os.path.join(dp, n), mnt)
                     for dp, dn, fn in os.walk(mnt) for n in fn)
    for n in sorted(set(names_m) - set(names_s)):
        problem(f"{when}: {n} is in the mount but was renamed away or unlinked")
    for n in sorted(set(names_s) - set(names_m)):
        problem(f"{when}: {n} is missing from the mount")
    # What is stored before anything is read (a read and close may queue a conversion).
    for n, kind in sorted(expect.items()):
        st = storage(M(n))
        if st.split(" ")[0] != kind:
            phase = f" (it was {PHASE[n]} when the race began)" if n in PHASE else ""
            problem(f"{when}: {n} is '{st}', expected {kind}{phase}")
    for n in names_s:
        if n in names_m:
            same(n, when)
    print(f"{when}: {len(names_s)} files compared", file=sys.stderr)
    with open(os.path.join(shadow, "..", "expect.txt"), "w") as f:
        for n, kind in sorted(expect.items()):
            f.write(f"{kind} {n}\n")

if len(sys.argv) > 6 and sys.argv[6] == "check":
    for line in open(os.path.join(shadow, "..", "expect.txt")):
        kind, n = line.split()
        expect[n] = kind
    check(sys.argv[7])
else:
    main()
sys.exit(1 if problems else 0)
EOF

step "races with the conversion"
seed=${RACE_SEED:-$RANDOM$RANDOM}
say "RACE_SEED=$seed"
RACE_SEED=$seed limit 1800 "$PY" "$WORK/races.py" "$M" "$SHADOW" "$POOL" "$ROUNDS" "$LOOP" ||
    check_fail "races (see the problems above; rerun with RACE_SEED=$seed)"
wait_backlog "$M" 600
umnt

step "after a remount"
mnt
limit 900 "$PY" "$WORK/races.py" "$M" "$SHADOW" "$POOL" "$ROUNDS" "$LOOP" check "after a remount" ||
    check_fail "after a remount (see the problems above)"
umnt
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left in the backing folder: $left"
# Nothing here was tampered with: no failed authentication may be reported (a torn read of a
# file being written is the writer's change, not damage).
bad=$(grep -iE 'authenticat|tamper' "$LOG" | head -n 3)
[ -z "$bad" ] || check_fail "the log reports damage where there is none: $bad"
# One backing entry per name in the mount: nothing an unlink or a rename left behind.
nb=$(find "$B" -type f ! -name '.imgcryptfs.*' ! -name 'imgcryptfs.keyring*' | wc -l)
ns=$(find "$SHADOW" -type f | wc -l)
[ "$nb" = "$ns" ] || check_fail "the backing folder holds $nb files for the $ns names in the mount"
lib_finish
