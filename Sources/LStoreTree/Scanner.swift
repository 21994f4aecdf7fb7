import CLStoreSys
#if canImport(Glibc)
import Glibc
#endif

/// A tree read from disk, with its regular files listed for whoever reads their data.
public struct ScannedTree: Sendable {
    public var root: Node
    /// Every regular file that holds data (not the further names of a hardlink set), in tree order.
    public var files: [Node]
    public var entryCount: Int
}

/// Reads a directory tree from disk, exactly: byte names, every kind, all metadata, xattrs and
/// hardlink sets. It never follows a symlink.
public struct Scanner {
    public var progress: ((_ entries: Int) -> Void)?
    /// Called with each regular file holding data as soon as it is found, so that reading the data
    /// can start while the scan goes on.
    public var onFile: ((Node) -> Void)?

    public init(progress: ((_ entries: Int) -> Void)? = nil, onFile: ((Node) -> Void)? = nil) {
        self.progress = progress
        self.onFile = onFile
    }

    private struct InodeKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private final class State {
        var files: [Node] = []
        var links: [InodeKey: [UInt8]] = [:]
        var count = 0
    }

    public func scan(_ rootPath: String) throws -> ScannedTree {
        let rootBytes = Array(rootPath.utf8)
        let fd = try systemCall("open", path: rootPath) { open(rootPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        let handle = FileHandle(fd)
        var st = stat()
        try systemCall("stat", path: rootPath) { fstat(fd, &st) }
        let xattrs = try readXattrs(path: rootBytes, display: rootPath)
        let state = State()
        let root = Node(name: [], metadata: metadata(of: st, xattrs: xattrs), content: .none)
        var relative: [UInt8] = []
        root.content = .directory(try scanDirectory(handle, rootPath: rootBytes, relative: &relative, state: state))
        state.count += 1
        return ScannedTree(root: root, files: state.files, entryCount: state.count)
    }

    private func scanDirectory(_ handle: FileHandle, rootPath: [UInt8], relative: inout [UInt8],
                               state: State) throws -> Directory {
        let names = try listDirectory(handle.fd, display: display(rootPath, relative))
        var children: [Node] = []
        children.reserveCapacity(names.count)
        for name in names {
            let mark = relative.count
            if !relative.isEmpty { relative.append(UInt8(ascii: "/")) }
            relative.append(contentsOf: name)
            defer { relative.removeSubrange(mark...) }
            children.append(try scanEntry(name, in: handle, rootPath: rootPath, relative: &relative, state: state))
        }
        return Directory(children: children)
    }

    private func scanEntry(_ name: [UInt8], in parent: FileHandle, rootPath: [UInt8], relative: inout [UInt8],
                           state: State) throws -> Node {
        state.count += 1
        if state.count & 1023 == 0 { progress?(state.count) }
        let shown = display(rootPath, relative)
        var st = stat()
        try name.withCString { cName in
            try systemCall("stat", path: shown) { fstatat(parent.fd, cName, &st, AT_SYMLINK_NOFOLLOW) }
        }
        guard let kind = EntryKind(formatBits: st.st_mode) else {
            throw FileError(path: shown, operation: "stat: unknown file type", errno: EINVAL)
        }
        if kind != .directory && st.st_nlink > 1 {
            let key = InodeKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            if let first = state.links[key] {
                return Node(name: name, metadata: Metadata(kind: kind, permissions: 0), content: .hardlink(path: first))
            }
            state.links[key] = relative
        }
        let xattrs = try readXattrs(path: procPath(directory: parent.fd, name: name), display: shown)
        let node = Node(name: name, metadata: metadata(of: st, xattrs: xattrs), content: .none)
        switch kind {
        case .regular:
            var path = rootPath
            path.append(UInt8(ascii: "/"))
            path.append(contentsOf: relative)
            let stamp = FileStamp(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: UInt64(st.st_size),
                                  mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                                  ctime: Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: UInt32(st.st_ctim.tv_nsec)))
            node.content = .regular(RegularFile(size: UInt64(st.st_size), sourcePath: path, stamp: stamp))
            state.files.append(node)
            onFile?(node)
        case .directory:
            let fd = try name.withCString { cName in
                try systemCall("open", path: shown) {
                    openat(parent.fd, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                }
            }
            node.content = .directory(try scanDirectory(FileHandle(fd), rootPath: rootPath, relative: &relative, state: state))
        case .symlink:
            node.content = .symlink(target: try readLink(name, in: parent.fd, size: Int(st.st_size), display: shown))
        case .characterDevice, .blockDevice:
            node.content = .device(major: lstore_major(st.st_rdev), minor: lstore_minor(st.st_rdev))
        case .fifo, .socket:
            node.content = .none
        }
        return node
    }

    private func metadata(of st: stat, xattrs: [Xattr]) -> Metadata {
        Metadata(kind: EntryKind(formatBits: st.st_mode) ?? .regular,
                 permissions: UInt16(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                 mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                 xattrs: xattrs)
    }

    private func display(_ root: [UInt8], _ relative: [UInt8]) -> String {
        relative.isEmpty ? root.printable : (root + [UInt8(ascii: "/")] + relative).printable
    }
}

/// The names in an open directory, without `.` and `..`, sorted by bytes.
func listDirectory(_ fd: Int32, display: @autoclosure () -> String) throws -> [[UInt8]] {
    let copy = try systemCall("dup", path: display()) { dup(fd) }
    guard let dir = fdopendir(copy) else {
        let code = errno
        close(copy)
        throw FileError(path: display(), operation: "opendir", errno: code)
    }
    defer { closedir(dir) }
    var names: [[UInt8]] = []
    while true {
        errno = 0
        guard let entry = readdir(dir) else {
            if errno != 0 { throw FileError(path: display(), operation: "readdir", errno: errno) }
            break
        }
        let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
            pointer.withMemoryRebound(to: UInt8.self, capacity: 256) { bytes in
                Array(UnsafeBufferPointer(start: bytes, count: strlen(UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self))))
            }
        }
        if name == [46] || name == [46, 46] { continue }
        names.append(name)
    }
    names.sort { $0.lexicographicallyPrecedes($1) }
    return names
}

func readLink(_ name: [UInt8], in directory: Int32, size: Int, display: @autoclosure () -> String) throws -> [UInt8] {
    var capacity = max(size, 64) + 1
    while true {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let count = try name.withCString { cName in
            try systemCall("readlink", path: display()) {
                buffer.withUnsafeMutableBytes { readlinkat(directory, cName, $0.baseAddress!.assumingMemoryBound(to: CChar.self), capacity) }
            }
        }
        if count < capacity { return Array(buffer[0..<count]) }
        capacity *= 2
    }
}
