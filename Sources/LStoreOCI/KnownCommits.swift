import LStoreStore
import LStoreTree

/// The image and layer commits a store already has, found from every ref's first-parent history,
/// so that an import or a pull skips what it would only make again.
///
/// A layer commit is everything but its tree a function of its layer's diff_id, its history entry
/// and the commit below (`Importer.layerCommit`); its tree is the tree below with the layer
/// applied, and the diff_id pins the layer's content. So a commit with the same parent, diff_id,
/// time and message *is* the commit the import would make, and its layer need not be read. An
/// image commit is found by the manifest (or index) digest a registry names for a tag.
struct KnownImageCommits {
    private struct LayerKey: Hashable {
        var parent: Digest?
        var diffID: ImageDigest
        var time: Int64
        var message: String
    }

    private var layers: [LayerKey: Digest] = [:]
    /// Image commits by each digest they record (`oci-image-digest`, `oci-index-digest`).
    private var images: [ImageDigest: [(id: Digest, commit: Commit)]] = [:]

    /// Nothing known: every layer is read.
    init() {}

    init(store: Store) throws {
        var seen: Set<Digest> = []
        for (_, head) in try store.refs() {
            var next: Digest? = head
            while let id = next, seen.insert(id).inserted {
                guard let commit = try? store.commit(id) else { break }
                next = commit.parents.first
                let headers = commit.extraHeaders
                if commit.author == Importer.author, headers.count == 1, headers[0].key == "oci-diff-id",
                   let diffID = ImageDigest(parsing: headers[0].value), commit.source == "oci-layer \(diffID)", commit.parents.count <= 1 {
                    layers[LayerKey(parent: commit.parents.first, diffID: diffID, time: commit.time, message: commit.message)] = id
                }
                for header in headers where header.key == "oci-image-digest" || header.key == "oci-index-digest" {
                    if let digest = ImageDigest(parsing: header.value) { images[digest, default: []].append((id, commit)) }
                }
            }
        }
    }

    /// The layer commit the store has for these inputs, if any.
    func layer(parent: Digest?, diffID: ImageDigest, time: Int64, message: String) -> Digest? {
        layers[LayerKey(parent: parent, diffID: diffID, time: time, message: message)]
    }

    /// Image commits that record `digest` as their manifest's or index's.
    func images(recording digest: ImageDigest) -> [(id: Digest, commit: Commit)] {
        images[digest] ?? []
    }
}
