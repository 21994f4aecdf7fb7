/// A SHA-256 digest: the identity of every object in a store.
///
/// Held as four words whose memory is exactly the 32 digest bytes, so a digest costs no allocation
/// and compares in byte order.
public struct Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 32

    /// The words, in memory order: `withUnsafeBytes` sees the digest bytes.
    private var storage: (UInt64, UInt64, UInt64, UInt64)

    /// The all-zero digest. No content hashes to it; file objects use it to mark a hole.
    public static let zero = Digest(storage: (0, 0, 0, 0))

    private init(storage: (UInt64, UInt64, UInt64, UInt64)) { self.storage = storage }

    /// Reads 32 bytes from `bytes` (which must hold at least 32).
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Digest.byteCount, "a digest needs 32 bytes")
        storage = (
            bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
            bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        )
    }

    public init<C: Collection<UInt8>>(_ bytes: C) {
        precondition(bytes.count == Digest.byteCount, "a digest is 32 bytes")
        var raw = [UInt8](bytes)
        self = raw.withUnsafeMutableBytes { Digest(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Parses 64 lowercase or uppercase hex digits.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let high = Digest.nibble(utf8[2 * i]), let low = Digest.nibble(utf8[2 * i + 1]) else { return nil }
            bytes[i] = high << 4 | low
        }
        self.init(bytes)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var copy = storage
        return try Swift.withUnsafeBytes(of: &copy) { try body($0) }
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The first byte: what index fan-out tables are keyed by.
    public var firstByte: UInt8 { UInt8(truncatingIfNeeded: storage.0) }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        return withUnsafeBytes { raw in
            String(unsafeUninitializedCapacity: 64) { out in
                for (i, byte) in raw.enumerated() {
                    out[2 * i] = digits[Int(byte >> 4)]
                    out[2 * i + 1] = digits[Int(byte & 15)]
                }
                return 64
            }
        }
    }

    /// The first 12 hex digits, as logs and listings show a commit.
    public var short: String { String(hex.prefix(12)) }

    public var description: String { hex }

    public static func < (lhs: Digest, rhs: Digest) -> Bool {
        let l = lhs.storage, r = rhs.storage
        if l.0 != r.0 { return l.0.byteSwapped < r.0.byteSwapped }
        if l.1 != r.1 { return l.1.byteSwapped < r.1.byteSwapped }
        if l.2 != r.2 { return l.2.byteSwapped < r.2.byteSwapped }
        return l.3.byteSwapped < r.3.byteSwapped
    }

    public static func == (lhs: Digest, rhs: Digest) -> Bool {
        lhs.storage.0 == rhs.storage.0 && lhs.storage.1 == rhs.storage.1
            && lhs.storage.2 == rhs.storage.2 && lhs.storage.3 == rhs.storage.3
    }

    public func hash(into hasher: inout Hasher) {
        // The bytes are already uniformly distributed: one word is plenty.
        hasher.combine(storage.0)
    }
}
