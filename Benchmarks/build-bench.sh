#!/bin/bash
# The recipe benchmark: the same Dockerfile built by `lstore build`, by `buildah bud` (Debian's
# buildah, chroot isolation, vfs storage) and by `docker build` (Debian's docker.io, no bridge),
# side by side in one run, on the chain's Debian base; then recipe → bootable squashfs image; then
# a cached rebuild of a tree of four recipes.
#
# Usage: Benchmarks/build-bench.sh [CHAIN_DIR]   (default /var/tmp/lstore-chain; needs root)
#   LSTORE=PATH     the lstore binary (default .build/release/lstore)
#   KEEP_SCRATCH=1  keep the scratch directory under /var/tmp
#
# Every tool starts from the base already in its own storage (lstore: committed; buildah: pulled
# from lstore's OCI export of it; Docker: `docker import` of the same tree), untimed. Two recipes:
# "apt" installs python3 from Debian's mirror (network time is in every tool's figure), "local"
# copies and deletes a few thousand files and copies a directory of the recipe in. Fresh builds
# are uncached (`--no-cache` for lstore and docker; buildah bud without --layers caches nothing),
# after an untimed warm-up build of each tool; ROUNDS rounds (default 3), the tools' order turning
# each round, the median reported.
# The image: lstore build --squashfs against buildah bud, then mksquashfs of `buildah mount`'s
# root (zstd level 6, 128 KiB blocks: the store's). Each command once, `sync` before each.
set -euo pipefail

chain_arg=${1:-/var/tmp/lstore-chain}
case $chain_arg in /*) CHAIN=$chain_arg ;; *) CHAIN=$PWD/$chain_arg ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "build-bench: needs root" >&2; exit 1; }
say() { echo "build-bench: $*" >&2; }
for p in time python3 buildah squashfs-tools; do
	dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
[ -d "$CHAIN/rootfs-base" ] || { say "missing $CHAIN/rootfs-base"; exit 1; }
LSTORE=${LSTORE:-.build/release/lstore}
case $LSTORE in /*) ;; *) LSTORE=$ROOT/$LSTORE ;; esac
[ -x "$LSTORE" ] || { say "no lstore at $LSTORE (swift build -c release)"; exit 1; }

# Lower case: buildah takes the layout's path for an image name.
SCR=/var/tmp/build-bench.$$
rm -rf "$SCR" && mkdir -p "$SCR"
DOCKER=
cleanup() {
	[ -z "$DOCKER" ] || "$ROOT/Fixtures/dockerd.sh" stop "$SCR/docker" >/dev/null 2>&1 || true
	if [ -n "${KEEP_SCRATCH:-}" ]; then say "scratch kept in $SCR"; else rm -rf "$SCR"; fi
}
trap cleanup EXIT
cd "$SCR"
# shellcheck source=Benchmarks/lib.sh disable=SC1091
. "$ROOT/Benchmarks/lib.sh"
declare -A ROUNDS_TEXT

L() { "$LSTORE" --store "$SCR/store" "$@"; }
B() { buildah --root "$SCR/buildah/root" --runroot "$SCR/buildah/run" --storage-driver vfs "$@"; }

say "setting up: the base in lstore's store, buildah's storage and, where it runs, Docker's"
L init >/dev/null
L commit "$CHAIN/rootfs-base" --ref base >/dev/null 2>&1
L export base "oci:$SCR/layout:base" >/dev/null 2>&1
B pull -q "oci:$SCR/layout:base" >/dev/null
B tag "$(B images -q | head -n 1)" localhost/base
if dpkg -s docker.io >/dev/null 2>&1 && "$ROOT/Fixtures/dockerd.sh" start "$SCR/docker" >/dev/null 2>&1; then
	DOCKER=/usr/bin/docker
	D() { "$DOCKER" -H "unix://$SCR/docker/docker.sock" "$@"; }
	tar -C "$CHAIN/rootfs-base" -c . | D import - base >/dev/null
else
	say "no Docker engine here: docker build is left out"
fi

mkdir -p apt local/files
cat >apt/Dockerfile <<'EOF'
FROM base
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
EOF
cat >local/Dockerfile <<'EOF'
FROM base
RUN cp -a /usr/share/doc /opt/doc-copy && rm -rf /usr/share/man /usr/share/locale
COPY files/ /etc/bench/
RUN find /etc/bench -type f | wc -l > /etc/bench-count
EOF
for i in $(seq 1 500); do echo "file $i" >"local/files/f$i.conf"; done

fresh() {
	local tool=$1 recipe=$2 id=$3
	case $tool in
	lstore) run "$id" "$LSTORE" --store "$SCR/store" build "$recipe" --ref "$recipe" --no-cache ;;
	buildah) run "$id" buildah --root "$SCR/buildah/root" --runroot "$SCR/buildah/run" --storage-driver vfs \
		bud --isolation chroot --network host -q -t "$recipe" "$recipe" ;;
	docker) run "$id" "$DOCKER" -H "unix://$SCR/docker/docker.sock" build --network host --no-cache -q -t "$recipe" "$recipe" ;;
	esac
}
tools=(lstore buildah)
[ -z "$DOCKER" ] || tools+=(docker)
mkdir -p warm && printf 'FROM base\nRUN true\n' >warm/Dockerfile
for tool in "${tools[@]}"; do fresh "$tool" warm "warm-$tool"; done
ROUNDS=${ROUNDS:-3}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for recipe in apt local; do
	for round in $(seq 1 "$ROUNDS"); do
		n=${#tools[@]}
		for k in $(seq 0 $((n - 1))); do
			tool=${tools[$(((k + round) % n))]}
			fresh "$tool" "$recipe" "$tool-$recipe-$round"
		done
	done
	for tool in "${tools[@]}"; do
		values=()
		for round in $(seq 1 "$ROUNDS"); do values+=("${SEC[$tool-$recipe-$round]}"); done
		SEC[$tool-$recipe]=$(median "${values[@]}")
		MB[$tool-$recipe]=${MB[$tool-$recipe-1]}
		ROUNDS_TEXT[$tool-$recipe]="${values[*]}"
	done
done

# Recipe → bootable image.
run lstore-image "$LSTORE" --store "$SCR/store" build local --ref image --no-cache --squashfs "$SCR/lstore.sfs"
export_image() {
	buildah --root "$SCR/buildah/root" --runroot "$SCR/buildah/run" --storage-driver vfs \
		bud --isolation chroot --network host -q -t image local >/dev/null
	local ctr mnt
	ctr=$(B from -q image)
	mnt=$(B mount "$ctr")
	mksquashfs "$mnt" "$SCR/buildah.sfs" -noappend -quiet -no-progress -comp zstd -Xcompression-level 6 -b 131072 >/dev/null
	B umount "$ctr" >/dev/null
	B rm "$ctr" >/dev/null
}
export -f export_image B
export SCR
run buildah-image bash -c export_image

# A cached rebuild of a tree of four recipes.
mkdir -p tree/os tree/desktop tree/gaming tree/development
printf 'FROM base\nRUN echo os > /layer-os\n' >tree/os/Lstorefile
printf 'FROM os\nCOPY desktop.conf /etc/\nRUN cp -a /usr/share/doc /opt/doc\n' >tree/desktop/Lstorefile
echo desktop >tree/desktop/desktop.conf
printf 'FROM desktop\nRUN echo gaming > /layer-gaming\n' >tree/gaming/Lstorefile
printf 'FROM desktop\nRUN echo dev > /layer-dev\n' >tree/development/Lstorefile
run tree-first "$LSTORE" --store "$SCR/store" build tree --all
run tree-cached "$LSTORE" --store "$SCR/store" build tree --all

echo
echo "## lstore build against buildah bud and docker build (one run, same recipes and base)"
echo
echo "Fresh builds: the median of $ROUNDS rounds (each round's figures in brackets)."
echo
echo "| | lstore (s) | buildah (s) | buildah / lstore | docker (s) | docker / lstore | lstore peak (MiB) |"
echo "|---|---|---|---|---|---|---|"
for recipe in apt local; do
	d=-
	dr=-
	if [ -n "$DOCKER" ]; then d=${SEC[docker-$recipe]}; dr=$(ratio "$d" "${SEC[lstore-$recipe]}"); fi
	if [ -n "$DOCKER" ]; then d="${SEC[docker-$recipe]} [${ROUNDS_TEXT[docker-$recipe]}]"; fi
	echo "| fresh build, $recipe | ${SEC[lstore-$recipe]} [${ROUNDS_TEXT[lstore-$recipe]}] | ${SEC[buildah-$recipe]} [${ROUNDS_TEXT[buildah-$recipe]}] | $(ratio "${SEC[buildah-$recipe]}" "${SEC[lstore-$recipe]}") | $d | $dr | ${MB[lstore-$recipe]} |"
done
echo "| recipe → squashfs image (local) | ${SEC[lstore-image]} | ${SEC[buildah-image]} (bud + mount + mksquashfs) | $(ratio "${SEC[buildah-image]}" "${SEC[lstore-image]}") | | | ${MB[lstore-image]} |"
echo "| tree of 4 recipes, first build | ${SEC[tree-first]} | | | | | ${MB[tree-first]} |"
echo "| tree of 4 recipes, cached rebuild | ${SEC[tree-cached]} | | | | | ${MB[tree-cached]} |"
echo
echo "Images: lstore $(stat -c %s lstore.sfs) bytes, mksquashfs of buildah's root $(stat -c %s buildah.sfs) bytes."
