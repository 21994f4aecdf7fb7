import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What a ref must be before an update may change it: the compare of compare-and-swap.
public enum RefExpectation: Equatable, Sendable {
    case any
    case absent
    case value(Digest)
}

/// One line of the reflog: a ref moved from `old` to `new`.
public struct ReflogEntry: Equatable, Sendable {
    public var time: Int64
    public var name: String
    public var old: Digest?
    public var new: Digest?
    public var message: String
}

/// Checks a ref name: 1...255 bytes, `/`-separated segments that are neither empty nor `.` or `..`,
/// no control bytes, no whitespace and none of `: \ ~ ^ ? * [`, not starting with `-`.
public func validateRefName(_ name: String) throws {
    let bytes = Array(name.utf8)
    func refuse(_ why: String) -> StoreError { .invalidRefName(name.printableRef, why) }
    guard !bytes.isEmpty else { throw refuse("empty") }
    guard bytes.count <= 255 else { throw refuse("longer than 255 bytes") }
    guard bytes.first != UInt8(ascii: "-") else { throw refuse("starts with '-'") }
    for byte in bytes {
        if byte < 0x20 || byte == 0x7f { throw refuse("control character") }
        if " :\\~^?*[".utf8.contains(byte) { throw refuse("contains '\(Character(Unicode.Scalar(byte)))'") }
    }
    for segment in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
        if segment.isEmpty { throw refuse("empty path segment") }
        if segment.elementsEqual(".".utf8) || segment.elementsEqual("..".utf8) { throw refuse("'.' or '..' segment") }
    }
}

extension String {
    fileprivate var printableRef: String { Array(utf8).printable }
}

extension Store {
    /// Every ref, sorted by name.
    public func refs() throws -> [(name: String, commit: Digest)] {
        guard access(layout.refs, F_OK) == 0 else { return [] }
        let text = String(decoding: try readSmallFile(layout.refs, limit: 64 << 20), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            guard line.count > 65, let id = Digest(hex: line.prefix(64)), line.dropFirst(64).first == " " else {
                throw StoreError.corrupt("refs: bad line '\(line.prefix(80))'")
            }
            let name = String(line.dropFirst(65))
            try validateRefName(name)
            return (name, id)
        }
    }

    public func ref(_ name: String) throws -> Digest? {
        try refs().first { $0.name == name }?.commit
    }

    /// Sets (or, with `nil`, removes) a ref if it is what `expecting` says, atomically, under the
    /// refs lock; appends the change to the reflog. The commit must already be stored in full.
    public func updateRef(_ name: String, to new: Digest?, expecting: RefExpectation, message: String) throws {
        try validateRefName(name)
        let lock = try FileLock(path: layout.refsLock, exclusive: true)
        defer { withExtendedLifetime(lock) {} }
        var all = try refs()
        let index = all.firstIndex { $0.name == name }
        let old = index.map { all[$0].commit }
        switch expecting {
        case .any: break
        case .absent where old != nil, .value where old != expecting.digest:
            throw StoreError.refMoved(name: name, expected: expecting.digest, actual: old)
        default: break
        }
        if let new, find(new, kind: .commit) == nil { throw StoreError.missingObject(.commit, new) }
        switch (index, new) {
        case (let i?, let new?): all[i].commit = new
        case (let i?, nil): all.remove(at: i)
        case (nil, let new?): all.append((name, new))
        case (nil, nil): throw StoreError.unknownRef(name)
        }
        all.sort { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        let text = all.map { "\($0.commit.hex) \($0.name)\n" }.joined()
        try layout.writeFileAtomically(Array(text.utf8), to: layout.refs)
        try appendReflog(ReflogEntry(time: currentTime(), name: name, old: old, new: new, message: message))
    }

    private func appendReflog(_ entry: ReflogEntry) throws {
        let zero = String(repeating: "0", count: 64)
        let message = String(entry.message.map { $0.isNewline ? " " : $0 })
        let line = "\(entry.time) \(entry.old?.hex ?? zero) \(entry.new?.hex ?? zero) \(entry.name)\t\(message)\n"
        let fd = try systemCall("open", path: layout.reflog) {
            Glibc.open(layout.reflog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        }
        defer { close(fd) }
        try Array(line.utf8).withUnsafeBytes { try writeAll(fd, $0, display: layout.reflog) }
        try systemCall("fsync", path: layout.reflog) { fsync(fd) }
    }

    /// The reflog, oldest first; `name` filters to one ref.
    public func reflog(for name: String? = nil) throws -> [ReflogEntry] {
        guard access(layout.reflog, F_OK) == 0 else { return [] }
        let text = String(decoding: try readSmallFile(layout.reflog, limit: 1 << 30), as: UTF8.self)
        return text.split(separator: "\n").compactMap { line -> ReflogEntry? in
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count == 4, let time = Int64(parts[0]) else { return nil }
            let nameAndMessage = parts[3].split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            let entry = ReflogEntry(time: time, name: String(nameAndMessage[0]),
                                    old: Digest(hex: parts[1]).flatMap { $0 == .zero ? nil : $0 },
                                    new: Digest(hex: parts[2]).flatMap { $0 == .zero ? nil : $0 },
                                    message: nameAndMessage.count > 1 ? String(nameAndMessage[1]) : "")
            return name == nil || entry.name == name ? entry : nil
        }
    }

    /// Resolves a ref name, a commit id (full, or a unique prefix of at least 4 hex digits), each
    /// optionally followed by `^` (the first parent) or `~N` (the Nth first-parent ancestor).
    public func resolve(_ revision: String) throws -> Digest {
        var text = Substring(revision)
        var up = 0
        while true {
            if text.hasSuffix("^") {
                text = text.dropLast()
                up += 1
            } else if let tilde = text.lastIndex(of: "~"), let n = Int(text[text.index(after: tilde)...]), n >= 0 {
                text = text[..<tilde]
                up += n
            } else if text.hasSuffix("~") {
                text = text.dropLast()
                up += 1
            } else {
                break
            }
        }
        var id = try resolveBase(String(text), original: revision)
        for _ in 0..<up {
            guard let parent = try commit(id).parents.first else { throw StoreError.unknownRevision(revision) }
            id = parent
        }
        return id
    }

    private func resolveBase(_ text: String, original: String) throws -> Digest {
        if let id = try ref(text) { return id }
        if let id = Digest(hex: text), find(id, kind: .commit) != nil { return id }
        let lower = text.lowercased()
        guard lower.count >= 4, lower.allSatisfy(\.isHexDigit) else { throw StoreError.unknownRevision(original) }
        func commits(startingWith prefix: String) -> Set<Digest> {
            var matches = Set<Digest>()
            for index in indexes {
                for i in 0..<index.count where index.location(at: i)?.kind == .commit {
                    let id = index.id(at: i)
                    if id.hex.hasPrefix(prefix) { matches.insert(id) }
                }
            }
            return matches
        }
        var matches = commits(startingWith: lower)
        // As for a whole id: a commit published since the packs were listed is looked for too.
        if matches.isEmpty, try reloadIndexes() { matches = commits(startingWith: lower) }
        guard matches.count == 1 else {
            throw matches.isEmpty ? StoreError.unknownRevision(original)
                : StoreError.invalidArgument("'\(original)' is ambiguous: \(matches.count) commits start with it")
        }
        return matches.first!
    }
}

extension RefExpectation {
    var digest: Digest? {
        if case .value(let digest) = self { return digest }
        return nil
    }
}

func currentTime() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec)
}
