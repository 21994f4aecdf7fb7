# lstore: `make demo` shows the main job end to end; `make test` runs every test.
SWIFT ?= swift
# What building and testing need from Debian/Ubuntu.
APT_PACKAGES = pkg-config libzstd-dev liblz4-dev libxxhash-dev zlib1g-dev liblzma-dev libarchive-dev libssl-dev openssl \
	attr acl python3 tar zstd xz-utils util-linux procps squashfs-tools squashfs-tools-ng openssh-server openssh-client strace \
	libcurl4-openssl-dev curl nginx-light tinyproxy skopeo umoci docker-registry apache2-utils docker.io busybox-static
CHAIN ?= /var/tmp/lstore-chain

.PHONY: all deps build release test registry-test demo demo-boot bench boot-check boot-test boot-test-ci fuzz clean

all: build

# Installs the apt packages that are missing (needs root, as the tests do). No service of theirs
# is started (a policy-rc.d for the install): the tests run their own registry, Docker engine,
# nginx and sshd on loopback, and Debian's docker.service would make a docker0 bridge.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Unit and integration tests (XCTest and Swift Testing). Integration tests run the release
# `lstore`, the binary users run; those on a real Debian root filesystem run when LSTORE_CHAIN names
# the chain directory that ../shared/fixtures/debian-chain.sh built.
test: deps
	$(SWIFT) build -c release --product lstore
	$(SWIFT) build --build-tests
	LSTORE_BIN=$$($(SWIFT) build -c release --show-bin-path)/lstore $(SWIFT) test --skip-build

# Only the registry, Docker and block-index suites of `make test` (a real docker-registry, a lying one, a
# Docker engine), for working on them.
registry-test: deps
	$(SWIFT) build -c release --product lstore
	$(SWIFT) build --build-tests
	LSTORE_CHAIN=$(CHAIN) LSTORE_BIN=$$($(SWIFT) build -c release --show-bin-path)/lstore $(SWIFT) test --skip-build \
		--filter 'Registry|LyingRegistry|Docker|BlockIndex'

# Commits a generated base layer and a child, diffs them, checks the child out and verifies it;
# writes the child's squashfs image from the store, mounts it and compares it with the committed
# tree; stacks the child's --delta-from image over the base's with overlayfs.
demo: release
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Fixtures/demo.sh

# Optional, minutes under TCG: boots a Debian layer (debootstrap, then `lstore checkout
# --squashfs`) in qemu through the initramfs-tools hook, twice: what the first boot wrote is gone.
demo-boot: deps
	@for p in debootstrap qemu-system-x86 cpio e2fsprogs kmod; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	$(SWIFT) build -c release --product lstore
	[ -d $(CHAIN)/rootfs-boot ] || Fixtures/make-debian-chain.sh $(CHAIN)
	LSTORE_CHAIN=$(CHAIN) LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Tests/boot/boot-test.sh -p 'itools:basic' -t 420

# The benchmarks on the Debian chain: the store against mksquashfs, ostree, casync, restic and
# borg; the squashfs writer against mksquashfs; pull over loopback against ostree pull; registry
# (and docker save archive) → squashfs image against skopeo + umoci + mksquashfs; updates by blocks
# through a registry against whole layers; `lstore build` against buildah bud and docker build.
bench: release
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Benchmarks/store-bench.sh $(CHAIN)
	Benchmarks/squashfs-bench.sh $(CHAIN)
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Benchmarks/sync-bench.sh $(CHAIN)
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Benchmarks/registry-bench.sh $(CHAIN)
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Benchmarks/blocks-bench.sh $(CHAIN)
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Benchmarks/build-bench.sh $(CHAIN)

# The boot hooks: lint, and the library's unit tests under dash, busybox sh and bash (seconds).
boot-check:
	@for p in shellcheck dash busybox-static squashfs-tools systemd; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	Tests/boot/lib-test.sh

# Boots lstore's images of the Debian chain (LSTORE_CHAIN) in qemu through mkinitcpio-style,
# initramfs-tools and dracut initramfs images with the hooks (root; about 30 minutes).
boot-test: deps
	$(SWIFT) build -c release --product lstore
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Tests/boot/boot-test.sh

# The CI subset of boot-test: each kind boots twice (the file written is gone), the real mkinitcpio
# with both hook kinds (busybox, and systemd with sd-lstore), and copytoram, persist_paths, a
# stacked chain with a --delta-from child, a `lstore boot stage` entry, a staged stack, the same
# staged layer booted by GRUB through 42_lstore, the warning of a nearly full writable layer,
# sd-lstore's unit in dracut, sd-lstore's locked emergency shell explained, a layer built by
# `lstore build`, and UEFI with systemd-boot reading the staged entry from a FAT ESP once each.
BOOT_CI_PLAN = mkinitcpio:basic,built,uefi;mkinitcpiosd:basic,sdlocked,uefi;initcpio:copytoram,persist;itools:basic,staged,stagedstack,grub,built,uefi;dracut:basic,stacked,full,uefi;sdunit:basic
boot-test-ci: deps
	$(SWIFT) build -c release --product lstore
	LSTORE=$$($(SWIFT) build -c release --show-bin-path)/lstore Tests/boot/boot-test.sh -p '$(BOOT_CI_PLAN)' -t 240

# libFuzzer with AddressSanitizer on the squashfs reader and the recipe parser, FUZZ_SECONDS each
# (default 60); crashes land in /var/tmp/lstore-fuzz-build as crash-* files.
FUZZ_SECONDS ?= 60
fuzz: deps
	Fixtures/fuzz/squashfs-reader.sh $(FUZZ_SECONDS)
	Fixtures/fuzz/recipe-parser.sh $(FUZZ_SECONDS)

clean:
	rm -rf .build
