#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Random-operation exerciser: one seeded stream of file operations applied to an imgcryptfs
mount and to a shadow copy (a plain folder on local disk), the two compared after every step.

Operations work on a small fixed set of names (four folders, five names in each) so that they
collide: reads and writes at random offsets and sizes (also past the end), appends, truncates up
and down, every fallocate mode, mmap reads and writes (MAP_SHARED, msync), renames within and
across folders and over existing files, links, unlinks, mkdir/rmdir, fsync, close and reopen
with every open flag, whole-file writes of the real images in tests/data (which the mount
converts into containers after the last close, and turns back into block files on the next
write), reads of the user.imgcryptfs.storage xattr to count those conversions, waits for the
conversion backlog, and remounts (through --remount-cmd, run with every descriptor closed).

After every step the outcome of the operation (bytes, counts, errno) must be the same on both
sides; every name the step touched, and its folder, must have the same type, mode, size and link
count in the mount; and windows around what the step changed (or the whole file, for an image
written) must read the same, with the same user xattrs. Every --full-every steps, after a
remount and at the end, the whole trees, the folder listings and the contents of every file (and
of every open, even unlinked, file) are compared. SIGUSR1 ends a run early, with those final
checks and the summary. On a mismatch it prints the seed, the step and the
tail of the operation log and exits 1. The same --seed and --ops replay the same operations (what
the conversion workers do meanwhile is timing); --ops-out writes them as JSON lines, which
--replay runs again and --shrink cuts down to a short sequence that still fails. --allow NAME
lets a known filesystem bug through and counts it in the summary.

A long run that fails late need not be replayed whole for each try: replay its operations up to
the last remount before the failure (whose full check passed), keep copies of the backing
folder and the shadow, and run the rest with --resume (start from a mount and a shadow that
match). --shrink with --reset-cmd (a command that copies both back and mounts again) then cuts
those operations down.

The trade-off: the shadow is the oracle, so only behaviour a local filesystem shares is checked
(no SEEK_DATA/SEEK_HOLE, timestamps or space use), and fallocate modes the mount refuses with
EOPNOTSUPP are skipped on the shadow and reported, not failed. Operations draw sizes from a
log-uniform spread under --max-size (default 4 MiB) so most files stay small and a step is fast.

Standard library only (ctypes for fallocate and statx). Exit status: 0 clean, 1 mismatch, 2 usage/setup.
"""
import argparse
import collections
import ctypes
import errno
import json
import mmap
import os
import random
import shlex
import signal
import subprocess
import sys
import time

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_MODES = {
    "plain": 0,
    "keep_size": FALLOC_FL_KEEP_SIZE,
    "punch_hole": FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    "zero_range": FALLOC_FL_ZERO_RANGE,
    "zero_range_keep": FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
    "collapse_range": FALLOC_FL_COLLAPSE_RANGE,
    "insert_range": FALLOC_FL_INSERT_RANGE,
}
STORAGE_XATTR = "user.imgcryptfs.storage"
BACKLOG_XATTR = "user.imgcryptfs.backlog"
BLOCK = 4096
PAGE = mmap.PAGESIZE
SLOTS = 8
DIRS = ["", "a", "b", "a/c"]
NAMES = ["f0", "f1", "f2", "i0", "i1"]
IMAGE_NAMES = ["i0", "i1"]
FILES = [os.path.join(d, n) for d in DIRS for n in NAMES]
IMAGE_EXT = (".png", ".pgm", ".dcm")
XATTRS = ["user.x0", "user.x1"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF


def nlink_now(path):
    """The link count from the filesystem itself, past the kernel's attribute cache."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC,
                   STATX_BASIC_STATS, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return int.from_bytes(buf.raw[16:20], "little")


def fallocate(fd, mode, off, length):
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def ename(e):
    return errno.errorcode.get(e, str(e))


class Mismatch(Exception):
    pass


def attempt(fn):
    """('ok', value) or ('err', errno name)."""
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", ename(e.errno))


def unsupported(res):
    return res[0] == "err" and res[1] in ("EOPNOTSUPP", "ENOTSUP")


def show(res):
    kind, v = res
    if kind == "err":
        return v
    if isinstance(v, (bytes, bytearray)):
        return f"{len(v)} bytes"
    return "ok" if v is None else repr(v)


def first_diff(a, b):
    n = min(len(a), len(b))
    lo, hi = 0, n
    # binary search on equal prefixes: the files are up to a few MiB
    while lo < hi:
        mid = (lo + hi) // 2
        if a[lo:mid + 1] == b[lo:mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def readfull(fd, n):
    """n bytes, fewer only at the end of the file."""
    parts, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# ---- generating operations: each is a dict that names everything it does, so a replay of a
# subset (the shrinker) runs the same calls. Choices depend only on the RNG and the shadow.


def loguniform(rng, hi):
    return min(hi, int(2 ** rng.uniform(0, hi.bit_length())))


class Gen:
    def __init__(self, ex, rng):
        self.ex = ex
        self.rng = rng

    def existing(self):
        out = []
        for d in DIRS:
            try:
                out += [os.path.join(d, n) for n in sorted(os.listdir(os.path.join(self.ex.shadow, d)))
                        if n in NAMES]
            except OSError:
                pass
        return out

    def path(self, images_bias=0.3):
        r = self.rng
        if r.random() < 0.6:
            have = self.existing()
            if have:
                return r.choice(have)
        if r.random() < images_bias:
            return os.path.join(r.choice(DIRS), r.choice(IMAGE_NAMES))
        return r.choice(FILES)

    def size_of(self, rel):
        try:
            return os.stat(os.path.join(self.ex.shadow, rel)).st_size
        except OSError:
            return 0

    def slot_size(self, slot):
        h = self.ex.handles.get(slot)
        if not h:
            return 0
        try:
            return os.fstat(h["s"]).st_size
        except OSError:
            return 0

    def off(self, size):
        r, mx = self.rng, self.ex.max_size
        x = r.random()
        if x < 0.45:
            o = r.randrange(0, size + 1)
        elif x < 0.65:
            o = size + r.randint(-2 * BLOCK, 2 * BLOCK)
        elif x < 0.8:
            o = r.randrange(0, 64) * BLOCK + r.randint(-3, 3)
        elif x < 0.97:
            o = loguniform(r, 1 << 20)
        else:
            o = r.randrange(0, mx)
        return max(0, min(o, mx - 1))

    def length(self):
        r = self.rng
        x = r.random()
        if x < 0.15:
            return BLOCK * r.randint(1, 4)
        if x < 0.95:
            return max(1, loguniform(r, 64 << 10))
        return max(1, loguniform(r, 1 << 20))

    def span(self, size):
        o = self.off(size)
        n = min(self.length(), self.ex.max_size - o)
        return o, max(1, n)

    def pool(self, n):
        return self.rng.randrange(0, len(self.ex.pool) - n)

    def slot(self, free=False):
        """A slot with a handle (or, for open, without), most of the time."""
        r = self.rng
        busy = sorted(self.ex.handles)
        pick = [s for s in range(SLOTS) if (s in busy) != free]
        if pick and r.random() < 0.9:
            return r.choice(pick)
        return r.randrange(SLOTS)

    def open_flags(self):
        r = self.rng
        acc = r.choices(["r", "w", "rw"], [2, 1, 5])[0]
        flags = [acc]
        if r.random() < 0.7:
            flags.append("creat")
        if r.random() < 0.08:
            flags.append("excl")
        if r.random() < 0.08:
            flags.append("trunc")
        if r.random() < 0.15:
            flags.append("append")
        return flags

    def make(self, kind):
        r, ex = self.rng, self.ex
        op = {"op": kind}
        if kind == "open":
            op.update(slot=self.slot(free=True), path=self.path(), flags=self.open_flags())
        elif kind == "close":
            op.update(slot=self.slot())
        elif kind in ("pread", "read"):
            s = self.slot()
            op.update(slot=s)
            o, n = self.span(self.slot_size(s))
            if kind == "pread":
                op.update(off=o)
            op.update(len=n)
        elif kind in ("pwrite", "write"):
            s = self.slot()
            op.update(slot=s)
            o, n = self.span(self.slot_size(s))
            if kind == "pwrite":
                op.update(off=o)
            op.update(len=n, pool=self.pool(n))
        elif kind == "lseek":
            s = self.slot()
            whence = r.choice(["set", "cur", "end"])
            op.update(slot=s, whence=whence,
                      off=self.off(self.slot_size(s)) if whence == "set" else r.randint(-BLOCK * 4, BLOCK * 4))
        elif kind == "append":
            p = self.path()
            n = self.length()
            if self.size_of(p) + n > ex.max_size:
                n = 1
            op.update(path=p, len=n, pool=self.pool(n))
        elif kind == "truncate":
            by_slot = r.random() < 0.5
            if by_slot:
                s = self.slot()
                op.update(slot=s)
                cur = self.slot_size(s)
            else:
                p = self.path()
                op.update(path=p)
                cur = self.size_of(p)
            x = r.random()
            if x < 0.15:
                n = 0
            elif x < 0.45:
                n = r.randrange(0, cur + 1)
            elif x < 0.6:
                n = r.randrange(0, 64) * BLOCK + r.randint(-2, 2)
            elif x < 0.9:
                n = cur + loguniform(r, 256 << 10)
            else:
                n = r.randrange(0, ex.max_size)
            op.update(size=max(0, min(n, ex.max_size - 1)))
        elif kind == "fallocate":
            s = self.slot()
            name = r.choice(list(FALLOC_MODES))
            size = self.slot_size(s)
            if name in ("collapse_range", "insert_range") and r.random() < 0.85:
                o = r.randrange(0, max(1, size // BLOCK + 2)) * BLOCK
                n = r.randint(1, 16) * BLOCK
            else:
                o, n = self.span(size)
            if name == "insert_range" and size + n >= ex.max_size:
                n = BLOCK
            op.update(slot=s, mode=name, off=o, len=n)
        elif kind == "mmap":
            p = self.path()
            n = self.length()
            op.update(path=p, write=r.random() < 0.6, at=r.random(), len=n, pool=self.pool(n))
        elif kind == "rename":
            x = r.random()
            if x < 0.85:
                src, dst = self.path(), self.path()
            elif x < 0.95:
                src, dst = r.choice(DIRS[1:]), r.choice(DIRS[1:])
            else:
                src, dst = r.choice(DIRS[1:]), self.path(0)
            op.update(src=src, dst=dst)
        elif kind == "link":
            op.update(src=self.path(), dst=self.path())
        elif kind == "setxattr":
            n = r.choice([1, 10, 100, 3000])
            op.update(path=self.path(), name=r.choice(XATTRS), len=n, pool=self.pool(n))
        elif kind == "removexattr":
            op.update(path=self.path(), name=r.choice(XATTRS))
        elif kind == "chmod":
            op.update(path=self.path(), mode=r.choice([0o600, 0o640, 0o644, 0o755, 0o444]))
        elif kind in ("unlink", "stat", "storage"):
            op.update(path=self.path())
        elif kind in ("mkdir", "rmdir"):
            op.update(path=r.choice(DIRS[1:]))
        elif kind == "fsync":
            op.update(slot=self.slot(), data=r.random() < 0.3)
        elif kind == "image":
            op.update(path=self.path(0.8), src=r.choice(list(ex.images)),
                      chunk=r.choice([4096, 65536, 1 << 20, r.randint(1, 100000)]),
                      via_tmp=r.random() < 0.25)
        return op


# Weights of the operations in a random run.
WEIGHTS = {
    "open": 10, "close": 6, "pread": 10, "read": 4, "pwrite": 12, "write": 4, "lseek": 2,
    "append": 5, "truncate": 6, "fallocate": 6, "mmap": 5, "rename": 5, "link": 3,
    "unlink": 4, "mkdir": 2, "rmdir": 1, "fsync": 3, "stat": 2, "storage": 3, "image": 5,
    "wait_idle": 1, "remount": 0.15, "setxattr": 2, "removexattr": 1, "chmod": 1,
}


class Exerciser:
    def __init__(self, args):
        self.args = args
        self.mnt = os.path.abspath(args.mount)
        self.shadow = os.path.abspath(args.shadow)
        self.max_size = args.max_size
        self.handles = {}  # slot -> {"m": fd, "s": fd, "flags": [...], "path": rel}
        self.log = collections.deque(maxlen=args.tail)
        self.logf = open(args.log, "a") if args.log else None
        self.step = 0
        self.counts = collections.Counter()
        self.known = collections.Counter()  # known filesystem bugs let through by --allow
        self.time = collections.Counter()  # seconds by operation kind, and in the checks
        self.errs = collections.Counter()
        self.falloc = collections.defaultdict(collections.Counter)
        self.storage_seen = {}  # shadow inode -> last storage seen
        self.conversions = 0
        self.back_to_blocks = 0
        self.remounts = 0
        self.full_checks = 0
        # What the step changed, compared after it: path (or slot) -> windows (offset, length)
        # to read on both sides, None for the whole file. The full checks read everything.
        self.touched = collections.defaultdict(list)
        self.check_handles = collections.defaultdict(list)
        self.images = {}
        for name in sorted(os.listdir(args.data)):
            if name.endswith(IMAGE_EXT):
                with open(os.path.join(args.data, name), "rb") as f:
                    self.images[name] = f.read()
        if not self.images:
            raise SystemExit(f"exerciser: no images in {args.data}")
        # Written bytes come from one pool made from the seed: a write that lands in the wrong
        # place shows as a difference, not as equal zeros or equal patterns.
        self.pool = random.Random(args.seed ^ 0x5EED).randbytes(2 << 20)

    # ---- paths and logging

    def m(self, rel):
        return os.path.join(self.mnt, rel)

    def s(self, rel):
        return os.path.join(self.shadow, rel)

    def note(self, text):
        line = f"step {self.step}: {text}"
        self.log.append(line)
        if self.logf:
            self.logf.write(line + "\n")

    def fail(self, what):
        raise Mismatch(what)

    def same(self, what, a, b):
        if a != b:
            self.fail(f"{what}: mount {show(a)}, shadow {show(b)}")

    def both(self, what, fm, fs):
        a, b = attempt(fm), attempt(fs)
        if a[0] == "err" or b[0] == "err":
            self.same(what, a, b)
        return a, b

    # ---- operations

    def close_slot(self, slot):
        h = self.handles.pop(slot, None)
        if h:
            self.check_handles.pop(slot, None)
            a, b = attempt(lambda: os.close(h["m"])), attempt(lambda: os.close(h["s"]))
            self.same(f"close slot {slot}", a, b)

    def close_all(self):
        for slot in list(self.handles):
            self.close_slot(slot)

    def flags_of(self, names):
        acc = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[names[0]]
        extra = {"creat": os.O_CREAT, "excl": os.O_EXCL, "trunc": os.O_TRUNC, "append": os.O_APPEND}
        for n in names[1:]:
            acc |= extra[n]
        return acc | os.O_CLOEXEC

    def handle(self, op):
        h = self.handles.get(op["slot"])
        if h is None:
            self.counts["(no handle)"] += 1
        return h

    def op_open(self, op):
        self.close_slot(op["slot"])
        fl = self.flags_of(op["flags"])
        a, b = self.both("open", lambda: os.open(self.m(op["path"]), fl, 0o644),
                         lambda: os.open(self.s(op["path"]), fl, 0o644))
        if a[0] == "ok" and b[0] == "ok":
            self.handles[op["slot"]] = {"m": a[1], "s": b[1], "flags": op["flags"], "path": op["path"]}
        elif a[0] == "ok":
            os.close(a[1])
        elif b[0] == "ok":
            os.close(b[1])
        self.touched[op["path"]].append((0, BLOCK))
        return a

    def op_close(self, op):
        self.close_slot(op["slot"])
        return ("ok", None)

    def op_pread(self, op):
        h = self.handle(op)
        if not h:
            return None
        if op["op"] == "pread":
            a, b = self.both("pread", lambda: os.pread(h["m"], op["len"], op["off"]),
                             lambda: os.pread(h["s"], op["len"], op["off"]))
        else:
            a, b = self.both("read", lambda: os.read(h["m"], op["len"]),
                             lambda: os.read(h["s"], op["len"]))
        if a != b:
            got, want = a[1], b[1]
            self.fail(f"{op['op']} returns {len(got)} bytes, shadow {len(want)}; first difference "
                      f"at byte {first_diff(got, want)} of the read")
        return a

    op_read = op_pread

    def op_pwrite(self, op):
        h = self.handle(op)
        if not h:
            return None
        data = self.pool[op["pool"]:op["pool"] + op["len"]]
        if op["op"] == "pwrite":
            a, b = self.both("pwrite", lambda: os.pwrite(h["m"], data, op["off"]),
                             lambda: os.pwrite(h["s"], data, op["off"]))
        else:
            a, b = self.both("write", lambda: os.write(h["m"], data), lambda: os.write(h["s"], data))
        self.same(op["op"], a, b)
        if a[0] == "ok":
            # where it went: O_APPEND writes at the end, write() ends at the position
            if op["op"] == "write" or "append" in h["flags"]:
                end = os.lseek(h["s"], 0, os.SEEK_CUR) if op["op"] == "write" else os.fstat(h["s"]).st_size
                off = end - a[1]
            else:
                off = op["off"]
            self.window(self.check_handles[op["slot"]], off, a[1])
        return a

    @staticmethod
    def window(lst, off, n):
        lst.append((max(0, off - BLOCK), n + 2 * BLOCK))

    op_write = op_pwrite

    def op_lseek(self, op):
        h = self.handle(op)
        if not h:
            return None
        if os.path.isdir(f"/proc/self/fd/{h['s']}"):
            # a folder's offsets are cookies of its filesystem (ext4 ends at 2^63): not compared
            return ("ok", "a folder: skipped")
        wh = {"set": os.SEEK_SET, "cur": os.SEEK_CUR, "end": os.SEEK_END}[op["whence"]]
        a, b = self.both("lseek", lambda: os.lseek(h["m"], op["off"], wh),
                         lambda: os.lseek(h["s"], op["off"], wh))
        self.same("lseek", a, b)
        return a

    def op_append(self, op):
        data = self.pool[op["pool"]:op["pool"] + op["len"]]
        fl = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC

        def run(path):
            fd = os.open(path, fl)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)

        a, b = self.both("append", lambda: run(self.m(op["path"])), lambda: run(self.s(op["path"])))
        self.same("append", a, b)
        if a[0] == "ok":
            self.window(self.touched[op["path"]], os.stat(self.s(op["path"])).st_size - a[1], a[1])
        return a

    def op_truncate(self, op):
        if "slot" in op:
            h = self.handle(op)
            if not h:
                return None
            old = os.fstat(h["s"]).st_size
            a, b = self.both("ftruncate", lambda: os.ftruncate(h["m"], op["size"]),
                             lambda: os.ftruncate(h["s"], op["size"]))
            where = self.check_handles[op["slot"]]
        else:
            old = self.ssize(op["path"])
            a, b = self.both("truncate", lambda: os.truncate(self.m(op["path"]), op["size"]),
                             lambda: os.truncate(self.s(op["path"]), op["size"]))
            where = self.touched[op["path"]]
        # around the old end and the new one (the zeros between: the full checks)
        self.window(where, old, 0)
        self.window(where, op["size"], 0)
        return a

    def ssize(self, rel):
        try:
            return os.stat(self.s(rel)).st_size
        except OSError:
            return 0

    def op_fallocate(self, op):
        h = self.handle(op)
        if not h:
            return None
        mode, name = FALLOC_MODES[op["mode"]], op["mode"]
        a = attempt(lambda: fallocate(h["m"], mode, op["off"], op["len"]))
        if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE):
            self.check_handles[op["slot"]].append(None)
        else:
            self.window(self.check_handles[op["slot"]], op["off"], min(op["len"], 1 << 20))
        if unsupported(a):
            # Not supported by the mount: the shadow skips it (and the check after the step
            # shows if the mount changed the file all the same).
            self.falloc[name]["EOPNOTSUPP"] += 1
            return a
        b = attempt(lambda: fallocate(h["s"], mode, op["off"], op["len"]))
        if unsupported(b) and a[0] == "ok":
            b = attempt(lambda: self.emulate_falloc(h["s"], mode, op["off"], op["len"]))
        self.same(f"fallocate {name}", a, b)
        self.falloc[name]["ok" if a[0] == "ok" else a[1]] += 1
        return a

    @staticmethod
    def emulate_falloc(fd, mode, off, n):
        """The effect of a mode the shadow's filesystem lacks (e.g. tmpfs and collapse)."""
        size = os.fstat(fd).st_size
        if mode & FALLOC_FL_PUNCH_HOLE or mode & FALLOC_FL_ZERO_RANGE:
            end = off + n
            lim = min(end, size) if mode & FALLOC_FL_KEEP_SIZE else end
            if lim > off:
                os.pwrite(fd, bytes(lim - off), off)
            return None
        if off % BLOCK or n % BLOCK:
            raise OSError(errno.EINVAL, "unaligned")
        data = os.pread(fd, size, 0) if size else b""
        if mode & FALLOC_FL_COLLAPSE_RANGE:
            if off + n >= size:
                raise OSError(errno.EINVAL, "past the end")
            data = data[:off] + data[off + n:]
        else:
            if off >= size:
                raise OSError(errno.EINVAL, "past the end")
            data = data[:off] + bytes(n) + data[off:]
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return None

    def op_mmap(self, op):
        rel = op["path"]
        fl = os.O_RDWR | os.O_CLOEXEC
        a, b = self.both("open for mmap", lambda: os.open(self.m(rel), fl), lambda: os.open(self.s(rel), fl))
        if a[0] != "ok":
            return a
        fm, fs = a[1], b[1]
        try:
            size = os.fstat(fs).st_size
            self.same("fstat size before mmap", ("ok", os.fstat(fm).st_size), ("ok", size))
            if size == 0:
                return ("ok", "empty")
            start = min(int(op["at"] * size), size - 1)
            n = min(op["len"], size - start)
            base = start - start % PAGE
            mp = mmap.mmap(fm, n + (start - base), flags=mmap.MAP_SHARED,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
            try:
                lo = start - base
                if op["write"]:
                    data = self.pool[op["pool"]:op["pool"] + n]
                    mp[lo:lo + n] = data
                    mp.flush()  # msync(MS_SYNC)
                    os.pwrite(fs, data, start)
                    self.window(self.touched[rel], start, n)
                    res = ("ok", f"wrote {n} at {start}")
                else:
                    got, want = mp[lo:lo + n], os.pread(fs, n, start)
                    if got != want:
                        self.fail(f"mmap read of {n} bytes at {start}: first difference at byte "
                                  f"{first_diff(got, want)}")
                    res = ("ok", f"read {n} at {start}")
            finally:
                mp.close()
            return res
        finally:
            os.close(fm)
            os.close(fs)

    def busy_dir(self, what, fm, fs):
        """Like both(), with --allow rmdir-busy: ENOTEMPTY from the mount alone (a conversion's
        temporary file in the folder) is tried again when idle."""
        a, b = attempt(fm), attempt(fs)
        if a == ("err", "ENOTEMPTY") and b[0] == "ok" and "rmdir-busy" in self.args.allow:
            self.wait_idle()
            a = attempt(fm)
            if a[0] == "ok":
                self.known["ENOTEMPTY from an empty folder while a conversion runs"] += 1
        if a[0] == "err" or b[0] == "err":
            self.same(what, a, b)
        return a, b

    def op_rename(self, op):
        a, b = self.busy_dir("rename", lambda: os.rename(self.m(op["src"]), self.m(op["dst"])),
                             lambda: os.rename(self.s(op["src"]), self.s(op["dst"])))
        self.touched[op["dst"]].append((0, BLOCK))
        return a

    def op_link(self, op):
        a, b = self.both("link", lambda: os.link(self.m(op["src"]), self.m(op["dst"])),
                         lambda: os.link(self.s(op["src"]), self.s(op["dst"])))
        self.touched[op["dst"]].append((0, BLOCK))
        return a

    def op_unlink(self, op):
        a, b = self.both("unlink", lambda: os.unlink(self.m(op["path"])), lambda: os.unlink(self.s(op["path"])))
        return a

    def op_mkdir(self, op):
        a, b = self.both("mkdir", lambda: os.mkdir(self.m(op["path"]), 0o755),
                         lambda: os.mkdir(self.s(op["path"]), 0o755))
        return a

    def op_rmdir(self, op):
        a, b = self.busy_dir("rmdir", lambda: os.rmdir(self.m(op["path"])),
                             lambda: os.rmdir(self.s(op["path"])))
        return a

    def op_fsync(self, op):
        h = self.handle(op)
        if not h:
            return None
        f = os.fdatasync if op["data"] else os.fsync
        a, b = self.both("fsync", lambda: f(h["m"]), lambda: f(h["s"]))
        return a

    def op_setxattr(self, op):
        v = self.pool[op["pool"]:op["pool"] + op["len"]]
        a, b = self.both("setxattr", lambda: os.setxattr(self.m(op["path"]), op["name"], v),
                         lambda: os.setxattr(self.s(op["path"]), op["name"], v))
        self.touched[op["path"]].append((0, 0))
        return a

    def op_removexattr(self, op):
        a, b = self.both("removexattr", lambda: os.removexattr(self.m(op["path"]), op["name"]),
                         lambda: os.removexattr(self.s(op["path"]), op["name"]))
        self.touched[op["path"]].append((0, 0))
        return a

    def op_chmod(self, op):
        a, b = self.both("chmod", lambda: os.chmod(self.m(op["path"]), op["mode"]),
                         lambda: os.chmod(self.s(op["path"]), op["mode"]))
        return a

    def xattrs(self, path):
        """The user xattrs (imgcryptfs' own are not listed) with their values."""
        out = {}
        for k in sorted(os.listxattr(path)):
            if k.startswith("user."):
                try:
                    out[k] = os.getxattr(path, k)
                except OSError as e:
                    # listed, then gone: it is compared as absent (the shadow says if it may be)
                    if e.errno != errno.ENODATA:
                        raise
        return out

    def op_stat(self, op):
        a, b = self.both("stat", lambda: self.meta(self.m(op["path"])), lambda: self.meta(self.s(op["path"])))
        self.same("stat", a, b)
        return a

    def op_image(self, op):
        data = self.images[op["src"]]
        rel = op["path"]
        target = rel + ".tmp" if op["via_tmp"] else rel
        fl = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

        def run(root):
            fd = os.open(os.path.join(root, target), fl, 0o644)
            try:
                k = op["chunk"]
                for i in range(0, len(data), k):
                    os.write(fd, data[i:i + k])
            finally:
                os.close(fd)
            if op["via_tmp"]:
                os.rename(os.path.join(root, target), os.path.join(root, rel))

        a, b = self.both("image write", lambda: run(self.mnt), lambda: run(self.shadow))
        if a[0] == "err":
            for root in (self.mnt, self.shadow):  # a failed rename leaves the temporary file
                try:
                    os.unlink(os.path.join(root, target))
                except OSError:
                    pass
        self.touched[rel].append(None)
        return a

    def storage_of(self, rel):
        """The storage xattr of a file, counted as a conversion when it first reads as an image."""
        try:
            st = os.lstat(self.s(rel))
        except OSError:
            return None
        try:
            v = os.getxattr(self.m(rel), STORAGE_XATTR).decode()
        except OSError as e:
            if not os.path.isfile(self.s(rel)):
                return ename(e.errno)
            self.fail(f"getxattr {STORAGE_XATTR} of {rel}: {ename(e.errno)}")
        key = st.st_ino
        last = self.storage_seen.get(key)
        kind = v.split(" ")[0]
        if kind == "image" and last != "image":
            self.conversions += 1
        if kind == "blocks" and last == "image":
            self.back_to_blocks += 1
        if kind in ("image", "blocks"):
            self.storage_seen[key] = kind
        if kind == "image":
            # Hard links are never stored as images (images-spec): link() first turns it back.
            nl = os.lstat(self.m(rel)).st_nlink
            if nl > 1:
                self.fail(f"{rel} has {nl} links but is stored as '{v}'")
        return v

    def op_storage(self, op):
        return ("ok", self.storage_of(op["path"]))

    def wait_idle(self):
        deadline = time.monotonic() + self.args.idle_timeout
        while True:
            try:
                b = os.getxattr(self.mnt, BACKLOG_XATTR).decode()
            except OSError as e:
                if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):
                    return "no backlog xattr"
                raise
            if b == "0":
                return b
            if time.monotonic() > deadline:
                self.fail(f"conversion backlog still {b} after {self.args.idle_timeout} s")
            time.sleep(0.02)

    def op_wait_idle(self, op):
        self.wait_idle()
        for rel in self.tree(self.shadow):
            if os.path.isfile(self.s(rel)):
                self.storage_of(rel)
        return ("ok", None)

    def op_remount(self, op):
        self.close_all()
        if not self.args.remount_cmd:
            return ("ok", "closed all (no --remount-cmd)")
        r = subprocess.run(self.args.remount_cmd, shell=True)
        if r.returncode != 0:
            self.fail(f"remount command exited with {r.returncode}")
        self.remounts += 1
        self.full_check("after a remount")
        return ("ok", "remounted")

    # ---- checks

    @staticmethod
    def meta(path):
        st = os.lstat(path)
        if os.path.isdir(path) and not os.path.islink(path):
            return ("dir", st.st_mode & 0o7777)
        return ("file", st.st_mode & 0o7777, st.st_size, st.st_nlink)

    def tree(self, root):
        out = {}
        stack = [""]
        while stack:
            d = stack.pop()
            with os.scandir(os.path.join(root, d)) as it:
                for e in it:
                    rel = os.path.join(d, e.name)
                    out[rel] = self.meta(e.path)
                    if out[rel][0] == "dir":
                        stack.append(rel)
        return out

    def compare_contents(self, what, pm, ps, windows=(None,)):
        """Whole files (a window None) or windows (offset, length) of them, read afresh."""
        fm = os.open(pm, os.O_RDONLY | os.O_CLOEXEC)
        fs = os.open(ps, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if None in windows:  # the whole file, 1 MiB at a time (a join of MiBs is slow)
                off = 0
                while True:
                    try:
                        got = readfull(fm, 1 << 20)
                    except OSError as e:
                        self.fail(f"{what}: reading at {off} fails with {ename(e.errno)}")
                    want = readfull(fs, 1 << 20)
                    if got != want:
                        self.fail(f"{what}: {len(got)} bytes at {off}, shadow {len(want)}; "
                                  f"first difference at byte {off + first_diff(got, want)}")
                    if not got:
                        return
                    off += len(got)
            for off, n in windows:
                try:
                    got = os.pread(fm, n, off)
                except OSError as e:
                    self.fail(f"{what}: reading {n} bytes at {off} fails with {ename(e.errno)}")
                want = os.pread(fs, n, off)
                if got != want:
                    self.fail(f"{what}: {len(got)} bytes at {off}, shadow {len(want)}; first "
                              f"difference at byte {off + first_diff(got, want)}")
        finally:
            os.close(fm)
            os.close(fs)

    def check(self, full=False, why=""):
        """Every step: each name the step touched (and its folder) has the same type, mode,
        size and link count in the mount as in the shadow, or is absent from both, and the
        windows it wrote read the same; with full (every --full-every steps), the whole trees
        and listings are equal and every file is read. (Checking every name at every step
        cost an lstat through FUSE per name and step: the rate fell with the tree's size.)"""
        if full:
            ts = self.tree(self.shadow)
            try:
                tm = self.tree(self.mnt)
            except OSError as e:
                self.fail(f"listing the mount fails with {ename(e.errno)}")
        else:
            names = set(self.touched)
            names |= {os.path.dirname(r) for r in names if os.path.dirname(r)}
            ts, tm = {}, {}
            for rel in names:
                try:
                    ts[rel] = self.meta(self.s(rel))
                except FileNotFoundError:
                    pass
                try:
                    tm[rel] = self.meta(self.m(rel))
                except FileNotFoundError:
                    pass
                except OSError as e:
                    self.fail(f"lstat of {rel} in the mount fails with {ename(e.errno)}")
        if tm != ts and "nlink0" in self.args.allow:
            self.forgive_nlink0(tm, ts)
        if tm != ts and "meta-lost" in self.args.allow:
            self.forgive_mode(tm, ts)
        if tm != ts:
            diffs = []
            for k in sorted(set(tm) | set(ts)):
                if tm.get(k) != ts.get(k):
                    diffs.append(f"{k}: mount {tm.get(k)}, shadow {ts.get(k)}")
            self.fail("trees differ " + (why and f"({why}) ") + "; ".join(diffs[:8]))
        names = ts if full else [r for r in self.touched if r in ts]
        for rel in names:
            if ts[rel][0] == "file":
                self.compare_contents(f"contents of {rel}" + (f" ({why})" if why else ""),
                                      self.m(rel), self.s(rel), (None,) if full else self.touched[rel])
                try:
                    xm = self.xattrs(self.m(rel))
                except OSError as e:
                    self.fail(f"xattrs of {rel}: {ename(e.errno)}")
                xs = self.xattrs(self.s(rel))
                if xm != xs and "meta-lost" in self.args.allow:
                    self.known["xattrs set during a conversion lost"] += 1
                    for k in set(xm) - set(xs):
                        os.removexattr(self.m(rel), k)
                    for k, v in xs.items():
                        if xm.get(k) != v:
                            os.setxattr(self.m(rel), k, v)
                    xm = self.xattrs(self.m(rel))
                if xm != xs:
                    self.fail(f"xattrs of {rel}" + (f" ({why})" if why else "") +
                              f": mount {sorted((k, len(v)) for k, v in xm.items())}, "
                              f"shadow {sorted((k, len(v)) for k, v in xs.items())}")
        slots = self.handles if full else self.check_handles
        for slot in list(slots):
            h = self.handles.get(slot)
            if not h or os.path.isdir(f"/proc/self/fd/{h['s']}"):
                continue
            a, b = os.fstat(h["m"]), os.fstat(h["s"])
            if a.st_size != b.st_size:
                self.fail(f"fstat of slot {slot} ({h['path']} when opened): size {a.st_size}, "
                          f"shadow {b.st_size}")
            # through /proc: the file the descriptor holds, even renamed or unlinked
            self.compare_contents(f"contents of the file open in slot {slot}",
                                  f"/proc/self/fd/{h['m']}", f"/proc/self/fd/{h['s']}",
                                  (None,) if full else self.check_handles[slot])
        self.touched.clear()
        self.check_handles.clear()
        if full:
            self.full_checks += 1

    def forgive_nlink0(self, tm, ts):
        """--allow nlink0: a file that stats with no links right after a conversion swapped its
        backing file is counted, and asked again past the cache."""
        for rel, want in ts.items():
            got = tm.get(rel)
            if got and got[0] == "file" and got[3] == 0 and got[:3] == want[:3]:
                time.sleep(0.01)
                try:
                    n = nlink_now(self.m(rel))
                except OSError:
                    continue
                if n == want[3]:
                    tm[rel] = want
                    self.known["stat showed st_nlink 0 for a moment"] += 1

    def forgive_mode(self, tm, ts):
        """--allow meta-lost: a mode changed while a conversion ran comes back old: set again
        on the mount, and counted."""
        for rel, want in ts.items():
            got = tm.get(rel)
            if got and got[0] == "file" and got[1] != want[1] and got[2:] == want[2:]:
                os.chmod(self.m(rel), want[1])
                tm[rel] = self.meta(self.m(rel))
                self.known["mode set during a conversion lost"] += 1

    def full_check(self, why):
        self.check(full=True, why=why)

    # ---- running

    def run_op(self, op):
        kind = op["op"]
        self.counts[kind] += 1
        fn = getattr(self, "op_" + kind)
        args = " ".join(f"{k}={v}" for k, v in op.items() if k not in ("op", "pool"))
        try:
            res = fn(op)
        except Mismatch:
            self.note(f"{kind} {args} -> MISMATCH")
            raise
        if res is not None and res[0] == "err":
            self.errs[kind] += 1
        self.note(f"{kind} {args} -> {'(no handle)' if res is None else show(res)}")

    def drop_handles(self):
        for h in self.handles.values():
            for fd in (h["m"], h["s"]):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.handles.clear()
        self.check_handles.clear()

    def clean(self):
        """Empty the mount and the shadow (for --clean and each attempt of --shrink), or with
        --reset-cmd put both back to the state the operations start from."""
        self.drop_handles()
        self.storage_seen.clear()
        if self.args.reset_cmd:
            r = subprocess.run(self.args.reset_cmd, shell=True)
            if r.returncode != 0:
                raise OSError(errno.EIO, f"reset command exited with {r.returncode}")
            return
        for root in (self.mnt, self.shadow):
            for d, dirs, files in os.walk(root, topdown=False):
                for f in files:
                    os.unlink(os.path.join(d, f))
                for x in dirs:
                    os.rmdir(os.path.join(d, x))

    def run(self, ops, full_every):
        for op in ops:
            self.step += 1
            t0 = time.monotonic()
            self.run_op(op)
            t1 = time.monotonic()
            for k in ("path", "src", "dst"):  # checked after the step, even if nothing was written
                if isinstance(op.get(k), str) and op[k]:
                    self.touched[op[k]]  # noqa: B018 (defaultdict: adds the name)
            full = full_every > 0 and self.step % full_every == 0
            self.check(full=full, why=f"every {full_every} steps" if full else "")
            self.time[op["op"]] += t1 - t0
            self.time["(checks)"] += time.monotonic() - t1
        self.close_all()
        self.wait_idle()
        self.op_wait_idle(None)
        self.full_check("at the end")

    def summary(self, elapsed):
        n = self.step
        print(f"exerciser: seed {self.args.seed}: {n} operations in {elapsed:.1f} s "
              f"({n / max(elapsed, 1e-9):.0f} ops/s), {self.full_checks} full checks")
        print("  operations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
        top = self.time.most_common(6)
        print("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in top))
        print("  failing as on the shadow: " + (", ".join(f"{k} {v}" for k, v in sorted(self.errs.items())) or "none"))
        fa = []
        for name in FALLOC_MODES:
            c = self.falloc.get(name)
            if c:
                sup = ("supported" if c.get("ok") else
                       "not supported" if c.get("EOPNOTSUPP") or c.get("ENOTSUP") else "not reached")
                fa.append(f"{name} {sup} (" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")")
        print("  fallocate: " + ("; ".join(fa) or "not run"))
        if self.known:
            print("  KNOWN BUGS let through (--allow): " +
                  ", ".join(f"{k}: {v} times" for k, v in sorted(self.known.items())))
        print(f"  conversions seen: {self.conversions} into containers, {self.back_to_blocks} back "
              f"to block files; remounts: {self.remounts}")


def generate(ex, rng, nops):
    """Make and run operations one at a time (a generated op may depend on the shadow)."""
    g = Gen(ex, rng)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    for d in DIRS[1:]:
        if nops > 0:
            nops -= 1
            yield {"op": "mkdir", "path": d}
    for _ in range(nops):
        kind = rng.choices(kinds, weights)[0]
        yield g.make(kind)


def shrink(ex, ops, full_every):
    """Cut a failing operation list down (chunks removed while it still fails)."""
    def fails(seq):
        ex.clean()
        ex.step = 0
        try:
            ex.run(seq, full_every)
        except Mismatch as e:
            return str(e)
        except OSError as e:
            return f"exerciser error {e}"
        return None

    first = fails(ops)
    if not first:
        print("exerciser: the operations do not fail now")
        return ops, None
    # the failing step is the last one that matters
    ops = ops[:ex.step]
    last = first
    n = 2
    while len(ops) >= 2:
        chunk = max(1, len(ops) // n)
        removed = False
        for i in range(0, len(ops), chunk):
            cand = ops[:i] + ops[i + chunk:]
            msg = fails(cand)
            if msg:
                ops, last, removed = cand[:ex.step], msg, True
                n = max(n - 1, 2)
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(ops), n * 2)
    return ops, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mount", required=True, help="the imgcryptfs mount point (empty)")
    ap.add_argument("--shadow", required=True, help="a plain folder on local disk (empty)")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"),
                    help="folder of the images written whole (*.png, *.pgm, *.dcm)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: from the clock, logged)")
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=0,
                    help="start no operation after this many seconds (0: no limit); the final "
                         "checks and the summary follow as after the last operation")
    ap.add_argument("--full-every", type=int, default=25,
                    help="compare every file's contents every N steps (1: every step)")
    ap.add_argument("--max-size", type=int, default=4 << 20, help="bound of file sizes")
    ap.add_argument("--remount-cmd", default="",
                    help="shell command that unmounts and mounts the mount point again")
    ap.add_argument("--remount-weight", type=float, default=None)
    ap.add_argument("--idle-timeout", type=float, default=120)
    ap.add_argument("--log", help="append every operation to this file")
    ap.add_argument("--tail", type=int, default=40, help="operations shown on a mismatch")
    ap.add_argument("--progress", type=int, default=10000,
                    help="print a line every N operations (0: never)")
    ap.add_argument("--ops-out", help="write the operations run as JSON lines here")
    ap.add_argument("--replay", help="run the operations of this JSON-lines file instead")
    ap.add_argument("--shrink", action="store_true", help="with --replay: cut to a short failing list")
    ap.add_argument("--allow", action="append", default=[], choices=["nlink0", "rmdir-busy", "meta-lost"],
                    help="let a known filesystem bug through, counted in the summary")
    ap.add_argument("--clean", action="store_true", help="empty the mount and the shadow first")
    ap.add_argument("--resume", action="store_true",
                    help="start from the mount and the shadow as they are (they must match, "
                         "e.g. copies kept after a full check of a long run)")
    ap.add_argument("--reset-cmd", default="",
                    help="with --shrink: a shell command that puts the mount and the shadow back "
                         "to the state the operations start from, instead of emptying both")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    if args.remount_weight is not None:
        WEIGHTS["remount"] = args.remount_weight
    what = f"operations of {args.replay}" if args.replay else f"seed {args.seed}, {args.ops} operations"
    print(f"exerciser: {what}, mount {args.mount}, shadow {args.shadow}", flush=True)
    ex = Exerciser(args)
    if args.clean:
        ex.clean()
    elif not args.resume and (os.listdir(ex.mnt) or os.listdir(ex.shadow)):
        print("exerciser: the mount and the shadow must be empty (or use --clean)", file=sys.stderr)
        return 2
    if args.resume:
        try:
            ex.full_check("at the start (--resume)")
        except Mismatch as e:
            print(f"exerciser: the mount and the shadow differ at the start: {e}", file=sys.stderr)
            return 2
    replay = None
    if args.replay:
        with open(args.replay) as f:
            replay = [json.loads(x) for x in f if x.strip()]
    if args.shrink:
        if not replay:
            print("exerciser: --shrink needs --replay", file=sys.stderr)
            return 2
        ops, msg = shrink(ex, replay, args.full_every)
        ex.clean()
        if not msg:
            return 0
        print(f"exerciser: {len(ops)} operation(s) still fail: {msg}")
        for op in ops:
            print(json.dumps(op))
        return 1 if msg else 0
    outf = open(args.ops_out, "w") if args.ops_out else None
    ran = []
    # SIGUSR1 ends a long run early as --seconds does: no new operation, the final checks, the
    # summary, and the verdict on what ran.
    stop = []
    signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))

    def source():
        it = iter(replay) if replay is not None else generate(ex, random.Random(args.seed), args.ops)
        for op in it:
            if args.seconds and time.monotonic() - t0 > args.seconds:
                print(f"exerciser: {args.seconds:.0f} s are up after {ex.step} operations")
                break
            if stop:
                print(f"exerciser: asked to stop (SIGUSR1) after {ex.step} operations")
                break
            if outf:
                outf.write(json.dumps(op) + "\n")
                outf.flush()
            ran.append(op)
            if args.progress and len(ran) % args.progress == 0:
                el = time.monotonic() - t0
                print(f"exerciser: {len(ran)} operations in {el:.0f} s ({len(ran) / el:.0f}/s)", flush=True)
            yield op

    t0 = time.monotonic()
    try:
        ex.run(source(), args.full_every)
    except Mismatch as e:
        print(f"MISMATCH at step {ex.step} (seed {args.seed}): {e}", file=sys.stderr)
        print(f"replay: {shlex.quote(sys.argv[0])} --seed {args.seed} --ops {ex.step} ...", file=sys.stderr)
        print(f"--- the last {len(ex.log)} operations:", file=sys.stderr)
        for line in ex.log:
            print("  " + line, file=sys.stderr)
        ex.summary(time.monotonic() - t0)
        return 1
    finally:
        if outf:
            outf.close()
        if ex.logf:
            ex.logf.close()
    ex.summary(time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
