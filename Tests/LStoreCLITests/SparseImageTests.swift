import Foundation
import LStoreTestSupport
import Testing

/// Files with holes in lstore's images, as a booted system sees them: the kernel reports the same
/// blocks in use (`stat %b`, which `du`, `cp --sparse=auto` and `tar --sparse` go by) as for
/// mksquashfs's image of the same tree, whether the image comes from a directory or from the store,
/// and every reader gets the same bytes back.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loop mounts"))
struct SparseImageTests {
    let scratch = TemporaryDirectory("sqsparse")
    var tree: String { scratch.sub("tree") }
    var store: String { scratch.sub("store") }
    /// `hole`: 640 KiB, all hole; `middle`: 128 KiB of data, a 256 KiB hole, 128 KiB of data;
    /// `dense`: 300000 bytes of data, no hole.
    let files = ["dense", "hole", "middle"]

    init() throws {
        let tree = scratch.sub("tree")
        try sh("""
            mkdir \(tree) && cd \(tree)
            truncate -s 640K hole
            dd if=/dev/urandom of=middle bs=128K count=1 status=none
            dd if=/dev/urandom of=middle bs=128K count=1 seek=3 conv=notrunc status=none
            head -c 300000 /dev/urandom > dense
            touch -d @1700000000 hole middle dense .
            """)
        try lstoreOK(["init"], store: scratch.sub("store"))
    }

    /// `NAME SIZE BLOCKS` of each file, as the kernel reports them with `image` mounted.
    func mountedBlocks(_ image: String) throws -> String {
        let mountPoint = scratch.sub("mnt-\(UUID().uuidString.prefix(8))")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        return try sh("cd \(mountPoint) && stat -c '%n %s %b' \(files.joined(separator: " "))")
    }

    /// Extracts `image` with unsquashfs and with sqfs2tar and GNU tar; throws unless every file
    /// holds the bytes of the tree's.
    func extractsExactly(_ image: String) throws {
        let name = URL(fileURLWithPath: image).lastPathComponent
        let unsquashed = scratch.sub("unsquashfs-\(name)"), untarred = scratch.sub("sqfs2tar-\(name)")
        try sh("unsquashfs -q -n -d \(unsquashed) \(image) >/dev/null")
        try sh("mkdir \(untarred) && sqfs2tar \(image) 2>/dev/null | tar --sparse -xf - -C \(untarred)")
        for file in files {
            try sh("cmp \(tree)/\(file) \(unsquashed)/\(file) && cmp \(tree)/\(file) \(untarred)/\(file)")
        }
    }

    @Test func holesShowAsMksquashfsShowsThem() throws {
        let onDisk = try sh("cd \(tree) && stat -c '%n %b' hole middle")
        try #require(onDisk == "hole 0\nmiddle 512\n", "the scratch file system keeps holes: \(onDisk)")

        let theirs = scratch.sub("mksquashfs.sfs")
        try sh("mksquashfs \(tree) \(theirs) -noappend -no-progress -quiet >/dev/null")
        let expected = try mountedBlocks(theirs)
        // mksquashfs records all but one byte of an all-hole file as sparse: the kernel shows one block.
        #expect(expected == "dense 300000 586\nhole 655360 1\nmiddle 524288 512\n", "mksquashfs's image: \(expected)")

        let fromDirectory = scratch.sub("directory.sfs")
        try lstoreOK(["squashfs", tree, fromDirectory])
        try lstoreOK(["commit", tree, "--ref", "sparse"], store: store)
        let fromStore = scratch.sub("checkout.sfs")
        try lstoreOK(["checkout", "sparse", "--squashfs", fromStore], store: store)
        let recompressed = scratch.sub("recompressed.sfs")
        try lstoreOK(["checkout", "sparse", "--squashfs", recompressed, "--compression", "xz"], store: store)

        for image in [fromDirectory, fromStore, recompressed] {
            let blocks = try mountedBlocks(image)
            #expect(blocks == expected, "\(image): the kernel reports \(blocks)")
            try extractsExactly(image)
        }
        try extractsExactly(theirs)
    }

    /// What a user copying from the booted image gets: `cp --sparse=auto` sees the holes and
    /// writes a sparse copy.
    @Test func copiesOffTheMountedImageStaySparse() throws {
        try lstoreOK(["commit", tree, "--ref", "sparse"], store: store)
        let image = scratch.sub("checkout.sfs")
        try lstoreOK(["checkout", "sparse", "--squashfs", image], store: store)
        let mountPoint = scratch.sub("mnt-copy")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        let copied = try sh("""
            cp --sparse=auto \(mountPoint)/hole \(scratch.sub("hole-copy"))
            cmp \(tree)/hole \(scratch.sub("hole-copy"))
            du -k \(scratch.sub("hole-copy")) | cut -f1
            """)
        #expect(copied == "0\n", "a copy of the all-hole file allocates nothing: \(copied) KiB")
    }

    /// The image read back in (`lstore commit IMAGE.sfs`), from lstore's image with extended
    /// sparse inodes and from mksquashfs's: the same tree as the directory's, holes and all.
    @Test func imagesCommitBackToTheSameTree() throws {
        try lstoreOK(["commit", tree, "--ref", "tree"], store: store, environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        let ours = scratch.sub("ours.sfs"), theirs = scratch.sub("theirs.sfs")
        try lstoreOK(["checkout", "tree", "--squashfs", ours], store: store)
        try sh("mksquashfs \(tree) \(theirs) -noappend -no-progress -quiet >/dev/null")
        for (image, ref) in [(ours, "ours"), (theirs, "theirs")] {
            try lstoreOK(["commit", image, "--ref", ref], store: store, environment: ["SOURCE_DATE_EPOCH": "1700000000"])
            let diff = try lstoreOK(["diff", "tree", ref], store: store)
            #expect(diff == "", "\(ref): \(diff)")
            let out = scratch.sub("out-\(ref)")
            try lstoreOK(["checkout", ref, "--dir", out], store: store)
            for file in files { try sh("cmp \(tree)/\(file) \(out)/\(file)") }
            let blocks = try sh("cd \(out) && stat -c '%n %b' hole middle")
            #expect(blocks == "hole 0\nmiddle 512\n", "\(ref): the checkout leaves the holes: \(blocks)")
        }
    }
}
