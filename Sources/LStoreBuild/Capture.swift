import LStoreStore
import LStoreTree

/// What a RUN changed, read from its overlay's upper directory into the tree (spec/build.md §5):
/// overlayfs whiteouts and opaque directories become deletions (`ChangeSet`, overlay form, as OCI
/// layers use it in theirs), `trusted.overlay.*` xattrs are dropped, times newer than `epoch`
/// are set to it, and files' data goes into the store.
struct UpperCapture {
    let epoch: Int64

    /// Applies the upper directory `upper` onto `root`, in place.
    func apply(upper: String, onto root: Node, ingest: Ingest) throws {
        let pipeline = ingest.startFiles()
        let scanned: ScannedTree
        do {
            scanned = try Scanner(onFile: { pipeline.submit($0) }).scan(upper)
        } catch {
            try? pipeline.finish()
            throw error
        }
        try pipeline.finish()
        let changes = ChangeSet(root: root, form: .overlay)
        var failure: Error?
        scanned.root.walk { path, node in
            guard failure == nil else { return }
            let components = path.split(separator: UInt8(ascii: "/")).map(Array.init)
            var metadata = node.metadata
            var content = node.content
            // overlayfs may make every whiteout a link of one inode: each is a deletion still.
            if case .hardlink(let target) = node.content, let holder = scanned.root.lookup(target),
               holder.metadata.kind == .characterDevice, case .device(0, 0) = holder.content {
                metadata = holder.metadata
                content = holder.content
            }
            if case .hardlink = content {} else {
                metadata.mtime = clamped(metadata.mtime, lower: root.lookup(path))
            }
            content = entryContent(content)
            do {
                try changes.apply(components: components, metadata: metadata, content: content)
            } catch {
                failure = error
            }
        }
        if let failure { throw BuildError("the RUN's changes: \(failure)") }
        try changes.finish()
    }

    /// `time`, no later than the epoch. A copied-up entry that kept its lower entry's second has
    /// its nanoseconds back: the lower image holds whole seconds only.
    func clamped(_ time: Timestamp, lower: Node?) -> Timestamp {
        if time.seconds >= epoch && !(time.seconds == epoch && time.nanoseconds == 0) {
            return Timestamp(seconds: epoch)
        }
        if let lower, time.nanoseconds == 0, lower.metadata.mtime.seconds == time.seconds {
            return lower.metadata.mtime
        }
        return time
    }
}

/// A scanned entry's content as a change set takes it: a directory empty (its entries come after
/// it), a regular file without where the scan found it.
func entryContent(_ content: Content) -> Content {
    switch content {
    case .directory: return .directory(Directory())
    case .regular(var file):
        file.sourcePath = nil
        file.stamp = nil
        return .regular(file)
    default: return content
    }
}
