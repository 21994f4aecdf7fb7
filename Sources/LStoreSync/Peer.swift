import LStoreStore
import LStoreTree

/// What a peer said about itself.
public struct PeerInfo: Sendable {
    public var version: UInt32
    public var blockSize: Int
    public var readOnly: Bool
    public var pushNeedsToken: Bool
    public var refs: [(name: String, commit: Digest)]
}

/// The client side of spec/protocol.md: one method per operation, over any transport.
public final class Peer {
    public let url: RemoteURL
    private let transport: Transport
    private let token: [UInt8]

    /// Connects to `url` (ssh starts its process now; HTTP connects at the first request). `timeout` bounds
    /// every wait for the peer, in seconds.
    /// `authorities` (a PEM file) are the certificates an https peer's may chain to; by default, the system's.
    public init(url: RemoteURL, token: String?, authorities: String? = nil, timeout: Double = 60) throws {
        self.url = url
        self.token = Array((token ?? "").utf8)
        guard self.token.count <= SyncProtocol.maxTokenLength else { throw SyncError.invalidArgument("the token is longer than \(SyncProtocol.maxTokenLength) bytes") }
        switch url {
        case .http, .https:
            transport = try HTTPTransport(url, authorities: authorities, timeout: timeout)
        case .ssh(let user, let host, let port, let path):
            transport = try StdioTransport(user: user, host: host, port: port, path: path, timeout: timeout)
        }
    }

    deinit { transport.close() }

    /// Bytes that crossed the network both ways so far.
    public var bytesOnWire: UInt64 { transport.bytesSent + transport.bytesReceived }
    public var bytesReceived: UInt64 { transport.bytesReceived }
    public var bytesSent: UInt64 { transport.bytesSent }

    private func requestFrame(_ operation: Operation) -> [UInt8] {
        var out = ByteWriter()
        out.u32(SyncProtocol.version)
        out.u8(operation.rawValue)
        out.u16(UInt16(token.count))
        out.append(token)
        return out.bytes
    }

    /// One request of small frames, answered by `response`.
    private func exchange<T>(_ operation: Operation, _ frames: [(FrameType, [UInt8])],
                             response: (FrameReader) throws -> T) throws -> T {
        let all = [(FrameType.request, requestFrame(operation))] + frames + [(FrameType.end, [])]
        let length = all.reduce(0) { $0 + FrameWriter.size(payload: $1.1.count) }
        return try transport.exchange(length: length, bounded: operation != .fetch, body: { writer in
            for (type, payload) in all { try writer.frame(type, payload) }
        }, response: response)
    }

    public func info() throws -> PeerInfo {
        try exchange(.refs, []) { reader in
            let (_, payload) = try reader.next(allowing: [.info])
            var info = WireReader(payload, what: "info")
            let version = try info.u32()
            let blockSize = Int(try info.u32())
            let flags = try info.u8()
            guard version == SyncProtocol.version else {
                throw SyncError.protocolViolation("the peer speaks protocol version \(version), this lstore \(SyncProtocol.version)")
            }
            var refs: [(String, Digest)] = []
            var names = Set<String>()
            while true {
                let (type, payload) = try reader.next(allowing: [.ref, .end])
                if type == .end { break }
                guard refs.count < SyncProtocol.maxRefs else {
                    throw SyncError.protocolViolation("the peer lists more than \(SyncProtocol.maxRefs) refs")
                }
                var ref = WireReader(payload, what: "ref")
                let commit = try ref.digest()
                guard let name = String(validating: ref.rest(), as: UTF8.self) else {
                    throw SyncError.protocolViolation("a ref name that is not UTF-8")
                }
                do {
                    try validateRefName(name)
                } catch {
                    throw SyncError.protocolViolation("the peer lists \(error)")
                }
                guard names.insert(name).inserted else { throw SyncError.protocolViolation("the peer lists ref '\(name)' twice") }
                refs.append((name, commit))
            }
            return PeerInfo(version: version, blockSize: blockSize, readOnly: flags & 1 != 0,
                            pushNeedsToken: flags & 2 != 0, refs: refs)
        }
    }

    private static func idsFrames(_ names: [ObjectName]) -> [(FrameType, [UInt8])] {
        precondition(names.count <= SyncProtocol.maxIdsPerRequest)
        var frames: [(FrameType, [UInt8])] = []
        for start in stride(from: 0, to: names.count, by: 65536) {
            var out = ByteWriter()
            for name in names[start..<min(start + 65536, names.count)] { out.objectName(name) }
            frames.append((.ids, out.bytes))
        }
        return frames
    }

    /// Which of `names` the peer has.
    func have(_ names: [ObjectName]) throws -> [Bool] {
        try exchange(.have, Self.idsFrames(names)) { reader in
            let (_, bits) = try reader.next(allowing: [.bits])
            try reader.expectEnd()
            guard bits.count == names.count, bits.allSatisfy({ $0 <= 1 }) else {
                throw SyncError.protocolViolation("the peer answered \(bits.count) bits for \(names.count) ids")
            }
            return bits.map { $0 == 1 }
        }
    }

    /// Asks for `names`; hands each object frame's payload (a pack entry) to `receive` as it comes.
    public func fetch(_ names: [ObjectName], receive: ([UInt8]) throws -> Void) throws {
        try exchange(.fetch, Self.idsFrames(names)) { reader in
            for (index, name) in names.enumerated() {
                let (type, payload) = try reader.next(allowing: [.object, .end])
                guard type == .object else {
                    throw SyncError.protocolViolation("\(url) did not send \(names.count - index) of the objects it was asked for (\(name.kind) \(name.id.short) first)")
                }
                try receive(payload)
            }
            try reader.expectEnd()
        }
    }

    /// Sends objects of `store`, each as its pack entry; the peer stores them durably before it answers.
    func push(_ names: [ObjectName], from store: Store) throws -> (objects: Int, bytes: Int) {
        let request = requestFrame(.push)
        var length = FrameWriter.size(payload: request.count) + FrameWriter.size(payload: 0)
        for name in names {
            guard let entry = store.packEntryLength(name.id, kind: name.kind) else { throw StoreError.missingObject(name.kind, name.id) }
            length += FrameWriter.size(payload: entry)
        }
        return try transport.exchange(length: length, bounded: false, body: { writer in
            try writer.frame(.request, request)
            var buffer: [UInt8] = []
            for name in names {
                let count = try store.readPackEntry(name.id, kind: name.kind, into: &buffer)
                try buffer.withUnsafeBytes { try writer.frame(.object, UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            }
            try writer.frame(.end, [])
        }, response: { reader in
            let (_, payload) = try reader.next(allowing: [.result])
            try reader.expectEnd()
            var result = WireReader(payload, what: "result")
            return (Int(clamping: try result.u64()), Int(clamping: try result.u64()))
        })
    }

    /// Moves a ref on the peer by compare-and-swap.
    func updateRef(_ update: RefUpdate) throws {
        try exchange(.updateRef, [(.update, update.encoded())]) { reader in
            _ = try reader.next(allowing: [.result])
            try reader.expectEnd()
        }
    }
}
