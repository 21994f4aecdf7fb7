import Foundation
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `Store.commit(_:ingest:)`, the commit a ref moves to (spec/store.md §10): two committers that
/// both saw the ref empty both land, the second on top of the first.
@Suite struct RefCommitTests {
    /// The empty root directory, stored through a new writer on `store`.
    static func emptyTree(in store: Store) throws -> (ingest: Ingest, tree: Digest, stats: TreeStats) {
        let ingest = Ingest(writer: try StoreWriter(store: store), threads: 1)
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
        let (tree, stats) = try ingest.storeTree(root)
        return (ingest, tree, stats)
    }

    /// Processes waiting for a lock on the file `path`, from /proc/locks.
    static func lockWaiters(on path: String) throws -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileError(path: path, operation: "stat", errno: errno) }
        let locks = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
        return locks.split(separator: "\n").filter { $0.contains(" -> ") && $0.contains(":\(info.st_ino) ") }.count
    }

    @Test func twoCommittersThatRaceBothLand() throws {
        let scratch = TemporaryDirectory("ref-commit")
        let (store, _, _) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        // Holding the refs lock keeps both committers between reading the ref (empty) and moving it.
        let lockPath = store.path + "/refs.lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        #expect(lock >= 0 && flock(lock, LOCK_EX) == 0)
        let results = Locked<[String: Result<Digest, any Error>]>([:])
        let group = DispatchGroup()
        for name in ["first", "second"] {
            let committer = try Store.open(at: store.path)
            let (ingest, tree, stats) = try Self.emptyTree(in: committer)
            DispatchQueue.global().async(group: group) {
                let result = Result {
                    try committer.commit(CommitRequest(tree: tree, stats: stats, ref: "main", time: 1, author: name,
                                                       source: "/", message: name), ingest: ingest)
                }
                results.withLock { $0[name] = result }
            }
        }
        // Both committers reach the refs lock, unless one failed before it: then it is in `results`.
        var waited = 0
        while try Self.lockWaiters(on: lockPath) < 2, results.withLock({ $0.isEmpty }), waited < 12_000 {
            usleep(10_000)
            waited += 1
        }
        flock(lock, LOCK_UN)
        close(lock)
        group.wait()

        let ids = try results.withLock { all in try all.mapValues { try $0.get() } }
        // Another instance, as a later process would open the store: it sees both committers' packs.
        let reader = try Store.open(at: store.path)
        let top = try #require(try reader.ref("main"))
        let topCommit = try reader.commit(top)
        let below = try #require(topCommit.parents.first)
        #expect(topCommit.parents.count == 1 && Set([top, below]) == Set(ids.values))
        #expect(try reader.commit(below).parents.isEmpty)
        let moves = try reader.reflog(for: "main").map { $0.message }
        #expect(Set(moves) == ["commit: first", "commit: second"] && moves.count == 2)
    }

    @Test func explicitParentsSetTheRefWhateverItWas() throws {
        let scratch = TemporaryDirectory("ref-commit")
        let (store, _, _) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        let (ingest, tree, stats) = try Self.emptyTree(in: store)
        let first = try store.commit(CommitRequest(tree: tree, stats: stats, ref: "a", time: 1, author: "t", source: "/", message: "one"),
                                     ingest: ingest)
        let second = try store.commit(CommitRequest(tree: tree, stats: stats, ref: "a", time: 2, author: "t", source: "/", message: "two"),
                                      ingest: ingest)
        #expect(try store.commit(second).parents == [first])
        let third = try store.commit(CommitRequest(tree: tree, stats: stats, ref: "a", parents: [], time: 3, author: "t",
                                                   source: "/", message: "root"), ingest: ingest)
        #expect(try store.ref("a") == third && (try store.commit(third).parents.isEmpty))
    }
}
