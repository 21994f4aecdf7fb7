import Foundation
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A store opened for reading while other processes commit and repack (spec/store.md §10, the
/// readers' side): what a ref names is found even when it was published after the store was
/// opened, and a repack waits for the reader instead of removing packs under it.
@Suite(.serialized)
struct ReaderTests {
    let scratch = TemporaryDirectory("readers")
    var store: String { scratch.sub("store") }
    var tree: String { scratch.sub("tree") }

    init() throws {
        try lstoreOK(["init", "--compression", "zstd:3"], store: scratch.sub("store"))
        try sh("""
            mkdir -p \(scratch.sub("tree"))/etc \(scratch.sub("tree"))/usr
            echo base > \(scratch.sub("tree"))/etc/hostname
            head -c 600000 /dev/urandom > \(scratch.sub("tree"))/usr/data
            """)
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "base"], store: scratch.sub("store"))
    }

    /// Checks out `revision` through `reader` into a new directory and returns its manifest.
    func checkout(_ revision: String, from reader: Store) throws -> String {
        let out = scratch.sub("out-\(UInt32.random(in: 0...UInt32.max))")
        let commit = try reader.commit(try reader.resolve(revision))
        try Restorer(writer: StoreFileReader(store: reader)).restore(try reader.loadTree(commit.tree), into: out)
        return try manifest(out)
    }

    @Test func aCommitPublishedAfterTheStoreWasOpenedIsFoundThroughItsRef() throws {
        let reader = try Store.open(at: store)
        let byID = try Store.open(at: store)
        // Another process commits after this one listed the packs, before it reads the refs.
        try sh("echo layer > \(tree)/etc/hostname && head -c 300000 /dev/urandom > \(tree)/usr/more")
        let id = try lstoreOK(["commit", tree, "--ref", "layer"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try checkout("layer", from: reader) == manifest(tree))
        #expect(try byID.resolve(id).hex == id, "a commit id given in full is found too")
        let byPrefix = try Store.open(at: store)
        try sh("echo again > \(tree)/etc/hostname")
        let next = try lstoreOK(["commit", tree, "--ref", "layer"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try checkout(String(next.prefix(12)), from: byPrefix) == manifest(tree), "and a prefix of one")
    }

    @Test func aRepackWaitsForAReaderOpenedBeforeItAndTheReaderReadsEverything() throws {
        try sh("echo layer > \(tree)/etc/hostname && head -c 300000 /dev/urandom > \(tree)/usr/more")
        try lstoreOK(["commit", tree, "--ref", "layer"], store: store)
        let expected = try manifest(tree)
        let repack = Process()
        repack.executableURL = URL(fileURLWithPath: lstoreBinary)
        repack.arguments = ["--store", store, "repack", "--compression", "zstd:1"]
        repack.standardOutput = FileHandle.nullDevice
        var checkedOut = ""
        do {
            let reader = try Store.open(at: store)
            try repack.run()
            // Until the repack has finished, or is waiting for the lock this reader holds.
            while repack.isRunning && !waitsForALock(repack.processIdentifier) { usleep(5_000) }
            try #require(repack.isRunning, "the repack waits for the lock this reader holds")
            // Every pack this reader listed may have been rewritten by now: it reads them all.
            checkedOut = try checkout("layer", from: reader)
            #expect(repack.isRunning && waitsForALock(repack.processIdentifier), "the repack still waits while the reader reads")
        }
        repack.waitUntilExit()
        #expect(repack.terminationStatus == 0, "the repack ran once the reader was done")
        #expect(checkedOut == expected)
        #expect(try checkout("layer", from: try Store.open(at: store)) == expected)
        let config = try String(contentsOfFile: store + "/config", encoding: .utf8)
        #expect(config.contains("compression zstd:1"))
    }

    /// True when process `pid` waits for a `flock` (a `->` line of /proc/locks).
    func waitsForALock(_ pid: Int32) -> Bool {
        guard let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return false }
        return locks.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 5 && fields[1] == "->" && fields[2] == "FLOCK" && fields[5] == "\(pid)"
        }
    }
}
