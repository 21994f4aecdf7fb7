import Foundation
import LStoreBoot
import LStoreTestSupport
import LStoreTree
import Testing

/// Trees built by hand, as a layer's would come out of the store.
enum Trees {
    static func file(_ name: String, size: UInt64 = 1) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .regular, permissions: 0o644),
             content: .regular(RegularFile(size: size, content: Digest([UInt8](repeating: 1, count: 32)))))
    }

    static func dir(_ name: String, _ children: [Node]) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .directory, permissions: 0o755),
             content: .directory(Directory(children: children)))
    }

    static func symlink(_ name: String, to target: String) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .symlink, permissions: 0o777), content: .symlink(target: Array(target.utf8)))
    }

    static func hardlink(_ name: String, to holder: String) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .regular, permissions: 0o644), content: .hardlink(path: Array(holder.utf8)))
    }

    /// The root directory holding `children`, sorted as the store keeps it.
    static func root(_ children: [Node]) -> Node {
        let root = dir("", children)
        root.sortAll()
        return root
    }
}

/// The parts of `lstore boot stage` that need no root and no store: choosing the kernel, reading
/// the mount table, editing loader.conf, the entries' text, names.
@Suite struct BootStagingTests {
    @Test(arguments: [
        ("6.1.0-9", "6.1.0-10", true), ("6.1.0-10", "6.1.0-9", false),
        ("6.1.0-9-amd64", "6.1.0-10-amd64", true), ("5.10.0", "5.9.0", false), ("6.1", "6.1.1", true),
        ("6.1.0-10", "6.1.0-10", false), ("6.9.1-arch1-1", "6.10.2-arch1-1", true), ("6.1.0-rc1", "6.1.0-rc2", true),
    ])
    func versionsCompareDigitRunsAsNumbers(_ a: String, _ b: String, _ precedes: Bool) {
        #expect(LayerKernel.versionPrecedes(a, b) == precedes)
    }

    static let mountinfo = """
        22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
        30 22 8:2 / /boot rw,relatime shared:2 - vfat /dev/sda2 rw
        40 22 8:3 / /mnt/my\\040disk rw - ext4 /dev/mapper/a\\134b rw
        41 40 8:4 /sub /mnt/my\\040disk rw - xfs /dev/sdc1 rw
        50 22 0:60 / /mnt/tab\\011and\\012line rw - tmpfs tmpfs rw
        60 22 0:61 /srv/images /mnt/back\\134slash rw master:3 - btrfs /dev/sdd1 rw

        """

    /// Staging refused before writing: a file system without room (with the numbers), and FAT
    /// for an image of 4 GiB or more, whatever the free space.
    @Test func stagingSpaceIsCheckedFirst() {
        let gib: UInt64 = 1 << 30
        let big = StagingSpace(image: 5 * gib + gib / 10, boot: 80 << 20)
        #expect(big.refusal(name: "gaming", directory: "/boot/lstore", free: 100 * gib, type: StagingSpace.fatMagic, kernelsApart: false)?
            .description == "gaming's image would be about 5.1 GiB, and /boot/lstore is FAT, which holds no file of 4 GiB or more: "
            + "give --boot-dir on another file system (ext4, xfs, btrfs) for the images")
        #expect(big.refusal(name: "gaming", directory: "/boot/lstore", free: 100 * gib, type: 0xef53, kernelsApart: false) == nil)
        let small = StagingSpace(image: gib + gib / 5, boot: 80 << 20)
        #expect(small.refusal(name: "gaming", directory: "/boot/lstore", free: 812 << 20, type: 0xef53, kernelsApart: false)?
            .description == "/boot/lstore has 812.0 MiB free; staging gaming needs about 1.3 GiB (its image about 1.2 GiB): "
            + "free some (lstore boot rm NAME) or give --boot-dir on another file system")
        #expect(small.refusal(name: "gaming", directory: "/boot/lstore", free: small.image + 1, type: 0xef53, kernelsApart: true) == nil,
                "the kernel and initramfs go to the ESP, checked apart")
        #expect(small.refusal(name: "gaming", directory: "/boot/lstore", free: small.image + 1, type: 0xef53, kernelsApart: false) != nil)
        #expect(StagingSpace(image: (1 << 32) - 1, boot: 0).refusal(name: "g", directory: "/efi", free: 8 * gib,
                                                                     type: StagingSpace.fatMagic, kernelsApart: false) == nil)
    }

    @Test func theLongestMountPointHoldsThePath() throws {
        let boot = try #require(FileSystemPlace(ofRealPath: "/boot/lstore", mountinfo: Self.mountinfo))
        #expect(boot.pathInFileSystem == "/lstore" && boot.fileSystemType == "vfat" && boot.source == "/dev/sda2")
        #expect(boot.device == (8, 2))
        let root = try #require(FileSystemPlace(ofRealPath: "/bootx/lstore", mountinfo: Self.mountinfo))
        #expect(root.pathInFileSystem == "/bootx/lstore" && root.fileSystemType == "ext4")
        #expect(FileSystemPlace(ofRealPath: "/", mountinfo: Self.mountinfo)?.pathInFileSystem == "/")
        #expect(FileSystemPlace(ofRealPath: "/boot", mountinfo: Self.mountinfo)?.pathInFileSystem == "/")
    }

    @Test func theLastMountOnAPointHidesEarlierOnes() throws {
        let place = try #require(FileSystemPlace(ofRealPath: "/mnt/my disk/images", mountinfo: Self.mountinfo))
        #expect(place.fileSystemType == "xfs" && place.pathInFileSystem == "/sub/images" && place.device == (8, 4))
    }

    @Test func escapedBytesAreReadBack() throws {
        let tab = try #require(FileSystemPlace(ofRealPath: "/mnt/tab\tand\nline/x", mountinfo: Self.mountinfo))
        #expect(tab.fileSystemType == "tmpfs" && tab.pathInFileSystem == "/x")
        let backslash = try #require(FileSystemPlace(ofRealPath: "/mnt/back\\slash/a", mountinfo: Self.mountinfo))
        #expect(backslash.fileSystemType == "btrfs" && backslash.pathInFileSystem == "/srv/images/a")
        // Once unescaped, a mount point with a space is no longer the prefix of one without.
        #expect(FileSystemPlace(ofRealPath: "/mnt/my\\040disk", mountinfo: Self.mountinfo)?.fileSystemType == "ext4")
        // The source field is unescaped too.
        let lines = Self.mountinfo.replacingOccurrences(of: "41 40 8:4 /sub /mnt/my\\040disk rw - xfs /dev/sdc1 rw\n", with: "")
        #expect(FileSystemPlace(ofRealPath: "/mnt/my disk", mountinfo: lines)?.source == "/dev/mapper/a\\b")
    }

    @Test func noMountTableNoPlace() {
        #expect(FileSystemPlace(ofRealPath: "/boot", mountinfo: "") == nil)
        #expect(FileSystemPlace(ofRealPath: "/boot", mountinfo: "garbage line\n") == nil)
    }

    @Test func loaderConfigurationKeepsOtherLines() throws {
        let scratch = TemporaryDirectory("loader")
        let layout = BootLayout(bootDirectory: scratch.path, esp: scratch.path)
        try layout.writeLoaderDefault(nil, removingOnly: "gaming")
        #expect(!FileManager.default.fileExists(atPath: layout.loaderConfiguration), "nothing to remove: no file made")
        try makeDirectories(scratch.sub("loader"))
        try "timeout 3\ndefault\tother.conf\nconsole-mode max\n".write(toFile: layout.loaderConfiguration, atomically: false, encoding: .utf8)
        func text() throws -> String { try String(contentsOfFile: layout.loaderConfiguration, encoding: .utf8) }
        try layout.writeLoaderDefault("gaming")
        #expect(try text() == "default lstore-gaming.conf\ntimeout 3\nconsole-mode max\n")
        try layout.writeLoaderDefault("base")
        #expect(try text() == "default lstore-base.conf\ntimeout 3\nconsole-mode max\n")
        try layout.writeLoaderDefault(nil, removingOnly: "gaming")
        #expect(try text() == "default lstore-base.conf\ntimeout 3\nconsole-mode max\n", "only lstore's line for that layer goes")
        try layout.writeLoaderDefault(nil, removingOnly: "base")
        #expect(try text() == "timeout 3\nconsole-mode max\n")
    }

    @Test func aNewLoaderConfigurationHoldsTheDefault() throws {
        let scratch = TemporaryDirectory("loader")
        let layout = BootLayout(bootDirectory: scratch.path, esp: scratch.sub("esp"))
        try layout.writeLoaderDefault("base")
        #expect(try String(contentsOfFile: scratch.sub("esp/loader/loader.conf"), encoding: .utf8) == "default lstore-base.conf\n")
    }

    @Test func pathsResolveInsideTheTree() throws {
        let vmlinuz = Trees.file("vmlinuz")
        let root = Trees.root([
            Trees.dir("usr", [Trees.dir("lib", [
                Trees.dir("modules", [Trees.dir("6.1", [vmlinuz])]),
                Trees.symlink("up", to: "../lib/modules"),
                Trees.symlink("escape", to: "../../../../usr/lib/modules"),
            ])]),
            Trees.symlink("lib", to: "usr/lib"),
            Trees.symlink("abs", to: "/usr/lib/modules"),
            Trees.symlink("loop1", to: "loop2"),
            Trees.symlink("loop2", to: "/loop1"),
            Trees.hardlink("hard", to: "usr/lib/modules/6.1/vmlinuz"),
            Trees.symlink("tohard", to: "hard"),
        ])
        let target = "/usr/lib/modules/6.1/vmlinuz"
        for path in [target, "/lib/modules/6.1/vmlinuz", "/abs/6.1/vmlinuz", "usr/lib/up/6.1/vmlinuz", "/usr/../lib/modules/./6.1/vmlinuz",
                     "/usr/lib/escape/6.1/vmlinuz", "/../../usr/lib/modules/6.1/vmlinuz"] {
            let found = root.resolve(path)
            #expect(found?.path == target && found?.node === vmlinuz, "\(path): \(found?.path ?? "nothing")")
        }
        #expect(root.resolve("/hard")?.node === vmlinuz && root.resolve("/tohard")?.node === vmlinuz)
        #expect(root.resolve("/loop1") == nil && root.resolve("/loop2/x") == nil, "a symlink loop ends")
        #expect(root.resolve("/usr/lib/modules/6.2") == nil && root.resolve("/usr/lib/modules/6.1/vmlinuz/x") == nil)
    }

    @Test func debianKernelsTheNewest() throws {
        let root = Trees.root([Trees.dir("boot", [
            Trees.file("vmlinuz-6.1.0-9-amd64"), Trees.file("initrd.img-6.1.0-9-amd64"),
            Trees.file("vmlinuz-6.1.0-10-amd64"), Trees.file("initrd.img-6.1.0-10-amd64"),
            Trees.file("vmlinuz-6.1.0-11-amd64.old"), Trees.file("config-6.1.0-11-amd64"),
        ])])
        let found = try #require(LayerKernel.find(in: root) { _ in "" })
        #expect(found.version == "6.1.0-10-amd64" && found.kernel.path == "/boot/vmlinuz-6.1.0-10-amd64")
        #expect(found.initrd?.path == "/boot/initrd.img-6.1.0-10-amd64")
    }

    @Test func archKernelsAndTheirPkgbase() throws {
        let pkgbase = Trees.file("pkgbase")
        let root = Trees.root([
            Trees.dir("boot", [Trees.file("initramfs-linux.img"), Trees.file("initramfs-linux-fallback.img")]),
            Trees.dir("usr", [Trees.dir("lib", [Trees.dir("modules", [
                Trees.dir("6.9.1-arch1-1", [Trees.file("vmlinuz"), pkgbase]),
                Trees.dir("6.8.9-arch1-1", [Trees.file("vmlinuz")]),
                Trees.dir("7.0.0-nokernel", [Trees.file("modules.dep")]),
            ])])]),
        ])
        let found = try #require(LayerKernel.find(in: root) { node in node === pkgbase ? "linux\n" : "" })
        #expect(found.version == "6.9.1-arch1-1" && found.kernel.path == "/usr/lib/modules/6.9.1-arch1-1/vmlinuz")
        #expect(found.initrd?.path == "/boot/initramfs-linux.img")
    }

    @Test func aLayerWithoutAKernelHasNone() throws {
        let root = Trees.root([Trees.dir("boot", [Trees.file("vmlinuz-"), Trees.dir("vmlinuz-6.1", [])]), Trees.dir("etc", [])])
        #expect(LayerKernel.find(in: root) { _ in "" } == nil)
        let noInitrd = try #require(LayerKernel.find(in: Trees.root([Trees.dir("boot", [Trees.file("vmlinuz-6.1")])])) { _ in "" })
        #expect(noInitrd.version == "6.1" && noInitrd.initrd == nil)
    }

    @Test func names() {
        for name in ["base", "gaming-2", "a.b_c+d", "A", String(repeating: "x", count: 64)] {
            #expect(BootLayout.isValidName(name), "\(name)")
        }
        for name in ["", ".hidden", "-x", "a/b", "a b", "../escape", "ü", "a:b", String(repeating: "x", count: 65)] {
            #expect(!BootLayout.isValidName(name), "\(name)")
        }
        #expect(BootError.invalidName("a/b").description == "'a/b' cannot name a staged layer: use \(BootLayout.nameRule)")
    }

    @Test func entries() {
        let entry = BootEntry(title: "lstore gaming (0123456789ab)", version: "6.1.0-10-amd64", linux: "/lstore/gaming/vmlinuz",
                              initrd: "/lstore/gaming/initrd.img", options: "boot=lstore lstore.device=UUID=1234 lstore.image=/lstore/gaming/image.sfs quiet")
        #expect(entry.text == """
            title lstore gaming (0123456789ab)
            version 6.1.0-10-amd64
            linux /lstore/gaming/vmlinuz
            initrd /lstore/gaming/initrd.img
            options boot=lstore lstore.device=UUID=1234 lstore.image=/lstore/gaming/image.sfs quiet

            """)
        #expect(entry.grubMenuEntry(id: "lstore-gaming", searchUUID: "AB12-CD34") == """
            menuentry 'lstore gaming (0123456789ab)' --id lstore-gaming {
            \tsearch --no-floppy --fs-uuid --set=root AB12-CD34
            \tlinux /lstore/gaming/vmlinuz boot=lstore lstore.device=UUID=1234 lstore.image=/lstore/gaming/image.sfs quiet
            \tinitrd /lstore/gaming/initrd.img
            }

            """)
        var bare = entry
        bare.version = nil
        #expect(!bare.text.contains("version") && !bare.grubMenuEntry(id: "x", searchUUID: nil).contains("search"))
    }

    @Test func stagedLayersReadBackWhatWasWritten() throws {
        let layer = StagedLayer(name: "dev", revision: "steve/dev", commit: String(repeating: "a", count: 64), kernelVersion: "6.1",
                                stack: ["base", "mid"])
        #expect(StagedLayer(json: Data(layer.json.utf8)) == layer && layer.base == "mid")
        #expect(StagedLayer(json: Data("{\"name\": \"x\"}".utf8)) == nil)
    }
}
