import Foundation
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// Where `lstore export` writes an image, as skopeo names it (the path ends at the first `:`):
///
/// - `oci:DIR[:TAG]`: an OCI image layout directory, made or updated; `index.json` gets the
///   manifest, named by `org.opencontainers.image.ref.name` = TAG (an entry of the same name, or
///   without a name when TAG is absent, is replaced);
/// - `oci-archive:FILE[:TAG]`: such a layout, holding only this image, as a tar;
/// - `docker-archive:FILE[:NAME[:TAG]]`: what `docker save` writes (`manifest.json`, the config as
///   `HEX.json`, each layer as `DIFFID/layer.tar`, uncompressed), which `docker load` reads;
///   NAME without TAG is `NAME:latest`.
public struct ExportTarget: Sendable, CustomStringConvertible {
    public var kind: ImageReference.Kind
    public var path: String
    public var tag: String?

    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":"), let kind = ImageReference.Kind(rawValue: String(text[..<colon])) else {
            throw ExportError("'\(text)': not an image destination (oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG])")
        }
        let rest = text[text.index(after: colon)...]
        let path = rest.firstIndex(of: ":").map { String(rest[..<$0]) } ?? String(rest)
        guard !path.isEmpty else { throw ExportError("'\(text)': no path") }
        var tag = rest.firstIndex(of: ":").map { String(rest[rest.index(after: $0)...]) }
        if tag?.isEmpty == true { tag = nil }
        if let name = tag {
            guard !name.contains(where: { $0.isWhitespace || $0.isNewline }), !name.contains("@") else {
                throw ExportError("'\(text)': '\(name)' is not a tag")
            }
            if kind == .dockerArchive {
                let last = name.split(separator: "/").last ?? ""
                if !last.contains(":") { tag = name + ":latest" }
            } else if name.contains(":") || name.contains("/") {
                throw ExportError("'\(text)': '\(name)' is not a tag")
            }
        }
        self.kind = kind
        self.path = path
        self.tag = tag
    }

    public var description: String { "\(kind.rawValue):\(path)" + (tag.map { ":\($0)" } ?? "") }
}

/// What an export to a target wrote.
public struct ExportResult: Sendable {
    public var image: ExportedImage
    public var target: ExportTarget
}

extension ImageExporter {
    /// Exports `commit` to `target`: into the layout directory, or into a temporary layout
    /// beside the archive, then the archive under a temporary name renamed into place.
    public func export(_ commit: Digest, to target: ExportTarget, progress: ((_ layer: Int, _ of: Int) -> Void)? = nil) throws -> ExportResult {
        switch target.kind {
        case .oci:
            let image = try export(commit, into: target.path, progress: progress)
            try OCILayout.tag(image, in: target.path, name: target.tag)
            return ExportResult(image: image, target: target)
        case .ociArchive, .dockerArchive:
            let scratch = "\(target.path).layout-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            var exporter = self
            // `docker save` writes each layer as a plain tar, its digest its diff_id.
            if target.kind == .dockerArchive {
                exporter = ImageExporter(store: store, options: ExportOptions(format: .docker, compression: .none, threads: options.threads))
            }
            let image = try exporter.export(commit, into: scratch, progress: progress)
            var members: [(name: String, file: String?)] = []
            if target.kind == .ociArchive {
                try OCILayout.tag(image, in: scratch, name: target.tag)
                members = [("blobs/", nil), ("blobs/sha256/", nil)]
                for blob in (image.layers + [image.config]).sorted(by: { $0.digest.digest < $1.digest.digest }) {
                    if !members.contains(where: { $0.name == "blobs/sha256/\(blob.digest.digest.hex)" }) {
                        members.append(("blobs/sha256/\(blob.digest.digest.hex)", blob.path))
                    }
                }
                let manifestName = "blobs/sha256/\(image.manifestDigest.digest.hex)"
                if !members.contains(where: { $0.name == manifestName }) { members.append((manifestName, scratch + "/" + manifestName)) }
                members.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
                members += [("index.json", scratch + "/index.json"), ("oci-layout", scratch + "/oci-layout")]
            } else {
                let configName = "\(image.config.digest.digest.hex).json"
                let layerNames = image.diffIDs.map { "\($0.digest.hex)/layer.tar" }
                let manifest = JSONValue.array([.object([
                    "Config": .string(configName),
                    "RepoTags": .strings(target.tag.map { [$0] } ?? []),
                    "Layers": .strings(layerNames),
                ])]).encoded
                try writeFileAtomically(manifest, to: scratch + "/manifest.json", durable: false)
                members.append((configName, image.config.path))
                for (name, layer) in zip(layerNames, image.layers) where !members.contains(where: { $0.name == name }) {
                    members.append((String(name.dropLast("/layer.tar".count)) + "/", nil))
                    members.append((name, layer.path))
                }
                members.append(("manifest.json", scratch + "/manifest.json"))
            }
            try writeArchive(members, to: target.path)
            return ExportResult(image: image, target: target)
        }
    }

    /// Writes a tar of `members` (directories where `file` is nil) at `path`, atomically.
    private func writeArchive(_ members: [(name: String, file: String?)], to path: String) throws {
        let temporary = "\(path).tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ExportError("\(temporary): cannot create: \(String(cString: strerror(errno)))") }
        do {
            defer { close(fd) }
            let tar = TarStreamWriter { try writeAll(fd, $0, display: temporary) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            for member in members {
                guard let file = member.file else {
                    try tar.writeHeader(TarStreamWriter.Header(path: Array(member.name.utf8), type: .directory, permissions: 0o755))
                    continue
                }
                let input = try ReadOnlyFile(file)
                try tar.writeHeader(TarStreamWriter.Header(path: Array(member.name.utf8), type: .regular, size: UInt64(input.size)))
                var offset: Int64 = 0
                while offset < input.size {
                    let got = try buffer.withUnsafeMutableBytes { try input.read(into: $0, at: offset) }
                    guard got > 0 else { throw ExportError("\(file): ends early") }
                    try buffer.withUnsafeBytes { try tar.writeData(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
                    offset += Int64(got)
                }
                try tar.endData(size: UInt64(input.size))
            }
            try tar.finish()
            guard fsync(fd) == 0 else { throw ExportError("\(temporary): fsync failed: \(String(cString: strerror(errno)))") }
            guard rename(temporary, path) == 0 else { throw ExportError("\(path): cannot rename: \(String(cString: strerror(errno)))") }
        } catch {
            unlink(temporary)
            throw error
        }
        try syncDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }
}

/// An OCI image layout's `index.json`, as an export updates it.
public enum OCILayout {
    /// The annotation that names a manifest in an index.
    public static let refName = "org.opencontainers.image.ref.name"

    /// Adds `image`'s manifest to `layout`'s `index.json` (made when missing) under `name`,
    /// replacing the entry of that name (or the unnamed entry, when `name` is nil). The other
    /// entries are kept, their fields that descriptors have.
    public static func tag(_ image: ExportedImage, in layout: String, name: String?) throws {
        let path = layout + "/index.json"
        var manifests: [JSONValue] = []
        if FileManager.default.fileExists(atPath: path) {
            let bytes = try readDocument(BlobLocation(file: ReadOnlyFile(path), offset: 0, size: ReadOnlyFile(path).size),
                                         expecting: nil, display: path)
            guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                throw ExportError("\(path): not a JSON object")
            }
            for entry in object["manifests"] as? [[String: Any]] ?? [] {
                let annotations = entry["annotations"] as? [String: String] ?? [:]
                if annotations[refName] == name { continue }
                manifests.append(descriptorValue(entry))
            }
        }
        var entry: [String: JSONValue] = ["mediaType": .string(image.manifestMediaType),
                                          "digest": .string(image.manifestDigest.description),
                                          "size": .integer(Int64(image.manifest.count))]
        if let name { entry["annotations"] = .object([refName: .string(name)]) }
        manifests.append(.object(entry))
        let index = JSONValue.object(["schemaVersion": .integer(2), "mediaType": .string(MediaType.ociIndex),
                                      "manifests": .array(manifests)])
        try writeFileAtomically(index.encoded, to: path)
    }

    /// A descriptor read from an index, in canonical form: its media type, digest, size, urls,
    /// annotations, artifact type and platform.
    static func descriptorValue(_ entry: [String: Any]) -> JSONValue {
        var out: [String: JSONValue] = [:]
        for key in ["mediaType", "digest", "artifactType"] {
            if let value = entry[key] as? String { out[key] = .string(value) }
        }
        if let size = entry["size"] as? NSNumber { out["size"] = .integer(size.int64Value) }
        if let urls = entry["urls"] as? [String] { out["urls"] = .strings(urls) }
        if let annotations = entry["annotations"] as? [String: String] { out["annotations"] = .object(annotations.mapValues { .string($0) }) }
        if let platform = entry["platform"] as? [String: Any] {
            var value: [String: JSONValue] = [:]
            for key in ["architecture", "os", "variant", "os.version"] {
                if let text = platform[key] as? String { value[key] = .string(text) }
            }
            for key in ["os.features", "features"] {
                if let list = platform[key] as? [String] { value[key] = .strings(list) }
            }
            out["platform"] = .object(value)
        }
        return .object(out)
    }
}
