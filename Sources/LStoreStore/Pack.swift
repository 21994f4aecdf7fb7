import CLStoreSys
import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The fixed parts of pack files. See spec/store.md, "Packs".
enum PackFormat {
    static let magic: [UInt8] = Array("LSPK".utf8)
    static let trailerMagic: [UInt8] = Array("LSPT".utf8)
    static let version: UInt32 = 1
    static let headerSize = 16
    static let entryHeaderSize = 52
    static let trailerSize = 24
    /// No object is larger: bounds every allocation made while reading.
    static let maxObjectSize = 64 << 20
    /// A pack is closed and a new one begun beyond this size.
    static let targetPackSize = 1 << 30
}

/// Where an object lives: what an index records for it.
public struct PackLocation: Sendable, Equatable {
    public var kind: ObjectKind
    public var codec: Codec
    /// The level of `codec`; for a raw object, the level of `triedCodec`.
    public var level: UInt8
    public var rawLength: UInt32
    public var storedLength: UInt32
    /// Offset of the entry header in the pack.
    public var offset: UInt64
    /// For a raw object: the codec that was tried, at `level`, and did not make it smaller;
    /// `.none` when that is not said.
    public var triedCodec: Codec = .none
}

/// One object as it sits in a pack: header fields plus the stored (maybe compressed) bytes.
struct PackEntryHeader {
    var kind: ObjectKind
    var codec: Codec
    var level: UInt8
    /// See `PackLocation.triedCodec`.
    var triedCodec: Codec = .none
    var rawLength: UInt32
    var storedLength: UInt32
    var checksum: UInt64
    var id: Digest

    func encoded() -> [UInt8] {
        var out = ByteWriter(capacity: PackFormat.entryHeaderSize)
        out.u8(kind.rawValue)
        out.u8(codec.rawValue)
        out.u8(level)
        out.u8(triedCodec.rawValue)
        out.u32(rawLength)
        out.u32(storedLength)
        out.u64(checksum)
        out.digest(id)
        return out.bytes
    }

    init(kind: ObjectKind, codec: Codec, level: UInt8, triedCodec: Codec = .none, rawLength: UInt32,
         storedLength: UInt32, checksum: UInt64, id: Digest) {
        self.kind = kind
        self.codec = codec
        self.level = level
        self.triedCodec = triedCodec
        self.rawLength = rawLength
        self.storedLength = storedLength
        self.checksum = checksum
        self.id = id
    }

    init(decoding bytes: UnsafeRawBufferPointer, what: String) throws {
        var reader = ByteReader(bytes, what: what)
        guard let kind = ObjectKind(rawValue: try reader.u8()) else { throw reader.corrupt("unknown object kind") }
        guard let codec = Codec(rawValue: try reader.u8()) else { throw reader.corrupt("unknown codec") }
        self.kind = kind
        self.codec = codec
        level = try reader.u8()
        guard let tried = Codec(rawValue: try reader.u8()), codec == .none || tried == .none else {
            throw reader.corrupt("a tried codec on a compressed object, or an unknown one")
        }
        triedCodec = tried
        guard Self.levelIsValid(level, codec: codec, triedCodec: tried) else {
            throw reader.corrupt("level \(level) is not a \(codec == .none ? tried : codec) level")
        }
        rawLength = try reader.u32()
        storedLength = try reader.u32()
        checksum = try reader.u64()
        id = try reader.digest()
        guard rawLength <= PackFormat.maxObjectSize, storedLength <= PackFormat.maxObjectSize else {
            throw reader.corrupt("object of \(rawLength) bytes exceeds the limit")
        }
        guard codec != .none || rawLength == storedLength else { throw reader.corrupt("raw object with two lengths") }
    }
}

extension PackEntryHeader {
    /// Whether `level` fits: a level of `codec`, or for a raw object a level of the codec tried,
    /// or 0 when none is said.
    static func levelIsValid(_ level: UInt8, codec: Codec, triedCodec: Codec) -> Bool {
        if codec != .none { return triedCodec == .none && codec.levels.contains(Int(level)) }
        return triedCodec == .none ? level == 0 : triedCodec.levels.contains(Int(level))
    }
}

/// Writes one pack file in the store's `tmp/`, then publishes it with its index: pack data first,
/// fsynced, renamed into `packs/`; then the index, fsynced, renamed; then the directory fsynced.
/// Until `finish()` returns, nothing of it is visible.
final class PackWriter {
    /// The store it publishes into; nil for a detached pack, which stays at its path.
    private let layout: StoreLayout?
    private let tempPath: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let hasher = XXH3.Hasher128()
    private(set) var size: UInt64 = 0
    private(set) var entries: [(id: Digest, location: PackLocation)] = []
    private var finished = false

    convenience init(layout: StoreLayout) throws {
        try self.init(layout: layout, path: layout.temporaryPath("pack"))
    }

    /// A pack written at `path` and left there (`finishDetached`), outside any store.
    convenience init(detachedAt path: String) throws {
        try self.init(layout: nil, path: path)
    }

    private init(layout: StoreLayout?, path: String) throws {
        self.layout = layout
        tempPath = path
        fd = try systemCall("create", path: path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        buffer.reserveCapacity(1 << 20)
        var header = ByteWriter()
        header.append(PackFormat.magic)
        header.u32(PackFormat.version)
        header.u64(0)
        try write(header.bytes)
    }

    deinit {
        if !finished {
            close(fd)
            unlink(tempPath)
        }
    }

    var isEmpty: Bool { entries.isEmpty }

    /// Appends an object whose stored bytes are `stored` (compressed with `codec` at `level`, or raw;
    /// raw because `triedCodec` at `level` did not make it smaller, when that is not `.none`).
    func append(kind: ObjectKind, id: Digest, codec: Codec, level: UInt8, triedCodec: Codec = .none, rawLength: Int,
                stored: UnsafeRawBufferPointer) throws {
        let header = PackEntryHeader(kind: kind, codec: codec, level: level, triedCodec: triedCodec, rawLength: UInt32(rawLength),
                                     storedLength: UInt32(stored.count), checksum: XXH3.hash64(stored), id: id)
        entries.append((id, PackLocation(kind: kind, codec: codec, level: level, rawLength: UInt32(rawLength),
                                         storedLength: UInt32(stored.count), offset: size, triedCodec: triedCodec)))
        try write(header.encoded())
        try write(stored)
    }

    private func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        size += UInt64(bytes.count)
        if buffer.count + bytes.count > buffer.capacity { try flush() }
        if bytes.count >= buffer.capacity {
            try writeAll(fd, bytes, display: tempPath)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll(fd, $0, display: tempPath) }
        buffer.removeAll(keepingCapacity: true)
        startWriteback()
    }

    /// Bytes handed to the kernel, and how many of them it was asked to write back already.
    private var written: Int64 = 0
    private var writtenBack: Int64 = 0

    /// Asks the kernel to start writing what we wrote, 8 MiB at a time, so that the fsync at the
    /// end waits for little.
    private func startWriteback() {
        written = Int64(size) - Int64(buffer.count)
        if written - writtenBack >= 8 << 20 {
            _ = lstore_start_writeback(fd, writtenBack, written - writtenBack)
            writtenBack = written
        }
    }

    /// Seals the pack, publishes it and its index, and returns the pack's name.
    func finish() throws -> String {
        guard let layout else { preconditionFailure("finish() of a detached pack") }
        let digest = try seal()
        let name = hex128(digest)
        let packPath = layout.packPath(name, ext: "pack")
        try systemCall("rename", path: packPath) { rename(tempPath, packPath) }
        // The pack's name is durable before an index can name it.
        try syncDirectory(layout.packsDirectory)
        let index = PackIndex.encode(entries: entries, packChecksum: digest)
        try layout.writeFileAtomically(index, to: layout.packPath(name, ext: "idx"))
        return name
    }

    /// Seals a detached pack where it was written and returns its index (store.md §7.2).
    func finishDetached() throws -> [UInt8] {
        precondition(layout == nil, "finishDetached() of a store's pack")
        let digest = try seal()
        return PackIndex.encode(entries: entries, packChecksum: digest)
    }

    /// Writes the trailer, fsyncs and closes the file; returns the XXH3-128 of the pack.
    private func seal() throws -> (high: UInt64, low: UInt64) {
        var trailer = ByteWriter()
        trailer.append(PackFormat.trailerMagic)
        trailer.u32(UInt32(entries.count))
        let digest = hasher.finalize()
        trailer.u64(digest.high.bigEndian)
        trailer.u64(digest.low.bigEndian)
        try flush()
        try trailer.bytes.withUnsafeBytes { try writeAll(fd, $0, display: tempPath) }
        try systemCall("fsync", path: tempPath) { fsync(fd) }
        close(fd)
        finished = true
        return digest
    }
}

/// The 32 hex digits of an XXH3-128 digest in its canonical (big-endian) form.
func hex128(_ digest: (high: UInt64, low: UInt64)) -> String {
    func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
    return hex(digest.high) + hex(digest.low)
}

extension StoreLayout {
    /// Replaces the store file at `path` atomically and durably (`LStoreTree.writeFileAtomically`),
    /// through a temporary in `tmp/`, where gc finds what a crash left.
    func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
        try LStoreTree.writeFileAtomically(bytes, to: path, temporary: temporaryPath("file"))
    }
}
