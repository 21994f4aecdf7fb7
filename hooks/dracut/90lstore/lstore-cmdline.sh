#!/bin/sh
# dracut cmdline hook: with lstore.image=, the root is lstore's overlay (mounted by the mount
# hook); root= is not needed, and root=lstore keeps dracut's own root handling away.
# shellcheck source=SCRIPTDIR/../../common/lstore-lib.sh
. /usr/lib/lstore/lstore-lib.sh
if lstore_getarg lstore.image >/dev/null; then
    # shellcheck disable=SC2034 # read by dracut
    root=lstore
    # shellcheck disable=SC2034
    rootok=1
fi
