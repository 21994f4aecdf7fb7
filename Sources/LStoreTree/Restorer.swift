import CLStoreSys
#if canImport(Glibc)
import Glibc
#endif

/// Supplies the data of regular files to a `Restorer`.
public protocol ContentWriter {
    /// Writes the data of `file` into `fd`, a new empty file open for writing, with `pwrite` at the
    /// data's offsets. Holes may be left unwritten: the restorer sets the size afterwards.
    func writeContent(of file: RegularFile, to fd: Int32, display: String) throws
}

/// Writes a tree to disk exactly as it is described: every kind, owner, mode, xattr, nanosecond
/// mtime and hardlink set. It only creates entries (never replaces), names every entry relative
/// to a directory it opened itself with `O_NOFOLLOW`, and so never follows a symlink, not even one
/// it has just created.
public struct Restorer {
    public var writer: any ContentWriter
    public var progress: ((_ entries: Int) -> Void)?

    public init(writer: any ContentWriter, progress: ((_ entries: Int) -> Void)? = nil) {
        self.writer = writer
        self.progress = progress
    }

    /// Restores `root` into `destination`, which must not exist or be an empty directory.
    public func restore(_ root: Node, into destination: String) throws {
        guard case .directory(let directory) = root.content else {
            throw FileError(path: destination, operation: "checkout: the tree's root is not a directory", errno: ENOTDIR)
        }
        // The process's umask is left alone (other threads create files meanwhile): every entry is
        // created with owner-only permissions and then given its exact mode explicitly.
        if mkdir(destination, 0o700) != 0 {
            guard errno == EEXIST else { throw FileError(path: destination, operation: "mkdir", errno: errno) }
        }
        let fd = try systemCall("open", path: destination) {
            open(destination, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        let rootHandle = FileHandle(fd)
        guard try listDirectory(fd, display: destination).isEmpty else {
            throw FileError(path: destination, operation: "checkout: the destination is not empty", errno: ENOTEMPTY)
        }
        var count = 0
        let base = Array(destination.utf8)
        var relative: [UInt8] = []
        for child in directory.children {
            try restore(child, parent: fd, root: rootHandle, base: base, relative: &relative, count: &count)
        }
        try applyMetadata(root.metadata, fd: fd, display: destination)
    }

    private func restore(_ node: Node, parent: Int32, root: FileHandle, base: [UInt8], relative: inout [UInt8],
                         count: inout Int) throws {
        let mark = relative.count
        if !relative.isEmpty { relative.append(UInt8(ascii: "/")) }
        relative.append(contentsOf: node.name)
        defer { relative.removeSubrange(mark...) }
        count += 1
        if count & 1023 == 0 { progress?(count) }
        let shown = (base + [UInt8(ascii: "/")] + relative).printable
        guard isValidName(node.name) else {
            throw FileError(path: shown, operation: "checkout: invalid entry name", errno: EINVAL)
        }
        let meta = node.metadata
        let name = node.name.cString
        switch node.content {
        case .directory(let directory):
            try systemCall("mkdir", path: shown) { mkdirat(parent, name, 0o700) }
            let fd = try systemCall("open", path: shown) {
                openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let handle = FileHandle(fd)
            // A umask that takes the owner's write or search bit would stop the entries below.
            try systemCall("chmod", path: shown) { fchmod(fd, 0o700) }
            for child in directory.children {
                try restore(child, parent: fd, root: root, base: base, relative: &relative, count: &count)
            }
            try applyMetadata(meta, fd: handle.fd, display: shown)
        case .regular(let file):
            let fd = try systemCall("create", path: shown) {
                openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            }
            let handle = FileHandle(fd)
            try writer.writeContent(of: file, to: fd, display: shown)
            try systemCall("truncate", path: shown) { ftruncate(handle.fd, off_t(file.size)) }
            try applyMetadata(meta, fd: handle.fd, display: shown)
        case .symlink(let target):
            let cTarget = target.cString
            try systemCall("symlink", path: shown) { symlinkat(cTarget, parent, name) }
            try applyMetadata(meta, parent: parent, name: node.name, display: shown)
        case .device(let major, let minor):
            try systemCall("mknod", path: shown) {
                mknodat(parent, name, mode_t(meta.kind.formatBits | 0o600), lstore_makedev(major, minor))
            }
            try applyMetadata(meta, parent: parent, name: node.name, display: shown)
        case .none:
            try systemCall("mknod", path: shown) { mknodat(parent, name, mode_t(meta.kind.formatBits | 0o600), 0) }
            try applyMetadata(meta, parent: parent, name: node.name, display: shown)
        case .hardlink(let path):
            var components = path.split(separator: UInt8(ascii: "/")).map(Array.init)
            guard let last = components.popLast(), components.allSatisfy(isValidName), isValidName(last) else {
                throw FileError(path: shown, operation: "checkout: invalid hardlink target \(path.printable)", errno: EINVAL)
            }
            let directory = try openBeneath(root.fd, components, display: shown)
            let cLast = last.cString
            try systemCall("link", path: shown) { linkat(directory.fd, cLast, parent, name, 0) }
        }
    }

    /// Opens the directory at `components` under `root`, refusing to follow any symlink.
    private func openBeneath(_ root: Int32, _ components: [[UInt8]], display: String) throws -> FileHandle {
        var current = FileHandle(try systemCall("open", path: display) { dup(root) })
        for component in components {
            let name = component.cString
            let fd = try systemCall("open", path: display) {
                openat(current.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            current = FileHandle(fd)
        }
        return current
    }

    /// Owner, then mode (chown clears setuid), then xattrs (after chown, which clears
    /// security.capability), then the mtime last.
    private func applyMetadata(_ meta: Metadata, fd: Int32, display: String) throws {
        try systemCall("chown", path: display) { fchown(fd, meta.uid, meta.gid) }
        try systemCall("chmod", path: display) { fchmod(fd, mode_t(meta.permissions)) }
        for xattr in meta.xattrs {
            let name = xattr.name.cString
            try systemCall("setxattr \(xattr.name.printable)", path: display) {
                xattr.value.withUnsafeBytes { fsetxattr(fd, name, $0.baseAddress, $0.count, 0) }
            }
        }
        var times = [timespec(tv_sec: 0, tv_nsec: utimeOmit), timespec(meta.mtime)]
        try systemCall("utimes", path: display) { futimens(fd, &times) }
    }

    /// The same for an entry that cannot be opened (symlinks, devices, FIFOs, sockets).
    private func applyMetadata(_ meta: Metadata, parent: Int32, name: [UInt8], display: String) throws {
        let cName = name.cString
        try systemCall("chown", path: display) { fchownat(parent, cName, meta.uid, meta.gid, AT_SYMLINK_NOFOLLOW) }
        if meta.kind != .symlink {
            try systemCall("chmod", path: display) { fchmodat(parent, cName, mode_t(meta.permissions), 0) }
        }
        try writeXattrs(meta.xattrs, path: procPath(directory: parent, name: name), display: display)
        var times = [timespec(tv_sec: 0, tv_nsec: utimeOmit), timespec(meta.mtime)]
        try systemCall("utimes", path: display) { utimensat(parent, cName, &times, AT_SYMLINK_NOFOLLOW) }
    }
}

extension timespec {
    init(_ time: Timestamp) {
        self.init(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
    }
}

/// `UTIME_OMIT` from `<sys/stat.h>`: leave this time as it is.
private let utimeOmit = (1 << 30) - 2
