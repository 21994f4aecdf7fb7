import LStoreTree

/// Walks what a commit reaches beyond what a receiving store already holds in full, level by
/// level — commits, then trees, then files, then blocks — so that each level can be asked for in
/// batches once the level above is known.
///
/// A commit in `complete` is held in full by the receiver (a ref reaches it, so every object it
/// reaches is stored: spec/store.md, "Refs"); the walk stops there, and skips every tree such a
/// commit reaches. Any other object is visited, whether or not this store has it: an object that
/// arrived in an interrupted transfer may lack what it points to.
///
/// Objects this store has are read from it; the others come from `obtain`, which returns the raw
/// bytes of the commits, trees and files it is given (blocks it only has to store).
public struct Walk {
    public typealias Obtain = (_ objects: [ObjectName]) throws -> [ObjectName: [UInt8]]

    public let store: Store
    public let complete: Set<Digest>
    public let obtain: Obtain
    /// Most objects handed to `obtain` at once.
    public var batch = 8192
    /// Keep every visited object in `visited` (a push asks the peer about each).
    public var recordVisited = false

    public private(set) var visited: [ObjectName] = []
    /// How many objects of each kind the walk visited.
    public private(set) var counts: [ObjectKind: Int] = [:]
    private var seen: Set<ObjectName> = []

    public init(store: Store, complete: Set<Digest>, obtain: @escaping Obtain) {
        self.store = store
        self.complete = complete
        self.obtain = obtain
    }

    /// Every commit that `tips` reach through their parents, read from this store.
    public static func ancestors(of tips: some Sequence<Digest>, in store: Store) throws -> Set<Digest> {
        var result = Set<Digest>()
        var stack = Array(tips)
        while let id = stack.popLast() {
            guard result.insert(id).inserted else { continue }
            stack.append(contentsOf: try store.commit(id).parents)
        }
        return result
    }

    public mutating func run(from commit: Digest) throws {
        // Commits: down the parents until the receiver's complete part.
        var bases = Set<Digest>()
        var roots: [Digest] = []
        var frontier = [commit]
        while !frontier.isEmpty {
            var next: [Digest] = []
            var level: [Digest] = []
            for id in frontier {
                if complete.contains(id) {
                    bases.insert(id)
                } else if visit(ObjectName(kind: .commit, id: id)) {
                    level.append(id)
                }
            }
            for (name, raw) in try load(level.map { ObjectName(kind: .commit, id: $0) }) {
                let parsed = try raw.withUnsafeBytes { try Commit(decoding: $0, id: name.id) }
                roots.append(parsed.tree)
                next.append(contentsOf: parsed.parents)
            }
            frontier = next
        }

        // Trees the bases reach are complete on the receiver; the walk does not enter them.
        var known = Set<Digest>()
        var stack = try bases.map { try store.commit($0).tree }
        while let id = stack.popLast() {
            guard known.insert(id).inserted else { continue }
            for entry in try store.tree(id).entries {
                if case .directory(let child) = entry.payload { stack.append(child) }
            }
        }

        var trees: [Digest] = []
        for root in roots where !known.contains(root) && visit(ObjectName(kind: .tree, id: root)) {
            trees.append(root)
        }
        var files: [Digest] = []
        while !trees.isEmpty {
            var next: [Digest] = []
            for (name, raw) in try load(trees.map { ObjectName(kind: .tree, id: $0) }) {
                let tree = try raw.withUnsafeBytes { try TreeObject(decoding: $0, id: name.id) }
                for entry in tree.entries {
                    switch entry.payload {
                    case .directory(let child) where !known.contains(child) && visit(ObjectName(kind: .tree, id: child)):
                        next.append(child)
                    case .regular(_, let file) where visit(ObjectName(kind: .file, id: file)):
                        files.append(file)
                    default:
                        break
                    }
                }
            }
            trees = next
        }

        var blocks: [ObjectName] = []
        for (name, raw) in try load(files.map { ObjectName(kind: .file, id: $0) }) {
            let file = try raw.withUnsafeBytes { try FileObject(decoding: $0, id: name.id) }
            for block in file.blocks where block != .zero {
                let name = ObjectName(kind: .block, id: block)
                if visit(name) { blocks.append(name) }
            }
        }
        let absent = blocks.filter { !store.contains($0.id, kind: .block) }
        for start in stride(from: 0, to: absent.count, by: batch) {
            _ = try obtain(Array(absent[start..<min(start + batch, absent.count)]))
        }
    }

    /// Marks an object visited; false when it was already.
    private mutating func visit(_ name: ObjectName) -> Bool {
        guard seen.insert(name).inserted else { return false }
        counts[name.kind, default: 0] += 1
        if recordVisited { visited.append(name) }
        return true
    }

    /// The raw bytes of metadata objects: from this store when it has them, else from `obtain`.
    private func load(_ names: [ObjectName]) throws -> [(ObjectName, [UInt8])] {
        var result: [(ObjectName, [UInt8])] = []
        result.reserveCapacity(names.count)
        var absent: [ObjectName] = []
        for name in names {
            if store.contains(name.id, kind: name.kind) {
                result.append((name, try store.readObject(name.id, kind: name.kind)))
            } else {
                absent.append(name)
            }
        }
        for start in stride(from: 0, to: absent.count, by: batch) {
            let part = Array(absent[start..<min(start + batch, absent.count)])
            let got = try obtain(part)
            for name in part {
                guard let raw = got[name] else { throw StoreError.missingObject(name.kind, name.id) }
                result.append((name, raw))
            }
        }
        return result
    }
}
