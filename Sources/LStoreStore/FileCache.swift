import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What an earlier commit of a directory learnt: for each regular file, its `stat` stamp and the
/// file object holding its data. A file whose stamp is unchanged is not read again, as git's index
/// and restic's parent snapshot spare re-reading. One per store and source directory, kept outside
/// the store as borg and restic keep theirs (`$LSTORE_CACHE`, else `$XDG_CACHE_HOME/lstore`, else
/// `~/.cache/lstore`); not part of the object model: deleting it only makes the next commit read
/// everything, and a file object it names is used only if the store still has it.
public struct FileCache: Sendable {
    public struct Entry: Sendable {
        public var stamp: FileStamp
        public var file: Digest
    }

    static let magic: [UInt8] = Array("LSFC".utf8)
    static let version: UInt32 = 1

    /// By absolute source path.
    public private(set) var entries: [[UInt8]: Entry] = [:]

    public var isEmpty: Bool { entries.isEmpty }

    public init() {}

    /// The cache of the directory `source` in `store`, empty when there is none or it is unreadable.
    public static func load(for source: String, in store: Store) -> FileCache {
        var cache = FileCache()
        guard let bytes = try? readSmallFile(store.fileCachePath(for: source), limit: 1 << 30) else { return cache }
        bytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw, what: "file cache")
            guard let head = try? reader.take(4), Array(head) == Self.magic, (try? reader.u32()) == version,
                  let count = try? reader.u32() else { return }
            for _ in 0..<count {
                guard let length = try? reader.u16(), let path = try? reader.array(Int(length)),
                      let device = try? reader.u64(), let inode = try? reader.u64(), let size = try? reader.u64(),
                      let mtimeSeconds = try? reader.i64(), let mtimeNanoseconds = try? reader.u32(),
                      let ctimeSeconds = try? reader.i64(), let ctimeNanoseconds = try? reader.u32(),
                      let file = try? reader.digest(),
                      mtimeNanoseconds < 1_000_000_000, ctimeNanoseconds < 1_000_000_000 else { return }
                let stamp = FileStamp(device: device, inode: inode, size: size,
                                      mtime: Timestamp(seconds: mtimeSeconds, nanoseconds: mtimeNanoseconds),
                                      ctime: Timestamp(seconds: ctimeSeconds, nanoseconds: ctimeNanoseconds))
                cache.entries[path] = Entry(stamp: stamp, file: file)
            }
        }
        return cache
    }

    /// The file object of an unchanged file.
    public func lookup(_ file: RegularFile) -> Digest? {
        guard let path = file.sourcePath, let stamp = file.stamp, let entry = entries[path], entry.stamp == stamp else {
            return nil
        }
        return entry.file
    }

    /// Replaces the cache of `source` in `store` with every ingested file of a scan, but those
    /// changed less than two seconds before `since`: a file written in the same clock tick as it
    /// was read could change again unseen. Written to a temporary name and renamed.
    public static func save(_ files: [Node], since: Timestamp, for source: String, in store: Store) throws {
        var out = ByteWriter(capacity: 16 + files.count * 140)
        out.append(Self.magic)
        out.u32(Self.version)
        out.u32(0)  // the count, filled in below
        var count: UInt32 = 0
        for node in files {
            guard case .regular(let file) = node.content, let path = file.sourcePath, let stamp = file.stamp,
                  let content = file.content, stamp.ctime.seconds < since.seconds - 2 else { continue }
            out.u16(UInt16(path.count))
            out.append(path)
            out.u64(stamp.device)
            out.u64(stamp.inode)
            out.u64(stamp.size)
            out.i64(stamp.mtime.seconds)
            out.u32(stamp.mtime.nanoseconds)
            out.i64(stamp.ctime.seconds)
            out.u32(stamp.ctime.nanoseconds)
            out.digest(content)
            count += 1
        }
        withUnsafeBytes(of: count.littleEndian) { out.bytes.replaceSubrange(8..<12, with: $0) }
        let path = store.fileCachePath(for: source)
        var directory = ""
        for component in FileCache.directory.split(separator: "/") {
            directory += "/" + component
            if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw FileError(path: directory, operation: "mkdir", errno: errno) }
        }
        // Not fsynced: losing it costs a slower commit, nothing more.
        try writeFileAtomically(out.bytes, to: path, mode: 0o600, durable: false)
    }

    /// Where caches live: `$LSTORE_CACHE`, `$XDG_CACHE_HOME/lstore` or `~/.cache/lstore`.
    static var directory: String {
        func environment(_ name: String) -> String? {
            getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        if let path = environment("LSTORE_CACHE") { return path }
        if let path = environment("XDG_CACHE_HOME") { return path + "/lstore" }
        return (environment("HOME") ?? "/tmp") + "/.cache/lstore"
    }
}

extension Store {
    /// One cache per store and source directory.
    func fileCachePath(for source: String) -> String {
        var storePath = path
        if let resolved = realpath(path, nil) {
            storePath = String(cString: resolved)
            free(resolved)
        }
        return "\(FileCache.directory)/files-\(sha256(Array((storePath + "\u{0}" + source).utf8)).hex.prefix(32))"
    }
}
