#!/usr/bin/env bash
# An image built by a real `docker build`, saved as `docker save` writes it, for the import tests:
#
#   docker-build.sh DIR ROOTFS OUT.tar
#
# DIR is a Docker engine's directory (Fixtures/dockerd.sh start DIR). ROOTFS, a root filesystem
# tarball or directory (a Debian root, or any root with /bin/sh and /etc/motd), is imported as
# image `base`; a Dockerfile `FROM base` whose one RUN (with --network host: the engine has no
# bridge) writes /etc/lstore-built and /opt/lstore/hello and deletes /etc/motd is built as
# `child`; `docker save child` is written to OUT.tar (the legacy layout: manifest.json and
# <id>/layer.tar, two layers). Prints each step's time in seconds on standard error.
set -euo pipefail
[ $# -eq 3 ] || {
	echo "usage: docker-build.sh DIR ROOTFS OUT.tar" >&2
	exit 2
}
dir=$(cd "$1" && pwd) rootfs=$2 out=$3
[ -S "$dir/docker.sock" ] || {
	echo "docker-build.sh: $dir: no Docker engine's socket there (Fixtures/dockerd.sh start $dir)" >&2
	exit 1
}
[ -e "$rootfs" ] || {
	echo "docker-build.sh: $rootfs: no such file or directory" >&2
	exit 1
}
cli=/usr/bin/docker
[ -x "$cli" ] || cli=$(command -v docker)
docker() { "$cli" -H "unix://$dir/docker.sock" "$@"; }
export DOCKER_BUILDKIT=0

# Runs a step and prints "docker-build.sh: STEP N.N s" on standard error.
step() {
	local name=$1 started ended
	shift
	started=$(date +%s.%N)
	"$@"
	ended=$(date +%s.%N)
	echo "docker-build.sh: $name $(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.1f", b - a }') s" >&2
}

import_base() {
	if [ -d "$rootfs" ]; then
		tar -C "$rootfs" --numeric-owner --xattrs -cf - . | docker import - base >/dev/null
	else
		docker import "$rootfs" base >/dev/null
	fi
}

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cat >"$context/Dockerfile" <<'EOF'
FROM base
RUN echo "built by docker build" > /etc/lstore-built && mkdir -p /opt/lstore && echo hello > /opt/lstore/hello && rm /etc/motd
EOF

step import import_base
step build docker build -q --network host -t child "$context" >/dev/null
step save docker save -o "$out" child
