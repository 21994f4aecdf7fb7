import Foundation
import LStoreSquashFS
import LStoreTestSupport
import Testing

@Test func smoke() throws {
    guard let tree = ProcessInfo.processInfo.environment["SMOKE_TREE"] else { return }
    let out = ProcessInfo.processInfo.environment["SMOKE_OUT"] ?? "/tmp/smoke.sfs"
    let comp = ProcessInfo.processInfo.environment["SMOKE_COMP"] ?? "zstd"
    let bs = Int(ProcessInfo.processInfo.environment["SMOKE_BS"] ?? "131072")!
    let result = try writeImage(tree, to: out, compression: comp, blockSize: bs, exclude: ["timecorners"])
    print(result.report)
    print(result.data, result.bytesUsed)
}
