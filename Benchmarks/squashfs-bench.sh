#!/bin/bash
# lstore's squashfs writer against mksquashfs, side by side in one run on the same data.
#
# Usage: Benchmarks/squashfs-bench.sh [CHAIN]   (needs root; CHAIN defaults to /var/tmp/lstore-chain,
#        as ../shared/fixtures/debian-chain.sh builds it: rootfs-base, rootfs-boot, rootfs-dev)
#   RUNS=N   runs each command N times, alternating, and keeps the fastest (default 3)
#   RECOMPRESS="zstd:3 lz4 ..."   the other settings measured (default: zstd:3 lz4 gzip:6)
#   BASELINE=path/to/lstore   an earlier build of lstore: every lstore command is timed with it too,
#            in the same run on the same store, and a last table gives the ratio (no slowdown: >= 1)
#
# 1. Direct materialisation: a store (zstd:6, 128 KiB: the defaults) holding the chain; then
#    `checkout dev --squashfs` against mksquashfs of the same tree at the same codec, level and
#    block size, 2 processors. Three cases: no fragment cache at all (the first checkout of a layer
#    made on this machine), the cache filled by a checkout of the parent layer `boot` (a child
#    layer checked out after its parent), and the cache filled by an earlier checkout of `dev`.
# 2. Recompression: `checkout dev --squashfs --compression SPEC` against mksquashfs at SPEC.
# 3. `lstore squashfs DIR` (no store) against mksquashfs.
# Every command writes a new file (the old one removed first, untimed), page cache warm, `sync`
# untimed before each; GNU time gives wall seconds and peak RSS.
set -euo pipefail
chain=${1:-/var/tmp/lstore-chain}
runs=${RUNS:-3}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "squashfs-bench: needs root" >&2; exit 1; }
for layer in base boot dev; do
  [ -d "$chain/rootfs-$layer" ] || { echo "squashfs-bench: $chain/rootfs-$layer: no such layer (build the chain first)" >&2; exit 1; }
done
tree=$chain/rootfs-dev

swift build -c release --product lstore >&2
lstore="$(swift build -c release --show-bin-path)/lstore"
scratch=$(mktemp -d /var/tmp/lstore-squashfs-bench-XXXXXX)
trap 'umount "$scratch/mnt" 2>/dev/null || true; rm -rf "$scratch"' EXIT
store=$scratch/store

mksquashfs_codec() {  # SPEC -> mksquashfs options
  case $1 in
    zstd:*) echo "-comp zstd -Xcompression-level ${1#zstd:}" ;;
    gzip:*) echo "-comp gzip -Xcompression-level ${1#gzip:}" ;;
    lz4:hc) echo "-comp lz4 -Xhc" ;;
    lz4) echo "-comp lz4" ;;
    xz) echo "-comp xz" ;;
    *) echo "squashfs-bench: no mksquashfs equivalent for $1" >&2; exit 1 ;;
  esac
}

# timed NAME OUTPUT [SETUP] -- COMMAND...: best wall time and peak RSS of $runs runs into
# $scratch/NAME.best ("SECONDS KIB BYTES"). SETUP runs untimed before each run.
timed() {
  local name=$1 out=$2 setup=$3; shift 4
  local best=999999 rss=0
  for _ in $(seq "$runs"); do
    rm -f "$out"
    eval "$setup"
    sync
    /usr/bin/time -f '%e %M' -o "$scratch/time" "$@" > "$scratch/$name.log" 2>&1 || { cat "$scratch/$name.log" >&2; exit 1; }
    read -r wall kib < "$scratch/time"
    if awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$wall; fi
    [ "$kib" -gt "$rss" ] && rss=$kib
  done
  echo "$best $rss $(stat -c %s "$out")" > "$scratch/$name.best"
  echo "squashfs-bench: $name: $(cat "$scratch/$name.best")" >&2
}

row() {  # LABEL NAME BASELINE: a table row, ratios against BASELINE (mksquashfs)
  read -r w r s < "$scratch/$2.best"
  read -r bw _ bs < "$scratch/$3.best"
  awk -v l="$1" -v w="$w" -v r="$r" -v s="$s" -v bw="$bw" -v bs="$bs" 'BEGIN {
    printf "| %s | %.2f | %.0f | %.1f | %.2f | %.3f |\n", l, w, r / 1024, s / 1048576, bw / w, s / bs }'
}
header() {
  printf '| command | seconds | peak MiB | size MiB | mksquashfs time / ours | size / mksquashfs |\n'
  printf '|---|---|---|---|---|---|\n'
}

echo "squashfs-bench: reading the trees once" >&2
for layer in base boot dev; do tar -cf - -C "$chain/rootfs-$layer" . | cat > /dev/null; done
"$lstore" --store "$store" init > /dev/null
"$lstore" --store "$store" commit "$chain/rootfs-base" --ref base > /dev/null
"$lstore" --store "$store" commit "$chain/rootfs-boot" --ref boot --parent base > /dev/null
"$lstore" --store "$store" commit "$chain/rootfs-dev" --ref dev --parent boot > /dev/null
out=$scratch/out.sfs
checkout=("$lstore" --store "$store" checkout dev --squashfs "$out")

echo
echo "## Direct materialisation: checkout dev --squashfs at the store's settings (zstd:6, 128 KiB)"
echo
timed mksquashfs-zstd6 "$out" : -- mksquashfs "$tree" "$out" -noappend -no-progress -quiet -processors 2 -b 131072 $(mksquashfs_codec zstd:6)
timed direct-cold "$out" "rm -rf $store/cache" -- "${checkout[@]}" --threads 2
timed direct-parent "$out" "rm -rf $store/cache; $lstore --store $store checkout boot --squashfs $scratch/boot.sfs 2>/dev/null" -- "${checkout[@]}" --threads 2
timed direct-warm "$out" ":" -- "${checkout[@]}" --threads 2
cp "$out" "$scratch/direct.sfs"
header
row "mksquashfs -comp zstd -Xcompression-level 6" mksquashfs-zstd6 mksquashfs-zstd6
row "lstore checkout, first of this layer (no fragment cache)" direct-cold mksquashfs-zstd6
row "lstore checkout, after a checkout of its parent layer" direct-parent mksquashfs-zstd6
row "lstore checkout, again (fragment cache warm)" direct-warm mksquashfs-zstd6

echo
echo "## Recompression: checkout dev --squashfs --compression SPEC"
echo
header
for spec in ${RECOMPRESS:-zstd:3 lz4 gzip:6}; do
  timed "mksquashfs-$spec" "$out" : -- mksquashfs "$tree" "$out" -noappend -no-progress -quiet -processors 2 -b 131072 $(mksquashfs_codec "$spec")
  timed "recompress-$spec" "$out" : -- "${checkout[@]}" --compression "$spec" --threads 2
  row "mksquashfs $(mksquashfs_codec "$spec")" "mksquashfs-$spec" "mksquashfs-$spec"
  row "lstore checkout --compression $spec" "recompress-$spec" "mksquashfs-$spec"
done

echo
echo "## A plain directory: lstore squashfs DIR"
echo
header
for spec in zstd:6 zstd:3; do
  [ -f "$scratch/mksquashfs-$spec.best" ] || \
    timed "mksquashfs-$spec" "$out" : -- mksquashfs "$tree" "$out" -noappend -no-progress -quiet -processors 2 -b 131072 $(mksquashfs_codec "$spec")
  timed "dir-$spec" "$out" : -- "$lstore" squashfs "$tree" "$out" --compression "$spec" --threads 2
  row "mksquashfs $(mksquashfs_codec "$spec")" "mksquashfs-$spec" "mksquashfs-$spec"
  row "lstore squashfs DIR --compression $spec" "dir-$spec" "mksquashfs-$spec"
done

if [ -n "${BASELINE:-}" ]; then
  echo
  echo "## Against an earlier build: the same commands with BASELINE, same run, same store"
  echo
  before=("$BASELINE" --store "$store" checkout dev --squashfs "$out")
  timed before-direct-cold "$out" "rm -rf $store/cache" -- "${before[@]}" --threads 2
  timed before-direct-parent "$out" "rm -rf $store/cache; $BASELINE --store $store checkout boot --squashfs $scratch/boot.sfs 2>/dev/null" -- "${before[@]}" --threads 2
  timed before-direct-warm "$out" ":" -- "${before[@]}" --threads 2
  timed before-recompress-zstd:3 "$out" : -- "${before[@]}" --compression zstd:3 --threads 2
  timed before-dir-zstd:6 "$out" : -- "$BASELINE" squashfs "$tree" "$out" --compression zstd:6 --threads 2
  printf '| command | before s | after s | before / after | size after / before |\n|---|---|---|---|---|\n'
  for pair in "first checkout of a layer|direct-cold" "after its parent's checkout|direct-parent" \
              "fragment cache warm|direct-warm" "--compression zstd:3|recompress-zstd:3" "squashfs DIR zstd:6|dir-zstd:6"; do
    label=${pair%|*}; name=${pair##*|}
    [ -f "$scratch/$name.best" ] || continue
    read -r w _ s < "$scratch/$name.best"
    read -r bw _ bs < "$scratch/before-$name.best"
    awk -v l="$label" -v w="$w" -v bw="$bw" -v s="$s" -v bs="$bs" 'BEGIN { printf "| %s | %.2f | %.2f | %.2f | %.4f |\n", l, bw, w, bw / w, s / bs }'
  done
fi

echo
echo "squashfs-bench: checking the direct image: kernel mount against the tree, sqfsdiff against mksquashfs" >&2
mksquashfs "$tree" "$scratch/theirs.sfs" -noappend -no-progress -quiet -processors 2 $(mksquashfs_codec zstd:6) > /dev/null 2>&1
python3 Fixtures/manifest.py --mtime-seconds --xattr-namespaces user,trusted,security "$tree" > "$scratch/source.manifest"
mkdir -p "$scratch/mnt"
mount -t squashfs -o loop,ro "$scratch/direct.sfs" "$scratch/mnt"
python3 Fixtures/manifest.py --mtime-seconds --xattr-namespaces user,trusted,security "$scratch/mnt" > "$scratch/mounted.manifest"
umount "$scratch/mnt"
if cmp -s "$scratch/source.manifest" "$scratch/mounted.manifest"; then
  echo "- kernel: the mounted image equals the tree"
else
  echo "- kernel: DIFFERENT"; diff "$scratch/source.manifest" "$scratch/mounted.manifest" | head
fi
if sqfsdiff -a "$scratch/theirs.sfs" -b "$scratch/direct.sfs" > "$scratch/sqfsdiff.log" 2>&1; then
  echo "- sqfsdiff against mksquashfs's image: no difference"
else
  echo "- sqfsdiff against mksquashfs's image: DIFFERENT"; head "$scratch/sqfsdiff.log"
fi
