#!/usr/bin/env bash
# The main job end to end on sample data it makes: commit a base layer and a child layer on it,
# diff them, check the child out and verify it is exactly the tree that was committed.
# Usage: LSTORE=path/to/lstore Fixtures/demo.sh   (`make demo` builds and runs it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lstore=${LSTORE:-lstore}
work=$(mktemp -d /var/tmp/lstore-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
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
