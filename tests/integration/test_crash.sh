#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 of the daemon during heavy writes. Writer processes write deterministic patterns
# (each byte a function of the file and its offset, never 0): appenders that fsync every
# piece and record how far they got, random writers through the page cache, small-file
# creators, and folder creators/renamers. After the kill, a lazy unmount and a fresh mount:
# every byte that reads must be the pattern (or 0 in a region the crash left as a hole), a
# read that fails must fail with EIO, fsync'd data must be there, the listing must only hold
# names the writers made, and the filesystem must take new files. Two rounds.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"

cat >"$WORK/crash.py" <<'EOF'
import errno, os, random, sys, time

L = 4093  # pattern period: prime, so no two blocks of a file look alike

def table(k):
    rng = random.Random(1000 + k)
    t = bytes(rng.randrange(1, 256) for _ in range(L))
    return t * 2

TABLES = {}

def pat(k, off, n):
    t = TABLES.get(k) or TABLES.setdefault(k, table(k))
    out = bytearray()
    start = off % L
    while len(out) < n:
        take = min(n - len(out), L - start)
        out += t[start:start + take]
        start = 0
    return bytes(out)

def progress(work, name, value):
    tmp = os.path.join(work, f".{name}.tmp")
    with open(tmp, "w") as f:
        f.write(str(value))
    os.replace(tmp, os.path.join(work, name))

def writer(kind, k, mnt, work, rnd):
    rng = random.Random(k * 7919 + rnd)
    if kind == "append":
        # key of the pattern: k; file app_<round>_<k>; fsync after every piece.
        p = os.path.join(mnt, f"app_{rnd}_{k}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        off = 0
        while True:
            n = rng.choice([1, 100, 4095, 4096, 4097, rng.randrange(1, 70000)])
            os.pwrite(fd, pat(k, off, n), off)
            off += n
            os.fsync(fd)
            progress(work, f"progress_{rnd}_{k}", off)
    elif kind == "random":
        p = os.path.join(mnt, f"rnd_{rnd}_{k}")
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
        size = 6 << 20
        i = 0
        while True:
            off = rng.randrange(0, size)
            n = rng.choice([1, 4096, rng.randrange(1, 200000)])
            os.pwrite(fd, pat(k, off, n), off)
            i += 1
            if i % 200 == 0 and rng.random() < 0.5:
                os.ftruncate(fd, rng.randrange(size // 2, size))
    elif kind == "small":
        i = 0
        while True:
            n = rng.randrange(0, 30000)
            key = 1000 + k * 100000 + i
            with open(os.path.join(mnt, f"s_{rnd}_{key}_{n}"), "wb") as f:
                f.write(pat(key, 0, n))
            i += 1
    elif kind == "tree":
        i = 0
        while True:
            d = os.path.join(mnt, f"dir_{rnd}_{k}_{i}")
            os.mkdir(d)
            key = 500000 + k * 100000 + i
            n = rng.randrange(1, 20000)
            with open(os.path.join(d, f"f_{key}_{n}"), "wb") as f:
                f.write(pat(key, 0, n))
            os.rename(d, d.replace("dir_", "DIR_"))
            i += 1

def check(mnt, work):
    problems, stats = [], {"files": 0, "bytes": 0, "eio_blocks": 0, "zero_bytes": 0}

    def check_file(path, key, maxsize=None, durable=0):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            if e.errno != errno.EIO:
                problems.append(f"{path}: open: {e}")
            else:
                stats["eio_blocks"] += 1
                if durable:
                    problems.append(f"{path}: EIO at open, {durable} fsync'd bytes lost")
            return
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        size = os.fstat(fd).st_size
        stats["files"] += 1
        if maxsize is not None and size > maxsize:
            problems.append(f"{path}: size {size} > {maxsize} written")
        if size < durable:
            problems.append(f"{path}: size {size} < {durable} bytes fsync'd before the crash")
        for off in range(0, size, 4096):
            try:
                got = os.pread(fd, 4096, off)
            except OSError as e:
                if e.errno != errno.EIO:
                    problems.append(f"{path}: block {off // 4096}: {e}")
                else:
                    stats["eio_blocks"] += 1
                    # The block holding the last fsync'd byte is sealed again by the next
                    # append (last flag), so a crash may tear it; every block before must read.
                    if durable and off + 4096 <= (durable - 1) // 4096 * 4096:
                        problems.append(f"{path}: block {off // 4096}: EIO inside the fsync'd part")
                continue
            stats["bytes"] += len(got)
            want = pat(key, off, len(got))
            if got == want:
                continue
            if len(got) != min(4096, size - off):
                problems.append(f"{path}: short read at {off}")
            for i, (a, b) in enumerate(zip(got, want)):
                if a != b:
                    if a != 0:
                        problems.append(f"{path}: WRONG byte at {off + i}: {a} != {b}")
                        break
                    if off + i < durable:
                        problems.append(f"{path}: zero at {off + i}, inside the fsync'd part")
                        break
                    stats["zero_bytes"] += 1
        os.close(fd)

    def walk(folder, depth):
        try:
            names = os.listdir(folder)
        except OSError as e:
            problems.append(f"{folder}: listdir: {e}")
            return
        for n in names:
            path = os.path.join(folder, n)
            parts = n.split("_")
            try:
                if n.startswith("app_") and depth == 0:
                    rnd, k = parts[1], int(parts[2])
                    pf = os.path.join(work, f"progress_{rnd}_{k}")
                    durable = int(open(pf).read()) if os.path.exists(pf) else 0
                    check_file(path, k, durable=durable)
                elif n.startswith("rnd_") and depth == 0:
                    check_file(path, int(parts[2]), maxsize=(6 << 20) + 200000)
                elif n.startswith("s_") and depth == 0:
                    check_file(path, int(parts[2]), maxsize=int(parts[3]))
                elif n.startswith(("dir_", "DIR_")) and depth == 0:
                    if not os.path.isdir(path):
                        problems.append(f"{path}: not a folder")
                    else:
                        walk(path, 1)
                elif n.startswith("f_") and depth == 1:
                    check_file(path, int(parts[1]), maxsize=int(parts[2]))
                elif n.startswith("new") and depth == 0:
                    pass
                else:
                    problems.append(f"{path}: a name no writer made")
            except (ValueError, IndexError):
                problems.append(f"{path}: a name no writer made")
    walk(mnt, 0)
    print("after the crash:", stats)
    for p in problems[:30]:
        print("PROBLEM:", p)
    if len(problems) > 30:
        print(f"... and {len(problems) - 30} more")
    return not problems

if __name__ == "__main__":
    if sys.argv[1] == "writer":
        kind, k, mnt, work, rnd = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
        try:
            writer(kind, k, mnt, work, int(rnd))
        except OSError:
            pass  # the daemon is gone: ENOTCONN and friends
    elif sys.argv[1] == "check":
        sys.exit(0 if check(sys.argv[2], sys.argv[3]) else 1)
    elif sys.argv[1] == "new":
        mnt = sys.argv[2]
        data = os.urandom(100000)
        with open(os.path.join(mnt, f"new_{sys.argv[3]}"), "wb") as f:
            f.write(data)
        os.mkdir(os.path.join(mnt, f"newdir_{sys.argv[3]}"))
        with open(os.path.join(mnt, f"newdir_{sys.argv[3]}", "inner"), "wb") as f:
            f.write(data)
        with open(os.path.join(mnt, f"new_{sys.argv[3]}"), "rb") as f:
            if f.read() != data:
                sys.exit("new file reads back wrong")
EOF

for round in 1 2; do
    LOG=$WORK/daemon$round.log
    mount_fg "$B" "$M" "$K" "$LOG"
    D=$DAEMON_PID
    WRITERS=()
    for spec in "append 1" "append 2" "append 3" "random 4" "random 5" "small 6" "small 7" "tree 8"; do
        # shellcheck disable=SC2086
        "$PY" "$WORK/crash.py" writer $spec "$M" "$WORK" "$round" 2>>"$WORK/writers.log" &
        WRITERS+=($!)
        PIDS+=($!)
    done
    sleep $((round == 1 ? 4 : 2))
    for p in "${WRITERS[@]}"; do pid_alive "$p" || fail "round $round: writer $p died early: $(tail -n 5 "$WORK/writers.log")"; done
    say "round $round: kill -9 of daemon $D during writes"
    kill -KILL "$D"
    wait "$D" 2>/dev/null
    wait_gone "$D" 10 || fail "daemon $D survived kill -9"
    for p in "${WRITERS[@]}"; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
        wait_gone "$p" 10 || fail "writer $p did not die"
    done
    fusermount3 -uz "$M" || fail "fusermount3 -uz after the crash"
    for i in $(seq 50); do is_mounted "$M" || break; sleep 0.1; done
    is_mounted "$M" && fail "still mounted after fusermount3 -uz"
    ls "$WORK"/progress_"$round"_* >/dev/null 2>&1 || fail "round $round: no appender got an fsync through"

    mount_fg "$B" "$M" "$K" "$WORK/check$round.log"
    limit 120 "$PY" "$WORK/crash.py" check "$M" "$WORK" || check_fail "round $round: contents after the crash"
    limit 30 "$PY" "$WORK/crash.py" new "$M" "$round" || check_fail "round $round: new files after the crash"
    unmount "$M"
done

mount_fs "$B" "$M" "$K"
[ "$(head -c 100000 "$M/new_2" | wc -c)" = 100000 ] || check_fail "new file after the last round"
unmount "$M"
lib_finish
