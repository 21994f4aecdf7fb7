#!/usr/bin/env bash
# Makes the OCI and Docker images the import tests read, without a Docker engine: umoci builds
# the layers from root filesystems made here, skopeo copies them into the other forms. Needs
# root (owners, devices, trusted.* xattrs), umoci and skopeo.
#
#   layout/        an OCI image layout with tags
#                    base   one layer: files, a small sparse file, long and non-UTF-8 names,
#                           hardlinks, symlinks, devices, a FIFO, setuid, big owners, xattrs
#                           (user.*, trusted.*, security.capability, POSIX ACLs)
#                    child  base + a layer deleting a file and a directory (whiteouts), adding a
#                           file, a hardlink to a file of the base, and + a layer replacing /etc
#                           with an opaque directory
#                    system an image whose /rootfs holds a small system (for --rootfs)
#   zstd/          child again, its layers recompressed with zstd (skopeo)
#   child.docker.tar   child as `docker-archive` (skopeo: the legacy docker save layout)
#   child.oci.tar      child as `oci-archive`
#
# Every mtime is a whole second: umoci rounds mtimes to the second when it unpacks.
# Usage: make-oci-images.sh DIR   (DIR must not exist or be empty)
set -euo pipefail
out=${1:?usage: make-oci-images.sh DIR}
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "$out: not empty" >&2; exit 1; }
cd "$out"
umask 022

# Sets every mtime below $1 to a whole second, deepest first (so directories keep theirs).
settle() { find "$1" -depth -exec touch -h -d @1700000000 {} +; }

umoci init --layout layout
umoci new --image layout:base
umoci unpack --image layout:base bundle >/dev/null
r=bundle/rootfs
mkdir -p $r/etc/conf.d $r/usr/bin $r/var/lib/gone $r/hard $r/dev $r/names $r/links
echo "base motd" > $r/etc/motd
echo "keep" > $r/etc/conf.d/keep
echo "remove me" > $r/etc/remove-me
echo "gone" > $r/var/lib/gone/file
python3 -c 'import random; open("'$r'/usr/bin/tool","wb").write(random.Random(11).randbytes(300000))'
chmod 4755 $r/usr/bin/tool
truncate -s 3M $r/usr/bin/sparse
printf 'middle' | dd of=$r/usr/bin/sparse bs=1 seek=$((1 << 20)) conv=notrunc status=none
echo "three names" > $r/hard/one
ln $r/hard/one $r/hard/two
ln $r/hard/one $r/etc/three
ln -s ../hard/one $r/links/relative
ln -s /etc/motd $r/links/absolute
mknod $r/dev/null c 1 3
mknod $r/dev/loop0 b 7 0
mkfifo $r/dev/fifo
touch "$r/names/$(python3 -c 'print("n" * 255)')" "$r/names/with space" "$r/names/$(printf 'caf\xc3\xa9')"
mkdir -p "$r/names/$(python3 -c 'print("d" * 120)')/$(python3 -c 'print("e" * 120)')"
echo deep > "$r/names/$(python3 -c 'print("d" * 120)')/$(python3 -c 'print("e" * 120)')/leaf"
echo owned > $r/etc/owned
chown 4000000000:3000000000 $r/etc/owned
setfattr -n user.note -v "a note" $r/etc/motd
setfattr -n trusted.secret -v "trusted value" $r/etc/motd
setcap cap_net_raw+ep $r/usr/bin/tool 2>/dev/null || setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= $r/usr/bin/tool
setfacl -m u:1234:rw $r/etc/conf.d/keep
setfacl -d -m g:55:rx $r/etc/conf.d
settle $r
umoci repack --image layout:base bundle
rm -rf bundle

# child: deletions (whiteouts) and additions, then an opaque /etc.
umoci unpack --image layout:base bundle >/dev/null
r=bundle/rootfs
rm $r/etc/remove-me
rm -r $r/var/lib/gone
echo "new file" > $r/usr/bin/new
ln $r/hard/one $r/usr/bin/linked
settle $r
umoci repack --image layout:child bundle
rm -rf bundle
mkdir -p newetc/conf.d
echo "child motd" > newetc/motd
echo "only this" > newetc/conf.d/only
settle newetc
umoci insert --image layout:child --opaque newetc /etc
rm -rf newetc

# system: a container whose /rootfs holds the system to boot.
umoci new --image layout:system
umoci unpack --image layout:system bundle >/dev/null
r=bundle/rootfs
mkdir -p $r/bin $r/rootfs/etc $r/rootfs/usr/bin
echo container > $r/bin/sh
echo "system os-release" > $r/rootfs/etc/os-release
echo "system tool" > $r/rootfs/usr/bin/tool
ln $r/rootfs/usr/bin/tool $r/rootfs/usr/bin/tool2
settle $r
umoci repack --image layout:system bundle
rm -rf bundle
umoci gc --layout layout

skopeo copy -q oci:layout:child oci:zstd:child --dest-compress-format zstd
skopeo copy -q oci:layout:child docker-archive:child.docker.tar:child:latest
skopeo copy -q oci:layout:child oci-archive:child.oci.tar:child
