import LStoreTree

/// The four kinds of object a store holds. The number is what packs and indexes record.
public enum ObjectKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Up to one block size of a regular file's data; its id is the SHA-256 of exactly those bytes.
    case block = 1
    /// A regular file's size and the ids of its blocks.
    case file = 2
    /// A directory's entries.
    case tree = 3
    /// A snapshot: a tree, its parents, and who made it when.
    case commit = 4

    public var description: String {
        switch self {
        case .block: "block"
        case .file: "file"
        case .tree: "tree"
        case .commit: "commit"
        }
    }
}

/// A regular file's data as a list of blocks. See spec/store.md, "File objects".
public struct FileObject: Equatable, Sendable {
    public var size: UInt64
    public var blockSize: Int
    /// `Digest.zero` for a block that is a hole (all zero bytes, not stored).
    public var blocks: [Digest]

    public init(size: UInt64, blockSize: Int, blocks: [Digest]) {
        self.size = size
        self.blockSize = blockSize
        self.blocks = blocks
    }

    public static let version: UInt8 = 1

    public func encoded() -> [UInt8] {
        var out = ByteWriter(capacity: 12 + 32 * blocks.count)
        out.u8(Self.version)
        out.u8(UInt8(blockSize.trailingZeroBitCount))
        out.u16(0)
        out.u64(size)
        for block in blocks { out.digest(block) }
        return out.bytes
    }

    public init(decoding bytes: UnsafeRawBufferPointer, id: Digest) throws {
        self = try Self.decode(bytes, id: id)
    }

    private static func decode(_ bytes: UnsafeRawBufferPointer, id: Digest) throws -> FileObject {
        func corrupt(_ why: String) -> StoreError { .corrupt("file object \(id.short): \(why)") }
        guard bytes.count >= 12 else { throw corrupt("truncated") }
        guard bytes[0] == version else { throw corrupt("unknown version") }
        let shift = Int(bytes[1])
        guard (12...20).contains(shift) else { throw corrupt("block size 2^\(shift) out of range") }
        guard bytes[2] == 0, bytes[3] == 0 else { throw corrupt("reserved bits set") }
        let size = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
        let blockSize = 1 << shift
        let count = size == 0 ? 0 : (size - 1) / UInt64(blockSize) + 1
        guard UInt64(bytes.count - 12) == count * 32 else { throw corrupt("\(count) blocks expected") }
        var blocks: [Digest] = []
        blocks.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            blocks.append(Digest(bytes: UnsafeRawBufferPointer(rebasing: bytes[(12 + 32 * i)..<(44 + 32 * i)])))
        }
        return FileObject(size: size, blockSize: blockSize, blocks: blocks)
    }

    /// The length of block `index`: the block size, or less for the last one.
    public func length(ofBlock index: Int) -> Int {
        let start = UInt64(index) * UInt64(blockSize)
        return Int(min(UInt64(blockSize), size - start))
    }
}

/// A commit header line that lstore does not interpret: kept verbatim, in order, so that a commit
/// read and written again has the same bytes and id. See spec/store.md, "Headers lstore does not know".
/// Later features (an OCI image's provenance, a recipe's) record what they add this way, and
/// readers that predate them keep working.
public struct CommitHeader: Equatable, Sendable {
    /// 1–64 bytes of `a`–`z`, `0`–`9` and `-`, starting with a letter; not a key lstore reads.
    public var key: String
    /// Any text without a newline (newlines become spaces, as in `author`).
    public var value: String

    public init(key: String, value: String) {
        precondition(Self.isValidKey(key), "commit header key '\(key)'")
        self.key = key
        self.value = Commit.oneLine(value)
    }

    /// The keys of the header lines every commit has, in their order: no other header may use them.
    public static let knownKeys: Set<String> = ["tree", "parent", "time", "author", "source", "size", "files", "entries"]

    /// Whether `key` may name a header that lstore does not interpret.
    public static func isValidKey(_ key: Substring) -> Bool {
        guard let first = key.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), key.utf8.count <= 64 else {
            return false
        }
        return key.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "-")
        } && !knownKeys.contains(String(key))
    }

    public static func isValidKey(_ key: String) -> Bool { isValidKey(key[...]) }
}

/// A commit: a full snapshot of a tree plus its parents. See spec/store.md, "Commit objects".
public struct Commit: Equatable, Sendable {
    public var tree: Digest
    public var parents: [Digest]
    /// Seconds since the Unix epoch.
    public var time: Int64
    public var author: String
    /// Where the tree came from: a directory path, a tarball, an image.
    public var source: String
    /// Bytes of regular-file data, each hardlink set counted once.
    public var size: UInt64
    /// Regular files, each hardlink set counted once.
    public var files: UInt64
    /// Entries of every kind, the root included.
    public var entries: UInt64
    /// The header lines after `entries`, which this version of lstore does not interpret, in order.
    public var extraHeaders: [CommitHeader]
    public var message: String

    public init(tree: Digest, parents: [Digest], time: Int64, author: String, source: String,
                size: UInt64, files: UInt64, entries: UInt64, extraHeaders: [CommitHeader] = [], message: String) {
        self.tree = tree
        self.parents = parents
        self.time = time
        self.author = Commit.oneLine(author)
        self.source = Commit.oneLine(source)
        self.size = size
        self.files = files
        self.entries = entries
        self.extraHeaders = extraHeaders
        self.message = message
    }

    /// `text` with each newline (a `Character` whose `isNewline` holds: LF, VT, FF, CR, CR LF
    /// together, NEL, U+2028, U+2029) replaced by one space: a header value is one line.
    static func oneLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        return String(text.map { $0.isNewline ? " " : $0 })
    }

    public func encoded() -> [UInt8] {
        var text = "tree \(tree.hex)\n"
        for parent in parents { text += "parent \(parent.hex)\n" }
        text += "time \(time)\nauthor \(author)\nsource \(source)\n"
        text += "size \(size)\nfiles \(files)\nentries \(entries)\n"
        for header in extraHeaders { text += "\(header.key) \(header.value)\n" }
        text += "\n"
        text += message
        return Array(text.utf8)
    }

    /// Decodes a commit and checks that it is in the one form `encoded()` writes (spec/store.md
    /// §6), so that what is read, written again, keeps its id.
    public init(decoding bytes: UnsafeRawBufferPointer, id: Digest) throws {
        func corrupt(_ why: String) -> StoreError { .corrupt("commit \(id.short): \(why)") }
        guard String(validating: bytes, as: UTF8.self) != nil else { throw corrupt("not UTF-8") }
        let newline = UInt8(ascii: "\n")
        // The header ends at the first empty line: the first "\n\n".
        var end = 0
        while end + 1 < bytes.count, !(bytes[end] == newline && bytes[end + 1] == newline) { end += 1 }
        guard end + 1 < bytes.count else { throw corrupt("no blank line after the header") }
        // Cut at ASCII newlines, each line is whole UTF-8.
        var lines = bytes[..<(end + 1)].split(separator: newline, omittingEmptySubsequences: false).dropLast()
            .map { String(decoding: UnsafeRawBufferPointer(rebasing: $0), as: UTF8.self) }[...]
        // Keys and values are compared and cut as bytes: a value may begin with a combining mark.
        func value(of line: String, key: String) -> Substring? {
            let prefix = Array((key + " ").utf8)
            guard line.utf8.starts(with: prefix) else { return nil }
            return Substring(line.utf8.dropFirst(prefix.count))
        }
        func field(_ key: String) throws -> Substring {
            guard let line = lines.first, let value = value(of: line, key: key) else { throw corrupt("expected '\(key)'") }
            lines = lines.dropFirst()
            return value
        }
        func number<T: FixedWidthInteger>(_ key: String) throws -> T {
            let value = try field(key)
            guard let n = T(value), String(n) == value else { throw corrupt("bad \(key) '\(Array(value.utf8).printable)'") }
            return n
        }
        guard let tree = Digest(hex: try field("tree")) else { throw corrupt("bad tree id") }
        var parents: [Digest] = []
        while let line = lines.first, value(of: line, key: "parent") != nil {
            guard let parent = Digest(hex: try field("parent")) else { throw corrupt("bad parent id") }
            parents.append(parent)
        }
        let time: Int64 = try number("time")
        let author = String(try field("author"))
        let source = String(try field("source"))
        let size: UInt64 = try number("size")
        let files: UInt64 = try number("files")
        let entries: UInt64 = try number("entries")
        var extra: [CommitHeader] = []
        for line in lines {
            guard let space = line.utf8.firstIndex(of: UInt8(ascii: " ")),
                  case let key = Substring(line.utf8[..<space]), CommitHeader.isValidKey(key) else {
                throw corrupt("bad header line '\(Array(line.utf8.prefix(80)).printable)'")
            }
            extra.append(CommitHeader(key: String(key), value: String(Substring(line.utf8[line.utf8.index(after: space)...]))))
        }
        let message = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(end + 2)...]), as: UTF8.self)
        self.init(tree: tree, parents: parents, time: time, author: author, source: source,
                  size: size, files: files, entries: entries, extraHeaders: extra, message: message)
        guard encoded().elementsEqual(bytes) else {
            throw corrupt("not in canonical form (upper-case hex digits, or a newline character in a header value)")
        }
    }
}
