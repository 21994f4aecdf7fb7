import LStoreStore
import LStoreHTTP
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What a pull or a push did.
public struct TransferReport: Sendable {
    /// The ref that moved (local for a pull, the peer's for a push), its old and new commit.
    public var ref: String
    public var old: Digest?
    public var new: Digest
    /// Objects that crossed, by kind.
    public var objects: [ObjectKind: Int] = [:]
    /// Stored (compressed) bytes of the objects that crossed.
    public var storedBytes: UInt64 = 0
    /// The part of `storedBytes` that is blocks (file data).
    public var blockBytes: UInt64 = 0
    /// Every byte sent and received, protocol and carrier included.
    public var wireBytes: UInt64 = 0
    public var seconds: Double = 0

    public var upToDate: Bool { old == new }
    public var objectCount: Int { objects.values.reduce(0, +) }
}

/// Fetches `remoteRef` from `peer` with every object it reaches that `store` lacks, then points
/// `localRef` at it. Every object is verified before the store takes it; packs are published
/// (durable) every `publishEvery` bytes, so an interrupted pull, run again, does not fetch them
/// again; the ref moves last, by compare-and-swap, and only forward unless `force`.
public func pull(into store: Store, from peer: Peer, remoteRef: String, localRef: String, force: Bool,
                 publishEvery: UInt64 = 64 << 20, progress: ((UInt64) -> Void)? = nil) throws -> TransferReport {
    try validateRefName(remoteRef)
    try validateRefName(localRef)
    let started = monotonicSeconds()
    let info = try peer.info()
    guard let commit = info.refs.first(where: { $0.name == remoteRef })?.commit else {
        throw SyncError.refused("\(peer.url) has no ref '\(remoteRef)'")
    }
    guard info.blockSize == store.blockSize else {
        throw SyncError.refused("\(peer.url) cuts files into \(info.blockSize / 1024)K blocks, this store \(store.blockSize / 1024)K: pull into a store made with `lstore init --block-size \(info.blockSize / 1024)K`")
    }
    let old = try store.ref(localRef)
    var report = TransferReport(ref: localRef, old: old, new: commit)
    func done() -> TransferReport {
        report.wireBytes = peer.bytesOnWire
        report.seconds = monotonicSeconds() - started
        return report
    }
    if old == commit { return done() }

    // The writer lives until the ref has moved: what it stored is not garbage meanwhile.
    let writer = try StoreWriter(store: store)
    var received = ReceivedObjects()
    do {
        try receiveObjects(commit, with: writer, from: peer, publishEvery: publishEvery, received: &received, progress: progress)
    } catch let error as SourceError {
        throw SyncError.protocolViolation(error.description)
    }
    report.objects = received.objects
    report.storedBytes = received.storedBytes
    report.blockBytes = received.blockBytes
    if let old, !force, !(try Walk.ancestors(of: [commit], in: store).contains(old)) {
        throw SyncError.refused("'\(localRef)' is at \(old.short), which \(remoteRef) (\(commit.short)) does not descend from; pull --force replaces it")
    }
    try store.updateRef(localRef, to: commit, expecting: old.map { .value($0) } ?? .absent, message: "pull: \(peer.url) \(remoteRef)")
    withExtendedLifetime(writer) {}
    return done()
}

extension Peer: ObjectSource {
    public var display: String { "\(url)" }
}

/// Sends the commit `revision` names, with every object it reaches that `peer` lacks, then moves
/// the peer's `remoteRef` to it by compare-and-swap with the value the peer listed (any value
/// with `force`). Without `force`, the pushed commit must descend from that value. Objects go in batches the peer makes durable one by one, so an interrupted push,
/// run again, does not send them again.
public func push(from store: Store, to peer: Peer, revision: String, remoteRef: String, force: Bool,
                 batchSize: Int = SyncProtocol.pushBatchBytes, progress: ((UInt64) -> Void)? = nil) throws -> TransferReport {
    try validateRefName(remoteRef)
    let started = monotonicSeconds()
    let commit = try store.resolve(revision)
    let info = try peer.info()
    if info.readOnly { throw SyncError.peer(.readOnly, "\(peer.url) is read-only") }
    guard info.blockSize == store.blockSize else {
        throw SyncError.refused("\(peer.url) cuts files into \(info.blockSize / 1024)K blocks, this store \(store.blockSize / 1024)K: a push would mix block sizes")
    }
    let old = info.refs.first { $0.name == remoteRef }?.commit
    var report = TransferReport(ref: remoteRef, old: old, new: commit)
    func done() -> TransferReport {
        report.wireBytes = peer.bytesOnWire
        report.seconds = monotonicSeconds() - started
        return report
    }
    if old == commit { return done() }
    if let old, !force, !(try Walk.ancestors(of: [commit], in: store).contains(old)) {
        throw SyncError.refused("\(peer.url) has '\(remoteRef)' at \(old.short), which \(revision) does not descend from (pull it first, or push --force)")
    }

    // What the peer holds in full: what its refs reach, as far as this store knows those commits.
    let here = try Walk.ancestors(of: store.refs().map(\.commit), in: store)
    let peerComplete = try Walk.ancestors(of: info.refs.map(\.commit).filter { here.contains($0) }, in: store)
    var walk = Walk(store: store, complete: peerComplete) { names in
        throw StoreError.missingObject(names[0].kind, names[0].id)
    }
    walk.recordVisited = true
    try walk.run(from: commit)

    var missing: [ObjectName] = []
    let candidates = walk.visited
    for start in stride(from: 0, to: candidates.count, by: SyncProtocol.maxIdsPerRequest) {
        let part = Array(candidates[start..<min(start + SyncProtocol.maxIdsPerRequest, candidates.count)])
        for (name, has) in zip(part, try peer.have(part)) where !has { missing.append(name) }
    }
    // An empty push first: a peer that refuses pushes says so now, not by closing the connection
    // in the middle of a large request.
    if !missing.isEmpty { _ = try peer.push([], from: store) }
    // Blocks first, metadata last: a batch is useful to the peer on its own.
    missing.reverse()
    let batchLimit = batchSize
    var batch: [ObjectName] = []
    var batchBytes = 0
    func send() throws {
        guard !batch.isEmpty else { return }
        _ = try peer.push(batch, from: store)
        for name in batch {
            report.objects[name.kind, default: 0] += 1
            if name.kind == .block { report.blockBytes += UInt64(store.packEntryLength(name.id, kind: .block)! - PackEntry.headerSize) }
        }
        report.storedBytes += UInt64(batchBytes)
        progress?(report.storedBytes)
        batch = []
        batchBytes = 0
    }
    for name in missing {
        guard let length = store.packEntryLength(name.id, kind: name.kind) else { throw StoreError.missingObject(name.kind, name.id) }
        if !batch.isEmpty && batchBytes + length > batchLimit { try send() }
        batch.append(name)
        batchBytes += length - PackEntry.headerSize
    }
    try send()
    try peer.updateRef(RefUpdate(name: remoteRef, new: commit, expected: force ? .any : old.map { .value($0) } ?? .absent))
    return done()
}
