import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The one atomic file writer and the write-all helpers: a file is replaced whole or not at all,
/// a failed replacement leaves nothing behind, and every byte reaches its offset.
@Suite struct FileWritingTests {
    let scratch = TemporaryDirectory("filewriting")

    @Test func aFileIsReplacedWholeAndNothingIsLeftBeside() throws {
        let path = scratch.sub("config")
        try writeFileAtomically(Array("old\n".utf8), to: path)
        try writeFileAtomically(Array("new content\n".utf8), to: path, mode: 0o600)
        #expect(try readSmallFile(path, limit: 100) == Array("new content\n".utf8))
        #expect(try sh("ls -A \(scratch.path)") == "config\n", "no temporary is left beside it")
        #expect(try sh("stat -c %a \(path)") == "600\n")
    }

    @Test func aFailedRenameLeavesTheDestinationAndNoTemporary() throws {
        // A non-empty directory cannot be renamed over: the write fails after the data is written.
        let path = scratch.sub("refs")
        try sh("mkdir -p \(path) && echo keep > \(path)/inside && mkdir \(scratch.sub("tmp"))")
        #expect {
            try writeFileAtomically(Array("x".utf8), to: path, temporary: scratch.sub("tmp/file-1"))
        } throws: { error in
            "\(error)".hasPrefix("\(path): rename: ")
        }
        #expect(try sh("cat \(path)/inside") == "keep\n")
        #expect(try sh("ls -A \(scratch.sub("tmp"))") == "", "the temporary is removed")
    }

    @Test func writeAllAtAnOffsetLeavesTheFileOffsetAndWritesEveryByte() throws {
        let path = scratch.sub("data")
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        defer { close(fd) }
        let big = [UInt8](repeating: 7, count: 3 << 20)
        try big.withUnsafeBytes { try writeAll(fd, $0, at: 1 << 20, display: path) }
        try Array("head".utf8).withUnsafeBytes { try writeAll(fd, $0, display: path) }
        #expect(lseek(fd, 0, SEEK_CUR) == 4, "pwrite does not move the offset; write does")
        #expect(try sh("stat -c %s \(path)") == "\(4 << 20)\n")
        #expect(try sh("head -c 4 \(path)") == "head")
        #expect(try sh("tail -c +\((1 << 20) + 1) \(path) | tr -d '\\007' | wc -c") == "0\n")
    }
}
