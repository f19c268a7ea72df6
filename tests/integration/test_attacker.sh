#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The backing folder as an attacker (or a backup system) sees it: no plaintext name, content,
# folder name, symlink target, or user xattr name or value appears in it, in any file name,
# file body (the sidecar of a long symlink target too), link target or xattr; every block file
# has its own random file id; equal plaintexts are stored differently; equal names in two
# folders are sealed differently; and the keyring and the .imgcryptfs.* bookkeeping never show
# through the mount.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
KEYRING_SUM=$(sha256sum <"$B/imgcryptfs.keyring")
mount_fs "$B" "$M" "$K"

# Markers: each must never appear in the backing folder in any form we can think of.
NAME_F=patientNAMEmarkerQx7 # file name
NAME_D=folderNAMEmarkerQx7  # folder name
BODY=contentBODYmarkerQx7   # file content
LINKT=linkTARGETmarkerQx7   # symlink target
XNAME=xattrNAMEmarkerQx7    # user xattr name
XVAL=xattrVALUEmarkerQx7    # user xattr value
LONGN=longNAMEmarkerQx7     # inside a 240-byte name (long-name path)

limit 60 "$PY" - "$M" <<EOF || fail "could not populate the mount"
import os
m = "$M"
os.mkdir(f"{m}/$NAME_D")
os.mkdir(f"{m}/$NAME_D/sub_$NAME_D")
for i in range(30):
    with open(f"{m}/$NAME_D/{i}_$NAME_F.txt", "w") as f:
        f.write("$BODY " * (1 + i * 300))
with open(f"{m}/$NAME_F", "w") as f:
    f.write(("$BODY\n" * 5000))
with open(f"{m}/$NAME_D/sub_$NAME_D/deep_$NAME_F", "w") as f:
    f.write("$BODY")
# Low-entropy content: 200 KiB of one letter and of zeros.
with open(f"{m}/aaaa_$NAME_F", "wb") as f:
    f.write(b"A" * 200000)
with open(f"{m}/zero_$NAME_F", "wb") as f:
    f.write(bytes(200000))
# A long name (sealed name longer than NAME_MAX: stored under a hash with a sidecar).
long = ("$LONGN" * 20)[:240]
with open(f"{m}/$NAME_D/{long}", "w") as f:
    f.write("$BODY")
os.symlink("/$LINKT/$LINKT/file", f"{m}/abs_$NAME_F")
os.symlink("../$LINKT", f"{m}/$NAME_D/rel_$NAME_F")
# A long target (over 3041 bytes: sealed in a sidecar of the root folder).
os.symlink("/$LINKT" * 200, f"{m}/$NAME_D/longlink_$NAME_F")
os.link(f"{m}/$NAME_F", f"{m}/$NAME_D/hard_$NAME_F")
os.setxattr(f"{m}/$NAME_F", "user.$XNAME", b"$XVAL" * 10)
os.setxattr(f"{m}/$NAME_D", "user.$XNAME", b"$XVAL")
os.setxattr(f"{m}/$NAME_D/0_$NAME_F.txt", "user.${XNAME}2", b"$XVAL")
# Same content in two files, and the same name in two folders.
data = os.urandom(3 * 4096 + 100)
for n in ("same1", "same2"):
    with open(f"{m}/{n}", "wb") as f:
        f.write(data)
os.mkdir(f"{m}/twinA"); os.mkdir(f"{m}/twinB")
for d in ("twinA", "twinB"):
    with open(f"{m}/{d}/samename", "w") as f:
        f.write("x")
EOF
unmount "$M"

# 1. Markers: in names (files, folders, sidecars), bodies, link targets, xattrs.
limit 60 "$PY" - "$B" <<EOF || fail "plaintext found in the backing folder (see above)"
import base64, os, sys
root = "$B"
markers = ["$NAME_F", "$NAME_D", "$BODY", "$LINKT", "$XNAME", "$XVAL", "$LONGN"]
forms = {}
for m in markers:
    b = m.encode()
    forms[m] = [b, b.upper(), b.lower(), m.encode("utf-16-le"),
                base64.b64encode(b)[:16], base64.urlsafe_b64encode(b)[:16], b.hex().encode()]
forms["AAAA"] = [b"A" * 64]
bad = []

def scan(where, blob):
    for m, fs in forms.items():
        for f in fs:
            if f in blob:
                bad.append(f"{m!r} (as {f[:20]!r}) in {where}")

count = {"files": 0, "dirs": 0, "links": 0, "xattrs": 0}
for dirpath, dirnames, filenames in os.walk(root):
    for n in dirnames + filenames:
        p = os.path.join(dirpath, n)
        scan(f"name {os.path.relpath(p, root)}", n.encode())
        try:
            xs = os.listxattr(p, follow_symlinks=False)
        except OSError:
            xs = []
        for x in xs:
            count["xattrs"] += 1
            scan(f"xattr name on {n}", x.encode())
            scan(f"xattr value {x} on {n}", os.getxattr(p, x, follow_symlinks=False))
        if os.path.islink(p):
            count["links"] += 1
            scan(f"link target of {n}", os.readlink(p).encode())
        elif os.path.isfile(p):
            count["files"] += 1
            with open(p, "rb") as f:
                scan(f"content of {os.path.relpath(p, root)}", f.read())
        elif os.path.isdir(p):
            count["dirs"] += 1
print("scanned backing:", count)
if count["links"] != 3 or count["xattrs"] < 3 or count["dirs"] < 4:
    sys.exit(f"backing folder does not hold what was written: {count}")
if bad:
    for b in bad[:20]:
        print("plaintext visible:", b)
    sys.exit(1)
EOF
# The same with grep, the attacker's first tool.
for mk in "$NAME_F" "$NAME_D" "$BODY" "$LINKT" "$XNAME" "$XVAL" "$LONGN"; do
    if grep -r -a -l -F "$mk" "$B" >/dev/null 2>&1; then fail "grep -r finds $mk in the backing folder"; fi
    if [ -n "$(find "$B" -name "*$mk*")" ]; then fail "find -name finds $mk in the backing folder"; fi
done
say "no plaintext names, contents, link targets or xattrs in the backing folder"

# 2. Block files: header magic, distinct random file ids, different ciphertext for equal
#    plaintext, different sealed names for equal names in different folders.
limit 60 "$PY" - "$B" <<'EOF' || fail "block-file layout checks (see above)"
import os, sys
root = sys.argv[1]
ids, inodes, blockfiles = {}, set(), {}
for dirpath, dirnames, filenames in os.walk(root):
    for n in filenames:
        p = os.path.join(dirpath, n)
        st = os.lstat(p)
        if n == "imgcryptfs.keyring" or n.startswith(".imgcryptfs.") or not os.path.isfile(p) \
                or os.path.islink(p) or st.st_ino in inodes:
            continue
        inodes.add(st.st_ino)
        with open(p, "rb") as f:
            data = f.read()
        if not data:
            continue
        if data[:8] != b"IMGCBF\x01\x00":
            sys.exit(f"{n}: no block-file header: {data[:8]!r}")
        fid = data[8:24]
        if fid == bytes(16):
            sys.exit(f"{n}: all-zero file id")
        if fid in ids:
            sys.exit(f"{n} and {ids[fid]} share the file id {fid.hex()}")
        ids[fid] = n
        blockfiles[n] = data
print(f"{len(ids)} block files, all file ids distinct")
if len(ids) < 35:
    sys.exit("too few block files found")
# same1/same2: equal plaintext of 4 blocks. Find them by size (the only two of this size).
size = 32 + 3 * 4124 + 100 + 28
same = [d for d in blockfiles.values() if len(d) == size]
if len(same) != 2:
    sys.exit(f"expected two block files of {size} bytes, found {len(same)}")
a, b = same
for i in range(4):
    ba, bb = a[32 + i * 4124:32 + (i + 1) * 4124], b[32 + i * 4124:32 + (i + 1) * 4124]
    if ba[:12] == bb[:12]:
        sys.exit(f"block {i}: equal nonces in two files")
    if ba[12:] == bb[12:] or ba[12:28] == bb[12:28]:
        sys.exit(f"block {i}: equal plaintext gives equal ciphertext in two files")
# Equal names in two folders.
twins = []
for dirpath, dirnames, filenames in os.walk(root):
    real = [f for f in filenames if "." not in f]
    if len(real) == 1 and not dirnames and os.path.getsize(os.path.join(dirpath, real[0])) == 32 + 1 + 28:
        twins.append(real[0])
if len(twins) != 2:
    sys.exit(f"expected the two 'samename' files, found {twins}")
if twins[0] == twins[1]:
    sys.exit("the same name in two folders is sealed to the same backing name")
print("equal contents and equal names are stored differently")
EOF

# 3. Rewriting the same bytes at the same place stores new ciphertext (fresh nonces).
mount_fs "$B" "$M" "$K"
ino=$(stat -c %i "$M/same1")
bf=$(find "$B" -inum "$ino" | head -n1)
[ -n "$bf" ] || fail "backing file of same1 not found by inode $ino"
cp "$bf" "$WORK/same1.before"
"$PY" -c "
import os, sys
p = sys.argv[1]
d = open(p, 'rb').read()
fd = os.open(p, os.O_RDWR); os.pwrite(fd, d, 0); os.fsync(fd); os.close(fd)" "$M/same1" ||
    fail "rewrite of same1"
unmount "$M"
"$PY" - "$WORK/same1.before" "$bf" <<'EOF' || fail "rewrite check"
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
if len(a) != len(b):
    sys.exit("size changed")
if a[8:24] != b[8:24]:
    sys.exit("the file id changed on rewrite")
for i in range(4):
    x, y = a[32 + i * 4124:][:12], b[32 + i * 4124:][:12]
    if x == y:
        sys.exit(f"block {i}: rewriting reused the nonce")
EOF
say "file ids distinct, nonces fresh, equal data and names stored differently"

# 4. What the mount shows: never the keyring or the .imgcryptfs.* files, even though the
#    backing folder has them; names that look like them are ordinary, sealed user files.
mount_fs "$B" "$M" "$K"
# shellcheck disable=SC2010
ls -a "$M" "$M/$NAME_D" | grep -E 'imgcryptfs|^\.imgc' && fail "bookkeeping names show in the mount"
for n in imgcryptfs.keyring .imgcryptfs.dirid; do
    [ -e "$M/$n" ] && fail "$n is reachable through the mount"
done
[ -e "$B/.imgcryptfs.dirid" ] && [ -e "$B/$NAME_D" ] && fail "backing folder has plaintext names"
[ -n "$(find "$B" -name '.imgcryptfs.long.*')" ] || fail "no long-name file in the backing folder"
limit 30 "$PY" - "$M" "$B" <<'EOF' || fail "bookkeeping names (see above)"
import os, sys
m, b = sys.argv[1], sys.argv[2]
def walk_names(root):
    out = []
    for dp, dn, fn in os.walk(root):
        out += dn + fn
    return out
shown = walk_names(m)
bad = [n for n in shown if n.startswith(".imgcryptfs") or n == "imgcryptfs.keyring"]
if bad:
    sys.exit(f"the mount lists bookkeeping entries: {bad}")
# User files with those very names are allowed and must not touch the real ones.
with open(os.path.join(b, ".imgcryptfs.dirid"), "rb") as f:
    root_id = f.read()
if len(root_id) != 32:
    sys.exit(f"the root folder id file holds {len(root_id)} bytes, not id and tag (32)")
for n in ("imgcryptfs.keyring", ".imgcryptfs.dirid", ".imgcryptfs.long.x"):
    with open(os.path.join(m, n), "w") as f:
        f.write("user data " + n)
for n in ("imgcryptfs.keyring", ".imgcryptfs.dirid", ".imgcryptfs.long.x"):
    with open(os.path.join(m, n)) as f:
        if f.read() != "user data " + n:
            sys.exit(f"user file {n} reads back wrong")
    if n not in os.listdir(m):
        sys.exit(f"user file {n} is not listed")
with open(os.path.join(b, ".imgcryptfs.dirid"), "rb") as f:
    if f.read() != root_id:
        sys.exit("the root folder id was overwritten")
EOF
unmount "$M"
[ "$(sha256sum <"$B/imgcryptfs.keyring")" = "$KEYRING_SUM" ] || fail "the keyring changed"
mount_fs "$B" "$M" "$K"
[ "$(cat "$M/$NAME_D/sub_$NAME_D/deep_$NAME_F")" = "$BODY" ] || fail "files unreadable afterwards"
[ "$(cat "$M/imgcryptfs.keyring")" = "user data imgcryptfs.keyring" ] || fail "user keyring-named file"
unmount "$M"
say "keyring and bookkeeping files stay hidden and untouched"
