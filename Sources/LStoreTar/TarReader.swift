import CArchive
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Reads tarballs (`.tar`, `.tar.gz`, `.tar.zst`, `.tar.xz`, `.tar.bz2`; ustar, pax and GNU) into a
/// tree, through libarchive. Every entry's path is checked: absolute paths and `..` are refused,
/// never resolved. Regular file data streams through `ingest` as it is read.
public struct TarReader {
    /// Stores `size` bytes that `read` delivers and returns the file object id.
    public typealias Ingest = (_ size: UInt64, _ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Digest

    public var progress: ((_ entries: Int) -> Void)?

    public init(progress: ((_ entries: Int) -> Void)? = nil) {
        self.progress = progress
    }

    /// Reads the uncompressed tar stream that `stream` delivers (filling as much of its buffer as
    /// it can, 0 at the end), calling `body` with each entry in archive order. `display` names the
    /// stream in errors. Returns the number of entries. Nothing else is done with them: the caller
    /// places them (an image layer applies whiteouts, for one).
    public func readEntries(stream: @escaping (UnsafeMutableRawBufferPointer) throws -> Int, display: String,
                            ingest: Ingest, body: (TarEntry) throws -> Void) throws -> Int {
        guard let archive = archive_read_new() else { throw TarError(path: display, message: "cannot start libarchive") }
        defer { archive_read_free(archive) }
        archive_read_support_format_tar(archive)
        archive_read_support_format_gnutar(archive)
        let source = StreamSource(stream)
        let context = Unmanaged.passRetained(source)
        defer { context.release() }
        let read: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int = { _, data, out in
            let source = Unmanaged<StreamSource>.fromOpaque(data!).takeUnretainedValue()
            do {
                let got = try source.stream(source.buffer)
                out?.pointee = UnsafeRawPointer(source.buffer.baseAddress)
                return got
            } catch {
                source.failure = error
                return -1
            }
        }
        guard archive_read_open(archive, context.toOpaque(), nil, read, nil) == ARCHIVE_OK else {
            if let failure = source.failure { throw failure }
            throw TarError(path: display, message: Self.message(archive))
        }
        var count = 0
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { break }
            if let failure = source.failure { throw failure }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
                throw TarError(path: display, message: Self.message(archive))
            }
            count += 1
            if count & 255 == 0 { progress?(count) }
            let item: TarEntry
            do {
                item = try Self.entry(entry, archive: archive, tarball: display, ingest: ingest)
            } catch {
                if let failure = source.failure { throw failure }
                throw error
            }
            try body(item)
        }
        return count
    }

    /// The tree of the tarball at `path`, every directory sorted and hardlinks in store form.
    public func read(_ path: String, ingest: Ingest) throws -> (root: Node, entries: Int) {
        guard let archive = archive_read_new() else { throw TarError(path: path, message: "cannot start libarchive") }
        defer { archive_read_free(archive) }
        archive_read_support_filter_all(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_gnutar(archive)
        guard archive_read_open_filename(archive, path, 1 << 20) == ARCHIVE_OK else {
            throw TarError(path: path, message: Self.message(archive))
        }
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755),
                        content: .directory(Directory()))
        var count = 0
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { break }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
                throw TarError(path: path, message: Self.message(archive))
            }
            count += 1
            if count & 255 == 0 { progress?(count) }
            try add(entry, archive: archive, to: root, tarball: path, ingest: ingest)
        }
        root.sortAll()
        do {
            try root.normalizeHardlinks()
        } catch {
            throw TarError(path: path, message: "\(error)")
        }
        return (root, count)
    }

    private func add(_ entry: OpaquePointer, archive: OpaquePointer, to root: Node, tarball: String, ingest: Ingest) throws {
        let item = try Self.entry(entry, archive: archive, tarball: tarball, ingest: ingest)
        let shown = item.path.printable
        func refuse(_ why: String) -> TarError { TarError(path: tarball, message: "entry '\(shown)': \(why)") }
        let components = item.components
        var metadata = item.metadata
        let content = item.content
        if case .hardlink(let targetPath) = content {
            guard let node = root.lookup(targetPath), node.directory == nil else {
                throw refuse("hardlink to '\(targetPath.printable)', which is not an earlier file")
            }
            metadata.kind = node.metadata.kind
        }

        guard let name = components.last else {
            // The archive's root (`./`): its metadata is the tree's root's.
            guard metadata.kind == .directory else { throw refuse("the root is not a directory") }
            root.metadata = metadata
            return
        }
        var parent = root
        for component in components.dropLast() {
            if let existing = parent.directory?.child(named: component) {
                // A symlink (or file) in the middle of a path: extracting would write through it.
                guard existing.directory != nil else {
                    throw refuse("'\(component.printable)' on its path is a \(existing.metadata.kind), not a directory")
                }
                parent = existing
                continue
            }
            // A parent the archive does not list (or listed as something else): a plain directory.
            let directory = Node(name: component, metadata: Metadata(kind: .directory, permissions: 0o755),
                                 content: .directory(Directory()))
            parent.directory!.upsert(directory)
            parent = directory
        }
        if case .directory = content, let existing = parent.directory?.child(named: name), existing.directory != nil {
            // A directory listed after its contents keeps them.
            existing.metadata = metadata
            return
        }
        parent.directory!.upsert(Node(name: name, metadata: metadata, content: content))
    }

    /// One archive entry, read from libarchive's current header: its checked path, its metadata and
    /// its content, a regular file's data stored through `ingest`. A hardlink's content names its
    /// target's path (checked like any entry path), not yet resolved.
    static func entry(_ entry: OpaquePointer, archive: OpaquePointer, tarball: String, ingest: Ingest) throws -> TarEntry {
        guard let rawPath = archive_entry_pathname(entry) else { throw TarError(path: tarball, message: "an entry without a name") }
        let pathBytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(rawPath).assumingMemoryBound(to: UInt8.self), count: strlen(rawPath)))
        let shown = pathBytes.printable
        func refuse(_ why: String) -> TarError { TarError(path: tarball, message: "entry '\(shown)': \(why)") }
        let components = try Self.components(of: pathBytes, refuse: refuse)

        let type = UInt32(archive_entry_filetype(entry))
        var metadata = Metadata(kind: .regular, permissions: UInt16(archive_entry_perm(entry) & 0o7777))
        let uid = archive_entry_uid(entry), gid = archive_entry_gid(entry)
        guard (0...Int64(UInt32.max)).contains(uid), (0...Int64(UInt32.max)).contains(gid) else {
            throw refuse("owner \(uid):\(gid) is out of the 32-bit range")
        }
        metadata.uid = UInt32(uid)
        metadata.gid = UInt32(gid)
        metadata.mtime = timestamp(libarchiveSeconds: archive_entry_mtime(entry), nanoseconds: archive_entry_mtime_nsec(entry))
        var xattrs = try Self.xattrs(of: entry, refuse: refuse)
        // ACLs as tar ACL records (GNU tar --acls, bsdtar): kept as the kernel's xattrs.
        for (name, type) in [(PosixACL.accessName, ARCHIVE_ENTRY_ACL_TYPE_ACCESS), (PosixACL.defaultName, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT)]
        where !xattrs.contains(where: { $0.name == name }) {
            if let value = PosixACL.read(entry, type: type) { xattrs.append(Xattr(name: name, value: value)) }
        }
        // The mode's group bits hold the mask when an access ACL has one (tar keeps the owning
        // group's permissions there).
        if let acl = xattrs.first(where: { $0.name == PosixACL.accessName }), let mask = PosixACL.maskPermissions(acl.value) {
            metadata.permissions = metadata.permissions & ~0o070 | mask << 3
        }
        metadata.xattrs = xattrs

        let content: Content
        if let link = archive_entry_hardlink(entry) {
            let target = Array(UnsafeBufferPointer(start: UnsafeRawPointer(link).assumingMemoryBound(to: UInt8.self), count: strlen(link)))
            let targetComponents = try Self.components(of: target, refuse: refuse)
            guard !targetComponents.isEmpty else { throw refuse("hardlink to the root") }
            content = .hardlink(path: Array(targetComponents.joined(separator: [UInt8(ascii: "/")])))
        } else {
            switch type {
            case 0o100000:
                metadata.kind = .regular
                let size = archive_entry_size(entry)
                guard size >= 0 else { throw refuse("negative size") }
                var delivered: UInt64 = 0
                let digest = try ingest(UInt64(size)) { buffer in
                    var filled = 0
                    while filled < buffer.count {
                        let got = archive_read_data(archive, buffer.baseAddress! + filled, buffer.count - filled)
                        if got < 0 { throw refuse(Self.message(archive)) }
                        if got == 0 { break }
                        filled += got
                    }
                    delivered += UInt64(filled)
                    if filled < buffer.count { throw refuse("truncated: \(delivered) of \(size) bytes") }
                    return filled
                }
                content = .regular(RegularFile(size: UInt64(size), content: digest))
            case 0o040000:
                metadata.kind = .directory
                content = .directory(Directory())
            case 0o120000:
                metadata.kind = .symlink
                guard let target = archive_entry_symlink(entry), strlen(target) > 0 else { throw refuse("symlink without a target") }
                let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(target).assumingMemoryBound(to: UInt8.self), count: strlen(target)))
                guard bytes.count <= Limits.symlinkTargetLength else { throw refuse("symlink target longer than 4095 bytes") }
                content = .symlink(target: bytes)
            case 0o020000, 0o060000:
                metadata.kind = type == 0o020000 ? .characterDevice : .blockDevice
                content = .device(major: UInt32(truncatingIfNeeded: archive_entry_rdevmajor(entry)),
                                  minor: UInt32(truncatingIfNeeded: archive_entry_rdevminor(entry)))
            case 0o010000:
                metadata.kind = .fifo
                content = .none
            case 0o140000:
                metadata.kind = .socket
                content = .none
            default:
                throw refuse("unsupported entry type \(String(type, radix: 8))")
            }
        }
        return TarEntry(path: pathBytes, components: components, metadata: metadata, content: content)
    }

    /// Splits an entry path into checked components: `./` and empty segments dropped; absolute
    /// paths and `..` refused.
    static func components(of path: [UInt8], refuse: (String) -> TarError) throws -> [[UInt8]] {
        guard path.first != UInt8(ascii: "/") else { throw refuse("absolute path") }
        var components: [[UInt8]] = []
        for segment in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if segment.elementsEqual([UInt8(ascii: ".")]) { continue }
            if segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { throw refuse("path escapes with '..'") }
            guard isValidName(segment) else { throw refuse("invalid name component") }
            components.append(Array(segment))
        }
        guard components.count <= 2048 else { throw refuse("path too deep") }
        return components
    }

    static func xattrs(of entry: OpaquePointer, refuse: (String) -> TarError) throws -> [Xattr] {
        var xattrs: [Xattr] = []
        guard archive_entry_xattr_reset(entry) > 0 else { return [] }
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
            guard let name else { continue }
            let nameBytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self), count: strlen(name)))
            guard (1...Limits.xattrNameLength).contains(nameBytes.count) else { throw refuse("xattr name too long") }
            guard size <= Limits.xattrValueLength else { throw refuse("xattr value larger than 64 KiB") }
            let valueBytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            xattrs.removeAll { $0.name == nameBytes }
            xattrs.append(Xattr(name: nameBytes, value: valueBytes))
        }
        return xattrs.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }
}

/// One entry of a tar archive, checked: `components` has no `.`, `..` or empty segment, and a
/// `.hardlink(path:)` content names its target by such a checked path.
public struct TarEntry {
    /// The path as the archive spells it, for messages.
    public var path: [UInt8]
    /// The checked components of the path; empty for the archive's root (`./`).
    public var components: [[UInt8]]
    public var metadata: Metadata
    public var content: Content
}

/// What `readEntries` hands libarchive: the stream, a buffer it fills, and the error it threw.
private final class StreamSource {
    let stream: (UnsafeMutableRawBufferPointer) throws -> Int
    /// Memory libarchive reads from until the next call: owned here, so its address stays valid.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    var failure: Error?

    init(_ stream: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.stream = stream
    }

    deinit { buffer.deallocate() }
}

/// A tarball that cannot be read or written: `PATH: what is wrong`.
public struct TarError: Error, CustomStringConvertible {
    public var path: String
    public var message: String

    public var description: String { "\(path): \(message)" }
}
