import Dispatch
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The image file being written: appends go through a buffer, so small blocks cost few system
/// calls, and full buffers are written by a thread of their own, so that the writer goes on
/// reading and ordering blocks meanwhile; the superblock is written in place at the end.
///
/// A failed write is reported by the next `append`, `flush` or `finish`. The file descriptor must
/// stay open until `finish` returns or the `OutputFile` is gone: `deinit` waits for the writes.
final class OutputFile {
    let fd: Int32
    let display: String
    /// The image offset of the next appended byte.
    private(set) var offset: UInt64
    /// Appended bytes not yet handed over: they belong at `offset - buffer.count`.
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20
    /// Buffers handed over and not yet written, at most.
    private static let buffersInFlight = 8

    private let queue = DispatchQueue(label: "lstore.squashfs.output")
    private let slots = DispatchSemaphore(value: OutputFile.buffersInFlight)
    private let failure = Locked<(any Error)?>(nil)

    init(fd: Int32, display: String, offset: UInt64) {
        self.fd = fd
        self.display = display
        self.offset = offset
        buffer.reserveCapacity(Self.bufferSize)
    }

    deinit { queue.sync {} }

    func append(_ bytes: [UInt8]) throws {
        if buffer.count + bytes.count > Self.bufferSize || bytes.count >= Self.bufferSize / 4 { try flush() }
        if bytes.count >= Self.bufferSize / 4 {
            try handOver(bytes, at: offset)
        } else {
            buffer.append(contentsOf: bytes)
        }
        offset += UInt64(bytes.count)
    }

    /// Hands the buffered bytes to the writing thread.
    func flush() throws {
        guard !buffer.isEmpty else { return try check() }
        try handOver(buffer, at: offset - UInt64(buffer.count))
        buffer = []
        buffer.reserveCapacity(Self.bufferSize)
    }

    /// Writes everything appended and waits for it.
    func finish() throws {
        try flush()
        queue.sync {}
        try check()
    }

    /// Writes `bytes` at `position`, outside the append stream (the superblock), after every append.
    func write(_ bytes: [UInt8], at position: UInt64) throws {
        try finish()
        try bytes.withUnsafeBytes { try Self.writeAll($0, at: position, fd: fd, display: display) }
    }

    private func check() throws {
        if let error = failure.withLock({ $0 }) { throw error }
    }

    private func handOver(_ bytes: [UInt8], at position: UInt64) throws {
        try check()
        slots.wait()
        queue.async { [fd, display, slots, failure] in
            defer { slots.signal() }
            guard failure.withLock({ $0 == nil }) else { return }
            do {
                try bytes.withUnsafeBytes { try Self.writeAll($0, at: position, fd: fd, display: display) }
            } catch {
                failure.withLock { $0 = error }
            }
        }
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, at position: UInt64, fd: Int32, display: String) throws {
        var done = 0
        while done < bytes.count {
            let n = try systemCall("write", path: display) {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(position) + off_t(done))
            }
            done += n
        }
    }
}
