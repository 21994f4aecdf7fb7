#!/usr/bin/env bash
# Fuzzes the squashfs reader with libFuzzer and AddressSanitizer (squashfs-reader.swift), starting
# from the seed images in squashfs-seeds/ (a few small images of every codec, ours and mksquashfs's).
#
# Usage: Fixtures/fuzz/squashfs-reader.sh [SECONDS] [libFuzzer options...]   (default 60 seconds)
# Builds into /var/tmp/lstore-fuzz-build (its own SwiftPM scratch path, only the modules the reader
# needs); crashes land there as crash-* files.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=/var/tmp/lstore-fuzz-build
swift build --scratch-path "$build" --target LStoreSquashFS \
  -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address >&2
debug=$build/debug
maps=()
for shim in CZstd CLZ4 CZlib CLZMA CXXHash; do maps+=(-Xcc "-fmodule-map-file=Sources/$shim/module.modulemap"); done
maps+=(-Xcc "-fmodule-map-file=$debug/CLStoreSys.build/module.modulemap")
swiftc -sanitize=fuzzer,address -parse-as-library -g -O Fixtures/fuzz/squashfs-reader.swift -I "$debug/Modules" "${maps[@]}" \
  "$debug"/LStoreSquashFS.build/*.o "$debug"/LStoreTree.build/*.o "$debug"/LStoreCompression.build/*.o \
  "$debug"/CLStoreSys.build/*.o -lzstd -llz4 -lz -llzma -lxxhash -o "$build/fuzz-squashfs-reader"
mkdir -p "$build/corpus"
cp Fixtures/fuzz/squashfs-seeds/*.sfs "$build/corpus/"
cd "$build"
seconds=${1:-60}
shift || true
exec ./fuzz-squashfs-reader -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -max_len=262144 \
  "$@" corpus
