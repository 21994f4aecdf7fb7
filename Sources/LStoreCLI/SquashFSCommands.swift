import ArgumentParser
import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreStore
import LStoreTree

/// The store as the squashfs writer's block source. When the image's block size is the store's,
/// every block goes over as stored, so the writer copies it unchanged when the codec and level are
/// the image's too (direct materialisation); otherwise the data is cut again at the image's size.
struct StoreBlockSource: BlockSource {
    let store: Store

    func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                      _ body: (SourceBlock) throws -> Void) throws {
        guard let id = file.content else { throw CommandError("/\(path.printable): the tree names no data") }
        let object = try store.file(id)
        if object.blockSize == blockSize {
            var scratch: [UInt8] = []
            for block in object.blocks {
                if block == .zero {
                    // The store does not know whether the block was a hole on disk.
                    try body(.zeros)
                    continue
                }
                let stored = try store.storedBlock(block, scratch: &scratch)
                let tried = stored.codec == .none && stored.triedCodec != .none
                    ? CompressionSpec(codec: stored.triedCodec, level: stored.level) : nil
                let spec = CompressionSpec(codec: stored.codec, level: stored.codec == .none ? 0 : stored.level)
                try body(.stored(StoredBlock(bytes: stored.bytes, spec: spec,
                                             rawLength: stored.rawLength, digest: block, notSmallerWith: tried)))
            }
            return
        }
        // Another block size: the data, cut again.
        var pending: [UInt8] = []
        pending.reserveCapacity(blockSize)
        var left = file.size
        func emit() throws {
            let full = pending.count == blockSize
            try body(full && pending.allSatisfy { $0 == 0 } ? .zeros : .raw(pending))
            left -= UInt64(pending.count)
            pending.removeAll(keepingCapacity: true)
        }
        try StoreContentWriter(store: store).stream(file) { bytes in
            var rest = bytes[...]
            while !rest.isEmpty {
                let want = Int(min(UInt64(blockSize), left)) - pending.count
                let take = min(want, rest.count)
                pending.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                if pending.count == Int(min(UInt64(blockSize), left)) { try emit() }
            }
        }
    }
}

/// The store's cache of compressed fragment blocks, as the squashfs writer asks for it. A key is
/// the SHA-256 of the fragment's description (spec/store.md, "Caches"); flag 1 marks compressed bytes.
struct StoreFragmentCache: FragmentCache {
    let cache: BlobCache

    static func digest(of key: FragmentKey) -> Digest {
        var description = Array("lstore fragment 1\0\(key.spec.codec) \(key.spec.level) \(key.blockSize)\0".utf8)
        description.reserveCapacity(description.count + key.pieces.count * 40)
        for piece in key.pieces {
            piece.digest.withUnsafeBytes { description.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(piece.length).littleEndian) { description.append(contentsOf: $0) }
        }
        return sha256(description)
    }

    func fragment(for key: FragmentKey) -> CachedFragment? {
        guard let (bytes, flags) = cache.get(Self.digest(of: key)) else { return nil }
        return CachedFragment(bytes: bytes, compressed: flags & 1 != 0)
    }

    func save(_ fragment: CachedFragment, for key: FragmentKey) {
        cache.put(Self.digest(of: key), bytes: fragment.bytes, flags: fragment.compressed ? 1 : 0)
    }
}

/// Options of every command that writes an image.
struct ImageOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Codec and level: zstd[:1-22], lz4[:hc], gzip[:1-9], xz, none.", valueName: "codec[:level]"))
    var compression: String?

    @Option(name: .customLong("block-size"), help: ArgumentHelp("Block size: a power of two from 4K to 1M.", valueName: "size"))
    var blockSize: String?

    @Option(name: .customLong("mkfs-time"), help: ArgumentHelp("The image's time, in seconds since 1970 (default: SOURCE_DATE_EPOCH, else the commit's time, else now).", valueName: "seconds"))
    var mkfsTime: UInt32?

    @Option(help: "Compression threads (default: every core).")
    var threads: Int?

    @Flag(name: .customLong("no-fragment-cache"), help: "checkout, boot stage: compress every fragment block, neither using nor filling the store's cache.")
    var noFragmentCache = false

    /// The writer's options, defaulting to `compression` and `blockSize` (the store's).
    func squashFSOptions(compression defaultSpec: CompressionSpec, blockSize defaultSize: Int, time: Int64) throws -> SquashFSOptions {
        let spec = try compression.map { try CompressionSpec(parsing: $0) } ?? defaultSpec
        var size = defaultSize
        if let blockSize {
            guard let parsed = parseSize(blockSize) else { throw CommandError("invalid block size '\(blockSize)'") }
            size = parsed
        }
        var seconds = time
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], let value = Int64(epoch) { seconds = value }
        if let mkfsTime { seconds = Int64(mkfsTime) }
        return SquashFSOptions(compression: spec, blockSize: size, modificationTime: UInt32(clamping: max(0, seconds)),
                               threads: threads ?? availableCores())
    }
}

extension ImageOptions {
    /// The writer's options for an image of a commit in `store`: the store's codec, level and block
    /// size unless given, its fragment cache unless `--no-fragment-cache`, and, when the image's
    /// settings are the store's (direct materialisation), small files whose stored form has 3 KiB
    /// or more as blocks of their own, so that their stored blocks are copied (spec/squashfs.md §4).
    /// 3 KiB: on the Debian chain, the first checkout of a layer about 11 times as fast as
    /// mksquashfs for an image 1.6% larger; 4 KiB gave 9.8 times and 1.4%, 2 KiB 1.9%.
    func squashFSOptions(store: Store, time: Int64) throws -> SquashFSOptions {
        var options = try squashFSOptions(compression: store.compression, blockSize: store.blockSize, time: time)
        if !noFragmentCache { options.fragmentCache = StoreFragmentCache(cache: store.openFragmentCache()) }
        if options.compression == store.compression && options.blockSize == store.blockSize {
            options.ownBlockMinimum = 3072
        }
        return options
    }
}

/// Writes an image to a temporary name and renames it into place, so that a failure leaves no
/// half image; says once what squashfs could not hold, naming the image `display` (default: `path`).
@discardableResult
func writeImage(_ root: Node, source: some BlockSource, options: SquashFSOptions, to path: String,
                display: String? = nil) throws -> SquashFSWriteResult {
    let temporary = path + ".lstore-tmp"
    do {
        let result = try SquashFSWriter(options: options).write(root, source: source, to: temporary)
        guard rename(temporary, path) == 0 else { throw FileError(path: path, operation: "rename", errno: errno) }
        if !result.report.isEmpty {
            for line in "\(result.report)".split(separator: "\n") { note("lstore: warning: \(display ?? path): \(line)") }
        }
        return result
    } catch {
        unlink(temporary)
        throw error
    }
}

/// What `--json` prints after an image is written.
func imageSummary(_ result: SquashFSWriteResult, path: String, options: SquashFSOptions) -> [String: Any] {
    let data = result.data
    return [
        "image": path, "bytes": result.bytesUsed, "compression": "\(options.compression)", "blockSize": options.blockSize,
        "inodes": result.inodeCount, "blocks": data.blocks, "holes": data.holes, "copiedBlocks": data.copied,
        "recompressedBlocks": data.recompressed, "fragments": data.fragments, "cachedFragments": data.cachedFragments,
        "duplicateFiles": data.duplicates, "uncompressedBlocks": data.uncompressed, "ownBlockFiles": data.ownBlocks,
    ]
}

struct SquashfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squashfs",
        abstract: "Make a squashfs image of a plain directory (what mksquashfs does), with no store.")

    @Argument(help: "The directory.") var directory: String
    @Argument(help: "The image to write.") var image: String
    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let scanned = try Scanner().scan(directory)
        let options = try imageOptions.squashFSOptions(compression: try CompressionSpec(parsing: "zstd:6"), blockSize: 128 << 10,
                                                       time: Int64(Date().timeIntervalSince1970))
        let result = try writeImage(scanned.root, source: DirectoryBlockSource(), options: options, to: image)
        if output.json { try printJSON(imageSummary(result, path: image, options: options)) }
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Describe a squashfs image: superblock, tables, counts, compression ratio.")

    @Argument(help: "The image.") var image: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        let opened = try SquashFSImage(path: image)
        let info = opened.info
        let root = try opened.readTree()
        var entries = 0, files = 0
        var bytes: UInt64 = 0
        root.walk { _, node in
            entries += 1
            if case .regular(let file) = node.content {
                files += 1
                bytes += file.size
            }
        }
        let ratio = info.bytesUsed == 0 ? 0 : Double(bytes) / Double(info.bytesUsed)
        if output.json {
            return try printJSON([
                "blockSize": info.blockSize, "compression": "\(info.codec)", "inodes": info.inodeCount,
                "fragments": info.fragmentCount, "ids": info.idCount, "mkfsTime": info.modificationTime,
                "bytesUsed": info.bytesUsed, "flags": info.flags, "exportTable": info.hasExportTable,
                "xattrTable": info.hasXattrTable, "entries": entries, "files": files, "fileBytes": bytes,
                "compressionRatio": ratio,
            ] as [String: Any])
        }
        print("image        \(image)")
        print("format       squashfs 4.0, \(info.codec), \(info.blockSize / 1024)K blocks")
        print("time         \(isoTime(Int64(info.modificationTime)))")
        print("size         \(humanBytes(info.bytesUsed)) (\(info.bytesUsed) bytes)")
        print("inodes       \(info.inodeCount) (\(entries) entries, \(files) regular files)")
        print("fragments    \(info.fragmentCount)")
        print("ids          \(info.idCount)")
        print("tables       export \(info.hasExportTable ? "yes" : "no"), xattrs \(info.hasXattrTable ? "yes" : "no")")
        print(String(format: "data         %@ of file data, %.2fx compressed", humanBytes(bytes), ratio))
    }
}
