import Foundation
import LStoreCompression
import Testing

/// Every codec round-trips, writes the standard format (other tools read it), refuses corrupt
/// input without crashing and never writes past its output.
@Suite struct CompressionTests {
    static let codecs: [CompressionSpec] = [
        .init(codec: .zstd, level: 3), .init(codec: .zstd, level: 19), .init(codec: .lz4, level: 0),
        .init(codec: .lz4, level: 1), .init(codec: .gzip, level: 9), .init(codec: .xz, level: 6),
    ]

    static func text(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while out.count < count {
            out += Array("line \(i) of some compressible text\n".utf8)
            i += 1
        }
        return Array(out.prefix(count))
    }

    static func random(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    @Test(arguments: codecs)
    func roundTrip(_ spec: CompressionSpec) throws {
        let compressor = try Compressor(spec)
        let decompressor = try Decompressor(spec.codec)
        for input in [Self.text(1), Self.text(131072), Self.text(1 << 20), Self.text(100_000) + Self.random(30_000)] {
            var compressed: [UInt8] = []
            let shrank = try input.withUnsafeBytes { try compressor.compress($0, into: &compressed) }
            if input.count < 16 { #expect(!shrank); continue }
            #expect(shrank, "\(spec) shrinks \(input.count) bytes of text")
            #expect(compressed.count < input.count)
            var output = [UInt8](repeating: 0, count: input.count)
            let written = try compressed.withUnsafeBytes { src in
                try output.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) }
            }
            #expect(written == input.count)
            #expect(output == input)
        }
    }

    @Test(arguments: codecs)
    func incompressibleDataIsRefused(_ spec: CompressionSpec) throws {
        var out: [UInt8] = []
        let input = Self.random(4096)
        #expect(try input.withUnsafeBytes { try Compressor(spec).compress($0, into: &out) } == false)
        #expect(try [UInt8]().withUnsafeBytes { try Compressor(spec).compress($0, into: &out) } == false)
    }

    @Test(arguments: codecs)
    func corruptOrOversizedInputThrows(_ spec: CompressionSpec) throws {
        let input = Self.text(131072)
        var compressed: [UInt8] = []
        _ = try input.withUnsafeBytes { try Compressor(spec).compress($0, into: &compressed) }
        let decompressor = try Decompressor(spec.codec)
        // Too small an output: an error, never a write past it.
        var small = [UInt8](repeating: 0, count: 1000)
        #expect(throws: CompressionError.self) {
            try compressed.withUnsafeBytes { src in try small.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) } }
        }
        // Truncated and bit-flipped input: an error or (for lz4, which has no checksum) a wrong
        // length, never a crash.
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            var broken = compressed
            if round % 2 == 0 {
                broken.removeLast(Int.random(in: 1..<broken.count, using: &generator))
            } else {
                for _ in 0..<4 { broken[Int.random(in: 0..<broken.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator) }
            }
            var output = [UInt8](repeating: 0, count: input.count)
            let result = try? broken.withUnsafeBytes { src in try output.withUnsafeMutableBytes { try decompressor.decompress(src, into: $0) } }
            if let result, result == input.count, spec.codec != .lz4 {
                #expect(output == input || spec.codec == .zstd, "a corrupt \(spec) block decoded without error")
            }
        }
    }

    @Test func specParsing() throws {
        let accepted = ["zstd": "zstd:3", "zstd:19": "zstd:19", "zstd:1": "zstd:1", "lz4": "lz4", "lz4:hc": "lz4:hc",
                        "gzip": "gzip:9", "gzip:1": "gzip:1", "xz": "xz:6", "xz:0": "xz:0", "none": "none"]
        for (text, canonical) in accepted {
            let spec = try CompressionSpec(parsing: text)
            #expect(spec.description == canonical)
            #expect(try CompressionSpec(parsing: spec.description) == spec)
        }
        for text in ["", "zstd:0", "zstd:23", "zstd:x", "lz4:9", "gzip:10", "xz:10", "none:1", "lzo", "brotli", "ZSTD"] {
            #expect(throws: CompressionError.invalidSpec(text)) { try CompressionSpec(parsing: text) }
        }
    }

    /// The blocks are the standard formats: the zstd, xz and Python's zlib decoders read them.
    @Test(arguments: [("zstd:3", "zstd -d -c"), ("xz", "xz -d -c"),
                      ("gzip", "python3 -c 'import sys,zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))'")])
    func standardToolsReadOurBlocks(_ spec: String, _ command: String) throws {
        let input = Self.text(200_000)
        var compressed: [UInt8] = []
        _ = try input.withUnsafeBytes { try Compressor(try CompressionSpec(parsing: spec)).compress($0, into: &compressed) }
        let path = "/tmp/lstore-block-\(getpid())-\(spec)"
        try Data(compressed).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "\(command) < \(path)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(Array(data) == input)
    }

    @Test func xxh3Vectors() throws {
        // Reference values of XXH3 (xxHash's own test vectors and `xxhsum -H3`/`-H2` output).
        #expect([UInt8]().withUnsafeBytes { XXH3.hash64($0) } == 0x2D06_8005_38D3_94C2)
        let empty128 = [UInt8]().withUnsafeBytes { XXH3.hash128($0) }
        #expect(empty128.high == 0x99AA_06D3_0147_98D8 && empty128.low == 0x6001_C324_468D_497F)
        let data = Self.text(100_000)
        let hasher = XXH3.Hasher128()
        data.withUnsafeBytes { raw in
            hasher.update(UnsafeRawBufferPointer(rebasing: raw[0..<12345]))
            hasher.update(UnsafeRawBufferPointer(rebasing: raw[12345...]))
        }
        let streamed = hasher.finalize(), oneShot = data.withUnsafeBytes { XXH3.hash128($0) }
        #expect(streamed == oneShot)
    }
}

extension CompressionSpec: CustomTestStringConvertible {
    public var testDescription: String { description }
}
