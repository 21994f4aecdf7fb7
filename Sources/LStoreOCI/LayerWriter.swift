import LStoreStore
import LStoreTree

/// Writes one image layer's tar (image-spec `layer.md`) from a tree in the store's form: a whole
/// tree for the bottom layer, or `OverlayDelta`'s overlayfs form of a commit over its parent,
/// turned into OCI form on the way:
///
/// - a character device 0/0 that the child tree does not hold is a deletion: an empty file
///   `.wh.NAME` (mode 0644, owner 0:0, time 0) in its place;
/// - a directory marked `trusted.overlay.opaque=y` by the delta is written with an empty file
///   `.wh..wh..opq` among its entries (same fields), and no `trusted.overlay.*` xattr is written for
///   any entry.
///
/// Entries are written depth-first, parents before children, each directory's entries in the
/// order of their names' bytes in the tar (so `.wh.NAME` sorts as that name); the root is `./`,
/// directories end in `/`, other paths have no leading `./`. A hardlink is a tar hardlink to the
/// set's first member in that order, with that member's mode, owner, time and xattrs, and size 0.
/// Sockets cannot be held by a tar: they are left out and counted.
struct LayerWriter {
    /// What a layer writer left out.
    struct Report {
        var sockets: [[UInt8]] = []
        var entries = 0
    }

    static let whiteoutPrefix = Array(".wh.".utf8)
    static let opaqueMarker = Array(".wh..wh..opq".utf8)
    static let overlayPrefix = Array("trusted.overlay.".utf8)

    let reader: StoreFileReader

    /// Writes `layer` as a tar through `tar`. `child` is the commit's whole tree (it tells a
    /// deletion from a device 0/0 it holds); nil when `layer` is the whole tree.
    func write(_ layer: Node, child: Node?, to tar: TarStreamWriter, display: String) throws -> Report {
        var report = Report()
        let holders = hardlinkHolders(layer)
        try writeEntry(layer, path: [], child: child, holders: holders, tar: tar, report: &report, display: display)
        try tar.finish()
        return report
    }

    /// The metadata of each hardlink set's first member, by its path.
    private func hardlinkHolders(_ root: Node) -> [[UInt8]: Metadata] {
        var targets: Set<[UInt8]> = []
        root.walk { _, node in
            if case .hardlink(let target) = node.content { targets.insert(target) }
        }
        var holders: [[UInt8]: Metadata] = [:]
        for target in targets {
            if let node = root.lookup(target) { holders[target] = node.metadata }
        }
        return holders
    }

    private func writeEntry(_ node: Node, path: [UInt8], child: Node?, holders: [[UInt8]: Metadata], tar: TarStreamWriter,
                            report: inout Report, display: String) throws {
        report.entries += 1
        let metadata = node.metadata
        let xattrs = metadata.xattrs.filter { !$0.name.starts(with: Self.overlayPrefix) }
        var header = TarStreamWriter.Header(path: path, type: .regular, permissions: metadata.permissions, uid: metadata.uid,
                                            gid: metadata.gid, mtime: metadata.mtime, xattrs: xattrs)
        switch node.content {
        case .directory(let directory):
            header.type = .directory
            header.path = path.isEmpty ? Array("./".utf8) : path + [UInt8(ascii: "/")]
            try tar.writeHeader(header)
            var entries: [(name: [UInt8], node: Node?)] = []
            if child != nil, metadata.xattrs.contains(OverlayDelta.opaque) { entries.append((Self.opaqueMarker, nil)) }
            for entry in directory.children {
                let entryPath = path.isEmpty ? entry.name : path + [UInt8(ascii: "/")] + entry.name
                if entry.name.starts(with: Self.whiteoutPrefix) {
                    throw ExportError("\(display): '\(entryPath.printable)' has a name that an OCI layer reads as a whiteout")
                }
                if let child, case .device(0, 0) = entry.content, entry.metadata.kind == .characterDevice, child.lookup(entryPath) == nil {
                    entries.append((Self.whiteoutPrefix + entry.name, nil))
                } else {
                    entries.append((entry.name, entry))
                }
            }
            entries.sort { $0.name.lexicographicallyPrecedes($1.name) }
            for entry in entries {
                let entryPath = path.isEmpty ? entry.name : path + [UInt8(ascii: "/")] + entry.name
                if let next = entry.node {
                    try writeEntry(next, path: entryPath, child: child, holders: holders, tar: tar, report: &report, display: display)
                } else {
                    report.entries += 1
                    try tar.writeHeader(TarStreamWriter.Header(path: entryPath, type: .regular))
                }
            }
            return
        case .regular(let file):
            header.size = file.size
            try tar.writeHeader(header)
            var written: UInt64 = 0
            try reader.stream(file) { bytes in
                try tar.writeData(bytes)
                written += UInt64(bytes.count)
            }
            guard written == file.size else {
                throw ExportError("\(display): '\(path.printable)' gave \(written) bytes, not its \(file.size)")
            }
            try tar.endData(size: file.size)
            return
        case .symlink(let target):
            header.type = .symlink
            header.linkName = target
        case .device(let major, let minor):
            header.type = metadata.kind == .blockDevice ? .blockDevice : .characterDevice
            header.deviceMajor = major
            header.deviceMinor = minor
        case .none:
            if metadata.kind == .socket {
                report.sockets.append(path)
                report.entries -= 1
                return
            }
            header.type = .fifo
        case .hardlink(let target):
            let holder = holders[target] ?? metadata
            header = TarStreamWriter.Header(path: path, type: .hardlink, permissions: holder.permissions, uid: holder.uid,
                                            gid: holder.gid, mtime: holder.mtime, linkName: target,
                                            xattrs: holder.xattrs.filter { !$0.name.starts(with: Self.overlayPrefix) })
        }
        try tar.writeHeader(header)
    }
}
