import Dispatch
import LStoreCompression
import LStoreTree
import Synchronization

/// Where one regular file's data went: what its inode records.
struct FileLayout {
    /// The image offset of the first block; 0 for a file with no full block.
    var start: UInt64 = 0
    var started = false
    /// One entry per full block: the stored size, bit 24 set when stored raw, 0 for a hole.
    var sizes: [UInt32] = []
    var fragment: UInt32 = Format.noFragment
    var fragmentOffset: UInt32 = 0
    /// Bytes of the holes the source declared (see `DataWriter.Output.hole`): the sparse bytes of
    /// the file's inode.
    var sparse: UInt64 = 0
}

/// Counts for the caller.
public struct DataStatistics: Sendable, Equatable {
    /// Full blocks written (compressed or raw), holes not included.
    public var blocks = 0
    /// Full blocks recorded as holes.
    public var holes = 0
    /// Blocks copied unchanged from a source's compressed bytes.
    public var copied = 0
    /// Blocks a source handed over compressed with another codec or level, compressed again.
    public var recompressed = 0
    public var fragments = 0
    /// Fragment blocks taken compressed from the `FragmentCache`.
    public var cachedFragments = 0
    /// Data and fragment blocks stored uncompressed because compression did not make them smaller.
    public var uncompressed = 0
    /// Files found to hold the same bytes as an earlier file, sharing its data.
    public var duplicates = 0
    /// Files smaller than a block written as a block of their own (`SquashFSOptions.ownBlockMinimum`),
    /// counted in `blocks` too.
    public var ownBlocks = 0
}

struct ContentFingerprint: Hashable {
    var high: UInt64
    var low: UInt64
    var size: UInt64
}

/// Writes the data area: every block of every file in order, and the fragment blocks that pack
/// the files smaller than a block.
///
/// Format rules: a file's blocks lie one after the other with no gap (the inode records the first
/// block's offset and each block's stored size); a block stored raw has bit 24 of its size set; a
/// hole (a full block of zeros) has size 0 and takes no space; a file's tail either is its last,
/// short block (then the inode names no fragment) or lives in a fragment block at an offset, and
/// fragment blocks are at most one block size before compression.
///
/// Placement, as mksquashfs does by default: a file of at least one block keeps its tail as a short
/// block, so a store's compressed tail block is copied like any other; a file smaller than a block
/// goes into a fragment, unless `ownBlockMinimum` is set and its stored form (compressed, or raw
/// when compression does not pay) has at least that many bytes: then it is a short block of its
/// own, copied as the source has it when that is the image's codec and level.
/// Fragments are filled in data order, and a fragment is closed early, once it is at least half
/// full, after a file whose length `closesFragment` picks: the cut points depend on the files near
/// them only, so two layers that share a run of small files share the fragment blocks of that run,
/// and a `FragmentCache` gives their compressed bytes back.
///
/// Work is cut into batches of bounded size in the order of the data; a batch is compressed on
/// every worker while the next one is read, and written in order. What lands where depends only
/// on the order of the data, never on timing or the number of threads, so the output is the same
/// at any thread count. At most `batchesInFlight` batches are compressed at once, with one more
/// being assembled.
final class DataWriter {
    enum Job: Sendable {
        /// A full block of file number `file`.
        case block(file: Int, SourceBlock)
        /// File number `file`, smaller than a block, `length` bytes long: to be packed into a
        /// fragment, or, with `ownBlockMinimum`, perhaps to be a block of its own.
        case tail(file: Int, SourceBlock, length: Int)
        /// Fragment block `index`: the files packed into it, to be joined and compressed; `key`
        /// names it in the fragment cache.
        case fragment(index: Int, [SourceBlock], key: FragmentKey?)
        /// Fragment block `index`, as the fragment cache had it.
        case cachedFragment(index: Int, CachedFragment)

        /// What a job counts for in a batch's bound: the bytes of data it stands for, whatever form
        /// the source holds them in (raw, compressed at any level, a hole) and whether the cache
        /// has a fragment or not. Batch boundaries decide where fragment blocks land among the data
        /// blocks, so the image must depend on nothing else. The memory a batch holds stays within
        /// about twice its bound (stored bytes, and what a worker makes of them).
        func cost(blockSize: Int) -> Int {
            switch self {
            case .block(_, let block), .tail(_, let block, _):
                switch block {
                case .hole, .zeros: blockSize
                case .raw(let bytes): bytes.count
                case .stored(let stored): stored.rawLength
                }
            case .fragment, .cachedFragment: blockSize
            }
        }
    }

    enum Output: Sendable {
        /// A full block of zeros; `declared` when the source said so (`.hole`, a hole on disk or in
        /// an image, or `.zeros`, a store's hole), not when the writer found the zeros in raw data:
        /// only declared holes count as sparse bytes in the inode, so that a directory's image
        /// counts what mksquashfs counts (the holes of files sparse on disk, not blocks of zeros
        /// written out), and a store's image every hole the store keeps.
        case hole(declared: Bool)
        /// Stored bytes: compressed, or raw when compression did not pay.
        case data([UInt8], compressed: Bool, copied: Bool, recompressed: Bool)
        /// A small file's data, as the source gave it, for a fragment.
        case tail(SourceBlock)
    }

    private static let batchBytes = 16 << 20
    private static let batchJobs = 1 << 16
    /// Batches compressed at once: the one being written and the one after it (more measured no
    /// faster on two cores).
    static let batchesInFlight = 2

    let output: OutputFile
    let spec: CompressionSpec
    let blockSize: Int
    let cache: (any FragmentCache)?
    let ownBlockMinimum: Int?
    private(set) var layouts: [FileLayout]
    /// Each fragment block's offset and stored size (bit 24 set when raw), by index.
    private(set) var fragmentEntries: [(start: UInt64, size: UInt32)] = []
    private(set) var statistics = DataStatistics()
    /// Files numbered below this have their data placed for good: their layouts are final.
    private(set) var placedFiles = 0

    /// One set of workers per batch in flight, used in turn.
    private let workerSets: [[Worker]]
    private var batchCount = 0
    private var assembling: [Job] = []
    private var assemblingCost = 0
    /// Batches being compressed, oldest first: at most `batchesInFlight`.
    private var inFlight: [Batch] = []
    /// The open fragment block: the pieces packed so far and their length.
    private var fragmentPieces: [SourceBlock] = []
    private var fragmentFill = 0
    private var sealedFragments = 0
    /// Fragment blocks sealed while a file's blocks were being queued: they join the queue at the
    /// next file boundary, since nothing may come between the blocks of one file.
    private var sealedWaiting: [Job] = []
    /// Files read as raw blocks, by content hash and size: the candidates for deduplication.
    private var contentIndex: [ContentFingerprint: (index: Int, file: RegularFile, path: [UInt8])] = [:]
    private let hasher = XXH3.Hasher128()

    init(output: OutputFile, spec: CompressionSpec, blockSize: Int, threads: Int, fileCount: Int,
         cache: (any FragmentCache)? = nil, ownBlockMinimum: Int? = nil) throws {
        self.output = output
        self.spec = spec
        self.blockSize = blockSize
        self.cache = cache
        self.ownBlockMinimum = spec.codec == .none ? nil : ownBlockMinimum
        layouts = Array(repeating: FileLayout(), count: fileCount)
        workerSets = try (0..<Self.batchesInFlight).map { _ in
            try (0..<max(threads, 1)).map { _ in
                try Worker(spec: spec, blockSize: blockSize, ownBlockMinimum: spec.codec == .none ? nil : ownBlockMinimum)
            }
        }
    }

    /// Reads file number `index` from `source` and queues its blocks. Returns the number of an
    /// earlier file with the same bytes when `deduplicate` found one: this file's blocks are then
    /// not queued, and its inode is to share that file's data.
    ///
    /// Deduplication covers files read as raw blocks (no holes, nothing stored) of less than one
    /// batch (16 MiB), which start a new batch when they would not fit in the one being assembled:
    /// their XXH3-128 and size find a candidate, and the candidate is read again and compared byte
    /// for byte.
    func add(index: Int, file: RegularFile, path: [UInt8], source: some BlockSource,
             deduplicate: Bool) throws -> Int? {
        let block = UInt64(blockSize)
        let fullBlocks = file.size / block
        let tailLength = Int(file.size % block)
        let total = fullBlocks + (tailLength > 0 ? 1 : 0)
        guard total > 0 else { return nil }
        queueSealedFragments()
        // A duplicate is found only when all its blocks are in the batch being assembled: start a
        // new batch for a file that would not fit in this one. It depends only on the sizes (and is
        // done whatever the source, though only files read raw are looked for), so the image does
        // not depend on timing or on the source's form.
        if deduplicate && !assembling.isEmpty && assemblingCost + Int(file.size) > Self.batchBytes {
            try submit()
        }
        let firstJob = assembling.count, firstBatch = batchCount
        var hashable = deduplicate
        if hashable { hasher.reset() }
        layouts[index].sizes.reserveCapacity(Int(fullBlocks))
        var delivered: UInt64 = 0
        try source.forEachBlock(of: file, path: path, blockSize: blockSize) { piece in
            guard delivered < total else {
                throw SquashFSError.badSource("/\(path.printable): more than the \(total) block(s) of a \(file.size)-byte file")
            }
            let isTail = delivered == fullBlocks
            let expected = isTail ? tailLength : blockSize
            // Only a file smaller than a block goes into a fragment (or, when its worker says so,
            // into a block of its own).
            let isFragment = isTail && fullBlocks == 0
            switch piece {
            case .hole, .zeros:
                guard !isTail else {
                    throw SquashFSError.badSource("/\(path.printable): a hole for the last, partial block")
                }
                hashable = false
            case .raw(let bytes):
                guard bytes.count == expected else {
                    throw SquashFSError.badSource(
                        "/\(path.printable): block \(delivered) has \(bytes.count) bytes, expected \(expected)")
                }
                if hashable { bytes.withUnsafeBytes { hasher.update($0) } }
            case .stored(let stored):
                guard stored.rawLength == expected, stored.bytes.count <= 2 * blockSize + 4096 else {
                    throw SquashFSError.badSource(
                        "/\(path.printable): block \(delivered) holds \(stored.rawLength) bytes, expected \(expected)")
                }
                hashable = false
            }
            delivered += 1
            try enqueue(isFragment ? .tail(file: index, piece, length: tailLength) : .block(file: index, piece))
        }
        guard delivered == total else {
            throw SquashFSError.badSource("/\(path.printable): \(delivered) block(s) of the \(total) of a \(file.size)-byte file")
        }
        guard hashable, batchCount == firstBatch else { return nil }
        let hash = hasher.finalize()
        let key = ContentFingerprint(high: hash.high, low: hash.low, size: file.size)
        guard let earlier = contentIndex[key] else {
            contentIndex[key] = (index, file, path)
            return nil
        }
        guard try sameBytes(earlier.file, path: earlier.path, as: assembling[firstJob...], source: source) else {
            return nil
        }
        for job in assembling[firstJob...] { assemblingCost -= job.cost(blockSize: blockSize) }
        assembling.removeSubrange(firstJob...)
        layouts[index] = FileLayout()
        statistics.duplicates += 1
        return earlier.index
    }

    /// Whether `file` as `source` delivers it holds exactly the bytes of `jobs` (raw blocks).
    private func sameBytes(_ file: RegularFile, path: [UInt8], as jobs: ArraySlice<Job>,
                           source: some BlockSource) throws -> Bool {
        var next = jobs.startIndex
        var same = true
        try source.forEachBlock(of: file, path: path, blockSize: blockSize) { piece in
            guard same, next < jobs.endIndex else {
                same = false
                return
            }
            switch (piece, jobs[next]) {
            case (.raw(let a), .block(_, .raw(let b))), (.raw(let a), .tail(_, .raw(let b), _)):
                same = a == b
            default:
                same = false
            }
            next += 1
        }
        return same && next == jobs.endIndex
    }

    /// Writes everything still queued and the last fragment block.
    func finish() throws {
        while true {
            queueSealedFragments()
            if !assembling.isEmpty {
                try submit()
            } else if !inFlight.isEmpty {
                try write(inFlight.removeFirst())
            } else if !fragmentPieces.isEmpty {
                sealFragment()
                queueSealedFragments()
            } else {
                break
            }
        }
        placedFiles = layouts.count
        try output.flush()
    }

    /// Waits for the batch still being compressed, if any (after an error).
    func abandon() {
        for batch in inFlight { batch.done.wait() }
        inFlight = []
    }

    private func enqueue(_ job: Job) throws {
        assembling.append(job)
        assemblingCost += job.cost(blockSize: blockSize)
        if assemblingCost >= Self.batchBytes || assembling.count >= Self.batchJobs { try submit() }
    }

    /// Starts compressing the assembled batch; once `batchesInFlight` are, writes the oldest.
    private func submit() throws {
        let next = start(assembling)
        assembling = []
        assemblingCost = 0
        inFlight.append(next)
        if inFlight.count == Self.batchesInFlight { try write(inFlight.removeFirst()) }
    }

    private func start(_ jobs: [Job]) -> Batch {
        let batch = Batch(jobs: jobs)
        let workers = workerSets[batchCount % Self.batchesInFlight]
        batchCount += 1
        let threads = min(workers.count, jobs.count)
        DispatchQueue.global().async {
            let next = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: threads) { slot in
                let worker = workers[slot]
                while batch.failure.withLock({ $0 == nil }) {
                    let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard index < jobs.count else { break }
                    do {
                        batch.results[index] = try worker.process(jobs[index])
                    } catch {
                        batch.failure.withLock { if $0 == nil { $0 = error } }
                        break
                    }
                }
            }
            batch.done.signal()
        }
        return batch
    }

    /// Waits for `batch` and writes its results in order.
    private func write(_ batch: Batch) throws {
        batch.done.wait()
        if let error = batch.failure.withLock({ $0 }) { throw error }
        defer {
            // Jobs come in file order: every file before the last one met here is complete.
            for job in batch.jobs.reversed() {
                if case .block(let file, _) = job { placedFiles = max(placedFiles, file); break }
                if case .tail(let file, _, _) = job { placedFiles = max(placedFiles, file); break }
            }
        }
        for (index, job) in batch.jobs.enumerated() {
            guard let result = batch.results[index] else { preconditionFailure("a job of a finished batch has no result") }
            switch (job, result) {
            case (.block(let file, _), .hole(let declared)):
                if !layouts[file].started {
                    layouts[file].start = output.offset
                    layouts[file].started = true
                }
                layouts[file].sizes.append(0)
                if declared { layouts[file].sparse += UInt64(blockSize) }
                statistics.holes += 1
            case (.block(let file, _), .data(let bytes, let compressed, let copied, let recompressed)):
                if !layouts[file].started {
                    layouts[file].start = output.offset
                    layouts[file].started = true
                }
                layouts[file].sizes.append(UInt32(bytes.count) | (compressed ? 0 : Format.dataUncompressed))
                try output.append(bytes)
                statistics.blocks += 1
                if copied { statistics.copied += 1 }
                if recompressed { statistics.recompressed += 1 }
                if !compressed { statistics.uncompressed += 1 }
            case (.tail(let file, _, _), .data(let bytes, let compressed, let copied, let recompressed)):
                // A small file that is a block of its own.
                layouts[file].start = output.offset
                layouts[file].started = true
                layouts[file].sizes = [UInt32(bytes.count) | (compressed ? 0 : Format.dataUncompressed)]
                try output.append(bytes)
                statistics.blocks += 1
                statistics.ownBlocks += 1
                if copied { statistics.copied += 1 }
                if recompressed { statistics.recompressed += 1 }
                if !compressed { statistics.uncompressed += 1 }
            case (.tail(let file, _, let length), .tail(let piece)):
                if fragmentFill + length > blockSize { sealFragment() }
                layouts[file].fragment = UInt32(sealedFragments)
                layouts[file].fragmentOffset = UInt32(fragmentFill)
                fragmentPieces.append(piece)
                fragmentFill += length
                if fragmentFill >= blockSize / 2 && Self.closesFragment(length: length) { sealFragment() }
            case (.fragment(let fragment, _, _), .data(let bytes, let compressed, _, _)),
                 (.cachedFragment(let fragment, _), .data(let bytes, let compressed, _, _)):
                precondition(fragment == fragmentEntries.count, "fragment blocks are written in order")
                fragmentEntries.append((output.offset, UInt32(bytes.count) | (compressed ? 0 : Format.dataUncompressed)))
                try output.append(bytes)
                statistics.fragments += 1
                if !compressed { statistics.uncompressed += 1 }
                switch job {
                case .cachedFragment: statistics.cachedFragments += 1
                case .fragment(_, _, let key?): cache?.save(CachedFragment(bytes: bytes, compressed: compressed), for: key)
                default: break
                }
            default:
                preconditionFailure("a job's result does not match the job")
            }
        }
    }

    /// Closes the open fragment block; it waits in `sealedWaiting` for a file boundary. With a
    /// cache, a fragment whose pieces all carry digests is looked up there first.
    private func sealFragment() {
        var key: FragmentKey?
        if cache != nil {
            var pieces: [FragmentKey.Piece] = []
            pieces.reserveCapacity(fragmentPieces.count)
            for piece in fragmentPieces {
                guard case .stored(let stored) = piece, let digest = stored.digest else { break }
                pieces.append(FragmentKey.Piece(digest: digest, length: stored.rawLength))
            }
            if pieces.count == fragmentPieces.count {
                key = FragmentKey(spec: spec, blockSize: blockSize, pieces: pieces)
            }
        }
        if let key, let cached = cache?.fragment(for: key), cached.bytes.count <= blockSize {
            sealedWaiting.append(.cachedFragment(index: sealedFragments, cached))
        } else {
            sealedWaiting.append(.fragment(index: sealedFragments, fragmentPieces, key: key))
        }
        sealedFragments += 1
        fragmentPieces = []
        fragmentFill = 0
    }

    /// Whether a fragment at least half full is closed after a file of `length` bytes: for one
    /// length in four, picked by the SplitMix64 finaliser of the length (spec/squashfs.md).
    static func closesFragment(length: Int) -> Bool {
        splitmix64(UInt64(length)) & 3 == 0
    }

    /// The SplitMix64 finaliser of `value + 0x9E3779B97F4A7C15`.
    static func splitmix64(_ value: UInt64) -> UInt64 {
        var x = value &+ 0x9E37_79B9_7F4A_7C15
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }
}

extension DataWriter {
    /// Moves the sealed fragment blocks into the queue; called only between files.
    private func queueSealedFragments() {
        for job in sealedWaiting {
            assembling.append(job)
            assemblingCost += job.cost(blockSize: blockSize)
        }
        sealedWaiting.removeAll()
    }
}

/// One batch of jobs and, once `done` is signalled, their results.
private final class Batch: @unchecked Sendable {
    let jobs: [DataWriter.Job]
    let results: UnsafeMutableBufferPointer<DataWriter.Output?>
    let failure = Mutex<(any Error)?>(nil)
    let done = DispatchSemaphore(value: 0)

    init(jobs: [DataWriter.Job]) {
        self.jobs = jobs
        results = .allocate(capacity: jobs.count)
        results.initialize(repeating: nil)
    }

    deinit {
        results.deinitialize()
        results.deallocate()
    }
}

/// One thread's compressor, decompressors and scratch buffer.
private final class Worker: @unchecked Sendable {
    let spec: CompressionSpec
    let blockSize: Int
    let ownBlockMinimum: Int?
    let compressor: Compressor
    private var decompressors: [Codec: Decompressor] = [:]
    private var scratch: [UInt8] = []

    init(spec: CompressionSpec, blockSize: Int, ownBlockMinimum: Int?) throws {
        self.spec = spec
        self.blockSize = blockSize
        self.ownBlockMinimum = ownBlockMinimum
        compressor = try Compressor(spec)
    }

    func process(_ job: DataWriter.Job) throws -> DataWriter.Output {
        switch job {
        case .block(_, .hole), .block(_, .zeros):
            return .hole(declared: true)
        case .block(_, .raw(let bytes)):
            return try compress(bytes, detectHole: true, recompressed: false)
        case .block(_, .stored(let stored)):
            if stored.isCompressed(as: spec) {
                return .data(stored.bytes, compressed: true, copied: true, recompressed: false)
            }
            if stored.isKnownNotSmaller(with: spec) && !(stored.rawLength == blockSize && stored.bytes.withUnsafeBytes(isAllZero)) {
                return .data(stored.bytes, compressed: false, copied: true, recompressed: false)
            }
            let raw = try decompress(stored)
            return try compress(raw, detectHole: true, recompressed: stored.spec.codec != .none)
        case .tail(_, let block, let length):
            if case .hole = block { return .tail(.raw([UInt8](repeating: 0, count: length))) }
            guard let minimum = ownBlockMinimum else { return .tail(block) }
            return try ownBlockOrTail(block, minimum: minimum)
        case .fragment(_, let pieces, _):
            var bytes: [UInt8] = []
            bytes.reserveCapacity(blockSize)
            for piece in pieces {
                switch piece {
                case .hole, .zeros: preconditionFailure("a hole in a fragment")
                case .raw(let raw): bytes.append(contentsOf: raw)
                case .stored(let stored): bytes.append(contentsOf: try decompress(stored))
                }
            }
            return try compress(bytes, detectHole: false, recompressed: false)
        case .cachedFragment(_, let cached):
            return .data(cached.bytes, compressed: cached.compressed, copied: true, recompressed: false)
        }
    }

    /// A small file as a block of its own when its stored form at the image's codec and level has at
    /// least `minimum` bytes, else as a piece for a fragment. A block stored with the image's codec
    /// and level gives its size without being compressed again; any other is compressed to learn it,
    /// so the answer depends on the data and the settings only, not on how the source held it.
    private func ownBlockOrTail(_ block: SourceBlock, minimum: Int) throws -> DataWriter.Output {
        let raw: [UInt8]
        switch block {
        case .stored(let stored) where stored.isCompressed(as: spec):
            guard stored.bytes.count >= minimum else { return .tail(block) }
            return .data(stored.bytes, compressed: true, copied: true, recompressed: false)
        case .stored(let stored) where stored.isKnownNotSmaller(with: spec):
            guard stored.bytes.count >= minimum else { return .tail(block) }
            return .data(stored.bytes, compressed: false, copied: true, recompressed: false)
        case .stored(let stored):
            raw = try decompress(stored)
        case .raw(let bytes):
            raw = bytes
        case .hole, .zeros:
            preconditionFailure("a hole for a small file")
        }
        var recompressed = false
        if case .stored(let stored) = block { recompressed = stored.spec.codec != .none }
        let output = try compress(raw, detectHole: false, recompressed: recompressed)
        guard case .data(let bytes, _, _, _) = output, bytes.count >= minimum else {
            // For the fragment: the raw bytes, with the digest that names them in the fragment cache.
            if case .stored(let stored) = block {
                return .tail(.stored(StoredBlock(bytes: raw, spec: CompressionSpec(codec: .none, level: 0),
                                                 rawLength: raw.count, digest: stored.digest)))
            }
            return .tail(.raw(raw))
        }
        return output
    }

    private func compress(_ bytes: [UInt8], detectHole: Bool, recompressed: Bool) throws -> DataWriter.Output {
        try bytes.withUnsafeBytes { raw in
            if detectHole && raw.count == blockSize && isAllZero(raw) { return .hole(declared: false) }
            if try compressor.compress(raw, into: &scratch) {
                return .data(Array(scratch), compressed: true, copied: false, recompressed: recompressed)
            }
            return .data(bytes, compressed: false, copied: false, recompressed: recompressed)
        }
    }

    private func decompress(_ stored: StoredBlock) throws -> [UInt8] {
        if stored.spec.codec == .none {
            guard stored.bytes.count == stored.rawLength else {
                throw SquashFSError.badSource("a raw block of \(stored.bytes.count) bytes said to hold \(stored.rawLength)")
            }
            return stored.bytes
        }
        let decompressor: Decompressor
        if let known = decompressors[stored.spec.codec] {
            decompressor = known
        } else {
            decompressor = try Decompressor(stored.spec.codec)
            decompressors[stored.spec.codec] = decompressor
        }
        let length = stored.rawLength
        return try [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            let got = try stored.bytes.withUnsafeBytes {
                try decompressor.decompress($0, into: UnsafeMutableRawBufferPointer(buffer))
            }
            guard got == length else {
                throw SquashFSError.badSource("a stored block decompressed to \(got) bytes, expected \(length)")
            }
            count = length
        }
    }
}

extension StoredBlock {
    /// Whether these bytes are compressed with `spec` (and so smaller than the raw block): what the
    /// image holds for them, to be copied.
    func isCompressed(as spec: CompressionSpec) -> Bool {
        self.spec == spec && spec.codec != .none && bytes.count < rawLength
    }

    /// Whether these are raw bytes that `spec` was found not to make smaller, so that compressing
    /// them with it again would only find the same.
    func isKnownNotSmaller(with spec: CompressionSpec) -> Bool {
        self.spec.codec == .none && spec.codec != .none && notSmallerWith == spec && bytes.count == rawLength
    }
}

extension DataWriter {
    /// Counts a file the caller found to duplicate another (by content digest).
    func countDuplicate() { statistics.duplicates += 1 }
}
