#!/bin/sh
# Installs lstore's boot hooks under DESTDIR (default /): the shared library and the glue for
# mkinitcpio, initramfs-tools and dracut, each where its tool looks for it.
# Usage: hooks/install.sh [DESTDIR] [all|initcpio|initramfs-tools|dracut]
set -eu
src=$(cd "$(dirname "$0")" && pwd)
dest=${1:-/}
what=${2:-all}
inst() { # MODE SRC DST
	mkdir -p "$(dirname "$dest/$3")"
	cp "$src/$2" "$dest/$3"
	chmod "$1" "$dest/$3"
}
inst 0644 common/lstore-lib.sh usr/lib/lstore/lstore-lib.sh
case $what in all | initcpio)
	inst 0644 initcpio/install/lstore usr/lib/initcpio/install/lstore
	inst 0644 initcpio/hooks/lstore usr/lib/initcpio/hooks/lstore
	inst 0644 initcpio/install/sd-lstore usr/lib/initcpio/install/sd-lstore
	inst 0755 initcpio/systemd/lstore-sysroot usr/lib/lstore/systemd/lstore-sysroot
	inst 0644 initcpio/systemd/lstore-sysroot.service usr/lib/lstore/systemd/lstore-sysroot.service
	;;
esac
case $what in all | initramfs-tools)
	inst 0644 initramfs-tools/scripts/lstore usr/share/initramfs-tools/scripts/lstore
	inst 0755 initramfs-tools/hooks/lstore usr/share/initramfs-tools/hooks/lstore
	;;
esac
case $what in all | dracut)
	for f in module-setup.sh lstore-cmdline.sh lstore-mount.sh; do
		inst 0755 "dracut/90lstore/$f" "usr/lib/dracut/modules.d/90lstore/$f"
	done
	;;
esac
