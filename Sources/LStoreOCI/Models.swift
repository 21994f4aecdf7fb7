import Foundation
import LStoreTree

/// The media types an image's JSON documents and layers carry, OCI's and Docker schema 2's.
public enum MediaType {
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    public static let indexes: Set<String> = [ociIndex, dockerManifestList]
    public static let manifests: Set<String> = [ociManifest, dockerManifest]
    public static let configs: Set<String> = [ociConfig, dockerConfig]

    /// Whether `type` names a layer lstore reads: a tar, plain, gzip or zstd (OCI's, nondistributable
    /// ones included, and Docker's). The compression is found from the data's first bytes.
    public static func isLayer(_ type: String) -> Bool {
        let layers: Set<String> = [
            "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.diff.tar", "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "application/vnd.docker.image.rootfs.diff.tar.zstd",
        ]
        return layers.contains(type)
    }
}

/// A content digest as images spell it, `sha256:` and 64 lower-case hex digits. Other algorithms
/// are refused: lstore verifies every blob, and SHA-256 is what images use.
public struct ImageDigest: Hashable, Sendable, CustomStringConvertible {
    public var digest: Digest

    public init(_ digest: Digest) {
        self.digest = digest
    }

    /// Parses `text`; nil when it is not `sha256:` and 64 lower-case hex digits.
    public init?(parsing text: String) {
        guard text.hasPrefix("sha256:"), case let hex = text.dropFirst(7), hex.utf8.count == 64,
              hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
              let digest = Digest(hex: String(hex)) else { return nil }
        self.digest = digest
    }

    public var description: String { "sha256:\(digest.hex)" }
    /// The first 12 hex digits, as messages name a blob.
    public var short: String { "sha256:" + digest.hex.prefix(12) }
}

/// A pointer to a blob: what it is, its digest and size (image-spec `descriptor.md`).
public struct Descriptor: Sendable {
    public var mediaType: String
    public var digest: ImageDigest
    public var size: Int64
    public var annotations: [String: String]
    public var platform: Platform?
}

/// The platform an image runs on: `os/architecture[/variant]`.
public struct Platform: Hashable, Sendable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?

    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant?.isEmpty == true ? nil : variant
    }

    /// Parses `os/arch[/variant]`.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        self.init(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil)
    }

    public var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }

    /// Whether an image for `self` runs where `wanted` is asked for: same os and architecture, and
    /// the variant when `wanted` names one.
    public func satisfies(_ wanted: Platform) -> Bool {
        os == wanted.os && architecture == wanted.architecture && (wanted.variant == nil || variant == wanted.variant)
    }

    /// This machine's platform, in Go's names as images use them.
    public static var current: Platform {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: &name.machine) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        switch machine {
        case "x86_64": return Platform(os: "linux", architecture: "amd64")
        case "aarch64", "arm64": return Platform(os: "linux", architecture: "arm64")
        case "armv7l": return Platform(os: "linux", architecture: "arm", variant: "v7")
        case "armv6l": return Platform(os: "linux", architecture: "arm", variant: "v6")
        case "i386", "i486", "i586", "i686": return Platform(os: "linux", architecture: "386")
        default: return Platform(os: "linux", architecture: machine)
        }
    }
}

/// An image manifest: its config and its layers, bottom first (image-spec `manifest.md`).
public struct Manifest: Sendable {
    public var config: Descriptor
    public var layers: [Descriptor]
}

/// An image index (or Docker manifest list): manifests for several platforms or tags.
public struct ImageIndex: Sendable {
    public var manifests: [Descriptor]
}

/// What lstore keeps of an image's config (image-spec `config.md`).
public struct ImageConfig: Sendable {
    /// One entry of the config's `history`.
    public struct History: Sendable {
        public var created: String?
        public var createdBy: String?
        public var emptyLayer: Bool
    }

    public var architecture: String
    public var os: String
    public var variant: String?
    public var created: String?
    public var diffIDs: [ImageDigest]
    public var history: [History]
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var workingDir: String?
    public var user: String?
    public var labels: [String: String]?

    public var platform: Platform { Platform(os: os, architecture: architecture, variant: variant) }
}

/// The largest JSON document (index, manifest, config, `manifest.json`) lstore reads: real ones
/// are a few KiB; a larger claim is refused before any byte is read.
public let maximumDocumentSize: Int64 = 4 << 20

/// Parses the JSON documents of images, with strict checks: every field lstore uses has its type,
/// digests are SHA-256, sizes are not negative. Errors name `display`.
enum Documents {
    static func object(_ bytes: [UInt8], display: String) throws -> [String: Any] {
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes)), let object = value as? [String: Any] else {
            throw ImportError("\(display): not a JSON object")
        }
        return object
    }

    static func string(_ object: [String: Any], _ key: String, display: String, required: Bool = false) throws -> String? {
        guard let value = object[key], !(value is NSNull) else {
            if required { throw ImportError("\(display): no '\(key)'") }
            return nil
        }
        guard let string = value as? String else { throw ImportError("\(display): '\(key)' is not a string") }
        return string
    }

    static func strings(_ object: [String: Any], _ key: String, display: String) throws -> [String]? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let array = value as? [Any], case let strings = array.compactMap({ $0 as? String }), strings.count == array.count else {
            throw ImportError("\(display): '\(key)' is not a list of strings")
        }
        return strings
    }

    static func objects(_ object: [String: Any], _ key: String, display: String) throws -> [[String: Any]] {
        guard let value = object[key], !(value is NSNull) else { return [] }
        guard let array = value as? [Any], case let objects = array.compactMap({ $0 as? [String: Any] }), objects.count == array.count else {
            throw ImportError("\(display): '\(key)' is not a list of objects")
        }
        return objects
    }

    static func schemaVersion2(_ object: [String: Any], display: String) throws {
        guard let version = object["schemaVersion"] as? NSNumber, version.intValue == 2, "\(version)" == "2" else {
            throw ImportError("\(display): schemaVersion is not 2")
        }
    }

    static func descriptor(_ object: [String: Any], display: String) throws -> Descriptor {
        let mediaType = try string(object, "mediaType", display: display, required: true)!
        let digestText = try string(object, "digest", display: display, required: true)!
        guard let digest = ImageDigest(parsing: digestText) else {
            throw ImportError("\(display): digest '\(digestText.prefix(80))' is not sha256: and 64 lower-case hex digits")
        }
        guard let sizeNumber = object["size"] as? NSNumber, case let size = sizeNumber.int64Value, size >= 0,
              "\(sizeNumber)" == "\(size)" else {
            throw ImportError("\(display): descriptor \(digest.short) has no valid size")
        }
        var annotations: [String: String] = [:]
        if let value = object["annotations"] {
            guard let map = value as? [String: Any], case let strings = map.compactMapValues({ $0 as? String }), strings.count == map.count else {
                throw ImportError("\(display): annotations are not strings")
            }
            annotations = strings
        }
        var platform: Platform?
        if let value = object["platform"] {
            guard let map = value as? [String: Any], let os = map["os"] as? String, let architecture = map["architecture"] as? String else {
                throw ImportError("\(display): descriptor \(digest.short) has a platform without os and architecture")
            }
            platform = Platform(os: os, architecture: architecture, variant: map["variant"] as? String)
        }
        return Descriptor(mediaType: mediaType, digest: digest, size: size, annotations: annotations, platform: platform)
    }

    static func manifest(_ bytes: [UInt8], display: String) throws -> Manifest {
        let object = try object(bytes, display: display)
        try schemaVersion2(object, display: display)
        if let type = try string(object, "mediaType", display: display), !MediaType.manifests.contains(type) {
            throw ImportError("\(display): media type '\(type)' is not an image manifest")
        }
        guard let config = object["config"] as? [String: Any] else { throw ImportError("\(display): no config") }
        let layers = try objects(object, "layers", display: display).map { try descriptor($0, display: display) }
        for layer in layers where !MediaType.isLayer(layer.mediaType) {
            throw ImportError("\(display): layer \(layer.digest.short) has media type '\(layer.mediaType)', which is not a tar layer lstore reads")
        }
        return Manifest(config: try descriptor(config, display: display), layers: layers)
    }

    static func index(_ bytes: [UInt8], display: String) throws -> ImageIndex {
        let object = try object(bytes, display: display)
        try schemaVersion2(object, display: display)
        if let type = try string(object, "mediaType", display: display), !MediaType.indexes.contains(type) {
            throw ImportError("\(display): media type '\(type)' is not an image index")
        }
        return ImageIndex(manifests: try objects(object, "manifests", display: display).map { try descriptor($0, display: display) })
    }

    static func config(_ bytes: [UInt8], display: String) throws -> ImageConfig {
        let object = try object(bytes, display: display)
        guard let architecture = try string(object, "architecture", display: display), let os = try string(object, "os", display: display) else {
            throw ImportError("\(display): no architecture or os")
        }
        guard let rootfs = object["rootfs"] as? [String: Any], try string(rootfs, "type", display: display) == "layers" else {
            throw ImportError("\(display): rootfs is not of type 'layers'")
        }
        let diffIDs = try (strings(rootfs, "diff_ids", display: display) ?? []).map { text in
            guard let digest = ImageDigest(parsing: text) else { throw ImportError("\(display): diff_id '\(text.prefix(80))' is not a sha256 digest") }
            return digest
        }
        let history = try objects(object, "history", display: display).map {
            ImageConfig.History(created: try string($0, "created", display: display), createdBy: try string($0, "created_by", display: display),
                                emptyLayer: ($0["empty_layer"] as? Bool) ?? false)
        }
        let inner = object["config"] as? [String: Any] ?? [:]
        var labels: [String: String]?
        if let value = inner["Labels"], !(value is NSNull) {
            guard let map = value as? [String: Any], case let strings = map.compactMapValues({ $0 as? String }), strings.count == map.count else {
                throw ImportError("\(display): Labels are not strings")
            }
            labels = strings
        }
        return ImageConfig(architecture: architecture, os: os, variant: try string(object, "variant", display: display),
                           created: try string(object, "created", display: display), diffIDs: diffIDs, history: history,
                           env: try strings(inner, "Env", display: display), entrypoint: try strings(inner, "Entrypoint", display: display),
                           cmd: try strings(inner, "Cmd", display: display), workingDir: try string(inner, "WorkingDir", display: display),
                           user: try string(inner, "User", display: display), labels: labels)
    }
}

/// An image that cannot be imported: one line naming the input and what is wrong.
public struct ImportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
