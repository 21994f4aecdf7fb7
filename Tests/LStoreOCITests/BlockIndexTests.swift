import Foundation
import LStoreTestSupport
import Testing

/// The Debian chain's directory (`$LSTORE_CHAIN`), when the integration tests have one.
private let chain = ProcessInfo.processInfo.environment["LSTORE_CHAIN"].flatMap { $0.isEmpty ? nil : $0 }

/// Updates through a registry by blocks (spec/registry.md §6), on Debian's docker-registry,
/// which has no referrers API: the block index is found through its tag.
@Suite(.serialized, .registryAvailable, .enabled(if: chain != nil && isRoot, "needs root and LSTORE_CHAIN (the Debian chain)"))
struct BlockIndexTests {
    @Test func childPullFetchesOnlyItsNewBlocks() throws {
        let scratch = TemporaryDirectory("blocks")
        let source = scratch.sub("source"), here = scratch.sub("here"), plain = scratch.sub("plain")
        for store in [source, here, plain] { try lstoreOK(["init"], store: store) }
        try lstoreOK(["commit", chain! + "/rootfs-base", "--ref", "base"], store: source)
        try lstoreOK(["commit", chain! + "/rootfs-boot", "--ref", "boot", "--parent", "base"], store: source)
        let tree = scratch.sub("tree")
        try sh("cp -a \(chain!)/rootfs-gaming \(tree)")
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

        // The same tree as by layers, as umoci's unpack of the image, and fsck is clean.
        let byLayers = try json(try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:1", "--ref", "gaming", "--layers", "--json"],
                                             store: plain, environment: environment))
        #expect(byLayers["by"] as? String == "layers")
        #expect(try treeOf("gaming", store: here) == (try treeOf("gaming", store: plain)))
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
    }

    /// A commit's tree id, from `lstore show --json`.
    private func treeOf(_ ref: String, store: String) throws -> String {
        let shown = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["show", ref, "--json"], store: store).utf8)) as? [String: Any]
        return shown?["tree"] as? String ?? ""
    }
}
