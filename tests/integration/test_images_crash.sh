#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 of the daemon while images are being converted (issue 14). Each trial: a Python
# writer puts images into the mount in bursts (512x512 and 256x256 PGMs of 8 and 16 bits, a
# DICOM, a PNG; each file's pixels made unique), sometimes rewriting a file it wrote before,
# and logs outside the mount what it is about to write and, once close(2) returned, that it
# closed it; conversions run behind it. After a random 0.3-2.5 s the daemon is killed, the dead
# mount unmounted and mounted again. Then every file whose close was logged reads back with
# exactly the SHA-256 of its last closed content, the one file being written at the kill is
# absent (if new), its old content, or a prefix of its new content, no other name appears, and
# once the mount's sweep has run no .imgcryptfs.tmp.* entry is left in the backing folder.
# 0 wrong, 0 lost. 10 trials; IMGC_LONG=1: 100. Then an unmount and a SIGTERM right after 12
# images were copied in: the daemon exits within 20 s, the files read back exactly. At the end
# every trial's files again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_images.sh"
lib_setup
images_need getfattr pil mricron

TRIALS=10
[ "${IMGC_LONG:-0}" = 1 ] && TRIALS=100
POOL=$WORK/pool B=$WORK/backing M=$WORK/mnt K=$WORK/key LOG=$WORK/daemon.log
mkdir -p "$POOL" "$WORK/logs"
step "make the images"
limit 120 "$PY" "$IMGU" big "$POOL/a16.pgm" 512 16 || fail "cannot make a16.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/b8.pgm" 512 8 || fail "cannot make b8.pgm"
limit 120 "$PY" "$IMGU" big "$POOL/c12.pgm" 256 12 || fail "cannot make c12.pgm"
cp "$IMGC_TESTDATA/CT_small.dcm" "$IMGC_TESTDATA/mri-t1-sagittal-256.png" "$POOL/" || fail "tests/data"
make_keyring "$B" "$K"
mnt() { mount_fg "$B" "$M" "$K" "$LOG"; }
umnt() { unmount_fg "$M"; }

cat >"$WORK/crash.py" <<'EOF'
import errno, hashlib, os, random, sys, time

def content(pool, rnd, serial):
    """An image from the pool, its pixels made unique (PNG: as is)."""
    names = sorted(pool)
    n = names[serial % len(names)]
    data = bytearray(pool[n])
    if n.endswith(".pgm"):
        # Pixels after the header; low nibbles only, so 12-bit samples stay under maxval.
        end = len(data)
        for k in range(32):
            at = end - 1 - rnd.randrange(min(60000, end // 2))
            data[at] = rnd.randrange(16)
    elif n.endswith(".dcm"):
        at = len(data) - 2 * rnd.randrange(1, 4000)
        data[at:at + 2] = serial.to_bytes(4, "little")[:2]
    return n.rsplit(".", 1)[1], bytes(data)

def write(mnt, log_dir, pool, trial, seed):
    """Write until an error (the daemon is gone). Log `start NAME SHA` before the open and
    `done NAME` after the close, each synced, in log_dir/t<trial>."""
    rnd = random.Random(seed)
    top = os.path.join(mnt, f"t{trial}")
    log = open(os.path.join(log_dir, f"t{trial}"), "w")
    def note(line):
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())
    written = []
    try:
        os.mkdir(top)
        note("mkdir")
        serial = 0
        while True:
            for _ in range(rnd.randrange(1, 6)):
                if written and rnd.random() < 0.2:
                    name = rnd.choice(written)  # rewrite (O_TRUNC) a file written before
                    ext, data = content(pool, rnd, serial)
                    data = data if name.endswith("." + ext) else None
                    if data is None:
                        continue
                else:
                    ext, data = content(pool, rnd, serial)
                    name = f"f{serial}.{ext}"
                serial += 1
                # The bytes about to be written, kept outside the mount for the check.
                pend = os.path.join(log_dir, f"t{trial}.pending")
                with open(pend + ".new", "wb") as f:
                    f.write(data)
                os.replace(pend + ".new", pend)
                note(f"start {name} {hashlib.sha256(data).hexdigest()}")
                fd = os.open(os.path.join(top, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    at = 0
                    while at < len(data):
                        at += os.write(fd, data[at:at + 65536])
                finally:
                    os.close(fd)
                note(f"done {name}")
                if name not in written:
                    written.append(name)
            time.sleep(rnd.random() * 0.3)  # conversions run alone for a while
    except OSError:
        pass

from images_util import fresh_read as fresh  # read with cached pages dropped

def describe(path):
    """For a file that fails to read: its size, what it is stored as, the first bad block."""
    try:
        size = os.stat(path).st_size
        try:
            st = os.getxattr(path, "user.imgcryptfs.storage").decode().split(" ")[0]
        except OSError as e:
            st = "storage:" + errno.errorcode.get(e.errno, str(e.errno))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            bad = next((i for i in range(0, max(size, 1), 4096)
                        if not _reads(fd, i)), None)
        finally:
            os.close(fd)
        return f"st_size {size}, {st}, first failing 4 KiB block at {bad}"
    except OSError as e:
        return f"({errno.errorcode.get(e.errno, e.errno)} describing it)"

def _reads(fd, off):
    try:
        os.pread(fd, 4096, off)
        return True
    except OSError:
        return False

def verify(mnt, log_dir, pool, trial, seed):
    """Replay the log: each name's last closed content and the content being written at the
    kill. One PROBLEM line per wrong file."""
    lines = open(os.path.join(log_dir, f"t{trial}")).read().split("\n")
    top = os.path.join(mnt, f"t{trial}")
    closed, pending = {}, None  # name -> sha256 of its last closed content; (name, sha)
    for line in lines:
        w = line.split()
        if not w or w[0] == "mkdir":
            continue
        if w[0] == "start":
            pending = (w[1], w[2])
        elif w[0] == "done" and pending and pending[0] == w[1]:
            closed[w[1]] = pending[1]
            pending = None
    problems, counts = [], {"exact": 0, "pending": 0}
    if not os.path.isdir(top):
        if closed or pending:
            problems.append(f"t{trial}: the folder is gone ({len(closed)} closed files lost)")
        return problems, counts
    listed = set(os.listdir(top))
    for name, sha in sorted(closed.items()):
        if pending and pending[0] == name:
            continue
        if name not in listed:
            problems.append(f"LOST t{trial}/{name}: closed, then missing")
            continue
        try:
            got = hashlib.sha256(fresh(os.path.join(top, name))).hexdigest()
        except OSError as e:
            problems.append(f"EIO t{trial}/{name}: {errno.errorcode.get(e.errno, e.errno)}; "
                            f"{describe(os.path.join(top, name))}")
            continue
        if got != sha:
            problems.append(f"WRONG t{trial}/{name}: sha256 {got[:12]}, closed with {sha[:12]}")
        else:
            counts["exact"] += 1
    if pending:
        name, sha = pending
        if name in listed:
            counts["pending"] += 1
            try:
                got = fresh(os.path.join(top, name))
            except OSError as e:
                problems.append(f"EIO t{trial}/{name} (being written at the kill): "
                                f"{errno.errorcode.get(e.errno, e.errno)}; {describe(os.path.join(top, name))}")
                got = None
            if got is not None:
                old = closed.get(name)
                want = open(os.path.join(log_dir, f"t{trial}.pending"), "rb").read()
                if hashlib.sha256(want).hexdigest() != sha:
                    want = None  # the kill came between the pending bytes and the log line
                ok = hashlib.sha256(got).hexdigest() == old or (want is not None and want[:len(got)] == got)
                if not ok:
                    problems.append(f"WRONG t{trial}/{name} (being written at the kill): {len(got)} bytes, "
                                    f"neither its old content nor a prefix of its new one")
    for name in sorted(listed - set(closed) - ({pending[0]} if pending else set())):
        problems.append(f"EXTRA t{trial}/{name}: a name that was never written")
    return problems, counts

def main():
    mode, mnt, log_dir, pool_dir = sys.argv[1:5]
    pool = {n: open(os.path.join(pool_dir, n), "rb").read() for n in os.listdir(pool_dir)}
    if mode == "write":
        write(mnt, log_dir, pool, int(sys.argv[5]), int(sys.argv[6]))
        return 0
    problems, exact, pending = [], 0, 0
    for arg in sys.argv[5:]:
        trial, seed = map(int, arg.split(":"))
        p, c = verify(mnt, log_dir, pool, trial, seed)
        problems += p
        exact += c["exact"]
        pending += c["pending"]
    for p in problems:
        print("PROBLEM:", p)
    print(f"{exact} files exact, {pending} being written at the kill, {len(problems)} problems",
          file=sys.stderr)
    return 1 if problems else 0

sys.exit(main())
EOF

mnt
TRIAL_ARGS=()
fails=0 killed_tmp=0
for ((t = 1; t <= TRIALS; t++)); do
    step "trial $t of $TRIALS"
    seed=$RANDOM$RANDOM
    TRIAL_ARGS+=("$t:$seed")
    "$PY" "$WORK/crash.py" write "$M" "$WORK/logs" "$POOL" "$t" "$seed" &
    wpid=$!
    PIDS+=("$wpid")
    # 0.3 to 2.5 s of writing and converting before the kill.
    sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.3 + 2.2 * r / 32768 }')"
    { kill -KILL "$DAEMON_PID" && wait "$DAEMON_PID"; } 2>/dev/null
    wait_gone "$wpid" 10 || { kill -KILL "$wpid"; wait_gone "$wpid" 5; }
    fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M" 2>/dev/null
    ! is_mounted "$M" || fail "trial $t: the dead mount cannot be unmounted"
    # Temporary entries the kill left (a container being written): the sweep's work.
    n=$(tmp_leftovers "$B" | wc -l)
    [ "$n" -gt 0 ] && killed_tmp=$((killed_tmp + 1))
    mnt
    if ! out=$(limit 120 "$PY" "$WORK/crash.py" verify "$M" "$WORK/logs" "$POOL" "$t:$seed" 2>"$WORK/verify.err"); then
        fails=$((fails + 1))
        check_fail "trial $t (seed $seed; $(cat "$WORK/verify.err")): $(grep -c PROBLEM <<<"$out") problem(s)"
        head -n 5 <<<"$out" >&2
        echo "$out" >>"$WORK/problems"
    else
        say "trial $t: $(cat "$WORK/verify.err")"
    fi
    # The sweep runs beside the new mount: give it a moment, then nothing may be left (no
    # conversion runs now: reading queues none).
    for ((i = 0; i < 50; i++)); do
        [ -z "$(tmp_leftovers "$B")" ] && break
        sleep 0.2
    done
    left=$(tmp_leftovers "$B")
    if [ -n "$left" ]; then
        check_fail "trial $t: temporary entries left 10 s after the remount: $(head -n 3 <<<"$left" | tr '\n' ' ')"
        echo "PROBLEM: TMP $left" >>"$WORK/problems"
    fi
done

# Unmount and SIGTERM with conversions queued: the daemon goes within seconds (what it did
# not convert stays a block file), and every file reads back exactly after a remount.
for how in unmount sigterm; do
    step "$how with conversions queued"
    mkdir -p "$M/stop-$how" || fail "mkdir stop-$how"
    : >"$WORK/stop-$how.sha"
    POOLFILES=(a16.pgm b8.pgm c12.pgm CT_small.dcm mri-t1-sagittal-256.png)
    for i in $(seq 12); do
        src=${POOLFILES[$((i % 5))]}
        cp "$POOL/$src" "$M/stop-$how/$i-$src" || fail "cp into stop-$how"
        echo "$(sha256sum <"$POOL/$src" | cut -d' ' -f1)  $i-$src" >>"$WORK/stop-$how.sha"
    done
    t0=$SECONDS
    if [ "$how" = unmount ]; then
        for ((i = 0; i < 50; i++)); do fusermount3 -u "$M" 2>/dev/null && break; sleep 0.1; done
    else
        kill -TERM "$DAEMON_PID"
    fi
    wait_gone "$DAEMON_PID" 20 || fail "$how with conversions queued: the daemon is still there after 20 s"
    ! is_mounted "$M" || { check_fail "$how: $M is still mounted after the daemon exited"; fusermount3 -uz "$M"; }
    say "$how: the daemon exited after $((SECONDS - t0)) s"
    mnt
    sha_list "$M/stop-$how" >"$WORK/stop-$how.got"
    same_hashes "after $how with conversions queued" "$WORK/stop-$how.sha" "$WORK/stop-$how.got"
    for f in "$M/stop-$how"/*; do
        v=$(storage_kind "$f")
        case $v in image | blocks) ;; *) check_fail "after $how and a remount: ${f#"$M"/} is '$v'" ;; esac
    done
    for ((i = 0; i < 50; i++)); do [ -z "$(tmp_leftovers "$B")" ] && break; sleep 0.2; done
    left=$(tmp_leftovers "$B")
    [ -z "$left" ] || check_fail "after $how with conversions queued: temporary entries left: $left"
done

step "every trial's files once more, after a clean remount"
wait_backlog "$M" 120
umnt
mnt
limit 300 "$PY" "$WORK/crash.py" verify "$M" "$WORK/logs" "$POOL" "${TRIAL_ARGS[@]}" >"$WORK/final.out" 2>"$WORK/final.err" ||
    check_fail "at the end ($(cat "$WORK/final.err")): $(grep -c PROBLEM "$WORK/final.out") problem(s): $(head -n 5 "$WORK/final.out")"
say "at the end: $(cat "$WORK/final.err"); $killed_tmp of $TRIALS kills left a temporary entry for the sweep"
umnt
left=$(tmp_leftovers "$B")
[ -z "$left" ] || check_fail "temporary entries left after the last unmount: $(head -n 3 <<<"$left" | tr '\n' ' ')"
if [ -s "$WORK/problems" ]; then
    say "$fails of $TRIALS trials had problems; in all:" \
        "$(grep -c 'PROBLEM: WRONG' "$WORK/problems") wrong," \
        "$(grep -c 'PROBLEM: LOST' "$WORK/problems") lost," \
        "$(grep -c 'PROBLEM: EIO' "$WORK/problems") reading EIO," \
        "$(grep -c 'PROBLEM: EXTRA' "$WORK/problems") extra names," \
        "$(grep -c 'PROBLEM: TMP' "$WORK/problems") with temporary entries left"
fi
lib_finish
