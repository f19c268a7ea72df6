#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The in-process parts of bench_mount_images.sh: the image sets, and the timings that a shell
would blur (reads of one file, the backlog poll, zlib on the same rows).

  gen --kind png|dcm --out DIR --n N [--series S]
      N images of 512x512 cut from the brain MRI volumes of mricron-data: 8-bit PNG written by
      Pillow (ch2, ch2better) or 16-bit native DICOM (inia19-t1-brain, values x10: a 12-bit
      range) on the header of pydicom's MR_small.dcm. The first S files (sorted by name) are one
      series: consecutive slices of one volume along one axis; the rest are other slices, axes
      and volumes, left-right flipped and/or zoomed, in a fixed pseudo-random order. Every image
      is real anatomy; none is noise.
  read --mode cold|warm|series [--src DIR] [--primer FILE] [--vs DIR] [--reps R] FILE...
      cold: sync and drop the kernel caches, then time open+read+close of the file (`first`:
      the daemon's code and libraries are paged in again too); with --primer, then once more:
      drop the caches, read FILE, time the file (`ms`: the daemon's code is in memory, the
      file's bytes are in no cache); without, `ms` is `first`;
      warm: read a file once, drop its pages from the page cache (posix_fadvise DONTNEED, so the
      next read reaches the filesystem again), then time R more reads (median; default 11);
      with --vs DIR, the file of the same name in DIR likewise, the two in turn (`vs ...`,
      and `ratio`: the median over the files of file/vs);
      series: time the whole list read in order, once.
      Prints `ms MEDIAN MIN MAX COUNT` (series: `s TOTAL COUNT`) and `mismatch K` (files whose
      bytes differ from the one of the same name in DIR).
  zlib FILE...
      zlib compressing the rows each file holds, in the same process and run: a PNG's filtered
      rows (the IDAT stream inflated) at the file's level (from the zlib header), a DICOM's pixel
      data at level 6. Prints `ms MEDIAN LEVELS`.
  backlog MNT [--timeout S]
      Polls the root xattr user.imgcryptfs.backlog every 10 ms until it has read 0 for 100 ms
      (a release that the kernel sends after close(2) returned may still queue a file); prints
      `zero EPOCH_SECONDS peak P` (when the run of zeros began), or `timeout ...`.
  storage DIR      counts of user.imgcryptfs.storage values: `image I blocks B queued Q other O`
  bytes DIR        the apparent size of every regular file under DIR, summed
  anatomy IMGCRYPT LIST  the containers among the backing files listed in LIST, their bytes and
                   sections summed (`imgcrypt inspect`): `containers C bytes B features F
                   envelope E pixels P` (pixels: the sealed pixel stream, padded to its bucket)
  jls PROG FILE... JPEG-LS (CharLS) bytes of the files' pixels through PROG (bench_pixcode size)
                   and their plaintext bytes: `jls BYTES PLAIN` or `jls - PLAIN`
  report KV        the table, from the results file the shell script wrote
"""
import argparse
import array
import gzip
import hashlib
import os
import random
import statistics
import struct
import subprocess
import sys
import time
import zlib

TEMPLATES = '/usr/share/mricron/templates'
MR_SMALL = '/usr/lib/python3/dist-packages/pydicom/data/test_files/MR_small.dcm'
SIZE = 512
SEED = 20261207
TRANSFORMS = ('flip', 'zoom', 'flipzoom', 'plain')


# ---------------------------------------------------------------- volumes and slices
def load(name):
    """(dims, voxels, bits): bytes for an 8-bit volume, array('H') (values x10) for a float one."""
    raw = gzip.open(os.path.join(TEMPLATES, name + '.nii.gz')).read()
    endian = '<' if struct.unpack('<i', raw[:4])[0] == 348 else '>'
    dim = struct.unpack(endian + '8h', raw[40:56])
    datatype, bitpix = struct.unpack(endian + 'hh', raw[70:74])
    offset = int(struct.unpack(endian + 'f', raw[108:112])[0])
    dims = dim[1], dim[2], dim[3]
    n = dims[0] * dims[1] * dims[2]
    body = raw[offset:offset + bitpix // 8 * n]
    if datatype == 2:
        return dims, body, 8
    if datatype != 16:
        sys.exit('%s: NIfTI datatype %d not handled' % (name, datatype))
    f = array.array('f', body)
    if endian != ('<' if sys.byteorder == 'little' else '>'):
        f.byteswap()
    return dims, array.array('H', [max(0, min(65535, int(round(v * 10)))) for v in f]), 16


def axis_len(dims, axis):
    return {'axial': dims[2], 'coronal': dims[1], 'sagittal': dims[0]}[axis]


def cut(dims, vox, axis, i):
    """One slice as (width, height, flat samples bottom row first)."""
    nx, ny, nz = dims
    if axis == 'axial':
        return nx, ny, vox[i * nx * ny:(i + 1) * nx * ny]
    if axis == 'sagittal':
        return ny, nz, vox[i::nx]
    rows = [vox[(z * ny + i) * nx:(z * ny + i + 1) * nx] for z in range(nz)]
    if isinstance(vox, bytes):
        return nx, nz, b''.join(rows)
    flat = array.array('H')
    for r in rows:
        flat.extend(r)
    return nx, nz, flat


def image(dims, vox, bits, axis, i, how):
    """A 512x512 Pillow image of one slice: padded to a square (as a scanner's field of view),
    resized (bicubic 8-bit; bilinear 16-bit, which cannot overshoot), then flipped or zoomed."""
    from PIL import Image
    w, h, flat = cut(dims, vox, axis, i)
    if bits == 8:
        im = Image.frombytes('L', (w, h), bytes(flat))
    else:
        if sys.byteorder != 'little':
            flat = array.array('H', flat)
            flat.byteswap()
        im = Image.frombytes('I;16', (w, h), flat.tobytes()).convert('I')
    im = im.transpose(Image.FLIP_TOP_BOTTOM)  # NIfTI rows run bottom to top
    s = max(w, h)
    sq = Image.new(im.mode, (s, s), 0)
    sq.paste(im, ((s - w) // 2, (s - h) // 2))
    if 'zoom' in how:
        m = s // 8
        sq = sq.crop((m, m, s - m, s - m))
    if 'flip' in how:
        sq = sq.transpose(Image.FLIP_LEFT_RIGHT)
    if bits == 8:
        return sq.resize((SIZE, SIZE), Image.BICUBIC)
    return sq.resize((SIZE, SIZE), Image.BILINEAR).convert('I;16')


def plan(volumes, n, series, series_vol, series_axis):
    """(volume, axis, index, transform) for each of the n files: first the series, then a
    shuffled draw over slices of the middle 80% of every axis of every volume and transforms."""
    dims = volumes[series_vol][0]
    ln = axis_len(dims, series_axis)
    series = min(series, n, ln)
    first = (ln - series) // 2
    out = [(series_vol, series_axis, first + k, 'plain') for k in range(series)]
    pool = []
    for how in TRANSFORMS:
        for name, (d, _, _) in volumes.items():
            for axis in ('axial', 'coronal', 'sagittal'):
                ln = axis_len(d, axis)
                for i in range(int(ln * 0.1), int(ln * 0.9)):
                    if not (how == 'plain' and name == series_vol and axis == series_axis):
                        pool.append((name, axis, i, how))
    random.Random(SEED).shuffle(pool)
    if len(pool) < n - series:
        sys.exit('only %d distinct slices for %d files' % (len(pool) + series, n))
    return out + pool[:n - series]


def gen(a):
    os.makedirs(a.out, exist_ok=True)
    if a.kind == 'png':
        volumes = {v: load(v) for v in ('ch2', 'ch2better')}
        todo = plan(volumes, a.n, a.series, 'ch2better', 'axial')
    else:
        volumes = {'inia19-t1-brain': load('inia19-t1-brain')}
        todo = plan(volumes, a.n, a.series, 'inia19-t1-brain', 'coronal')
        import pydicom
        from pydicom.uid import generate_uid
        ds = pydicom.dcmread(MR_SMALL)
        # the pixel description of what we put in: unsigned 12-bit samples in 16-bit words
        ds.Rows = ds.Columns = SIZE
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        for kw in ('SmallestImagePixelValue', 'LargestImagePixelValue'):
            if kw in ds:
                del ds[kw]  # their VR follows PixelRepresentation; not needed
        ds.WindowCenter, ds.WindowWidth = 1200, 2400
        ds.PixelSpacing = [0.5, 0.5]
        series_uid = generate_uid(entropy_srcs=[str(SEED), 'series'])
        other_uid = generate_uid(entropy_srcs=[str(SEED), 'other'])
    for k, (name, axis, i, how) in enumerate(todo):
        d, vox, bits = volumes[name]
        im = image(d, vox, bits, axis, i, how)
        if a.kind == 'png':
            im.save(os.path.join(a.out, 'im%05d.png' % k))  # Pillow's defaults: zlib level 6
            continue
        px = im.tobytes()  # I;16: little endian, as the transfer syntax (explicit VR LE)
        uid = generate_uid(entropy_srcs=[str(SEED), str(k)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid if k < a.series else other_uid
        ds.InstanceNumber = k + 1
        ds.SliceLocation = float(i)
        ds.ImageComments = '%s %s %d %s' % (name, axis, i, how)
        ds.PixelData = px
        ds['PixelData'].VR = 'OW'
        ds.save_as(os.path.join(a.out, 'im%05d.dcm' % k))
    print('%d %s files in %s' % (len(todo), a.kind, a.out))


# ---------------------------------------------------------------- reads
def slurp(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b''.join(parts)
            parts.append(b)
    finally:
        os.close(fd)


def drop_caches():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def forget(path):
    """Drop this file's pages from the page cache: the next read reaches the filesystem."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read(a):
    got, times, first = {}, [], []
    if a.mode == 'series':
        t0 = time.perf_counter()
        for f in a.files:
            got[f] = hashlib.sha256(slurp(f)).digest()
        print('s %.4f %d' % (time.perf_counter() - t0, len(a.files)))
    else:
        for f in a.files:
            if a.mode == 'cold':
                drop_caches()
                t0 = time.perf_counter()
                data = slurp(f)
                first.append(time.perf_counter() - t0)
                if a.primer:
                    drop_caches()
                    slurp(a.primer)
                    t0 = time.perf_counter()
                    if slurp(f) != data:
                        data = b''  # counted as a mismatch below
                times.append(time.perf_counter() - t0)
            else:
                data = slurp(f)
                g = os.path.join(a.vs, os.path.basename(f)) if a.vs else None
                if g:
                    slurp(g)
                reps, vs = [], []
                for _ in range(a.reps):  # the two files in turn: a burst of load hits both
                    forget(f)
                    t0 = time.perf_counter()
                    again = slurp(f)
                    reps.append(time.perf_counter() - t0)
                    if again != data:
                        data = b''  # counted as a mismatch below
                    if g:
                        forget(g)
                        t0 = time.perf_counter()
                        slurp(g)
                        vs.append(time.perf_counter() - t0)
                times.append(statistics.median(reps))
                if g:
                    first.append(statistics.median(vs))
            got[f] = hashlib.sha256(data).digest()
        ms = [1e3 * t for t in times]
        print('ms %.3f %.3f %.3f %d' % (statistics.median(ms), min(ms), max(ms), len(ms)))
        if first:
            vs = [1e3 * t for t in first]
            print('%s %.3f %.3f %.3f %d' % ('first' if a.mode == 'cold' else 'vs', statistics.median(vs),
                                            min(vs), max(vs), len(vs)))
            if a.mode == 'warm':
                print('ratio %.3f' % statistics.median(x / y for x, y in zip(ms, vs)))
    bad = 0
    if a.src:
        for f, h in got.items():
            if hashlib.sha256(slurp(os.path.join(a.src, os.path.basename(f)))).digest() != h:
                bad += 1
                print('mismatch: %s' % f, file=sys.stderr)
    print('mismatch %d' % bad)


def rows_of(path):
    """(rows, level): what zlib compressed when the file was written, and at which level."""
    b = slurp(path)
    if b[:8] == b'\x89PNG\r\n\x1a\n':
        i, idat = 8, []
        while i + 8 <= len(b):
            ln, t = struct.unpack('>I4s', b[i:i + 8])
            if t == b'IDAT':
                idat.append(b[i + 8:i + 8 + ln])
            i += 12 + ln
        z = b''.join(idat)
        # FLEVEL (zlib header bits 6-7) as zlib sets it: 0 = level 0-1, 1 = 2-5, 2 = 6, 3 = 7-9
        return zlib.decompress(z), {0: 1, 1: 5, 2: 6, 3: 9}[z[1] >> 6]
    import pydicom
    return pydicom.dcmread(path).PixelData, 6


def zlib_time(a):
    ms, levels = [], set()
    for f in a.files:
        rows, level = rows_of(f)
        levels.add(level)
        reps = []
        for _ in range(5):
            t0 = time.perf_counter()
            zlib.compress(rows, level)
            reps.append(time.perf_counter() - t0)
        ms.append(1e3 * statistics.median(reps))
    print('ms %.3f %s' % (statistics.median(ms), ','.join(str(v) for v in sorted(levels))))


# ---------------------------------------------------------------- mount state
def backlog(a):
    deadline = time.time() + a.timeout
    peak, zero_at = 0, None
    while time.time() < deadline:
        now = time.time()
        try:
            v = int(os.getxattr(a.mnt, 'user.imgcryptfs.backlog').strip(b'\0 \n') or b'0')
        except OSError as e:
            sys.exit('%s: no user.imgcryptfs.backlog (%s): does this imgcryptfs convert images?'
                     % (a.mnt, e.strerror))
        peak = max(peak, v)
        if v:
            zero_at = None
        elif zero_at is None:
            zero_at = now
        elif now - zero_at >= 0.1:
            print('zero %.6f peak %d' % (zero_at, peak))
            return
        time.sleep(0.01)
    print('timeout %d peak %d' % (v, peak))


def storage(a):
    n = {'image': 0, 'blocks': 0, 'queued': 0, 'other': 0}
    for top, _, files in os.walk(a.dir):
        for f in files:
            try:
                v = os.getxattr(os.path.join(top, f), 'user.imgcryptfs.storage').decode()
            except OSError:
                v = 'other'
            k = v.split()[0] if v.split() else 'other'
            n[k if k in n else 'other'] += 1
    print(' '.join('%s %d' % kv for kv in n.items()))


def size(a):
    total = 0
    for top, _, files in os.walk(a.dir):
        for f in files:
            st = os.lstat(os.path.join(top, f))
            if not os.path.islink(os.path.join(top, f)):
                total += st.st_size
    print(total)


def anatomy(a):
    """Sums the sections of the containers among the listed backing files, from `imgcrypt
    inspect` (which reads a container's plain header: no key needed)."""
    import json
    import re
    files = [line.rstrip('\n') for line in open(a.list) if line.strip()]
    n = {'containers': 0, 'bytes': 0, 'features': 0, 'envelope': 0, 'pixels': 0}
    for i in range(0, len(files), 256):
        r = subprocess.run([a.imgcrypt, 'inspect', '--json'] + files[i:i + 256],
                           stdout=subprocess.PIPE, text=True)
        for line in r.stdout.splitlines():
            m = re.search(r'features (\d+), envelope (\d+), pixels (\d+)', json.loads(line).get('reason') or '')
            if m:
                n['containers'] += 1
                n['bytes'] += json.loads(line)['bytes']
                for k, v in zip(('features', 'envelope', 'pixels'), m.groups()):
                    n[k] += int(v)
    print(' '.join('%s %d' % kv for kv in n.items()))


def jls(a):
    plain = sum(os.path.getsize(f) for f in a.files)
    r = subprocess.run([a.prog, 'size'] + a.files, stdout=subprocess.PIPE, text=True)
    total, have = 0.0, 0
    for line in r.stdout.splitlines()[1:]:
        p = line.split()
        if len(p) == 5 and p[4] != '-':
            total += float(p[4]) * float(p[1]) / 8
            have += 1
    print('jls %s %d' % ('%.0f' % total if have == len(a.files) else '-', plain))


# ---------------------------------------------------------------- the table
def report(a):
    kv = {}
    for line in open(a.kv):
        k, _, v = line.rstrip('\n').partition(' ')
        kv[k] = v
    g = kv.get
    num = lambda k: float(g(k).split()[0]) if g(k) not in (None, '', '-', 'timeout') else None
    n, targets, sets = int(g('meta.n')), g('meta.targets').split(), g('meta.sets').split()
    label = lambda f: {'gc': 'gocryptfs', 'off': 'images=off'}.get(f, 'coder=' + f)
    what = {'png': '8-bit PNG (Pillow, zlib level 6)', 'dcm': '16-bit native DICOM (12 bits stored)'}
    ok = lambda c: 'PASS' if c else 'FAIL'
    out = []
    w = out.append
    w('imgcryptfs: images through the mount, %s' % time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    w('host: %s; disk: %s' % (g('meta.host'), g('meta.disk')))
    w('versions: %s' % g('meta.version'))
    w('daemons: gocryptfs defaults; imgcryptfs -o images=off, and -o images=network,coder=C with '
      'other options %s (workers: one per core unless set)' % g('meta.icopts'))
    w('load average (1/5/15 min): %s; run %s s wall after the sets were made, CPU time of the run and'
      ' its daemons %s s' % (g('meta.load'), g('meta.wall'), g('meta.cpu')))
    load = [float(v) for v in g('meta.load').replace(',', ' ').split() if v.replace('.', '').isdigit()]
    cpus = os.cpu_count() or 1
    if load and max(load) > cpus:
        w('NOTE: load average up to %.1f on %d CPUs: other work shared the machine, so times and rates'
          ' are low and noisy;' % (max(load), cpus))
        w('      the ratios of paired runs (copy vs gocryptfs, warm vs block) and the sizes hold better')
    for s in sets:
        w('set %s: %d x %s, 512x512, %.1f MB' % (s, n, what[s], int(g('plain.' + s)) / 1e6))
    w('sets %s; the first %s files of each are one series' % (g('meta.gen'), g('meta.series')))
    w('')
    w('Ingest: cp -r of the set (source in the page cache); gocryptfs: the same copy just before and')
    w('again once the mount is idle (mean time); MB/s = 10^6 plaintext bytes/s; backlog 0: when')
    w('user.imgcryptfs.backlog read 0, in s after the copy ended and after it began; images/s =')
    w('files stored as images / time from copy start to backlog 0')
    w('%-4s %-13s %9s %9s %6s %7s %4s  %9s %9s %8s  %s' % ('set', 'mount', 'MB/s', 'gocryptfs', 'ratio',
      'target', 'ok', 'backlog 0', 'from start', 'images/s', 'stored as image/blocks/queued/other'))
    for s in sets:
        plain = int(g('plain.' + s))
        for f in targets:
            c = num('copy.%s.%s' % (f, s))
            gcc = (num('gccopy.%s.%s' % (f, s)) + num('gccopy2.%s.%s' % (f, s))) / 2
            r = (plain / c) / (plain / gcc)
            st = dict(zip(*[iter(g('storage.%s.%s' % (f, s)).split())] * 2))
            stored = '/'.join(st.get(k, '?') for k in ('image', 'blocks', 'queued', 'other'))
            if f == 'off':
                bl = fs = ips = '-'
            elif g('drain.%s.%s' % (f, s)) == 'timeout':
                bl, fs, ips = 'timeout', '-', '-'
            else:
                d, t = num('drain.%s.%s' % (f, s)), num('conv.%s.%s' % (f, s))
                bl, fs, ips = '%.2f' % d, '%.2f' % t, '%.1f' % (int(st.get('image', 0)) / t)
            w('%-4s %-13s %9.1f %9.1f %5.2fx %7s %4s  %9s %9s %8s  %s' % (
                s, label(f), plain / 1e6 / c, plain / 1e6 / gcc, r, '>=0.9x', ok(r >= 0.9), bl, fs, ips, stored))
    w('')
    jn = g('meta.jls_note')
    w('Stored size: backing bytes / plaintext bytes (apparent sizes of the backing files the set added;')
    if jn:
        w('keyring not counted); JPEG-LS %s' % jn)
    else:
        w('keyring not counted); JPEG-LS: CharLS lossless of the pixels (no header) / plaintext bytes,')
        w('over an even sample of %s files per set' % g('meta.jls_n'))
    cols = ['gc'] + targets
    w('%-4s %12s ' % ('set', 'plaintext MB') + ' '.join('%12s' % label(f) for f in cols) +
      ' %8s %7s %s' % ('JPEG-LS', 'target', 'ok (each coder)'))
    for s in sets:
        plain = int(g('plain.' + s))
        ratios = {f: int(g('bytes.%s.%s' % (f, s))) / plain for f in cols}
        j = g('jls.' + s)
        jr = '-' if not j or j.split()[0] == '-' else '%.3f' % (int(j.split()[0]) / int(j.split()[1]))
        t = 0.70 if s == 'png' else 0.40
        verdict = ' '.join(ok(ratios[f] <= t) for f in targets if f != 'off')
        w('%-4s %12.1f ' % (s, plain / 1e6) + ' '.join('%12.3f' % ratios[f] for f in cols) +
          ' %8s %7s %s' % (jr, '<=%.2f' % t, verdict))
    w('where the backing bytes of the containers go (imgcrypt inspect), per plaintext byte of the set:')
    w('  pixels: the sealed pixel stream padded to its bucket; features: the autoencoder features;')
    w('  rest: the container\'s own PNG chunks, sealed meta and tags; other: backing files that are not')
    w('  containers (folder records, files left as blocks)')
    w('  %-4s %-13s %10s %8s %8s %8s %8s %8s %8s' % ('set', 'mount', 'containers', 'pixels', 'features',
                                                    'envelope', 'rest', 'other', 'total'))
    for s in sets:
        plain = int(g('plain.' + s))
        for f in targets:
            an = g('anatomy.%s.%s' % (f, s))
            if not an:
                continue
            d = dict(zip(*[iter(an.split())] * 2))
            d = {k: int(v) for k, v in d.items()}
            rest = d['bytes'] - d['features'] - d['envelope'] - d['pixels']
            other = int(g('bytes.%s.%s' % (f, s))) - d['bytes']
            w('  %-4s %-13s %10d ' % (s, label(f), d['containers']) + ' '.join(
                '%8.3f' % (v / plain) for v in (d['pixels'], d['features'], d['envelope'], rest, other,
                                                d['bytes'] + other)))
    w('')
    w('Reads of one 512x512 file, ms, median over %s files [min-max]. cold: drop_caches, another' % g('meta.reads'))
    w('file of the set read (daemon code back in memory), then the timed file; fresh mount, imgcryptfs')
    w('with cache_mb=0; 1st: the same files, each the first read after a drop_caches (code paged in);')
    w('warm: the second read of a file, its pages dropped so it reaches the daemon (stored image: its')
    w('plaintext cache), median of 11 reads; w/block: median over the files of the ratio to the same')
    w('file\'s warm read as a block file (images=off), the two read in turn; series: %s files of one' % g('meta.series'))
    w('series read in order after drop_caches on a fresh mount with default options, total s (ms per file)')
    zl = {s: g('zlib.' + s).split() for s in sets}
    w('zlib on the same rows, this run: ' + '; '.join(
        '%s %.2f ms (level %s)' % (s, float(zl[s][0]), zl[s][1]) for s in sets))
    w('%-4s %-13s %-22s %11s %4s %8s  %-7s %8s %6s %4s  %s' % ('set', 'mount', 'cold ms', 'target', 'ok',
      '1st ms', 'warm ms', 'w/block', 'target', 'ok', 'series s (ms/file)'))
    for s in sets:
        tgt = float(zl[s][0]) if s == 'png' else 10.0
        tname = ('<=zlib %.1f' % tgt) if s == 'png' else '<=10'
        for f in ['gc'] + targets:
            c = g('cold.%s.%s' % (f, s)).split()
            fr = (g('first.%s.%s' % (f, s)) or '-').split()
            wm = g('warm.%s.%s' % (f, s)).split()
            sr = float(g('series.%s.%s' % (f, s)))
            img = f not in ('gc', 'off')
            ratio = float(g('wratio.%s.%s' % (f, s)) or 1.0)
            w('%-4s %-13s %-22s %11s %4s %8s  %7.3f %7.2fx %6s %4s  %.3f (%.2f)' % (
                s, label(f), '%.2f [%.2f-%.2f]' % tuple(float(x) for x in c),
                tname if img else '', ok(float(c[0]) <= tgt) if img else '',
                fr[0] if fr[0] == '-' else '%.2f' % float(fr[0]),
                float(wm[0]), ratio, '<=1.2x' if img else '', ok(ratio <= 1.2) if img else '',
                sr, 1e3 * sr / int(g('meta.series'))))
    w('')
    mism = sum(int(v) for k, v in kv.items() if k.startswith('mism.'))
    reads = len([k for k in kv if k.startswith('mism.')])
    w('read-back check: %d file(s) differed from their source over %d read passes (every file read is hashed)'
      % (mism, reads))
    w('conversion failures logged: ' + ', '.join('%s %s' % (label(f), g('convfail.' + f))
                                                 for f in targets if f != 'off') +
      '; temporary files left in the backing folders after unmount: ' +
      ', '.join('%s %s' % (label(f), g('leftover.' + f)) for f in targets))
    print('\n'.join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('gen')
    p.add_argument('--kind', choices=('png', 'dcm'), required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--n', type=int, required=True)
    p.add_argument('--series', type=int, default=200)
    p.set_defaults(fn=gen)
    p = sub.add_parser('read')
    p.add_argument('--mode', choices=('cold', 'warm', 'series'), required=True)
    p.add_argument('--src')
    p.add_argument('--primer')
    p.add_argument('--reps', type=int, default=11)
    p.add_argument('--vs')
    p.add_argument('files', nargs='+')
    p.set_defaults(fn=read)
    p = sub.add_parser('zlib')
    p.add_argument('files', nargs='+')
    p.set_defaults(fn=zlib_time)
    p = sub.add_parser('backlog')
    p.add_argument('mnt')
    p.add_argument('--timeout', type=float, default=600)
    p.set_defaults(fn=backlog)
    p = sub.add_parser('storage')
    p.add_argument('dir')
    p.set_defaults(fn=storage)
    p = sub.add_parser('bytes')
    p.add_argument('dir')
    p.set_defaults(fn=size)
    p = sub.add_parser('anatomy')
    p.add_argument('imgcrypt')
    p.add_argument('list')
    p.set_defaults(fn=anatomy)
    p = sub.add_parser('jls')
    p.add_argument('prog')
    p.add_argument('files', nargs='+')
    p.set_defaults(fn=jls)
    p = sub.add_parser('report')
    p.add_argument('kv')
    p.set_defaults(fn=report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == '__main__':
    main()
