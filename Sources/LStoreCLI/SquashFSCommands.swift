import ArgumentParser
import Foundation
import LStoreCompression
import LStoreImage
import LStoreSquashFS
import LStoreStore
import LStoreTree

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

    /// What the flags ask of the image: `--mkfs-time`, else `SOURCE_DATE_EPOCH`, else the default time.
    func settings() throws -> ImageSettings {
        let spec = try compression.map { try CompressionSpec(parsing: $0) }
        var size: Int?
        if let blockSize {
            guard let parsed = parseSize(blockSize) else { throw CommandError("invalid block size '\(blockSize)'") }
            size = parsed
        }
        var seconds: Int64?
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], let value = Int64(epoch) { seconds = value }
        if let mkfsTime { seconds = Int64(mkfsTime) }
        return ImageSettings(compression: spec, blockSize: size,
                             modificationTime: seconds, threads: threads ?? availableCores(), useFragmentCache: !noFragmentCache)
    }

    /// The writer's options for an image of a commit made at `time` in `store` (`ImageSettings.options(for:time:)`).
    func squashFSOptions(store: Store, time: Int64) throws -> SquashFSOptions {
        try settings().options(for: store, time: time)
    }
}

/// Writes an image (`LStoreImage.writeImage`) and says once what squashfs could not hold, naming
/// the image `display` (default: `path`).
@discardableResult
func writeImageReporting(_ root: Node, source: some BlockSource, options: SquashFSOptions, to path: String,
                         display: String? = nil) throws -> SquashFSWriteResult {
    let result = try writeImage(root, source: source, options: options, to: path)
    warnAbout(result.report, image: display ?? path)
    return result
}

/// `lstore: warning: IMAGE: ...`, a line for each kind of thing squashfs could not hold.
func warnAbout(_ report: SquashFSReport, image: String) {
    for line in "\(report)".split(separator: "\n") { note("lstore: warning: \(image): \(line)") }
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
        let options = try imageOptions.settings().options(compression: try CompressionSpec(parsing: "zstd:6"), blockSize: 128 << 10,
                                                          time: Int64(Date().timeIntervalSince1970))
        let result = try writeImageReporting(scanned.root, source: DirectoryBlockSource(), options: options, to: image)
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
