import Foundation
import LStoreHTTP
import LStoreStore
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How lstore talks to a registry.
public struct RegistryOptions: Sendable {
    /// Plain HTTP allowed off loopback, and certificates not checked (`--insecure`).
    public var insecure = false
    /// Certificates the registry's may chain to (PEM), instead of the system's.
    public var caFile: String?
    /// Credentials to use instead of the Docker configuration's.
    public var credentials: RegistryCredentials?
    /// Where stored credentials come from (`~/.docker/config.json`).
    public var dockerConfig = DockerConfig()
    /// Blobs moved at once, each on its own connection.
    public var connections = 3
    /// Tries of one request that fails with a 429, a 5xx or a broken connection.
    public var attempts = 5
    /// Seconds without a byte moving before a request fails.
    public var stallTimeout: Double = 60
    /// Where Docker Hub's API is (`LSTORE_DOCKER_HUB_URL`; default `https://registry-1.docker.io`).
    public var dockerHubURL: String?

    public init() {}

    /// The defaults, with `LSTORE_DOCKER_HUB_URL` and `LSTORE_REGISTRY_CONNECTIONS` from `environment`.
    public init(environment: [String: String]) throws {
        self.init()
        dockerConfig = DockerConfig(environment: environment)
        if let url = environment["LSTORE_DOCKER_HUB_URL"], !url.isEmpty { dockerHubURL = url }
        if let text = environment["LSTORE_REGISTRY_CONNECTIONS"], !text.isEmpty {
            guard let count = Int(text), (1...64).contains(count) else {
                throw ImportError("LSTORE_REGISTRY_CONNECTIONS '\(text)' is not a number from 1 to 64")
            }
            connections = count
        }
    }
}

/// What a registry said, or failed to: one line naming the registry and what went wrong.
public struct RegistryError: Error, CustomStringConvertible {
    public var description: String
    /// The HTTP status, when the registry answered with one.
    public var status: Int?
    init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }
}

/// A body a request sends, which can be sent again when a request is retried.
enum RequestBody {
    case none
    case bytes([UInt8])
    /// `length` bytes of `file` from `offset`.
    case file(ReadOnlyFile, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .none: 0
        case .bytes(let bytes): Int64(bytes.count)
        case .file(_, _, let length): length
        }
    }
}

/// One registry repository and what every connection to it shares: the base URL (https, or http
/// where allowed), the credentials, and the tokens the registry's auth server gave.
final class RegistrySession: @unchecked Sendable {
    let reference: RegistryReference
    let options: RegistryOptions
    /// The scope asked of a token server: `pull` or `pull,push` on the repository.
    let actions: String
    /// Repositories that a cross-repository mount may read from (`pull` is asked for them too).
    private let state = Mutex(State())

    private struct State {
        var base: String?
        var credentials: RegistryCredentials??
        /// The scheme the registry asked for, once it asked.
        var scheme: AuthScheme?
        var token: String?
        var extraScopes: [String] = []
    }

    enum AuthScheme {
        case basic
        case bearer(realm: String, service: String?)
    }

    /// A session for pulls, or pushes; a `login` session asks its token server for no scope.
    init(reference: RegistryReference, options: RegistryOptions, push: Bool, login: Bool = false) {
        self.reference = reference
        self.options = options
        actions = login ? "" : push ? "pull,push" : "pull"
    }

    /// The registry's name in messages.
    var display: String { reference.registry }

    func makeClient() throws -> HTTPClient {
        var http = HTTPClientOptions()
        http.caFile = options.caFile
        http.verifyCertificates = !options.insecure
        http.stallTimeout = options.stallTimeout
        http.userAgent = "lstore"
        return try HTTPClient(options: http)
    }

    /// A certificate refused: what the user can do about it.
    private func certificateError(_ error: HTTPError) -> RegistryError {
        RegistryError("\(display): \(error.message) (--ca-file names a CA to trust; --insecure skips the check)")
    }

    /// `scheme://host[:port]` of the registry's API: found once, by asking `/v2/` over https, and
    /// over plain http when that fails and the registry is on loopback or `--insecure` allows it.
    func base(using client: HTTPClient) throws -> String {
        if let base = state.withLock({ $0.base }) { return base }
        var firstError: Error?
        for candidate in Self.baseCandidates(reference, options: options) {
            do {
                let (response, body) = try client.fetch(HTTPRequest(method: "GET", url: candidate + "/v2/"), maxBody: 1 << 20)
                guard response.status == 200 || response.status == 401 else {
                    // An HTTPS server asked in plain HTTP after its certificate was refused
                    // answers 400: the certificate is what the user must hear about.
                    if let refused = firstError as? HTTPError, refused.kind == .tls { throw certificateError(refused) }
                    throw RegistryError("\(display): /v2/ answered \(response.status)\(Self.errorDetail(body))", status: response.status)
                }
                if response.status == 401 { try noteChallenge(response) }
                state.withLock { $0.base = candidate }
                return candidate
            } catch let error as HTTPError where error.kind == .tls || error.kind == .protocolViolation || error.kind == .connect {
                if firstError == nil { firstError = error }
                continue
            }
        }
        if let error = firstError as? HTTPError, error.kind == .tls { throw certificateError(error) }
        throw RegistryError("\(display): \(firstError.map { "\($0)" } ?? "unreachable")")
    }

    /// The base URLs tried, in order: https, then plain http only on loopback or with `--insecure`;
    /// for Docker Hub, `LSTORE_DOCKER_HUB_URL` when it is set.
    static func baseCandidates(_ reference: RegistryReference, options: RegistryOptions) -> [String] {
        if reference.registry == RegistryReference.dockerHub, let url = options.dockerHubURL {
            return [url.hasSuffix("/") ? String(url.dropLast()) : url]
        }
        var candidates = ["https://\(reference.apiHost)"]
        if reference.isLoopback || options.insecure { candidates.append("http://\(reference.apiHost)") }
        return candidates
    }

    /// Asks for `pull` on `repository` too in the next token (a cross-repository mount reads it).
    func addPullScope(_ repository: String) {
        state.withLock {
            let scope = "repository:\(repository):pull"
            if !$0.extraScopes.contains(scope) {
                $0.extraScopes.append(scope)
                $0.token = nil
            }
        }
    }

    /// The `Authorization` field to send now, if the registry asked for one.
    func authorization() -> String? {
        state.withLock { state -> String? in
            switch state.scheme {
            case .basic: return (state.credentials ?? nil)?.basicAuthorization
            case .bearer: return state.token.map { "Bearer " + $0 }
            case nil: return nil
            }
        }
    }

    func credentials() throws -> RegistryCredentials? {
        if let known = state.withLock({ $0.credentials }) { return known }
        let found = try options.credentials ?? options.dockerConfig.credentials(for: reference)
        state.withLock { $0.credentials = .some(found) }
        return found
    }

    /// Learns the scheme a 401 asks for (`WWW-Authenticate`).
    func noteChallenge(_ response: HTTPResponse) throws {
        guard let field = response.headers["WWW-Authenticate"] else {
            throw RegistryError("\(display): 401 without WWW-Authenticate", status: 401)
        }
        let (scheme, parameters) = Self.parseChallenge(field)
        switch scheme.lowercased() {
        case "basic":
            state.withLock { $0.scheme = .basic }
        case "bearer":
            guard let realm = parameters["realm"], !realm.isEmpty else {
                throw RegistryError("\(display): a Bearer challenge without a realm", status: 401)
            }
            state.withLock { $0.scheme = .bearer(realm: realm, service: parameters["service"]) }
        default:
            throw RegistryError("\(display): asks for '\(scheme)' authentication, which lstore does not speak", status: 401)
        }
    }

    /// After a 401: what to send next time, or nil when there is nothing new to try (the caller
    /// then reports the 401). `hadAuthorization` says whether the refused request carried one.
    func authorize(after response: HTTPResponse, hadAuthorization: Bool, client: HTTPClient) throws -> Bool {
        try noteChallenge(response)
        let scheme = state.withLock { $0.scheme }
        switch scheme {
        case .basic:
            guard !hadAuthorization, try credentials() != nil else { return false }
            return true
        case .bearer(let realm, let service):
            // A token may have expired: a new one is asked for (the caller retries once).
            try fetchToken(realm: realm, service: service, client: client)
            return true
        case nil:
            return false
        }
    }

    /// Docker's token flow: `GET realm?service=…&scope=…`, with Basic credentials when there are
    /// some; the answer's `token` (or `access_token`) is sent as `Bearer` from then on.
    private func fetchToken(realm: String, service: String?, client: HTTPClient) throws {
        guard realm.hasPrefix("https://") || (realm.hasPrefix("http://")
                && (options.insecure || RegistryReference.isLoopback(host: Self.host(of: realm)))) else {
            throw RegistryError("\(display): token realm '\(realm.prefix(200))' is not https")
        }
        var query: [String] = []
        if let service { query.append("service=" + Self.percentEncode(service)) }
        let scopes = (actions.isEmpty ? [] : ["repository:\(reference.repository):\(actions)"]) + state.withLock { $0.extraScopes }
        query += scopes.map { "scope=" + Self.percentEncode($0) }
        let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        var request = HTTPRequest(method: "GET", url: url)
        if let credentials = try credentials() { request.headers.set("Authorization", credentials.basicAuthorization) }
        let (response, body) = try client.fetch(request, maxBody: 1 << 20)
        guard response.status == 200 else {
            let why = response.status == 401 || response.status == 403 ? "credentials refused" : "answered \(response.status)"
            throw RegistryError("\(display): token server \(Self.host(of: realm)): \(why)\(Self.errorDetail(body))", status: response.status)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let token = (object["token"] as? String) ?? (object["access_token"] as? String), !token.isEmpty,
              token.utf8.count < 64 << 10, token.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw RegistryError("\(display): token server \(Self.host(of: realm)): no token in its answer")
        }
        state.withLock { $0.token = token }
    }

    // MARK: Helpers

    /// The scheme and parameters of a `WWW-Authenticate` value: `Bearer realm="…",service="…"`.
    static func parseChallenge(_ field: String) -> (String, [String: String]) {
        let trimmed = field.trimmingCharacters(in: .whitespaces)
        let scheme = String(trimmed.prefix { $0 != " " })
        var rest = Substring(trimmed.dropFirst(scheme.count))
        var parameters: [String: String] = [:]
        while true {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaped { value.append(character); escaped = false; continue }
                    if character == "\\" { escaped = true; continue }
                    if character == "\"" { break }
                    value.append(character)
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            parameters[key] = value
        }
        return (scheme, parameters)
    }

    static func percentEncode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~:")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    static func host(of url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        return String(rest.prefix { $0 != "/" && $0 != "?" })
    }

    /// ` (CODE: message)` from a registry's error body (`{"errors":[{"code","message"}]}`), if it has one.
    static func errorDetail(_ body: [UInt8]) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.prefix(64 << 10))) as? [String: Any],
              let errors = object["errors"] as? [[String: Any]], let first = errors.first else { return "" }
        let code = first["code"] as? String ?? ""
        let message = (first["message"] as? String ?? "").prefix(200)
        return " (\(code)\(code.isEmpty || message.isEmpty ? "" : ": ")\(message))"
    }
}

/// One connection to a registry: requests with the session's authorization, answered 401s
/// authorized and retried once, 429s, 5xx and broken connections retried with backoff.
final class RegistryConnection: @unchecked Sendable {
    let session: RegistrySession
    let client: HTTPClient
    /// Called before each retry's wait (tests and progress): the attempt, the wait, and why.
    var onRetry: ((Int, Double, String) -> Void)?

    init(session: RegistrySession) throws {
        self.session = session
        self.client = try session.makeClient()
    }

    var display: String { session.display }

    /// A URL of the repository's API: `/v2/REPOSITORY/PATH`.
    func url(_ path: String) throws -> String {
        try session.base(using: client) + "/v2/\(session.reference.repository)/\(path)"
    }

    /// An absolute URL for a `Location` the registry gave (absolute, or a path on it).
    func absolute(_ location: String) throws -> String {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return location }
        let base = try session.base(using: client)
        return base + (location.hasPrefix("/") ? "" : "/") + location
    }

    /// Sends a request and returns its exchange with the final answer's head read, its body
    /// still to read. `retryable` statuses (429, 5xx) and failed connections are tried again,
    /// after 0.5, 1, 2, 4 s (or the `Retry-After` the registry gave, at most 30 s).
    func send(_ method: String, _ url: String, headers: HTTPHeaders = HTTPHeaders(), body: RequestBody = .none) throws
        -> (HTTPExchange, HTTPResponse) {
        var attempt = 0
        var authorized = false
        while true {
            attempt += 1
            var request = HTTPRequest(method: method, url: url, headers: headers)
            if case .none = body {} else { request.body = .length(Int(body.length)) }
            let authorization = session.authorization()
            if let authorization { request.headers.set("Authorization", authorization) }
            var wait: Double?
            var why = ""
            do {
                let exchange = try client.start(request)
                try writeBody(body, to: exchange)
                let response = try exchange.response()
                switch response.status {
                case 401 where !authorized:
                    _ = try? drain(exchange)
                    authorized = true
                    if try session.authorize(after: response, hadAuthorization: authorization != nil, client: client) {
                        attempt -= 1
                        continue
                    }
                    return (exchange, response)
                case 429, 500, 502, 503, 504:
                    let detail = RegistrySession.errorDetail((try? drain(exchange)) ?? [])
                    why = "\(response.status)\(detail)"
                    wait = response.headers["Retry-After"].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }.map { min(max($0, 0), 30) }
                    guard attempt < session.options.attempts else {
                        throw RegistryError("\(display): \(method) \(Self.path(of: url)): \(why), \(attempt) times; gave up", status: response.status)
                    }
                default:
                    return (exchange, response)
                }
            } catch let error as HTTPError where Self.isTransient(error) && attempt < session.options.attempts {
                why = error.message
            } catch let error as HTTPError {
                throw RegistryError("\(display): \(method) \(Self.path(of: url)): \(error.message)")
            }
            let delay = wait ?? 0.5 * Double(1 << min(attempt - 1, 5))
            onRetry?(attempt, delay, why)
            if delay > 0 { usleep(useconds_t(delay * 1_000_000)) }
        }
    }

    /// Whether a failure may pass: a refused or broken connection, a stall.
    static func isTransient(_ error: HTTPError) -> Bool {
        error.kind == .connect || error.kind == .timeout || error.kind == .truncated
    }

    /// The path and query of a URL, for messages.
    static func path(of url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        guard let slash = rest.firstIndex(of: "/") else { return "/" }
        return String(rest[slash...].prefix(300))
    }

    private func writeBody(_ body: RequestBody, to exchange: HTTPExchange) throws {
        switch body {
        case .none:
            break
        case .bytes(let bytes):
            if !bytes.isEmpty { try exchange.write(bytes) }
        case .file(let file, let offset, let length):
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            var done: Int64 = 0
            while done < length {
                let wanted = Int(min(Int64(buffer.count), length - done))
                let got = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: offset + done)
                guard got == wanted else { throw RegistryError("\(file.path): ends before its \(length) bytes") }
                try exchange.write(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
                done += Int64(got)
            }
        }
        try exchange.finishBody()
    }

    /// Reads what is left of an answer's body, at most 64 KiB of it kept (error bodies).
    @discardableResult
    func drain(_ exchange: HTTPExchange) throws -> [UInt8] {
        var kept: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { buffer.deallocate() }
        var total = 0
        while true {
            let count = try exchange.read(into: buffer)
            if count == 0 { break }
            total += count
            if kept.count < 64 << 10 { kept.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<min(count, (64 << 10) - kept.count)])) }
            if total > 1 << 20 { exchange.cancel(); break }
        }
        return kept
    }

    /// Reads a whole answer body of at most `limit` bytes (refused before reading when its
    /// `Content-Length` says more). A broken connection comes out as its transient `HTTPError`,
    /// for the caller to ask again.
    func readBody(_ exchange: HTTPExchange, _ response: HTTPResponse, limit: Int, what: String) throws -> [UInt8] {
        if let length = response.headers["Content-Length"].flatMap({ Int64($0) }), length > Int64(limit) {
            exchange.cancel()
            throw RegistryError("\(display): \(what): \(length) bytes, more than the \(limit >> 20) MiB a JSON document may have")
        }
        var bytes: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { buffer.deallocate() }
        do {
            while true {
                let count = try exchange.read(into: buffer)
                if count == 0 { break }
                guard bytes.count + count <= limit else {
                    exchange.cancel()
                    throw RegistryError("\(display): \(what): more than the \(limit >> 20) MiB a JSON document may have")
                }
                bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        } catch let error as HTTPError where !Self.isTransient(error) {
            throw RegistryError("\(display): \(what): \(error.message)")
        }
        return bytes
    }

    /// An error for an answer the caller did not expect, with the registry's own words.
    func unexpected(_ exchange: HTTPExchange, _ response: HTTPResponse, _ what: String) -> RegistryError {
        let detail = RegistrySession.errorDetail((try? drain(exchange)) ?? [])
        let why: String
        switch response.status {
        case 401: why = (try? session.credentials()) == nil ? "authentication required (lstore login \(session.reference.registry))" : "credentials refused"
        case 403: why = "access denied"
        case 404: why = "not found"
        default: why = "answered \(response.status) \(response.reason)"
        }
        return RegistryError("\(display): \(what): \(why)\(detail)", status: response.status)
    }
}

/// One manifest or index as a registry served it.
struct FetchedDocument {
    var bytes: [UInt8]
    var digest: ImageDigest
    var mediaType: String
}

extension RegistryConnection {
    /// The media types a manifest request accepts: OCI's and Docker schema 2's, indexes and manifests.
    static let manifestAccept = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest]
        .joined(separator: ", ")

    /// `GET /v2/NAME/manifests/REFERENCE`: the document, its digest checked against the one asked
    /// for (by digest) and the one the registry gives in `Docker-Content-Digest`.
    func manifest(_ reference: String, expecting digest: ImageDigest?) throws -> FetchedDocument {
        var headers = HTTPHeaders()
        headers.set("Accept", Self.manifestAccept)
        let what = "manifest \(reference.prefix(80))"
        let (response, bytes) = try document(try url("manifests/\(reference)"), headers: headers, what: what)
        let actual = ImageDigest(sha256(bytes))
        if let digest, actual != digest {
            throw RegistryError("\(display): \(what): its content has digest \(actual.short), not \(digest.short)")
        }
        if let header = response.headers["Docker-Content-Digest"], header.hasPrefix("sha256:"), ImageDigest(parsing: header) != actual {
            throw RegistryError("\(display): \(what): Docker-Content-Digest \(header.prefix(80)) is not the content's digest \(actual)")
        }
        var mediaType = (response.headers["Content-Type"] ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], let type = object["mediaType"] as? String {
            mediaType = type
        } else if !MediaType.indexes.contains(mediaType) && !MediaType.manifests.contains(mediaType),
                  let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] {
            mediaType = object["manifests"] != nil ? MediaType.ociIndex : MediaType.ociManifest
        }
        if mediaType.hasPrefix("application/vnd.docker.distribution.manifest.v1") {
            throw RegistryError("\(display): \(what): a Docker schema 1 manifest, which lstore does not read (push it again with a current tool)")
        }
        return FetchedDocument(bytes: bytes, digest: actual, mediaType: mediaType)
    }

    /// `HEAD /v2/NAME/manifests/REFERENCE`: the digest the registry gives, without a GET (which
    /// Docker Hub counts against its rate limit). Nil when the registry does not say.
    func manifestDigest(_ reference: String) throws -> ImageDigest? {
        guard let response = try headManifest(reference) else { return nil }
        return response.headers["Docker-Content-Digest"].flatMap(ImageDigest.init(parsing:))
    }

    /// Whether the registry holds a manifest under `reference`, asked with `HEAD` (not counted by
    /// Docker Hub's limit).
    func manifestExists(_ reference: String) throws -> Bool {
        do {
            return try headManifest(reference) != nil
        } catch let error as RegistryError where error.status == 404 {
            return false
        }
    }

    /// `HEAD /v2/NAME/manifests/REFERENCE`: the answer when 200, nil for another status but 404,
    /// which throws.
    private func headManifest(_ reference: String) throws -> HTTPResponse? {
        var headers = HTTPHeaders()
        headers.set("Accept", Self.manifestAccept)
        let (exchange, response) = try send("HEAD", try url("manifests/\(reference)"), headers: headers)
        defer { exchange.cancel() }
        guard response.status == 200 else {
            if response.status == 404 { throw unexpected(exchange, response, "manifest \(reference.prefix(80))") }
            return nil
        }
        return response
    }

    /// `GET` of a JSON document (a manifest, an index, a config), whole. A connection that breaks
    /// in its body is asked again from the start (documents are small: not resumed).
    func document(_ url: String, headers: HTTPHeaders = HTTPHeaders(), what: String,
                  limit: Int64 = maximumDocumentSize) throws -> (HTTPResponse, [UInt8]) {
        var attempt = 0
        while true {
            attempt += 1
            let (exchange, response) = try send("GET", url, headers: headers)
            guard response.status == 200 else { throw unexpected(exchange, response, what) }
            do {
                return (response, try readBody(exchange, response, limit: Int(limit), what: what))
            } catch let error as HTTPError {
                guard Self.isTransient(error), attempt < session.options.attempts else {
                    throw RegistryError("\(display): \(what): \(error.message)")
                }
                let delay = 0.25 * Double(min(attempt, 8))
                onRetry?(attempt, delay, error.message)
                usleep(useconds_t(delay * 1_000_000))
            }
        }
    }

    /// A small blob (a config) whole, its size and digest checked.
    func smallBlob(_ descriptor: Descriptor, what: String, limit: Int64 = maximumDocumentSize) throws -> [UInt8] {
        guard descriptor.size <= limit else {
            throw RegistryError("\(display): \(what) \(descriptor.digest.short): \(descriptor.size) bytes, more than the \(limit >> 20) MiB it may have")
        }
        let (_, bytes) = try document(try url("blobs/\(descriptor.digest)"), what: "\(what) \(descriptor.digest.short)", limit: limit)
        guard Int64(bytes.count) == descriptor.size else {
            throw RegistryError("\(display): \(what) \(descriptor.digest.short): \(bytes.count) bytes, not the \(descriptor.size) its descriptor gives")
        }
        let actual = ImageDigest(sha256(bytes))
        guard actual == descriptor.digest else {
            throw RegistryError("\(display): \(what) \(descriptor.digest.short): its content has digest \(actual.short)")
        }
        return bytes
    }
}
