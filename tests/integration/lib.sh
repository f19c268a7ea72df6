# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Shared helpers of the integration tests (sourced, not run): a private temporary folder per
# test, keyrings, mounts (daemonised or in the foreground with a log file), and a trap that
# always unmounts and stops every daemon the test started, by PID, whatever way the test ends.
#
# Environment: IMGC_BIN (folder of imgcrypt, imgcryptfs, mount.imgcryptfs; default
# build/bin), IMGC_TESTDATA (default tests/data), IMGC_KEEP=1 keeps the temporary folder.
# Exit codes: 0 pass, 1 fail, 77 skipped (only when /dev/fuse is absent, or a test needs root).

set -u
set -o pipefail

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${IMGC_BIN:=$LIB_DIR/../../build/bin}"
: "${IMGC_TESTDATA:=$LIB_DIR/../data}"
IMGC_BIN=$(cd "$IMGC_BIN" 2>/dev/null && pwd || echo "$IMGC_BIN")
TEST_NAME=$(basename "$0" .sh)
# The system python has Pillow (python3-pil); a python3 from pyenv earlier on PATH may not.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
export PYTHONDONTWRITEBYTECODE=1

WORK=""
MOUNTS=()       # mount points this test used
PIDS=()         # daemons and helper processes this test started
CLEANUP_CMDS=() # extra commands for the trap (run last in, first out)
DAEMON_PID=""   # the daemon of the last mount_fs / mount_fg

say() { echo "[$TEST_NAME] $*" >&2; }
# The step under way (step) and, for the tool tests, the last command's output (expect) are
# shown with the failure.
fail() {
    echo "FAIL [$TEST_NAME${STEP:+: $STEP}]: $*" >&2
    if [ -n "${T:-}" ] && { [ -s "$T/out" ] || [ -s "$T/err" ]; }; then
        echo "--- stdout:" >&2
        cat "$T/out" >&2 2>/dev/null || true
        echo "--- stderr:" >&2
        cat "$T/err" >&2 2>/dev/null || true
    fi
    exit 1
}
STEP=""
step() {
    STEP=$*
    echo "== $STEP"
}
# A failed check that lets the test go on to its other checks; lib_finish fails at the end.
FAILED=0
check_fail() {
    echo "FAIL [$TEST_NAME]: $*" >&2
    FAILED=$((FAILED + 1))
}
lib_finish() {
    [ "$FAILED" -eq 0 ] || fail "$FAILED check(s) failed"
    exit 0
}
skip() {
    echo "SKIP [$TEST_NAME]: $*" >&2
    exit 77
}

# Is $1 (an absolute path) a mount point right now? Reads the table, never touches the mount
# (a stat of a dead FUSE mount would fail or hang).
is_mounted() {
    awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts
}

# PIDs of imgcryptfs daemons whose command line mentions $1 (our temporary folder), or with
# $2 = exact, has an argument equal to $1 (a mount point): the way to find a daemonised one,
# which forks away from the shell. Builtins only: a few forks per process made one search of a
# busy machine's /proc take 15 s.
daemon_pids() {
    local p a hit
    local -a args
    for p in /proc/[0-9]*; do
        mapfile -d '' -t args 2>/dev/null <"$p/cmdline" || continue
        [ "${#args[@]}" -gt 0 ] && [ "${args[0]##*/}" = imgcryptfs ] || continue
        hit=0
        for a in "${args[@]}"; do
            if [ "${2:-}" = exact ]; then
                [ "$a" = "$1" ] && hit=1
            else
                [[ $a == *"$1"* ]] && hit=1
            fi
        done
        [ "$hit" = 1 ] && echo "${p#/proc/}"
    done
    return 0
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Is process $1 still one of ours: a child of this shell, or a process whose command line
# names our temporary folder? (A PID remembered earlier may have been reused since.)
owned_pid() {
    pid_alive "$1" || return 1
    [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ] && return 0
    [ -n "$WORK" ] && { tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null | grep -F -- "$WORK" >/dev/null
}

# Wait up to $2 seconds (default 10) for process $1 to end.
wait_gone() {
    local i n=$((${2:-10} * 10))
    for ((i = 0; i < n; i++)); do
        pid_alive "$1" || return 0
        # A zombie child of ours counts as gone once reaped.
        if [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; then
            wait "$1" 2>/dev/null
            return 0
        fi
        sleep 0.1
    done
    return 1
}

lib_cleanup() {
    local rc=$? i m p
    set +e
    trap - EXIT INT TERM HUP
    for ((i = ${#CLEANUP_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP_CMDS[$i]}" >/dev/null 2>&1
    done
    if [ -n "$WORK" ]; then
        # Everything mounted under our folder, whether we remembered it or not.
        for m in "${MOUNTS[@]}" $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts); do
            is_mounted "$m" || continue
            for i in 1 2 3 4 5; do
                fusermount3 -u "$m" 2>/dev/null && break
                sleep 0.2
            done
        done
        for p in "${PIDS[@]}" $(daemon_pids "$WORK"); do
            owned_pid "$p" || continue
            kill -TERM "$p" 2>/dev/null
            wait_gone "$p" 5 || { kill -KILL "$p" 2>/dev/null; wait_gone "$p" 5; }
        done
        for m in "${MOUNTS[@]}" $(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts); do
            is_mounted "$m" || continue
            fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
            for f in "$WORK"/*.log; do
                [ -s "$f" ] || continue
                echo "---- last lines of $(basename "$f") ----" >&2
                tail -n 30 "$f" >&2
            done
        fi
        if [ "${IMGC_KEEP:-0}" = 1 ]; then
            echo "[$TEST_NAME] kept $WORK" >&2
        elif ! awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
            chmod -R u+rwX "$WORK" 2>/dev/null
            rm -rf "$WORK"
        else
            echo "[$TEST_NAME] $WORK still has a mount; not removed" >&2
        fi
    fi
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    if [ "$rc" -eq 0 ]; then say "PASS"; fi
    exit "$rc"
}

# Start the test: skip without /dev/fuse, make $WORK, install the trap.
lib_setup() {
    [ -e /dev/fuse ] || skip "/dev/fuse is absent"
    local b
    for b in imgcrypt imgcryptfs mount.imgcryptfs; do
        [ -x "$IMGC_BIN/$b" ] || fail "$IMGC_BIN/$b is missing (build first)"
    done
    command -v fusermount3 >/dev/null || fail "fusermount3 is missing"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgc-$TEST_NAME.XXXXXX") || fail "mktemp"
    WORK=$(cd "$WORK" && pwd -P)
    trap lib_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

# Start a test of the imgcrypt tool alone (no mount, no /dev/fuse needed): skip when imgcrypt
# is not built; make $WORK (also $T, the working directory from here on), with
# $ALL_OUTPUT collecting everything the commands run by expect printed; install the trap.
lib_setup_tool() {
    [ -x "$IMGC_BIN/imgcrypt" ] || skip "$IMGC_BIN/imgcrypt is not built"
    IMGCRYPT=$IMGC_BIN/imgcrypt
    IMGC_TESTDATA=$(cd "$IMGC_TESTDATA" && pwd)
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgc-$TEST_NAME.XXXXXX") || fail "mktemp"
    WORK=$(cd "$WORK" && pwd -P)
    T=$WORK
    ALL_OUTPUT=$T/all-output.log
    : >"$ALL_OUTPUT"
    trap lib_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    cd "$T" || fail "cd $T"
}

# expect RC CMD...: run CMD (stdin /dev/null), keep its stdout and stderr in $T/out and $T/err
# (and append both to $ALL_OUTPUT), demand exit status RC; RC "nonzero" takes any failure.
expect() {
    local want=$1 rc=0
    shift
    "$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
    cat "$T/out" "$T/err" >>"$ALL_OUTPUT"
    if [ "$want" = nonzero ]; then
        [ "$rc" != 0 ] || fail "expected failure, got exit 0 from: $*"
    else
        [ "$rc" = "$want" ] || fail "expected exit $want, got $rc from: $*"
    fi
}

# error_says [STRING...]: the error just printed is exactly one line "imgcrypt: ..." that
# contains each given string.
error_says() {
    local lines s
    lines=$(wc -l <"$T/err")
    [ "$lines" = 1 ] || fail "expected a one-line message on stderr, got $lines lines"
    grep -q '^imgcrypt: ' "$T/err" || fail "message does not start with 'imgcrypt: '"
    for s in "$@"; do
        grep -qF -- "$s" "$T/err" || fail "message does not mention '$s'"
    done
}

# make_keyring BACKING KEY: a new key file (32 random bytes, 0600) and a keyring for it.
make_keyring() {
    mkdir -p "$1" || fail "mkdir $1"
    head -c 32 /dev/urandom >"$2" && chmod 600 "$2" || fail "cannot write key file $2"
    "$IMGC_BIN/imgcrypt" init --keyfile "$2" --kdf-cost 10 "$1" >/dev/null ||
        fail "imgcrypt init $1 failed"
}

# wait_mounted MNT [SECONDS] [PID]: until MNT is in the mount table; fails when PID dies first.
wait_mounted() {
    local i n=$((${2:-15} * 20))
    for ((i = 0; i < n; i++)); do
        is_mounted "$1" && return 0
        if [ -n "${3:-}" ] && ! pid_alive "$3"; then return 1; fi
        sleep 0.05
    done
    return 1
}

# mount_fs BACKING MNT KEY [OPTS]: daemonised mount (the command returns once it is live).
# Sets DAEMON_PID.
mount_fs() {
    local opts="keyfile=$3${4:+,$4}"
    mkdir -p "$2"
    "$IMGC_BIN/imgcryptfs" -o "$opts" "$1" "$2" || fail "imgcryptfs $1 $2 exited with $?"
    MOUNTS+=("$2")
    is_mounted "$2" || fail "imgcryptfs returned but $2 is not mounted"
    DAEMON_PID=$(daemon_pids "$2" exact | head -n1)
    [ -n "$DAEMON_PID" ] && PIDS+=("$DAEMON_PID")
    return 0
}

# mount_fg BACKING MNT KEY LOG [OPTS]: daemon with -f in the background, stderr appended to LOG.
# Sets DAEMON_PID.
mount_fg() {
    local opts="keyfile=$3${5:+,$5}"
    mkdir -p "$2"
    "$IMGC_BIN/imgcryptfs" -f -o "$opts" "$1" "$2" </dev/null >>"$4" 2>&1 &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    MOUNTS+=("$2")
    wait_mounted "$2" 15 "$DAEMON_PID" || fail "imgcryptfs -f $1 $2 did not mount (see $4)"
}

# unmount MNT: fusermount3 -u (retrying while busy), -uz as the last resort; then waits for
# the daemon that served it to exit.
unmount() {
    local m=$1 i p pids
    pids=$(daemon_pids "$m" exact)
    for ((i = 0; i < 50; i++)); do
        is_mounted "$m" || break
        fusermount3 -u "$m" 2>/dev/null && break
        sleep 0.1
    done
    if is_mounted "$m"; then
        say "fusermount3 -u $m kept failing; lazy unmount"
        fusermount3 -uz "$m" 2>/dev/null
    fi
    for p in $pids; do
        wait_gone "$p" 10 || say "daemon $p did not exit after unmount of $m"
    done
    ! is_mounted "$m" || fail "$m is still mounted"
}

# Run a command with a time limit, so a hung filesystem fails the test instead of hanging it.
limit() {
    local secs=$1
    shift
    timeout -k 5 "$secs" "$@"
}

# A free TCP port on localhost.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# unmount_fg MNT: unmount a mount made by mount_fg (retrying while busy, -uz as the last resort)
# and wait for its daemon, $DAEMON_PID, to exit: no search of /proc, which is slow on a busy
# machine.
unmount_fg() {
    local m=$1 i
    for ((i = 0; i < 50; i++)); do
        is_mounted "$m" || break
        fusermount3 -u "$m" 2>/dev/null && break
        sleep 0.1
    done
    is_mounted "$m" && fusermount3 -uz "$m"
    wait_gone "$DAEMON_PID" 10 || say "daemon $DAEMON_PID did not exit after the unmount of $m"
    ! is_mounted "$m" || fail "$m is still mounted"
}
