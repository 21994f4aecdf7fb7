#!/bin/bash
# The sync benchmark: `lstore pull` from `lstore serve` over loopback, side by side with
# `ostree pull` from an archive repo served by a static HTTP server (python3 -m http.server), on
# the Debian layer chain (base; boot on base; gaming on boot).
#
# Usage: Benchmarks/sync-bench.sh [CHAIN_DIR]        (default /var/tmp/lstore-chain; needs root)
#   LSTORE=PATH     the lstore binary (default .build/release/lstore)
#   KEEP_SCRATCH=1  keep the scratch directory under /var/tmp
#
# Three pulls of the top layer, gaming: into an empty store; into a store that has its parent,
# boot; and again when it is already there. Both sides pull the whole history (ostree --depth=-1),
# as lstore does. Each command runs once, timed with GNU time (wall seconds, peak RSS). Bytes on
# the wire: lstore's own count (every byte sent and received, HTTP included); for ostree, the bytes
# of the object files it fetched (what its HTTP server sent, headers left out).
set -euo pipefail

chain_arg=${1:-/var/tmp/lstore-chain}
case $chain_arg in /*) CHAIN=$chain_arg ;; *) CHAIN=$PWD/$chain_arg ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "sync-bench: needs root (device nodes, ownership)" >&2; exit 1; }
say() { echo "sync-bench: $*" >&2; }

for p in ostree time python3; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
for l in base boot gaming; do [ -d "$CHAIN/rootfs-$l" ] || { say "missing $CHAIN/rootfs-$l"; exit 1; }; done
LSTORE=${LSTORE:-.build/release/lstore}
case $LSTORE in /*) ;; *) LSTORE=$ROOT/$LSTORE ;; esac
[ -x "$LSTORE" ] || { say "no lstore at $LSTORE (swift build -c release)"; exit 1; }

SCR=$(mktemp -d /var/tmp/sync-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_SCRATCH:-}" ]; then say "scratch kept in $SCR"; else rm -rf "$SCR"; fi
}
trap cleanup EXIT
export LSTORE_CACHE=$SCR/cache
cd "$SCR"

# shellcheck source=Benchmarks/lib.sh disable=SC1091
. "$ROOT/Benchmarks/lib.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the sources (untimed) -----------------------------------------------------------------------
say "scratch: $SCR"
"$LSTORE" --store SRC init >/dev/null
"$LSTORE" --store SRC commit "$CHAIN/rootfs-base" --ref base >/dev/null
"$LSTORE" --store SRC commit "$CHAIN/rootfs-boot" --ref boot --parent base >/dev/null
"$LSTORE" --store SRC commit "$CHAIN/rootfs-gaming" --ref gaming --parent boot >/dev/null
ostree --repo=OSRC init --mode=archive
prev=()
for l in base boot gaming; do
  # ostree refuses device nodes, fifos and sockets: its trees leave them out.
  cp -a "$CHAIN/rootfs-$l" "ostree-src-$l"
  find "ostree-src-$l" \( -type b -o -type c -o -type p -o -type s \) -delete
  ostree --repo=OSRC commit -b "$l" "${prev[@]}" --tree=dir="ostree-src-$l" >/dev/null
  prev=(--parent="$(ostree --repo=OSRC rev-parse "$l")")
  rm -rf "ostree-src-$l"
done
# gaming's parent is boot in both.
LPORT=$(free_port)
"$LSTORE" --store SRC serve --listen "127.0.0.1:$LPORT" >serve.log 2>&1 &
PIDS+=($!)
OPORT=$(free_port)
python3 -m http.server "$OPORT" --bind 127.0.0.1 --directory OSRC >http.log 2>&1 &
PIDS+=($!)
sleep 1
URL=http://127.0.0.1:$LPORT
ostree_repo() {  # a new archive repo with the source as remote `src`
  ostree --repo="$1" init --mode=archive
  ostree --repo="$1" remote add --no-gpg-verify src "http://127.0.0.1:$OPORT"
}

# --- 1. full pull of gaming into an empty store ---------------------------------------------------
"$LSTORE" --store FULL init >/dev/null
run ls_full "$LSTORE" --store FULL pull "$URL" gaming --json
ostree_repo OFULL
run os_full ostree --repo=OFULL pull --depth=-1 src gaming
"$LSTORE" --store FULL fsck >/dev/null

# --- 2. gaming when boot (its parent) is there ----------------------------------------------------
"$LSTORE" --store INC init >/dev/null
"$LSTORE" --store INC pull "$URL" boot >/dev/null
run ls_inc "$LSTORE" --store INC pull "$URL" gaming --json
ostree_repo OINC
ostree --repo=OINC pull --depth=-1 src boot >/dev/null
os_before=$(du -sb OINC/objects | cut -f1)
run os_inc ostree --repo=OINC pull --depth=-1 src gaming
os_inc_bytes=$(( $(du -sb OINC/objects | cut -f1) - os_before ))

# --- 3. no-op: gaming again -----------------------------------------------------------------------
run ls_noop "$LSTORE" --store FULL pull "$URL" gaming --json
run os_noop ostree --repo=OFULL pull --depth=-1 src gaming

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
echo "## Sync: pull of the Debian chain's top layer over loopback"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores; lstore $($LSTORE --version) (store zstd:6, 128K blocks) from \`lstore serve\`;"
echo "ostree $(pkgver ostree) (archive repo) from \`python3 -m http.server\`. Each side pulls gaming with all its history."
echo
echo "| pull | lstore s | ostree s | lstore / ostree | lstore peak MiB | ostree peak MiB | lstore wire MiB | lstore objects MiB (blocks) | ostree objects MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
row() {  # NAME LSID OSID OSTREE_BYTES
  local wire stored blocks
  wire=$(json "$2" wireBytes); stored=$(json "$2" storedBytes); blocks=$(json "$2" blockBytes)
  echo "| $1 | ${SEC[$2]} | ${SEC[$3]} | $(ratio "${SEC[$2]}" "${SEC[$3]}") | ${MB[$2]} | ${MB[$3]} | $(mib "$wire") | $(mib "$stored") ($(mib "$blocks")) | $(mib "$4") |"
  echo "$1: wire / blocks lacked = $(ratio "$wire" "$blocks")" >> ratios
}
row "full (empty store)" ls_full os_full "$(du -sb OFULL/objects | cut -f1)"
row "incremental (boot present)" ls_inc os_inc "$os_inc_bytes"
row "no-op (gaming present)" ls_noop os_noop 0
echo
echo "Bytes on the wire over the compressed size of the blocks the receiver lacked (target ≤ 1.05):"
echo
sed 's/^/- /' ratios | grep -v "^- no-op"
echo "- no-op: $(json ls_noop wireBytes) bytes on the wire"
