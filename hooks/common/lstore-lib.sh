# shellcheck shell=sh
# lstore boot library: mounts lstore squashfs layers read-only with a tmpfs overlay on top as the
# new root. Sourced by the mkinitcpio, initramfs-tools and dracut glue (hooks/*), which run it in
# their own init shell (busybox ash, dash or bash), so it is plain POSIX sh: no `local`, every
# name starts with lstore_ or _lstore_, and nothing here exits the shell.
#
# The glue defines lstore_emergency MESSAGE (its framework's emergency shell; if it returns,
# lstore_fail prints the error and calls it again; LSTORE_EMERGENCY_PRINTS=1 when it prints
# MESSAGE itself) and then calls:
#   lstore_parse_cmdline       reads the lstore.* parameters; returns 1 when lstore.image is absent
#   lstore_mount_root NEWROOT  mounts everything; on any error, one line on the console + shell
# The contract (parameters, mount points, errors) is spec/boot.md.

LSTORE_RUN=${LSTORE_RUN:-/run/lstore}
LSTORE_NL='
'

# Progress, on stderr: the console everywhere, also under dracut's systemd services (whose
# stdout goes to the journal only).
lstore_msg() {
	[ "${quiet:-}" = y ] || printf 'lstore: %s\n' "$*" >&2
}

# One clear line on the console, then the framework's emergency shell. Never returns: if the
# shell is left, the error is printed again and the shell started again; a half-mounted root is
# never handed to init.
lstore_fail() {
	_lstore_con=${LSTORE_CONSOLE:-/dev/console}
	while :; do
		# The one line, on the console (or on stderr when there is no console to write to),
		# unless the glue's lstore_emergency prints its argument itself.
		[ "${LSTORE_EMERGENCY_PRINTS:-0}" = 1 ] ||
			{ printf 'lstore: ERROR: %s\n' "$*${LSTORE_ERROR_HINT:-}" >>"$_lstore_con"; } 2>/dev/null ||
			printf 'lstore: ERROR: %s\n' "$*${LSTORE_ERROR_HINT:-}" >&2
		if ! command -v lstore_emergency >/dev/null 2>&1; then
			lstore_emergency() {
				/bin/sh -i
			}
		fi
		if { : <"$_lstore_con"; } 2>/dev/null; then
			# shellcheck disable=SC2094 # a terminal, read and written
			lstore_emergency "lstore: ERROR: $*" <"$_lstore_con" >>"$_lstore_con" 2>&1
		else
			lstore_emergency "lstore: ERROR: $*"
		fi
	done
}

# The kernel command line (LSTORE_CMDLINE overrides it, for tests).
lstore_cmdline() {
	if [ -n "${LSTORE_CMDLINE+x}" ]; then
		printf '%s\n' "$LSTORE_CMDLINE"
	else
		cat /proc/cmdline
	fi
}

# lstore_getarg KEY: prints the value of the last KEY=VALUE word (empty for a bare KEY) and
# returns 0, or returns 1 when KEY is not on the command line. Values cannot hold spaces.
lstore_getarg() {
	_lstore_k=$1
	_lstore_found=1
	_lstore_v=
	set -f
	# shellcheck disable=SC2046
	set -- $(lstore_cmdline)
	set +f
	for _lstore_w in "$@"; do
		case $_lstore_w in
		"$_lstore_k"=*) _lstore_v=${_lstore_w#"$_lstore_k"=}; _lstore_found=0 ;;
		"$_lstore_k") _lstore_v=; _lstore_found=0 ;;
		esac
	done
	[ "$_lstore_found" = 0 ] && printf '%s\n' "$_lstore_v"
	return "$_lstore_found"
}

# lstore_getbool KEY: 0 when KEY is given bare or as KEY=1/y/yes/on/true, else 1.
lstore_getbool() {
	_lstore_b=$(lstore_getarg "$1") || return 1
	case $_lstore_b in
	'' | 1 | y | yes | on | true) return 0 ;;
	*) return 1 ;;
	esac
}

# Reads and checks the lstore.* parameters into LSTORE_* variables. Returns 1 (and does nothing)
# when lstore.image is not given; calls lstore_fail on a malformed value.
lstore_parse_cmdline() {
	LSTORE_IMAGE=$(lstore_getarg lstore.image) || return 1
	[ -n "$LSTORE_IMAGE" ] || lstore_fail "lstore.image is empty"
	LSTORE_DEVICE=$(lstore_getarg lstore.device) || LSTORE_DEVICE=
	LSTORE_OVERLAY_SIZE=$(lstore_getarg lstore.overlay_size) || LSTORE_OVERLAY_SIZE=50%
	LSTORE_COPYTORAM=0
	lstore_getbool lstore.copytoram && LSTORE_COPYTORAM=1
	LSTORE_PERSIST=$(lstore_getarg lstore.persist) || LSTORE_PERSIST=
	LSTORE_PERSIST_PATHS=$(lstore_getarg lstore.persist_paths) || LSTORE_PERSIST_PATHS=
	LSTORE_TIMEOUT=$(lstore_getarg lstore.timeout) || LSTORE_TIMEOUT=30
	LSTORE_OVERLAY_WARN=$(lstore_getarg lstore.overlay_warn) || LSTORE_OVERLAY_WARN=90

	case $LSTORE_IMAGE in
	:* | *: | *::*) lstore_fail "lstore.image=$LSTORE_IMAGE has an empty layer" ;;
	esac
	case $LSTORE_OVERLAY_SIZE in
	'' | *[!0-9kKmMgG%]* | [!0-9]*) lstore_fail "lstore.overlay_size=$LSTORE_OVERLAY_SIZE is not a size (like 2G, 512M or 50%)" ;;
	esac
	case $LSTORE_TIMEOUT in
	'' | *[!0-9]*) lstore_fail "lstore.timeout=$LSTORE_TIMEOUT is not a number of seconds" ;;
	esac
	case $LSTORE_OVERLAY_WARN in
	[0-9] | [1-9][0-9] | 100) ;;
	*) lstore_fail "lstore.overlay_warn=$LSTORE_OVERLAY_WARN is not a percentage from 0 to 100" ;;
	esac
	if [ -z "$LSTORE_PERSIST" ] && [ -n "$LSTORE_PERSIST_PATHS" ]; then
		lstore_fail "lstore.persist_paths needs lstore.persist=DEV[:DIR]"
	fi
	_lstore_oldifs=$IFS
	IFS=,
	for _lstore_p in $LSTORE_PERSIST_PATHS; do
		case $_lstore_p in
		/ | /*/.. | /*/../* | /../* | /..) lstore_fail "lstore.persist_paths: '$_lstore_p' is not a directory below /" ;;
		/?*) ;;
		*) lstore_fail "lstore.persist_paths: '$_lstore_p' is not an absolute path" ;;
		esac
	done
	IFS=$_lstore_oldifs
	return 0
}

# lstore_resolve SPEC: prints the block device for /dev/..., UUID=... or LABEL=..., waiting up to
# LSTORE_TIMEOUT seconds for it to appear; returns 1 if it never does.
lstore_resolve() {
	_lstore_spec=$1
	_lstore_left=${LSTORE_TIMEOUT:-30}
	while :; do
		_lstore_dev=
		case $_lstore_spec in
		UUID=*)
			_lstore_dev=/dev/disk/by-uuid/${_lstore_spec#UUID=}
			[ -b "$_lstore_dev" ] || _lstore_dev=$(_lstore_blkid_find UUID "${_lstore_spec#UUID=}")
			;;
		LABEL=*)
			_lstore_dev=/dev/disk/by-label/${_lstore_spec#LABEL=}
			[ -b "$_lstore_dev" ] || _lstore_dev=$(_lstore_blkid_find LABEL "${_lstore_spec#LABEL=}")
			;;
		/dev/*) _lstore_dev=$_lstore_spec ;;
		*) return 1 ;;
		esac
		if [ -n "$_lstore_dev" ] && [ -b "$_lstore_dev" ]; then
			# The kernel name (/dev/vdc, not /dev/disk/by-label/...), for the mount table.
			_lstore_dev=$(readlink -f "$_lstore_dev" 2>/dev/null || printf '%s\n' "$_lstore_dev")
			printf '%s\n' "$_lstore_dev"
			return 0
		fi
		[ "$_lstore_left" -gt 0 ] || return 1
		sleep 1
		_lstore_left=$((_lstore_left - 1))
	done
}

# _lstore_blkid_find TAG VALUE: the device whose TAG="VALUE" in blkid's output (util-linux or
# busybox blkid, both print `DEV: TAG="VALUE" ...`).
_lstore_blkid_find() {
	blkid 2>/dev/null | while IFS= read -r _lstore_line; do
		case $_lstore_line in
		*" $1=\"$2\""*)
			printf '%s\n' "${_lstore_line%%:*}"
			break
			;;
		esac
	done
}

# _lstore_fstype DEV: the file system type blkid reports, or nothing.
_lstore_fstype() {
	blkid "$1" 2>/dev/null | sed -n 's/.* TYPE="\([^"]*\)".*/\1/p'
}

# lstore_spec_ok SPEC: 0 when SPEC names a device the way lstore.device and lstore.persist allow.
lstore_spec_ok() {
	case $1 in
	/dev/?* | UUID=?* | LABEL=?*) return 0 ;;
	*) return 1 ;;
	esac
}

# _lstore_mount_dev SPEC DIR OPTS WHAT: resolves SPEC and mounts it on DIR with OPTS.
_lstore_mount_dev() {
	lstore_spec_ok "$1" || lstore_fail "$4 '$1' is not /dev/..., UUID=... or LABEL=..."
	_lstore_d=$(lstore_resolve "$1") || lstore_fail "$4 '$1' did not appear within ${LSTORE_TIMEOUT:-30}s"
	_lstore_t=$(_lstore_fstype "$_lstore_d")
	[ -n "$_lstore_t" ] && modprobe -q "$_lstore_t" 2>/dev/null
	mkdir -p "$2"
	mount ${_lstore_t:+-t "$_lstore_t"} -o "$3" "$_lstore_d" "$2" ||
		lstore_fail "cannot mount $4 '$1' ($_lstore_d${_lstore_t:+, $_lstore_t}) on $2"
}

# _lstore_is_squashfs FILE-OR-DEV: 0 when it starts with the squashfs magic "hsqs".
_lstore_is_squashfs() {
	[ "$(dd if="$1" bs=4 count=1 2>/dev/null)" = hsqs ]
}

# _lstore_sqfs_bytes FILE-OR-DEV: the image's bytes_used from its superblock, rounded up to 4 KiB
# (mksquashfs pads to 4 KiB); a block device may be larger than the image it holds.
_lstore_sqfs_bytes() {
	# shellcheck disable=SC2046
	set -- $(od -An -tu4 -j40 -N8 "$1" 2>/dev/null)
	[ $# = 2 ] || return 1
	_lstore_n=$(($1 + $2 * 4294967296))
	printf '%s\n' $(((_lstore_n + 4095) / 4096 * 4096))
}

# lstore_watch_overlay NEWROOT DIR: when NEWROOT boots systemd, a service of the running system
# that warns on the console (and in the journal) when the file system holding the writable layer
# DIR runs short: at LSTORE_OVERLAY_WARN percent full (0: never), and again at each 5 more. It is
# written into /run, which the new root keeps: /run/systemd/system holds runtime units, and the
# script is read by /bin/sh (/run is noexec). Without systemd in NEWROOT, nothing is written:
# /run/systemd/system tells programs that systemd runs.
lstore_watch_overlay() {
	[ "${LSTORE_OVERLAY_WARN:-90}" != 0 ] || return 0
	[ -e "$1/lib/systemd/systemd" ] || [ -e "$1/usr/lib/systemd/systemd" ] || return 0
	_lstore_units=${LSTORE_UNITS:-/run/systemd/system}
	if mkdir -p "$_lstore_units/sysinit.target.wants" &&
		lstore_watch_script >"$LSTORE_RUN/overlay-watch" &&
		lstore_watch_unit "$2" >"$_lstore_units/lstore-overlay-watch.service" &&
		ln -sf ../lstore-overlay-watch.service "$_lstore_units/sysinit.target.wants/lstore-overlay-watch.service"; then
		return 0
	fi
	lstore_msg "warning: cannot install the service that watches the writable layer; booting on without it"
	return 0
}

# lstore_watch_unit DIR: the watcher's systemd unit.
lstore_watch_unit() {
	printf '%s\n' '[Unit]' 'Description=lstore: warn when the writable layer runs short' 'DefaultDependencies=no' \
		'Conflicts=shutdown.target' 'Before=shutdown.target' '' '[Service]' \
		"ExecStart=/bin/sh $LSTORE_RUN/overlay-watch $1 ${LSTORE_OVERLAY_WARN:-90}" \
		'StandardOutput=journal+console' 'SyslogIdentifier=lstore' 'Nice=10'
}

# The watcher's script: sh overlay-watch DIR PERCENT [SECONDS]; with SECONDS=0 it looks once and
# exits (tests).
lstore_watch_script() {
	cat <<'EOF'
# lstore: warns when the file system holding the writable layer runs short (spec/boot.md, 4).
dir=$1 limit=$2 every=${3:-5} warned=0
while :; do
	# df -P: Filesystem 1024-blocks Used Available Capacity Mounted-on
	# shellcheck disable=SC2046
	set -- $(df -Pk "$dir" 2>/dev/null | sed -n 2p)
	if [ $# -ge 4 ] && [ "$2" -gt 0 ] 2>/dev/null; then
		pct=$(($3 * 100 / $2))
		if [ "$pct" -ge "$limit" ] && { [ "$warned" = 0 ] || [ "$pct" -ge $((warned + 5)) ]; }; then
			echo "lstore: warning: the writable layer is $pct% full ($(($3 / 1024)) of $(($2 / 1024)) MiB used in $dir):" \
				"writes will fail when it is full; lstore.overlay_size sets its size"
			warned=$pct
		elif [ "$pct" -lt $((limit - 10)) ]; then
			warned=0
		fi
	fi
	[ "$every" != 0 ] || exit 0
	sleep "$every"
done
EOF
}

# lstore_resolve_in_root ROOT PATH: PATH with every symlink on it followed inside ROOT, as the
# system in ROOT will see it once it is /: absolute targets from ROOT, `..` stopping at its top,
# at most 40 links. Prints the resolved path (from ROOT's top); returns 1 on a loop.
lstore_resolve_in_root() {
	_lstore_rr=$1 _lstore_rest=$2 _lstore_done='' _lstore_hops=0
	while [ -n "$_lstore_rest" ]; do
		case $_lstore_rest in
		/*)
			_lstore_rest=${_lstore_rest#/}
			continue
			;;
		*/*)
			_lstore_c=${_lstore_rest%%/*}
			_lstore_rest=${_lstore_rest#*/}
			;;
		*)
			_lstore_c=$_lstore_rest
			_lstore_rest=
			;;
		esac
		case $_lstore_c in
		'' | .) continue ;;
		..)
			_lstore_done=${_lstore_done%/*}
			continue
			;;
		esac
		if [ -L "$_lstore_rr$_lstore_done/$_lstore_c" ]; then
			_lstore_hops=$((_lstore_hops + 1))
			[ "$_lstore_hops" -le 40 ] || return 1
			_lstore_t=$(readlink "$_lstore_rr$_lstore_done/$_lstore_c") || return 1
			case $_lstore_t in /*) _lstore_done= ;; esac
			_lstore_rest=$_lstore_t${_lstore_rest:+/$_lstore_rest}
		else
			_lstore_done=$_lstore_done/$_lstore_c
		fi
	done
	printf '%s\n' "${_lstore_done:-/}"
}

# lstore_mount_root NEWROOT: the whole job. On return, NEWROOT is the overlay.
lstore_mount_root() {
	_lstore_newroot=$1
	read -r _lstore_up0 _lstore_x </proc/uptime 2>/dev/null || _lstore_up0='?'
	[ -n "$_lstore_newroot" ] || lstore_fail "no mount point given for the new root"
	[ -n "${LSTORE_IMAGE:-}" ] || lstore_parse_cmdline || lstore_fail "lstore.image is not on the kernel command line"

	# Each module's own failure is kept: a missing modules.dep is not a missing module.
	_lstore_why_squashfs='' _lstore_why_overlay=''
	for _lstore_m in loop squashfs overlay; do
		_lstore_out=$(modprobe "$_lstore_m" 2>&1) && continue
		_lstore_out=$(printf '%s\n' "${_lstore_out:-exit status $?}" | sed -n '1p')
		case $_lstore_m in
		squashfs) _lstore_why_squashfs=$_lstore_out ;;
		overlay) _lstore_why_overlay=$_lstore_out ;;
		esac
	done
	grep -qw squashfs "${LSTORE_FILESYSTEMS:-/proc/filesystems}" ||
		lstore_fail "${_lstore_why_squashfs:+cannot load the squashfs module: $_lstore_why_squashfs}${_lstore_why_squashfs:-the kernel has no squashfs support, and modprobe squashfs says nothing}"
	grep -qw overlay "${LSTORE_FILESYSTEMS:-/proc/filesystems}" ||
		lstore_fail "${_lstore_why_overlay:+cannot load the overlay module: $_lstore_why_overlay}${_lstore_why_overlay:-the kernel has no overlayfs support, and modprobe overlay says nothing}"

	mkdir -p "$LSTORE_RUN" || lstore_fail "cannot create $LSTORE_RUN"

	# 1. Where the images are: files on a device, or block devices themselves.
	# When lstore.persist is on the same device, that one mount is read-write.
	_lstore_devopts=ro
	[ -n "$LSTORE_PERSIST" ] && [ "${LSTORE_PERSIST%%:*}" = "$LSTORE_DEVICE" ] && _lstore_devopts=rw
	if [ -n "$LSTORE_DEVICE" ]; then
		_lstore_mount_dev "$LSTORE_DEVICE" "$LSTORE_RUN/device" "$_lstore_devopts" lstore.device
	fi

	# 2. Resolve each layer (leftmost = bottom) to a file or block device.
	_lstore_srcs=
	_lstore_count=0
	_lstore_oldifs=$IFS
	IFS=:
	for _lstore_img in $LSTORE_IMAGE; do
		IFS=$_lstore_oldifs
		if [ -n "$LSTORE_DEVICE" ]; then
			case $_lstore_img in
			/*) _lstore_src=$LSTORE_RUN/device$_lstore_img ;;
			*) _lstore_src=$LSTORE_RUN/device/$_lstore_img ;;
			esac
			[ -f "$_lstore_src" ] || lstore_fail "image '$_lstore_img' not found on lstore.device=$LSTORE_DEVICE"
		else
			lstore_spec_ok "$_lstore_img" || lstore_fail "image '$_lstore_img' must be a block device (/dev/..., UUID=..., LABEL=...) when lstore.device is not given"
			_lstore_src=$(lstore_resolve "$_lstore_img") || lstore_fail "image device '$_lstore_img' did not appear within ${LSTORE_TIMEOUT:-30}s"
		fi
		_lstore_is_squashfs "$_lstore_src" || lstore_fail "image '$_lstore_img' is not a squashfs image"
		_lstore_srcs="$_lstore_srcs$_lstore_src$LSTORE_NL"
		_lstore_count=$((_lstore_count + 1))
		IFS=:
	done
	IFS=$_lstore_oldifs

	# 3. copytoram: copy every image to a tmpfs just big enough, then use the copies.
	if [ "$LSTORE_COPYTORAM" = 1 ]; then
		_lstore_total=0
		IFS=$LSTORE_NL
		for _lstore_src in $_lstore_srcs; do
			IFS=$_lstore_oldifs
			_lstore_sz=$(_lstore_sqfs_bytes "$_lstore_src") || lstore_fail "cannot read the size of image $_lstore_src"
			_lstore_total=$((_lstore_total + _lstore_sz))
		done
		IFS=$_lstore_oldifs
		mkdir -p "$LSTORE_RUN/ram"
		mount -t tmpfs -o "size=$((_lstore_total / 1024 + 1024))k,mode=0700" lstore-ram "$LSTORE_RUN/ram" ||
			lstore_fail "cannot mount a ${_lstore_total}-byte tmpfs for lstore.copytoram"
		_lstore_i=0
		_lstore_new=
		IFS=$LSTORE_NL
		for _lstore_src in $_lstore_srcs; do
			IFS=$_lstore_oldifs
			_lstore_sz=$(_lstore_sqfs_bytes "$_lstore_src")
			lstore_msg "copying layer $_lstore_i ($_lstore_sz bytes) to RAM"
			dd if="$_lstore_src" of="$LSTORE_RUN/ram/$_lstore_i.sfs" bs=65536 count=$((_lstore_sz / 65536 + 1)) 2>/dev/null ||
				lstore_fail "copying image $_lstore_src to RAM failed (out of memory?)"
			_lstore_new="$_lstore_new$LSTORE_RUN/ram/$_lstore_i.sfs$LSTORE_NL"
			_lstore_i=$((_lstore_i + 1))
		done
		IFS=$_lstore_oldifs
		_lstore_srcs=$_lstore_new
		if [ -n "$LSTORE_DEVICE" ] && [ "$_lstore_devopts" = ro ]; then
			umount "$LSTORE_RUN/device" 2>/dev/null && rmdir "$LSTORE_RUN/device"
		fi
	fi

	# 4. Mount each layer read-only; overlayfs lists lower layers top first.
	_lstore_i=0
	_lstore_lower=
	IFS=$LSTORE_NL
	for _lstore_src in $_lstore_srcs; do
		IFS=$_lstore_oldifs
		_lstore_dir=$LSTORE_RUN/layers/$_lstore_i
		mkdir -p "$_lstore_dir"
		if [ -b "$_lstore_src" ]; then
			mount -t squashfs -o ro "$_lstore_src" "$_lstore_dir"
		else
			mount -t squashfs -o ro,loop "$_lstore_src" "$_lstore_dir"
		fi || lstore_fail "cannot mount layer $_lstore_i ($_lstore_src) as squashfs"
		_lstore_lower=$_lstore_dir${_lstore_lower:+:$_lstore_lower}
		_lstore_i=$((_lstore_i + 1))
	done
	IFS=$_lstore_oldifs

	# 5. The writable upper layer: a tmpfs, or a directory on lstore.persist (whole-system
	# persistence) when lstore.persist is given without lstore.persist_paths.
	if [ -n "$LSTORE_PERSIST" ]; then
		_lstore_pdev=${LSTORE_PERSIST%%:*}
		_lstore_pdir=lstore
		case $LSTORE_PERSIST in *:*) _lstore_pdir=${LSTORE_PERSIST#*:} ;; esac
		_lstore_pdir=${_lstore_pdir#/}
		[ -n "$_lstore_pdir" ] || lstore_fail "lstore.persist=$LSTORE_PERSIST: the directory is empty"
		if [ -n "$LSTORE_DEVICE" ] && [ "$_lstore_pdev" = "$LSTORE_DEVICE" ]; then
			_lstore_pbase=$LSTORE_RUN/device/$_lstore_pdir
		else
			_lstore_mount_dev "$_lstore_pdev" "$LSTORE_RUN/persist" rw lstore.persist
			_lstore_pbase=$LSTORE_RUN/persist/$_lstore_pdir
		fi
	fi
	if [ -n "$LSTORE_PERSIST" ] && [ -z "$LSTORE_PERSIST_PATHS" ]; then
		_lstore_rw=$_lstore_pbase
	else
		_lstore_rw=$LSTORE_RUN/overlay
		mkdir -p "$_lstore_rw"
		mount -t tmpfs -o "size=$LSTORE_OVERLAY_SIZE,mode=0755" lstore-overlay "$_lstore_rw" ||
			lstore_fail "cannot mount the overlay tmpfs (lstore.overlay_size=$LSTORE_OVERLAY_SIZE)"
	fi
	mkdir -p "$_lstore_rw/upper" "$_lstore_rw/work" || lstore_fail "cannot create the overlay directories in $_lstore_rw"

	mkdir -p "$_lstore_newroot"
	mount -t overlay -o "lowerdir=$_lstore_lower,upperdir=$_lstore_rw/upper,workdir=$_lstore_rw/work" lstore "$_lstore_newroot" ||
		lstore_fail "cannot mount the overlay on $_lstore_newroot (lowerdir=$_lstore_lower)"
	lstore_watch_overlay "$_lstore_newroot" "$_lstore_rw"

	# 6. persist_paths: bind each path from the persistent device over the overlay. A path seen
	# for the first time is seeded with what the image has there.
	if [ -n "$LSTORE_PERSIST_PATHS" ]; then
		_lstore_oldifs=$IFS
		IFS=,
		for _lstore_p in $LSTORE_PERSIST_PATHS; do
			IFS=$_lstore_oldifs
			_lstore_from=$_lstore_pbase$_lstore_p
			if [ ! -d "$_lstore_from" ]; then
				mkdir -p "$_lstore_from" || lstore_fail "cannot create $_lstore_from on lstore.persist"
				if [ -d "$_lstore_newroot$_lstore_p" ]; then
					cp -a "$_lstore_newroot$_lstore_p/." "$_lstore_from/" ||
						lstore_fail "cannot seed $_lstore_p on lstore.persist from the image"
				fi
			fi
			if ! mkdir -p "$_lstore_newroot$_lstore_p" ||
				! mount -o bind "$_lstore_from" "$_lstore_newroot$_lstore_p"; then
				lstore_fail "cannot bind $_lstore_p from lstore.persist"
			fi
			IFS=,
		done
		IFS=$_lstore_oldifs
	fi

	read -r _lstore_up1 _lstore_x </proc/uptime 2>/dev/null || _lstore_up1='?'
	lstore_msg "root is overlay of $_lstore_count layer(s) ($LSTORE_IMAGE${LSTORE_DEVICE:+ on $LSTORE_DEVICE}), upper on $_lstore_rw (uptime ${_lstore_up0}s to ${_lstore_up1}s)"
	return 0
}
