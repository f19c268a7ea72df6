#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# POSIX behaviour of the mount, with exact errno checks (python os.* calls): open flags,
# holes, truncate, fsync, fallocate, rename (plain, across folders, folders with contents,
# over an empty folder, RENAME_NOREPLACE, RENAME_EXCHANGE), open folders that get renamed,
# shared mmap writes, unlink while open, hard links, symlinks, mkdir/rmdir, readdir of 5000
# entries, odd characters in names, chmod/chown, utimens, statfs, user xattrs, fifos,
# access(), st_size, 200- and 255-byte names, symlink targets of 1 to 4095 bytes (the long
# ones renamed, hard-linked, replaced, exchanged, and read again in an rsync copy of the
# backing folder), concurrent creators of one name, and concurrent writers through two handles
# (threads) and two processes. Each check runs on its own; all failures are listed at the end.
# Contents are checked again after a remount, so the page cache cannot hide what the daemon
# stored.
. "$(dirname "$0")/lib.sh"
lib_setup

B=$WORK/backing M=$WORK/mnt K=$WORK/key
make_keyring "$B" "$K"
mount_fs "$B" "$M" "$K"

cat >"$WORK/posix.py" <<'EOF'
import ctypes, errno, json, os, stat, sys, threading, time, traceback

mnt, work = sys.argv[1], sys.argv[2]
phase = sys.argv[3]
EXPECT = os.path.join(work, "expect.json")
failures = []
passed = []
expect = {} if phase == "run" else json.load(open(EXPECT))

def P(*parts):
    return os.path.join(mnt, *parts)

def eq(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r:.200}, want {want!r:.200}")

def raises(what, err, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        if e.errno != err:
            raise AssertionError(f"{what}: errno {errno.errorcode.get(e.errno)}, "
                                 f"want {errno.errorcode[err]}")
        return
    raise AssertionError(f"{what}: no error, want {errno.errorcode[err]}")

def read(path):
    with open(path, "rb") as f:
        return f.read()

def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)

def remember(path, data):
    """Content to check again after the remount."""
    expect[os.path.relpath(path, mnt)] = data.hex()

TESTS = []
def test(fn):
    TESTS.append(fn)
    return fn

@test
def open_flags():
    os.mkdir(P("flags"))
    p = P("flags", "f")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"hello world")
    os.close(fd)
    raises("O_CREAT|O_EXCL on an existing file", errno.EEXIST, os.open, p,
           os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    eq("size after O_TRUNC", os.fstat(fd).st_size, 0)
    os.write(fd, b"abc")
    os.close(fd)
    eq("content after O_TRUNC+write", read(p), b"abc")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"def")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"ghi")  # O_APPEND ignores the seek
    os.close(fd)
    eq("content after O_APPEND", read(p), b"abcdefghi")
    fd = os.open(p, os.O_RDONLY)
    raises("write on O_RDONLY", errno.EBADF, os.write, fd, b"x")
    eq("read on O_RDONLY", os.read(fd, 100), b"abcdefghi")
    os.close(fd)
    fd = os.open(p, os.O_WRONLY)
    raises("read on O_WRONLY", errno.EBADF, os.read, fd, 1)
    os.close(fd)
    raises("open a missing file", errno.ENOENT, os.open, P("flags", "missing"), os.O_RDONLY)
    raises("O_DIRECTORY on a file", errno.ENOTDIR, os.open, p, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(P("flags", "c"), os.O_CREAT | os.O_RDWR, 0o600)  # O_CREAT without O_EXCL
    os.write(fd, b"1")
    os.close(fd)
    fd = os.open(P("flags", "c"), os.O_CREAT | os.O_RDWR, 0o600)  # ... on an existing file
    eq("O_CREAT on an existing file keeps it", os.read(fd, 10), b"1")
    os.close(fd)
    remember(p, b"abcdefghi")

@test
def holes_and_eof():
    p = P("hole")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"end", 10000)
    eq("size after a write past EOF", os.fstat(fd).st_size, 10003)
    eq("hole reads as zeros", os.pread(fd, 10003, 0), bytes(10000) + b"end")
    eq("read at EOF", os.pread(fd, 100, 10003), b"")
    eq("read past EOF", os.pread(fd, 100, 50000), b"")
    os.pwrite(fd, b"far", 3 * 4096 * 10 + 5)
    os.close(fd)
    want = bytes(10000) + b"end" + bytes(3 * 4096 * 10 + 5 - 10003) + b"far"
    eq("file with two holes", read(p), want)
    remember(p, want)

@test
def truncate_up_down():
    p = P("trunc")
    write(p, b"x" * 10000)
    os.truncate(p, 5000)
    eq("size after truncate down", os.stat(p).st_size, 5000)
    os.truncate(p, 12000)
    eq("truncate down then up gives zeros, not the old bytes", read(p),
       b"x" * 5000 + bytes(7000))
    fd = os.open(p, os.O_RDWR)
    os.ftruncate(fd, 4096)
    eq("fstat after ftruncate", os.fstat(fd).st_size, 4096)
    os.ftruncate(fd, 8193)
    eq("content after ftruncate down/up", os.pread(fd, 9000, 0), b"x" * 4096 + bytes(4097))
    os.ftruncate(fd, 0)
    eq("ftruncate to 0", os.pread(fd, 10, 0), b"")
    os.write(fd, b"again")
    os.close(fd)
    eq("write after ftruncate 0", read(p), b"again")
    remember(p, b"again")
    q = P("trunc2")
    write(q, b"y" * 8192)
    os.truncate(q, 4096)     # exactly a block boundary
    os.truncate(q, 4100)
    want = b"y" * 4096 + bytes(4)
    eq("truncate to a block boundary and up", read(q), want)
    remember(q, want)

@test
def fsync_fdatasync():
    p = P("sync")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"s" * 100000)
    os.fsync(fd)
    os.write(fd, b"t")
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)  # fsync of a folder must not fail
    os.close(dfd)
    remember(p, b"s" * 100000 + b"t")

@test
def fallocate():
    p = P("falloc")
    write(p, b"abc")
    fd = os.open(p, os.O_RDWR)
    os.posix_fallocate(fd, 0, 100000)
    eq("posix_fallocate grows the file", os.fstat(fd).st_size, 100000)
    eq("allocated range reads zeros", os.pread(fd, 100000, 0), b"abc" + bytes(99997))
    os.posix_fallocate(fd, 10, 20)  # inside: no change
    eq("posix_fallocate inside the file keeps the size", os.fstat(fd).st_size, 100000)
    os.close(fd)
    remember(p, b"abc" + bytes(99997))

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16

def fallocate_mode(fd, mode, off, n):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, mode, off, n) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

@test
def sparse_files():
    """Growth far past the end stores no zeros; punched and zeroed ranges read as zeros."""
    p = P("sparse")
    head, tail, tib = b"head" * 1000, b"tail", 1 << 40
    write(p, head)
    fd = os.open(p, os.O_RDWR)
    os.ftruncate(fd, tib)
    eq("size after truncate to 1 TiB", os.fstat(fd).st_size, tib)
    os.pwrite(fd, tail, 2 * tib - 4)
    eq("size after a write far past the end", os.fstat(fd).st_size, 2 * tib)
    used = os.fstat(fd).st_blocks * 512
    if used > 1 << 20:
        raise AssertionError(f"a 2 TiB file with 4 KB of data takes {used} bytes")
    eq("inside the hole", os.pread(fd, 65536, tib // 2 + 12345), bytes(65536))
    eq("before the hole", os.pread(fd, len(head), 0), head)
    eq("past the old end", os.pread(fd, 8192, len(head)), bytes(8192))
    eq("the tail", os.pread(fd, 8, 2 * tib - 8), bytes(4) + tail)
    eq("SEEK_HOLE after the data", os.lseek(fd, 0, os.SEEK_HOLE), 4096)
    eq("SEEK_DATA from inside the hole", os.lseek(fd, 8192, os.SEEK_DATA), tib - 4096)
    eq("SEEK_DATA past the old end", os.lseek(fd, tib, os.SEEK_DATA), 2 * tib - 4096)
    eq("SEEK_HOLE in the last block", os.lseek(fd, 2 * tib - 5, os.SEEK_HOLE), 2 * tib)
    raises("SEEK_DATA at the end", errno.ENXIO, os.lseek, fd, 2 * tib, os.SEEK_DATA)
    data = os.urandom(1 << 20)
    at = 3 << 30
    os.pwrite(fd, data, at)
    before = os.fstat(fd).st_blocks
    fallocate_mode(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at + 1000, 600000)
    want = data[:1000] + bytes(600000) + data[601000:]
    eq("punched range", os.pread(fd, len(data), at), want)
    eq("size after the punch", os.fstat(fd).st_size, 2 * tib)
    if os.fstat(fd).st_blocks >= before:
        raise AssertionError("punching 600 KB gave no backing space back")
    fallocate_mode(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, at + 700000, 5000)
    want = want[:700000] + bytes(5000) + want[705000:]
    eq("zeroed range", os.pread(fd, len(data), at), want)
    fallocate_mode(fd, FALLOC_FL_ZERO_RANGE, 2 * tib - 2, 10)
    eq("zero range past the end grows the file", os.fstat(fd).st_size, 2 * tib + 8)
    eq("the new end", os.pread(fd, 20, 2 * tib - 6), bytes(2) + b"ta" + bytes(10))
    os.ftruncate(fd, at + 800000)  # cut inside the data, then grow a little
    os.ftruncate(fd, at + (2 << 20))
    os.close(fd)
    expect["sparse:sparse"] = [at, (want[:800000] + bytes((2 << 20) - 800000)).hex(), head.hex()]
    check_sparse(p, expect["sparse:sparse"])

def check_sparse(p, record):
    at, tail, head = record[0], bytes.fromhex(record[1]), bytes.fromhex(record[2])
    eq("sparse file size", os.stat(p).st_size, at + len(tail))
    with open(p, "rb") as f:
        eq("sparse file head", f.read(len(head)), head)
        f.seek(at - 65536)
        eq("sparse file data after the cut", f.read(), bytes(65536) + tail)

def renameat2(src, dst, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    f = libc.renameat2
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD = -100
    if f(AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2

@test
def renames():
    os.mkdir(P("ren"))
    os.mkdir(P("ren", "a"))
    os.mkdir(P("ren", "b"))
    write(P("ren", "a", "x"), b"X")
    write(P("ren", "a", "y"), b"Y")
    os.rename(P("ren", "a", "x"), P("ren", "a", "y"))  # over an existing file
    eq("rename over: new content", read(P("ren", "a", "y")), b"X")
    eq("rename over: old name gone", os.path.exists(P("ren", "a", "x")), False)
    os.rename(P("ren", "a", "y"), P("ren", "b", "moved"))  # across folders
    eq("rename across folders", read(P("ren", "b", "moved")), b"X")
    eq("listing after move", sorted(os.listdir(P("ren", "a"))), [])
    # A folder with contents, two levels deep, renamed into another folder.
    os.makedirs(P("ren", "tree", "sub", "subsub"))
    write(P("ren", "tree", "f1"), b"1" * 5000)
    write(P("ren", "tree", "sub", "subsub", "f2"), b"2" * 9000)
    os.rename(P("ren", "tree"), P("ren", "b", "tree2"))
    eq("renamed tree: file", read(P("ren", "b", "tree2", "f1")), b"1" * 5000)
    eq("renamed tree: deep file", read(P("ren", "b", "tree2", "sub", "subsub", "f2")), b"2" * 9000)
    eq("renamed tree: listing", sorted(os.listdir(P("ren", "b", "tree2"))), ["f1", "sub"])
    eq("old tree gone", os.path.exists(P("ren", "tree")), False)
    write(P("ren", "b", "tree2", "sub", "new"), b"new")  # create inside the moved tree
    remember(P("ren", "b", "tree2", "sub", "subsub", "f2"), b"2" * 9000)
    remember(P("ren", "b", "tree2", "sub", "new"), b"new")
    raises("rename of a missing file", errno.ENOENT, os.rename, P("ren", "nope"), P("ren", "n2"))
    os.mkdir(P("ren", "d2"))
    os.mkdir(P("ren", "full"))
    write(P("ren", "full", "in"), b"in")
    raises("folder renamed over a non-empty folder", errno.ENOTEMPTY, os.rename,
           P("ren", "d2"), P("ren", "full"))
    raises("folder renamed over a file", errno.ENOTDIR, os.rename, P("ren", "d2"),
           P("ren", "b", "moved"))
    raises("file renamed over a folder", errno.EISDIR, os.rename, P("ren", "b", "moved"),
           P("ren", "d2"))
    raises("folder renamed into itself", errno.EINVAL, os.rename, P("ren", "b"),
           P("ren", "b", "tree2", "inside"))

@test
def rename_folder_over_empty_folder():
    os.mkdir(P("ren2"))
    os.mkdir(P("ren2", "empty"))
    os.mkdir(P("ren2", "d1"))
    write(P("ren2", "d1", "in"), b"in")
    os.rename(P("ren2", "d1"), P("ren2", "empty"))  # POSIX: replaces an empty folder
    eq("folder renamed over an empty folder", read(P("ren2", "empty", "in")), b"in")
    eq("listing", os.listdir(P("ren2")), ["empty"])

@test
def rename_noreplace_exchange():
    os.mkdir(P("ren3"))
    os.mkdir(P("ren3", "dir"))
    write(P("ren3", "dir", "in"), b"in")
    write(P("ren3", "nr1"), b"nr1")
    write(P("ren3", "nr2"), b"nr2")
    raises("RENAME_NOREPLACE onto an existing file", errno.EEXIST, renameat2,
           P("ren3", "nr1"), P("ren3", "nr2"), RENAME_NOREPLACE)
    eq("target untouched after NOREPLACE", read(P("ren3", "nr2")), b"nr2")
    eq("source untouched after NOREPLACE", read(P("ren3", "nr1")), b"nr1")
    renameat2(P("ren3", "nr1"), P("ren3", "nr3"), RENAME_NOREPLACE)
    eq("RENAME_NOREPLACE to a new name", read(P("ren3", "nr3")), b"nr1")
    eq("RENAME_NOREPLACE: old name gone", os.path.exists(P("ren3", "nr1")), False)
    # RENAME_EXCHANGE: two files, then a file and a folder, then across folders.
    renameat2(P("ren3", "nr2"), P("ren3", "nr3"), RENAME_EXCHANGE)
    eq("exchange: first", read(P("ren3", "nr2")), b"nr1")
    eq("exchange: second", read(P("ren3", "nr3")), b"nr2")
    renameat2(P("ren3", "nr2"), P("ren3", "dir"), RENAME_EXCHANGE)
    eq("exchange file/folder: folder side", read(P("ren3", "nr2", "in")), b"in")
    eq("exchange file/folder: file side", read(P("ren3", "dir")), b"nr1")
    renameat2(P("ren3", "nr3"), P("ren3", "nr2", "in"), RENAME_EXCHANGE)
    eq("exchange across folders: in folder", read(P("ren3", "nr2", "in")), b"nr2")
    eq("exchange across folders: top", read(P("ren3", "nr3")), b"in")
    raises("RENAME_EXCHANGE with a missing name", errno.ENOENT, renameat2,
           P("ren3", "nr3"), P("ren3", "missing"), RENAME_EXCHANGE)
    eq("listing", sorted(os.listdir(P("ren3"))), ["dir", "nr2", "nr3"])
    remember(P("ren3", "nr2", "in"), b"nr2")
    remember(P("ren3", "dir"), b"nr1")
    remember(P("ren3", "nr3"), b"in")

@test
def dir_handle_after_rename():
    # An open folder keeps listing its entries when it, or a folder above it, is renamed
    # (glibc's readdir reports ENOENT from getdents as the end of the folder: an empty list).
    os.makedirs(P("dh", "a", "inner"))
    for n in ("x", "y"):
        write(P("dh", "a", "inner", n), n.encode())
    fd = os.open(P("dh", "a", "inner"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        eq("listing before", sorted(os.listdir(fd)), ["x", "y"])
        os.rename(P("dh", "a", "inner"), P("dh", "a", "renamed"))
        eq("open folder after its rename", sorted(os.listdir(fd)), ["x", "y"])
        os.rename(P("dh", "a"), P("dh", "b"))
        eq("open folder after its parent's rename", sorted(os.listdir(fd)), ["x", "y"])
    finally:
        os.close(fd)
    eq("listing by the new path", sorted(os.listdir(P("dh", "b", "renamed"))), ["x", "y"])

@test
def mmap_shared_write():
    import mmap
    p = P("mm")
    write(p, bytes(20000))
    fd = os.open(p, os.O_RDWR)
    m = mmap.mmap(fd, 20000)
    m[100:105] = b"hello"
    m[4094:4099] = b"cross"   # across a block boundary
    m[19990:20000] = b"0123456789"
    m.flush()
    m.close()
    os.close(fd)
    want = bytearray(20000)
    want[100:105] = b"hello"
    want[4094:4099] = b"cross"
    want[19990:20000] = b"0123456789"
    eq("content written through mmap", read(p), bytes(want))
    remember(p, bytes(want))

@test
def odd_names():
    os.mkdir(P("odd"))
    names = ["sp ace", "new\nline", "\u00fcn\u00efc\u00f6d\u00e9 \u65e5\u672c", "tab\t", "back\\slash",
             "\"quote'", "\u00e9" * 127, "-dash", " lead", "trail ", "*?[", "\x01ctl", "...x",
             ".hidden", ".imgcryptfs", "a.b.c"]
    for n in names:
        write(P("odd", n), n.encode())
    eq("odd names listed", sorted(os.listdir(P("odd"))), sorted(names))
    for n in names:
        eq(f"odd name {n!r}", read(P("odd", n)), n.encode())
    expect["listing:odd"] = sorted(names)

@test
def concurrent_create_same_name():
    # 16 threads create the same new file at once and each writes its own 1000 bytes; repeated,
    # since a lost update here showed up in only about 2% of single runs.
    for it in range(60):
        p = P(f"cc{it}")
        errs = []
        def w(t):
            try:
                fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
                os.pwrite(fd, bytes([65 + t]) * 1000, t * 1000)
                os.close(fd)
            except Exception as e:
                errs.append(f"thread {t}: {e}")
        ths = [threading.Thread(target=w, args=(t,)) for t in range(16)]
        for th in ths: th.start()
        for th in ths: th.join()
        if errs:
            raise AssertionError("; ".join(errs))
        want = b"".join(bytes([65 + t]) * 1000 for t in range(16))
        eq(f"concurrently created file (round {it})", read(p), want)
    remember(p, want)

@test
def rename_onto_own_hard_link():
    # rename(a, b) where a and b are links to one file does nothing (POSIX): both names stay,
    # short or long (a long name lives in a hashed entry with a sidecar).
    os.mkdir(P("rl"))
    pairs = [("s1", "s2"), ("A" * 200, "B" * 200), ("C" * 220, "short")]
    for a, b in pairs:
        write(P("rl", a), b"x")
        os.link(P("rl", a), P("rl", b))
        os.rename(P("rl", a), P("rl", b))
    errs = []
    listing = set(os.listdir(P("rl")))
    for a, b in pairs:
        for n in (a, b):
            if n not in listing:
                errs.append(f"{n[:8]}... ({len(n)} bytes) missing from the listing")
            if not os.path.exists(P("rl", n)):
                errs.append(f"{n[:8]}... ({len(n)} bytes) gone")
    if errs:
        raise AssertionError("; ".join(errs))

@test
def unlink_while_open():
    p = P("unlinked")
    write(p, b"before" * 1000)
    fd = os.open(p, os.O_RDWR)
    os.unlink(p)
    errs = []
    def s(what, fn, *a):
        try:
            fn(*a)
        except Exception as e:
            errs.append(f"{what}: {e}")
    s("gone from listing", lambda: eq("listed", "unlinked" in os.listdir(mnt), False))
    s("stat of the name", lambda: eq("exists", os.path.exists(p), False))
    s("read through the fd", lambda: eq("pread", os.pread(fd, 6, 0), b"before"))
    def write_read():
        os.pwrite(fd, b"after", 6000)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        eq("pread", os.pread(fd, 5, 6000), b"after")
    s("write, fsync, read through the fd", write_read)
    s("fstat", lambda: eq("size, nlink", (os.fstat(fd).st_size, os.fstat(fd).st_nlink), (6005, 0)))
    s("ftruncate", os.ftruncate, fd, 7000)
    s("fchmod", os.fchmod, fd, 0o600)
    s("fsetxattr", lambda: os.setxattr(fd, "user.u", b"v"))
    s("close", os.close, fd)
    write(p, b"new file")  # the name is free again
    eq("new file under the old name", read(p), b"new file")
    if errs:
        raise AssertionError("on an unlinked open file: " + "; ".join(errs))

@test
def hard_links():
    a, b = P("hl_a"), P("hl_b")
    write(a, b"shared" * 2000)
    os.link(a, b)
    sa, sb = os.stat(a), os.stat(b)
    eq("same inode", sa.st_ino, sb.st_ino)
    eq("link count", sb.st_nlink, 2)
    with open(b, "r+b") as f:
        f.seek(3)
        f.write(b"XYZ")
    want = b"sha" + b"XYZ" + (b"shared" * 2000)[6:]
    eq("content shared", read(a), want)
    os.unlink(a)
    eq("link count after unlink", os.stat(b).st_nlink, 1)
    eq("other name still reads", read(b), want)
    raises("link onto an existing name", errno.EEXIST, os.link, b, P("hole"))
    remember(b, want)

@test
def symlinks():
    os.mkdir(P("sl"))
    write(P("sl", "target"), b"T")
    os.symlink("target", P("sl", "rel"))
    os.symlink(P("sl", "target"), P("sl", "abs"))
    os.symlink("../nowhere/at/all", P("sl", "dangling"))
    long_target = "d/" * 1000 + "end"
    os.symlink(long_target, P("sl", "long"))
    eq("readlink relative", os.readlink(P("sl", "rel")), "target")
    eq("readlink absolute", os.readlink(P("sl", "abs")), P("sl", "target"))
    eq("readlink dangling", os.readlink(P("sl", "dangling")), "../nowhere/at/all")
    eq("readlink long target", os.readlink(P("sl", "long")), long_target)
    eq("follow relative", read(P("sl", "rel")), b"T")
    eq("follow absolute", read(P("sl", "abs")), b"T")
    eq("dangling exists", os.path.exists(P("sl", "dangling")), False)
    eq("dangling lexists", os.path.lexists(P("sl", "dangling")), True)
    st = os.lstat(P("sl", "rel"))
    eq("lstat is a link", stat.S_ISLNK(st.st_mode), True)
    eq("link st_size is the target length", st.st_size, len("target"))
    eq("long link st_size", os.lstat(P("sl", "long")).st_size, len(long_target))
    raises("readlink of a file", errno.EINVAL, os.readlink, P("sl", "target"))
    raises("symlink onto an existing name", errno.EEXIST, os.symlink, "x", P("sl", "rel"))
    expect["symlink:sl/dangling"] = "../nowhere/at/all"

@test
def long_symlinks():
    # Targets up to 3041 bytes stay in the backing symlink; longer ones, up to 4095 (Linux's
    # limit), go to a sidecar of the backing root, which goes with the link's last name.
    backing = os.path.join(work, "backing")
    def sidecars():
        return {n for n in os.listdir(backing) if n.startswith(".imgcryptfs.link.")}
    def target(n, ch="t"):
        return ((ch + "/") * n)[:n - 1] + "Z"
    os.mkdir(P("ls"))
    os.mkdir(P("ls", "sub"))
    base = sidecars()
    for n in (1, 3041, 3042, 4095):
        os.symlink(target(n), P("ls", f"t{n}"))
        eq(f"readlink of a {n}-byte target", os.readlink(P("ls", f"t{n}")), target(n))
        eq(f"lstat size of a {n}-byte target", os.lstat(P("ls", f"t{n}")).st_size, n)
        expect[f"symlink:ls/t{n}"] = target(n)
    eq("sidecars of the 3042- and 4095-byte targets", len(sidecars() - base), 2)
    raises("a 4096-byte target", errno.ENAMETOOLONG, os.symlink, "x" * 4096, P("ls", "t4096"))
    raises("a long target onto an existing name", errno.EEXIST, os.symlink, target(3500),
           P("ls", "t1"))
    eq("no sidecar left by refused links", len(sidecars() - base), 2)
    eq("sidecars are not listed", [n for n in os.listdir(mnt) if n.startswith(".imgcryptfs")], [])
    # Renamed into another folder, hard-linked, one name unlinked, then the last.
    t, have = target(4000, "m"), sidecars()
    os.symlink(t, P("ls", "a"))
    mine = sidecars() - have
    eq("one sidecar per long link", len(mine), 1)
    os.rename(P("ls", "a"), P("ls", "sub", "b"))
    eq("readlink after a rename into another folder", os.readlink(P("ls", "sub", "b")), t)
    os.link(P("ls", "sub", "b"), P("ls", "c"), follow_symlinks=False)
    eq("nlink of a hard-linked long link", os.lstat(P("ls", "c")).st_nlink, 2)
    eq("readlink through the second name", os.readlink(P("ls", "c")), t)
    eq("lstat size through the second name", os.lstat(P("ls", "c")).st_size, 4000)
    os.unlink(P("ls", "sub", "b"))
    eq("readlink after the other name went", os.readlink(P("ls", "c")), t)
    eq("sidecar kept while one name is left", mine <= sidecars(), True)
    os.unlink(P("ls", "c"))
    eq("sidecar gone with the last name", sidecars() & mine, set())
    os.rmdir(P("ls", "sub"))
    # A descriptor kept past the last name: fstat still works (the sidecar went), also once
    # the kernel's attributes (1 s) are stale and it asks the daemon.
    os.symlink(target(3500, "p"), P("ls", "kept"))
    fd = os.open(P("ls", "kept"), os.O_PATH | os.O_NOFOLLOW)
    os.unlink(P("ls", "kept"))
    time.sleep(1.2)
    try:
        eq("fstat of a long link after its last name went", stat.S_ISLNK(os.fstat(fd).st_mode),
           True)
    finally:
        os.close(fd)
    # A long link replaced by a rename loses its sidecar; exchanged ones keep theirs.
    os.symlink(target(3900, "o"), P("ls", "old"))
    os.symlink(target(3100, "n"), P("ls", "new"))
    n = len(sidecars())
    os.rename(P("ls", "new"), P("ls", "old"))
    eq("readlink of a link renamed over a long one", os.readlink(P("ls", "old")), target(3100, "n"))
    eq("sidecar of the replaced link", len(sidecars()), n - 1)
    os.symlink("short", P("ls", "x"))
    renameat2(P("ls", "old"), P("ls", "x"), RENAME_EXCHANGE)
    eq("readlink after an exchange", (os.readlink(P("ls", "old")), os.readlink(P("ls", "x"))),
       ("short", target(3100, "n")))
    eq("sidecars after an exchange", len(sidecars()), n - 1)
    expect["symlink:ls/x"] = target(3100, "n")
    # Hard links that stay for the remount and the copy of the backing folder.
    os.symlink(target(3333, "h"), P("ls", "h1"))
    os.link(P("ls", "h1"), P("ls", "h2"), follow_symlinks=False)
    expect["symlink:ls/h1"] = expect["symlink:ls/h2"] = target(3333, "h")
    # A file named like a sidecar is an ordinary (sealed) name of the mount.
    side = sorted(sidecars())[0]
    before = read(os.path.join(backing, side))
    write(P(side), b"not a sidecar")
    eq("a file named like a sidecar", read(P(side)), b"not a sidecar")
    eq("the sidecar itself is untouched", read(os.path.join(backing, side)), before)
    os.unlink(P(side))
    eq("the sidecar is still there", side in sidecars(), True)

@test
def dirs():
    os.mkdir(P("d"), 0o755)
    raises("mkdir existing", errno.EEXIST, os.mkdir, P("d"))
    write(P("d", "f"), b"")
    raises("rmdir non-empty", errno.ENOTEMPTY, os.rmdir, P("d"))
    raises("rmdir a file", errno.ENOTDIR, os.rmdir, P("d", "f"))
    raises("unlink a folder", errno.EISDIR, os.unlink, P("d"))
    raises("mkdir in a missing folder", errno.ENOENT, os.mkdir, P("nope", "x"))
    raises("create under a file", errno.ENOTDIR, os.open, P("d", "f", "x"),
           os.O_CREAT | os.O_WRONLY)
    os.unlink(P("d", "f"))
    os.rmdir(P("d"))
    eq("rmdir removed it", os.path.exists(P("d")), False)
    raises("rmdir missing", errno.ENOENT, os.rmdir, P("d"))
    os.mkdir(P("d"))  # again, under the same name
    write(P("d", "g"), b"g")
    eq("recreated folder works", read(P("d", "g")), b"g")
    st = os.stat(P("d"))
    eq("folder is a folder", stat.S_ISDIR(st.st_mode), True)

@test
def readdir_5000():
    os.mkdir(P("many"))
    names = set()
    for i in range(5000):
        n = f"entry-{i:05d}-" + "x" * (i % 40)
        fd = os.open(P("many", n), os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
        names.add(n)
    got = os.listdir(P("many"))
    eq("5000 entries: count", len(got), 5000)
    eq("5000 entries: no duplicates", len(set(got)), 5000)
    eq("5000 entries: exact set", set(got) == names, True)
    with os.scandir(P("many")) as it:
        kinds = {e.name: e.is_file(follow_symlinks=False) for e in it}
    eq("scandir sees files", all(kinds.values()) and len(kinds) == 5000, True)
    expect["listing:many"] = sorted(names)

@test
def chmod_chown():
    p = P("perm")
    write(p, b"p")
    os.chmod(p, 0o640)
    eq("chmod", stat.S_IMODE(os.stat(p).st_mode), 0o640)
    os.chmod(p, 0o4755)
    eq("chmod setuid", stat.S_IMODE(os.stat(p).st_mode), 0o4755)
    os.mkdir(P("permdir"))
    os.chmod(P("permdir"), 0o711)
    eq("chmod folder", stat.S_IMODE(os.stat(P("permdir")).st_mode), 0o711)
    fd = os.open(p, os.O_RDONLY)
    os.fchmod(fd, 0o600)
    os.close(fd)
    eq("fchmod", stat.S_IMODE(os.stat(p).st_mode), 0o600)
    if os.geteuid() == 0:
        os.chown(p, 1000, 1000)
        st = os.stat(p)
        eq("chown uid:gid", (st.st_uid, st.st_gid), (1000, 1000))
        os.chown(p, -1, 1001)
        eq("chown gid only", (os.stat(p).st_uid, os.stat(p).st_gid), (1000, 1001))
        os.symlink("perm", P("permlink"))
        os.lchown(P("permlink"), 1002, 1002)
        eq("lchown on a link", os.lstat(P("permlink")).st_uid, 1002)
        eq("lchown leaves the target", os.stat(p).st_uid, 1000)
    expect["mode:perm"] = 0o600

@test
def utimens():
    p = P("times")
    write(p, b"t")
    at, mt = 1_600_000_000_123_456_789, 1_500_000_000_987_654_321
    os.utime(p, ns=(at, mt))
    st = os.stat(p)
    eq("atime ns", st.st_atime_ns, at)
    eq("mtime ns", st.st_mtime_ns, mt)
    os.mkdir(P("timesdir"))
    os.utime(P("timesdir"), ns=(at, mt))
    eq("folder mtime ns", os.stat(P("timesdir")).st_mtime_ns, mt)
    os.symlink("times", P("timeslink"))
    os.utime(P("timeslink"), ns=(at + 1, mt + 1), follow_symlinks=False)
    eq("link mtime (no follow)", os.lstat(P("timeslink")).st_mtime_ns, mt + 1)
    eq("target untouched", os.stat(p).st_mtime_ns, mt)
    before = time.time()
    os.utime(p)  # now
    eq("utime(now)", abs(os.stat(p).st_mtime - before) < 5, True)
    os.utime(p, ns=(at, mt))
    expect["mtime:times"] = mt

@test
def statfs():
    s = os.statvfs(mnt)
    eq("f_bsize > 0", s.f_bsize > 0, True)
    eq("f_blocks > 0", s.f_blocks > 0, True)
    eq("f_bavail <= f_blocks", s.f_bavail <= s.f_blocks, True)
    eq("f_namemax", s.f_namemax, 255)
    fd = os.open(mnt, os.O_RDONLY)
    os.fstatvfs(fd)
    os.close(fd)

@test
def xattrs():
    p = P("xa")
    write(p, b"x")
    os.setxattr(p, "user.one", b"value 1")
    os.setxattr(p, "user.two", b"")
    os.setxattr(p, "user.bin", bytes(range(256)) * 10)
    eq("getxattr", os.getxattr(p, "user.one"), b"value 1")
    eq("empty value", os.getxattr(p, "user.two"), b"")
    eq("binary value", os.getxattr(p, "user.bin"), bytes(range(256)) * 10)
    eq("listxattr", sorted(x for x in os.listxattr(p) if x.startswith("user.")),
       ["user.bin", "user.one", "user.two"])
    os.setxattr(p, "user.one", b"replaced")
    eq("replaced value", os.getxattr(p, "user.one"), b"replaced")
    raises("XATTR_CREATE on an existing name", errno.EEXIST, os.setxattr, p, "user.one", b"v",
           os.XATTR_CREATE)
    raises("XATTR_REPLACE on a missing name", errno.ENODATA, os.setxattr, p, "user.none", b"v",
           os.XATTR_REPLACE)
    os.removexattr(p, "user.two")
    raises("getxattr of a removed name", errno.ENODATA, os.getxattr, p, "user.two")
    raises("getxattr of a missing name", errno.ENODATA, os.getxattr, p, "user.missing")
    raises("removexattr of a missing name", errno.ENODATA, os.removexattr, p, "user.missing")
    os.mkdir(P("xadir"))
    os.setxattr(P("xadir"), "user.d", b"on a folder")
    eq("xattr on a folder", os.getxattr(P("xadir"), "user.d"), b"on a folder")
    expect["xattr:xa"] = {"user.one": b"replaced".hex(), "user.bin": (bytes(range(256)) * 10).hex()}

@test
def fifo():
    p = P("fifo")
    os.mkfifo(p, 0o644)
    eq("S_ISFIFO", stat.S_ISFIFO(os.stat(p).st_mode), True)
    r = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
    os.write(w, b"through the pipe")
    eq("fifo carries data", os.read(r, 100), b"through the pipe")
    os.close(w)
    os.close(r)
    eq("fifo listed", "fifo" in os.listdir(mnt), True)
    os.unlink(p)

@test
def access():
    p = P("acc")
    write(p, b"a")
    os.chmod(p, 0o644)
    eq("access F_OK", os.access(p, os.F_OK), True)
    eq("access R_OK|W_OK", os.access(p, os.R_OK | os.W_OK), True)
    eq("access X_OK on 0644", os.access(p, os.X_OK), False)
    os.chmod(p, 0o755)
    eq("access X_OK on 0755", os.access(p, os.X_OK), True)
    eq("access on a missing file", os.access(P("acc-missing"), os.F_OK), False)

@test
def st_size_exact():
    os.mkdir(P("sizes"))
    for n in (0, 1, 27, 28, 29, 4067, 4068, 4095, 4096, 4097, 4124, 8192, 12345, 1 << 20):
        write(P("sizes", str(n)), os.urandom(n))
        eq(f"st_size of {n}", os.stat(P("sizes", str(n))).st_size, n)
        with os.scandir(P("sizes")) as it:
            for e in it:
                if e.name == str(n):
                    eq(f"scandir size of {n}", e.stat().st_size, n)
    expect["flag:sizes"] = True

@test
def long_names():
    os.mkdir(P("ln"))
    n150, n200, n255 = "m" * 150, "n" * 199 + "Z", "o" * 254 + "Z"
    for n in (n150, n200, n255):
        write(P("ln", n), n.encode())
        eq(f"read {len(n)}-byte name", read(P("ln", n)), n.encode())
    eq("listing with long names", sorted(os.listdir(P("ln"))), sorted([n150, n200, n255]))
    raises("256-byte name", errno.ENAMETOOLONG, os.open, P("ln", "p" * 256),
           os.O_CREAT | os.O_WRONLY)
    n255b = "q" * 255
    os.rename(P("ln", n200), P("ln", n255b))          # long -> long
    os.rename(P("ln", n255), P("ln", "short"))        # long -> short
    os.rename(P("ln", n150), P("ln", n200))           # short -> long
    eq("listing after renames", sorted(os.listdir(P("ln"))), sorted([n255b, "short", n200]))
    eq("long->long content", read(P("ln", n255b)), n200.encode())
    eq("long->short content", read(P("ln", "short")), n255.encode())
    eq("short->long content", read(P("ln", n200)), n150.encode())
    # A folder with a 255-byte name, files inside; hard link and symlink with long names.
    os.mkdir(P("ln", "D" * 255))
    write(P("ln", "D" * 255, "E" * 255), b"deep")
    os.link(P("ln", "short"), P("ln", "L" * 230))
    os.symlink("short", P("ln", "S" * 240))
    eq("long folder/file", read(P("ln", "D" * 255, "E" * 255)), b"deep")
    eq("long symlink", os.readlink(P("ln", "S" * 240)), "short")
    eq("long hard link", read(P("ln", "L" * 230)), n255.encode())
    ex = P("ln", "X" * 250)
    write(ex, b"x")
    renameat2(ex, P("ln", "short"), RENAME_EXCHANGE)
    eq("exchange long/short: short side", read(P("ln", "short")), b"x")
    eq("exchange long/short: long side", read(ex), n255.encode())
    os.unlink(ex)
    os.unlink(P("ln", "L" * 230))
    os.unlink(P("ln", "S" * 240))
    os.unlink(P("ln", "D" * 255, "E" * 255))
    os.rmdir(P("ln", "D" * 255))
    os.unlink(P("ln", n255b))
    eq("listing after unlinks", sorted(os.listdir(P("ln"))), sorted(["short", n200]))
    expect["listing:ln"] = sorted(["short", n200])

@test
def two_threads_one_file():
    # Two handles, two threads, interleaved unaligned regions: each region is written by
    # exactly one thread, many of them share a 4096-byte block with the other thread's.
    p = P("threads")
    size, chunk = 3 * 1024 * 1024, 1000
    fd0 = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.ftruncate(fd0, size)
    os.close(fd0)
    pat = [bytes([65 + t]) * chunk for t in range(2)]
    errors = []
    def worker(t, direct):
        try:
            flags = os.O_RDWR | (getattr(os, "O_DIRECT", 0) if direct else 0)
            fd = os.open(p, flags)
            for i in range(t, size // chunk, 2):
                os.pwrite(fd, pat[t], i * chunk)
            os.fsync(fd)
            os.close(fd)
        except Exception as e:
            errors.append(f"thread {t}: {e}")
    for direct in (False, True):
        ths = [threading.Thread(target=worker, args=(t, direct)) for t in range(2)]
        for th in ths: th.start()
        for th in ths: th.join()
        if errors:
            raise AssertionError("; ".join(errors))
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        data = os.pread(fd, size + 10, 0)
        os.close(fd)
        want = bytearray(size)
        for i in range(size // chunk):
            want[i * chunk:(i + 1) * chunk] = pat[i % 2]
        if data != want:
            bad = [i for i in range(size // chunk) if data[i * chunk:(i + 1) * chunk] != want[i * chunk:(i + 1) * chunk]]
            raise AssertionError(f"{'O_DIRECT' if direct else 'cached'} writers: {len(bad)} "
                                 f"regions lost, first at {bad[0] * chunk}")
        pat = [bytes([97 + t]) * chunk for t in range(2)]  # second round: new letters
        os.truncate(p, size)
    expect["pattern:threads"] = [size, chunk]

@test
def two_processes():
    p = P("procs")
    size, chunk = 1024 * 1024, 777
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    os.ftruncate(fd, size)
    os.close(fd)
    r0, w0 = os.pipe()
    pids = []
    for t in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(p, os.O_RDWR)
                for i in range(t, size // chunk, 2):
                    os.pwrite(fd, bytes([48 + t]) * chunk, i * chunk)
                os.fsync(fd)
                os.write(w0, b"x")
                # Wait for both, then read the other's data through our own handle.
                while os.fstat(fd).st_size < size:
                    time.sleep(0.01)
                time.sleep(0.2)
                other = 1 - t
                got = os.pread(fd, chunk, other * chunk)
                code = 0 if got == bytes([48 + other]) * chunk else 3
                os.close(fd)
            except BaseException:
                traceback.print_exc()
            os._exit(code)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    eq("child exit statuses", codes, [0, 0])
    data = read(p)
    want = bytearray(size)
    for i in range(size // chunk):
        want[i * chunk:(i + 1) * chunk] = bytes([48 + i % 2]) * chunk
    if data != bytes(want):
        raise AssertionError("two processes: content differs")
    remember(p, bytes(want))

def verify_long_links(when):
    for k, t in expect.items():
        if k.startswith("symlink:ls/"):
            rel = k[len("symlink:"):]
            eq(f"{when}: readlink {rel}", os.readlink(P(rel)), t)
            eq(f"{when}: lstat size of {rel}", os.lstat(P(rel)).st_size, len(t))

def verify_after_remount():
    for rel, hexdata in expect.items():
        if ":" in rel:
            continue
        eq(f"after remount: {rel}", read(P(rel)), bytes.fromhex(hexdata))
    check_sparse(P("sparse"), expect["sparse:sparse"])
    eq("after remount: dangling symlink", os.readlink(P("sl", "dangling")), expect["symlink:sl/dangling"])
    verify_long_links("after remount")
    eq("after remount: 5000 names", sorted(os.listdir(P("many"))), expect["listing:many"])
    eq("after remount: long names", sorted(os.listdir(P("ln"))), expect["listing:ln"])
    eq("after remount: odd names", sorted(os.listdir(P("odd"))), expect["listing:odd"])
    eq("after remount: mode", stat.S_IMODE(os.stat(P("perm")).st_mode), expect["mode:perm"])
    eq("after remount: mtime", os.stat(P("times")).st_mtime_ns, expect["mtime:times"])
    for n, v in expect["xattr:xa"].items():
        eq(f"after remount: xattr {n}", os.getxattr(P("xa"), n), bytes.fromhex(v))
    size, chunk = expect["pattern:threads"]
    data = read(P("threads"))
    want = bytearray(size)
    for i in range(size // chunk):
        want[i * chunk:(i + 1) * chunk] = bytes([97 + i % 2]) * chunk
    eq("after remount: threads file", data == bytes(want), True)

if phase == "run":
    for t in TESTS:
        try:
            t()
            passed.append(t.__name__)
        except Exception as e:
            failures.append(f"{t.__name__}: {e}")
            traceback.print_exc(limit=2, file=sys.stdout)
    with open(EXPECT, "w") as f:
        json.dump(expect, f)
    print(f"passed: {' '.join(passed)}")
elif phase == "copy":
    try:
        verify_long_links("in a copy of the backing folder")
        eq("in a copy: nlink of a hard-linked long link", os.lstat(P("ls", "h2")).st_nlink, 2)
        os.unlink(P("ls", "h1"))
        eq("in a copy: readlink after the other name went", os.readlink(P("ls", "h2")),
           expect["symlink:ls/h2"])
    except Exception as e:
        failures.append(str(e))
else:
    try:
        verify_after_remount()
    except Exception as e:
        failures.append(f"after remount: {e}")
for f in failures:
    print("FAILED:", f)
sys.exit(1 if failures else 0)
EOF

limit 150 "$PY" "$WORK/posix.py" "$M" "$WORK" run || check_fail "POSIX checks (see above)"
unmount "$M"
mount_fs "$B" "$M" "$K"
if [ -f "$WORK/expect.json" ]; then
    limit 60 "$PY" "$WORK/posix.py" "$M" "$WORK" verify || check_fail "POSIX checks after remount"
fi
unmount "$M"

# A copy of the backing folder reads its long symlinks, and hard links of one still share
# their sidecar (rsync -H keeps them hard links; cp -a does too).
C=$WORK/copy
if command -v rsync >/dev/null; then
    rsync -aHX "$B/" "$C/" || check_fail "rsync -aHX of the backing folder"
else
    cp -a "$B/." "$C/" || check_fail "cp -a of the backing folder"
fi
mount_fs "$C" "$WORK/mnt2" "$K"
limit 60 "$PY" "$WORK/posix.py" "$WORK/mnt2" "$WORK" copy ||
    check_fail "long symlinks in a copy of the backing folder"
unmount "$WORK/mnt2"

# The bookkeeping left in the backing folder: every hashed long name has its sidecar and no
# sidecar is orphaned (long names were created, renamed and removed above); every long
# symlink's sidecar is in the root folder, and no sidecar there is without its link; no
# temporary folders; every folder has its id.
limit 30 "$PY" - "$B" <<'EOF2' || check_fail "backing folder bookkeeping (see above)"
import os, sys
bad, marked = [], set()
root = sys.argv[1]
sidecars = {n for n in os.listdir(root) if n.startswith(".imgcryptfs.link.")}
for dp, dn, fn in os.walk(root):
    names = set(dn + fn)
    if ".imgcryptfs.dirid" not in names:
        bad.append(f"{dp}: no .imgcryptfs.dirid")
    for n in names:
        p = os.path.join(dp, n)
        if os.path.islink(p) and os.readlink(p).startswith(".imgcryptfs.ln."):
            marked.add(".imgcryptfs.link." + os.readlink(p)[len(".imgcryptfs.ln."):])
        if n.startswith(".imgcryptfs.tmp."):
            bad.append(f"{dp}/{n}: temporary entry left behind")
        if n.startswith(".imgcryptfs.long."):
            if n.endswith(".name"):
                if n[:-5] not in names:
                    bad.append(f"{dp}/{n}: orphaned long-name sidecar")
            elif n + ".name" not in names:
                bad.append(f"{dp}/{n}: hashed long name without its sidecar")
bad += [f"{n}: sidecar without its symlink" for n in sorted(sidecars - marked)]
bad += [f"{n}: symlink without its sidecar" for n in sorted(marked - sidecars)]
if not marked:
    bad.append("no long symlink found in the backing folder")
for b in bad:
    print("PROBLEM:", b)
sys.exit(1 if bad else 0)
EOF2
lib_finish
