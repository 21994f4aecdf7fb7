import LStoreCompression
import LStoreTree

/// One object as a pack holds it: the fields of its entry header (spec/store.md, "Pack files").
/// Objects travel between stores in exactly this form, so nothing is recompressed on the way.
public struct PackEntry: Sendable, Equatable {
    public static let headerSize = PackFormat.entryHeaderSize
    /// No object is larger, raw or stored.
    public static let maxObjectSize = PackFormat.maxObjectSize

    public var kind: ObjectKind
    public var id: Digest
    public var codec: Codec
    public var level: UInt8
    /// See `PackLocation.triedCodec`.
    public var triedCodec: Codec
    public var rawLength: Int
    public var storedLength: Int

    /// Parses an entry header (the first `headerSize` bytes of `bytes`), checking every field's range.
    public init(decodingHeader bytes: UnsafeRawBufferPointer, what: String) throws {
        guard bytes.count >= Self.headerSize else { throw StoreError.corrupt("\(what): truncated entry header") }
        let header = try PackEntryHeader(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<Self.headerSize]), what: what)
        kind = header.kind
        id = header.id
        codec = header.codec
        level = header.level
        triedCodec = header.triedCodec
        rawLength = Int(header.rawLength)
        storedLength = Int(header.storedLength)
    }
}

extension Store {
    /// Reads an object's pack entry, header and stored bytes, into the start of `buffer`, checked
    /// against its index entry and XXH3. Returns the entry's length.
    public func readPackEntry(_ id: Digest, kind: ObjectKind, into buffer: inout [UInt8]) throws -> Int {
        let location = try readStored(id, kind: kind, into: &buffer)
        return PackFormat.entryHeaderSize + Int(location.storedLength)
    }

    /// The length of the object's pack entry (header and stored bytes), or nil when it is absent.
    public func packEntryLength(_ id: Digest, kind: ObjectKind) -> Int? {
        find(id, kind: kind).map { PackFormat.entryHeaderSize + Int($0.location.storedLength) }
    }
}

/// Checks objects that come from another machine before a store takes them: the entry header's
/// ranges, the XXH3 of the stored bytes, that they decompress to exactly the raw length, and that
/// the raw bytes hash to the object's id. One per thread.
public struct EntryVerifier {
    private var decompressors = Decompressors()
    /// The raw (decompressed) bytes of the object last verified.
    public private(set) var raw: [UInt8] = []

    public init() {}

    /// Verifies the pack entry `bytes` (header and stored bytes, nothing more) and returns its header.
    public mutating func verify(_ bytes: UnsafeRawBufferPointer, what: String) throws -> PackEntry {
        let entry = try PackEntry(decodingHeader: bytes, what: what)
        let header = try PackEntryHeader(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<PackEntry.headerSize]), what: what)
        guard bytes.count == PackEntry.headerSize + entry.storedLength else {
            throw StoreError.corrupt("\(what): \(entry.kind) \(entry.id.short) holds \(bytes.count - PackEntry.headerSize) stored bytes, its header says \(entry.storedLength)")
        }
        let stored = UnsafeRawBufferPointer(rebasing: bytes[PackEntry.headerSize...])
        guard XXH3.hash64(stored) == header.checksum else {
            throw StoreError.corrupt("\(what): checksum mismatch in \(entry.kind) \(entry.id.short)")
        }
        if raw.count != entry.rawLength { raw = [UInt8](repeating: 0, count: entry.rawLength) }
        try raw.withUnsafeMutableBytes { output in
            try decompressors.decompress(stored, codec: entry.codec, into: output, what: "\(what): \(entry.kind) \(entry.id.short)")
        }
        guard sha256(raw) == entry.id else {
            throw StoreError.corrupt("\(what): \(entry.kind) \(entry.id.short) does not hash to its id")
        }
        return entry
    }
}
