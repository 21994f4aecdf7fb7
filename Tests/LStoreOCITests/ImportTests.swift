import Foundation
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing

/// The fixture directory, removed when the test process exits (the shared fixtures live as long
/// as the process, so their `TemporaryDirectory` is never released).
nonisolated(unsafe) private var fixtureDirectory: String?

/// The images every import test reads: made once by `Fixtures/make-oci-images.sh` (umoci and
/// skopeo from root filesystems made here) and `Fixtures/oci-forms.py` (the forms no tool here
/// writes), with `umoci unpack`'s trees as the oracle.
final class ImageFixtures: @unchecked Sendable {
    static let shared = Result { try ImageFixtures() }

    let scratch = TemporaryDirectory("oci")
    var images: String { scratch.sub("images") }

    init() throws {
        fixtureDirectory = scratch.path
        atexit {
            if let path = fixtureDirectory { _ = try? run("/bin/rm", ["-rf", path]) }
        }
        try sh("\(repositoryRoot)/Fixtures/make-oci-images.sh \(images)")
        let forms = "python3 \(repositoryRoot)/Fixtures/oci-forms.py"
        try sh("""
            cd \(images)
            \(forms) docker25 layout child docker25.tar
            \(forms) containerd layout child containerd.tar
            \(forms) platforms layout child base platforms
            \(forms) platforms layout child base manifest-list --docker
            rm -rf *.tar.d
            for tag in base child system; do umoci unpack --image layout:$tag unpacked-$tag >/dev/null; done
            """)
    }

    /// `umoci unpack`'s tree of `tag` (below `sub`), as Fixtures/manifest.py prints it.
    func expected(_ tag: String, sub: String = "") throws -> String {
        try manifest(images + "/unpacked-\(tag)/rootfs" + sub, options: ["--mtime-seconds"])
    }
}

@Suite(.serialized, .enabled(if: isRoot, "needs root: owners, devices and trusted.* xattrs in the images"))
struct ImportTests {
    let scratch = TemporaryDirectory("import")
    var store: String { scratch.sub("store") }
    let fixtures: ImageFixtures

    init() throws {
        fixtures = try ImageFixtures.shared.get()
        try lstoreOK(["init"], store: scratch.sub("store"))
    }

    /// Imports `image` to `ref` and returns the manifest of its checkout.
    func importAndCheckOut(_ image: String, ref: String, arguments: [String] = []) throws -> String {
        try lstoreOK(["import", image, "--ref", ref] + arguments, store: store)
        let out = scratch.sub("checkout-\(ref)")
        try lstoreOK(["checkout", ref, "--dir", out], store: store)
        defer { _ = try? sh("rm -rf \(out)") }
        return try manifest(out, options: ["--mtime-seconds"])
    }

    /// Every form of the child image (whiteouts, an opaque /etc, hardlinks to a lower layer)
    /// checks out as `umoci unpack` unpacks it, entry for entry.
    @Test(arguments: [
        "oci:LAYOUT/layout:child", "oci:LAYOUT/zstd:child", "docker-archive:LAYOUT/child.docker.tar",
        "docker-archive:LAYOUT/child.docker.tar:child:latest", "oci-archive:LAYOUT/child.oci.tar",
        "oci-archive:LAYOUT/child.oci.tar:child", "docker-archive:LAYOUT/docker25.tar", "docker-archive:LAYOUT/containerd.tar",
        "oci-archive:LAYOUT/containerd.tar", "oci:LAYOUT/platforms:child", "oci:LAYOUT/manifest-list:child",
    ])
    func childEqualsUmoci(_ form: String) throws {
        let image = form.replacingOccurrences(of: "LAYOUT", with: fixtures.images)
        let got = try importAndCheckOut(image, ref: "child")
        let want = try fixtures.expected("child")
        #expect(got == want, "\(form):\n\(manifestDifference(got, want))")
    }

    @Test func baseEqualsUmoci() throws {
        let got = try importAndCheckOut("oci:\(fixtures.images)/layout:base", ref: "base")
        let want = try fixtures.expected("base")
        #expect(got == want, "\(manifestDifference(got, want))")
    }

    /// An index with two platforms: this machine's by default, the other one when asked for;
    /// one that is absent is refused, naming those the index has.
    @Test(arguments: ["platforms", "manifest-list"])
    func platformSelection(_ layout: String) throws {
        let machine = try sh("uname -m").trimmingCharacters(in: .whitespacesAndNewlines)
        let other = try importAndCheckOut("oci:\(fixtures.images)/\(layout):child", ref: "other",
                                          arguments: ["--platform", machine == "aarch64" ? "linux/amd64" : "linux/arm64"])
        #expect(other == (try fixtures.expected("base")))
        let result = try lstore(["import", "oci:\(fixtures.images)/\(layout):child", "--ref", "s390x", "--platform", "linux/s390x"], store: store)
        #expect(result.status != 0)
        #expect(result.stderr.contains("no image for platform linux/s390x"), "\(result.stderr)")
    }

    /// Each layer is a commit chained by parent: the child's chain starts with the base's, and
    /// the zstd copy of the child has the same layer commits and adds no block.
    @Test func layersShareCommitsAndBlocks() throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:base", "--ref", "base"], store: store)
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:child", "--ref", "child"], store: store)
        let base = try lstoreOK(["log", "base"], store: store).split(separator: "\n").filter { $0.hasPrefix("commit ") }
        let child = try lstoreOK(["log", "child"], store: store).split(separator: "\n").filter { $0.hasPrefix("commit ") }
        #expect(base.count == 2 && child.count == 4, "a commit per layer and the image's: \(base) \(child)")
        #expect(child.last == base.last, "the child's bottom layer is the base's")
        func blocks() throws -> String {
            let fsck = try lstoreOK(["fsck"], store: store)
            // "..., 14 blocks in 2 packs: clean": the count of blocks.
            let words = fsck.split(separator: " ")
            return words.firstIndex(of: "blocks").map { String(words[$0 - 1]) } ?? fsck
        }
        let before = try blocks()
        try lstoreOK(["import", "oci:\(fixtures.images)/zstd:child", "--ref", "zstd"], store: store)
        #expect(try blocks() == before, "zstd layers cost no new block")
        let zstd = try lstoreOK(["log", "zstd"], store: store).split(separator: "\n").filter { $0.hasPrefix("commit ") }
        #expect(Array(zstd.dropFirst()) == Array(child.dropFirst()), "the same layer commits")
        #expect(try lstoreOK(["log", "child"], store: store).contains("umoci insert"), "layer messages are the image's history")
    }

    /// `--rootfs /rootfs`: the image's /rootfs directory is the tree, hardlinks inside it kept.
    @Test func rootfsDirectory() throws {
        let got = try importAndCheckOut("oci:\(fixtures.images)/layout:system", ref: "system", arguments: ["--rootfs", "/rootfs"])
        let want = try fixtures.expected("system", sub: "/rootfs")
        #expect(got == want, "\(manifestDifference(got, want))")
        let missing = try lstore(["import", "oci:\(fixtures.images)/layout:system", "--ref", "x", "--rootfs", "/nope"], store: store)
        #expect(missing.status != 0 && missing.stderr.contains("--rootfs /nope: no such directory"), "\(missing.stderr)")
        #expect(try lstore(["show", "x"], store: store).status != 0, "no ref made")
    }

    /// The image's commit records where it came from and its config, as spec/oci.md says.
    @Test func imageCommitHeaders() throws {
        let image = "oci:\(fixtures.images)/layout:child"
        let id = try lstoreOK(["import", image, "--ref", "child"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        let commit = try Store.open(at: store).commit(Digest(hex: id)!)
        let headers = Dictionary(commit.extraHeaders.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(commit.extraHeaders.map(\.key) == ["oci-source", "oci-image-digest", "oci-config", "oci-platform", "oci-architecture"],
                "\(commit.extraHeaders)")
        #expect(headers["oci-source"] == image)
        let index = try sh("python3 -c 'import json,sys; print([m[\"digest\"] for m in json.load(open(sys.argv[1]))[\"manifests\"] if m[\"annotations\"][\"org.opencontainers.image.ref.name\"] == \"child\"][0])' \(fixtures.images)/layout/index.json")
        #expect(headers["oci-image-digest"] == index.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(commit.author == "lstore import")
    }
}

/// spec/oci.md's test vector: the commits of a fixed one-layer image, byte for byte.
@Suite(.serialized)
struct ImportVectorTests {
    @Test func specVector() throws {
        let scratch = TemporaryDirectory("oci-vector")
        let store = scratch.sub("store")
        try lstoreOK(["init"], store: store)
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py tiny \(scratch.sub("tiny"))")
        let id = try lstoreOK(["import", "oci:\(scratch.sub("tiny")):tiny", "--ref", "tiny"], store: store,
                              environment: ["SOURCE_DATE_EPOCH": ""]).trimmingCharacters(in: .whitespacesAndNewlines)
        let opened = try Store.open(at: store)
        let image = try opened.commit(Digest(hex: id)!)
        let layer = try opened.commit(image.parents[0])
        let text = String(decoding: layer.encoded(), as: UTF8.self)
        let imageText = String(decoding: image.encoded(), as: UTF8.self).replacingOccurrences(of: scratch.sub("tiny"), with: "DIR")
        let spec = try String(contentsOfFile: repositoryRoot + "/spec/oci.md", encoding: .utf8)
        #expect(spec.contains("```\n" + text + "```\n"), "the layer commit:\n\(text)")
        #expect(spec.contains("```\n" + imageText + "```\n"), "the image commit:\n\(imageText)")
    }
}

/// Hostile images end with one line naming the image, the layer and the entry, and change no ref;
/// `fsck` is clean after.
@Suite(.serialized)
struct HostileImageTests {
    let scratch = TemporaryDirectory("oci-hostile")
    var store: String { scratch.sub("store") }

    init() throws {
        try lstoreOK(["init"], store: scratch.sub("store"))
    }

    @Test(arguments: [
        ("dotdot", "layer 1 (sha256:", "entry 'etc/../../evil': path escapes with '..'"),
        ("absolute", "layer 1 (sha256:", "entry '/etc/evil': absolute path"),
        ("through-symlink", "layer 1 (sha256:", "entry 'link/evil': 'link' on its path is a symlink, not a directory"),
        ("hardlink-out", "layer 1 (sha256:", "entry 'etc/shadow': path escapes with '..'"),
        ("whiteout-through-symlink", "layer 2 (sha256:", "entry 'link/.wh.passwd': 'link' on its path is a symlink, not a directory"),
        ("whiteout-dotdot", "layer 2 (sha256:", "entry 'etc/.wh..': a whiteout of '.', which is not a name in its directory"),
        ("huge", "layer 1 (sha256:", "entry 'usr/huge': "),
        ("bomb", "layer 1 (sha256:", "a decompression bomb"),
        ("big-manifest", "manifest sha256:000000000000", "104857600 bytes, more than the 4 MiB a JSON document may have"),
        ("bad-digest", "layer 1 (sha256:", "the blob has digest sha256:"),
        ("bad-diff-id", "layer 1 (sha256:", "not the diff_id sha256:"),
        ("diff-id-count", "config sha256:", "2 diff_ids for the manifest's 1 layers"),
    ])
    func refused(_ hostile: (name: String, part: String, message: String)) throws {
        let image = scratch.sub(hostile.name)
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py hostile \(hostile.name) \(image)")
        let result = try lstore(["import", "oci:\(image):bad", "--ref", "bad"], store: store,
                                environment: ["LSTORE_IMPORT_RATIO_FLOOR": "1048576"])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(result.stderr)")
        #expect(result.stderr.hasPrefix("lstore: \(image): \(hostile.part)"), "names the image and the part: \(result.stderr)")
        #expect(result.stderr.contains(hostile.message), "\(result.stderr)")
        #expect(try lstoreOK(["refs"], store: store).isEmpty, "no ref")
        #expect(try lstoreOK(["fsck"], store: store).contains("clean"))
    }
}
