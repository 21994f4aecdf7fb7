import Foundation
import LStoreTestSupport
import Testing

/// A checkout gives every entry the mode the tree records whatever the caller's umask: the
/// restorer sets modes explicitly instead of clearing the process's umask.
@Suite(.enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs"))
struct UmaskTests {
    @Test(arguments: ["077", "777"])
    func checkoutIgnoresTheUmask(_ mask: String) throws {
        let scratch = TemporaryDirectory("umask")
        try makeCornerTree(scratch.sub("tree"))
        try lstoreOK(["init"], store: scratch.sub("store"))
        try lstoreOK(["commit", scratch.sub("tree"), "--ref", "corner"], store: scratch.sub("store"))
        try sh("umask \(mask); '\(lstoreBinary)' --store '\(scratch.sub("store"))' checkout corner --dir '\(scratch.sub("out"))'")
        let source = try manifest(scratch.sub("tree")), restored = try manifest(scratch.sub("out"))
        #expect(source == restored, "\(manifestDifference(source, restored))")
    }
}
