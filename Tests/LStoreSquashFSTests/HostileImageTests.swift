import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Reads everything an image holds: the tree and every file's data.
@discardableResult
func readEverything(_ path: String) throws -> Int {
    let image = try SquashFSImage(path: path)
    let root = try image.readTree()
    var bytes = 0
    var failure: (any Error)?
    root.walk { path, node in
        guard failure == nil, case .regular(let file) = node.content else { return }
        do {
            try image.forEachBlock(of: file, path: path, blockSize: image.info.blockSize) { block in
                if case .raw(let data) = block { bytes += data.count }
            }
        } catch {
            failure = error
        }
    }
    if let failure { throw failure }
    return bytes
}

/// A seeded generator, so a failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite(.serialized, .enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs"))
struct HostileImageTests {
    let scratch = TemporaryDirectory("sqfs-hostile")

    func smallImage(_ compression: String, blockSize: Int = 4 << 10) throws -> [UInt8] {
        let tree = scratch.sub("tree")
        if !FileManager.default.fileExists(atPath: tree) { try makeSquashFSTree(tree) }
        let path = scratch.sub("small-\(compression).sfs")
        try writeImage(tree, to: path, compression: compression, blockSize: blockSize, exclude: ["many"])
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = scratch.sub(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: ["zstd", "gzip"])
    func truncatedImagesAreRejected(compression: String) throws {
        let bytes = try smallImage(compression)
        let bytesUsed = Int(bytes[40..<48].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect(try readEverything(try write(bytes, "whole.sfs")) > 0)
        var lengths = Array(stride(from: 0, to: bytesUsed, by: max(1, bytesUsed / 150)))
        lengths += [95, 96, 97, bytesUsed - 1]
        for length in lengths {
            let path = try write(Array(bytes[0..<length]), "truncated.sfs")
            // One line naming the image and saying it is cut short, before anything past the end is read.
            let expected = length < 96
                ? "corrupt squashfs image: \(path): truncated: \(length) bytes, too short for a superblock"
                : "corrupt squashfs image: \(path): truncated: \(length) bytes of the \(bytesUsed) the superblock says"
            let error = #expect(throws: SquashFSError.self, "\(length) of \(bytesUsed) bytes") { try readEverything(path) }
            #expect(error.map { "\($0)" } == expected)
        }
    }

    /// A few hundred images with bytes flipped in the superblock and the tables: the reader
    /// throws or reads a tree, and never crashes, hangs or runs out of memory.
    @Test(.timeLimit(.minutes(5)), arguments: ["zstd", "none"])
    func flippedBytesNeverCrash(compression: String) throws {
        let bytes = try smallImage(compression)
        func u64(_ at: Int) -> Int { Int(bytes[at..<at + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
        let tablesStart = u64(64), bytesUsed = u64(40)
        var random = SplitMix64(state: compression == "none" ? 1 : 2)
        var thrown = 0, read = 0
        // SQUASHFS_FUZZ_ROUNDS=N runs a longer campaign.
        let rounds = Int(ProcessInfo.processInfo.environment["SQUASHFS_FUZZ_ROUNDS"] ?? "") ?? 300
        for round in 0..<rounds {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let region = Int.random(in: 0..<10, using: &random)  // 1 in 10 in the superblock
                let offset = region == 0 ? Int.random(in: 0..<96, using: &random)
                    : Int.random(in: tablesStart..<bytesUsed, using: &random)
                if Bool.random(using: &random) {
                    mutated[offset] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
                } else {
                    mutated[offset] = UInt8.random(in: 0...255, using: &random)
                }
            }
            let path = try write(mutated, "mutated.sfs")
            do {
                try readEverything(path)
                read += 1
            } catch is SquashFSError {
                thrown += 1
            } catch {
                Issue.record("round \(round): not a SquashFSError: \(error)")
            }
        }
        print("\(compression): \(thrown) mutated images rejected, \(read) read")
        #expect(thrown > rounds / 2, "most mutations of the tables are caught: \(thrown) thrown, \(read) read")
    }

    /// A directory whose listing is its parent's: the reader meets a directory twice and stops.
    @Test func directoryCycleIsRejected() throws {
        let tree = scratch.sub("cycle-tree")
        try sh("mkdir -p \(tree)/a && touch -d @1700000000 \(tree)/a \(tree)")
        let path = scratch.sub("cycle.sfs")
        try writeImage(tree, to: path, compression: "none")
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(try SquashFSImage(path: path).readTree().lookup(Array("a".utf8)) != nil)
        // Uncompressed inode table: a 2-byte block header, then /a (inode 1, 32 bytes), then / (inode 2).
        let table = Int(bytes[64..<72].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) + 2
        #expect(bytes[table] == 1 && bytes[table + 32] == 1, "two basic directory inodes")
        // Give /a the root's listing: start block (16), size (24), offset (26).
        for field in [16, 17, 18, 19, 24, 25, 26, 27] { bytes[table + field] = bytes[table + 32 + field] }
        let hostile = try write(bytes, "cycle-hostile.sfs")
        #expect {
            try SquashFSImage(path: hostile).readTree()
        } throws: { error in
            "\(error)".contains("listed twice")
        }
    }
}
