import CZlib
import CZstd
import Crypto
import Dispatch
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// How an exported layer is compressed (spec/oci.md §7.2).
public enum LayerCompression: String, Sendable, CaseIterable {
    /// gzip, level 6: one gzip member per chunk of tar.
    case gzip
    /// zstd, level 3: one zstd frame per chunk of tar.
    case zstd
    /// The tar as it is.
    case none

    /// Bytes of tar compressed as one gzip member or zstd frame: chunks are independent, so they
    /// compress in parallel, and the output is the same at any thread count.
    public static let chunkSize = 1 << 20
    static let gzipLevel: Int32 = 6
    static let zstdLevel: Int32 = 3
}

/// Compresses one chunk of tar as a whole gzip member or zstd frame, reusing its library state.
final class ChunkCompressor {
    private let compression: LayerCompression
    private var zlib: UnsafeMutablePointer<z_stream>?
    private var gzipHeader: UnsafeMutablePointer<gz_header>?
    private var zstd: OpaquePointer?

    init(_ compression: LayerCompression) throws {
        self.compression = compression
        switch compression {
        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // deflateInit2 is a macro: call the function it expands to. 15 + 16: a gzip wrapper.
            guard deflateInit2_(stream, LayerCompression.gzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                                ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                stream.deinitialize(count: 1)
                stream.deallocate()
                throw ExportError("gzip: deflateInit2 failed")
            }
            zlib = stream
            // The header zlib writes: no name, no comment, mtime 0, OS 3 (Unix) on every machine.
            let header = UnsafeMutablePointer<gz_header>.allocate(capacity: 1)
            header.initialize(to: gz_header())
            header.pointee.os = 3
            gzipHeader = header
        case .zstd:
            guard let context = ZSTD_createCCtx() else { throw ExportError("zstd: cannot create a compression context") }
            zstd = context
        case .none:
            break
        }
    }

    deinit {
        if let zlib {
            deflateEnd(zlib)
            zlib.deinitialize(count: 1)
            zlib.deallocate()
        }
        gzipHeader?.deallocate()
        if let zstd { ZSTD_freeCCtx(zstd) }
    }

    /// `input` as one gzip member or zstd frame (or as it is, for `.none`).
    func compress(_ input: [UInt8]) throws -> [UInt8] {
        switch compression {
        case .none:
            return input
        case .gzip:
            guard let zlib, let gzipHeader else { return input }
            guard deflateReset(zlib) == Z_OK, deflateSetHeader(zlib, gzipHeader) == Z_OK else { throw ExportError("gzip: deflateReset failed") }
            var output = [UInt8](repeating: 0, count: Int(deflateBound(zlib, uLong(input.count))) + 64)
            let written = try input.withUnsafeBytes { source in
                try output.withUnsafeMutableBytes { out -> Int in
                    zlib.pointee.next_in = UnsafeMutablePointer(mutating: source.bindMemory(to: Bytef.self).baseAddress)
                    zlib.pointee.avail_in = uInt(source.count)
                    zlib.pointee.next_out = out.bindMemory(to: Bytef.self).baseAddress
                    zlib.pointee.avail_out = uInt(out.count)
                    let code = deflate(zlib, Z_FINISH)
                    zlib.pointee.next_in = nil
                    zlib.pointee.next_out = nil
                    guard code == Z_STREAM_END else { throw ExportError("gzip: deflate failed (\(code))") }
                    return out.count - Int(zlib.pointee.avail_out)
                }
            }
            output.removeSubrange(written...)
            return output
        case .zstd:
            guard let zstd else { return input }
            var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
            let code = input.withUnsafeBytes { source in
                output.withUnsafeMutableBytes { out in
                    ZSTD_compressCCtx(zstd, out.baseAddress, out.count, source.baseAddress, source.count, LayerCompression.zstdLevel)
                }
            }
            if ZSTD_isError(code) != 0 { throw ExportError("zstd: \(String(cString: ZSTD_getErrorName(code)))") }
            output.removeSubrange(code...)
            return output
        }
    }
}

/// Takes a layer's tar as it is written, cuts it into `LayerCompression.chunkSize` chunks,
/// compresses them on up to `threads` threads and writes them to `fd` in order; hashes the tar
/// (the diff_id) and what is written (the blob digest) on the way.
final class LayerBlobWriter {
    /// One chunk on its way: compressed by a worker, written by the writer in order.
    private final class Job: @unchecked Sendable {
        let input: [UInt8]
        var output: [UInt8] = []
        var failure: Error?
        let done = DispatchSemaphore(value: 0)
        init(_ input: [UInt8]) { self.input = input }
    }

    private let fd: Int32
    private let display: String
    private let threads: Int
    private let compression: LayerCompression
    private var chunk: [UInt8] = []
    private var inFlight: [Job] = []
    private let compressors: Locked<[ChunkCompressor]>
    private let workers: DispatchSemaphore
    private let inline: ChunkCompressor
    private var tarHash = SHA256()
    private var blobHash = SHA256()
    private(set) var tarSize: UInt64 = 0
    private(set) var blobSize: Int64 = 0

    init(fd: Int32, display: String, compression: LayerCompression, threads: Int) throws {
        self.fd = fd
        self.display = display
        self.compression = compression
        self.threads = max(1, threads)
        inline = try ChunkCompressor(compression)
        compressors = Locked(try (1..<max(2, self.threads + 1)).map { _ in try ChunkCompressor(compression) })
        workers = DispatchSemaphore(value: self.threads)
        chunk.reserveCapacity(LayerCompression.chunkSize)
    }

    /// Takes the next bytes of tar.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        tarHash.update(bufferPointer: bytes)
        tarSize += UInt64(bytes.count)
        if compression == .none {
            try output(Array(bytes))
            return
        }
        var rest = bytes[...]
        while !rest.isEmpty {
            let take = min(rest.count, LayerCompression.chunkSize - chunk.count)
            chunk.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            rest = rest.dropFirst(take)
            if chunk.count == LayerCompression.chunkSize { try submit() }
        }
    }

    /// Writes what is left and returns the tar's digest and the blob's digest and size.
    func finish() throws -> (diffID: ImageDigest, digest: ImageDigest, size: Int64) {
        if !chunk.isEmpty { try submit() }
        while !inFlight.isEmpty { try drainOldest() }
        return (imageDigest(tarHash), imageDigest(blobHash), blobSize)
    }

    private func submit() throws {
        let input = chunk
        chunk.removeAll(keepingCapacity: true)
        if threads == 1 {
            try output(try inline.compress(input))
            return
        }
        while inFlight.count >= 2 * threads { try drainOldest() }
        let job = Job(input)
        inFlight.append(job)
        let compressors = self.compressors, workers = self.workers
        workers.wait()
        DispatchQueue.global().async {
            defer {
                workers.signal()
                job.done.signal()
            }
            guard let compressor = compressors.withLock({ $0.popLast() }) else {
                job.failure = ExportError("no compressor free")
                return
            }
            defer { compressors.withLock { $0.append(compressor) } }
            do {
                job.output = try compressor.compress(job.input)
            } catch {
                job.failure = error
            }
        }
    }

    private func drainOldest() throws {
        let job = inFlight.removeFirst()
        job.done.wait()
        if let failure = job.failure { throw failure }
        try output(job.output)
    }

    private func output(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            blobHash.update(bufferPointer: raw)
            try writeAll(fd, raw, display: display)
        }
        blobSize += Int64(bytes.count)
    }
}
