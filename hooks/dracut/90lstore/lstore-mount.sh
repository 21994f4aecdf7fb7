#!/bin/sh
# dracut mount hook (run by dracut-mount.service, or by the non-systemd init's mount loop):
# mounts lstore's overlay on $NEWROOT. Sourced; returns without doing anything when
# lstore.image= is absent.
# shellcheck source=SCRIPTDIR/../../common/lstore-lib.sh
. /usr/lib/lstore/lstore-lib.sh

# dracut's emergency shell without its own copy of the message (lstore_fail printed it).
lstore_emergency() {
    if command -v _emergency_shell >/dev/null 2>&1; then
        # shellcheck disable=SC2034 # read by _emergency_shell
        hook=emergency
        _emergency_shell lstore
    else
        emergency_shell -n lstore "$1"
    fi
}

if lstore_parse_cmdline; then
    # shellcheck disable=SC2154 # NEWROOT is set by dracut
    lstore_mount_root "$NEWROOT"
fi
