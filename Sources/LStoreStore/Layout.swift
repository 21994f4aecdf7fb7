import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where each part of a store lives. See spec/store.md, "Layout".
struct StoreLayout: Sendable {
    let root: String

    var config: String { root + "/config" }
    var refs: String { root + "/refs" }
    var reflog: String { root + "/reflog" }
    var packsDirectory: String { root + "/packs" }
    var tmp: String { root + "/tmp" }
    /// Derived data, not part of the store's content: `gc` removes it.
    var cacheDirectory: String { root + "/cache" }
    var fragmentCache: String { cacheDirectory + "/fragments" }
    var downloads: String { cacheDirectory + "/downloads" }
    var scratch: String { cacheDirectory + "/scratch" }
    /// Shared by every open store (readers and writers) for its whole life, exclusive for gc and repack.
    var storeLock: String { root + "/lock" }
    /// Exclusive while refs are read, compared and replaced.
    var refsLock: String { root + "/refs.lock" }

    func packPath(_ name: String, ext: String) -> String { "\(packsDirectory)/\(name).\(ext)" }

    func temporaryPath(_ prefix: String) -> String {
        "\(tmp)/\(prefix)-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    }
}

/// An advisory lock (`flock`) on a file, released when the value goes away, or when the process
/// dies, however it dies.
final class FileLock: @unchecked Sendable {
    private let fd: Int32
    private let path: String

    init(path: String, exclusive: Bool) throws {
        fd = try systemCall("open", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        self.path = path
        do {
            try relock(exclusive: exclusive)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The lock a reader takes: `path` locked shared. A lock file that this process may not create
    /// or write (a read-only store) is opened for reading; when it is absent there too, there is
    /// no lock to take (nil), and nothing can gc that store meanwhile either.
    static func reader(of path: String) throws -> FileLock? {
        var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 && [EROFS, EACCES, EPERM].contains(errno) {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 && errno == ENOENT { return nil }
        }
        guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        let lock = FileLock(fd: fd, path: path)
        try lock.relock(exclusive: false)
        return lock
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Takes the lock shared or exclusive, waiting for whoever holds it the other way; a lock held
    /// already is converted (released first, as `flock` does, then taken again).
    func relock(exclusive: Bool) throws {
        try systemCall("lock", path: path) { flock(fd, exclusive ? LOCK_EX : LOCK_SH) }
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}

/// The store's settings, written once at `init` (and by `repack`). See spec/store.md, "Config".
public struct StoreConfig: Equatable, Sendable {
    public static let formatVersion = 1
    public var blockSize: Int
    public var compression: CompressionSpec

    public init(blockSize: Int, compression: CompressionSpec) {
        self.blockSize = blockSize
        self.compression = compression
    }

    public static func validate(blockSize: Int) throws {
        guard blockSize.nonzeroBitCount == 1, (4096...(1 << 20)).contains(blockSize) else {
            throw StoreError.invalidArgument("block size \(blockSize) must be a power of two from 4K to 1M")
        }
    }

    func encoded() -> [UInt8] {
        Array("lstore-store \(Self.formatVersion)\nblock-size \(blockSize)\ncompression \(compression)\n".utf8)
    }

    init(decoding text: String) throws {
        var values: [Substring: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { throw StoreError.invalidConfig("line '\(line)'") }
            values[line[..<space]] = line[line.index(after: space)...]
        }
        guard values["lstore-store"] == "\(Self.formatVersion)" else {
            throw StoreError.invalidConfig("unknown format '\(values["lstore-store"] ?? "")'")
        }
        guard let sizeText = values["block-size"], let size = Int(sizeText) else {
            throw StoreError.invalidConfig("no block-size")
        }
        try Self.validate(blockSize: size)
        guard let codecText = values["compression"] else { throw StoreError.invalidConfig("no compression") }
        blockSize = size
        compression = try CompressionSpec(parsing: String(codecText))
    }
}
