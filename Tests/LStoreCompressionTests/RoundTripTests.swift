import LStoreCompression
import Testing

/// The real codecs: every one but `.none`.
let realCodecs = Codec.allCases.filter { $0 != .none }

@Suite struct RoundTripTests {
    @Test(arguments: Codec.allCases, Sample.allCases)
    func roundTrip(codec: Codec, sample: Sample) throws {
        let input = sample.bytes
        let compressor = try Compressor(CompressionSpec(codec: codec, level: codec.defaultLevel))
        let block = try compressor.compress(input)
        guard codec != .none, sample.compressible else {
            #expect(block == nil, "\(codec) should decline \(sample)")
            return
        }
        let compressed = try #require(block, "\(codec) should shrink \(sample)")
        #expect(compressed.count < input.count)
        let decompressor = try Decompressor(codec)
        #expect(try decompressor.decompress(compressed, capacity: input.count) == input)
        // Room to spare is fine too: the count tells where the data ends.
        #expect(try decompressor.decompress(compressed, capacity: input.count + 1000) == input)
    }

    @Test(arguments: [
        "zstd:1", "zstd:3", "zstd:19", "zstd:22", "lz4", "lz4:hc", "gzip:1", "gzip:6", "gzip:9", "xz:0", "xz:6", "xz:9",
    ])
    func everyLevelRoundTripsWithReusedContexts(text: String) throws {
        let spec = try CompressionSpec(parsing: text)
        let compressor = try Compressor(spec)
        #expect(compressor.spec == spec)
        let decompressor = try Decompressor(spec.codec)
        // Blocks of different sizes and kinds through one Compressor, one output array, one Decompressor.
        let blocks = [
            Samples.text128K, Array(Samples.mixed1M[(128 << 10)..<(256 << 10)]), Samples.random4K,
            Array(Samples.text128K.prefix(1000)), Array(Samples.mixed1M[(512 << 10)..<(640 << 10)]), Samples.text128K,
        ]
        var output = [UInt8]()
        var block = [UInt8](repeating: 0, count: 128 << 10)
        for input in blocks {
            let smaller = try input.withUnsafeBytes { try compressor.compress($0, into: &output) }
            guard smaller else {
                #expect(input == Samples.random4K)
                continue
            }
            #expect(output.count < input.count)
            let written = try output.withUnsafeBytes { compressed in
                try block.withUnsafeMutableBytes { try decompressor.decompress(compressed, into: $0) }
            }
            #expect(Array(block.prefix(written)) == input)
        }
    }

    @Test(arguments: realCodecs)
    func compressionIsDeterministic(codec: Codec) throws {
        let spec = CompressionSpec(codec: codec, level: codec.defaultLevel)
        let first = try Compressor(spec).compress(Samples.text128K)
        let reused = try Compressor(spec)
        _ = try reused.compress(Samples.mixed1M)
        #expect(try reused.compress(Samples.text128K) == first)
    }

    @Test func outputLargerThanNeededIsTrimmed() throws {
        let compressor = try Compressor(CompressionSpec(codec: .zstd, level: 3))
        var output = [UInt8](repeating: 0xFF, count: 4 << 20)
        let smaller = try Samples.text128K.withUnsafeBytes { try compressor.compress($0, into: &output) }
        #expect(smaller)
        #expect(output.count < Samples.text128K.count)
        #expect(try Decompressor(.zstd).decompress(output, capacity: 128 << 10) == Samples.text128K)
    }

    @Test(arguments: realCodecs)
    func incompressibleBlocksAreDeclined(codec: Codec) throws {
        for level in codec.levels {
            let compressor = try Compressor(CompressionSpec(codec: codec, level: level))
            #expect(try compressor.compress(Samples.random4K) == nil, "\(codec):\(level)")
            #expect(try compressor.compress(TestData.random(128 << 10, seed: 9)) == nil, "\(codec):\(level)")
        }
    }

    @Test func noneCopiesOnDecompress() throws {
        let decompressor = try Decompressor(.none)
        #expect(try decompressor.decompress(Samples.random4K, capacity: 4096) == Samples.random4K)
        #expect(try decompressor.decompress([], capacity: 0) == [])
        #expect(throws: CompressionError.tooLarge(.none)) {
            try decompressor.decompress(Samples.random4K, capacity: 4095)
        }
    }
}

@Suite struct DamageTests {
    static func block(_ codec: Codec) throws -> [UInt8] {
        try #require(try Compressor(CompressionSpec(codec: codec, level: codec.defaultLevel)).compress(Samples.text128K))
    }

    @Test(arguments: Codec.allCases)
    func tooSmallOutputThrowsTooLargeAndWritesNothingPast(codec: Codec) throws {
        let block = codec == .none ? Samples.text128K : try Self.block(codec)
        let decompressor = try Decompressor(codec)
        for capacity in [0, 1, 100, 64 << 10, (128 << 10) - 1] {
            let (result, intact) = decompressor.guardedDecompress(block, capacity: capacity)
            #expect(intact, "\(codec) wrote past a \(capacity)-byte buffer")
            #expect(throws: CompressionError.tooLarge(codec)) { try result.get() }
        }
        // And the decompressor is still good afterwards.
        #expect(try decompressor.decompress(block, capacity: 128 << 10) == Samples.text128K)
    }

    @Test(arguments: realCodecs)
    func emptyAndTruncatedBlocksThrow(codec: Codec) throws {
        let block = try Self.block(codec)
        let decompressor = try Decompressor(codec)
        #expect(throws: CompressionError.corrupt(codec, "empty block")) {
            try decompressor.decompress([], capacity: 128 << 10)
        }
        for length in [1, 2, 5, 17, block.count / 2, block.count - 1] {
            let (result, intact) = decompressor.guardedDecompress(Array(block.prefix(length)), capacity: 128 << 10)
            #expect(intact)
            switch result {
            case .failure(let error):
                #expect(Self.isDataError(error, codec), "\(error)")
            case .success(let output):
                // A raw LZ4 block carries neither its length nor a checksum: a cut just after a literal
                // run reads as a shorter block. Every other codec must notice.
                #expect(codec == .lz4 && output.count < Samples.text128K.count, "\(codec) accepted a truncated block")
            }
        }
        #expect(try decompressor.decompress(block, capacity: 128 << 10) == Samples.text128K)
    }

    @Test(arguments: realCodecs)
    func flippedBytesThrowOrAtWorstGiveOtherBytes(codec: Codec) throws {
        let block = try Self.block(codec)
        let decompressor = try Decompressor(codec)
        for position in [0, 1, 3, 4, 7, 12, block.count / 3, block.count / 2, block.count - 5, block.count - 1] {
            var damaged = block
            damaged[position] ^= 0x5A
            let (result, intact) = decompressor.guardedDecompress(damaged, capacity: 128 << 10)
            #expect(intact)
            switch result {
            case .failure(let error):
                #expect(Self.isDataError(error, codec), "\(error)")
            case .success(let output):
                // gzip (Adler-32) and xz (CRC32) are checked; a zstd frame without checksum and a raw LZ4
                // block can decode damaged data to other bytes. A damaged magic number is always caught.
                #expect(codec == .zstd || codec == .lz4, "\(codec) accepted a flip at \(position)")
                #expect(position != 0 || codec == .lz4, "\(codec) accepted a damaged magic number")
                #expect(output != Samples.text128K)
            }
        }
    }

    /// Many random mutations: never a crash, never a write past the buffer, and the checked codecs
    /// always notice.
    @Test(arguments: realCodecs)
    func randomDamageNeverCrashes(codec: Codec) throws {
        let block = try Self.block(codec)
        let decompressor = try Decompressor(codec)
        var generator = SplitMix64(seed: UInt64(codec.rawValue))
        for round in 0..<300 {
            var damaged = block
            for _ in 0...(round % 4) {
                damaged[Int(generator.next() % UInt64(damaged.count))] ^= UInt8(1 + generator.next() % 255)
            }
            if round % 3 == 0 { damaged.removeLast(Int(generator.next() % UInt64(damaged.count - 1))) }
            let capacity = round % 5 == 0 ? Int(generator.next() % (128 << 10)) : 128 << 10
            let (result, intact) = decompressor.guardedDecompress(damaged, capacity: capacity)
            #expect(intact, "\(codec) round \(round) wrote past its buffer")
            if case .failure(let error) = result {
                #expect(Self.isDataError(error, codec), "\(error)")
            } else {
                #expect(codec == .zstd || codec == .lz4, "\(codec) round \(round) accepted damaged data")
            }
        }
        #expect(try decompressor.decompress(block, capacity: 128 << 10) == Samples.text128K)
    }

    @Test(arguments: realCodecs)
    func garbageThrows(codec: Codec) throws {
        let decompressor = try Decompressor(codec)
        for (index, size) in [1, 2, 3, 16, 100, 1000, 4096, 70000].enumerated() {
            let garbage = TestData.random(size, seed: UInt64(1000 + index))
            let (result, intact) = decompressor.guardedDecompress(garbage, capacity: 128 << 10)
            #expect(intact)
            if case .failure(let error) = result {
                #expect(Self.isDataError(error, codec), "\(error)")
            } else {
                #expect(codec == .lz4, "\(codec) accepted \(size) random bytes")
            }
            let zeros = decompressor.guardedDecompress([UInt8](repeating: 0, count: size), capacity: 4096)
            #expect(zeros.intact)
        }
    }

    static func isDataError(_ error: any Error, _ codec: Codec) -> Bool {
        switch error as? CompressionError {
        case .corrupt(codec, _)?, .tooLarge(codec)?: true
        default: false
        }
    }
}
