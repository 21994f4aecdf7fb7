import struct Crypto.SHA256
import LStoreCompression
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The SHA-256 of `bytes`: every object's identity.
public func sha256(_ bytes: UnsafeRawBufferPointer) -> Digest {
    var hasher = SHA256()
    hasher.update(bufferPointer: bytes)
    return hasher.finalize().withUnsafeBytes { Digest(bytes: $0) }
}

public func sha256(_ bytes: [UInt8]) -> Digest {
    bytes.withUnsafeBytes { sha256($0) }
}

/// A content-addressed store of root filesystem trees: blocks, file objects, trees and commits in
/// write-once packs, and refs naming commits. See spec/store.md.
///
/// A `Store` holds the store lock (`lock`) shared from `open` until it goes away, so no gc or repack
/// runs while it reads (spec/store.md §10). It sees the packs present when it was opened, those it
/// wrote itself, and those another process published since, which it looks for whenever an object
/// is not in the packs it knows. Reading is safe from many threads at once.
public final class Store: @unchecked Sendable {
    public let path: String
    public internal(set) var config: StoreConfig
    let layout: StoreLayout
    /// The store lock, held shared; nil when the store is on a filesystem this process cannot
    /// write and has no lock file (nothing can gc it then).
    let lock: FileLock?
    private let state: Locked<State>
    private let spareDecompressors = Locked<[Decompressors]>([])

    private struct State {
        var indexes: [PackIndex] = []
        var broken: [String: String] = [:]
        var packFiles: [String: Int32] = [:]
    }

    /// The cache of compressed squashfs fragment blocks (`cache/fragments`).
    public func openFragmentCache() -> BlobCache { BlobCache(path: layout.fragmentCache) }
    /// Where registry pulls keep blobs while they arrive (an interrupted pull resumes from them);
    /// derived data, which gc removes.
    public var downloadsDirectory: String { layout.downloads }
    /// A file of derived data in the store's cache (`cache/NAME`): nothing breaks when it is lost.
    public func cacheFile(_ name: String) -> String { layout.cacheDirectory + "/" + name }
    /// A new path in the store's cache for scratch work of one process (a push's image), which
    /// the caller removes; gc removes what a killed process left.
    public func scratchDirectory(_ prefix: String) -> String {
        "\(layout.scratch)/\(prefix)-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    }

    public var blockSize: Int { config.blockSize }
    public var compression: CompressionSpec { config.compression }

    private init(path: String, config: StoreConfig, lock: FileLock?) {
        self.path = path
        self.config = config
        self.lock = lock
        layout = StoreLayout(root: path)
        state = Locked(State())
    }

    deinit {
        state.withLock { state in
            for fd in state.packFiles.values { close(fd) }
        }
    }

    /// Creates a new, empty store at `path` (a new or empty directory).
    @discardableResult
    public static func initialize(at path: String, config: StoreConfig) throws -> Store {
        try StoreConfig.validate(blockSize: config.blockSize)
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw FileError(path: path, operation: "mkdir", errno: errno)
        }
        let layout = StoreLayout(root: path)
        if access(layout.config, F_OK) == 0 { throw StoreError.storeExists(path) }
        for directory in [layout.packsDirectory, layout.tmp] {
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw FileError(path: directory, operation: "mkdir", errno: errno)
            }
        }
        // The config is written last: a store without one is not a store yet.
        try layout.writeFileAtomically(config.encoded(), to: layout.config)
        return try open(at: path)
    }

    /// Opens the store at `path` and takes its lock shared (waiting while a gc or repack runs),
    /// then lists its packs: everything a ref read later names is in them or in a pack published
    /// after, which a lookup that misses finds.
    public static func open(at path: String) throws -> Store {
        let layout = StoreLayout(root: path)
        guard let text = try? readSmallFile(layout.config, limit: 4096) else { throw StoreError.noStore(path) }
        let config = try StoreConfig(decoding: String(decoding: text, as: UTF8.self))
        let store = Store(path: path, config: config, lock: try FileLock.reader(of: layout.storeLock))
        try store.reloadIndexes()
        return store
    }

    /// Maps every index in `packs/` that is not mapped yet. Returns whether it mapped any.
    @discardableResult
    func reloadIndexes() throws -> Bool {
        let names = try listDirectory(layout.packsDirectory)
            .compactMap { name -> String? in
                let text = String(decoding: name, as: UTF8.self)
                return text.hasSuffix(".idx") ? String(text.dropLast(4)) : nil
            }
        let known = Set(state.withLock { $0.indexes.map(\.name) })
        var added: [PackIndex] = []
        var broken: [String: String] = [:]
        for name in names.sorted() where !known.contains(name) {
            do {
                added.append(try PackIndex(path: layout.packPath(name, ext: "idx"), name: name))
            } catch {
                broken[name] = "\(error)"
            }
        }
        return state.withLock { state in
            // Another thread may have mapped some of them meanwhile.
            let present = Set(state.indexes.map(\.name))
            let new = added.filter { !present.contains($0.name) }
            state.indexes.append(contentsOf: new)
            state.broken = broken
            return !new.isEmpty
        }
    }

    /// Indexes that could not be read, by pack name, with the reason: what fsck reports.
    var brokenIndexes: [String: String] { state.withLock { $0.broken } }

    var indexes: [PackIndex] { state.withLock { $0.indexes } }

    /// Makes a pack just written visible to this store's readers.
    func adopt(packNamed name: String) throws {
        let index = try PackIndex(path: layout.packPath(name, ext: "idx"), name: name)
        state.withLock { $0.indexes.append(index) }
    }

    /// Forgets packs that gc or repack removed.
    func forget(packs names: Set<String>) {
        state.withLock { state in
            state.indexes.removeAll { names.contains($0.name) }
            for name in names {
                if let fd = state.packFiles.removeValue(forKey: name) { close(fd) }
            }
        }
    }

    public func contains(_ id: Digest, kind: ObjectKind) -> Bool {
        locate(id, kind: kind) != nil
    }

    /// Where object `id` is, in the packs this store has mapped. Writers ask this: a miss costs
    /// them a second copy of an object at worst, which gc drops.
    func locate(_ id: Digest, kind: ObjectKind) -> (pack: String, location: PackLocation)? {
        for index in indexes.reversed() {
            if let location = index.lookup(id, kind: kind) { return (index.name, location) }
        }
        return nil
    }

    /// Where object `id` is, for a reader: when the packs mapped do not have it, maps the indexes
    /// published since (once) and looks again, so an object another process stored before this
    /// one read a ref naming it is found.
    /// How many bytes object `id` takes in its pack (compressed), nil when the store lacks it.
    public func storedSize(of id: Digest, kind: ObjectKind) -> UInt64? {
        find(id, kind: kind).map { UInt64($0.location.storedLength) }
    }

    func find(_ id: Digest, kind: ObjectKind) -> (pack: String, location: PackLocation)? {
        if let found = locate(id, kind: kind) { return found }
        guard (try? reloadIndexes()) == true else { return nil }
        return locate(id, kind: kind)
    }

    /// Reads with `body` from the pack that holds `id`. When that pack is gone (a gc that did not
    /// wait for this store, which holds no lock, rewrote it), forgets it, maps the packs published
    /// since and tries once more: gc publishes the new pack before it removes the old one.
    private func withPack<R>(of id: Digest, kind: ObjectKind,
                             _ body: (_ pack: String, _ fd: Int32, _ location: PackLocation) throws -> R) throws -> R {
        for attempt in 0..<2 {
            guard let (pack, location) = find(id, kind: kind) else { break }
            let fd: Int32
            do {
                fd = try packFile(pack)
            } catch let error as FileError where error.errno == ENOENT && attempt == 0 {
                forgetVanished(pack)
                try reloadIndexes()
                continue
            }
            return try body(pack, fd, location)
        }
        throw StoreError.missingObject(kind, id)
    }

    /// Forgets a pack whose file is gone and that this store never opened.
    private func forgetVanished(_ name: String) {
        state.withLock { state in
            if state.packFiles[name] == nil { state.indexes.removeAll { $0.name == name } }
        }
    }

    private func packFile(_ name: String) throws -> Int32 {
        try state.withLock { state in
            if let fd = state.packFiles[name] { return fd }
            let path = layout.packPath(name, ext: "pack")
            let fd = try systemCall("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
            state.packFiles[name] = fd
            return fd
        }
    }

    /// Reads an object's stored bytes (compressed or raw) into `buffer` and checks them against the
    /// pack entry's header and XXH3 checksum. Returns the entry's location.
    @discardableResult
    func readStored(_ id: Digest, kind: ObjectKind, into buffer: inout [UInt8]) throws -> PackLocation {
        try withPack(of: id, kind: kind) { pack, fd, location in
            try readStored(pack: pack, fd: fd, location: location, expecting: id, into: &buffer)
            return location
        }
    }

    func readStored(pack: String, location: PackLocation, expecting id: Digest, into buffer: inout [UInt8]) throws {
        try readStored(pack: pack, fd: try packFile(pack), location: location, expecting: id, into: &buffer)
    }

    private func readStored(pack: String, fd: Int32, location: PackLocation, expecting id: Digest,
                            into buffer: inout [UInt8]) throws {
        let total = PackFormat.entryHeaderSize + Int(location.storedLength)
        guard total <= PackFormat.entryHeaderSize + PackFormat.maxObjectSize else {
            throw StoreError.corrupt("pack \(pack): object \(id.short) too large")
        }
        if buffer.count < total { buffer = [UInt8](repeating: 0, count: total) }
        try buffer.withUnsafeMutableBytes { raw in
            try readEntry(fd: fd, pack: pack, location: location, expecting: id, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<total]))
        }
    }

    /// Reads the entry at `location` into `raw` (header and stored bytes: the whole entry, or the
    /// header alone with `payload` for the stored bytes) and checks its header and checksum.
    private func readEntry(fd: Int32, pack: String, location: PackLocation, expecting id: Digest,
                           into raw: UnsafeMutableRawBufferPointer, payload: UnsafeMutableRawBufferPointer? = nil) throws {
        let what = layout.packPath(pack, ext: "pack")
        let got = try systemCall("read", path: what) { pread(fd, raw.baseAddress!, raw.count, off_t(location.offset)) }
        guard got == raw.count else { throw StoreError.corrupt("pack \(pack): truncated at object \(id.short)") }
        let header = try PackEntryHeader(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<PackFormat.entryHeaderSize]),
                                         what: "pack \(pack) at \(location.offset)")
        guard header.id == id, header.kind == location.kind, header.storedLength == location.storedLength,
              header.rawLength == location.rawLength, header.codec == location.codec,
              header.level == location.level, header.triedCodec == location.triedCodec else {
            throw StoreError.corrupt("pack \(pack): entry at \(location.offset) is not \(location.kind) \(id.short)")
        }
        var stored = UnsafeRawBufferPointer(rebasing: raw[PackFormat.entryHeaderSize...])
        if let payload {
            let offset = off_t(location.offset) + off_t(PackFormat.entryHeaderSize)
            let got = try systemCall("read", path: what) { pread(fd, payload.baseAddress!, payload.count, offset) }
            guard got == payload.count else { throw StoreError.corrupt("pack \(pack): truncated at object \(id.short)") }
            stored = UnsafeRawBufferPointer(payload)
        }
        guard XXH3.hash64(stored) == header.checksum else {
            throw StoreError.corrupt("pack \(pack): checksum mismatch in \(location.kind) \(id.short)")
        }
    }

    /// The stored (compressed) bytes of object `id`, checked against their checksum, read straight
    /// into an array of their own.
    func readStoredBytes(_ id: Digest, kind: ObjectKind) throws -> (location: PackLocation, bytes: [UInt8]) {
        try withPack(of: id, kind: kind) { pack, fd, location in
            try readStoredBytes(pack: pack, fd: fd, location: location, expecting: id)
        }
    }

    private func readStoredBytes(pack: String, fd: Int32, location: PackLocation,
                                 expecting id: Digest) throws -> (location: PackLocation, bytes: [UInt8]) {
        let length = Int(location.storedLength)
        guard length <= PackFormat.maxObjectSize else { throw StoreError.corrupt("pack \(pack): object \(id.short) too large") }
        var header = [UInt8](repeating: 0, count: PackFormat.entryHeaderSize)
        let bytes = try [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            try header.withUnsafeMutableBytes {
                try readEntry(fd: fd, pack: pack, location: location, expecting: id, into: $0,
                              payload: UnsafeMutableRawBufferPointer(buffer))
            }
            count = length
        }
        return (location, bytes)
    }

    /// Reads and decompresses an object. With `verify`, checks that it hashes to its id.
    func readObject(_ id: Digest, kind: ObjectKind, verify: Bool = true, scratch: inout [UInt8],
                    decompressors: inout Decompressors) throws -> [UInt8] {
        let location = try readStored(id, kind: kind, into: &scratch)
        var output = [UInt8](repeating: 0, count: Int(location.rawLength))
        try scratch.withUnsafeBytes { raw in
            let stored = UnsafeRawBufferPointer(rebasing: raw[PackFormat.entryHeaderSize..<PackFormat.entryHeaderSize + Int(location.storedLength)])
            try output.withUnsafeMutableBytes { out in
                try decompressors.decompress(stored, codec: location.codec, into: out, what: "\(kind) \(id.short)")
            }
        }
        if verify && sha256(output) != id {
            throw StoreError.corrupt("\(kind) \(id.short) does not hash to its id")
        }
        return output
    }

    /// Reads a metadata object (file, tree or commit), always verified.
    public func readObject(_ id: Digest, kind: ObjectKind) throws -> [UInt8] {
        // Decompression contexts are costly to make (zstd's is 100+ KiB): reuse them.
        var decompressors = spareDecompressors.withLock { $0.popLast() } ?? Decompressors()
        defer { spareDecompressors.withLock { if $0.count < 16 { $0.append(decompressors) } } }
        var scratch: [UInt8] = []
        return try readObject(id, kind: kind, scratch: &scratch, decompressors: &decompressors)
    }

    public func file(_ id: Digest) throws -> FileObject {
        try readObject(id, kind: .file).withUnsafeBytes { try FileObject(decoding: $0, id: id) }
    }

    public func tree(_ id: Digest) throws -> TreeObject {
        try readObject(id, kind: .tree).withUnsafeBytes { try TreeObject(decoding: $0, id: id) }
    }

    public func commit(_ id: Digest) throws -> Commit {
        try readObject(id, kind: .commit).withUnsafeBytes { try Commit(decoding: $0, id: id) }
    }
}

/// One decompressor per codec, made when first needed. One per thread.
struct Decompressors {
    @inline(never)
    private static func copyRaw(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        guard input.count == output.count else { return false }
        if input.count > 0 { output.baseAddress!.copyMemory(from: input.baseAddress!, byteCount: input.count) }
        return true
    }

    private var byCodec: [Codec: Decompressor] = [:]

    mutating func decompress(_ input: UnsafeRawBufferPointer, codec: Codec, into output: UnsafeMutableRawBufferPointer,
                             what: @autoclosure () -> String) throws {
        if codec == Codec.none {
            guard Self.copyRaw(input, into: output) else { throw StoreError.corrupt("\(what()): length mismatch") }
            return
        }
        let decompressor: Decompressor
        if let existing = byCodec[codec] {
            decompressor = existing
        } else {
            decompressor = try Decompressor(codec)
            byCodec[codec] = decompressor
        }
        let written: Int
        do {
            written = try decompressor.decompress(input, into: output)
        } catch {
            throw StoreError.corrupt("\(what()): \(error)")
        }
        guard written == output.count else { throw StoreError.corrupt("\(what()): decompressed to \(written) bytes, expected \(output.count)") }
    }
}


func listDirectory(_ path: String) throws -> [[UInt8]] {
    guard let dir = opendir(path) else { throw FileError(path: path, operation: "opendir", errno: errno) }
    defer { closedir(dir) }
    var names: [[UInt8]] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { Array(String(cString: $0).utf8) }
        }
        if name != [46] && name != [46, 46] { names.append(name) }
    }
    return names.sorted { $0.lexicographicallyPrecedes($1) }
}
