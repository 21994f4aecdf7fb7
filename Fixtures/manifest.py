#!/usr/bin/env python3
"""Print a manifest of a directory tree: one line per entry, sorted by path bytes.

The test oracle: it shares no code with lstore. Each line holds the path (bytes escaped),
type, mode (octal, with setuid/setgid/sticky), uid, gid, mtime (seconds.nanoseconds), then by
type: size and a content hash of regular files (see content_hash), the symlink target, major/minor of devices; every xattr
as name=sha256(value); and, for entries whose inode has several names, a hardlink marker: the
first path (in sorted order) of the set, so equal link structures print equal lines.
Directory sizes and link counts are not printed: they differ between filesystems.

usage: manifest.py [--mtime-seconds] [--xattr-namespaces user,trusted,security]
                   [--exclude PREFIX]... DIR
"""
import argparse
import hashlib
import os
import stat
import sys


def escape(path: bytes) -> str:
    out = []
    for b in path:
        if 0x21 <= b < 0x7F and b not in (0x25, 0x5C):  # printable, not % or backslash
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out) or "/"


CHUNK = 1 << 16
ZERO = bytes(CHUNK)


def content_hash(path: bytes, size: int) -> str:
    """SHA-256 over (offset, bytes) of every 64 KiB-aligned chunk that is not all zero.

    It depends on the content only, not on where the filesystem keeps holes, and it reads only
    the regions that hold data (SEEK_DATA), so a 5 GiB sparse file costs nothing.
    """
    h = hashlib.sha256()
    h.update(b"size %d\n" % size)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break  # only a hole remains
            offset = data - data % CHUNK
            try:
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError:
                hole = size
            while offset < hole:
                chunk = os.pread(fd, CHUNK, offset)
                if not chunk:
                    break
                if chunk != ZERO[: len(chunk)]:
                    h.update(b"%d:" % offset)
                    h.update(chunk)
                offset += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mtime-seconds", action="store_true", help="print whole seconds only")
    parser.add_argument("--xattr-namespaces", default=None, help="only these namespaces, comma-separated")
    parser.add_argument("--exclude", action="append", default=[], help="skip this relative path and what is below it")
    parser.add_argument("--no-sparse-data", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("directory")
    args = parser.parse_args()
    root = os.fsencode(args.directory.rstrip("/") or "/")
    namespaces = None
    if args.xattr_namespaces:
        namespaces = tuple(ns.encode() + b"." for ns in args.xattr_namespaces.split(","))
    excludes = [os.fsencode(e.strip("/")) for e in args.exclude]

    entries = []  # (relative path, lstat result)
    def walk(rel: bytes):
        full = root + (b"/" + rel if rel else b"")
        st = os.lstat(full)
        entries.append((rel, st))
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                child = rel + b"/" + name if rel else name
                if any(child == e or child.startswith(e + b"/") for e in excludes):
                    continue
                walk(child)
    walk(b"")
    entries.sort(key=lambda e: e[0])

    first_of_inode = {}
    for rel, st in entries:
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first_of_inode.setdefault((st.st_dev, st.st_ino), rel)

    out = sys.stdout
    for rel, st in entries:
        full = root + (b"/" + rel if rel else b"")
        mode = st.st_mode
        fields = ["/" + escape(rel) if rel else "/"]
        kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
                stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}[stat.S_IFMT(mode)]
        fields.append(kind)
        fields.append("mode=%04o" % stat.S_IMODE(mode))
        fields.append("uid=%d" % st.st_uid)
        fields.append("gid=%d" % st.st_gid)
        if args.mtime_seconds:
            fields.append("mtime=%d" % (st.st_mtime_ns // 1_000_000_000))
        else:
            fields.append("mtime=%d.%09d" % divmod(st.st_mtime_ns, 1_000_000_000))
        if kind == "file":
            fields.append("size=%d" % st.st_size)
            fields.append("content=" + content_hash(full, st.st_size))
        elif kind == "symlink":
            fields.append("target=" + escape(os.readlink(full)))
        elif kind in ("char", "block"):
            fields.append("rdev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        try:
            names = sorted(os.listxattr(full, follow_symlinks=False))
        except OSError:
            names = []
        for name in names:
            raw = os.fsencode(name)
            if namespaces is not None and not raw.startswith(namespaces):
                continue
            value = os.getxattr(full, name, follow_symlinks=False)
            fields.append("xattr:%s=%s" % (escape(raw), hashlib.sha256(value).hexdigest()[:16]))
        if kind != "dir" and st.st_nlink > 1:
            fields.append("link=/" + escape(first_of_inode[(st.st_dev, st.st_ino)]))
        out.write(" ".join(fields) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
