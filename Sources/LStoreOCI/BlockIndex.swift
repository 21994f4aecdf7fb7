import Foundation
import LStoreStore
import LStoreTree

/// What lstore keeps in a registry beside an image so that another store can fetch only the
/// objects it lacks (spec/registry.md §6): the commit chain as pack blobs, one per layer, each
/// with its index, named by an artifact manifest whose `subject` is the image.
public enum BlockIndex {
    public static let artifactType = "application/vnd.lstore.blocks.v1"
    public static let packType = "application/vnd.lstore.pack.v1"
    public static let packIndexType = "application/vnd.lstore.pack-index.v1"
    public static let emptyType = "application/vnd.oci.empty.v1+json"
    /// The empty config, `{}`.
    static let emptyConfig: [UInt8] = Array("{}".utf8)
    static let commitAnnotation = "org.lstore.commit"
    static let blockSizeAnnotation = "org.lstore.block-size"
    /// The largest pack index a pull reads (56 bytes an object: over a million objects).
    static let maximumIndexSize: Int64 = 64 << 20

    /// The tag that stands for the referrers of `digest` where the registry has no referrers
    /// API (distribution-spec, "Referrers tag schema"): `sha256-HEX`.
    public static func fallbackTag(_ digest: ImageDigest) -> String { "sha256-\(digest.digest.hex)" }

    /// One layer's pack: the commit it ends at, the pack blob and its index blob.
    struct Segment {
        var commit: Digest
        var pack: Descriptor
        var index: Descriptor
    }

    /// A block index as its artifact manifest says.
    struct Document {
        var subject: Descriptor
        var blockSize: Int
        var top: Digest
        /// Bottom first.
        var segments: [Segment]
    }

    /// The segments' tips for `commit`: the commits that make the image's layers (spec/oci.md §7),
    /// bottom first, the last replaced by `commit` itself (which may add commits on top of the
    /// layer that has its tree).
    static func tips(_ commit: Digest, store: Store) throws -> [Digest] {
        var tips = try ImageExporter(store: store, options: ExportOptions()).layerCommits(commit).map(\.id)
        if tips.isEmpty { tips = [commit] } else { tips[tips.count - 1] = commit }
        return tips
    }

    /// The objects `tip` reaches that are not in `placed`, and adds them to it: commits (down
    /// every parent), then trees (depth first, in entry order), then file objects, then blocks, each
    /// group in the order first met. The same commit and `placed` give the same list.
    static func introduced(by tip: Digest, store: Store, placed: inout Set<ObjectName>) throws -> [ObjectName] {
        var commits: [ObjectName] = [], trees: [ObjectName] = [], files: [ObjectName] = [], blocks: [ObjectName] = []
        var roots: [Digest] = []
        var stack = [tip]
        while let id = stack.popLast() {
            let name = ObjectName(kind: .commit, id: id)
            guard placed.insert(name).inserted else { continue }
            commits.append(name)
            let commit = try store.commit(id)
            roots.append(commit.tree)
            stack.append(contentsOf: commit.parents.reversed())
        }
        for root in roots {
            var pending = [root]
            while let id = pending.popLast() {
                let name = ObjectName(kind: .tree, id: id)
                guard placed.insert(name).inserted else { continue }
                trees.append(name)
                var children: [Digest] = []
                for entry in try store.tree(id).entries {
                    switch entry.payload {
                    case .directory(let child):
                        children.append(child)
                    case .regular(_, let file):
                        let fileName = ObjectName(kind: .file, id: file)
                        guard placed.insert(fileName).inserted else { break }
                        files.append(fileName)
                        for block in try store.file(file).blocks where block != .zero {
                            let blockName = ObjectName(kind: .block, id: block)
                            if placed.insert(blockName).inserted { blocks.append(blockName) }
                        }
                    default:
                        break
                    }
                }
                pending.append(contentsOf: children.reversed())
            }
        }
        return commits + trees + files + blocks
    }

    /// The artifact manifest (canonical JSON, as spec/registry.md §6 gives it).
    static func manifest(subject: Descriptor, blockSize: Int, segments: [Segment]) -> [UInt8] {
        func descriptor(_ d: Descriptor, annotations: [String: String] = [:]) -> JSONValue {
            var members: [String: JSONValue] = ["mediaType": .string(d.mediaType), "digest": .string(d.digest.description),
                                                "size": .integer(d.size)]
            if !annotations.isEmpty { members["annotations"] = .object(annotations.mapValues { .string($0) }) }
            return .object(members)
        }
        var layers: [JSONValue] = []
        for segment in segments {
            layers.append(descriptor(segment.pack, annotations: [commitAnnotation: segment.commit.hex]))
            layers.append(descriptor(segment.index))
        }
        return JSONValue.object([
            "schemaVersion": .integer(2),
            "mediaType": .string(MediaType.ociManifest),
            "artifactType": .string(artifactType),
            "config": .object(["mediaType": .string(emptyType), "digest": .string(ImageDigest(sha256(emptyConfig)).description),
                               "size": .integer(Int64(emptyConfig.count))]),
            "layers": .array(layers),
            "subject": descriptor(subject),
            "annotations": .object([commitAnnotation: .string(segments.last?.commit.hex ?? ""),
                                    blockSizeAnnotation: .string(String(blockSize))]),
        ]).encoded
    }

    /// Parses and checks an artifact manifest: its type, that its subject is `subject`, pairs of
    /// pack and index descriptors, each pack naming its commit, the top commit the last one's.
    static func parse(_ bytes: [UInt8], subject: ImageDigest, display: String) throws -> Document {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw RegistryError("\(display): the block index is not a JSON object")
        }
        func descriptor(_ value: Any?, _ what: String) throws -> Descriptor {
            guard let d = value as? [String: Any], let type = d["mediaType"] as? String,
                  let digest = (d["digest"] as? String).flatMap(ImageDigest.init(parsing:)),
                  let size = (d["size"] as? NSNumber)?.int64Value, size >= 0 else {
                throw RegistryError("\(display): the block index has a bad \(what) descriptor")
            }
            return Descriptor(mediaType: type, digest: digest, size: size, annotations: [:], platform: nil)
        }
        guard object["artifactType"] as? String == artifactType else {
            throw RegistryError("\(display): not an lstore block index (artifactType)")
        }
        let subjectDescriptor = try descriptor(object["subject"], "subject")
        guard subjectDescriptor.digest == subject else {
            throw RegistryError("\(display): the block index is for \(subjectDescriptor.digest.short), not \(subject.short)")
        }
        let annotations = object["annotations"] as? [String: Any] ?? [:]
        guard let blockSize = (annotations[blockSizeAnnotation] as? String).flatMap(Int.init), blockSize > 0,
              let top = (annotations[commitAnnotation] as? String).flatMap(Digest.init(hex:)) else {
            throw RegistryError("\(display): the block index lacks its block size or top commit")
        }
        let layers = object["layers"] as? [Any] ?? []
        guard !layers.isEmpty, layers.count % 2 == 0, layers.count <= 2 * 1024 else {
            throw RegistryError("\(display): the block index has \(layers.count) layers, not pairs of pack and index")
        }
        var segments: [Segment] = []
        for pair in stride(from: 0, to: layers.count, by: 2) {
            let pack = try descriptor(layers[pair], "pack")
            let index = try descriptor(layers[pair + 1], "pack index")
            guard pack.mediaType == packType, index.mediaType == packIndexType, index.size <= maximumIndexSize,
                  let commit = (((layers[pair] as? [String: Any])?["annotations"] as? [String: Any])?[commitAnnotation] as? String)
                    .flatMap(Digest.init(hex:)) else {
                throw RegistryError("\(display): the block index's layer \(pair) is not a pack naming its commit and its index")
            }
            segments.append(Segment(commit: commit, pack: pack, index: index))
        }
        guard segments.last?.commit == top else { throw RegistryError("\(display): the block index's top commit is not its last pack's") }
        return Document(subject: subjectDescriptor, blockSize: blockSize, top: top, segments: segments)
    }
}
