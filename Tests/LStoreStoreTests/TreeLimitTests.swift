import LStoreCompression
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing

/// The limits of spec/store.md §5.1: a tree of directories nested deeper than
/// `Store.maximumTreeDepth` is refused with one line naming where it stopped, one at the limit loads.
@Suite struct TreeLimitTests {
    @Test func treesNestedDeeperThanTheLimitAreRefused() throws {
        let scratch = TemporaryDirectory("tree-limits")
        let (store, writer, compressor) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        var buffer: [UInt8] = []
        let directory = Metadata(kind: .directory, permissions: 0o755)
        // chain[0] is an empty directory; chain[n] holds chain[n - 1] as `d`: n + 1 directories deep.
        var chain: [Digest] = []
        for _ in 0...Store.maximumTreeDepth {
            let entries = chain.last.map { [TreeEntry(name: Array("d".utf8), metadata: directory, payload: .directory(tree: $0))] } ?? []
            let bytes = TreeObject(metadata: directory, entries: entries).encoded()
            let id = sha256(bytes)
            try bytes.withUnsafeBytes { try writer.add(.tree, id: id, raw: $0, compressor: compressor, scratch: &buffer) }
            chain.append(id)
        }
        _ = try writer.finish()
        let atLimit = try store.loadTree(chain[Store.maximumTreeDepth - 1])
        var depth = 0
        atLimit.walk { path, _ in depth = max(depth, path.isEmpty ? 1 : path.split(separator: UInt8(ascii: "/")).count + 1) }
        #expect(depth == Store.maximumTreeDepth, "a tree \(Store.maximumTreeDepth) directories deep loads")
        let error = #expect(throws: StoreError.self) { try store.loadTree(chain[Store.maximumTreeDepth]) }
        #expect(error.map { "\($0)" } == "corrupt store data: tree \(chain[0].short): directories nested deeper than 1024")
    }
}
