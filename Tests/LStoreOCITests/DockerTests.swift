import Foundation
import LStoreTestSupport
import Testing

/// The way the project was first imagined: Docker builds the system, lstore takes it, and what
/// lstore pushes Docker runs. A real engine (Debian's docker.io, no bridge) on the chain's
/// Debian base.
@Suite(.serialized, .dockerAvailable, .registryAvailable,
       .enabled(if: debianChain != nil && isRoot, "needs root and LSTORE_CHAIN (the Debian chain)"))
struct DockerTests {
    @Test func dockerBuildImportPushRun() throws {
        let context = try RegistryTestContext()
        let engine = try DockerEngine()
        defer { engine.stop() }
        // docker import of the Debian base, a Dockerfile FROM it with one RUN, docker save.
        let saved = context.scratch.sub("child.tar")
        try engine.buildChild(rootfs: debianChain! + "/rootfs-base", output: saved)
        _ = try context.ok(["import", "docker-archive:\(saved)", "--ref", "child"])

        // lstore's checkout equals umoci's unpack of the same archive, entry for entry.
        let layout = context.scratch.sub("layout"), bundle = context.scratch.sub("bundle")
        try sh("skopeo copy --quiet docker-archive:\(saved) oci:\(layout):child && umoci unpack --image \(layout):child \(bundle) >/dev/null")
        let umoci = try manifest(bundle + "/rootfs", options: ["--mtime-seconds"])
        let tree = try context.checkout("child")
        #expect(tree == umoci)
        #expect(tree.contains("etc/lstore-built") && tree.contains("opt/lstore/hello") && !tree.contains("etc/motd"),
                "the RUN step's changes")
        let log = try context.ok(["log", "child", "--json"])
        #expect(log.components(separatedBy: "oci-layer").count - 1 == 2, "the base layer and the RUN's: \(log)")

        // Pushed to a registry, the image is pulled and run by Docker.
        let registry = try RegistryFixture(mode: "anonymous")
        let image = "\(registry.host)/steve/child:1"
        _ = try context.ok(["push", "docker://\(image)", "child"])
        try engine.docker(["pull", "--quiet", image])
        let ran = try engine.docker(["run", "--rm", "--network", "none", image, "sh", "-c",
                                     "cat /etc/lstore-built /opt/lstore/hello /etc/debian_version; test ! -e /etc/motd && echo no motd"])
        let debian = try String(contentsOfFile: debianChain! + "/rootfs-base/etc/debian_version", encoding: .utf8)
        #expect(ran == "built by docker build\nhello\n\(debian)no motd\n", "\(ran)")

        // What Docker holds of it, saved again, is the same tree.
        let again = context.scratch.sub("again.tar")
        try engine.docker(["save", "-o", again, image])
        _ = try context.ok(["import", "docker-archive:\(again)", "--ref", "again"])
        #expect(try context.checkout("again") == tree)
        let fsck = try context.run(["fsck"])
        #expect(fsck.succeeded, "\(fsck.stdout)\(fsck.stderr)")
    }
}
