import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// A source that hands every block over already compressed, as a store does, raw when that does
/// not make it smaller; `sayTried` says so of raw blocks (`StoredBlock.notSmallerWith`).
struct CompressingSource: BlockSource {
    let spec: CompressionSpec
    var sayTried = true

    func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                      _ body: (SourceBlock) throws -> Void) throws {
        let compressor = try Compressor(spec)
        var scratch: [UInt8] = []
        try DirectoryBlockSource().forEachBlock(of: file, path: path, blockSize: blockSize) { block in
            guard case .raw(let bytes) = block else { return try body(block) }
            if bytes.count == blockSize && bytes.allSatisfy({ $0 == 0 }) { return try body(.hole) }  // as a store does
            if try bytes.withUnsafeBytes({ try compressor.compress($0, into: &scratch) }) {
                try body(.stored(StoredBlock(bytes: scratch, spec: spec, rawLength: bytes.count)))
            } else {
                try body(.stored(StoredBlock(bytes: bytes, spec: CompressionSpec(codec: .none, level: 0),
                                             rawLength: bytes.count, notSmallerWith: sayTried ? spec : nil)))
            }
        }
    }
}

@Suite(.enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs, loop mounts"))
struct SourceTests {
    /// Blocks stored with the image's codec and level are copied; others are decompressed and
    /// compressed again; either way the image holds the files exactly.
    @Test(arguments: [("zstd", "zstd", true), ("zstd:19", "zstd", false), ("lz4", "xz", false), ("gzip", "gzip", true)])
    func storedBlocks(stored: String, image: String, copies: Bool) throws {
        let scratch = TemporaryDirectory("sqfs-source")
        let tree = scratch.sub("tree")
        try makeSquashFSTree(tree)
        let scanned = try Scanner().scan(tree)
        let options = SquashFSOptions(compression: try CompressionSpec(parsing: image), blockSize: 64 << 10)
        let path = scratch.sub("stored.sfs")
        let result = try SquashFSWriter(options: options)
            .write(scanned.root, source: CompressingSource(spec: try CompressionSpec(parsing: stored)), to: path)
        #expect(result.data.blocks > 10)
        if copies {
            #expect(result.data.copied > 0 && result.data.recompressed == 0, "\(result.data)")
        } else {
            #expect(result.data.copied == 0 && result.data.recompressed > 0, "\(result.data)")
        }
        let source = try manifest(tree, options: manifestOptions)
        let mounted = try kernelManifest(path, scratch: scratch)
        #expect(mounted == source, "kernel: \(manifestDifference(source, mounted))")

        // Our reader reads it as the tree written from the directory itself.
        let plain = scratch.sub("plain.sfs")
        _ = try SquashFSWriter(options: options).write(scanned.root, source: DirectoryBlockSource(), to: plain)
        let (storedTree, storedRestore) = try readBack(path, scratch: scratch)
        let (plainTree, _) = try readBack(plain, scratch: scratch)
        #expect(storedRestore == source, "\(manifestDifference(source, storedRestore))")
        #expect(describe(storedTree) == describe(plainTree), "\(lineDifference(describe(plainTree), describe(storedTree)))")
    }

    /// An image read by our reader is a source for another image, cut at another block size.
    @Test(arguments: [(128 << 10, 4 << 10), (4 << 10, 1 << 20)])
    func imageToImage(from: Int, to: Int) throws {
        let scratch = TemporaryDirectory("sqfs-reimage")
        let tree = scratch.sub("tree")
        try makeSquashFSTree(tree)
        let first = scratch.sub("mksquashfs.sfs"), second = scratch.sub("ours.sfs")
        try mksquashfs(tree, to: first, compression: "gzip", blockSize: from)
        let reader = try SquashFSImage(path: first)
        let root = try reader.readTree()
        let options = SquashFSOptions(compression: try CompressionSpec(parsing: "zstd"), blockSize: to)
        let result = try SquashFSWriter(options: options).write(root, source: reader, to: second)
        #expect(result.data.holes > 0, "the sparse and zero files keep their holes")
        let source = try manifest(tree, options: manifestOptions)
        let mounted = try kernelManifest(second, scratch: scratch)
        #expect(mounted == source, "kernel: \(manifestDifference(source, mounted))")
    }

    /// A source that delivers the wrong blocks is refused, not written.
    @Test func badSourcesAreRefused() throws {
        struct Short: BlockSource {
            func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                              _ body: (SourceBlock) throws -> Void) throws {
                try body(.raw([1, 2, 3]))
            }
        }
        let scratch = TemporaryDirectory("sqfs-bad")
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [
            Node(name: Array("f".utf8), metadata: Metadata(kind: .regular, permissions: 0o644),
                 content: .regular(RegularFile(size: 10))),
        ])))
        let writer = try SquashFSWriter(options: SquashFSOptions(compression: CompressionSpec(codec: .zstd, level: 3)))
        #expect(throws: SquashFSError.self) { try writer.write(root, source: Short(), to: scratch.sub("x.sfs")) }
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("x.sfs")), "a failed write leaves no image")
        #expect(throws: SquashFSError.self) {
            try SquashFSWriter(options: SquashFSOptions(compression: CompressionSpec(codec: .zstd, level: 3), blockSize: 5000))
        }
    }
}
