import CArchive
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Writes a tree as a pax tarball with xattrs (`SCHILY.xattr.*`), nanosecond mtimes, numeric owners,
/// devices and hardlinks, through libarchive. Compressed when the name ends in `.gz`, `.zst`, `.xz`.
public struct TarWriter {
    /// Delivers a regular file's data, in order, holes as zeros, through `emit`.
    public typealias Content = (_ file: RegularFile, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

    public var progress: ((_ entries: Int) -> Void)?

    public init(progress: ((_ entries: Int) -> Void)? = nil) {
        self.progress = progress
    }

    /// Writes the tarball to `path`, compressed as the name `named` (default: `path`) says.
    /// Returns the paths left out: sockets, which tar cannot hold (GNU tar leaves them out too).
    @discardableResult
    public func write(_ root: Node, to path: String, named: String? = nil, content: Content) throws -> [[UInt8]] {
        let name = named ?? path
        guard let archive = archive_write_new() else { throw TarError(path: path, message: "cannot start libarchive") }
        defer { archive_write_free(archive) }
        func check(_ status: Int32) throws {
            if status < ARCHIVE_WARN { throw TarError(path: path, message: TarReader.message(archive)) }
        }
        try check(archive_write_set_format_pax(archive))
        if name.hasSuffix(".gz") || name.hasSuffix(".tgz") {
            try check(archive_write_add_filter_gzip(archive))
        } else if name.hasSuffix(".zst") {
            try check(archive_write_add_filter_zstd(archive))
        } else if name.hasSuffix(".xz") {
            try check(archive_write_add_filter_xz(archive))
        }
        try check(archive_write_set_bytes_in_last_block(archive, 1))
        try check(archive_write_open_filename(archive, path))
        guard let entry = archive_entry_new() else { throw TarError(path: path, message: "out of memory") }
        defer { archive_entry_free(entry) }
        var count = 0
        var skipped: [[UInt8]] = []
        try root.walk { relative, node in
            count += 1
            if node.metadata.kind == .socket {
                skipped.append(relative)
                return
            }
            if count & 1023 == 0 { progress?(count) }
            archive_entry_clear(entry)
            let name = relative.isEmpty ? Array("./".utf8) : Array("./".utf8) + relative
            name.withCString { archive_entry_copy_pathname(entry, $0) }
            let meta = node.metadata
            if case .hardlink(let target) = node.content {
                (Array("./".utf8) + target).withCString { archive_entry_copy_hardlink(entry, $0) }
                archive_entry_set_filetype(entry, meta.kind.formatBits)
                archive_entry_set_size(entry, 0)
                try check(archive_write_header(archive, entry))
                return
            }
            archive_entry_set_filetype(entry, meta.kind.formatBits)
            archive_entry_set_perm(entry, mode_t(meta.permissions))
            archive_entry_set_uid(entry, Int64(meta.uid))
            archive_entry_set_gid(entry, Int64(meta.gid))
            let (seconds, nanoseconds) = libarchiveTime(meta.mtime)
            archive_entry_set_mtime(entry, seconds, nanoseconds)
            for xattr in meta.xattrs {
                // ACLs go as tar ACL records, which every tar reads.
                if let type = PosixACL.type(of: xattr.name), PosixACL.add(xattr.value, type: type, to: entry) { continue }
                xattr.name.withCString { cName in
                    xattr.value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, cName, $0.baseAddress, $0.count) }
                }
            }
            // With an access ACL, tar's mode holds the owning group's permissions where the file's
            // mode holds the mask.
            if let acl = meta.xattrs.first(where: { $0.name == PosixACL.accessName }),
               let group = PosixACL.groupObjectPermissions(acl.value) {
                archive_entry_set_perm(entry, mode_t(meta.permissions & ~0o070 | group << 3))
            }
            switch node.content {
            case .regular(let file):
                archive_entry_set_size(entry, Int64(file.size))
                try check(archive_write_header(archive, entry))
                try content(file) { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let written = archive_write_data(archive, bytes.baseAddress! + offset, bytes.count - offset)
                        if written < 0 { throw TarError(path: path, message: TarReader.message(archive)) }
                        offset += written
                    }
                }
                return
            case .symlink(let target):
                target.withCString { archive_entry_copy_symlink(entry, $0) }
            case .device(let major, let minor):
                archive_entry_set_rdevmajor(entry, dev_t(major))
                archive_entry_set_rdevminor(entry, dev_t(minor))
            case .directory, .none, .hardlink:
                break
            }
            archive_entry_set_size(entry, 0)
            try check(archive_write_header(archive, entry))
        }
        try check(archive_write_close(archive))
        return skipped
    }
}

/// libarchive keeps a time before 1970 as sign and magnitude (-0.5 s after -86400 is "-86400.5"),
/// where `Timestamp` counts nanoseconds forward from a floor second, as `struct timespec` does.
func libarchiveTime(_ time: Timestamp) -> (Int, Int) {
    time.seconds < 0 && time.nanoseconds > 0
        ? (Int(time.seconds) + 1, 1_000_000_000 - Int(time.nanoseconds))
        : (Int(time.seconds), Int(time.nanoseconds))
}

func timestamp(libarchiveSeconds seconds: Int, nanoseconds: Int) -> Timestamp {
    let ns = (0..<1_000_000_000).contains(nanoseconds) ? nanoseconds : 0
    return seconds < 0 && ns > 0
        ? Timestamp(seconds: Int64(seconds) - 1, nanoseconds: UInt32(1_000_000_000 - ns))
        : Timestamp(seconds: Int64(seconds), nanoseconds: UInt32(ns))
}
