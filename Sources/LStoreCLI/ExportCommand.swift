import ArgumentParser
import Foundation
import LStoreOCI
import LStoreStore

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a commit as a container image: one layer per commit of its chain that changed the tree.",
        discussion: """
            IMAGE is oci:DIR[:TAG] (an OCI image layout, made or updated: index.json names the image TAG), \
            oci-archive:FILE[:TAG] (such a layout as a tar) or docker-archive:FILE[:NAME[:TAG]] (what \
            `docker save` writes, for `docker load`). The path ends at the first ':'. The bottom commit of \
            REV's first-parent chain is one layer, its whole tree; each later commit whose tree differs from \
            its parent's is one more, holding the changes with OCI whiteouts. The config takes the platform, \
            Env, Entrypoint, Cmd, WorkingDir, User and Labels an import recorded in REV (spec/oci.md). The \
            same commit gives the same bytes on every machine, at any thread count. The manifest's digest \
            is printed.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "A ref or commit id.")
    var revision: String

    @Argument(help: "The image: oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME[:TAG]].")
    var image: String

    @Option(help: ArgumentHelp("The manifest: oci or docker (schema 2).", valueName: "oci|docker"))
    var format = "oci"

    @Option(help: ArgumentHelp("Layer compression (default gzip; docker-archive layers are plain tars).", valueName: "gzip|zstd|none"))
    var compression: String?

    @Option(help: "Worker threads that compress (default: every core); the output is the same at any count.")
    var threads: Int?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ExportFormat(rawValue: format) != nil else { throw ValidationError("--format '\(format)' is not oci or docker") }
        if let compression, LayerCompression(rawValue: compression) == nil {
            throw ValidationError("--compression '\(compression)' is not gzip, zstd or none")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        let target = try ExportTarget(parsing: image)
        if target.kind == .dockerArchive, let compression, compression != "none" {
            throw CommandError("\(image): docker-archive layers are plain tars; --compression \(compression) does not apply")
        }
        let store = try storeOptions.open()
        let commit = try store.resolve(revision)
        let options = ExportOptions(format: ExportFormat(rawValue: format)!, compression: compression.flatMap(LayerCompression.init) ?? .gzip,
                                    threads: threads ?? availableCores())
        let result = try ImageExporter(store: store, options: options).export(commit, to: target)
        let image = result.image
        if !image.skippedSockets.isEmpty {
            note("lstore: left out \(image.skippedSockets.count) socket(s), which a tar cannot hold: \(image.skippedSockets.prefix(3).joined(separator: ", "))")
        }
        if output.json {
            try printJSON([
                "manifest": image.manifestDigest.description,
                "mediaType": image.manifestMediaType,
                "config": image.config.digest.description,
                "layers": image.layers.map { ["digest": $0.digest.description, "size": $0.size, "mediaType": $0.mediaType] as [String: Any] },
                "diffIDs": image.diffIDs.map(\.description),
            ] as [String: Any])
        } else {
            print(image.manifestDigest.description)
        }
    }
}
