import Foundation
import LStoreTestSupport
import Testing

/// Updates through a registry by blocks (spec/registry.md §6), on Debian's docker-registry,
/// which has no referrers API: the block index is found through its tag.
@Suite(.serialized, .registryAvailable, .enabled(if: debianChain != nil && isRoot, "needs root and LSTORE_CHAIN (the Debian chain)"))
struct BlockIndexTests {
    @Test func childPullFetchesOnlyItsNewBlocks() throws {
        let scratch = TemporaryDirectory("blocks")
        let source = scratch.sub("source"), here = scratch.sub("here"), plain = scratch.sub("plain")
        for store in [source, here, plain] { try lstoreOK(["init"], store: store) }
        try lstoreOK(["commit", debianChain! + "/rootfs-base", "--ref", "base"], store: source)
        try lstoreOK(["commit", debianChain! + "/rootfs-boot", "--ref", "boot", "--parent", "base"], store: source)
        let tree = scratch.sub("tree")
        try sh("cp -a \(debianChain!)/rootfs-gaming \(tree)")
        try lstoreOK(["commit", tree, "--ref", "gaming", "--parent", "boot"], store: source)
        let registry = try RegistryFixture(mode: "anonymous")
        let environment = ["DOCKER_CONFIG": scratch.sub("docker")]
        func json(_ text: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
        }
        var newPackBytes = 0
        for (ref, tag) in [("boot", "boot:1"), ("gaming", "gaming:1")] {
            let pushed = try json(try lstoreOK(["push", "docker://\(registry.host)/steve/\(tag)", ref, "--json"], store: source,
                                               environment: environment))
            #expect(pushed["packs"] as? Int == (ref == "boot" ? 2 : 3), "\(pushed)")
            // gaming's push sends its own pack and index; boot's packs are mounted from steve/boot.
            newPackBytes = pushed["packBytesUploaded"] as? Int ?? 0
        }
        // No referrers API here: the tag fallback names the block index.
        let tags = try sh("curl -s http://\(registry.host)/v2/steve/gaming/tags/list")
        #expect(tags.contains("\"sha256-"), "\(tags)")

        // A store with boot pulls gaming by blocks: about the compressed size of gaming's new objects.
        let boot = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/boot:1", "--ref", "boot", "--json"], store: here,
                                         environment: environment))
        #expect(boot["by"] as? String == "blocks", "\(boot)")
        let gaming = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--json"], store: here,
                                           environment: environment))
        #expect(gaming["by"] as? String == "blocks" && gaming["reusedLayers"] as? Int == 2, "\(gaming)")
        let rawManifest = try sh("skopeo inspect --raw --tls-verify=false docker://\(registry.host)/steve/gaming:1")
        let layers = (try json(rawManifest)["layers"] as? [[String: Any]] ?? []).compactMap { $0["size"] as? Int }
        let fetched = gaming["bytesFetched"] as? Int ?? 0
        #expect(fetched > newPackBytes / 2 && Double(fetched) <= Double(newPackBytes) * 1.10, "fetched \(fetched), gaming's pack \(newPackBytes)")
        #expect(fetched < (layers.last ?? 0) * 2, "\(fetched) against the child layer's \(layers.last ?? 0)")

        // The layers a block index brings are bounded as imported ones are: past the limit, the
        // pull stops with one line and moves no ref.
        let bounded = scratch.sub("bounded")
        try lstoreOK(["init"], store: bounded)
        try lstoreOK(["pull", "docker://\(registry.host)/steve/boot:1", "--ref", "boot"], store: bounded, environment: environment)
        var tight = environment
        // 150 MiB: more than gaming's compressed layer (about 100 MiB), less than its tar.
        tight["LSTORE_IMPORT_LAYER_LIMIT"] = "157286400"
        let capped = try lstore(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming"], store: bounded, environment: tight)
        #expect(!capped.succeeded && capped.stderr.contains("the limit for this layer"), "\(capped.stderr)")
        #expect(try !lstoreOK(["refs"], store: bounded).contains("gaming"))
        #expect(try lstoreOK(["fsck"], store: bounded).contains("clean"))

        // The same tree as by layers, as umoci's unpack of the image, and fsck is clean.
        let byLayers = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--layers", "--json"],
                                             store: plain, environment: environment))
        #expect(byLayers["by"] as? String == "layers")
        #expect(try treeOf("gaming", store: here) == (try treeOf("gaming", store: plain)))
        // The image commit stands on the layer commits a pull by layers makes, the pushed commit
        // its second parent; so a pull by layers into a store that pulled by blocks reuses them.
        let blocksParents = try parentsOf("gaming", store: here), layersParents = try parentsOf("gaming", store: plain)
        #expect(blocksParents.count == 2 && layersParents.count == 1 && blocksParents.first == layersParents.first,
                "\(blocksParents) \(layersParents)")
        let bundle = scratch.sub("bundle"), out = scratch.sub("out")
        try sh("skopeo copy --quiet --src-tls-verify=false docker://\(registry.host)/steve/gaming:1 oci:\(scratch.sub("layout")):g "
               + "&& umoci unpack --image \(scratch.sub("layout")):g \(bundle) >/dev/null")
        try lstoreOK(["checkout", "gaming", "--dir", out], store: here)
        #expect(try manifest(out, options: ["--mtime-seconds"]) == (try manifest(bundle + "/rootfs", options: ["--mtime-seconds"])))
        #expect(try lstoreOK(["fsck"], store: here).contains("clean"))

        // Again: nothing new. One file changed and pushed as a new tag: a few kilobytes.
        let again = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--json"], store: here,
                                          environment: environment))
        #expect(again["upToDate"] as? Bool == true && again["bytesFetched"] as? Int == 0, "\(again)")
        try sh("echo changed > \(tree)/etc/motd")
        try lstoreOK(["commit", tree, "--ref", "gaming2", "--parent", "gaming"], store: source)
        try lstoreOK(["push", "docker://\(registry.host)/steve/gaming:2", "gaming2"], store: source, environment: environment)
        let small = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:2", "--ref", "gaming", "--json"], store: here,
                                          environment: environment))
        #expect(small["by"] as? String == "blocks" && (small["bytesFetched"] as? Int ?? .max) < 64 << 10, "\(small)")
        let motd = scratch.sub("motd")
        try lstoreOK(["checkout", "gaming", "--dir", motd], store: here)
        #expect(try String(contentsOfFile: motd + "/etc/motd", encoding: .utf8) == "changed\n")

        // Killed once its first 64 MiB are durable, the pull run again does not fetch them again.
        let resumed = scratch.sub("resumed")
        try lstoreOK(["init"], store: resumed)
        try lstoreOK(["pull", "docker://\(registry.host)/steve/boot:1", "--ref", "boot"], store: resumed, environment: environment)
        let packsBefore = try packBytes(resumed)
        let pull = Process()
        pull.executableURL = URL(fileURLWithPath: lstoreBinary)
        pull.arguments = ["--store", resumed, "pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming"]
        pull.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        pull.standardOutput = FileHandle.nullDevice
        pull.standardError = FileHandle.nullDevice
        try pull.run()
        var published = 0
        for _ in 0..<600 where pull.isRunning && published < 64 << 20 {
            usleep(20_000)
            published = try packBytes(resumed) - packsBefore
        }
        kill(pull.processIdentifier, SIGKILL)
        pull.waitUntilExit()
        if published >= 64 << 20 {
            let rest = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--json"],
                                             store: resumed, environment: environment))
            let again = rest["bytesFetched"] as? Int ?? .max
            #expect(again <= newPackBytes - (60 << 20), "fetched \(again) of \(newPackBytes) after \(published) were kept")
            #expect(try treeOf("gaming", store: resumed) == (try treeOf("gaming", store: plain)))
        } else {
            Issue.record("the pull ended before 64 MiB were durable (\(published) bytes): nothing to resume")
        }
        #expect(try lstoreOK(["fsck"], store: resumed).contains("clean"))

        // A registry that serves a pack with one byte changed: the pull fails, says which pack,
        // and moves no ref; the store stays clean.
        let artifact = try json(try sh("curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' "
                                       + "http://\(registry.host)/v2/steve/gaming/manifests/sha256-\(imageDigest(registry, "steve/gaming:1").dropFirst("sha256:".count))"))
        let entry = (artifact["manifests"] as? [[String: Any]])?.last?["digest"] as? String ?? ""
        let blocks = try json(try sh("curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(registry.host)/v2/steve/gaming/manifests/\(entry)"))
        let pack = ((blocks["layers"] as? [[String: Any]]) ?? []).dropLast().last?["digest"] as? String ?? ""
        let hex = String(pack.dropFirst("sha256:".count))
        let data = "\(registry.directory)/storage/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
        try sh("size=$(stat -c %s \(data)); printf '\\x5a' | dd of=\(data) bs=1 seek=$((size / 2)) conv=notrunc status=none")
        let corrupt = scratch.sub("corrupt")
        try lstoreOK(["init"], store: corrupt)
        try lstoreOK(["pull", "docker://\(registry.host)/steve/boot:1", "--ref", "boot"], store: corrupt, environment: environment)
        let refused = try lstore(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming"], store: corrupt, environment: environment)
        #expect(!refused.succeeded && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(try !lstoreOK(["refs"], store: corrupt).contains("gaming"))
        #expect(try lstoreOK(["fsck"], store: corrupt).contains("clean"))

        // The pack gone from the registry (its garbage collection, say): the pull goes by layers.
        try sh("rm -rf \(registry.directory)/storage/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)")
        let fallback = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--json"],
                                             store: corrupt, environment: environment))
        #expect(fallback["by"] as? String == "layers" && (fallback["layersBecause"] as? String ?? "").contains("gone"), "\(fallback)")
        #expect(try treeOf("gaming", store: corrupt) == (try treeOf("gaming", store: plain)))
        #expect(try lstoreOK(["fsck"], store: corrupt).contains("clean"))
    }

    /// The bytes of a store's packs.
    private func packBytes(_ store: String) throws -> Int {
        Int(try sh("stat -c %s \(store)/packs/*.pack 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'")
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// The digest of NAME:TAG's manifest, as the registry gives it.
    private func imageDigest(_ registry: RegistryFixture, _ image: String) throws -> String {
        let parts = image.split(separator: ":")
        let head = try sh("curl -sI -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(registry.host)/v2/\(parts[0])/manifests/\(parts[1])")
        let line = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("docker-content-digest:") } ?? ""
        return String(line.drop { $0 != ":" }.dropFirst()).trimmingCharacters(in: .whitespaces)
    }

    /// A commit's parents, from `lstore show --json`.
    private func parentsOf(_ ref: String, store: String) throws -> [String] {
        let shown = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["show", ref, "--json"], store: store).utf8)) as? [String: Any]
        return shown?["parents"] as? [String] ?? []
    }

    /// A commit's tree id, from `lstore show --json`.
    private func treeOf(_ ref: String, store: String) throws -> String {
        let shown = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["show", ref, "--json"], store: store).utf8)) as? [String: Any]
        return shown?["tree"] as? String ?? ""
    }
}

/// spec/registry.md §6.5: the tiny image's block index, byte for byte.
@Suite(.serialized, .registryAvailable)
struct BlockIndexVectorTests {
    @Test func specVector() throws {
        let scratch = TemporaryDirectory("blocks-vector")
        let store = scratch.sub("store")
        try lstoreOK(["init"], store: store)
        try sh("python3 \(repositoryRoot)/Fixtures/oci-forms.py tiny \(scratch.sub("tiny"))")
        try lstoreOK(["import", "oci:\(scratch.sub("tiny")):tiny", "--ref", "tiny"], store: store, environment: ["SOURCE_DATE_EPOCH": ""])
        let registry = try RegistryFixture(mode: "anonymous")
        // The layer commit: the image commit above it records where the import read from.
        let pushed = try lstoreOK(["push", "docker://\(registry.host)/lstore/tiny:1", "tiny^", "--json"], store: store,
                                  environment: ["DOCKER_CONFIG": scratch.sub("docker")])
        let result = try JSONSerialization.jsonObject(with: Data(pushed.utf8)) as? [String: Any] ?? [:]
        let artifact = result["blockIndex"] as? String ?? ""
        let manifest = try sh("curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://\(registry.host)/v2/lstore/tiny/manifests/\(artifact)")
        let layers = (try JSONSerialization.jsonObject(with: Data(manifest.utf8)) as? [String: Any])?["layers"] as? [[String: Any]] ?? []
        let text = """
            image    \(result["manifest"] ?? "")
            pack     \(layers.first?["digest"] ?? "") \(layers.first?["size"] ?? "")
            index    \(layers.last?["digest"] ?? "") \(layers.last?["size"] ?? "")
            artifact \(artifact)

            """
        let spec = try String(contentsOfFile: repositoryRoot + "/spec/registry.md", encoding: .utf8)
        #expect(spec.contains("```\n" + text + "```\n"), "the vector:\n\(text)")
    }
}
