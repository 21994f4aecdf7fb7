import LStoreStore
import LStoreTree

/// The protocol's fixed numbers and limits. See spec/protocol.md.
public enum SyncProtocol {
    public static let version: UInt32 = 1
    /// The HTTP path every request is POSTed to.
    public static let httpPath = "/lstore/v1"
    static let frameHeaderSize = 12
    /// Longest payload of any frame but `object`.
    static let maxControlFrame = 4 << 20
    /// Longest `object` frame: an entry header and the largest stored object.
    static let maxObjectFrame = PackEntry.headerSize + PackEntry.maxObjectSize
    /// Most ids one `have` or `fetch` request may name.
    static let maxIdsPerRequest = 65536
    /// Most refs a peer may list.
    static let maxRefs = 100_000
    /// An answer that is not a stream of objects must arrive whole within this many timeouts.
    static let boundedAnswerTimeouts = 3.0
    /// Longest token.
    static let maxTokenLength = 4096
    /// Longest request body an HTTP server accepts (a push batch is at most `pushBatchBytes` of objects).
    static let maxRequestBody = 512 << 20
    /// How much object data one push request carries; each batch is durable on the peer before the next.
    public static let pushBatchBytes = 64 << 20
}

/// Frame types. See spec/protocol.md, "Frames".
enum FrameType: UInt32, CustomStringConvertible {
    case request = 1
    case info = 2
    case ref = 3
    case ids = 4
    case bits = 5
    case object = 6
    case update = 7
    case result = 8
    case error = 9
    case end = 10

    var description: String {
        switch self {
        case .request: "request"
        case .info: "info"
        case .ref: "ref"
        case .ids: "ids"
        case .bits: "bits"
        case .object: "object"
        case .update: "update"
        case .result: "result"
        case .error: "error"
        case .end: "end"
        }
    }
}

/// The operation a request asks for.
enum Operation: UInt8 {
    case refs = 1
    case have = 2
    case fetch = 3
    case push = 4
    case updateRef = 5
}

/// The error codes of an `error` frame.
public enum PeerErrorCode: UInt32, Sendable {
    case badRequest = 1
    case unauthorized = 2
    case readOnly = 3
    case refMoved = 4
    case missingObject = 5
    case unsupportedVersion = 6
    case failed = 7
}

/// What goes wrong talking to a peer, each as the one line lstore prints.
public enum SyncError: Error, CustomStringConvertible, Equatable {
    /// The stream ended before a message did.
    case truncated(String)
    /// Nothing arrived (or nothing could be sent) for too long.
    case timeout(String, seconds: Double)
    /// Bytes that break the protocol: an unknown frame, a length beyond the limits, an object never asked for.
    case protocolViolation(String)
    /// The peer answered with an error.
    case peer(PeerErrorCode, String)
    case invalidURL(String)
    case unknownRemote(String)
    /// The peer cannot be reached, or the carrier (HTTP, ssh) failed.
    case connection(String)
    /// The transfer cannot be done as asked: no such ref, a ref that would not move forward, …
    case refused(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .truncated(let name): "\(name): the peer's stream ended in the middle of a message"
        case .timeout(let name, let seconds): "\(name): the peer did not answer in time (\(Int(seconds)) s); gave up"
        case .protocolViolation(let message): "protocol violation: \(message)"
        case .peer(_, let message): "the peer refused: \(message)"
        case .invalidURL(let url): "'\(url)' is not a remote URL (http://HOST:PORT[/PATH] or ssh://[USER@]HOST[:PORT]/STORE)"
        case .unknownRemote(let name): "no remote named '\(name)' (lstore remote add NAME URL)"
        case .connection(let message), .refused(let message), .invalidArgument(let message): message
        }
    }
}

/// Writes frames: a 12-byte header (`u32 type`, `u64 payload length`) and the payload.
struct FrameWriter {
    let channel: ChannelWriter

    func frame(_ type: FrameType, _ payload: [UInt8]) throws {
        try payload.withUnsafeBytes { try frame(type, $0) }
    }

    func frame(_ type: FrameType, _ payload: UnsafeRawBufferPointer) throws {
        var header = ByteWriter()
        header.u32(type.rawValue)
        header.u64(UInt64(payload.count))
        try channel.write(header.bytes)
        try channel.write(payload)
    }

    func end() throws {
        try frame(.end, [])
        try channel.flush()
    }

    func error(_ code: PeerErrorCode, _ message: String) throws {
        var payload = ByteWriter()
        payload.u32(code.rawValue)
        payload.append(Array(message.utf8.prefix(4000)))
        try frame(.error, payload.bytes)
        try end()
    }

    /// Bytes a frame of `payloadLength` bytes takes on the wire.
    static func size(payload payloadLength: Int) -> Int { SyncProtocol.frameHeaderSize + payloadLength }
}

/// Reads frames, refusing unknown types and payloads longer than the limits before reading them.
struct FrameReader {
    let channel: ChannelReader

    /// The next frame. An `error` frame from the peer is thrown as `SyncError.peer`.
    func next(allowing types: Set<FrameType>) throws -> (type: FrameType, payload: [UInt8]) {
        let header = try channel.read(exactly: SyncProtocol.frameHeaderSize)
        var reader = WireReader(header, what: channel.name)
        let rawType = try reader.u32()
        let length = try reader.u64()
        guard let type = FrameType(rawValue: rawType) else {
            throw SyncError.protocolViolation("\(channel.name): unknown frame type \(rawType)")
        }
        let cap = type == .object ? SyncProtocol.maxObjectFrame : SyncProtocol.maxControlFrame
        guard length <= UInt64(cap) else {
            throw SyncError.protocolViolation("\(channel.name): a \(type) frame of \(length) bytes (at most \(cap))")
        }
        let payload = try channel.read(exactly: Int(length))
        if type == .error {
            var error = WireReader(payload, what: channel.name)
            let code = PeerErrorCode(rawValue: (try? error.u32()) ?? 0) ?? .failed
            throw SyncError.peer(code, String(decoding: error.rest(), as: UTF8.self).printableLine)
        }
        guard types.contains(type) else {
            throw SyncError.protocolViolation("\(channel.name): a \(type) frame where \(types.map(\.description).sorted().joined(separator: " or ")) belongs")
        }
        return (type, payload)
    }

    func expectEnd() throws {
        _ = try next(allowing: [.end])
    }
}

/// Reads a payload; too few bytes throw a protocol violation, never trap.
typealias WireReader = OwnedByteReader<SyncError>

extension OwnedByteReader<SyncError> {
    /// The next `count` bytes, as a slice of the payload.
    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> { try slice(count) }

    func expectEnd() throws {
        guard isAtEnd else { throw SyncError.protocolViolation("\(what): \(remaining) bytes too many in a frame") }
    }
}

extension SyncError: TruncatedInputError {
    /// A payload shorter than its fields.
    public init(truncated what: String, at offset: Int, needed: Int) {
        self = .protocolViolation("\(what): a frame shorter than its fields")
    }
}

extension String {
    /// The text with control characters shown as `?`, on one line: safe to print whatever a peer sent.
    var printableLine: String {
        String(unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : Character($0) })
    }
}

extension ByteWriter {
    mutating func objectName(_ name: ObjectName) {
        u8(name.kind.rawValue)
        digest(name.id)
    }
}

extension WireReader {
    mutating func objectName() throws -> ObjectName {
        let raw = try u8()
        guard let kind = ObjectKind(rawValue: raw) else { throw SyncError.protocolViolation("\(what): unknown object kind \(raw)") }
        return ObjectName(kind: kind, id: try digest())
    }
}
