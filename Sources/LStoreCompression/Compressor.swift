import CLZ4
import CLZMA
import CZlib
import CZstd

/// Compresses blocks one at a time with one codec and level. Not thread-safe: one per thread.
///
/// Each codec writes exactly what a squashfs data block of that codec holds, so blocks can be copied
/// byte for byte into an image:
/// - zstd: one zstd frame with the content size and no checksum (`ZSTD_compress2`), from a reused context;
/// - lz4: a raw LZ4 block (`LZ4_compress_default`; `lz4:hc` is `LZ4_compress_HC` at `LZ4HC_CLEVEL_MAX`);
/// - gzip: a zlib stream (deflate, window 15, memLevel 8, default strategy), from a reused z_stream;
/// - xz: an .xz stream with a CRC32 check and one LZMA2 filter of the preset, whose dictionary is
///   shrunk to the smallest that covers the input (see `compressXZ`);
/// - none: never compresses.
public final class Compressor {
    public let spec: CompressionSpec
    private let state: State

    private enum State {
        case none
        case zstd(OpaquePointer)  // ZSTD_CCtx*
        case lz4(UnsafeMutableRawPointer)  // LZ4_stream_t
        case lz4HC(UnsafeMutableRawPointer)  // LZ4_streamHC_t
        case gzip(UnsafeMutablePointer<z_stream>)
        case xz(lzma_options_lzma)  // the preset's options; the dictionary size is set per block
    }

    /// Throws `invalidSpec` when the level is outside `spec.codec.levels`, `library` when the codec's
    /// context cannot be made.
    public init(_ spec: CompressionSpec) throws {
        guard spec.codec.levels.contains(spec.level) else {
            throw CompressionError.invalidSpec(spec.description)
        }
        self.spec = spec
        switch spec.codec {
        case .none:
            state = .none

        case .zstd:
            guard let cctx = ZSTD_createCCtx() else { throw CompressionError.library(.zstd, "cannot create ZSTD_CCtx") }
            for (parameter, value) in [
                (ZSTD_c_compressionLevel, Int32(spec.level)),
                (ZSTD_c_checksumFlag, 0),
                (ZSTD_c_contentSizeFlag, 1),  // single-segment frames: the kernel's window is the block size
            ] {
                let code = ZSTD_CCtx_setParameter(cctx, parameter, value)
                if ZSTD_isError(code) != 0 {
                    ZSTD_freeCCtx(cctx)
                    throw CompressionError.library(.zstd, String(cString: ZSTD_getErrorName(code)))
                }
            }
            state = .zstd(cctx)

        case .lz4:
            // The states are plain memory that the extState calls initialise on each use.
            let hc = spec.level == 1
            let size = Int(hc ? LZ4_sizeofStateHC() : LZ4_sizeofState())
            let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            state = hc ? .lz4HC(memory) : .lz4(memory)

        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // deflateInit2 is a macro: call the function it expands to.
            let code = deflateInit2_(
                stream, Int32(spec.level), Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY,
                ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
            guard code == Z_OK else {
                stream.deinitialize(count: 1)
                stream.deallocate()
                throw CompressionError.library(.gzip, "deflateInit2 failed (\(code))")
            }
            state = .gzip(stream)

        case .xz:
            var options = lzma_options_lzma()
            guard lzma_lzma_preset(&options, UInt32(spec.level)) == 0 else {
                throw CompressionError.library(.xz, "unsupported preset \(spec.level)")
            }
            state = .xz(options)
        }
    }

    deinit {
        switch state {
        case .none, .xz:
            break
        case .zstd(let cctx):
            ZSTD_freeCCtx(cctx)
        case .lz4(let memory), .lz4HC(let memory):
            memory.deallocate()
        case .gzip(let stream):
            deflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
    }

    /// Compresses `input` into `output` (replacing its contents) in the exact form a squashfs data
    /// block of this codec has (a zstd frame, an lz4 block, a zlib stream, an xz stream with CRC32).
    /// Returns false, leaving `output` unspecified, when the result would not be smaller than the
    /// input: the caller then stores the block raw.
    ///
    /// `output` grows to the codec's worst-case bound on first use and keeps that capacity, so a
    /// Compressor fed blocks of one size allocates nothing after its first block.
    public func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws -> Bool {
        guard let source = input.baseAddress, input.count > 0 else { return false }
        let size: Int
        switch state {
        case .none:
            return false
        case .zstd(let cctx):
            size = try compressZstd(cctx, source, input.count, &output)
        case .lz4(let memory):
            size = try compressLZ4(memory, hc: false, source, input.count, &output)
        case .lz4HC(let memory):
            size = try compressLZ4(memory, hc: true, source, input.count, &output)
        case .gzip(let stream):
            size = try compressGzip(stream, source, input.count, &output)
        case .xz(let options):
            size = try compressXZ(options, source, input.count, &output)
        }
        guard size < input.count else { return false }
        output.removeLast(output.count - size)  // keeps the capacity
        return true
    }

    // MARK: - Codecs. Each returns the compressed size, which may not be smaller than the input.

    private func compressZstd(
        _ cctx: OpaquePointer, _ source: UnsafeRawPointer, _ count: Int, _ output: inout [UInt8]
    ) throws -> Int {
        Self.grow(&output, to: ZSTD_compressBound(count))
        let code = output.withUnsafeMutableBytes { out in
            ZSTD_compress2(cctx, out.baseAddress, out.count, source, count)
        }
        if ZSTD_isError(code) != 0 {
            throw CompressionError.library(.zstd, String(cString: ZSTD_getErrorName(code)))
        }
        return code
    }

    private func compressLZ4(
        _ memory: UnsafeMutableRawPointer, hc: Bool, _ source: UnsafeRawPointer, _ count: Int,
        _ output: inout [UInt8]
    ) throws -> Int {
        guard count <= Int(LZ4_MAX_INPUT_SIZE) else {
            throw CompressionError.library(.lz4, "input of \(count) bytes exceeds LZ4_MAX_INPUT_SIZE")
        }
        Self.grow(&output, to: Int(LZ4_compressBound(Int32(count))))
        let written = output.withUnsafeMutableBytes { out -> Int32 in
            let src = source.assumingMemoryBound(to: CChar.self)
            let dst = out.baseAddress!.assumingMemoryBound(to: CChar.self)
            let capacity = Int32(clamping: out.count)
            return hc
                ? LZ4_compress_HC_extStateHC(memory, src, dst, Int32(count), capacity, LZ4HC_CLEVEL_MAX)
                // What LZ4_compress_default does, with the state kept instead of on the stack.
                : LZ4_compress_fast_extState(memory, src, dst, Int32(count), capacity, 1)
        }
        guard written > 0 else { throw CompressionError.library(.lz4, "compression failed") }
        return Int(written)
    }

    private func compressGzip(
        _ stream: UnsafeMutablePointer<z_stream>, _ source: UnsafeRawPointer, _ count: Int,
        _ output: inout [UInt8]
    ) throws -> Int {
        guard count <= Int(UInt32.max) else {
            throw CompressionError.library(.gzip, "input of \(count) bytes is too large for one deflate call")
        }
        guard deflateReset(stream) == Z_OK else { throw CompressionError.library(.gzip, "deflateReset failed") }
        Self.grow(&output, to: Int(deflateBound(stream, UInt(count))))
        let code = output.withUnsafeMutableBytes { out -> Int32 in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = UInt32(count)
            stream.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = UInt32(clamping: out.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.next_out = nil
            }
            return deflate(stream, Z_FINISH)
        }
        guard code == Z_STREAM_END else {
            throw CompressionError.library(.gzip, "deflate did not finish (\(code))")
        }
        return Int(stream.pointee.total_out)
    }

    /// The preset's LZMA2 options with the dictionary shrunk to the input size (at least 4 KiB; liblzma
    /// writes it rounded up to 2^n or 2^n + 2^(n-1)). A dictionary larger than the block gains nothing,
    /// and the kernel's squashfs decoder preallocates max(block size, 8 KiB) and rejects any block
    /// whose header asks for more: preset 6's 8 MiB dictionary would not mount. mksquashfs does the same
    /// (dictionary = block size). liblzma's buffer encoder allocates its own state on each call.
    private func compressXZ(
        _ preset: lzma_options_lzma, _ source: UnsafeRawPointer, _ count: Int, _ output: inout [UInt8]
    ) throws -> Int {
        var options = preset
        options.dict_size = min(preset.dict_size, UInt32(clamping: max(count, 4096)))
        Self.grow(&output, to: lzma_stream_buffer_bound(count))
        var position = 0
        let code = withUnsafeMutablePointer(to: &options) { options in
            withUnsafeTemporaryAllocation(of: lzma_filter.self, capacity: 2) { filters in
                filters[0] = lzma_filter(id: lzmaFilterLZMA2, options: UnsafeMutableRawPointer(options))
                filters[1] = lzma_filter(id: lzmaVLIUnknown, options: nil)
                return output.withUnsafeMutableBytes { out in
                    lzma_stream_buffer_encode(
                        filters.baseAddress, LZMA_CHECK_CRC32, nil,
                        source.assumingMemoryBound(to: UInt8.self), count,
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), &position, out.count)
                }
            }
        }
        guard code == LZMA_OK else { throw CompressionError.library(.xz, lzmaMessage(code)) }
        return position
    }

    /// Makes `output` at least `count` bytes long; within its capacity this allocates nothing.
    @inline(__always)
    private static func grow(_ output: inout [UInt8], to count: Int) {
        if output.count < count {
            output.append(contentsOf: repeatElement(0, count: count - output.count))
        }
    }
}

// liblzma's filter ids are function-like macros, which Swift does not import.
let lzmaFilterLZMA2: lzma_vli = 0x21
let lzmaVLIUnknown: lzma_vli = .max

func lzmaMessage(_ code: lzma_ret) -> String {
    switch code {
    case LZMA_MEM_ERROR: "out of memory"
    case LZMA_MEMLIMIT_ERROR: "memory limit reached"
    case LZMA_FORMAT_ERROR: "not an .xz stream"
    case LZMA_OPTIONS_ERROR: "unsupported options"
    case LZMA_DATA_ERROR: "data is corrupt or truncated"
    case LZMA_BUF_ERROR: "output buffer too small"
    case LZMA_PROG_ERROR: "invalid arguments"
    case LZMA_UNSUPPORTED_CHECK: "unsupported integrity check"
    default: "lzma_ret \(code.rawValue)"
    }
}
