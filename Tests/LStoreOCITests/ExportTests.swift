import Foundation
import LStoreTestSupport
import Testing

/// `lstore export` read back by umoci, skopeo and `lstore import`: the trees they unpack are the
/// commits' trees, and the bytes are the same on every run and at any thread count.
@Suite(.serialized, .enabled(if: isRoot, "needs root: owners, devices and trusted.* xattrs in the images"))
struct ExportTests {
    let scratch = TemporaryDirectory("export")
    var store: String { scratch.sub("store") }
    let fixtures: ImageFixtures

    init() throws {
        fixtures = try ImageFixtures.shared.get()
        try lstoreOK(["init"], store: scratch.sub("store"))
    }

    /// `umoci unpack`'s tree of `image` (an `oci:` layout and tag), as manifest.py prints it.
    func umociTree(_ layout: String, tag: String) throws -> String {
        let bundle = scratch.sub("bundle-\(UUID().uuidString.prefix(8))")
        try sh("umoci unpack --image \(layout):\(tag) \(bundle) >/dev/null")
        defer { _ = try? sh("rm -rf \(bundle)") }
        return try manifest(bundle + "/rootfs", options: ["--mtime-seconds"])
    }

    /// The manifest of `ref`'s checkout.
    func checkout(_ ref: String, store: String? = nil, options: [String] = ["--mtime-seconds"]) throws -> String {
        let out = scratch.sub("checkout-\(UUID().uuidString.prefix(8))")
        try lstoreOK(["checkout", ref, "--dir", out], store: store ?? self.store)
        defer { _ = try? sh("rm -rf \(out)") }
        return try manifest(out, options: options)
    }

    /// The trees of `ref`'s first-parent chain that differ from their parent's, bottom first.
    func layerTrees(_ ref: String, store: String) throws -> [String] {
        let log = try lstoreOK(["log", ref, "--json"], store: store)
        guard let commits = try JSONSerialization.jsonObject(with: Data(log.utf8)) as? [[String: Any]] else {
            throw TestFailure("log --json is not a list")
        }
        var trees = commits.reversed().compactMap { $0["tree"] as? String }
        trees = trees.enumerated().filter { $0.offset == 0 || trees[$0.offset - 1] != $0.element }.map(\.element)
        return trees
    }

    /// Every file of a layout directory and its SHA-256, sorted.
    func contents(_ directory: String) throws -> String {
        try sh("cd \(directory) && find . -type f | LC_ALL=C sort | xargs sha256sum")
    }

    /// The child image (whiteouts, an opaque /etc, hardlinks into a lower layer), imported and
    /// exported in every format and compression, unpacks under umoci as the original does, and
    /// imports back into the same layer trees. umoci 0.4 reads neither zstd layers nor Docker
    /// manifests: the zstd export reaches it through `skopeo copy` to gzip, and the Docker one is
    /// checked by import alone (skopeo 1.9 finds no Docker manifest in an OCI layout either).
    @Test(arguments: [["--compression", "gzip"], ["--compression", "zstd"], ["--compression", "none"], ["--format", "docker"]])
    func chainRoundTrip(_ arguments: [String]) throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:child", "--ref", "child"], store: store)
        let layout = scratch.sub("out")
        try lstoreOK(["export", "child", "oci:\(layout):child"] + arguments, store: store)
        let want = try fixtures.expected("child")
        if arguments.contains("zstd") {
            try sh("skopeo copy -q --dest-compress-format gzip oci:\(layout):child oci:\(scratch.sub("gzip")):child")
            let got = try umociTree(scratch.sub("gzip"), tag: "child")
            #expect(got == want, "\(arguments):\n\(manifestDifference(got, want))")
        } else if arguments.contains("docker") {
            let manifest = try sh("cat \(layout)/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"manifests\"][0][\"digest\"][7:])' \(layout)/index.json)")
            #expect(manifest.contains("application/vnd.docker.distribution.manifest.v2+json"))
            #expect(manifest.contains("application/vnd.docker.container.image.v1+json"))
            #expect(manifest.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"))
        } else {
            let got = try umociTree(layout, tag: "child")
            #expect(got == want, "\(arguments):\n\(manifestDifference(got, want))")
        }

        let again = scratch.sub("again")
        try lstoreOK(["init"], store: again)
        try lstoreOK(["import", "oci:\(layout):child", "--ref", "child"], store: again)
        #expect(try layerTrees("child", store: again) == (try layerTrees("child", store: store)))
        #expect(try checkout("child", store: again, options: []) == (try checkout("child", options: [])))
        #expect(try checkout("child", store: again) == want)
        #expect(try lstoreOK(["log", "child"], store: again).contains("umoci insert"), "layer messages come back as history")
    }

    /// skopeo reads the layout and copies it; the copy imports as the original.
    @Test func skopeoReadsIt() throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:child", "--ref", "child"], store: store)
        let layout = scratch.sub("out")
        let digest = try lstoreOK(["export", "child", "oci:\(layout):v1"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        let inspect = try sh("skopeo inspect oci:\(layout):v1")
        #expect(inspect.contains("\"Digest\": \"\(digest)\""), "\(inspect)")
        #expect(inspect.contains("\"Architecture\": \"amd64\"") || inspect.contains("\"Architecture\": \"arm64\""), "\(inspect)")
        try sh("skopeo copy -q oci:\(layout):v1 oci-archive:\(scratch.sub("copy.tar")):v1")
        try lstoreOK(["import", "oci-archive:\(scratch.sub("copy.tar")):v1", "--ref", "copy"], store: store)
        #expect(try checkout("copy", options: []) == (try checkout("child", options: [])))
    }

    /// The same commit gives the same bytes: twice, and at one thread or eight.
    @Test(arguments: ["gzip", "zstd"])
    func reproducible(_ compression: String) throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:child", "--ref", "child"], store: store)
        var outputs: [String] = []
        for (index, threads) in ["1", "8", "8"].enumerated() {
            let layout = scratch.sub("out-\(index)")
            try lstoreOK(["export", "child", "oci:\(layout):child", "--threads", threads, "--compression", compression], store: store)
            outputs.append(try contents(layout))
        }
        #expect(outputs[0] == outputs[1] && outputs[1] == outputs[2], "\(outputs)")
        // The base layer's tar is over 1 MiB: several gzip members or zstd frames.
        let layers = try sh("ls -S \(scratch.sub("out-0"))/blobs/sha256 | head -1")
        let biggest = scratch.sub("out-0") + "/blobs/sha256/" + layers.trimmingCharacters(in: .whitespacesAndNewlines)
        let frames = compression == "gzip"
            ? try sh("python3 -c 'import sys; d=open(sys.argv[1],\"rb\").read(); print(d.count(bytes([0x1f,0x8b,8,0,0,0,0,0])))' \(biggest)")
            : try sh("python3 -c 'import sys; d=open(sys.argv[1],\"rb\").read(); print(d.count(bytes([0x28,0xb5,0x2f,0xfd])))' \(biggest)")
        #expect((Int(frames.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 3, "\(frames) members in \(biggest)")
    }

    /// The corner tree (xattrs of every namespace, ACLs, devices, long and non-UTF-8 names,
    /// hardlinks, sparse files, nanosecond times) survives export → umoci unpack, and export →
    /// lstore import exactly. What an image cannot hold is left out: sockets, `trusted.overlay.*`
    /// xattrs; and umoci (Go's tar) drops xattrs with empty values, which PAX reads as deletions.
    @Test func cornerTree() throws {
        let tree = scratch.sub("tree")
        try makeCornerTree(tree)
        try lstoreOK(["commit", tree, "--ref", "corner", "-m", "corner tree"], store: store)
        let layout = scratch.sub("out")
        let result = try lstore(["export", "corner", "oci:\(layout):corner"], store: store)
        #expect(result.succeeded, "\(result.stderr)")
        #expect(result.stderr.contains("left out 1 socket"), "\(result.stderr)")

        func strip(_ manifest: String, emptyXattrs: Bool) -> String {
            let emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            return manifest.split(separator: "\n").filter { !$0.contains(" socket ") }.map { line in
                line.split(separator: " ").filter { word in
                    !word.hasPrefix("xattr:trusted.overlay.") && !(emptyXattrs && word.hasPrefix("xattr:") && word.hasSuffix("=" + emptyDigest))
                }.joined(separator: " ")
            }.joined(separator: "\n")
        }
        let want = try checkout("corner")
        let got = try umociTree(layout, tag: "corner")
        #expect(strip(got, emptyXattrs: true) == strip(want, emptyXattrs: true),
                "\(manifestDifference(strip(got, emptyXattrs: true), strip(want, emptyXattrs: true)))")

        try lstoreOK(["import", "oci:\(layout):corner", "--ref", "back"], store: store)
        let exact = try checkout("corner", options: []), back = try checkout("back", options: [])
        #expect(strip(back, emptyXattrs: false) == strip(exact, emptyXattrs: false),
                "\(manifestDifference(strip(back, emptyXattrs: false), strip(exact, emptyXattrs: false)))")
    }

    /// `oci-archive:` and `docker-archive:` files import back as the commit, skopeo reads them,
    /// and a layout takes several tags in its index.
    @Test func archivesAndTags() throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:child", "--ref", "child"], store: store)
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:base", "--ref", "base"], store: store)
        let want = try checkout("child", options: [])
        let oci = scratch.sub("child.oci.tar"), docker = scratch.sub("child.docker.tar")
        try lstoreOK(["export", "child", "oci-archive:\(oci):child"], store: store)
        try lstoreOK(["export", "child", "docker-archive:\(docker):child:v2"], store: store)
        try lstoreOK(["import", "oci-archive:\(oci):child", "--ref", "from-oci"], store: store)
        try lstoreOK(["import", "docker-archive:\(docker):child:v2", "--ref", "from-docker"], store: store)
        #expect(try checkout("from-oci", options: []) == want)
        #expect(try checkout("from-docker", options: []) == want)
        #expect(try sh("skopeo inspect docker-archive:\(docker)").contains("\"Os\": \"linux\""))
        #expect(try sh("skopeo inspect oci-archive:\(oci):child").contains("\"Os\": \"linux\""))

        let layout = scratch.sub("tags")
        try lstoreOK(["export", "base", "oci:\(layout):base"], store: store)
        try lstoreOK(["export", "child", "oci:\(layout):child"], store: store)
        try lstoreOK(["export", "child", "oci:\(layout):child"], store: store)
        let index = try String(contentsOfFile: layout + "/index.json", encoding: .utf8)
        #expect(index.components(separatedBy: "org.opencontainers.image.ref.name").count == 3, "two entries: \(index)")
        #expect(try umociTree(layout, tag: "base") == (try fixtures.expected("base")))
    }

    /// Bad input is one line naming it, with a non-zero exit, and nothing written.
    @Test func badInput() throws {
        try lstoreOK(["import", "oci:\(fixtures.images)/layout:base", "--ref", "base"], store: store)
        let missing = try lstore(["export", "nosuchref", "oci:\(scratch.sub("a")):x"], store: store)
        #expect(missing.status != 0 && missing.stderr.contains("nosuchref"), "\(missing.stderr)")
        let target = try lstore(["export", "base", "docker://example/x"], store: store)
        #expect(target.status != 0 && target.stderr.contains("not an image destination"), "\(target.stderr)")
        let compression = try lstore(["export", "base", "docker-archive:\(scratch.sub("d.tar"))", "--compression", "zstd"], store: store)
        #expect(compression.status != 0 && compression.stderr.split(separator: "\n").count == 1, "\(compression.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("a")) && !FileManager.default.fileExists(atPath: scratch.sub("d.tar")))
    }
}

/// spec/oci.md §7.5: the tiny image imported, then exported with the defaults, has these digests.
@Suite(.enabled(if: isRoot, "imports an image with owners"))
struct ExportVectorTests {
    @Test func specVector() throws {
        let scratch = TemporaryDirectory("export-vector")
        let store = scratch.sub("store")
        try lstoreOK(["init"], store: store)
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py tiny \(scratch.sub("tiny"))")
        try lstoreOK(["import", "oci:\(scratch.sub("tiny")):tiny", "--ref", "tiny"], store: store, environment: ["SOURCE_DATE_EPOCH": ""])
        let json = try lstoreOK(["export", "tiny", "oci:\(scratch.sub("out")):tiny", "--json"], store: store)
        guard let result = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let layers = result["layers"] as? [[String: Any]], let diffIDs = result["diffIDs"] as? [String] else {
            throw TestFailure("export --json: \(json)")
        }
        let text = """
            layer    \(layers.first?["digest"] ?? "")
            diff_id  \(diffIDs.first ?? "")
            config   \(result["config"] ?? "")
            manifest \(result["manifest"] ?? "")

            """
        let spec = try String(contentsOfFile: repositoryRoot + "/spec/oci.md", encoding: .utf8)
        #expect(spec.contains("```\n" + text + "```\n"), "the vector:\n\(text)")
    }
}
