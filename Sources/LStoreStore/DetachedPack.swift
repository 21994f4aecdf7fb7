import LStoreCompression
import LStoreTree

/// An object named by its kind and id: what a walk visits and a transfer asks for.
public struct ObjectName: Hashable, Sendable {
    public var kind: ObjectKind
    public var id: Digest

    public init(kind: ObjectKind, id: Digest) {
        self.kind = kind
        self.id = id
    }
}

/// Packs outside a store: some of its objects in the pack format (spec/store.md §7.1), with the
/// index that locates them (§7.2), as a registry holds them beside an image (spec/registry.md §6).
public enum DetachedPack {
    /// Writes `names`, in this order, from `store` as a pack file at `path` (which must not
    /// exist), each entry as the store holds it but for a raw object's tried codec, which is left
    /// out (a receiver could not check it). Returns the pack's index. The same objects stored the
    /// same way give the same bytes.
    public static func write(_ names: [ObjectName], from store: Store, to path: String) throws -> [UInt8] {
        let writer = try PackWriter(detachedAt: path)
        for name in names {
            let (location, stored) = try store.readStoredBytes(name.id, kind: name.kind)
            let raw = location.codec == .none
            try stored.withUnsafeBytes {
                try writer.append(kind: name.kind, id: name.id, codec: location.codec, level: raw ? 0 : location.level,
                                  rawLength: Int(location.rawLength), stored: $0)
            }
        }
        return try writer.finishDetached()
    }

    /// The entries of a pack index held in memory, checked whole: magic, version, sizes, the
    /// fan-out table, the order of the ids, each entry's fields, and the trailing checksum.
    /// `what` names the index in errors.
    public static func decodeIndex(_ bytes: [UInt8], what: String) throws -> [(id: Digest, location: PackLocation)] {
        try bytes.withUnsafeBytes { buffer -> [(id: Digest, location: PackLocation)] in
            let minimum = PackIndex.headerSize + PackIndex.fanoutSize + PackIndex.trailerSize
            guard buffer.count >= minimum else { throw StoreError.corrupt("\(what): too short for an index") }
            let body = UnsafeRawBufferPointer(rebasing: buffer[0..<(buffer.count - PackIndex.trailerSize)])
            let digest = XXH3.hash128(body)
            var trailer = ByteReader(UnsafeRawBufferPointer(rebasing: buffer[body.count...]), what: what)
            guard UInt64(bigEndian: try trailer.u64()) == digest.high, UInt64(bigEndian: try trailer.u64()) == digest.low else {
                throw StoreError.corrupt("\(what): its checksum does not match")
            }
            var reader = ByteReader(body, what: what)
            guard Array(try reader.take(4)) == PackIndex.magic else { throw reader.corrupt("not an index (bad magic)") }
            guard try reader.u32() == PackIndex.version else { throw reader.corrupt("unknown index version") }
            let count = Int(try reader.u32())
            _ = try reader.u32()
            _ = try reader.take(16)
            guard buffer.count == minimum + count * PackIndex.entrySize else {
                throw reader.corrupt("size does not match \(count) entries")
            }
            var fanout: [Int] = []
            for _ in 0..<256 { fanout.append(Int(try reader.u32())) }
            var entries: [(id: Digest, location: PackLocation)] = []
            entries.reserveCapacity(count)
            var counts = [Int](repeating: 0, count: 256)
            for _ in 0..<count {
                let id = try reader.digest()
                guard let kind = ObjectKind(rawValue: try reader.u8()), let codec = Codec(rawValue: try reader.u8()) else {
                    throw reader.corrupt("an entry of unknown kind or codec")
                }
                let level = try reader.u8()
                guard let tried = Codec(rawValue: try reader.u8()), codec == .none || tried == .none,
                      PackEntryHeader.levelIsValid(level, codec: codec, triedCodec: tried) else {
                    throw reader.corrupt("entry \(id.short): a level or tried codec out of range")
                }
                let rawLength = try reader.u32()
                let offset = try reader.u64()
                let storedLength = try reader.u32()
                _ = try reader.u32()
                guard rawLength <= PackFormat.maxObjectSize, storedLength <= PackFormat.maxObjectSize,
                      codec != .none || rawLength == storedLength, offset >= 16 else {
                    throw reader.corrupt("entry \(id.short): lengths or offset out of range")
                }
                if let last = entries.last, !(last.id < id || (last.id == id && last.location.kind.rawValue < kind.rawValue)) {
                    throw reader.corrupt("entries not sorted by id")
                }
                counts[Int(id.firstByte)] += 1
                entries.append((id, PackLocation(kind: kind, codec: codec, level: level, rawLength: rawLength,
                                                 storedLength: storedLength, offset: offset, triedCodec: tried)))
            }
            var running = 0
            for byte in 0..<256 {
                running += counts[byte]
                guard fanout[byte] == running else { throw StoreError.corrupt("\(what): the fan-out table does not match its entries") }
            }
            return entries
        }
    }
}
