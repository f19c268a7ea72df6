#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The daemon as a program: it returns only once the mount is live; wrong or unsafe secrets,
# a missing backing folder, a busy or non-empty mount point each give their exit status and a
# one-line message and leave nothing mounted or running; SIGTERM unmounts cleanly and keeps
# the data; every secret source works (key file, passfile=, extpass=, the tty prompt through
# a pty) and so do keyring= and ro.
. "$(dirname "$0")/lib.sh"
lib_setup

D=$IMGC_BIN/imgcryptfs
B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
mkdir -p "$M"
MOUNTS+=("$M")

# expect_fail WHAT STATUS [ARGS...]: imgcryptfs ARGS must exit with STATUS (or non-zero when
# STATUS is "nonzero"), print exactly one line on stderr (any message when ONE_LINE=0, for
# usage errors), and leave nothing mounted or running.
ONE_LINE=1
expect_fail() {
    local what=$1 want=$2 rc lines
    shift 2
    limit 30 "$D" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null
    rc=$?
    if [ "$want" = nonzero ]; then
        [ "$rc" -ne 0 ] || check_fail "$what: exit status 0"
    else
        [ "$rc" = "$want" ] || check_fail "$what: exit status $rc, want $want ($(cat "$WORK/err"))"
    fi
    lines=$(wc -l <"$WORK/err")
    if [ "$ONE_LINE" = 1 ]; then
        [ "$lines" = 1 ] || check_fail "$what: $lines lines on stderr, want one: $(cat "$WORK/err")"
    else
        [ "$lines" -ge 1 ] || check_fail "$what: no message on stderr"
    fi
    [ -s "$WORK/out" ] && check_fail "$what: printed on stdout: $(cat "$WORK/out")"
    is_mounted "$M" && { check_fail "$what: $M is mounted"; unmount "$M"; }
    sleep 0.2
    [ -z "$(daemon_pids "$WORK")" ] || check_fail "$what: a daemon is still running: $(daemon_pids "$WORK")"
    say "$what: exit $rc: $(head -n 1 "$WORK/err")"
}

# 1. The command returns only when the mount is live, every time.
for i in 1 2 3 4 5; do
    "$D" -o "keyfile=$K" "$B" "$M" || fail "mount $i: exit $?"
    mountpoint -q "$M" || check_fail "mount $i: mountpoint -q fails right after the command returned"
    echo "write $i" >"$M/live$i" || check_fail "mount $i: write right after the command returned"
    is_mounted "$M" || check_fail "mount $i: not in /proc/mounts"
    unmount "$M"
done
say "returns only once live (5 times)"

# 2. Wrong key, unsafe permissions, bad key file.
head -c 32 /dev/urandom >"$WORK/wrongkey" && chmod 600 "$WORK/wrongkey"
expect_fail "wrong key file" 3 -o "keyfile=$WORK/wrongkey" "$B" "$M"
head -c 31 /dev/urandom >"$WORK/shortkey" && chmod 600 "$WORK/shortkey"
expect_fail "key file of 31 bytes" 3 -o "keyfile=$WORK/shortkey" "$B" "$M"
chmod 644 "$K"
expect_fail "key file mode 0644" 4 -o "keyfile=$K" "$B" "$M"
grep -q chmod "$WORK/err" || check_fail "unsafe key file: the message does not say how to fix it"
chmod 600 "$K"
if [ "$(id -u)" = 0 ]; then
    cp -p "$K" "$WORK/otherkey" && chown 1000 "$WORK/otherkey"
    expect_fail "key file owned by another user" 4 -o "keyfile=$WORK/otherkey" "$B" "$M"
fi
chmod 644 "$B/imgcryptfs.keyring"
expect_fail "keyring mode 0644" 4 -o "keyfile=$K" "$B" "$M"
chmod 400 "$B/imgcryptfs.keyring"
expect_fail "missing key file" nonzero -o "keyfile=$WORK/nokey" "$B" "$M"

# 3. Backing folder and mount point problems.
expect_fail "missing backing folder" nonzero -o "keyfile=$K" "$WORK/nonexistent" "$M"
grep -q nonexistent "$WORK/err" || check_fail "missing backing: the message does not name it"
mkdir -p "$WORK/nokeyring"
expect_fail "backing folder without keyring" nonzero -o "keyfile=$K" "$WORK/nokeyring" "$M"
expect_fail "missing mount point" 7 -o "keyfile=$K" "$B" "$WORK/nomnt"
mkdir -p "$WORK/full"
echo x >"$WORK/full/file"
MOUNTS+=("$WORK/full")
limit 30 "$D" -o "keyfile=$K" "$B" "$WORK/full" 2>"$WORK/err" </dev/null
rc=$?
[ "$rc" -ne 0 ] || check_fail "non-empty mount point accepted (exit 0)"
is_mounted "$WORK/full" && { check_fail "non-empty mount point: mounted"; unmount "$WORK/full"; }
say "non-empty mount point: exit $rc: $(cat "$WORK/err")"
if "$D" -o "keyfile=$K,nonempty" "$B" "$WORK/full"; then
    [ "$(cat "$WORK/full/live1")" = "write 1" ] || check_fail "-o nonempty: contents wrong"
    unmount "$WORK/full"
else
    check_fail "-o nonempty refused"
fi
mount_fs "$B" "$M" "$K"
first=$DAEMON_PID
expect_fail_busy() {
    limit 30 "$D" -o "keyfile=$K" "$B" "$M" >"$WORK/out" 2>"$WORK/err" </dev/null
    local rc=$?
    [ "$rc" = 7 ] || check_fail "busy mount point: exit $rc, want 7 ($(cat "$WORK/err"))"
    [ "$(wc -l <"$WORK/err")" = 1 ] || check_fail "busy mount point: message: $(cat "$WORK/err")"
    [ "$(awk -v m="$M" '$2 == m' /proc/mounts | wc -l)" = 1 ] || check_fail "busy mount point: mounted twice"
    [ "$(daemon_pids "$WORK")" = "$first" ] || check_fail "busy mount point: another daemon runs"
    say "busy mount point: exit $rc: $(cat "$WORK/err")"
}
expect_fail_busy
echo still >"$M/still" && [ "$(cat "$M/still")" = still ] || check_fail "first mount broken by the second attempt"

# 4. SIGTERM: clean unmount, process exits, data kept. Daemonised, then with -f.
head -c 300000 /dev/urandom >"$WORK/payload"
cp "$WORK/payload" "$M/payload"
[ -n "$first" ] || fail "daemon PID not found"
kill -TERM "$first"
wait_gone "$first" 10 || check_fail "daemon $first still running 10 s after SIGTERM"
for i in $(seq 50); do is_mounted "$M" || break; sleep 0.1; done
is_mounted "$M" && { check_fail "still mounted after SIGTERM"; fusermount3 -u "$M"; }
mount_fg "$B" "$M" "$K" "$WORK/fg.log"
cmp -s "$WORK/payload" "$M/payload" || check_fail "data written before SIGTERM is not there after remount"
echo fg >"$M/fg"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"
rc=$?
# imgcryptfs(8): on SIGTERM/SIGINT/SIGHUP it unmounts, wipes its keys and exits with status 1.
[ "$rc" = 0 ] || [ "$rc" = 1 ] || check_fail "-f daemon: exit status $rc after SIGTERM, want 1 (or 0)"
is_mounted "$M" && { check_fail "-f: still mounted after SIGTERM"; fusermount3 -u "$M"; }
mount_fs "$B" "$M" "$K"
[ "$(cat "$M/fg")" = fg ] || check_fail "data written before SIGTERM (-f) lost"
unmount "$M"
say "SIGTERM unmounts cleanly"

# 5. Passphrase sources: passfile=, extpass=, the tty prompt; and keyring= elsewhere.
B2=$WORK/backing2 PF=$WORK/passfile
printf 'correct horse battery\n' >"$PF" && chmod 600 "$PF"
"$IMGC_BIN/imgcrypt" init --passfile "$PF" --kdf-cost 10 "$B2" >/dev/null || fail "imgcrypt init --passfile"
if "$D" -o "passfile=$PF" "$B2" "$M"; then
    echo pass >"$M/p" || check_fail "passfile mount: write"
    unmount "$M"
else
    check_fail "passfile= mount failed"
fi
printf 'wrong horse\n' >"$WORK/wrongpass" && chmod 600 "$WORK/wrongpass"
expect_fail "wrong passphrase in passfile" 3 -o "passfile=$WORK/wrongpass" "$B2" "$M"
chmod 640 "$PF"
expect_fail "passfile mode 0640" 4 -o "passfile=$PF" "$B2" "$M"
chmod 600 "$PF"
if "$D" -o "extpass=cat $PF" "$B2" "$M"; then
    [ "$(cat "$M/p")" = pass ] || check_fail "extpass mount: data"
    unmount "$M"
else
    check_fail "extpass= mount failed"
fi
if "$D" -o "extpass=printf 'correct horse battery\n'" "$B2" "$M"; then
    unmount "$M"
else
    check_fail "extpass=printf mount failed"
fi
expect_fail "extpass command failing" nonzero -o "extpass=false" "$B2" "$M"
expect_fail "extpass printing a wrong passphrase" 3 -o "extpass=echo nope" "$B2" "$M"
expect_fail "two secret sources" 2 -o "keyfile=$K,passfile=$PF" "$B2" "$M"
# No terminal at all (new session, no controlling tty) and no source: a clear refusal.
setsid -w "$D" "$B2" "$M" </dev/null >"$WORK/out" 2>"$WORK/err"
rc=$?
[ "$rc" -ne 0 ] || check_fail "no tty and no secret source: exit 0"
[ "$(wc -l <"$WORK/err")" = 1 ] || check_fail "no tty: message: $(cat "$WORK/err")"
is_mounted "$M" && { check_fail "no tty: mounted"; unmount "$M"; }

limit 60 "$PY" - "$D" "$B2" "$M" <<'EOF' || check_fail "tty prompt (see above)"
import os, pty, sys, time
daemon, backing, mnt = sys.argv[1:4]

def run(passphrase):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(daemon, [daemon, backing, mnt])
    out = b""
    deadline = time.time() + 20
    sent = False
    while time.time() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break  # EIO: the other side is closed
        if not chunk:
            break
        out += chunk
        if not sent and b"assphrase" in out:
            os.write(fd, passphrase + b"\n")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return sent, os.waitstatus_to_exitcode(status), out

problems = []
sent, code, out = run(b"correct horse battery")
if not sent:
    problems.append(f"no passphrase prompt on the tty: {out!r}")
if code != 0:
    problems.append(f"tty prompt: exit status {code}: {out!r}")
if b"correct horse" in out:
    problems.append("the passphrase was echoed on the tty")
if code == 0:
    if not os.path.ismount(mnt):
        problems.append("tty prompt: exit 0 but not mounted")
    else:
        with open(os.path.join(mnt, "p")) as f:
            if f.read() != "pass\n":
                problems.append("tty prompt mount: wrong data")
        if os.system(f"fusermount3 -u {mnt}") != 0:
            problems.append("fusermount3 -u after the tty mount failed")
        for _ in range(100):
            if not os.path.ismount(mnt):
                break
            time.sleep(0.1)
sent, code, out = run(b"not the passphrase")
if code != 3:
    problems.append(f"wrong passphrase on the tty: exit {code}, want 3: {out!r}")
if os.path.ismount(mnt):
    problems.append("mounted after a wrong passphrase on the tty")
    os.system(f"fusermount3 -u {mnt}")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
is_mounted "$M" && unmount "$M"
sleep 0.3
[ -z "$(daemon_pids "$WORK")" ] || check_fail "daemons left after the tty mounts: $(daemon_pids "$WORK")"

# keyring= outside the backing folder
B3=$WORK/backing3 KR=$WORK/elsewhere.keyring
mkdir -p "$B3"
"$IMGC_BIN/imgcrypt" init --keyring "$KR" --keyfile "$K" --kdf-cost 10 "$B3" >/dev/null ||
    fail "imgcrypt init --keyring"
[ -e "$B3/imgcryptfs.keyring" ] && check_fail "init --keyring still wrote a keyring into the backing folder"
if "$D" -o "keyring=$KR,keyfile=$K" "$B3" "$M"; then
    echo kr >"$M/kr" || check_fail "keyring= mount: write"
    unmount "$M"
else
    check_fail "keyring= mount failed"
fi
expect_fail "no keyring= for a backing folder without one" nonzero -o "keyfile=$K" "$B3" "$M"
# The store holds data: the message points at keyring= and the backup, not at init (which
# would refuse this folder).
msg=$("$D" -o "keyfile=$K" "$B3" "$M" 2>&1) && check_fail "mounted a store without its keyring"
case $msg in
*"give -o keyring=PATH, or restore the keyring from its backup"*) ;;
*) check_fail "missing keyring of a store with data: '$msg'" ;;
esac

# ro: reads work, writes fail with EROFS
if "$D" -o "keyfile=$K,ro" "$B" "$M"; then
    cmp -s "$WORK/payload" "$M/payload" || check_fail "ro mount: read"
    "$PY" -c "
import errno, sys
try:
    open(sys.argv[1], 'w')
except OSError as e:
    sys.exit(0 if e.errno == errno.EROFS else 1)
sys.exit(1)" "$M/new" || check_fail "ro mount: creating a file is not EROFS"
    unmount "$M"
else
    check_fail "-o ro mount failed"
fi

# Usage errors (the usage text may follow the message)
ONE_LINE=0
expect_fail "no arguments" 2
expect_fail "unknown option" 2 --bogus "$B" "$M"
lib_finish
