import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where a peer is: `http://HOST[:PORT][/PATH]` or `ssh://[USER@]HOST[:PORT]/STORE/PATH`.
public enum RemoteURL: Equatable, Sendable, CustomStringConvertible {
    case http(host: String, port: UInt16, path: String)
    case https(host: String, port: UInt16, path: String)
    case ssh(user: String?, host: String, port: UInt16?, path: String)

    public init(parsing text: String) throws {
        if text.hasPrefix("http://") || text.hasPrefix("https://") {
            let secure = text.hasPrefix("https://")
            let rest = text.dropFirst(secure ? "https://".count : "http://".count)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let (host, port) = try splitHostPort(String(rest[..<slash]), defaultPort: secure ? 443 : 80)
            var path = String(rest[slash...])
            while path.hasSuffix("/") { path.removeLast() }
            guard !path.contains(" "), !host.contains("@") else { throw SyncError.invalidURL(text) }
            self = secure ? .https(host: host, port: port, path: path) : .http(host: host, port: port, path: path)
        } else if text.hasPrefix("ssh://") {
            let rest = text.dropFirst("ssh://".count)
            guard let slash = rest.firstIndex(of: "/") else { throw SyncError.invalidURL(text) }
            var authority = Substring(rest[..<slash])
            var user: String?
            if let at = authority.lastIndex(of: "@") {
                user = String(authority[..<at])
                authority = authority[authority.index(after: at)...]
            }
            let path = String(rest[slash...])
            let host: String, port: UInt16?
            if authority.contains(":") {
                (host, port) = try splitHostPort(String(authority), defaultPort: nil)
            } else {
                (host, port) = (String(authority), nil)
            }
            guard !host.isEmpty, !host.hasPrefix("-"), user.map({ !$0.isEmpty && !$0.hasPrefix("-") }) ?? true, path.count > 1 else {
                throw SyncError.invalidURL(text)
            }
            self = .ssh(user: user, host: host, port: port, path: path)
        } else {
            throw SyncError.invalidURL(text)
        }
    }

    public var description: String {
        switch self {
        case .http(let host, let port, let path):
            "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)"
        case .https(let host, let port, let path):
            "https://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)"
        case .ssh(let user, let host, let port, let path):
            "ssh://\(user.map { $0 + "@" } ?? "")\(host)\(port.map { ":\($0)" } ?? "")\(path)"
        }
    }
}

/// Carries requests to a peer and its answers back. See spec/protocol.md, "Transports".
protocol Transport: AnyObject {
    /// Bytes sent and received so far, carrier overhead included.
    var bytesSent: UInt64 { get }
    var bytesReceived: UInt64 { get }
    /// Sends one request, whose frames `body` writes (`length` bytes in all), and reads the answer
    /// with `response`; with `bounded`, the whole answer must arrive within a few timeouts.
    func exchange<T>(length: Int, bounded: Bool, body: (FrameWriter) throws -> Void,
                     response: (FrameReader) throws -> T) throws -> T
    func close()
}

/// HTTP/1.1 over a new TCP connection per request: a POST of frames with a Content-Length; the
/// answer's frames run to the end of the stream (or its Content-Length).
final class HTTPTransport: Transport {
    let host: String
    let port: UInt16
    let path: String
    let timeout: Double
    /// With a TLS context, HTTPS.
    let tls: TLSContext?
    private(set) var bytesSent: UInt64 = 0
    private(set) var bytesReceived: UInt64 = 0

    init(host: String, port: UInt16, path: String, tls: TLSContext?, timeout: Double) {
        self.host = host
        self.port = port
        self.path = path
        self.tls = tls
        self.timeout = timeout
    }

    private var name: String { "\(tls == nil ? "http" : "https")://\(host):\(port)" }

    func exchange<T>(length: Int, bounded: Bool, body: (FrameWriter) throws -> Void,
                     response: (FrameReader) throws -> T) throws -> T {
        let fd = try connect()
        defer { Glibc.close(fd) }
        let output = ChannelWriter(fd: fd, name: name, timeout: timeout)
        let input = ChannelReader(fd: fd, name: name, timeout: timeout)
        if let tls {
            let session = try TLSSession.connect(tls, fd: fd, host: host, timeout: timeout)
            output.tls = session
            input.tls = session
        }
        defer {
            bytesSent += output.bytesWritten
            bytesReceived += input.bytesRead
        }
        let head = "POST \(path)\(SyncProtocol.httpPath) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
            + "Content-Type: application/x-lstore\r\nContent-Length: \(length)\r\nConnection: close\r\n\r\n"
        try output.write(Array(head.utf8))
        let start = output.bytesWritten
        try body(FrameWriter(channel: output))
        try output.flush()
        precondition(output.bytesWritten - start == UInt64(length), "request body length")

        if bounded { input.deadline = monotonicSeconds() + SyncProtocol.boundedAnswerTimeouts * timeout }
        let status = try input.readLine(maxLength: 8192)
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.") else {
            throw SyncError.protocolViolation("\(name): not an HTTP answer: '\(status.prefix(80).description.printableLine)'")
        }
        for _ in 0..<101 {
            let line = try input.readLine(maxLength: 8192)
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if key == "content-length" {
                guard let count = Int(value), count >= 0 else { throw SyncError.protocolViolation("\(name): bad Content-Length") }
                input.limit = count - input.buffered
            }
            if key == "transfer-encoding" && value.lowercased() != "identity" {
                throw SyncError.protocolViolation("\(name): answered with Transfer-Encoding \(value.printableLine), which this client does not read")
            }
        }
        guard parts[1] == "200" else {
            throw SyncError.connection("\(name)\(path): HTTP \(parts[1...].joined(separator: " ").printableLine)")
        }
        return try response(FrameReader(channel: input))
    }

    private func connect() throws -> Int32 {
        try withAddresses(host: host, port: port, passive: false) { info -> Int32? in
            let fd = try systemCall("socket", path: name) {
                socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            }
            var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                let code = errno
                Glibc.close(fd)
                throw SyncError.connection("\(name): cannot connect: \(String(cString: strerror(code)))")
            }
            return fd
        }
    }

    func close() {}
}

/// `lstore serve --stdio` on the peer, run by ssh, as git does: requests go to its standard
/// input, answers come from its standard output. `$LSTORE_SSH` is the ssh command (words split on
/// spaces; default `ssh`), `$LSTORE_REMOTE_LSTORE` the peer's lstore (default `lstore`).
final class StdioTransport: Transport {
    private let process: Process
    private let input: ChannelReader
    private let output: ChannelWriter
    private let toPeer: Pipe
    private let fromPeer: Pipe
    private let name: String
    private let timeout: Double

    var bytesSent: UInt64 { output.bytesWritten }
    var bytesReceived: UInt64 { input.bytesRead }

    init(user: String?, host: String, port: UInt16?, path: String, timeout: Double) throws {
        let environment = ProcessInfo.processInfo.environment
        let ssh = (environment["LSTORE_SSH"].flatMap { $0.isEmpty ? nil : $0 } ?? "ssh").split(separator: " ").map(String.init)
        let program = environment["LSTORE_REMOTE_LSTORE"].flatMap { $0.isEmpty ? nil : $0 } ?? "lstore"
        var arguments = Array(ssh.dropFirst())
        if let port { arguments += ["-p", String(port)] }
        arguments += ["-e", "none", "--", (user.map { $0 + "@" } ?? "") + host]
        arguments.append([program, "serve", "--stdio", "--store", path].map(shellQuoted).joined(separator: " "))
        name = "ssh://\(host)"
        self.timeout = timeout
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [ssh[0]] + arguments
        toPeer = Pipe()
        fromPeer = Pipe()
        process.standardInput = toPeer
        process.standardOutput = fromPeer
        do {
            try process.run()
        } catch {
            throw SyncError.connection("cannot run \(ssh[0]): \(error)")
        }
        output = ChannelWriter(fd: toPeer.fileHandleForWriting.fileDescriptor, name: name, timeout: timeout)
        input = ChannelReader(fd: fromPeer.fileHandleForReading.fileDescriptor, name: name, timeout: timeout)
    }

    func exchange<T>(length: Int, bounded: Bool, body: (FrameWriter) throws -> Void,
                     response: (FrameReader) throws -> T) throws -> T {
        do {
            try body(FrameWriter(channel: output))
            try output.flush()
            input.deadline = bounded ? monotonicSeconds() + SyncProtocol.boundedAnswerTimeouts * timeout : nil
            return try response(FrameReader(channel: input))
        } catch let error as SyncError {
            // ssh closed its output: it is exiting, most likely with the reason on standard error.
            if case .truncated = error, exited(within: 2) {
                throw SyncError.connection("\(name): ssh exited with status \(process.terminationStatus)")
            }
            throw error
        } catch let error as FileError where error.errno == EPIPE {
            process.waitUntilExit()
            throw SyncError.connection("\(name): ssh exited with status \(process.terminationStatus)")
        }
    }

    private func exited(within seconds: Double) -> Bool {
        let deadline = monotonicSeconds() + seconds
        while process.isRunning && monotonicSeconds() < deadline { usleep(10_000) }
        return !process.isRunning
    }

    func close() {
        try? toPeer.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// `word` quoted for a POSIX shell (what ssh hands the command line to).
func shellQuoted(_ word: String) -> String {
    "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
