#!/usr/bin/env python3
"""Print a manifest of a directory tree: one line per entry, sorted by path bytes.

The test oracle: standard library only, it shares no code with lstore. Each line holds

    PATH TYPE mode=OOOO uid=N gid=N mtime=S.NNNNNNNNN [by type] [xattr:NAME=SHA256]... [link=PATH]

  PATH     relative to DIR, starting with "/" (DIR itself is "/"); every byte outside printable
           ASCII, and "%" and "\\", is written %XX, so a space is %20 and a newline %0A
  TYPE     file, dir, symlink, char, block, fifo, socket
  mode     permission bits in octal, setuid/setgid/sticky included
  mtime    seconds.nanoseconds, floored: 1.5 s before the epoch is -2.500000000
           (--mtime-seconds: the floored whole seconds only)
  by type  file: size=N content=HEX (see content_hash: equal for equal content, whatever the
           holes on disk, and a sparse file's holes are never read); symlink: target=PATH (escaped like paths); char/block: rdev=MAJOR,MINOR
  xattr    every extended attribute, sorted by name bytes, as name=sha256(value)
           (--xattr-namespaces user,trusted,security keeps only those namespaces)
  link     for an inode with two or more names inside the manifest: the first of those names in
           sorted order, so two trees with the same hardlink structure print the same lines

A filesystem that does not support xattrs (listxattr fails with EOPNOTSUPP, as on a squashfs image
without an xattr table) has none. Directory sizes and link counts are not printed: they differ between filesystems. Symlinks are
never followed. --exclude PREFIX (repeatable) leaves out a relative path and everything below it.

usage: manifest.py [--mtime-seconds] [--xattr-namespaces user,trusted,security]
                   [--exclude PREFIX]... DIR
"""
import argparse
import errno
import hashlib
import os
import stat
import sys

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
         stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}
CHUNK = 1 << 16
ZEROS = bytes(CHUNK)


def escape(path: bytes) -> str:
    return "".join(chr(b) if 0x21 <= b < 0x7F and b not in (0x25, 0x5C) else "%%%02X" % b for b in path)


def content_hash(path: bytes, size: int) -> str:
    """SHA-256 over the size and (offset, bytes) of every 64 KiB-aligned chunk that is not all zero.

    It depends on the content only, not on where the filesystem keeps holes, and it reads only the
    regions that hold data (SEEK_DATA/SEEK_HOLE), so a 5 GiB sparse file costs nothing."""
    h = hashlib.sha256(b"size %d\n" % size)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        offset = 0
        while offset < size:
            try:
                data = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole remains
            offset = data - data % CHUNK
            try:
                hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
            except OSError:
                hole = size
            while offset < hole:
                chunk = os.pread(fd, CHUNK, offset)
                if not chunk:
                    raise OSError("%s: shrank while being read" % os.fsdecode(path))
                if chunk != ZEROS[: len(chunk)]:
                    h.update(b"%d:" % offset)
                    h.update(chunk)
                offset += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def listxattr(path: bytes) -> list:
    """The xattr names of an entry, not following symlinks; none where the filesystem keeps none
    (a squashfs image without an xattr table answers ENOTSUP)."""
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description="Print a manifest of a directory tree (the test oracle).")
    parser.add_argument("--mtime-seconds", action="store_true", help="print whole seconds only")
    parser.add_argument("--xattr-namespaces", default=None, help="only these namespaces, comma-separated (e.g. user,trusted,security)")
    parser.add_argument("--exclude", action="append", default=[], metavar="PREFIX", help="skip this relative path and what is below it (repeatable)")
    parser.add_argument("directory")
    args = parser.parse_args()
    root = os.fsencode(args.directory).rstrip(b"/") or b"/"
    namespaces = None
    if args.xattr_namespaces is not None:
        namespaces = tuple(ns.strip().encode() + b"." for ns in args.xattr_namespaces.split(",") if ns.strip())
    excludes = {os.fsencode(e).strip(b"/") for e in args.exclude}

    prefix = root if root.endswith(b"/") else root + b"/"

    def full(rel: bytes) -> bytes:
        return prefix + rel if rel else root

    # Walk without recursion (no depth limit), never following symlinks.
    entries = []  # (relative path, lstat result)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        parser.error("%s is not a directory" % args.directory)
    entries.append((b"", st))
    stack = [b""]
    while stack:
        rel = stack.pop()
        for name in os.listdir(full(rel)):
            child = rel + b"/" + name if rel else name
            if child in excludes:  # what is below it is never walked
                continue
            st = os.lstat(full(child))
            entries.append((child, st))
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)
    entries.sort(key=lambda e: e[0])

    # Hardlink sets: only names inside this manifest count, not st_nlink, which also counts
    # names outside it (excluded, or elsewhere on the filesystem).
    names_of_inode = {}
    for rel, st in entries:
        if not stat.S_ISDIR(st.st_mode):
            names_of_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)

    out = sys.stdout
    for rel, st in entries:
        path = full(rel)
        mode = st.st_mode
        kind = KINDS[stat.S_IFMT(mode)]
        fields = ["/" + escape(rel), kind, "mode=%04o" % stat.S_IMODE(mode), "uid=%d" % st.st_uid, "gid=%d" % st.st_gid]
        if args.mtime_seconds:
            fields.append("mtime=%d" % (st.st_mtime_ns // 1_000_000_000))
        else:
            fields.append("mtime=%d.%09d" % divmod(st.st_mtime_ns, 1_000_000_000))
        if kind == "file":
            fields.append("size=%d" % st.st_size)
            fields.append("content=" + content_hash(path, st.st_size))
        elif kind == "symlink":
            fields.append("target=" + escape(os.readlink(path)))
        elif kind in ("char", "block"):
            fields.append("rdev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        names = sorted(os.fsencode(n) for n in listxattr(path))
        for name in names:
            if namespaces is not None and not name.startswith(namespaces):
                continue
            value = os.getxattr(path, name, follow_symlinks=False)
            fields.append("xattr:%s=%s" % (escape(name), hashlib.sha256(value).hexdigest()))
        if kind != "dir":
            names = names_of_inode[(st.st_dev, st.st_ino)]
            if len(names) > 1:
                fields.append("link=/" + escape(names[0]))
        out.write(" ".join(fields) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(1)
