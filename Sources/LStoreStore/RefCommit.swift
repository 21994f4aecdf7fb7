import LStoreTree

/// A commit to make of a stored tree and point a ref at (spec/store.md §10).
public struct CommitRequest: Sendable {
    public var tree: Digest
    public var stats: TreeStats
    /// The ref to move to the new commit.
    public var ref: String
    /// The parents; nil: the ref's current commit, if any, as in git.
    public var parents: [Digest]?
    /// Seconds since the Unix epoch.
    public var time: Int64
    public var author: String
    /// Where the tree came from: a directory path, a tarball, an image.
    public var source: String
    public var message: String

    public init(tree: Digest, stats: TreeStats, ref: String, parents: [Digest]? = nil, time: Int64,
                author: String, source: String, message: String) {
        self.tree = tree
        self.stats = stats
        self.ref = ref
        self.parents = parents
        self.time = time
        self.author = author
        self.source = source
        self.message = message
    }

    /// The commit object on top of `current`, the ref's value now.
    func commit(over current: Digest?) -> Commit {
        Commit(tree: tree, parents: parents ?? current.map { [$0] } ?? [], time: time, author: author,
               source: source, size: stats.size, files: stats.files, entries: stats.entries, message: message)
    }
}

/// A ref that other commits kept moving while ours was being made.
public struct RefKeepsMoving: Error, CustomStringConvertible, Equatable, Sendable {
    public var ref: String
    public var description: String { "ref '\(ref)' keeps moving; gave up" }
}

extension Store {
    /// How many times a commit is made again on a ref that keeps moving before it gives up.
    public static let commitAttempts = 100

    /// Stores the commit `request` describes through `ingest` (whose writer is published) and moves
    /// its ref there by compare-and-swap. Without explicit parents, the parent is the ref's current
    /// commit; when another commit moves the ref meanwhile, the commit is made again on top of the
    /// ref's new value, so both land, one on top of the other. With explicit parents the ref is
    /// set whatever it was. Throws `RefKeepsMoving` after `commitAttempts` lost races. Returns the
    /// id of the commit the ref now names.
    @discardableResult
    public func commit(_ request: CommitRequest, ingest: Ingest) throws -> Digest {
        precondition(ingest.writer.store === self, "the ingest writes to another store")
        var current = try ref(request.ref)
        let firstLine = request.message.split(separator: "\n").first.map(String.init) ?? ""
        for _ in 0..<Self.commitAttempts {
            let id = try ingest.storeCommit(request.commit(over: current))
            _ = try ingest.writer.finish()
            do {
                let expecting: RefExpectation = request.parents != nil ? .any : current.map { .value($0) } ?? .absent
                try updateRef(request.ref, to: id, expecting: expecting, message: "commit: \(firstLine)")
                return id
            } catch StoreError.refMoved(_, _, let actual) {
                current = actual
            }
        }
        throw RefKeepsMoving(ref: request.ref)
    }
}
