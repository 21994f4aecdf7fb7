import LStoreCompression
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Adds objects to a store for one write operation (a commit, a pull, a gc). The store lock is held
/// shared for its whole life (by its `Store`, which holds it from `open`), so gc, which takes it
/// exclusively, never removes what a running writer relies on; a gc's writer converts its store's
/// lock to exclusive and back. Thread-safe: many workers add objects at once.
///
/// Objects go into packs in `tmp/`; `finish()` publishes them (pack, then index). Until then no
/// reader sees them; if the writer is dropped unfinished, or the process dies, nothing remains
/// but temporary files that gc clears.
public final class StoreWriter: @unchecked Sendable {
    public let store: Store
    /// The lock this writer took itself, when its store holds none.
    private let ownLock: FileLock?
    /// Whether it made its store's lock exclusive, to make shared again at the end.
    private let converted: Bool
    private let state: Locked<State>

    private struct State {
        var pack: PackWriter?
        /// What this writer has added or is adding, by kind.
        var claimed: [ObjectKind: Set<Digest>] = [:]
        var published: [String] = []
        var storedBytes: UInt64 = 0
        var objects: Int = 0
    }

    /// Opens a writer on `store`, waiting while a gc or repack runs.
    public init(store: Store, exclusive: Bool = false) throws {
        self.store = store
        if let lock = store.lock {
            if exclusive {
                do {
                    try lock.relock(exclusive: true)
                } catch {
                    // flock dropped the shared lock before failing: take it back, or this store
                    // would go on reading with no lock at all.
                    try? lock.relock(exclusive: false)
                    throw error
                }
            }
            ownLock = nil
            converted = exclusive
        } else {
            ownLock = try FileLock(path: store.layout.storeLock, exclusive: exclusive)
            converted = false
        }
        state = Locked(State())
        // A gc that ran before we took the lock (or while it was converted) may have replaced packs.
        try store.refreshIndexes()
    }

    deinit {
        if converted { try? store.lock?.relock(exclusive: false) }
    }

    /// Bytes of stored (compressed) object data this writer has written.
    public var storedBytes: UInt64 { state.withLock { $0.storedBytes } }
    public var objectCount: Int { state.withLock { $0.objects } }

    /// True when the store has the object or this writer already took it on.
    public func has(_ id: Digest, kind: ObjectKind) -> Bool {
        if store.contains(id, kind: kind) { return true }
        return state.withLock { $0.claimed[kind]?.contains(id) ?? false }
    }

    /// Takes on writing the object: true when the caller must add it (nobody has it yet).
    public func claim(_ id: Digest, kind: ObjectKind) -> Bool {
        if store.contains(id, kind: kind) { return false }
        return state.withLock { $0.claimed[kind, default: []].insert(id).inserted }
    }

    /// Compresses `raw` with `compressor` (raw when that does not shrink it) and adds it.
    public func add(_ kind: ObjectKind, id: Digest, raw: UnsafeRawBufferPointer, compressor: Compressor,
                    scratch: inout [UInt8]) throws {
        if try compressor.compress(raw, into: &scratch) {
            try scratch.withUnsafeBytes { stored in
                try addStored(kind, id: id, codec: compressor.spec.codec, level: UInt8(compressor.spec.level),
                              rawLength: raw.count, stored: stored)
            }
        } else {
            try addStored(kind, id: id, codec: .none, level: UInt8(compressor.spec.level), triedCodec: compressor.spec.codec,
                          rawLength: raw.count, stored: raw)
        }
    }

    /// Adds an object already in its stored form. The caller has verified it. A raw object may say
    /// which codec, at `level`, did not make it smaller (`PackLocation.triedCodec`).
    public func addStored(_ kind: ObjectKind, id: Digest, codec: Codec, level: UInt8, triedCodec: Codec = .none,
                          rawLength: Int, stored: UnsafeRawBufferPointer) throws {
        try state.withLock { state in
            if state.pack == nil { state.pack = try PackWriter(layout: store.layout) }
            try state.pack!.append(kind: kind, id: id, codec: codec, level: level, triedCodec: triedCodec,
                                   rawLength: rawLength, stored: stored)
            state.claimed[kind, default: []].insert(id)
            state.storedBytes += UInt64(stored.count)
            state.objects += 1
            if state.pack!.size >= PackFormat.targetPackSize {
                try publish(&state)
            }
        }
    }

    private func publish(_ state: inout State) throws {
        guard let pack = state.pack else { return }
        state.pack = nil
        guard !pack.isEmpty else { return }
        let name = try pack.finish()
        try store.adopt(packNamed: name)
        state.published.append(name)
    }

    /// Publishes everything added so far: after this returns, the objects are durable and visible.
    @discardableResult
    public func finish() throws -> [String] {
        try state.withLock { state in
            try publish(&state)
            return state.published
        }
    }
}

extension Store {
    /// Maps packs that appeared and forgets packs that vanished since the store was opened.
    func refreshIndexes() throws {
        let present = Set(try listDirectory(layout.packsDirectory).map { String(decoding: $0, as: UTF8.self) })
        let gone = Set(indexes.map(\.name).filter { !present.contains($0 + ".idx") })
        forget(packs: gone)
        try reloadIndexes()
    }
}
