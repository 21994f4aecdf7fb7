import Foundation
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Every codec at every block size, on the small tree: the kernel, unsquashfs and sqfs2tar read
/// our image exactly as the source; sqfsdiff finds no difference from mksquashfs's image of the
/// same tree; our reader reads both images as the same tree.
@Suite(.enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs, loop mounts"))
struct MatrixTests {
    @Test(arguments: allCodecs, allBlockSizes)
    func everyReaderAgrees(compression: String, blockSize: Int) throws {
        let scratch = TemporaryDirectory("sqfs-matrix")
        let tree = scratch.sub("tree")
        try makeSquashFSTree(tree)
        let source = try manifest(tree, options: manifestOptions)

        let ours = scratch.sub("ours.sfs"), theirs = scratch.sub("mksquashfs.sfs")
        let result = try writeImage(tree, to: ours, compression: compression, blockSize: blockSize)
        #expect(result.report.isEmpty, "the tree has nothing squashfs cannot hold: \(result.report)")
        #expect(result.data.duplicates == 1, "data/same-b shares the data of data/same-a")
        #expect(result.inodeTypes.count == 14, "every basic and extended inode type: \(result.inodeTypes)")
        try mksquashfs(tree, to: theirs, compression: compression, blockSize: blockSize)

        let mounted = try kernelManifest(ours, scratch: scratch)
        #expect(mounted == source, "kernel: \(manifestDifference(source, mounted))")
        let extracted = try checkWithSquashfsTools(ours, scratch: scratch, sockets: ["dev/sock", "dev/sock-plain"])
        #expect(extracted == source, "unsquashfs: \(manifestDifference(source, extracted))")

        let diff = try run("sqfsdiff", ["-T", "-a", theirs, "-b", ours])
        #expect(diff.status == 0 && diff.stdout.isEmpty && diff.stderr.isEmpty,
                "sqfsdiff: \(diff.stdout)\(diff.stderr)")

        let (ourTree, ourRestore) = try readBack(ours, scratch: scratch)
        let (theirTree, theirRestore) = try readBack(theirs, scratch: scratch)
        #expect(ourRestore == source, "our reader, our image: \(manifestDifference(source, ourRestore))")
        #expect(theirRestore == source, "our reader, mksquashfs's image: \(manifestDifference(source, theirRestore))")
        #expect(describe(ourTree) == describe(theirTree), "\(lineDifference(describe(theirTree), describe(ourTree)))")
    }
}
