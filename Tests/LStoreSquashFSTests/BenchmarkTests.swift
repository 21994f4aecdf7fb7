import Foundation
import LStoreCompression
import LStoreSquashFS
import LStoreTree
import Testing

/// One timed write of a directory, for `Benchmarks/squashfs-bench.sh`; runs only when
/// SQUASHFS_BENCH_TREE names the directory. SQUASHFS_BENCH_OUT (the image), SQUASHFS_BENCH_COMPRESSION
/// (default zstd), SQUASHFS_BENCH_BLOCK_SIZE (default 131072), SQUASHFS_BENCH_THREADS (default 2).
@Test(.enabled(if: ProcessInfo.processInfo.environment["SQUASHFS_BENCH_TREE"] != nil))
func benchmarkWriter() throws {
    let environment = ProcessInfo.processInfo.environment
    let tree = environment["SQUASHFS_BENCH_TREE"]!
    let out = environment["SQUASHFS_BENCH_OUT"] ?? "/var/tmp/lstore-squashfs-bench.sfs"
    let spec = try CompressionSpec(parsing: environment["SQUASHFS_BENCH_COMPRESSION"] ?? "zstd")
    let blockSize = Int(environment["SQUASHFS_BENCH_BLOCK_SIZE"] ?? "") ?? 128 << 10
    let threads = Int(environment["SQUASHFS_BENCH_THREADS"] ?? "") ?? 2

    let clock = ContinuousClock()
    let start = clock.now
    let scanned = try Scanner().scan(tree)
    let scannedAt = clock.now
    let options = SquashFSOptions(compression: spec, blockSize: blockSize, modificationTime: 0, threads: threads)
    let result = try SquashFSWriter(options: options).write(scanned.root, source: DirectoryBlockSource(), to: out)
    let end = clock.now
    print("squashfs-bench: \(spec) \(blockSize) threads=\(threads) entries=\(scanned.entryCount) "
        + "scan=\(scannedAt - start) write=\(end - scannedAt) total=\(end - start) "
        + "bytes=\(result.fileSize) inodes=\(result.inodeCount) \(result.data)")
    if !result.report.isEmpty { print("squashfs-bench report:\n\(result.report)") }
}
