import Foundation
import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct TreeTests {
    @Test func hardlinksMoveToTheFirstMemberInTreeOrder() throws {
        // As a tar archive lists them: the data under "z/data", later names "a/link" and "m".
        let data = Node(name: Array("data".utf8), metadata: Metadata(kind: .regular, permissions: 0o600, uid: 7),
                        content: .regular(RegularFile(size: 3)))
        let z = Node(name: Array("z".utf8), metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [data])))
        let link = Node(name: Array("link".utf8), metadata: Metadata(kind: .regular, permissions: 0), content: .hardlink(path: Array("z/data".utf8)))
        let a = Node(name: Array("a".utf8), metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [link])))
        let m = Node(name: Array("m".utf8), metadata: Metadata(kind: .regular, permissions: 0), content: .hardlink(path: Array("a/link".utf8)))
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [z, m, a])))
        root.sortAll()
        try root.normalizeHardlinks()
        guard case .regular(let file) = link.content else { Issue.record("a/link holds the data"); return }
        #expect(file.size == 3)
        #expect(link.metadata.uid == 7 && link.metadata.permissions == 0o600)
        guard case .hardlink(let p1) = m.content, case .hardlink(let p2) = data.content else { Issue.record("others link"); return }
        #expect(p1 == Array("a/link".utf8) && p2 == Array("a/link".utf8))
    }

    @Test func hardlinkToADirectoryOrNothingIsRefused() throws {
        let dir = Node(name: Array("d".utf8), metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
        for target in ["d", "missing"] {
            let link = Node(name: Array("l".utf8), metadata: Metadata(kind: .regular, permissions: 0), content: .hardlink(path: Array(target.utf8)))
            let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory(children: [dir, link])))
            #expect(throws: TreeError.self) { try root.normalizeHardlinks() }
        }
    }

    @Test func namesAreValidatedAsBytes() {
        #expect(isValidName(Array("ok".utf8)))
        #expect(isValidName([0xff, 0xfe]))
        #expect(!isValidName([]))
        #expect(!isValidName(Array(".".utf8)) && !isValidName(Array("..".utf8)))
        #expect(!isValidName(Array("a/b".utf8)) && !isValidName([0x61, 0]))
        #expect(isValidName([UInt8](repeating: 0x61, count: 255)) && !isValidName([UInt8](repeating: 0x61, count: 256)))
        #expect([0xff, 0x41].printable == "\\xffA")
        #expect(Array("é\n".utf8).printable == "é\\x0a")
    }

    /// A tree (say, from a hostile peer) whose hardlink path goes through a symlink it also holds:
    /// the restorer refuses instead of writing outside the destination.
    @Test func restorerNeverFollowsASymlinkItCreated() throws {
        let scratch = TemporaryDirectory("escape")
        try sh("mkdir \(scratch.sub("outside")) && echo secret > \(scratch.sub("outside"))/target")
        let link = Node(name: Array("escape".utf8), metadata: Metadata(kind: .symlink, permissions: 0o777),
                        content: .symlink(target: Array(scratch.sub("outside").utf8)))
        let through = Node(name: Array("x".utf8), metadata: Metadata(kind: .regular, permissions: 0),
                           content: .hardlink(path: Array("escape/target".utf8)))
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755),
                        content: .directory(Directory(children: [link, through])))
        struct NoData: ContentWriter {
            func writeContent(of file: RegularFile, to fd: Int32, display: String) throws {}
        }
        #expect(throws: FileError.self) { try Restorer(writer: NoData()).restore(root, into: scratch.sub("dest")) }
        #expect(try sh("ls \(scratch.sub("outside"))") == "target\n", "nothing written outside")
        #expect(try sh("stat -c %h \(scratch.sub("outside"))/target") == "1\n", "no link made to the outside file")
    }

    /// The scanner and the restorer alone (no store): what one reads, the other writes back exactly.
    @Test(.enabled(if: isRoot, "needs root"))
    func scanAndRestoreRoundTrip() throws {
        let scratch = TemporaryDirectory("tree")
        try makeCornerTree(scratch.sub("in"))
        let scanned = try Scanner().scan(scratch.sub("in"))
        #expect(scanned.entryCount > 3000)
        struct FromSource: ContentWriter {
            func writeContent(of file: RegularFile, to fd: Int32, display: String) throws {
                let source = open(String(decoding: file.sourcePath!, as: UTF8.self), O_RDONLY)
                defer { close(source) }
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                var offset: off_t = 0
                while true {
                    // Copy only the data regions, as a store skips holes.
                    let data = lseek(source, offset, seekData)
                    if data < 0 { break }
                    offset = data
                    let got = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress, $0.count, offset) }
                    if got <= 0 { break }
                    _ = buffer.withUnsafeBytes { pwrite(fd, $0.baseAddress, got, offset) }
                    offset += off_t(got)
                }
            }
        }
        try Restorer(writer: FromSource()).restore(scanned.root, into: scratch.sub("out"))
        let a = try manifest(scratch.sub("in")), b = try manifest(scratch.sub("out"))
        #expect(a == b, "\(manifestDifference(a, b))")
    }
    /// The restorer gives every entry its mode explicitly and never changes the process's umask,
    /// which other threads of the same process rely on while it runs (a directory another thread
    /// creates meanwhile must not come out world-writable).
    @Test func restorerLeavesTheUmaskAlone() throws {
        let scratch = TemporaryDirectory("umask")
        let file = Node(name: Array("f".utf8), metadata: Metadata(kind: .regular, permissions: 0o644),
                        content: .regular(RegularFile(size: 1)))
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755),
                        content: .directory(Directory(children: [file])))
        final class Watcher: ContentWriter, @unchecked Sendable {
            var seen: [String] = []
            func writeContent(of file: RegularFile, to fd: Int32, display: String) throws {
                seen.append(processUmask())
                _ = pwrite(fd, [0x61], 1, 0)
            }
        }
        let watcher = Watcher()
        let before = processUmask()
        try Restorer(writer: watcher).restore(root, into: scratch.sub("out"))
        #expect(watcher.seen == [before], "the umask while restoring was \(watcher.seen), before \(before)")
        var st = stat()
        #expect(stat(scratch.sub("out/f"), &st) == 0 && st.st_mode & 0o7777 == 0o644)
    }
}

/// The process's umask as /proc/self/status shows it (reading it with umask(2) would change it).
private func processUmask() -> String {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    return status.split(separator: "\n").first { $0.hasPrefix("Umask:") }.map { String($0.dropFirst(6)).trimmingCharacters(in: .whitespaces) } ?? "?"
}
