import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// How far the reader goes before it calls an image hostile.
public struct SquashFSReadLimits: Sendable {
    /// Entries in the tree, the root included.
    public var entries: Int
    /// Directory nesting.
    public var depth: Int
    /// Bytes of xattr names and values held for the tree (each distinct xattr set counted once).
    public var xattrBytes: Int
    /// Decompressed metadata blocks kept in memory (8 KiB each).
    public var cachedMetadataBlocks: Int

    public init(entries: Int = 20_000_000, depth: Int = 2048, xattrBytes: Int = 256 << 20,
                cachedMetadataBlocks: Int = 512) {
        self.entries = entries
        self.depth = depth
        self.xattrBytes = xattrBytes
        self.cachedMetadataBlocks = cachedMetadataBlocks
    }
}

/// What the superblock says.
public struct SquashFSImageInfo: Sendable, Equatable {
    public var blockSize: Int
    /// The compressor the superblock names (an image stored without compression names gzip).
    public var codec: Codec
    public var inodeCount: Int
    public var fragmentCount: Int
    public var idCount: Int
    public var modificationTime: UInt32
    public var bytesUsed: UInt64
    public var flags: UInt16
    /// The compressor options block, when there is one.
    public var compressorOptions: [UInt8]?
    public var hasExportTable: Bool
    public var hasXattrTable: Bool
}

/// Reads a SquashFS 4.0 image (gzip, xz, lz4, zstd, or uncompressed): the tree as `Node`s and the
/// data of its files. It reads our writer's images and mksquashfs's, and rejects corrupt or
/// hostile ones with `SquashFSError.corrupt`: every offset and length is checked against the
/// image size, every loop is bounded by the bytes it consumes, metadata is cached in a bounded
/// cache, the tree is walked without recursion under `SquashFSReadLimits`, and a directory met
/// twice (a cycle) is refused.
///
/// Not thread-safe: one thread at a time.
public final class SquashFSImage {
    public let info: SquashFSImageInfo
    let superblock: Superblock
    let image: ImageFile
    let limits: SquashFSReadLimits
    private let ids: [UInt32]
    private let fragments: LookupTableReader?
    private let xattrIds: LookupTableReader?
    private let xattrPairsStart: UInt64
    let directoryTableEnd: UInt64
    /// The regular files of the tree read last, by path (as `RegularFile.sourcePath` holds it).
    var files: [[UInt8]: FileInode] = [:]
    private var xattrSets: [UInt32: [Xattr]] = [:]
    private var xattrBytesHeld = 0
    var fragmentCache: (index: UInt32, data: [UInt8])?

    /// Opens the image at `path` and checks its superblock and tables.
    public init(path: String, limits: SquashFSReadLimits = SquashFSReadLimits()) throws {
        self.limits = limits
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let code = errno
            close(fd)
            throw FileError(path: path, operation: "stat", errno: code)
        }
        let fileSize = UInt64(max(st.st_size, 0))
        guard fileSize >= UInt64(Format.superblockSize) else {
            close(fd)
            throw SquashFSError.corrupt("\(path): truncated: \(fileSize) bytes, too short for a superblock")
        }
        var headerBytes = [UInt8](repeating: 0, count: Format.superblockSize)
        let got = headerBytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Format.superblockSize, 0) }
        guard got == Format.superblockSize else {
            close(fd)
            throw SquashFSError.corrupt("\(path): truncated: cannot read the superblock")
        }
        let superblock: Superblock
        let codec: Codec
        do {
            superblock = try Superblock(decoding: headerBytes)
            codec = try Self.check(superblock, fileSize: fileSize)
        } catch let error as SquashFSError {
            close(fd)
            throw error.about(path)
        } catch {
            close(fd)
            throw error
        }
        self.superblock = superblock
        image = try ImageFile(fd: fd, display: path, end: superblock.bytesUsed, codec: codec,
                              cacheCapacity: max(limits.cachedMetadataBlocks, 8))

        var options: [UInt8]?
        if superblock.flags & Format.Flag.compressorOptions != 0 {
            let block = try image.metadataBlock(at: UInt64(Format.superblockSize), limit: superblock.inodeTableStart,
                                                what: "compressor options")
            options = block.data
            if codec == .lz4 {
                var input = LittleEndianReader(block.data, what: "lz4 options")
                guard try input.u32() == 1 else { throw SquashFSError.unsupported("an lz4 format other than version 1") }
            }
        }

        // The directory table ends where the first of the tables after it begins.
        directoryTableEnd = [superblock.fragmentTableStart, superblock.exportTableStart, superblock.idTableStart,
                             superblock.xattrIdTableStart, superblock.bytesUsed]
            .filter { $0 != Format.noTable && $0 > superblock.directoryTableStart }.min() ?? superblock.bytesUsed

        let idTable = try LookupTableReader(image: image, start: superblock.idTableStart,
                                            count: Int(superblock.idCount), entrySize: 4, what: "id table")
        var ids: [UInt32] = []
        ids.reserveCapacity(Int(superblock.idCount))
        for index in 0..<Int(superblock.idCount) {
            var input = LittleEndianReader(try idTable.entry(index, image: image), what: "id table")
            ids.append(try input.u32())
        }
        self.ids = ids

        fragments = superblock.fragmentCount == 0 ? nil
            : try LookupTableReader(image: image, start: superblock.fragmentTableStart,
                                    count: Int(superblock.fragmentCount), entrySize: 16, what: "fragment table")

        if superblock.xattrIdTableStart != Format.noTable {
            let header = try image.read(16, at: superblock.xattrIdTableStart, what: "xattr table header")
            var input = LittleEndianReader(header, what: "xattr table header")
            xattrPairsStart = try input.u64()
            let count = Int(try input.u32())
            guard xattrPairsStart < superblock.xattrIdTableStart else {
                throw SquashFSError.corrupt("the xattr pairs start after the xattr table")
            }
            xattrIds = count == 0 ? nil
                : try LookupTableReader(image: image, start: superblock.xattrIdTableStart + 16, count: count,
                                        entrySize: 16, what: "xattr id table")
        } else {
            xattrPairsStart = 0
            xattrIds = nil
        }

        info = SquashFSImageInfo(
            blockSize: Int(superblock.blockSize), codec: codec, inodeCount: Int(superblock.inodeCount),
            fragmentCount: Int(superblock.fragmentCount), idCount: Int(superblock.idCount),
            modificationTime: superblock.modificationTime, bytesUsed: superblock.bytesUsed, flags: superblock.flags,
            compressorOptions: options, hasExportTable: superblock.exportTableStart != Format.noTable,
            hasXattrTable: superblock.xattrIdTableStart != Format.noTable)
    }

    /// Checks the superblock's fields against each other and the file; returns the codec.
    private static func check(_ sb: Superblock, fileSize: UInt64) throws -> Codec {
        guard sb.versionMajor == 4, sb.versionMinor == 0 else {
            throw SquashFSError.unsupported("squashfs version \(sb.versionMajor).\(sb.versionMinor)")
        }
        let codec: Codec
        switch sb.compressor {
        case 1: codec = .gzip
        case 4: codec = .xz
        case 5: codec = .lz4
        case 6: codec = .zstd
        case 2: throw SquashFSError.unsupported("lzma (version 1) compression")
        case 3: throw SquashFSError.unsupported("lzo compression")
        default: throw SquashFSError.corrupt("unknown compressor \(sb.compressor)")
        }
        let size = sb.blockSize
        guard size >= 1 << Format.minimumBlockLog, size <= 1 << Format.maximumBlockLog, size & (size - 1) == 0,
              UInt32(1) << sb.blockLog == size
        else { throw SquashFSError.corrupt("block size \(size) with block_log \(sb.blockLog)") }
        let header = UInt64(Format.superblockSize)
        guard sb.bytesUsed <= fileSize else {
            throw SquashFSError.corrupt("truncated: \(fileSize) bytes of the \(sb.bytesUsed) the superblock says")
        }
        guard sb.bytesUsed >= header else { throw SquashFSError.corrupt("bytes_used \(sb.bytesUsed), less than a superblock") }
        guard sb.inodeTableStart >= header, sb.inodeTableStart < sb.directoryTableStart,
              sb.directoryTableStart < sb.bytesUsed
        else { throw SquashFSError.corrupt("the inode and directory tables are out of place") }
        guard sb.idCount >= 1, sb.idTableStart > sb.directoryTableStart, sb.idTableStart < sb.bytesUsed else {
            throw SquashFSError.corrupt("the id table is out of place")
        }
        for (name, start) in [("fragment", sb.fragmentTableStart), ("export", sb.exportTableStart),
                              ("xattr", sb.xattrIdTableStart)] where start != Format.noTable {
            guard start > sb.directoryTableStart, start < sb.bytesUsed else {
                if name == "fragment" && sb.fragmentCount == 0 { continue }
                throw SquashFSError.corrupt("the \(name) table is out of place")
            }
        }
        guard sb.inodeCount >= 1 else { throw SquashFSError.corrupt("no inodes") }
        let root = MetadataReference(raw: sb.rootInode)
        guard root.offset < Format.metadataSize, root.block < sb.directoryTableStart - sb.inodeTableStart else {
            throw SquashFSError.corrupt("the root inode reference points outside the inode table")
        }
        return codec
    }
}

// MARK: - Inodes

/// Where a regular file's data is.
struct FileInode {
    var start: UInt64
    var size: UInt64
    var fragment: UInt32
    var fragmentOffset: UInt32
    /// The block list, right after the inode's fields.
    var blockList: MetadataCursor
    var blockCount: UInt64
    var tailLength: Int
}

/// An inode as read.
struct InodeRecord {
    var type: InodeType
    var permissions: UInt16
    var uid: UInt32
    var gid: UInt32
    var mtime: UInt32
    var number: UInt32
    var nlink: UInt32 = 1
    var xattr: UInt32 = Format.noXattr
    var directory: (start: UInt32, offset: Int, size: UInt32) = (0, 0, 0)
    var file: FileInode?
    var target: [UInt8] = []
    var device: UInt32 = 0

    var kind: EntryKind {
        switch type.basic {
        case .directory: .directory
        case .file: .regular
        case .symlink: .symlink
        case .blockDevice: .blockDevice
        case .characterDevice: .characterDevice
        case .fifo: .fifo
        default: .socket
        }
    }
}

extension SquashFSImage {
    func readInode(_ reference: MetadataReference) throws -> InodeRecord {
        let tableEnd = superblock.directoryTableStart
        var cursor = try MetadataCursor(table: superblock.inodeTableStart, reference: reference, limit: tableEnd,
                                        what: "inode \(reference.block):\(reference.offset)")
        let rawType = try cursor.u16(image)
        guard let type = InodeType(rawValue: rawType) else {
            throw SquashFSError.corrupt("\(cursor.what): unknown inode type \(rawType)")
        }
        let permissions = try cursor.u16(image) & 0o7777
        let uidIndex = Int(try cursor.u16(image)), gidIndex = Int(try cursor.u16(image))
        guard uidIndex < ids.count, gidIndex < ids.count else {
            throw SquashFSError.corrupt("\(cursor.what): owner index beyond the \(ids.count) ids")
        }
        let mtime = try cursor.u32(image)
        let number = try cursor.u32(image)
        guard number >= 1, number <= superblock.inodeCount else {
            throw SquashFSError.corrupt("\(cursor.what): inode number \(number) of \(superblock.inodeCount)")
        }
        var inode = InodeRecord(type: type, permissions: permissions, uid: ids[uidIndex], gid: ids[gidIndex],
                                mtime: mtime, number: number)
        switch type {
        case .directory:
            let start = try cursor.u32(image)
            inode.nlink = try cursor.u32(image)
            let size = UInt32(try cursor.u16(image))
            let offset = Int(try cursor.u16(image))
            _ = try cursor.u32(image)  // parent
            inode.directory = (start, offset, size)
        case .extendedDirectory:
            inode.nlink = try cursor.u32(image)
            let size = try cursor.u32(image)
            let start = try cursor.u32(image)
            _ = try cursor.u32(image)  // parent
            _ = try cursor.u16(image)  // index count: lookups only
            let offset = Int(try cursor.u16(image))
            inode.xattr = try cursor.u32(image)
            inode.directory = (start, offset, size)
        case .file:
            let start = UInt64(try cursor.u32(image))
            let fragment = try cursor.u32(image)
            let fragmentOffset = try cursor.u32(image)
            let size = UInt64(try cursor.u32(image))
            inode.file = try fileInode(start: start, size: size, fragment: fragment, fragmentOffset: fragmentOffset,
                                       cursor: cursor)
        case .extendedFile:
            let start = try cursor.u64(image)
            let size = try cursor.u64(image)
            _ = try cursor.u64(image)  // sparse bytes
            inode.nlink = try cursor.u32(image)
            let fragment = try cursor.u32(image)
            let fragmentOffset = try cursor.u32(image)
            inode.xattr = try cursor.u32(image)
            inode.file = try fileInode(start: start, size: size, fragment: fragment, fragmentOffset: fragmentOffset,
                                       cursor: cursor)
        case .symlink, .extendedSymlink:
            inode.nlink = try cursor.u32(image)
            let size = Int(try cursor.u32(image))
            guard size >= 1, size <= Limits.symlinkTargetLength else {
                throw SquashFSError.corrupt("\(cursor.what): a symlink target of \(size) bytes")
            }
            inode.target = try cursor.read(size, from: image)
            guard !inode.target.contains(0) else { throw SquashFSError.corrupt("\(cursor.what): NUL in a symlink target") }
            if type == .extendedSymlink { inode.xattr = try cursor.u32(image) }
        case .blockDevice, .characterDevice, .extendedBlockDevice, .extendedCharacterDevice:
            inode.nlink = try cursor.u32(image)
            inode.device = try cursor.u32(image)
            if type.isExtended { inode.xattr = try cursor.u32(image) }
        case .fifo, .socket, .extendedFifo, .extendedSocket:
            inode.nlink = try cursor.u32(image)
            if type.isExtended { inode.xattr = try cursor.u32(image) }
        }
        return inode
    }

    private func fileInode(start: UInt64, size: UInt64, fragment: UInt32, fragmentOffset: UInt32,
                           cursor: MetadataCursor) throws -> FileInode {
        let block = UInt64(superblock.blockSize)
        var blocks = size / block
        var tail = Int(size % block)
        if fragment == Format.noFragment {
            if tail > 0 { blocks += 1 }
            tail = 0
        } else {
            guard fragment < superblock.fragmentCount else {
                throw SquashFSError.corrupt("\(cursor.what): fragment \(fragment) of \(superblock.fragmentCount)")
            }
        }
        guard start <= superblock.bytesUsed else {
            throw SquashFSError.corrupt("\(cursor.what): data starts past the end of the image")
        }
        return FileInode(start: start, size: size, fragment: fragment, fragmentOffset: fragmentOffset,
                         blockList: cursor, blockCount: blocks, tailLength: tail)
    }

    /// The xattrs of set `id`, sorted by name.
    func xattrs(_ id: UInt32) throws -> [Xattr] {
        if id == Format.noXattr { return [] }
        if let known = xattrSets[id] { return known }
        guard let table = xattrIds else { throw SquashFSError.corrupt("an inode refers to xattrs the image does not have") }
        var entry = LittleEndianReader(try table.entry(Int(id), image: image), what: "xattr id table")
        let reference = MetadataReference(raw: try entry.u64())
        let count = Int(try entry.u32())
        let limit = table.index.first ?? superblock.xattrIdTableStart
        var cursor = try MetadataCursor(table: xattrPairsStart, reference: reference, limit: limit, what: "xattr set \(id)")
        var result: [Xattr] = []
        var bytes = 0
        for _ in 0..<count {
            let type = try cursor.u16(image)
            let prefix = Int(type & 0xFF)
            guard prefix < Format.xattrPrefixes.count, type & ~(0xFF | Format.xattrOutOfLine) == 0 else {
                throw SquashFSError.corrupt("xattr set \(id): unknown xattr type \(type)")
            }
            let nameSize = Int(try cursor.u16(image))
            let prefixBytes = Format.xattrPrefixes[prefix]
            guard nameSize >= 1, prefixBytes.count + nameSize <= Limits.xattrNameLength else {
                throw SquashFSError.corrupt("xattr set \(id): a name of \(nameSize) bytes")
            }
            let name = prefixBytes + (try cursor.read(nameSize, from: image))
            guard !name.contains(0) else { throw SquashFSError.corrupt("xattr set \(id): NUL in a name") }
            var valueSize = Int(try cursor.u32(image))
            let value: [UInt8]
            if type & Format.xattrOutOfLine != 0 {
                guard valueSize == 8 else { throw SquashFSError.corrupt("xattr set \(id): an out-of-line value of size \(valueSize)") }
                let target = MetadataReference(raw: try cursor.u64(image))
                var valueCursor = try MetadataCursor(table: xattrPairsStart, reference: target, limit: limit,
                                                     what: "xattr set \(id) value")
                valueSize = Int(try valueCursor.u32(image))
                guard valueSize <= Limits.xattrValueLength else {
                    throw SquashFSError.corrupt("xattr set \(id): a value of \(valueSize) bytes")
                }
                value = try valueCursor.read(valueSize, from: image)
            } else {
                guard valueSize <= Limits.xattrValueLength else {
                    throw SquashFSError.corrupt("xattr set \(id): a value of \(valueSize) bytes")
                }
                value = try cursor.read(valueSize, from: image)
            }
            bytes += name.count + value.count
            xattrBytesHeld += name.count + value.count
            guard xattrBytesHeld <= limits.xattrBytes else {
                throw SquashFSError.corrupt("xattrs beyond the reader's limit of \(limits.xattrBytes) bytes")
            }
            result.append(Xattr(name: name, value: value))
        }
        result.sort { $0.name.lexicographicallyPrecedes($1.name) }
        for (a, b) in zip(result, result.dropFirst()) where a.name == b.name {
            throw SquashFSError.corrupt("xattr set \(id): \(a.name.printable) twice")
        }
        xattrSets[id] = result
        return result
    }

    /// A fragment table entry: where the block is and its stored size word.
    func fragmentEntry(_ index: UInt32) throws -> (start: UInt64, size: UInt32) {
        guard let fragments else { throw SquashFSError.corrupt("a file refers to fragment \(index) of none") }
        var entry = LittleEndianReader(try fragments.entry(Int(index), image: image), what: "fragment table")
        return (try entry.u64(), try entry.u32())
    }
}
