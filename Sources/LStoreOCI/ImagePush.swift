import Foundation
import LStoreStore
import LStoreTree

/// What pushing a commit as an image did.
public struct ImagePushResult: Sendable {
    public var image: ExportedImage
    public var push: RegistryPushResult
}

extension RegistryPusher {
    /// Pushes `commit` as an image (spec/oci.md, "Exporting images"; spec/registry.md §5): its
    /// blobs are made in a scratch layout in the store's cache, sent, then the manifest. Blobs that
    /// the commits' `oci-source` names in other repositories of this registry are mounted from there.
    public func push(_ commit: Digest, from store: Store, export: ExportOptions,
                     progress: ((_ layer: Int, _ of: Int) -> Void)? = nil) throws -> ImagePushResult {
        let scratch = store.scratchDirectory("push")
        defer { try? removeTree(scratch) }
        let image = try ImageExporter(store: store, options: export).export(commit, into: scratch, progress: progress)
        let blobs = ([image.config] + image.layers).map { PushBlob(digest: $0.digest, size: $0.size, path: $0.path) }
        let result = try push(blobs: blobs, manifest: image.manifest, mediaType: image.manifestMediaType,
                              mountFrom: try mountSources(commit, store: store))
        recordPush(in: store)
        return ImagePushResult(image: image, push: result)
    }

    /// The repositories of this registry that may hold blobs of `commit`'s image: those its
    /// first-parent history was pulled from, and those this store pushed to lately (`cache/pushes`,
    /// most recent first), at most 8.
    func mountSources(_ commit: Digest, store: Store) throws -> [String] {
        var sources: [String] = []
        let log = (try? String(contentsOfFile: store.cacheFile("pushes"), encoding: .utf8)) ?? ""
        for line in log.split(separator: "\n").reversed() {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == reference.registry, fields[1] != reference.repository,
               !sources.contains(String(fields[1])) {
                sources.append(String(fields[1]))
            }
        }
        var next: Digest? = commit
        var seen: Set<Digest> = []
        while let id = next, seen.insert(id).inserted, seen.count <= 10_000 {
            let object = try store.commit(id)
            for header in object.extraHeaders where header.key == "oci-source" {
                if let origin = try? RegistryReference(parsing: header.value), origin.registry == reference.registry,
                   origin.repository != reference.repository, !sources.contains(origin.repository) {
                    sources.append(origin.repository)
                }
            }
            next = object.parents.first
        }
        return Array(sources.prefix(8))
    }

    /// Appends `REGISTRY REPOSITORY` to the store's push log (kept to its last 64 lines), so that
    /// later pushes to other repositories of the registry mount from this one.
    func recordPush(in store: Store) {
        let path = store.cacheFile("pushes")
        let line = "\(reference.registry) \(reference.repository)"
        var lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        lines.removeAll { $0 == line }
        lines.append(line)
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? writeFileAtomically(Array((lines.suffix(64).joined(separator: "\n") + "\n").utf8), to: path, durable: false)
    }
}
