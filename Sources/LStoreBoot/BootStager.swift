import CLStoreSys
import Foundation
import LStoreImage
import LStoreSquashFS
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What can stop `lstore boot`, each as the one line lstore prints; nothing is written when it is thrown.
public enum BootError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidName(String)
    case noKernel(revision: String)
    case noInitramfs(revision: String, version: String?)
    case notStaged(name: String, layersDirectory: String)
    case baseNotStaged(base: String, layersDirectory: String)
    case baseStagedOver(base: String, name: String)
    case baseCommitMissing(base: String, commit: String)
    case stagedOver(names: [String], name: String, commit: String)
    case cannotRemove(name: String, stagedOver: [String])
    case notAFile(path: String)
    case noSpace(directory: String, name: String, needed: UInt64, free: UInt64, image: UInt64)
    case fatFileTooLarge(directory: String, name: String, image: UInt64)

    public var description: String {
        switch self {
        case .invalidName(let name):
            "'\(name)' cannot name a staged layer: use \(BootLayout.nameRule)"
        case .noKernel(let revision):
            "\(revision) has no kernel (/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz): give --kernel and --initrd"
        case .noInitramfs(let revision, let version):
            "\(revision): kernel \(version ?? "?") has no initramfs in the layer (\(LayerKernel.initrdPlaces)): give --initrd"
        case .notStaged(let name, let directory):
            "no layer named '\(name)' is staged in \(directory) (lstore boot list shows them)"
        case .baseNotStaged(let base, let directory):
            "no layer named '\(base)' is staged in \(directory): stage it first"
        case .baseStagedOver(let base, let name):
            "\(base) is staged over \(name): \(name) cannot be staged over it"
        case .baseCommitMissing(let base, let commit):
            "\(base) was staged from commit \(commit.prefix(12)), which this store does not hold"
        case .stagedOver(let names, let name, let commit):
            "\(namesAre(names)) staged over \(name) (commit \(commit.prefix(12))): "
                + "stage \(names.count == 1 ? "it" : "them") again or remove \(names.count == 1 ? "it" : "them") first"
        case .cannotRemove(let name, let over):
            "cannot remove \(name): \(namesAre(over)) staged over it (lstore boot rm \(over.joined(separator: " ")) first)"
        case .notAFile(let path):
            "\(path) in the layer is not a file"
        case .noSpace(let directory, let name, let needed, let free, let image):
            "\(directory) has \(binaryBytes(free)) free; staging \(name) needs about \(binaryBytes(needed)) (its image about "
                + "\(binaryBytes(image))): free some (lstore boot rm NAME) or give --boot-dir on another file system"
        case .fatFileTooLarge(let directory, let name, let image):
            "\(name)'s image would be about \(binaryBytes(image)), and \(directory) is FAT, which holds no file of 4 GiB or more: "
                + "give --boot-dir on another file system (ext4, xfs, btrfs) for the images"
        }
    }
}

/// Bytes as MiB or GiB with one decimal.
func binaryBytes(_ bytes: UInt64) -> String {
    bytes >= 1 << 30 ? String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) : String(format: "%.1f MiB", Double(bytes) / Double(1 << 20))
}

/// Whether staging fits (spec/boot.md §11): the image (about `image` bytes) on the file system of
/// `imageDirectory`, the kernel and initramfs (`boot` bytes) there too, or on the ESP's when it is
/// apart; a FAT file system holds no file of 4 GiB or more. Free space and the file system's type
/// come from `statfs`; `statfs` is the seam the tests use.
public struct StagingSpace {
    public var image: UInt64
    public var boot: UInt64

    public init(image: UInt64, boot: UInt64) {
        self.image = image
        self.boot = boot
    }

    /// The MSDOS_SUPER_MAGIC of statfs(2): FAT12, FAT16 and FAT32.
    public static let fatMagic: Int = 0x4d44

    /// The refusal for a file system with `free` bytes and type `type`, or nil.
    public func refusal(name: String, directory: String, free: UInt64, type: Int, kernelsApart: Bool) -> BootError? {
        if type == Self.fatMagic && image >= 1 << 32 { return .fatFileTooLarge(directory: directory, name: name, image: image) }
        let needed = image + (kernelsApart ? 0 : boot)
        return needed > free ? .noSpace(directory: directory, name: name, needed: needed, free: free, image: image) : nil
    }

    /// What the store's blocks of `root`'s files take: the image holds them as stored (spec/squashfs.md
    /// §4), plus its tables (about 64 bytes an entry), plus 2% for what is compressed again.
    public static func estimate(_ root: Node, store: Store) throws -> UInt64 {
        var bytes: UInt64 = 0, entries: UInt64 = 0
        var seen: Set<Digest> = []
        var failure: Error?
        root.walk { _, node in
            entries += 1
            guard failure == nil, case .regular(let file) = node.content, let id = file.content, seen.insert(id).inserted else { return }
            do {
                let object = try store.file(id)
                for block in object.blocks where block != .zero {
                    bytes += store.storedSize(of: block, kind: .block) ?? UInt64(object.blockSize)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return bytes + bytes / 50 + entries * 64 + 4096
    }
}

/// Free bytes and type of the file system holding `path`.
func fileSystemSpace(_ path: String) throws -> (free: UInt64, type: Int) {
    var free: UInt64 = 0
    var type = 0
    guard lstore_statfs(path, &free, &type) == 0 else { throw FileError(path: path, operation: "statfs", errno: errno) }
    return (free, type)
}

/// "a is" or "a, b are": staged layers' names with the verb that agrees.
private func namesAre(_ names: [String]) -> String {
    names.joined(separator: ", ") + (names.count == 1 ? " is" : " are")
}

/// What `BootStager.stage` staged.
public struct StageResult: Sendable {
    public var name: String
    public var revision: String
    public var commit: Digest
    /// The kernel's version: the layer's, or from a `--kernel` file named `vmlinuz-VERSION`.
    public var kernelVersion: String?
    /// The kernel file on this machine, when one was given.
    public var hostKernel: String?
    public var imageBytes: UInt64
    /// The staged layer its image is a delta over.
    public var deltaFrom: String?
    /// The Boot Loader Specification entry written.
    public var entry: String
}

/// A staged layer as `lstore boot list` shows it.
public struct StagedLayerInfo: Sendable {
    public var layer: StagedLayer
    public var imageBytes: UInt64
    public var isDefault: Bool
    public var entry: String
}

/// Stages layers of `store` in `layout` (spec/boot.md, section 10): a layer's image, its own
/// kernel and initramfs, its Boot Loader Specification entry and GRUB menu entry.
public struct BootStager {
    public let store: Store
    public let layout: BootLayout

    public init(store: Store, layout: BootLayout) {
        self.store = store
        self.layout = layout
    }

    /// Stages `revision` as `name`: the layer's kernel and initramfs (or the files `kernel` and
    /// `initrd` on this machine), its image (with `deltaFrom`, only what differs from the layer
    /// staged under that name, stacked over it at boot) written with `image`, and an entry whose
    /// options are `boot=lstore lstore.device=DEV lstore.image=PATHS` and then `options`. Everything
    /// is checked before anything is written, then written under temporary names and renamed into
    /// place, the entry last. Writes the `42_lstore` GRUB script into `grubScripts` (default:
    /// /etc/grub.d when it exists and BOOT is /boot). `warn` is told what the entry or image lacks.
    public func stage(revision: String, name: String, deltaFrom: String? = nil, kernel: String? = nil, initrd: String? = nil,
                      device: String? = nil, options: String? = nil, image settings: ImageSettings = ImageSettings(),
                      grubScripts: String? = nil, warn: (String) -> Void = { _ in }) throws -> StageResult {
        for checked in [name] + (deltaFrom.map { [$0] } ?? []) where !BootLayout.isValidName(checked) {
            throw BootError.invalidName(checked)
        }
        let id = try store.resolve(revision)
        let commit = try store.commit(id)
        let root = try store.loadTree(commit.tree)
        let contents = StoreFileReader(store: store)
        let found = try LayerKernel.find(in: root) { node in try readText(node, from: contents) }

        // What boots: checked before anything is written.
        let kernelSource: BootFile, initrdSource: BootFile
        var version = found?.version
        if let kernel {
            kernelSource = .host(kernel)
            let base = URL(fileURLWithPath: kernel).lastPathComponent
            version = base.hasPrefix("vmlinuz-") ? String(base.dropFirst("vmlinuz-".count)) : nil
        } else if let found {
            kernelSource = .layer(found.kernel.node, found.kernel.path)
        } else {
            throw BootError.noKernel(revision: revision)
        }
        if let initrd {
            initrdSource = .host(initrd)
        } else if let layerInitrd = found?.initrd {
            initrdSource = .layer(layerInitrd.node, layerInitrd.path)
        } else {
            throw BootError.noInitramfs(revision: revision, version: found?.version)
        }
        for case .host(let path) in [kernelSource, initrdSource] where access(path, R_OK) != 0 {
            throw FileError(path: path, operation: "cannot read", errno: errno)
        }

        // A delta over a staged layer: the base's own commit, and the stack under it.
        var stack: [String] = []
        var bootRoot = root
        if let deltaFrom {
            guard let base = layout.staged(deltaFrom) else {
                throw BootError.baseNotStaged(base: deltaFrom, layersDirectory: layout.layersDirectory)
            }
            if base.stack.contains(name) { throw BootError.baseStagedOver(base: deltaFrom, name: name) }
            guard let baseID = Digest(hex: base.commit), store.contains(baseID, kind: .commit) else {
                throw BootError.baseCommitMissing(base: deltaFrom, commit: base.commit)
            }
            bootRoot = OverlayDelta(base: try store.loadTree(try store.commit(baseID).tree), child: root).root
            stack = base.stack + [deltaFrom]
        }
        // Layers staged over this name keep booting only if it stays at the same commit.
        if let previous = layout.staged(name), previous.commit != id.hex {
            let over = try layout.stackedOver(name)
            if !over.isEmpty { throw BootError.stagedOver(names: over, name: name, commit: previous.commit) }
        }
        // Room for it all, known before anything is written.
        let bootBytes = try [kernelSource, initrdSource].reduce(UInt64(0)) { $0 + (try $1.size()) }
        let space = StagingSpace(image: try StagingSpace.estimate(bootRoot, store: store), boot: bootBytes)
        let imagesAt = existingAncestor(layout.layersDirectory)
        let (free, type) = try fileSystemSpace(imagesAt)
        if let refusal = space.refusal(name: name, directory: layout.layersDirectory, free: free, type: type, kernelsApart: layout.kernelsApart) {
            throw refusal
        }
        if layout.kernelsApart {
            let (espFree, _) = try fileSystemSpace(existingAncestor(layout.esp))
            if bootBytes > espFree {
                throw BootError.noSpace(directory: layout.esp, name: name, needed: bootBytes, free: espFree, image: 0)
            }
        }
        try makeDirectories(layout.layersDirectory)
        try makeDirectories(layout.esp + "/lstore")
        try makeDirectories(layout.esp + "/loader/entries")

        // How the initramfs finds the image, and the boot loader the kernel.
        let imagePlace = FileSystemPlace(of: layout.layersDirectory)
        let imagePaths = (stack + [name]).map { joinPath(imagePlace?.pathInFileSystem ?? layout.layersDirectory, $0 + "/image.sfs") }
        let imageDevice = device ?? imagePlace?.uuid.map { "UUID=" + $0 }
        if imageDevice == nil {
            warn("cannot tell the UUID of the file system holding \(layout.layersDirectory)"
                + " (\(imagePlace?.fileSystemType ?? "unknown")); the entry has no lstore.device: give --device")
        }
        let kernelPlace = FileSystemPlace(of: layout.esp + "/lstore")
        let kernelDirectory = joinPath(kernelPlace?.pathInFileSystem ?? layout.esp + "/lstore", name)
        // rd.systemd.gpt_auto=0: under systemd-boot (which sets LoaderDevicePartUUID) a systemd
        // initramfs would otherwise wait 90 s for a GPT auto-discovered root that lstore replaces.
        var parameters = ["boot=lstore"] + (imageDevice.map { ["lstore.device=" + $0] } ?? [])
            + ["lstore.image=" + imagePaths.joined(separator: ":"), "rd.systemd.gpt_auto=0"]
        if let options { parameters += options.split(separator: " ").map(String.init) }
        let entry = BootEntry(title: "lstore \(name) (\(id.short))", version: version, linux: kernelDirectory + "/vmlinuz",
                              initrd: kernelDirectory + "/initrd.img", options: parameters.joined(separator: " "))

        // Everything into temporary directories, then renamed into place; the entry last.
        let staging = layout.layersDirectory + "/.\(name).lstore-tmp"
        let kernelStaging = layout.kernelsApart ? layout.esp + "/lstore/.\(name).lstore-tmp" : staging
        do {
            for directory in Set([staging, kernelStaging]) {
                try removeTree(directory)
                try makeDirectories(directory)
            }
            let result = try writeImage(bootRoot, source: StoreBlockSource(store: store), options: settings.options(for: store, time: commit.time),
                                        to: staging + "/image.sfs")
            for line in "\(result.report)".split(separator: "\n") { warn("\(layout.image(name)): \(line)") }
            try syncPath(staging + "/image.sfs")
            try kernelSource.write(to: kernelStaging + "/vmlinuz", contents: contents)
            try initrdSource.write(to: kernelStaging + "/initrd.img", contents: contents)
            let layer = StagedLayer(name: name, revision: revision, commit: id.hex, kernelVersion: version, stack: stack)
            try writeFileAtomically(layer.json, to: staging + "/layer.json")
            try writeFileAtomically(entry.grubMenuEntry(id: "lstore-" + name, searchUUID: kernelPlace?.uuid), to: staging + "/grub.cfg")
            for directory in Set([staging, kernelStaging]) { try syncPath(directory) }
        } catch {
            try? removeTree(staging)
            try? removeTree(kernelStaging)
            throw error
        }
        try install(staging, as: layout.layerDirectory(name))
        if layout.kernelsApart { try install(kernelStaging, as: layout.kernelDirectory(name)) }
        try writeFileAtomically(entry.text, to: layout.entry(name))
        try layout.writeGrubConfiguration()
        // This machine's GRUB is only told about this machine's /boot.
        if let scripts = grubScripts ?? (layout.bootDirectory == "/boot" && isDirectory("/etc/grub.d") ? "/etc/grub.d" : nil) {
            try writeGrubScript(in: scripts, configuration: realPath(layout.grubConfiguration))
        }
        var size = stat()
        stat(layout.image(name), &size)
        return StageResult(name: name, revision: revision, commit: id, kernelVersion: version, hostKernel: kernel,
                           imageBytes: UInt64(size.st_size), deltaFrom: deltaFrom, entry: layout.entry(name))
    }

    /// Renames the finished directory `staging` to `final`, replacing what was there.
    private func install(_ staging: String, as final: String) throws {
        let old = staging.replacingOccurrences(of: ".lstore-tmp", with: ".lstore-old")
        try removeTree(old)
        if access(final, F_OK) == 0 { try systemCall("rename", path: final) { rename(final, old) } }
        try systemCall("rename", path: final) { rename(staging, final) }
        try removeTree(old)
    }
}

extension BootLayout {
    /// The staged layers, by name, with their image's size, whether each is the default, and its entry.
    public func list() throws -> [StagedLayerInfo] {
        let defaultName = defaultName()
        return try staged().map { layer in
            var info = stat()
            let bytes = stat(image(layer.name), &info) == 0 ? UInt64(info.st_size) : 0
            return StagedLayerInfo(layer: layer, imageBytes: bytes, isDefault: layer.name == defaultName, entry: entry(layer.name))
        }
    }

    /// Makes the layer staged as `name` the default: BOOT/lstore/default, loader.conf and GRUB's menu.
    public func setDefault(_ name: String) throws {
        try requireStaged(name)
        try writeFileAtomically(name + "\n", to: defaultFile)
        try writeLoaderDefault(name)
        try writeGrubConfiguration()
    }

    /// Removes the layer staged as `name`: its entry first, so a boot loader never sees an entry
    /// whose files are gone, then its kernel, initramfs and image. Refused while layers are staged over it.
    public func remove(_ name: String) throws {
        try requireStaged(name)
        let over = try stackedOver(name)
        if !over.isEmpty { throw BootError.cannotRemove(name: name, stagedOver: over) }
        if unlink(entry(name)) != 0 && errno != ENOENT { throw FileError(path: entry(name), operation: "unlink", errno: errno) }
        try removeTree(kernelDirectory(name))
        try removeTree(layerDirectory(name))
        if defaultName() == name {
            try removeTree(defaultFile)
            try writeLoaderDefault(nil, removingOnly: name)
        }
        try writeGrubConfiguration()
    }

    private func requireStaged(_ name: String) throws {
        guard BootLayout.isValidName(name), isDirectory(layerDirectory(name)) else {
            throw BootError.notStaged(name: name, layersDirectory: layersDirectory)
        }
    }
}

/// `base` + `/` + `name`, with one slash between them.
/// `path`, or its nearest ancestor that exists.
private func existingAncestor(_ path: String) -> String {
    var current = path
    while access(current, F_OK) != 0, current != "/", !current.isEmpty {
        current = (current as NSString).deletingLastPathComponent
    }
    return current.isEmpty ? "." : current
}

private func joinPath(_ base: String, _ name: String) -> String {
    base.hasSuffix("/") ? base + name : base + "/" + name
}

/// A Boot Loader Specification entry (type 1).
public struct BootEntry: Equatable, Sendable {
    public var title: String
    public var version: String?
    public var linux: String
    public var initrd: String
    public var options: String

    public init(title: String, version: String?, linux: String, initrd: String, options: String) {
        self.title = title
        self.version = version
        self.linux = linux
        self.initrd = initrd
        self.options = options
    }

    /// The entry file's text.
    public var text: String {
        var lines = ["title \(title)"]
        if let version { lines.append("version \(version)") }
        lines += ["linux \(linux)", "initrd \(initrd)", "options \(options)"]
        return lines.map { $0 + "\n" }.joined()
    }

    /// The same entry as a GRUB menu entry; `search` finds the file system holding the kernel.
    public func grubMenuEntry(id: String, searchUUID: String?) -> String {
        var text = "menuentry '\(title)' --id \(id) {\n"
        if let searchUUID { text += "\tsearch --no-floppy --fs-uuid --set=root \(searchUUID)\n" }
        text += "\tlinux \(linux) \(options)\n\tinitrd \(initrd)\n}\n"
        return text
    }
}

/// A kernel or initramfs to stage: a file in the layer, or one on this machine.
enum BootFile {
    case layer(Node, String)
    case host(String)

    /// Its size in bytes.
    func size() throws -> UInt64 {
        switch self {
        case .host(let source):
            var info = stat()
            guard stat(source, &info) == 0 else { throw FileError(path: source, operation: "stat", errno: errno) }
            return UInt64(info.st_size)
        case .layer(let node, _):
            guard case .regular(let file) = node.content else { return 0 }
            return file.size
        }
    }

    func write(to path: String, contents: StoreFileReader) throws {
        switch self {
        case .host(let source):
            try FileManager.default.copyItem(atPath: source, toPath: path)
        case .layer(let node, let layerPath):
            guard case .regular(let file) = node.content else { throw BootError.notAFile(path: layerPath) }
            let fd = try systemCall("open", path: path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
            defer { close(fd) }
            try contents.stream(file) { bytes in try writeAll(fd, bytes, display: path) }
        }
        try syncPath(path)
    }
}

/// A small text file of the layer (e.g. Arch's `pkgbase`).
private func readText(_ node: Node, from contents: StoreFileReader) throws -> String {
    guard case .regular(let file) = node.content, file.size <= 4096 else { return "" }
    var bytes: [UInt8] = []
    try contents.stream(file) { bytes.append(contentsOf: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// `/etc/grub.d/42_lstore`: at `grub-mkconfig` time, includes BOOT/lstore/grub.cfg, found by its
/// file system's UUID, in GRUB's menu. It changes nothing when that file is gone.
private func writeGrubScript(in directory: String, configuration: String) throws {
    let quoted = "'" + configuration.replacingOccurrences(of: "'", with: "'\\''") + "'"
    let script = """
        #!/bin/sh
        # Written by `lstore boot stage`: adds the layers lstore staged to GRUB's menu.
        cfg=\(quoted)
        [ -f "$cfg" ] || exit 0
        probe=${grub_probe:-grub-probe}
        if ! uuid=$("$probe" --target=fs_uuid "$cfg") || ! path=$(grub-mkrelpath "$cfg"); then
            echo "42_lstore: GRUB cannot find $cfg; the layers lstore staged are left out of the menu" >&2
            exit 0
        fi
        # The modules GRUB needs to read that file system, as grub-mkconfig's own scripts load them.
        for module in $("$probe" --target=partmap "$cfg" 2>/dev/null); do echo "insmod part_$module"; done
        for module in $("$probe" --target=abstraction "$cfg" 2>/dev/null) $("$probe" --target=fs "$cfg" 2>/dev/null); do
            echo "insmod $module"
        done
        cat <<EOF
        search --no-floppy --fs-uuid --set=lstore_root $uuid
        source (\\$lstore_root)$path
        EOF

        """
    try makeDirectories(directory)
    let path = directory + "/42_lstore"
    // Executable from the moment it has its name (the umask may still take bits: chmod after).
    try writeFileAtomically(script, to: path, mode: 0o755)
    try systemCall("chmod", path: path) { chmod(path, 0o755) }
}
