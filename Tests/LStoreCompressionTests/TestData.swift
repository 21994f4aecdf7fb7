import LStoreCompression

/// A small deterministic generator, so every run tests the same bytes.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum TestData {
    static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            withUnsafeBytes(of: generator.next().littleEndian) { bytes.append(contentsOf: $0) }
        }
        return Array(bytes.prefix(count))
    }

    /// Sentences of common words: compresses like source code or configuration files do.
    static func text(_ count: Int, seed: UInt64) -> [UInt8] {
        let words = """
            the of and to in is that for it as was with be by on not he this are or his from at which \
            but have an they you were their one all we can her has there been if more when will would who \
            so no file system root image store block tree commit pack index compress kernel mount layer
            """.split(separator: " ")
        var generator = SplitMix64(seed: seed)
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 32)
        var sentence = 0
        while bytes.count < count {
            let word = words[Int(generator.next() % UInt64(words.count))]
            bytes.append(contentsOf: word.utf8)
            sentence += 1
            if sentence > 6 && generator.next() % 8 == 0 {
                bytes.append(contentsOf: ".\n".utf8)
                sentence = 0
            } else {
                bytes.append(0x20)
            }
        }
        return Array(bytes.prefix(count))
    }

    /// 64 KiB runs of text, random bytes, zeros, a counter, and a repeated binary record.
    static func mixed(_ count: Int) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(count)
        var run = 0
        while bytes.count < count {
            let size = min(64 << 10, count - bytes.count)
            switch run % 5 {
            case 0: bytes += text(size, seed: UInt64(run))
            case 1: bytes += random(size, seed: UInt64(run))
            case 2: bytes += [UInt8](repeating: 0, count: size)
            case 3: bytes += (0..<size).map { UInt8(truncatingIfNeeded: $0 / 3) }
            default: bytes += (0..<size).map { [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0, UInt8(run), 0, 0, 0][$0 % 12] }
            }
            run += 1
        }
        return bytes
    }
}

/// The inputs every codec is tried on.
enum Sample: String, CaseIterable, Sendable, CustomStringConvertible {
    case empty, oneByte, random4K, text128K, mixed1M

    var description: String { rawValue }

    var bytes: [UInt8] {
        switch self {
        case .empty: []
        case .oneByte: [0x2A]
        case .random4K: Samples.random4K
        case .text128K: Samples.text128K
        case .mixed1M: Samples.mixed1M
        }
    }

    /// Whether every real codec makes it smaller.
    var compressible: Bool { self == .text128K || self == .mixed1M }
}

enum Samples {
    static let random4K = TestData.random(4096, seed: 4)
    static let text128K = TestData.text(128 << 10, seed: 128)
    static let mixed1M = TestData.mixed(1 << 20)
}

extension Compressor {
    /// Compresses `bytes`; nil when the codec declines (the block would not shrink).
    func compress(_ bytes: [UInt8]) throws -> [UInt8]? {
        var output = [UInt8]()
        let smaller = try bytes.withUnsafeBytes { try compress($0, into: &output) }
        return smaller ? output : nil
    }
}

extension Decompressor {
    /// Decompresses `block` into a buffer of `capacity` bytes; returns what was written.
    func decompress(_ block: [UInt8], capacity: Int) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: capacity)
        let written = try block.withUnsafeBytes { input in
            try output.withUnsafeMutableBytes { try decompress(input, into: $0) }
        }
        return Array(output.prefix(written))
    }

    /// Decompresses into the first `capacity` bytes of a larger buffer and checks that nothing past them
    /// was touched. Returns what was written, or the error thrown.
    func guardedDecompress(_ block: [UInt8], capacity: Int) -> (Result<[UInt8], any Error>, intact: Bool) {
        let guardBytes = 4096
        var buffer = [UInt8](repeating: 0xA5, count: capacity + guardBytes)
        let result = Result<Int, any Error> {
            try block.withUnsafeBytes { input in
                try buffer.withUnsafeMutableBytes { all in
                    try decompress(input, into: UnsafeMutableRawBufferPointer(rebasing: all[..<capacity]))
                }
            }
        }
        let intact = buffer[capacity...].allSatisfy { $0 == 0xA5 }
        return (result.map { Array(buffer.prefix($0)) }, intact)
    }
}

/// An LZ4 block decoder written from the format description, independent of liblz4.
func referenceLZ4Decode(_ block: [UInt8]) -> [UInt8]? {
    var output = [UInt8]()
    var i = 0
    func length(_ base: Int) -> Int? {
        guard base == 15 else { return base }
        var total = base
        while i < block.count {
            let byte = block[i]
            i += 1
            total += Int(byte)
            if byte != 255 { return total }
        }
        return nil
    }
    while i < block.count {
        let token = block[i]
        i += 1
        guard let literals = length(Int(token >> 4)), i + literals <= block.count else { return nil }
        output += block[i..<(i + literals)]
        i += literals
        if i == block.count { return output }
        guard i + 2 <= block.count else { return nil }
        let offset = Int(block[i]) | Int(block[i + 1]) << 8
        i += 2
        guard offset > 0, offset <= output.count, let match = length(Int(token & 15)) else { return nil }
        let start = output.count - offset
        for k in 0..<(match + 4) { output.append(output[start + k]) }
    }
    return nil
}
