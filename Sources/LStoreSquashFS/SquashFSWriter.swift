import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// How to write an image.
public struct SquashFSOptions: Sendable {
    /// The codec and level of every data, fragment and metadata block. `none` stores everything
    /// uncompressed (the superblock then names gzip, as mksquashfs `-noI -noD -noF -noX` does).
    public var compression: CompressionSpec
    /// A power of two from 4096 to 1048576.
    public var blockSize: Int
    /// The superblock's `mkfs_time`, seconds since 1970.
    public var modificationTime: UInt32
    /// Compression threads.
    public var threads: Int
    /// Write the export table (inode number to inode), which NFS export needs.
    public var exportTable: Bool
    /// Files with the same data share it: by `RegularFile.content` digest and size when the tree
    /// has digests (a store), else for files read as raw blocks by hash, then byte for byte.
    public var deduplicate: Bool
    /// Where compressed fragment blocks are looked up before being compressed, and saved after.
    /// The image is the same with or without one.
    public var fragmentCache: (any FragmentCache)?
    /// When set, a file smaller than a block whose stored form (compressed with the image's codec
    /// and level, or raw when that does not make it smaller) has at least this many bytes is a
    /// short block of its own instead of a piece of a fragment. nil (the default) packs every small
    /// file into fragments, as mksquashfs does. lstore's checkout sets 3072 when the image's codec,
    /// level and block size are its store's, whose stored blocks it then copies without compressing
    /// (spec/squashfs.md §4).
    public var ownBlockMinimum: Int?

    public init(compression: CompressionSpec, blockSize: Int = 128 << 10, modificationTime: UInt32 = 0,
                threads: Int = processorCount, exportTable: Bool = true, deduplicate: Bool = true) {
        self.compression = compression
        self.blockSize = blockSize
        self.modificationTime = modificationTime
        self.threads = threads
        self.exportTable = exportTable
        self.deduplicate = deduplicate
    }

    /// The processors online.
    public static var processorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// What a write produced.
public struct SquashFSWriteResult: Sendable {
    /// What the tree held that squashfs cannot.
    public var report: SquashFSReport
    /// The superblock's `bytes_used`; the file is padded to a multiple of 4096 after it.
    public var bytesUsed: UInt64
    public var fileSize: UInt64
    public var inodeCount: Int
    /// Inodes written, by type: `directory`, `extendedDirectory`, `file`, … `extendedSocket`.
    public var inodeTypes: [String: Int]
    public var data: DataStatistics
}

/// Writes a tree as a SquashFS 4.0 image (see spec/squashfs.md). The same tree, options and
/// source data give the same bytes at any thread count.
///
/// The image, in order: superblock, compressor options (lz4 always; gzip and zstd when the level
/// is not squashfs's default), data and fragment blocks, inode table, directory table, fragment
/// table, export table, id table, xattr table. Inodes are numbered 1...N in the order they are
/// written: depth first, entries by name, each directory after everything below it, so the root
/// is N. A hardlink set is one inode, written at its first name.
public struct SquashFSWriter {
    public var options: SquashFSOptions

    public init(options: SquashFSOptions) throws {
        let size = options.blockSize
        guard size >= 1 << Format.minimumBlockLog, size <= 1 << Format.maximumBlockLog, size & (size - 1) == 0 else {
            throw SquashFSError.invalidOptions("block size \(size) is not a power of two from 4096 to 1048576")
        }
        guard options.compression.codec.levels.contains(options.compression.level) else {
            throw SquashFSError.invalidOptions("compression \(options.compression) has a level out of range")
        }
        guard options.threads >= 1 else { throw SquashFSError.invalidOptions("threads must be at least 1") }
        self.options = options
    }

    /// Writes `root` (a directory) to a new file at `path`, replacing any file there, reading file
    /// data from `source`. On failure the file is removed. The image is not fsynced.
    public func write(_ root: Node, source: some BlockSource, to path: String) throws -> SquashFSWriteResult {
        let plan = try TreePlan(root: root)
        let fd = try systemCall("open", path: path) {
            open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
        defer { close(fd) }
        do {
            var job = try ImageJob(options: options, plan: plan, fd: fd, display: path)
            return try job.run(source: source)
        } catch {
            unlink(path)
            throw error
        }
    }
}

/// The tree in inode order: what pass one learns before anything is written.
struct TreePlan {
    struct Inode {
        /// The node holding the metadata and content (for a hardlink set, its first member).
        var node: Node
        /// The first name it was met under, relative to the root.
        var path: [UInt8]
        var nlink: UInt32
        /// Directories: the parent's inode number (the root's is the inode count + 1, as mksquashfs does).
        var parent: UInt32 = 0
        /// Directories: the entries, sorted by name.
        var children: [Node] = []
        /// Regular files: the index into `files`.
        var file: Int = -1
    }

    var inodes: [Inode] = []
    /// Every node (hardlink entries too) to its inode's index (inode number - 1).
    var indexOf: [ObjectIdentifier: Int] = [:]
    /// Regular-file inodes, by index, in data order (which is inode order).
    var files: [Int] = []

    init(root: Node) throws {
        guard case .directory(let rootDirectory) = root.content else {
            throw SquashFSError.invalidTree("the root is not a directory")
        }
        struct Frame {
            var node: Node
            var path: [UInt8]
            var children: [Node]
            var next = 0
            var subdirectories: UInt32 = 0
        }
        var frames = [Frame(node: root, path: [], children: try Self.sorted(rootDirectory, path: []))]
        var seenDirectories: Set<ObjectIdentifier> = [ObjectIdentifier(root)]

        func addName(_ holder: Node, name: Node, path: [UInt8]) {
            let key = ObjectIdentifier(holder)
            if let index = indexOf[key] {
                inodes[index].nlink += 1
                indexOf[ObjectIdentifier(name)] = index
                return
            }
            let index = inodes.count
            var inode = Inode(node: holder, path: path, nlink: 1)
            if case .regular = holder.content {
                inode.file = files.count
                files.append(index)
            }
            inodes.append(inode)
            indexOf[key] = index
            indexOf[ObjectIdentifier(name)] = index
        }

        while let top = frames.indices.last {
            if frames[top].next < frames[top].children.count {
                let child = frames[top].children[frames[top].next]
                frames[top].next += 1
                let path = frames[top].path.isEmpty ? child.name : frames[top].path + [UInt8(ascii: "/")] + child.name
                switch child.content {
                case .directory(let directory):
                    guard seenDirectories.insert(ObjectIdentifier(child)).inserted else {
                        throw SquashFSError.invalidTree("/\(path.printable): a directory appears twice in the tree")
                    }
                    frames[top].subdirectories += 1
                    frames.append(Frame(node: child, path: path, children: try Self.sorted(directory, path: path)))
                case .hardlink(let target):
                    addName(try Self.holder(of: target, in: root, path: path), name: child, path: path)
                default:
                    addName(child, name: child, path: path)
                }
            } else {
                let frame = frames.removeLast()
                let index = inodes.count
                inodes.append(Inode(node: frame.node, path: frame.path, nlink: 2 + frame.subdirectories,
                                    children: frame.children))
                indexOf[ObjectIdentifier(frame.node)] = index
                for child in frame.children {
                    if case .directory = child.content { inodes[indexOf[ObjectIdentifier(child)]!].parent = UInt32(index + 1) }
                }
            }
        }
        inodes[inodes.count - 1].parent = UInt32(inodes.count + 1)
    }

    /// A directory's entries sorted by name bytes; throws on an invalid or repeated name.
    static func sorted(_ directory: Directory, path: [UInt8]) throws -> [Node] {
        let children = directory.children.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        for (index, child) in children.enumerated() {
            guard isValidName(child.name) else {
                throw SquashFSError.invalidTree("/\(path.printable): invalid entry name \(child.name.printable)")
            }
            if index > 0 && children[index - 1].name == child.name {
                throw SquashFSError.invalidTree("/\(path.printable): two entries named \(child.name.printable)")
            }
        }
        return children
    }

    /// The node a hardlink names, following further hardlinks.
    static func holder(of target: [UInt8], in root: Node, path: [UInt8]) throws -> Node {
        var next = target
        for _ in 0..<64 {
            guard let node = root.lookup(next), !next.isEmpty else {
                throw SquashFSError.invalidTree("/\(path.printable): hardlink to /\(next.printable), which is not in the tree")
            }
            switch node.content {
            case .hardlink(let further): next = further
            case .directory: throw SquashFSError.invalidTree("/\(path.printable): hardlink to a directory")
            default: return node
            }
        }
        throw SquashFSError.invalidTree("/\(path.printable): hardlinks that form a cycle")
    }
}

/// One write in progress: the output, the tables being built, the report.
struct ImageJob {
    let options: SquashFSOptions
    let plan: TreePlan
    let output: OutputFile
    let compressor: Compressor
    var superblock = Superblock()

    init(options: SquashFSOptions, plan: TreePlan, fd: Int32, display: String) throws {
        self.options = options
        self.plan = plan
        compressor = try Compressor(options.compression)
        output = OutputFile(fd: fd, display: display, offset: UInt64(Format.superblockSize))
    }

    mutating func run(source: some BlockSource) throws -> SquashFSWriteResult {
        let spec = options.compression
        superblock.modificationTime = options.modificationTime
        superblock.blockSize = UInt32(options.blockSize)
        superblock.blockLog = UInt16(options.blockSize.trailingZeroBitCount)
        superblock.compressor = spec.codec.superblockId
        superblock.inodeCount = UInt32(plan.inodes.count)
        if spec.codec == .none {
            superblock.flags |= Format.Flag.uncompressedInodes | Format.Flag.uncompressedData
                | Format.Flag.uncompressedFragments | Format.Flag.uncompressedXattrs | Format.Flag.uncompressedIds
        }
        if let options = compressorOptions() {
            superblock.flags |= Format.Flag.compressorOptions
            var block = ByteWriter()
            block.u16(UInt16(options.count) | Format.metadataUncompressed)
            block.append(options)
            try output.append(block.bytes)
        }

        // Data and fragments. The inodes and directories are encoded on a queue of their own as
        // the files' data is placed, children before parents, overlapping the data's compression.
        let data = try DataWriter(output: output, spec: spec, blockSize: options.blockSize,
                                  threads: options.threads, fileCount: plan.files.count,
                                  cache: options.fragmentCache, ownBlockMinimum: options.ownBlockMinimum)
        defer { data.abandon() }
        let encoder = try InodeEncoder(plan: plan, compression: spec)
        defer { encoder.wait() }
        var firstWithContent: [ContentKey: Int] = [:]
        var duplicateOf = [Int](repeating: -1, count: plan.files.count)
        var handedOver = 0
        for (file, inodeIndex) in plan.files.enumerated() {
            let inode = plan.inodes[inodeIndex]
            guard case .regular(let regular) = inode.node.content, regular.size > 0 else { continue }
            if options.deduplicate, let digest = regular.content {
                let key = ContentKey(digest: digest, size: regular.size)
                if let first = firstWithContent[key] {
                    duplicateOf[file] = first
                    data.countDuplicate()
                    continue
                }
                firstWithContent[key] = file
            }
            if let earlier = try data.add(index: file, file: regular, path: inode.path, source: source,
                                          deduplicate: options.deduplicate) {
                duplicateOf[file] = earlier
            }
            if data.placedFiles >= handedOver + InodeEncoder.filesPerHandOver {
                encoder.encode(layouts: data.layouts[handedOver..<data.placedFiles], duplicateOf: duplicateOf[handedOver..<data.placedFiles])
                handedOver = data.placedFiles
            }
        }
        try data.finish()
        if options.deduplicate { superblock.flags |= Format.Flag.duplicates }
        encoder.encode(layouts: data.layouts[handedOver...], duplicateOf: duplicateOf[handedOver...])
        let (inodeTable, directoryTable) = try encoder.finish()
        let references = encoder.references, ids = encoder.ids, xattrs = encoder.xattrs
        let rootReference = references[references.count - 1]
        superblock.rootInode = rootReference.raw

        superblock.inodeTableStart = output.offset
        try output.append(inodeTable.stored)
        superblock.directoryTableStart = output.offset
        try output.append(directoryTable.stored)

        // Fragment table: u64 start, u32 size (bit 24: raw), u32 zero.
        superblock.fragmentCount = UInt32(data.fragmentEntries.count)
        if !data.fragmentEntries.isEmpty {
            var entries = ByteWriter(capacity: data.fragmentEntries.count * 16)
            for entry in data.fragmentEntries {
                entries.u64(entry.start)
                entries.u32(entry.size)
                entries.u32(0)
            }
            superblock.fragmentTableStart = try writeLookupTable(entries.bytes)
        }

        // Export table: the reference of inode n at index n - 1.
        if options.exportTable {
            var entries = ByteWriter(capacity: references.count * 8)
            for reference in references { entries.u64(reference.raw) }
            superblock.exportTableStart = try writeLookupTable(entries.bytes)
            superblock.flags |= Format.Flag.exportable
        }

        superblock.idCount = UInt16(ids.ids.count)
        superblock.idTableStart = try writeLookupTable(ids.encoded())

        // Xattrs: the pairs, the lookup table, then its header and index, which end the image.
        if xattrs.count > 0 {
            try xattrs.pairs.finish()
            let pairsStart = output.offset
            try output.append(xattrs.pairs.stored)
            var table = try LookupTable(entries: xattrs.lookupEntries, compressor: compressor)
            table.placed(at: output.offset)
            try output.append(table.blocks)
            superblock.xattrIdTableStart = output.offset
            var header = ByteWriter(capacity: 16)
            header.u64(pairsStart)
            header.u32(xattrs.count)
            header.u32(0)
            try output.append(header.bytes)
            try output.append(table.index)
        } else {
            superblock.flags |= Format.Flag.noXattrs
        }

        try output.finish()
        superblock.bytesUsed = output.offset
        let fileSize = (output.offset + UInt64(Format.padding) - 1) / UInt64(Format.padding) * UInt64(Format.padding)
        try output.write(superblock.encoded(), at: 0)
        try systemCall("ftruncate", path: output.display) { ftruncate(output.fd, off_t(fileSize)) }
        return SquashFSWriteResult(report: encoder.report, bytesUsed: superblock.bytesUsed, fileSize: fileSize,
                                   inodeCount: plan.inodes.count, inodeTypes: encoder.inodeTypes, data: data.statistics)
    }

    /// The compressor options payload, when one is written.
    private func compressorOptions() -> [UInt8]? {
        let spec = options.compression
        var out = ByteWriter()
        switch spec.codec {
        case .lz4:
            out.u32(1)  // the "legacy" LZ4 format, the only one
            out.u32(spec.level == 1 ? 1 : 0)  // 1: high compression
        case .zstd where spec.level != Format.zstdDefaultLevel:
            out.u32(UInt32(spec.level))
        case .gzip where spec.level != Format.gzipDefaultLevel:
            out.u32(UInt32(spec.level))
            out.u16(15)  // window bits
            out.u16(0)  // default strategy
        default:
            return nil
        }
        return out.bytes
    }

    /// Writes a lookup table's blocks then its index; returns where the index starts.
    private func writeLookupTable(_ entries: [UInt8]) throws -> UInt64 {
        var table = try LookupTable(entries: entries, compressor: compressor)
        table.placed(at: output.offset)
        try output.append(table.blocks)
        let start = output.offset
        try output.append(table.index)
        return start
    }
}

private struct ContentKey: Hashable {
    var digest: Digest
    var size: UInt64
}
