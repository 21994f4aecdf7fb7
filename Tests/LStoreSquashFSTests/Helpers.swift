import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTestSupport
import LStoreTree
import Testing

/// Scans `tree` and writes it as an image at `image`.
@discardableResult
func writeImage(_ tree: String, to image: String, compression: String, blockSize: Int = 128 << 10,
                threads: Int = 2, exclude: [String] = []) throws -> SquashFSWriteResult {
    let scanned = try Scanner().scan(tree)
    for name in exclude { scanned.root.directory?.remove(named: Array(name.utf8)) }
    let options = SquashFSOptions(compression: try CompressionSpec(parsing: compression), blockSize: blockSize,
                                  modificationTime: 1_700_000_000, threads: threads)
    return try SquashFSWriter(options: options).write(scanned.root, source: DirectoryBlockSource(), to: image)
}
