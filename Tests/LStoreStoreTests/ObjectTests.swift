import LStoreStore
import LStoreTree
import Testing

@Suite struct ObjectTests {
    /// Decoding mutated tree objects never crashes: it throws or yields a valid tree.
    @Test func mutatedTreesNeverCrash() throws {
        var generator = SystemRandomNumberGenerator()
        for (name, bytes) in SpecVectorTests.vectors() where name.hasPrefix("tree") || name.hasPrefix("file") || name.hasPrefix("commit") {
            for _ in 0..<3000 {
                var mutated = bytes
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: mutated[Int.random(in: 0..<mutated.count)] ^= UInt8.random(in: 1...255)
                case 1: mutated.removeLast(Int.random(in: 1...mutated.count))
                default: mutated.insert(UInt8.random(in: 0...255), at: Int.random(in: 0...mutated.count))
                }
                let id = sha256(mutated)
                mutated.withUnsafeBytes { raw in
                    _ = try? TreeObject(decoding: raw, id: id)
                    _ = try? FileObject(decoding: raw, id: id)
                    _ = try? Commit(decoding: raw, id: id)
                }
            }
        }
    }

    @Test func treeDecoderRejectsWhatTheSpecForbids() throws {
        let entry = { (name: String) in
            TreeEntry(name: Array(name.utf8), metadata: Metadata(kind: .fifo, permissions: 0o644), payload: .none)
        }
        let directory = Metadata(kind: .directory, permissions: 0o755)
        let unsorted = TreeObject(metadata: directory, entries: [entry("b"), entry("a")]).encoded()
        let repeated = TreeObject(metadata: directory, entries: [entry("a"), entry("a")]).encoded()
        let dotdot = TreeObject(metadata: directory, entries: [entry("..")]).encoded()
        let slash = TreeObject(metadata: directory, entries: [entry("a/b")]).encoded()
        let escape = TreeObject(metadata: directory, entries: [
            TreeEntry(name: Array("x".utf8), metadata: Metadata(kind: .regular, permissions: 0), payload: .hardlink(path: Array("../etc/shadow".utf8))),
        ]).encoded()
        for bytes in [unsorted, repeated, dotdot, slash, escape, TreeObject(metadata: directory, entries: [entry("a")]).encoded() + [0]] {
            #expect(throws: StoreError.self) { try bytes.withUnsafeBytes { try TreeObject(decoding: $0, id: sha256(bytes)) } }
        }
    }

    @Test func fileObjectBlockLengths() throws {
        let object = FileObject(size: 300_000, blockSize: 131072, blocks: [.zero, .zero, .zero])
        #expect(object.length(ofBlock: 0) == 131072)
        #expect(object.length(ofBlock: 2) == 300_000 - 2 * 131072)
        let encoded = object.encoded()
        #expect(encoded.count == 12 + 3 * 32)
        #expect(throws: StoreError.self) {
            let short = Array(encoded.dropLast(32))
            return try short.withUnsafeBytes { try FileObject(decoding: $0, id: .zero) }
        }
    }

    @Test(arguments: ["base", "steve/gaming", "a.b-c_d", "x/y/z"])
    func validRefNames(_ name: String) throws {
        try validateRefName(name)
    }

    @Test(arguments: ["", "/a", "a/", "a//b", "..", "a/../b", "a/./b", "-a", "a b", "a:b", "a\\b", "a~1", "a^", "a?", "a*", "a[",
                      "a\u{7f}", "tab\there", String(repeating: "x", count: 256)])
    func invalidRefNames(_ name: String) throws {
        #expect(throws: StoreError.self) { try validateRefName(name) }
    }

    @Test func digestHexAndOrder() throws {
        let a = Digest(hex: "00" + String(repeating: "ff", count: 31))!
        let b = Digest(hex: "01" + String(repeating: "00", count: 31))!
        #expect(a < b)
        #expect(a.hex == "00" + String(repeating: "ff", count: 31))
        #expect(Digest(hex: "xyz") == nil)
        #expect(sha256(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
