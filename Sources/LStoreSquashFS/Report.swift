import LStoreTree

/// What a tree held that SquashFS cannot, and what the writer did instead: one finding per kind,
/// with how often it happened and the first path (in the image's inode order) where it did.
public struct SquashFSReport: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable, Comparable {
        /// An xattr outside `user.`, `trusted.` and `security.` (POSIX ACLs are `system.posix_acl_*`):
        /// left out. Counted per xattr.
        case xattrNamespace
        /// An mtime with nanoseconds: truncated to whole seconds. Counted per inode.
        case subsecondMtime
        /// An mtime before 1970: clamped to 0 (1970-01-01). Counted per inode.
        case mtimeBefore1970
        /// An mtime after 2106-02-07 06:28:15: clamped to 2^32 - 1. Counted per inode.
        case mtimeAfter2106
        /// A device number whose major exceeds 4095 or minor 1048575: its high bits are lost.
        case deviceNumber

        public static func < (lhs: Kind, rhs: Kind) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }

        /// What happened, as a sentence fragment after the count.
        var explanation: String {
            switch self {
            case .xattrNamespace: "xattr(s) outside user., trusted. and security. left out"
            case .subsecondMtime: "mtime(s) with nanoseconds truncated to whole seconds"
            case .mtimeBefore1970: "mtime(s) before 1970 clamped to 0"
            case .mtimeAfter2106: "mtime(s) after 2106 clamped to 4294967295"
            case .deviceNumber: "device number(s) beyond major 4095 / minor 1048575 truncated"
            }
        }
    }

    public struct Finding: Sendable, Equatable {
        public var count: Int
        /// The first entry affected: its path relative to the root (empty for the root).
        public var example: [UInt8]
        /// What exactly, for the example: the xattr name, the mtime.
        public var detail: String
    }

    public private(set) var findings: [Kind: Finding] = [:]

    public init() {}

    public var isEmpty: Bool { findings.isEmpty }

    public subscript(kind: Kind) -> Finding? { findings[kind] }

    mutating func note(_ kind: Kind, path: [UInt8], detail: @autoclosure () -> String) {
        if findings[kind] == nil {
            findings[kind] = Finding(count: 1, example: path, detail: detail())
        } else {
            findings[kind]!.count += 1
        }
    }

    /// One line per kind: `3 xattr(s) outside user., trusted. and security. left out (e.g. /a: system.posix_acl_access)`.
    public var description: String {
        findings.keys.sorted().map { kind in
            let finding = findings[kind]!
            return "\(finding.count) \(kind.explanation) (e.g. /\(finding.example.printable): \(finding.detail))"
        }.joined(separator: "\n")
    }
}
