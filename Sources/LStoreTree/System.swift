#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call on a named file: what lstore prints is `PATH: what went wrong`.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var operation: String
    public var errno: Int32

    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    /// With `errno` 0, `operation` is the whole message.
    public var description: String {
        errno == 0 ? "\(path): \(operation)" : "\(path): \(operation): \(String(cString: strerror(errno)))"
    }
}

/// Runs a system call, retrying on EINTR, and turns -1 into a `FileError` naming `path`.
@discardableResult
@inline(__always)
public func systemCall<T: BinaryInteger>(_ operation: String, path: @autoclosure () -> String,
                                         _ body: () -> T) throws -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw FileError(path: path(), operation: operation, errno: code)
    }
}

/// An open file descriptor, closed when the value goes away.
public final class FileHandle {
    public let fd: Int32
    public init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

extension [UInt8] {
    /// These bytes and a terminating NUL, to pass where C wants a `const char *`.
    public var cString: [CChar] {
        var result = [CChar](repeating: 0, count: count + 1)
        for i in indices { result[i] = CChar(bitPattern: self[i]) }
        return result
    }

    /// Calls `body` with these bytes as a NUL-terminated C string.
    @discardableResult
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var cString = [CChar](repeating: 0, count: count + 1)
        for i in indices { cString[i] = CChar(bitPattern: self[i]) }
        return try cString.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}

/// The `/proc/self/fd/N/NAME` path for an entry in an open directory: how the `l*xattr` calls reach
/// a name relative to a directory descriptor, since Linux has no `*xattrat`.
func procPath(directory: Int32, name: [UInt8]) -> [UInt8] {
    Array("/proc/self/fd/\(directory)/".utf8) + name
}

/// `SEEK_DATA` from `<unistd.h>` (a GNU extension Swift's Glibc module does not export): the next
/// offset at or after the given one that holds data.
public let seekData: Int32 = 3

/// True when every byte is zero: how a hole is recognised, eight bytes at a time.
public func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let count = bytes.count
    while i + 8 <= count {
        if bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
        i += 8
    }
    while i < count {
        if bytes[i] != 0 { return false }
        i += 1
    }
    return true
}

/// Reads a whole small file (a config, a refs file, a token file), refusing one larger than `limit`.
public func readSmallFile(_ path: String, limit: Int) throws -> [UInt8] {
    let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let got = try systemCall("read", path: path) { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) } }
        if got == 0 { return result }
        result.append(contentsOf: chunk[0..<got])
        if result.count > limit { throw FileError(path: path, operation: "larger than \(limit) bytes", errno: 0) }
    }
}
