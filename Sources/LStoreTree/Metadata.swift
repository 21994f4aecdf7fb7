/// The seven kinds of entry a Linux root filesystem holds.
public enum EntryKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case regular = 1
    case directory = 2
    case symlink = 3
    case characterDevice = 4
    case blockDevice = 5
    case fifo = 6
    case socket = 7

    public var description: String {
        switch self {
        case .regular: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .characterDevice: "character device"
        case .blockDevice: "block device"
        case .fifo: "fifo"
        case .socket: "socket"
        }
    }

    /// The `S_IFMT` bits of this kind.
    public var formatBits: UInt32 {
        switch self {
        case .regular: 0o100000
        case .directory: 0o040000
        case .symlink: 0o120000
        case .characterDevice: 0o020000
        case .blockDevice: 0o060000
        case .fifo: 0o010000
        case .socket: 0o140000
        }
    }

    public init?(formatBits: UInt32) {
        switch formatBits & 0o170000 {
        case 0o100000: self = .regular
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        case 0o010000: self = .fifo
        case 0o140000: self = .socket
        default: return nil
        }
    }
}

/// A modification time with nanoseconds, as `struct timespec` holds it.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        precondition(nanoseconds < 1_000_000_000, "nanoseconds out of range")
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }

    public var description: String {
        var ns = String(nanoseconds)
        ns = String(repeating: "0", count: 9 - ns.count) + ns
        return "\(seconds).\(ns)"
    }
}

/// One extended attribute: a name such as `user.comment` or `security.capability`, and its value.
/// Both are bytes.
public struct Xattr: Hashable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: [UInt8]) {
        self.init(name: Array(name.utf8), value: value)
    }

    /// The namespace before the first dot: `user`, `trusted`, `security`, `system`.
    public var namespace: Substring {
        String(decoding: name, as: UTF8.self).split(separator: ".", maxSplits: 1).first ?? ""
    }
}

/// What every entry carries besides its content.
public struct Metadata: Hashable, Sendable {
    public var kind: EntryKind
    /// The low twelve mode bits: permissions plus setuid, setgid and sticky.
    public var permissions: UInt16
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    /// Sorted by name bytes (kept so on every change), names unique.
    public var xattrs: [Xattr] {
        didSet {
            if !xattrs.isSorted { xattrs.sort { $0.name.lexicographicallyPrecedes($1.name) } }
        }
    }

    public init(kind: EntryKind, permissions: UInt16, uid: UInt32 = 0, gid: UInt32 = 0,
                mtime: Timestamp = Timestamp(seconds: 0), xattrs: [Xattr] = []) {
        self.kind = kind
        self.permissions = permissions & 0o7777
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.xattrs = xattrs.isSorted ? xattrs : xattrs.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    /// `st_mode`: the kind's format bits and the permissions.
    public var mode: UInt32 { kind.formatBits | UInt32(permissions) }
}

/// Limits of what a Linux root filesystem holds, checked wherever entries come from outside.
public enum Limits {
    /// `NAME_MAX`.
    public static let nameLength = 255
    /// Symlink targets: `PATH_MAX` less the terminating zero.
    public static let symlinkTargetLength = 4095
    /// `XATTR_NAME_MAX`.
    public static let xattrNameLength = 255
    /// `XATTR_SIZE_MAX`.
    public static let xattrValueLength = 65536
    /// Total path length accepted for a hardlink target inside a tree.
    public static let pathLength = 4095
}

extension [Xattr] {
    var isSorted: Bool {
        zip(self, dropFirst()).allSatisfy { $0.name.lexicographicallyPrecedes($1.name) }
    }
}
