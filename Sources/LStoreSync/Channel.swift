import LStoreHTTP
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where a channel's bytes come from and go to when that is not a descriptor: an HTTP exchange.
/// Its reads and writes bound their own waits.
protocol ByteStream: AnyObject {
    /// Up to `buffer.count` bytes; 0 at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// Reads bytes from a file descriptor (a socket or a pipe), or a `ByteStream`, through a buffer.
/// Every wait is bounded by `timeout`; `limit`, when set, is how many more bytes the stream may
/// deliver (an HTTP body's Content-Length); a chunked body is decoded as it arrives
/// (`decodeChunked`). Too little input throws, never traps.
final class ChannelReader {
    let fd: Int32
    let name: String
    var timeout: Double
    /// Bytes the stream may still deliver; nil for no limit.
    var limit: Int?
    /// When the whole message must have arrived (monotonic seconds), however the bytes trickle in.
    var deadline: Double?
    /// The TLS session the bytes come through, if any.
    var tls: TLSSession?
    /// The stream the bytes come from instead of the descriptor, if any.
    let stream: ByteStream?
    /// Every byte read from the descriptor so far.
    private(set) var bytesRead: UInt64 = 0
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    /// The body's chunked coding, once `decodeChunked` is called, and the most it may decode to.
    private var chunked: ChunkedDecoder?
    private var chunkedLimit: UInt64 = .max

    init(fd: Int32, name: String, timeout: Double) {
        self.fd = fd
        self.name = name
        self.timeout = timeout
        stream = nil
        buffer = [UInt8](repeating: 0, count: 256 << 10)
    }

    init(stream: ByteStream, name: String, timeout: Double) {
        fd = -1
        self.name = name
        self.timeout = timeout
        self.stream = stream
        buffer = [UInt8](repeating: 0, count: 256 << 10)
    }

    /// From here on the stream is a chunked body, of at most `limit` bytes once decoded; what is
    /// already buffered is decoded now. The stream ends with the body.
    func decodeChunked(limit: UInt64) throws {
        var decoder = ChunkedDecoder()
        let produced = try buffer.withUnsafeMutableBytes { raw in
            try decoder.decode(UnsafeMutableRawBufferPointer(rebasing: raw[start..<end]))
        }
        end = start + produced
        chunked = decoder
        chunkedLimit = limit
        try checkChunkedLimit()
    }

    private func checkChunkedLimit() throws {
        if let chunked, chunked.decodedCount > chunkedLimit {
            throw SyncError.protocolViolation("\(name): a chunked body longer than \(chunkedLimit) bytes")
        }
    }

    var buffered: Int { end - start }

    /// Reads more from the descriptor into the buffer. False at the end of the stream.
    private func fill() throws -> Bool {
        if let limit, limit <= 0 { return false }
        if chunked?.isComplete == true { return false }
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count {
            buffer.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + start, byteCount: end - start)
            }
            end -= start
            start = 0
        }
        while true {
            var wait = timeout
            if let deadline {
                let left = deadline - monotonicSeconds()
                guard left > 0 else { throw SyncError.timeout(name, seconds: timeout) }
                wait = min(wait, left)
            }
            if stream == nil && !(tls?.pending ?? false) {
                try waitUntilReady(fd, events: Int16(POLLIN), timeout: wait, name: name)
            }
            var want = buffer.count - end
            if let limit { want = min(want, limit) }
            let got = try buffer.withUnsafeMutableBytes { raw in
                if let stream {
                    return try stream.read(into: UnsafeMutableRawBufferPointer(start: raw.baseAddress! + end, count: want))
                }
                if let tls {
                    do {
                        return try tls.read(raw.baseAddress! + end, want)
                    } catch SyncError.timeout {
                        throw SyncError.timeout(name, seconds: timeout.rounded(.up))
                    }
                }
                return try systemCall("read", path: name) { Glibc.read(fd, raw.baseAddress! + end, want) }
            }
            if got == 0 { return false }
            bytesRead += UInt64(got)
            if limit != nil { limit! -= got }
            guard var decoder = chunked else {
                end += got
                return true
            }
            let produced = try buffer.withUnsafeMutableBytes { raw in
                try decoder.decode(UnsafeMutableRawBufferPointer(start: raw.baseAddress! + end, count: got))
            }
            chunked = decoder
            end += produced
            try checkChunkedLimit()
            if produced > 0 { return true }
            if decoder.isComplete { return false }
        }
    }

    /// Exactly `count` bytes, or an error saying the stream ended early.
    func read(exactly count: Int, into output: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < count {
            if start == end, !(try fill()) { throw SyncError.truncated(name) }
            let take = min(count - done, end - start)
            buffer.withUnsafeBytes { raw in
                (output.baseAddress! + done).copyMemory(from: raw.baseAddress! + start, byteCount: take)
            }
            start += take
            done += take
        }
    }

    func read(exactly count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(exactly: count, into: $0) }
        return bytes
    }

    /// True when the stream ended cleanly: no byte before its end.
    func atEnd() throws -> Bool {
        if start < end { return false }
        return !(try fill())
    }

    /// One line ending in `\r\n` (or `\n`), without it; at most `maxLength` bytes.
    func readLine(maxLength: Int) throws -> String {
        var line: [UInt8] = []
        while true {
            if start == end, !(try fill()) { throw SyncError.truncated(name) }
            let byte = buffer[start]
            start += 1
            if byte == UInt8(ascii: "\n") {
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            line.append(byte)
            if line.count > maxLength { throw SyncError.protocolViolation("\(name): a header line longer than \(maxLength) bytes") }
        }
    }
}

/// Writes bytes to a file descriptor through a buffer; every wait is bounded by `timeout`.
final class ChannelWriter {
    let fd: Int32
    let name: String
    var timeout: Double
    /// The TLS session the bytes go through, if any.
    var tls: TLSSession?
    /// The stream the bytes go to instead of the descriptor, if any.
    let stream: ByteStream?
    /// Every byte handed to `write` so far.
    private(set) var bytesWritten: UInt64 = 0
    private var buffer: [UInt8] = []

    init(fd: Int32, name: String, timeout: Double) {
        self.fd = fd
        self.name = name
        self.timeout = timeout
        stream = nil
        buffer.reserveCapacity(256 << 10)
    }

    init(stream: ByteStream, name: String, timeout: Double) {
        fd = -1
        self.name = name
        self.timeout = timeout
        self.stream = stream
        buffer.reserveCapacity(256 << 10)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        bytesWritten += UInt64(bytes.count)
        if buffer.count + bytes.count > buffer.capacity { try flush() }
        if bytes.count >= buffer.capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        if let stream { return try stream.write(bytes) }
        var offset = 0
        while offset < bytes.count {
            if let tls {
                offset += try tls.write(bytes.baseAddress! + offset, bytes.count - offset)
                continue
            }
            try waitUntilReady(fd, events: Int16(POLLOUT), timeout: timeout, name: name)
            let done = try systemCall("write", path: name) {
                send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            offset += done
        }
    }
}

/// Waits until `fd` is ready for `events`, at most `timeout` seconds.
func waitUntilReady(_ fd: Int32, events: Int16, timeout: Double, name: String) throws {
    var poller = pollfd(fd: fd, events: events, revents: 0)
    let ready = try systemCall("poll", path: name) { poll(&poller, 1, Int32(min(timeout * 1000, Double(Int32.max)))) }
    if ready == 0 { throw SyncError.timeout(name, seconds: timeout.rounded(.up)) }
}

/// `send` refuses descriptors that are not sockets (ENOTSOCK); pipes are written with `write`.
private func send(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int, _ flags: Int32) -> Int {
    let sent = Glibc.send(fd, bytes, count, flags)
    if sent < 0 && errno == ENOTSOCK { return Glibc.write(fd, bytes, count) }
    return sent
}
