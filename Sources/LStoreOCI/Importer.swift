import Foundation
import LStoreStore
import LStoreTar
import LStoreTree

/// What an import asks for besides the image.
public struct ImportOptions: Sendable {
    /// The platform an index's image is chosen for (default: this machine's).
    public var platform: Platform = .current
    /// A directory of the image whose tree becomes the imported root filesystem.
    public var rootfs: String?
    /// Every commit's time, instead of the image's own (`SOURCE_DATE_EPOCH`).
    public var time: Int64?
    public var limits = ImportLimits()

    public init() {}
}

/// What an import made: one commit per layer, bottom first, and the image commit on top.
public struct ImportResult: Sendable {
    public var layerCommits: [Digest]
    public var imageCommit: Digest
    public var imageTree: Digest
}

/// Imports an image into a store: each layer becomes a commit whose tree is its parent's with the
/// layer applied (`ChangeSet`, OCI form), chained by parent; an image commit on top records the
/// image's provenance and config. See spec/oci.md for what is recorded and why. Nothing is
/// durable until every layer is read and checked; moving a ref is the caller's last step.
public struct Importer {
    public let options: ImportOptions

    public init(options: ImportOptions) {
        self.options = options
    }

    /// The author of every commit an import makes.
    public static let author = "lstore import"

    /// Imports the image `reference` names (a `docker save` archive, an OCI layout or archive).
    public func run(_ reference: ImageReference, ingest: Ingest) throws -> ImportResult {
        let image = try ImageResolver(reference: reference, platform: options.platform).resolve()
        let known = try KnownImageCommits(store: ingest.writer.store)
        return try importImage(image, source: reference.description, display: reference.path, known: known, ingest: ingest)
    }

    /// The layer commit each of `image`'s bottom layers already has in the store (see
    /// `KnownImageCommits`): the longest run from the bottom whose commits are all there. Their
    /// blobs need not be read at all.
    func reusableLayers(_ config: ImageConfig, known: KnownImageCommits) -> [Digest] {
        let times = layerTimes(config)
        let messages = layerMessages(config)
        var found: [Digest] = []
        for (index, diffID) in config.diffIDs.enumerated() {
            guard let id = known.layer(parent: found.last, diffID: diffID, time: options.time ?? times[index],
                                       message: messages[index]) else { break }
            found.append(id)
        }
        return found
    }

    /// Makes the commits of a resolved image: a commit per layer (reusing those the store has), and
    /// the image commit. `source` names the image in its commit; `display` starts every message.
    func importImage(_ image: ResolvedImage, source: String, display imageDisplay: String, known: KnownImageCommits,
                     ingest: Ingest) throws -> ImportResult {
        let store = ingest.writer.store
        let times = layerTimes(image.config)
        let messages = layerMessages(image.config)
        var commits = reusableLayers(image.config, known: known)
        var parent = commits.last
        var stored: (tree: Digest, stats: TreeStats)?
        let root: Node
        if let parent {
            let commit = try store.commit(parent)
            root = try store.loadTree(commit.tree)
            stored = (commit.tree, TreeStats(size: commit.size, files: commit.files, entries: commit.entries))
        } else {
            root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
        }
        let changes = ChangeSet(root: root, form: .oci)
        for (index, layer) in image.layers.enumerated().dropFirst(commits.count) {
            let display = "\(imageDisplay): layer \(index + 1) (\(layer.digest?.short ?? layer.diffID.short))"
            let stream = try LayerStream(blob: BlobReader(try layer.open()), display: display, limits: options.limits)
            _ = try TarReader().readEntries(stream: { try stream.read(into: $0) }, display: display, ingest: { size, read in
                try ingest.ingestStream(size: size, read: read)
            }) { entry in
                do {
                    try changes.apply(components: entry.components, metadata: entry.metadata, content: entry.content)
                } catch let error as ChangeSetError {
                    throw ImportError("\(display): \(error)")
                }
            }
            try stream.finish(blobDigest: layer.digest, diffID: layer.diffID)
            do {
                try changes.finish()
            } catch {
                throw ImportError("\(display): \(error)")
            }
            let (tree, stats) = try ingest.storeTree(root)
            stored = (tree, stats)
            let commit = Self.layerCommit(tree: tree, stats: stats, parent: parent, diffID: layer.diffID,
                                          time: options.time ?? times[index], message: messages[index])
            let id = try ingest.storeCommit(commit)
            commits.append(id)
            parent = id
        }

        if let rootfs = options.rootfs {
            stored = try ingest.storeTree(try subtree(root, at: rootfs))
        }
        let (tree, stats) = try stored ?? ingest.storeTree(root)
        let commit = Commit(tree: tree, parents: parent.map { [$0] } ?? [],
                            time: options.time ?? image.config.created.flatMap(parseRFC3339) ?? 0,
                            author: Self.author, source: source, size: stats.size, files: stats.files,
                            entries: stats.entries, extraHeaders: imageHeaders(image, source: source),
                            message: "import \(source)\n")
        let id = try ingest.storeCommit(commit)
        return ImportResult(layerCommits: commits, imageCommit: id, imageTree: tree)
    }

    /// The commit of one layer: everything but its tree follows from the layer's diff_id, its
    /// history entry and the commit below, which is what lets a later import find it again.
    static func layerCommit(tree: Digest, stats: TreeStats, parent: Digest?, diffID: ImageDigest, time: Int64,
                            message: String) -> Commit {
        Commit(tree: tree, parents: parent.map { [$0] } ?? [], time: time, author: author, source: "oci-layer \(diffID)",
               size: stats.size, files: stats.files, entries: stats.entries,
               extraHeaders: [CommitHeader(key: "oci-diff-id", value: diffID.description)], message: message)
    }

    /// The headers of the image commit, in this order, each present only when the image has it.
    func imageHeaders(_ image: ResolvedImage, source: String) -> [CommitHeader] {
        var headers: [CommitHeader] = [CommitHeader(key: "oci-source", value: source)]
        if let digest = image.manifestDigest { headers.append(CommitHeader(key: "oci-image-digest", value: digest.description)) }
        if let digest = image.indexDigest { headers.append(CommitHeader(key: "oci-index-digest", value: digest.description)) }
        headers.append(CommitHeader(key: "oci-config", value: image.configDigest.description))
        let config = image.config
        headers.append(CommitHeader(key: "oci-platform", value: config.platform.description))
        headers.append(CommitHeader(key: "oci-architecture", value: config.architecture))
        func json(_ key: String, _ value: Any?) {
            guard let value, let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
            headers.append(CommitHeader(key: key, value: String(decoding: data, as: UTF8.self)))
        }
        json("oci-env", config.env)
        json("oci-entrypoint", config.entrypoint)
        json("oci-cmd", config.cmd)
        if let workingDir = config.workingDir, !workingDir.isEmpty { json("oci-workdir", [workingDir]) }
        if let user = config.user, !user.isEmpty { json("oci-user", [user]) }
        json("oci-labels", config.labels)
        if let rootfs = options.rootfs { headers.append(CommitHeader(key: "oci-rootfs", value: rootfs)) }
        return headers
    }

    /// Each layer's time: the `created` of the history entry that made it (entries with
    /// `empty_layer` make none), else 0.
    func layerTimes(_ config: ImageConfig) -> [Int64] {
        let made = config.history.filter { !$0.emptyLayer }
        guard made.count == config.diffIDs.count else { return Array(repeating: 0, count: config.diffIDs.count) }
        return made.map { $0.created.flatMap(parseRFC3339) ?? 0 }
    }

    /// Each layer's message: the `created_by` of the history entry that made it, else empty.
    func layerMessages(_ config: ImageConfig) -> [String] {
        let made = config.history.filter { !$0.emptyLayer }
        guard made.count == config.diffIDs.count else { return Array(repeating: "", count: config.diffIDs.count) }
        return made.map { $0.createdBy.map { $0 + "\n" } ?? "" }
    }

    /// The directory at `path` in `root`, reached without following a symlink, as a tree root.
    func subtree(_ root: Node, at path: String) throws -> Node {
        var node = root
        for component in path.split(separator: "/") where component != "." {
            guard component != "..", let next = node.directory?.child(named: Array(component.utf8)) else {
                throw ImportError("--rootfs \(path): no such directory in the image")
            }
            guard next.directory != nil else {
                throw ImportError("--rootfs \(path): '\(component)' is a \(next.metadata.kind), not a directory")
            }
            node = next
        }
        let top = Node(name: [], metadata: node.metadata, content: node.content)
        // Hardlinks name paths from the image's root: from the new root they lose that prefix, and
        // a link to a file outside the directory gets the file's data.
        let prefix = Array(path.split(separator: "/").filter { $0 != "." }.joined(separator: "/").utf8)
        if !prefix.isEmpty {
            top.walk { _, entry in
                guard case .hardlink(let target) = entry.content else { return }
                if target.starts(with: prefix + [UInt8(ascii: "/")]) {
                    entry.content = .hardlink(path: Array(target.dropFirst(prefix.count + 1)))
                } else if let holder = root.lookup(target) {
                    entry.metadata = holder.metadata
                    entry.content = holder.content
                }
            }
            try top.normalizeHardlinks()
        }
        return top
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `...+01:00`); nil
/// when it is not one. Fractions of a second are dropped.
func parseRFC3339(_ text: String) -> Int64? {
    let bytes = Array(text.utf8)
    func number(_ range: Range<Int>) -> Int64? {
        guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ (48...57).contains($0) }) else { return nil }
        return Int64(String(decoding: bytes[range], as: UTF8.self))
    }
    guard bytes.count >= 20, let year = number(0..<4), bytes[4] == UInt8(ascii: "-"), let month = number(5..<7),
          bytes[7] == UInt8(ascii: "-"), let day = number(8..<10), bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
          let hour = number(11..<13), bytes[13] == UInt8(ascii: ":"), let minute = number(14..<16), bytes[16] == UInt8(ascii: ":"),
          let second = number(17..<19), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
        return nil
    }
    var index = 19
    if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
        index += 1
        while index < bytes.count, (48...57).contains(bytes[index]) { index += 1 }
    }
    var offset: Int64 = 0
    guard index < bytes.count else { return nil }
    if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
        guard index + 1 == bytes.count else { return nil }
    } else {
        guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"), index + 6 == bytes.count,
              let hours = number((index + 1)..<(index + 3)), bytes[index + 3] == UInt8(ascii: ":"),
              let minutes = number((index + 4)..<(index + 6)) else { return nil }
        offset = (hours * 3600 + minutes * 60) * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
    }
    // Days from 1970-01-01 in the proleptic Gregorian calendar.
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    let days = era * 146097 + dayOfEra - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second - offset
}
