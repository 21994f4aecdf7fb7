import Foundation
import LStoreStore
import LStoreTree

/// What a registry pull did.
public struct RegistryPullResult: Sendable {
    public var imageCommit: Digest
    /// The layer commits, bottom first.
    public var layerCommits: [Digest]
    /// Layers whose commits the store had: their blobs were not fetched.
    public var reusedLayers: Int
    /// Layer blobs fetched.
    public var fetchedLayers: Int
    /// Bytes of layer blobs that came over the network.
    public var bytesFetched: UInt64
    /// The image was here already: the registry was asked for its digest only (a `HEAD`).
    public var upToDate: Bool
    /// The objects came by blocks from the image's block index (spec/registry.md §6), not by layers.
    public var byBlocks = false
    /// Why a pull that could have gone by blocks went by layers, when it did.
    public var layersBecause: String?
    /// The compressed size of the image's layers.
    public var imageBytes: UInt64 = 0
    /// By blocks: the objects fetched, and the `Range` requests they took.
    public var objectsFetched = 0
    public var rangeRequests = 0
}

/// Pulls an image from a registry into a store (spec/oci.md, "Registries"): one manifest GET per
/// image (two through an index), a `HEAD` first for a tag, so that an image already here costs no
/// GET at all; the config; then only the layer blobs whose commits the store does not have,
/// several at once, applied bottom first as each arrives. The commits are those `lstore import`
/// makes of the same image; moving a ref is the caller's last step.
public struct RegistryPuller {
    public let reference: RegistryReference
    public let options: RegistryOptions
    public let importOptions: ImportOptions
    /// Fetch whole layers even when the image has a block index (`pull --layers`).
    public var byLayers = false

    public init(reference: RegistryReference, options: RegistryOptions, importOptions: ImportOptions) {
        self.reference = reference
        self.options = options
        self.importOptions = importOptions
    }

    public func run(ingest: Ingest) throws -> RegistryPullResult {
        let store = ingest.writer.store
        let known = try KnownImageCommits(store: store)
        let session = RegistrySession(reference: reference, options: options, push: false)
        let connection = try RegistryConnection(session: session)
        let source = reference.description
        let display = "\(reference.registry)/\(reference.repository)"

        // Already here? A tag costs a HEAD (not counted by Docker Hub's limit), a digest nothing.
        var named = reference.digest
        if named == nil { named = try connection.manifestDigest(reference.manifestReference) }
        if let digest = named, let commit = try sameImage(recording: digest, known: known, source: source) {
            let id = try ingest.storeCommit(commit)
            return RegistryPullResult(imageCommit: id, layerCommits: [], reusedLayers: 0, fetchedLayers: 0, bytesFetched: 0,
                                      upToDate: true)
        }

        var document = try connection.manifest(reference.manifestReference, expecting: reference.digest)
        var indexDigest: ImageDigest?
        var depth = 0
        while MediaType.indexes.contains(document.mediaType) {
            depth += 1
            guard depth <= 8 else { throw ImportError("\(display): indexes nested more than 8 deep") }
            let indexDisplay = "\(display): index \(document.digest.short)"
            let index = try Documents.index(document.bytes, display: indexDisplay)
            if indexDigest == nil { indexDigest = document.digest }
            let candidates = index.manifests.filter { MediaType.manifests.contains($0.mediaType) || MediaType.indexes.contains($0.mediaType) }
            guard !candidates.isEmpty else { throw ImportError("\(indexDisplay): no image manifest") }
            let chosen = try ImageResolver.choose(candidates, platform: importOptions.platform, display: indexDisplay)
            document = try connection.manifest(chosen.digest.description, expecting: chosen.digest)
        }
        guard MediaType.manifests.contains(document.mediaType) else {
            throw ImportError("\(display): manifest \(document.digest.short) has media type '\(document.mediaType)', not an image manifest or index")
        }
        let manifestDisplay = "\(display): manifest \(document.digest.short)"
        let manifest = try Documents.manifest(document.bytes, display: manifestDisplay)
        guard MediaType.configs.contains(manifest.config.mediaType) else {
            throw ImportError("\(manifestDisplay): config media type '\(manifest.config.mediaType)' is not an image config")
        }
        let configDisplay = "\(display): config \(manifest.config.digest.short)"
        let config = try Documents.config(try connection.smallBlob(manifest.config, what: "config"), display: configDisplay)
        guard config.diffIDs.count == manifest.layers.count else {
            throw ImportError("\(configDisplay): \(config.diffIDs.count) diff_ids for the manifest's \(manifest.layers.count) layers")
        }
        if indexDigest != nil, !config.platform.satisfies(importOptions.platform) {
            throw ImportError("\(configDisplay): the image is for \(config.platform), not \(importOptions.platform)")
        }
        for layer in manifest.layers where layer.size < 0 || UInt64(layer.size) > importOptions.limits.layerBytes {
            throw ImportError("\(manifestDisplay): layer \(layer.digest.short) claims \(layer.size) bytes, more than a layer may have")
        }

        let imageBytes = manifest.layers.reduce(UInt64(0)) { $0 + UInt64($1.size) }
        var layersBecause: String?
        if byLayers {
            layersBecause = nil
        } else if importOptions.rootfs != nil {
            layersBecause = "--rootfs takes layers"
        } else {
            let image = ResolvedImage(manifestDigest: document.digest, indexDigest: indexDigest, configDigest: manifest.config.digest,
                                      config: config, layers: [])
            do {
                let blocks = try blockIndex(of: document.digest, connection: connection, store: store, display: display)
                return try pullBlocks(blocks, image: image, imageBytes: imageBytes, layerSizes: manifest.layers.map(\.size),
                                      connection: connection, ingest: ingest, display: display)
            } catch let missing as NoBlockIndex {
                layersBecause = missing.reason
            }
        }

        let importer = Importer(options: importOptions)
        let reused = importer.reusableLayers(config, known: known)
        let needed = Array(manifest.layers.dropFirst(reused.count))
        let downloads = BlobDownloads(session: session, directory: store.downloadsDirectory, blobs: needed)
        var image = ResolvedImage(manifestDigest: document.digest, indexDigest: indexDigest, configDigest: manifest.config.digest,
                                  config: config, layers: [])
        // The layers' files, opened as the import reaches each (later ones may still be arriving).
        image.layers = zip(manifest.layers, config.diffIDs).map { layer, diffID in
            LayerSource(open: {
                let path = try downloads.wait(layer.digest)
                return BlobLocation(file: try ReadOnlyFile(path), offset: 0, size: layer.size)
            }, digest: layer.digest, diffID: diffID)
        }
        try downloads.start()
        defer { downloads.stop() }
        let result: ImportResult
        do {
            result = try importer.importImage(image, source: source, display: display, known: known, ingest: ingest)
        } catch {
            downloads.stop()
            throw error
        }
        downloads.stop()
        downloads.removeFiles()
        var pulled = RegistryPullResult(imageCommit: result.imageCommit, layerCommits: result.layerCommits, reusedLayers: reused.count,
                                        fetchedLayers: Set(needed.map(\.digest)).count, bytesFetched: downloads.bytesFetched, upToDate: false)
        pulled.layersBecause = layersBecause
        pulled.imageBytes = imageBytes
        return pulled
    }

    /// The image commit a pull of `source` would make, when the store has one recording `digest`
    /// (as its manifest's or index's) for the same platform and `--rootfs`, made by a pull: its
    /// layers and tree are those, and only the source may differ.
    func sameImage(recording digest: ImageDigest, known: KnownImageCommits, source: String) throws -> Commit? {
        for (_, commit) in known.images(recording: digest) {
            guard commit.author == Importer.author, commit.source.hasPrefix("docker://") else { continue }
            let headers = commit.extraHeaders
            func value(_ key: String) -> String? { headers.first { $0.key == key }?.value }
            guard value("oci-rootfs") == importOptions.rootfs,
                  let platform = value("oci-platform").flatMap(Platform.init(parsing:)), platform.satisfies(importOptions.platform) else {
                continue
            }
            var same = commit
            same.source = source
            same.extraHeaders = headers.map { $0.key == "oci-source" ? CommitHeader(key: "oci-source", value: source) : $0 }
            same.message = "import \(source)\n"
            return same
        }
        return nil
    }
}
