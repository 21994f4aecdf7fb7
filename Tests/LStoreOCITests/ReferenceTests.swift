@testable import LStoreOCI
import LStoreTestSupport
import Testing

/// Image references, platforms and times as `lstore import` reads them.
struct ReferenceTests {
    @Test func referenceForms() throws {
        let scratch = TemporaryDirectory("ref")
        let archive = scratch.sub("a:b.tar")
        try sh("touch '\(archive)'; mkdir '\(scratch.sub("layout"))'")
        let plain = try ImageReference(parsing: "docker-archive:\(archive)")
        #expect(plain.kind == .dockerArchive && plain.path == archive && plain.tag == nil)
        let tagged = try ImageReference(parsing: "docker-archive:\(archive):gaming:latest")
        #expect(tagged.path == archive && tagged.tag == "gaming:latest")
        let oci = try ImageReference(parsing: "oci:\(scratch.sub("layout")):v1")
        #expect(oci.kind == .oci && oci.tag == "v1")
        let hex = String(repeating: "ab", count: 32)
        let byDigest = try ImageReference(parsing: "oci-archive:\(archive)@sha256:\(hex)")
        #expect(byDigest.path == archive && byDigest.digest?.description == "sha256:\(hex)")
        #expect(throws: ImportError.self) { try ImageReference(parsing: "docker://debian") }
        #expect(throws: ImportError.self) { try ImageReference(parsing: "oci:x@sha256:12") }
    }

    @Test func platforms() {
        #expect(Platform(parsing: "linux/arm/v7") == Platform(os: "linux", architecture: "arm", variant: "v7"))
        #expect(Platform(parsing: "linux") == nil)
        #expect(Platform(os: "linux", architecture: "arm", variant: "v7").satisfies(Platform(os: "linux", architecture: "arm")))
        #expect(!Platform(os: "linux", architecture: "arm64").satisfies(Platform(os: "linux", architecture: "amd64")))
    }

    @Test func times() {
        #expect(parseRFC3339("1970-01-01T00:00:00Z") == 0)
        #expect(parseRFC3339("2023-11-14T22:13:20Z") == 1_700_000_000)
        #expect(parseRFC3339("2023-11-14T23:13:20.123456789+01:00") == 1_700_000_000)
        #expect(parseRFC3339("2023-11-14 22:13:20") == nil)
        #expect(parseRFC3339("2023-13-14T22:13:20Z") == nil)
    }
}
