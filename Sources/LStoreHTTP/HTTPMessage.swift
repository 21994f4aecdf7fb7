/// HTTP/1.1 message heads (RFC 9112), read the one way both sides of lstore read them: the
/// server's requests and the client's answers.

/// What is wrong with an HTTP message, as one line.
public struct HTTPMessageError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// Header fields in the order they came: names compare without regard to case, a name may repeat.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}

    public init(_ fields: [(String, String)]) {
        for (name, value) in fields { add(name, value) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name, value))
    }

    /// Replaces every field named `name` with one holding `value`.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        let key = name.lowercased()
        fields.removeAll { $0.name.lowercased() == key }
    }

    /// The first value of `name`, if any.
    public subscript(_ name: String) -> String? {
        let key = name.lowercased()
        return fields.first { $0.name.lowercased() == key }?.value
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        let key = name.lowercased()
        return fields.filter { $0.name.lowercased() == key }.map(\.value)
    }

    public var count: Int { fields.count }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name.lowercased() == $1.name.lowercased() && $0.value == $1.value }
    }
}

/// How a message's body is delimited (RFC 9112 §6.3).
public enum HTTPBodyFraming: Equatable, Sendable {
    /// Exactly this many bytes.
    case length(Int)
    /// Chunks, up to the zero-length one and the trailer.
    case chunked
    /// Up to the end of the connection (answers only).
    case toEnd
}

/// Parsing of start lines and header fields.
public enum HTTPHead {
    /// The longest start line or header field line read.
    public static let maxLineLength = 8192
    /// The most header fields one message may carry.
    public static let maxFields = 100

    /// `METHOD TARGET HTTP/1.x`.
    public static func requestLine(_ line: String) throws -> (method: String, target: String, version: String) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, parts[2].hasPrefix("HTTP/1."),
              parts[0].utf8.allSatisfy(isTokenByte) else {
            throw HTTPMessageError("not an HTTP/1.1 request line: '\(printable(line))'")
        }
        return (String(parts[0]), String(parts[1]), String(parts[2]))
    }

    /// `HTTP/x[.y] CODE [REASON]`.
    public static func statusLine(_ line: String) throws -> (version: String, status: Int, reason: String) {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), parts[1].count == 3, let status = Int(parts[1]), status >= 100 else {
            throw HTTPMessageError("not an HTTP status line: '\(printable(line))'")
        }
        return (String(parts[0]), status, parts.count > 2 ? String(parts[2]) : "")
    }

    /// `NAME: VALUE`, the value without the white space around it.
    public static func field(_ line: String) throws -> (name: String, value: String) {
        guard let colon = line.firstIndex(of: ":") else {
            throw HTTPMessageError("not an HTTP header field: '\(printable(line))'")
        }
        let name = line[..<colon]
        guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
            throw HTTPMessageError("not an HTTP header field name: '\(printable(String(name)))'")
        }
        var value = Substring(line[line.index(after: colon)...])
        while let first = value.first, first == " " || first == "\t" { value.removeFirst() }
        while let last = value.last, last == " " || last == "\t" || last == "\r" { value.removeLast() }
        return (String(name), String(value))
    }

    /// Header fields from `nextLine` up to the empty line that ends them.
    public static func fields(_ nextLine: () throws -> String) throws -> HTTPHeaders {
        var headers = HTTPHeaders()
        while true {
            let line = try nextLine()
            if line.isEmpty { return headers }
            guard headers.count < maxFields else { throw HTTPMessageError("more than \(maxFields) header fields") }
            let (name, value) = try field(line)
            headers.add(name, value)
        }
    }

    /// How the body of a message with `headers` is delimited. A request without Content-Length or
    /// Transfer-Encoding has none (`.length(0)`); an answer runs to the end of the connection.
    /// Transfer-Encoding must end in `chunked`; it and Content-Length together are refused, as are
    /// Content-Lengths that disagree.
    public static func bodyFraming(_ headers: HTTPHeaders, request: Bool) throws -> HTTPBodyFraming {
        let codings = headers.values("Transfer-Encoding").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingSpaces.lowercased() }.filter { !$0.isEmpty }
        let lengths = headers.values("Content-Length").flatMap { $0.split(separator: ",") }.map(\.trimmingSpaces)
        if !codings.isEmpty {
            guard lengths.isEmpty else { throw HTTPMessageError("both Transfer-Encoding and Content-Length") }
            guard codings.last == "chunked", codings.dropLast().allSatisfy({ $0 == "identity" }) else {
                throw HTTPMessageError("Transfer-Encoding '\(printable(codings.joined(separator: ", ")))' is not chunked")
            }
            return .chunked
        }
        if let first = lengths.first {
            guard first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), first.count <= 18, let length = Int(first) else {
                throw HTTPMessageError("Content-Length '\(printable(first))' is not a number")
            }
            guard lengths.allSatisfy({ $0 == first }) else { throw HTTPMessageError("Content-Lengths that disagree") }
            return .length(length)
        }
        return request ? .length(0) : .toEnd
    }

    /// `text` with control bytes shown as `?`, at most 80 characters: safe in a one-line error.
    static func printable(_ text: String) -> String {
        String(text.prefix(80).map { $0.isASCII && ($0.asciiValue! < 0x20 || $0.asciiValue! == 0x7f) ? "?" : $0 })
    }

    /// RFC 9110 token characters.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension StringProtocol {
    /// Without spaces and tabs at either end.
    var trimmingSpaces: String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) as its bytes arrive, in place: chunk sizes, extensions
/// and the trailer are dropped, the data moves to the front of the buffer it came in.
public struct ChunkedDecoder: Sendable {
    /// The longest chunk size line or trailer line accepted.
    public static let maxLineLength = 4096

    private enum State: Sendable {
        case size
        case data(remaining: UInt64)
        case dataEnd
        case trailer
        case done
    }

    private var state = State.size
    private var line: [UInt8] = []
    private var trailerLines = 0
    /// Body bytes decoded so far.
    public private(set) var decodedCount: UInt64 = 0

    public init() {}

    /// True once the last chunk and the trailer have arrived; bytes after them are ignored.
    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Decodes `buffer`'s bytes: the body's bytes among them end up at its start. Returns how many.
    public mutating func decode(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var output = 0
        var index = 0
        let count = buffer.count
        while index < count {
            switch state {
            case .done:
                return output
            case .data(let remaining):
                let take = Int(min(remaining, UInt64(count - index)))
                if output != index {
                    (buffer.baseAddress! + output).copyMemory(from: buffer.baseAddress! + index, byteCount: take)
                }
                output += take
                index += take
                decodedCount += UInt64(take)
                state = remaining == UInt64(take) ? .dataEnd : .data(remaining: remaining - UInt64(take))
            case .size, .dataEnd, .trailer:
                let byte = buffer[index]
                index += 1
                guard byte == UInt8(ascii: "\n") else {
                    line.append(byte)
                    guard line.count <= Self.maxLineLength else {
                        throw HTTPMessageError("a chunked body line longer than \(Self.maxLineLength) bytes")
                    }
                    continue
                }
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                defer { line.removeAll(keepingCapacity: true) }
                try endOfLine()
            }
        }
        return output
    }

    /// The line in `line` is whole: what it says moves the state on.
    private mutating func endOfLine() throws {
        switch state {
        case .size:
            let sizeText = line.prefix { $0 != UInt8(ascii: ";") }
            let digits = String(decoding: sizeText, as: UTF8.self).trimmingSpaces
            guard !digits.isEmpty, digits.count <= 15, let size = UInt64(digits, radix: 16) else {
                throw HTTPMessageError("chunk size '\(HTTPHead.printable(digits))' is not a hexadecimal number")
            }
            state = size == 0 ? .trailer : .data(remaining: size)
        case .dataEnd:
            guard line.isEmpty else { throw HTTPMessageError("a chunk longer than its size") }
            state = .size
        case .trailer:
            if line.isEmpty {
                state = .done
            } else {
                trailerLines += 1
                guard trailerLines <= HTTPHead.maxFields else { throw HTTPMessageError("more than \(HTTPHead.maxFields) trailer fields") }
            }
        case .data, .done:
            break
        }
    }
}
