import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// A pack's index: the ids it holds, sorted, with a fan-out table, mapped into memory and searched
/// in place. See spec/store.md, "Indexes".
final class PackIndex: @unchecked Sendable {
    static let magic: [UInt8] = Array("LSIX".utf8)
    static let version: UInt32 = 1
    static let headerSize = 32
    static let fanoutSize = 256 * 4
    static let entrySize = 56
    static let trailerSize = 16

    let name: String
    let count: Int
    let packChecksum: (high: UInt64, low: UInt64)
    private let base: UnsafeRawPointer
    private let length: Int

    static func encode(entries unsorted: [(id: Digest, location: PackLocation)],
                       packChecksum: (high: UInt64, low: UInt64)) -> [UInt8] {
        let entries = unsorted.sorted {
            $0.id != $1.id ? $0.id < $1.id : $0.location.kind.rawValue < $1.location.kind.rawValue
        }
        var out = ByteWriter(capacity: headerSize + fanoutSize + entries.count * entrySize + trailerSize)
        out.append(magic)
        out.u32(version)
        out.u32(UInt32(entries.count))
        out.u32(0)
        out.u64(packChecksum.high.bigEndian)
        out.u64(packChecksum.low.bigEndian)
        var fanout = [UInt32](repeating: 0, count: 256)
        for entry in entries { fanout[Int(entry.id.firstByte)] += 1 }
        var running: UInt32 = 0
        for i in 0..<256 {
            running += fanout[i]
            out.u32(running)
        }
        for (id, location) in entries {
            out.digest(id)
            out.u8(location.kind.rawValue)
            out.u8(location.codec.rawValue)
            out.u8(location.level)
            out.u8(location.triedCodec.rawValue)
            out.u32(location.rawLength)
            out.u64(location.offset)
            out.u32(location.storedLength)
            out.u32(0)
        }
        let checksum = out.bytes.withUnsafeBytes { XXH3.hash128($0) }
        out.u64(checksum.high.bigEndian)
        out.u64(checksum.low.bigEndian)
        return out.bytes
    }

    /// Maps the index at `path` and checks its structure (not its checksum: `verifyChecksum`).
    init(path: String, name: String) throws {
        self.name = name
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var st = stat()
        try systemCall("stat", path: path) { fstat(fd, &st) }
        length = Int(st.st_size)
        guard length >= Self.headerSize + Self.fanoutSize + Self.trailerSize else {
            throw StoreError.corrupt("index \(name): too short")
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FileError(path: path, operation: "mmap", errno: errno)
        }
        base = UnsafeRawPointer(mapped)
        let bytes = UnsafeRawBufferPointer(start: base, count: length)
        var reader = ByteReader(bytes, what: "index \(name)")
        do {
            guard Array(try reader.take(4)) == Self.magic else { throw reader.corrupt("bad magic") }
            guard try reader.u32() == Self.version else { throw reader.corrupt("unknown version") }
            count = Int(try reader.u32())
            _ = try reader.u32()
            packChecksum = (UInt64(bigEndian: try reader.u64()), UInt64(bigEndian: try reader.u64()))
            guard length == Self.headerSize + Self.fanoutSize + count * Self.entrySize + Self.trailerSize else {
                throw reader.corrupt("size does not match \(count) entries")
            }
            guard UInt32(littleEndian: base.loadUnaligned(fromByteOffset: Self.headerSize + 255 * 4, as: UInt32.self)) == count else {
                throw reader.corrupt("fan-out table does not match the entry count")
            }
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), length)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }

    /// Recomputes the trailing checksum.
    func verifyChecksum() -> Bool {
        let body = UnsafeRawBufferPointer(start: base, count: length - Self.trailerSize)
        let digest = XXH3.hash128(body)
        let high = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: length - 16, as: UInt64.self))
        let low = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self))
        return digest.high == high && digest.low == low
    }

    private func fanout(_ byte: Int) -> Int {
        guard byte >= 0 else { return 0 }
        return Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: Self.headerSize + byte * 4, as: UInt32.self)))
    }

    private func entryPointer(_ index: Int) -> UnsafeRawPointer {
        base + Self.headerSize + Self.fanoutSize + index * Self.entrySize
    }

    func id(at index: Int) -> Digest {
        Digest(bytes: UnsafeRawBufferPointer(start: entryPointer(index), count: 32))
    }

    /// The entry at `index`; nil when its fields are out of range (a corrupt index).
    func location(at index: Int) -> PackLocation? {
        let p = entryPointer(index)
        guard let kind = ObjectKind(rawValue: p.load(fromByteOffset: 32, as: UInt8.self)),
              let codec = Codec(rawValue: p.load(fromByteOffset: 33, as: UInt8.self)),
              let tried = Codec(rawValue: p.load(fromByteOffset: 35, as: UInt8.self)),
              PackEntryHeader.levelIsValid(p.load(fromByteOffset: 34, as: UInt8.self), codec: codec, triedCodec: tried) else { return nil }
        return PackLocation(
            kind: kind, codec: codec, level: p.load(fromByteOffset: 34, as: UInt8.self),
            rawLength: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt32.self)),
            storedLength: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self)),
            offset: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 40, as: UInt64.self)),
            triedCodec: tried)
    }

    /// Finds the object `target` of `kind`.
    func lookup(_ target: Digest, kind: ObjectKind) -> PackLocation? {
        let first = Int(target.firstByte)
        var low = fanout(first - 1), high = min(fanout(first), count)
        while low < high {
            let mid = (low + high) / 2
            let candidate = id(at: mid)
            if candidate < target {
                low = mid + 1
            } else if target < candidate {
                high = mid
            } else {
                // Equal ids of several kinds sit together, ordered by kind.
                var i = mid
                while i > 0 && id(at: i - 1) == target { i -= 1 }
                while i < count && id(at: i) == target {
                    if let location = location(at: i), location.kind == kind { return location }
                    i += 1
                }
                return nil
            }
        }
        return nil
    }
}
