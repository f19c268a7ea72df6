#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Concurrent growing writers (issue 12, defect 5: four processes pwrite-appending 3,000-byte
# steps to one file once in 28 runs left a last block that read EIO, also after a remount). Each
# run: four processes, each with its own descriptor, claim the next 3,000-byte step from a
# shared counter and pwrite it there, so the file grows from four sides at once, unaligned to
# the 4 KiB blocks; in a third of the runs each writer also reopens the file for every step,
# and in another third each writer appends where fstat says the file ends (racing for the same
# offsets with the same bytes). After each run the file must read back entirely, without EIO, equal to what
# was written; all files are read again after a remount.
# 50 runs of 200 steps (600 KB); IMGC_LONG=1: 3,000 runs, every 100th of 1,800 steps (5.4 MB).
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
RUNS=50 STEPS=200 BIG=0
if [ "${IMGC_LONG:-0}" = 1 ]; then RUNS=3000 STEPS=200 BIG=1800; fi

mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log"; }
umnt() { unmount_fg "$M"; }

cat >"$WORK/append.py" <<'PYEOF'
import errno, multiprocessing as mp, os, struct, sys
mnt, phase, runs, steps, big = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
STEP, WRITERS = 3000, 4

def chunk(run, k):
    # Step k of run `run`: its own bytes, so a step written at the wrong place shows.
    return (struct.pack("<II", run, k) * (STEP // 8 + 1))[:STEP]

def nsteps(run):
    return big if big and run % 100 == 0 else steps

def expected(run):
    return b"".join(chunk(run, k) for k in range(nsteps(run)))

def fstat_writer(path, run, errs, odd):
    # Appends where fstat says the file ends: writers race for the same offsets and write the
    # same bytes there, and the last block is written from several handles at once. fstat
    # during a write may show a size no write made (a block boundary, gocryptfs does it too):
    # counted, not failed; the step then starts at the last step boundary below it.
    try:
        fd = os.open(path, os.O_WRONLY)
        while True:
            off = os.fstat(fd).st_size
            if off >= nsteps(run) * STEP:
                break
            if off % STEP:
                with odd.get_lock():
                    odd.value += 1
                off -= off % STEP
            n = os.pwrite(fd, chunk(run, off // STEP), off)
            if n != STEP:
                errs.put(f"at {off}: pwrite wrote {n} of {STEP}")
        os.close(fd)
    except OSError as e:
        errs.put(f"writer: {errno.errorcode.get(e.errno, e.errno)}: {e}")

def writer(path, run, counter, lock, errs):
    # Runs 1, 4, 7...: writers open and close the file around every step, so opens and
    # releases race the writes.
    reopen = run % 3 == 1
    try:
        fd = os.open(path, os.O_WRONLY)
        while True:
            with lock:
                k = counter.value
                if k >= nsteps(run):
                    break
                counter.value = k + 1
            if reopen:
                os.close(fd)
                fd = os.open(path, os.O_WRONLY)
            n = os.pwrite(fd, chunk(run, k), k * STEP)
            if n != STEP:
                errs.put(f"step {k}: pwrite wrote {n} of {STEP}")
        os.close(fd)
    except OSError as e:
        errs.put(f"writer: {errno.errorcode.get(e.errno, e.errno)}: {e}")

def check(run, when):
    p = os.path.join(mnt, f"run{run}")
    got = b""
    try:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            got += b
        os.close(fd)
    except OSError as e:
        return [f"run {run} {when}: reading at {len(got)} fails with "
                f"{errno.errorcode.get(e.errno, e.errno)} (file of {os.stat(p).st_size} bytes)"]
    want = expected(run)
    if got != want:
        first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        return [f"run {run} {when}: {len(got)} bytes, want {len(want)}, first difference at byte {first}"]
    return []

problems = []
if phase == "write":
    ctx = mp.get_context("fork")
    odd = ctx.Value("q", 0)
    for run in range(runs):
        p = os.path.join(mnt, f"run{run}")
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
        counter, lock, errs = ctx.Value("q", 0, lock=False), ctx.Lock(), ctx.Queue()
        if run % 3 == 2:
            ps = [ctx.Process(target=fstat_writer, args=(p, run, errs, odd)) for _ in range(WRITERS)]
        else:
            ps = [ctx.Process(target=writer, args=(p, run, counter, lock, errs)) for _ in range(WRITERS)]
        for x in ps: x.start()
        for x in ps: x.join()
        new = []
        while not errs.empty():
            new.append(f"run {run}: {errs.get()}")
        new += check(run, "right after")
        for x in new:  # at once: a long run that is stopped still tells what it found
            print("PROBLEM:", x, flush=True)
        problems += new
        if big and run % 100 != 0:
            os.unlink(p)  # long form: keep the big runs only
else:
    for run in range(runs):
        if os.path.exists(os.path.join(mnt, f"run{run}")):
            problems += check(run, "after a remount")
if phase != "write":
    for x in problems:
        print("PROBLEM:", x)
else:
    print(f"note: fstat showed a size no write made {odd.value} times")
print(f"{runs} runs, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PYEOF

mnt
limit $((RUNS * 2 + 60)) "$PY" "$WORK/append.py" "$M" write "$RUNS" "$STEPS" "$BIG" >"$WORK/write.out" 2>&1 ||
    check_fail "$(grep -v '^PROBLEM' "$WORK/write.out" | tail -n 4; grep PROBLEM "$WORK/write.out" | head -n 5)"
grep '^note:' "$WORK/write.out" >&2
umnt
mnt
limit 120 "$PY" "$WORK/append.py" "$M" verify "$RUNS" "$STEPS" "$BIG" >"$WORK/verify.out" 2>&1 ||
    check_fail "after a remount: $(grep -c PROBLEM "$WORK/verify.out") file(s): $(grep -v '^PROBLEM' "$WORK/verify.out" | tail -n 3; grep PROBLEM "$WORK/verify.out" | head -n 5)"
umnt
lib_finish
