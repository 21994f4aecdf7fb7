import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// What went wrong with a request, as one line naming its URL.
public struct HTTPError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The server (or the proxy) could not be reached.
        case connect
        /// Nothing moved for the stall timeout, or the answer missed its deadline.
        case timeout
        /// The TLS handshake failed: most often a certificate the client does not trust.
        case tls
        /// The server's certificate does not name the host.
        case hostMismatch
        /// More redirects than the client follows, or one it cannot follow.
        case redirect
        /// The connection ended before the answer did.
        case truncated
        /// The server broke HTTP.
        case protocolViolation
        /// The request was used wrongly: a URL curl does not take, a body longer than announced.
        case invalidRequest
        /// Anything else libcurl reports.
        case other
    }

    public let kind: Kind
    public let url: String
    public let message: String

    public init(_ kind: Kind, url: String, _ message: String) {
        self.kind = kind
        self.url = url
        self.message = message
    }

    public var description: String { "\(url): \(message)" }
}

/// A request: method, URL, header fields, and how long its body is.
public struct HTTPRequest: Sendable {
    /// The body a request carries.
    public enum Body: Sendable, Equatable {
        case none
        /// Exactly this many bytes (a Content-Length).
        case length(Int)
        /// As many as the caller writes (chunked on HTTP/1.1).
        case unknownLength
    }

    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: Body

    public init(method: String = "GET", url: String, headers: HTTPHeaders = HTTPHeaders(), body: Body = .none) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// Asks for bytes `range.lowerBound` up to `range.upperBound` (inclusive) with a `Range` field.
    public mutating func setRange(_ range: ClosedRange<UInt64>) {
        headers.set("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")
    }

    /// Asks for the bytes from `offset` to the end.
    public mutating func setRange(from offset: UInt64) {
        headers.set("Range", "bytes=\(offset)-")
    }
}

/// The head of the final answer to a request (after redirects).
public struct HTTPResponse: Sendable {
    public var version: String
    public var status: Int
    public var reason: String
    public var headers: HTTPHeaders
    /// The URL that answered: the request's, or where redirects led.
    public var url: String
}

/// How a client connects: timeouts, redirects, trusted certificates.
public struct HTTPClientOptions: Sendable {
    /// Seconds a connection (TCP and TLS, through a proxy if any) may take.
    public var connectTimeout: Double = 30
    /// Seconds without a byte moving either way before a request fails.
    public var stallTimeout: Double = 60
    /// Redirects followed per request; 0 follows none.
    public var maxRedirects = 10
    /// A PEM file of the certificates a server's may chain to, instead of the system's.
    public var caFile: String?
    /// Whether a server's certificate must chain to a trusted one and name the host. Off only
    /// when the user says a server is not to be checked (`--insecure`).
    public var verifyCertificates = true
    public var userAgent = "lstore"

    public init() {}
}

/// An HTTP client on libcurl: HTTP/1.1 and HTTP/2 (where TLS offers it), keep-alive (one
/// connection cache per client), proxies from the environment (`http_proxy`, `HTTPS_PROXY`,
/// `ALL_PROXY`, `NO_PROXY`, as curl reads them), redirects (an `Authorization` field is not sent
/// to another host or port), TLS 1.2 or later against the system's certificates or a CA file.
/// One request at a time; not for use from several threads at once.
public final class HTTPClient {
    public let options: HTTPClientOptions
    let multi: UnsafeMutableRawPointer
    let easy: UnsafeMutableRawPointer
    /// Bytes sent and received so far by every request: header fields and bodies.
    public internal(set) var bytesSent: UInt64 = 0
    public internal(set) var bytesReceived: UInt64 = 0
    /// Where libcurl writes the detail of a failure.
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    /// The request in flight, if any.
    weak var current: HTTPExchange?

    public init(options: HTTPClientOptions = HTTPClientOptions()) throws {
        self.options = options
        guard curlReady, let multi = curl_multi_init(), let easy = curl_easy_init() else {
            throw HTTPError(.other, url: "", "cannot start libcurl")
        }
        self.multi = multi
        self.easy = easy
    }

    deinit {
        current?.cancel()
        curl_easy_cleanup(easy)
        curl_multi_cleanup(multi)
        errorBuffer.deallocate()
    }

    /// Starts `request`: the caller writes its body (if it has one) to the exchange, then reads
    /// the answer's head and body from it. A request still in flight is cancelled.
    public func start(_ request: HTTPRequest) throws -> HTTPExchange {
        current?.cancel()
        let exchange = try HTTPExchange(client: self, request: request)
        current = exchange
        return exchange
    }

    /// Sends `request`, its body from `body` (called until it returns 0; each call fills up to the
    /// buffer's size), and hands the answer's body to `receive` as it arrives.
    @discardableResult
    public func perform(_ request: HTTPRequest, body: ((UnsafeMutableRawBufferPointer) throws -> Int)? = nil,
                        receive: (UnsafeRawBufferPointer) throws -> Void) throws -> HTTPResponse {
        let exchange = try start(request)
        defer { exchange.cancel() }
        if request.body != .none, let body {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
            defer { buffer.deallocate() }
            while true {
                let count = try body(buffer)
                if count == 0 { break }
                try exchange.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        }
        try exchange.finishBody()
        let response = try exchange.response()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = try exchange.read(into: buffer)
            if count == 0 { break }
            try receive(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return response
    }

    /// Sends `request` with `body` and returns the answer with its whole body, at most `maxBody` bytes.
    public func fetch(_ request: HTTPRequest, body: [UInt8] = [], maxBody: Int = 64 << 20) throws -> (HTTPResponse, [UInt8]) {
        var request = request
        if !body.isEmpty && request.body == .none { request.body = .length(body.count) }
        var sent = 0
        var received: [UInt8] = []
        let response = try perform(request, body: { buffer in
            let count = min(buffer.count, body.count - sent)
            body.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + sent, byteCount: count) }
            sent += count
            return count
        }, receive: { bytes in
            guard received.count + bytes.count <= maxBody else {
                throw HTTPError(.protocolViolation, url: request.url, "the answer is longer than \(maxBody) bytes")
            }
            received.append(contentsOf: bytes)
        })
        return (response, received)
    }
}

/// libcurl's global state, set up once per process.
private let curlReady: Bool = curl_global_init(lstore_curl_global_default) == CURLE_OK

/// Seconds on the monotonic clock (`CLOCK_MONOTONIC`): for timeouts and deadlines.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
