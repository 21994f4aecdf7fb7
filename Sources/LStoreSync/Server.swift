import Foundation
import LStoreHTTP
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves a store over HTTP/1.1: one thread per connection, at most `maxConnections` at once,
/// one request per connection (`Connection: close`). Every request is a POST of protocol frames to
/// `…/lstore/v1`, its body with a Content-Length or chunked; heads are read by LStoreHTTP's
/// parser. The answer is frames up to the end of the stream. See spec/protocol.md, "HTTP".
public final class HTTPServer: @unchecked Sendable {
    public let service: Service
    public let maxConnections: Int
    /// Seconds a connection may stay silent.
    public let timeout: Double
    /// With a TLS context, clients speak HTTPS.
    public let tls: TLSContext?
    private let listener: Int32
    private let active = Mutex(0)

    /// Listens on `address` (`HOST:PORT`, `[V6]:PORT`; port 0 picks a free one).
    public init(service: Service, address: String, tls: TLSContext? = nil, maxConnections: Int = 32, timeout: Double = 60) throws {
        self.service = service
        self.tls = tls
        self.maxConnections = maxConnections
        self.timeout = timeout
        let (host, port) = try splitHostPort(address, defaultPort: nil)
        listener = try listen(host: host, port: port)
    }

    /// The port the server listens on.
    public var port: UInt16 {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let family = address.ss_family
        return withUnsafePointer(to: &address) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Accepts connections until the process ends.
    public func run() throws -> Never {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                    if errno == EMFILE || errno == ENFILE { usleep(100_000) }
                    continue
                }
                throw FileError(path: "listening socket", operation: "accept", errno: errno)
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let admitted = active.withLock { count -> Bool in
                guard count < maxConnections else { return false }
                count += 1
                return true
            }
            guard admitted else {
                let busy = Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
                _ = busy.withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                close(fd)
                continue
            }
            Thread.detachNewThread { [self] in
                serve(fd)
                close(fd)
                active.withLock { $0 -= 1 }
            }
        }
    }

    private func serve(_ fd: Int32) {
        let input = ChannelReader(fd: fd, name: "client", timeout: timeout)
        let output = ChannelWriter(fd: fd, name: "client", timeout: timeout)
        func reply(_ status: String) {
            try? output.write(Array("HTTP/1.1 \(status)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            try? output.flush()
        }
        do {
            if let tls {
                let session = try TLSSession.accept(tls, fd: fd, timeout: timeout)
                input.tls = session
                output.tls = session
            }
            let line = try input.readLine(maxLength: HTTPHead.maxLineLength)
            let request: (method: String, target: String, version: String)
            let framing: HTTPBodyFraming
            let headers: HTTPHeaders
            do {
                headers = try HTTPHead.fields { try input.readLine(maxLength: HTTPHead.maxLineLength) }
                request = try HTTPHead.requestLine(line)
                framing = try HTTPHead.bodyFraming(headers, request: true)
            } catch let error as HTTPMessageError {
                // An unknown transfer coding is not implemented; any other broken head is bad.
                return reply(error.message.hasPrefix("Transfer-Encoding") ? "501 Not Implemented" : "400 Bad Request")
            }
            guard request.target.hasSuffix(SyncProtocol.httpPath) else { return reply("404 Not Found") }
            guard request.method == "POST" else { return reply("405 Method Not Allowed") }
            if case .length(let length) = framing {
                guard headers["Content-Length"] != nil else { return reply("411 Length Required") }
                guard length <= SyncProtocol.maxRequestBody else { return reply("413 Content Too Large") }
            }
            if headers["Expect"]?.lowercased() == "100-continue" {
                try output.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                try output.flush()
            }
            switch framing {
            case .length(let length): input.limit = length
            case .chunked: try input.decodeChunked(limit: UInt64(SyncProtocol.maxRequestBody))
            case .toEnd: return reply("411 Length Required")
            }
            try output.write(Array("HTTP/1.1 200 OK\r\nContent-Type: application/x-lstore\r\nConnection: close\r\n\r\n".utf8))
            do {
                try service.answer(input, output)
            } catch {
                try FrameWriter(channel: output).error(.badRequest, "\(error)")
            }
            try output.flush()
            output.tls?.shutdown()
            shutdown(fd, Int32(SHUT_WR))
        } catch {
            // The client went away or broke the protocol: nothing more to say to it.
        }
    }
}

/// Serves one client on standard input and output (`lstore serve --stdio`, what ssh runs) until
/// it closes its end.
public func serveStandardStreams(_ service: Service, timeout: Double = 3600) throws {
    let input = ChannelReader(fd: 0, name: "standard input", timeout: timeout)
    let output = ChannelWriter(fd: 1, name: "standard output", timeout: timeout)
    while !(try input.atEnd()) {
        do {
            try service.answer(input, output)
        } catch {
            // After a broken request the stream cannot be trusted: say why, then stop.
            try? FrameWriter(channel: output).error(.badRequest, "\(error)")
            throw error
        }
        try output.flush()
    }
}

/// Splits `HOST:PORT` or `[V6]:PORT`.
func splitHostPort(_ text: String, defaultPort: UInt16?) throws -> (host: String, port: UInt16) {
    var host = Substring(text)
    var portText: Substring?
    if host.hasPrefix("[") {
        guard let close = host.firstIndex(of: "]") else { throw SyncError.invalidURL(text) }
        let rest = host[host.index(after: close)...]
        host = host[host.index(after: host.startIndex)..<close]
        if rest.hasPrefix(":") { portText = rest.dropFirst() } else if !rest.isEmpty { throw SyncError.invalidURL(text) }
    } else if let colon = host.lastIndex(of: ":") {
        portText = host[host.index(after: colon)...]
        host = host[..<colon]
    }
    guard !host.isEmpty else { throw SyncError.invalidURL(text) }
    if let portText {
        guard let port = UInt16(portText) else { throw SyncError.invalidURL(text) }
        return (String(host), port)
    }
    guard let defaultPort else { throw SyncError.invalidArgument("'\(text)': give an address as HOST:PORT") }
    return (String(host), defaultPort)
}

/// The addresses `host` and `port` name, as getaddrinfo(3) gives them.
func withAddresses<T>(host: String, port: UInt16, passive: Bool, _ body: (UnsafePointer<addrinfo>) throws -> T?) throws -> T {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = passive ? AI_PASSIVE : 0
    var list: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host, String(port), &hints, &list)
    guard status == 0, let list else {
        throw SyncError.connection("\(host): \(String(cString: gai_strerror(status)))")
    }
    defer { freeaddrinfo(list) }
    var lastError: Error = SyncError.connection("\(host): no address")
    var entry: UnsafeMutablePointer<addrinfo>? = list
    while let current = entry {
        do {
            if let result = try body(current) { return result }
        } catch {
            lastError = error
        }
        entry = current.pointee.ai_next
    }
    throw lastError
}

private func listen(host: String, port: UInt16) throws -> Int32 {
    try withAddresses(host: host, port: port, passive: true) { info -> Int32? in
        let fd = try systemCall("socket", path: host) {
            socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, Glibc.listen(fd, 128) == 0 else {
            let code = errno
            close(fd)
            throw FileError(path: "\(host):\(port)", operation: "listen", errno: code)
        }
        return fd
    }
}
