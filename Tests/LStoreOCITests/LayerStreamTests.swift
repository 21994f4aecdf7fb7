import Foundation
@testable import LStoreOCI
import LStoreTestSupport
import LStoreTree
import Testing

/// Layer blobs in every compressed form decompress to the same tar, checked against both digests.
struct LayerStreamTests {
    let scratch = TemporaryDirectory("layer-stream")

    /// Writes a tar of 300 KiB of varied data and the blob forms of it; returns the tar's path.
    func makeBlobs() throws -> String {
        try sh("""
            cd \(scratch.path)
            python3 - <<'PY'
            import gzip, io, random, struct, subprocess, tarfile
            r = random.Random(5)
            b = io.BytesIO()
            with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
                for i in range(6):
                    data = r.randbytes(40000) + bytes(10000)
                    info = tarfile.TarInfo(f"f{i}"); info.size = len(data); t.addfile(info, io.BytesIO(data))
            tar = b.getvalue()
            open("layer.tar", "wb").write(tar)
            half = len(tar) // 2
            # gzip: two members, as pigz and some registries write them.
            open("layer.gz2", "wb").write(gzip.compress(tar[:half]) + gzip.compress(tar[half:]))
            # zstd: a skippable frame, two frames, another skippable frame.
            def zst(data):
                return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
            skip = struct.pack("<II", 0x184D2A53, 5) + b"hello"
            open("layer.zst2", "wb").write(skip + zst(tar[:half]) + zst(tar[half:]) + skip)
            open("layer.gz-cut", "wb").write(gzip.compress(tar)[:-100])
            open("layer.zst-cut", "wb").write(zst(tar)[:-100])
            PY
            """)
        return scratch.sub("layer.tar")
    }

    func digest(of path: String) throws -> ImageDigest {
        let hex = try sh("sha256sum \(path) | cut -c1-64").trimmingCharacters(in: .whitespacesAndNewlines)
        return ImageDigest(parsing: "sha256:" + hex)!
    }

    /// Reads the blob at `path` to its end through a LayerStream; returns the bytes.
    func read(_ path: String, diffID: ImageDigest) throws -> [UInt8] {
        let file = try ReadOnlyFile(path)
        let stream = try LayerStream(blob: BlobReader(BlobLocation(file: file, offset: 0, size: file.size)), display: path,
                                     limits: ImportLimits())
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 7001)
        while true {
            let got = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if got == 0 { break }
            out += buffer[0..<got]
        }
        try stream.finish(blobDigest: try digest(of: path), diffID: diffID)
        return out
    }

    @Test func everyFormGivesTheTar() throws {
        let tarPath = try makeBlobs()
        let tar = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tarPath)))
        let diffID = try digest(of: tarPath)
        for form in ["layer.tar", "layer.gz2", "layer.zst2"] {
            #expect(try read(scratch.sub(form), diffID: diffID) == tar, "\(form)")
        }
    }

    @Test func truncatedStreamsAreRefused() throws {
        let diffID = try digest(of: try makeBlobs())
        for (form, message) in [("layer.gz-cut", "the gzip stream is truncated"), ("layer.zst-cut", "the zstd stream is truncated")] {
            #expect {
                _ = try read(scratch.sub(form), diffID: diffID)
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }
}
