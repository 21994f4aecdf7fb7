#!/bin/bash
# The block-level registry benchmark: `lstore pull` by blocks (spec/registry.md §6) against whole
# layers (`skopeo copy`, and `lstore pull --layers`), on Debian's docker-registry on loopback,
# side by side in one run on the same images.
#
# Usage: Benchmarks/blocks-bench.sh [CHAIN_DIR]   (default /var/tmp/lstore-chain; needs root)
#   LSTORE=PATH     the lstore binary (default .build/release/lstore)
#   KEEP_SCRATCH=1  keep the scratch directory under /var/tmp
#
# A source store commits the chain's base, boot on base, gaming on boot, and gaming2: gaming with
# one package upgraded (every file the package `PKG` lists, default `gzip`, rewritten with other
# bytes). lstore pushes boot, gaming and gaming2 (images and block indexes). Then, into stores
# that hold boot (each pulled the same way): gaming, by blocks, by layers and by skopeo into an
# OCI layout that holds boot's blobs; gaming2 where gaming is here; gaming2 again. Bytes: lstore's
# own count of body bytes fetched; skopeo's, the growth of its layout's blobs. Manifest requests:
# the registry's log. Each command once, timed with GNU time; `sync` before each.
set -euo pipefail

chain_arg=${1:-/var/tmp/lstore-chain}
case $chain_arg in /*) CHAIN=$chain_arg ;; *) CHAIN=$PWD/$chain_arg ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "blocks-bench: needs root (device nodes, ownership)" >&2; exit 1; }
say() { echo "blocks-bench: $*" >&2; }
PKG=${PKG:-gzip}

for p in time python3 skopeo docker-registry curl; do
	dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
for l in base boot gaming; do [ -d "$CHAIN/rootfs-$l" ] || { say "missing $CHAIN/rootfs-$l"; exit 1; }; done
LSTORE=${LSTORE:-.build/release/lstore}
case $LSTORE in /*) ;; *) LSTORE=$ROOT/$LSTORE ;; esac
[ -x "$LSTORE" ] || { say "no lstore at $LSTORE (swift build -c release)"; exit 1; }

SCR=$(mktemp -d /var/tmp/blocks-bench.XXXXXX)
cleanup() {
	"$ROOT/Fixtures/registry.sh" stop "$SCR/registry" >/dev/null 2>&1 || true
	if [ -n "${KEEP_SCRATCH:-}" ]; then say "scratch kept in $SCR"; else rm -rf "$SCR"; fi
}
trap cleanup EXIT
export LSTORE_CACHE=$SCR/cache DOCKER_CONFIG=$SCR/docker
cd "$SCR"

# shellcheck source=Benchmarks/lib.sh disable=SC1091
. "$ROOT/Benchmarks/lib.sh"
MIB_DECIMALS=2
manifest_gets() { grep -c '"GET /v2/[^ ]*/manifests/' registry/registry.log || true; }
# Every body byte the registry sent, from its access log ("METHOD PATH HTTP/1.1" STATUS BYTES):
# the count a proxy in front of it would make, for lstore and skopeo alike.
served() { awk '$6 == "\"GET" && $10 ~ /^[0-9]+$/ { s += $10 } END { print s + 0 }' registry/registry.log; }
declare -A SERVED
timed() { # timed ID CMD...: run, and SERVED[ID] the bytes the registry sent meanwhile
	local id=$1 before
	before=$(served)
	run "$@"
	SERVED[$id]=$(($(served) - before))
}

# --- the images (untimed) ------------------------------------------------------------------------
say "scratch: $SCR"
"$LSTORE" --store SRC init >/dev/null
"$LSTORE" --store SRC commit "$CHAIN/rootfs-base" --ref base >/dev/null
"$LSTORE" --store SRC commit "$CHAIN/rootfs-boot" --ref boot --parent base >/dev/null
cp -a "$CHAIN/rootfs-gaming" tree
"$LSTORE" --store SRC commit tree --ref gaming --parent boot >/dev/null
list=tree/var/lib/dpkg/info/$PKG.list
[ -f "$list" ] || list=$(find tree/var/lib/dpkg/info -name "$PKG:*.list" | head -n 1)
[ -f "$list" ] || { say "package $PKG is not installed in rootfs-gaming (PKG=NAME)"; exit 1; }
upgraded=0
while read -r path; do
	if [ -f "tree$path" ] && [ ! -L "tree$path" ]; then
		printf 'upgraded %s\n' "$path" >>"tree$path"
		upgraded=$((upgraded + 1))
	fi
done <"$list"
"$LSTORE" --store SRC commit tree --ref gaming2 --parent gaming >/dev/null
HOST=$("$ROOT/Fixtures/registry.sh" start "$SCR/registry" anonymous)
REPO=docker://$HOST/bench/gaming
for r in boot gaming gaming2; do
	"$LSTORE" --store SRC push "$REPO:$r" "$r" --json >"out.push_$r"
done
layer_sizes() { skopeo inspect --raw --tls-verify=false "$REPO:$1" | python3 -c 'import json,sys; [print(l["size"]) for l in json.load(sys.stdin)["layers"]]'; }
gaming_layer=$(layer_sizes gaming | tail -n 1)
gaming2_layer=$(layer_sizes gaming2 | tail -n 1)
new_blocks=$(json push_gaming packBytesUploaded)
changed_blocks=$(json push_gaming2 packBytesUploaded)

for s in BL LA; do
	"$LSTORE" --store "$s" init >/dev/null
	"$LSTORE" --store "$s" pull "$REPO:boot" --ref gaming >/dev/null
done
skopeo copy --quiet --src-tls-verify=false "$REPO:boot" oci:SK:boot
sk_blobs() { du -sb SK/blobs | cut -f1; }

# --- 1. the child, its base here -----------------------------------------------------------------
timed bl_child "$LSTORE" --store BL pull "$REPO:gaming" --ref gaming --json
timed la_child "$LSTORE" --store LA pull "$REPO:gaming" --ref gaming --layers --json
before=$(sk_blobs)
timed sk_child skopeo copy --quiet --src-tls-verify=false "$REPO:gaming" oci:SK:gaming
sk_child_bytes=$(($(sk_blobs) - before))

# --- 2. one package upgraded ---------------------------------------------------------------------
timed bl_up "$LSTORE" --store BL pull "$REPO:gaming2" --ref gaming --json
timed la_up "$LSTORE" --store LA pull "$REPO:gaming2" --ref gaming --layers --json
before=$(sk_blobs)
timed sk_up skopeo copy --quiet --src-tls-verify=false "$REPO:gaming2" oci:SK:gaming2
sk_up_bytes=$(($(sk_blobs) - before))

# --- 3. no change --------------------------------------------------------------------------------
gets=$(manifest_gets)
timed bl_none "$LSTORE" --store BL pull "$REPO:gaming2" --ref gaming --json
bl_none_gets=$(($(manifest_gets) - gets))
gets=$(manifest_gets)
timed sk_none skopeo copy --quiet --src-tls-verify=false "$REPO:gaming2" oci:SK:gaming2
sk_none_gets=$(($(manifest_gets) - gets))
"$LSTORE" --store BL fsck >/dev/null
if [ "$(json bl_child by)" != blocks ] || [ "$(json bl_up by)" != blocks ]; then
	say "a pull did not go by blocks"
	exit 1
fi

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
echo "## Updates by blocks through a registry: \`Benchmarks/blocks-bench.sh\`"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores; lstore $("$LSTORE" --version); skopeo $(pkgver skopeo); docker-registry $(pkgver docker-registry)"
echo "on loopback (no referrers API: the tag fallback). The chain's gaming on boot; gaming2 is gaming with"
echo "package $PKG upgraded ($upgraded files rewritten). MiB are bytes fetched (body bytes; skopeo: its layout's growth)."
echo
echo "| case | lstore by blocks MiB | target | whole layers: skopeo MiB | lstore --layers MiB | by blocks s | skopeo s | --layers s |"
echo "|---|---|---|---|---|---|---|---|"
echo "| child image, base present | $(mib "$(json bl_child bytesFetched)") | ≤ 1.10 × $(mib "$new_blocks") (its new blocks): $(ratio "$(json bl_child bytesFetched)" "$new_blocks")× | $(mib "$sk_child_bytes") | $(mib "$(json la_child bytesFetched)") | ${SEC[bl_child]} | ${SEC[sk_child]} | ${SEC[la_child]} |"
echo "| one package upgraded | $(mib "$(json bl_up bytesFetched)") | ≤ 1.10 × $(mib "$changed_blocks") (the changed blocks): $(ratio "$(json bl_up bytesFetched)" "$changed_blocks")× | $(mib "$sk_up_bytes") | $(mib "$(json la_up bytesFetched)") | ${SEC[bl_up]} | ${SEC[sk_up]} | ${SEC[la_up]} |"
echo "| no change | $(mib "$(json bl_none bytesFetched)") ($bl_none_gets manifest GETs) | 0, one manifest request | - ($sk_none_gets manifest GETs) | - | ${SEC[bl_none]} | ${SEC[sk_none]} | - |"
echo
echo "The same pulls as the registry counted them (body bytes its access log gives, MiB):"
echo
echo "| case | by blocks | skopeo | --layers |"
echo "|---|---|---|---|"
echo "| child image, base present | $(mib "${SERVED[bl_child]}") | $(mib "${SERVED[sk_child]}") | $(mib "${SERVED[la_child]}") |"
echo "| one package upgraded | $(mib "${SERVED[bl_up]}") | $(mib "${SERVED[sk_up]}") | $(mib "${SERVED[la_up]}") |"
echo "| no change | $(mib "${SERVED[bl_none]}") | $(mib "${SERVED[sk_none]}") | - |"
echo
echo "The child pull: skopeo / lstore by blocks = $(ratio "${SEC[sk_child]}" "${SEC[bl_child]}")× in wall time (target ≥ 2); the"
echo "child's layer is $(mib "$gaming_layer") MiB, gaming2's $(mib "$gaming2_layer") MiB. Peak memory: by blocks ${MB[bl_child]} MiB,"
echo "by layers ${MB[la_child]} MiB, skopeo ${MB[sk_child]} MiB. Range requests: child $(json bl_child rangeRequests), upgrade $(json bl_up rangeRequests)."
