import LStoreCompression
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing

/// `fsck` checks what a tree's hardlink entries name (spec/store.md, "Hardlinks"): an earlier entry
/// of the same commit that holds data. Such trees cannot come from a commit; they are written here
/// object by object, as a peer or a damaged disk could deliver them.
@Suite struct FsckHardlinkTests {
    @Test func hardlinksThatNameNoHolderAreReported() throws {
        let scratch = TemporaryDirectory("fsck-links")
        let (store, writer, compressor) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        var buffer: [UInt8] = []
        func add(_ kind: ObjectKind, _ bytes: [UInt8]) throws -> Digest {
            let id = sha256(bytes)
            if writer.claim(id, kind: kind) {
                try bytes.withUnsafeBytes { try writer.add(kind, id: id, raw: $0, compressor: compressor, scratch: &buffer) }
            }
            return id
        }
        let directory = Metadata(kind: .directory, permissions: 0o755)
        func link(_ name: String, to target: String, kind: EntryKind = .symlink) -> TreeEntry {
            TreeEntry(name: Array(name.utf8), metadata: Metadata(kind: kind, permissions: 0), payload: .hardlink(path: Array(target.utf8)))
        }
        let empty = try add(.tree, TreeObject(metadata: directory, entries: []).encoded())
        // In tree order: a, c, d, d/..., e, h, y, zz.
        let root = try add(.tree, TreeObject(metadata: directory, entries: [
            link("a", to: "d", kind: .regular),
            link("c", to: "y"),
            TreeEntry(name: Array("d".utf8), metadata: directory, payload: .directory(tree: empty)),
            link("e", to: "d/missing", kind: .regular),
            link("h", to: "a", kind: .regular),
            TreeEntry(name: Array("y".utf8), metadata: Metadata(kind: .symlink, permissions: 0o777), payload: .symlink(target: Array("t".utf8))),
            link("zz", to: "y"),
        ]).encoded())
        let commit = try add(.commit, Commit(tree: root, parents: [], time: 1_700_000_000, author: "test", source: "objects",
                                             size: 0, files: 0, entries: 7, message: "bad links").encoded())
        _ = try writer.finish()
        try store.updateRef("links", to: commit, expecting: .absent, message: "test")

        let errors = store.fsck(full: true).errors
        let at = "in commit \(commit.short): hardlink to"
        #expect(errors == [
            "/a \(at) /d, which is a directory",
            "/c \(at) /y, which is after it in the tree",
            "/e \(at) /d/missing, which is not in the tree",
            "/h \(at) /a, which is another hardlink",
        ], "/zz names y, which comes before it and holds data: no error")
    }
}
