#!/usr/bin/env bash
# Fuzzes the recipe parser with libFuzzer and AddressSanitizer (recipe-parser.swift compiled with
# Sources/LStoreBuild/Recipe.swift, which needs only Foundation), starting from recipe-seeds/.
#
# Usage: Fixtures/fuzz/recipe-parser.sh [SECONDS] [libFuzzer options...]   (default 60 seconds)
# Builds into /var/tmp/lstore-fuzz-build; crashes land there as crash-* files.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=/var/tmp/lstore-fuzz-build
mkdir -p "$build/recipe-corpus"
swiftc -sanitize=fuzzer,address -parse-as-library -g -O -module-name LStoreBuild \
  Sources/LStoreBuild/Recipe.swift Fixtures/fuzz/recipe-parser.swift -o "$build/fuzz-recipe-parser"
cp Fixtures/fuzz/recipe-seeds/* "$build/recipe-corpus/"
cd "$build"
seconds=${1:-60}
shift || true
exec ./fuzz-recipe-parser -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
  "$@" recipe-corpus
