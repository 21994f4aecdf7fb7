import LStoreTree

/// One entry of a tree object. See spec/store.md, "Tree objects".
public struct TreeEntry: Equatable, Sendable {
    public enum Payload: Equatable, Sendable {
        case regular(size: UInt64, file: Digest)
        case directory(tree: Digest)
        case symlink(target: [UInt8])
        case device(major: UInt32, minor: UInt32)
        /// FIFOs and sockets.
        case none
        /// A further name of the hardlink set whose first member (in tree order) is at `path`.
        case hardlink(path: [UInt8])
    }

    public var name: [UInt8]
    /// For a hardlink or a directory, only `kind` is meaningful: a hardlink set's metadata is its
    /// first member's, a directory's is in its own tree object.
    public var metadata: Metadata
    public var payload: Payload

    public init(name: [UInt8], metadata: Metadata, payload: Payload) {
        self.name = name
        self.metadata = metadata
        self.payload = payload
    }
}

/// A directory: its own metadata and its entries sorted by name bytes. An unchanged directory
/// encodes to the same bytes and so keeps its id. See spec/store.md, "Tree objects".
public struct TreeObject: Equatable, Sendable {
    public static let version: UInt8 = 1

    /// The directory's own metadata (kind `.directory`).
    public var metadata: Metadata
    public var entries: [TreeEntry]

    public init(metadata: Metadata, entries: [TreeEntry]) {
        self.metadata = metadata
        self.entries = entries
    }

    private enum Flag {
        static let hardlink: UInt8 = 1
        static let xattrs: UInt8 = 2
    }

    public func encoded() -> [UInt8] {
        var out = ByteWriter(capacity: 64 + entries.count * 64)
        out.u8(Self.version)
        out.u8(0)
        out.u16(0)
        Self.encodeAttributes(metadata, into: &out)
        Self.encodeXattrs(metadata.xattrs, into: &out)
        out.u32(UInt32(entries.count))
        for entry in entries {
            let meta = entry.metadata
            out.u8(UInt8(entry.name.count))
            out.append(entry.name)
            out.u8(meta.kind.rawValue)
            switch entry.payload {
            case .hardlink(let path):
                out.u8(Flag.hardlink)
                out.u16(UInt16(path.count))
                out.append(path)
                continue
            case .directory(let tree):
                out.u8(0)
                out.digest(tree)
                continue
            default:
                break
            }
            out.u8(meta.xattrs.isEmpty ? 0 : Flag.xattrs)
            Self.encodeAttributes(meta, into: &out)
            switch entry.payload {
            case .regular(let size, let file):
                out.u64(size)
                out.digest(file)
            case .symlink(let target):
                out.u16(UInt16(target.count))
                out.append(target)
            case .device(let major, let minor):
                out.u32(major)
                out.u32(minor)
            case .none, .hardlink, .directory:
                break
            }
            if !meta.xattrs.isEmpty { Self.encodeXattrs(meta.xattrs, into: &out) }
        }
        return out.bytes
    }

    private static func encodeAttributes(_ meta: Metadata, into out: inout ByteWriter) {
        out.u16(meta.permissions)
        out.u32(meta.uid)
        out.u32(meta.gid)
        out.i64(meta.mtime.seconds)
        out.u32(meta.mtime.nanoseconds)
    }

    private static func encodeXattrs(_ xattrs: [Xattr], into out: inout ByteWriter) {
        out.u16(UInt16(xattrs.count))
        for xattr in xattrs {
            out.u8(UInt8(xattr.name.count))
            out.append(xattr.name)
            out.u32(UInt32(xattr.value.count))
            out.append(xattr.value)
        }
    }

    /// Decodes and validates a tree object: every rule of the spec is checked, so what comes back
    /// can be written to disk safely (names are single valid components, lengths are in bounds).
    public init(decoding bytes: UnsafeRawBufferPointer, id: Digest) throws {
        var reader = ByteReader(bytes, what: "tree \(id.short)")
        guard try reader.u8() == Self.version else { throw reader.corrupt("unknown version") }
        guard try reader.u8() == 0, try reader.u16() == 0 else { throw reader.corrupt("reserved bits set") }
        var own = try Self.decodeAttributes(kind: .directory, &reader)
        own.xattrs = try Self.decodeXattrs(&reader, allowEmpty: true)
        metadata = own
        let count = Int(try reader.u32())
        // The smallest entry is 6 bytes (a one-byte name, kind, flags, a one-byte hardlink path).
        guard count <= reader.remaining / 6 else { throw reader.corrupt("entry count \(count) too large") }
        var entries: [TreeEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let name = try reader.array(Int(try reader.u8()))
            guard isValidName(name) else { throw reader.corrupt("invalid name \(name.printable)") }
            if let previous = entries.last, !previous.name.lexicographicallyPrecedes(name) {
                throw reader.corrupt("entries not sorted at \(name.printable)")
            }
            guard let kind = EntryKind(rawValue: try reader.u8()) else { throw reader.corrupt("unknown kind") }
            let flags = try reader.u8()
            if flags == Flag.hardlink {
                guard kind != .directory else { throw reader.corrupt("hardlink to a directory") }
                let length = Int(try reader.u16())
                let path = try reader.array(length)
                let components = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
                guard (1...Limits.pathLength).contains(length), components.allSatisfy({ isValidName($0) }) else {
                    throw reader.corrupt("invalid hardlink path \(path.printable)")
                }
                entries.append(TreeEntry(name: name, metadata: Metadata(kind: kind, permissions: 0),
                                         payload: .hardlink(path: path)))
                continue
            }
            if kind == .directory {
                guard flags == 0 else { throw reader.corrupt("flags on a directory entry") }
                entries.append(TreeEntry(name: name, metadata: Metadata(kind: .directory, permissions: 0),
                                         payload: .directory(tree: try reader.digest())))
                continue
            }
            guard flags & ~Flag.xattrs == 0 else { throw reader.corrupt("unknown flags \(flags)") }
            var meta = try Self.decodeAttributes(kind: kind, &reader)
            let payload: TreeEntry.Payload
            switch kind {
            case .regular:
                payload = .regular(size: try reader.u64(), file: try reader.digest())
            case .symlink:
                let length = Int(try reader.u16())
                guard (1...Limits.symlinkTargetLength).contains(length) else { throw reader.corrupt("symlink target length") }
                let target = try reader.array(length)
                guard !target.contains(0) else { throw reader.corrupt("NUL in symlink target") }
                payload = .symlink(target: target)
            case .characterDevice, .blockDevice:
                payload = .device(major: try reader.u32(), minor: try reader.u32())
            case .fifo, .socket, .directory:
                payload = .none
            }
            if flags & Flag.xattrs != 0 { meta.xattrs = try Self.decodeXattrs(&reader, allowEmpty: false) }
            entries.append(TreeEntry(name: name, metadata: meta, payload: payload))
        }
        guard reader.isAtEnd else { throw reader.corrupt("trailing bytes") }
        self.entries = entries
    }

    private static func decodeAttributes(kind: EntryKind, _ reader: inout ByteReader) throws -> Metadata {
        let permissions = try reader.u16()
        guard permissions <= 0o7777 else { throw reader.corrupt("mode bits out of range") }
        let uid = try reader.u32(), gid = try reader.u32()
        let seconds = try reader.i64(), nanoseconds = try reader.u32()
        guard nanoseconds < 1_000_000_000 else { throw reader.corrupt("nanoseconds out of range") }
        return Metadata(kind: kind, permissions: permissions, uid: uid, gid: gid,
                        mtime: Timestamp(seconds: seconds, nanoseconds: nanoseconds))
    }

    private static func decodeXattrs(_ reader: inout ByteReader, allowEmpty: Bool) throws -> [Xattr] {
        let count = Int(try reader.u16())
        guard allowEmpty || count > 0 else { throw reader.corrupt("empty xattr list") }
        var xattrs: [Xattr] = []
        for _ in 0..<count {
            let name = try reader.array(Int(try reader.u8()))
            guard !name.isEmpty, !name.contains(0) else { throw reader.corrupt("invalid xattr name") }
            if let previous = xattrs.last, !previous.name.lexicographicallyPrecedes(name) {
                throw reader.corrupt("xattrs not sorted or not unique")
            }
            let length = Int(try reader.u32())
            guard length <= Limits.xattrValueLength else { throw reader.corrupt("xattr value too large") }
            xattrs.append(Xattr(name: name, value: try reader.array(length)))
        }
        return xattrs
    }
}
