# shellcheck shell=bash
# shellcheck disable=SC2034  # SEC and MB are read by the scripts that source this
# Sourced by the benchmarks (sync-bench.sh, registry-bench.sh, blocks-bench.sh), after they define
# say() and cd into their scratch directory.

declare -A SEC MB
# run ID CMD...: runs CMD once after a sync, timed by GNU time: SEC[ID] wall seconds, MB[ID] peak
# RSS in MiB; its standard output in out.ID, its standard error in err.ID. A failure ends the run.
run() {
	local id=$1 kb
	shift
	sync
	say "$id: $*"
	/usr/bin/time -f '%e %M' -o "time.$id" "$@" >"out.$id" 2>"err.$id" || {
		say "$id FAILED"
		cat "err.$id" >&2
		exit 1
	}
	read -r "SEC[$id]" kb < <(tail -n 1 "time.$id")
	MB[$id]=$((kb / 1024))
}
# json ID KEY: KEY of the JSON object in out.ID.
json() { python3 -c "import json,sys; print(json.load(open('out.$1'))['$2'])"; }
# mib BYTES: in MiB, with MIB_DECIMALS decimals (default 1).
mib() { awk -v b="$1" -v d="${MIB_DECIMALS:-1}" 'BEGIN { printf "%.*f", d, b / 1048576 }'; }
# ratio A B: A / B to two decimals, "-" when B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
