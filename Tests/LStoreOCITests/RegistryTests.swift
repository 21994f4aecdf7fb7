import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A registry every test of a process shares: Debian's docker-registry, anonymous, holding the
/// import tests' images.
final class SharedRegistry: @unchecked Sendable {
    static let shared = Result { try SharedRegistry() }
    let registry: RegistryFixture
    /// Each seeded NAME:TAG's manifest digest.
    let digests: [String: String]

    init() throws {
        let fixtures = try ImageFixtures.shared.get()
        registry = try RegistryFixture(mode: "anonymous")
        digests = try registry.seedTestImages(images: fixtures.images)
    }
}

/// What the registry tests share: a store, the image fixtures and their `umoci unpack` trees.
struct RegistryTestContext {
    let scratch = TemporaryDirectory("registry")
    var store: String { scratch.sub("store") }
    let fixtures: ImageFixtures
    /// The Docker configuration the tests' lstore reads and writes (never the user's).
    var environment: [String: String] { ["DOCKER_CONFIG": scratch.sub("docker"), "LSTORE_REGISTRY_CONNECTIONS": "2"] }

    init() throws {
        fixtures = try ImageFixtures.shared.get()
        try lstoreOK(["init"], store: store)
    }

    func run(_ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
        if let stdin {
            let file = scratch.sub("stdin")
            try stdin.write(toFile: file, atomically: true, encoding: .utf8)
            var environment = self.environment
            environment["LSTORE_BIN"] = lstoreBinary
            let script = "\"$LSTORE_BIN\" --store \(store) \(arguments.map { "'\($0)'" }.joined(separator: " ")) < \(file)"
            return try run("/bin/sh", ["-c", script], environment: environment)
        }
        return try lstore(arguments, store: store, environment: environment)
    }

    func ok(_ arguments: [String], stdin: String? = nil) throws -> String {
        let result = try run(arguments, stdin: stdin)
        guard result.succeeded else { throw TestFailure("lstore \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result.stdout
    }

    /// The manifest of `ref`'s checkout, as Fixtures/manifest.py prints it.
    func checkout(_ ref: String) throws -> String {
        let out = scratch.sub("checkout-\(ref)")
        _ = try sh("rm -rf \(out)")
        _ = try ok(["checkout", ref, "--dir", out])
        defer { _ = try? sh("rm -rf \(out)") }
        return try manifest(out, options: ["--mtime-seconds"])
    }

    /// A value of `ref`'s commit header `key`, from `lstore show`.
    func header(_ ref: String, _ key: String) throws -> String? {
        let shown = try ok(["show", ref, "--json"])
        guard let object = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any] else { return nil }
        if let headers = object["headers"] as? [String: Any] { return headers[key] as? String }
        return nil
    }

    func json(_ text: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(text)")
        }
        return object
    }

    /// `fsck` is clean and `ref` does not exist: a refused pull changed nothing.
    func expectUnchanged(_ ref: String) throws {
        let fsck = try run(["fsck"])
        #expect(fsck.succeeded && !fsck.stdout.contains("error"), "\(fsck.stdout) \(fsck.stderr)")
        #expect(try !ok(["refs"]).contains(ref))
    }

    func run(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> ProcessResult {
        try LStoreTestSupport.run(executable, arguments, environment: environment)
    }
}

@Suite(.serialized, .registryAvailable, .enabled(if: isRoot, "needs root: owners and devices in the images"))
struct RegistryPullTests {
    let context: RegistryTestContext
    let shared: SharedRegistry
    var host: String { shared.registry.host }

    init() throws {
        context = try RegistryTestContext()
        shared = try SharedRegistry.shared.get()
    }

    /// Each image pulled equals `umoci unpack` of it; the image commit records what was pulled.
    @Test func pullEqualsUmoci() throws {
        for (name, tag) in [("lstore/base:latest", "base"), ("lstore/child:latest", "child"), ("lstore/system:latest", "system")] {
            let output = try context.ok(["pull", "docker://\(host)/\(name)", "--ref", tag])
            #expect(output.count == 65, "prints the commit id")
            #expect(try context.checkout(tag) == (try context.fixtures.expected(tag)), "\(name)")
            #expect(try context.header(tag, "oci-image-digest") == shared.digests[name])
            #expect(try context.header(tag, "oci-source") == "docker://\(host)/\(name)")
        }
        // child is base plus two layers: four commits under child's image commit, base's one shared.
        let log = try context.ok(["log", "child", "--json"])
        #expect(log.components(separatedBy: "oci-layer").count - 1 == 3, "\(log)")
    }

    /// A zstd copy of child shares every layer commit: nothing is fetched but its documents.
    @Test func recompressedImageFetchesNoLayer() throws {
        _ = try context.ok(["pull", "docker://\(host)/lstore/child:latest", "--ref", "child"])
        let again = try context.json(try context.ok(["pull", "docker://\(host)/lstore/child:zstd", "--ref", "zchild", "--json"]))
        #expect(again["fetchedLayers"] as? Int == 0 && again["bytesFetched"] as? Int == 0, "\(again)")
        #expect(again["reusedLayers"] as? Int == 3)
        #expect(try context.checkout("zchild") == (try context.fixtures.expected("child")))
    }

    /// An OCI index and a Docker manifest list: this machine's image by default, the other when asked.
    @Test(arguments: ["platforms", "manifest-list"])
    func platforms(_ name: String) throws {
        _ = try context.ok(["pull", "docker://\(host)/lstore/\(name)", "--ref", "here"])
        #expect(try context.checkout("here") == (try context.fixtures.expected("child")))
        let other = try context.ok(["show", "here", "--json"]).contains("arm64") ? "amd64" : "arm64"
        _ = try context.ok(["pull", "docker://\(host)/lstore/\(name)", "--ref", "there", "--platform", "linux/\(other)"])
        #expect(try context.checkout("there") == (try context.fixtures.expected("base")))
        #expect(try context.header("there", "oci-index-digest") == shared.digests["lstore/\(name):latest"])
        let none = try context.run(["pull", "docker://\(host)/lstore/\(name)", "--ref", "none", "--platform", "linux/s390x"])
        #expect(!none.succeeded && none.stderr.contains("no image for platform linux/s390x"), "\(none.stderr)")
    }

    /// An image pushed by lstore is a standard one: skopeo inspects it, copies it back, and
    /// umoci unpacks it to the tree lstore had; pushing it again uploads nothing; a push to
    /// another repository mounts the blobs.
    @Test func pushRoundTrip() throws {
        _ = try context.ok(["import", "oci:\(context.fixtures.images)/layout:child", "--ref", "child"])
        let first = try context.json(try context.ok(["push", "docker://\(host)/steve/round:1", "child", "--json"]))
        #expect(first["uploaded"] as? Int == 4, "\(first)")
        let second = try context.json(try context.ok(["push", "docker://\(host)/steve/round:1", "child", "--json"]))
        #expect(second["uploaded"] as? Int == 0 && second["present"] as? Int == 4, "\(second)")
        #expect(second["manifest"] as? String == first["manifest"] as? String)
        let mounted = try context.json(try context.ok(["push", "docker://\(host)/steve/elsewhere:1", "child", "--json"]))
        #expect(mounted["mounted"] as? Int == 4 && mounted["uploaded"] as? Int == 0, "\(mounted)")

        let inspect = try sh("skopeo inspect --tls-verify=false docker://\(host)/steve/round:1")
        #expect(inspect.contains(first["manifest"] as! String))
        let layout = context.scratch.sub("back")
        _ = try sh("""
            skopeo copy -q --src-tls-verify=false docker://\(host)/steve/round:1 oci:\(layout):t
            umoci unpack --image \(layout):t \(layout)-unpacked >/dev/null
            """)
        #expect(try manifest(layout + "-unpacked/rootfs", options: ["--mtime-seconds"]) == (try context.checkout("child")))

        // Docker schema 2 on request; pulled back, the same tree.
        _ = try context.ok(["push", "docker://\(host)/steve/docker:1", "child", "--format", "docker"])
        let raw = try sh("skopeo inspect --raw --tls-verify=false docker://\(host)/steve/docker:1")
        #expect(raw.contains("application/vnd.docker.distribution.manifest.v2+json"))
        #expect(raw.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"))
        _ = try context.ok(["pull", "docker://\(host)/steve/docker:1", "--ref", "back"])
        #expect(try context.checkout("back") == (try context.checkout("child")))
    }
}

/// Registries that want credentials or TLS.
@Suite(.serialized, .registryAvailable, .enabled(if: isRoot, "needs root: owners and devices in the images"))
struct RegistryAuthTests {
    let context: RegistryTestContext
    init() throws { context = try RegistryTestContext() }

    /// htpasswd: no credentials, wrong ones, then `lstore login` and pull and push with them.
    @Test func basicAuth() throws {
        let registry = try RegistryFixture(mode: "htpasswd")
        try registry.seed(layout: context.fixtures.images + "/layout", tag: "child", name: "steve/child:1")
        let anonymous = try context.run(["pull", "docker://\(registry.host)/steve/child:1", "--ref", "c"])
        #expect(!anonymous.succeeded && anonymous.stderr.contains("authentication required (lstore login \(registry.host))"),
                "\(anonymous.stderr)")
        let wrong = try context.run(["login", registry.host, "-u", "steve", "--password-stdin"], stdin: "nope\n")
        #expect(!wrong.succeeded && wrong.stderr.contains("refused"), "\(wrong.stderr)")
        #expect(access(context.scratch.sub("docker/config.json"), F_OK) != 0, "nothing recorded for wrong credentials")
        _ = try context.ok(["login", registry.host, "-u", "steve", "--password-stdin"], stdin: "s3cret\n")
        let config = try String(contentsOfFile: context.scratch.sub("docker/config.json"), encoding: .utf8)
        #expect(config.contains(registry.host) && config.contains(Data("steve:s3cret".utf8).base64EncodedString()))
        _ = try context.ok(["pull", "docker://\(registry.host)/steve/child:1", "--ref", "c"])
        #expect(try context.checkout("c") == (try context.fixtures.expected("child")))
        _ = try context.ok(["push", "docker://\(registry.host)/steve/again:1", "c"])
        _ = try sh("skopeo inspect --tls-verify=false --creds steve:s3cret docker://\(registry.host)/steve/again:1")
        _ = try context.ok(["logout", registry.host])
        #expect(!(try context.run(["pull", "docker://\(registry.host)/steve/again:1", "--ref", "d"])).succeeded)
    }

    /// Token auth: anonymous pulls get a pull token; a push needs steve's, asked for pull,push.
    @Test func tokenAuth() throws {
        let registry = try RegistryFixture(mode: "token")
        try registry.seed(layout: context.fixtures.images + "/layout", tag: "child", name: "steve/child:1")
        _ = try context.ok(["pull", "docker://\(registry.host)/steve/child:1", "--ref", "c"])
        let log = registry.tokenServer!.log()
        #expect(log.contains { $0.account == "anonymous" && $0.granted == ["repository:steve/child:pull"] }, "\(log)")
        let denied = try context.run(["push", "docker://\(registry.host)/steve/pushed:1", "c"])
        #expect(!denied.succeeded, "\(denied.stderr)")
        _ = try context.ok(["login", registry.host, "-u", "steve", "--password-stdin"], stdin: "s3cret\n")
        _ = try context.ok(["push", "docker://\(registry.host)/steve/pushed:1", "c"])
        #expect(registry.tokenServer!.log().contains { $0.account == "steve" && $0.granted.contains("repository:steve/pushed:pull,push") })
        _ = try sh("skopeo inspect --tls-verify=false --creds steve:s3cret docker://\(registry.host)/steve/pushed:1")
    }

    /// HTTPS: the test CA with --ca-file; without it the certificate is not trusted; --insecure skips the check.
    @Test func tls() throws {
        let registry = try RegistryFixture(mode: "tls")
        try registry.seed(layout: context.fixtures.images + "/layout", tag: "base", name: "steve/base:1")
        let untrusted = try context.run(["pull", "docker://\(registry.host)/steve/base:1", "--ref", "b"])
        #expect(!untrusted.succeeded && untrusted.stderr.contains("certificate"), "\(untrusted.stderr)")
        _ = try context.ok(["pull", "docker://\(registry.host)/steve/base:1", "--ref", "b", "--ca-file", registry.caFile!])
        _ = try context.ok(["push", "docker://\(registry.host)/steve/copy:1", "b", "--ca-file", registry.caFile!])
        _ = try context.ok(["pull", "docker://\(registry.host)/steve/copy:1", "--ref", "c", "--insecure"])
        #expect(try context.checkout("c") == (try context.fixtures.expected("base")))
    }
}

/// Registries that misbehave (Fixtures/lying-registry.py): what each asked for, and what a
/// lie costs — a clear error in bounded time, and nothing changed.
@Suite(.serialized, .lyingRegistryAvailable, .enabled(if: isRoot, "needs root: owners and devices in the images"))
struct LyingRegistryClientTests {
    let context: RegistryTestContext
    var layout: String { context.fixtures.images + "/layout" }
    init() throws { context = try RegistryTestContext() }

    /// One manifest GET per pull; a second pull only HEADs; a child whose base is here fetches its new layers only.
    @Test func requestsMade() throws {
        let registry = try LyingRegistry(mode: .honest, layout: layout)
        _ = try context.ok(["pull", "docker://\(registry.host)/\(registry.name):base", "--ref", "base"])
        let afterBase = registry.log()
        #expect(afterBase.filter { $0.isManifest && $0.method == "GET" }.count == 1, "\(afterBase)")
        #expect(afterBase.filter { $0.isBlob && $0.method == "GET" }.count == 2, "config and one layer: \(afterBase)")
        _ = try context.ok(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "child"])
        let child = Array(registry.log().dropFirst(afterBase.count))
        #expect(child.filter { $0.isManifest && $0.method == "GET" }.count == 1)
        #expect(child.filter { $0.isBlob && $0.method == "GET" }.count == 3, "config and the two new layers: \(child)")
        let again = try context.run(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "child"])
        #expect(again.succeeded && again.stderr.contains("up to date"), "\(again.stderr)")
        let third = Array(registry.log().dropFirst(afterBase.count + child.count))
        #expect(!third.contains { $0.method == "GET" && ($0.isManifest || $0.isBlob) }, "\(third)")
        #expect(third.contains { $0.method == "HEAD" && $0.isManifest })
        #expect(try context.checkout("child") == (try context.fixtures.expected("child")))
    }

    /// Each lie ends the pull with one line naming what was wrong, soon, and changes nothing.
    @Test(arguments: [
        (LyingRegistry.Mode.wrongBytes, "digest"), (.endless, "more bytes than"), (.wrongSize, "bytes where"),
        (.wrongSizeShort, "bytes where"), (.redirectLoop, "redirects"), (.hugeManifest, "MiB a JSON document"),
        (.hugeManifestClose, "MiB a JSON document"),
    ])
    func lies(_ mode: LyingRegistry.Mode, _ expected: String) throws {
        let registry = try LyingRegistry(mode: mode, layout: layout)
        let started = Date()
        let result = try context.run(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "lied"])
        let seconds = Date().timeIntervalSince(started)
        #expect(!result.succeeded)
        #expect(result.stderr.contains(expected), "\(mode): \(result.stderr)")
        #expect(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(seconds < 60, "\(mode) took \(seconds) s")
        try context.expectUnchanged("lied")
    }

    /// 503, then 429 with Retry-After: the pull waits and succeeds.
    @Test func flakyRegistry() throws {
        let registry = try LyingRegistry(mode: .flaky, layout: layout)
        _ = try context.ok(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "child"])
        let log = registry.log()
        #expect(log.contains { $0.status == 503 } && log.contains { $0.status == 429 }, "\(log)")
        #expect(try context.checkout("child") == (try context.fixtures.expected("child")))
    }

    /// A connection cut in the middle of each blob: the rest is asked for with Range, and no
    /// byte crosses twice.
    @Test func cutConnectionsResume() throws {
        let registry = try LyingRegistry(mode: .cut, layout: layout)
        let result = try context.json(try context.ok(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "child", "--json"]))
        let log = registry.log()
        #expect(log.contains { $0.isBlob && $0.status == 206 }, "\(log)")
        let layerBytes = try sh("""
            python3 -c 'import json,sys; L=sys.argv[1]; i=json.load(open(L+"/index.json")); \
            m=[x for x in i["manifests"] if x.get("annotations",{}).get("org.opencontainers.image.ref.name")=="child"][0]; \
            d=json.load(open(L+"/blobs/sha256/"+m["digest"][7:])); print(sum(l["size"] for l in d["layers"]))' \(layout)
            """).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect("\(result["bytesFetched"] ?? "")" == layerBytes, "\(result)")
        #expect(try context.checkout("child") == (try context.fixtures.expected("child")))
    }

    /// Blobs redirected to another host: it never sees the registry's Authorization.
    @Test func redirectKeepsCredentials() throws {
        let registry = try LyingRegistry(mode: .redirect, layout: layout, auth: .basic)
        _ = try context.ok(["login", registry.host, "-u", "steve", "--password-stdin"], stdin: "s3cret\n")
        _ = try context.ok(["pull", "docker://\(registry.host)/\(registry.name):child", "--ref", "child"])
        #expect(registry.log().contains { $0.authorized })
        let other = registry.otherLog()
        #expect(!other.isEmpty && !other.contains { $0.authorized }, "\(other)")
        #expect(try context.checkout("child") == (try context.fixtures.expected("child")))
    }

    /// Docker Hub as documented: `debian` is library/debian, the token flow, one counted manifest
    /// GET per pull and none for a pull that finds the image here.
    @Test func dockerHub() throws {
        let registry = try LyingRegistry(mode: .dockerhub, layout: layout)
        var environment = context.environment
        environment["LSTORE_DOCKER_HUB_URL"] = "http://\(registry.host)"
        let pull = try lstore(["pull", "docker://debian:child", "--ref", "debian"], store: context.store, environment: environment)
        #expect(pull.succeeded, "\(pull.stderr)")
        #expect(try context.header("debian", "oci-source") == "docker://docker.io/library/debian:child")
        let gets = registry.log().filter { $0.isManifest && $0.method == "GET" && $0.status == 200 }
        #expect(gets.count == 1, "\(registry.log())")
        #expect(registry.otherLog().contains { $0.path.hasPrefix("/token") })
        let again = try lstore(["pull", "debian:child", "--ref", "debian"], store: context.store, environment: environment)
        #expect(!again.succeeded, "a reference without docker:// is a peer's name")
        let second = try lstore(["pull", "docker://library/debian:child", "--ref", "debian"], store: context.store, environment: environment)
        #expect(second.succeeded && second.stderr.contains("up to date"), "\(second.stderr)")
        #expect(registry.log().filter { $0.isManifest && $0.method == "GET" && $0.status == 200 }.count == 1)
    }
}

/// A pull cut by its proxy, run again through another: what had arrived is not fetched again.
@Suite(.serialized, .registryAvailable, .enabled(if: isRoot, "needs root: owners and devices in the images"))
struct RegistryResumeTests {
    @Test func interruptedPullResumes() throws {
        let context = try RegistryTestContext()
        let registry = try RegistryFixture(mode: "anonymous")
        // A layer of 4 MiB of incompressible bytes, so that the cut lands inside it.
        let layout = context.scratch.sub("big")
        _ = try sh("""
            set -e
            mkdir -p \(context.scratch.sub("bigroot"))/data
            head -c 4194304 /dev/urandom > \(context.scratch.sub("bigroot"))/data/blob
            cd \(context.scratch.path)
            umoci init --layout big >/dev/null
            umoci new --image big:t >/dev/null
            umoci insert --image big:t bigroot/data /data >/dev/null
            """)
        try registry.seed(layout: layout, tag: "t", name: "steve/big:1")
        let port = registry.host.split(separator: ":").last!
        func relay(_ rate: Int) throws -> (Process, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [repositoryRoot + "/Fixtures/slow-proxy.py", String(port), String(rate)]
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            return (process, line.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let (slow, slowPort) = try relay(1 << 20)
        let pull = Process()
        pull.executableURL = URL(fileURLWithPath: lstoreBinary)
        pull.arguments = ["--store", context.store, "pull", "docker://127.0.0.1:\(slowPort)/steve/big:1", "--ref", "big", "--timeout", "5"]
        pull.environment = context.environment
        pull.standardError = FileHandle.nullDevice
        try pull.run()
        // Cut the relay once half the layer has arrived.
        let downloads = context.store + "/cache/downloads"
        var arrived: Int64 = 0
        for _ in 0..<200 where arrived < 2 << 20 {
            usleep(50_000)
            let sizes = (try? sh("stat -c %s \(downloads)/*.partial 2>/dev/null || true")) ?? ""
            arrived = sizes.split(separator: "\n").compactMap { Int64($0) }.max() ?? 0
        }
        kill(slow.processIdentifier, SIGKILL)
        pull.waitUntilExit()
        #expect(pull.terminationStatus != 0, "the pull fails when its proxy goes away")
        #expect(arrived >= 2 << 20)
        try context.expectUnchanged("big")

        let (fast, fastPort) = try relay(1 << 30)
        defer { kill(fast.processIdentifier, SIGKILL) }
        let result = try context.json(try context.ok(["pull", "docker://127.0.0.1:\(fastPort)/steve/big:1", "--ref", "big", "--json"]))
        let fetched = result["bytesFetched"] as? Int ?? -1
        #expect(fetched > 0 && fetched < (4 << 20) - (1 << 20), "only the rest of the layer: \(result)")
        let out = context.scratch.sub("out")
        _ = try context.ok(["checkout", "big", "--dir", out])
        #expect(try sh("cmp \(out)/data/blob \(context.scratch.sub("bigroot"))/data/blob && echo same").contains("same"))
    }
}
