#!/bin/bash
# The registry benchmark: from a registry (or a `docker save` archive) to a bootable squashfs
# image, lstore against the tools a user would pick instead (skopeo copy, umoci unpack,
# mksquashfs), side by side in one run on the same data.
#
# Usage: Benchmarks/registry-bench.sh [CHAIN_DIR]   (default /var/tmp/lstore-chain; needs root)
#   LSTORE=PATH     the lstore binary (default .build/release/lstore)
#   KEEP_SCRATCH=1  keep the scratch directory under /var/tmp
#
# The images are made by umoci, not by lstore: an OCI layout whose tags base, boot and dev are the
# Debian chain's layers (base; boot on base; dev on boot, one gzip layer each), pushed by skopeo
# to Debian's docker-registry on loopback (Fixtures/registry.sh, plain HTTP) and written as a
# docker-archive by skopeo. Every command runs once, timed with GNU time (wall seconds, peak RSS);
# `sync` before each. Both sides write zstd level 6 squashfs images with 128 KiB blocks.
set -euo pipefail

chain_arg=${1:-/var/tmp/lstore-chain}
case $chain_arg in /*) CHAIN=$chain_arg ;; *) CHAIN=$PWD/$chain_arg ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "registry-bench: needs root (device nodes, ownership)" >&2; exit 1; }
say() { echo "registry-bench: $*" >&2; }

for p in time python3 skopeo umoci squashfs-tools docker-registry curl; do
	dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
for l in base boot dev; do [ -d "$CHAIN/rootfs-$l" ] || { say "missing $CHAIN/rootfs-$l"; exit 1; }; done
LSTORE=${LSTORE:-.build/release/lstore}
case $LSTORE in /*) ;; *) LSTORE=$ROOT/$LSTORE ;; esac
[ -x "$LSTORE" ] || { say "no lstore at $LSTORE (swift build -c release)"; exit 1; }

SCR=$(mktemp -d /var/tmp/registry-bench.XXXXXX)
cleanup() {
	"$ROOT/Fixtures/registry.sh" stop "$SCR/registry" >/dev/null 2>&1 || true
	if [ -n "${KEEP_SCRATCH:-}" ]; then say "scratch kept in $SCR"; else rm -rf "$SCR"; fi
}
trap cleanup EXIT
export LSTORE_CACHE=$SCR/cache
cd "$SCR"

# shellcheck source=Benchmarks/lib.sh disable=SC1091
. "$ROOT/Benchmarks/lib.sh"
sum() { awk -v a="$1" -v b="$2" -v c="${3:-0}" 'BEGIN { printf "%.2f", a + b + c }'; }
maxof() { printf '%s\n' "$@" | sort -n | tail -n 1; }
MKSQ=(-comp zstd -Xcompression-level 6 -b 131072 -processors "$(nproc)" -noappend -quiet)

# --- the images (untimed) ------------------------------------------------------------------------
say "scratch: $SCR"
umoci init --layout IMG
umoci new --image IMG:base
umoci unpack --image IMG:base B >/dev/null
prev=base
for l in base boot dev; do
	find B/rootfs -mindepth 1 -delete
	cp -a "$CHAIN/rootfs-$l/." B/rootfs/
	umoci repack --refresh-bundle --image "IMG:$l" B >/dev/null
	say "image $l made (on $prev)"
	prev=$l
done
rm -rf B
HOST=$("$ROOT/Fixtures/registry.sh" start "$SCR/registry" anonymous)
for l in boot dev; do
	skopeo copy --quiet --dest-tls-verify=false "oci:IMG:$l" "docker://$HOST/bench/debian:$l"
done
skopeo copy --quiet "oci:IMG:dev" "docker-archive:dev.tar:bench/debian:dev"
REF=docker://$HOST/bench/debian:dev
layer_bytes() { # TAG -> the compressed bytes of each of its layers, one per line
	skopeo inspect --raw --tls-verify=false "docker://$HOST/bench/debian:$1" |
		python3 -c 'import json,sys; [print(l["size"]) for l in json.load(sys.stdin)["layers"]]'
}
image_bytes=$(layer_bytes dev | awk '{ s += $1 } END { print s }')
dev_layer_bytes=$(layer_bytes dev | tail -n 1)

# --- 1. registry → squashfs image, into an empty store -------------------------------------------
"$LSTORE" --store S1 init >/dev/null
run ls_pull "$LSTORE" --store S1 pull "$REF" --ref dev --json
run ls_sfs "$LSTORE" --store S1 checkout dev --squashfs ls.sfs
run sk_copy skopeo copy --quiet --src-tls-verify=false "$REF" oci:SK:dev
run um_unpack umoci unpack --image SK:dev SKB
run mk_sfs mksquashfs SKB/rootfs mk.sfs "${MKSQ[@]}"
"$LSTORE" --store S1 fsck >/dev/null

# --- 2. the child when its base is here ----------------------------------------------------------
"$LSTORE" --store S2 init >/dev/null
"$LSTORE" --store S2 pull "docker://$HOST/bench/debian:boot" --ref boot >/dev/null
run ls_child "$LSTORE" --store S2 pull "$REF" --ref dev --json
skopeo copy --quiet --src-tls-verify=false "docker://$HOST/bench/debian:boot" oci:SK2:boot
sk2_before=$(du -sb SK2/blobs | cut -f1)
run sk_child skopeo copy --quiet --src-tls-verify=false "$REF" oci:SK2:dev
sk2_bytes=$(($(du -sb SK2/blobs | cut -f1) - sk2_before))

# --- 3. again: nothing changed -------------------------------------------------------------------
run ls_again "$LSTORE" --store S1 pull "$REF" --ref dev --json
run sk_again skopeo copy --quiet --src-tls-verify=false "$REF" oci:SK:dev

# --- 4. docker save archive → squashfs image -----------------------------------------------------
"$LSTORE" --store S3 init >/dev/null
run ls_import "$LSTORE" --store S3 import docker-archive:dev.tar --ref dev
run ls_sfs3 "$LSTORE" --store S3 checkout dev --squashfs ls3.sfs
run sk_arch skopeo copy --quiet docker-archive:dev.tar oci:SK3:dev
run um_unpack3 umoci unpack --image SK3:dev SKB3
run mk_sfs3 mksquashfs SKB3/rootfs mk3.sfs "${MKSQ[@]}"
"$LSTORE" --store S3 fsck >/dev/null

# --- the report ----------------------------------------------------------------------------------
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
ls_total=$(sum "${SEC[ls_pull]}" "${SEC[ls_sfs]}")
alt_total=$(sum "${SEC[sk_copy]}" "${SEC[um_unpack]}" "${SEC[mk_sfs]}")
ls3_total=$(sum "${SEC[ls_import]}" "${SEC[ls_sfs3]}")
alt3_total=$(sum "${SEC[sk_arch]}" "${SEC[um_unpack3]}" "${SEC[mk_sfs3]}")
alt3_oci=$(sum "${SEC[um_unpack3]}" "${SEC[mk_sfs3]}")
echo "## Registries and docker save archives: \`Benchmarks/registry-bench.sh\`"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores; lstore $("$LSTORE" --version); skopeo $(pkgver skopeo), umoci $(pkgver umoci),"
echo "mksquashfs $(pkgver squashfs-tools), docker-registry $(pkgver docker-registry) on loopback (plain HTTP)."
echo "The image: the Debian chain's dev as three gzip layers made by umoci (base, boot, dev),"
echo "$(mib "$image_bytes") MiB of blobs; its top layer $(mib "$dev_layer_bytes") MiB. Squashfs images: zstd level 6, 128 KiB blocks."
echo "Ratios are the other tools / lstore: above 1 means lstore is faster."
echo
echo "| registry → squashfs image (empty store) | seconds | peak MiB |"
echo "|---|---|---|"
echo "| lstore pull | ${SEC[ls_pull]} | ${MB[ls_pull]} |"
echo "| lstore checkout --squashfs | ${SEC[ls_sfs]} | ${MB[ls_sfs]} |"
echo "| **lstore, both** | **$ls_total** | $(maxof "${MB[ls_pull]}" "${MB[ls_sfs]}") |"
echo "| skopeo copy docker:// oci: | ${SEC[sk_copy]} | ${MB[sk_copy]} |"
echo "| umoci unpack | ${SEC[um_unpack]} | ${MB[um_unpack]} |"
echo "| mksquashfs | ${SEC[mk_sfs]} | ${MB[mk_sfs]} |"
echo "| **skopeo + umoci + mksquashfs** | **$alt_total** | $(maxof "${MB[sk_copy]}" "${MB[um_unpack]}" "${MB[mk_sfs]}") |"
echo "| ratio | $(ratio "$alt_total" "$ls_total") | |"
echo
echo "| pull alone | lstore s | skopeo s | skopeo / lstore | lstore MiB fetched | skopeo MiB written |"
echo "|---|---|---|---|---|---|"
echo "| into an empty store | ${SEC[ls_pull]} | ${SEC[sk_copy]} | $(ratio "${SEC[sk_copy]}" "${SEC[ls_pull]}") | $(mib "$(json ls_pull bytesFetched)") | $(mib "$(du -sb SK/blobs | cut -f1)") |"
echo "| the child, its base (boot) here | ${SEC[ls_child]} | ${SEC[sk_child]} | $(ratio "${SEC[sk_child]}" "${SEC[ls_child]}") | $(mib "$(json ls_child bytesFetched)") | $(mib "$sk2_bytes") |"
echo "| again, nothing new | ${SEC[ls_again]} | ${SEC[sk_again]} | $(ratio "${SEC[sk_again]}" "${SEC[ls_again]}") | $(mib "$(json ls_again bytesFetched)") | - |"
echo
echo "| docker save archive → squashfs image | seconds | peak MiB |"
echo "|---|---|---|"
echo "| lstore import docker-archive: | ${SEC[ls_import]} | ${MB[ls_import]} |"
echo "| lstore checkout --squashfs | ${SEC[ls_sfs3]} | ${MB[ls_sfs3]} |"
echo "| **lstore, both** | **$ls3_total** | $(maxof "${MB[ls_import]}" "${MB[ls_sfs3]}") |"
echo "| skopeo copy docker-archive: oci: | ${SEC[sk_arch]} | ${MB[sk_arch]} |"
echo "| umoci unpack | ${SEC[um_unpack3]} | ${MB[um_unpack3]} |"
echo "| mksquashfs | ${SEC[mk_sfs3]} | ${MB[mk_sfs3]} |"
echo "| **skopeo + umoci + mksquashfs** | **$alt3_total** | |"
echo "| ratio | $(ratio "$alt3_total" "$ls3_total") | |"
echo "| umoci + mksquashfs alone (the archive already an OCI layout) | $alt3_oci | ratio $(ratio "$alt3_oci" "$ls3_total") |"
echo
echo "Image sizes: lstore $(mib "$(stat -c %s ls.sfs)") MiB, mksquashfs $(mib "$(stat -c %s mk.sfs)") MiB."
