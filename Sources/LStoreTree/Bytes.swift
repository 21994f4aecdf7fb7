/// Appends little-endian integers and bytes: how every binary object and file of a store is
/// written, every payload of the sync protocol, and every table of a squashfs image.
/// Its methods are `@inlinable`: the squashfs writer and the store call them per field, from
/// other modules, where a call each would cost more than the write.
public struct ByteWriter {
    public var bytes: [UInt8] = []

    @inlinable public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    @inlinable public mutating func u8(_ value: UInt8) { bytes.append(value) }
    @inlinable public mutating func u16(_ value: UInt16) { integer(value) }
    @inlinable public mutating func u32(_ value: UInt32) { integer(value) }
    @inlinable public mutating func u64(_ value: UInt64) { integer(value) }
    @inlinable public mutating func i64(_ value: Int64) { integer(value) }
    @inlinable public mutating func append(_ other: some Collection<UInt8>) { bytes.append(contentsOf: other) }
    @inlinable public mutating func digest(_ digest: Digest) { digest.withUnsafeBytes { bytes.append(contentsOf: $0) } }

    @inlinable mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// The error a `ByteReader` throws when its input ends before what it was asked to read: each
/// module's own (`StoreError`, `SquashFSError`), so a short input reads as that module's corrupt data.
public protocol TruncatedInputError: Error {
    /// Input `what` ended at byte `offset`, `needed` bytes short of what was being read.
    init(truncated what: String, at offset: Int, needed: Int)
}

/// Reads little-endian integers and bytes from memory, what `ByteWriter` wrote. Every read is
/// bounds-checked: too little input throws `Failure` naming `what`, never traps.
/// Its methods are `@inlinable`, so that other modules get them specialised for their error type.
public struct ByteReader<Failure: TruncatedInputError> {
    public let bytes: UnsafeRawBufferPointer
    /// Set only by the reads (public for them to be inlined into other modules).
    public var offset = 0
    /// Names what is being read, for the error.
    public let what: String

    @inlinable public init(_ bytes: UnsafeRawBufferPointer, what: String) {
        self.bytes = bytes
        self.what = what
    }

    @inlinable public var remaining: Int { bytes.count - offset }
    @inlinable public var isAtEnd: Bool { offset == bytes.count }

    @inlinable public mutating func u8() throws(Failure) -> UInt8 { try integer() }
    @inlinable public mutating func u16() throws(Failure) -> UInt16 { try integer() }
    @inlinable public mutating func u32() throws(Failure) -> UInt32 { try integer() }
    @inlinable public mutating func u64() throws(Failure) -> UInt64 { try integer() }
    @inlinable public mutating func i64() throws(Failure) -> Int64 { try integer() }

    /// The next `count` bytes, in place.
    @inlinable public mutating func take(_ count: Int) throws(Failure) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw Failure(truncated: what, at: offset, needed: count - remaining) }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    /// The next `count` bytes, copied.
    @inlinable public mutating func array(_ count: Int) throws(Failure) -> [UInt8] { Array(try take(count)) }

    @inlinable public mutating func digest() throws(Failure) -> Digest { Digest(bytes: try take(Digest.byteCount)) }

    @inlinable mutating func integer<T: FixedWidthInteger>() throws(Failure) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw Failure(truncated: what, at: offset, needed: size - remaining) }
        defer { offset += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// A `ByteReader` over bytes it keeps (a frame's payload, an image's table entry), for input that
/// has no buffer outliving the reads. The same checks: too little input throws `Failure`.
/// `@inlinable` as `ByteReader` is: squashfs's reader parses each inode and table entry with it.
public struct OwnedByteReader<Failure: TruncatedInputError> {
    public let bytes: [UInt8]
    /// Set only by the reads (public for them to be inlined into other modules).
    public var offset = 0
    /// Names what is being read, for the error.
    public let what: String

    @inlinable public init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    @inlinable public var remaining: Int { bytes.count - offset }
    @inlinable public var isAtEnd: Bool { offset == bytes.count }

    @inlinable public mutating func u8() throws -> UInt8 { try read { try $0.u8() } }
    @inlinable public mutating func u16() throws -> UInt16 { try read { try $0.u16() } }
    @inlinable public mutating func u32() throws -> UInt32 { try read { try $0.u32() } }
    @inlinable public mutating func u64() throws -> UInt64 { try read { try $0.u64() } }
    @inlinable public mutating func digest() throws -> Digest { try read { try $0.digest() } }

    /// The next `count` bytes, copied.
    @inlinable public mutating func array(_ count: Int) throws -> [UInt8] { try read { try $0.array(count) } }

    /// The next `count` bytes, as a slice of the kept bytes.
    @inlinable public mutating func slice(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw Failure(truncated: what, at: offset, needed: count - remaining) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// Everything not read yet.
    @inlinable public mutating func rest() -> ArraySlice<UInt8> {
        defer { offset = bytes.count }
        return bytes[offset...]
    }

    /// Reads with a `ByteReader` over what is left, and moves past what it read.
    @inlinable mutating func read<T>(_ body: (inout ByteReader<Failure>) throws -> T) throws -> T {
        let start = offset
        let (value, used) = try bytes.withUnsafeBytes { raw in
            var reader = ByteReader<Failure>(UnsafeRawBufferPointer(rebasing: raw[start...]), what: what)
            return (try body(&reader), reader.offset)
        }
        offset += used
        return value
    }
}
