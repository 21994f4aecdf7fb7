import CXXHash

/// XXH3 checksums: for speed where trust is not at stake (bit rot, pack trailers).
///
/// The seedless XXH3 of xxHash 0.8 (`xxhsum -H3` prints `hash64`, `xxhsum -H2` prints `hash128`).
public enum XXH3 {
    public static func hash64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    public static func hash128(_ bytes: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64) {
        let hash = XXH3_128bits(bytes.baseAddress, bytes.count)
        return (hash.high64, hash.low64)
    }

    /// Streaming XXH3-128 for files written in pieces.
    public final class Hasher128 {
        private let state: OpaquePointer  // XXH3_state_t*

        public init() {
            guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
            self.state = state
            reset()
        }

        deinit {
            XXH3_freeState(state)
        }

        public func update(_ bytes: UnsafeRawBufferPointer) {
            guard bytes.count > 0 else { return }
            _ = XXH3_128bits_update(state, bytes.baseAddress, bytes.count)
        }

        /// The hash of everything given so far; the hasher can go on taking more.
        public func finalize() -> (high: UInt64, low: UInt64) {
            let hash = XXH3_128bits_digest(state)
            return (hash.high64, hash.low64)
        }

        /// Starts over, as if just made.
        public func reset() {
            _ = XXH3_128bits_reset(state)
        }
    }
}
