import LStoreTree

/// What `receiveObjects` stored.
public struct ReceivedObjects: Sendable {
    /// Objects stored, by kind.
    public var objects: [ObjectKind: Int] = [:]
    /// Their stored (compressed) bytes.
    public var storedBytes: UInt64 = 0
    /// The part of `storedBytes` that is blocks (file data).
    public var blockBytes: UInt64 = 0

    public init() {}
}

/// A source of objects that sent what it was not asked for, or not what it was.
public struct SourceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where a pull's objects come from: a peer (spec/protocol.md), or the pack blobs a registry holds
/// beside an image (spec/registry.md §6).
public protocol ObjectSource {
    /// The source in messages.
    var display: String { get }
    /// Hands `receive` the pack entry (header and stored bytes, store.md §7.1) of each of `names`,
    /// in any order; throws when one of them does not come. What it hands over is not trusted.
    func fetch(_ names: [ObjectName], receive: ([UInt8]) throws -> Void) throws
}

/// Stores every object `commit` reaches that the writer's store lacks, from `source`: each
/// verified before the store takes it (spec/protocol.md §5), an object not asked for refused;
/// packs published (durable) every `publishEvery` bytes, so that an interrupted pull, run again,
/// does not fetch them again. Counts what it stored in `received`. Moves no ref: the caller does,
/// and keeps `writer` until then.
public func receiveObjects(_ commit: Digest, with writer: StoreWriter, from source: some ObjectSource, publishEvery: UInt64 = 64 << 20,
                           received: inout ReceivedObjects, progress: ((UInt64) -> Void)? = nil) throws {
    let store = writer.store
    let complete = try Walk.ancestors(of: store.refs().map(\.commit), in: store)
    guard !complete.contains(commit) else { return }
    var verifier = EntryVerifier()
    var published: UInt64 = 0
    var counted = received
    var walk = Walk(store: store, complete: complete) { names in
        var wanted = Set(names)
        var raw: [ObjectName: [UInt8]] = [:]
        try source.fetch(names) { payload in
            let entry = try payload.withUnsafeBytes { try verifier.verify($0, what: source.display) }
            let name = ObjectName(kind: entry.kind, id: entry.id)
            guard wanted.remove(name) != nil else {
                throw SourceError("\(source.display) sent \(entry.kind) \(entry.id.short), which was not asked for")
            }
            if entry.kind != .block { raw[name] = verifier.raw }
            if writer.claim(entry.id, kind: entry.kind) {
                try payload.withUnsafeBytes { bytes in
                    // A raw object's tried codec is a claim this store cannot check without
                    // compressing again: it is not kept (spec/store.md §7.1).
                    try writer.addStored(entry.kind, id: entry.id, codec: entry.codec, level: entry.codec == .none ? 0 : entry.level,
                                         rawLength: entry.rawLength,
                                         stored: UnsafeRawBufferPointer(rebasing: bytes[PackEntry.headerSize...]))
                }
                counted.objects[entry.kind, default: 0] += 1
                counted.storedBytes += UInt64(entry.storedLength)
                if entry.kind == .block { counted.blockBytes += UInt64(entry.storedLength) }
                progress?(counted.storedBytes)
            }
            if counted.storedBytes - published >= publishEvery {
                try writer.finish()
                published = counted.storedBytes
            }
        }
        if let missing = wanted.first {
            throw SourceError("\(source.display) did not send \(missing.kind) \(missing.id.short), which was asked for")
        }
        return raw
    }
    defer { received = counted }
    do {
        try walk.run(from: commit)
        try writer.finish()
    } catch {
        // Verified objects are kept (no ref reaches them yet): a pull run again need not fetch
        // them; unless writing itself failed (a full disk), when the pack cannot be trusted.
        if !(error is FileError) { _ = try? writer.finish() }
        throw error
    }
}
