import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Readers beside writers and gc (spec/store.md §10): checkouts of the latest ref never fail while
/// other processes commit, gc and repack; a store nobody can write is read without a lock.
@Suite(.serialized)
struct ConcurrentReaderTests {
    let scratch = TemporaryDirectory("readers")
    var store: String { scratch.sub("store") }
    var tree: String { scratch.sub("tree") }

    init() throws {
        try lstoreOK(["init", "--compression", "zstd:3"], store: scratch.sub("store"))
        try sh("""
            python3 - <<'PY'
            import os, random
            r = random.Random(7)
            root = "\(scratch.sub("tree"))"
            for d in range(8):
                os.makedirs(f"{root}/d{d}")
                for f in range(40):
                    with open(f"{root}/d{d}/f{f}", "wb") as out:
                        out.write(r.randbytes(r.randrange(100, 60_000)))
            os.makedirs(f"{root}/etc")
            with open(f"{root}/etc/hostname", "w") as out:
                out.write("0\\n")
            PY
            """)
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "layer"], store: scratch.sub("store"))
    }

    /// Starts `script` under bash in the background; its output is thrown away.
    func background(_ script: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    @Test func checkoutsOfTheLatestRefNeverFailWhileOthersCommitGCAndRepack() throws {
        let lstore = "\(lstoreBinary) --store \(store)"
        let stop = scratch.sub("stop")
        // Commits to the ref read, each adding a file to the directory a checkout writes last (so
        // the packs of earlier commits hold only file data, which a checkout opens late), and of a
        // ref removed at once (garbage for gc).
        let writer = try background("""
            i=0; ok=0; failed=0
            while [ ! -e \(stop) ]; do
                i=$((i + 1))
                if [ $((i % 3)) = 0 ]; then
                    head -c 50000 /dev/urandom > \(tree)/garbage
                    \(lstore) commit \(tree) --ref scratch >/dev/null 2>>\(scratch.sub("writer.err")) \\
                        && \(lstore) ref rm scratch >/dev/null 2>>\(scratch.sub("writer.err")) || failed=$((failed + 1))
                    rm \(tree)/garbage
                fi
                head -c 30000 /dev/urandom > \(tree)/d7/new$i
                echo $i > \(tree)/etc/hostname
                if \(lstore) commit \(tree) --ref layer >/dev/null 2>>\(scratch.sub("writer.err")); then ok=$((ok + 1)); else failed=$((failed + 1)); fi
                sleep 0.2
            done
            echo "$ok $failed" > \(scratch.sub("writer.count"))
            """)
        // repack (which rewrites every pack) and gc, one after the other, until the reader is done;
        // at least once each; a pause lets commits add packs between them.
        let maintenance = try background("""
            i=0; ok=0; failed=0
            while [ $i = 0 ] || [ ! -e \(stop) ]; do
                i=$((i + 1))
                for command in "repack --compression zstd:1" gc "repack --compression zstd:3"; do
                    if \(lstore) $command >/dev/null 2>>\(scratch.sub("maintenance.err")); then ok=$((ok + 1)); else failed=$((failed + 1)); fi
                done
                sleep 1
            done
            echo "$ok $failed" > \(scratch.sub("maintenance.count"))
            """)
        var failures: [String] = []
        for round in 0..<30 {
            let out = scratch.sub("out\(round)")
            let arguments = round.isMultiple(of: 2) ? ["checkout", "layer", "--dir", out] : ["checkout", "layer", "--squashfs", out]
            let result = try LStoreTestSupport.lstore(arguments, store: store)
            if !result.succeeded { failures.append("\(arguments.joined(separator: " ")): \(result.stderr)") }
            try sh("rm -rf \(out)")
        }
        try sh("touch \(stop)")
        writer.waitUntilExit()
        maintenance.waitUntilExit()
        #expect(failures.isEmpty, "\(failures.count) of 30 checkouts failed: \(failures.prefix(3))")
        let written = try sh("cat \(scratch.sub("writer.count"))").split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let maintained = try sh("cat \(scratch.sub("maintenance.count"))").split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let writerErrors = try sh("cat \(scratch.sub("writer.err")) 2>/dev/null || true")
        let maintenanceErrors = try sh("cat \(scratch.sub("maintenance.err")) 2>/dev/null || true")
        #expect(written.count == 2 && written[0] > 0 && written[1] == 0, "commits: \(written), \(writerErrors)")
        #expect(maintained.count == 2 && maintained[0] >= 3 && maintained[1] == 0, "gc and repack: \(maintained), \(maintenanceErrors)")
        let fsck = try LStoreTestSupport.lstore(["fsck", "--full"], store: store)
        #expect(fsck.succeeded, "\(fsck.stdout)\(fsck.stderr)")
        try lstoreOK(["checkout", "layer", "--dir", scratch.sub("final")], store: store)
        #expect(try manifest(scratch.sub("final")) == manifest(tree))
    }

    @Test(.enabled(if: isRoot, "needs root: a read-only bind mount"))
    func aStoreOnAReadOnlyFilesystemWithoutALockFileIsRead() throws {
        let readOnly = scratch.sub("read-only")
        try sh("rm \(store)/lock && mkdir \(readOnly) && mount --bind \(store) \(readOnly)")
        defer { _ = try? sh("umount \(readOnly)") }
        try sh("mount -o remount,bind,ro \(readOnly)")
        try lstoreOK(["checkout", "layer", "--dir", scratch.sub("out")], store: readOnly)
        #expect(try manifest(scratch.sub("out")) == manifest(tree))
        #expect(try lstoreOK(["fsck"], store: readOnly).contains("clean"))
        try sh("umount \(readOnly)")
        #expect(access(store + "/lock", F_OK) != 0, "nothing was written")
    }
}
