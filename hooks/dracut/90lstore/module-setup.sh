#!/bin/bash
# dracut module for lstore: `dracut --add lstore` (or add_dracutmodules+=" lstore "), then boot with
# lstore.image= instead of root=. Installed as /usr/lib/dracut/modules.d/90lstore/; the library
# is taken from this directory when it is there, else from /usr/lib/lstore. Contract: spec/boot.md.

check() {
    # Only when asked for: an lstore boot is chosen by the command line, not by the host.
    return 255
}

depends() {
    echo udev-rules
    return 0
}

installkernel() {
    instmods squashfs overlay loop virtio_blk virtio_pci
    # The file systems that may hold the images: FAT (an ESP on systemd-boot machines), code pages, ext4.
    hostonly='' instmods vfat nls_cp437 nls_iso8859-1 nls_utf8 nls_ascii ext4
}

install() {
    local lib
    # shellcheck disable=SC2154 # moddir is set by dracut
    if [[ -r $moddir/lstore-lib.sh ]]; then
        lib=$moddir/lstore-lib.sh
    else
        lib=${LSTORE_LIB:-/usr/lib/lstore/lstore-lib.sh}
    fi
    inst_simple "$lib" /usr/lib/lstore/lstore-lib.sh
    inst_multiple mount umount losetup blkid dd od cp sed grep mkdir rmdir sleep modprobe readlink
    inst_hook cmdline 90 "$moddir/lstore-cmdline.sh"
    inst_hook mount 10 "$moddir/lstore-mount.sh"
}
