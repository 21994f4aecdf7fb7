import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The image file being written: appends go through a buffer, so small blocks cost few system
/// calls; the superblock is written in place at the end.
final class OutputFile {
    let fd: Int32
    let display: String
    /// The image offset of the next appended byte.
    private(set) var offset: UInt64
    /// Appended bytes not yet written: they belong at `offset - buffer.count`.
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20

    init(fd: Int32, display: String, offset: UInt64) {
        self.fd = fd
        self.display = display
        self.offset = offset
        buffer.reserveCapacity(Self.bufferSize)
    }

    func append(_ bytes: [UInt8]) throws {
        if buffer.count + bytes.count > Self.bufferSize || bytes.count >= Self.bufferSize / 4 { try flush() }
        if bytes.count >= Self.bufferSize / 4 {
            try bytes.withUnsafeBytes { try writeAll($0, at: offset) }
        } else {
            buffer.append(contentsOf: bytes)
        }
        offset += UInt64(bytes.count)
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        let start = offset - UInt64(buffer.count)
        try buffer.withUnsafeBytes { try writeAll($0, at: start) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes `bytes` at `position`, outside the append stream (the superblock).
    func write(_ bytes: [UInt8], at position: UInt64) throws {
        try bytes.withUnsafeBytes { try writeAll($0, at: position) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, at position: UInt64) throws {
        var done = 0
        while done < bytes.count {
            let n = try systemCall("write", path: display) {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(position) + off_t(done))
            }
            done += n
        }
    }
}
