import CLZ4
import CLZMA
import CZlib
import CZstd

/// Decompresses blocks of one codec. Not thread-safe: one per thread.
///
/// Blocks must be whole: trailing bytes after the end of a zlib or xz stream count as corruption.
/// A `.none` Decompressor copies its input (a block stored raw).
public final class Decompressor {
    public let codec: Codec
    private let state: State
    /// Stands in for the base address of an empty output buffer, which the C libraries want non-null.
    private let spare: UnsafeMutableRawPointer

    private enum State {
        case none
        case zstd(OpaquePointer)  // ZSTD_DCtx*
        case lz4
        case gzip(UnsafeMutablePointer<z_stream>)
        case xz
    }

    /// The most memory an xz block may ask for: preset 9's 64 MiB dictionary and the decoder's state.
    /// lstore's own blocks ask for at most their size; a corrupt header asking for more is refused.
    private static let xzMemoryLimit: UInt64 = 80 << 20

    public init(_ codec: Codec) throws {
        self.codec = codec
        switch codec {
        case .none:
            state = .none
        case .zstd:
            guard let dctx = ZSTD_createDCtx() else { throw CompressionError.library(.zstd, "cannot create ZSTD_DCtx") }
            state = .zstd(dctx)
        case .lz4:
            state = .lz4
        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // inflateInit2 is a macro: call the function it expands to. Window 15 with a zlib header.
            let code = inflateInit2_(stream, 15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard code == Z_OK else {
                stream.deinitialize(count: 1)
                stream.deallocate()
                throw CompressionError.library(.gzip, "inflateInit2 failed (\(code))")
            }
            state = .gzip(stream)
        case .xz:
            state = .xz
        }
        spare = .allocate(byteCount: 16, alignment: 16)
    }

    deinit {
        switch state {
        case .none, .lz4, .xz:
            break
        case .zstd(let dctx):
            ZSTD_freeDCtx(dctx)
        case .gzip(let stream):
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        spare.deallocate()
    }

    /// Decompresses `input` into `output`, which has room for exactly the bytes expected at most.
    /// Returns the number of bytes written. Throws `CompressionError.corrupt` on malformed input and
    /// `CompressionError.tooLarge` when the data would not fit: never writes past `output`.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let destination = output.baseAddress ?? spare
        let capacity = output.count
        guard let source = input.baseAddress, input.count > 0 else {
            if case .none = state { return 0 }
            throw CompressionError.corrupt(codec, "empty block")
        }
        switch state {
        case .none:
            guard input.count <= capacity else { throw CompressionError.tooLarge(.none) }
            destination.copyMemory(from: source, byteCount: input.count)
            return input.count
        case .zstd(let dctx):
            return try decompressZstd(dctx, source, input.count, destination, capacity)
        case .lz4:
            return try decompressLZ4(input, destination, capacity)
        case .gzip(let stream):
            return try decompressGzip(stream, source, input.count, destination, capacity)
        case .xz:
            return try decompressXZ(source, input.count, destination, capacity)
        }
    }

    // MARK: - Codecs

    private func decompressZstd(
        _ dctx: OpaquePointer, _ source: UnsafeRawPointer, _ count: Int,
        _ destination: UnsafeMutableRawPointer, _ capacity: Int
    ) throws -> Int {
        let code = ZSTD_decompressDCtx(dctx, destination, capacity, source, count)
        guard ZSTD_isError(code) != 0 else { return code }
        if ZSTD_getErrorCode(code) == ZSTD_error_dstSize_tooSmall { throw CompressionError.tooLarge(.zstd) }
        if ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation {
            throw CompressionError.library(.zstd, String(cString: ZSTD_getErrorName(code)))
        }
        throw CompressionError.corrupt(.zstd, String(cString: ZSTD_getErrorName(code)))
    }

    private func decompressLZ4(
        _ input: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawPointer, _ capacity: Int
    ) throws -> Int {
        guard input.count <= Int(Int32.max) else { throw CompressionError.corrupt(.lz4, "block larger than 2 GiB") }
        let written = LZ4_decompress_safe(
            input.baseAddress!.assumingMemoryBound(to: CChar.self), destination.assumingMemoryBound(to: CChar.self),
            Int32(input.count), Int32(clamping: capacity))
        if written >= 0 { return Int(written) }
        // LZ4 says only "failed": tell a block too large for the buffer from a malformed one.
        if let length = lz4DecodedLength(input), length > capacity { throw CompressionError.tooLarge(.lz4) }
        throw CompressionError.corrupt(.lz4, "malformed LZ4 block")
    }

    private func decompressGzip(
        _ stream: UnsafeMutablePointer<z_stream>, _ source: UnsafeRawPointer, _ count: Int,
        _ destination: UnsafeMutableRawPointer, _ capacity: Int
    ) throws -> Int {
        guard count <= Int(UInt32.max), capacity <= Int(UInt32.max) else {
            throw CompressionError.library(.gzip, "buffers larger than 4 GiB")
        }
        guard inflateReset(stream) == Z_OK else { throw CompressionError.library(.gzip, "inflateReset failed") }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = UInt32(count)
        stream.pointee.next_out = destination.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = UInt32(capacity)
        defer {
            stream.pointee.next_in = nil
            stream.pointee.next_out = nil
        }
        var code: Int32
        repeat {
            code = inflate(stream, Z_FINISH)
        } while code == Z_OK && stream.pointee.avail_in > 0 && stream.pointee.avail_out > 0
        switch code {
        case Z_STREAM_END:
            guard stream.pointee.avail_in == 0 else {
                throw CompressionError.corrupt(.gzip, "\(stream.pointee.avail_in) bytes after the end of the stream")
            }
            return Int(stream.pointee.total_out)
        case Z_DATA_ERROR, Z_NEED_DICT:
            let message = stream.pointee.msg.map { String(cString: $0) } ?? "invalid zlib stream"
            throw CompressionError.corrupt(.gzip, message)
        case Z_MEM_ERROR:
            throw CompressionError.library(.gzip, "out of memory")
        default:  // Z_BUF_ERROR or Z_OK: stopped before the end of the stream.
            if stream.pointee.avail_out == 0 { throw CompressionError.tooLarge(.gzip) }
            throw CompressionError.corrupt(.gzip, "truncated zlib stream")
        }
    }

    private func decompressXZ(
        _ source: UnsafeRawPointer, _ count: Int, _ destination: UnsafeMutableRawPointer, _ capacity: Int
    ) throws -> Int {
        var memoryLimit = Self.xzMemoryLimit
        var inPosition = 0
        var outPosition = 0
        let code = lzma_stream_buffer_decode(
            &memoryLimit, 0, nil, source.assumingMemoryBound(to: UInt8.self), &inPosition, count,
            destination.assumingMemoryBound(to: UInt8.self), &outPosition, capacity)
        switch code {
        case LZMA_OK:
            guard inPosition == count else {
                throw CompressionError.corrupt(.xz, "\(count - inPosition) bytes after the end of the stream")
            }
            return outPosition
        case LZMA_BUF_ERROR:
            throw CompressionError.tooLarge(.xz)
        case LZMA_MEM_ERROR:
            throw CompressionError.library(.xz, lzmaMessage(code))
        case LZMA_MEMLIMIT_ERROR:
            throw CompressionError.corrupt(.xz, "needs more than \(Self.xzMemoryLimit >> 20) MiB to decode")
        default:
            throw CompressionError.corrupt(.xz, lzmaMessage(code))
        }
    }
}

/// The length an LZ4 block decodes to, or nil if it is not a well-formed block: walks the sequences
/// (literal run, then a match with a non-zero offset into what came before) without writing anything.
func lz4DecodedLength(_ block: UnsafeRawBufferPointer) -> Int? {
    let end = block.count
    var i = 0
    var length = 0
    /// A 4-bit length, extended by bytes while they are 255.
    func extend(_ base: Int) -> Int? {
        var total = base
        guard base == 15 else { return total }
        while true {
            guard i < end else { return nil }
            let byte = block[i]
            i += 1
            total += Int(byte)
            if byte != 255 { return total }
        }
    }
    while true {
        guard i < end else { return nil }
        let token = block[i]
        i += 1
        guard let literals = extend(Int(token >> 4)), literals <= end - i else { return nil }
        i += literals
        length += literals
        if i == end { return length }  // the last sequence is literals alone
        guard end - i >= 2 else { return nil }
        let offset = Int(block[i]) | Int(block[i + 1]) << 8
        i += 2
        guard offset != 0, offset <= length, let match = extend(Int(token & 15)) else { return nil }
        length += match + 4
    }
}
