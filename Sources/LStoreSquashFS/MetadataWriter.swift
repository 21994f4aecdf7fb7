import LStoreCompression
import LStoreTree

/// Writes one metadata table (inodes, directories, xattr pairs, or a lookup table) as a stream of
/// metadata blocks, kept in memory.
///
/// Format rule: the stream is cut into 8 KiB pieces, each compressed on its own and preceded by a
/// u16 header holding its stored size, with bit 15 set when it is stored uncompressed (compression
/// did not make it smaller). Entries may straddle two blocks; blocks follow each other without gaps.
/// An entry is addressed by the position of its block's header relative to the table start and
/// its offset in the block's uncompressed bytes (`MetadataReference`).
final class MetadataWriter {
    private let compressor: Compressor
    private var pending: [UInt8] = []
    private var scratch: [UInt8] = []
    /// The finished blocks, headers included.
    private(set) var stored: [UInt8] = []
    /// Where each finished block starts, relative to the table start.
    private(set) var blockStarts: [UInt64] = []
    /// Uncompressed bytes appended so far.
    private(set) var streamLength = 0

    init(compressor: Compressor) {
        self.compressor = compressor
        pending.reserveCapacity(Format.metadataSize)
    }

    /// Where the next appended byte goes.
    var position: MetadataReference {
        MetadataReference(block: UInt64(stored.count), offset: pending.count)
    }

    func append(_ bytes: some Collection<UInt8>) throws {
        var rest = bytes[...]
        while !rest.isEmpty {
            let room = Format.metadataSize - pending.count
            let piece = rest.prefix(room)
            pending.append(contentsOf: piece)
            rest = rest.dropFirst(piece.count)
            streamLength += piece.count
            if pending.count == Format.metadataSize { try flush() }
        }
    }

    /// Writes out the last, partial block. Appending afterwards starts a new block.
    func finish() throws {
        if !pending.isEmpty { try flush() }
    }

    private func flush() throws {
        blockStarts.append(UInt64(stored.count))
        let compressed = try pending.withUnsafeBytes { try compressor.compress($0, into: &scratch) }
        let body = compressed ? scratch : pending
        let header = UInt16(body.count) | (compressed ? 0 : Format.metadataUncompressed)
        stored.append(UInt8(header & 0xFF))
        stored.append(UInt8(header >> 8))
        stored.append(contentsOf: body)
        pending.removeAll(keepingCapacity: true)
    }
}

/// A lookup table (fragments, export, ids, xattr ids): fixed-size entries in metadata blocks,
/// then an uncompressed list of the absolute position of each block, which the superblock points to.
struct LookupTable {
    var blocks: [UInt8]
    /// The index list, filled in by `placed(at:)`.
    var index: [UInt8] = []

    /// Packs `entries` (each `entrySize` bytes, concatenated) into metadata blocks.
    init(entries: [UInt8], compressor: Compressor) throws {
        let writer = MetadataWriter(compressor: compressor)
        try writer.append(entries)
        try writer.finish()
        blocks = writer.stored
        starts = writer.blockStarts
    }

    private var starts: [UInt64]

    /// Fills in the index for blocks written at absolute position `start`.
    mutating func placed(at start: UInt64) {
        var out = ByteWriter(capacity: starts.count * 8)
        for relative in starts { out.u64(start + relative) }
        index = out.bytes
    }
}
