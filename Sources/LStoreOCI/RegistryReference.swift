/// An image in a registry, as `docker://[HOST[:PORT]/]NAME[:TAG][@sha256:HEX]` names it, with
/// Docker's rules for short names: a first component that has no `.` or `:` and is not
/// `localhost` is part of the name on Docker Hub (`debian` → `docker.io/library/debian`), and an
/// image named by neither tag nor digest is `:latest`.
public struct RegistryReference: Sendable, Equatable, CustomStringConvertible {
    /// The registry as users write it: `docker.io`, `registry.local:5000`, `[::1]:5000`.
    public var registry: String
    /// The repository in it: `library/debian`, `steve/gaming`.
    public var repository: String
    public var tag: String?
    public var digest: ImageDigest?

    /// Docker Hub's name, and the host its API answers on.
    public static let dockerHub = "docker.io"
    static let dockerHubAPI = "registry-1.docker.io"

    public init(parsing input: String) throws {
        var text = input
        if text.hasPrefix("docker://") { text.removeFirst(9) }
        func refuse(_ why: String) -> ImportError { ImportError("'\(input)': \(why)") }
        guard !text.isEmpty, text.utf8.count <= 4096 else { throw refuse("not an image reference") }
        if let at = text.firstIndex(of: "@") {
            let digestText = String(text[text.index(after: at)...])
            guard let digest = ImageDigest(parsing: digestText) else { throw refuse("'\(digestText)' is not a sha256 digest") }
            self.digest = digest
            text = String(text[..<at])
        }
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let lastSlash = text.lastIndex(of: "/")
        if let colon = text.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let tag = String(text[text.index(after: colon)...])
            guard Self.isValidTag(tag) else { throw refuse("'\(tag)' is not a valid tag") }
            self.tag = tag
            text = String(text[..<colon])
        }
        var components = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if components.count > 1, components[0].contains(".") || components[0].contains(":") || components[0] == "localhost"
            || components[0].hasPrefix("[") {
            registry = components.removeFirst()
        } else {
            registry = Self.dockerHub
        }
        if registry == "index.docker.io" || registry == Self.dockerHubAPI { registry = Self.dockerHub }
        if registry == Self.dockerHub && components.count == 1 { components.insert("library", at: 0) }
        guard !components.isEmpty, components.allSatisfy(Self.isValidComponent) else {
            throw refuse("'\(text)' is not a repository name (lower-case letters, digits and separators . _ __ -, parts joined by /)")
        }
        repository = components.joined(separator: "/")
        guard repository.utf8.count <= 255 else { throw refuse("the repository name is longer than 255 characters") }
        guard Self.isValidHost(registry) else { throw refuse("'\(registry)' is not a registry host") }
        if tag == nil && digest == nil { tag = "latest" }
    }

    public init(registry: String, repository: String, tag: String?, digest: ImageDigest?) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    /// The full reference, `docker://` and every part spelled out.
    public var description: String {
        "docker://\(registry)/\(repository)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    /// What the manifest endpoint is asked for: the digest when there is one, else the tag.
    var manifestReference: String { digest?.description ?? tag ?? "latest" }

    /// The host and port the registry's API answers on.
    var apiHost: String { registry == Self.dockerHub ? Self.dockerHubAPI : registry }

    /// Whether the registry is on this machine: plain HTTP is tried there without `--insecure`.
    public var isLoopback: Bool { Self.isLoopback(host: apiHost) }

    static func isLoopback(host: String) -> Bool {
        var name = host
        if name.hasPrefix("["), let end = name.firstIndex(of: "]") {
            name = String(name[name.index(after: name.startIndex)..<end])
            return name == "::1"
        }
        if let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
        return name == "localhost" || name.hasPrefix("127.")
    }

    /// The names `~/.docker/config.json` may key this registry's credentials by.
    var credentialKeys: [String] {
        if registry == Self.dockerHub {
            return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io", "https://index.docker.io/v1"]
        }
        return [registry, "https://\(registry)", "http://\(registry)", "https://\(registry)/v2/", "https://\(registry)/v1/"]
    }

    /// distribution's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    static func isValidTag(_ tag: String) -> Bool {
        let bytes = Array(tag.utf8)
        guard (1...128).contains(bytes.count) else { return false }
        func word(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || byte == 95 }
        return word(bytes[0]) && bytes.allSatisfy { word($0) || $0 == 46 || $0 == 45 }
    }

    /// distribution's path component grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
    static func isValidComponent(_ component: String) -> Bool {
        let bytes = Array(component.utf8)
        func alnum(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (97...122).contains(byte) }
        guard let first = bytes.first, let last = bytes.last, alnum(first), alnum(last) else { return false }
        var index = 0
        while index < bytes.count {
            if alnum(bytes[index]) { index += 1; continue }
            var end = index
            while end < bytes.count, !alnum(bytes[end]) { end += 1 }
            let separator = bytes[index..<end]
            guard separator.elementsEqual([46]) || separator.elementsEqual([95]) || separator.elementsEqual([95, 95])
                    || separator.allSatisfy({ $0 == 45 }) else { return false }
            index = end
        }
        return true
    }

    /// A host name, IPv4 address or bracketed IPv6 address, with an optional port.
    static func isValidHost(_ host: String) -> Bool {
        var name = Substring(host)
        if name.hasPrefix("[") {
            guard let end = name.firstIndex(of: "]") else { return false }
            let address = name[name.index(after: name.startIndex)..<end]
            guard !address.isEmpty, address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return false }
            name = name[name.index(after: end)...]
            if name.isEmpty { return true }
            guard name.hasPrefix(":") else { return false }
            return name.dropFirst().allSatisfy(\.isNumber) && UInt16(name.dropFirst()) != nil
        }
        if let colon = name.lastIndex(of: ":") {
            guard let port = UInt16(name[name.index(after: colon)...]), port > 0 else { return false }
            name = name[..<colon]
        }
        return !name.isEmpty && name.utf8.count <= 253
            && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
                !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            }
    }
}
