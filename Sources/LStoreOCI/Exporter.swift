import Foundation
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Which manifest and media types an export writes.
public enum ExportFormat: String, Sendable, CaseIterable {
    /// An OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
    case oci
    /// A Docker schema 2 manifest (`application/vnd.docker.distribution.manifest.v2+json`).
    case docker
}

/// What an export asks for besides the commit.
public struct ExportOptions: Sendable {
    public var format: ExportFormat = .oci
    public var compression: LayerCompression = .gzip
    /// Threads that compress a layer's chunks; the bytes are the same at any count.
    public var threads: Int = 1

    public init(format: ExportFormat = .oci, compression: LayerCompression = .gzip, threads: Int = 1) {
        self.format = format
        self.compression = compression
        self.threads = threads
    }
}

/// One blob an export wrote: what it is, and the file that holds it.
public struct ExportedBlob: Sendable {
    public var digest: ImageDigest
    public var size: Int64
    public var mediaType: String
    /// The blob's file in the layout (`LAYOUT/blobs/sha256/HEX`).
    public var path: String
}

/// An exported image: its manifest (bytes, digest, media type), config and layers, bottom first.
public struct ExportedImage: Sendable {
    public var manifest: [UInt8]
    public var manifestDigest: ImageDigest
    public var manifestMediaType: String
    public var config: ExportedBlob
    public var layers: [ExportedBlob]
    /// The digest of each layer's uncompressed tar, as the config's `rootfs.diff_ids` has them.
    public var diffIDs: [ImageDigest]
    /// Paths of sockets, which a tar cannot hold: left out of the layers.
    public var skippedSockets: [String]

    /// The manifest's descriptor (for an index), without annotations.
    var descriptor: JSONValue {
        .object(["mediaType": .string(manifestMediaType), "digest": .string(manifestDigest.description),
                 "size": .integer(Int64(manifest.count))])
    }
}

/// An image that cannot be exported: one line naming the input and what is wrong.
public struct ExportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Exports a commit as an OCI or Docker image (spec/oci.md §7): one layer for each commit of its
/// first-parent chain whose tree differs from its parent's (the bottom commit's whole tree, then
/// each change in OCI form), a config recording the commit's image headers, and a manifest. Every
/// byte depends only on the commits, the options' format and compression, and the zlib and zstd
/// versions: not on the machine or the thread count.
public struct ImageExporter {
    public let store: Store
    public let options: ExportOptions

    public init(store: Store, options: ExportOptions) {
        self.store = store
        self.options = options
    }

    /// One commit of the chain that makes a layer.
    struct LayerCommit {
        var id: Digest
        var commit: Commit
        /// The tree below it (its first parent's), nil for the bottom commit.
        var parentTree: Digest?
    }

    /// The commits of `commit`'s first-parent chain that make layers, bottom first: the root
    /// commit, and each one whose tree differs from its first parent's.
    func layerCommits(_ commit: Digest) throws -> [LayerCommit] {
        var chain: [(Digest, Commit)] = []
        var seen: Set<Digest> = []
        var next: Digest? = commit
        while let id = next {
            guard seen.insert(id).inserted else { throw ExportError("commit \(id.short): its parents form a cycle") }
            let object = try store.commit(id)
            chain.append((id, object))
            next = object.parents.first
        }
        chain.reverse()
        var layers: [LayerCommit] = []
        for (index, (id, object)) in chain.enumerated() {
            if index == 0 {
                layers.append(LayerCommit(id: id, commit: object, parentTree: nil))
            } else if object.tree != chain[index - 1].1.tree {
                layers.append(LayerCommit(id: id, commit: object, parentTree: chain[index - 1].1.tree))
            }
        }
        return layers
    }

    /// Writes every blob of `commit`'s image into `layout` (an OCI image layout directory, made
    /// when missing: `oci-layout`, `blobs/sha256/HEX`) and returns the image. `index.json` is the
    /// caller's (`OCILayout.tag`). Each blob is written under a temporary name, fsynced and renamed.
    public func export(_ commit: Digest, into layout: String, progress: ((_ layer: Int, _ of: Int) -> Void)? = nil) throws -> ExportedImage {
        let top = try store.commit(commit)
        let blobs = layout + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        try writeFileAtomically(Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8), to: layout + "/oci-layout")

        let chain = try layerCommits(commit)
        var layers: [ExportedBlob] = []
        var diffIDs: [ImageDigest] = []
        var sockets: [String] = []
        var parentRoot: Node?
        for (index, layer) in chain.enumerated() {
            progress?(index, chain.count)
            let child = try store.loadTree(layer.commit.tree)
            let base = try parentRoot ?? layer.parentTree.map { try store.loadTree($0) }
            let root = base.map { OverlayDelta(base: $0, child: child).root } ?? child
            let display = "commit \(layer.id.short)"
            let (blob, diffID, skipped) = try writeLayer(root, child: base == nil ? nil : child, into: blobs, display: display)
            layers.append(blob)
            diffIDs.append(diffID)
            sockets += skipped.map { "/" + $0.printable }
            parentRoot = child
        }
        progress?(chain.count, chain.count)

        let config = configDocument(top, chain: chain, diffIDs: diffIDs).encoded
        let configBlob = try writeDocument(config, mediaType: options.format == .oci ? MediaType.ociConfig : MediaType.dockerConfig,
                                           into: blobs)
        let manifestType = options.format == .oci ? MediaType.ociManifest : MediaType.dockerManifest
        let manifest = JSONValue.object([
            "schemaVersion": .integer(2),
            "mediaType": .string(manifestType),
            "config": descriptor(configBlob),
            "layers": .array(layers.map(descriptor)),
        ]).encoded
        let manifestBlob = try writeDocument(manifest, mediaType: manifestType, into: blobs)
        try syncDirectory(blobs)
        return ExportedImage(manifest: manifest, manifestDigest: manifestBlob.digest, manifestMediaType: manifestType,
                             config: configBlob, layers: layers, diffIDs: diffIDs, skippedSockets: sockets)
    }

    /// The media type of a layer in this export's format and compression.
    var layerMediaType: String {
        switch (options.format, options.compression) {
        case (.oci, .gzip): "application/vnd.oci.image.layer.v1.tar+gzip"
        case (.oci, .zstd): "application/vnd.oci.image.layer.v1.tar+zstd"
        case (.oci, .none): "application/vnd.oci.image.layer.v1.tar"
        case (.docker, .gzip): "application/vnd.docker.image.rootfs.diff.tar.gzip"
        case (.docker, .zstd): "application/vnd.docker.image.rootfs.diff.tar.zstd"
        case (.docker, .none): "application/vnd.docker.image.rootfs.diff.tar"
        }
    }

    private func descriptor(_ blob: ExportedBlob) -> JSONValue {
        .object(["mediaType": .string(blob.mediaType), "digest": .string(blob.digest.description), "size": .integer(blob.size)])
    }

    /// Streams one layer's tar, compressed, into a temporary file in `blobs`, then renames it to
    /// its digest.
    private func writeLayer(_ root: Node, child: Node?, into blobs: String, display: String) throws
        -> (ExportedBlob, ImageDigest, [[UInt8]]) {
        let temporary = "\(blobs)/.tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ExportError("\(temporary): cannot create: \(String(cString: strerror(errno)))") }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            let blob = try LayerBlobWriter(fd: fd, display: temporary, compression: options.compression, threads: options.threads)
            let tar = TarStreamWriter { try blob.write($0) }
            let report = try LayerWriter(reader: StoreFileReader(store: store)).write(root, child: child, to: tar, display: display)
            let (diffID, digest, size) = try blob.finish()
            guard fsync(fd) == 0 else { throw ExportError("\(temporary): fsync failed: \(String(cString: strerror(errno)))") }
            closed = true
            guard close(fd) == 0 else { throw ExportError("\(temporary): close failed: \(String(cString: strerror(errno)))") }
            let path = "\(blobs)/\(digest.digest.hex)"
            guard rename(temporary, path) == 0 else { throw ExportError("\(path): cannot rename: \(String(cString: strerror(errno)))") }
            return (ExportedBlob(digest: digest, size: size, mediaType: layerMediaType, path: path), diffID, report.sockets)
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Writes a JSON document as a blob named by its digest.
    private func writeDocument(_ bytes: [UInt8], mediaType: String, into blobs: String) throws -> ExportedBlob {
        let digest = ImageDigest(sha256(bytes))
        let path = "\(blobs)/\(digest.digest.hex)"
        try writeFileAtomically(bytes, to: path, durable: true)
        return ExportedBlob(digest: digest, size: Int64(bytes.count), mediaType: mediaType, path: path)
    }

    /// The image config (image-spec `config.md`) of `top`, whose layers are `chain`.
    func configDocument(_ top: Commit, chain: [LayerCommit], diffIDs: [ImageDigest]) -> JSONValue {
        func header(_ key: String) -> String? { top.extraHeaders.last { $0.key == key }?.value }
        func parsed(_ key: String) -> Any? {
            guard let text = header(key) else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        }
        var platform = header("oci-platform").flatMap(Platform.init(parsing:)) ?? Platform.current
        if let architecture = header("oci-architecture"), !architecture.isEmpty, architecture != platform.architecture {
            platform = Platform(os: platform.os, architecture: architecture)
        }
        var inner: [String: JSONValue] = [:]
        for (key, name) in [("oci-env", "Env"), ("oci-entrypoint", "Entrypoint"), ("oci-cmd", "Cmd")] {
            if let values = parsed(key) as? [String] { inner[name] = .strings(values) }
        }
        for (key, name) in [("oci-workdir", "WorkingDir"), ("oci-user", "User")] {
            if let values = parsed(key) as? [String], let value = values.first { inner[name] = .string(value) }
        }
        if let labels = parsed("oci-labels") as? [String: Any] {
            let strings = labels.compactMapValues { $0 as? String }
            if !strings.isEmpty { inner["Labels"] = .object(strings.mapValues { .string($0) }) }
        }
        var config: [String: JSONValue] = [
            "architecture": .string(platform.architecture),
            "os": .string(platform.os),
            "created": .string(formatRFC3339(top.time)),
            "rootfs": .object(["type": .string("layers"), "diff_ids": .array(diffIDs.map { .string($0.description) })]),
            "history": .array(chain.map { layer in
                var entry: [String: JSONValue] = ["created": .string(formatRFC3339(layer.commit.time))]
                let line = layer.commit.message.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                if !line.isEmpty { entry["created_by"] = .string(String(line)) }
                return .object(entry)
            }),
        ]
        if let variant = platform.variant { config["variant"] = .string(variant) }
        if !inner.isEmpty { config["config"] = .object(inner) }
        return .object(config)
    }
}

/// `seconds` since the epoch as RFC 3339 UTC, `2023-11-14T22:13:20Z`.
func formatRFC3339(_ seconds: Int64) -> String {
    let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
    let second = seconds - days * 86400
    // The civil date of a day count from 1970-01-01, proleptic Gregorian.
    let z = days + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let dayOfEra = z - era * 146097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let monthIndex = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
    let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
    var yearText = String(abs(year))
    yearText = String(repeating: "0", count: max(0, 4 - yearText.count)) + yearText
    return "\(year < 0 ? "-" : "")\(yearText)-\(two(month))-\(two(day))T\(two(second / 3600)):\(two(second % 3600 / 60)):\(two(second % 60))Z"
}
