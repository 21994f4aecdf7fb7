# shellcheck shell=bash
# Sourced by the fixture scripts that start daemons (registry.sh, dockerd.sh): closes every file
# descriptor above 2 that the script inherited, except bash's own (255, the script, close-on-exec).
#
# A caller's descriptors must not live on in a daemon. Foundation's Process, which the Swift
# tests start these scripts with, hands each child one end of a socket and takes the child for
# running until that end closes; a daemon that inherited it would make the test wait for the
# daemon to exit. Pipes of other commands the tests run at the same time would stay open too.
close_inherited_fds() {
	local fd
	for fd in "/proc/$$/fd/"*; do
		fd=${fd##*/}
		case $fd in 0 | 1 | 2 | 255 | *[!0-9]*) continue ;; esac
		eval "exec $fd>&-" 2>/dev/null || true
	done
}
close_inherited_fds
