import LStoreTree

/// One entry of a directory listing, as the writer knows it once its inode is placed.
struct ListingEntry {
    var name: [UInt8]
    var number: UInt32
    var reference: MetadataReference
    var type: InodeType
}

/// An entry of an extended directory's index: where a header starts and the first name after it.
struct DirectoryIndexEntry {
    /// Bytes from the start of the listing to the header.
    var offset: UInt32
    /// The directory-table block holding the header, relative to the table start.
    var block: UInt32
    var name: [UInt8]
}

/// Where a directory's listing went.
struct Listing {
    var start: MetadataReference
    /// The listing's bytes, headers included (the inode records 3 more).
    var size: Int
    var index: [DirectoryIndexEntry]
}

/// Writes directory listings into the directory table.
///
/// Format rules: entries sorted by name bytes, in runs each preceded by a 12-byte header (`u32
/// count - 1`, `u32` inode-table block of every inode in the run, `i32` base inode number); a
/// run holds at most 256 entries, all with inodes in the header's block and numbers within
/// -32768...32767 of the base. An entry is `u16` offset of its inode in that block, `i16` number
/// minus base, `u16` basic inode type, `u16` name length - 1, the name. A large listing (`isLarge`)
/// also starts a run wherever the stream crosses into a new metadata block, and records each such
/// run in an index (the extended directory inode carries it), so the kernel's lookup decompresses
/// one block instead of the whole listing.
enum DirectoryListingWriter {
    /// Whether a directory gets an extended inode and an index: more than 256 entries, or 8 KiB of
    /// entries without headers. This is mksquashfs's rule, so the two writers agree on inode types.
    static func isLarge(_ entries: [ListingEntry]) -> Bool {
        entries.count > Format.directoryRunLength
            || entries.reduce(0) { $0 + 8 + $1.name.count } >= Format.metadataSize
    }

    static func write(_ entries: [ListingEntry], to writer: MetadataWriter) throws -> Listing {
        let start = writer.position
        let startStream = writer.streamLength
        guard !entries.isEmpty else { return Listing(start: start, size: 0, index: []) }
        let indexed = isLarge(entries)

        var index: [DirectoryIndexEntry] = []
        var lastIndexedBlock = startStream / Format.metadataSize
        var position = startStream
        var run: [ListingEntry] = []
        var runStart = position

        func flush() throws {
            guard let first = run.first else { return }
            let headerPosition = writer.position
            precondition(writer.streamLength == runStart, "runs are planned where they land")
            if indexed && runStart / Format.metadataSize != lastIndexedBlock {
                lastIndexedBlock = runStart / Format.metadataSize
                guard let block = UInt32(exactly: headerPosition.block) else {
                    throw SquashFSError.invalidTree("the directory table exceeds 4 GiB")
                }
                index.append(DirectoryIndexEntry(offset: UInt32(runStart - startStream), block: block, name: first.name))
            }
            var out = ByteWriter(capacity: 12 + run.count * 24)
            out.u32(UInt32(run.count - 1))
            guard let inodeBlock = UInt32(exactly: first.reference.block) else {
                throw SquashFSError.invalidTree("the inode table exceeds 4 GiB")
            }
            out.u32(inodeBlock)
            out.u32(first.number)
            for entry in run {
                out.u16(UInt16(entry.reference.offset))
                out.u16(UInt16(bitPattern: Int16(Int64(entry.number) - Int64(first.number))))
                out.u16(entry.type.basic.rawValue)
                out.u16(UInt16(entry.name.count - 1))
                out.append(entry.name)
            }
            try writer.append(out.bytes)
            run.removeAll(keepingCapacity: true)
        }

        for entry in entries {
            if let first = run.first {
                let delta = Int64(entry.number) - Int64(first.number)
                if run.count == Format.directoryRunLength || entry.reference.block != first.reference.block
                    || delta < Int64(Int16.min) || delta > Int64(Int16.max)
                    || (indexed && position / Format.metadataSize != runStart / Format.metadataSize) {
                    try flush()
                }
            }
            if run.isEmpty {
                runStart = position
                position += 12
            }
            run.append(entry)
            position += 8 + entry.name.count
        }
        try flush()
        return Listing(start: start, size: position - startStream, index: index)
    }
}
