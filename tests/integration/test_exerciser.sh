#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The random-operation exerciser (tests/exerciser.py) against a real mount, with a shadow
# folder on local disk compared after every step: reads and writes past the end, truncates,
# every fallocate mode, mmap, renames, links, reopen, whole images that the daemon converts
# into containers between steps and turns back into block files on writes, and remounts
# mid-run through $WORK/remount.sh (which uses this harness: unmount, wait for the daemon,
# mount again in the foreground with the log appended). Afterwards no conversion temporary
# file may be left in the backing folder.
#
# CI: 10,000 operations (under 2 minutes on two loaded cores). The seed is printed; replay it:
#   IMGC_EXER_SEED=N IMGC_EXER_OPS=M bash tests/integration/test_exerciser.sh
# Long campaign (10^6 operations, an hour or more; IMGC_KEEP=1 keeps the logs on a failure):
#   IMGC_EXER_OPS=1000000 IMGC_EXER_TIME=36000 bash tests/integration/test_exerciser.sh
# Time-boxed: IMGC_EXER_SECONDS=N starts no operation after N seconds, then checks everything
# and prints the summary (keep IMGC_EXER_TIME, the hard limit, well above it).
# Other knobs: IMGC_EXER_ARGS (extra exerciser options, e.g. "--full-every 1"),
# IMGC_EXER_OPTS (mount options, e.g. "coder=fixed,cache_mb=0"), IMGC_EXER_ALLOW (known bugs
# let through; empty: none).
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key S=$WORK/shadow LOG=$WORK/daemon.log
OPS=${IMGC_EXER_OPS:-10000}
SEED=${IMGC_EXER_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
OPTS=${IMGC_EXER_OPTS:-}
make_keyring "$B" "$K"
mkdir -p "$S"

step "mount"
mount_fg "$B" "$M" "$K" "$LOG" "$OPTS"
echo "$DAEMON_PID" >"$WORK/daemon.pid"

# The exerciser's remount callback: a separate process, so it keeps the daemon's PID in a file
# (the trap finds any daemon left by its command line, which names $WORK).
cat >"$WORK/remount.sh" <<EOF
#!/usr/bin/env bash
. "$LIB_DIR/lib.sh"
M='$M' B='$B' K='$K' LOG='$LOG' OPTS='$OPTS' WORK='$WORK'
EOF
cat >>"$WORK/remount.sh" <<'EOF'
pid=$(cat "$WORK/daemon.pid")
for ((i = 0; i < 100; i++)); do
    is_mounted "$M" || break
    fusermount3 -u "$M" 2>/dev/null && break
    sleep 0.1
done
is_mounted "$M" && { echo "remount: $M stays mounted" >&2; exit 1; }
wait_gone "$pid" 30 || { echo "remount: daemon $pid did not exit" >&2; exit 1; }
"$IMGC_BIN/imgcryptfs" -f -o "keyfile=$K${OPTS:+,$OPTS}" "$B" "$M" </dev/null >>"$LOG" 2>&1 &
echo $! >"$WORK/daemon.pid"
wait_mounted "$M" 30 $! || { echo "remount: $M did not mount" >&2; exit 1; }
EOF

# Nothing is let through: IMGC_EXER_ALLOW can name a known deviation (--allow nlink0,
# rmdir-busy, meta-lost: bugs the exerciser found and that are fixed) to count it instead.
ALLOW=${IMGC_EXER_ALLOW-}

step "exerciser: $OPS operations, seed $SEED"
# shellcheck disable=SC2086 # IMGC_EXER_ARGS is a list of options
limit "${IMGC_EXER_TIME:-600}" "$PY" "$LIB_DIR/../exerciser.py" --mount "$M" --shadow "$S" \
    --data "$IMGC_TESTDATA" --seed "$SEED" --ops "$OPS" --remount-cmd "bash $WORK/remount.sh" \
    --log "$WORK/ops.log" --ops-out "$WORK/ops.jsonl" --seconds "${IMGC_EXER_SECONDS:-0}" \
    $ALLOW ${IMGC_EXER_ARGS:-} >"$WORK/exer.out" 2>&1
rc=$?
cat "$WORK/exer.out"
[ "$rc" = 0 ] || fail "the exerciser exited with $rc (seed $SEED)"

step "unmount: no temporary file of a conversion is left"
DAEMON_PID=$(cat "$WORK/daemon.pid")
unmount_fg "$M"
left=$(find "$B" -name '.imgcryptfs.tmp.*' | head -n 3)
[ -z "$left" ] || fail "left in the backing folder: $left"
lib_finish
