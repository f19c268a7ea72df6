# SPDX-License-Identifier: MIT
# One operation through the mount for test_faults.sh; prints "OK" (and, for read, the sha256 of
# what was read) or the errno name the operation failed with, e.g. "EIO". Used, not run by CTest.
#   fault_ops.py append PATH SEED N [SHADOW]  append N bytes made from SEED (and what of them
#                                          the kernel acknowledged to SHADOW); "OK short" when
#                                          a write was short and the rest written by another
#   fault_ops.py append_once PATH SEED N SHADOW  one write(2) of N bytes, no retry of the rest
#   fault_ops.py pwrite PATH SEED N OFF    write N bytes at OFF, inside the file
#   fault_ops.py read PATH                 read it all (the kernel's cached pages dropped)
#   fault_ops.py stat_read PATH            stat it, then read it
#   fault_ops.py truncate PATH SIZE
#   fault_ops.py fsync PATH | fdatasync PATH
#   fault_ops.py fallocate_keep PATH LEN   fallocate(FALLOC_FL_KEEP_SIZE, 0, LEN)
#   fault_ops.py punch PATH OFF LEN [SHADOW]  fallocate(FALLOC_FL_PUNCH_HOLE | KEEP_SIZE); on
#                                          success the same bytes are zeroed in SHADOW
#   fault_ops.py create PATH | mkdir PATH | rename FROM TO | open PATH | list PATH
#   fault_ops.py setxattr PATH NAME VALUE
#   fault_ops.py hold_close PATH SRC CTL RULE [XATTR]
#       create PATH with SRC's bytes (and a user xattr), then put RULE in the control file CTL
#       (a new file renamed over it), then close: the fault is on while the daemon converts.
#   fault_ops.py verify MNT SHADOW
#       every file under SHADOW reads the same under MNT (kernel cache dropped), and both trees
#       hold the same names; prints "OK" or the differences.
#   fault_ops.py appends PATH SEED COUNT N SHADOW
#       COUNT appends of N bytes; what the kernel acknowledges goes to SHADOW too (a write the
#       kernel splits may be short, then fail); prints how many ended how, e.g. "EIO 13 OK 17".
import ctypes
import errno
import hashlib
import os
import sys


def data(seed, n):
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n])


SHORT = []


def write_all(fd, buf, shadow=None):
    """Write buf; each part the kernel acknowledges goes to the shadow file too, so that a
    write that fails after a short one leaves both alike."""
    while buf:
        n = os.write(fd, buf)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        if shadow:
            with open(shadow, "ab") as f:
                f.write(buf[:n])
        if n < len(buf):
            SHORT.append(n)  # reported as such; the rest is written by the next call
        buf = buf[n:]


def set_rule(ctl, rule):
    with open(ctl + ".new", "w") as f:
        f.write(rule + "\n")
    os.rename(ctl + ".new", ctl)


def tree(top):
    names = set()
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            names.add(os.path.relpath(os.path.join(d, n), top))
    return names


def fresh_hash(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        h = hashlib.sha256()
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return h.hexdigest()
            h.update(b)
    finally:
        os.close(fd)


def verify(mnt, shadow):
    bad = []
    ignore = set(os.environ.get("FAULT_IGNORE", "").split())
    want, have = tree(shadow) - ignore, tree(mnt) - ignore
    bad += [f"missing {n}" for n in sorted(want - have)]
    bad += [f"extra {n}" for n in sorted(have - want)]
    for n in sorted(want & have):
        s = os.path.join(shadow, n)
        if os.path.isdir(s):
            continue
        with open(s, "rb") as f:
            expect = hashlib.sha256(f.read()).hexdigest()
        try:
            got = fresh_hash(os.path.join(mnt, n))
        except OSError as e:
            got = errno.errorcode.get(e.errno, str(e.errno))
        if got != expect:
            bad.append(f"differs {n} ({got[:12]})")
    return "OK" if not bad else "; ".join(bad)


def fallocate(path, mode, off, n):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_WRONLY)
    try:
        if libc.fallocate(fd, mode, off, n) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def run(op, a):
    if op == "append":
        fd = os.open(a[0], os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, data(a[1], int(a[2])), a[3] if len(a) > 3 else None)
        finally:
            os.close(fd)
        return "OK short" if SHORT else "OK"
    elif op == "append_once":
        fd = os.open(a[0], os.O_WRONLY | os.O_APPEND)
        try:
            buf = data(a[1], int(a[2]))
            n = os.write(fd, buf)
            with open(a[3], "ab") as f:
                f.write(buf[:n])
        finally:
            os.close(fd)
        return "OK" if n == len(buf) else "OK short"
    elif op == "pwrite":
        fd = os.open(a[0], os.O_WRONLY)
        try:
            os.pwrite(fd, data(a[1], int(a[2])), int(a[3]))
        finally:
            os.close(fd)
    elif op == "read":
        fd = os.open(a[0], os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            h = hashlib.sha256()
            while True:
                b = os.read(fd, 1 << 16)
                if not b:
                    break
                h.update(b)
        finally:
            os.close(fd)
        return "OK " + h.hexdigest()
    elif op == "stat_read":
        os.stat(a[0])  # the size as the kernel is told it, then the bytes
        return run("read", a)
    elif op == "truncate":
        os.truncate(a[0], int(a[1]))
    elif op in ("fsync", "fdatasync"):
        fd = os.open(a[0], os.O_WRONLY | os.O_APPEND)
        try:
            (os.fsync if op == "fsync" else os.fdatasync)(fd)
        finally:
            os.close(fd)
    elif op == "fallocate_keep":
        fallocate(a[0], 1, 0, int(a[1]))  # FALLOC_FL_KEEP_SIZE
    elif op == "punch":
        off, n = int(a[1]), int(a[2])
        fallocate(a[0], 3, off, n)  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if len(a) > 3:
            with open(a[3], "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                if off < size:
                    f.seek(off)
                    f.write(bytes(min(n, size - off)))
    elif op == "create":
        os.close(os.open(a[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif op == "mkdir":
        os.mkdir(a[0])
    elif op == "rename":
        os.rename(a[0], a[1])
    elif op == "list":
        os.listdir(a[0])
    elif op == "open":
        os.close(os.open(a[0], os.O_RDONLY))
    elif op == "setxattr":
        os.setxattr(a[0], a[1], a[2].encode())
    elif op == "hold_close":
        with open(a[1], "rb") as f:
            src = f.read()
        fd = os.open(a[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, src)
            if len(a) > 4:
                os.setxattr(fd, a[4], b"kept")
            set_rule(a[2], a[3])
        finally:
            os.close(fd)
    elif op == "appends":
        counts = {}
        for i in range(int(a[2])):
            buf = data(f"{a[1]}.{i}", int(a[3]))
            try:
                fd = os.open(a[0], os.O_WRONLY | os.O_APPEND)
                try:
                    write_all(fd, buf, a[4])
                finally:
                    os.close(fd)
                counts["OK"] = counts.get("OK", 0) + 1
            except OSError as e:
                k = errno.errorcode.get(e.errno, str(e.errno))
                counts[k] = counts.get(k, 0) + 1
        return " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    elif op == "verify":
        return verify(a[0], a[1])
    else:
        raise SystemExit(f"fault_ops.py: unknown operation {op}")
    return "OK"


def main():
    try:
        print(run(sys.argv[1], sys.argv[2:]))
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))


if __name__ == "__main__":
    main()
