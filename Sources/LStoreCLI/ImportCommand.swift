import ArgumentParser
import Foundation
import LStoreOCI
import LStoreStore

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a container image: one commit per layer, and the image's commit on top.",
        discussion: """
            IMAGE is docker-archive:PATH[:TAG] (what `docker save` writes), oci:DIR[:TAG|@DIGEST] (an OCI \
            image layout) or oci-archive:PATH[:TAG|@DIGEST]. Each layer becomes a commit whose parent is \
            the layer below, so images that share base layers share commits; the image's commit records \
            its digest, config and source (spec/oci.md). Every blob is checked against its digest. The \
            ref moves last, to the image's commit, whose id is printed.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "The image: docker-archive:PATH[:TAG], oci:DIR[:TAG|@DIGEST] or oci-archive:PATH[:TAG|@DIGEST].")
    var image: String

    @Option(help: "The ref to point at the image's commit.")
    var ref: String

    @OptionGroup var imageOptions: ImagePullOptions

    func validate() throws {
        try validateRefName(ref)
    }

    func run() throws {
        let store = try storeOptions.open()
        let reference = try ImageReference(parsing: image)
        let environment = ProcessInfo.processInfo.environment
        var options = try imageOptions.importOptions()
        if let epoch = environment["SOURCE_DATE_EPOCH"], !epoch.isEmpty {
            guard let seconds = Int64(epoch) else { throw CommandError("SOURCE_DATE_EPOCH '\(epoch)' is not a number") }
            options.time = seconds
        }
        let current = try store.ref(ref)
        let writer = try StoreWriter(store: store)
        let ingest = Ingest(writer: writer, threads: imageOptions.threads ?? availableCores())
        let result = try Importer(options: options).run(reference, ingest: ingest)
        try writer.finish()
        try store.updateRef(ref, to: result.imageCommit, expecting: current.map { .value($0) } ?? .absent,
                            message: "import: \(reference)")
        print(result.imageCommit.hex)
    }
}
