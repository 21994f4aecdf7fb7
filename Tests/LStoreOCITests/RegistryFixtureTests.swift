import Foundation
import LStoreTestSupport
import Testing

/// The digest that tag `tag` names in the OCI layout `layout`'s index.json.
private func tagDigest(_ layout: String, _ tag: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))
    let index = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    let manifests = index?["manifests"] as? [[String: Any]] ?? []
    for manifest in manifests {
        let annotations = manifest["annotations"] as? [String: String]
        if annotations?["org.opencontainers.image.ref.name"] == tag, let digest = manifest["digest"] as? String { return digest }
    }
    throw TestFailure("\(layout): no tag \(tag)")
}

/// `skopeo ARGS`, its result (the tests look at failures too).
@discardableResult
private func skopeo(_ arguments: [String]) throws -> ProcessResult {
    try run("skopeo", arguments)
}

/// The fixtures the registry client's tests run against, checked with skopeo alone: each
/// registry mode takes an image and gives the same image back, refuses who it should refuse,
/// and the lying registry serves an image honestly or with bytes skopeo rejects.
@Suite(.serialized, .registryAvailable)
struct RegistryFixtureTests {
    let scratch = TemporaryDirectory("regfix")
    var tiny: String { scratch.sub("tiny") }

    init() throws {
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py tiny \(tiny)")
    }

    /// An image pushed into each mode comes back out with the same manifest digest, and
    /// `skopeo inspect` shows it; the modes with credentials refuse a push without them or with
    /// a wrong password; tls refuses a client that does not trust the fixture's CA.
    @Test(arguments: ["anonymous", "htpasswd", "token", "tls", "tls,htpasswd", "tls,token"])
    func roundTrip(_ mode: String) throws {
        let registry = try RegistryFixture(mode: mode)
        #expect(registry.host.hasPrefix("127.0.0.1:"))
        let want = try tagDigest(tiny, "tiny")
        let pushed = try registry.seed(layout: tiny, tag: "tiny", name: "lstore/tiny:1")
        #expect(pushed == want)

        let inspect = try skopeo(["inspect"] + registry.skopeoInspectOptions() + ["docker://\(registry.host)/lstore/tiny:1"])
        #expect(inspect.succeeded, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("\"Digest\": \"\(want)\""), "\(inspect.stdout)")

        let back = scratch.sub("back-\(mode)")
        let copy = try skopeo(["copy", "-q"] + registry.skopeoOptions("src") + ["docker://\(registry.host)/lstore/tiny:1", "oci:\(back):back"])
        #expect(copy.succeeded, "\(copy.stderr)")
        #expect(try tagDigest(back, "back") == want)

        let tls = mode.contains("tls")
        #expect(registry.caFile.map { FileManager.default.fileExists(atPath: $0) } ?? !tls)
        if tls {
            let untrusted = try skopeo(["inspect", "docker://\(registry.host)/lstore/tiny:1"] +
                                       (registry.needsCredentials ? ["--creds", "steve:s3cret"] : []))
            #expect(!untrusted.succeeded && untrusted.stderr.contains("certificate"), "\(untrusted.stderr)")
            let curl = try run("curl", ["-sf", "--cacert", registry.caFile ?? "", registry.url + "/v2/", "-o", "/dev/null",
                                        "-w", "%{http_code}"])
            #expect(["200", "401"].contains(curl.stdout), "curl with the CA: \(curl.stdout) \(curl.stderr)")
        }

        let target = "docker://\(registry.host)/lstore/other:1"
        let tlsOptions = registry.certDirectory.map { ["--dest-cert-dir", $0] } ?? ["--dest-tls-verify=false"]
        let anonymous = try skopeo(["copy", "-q"] + tlsOptions + ["oci:\(tiny):tiny", target])
        let wrong = try skopeo(["copy", "-q"] + registry.skopeoOptions("dest", credentials: "steve:wrong") + ["oci:\(tiny):tiny", target])
        if registry.needsCredentials {
            #expect(!anonymous.succeeded, "an anonymous push is refused")
            #expect(!wrong.succeeded, "a wrong password is refused")
            let inspectTLS = registry.certDirectory.map { ["--cert-dir", $0] } ?? ["--tls-verify=false"]
            let anonymousPull = try skopeo(["inspect", "--no-creds"] + inspectTLS + ["docker://\(registry.host)/lstore/tiny:1"])
            // htpasswd lets no one in without credentials; the token server gives anyone pull.
            #expect(anonymousPull.succeeded == mode.contains("token"), "\(anonymousPull.stderr)")
        } else {
            #expect(anonymous.succeeded, "\(anonymous.stderr)")
        }

        if let tokens = registry.tokenServer {
            let log = tokens.log()
            #expect(log.contains { $0.account == "steve" && $0.granted == ["repository:lstore/tiny:pull,push"] }, "\(log)")
            #expect(log.contains { $0.status == 401 && $0.account == "rejected:steve" }, "\(log)")
            #expect(log.contains { $0.account == "anonymous" && $0.granted.allSatisfy { $0.hasSuffix(":pull") } }, "\(log)")
            #expect(!log.contains { $0.account == "anonymous" && $0.granted.contains { $0.contains("push") } }, "\(log)")
        }
    }

    /// Deleting is enabled: a manifest deleted by digest is gone.
    @Test func deleteIsEnabled() throws {
        let registry = try RegistryFixture(mode: "anonymous")
        try registry.seed(layout: tiny, tag: "tiny", name: "lstore/tiny:1")
        let delete = try skopeo(["delete", "--tls-verify=false", "docker://\(registry.host)/lstore/tiny:1"])
        #expect(delete.succeeded, "\(delete.stderr)")
        let inspect = try skopeo(["inspect", "--tls-verify=false", "docker://\(registry.host)/lstore/tiny:1"])
        #expect(!inspect.succeeded)
    }

    /// stop() ends the registry: its port answers no more.
    @Test func stopEndsTheRegistry() throws {
        let registry = try RegistryFixture(mode: "anonymous")
        let url = registry.url + "/v2/"
        #expect(try run("curl", ["-sf", "-o", "/dev/null", url]).succeeded)
        registry.stop()
        #expect(!(try run("curl", ["-sf", "-o", "/dev/null", "--max-time", "2", url]).succeeded))
    }
}

/// The import tests' images (an OCI index of two platforms and a Docker manifest list among
/// them) pushed with their digests, and copied back out whole.
@Suite(.serialized, .registryAvailable, .enabled(if: isRoot, "needs root: the images hold owners, devices, trusted.* xattrs"))
struct RegistrySeedTests {
    @Test func testImagesKeepTheirDigests() throws {
        let fixtures = try ImageFixtures.shared.get()
        let registry = try RegistryFixture(mode: "anonymous")
        let digests = try registry.seedTestImages(images: fixtures.images)
        #expect(digests["lstore/child:latest"] == (try tagDigest(fixtures.images + "/layout", "child")))
        #expect(digests["lstore/platforms:latest"] == (try tagDigest(fixtures.images + "/platforms", "child")))
        #expect(digests["lstore/manifest-list:latest"] == (try tagDigest(fixtures.images + "/manifest-list", "child")))
        #expect(digests.count == 6, "\(digests)")
        let raw = try skopeo(["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/lstore/manifest-list:latest"])
        #expect(raw.stdout.contains("application/vnd.docker.distribution.manifest.v2+json") && raw.stdout.contains("\"arm64\""),
                "\(raw.stdout)")
        let scratch = TemporaryDirectory("regfix-seed")
        let copy = try skopeo(["copy", "-q", "--all", "--src-tls-verify=false", "docker://\(registry.host)/lstore/platforms:latest",
                               "oci:\(scratch.sub("platforms")):p"])
        #expect(copy.succeeded, "\(copy.stderr)")
        #expect(try tagDigest(scratch.sub("platforms"), "p") == digests["lstore/platforms:latest"])
    }
}

/// The lying registry serves its layout's image to skopeo honestly, and with a changed byte
/// skopeo refuses; its logs record each request and whether it carried credentials.
@Suite(.serialized, .lyingRegistryAvailable)
struct LyingRegistryTests {
    let scratch = TemporaryDirectory("lying-test")
    var tiny: String { scratch.sub("tiny") }

    init() throws {
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py tiny \(tiny)")
    }

    @Test func honestServesTheImage() throws {
        let registry = try LyingRegistry(mode: .honest, layout: tiny)
        let out = scratch.sub("honest")
        let copy = try skopeo(["copy", "-q", "--src-tls-verify=false", "docker://\(registry.host)/test/image:tiny", "oci:\(out):x"])
        #expect(copy.succeeded, "\(copy.stderr)")
        #expect(try tagDigest(out, "x") == (try tagDigest(tiny, "tiny")))
        let log = registry.log()
        #expect(log.filter { $0.isManifest && $0.method == "GET" }.count == 1, "one manifest GET: \(log)")
        let blobs = log.filter(\.isBlob).compactMap(\.reference)
        #expect(blobs.count == 2 && Set(blobs).count == 2, "config and layer, each once: \(log)")
        #expect(log.allSatisfy { !$0.authorized && $0.status == 200 }, "\(log)")
    }

    @Test func wrongBytesAreRefused() throws {
        let registry = try LyingRegistry(mode: .wrongBytes, layout: tiny)
        let copy = try skopeo(["copy", "-q", "--src-tls-verify=false", "docker://\(registry.host)/test/image:tiny",
                               "oci:\(scratch.sub("wrong")):x"])
        #expect(!copy.succeeded)
        #expect(copy.stderr.contains("Digest did not match"), "\(copy.stderr)")
    }

    /// Blob GETs go to the other host; skopeo's credentials reach the registry, never it.
    @Test func redirectRecordsWhereCredentialsWent() throws {
        let registry = try LyingRegistry(mode: .redirect, layout: tiny, auth: .basic)
        let copy = try skopeo(["copy", "-q", "--src-tls-verify=false", "--src-creds", "steve:s3cret",
                               "docker://\(registry.host)/test/image:tiny", "oci:\(scratch.sub("redirect")):x"])
        #expect(copy.succeeded, "\(copy.stderr)")
        let log = registry.log(), other = registry.otherLog()
        #expect(log.filter(\.isBlob).allSatisfy { $0.status == 307 && $0.authorized }, "\(log)")
        #expect(other.count == 2 && other.allSatisfy { $0.isBlob && $0.status == 200 && !$0.authorized }, "\(other)")
        let anonymous = try skopeo(["inspect", "--tls-verify=false", "--no-creds", "docker://\(registry.host)/test/image:tiny"])
        #expect(!anonymous.succeeded, "basic auth wants credentials")
    }

    /// Docker Hub's stand-in: a token from the other host first, names under library/, the
    /// rate-limit headers on manifest GETs.
    @Test func dockerhubTokenFlow() throws {
        let registry = try LyingRegistry(mode: .dockerhub, layout: tiny, rateLimit: 5)
        let inspect = try skopeo(["inspect", "--tls-verify=false", "docker://\(registry.host)/library/debian:tiny"])
        #expect(inspect.succeeded, "\(inspect.stderr)")
        let tokens = registry.otherLog().filter { $0.route == "/token" }
        #expect(!tokens.isEmpty && tokens.allSatisfy { $0.path.contains("service=registry.docker.io") }, "\(registry.otherLog())")
        #expect(registry.log().first?.status == 401)
        let unknown = try skopeo(["inspect", "--tls-verify=false", "docker://\(registry.host)/debian:tiny"])
        #expect(!unknown.succeeded, "only library/debian exists")
        let head = try sh("curl -sI http://\(registry.host)/v2/library/debian/manifests/tiny")
        #expect(head.contains("Bearer realm=\"http://\(registry.otherHost)/token\",service=\"registry.docker.io\""), "\(head)")
    }
}

/// A Docker engine without a bridge builds an image from a root filesystem and saves it.
@Suite(.serialized, .dockerAvailable, .enabled(if: toolExists("busybox"), "needs busybox for a small root"))
struct DockerEngineTests {
    @Test func buildAndSave() throws {
        let scratch = TemporaryDirectory("docker-test")
        let root = scratch.sub("root")
        try sh("""
            mkdir -p \(root)/bin \(root)/etc \(root)/tmp
            cp "$(command -v busybox)" \(root)/bin/busybox
            for c in sh echo mkdir rm; do ln -s busybox \(root)/bin/$c; done
            echo motd > \(root)/etc/motd
            """)
        let engine = try DockerEngine()
        #expect(FileManager.default.fileExists(atPath: engine.socket))
        let out = scratch.sub("child.tar")
        try engine.buildChild(rootfs: root, output: out)
        let inspect = try sh("skopeo inspect docker-archive:\(out)")
        let layers = (try JSONSerialization.jsonObject(with: Data(inspect.utf8)) as? [String: Any])?["Layers"] as? [String]
        #expect(layers?.count == 2, "base and the RUN's layer: \(inspect)")
        let layer = try sh("tar -xOf \(out) --wildcards '*/layer.tar' | tar -ti")
        #expect(layer.contains("etc/.wh.motd") && layer.contains("etc/lstore-built"), "\(layer)")
        #expect(!(try sh("ip -o link")).contains("docker0"), "no docker0 bridge")
        engine.stop()
        #expect(!FileManager.default.fileExists(atPath: engine.directory + "/pid"))
    }
}
