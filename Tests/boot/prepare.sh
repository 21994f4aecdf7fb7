#!/usr/bin/env bash
# Fetches what the boot tests need and caches it under $LSTORE_BOOT_CACHE (default
# /var/tmp/lstore-boot-cache): host packages, a Debian kernel + modules (extracted, never
# installed), and two chroot copies of the boot rootfs, one with initramfs-tools and one with
# dracut (the two cannot be installed side by side). Idempotent: a finished step leaves a stamp.
# Usage: prepare.sh [host|kernel|chroot-itools|chroot-dracut|all]
set -euo pipefail
CACHE=${LSTORE_BOOT_CACHE:-/var/tmp/lstore-boot-cache}
ROOTFS=${LSTORE_BOOT_ROOTFS:-${LSTORE_CHAIN:-/var/tmp/lstore-chain}/rootfs-boot}
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'prepare: %s\n' "$*" >&2; }

prepare_host() {
	local need=() p
	for p in qemu-system-x86 busybox-static squashfs-tools kmod cpio e2fsprogs util-linux zstd \
		grub-common grub-pc-bin xorriso libarchive-tools udev ovmf systemd-boot-efi dosfstools mtools fdisk; do
		dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
	done
	if ((${#need[@]})); then
		log "installing on the host: ${need[*]}"
		apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
}

# The newest linux-image-6.1.*-amd64 that linux-image-amd64 depends on, extracted with dpkg -x.
prepare_kernel() {
	if [[ -e $CACHE/kernel.ready ]]; then return; fi
	local dep deb
	(cd "$CACHE" && apt-get download linux-image-amd64 >/dev/null 2>&1)
	dep=$(dpkg-deb -f "$CACHE"/linux-image-amd64_*.deb Depends | grep -o 'linux-image-[0-9][^ ,]*-amd64' | head -n1)
	[[ -n $dep ]] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }
	(cd "$CACHE" && apt-get download "$dep" >/dev/null 2>&1)
	deb=$(find "$CACHE" -maxdepth 1 -name "${dep}_*.deb" | head -n1)
	rm -rf "$CACHE/kroot"
	dpkg -x "$deb" "$CACHE/kroot"
	KVER=$(ls "$CACHE/kroot/lib/modules")
	depmod -b "$CACHE/kroot" "$KVER"
	echo "$KVER" >"$CACHE/kernel.ready"
	log "kernel $KVER ready"
}

kver() { cat "$CACHE/kernel.ready"; }

# chroot NAME PACKAGE...: a copy of the rootfs with PACKAGEs and the kernel's modules.
prepare_chroot() {
	local name=$1; shift
	local dst=$CACHE/chroot-$name k
	if [[ -e $dst/.lstore-ready ]]; then return; fi
	k=$(kver)
	log "building chroot $name (${*})"
	rm -rf "$dst"
	cp -a "$ROOTFS" "$dst"
	rm -f "$dst/etc/resolv.conf"
	cp -L /etc/resolv.conf "$dst/etc/resolv.conf"
	mkdir -p "$dst/usr/lib/modules"
	cp -a "$CACHE/kroot/lib/modules/$k" "$dst/usr/lib/modules/"
	cp -a "$CACHE/kroot/boot/." "$dst/boot/"
	# Mounts live in a private namespace, gone when it ends.
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private bash -euo pipefail -c '
		dst=$1; shift
		mount -t proc proc "$dst/proc"
		mount --rbind /sys "$dst/sys"
		mount --rbind /dev "$dst/dev"
		chroot "$dst" apt-get update -qq
		chroot "$dst" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	' _ "$dst" "$@"
	chroot "$dst" depmod "$k"
	touch "$dst/.lstore-ready"
	log "chroot $name ready"
}

case ${1:-all} in
host) prepare_host ;;
kernel) prepare_kernel ;;
chroot-itools) prepare_kernel; prepare_chroot itools initramfs-tools busybox zstd ;;
chroot-dracut) prepare_kernel; prepare_chroot dracut dracut busybox zstd ;;
all)
	prepare_host
	prepare_kernel
	prepare_chroot itools initramfs-tools busybox zstd
	prepare_chroot dracut dracut busybox zstd
	;;
*) echo "usage: $0 [host|kernel|chroot-itools|chroot-dracut|all]" >&2; exit 2 ;;
esac
