import Foundation
import LStoreHTTP
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// A blob to push: its digest, size and the file that holds it.
public struct PushBlob: Sendable {
    public var digest: ImageDigest
    public var size: Int64
    public var path: String

    public init(digest: ImageDigest, size: Int64, path: String) {
        self.digest = digest
        self.size = size
        self.path = path
    }
}

/// What a push did.
public struct RegistryPushResult: Sendable {
    /// Blobs the registry had already (a `HEAD` found them).
    public var present = 0
    /// Blobs mounted from another repository of the registry.
    public var mounted = 0
    /// Blobs uploaded, and their bytes.
    public var uploaded = 0
    public var bytesUploaded: Int64 = 0
    /// The manifest's digest, as the registry confirmed it.
    public var manifestDigest: ImageDigest?
    /// Whether the registry answered the manifest with `OCI-Subject`: it took the manifest's
    /// `subject`, and its referrers API lists it.
    public var subjectAccepted = false
}

/// Pushes an image to a registry (distribution-spec "Push"): each blob is looked for with `HEAD`
/// first, then mounted from another repository of the same registry when one is known to hold
/// it, else uploaded (one `PUT` up to `chunkSize`, else `PATCH` chunks and a closing `PUT`);
/// several blobs at once; the manifest last, so that a registry never names an image whose blobs
/// it does not have.
public struct RegistryPusher: Sendable {
    public let reference: RegistryReference
    public let options: RegistryOptions
    /// Blobs larger than this go up in chunks of this size.
    public var chunkSize: Int64 = 64 << 20

    public init(reference: RegistryReference, options: RegistryOptions) {
        self.reference = reference
        self.options = options
    }

    /// Pushes `blobs` (configs and layers), then the manifest under the reference's tag (or digest).
    /// `mountFrom` names repositories of the same registry that may hold some of the blobs.
    public func push(blobs: [PushBlob], manifest: [UInt8], mediaType: String, mountFrom: [String] = []) throws -> RegistryPushResult {
        let session = RegistrySession(reference: reference, options: options, push: true)
        let sources = mountFrom.filter { $0 != reference.repository }
        for source in sources { session.addPullScope(source) }
        var seen: Set<ImageDigest> = []
        let work = PushWork(queue: blobs.filter { seen.insert($0.digest).inserted })
        let workers = max(1, min(options.connections, work.queue.count))
        // The first connection finds the base URL and the token; the others reuse them.
        let first = try RegistryConnection(session: session)
        var connections = [first]
        while connections.count < workers { connections.append(try RegistryConnection(session: session)) }
        let group = DispatchGroup()
        for connection in connections {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                while let blob = work.next() {
                    do {
                        work.record(try upload(blob, connection: connection, mountFrom: sources), size: blob.size)
                    } catch {
                        work.fail(error)
                    }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        if let failure = work.failure { throw failure }
        var result = work.result
        (result.manifestDigest, result.subjectAccepted) = try putManifest(manifest, mediaType: mediaType, connection: first)
        return result
    }

    enum Outcome { case present, mounted, uploaded }

    /// The blobs still to push and what the pushed ones came to, shared by the workers.
    final class PushWork: @unchecked Sendable {
        private let lock = NSLock()
        var queue: [PushBlob]
        private(set) var result = RegistryPushResult()
        private(set) var failure: Error?

        init(queue: [PushBlob]) { self.queue = queue }

        func next() -> PushBlob? {
            lock.withLock { failure == nil && !queue.isEmpty ? queue.removeFirst() : nil }
        }

        func record(_ outcome: Outcome, size: Int64) {
            lock.withLock {
                switch outcome {
                case .present: result.present += 1
                case .mounted: result.mounted += 1
                case .uploaded: result.uploaded += 1; result.bytesUploaded += size
                }
            }
        }

        func fail(_ error: Error) {
            lock.withLock { if failure == nil { failure = error } }
        }
    }

    func upload(_ blob: PushBlob, connection: RegistryConnection, mountFrom: [String]) throws -> Outcome {
        let display = "\(connection.display): blob \(blob.digest.short)"
        let (head, headResponse) = try connection.send("HEAD", try connection.url("blobs/\(blob.digest)"))
        head.cancel()
        if headResponse.status == 200 { return .present }
        guard headResponse.status == 404 else { throw connection.unexpected(head, headResponse, "blob \(blob.digest.short)") }

        var location: String?
        for source in mountFrom {
            let query = "mount=\(RegistrySession.percentEncode(blob.digest.description))&from=\(RegistrySession.percentEncode(source))"
            let (exchange, response) = try connection.send("POST", try connection.url("blobs/uploads/?\(query)"), body: .bytes([]))
            try connection.drain(exchange)
            if response.status == 201 { return .mounted }
            if response.status == 202, let next = response.headers["Location"] {
                location = try connection.absolute(next)
                break
            }
        }
        if location == nil {
            let (exchange, response) = try connection.send("POST", try connection.url("blobs/uploads/"), body: .bytes([]))
            guard response.status == 202, let next = response.headers["Location"] else {
                throw connection.unexpected(exchange, response, "upload of blob \(blob.digest.short)")
            }
            try connection.drain(exchange)
            location = try connection.absolute(next)
        }
        guard var location else { throw RegistryError("\(display): no upload location") }
        let file = try ReadOnlyFile(blob.path)
        guard file.size == blob.size else { throw RegistryError("\(blob.path): \(file.size) bytes, not \(blob.size)") }
        var headers = HTTPHeaders()
        headers.set("Content-Type", "application/octet-stream")
        var offset: Int64 = 0
        if blob.size > chunkSize {
            while offset < blob.size {
                let length = min(chunkSize, blob.size - offset)
                var chunkHeaders = headers
                chunkHeaders.set("Content-Range", "\(offset)-\(offset + length - 1)")
                let (exchange, response) = try connection.send("PATCH", location, headers: chunkHeaders,
                                                               body: .file(file, offset: offset, length: length))
                guard response.status == 202, let next = response.headers["Location"] else {
                    throw connection.unexpected(exchange, response, "upload of blob \(blob.digest.short) at \(offset)")
                }
                try connection.drain(exchange)
                location = try connection.absolute(next)
                offset += length
            }
        }
        let put = location + (location.contains("?") ? "&" : "?") + "digest=" + RegistrySession.percentEncode(blob.digest.description)
        let body: RequestBody = offset < blob.size ? .file(file, offset: offset, length: blob.size - offset) : .bytes([])
        let (exchange, response) = try connection.send("PUT", put, headers: headers, body: body)
        guard response.status == 201 else { throw connection.unexpected(exchange, response, "upload of blob \(blob.digest.short)") }
        try connection.drain(exchange)
        if let confirmed = response.headers["Docker-Content-Digest"], ImageDigest(parsing: confirmed) != blob.digest {
            throw RegistryError("\(display): the registry stored it as \(confirmed.prefix(80))")
        }
        return .uploaded
    }

    /// Puts the manifest under the reference's tag (or digest); returns its digest and whether the
    /// registry answered with `OCI-Subject` (it took the manifest's `subject`).
    func putManifest(_ manifest: [UInt8], mediaType: String, connection: RegistryConnection) throws
        -> (digest: ImageDigest, subjectAccepted: Bool) {
        let digest = ImageDigest(sha256(manifest))
        var headers = HTTPHeaders()
        headers.set("Content-Type", mediaType)
        let (exchange, response) = try connection.send("PUT", try connection.url("manifests/\(reference.manifestReference)"),
                                                       headers: headers, body: .bytes(manifest))
        guard response.status == 201 || response.status == 200 else {
            throw connection.unexpected(exchange, response, "manifest \(reference.manifestReference.prefix(80))")
        }
        try connection.drain(exchange)
        if let confirmed = response.headers["Docker-Content-Digest"], ImageDigest(parsing: confirmed) != digest {
            throw RegistryError("\(connection.display): the registry stored the manifest as \(confirmed.prefix(80)), not \(digest)")
        }
        return (digest, response.headers["OCI-Subject"] != nil)
    }

    /// Checks `credentials` against the registry (`GET /v2/` with them, through its token server
    /// when it has one), as `lstore login` does before it records them.
    public static func checkLogin(registry: String, credentials: RegistryCredentials, options: RegistryOptions) throws {
        var options = options
        options.credentials = credentials
        let reference = RegistryReference(registry: registry, repository: "library/lstore-login", tag: "latest", digest: nil)
        let session = RegistrySession(reference: reference, options: options, push: false, login: true)
        let connection = try RegistryConnection(session: session)
        let base = try session.base(using: connection.client)
        let (exchange, response) = try connection.send("GET", base + "/v2/")
        try connection.drain(exchange)
        guard response.status == 200 else {
            throw RegistryError("\(registry): login refused (\(response.status))", status: response.status)
        }
    }
}
