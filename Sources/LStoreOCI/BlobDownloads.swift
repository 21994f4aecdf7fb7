import Crypto
import Foundation
import LStoreHTTP
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Downloads a pull's layer blobs into the store's downloads directory, several at once (one
/// connection each), in the order given, while the import applies the layers below. Each blob
/// arrives in `sha256-HEX.partial`, hashed as it streams and bounded by its descriptor's size; a
/// broken connection resumes with `Range` from the bytes already there (also in a later pull),
/// and only a complete file whose digest matches is renamed to `sha256-HEX`.
final class BlobDownloads: @unchecked Sendable {
    private let session: RegistrySession
    private let directory: String
    private let condition = NSCondition()
    private var pending: [Descriptor]
    private var results: [ImageDigest: Result<String, Error>] = [:]
    private var stopped = false
    private var running = 0
    private let fetched = Atomic<UInt64>(0)

    /// Bytes that came over the network (a resumed blob counts only what was missing).
    var bytesFetched: UInt64 { fetched.load(ordering: .relaxed) }

    init(session: RegistrySession, directory: String, blobs: [Descriptor]) {
        self.session = session
        self.directory = directory
        var seen: Set<ImageDigest> = []
        pending = blobs.filter { seen.insert($0.digest).inserted }
    }

    /// Starts the workers: as many as the options' connections, fewer for fewer blobs.
    func start() throws {
        if !pending.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw RegistryError("\(directory): cannot make it: \(error.localizedDescription)")
            }
        }
        let count = min(session.options.connections, pending.count)
        for _ in 0..<count {
            let connection = try RegistryConnection(session: session)
            condition.lock()
            running += 1
            condition.unlock()
            let thread = Thread { [self] in work(connection) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func work(_ connection: RegistryConnection) {
        while true {
            condition.lock()
            guard !stopped, !pending.isEmpty else {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let descriptor = pending.removeFirst()
            condition.unlock()
            let result = Result { try download(descriptor, connection: connection) }
            condition.lock()
            results[descriptor.digest] = result
            if case .failure = result { stopped = true }
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The file of blob `digest` once it is complete; the download's error if it failed.
    func wait(_ digest: ImageDigest) throws -> String {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let result = results[digest] { return try result.get() }
            if stopped, let failure = results.values.first(where: { if case .failure = $0 { true } else { false } }) {
                _ = try failure.get()
            }
            if running == 0 { throw RegistryError("\(session.display): blob \(digest.short) was not downloaded") }
            condition.wait()
        }
    }

    /// Stops starting downloads and waits for the running ones to end.
    func stop() {
        condition.lock()
        stopped = true
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    /// Removes the complete files (their content is in the store now).
    func removeFiles() {
        condition.lock()
        let paths = results.values.compactMap { try? $0.get() }
        condition.unlock()
        for path in paths { unlink(path) }
    }

    /// Fetches one blob into the directory, resuming a partial file, and returns its path.
    private func download(_ descriptor: Descriptor, connection: RegistryConnection) throws -> String {
        let display = "\(session.display): blob \(descriptor.digest.short)"
        let final = "\(directory)/sha256-\(descriptor.digest.digest.hex)"
        let partial = final + ".partial"
        let fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RegistryError("\(partial): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // Another pull of the same blob waits here, then finds it complete.
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw RegistryError("\(partial): cannot lock: \(String(cString: strerror(errno)))") }
        }
        if let size = fileSize(final), size == descriptor.size, (try? ReadOnlyFile(final).sha256().0) == descriptor.digest {
            unlink(partial)
            return final
        }
        var hash = SHA256()
        var have = Int64(0)
        var fromDisk = false
        if let size = fileSize(partial), size > 0, size <= descriptor.size {
            hash = try hashPrefix(fd, count: size, path: partial)
            have = size
            fromDisk = true
        } else {
            guard ftruncate(fd, 0) == 0 else { throw RegistryError("\(partial): cannot truncate: \(String(cString: strerror(errno)))") }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { buffer.deallocate() }
        var attempt = 0
        func restart() throws {
            guard ftruncate(fd, 0) == 0 else { throw RegistryError("\(partial): cannot truncate: \(String(cString: strerror(errno)))") }
            have = 0
            hash = SHA256()
        }
        while true {
            attempt += 1
            var headers = HTTPHeaders()
            if have > 0 { headers.set("Range", "bytes=\(have)-") }
            if have < descriptor.size || descriptor.size == 0 {
                let (exchange, response) = try connection.send("GET", try connection.url("blobs/\(descriptor.digest)"), headers: headers)
                defer { exchange.cancel() }
                switch response.status {
                case 200:
                    if have > 0 { try restart() }
                case 206 where have > 0:
                    let range = response.headers["Content-Range"] ?? ""
                    guard range.hasPrefix("bytes \(have)-") else {
                        throw RegistryError("\(display): asked for bytes from \(have), got the range '\(range.prefix(80))'")
                    }
                default:
                    throw connection.unexpected(exchange, response, "blob \(descriptor.digest.short)")
                }
                if let length = response.headers["Content-Length"].flatMap({ Int64($0) }), length != descriptor.size - have {
                    throw RegistryError("\(display): the registry sends \(length) bytes where \(descriptor.size - have) of its \(descriptor.size) remain")
                }
                do {
                    while true {
                        let count = try exchange.read(into: buffer)
                        if count == 0 { break }
                        guard have + Int64(count) <= descriptor.size else {
                            throw RegistryError("\(display): more bytes than the \(descriptor.size) its descriptor gives")
                        }
                        try writeAll(fd, UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: have, path: partial)
                        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                        have += Int64(count)
                        fetched.add(UInt64(count), ordering: .relaxed)
                    }
                } catch let error as HTTPError where RegistryConnection.isTransient(error) && attempt < session.options.attempts {
                    // What arrived stays; the next request asks for the rest.
                    usleep(useconds_t(250_000 * min(attempt, 8)))
                    continue
                } catch let error as HTTPError {
                    throw RegistryError("\(display): \(error.message)")
                }
            }
            guard have == descriptor.size else {
                throw RegistryError("\(display): ended after \(have) of its \(descriptor.size) bytes")
            }
            let actual = imageDigest(hash)
            if actual != descriptor.digest {
                if fromDisk {
                    // A partial file from an earlier pull was not a prefix of this blob: start over once.
                    fromDisk = false
                    try restart()
                    continue
                }
                try restart()
                throw RegistryError("\(display): its content has digest \(actual.short), not \(descriptor.digest.short)")
            }
            guard rename(partial, final) == 0 else { throw RegistryError("\(final): cannot rename: \(String(cString: strerror(errno)))") }
            return final
        }
    }

    private func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(st.st_size)
    }

    private func hashPrefix(_ fd: Int32, count: Int64, path: String) throws -> SHA256 {
        var hash = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < count {
            let got = pread(fd, buffer.baseAddress!, Int(min(Int64(buffer.count), count - done)), off_t(done))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw RegistryError("\(path): cannot read: \(String(cString: strerror(errno)))") }
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            done += Int64(got)
        }
        return hash
    }

}

/// Writes all of `bytes` at `offset` of `fd`.
private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
    var done = 0
    while done < bytes.count {
        let wrote = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
        if wrote < 0 {
            if errno == EINTR { continue }
            throw RegistryError("\(path): cannot write: \(String(cString: strerror(errno)))")
        }
        done += wrote
    }
}
