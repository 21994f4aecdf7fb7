import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// One directory entry as a listing holds it.
struct DirectoryEntry {
    var name: [UInt8]
    var reference: MetadataReference
    var number: UInt32
    var type: InodeType
}

extension SquashFSImage {
    /// Reads the whole tree: every entry with its metadata, xattrs (user., trusted., security.),
    /// symlink target, device numbers; a hardlink set as its first name in depth-first name order
    /// and `.hardlink(path:)` entries for the others, as `Node.normalizeHardlinks` leaves a tree.
    /// Regular files carry their size and, as `sourcePath`, their path in the image (relative to
    /// the root), by which `forEachBlock` and `ContentWriter` read their data.
    public func readTree() throws -> Node {
        files = [:]
        let rootReference = MetadataReference(raw: superblock.rootInode)
        let rootInode = try readInode(rootReference)
        guard rootInode.type.basic == .directory else { throw SquashFSError.corrupt("the root inode is not a directory") }

        struct Pending {
            var node: Node
            var path: [UInt8]
            var entry: DirectoryEntry
            var depth: Int
        }
        var entries = 1
        var seenDirectories: Set<MetadataReference> = [rootReference]
        var holders: [MetadataReference: (path: [UInt8], type: InodeType)] = [:]
        var referenceOfNumber: [UInt32: MetadataReference] = [rootInode.number: rootReference]

        let root = Node(name: [], metadata: try metadata(of: rootInode), content: .none)
        var stack: [Pending] = []

        /// Lists `inode` (a directory) into `node`, pushing its entries to visit next.
        func expand(_ node: Node, inode: InodeRecord, path: [UInt8], depth: Int) throws {
            guard depth < limits.depth else { throw SquashFSError.corrupt("directories nested deeper than \(limits.depth)") }
            let listing = try readListing(inode, path: path)
            entries += listing.count
            guard entries <= limits.entries else {
                throw SquashFSError.corrupt("more than \(limits.entries) entries (the reader's limit)")
            }
            var children: [Node] = []
            children.reserveCapacity(listing.count)
            for entry in listing {
                let child = Node(name: entry.name, metadata: Metadata(kind: .regular, permissions: 0), content: .none)
                children.append(child)
            }
            node.content = .directory(Directory(children: children))
            for (entry, child) in zip(listing, children).reversed() {
                let childPath = path.isEmpty ? entry.name : path + [UInt8(ascii: "/")] + entry.name
                stack.append(Pending(node: child, path: childPath, entry: entry, depth: depth + 1))
            }
        }

        try expand(root, inode: rootInode, path: [], depth: 0)
        while let pending = stack.popLast() {
            let entry = pending.entry
            if let known = referenceOfNumber[entry.number], known != entry.reference {
                throw SquashFSError.corrupt("/\(pending.path.printable): inode number \(entry.number) names two inodes")
            }
            referenceOfNumber[entry.number] = entry.reference
            if entry.type != .directory, let first = holders[entry.reference] {
                guard first.type == entry.type else {
                    throw SquashFSError.corrupt("/\(pending.path.printable): the entry does not match its inode")
                }
                pending.node.metadata = Metadata(kind: kind(of: entry.type), permissions: 0)
                pending.node.content = .hardlink(path: first.path)
                continue
            }
            let inode = try readInode(entry.reference)
            guard inode.type.basic == entry.type, inode.number == entry.number else {
                throw SquashFSError.corrupt("/\(pending.path.printable): the entry does not match its inode")
            }
            pending.node.metadata = try metadata(of: inode)
            switch inode.type.basic {
            case .directory:
                guard seenDirectories.insert(entry.reference).inserted else {
                    throw SquashFSError.corrupt("/\(pending.path.printable): a directory listed twice (a cycle?)")
                }
                try expand(pending.node, inode: inode, path: pending.path, depth: pending.depth)
                continue
            case .file:
                let file = inode.file!
                files[pending.path] = file
                pending.node.content = .regular(RegularFile(size: file.size, sourcePath: pending.path))
            case .symlink:
                pending.node.content = .symlink(target: inode.target)
            case .blockDevice, .characterDevice:
                let (major, minor) = DeviceNumber.decode(inode.device)
                pending.node.content = .device(major: major, minor: minor)
            default:
                pending.node.content = .none
            }
            holders[entry.reference] = (pending.path, entry.type)
        }
        return root
    }

    private func kind(of type: InodeType) -> EntryKind {
        InodeRecord(type: type, permissions: 0, uid: 0, gid: 0, mtime: 0, number: 0).kind
    }

    private func metadata(of inode: InodeRecord) throws -> Metadata {
        Metadata(kind: inode.kind, permissions: inode.permissions, uid: inode.uid, gid: inode.gid,
                 mtime: Timestamp(seconds: Int64(inode.mtime)), xattrs: try xattrs(inode.xattr))
    }

    /// A directory's entries, checked: names valid, sorted and unique, numbers and types in range,
    /// and the listing exactly as long as the inode says (its size less 3).
    func readListing(_ inode: InodeRecord, path: [UInt8]) throws -> [DirectoryEntry] {
        let size = Int(inode.directory.size)
        guard size > Format.directorySizeBias else { return [] }
        let length = size - Format.directorySizeBias
        let what = "/\(path.printable): directory listing"
        var cursor = try MetadataCursor(
            table: superblock.directoryTableStart,
            reference: MetadataReference(block: UInt64(inode.directory.start), offset: inode.directory.offset),
            limit: directoryTableEnd, what: what)
        var read = 0
        var entries: [DirectoryEntry] = []
        while read < length {
            guard length - read >= 12 else { throw SquashFSError.corrupt("\(what): ends inside a header") }
            let count = Int(try cursor.u32(image)) + 1
            let block = UInt64(try cursor.u32(image))
            let base = Int64(Int32(bitPattern: try cursor.u32(image)))
            read += 12
            guard count <= Format.directoryRunLength else { throw SquashFSError.corrupt("\(what): a run of \(count) entries") }
            for _ in 0..<count {
                guard length - read >= 8 else { throw SquashFSError.corrupt("\(what): longer than its size") }
                let offset = Int(try cursor.u16(image))
                let delta = Int64(Int16(bitPattern: try cursor.u16(image)))
                let rawType = try cursor.u16(image)
                let nameSize = Int(try cursor.u16(image)) + 1
                read += 8
                guard let type = InodeType(rawValue: rawType), !type.isExtended else {
                    throw SquashFSError.corrupt("\(what): entry type \(rawType)")
                }
                guard entries.count < limits.entries else {
                    throw SquashFSError.corrupt("\(what): more than \(limits.entries) entries (the reader's limit)")
                }
                guard nameSize <= Limits.nameLength, length - read >= nameSize else {
                    throw SquashFSError.corrupt("\(what): a name of \(nameSize) bytes")
                }
                let name = try cursor.read(nameSize, from: image)
                read += nameSize
                guard isValidName(name) else { throw SquashFSError.corrupt("\(what): invalid name \(name.printable)") }
                if let last = entries.last, !last.name.lexicographicallyPrecedes(name) {
                    throw SquashFSError.corrupt("\(what): \(name.printable) after \(last.name.printable) (unsorted or repeated)")
                }
                let number = base + delta
                guard number >= 1, number <= Int64(superblock.inodeCount), offset < Format.metadataSize else {
                    throw SquashFSError.corrupt("\(what): \(name.printable) has inode number \(number)")
                }
                entries.append(DirectoryEntry(name: name, reference: MetadataReference(block: block, offset: offset),
                                              number: UInt32(number), type: type))
            }
        }
        guard read == length else { throw SquashFSError.corrupt("\(what): longer than its size") }
        return entries
    }
}

// MARK: - File data

extension SquashFSImage: BlockSource {
    /// A piece of a file in order: a run of zeros, or bytes.
    enum Piece {
        case zeros(Int)
        case bytes([UInt8])
    }

    /// The file `file` names (by `sourcePath`, as `readTree` set it, else `path`).
    func fileInode(_ file: RegularFile, path: [UInt8]) throws -> FileInode {
        let key = file.sourcePath ?? path
        guard let inode = files[key] else { throw SquashFSError.notInImage("/\(key.printable)") }
        return inode
    }

    /// Calls `body` with the file's data in order: each image block (holes as zeros), then the tail.
    func forEachPiece(of inode: FileInode, _ body: (Piece) throws -> Void) throws {
        let blockSize = Int(superblock.blockSize)
        var cursor = inode.blockList
        var position = inode.start
        var remaining = inode.size
        for _ in 0..<inode.blockCount {
            let word = try cursor.u32(image)
            guard word >> 25 == 0 else { throw SquashFSError.corrupt("\(cursor.what): block size word \(word)") }
            let stored = Int(word & 0xFF_FFFF)
            let expected = Int(min(UInt64(blockSize), remaining))
            remaining -= UInt64(expected)
            if stored == 0 {
                try body(.zeros(expected))
                continue
            }
            guard stored <= blockSize else { throw SquashFSError.corrupt("\(cursor.what): a block of \(stored) bytes") }
            let bytes = try image.read(stored, at: position, what: "\(cursor.what): data block")
            position += UInt64(stored)
            var data = word & Format.dataUncompressed != 0
                ? bytes : try image.decompress(bytes, capacity: expected, what: "\(cursor.what): data block")
            guard data.count <= expected else { throw SquashFSError.corrupt("\(cursor.what): a block too large") }
            if data.count < expected { data.append(contentsOf: repeatElement(0, count: expected - data.count)) }
            try body(.bytes(data))
        }
        if inode.tailLength > 0 {
            let fragment = try fragmentData(inode.fragment, what: cursor.what)
            let start = Int(inode.fragmentOffset)
            guard start <= fragment.count, inode.tailLength <= fragment.count - start else {
                throw SquashFSError.corrupt("\(cursor.what): the tail lies outside its fragment")
            }
            try body(.bytes(Array(fragment[start..<start + inode.tailLength])))
        }
    }

    private func fragmentData(_ index: UInt32, what: String) throws -> [UInt8] {
        if let cached = fragmentCache, cached.index == index { return cached.data }
        let (start, word) = try fragmentEntry(index)
        guard word >> 25 == 0 else { throw SquashFSError.corrupt("fragment \(index): size word \(word)") }
        let stored = Int(word & 0xFF_FFFF)
        let blockSize = Int(superblock.blockSize)
        guard stored >= 1, stored <= blockSize else { throw SquashFSError.corrupt("fragment \(index): \(stored) bytes") }
        let bytes = try image.read(stored, at: start, what: "fragment \(index)")
        let data = word & Format.dataUncompressed != 0
            ? bytes : try image.decompress(bytes, capacity: blockSize, what: "fragment \(index)")
        fragmentCache = (index, data)
        return data
    }

    /// Hands over the file cut at `blockSize`; full blocks that lie in holes of the image are `.hole`.
    public func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                             _ body: (SourceBlock) throws -> Void) throws {
        let inode = try fileInode(file, path: path)
        guard blockSize > 0 else { throw SquashFSError.badSource("block size \(blockSize)") }
        var left = inode.size
        var buffer: [UInt8] = []
        var filled = 0
        var onlyZeros = true
        func target() -> Int { Int(min(UInt64(blockSize), left)) }
        func emit() throws {
            let length = target()
            if onlyZeros {
                try body(length == blockSize ? .hole : .raw([UInt8](repeating: 0, count: length)))
            } else {
                try body(.raw(buffer))
            }
            left -= UInt64(length)
            buffer = []
            filled = 0
            onlyZeros = true
        }
        try forEachPiece(of: inode) { piece in
            switch piece {
            case .zeros(var count):
                while count > 0 {
                    let take = min(count, target() - filled)
                    if !onlyZeros { buffer.append(contentsOf: repeatElement(0, count: take)) }
                    filled += take
                    count -= take
                    if filled == target() { try emit() }
                }
            case .bytes(let bytes):
                if filled == 0 && bytes.count == target() {
                    // The image cuts where we do: hand the block over as it is.
                    onlyZeros = false
                    buffer = bytes
                    filled = bytes.count
                    try emit()
                    return
                }
                var rest = bytes[...]
                while !rest.isEmpty {
                    if onlyZeros {
                        buffer = [UInt8](repeating: 0, count: filled)
                        buffer.reserveCapacity(target())
                        onlyZeros = false
                    }
                    let take = min(rest.count, target() - filled)
                    buffer.append(contentsOf: rest.prefix(take))
                    rest = rest.dropFirst(take)
                    filled += take
                    if filled == target() { try emit() }
                }
            }
        }
        guard left == 0 else { throw SquashFSError.corrupt("/\(path.printable): the data is shorter than the file") }
    }

    /// The whole content of a regular file the tree read last (for small files and tests).
    public func contents(of file: RegularFile) throws -> [UInt8] {
        let inode = try fileInode(file, path: [])
        guard inode.size <= 1 << 30 else { throw SquashFSError.notInImage("a file of \(inode.size) bytes is too large to hold in memory") }
        var out: [UInt8] = []
        out.reserveCapacity(Int(inode.size))
        try forEachPiece(of: inode) { piece in
            switch piece {
            case .zeros(let count): out.append(contentsOf: repeatElement(0, count: count))
            case .bytes(let bytes): out.append(contentsOf: bytes)
            }
        }
        return out
    }
}

/// Restores file data from an image: `Restorer(writer: SquashFSContentWriter(image))` extracts a
/// tree `readTree` returned. Holes are left unwritten.
public struct SquashFSContentWriter: ContentWriter {
    public let image: SquashFSImage

    public init(_ image: SquashFSImage) { self.image = image }

    public func writeContent(of file: RegularFile, to fd: Int32, display: String) throws {
        let inode = try image.fileInode(file, path: [])
        var offset: UInt64 = 0
        try image.forEachPiece(of: inode) { piece in
            switch piece {
            case .zeros(let count):
                offset += UInt64(count)
            case .bytes(let bytes):
                try bytes.withUnsafeBytes { try writeAll(fd, $0, at: off_t(offset), display: display) }
                offset += UInt64(bytes.count)
            }
        }
    }
}
