import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Deterministic incompressible bytes: block `index` of the file named `seed`.
func noise(seed: UInt64, index: UInt64, count: Int) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 ^ index
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var i = 0
        while i < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            withUnsafeBytes(of: state) { word in
                for byte in word where i < count {
                    buffer[i] = byte
                    i += 1
                }
            }
        }
        initialized = count
    }
}

/// Files of noise named by their size; the file's first byte of path is its seed.
struct NoiseSource: BlockSource {
    func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                      _ body: (SourceBlock) throws -> Void) throws {
        var offset: UInt64 = 0, index: UInt64 = 0
        while offset < file.size {
            let count = Int(min(UInt64(blockSize), file.size - offset))
            try body(.raw(noise(seed: UInt64(path[0]), index: index, count: count)))
            offset += UInt64(count)
            index += 1
        }
    }
}

/// An image larger than 4 GiB, so that files start past 4 GiB and need extended inodes: the kernel
/// and our reader read them back. Opt in with SQUASHFS_LARGE_TEST=1 (writes 4.3 GB to /var/tmp).
@Test(.enabled(if: isRoot && ProcessInfo.processInfo.environment["SQUASHFS_LARGE_TEST"] != nil))
func imageLargerThan4GiB() throws {
    let scratch = TemporaryDirectory("sqfs-large")
    func file(_ name: String, _ size: UInt64) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .regular, permissions: 0o644),
             content: .regular(RegularFile(size: size)))
    }
    let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [
        file("a", (4 << 30) + (1 << 20) + 7),  // past 4 GiB itself, with a tail
        file("b", 3 << 20),  // starts past 4 GiB
        file("c", 100_000),  // only a tail, in a fragment past 4 GiB
    ])))
    let image = scratch.sub("large.sfs")
    let options = SquashFSOptions(compression: CompressionSpec(codec: .none, level: 0), blockSize: 1 << 20)
    let result = try SquashFSWriter(options: options).write(root, source: NoiseSource(), to: image)
    #expect(result.bytesUsed > 4 << 30 + 4 << 20)

    let expected: [String: [UInt8]] = ["b": (0..<3).flatMap { noise(seed: UInt64(UInt8(ascii: "b")), index: $0, count: 1 << 20) },
                                       "c": noise(seed: UInt64(UInt8(ascii: "c")), index: 0, count: 100_000)]
    let reader = try SquashFSImage(path: image)
    let tree = try reader.readTree()
    for (name, bytes) in expected {
        guard case .regular(let regular) = tree.lookup(Array(name.utf8))?.content else { Issue.record("no \(name)"); continue }
        #expect(try reader.contents(of: regular) == bytes, "our reader: \(name)")
    }
    let mountPoint = scratch.sub("mnt")
    try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
    defer { _ = try? sh("umount \(mountPoint)") }
    for (name, bytes) in expected {
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: mountPoint + "/" + name))) == bytes, "kernel: \(name)")
    }
    let tail = try sh("tail -c 7 \(mountPoint)/a | od -An -tx1").trimmingCharacters(in: .whitespacesAndNewlines)
    let last = noise(seed: UInt64(UInt8(ascii: "a")), index: 4096 + 1, count: 7)
    #expect(tail == last.map { String(format: "%02x", $0) }.joined(separator: " "), "kernel: the tail of a")
    let listing = try run("unsquashfs", ["-lln", image])
    #expect(listing.succeeded && listing.stderr.isEmpty)
}
