import Foundation
import LStoreHTTP
import LStoreStore
import LStoreTree

/// What pushing a block index did.
public struct BlockIndexPushResult: Sendable {
    /// The artifact manifest's digest.
    public var manifestDigest: ImageDigest
    /// Packs (and their indexes) in it, one per layer.
    public var packs: Int
    public var blobs: RegistryPushResult
    /// Whether the registry took the manifest's `subject` (its referrers API lists it); else the
    /// `sha256-HEX` tag names it.
    public var referrersAPI: Bool
}

extension RegistryPusher {
    /// Pushes `commit`'s block index beside its pushed image `image` (spec/registry.md §6): a pack
    /// blob and its index per layer, the artifact manifest by digest with the image as `subject`,
    /// and, where the registry does not take `subject`, the referrers tag `sha256-HEX` listing it.
    /// Packs already there are not sent again: the same commits give the same packs.
    public func pushBlockIndex(_ commit: Digest, from store: Store, image: ExportedImage) throws -> BlockIndexPushResult {
        let scratch = store.scratchDirectory("blocks")
        defer { try? removeTree(scratch) }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        var placed = Set<ObjectName>()
        var segments: [BlockIndex.Segment] = []
        var blobs: [PushBlob] = []
        for (number, tip) in try BlockIndex.tips(commit, store: store).enumerated() {
            let names = try BlockIndex.introduced(by: tip, store: store, placed: &placed)
            let packPath = "\(scratch)/\(number).pack"
            let index = try DetachedPack.write(names, from: store, to: packPath)
            let indexPath = "\(scratch)/\(number).idx"
            try Data(index).write(to: URL(fileURLWithPath: indexPath))
            let pack = try fileDescriptor(packPath, mediaType: BlockIndex.packType)
            let indexDescriptor = Descriptor(mediaType: BlockIndex.packIndexType, digest: ImageDigest(sha256(index)),
                                             size: Int64(index.count), annotations: [:], platform: nil)
            segments.append(BlockIndex.Segment(commit: tip, pack: pack, index: indexDescriptor))
            blobs.append(PushBlob(digest: pack.digest, size: pack.size, path: packPath))
            blobs.append(PushBlob(digest: indexDescriptor.digest, size: indexDescriptor.size, path: indexPath))
        }
        let emptyPath = "\(scratch)/empty"
        try Data(BlockIndex.emptyConfig).write(to: URL(fileURLWithPath: emptyPath))
        blobs.append(PushBlob(digest: ImageDigest(sha256(BlockIndex.emptyConfig)), size: Int64(BlockIndex.emptyConfig.count), path: emptyPath))

        let subject = Descriptor(mediaType: image.manifestMediaType, digest: image.manifestDigest,
                                 size: Int64(image.manifest.count), annotations: [:], platform: nil)
        let manifest = BlockIndex.manifest(subject: subject, blockSize: store.blockSize, segments: segments)
        let digest = ImageDigest(sha256(manifest))
        var byDigest = reference
        byDigest.tag = nil
        byDigest.digest = digest
        let pusher = RegistryPusher(reference: byDigest, options: options)
        let pushed = try pusher.push(blobs: blobs, manifest: manifest, mediaType: MediaType.ociManifest,
                                     mountFrom: try mountSources(commit, store: store))
        var result = BlockIndexPushResult(manifestDigest: digest, packs: segments.count, blobs: pushed, referrersAPI: pushed.subjectAccepted)
        if !pushed.subjectAccepted {
            try tagReferrer(Descriptor(mediaType: MediaType.ociManifest, digest: digest, size: Int64(manifest.count),
                                       annotations: [:], platform: nil), of: image.manifestDigest)
            result.referrersAPI = false
        }
        return result
    }

    /// Adds `artifact` to the referrers tag of `subject` (`sha256-HEX`, an image index), keeping
    /// what other tools listed there and dropping earlier lstore block indexes.
    func tagReferrer(_ artifact: Descriptor, of subject: ImageDigest) throws {
        var tagged = reference
        tagged.digest = nil
        tagged.tag = BlockIndex.fallbackTag(subject)
        let session = RegistrySession(reference: tagged, options: options, push: true)
        let connection = try RegistryConnection(session: session)
        var kept: [JSONValue] = []
        var headers = HTTPHeaders()
        headers.set("Accept", MediaType.ociIndex)
        let (exchange, response) = try connection.send("GET", try connection.url("manifests/\(tagged.manifestReference)"), headers: headers)
        if response.status == 200 {
            let bytes = try connection.readBody(exchange, response, limit: Int(maximumDocumentSize), what: "referrers tag")
            let object = (try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]) ?? [:]
            for entry in object["manifests"] as? [[String: Any]] ?? [] where entry["artifactType"] as? String != BlockIndex.artifactType {
                if let value = JSONValue(any: entry) { kept.append(value) }
            }
        } else {
            try? connection.drain(exchange)
            guard response.status == 404 else { throw connection.unexpected(exchange, response, "referrers tag \(tagged.manifestReference)") }
        }
        kept.append(.object(["mediaType": .string(artifact.mediaType), "digest": .string(artifact.digest.description),
                             "size": .integer(artifact.size), "artifactType": .string(BlockIndex.artifactType)]))
        let index = JSONValue.object(["schemaVersion": .integer(2), "mediaType": .string(MediaType.ociIndex), "manifests": .array(kept)]).encoded
        _ = try RegistryPusher(reference: tagged, options: options).putManifest(index, mediaType: MediaType.ociIndex, connection: connection)
    }

    private func fileDescriptor(_ path: String, mediaType: String) throws -> Descriptor {
        let file = try ReadOnlyFile(path)
        let (digest, size) = try file.sha256()
        return Descriptor(mediaType: mediaType, digest: digest, size: size, annotations: [:], platform: nil)
    }
}
