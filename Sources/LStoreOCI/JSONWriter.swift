import Foundation

/// A JSON value written in one canonical form (spec/oci.md §7.3): compact, object keys sorted by
/// their UTF-8 bytes, strings escaped only where JSON requires (`"`, `\`, control characters,
/// as `\b \t \n \f \r` or `\u00xx`), `/` and non-ASCII characters as they are. The same value is
/// the same bytes on every machine, which Foundation's serializer does not promise.
indirect enum JSONValue: Sendable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])

    /// An array of strings.
    static func strings(_ values: [String]) -> JSONValue { .array(values.map { .string($0) }) }

    /// A value `JSONSerialization` read, when it holds only what this type can write (no
    /// fractions, no nulls).
    init?(any value: Any) {
        switch value {
        case let text as String:
            self = .string(text)
        case let number as NSNumber:
            if String(cString: number.objCType) == "c" {
                self = .bool(number.boolValue)
            } else if let exact = Int64(exactly: number.doubleValue), String(describing: number) == String(exact) {
                self = .integer(exact)
            } else {
                return nil
            }
        case let array as [Any]:
            var values: [JSONValue] = []
            for item in array {
                guard let converted = JSONValue(any: item) else { return nil }
                values.append(converted)
            }
            self = .array(values)
        case let object as [String: Any]:
            var members: [String: JSONValue] = [:]
            for (key, item) in object {
                guard let converted = JSONValue(any: item) else { return nil }
                members[key] = converted
            }
            self = .object(members)
        default:
            return nil
        }
    }

    /// The canonical bytes.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        write(into: &out)
        return out
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .string(let text): Self.write(text, into: &out)
        case .integer(let value): out += Array(String(value).utf8)
        case .bool(let value): out += Array((value ? "true" : "false").utf8)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for (index, key) in keys.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.write(key, into: &out)
                out.append(UInt8(ascii: ":"))
                members[key]!.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func write(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += Array("\\\"".utf8)
            case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
            case 0x08: out += Array("\\b".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0x0a: out += Array("\\n".utf8)
            case 0x0c: out += Array("\\f".utf8)
            case 0x0d: out += Array("\\r".utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
