import LStoreCompression
import Testing

@Suite struct CompressionSpecTests {
    @Test(arguments: [
        ("zstd", Codec.zstd, 3), ("zstd:1", .zstd, 1), ("zstd:19", .zstd, 19), ("zstd:22", .zstd, 22),
        ("lz4", .lz4, 0), ("lz4:hc", .lz4, 1),
        ("gzip", .gzip, 9), ("gzip:1", .gzip, 1), ("gzip:9", .gzip, 9),
        ("xz", .xz, 6), ("xz:0", .xz, 0), ("xz:9", .xz, 9),
        ("none", .none, 0),
    ])
    func accepts(text: String, codec: Codec, level: Int) throws {
        let spec = try CompressionSpec(parsing: text)
        #expect(spec == CompressionSpec(codec: codec, level: level))
        #expect(try CompressionSpec(parsing: spec.description) == spec)
    }

    @Test(arguments: [
        "", " ", "zstd:", "zstd:0", "zstd:23", "zstd:-1", "zstd:+3", "zstd: 3", "zstd:3 ", " zstd", "ZSTD",
        "zstd:3:4", "zstd:abc", "zstd:99999999999999999999", "zstd:03x", "lz4:1", "lz4:0", "lz4:HC", "lz4:fast",
        "lz4:", "gzip:0", "gzip:10", "xz:10", "xz:-1", "none:0", "none:", "lzo", "lzma", "zlib", ":", ":3",
    ])
    func rejects(text: String) {
        #expect(throws: CompressionError.invalidSpec(text)) { try CompressionSpec(parsing: text) }
    }

    @Test func invalidSpecMessageNamesTheTextAndTheForms() {
        let message = CompressionError.invalidSpec("zstd:99").description
        #expect(message.contains("'zstd:99'"))
        for form in ["zstd", "zstd:N", "1...22", "lz4", "lz4:hc", "gzip", "gzip:N", "1...9", "xz", "xz:N", "0...9", "none"] {
            #expect(message.contains(form))
        }
    }

    @Test func descriptions() {
        #expect(CompressionSpec(codec: .zstd, level: 3).description == "zstd:3")
        #expect(CompressionSpec(codec: .zstd, level: 19).description == "zstd:19")
        #expect(CompressionSpec(codec: .lz4, level: 0).description == "lz4")
        #expect(CompressionSpec(codec: .lz4, level: 1).description == "lz4:hc")
        #expect(CompressionSpec(codec: .gzip, level: 9).description == "gzip:9")
        #expect(CompressionSpec(codec: .xz, level: 0).description == "xz:0")
        #expect(CompressionSpec(codec: .none, level: 0).description == "none")
    }

    @Test func everyValidSpecRoundTrips() throws {
        for codec in Codec.allCases {
            for level in codec.levels {
                let spec = CompressionSpec(codec: codec, level: level)
                #expect(try CompressionSpec(parsing: spec.description) == spec)
            }
        }
    }

    @Test func squashfsCodecNumbers() {
        #expect(Codec.gzip.rawValue == 1)
        #expect(Codec.xz.rawValue == 4)
        #expect(Codec.lz4.rawValue == 5)
        #expect(Codec.zstd.rawValue == 6)
        #expect(Codec.allCases.map(\.description) == ["none", "gzip", "xz", "lz4", "zstd"])
    }

    @Test(arguments: [
        CompressionSpec(codec: .zstd, level: 0), CompressionSpec(codec: .zstd, level: 23),
        CompressionSpec(codec: .gzip, level: 0), CompressionSpec(codec: .xz, level: 10),
        CompressionSpec(codec: .lz4, level: 2), CompressionSpec(codec: .none, level: 1),
    ])
    func compressorRejectsLevelsOutOfRange(spec: CompressionSpec) {
        #expect(throws: CompressionError.invalidSpec(spec.description)) { try Compressor(spec) }
    }

    @Test func errorMessagesAreOneLine() {
        let errors: [CompressionError] = [
            .invalidSpec("x"), .corrupt(.zstd, "Unknown frame descriptor"), .tooLarge(.xz), .library(.gzip, "out of memory"),
        ]
        for error in errors {
            #expect(!error.description.isEmpty)
            #expect(!error.description.contains("\n"))
        }
        #expect(CompressionError.corrupt(.zstd, "Unknown frame descriptor").description
            == "corrupt zstd block: Unknown frame descriptor")
        #expect(CompressionError.tooLarge(.lz4).description.hasPrefix("lz4 block decompresses to more"))
    }
}
