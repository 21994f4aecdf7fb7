#!/usr/bin/env bash
# Makes a tree holding every corner a Linux root filesystem can hold, for the round-trip tests
# (git cannot store device nodes, owners or xattrs, so the tree is generated). Needs root.
# Deterministic: the same contents, owners, modes, xattrs and mtimes on every run and machine
# (except where a filesystem refuses a corner: see "refused" below).
#
#   files:     empty, 1 byte, 4 KiB, 128 KiB, 128 KiB + 1, 3 MiB of seeded random data, 2 MiB of
#              text, two identical files (dedup), all-zero blocks inside data (not a hole)
#   sparse:    64 MiB with data at 0, 5 MiB and the last byte; 5 GiB with data at 4.5 GiB
#   dirs:      nested 8 deep, empty, one with 3000 entries, sticky 1777, setgid 2755
#   symlinks:  relative, absolute, dangling, `..`-escaping (../../../../etc/passwd), a 4095-byte
#              target, one owned by 12345:54321
#   hardlinks: three names across two directories, a pair with xattrs, a linked FIFO pair
#   special:   character device 1:3, block device 7:0, FIFO, Unix socket (/sock, the only one)
#   modes:     4755 setuid (owned 4000000000:3000000000), 2755 setgid, 0000, 0777, 1777
#   owners:    0:0, 65534:65534, 4000000000:3000000000
#   xattrs:    user.* (empty value, small, 60 KiB, several on one file, on a directory),
#              trusted.*, security.capability (v2, cap_net_raw+ep), POSIX ACLs
#              (system.posix_acl_access on a file, system.posix_acl_default on a directory)
#   names:     not UTF-8 (\xff\xfe, and a directory \xff), spaces, a newline, leading dash,
#              255 bytes (ASCII and 2-byte UTF-8), bytewise vs. locale order (B a _ é Z 0)
#   times:     1700000000.123456789 on most entries, varied nanoseconds (…000000001, .5, .999999999),
#              one after 2038 (2^31 s) and, in timecorners/ (so tools limited to 1970..2106, such
#              as squashfs, can skip it), one before 1970 and one after 2106
#
# Refused by some filesystems (a warning on stderr, the tree is still made):
#   - ext4 without the ea_inode feature keeps all of an inode's xattrs in one block: the 60 KiB
#     user.large shrinks to 16000 bytes, then 3000 bytes, whichever fits first
#   - times before 1970 / after 2106 are clamped by filesystems without them (ext4 with 128-byte
#     inodes, ...): the script checks the stored time and warns
#
# Usage: make-corner-tree.sh DIR   (DIR must not exist or be empty)
set -euo pipefail
out=${1:?usage: make-corner-tree.sh DIR}
umask 022
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "$out: not empty" >&2; exit 1; }
cd "$out"
chown 0:0 .
chmod 0755 .
warn() { echo "make-corner-tree: warning: $*" >&2; }

# Seeded data, the same on every machine.
python3 - <<'PY'
import os, random
r = random.Random(20261126)
def put(path, data):
    with open(path, "wb") as f:
        f.write(data)
os.makedirs("files")
put("files/empty", b"")
put("files/one", b"x")
put("files/4k", bytes(r.getrandbits(8) for _ in range(4096)))
put("files/128k", r.randbytes(131072))
put("files/128k+1", r.randbytes(131073))
put("files/random-3m", r.randbytes(3 << 20))
text = b"".join(b"line %d of a compressible text file\n" % i for i in range(60000))
put("files/text-2m", text)
put("files/copy-a", text[:500000])
put("files/copy-b", text[:500000])
# Real zero blocks inside a file that is not sparse on disk.
put("files/zero-blocks", r.randbytes(1000) + bytes(4 * 131072) + r.randbytes(1000))
put("files/after-2038", b"after 2038\n")
PY

# Sparse files: islands of data in holes, and one past 4 GiB.
truncate -s 64M files/sparse-64m
printf 'start' | dd of=files/sparse-64m conv=notrunc status=none
printf 'middle' | dd of=files/sparse-64m bs=1 seek=$((5 << 20)) conv=notrunc status=none
printf 'E' | dd of=files/sparse-64m bs=1 seek=$(((64 << 20) - 1)) conv=notrunc status=none
truncate -s 5G files/sparse-5g
printf 'far away' | dd of=files/sparse-5g bs=1 seek=$((4608 << 20)) conv=notrunc status=none

# Directories.
mkdir -p deep/1/2/3/4/5/6/7/8 empty-dir many sticky setgid-dir
for i in $(seq -w 0 2999); do : > "many/entry-$i"; done
echo deep > deep/1/2/3/4/5/6/7/8/leaf

# Symlinks.
mkdir links
ln -s ../files/one links/relative
ln -s /etc/passwd links/absolute
ln -s does/not/exist links/dangling
ln -s ../../../../etc/passwd links/escaping
ln -s "$(python3 -c 'print("a/" * 2047 + "b")')" links/long-target
[ "$(readlink links/long-target | wc -c)" = 4096 ] || { echo "long symlink target is not 4095 bytes" >&2; exit 1; }

# Hardlinks.
mkdir -p hard/a hard/b
echo "three names" > hard/a/one
ln hard/a/one hard/a/two
ln hard/a/one hard/b/three
echo "linked with xattrs" > hard/x1
setfattr -n user.shared -v "on both names" hard/x1
setfattr -n trusted.shared -v "trusted on both names" hard/x1
ln hard/x1 hard/x2
mkfifo hard/fifo1
ln hard/fifo1 hard/fifo2

# Special files.
mkdir dev
mknod dev/null c 1 3
mknod dev/loop0 b 7 0
mkfifo dev/fifo
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' sock

# Modes and owners (chown clears setuid/setgid and security.capability, so it comes first).
mkdir modes owners
echo suid > modes/setuid
echo sgid > modes/setgid
echo none > modes/none
echo all > modes/all
echo nobody > owners/nobody
echo big > owners/big-ids
chown 4000000000:3000000000 modes/setuid owners/big-ids
chown 65534:65534 owners/nobody
chown -h 12345:54321 links/relative
chmod 4755 modes/setuid
chmod 2755 modes/setgid
chmod 0000 modes/none
chmod 0777 modes/all
chmod 1777 sticky
chmod 2755 setgid-dir

# Xattrs of every namespace.
mkdir xattrs
echo x > xattrs/user
setfattr -n user.empty xattrs/user
setfattr -n user.small -v small xattrs/user
setfattr -n user.another -v "with spaces and = signs" xattrs/user
python3 - <<'PY' >&2
import os, random
value = random.Random(5).randbytes(60 * 1024)
for size in (60 * 1024, 16000, 3000):
    try:
        os.setxattr("xattrs/user", "user.large", value[:size])
        break
    except OSError as e:
        print("make-corner-tree: warning: user.large of %d bytes refused (%s), trying less" % (size, e.strerror))
else:
    raise SystemExit("make-corner-tree: no large user.* xattr fits")
PY
echo t > xattrs/trusted
setfattr -n trusted.overlay.opaque -v y xattrs/trusted
setfattr -n trusted.empty xattrs/trusted
echo ping > xattrs/capability
chown 0:100 xattrs/capability
chmod 0755 xattrs/capability
# security.capability v2 (what `setcap cap_net_raw+ep` writes outside user namespaces), set as
# raw bytes so the blob does not depend on the libcap version: magic 0x02000000 | effective,
# permitted = 1 << CAP_NET_RAW (13), inheritable = 0, upper words 0.
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 xattrs/capability
if command -v getcap >/dev/null; then
  case "$(getcap xattrs/capability)" in
    *cap_net_raw[=+]ep*) ;;
    *) warn "getcap does not read cap_net_raw+ep back: $(getcap xattrs/capability)" ;;
  esac
fi
echo acl > xattrs/acl
setfacl -m u:1000:rw-,g:100:r--,m:rw- xattrs/acl
mkdir xattrs/acl-default
setfacl -m u:1000:rwx xattrs/acl-default
setfacl -d -m u:1000:r-x,g::r-x xattrs/acl-default
setfattr -n user.on-dir -v 1 xattrs
setfattr -h -n trusted.on-symlink -v link links/absolute

# Names as bytes.
mkdir names
: > "names/$(printf '\xff\xfe')"
mkdir "names/dir-$(printf '\xff')"
: > "names/dir-$(printf '\xff')/inside"
: > "names/with space"
: > "names/$(printf 'new\nline')"
: > "names/-leading-dash"
: > "names/$(python3 -c 'print("n" * 255)')"
: > "names/$(python3 -c 'print("é" * 127 + "n")')"
for n in B a _ é Z 0; do : > "names/$n"; done

# Times: the extremes squashfs cannot hold, in timecorners/.
mkdir timecorners
echo old > timecorners/before-1970
echo late > timecorners/after-2106
ln -s before-1970 timecorners/old-link
touch -h -d '@-86400.5' timecorners/before-1970
touch -h -d '@-1000000000.000000001' timecorners/old-link
touch -h -d '@4500000000.25' timecorners/after-2106
touch -h -d '@1700000000.987654321' timecorners
for check in "timecorners/before-1970 -86400.500000000" "timecorners/old-link -1000000000.000000001" \
             "timecorners/after-2106 4500000000.250000000"; do
  set -- $check
  got=$(stat -c %.9Y "$1")
  [ "$got" = "$2" ] || warn "$1: the filesystem stored mtime $got instead of $2"
done

# Fixed mtimes with nanoseconds, set last, deepest first (setting a time never touches the parent).
find . -depth ! -path ./timecorners ! -path './timecorners/*' -exec touch -h -d '@1700000000.123456789' {} +
touch -h -d '@1600000000.000000001' links/relative files/one
touch -h -d '@1800000000.5' files/random-3m
touch -h -d '@1700000001.999999999' hard/a/one dev/null
touch -h -d '@1000000000' files/empty
touch -h -d '@2147483648.5' files/after-2038
touch -h -d '@1234567890.000001' deep/1/2/3/4/5/6/7/8 deep/1/2/3/4/5/6/7 empty-dir
