import Foundation
import LStoreTestSupport
import Testing

/// `checkout --squashfs`, `squashfs DIR`, `inspect` and `commit IMAGE.sfs`, proven by the kernel.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loop mounts"))
struct SquashFSCommandTests {
    let scratch = TemporaryDirectory("sqcli")
    var store: String { scratch.sub("store") }
    var tree: String { scratch.sub("tree") }
    /// What squashfs holds: whole seconds, three xattr namespaces; timecorners/ is clamped.
    let oracle = ["--mtime-seconds", "--xattr-namespaces", "user,trusted,security", "--exclude", "timecorners"]

    init() throws {
        try makeCornerTree(scratch.sub("tree"))
        try lstoreOK(["init"], store: scratch.sub("store"))
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "corner"], store: scratch.sub("store"),
                     environment: ["SOURCE_DATE_EPOCH": "1700000000"])
    }

    /// Mounts `image` read-only with the kernel and returns its manifest.
    func mountedManifest(_ image: String) throws -> String {
        let mountPoint = scratch.sub("mnt-\(UUID().uuidString.prefix(8))")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        return try manifest(mountPoint, options: oracle)
    }

    @Test(arguments: [[], ["--compression", "xz", "--block-size", "1M"], ["--compression", "lz4:hc", "--block-size", "4K"]])
    func checkoutAsSquashFSMountsExactly(_ options: [String]) throws {
        let image = scratch.sub("corner.sfs")
        let result = try lstore(["checkout", "corner", "--squashfs", image] + options, store: store)
        #expect(result.succeeded, "\(result.stderr)")
        #expect(result.stderr.contains("system.posix_acl_access"), "what squashfs cannot hold is reported: \(result.stderr)")
        let source = try manifest(tree, options: oracle)
        let mounted = try mountedManifest(image)
        #expect(source == mounted, "\(manifestDifference(source, mounted))")
        #expect(try sh("unsquashfs -lln \(image) >/dev/null && echo ok") == "ok\n")
    }

    @Test func imagesAreReproducible() throws {
        try lstoreOK(["checkout", "corner", "--squashfs", scratch.sub("a.sfs")], store: store)
        try lstoreOK(["checkout", "corner", "--squashfs", scratch.sub("b.sfs"), "--threads", "1"], store: store)
        // A second store that committed the same tree gives the same image.
        try lstoreOK(["init"], store: scratch.sub("store2"))
        try lstoreOK(["commit", tree, "--ref", "same"], store: scratch.sub("store2"), environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        try lstoreOK(["checkout", "same", "--squashfs", scratch.sub("c.sfs")], store: scratch.sub("store2"))
        let sums = try sh("cd \(scratch.path) && sha256sum a.sfs b.sfs c.sfs | cut -d' ' -f1 | sort -u | wc -l")
        #expect(sums == "1\n", "three checkouts, one image")
    }

    @Test func imagesCommitBackAndInspect() throws {
        let image = scratch.sub("corner.sfs")
        try lstoreOK(["checkout", "corner", "--squashfs", image], store: store)
        let inspect = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["inspect", image, "--json"]).utf8)) as! [String: Any]
        #expect(inspect["compression"] as? String == "zstd")
        #expect(inspect["blockSize"] as? Int == 131072)
        #expect((inspect["entries"] as? Int ?? 0) > 3000)
        // Our image and mksquashfs's, committed back, give the same tree as each other.
        try lstoreOK(["commit", image, "--ref", "ours"], store: store)
        try sh("mksquashfs \(tree) \(scratch.sub("mk.sfs")) -noappend -no-progress -comp gzip >/dev/null 2>&1")
        try lstoreOK(["commit", scratch.sub("mk.sfs"), "--ref", "theirs"], store: store)
        let diff = try lstoreOK(["diff", "ours", "theirs"], store: store)
        #expect(diff.split(separator: "\n").allSatisfy { $0.hasPrefix("M /timecorners") }, "only the clamped times differ: \(diff)")
        try lstoreOK(["checkout", "ours", "--dir", scratch.sub("out")], store: store)
        let restored = try manifest(scratch.sub("out"), options: oracle), source = try manifest(tree, options: oracle)
        #expect(restored == source, "\(manifestDifference(restored, source))")
    }

    @Test func plainDirectoryToImage() throws {
        let image = scratch.sub("plain.sfs")
        try lstoreOK(["squashfs", tree, image, "--compression", "gzip"])
        #expect(try mountedManifest(image) == manifest(tree, options: oracle))
    }

    @Test func hostileImageIsRefused() throws {
        try sh("head -c 5000 /dev/urandom > \(scratch.sub("junk.sfs")) && printf hsqs | dd of=\(scratch.sub("junk.sfs")) conv=notrunc status=none")
        let before = try sh("cd \(store) && find . -path ./tmp -prune -o -type f ! -name lock ! -name '*.lock' -print0 | sort -z | xargs -0 sha256sum")
        let result = try lstore(["commit", scratch.sub("junk.sfs"), "--ref", "junk"], store: store)
        #expect(result.status != 0 && result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(try sh("cd \(store) && find . -path ./tmp -prune -o -type f ! -name lock ! -name '*.lock' -print0 | sort -z | xargs -0 sha256sum") == before)
    }
}
