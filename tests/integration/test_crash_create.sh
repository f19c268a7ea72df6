#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 of the daemon while files and folders are being created (issue 12, defect 4: 0-byte
# backing files that read EIO, and .imgcryptfs.tmp.* folders that make their parent impossible
# to remove). Each trial: a Python writer creates small files (content derived from the name)
# and folders with files in them, in a loop; after a random delay the daemon is killed; the dead
# mount is unmounted and mounted again. Then every listed file reads without EIO and is either
# empty or exactly its content, no .imgcryptfs.tmp.* entry remains anywhere in the backing
# folder, and every folder the writer made can be removed through the mount once emptied.
# 20 trials; IMGC_LONG=1: 200.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
TRIALS=20
[ "${IMGC_LONG:-0}" = 1 ] && TRIALS=200

# mount_fg gives the daemon's PID at once (lib.sh's /proc search is slow on a busy machine).
mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log"; }
umnt() { unmount_fg "$M"; }

cat >"$WORK/writer.py" <<'PYEOF'
# Creates t<trial>/, then in a loop: a file, or a folder with two files in it. Content is the
# name repeated, 1 to 40 times (under one 4 KiB block). Ends at the first error (the daemon died).
import os, sys, zlib
top, started = sys.argv[1], sys.argv[2]
def content(name):
    return (name + "\n").encode() * (1 + zlib.crc32(name.encode()) % 40)
def mkfile(p):
    with open(p, "wb") as f:
        f.write(content(os.path.basename(p)))
try:
    os.mkdir(top)
    open(started, "w").close()
    i = 0
    while True:
        if i % 3 == 2:
            d = os.path.join(top, f"d{i}")
            os.mkdir(d)
            mkfile(os.path.join(d, f"in{i}a"))
            mkfile(os.path.join(d, f"in{i}b"))
        else:
            mkfile(os.path.join(top, f"f{i}"))
        i += 1
except OSError:
    pass
PYEOF

cat >"$WORK/verify.py" <<'PYEOF'
# After the remount: every listed file reads (empty or its exact content); no temporary entries
# in the backing folder; every folder can be removed once emptied. Prints one line per problem.
import errno, os, sys, zlib
top, backing, seen_file = sys.argv[1], sys.argv[2], sys.argv[3]
seen = set(open(seen_file).read().split("\n")) if os.path.exists(seen_file) else set()
def content(name):
    return (name + "\n").encode() * (1 + zlib.crc32(name.encode()) % 40)
bad, files, dirs = [], 0, 0
for dp, dn, fn in os.walk(backing):
    for n in dn + fn:
        rel = os.path.relpath(os.path.join(dp, n), backing)
        if n.startswith(".imgcryptfs.tmp.") and rel not in seen:  # each one reported once
            bad.append(f"TMP temporary entry left in the backing folder: {rel}")
            with open(seen_file, "a") as f:
                f.write(rel + "\n")
def unlistable(e):
    # A folder the walk cannot list: a problem in itself; try to remove it anyway.
    bad.append(f"LIST folder {os.path.relpath(e.filename, top)} cannot be listed: "
               f"{errno.errorcode.get(e.errno, e.errno)}")
    try:
        os.rmdir(e.filename)
    except OSError:
        pass
if os.path.isdir(top):
    for dp, dn, fn in os.walk(top, topdown=False, onerror=unlistable):
        for n in fn:
            p = os.path.join(dp, n)
            files += 1
            try:
                with open(p, "rb") as f:
                    got = f.read()
            except OSError as e:
                bad.append(f"EIO {os.path.relpath(p, top)}: read fails with {errno.errorcode.get(e.errno, e.errno)} "
                           f"(st_size {os.lstat(p).st_size})")
                got = None
            if got is not None and got != b"" and got != content(n):
                bad.append(f"CONTENT {os.path.relpath(p, top)}: {len(got)} bytes, neither empty nor its content")
            try:
                os.unlink(p)
            except OSError as e:
                bad.append(f"UNLINK {os.path.relpath(p, top)}: unlink fails with {errno.errorcode.get(e.errno, e.errno)}")
        for n in dn:
            dirs += 1
        try:
            os.rmdir(dp)
        except OSError as e:
            left = os.listdir(dp) if os.path.isdir(dp) else []
            bad.append(f"RMDIR folder {os.path.relpath(dp, top) if dp != top else '.'} cannot be removed once "
                       f"emptied: {errno.errorcode.get(e.errno, e.errno)} (lists {left[:3]})")
for b in bad:
    print("PROBLEM:", b)
print(f"checked {files} files, {dirs} folders", file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF

mnt
fails=0
for ((t = 1; t <= TRIALS; t++)); do
    rm -f "$WORK/started"
    "$PY" "$WORK/writer.py" "$M/t$t" "$WORK/started" &
    wpid=$!
    PIDS+=("$wpid")
    for ((i = 0; i < 100; i++)); do [ -e "$WORK/started" ] && break; sleep 0.05; done
    # 50 to 1,500 ms of creating before the kill.
    sleep "$(printf '0.%03d' $((50 + RANDOM % 950)))"
    [ $((RANDOM % 3)) = 0 ] && sleep 0.5
    { kill -KILL "$DAEMON_PID" && wait "$DAEMON_PID"; } 2>/dev/null
    wait_gone "$wpid" 10 || { kill -KILL "$wpid"; wait_gone "$wpid" 5; }
    fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M" 2>/dev/null
    ! is_mounted "$M" || fail "trial $t: the dead mount cannot be unmounted"
    mnt
    if ! out=$(limit 60 "$PY" "$WORK/verify.py" "$M/t$t" "$B" "$WORK/seen_tmp" 2>"$WORK/verify.err"); then
        fails=$((fails + 1))
        check_fail "trial $t ($(cat "$WORK/verify.err")): $(grep -c PROBLEM <<<"$out") problem(s)"
        head -n 4 <<<"$out" >&2
        echo "$out" >>"$WORK/problems"
    fi
done
umnt
if [ -s "$WORK/problems" ]; then
    say "$fails of $TRIALS trials had problems; in all:" \
        "$(grep -c 'PROBLEM: EIO' "$WORK/problems") files reading EIO," \
        "$(grep -c 'PROBLEM: CONTENT' "$WORK/problems") with wrong content," \
        "$(grep -c 'PROBLEM: TMP' "$WORK/problems") temporary entries," \
        "$(grep -c 'PROBLEM: LIST' "$WORK/problems") folders that cannot be listed," \
        "$(grep -c 'PROBLEM: RMDIR' "$WORK/problems") folders that cannot be removed"
fi
lib_finish
