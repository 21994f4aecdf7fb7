import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// kill -9 at any point leaves a store that fsck passes with every ref on a complete commit; two
/// commits at once both succeed; gc never removes what a running commit writes.
@Suite(.serialized)
struct DurabilityTests {
    let scratch = TemporaryDirectory("durability")
    var store: String { scratch.sub("store") }
    var tree: String { scratch.sub("tree") }

    init() throws {
        try lstoreOK(["init", "--compression", "zstd:9"], store: scratch.sub("store"))
        // 40 MB in 400 files of random data: long enough to be killed at many points.
        try sh("""
            python3 - <<'PY'
            import os, random
            r = random.Random(1)
            root = "\(scratch.sub("tree"))"
            for d in range(20):
                os.makedirs(f"{root}/d{d}")
                for f in range(20):
                    with open(f"{root}/d{d}/f{f}", "wb") as out:
                        out.write(r.randbytes(100_000))
            PY
            """)
    }

    func fsckClean(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try lstore(["fsck", "--json"], store: store)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(result.status == 0 && report["clean"] as? Bool == true, "fsck: \(result.stdout)", sourceLocation: sourceLocation)
    }

    @Test func killedCommitsLeaveAConsistentStore() throws {
        let started = Date()
        let base = try lstoreOK(["commit", tree, "--ref", "layer", "--threads", "1"], store: store)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let duration = UInt32(Date().timeIntervalSince(started) * 1_000_000)
        var interrupted = 0
        var midway = 0
        for attempt in 0..<12 {
            // Add 8 MB of new data each time so every commit has a pack to write.
            try sh("head -c 8000000 /dev/urandom > \(tree)/d\(attempt % 20)/new\(attempt)")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: lstoreBinary)
            process.arguments = ["--store", store, "commit", tree, "--ref", "layer", "--threads", "1"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if attempt.isMultiple(of: 2) {
                // At any moment within the time a whole commit takes: start, scan, refs, exit.
                usleep(UInt32.random(in: 1_000...max(2_000, duration)))
            } else if waitForPackData(of: process) {
                // Certainly midway: the new pack has data in it and the commit is still running.
                usleep(UInt32.random(in: 0...20_000))
                midway += 1
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal { interrupted += 1 }
            try fsckClean()
            // The ref names a complete commit: it checks out.
            let out = scratch.sub("out\(attempt)")
            try lstoreOK(["checkout", "layer", "--dir", out], store: store)
            try sh("rm -rf \(out)")
        }
        #expect(midway == 6, "every second commit was caught writing its pack (\(midway) of 6)")
        #expect(interrupted >= 6, "commits were killed midway (\(interrupted) of 12)")
        // After all that, gc clears the leftovers and the first commit is still intact.
        try lstoreOK(["gc"], store: store)
        try fsckClean()
        let warnings = try lstoreOK(["fsck", "--json"], store: store)
        #expect(!warnings.contains("no index"), "gc removed unindexed packs: \(warnings)")
        #expect(try lstoreOK(["log", "layer", "--json"], store: store).contains(base))
    }

    /// Polls the store's `tmp/` until `process` has a pack there with data in it; false if the
    /// process exits first.
    func waitForPackData(of process: Process) -> Bool {
        let prefix = "pack-\(process.processIdentifier)-"
        while process.isRunning {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []
            for name in names where name.hasPrefix(prefix) {
                var info = stat()
                if stat(store + "/tmp/" + name, &info) == 0, info.st_size > 0 { return true }
            }
            usleep(500)
        }
        return false
    }

    @Test func concurrentCommitsBothSucceed() throws {
        try sh("cp -a \(tree) \(scratch.sub("other")) && echo changed > \(scratch.sub("other"))/d0/f0")
        func start(_ arguments: [String]) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: lstoreBinary)
            process.arguments = ["--store", store] + arguments
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return process
        }
        // Two refs at once, then the same ref twice at once: all succeed.
        var processes = [try start(["commit", tree, "--ref", "one"]), try start(["commit", scratch.sub("other"), "--ref", "two"])]
        processes += [try start(["commit", tree, "--ref", "same"]), try start(["commit", scratch.sub("other"), "--ref", "same"])]
        for process in processes {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        try fsckClean()
        let log = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["log", "same", "--json"], store: store).utf8)) as! [[String: Any]]
        #expect(log.count == 2, "both commits to 'same' are kept, one on top of the other")
    }

    @Test func gcDuringACommitKeepsItsObjects() throws {
        try lstoreOK(["commit", tree, "--ref", "keep"], store: store)
        try lstoreOK(["ref", "rm", "keep"], store: store)
        try sh("head -c 20000000 /dev/urandom > \(tree)/d1/extra")
        let commit = Process()
        commit.executableURL = URL(fileURLWithPath: lstoreBinary)
        commit.arguments = ["--store", store, "commit", tree, "--ref", "fresh", "--threads", "1"]
        commit.standardOutput = FileHandle.nullDevice
        try commit.run()
        usleep(100_000)
        let gc = try lstore(["gc"], store: store)
        #expect(gc.succeeded, "\(gc.stderr)")
        commit.waitUntilExit()
        #expect(commit.terminationStatus == 0)
        try fsckClean()
        let full = try lstore(["fsck", "--full"], store: store)
        #expect(full.succeeded, "\(full.stdout)")
        try lstoreOK(["checkout", "fresh", "--dir", scratch.sub("out")], store: store)
        #expect(try manifest(scratch.sub("out")) == manifest(tree))
    }
}
