import LStoreTree

/// Applies one layer's changes onto its parent tree, in place: the inverse of `OverlayDelta`.
///
/// A layer is a list of entries. Each regular entry replaces what its path held (a directory over
/// a directory keeps the children and takes the new metadata); the directories on its path that
/// are missing are made (mode 0755). Deletions come in one of two forms:
///
/// - `.oci` (OCI image-spec `layer.md`): an entry `.wh.NAME` deletes `NAME` in its directory, and
///   `.wh..wh..opq` hides every entry of its directory that lower layers put there. Whiteouts
///   apply to lower layers only: an entry of the same layer stays, whatever the order. No
///   whiteout appears in the result; other `.wh..wh.` names are refused.
/// - `.overlay` (an overlayfs upper directory): a character device 0/0 deletes its name, a
///   directory with `trusted.overlay.opaque=y` is opaque, and every `trusted.overlay.*` xattr is
///   dropped.
/// - `.plain` (a recipe's COPY, ADD and WORKDIR): every entry is what it says; nothing is deleted.
///
/// Hardlinks may name files of lower layers: a member keeps the data of the inode it named, even
/// when a later entry replaces or deletes the path it was named by. Paths never pass through a
/// symlink or a file: such an entry is refused. The tree must be in the store's form (sorted,
/// hardlinks normalized), as `Store.loadTree` gives it; `finish()` leaves it in that form again.
public final class ChangeSet {
    /// How a layer says that something is deleted.
    public enum Form: Sendable {
        case oci
        case overlay
        case plain
    }

    public let root: Node
    public let form: Form

    /// Hardlink members (by identity) and the node that holds their inode's data and metadata.
    private var links: [ObjectIdentifier: (member: Node, holder: Node)] = [:]
    /// Nodes this layer put in the tree, and directories its entries pass through.
    private var fresh: [ObjectIdentifier: Node] = [:]
    private var touched: [ObjectIdentifier: Node] = [:]
    /// Directories this layer marked opaque.
    private var opaque: [Node] = []

    static let whiteoutPrefix = Array(".wh.".utf8)
    static let opaqueName = Array(".wh..wh..opq".utf8)
    static let overlayXattrPrefix = Array("trusted.overlay.".utf8)

    public init(root: Node, form: Form) {
        self.root = root
        self.form = form
        start()
    }

    /// Learns the hardlink sets of the tree as it is now.
    private func start() {
        links = [:]
        fresh = [:]
        touched = [:]
        opaque = []
        root.walk { _, node in
            if case .hardlink(let path) = node.content, let holder = root.lookup(path) {
                links[ObjectIdentifier(node)] = (node, holder)
            }
        }
    }

    /// Applies one entry. `components` are checked path components (no `.`, `..` or empty one),
    /// empty for the root; a `.hardlink(path:)` content names its target by such a path.
    public func apply(components: [[UInt8]], metadata: Metadata, content: Content) throws {
        var metadata = metadata
        if form == .overlay {
            let kind = metadata.kind
            metadata.xattrs.removeAll { $0.name.starts(with: Self.overlayXattrPrefix) && !(kind == .directory && $0 == OverlayDelta.opaque) }
        }
        guard let name = components.last else {
            guard metadata.kind == .directory else { throw ChangeSetError(path: [], message: "the root is not a directory") }
            root.metadata = withoutOpaqueMark(metadata, of: root)
            mark(root, in: &fresh)
            return
        }
        let path = Array(components.joined(separator: [UInt8(ascii: "/")]))
        if form == .oci, name.starts(with: Self.whiteoutPrefix) {
            try whiteout(name: Array(name.dropFirst(Self.whiteoutPrefix.count)), in: Array(components.dropLast()), path: path)
            return
        }
        if form == .overlay, metadata.kind == .characterDevice, case .device(0, 0) = content {
            // A deletion makes no directory on its way.
            guard let parent = try lookup(Array(components.dropLast().joined(separator: [UInt8(ascii: "/")])), path: path) else { return }
            guard parent.directory != nil else {
                throw ChangeSetError(path: path, message: "'\(parent.name.printable)' on its path is a \(parent.metadata.kind), not a directory")
            }
            remove(name, from: parent)
            return
        }
        let parent = try directory(Array(components.dropLast()), path: path)
        let existing = parent.directory!.child(named: name)
        switch content {
        case .hardlink(let target):
            guard let node = try lookup(target, path: path), node.directory == nil else {
                throw ChangeSetError(path: path, message: "hardlink to '\(target.printable)', which is not an earlier file")
            }
            let holder = links[ObjectIdentifier(node)]?.holder ?? node
            let member = Node(name: name, metadata: Metadata(kind: holder.metadata.kind, permissions: 0), content: .hardlink(path: target))
            links[ObjectIdentifier(member)] = (member, holder)
            parent.directory!.upsert(member)
            mark(member, in: &fresh)
        case .directory where existing?.directory != nil:
            existing!.metadata = withoutOpaqueMark(metadata, of: existing!)
            mark(existing!, in: &fresh)
        default:
            let node = Node(name: name, metadata: metadata, content: content)
            if node.directory != nil { node.metadata = withoutOpaqueMark(metadata, of: node) }
            parent.directory!.upsert(node)
            mark(node, in: &fresh)
        }
    }

    /// Ends the layer: hides what opaque directories hide, sorts, and puts hardlink sets back in
    /// the store's form. The change set can then take the next layer's entries.
    public func finish() throws {
        for directory in opaque { hideLower(in: directory) }
        root.sortAll()
        resolveHardlinks()
        try root.normalizeHardlinks()
        start()
    }

    /// An OCI whiteout `.wh.REST` in the directory `parentComponents`.
    private func whiteout(name rest: [UInt8], in parentComponents: [[UInt8]], path: [UInt8]) throws {
        if rest == Array(Self.opaqueName.dropFirst(Self.whiteoutPrefix.count)) {
            // An opaque directory the tree does not have yet is made: the layer's entries go in it.
            let directory = try directory(parentComponents, path: path)
            opaque.append(directory)
            return
        }
        guard !rest.starts(with: Self.whiteoutPrefix) else {
            throw ChangeSetError(path: path, message: "a reserved whiteout name")
        }
        guard isValidName(rest) else {
            throw ChangeSetError(path: path, message: "a whiteout of '\(rest.printable)', which is not a name in its directory")
        }
        // A whiteout in a directory that is not there deletes nothing; one whose directory is a
        // symlink would delete what the link points at: refused.
        guard let parent = try lookup(Array(parentComponents.joined(separator: [UInt8(ascii: "/")])), path: path) else { return }
        guard parent.directory != nil else {
            throw ChangeSetError(path: path, message: "'\(parent.name.printable)' on its path is a \(parent.metadata.kind), not a directory")
        }
        remove(rest, from: parent)
    }

    /// Deletes `name` from `parent` unless this layer put it there.
    private func remove(_ name: [UInt8], from parent: Node) {
        guard let node = parent.directory!.child(named: name), fresh[ObjectIdentifier(node)] == nil else { return }
        parent.directory!.remove(named: name)
    }

    /// The directory at `components`, made where missing (mode 0755), every directory on the way
    /// marked as this layer's. Refused when a component is not a directory.
    private func directory(_ components: [[UInt8]], path: [UInt8]) throws -> Node {
        var node = root
        mark(root, in: &touched)
        for component in components {
            if let next = node.directory!.child(named: component) {
                guard next.directory != nil else {
                    throw ChangeSetError(path: path, message: "'\(component.printable)' on its path is a \(next.metadata.kind), not a directory")
                }
                node = next
            } else {
                let made = Node(name: component, metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
                node.directory!.upsert(made)
                mark(made, in: &fresh)
                node = made
            }
            mark(node, in: &touched)
        }
        return node
    }

    /// The entry at `target`, never following a symlink: a path through one is refused.
    private func lookup(_ target: [UInt8], path: [UInt8]) throws -> Node? {
        var node = root
        for component in target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            guard let directory = node.directory else {
                throw ChangeSetError(path: path, message: "'\(target.printable)' passes through a \(node.metadata.kind)")
            }
            guard let next = directory.child(named: Array(component)) else { return nil }
            node = next
        }
        return node
    }

    /// In the overlay form, a directory's opaque mark is noted and dropped from its metadata.
    private func withoutOpaqueMark(_ metadata: Metadata, of node: Node) -> Metadata {
        guard form == .overlay, metadata.xattrs.contains(OverlayDelta.opaque) else { return metadata }
        opaque.append(node)
        var metadata = metadata
        metadata.xattrs.removeAll { $0 == OverlayDelta.opaque }
        return metadata
    }

    private func mark(_ node: Node, in set: inout [ObjectIdentifier: Node]) {
        set[ObjectIdentifier(node)] = node
    }

    /// Keeps only this layer's entries below `directory`: those it put there and the directories
    /// its entries pass through.
    private func hideLower(in directory: Node) {
        guard let children = directory.directory?.children else { return }
        for child in children {
            let id = ObjectIdentifier(child)
            if fresh[id] == nil && touched[id] == nil {
                directory.directory!.remove(named: child.name)
            } else if child.directory != nil {
                hideLower(in: child)
            }
        }
    }

    /// Gives every hardlink set its data again: the first member in tree order takes the holder's
    /// metadata and content (the holder may have left the tree), the others link to it.
    private func resolveHardlinks() {
        guard !links.isEmpty else { return }
        let holders = Set(links.values.map { ObjectIdentifier($0.holder) })
        var order: [ObjectIdentifier] = []
        var sets: [ObjectIdentifier: (holder: Node, members: [(path: [UInt8], node: Node)])] = [:]
        root.walk { path, node in
            let id = ObjectIdentifier(node)
            let holder: Node
            if let link = links[id] {
                holder = link.holder
            } else if holders.contains(id) {
                holder = node
            } else {
                return
            }
            let key = ObjectIdentifier(holder)
            if sets[key] == nil {
                order.append(key)
                sets[key] = (holder, [])
            }
            sets[key]!.members.append((path, node))
        }
        for key in order {
            let (holder, members) = sets[key]!
            let metadata = holder.metadata, content = holder.content
            members[0].node.metadata = metadata
            members[0].node.content = content
            for member in members.dropFirst() {
                member.node.metadata = Metadata(kind: metadata.kind, permissions: 0)
                member.node.content = .hardlink(path: members[0].path)
            }
        }
    }
}

/// An entry of a layer that cannot be applied: `'PATH': what is wrong`.
public struct ChangeSetError: Error, CustomStringConvertible {
    public var path: [UInt8]
    public var message: String

    public init(path: [UInt8], message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "entry '\(path.printable)': \(message)" }
}
