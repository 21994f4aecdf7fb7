#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes all of `bytes` to `fd` at its file offset: retries EINTR and short writes, and fails
/// when a write makes no progress.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, display: @autoclosure () -> String) throws {
    var done = 0
    while done < bytes.count {
        let n = try systemCall("write", path: display()) { write(fd, bytes.baseAddress! + done, bytes.count - done) }
        guard n > 0 else { throw FileError(path: display(), operation: "write: no progress", errno: 0) }
        done += n
    }
}

/// Writes all of `bytes` to `fd` at `offset` with `pwrite`, leaving the file offset alone:
/// retries EINTR and short writes, and fails when a write makes no progress.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: off_t,
                     display: @autoclosure () -> String) throws {
    var done = 0
    while done < bytes.count {
        let n = try systemCall("write", path: display()) {
            pwrite(fd, bytes.baseAddress! + done, bytes.count - done, offset + off_t(done))
        }
        guard n > 0 else { throw FileError(path: display(), operation: "write: no progress", errno: 0) }
        done += n
    }
}

/// Replaces the file at `path` with `bytes`, so that a reader sees the old content or the new,
/// never part of either: the bytes go to `temporary` (by default a new name beside `path`; it
/// must be on the same filesystem), are fsynced, and the temporary is renamed to `path`; then the
/// directory of `path` is fsynced. Without `durable`, neither fsync is done: the file is whole
/// or absent after a crash, but may be the old one.
///
/// On failure the temporary is removed and `path` is untouched. The descriptor is closed exactly
/// once on every path.
public func writeFileAtomically(_ bytes: [UInt8], to path: String, temporary: String? = nil,
                                mode: mode_t = 0o644, durable: Bool = true) throws {
    let temp = temporary ?? "\(path).tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let fd = try systemCall("create", path: temp) { open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode) }
    var failure: Error?
    do {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, display: temp) }
        if durable { try systemCall("fsync", path: temp) { fsync(fd) } }
    } catch {
        failure = error
    }
    if close(fd) != 0 && failure == nil { failure = FileError(path: temp, operation: "close", errno: errno) }
    if failure == nil && rename(temp, path) != 0 { failure = FileError(path: path, operation: "rename", errno: errno) }
    if let failure {
        unlink(temp)
        throw failure
    }
    if durable { try syncDirectory(parentDirectory(of: path)) }
}

/// Fsyncs the directory at `path`, so that names created, renamed or removed in it are durable.
public func syncDirectory(_ path: String) throws {
    try sync(path, flags: O_DIRECTORY)
}

/// Fsyncs the file or directory at `path`: its data, or the names in it.
public func syncPath(_ path: String) throws {
    try sync(path, flags: 0)
}

private func sync(_ path: String, flags: Int32) throws {
    let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | flags) }
    defer { close(fd) }
    try systemCall("fsync", path: path) { fsync(fd) }
}

/// The directory that holds `path`: what precedes its last `/`, `/` for a name at the root, `.`
/// for a name without one.
func parentDirectory(of path: String) -> String {
    let bytes = Array(path.utf8)
    guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
    return slash == 0 ? "/" : String(decoding: bytes[..<slash], as: UTF8.self)
}

/// Removes `path` and everything below it, never following a symlink; nothing when it does not
/// exist. The first failure is thrown.
public func removeTree(_ path: String) throws {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        if errno == ENOENT { return }
        throw FileError(path: path, operation: "lstat", errno: errno)
    }
    if info.st_mode & S_IFMT == S_IFDIR {
        guard let directory = opendir(path) else { throw FileError(path: path, operation: "opendir", errno: errno) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(directory)
        for name in names { try removeTree(path + "/" + name) }
        guard rmdir(path) == 0 || errno == ENOENT else { throw FileError(path: path, operation: "rmdir", errno: errno) }
    } else {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileError(path: path, operation: "unlink", errno: errno) }
    }
}
