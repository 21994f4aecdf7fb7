#!/usr/bin/env bash
# Boots a Debian systemd root filesystem from a squashfs image made by `lstore checkout --squashfs`
# through lstore's boot hooks, in qemu (TCG), with three kinds of initramfs, and proves from the
# serial console what happened:
#   mkinitcpio   Arch's real mkinitcpio (v41), HOOKS=(base udev modconf block lstore): its busybox
#             /init runs hooks/initcpio/hooks/lstore
#   mkinitcpiosd the same with HOOKS=(base systemd modconf block sd-lstore): systemd in the
#             initramfs runs lstore-sysroot.service
#   initcpio  a busybox initramfs reproducing mkinitcpio's /init contract, built by running
#             hooks/initcpio/install/lstore (Tests/boot/initcpio/)
#   itools    Debian's mkinitramfs with hooks/initramfs-tools (in a chroot of the boot rootfs)
#   dracut    dracut --add lstore with hooks/dracut/90lstore (in another chroot): systemd initramfs
#   dracutsh  the same without systemd (dracut's shell init) and with dash as /bin/sh
#   sdunit    dracut's systemd initramfs with sd-lstore's unit (mkinitcpio's systemd variant)
#             mounting /sysroot instead of 90lstore's mount hook
# Cases (each boot prints LSTORE-CHECK lines from a service ordered after multi-user.target):
#   basic     lstore.image=/dev/vdb (a raw squashfs disk), booted twice: / is overlay, lower our
#             squashfs, upper tmpfs, multi-user reached, the file boot 1 wrote is gone in boot 2
#   copytoram the same with lstore.copytoram: the layer is a loop device on a tmpfs copy; the image's
#             disk is then unbound from the guest's virtio driver and every file of / read again
#   stacked   lstore.device=LABEL=... lstore.image=/images/base.sfs:/images/child.sfs on an ext4
#             disk; the child is the Debian chain's gaming layer written by `lstore checkout
#             --delta-from` over the boot layer: its files show, the one it deleted does not
#   bench     (not in the default cases) the same tree from lstore's image, mksquashfs's image and
#             ext4 (root=, no hook): the guest's time to multi-user, as TIME lines
#   staged    `lstore boot stage` of a layer holding the kernel and this kind's initramfs onto an
#             ext4 boot partition; qemu boots the kernel, initrd and options of the BLS entry
#   stagedstack  the boot layer staged as `base` and the gaming layer as `gaming --delta-from base`
#             onto an ext4 boot partition; qemu boots gaming's entry: both images, stacked
#   grub      the same staging, booted by GRUB (BIOS, from a grub-mkrescue CD) whose grub.cfg is
#             what grub-mkconfig makes of the 42_lstore script stage wrote: GRUB finds the partition,
#             sources BOOT/lstore/grub.cfg and loads the default entry's kernel and initrd from it
#   persist   lstore.persist=UUID=...:state lstore.persist_paths=/var/lib/lstore-test, booted
#             twice: the file boot 1 wrote under the persistent path is there in boot 2, the one it
#             wrote in /var/tmp is not
#   persistall lstore.persist=LABEL=... alone, booted twice: the whole upper layer is on the disk
#   full      lstore.overlay_size=128M, filled to 95% once multi-user is reached: the console shows
#             the warning of the watcher the hook installed
#   error     lstore.image=/dev/vdz: one "lstore: ERROR:" line, then the emergency shell, which
#             runs a command typed on the serial console; leaving it prints the line again and
#             starts the shell again: the image's init never starts
#   badimage  lstore.image=/dev/vda (ext4, not squashfs): the same
#   uefi      OVMF and Debian's systemd-boot on a FAT ESP of a GPT disk, holding what `lstore boot
#             stage` wrote there (entry, kernel, initramfs, image): the entry boots as written
#   sdlocked  (mkinitcpiosd) lstore.image=/dev/vdz: the error line says how to unlock systemd's
#             emergency shell (SYSTEMD_SULOGIN_FORCE=1)
#   built     lstore.image= the layer `lstore build` made from a recipe on the boot layer (a RUN
#             installs Debian's hello package from the mirror): it boots, and hello runs
# Usage: boot-test.sh [-k KIND[,KIND...]] [-c CASE[,CASE...]] [-p PLAN] [-t SECONDS]
#   PLAN: which cases for which kind, e.g. "initcpio:basic,copytoram;itools:basic" (instead of -k, -c)
# $LSTORE names the lstore binary (default: the release build).
# Prints one PASS/FAIL line per case and kind; exits non-zero when any failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${LSTORE_BOOT_CACHE:-/var/tmp/lstore-boot-cache}
ROOTFS=${LSTORE_BOOT_ROOTFS:-${LSTORE_CHAIN:-/var/tmp/lstore-chain}/rootfs-boot}
WORK=${LSTORE_BOOT_WORK:-$CACHE/work}
KINDS=initcpio,itools,dracut,dracutsh,sdunit
CASES=basic,copytoram,stacked,persist,persistall,staged,stagedstack,grub,full,error,badimage,built,uefi
PLAN=
TIMEOUT=420
while getopts k:c:p:t: opt; do
	case $opt in
	k) KINDS=$OPTARG ;;
	c) CASES=$OPTARG ;;
	p) PLAN=$OPTARG ;;
	t) TIMEOUT=$OPTARG ;;
	*) exit 2 ;;
	esac
done
CHILD_ROOTFS=${LSTORE_BOOT_CHILD_ROOTFS:-$(dirname "$ROOTFS")/rootfs-gaming}
LSTORE=${LSTORE:-$REPO/.build/release/lstore}
export LSTORE_BOOT_CACHE=$CACHE LSTORE_BOOT_ROOTFS=$ROOTFS
[[ -x $LSTORE ]] || { echo "boot-test: no lstore binary at $LSTORE (swift build -c release, or set LSTORE)" >&2; exit 2; }
[[ -d $CHILD_ROOTFS ]] || { echo "boot-test: no child root filesystem at $CHILD_ROOTFS (debian-chain.sh builds it)" >&2; exit 2; }

log() { printf '%s boot-test: %s\n' "$(date +%T)" "$*" >&2; }

"$HERE/prepare.sh" host
"$HERE/prepare.sh" kernel
KVER=$(cat "$CACHE/kernel.ready")
KERNEL=$CACHE/kroot/boot/vmlinuz-$KVER
mkdir -p "$WORK/logs"
RESULTS=$WORK/results.txt
: >"$RESULTS"
TOKEN=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
PERSIST_UUID=6c2b1e0a-1e57-4b0f-9d7e-15f0a11c0b07

# ---------------------------------------------------------------- images

# The check service: runs once multi-user.target is active, prints what the test needs on the
# serial console and powers the machine off.
write_check_service() {
	local r=$1
	mkdir -p "$r/usr/local/sbin" "$r/etc/systemd/system/multi-user.target.wants"
	cat >"$r/usr/local/sbin/lstore-boot-check" <<'EOS'
#!/bin/sh
say() { printf 'LSTORE-CHECK: %s\n' "$*"; }
say begin
say multi-user=$(systemctl is-active multi-user.target)
say system=$(systemctl is-system-running)
say marker=$(cat /etc/lstore-boot-marker 2>/dev/null || echo none)
say child=$(cat /etc/lstore-child-marker 2>/dev/null || echo none)
if [ -e /etc/lstore-deleted-by-child ]; then say whiteout-target=present; else say whiteout-target=absent; fi
if [ -x /usr/bin/python3 ]; then say python3=present; else say python3=absent; fi
# The layer `lstore build` made from a recipe: its marker, and the package its RUN installed.
if [ -e /etc/lstore-built-marker ]; then say "built=$(cat /etc/lstore-built-marker) $(/usr/bin/hello 2>&1 | head -n 1)"; fi
say "root=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS /)"
findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS | grep -E '^/run/lstore|^/var/lib/lstore-test' | while read -r l; do say "mount=$l"; done
losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r l; do say "loop=$l"; done
if [ -e /var/lib/lstore-test/written ]; then say "leftover=present $(cat /var/lib/lstore-test/written)"; else say leftover=absent; fi
mkdir -p /var/lib/lstore-test && echo "$(cat /proc/sys/kernel/random/boot_id)" >/var/lib/lstore-test/written && sync && say wrote=ok
# A file outside lstore.persist_paths, also written in every boot.
if [ -e /var/tmp/lstore-elsewhere ]; then say "elsewhere=present $(cat /var/tmp/lstore-elsewhere)"; else say elsewhere=absent; fi
cat /proc/sys/kernel/random/boot_id >/var/tmp/lstore-elsewhere && sync
# lstore.copytoram: take the image's disk (/dev/vdb) away from the guest, drop the page cache and
# read every file of the root: all of it must come from the copy in RAM. (lstore_test.detach does
# the same without copytoram, where the reads fail.)
if grep -qwE 'lstore\.copytoram|lstore_test\.detach' /proc/cmdline; then
	virtio=$(readlink -f /sys/block/vdb/device)
	echo "${virtio##*/}" >/sys/bus/virtio/drivers/virtio_blk/unbind
	if [ -e /sys/block/vdb ]; then say detached=no; else say detached=yes; fi
	sync && echo 3 >/proc/sys/vm/drop_caches
	if find / -xdev -type f -print0 | xargs -0 cat >/dev/null 2>/tmp/readerr; then
		say "readall=ok $(find / -xdev -type f | wc -l) files"
	else
		say "readall=failed $(head -c 300 /tmp/readerr | tr '\n' ' ')"
	fi
fi
# lstore_test.fill: fill the writable layer to 95% and wait for lstore's watcher to warn.
if grep -qw lstore_test.fill /proc/cmdline; then
	say "watch=$(systemctl is-active lstore-overlay-watch.service)"
	set -- $(df -Pk /run/lstore/overlay | sed -n 2p)
	dd if=/dev/zero of=/var/tmp/lstore-fill bs=1k count=$(($2 * 95 / 100 - $3)) 2>/dev/null
	for _ in $(seq 1 30); do
		journalctl -b -o cat -u lstore-overlay-watch.service | grep -q 'writable layer is' && break
		sleep 1
	done
	say "overlay-warned=$(journalctl -b -o cat -u lstore-overlay-watch.service | grep -c 'writable layer is')"
	rm -f /var/tmp/lstore-fill
fi
say "uptime=$(cut -d' ' -f1 /proc/uptime)"
# Monotonic microseconds: when systemd started in the new root, when multi-user was reached.
say "userspace-start-us=$(systemctl show -P UserspaceTimestampMonotonic)"
say "multi-user-us=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target)"
say "bootid=$(cat /proc/sys/kernel/random/boot_id)"
say end
systemctl --no-block poweroff
EOS
	chmod 755 "$r/usr/local/sbin/lstore-boot-check"
	cat >"$r/etc/systemd/system/lstore-boot-check.service" <<'EOS'
[Unit]
Description=lstore boot test check
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/lstore-boot-check
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
EOS
	ln -sf ../lstore-boot-check.service "$r/etc/systemd/system/multi-user.target.wants/lstore-boot-check.service"
}

# test_rootfs DIR: the test's additions to a root filesystem: the check service, the marker, no
# getty on the serial console (its prompt would interleave with the check's lines).
test_rootfs() {
	write_check_service "$1"
	echo "lstore-marker-$TOKEN" >"$1/etc/lstore-boot-marker"
	ln -sf /dev/null "$1/etc/systemd/system/serial-getty@ttyS0.service"
}

# The images, all written by lstore from one store: base.sfs, the boot layer (the root filesystem
# and the test's additions), and child.sfs, the gaming layer as a delta over it.
build_images() {
	log "building the test images with $LSTORE (token $TOKEN)"
	rm -rf "$WORK/rootfs" "$WORK/child" "$WORK/store" "$WORK/lstore" "$WORK"/*.sfs "$WORK"/*.ext4
	cp -a "$ROOTFS" "$WORK/rootfs"
	test_rootfs "$WORK/rootfs"
	echo "deleted by the child layer" >"$WORK/rootfs/etc/lstore-deleted-by-child"
	# The child: the chain's next layer, with the same additions, its own marker, and one deletion.
	cp -a "$CHILD_ROOTFS" "$WORK/child"
	test_rootfs "$WORK/child"
	echo "lstore-child-$TOKEN" >"$WORK/child/etc/lstore-child-marker"
	rm -f "$WORK/child/etc/lstore-deleted-by-child"
	"$LSTORE" --store "$WORK/lstore" init >/dev/null
	"$LSTORE" --store "$WORK/lstore" commit "$WORK/rootfs" --ref boot -m "boot test: base" >/dev/null
	"$LSTORE" --store "$WORK/lstore" commit "$WORK/child" --ref gaming --parent boot -m "boot test: child" >/dev/null
	"$LSTORE" --store "$WORK/lstore" checkout boot --squashfs "$WORK/base.sfs" 2>/dev/null
	"$LSTORE" --store "$WORK/lstore" checkout gaming --squashfs "$WORK/child.sfs" --delta-from boot 2>/dev/null
	# A layer built from a recipe on the boot layer: a package from Debian's mirror, a marker.
	mkdir -p "$WORK/recipes/built"
	printf '%s\n' 'FROM boot' \
		'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null' \
		"RUN echo lstore-built-$TOKEN > /etc/lstore-built-marker" >"$WORK/recipes/built/Lstorefile"
	if ! "$LSTORE" --store "$WORK/lstore" build "$WORK/recipes/built" --squashfs "$WORK/built.sfs" >/dev/null 2>"$WORK/build.log"; then
		cat "$WORK/build.log" >&2
		log "lstore build of the recipe failed"
		exit 1
	fi
	# A disk holding the images as files, found by its label.
	mkdir -p "$WORK/store/images"
	cp "$WORK/base.sfs" "$WORK/child.sfs" "$WORK/built.sfs" "$WORK/store/images/"
	local mb=$(($(du -sm "$WORK/store" | cut -f1) + 64))
	mkfs.ext4 -q -F -L LSTOREIMG -d "$WORK/store" "$WORK/store.ext4" "${mb}M"
	# A scratch disk, /dev/vda, also used for persistence.
	mkfs.ext4 -q -F -L LSTOREPERSIST -U "$PERSIST_UUID" "$WORK/persist.ext4" 64M
	log "images: base.sfs $(du -h "$WORK/base.sfs" | cut -f1), child.sfs $(du -h "$WORK/child.sfs" | cut -f1)" \
		"(a delta; the child tree is $(du -sh "$WORK/child" | cut -f1))"
}

# ---------------------------------------------------------------- initramfs builders

build_initcpio() {
	"$HERE/initcpio/build.sh" "$KVER" "$CACHE/kroot" "$WORK/initrd-initcpio.img"
}

# Arch's own mkinitcpio (v41), installed from its source into the cache by real-mkinitcpio.sh
# (LSTORE_REAL_MKINITCPIO, its source tarball LSTORE_MKINITCPIO_SRC), with Debian's busybox
# package binary from the itools chroot (mkinitcpio's base hook needs one that runs commands from
# PATH, which busybox-static does not).
REAL_MKINITCPIO=${LSTORE_REAL_MKINITCPIO:-$REPO/../shared/fixtures/real-mkinitcpio.sh}
MKINITCPIO_SRC=${LSTORE_MKINITCPIO_SRC:-$REPO/../shared/vendor/mkinitcpio-41.tar.zst}
real_mkinitcpio() { # OUTPUT HOOK...
	[[ -x $REAL_MKINITCPIO && -f $MKINITCPIO_SRC ]] ||
		{ echo "no real mkinitcpio: set LSTORE_REAL_MKINITCPIO and LSTORE_MKINITCPIO_SRC" >&2; return 1; }
	"$HERE/prepare.sh" chroot-itools
	local out=$1
	shift
	BUSYBOX=$CACHE/chroot-itools/usr/bin/busybox PREFIX=$CACHE/mkinitcpio \
		"$REAL_MKINITCPIO" "$MKINITCPIO_SRC" "$KVER" "$CACHE/kroot" "$REPO/hooks" "$out" "$@"
}
build_mkinitcpio() {
	real_mkinitcpio "$WORK/initrd-mkinitcpio.img" base udev modconf block lstore
}
build_mkinitcpiosd() {
	real_mkinitcpio "$WORK/initrd-mkinitcpiosd.img" base systemd modconf block sd-lstore
}

# in_chroot NAME CMD...: runs CMD in the chroot with /proc, /sys and /dev, in a private mount
# namespace.
in_chroot() {
	local c=$CACHE/chroot-$1
	shift
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private bash -euo pipefail -c '
		c=$1; shift
		mount -t proc proc "$c/proc"
		mount --rbind /sys "$c/sys"
		mount --rbind /dev "$c/dev"
		chroot "$c" "$@"
	' _ "$c" "$@"
}

build_itools() {
	"$HERE/prepare.sh" chroot-itools
	local c=$CACHE/chroot-itools
	"$REPO/hooks/install.sh" "$c" initramfs-tools
	in_chroot itools mkinitramfs -o /tmp/initrd-itools.img "$KVER"
	mv "$c/tmp/initrd-itools.img" "$WORK/initrd-itools.img"
}

build_dracut() {
	"$HERE/prepare.sh" chroot-dracut
	local c=$CACHE/chroot-dracut
	"$REPO/hooks/install.sh" "$c" dracut
	in_chroot dracut dracut --quiet --force --no-hostonly --kver "$KVER" --add lstore /tmp/initrd-dracut.img
	mv "$c/tmp/initrd-dracut.img" "$WORK/initrd-dracut.img"
}

# sd-lstore's unit and script (mkinitcpio's systemd variant) in dracut's systemd initramfs, in place
# of 90lstore's mount hook (Tests/boot/sd/module-setup.sh).
build_sdunit() {
	"$HERE/prepare.sh" chroot-dracut
	local c=$CACHE/chroot-dracut
	"$REPO/hooks/install.sh" "$c" initcpio
	"$REPO/hooks/install.sh" "$c" dracut
	mkdir -p "$c/usr/lib/dracut/modules.d/91lstoresd"
	cp "$HERE/sd/module-setup.sh" "$c/usr/lib/dracut/modules.d/91lstoresd/"
	in_chroot dracut dracut --quiet --force --no-hostonly --kver "$KVER" --add lstoresd --omit lstore /tmp/initrd-sdunit.img
	mv "$c/tmp/initrd-sdunit.img" "$WORK/initrd-sdunit.img"
}

# dracut's own shell init instead of systemd, with dash as /bin/sh.
build_dracutsh() {
	"$HERE/prepare.sh" chroot-dracut
	local c=$CACHE/chroot-dracut
	"$REPO/hooks/install.sh" "$c" dracut
	in_chroot dracut dracut --quiet --force --no-hostonly --kver "$KVER" \
		--omit "systemd systemd-initrd dracut-systemd bash" --add "dash lstore" /tmp/initrd-dracutsh.img
	mv "$c/tmp/initrd-dracutsh.img" "$WORK/initrd-dracutsh.img"
}

# ---------------------------------------------------------------- booting

# boot KIND NAME DISK APPEND: one boot, with DISK (a copy of the empty ext4 scratch disk) as
# /dev/vda, base.sfs as /dev/vdb and the ext4 image store as /dev/vdc; the serial log is
# $WORK/logs/NAME.log.
# Sets BOOT_SECS (seconds from qemu's start to the check's last line, or to the end) and
# BOOT_STATUS (finished: the check ran to its end; error: an lstore error line; timeout).
# BOOT_KERNEL, BOOT_INITRD and BOOT_CMDLINE replace the kernel, the kind's initrd and
# "console=ttyS0 APPEND"; BOOT_DISK adds a disk, /dev/vdd (read-only unless BOOT_DISK_RW is set).
# BOOT_MEDIUM, a bootable CD image, replaces all three: the firmware boots it (a boot loader on it
# loads the kernel and initrd), and APPEND is not used.
boot() {
	local kind=$1 name=$2 disk=$3 append=$4
	local logf=$WORK/logs/$name.log start t0=$SECONDS pid extra=() how
	[[ -z ${BOOT_DISK:-} ]] || extra=(-drive "file=$BOOT_DISK,if=virtio,format=raw$([[ -n ${BOOT_DISK_RW:-} ]] || echo ,readonly=on)")
	if [[ -n ${BOOT_FIRMWARE:-} ]]; then
		how=(-bios "$BOOT_FIRMWARE")
	elif [[ -n ${BOOT_MEDIUM:-} ]]; then
		how=(-cdrom "$BOOT_MEDIUM" -boot d)
	else
		how=(-kernel "${BOOT_KERNEL:-$KERNEL}" -initrd "${BOOT_INITRD:-$WORK/initrd-$kind.img}"
			-append "${BOOT_CMDLINE:-console=ttyS0 $append}")
	fi
	: >"$logf"
	start=$(date +%s.%N)
	qemu-system-x86_64 -machine accel=tcg -m 1024 -nographic -no-reboot "${how[@]}" \
		-drive "file=$disk,if=virtio,format=raw" \
		-drive "file=$WORK/base.sfs,if=virtio,format=raw,readonly=on" \
		-drive "file=$WORK/store.ext4,if=virtio,format=raw,readonly=on" \
		"${extra[@]}" </dev/null >"$logf" 2>&1 &
	pid=$!
	BOOT_STATUS=timeout
	while kill -0 "$pid" 2>/dev/null; do
		if grep -q 'LSTORE-CHECK: end' "$logf"; then
			BOOT_STATUS=finished
			break
		fi
		if grep -q 'lstore: ERROR:' "$logf"; then
			BOOT_STATUS=error
			sleep 3 # let the emergency shell start; nothing else may follow
			break
		fi
		((SECONDS - t0 <= TIMEOUT)) || break
		sleep 0.5
	done
	BOOT_SECS=$(awk -v n="$(date +%s.%N)" -v s="$start" 'BEGIN{printf "%.1f", n-s}')
	# qemu may have stopped by itself (a reboot, with -no-reboot) before the loop looked.
	if [[ $BOOT_STATUS == timeout ]]; then
		if grep -q 'LSTORE-CHECK: end' "$logf"; then
			BOOT_STATUS=finished
		elif grep -q 'lstore: ERROR:' "$logf"; then
			BOOT_STATUS=error
		fi
	fi
	if [[ $BOOT_STATUS == finished ]]; then
		# The check powers the machine off; give it a little time, then stop it.
		for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
	fi
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	tr -d '\r' <"$logf" >"$logf.tmp" && mv "$logf.tmp" "$logf"
	log "$name: $BOOT_STATUS after ${BOOT_SECS}s"
}

# check NAME KEY=PATTERN...: every KEY=PATTERN must match one LSTORE-CHECK line (grep -E on the
# text after "LSTORE-CHECK: "); !KEY=PATTERN must match none. Prints what failed.
CHECK_FAILED=()
check() {
	local name=$1 logf=$WORK/logs/$1.log want neg
	shift
	for want in "$@"; do
		neg=
		if [[ $want == !* ]]; then neg=1; want=${want#!}; fi
		if sed -n 's/^.*LSTORE-CHECK: //p' "$logf" | grep -qE -- "^$want"; then
			[[ -z $neg ]] || CHECK_FAILED+=("$name: unexpected '$want'")
		else
			[[ -n $neg ]] || CHECK_FAILED+=("$name: no '$want'")
		fi
	done
}

# The checks every successful boot must pass: the overlay root over our squashfs and a tmpfs.
check_root() { # NAME LOWERDIR [LEFTOVER [UPPER-BASE]]
	local name=$1 lower=$2 leftover=${3:-absent} upper=${4:-/run/lstore/overlay}
	check "$name" 'begin' 'end' 'multi-user=active' "marker=lstore-marker-$TOKEN" \
		"root=lstore overlay .*lowerdir=$lower,upperdir=$upper/upper,workdir=$upper/work" \
		"leftover=$leftover" 'wrote=ok'
	if [[ $upper == /run/lstore/overlay ]]; then
		check "$name" 'mount=/run/lstore/overlay lstore-overlay tmpfs '
	else
		check "$name" '!mount=/run/lstore/overlay '
	fi
}

# value NAME KEY: the value of the LSTORE-CHECK line KEY=... in NAME's log.
value() {
	sed -n "s/^.*LSTORE-CHECK: $2=//p" "$WORK/logs/$1.log" | head -n1
}

# timing NAME: the guest's own clock for one boot: when the initramfs handed over to systemd in the
# image, and when multi-user.target was reached.
timing() {
	local hook
	hook=$(sed -n 's/^.*lstore: root is overlay .*(uptime \([0-9.]*\)s to \([0-9.]*\)s).*$/\1 \2/p' "$WORK/logs/$1.log" | head -n1)
	awk -v u="$(value "$1" userspace-start-us)" -v m="$(value "$1" multi-user-us)" -v h="$hook" \
		'BEGIN { split(h, t, " "); printf "; guest:";
			if (h != "") printf " hook %.2fs,", t[2] - t[1];
			if (u != "" && m != "") printf " root switched at %.1fs, multi-user at %.1fs", u/1e6, m/1e6 }'
}

report() { # KIND CASE SECONDS-TEXT
	local kind=$1 case=$2 secs=$3 f
	if ((${#CHECK_FAILED[@]} == 0)); then
		echo "PASS $kind $case ($secs)" | tee -a "$RESULTS"
	else
		echo "FAIL $kind $case ($secs)" | tee -a "$RESULTS"
		for f in "${CHECK_FAILED[@]}"; do echo "    $f" | tee -a "$RESULTS"; done
	fi
	CHECK_FAILED=()
}

# fresh_disk NAME: a new copy of the empty scratch disk; prints its path.
fresh_disk() {
	cp "$WORK/persist.ext4" "$WORK/disk-$1.ext4"
	echo "$WORK/disk-$1.ext4"
}

case_basic() {
	local kind=$1 n t1 t2
	for n in 1 2; do
		boot "$kind" "$kind-basic-$n" "$(fresh_disk "$kind-basic-$n")" "boot=lstore lstore.image=/dev/vdb"
		[[ $n == 1 ]] && t1=$BOOT_SECS || t2=$BOOT_SECS
		check_root "$kind-basic-$n" /run/lstore/layers/0
		check "$kind-basic-$n" 'mount=/run/lstore/layers/0 /dev/vdb squashfs ro'
		# sdunit: the root was mounted by sd-lstore's unit (there is no other lstore hook).
		if [[ $kind == sdunit || $kind == mkinitcpiosd ]] &&
			! grep -qE 'lstore-sysroot\[[0-9]+\]: lstore: root is overlay ' "$WORK/logs/$kind-basic-$n.log"; then
			CHECK_FAILED+=("$kind-basic-$n: lstore-sysroot.service did not run")
		fi
	done
	report "$kind" basic "boots ${t1}s, ${t2}s$(timing "$kind-basic-1")"
}

case_copytoram() {
	local kind=$1
	boot "$kind" "$kind-copytoram" "$(fresh_disk "$kind-copytoram")" "boot=lstore lstore.image=/dev/vdb lstore.copytoram"
	check_root "$kind-copytoram" /run/lstore/layers/0
	check "$kind-copytoram" 'mount=/run/lstore/ram lstore-ram tmpfs ' \
		'mount=/run/lstore/layers/0 /dev/loop[0-9]+ squashfs ro' 'loop=/dev/loop[0-9]+ /run/lstore/ram/0.sfs' \
		'detached=yes' 'readall=ok [0-9]{4,} files'
	report "$kind" copytoram "boot ${BOOT_SECS}s$(timing "$kind-copytoram")"
}

case_stacked() {
	local kind=$1
	boot "$kind" "$kind-stacked" "$(fresh_disk "$kind-stacked")" "boot=lstore lstore.device=LABEL=LSTOREIMG lstore.image=/images/base.sfs:images/child.sfs lstore.overlay_size=256M"
	check_root "$kind-stacked" /run/lstore/layers/1:/run/lstore/layers/0
	check "$kind-stacked" "child=lstore-child-$TOKEN" 'whiteout-target=absent' 'python3=present' \
		'mount=/run/lstore/device /dev/vdc ext4 ro' 'mount=/run/lstore/overlay lstore-overlay tmpfs rw,relatime,size=262144k' \
		'loop=/dev/loop[0-9]+ /run/lstore/device/images/base.sfs' \
		'loop=/dev/loop[0-9]+ /run/lstore/device/images/child.sfs'
	report "$kind" stacked "boot ${BOOT_SECS}s$(timing "$kind-stacked")"
}

# The layer `lstore build` made from a recipe boots, with the package its RUN installed.
case_built() {
	local kind=$1 name=$1-built
	boot "$kind" "$name" "$(fresh_disk "$name")" "boot=lstore lstore.device=LABEL=LSTOREIMG lstore.image=/images/built.sfs"
	check_root "$name" /run/lstore/layers/0
	check "$name" "built=lstore-built-$TOKEN Hello, world!" 'loop=/dev/loop[0-9]+ /run/lstore/device/images/built.sfs'
	report "$kind" built "boot ${BOOT_SECS}s$(timing "$name")"
}

# Under mkinitcpio's systemd hook the emergency shell asks for root's password, which the image
# does not hold: the error line says how to get a shell (SYSTEMD_SULOGIN_FORCE=1).
case_sdlocked() {
	local kind=$1 name=$1-sdlocked
	boot "$kind" "$name" "$(fresh_disk "$name")" "lstore.image=/dev/vdz lstore.timeout=2"
	[[ $BOOT_STATUS == error ]] || CHECK_FAILED+=("$name: no lstore error line (status $BOOT_STATUS)")
	tr -d '\r' <"$WORK/logs/$name.log" | grep -qE "lstore: ERROR: image device '/dev/vdz' did not appear within 2s .*SYSTEMD_SULOGIN_FORCE=1" ||
		CHECK_FAILED+=("$name: the error line does not say how to get the emergency shell")
	report "$kind" sdlocked "error after ${BOOT_SECS}s"
}

# The writable layer filled to 95%: the watcher lstore's hook installed warns on the console.
case_full() {
	local kind=$1 name=$1-full
	boot "$kind" "$name" "$(fresh_disk "$name")" "boot=lstore lstore.image=/dev/vdb lstore.overlay_size=128M lstore_test.fill"
	check_root "$name" /run/lstore/layers/0
	check "$name" 'watch=active' 'overlay-warned=1'
	grep -qE 'lstore: warning: the writable layer is 9[5-9]% full \([0-9]+ of 128 MiB used in /run/lstore/overlay\): writes will fail' \
		"$WORK/logs/$name.log" || CHECK_FAILED+=("$name: no warning on the console")
	report "$kind" full "boot ${BOOT_SECS}s$(timing "$name")"
}

# entry_value FILE KEY: a BLS entry's value for KEY.
entry_value() { sed -n "s/^$2 //p" "$1" | head -n1; }

# staged_layer KIND REF [TREE [PARENT]]: commits as REF, a child of PARENT (default boot), a copy of
# TREE (default the test's root file system) holding the kernel and this kind's initramfs under
# Debian's names ($WORK/staged-rootfs), with the same times in every copy.
staged_layer() {
	local kind=$1 ref=$2 tree=${3:-$WORK/rootfs} parent=${4:-boot} layer=$WORK/staged-rootfs
	rm -rf "$layer" && cp -a "$tree" "$layer"
	rm -f "$layer"/boot/vmlinuz-* "$layer"/boot/initrd.img-*
	cp -p "$KERNEL" "$layer/boot/vmlinuz-$KVER"
	cp -p "$WORK/initrd-$kind.img" "$layer/boot/initrd.img-$KVER"
	"$LSTORE" --store "$WORK/lstore" commit "$layer" --ref "$ref" --parent "$parent" >/dev/null
}

# boot_partition FILE [KERNELS [IMAGES]]: an ext4 file system (LSTOREBOOT) for images of IMAGES MiB
# (default: base.sfs's size) plus the kernel and initramfs in one of them, and KERNELS (default 1)
# more copies of the kernel and initramfs.
boot_partition() {
	local kernels=${2:-1} images=${3:-$(du -sm "$WORK/base.sfs" | cut -f1)} boot
	boot=$(du -sm "$WORK/staged-rootfs/boot" | cut -f1)
	mkfs.ext4 -q -F -L LSTOREBOOT "$1" "$(((kernels + 1) * boot + images + 64))M"
}

# boot_staged KIND NAME PART ENTRY STAGE: mounts the boot partition PART, runs STAGE MOUNTPOINT KIND (a
# function running the `lstore boot` commands; its output goes to the log), and boots exactly the
# kernel, initrd and options of the entry loader/entries/lstore-ENTRY.conf it wrote, with PART as
# /dev/vdd. STAGED_ENTRY is a copy of the entry. Returns 1, booting nothing, when staging failed.
boot_staged() {
	local kind=$1 name=$2 part=$3 mnt=$WORK/bootmnt entry
	mkdir -p "$mnt"
	mount -o loop "$part" "$mnt"
	entry=$mnt/loader/entries/lstore-$4.conf
	STAGED_ENTRY=$WORK/logs/$name.conf
	BOOT_SECS=0
	if "$5" "$mnt" "$kind" >"$WORK/logs/stage-$name.log" 2>&1; then
		cp "$entry" "$STAGED_ENTRY"
		cp "$mnt$(entry_value "$entry" linux)" "$WORK/staged-vmlinuz"
		cp "$mnt$(entry_value "$entry" initrd)" "$WORK/staged-initrd"
		log "$name: images $(cd "$mnt/lstore" && du -h -- */image.sfs | tr '\t\n' ' ')"
	else
		CHECK_FAILED+=("$name: lstore boot stage failed: $(tail -n1 "$WORK/logs/stage-$name.log")")
	fi
	umount "$mnt"
	((${#CHECK_FAILED[@]} == 0)) || return 1
	BOOT_KERNEL=$WORK/staged-vmlinuz BOOT_INITRD=$WORK/staged-initrd BOOT_CMDLINE=$(entry_value "$STAGED_ENTRY" options) \
		BOOT_DISK=$part boot "$kind" "$name" "$(fresh_disk "$name")" ""
}

# A layer holding its own kernel and this kind's initramfs, staged by `lstore boot stage` onto an
# ext4 boot partition (mounted, so lstore finds its UUID itself); qemu then boots exactly the
# kernel, initrd and options the generated entry names, with that partition as /dev/vdd.
case_staged() {
	local kind=$1 name=$1-staged part=$WORK/bootpart-$1.ext4
	staged_layer "$kind" "staged-$kind"
	boot_partition "$part"
	if boot_staged "$kind" "$name" "$part" staged stage_staged; then
		check_root "$name" /run/lstore/layers/0
		check "$name" 'mount=/run/lstore/device /dev/vdd ext4 ro' \
			'loop=/dev/loop[0-9]+ /run/lstore/device/lstore/staged/image.sfs'
		grep -qx "options boot=lstore lstore.device=UUID=$(blkid -o value -s UUID "$part") lstore.image=/lstore/staged/image.sfs rd.systemd.gpt_auto=0 console=ttyS0" \
			"$STAGED_ENTRY" || CHECK_FAILED+=("$name: unexpected entry: $(tr '\n' '|' <"$STAGED_ENTRY")")
	fi
	report "$kind" staged "boot ${BOOT_SECS}s$(timing "$name")"
}

# UEFI with Debian's systemd-boot: OVMF (a copy of Debian's OVMF.fd) runs systemd-boot from the ESP
# of a GPT disk, /dev/vdd. The ESP holds what `lstore boot stage` wrote there (into a tmpfs standing
# for it, so that the entry's paths are from the ESP's root): loader.conf, the entry, the kernel,
# the initramfs and the image. It is made with mkfs.vfat and filled with mcopy (the host's kernel
# may have no vfat), then written into the disk at the partition's offset. systemd-boot reads the
# entry as stage wrote it and boots it; the initramfs mounts the image from the FAT ESP.
case_uefi() {
	local kind=$1 name=$1-uefi esp=$WORK/esp-$1 fat=$WORK/esp-$1.vfat disk=$WORK/uefi-$1.img mb
	staged_layer "$kind" "uefi-$kind"
	mkdir -p "$esp"
	mount -t tmpfs -o size=2g lstore-esp "$esp"
	mkdir -p "$esp/EFI/BOOT" "$esp/loader"
	cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$esp/EFI/BOOT/BOOTX64.EFI"
	printf 'timeout 0\n' >"$esp/loader/loader.conf"
	if "$LSTORE" --store "$WORK/lstore" boot stage "uefi-$kind" --as uefi --boot-dir "$esp" --esp "$esp" \
		--device UUID=4C53-5452 --grub-scripts "$WORK/grub.d" --options console=ttyS0 >"$WORK/logs/stage-$name.log" 2>&1; then
		cp "$esp/loader/entries/lstore-uefi.conf" "$WORK/logs/$name.conf"
		mb=$(($(du -sm "$esp" | cut -f1) + 64))
		rm -f "$fat" "$disk"
		mkfs.vfat -F 32 -i 4C535452 -n LSTOREESP -C "$fat" $((mb * 1024)) >/dev/null
		(cd "$esp" && mcopy -s -i "$fat" ./* ::/)
		truncate -s $((mb + 2))M "$disk"
		printf 'label: gpt\nstart=2048, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n' $((mb * 2048)) | sfdisk -q "$disk"
		dd if="$fat" of="$disk" bs=1M seek=1 conv=notrunc status=none
	else
		CHECK_FAILED+=("$name: lstore boot stage failed: $(tail -n1 "$WORK/logs/stage-$name.log")")
	fi
	umount "$esp"
	if ((${#CHECK_FAILED[@]} == 0)); then
		cp /usr/share/ovmf/OVMF.fd "$WORK/ovmf-$kind.fd"
		BOOT_FIRMWARE=$WORK/ovmf-$kind.fd BOOT_DISK=$disk boot "$kind" "$name" "$(fresh_disk "$name")" ""
		check_root "$name" /run/lstore/layers/0
		check "$name" 'mount=/run/lstore/device /dev/vdd1 vfat ro' \
			'loop=/dev/loop[0-9]+ /run/lstore/device/lstore/uefi/image.sfs'
		grep -qx "options boot=lstore lstore.device=UUID=4C53-5452 lstore.image=/lstore/uefi/image.sfs rd.systemd.gpt_auto=0 console=ttyS0" \
			"$WORK/logs/$name.conf" || CHECK_FAILED+=("$name: unexpected entry: $(tr '\n' '|' <"$WORK/logs/$name.conf")")
	fi
	report "$kind" uefi "boot ${BOOT_SECS}s$(timing "$name")"
}

# stage_staged MOUNTPOINT KIND. The GRUB script goes to a scratch directory, never the host's
# /etc/grub.d.
stage_staged() {
	"$LSTORE" --store "$WORK/lstore" boot stage "staged-$2" --as staged --boot-dir "$1" \
		--grub-scripts "$WORK/grub.d" --options console=ttyS0
}

# A stack staged by `lstore boot stage`: the boot layer as `base`, and the gaming layer, each with
# the kernel and this kind's initramfs, as `gaming --delta-from base`; qemu boots gaming's entry,
# which stacks the two images.
case_stagedstack() {
	local kind=$1 name=$1-stagedstack part=$WORK/bootpart-$1-stack.ext4
	staged_layer "$kind" "stack-base-$kind"
	staged_layer "$kind" "stack-gaming-$kind" "$WORK/child" "stack-base-$kind"
	# The gaming image holds no second kernel: the same file, with the same times, is in base.
	boot_partition "$part" 2 "$(du -sm "$WORK/base.sfs" "$WORK/child.sfs" | awk '{n += $1} END {print n}')"
	if boot_staged "$kind" "$name" "$part" gaming stage_stack; then
		check_root "$name" /run/lstore/layers/1:/run/lstore/layers/0
		check "$name" "child=lstore-child-$TOKEN" 'whiteout-target=absent' 'python3=present' \
			'mount=/run/lstore/device /dev/vdd ext4 ro' \
			'loop=/dev/loop[0-9]+ /run/lstore/device/lstore/base/image.sfs' \
			'loop=/dev/loop[0-9]+ /run/lstore/device/lstore/gaming/image.sfs'
		grep -qx "options boot=lstore lstore.device=UUID=$(blkid -o value -s UUID "$part") lstore.image=/lstore/base/image.sfs:/lstore/gaming/image.sfs rd.systemd.gpt_auto=0 console=ttyS0" \
			"$STAGED_ENTRY" || CHECK_FAILED+=("$name: unexpected entry: $(tr '\n' '|' <"$STAGED_ENTRY")")
	fi
	report "$kind" stagedstack "boot ${BOOT_SECS}s$(timing "$name")"
}

# stage_stack MOUNTPOINT KIND
stage_stack() {
	local stage=("$LSTORE" --store "$WORK/lstore" boot stage --boot-dir "$1" --grub-scripts "$WORK/grub.d" --options console=ttyS0)
	"${stage[@]}" "stack-base-$2" --as base && "${stage[@]}" "stack-gaming-$2" --as gaming --delta-from base
}

# grub_mkconfig SCRIPTS OUT: the host's grub-mkconfig -o OUT with SCRIPTS/42_lstore as the only
# script of /etc/grub.d and no /etc/default/grub settings, in a private mount namespace (tmpfs and
# bind mounts over those, gone when it ends: the host's files are not touched). grub-mkconfig
# probes the host's root and /boot devices (for 10_linux, not run here) and checks OUT with
# grub-script-check.
grub_mkconfig() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private bash -euo pipefail -c '
		mount -t tmpfs lstore-grub.d /etc/grub.d
		cp "$1/42_lstore" /etc/grub.d/
		if [[ -e /etc/default/grub ]]; then mount --bind /dev/null /etc/default/grub; fi
		if [[ -d /etc/default/grub.d ]]; then mount -t tmpfs lstore-grub-default /etc/default/grub.d; fi
		grub-mkconfig -o "$2"
	' _ "$1" "$2"
}

# The staged layer booted by GRUB, as on a machine whose GRUB has no blscfg (Debian): stage writes
# 42_lstore (into a scratch directory); grub-mkconfig runs it while the partition is mounted, so
# grub-probe and grub-mkrelpath resolve the real loop device. A BIOS GRUB CD (grub-mkrescue) whose
# grub.cfg is the serial console, a one second timeout and exactly grub-mkconfig's output boots the
# machine: GRUB finds the partition by its UUID, sources BOOT/lstore/grub.cfg and boots its default
# entry, loading the kernel and initrd from the partition (qemu gets no -kernel or -initrd). A decoy
# layer, staged first, is the menu's first entry: only `set default` makes GRUB boot the other one.
# The decoy's image device does not exist: booting it ends at an lstore error.
case_grub() {
	local kind=$1 name=$1-grub part=$WORK/bootpart-$1-grub.ext4 mnt=$WORK/bootmnt scripts=$WORK/grub.d
	local medium=$WORK/grub-medium cfg=$WORK/logs/$1-grub-mkconfig.cfg lcfg=$WORK/logs/$1-grub-lstore.cfg uuid stage
	staged_layer "$kind" "grub-$kind"
	rm -rf "$WORK/decoy" "$scripts" && mkdir -p "$WORK/decoy/etc" && echo decoy >"$WORK/decoy/etc/lstore-decoy"
	"$LSTORE" --store "$WORK/lstore" commit "$WORK/decoy" --ref "decoy-$kind" >/dev/null
	boot_partition "$part" 2
	uuid=$(blkid -o value -s UUID "$part")
	mkdir -p "$mnt"
	mount -o loop "$part" "$mnt"
	stage=("$LSTORE" --store "$WORK/lstore" boot stage --boot-dir "$mnt" --grub-scripts "$scripts")
	if "${stage[@]}" "decoy-$kind" --as decoy --kernel "$KERNEL" --initrd "$WORK/initrd-$kind.img" --device /dev/vdz \
		--options "console=ttyS0 lstore.timeout=2" >"$WORK/logs/stage-$name.log" 2>&1 &&
		"${stage[@]}" "grub-$kind" --as staged --options console=ttyS0 >>"$WORK/logs/stage-$name.log" 2>&1 &&
		"$LSTORE" boot default staged --boot-dir "$mnt" >>"$WORK/logs/stage-$name.log" 2>&1; then
		cp "$mnt/lstore/grub.cfg" "$lcfg"
		cp "$scripts/42_lstore" "$WORK/logs/$name-42_lstore"
		# GRUB reads this file itself; the host's parser must accept it too.
		grub-script-check "$lcfg" || CHECK_FAILED+=("$name: grub-script-check rejects BOOT/lstore/grub.cfg")
		if grub_mkconfig "$scripts" "$cfg" >"$WORK/logs/$name-mkconfig.log" 2>&1; then
			grub-script-check "$cfg" || CHECK_FAILED+=("$name: grub-script-check rejects grub-mkconfig's output")
			# shellcheck disable=SC2016 # GRUB's variable
			grep -qxF "search --no-floppy --fs-uuid --set=lstore_root $uuid" "$cfg" &&
				grep -qxF 'source ($lstore_root)/lstore/grub.cfg' "$cfg" ||
				CHECK_FAILED+=("$name: unexpected grub-mkconfig output: $(grep -v '^#' "$cfg" | tr '\n' '|')")
		else
			CHECK_FAILED+=("$name: grub-mkconfig failed: $(tail -n1 "$WORK/logs/$name-mkconfig.log")")
		fi
	else
		CHECK_FAILED+=("$name: lstore boot failed: $(tail -n1 "$WORK/logs/stage-$name.log")")
	fi
	umount "$mnt"
	BOOT_SECS=0
	if ((${#CHECK_FAILED[@]} == 0)); then
		rm -rf "$medium" && mkdir -p "$medium/boot/grub"
		{
			printf '%s\n' 'serial --unit=0 --speed=115200' 'terminal_input serial' 'terminal_output serial' 'set timeout=1'
			cat "$cfg"
		} >"$medium/boot/grub/grub.cfg"
		cp "$medium/boot/grub/grub.cfg" "$WORK/logs/$name-medium.cfg"
		# BIOS GRUB only: no EFI image, which would need mtools.
		if grub-mkrescue -d /usr/lib/grub/i386-pc -o "$WORK/grub-$kind.iso" "$medium" >"$WORK/logs/$name-mkrescue.log" 2>&1; then
			BOOT_MEDIUM=$WORK/grub-$kind.iso BOOT_DISK=$part boot "$kind" "$name" "$(fresh_disk "$name")" ""
			check_root "$name" /run/lstore/layers/0
			check "$name" 'mount=/run/lstore/device /dev/vdd ext4 ro' \
				'loop=/dev/loop[0-9]+ /run/lstore/device/lstore/staged/image.sfs'
			grep -qF 'Booting `lstore staged (' "$WORK/logs/$name.log" ||
				CHECK_FAILED+=("$name: GRUB did not boot the entry lstore staged")
			grep -qF "Command line: BOOT_IMAGE=/lstore/staged/vmlinuz boot=lstore lstore.device=UUID=$uuid lstore.image=/lstore/staged/image.sfs rd.systemd.gpt_auto=0 console=ttyS0" \
				"$WORK/logs/$name.log" || CHECK_FAILED+=("$name: not the staged entry's kernel and options")
		else
			CHECK_FAILED+=("$name: grub-mkrescue failed: $(tail -n1 "$WORK/logs/$name-mkrescue.log")")
		fi
	fi
	report "$kind" grub "boot ${BOOT_SECS}s$(timing "$name")"
}


# Boot timing: the same tree booted from lstore's image, from mksquashfs's image of it (zstd level
# 6, the store's level), both through the hook, and from an ext4 file system with root= and no
# hook. Prints the guest's clock: kernel start to the image's systemd, and to multi-user.target.
case_bench() {
	local kind=$1 name variant mb
	mksquashfs "$WORK/rootfs" "$WORK/mksquashfs.sfs" -noappend -comp zstd -Xcompression-level 6 -quiet -no-progress >/dev/null
	mb=$(($(du -sm "$WORK/rootfs" | cut -f1) * 3 / 2 + 64))
	mkfs.ext4 -q -F -L LSTOREROOT -d "$WORK/rootfs" "$WORK/root.ext4" "${mb}M"
	for variant in lstore mksquashfs ext4; do
		name=$kind-bench-$variant
		case $variant in
		lstore) boot "$kind" "$name" "$(fresh_disk "$name")" "boot=lstore lstore.image=/dev/vdb" ;;
		mksquashfs) BOOT_DISK=$WORK/mksquashfs.sfs boot "$kind" "$name" "$(fresh_disk "$name")" "boot=lstore lstore.image=/dev/vdd" ;;
		ext4) BOOT_DISK=$WORK/root.ext4 BOOT_DISK_RW=1 boot "$kind" "$name" "$(fresh_disk "$name")" "root=/dev/vdd rw" ;;
		esac
		check "$name" 'multi-user=active' "marker=lstore-marker-$TOKEN"
		echo "TIME $kind $variant: wall ${BOOT_SECS}s$(timing "$name")" | tee -a "$RESULTS"
	done
	report "$kind" bench "lstore, mksquashfs and ext4 booted"
}

case_persist() {
	local kind=$1 n t1 t2 disk
	disk=$(fresh_disk "$kind-persist")
	for n in 1 2; do
		boot "$kind" "$kind-persist-$n" "$disk" "boot=lstore lstore.image=/dev/vdb lstore.persist=UUID=$PERSIST_UUID:state lstore.persist_paths=/var/lib/lstore-test"
		[[ $n == 1 ]] && t1=$BOOT_SECS || t2=$BOOT_SECS
		if [[ $n == 1 ]]; then
			check_root "$kind-persist-$n" /run/lstore/layers/0
		else
			# The file boot 1 wrote, with boot 1's boot id.
			check_root "$kind-persist-$n" /run/lstore/layers/0 "present $(value "$kind-persist-1" bootid)\$"
			# Nothing outside the persistent paths survives.
			check "$kind-persist-$n" 'elsewhere=absent'
		fi
		check "$kind-persist-$n" 'mount=/run/lstore/persist /dev/vda ext4 rw' \
			'mount=/var/lib/lstore-test /dev/vda\[/state/var/lib/lstore-test\] ext4 rw'
	done
	report "$kind" persist "boots ${t1}s, ${t2}s$(timing "$kind-persist-1")"
}

# Whole-system persistence: lstore.persist without persist_paths puts the upper layer on the disk.
case_persistall() {
	local kind=$1 n t1 t2 disk
	disk=$(fresh_disk "$kind-persistall")
	for n in 1 2; do
		boot "$kind" "$kind-persistall-$n" "$disk" "boot=lstore lstore.image=/dev/vdb lstore.persist=LABEL=LSTOREPERSIST"
		[[ $n == 1 ]] && t1=$BOOT_SECS || t2=$BOOT_SECS
		if [[ $n == 1 ]]; then
			check_root "$kind-persistall-$n" /run/lstore/layers/0 absent /run/lstore/persist/lstore
		else
			check_root "$kind-persistall-$n" /run/lstore/layers/0 "present $(value "$kind-persistall-1" bootid)\$" /run/lstore/persist/lstore
			check "$kind-persistall-$n" "elsewhere=present $(value "$kind-persistall-1" bootid)\$"
		fi
		check "$kind-persistall-$n" 'mount=/run/lstore/persist /dev/vda ext4 rw'
	done
	report "$kind" persistall "boots ${t1}s, ${t2}s$(timing "$kind-persistall-1")"
}

# error_boot KIND CASE APPEND EXPECTED-LINE: the boot stops at one lstore error line.
error_boot() {
	local kind=$1 name=$1-$2 append=$3 line=$4 n
	boot "$kind" "$name" "$(fresh_disk "$name")" "$append"
	n=$(grep -c 'lstore: ERROR:' "$WORK/logs/$name.log" || true)
	[[ $BOOT_STATUS == error ]] || CHECK_FAILED+=("$name: no lstore error line (status $BOOT_STATUS)")
	grep -qF "lstore: ERROR: $line" "$WORK/logs/$name.log" || CHECK_FAILED+=("$name: not the line 'lstore: ERROR: $line'")
	((n <= 1)) || CHECK_FAILED+=("$name: $n error lines, not one")
	# Neither the switch to the image's root nor its init: the initramfs' own systemd (dracut)
	# may run, the image's may not.
	if grep -qE 'LSTORE-CHECK|switch-root.service|Multi-User System|Switching root' "$WORK/logs/$name.log"; then
		CHECK_FAILED+=("$name: the system booted on")
	fi
	report "$kind" "$2" "error after ${BOOT_SECS}s"
}

# The error case also uses the emergency shell: a command typed there runs, and leaving the shell
# prints the error again and starts the shell again instead of booting on.
case_error() {
	local kind=$1 name=$1-error logf fifo qpid t0 n
	logf=$WORK/logs/$name.log
	fifo=$WORK/serial-in
	rm -f "$fifo"
	mkfifo "$fifo"
	: >"$logf"
	t0=$SECONDS
	qemu-system-x86_64 -machine accel=tcg -m 1024 -nographic -no-reboot \
		-kernel "$KERNEL" -initrd "$WORK/initrd-$kind.img" \
		-append "console=ttyS0 boot=lstore lstore.image=/dev/vdz lstore.timeout=2" \
		-drive "file=$(fresh_disk "$name"),if=virtio,format=raw" \
		-drive "file=$WORK/base.sfs,if=virtio,format=raw,readonly=on" \
		<"$fifo" >"$logf" 2>&1 &
	qpid=$!
	exec 3>"$fifo"
	# until PATTERN appears in the log (up to 90s): 0, else 1
	until_log() {
		local t=$SECONDS
		until tr -d '\r' <"$logf" | grep -qE -- "$1"; do
			((SECONDS - t < 90)) && kill -0 "$qpid" 2>/dev/null || return 1
			sleep 0.5
		done
	}
	local prompt='\[rootfs |\(initramfs\) |lstore:.*# |Press Enter for maintenance'
	if until_log 'lstore: ERROR:'; then
		BOOT_SECS=$((SECONDS - t0))
		if until_log "$prompt"; then
			if grep -q 'Press Enter for maintenance' "$logf"; then
				printf '\n' >&3
				until_log 'lstore:.*# ' || true
			fi
			sleep 2
			# shellcheck disable=SC2016 # expanded by the guest's shell
			printf 'echo SHELL-OK-$((6*7))\n' >&3
			until_log 'SHELL-OK-42' || CHECK_FAILED+=("$name: a command typed in the emergency shell did not run")
			printf 'exit\n' >&3
			local t=$SECONDS
			while n=$(tr -d '\r' <"$logf" | grep -c 'lstore: ERROR:'); ((n < 2 && SECONDS - t < 90)); do sleep 0.5; done
			((n >= 2)) || CHECK_FAILED+=("$name: leaving the shell did not print the error again")
			sleep 5
		else
			CHECK_FAILED+=("$name: no emergency shell prompt")
		fi
	else
		BOOT_SECS=$((SECONDS - t0))
		CHECK_FAILED+=("$name: no lstore error line")
	fi
	exec 3>&-
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	rm -f "$fifo"
	tr -d '\r' <"$logf" >"$logf.tmp" && mv "$logf.tmp" "$logf"
	grep -qF "lstore: ERROR: image device '/dev/vdz' did not appear within 2s" "$logf" ||
		CHECK_FAILED+=("$name: not the expected error line")
	if grep -qE 'LSTORE-CHECK|switch-root.service|Multi-User System|Switching root' "$logf"; then
		CHECK_FAILED+=("$name: the system booted on")
	fi
	# One line per failure: the error, then the shell; a second one only after leaving the shell.
	n=$(grep -c 'lstore: ERROR:' "$logf" || true)
	((n <= 2)) || CHECK_FAILED+=("$name: $n error lines for one error and one exit")
	report "$kind" error "error after ${BOOT_SECS}s; shell ran a command; exit: error again, no boot"
}

case_badimage() {
	error_boot "$1" badimage "boot=lstore lstore.image=/dev/vda" \
		"image '/dev/vda' is not a squashfs image"
}

# ---------------------------------------------------------------- main

build_images
# The plan: KIND:CASE,CASE;... (from -p, else every case of -c for every kind of -k).
if [[ -z $PLAN ]]; then
	IFS=, read -ra kinds <<<"$KINDS"
	for kind in "${kinds[@]}"; do PLAN+="${PLAN:+;}$kind:$CASES"; done
fi
IFS=';' read -ra steps <<<"$PLAN"
for step in "${steps[@]}"; do
	kind=${step%%:*}
	IFS=, read -ra cases <<<"${step#*:}"
	log "building the $kind initramfs"
	t0=$(date +%s)
	if ! "build_$kind" >"$WORK/logs/build-$kind.log" 2>&1; then
		echo "FAIL $kind build (see $WORK/logs/build-$kind.log)" | tee -a "$RESULTS"
		tail -n 20 "$WORK/logs/build-$kind.log" >&2
		continue
	fi
	log "$kind initramfs: $(du -h "$WORK/initrd-$kind.img" | cut -f1), built in $(($(date +%s) - t0))s"
	for c in "${cases[@]}"; do
		"case_$c" "$kind"
	done
done

echo "---- summary"
cat "$RESULTS"
pass=$(grep -c '^PASS' "$RESULTS" || true)
fail=$(grep -c '^FAIL' "$RESULTS" || true)
echo "boot: $pass passed, $fail failed"
((fail == 0))
