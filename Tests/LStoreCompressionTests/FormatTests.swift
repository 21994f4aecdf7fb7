import Foundation
import LStoreCompression
import Testing

/// The blocks are the standard formats: the reference tools read ours, and we read theirs.
@Suite struct FormatTests {
    static let input = Samples.text128K

    static func block(_ spec: String) throws -> [UInt8] {
        try #require(try Compressor(CompressionSpec(parsing: spec)).compress(input))
    }

    @Test(.enabled(if: Tool.find("zstd") != nil, "needs the zstd command"))
    func zstdFrameIsStandard() throws {
        let frame = try Self.block("zstd:3")
        #expect(try Tool.run("zstd", ["-d", "-c", "-q"], input: frame) == Self.input)
        // Magic, then a frame header descriptor with Single_Segment (window = content size, which the
        // kernel needs: its window is the block size) and no Content_Checksum.
        #expect(Array(frame.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD])
        #expect(frame[4] & 0x20 != 0, "single segment")
        #expect(frame[4] & 0x04 == 0, "no checksum")
        let theirs = try Tool.run("zstd", ["-19", "-c", "-q", "--no-check"], input: Self.input)
        #expect(try Decompressor(.zstd).decompress(theirs, capacity: Self.input.count) == Self.input)
    }

    @Test(.enabled(if: Tool.find("xz") != nil, "needs the xz command"))
    func xzStreamIsStandard() throws {
        let stream = try Self.block("xz:6")
        #expect(try Tool.run("xz", ["-d", "-c"], input: stream) == Self.input)
        // Stream header: magic, flags 00 01 = CRC32.
        #expect(Array(stream.prefix(8)) == [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00, 0x01])
        // The xz tool's view: one CRC32 stream whose LZMA2 dictionary is the block size, not preset 6's
        // 8 MiB, so the kernel's preallocating decoder (dictionary = block size) takes it.
        let listing = String(decoding: try Tool.run("xz", ["--robot", "--list", "-vv"], input: stream, asFile: true), as: UTF8.self)
        #expect(listing.contains("CRC32"))
        #expect(listing.contains("dict=128KiB"), "\(listing)")
        let theirs = try Tool.run("xz", ["-6", "--check=crc32", "-c"], input: Self.input)
        #expect(try Decompressor(.xz).decompress(theirs, capacity: Self.input.count) == Self.input)
    }

    @Test(.enabled(if: Tool.find("xz") != nil, "needs the xz command"))
    func xzDictionaryFollowsBlockSize() throws {
        for (size, dictionary) in [(1000, "4KiB"), (5000, "6KiB"), (100_000, "128KiB"), (1 << 20, "1MiB")] {
            let input = Array(Samples.mixed1M.prefix(size))
            let stream = try #require(try Compressor(CompressionSpec(codec: .xz, level: 6)).compress(input))
            let listing = String(decoding: try Tool.run("xz", ["--robot", "--list", "-vv"], input: stream, asFile: true), as: UTF8.self)
            #expect(listing.contains("dict=\(dictionary)"), "\(size): \(listing)")
        }
    }

    @Test(.enabled(if: Tool.find("python3") != nil, "needs python3"))
    func gzipBlockIsAZlibStream() throws {
        let stream = try Self.block("gzip:9")
        let inflate = "import zlib,sys; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))"
        #expect(try Tool.run("python3", ["-c", inflate], input: stream) == Self.input)
        // zlib header: deflate with a 32 KiB window (0x78), level 9 flags (0xDA).
        #expect(Array(stream.prefix(2)) == [0x78, 0xDA])
        let deflate = """
            import zlib,sys; c = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY)
            sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read()) + c.flush())
            """
        let theirs = try Tool.run("python3", ["-c", deflate], input: Self.input)
        #expect(try Decompressor(.gzip).decompress(theirs, capacity: Self.input.count) == Self.input)
    }

    @Test(arguments: ["lz4", "lz4:hc"])
    func lz4BlockIsARawBlock(spec: String) throws {
        let block = try Self.block(spec)
        // No frame magic (04 22 4D 18): a bare block, decoded by a decoder written from the format spec.
        #expect(Array(block.prefix(4)) != [0x04, 0x22, 0x4D, 0x18])
        #expect(referenceLZ4Decode(block) == Self.input)
    }
}

enum Tool {
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `name` with `input` on its standard input (or, with `asFile`, as a file named last on its
    /// command line); returns its standard output, throwing if it exits non-zero.
    static func run(_ name: String, _ arguments: [String], input: [UInt8], asFile: Bool = false) throws -> [UInt8] {
        guard let executable = find(name) else { throw Failed(description: "\(name) not found") }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lstore-\(UUID().uuidString)")
        try Data(input).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = asFile ? arguments + [file.path] : arguments
        if !asFile { process.standardInput = try FileHandle(forReadingFrom: file) }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failed(description: "\(name) \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        }
        return [UInt8](bytes)
    }
}
