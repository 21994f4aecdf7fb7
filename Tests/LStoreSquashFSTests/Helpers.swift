import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// The manifest options every comparison uses: squashfs keeps whole seconds and these namespaces.
let manifestOptions = ["--mtime-seconds", "--xattr-namespaces", "user,trusted,security"]

/// The codecs of the matrix, as `CompressionSpec(parsing:)` reads them.
let allCodecs = ["zstd", "lz4", "lz4:hc", "gzip", "xz", "none"]
let allBlockSizes = [4 << 10, 128 << 10, 1 << 20]

/// Makes the small matrix tree (`Fixtures/make-squashfs-tree.sh`).
func makeSquashFSTree(_ directory: String) throws {
    try sh("\(repositoryRoot)/Fixtures/make-squashfs-tree.sh \(directory)")
}

/// Scans `tree` (leaving out the top-level entries in `exclude`) and writes it as an image.
@discardableResult
func writeImage(_ tree: String, to image: String, compression: String, blockSize: Int = 128 << 10,
                threads: Int = 2, exclude: [String] = []) throws -> SquashFSWriteResult {
    let scanned = try Scanner().scan(tree)
    for name in exclude { scanned.root.directory?.remove(named: Array(name.utf8)) }
    let options = SquashFSOptions(compression: try CompressionSpec(parsing: compression), blockSize: blockSize,
                                  modificationTime: 1_700_000_000, threads: threads)
    return try SquashFSWriter(options: options).write(scanned.root, source: DirectoryBlockSource(), to: image)
}

/// mksquashfs's options for the same codec, level and block size.
func mksquashfs(_ tree: String, to image: String, compression: String, blockSize: Int, exclude: [String] = []) throws {
    let spec = try CompressionSpec(parsing: compression)
    var codec: [String]
    switch spec.codec {
    case .zstd: codec = ["-comp", "zstd", "-Xcompression-level", "\(spec.level)"]
    case .lz4: codec = ["-comp", "lz4"] + (spec.level == 1 ? ["-Xhc"] : [])
    case .gzip: codec = ["-comp", "gzip", "-Xcompression-level", "\(spec.level)"]
    case .xz: codec = ["-comp", "xz"]
    case .none: codec = ["-comp", "gzip", "-noI", "-noD", "-noF", "-noX"]
    }
    // mksquashfs finds hardlinks by comparing whole stat structures, atime included, and reading
    // a symlink may update its atime between the lstat of its two names: read them all first.
    try sh("find \(tree) -type l -exec readlink {} + > /dev/null")
    let arguments = [tree, image, "-noappend", "-no-progress", "-quiet", "-b", "\(blockSize)", "-processors", "2"]
        + codec + exclude.flatMap { ["-e", $0] }
    let result = try run("mksquashfs", arguments)
    guard result.succeeded else { throw TestFailure("mksquashfs failed: \(result.stderr)\(result.stdout)") }
}

/// The manifest of the image as the Linux kernel mounts it.
func kernelManifest(_ image: String, scratch: TemporaryDirectory) throws -> String {
    let mountPoint = scratch.sub("mnt-\(UUID().uuidString.prefix(8))")
    try sh("mkdir -p \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
    defer { _ = try? sh("umount \(mountPoint) && rmdir \(mountPoint)") }
    return try manifest(mountPoint, options: manifestOptions)
}

/// Lines of stderr that are not sqfs2tar's notice that tar cannot hold a socket.
func unexpectedWarnings(_ stderr: String, sockets: [String]) -> [Substring] {
    stderr.split(separator: "\n").filter { line in
        !sockets.contains { line == "WARNING: \($0): cannot pack socket" || line == "Skipping \($0)" }
    }
}

/// Runs unsquashfs -lln, unsquashfs -d and sqfs2tar on `image`; each must succeed without a
/// warning (sqfs2tar may say only that tar cannot hold the sockets). Returns the extracted manifest.
func checkWithSquashfsTools(_ image: String, scratch: TemporaryDirectory, sockets: [String]) throws -> String {
    let listing = try run("unsquashfs", ["-lln", image])
    #expect(listing.succeeded && listing.stderr.isEmpty, "unsquashfs -lln: \(listing.stderr)")
    let out = scratch.sub("unsquashfs-\(UUID().uuidString.prefix(8))")
    let extract = try run("unsquashfs", ["-no-progress", "-d", out, image])
    #expect(extract.succeeded && extract.stderr.isEmpty, "unsquashfs -d: \(extract.stderr)")
    let tar = scratch.sub("sqfs2tar-\(UUID().uuidString.prefix(8)).tar")
    let sqfs2tar = try run("/bin/bash", ["-c", "sqfs2tar \(image) > \(tar)"])
    #expect(sqfs2tar.succeeded, "sqfs2tar failed: \(sqfs2tar.stderr)")
    let warnings = unexpectedWarnings(sqfs2tar.stderr, sockets: sockets)
    #expect(warnings.isEmpty, "sqfs2tar: \(warnings.joined(separator: "\n"))")
    let entries = try sh("tar -tf \(tar) | wc -l").trimmingCharacters(in: .whitespacesAndNewlines)
    #expect((Int(entries) ?? 0) > 10, "the tarball lists \(entries) entries")
    return try manifest(out, options: manifestOptions)
}

/// Reads the image with our reader and restores it into a new directory; returns the tree and the
/// restored directory's manifest.
func readBack(_ image: String, scratch: TemporaryDirectory) throws -> (Node, String) {
    let reader = try SquashFSImage(path: image)
    let root = try reader.readTree()
    let out = scratch.sub("ours-\(UUID().uuidString.prefix(8))")
    try Restorer(writer: SquashFSContentWriter(reader)).restore(root, into: out)
    return (root, try manifest(out, options: manifestOptions))
}

/// One line per entry: everything the model holds, for comparing two trees read from images.
func describe(_ root: Node) -> [String] {
    var lines: [String] = []
    root.walk { path, node in
        let m = node.metadata
        var line = "/\(path.printable) \(m.kind) \(String(m.permissions, radix: 8)) \(m.uid):\(m.gid) \(m.mtime)"
        for xattr in m.xattrs { line += " \(xattr.name.printable)=\(xattr.value.count):\(xattr.value.hashValue)" }
        switch node.content {
        case .regular(let file): line += " size=\(file.size)"
        case .symlink(let target): line += " -> \(target.printable)"
        case .device(let major, let minor): line += " dev=\(major),\(minor)"
        case .hardlink(let target): line += " link=/\(target.printable)"
        case .directory(let directory): line += " entries=\(directory.children.count)"
        case .none: break
        }
        lines.append(line)
    }
    return lines
}

func lineDifference(_ a: [String], _ b: [String]) -> String {
    manifestDifference(a.joined(separator: "\n"), b.joined(separator: "\n"))
}
