extension Node {
    /// Rewrites hardlinks so that each set is held by its first member in depth-first name order and
    /// every other member is `.hardlink(path:)` to it, which is the form a store keeps.
    ///
    /// Before, a `.hardlink(path:)` may name any member of its set (as tar archives do). Throws
    /// `TreeError.badHardlink` for a link to a missing path, a directory, or a cycle. Call after
    /// `sortAll()`.
    public func normalizeHardlinks() throws {
        var order: [ObjectIdentifier: (index: Int, path: [UInt8], node: Node)] = [:]
        var linkers: [(index: Int, path: [UInt8], node: Node)] = []
        var index = 0
        walk { path, node in
            order[ObjectIdentifier(node)] = (index, path, node)
            if case .hardlink = node.content { linkers.append((index, path, node)) }
            index += 1
        }
        guard !linkers.isEmpty else { return }

        /// Follows hardlinks from `node` to the entry that holds the data.
        func holder(of start: Node, path: [UInt8]) throws -> Node {
            var node = start
            var hops = 0
            while case .hardlink(let target) = node.content {
                guard let next = lookup(target) else {
                    throw TreeError.badHardlink(path: path, target: target, reason: "no such entry")
                }
                hops += 1
                if hops > order.count { throw TreeError.badHardlink(path: path, target: target, reason: "a cycle") }
                node = next
            }
            if case .directory = node.content {
                throw TreeError.badHardlink(path: path, target: [], reason: "a hardlink to a directory")
            }
            return node
        }

        var sets: [ObjectIdentifier: [(index: Int, path: [UInt8], node: Node)]] = [:]
        for linker in linkers {
            let target = try holder(of: linker.node, path: linker.path)
            let key = ObjectIdentifier(target)
            if sets[key] == nil, let entry = order[key] { sets[key] = [entry] }
            sets[key, default: []].append(linker)
        }
        for (key, members) in sets {
            let holderNode = order[key]!.node
            let sorted = members.sorted { $0.index < $1.index }
            let first = sorted[0]
            let metadata = holderNode.metadata, content = holderNode.content
            for member in sorted.dropFirst() {
                member.node.content = .hardlink(path: first.path)
                member.node.metadata = Metadata(kind: metadata.kind, permissions: 0)
            }
            first.node.metadata = metadata
            first.node.content = content
        }
    }
}

public enum TreeError: Error, CustomStringConvertible {
    case badHardlink(path: [UInt8], target: [UInt8], reason: String)

    public var description: String {
        switch self {
        case .badHardlink(let path, let target, let reason):
            "\(path.printable): hardlink to \(target.printable) is invalid: \(reason)"
        }
    }
}
