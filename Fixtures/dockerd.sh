#!/usr/bin/env bash
# A Docker engine of its own for the tests: data, state and socket under DIR, no bridge, no
# iptables rules, so that it creates no docker0 and touches no other network than loopback and
# the host's. Debian's docker.service and docker.socket are never used.
#
#   dockerd.sh start DIR   starts dockerd, waits until it answers, prints its socket's path
#   dockerd.sh stop DIR    stops it (and the containerd it started)
#
# DIR holds docker.sock (clients: docker -H unix://DIR/docker.sock), pid, dockerd.log, data/ and
# exec/. Needs root and docker.io.
set -euo pipefail
# shellcheck source=Fixtures/inherited-fds.sh disable=SC1091
. "$(dirname "$0")/inherited-fds.sh"

usage() {
	echo "usage: dockerd.sh start DIR | dockerd.sh stop DIR" >&2
	exit 2
}

# The docker command of the engine's own package: another docker CLI earlier on PATH may speak
# a newer API than this engine.
docker_cli() {
	if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

# True when pid $1 is a live process (not a zombie) whose command line contains $2.
running() {
	local pid=$1 mark=$2 state
	[ -r "/proc/$pid/cmdline" ] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
	[ "$state" != Z ] || return 1
	# Not `tr | grep -q`: grep leaving early would fail the pipe (pipefail) on a match.
	local command
	command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $command == *"$mark"* ]]
}

start() {
	local dir=$1
	mkdir -p "$dir/data" "$dir/exec"
	dir=$(cd "$dir" && pwd)
	if [ -f "$dir/pid" ] && running "$(cat "$dir/pid")" "$dir/docker.sock"; then
		echo "dockerd.sh: $dir: a Docker engine already runs there (pid $(cat "$dir/pid"))" >&2
		exit 1
	fi
	# A unix socket's path has at most 107 bytes; containerd's shim sockets live below exec/.
	if [ ${#dir} -gt 60 ]; then
		echo "dockerd.sh: $dir: path too long for the engine's sockets (at most 60 bytes)" >&2
		exit 2
	fi
	rm -f "$dir/docker.sock" "$dir/pid"
	dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock" \
		--pidfile "$dir/pid" --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
		--ip-masq=false --userland-proxy=false \
		</dev/null >"$dir/dockerd.log" 2>&1 &
	local pid=$! cli
	echo "$pid" >"$dir/started.pid"
	cli=$(docker_cli)
	for _ in $(seq 600); do
		if ! running "$pid" "$dir/docker.sock"; then
			echo "dockerd.sh: dockerd exited: $(tail -n 3 "$dir/dockerd.log")" >&2
			stop "$dir"
			exit 1
		fi
		if [ -S "$dir/docker.sock" ] && "$cli" -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
			echo "$pid" >"$dir/pid"
			echo "$dir/docker.sock"
			return 0
		fi
		sleep 0.1
	done
	echo "dockerd.sh: dockerd did not answer on $dir/docker.sock within 60 s" >&2
	stop "$dir"
	exit 1
}

stop() {
	local dir=$1 pid
	[ -d "$dir" ] || return 0
	dir=$(cd "$dir" && pwd)
	pid=$(cat "$dir/pid" "$dir/started.pid" 2>/dev/null | head -n 1 || true)
	if [ -n "$pid" ] && running "$pid" "$dir/docker.sock"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 200); do
			running "$pid" "$dir/docker.sock" || break
			sleep 0.1
		done
		running "$pid" "$dir/docker.sock" && kill -9 "$pid" 2>/dev/null
	fi
	# The containerd dockerd started, if it outlived dockerd.
	local containerd
	for containerd in $(pgrep -x containerd 2>/dev/null || true); do
		if running "$containerd" "$dir/exec/"; then
			kill "$containerd" 2>/dev/null || true
		fi
	done
	rm -f "$dir/pid" "$dir/started.pid"
	umount_below "$dir"
}

# Unmounts whatever the engine left mounted below $1 (overlay layers, shm), deepest first.
umount_below() {
	local dir=$1 mount
	awk '{print $5}' /proc/self/mountinfo | grep -F -- "$dir/" | sort -r | while read -r mount; do
		umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
	done
}

case ${1:-} in
start)
	[ $# -eq 2 ] || usage
	start "$2"
	;;
stop)
	[ $# -eq 2 ] || usage
	stop "$2"
	;;
*) usage ;;
esac
