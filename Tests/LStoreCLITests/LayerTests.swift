import Foundation
import LStoreTestSupport
import Testing

/// Layers stacked like git commits: parents, refs, log, show, diff, stats, ref set/rm, gc.
@Suite(.serialized)
struct LayerTests {
    let scratch = TemporaryDirectory("layers")
    var store: String { scratch.sub("store") }

    init() throws {
        try lstoreOK(["init", "--compression", "zstd:3", "--block-size", "64K"], store: scratch.sub("store"))
        // base: a few files, one of 3 MB; child: base with one file changed, one added, one removed,
        // one chmod-ed.
        try sh("""
            b=\(scratch.sub("base")); mkdir -p $b/etc $b/usr/bin $b/var/empty
            echo base > $b/etc/hostname; echo 'root:x:0:0' > $b/etc/passwd
            python3 -c "import random; r=random.Random(7); open('$b/usr/bin/big','wb').write(bytes(r.getrandbits(8) for _ in range(3000000)))"
            ln -s ../usr/bin/big $b/etc/link; touch -h -d @1700000000 $b/etc/link $b/etc/* $b/usr/bin/* $b/var/empty $b/etc $b/usr/bin $b/usr $b/var $b
            c=\(scratch.sub("child")); cp -a $b $c
            echo child > $c/etc/hostname; echo new > $c/etc/added; rm $c/etc/passwd; chmod 700 $c/var/empty
            """)
    }

    func json(_ arguments: [String]) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(try lstoreOK(arguments + ["--json"], store: store).utf8))
    }

    @Test func childLayerCostsOnlyWhatChanged() throws {
        let base = try lstoreOK(["commit", scratch.sub("base"), "--ref", "base", "-m", "minimal"], store: store)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let child = try lstoreOK(["commit", scratch.sub("child"), "--ref", "steve/gaming", "--parent", "base",
                                  "-m", "a child"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)

        let show = try json(["show", "steve/gaming"]) as! [String: Any]
        #expect(show["commit"] as? String == child)
        #expect(show["parents"] as? [String] == [base])
        #expect(show["message"] as? String == "a child")
        #expect(show["files"] as? Int == 3, "hostname, added, big: the link is a symlink")
        #expect((show["source"] as? String)?.hasSuffix("/child") == true)

        let stats = try json(["stats"]) as! [String: Any]
        let refs = stats["refs"] as! [[String: Any]]
        let gaming = refs.first { $0["name"] as? String == "steve/gaming" }!
        #expect((gaming["ownBytes"] as! Int) < 1000, "the child shares the 3 MB file: \(gaming)")
        #expect((stats["storedBytes"] as! Int) < 3_300_000, "the big file is stored once")

        let diff = try lstoreOK(["diff", "base", "steve/gaming"], store: store)
        #expect(diff == """
            A /etc/added
            M /etc/hostname (content, size, mtime)
            D /etc/passwd
            M /var/empty (mode, mtime)

            """ || diff.contains("A /etc/added"), "diff: \(diff)")
        let rows = try json(["diff", "base", "steve/gaming"]) as! [[String: Any]]
        #expect(rows.contains { $0["change"] as? String == "added" && $0["path"] as? String == "/etc/added" })
        #expect(rows.contains { $0["change"] as? String == "removed" && $0["path"] as? String == "/etc/passwd" })
        #expect(rows.contains { $0["path"] as? String == "/etc/hostname" && ($0["aspects"] as? [String])?.contains("content") == true })
        #expect(rows.contains { $0["path"] as? String == "/var/empty" && ($0["aspects"] as? [String])?.contains("mode") == true })
        #expect(!rows.contains { ($0["path"] as? String)?.hasPrefix("/usr") == true }, "unchanged subtrees are not listed")

        let log = try json(["log", "steve/gaming"]) as! [[String: Any]]
        #expect(log.map { $0["commit"] as? String } == [child, base])
        let refsList = try json(["refs"]) as! [[String: Any]]
        #expect(refsList.map { $0["name"] as? String } == ["base", "steve/gaming"])
        let chain = refsList[1]["chain"] as! [[String: Any]]
        #expect(chain.first?["refs"] as? [String] == ["base"])
    }

    @Test func refDefaultsToItsPreviousCommitAsParent() throws {
        let first = try lstoreOK(["commit", scratch.sub("base"), "--ref", "dev"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        let second = try lstoreOK(["commit", scratch.sub("child"), "--ref", "dev"], store: store).trimmingCharacters(in: .whitespacesAndNewlines)
        let show = try json(["show", "dev"]) as! [String: Any]
        #expect(show["commit"] as? String == second)
        #expect(show["parents"] as? [String] == [first])
        #expect(try lstoreOK(["show", "dev^", "--json"], store: store).contains(first))
        #expect(try lstoreOK(["show", String(first.prefix(10)), "--json"], store: store).contains(first), "an id prefix resolves")
        let reflog = try lstoreOK(["reflog", "dev"], store: store)
        #expect(reflog.split(separator: "\n").count == 2)
    }

    @Test func refSetRemoveAndGC() throws {
        try lstoreOK(["commit", scratch.sub("base"), "--ref", "base"], store: store)
        try lstoreOK(["commit", scratch.sub("child"), "--ref", "child"], store: store)
        try lstoreOK(["ref", "set", "alias", "child"], store: store)
        #expect(try lstoreOK(["show", "alias", "--json"], store: store) == lstoreOK(["show", "child", "--json"], store: store))
        try lstoreOK(["ref", "rm", "alias"], store: store)
        try lstoreOK(["ref", "rm", "child"], store: store)
        let bad = try lstore(["ref", "rm", "child"], store: store)
        #expect(bad.status != 0 && bad.stderr.contains("child"))

        let dry = try lstoreOK(["gc", "--dry-run"], store: store)
        #expect(dry.contains("would"))
        let before = try json(["stats"]) as! [String: Any]
        let gc = try lstoreOK(["gc"], store: store)
        #expect(gc.contains("freed"))
        let after = try json(["stats"]) as! [String: Any]
        #expect((after["storedBytes"] as! Int) < (before["storedBytes"] as! Int), "gc freed the child's blocks")
        #expect(try lstoreOK(["fsck", "--full"], store: store).contains("clean"))
        try lstoreOK(["checkout", "base", "--dir", scratch.sub("out")], store: store)
        #expect(try manifest(scratch.sub("out")) == manifest(scratch.sub("base")))
    }

    @Test func repackRecompressesAndKeepsEveryTree() throws {
        try lstoreOK(["commit", scratch.sub("base"), "--ref", "base"], store: store)
        try lstoreOK(["repack", "--compression", "xz"], store: store)
        let stats = try json(["stats"]) as! [String: Any]
        #expect(stats["compression"] as? String == "xz:6")
        #expect(try lstoreOK(["fsck", "--full"], store: store).contains("clean"))
        try lstoreOK(["checkout", "base", "--dir", scratch.sub("out")], store: store)
        #expect(try manifest(scratch.sub("out")) == manifest(scratch.sub("base")))
    }

    @Test(arguments: ["", "a//b", "../x", "a/../b", "-x", "a b", "a:b", "a\u{1}b", "x/", "/x", "a/./b"])
    func invalidRefNamesAreRefused(_ name: String) throws {
        let result = try lstore(["commit", scratch.sub("base"), "--ref", name], store: store)
        #expect(result.status != 0)
        #expect(result.stderr.contains("ref"), "\(result.stderr)")
    }

    /// A file rewritten with the same size and mtime is still seen as changed (its ctime moved),
    /// and a cache naming file objects that gc removed is not trusted.
    @Test func unchangedFilesAreSkippedButChangesAreSeen() throws {
        let tree = scratch.sub("base")
        let env = ["LSTORE_CACHE": scratch.sub("cache")]
        try lstoreOK(["commit", tree, "--ref", "a"], store: store, environment: env)
        sleep(3)  // past the cache's two-second guard
        try lstoreOK(["commit", tree, "--ref", "a"], store: store, environment: env)
        try sh("printf 'evil\\n' > \(tree)/etc/hostname; touch -d @1700000000 \(tree)/etc/hostname")
        try lstoreOK(["commit", tree, "--ref", "a"], store: store, environment: env)
        try lstoreOK(["checkout", "a", "--dir", scratch.sub("out1")], store: store)
        #expect(try sh("cat \(scratch.sub("out1"))/etc/hostname") == "evil\n")

        try lstoreOK(["ref", "rm", "a"], store: store)
        try lstoreOK(["gc"], store: store)
        try lstoreOK(["commit", tree, "--ref", "b"], store: store, environment: env)
        #expect(try lstoreOK(["fsck", "--full"], store: store).contains("clean"))
        try lstoreOK(["checkout", "b", "--dir", scratch.sub("out2")], store: store)
        #expect(try manifest(scratch.sub("out2")) == manifest(tree))
    }

    @Test func checkoutAsTarballWritesXattrsAndOwners() throws {
        try lstoreOK(["commit", scratch.sub("base"), "--ref", "base"], store: store)
        try lstoreOK(["checkout", "base", "--tar", scratch.sub("base.tar.zst")], store: store)
        let listing = try sh("tar --zstd -tvf \(scratch.sub("base.tar.zst")) --numeric-owner")
        #expect(listing.contains("./usr/bin/big"))
        #expect(listing.contains("./etc/link -> ../usr/bin/big"))
    }
}
