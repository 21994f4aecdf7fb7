import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

extension Store {
    /// Directories a loaded tree may nest, the root included (spec/store.md §5.1): few enough that
    /// the readers that recurse through a tree (loading, walking, writing it out) stay well within
    /// a worker thread's stack.
    public static let maximumTreeDepth = 1024
    /// Entries a loaded tree may hold in all, the root not counted (spec/store.md §5.1).
    public static let maximumTreeEntries = 1 << 28

    /// Reads the whole tree `id` into memory, its regular files carrying their file object ids.
    /// Refuses a tree deeper or larger than `maximumTreeDepth` and `maximumTreeEntries`.
    public func loadTree(_ id: Digest) throws -> Node {
        var count = 0
        return try loadDirectory(id, name: [], depth: 0, count: &count)
    }

    private func loadDirectory(_ id: Digest, name: [UInt8], depth: Int, count: inout Int) throws -> Node {
        guard depth < Self.maximumTreeDepth else {
            throw StoreError.corrupt("tree \(id.short): directories nested deeper than \(Self.maximumTreeDepth)")
        }
        let tree = try tree(id)
        count += tree.entries.count
        guard count <= Self.maximumTreeEntries else {
            throw StoreError.corrupt("tree \(id.short): more than \(Self.maximumTreeEntries) entries in all")
        }
        var children: [Node] = []
        children.reserveCapacity(tree.entries.count)
        for entry in tree.entries {
            let content: Content
            switch entry.payload {
            case .regular(let size, let file): content = .regular(RegularFile(size: size, content: file))
            case .directory(let child):
                children.append(try loadDirectory(child, name: entry.name, depth: depth + 1, count: &count))
                continue
            case .symlink(let target): content = .symlink(target: target)
            case .device(let major, let minor): content = .device(major: major, minor: minor)
            case .none: content = .none
            case .hardlink(let path): content = .hardlink(path: path)
            }
            children.append(Node(name: entry.name, metadata: entry.metadata, content: content))
        }
        return Node(name: name, metadata: tree.metadata, content: .directory(Directory(children: children)))
    }
}

/// Reads regular files' data out of the store: each block read, checked (XXH3) and decompressed,
/// then streamed in order (`stream`) or, as a restorer's `ContentWriter`, written at its offset
/// into a new file with holes skipped.
public final class StoreFileReader: ContentWriter {
    public let store: Store
    private var scratch: [UInt8] = []
    var block: [UInt8] = []
    private var decompressors = Decompressors()

    public init(store: Store) {
        self.store = store
    }

    public func writeContent(of file: RegularFile, to fd: Int32, display: String) throws {
        guard let id = file.content else { throw StoreError.invalidArgument("\(display): no content") }
        let object = try store.file(id)
        guard object.size == file.size else {
            throw StoreError.corrupt("file \(id.short) has \(object.size) bytes, its tree entry says \(file.size)")
        }
        for (index, blockID) in object.blocks.enumerated() where blockID != .zero {
            let length = object.length(ofBlock: index)
            try readBlock(blockID, length: length)
            try block.withUnsafeBytes { raw in
                try writeAll(fd, UnsafeRawBufferPointer(rebasing: raw[0..<length]), at: off_t(index) * off_t(object.blockSize),
                             display: display)
            }
        }
    }

    /// Reads block `id` of `length` bytes into `block`.
    func readBlock(_ id: Digest, length: Int) throws {
        let location = try store.readStored(id, kind: .block, into: &scratch)
        guard Int(location.rawLength) == length else {
            throw StoreError.corrupt("block \(id.short) has \(location.rawLength) bytes, expected \(length)")
        }
        if block.count < length { block = [UInt8](repeating: 0, count: max(length, store.blockSize)) }
        try scratch.withUnsafeBytes { raw in
            let stored = UnsafeRawBufferPointer(rebasing: raw[PackFormat.entryHeaderSize..<PackFormat.entryHeaderSize + Int(location.storedLength)])
            try block.withUnsafeMutableBytes { out in
                try decompressors.decompress(stored, codec: location.codec, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<length]),
                                             what: "block \(id.short)")
            }
        }
    }
}

extension StoreFileReader {
    /// Delivers a file's data in order, holes as zeros, in pieces of at most one block.
    public func stream(_ file: RegularFile, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let id = file.content else { throw StoreError.invalidArgument("file without content") }
        let object = try store.file(id)
        guard object.size == file.size else {
            throw StoreError.corrupt("file \(id.short) has \(object.size) bytes, its tree entry says \(file.size)")
        }
        var zeros: [UInt8] = []
        for (index, blockID) in object.blocks.enumerated() {
            let length = object.length(ofBlock: index)
            if blockID == .zero {
                if zeros.count < length { zeros = [UInt8](repeating: 0, count: object.blockSize) }
                try zeros.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            } else {
                try readBlock(blockID, length: length)
                try block.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            }
        }
    }
}

/// A block as the store keeps it: compressed (or raw, codec `.none`) exactly as a squashfs data
/// block of its codec, and the level it was compressed at; for a raw block, the codec that was
/// tried at that level and did not make it smaller (`.none` when not said).
public struct StoredBlockBytes: Sendable {
    public var bytes: [UInt8]
    public var codec: Codec
    public var level: Int
    public var rawLength: Int
    public var triedCodec: Codec = .none
}

extension Store {
    /// Block `id` as stored, checked against its XXH3 checksum: what a squashfs writer copies
    /// unchanged when its codec and level are the image's.
    public func storedBlock(_ id: Digest, scratch: inout [UInt8]) throws -> StoredBlockBytes {
        let (location, bytes) = try readStoredBytes(id, kind: .block)
        return StoredBlockBytes(bytes: bytes, codec: location.codec, level: Int(location.level), rawLength: Int(location.rawLength),
                                triedCodec: location.triedCodec)
    }
}
