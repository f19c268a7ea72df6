#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Deleted files must not stay behind in the backing folder (issue 12, defect 1: a race between
# release and unlink left ~7% of the backing files of a create-write-close-unlink loop on disk,
# unlisted, and the folder could not be removed). A Python loop with the daemon's default
# threads creates a file, writes 28 bytes, closes and unlinks it at once, 3,000 times; then the
# backing folder, as an attacker sees it, must hold nothing but the store's own files, the folder
# must be removable through the mount, and after a clean unmount nothing is left.
# IMGC_LONG=1: 5 rounds of 20,000.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
# mount_fg gives the daemon's PID at once (lib.sh's /proc search is slow on a busy machine).
mnt() { mount_fg "$B" "$M" "$K" "$WORK/daemon.log"; }
umnt() { unmount_fg "$M"; }
mnt # default threads: the defect does not show with threads=1

N=3000 ROUNDS=1
if [ "${IMGC_LONG:-0}" = 1 ]; then N=20000 ROUNDS=5; fi

STORE_FILES=".imgcryptfs.dirid imgcryptfs.keyring"
# backing_extra DIR [ALLOWED...]: every entry of DIR (recursively) that is not one of the
# store's own files nor an allowed top-level entry; prints one path per line.
backing_extra() {
    "$PY" - "$@" <<'PYEOF'
import os, sys
top, allowed = sys.argv[1], set(sys.argv[2:]) | {".imgcryptfs.dirid", "imgcryptfs.keyring"}
for dp, dn, fn in os.walk(top):
    for n in dn + fn:
        rel = os.path.relpath(os.path.join(dp, n), top)
        if dp == top and n in allowed:
            continue
        if n == ".imgcryptfs.dirid" and n in fn:
            continue  # every folder's own id
        print(rel + ("/" if n in dn else ""))
PYEOF
}

for ((r = 1; r <= ROUNDS; r++)); do
    mkdir "$M/leak" || fail "mkdir leak through the mount"
    say "round $r: $N times create, write 28 bytes, close, unlink"
    limit 300 "$PY" - "$M/leak" "$N" <<'PYEOF' || check_fail "round $r: the create/unlink loop failed"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    p = os.path.join(d, f"f{i}")
    with open(p, "wb") as f:
        f.write(b"0123456789abcdefghijklmnopqr")  # 28 bytes
    os.unlink(p)
left = os.listdir(d)
if left:
    print(f"the mount still lists {len(left)} entries: {left[:5]}")
    sys.exit(1)
PYEOF
    # The folder's encrypted name: the one folder at the top of the backing folder.
    dirs=$(find "$B" -mindepth 1 -maxdepth 1 -type d)
    if [ -z "$dirs" ] || [ "$(wc -l <<<"$dirs")" != 1 ]; then
        fail "round $r: expected one backing folder, found: $dirs"
    fi
    extra=$(backing_extra "$dirs")
    if [ -n "$extra" ]; then
        check_fail "round $r: $(wc -l <<<"$extra") backing entries left in the folder after $N create+unlink: $(head -n3 <<<"$extra" | tr '\n' ' ')"
    fi
    if ! err=$(rmdir "$M/leak" 2>&1); then
        check_fail "round $r: rmdir of the emptied folder through the mount: $err"
        break
    fi
    [ -z "$(find "$B" -mindepth 1 -maxdepth 1 -type d)" ] ||
        check_fail "round $r: the backing folder of the removed folder is still there"
done

umnt
extra=$(backing_extra "$B")
[ -z "$extra" ] ||
    check_fail "after unmount: $(wc -l <<<"$extra") backing entries survive besides $STORE_FILES: $(head -n3 <<<"$extra" | tr '\n' ' ')"
lib_finish
