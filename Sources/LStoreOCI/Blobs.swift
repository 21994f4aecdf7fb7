import Crypto
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// An open file, read by position: image directories and archives are only ever read.
final class ReadOnlyFile: @unchecked Sendable {
    let fd: Int32
    let path: String
    let size: Int64

    init(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImportError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw ImportError("\(path): not a regular file")
        }
        self.fd = fd
        self.path = path
        self.size = Int64(st.st_size)
    }

    deinit { close(fd) }

    /// The digest of the whole file, and its size.
    func sha256() throws -> (ImageDigest, Int64) {
        var hash = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let got = try read(into: buffer, at: offset)
            guard got > 0 else { throw ImportError("\(path): ended at \(offset) of its \(size) bytes") }
            hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            offset += Int64(got)
        }
        return (imageDigest(hash), size)
    }

    /// Reads up to `buffer.count` bytes at `offset`, retrying short reads; fewer only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let got = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if got < 0 {
                if errno == EINTR { continue }
                throw ImportError("\(path): read failed: \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            done += got
        }
        return done
    }
}

/// A run of bytes in a file: a whole blob file, or a member of an archive.
struct BlobLocation {
    var file: ReadOnlyFile
    var offset: Int64
    var size: Int64
}

/// Reads one blob from start to end, hashing it as it goes.
final class BlobReader {
    let location: BlobLocation
    private(set) var position: Int64 = 0
    private var hash = SHA256()

    init(_ location: BlobLocation) {
        self.location = location
    }

    /// Fills `buffer` as far as the blob goes; 0 at its end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let wanted = Int(min(Int64(buffer.count), location.size - position))
        guard wanted > 0 else { return 0 }
        let got = try location.file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: location.offset + position)
        guard got == wanted else { throw ImportError("\(location.file.path): ends inside a blob") }
        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
        position += Int64(got)
        return got
    }

    /// The SHA-256 of every byte read so far.
    func digest() -> ImageDigest { imageDigest(hash) }
}

/// The image digest of what `hash` took in.
func imageDigest(_ hash: SHA256) -> ImageDigest {
    ImageDigest(hash.finalize().withUnsafeBytes { LStoreTree.Digest(bytes: $0) })
}

/// Reads a whole small document (at most `maximumDocumentSize` bytes) and checks its digest
/// when one is given.
func readDocument(_ location: BlobLocation, expecting digest: ImageDigest?, display: String) throws -> [UInt8] {
    guard location.size <= maximumDocumentSize else {
        throw ImportError("\(display): \(location.size) bytes, more than the \(maximumDocumentSize >> 20) MiB a JSON document may have")
    }
    var bytes = [UInt8](repeating: 0, count: Int(location.size))
    let reader = BlobReader(location)
    let got = try bytes.withUnsafeMutableBytes { try reader.read(into: $0) }
    guard got == bytes.count else { throw ImportError("\(display): truncated") }
    if let digest, reader.digest() != digest {
        throw ImportError("\(display): its content has digest \(reader.digest().short), not \(digest.short)")
    }
    return bytes
}

/// The members of an uncompressed tar archive by name, read from its headers (ustar, pax and GNU
/// long names): an image archive's members are plain files, read in place.
struct ArchiveMembers {
    /// What a member name holds: data at an offset, or a link to another member.
    enum Member {
        case file(offset: Int64, size: Int64)
        case symlink(target: String)
        case hardlink(target: String)
        case directory
    }

    let file: ReadOnlyFile
    private(set) var members: [String: Member] = [:]

    /// Reads every header of the archive at `path` (not its data); refuses what is not a tar.
    init(_ path: String) throws {
        file = try ReadOnlyFile(path)
        var offset: Int64 = 0
        var longName: String?, longLink: String?
        var paxPath: String?, paxLink: String?, paxSize: Int64?
        var header = [UInt8](repeating: 0, count: 512)
        func refuse(_ why: String) -> ImportError { ImportError("\(path): not an image archive: \(why)") }
        while offset + 512 <= file.size {
            let got = try header.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
            guard got == 512 else { throw refuse("truncated") }
            if header.allSatisfy({ $0 == 0 }) { break }
            guard Self.checksumMatches(header) else { throw refuse("bad header checksum at byte \(offset)") }
            let type = header[156]
            guard var size = Self.number(header[124..<136]), size >= 0 else { throw refuse("bad size at byte \(offset)") }
            if let paxSize, type != UInt8(ascii: "x"), type != UInt8(ascii: "g") {
                guard paxSize >= 0 else { throw refuse("bad size at byte \(offset)") }
                size = paxSize
            }
            let dataOffset = offset + 512
            // Compared so that no sum can overflow: `size` may be anything up to Int64.max.
            guard size <= file.size - dataOffset else { throw refuse("a member runs past the end") }
            offset = dataOffset + (size + 511) / 512 * 512
            guard members.count < 1 << 20 else { throw refuse("more than a million members") }
            func data() throws -> [UInt8] {
                guard size >= 0, size <= 1 << 20 else { throw refuse("an extended header of \(size) bytes") }
                var bytes = [UInt8](repeating: 0, count: Int(size))
                _ = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: dataOffset) }
                return bytes
            }
            switch type {
            case UInt8(ascii: "L"):
                longName = String(decoding: try data().prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "K"):
                longLink = String(decoding: try data().prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "x"):
                for (key, value) in Self.paxRecords(try data()) {
                    switch key {
                    case "path": paxPath = value
                    case "linkpath": paxLink = value
                    case "size": paxSize = Int64(value)
                    default: break
                    }
                }
                continue
            case UInt8(ascii: "g"):
                continue
            default:
                break
            }
            var name = longName ?? paxPath ?? Self.ustarName(header)
            let link = longLink ?? paxLink ?? Self.field(header[157..<257])
            longName = nil; longLink = nil; paxPath = nil; paxLink = nil; paxSize = nil
            name = Self.clean(name)
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): members[name] = .file(offset: dataOffset, size: size)
            case UInt8(ascii: "1"): members[name] = .hardlink(target: Self.clean(link))
            case UInt8(ascii: "2"): members[name] = .symlink(target: link)
            case UInt8(ascii: "5"): members[name] = .directory
            default: break
            }
        }
    }

    /// The file member `name`, following symlinks and hardlinks inside the archive (as `docker
    /// save` links identical layers), or nil.
    func location(of name: String) -> BlobLocation? {
        var name = Self.clean(name)
        for _ in 0..<16 {
            switch members[name] {
            case .file(let offset, let size): return BlobLocation(file: file, offset: offset, size: size)
            case .hardlink(let target): name = target
            case .symlink(let target):
                guard !target.hasPrefix("/") else { return nil }
                var parts = name.split(separator: "/").dropLast().map(String.init)
                for part in target.split(separator: "/") {
                    if part == "." { continue }
                    if part == ".." {
                        guard !parts.isEmpty else { return nil }
                        parts.removeLast()
                    } else {
                        parts.append(String(part))
                    }
                }
                name = parts.joined(separator: "/")
            default: return nil
            }
        }
        return nil
    }

    /// `./a//b/` as `a/b`.
    static func clean(_ name: String) -> String {
        name.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    static func field(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func ustarName(_ header: [UInt8]) -> String {
        let name = field(header[0..<100])
        let magic = field(header[257..<263])
        let prefix = magic.hasPrefix("ustar") ? field(header[345..<500]) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    /// An octal number field, or base-256 when its first byte has the high bit set.
    static func number(_ bytes: ArraySlice<UInt8>) -> Int64? {
        if let first = bytes.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x7f)
            for byte in bytes.dropFirst() {
                guard value < Int64.max >> 8 else { return nil }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        let digits = bytes.filter { $0 != 0 && $0 != UInt8(ascii: " ") }
        if digits.isEmpty { return 0 }
        return Int64(String(decoding: digits, as: UTF8.self), radix: 8)
    }

    static func checksumMatches(_ header: [UInt8]) -> Bool {
        guard let stored = number(header[148..<156]) else { return false }
        var sum: Int64 = 0
        for (i, byte) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int64(byte) }
        return sum == stored
    }

    /// `LENGTH KEY=VALUE\n` records of a pax extended header.
    static func paxRecords(_ bytes: [UInt8]) -> [(String, String)] {
        var records: [(String, String)] = []
        var rest = bytes[...]
        while let space = rest.firstIndex(of: UInt8(ascii: " ")),
              let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
              // The record holds its length, a space, at least its newline, and ends in that newline.
              length > space - rest.startIndex + 1, length <= rest.count,
              rest[rest.startIndex + length - 1] == UInt8(ascii: "\n") {
            let record = rest[(space + 1)..<(rest.startIndex + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                records.append((String(decoding: record[..<equals], as: UTF8.self),
                                String(decoding: record[(equals + 1)...], as: UTF8.self)))
            }
            rest = rest[(rest.startIndex + length)...]
        }
        return records
    }
}

/// Where an image's files are: a directory, or the members of an archive.
enum ImageFiles {
    case directory(String)
    case archive(ArchiveMembers, path: String)

    /// The display name of the image's container (directory or archive path).
    var path: String {
        switch self {
        case .directory(let path), .archive(_, let path): path
        }
    }

    /// The file `name` (relative), or nil when the image has none.
    func location(of name: String) throws -> BlobLocation? {
        switch self {
        case .directory(let directory):
            let path = directory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { return nil }
            guard st.st_mode & S_IFMT == S_IFREG else { throw ImportError("\(path): not a regular file") }
            let file = try ReadOnlyFile(path)
            return BlobLocation(file: file, offset: 0, size: file.size)
        case .archive(let members, _):
            return members.location(of: name)
        }
    }

    /// The blob `digest` of an OCI layout (`blobs/sha256/HEX`), checked to have `size` bytes.
    func blob(_ digest: ImageDigest, size: Int64?, display: String) throws -> BlobLocation {
        guard let location = try location(of: "blobs/sha256/\(digest.digest.hex)") else {
            throw ImportError("\(path): \(display) \(digest.short) is not in the image")
        }
        if let size, location.size != size {
            throw ImportError("\(path): \(display) \(digest.short) has \(location.size) bytes, not the \(size) its descriptor says")
        }
        return location
    }
}
