import Foundation
import LStoreTestSupport
import Testing

/// The Debian chain (base → boot → dev, boot → gaming) from `debian-chain.sh`, named by
/// `$LSTORE_CHAIN`: each layer committed on its parent and checked out exactly, as a directory and
/// as a squashfs image the kernel mounts.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["LSTORE_CHAIN"] != nil && isRoot,
                             "set LSTORE_CHAIN to the directory debian-chain.sh built"))
struct DebianChainTests {
    let chain = ProcessInfo.processInfo.environment["LSTORE_CHAIN"] ?? ""
    let scratch = TemporaryDirectory("debian")
    var store: String { scratch.sub("store") }

    @Test func chainRoundTripsExactly() throws {
        try lstoreOK(["init"], store: store)
        let parents = ["base": nil, "boot": "base", "dev": "boot", "gaming": "boot"]
        for layer in ["base", "boot", "dev", "gaming"] {
            try lstoreOK(["commit", "\(chain)/rootfs-\(layer)", "--ref", layer] + (parents[layer]!.map { ["--parent", $0] } ?? []),
                         store: store)
        }
        for layer in ["dev", "gaming"] {
            let out = scratch.sub("out-\(layer)")
            try lstoreOK(["checkout", layer, "--dir", out], store: store)
            let source = try manifest("\(chain)/rootfs-\(layer)"), restored = try manifest(out)
            #expect(source == restored, "\(layer): \(manifestDifference(source, restored))")
            #expect(source.split(separator: "\n").count > 5000)
            try sh("rm -rf \(out)")
        }
        // gaming shares boot's blocks: what it does not add itself is (nearly) all of boot.
        let stats = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["stats", "--json"], store: store).utf8)) as! [String: Any]
        let refs = stats["refs"] as! [[String: Any]]
        let gaming = refs.first { $0["name"] as? String == "gaming" }!, boot = refs.first { $0["name"] as? String == "boot" }!
        let shared = (gaming["storedBytes"] as! Int) - (gaming["ownBytes"] as! Int)
        #expect(Double(shared) >= 0.9 * Double(boot["storedBytes"] as! Int), "gaming \(gaming), boot \(boot)")
        #expect((stats["storedBytes"] as! Int) < (stats["logicalBytes"] as! Int) / 3, "the chain dedups: \(stats)")
        #expect(try lstoreOK(["fsck", "--full"], store: store).contains("clean"))

        // Images: boot first, then its children find part of its fragment blocks in the cache.
        // The kernel mounts each exactly as the tree (in what squashfs can hold).
        let oracle = ["--mtime-seconds", "--xattr-namespaces", "user,trusted,security"]
        try lstoreOK(["checkout", "boot", "--squashfs", scratch.sub("boot.sfs")], store: store)
        for layer in ["dev", "gaming"] {
            let image = scratch.sub("\(layer).sfs")
            let summary = try JSONSerialization.jsonObject(
                with: Data(try lstoreOK(["checkout", layer, "--squashfs", image, "--json"], store: store).utf8)) as! [String: Any]
            // Only files under 3 KiB compressed are packed at the store's settings (the rest are copied
            // as blocks of their own), so a changed or added one touches more of each fragment:
            // dev, which adds files all over /usr, finds a few dozen; gaming about half of its own.
            let cached = summary["cachedFragments"] as! Int, fragments = summary["fragments"] as! Int
            #expect(cached >= 10 && (layer != "gaming" || cached * 5 >= fragments * 2), "\(layer) reuses boot's fragments: \(summary)")
            #expect((summary["ownBlockFiles"] as! Int) > 1000, "\(layer): small files stand alone: \(summary)")
            #expect((summary["copiedBlocks"] as! Int) > 1000, "\(layer): stored blocks are copied: \(summary)")
            let mountPoint = scratch.sub("mnt-\(layer)")
            try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
            defer { _ = try? sh("umount \(mountPoint)") }
            let source = try manifest("\(chain)/rootfs-\(layer)", options: oracle), mounted = try manifest(mountPoint, options: oracle)
            #expect(source == mounted, "\(layer).sfs: \(manifestDifference(source, mounted))")
        }
        // mksquashfs of the same tree at the same settings holds the same files. Its inodes differ
        // only for the files that are dense on disk but hold a block of zeros: the store keeps that
        // block as a hole, which lstore's image counts as sparse bytes (an extended inode) and
        // mksquashfs, for a file not sparse on disk, does not (spec/squashfs.md §6).
        try sh("mksquashfs \(chain)/rootfs-dev \(scratch.sub("theirs.sfs")) -comp zstd -Xcompression-level 6 -noappend -quiet -no-progress >/dev/null 2>&1")
        let denseWithZeros = try sh("""
            cd \(chain)/rootfs-dev && python3 -c '
            import os, stat
            B = 131072
            for d, _, names in os.walk("."):
                for name in names:
                    path = os.path.join(d, name)
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode) and st.st_blocks * 512 >= st.st_size:
                        with open(path, "rb") as f:
                            while len(block := f.read(B)) == B:
                                if block.count(0) == B:
                                    print(path[1:] + " has an extended type")
                                    break
            '
            """)
        let diff = try run("sqfsdiff", ["-a", scratch.sub("theirs.sfs"), "-b", scratch.sub("dev.sfs")])
        #expect(diff.stderr.isEmpty && diff.stdout.split(separator: "\n").sorted() == denseWithZeros.split(separator: "\n").sorted(),
                "sqfsdiff: \(diff.stdout)\(diff.stderr); expected only: \(denseWithZeros)")
    }
}
