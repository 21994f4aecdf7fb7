import LStoreCompression
import LStoreSquashFS
import LStoreStore
import LStoreTree

/// The store as the squashfs writer's block source. When the image's block size is the store's,
/// every block goes over as stored, so the writer copies it unchanged when the codec and level are
/// the image's too (direct materialisation); otherwise the data is cut again at the image's size.
public struct StoreBlockSource: BlockSource {
    public let store: Store

    public init(store: Store) {
        self.store = store
    }

    public func forEachBlock(of file: RegularFile, path: [UInt8], blockSize: Int,
                             _ body: (SourceBlock) throws -> Void) throws {
        guard let id = file.content else { throw ImageError.noData(path: "/" + path.printable) }
        let object = try store.file(id)
        if object.blockSize == blockSize {
            var scratch: [UInt8] = []
            for block in object.blocks {
                if block == .zero {
                    // The store does not know whether the block was a hole on disk.
                    try body(.zeros)
                    continue
                }
                let stored = try store.storedBlock(block, scratch: &scratch)
                let tried = stored.codec == .none && stored.triedCodec != .none
                    ? CompressionSpec(codec: stored.triedCodec, level: stored.level) : nil
                let spec = CompressionSpec(codec: stored.codec, level: stored.codec == .none ? 0 : stored.level)
                try body(.stored(StoredBlock(bytes: stored.bytes, spec: spec,
                                             rawLength: stored.rawLength, digest: block, notSmallerWith: tried)))
            }
            return
        }
        // Another block size: the data, cut again.
        var pending: [UInt8] = []
        pending.reserveCapacity(blockSize)
        var left = file.size
        func emit() throws {
            let full = pending.count == blockSize
            try body(full && pending.allSatisfy { $0 == 0 } ? .zeros : .raw(pending))
            left -= UInt64(pending.count)
            pending.removeAll(keepingCapacity: true)
        }
        try StoreFileReader(store: store).stream(file) { bytes in
            var rest = bytes[...]
            while !rest.isEmpty {
                let want = Int(min(UInt64(blockSize), left)) - pending.count
                let take = min(want, rest.count)
                pending.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                if pending.count == Int(min(UInt64(blockSize), left)) { try emit() }
            }
        }
    }
}

/// The store's cache of compressed fragment blocks, as the squashfs writer asks for it. A key is
/// the SHA-256 of the fragment's description (spec/store.md, "Caches"); flag 1 marks compressed bytes.
public struct StoreFragmentCache: FragmentCache {
    public let cache: BlobCache

    public init(cache: BlobCache) {
        self.cache = cache
    }

    /// The cache key of a fragment block: SHA-256 of `lstore fragment 1`, the codec, level and
    /// block size, then each piece's digest and length.
    public static func digest(of key: FragmentKey) -> Digest {
        var description = Array("lstore fragment 1\0\(key.spec.codec) \(key.spec.level) \(key.blockSize)\0".utf8)
        description.reserveCapacity(description.count + key.pieces.count * 40)
        for piece in key.pieces {
            piece.digest.withUnsafeBytes { description.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(piece.length).littleEndian) { description.append(contentsOf: $0) }
        }
        return sha256(description)
    }

    public func fragment(for key: FragmentKey) -> CachedFragment? {
        guard let (bytes, flags) = cache.get(Self.digest(of: key)) else { return nil }
        return CachedFragment(bytes: bytes, compressed: flags & 1 != 0)
    }

    public func save(_ fragment: CachedFragment, for key: FragmentKey) {
        cache.put(Self.digest(of: key), bytes: fragment.bytes, flags: fragment.compressed ? 1 : 0)
    }
}
