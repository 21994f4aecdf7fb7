import ArgumentParser
import Foundation
import LStoreCompression
import LStoreImage
import LStoreSquashFS
import LStoreStore
import LStoreTar
import LStoreTree

struct CheckoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkout",
        abstract: "Write a commit's tree out: as a directory, a pax tarball or a squashfs image.",
        discussion: """
            --dir writes into a new or empty directory only. --squashfs uses the store's codec, level and \
            block size unless told otherwise; then each stored block is copied into the image as it is. \
            With --delta-from, the image holds only what differs from BASE, in overlayfs form (whiteouts \
            for deleted entries, opaque directories): mounted over BASE's image, it shows the whole tree.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "A ref or commit id.")
    var revision: String

    @Option(help: ArgumentHelp("Write the tree into this new or empty directory.", valueName: "dir"))
    var dir: String?

    @Option(help: ArgumentHelp("Write a pax tarball with xattrs (.gz, .zst, .xz compress it).", valueName: "file"))
    var tar: String?

    @Option(help: ArgumentHelp("Write a squashfs image.", valueName: "file"))
    var squashfs: String?

    @Option(name: .customLong("delta-from"), help: ArgumentHelp(
        "With --squashfs: write only what differs from this ref or commit, as an overlayfs upper layer.", valueName: "base"))
    var deltaFrom: String?

    @OptionGroup var imageOptions: ImageOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard [dir, tar, squashfs].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --dir, --tar or --squashfs")
        }
        if deltaFrom != nil && squashfs == nil { throw ValidationError("--delta-from goes with --squashfs") }
    }

    func run() throws {
        let store = try storeOptions.open()
        let commit = try store.commit(try store.resolve(revision))
        var root = try store.loadTree(commit.tree)
        if let deltaFrom {
            let base = try store.commit(try store.resolve(deltaFrom))
            root = OverlayDelta(base: try store.loadTree(base.tree), child: root).root
        }
        let bar = ProgressBar("checking out", total: commit.entries, bytes: false)
        defer { bar.finish() }
        if let squashfs {
            let options = try imageOptions.squashFSOptions(store: store, time: commit.time)
            let result = try writeImageReporting(root, source: StoreBlockSource(store: store), options: options, to: squashfs)
            bar.finish()
            if output.json { try printJSON(imageSummary(result, path: squashfs, options: options)) }
        } else if let dir {
            try Restorer(writer: StoreFileReader(store: store), progress: { bar.update(UInt64($0)) }).restore(root, into: dir)
        } else if let tar {
            let reader = StoreFileReader(store: store)
            let temporary = tar + ".lstore-tmp"
            do {
                let skipped = try TarWriter(progress: { bar.update(UInt64($0)) }).write(root, to: temporary, named: tar) { file, emit in
                    try reader.stream(file, emit: emit)
                }
                if let example = skipped.first {
                    bar.finish()
                    note("lstore: warning: \(skipped.count) socket(s) left out: a tarball cannot hold sockets (e.g. /\(example.printable))")
                }
                guard rename(temporary, tar) == 0 else { throw FileError(path: tar, operation: "rename", errno: errno) }
            } catch {
                unlink(temporary)
                throw error
            }
        }
    }
}
