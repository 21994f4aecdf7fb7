import Dispatch
import LStoreCompression
import LStoreTree

/// Encodes the inode and directory tables while the data is still being written: the writer hands
/// over the layouts of the files whose data is placed, in file order, and the encoder, on a serial
/// queue of its own, encodes every inode up to the first file it has no layout for. The inodes are
/// encoded in the same order, with the same results, as if all came at the end.
///
/// Everything but `encode`, `finish` and `wait` belongs to the queue until `finish` returns.
final class InodeEncoder: @unchecked Sendable {
    /// Files handed over at once, at the least (but for the last hand-over).
    static let filesPerHandOver = 256

    let plan: TreePlan
    let compressor: Compressor
    private(set) var report = SquashFSReport()
    private(set) var ids = IdTableWriter()
    let xattrs: XattrTableWriter
    private(set) var references: [MetadataReference] = []
    private(set) var inodeTypes: [String: Int] = [:]
    private let inodeTable: MetadataWriter
    private let directoryTable: MetadataWriter
    /// The layouts handed over so far, by file number, and the file each duplicate shares data with.
    private var layouts: [FileLayout] = []
    private var duplicateOf: [Int] = []
    private var next = 0
    private var failure: (any Error)?
    private let queue = DispatchQueue(label: "lstore.squashfs.inodes")

    init(plan: TreePlan, compression: CompressionSpec) throws {
        self.plan = plan
        compressor = try Compressor(compression)
        xattrs = XattrTableWriter(compressor: compressor)
        inodeTable = MetadataWriter(compressor: compressor)
        directoryTable = MetadataWriter(compressor: compressor)
        references.reserveCapacity(plan.inodes.count)
        layouts.reserveCapacity(plan.files.count)
        duplicateOf.reserveCapacity(plan.files.count)
    }

    /// Hands over the next files' layouts (final: their data is placed) and the earlier file each
    /// shares its data with (-1 for none).
    func encode(layouts placed: ArraySlice<FileLayout>, duplicateOf shared: ArraySlice<Int>) {
        let placed = Array(placed), shared = Array(shared)
        queue.async { [self] in
            guard failure == nil else { return }
            layouts.append(contentsOf: placed)
            duplicateOf.append(contentsOf: shared)
            do {
                try encodeReady()
            } catch {
                failure = error
            }
        }
    }

    /// Waits for the queue; throws what encoding threw; returns the finished tables.
    func finish() throws -> (inodes: MetadataWriter, directories: MetadataWriter) {
        wait()
        if let failure { throw failure }
        precondition(next == plan.inodes.count, "every file's layout was handed over")
        try inodeTable.finish()
        try directoryTable.finish()
        return (inodeTable, directoryTable)
    }

    /// Waits for what was handed over to be encoded (or to fail).
    func wait() {
        queue.sync {}
    }

    /// Encodes the inodes in order up to the first regular file without a layout.
    private func encodeReady() throws {
        while next < plan.inodes.count {
            let file = plan.inodes[next].file
            guard file < layouts.count else { return }
            let layout: FileLayout? = file >= 0 ? layouts[duplicateOf[file] >= 0 ? duplicateOf[file] : file] : nil
            let bytes = try encodeInode(next, layout: layout, directoryTable: directoryTable)
            references.append(inodeTable.position)
            if let type = InodeType(rawValue: UInt16(bytes[0]) | UInt16(bytes[1]) << 8) {
                inodeTypes["\(type)", default: 0] += 1
            }
            try inodeTable.append(bytes)
            next += 1
        }
    }

    // MARK: - Inodes

    private func encodeInode(_ index: Int, layout: FileLayout?, directoryTable: MetadataWriter) throws -> [UInt8] {
        let inode = plan.inodes[index]
        let metadata = inode.node.metadata
        let path = inode.path
        let time = metadata.mtime
        var seconds = time.seconds
        if time.nanoseconds != 0 { report.note(.subsecondMtime, path: path, detail: "mtime \(time)") }
        if seconds < 0 {
            report.note(.mtimeBefore1970, path: path, detail: "mtime \(time)")
            seconds = 0
        } else if seconds > Int64(UInt32.max) {
            report.note(.mtimeAfter2106, path: path, detail: "mtime \(time)")
            seconds = Int64(UInt32.max)
        }
        var kept: [Xattr] = []
        for xattr in metadata.xattrs {
            if XattrTableWriter.split(xattr.name) != nil {
                kept.append(xattr)
            } else {
                report.note(.xattrNamespace, path: path, detail: xattr.name.printable)
            }
        }
        let xattr = kept.isEmpty ? Format.noXattr : try xattrs.id(for: kept)
        let hasXattrs = xattr != Format.noXattr

        var header = InodeHeader(type: .directory, permissions: metadata.permissions & 0o7777,
                                 uid: try ids.index(of: metadata.uid), gid: try ids.index(of: metadata.gid),
                                 mtime: UInt32(seconds), number: UInt32(index + 1))
        var out = ByteWriter(capacity: 64)
        let display = "/" + path.printable

        switch inode.node.content {
        case .directory:
            var entries: [ListingEntry] = []
            entries.reserveCapacity(inode.children.count)
            for child in inode.children {
                let childIndex = plan.indexOf[ObjectIdentifier(child)]!
                entries.append(ListingEntry(name: child.name, number: UInt32(childIndex + 1),
                                            reference: references[childIndex],
                                            type: Self.basicType(of: plan.inodes[childIndex].node)))
            }
            let listing = try DirectoryListingWriter.write(entries, to: directoryTable)
            let size = listing.size + Format.directorySizeBias
            guard let block = UInt32(exactly: listing.start.block) else {
                throw SquashFSError.invalidTree("the directory table exceeds 4 GiB")
            }
            if hasXattrs || size > Int(UInt16.max) || DirectoryListingWriter.isLarge(entries) {
                guard listing.index.count <= Int(UInt16.max), let size32 = UInt32(exactly: size) else {
                    throw SquashFSError.invalidTree("\(display): the directory is too large")
                }
                header.type = .extendedDirectory
                header.encode(into: &out)
                out.u32(inode.nlink)
                out.u32(size32)
                out.u32(block)
                out.u32(inode.parent)
                out.u16(UInt16(listing.index.count))
                out.u16(UInt16(listing.start.offset))
                out.u32(xattr)
                for entry in listing.index {
                    out.u32(entry.offset)
                    out.u32(entry.block)
                    out.u32(UInt32(entry.name.count - 1))
                    out.append(entry.name)
                }
            } else {
                header.type = .directory
                header.encode(into: &out)
                out.u32(block)
                out.u32(inode.nlink)
                out.u16(UInt16(size))
                out.u16(UInt16(listing.start.offset))
                out.u32(inode.parent)
            }

        case .regular(let file):
            let layout = layout ?? FileLayout()
            if hasXattrs || inode.nlink > 1 || layout.sparse > 0 || file.size > UInt64(UInt32.max)
                || layout.start > UInt64(UInt32.max) {
                header.type = .extendedFile
                header.encode(into: &out)
                out.u64(layout.start)
                out.u64(file.size)
                out.u64(Self.sparseBytes(layout.sparse, size: file.size))
                out.u32(inode.nlink)
                out.u32(layout.fragment)
                out.u32(layout.fragmentOffset)
                out.u32(xattr)
            } else {
                header.type = .file
                header.encode(into: &out)
                out.u32(UInt32(layout.start))
                out.u32(layout.fragment)
                out.u32(layout.fragmentOffset)
                out.u32(UInt32(file.size))
            }
            for size in layout.sizes { out.u32(size) }

        case .symlink(let target):
            guard !target.isEmpty, target.count <= Limits.symlinkTargetLength, !target.contains(0) else {
                throw SquashFSError.invalidTree("\(display): a symlink target of \(target.count) bytes")
            }
            header.type = hasXattrs ? .extendedSymlink : .symlink
            header.encode(into: &out)
            out.u32(inode.nlink)
            out.u32(UInt32(target.count))
            out.append(target)
            if hasXattrs { out.u32(xattr) }

        case .device(let major, let minor):
            let type: InodeType
            switch metadata.kind {
            case .characterDevice: type = .characterDevice
            case .blockDevice: type = .blockDevice
            default: throw SquashFSError.invalidTree("\(display): device numbers on a \(metadata.kind)")
            }
            if !DeviceNumber.fits(major: major, minor: minor) {
                report.note(.deviceNumber, path: path, detail: "device \(major):\(minor)")
            }
            header.type = hasXattrs ? type.extended : type
            header.encode(into: &out)
            out.u32(inode.nlink)
            out.u32(DeviceNumber.encode(major: major, minor: minor))
            if hasXattrs { out.u32(xattr) }

        case .none:
            let type: InodeType
            switch metadata.kind {
            case .fifo: type = .fifo
            case .socket: type = .socket
            default: throw SquashFSError.invalidTree("\(display): a \(metadata.kind) without content")
            }
            header.type = hasXattrs ? type.extended : type
            header.encode(into: &out)
            out.u32(inode.nlink)
            if hasXattrs { out.u32(xattr) }

        case .hardlink:
            preconditionFailure("hardlinks are resolved to their holder in the plan")
        }
        return out.bytes
    }

    /// The sparse bytes an extended file inode records for `holes` bytes of holes in a file of
    /// `size` bytes: the holes, but one byte less than the size for a file that is all holes, as
    /// mksquashfs writes it. The kernel reports `(size - sparse + 511) / 512` blocks in use, so such
    /// a file shows one block, not none.
    static func sparseBytes(_ holes: UInt64, size: UInt64) -> UInt64 {
        holes > 0 && holes >= size ? size - 1 : holes
    }

    private static func basicType(of node: Node) -> InodeType {
        switch node.content {
        case .directory: .directory
        case .regular: .file
        case .symlink: .symlink
        case .device: node.metadata.kind == .blockDevice ? .blockDevice : .characterDevice
        case .none: node.metadata.kind == .socket ? .socket : .fifo
        case .hardlink: preconditionFailure("hardlinks are resolved to their holder in the plan")
        }
    }
}

/// The fields every inode starts with.
struct InodeHeader {
    var type: InodeType
    var permissions: UInt16
    var uid: UInt16
    var gid: UInt16
    var mtime: UInt32
    var number: UInt32

    func encode(into out: inout ByteWriter) {
        out.u16(type.rawValue)
        out.u16(permissions)
        out.u16(uid)
        out.u16(gid)
        out.u32(mtime)
        out.u32(number)
    }
}
