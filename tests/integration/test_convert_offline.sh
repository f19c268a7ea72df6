#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `imgcrypt convert`: a store written with -o images=off (real PNG, PGM and DICOM files, a text
# file, a hard link, a name long enough to be hashed, a symlink whose long target is in a
# sidecar) is converted offline, first one PATH (with --coder fixed), then the whole store.
# Checked as an attacker sees the backing folder (PNG signature vs "IMGCBF") and through a new
# mount: user.imgcryptfs.storage of every file, the sha256 of every file equal to its original,
# owner, mode, times and xattrs kept, the symlink's sidecar untouched. A rerun changes no byte
# of the backing folder; a mounted store, or one another run holds, is refused; PATHs that name
# nothing are refused without their plaintext; a damaged block file is a failure named by its
# backing path; kill -9 (or SIGTERM) in the middle of a run, then a rerun: no temporary file
# left, every byte exact.
. "$(dirname "$0")/lib.sh"
lib_setup

IMGCRYPT=$IMGC_BIN/imgcrypt
DATA=$(cd "$IMGC_TESTDATA" && pwd)
B=$WORK/backing M=$WORK/mnt K=$WORK/key
T=$WORK
ALL_OUTPUT=$WORK/all-output.log
: >"$ALL_OUTPUT"
make_keyring "$B" "$K"
LONG=$(printf 'long-name-%.0s' $(seq 1 18))scan.png # 198 bytes: stored under a hashed name

# The stored form of each file of backing folder $1, as an attacker reads it: prints
# "<containers> <block files> <other>"; names of imgcryptfs' own (folder ids, sidecars,
# temporary entries, the keyring) are left out, hashed long names are counted.
kinds() {
    local c=0 b=0 o=0 f h
    while IFS= read -r -d '' f; do
        h=$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')
        if [ "$h" = 89504e470d0a1a0a ]; then
            c=$((c + 1))
        elif [ "$(head -c 6 "$f")" = IMGCBF ]; then
            b=$((b + 1))
        else
            o=$((o + 1))
        fi
    done < <(find "$1" -type f \( ! -name '.*' -o -name '.imgcryptfs.long.*' \) \
        ! -name '*.name' ! -name imgcryptfs.keyring -print0)
    echo "$c $b $o"
}

# Every file of the backing folder $1 with its hash, for "not a byte changed".
backing_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

temps() { find "$1" -name '.imgcryptfs.tmp.*' | wc -l; }

# sha256 of every file of the mount, by plaintext path.
mount_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# The value a summary line "NAME: N ..." of $T/out gives.
count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$T/out" | head -n1; }

storage() { getfattr -n user.imgcryptfs.storage --only-values "$1" 2>/dev/null; }

# convert_ok ARGS...: imgcrypt convert must exit 0, with nothing failed.
convert_ok() {
    expect 0 "$IMGCRYPT" convert --keyfile "$K" "$@"
    [ "$(count failed)" = 0 ] || fail "convert $*: failures: $(cat "$T/err")"
}

step "a store written with images=off"
mount_fs "$B" "$M" "$K" images=off
mkdir -p "$M/study1/series1" "$M/study2" "$M/misc"
cp "$DATA"/*.png "$M/study1/series1/"
cp "$DATA"/MR_small.dcm "$DATA"/CT_small.dcm "$DATA"/MR_small_implicit.dcm \
    "$DATA"/JPEG2000.dcm "$M/study2/"
cp "$DATA"/*.pgm "$M/misc/"
cp "$DATA/mri-t1-axial-8bit.png" "$M/misc/$LONG"
printf 'not an image, just a note\n' >"$M/misc/notes.txt"
cp "$DATA/mri-t1-coronal-512.png" "$M/misc/linked.png"
ln "$M/misc/linked.png" "$M/misc/linked-too.png"
LONGT=$(printf 'long/target/%.0s' $(seq 1 300)) # 3600 bytes: sealed in a sidecar of the root
ln -s "$LONGT" "$M/misc/long-link"
chmod 640 "$M/study2/MR_small.dcm"
touch -d '2001-02-03 04:05:06.123456789' "$M/study2/MR_small.dcm"
setfattr -n user.origin -v scanner-7 "$M/study2/MR_small.dcm"
mount_sums "$M" >"$WORK/want.sha"
sidecar_sum=$(cat "$B"/.imgcryptfs.link.* | sha256sum)
meta_before=$(stat -c '%a %u %g %Y %y' "$M/study2/MR_small.dcm")
for f in $(cd "$M" && find . -type f); do
    [ "$(storage "$M/$f")" = blocks ] || fail "$f is not a block file under images=off"
done
unmount "$M"
read -r c b o < <(kinds "$B")
[ "$c" = 0 ] && [ "$o" = 0 ] || fail "before convert: $c containers, $o other files"
nfiles=$b
say "$nfiles block files"

step "refused while mounted"
mount_fs "$B" "$M" "$K" images=off
backing_sums "$B" >"$WORK/sums.mounted"
expect 7 "$IMGCRYPT" convert --keyfile "$K" "$B"
error_says "mounted"
backing_sums "$B" | cmp -s - "$WORK/sums.mounted" || fail "the backing folder changed"
unmount "$M"

step "refused while another run holds the store"
if command -v flock >/dev/null; then # the lock a run takes: flock on the backing folder
    expect 7 flock "$B" "$IMGCRYPT" convert --keyfile "$K" "$B"
    error_says "another imgcrypt convert"
fi

step "PATHs that name nothing"
expect 1 "$IMGCRYPT" convert --keyfile "$K" "$B" study1 secret-patient-name
error_says "PATH 2" "no such file or folder"
grep -q secret-patient "$T/err" && fail "the plaintext of a PATH is in the message"
expect 2 "$IMGCRYPT" convert --keyfile "$K" "$B" study1/../misc
error_says "PATH 1"
expect 1 "$IMGCRYPT" convert --keyfile "$K" "$B" misc/notes.txt/x
error_says "PATH 1"
grep -q notes "$T/err" && fail "the plaintext of a PATH is in the message"
head -c 32 /dev/urandom >"$WORK/wrongkey" && chmod 600 "$WORK/wrongkey"
expect 3 "$IMGCRYPT" convert --keyfile "$WORK/wrongkey" "$B"
expect 2 "$IMGCRYPT" convert --keyfile "$K" --coder best "$B"
expect 2 "$IMGCRYPT" convert --keyfile "$K" --threads 0 "$B"
backing_sums "$B" | cmp -s - "$WORK/sums.mounted" || fail "a refused run changed the backing folder"

step "one PATH, --coder fixed"
convert_ok --coder fixed "$B" study1/series1 study1 ./study1/series1/mri-t1-rgb.png
conv1=$(count converted)
[ "$(count files)" = "$(ls "$DATA"/*.png | wc -l)" ] || fail "study1: $(count files) files, each PNG once"
[ "$conv1" -ge 4 ] || fail "study1: only $conv1 converted"
read -r c b o < <(kinds "$B")
[ "$c" = "$conv1" ] && [ $((c + b)) = "$nfiles" ] && [ "$o" = 0 ] ||
    fail "after study1: $c containers, $b block files, $o others; $conv1 converted"
[ "$(temps "$B")" = 0 ] || fail "temporary files left"
say "study1: $conv1 of $(count files) converted"

step "a hashed long name as PATH"
convert_ok "$B" "misc/$LONG"
[ "$(count files)" = 1 ] && [ "$(count converted)" = 1 ] || fail "the long-named file: $(cat "$T/out")"
read -r c b o < <(kinds "$B")
[ "$c" = $((conv1 + 1)) ] || fail "after the long name: $c containers"

step "the whole store"
convert_ok --threads 2 "$B"
conv2=$(count converted)
[ "$(count files)" = "$nfiles" ] || fail "whole store: $(count files) files, want $nfiles"
[ "$(count "already images")" = $((conv1 + 1)) ] || fail "already images: $(count "already images")"
[ "$(count hard-linked)" = 2 ] || fail "hard-linked: $(count hard-linked)"
[ "$(count "not images")" -ge 2 ] || fail "not images: $(count "not images")"
read -r c b o < <(kinds "$B")
[ "$c" = $((conv1 + 1 + conv2)) ] && [ $((c + b)) = "$nfiles" ] ||
    fail "after the whole store: $c containers, $b block files"
[ "$(temps "$B")" = 0 ] || fail "temporary files left"
[ "$(cat "$B"/.imgcryptfs.link.* | sha256sum)" = "$sidecar_sum" ] ||
    fail "the sidecar of a long symlink target changed"
say "whole store: $conv2 more converted; $c containers, $b block files"

step "a rerun changes nothing"
backing_sums "$B" >"$WORK/sums.done"
convert_ok "$B"
[ "$(count converted)" = 0 ] || fail "the rerun converted $(count converted)"
[ "$(count "already images")" = "$c" ] || fail "the rerun saw $(count "already images") images"
backing_sums "$B" | cmp -s - "$WORK/sums.done" || fail "the rerun changed the backing folder"
# On a terminal, a progress line on stderr (redrawn in place); the summary still comes.
if command -v script >/dev/null; then
    script -qec "$(printf '%q ' "$IMGCRYPT" convert --keyfile "$K" "$B")" /dev/null \
        </dev/null >"$WORK/tty.out" 2>&1 || fail "convert on a terminal failed: $(cat "$WORK/tty.out")"
    grep -q $'\r\e\[Kimgcrypt: [0-9]*/[0-9]*+* files' "$WORK/tty.out" || fail "no progress line on a terminal"
    grep -q '^converted: *0' "$WORK/tty.out" || fail "no summary on a terminal"
fi

step "read back through the mount"
mount_fs "$B" "$M" "$K"
mount_sums "$M" | cmp -s - "$WORK/want.sha" || {
    mount_sums "$M" | diff "$WORK/want.sha" - >&2
    fail "files differ from the originals"
}
n_img=0 n_neural=0
for f in $(cd "$M" && find . -type f); do
    s=$(storage "$M/$f")
    case "$f:$s" in
    ./study1/*:"image coder=fixed "*) n_img=$((n_img + 1)) ;;
    ./study1/*:blocks) ;;
    ./study1/*) fail "$f: $s (want coder=fixed)" ;;
    ./misc/notes.txt:blocks | ./misc/linked*.png:blocks | ./study2/JPEG2000.dcm:blocks) ;;
    ./misc/notes.txt:* | ./misc/linked*.png:* | ./study2/JPEG2000.dcm:*) fail "$f: $s (want blocks)" ;;
    ./misc/*.pgm:"image coder="* | ./misc/long-name-*:"image coder="* | ./study2/*:"image coder="*)
        # the neural coder, or predictor 0 where a sample said it codes smaller
        [ "${s#image coder=fixed}" = "$s" ] && n_neural=$((n_neural + 1))
        n_img=$((n_img + 1))
        ;;
    *) fail "$f: $s" ;;
    esac
done
[ "$n_img" = "$c" ] || fail "$n_img images in the mount, $c containers in the backing folder"
[ "$n_neural" -ge 2 ] || fail "only $n_neural images coded by the neural coder"
[ "$(stat -c '%a %u %g %Y %y' "$M/study2/MR_small.dcm")" = "$meta_before" ] ||
    fail "metadata not kept: $(stat -c '%a %u %g %Y %y' "$M/study2/MR_small.dcm"), was $meta_before"
[ "$(getfattr --absolute-names -n user.origin --only-values "$M/study2/MR_small.dcm")" = scanner-7 ] ||
    fail "xattr not kept"
[ "$(stat -c %h "$M/misc/linked.png")" = 2 ] || fail "the hard link broke"
[ "$(readlink "$M/misc/long-link")" = "$LONGT" ] || fail "the long symlink does not read"
unmount "$M"

step "a damaged block file fails, named by its backing path"
B3=$WORK/damaged
make_keyring "$B3" "$K"
mount_fs "$B3" "$M" "$K" images=off
cp "$DATA/mri-t1-coronal-512.png" "$M/scan-of-patient.png"
unmount "$M"
bf=$(find "$B3" -type f ! -name '.*' ! -name imgcryptfs.keyring)
cp -p "$bf" "$WORK/bf.orig"
mid=$(($(stat -c %s "$bf") / 2))
printf '\x5a' | dd of="$bf" bs=1 seek="$mid" conv=notrunc status=none
cmp -s "$bf" "$WORK/bf.orig" && printf '\x5b' | dd of="$bf" bs=1 seek="$mid" conv=notrunc status=none
expect 1 "$IMGCRYPT" convert --keyfile "$K" "$B3"
grep -qF "$bf: the block file does not authenticate" "$T/err" || fail "no failure line naming $bf"
grep -q patient "$T/err" "$T/out" && fail "a plaintext name in the output"
[ "$(count failed)" = 1 ] || fail "failed: $(count failed)"
[ "$(head -c 6 "$bf")" = IMGCBF ] || fail "the damaged file was replaced"
[ "$(temps "$B3")" = 0 ] || fail "temporary files left"

step "kill -9 in the middle of a run, then a rerun"
B4=$WORK/many
make_keyring "$B4" "$K"
mount_fs "$B4" "$M" "$K" images=off
mkdir -p "$M/a" "$M/b"
for i in $(seq 1 8); do
    cp "$DATA/mri-t1-coronal-512.png" "$M/a/c$i.png"
    cp "$DATA/mri-t1-axial-12bit.pgm" "$M/b/x$i.pgm"
    cp "$DATA/CT_small.dcm" "$M/b/ct$i.dcm"
done
mount_sums "$M" >"$WORK/want4.sha"
unmount "$M"
# Each kill comes as soon as the run has a temporary file (its first container being written:
# a poll of the folders, then the signal at once), or after a random delay of up to half a
# second from then; each later run sweeps what the one before left.
cat >"$WORK/killer.py" <<'EOF'
import os, random, signal, subprocess, sys, time
backing, delay, sig, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[4], sys.argv[5:]
out = open(sys.argv[3], "w")
dirs = [d for d, _, _ in os.walk(backing)]
deadline = time.time() + 30

def temps():
    found = set()
    for d in dirs:
        try:
            found |= {e.name for e in os.scandir(d) if e.name.startswith(".imgcryptfs.tmp.")}
        except OSError:
            pass
    return found

old = temps()  # left by the run before: not this run's
p = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
while p.poll() is None and time.time() < deadline and not temps() - old:
    pass
if delay:
    time.sleep(random.random() * delay)
p.send_signal(getattr(signal, sig))
rc = p.wait()
sys.exit(-rc if rc < 0 else rc)
EOF
for trial in 1 2 3 4; do
    delay=0
    [ "$trial" -le 2 ] && delay=0.5
    rc=0
    limit 60 "$PY" "$WORK/killer.py" "$B4" "$delay" "$WORK/kill.out" SIGKILL \
        "$IMGCRYPT" convert --keyfile "$K" --coder fixed --threads 2 "$B4" || rc=$?
    [ "$rc" = 9 ] || [ "$rc" = 0 ] || fail "trial $trial: exit $rc ($(cat "$WORK/kill.out"))"
    left=$(temps "$B4")
    read -r c b o < <(kinds "$B4")
    say "trial $trial: exit $rc with $c containers, $b block files, $left temporary files"
    [ "$o" = 0 ] || fail "trial $trial: $o files are neither containers nor block files"
    [ "$rc" = 9 ] || break # done before the kill: nothing left to interrupt
done
# SIGTERM: a stop once the files under way are done, nothing left behind, status 1.
rc=0
limit 60 "$PY" "$WORK/killer.py" "$B4" 0.5 "$WORK/term.out" SIGTERM \
    "$IMGCRYPT" convert --keyfile "$K" --coder fixed --threads 2 "$B4" || rc=$?
if [ "$rc" = 1 ]; then
    grep -q '^imgcrypt: stopped: ' "$WORK/term.out" || fail "SIGTERM: no stop message: $(cat "$WORK/term.out")"
    grep -q '^converted: ' "$WORK/term.out" || fail "SIGTERM: no summary"
    [ "$(temps "$B4")" = 0 ] || fail "SIGTERM: temporary files left"
else
    [ "$rc" = 0 ] || fail "SIGTERM: exit $rc ($(cat "$WORK/term.out"))" # it may have been done
fi
read -r c b o < <(kinds "$B4")
say "SIGTERM: exit $rc with $c containers, $b block files"
swept=$(sed -n 's/^leftovers: *\([0-9]*\).*/\1/p' "$WORK/term.out")
[ "$swept" = "$left" ] || fail "the run after the kills removed '$swept' leftovers, $left were there"
left=0
convert_ok --coder fixed "$B4"
[ "$(count leftovers)" = "$left" ] || fail "the rerun removed $(count leftovers) leftovers, $left were there"
[ "$(temps "$B4")" = 0 ] || fail "temporary files left after the rerun"
read -r c b o < <(kinds "$B4")
[ "$c" -ge 16 ] && [ $((c + b)) = 24 ] || fail "after the rerun: $c containers, $b block files"
mount_fs "$B4" "$M" "$K" images=off
mount_sums "$M" | cmp -s - "$WORK/want4.sha" || fail "files differ after kill -9 and rerun"
unmount "$M"

lib_finish
