import LStoreTree

/// Appends little-endian integers and bytes: how every binary object and file of a store is
/// written, and every payload of the sync protocol.
public struct ByteWriter {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { integer(value) }
    public mutating func u32(_ value: UInt32) { integer(value) }
    public mutating func u64(_ value: UInt64) { integer(value) }
    public mutating func i64(_ value: Int64) { integer(value) }
    public mutating func append(_ other: some Collection<UInt8>) { bytes.append(contentsOf: other) }
    public mutating func digest(_ digest: Digest) { digest.withUnsafeBytes { bytes.append(contentsOf: $0) } }

    private mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads what `ByteWriter` wrote. Every read is bounds-checked: too little input throws
/// `StoreError.corrupt`, never traps.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0
    /// Names what is being read, for the error.
    let what: String

    init(_ bytes: UnsafeRawBufferPointer, what: String) {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset == bytes.count }

    mutating func u8() throws -> UInt8 { try integer() }
    mutating func u16() throws -> UInt16 { try integer() }
    mutating func u32() throws -> UInt32 { try integer() }
    mutating func u64() throws -> UInt64 { try integer() }
    mutating func i64() throws -> Int64 { try integer() }

    mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw corrupt("truncated") }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    mutating func array(_ count: Int) throws -> [UInt8] { Array(try take(count)) }

    mutating func digest() throws -> Digest { Digest(bytes: try take(Digest.byteCount)) }

    private mutating func integer<T: FixedWidthInteger>() throws -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw corrupt("truncated") }
        defer { offset += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func corrupt(_ problem: String) -> StoreError {
        .corrupt("\(what): \(problem) at byte \(offset)")
    }
}
