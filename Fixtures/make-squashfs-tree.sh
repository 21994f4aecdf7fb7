#!/usr/bin/env bash
# Makes a small tree for the squashfs matrix tests (every codec at every block size): every
# inode type and every squashfs structure, but little data, so each image takes a moment.
# Needs root (devices, owners, trusted.* xattrs). Deterministic; mtimes are whole seconds, so
# squashfs holds the tree exactly (the writer's report is empty).
#
#   data:      empty, 1 byte, 5000 random bytes, 200 KiB of text, 1.5 MiB random+text (crosses a
#              1 MiB block), 2 MiB of written zeros (holes in the image, not on disk), 3 MiB sparse
#              with data at 1 MiB + 5, two identical files
#   dirs:      300 entries (an extended directory with an index at 4 KiB blocks), nested, empty,
#              one with an xattr
#   links:     a symlink pair hardlinked, a file with three names, a hardlinked FIFO pair
#   special:   char 1:3 and 1:5, block 7:0 and 259:70000 (a minor over 255), FIFO, two sockets
#   xattrs:    user., trusted., security.capability, trusted.* on a device, a FIFO and a socket (so
#              every extended inode type appears); one 3000-byte value on two different sets
#              (stored once, out of line), one set shared by two inodes
#   owners:    0:0, 1000:1000, 4000000000:3000000000
#
# Usage: make-squashfs-tree.sh DIR   (DIR must not exist or be empty)
set -euo pipefail
out=${1:?usage: make-squashfs-tree.sh DIR}
umask 022
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "$out: not empty" >&2; exit 1; }
cd "$out"
chown 0:0 .
chmod 0755 .

python3 - <<'PY'
import os, random
r = random.Random(42)
def put(path, data):
    with open(path, "wb") as f:
        f.write(data)
os.makedirs("data/nested/deeper")
put("data/empty", b"")
put("data/one", b"1")
put("data/random-5000", r.randbytes(5000))
text = b"".join(b"line %d of some text\n" % i for i in range(10000))
put("data/text-200k", text[:200 * 1024])
put("data/mixed-1.5m", r.randbytes(700 * 1024) + (text * 4)[:800 * 1024])
put("data/zeros-2m", bytes(2 << 20))
put("data/same-a", text[:70000])
put("data/same-b", text[:70000])
put("data/nested/deeper/leaf", b"leaf\n")
with open("data/sparse-3m", "wb") as f:
    f.truncate(3 << 20)
    f.seek((1 << 20) + 5)
    f.write(b"island")
os.makedirs("many")
for i in range(300):
    put("many/name-%03d" % i, b"%d\n" % i)
PY
mkdir empty
ln -s ../data/one data/link
ln -P data/link data/link-too
echo "three names" > data/three
ln data/three data/three-b
ln data/three data/nested/three-c
mkfifo data/fifo1
ln data/fifo1 data/fifo2

mkdir dev
mknod dev/null c 1 3
mknod dev/loop0 b 7 0
mknod dev/wide b 259 70000
mkfifo dev/fifo
mknod dev/zero c 1 5
for sock in dev/sock dev/sock-plain; do
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$sock"
done
ln -s /dev/null dev/plain-link

large=$(python3 -c 'print("v" * 3000)')
setfattr -n user.note -v "a note" data/one
setfattr -n user.big -v "$large" data/text-200k
setfattr -n trusted.big -v "$large" data/random-5000
setfattr -n user.shared -v "same set" data/same-a
setfattr -n user.shared -v "same set" data/same-b
setfattr -n trusted.overlay.opaque -v y empty
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 data/three
setfattr -h -n trusted.on-link -v yes data/link
# trusted.* on the special files too, so that every extended inode type appears.
for special in dev/loop0 dev/null dev/fifo dev/sock; do setfattr -h -n trusted.kind -v "$special" "$special"; done

chown 1000:1000 data/random-5000 many
chown 4000000000:3000000000 data/text-200k dev/null
chmod 4755 data/one
chmod 1777 empty

find . -depth -exec touch -h -d @1700000000 {} +
touch -h -d @1600000000 data/one many/name-007
touch -h -d @2000000000 data/three
