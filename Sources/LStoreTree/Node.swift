#if canImport(Glibc)
import Glibc
#endif

/// A regular file's data: its size, and where to find it.
public struct RegularFile: Sendable, Hashable {
    public var size: UInt64
    /// The file object that holds the data, once it is known (after ingest, or when read from a store).
    public var content: Digest?
    /// Where a scanner found the data: the absolute path bytes of the file on disk.
    public var sourcePath: [UInt8]?
    /// What `stat` said of it when scanned: tells whether it changed since an earlier commit.
    public var stamp: FileStamp?

    public init(size: UInt64, content: Digest? = nil, sourcePath: [UInt8]? = nil, stamp: FileStamp? = nil) {
        self.size = size
        self.content = content
        self.sourcePath = sourcePath
        self.stamp = stamp
    }
}

/// The `stat` fields that change whenever a file's data may have changed (the ctime moves on every
/// write, and cannot be set back), as git's index and restic keep them.
public struct FileStamp: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: UInt64
    public var mtime: Timestamp
    public var ctime: Timestamp

    public init(device: UInt64, inode: UInt64, size: UInt64, mtime: Timestamp, ctime: Timestamp) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtime = mtime
        self.ctime = ctime
    }
}

/// What an entry holds, by kind.
public enum Content: Sendable {
    case regular(RegularFile)
    case directory(Directory)
    case symlink(target: [UInt8])
    case device(major: UInt32, minor: UInt32)
    /// FIFOs and sockets hold nothing.
    case none
    /// A further name for an inode met earlier in the tree's order: `path` names the set's first
    /// member (components joined by `/`, relative to the root). The entry has no metadata of its own.
    case hardlink(path: [UInt8])
}

/// A directory's entries, sorted by name bytes once the tree is complete.
public final class Directory: @unchecked Sendable {
    public private(set) var children: [Node]
    private var byName: [[UInt8]: Int]?

    public init(children: [Node] = []) {
        self.children = children
    }

    /// Adds or replaces the entry named `node.name` (tar archives may name a path twice: the last wins).
    public func upsert(_ node: Node) {
        if byName == nil {
            byName = Dictionary(children.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { _, b in b })
        }
        if let index = byName![node.name] {
            children[index] = node
        } else {
            byName![node.name] = children.count
            children.append(node)
        }
    }

    public func child(named name: [UInt8]) -> Node? {
        if let byName { return byName[name].map { children[$0] } }
        return children.first { $0.name == name }
    }

    /// Removes the entry named `name`, if any.
    public func remove(named name: [UInt8]) {
        guard let index = children.firstIndex(where: { $0.name == name }) else { return }
        children.remove(at: index)
        byName = nil
    }

    /// Sorts entries by name bytes; lookups by name stay valid.
    public func sort() {
        children.sort { $0.name.lexicographicallyPrecedes($1.name) }
        byName = nil
    }
}

/// One entry of a root filesystem tree. The root has an empty name.
public final class Node: @unchecked Sendable {
    public var name: [UInt8]
    public var metadata: Metadata
    public var content: Content

    public init(name: [UInt8], metadata: Metadata, content: Content) {
        self.name = name
        self.metadata = metadata
        self.content = content
    }

    public var directory: Directory? {
        if case .directory(let directory) = content { return directory }
        return nil
    }

    /// Visits every node depth-first, parents before children, children in their stored order
    /// (name order once sorted). `path` is the node's path relative to the root (empty for the root).
    public func walk(_ body: (_ path: [UInt8], _ node: Node) throws -> Void) rethrows {
        var path: [UInt8] = []
        try walk(path: &path, body)
    }

    private func walk(path: inout [UInt8], _ body: ([UInt8], Node) throws -> Void) rethrows {
        try body(path, self)
        guard let directory else { return }
        for child in directory.children {
            let mark = path.count
            if !path.isEmpty { path.append(UInt8(ascii: "/")) }
            path.append(contentsOf: child.name)
            try child.walk(path: &path, body)
            path.removeSubrange(mark...)
        }
    }

    /// Follows `path` (components joined by `/`) from this node.
    public func lookup(_ path: [UInt8]) -> Node? {
        var node = self
        for component in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            guard let next = node.directory?.child(named: Array(component)) else { return nil }
            node = next
        }
        return node
    }

    /// Sorts every directory's entries by name bytes.
    public func sortAll() {
        guard let directory else { return }
        directory.sort()
        for child in directory.children { child.sortAll() }
    }
}

extension [UInt8] {
    /// Bytes as a person reads them: UTF-8 where valid, `\xNN` for every other byte.
    public var printable: String {
        if let string = String(validating: self, as: UTF8.self),
           !string.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            return string
        }
        var out = ""
        var rest = self[...]
        while !rest.isEmpty {
            // Longest valid UTF-8 prefix of printable characters, then one escaped byte.
            var taken = false
            for length in stride(from: Swift.min(4, rest.count), through: 1, by: -1) {
                if let s = String(validating: rest.prefix(length), as: UTF8.self),
                   let scalar = s.unicodeScalars.first, s.unicodeScalars.count == 1,
                   scalar.value >= 0x20, scalar.value != 0x7f, scalar != "\\" {
                    out += s
                    rest = rest.dropFirst(length)
                    taken = true
                    break
                }
            }
            if !taken {
                let byte = rest.first!
                out += byte == UInt8(ascii: "\\") ? "\\\\" : "\\x" + String(byte, radix: 16, uppercase: false).leftPadded(2)
                rest = rest.dropFirst()
            }
        }
        return out
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// Checks a single path component: 1...255 bytes, no `/`, no NUL, not `.` or `..`.
public func isValidName(_ name: [UInt8]) -> Bool {
    name.withUnsafeBufferPointer(isValidName(bytes:))
}

public func isValidName(_ name: ArraySlice<UInt8>) -> Bool {
    name.withUnsafeBufferPointer(isValidName(bytes:))
}

private func isValidName(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard (1...Limits.nameLength).contains(bytes.count), let base = bytes.baseAddress else { return false }
    let dot = UInt8(ascii: ".")
    if bytes[0] == dot && (bytes.count == 1 || (bytes.count == 2 && bytes[1] == dot)) { return false }
    return memchr(base, Int32(UInt8(ascii: "/")), bytes.count) == nil && memchr(base, 0, bytes.count) == nil
}

public func isValidName(_ name: some Collection<UInt8>) -> Bool {
    guard (1...Limits.nameLength).contains(name.count) else { return false }
    if name.elementsEqual([UInt8(ascii: ".")]) || name.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
        return false
    }
    return !name.contains(UInt8(ascii: "/")) && !name.contains(0)
}

extension Node {
    /// Follows `path` from this root, resolving symlinks (absolute ones from this root) in every
    /// component, as the layer's own system would; hardlinks lead to the node holding the data.
    public func resolve(_ path: String, hops: Int = 0) -> (path: String, node: Node)? {
        guard hops < 40 else { return nil }
        var node = self
        var resolved: [String] = []
        let components = path.split(separator: "/").map(String.init)
        for (index, component) in components.enumerated() {
            if component == "." { continue }
            if component == ".." {
                _ = resolved.popLast()
                guard let parent = lookup(Array(resolved.joined(separator: "/").utf8)) else { return nil }
                node = parent
                continue
            }
            guard let next = node.directory?.child(named: Array(component.utf8)) else { return nil }
            switch next.content {
            case .symlink(let target):
                let text = String(decoding: target, as: UTF8.self)
                let base = text.hasPrefix("/") ? "" : "/" + resolved.joined(separator: "/")
                let rest = components[(index + 1)...].joined(separator: "/")
                return resolve(base + "/" + text + (rest.isEmpty ? "" : "/" + rest), hops: hops + 1)
            case .hardlink(let holder):
                guard let held = lookup(holder) else { return nil }
                node = held
            default:
                node = next
            }
            resolved.append(component)
        }
        return ("/" + resolved.joined(separator: "/"), node)
    }
}
