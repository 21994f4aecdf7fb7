import Foundation
@testable import LStoreSquashFS
import Testing

/// The fragment packing rule of spec/squashfs.md §4.1, against the vectors written there.
struct FragmentPackingTests {
    /// The spec's vector lines (`    splitmix64 N: HEX`, `    closes A-B: N N N`).
    static let vectors: [Substring] = {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../spec/squashfs.md").standardized
        let text = (try? String(contentsOf: spec, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("    splitmix64 ") || $0.hasPrefix("    closes ") }
    }()

    @Test func specVectorsArePresent() {
        #expect(Self.vectors.count >= 4, "spec/squashfs.md §4.1 lists the vectors")
    }

    @Test func splitmix64MatchesTheSpec() throws {
        for line in Self.vectors where line.hasPrefix("    splitmix64 ") {
            let parts = line.dropFirst("    splitmix64 ".count).split(separator: ":")
            let input = try #require(UInt64(parts[0]))
            let expected = try #require(UInt64(parts[1].trimmingCharacters(in: .whitespaces), radix: 16))
            #expect(DataWriter.splitmix64(input) == expected, "splitmix64(\(input))")
        }
    }

    @Test func closingLengthsMatchTheSpec() throws {
        for line in Self.vectors where line.hasPrefix("    closes ") {
            let parts = line.dropFirst("    closes ".count).split(separator: ":")
            let range = parts[0].split(separator: "-").compactMap { Int($0) }
            let expected = Set(parts[1].split(separator: " ").compactMap { Int($0) })
            let found = Set((range[0]...range[1]).filter { DataWriter.closesFragment(length: $0) })
            #expect(found == expected, "closes(\(range[0])...\(range[1]))")
        }
        // About one length in four closes a block.
        let closing = (1...100_000).filter { DataWriter.closesFragment(length: $0) }.count
        #expect((22_000...28_000).contains(closing))
    }
}
