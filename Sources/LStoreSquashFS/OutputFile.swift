import Dispatch
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The image file being written: appended arrays are gathered, up to 1 MiB or 1024 of them, and
/// written with one `pwritev` by a thread of their own, so that small blocks cost few system calls,
/// no byte is copied on the way, and the writer goes on reading and ordering blocks meanwhile; the
/// superblock is written in place at the end.
///
/// A failed write is reported by the next `append`, `flush` or `finish`. The file descriptor must
/// stay open until `finish` returns or the `OutputFile` is gone: `deinit` waits for the writes.
final class OutputFile {
    let fd: Int32
    let display: String
    /// The image offset of the next appended byte.
    private(set) var offset: UInt64
    /// Appended arrays not yet handed over, in order: they belong at `offset - pendingBytes`. They
    /// are written as they are, with one `pwritev` per batch, never copied into a buffer.
    private var pending: [[UInt8]] = []
    private var pendingBytes = 0
    private static let handOverBytes = 1 << 20
    /// Buffers handed over and not yet written, at most.
    private static let buffersInFlight = 8

    private let queue = DispatchQueue(label: "lstore.squashfs.output")
    private let slots = DispatchSemaphore(value: OutputFile.buffersInFlight)
    private let failure = Locked<(any Error)?>(nil)

    init(fd: Int32, display: String, offset: UInt64) {
        self.fd = fd
        self.display = display
        self.offset = offset
    }

    deinit { queue.sync {} }

    func append(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        pending.append(bytes)
        pendingBytes += bytes.count
        offset += UInt64(bytes.count)
        if pendingBytes >= Self.handOverBytes || pending.count >= Self.maximumPieces { try flush() }
    }

    /// Hands the appended bytes to the writing thread.
    func flush() throws {
        guard !pending.isEmpty else { return try check() }
        try handOver(pending, at: offset - UInt64(pendingBytes))
        pending = []
        pendingBytes = 0
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
        try bytes.withUnsafeBytes { try LStoreTree.writeAll(fd, $0, at: off_t(position), display: display) }
    }

    private func check() throws {
        if let error = failure.withLock({ $0 }) { throw error }
    }

    private func handOver(_ pieces: [[UInt8]], at position: UInt64) throws {
        try check()
        slots.wait()
        queue.async { [fd, display, slots, failure] in
            defer { slots.signal() }
            guard failure.withLock({ $0 == nil }) else { return }
            do {
                try Self.writeAll(pieces, at: position, fd: fd, display: display)
            } catch {
                failure.withLock { $0 = error }
            }
        }
    }

    /// Pieces per `pwritev` (Linux's `IOV_MAX`).
    private static let maximumPieces = 1024

    /// Writes `pieces` one after the other from `position` with `pwritev`, resuming after short
    /// writes: the vectored form of `LStoreTree.writeAll(_:_:at:display:)`.
    private static func writeAll(_ pieces: [[UInt8]], at position: UInt64, fd: Int32, display: String) throws {
        var vectors: [iovec] = []
        vectors.reserveCapacity(pieces.count)
        var total = 0
        for piece in pieces {
            // The arrays are kept alive by `pieces` until the writes are done.
            piece.withUnsafeBytes { vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)) }
            total += piece.count
        }
        var done = 0, first = 0
        while done < total {
            let n = try vectors.withUnsafeMutableBufferPointer { buffer in
                try systemCall("write", path: display) {
                    pwritev(fd, buffer.baseAddress! + first, Int32(buffer.count - first), off_t(position) + off_t(done))
                }
            }
            guard n > 0 else { throw FileError(path: display, operation: "write: no progress", errno: 0) }
            done += n
            // Skip what was written: whole pieces, then part of one.
            var left = n
            while left > 0 && left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base += left
                vectors[first].iov_len -= left
            }
        }
    }
}
