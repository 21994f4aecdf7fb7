#!/usr/bin/env bash
# Builds a busybox initramfs the way mkinitcpio would for HOOKS=(lstore), reproducing mkinitcpio's
# install-hook functions (add_module, add_binary, add_file, add_dir, add_symlink, add_runscript)
# and running lstore's own install hook (hooks/initcpio/install/lstore) unchanged.
# Usage: build.sh KVER MODULES_ROOT OUTPUT   (MODULES_ROOT holds lib/modules/KVER)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
KERNELVERSION=$1
MODROOT=$2
OUT=$3
BUILDROOT=$(mktemp -d /var/tmp/lstore-initcpio.XXXXXX)
trap 'rm -rf "$BUILDROOT"' EXIT

# mkinitcpio's layout: everything in /usr/bin and /usr/lib.
mkdir -p "$BUILDROOT"/{usr/bin,usr/lib,usr/lib64,dev,proc,sys,run,new_root,hooks,etc}
ln -s usr/bin "$BUILDROOT/bin"
ln -s usr/bin "$BUILDROOT/sbin"
ln -s bin "$BUILDROOT/usr/sbin"
ln -s usr/lib "$BUILDROOT/lib"
ln -s usr/lib64 "$BUILDROOT/lib64"
mknod -m 600 "$BUILDROOT/dev/console" c 5 1
mknod -m 666 "$BUILDROOT/dev/null" c 1 3

_dest() { # where a host path lands in the image (/bin, /sbin, /lib, /lib64 are under /usr)
	case $1 in
	/bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
	/usr/sbin/*) echo "/usr/bin/${1#/usr/sbin/}" ;;
	*) echo "$1" ;;
	esac
}
add_dir() {
	mkdir -p "$BUILDROOT$(_dest "$1")"
}
add_symlink() {
	local dst
	dst=$(_dest "$1")
	mkdir -p "$(dirname "$BUILDROOT$dst")"
	ln -sfn "${2:-$(readlink "$1")}" "$BUILDROOT$dst"
}
add_file() { # SRC [DEST [MODE]]
	local dst
	dst=$(_dest "${2:-$1}")
	mkdir -p "$(dirname "$BUILDROOT$dst")"
	rm -f "$BUILDROOT$dst"
	cp -L "$1" "$BUILDROOT$dst"
	if [[ -n ${3:-} ]]; then chmod "$3" "$BUILDROOT$dst"; fi
}
add_binary() { # NAME-OR-PATH [DEST [MODE]]
	local src lib
	src=$(type -P "$1" || true)
	[[ -n $src ]] || src=$(PATH=/usr/sbin:/sbin:$PATH type -P "$1" || true)
	[[ -n $src ]] || { echo "add_binary: $1 not found" >&2; return 1; }
	add_file "$src" "${2:-$src}" "${3:-755}"
	while read -r lib; do
		add_file "$lib"
	done < <(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true)
}
add_module() { # NAME[?]: the module and its dependencies (nothing for built-ins; NAME? where it exists)
	local line f name=${1%\?}
	[[ $1 != *\? ]] || modprobe -d "$MODROOT" -S "$KERNELVERSION" --show-depends "$name" >/dev/null 2>&1 || return 0
	while read -r line; do
		case $line in
		insmod\ *)
			f=${line#insmod }
			f=${f%% *}
			mkdir -p "$(dirname "$BUILDROOT/usr/lib/modules/$KERNELVERSION/${f#*/lib/modules/"$KERNELVERSION"/}")"
			cp "$f" "$BUILDROOT/usr/lib/modules/$KERNELVERSION/${f#*/lib/modules/"$KERNELVERSION"/}"
			;;
		esac
	done < <(modprobe -d "$MODROOT" -S "$KERNELVERSION" --show-depends "$name")
}
add_runscript() {
	add_file "$hookdir/hooks/$hookname" "/hooks/$hookname" 644
}

# base: busybox with every applet, util-linux switch_root, the init.
add_file /bin/busybox /usr/bin/busybox 755
for applet in $(/bin/busybox --list); do
	[[ -e $BUILDROOT/usr/bin/$applet ]] || ln -s busybox "$BUILDROOT/usr/bin/$applet"
done
add_binary switch_root
add_file "$here/init" /init 755
# The user's part of mkinitcpio.conf: no udev hook here, so the disk drivers are loaded through
# MODULES; ext4 stands in for the filesystems hook (lstore.device and lstore.persist disks).
printf 'HOOKS="lstore"\nMODULES="virtio_pci virtio_blk ext4"\n' >"$BUILDROOT/config"
add_module ext4

# lstore's install hook, as mkinitcpio would run it.
hookdir=$repo/hooks/initcpio
hookname=lstore
export LSTORE_LIB=$repo/hooks/common/lstore-lib.sh
# shellcheck source=SCRIPTDIR/../../../hooks/initcpio/install/lstore
. "$hookdir/install/$hookname"
build

# Module metadata, then the archive.
mkdir -p "$BUILDROOT/usr/lib/modules/$KERNELVERSION"
cp "$MODROOT/lib/modules/$KERNELVERSION"/modules.{builtin,builtin.modinfo,order} "$BUILDROOT/usr/lib/modules/$KERNELVERSION/"
depmod -b "$BUILDROOT" "$KERNELVERSION"
(cd "$BUILDROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$OUT"
