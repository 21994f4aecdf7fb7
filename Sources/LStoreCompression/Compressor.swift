import CLZ4
import CLZMA
import CZlib
import CZstd

/// Compresses blocks one at a time with one codec and level, in exactly the form a squashfs data
/// block of that codec holds. Not thread-safe: one per thread.
public final class Compressor {
    public let spec: CompressionSpec
    private var zstd: OpaquePointer?
    private var lz4State: UnsafeMutableRawPointer?
    private var zlib: UnsafeMutablePointer<z_stream>?

    public init(_ spec: CompressionSpec) throws {
        self.spec = spec
        switch spec.codec {
        case .zstd:
            guard let context = ZSTD_createCCtx() else { throw CompressionError.library(.zstd, "cannot create a context") }
            zstd = context
            ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(spec.level))
        case .lz4:
            if spec.level == 1 {
                lz4State = UnsafeMutableRawPointer.allocate(byteCount: Int(LZ4_sizeofStateHC()), alignment: 16)
            }
        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            let status = deflateInit2_(stream, Int32(spec.level), Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY,
                                       ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard status == Z_OK else {
                stream.deallocate()
                throw CompressionError.library(.gzip, "deflateInit2 failed (\(status))")
            }
            zlib = stream
        case .xz, .none:
            break
        }
    }

    deinit {
        if let zstd { ZSTD_freeCCtx(zstd) }
        lz4State?.deallocate()
        if let zlib {
            deflateEnd(zlib)
            zlib.deallocate()
        }
    }

    /// Compresses `input` into `output` (replacing its contents). Returns false, leaving `output`
    /// unspecified, when the result would not be smaller than the input: store it raw then.
    public func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws -> Bool {
        guard spec.codec != .none, input.count > 0 else { return false }
        let bound: Int
        switch spec.codec {
        case .zstd: bound = ZSTD_compressBound(input.count)
        case .lz4: bound = Int(LZ4_compressBound(Int32(input.count)))
        case .gzip: bound = Int(deflateBound(zlib, uLong(input.count)))
        case .xz: bound = lzma_stream_buffer_bound(input.count)
        case .none: return false
        }
        if output.count < bound { output = [UInt8](repeating: 0, count: bound) }
        let written: Int = try output.withUnsafeMutableBytes { out in
            switch spec.codec {
            case .zstd:
                let result = ZSTD_compress2(zstd, out.baseAddress, out.count, input.baseAddress, input.count)
                guard ZSTD_isError(result) == 0 else {
                    throw CompressionError.library(.zstd, String(cString: ZSTD_getErrorName(result)))
                }
                return result
            case .lz4:
                let src = input.baseAddress!.assumingMemoryBound(to: CChar.self)
                let dst = out.baseAddress!.assumingMemoryBound(to: CChar.self)
                let result = lz4State.map {
                    LZ4_compress_HC_extStateHC($0, src, dst, Int32(input.count), Int32(out.count), LZ4HC_CLEVEL_MAX)
                } ?? LZ4_compress_default(src, dst, Int32(input.count), Int32(out.count))
                guard result > 0 else { throw CompressionError.library(.lz4, "compression failed") }
                return Int(result)
            case .gzip:
                let stream = zlib!
                deflateReset(stream)
                stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
                stream.pointee.avail_in = uInt(input.count)
                stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(out.count)
                let status = deflate(stream, Z_FINISH)
                guard status == Z_STREAM_END else { throw CompressionError.library(.gzip, "deflate failed (\(status))") }
                return Int(stream.pointee.total_out)
            case .xz:
                var position = 0
                let status = lzma_easy_buffer_encode(UInt32(spec.level), LZMA_CHECK_CRC32, nil,
                                                     input.baseAddress!.assumingMemoryBound(to: UInt8.self), input.count,
                                                     out.baseAddress!.assumingMemoryBound(to: UInt8.self), &position, out.count)
                guard status == LZMA_OK else { throw CompressionError.library(.xz, "encoder failed (\(status.rawValue))") }
                return position
            case .none:
                return 0
            }
        }
        guard written < input.count else { return false }
        output.removeSubrange(written...)
        return true
    }
}

/// Decompresses blocks of one codec, never writing past the output. Not thread-safe: one per thread.
public final class Decompressor {
    public let codec: Codec
    private var zstd: OpaquePointer?
    private var zlib: UnsafeMutablePointer<z_stream>?

    public init(_ codec: Codec) throws {
        self.codec = codec
        switch codec {
        case .zstd:
            guard let context = ZSTD_createDCtx() else { throw CompressionError.library(.zstd, "cannot create a context") }
            zstd = context
        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            let status = inflateInit2_(stream, 15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard status == Z_OK else {
                stream.deallocate()
                throw CompressionError.library(.gzip, "inflateInit2 failed (\(status))")
            }
            zlib = stream
        case .lz4, .xz, .none:
            break
        }
    }

    deinit {
        if let zstd { ZSTD_freeDCtx(zstd) }
        if let zlib {
            inflateEnd(zlib)
            zlib.deallocate()
        }
    }

    /// Decompresses `input` into `output`; returns the number of bytes written. Throws `corrupt`
    /// on malformed input and `tooLarge` when the data would not fit.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        switch codec {
        case .none:
            guard input.count <= output.count else { throw CompressionError.tooLarge(.none) }
            if input.count > 0 { output.baseAddress!.copyMemory(from: input.baseAddress!, byteCount: input.count) }
            return input.count
        case .zstd:
            guard input.count > 0 else { throw CompressionError.corrupt(.zstd, "empty input") }
            let result = ZSTD_decompressDCtx(zstd, output.baseAddress, output.count, input.baseAddress, input.count)
            if ZSTD_isError(result) != 0 {
                if ZSTD_getErrorCode(result) == ZSTD_error_dstSize_tooSmall { throw CompressionError.tooLarge(.zstd) }
                throw CompressionError.corrupt(.zstd, String(cString: ZSTD_getErrorName(result)))
            }
            return result
        case .lz4:
            guard input.count > 0, output.count > 0 else { throw CompressionError.corrupt(.lz4, "empty input") }
            let result = LZ4_decompress_safe(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                             output.baseAddress!.assumingMemoryBound(to: CChar.self),
                                             Int32(input.count), Int32(output.count))
            guard result >= 0 else { throw CompressionError.corrupt(.lz4, "malformed block") }
            return Int(result)
        case .gzip:
            guard input.count > 0 else { throw CompressionError.corrupt(.gzip, "empty input") }
            let stream = zlib!
            inflateReset(stream)
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = uInt(input.count)
            var spare: UInt8 = 0
            // An empty output still needs a valid pointer: zlib reports there is no room.
            stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self) ?? withUnsafeMutablePointer(to: &spare) { $0 }
            stream.pointee.avail_out = uInt(output.count)
            let status = inflate(stream, Z_FINISH)
            switch status {
            case Z_STREAM_END: return Int(stream.pointee.total_out)
            case Z_BUF_ERROR where stream.pointee.avail_out == 0: throw CompressionError.tooLarge(.gzip)
            default: throw CompressionError.corrupt(.gzip, "inflate failed (\(status))")
            }
        case .xz:
            guard input.count > 0 else { throw CompressionError.corrupt(.xz, "empty input") }
            var memoryLimit: UInt64 = 256 << 20
            var inPosition = 0, outPosition = 0
            var spare: UInt8 = 0
            let status = withUnsafeMutablePointer(to: &spare) { spare in
                lzma_stream_buffer_decode(&memoryLimit, 0, nil, input.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                          &inPosition, input.count,
                                          output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? spare,
                                          &outPosition, output.count)
            }
            switch status {
            case LZMA_OK: return outPosition
            case LZMA_BUF_ERROR: throw outPosition == output.count ? CompressionError.tooLarge(.xz) : CompressionError.corrupt(.xz, "truncated")
            default: throw CompressionError.corrupt(.xz, "decoder failed (\(status.rawValue))")
            }
        }
    }
}
