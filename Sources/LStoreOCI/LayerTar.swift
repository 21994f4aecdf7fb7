import LStoreTree

/// Writes tar archives whose bytes depend only on what is written (spec/oci.md §7.1): ustar
/// headers, and a PAX extended header before an entry only when a field does not fit ustar.
///
/// - Names go in the 100-byte `name` field alone (the `prefix` field stays empty); a longer name,
///   or a link name over 100 bytes, goes in a PAX `path` / `linkpath` record.
/// - Numbers are octal, zero-padded, NUL-terminated; a size of 8 GiB or more, a uid or gid over
///   2097151 and an mtime outside 0...8^11 − 1 go in PAX records (`size`, `uid`, `gid`, `mtime`)
///   and the field holds 0. An mtime with nanoseconds is a PAX `mtime` of 9 fraction digits.
///   Device numbers over 2097151 are written base-256, as GNU tar and Go read them.
/// - `uname` and `gname` are empty; no atime or ctime is written.
/// - Every xattr is a PAX record `SCHILY.xattr.NAME` with the raw value (POSIX ACLs included,
///   as the `system.posix_acl_*` xattrs they are).
/// - PAX records are sorted by key bytes; the PAX header's own name is `PaxHeaders/` and the
///   first 89 bytes of the entry's last name component (`.` for the root), mode 0644, owner 0:0,
///   time 0. `hdrcharset=BINARY` is added when a path or link path is not UTF-8.
/// - The archive ends with two zero blocks and nothing more.
///
/// Output goes to `sink` in pieces; what the sink is given is never kept.
final class TarStreamWriter {
    /// A tar entry's type flag.
    enum EntryType: UInt8 {
        case regular = 0x30, hardlink = 0x31, symlink = 0x32, characterDevice = 0x33, blockDevice = 0x34
        case directory = 0x35, fifo = 0x36
    }

    /// What one entry says besides its data.
    struct Header {
        var path: [UInt8]
        var type: EntryType
        var permissions: UInt16 = 0o644
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        var mtime = Timestamp(seconds: 0)
        var size: UInt64 = 0
        var linkName: [UInt8] = []
        var deviceMajor: UInt32 = 0
        var deviceMinor: UInt32 = 0
        var xattrs: [Xattr] = []
    }

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 18
    /// Bytes handed to the sink or buffered so far.
    private(set) var offset: UInt64 = 0

    init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.sink = sink
        buffer.reserveCapacity(bufferLimit + 1024)
    }

    /// Writes the header of one entry (and its PAX header when needed). A regular file's data
    /// follows through `writeData`, then `endData`.
    func writeHeader(_ header: Header) throws {
        var records: [(key: [UInt8], value: [UInt8])] = []
        let maxOctal7: UInt64 = 0o7777777
        var name = header.path
        if name.count > 100 {
            records.append((Array("path".utf8), name))
            name = Array(name.prefix(100))
        }
        var link = header.linkName
        if link.count > 100 {
            records.append((Array("linkpath".utf8), link))
            link = Array(link.prefix(100))
        }
        if String(validating: header.path, as: UTF8.self) == nil || String(validating: header.linkName, as: UTF8.self) == nil,
           !records.isEmpty {
            records.append((Array("hdrcharset".utf8), Array("BINARY".utf8)))
        }
        var size = header.size
        if size > 0o77777777777 {
            records.append((Array("size".utf8), Array(String(size).utf8)))
            size = 0
        }
        var uid = UInt64(header.uid), gid = UInt64(header.gid)
        if uid > maxOctal7 {
            records.append((Array("uid".utf8), Array(String(uid).utf8)))
            uid = 0
        }
        if gid > maxOctal7 {
            records.append((Array("gid".utf8), Array(String(gid).utf8)))
            gid = 0
        }
        var mtime: UInt64 = 0
        let time = header.mtime
        if time.nanoseconds != 0 || time.seconds < 0 || time.seconds > 0o77777777777 {
            records.append((Array("mtime".utf8), Array(Self.paxTime(time).utf8)))
        } else {
            mtime = UInt64(time.seconds)
        }
        for xattr in header.xattrs {
            records.append((Array("SCHILY.xattr.".utf8) + xattr.name, xattr.value))
        }
        if !records.isEmpty {
            records.sort { $0.key.lexicographicallyPrecedes($1.key) }
            var data: [UInt8] = []
            for record in records { data += Self.paxRecord(key: record.key, value: record.value) }
            let component = header.path.split(separator: UInt8(ascii: "/")).last.map(Array.init) ?? Array(".".utf8)
            let paxName = Array("PaxHeaders/".utf8) + component.prefix(89)
            append(Self.block(name: paxName, type: 0x78, permissions: 0o644, uid: 0, gid: 0, size: UInt64(data.count),
                              mtime: 0, link: [], major: 0, minor: 0))
            append(data)
            pad(UInt64(data.count))
        }
        append(Self.block(name: name, type: header.type.rawValue, permissions: header.permissions, uid: uid, gid: gid,
                          size: size, mtime: mtime, link: link, major: header.deviceMajor, minor: header.deviceMinor))
    }

    /// Appends a regular file's data.
    func writeData(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > bufferLimit {
            try flush()
            if bytes.count >= bufferLimit {
                try sink(bytes)
                offset += UInt64(bytes.count)
                return
            }
        }
        buffer.append(contentsOf: bytes)
        offset += UInt64(bytes.count)
        if buffer.count >= bufferLimit { try flush() }
    }

    /// Pads the data of a `size`-byte file to its 512-byte block.
    func endData(size: UInt64) throws {
        pad(size)
        if buffer.count >= bufferLimit { try flush() }
    }

    /// Writes the two zero blocks that end an archive, and flushes.
    func finish() throws {
        append([UInt8](repeating: 0, count: 1024))
        try flush()
    }

    /// Hands the buffered bytes to the sink.
    func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try sink($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        offset += UInt64(bytes.count)
    }

    private func pad(_ size: UInt64) {
        let rest = Int(size % 512)
        if rest != 0 { append([UInt8](repeating: 0, count: 512 - rest)) }
    }

    /// A PAX time: seconds, and when there is a fraction, a point and 9 digits; a time before 1970
    /// as its signed decimal value (-0.5 s is `-0.500000000`).
    static func paxTime(_ time: Timestamp) -> String {
        guard time.nanoseconds != 0 else { return String(time.seconds) }
        if time.seconds < 0 {
            let fraction = String(1_000_000_000 - time.nanoseconds)
            return "-" + String(-(time.seconds + 1)) + "." + String(repeating: "0", count: 9 - fraction.count) + fraction
        }
        let fraction = String(time.nanoseconds)
        return String(time.seconds) + "." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }

    /// `LENGTH KEY=VALUE\n`, LENGTH counting the whole record, its own digits too.
    static func paxRecord(key: [UInt8], value: [UInt8]) -> [UInt8] {
        let body = key.count + value.count + 3  // space, '=', newline
        var length = body + String(body).utf8.count
        if String(length).utf8.count != String(body).utf8.count { length = body + String(length).utf8.count }
        return Array(String(length).utf8) + [UInt8(ascii: " ")] + key + [UInt8(ascii: "=")] + value + [UInt8(ascii: "\n")]
    }

    /// One 512-byte ustar header block.
    static func block(name: [UInt8], type: UInt8, permissions: UInt16, uid: UInt64, gid: UInt64, size: UInt64, mtime: UInt64,
                      link: [UInt8], major: UInt32, minor: UInt32) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at start: Int) {
            for (index, byte) in bytes.enumerated() { block[start + index] = byte }
        }
        func octal(_ value: UInt64, at start: Int, width: Int) {
            if value >= UInt64(1) << (3 * (width - 1)) {
                // Base-256: the high bit of the first byte set, the number big-endian in the rest.
                var rest = value
                for index in stride(from: width - 1, through: 1, by: -1) {
                    block[start + index] = UInt8(truncatingIfNeeded: rest)
                    rest >>= 8
                }
                block[start] = 0x80
                return
            }
            let digits = Array(String(value, radix: 8).utf8)
            put([UInt8](repeating: UInt8(ascii: "0"), count: width - 1 - digits.count) + digits, at: start)
        }
        put(name, at: 0)
        octal(UInt64(permissions & 0o7777), at: 100, width: 8)
        octal(uid, at: 108, width: 8)
        octal(gid, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(mtime, at: 136, width: 12)
        block[156] = type
        put(link, at: 157)
        put(Array("ustar".utf8) + [0] + Array("00".utf8), at: 257)
        octal(UInt64(major), at: 329, width: 8)
        octal(UInt64(minor), at: 337, width: 8)
        put([UInt8](repeating: UInt8(ascii: " "), count: 8), at: 148)
        let sum = block.reduce(0) { $0 + Int($1) }
        let digits = Array(String(sum, radix: 8).utf8)
        put([UInt8](repeating: UInt8(ascii: "0"), count: 6 - digits.count) + digits + [0, UInt8(ascii: " ")], at: 148)
        return block
    }
}
