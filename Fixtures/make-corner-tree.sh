#!/usr/bin/env bash
# Makes a tree holding every corner a Linux root filesystem can hold, for the round-trip tests
# (git cannot store device nodes, owners or xattrs, so the tree is generated). Needs root.
#
#   files:     empty, 1 byte, 4 KiB, 128 KiB, 128 KiB + 1, 3 MiB of seeded random data, 2 MiB of
#              text, two identical files (dedup), all-zero blocks inside data
#   sparse:    64 MiB with three islands of data; 5 GiB with data at 4.5 GiB (over 4 GiB)
#   dirs:      nested 8 deep, empty, one with 3000 entries, sticky 1777, setgid 2755
#   symlinks:  relative, absolute, dangling, `..`-escaping, a 4095-byte target
#   hardlinks: a set of three names across two directories, a pair with xattrs, a linked FIFO
#   special:   character device 1:3, block device 7:0, FIFO, Unix socket
#   modes:     4755 setuid, 2755 setgid, 0000, 0777, 1777
#   owners:    0:0, 65534:65534, 4000000000:3000000000
#   xattrs:    user.* (empty, small, 3000 bytes: ext4 keeps all of an inode's xattrs in one block, several), trusted.*, security.capability,
#              POSIX ACLs (system.posix_acl_access, system.posix_acl_default)
#   names:     not UTF-8 (\xff\xfe), spaces, a newline, leading dash, 255 bytes, bytewise order
#   times:     nanoseconds; timecorners/ holds mtimes before 1970 and after 2106
#
# Usage: make-corner-tree.sh DIR   (DIR must not exist or be empty)
set -euo pipefail
out=${1:?usage: make-corner-tree.sh DIR}
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "$out: not empty" >&2; exit 1; }
cd "$out"
umask 022

# Seeded data, the same on every machine.
python3 - <<'PY'
import random
r = random.Random(20261126)
def put(path, data):
    with open(path, "wb") as f:
        f.write(data)
import os
os.makedirs("files", exist_ok=True)
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
ln -s ../../../../etc/shadow links/escaping
ln -s "$(python3 -c 'print("a/" * 2047 + "b")')" links/long-target

# Hardlinks.
mkdir -p hard/a hard/b
echo "three names" > hard/a/one
ln hard/a/one hard/a/two
ln hard/a/one hard/b/three
echo "linked with xattrs" > hard/x1
setfattr -n user.shared -v "on both names" hard/x1
ln hard/x1 hard/x2
mkfifo hard/fifo1
ln hard/fifo1 hard/fifo2

# Special files.
mkdir dev
mknod dev/null c 1 3
mknod dev/loop0 b 7 0
mkfifo dev/fifo
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' sock

# Modes and owners.
mkdir modes
echo suid > modes/setuid; chmod 4755 modes/setuid
echo sgid > modes/setgid; chmod 2755 modes/setgid
echo none > modes/none; chmod 0000 modes/none
echo all > modes/all; chmod 0777 modes/all
chmod 1777 sticky
chmod 2755 setgid-dir
mkdir owners
echo nobody > owners/nobody; chown 65534:65534 owners/nobody
echo big > owners/big-ids; chown 4000000000:3000000000 owners/big-ids
chown -h 12345:54321 links/relative
chown 4000000000:3000000000 modes/setuid && chmod 4755 modes/setuid  # chown clears setuid

# Xattrs of every namespace.
mkdir xattrs
echo x > xattrs/user
setfattr -n user.empty xattrs/user
setfattr -n user.small -v small xattrs/user
setfattr -n user.large -v "0x$(python3 -c 'import random; print(random.Random(5).randbytes(3000).hex())')" xattrs/user
setfattr -n user.another -v "with spaces and = signs" xattrs/user
echo t > xattrs/trusted
setfattr -n trusted.overlay.opaque -v y xattrs/trusted
echo ping > xattrs/capability; chmod 0755 xattrs/capability
# security.capability v2: CAP_NET_RAW (13) effective + permitted.
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 xattrs/capability
echo acl > xattrs/acl
setfacl -m u:1000:rw-,g:100:r--,m:rw- xattrs/acl
mkdir xattrs/acl-default
setfacl -d -m u:1000:rwx xattrs/acl-default
setfattr -n user.on-dir -v 1 xattrs

# Names as bytes.
mkdir names
: > "names/$(printf '\xff\xfe')"
: > "names/with space"
: > "names/$(printf 'new\nline')"
: > "names/-leading-dash"
: > "names/$(python3 -c 'print("n" * 255)')"
for n in B a _ é Z 0; do : > "names/$n"; done

# Times: nanoseconds everywhere, and the extremes squashfs cannot hold in timecorners/.
mkdir timecorners
echo old > timecorners/before-1970
echo late > timecorners/after-2106
touch -d '@-86400.5' timecorners/before-1970
touch -d '@4500000000.25' timecorners/after-2106
touch -d '@1700000000.987654321' timecorners

# Fixed mtimes with nanoseconds, deepest first, so every run makes the same tree.
find . -depth ! -path ./timecorners ! -path './timecorners/*' -print0 | while IFS= read -r -d '' path; do
  touch -h -d "@1700000000.123456789" "$path"
done
touch -h -d '@1600000000.000000001' links/relative files/one
touch -d '@1800000000.5' files/random-3m
