#!/usr/bin/env bash
# shellcheck disable=SC2016 # the snippets are expanded by the shell under test
# Unit tests of hooks/common/lstore-lib.sh without booting: the command-line parser, its errors
# (exactly one "lstore: ERROR:" line, then the emergency shell), and the squashfs helpers, under
# every shell the initramfs kinds use (dash, busybox ash, bash). Also lints every hook (with
# ShellCheck, dash -n and busybox sh -n). Prints PASS/FAIL per check and "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LIB=$REPO/hooks/common/lstore-lib.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

shells=()
command -v dash >/dev/null && shells+=(dash)
command -v busybox >/dev/null && shells+=("busybox sh")
shells+=(bash)

# run SHELL CMDLINE SCRIPT: sources the library with CMDLINE as the kernel command line and an
# emergency shell that exits 3; prints the script's output, the console file after "--console--".
run() {
	local sh=$1 cmdline=$2 script=$3
	: >"$TMP/console"
	LSTORE_CMDLINE=$cmdline LSTORE_CONSOLE=$TMP/console LSTORE_RUN=$TMP/run $sh -c "
		. '$LIB'
		lstore_emergency() { echo \"EMERGENCY \$1\"; exit 3; }
		$script
	" 2>&1
	echo "rc=$?"
	echo "--console--"
	cat "$TMP/console"
}

# expect NAME SHELL CMDLINE SCRIPT EXPECTED-OUTPUT
expect() {
	local name=$1 sh=$2 out
	out=$(run "$sh" "$3" "$4")
	if [[ $out == "$5" ]]; then ok "$name [$sh]"; else bad "$name [$sh]"; diff <(echo "$5") <(echo "$out") | sed 's/^/    /'; fi
}

show='echo "image=$LSTORE_IMAGE device=$LSTORE_DEVICE size=$LSTORE_OVERLAY_SIZE ram=$LSTORE_COPYTORAM persist=$LSTORE_PERSIST paths=$LSTORE_PERSIST_PATHS timeout=$LSTORE_TIMEOUT"'
for sh in "${shells[@]}"; do
	expect "no lstore.image: nothing to do" "$sh" "root=/dev/sda1 quiet" \
		'lstore_parse_cmdline; echo "parse=$?"' $'parse=1\nrc=0\n--console--'
	expect "defaults" "$sh" "boot=lstore lstore.image=/dev/vdb" "lstore_parse_cmdline; $show" \
		$'image=/dev/vdb device= size=50% ram=0 persist= paths= timeout=30\nrc=0\n--console--'
	expect "every parameter" "$sh" "lstore.imagex=no lstore.image=a.sfs:b.sfs lstore.device=LABEL=X lstore.overlay_size=2G lstore.copytoram lstore.persist=UUID=1-2:state lstore.persist_paths=/home,/var/lib/x lstore.timeout=5" \
		"lstore_parse_cmdline; $show" \
		$'image=a.sfs:b.sfs device=LABEL=X size=2G ram=1 persist=UUID=1-2:state paths=/home,/var/lib/x timeout=5\nrc=0\n--console--'
	expect "the last one counts; globs stay" "$sh" "lstore.image=/dev/vd* lstore.image=/dev/vd? lstore.copytoram=yes lstore.copytoram=0" \
		"lstore_parse_cmdline; $show" \
		$'image=/dev/vd? device= size=50% ram=0 persist= paths= timeout=30\nrc=0\n--console--'
	for bad_arg in "lstore.image=" "lstore.image=a::b" "lstore.image=:a" "lstore.overlay_size=big" "lstore.overlay_size=%5" \
		"lstore.persist_paths=/home" "lstore.persist=/dev/vda lstore.persist_paths=home" \
		"lstore.persist=/dev/vda lstore.persist_paths=/" "lstore.persist=/dev/vda lstore.persist_paths=/a/../b" "lstore.timeout=5s" \
		"lstore.overlay_warn=101" "lstore.overlay_warn=09" "lstore.overlay_warn="; do
		out=$(run "$sh" "lstore.image=/dev/vdb $bad_arg" 'lstore_parse_cmdline; echo "went on"')
		# lstore.image= alone replaces the first lstore.image.
		lines=$(grep -c '^lstore: ERROR: ' <<<"${out#*--console--}")
		if [[ $out == *"rc=3"* && $out == *"EMERGENCY lstore: ERROR: "* && $out != *"went on"* && $lines == 1 ]]; then
			ok "error for '$bad_arg' [$sh]"
		else
			bad "error for '$bad_arg' [$sh]"
			printf '%s\n' "$out" | sed 's/^/    /'
		fi
	done
	expect "an image that is not a device, without lstore.device" "$sh" "lstore.image=base.sfs" \
		'lstore_parse_cmdline; lstore_spec_ok "$LSTORE_IMAGE" || lstore_fail "not a device"; echo went on' \
		$'rc=3\n--console--\nlstore: ERROR: not a device\nEMERGENCY lstore: ERROR: not a device'
	expect "glue that prints the error itself" "$sh" "" \
		'LSTORE_EMERGENCY_PRINTS=1; lstore_fail "x y"' $'rc=3\n--console--\nEMERGENCY lstore: ERROR: x y'
	# Debian's layout: /sbin/init an absolute symlink, /sbin and /lib symlinks to /usr (merged /usr).
	root=$TMP/root-layout
	if [ ! -d "$root" ]; then
		mkdir -p "$root/usr/sbin" "$root/usr/lib/systemd" "$root/etc"
		ln -s usr/sbin "$root/sbin" && ln -s usr/lib "$root/lib"
		ln -s /lib/systemd/systemd "$root/usr/sbin/init"
		printf '#!/bin/sh\n' >"$root/usr/lib/systemd/systemd" && chmod 755 "$root/usr/lib/systemd/systemd"
		ln -s ../../../../../../etc/../loop-b "$root/loop-a" && ln -s /loop-a "$root/loop-b"
		ln -s ../../../usr/lib "$root/etc/up"
	fi
	expect "init resolved inside the new root" "$sh" "" \
		"lstore_resolve_in_root '$root' /sbin/init; lstore_resolve_in_root '$root' /etc/up/systemd/systemd; lstore_resolve_in_root '$root' /usr/bin/missing; lstore_resolve_in_root '$root' /loop-a; echo \"r=\$?\"" \
		$'/usr/lib/systemd/systemd\n/usr/lib/systemd/systemd\n/usr/bin/missing\nr=1\nrc=0\n--console--'
	# modprobe failing for another reason than a missing module: its own words in the error.
	printf 'nodev\tproc\n' >"$TMP/filesystems"
	out=$(run "$sh" "lstore.image=/dev/vdb" "LSTORE_FILESYSTEMS='$TMP/filesystems'
		modprobe() { echo \"modprobe: can't open 'modules.dep': No such file or directory\" >&2; return 1; }
		lstore_parse_cmdline; lstore_mount_root '$TMP/newroot'; echo went on")
	if [[ $out == *"lstore: ERROR: cannot load the squashfs module: modprobe: can't open 'modules.dep': No such file or directory"* && $out != *"went on"* ]]; then
		ok "modprobe's own failure shown [$sh]"
	else
		bad "modprobe's own failure shown [$sh]"
		printf '%s\n' "$out" | sed 's/^/    /'
	fi
	expect "sd-lstore's hint about the locked emergency shell" "$sh" "" \
		'LSTORE_ERROR_HINT=" (hint)"; lstore_fail "x"' $'rc=3\n--console--\nlstore: ERROR: x (hint)\nEMERGENCY lstore: ERROR: x'
	expect "a device that never appears" "$sh" "lstore.image=/dev/vdb lstore.timeout=0" \
		'lstore_parse_cmdline; lstore_resolve /dev/null; echo "r=$?"; lstore_resolve LABEL=no-such-label-here; echo "r=$?"; lstore_resolve vdb; echo "r=$?"' \
		$'r=1\nr=1\nr=1\nrc=0\n--console--'
done

# The squashfs helpers, against a real image.
if command -v mksquashfs >/dev/null; then
	mkdir -p "$TMP/tree/d"
	head -c 300000 /dev/urandom >"$TMP/tree/d/f"
	mksquashfs "$TMP/tree" "$TMP/t.sfs" -noappend -quiet -no-progress >/dev/null
	want=$(($(stat -c %s "$TMP/t.sfs")))
	for sh in "${shells[@]}"; do
		expect "squashfs magic and length" "$sh" "" \
			"_lstore_is_squashfs '$TMP/t.sfs' && echo sqfs; _lstore_is_squashfs '$LIB' || echo not; _lstore_sqfs_bytes '$TMP/t.sfs'" \
			"sqfs"$'\n'"not"$'\n'"$want"$'\nrc=0\n--console--'
	done
fi

# The writable layer's watcher: installed only for a systemd root, its unit as systemd reads it, and
# its script, which warns once at the limit and again 5 points further, on a real tmpfs.
mkdir -p "$TMP/ov" "$TMP/root-sd/usr/lib/systemd" "$TMP/root-plain"
: >"$TMP/root-sd/usr/lib/systemd/systemd"
if mount -t tmpfs -o size=4m lstore-test "$TMP/ov" 2>/dev/null; then
	for sh in "${shells[@]}"; do
		rm -rf "$TMP/units" "$TMP/run" && mkdir -p "$TMP/run"
		LSTORE_UNITS=$TMP/units LSTORE_RUN=$TMP/run $sh -c ". '$LIB'; LSTORE_OVERLAY_WARN=80; lstore_watch_overlay '$TMP/root-plain' /x"
		if [[ ! -e $TMP/units && ! -e $TMP/run/overlay-watch ]]; then ok "no watcher without systemd [$sh]"; else bad "no watcher without systemd [$sh]"; fi
		LSTORE_UNITS=$TMP/units LSTORE_RUN=$TMP/run $sh -c ". '$LIB'; LSTORE_OVERLAY_WARN=80; lstore_watch_overlay '$TMP/root-sd' '$TMP/ov'"
		unit=$TMP/units/lstore-overlay-watch.service
		if [[ -f $unit && $(readlink "$TMP/units/sysinit.target.wants/lstore-overlay-watch.service") == ../lstore-overlay-watch.service ]] &&
			grep -qx "ExecStart=/bin/sh $TMP/run/overlay-watch $TMP/ov 80" "$unit"; then
			ok "watcher installed for a systemd root [$sh]"
		else
			bad "watcher installed for a systemd root [$sh]"
		fi
		watch() { $sh "$TMP/run/overlay-watch" "$TMP/ov" 80 0; }
		rm -f "$TMP/ov/fill"
		head -c $((2 * 1024 * 1024)) /dev/zero >"$TMP/ov/fill"
		out1=$(watch)
		head -c $((3400 * 1024)) /dev/zero >"$TMP/ov/fill"
		out2=$(watch)
		if [[ -z $out1 && $out2 == "lstore: warning: the writable layer is 8"[3-9]"% full (3 of 4 MiB used in $TMP/ov): writes will fail when it is full; lstore.overlay_size sets its size" ]]; then
			ok "watcher: quiet at 50%, warns at 83% [$sh]"
		else
			bad "watcher: quiet at 50%, warns at 83% [$sh]"
			printf '    %s\n' "$out1" "$out2"
		fi
		# Running: one warning per 5 points, not one per look.
		rm -f "$TMP/ov/fill"
		$sh "$TMP/run/overlay-watch" "$TMP/ov" 80 0.2 >"$TMP/watch.out" &
		wpid=$!
		sleep 0.5
		head -c $((3400 * 1024)) /dev/zero >"$TMP/ov/fill"
		sleep 1
		head -c $((3500 * 1024)) /dev/zero >"$TMP/ov/fill"
		sleep 1
		head -c $((3900 * 1024)) /dev/zero >"$TMP/ov/fill" 2>/dev/null
		sleep 1
		kill "$wpid" && wait "$wpid" 2>/dev/null
		if [[ $(grep -c '^lstore: warning: the writable layer is ' "$TMP/watch.out") == 2 ]] &&
			grep -q 'is 9[5-9]% full\|is 100% full' "$TMP/watch.out"; then
			ok "watcher: warns at 83% and 95%, not at 85% [$sh]"
		else
			bad "watcher: warns at 83% and 95%, not at 85% [$sh]"
			sed 's/^/    /' "$TMP/watch.out"
		fi
	done
	if (shellcheck -s sh "$TMP/run/overlay-watch"); then ok "lint the watcher's script"; else bad "lint the watcher's script"; fi
	if command -v systemd-analyze >/dev/null; then
		if out=$(systemd-analyze verify "$TMP/units/lstore-overlay-watch.service" 2>&1) && [[ -z $out ]]; then
			ok "systemd-analyze verify lstore-overlay-watch.service"
		else
			bad "systemd-analyze verify lstore-overlay-watch.service"
			printf '%s\n' "$out" | sed 's/^/    /'
		fi
	fi
	rm -f "$TMP/ov/fill"
	umount "$TMP/ov"
else
	bad "cannot mount a tmpfs for the watcher's tests (they need root)"
fi

# Lint: every hook, as the shell it runs under.
for f in hooks/common/lstore-lib.sh hooks/initcpio/hooks/lstore hooks/initramfs-tools/scripts/lstore \
	hooks/initramfs-tools/hooks/lstore hooks/dracut/90lstore/lstore-cmdline.sh hooks/dracut/90lstore/lstore-mount.sh \
	hooks/install.sh Tests/boot/initcpio/init hooks/initcpio/systemd/lstore-sysroot; do
	if (cd "$REPO" && shellcheck -x -s sh "$f" && dash -n "$f" && busybox sh -n "$f"); then ok "lint $f"; else bad "lint $f"; fi
done
for f in hooks/initcpio/install/lstore hooks/initcpio/install/sd-lstore hooks/dracut/90lstore/module-setup.sh Tests/boot/boot-test.sh \
	Tests/boot/prepare.sh Tests/boot/initcpio/build.sh Tests/boot/lib-test.sh Tests/boot/sd/module-setup.sh; do
	if (cd "$REPO" && shellcheck -x -s bash "$f" && bash -n "$f"); then ok "lint $f"; else bad "lint $f"; fi
done

# sd-lstore's unit, as systemd reads it, with its script where the initramfs has it: no warning.
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$TMP/sd/usr/lib/lstore" "$TMP/sd/etc/systemd/system"
	cp "$REPO/hooks/initcpio/systemd/lstore-sysroot" "$TMP/sd/usr/lib/lstore/"
	cp "$REPO/hooks/initcpio/systemd/lstore-sysroot.service" "$TMP/sd/etc/systemd/system/"
	if out=$(systemd-analyze verify --root="$TMP/sd" lstore-sysroot.service 2>&1) && [[ -z $out ]]; then
		ok "systemd-analyze verify lstore-sysroot.service"
	else
		bad "systemd-analyze verify lstore-sysroot.service"
		printf '%s\n' "$out" | sed 's/^/    /'
	fi
fi

echo "$pass passed, $fail failed"
((fail == 0))
