#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Shutdown by signal with files still open: the kernel may still cache written pages of an open
# file (writeback caching); SIGTERM, SIGINT and SIGHUP must write them back before the mount
# goes, so a file written, not closed, then the daemon signalled, reads back whole after a
# remount. The daemon exits 0 and leaves no mount behind.
source "$(dirname "$0")/lib.sh"
lib_setup
B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"

for sig in TERM INT HUP; do
    mount_fs "$B" "$M" "$K"
    pid=$DAEMON_PID
    [ -n "$pid" ] || fail "no daemon pid for $M"
    # Write 3 MB and keep the file open while the daemon is signalled; report the status.
    $PY - "$M/open-$sig.bin" "$WORK/expect-$sig.bin" "$pid" "$sig" <<'PY' || fail "writer failed ($sig)"
import os, signal, sys, time
path, expect, pid, sig = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = os.urandom(3_000_000)
with open(expect, "wb") as e:
    e.write(data)
f = open(path, "wb")
f.write(data)
f.flush()
os.kill(pid, getattr(signal, "SIG" + sig))
for _ in range(200):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.05)
else:
    sys.exit("daemon still running 10 s after SIG" + sig)
try:
    f.close()
except OSError:
    pass  # the mount is gone; what matters is what reached the backing folder
PY
    is_mounted "$M" && fail "$M still mounted after SIG$sig"
    mount_fs "$B" "$M" "$K"
    cmp -s "$M/open-$sig.bin" "$WORK/expect-$sig.bin" ||
        fail "data of a file open at SIG$sig was lost ($(stat -c %s "$M/open-$sig.bin") of 3000000 bytes)"
    unmount "$M"
    say "SIG$sig: open file kept, mount gone"
done

# The exit status after a signal is 0, in the foreground too.
mount_fg "$B" "$M" "$K" "$WORK/fg.log"
kill -TERM "$DAEMON_PID"
status=0
wait "$DAEMON_PID" || status=$?
[ "$status" = 0 ] || fail "foreground daemon exited $status after SIGTERM"
is_mounted "$M" && fail "$M still mounted after SIGTERM (foreground)"
lib_finish
