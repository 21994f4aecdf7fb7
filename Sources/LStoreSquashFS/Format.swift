import LStoreCompression
import LStoreTree

/// The constants of SquashFS 4.0 (AgentD/squashfs-tools-ng `doc/format.adoc`, Linux
/// `fs/squashfs/squashfs_fs.h`). All integers on disk are little-endian.
enum Format {
    /// "hsqs" read as a little-endian u32.
    static let magic: UInt32 = 0x7371_7368
    static let superblockSize = 96
    /// A metadata block holds at most this many bytes before compression.
    static let metadataSize = 8192
    /// Bit 15 of a metadata block's 16-bit header: the block is stored uncompressed.
    static let metadataUncompressed: UInt16 = 0x8000
    /// Bit 24 of a data or fragment block size: the block is stored uncompressed.
    static let dataUncompressed: UInt32 = 1 << 24
    /// The u32 and u64 "absent" values.
    static let noFragment: UInt32 = 0xFFFF_FFFF
    static let noXattr: UInt32 = 0xFFFF_FFFF
    static let noTable: UInt64 = 0xFFFF_FFFF_FFFF_FFFF
    /// At most this many entries follow one directory header.
    static let directoryRunLength = 256
    /// The kernel pads images to this device block size.
    static let padding = 4096
    static let minimumBlockLog = 12
    static let maximumBlockLog = 20
    /// A directory listing's `file_size` counts 3 bytes more than the listing: the kernel's
    /// invented "." and "..".
    static let directorySizeBias = 3

    /// Superblock flags.
    enum Flag {
        static let uncompressedInodes: UInt16 = 0x0001
        static let uncompressedData: UInt16 = 0x0002
        static let uncompressedFragments: UInt16 = 0x0008
        static let noFragments: UInt16 = 0x0010
        static let alwaysFragments: UInt16 = 0x0020
        static let duplicates: UInt16 = 0x0040
        static let exportable: UInt16 = 0x0080
        static let uncompressedXattrs: UInt16 = 0x0100
        static let noXattrs: UInt16 = 0x0200
        static let compressorOptions: UInt16 = 0x0400
        static let uncompressedIds: UInt16 = 0x0800
    }

    /// Xattr key prefixes: the type field's low byte. Bit 8 of the type marks an out-of-line value.
    static let xattrPrefixes: [[UInt8]] = [Array("user.".utf8), Array("trusted.".utf8), Array("security.".utf8)]
    static let xattrOutOfLine: UInt16 = 0x0100

    /// The squashfs defaults that need no compressor options block: gzip level 9 (window 15),
    /// zstd level 15, xz with the block size as dictionary.
    static let gzipDefaultLevel = 9
    static let zstdDefaultLevel = 15
}

/// The inode types; an extended type is its basic type + 7. Directory entries always carry the basic type.
enum InodeType: UInt16 {
    case directory = 1, file, symlink, blockDevice, characterDevice, fifo, socket
    case extendedDirectory, extendedFile, extendedSymlink, extendedBlockDevice, extendedCharacterDevice,
         extendedFifo, extendedSocket

    var basic: InodeType { rawValue > 7 ? InodeType(rawValue: rawValue - 7)! : self }
    var extended: InodeType { rawValue > 7 ? self : InodeType(rawValue: rawValue + 7)! }
    var isExtended: Bool { rawValue > 7 }
}

/// The 96-byte superblock.
struct Superblock: Equatable, Sendable {
    var inodeCount: UInt32 = 0
    var modificationTime: UInt32 = 0
    var blockSize: UInt32 = 0
    var fragmentCount: UInt32 = 0
    var compressor: UInt16 = 0
    var blockLog: UInt16 = 0
    var flags: UInt16 = 0
    var idCount: UInt16 = 0
    var versionMajor: UInt16 = 4
    var versionMinor: UInt16 = 0
    var rootInode: UInt64 = 0
    var bytesUsed: UInt64 = 0
    var idTableStart: UInt64 = 0
    var xattrIdTableStart: UInt64 = Format.noTable
    var inodeTableStart: UInt64 = 0
    var directoryTableStart: UInt64 = 0
    var fragmentTableStart: UInt64 = Format.noTable
    var exportTableStart: UInt64 = Format.noTable

    func encoded() -> [UInt8] {
        var out = ByteWriter(capacity: Format.superblockSize)
        out.u32(Format.magic)
        out.u32(inodeCount)
        out.u32(modificationTime)
        out.u32(blockSize)
        out.u32(fragmentCount)
        out.u16(compressor)
        out.u16(blockLog)
        out.u16(flags)
        out.u16(idCount)
        out.u16(versionMajor)
        out.u16(versionMinor)
        out.u64(rootInode)
        out.u64(bytesUsed)
        out.u64(idTableStart)
        out.u64(xattrIdTableStart)
        out.u64(inodeTableStart)
        out.u64(directoryTableStart)
        out.u64(fragmentTableStart)
        out.u64(exportTableStart)
        return out.bytes
    }

    /// Parses the fields; the reader checks them.
    init(decoding bytes: [UInt8]) throws {
        var input = LittleEndianReader(bytes, what: "superblock")
        guard try input.u32() == Format.magic else { throw SquashFSError.corrupt("not a squashfs image (bad magic)") }
        inodeCount = try input.u32()
        modificationTime = try input.u32()
        blockSize = try input.u32()
        fragmentCount = try input.u32()
        compressor = try input.u16()
        blockLog = try input.u16()
        flags = try input.u16()
        idCount = try input.u16()
        versionMajor = try input.u16()
        versionMinor = try input.u16()
        rootInode = try input.u64()
        bytesUsed = try input.u64()
        idTableStart = try input.u64()
        xattrIdTableStart = try input.u64()
        inodeTableStart = try input.u64()
        directoryTableStart = try input.u64()
        fragmentTableStart = try input.u64()
        exportTableStart = try input.u64()
    }

    init() {}
}

/// A reference to a metadata entry: the position of its metadata block relative to the table's
/// start (upper 48 bits) and the entry's offset in the block's uncompressed bytes (lower 16).
struct MetadataReference: Hashable, Sendable {
    var block: UInt64
    var offset: Int

    init(block: UInt64, offset: Int) {
        self.block = block
        self.offset = offset
    }

    init(raw: UInt64) {
        block = raw >> 16
        offset = Int(raw & 0xFFFF)
    }

    var raw: UInt64 { block << 16 | UInt64(offset) }
}

/// How Linux packs a device number into 32 bits (`new_encode_dev`): 12 bits of major, 20 of minor.
enum DeviceNumber {
    static func encode(major: UInt32, minor: UInt32) -> UInt32 {
        (minor & 0xFF) | (major & 0xFFF) << 8 | (minor & 0xFFF00) << 12
    }

    static func decode(_ raw: UInt32) -> (major: UInt32, minor: UInt32) {
        ((raw & 0xFFF00) >> 8, (raw & 0xFF) | (raw >> 12) & 0xFFF00)
    }

    static func fits(major: UInt32, minor: UInt32) -> Bool { major <= 0xFFF && minor <= 0xFFFFF }
}

extension Codec {
    /// The compressor id a superblock names for this codec. Images without compression name gzip
    /// (id 0 is no compressor to the kernel) and mark every block uncompressed.
    var superblockId: UInt16 { self == .none ? UInt16(Codec.gzip.rawValue) : UInt16(rawValue) }
}

/// Reads little-endian integers from bytes in memory it keeps: too little input throws
/// `SquashFSError.corrupt` naming `what`, never traps.
typealias LittleEndianReader = OwnedByteReader<SquashFSError>

extension OwnedByteReader<SquashFSError> {
    /// The next `count` bytes, copied.
    mutating func bytes(_ count: Int) throws -> [UInt8] { try array(count) }
}

extension SquashFSError: TruncatedInputError {
    public init(truncated what: String, at offset: Int, needed: Int) {
        self = .corrupt("\(what): truncated")
    }
}

/// What can go wrong writing or reading an image, as the one line lstore prints.
public enum SquashFSError: Error, CustomStringConvertible, Equatable {
    /// Options the writer cannot use (block size, compression).
    case invalidOptions(String)
    /// A tree the writer cannot encode (bad names, hardlinks, too many owners).
    case invalidTree(String)
    /// A block source that delivered something other than the file's blocks.
    case badSource(String)
    /// An image that does not parse, or that breaks a limit of the reader.
    case corrupt(String)
    /// A valid image using something this reader does not implement (lzo, lzma).
    case unsupported(String)
    /// A file the reader was asked for that the image does not hold.
    case notInImage(String)

    /// The same error, its message starting with `path`, the image it is about.
    func about(_ path: String) -> SquashFSError {
        switch self {
        case .corrupt(let message): .corrupt("\(path): \(message)")
        case .unsupported(let message): .unsupported("\(path): \(message)")
        default: self
        }
    }

    public var description: String {
        switch self {
        case .invalidOptions(let message): "invalid squashfs options: \(message)"
        case .invalidTree(let message): "cannot write this tree as squashfs: \(message)"
        case .badSource(let message): "file data source: \(message)"
        case .corrupt(let message): "corrupt squashfs image: \(message)"
        case .unsupported(let message): "unsupported squashfs image: \(message)"
        case .notInImage(let message): "not in the squashfs image: \(message)"
        }
    }
}
