import Crypto
import Foundation
import LStoreHTTP
import LStoreStore
import LStoreTree

/// Why a pull went by layers although it could have gone by blocks: the image has no block
/// index, or one this store cannot use. Said in the pull's output.
struct NoBlockIndex: Error {
    let reason: String
}

extension RegistryPuller {
    /// The block index of the image whose manifest is `subject` (spec/registry.md §6): asked of
    /// the referrers API, else of the referrers tag. Throws `NoBlockIndex` when there is none or
    /// this store cannot use it.
    func blockIndex(of subject: ImageDigest, connection: RegistryConnection, store: Store, display: String) throws -> BlockIndex.Document {
        var listing: [UInt8]?
        var headers = HTTPHeaders()
        headers.set("Accept", MediaType.ociIndex)
        let referrers = try connection.url("referrers/\(subject)") + "?artifactType=" + BlockIndex.artifactType
            .replacingOccurrences(of: "+", with: "%2B")
        let (exchange, response) = try connection.send("GET", referrers, headers: headers)
        if response.status == 200 {
            listing = try connection.readBody(exchange, response, limit: Int(maximumDocumentSize), what: "referrers of \(subject.short)")
        } else {
            try? connection.drain(exchange)
            // The referrers tag: a HEAD first, which Docker Hub does not count against its limit,
            // so that an image without a block index costs no manifest GET.
            let tag = BlockIndex.fallbackTag(subject)
            guard try connection.manifestExists(tag) else {
                throw NoBlockIndex(reason: "the image has no block index")
            }
            listing = try connection.document(try connection.url("manifests/\(tag)"), headers: headers, what: "referrers tag").1
        }
        let object = listing.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] } ?? [:]
        let entries = (object["manifests"] as? [[String: Any]] ?? []).filter { $0["artifactType"] as? String == BlockIndex.artifactType }
        guard let entry = entries.last, let digest = (entry["digest"] as? String).flatMap(ImageDigest.init(parsing:)) else {
            throw NoBlockIndex(reason: "the image has no block index")
        }
        let manifest = try connection.document(try connection.url("manifests/\(digest)"), headers: {
            var accept = HTTPHeaders()
            accept.set("Accept", MediaType.ociManifest)
            return accept
        }(), what: "block index \(digest.short)").1
        guard ImageDigest(sha256(manifest)) == digest else {
            throw RegistryError("\(display): block index \(digest.short): its content has digest \(ImageDigest(sha256(manifest)).short)")
        }
        let document = try BlockIndex.parse(manifest, subject: subject, display: "\(display): block index \(digest.short)")
        guard document.blockSize == store.blockSize else {
            throw NoBlockIndex(reason: "its block index cuts files into \(document.blockSize / 1024)K blocks, this store \(store.blockSize / 1024)K")
        }
        return document
    }

    /// Pulls the commits of `document` by blocks: reads each pack's index, fetches the objects
    /// this store lacks with `Range` requests on the pack blobs, verified as objects from a peer
    /// are (spec/protocol.md §5); checks that the layers the new commits make have the image's
    /// diff_ids; then makes the image commit on the top one.
    func pullBlocks(_ document: BlockIndex.Document, image: ResolvedImage, imageBytes: UInt64, layerSizes: [Int64],
                    connection: RegistryConnection, ingest: Ingest, display: String) throws -> RegistryPullResult {
        let store = ingest.writer.store
        guard document.segments.count == image.config.diffIDs.count else {
            throw RegistryError("\(display): the block index has \(document.segments.count) layers, the image \(image.config.diffIDs.count)")
        }
        // A segment whose commit a ref reaches is here in full, and so is every object its pack
        // holds: its index is not needed.
        let complete = try Walk.ancestors(of: store.refs().map(\.commit), in: store)
        let source = try RegistryPackSource(document: document, connection: connection, display: display,
                                            skipping: Set(document.segments.indices.filter { complete.contains(document.segments[$0].commit) }))
        let had = document.segments.map { store.contains($0.commit, kind: .commit) }
        var received = ReceivedObjects()
        try receiveObjects(document.top, with: ingest.writer, from: source, received: &received)

        // Each layer's tree is checked against the image's diff_id (the same trees export to the
        // same diff_ids), and gets the layer commit `lstore import` makes of it, so that a later
        // pull by layers or import of an image on the same layers finds them. A layer commit the
        // store has already (with this tree) was checked when it was made.
        let importer = Importer(options: importOptions)
        let known = try KnownImageCommits(store: store)
        let times = importer.layerTimes(image.config), messages = importer.layerMessages(image.config)
        var layer: LStoreTree.Digest?
        var parentTree: Node?
        for (number, segment) in document.segments.enumerated() {
            let commit = try store.commit(segment.commit)
            let child = try store.loadTree(commit.tree)
            let diffID = image.config.diffIDs[number]
            let time = importOptions.time ?? times[number]
            if let existing = known.layer(parent: layer, diffID: diffID, time: time, message: messages[number]),
               try store.commit(existing).tree == commit.tree {
                layer = existing
            } else {
                // Bounded as an imported layer is (spec/oci.md §5): a block index may not make
                // lstore hash more than the image's own layer could expand to.
                let compressed = UInt64(max(0, number < layerSizes.count ? layerSizes[number] : 0))
                let limits = importOptions.limits
                let limit = min(limits.layerBytes, max(limits.ratioFloor, compressed.multipliedReportingOverflow(by: limits.ratio).partialValue))
                let actual = try Self.layerDiffID(child, base: parentTree, store: store, limit: limit,
                                                  display: "\(display): the block index's layer \(number + 1)")
                guard actual == diffID else {
                    throw RegistryError("\(display): the block index's layer \(number + 1) is not the image's: diff_id \(actual.short), not \(diffID.short)")
                }
                let stats = TreeStats(size: commit.size, files: commit.files, entries: commit.entries)
                layer = try ingest.storeCommit(Importer.layerCommit(tree: commit.tree, stats: stats, parent: layer, diffID: diffID,
                                                                    time: time, message: messages[number]))
            }
            parentTree = child
        }
        // The image commit: as a pull by layers makes it, on the layer commits, with the pushed
        // commit as its second parent (what the block index brought stays reachable).
        let top = try store.commit(document.top)
        let commit = Commit(tree: top.tree, parents: [layer!, document.top],
                            time: importOptions.time ?? image.config.created.flatMap(parseRFC3339) ?? 0,
                            author: Importer.author, source: reference.description, size: top.size, files: top.files,
                            entries: top.entries, extraHeaders: importer.imageHeaders(image, source: reference.description),
                            message: "import \(reference.description)\n")
        let id = try ingest.storeCommit(commit)
        var result = RegistryPullResult(imageCommit: id, layerCommits: document.segments.map(\.commit), reusedLayers: had.filter { $0 }.count,
                                        fetchedLayers: 0, bytesFetched: source.bytesFetched, upToDate: false)
        result.byBlocks = true
        result.imageBytes = imageBytes
        result.objectsFetched = received.objects.values.reduce(0, +)
        result.rangeRequests = source.requests
        return result
    }

    /// The diff_id of the layer that turns `base` into `child` (the uncompressed tar lstore's
    /// export writes, spec/oci.md §7).
    static func layerDiffID(_ child: Node, base: Node?, store: Store, limit: UInt64, display: String) throws -> ImageDigest {
        var hash = SHA256()
        let root = base.map { OverlayDelta(base: $0, child: child).root } ?? child
        var produced: UInt64 = 0
        let tar = TarStreamWriter { bytes in
            produced += UInt64(bytes.count)
            guard produced <= limit else {
                throw RegistryError("\(display): more than \(limit) bytes uncompressed, the limit for this layer")
            }
            hash.update(bufferPointer: bytes)
        }
        _ = try LayerWriter(reader: StoreFileReader(store: store)).write(root, child: base == nil ? nil : child, to: tar, display: display)
        return imageDigest(hash)
    }
}

/// The pack blobs of a block index as a source of objects: each object found through its pack's
/// index, the wanted ones of a pack fetched in few `Range` requests (neighbours merged when the
/// gap between them is small).
final class RegistryPackSource: ObjectSource {
    let display: String
    private let connection: RegistryConnection
    private let packs: [Descriptor]
    private var locations: [ObjectName: (pack: Int, location: PackLocation)] = [:]
    private(set) var bytesFetched: UInt64 = 0
    private(set) var requests = 0
    /// Bytes between two wanted entries fetched rather than asking twice.
    static let mergeGap: UInt64 = 64 << 10
    /// The most one request asks for (unless one entry is larger).
    static let maximumRange: UInt64 = 16 << 20

    /// Reads the indexes of the packs of `document` but those of `skipping`.
    init(document: BlockIndex.Document, connection: RegistryConnection, display: String, skipping: Set<Int>) throws {
        self.display = display
        self.connection = connection
        packs = document.segments.map(\.pack)
        for (number, segment) in document.segments.enumerated() where !skipping.contains(number) {
            let what = "pack index \(segment.index.digest.short)"
            let bytes = try connection.smallBlob(segment.index, what: what, limit: BlockIndex.maximumIndexSize)
            bytesFetched += UInt64(bytes.count)
            for (id, location) in try DetachedPack.decodeIndex(bytes, what: "\(display): \(what)") {
                let end = location.offset + UInt64(PackEntry.headerSize) + UInt64(location.storedLength)
                guard end <= UInt64(segment.pack.size) else {
                    throw RegistryError("\(display): \(what) places \(location.kind) \(id.short) beyond its pack's \(segment.pack.size) bytes")
                }
                locations[ObjectName(kind: location.kind, id: id)] = (number, location)
            }
        }
    }

    func fetch(_ names: [ObjectName], receive: ([UInt8]) throws -> Void) throws {
        var wanted: [Int: [(offset: UInt64, length: UInt64)]] = [:]
        for name in names {
            guard let (pack, location) = locations[name] else {
                throw SourceError("\(display): the block index does not hold \(name.kind) \(name.id.short)")
            }
            wanted[pack, default: []].append((location.offset, UInt64(PackEntry.headerSize) + UInt64(location.storedLength)))
        }
        for pack in wanted.keys.sorted() {
            let entries = wanted[pack]!.sorted { $0.offset < $1.offset }
            var start = 0
            while start < entries.count {
                var end = start + 1
                var rangeEnd = entries[start].offset + entries[start].length
                while end < entries.count, entries[end].offset <= rangeEnd + Self.mergeGap,
                      entries[end].offset + entries[end].length - entries[start].offset <= Self.maximumRange {
                    rangeEnd = max(rangeEnd, entries[end].offset + entries[end].length)
                    end += 1
                }
                let bytes = try range(of: packs[pack], from: entries[start].offset, to: rangeEnd)
                for entry in entries[start..<end] {
                    let at = Int(entry.offset - entries[start].offset)
                    try receive(Array(bytes[at..<(at + Int(entry.length))]))
                }
                start = end
            }
        }
    }

    /// Bytes `from..<to` of a pack blob, by one `Range` request (asked again from where it broke
    /// when the connection does).
    private func range(of pack: Descriptor, from: UInt64, to: UInt64) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(to - from))
        var attempt = 0
        while bytes.count < Int(to - from) {
            attempt += 1
            let first = from + UInt64(bytes.count)
            var headers = HTTPHeaders()
            headers.set("Range", "bytes=\(first)-\(to - 1)")
            requests += 1
            let (exchange, response) = try connection.send("GET", try connection.url("blobs/\(pack.digest)"), headers: headers)
            defer { exchange.cancel() }
            guard response.status == 206, (response.headers["Content-Range"] ?? "").hasPrefix("bytes \(first)-\(to - 1)/") else {
                if response.status == 404 { throw NoBlockIndex(reason: "pack \(pack.digest.short) is gone from the registry") }
                if response.status == 200 || response.status == 206 {
                    throw RegistryError("\(display): pack \(pack.digest.short): asked for bytes \(first)-\(to - 1), got '\((response.headers["Content-Range"] ?? "the whole blob").prefix(80))'")
                }
                throw connection.unexpected(exchange, response, "pack \(pack.digest.short)")
            }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
            defer { buffer.deallocate() }
            do {
                while true {
                    let count = try exchange.read(into: buffer)
                    if count == 0 { break }
                    guard bytes.count + count <= Int(to - from) else {
                        throw RegistryError("\(display): pack \(pack.digest.short): more bytes than the range asked for")
                    }
                    bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    bytesFetched += UInt64(count)
                }
            } catch let error as HTTPError where RegistryConnection.isTransient(error) && attempt < connection.session.options.attempts {
                usleep(useconds_t(250_000 * min(attempt, 8)))
                continue
            } catch let error as HTTPError {
                throw RegistryError("\(display): pack \(pack.digest.short): \(error.message)")
            }
            guard bytes.count == Int(to - from) else {
                throw RegistryError("\(display): pack \(pack.digest.short): the range ended after \(bytes.count) of \(to - from) bytes")
            }
        }
        return bytes
    }
}
