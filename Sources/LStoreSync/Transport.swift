import Foundation
import LStoreHTTP
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

/// HTTP(S) through LStoreHTTP's client (libcurl): each exchange a POST of frames with a
/// Content-Length, the answer's frames streamed back however the server delimits them (to the
/// end of the connection, a Content-Length, chunks). Proxies come from the environment; a
/// connection the server keeps open is used again.
final class HTTPTransport: Transport {
    /// `http://HOST:PORT` or `https://HOST:PORT`, the name errors give.
    let name: String
    let path: String
    let timeout: Double
    private let client: HTTPClient

    var bytesSent: UInt64 { client.bytesSent }
    var bytesReceived: UInt64 { client.bytesReceived }

    /// `authorities` (a PEM file) replace the system's certificates for https.
    init(_ url: RemoteURL, authorities: String?, timeout: Double) throws {
        switch url {
        case .http(_, _, let path), .https(_, _, let path): self.path = path
        case .ssh: preconditionFailure("ssh is not HTTP")
        }
        let text = url.description
        name = String(text.prefix(text.count - path.count))
        self.timeout = timeout
        var options = HTTPClientOptions()
        options.connectTimeout = timeout
        options.stallTimeout = timeout
        options.caFile = authorities
        do {
            client = try HTTPClient(options: options)
        } catch let error as HTTPError {
            throw SyncError.connection("\(name): \(error.message)")
        }
    }

    func exchange<T>(length: Int, bounded: Bool, body: (FrameWriter) throws -> Void,
                     response: (FrameReader) throws -> T) throws -> T {
        let request = HTTPRequest(method: "POST", url: name + path + SyncProtocol.httpPath,
                                  headers: ["Content-Type": "application/x-lstore"], body: .length(length))
        do {
            let exchange = try client.start(request)
            defer { exchange.cancel() }
            let output = ChannelWriter(stream: exchange, name: name, timeout: timeout)
            try body(FrameWriter(channel: output))
            try output.flush()
            precondition(output.bytesWritten == UInt64(length), "request body length")
            try exchange.finishBody()
            let input = ChannelReader(stream: exchange, name: name, timeout: timeout)
            if bounded {
                input.deadline = monotonicSeconds() + SyncProtocol.boundedAnswerTimeouts * timeout
                exchange.deadline = input.deadline
            }
            let answer = try exchange.response()
            guard answer.status == 200 else {
                throw SyncError.connection("\(name)\(path): HTTP \(answer.status)\(answer.reason.isEmpty ? "" : " ")\(answer.reason.printableLine)")
            }
            return try response(FrameReader(channel: input))
        } catch let error as HTTPError {
            switch error.kind {
            case .timeout: throw SyncError.timeout(name, seconds: timeout)
            case .truncated: throw SyncError.truncated(name)
            case .protocolViolation: throw SyncError.protocolViolation("\(name): \(error.message)")
            default: throw SyncError.connection("\(name): \(error.message)")
            }
        }
    }

    func close() {}
}

extension HTTPExchange: ByteStream {}

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
