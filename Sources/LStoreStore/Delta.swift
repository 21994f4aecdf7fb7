import LStoreTree

/// The overlayfs form of a child tree over its base: the tree that, mounted as an upper layer over
/// the base (`overlay lowerdir=delta:base`), shows exactly the child.
///
/// It holds what the child added or changed, the directories on the way to them (with the child's
/// metadata), a whiteout (a character device 0/0) for each entry the child deleted, and, for a
/// directory that replaced something else or kept nothing of the base's directory, the child's
/// whole directory marked opaque (`trusted.overlay.opaque=y`), so nothing below shows through.
/// Hardlink sets are kept whole: when one member changed, every member is in the delta, so the set
/// still shares one inode. Both trees must be in the store's form (sorted, hardlinks normalized)
/// and carry file object ids, as `Store.loadTree` gives them.
public struct OverlayDelta {
    /// The whiteout overlayfs recognises: a character device with device number 0/0.
    public static let whiteout = Content.device(major: 0, minor: 0)
    /// The extended attribute overlayfs reads on a directory that hides the layers below it.
    public static let opaque = Xattr("trusted.overlay.opaque", Array("y".utf8))

    /// The delta tree: its root is always there, with the child's root metadata.
    public let root: Node

    public init(base: Node, child: Node) {
        root = Node(name: [], metadata: child.metadata, content: .directory(Directory()))
        if let baseDirectory = base.directory, let childDirectory = child.directory {
            merge(baseDirectory, childDirectory, into: root.directory!)
        }
        includeHardlinkSets(of: child)
        root.sortAll()
    }

    /// Whether two entries of the same name are the same file: metadata and content alike.
    static func same(_ a: Node, _ b: Node) -> Bool {
        guard a.metadata == b.metadata else { return false }
        switch (a.content, b.content) {
        case (.regular(let x), .regular(let y)): return x.size == y.size && x.content == y.content
        case (.symlink(let x), .symlink(let y)): return x == y
        case (.device(let m, let n), .device(let p, let q)): return m == p && n == q
        case (.none, .none): return true
        case (.hardlink(let x), .hardlink(let y)): return x == y
        default: return false
        }
    }

    private func merge(_ base: Directory, _ child: Directory, into out: Directory) {
        let baseByName = Dictionary(base.children.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        let childByName = Dictionary(child.children.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        for entry in child.children {
            guard let old = baseByName[entry.name] else {
                out.upsert(copy(entry))
                continue
            }
            switch (old.directory, entry.directory) {
            case (let oldDirectory?, let newDirectory?):
                // A directory that keeps nothing of the base's (no entry the same, no directory to
                // merge) replaced it: the child's whole directory, opaque, instead of a whiteout each.
                let newByName = Dictionary(newDirectory.children.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
                let keeps = oldDirectory.children.contains { old in
                    guard let new = newByName[old.name] else { return false }
                    return (old.directory != nil && new.directory != nil) || Self.same(old, new)
                }
                if !keeps && !oldDirectory.children.isEmpty {
                    out.upsert(opaqueCopy(entry))
                    continue
                }
                let sub = Directory()
                merge(oldDirectory, newDirectory, into: sub)
                if !sub.children.isEmpty || old.metadata != entry.metadata {
                    out.upsert(Node(name: entry.name, metadata: entry.metadata, content: .directory(sub)))
                }
            case (nil, _?):
                out.upsert(opaqueCopy(entry))
            default:
                if !Self.same(old, entry) { out.upsert(copy(entry)) }
            }
        }
        for old in base.children where childByName[old.name] == nil {
            out.upsert(Node(name: old.name, metadata: Metadata(kind: .characterDevice, permissions: 0),
                            content: Self.whiteout))
        }
    }

    /// `entry` and, for a directory, everything below it, as new nodes.
    private func copy(_ entry: Node) -> Node {
        guard let directory = entry.directory else { return Node(name: entry.name, metadata: entry.metadata, content: entry.content) }
        return Node(name: entry.name, metadata: entry.metadata, content: .directory(Directory(children: directory.children.map(copy))))
    }

    /// `entry`'s whole directory, marked opaque: nothing of the base shows through it.
    private func opaqueCopy(_ entry: Node) -> Node {
        let node = copy(entry)
        node.metadata.xattrs.removeAll { $0.name == Self.opaque.name }
        node.metadata.xattrs.append(Self.opaque)
        return node
    }

    /// Adds every member of each child hardlink set of which the delta holds at least one member,
    /// with the directories on the way (child metadata), so that links resolve inside the delta.
    private func includeHardlinkSets(of child: Node) {
        var sets: [[UInt8]: [[UInt8]]] = [:]
        child.walk { path, node in
            if case .hardlink(let holder) = node.content { sets[holder, default: [holder]].append(path) }
        }
        for members in sets.values where members.contains(where: { root.lookup($0) != nil }) {
            for member in members where root.lookup(member) == nil {
                guard let node = child.lookup(member) else { continue }
                insert(node, at: member, from: child)
            }
        }
    }

    /// Puts a copy of `node` at `path` in the delta, adding missing directories from `child`.
    private func insert(_ node: Node, at path: [UInt8], from child: Node) {
        let components = path.split(separator: UInt8(ascii: "/")).map(Array.init)
        var directory = root.directory!
        var childNode = child
        for component in components.dropLast() {
            childNode = childNode.directory!.child(named: component)!
            if let existing = directory.child(named: component) {
                directory = existing.directory!
            } else {
                let created = Node(name: component, metadata: childNode.metadata, content: .directory(Directory()))
                directory.upsert(created)
                directory = created.directory!
            }
        }
        directory.upsert(copy(node))
    }
}
