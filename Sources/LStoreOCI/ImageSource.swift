import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where an image is, as `lstore import` names it:
///
/// - `docker-archive:PATH[:TAG]`: what `docker save` writes (the legacy layout with
///   `manifest.json`, Docker 25+'s OCI layout with it, containerd's nested index without it);
/// - `oci:DIR[:TAG|@DIGEST]`: an OCI image layout directory;
/// - `oci-archive:PATH[:TAG|@DIGEST]`: such a layout as a tar archive.
///
/// PATH may hold `:`: the longest prefix that exists is the path, the rest the tag.
public struct ImageReference: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case dockerArchive = "docker-archive"
        case oci
        case ociArchive = "oci-archive"
    }

    public var kind: Kind
    public var path: String
    /// A tag (`docker-archive`: a RepoTag such as `name:tag`; OCI: `org.opencontainers.image.ref.name`).
    public var tag: String?
    /// A manifest digest (`oci:`/`oci-archive:` `@sha256:...`).
    public var digest: ImageDigest?

    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":"), let kind = Kind(rawValue: String(text[..<colon])) else {
            throw ImportError("'\(text)': not an image reference (docker-archive:PATH, oci:DIR or oci-archive:PATH)")
        }
        self.kind = kind
        var rest = String(text[text.index(after: colon)...])
        guard !rest.isEmpty else { throw ImportError("'\(text)': no path") }
        if kind != .dockerArchive, let at = rest.range(of: "@sha256:", options: .backwards) {
            let digestText = String(rest[rest.index(after: at.lowerBound)...])
            guard let digest = ImageDigest(parsing: digestText) else { throw ImportError("'\(text)': '\(digestText)' is not a sha256 digest") }
            self.digest = digest
            rest = String(rest[..<at.lowerBound])
        }
        var path = rest
        var tag: String?
        // The whole rest when it exists, else the longest existing prefix before a ':'.
        if access(rest, F_OK) != 0 {
            var candidate = rest[...]
            while let split = candidate.lastIndex(of: ":") {
                candidate = rest[..<split]
                if access(String(candidate), F_OK) == 0 {
                    path = String(candidate)
                    tag = String(rest[rest.index(after: split)...])
                    break
                }
            }
        }
        if tag?.isEmpty == true { tag = nil }
        if tag != nil && digest != nil { throw ImportError("'\(text)': both a tag and a digest") }
        self.path = path
        self.tag = tag
    }

    public var description: String {
        "\(kind.rawValue):\(path)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }
}

/// One layer of a resolved image: where its blob is, what it must hash to.
struct LayerSource {
    /// Where the blob is. A registry's layer is downloaded while lower layers are applied: this
    /// waits until its file is complete (and throws the download's error).
    var open: () throws -> BlobLocation
    /// The blob's digest (nil for a legacy `docker save` layer, which only has its diff_id).
    var digest: ImageDigest?
    var diffID: ImageDigest
}

/// An image found in its source: its manifest's digest, config, and layers, bottom first.
struct ResolvedImage {
    var manifestDigest: ImageDigest?
    /// The image index (or manifest list) the manifest was chosen from, when a registry's tag named one.
    var indexDigest: ImageDigest? = nil
    var configDigest: ImageDigest
    var config: ImageConfig
    var layers: [LayerSource]
}

/// Finds the image a reference names, reading and checking its documents.
struct ImageResolver {
    var reference: ImageReference
    var platform: Platform

    func resolve() throws -> ResolvedImage {
        let files: ImageFiles
        switch reference.kind {
        case .oci:
            var st = stat()
            guard stat(reference.path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                throw ImportError("\(reference.path): not a directory")
            }
            files = .directory(reference.path)
        case .ociArchive, .dockerArchive:
            files = .archive(try ArchiveMembers(reference.path), path: reference.path)
        }
        if reference.kind == .dockerArchive, let manifest = try files.location(of: "manifest.json") {
            return try dockerSave(files, manifest: manifest)
        }
        return try layout(files)
    }

    /// `docker save`'s `manifest.json`: a list of images, each with its config, tags and layer paths.
    private func dockerSave(_ files: ImageFiles, manifest location: BlobLocation) throws -> ResolvedImage {
        let display = "\(files.path): manifest.json"
        let bytes = try readDocument(location, expecting: nil, display: display)
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes)), let list = value as? [[String: Any]] else {
            throw ImportError("\(display): not a list of images")
        }
        var chosen: [String: Any]
        if let tag = reference.tag {
            let matches = list.filter { (($0["RepoTags"] as? [String]) ?? []).contains { $0 == tag || $0 == tag + ":latest" || $0.hasSuffix("/" + tag) } }
            guard let first = matches.first, matches.count == 1 else {
                throw ImportError("\(files.path): \(matches.isEmpty ? "no" : "more than one") image tagged '\(tag)'")
            }
            chosen = first
        } else {
            guard list.count == 1 else {
                throw ImportError("\(files.path): \(list.count) images; name one by tag (docker-archive:PATH:TAG)")
            }
            chosen = list[0]
        }
        guard let configPath = chosen["Config"] as? String, let layerPaths = chosen["Layers"] as? [String] else {
            throw ImportError("\(display): an image without Config or Layers")
        }
        // The config's name is its digest: `HEX.json` (legacy) or `blobs/sha256/HEX` (Docker 25+).
        let configName = configPath.split(separator: "/").last.map(String.init) ?? configPath
        let configHex = configName.hasSuffix(".json") ? String(configName.dropLast(5)) : configName
        guard let configDigest = ImageDigest(parsing: "sha256:" + configHex) else {
            throw ImportError("\(display): config '\(configPath)' is not named by its digest")
        }
        guard let configLocation = try files.location(of: configPath) else {
            throw ImportError("\(files.path): config '\(configPath)' is not in the archive")
        }
        let config = try Documents.config(try readDocument(configLocation, expecting: configDigest, display: "\(files.path): config \(configDigest.short)"),
                                          display: "\(files.path): config \(configDigest.short)")
        guard config.diffIDs.count == layerPaths.count else {
            throw ImportError("\(files.path): config \(configDigest.short) has \(config.diffIDs.count) diff_ids for \(layerPaths.count) layers")
        }
        var layers: [LayerSource] = []
        for (path, diffID) in zip(layerPaths, config.diffIDs) {
            guard let location = try files.location(of: path) else { throw ImportError("\(files.path): layer '\(path)' is not in the archive") }
            var digest: ImageDigest?
            if path.hasPrefix("blobs/sha256/") { digest = ImageDigest(parsing: "sha256:" + path.dropFirst(13)) }
            layers.append(LayerSource(open: { location }, digest: digest, diffID: diffID))
        }
        return ResolvedImage(manifestDigest: nil, configDigest: configDigest, config: config, layers: layers)
    }

    /// An OCI image layout: `index.json`, through nested indexes, to the one manifest that the tag
    /// or digest and the platform select.
    private func layout(_ files: ImageFiles) throws -> ResolvedImage {
        guard let indexLocation = try files.location(of: "index.json") else {
            throw ImportError("\(files.path): no index.json (not an OCI image layout)")
        }
        let index = try Documents.index(try readDocument(indexLocation, expecting: nil, display: "\(files.path): index.json"),
                                        display: "\(files.path): index.json")
        var entries = index.manifests
        if let tag = reference.tag {
            entries = entries.filter {
                $0.annotations["org.opencontainers.image.ref.name"] == tag
                    || $0.annotations["io.containerd.image.name"].map { $0 == tag || $0.hasSuffix(":" + tag) || $0.hasSuffix("/" + tag) } == true
            }
            guard !entries.isEmpty else { throw ImportError("\(files.path): no image tagged '\(tag)'") }
        }
        if let digest = reference.digest {
            entries = entries.filter { $0.digest == digest }
            guard !entries.isEmpty else { throw ImportError("\(files.path): no image \(digest.short)") }
        }
        var candidates: [Descriptor] = []
        try collect(entries, files: files, depth: 0, into: &candidates)
        guard !candidates.isEmpty else { throw ImportError("\(files.path): no image manifest") }
        let descriptor = try Self.choose(candidates, platform: platform, display: files.path)
        let display = "\(files.path): manifest \(descriptor.digest.short)"
        let manifest = try Documents.manifest(try readDocument(try files.blob(descriptor.digest, size: descriptor.size, display: "manifest"),
                                                               expecting: descriptor.digest, display: display), display: display)
        guard MediaType.configs.contains(manifest.config.mediaType) else {
            throw ImportError("\(display): config media type '\(manifest.config.mediaType)' is not an image config")
        }
        let configDisplay = "\(files.path): config \(manifest.config.digest.short)"
        let config = try Documents.config(try readDocument(try files.blob(manifest.config.digest, size: manifest.config.size, display: "config"),
                                                           expecting: manifest.config.digest, display: configDisplay), display: configDisplay)
        guard config.diffIDs.count == manifest.layers.count else {
            throw ImportError("\(configDisplay): \(config.diffIDs.count) diff_ids for the manifest's \(manifest.layers.count) layers")
        }
        if candidates.count > 1, !config.platform.satisfies(platform) {
            throw ImportError("\(configDisplay): the image is for \(config.platform), not \(platform)")
        }
        let layers = try zip(manifest.layers, config.diffIDs).map { layer, diffID in
            let location = try files.blob(layer.digest, size: layer.size, display: "layer")
            return LayerSource(open: { location }, digest: layer.digest, diffID: diffID)
        }
        return ResolvedImage(manifestDigest: descriptor.digest, configDigest: manifest.config.digest, config: config, layers: layers)
    }

    /// The one manifest of `candidates` for `platform`: the only candidate, else the one whose
    /// descriptor's platform satisfies it (several descriptors of one digest count once).
    static func choose(_ candidates: [Descriptor], platform: Platform, display: String) throws -> Descriptor {
        guard candidates.count > 1 else { return candidates[0] }
        let chosen = candidates.filter { $0.platform?.satisfies(platform) == true }
        guard !chosen.isEmpty else {
            throw ImportError("\(display): no image for platform \(platform) (it has \(candidates.map { $0.platform?.description ?? "unknown" }.joined(separator: ", ")))")
        }
        guard Set(chosen.map(\.digest)).count == 1 else {
            throw ImportError("\(display): \(chosen.count) images for platform \(platform); name one by tag or digest")
        }
        return chosen[0]
    }

    /// The manifests `entries` name, descending into nested indexes (containerd's image store, a
    /// manifest list); a manifest inherits the platform of the entry that named it.
    private func collect(_ entries: [Descriptor], files: ImageFiles, depth: Int, into out: inout [Descriptor]) throws {
        var seen: Set<String> = []
        var visited = 0
        try collect(entries, files: files, depth: depth, seen: &seen, visited: &visited, into: &out)
    }

    /// Each nested index is read once however often it is named, and at most 10000 entries are
    /// looked at in all: an index that names one index thousands of times, nested, stays cheap.
    private func collect(_ entries: [Descriptor], files: ImageFiles, depth: Int, seen: inout Set<String>, visited: inout Int,
                         into out: inout [Descriptor]) throws {
        guard depth < 8 else { throw ImportError("\(files.path): indexes nested more than 8 deep") }
        for entry in entries {
            visited += 1
            guard visited <= 10_000 else { throw ImportError("\(files.path): the indexes name more than 10000 entries") }
            if MediaType.manifests.contains(entry.mediaType) {
                out.append(entry)
            } else if MediaType.indexes.contains(entry.mediaType) {
                guard seen.insert("\(entry.digest)").inserted else { continue }
                let display = "\(files.path): index \(entry.digest.short)"
                let nested = try Documents.index(try readDocument(try files.blob(entry.digest, size: entry.size, display: "index"),
                                                                  expecting: entry.digest, display: display), display: display)
                try collect(nested.manifests, files: files, depth: depth + 1, seen: &seen, visited: &visited, into: &out)
            }
            // Other entries (attestations, signatures of other types) are not images.
        }
    }
}
