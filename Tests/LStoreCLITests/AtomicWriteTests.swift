import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Files the store replaces atomically (refs, config, indexes) when the replacement fails.
@Suite(.serialized)
struct AtomicWriteTests {
    let scratch = TemporaryDirectory("atomic")
    var store: String { scratch.sub("store") }

    init() throws {
        try lstoreOK(["init"], store: scratch.sub("store"))
        try sh("mkdir -p \(scratch.sub("tree"))/etc && echo hi > \(scratch.sub("tree"))/etc/motd")
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "layer"], store: scratch.sub("store"))
    }

    /// The descriptor of an atomically written file is closed once when the rename fails: a second
    /// close would close whatever the process opened meanwhile (in the server, another client's
    /// socket). `tmp/` on another filesystem makes the rename of the new `refs` fail (EXDEV).
    @Test func aFileWhoseRenameFailsIsClosedOnceAndNothingChanges() throws {
        let elsewhere = "/dev/shm/lstore-tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try sh("mkdir \(elsewhere) && rm -r \(store)/tmp && ln -s \(elsewhere) \(store)/tmp")
        defer { _ = try? sh("rm -rf \(elsewhere)") }
        try #require(try sh("stat -c %d \(elsewhere)") != sh("stat -c %d \(store)"), "/dev/shm is another filesystem")
        let refs = try sh("cat \(store)/refs")
        let log = scratch.sub("strace.log")
        let result = try run("strace", ["-f", "-qq", "-e", "trace=openat,close,dup,dup3,pipe2,socket,eventfd2", "-o", log,
                                        lstoreBinary, "--store", store, "ref", "set", "copy", "layer"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(store)/refs: rename: "), "\(result.stderr)")
        #expect(try sh("cat \(store)/refs") == refs, "the refs are as they were")
        #expect(try sh("ls -A \(elsewhere)") == "", "the temporary is removed")

        // The temporary's descriptor N, and every close(N) until something else is given N.
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        guard let opened = lines.firstIndex(where: { $0.contains("/tmp/file-") && $0.contains("O_CREAT") }),
              let equals = lines[opened].range(of: "= ", options: .backwards),
              let fd = Int(lines[opened][equals.upperBound...].prefix { $0.isNumber }) else {
            throw TestFailure("no open of the temporary in the trace:\n\(lines.joined(separator: "\n"))")
        }
        var closes: [Substring] = []
        for line in lines[(opened + 1)...] {
            let call = line.drop { $0.isNumber || $0 == " " }
            // `close(N)`, or `close(N <unfinished ...>` when strace -f interleaves another thread.
            if call.hasPrefix("close(\(fd))") || call.hasPrefix("close(\(fd) <unfinished") { closes.append(call); continue }
            if call.hasSuffix("= \(fd)") { break }
        }
        #expect(closes.count == 1, "closed \(closes.count) times: \(closes)")
    }
}
