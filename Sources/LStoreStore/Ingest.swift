import Dispatch
import LStoreCompression
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a tree holds, counted as a commit records it.
public struct TreeStats: Equatable, Sendable {
    /// Bytes of regular-file data, each hardlink set once.
    public var size: UInt64 = 0
    /// Regular files, each hardlink set once.
    public var files: UInt64 = 0
    /// Entries of every kind, the root included.
    public var entries: UInt64 = 0

    public init(size: UInt64 = 0, files: UInt64 = 0, entries: UInt64 = 0) {
        self.size = size
        self.files = files
        self.entries = entries
    }
}

/// Cuts regular files into blocks and stores each new block once, compressed; stores file objects
/// and tree objects. Whole-file and block dedup against the store and within the operation.
public final class Ingest: @unchecked Sendable {
    public let writer: StoreWriter
    public let threads: Int
    /// Called now and then from any thread with the bytes of file data read so far.
    public var progress: (@Sendable (UInt64) -> Void)?
    private let blockSize: Int
    private let spec: CompressionSpec
    private let done = Atomic<UInt64>(0)

    public init(writer: StoreWriter, threads: Int = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))) {
        self.writer = writer
        self.threads = max(1, threads)
        blockSize = writer.store.blockSize
        spec = writer.store.compression
    }

    /// What each worker thread owns.
    final class Worker {
        let compressor: Compressor
        var block: [UInt8]
        var scratch: [UInt8] = []

        init(spec: CompressionSpec, blockSize: Int) throws {
            compressor = try Compressor(spec)
            block = [UInt8](repeating: 0, count: blockSize)
        }
    }

    func makeWorker() throws -> Worker { try Worker(spec: spec, blockSize: blockSize) }

    /// Starts worker threads that store the data of files handed to `submit` (regular-file nodes
    /// with a `sourcePath`) as they come, and record each one's file object id in its node.
    public func startFiles(cache: FileCache = FileCache()) -> FilePipeline {
        FilePipeline(ingest: self, cache: cache)
    }

    /// Stores one file's data (or finds it in `cache`); records the file object id in the node.
    func ingest(_ node: Node, cache: FileCache, worker: Worker) throws {
        guard case .regular(var file) = node.content, let path = file.sourcePath else { return }
        if let known = cache.lookup(file), writer.has(known, kind: .file) {
            file.content = known
            let total = done.wrappingAdd(file.size, ordering: .relaxed).newValue
            if total & 0x3FFFFF < file.size { progress?(total) }
        } else {
            file.content = try ingestFile(at: path, size: file.size, worker: worker)
        }
        node.content = .regular(file)
    }

    private func ingestFile(at path: [UInt8], size: UInt64, worker: Worker) throws -> Digest {
        let display = path.printable
        let fd = try path.withCString { cPath in
            try systemCall("open", path: display) { open(cPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        }
        defer { close(fd) }
        var offset: UInt64 = 0
        // Where the next data lies: whole blocks in a hole are not even read.
        var nextData: UInt64 = 0
        do {
            return try ingestData(size: size, worker: worker) { buffer in
                if offset >= nextData {
                    let found = lseek(fd, off_t(offset), seekData)
                    nextData = found < 0 ? (errno == ENXIO ? UInt64.max : offset) : UInt64(found)
                }
                if buffer.count == blockSize && offset + UInt64(buffer.count) <= nextData {
                    offset += UInt64(buffer.count)
                    return -buffer.count
                }
                let count = try readFully(fd, into: buffer, at: offset, display: display)
                offset += UInt64(count)
                return count
            }
        } catch let error as IngestError {
            throw FileError(path: display, operation: "\(error)", errno: 0)
        }
    }

    /// Stores `size` bytes that `read` delivers (filling its buffer completely, or returning minus
    /// its size for a full block it knows is a hole) as blocks and a file object; returns the file
    /// object's id. For streams such as tar archives: one caller reads and hashes, and the new
    /// blocks are compressed on the ingest's threads meanwhile (`finishStreams` waits for them).
    public func ingestStream(size: UInt64, read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Digest {
        try ingestData(size: size, worker: streamWorker(), read: read)
    }

    private var cachedStreamWorker: Worker?
    private func streamWorker() throws -> Worker {
        if let cachedStreamWorker { return cachedStreamWorker }
        let worker = try makeWorker()
        cachedStreamWorker = worker
        return worker
    }

    private func ingestData(size: UInt64, worker: Worker, read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Digest {
        var blocks: [Digest] = []
        blocks.reserveCapacity(Int((size + UInt64(blockSize) - 1) / UInt64(blockSize)))
        var remaining = size
        while remaining > 0 {
            let length = Int(min(UInt64(blockSize), remaining))
            let got = try worker.block.withUnsafeMutableBytes { try read(UnsafeMutableRawBufferPointer(rebasing: $0[0..<length])) }
            remaining -= UInt64(length)
            if got == -length {
                // The reader knows the block is a hole.
                blocks.append(.zero)
                continue
            }
            guard got == length else { throw IngestError.shortRead(expected: size, got: size - remaining - UInt64(length) + UInt64(max(got, 0))) }
            let id: Digest = try worker.block.withUnsafeBytes { raw in
                try storeStreamBlock(UnsafeRawBufferPointer(rebasing: raw[0..<length]))
            }
            blocks.append(id)
            let total = done.wrappingAdd(UInt64(length), ordering: .relaxed).newValue
            if total & 0x3FFFFF < UInt64(length) { progress?(total) }
        }
        let object = FileObject(size: size, blockSize: blockSize, blocks: blocks).encoded()
        return try object.withUnsafeBytes { try store(.file, $0, worker: worker) }
    }

    /// A block's id (`.zero` for a full block of zeros: a hole) and whether this ingest is the one
    /// to store it.
    private func claimBlock(_ bytes: UnsafeRawBufferPointer) -> (id: Digest, claimed: Bool) {
        if bytes.count == blockSize && isAllZero(bytes) { return (.zero, false) }
        let id = sha256(bytes)
        return (id, writer.claim(id, kind: .block))
    }

    /// Compresses the new blocks of streamed files; made on first use. The file pipeline's
    /// workers store blocks at once: made under a lock, so that no two of them each make one
    /// (blocks handed to a pipeline that `finishStreams` does not wait for would be lost).
    private let streamBlocks = Locked<BlockPipeline?>(nil)

    /// `storeBlock` for a streamed file's block: hashed here, compressed and stored by
    /// `streamBlocks`.
    private func storeStreamBlock(_ bytes: UnsafeRawBufferPointer) throws -> Digest {
        let (id, claimed) = claimBlock(bytes)
        if claimed {
            let pipeline = try streamBlocks.withLock { pipeline -> BlockPipeline in
                if let pipeline { return pipeline }
                let made = BlockPipeline(writer: writer, workers: try (0..<threads).map { _ in try makeWorker() })
                pipeline = made
                return made
            }
            try pipeline.add(id, bytes)
        }
        return id
    }

    /// Waits until every block of the files `ingestStream` and `ingestBlocks` stored is written;
    /// throws the first failure. `storeTree` calls it.
    public func finishStreams() throws {
        try streamBlocks.withLock { $0 }?.finish()
    }

    /// Stores one block unless present (an all-zero full block is a hole); returns its id.
    private func storeBlock(_ bytes: UnsafeRawBufferPointer, worker: Worker) throws -> Digest {
        let (id, claimed) = claimBlock(bytes)
        if claimed {
            try writer.add(.block, id: id, raw: bytes, compressor: worker.compressor, scratch: &worker.scratch)
        }
        return id
    }

    /// A block handed to `ingestBlocks`.
    public enum Block {
        /// A full block of zeros.
        case hole
        /// The block's bytes: the store's block size, or the rest of the file for the last one.
        case data(UnsafeRawBufferPointer)
    }

    /// Stores a file of `size` bytes whose blocks, already cut at the store's block size, `produce`
    /// hands to its argument in order; returns the file object's id. Called from one thread; the
    /// new blocks are compressed as for `ingestStream`.
    public func ingestBlocks(size: UInt64, _ produce: ((Block) throws -> Void) throws -> Void) throws -> Digest {
        let worker = try streamWorker()
        var blocks: [Digest] = []
        var offset: UInt64 = 0
        try produce { block in
            let expected = Int(min(UInt64(blockSize), size - min(offset, size)))
            switch block {
            case .hole:
                guard expected == blockSize else { throw IngestError.shortRead(expected: size, got: offset) }
                blocks.append(.zero)
            case .data(let bytes):
                guard bytes.count == expected, expected > 0 else { throw IngestError.shortRead(expected: size, got: offset + UInt64(bytes.count)) }
                blocks.append(try storeStreamBlock(bytes))
            }
            offset += UInt64(expected)
        }
        guard offset == size else { throw IngestError.shortRead(expected: size, got: offset) }
        let object = FileObject(size: size, blockSize: blockSize, blocks: blocks).encoded()
        return try object.withUnsafeBytes { try store(.file, $0, worker: worker) }
    }

    /// Stores a small object (file, tree, commit) unless present; returns its id.
    private func store(_ kind: ObjectKind, _ raw: UnsafeRawBufferPointer, worker: Worker) throws -> Digest {
        let id = sha256(raw)
        if writer.claim(id, kind: kind) {
            try writer.add(kind, id: id, raw: raw, compressor: worker.compressor, scratch: &worker.scratch)
        }
        return id
    }

    /// Stores the tree objects of `root` (whose files are ingested), bottom up; returns the root
    /// tree's id and what the tree holds.
    public func storeTree(_ root: Node) throws -> (Digest, TreeStats) {
        try finishStreams()
        guard case .directory = root.content else { throw IngestError.rootNotDirectory }
        let worker = try streamWorker()
        var stats = TreeStats()
        let id = try storeDirectory(root, stats: &stats, worker: worker)
        return (id, stats)
    }

    private func storeDirectory(_ node: Node, stats: inout TreeStats, worker: Worker) throws -> Digest {
        guard case .directory(let directory) = node.content else { throw IngestError.rootNotDirectory }
        stats.entries += 1
        var entries: [TreeEntry] = []
        entries.reserveCapacity(directory.children.count)
        for child in directory.children {
            let payload: TreeEntry.Payload
            switch child.content {
            case .regular(let file):
                guard let content = file.content else { throw IngestError.notIngested(child.name) }
                payload = .regular(size: file.size, file: content)
                stats.size += file.size
                stats.files += 1
                stats.entries += 1
            case .directory:
                payload = .directory(tree: try storeDirectory(child, stats: &stats, worker: worker))
                entries.append(TreeEntry(name: child.name, metadata: Metadata(kind: .directory, permissions: 0), payload: payload))
                continue
            case .symlink(let target):
                payload = .symlink(target: target)
                stats.entries += 1
            case .device(let major, let minor):
                payload = .device(major: major, minor: minor)
                stats.entries += 1
            case .none:
                payload = .none
                stats.entries += 1
            case .hardlink(let path):
                payload = .hardlink(path: path)
                stats.entries += 1
            }
            entries.append(TreeEntry(name: child.name, metadata: child.metadata, payload: payload))
        }
        let encoded = TreeObject(metadata: node.metadata, entries: entries).encoded()
        return try encoded.withUnsafeBytes { try store(.tree, $0, worker: worker) }
    }

    /// Stores a commit object; returns its id.
    public func storeCommit(_ commit: Commit) throws -> Digest {
        let encoded = commit.encoded()
        return try encoded.withUnsafeBytes { try store(.commit, $0, worker: try streamWorker()) }
    }
}

public enum IngestError: Error, CustomStringConvertible {
    case shortRead(expected: UInt64, got: UInt64)
    case rootNotDirectory
    case notIngested([UInt8])

    public var description: String {
        switch self {
        case .shortRead(let expected, let got): "file shrank while being read: \(got) of \(expected) bytes"
        case .rootNotDirectory: "the tree's root is not a directory"
        case .notIngested(let name): "\(name.printable): file data was not stored"
        }
    }
}

/// Reads up to `buffer.count` bytes at `offset`, looping over short reads; fewer only at the end.
func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, display: String) throws -> Int {
    var total = 0
    while total < buffer.count {
        let got = try systemCall("read", path: display) {
            pread(fd, buffer.baseAddress! + total, buffer.count - total, off_t(offset) + off_t(total))
        }
        if got == 0 { break }
        total += got
    }
    return total
}


/// The new blocks of files one thread reads (a tar archive, an image), compressed and added to the
/// store on a worker each while that thread reads on. At most one block per worker is in flight.
final class BlockPipeline: @unchecked Sendable {
    private let writer: StoreWriter
    private let idle: Locked<[Ingest.Worker]>
    private let failure = Locked<Error?>(nil)
    /// Blocks handed over and not yet stored: a few per worker, so that the workers keep busy
    /// while the one caller reads unevenly (a run of small files, a layer's next member).
    private let slots: DispatchSemaphore
    /// Workers not compressing.
    private let free: DispatchSemaphore
    private let group = DispatchGroup()

    init(writer: StoreWriter, workers: [Ingest.Worker]) {
        self.writer = writer
        idle = Locked(workers)
        slots = DispatchSemaphore(value: workers.count * 8)
        free = DispatchSemaphore(value: workers.count)
    }

    /// Stores block `id`, which the caller claimed, from a copy of `bytes`; waits while enough
    /// blocks wait already. Throws a failure of an earlier block.
    func add(_ id: Digest, _ bytes: UnsafeRawBufferPointer) throws {
        if let error = failure.withLock({ $0 }) { throw error }
        slots.wait()
        let copy = Array(bytes)
        group.enter()
        DispatchQueue.global().async { [self] in
            defer {
                group.leave()
                slots.signal()
            }
            free.wait()
            defer { free.signal() }
            let worker = idle.withLock { $0.removeLast() }
            defer { idle.withLock { $0.append(worker) } }
            do {
                try copy.withUnsafeBytes { try writer.add(.block, id: id, raw: $0, compressor: worker.compressor, scratch: &worker.scratch) }
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
    }

    /// Waits for every block handed over; throws the first failure.
    func finish() throws {
        group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

/// Files flowing from a scan to the ingest workers: the scan goes on while data is read,
/// hashed and compressed.
public final class FilePipeline: @unchecked Sendable {
    private let ingest: Ingest
    private let cache: FileCache
    private let queue = Locked<(items: [Node], head: Int, closed: Bool, failure: Error?)>(([], 0, false, nil))
    private let available = DispatchSemaphore(value: 0)
    private let group = DispatchGroup()

    init(ingest: Ingest, cache: FileCache) {
        self.ingest = ingest
        self.cache = cache
        for _ in 0..<ingest.threads {
            group.enter()
            DispatchQueue.global().async { [self] in
                defer { group.leave() }
                work()
            }
        }
    }

    public func submit(_ node: Node) {
        queue.withLock { $0.items.append(node) }
        available.signal()
    }

    /// Waits until every submitted file is stored; throws the first failure.
    public func finish() throws {
        queue.withLock { $0.closed = true }
        for _ in 0..<ingest.threads { available.signal() }
        group.wait()
        if let failure = queue.withLock({ $0.failure }) { throw failure }
    }

    private func work() {
        let worker: Ingest.Worker
        do {
            worker = try ingest.makeWorker()
        } catch {
            queue.withLock { if $0.failure == nil { $0.failure = error } }
            return
        }
        while true {
            available.wait()
            let next: Node? = queue.withLock { state in
                guard state.failure == nil, state.head < state.items.count else { return nil }
                defer { state.head += 1 }
                return state.items[state.head]
            }
            guard let node = next else {
                if queue.withLock({ $0.closed || $0.failure != nil }) { return }
                continue
            }
            do {
                try ingest.ingest(node, cache: cache, worker: worker)
            } catch {
                queue.withLock { if $0.failure == nil { $0.failure = error } }
            }
        }
    }
}
