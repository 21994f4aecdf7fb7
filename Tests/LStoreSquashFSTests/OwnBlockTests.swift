import Foundation
import LStoreCompression
@testable import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Placement of files smaller than a block (spec/squashfs.md §4.1): one the source hands over
/// compressed with the image's codec and level, in at least 4 KiB, is copied as a block of its own;
/// every other small file is packed into a fragment.
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
            open("alone", "wb").write(text(40000))      # compresses to well over 4 KiB
            open("tiny", "wb").write(text(2000))        # compresses to well under 4 KiB
            open("noise", "wb").write(r.randbytes(10000))  # does not compress: stored raw
            open("big", "wb").write(text(200000))       # a full block and a short last block
            for i in range(10):
                open(f"t{i}", "wb").write(text(500))    # more small files, packed with tiny and noise
            PY
            """)
    }

    func write(stored: String, image: String, threads: Int = 2) throws -> (path: String, result: SquashFSWriteResult) {
        let scanned = try Scanner().scan(tree)
        let options = SquashFSOptions(compression: try CompressionSpec(parsing: image), blockSize: 128 << 10, threads: threads)
        let path = scratch.sub("\(stored)-\(image)-\(threads).sfs")
        let result = try SquashFSWriter(options: options)
            .write(scanned.root, source: CompressingSource(spec: try CompressionSpec(parsing: stored)), to: path)
        return (path, result)
    }

    func placement(_ image: String) throws -> [String: Bool] {
        let reader = try SquashFSImage(path: image)
        _ = try reader.readTree()
        var inFragment: [String: Bool] = [:]
        for name in ["alone", "tiny", "noise", "big"] {
            let inode = try #require(reader.files[Array(name.utf8)], "\(name) is in the image")
            inFragment[name] = inode.fragment != Format.noFragment
        }
        return inFragment
    }

    @Test func aSmallFileStoredAsTheImageWantsIsCopiedAsItsOwnBlock() throws {
        let (image, result) = try write(stored: "zstd:3", image: "zstd:3")
        #expect(try placement(image) == ["alone": false, "tiny": true, "noise": true, "big": false])
        // big's full and last blocks, and alone's block, all copied; the other small files share a fragment.
        #expect(result.data.copied == 3 && result.data.recompressed == 0, "\(result.data)")
        #expect(result.data.fragments == 1, "\(result.data)")
        let source = try manifest(tree, options: manifestOptions)
        #expect(try kernelManifest(image, scratch: scratch) == source)
        #expect(try checkWithSquashfsTools(image, scratch: scratch, sockets: []) == source)
        let (_, restored) = try readBack(image, scratch: scratch)
        #expect(restored == source, "\(manifestDifference(source, restored))")
        // The placement depends on the data only, not on the thread count.
        let (single, _) = try write(stored: "zstd:3", image: "zstd:3", threads: 1)
        #expect(FileManager.default.contentsEqual(atPath: image, andPath: single))
    }

    /// Recompressed, the same file is packed like any other small file.
    @Test func otherSettingsPackEverySmallFile() throws {
        let (image, result) = try write(stored: "zstd:19", image: "zstd:3")
        #expect(try placement(image) == ["alone": true, "tiny": true, "noise": true, "big": false])
        #expect(result.data.copied == 0, "\(result.data)")
        #expect(try kernelManifest(image, scratch: scratch) == manifest(tree, options: manifestOptions))
    }
}
