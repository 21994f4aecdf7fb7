import Foundation
import LStoreCompression
@testable import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Placement of files smaller than a block (spec/squashfs.md §4): with `ownBlockMinimum`, one whose
/// stored form (compressed on its own, or raw when that is not smaller) has at least that many
/// bytes is a block of its own, whatever form the source holds it in; without, every small file
/// is packed into a fragment.
@Suite(.enabled(if: isRoot, "needs root: loop mounts"))
struct OwnBlockTests {
    let scratch = TemporaryDirectory("sqfs-ownblock")
    var tree: String { scratch.sub("tree") }

    init() throws {
        try sh("""
            mkdir -p \(tree) && cd \(tree) && python3 - <<'PY'
            import random
            r = random.Random(11)
            words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randrange(3, 9))) for _ in range(3000)]
            def text(n):
                out = bytearray()
                while len(out) < n:
                    out += r.choice(words) + b" "
                return bytes(out[:n])
            open("alone", "wb").write(text(40000))           # compresses to well over 4 KiB
            open("tiny", "wb").write(text(2000))             # compresses to well under 4 KiB
            open("noise", "wb").write(r.randbytes(10000))    # does not compress, and is over 4 KiB
            open("crumb", "wb").write(r.randbytes(3000))     # does not compress, and is under 4 KiB
            open("big", "wb").write(text(200000))            # a full block and a short last block
            for i in range(10):
                open(f"t{i}", "wb").write(text(500))         # more small files, packed with tiny and crumb
            # More than one batch (16 MiB) of data, with small files between the large ones, so
            # that where fragment blocks land depends on where batches end.
            import os
            os.mkdir("many")
            for i in range(24):
                open(f"many/m{i:02}", "wb").write(text(1000000 + r.randrange(100000)))
                for j in range(30):
                    open(f"many/m{i:02}-s{j:02}", "wb").write(text(r.randrange(100, 9000)))
            PY
            """)
    }

    func write(_ source: some BlockSource, image: String, minimum: Int?, threads: Int = 2,
               name: String) throws -> (path: String, result: SquashFSWriteResult) {
        let scanned = try Scanner().scan(tree)
        var options = SquashFSOptions(compression: try CompressionSpec(parsing: image), blockSize: 128 << 10, threads: threads)
        options.ownBlockMinimum = minimum
        let path = scratch.sub("\(name).sfs")
        return (path, try SquashFSWriter(options: options).write(scanned.root, source: source, to: path))
    }

    func stored(_ spec: String, sayTried: Bool = true) throws -> CompressingSource {
        CompressingSource(spec: try CompressionSpec(parsing: spec), sayTried: sayTried)
    }

    /// Which of the named files are in a fragment, as our reader finds their inodes.
    func inFragment(_ image: String) throws -> [String: Bool] {
        let reader = try SquashFSImage(path: image)
        _ = try reader.readTree()
        var found: [String: Bool] = [:]
        for name in ["alone", "tiny", "noise", "crumb", "big"] {
            let inode = try #require(reader.files[Array(name.utf8)], "\(name) is in the image")
            found[name] = inode.fragment != Format.noFragment
        }
        return found
    }

    @Test func smallFilesThatCompressTo4KiBOrMoreStandAlone() throws {
        let (image, result) = try write(try stored("zstd:3"), image: "zstd:3", minimum: 4096, name: "direct")
        #expect(try inFragment(image) == ["alone": false, "tiny": true, "noise": false, "crumb": true, "big": false])
        // Copied without compressing: every block, alone's (compressed) and noise's (raw, known not
        // to compress) included; the smaller files are packed into fragments.
        #expect(result.data.copied == result.data.blocks, "\(result.data)")
        #expect(result.data.ownBlocks >= 2 && result.data.fragments > 2 && result.data.recompressed == 0, "\(result.data)")
        let source = try manifest(tree, options: manifestOptions)
        #expect(try kernelManifest(image, scratch: scratch) == source)
        #expect(try checkWithSquashfsTools(image, scratch: scratch, sockets: []) == source)
        let (_, restored) = try readBack(image, scratch: scratch)
        #expect(restored == source, "\(manifestDifference(source, restored))")

        // The same bytes at one thread, and whatever form the source holds the files in: compressed
        // at another level or with another codec, raw without saying what was tried, or a plain
        // directory.
        let others: [(String, any BlockSource)] = [
            ("one-thread", try stored("zstd:3")), ("zstd9", try stored("zstd:9")), ("lz4", try stored("lz4")),
            ("untried", try stored("zstd:3", sayTried: false)), ("directory", DirectoryBlockSource()),
        ]
        for (name, source) in others {
            let (other, _) = try write(source, image: "zstd:3", minimum: 4096, threads: name == "one-thread" ? 1 : 2, name: name)
            #expect(FileManager.default.contentsEqual(atPath: image, andPath: other), "\(name) writes the same image")
        }
    }

    /// Without `ownBlockMinimum` every small file is packed, even one the source has compressed as
    /// the image wants it: the layout mksquashfs chooses.
    @Test func withoutAMinimumEverySmallFileIsPacked() throws {
        let (image, result) = try write(try stored("zstd:3"), image: "zstd:3", minimum: nil, name: "packed")
        #expect(try inFragment(image) == ["alone": true, "tiny": true, "noise": true, "crumb": true, "big": false])
        #expect(result.data.ownBlocks == 0, "\(result.data)")
        #expect(try kernelManifest(image, scratch: scratch) == manifest(tree, options: manifestOptions))
    }
}
