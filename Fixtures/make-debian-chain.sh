#!/bin/bash
# The Debian layer chain for integration tests, boot tests and benchmarks, when the shared fixture
# script is not at hand: DIR/rootfs-base (debootstrap minbase, bookworm), rootfs-boot (+ systemd,
# udev, kmod, iproute2), rootfs-dev (boot + build-essential git python3), rootfs-gaming (boot +
# mesa, SDL, a font). Layers already there are kept. Needs root and a Debian mirror.
# Usage: Fixtures/make-debian-chain.sh DIR     (MIRROR=URL to use another mirror)
set -euo pipefail
dir=${1:?usage: make-debian-chain.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ ! -d rootfs-base ]; then
  rm -rf base.partial
  debootstrap --variant=minbase bookworm base.partial ${MIRROR:-} > debootstrap.log 2>&1 ||
    { tail -20 debootstrap.log >&2; exit 1; }
  mv base.partial rootfs-base
fi
layer() {  # NAME PARENT PACKAGE...
  local name=$1 parent=$2
  shift 2
  [ -d "rootfs-$name" ] && return 0
  rm -rf "$name.partial"
  cp -a "rootfs-$parent" "$name.partial"
  mount -t proc proc "$name.partial/proc"
  if ! chroot "$name.partial" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@" > "apt-$name.log" 2>&1; then
    umount "$name.partial/proc"
    tail -20 "apt-$name.log" >&2
    exit 1
  fi
  chroot "$name.partial" apt-get clean
  umount "$name.partial/proc"
  mv "$name.partial" "rootfs-$name"
}
layer boot base systemd-sysv udev kmod iproute2
layer dev boot build-essential git python3
layer gaming boot libgl1-mesa-dri mesa-vulkan-drivers libsdl2-2.0-0 fonts-dejavu-core
