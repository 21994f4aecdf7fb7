// libFuzzer harness for the squashfs reader (`LStoreSquashFS.SquashFSImage`), built with
// AddressSanitizer by squashfs-reader.sh. Each input is written to a file in /dev/shm and read
// completely: superblock, tables, tree, every file's data. Errors are the expected outcome for
// most inputs; a crash, a sanitizer report, a timeout or an out-of-memory is a bug.
import LStoreSquashFS
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

let path = "/dev/shm/lstore-fuzz-\(getpid()).sfs"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, data, size)
    close(fd)
    do {
        let limits = SquashFSReadLimits(entries: 100_000, depth: 256, xattrBytes: 16 << 20)
        let image = try SquashFSImage(path: path, limits: limits)
        let root = try image.readTree()
        var failure: (any Error)?
        root.walk { entryPath, node in
            guard failure == nil, case .regular(let file) = node.content, file.size <= 64 << 20 else { return }
            do {
                try image.forEachBlock(of: file, path: entryPath, blockSize: image.info.blockSize) { _ in }
            } catch {
                failure = error
            }
        }
    } catch {}
    return 0
}
