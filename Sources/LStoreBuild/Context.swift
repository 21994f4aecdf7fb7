import Crypto
import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// `.lstoreignore` or `.dockerignore` rules (spec/build.md §3): one pattern a line, `#` comments,
/// `!` for an exception, `**` for any number of directories; the last pattern that matches a path
/// or one of its parents decides.
struct IgnoreRules {
    private var patterns: [(negated: Bool, components: [String])] = []

    init(text: String = "") {
        for raw in text.split(whereSeparator: \.isNewline) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var negated = false
            if line.hasPrefix("!") {
                negated = true
                line = String(line.dropFirst()).trimmingCharacters(in: .whitespaces)
            }
            let components = line.split(separator: "/").map(String.init).filter { $0 != "." }
            if components.isEmpty { continue }
            patterns.append((negated, components))
        }
    }

    var isEmpty: Bool { patterns.isEmpty }

    /// Whether `path` (components from the context's root) is left out of the context.
    func excludes(_ path: [String]) -> Bool {
        var excluded = false
        for pattern in patterns {
            var matched = false
            for length in stride(from: path.count, through: 1, by: -1) where Self.match(pattern.components[...], path[0..<length]) {
                matched = true
                break
            }
            if matched { excluded = !pattern.negated }
        }
        return excluded
    }

    static func match(_ pattern: ArraySlice<String>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            for skip in 0...path.count where match(rest, path.dropFirst(skip)) { return true }
            return false
        }
        guard let name = path.first, fnmatch(first, name, 0) == 0 else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }
}

/// The files a recipe may copy: its directory, scanned, less what the ignore file leaves out.
final class BuildContext {
    let directory: String
    let display: String
    private var scanned: Node?

    init(directory: String, display: String) {
        self.directory = directory
        self.display = display
    }

    /// The context's tree, scanned once, ignored entries removed.
    func root() throws -> Node {
        if let scanned { return scanned }
        let tree = try Scanner().scan(directory)
        let ignoreFile = [".lstoreignore", ".dockerignore"].map { directory + "/" + $0 }
            .first { FileManager.default.fileExists(atPath: $0) }
        let rules = IgnoreRules(text: ignoreFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "")
        if !rules.isEmpty { prune(tree.root, path: [], rules: rules) }
        scanned = tree.root
        return tree.root
    }

    private func prune(_ node: Node, path: [String], rules: IgnoreRules) {
        guard let directory = node.directory else { return }
        for child in directory.children {
            let childPath = path + [String(decoding: child.name, as: UTF8.self)]
            if rules.excludes(childPath) && !keepsException(child, path: childPath, rules: rules) {
                directory.remove(named: child.name)
            } else {
                prune(child, path: childPath, rules: rules)
            }
        }
    }

    /// Whether an excluded directory holds an entry an exception brings back.
    private func keepsException(_ node: Node, path: [String], rules: IgnoreRules) -> Bool {
        guard let directory = node.directory else { return false }
        for child in directory.children {
            let childPath = path + [String(decoding: child.name, as: UTF8.self)]
            if !rules.excludes(childPath) || keepsException(child, path: childPath, rules: rules) { return true }
        }
        return false
    }

    /// The entries a COPY source names: a path relative to the context (wildcards `*`, `?`, `[…]`
    /// in any component), never leaving it, symlinks on the way followed inside it.
    func select(_ source: String) throws -> [(name: [UInt8], node: Node)] {
        let root = try root()
        var components: [String] = []
        for component in source.split(separator: "/") where component != "." {
            if component == ".." {
                guard components.popLast() != nil else { throw BuildError("'\(source)' is outside the recipe's directory") }
            } else {
                components.append(String(component))
            }
        }
        if components.isEmpty { return [(Array(URL(fileURLWithPath: directory).lastPathComponent.utf8), root)] }
        var found: [(path: String, node: Node)] = [("", root)]
        for component in components {
            var next: [(String, Node)] = []
            for (path, node) in found {
                guard let directory = node.directory else { continue }
                let wildcard = component.contains { "*?[".contains($0) }
                for child in directory.children {
                    let name = String(decoding: child.name, as: UTF8.self)
                    guard wildcard ? fnmatch(component, name, FNM_PERIOD) == 0 : name == component else { continue }
                    let childPath = path + "/" + name
                    // A symlink on the way is followed, inside the context only.
                    if case .symlink = child.content, let target = root.resolve(childPath) {
                        next.append((target.path, target.node))
                    } else if case .symlink = child.content {
                        throw BuildError("'\(source)': '\(childPath.dropFirst())' is a symlink that leads nowhere in the recipe's directory")
                    } else {
                        next.append((childPath, child))
                    }
                }
            }
            found = next
        }
        guard !found.isEmpty else { throw BuildError("'\(source)': no such file in the recipe's directory") }
        return found.sorted { $0.path < $1.path }.map { (Array(($0.path.split(separator: "/").last ?? "").utf8), $0.node) }
    }

    /// The digest of what `selection` holds, as a COPY's cache key takes it: every entry's path,
    /// kind, permissions, size, content (SHA-256), symlink target and device numbers. Owners and
    /// times are not part of it (COPY sets the one, and a checkout changes the other).
    func digest(_ selection: [(name: [UInt8], node: Node)]) throws -> String {
        var listing = SHA256()
        for (name, top) in selection {
            var failure: Error?
            top.walk { relative, node in
                guard failure == nil else { return }
                var line = Array(name) + (relative.isEmpty ? [] : [UInt8(ascii: "/")] + relative)
                line += Array(" \(node.metadata.kind) \(String(node.metadata.permissions, radix: 8))".utf8)
                switch node.content {
                case .regular(let file):
                    line += Array(" \(file.size) ".utf8)
                    do { line += Array(try Self.fileDigest(file.sourcePath ?? []).utf8) } catch { failure = error }
                case .symlink(let target): line += [UInt8(ascii: " ")] + target
                case .device(let major, let minor): line += Array(" \(major),\(minor)".utf8)
                case .hardlink(let path): line += Array(" link ".utf8) + path
                default: break
                }
                line.append(0)
                listing.update(data: line)
            }
            if let failure { throw failure }
        }
        return "sha256:" + listing.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func fileDigest(_ path: [UInt8]) throws -> String {
        let display = String(decoding: path, as: UTF8.self)
        let fd = open(display, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw BuildError("\(display): cannot be read: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var hash = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw BuildError("\(display): cannot be read: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            hash.update(data: buffer[0..<count])
        }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
