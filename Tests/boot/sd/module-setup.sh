#!/bin/bash
# A dracut module for the boot test only (kind `sdunit`): runs sd-lstore's unit and script
# (hooks/initcpio/systemd, as hooks/install.sh installs them) in dracut's systemd initramfs, in
# place of 90lstore's mount hook, so they are booted as mkinitcpio's systemd hook would run them:
# initrd-root-fs.target requires lstore-sysroot.service, which mounts everything on /sysroot.
# It keeps 90lstore's cmdline hook only so that dracut's own root= handling stays away.

check() {
    return 255
}

depends() {
    echo systemd udev-rules
    return 0
}

installkernel() {
    instmods squashfs overlay loop virtio_blk virtio_pci ext4
}

# shellcheck disable=SC2154 # systemdsystemunitdir and initdir are set by dracut
install() {
    local units=$systemdsystemunitdir
    inst_simple /usr/lib/lstore/lstore-lib.sh
    inst_simple /usr/lib/lstore/systemd/lstore-sysroot /usr/lib/lstore/lstore-sysroot
    inst_simple /usr/lib/lstore/systemd/lstore-sysroot.service "$units/lstore-sysroot.service"
    mkdir -p "$initdir$units/initrd-root-fs.target.requires"
    ln -sf ../lstore-sysroot.service "$initdir$units/initrd-root-fs.target.requires/lstore-sysroot.service"
    inst_multiple sh mount umount losetup blkid dd od cp sed grep mkdir rmdir sleep modprobe readlink cat
    inst_hook cmdline 90 /usr/lib/dracut/modules.d/90lstore/lstore-cmdline.sh
}
