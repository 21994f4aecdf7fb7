import LStoreTree

/// One difference between two trees.
public struct Change: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case added, removed, changed
    }

    public var kind: Kind
    public var path: [UInt8]
    /// For `changed`: what differs, among `type`, `content`, `size`, `mode`, `owner`, `mtime`,
    /// `xattrs`, `target`, `device`, `hardlink`.
    public var aspects: [String]
}

extension Store {
    /// The differences from tree `old` to tree `new`, in path order. Subtrees with equal ids are
    /// skipped without being read.
    public func diff(_ old: Digest, _ new: Digest) throws -> [Change] {
        var changes: [Change] = []
        try diffTrees(old, new, path: [], into: &changes)
        return changes
    }

    private func diffTrees(_ old: Digest, _ new: Digest, path: [UInt8], into changes: inout [Change]) throws {
        guard old != new else { return }
        let a = try tree(old), b = try tree(new)
        if !path.isEmpty || a.metadata != b.metadata {
            let aspects = Self.aspects(a.metadata, b.metadata)
            if !aspects.isEmpty { changes.append(Change(kind: .changed, path: path.isEmpty ? [UInt8(ascii: "/")] : path, aspects: aspects)) }
        }
        var i = 0, j = 0
        while i < a.entries.count || j < b.entries.count {
            let left = i < a.entries.count ? a.entries[i] : nil
            let right = j < b.entries.count ? b.entries[j] : nil
            if let l = left, right == nil || l.name.lexicographicallyPrecedes(right!.name) {
                try report(.removed, l, under: path, into: &changes)
                i += 1
            } else if let r = right, left == nil || r.name.lexicographicallyPrecedes(left!.name) {
                try report(.added, r, under: path, into: &changes)
                j += 1
            } else {
                let l = left!, r = right!
                let childPath = Self.join(path, l.name)
                switch (l.payload, r.payload) {
                case (.directory(let x), .directory(let y)):
                    try diffTrees(x, y, path: childPath, into: &changes)
                case (.directory, _), (_, .directory):
                    try report(.removed, l, under: path, into: &changes)
                    try report(.added, r, under: path, into: &changes)
                default:
                    let aspects = Self.aspects(l, r)
                    if !aspects.isEmpty { changes.append(Change(kind: .changed, path: childPath, aspects: aspects)) }
                }
                i += 1
                j += 1
            }
        }
    }

    /// Reports an added or removed entry and, for a directory, everything beneath it.
    private func report(_ kind: Change.Kind, _ entry: TreeEntry, under path: [UInt8], into changes: inout [Change]) throws {
        let childPath = Self.join(path, entry.name)
        changes.append(Change(kind: kind, path: childPath, aspects: []))
        if case .directory(let id) = entry.payload {
            for child in try tree(id).entries { try report(kind, child, under: childPath, into: &changes) }
        }
    }

    private static func join(_ path: [UInt8], _ name: [UInt8]) -> [UInt8] {
        path.isEmpty ? name : path + [UInt8(ascii: "/")] + name
    }

    private static func aspects(_ a: Metadata, _ b: Metadata) -> [String] {
        var result: [String] = []
        if a.kind != b.kind { result.append("type") }
        if a.permissions != b.permissions { result.append("mode") }
        if a.uid != b.uid || a.gid != b.gid { result.append("owner") }
        if a.mtime != b.mtime { result.append("mtime") }
        if a.xattrs != b.xattrs { result.append("xattrs") }
        return result
    }

    private static func aspects(_ a: TreeEntry, _ b: TreeEntry) -> [String] {
        var result: [String] = []
        switch (a.payload, b.payload) {
        case (.regular(let sa, let fa), .regular(let sb, let fb)):
            if fa != fb { result.append("content") }
            if sa != sb { result.append("size") }
        case (.symlink(let ta), .symlink(let tb)):
            if ta != tb { result.append("target") }
        case (.device(let ma, let na), .device(let mb, let nb)):
            if ma != mb || na != nb { result.append("device") }
        case (.hardlink(let pa), .hardlink(let pb)):
            return pa == pb && a.metadata.kind == b.metadata.kind ? [] : ["hardlink"]
        case (.hardlink, _), (_, .hardlink):
            return ["hardlink"]
        default:
            break
        }
        return (aspects(a.metadata, b.metadata) + result).sorted { order($0) < order($1) }
    }

    private static func order(_ aspect: String) -> Int {
        ["type", "content", "size", "mode", "owner", "mtime", "xattrs", "target", "device", "hardlink"].firstIndex(of: aspect) ?? 99
    }
}
