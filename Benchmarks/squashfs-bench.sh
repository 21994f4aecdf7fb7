#!/bin/bash
# Our squashfs writer (LStoreSquashFS with DirectoryBlockSource, release build) against mksquashfs
# on one tree, same codec, level and block size, 2 processors each.
#
# Usage: Benchmarks/squashfs-bench.sh TREE [SPEC@BLOCKSIZE ...]   (needs root)
#   default specs: zstd:3@131072 zstd:15@131072 gzip:9@131072 lz4@131072 xz@131072 xz@1048576
#   RUNS=N runs each writer N times, alternating (default 3), and reports the fastest run of each
#   (the machine may be shared: the fastest run is the least disturbed).
#   KEEP_SCRATCH=1 keeps the images under /var/tmp.
#
# The tree is read once beforehand (warm page cache) and `sync` runs untimed before each
# measurement. Each run is timed with GNU time (wall seconds, peak RSS). Neither writer fsyncs.
# Our times include scanning the tree (Scanner) as mksquashfs's include its own scan. The first
# spec's images are also checked: the kernel mounts ours with the source's manifest, and sqfsdiff
# finds no difference from mksquashfs's.
set -euo pipefail
tree=${1:?usage: squashfs-bench.sh TREE [SPEC@BLOCKSIZE ...]}
shift
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(zstd:3@131072 zstd:15@131072 gzip:9@131072 lz4@131072 xz@131072 xz@1048576)
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "squashfs-bench: needs root" >&2; exit 1; }

swift build -c release --build-tests >&2
bin=$(swift build -c release --show-bin-path)/lstorePackageTests.xctest
scratch=$(mktemp -d /var/tmp/lstore-squashfs-bench-XXXXXX)
[ -n "${KEEP_SCRATCH:-}" ] || trap 'umount "$scratch/mnt" 2>/dev/null || true; rm -rf "$scratch"' EXIT

echo "squashfs-bench: reading $tree once" >&2
tar -cf - -C "$tree" . | cat > /dev/null

mksquashfs_codec() {  # SPEC -> mksquashfs options
  case $1 in
    zstd:*) echo "-comp zstd -Xcompression-level ${1#zstd:}" ;;
    zstd) echo "-comp zstd -Xcompression-level 3" ;;
    gzip:*) echo "-comp gzip -Xcompression-level ${1#gzip:}" ;;
    gzip) echo "-comp gzip" ;;
    lz4:hc) echo "-comp lz4 -Xhc" ;;
    lz4) echo "-comp lz4" ;;
    xz|xz:6) echo "-comp xz" ;;
    none) echo "-comp gzip -noI -noD -noF -noX" ;;
    *) echo "squashfs-bench: no mksquashfs equivalent for $1" >&2; exit 1 ;;
  esac
}

timed() {  # OUTFILE COMMAND... ; prints "WALL RSS_KIB"
  local out=$1; shift
  sync
  /usr/bin/time -f '%e %M' -o "$out.time" "$@" > "$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  cat "$out.time"
}

printf '| spec | block | mksquashfs s | ours s | time ratio | mksquashfs MiB | ours MiB | size ratio | mksquashfs peak RSS MiB | ours peak RSS MiB |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
first=1
for item in "${specs[@]}"; do
  spec=${item%@*}; block=${item#*@}
  theirs=$scratch/mksquashfs.sfs ours=$scratch/ours.sfs
  t_wall=999999 o_wall=999999 t_rss=0 o_rss=0
  for run in $(seq "${RUNS:-3}"); do
    read -r w r < <(timed "$scratch/m" mksquashfs "$tree" "$theirs" -noappend -no-progress -quiet \
      -processors 2 -b "$block" $(mksquashfs_codec "$spec"))
    echo "squashfs-bench: $spec@$block run $run mksquashfs ${w}s ${r}KiB" >&2
    if awk -v a="$w" -v b="$t_wall" 'BEGIN { exit !(a < b) }'; then t_wall=$w; fi
    [ "$r" -gt "$t_rss" ] && t_rss=$r
    read -r w r < <(timed "$scratch/o" env SQUASHFS_BENCH_TREE="$tree" SQUASHFS_BENCH_OUT="$ours" \
      SQUASHFS_BENCH_COMPRESSION="$spec" SQUASHFS_BENCH_BLOCK_SIZE="$block" SQUASHFS_BENCH_THREADS=2 \
      "$bin" --testing-library swift-testing --filter benchmarkWriter)
    echo "squashfs-bench: $spec@$block run $run ours ${w}s ${r}KiB" >&2
    if awk -v a="$w" -v b="$o_wall" 'BEGIN { exit !(a < b) }'; then o_wall=$w; fi
    [ "$r" -gt "$o_rss" ] && o_rss=$r
  done
  grep -h "squashfs-bench" "$scratch/o.log" >&2 || true
  t_size=$(stat -c %s "$theirs") o_size=$(stat -c %s "$ours")
  awk -v s="$spec" -v b="$block" -v tw="$t_wall" -v ow="$o_wall" -v ts="$t_size" -v os="$o_size" \
      -v tr="$t_rss" -v orss="$o_rss" 'BEGIN {
    printf "| %s | %d | %.2f | %.2f | %.2f | %.1f | %.1f | %.3f | %.0f | %.0f |\n",
      s, b, tw, ow, ow / tw, ts / 1048576, os / 1048576, os / ts, tr / 1024, orss / 1024 }'
  if [ $first = 1 ]; then
    first=0
    echo "squashfs-bench: checking $spec: kernel mount and sqfsdiff" >&2
    python3 Fixtures/manifest.py --mtime-seconds --xattr-namespaces user,trusted,security "$tree" > "$scratch/source.manifest"
    mkdir -p "$scratch/mnt"
    mount -t squashfs -o loop,ro "$ours" "$scratch/mnt"
    python3 Fixtures/manifest.py --mtime-seconds --xattr-namespaces user,trusted,security "$scratch/mnt" > "$scratch/mounted.manifest"
    umount "$scratch/mnt"
    if cmp -s "$scratch/source.manifest" "$scratch/mounted.manifest"; then
      echo "squashfs-bench: kernel: the mounted image equals the tree" >&2
    else
      echo "squashfs-bench: kernel: DIFFERENT"; diff "$scratch/source.manifest" "$scratch/mounted.manifest" | head >&2
    fi
    if sqfsdiff -T -a "$theirs" -b "$ours" > "$scratch/sqfsdiff.log"; then
      echo "squashfs-bench: sqfsdiff: no difference" >&2
    else
      echo "squashfs-bench: sqfsdiff: DIFFERENT"; head "$scratch/sqfsdiff.log" >&2
    fi
  fi
done
