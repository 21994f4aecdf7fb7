import LStoreCompression
import LStoreStore
import LStoreTestSupport
import LStoreTree
import XCTest

/// Packs and indexes through the store's own API: what a writer adds, a reopened store finds,
/// byte for byte, and what it never added, it does not.
final class PackTests: XCTestCase {
    func testObjectsWrittenAreFoundAfterReopening() throws {
        let scratch = TemporaryDirectory("packs")
        let (_, writer, compressor) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        var scratchBuffer: [UInt8] = []
        var written: [(Digest, [UInt8])] = []
        // Compressible and incompressible objects, and an id shared by two kinds.
        for i in 0..<300 {
            let bytes: [UInt8] = i % 2 == 0 ? Array(String(repeating: "object \(i) ", count: 40).utf8)
                                            : (0..<1000).map { _ in UInt8.random(in: 0...255) }
            let id = sha256(bytes)
            XCTAssertTrue(writer.claim(id, kind: .tree))
            XCTAssertFalse(writer.claim(id, kind: .tree), "claimed once only")
            try bytes.withUnsafeBytes { try writer.add(.tree, id: id, raw: $0, compressor: compressor, scratch: &scratchBuffer) }
            written.append((id, bytes))
        }
        XCTAssertEqual(try writer.finish().count, 1)

        let reopened = try Store.open(at: scratch.sub("store"))
        for (id, bytes) in written {
            XCTAssertTrue(reopened.contains(id, kind: .tree))
            XCTAssertFalse(reopened.contains(id, kind: .block), "kind is part of an object's name")
            XCTAssertEqual(try reopened.readObject(id, kind: .tree), bytes)
        }
        XCTAssertFalse(reopened.contains(sha256(Array("never written".utf8)), kind: .tree))
        XCTAssertThrowsError(try reopened.readObject(sha256(Array("never written".utf8)), kind: .tree))
        let report = reopened.fsck(full: true)
        XCTAssertTrue(report.isClean, "\(report.errors)")
        XCTAssertEqual(report.packs, 1)
    }

    func testAnUnfinishedWriterLeavesNothingVisible() throws {
        let scratch = TemporaryDirectory("packs")
        let store = try Store.initialize(at: scratch.sub("store"),
                                         config: StoreConfig(blockSize: 4096, compression: try CompressionSpec(parsing: "lz4")))
        do {
            let writer = try StoreWriter(store: store)
            let bytes = Array("dropped".utf8)
            var buffer: [UInt8] = []
            try bytes.withUnsafeBytes { try writer.add(.block, id: sha256(bytes), raw: $0, compressor: try Compressor(store.compression), scratch: &buffer) }
        }
        let reopened = try Store.open(at: scratch.sub("store"))
        XCTAssertFalse(reopened.contains(sha256(Array("dropped".utf8)), kind: .block))
        XCTAssertEqual(try sh("ls \(scratch.sub("store"))/packs | wc -l"), "0\n")
        XCTAssertEqual(try sh("ls \(scratch.sub("store"))/tmp | wc -l"), "0\n", "the temporary pack is removed")
    }
}
