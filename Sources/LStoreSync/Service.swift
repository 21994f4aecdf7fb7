import Foundation
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Who may do what on a served store.
public struct ServePolicy: Sendable {
    /// SHA-256 of each accepted token; empty for none.
    var tokenDigests: [Digest]
    /// Refuse every push.
    public var readOnly: Bool
    /// Ask for a token for pulls too (pushes always need one when there are tokens).
    public var privatePulls: Bool
    /// The peer is already authenticated (ssh): no token is asked for.
    public var trusted: Bool

    public init(tokens: [String], readOnly: Bool, privatePulls: Bool, trusted: Bool) {
        tokenDigests = tokens.map { sha256(Array($0.utf8)) }
        self.readOnly = readOnly
        self.privatePulls = privatePulls
        self.trusted = trusted
    }

    /// Compares `token` with every accepted token in constant time: the SHA-256s are compared,
    /// every byte of every one, so neither a token's length nor its first difference shows.
    func accepts(_ token: [UInt8]) -> Bool {
        let given = sha256(token).bytes
        var matched: UInt8 = 0
        for digest in tokenDigests {
            var difference: UInt8 = 0
            for (a, b) in zip(given, digest.bytes) { difference |= a ^ b }
            matched |= difference == 0 ? 1 : 0
        }
        return matched == 1 && !token.isEmpty
    }

    /// Reads a token file: one token per line, blank lines and `#` comments ignored.
    public static func readTokens(_ path: String) throws -> [String] {
        let bytes = try readSmallFile(path, limit: 1 << 20)
        return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }
}

/// Answers one request on a store: the server side of spec/protocol.md, whatever carries it.
public struct Service: Sendable {
    public let storePath: String
    public let policy: ServePolicy

    public init(storePath: String, policy: ServePolicy) {
        self.storePath = storePath
        self.policy = policy
    }

    /// Reads one request from `input` and writes the answer to `output`. Errors the client caused
    /// or should know about are answered with an `error` frame; thrown errors mean the stream is
    /// broken and must be closed.
    func answer(_ input: ChannelReader, _ output: ChannelWriter) throws {
        let frames = FrameReader(channel: input)
        let out = FrameWriter(channel: output)
        let (_, payload) = try frames.next(allowing: [.request])
        var reader = WireReader(payload, what: "request")
        let version = try reader.u32()
        let rawOperation = try reader.u8()
        let tokenLength = Int(try reader.u16())
        guard tokenLength <= SyncProtocol.maxTokenLength else { throw SyncError.protocolViolation("token too long") }
        let token = Array(try reader.take(tokenLength))
        try reader.expectEnd()
        /// Refuses the request: its frames are read (and dropped) first, so the stream stays in step.
        func refuse(_ code: PeerErrorCode, _ message: String) throws {
            while try frames.next(allowing: [.ids, .object, .update, .end]).type != .end {}
            try out.error(code, message)
        }
        guard version == SyncProtocol.version else {
            return try refuse(.unsupportedVersion, "protocol version \(version) is not supported (this server speaks \(SyncProtocol.version))")
        }
        guard let operation = Operation(rawValue: rawOperation) else {
            return try refuse(.badRequest, "unknown operation \(rawOperation)")
        }
        let writes = operation == .push || operation == .updateRef
        if writes && policy.readOnly { return try refuse(.readOnly, "this server is read-only") }
        let needsToken = !policy.trusted && !policy.tokenDigests.isEmpty && (writes || policy.privatePulls)
        if needsToken && !policy.accepts(token) {
            return try refuse(.unauthorized, token.isEmpty ? "a token is required (--token-file or LSTORE_TOKEN)" : "the token is not valid")
        }
        let store = try Store.open(at: storePath)
        do {
            switch operation {
            case .refs: try refs(store, frames, out)
            case .have: try have(store, frames, out)
            case .fetch: try fetch(store, frames, out)
            case .push: try push(store, frames, out)
            case .updateRef: try updateRef(store, frames, out)
            }
        } catch let error as StoreError {
            let code: PeerErrorCode = switch error {
            case .refMoved: .refMoved
            case .missingObject: .missingObject
            default: .failed
            }
            try out.error(code, "\(error)")
        }
    }

    private func refs(_ store: Store, _ frames: FrameReader, _ out: FrameWriter) throws {
        try frames.expectEnd()
        var info = ByteWriter()
        info.u32(SyncProtocol.version)
        info.u32(UInt32(store.blockSize))
        info.u8((policy.readOnly ? 1 : 0) | (policy.tokenDigests.isEmpty || policy.trusted ? 0 : 2))
        try out.frame(.info, info.bytes)
        for (name, commit) in try store.refs() {
            var ref = ByteWriter()
            ref.digest(commit)
            ref.append(Array(name.utf8))
            try out.frame(.ref, ref.bytes)
        }
        try out.end()
    }

    /// Reads `ids` frames up to the `end`: at most `maxIdsPerRequest` names.
    private func readNames(_ frames: FrameReader) throws -> [ObjectName] {
        var names: [ObjectName] = []
        while true {
            let (type, payload) = try frames.next(allowing: [.ids, .end])
            if type == .end { return names }
            var reader = WireReader(payload, what: "ids")
            while !reader.isAtEnd {
                names.append(try reader.objectName())
                guard names.count <= SyncProtocol.maxIdsPerRequest else {
                    throw SyncError.protocolViolation("more than \(SyncProtocol.maxIdsPerRequest) ids in one request")
                }
            }
        }
    }

    private func have(_ store: Store, _ frames: FrameReader, _ out: FrameWriter) throws {
        let names = try readNames(frames)
        try out.frame(.bits, names.map { store.contains($0.id, kind: $0.kind) ? 1 : 0 })
        try out.end()
    }

    private func fetch(_ store: Store, _ frames: FrameReader, _ out: FrameWriter) throws {
        let names = try readNames(frames)
        var buffer: [UInt8] = []
        for name in names {
            let length = try store.readPackEntry(name.id, kind: name.kind, into: &buffer)
            try buffer.withUnsafeBytes { try out.frame(.object, UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        }
        try out.end()
    }

    private func push(_ store: Store, _ frames: FrameReader, _ out: FrameWriter) throws {
        let writer = try StoreWriter(store: store)
        var verifier = EntryVerifier()
        var objects = 0
        var bytes = 0
        do {
            while true {
                let (type, payload) = try frames.next(allowing: [.object, .end])
                if type == .end { break }
                let entry = try payload.withUnsafeBytes { try verifier.verify($0, what: "pushed object") }
                if writer.claim(entry.id, kind: entry.kind) {
                    try payload.withUnsafeBytes { raw in
                        // A raw object's tried codec is a claim this store cannot check without
                        // compressing again: it is not kept (spec/store.md §7.1).
                        try writer.addStored(entry.kind, id: entry.id, codec: entry.codec, level: entry.codec == .none ? 0 : entry.level,
                                             rawLength: entry.rawLength, stored: UnsafeRawBufferPointer(rebasing: raw[PackEntry.headerSize...]))
                    }
                    objects += 1
                    bytes += entry.storedLength
                }
            }
        } catch {
            // What arrived whole and verified is kept, so that the push, run again, need not resend
            // it; unless writing itself failed (a full disk), when the pack cannot be trusted.
            if !(error is FileError) { _ = try? writer.finish() }
            throw error
        }
        try writer.finish()
        var result = ByteWriter()
        result.u64(UInt64(objects))
        result.u64(UInt64(bytes))
        try out.frame(.result, result.bytes)
        try out.end()
    }

    private func updateRef(_ store: Store, _ frames: FrameReader, _ out: FrameWriter) throws {
        let (_, payload) = try frames.next(allowing: [.update])
        try frames.expectEnd()
        let update = try RefUpdate(decoding: payload)
        try validateRefName(update.name)
        // The ref moves only onto a commit whose every object is here.
        let complete = try Walk.ancestors(of: store.refs().map(\.commit), in: store)
        var walk = Walk(store: store, complete: complete) { names in
            throw StoreError.missingObject(names[0].kind, names[0].id)
        }
        try walk.run(from: update.new)
        try store.updateRef(update.name, to: update.new, expecting: update.expected, message: "push")
        try out.frame(.result, [])
        try out.end()
    }
}

/// The payload of an `update` frame: move ref `name` to `new` if it is what `expected` says.
struct RefUpdate {
    var name: String
    var new: Digest
    var expected: RefExpectation

    init(name: String, new: Digest, expected: RefExpectation) {
        self.name = name
        self.new = new
        self.expected = expected
    }

    func encoded() -> [UInt8] {
        var out = ByteWriter()
        switch expected {
        case .any:
            out.u8(0)
            out.digest(.zero)
        case .absent:
            out.u8(1)
            out.digest(.zero)
        case .value(let old):
            out.u8(2)
            out.digest(old)
        }
        out.digest(new)
        out.append(Array(name.utf8))
        return out.bytes
    }

    init(decoding payload: [UInt8]) throws {
        var reader = WireReader(payload, what: "update")
        let mode = try reader.u8()
        let old = try reader.digest()
        new = try reader.digest()
        switch mode {
        case 0: expected = .any
        case 1: expected = .absent
        case 2: expected = .value(old)
        default: throw SyncError.protocolViolation("update: unknown expectation \(mode)")
        }
        guard let name = String(validating: reader.rest(), as: UTF8.self) else {
            throw SyncError.protocolViolation("update: the ref name is not UTF-8")
        }
        self.name = name
    }
}

