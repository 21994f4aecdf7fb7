import CArchive
import LStoreTree

/// POSIX ACLs between the kernel's xattr form (`system.posix_acl_access`, `system.posix_acl_default`:
/// a u32 version 2, then per entry u16 tag, u16 permissions, u32 id, little-endian) and libarchive's
/// ACL entries, which tar writes as `SCHILY.acl.*` (what GNU tar and bsdtar read).
enum PosixACL {
    static let accessName = Array("system.posix_acl_access".utf8)
    static let defaultName = Array("system.posix_acl_default".utf8)

    /// (kernel tag, libarchive tag)
    private static let tags: [(UInt16, Int32)] = [
        (0x01, ARCHIVE_ENTRY_ACL_USER_OBJ), (0x02, ARCHIVE_ENTRY_ACL_USER), (0x04, ARCHIVE_ENTRY_ACL_GROUP_OBJ),
        (0x08, ARCHIVE_ENTRY_ACL_GROUP), (0x10, ARCHIVE_ENTRY_ACL_MASK), (0x20, ARCHIVE_ENTRY_ACL_OTHER),
    ]

    static func type(of name: [UInt8]) -> Int32? {
        name == accessName ? ARCHIVE_ENTRY_ACL_TYPE_ACCESS : name == defaultName ? ARCHIVE_ENTRY_ACL_TYPE_DEFAULT : nil
    }

    /// Adds the ACL in `value` (kernel form) to `entry` as libarchive ACL entries. False when the
    /// value does not parse (the caller then keeps it as a plain xattr).
    ///
    /// libarchive, like tar, keeps an access ACL's owner, owning-group and other entries in the
    /// mode; with a mask the file's own mode holds the mask in its group bits, so the caller sets
    /// the entry's mode with `groupBitsForTar` after this.
    static func add(_ value: [UInt8], type: Int32, to entry: OpaquePointer) -> Bool {
        guard value.count >= 4, (value.count - 4) % 8 == 0,
              value.withUnsafeBytes({ UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }) == 2 else { return false }
        var parsed: [(tag: Int32, perm: Int32, id: Int32)] = []
        for offset in stride(from: 4, to: value.count, by: 8) {
            let (tag, perm, id) = value.withUnsafeBytes { raw in
                (UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)),
                 UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)),
                 UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)))
            }
            guard let archiveTag = tags.first(where: { $0.0 == tag })?.1, perm <= 7 else { return false }
            parsed.append((archiveTag, Int32(perm), Int32(bitPattern: id)))
        }
        for acl in parsed {
            let special = [ARCHIVE_ENTRY_ACL_USER_OBJ, ARCHIVE_ENTRY_ACL_GROUP_OBJ, ARCHIVE_ENTRY_ACL_OTHER].contains(acl.tag)
            if type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS && special { continue }
            let qualifier = acl.tag == ARCHIVE_ENTRY_ACL_USER || acl.tag == ARCHIVE_ENTRY_ACL_GROUP ? acl.id : -1
            archive_entry_acl_add_entry(entry, type, acl.perm, acl.tag, qualifier, nil)
        }
        return true
    }

    /// The permissions of the owning-group entry of an access ACL (kernel form), which tar keeps in
    /// the mode's group bits.
    static func groupObjectPermissions(_ value: [UInt8]) -> UInt16? {
        permissions(of: 0x04, in: value)
    }

    /// The permissions of the mask entry, which the file's mode holds in its group bits.
    static func maskPermissions(_ value: [UInt8]) -> UInt16? {
        permissions(of: 0x10, in: value)
    }

    private static func permissions(of tag: UInt16, in value: [UInt8]) -> UInt16? {
        guard value.count >= 4, (value.count - 4) % 8 == 0 else { return nil }
        for offset in stride(from: 4, to: value.count, by: 8) {
            let (entryTag, perm) = value.withUnsafeBytes { raw in
                (UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)),
                 UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)))
            }
            if entryTag == tag { return perm & 7 }
        }
        return nil
    }

    /// The ACL of `type` that libarchive read for `entry`, in kernel form; nil when it has none
    /// beyond what the mode says.
    static func read(_ entry: OpaquePointer, type: Int32) -> [UInt8]? {
        guard archive_entry_acl_reset(entry, type) > 0 else { return nil }
        var items: [(tag: UInt16, perm: UInt16, id: UInt32)] = []
        var entryType: Int32 = 0, permset: Int32 = 0, tag: Int32 = 0, qualifier: Int32 = 0
        var name: UnsafePointer<CChar>?
        while archive_entry_acl_next(entry, type, &entryType, &permset, &tag, &qualifier, &name) == ARCHIVE_OK {
            guard let kernelTag = tags.first(where: { $0.1 == tag })?.0 else { continue }
            let id = kernelTag == 0x02 || kernelTag == 0x08 ? UInt32(bitPattern: qualifier) : UInt32.max
            items.append((kernelTag, UInt16(permset & 7), id))
        }
        // An access ACL of only the three mode entries is just the mode: no xattr.
        if type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS && !items.contains(where: { [0x02, 0x08, 0x10].contains($0.tag) }) { return nil }
        guard !items.isEmpty else { return nil }
        items.sort { ($0.tag, $0.id) < ($1.tag, $1.id) }
        var out: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        append(UInt32(2))
        for item in items {
            append(item.tag)
            append(item.perm)
            append(item.id)
        }
        return out
    }
}
