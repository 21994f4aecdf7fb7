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
/// where the checksum covers everything before it in the entry. Reading is from a map of the file
/// taken when the cache is opened; an entry whose checksum fails is a miss. Appends are made under
/// an exclusive `flock`, each in one `write`; a torn last entry (a crash) is cut off by the next
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
        var map: UnsafeRawBufferPointer?
        var entries: [Digest: (offset: Int, length: Int, flags: UInt8)] = [:]
        var writer: Int32 = -1
        /// How far the file is known to hold whole entries (ours or another writer's).
        var validEnd: UInt64 = 0
        /// Keys saved since the map was taken, by any writer.
        var known: Set<Digest> = []
        var full = false
    }

    /// Opens the cache at `path`, mapping what is there; a missing file is an empty cache.
    public init(path: String) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size >= Self.magic.count,
              let mapped = mmap(nil, Int(info.st_size), PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { return }
        let map = UnsafeRawBufferPointer(start: mapped, count: Int(info.st_size))
        state.withLock { state in
            state.map = map
            let (entries, end) = Self.scan(map)
            state.entries = entries
            state.validEnd = UInt64(end)
        }
    }

    deinit {
        state.withLock { state in
            if let map = state.map { munmap(UnsafeMutableRawPointer(mutating: map.baseAddress), map.count) }
            if state.writer >= 0 { close(state.writer) }
        }
    }

    typealias Entries = [Digest: (offset: Int, length: Int, flags: UInt8)]

    /// The entries of `bytes`, a whole cache file, and where the last whole entry ends.
    static func scan(_ bytes: UnsafeRawBufferPointer) -> (entries: Entries, end: Int) {
        guard bytes.count >= magic.count, bytes.prefix(magic.count).elementsEqual(magic) else { return ([:], 0) }
        return walk(bytes, from: magic.count)
    }

    /// The entries of `bytes` from `start`, the start of an entry, and where the last whole one ends.
    static func walk(_ bytes: UnsafeRawBufferPointer, from start: Int) -> (entries: Entries, end: Int) {
        var entries: Entries = [:]
        var offset = start
        while offset + entryHeader + 8 <= bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 36, as: UInt32.self).littleEndian)
            guard length <= maximumEntry, offset + entryHeader + length + 8 <= bytes.count else { break }
            let key = Digest(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 32]))
            entries[key] = (offset, length, bytes[offset + 32])
            offset += entryHeader + length + 8
        }
        return (entries, offset)
    }

    /// The bytes and flags saved under `key`, checked against their checksum.
    public func get(_ key: Digest) -> (bytes: [UInt8], flags: UInt8)? {
        state.withLock { state in
            guard let map = state.map, let entry = state.entries[key] else { return nil }
            let whole = UnsafeRawBufferPointer(rebasing: map[entry.offset..<entry.offset + Self.entryHeader + entry.length])
            let sum = map.loadUnaligned(fromByteOffset: entry.offset + Self.entryHeader + entry.length, as: UInt64.self)
            guard XXH3.hash64(whole) == sum.littleEndian else { return nil }
            let start = entry.offset + Self.entryHeader
            return (Array(map[start..<start + entry.length]), entry.flags)
        }
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
                    guard pwrite(fd, Self.magic, Self.magic.count, 0) == Self.magic.count else { return }
                    size = UInt64(Self.magic.count)
                }
            }
            // Saved already, by this process or by another one since the map was taken.
            guard state.entries[key] == nil, !state.known.contains(key) else { return }
            let written = entry.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(size)) }
            if written == entry.count {
                state.validEnd = size + UInt64(entry.count)
                state.known.insert(key)
            } else {
                _ = ftruncate(fd, off_t(size))
                state.validEnd = size
            }
        }
    }

    /// Where whole entries end in the file open as `fd`, reading from `start` (0 or the end of an
    /// entry) up to `size`, and the keys of the entries found.
    private static func validEnd(fd: Int32, size: UInt64, from start: UInt64) -> (end: UInt64, keys: Set<Digest>) {
        guard size > 0 else { return (0, []) }
        let from = start > size ? 0 : start
        let length = Int(size - from)
        var bytes = [UInt8](repeating: 0, count: length)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(from)) }
        guard got == length else { return (0, []) }
        return bytes.withUnsafeBytes { raw in
            let (entries, end) = from == 0 ? scan(raw) : walk(raw, from: 0)
            return (from + UInt64(end), Set(entries.keys))
        }
    }
}
