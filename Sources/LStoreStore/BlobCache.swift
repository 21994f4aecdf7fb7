import LStoreCompression
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// A file of derived bytes found by a digest: what lstore can compute again from the store but
/// would rather not (compressed squashfs fragment blocks). It lives in the store's `cache/`, is
/// not part of the store's content, and `gc` removes it. See spec/store.md, "Caches".
///
/// The file is append-only: an 8-byte header (`LSBC`, version 1), then entries of
///
///     key (32 bytes) | flags (u8) | 3 zero bytes | length (u32 LE) | bytes | XXH3-64 (u64 LE)
///
/// where the checksum covers everything before it in the entry. Opening walks the entries' headers;
/// a lookup reads its one entry with `pread` (no map: the process holds only what it asked for,
/// however large the file) and an entry whose checksum fails is a miss. Appends are made under an
/// exclusive `flock`, each in one `write`; a torn last entry (a crash) is cut off by the next
/// writer. Nothing here ever fails a command: a cache that cannot be read or written is empty.
public final class BlobCache: @unchecked Sendable {
    static let magic: [UInt8] = Array("LSBC".utf8) + [1, 0, 0, 0]
    static let entryHeader = 40
    static let maximumEntry = 4 << 20
    /// Past this size, nothing more is saved until `gc` removes the file.
    static let maximumFile: UInt64 = 4 << 30

    public let path: String
    private let state = Locked(State())

    private struct State {
        /// The file as it was when the cache was opened, for lookups.
        var reader: Int32 = -1
        var entries: Entries = [:]
        var writer: Int32 = -1
        /// How far the file is known to hold whole entries (ours or another writer's).
        var validEnd: UInt64 = 0
        /// Keys saved since the cache was opened, by any writer.
        var known: Set<Digest> = []
        var full = false
    }

    /// Opens the cache at `path` and walks what is there; a missing file is an empty cache.
    public init(path: String) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        var info = stat()
        guard fstat(fd, &info) == 0, let (entries, end) = Self.scan(fd: fd, size: UInt64(info.st_size), from: 0) else {
            close(fd)
            return
        }
        state.withLock { state in
            state.reader = fd
            state.entries = entries
            state.validEnd = end
        }
    }

    deinit {
        state.withLock { state in
            if state.reader >= 0 { close(state.reader) }
            if state.writer >= 0 { close(state.writer) }
        }
    }

    typealias Entries = [Digest: (offset: UInt64, length: Int, flags: UInt8)]

    /// The entries of the cache file open as `fd`, `size` bytes long, from `start` (0, the file's
    /// start, or the end of an entry) and where the last whole one ends; nil when the file does not
    /// start with the header. Reads only the entries' headers.
    static func scan(fd: Int32, size: UInt64, from start: UInt64) -> (entries: Entries, end: UInt64)? {
        var offset = start
        if offset == 0 {
            var header = [UInt8](repeating: 0, count: magic.count)
            guard size >= UInt64(magic.count), readFully(fd, &header, at: 0), header == magic else { return nil }
            offset = UInt64(magic.count)
        }
        var entries: Entries = [:]
        var header = [UInt8](repeating: 0, count: entryHeader)
        while offset + UInt64(entryHeader + 8) <= size, readFully(fd, &header, at: offset) {
            let length = header.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 36, as: UInt32.self).littleEndian) }
            guard length <= maximumEntry, offset + UInt64(entryHeader + length + 8) <= size else { break }
            let key = header.withUnsafeBytes { Digest(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<32])) }
            entries[key] = (offset, length, header[32])
            offset += UInt64(entryHeader + length + 8)
        }
        return (entries, offset)
    }

    /// Reads `buffer.count` bytes at `offset` of `fd`, all of them or false.
    private static func readFully(_ fd: Int32, _ buffer: inout [UInt8], at offset: UInt64) -> Bool {
        let want = buffer.count
        let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
        return got == want
    }

    /// The bytes and flags saved under `key`, checked against their checksum.
    public func get(_ key: Digest) -> (bytes: [UInt8], flags: UInt8)? {
        guard let (fd, entry) = state.withLock({ state in state.entries[key].map { (state.reader, $0) } }) else { return nil }
        var whole = [UInt8](repeating: 0, count: Self.entryHeader + entry.length + 8)
        guard Self.readFully(fd, &whole, at: entry.offset) else { return nil }
        let good = whole.withUnsafeBytes { raw in
            XXH3.hash64(UnsafeRawBufferPointer(rebasing: raw[..<(Self.entryHeader + entry.length)]))
                == raw.loadUnaligned(fromByteOffset: Self.entryHeader + entry.length, as: UInt64.self).littleEndian
        }
        guard good else { return nil }
        return (Array(whole[Self.entryHeader..<Self.entryHeader + entry.length]), entry.flags)
    }

    /// Appends `bytes` under `key`. Failures are ignored: the cache only saves time.
    public func put(_ key: Digest, bytes: [UInt8], flags: UInt8) {
        guard bytes.count <= Self.maximumEntry else { return }
        var entry = [UInt8]()
        entry.reserveCapacity(Self.entryHeader + bytes.count + 8)
        key.withUnsafeBytes { entry.append(contentsOf: $0) }
        entry += [flags, 0, 0, 0]
        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { entry.append(contentsOf: $0) }
        entry += bytes
        let sum = entry.withUnsafeBytes { XXH3.hash64($0) }
        withUnsafeBytes(of: sum.littleEndian) { entry.append(contentsOf: $0) }
        state.withLock { state in
            guard !state.full else { return }
            if state.writer < 0 {
                let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
                mkdir(directory, 0o755)
                state.writer = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                guard state.writer >= 0 else {
                    state.full = true
                    return
                }
            }
            let fd = state.writer
            guard flock(fd, LOCK_EX) == 0 else { return }
            defer { flock(fd, LOCK_UN) }
            var info = stat()
            guard fstat(fd, &info) == 0 else { return }
            var size = UInt64(info.st_size)
            if size >= Self.maximumFile {
                state.full = true
                return
            }
            if size != state.validEnd || size == 0 {
                // Another writer appended, or a crash left a torn entry: find where whole entries end.
                let (end, added) = Self.validEnd(fd: fd, size: size, from: state.validEnd)
                state.validEnd = end
                state.known.formUnion(added)
                if state.validEnd != size {
                    guard ftruncate(fd, off_t(state.validEnd)) == 0 else { return }
                    size = state.validEnd
                }
                if size == 0 {
                    guard (try? Self.magic.withUnsafeBytes({ try writeAll(fd, $0, at: 0, display: path) })) != nil else { return }
                    size = UInt64(Self.magic.count)
                }
            }
            // Saved already, by this process or by another one since the map was taken.
            guard state.entries[key] == nil, !state.known.contains(key) else { return }
            if (try? entry.withUnsafeBytes({ try writeAll(fd, $0, at: off_t(size), display: path) })) != nil {
                state.validEnd = size + UInt64(entry.count)
                state.known.insert(key)
            } else {
                _ = ftruncate(fd, off_t(size))
                state.validEnd = size
            }
        }
    }

    /// Where whole entries end in the file open as `fd`, walking from `start` (0 or the end of an
    /// entry) up to `size`, and the keys of the entries found.
    private static func validEnd(fd: Int32, size: UInt64, from start: UInt64) -> (end: UInt64, keys: Set<Digest>) {
        guard let (entries, end) = scan(fd: fd, size: size, from: start > size ? 0 : start) else { return (0, []) }
        return (end, Set(entries.keys))
    }
}
