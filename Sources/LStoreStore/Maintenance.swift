import Dispatch
import LStoreCompression
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `gc` (or `repack`) did, or with `dryRun` would do.
public struct GCReport: Sendable {
    public var dryRun: Bool
    public var packsBefore = 0
    public var packsAfter = 0
    public var bytesBefore: UInt64 = 0
    public var bytesAfter: UInt64 = 0
    public var objectsRemoved = 0
    public var freedBytes: Int64 { Int64(bytesBefore) - Int64(bytesAfter) }
}

extension Store {
    /// Drops every object no ref reaches: packs holding garbage are rewritten with only their live
    /// objects (copied as stored, never recompressed), then removed. With `recompress`, every live
    /// object is recompressed with that codec and level instead, and the store's config is changed
    /// to it (`repack`). Runs under the store lock held exclusively, so no commit writes meanwhile.
    public func gc(dryRun: Bool, recompress: CompressionSpec? = nil,
                   threads: Int = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))),
                   progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> GCReport {
        let writer = try StoreWriter(store: self, exclusive: true)
        var report = GCReport(dryRun: dryRun)

        var walker = ReachableWalker(store: self, full: false)
        for (name, commit) in try refs() { walker.walkCommit(commit, from: "ref '\(name)'") }
        guard walker.errors.isEmpty else {
            throw StoreError.corrupt("refusing to gc a store that fsck finds broken: \(walker.errors[0])")
        }
        func isLive(_ kind: ObjectKind, _ id: Digest) -> Bool {
            switch kind {
            case .commit: walker.commits.contains(id)
            case .tree: walker.trees.contains(id)
            case .file: walker.files.contains(id)
            case .block: walker.blocks.contains(id)
            }
        }

        struct Live { var pack: String; var id: Digest; var location: PackLocation }
        var keep: [Live] = []
        var rewrite: [PackIndex] = []
        var seen: [ObjectKind: Set<Digest>] = [:]
        let packs = indexes.sorted { $0.name < $1.name }
        for index in packs {
            report.packsBefore += 1
            report.bytesBefore += fileSize(layout.packPath(index.name, ext: "pack")) + fileSize(layout.packPath(index.name, ext: "idx"))
            var live: [Live] = []
            for i in 0..<index.count {
                guard let location = index.location(at: i) else { throw StoreError.corrupt("index \(index.name): entry \(i)") }
                let id = index.id(at: i)
                if isLive(location.kind, id) && seen[location.kind, default: []].insert(id).inserted {
                    live.append(Live(pack: index.name, id: id, location: location))
                } else {
                    report.objectsRemoved += 1
                }
            }
            if recompress == nil && live.count == index.count {
                report.packsAfter += 1
                report.bytesAfter += fileSize(layout.packPath(index.name, ext: "pack")) + fileSize(layout.packPath(index.name, ext: "idx"))
            } else {
                rewrite.append(index)
                keep.append(contentsOf: live)
            }
        }
        let orphans = try listDirectory(layout.packsDirectory).map { String(decoding: $0, as: UTF8.self) }
            .filter { name in name.hasSuffix(".pack") && !packs.contains { $0.name + ".pack" == name } }
        for orphan in orphans { report.bytesBefore += fileSize(layout.packsDirectory + "/" + orphan) }

        if dryRun {
            let liveBytes = keep.reduce(UInt64(0)) { $0 + UInt64(PackFormat.entryHeaderSize) + UInt64($1.location.storedLength) }
            report.bytesAfter += keep.isEmpty ? 0 : liveBytes + UInt64(PackFormat.headerSize + PackFormat.trailerSize)
                + UInt64(keep.count * PackIndex.entrySize + PackIndex.headerSize + PackIndex.fanoutSize + PackIndex.trailerSize)
            report.packsAfter += keep.isEmpty ? 0 : 1
            return report
        }

        // Copy (or recompress) the live objects of the packs being rewritten, in a fixed order.
        let batchSize = 256
        var done = 0
        var scratch: [UInt8] = []
        for start in stride(from: 0, to: keep.count, by: batchSize) {
            let batch = Array(keep[start..<min(start + batchSize, keep.count)])
            if let spec = recompress {
                let results = try recompressBatch(batch.map { ($0.pack, $0.id, $0.location) }, spec: spec, threads: threads)
                for (item, result) in zip(batch, results) {
                    try result.bytes.withUnsafeBytes { stored in
                        try writer.addStored(item.location.kind, id: item.id, codec: result.codec, level: result.level,
                                             triedCodec: result.triedCodec, rawLength: Int(item.location.rawLength), stored: stored)
                    }
                }
            } else {
                for item in batch {
                    try readStored(pack: item.pack, location: item.location, expecting: item.id, into: &scratch)
                    try scratch.withUnsafeBytes { raw in
                        let stored = UnsafeRawBufferPointer(rebasing: raw[PackFormat.entryHeaderSize..<PackFormat.entryHeaderSize + Int(item.location.storedLength)])
                        try writer.addStored(item.location.kind, id: item.id, codec: item.location.codec, level: item.location.level,
                                             triedCodec: item.location.triedCodec, rawLength: Int(item.location.rawLength), stored: stored)
                    }
                }
            }
            done += batch.count
            progress?(done, keep.count)
        }
        let written = try writer.finish()
        for name in written {
            report.packsAfter += 1
            report.bytesAfter += fileSize(layout.packPath(name, ext: "pack")) + fileSize(layout.packPath(name, ext: "idx"))
        }
        if let spec = recompress {
            var newConfig = config
            newConfig.compression = spec
            try layout.writeFileAtomically(newConfig.encoded(), to: layout.config)
            config = newConfig
        }
        // The new packs are durable: now the old ones may go (index first, so no index names a
        // missing pack), then leftovers of interrupted writes.
        forget(packs: Set(rewrite.map(\.name)))
        for index in rewrite {
            unlink(layout.packPath(index.name, ext: "idx"))
            unlink(layout.packPath(index.name, ext: "pack"))
        }
        for orphan in orphans { unlink(layout.packsDirectory + "/" + orphan) }
        for leftover in try listDirectory(layout.tmp) {
            unlink(layout.tmp + "/" + String(decoding: leftover, as: UTF8.self))
        }
        // The caches may name blocks that are gone, and only grow: they start again empty.
        unlink(layout.fragmentCache)
        // Blobs of registry pulls that did not finish (their content is not in the store).
        for leftover in (try? listDirectory(layout.downloads)) ?? [] {
            unlink(layout.downloads + "/" + String(decoding: leftover, as: UTF8.self))
        }
        // Scratch directories of processes that were killed (gc holds the store exclusively: no
        // process that made one is still running).
        try? removeTree(layout.scratch)
        try syncDirectory(layout.packsDirectory)
        return report
    }

    private struct Recompressed: Sendable {
        var bytes: [UInt8]
        var codec: Codec
        var level: UInt8
        var triedCodec: Codec = .none
    }

    /// Decompresses and recompresses objects on every core; results in input order.
    private func recompressBatch(_ items: [(String, Digest, PackLocation)], spec: CompressionSpec,
                                 threads: Int) throws -> [Recompressed] {
        let results = Mutex([Recompressed?](repeating: nil, count: items.count))
        let failure = Mutex<Error?>(nil)
        let next = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: min(threads, items.count)) { _ in
            do {
                let compressor = try Compressor(spec)
                var decompressors = Decompressors()
                var scratch: [UInt8] = []
                var output: [UInt8] = []
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < items.count else { break }
                    let (pack, id, location) = items[i]
                    try readStored(pack: pack, location: location, expecting: id, into: &scratch)
                    var raw = [UInt8](repeating: 0, count: Int(location.rawLength))
                    try scratch.withUnsafeBytes { buffer in
                        let stored = UnsafeRawBufferPointer(rebasing: buffer[PackFormat.entryHeaderSize..<PackFormat.entryHeaderSize + Int(location.storedLength)])
                        try raw.withUnsafeMutableBytes {
                            try decompressors.decompress(stored, codec: location.codec, into: $0, what: "\(location.kind) \(id.short)")
                        }
                    }
                    guard sha256(raw) == id else { throw StoreError.corrupt("\(location.kind) \(id.short) does not hash to its id") }
                    let result: Recompressed
                    if try raw.withUnsafeBytes({ try compressor.compress($0, into: &output) }) {
                        result = Recompressed(bytes: output, codec: spec.codec, level: UInt8(spec.level))
                    } else {
                        result = Recompressed(bytes: raw, codec: .none, level: UInt8(spec.level), triedCodec: spec.codec)
                    }
                    results.withLock { $0[i] = result }
                }
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return results.withLock { $0.map { $0! } }
    }
}

/// What a store holds, and what each ref costs.
public struct StoreStats: Sendable {
    public struct RefStats: Sendable {
        public var name: String
        public var commit: Digest
        /// Bytes of file data in the ref's tree.
        public var logicalBytes: UInt64
        public var files: UInt64
        /// Compressed bytes of the distinct blocks the ref's tree uses.
        public var storedBytes: UInt64
        /// Of those, the blocks its first parent does not use: what the layer adds.
        public var ownBytes: UInt64
    }

    /// Bytes of packs and indexes on disk.
    public var storedBytes: UInt64 = 0
    public var packs = 0
    public var objects = 0
    /// The sum of every ref's logical bytes: what storing each separately would take, uncompressed.
    public var logicalBytes: UInt64 = 0
    public var refs: [RefStats] = []

    public var dedupRatio: Double { storedBytes == 0 ? 0 : Double(logicalBytes) / Double(storedBytes) }
}

extension Store {
    public func stats() throws -> StoreStats {
        var stats = StoreStats()
        for index in indexes {
            stats.packs += 1
            stats.objects += index.count
            stats.storedBytes += fileSize(layout.packPath(index.name, ext: "pack")) + fileSize(layout.packPath(index.name, ext: "idx"))
        }
        for (name, id) in try refs() {
            let commit = try self.commit(id)
            let blocks = try blocksOf(tree: commit.tree)
            let parentBlocks = try commit.parents.first.map { try blocksOf(tree: try self.commit($0).tree) } ?? [:]
            let stored = blocks.values.reduce(UInt64(0), +)
            let own = blocks.filter { parentBlocks[$0.key] == nil }.values.reduce(UInt64(0), +)
            stats.refs.append(.init(name: name, commit: id, logicalBytes: commit.size, files: commit.files,
                                    storedBytes: stored, ownBytes: own))
            stats.logicalBytes += commit.size
        }
        return stats
    }

    /// The distinct blocks a tree uses, with their stored sizes.
    private func blocksOf(tree: Digest) throws -> [Digest: UInt64] {
        var walker = ReachableWalker(store: self, full: false)
        walker.walkTree(tree, path: "/", in: tree)
        if let error = walker.errors.first { throw StoreError.corrupt(error) }
        var sizes: [Digest: UInt64] = [:]
        for block in walker.blocks {
            sizes[block] = UInt64(locate(block, kind: .block)?.location.storedLength ?? 0)
        }
        return sizes
    }
}

func fileSize(_ path: String) -> UInt64 {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
}
