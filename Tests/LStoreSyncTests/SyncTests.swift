import Foundation
import LStoreStore
@testable import LStoreSync
import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two stores on one machine and a real `lstore serve` on 127.0.0.1: layers go both ways, only
/// what the other side lacks crosses, refs move by compare-and-swap.
@Suite(.serialized)
struct SyncTests {
    let scratch = TemporaryDirectory("sync")
    var serverStore: String { scratch.sub("a") }
    var clientStore: String { scratch.sub("b") }
    var base: String { scratch.sub("base") }
    var child: String { scratch.sub("child") }

    init() throws {
        for store in [serverStore, clientStore] {
            try lstoreOK(["init", "--compression", "zstd:3", "--block-size", "64K"], store: store)
        }
        // base: every corner a root filesystem has, and 3 MB of random data; child: base with a
        // changed file and 2 MB more.
        if isRoot {
            try makeCornerTree(base)
        } else {
            try sh("mkdir -p \(base)/etc && echo base > \(base)/etc/hostname")
        }
        try randomFile(base + "/big", bytes: 3_000_000, seed: 1)
        try sh("cp -a \(base) \(child) && mkdir -p \(child)/etc && echo child > \(child)/etc/hostname")
        try randomFile(child + "/extra", bytes: 2_000_000, seed: 2)
        try lstoreOK(["commit", base, "--ref", "base"], store: serverStore)
        try lstoreOK(["commit", child, "--ref", "steve/gaming", "--parent", "base"], store: serverStore)
    }

    func checkout(_ ref: String, from store: String) throws -> String {
        let directory = scratch.sub("out-\(UInt32.random(in: 0...UInt32.max))")
        try lstoreOK(["checkout", ref, "--dir", directory], store: store)
        return try manifest(directory)
    }

    /// Bytes 1–3 (codec, level, tried codec) of the pack entry of the first block of file `name`.
    func rawBlockEntry(of name: String, ref: String, in path: String) throws -> [UInt8] {
        let store = try Store.open(at: path)
        let root = try store.loadTree(try store.commit(try store.resolve(ref)).tree)
        guard case .regular(let file)? = root.lookup(Array(name.utf8))?.content, let id = file.content else {
            throw TestFailure("\(name) is not a regular file in \(ref)")
        }
        var entry: [UInt8] = []
        _ = try store.readPackEntry(try store.file(id).blocks[0], kind: .block, into: &entry)
        return Array(entry[1...3])
    }

    @Test func pullAndPushGiveByteIdenticalTrees() throws {
        let server = try serve(serverStore)
        let url = "http://127.0.0.1:\(server.port)"
        let pulled = try jsonOK(["pull", url, "steve/gaming:gaming"], store: clientStore)
        #expect(pulled["ref"] as? String == "gaming")
        #expect((pulled["objects"] as? [String: Int])?["commits"] == 2, "the child and its parent: \(pulled)")
        let expected = try manifest(child)
        #expect(try checkout("gaming", from: clientStore) == expected)
        #expect(try checkout("steve/gaming", from: serverStore) == expected)
        #expect(try fsckClean(clientStore))
        // `big` is random, so its blocks are stored raw. The server's store, which compressed them,
        // says zstd:3 did not shrink them; the client cannot know that without compressing again,
        // so its copies say nothing (spec/store.md §7.1).
        #expect(try rawBlockEntry(of: "big", ref: "steve/gaming", in: serverStore) == [0, 3, 6])
        #expect(try rawBlockEntry(of: "big", ref: "gaming", in: clientStore) == [0, 0, 0])

        // A layer made on the client goes back.
        let dev = scratch.sub("dev")
        try sh("cp -a \(child) \(dev) && rm \(dev)/big && echo dev > \(dev)/etc/motd")
        try lstoreOK(["commit", dev, "--ref", "development", "--parent", "gaming"], store: clientStore)
        let pushed = try jsonOK(["push", url, "development"], store: clientStore)
        #expect((pushed["objects"] as? [String: Int])?["commits"] == 1, "only the new commit: \(pushed)")
        #expect((pushed["objects"] as? [String: Int])?["blocks"] ?? 99 <= 1, "no block of the parent: \(pushed)")
        #expect(try checkout("development", from: serverStore) == manifest(dev))
        #expect(try fsckClean(serverStore))
        let full = try lstore(["fsck", "--full"], store: serverStore)
        #expect(full.succeeded, "\(full.stdout)")
    }

    @Test func pullWithTheParentPresentMovesOnlyTheChildsNewBlocks() throws {
        let server = try serve(serverStore)
        let url = "http://127.0.0.1:\(server.port)"
        let first = try jsonOK(["pull", url, "base"], store: clientStore)
        #expect((first["storedBytes"] as! Int) >= 3_000_000)
        let second = try jsonOK(["pull", url, "steve/gaming"], store: clientStore)
        let objects = second["objects"] as! [String: Int]
        let stored = second["storedBytes"] as! Int
        let wire = second["wireBytes"] as! Int
        // 2 MB of new random data is 31 blocks of 64K (the last shorter), plus the changed hostname.
        #expect(objects["blocks"] == 32, "\(second)")
        #expect(stored >= 2_000_000 && stored < 2_010_000, "no byte of base: \(second)")
        #expect(Double(wire) <= Double(stored) * 1.05, "protocol overhead under 5%: \(second)")
        let noop = try jsonOK(["pull", url, "steve/gaming"], store: clientStore)
        #expect(noop["upToDate"] as? Bool == true)
        #expect((noop["wireBytes"] as! Int) < 4096, "\(noop)")
        #expect(try storedBytes(clientStore) == storedBytes(serverStore), "nothing stored twice")
        #expect(try fsckClean(clientStore))
    }

    @Test func serverKilledMidTransferThenPullResumesWithoutResending() throws {
        try randomFile(child + "/large", bytes: 24_000_000, seed: 3)
        try lstoreOK(["commit", child, "--ref", "large"], store: serverStore)
        let server = try serve(serverStore)
        let port = server.port
        // The answers pass through a relay at 4 MB/s, so the server dies in the middle.
        let proxy = try Background("/usr/bin/env", ["python3", repositoryRoot + "/Fixtures/slow-proxy.py", "\(port)", "4000000"])
        let pull = Process()
        pull.executableURL = URL(fileURLWithPath: lstoreBinary)
        pull.arguments = ["--store", clientStore, "pull", "http://127.0.0.1:\(proxy.port)", "large", "--pack-size", "1M"]
        let errors = Pipe()
        pull.standardError = errors
        pull.standardOutput = FileHandle.nullDevice
        try pull.run()
        // Once the client has made a few packs durable, the server dies.
        while pull.isRunning, ((try? FileManager.default.contentsOfDirectory(atPath: clientStore + "/packs")) ?? []).filter({ $0.hasSuffix(".idx") }).count < 3 {
            usleep(2000)
        }
        server.kill()
        pull.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(pull.terminationStatus != 0, "the pull failed")
        #expect(message.contains("ended in the middle") || message.contains("did not answer"), "\(message)")
        #expect(!message.contains("\n") || message.split(separator: "\n").count == 1, "one line: \(message)")
        #expect(try refs(clientStore).isEmpty, "no ref moved")
        #expect(try fsckClean(clientStore))
        let arrived = try storedBytes(clientStore)
        let objectsBefore = try objectCount(clientStore)
        #expect(arrived > 1_000_000, "some packs were made durable before the kill")

        let restarted = try serve(serverStore, port: port)
        let again = try jsonOK(["pull", "http://127.0.0.1:\(restarted.port)", "large"], store: clientStore)
        let fetched = again["storedBytes"] as! Int
        let fetchedObjects = (again["objects"] as! [String: Int]).values.reduce(0, +)
        #expect(try objectCount(clientStore) == objectsBefore + fetchedObjects, "nothing stored twice: \(again)")
        #expect(Double(again["wireBytes"] as! Int) < Double(fetched) * 1.02 + 65536, "nothing that had arrived crossed again: \(again)")
        // A store that pulls the same in one go ends up with exactly as much.
        let fresh = scratch.sub("fresh")
        try lstoreOK(["init", "--compression", "zstd:3", "--block-size", "64K"], store: fresh)
        try lstoreOK(["pull", "http://127.0.0.1:\(restarted.port)", "large"], store: fresh)
        #expect(try objectCount(fresh) == objectCount(clientStore))
        #expect(try checkout("large", from: clientStore) == manifest(child))
        #expect(try fsckClean(clientStore))
    }

    @Test func pushKilledMidTransferThenPushResumesWithoutResending() throws {
        try randomFile(child + "/large", bytes: 16_000_000, seed: 4)
        try lstoreOK(["commit", child, "--ref", "large"], store: clientStore)
        let server = try serve(serverStore)
        let proxy = try Background("/usr/bin/env", ["python3", repositoryRoot + "/Fixtures/slow-proxy.py", "\(server.port)", "4000000"])
        let push = Process()
        push.executableURL = URL(fileURLWithPath: lstoreBinary)
        push.arguments = ["--store", clientStore, "push", "http://127.0.0.1:\(proxy.port)", "large", "--pack-size", "1M"]
        push.standardError = FileHandle.nullDevice
        push.standardOutput = FileHandle.nullDevice
        let packsBefore = try FileManager.default.contentsOfDirectory(atPath: serverStore + "/packs").filter { $0.hasSuffix(".idx") }.count
        try push.run()
        // Once the server has made a few batches durable, the pushing client dies.
        while push.isRunning, try FileManager.default.contentsOfDirectory(atPath: serverStore + "/packs").filter({ $0.hasSuffix(".idx") }).count < packsBefore + 3 {
            usleep(2000)
        }
        kill(push.processIdentifier, SIGKILL)
        push.waitUntilExit()
        proxy.kill()
        // The server keeps what arrived whole of the broken batch: wait until it has published it.
        var waited = 0
        while waited < 1000, ((try? FileManager.default.contentsOfDirectory(atPath: serverStore + "/tmp")) ?? []).contains(where: { $0.hasPrefix("pack-") }) {
            usleep(10_000)
            waited += 1
        }
        #expect(try !refs(serverStore).contains("large"), "the peer's ref did not move")
        #expect(try fsckClean(serverStore))
        let objectsBefore = try objectCount(serverStore)

        let again = try jsonOK(["push", "http://127.0.0.1:\(server.port)", "large"], store: clientStore)
        let sent = (again["objects"] as! [String: Int]).values.reduce(0, +)
        #expect(try objectCount(serverStore) == objectsBefore + sent, "nothing stored twice: \(again)")
        #expect((again["storedBytes"] as! Int) < 15_000_000, "what had arrived was not sent again: \(again)")
        #expect(try checkout("large", from: serverStore) == manifest(child))
        #expect(try fsckClean(serverStore))
    }

    @Test func racingPushesOneWinsTheOtherFailsCleanly() throws {
        let server = try serve(serverStore)
        let url = "http://127.0.0.1:\(server.port)"
        let third = scratch.sub("c")
        try lstoreOK(["init", "--compression", "zstd:3", "--block-size", "64K"], store: third)
        var commits: [String] = []
        for (index, store) in [clientStore, third].enumerated() {
            try lstoreOK(["pull", url, "base"], store: store)
            let tree = scratch.sub("tree\(index)")
            try sh("cp -a \(base) \(tree) && mkdir -p \(tree)/etc && echo \(index) > \(tree)/etc/hostname")
            try randomFile(tree + "/own", bytes: 1_000_000, seed: 10 + index)
            commits.append(try lstoreOK(["commit", tree, "--ref", "dev"], store: store).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let pushes = try [clientStore, third].map { store -> (Process, Pipe) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: lstoreBinary)
            process.arguments = ["--store", store, "push", url, "dev"]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return (process, errors)
        }
        var winners: [String] = []
        for (index, (process, errors)) in pushes.enumerated() {
            process.waitUntilExit()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            if process.terminationStatus == 0 {
                winners.append(commits[index])
            } else {
                #expect(message.contains("moved") || message.contains("does not descend"), "a clear refusal: \(message)")
            }
        }
        #expect(winners.count == 1, "exactly one push wins")
        #expect(try refs(serverStore).contains(String(winners.first?.prefix(12) ?? "?")))
        #expect(try fsckClean(serverStore))

        // The compare-and-swap itself: an update that expects a stale value changes nothing.
        let peer = try Peer(url: RemoteURL(parsing: url), token: nil)
        let loser = commits.first { $0 != winners.first }!
        #expect {
            try peer.updateRef(RefUpdate(name: "dev", new: Digest(hex: loser)!, expected: .absent))
        } throws: { error in
            guard case SyncError.peer(.refMoved, let message) = error else { return false }
            return message.contains("moved")
        }
        #expect(try refs(serverStore).contains(String(winners[0].prefix(12))))
        // --force overwrites.
        let loserStore = loser == commits[0] ? clientStore : third
        try lstoreOK(["push", url, "dev", "--force"], store: loserStore)
        #expect(try refs(serverStore).contains(String(loser.prefix(12))))
    }

    @Test func tokensReadOnlyAndPrivateServers() throws {
        try sh("printf 's3cret\\n# a comment\\nother-token\\n' > \(scratch.sub("tokens")) && echo wrong > \(scratch.sub("bad"))")
        try lstoreOK(["commit", child, "--ref", "mine"], store: clientStore)
        let guarded = try serve(serverStore, ["--token-file", scratch.sub("tokens")])
        let url = "http://127.0.0.1:\(guarded.port)"
        try lstoreOK(["pull", url, "base"], store: clientStore)
        let anonymous = try lstore(["push", url, "mine"], store: clientStore)
        #expect(!anonymous.succeeded && anonymous.stderr.contains("a token is required"), "\(anonymous.stderr)")
        let wrong = try lstore(["push", url, "mine", "--token-file", scratch.sub("bad")], store: clientStore)
        #expect(!wrong.succeeded && wrong.stderr.contains("not valid"), "\(wrong.stderr)")
        try lstoreOK(["push", url, "mine"], store: clientStore, environment: ["LSTORE_TOKEN": "other-token"])
        #expect(try refs(serverStore).contains("mine"))

        let readOnly = try serve(serverStore, ["--read-only"])
        let refused = try lstore(["push", "http://127.0.0.1:\(readOnly.port)", "mine:other"], store: clientStore)
        #expect(!refused.succeeded && refused.stderr.contains("read-only"), "\(refused.stderr)")

        let privateServer = try serve(serverStore, ["--token-file", scratch.sub("tokens"), "--private"])
        let privateURL = "http://127.0.0.1:\(privateServer.port)"
        let denied = try lstore(["pull", privateURL, "steve/gaming"], store: clientStore)
        #expect(!denied.succeeded && denied.stderr.contains("a token is required"), "\(denied.stderr)")
        try lstoreOK(["pull", privateURL, "steve/gaming", "--token-file", scratch.sub("tokens")], store: clientStore)
        #expect(try fsckClean(serverStore) && fsckClean(clientStore))
    }

    @Test func httpsWithACertificateTheClientTrusts() throws {
        let tls = scratch.sub("tls")
        try sh("""
            mkdir -p \(tls) && cd \(tls)
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem \\
                -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
            """)
        let server = try serve(serverStore, ["--tls-cert", tls + "/cert.pem", "--tls-key", tls + "/key.pem"])
        let url = "https://localhost:\(server.port)"
        let untrusted = try lstore(["pull", url, "steve/gaming"], store: clientStore)
        #expect(!untrusted.succeeded && untrusted.stderr.contains("certificate is not trusted"), "\(untrusted.stderr)")
        try lstoreOK(["pull", url, "steve/gaming", "--ca-file", tls + "/cert.pem"], store: clientStore)
        #expect(try checkout("steve/gaming", from: clientStore) == manifest(child))
        try sh("cp -a \(child) \(scratch.sub("next")) && echo next > \(scratch.sub("next"))/next")
        try lstoreOK(["commit", scratch.sub("next"), "--ref", "steve/gaming"], store: clientStore)
        try lstoreOK(["push", url, "steve/gaming"], store: clientStore, environment: ["LSTORE_CA": tls + "/cert.pem"])
        #expect(try checkout("steve/gaming", from: serverStore) == manifest(scratch.sub("next")))
        #expect(try fsckClean(serverStore) && fsckClean(clientStore))
        // A trusted certificate for another name is refused.
        try sh("""
            cd \(tls) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other-key.pem \\
                -out other.pem -days 2 -subj /CN=elsewhere -addext subjectAltName=DNS:elsewhere 2>/dev/null
            """)
        let elsewhere = try serve(serverStore, ["--tls-cert", tls + "/other.pem", "--tls-key", tls + "/other-key.pem"])
        let otherName = try lstore(["pull", "https://localhost:\(elsewhere.port)", "base", "--ca-file", tls + "/other.pem"], store: clientStore)
        #expect(!otherName.succeeded && otherName.stderr.contains("hostname mismatch"), "\(otherName.stderr)")
    }

    @Test func remotesByName() throws {
        let server = try serve(serverStore)
        try lstoreOK(["remote", "add", "desk", "http://127.0.0.1:\(server.port)"], store: clientStore)
        #expect(try lstoreOK(["remote", "list"], store: clientStore) == "desk\thttp://127.0.0.1:\(server.port)\n")
        let duplicate = try lstore(["remote", "add", "desk", "http://127.0.0.1:1"], store: clientStore)
        #expect(!duplicate.succeeded && duplicate.stderr.contains("exists already"))
        let bad = try lstore(["remote", "add", "odd", "ftp://x"], store: clientStore)
        #expect(!bad.succeeded && bad.stderr.contains("not a remote URL"), "\(bad.stderr)")
        try lstoreOK(["pull", "desk", "steve/gaming"], store: clientStore)
        #expect(try checkout("steve/gaming", from: clientStore) == manifest(child))
        try lstoreOK(["remote", "rm", "desk"], store: clientStore)
        let gone = try lstore(["pull", "desk", "base"], store: clientStore)
        #expect(!gone.succeeded && gone.stderr.contains("no remote named 'desk'"), "\(gone.stderr)")
    }

    @Test func refusalsNameTheirInput() throws {
        let server = try serve(serverStore)
        let url = "http://127.0.0.1:\(server.port)"
        let unknown = try lstore(["pull", url, "nothing"], store: clientStore)
        #expect(!unknown.succeeded && unknown.stderr.contains("has no ref 'nothing'"), "\(unknown.stderr)")
        let badName = try lstore(["pull", url, "base:bad..name/"], store: clientStore)
        #expect(!badName.succeeded && badName.stderr.contains("invalid ref name"), "\(badName.stderr)")
        let other = scratch.sub("other")
        try lstoreOK(["init", "--block-size", "128K"], store: other)
        let sizes = try lstore(["pull", url, "base"], store: other)
        #expect(!sizes.succeeded && sizes.stderr.contains("64K blocks"), "\(sizes.stderr)")
        let closed = try lstore(["pull", "http://127.0.0.1:1", "base"], store: clientStore)
        #expect(!closed.succeeded && closed.stderr.contains("cannot connect"), "\(closed.stderr)")
        // A pull that would not go forward needs --force.
        try lstoreOK(["pull", url, "steve/gaming:line"], store: clientStore)
        let backwards = try lstore(["pull", url, "base:line"], store: clientStore)
        #expect(!backwards.succeeded && backwards.stderr.contains("--force"), "\(backwards.stderr)")
        try lstoreOK(["pull", url, "base:line", "--force"], store: clientStore)

        // A server at its connection limit turns the next client away; a silent client is dropped.
        let busy = try serve(serverStore, ["--max-connections", "1", "--timeout", "2"])
        let idle = connection(port: busy.port)
        defer { close(idle) }
        usleep(200_000)
        let turnedAway = try lstore(["pull", "http://127.0.0.1:\(busy.port)", "base"], store: clientStore)
        #expect(!turnedAway.succeeded && turnedAway.stderr.contains("HTTP 503"), "\(turnedAway.stderr)")
        sleep(3)
        try lstoreOK(["pull", "http://127.0.0.1:\(busy.port)", "base:again"], store: clientStore)
    }
}

/// A peer that misbehaves on purpose (Fixtures/hostile-peer.py): each case is one clear error, costs
/// little, and leaves the local store as it was.
@Suite(.serialized)
struct HostilePeerTests {
    let scratch = TemporaryDirectory("hostile")
    var source: String { scratch.sub("source") }
    var store: String { scratch.sub("store") }

    init() throws {
        for path in [source, store] { try lstoreOK(["init"], store: path) }
        try sh("mkdir -p \(scratch.sub("tree")) && echo hello > \(scratch.sub("tree"))/file")
        try randomFile(scratch.sub("tree") + "/data", bytes: 300_000, seed: 5)
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "real"], store: source)
        try sh("mkdir -p \(scratch.sub("own")) && echo own > \(scratch.sub("own"))/file")
        try lstoreOK(["commit", scratch.sub("own"), "--ref", "mine"], store: store)
    }

    @Test(arguments: [
        ("wrong-bytes", "does not hash to its id"),
        ("truncated", "ended in the middle"),
        ("huge-frame", "a object frame of 1152921504606846976 bytes"),
        ("missing", "did not send 1 of the objects"),
        ("endless", "more than 100000 refs"),
        ("stall", "did not answer in time"),
    ])
    func refusedWithAClearErrorAndTheStoreUnchanged(mode: String, expected: String) throws {
        let peer = try Background("/usr/bin/env", ["python3", repositoryRoot + "/Fixtures/hostile-peer.py", mode, source])
        let refsBefore = try refs(store)
        let bytesBefore = try storedBytes(store)
        let started = Date()
        let result = try lstore(["pull", "http://127.0.0.1:\(peer.port)", "evil", "--timeout", "1"], store: store)
        #expect(!result.succeeded)
        #expect(result.stderr.contains(expected), "\(mode): \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(Date().timeIntervalSince(started) < 20, "bounded time")
        #expect(try refs(store) == refsBefore, "no ref moved")
        #expect(try storedBytes(store) == bytesBefore, "nothing unverified was stored")
        #expect(try fsckClean(store))
    }
}

/// A client that misbehaves on purpose (Fixtures/hostile-client.py) against a real `lstore serve`:
/// each request is refused with a clear error, the served store is unchanged, the server serves on.
@Suite(.serialized)
struct HostileClientTests {
    let scratch = TemporaryDirectory("hostile-client")
    var store: String { scratch.sub("store") }

    init() throws {
        try lstoreOK(["init"], store: store)
        try sh("mkdir -p \(scratch.sub("tree")) && echo hello > \(scratch.sub("tree"))/file")
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "base"], store: store)
    }

    /// `serve --stdio` answers request after request on one stream; a refused one leaves it in step.
    @Test func standardStreamsStayInStepAfterARefusal() throws {
        let script = """
            import struct, subprocess, sys
            def frame(kind, payload=b""): return struct.pack("<IQ", kind, len(payload)) + payload
            def request(op): return frame(1, struct.pack("<IBH", 1, op, 0))
            push = request(4) + frame(6, bytes(52 + 10)) + frame(10)
            refs = request(1) + frame(10)
            server = subprocess.run([sys.argv[1], "serve", "--stdio", "--read-only", "--store", sys.argv[2]],
                                    input=push + refs, capture_output=True, timeout=30)
            out = server.stdout
            kinds = []
            while len(out) >= 12:
                kind, length = struct.unpack_from("<IQ", out)
                kinds.append((kind, out[12:12 + length]))
                out = out[12 + length:]
            print(kinds[0][0], kinds[0][1][4:].decode(), [k for k, _ in kinds[2:]], server.returncode)
            """
        try sh("cat > \(scratch.sub("stdio.py")) <<'EOF'\n\(script)\nEOF")
        let answer = try sh("python3 \(scratch.sub("stdio.py")) \(lstoreBinary) \(store)")
        // error "read-only", end; then info, ref base, end; then a clean exit at the end of the input.
        #expect(answer == "9 this server is read-only [2, 3, 10] 0\n", "\(answer)")
    }

    @Test(arguments: [
        ("wrong-bytes", "error 7 corrupt store data: pushed object: block"),
        ("huge-frame", "error 1 protocol violation: client: a object frame of 1152921504606846976 bytes"),
        ("missing", "error 5 missing commit object"),
        ("bad-name", "error 7 invalid ref name '../x'"),
        ("garbage", "error 1 protocol violation: client: unknown frame type"),
        ("fuzz", "ok"),
    ])
    func refusedAndTheStoreUnchanged(mode: String, expected: String) throws {
        let server = try serve(store)
        let refsBefore = try refs(store)
        let objectsBefore = try objectCount(store)
        let answer = try sh("python3 \(repositoryRoot)/Fixtures/hostile-client.py \(server.port) \(mode) \(store)")
        #expect(answer.hasPrefix(expected), "\(mode): \(answer)")
        #expect(try refs(store) == refsBefore)
        #expect(try objectCount(store) == objectsBefore)
        #expect(try fsckClean(store))
        // The server still serves.
        let other = scratch.sub("other-\(mode)")
        try lstoreOK(["init"], store: other)
        try lstoreOK(["pull", "http://127.0.0.1:\(server.port)", "base"], store: other)
    }
}

/// Many clients at once, and a real Debian chain when `LSTORE_CHAIN` names one.
@Suite(.serialized)
struct SyncScaleTests {
    let scratch = TemporaryDirectory("sync-scale")

    @Test func manyClientsPullFromOneServerAtOnce() throws {
        let source = scratch.sub("source")
        try lstoreOK(["init", "--compression", "zstd:3"], store: source)
        let tree = scratch.sub("tree")
        try sh("mkdir -p \(tree)/d && for i in $(seq 1 200); do echo $i > \(tree)/d/f$i; done")
        try randomFile(tree + "/big", bytes: 4_000_000, seed: 9)
        try lstoreOK(["commit", tree, "--ref", "layer"], store: source)
        let server = try serve(source)
        let clients = try (0..<6).map { index -> Process in
            let store = scratch.sub("client\(index)")
            try lstoreOK(["init", "--compression", "zstd:3"], store: store)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: lstoreBinary)
            process.arguments = ["--store", store, "pull", "http://127.0.0.1:\(server.port)", "layer"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let expected = try manifest(tree)
        for process in clients { process.waitUntilExit() }
        // The server's high-water mark of resident memory, in KiB.
        let status = try String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
        let peak = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
        #expect(peak > 0 && peak < 200_000, "the server's peak memory stays small: \(peak) KiB")
        for (index, process) in clients.enumerated() {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            let out = scratch.sub("out\(index)")
            try lstoreOK(["checkout", "layer", "--dir", out], store: scratch.sub("client\(index)"))
            #expect(try manifest(out) == expected)
        }
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["LSTORE_CHAIN"] != nil && isRoot))
    func debianChainPushedAndPulledExactly() throws {
        let chain = ProcessInfo.processInfo.environment["LSTORE_CHAIN"]!
        let (a, b, c) = (scratch.sub("a"), scratch.sub("b"), scratch.sub("c"))
        for store in [a, b, c] { try lstoreOK(["init"], store: store) }
        try lstoreOK(["commit", chain + "/rootfs-base", "--ref", "base"], store: a)
        try lstoreOK(["commit", chain + "/rootfs-boot", "--ref", "boot", "--parent", "base"], store: a)
        try lstoreOK(["commit", chain + "/rootfs-gaming", "--ref", "gaming", "--parent", "boot"], store: a)
        let serverB = try serve(b)
        // a pushes boot, then gaming, to b; c pulls boot, then gaming, from b.
        try lstoreOK(["push", "http://127.0.0.1:\(serverB.port)", "boot"], store: a)
        let pushed = try jsonOK(["push", "http://127.0.0.1:\(serverB.port)", "gaming"], store: a)
        #expect((pushed["objects"] as! [String: Int])["commits"] == 1, "only gaming's own commit: \(pushed)")
        try lstoreOK(["pull", "http://127.0.0.1:\(serverB.port)", "boot"], store: c)
        let incremental = try jsonOK(["pull", "http://127.0.0.1:\(serverB.port)", "gaming"], store: c)
        #expect((incremental["objects"] as! [String: Int])["commits"] == 1, "only gaming's own commit: \(incremental)")
        for store in [b, c] {
            let out = scratch.sub("out-" + URL(fileURLWithPath: store).lastPathComponent)
            try lstoreOK(["checkout", "gaming", "--dir", out], store: store)
            #expect(try manifest(out) == manifest(chain + "/rootfs-gaming"))
            try sh("rm -rf \(out)")
            let full = try lstore(["fsck", "--full"], store: store)
            #expect(full.succeeded, "\(full.stdout)")
        }
    }
}

/// `ssh://` remotes over a real sshd on a loopback port, started by the test with its own config
/// and a key made for it: `lstore serve --stdio` runs on the far side, as git's transport does.
@Suite(.serialized, .enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")))
struct SSHTests {
    let scratch = TemporaryDirectory("ssh")
    var serverStore: String { scratch.sub("a") }
    var clientStore: String { scratch.sub("b") }

    /// Starts sshd (as a daemon of its own, stopped through its pid file) on a free loopback port;
    /// returns a function that stops it, and the port.
    func startSSHD() throws -> (stop: () -> Void, port: Int) {
        let dir = scratch.sub("sshd")
        let port = Int(try sh("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
            .trimmingCharacters(in: .whitespacesAndNewlines))!
        try sh("""
            mkdir -p \(dir) && chmod 700 \(dir)
            # sshd refuses a privilege-separation directory that others may write to.
            install -d -m 0755 -o root -g root /run/sshd
            ssh-keygen -q -t ed25519 -N '' -f \(dir)/host_key
            ssh-keygen -q -t ed25519 -N '' -f \(dir)/client_key
            cp \(dir)/client_key.pub \(dir)/authorized_keys
            cat > \(dir)/sshd_config <<CONFIG
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(dir)/host_key
            PidFile \(dir)/sshd.pid
            AuthorizedKeysFile \(dir)/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            CONFIG
            """)
        try sh("/usr/sbin/sshd -f \(dir)/sshd_config")
        var waited = 0
        while waited < 200, !canConnect(port: port) {
            usleep(50_000)
            waited += 1
        }
        return ({ _ = try? sh("kill $(cat \(dir)/sshd.pid)") }, port)
    }

    @Test func pushAndPullOverSSH() throws {
        for store in [serverStore, clientStore] {
            try lstoreOK(["init", "--compression", "zstd:3"], store: store)
        }
        let tree = scratch.sub("tree")
        try makeCornerTree(tree)
        try randomFile(tree + "/big", bytes: 1_000_000, seed: 7)
        try lstoreOK(["commit", tree, "--ref", "base"], store: clientStore)
        let (stopSSHD, port) = try startSSHD()
        defer { stopSSHD() }
        let key = scratch.sub("sshd/client_key")
        let environment = [
            "LSTORE_SSH": "ssh -i \(key) -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "LSTORE_REMOTE_LSTORE": lstoreBinary,
        ]
        let url = "ssh://root@127.0.0.1:\(port)\(serverStore)"
        let pushed = try jsonOK(["push", url, "base:steve/base"], store: clientStore, environment: environment)
        #expect((pushed["objects"] as? [String: Int])?["commits"] == 1, "\(pushed)")
        let out = scratch.sub("out")
        try lstoreOK(["checkout", "steve/base", "--dir", out], store: serverStore)
        #expect(try manifest(out) == manifest(tree))

        // And back into a third store, by a remote name.
        let third = scratch.sub("c")
        try lstoreOK(["init", "--compression", "zstd:3"], store: third)
        try lstoreOK(["remote", "add", "desk", url], store: third)
        try lstoreOK(["pull", "desk", "steve/base:base"], store: third, environment: environment)
        let back = scratch.sub("back")
        try lstoreOK(["checkout", "base", "--dir", back], store: third)
        #expect(try manifest(back) == manifest(tree))
        for store in [serverStore, clientStore, third] { #expect(try fsckClean(store)) }

        // A peer that refuses the key is one clear line.
        let refused = try lstore(["pull", "ssh://nobody@127.0.0.1:\(port)\(serverStore)", "steve/base"], store: third, environment: environment)
        #expect(!refused.succeeded && refused.stderr.contains("ssh exited with status 255"), "\(refused.stderr)")
    }
}
