import CZlib
import CZstd
import Crypto
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The bounds a layer must stay in, against hostile images.
public struct ImportLimits: Sendable {
    /// Uncompressed bytes of one layer at most.
    public var layerBytes: UInt64 = 1 << 40
    /// Past this many uncompressed bytes, a layer may be at most `ratio` times its compressed size.
    public var ratioFloor: UInt64 = 1 << 30
    public var ratio: UInt64 = 1000

    public init() {}

    /// The defaults, with `LSTORE_IMPORT_LAYER_LIMIT` and `LSTORE_IMPORT_RATIO_FLOOR` (bytes) from
    /// `environment` where set: smaller machines and tests set them lower.
    public init(environment: [String: String]) throws {
        self.init()
        for (key, path) in [("LSTORE_IMPORT_LAYER_LIMIT", \ImportLimits.layerBytes), ("LSTORE_IMPORT_RATIO_FLOOR", \ImportLimits.ratioFloor)] {
            if let text = environment[key], !text.isEmpty {
                guard let value = UInt64(text) else { throw ImportError("\(key) '\(text)' is not a number of bytes") }
                self[keyPath: path] = value
            }
        }
    }
}

/// A layer blob as its uncompressed tar: the compression found from its first bytes (gzip, any
/// number of members; zstd, any number of frames, skippable ones too; else plain tar), both the
/// blob and the tar hashed as they stream, within `ImportLimits`.
final class LayerStream {
    private enum Codec { case plain, gzip, zstd }

    let display: String
    private let blob: BlobReader
    private let limits: ImportLimits
    private var codec: Codec = .plain
    private var input = [UInt8](repeating: 0, count: 1 << 18)
    private var inputStart = 0, inputEnd = 0
    private var blobDone = false
    private var zlib: UnsafeMutablePointer<z_stream>?
    private var zstd: OpaquePointer?
    /// For zstd: what the last call returned (0 once a frame is complete).
    private var zstdPending = 0
    private var gzipEnded = false
    private var ended = false
    private(set) var produced: UInt64 = 0
    private var hash = SHA256()

    init(blob: BlobReader, display: String, limits: ImportLimits) throws {
        self.blob = blob
        self.display = display
        self.limits = limits
        try refill()
        let head = input[inputStart..<inputEnd]
        if head.starts(with: [0x1f, 0x8b]) {
            codec = .gzip
            zlib = .allocate(capacity: 1)
            zlib!.initialize(to: z_stream())
            guard inflateInit2_(zlib, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw ImportError("\(display): cannot start zlib")
            }
        } else if head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) || (head.count >= 4 && head[head.startIndex] & 0xf0 == 0x50
                    && Array(head[(head.startIndex + 1)..<(head.startIndex + 4)]) == [0x2a, 0x4d, 0x18]) {
            codec = .zstd
            zstd = ZSTD_createDStream()
            guard zstd != nil else { throw ImportError("\(display): cannot start zstd") }
            ZSTD_DCtx_setParameter(zstd, ZSTD_d_windowLogMax, 27)
        }
    }

    deinit {
        if let zlib {
            inflateEnd(zlib)
            zlib.deinitialize(count: 1)
            zlib.deallocate()
        }
        if let zstd { ZSTD_freeDStream(zstd) }
    }

    /// Reads more of the blob when what was read is used up.
    private func refill() throws {
        guard inputStart == inputEnd, !blobDone else { return }
        let got = try input.withUnsafeMutableBytes { try blob.read(into: $0) }
        inputStart = 0
        inputEnd = got
        if got == 0 { blobDone = true }
    }

    /// Zero bytes still to hand out after the layer's own: see `read`.
    private var tail: Int?

    /// Fills `buffer` with uncompressed tar bytes; fewer only at the end, 0 after it.
    ///
    /// After the layer's bytes come zeros up to the next 512-byte boundary (neither hashed nor
    /// counted): a tar that ends inside its last block's padding, as umoci's `insert` writes it,
    /// is read as the padded archive it stands for. A file cut short by more than its padding is
    /// still refused: the padding is never more than the last block lacks.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        while filled < buffer.count, !ended {
            let out = UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])
            let got = try step(into: out)
            if got > 0 {
                hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: out[0..<got]))
                filled += got
                produced += UInt64(got)
                try checkLimits()
            }
        }
        if ended, filled < buffer.count {
            if tail == nil { tail = (512 - Int(produced % 512)) % 512 }
            let count = min(tail!, buffer.count - filled)
            memset(buffer.baseAddress! + filled, 0, count)
            tail! -= count
            filled += count
        }
        return filled
    }

    private func checkLimits() throws {
        if produced > limits.layerBytes {
            throw ImportError("\(display): more than \(limits.layerBytes) bytes uncompressed, the limit for a layer")
        }
        if produced > limits.ratioFloor, produced / max(1, UInt64(blob.position)) > limits.ratio {
            throw ImportError("\(display): a decompression bomb: \(produced) bytes from \(blob.position) compressed ones")
        }
    }

    /// One move of the decompressor; sets `ended` at the blob's end.
    private func step(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        try refill()
        let available = inputEnd - inputStart
        switch codec {
        case .plain:
            if available == 0 { ended = true; return 0 }
            let count = min(available, out.count)
            input.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress! + inputStart, byteCount: count) }
            inputStart += count
            return count
        case .gzip:
            if available == 0 {
                guard gzipEnded else { throw ImportError("\(display): the gzip stream is truncated") }
                ended = true
                return 0
            }
            if gzipEnded {
                // Another member follows the one that ended.
                guard inflateReset(zlib) == Z_OK else { throw ImportError("\(display): zlib reset failed") }
                gzipEnded = false
            }
            return try input.withUnsafeMutableBytes { raw in
                zlib!.pointee.next_in = raw.baseAddress!.assumingMemoryBound(to: Bytef.self) + inputStart
                zlib!.pointee.avail_in = UInt32(available)
                zlib!.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                zlib!.pointee.avail_out = UInt32(min(out.count, Int(UInt32.max)))
                let code = inflate(zlib, Z_NO_FLUSH)
                let used = available - Int(zlib!.pointee.avail_in)
                inputStart += used
                let made = min(out.count, Int(UInt32.max)) - Int(zlib!.pointee.avail_out)
                switch code {
                case Z_STREAM_END: gzipEnded = true
                case Z_OK: break
                case Z_BUF_ERROR where used == 0 && made == 0: throw ImportError("\(display): the gzip stream is truncated")
                case Z_BUF_ERROR: break
                default:
                    let message = zlib!.pointee.msg.map { String(cString: $0) } ?? "code \(code)"
                    throw ImportError("\(display): not valid gzip data: \(message)")
                }
                return made
            }
        case .zstd:
            if available == 0 {
                guard zstdPending == 0 else { throw ImportError("\(display): the zstd stream is truncated") }
                ended = true
                return 0
            }
            return try input.withUnsafeMutableBytes { raw in
                var inBuffer = ZSTD_inBuffer(src: raw.baseAddress! + inputStart, size: available, pos: 0)
                var outBuffer = ZSTD_outBuffer(dst: out.baseAddress!, size: out.count, pos: 0)
                let code = ZSTD_decompressStream(zstd, &outBuffer, &inBuffer)
                if ZSTD_isError(code) != 0 {
                    throw ImportError("\(display): not valid zstd data: \(String(cString: ZSTD_getErrorName(code)))")
                }
                zstdPending = code
                inputStart += inBuffer.pos
                return outBuffer.pos
            }
        }
    }

    /// Reads what the tar reader left (the archive's end blocks, padding) and checks the blob's
    /// digest and the tar's against what the manifest and the config say.
    func finish(blobDigest: ImageDigest?, diffID: ImageDigest) throws {
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        while try scratch.withUnsafeMutableBytes({ try read(into: $0) }) > 0 {}
        if let blobDigest, blob.digest() != blobDigest {
            throw ImportError("\(display): the blob has digest \(blob.digest().short), not the \(blobDigest.short) the manifest says")
        }
        let tarDigest = imageDigest(hash)
        guard tarDigest == diffID else {
            throw ImportError("\(display): the uncompressed layer has digest \(tarDigest.short), not the diff_id \(diffID.short) the config says")
        }
    }
}
