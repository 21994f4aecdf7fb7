import Foundation
import LStoreTestSupport
import Testing

/// `checkout --squashfs --delta-from`: the child's image as an overlayfs upper layer over its base,
/// proven by the kernel: `overlay lowerdir=delta:base` shows exactly the child's tree.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loop and overlay mounts"))
struct DeltaTests {
    let scratch = TemporaryDirectory("delta")
    var store: String { scratch.sub("store") }
    /// What squashfs holds: whole seconds, three xattr namespaces; timecorners/ is clamped.
    let oracle = ["--mtime-seconds", "--xattr-namespaces", "user,trusted,security", "--exclude", "timecorners"]

    init() throws {
        let base = scratch.sub("base"), child = scratch.sub("child")
        try makeCornerTree(base)
        try sh("cp -a --sparse=always \(base) \(child)")
        // Every kind of change a child layer makes.
        try sh("""
            umask 022
            cd \(child)
            echo added > files/added                                   # a new file
            echo changed >> files/one                                  # new content
            chmod 0640 modes/all                                       # new mode only
            rm -rf dev                                                 # a directory deleted: one whiteout
            rm hard/b/three                                            # one name of a hardlink set gone
            echo "new content" > hard/x1                               # a hardlink set's data changed
            rm -rf xattrs && mkdir xattrs && echo fresh > xattrs/only  # a directory replaced: opaque
            rm links/dangling && mkdir links/dangling && echo in > links/dangling/file  # file → directory
            rm -rf empty-dir && echo now-a-file > empty-dir            # directory → file
            ln -sfn /elsewhere links/absolute                          # a symlink's target
            rm many/entry-1234                                         # one of 3000 deleted
            touch -d @1600000000 files deep/1/2/3                      # directory metadata only
            """)
        try lstoreOK(["init"], store: scratch.sub("store"))
        let epoch = ["SOURCE_DATE_EPOCH": "1700000000"]
        try lstoreOK(["commit", base, "--ref", "base"], store: scratch.sub("store"), environment: epoch)
        try lstoreOK(["commit", child, "--ref", "child", "--parent", "base"], store: scratch.sub("store"), environment: epoch)
    }

    func overlayManifest(_ images: [String]) throws -> String {
        try LStoreTestSupport.overlayManifest(images, in: scratch, options: oracle)
    }

    @Test func deltaOverBaseIsTheChild() throws {
        try lstoreOK(["checkout", "base", "--squashfs", scratch.sub("base.sfs")], store: store)
        try lstoreOK(["checkout", "child", "--squashfs", scratch.sub("delta.sfs"), "--delta-from", "base"], store: store)
        let merged = try overlayManifest([scratch.sub("base.sfs"), scratch.sub("delta.sfs")])
        let child = try manifest(scratch.sub("child"), options: oracle)
        #expect(merged == child, "\(manifestDifference(merged, child))")
        #expect(merged != (try manifest(scratch.sub("base"), options: oracle)))
    }

    @Test func deltaHoldsOnlyTheDifference() throws {
        let delta = scratch.sub("delta.sfs")
        try lstoreOK(["checkout", "child", "--squashfs", delta, "--delta-from", "base"], store: store)
        let listing = try sh("unsquashfs -lln \(delta) | awk '{print $1, $NF}' | sed 's|squashfs-root||'")
        let lines = Set(listing.split(separator: "\n").map(String.init))
        // Whiteouts: character devices 0/0, mode 0.
        #expect(try sh("unsquashfs -lln \(delta) | grep -c '^c--------- .* 0,  *0 .*/dev$'") == "1\n", "\(listing)")
        #expect(try sh("unsquashfs -lln \(delta) | grep -c '^c--------- .* 0,  *0 .*/many/entry-1234$'") == "1\n")
        // What changed is there, what did not is not: 2 of 3000 entries in many/ (the directory, the whiteout).
        #expect(lines.contains("-rw-r--r-- /files/added"))
        #expect(lines.contains("-rw-r--r-- /hard/x2"), "the whole hardlink set")
        #expect(!lines.contains { $0.hasSuffix("/files/two") || $0.hasSuffix("/many/entry-0001") || $0.hasSuffix("/deep/1/2/3/4") })
        #expect(lines.filter { $0.contains("/many/") }.count == 1)
        // The replaced directory is opaque and holds only the child's entries; the untouched one is not.
        let mountPoint = scratch.sub("mnt")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(delta) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        #expect(try sh("getfattr --only-values -n trusted.overlay.opaque \(mountPoint)/xattrs") == "y")
        #expect(try sh("ls \(mountPoint)/xattrs") == "only\n")
        #expect(try sh("getfattr --only-values -n trusted.overlay.opaque \(mountPoint)/links/dangling") == "y")
        #expect(try sh("getfattr --only-values -n trusted.overlay.opaque \(mountPoint)/hard/b && ls -A \(mountPoint)/hard/b") == "y",
                "emptied: opaque, no whiteout")
        #expect(try sh("getfattr -d -m trusted.overlay \(mountPoint)/files | wc -l") == "0\n")
        // Small: a few KB of metadata and the changed files, against the whole tree.
        let sizes = try sh("stat -c %s \(delta)")
        #expect((Int(sizes.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max) < 200_000, "delta is \(sizes) bytes")
    }

    @Test func deltaOfTheSameTreeIsEmpty() throws {
        let delta = scratch.sub("same.sfs")
        try lstoreOK(["checkout", "base", "--squashfs", delta, "--delta-from", "base"], store: store)
        #expect(try sh("unsquashfs -lln \(delta) | wc -l") == "1\n", "only the root")
    }

    @Test func deltaNeedsSquashFSAndABase() throws {
        let notSquashFS = try lstore(["checkout", "child", "--dir", scratch.sub("out"), "--delta-from", "base"], store: store)
        #expect(notSquashFS.status != 0 && notSquashFS.stderr.contains("--delta-from goes with --squashfs"), "\(notSquashFS.stderr)")
        let noBase = try lstore(["checkout", "child", "--squashfs", scratch.sub("x.sfs"), "--delta-from", "nosuchref"], store: store)
        #expect(noBase.status != 0 && noBase.stderr.split(separator: "\n").count == 1, "\(noBase.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.sub("x.sfs")))
    }
}

/// The Debian chain's gaming layer as a delta over its parent, boot: the overlay of the two images
/// is gaming's tree, entry for entry.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["LSTORE_CHAIN"] != nil && isRoot,
                             "set LSTORE_CHAIN to the directory debian-chain.sh built"))
struct DebianDeltaTests {
    let chain = ProcessInfo.processInfo.environment["LSTORE_CHAIN"] ?? ""
    let scratch = TemporaryDirectory("debian-delta")

    @Test func gamingOverBootIsGaming() throws {
        let store = scratch.sub("store")
        try lstoreOK(["init"], store: store)
        try lstoreOK(["commit", chain + "/rootfs-boot", "--ref", "boot"], store: store)
        try lstoreOK(["commit", chain + "/rootfs-gaming", "--ref", "gaming", "--parent", "boot"], store: store)
        try lstoreOK(["checkout", "boot", "--squashfs", scratch.sub("boot.sfs")], store: store)
        try lstoreOK(["checkout", "gaming", "--squashfs", scratch.sub("gaming.sfs"), "--delta-from", "boot"], store: store)
        try lstoreOK(["checkout", "gaming", "--squashfs", scratch.sub("gaming-full.sfs")], store: store)
        let oracle = ["--mtime-seconds", "--xattr-namespaces", "user,trusted,security"]
        try sh("""
            cd \(scratch.path) && mkdir lower upper merged
            mount -t squashfs -o loop,ro boot.sfs lower && mount -t squashfs -o loop,ro gaming.sfs upper
            mount -t overlay lstore-test -o lowerdir=upper:lower merged
            """)
        defer { _ = try? sh("cd \(scratch.path) && umount merged; umount upper; umount lower") }
        let merged = try manifest(scratch.sub("merged"), options: oracle)
        let gaming = try manifest(chain + "/rootfs-gaming", options: oracle)
        #expect(merged == gaming, "\(manifestDifference(merged, gaming))")
        #expect(merged.split(separator: "\n").count > 10000)
        let sizes = try sh("stat -c %s \(scratch.sub("gaming.sfs")) \(scratch.sub("gaming-full.sfs"))")
            .split(separator: "\n").compactMap { Int($0) }
        #expect(sizes.count == 2 && sizes[0] < sizes[1] * 3 / 4, "the delta is smaller than the whole image: \(sizes)")
    }
}
