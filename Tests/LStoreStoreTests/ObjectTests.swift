import LStoreStore
import LStoreTree
import Testing

/// A seeded generator (SplitMix64), so that a failure can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ObjectTests {
    /// Decoding mutated file, tree and commit objects (3000 mutations of each spec vector from seed
    /// 1: a byte changed, the end cut off, or a byte inserted): each decoder either gives an object
    /// that encodes back to exactly the mutated bytes, so that its id stays the SHA-256 of what was
    /// read, or throws a `StoreError` of one line naming the object. Both happen for every decoder.
    @Test func mutatedObjectsDecodeExactlyOrThrow() throws {
        var generator = SeededGenerator(state: 1)
        var decoded: [String: Int] = [:], refused: [String: Int] = [:]
        func check(_ kind: String, _ id: Digest, _ mutated: [UInt8], _ vector: String, _ decode: () throws -> [UInt8]) {
            do {
                let encoded = try decode()
                #expect(encoded == mutated, "\(vector): a mutation decoded as a \(kind) that encodes to other bytes")
                decoded[kind, default: 0] += 1
            } catch let error as StoreError {
                let message = "\(error)"
                #expect(!message.contains(where: \.isNewline) && message.contains(id.short),
                        "\(vector): not one line naming the \(kind): \(message)")
                refused[kind, default: 0] += 1
            } catch {
                Issue.record("\(vector): not a StoreError: \(error)")
            }
        }
        for (name, bytes) in SpecVectorTests.vectors() where name.hasPrefix("tree") || name.hasPrefix("file") || name.hasPrefix("commit") {
            for _ in 0..<3000 {
                var mutated = bytes
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: mutated[Int.random(in: 0..<mutated.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                case 1: mutated.removeLast(Int.random(in: 1...mutated.count, using: &generator))
                default: mutated.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 0...mutated.count, using: &generator))
                }
                let id = sha256(mutated)
                mutated.withUnsafeBytes { raw in
                    check("tree", id, mutated, name) { try TreeObject(decoding: raw, id: id).encoded() }
                    check("file", id, mutated, name) { try FileObject(decoding: raw, id: id).encoded() }
                    check("commit", id, mutated, name) { try Commit(decoding: raw, id: id).encoded() }
                }
            }
        }
        for kind in ["tree", "file", "commit"] {
            #expect(decoded[kind, default: 0] > 0 && refused[kind, default: 0] > 0,
                    "\(kind): \(decoded[kind, default: 0]) mutations decoded, \(refused[kind, default: 0]) refused")
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
