import Foundation
import LStoreStore
import LStoreTar
import LStoreTree

/// A layer's source read into a store: a directory (scanned, its files read, hashed and compressed
/// while the scan goes on, unchanged files taken from the file cache), a squashfs image or a
/// tarball. What `lstore commit` does between its arguments and the new commit's id.
public final class LayerImport {
    /// What the source is.
    public enum Kind: Sendable {
        case directory, squashfs, tarball
    }

    /// The source as given.
    public let source: String
    public let kind: Kind
    /// The source's absolute path: what the commit records as its source.
    public let absolutePath: String
    public let ingest: Ingest
    /// Whether a directory's files unchanged since its last commit are taken from the file cache.
    public var useFileCache = true
    /// Saves the file cache once the commit landed.
    private var saveCache: () -> Void = {}

    /// Looks at `source` and opens a writer on `store`; throws when `source` cannot be read or is
    /// neither a directory nor a regular file.
    public init(_ source: String, store: Store, threads: Int) throws {
        var st = stat()
        guard stat(source, &st) == 0 else { throw FileError(path: source, operation: "stat", errno: errno) }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: kind = .directory
        case S_IFREG: kind = isSquashFS(source) ? .squashfs : .tarball
        default: throw ImageError.unknownSource(source)
        }
        self.source = source
        absolutePath = source.hasPrefix("/") ? source : FileManager.default.currentDirectoryPath + "/" + source
        ingest = Ingest(writer: try StoreWriter(store: store), threads: threads)
    }

    /// Reads the source and stores its data and trees. `progress` is told bytes read (a directory)
    /// or entries read (a tarball).
    public func storeTree(progress: (@Sendable (UInt64) -> Void)? = nil) throws -> (tree: Digest, stats: TreeStats) {
        let store = ingest.writer.store
        let root: Node
        switch kind {
        case .directory:
            let started = Timestamp(seconds: Int64(time(nil)))
            ingest.progress = progress
            let directory = URL(fileURLWithPath: absolutePath).standardizedFileURL.path
            let pipeline = ingest.startFiles(cache: useFileCache ? FileCache.load(for: directory, in: store) : FileCache())
            let scanned: ScannedTree
            do {
                scanned = try Scanner(onFile: { pipeline.submit($0) }).scan(source)
            } catch {
                try? pipeline.finish()
                throw error
            }
            try pipeline.finish()
            root = scanned.root
            saveCache = {
                try? FileCache.save(scanned.files, since: started, for: directory, in: store)
            }
        case .squashfs:
            root = try commitImage(source, ingest: ingest)
        case .tarball:
            root = try TarReader(progress: { progress?(UInt64($0)) }).read(source) { size, read in
                try ingest.ingestStream(size: size, read: read)
            }.root
        }
        let (tree, stats) = try ingest.storeTree(root)
        return (tree, stats)
    }

    /// Stores the source's tree and commits it on `ref` (`Store.commit(_:ingest:)`: nil parents
    /// mean the ref's current commit, and a ref moved meanwhile gets the commit on top); then
    /// saves the file cache. Returns the new commit's id.
    public func commit(ref: String, parents: [Digest]?, time: Int64, author: String, message: String,
                       progress: (@Sendable (UInt64) -> Void)? = nil, treeStored: () -> Void = {}) throws -> Digest {
        let (tree, stats) = try storeTree(progress: progress)
        treeStored()
        let request = CommitRequest(tree: tree, stats: stats, ref: ref, parents: parents, time: time, author: author,
                                    source: absolutePath, message: message)
        let id = try ingest.writer.store.commit(request, ingest: ingest)
        saveCache()
        return id
    }
}
