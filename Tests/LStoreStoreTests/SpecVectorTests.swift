import Foundation
import LStoreCompression
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing

/// The test vectors of spec/store.md §13, checked against the encoder: the spec and the code
/// cannot drift apart. Regenerate the lines with `LSTORE_PRINT_VECTORS=1 swift test --filter SpecVector`.
@Suite struct SpecVectorTests {
    /// The objects the spec's vectors name, built here from their description.
    static func vectors() -> [(name: String, bytes: [UInt8])] {
        let hello = Array("hello\n".utf8)
        let helloBlock = sha256(hello)
        let helloFile = FileObject(size: 6, blockSize: 131072, blocks: [helloBlock]).encoded()
        let sparseFile = FileObject(size: 3 * 131072 + 1, blockSize: 131072,
                                    blocks: [Digest.zero, helloBlock, Digest.zero, sha256([0])]).encoded()
        let emptyTree = TreeObject(metadata: Metadata(kind: .directory, permissions: 0o755, uid: 0, gid: 0,
                                                      mtime: Timestamp(seconds: 0)), entries: []).encoded()
        let etc = TreeObject(
            metadata: Metadata(kind: .directory, permissions: 0o755, uid: 0, gid: 0, mtime: Timestamp(seconds: 1_700_000_000)),
            entries: [
                TreeEntry(name: Array("hostname".utf8),
                          metadata: Metadata(kind: .regular, permissions: 0o644, uid: 0, gid: 0,
                                             mtime: Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789)),
                          payload: .regular(size: 6, file: sha256(helloFile))),
                TreeEntry(name: Array("hosts".utf8), metadata: Metadata(kind: .regular, permissions: 0),
                          payload: .hardlink(path: Array("etc/hostname".utf8))),
            ]).encoded()
        let root = TreeObject(
            metadata: Metadata(kind: .directory, permissions: 0o755, uid: 0, gid: 0, mtime: Timestamp(seconds: 1_700_000_000),
                               xattrs: [Xattr("security.selinux", Array("system_u:object_r:root_t:s0\u{0}".utf8))]),
            entries: [
                TreeEntry(name: [0x62, 0x69, 0x6e], metadata: Metadata(kind: .symlink, permissions: 0o777, uid: 0, gid: 0,
                                                                      mtime: Timestamp(seconds: 1_700_000_000)),
                          payload: .symlink(target: Array("usr/bin".utf8))),
                TreeEntry(name: Array("dev-null".utf8),
                          metadata: Metadata(kind: .characterDevice, permissions: 0o666, uid: 0, gid: 0,
                                             mtime: Timestamp(seconds: 1_700_000_000),
                                             xattrs: [Xattr("user.comment", Array("null".utf8))]),
                          payload: .device(major: 1, minor: 3)),
                TreeEntry(name: Array("etc".utf8), metadata: Metadata(kind: .directory, permissions: 0),
                          payload: .directory(tree: sha256(etc))),
                TreeEntry(name: [0xff, 0xfe], metadata: Metadata(kind: .fifo, permissions: 0o4755, uid: 4_000_000_000,
                                                                gid: 65534, mtime: Timestamp(seconds: -1, nanoseconds: 5)),
                          payload: .none),
            ]).encoded()
        let commit = Commit(tree: sha256(root), parents: [], time: 1_700_000_000, author: "steve@desk",
                            source: "/srv/rootfs/base", size: 6, files: 1, entries: 7, message: "minimal base\n").encoded()
        let child = Commit(tree: sha256(emptyTree), parents: [sha256(commit)], time: 1_700_000_100, author: "steve@desk",
                           source: "nvidia.tar.zst", size: 0, files: 0, entries: 1, message: "").encoded()
        let headers = Commit(tree: sha256(emptyTree), parents: [sha256(child)], time: 1_700_000_200, author: "steve@desk",
                             source: "debian-12.oci.tar", size: 0, files: 0, entries: 1,
                             extraHeaders: [CommitHeader(key: "oci-image", value: "docker.io/library/debian:12"),
                                            CommitHeader(key: "recipe", value: "base.toml")],
                             message: "from an image\n").encoded()
        return [("block hello", hello), ("file hello", helloFile), ("file sparse", sparseFile),
                ("tree empty", emptyTree), ("tree etc", etc), ("tree root", root),
                ("commit base", commit), ("commit child", child), ("commit headers", headers)]
    }

    /// `vector NAME: ID` lines and `bytes NAME: HEX` lines of the spec.
    static func specLines() throws -> [String: String] {
        let text = try String(contentsOfFile: repositoryRoot + "/spec/store.md", encoding: .utf8)
        var found: [String: String] = [:]
        for line in text.split(separator: "\n")
        where line.hasPrefix("    id ") || line.hasPrefix("    bytes ") || line.hasPrefix("    entry ") {
            let parts = line.dropFirst(4).split(separator: ":", maxSplits: 1)
            if parts.count == 2 { found[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return found
    }

    @Test func vectorsMatchTheSpec() throws {
        let spec = try Self.specLines()
        var printed = ""
        for (name, bytes) in Self.vectors() {
            let id = sha256(bytes).hex
            let hex = bytes.map { String(format: "%02x", $0) }.joined()
            printed += "    id \(name): \(id)\n"
            if bytes.count <= 200 { printed += "    bytes \(name): \(hex)\n" }
            #expect(spec["id \(name)"] == id, "spec/store.md: id of \(name)")
            if bytes.count <= 200 { #expect(spec["bytes \(name)"] == hex, "spec/store.md: bytes of \(name)") }
        }
        if ProcessInfo.processInfo.environment["LSTORE_PRINT_VECTORS"] != nil { print(printed) }
        #expect(spec.count >= 9)
    }

    /// The pack entry of §13: *block hello* as a zstd:6 store writes it (raw, since compressing
    /// 6 bytes does not make them smaller, saying that zstd at level 6 was tried), read back from
    /// a real pack. (A compressed entry would depend on the zstd library's version.)
    @Test func packEntriesMatchTheSpec() throws {
        let scratch = TemporaryDirectory("spec-entries")
        let (store, writer, compressor) = try storeForObjects(in: scratch, blockSize: 65536, compression: "zstd:6")
        var buffer: [UInt8] = []
        let blocks = [("block hello", Array("hello\n".utf8))]
        for (_, bytes) in blocks {
            try bytes.withUnsafeBytes { try writer.add(.block, id: sha256(bytes), raw: $0, compressor: compressor, scratch: &buffer) }
        }
        _ = try writer.finish()
        let spec = try Self.specLines()
        var printed = ""
        for (name, bytes) in blocks {
            let length = try store.readPackEntry(sha256(bytes), kind: .block, into: &buffer)
            let hex = buffer[0..<length].map { String(format: "%02x", $0) }.joined()
            printed += "    entry \(name): \(hex)\n"
            #expect(spec["entry \(name)"] == hex, "spec/store.md: pack entry of \(name)")
            let entry = try buffer.withUnsafeBytes { try PackEntry(decodingHeader: $0, what: name) }
            #expect(entry.id == sha256(bytes) && entry.rawLength == bytes.count)
            #expect(entry.codec == .none && entry.triedCodec == .zstd && entry.level == 6, "\(entry)")
        }
        if ProcessInfo.processInfo.environment["LSTORE_PRINT_VECTORS"] != nil { print(printed) }
    }

    /// A pack entry header's codec, level and tried codec must agree (spec/store.md §7.1): the
    /// vector's header with bytes 1–3 changed.
    @Test func packEntryHeadersAreChecked() throws {
        let vector = try #require(Self.specLines()["entry block hello"])
        var header = stride(from: 0, to: vector.count, by: 2).map { offset -> UInt8 in
            let start = vector.index(vector.startIndex, offsetBy: offset)
            return UInt8(vector[start..<vector.index(start, offsetBy: 2)], radix: 16)!
        }
        func decodes(codec: UInt8, level: UInt8, tried: UInt8) -> Bool {
            header[1] = codec
            header[2] = level
            header[3] = tried
            return (try? header.withUnsafeBytes { try PackEntry(decodingHeader: $0, what: "test") }) != nil
        }
        #expect(decodes(codec: 0, level: 6, tried: 6), "raw, zstd 6 tried")
        #expect(decodes(codec: 0, level: 0, tried: 0), "raw, nothing said")
        #expect(!decodes(codec: 0, level: 0, tried: 6), "raw, zstd tried at level 0, which zstd has not")
        #expect(!decodes(codec: 0, level: 5, tried: 0), "raw, a level with no codec")
        #expect(!decodes(codec: 0, level: 6, tried: 9), "an unknown tried codec")
        #expect(!decodes(codec: 6, level: 6, tried: 6), "a tried codec on a compressed object")
        #expect(!decodes(codec: 6, level: 23, tried: 0), "zstd level 23")
    }

    @Test func vectorsDecodeBack() throws {
        for (name, bytes) in Self.vectors() {
            let id = sha256(bytes)
            try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws in
                switch name.split(separator: " ")[0] {
                case "file": #expect(try FileObject(decoding: raw, id: id).encoded() == bytes)
                case "tree": #expect(try TreeObject(decoding: raw, id: id).encoded() == bytes)
                case "commit": #expect(try Commit(decoding: raw, id: id).encoded() == bytes)
                default: break
                }
            }
        }
    }
}
