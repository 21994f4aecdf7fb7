import LStoreCompression
import LStoreSquashFS
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What an image is asked for, before the defaults fill it in: each nil takes the default.
public struct ImageSettings: Sendable {
    public var compression: CompressionSpec?
    public var blockSize: Int?
    /// The image's time; nil: the commit's time (or the caller's default).
    public var modificationTime: Int64?
    public var threads: Int
    /// Whether the store's fragment cache is used and filled.
    public var useFragmentCache: Bool

    public init(compression: CompressionSpec? = nil, blockSize: Int? = nil, modificationTime: Int64? = nil,
                threads: Int = SquashFSOptions.processorCount, useFragmentCache: Bool = true) {
        self.compression = compression
        self.blockSize = blockSize
        self.modificationTime = modificationTime
        self.threads = threads
        self.useFragmentCache = useFragmentCache
    }

    /// The writer's options, defaulting to `compression`, `blockSize` and `time`.
    public func options(compression defaultSpec: CompressionSpec, blockSize defaultSize: Int, time: Int64) -> SquashFSOptions {
        SquashFSOptions(compression: compression ?? defaultSpec, blockSize: blockSize ?? defaultSize,
                        modificationTime: UInt32(clamping: max(0, modificationTime ?? time)), threads: threads)
    }

    /// The writer's options for an image of a commit made at `time` in `store`: the store's codec,
    /// level and block size unless given, its fragment cache unless turned off, and, when the image's
    /// settings are the store's (direct materialisation), small files whose stored form has 3 KiB
    /// or more as blocks of their own, so that their stored blocks are copied (spec/squashfs.md §4).
    /// 3 KiB: on the Debian chain, the first checkout of a layer about 11 times as fast as
    /// mksquashfs for an image 1.6% larger; 4 KiB gave 9.8 times and 1.4%, 2 KiB 1.9%.
    public func options(for store: Store, time: Int64) -> SquashFSOptions {
        var options = options(compression: store.compression, blockSize: store.blockSize, time: time)
        if useFragmentCache { options.fragmentCache = StoreFragmentCache(cache: store.openFragmentCache()) }
        if options.compression == store.compression && options.blockSize == store.blockSize {
            options.ownBlockMinimum = 3072
        }
        return options
    }
}

/// Writes an image to a temporary name and renames it into place, so that a failure leaves no
/// half image. What squashfs could not hold is in the result's `report`, for the caller to tell.
@discardableResult
public func writeImage(_ root: Node, source: some BlockSource, options: SquashFSOptions, to path: String) throws -> SquashFSWriteResult {
    let temporary = path + ".lstore-tmp"
    do {
        let result = try SquashFSWriter(options: options).write(root, source: source, to: temporary)
        guard rename(temporary, path) == 0 else { throw FileError(path: path, operation: "rename", errno: errno) }
        return result
    } catch {
        unlink(temporary)
        throw error
    }
}

/// True when the file starts with squashfs's magic, `hsqs`.
public func isSquashFS(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var magic = [UInt8](repeating: 0, count: 4)
    let count = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4) }
    return count == 4 && magic == Array("hsqs".utf8)
}

/// Reads a squashfs image's tree and stores its files' data, block by block; returns the tree,
/// ready for `Ingest.storeTree`.
public func commitImage(_ path: String, ingest: Ingest) throws -> Node {
    let image = try SquashFSImage(path: path)
    let root = try image.readTree()
    let blockSize = ingest.writer.store.blockSize
    var files: [(path: [UInt8], node: Node)] = []
    root.walk { relative, node in
        if case .regular = node.content { files.append((relative, node)) }
    }
    for (relative, node) in files {
        guard case .regular(var file) = node.content else { continue }
        file.content = try ingest.ingestBlocks(size: file.size) { consume in
            try image.forEachBlock(of: file, path: relative, blockSize: blockSize) { block in
                switch block {
                case .hole, .zeros: try consume(.hole)
                case .raw(let bytes): try bytes.withUnsafeBytes { try consume(.data($0)) }
                case .stored: throw ImageError.compressedBlock(image: path)
                }
            }
        }
        file.sourcePath = nil
        node.content = .regular(file)
    }
    return root
}
