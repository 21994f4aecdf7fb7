#!/usr/bin/env bash
# The main job end to end on sample data it makes: commit a base layer and a child layer on it,
# diff them, check the child out and verify it is exactly the tree that was committed; then write
# the child's squashfs image straight from the store's compressed blocks, have the kernel mount it
# read-only and compare it with the committed tree, and stack the child's --delta-from image over
# the base's with overlayfs, as the boot hook does at /.
# Usage: LSTORE=path/to/lstore Fixtures/demo.sh   (`make demo` builds and runs it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lstore=${LSTORE:-lstore}
work=$(mktemp -d /var/tmp/lstore-demo.XXXXXX)
cleanup() { for m in "$work"/mnt/{merged,gaming,delta,base}; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done; rm -rf "$work"; }
trap cleanup EXIT
export LSTORE_STORE=$work/store LSTORE_CACHE=$work/cache
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# A small root filesystem: a few directories, text, a binary-ish file, a symlink, a hardlink.
base=$work/rootfs-base
mkdir -p "$base"/{etc,usr/bin,usr/lib,var/log,home}
echo "demo-base" > "$base/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$base/etc/passwd"
python3 -c "import random; r=random.Random(1); open('$base/usr/lib/libdemo.so','wb').write(r.randbytes(3_000_000))"
seq 1 200000 > "$base/usr/lib/numbers.txt"
printf '#!/bin/sh\necho hello\n' > "$base/usr/bin/hello"; chmod 755 "$base/usr/bin/hello"
ln "$base/usr/bin/hello" "$base/usr/bin/hi"
ln -s usr/bin "$base/bin"
setfattr -n user.demo -v "kept in the image" "$base/etc/hostname" 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then mknod "$base/null" c 1 3; fi

# The child: one package "updated", one added, one removed.
child=$work/rootfs-gaming
cp -a "$base" "$child"
echo "demo-gaming" > "$child/etc/hostname"
python3 -c "import random; r=random.Random(2); open('$child/usr/lib/libgl.so','wb').write(r.randbytes(2_000_000))"
rm "$child/usr/lib/numbers.txt"

step "$lstore" init
step "$lstore" commit "$base" --ref base -m "a minimal base"
step "$lstore" commit "$child" --ref steve/gaming --parent base -m "base + a GL library"
step "$lstore" refs
step "$lstore" log steve/gaming
step "$lstore" diff base steve/gaming
step "$lstore" checkout steve/gaming --dir "$work/checkout"
step "$lstore" stats
step "$lstore" fsck --full

printf '\n\033[1m$ compare the checkout with the committed tree\033[0m\n'
if diff <(python3 "$here/manifest.py" "$child") <(python3 "$here/manifest.py" "$work/checkout") >/dev/null; then
  echo "identical: every entry, mode, owner, mtime (ns), xattr, hardlink and byte of content"
else
  echo "the checkout differs from the source" >&2
  exit 1
fi

# The image of the child, written from the store: each stored block is copied as it is (no
# recompression) when the image's codec, level and block size are the store's.
# (squashfs keeps whole seconds: lstore says which mtimes lose their nanoseconds.)
printf '\n\033[1m$ %s\033[0m\n' "$lstore checkout steve/gaming --squashfs $work/gaming.sfs --json"
"$lstore" checkout steve/gaming --squashfs "$work/gaming.sfs" --json | tee "$work/gaming.json"
python3 - "$work/gaming.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['blocks']} data blocks: {r['copiedBlocks']} copied from the store as stored, "
      f"{r['recompressedBlocks']} compressed again; {r['ownBlockFiles']} small files copied as blocks of their own; "
      f"{r['fragments']} fragment blocks; image {r['bytes']} bytes")
PY
step "$lstore" inspect "$work/gaming.sfs"

if [ "$(id -u)" != 0 ]; then
  echo "(not root: the kernel mounts are left out; run make demo as root to see them)"
  exit 0
fi
# squashfs keeps mtimes in whole seconds and only the user, trusted and security xattrs.
squash_manifest() { python3 "$here/manifest.py" --mtime-seconds --xattr-namespaces user,trusted,security "$1"; }
mkdir -p "$work/mnt/gaming" "$work/mnt/base" "$work/mnt/delta" "$work/mnt/merged"
step mount -t squashfs -o loop,ro "$work/gaming.sfs" "$work/mnt/gaming"
printf '\n\033[1m$ compare the mounted image with the committed tree\033[0m\n'
if diff <(squash_manifest "$child") <(squash_manifest "$work/mnt/gaming"); then
  echo "identical, as the kernel reads it: every entry, mode, owner, mtime, xattr, hardlink and byte"
else
  echo "the mounted image differs from the committed tree" >&2
  exit 1
fi

# Only what the child changed, as an overlayfs layer over the base's image.
step "$lstore" checkout base --squashfs "$work/base.sfs"
step "$lstore" checkout steve/gaming --squashfs "$work/delta.sfs" --delta-from base
ls -l "$work"/*.sfs
step mount -t squashfs -o loop,ro "$work/base.sfs" "$work/mnt/base"
step mount -t squashfs -o loop,ro "$work/delta.sfs" "$work/mnt/delta"
step mount -t overlay demo -o "lowerdir=$work/mnt/delta:$work/mnt/base" "$work/mnt/merged"
printf '\n\033[1m$ compare the stack (delta over base) with the committed child\033[0m\n'
if diff <(squash_manifest "$child") <(squash_manifest "$work/mnt/merged"); then
  echo "identical: the child's changes, its new file and its deletion, over the base"
else
  echo "the stacked images differ from the committed tree" >&2
  exit 1
fi
