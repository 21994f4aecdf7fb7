import Foundation
import LStoreCompression
import LStoreStore
import LStoreTestSupport
import LStoreTree
import Testing

/// Commit header lines lstore does not know (spec/store.md §6.1): kept verbatim and in order, so a
/// commit read and written again keeps its id; anything else out of the one canonical form is refused.
@Suite struct CommitHeaderTests {
    static let empty = Digest(hex: String(repeating: "ab", count: 32))!

    func decode(_ text: String) throws -> Commit {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { try Commit(decoding: $0, id: sha256(bytes)) }
    }

    func header(_ extra: String = "", author: String = "steve@desk") -> String {
        "tree \(Self.empty.hex)\ntime 1700000000\nauthor \(author)\nsource /srv\nsize 0\nfiles 0\nentries 1\n\(extra)\nmessage"
    }

    @Test func unknownHeadersArePreservedInOrder() throws {
        let text = header("zeta 2\noci-image docker.io/library/debian:12\nzeta 1\nnote \n")
        let commit = try decode(text)
        #expect(commit.extraHeaders == [CommitHeader(key: "zeta", value: "2"),
                                        CommitHeader(key: "oci-image", value: "docker.io/library/debian:12"),
                                        CommitHeader(key: "zeta", value: "1"), CommitHeader(key: "note", value: "")])
        #expect(commit.encoded() == Array(text.utf8), "the same bytes, so the same id")
        #expect(commit.message == "message")
        // The spec's vector: read, its headers are there; written again, the same id.
        let vector = try #require(SpecVectorTests.vectors().first { $0.name == "commit headers" }?.bytes)
        let decoded = try vector.withUnsafeBytes { try Commit(decoding: $0, id: sha256(vector)) }
        #expect(decoded.extraHeaders.map(\.key) == ["oci-image", "recipe"])
        #expect(sha256(decoded.encoded()) == sha256(vector))
    }

    @Test(arguments: [
        ("a known key after entries", "tree \(CommitHeaderTests.empty.hex)\n"),
        ("an upper-case key", "OCI-image x\n"),
        ("a key starting with a digit", "1key x\n"),
        ("a line without a space", "oci-image\n"),
        ("a key of 65 bytes", String(repeating: "k", count: 65) + " x\n"),
        ("a carriage return in a value", "note a\rb\n"),
        ("a line separator in a value", "note a\u{2028}b\n"),
    ])
    func malformedHeadersAreRefused(_ what: String, _ extra: String) throws {
        #expect(throws: StoreError.self, "\(what)") { try decode(header(extra)) }
    }

    @Test func headersBeforeEntriesAndNonCanonicalValuesAreRefused() throws {
        let early = "tree \(Self.empty.hex)\noci-image x\ntime 1700000000\nauthor a\nsource s\nsize 0\nfiles 0\nentries 1\n\n"
        #expect(throws: StoreError.self) { try decode(early) }
        // The encoder makes each newline of a value one space; a reader refuses what it would change.
        #expect(Commit(tree: Self.empty, parents: [], time: 0, author: "a\r\nb\u{2028}c\rd", source: "s\nt",
                       size: 0, files: 0, entries: 1, message: "").author == "a b c d")
        #expect(throws: StoreError.self) { try decode(header(author: "a\u{85}b")) }
        #expect(throws: StoreError.self) { try decode(header().replacingOccurrences(of: "ab", with: "AB")) }
        // A value may start with a combining mark: it is cut as bytes, not characters.
        let combining = try decode(header(author: "\u{301}x"))
        #expect(combining.author == "\u{301}x")
    }

    /// `fsck` takes a commit with headers it does not know as any other.
    @Test func fsckAcceptsUnknownHeaders() throws {
        let scratch = TemporaryDirectory("commit-headers")
        let (store, writer, compressor) = try storeForObjects(in: scratch, blockSize: 4096, compression: "zstd:3")
        var buffer: [UInt8] = []
        func add(_ kind: ObjectKind, _ bytes: [UInt8]) throws -> Digest {
            let id = sha256(bytes)
            try bytes.withUnsafeBytes { try writer.add(kind, id: id, raw: $0, compressor: compressor, scratch: &buffer) }
            return id
        }
        let tree = try add(.tree, TreeObject(metadata: Metadata(kind: .directory, permissions: 0o755), entries: []).encoded())
        let commit = try add(.commit, Commit(tree: tree, parents: [], time: 1_700_000_000, author: "test", source: "objects",
                                             size: 0, files: 0, entries: 1,
                                             extraHeaders: [CommitHeader(key: "recipe", value: "base.toml")],
                                             message: "").encoded())
        _ = try writer.finish()
        try store.updateRef("headers", to: commit, expecting: .absent, message: "test")
        let report = store.fsck(full: true)
        #expect(report.errors == [])
        #expect(try store.commit(commit).extraHeaders == [CommitHeader(key: "recipe", value: "base.toml")])
    }
}
