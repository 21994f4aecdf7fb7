import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What `fsck` found.
public struct FsckReport: Sendable {
    /// Problems: the store is not consistent.
    public var errors: [String] = []
    /// Leftovers that do no harm (an interrupted write's unindexed pack, temporary files).
    public var warnings: [String] = []
    public var refs = 0
    public var commits = 0
    public var trees = 0
    public var files = 0
    public var blocks = 0
    public var packs = 0
    /// Bytes of block data read and verified (with `full`).
    public var verifiedBytes: UInt64 = 0

    public var isClean: Bool { errors.isEmpty }
}

extension Store {
    /// Checks that every ref points at a commit whose every object is present, parses and hashes to
    /// its id, and whose hardlinks name entries that hold data; that every index and pack is whole. With `full`, also reads every reachable block,
    /// decompresses it and checks its SHA-256, and checks every pack's trailing checksum.
    public func fsck(full: Bool, progress: ((_ objects: Int) -> Void)? = nil) -> FsckReport {
        var report = FsckReport()
        checkPacks(full: full, into: &report)
        let refs: [(name: String, commit: Digest)]
        do {
            refs = try self.refs()
        } catch {
            report.errors.append("refs: \(error)")
            return report
        }
        report.refs = refs.count
        var walker = ReachableWalker(store: self, full: full)
        walker.progress = progress
        for (name, commit) in refs {
            walker.walkCommit(commit, from: "ref '\(name)'")
        }
        report.errors += walker.errors
        // Hardlink paths are relative to a commit's root, so they are checked once per root tree.
        var roots = Set<Digest>()
        for id in walker.commits.sorted(by: { $0.hex < $1.hex }) {
            guard let commit = try? commit(id), roots.insert(commit.tree).inserted else { continue }
            report.errors += hardlinkProblems(in: commit.tree, commit: id)
        }
        report.commits = walker.commits.count
        report.trees = walker.trees.count
        report.files = walker.files.count
        report.blocks = walker.blocks.count
        report.verifiedBytes = walker.verifiedBytes
        return report
    }

    /// The hardlink entries of the root tree `root` whose path does not name an earlier entry that
    /// holds data (spec/store.md, "Hardlinks"). A tree that does not load was reported by the walk.
    func hardlinkProblems(in root: Digest, commit: Digest) -> [String] {
        guard let tree = try? loadTree(root) else { return [] }
        var order: [ObjectIdentifier: Int] = [:]
        var links: [(index: Int, path: [UInt8], target: [UInt8])] = []
        tree.walk { path, node in
            if case .hardlink(let target) = node.content { links.append((order.count, path, target)) }
            order[ObjectIdentifier(node)] = order.count
        }
        return links.compactMap { link in
            let problem: String?
            if !link.target.isEmpty, let target = tree.lookup(link.target) {
                switch target.content {
                case .directory: problem = "a directory"
                case .hardlink: problem = "another hardlink"
                default: problem = order[ObjectIdentifier(target)]! > link.index ? "after it in the tree" : nil
                }
            } else {
                problem = "not in the tree"
            }
            return problem.map { "/\(link.path.printable) in commit \(commit.short): hardlink to /\(link.target.printable), which is \($0)" }
        }
    }

    private func checkPacks(full: Bool, into report: inout FsckReport) {
        for (name, problem) in brokenIndexes.sorted(by: { $0.key < $1.key }) {
            report.errors.append("index \(name): \(problem)")
        }
        let names: [String]
        do {
            names = try listDirectory(layout.packsDirectory).map { String(decoding: $0, as: UTF8.self) }
        } catch {
            report.errors.append("\(error)")
            return
        }
        let indexed = Set(indexes.map(\.name))
        for name in names where name.hasSuffix(".pack") {
            let pack = String(name.dropLast(5))
            if !indexed.contains(pack) && brokenIndexes[pack] == nil {
                report.warnings.append("pack \(pack) has no index (an interrupted write left it; gc removes it)")
            }
        }
        if let leftovers = try? listDirectory(layout.tmp), !leftovers.isEmpty {
            report.warnings.append("\(leftovers.count) temporary file(s) in tmp/ (gc removes them)")
        }
        for index in indexes {
            report.packs += 1
            if !index.verifyChecksum() { report.errors.append("index \(index.name): checksum mismatch") }
            let path = layout.packPath(index.name, ext: "pack")
            var st = stat()
            guard stat(path, &st) == 0 else {
                report.errors.append("pack \(index.name): missing (its index exists)")
                continue
            }
            let size = UInt64(st.st_size)
            for i in 0..<index.count {
                guard let location = index.location(at: i) else {
                    report.errors.append("index \(index.name): entry \(i) is malformed")
                    continue
                }
                let end = location.offset + UInt64(PackFormat.entryHeaderSize) + UInt64(location.storedLength)
                if location.offset < UInt64(PackFormat.headerSize) || end + UInt64(PackFormat.trailerSize) > size {
                    report.errors.append("pack \(index.name): entry \(index.id(at: i).short) lies outside the pack")
                }
            }
            if full, let problem = verifyPackChecksum(index.name, path: path, expected: index.packChecksum) {
                report.errors.append("pack \(index.name): \(problem)")
            }
        }
    }

    private func verifyPackChecksum(_ name: String, path: String, expected: (high: UInt64, low: UInt64)) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "cannot open: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        guard size >= PackFormat.headerSize + PackFormat.trailerSize else { return "too short" }
        let hasher = XXH3.Hasher128()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset = 0
        let body = size - PackFormat.trailerSize
        while offset < body {
            let want = min(buffer.count, body - offset)
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, want, off_t(offset)) }
            guard got == want else { return "read error at \(offset)" }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<want])) }
            offset += want
        }
        let digest = hasher.finalize()
        var trailer = [UInt8](repeating: 0, count: PackFormat.trailerSize)
        guard trailer.withUnsafeMutableBytes({ pread(fd, $0.baseAddress!, PackFormat.trailerSize, off_t(body)) }) == PackFormat.trailerSize
        else { return "cannot read trailer" }
        guard Array(trailer[0..<4]) == PackFormat.trailerMagic else { return "bad trailer" }
        let high = trailer.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        let low = trailer.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        guard digest == (high, low), digest == expected, hex128(digest) == name else { return "checksum mismatch" }
        return nil
    }
}

/// Walks everything reachable from commits, once each, collecting errors instead of stopping.
struct ReachableWalker {
    let store: Store
    let full: Bool
    var progress: ((_ objects: Int) -> Void)?
    var commits = Set<Digest>()
    var trees = Set<Digest>()
    var files = Set<Digest>()
    var blocks = Set<Digest>()
    var errors: [String] = []
    var verifiedBytes: UInt64 = 0
    /// Where each block is needed, and how long it must be.
    private var scratch: [UInt8] = []
    private var decompressors = Decompressors()
    private var blockBuffer: [UInt8] = []

    init(store: Store, full: Bool) {
        self.store = store
        self.full = full
    }

    private var visited: Int { commits.count + trees.count + files.count + blocks.count }

    mutating func walkCommit(_ start: Digest, from origin: String) {
        var pending = [start]
        while let id = pending.popLast() {
            guard commits.insert(id).inserted else { continue }
            do {
                let commit = try store.commit(id)
                walkTree(commit.tree, path: "/", in: id)
                pending.append(contentsOf: commit.parents)
            } catch {
                errors.append("commit \(id.short) (reached from \(origin)): \(error)")
            }
        }
    }

    mutating func walkTree(_ id: Digest, path: String, in commit: Digest) {
        guard trees.insert(id).inserted else { return }
        if trees.count & 255 == 0 { progress?(visited) }
        let tree: TreeObject
        do {
            tree = try store.tree(id)
        } catch {
            errors.append("\(path) in commit \(commit.short): \(error)")
            return
        }
        for entry in tree.entries {
            let child = (path == "/" ? "/" : path + "/") + entry.name.printable
            switch entry.payload {
            case .directory(let subtree):
                walkTree(subtree, path: child, in: commit)
            case .regular(let size, let file):
                walkFile(file, size: size, path: child, in: commit)
            default:
                break
            }
        }
    }

    mutating func walkFile(_ id: Digest, size: UInt64, path: String, in commit: Digest) {
        guard files.insert(id).inserted else { return }
        let object: FileObject
        do {
            object = try store.file(id)
        } catch {
            errors.append("\(path) in commit \(commit.short): \(error)")
            return
        }
        if object.size != size {
            errors.append("\(path) in commit \(commit.short): file object says \(object.size) bytes, the tree \(size)")
        }
        for (index, block) in object.blocks.enumerated() where block != .zero {
            guard blocks.insert(block).inserted else { continue }
            let length = object.length(ofBlock: index)
            guard let (pack, location) = store.find(block, kind: .block) else {
                errors.append("\(path) in commit \(commit.short): missing block \(block.short)")
                continue
            }
            if Int(location.rawLength) != length {
                errors.append("\(path) in commit \(commit.short): block \(block.short) has \(location.rawLength) bytes, expected \(length)")
            }
            if full { verifyBlock(block, pack: pack, location: location, path: path, commit: commit) }
        }
    }

    private mutating func verifyBlock(_ id: Digest, pack: String, location: PackLocation, path: String, commit: Digest) {
        do {
            try store.readStored(pack: pack, location: location, expecting: id, into: &scratch)
            let length = Int(location.rawLength)
            if blockBuffer.count < length { blockBuffer = [UInt8](repeating: 0, count: length) }
            try scratch.withUnsafeBytes { raw in
                let stored = UnsafeRawBufferPointer(rebasing: raw[PackFormat.entryHeaderSize..<PackFormat.entryHeaderSize + Int(location.storedLength)])
                try blockBuffer.withUnsafeMutableBytes { out in
                    try decompressors.decompress(stored, codec: location.codec, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<length]),
                                                 what: "block \(id.short)")
                }
            }
            let actual = blockBuffer.withUnsafeBytes { sha256(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            if actual != id { errors.append("\(path) in commit \(commit.short): block \(id.short) does not hash to its id") }
            verifiedBytes += UInt64(length)
            if blocks.count & 1023 == 0 { progress?(visited) }
        } catch {
            errors.append("\(path) in commit \(commit.short): \(error)")
        }
    }
}
