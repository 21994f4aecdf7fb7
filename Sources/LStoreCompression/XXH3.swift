import CXXHash

/// XXH3 checksums: for speed where trust is not at stake (bit rot, pack trailers).
public enum XXH3 {
    public static func hash64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    public static func hash128(_ bytes: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64) {
        let digest = XXH3_128bits(bytes.baseAddress, bytes.count)
        return (digest.high64, digest.low64)
    }

    /// Streaming XXH3-128 for files written in pieces.
    public final class Hasher128 {
        private let state: OpaquePointer

        public init() {
            state = XXH3_createState()
            XXH3_128bits_reset(state)
        }

        deinit { XXH3_freeState(state) }

        public func update(_ bytes: UnsafeRawBufferPointer) {
            XXH3_128bits_update(state, bytes.baseAddress, bytes.count)
        }

        public func finalize() -> (high: UInt64, low: UInt64) {
            let digest = XXH3_128bits_digest(state)
            return (digest.high64, digest.low64)
        }
    }
}
