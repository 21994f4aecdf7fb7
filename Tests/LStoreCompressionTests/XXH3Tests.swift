import LStoreCompression
import Testing

/// Expected values printed by `xxhsum -H3` (64-bit) and `xxhsum -H2` (128-bit, high half first), xxHash 0.8.1.
@Suite struct XXH3Tests {
    struct Vector: Sendable, CustomStringConvertible {
        var name: String
        var bytes: [UInt8]
        var hash64: UInt64
        var high: UInt64
        var low: UInt64
        var description: String { name }
    }

    static let vectors = [
        Vector(name: "empty", bytes: [], hash64: 0x2D06_8005_38D3_94C2, high: 0x99AA_06D3_0147_98D8, low: 0x6001_C324_468D_497F),
        Vector(name: "00", bytes: [0], hash64: 0xC44B_DFF4_074E_ECDB, high: 0xA6CD_5E93_9200_0F6A, low: 0xC44B_DFF4_074E_ECDB),
        Vector(name: "abc", bytes: Array("abc".utf8), hash64: 0x78AF_5F94_892F_3950,
               high: 0x06B0_5AB6_733A_6185, low: 0x78AF_5F94_892F_3950),
        Vector(name: "fox", bytes: Array("The quick brown fox jumps over the lazy dog".utf8), hash64: 0xCE7D_19A5_418F_B365,
               high: 0xDDD6_5020_5CA3_E7FA, low: 0x24A1_CC2E_3A8A_7651),
        Vector(name: "i % 251, 1000 bytes", bytes: (0..<1000).map { UInt8($0 % 251) }, hash64: 0x33EF_703F_B2B2_0ED1,
               high: 0x18BF_41BC_8229_E277, low: 0x33EF_703F_B2B2_0ED1),
        Vector(name: "(7i + 3) % 256, 300000 bytes", bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) },
               hash64: 0x8EA7_F536_79B9_303F, high: 0x579E_BD3B_372C_7821, low: 0x8EA7_F536_79B9_303F),
    ]

    @Test(arguments: vectors)
    func oneShot(vector: Vector) {
        #expect(vector.bytes.withUnsafeBytes { XXH3.hash64($0) } == vector.hash64)
        let hash = vector.bytes.withUnsafeBytes { XXH3.hash128($0) }
        #expect(hash.high == vector.high)
        #expect(hash.low == vector.low)
    }

    @Test(arguments: vectors)
    func streamingEqualsOneShot(vector: Vector) {
        var generator = SplitMix64(seed: 128)
        let hasher = XXH3.Hasher128()
        for pieceLimit in [1, 7, 64, 240, 1024, 100_000] {
            hasher.reset()
            var start = 0
            while start < vector.bytes.count {
                let end = min(vector.bytes.count, start + 1 + Int(generator.next() % UInt64(pieceLimit)))
                vector.bytes[start..<end].withUnsafeBytes { hasher.update($0) }
                start = end
            }
            hasher.update(UnsafeRawBufferPointer(start: nil, count: 0))
            let hash = hasher.finalize()
            #expect(hash.high == vector.high, "pieces up to \(pieceLimit)")
            #expect(hash.low == vector.low, "pieces up to \(pieceLimit)")
        }
    }

    @Test func finalizeCanBeCalledMidStream() {
        let bytes = Samples.text128K
        let hasher = XXH3.Hasher128()
        bytes[..<1000].withUnsafeBytes { hasher.update($0) }
        let prefix = hasher.finalize()
        let expectedPrefix = bytes[..<1000].withUnsafeBytes { XXH3.hash128($0) }
        #expect(prefix.high == expectedPrefix.high && prefix.low == expectedPrefix.low)
        bytes[1000...].withUnsafeBytes { hasher.update($0) }
        let whole = hasher.finalize()
        let expected = bytes.withUnsafeBytes { XXH3.hash128($0) }
        #expect(whole.high == expected.high && whole.low == expected.low)
    }
}
