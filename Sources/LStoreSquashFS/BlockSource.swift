import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// One block of a regular file, as a `BlockSource` hands it to the writer.
public enum SourceBlock: Sendable {
    /// A full block of zeros that is a hole in the source (a sparse file on disk). The image
    /// records it as a hole (block size 0), stores nothing, and counts it in the inode's sparse
    /// bytes, so that the kernel reports the file's blocks as mksquashfs's image of it does.
    case hole
    /// A full block of zeros the source knows of without knowing whether it was a hole on disk
    /// (lstore's store keeps every all-zero block as one). The image holds it as it holds `.hole`:
    /// a hole counted in the sparse bytes, since the image stores none of those bytes either. (A
    /// block of zeros the writer finds in raw data is a hole not counted, as mksquashfs counts
    /// none in a file that is not sparse on disk.)
    case zeros
    /// The block's bytes: `blockSize` of them, or the rest of the file for the last block.
    case raw([UInt8])
    /// The block already compressed. The writer copies the bytes unchanged when the codec and
    /// level are the image's, else decompresses and compresses again.
    case stored(StoredBlock)
}

/// A block compressed exactly as a squashfs data block of its codec (a zstd frame, an lz4 block,
/// a zlib stream, an xz stream with CRC32), which is how lstore's store keeps blocks.
public struct StoredBlock: Sendable {
    public var bytes: [UInt8]
    /// The codec and level the bytes were made with; codec `.none` means the bytes are the raw block.
    public var spec: CompressionSpec
    /// How many bytes the block decompresses to.
    public var rawLength: Int
    /// The SHA-256 of the raw bytes, when the source knows it (a store does: it is the block's id).
    /// It lets a `FragmentCache` recognise a fragment without decompressing what it packs.
    public var digest: Digest?
    /// For a raw block (codec `.none`): the codec and level the source tried and found did not
    /// make it smaller, when it knows (a store does). When they are the image's, the writer stores
    /// the block raw without trying again: the answer would be the same.
    public var notSmallerWith: CompressionSpec?

    public init(bytes: [UInt8], spec: CompressionSpec, rawLength: Int, digest: Digest? = nil,
                notSmallerWith: CompressionSpec? = nil) {
        self.bytes = bytes
        self.spec = spec
        self.rawLength = rawLength
        self.digest = digest
        self.notSmallerWith = notSmallerWith
    }
}

/// Where the writer gets the data of regular files: lstore's store, a directory on disk
/// (`DirectoryBlockSource`), or another image (`SquashFSImage`).
///
/// The writer calls it for one file at a time, from one thread, in the image's data order.
public protocol BlockSource {
    /// Calls `body` with each block of `file` in order: `ceil(file.size / blockSize)` blocks, each
    /// `blockSize` bytes but the last, which holds the rest. `.hole` stands only for a full block.
    /// `path` is the entry's path in the tree (relative to the root), for messages.
    func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                      _ body: (SourceBlock) throws -> Void) throws
}

/// Reads each file from `RegularFile.sourcePath` (as `Scanner` fills it), cutting it at the block
/// size. Full blocks that lie in a hole of the file on disk (`SEEK_DATA`) are handed over as `.hole`
/// without being read; the writer also turns any other all-zero full block into a hole.
public struct DirectoryBlockSource: BlockSource, Sendable {
    public init() {}

    public func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                             _ body: (SourceBlock) throws -> Void) throws {
        guard let source = file.sourcePath else {
            throw SquashFSError.badSource("\(path.printable): the tree does not say where its data is (no source path)")
        }
        let display = source.printable
        let fd = try source.withCString { cPath in
            try systemCall("open", path: display) { open(cPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        }
        defer { close(fd) }
        let size = file.size
        let block = UInt64(blockSize)
        var offset: UInt64 = 0
        // [dataStart, dataEnd): the next data region at or after the offsets already read;
        // whatever lies before dataStart is a hole.
        var dataStart: UInt64 = 0
        var dataEnd: UInt64 = 0
        while offset < size {
            let length = Int(min(block, size - offset))
            if length == blockSize {
                if offset >= dataEnd {
                    // Past the data region found last: find the next one.
                    let found = lseek(fd, off_t(offset), seekData)
                    if found >= 0 {
                        dataStart = UInt64(found)
                        let hole = lseek(fd, found, seekHole)
                        dataEnd = hole >= 0 ? UInt64(hole) : UInt64.max
                    } else if errno == ENXIO {
                        dataStart = UInt64.max  // only a hole remains
                        dataEnd = UInt64.max
                    } else {
                        dataStart = offset  // no SEEK_DATA here: read everything
                        dataEnd = UInt64.max
                    }
                }
                if offset + block <= dataStart {
                    try body(.hole)
                    offset += block
                    continue
                }
            }
            let bytes = try [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
                var got = 0
                while got < length {
                    let n = try systemCall("read", path: display) {
                        pread(fd, buffer.baseAddress! + got, length - got, off_t(offset) + off_t(got))
                    }
                    if n == 0 {
                        throw FileError(path: display, operation: "file shrank while being read (expected \(size) bytes)",
                                        errno: 0)
                    }
                    got += n
                }
                count = length
            }
            try body(.raw(bytes))
            offset += UInt64(length)
        }
    }
}

/// `SEEK_HOLE` from `<unistd.h>`: the next hole at or after the given offset (the end counts as one).
let seekHole: Int32 = 4

/// Compressed fragment blocks of earlier images, found again by what they pack. lstore's store
/// keeps one, so that checking out a layer again, or a layer that shares runs of small files with
/// one checked out before, compresses only the fragments it has not seen.
///
/// Called from the writer's ordering thread. A cache that cannot save says nothing: it only makes
/// a later write slower.
public protocol FragmentCache: Sendable {
    func fragment(for key: FragmentKey) -> CachedFragment?
    func save(_ fragment: CachedFragment, for key: FragmentKey)
}

/// What names a fragment block: the codec, level and block size it is compressed with, and the
/// SHA-256 and length of each file packed into it, in order. Two fragments with the same key hold
/// the same bytes.
public struct FragmentKey: Sendable, Hashable {
    public struct Piece: Sendable, Hashable {
        public var digest: Digest
        public var length: Int
    }

    public var spec: CompressionSpec
    public var blockSize: Int
    public var pieces: [Piece]
}

/// A fragment block as the image stores it: compressed, or raw when compression did not pay.
public struct CachedFragment: Sendable, Equatable {
    public var bytes: [UInt8]
    public var compressed: Bool

    public init(bytes: [UInt8], compressed: Bool) {
        self.bytes = bytes
        self.compressed = compressed
    }
}
