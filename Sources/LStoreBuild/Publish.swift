import Foundation
import LStoreOCI
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// `lstore build --push docker://REGISTRY/REPO`: each built ref as `REPO/NAME:latest` and
/// `REPO/NAME:COMMIT` (its first 12 hex digits), with its block index.
public struct Publication: Sendable {
    public var references: [String]
    public var manifest: ImageDigest
    public var uploaded: Int
    public var bytesUploaded: Int64
}

public func publish(_ outcome: BuildOutcome, to repository: String, store: Store, registry: RegistryOptions,
                    export: ExportOptions, blockIndex: Bool) throws -> Publication {
    var base = repository
    while base.hasSuffix("/") { base.removeLast() }
    let references = ["\(base)/\(outcome.name):latest", "\(base)/\(outcome.name):\(outcome.commit.hex.prefix(12))"]
    let first = try RegistryReference(parsing: references[0])
    let pusher = RegistryPusher(reference: first, options: registry)
    let result = try pusher.push(outcome.commit, from: store, export: export)
    if blockIndex { _ = try pusher.pushBlockIndex(outcome.commit, from: store, image: result.image) }
    // The second tag names the same manifest: its blobs are in the repository already.
    let second = RegistryPusher(reference: try RegistryReference(parsing: references[1]), options: registry)
    _ = try second.push(blobs: [], manifest: result.image.manifest, mediaType: result.image.manifestMediaType)
    return Publication(references: references, manifest: result.image.manifestDigest, uploaded: result.push.uploaded,
                       bytesUploaded: result.push.bytesUploaded)
}

/// Removes the scratch directories of builds whose process is gone (killed, or the machine
/// stopped): their mounts went with their namespaces; what they wrote is left here.
public func removeStaleBuildScratch(_ store: Store) {
    let directory = (store.scratchDirectory("build") as NSString).deletingLastPathComponent
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("build-") {
        let parts = name.split(separator: "-")
        guard parts.count >= 3, let pid = Int32(parts[1]) else { continue }
        if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH { try? removeTree(directory + "/" + name) }
    }
}
