import LStoreCompression
import LStoreTree

/// The id table: every distinct uid and gid once, as u32, in order of first use (inode order).
/// Format rule: inodes hold a u16 index into it, so an image holds at most 65536 distinct ids.
struct IdTableWriter {
    private var indexes: [UInt32: UInt16] = [:]
    private(set) var ids: [UInt32] = []

    mutating func index(of id: UInt32) throws -> UInt16 {
        if let known = indexes[id] { return known }
        guard ids.count < 65536 else {
            throw SquashFSError.invalidTree("more than 65536 distinct owner and group ids")
        }
        let index = UInt16(ids.count)
        indexes[id] = index
        ids.append(id)
        return index
    }

    func encoded() -> [UInt8] {
        var out = ByteWriter(capacity: ids.count * 4)
        for id in ids { out.u32(id) }
        return out.bytes
    }
}

/// The xattr table: key/value pairs in metadata blocks, and a lookup table with one entry per
/// distinct xattr set (the position of its first pair, the pair count, the pairs' size).
///
/// Format rules: a key is `u16 type` (0 user., 1 trusted., 2 security.; bit 8 set when the value
/// is out of line), `u16 name size`, the name without its prefix; a value is `u32 size` and the
/// bytes, or, out of line, size 8 and a u64 reference (block << 16 | offset, relative to the pairs'
/// first block) to a value written earlier. Inodes with identical sets share one entry; a value
/// longer than 8 bytes that was already written is referenced, not written again.
final class XattrTableWriter {
    let pairs: MetadataWriter
    private var idsBySet: [[Xattr]: UInt32] = [:]
    private var lookup = ByteWriter()
    private(set) var count: UInt32 = 0
    private var valueReferences: [[UInt8]: UInt64] = [:]

    init(compressor: Compressor) {
        pairs = MetadataWriter(compressor: compressor)
    }

    /// The index of `xattrs` (non-empty, each in a known namespace with a non-empty name after it).
    func id(for xattrs: [Xattr]) throws -> UInt32 {
        if let known = idsBySet[xattrs] { return known }
        let start = pairs.position
        let before = pairs.streamLength
        for xattr in xattrs {
            guard let (prefix, suffix) = Self.split(xattr.name) else {
                preconditionFailure("xattrs outside the known namespaces are filtered before")
            }
            var key = ByteWriter(capacity: 4 + suffix.count + 12)
            let reference = xattr.value.count > 8 ? valueReferences[xattr.value] : nil
            key.u16(UInt16(prefix) | (reference == nil ? 0 : Format.xattrOutOfLine))
            key.u16(UInt16(suffix.count))
            key.append(suffix)
            if let reference {
                key.u32(8)
                key.u64(reference)
                try pairs.append(key.bytes)
            } else {
                try pairs.append(key.bytes)
                let valuePosition = pairs.position
                var value = ByteWriter(capacity: 4 + xattr.value.count)
                value.u32(UInt32(xattr.value.count))
                value.append(xattr.value)
                try pairs.append(value.bytes)
                if xattr.value.count > 8 { valueReferences[xattr.value] = valuePosition.raw }
            }
        }
        lookup.u64(start.raw)
        lookup.u32(UInt32(xattrs.count))
        lookup.u32(UInt32(pairs.streamLength - before))
        let id = count
        count += 1
        idsBySet[xattrs] = id
        return id
    }

    /// The 16-byte lookup entries.
    var lookupEntries: [UInt8] { lookup.bytes }

    /// The prefix id and the rest of the name, or nil when squashfs cannot hold the name.
    static func split(_ name: [UInt8]) -> (Int, ArraySlice<UInt8>)? {
        for (id, prefix) in Format.xattrPrefixes.enumerated() where name.count > prefix.count && name.starts(with: prefix) {
            return (id, name[prefix.count...])
        }
        return nil
    }
}
