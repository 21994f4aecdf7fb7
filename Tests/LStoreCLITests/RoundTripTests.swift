import Foundation
import LStoreTestSupport
import Testing

/// Commit the corner-case tree and check it out again, as a directory and as a tarball: every
/// entry must come back exactly (type, mode, owner, nanosecond mtime, content, xattrs of every
/// namespace, symlink target, device numbers, hardlink sets), as an independent oracle sees it.
@Suite(.serialized, .enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs"))
struct RoundTripTests {
    let scratch = TemporaryDirectory("roundtrip")
    var tree: String { scratch.sub("tree") }
    var store: String { scratch.sub("store") }

    init() throws {
        try makeCornerTree(scratch.sub("tree"))
        try lstoreOK(["init"], store: scratch.sub("store"))
    }

    @Test func directoryRoundTrip() throws {
        let id = try lstoreOK(["commit", tree, "--ref", "corner", "-m", "corners"], store: store)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.count == 64 && id.allSatisfy(\.isHexDigit), "commit prints the commit id")
        try lstoreOK(["checkout", "corner", "--dir", scratch.sub("out")], store: store)
        let source = try manifest(tree), restored = try manifest(scratch.sub("out"))
        #expect(source == restored, "\(manifestDifference(source, restored))")
        #expect(source.contains("security.capability"), "the fixture holds a file capability")
        #expect(source.contains("system.posix_acl_access"), "the fixture holds an ACL")
        let fsck = try lstoreOK(["fsck", "--full"], store: store)
        #expect(fsck.contains("clean"))
    }

    @Test func sparseFilesStaySparse() throws {
        try lstoreOK(["commit", tree, "--ref", "corner"], store: store)
        try lstoreOK(["checkout", "corner", "--dir", scratch.sub("out")], store: store)
        let big = try sh("find \(scratch.sub("out")) -type f -size +4G -printf '%s %b\\n'")
        let fields = big.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(fields.count == 2, "the fixture has one file over 4 GiB: \(big)")
        if fields.count == 2 {
            #expect(fields[0] > 4 << 30)
            #expect(fields[1] * 512 < 64 << 20, "holes are not written: \(fields[1]) blocks allocated")
        }
    }

    @Test func tarballRoundTrip() throws {
        try lstoreOK(["commit", tree, "--ref", "corner"], store: store)
        let tarball = scratch.sub("corner.tar")
        let checkout = try lstore(["checkout", "corner", "--tar", tarball], store: store)
        #expect(checkout.succeeded)
        #expect(checkout.stderr == "lstore: warning: 1 socket(s) left out: a tarball cannot hold sockets (e.g. /sock)\n")
        // GNU tar reads what we wrote, xattrs included.
        try sh("mkdir \(scratch.sub("x")) && tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf \(tarball) -C \(scratch.sub("x"))")
        // GNU tar does not keep a hardlink set of FIFOs (it makes two FIFOs).
        let gnuLimits = ["--exclude", "sock", "--exclude", "hard/fifo1", "--exclude", "hard/fifo2"]
        let source = try manifest(tree, options: gnuLimits), extracted = try manifest(scratch.sub("x"), options: gnuLimits)
        #expect(source == extracted, "\(manifestDifference(source, extracted))")
        // And committing our own tarball gives the very same tree.
        try lstoreOK(["commit", tarball, "--ref", "from-tar"], store: store)
        let a = try showJSON("corner"), b = try showJSON("from-tar")
        let diff = try lstoreOK(["diff", "corner", "from-tar"], store: store)
        #expect(diff == "D /sock\n", "the tarball holds exactly the committed tree but the socket: \(diff)")
        // `show` counts the same data and files, one entry less (the socket), and names the tarball.
        for key in ["size", "files"] {
            let committed = try #require(a[key] as? Int, "show --json gives \(key)")
            #expect(b[key] as? Int == committed, "\(key) of the tarball's commit: \(b[key] ?? "none")")
        }
        let entries = try #require(a["entries"] as? Int, "show --json gives entries")
        #expect(b["entries"] as? Int == entries - 1, "all entries but the socket: \(b["entries"] ?? "none")")
        #expect(b["source"] as? String == tarball)
        #expect(a["tree"] as? String != b["tree"] as? String, "the trees differ by the socket")
    }

    @Test(arguments: ["tar", "tar.gz", "tar.zst", "tar.xz"])
    func commitTarballMadeByGNUTar(_ suffix: String) throws {
        let tarball = scratch.sub("gnu." + suffix)
        let filter = ["tar": "", "tar.gz": "--gzip", "tar.zst": "--zstd", "tar.xz": "--xz"][suffix]!
        try sh("tar \(filter) --xattrs --xattrs-include='*' --acls --sparse --numeric-owner -cpf \(tarball) -C \(tree) --exclude=./sock .")
        try lstoreOK(["commit", tarball, "--ref", "gnu"], store: store)
        try lstoreOK(["checkout", "gnu", "--dir", scratch.sub("out")], store: store)
        // GNU tar does not archive sockets, nor a hardlink set of FIFOs; everything else must match.
        let gnuLimits = ["--exclude", "sock", "--exclude", "hard/fifo1", "--exclude", "hard/fifo2"]
        let source = try manifest(tree, options: gnuLimits)
        let restored = try manifest(scratch.sub("out"), options: gnuLimits)
        #expect(source == restored, "\(manifestDifference(source, restored))")
    }

    @Test func identicalTreesShareEverything() throws {
        try lstoreOK(["commit", tree, "--ref", "a"], store: store)
        let before = try #require(try statsJSON()["storedBytes"] as? Int, "stats --json gives storedBytes")
        try lstoreOK(["commit", tree, "--ref", "b"], store: store)
        let after = try #require(try statsJSON()["storedBytes"] as? Int, "stats --json gives storedBytes")
        #expect(before > 1 << 20, "the first commit stored the tree's data: \(before) bytes")
        #expect(after >= before && after - before < 4096,
                "a second commit of the same tree stores only a commit: \(after - before) bytes")
        let treeA = try #require(try showJSON("a")["tree"] as? String, "show --json gives the tree")
        let treeB = try #require(try showJSON("b")["tree"] as? String, "show --json gives the tree")
        #expect(treeA == treeB && treeA.count == 64, "one tree id: \(treeA), \(treeB)")
    }

    func showJSON(_ revision: String) throws -> [String: Any] {
        let text = try lstoreOK(["show", revision, "--json"], store: store)
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "show --json: \(text)")
    }

    func statsJSON() throws -> [String: Any] {
        let text = try lstoreOK(["stats", "--json"], store: store)
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "stats --json: \(text)")
    }
}
