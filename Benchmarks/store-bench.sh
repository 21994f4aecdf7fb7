#!/bin/bash
# The store benchmark: lstore side by side with mksquashfs, ostree, casync, restic and borg on the
# Debian layer chain (base, boot, dev, gaming; see ../shared/fixtures/debian-chain.sh).
#
# Usage: Benchmarks/store-bench.sh [CHAIN_DIR]        (default /var/tmp/lstore-chain; needs root)
#   LSTORE=PATH               the lstore binary (default .build/release/lstore, built with
#                             `swift build -c release` when that default is missing)
#   LSTORE_CHAIN_SCRIPT=PATH  builds the chain when CHAIN_DIR lacks it
#   KEEP_SCRATCH=1            keep the scratch directory under /var/tmp
#
# Every command is run once and timed with GNU time: wall seconds and peak RSS. The source trees
# are read once beforehand so that every tool starts from a warm page cache, and `sync` runs
# (untimed) before each measurement so that one tool's dirty pages are not written on the next
# one's clock. Each tool keeps its own default durability: ostree, restic, borg and lstore fsync;
# mksquashfs, casync and tar do not. Tables go to stdout, progress and failures to stderr.
# An lstore command that fails prints FAILED in its row and the run goes on.
set -euo pipefail

chain_arg=${1:-/var/tmp/lstore-chain}
case $chain_arg in /*) CHAIN=$chain_arg ;; *) CHAIN=$PWD/$chain_arg ;; esac
cd "$(dirname "$0")/.."
ROOT=$PWD

[ "$(id -u)" = 0 ] || { echo "store-bench: needs root (device nodes, ownership, chroot)" >&2; exit 1; }

say() { echo "store-bench: $*" >&2; }

# --- tools ---------------------------------------------------------------------------------------
APT_PACKAGES="squashfs-tools squashfs-tools-ng ostree casync restic borgbackup hyperfine time tar coreutils util-linux"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  say "installing" $missing
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
TIME=/usr/bin/time

# --- the chain -----------------------------------------------------------------------------------
if [ ! -d "$CHAIN/rootfs-gaming" ]; then
  say "building the chain in $CHAIN"
  bash "${LSTORE_CHAIN_SCRIPT:-../shared/fixtures/debian-chain.sh}" "$CHAIN" >&2
fi
LAYERS="base boot dev gaming"
for l in $LAYERS; do [ -d "$CHAIN/rootfs-$l" ] || { say "missing $CHAIN/rootfs-$l"; exit 1; }; done
DEV=$CHAIN/rootfs-dev

# --- lstore --------------------------------------------------------------------------------------
if [ -z "${LSTORE:-}" ]; then
  LSTORE=.build/release/lstore
  if [ ! -x "$LSTORE" ]; then
    say "building lstore (swift build -c release)"
    swift build -c release >&2 || say "lstore did not build: its rows will say FAILED"
  fi
fi
case $LSTORE in /*) ;; *) LSTORE=$ROOT/$LSTORE ;; esac

# --- scratch -------------------------------------------------------------------------------------
SCR=$(mktemp -d /var/tmp/store-bench.XXXXXX)
cleanup() {
  if [ -n "${KEEP_SCRATCH:-}" ]; then say "scratch kept in $SCR"; else rm -rf "$SCR"; fi
}
trap cleanup EXIT
export RESTIC_PASSWORD=lstore-bench RESTIC_CACHE_DIR=$SCR/restic-cache
# lstore's file cache (what lets an unchanged commit skip reading) starts empty, like borg's and restic's
export LSTORE_CACHE=$SCR/lstore-cache
export BORG_BASE_DIR=$SCR/borg-home BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
  BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
restic_init_flags=(--repository-version 2)
if restic init --help 2>/dev/null | grep -q -- --insecure-no-password; then
  unset RESTIC_PASSWORD; restic_init_flags+=(--insecure-no-password); RESTIC_NOPW=(--insecure-no-password)
else
  RESTIC_NOPW=()
fi

# --- measuring -----------------------------------------------------------------------------------
declare -A SEC MB
# run ID CMD...: times CMD; sets SEC[ID] (wall seconds) and MB[ID] (peak RSS, MiB), or FAILED.
run() {
  local id=$1; shift
  sync
  say "$id: $*"
  if "$TIME" -f '%e %M' -o "$SCR/time.$id" "$@" >"$SCR/log.$id" 2>&1; then
    local s kb
    read -r s kb < <(tail -n 1 "$SCR/time.$id")
    SEC[$id]=$s
    MB[$id]=$(awk -v k="$kb" 'BEGIN { printf "%.0f", k / 1024 }')
    return 0
  fi
  SEC[$id]=FAILED; MB[$id]=FAILED
  say "$id FAILED:"; tail -n 5 "$SCR/log.$id" | sed 's/^/    /' >&2
  return 1
}
# total ID IDS...: SEC[ID] = sum of the seconds, MB[ID] = the largest peak (FAILED if any failed).
total() {
  local id=$1 s=0 m=0 i; shift
  for i in "$@"; do
    if [ "${SEC[$i]:-FAILED}" = FAILED ]; then SEC[$id]=FAILED; MB[$id]=FAILED; return 0; fi
    s=$(awk -v a="$s" -v b="${SEC[$i]}" 'BEGIN { printf "%.2f", a + b }')
    m=$(( m > ${MB[$i]} ? m : ${MB[$i]} ))
  done
  SEC[$id]=$s; MB[$id]=$m
}
bytes() { { du -sb "$@" 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }'; }      # apparent size
disk() { { du -s --block-size=1 "$@" 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }'; }  # blocks
entries() { { find "$@" 2>/dev/null || true; } | wc -l; }
mib() { case $1 in ''|FAILED|-) echo "${1:--}" ;; *) awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }' ;; esac; }
# ratio OTHER LSTORE: OTHER/LSTORE to two decimals, or - when either is missing.
ratio() {
  case "$1/$2" in *FAILED*|*-/*|*/-|/*|*/) echo - ;;
    *) awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }' ;; esac
}
# row TOOL ID REF_ID [SIZE_BYTES REF_SIZE_BYTES]: one markdown row with ratios against REF_ID.
row() {
  local tool=$1 id=$2 ref=$3 size=${4:-} rsize=${5:-}
  local s=${SEC[$id]:-FAILED} m=${MB[$id]:-FAILED}
  if [ $# -ge 4 ]; then
    [ "$s" = FAILED ] && size=FAILED
    [ "${SEC[$ref]:-FAILED}" = FAILED ] && rsize=FAILED
    printf '| %s | %s | %s | %s | %s | %s |\n' "$tool" "$s" "$m" "$(mib "$size")" \
      "$(ratio "$s" "${SEC[$ref]:-FAILED}")" "$(ratio "$size" "$rsize")"
  else
    printf '| %s | %s | %s | %s |\n' "$tool" "$s" "$m" "$(ratio "$s" "${SEC[$ref]:-FAILED}")"
  fi
}

# --- setup (untimed) -----------------------------------------------------------------------------
say "scratch: $SCR"
cd "$SCR"
mkdir -p out restic-cache borg-home
# ostree 2022.7 refuses device nodes, fifos and sockets ("Not a regular file or symlink"), and its
# --skip-list is applied only after that check: it commits copies of the trees without them.
for l in $LAYERS; do
  cp -a "$CHAIN/rootfs-$l" "ostree-src-$l"
  find "ostree-src-$l" \( -type b -o -type c -o -type p -o -type s \) -delete
done
OSTREE_SKIPPED=$(find "$DEV" \( -type b -o -type c -o -type p -o -type s \) | wc -l)
# the tarball that `tar -x` extracts in section 4
tar -cf dev.tar --xattrs --acls -C "$DEV" .
# read every source tree once (tar skips file data when it writes straight to /dev/null)
for l in $LAYERS; do tar -cf - -C "$CHAIN" "rootfs-$l" | cat >/dev/null; done
cat dev.tar >/dev/null

# --- header --------------------------------------------------------------------------------------
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
echo "# lstore store benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -r)"
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores; memory: $(free -g | awk '/^Mem:/ { print $2 }') GiB"
echo "- filesystem of the scratch dir: $(df -T "$SCR" | awk 'NR == 2 { print $2 }')"
echo "- lstore: $("$LSTORE" --version 2>/dev/null || echo "not available ($LSTORE)")"
echo "- mksquashfs/unsquashfs $(pkgver squashfs-tools), squashfs-tools-ng $(pkgver squashfs-tools-ng), ostree $(pkgver ostree), casync $(pkgver casync), restic $(pkgver restic), borg $(pkgver borgbackup), GNU tar $(pkgver tar), GNU time $(pkgver time), hyperfine $(pkgver hyperfine)"
echo "- chain: $CHAIN"
for l in $LAYERS; do
  echo "  - rootfs-$l: $(mib "$(bytes "$CHAIN/rootfs-$l")") MiB, $(entries "$CHAIN/rootfs-$l") entries"
done
echo "- seconds: wall clock; peak MiB: max RSS (GNU time %M); sizes: du -sb (apparent bytes), MiB"
echo "- ratios are tool / lstore: above 1 means lstore is faster or smaller"
echo

# --- 1. commit of a new tree ---------------------------------------------------------------------
DEFAULT_LEVEL=6   # what `lstore init` chooses
run ls_init "$LSTORE" init --store "$SCR/S" || true
run ls_commit "$LSTORE" --store "$SCR/S" commit "$DEV" --ref dev || true
run sq_make_default mksquashfs "$DEV" "$SCR/dev-default.sfs" -comp zstd -Xcompression-level $DEFAULT_LEVEL -b 128K \
  -processors 2 -noappend -no-progress || true
SQD=$(bytes dev-default.sfs); rm -f dev-default.sfs
run ls_init3 "$LSTORE" init --store "$SCR/S_3" --compression zstd:3 || true
run ls_commit3 "$LSTORE" --store "$SCR/S_3" commit "$DEV" --ref dev || true
run sq_make mksquashfs "$DEV" "$SCR/dev.sfs" -comp zstd -Xcompression-level 3 -b 128K -processors 2 \
  -noappend -no-progress || true
ostree --repo="$SCR/OS" init --mode=archive
run os_commit ostree --repo="$SCR/OS" commit -b dev --tree=dir="$SCR/ostree-src-dev" || true
mkdir -p CS
run ca_make casync make --store="$SCR/CS" "$SCR/dev.caidx" "$DEV" || true
restic -r "$SCR/RS" init "${restic_init_flags[@]}" >/dev/null
run rs_backup env -C "$DEV" restic -r "$SCR/RS" "${RESTIC_NOPW[@]}" backup --tag dev . || true
borg init -e none "$SCR/BG" >/dev/null 2>&1
run bg_create env -C "$DEV" borg create --compression zstd,3 "$SCR/BG::dev" . || true

echo "## 1. Commit of a new tree (rootfs-dev, $(mib "$(bytes "$DEV")") MiB)"
echo
echo "| tool | seconds | peak MiB | size MiB | time × | size × |"
echo "|---|---|---|---|---|---|"
LSZ=$(bytes S); LSZ3=$(bytes S_3)
row "lstore commit (zstd:$DEFAULT_LEVEL, the default)" ls_commit ls_commit "$LSZ" "$LSZ"
row "mksquashfs (zstd $DEFAULT_LEVEL, 128K, 2 cpus)" sq_make_default ls_commit "$SQD" "$LSZ"
row "ostree commit (archive; $OSTREE_SKIPPED device nodes left out)" os_commit ls_commit "$(bytes OS)" "$LSZ"
row "casync make" ca_make ls_commit "$(bytes CS dev.caidx)" "$LSZ"
row "restic backup" rs_backup ls_commit "$(bytes RS)" "$LSZ"
echo
echo "At zstd level 3:"
echo
echo "| tool | seconds | peak MiB | size MiB | time × | size × |"
echo "|---|---|---|---|---|---|"
row "lstore commit (zstd:3)" ls_commit3 ls_commit3 "$LSZ3" "$LSZ3"
row "mksquashfs (zstd 3, 128K, 2 cpus)" sq_make ls_commit3 "$(bytes dev.sfs)" "$LSZ3"
row "borg create (zstd,3)" bg_create ls_commit3 "$(bytes BG)" "$LSZ3"
echo

# --- 2. the same tree again, unchanged -----------------------------------------------------------
declare -A BEFORE
BEFORE[ls]=$(bytes S); BEFORE[os]=$(bytes OS); BEFORE[ca]=$(bytes CS); BEFORE[rs]=$(bytes RS); BEFORE[bg]=$(bytes BG)
run ls_recommit "$LSTORE" --store "$SCR/S" commit "$DEV" --ref dev || true
run sq_remake mksquashfs "$DEV" "$SCR/dev2.sfs" -comp zstd -Xcompression-level $DEFAULT_LEVEL -b 128K -processors 2 \
  -noappend -no-progress || true
SQ2=$(bytes dev2.sfs); rm -f dev2.sfs
run os_recommit ostree --repo="$SCR/OS" commit -b dev --tree=dir="$SCR/ostree-src-dev" || true
run ca_remake casync make --store="$SCR/CS" "$SCR/dev2.caidx" "$DEV" || true
run rs_rebackup env -C "$DEV" restic -r "$SCR/RS" "${RESTIC_NOPW[@]}" backup --tag dev . || true
run bg_recreate env -C "$DEV" borg create --compression zstd,3 "$SCR/BG::dev2" . || true

echo "## 2. The same tree committed again, unchanged"
echo
echo "| tool | seconds | peak MiB | store growth MiB | time × | growth × |"
echo "|---|---|---|---|---|---|"
LSZ2=$(( $(bytes S) - ${BEFORE[ls]} ))
row "lstore commit" ls_recommit ls_recommit "$LSZ2" "$LSZ2"
row "mksquashfs (a whole new image)" sq_remake ls_recommit "$SQ2" "$LSZ2"
row "ostree commit" os_recommit ls_recommit "$(( $(bytes OS) - ${BEFORE[os]} ))" "$LSZ2"
row "casync make (no --cache; growth includes the new .caidx)" ca_remake ls_recommit "$(( $(bytes CS dev2.caidx) - ${BEFORE[ca]} ))" "$LSZ2"
row "restic backup (parent snapshot)" rs_rebackup ls_recommit "$(( $(bytes RS) - ${BEFORE[rs]} ))" "$LSZ2"
row "borg create (files cache)" bg_recreate ls_recommit "$(( $(bytes BG) - ${BEFORE[bg]} ))" "$LSZ2"
echo

# --- 4. checkout (uses the stores of section 1; printed after section 3) -------------------------
SRC_ENTRIES=$(entries "$DEV")
declare -A OUT_ENTRIES OUT_BYTES
checkout() { # ID DIR CMD...: runs CMD to fill DIR, counts what it wrote, removes it
  local id=$1 dir=$2 root; shift 2
  rm -rf "$dir"; mkdir -p "$dir"
  run "$id" "$@" || true
  root=$dir; [ -d "$dir/t" ] && root=$dir/t
  if [ "${SEC[$id]}" = FAILED ]; then OUT_ENTRIES[$id]=-; OUT_BYTES[$id]=-
  else OUT_ENTRIES[$id]=$(entries "$root"); OUT_BYTES[$id]=$(bytes "$root"); fi
  rm -rf "$dir"
}
checkout ls_checkout out/ls "$LSTORE" --store "$SCR/S" checkout dev --dir "$SCR/out/ls/t"
checkout tar_x out/tar tar -xf "$SCR/dev.tar" --xattrs --acls -C "$SCR/out/tar"
checkout sq_unsquash out/sq unsquashfs -d "$SCR/out/sq/t" -n -p 2 "$SCR/dev.sfs"
checkout os_checkout out/os ostree --repo="$SCR/OS" checkout dev "$SCR/out/os/t"
checkout ca_extract out/ca casync extract --store="$SCR/CS" "$SCR/dev.caidx" "$SCR/out/ca/t"
checkout rs_restore out/rs restic -r "$SCR/RS" "${RESTIC_NOPW[@]}" restore latest --tag dev --target "$SCR/out/rs"
checkout bg_extract out/bg env -C "$SCR/out/bg" borg extract "$SCR/BG::dev"
# a tarball out of the store, next to tar -c of the tree
run ls_checkout_tar "$LSTORE" --store "$SCR/S" checkout dev --tar "$SCR/out/ls.tar" || true
LS_TAR_BYTES=$(bytes out/ls.tar); rm -f out/ls.tar
run tar_c tar -cf "$SCR/out/tree.tar" --xattrs --acls -C "$DEV" . || true
TREE_TAR_BYTES=$(bytes out/tree.tar); rm -f out/tree.tar

# --- 3. the whole chain --------------------------------------------------------------------------
parent_of() { case $1 in base) ;; boot) echo base ;; dev|gaming) echo boot ;; esac; }
ids() { local p=$1 l; for l in $LAYERS; do echo "${p}_$l"; done; }
run ls_chain_init "$LSTORE" init --store "$SCR/S3" || true
for l in $LAYERS; do
  p=$(parent_of $l)
  run "lsc_$l" "$LSTORE" --store "$SCR/S3" commit "$CHAIN/rootfs-$l" --ref "$l" ${p:+--parent "$p"} || true
done
for l in $LAYERS; do
  run "sqc_$l" mksquashfs "$CHAIN/rootfs-$l" "$SCR/chain-$l.sfs" -comp zstd -Xcompression-level $DEFAULT_LEVEL -b 128K \
    -processors 2 -noappend -no-progress || true
done
ostree --repo="$SCR/OS3" init --mode=archive
for l in $LAYERS; do
  p=$(parent_of $l); pflag=()
  [ -n "$p" ] && pflag=(--parent="$(ostree --repo="$SCR/OS3" rev-parse "$p")")
  run "osc_$l" ostree --repo="$SCR/OS3" commit -b "$l" "${pflag[@]}" --tree=dir="$SCR/ostree-src-$l" || true
done
mkdir -p CS3
for l in $LAYERS; do
  run "cac_$l" casync make --store="$SCR/CS3" "$SCR/CS3-$l.caidx" "$CHAIN/rootfs-$l" || true
done
restic -r "$SCR/RS3" init "${restic_init_flags[@]}" >/dev/null
for l in $LAYERS; do
  run "rsc_$l" env -C "$CHAIN/rootfs-$l" restic -r "$SCR/RS3" "${RESTIC_NOPW[@]}" backup --tag "$l" . || true
done
borg init -e none "$SCR/BG3" >/dev/null 2>&1
for l in $LAYERS; do
  run "bgc_$l" env -C "$CHAIN/rootfs-$l" borg create --compression zstd,3 "$SCR/BG3::$l" . || true
done
for p in lsc sqc osc cac rsc bgc; do total "$p" $(ids $p); done
RAW=0; for l in $LAYERS; do RAW=$(( RAW + $(bytes "$CHAIN/rootfs-$l") )); done

echo "## 3. Store size for the whole chain (base; boot on base; dev and gaming on boot)"
echo
echo "| tool | seconds (4 commits) | peak MiB | size MiB | time × | size × | on disk MiB | files |"
echo "|---|---|---|---|---|---|---|---|"
L3=$(bytes S3)
row3() { # TOOL ID PATHS...
  local tool=$1 id=$2; shift 2
  local r; r=$(row "$tool" "$id" lsc "$(bytes "$@")" "$L3")
  if [ "${SEC[$id]}" = FAILED ]; then echo "$r - | - |"; return 0; fi
  echo "$r $(mib "$(disk "$@")") | $({ find "$@" -type f 2>/dev/null || true; } | wc -l) |"
}
row3 "lstore (zstd:$DEFAULT_LEVEL)" lsc S3
row3 "ostree (archive)" osc OS3
row3 "casync" cac CS3 CS3-*.caidx
row3 "restic" rsc RS3
row3 "borg (zstd,3)" bgc BG3
row3 "4 squashfs images (no sharing)" sqc chain-*.sfs
echo "| the 4 trees themselves | - | - | $(mib "$RAW") | - | $(ratio "$RAW" "$( [ "${SEC[lsc]}" = FAILED ] && echo FAILED || echo "$L3")") | - | - |"
echo
echo "Per layer (seconds):"
echo
echo "| layer | lstore | mksquashfs | ostree | casync | restic | borg |"
echo "|---|---|---|---|---|---|---|"
for l in $LAYERS; do
  echo "| $l | ${SEC[lsc_$l]} | ${SEC[sqc_$l]} | ${SEC[osc_$l]} | ${SEC[cac_$l]} | ${SEC[rsc_$l]} | ${SEC[bgc_$l]} |"
done
echo
if "$LSTORE" --store "$SCR/S3" stats >"$SCR/stats.txt" 2>&1; then
  echo "lstore stats:"; echo; echo '```'; cat "$SCR/stats.txt"; echo '```'; echo
fi

echo "## 4. Checkout of rootfs-dev into a new directory ($SRC_ENTRIES entries in the source)"
echo
echo "| tool | seconds | peak MiB | time × | entries | MiB written |"
echo "|---|---|---|---|---|---|"
row4() { echo "$(row "$1" "$2" ls_checkout) ${OUT_ENTRIES[$2]} | $(mib "${OUT_BYTES[$2]}") |"; }
row4 "lstore checkout --dir" ls_checkout
row4 "tar -x (of a tarball made beforehand)" tar_x
row4 "unsquashfs" sq_unsquash
row4 "ostree checkout (archive repo: copies; no device nodes)" os_checkout
row4 "casync extract" ca_extract
row4 "restic restore" rs_restore
row4 "borg extract" bg_extract
echo
echo "| tarball out | seconds | peak MiB | time × | MiB |"
echo "|---|---|---|---|---|"
echo "$(row "lstore checkout --tar" ls_checkout_tar ls_checkout_tar) $( [ "${SEC[ls_checkout_tar]}" = FAILED ] && echo - || mib "$LS_TAR_BYTES") |"
echo "$(row "tar -c of the tree" tar_c ls_checkout_tar) $(mib "$TREE_TAR_BYTES") |"
echo

echo "## 5. Peak memory of each lstore command"
echo
echo "| lstore command | seconds | peak MiB |"
echo "|---|---|---|"
lrow() { printf '| %s | %s | %s |\n' "$1" "${SEC[$2]:-FAILED}" "${MB[$2]:-FAILED}"; }
lrow "init" ls_init
lrow "commit rootfs-dev (new store)" ls_commit
lrow "commit rootfs-dev again (unchanged)" ls_recommit
for l in $LAYERS; do p=$(parent_of $l); lrow "commit rootfs-$l${p:+ --parent $p} (chain)" "lsc_$l"; done
lrow "checkout dev --dir" ls_checkout
lrow "checkout dev --tar" ls_checkout_tar
