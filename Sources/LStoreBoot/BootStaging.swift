import CLStoreSys
import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where staged layers live:
///
///     BOOT/lstore/NAME/image.sfs         the layer's squashfs image
///     BOOT/lstore/NAME/layer.json        what was staged: name, revision, commit, kernel version and,
///                                        for a delta, the staged layers it stacks over
///     BOOT/lstore/NAME/grub.cfg          the layer's GRUB menu entry
///     BOOT/lstore/grub.cfg               every layer's menu entry and the default, for GRUB
///     BOOT/lstore/default                the default layer's name
///     ESP/lstore/NAME/vmlinuz, initrd.img  the layer's own kernel and initramfs
///     ESP/loader/entries/lstore-NAME.conf  its Boot Loader Specification entry
///     ESP/loader/loader.conf             `default lstore-NAME.conf`
///
/// The kernel sits next to the entry (on the ESP) because a boot loader reads an entry's files
/// from the partition the entry is on; the image sits in BOOT, read by the initramfs.
public struct BootLayout: Sendable {
    public let bootDirectory: String
    public let esp: String

    public init(bootDirectory: String, esp: String) {
        self.bootDirectory = bootDirectory
        self.esp = esp
    }

    /// Where `lstore boot` puts things when only `--boot-dir` may be given: the ESP is BOOT, except
    /// that the system's own /boot, without a loader/ of its own, looks for /efi or /boot/efi holding
    /// loader/ (a --boot-dir elsewhere keeps everything there).
    public static func choosing(bootDirectory: String, esp: String?) -> BootLayout {
        if let esp { return BootLayout(bootDirectory: bootDirectory, esp: esp) }
        var chosen = bootDirectory
        if bootDirectory == "/boot", !isDirectory("/boot/loader") {
            chosen = ["/efi", "/boot/efi"].first { isDirectory($0 + "/loader") } ?? bootDirectory
        }
        return BootLayout(bootDirectory: bootDirectory, esp: chosen)
    }

    public static let nameRule = "1 to 64 of A-Z a-z 0-9 . _ + -, not starting with . or -"

    /// A staged layer's name becomes file names and a GRUB menu entry id.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), let first = name.utf8.first,
              first != UInt8(ascii: "."), first != UInt8(ascii: "-") else { return false }
        return name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || Array("._+-".utf8).contains(byte)
        }
    }

    public var layersDirectory: String { bootDirectory + "/lstore" }
    public func layerDirectory(_ name: String) -> String { layersDirectory + "/" + name }
    public func kernelDirectory(_ name: String) -> String { esp + "/lstore/" + name }
    public func image(_ name: String) -> String { layerDirectory(name) + "/image.sfs" }
    public func entry(_ name: String) -> String { esp + "/loader/entries/lstore-" + name + ".conf" }
    public var loaderConfiguration: String { esp + "/loader/loader.conf" }
    public var grubConfiguration: String { layersDirectory + "/grub.cfg" }
    public var defaultFile: String { layersDirectory + "/default" }
    public var kernelsApart: Bool { realPath(esp) != realPath(bootDirectory) }

    /// The staged layers, by name.
    public func staged() throws -> [StagedLayer] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: layersDirectory) else { return [] }
        return names.sorted().filter(Self.isValidName).compactMap { name in
            guard let data = FileManager.default.contents(atPath: layerDirectory(name) + "/layer.json") else { return nil }
            return StagedLayer(json: data)
        }
    }

    /// The layer staged as `name`, when there is one.
    public func staged(_ name: String) -> StagedLayer? {
        FileManager.default.contents(atPath: layerDirectory(name) + "/layer.json").flatMap(StagedLayer.init(json:))
    }

    /// The staged layers whose images are deltas over `name`'s.
    public func stackedOver(_ name: String) throws -> [String] {
        try staged().filter { $0.stack.contains(name) }.map(\.name)
    }

    /// The default layer's name, when there is one.
    public func defaultName() -> String? {
        guard let data = FileManager.default.contents(atPath: defaultFile) else { return nil }
        let name = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }

    /// Writes `BOOT/lstore/grub.cfg` again from every staged layer's menu entry and the default,
    /// unless a one-time choice (`grub-reboot`, which sets `boot_once`) is in force.
    public func writeGrubConfiguration() throws {
        var text = "# Written by lstore boot: the staged layers. Do not edit; `lstore boot` writes it again.\n"
        let layers = try staged()
        for layer in layers {
            if let entry = FileManager.default.contents(atPath: layerDirectory(layer.name) + "/grub.cfg") {
                text += String(decoding: entry, as: UTF8.self)
            }
        }
        if let name = defaultName(), layers.contains(where: { $0.name == name }) {
            text += "if [ -z \"${boot_once}\" ]; then set default=\"lstore-\(name)\"; fi\n"
        }
        try writeFileAtomically(text, to: grubConfiguration)
    }

    /// Sets `default` in loader.conf to `name`'s entry, or removes lstore's default line (nil).
    public func writeLoaderDefault(_ name: String?, removingOnly removed: String? = nil) throws {
        let existing = FileManager.default.contents(atPath: loaderConfiguration).map { String(decoding: $0, as: UTF8.self) }
        guard existing != nil || name != nil else { return }
        var lines = (existing ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let isDefaultLine = { (line: String) in line.split(whereSeparator: { $0 == " " || $0 == "\t" }).first == "default" }
        if let name {
            lines.removeAll(where: isDefaultLine)
            lines.insert("default lstore-\(name).conf", at: 0)
        } else if let removed {
            lines.removeAll { isDefaultLine($0) && $0.hasSuffix("lstore-\(removed).conf") }
        }
        try makeDirectories(esp + "/loader")
        try writeFileAtomically(lines.map { $0 + "\n" }.joined(), to: loaderConfiguration)
    }
}

/// What `layer.json` records of a staged layer.
public struct StagedLayer: Equatable, Sendable {
    public var name: String
    public var revision: String
    public var commit: String
    public var kernelVersion: String?
    /// The staged layers this one's image is a delta over, bottom first (empty: a whole image).
    public var stack: [String] = []

    public init(name: String, revision: String, commit: String, kernelVersion: String?, stack: [String] = []) {
        self.name = name
        self.revision = revision
        self.commit = commit
        self.kernelVersion = kernelVersion
        self.stack = stack
    }

    public init?(json: Data) {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
              let name = object["name"] as? String, let revision = object["revision"] as? String,
              let commit = object["commit"] as? String else { return nil }
        self.init(name: name, revision: revision, commit: commit, kernelVersion: object["kernelVersion"] as? String,
                  stack: object["stack"] as? [String] ?? [])
    }

    /// The layer its image is a delta over, when it is one.
    public var base: String? { stack.last }

    /// What `layer.json` holds: sorted keys, pretty-printed.
    public var json: String {
        var object: [String: Any] = ["name": name, "revision": revision, "commit": commit]
        if let kernelVersion { object["kernelVersion"] = kernelVersion }
        if !stack.isEmpty { object["stack"] = stack }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

// MARK: - The layer's kernel

/// A kernel and initramfs found in a layer's tree.
public struct LayerKernel {
    public var version: String
    public var kernel: (path: String, node: Node)
    public var initrd: (path: String, node: Node)?

    /// The newest kernel in `root`: `/boot/vmlinuz-VERSION` (Debian, Fedora, Arch's `vmlinuz-linux`)
    /// or `/usr/lib/modules/VERSION/vmlinuz` (Arch, Fedora), with its initramfs:
    /// `/boot/initrd.img-VERSION`, `/boot/initramfs-VERSION.img`, `/boot/initramfs-PKGBASE.img`
    /// (Arch, `PKGBASE` from `/usr/lib/modules/VERSION/pkgbase`), `/usr/lib/modules/VERSION/initrd`
    /// or `/usr/lib/modules/VERSION/initramfs.img`.
    public static func find(in root: Node, readText: (Node) throws -> String) rethrows -> LayerKernel? {
        var found: [(version: String, path: String)] = []
        let prefix = Array("vmlinuz-".utf8)
        for child in root.resolve("/boot")?.node.directory?.children ?? [] where child.name.starts(with: prefix) {
            let version = String(decoding: child.name.dropFirst(prefix.count), as: UTF8.self)
            if !version.isEmpty && !version.hasSuffix(".old") { found.append((version, "/boot/" + child.name.printable)) }
        }
        for child in root.resolve("/usr/lib/modules")?.node.directory?.children ?? [] where child.directory != nil {
            let version = child.name.printable
            if child.directory?.child(named: Array("vmlinuz".utf8)) != nil, !found.contains(where: { $0.version == version }) {
                found.append((version, "/usr/lib/modules/\(version)/vmlinuz"))
            }
        }
        guard let newest = found.max(by: { versionPrecedes($0.version, $1.version) }),
              let kernel = root.resolve(newest.path), case .regular = kernel.node.content else { return nil }
        let version = newest.version
        var candidates = ["/boot/initrd.img-\(version)", "/boot/initramfs-\(version).img"]
        if let pkgbase = root.resolve("/usr/lib/modules/\(version)/pkgbase"), case .regular = pkgbase.node.content {
            let base = try readText(pkgbase.node).trimmingCharacters(in: .whitespacesAndNewlines)
            if BootLayout.isValidName(base) { candidates.append("/boot/initramfs-\(base).img") }
        }
        candidates += ["/usr/lib/modules/\(version)/initrd", "/usr/lib/modules/\(version)/initramfs.img"]
        let initrd = candidates.lazy.compactMap { path -> (String, Node)? in
            guard let found = root.resolve(path), case .regular = found.node.content else { return nil }
            return (path, found.node)
        }.first
        return LayerKernel(version: version, kernel: (newest.path, kernel.node), initrd: initrd)
    }

    public static let initrdPlaces = "/boot/initrd.img-VERSION, /boot/initramfs-VERSION.img, /usr/lib/modules/VERSION/initrd"

    /// `6.1.0-9` before `6.1.0-10`: digit runs compare as numbers, everything else as bytes.
    public static func versionPrecedes(_ a: String, _ b: String) -> Bool {
        func parts(_ text: String) -> [(Bool, String)] {
            var result: [(Bool, String)] = []
            for character in text {
                let digit = character.isASCII && character.isNumber
                if let last = result.last, last.0 == digit {
                    result[result.count - 1].1.append(character)
                } else {
                    result.append((digit, String(character)))
                }
            }
            return result
        }
        for (x, y) in zip(parts(a), parts(b)) where x.1 != y.1 {
            if x.0 && y.0, let m = Int(x.1), let n = Int(y.1), m != n { return m < n }
            return x.1 < y.1
        }
        return parts(a).count < parts(b).count
    }
}

// MARK: - Which file system holds a path

/// The file system holding a path, from `/proc/self/mountinfo`: how a boot loader or an initramfs
/// names that path (relative to the file system's root) and the device holding it.
public struct FileSystemPlace: Sendable {
    /// The path inside the file system, from its root: what `lstore.image=` and a BLS entry name.
    public var pathInFileSystem: String
    public var fileSystemType: String
    public var source: String
    public var device: (major: UInt32, minor: UInt32)

    /// Where the existing path `path` lives; nil when /proc/self/mountinfo does not say.
    public init?(of path: String) {
        guard let data = FileManager.default.contents(atPath: "/proc/self/mountinfo") else { return nil }
        self.init(ofRealPath: realPath(path), mountinfo: String(decoding: data, as: UTF8.self))
    }

    /// Where `real`, a path without symlinks, lives by the mount table `mountinfo` (the text of
    /// /proc/self/mountinfo): the longest mount point holding it, the last one of equal length.
    public init?(ofRealPath real: String, mountinfo: String) {
        var best: (mountPoint: String, root: String, type: String, source: String, device: (UInt32, UInt32))?
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ").map { Self.unescape(String($0)) }
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            let numbers = fields[2].split(separator: ":").compactMap { UInt32($0) }
            let mountPoint = fields[4]
            guard numbers.count == 2, Self.contains(mountPoint, real) else { continue }
            // The last mount on a path hides earlier ones there: later lines win a tie.
            if best == nil || mountPoint.count >= best!.mountPoint.count {
                best = (mountPoint, fields[3], fields[dash + 1], fields[dash + 2], (numbers[0], numbers[1]))
            }
        }
        guard let best else { return nil }
        let inside = String(real.dropFirst(best.mountPoint == "/" ? 0 : best.mountPoint.count))
        var joined = (best.root == "/" ? "" : best.root) + (inside.isEmpty ? "/" : inside)
        if !joined.hasPrefix("/") { joined = "/" + joined }
        pathInFileSystem = joined
        fileSystemType = best.type
        source = best.source
        device = best.device
    }

    private static func contains(_ mountPoint: String, _ path: String) -> Bool {
        mountPoint == "/" || path == mountPoint || path.hasPrefix(mountPoint + "/")
    }

    /// mountinfo writes space, tab, newline and backslash as `\OOO`.
    private static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var rest = Array(field.utf8)[...]
        while let byte = rest.first {
            if byte == UInt8(ascii: "\\"), rest.count >= 4, let value = UInt8(String(decoding: rest.dropFirst().prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                rest = rest.dropFirst(4)
            } else {
                bytes.append(byte)
                rest = rest.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The file system's UUID: from udev's `/dev/disk/by-uuid` links, else from `blkid` on the
    /// mount's source device; nil for file systems without one (tmpfs, overlay).
    public var uuid: String? {
        let links = "/dev/disk/by-uuid"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: links)) ?? [] {
            var info = stat()
            if stat(links + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFBLK,
               lstore_major(info.st_rdev) == device.major, lstore_minor(info.st_rdev) == device.minor {
                return name
            }
        }
        guard source.hasPrefix("/dev/") else { return nil }
        for blkid in ["/usr/sbin/blkid", "/sbin/blkid", "/usr/bin/blkid"] where FileManager.default.isExecutableFile(atPath: blkid) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: blkid)
            process.arguments = ["-o", "value", "-s", "UUID", source]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = nil
            guard (try? process.run()) != nil else { return nil }
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let uuid = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return process.terminationStatus == 0 && !uuid.isEmpty && !uuid.contains(" ") ? uuid : nil
        }
        return nil
    }
}

// MARK: - Files

/// The path with symlinks resolved; the path itself when it does not exist.
public func realPath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// Writes `text` as `path.lstore-tmp`, fsyncs it, renames it to `path` and fsyncs the directory
/// (`LStoreTree.writeFileAtomically`). The temporary has a fixed name, so what a crash left there
/// is replaced by the next write instead of piling up in the boot partition.
func writeFileAtomically(_ text: String, to path: String, mode: mode_t = 0o644) throws {
    let temporary = path + ".lstore-tmp"
    if unlink(temporary) != 0 && errno != ENOENT { throw FileError(path: temporary, operation: "unlink", errno: errno) }
    try writeFileAtomically(Array(text.utf8), to: path, temporary: temporary, mode: mode)
}

/// Makes the directory `path` and those above it that are missing.
public func makeDirectories(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

/// True when `path` is a directory (or a symlink to one).
public func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

