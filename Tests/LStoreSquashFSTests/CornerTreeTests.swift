import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// The corner tree (`Fixtures/make-corner-tree.sh`) at a few codecs and block sizes, the report
/// of what squashfs cannot hold, and reproducible output.
@Suite(.serialized, .enabled(if: isRoot, "needs root: device nodes, owners, trusted.* xattrs, loop mounts"))
struct CornerTreeTests {
    let scratch = TemporaryDirectory("sqfs-corner")
    var tree: String { scratch.sub("tree") }

    init() throws {
        try makeCornerTree(scratch.sub("tree"))
    }

    @Test(arguments: [("zstd", 128 << 10), ("lz4:hc", 4 << 10), ("xz", 1 << 20), ("gzip", 128 << 10)])
    func cornerTree(compression: String, blockSize: Int) throws {
        let source = try manifest(tree, options: manifestOptions + ["--exclude", "timecorners"])
        let ours = scratch.sub("ours.sfs"), theirs = scratch.sub("mksquashfs.sfs")
        try writeImage(tree, to: ours, compression: compression, blockSize: blockSize, exclude: ["timecorners"])
        try mksquashfs(tree, to: theirs, compression: compression, blockSize: blockSize, exclude: ["timecorners"])

        let mounted = try kernelManifest(ours, scratch: scratch)
        #expect(mounted == source, "kernel: \(manifestDifference(source, mounted))")
        let extracted = try checkWithSquashfsTools(ours, scratch: scratch, sockets: ["sock"])
        #expect(extracted == source, "unsquashfs: \(manifestDifference(source, extracted))")
        let diff = try run("sqfsdiff", ["-T", "-a", theirs, "-b", ours])
        #expect(diff.status == 0 && diff.stdout.isEmpty, "sqfsdiff: \(diff.stdout)\(diff.stderr)")

        let (ourTree, ourRestore) = try readBack(ours, scratch: scratch)
        let (theirTree, _) = try readBack(theirs, scratch: scratch)
        #expect(ourRestore == source, "our reader: \(manifestDifference(source, ourRestore))")
        #expect(describe(ourTree) == describe(theirTree), "\(lineDifference(describe(theirTree), describe(ourTree)))")
    }

    /// ACLs and sub-second and out-of-range mtimes are reported, with counts and an example, and
    /// the image holds what the report says it does instead.
    @Test func reportsWhatSquashFSCannotHold() throws {
        let image = scratch.sub("report.sfs")
        let result = try writeImage(tree, to: image, compression: "zstd")
        let report = result.report
        let acl = try #require(report[.xattrNamespace])
        #expect(acl.count == 3, "two system.posix_acl_access and one system.posix_acl_default")
        #expect(acl.example == Array("xattrs/acl".utf8) && acl.detail == "system.posix_acl_access")
        let nanoseconds = try #require(report[.subsecondMtime])
        #expect(nanoseconds.count > 3000)
        #expect(try #require(report[.mtimeBefore1970]).count == 2)
        #expect(try #require(report[.mtimeAfter2106]).example == Array("timecorners/after-2106".utf8))
        #expect(report[.deviceNumber] == nil)
        #expect(report.description.contains("3 xattr(s) outside user., trusted. and security. left out (e.g. /xattrs/acl: system.posix_acl_access)"))

        let root = try SquashFSImage(path: image).readTree()
        #expect(root.lookup(Array("timecorners/before-1970".utf8))?.metadata.mtime == Timestamp(seconds: 0))
        #expect(root.lookup(Array("timecorners/after-2106".utf8))?.metadata.mtime == Timestamp(seconds: 4_294_967_295))
        #expect(root.lookup(Array("files/random-3m".utf8))?.metadata.mtime == Timestamp(seconds: 1_800_000_000))
        #expect(root.lookup(Array("xattrs/acl".utf8))?.metadata.xattrs.isEmpty == true)
    }

    /// The same tree gives the same bytes, written twice and at 1, 2 and 4 threads.
    @Test(arguments: [("zstd", 128 << 10), ("xz", 4 << 10)])
    func reproducible(compression: String, blockSize: Int) throws {
        var digests: Set<String> = []
        for threads in [1, 2, 2, 4] {
            let image = scratch.sub("repro-\(threads).sfs")
            try writeImage(tree, to: image, compression: compression, blockSize: blockSize, threads: threads)
            digests.insert(try sh("sha256sum < \(image)"))
        }
        #expect(digests.count == 1, "\(digests)")
    }
}
