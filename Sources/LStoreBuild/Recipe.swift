import Foundation

/// A recipe that cannot be read, or an instruction that cannot be carried out: `FILE:LINE: what`.
public struct RecipeError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var message: String

    public init(file: String, line: Int, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}

/// One instruction of a recipe, as written: the keyword, its flags (`--chown=…`) and the rest.
public struct Instruction: Equatable, Sendable {
    /// Upper case: `RUN`, `COPY` ...
    public var keyword: String
    /// The line the instruction starts on.
    public var line: Int
    /// `--name=value` flags before the arguments, in order (`--name` alone has an empty value).
    public var flags: [(name: String, value: String)]
    /// What follows the keyword and the flags, continuation lines joined, trimmed.
    public var arguments: String
    /// The JSON array form (`RUN ["a", "b"]`) when the arguments are one.
    public var json: [String]?
    /// The instruction on one line, as `lstore log` shows it and the image history records it.
    public var text: String

    public static func == (a: Instruction, b: Instruction) -> Bool {
        a.keyword == b.keyword && a.line == b.line && a.flags.map(\.name) == b.flags.map(\.name)
            && a.flags.map(\.value) == b.flags.map(\.value) && a.arguments == b.arguments && a.json == b.json && a.text == b.text
    }
}

/// A recipe (spec/build.md §2): the Dockerfile syntax, one stage. `FROM` comes first (after `ARG`s
/// that it may use), then the instructions that make the layer.
public struct Recipe: Sendable {
    /// The file's path, as errors name it.
    public var file: String
    /// The file's bytes, as the build commit records them.
    public var text: [UInt8]
    /// `ARG`s before `FROM`: names and defaults, usable in `FROM` only.
    public var globalArguments: [Instruction]
    public var from: Instruction
    public var instructions: [Instruction]
    /// The escape character (`# escape=` directive): `\\` or a backtick.
    public var escape: Character

    /// The instructions a recipe may hold; any other is refused with its line.
    public static let supported: Set<String> = ["FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "SHELL", "LABEL"]
    /// Docker's instructions that an lstore layer has no use for, and why.
    static let refused: [String: String] = [
        "CMD": "a layer is booted, not run as a container",
        "ENTRYPOINT": "a layer is booted, not run as a container",
        "HEALTHCHECK": "a layer is booted, not run as a container",
        "STOPSIGNAL": "a layer is booted, not run as a container",
        "EXPOSE": "a layer is booted, not run as a container",
        "VOLUME": "a layer is booted, not run as a container",
        "ONBUILD": "recipes inherit by FROM alone",
        "MAINTAINER": "deprecated by Docker: use LABEL maintainer=…",
    ]
    /// The longest recipe read.
    public static let maximumSize = 1 << 20

    /// The file names a recipe directory is looked for under, in this order.
    public static let fileNames = ["Lstorefile", "Containerfile", "Dockerfile"]

    public init(file: String, text: [UInt8]) throws {
        self.file = file
        self.text = text
        func error(_ line: Int, _ message: String) -> RecipeError { RecipeError(file: file, line: line, message) }
        guard text.count <= Self.maximumSize else { throw error(0, "larger than \(Self.maximumSize) bytes") }
        guard !text.contains(0), let string = String(validating: text, as: UTF8.self) else { throw error(0, "not UTF-8 text") }
        var escape: Character = "\\"
        let lines = string.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
        // Parser directives: `# name=value` lines before anything else.
        var index = 0
        var directives: Set<String> = []
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { break }
            let name = line[line.index(after: line.startIndex)..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter }) else { break }
            guard directives.insert(name).inserted else { throw error(index + 1, "directive '\(name)' given twice") }
            if name == "escape" {
                guard value == "\\" || value == "`" else { throw error(index + 1, "escape directive '\(value)': \\ or `") }
                escape = Character(value)
            }
            index += 1
        }
        var all: [Instruction] = []
        while index < lines.count {
            let start = index
            var logical = ""
            var lineText = lines[index].trimmingCharacters(in: .whitespaces)
            index += 1
            if lineText.isEmpty || lineText.hasPrefix("#") { continue }
            // Continuation lines: a line ending in the escape character goes on with the next one;
            // comment lines and empty lines in between are left out.
            while lineText.last == escape {
                logical += String(lineText.dropLast())
                var next: String?
                while index < lines.count {
                    let candidate = lines[index].trimmingCharacters(in: .whitespaces)
                    index += 1
                    if candidate.hasPrefix("#") || candidate.isEmpty { continue }
                    next = candidate
                    break
                }
                guard let next else {
                    lineText = ""
                    break
                }
                lineText = next
            }
            logical += lineText
            all.append(try Self.instruction(logical.trimmingCharacters(in: .whitespaces), line: start + 1, error: error))
        }
        var globals: [Instruction] = []
        var rest = all[...]
        while let first = rest.first, first.keyword == "ARG" {
            globals.append(first)
            rest = rest.dropFirst()
        }
        guard let from = rest.first else {
            throw error(all.last?.line ?? 0, all.isEmpty ? "empty: a recipe starts with FROM" : "no FROM")
        }
        guard from.keyword == "FROM" else {
            throw error(from.line, "\(from.keyword) before FROM: a recipe starts with FROM (ARG may come before it)")
        }
        if let second = rest.dropFirst().first(where: { $0.keyword == "FROM" }) {
            throw error(second.line, "FROM: a second FROM: multi-stage recipes are not supported")
        }
        self.escape = escape
        self.globalArguments = globals
        self.from = from
        self.instructions = Array(rest.dropFirst())
    }

    /// Reads the recipe file at `path`.
    public init(path: String, display: String? = nil) throws {
        let display = display ?? path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RecipeError(file: display, line: 0, "cannot be read")
        }
        try self.init(file: display, text: Array(data))
    }

    /// One logical line as an instruction: keyword, flags, arguments, JSON form.
    static func instruction(_ text: String, line: Int, error: (Int, String) -> RecipeError) throws -> Instruction {
        let keywordEnd = text.firstIndex { $0.isWhitespace } ?? text.endIndex
        let keyword = text[..<keywordEnd].uppercased()
        guard Self.supported.contains(keyword) else {
            if let why = Self.refused[keyword] { throw error(line, "\(keyword): not supported: \(why)") }
            throw error(line, "unknown instruction '\(text[..<keywordEnd])'")
        }
        var rest = Substring(text[keywordEnd...]).drop { $0.isWhitespace }
        var flags: [(String, String)] = []
        if ["RUN", "COPY", "ADD", "FROM"].contains(keyword) {
            while rest.hasPrefix("--") {
                let end = rest.firstIndex { $0.isWhitespace } ?? rest.endIndex
                let flag = rest[rest.index(rest.startIndex, offsetBy: 2)..<end]
                if let equals = flag.firstIndex(of: "=") {
                    flags.append((String(flag[..<equals]), String(flag[flag.index(after: equals)...])))
                } else {
                    flags.append((String(flag), ""))
                }
                rest = rest[end...].drop { $0.isWhitespace }
            }
        }
        let arguments = String(rest)
        guard !arguments.isEmpty else { throw error(line, "\(keyword) needs arguments") }
        var json: [String]?
        if arguments.hasPrefix("["), let data = arguments.data(using: .utf8),
           let array = try? JSONSerialization.jsonObject(with: data) as? [Any] {
            guard let strings = array as? [String] else { throw error(line, "\(keyword): a JSON form holds strings only") }
            json = strings
        }
        if ["RUN", "COPY", "ADD"].contains(keyword), json == nil, let heredoc = heredocMarker(arguments) {
            throw error(line, "\(keyword): here-documents (\(heredoc)) are not supported")
        }
        let shown = ([keyword] + flags.map { $0.1.isEmpty ? "--\($0.0)" : "--\($0.0)=\($0.1)" } + [arguments]).joined(separator: " ")
        return Instruction(keyword: keyword, line: line, flags: flags, arguments: arguments, json: json, text: shown)
    }

    /// The `<<WORD` that starts a here-document in `text`, if there is one.
    static func heredocMarker(_ text: String) -> String? {
        let characters = Array(text)
        var index = 0
        while index + 2 < characters.count {
            if characters[index] == "<", characters[index + 1] == "<", index == 0 || characters[index - 1] != "<" {
                var next = index + 2
                if next < characters.count, characters[next] == "-" { next += 1 }
                if next < characters.count, characters[next] == "'" || characters[next] == "\"" { next += 1 }
                if next < characters.count, characters[next].isLetter || characters[next] == "_" {
                    var end = next
                    while end < characters.count, characters[end].isLetter || characters[end].isNumber || characters[end] == "_" { end += 1 }
                    return String(characters[index..<end])
                }
            }
            index += 1
        }
        return nil
    }
}

/// Docker's word rules for the arguments of FROM, COPY, ADD, ENV, ARG, LABEL, WORKDIR and USER:
/// whitespace between words, single quotes literal, double quotes with `\"`, `\\` and `\$`, the
/// escape character making the next one literal, and `$NAME`, `${NAME}`, `${NAME:-word}`,
/// `${NAME-word}`, `${NAME:+word}`, `${NAME+word}` replaced from `variables`.
struct Words {
    var escape: Character = "\\"
    var variables: [String: String]

    struct Failure: Error {
        var message: String
    }

    /// The words of `text`, quotes removed and variables replaced. `split: false` gives one word.
    func words(_ text: String, split: Bool = true) throws -> [String] {
        var result: [String] = []
        var current = ""
        var inWord = false
        var characters = Array(text)[...]
        while let character = characters.popFirst() {
            switch character {
            case _ where character.isWhitespace && split:
                if inWord { result.append(current) }
                current = ""
                inWord = false
            case "'":
                inWord = true
                guard let end = characters.firstIndex(of: "'") else { throw Failure(message: "a single quote is not closed") }
                current += String(characters[..<end])
                characters = characters[(end + 1)...]
            case "\"":
                inWord = true
                var closed = false
                while let inner = characters.popFirst() {
                    if inner == "\"" {
                        closed = true
                        break
                    }
                    if inner == escape, let next = characters.first, next == "\"" || next == "$" || next == escape {
                        current.append(next)
                        characters = characters.dropFirst()
                    } else if inner == "$" {
                        current += try variable(&characters)
                    } else {
                        current.append(inner)
                    }
                }
                guard closed else { throw Failure(message: "a double quote is not closed") }
            case escape:
                inWord = true
                if let next = characters.popFirst() { current.append(next) } else { current.append(character) }
            case "$":
                inWord = true
                current += try variable(&characters)
            default:
                inWord = true
                current.append(character)
            }
        }
        if inWord { result.append(current) }
        return result
    }

    /// One word (quotes removed, variables replaced), whitespace kept.
    func word(_ text: String) throws -> String { try words(text, split: false).joined() }

    /// The value of the variable after a `$`, the characters it took consumed.
    private func variable(_ characters: inout ArraySlice<Character>) throws -> String {
        guard let first = characters.first else { return "$" }
        if first == "{" {
            characters = characters.dropFirst()
            var name = ""
            while let c = characters.first, c.isLetter || c.isNumber || c == "_" {
                name.append(c)
                characters = characters.dropFirst()
            }
            guard !name.isEmpty else { throw Failure(message: "'${' with no variable name") }
            guard let next = characters.popFirst() else { throw Failure(message: "'${\(name)' is not closed") }
            if next == "}" { return variables[name] ?? "" }
            var modifier = String(next)
            if next == ":" {
                guard let second = characters.popFirst() else { throw Failure(message: "'${\(name):' is not closed") }
                modifier.append(second)
            }
            guard [":-", "-", ":+", "+"].contains(modifier) else {
                throw Failure(message: "'${\(name)\(modifier)…}': only ${NAME:-word} and ${NAME:+word} are supported")
            }
            // The word, up to the matching brace, its own variables replaced.
            var depth = 0
            var raw = ""
            var closed = false
            while let c = characters.popFirst() {
                if c == "{" { depth += 1 }
                if c == "}" {
                    if depth == 0 {
                        closed = true
                        break
                    }
                    depth -= 1
                }
                raw.append(c)
            }
            guard closed else { throw Failure(message: "'${\(name)\(modifier)' is not closed") }
            let word = try self.word(raw)
            let value = variables[name]
            switch modifier {
            case ":-": return (value ?? "").isEmpty ? word : value!
            case "-": return value ?? word
            case ":+": return (value ?? "").isEmpty ? "" : word
            default: return value == nil ? "" : word
            }
        }
        guard first.isLetter || first == "_" else { return "$" }
        var name = ""
        while let c = characters.first, c.isLetter || c.isNumber || c == "_" {
            name.append(c)
            characters = characters.dropFirst()
        }
        return variables[name] ?? ""
    }

    /// `KEY=VALUE` pairs (ENV, LABEL, ARG with defaults), or the old `KEY VALUE` form when
    /// `legacy` allows it and the first word has no `=`.
    func pairs(_ text: String, legacy: Bool) throws -> [(key: String, value: String?)] {
        let raw = text.trimmingCharacters(in: .whitespaces)
        if legacy, let end = raw.firstIndex(where: { $0.isWhitespace }), !raw[..<end].contains("=") {
            let key = try word(String(raw[..<end]))
            return [(key, try word(raw[end...].trimmingCharacters(in: .whitespaces)))]
        }
        return try words(raw).map { word in
            guard let equals = word.firstIndex(of: "=") else { return (word, nil) }
            return (String(word[..<equals]), String(word[word.index(after: equals)...]))
        }
    }
}
