import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The bytes of an image on disk, read with `pread`, every read checked against the image size,
/// and its metadata blocks, decompressed and cached.
final class ImageFile {
    let fd: Int32
    let display: String
    /// Reads stop here: the superblock's `bytes_used` once it is checked, the file size before.
    var end: UInt64
    let decompressor: Decompressor
    private var cache: [UInt64: MetadataBlock] = [:]
    private let cacheCapacity: Int

    struct MetadataBlock {
        var data: [UInt8]
        /// Where the next block's header starts.
        var next: UInt64
    }

    init(fd: Int32, display: String, end: UInt64, codec: Codec, cacheCapacity: Int) throws {
        self.fd = fd
        self.display = display
        self.end = end
        self.cacheCapacity = cacheCapacity
        decompressor = try Decompressor(codec)
    }

    deinit { close(fd) }

    /// `count` bytes at `offset`, which must lie below `limit` (and the image's end).
    func read(_ count: Int, at offset: UInt64, limit: UInt64? = nil, what: @autoclosure () -> String) throws -> [UInt8] {
        let bound = min(limit ?? end, end)
        guard count >= 0, offset <= bound, UInt64(count) <= bound - offset else {
            throw SquashFSError.corrupt("\(what()) (\(count) bytes at \(offset)) lies outside the image")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = try systemCall("read", path: display) {
                    pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                }
                guard n > 0 else { throw SquashFSError.corrupt("\(what()): the image file is shorter than it says") }
                done += n
            }
            initialized = count
        }
    }

    /// The metadata block whose header is at `position`; the block must end by `limit`.
    func metadataBlock(at position: UInt64, limit: UInt64, what: @autoclosure () -> String) throws -> MetadataBlock {
        if let cached = cache[position] { return cached }
        let header = try read(2, at: position, limit: limit, what: "\(what()): metadata block header")
        let raw = UInt16(header[0]) | UInt16(header[1]) << 8
        let size = Int(raw & ~Format.metadataUncompressed)
        guard size >= 1, size <= Format.metadataSize else {
            throw SquashFSError.corrupt("\(what()): metadata block at \(position) claims \(size) bytes")
        }
        let stored = try read(size, at: position + 2, limit: limit, what: "\(what()): metadata block")
        let data: [UInt8]
        if raw & Format.metadataUncompressed != 0 {
            data = stored
        } else {
            data = try decompress(stored, capacity: Format.metadataSize, what: "\(what()): metadata block at \(position)")
        }
        let block = MetadataBlock(data: data, next: position + 2 + UInt64(size))
        if cache.count >= cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[position] = block
        return block
    }

    /// Decompresses `stored` into at most `capacity` bytes.
    func decompress(_ stored: [UInt8], capacity: Int, what: @autoclosure () -> String) throws -> [UInt8] {
        do {
            return try [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                count = try stored.withUnsafeBytes {
                    try decompressor.decompress($0, into: UnsafeMutableRawBufferPointer(buffer))
                }
            }
        } catch let error as CompressionError {
            throw SquashFSError.corrupt("\(what()): \(error)")
        }
    }
}

/// A position in a metadata table: a block (absolute position of its header) and an offset into
/// its uncompressed bytes. Reads move it forward across blocks; every block must lie before `limit`.
struct MetadataCursor {
    var block: UInt64
    var offset: Int
    let limit: UInt64
    let what: String

    init(table start: UInt64, reference: MetadataReference, limit: UInt64, what: String) throws {
        guard reference.offset < Format.metadataSize, reference.block < limit, start <= limit - reference.block else {
            throw SquashFSError.corrupt("\(what): reference \(reference.block):\(reference.offset) lies outside its table")
        }
        block = start + reference.block
        offset = reference.offset
        self.limit = limit
        self.what = what
    }

    mutating func read(_ count: Int, from image: ImageFile) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        try read(count, from: image) { out.append(contentsOf: $0) }
        return out
    }

    /// Skips `count` bytes.
    mutating func skip(_ count: Int, in image: ImageFile) throws {
        try read(count, from: image) { _ in }
    }

    private mutating func read(_ count: Int, from image: ImageFile, _ body: (ArraySlice<UInt8>) -> Void) throws {
        var remaining = count
        while remaining > 0 {
            let data = try image.metadataBlock(at: block, limit: limit, what: what)
            guard offset <= data.data.count else {
                throw SquashFSError.corrupt("\(what): offset \(offset) past the end of a \(data.data.count)-byte metadata block")
            }
            if offset == data.data.count {
                block = data.next
                offset = 0
                continue
            }
            let take = min(remaining, data.data.count - offset)
            body(data.data[offset..<offset + take])
            offset += take
            remaining -= take
        }
    }

    mutating func u16(_ image: ImageFile) throws -> UInt16 {
        let b = try read(2, from: image)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    mutating func u32(_ image: ImageFile) throws -> UInt32 {
        let b = try read(4, from: image)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    mutating func u64(_ image: ImageFile) throws -> UInt64 {
        let low = UInt64(try u32(image))
        return low | UInt64(try u32(image)) << 32
    }
}

/// A lookup table read through its index: entries fetched on demand.
struct LookupTableReader {
    let index: [UInt64]
    let count: Int
    let entrySize: Int
    /// The table's blocks lie before this (the index itself).
    let limit: UInt64
    let what: String

    /// Reads the index of a table of `count` entries of `entrySize` bytes whose index starts at `start`.
    init(image: ImageFile, start: UInt64, count: Int, entrySize: Int, what: String) throws {
        let blocks = (count * entrySize + Format.metadataSize - 1) / Format.metadataSize
        let raw = try image.read(blocks * 8, at: start, what: "\(what) index")
        var input = LittleEndianReader(raw, what: "\(what) index")
        var index: [UInt64] = []
        index.reserveCapacity(blocks)
        for _ in 0..<blocks {
            let position = try input.u64()
            guard position < start else { throw SquashFSError.corrupt("\(what): a block lies after its index") }
            index.append(position)
        }
        self.index = index
        self.count = count
        self.entrySize = entrySize
        limit = start
        self.what = what
    }

    func entry(_ number: Int, image: ImageFile) throws -> [UInt8] {
        guard number >= 0, number < count else {
            throw SquashFSError.corrupt("\(what): entry \(number) of \(count)")
        }
        let byte = number * entrySize
        var cursor = try MetadataCursor(table: 0, reference: MetadataReference(block: index[byte / Format.metadataSize],
                                                                               offset: byte % Format.metadataSize),
                                        limit: limit, what: what)
        return try cursor.read(entrySize, from: image)
    }
}
