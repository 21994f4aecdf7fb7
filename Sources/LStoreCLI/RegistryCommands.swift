import ArgumentParser
import Foundation
import LStoreOCI
import LStoreStore

/// How `docker://` pulls and pushes reach a registry.
struct RegistryCommandOptions: ParsableArguments {
    @Flag(help: "docker://: allow plain HTTP to a registry off loopback, and do not check its certificate.")
    var insecure = false

    /// The registry options these flags, `--ca-file`, `--timeout` and the environment give.
    func options(peer: PeerOptions) throws -> RegistryOptions {
        let environment = ProcessInfo.processInfo.environment
        var options = try RegistryOptions(environment: environment)
        options.insecure = insecure
        options.caFile = peer.caFile ?? environment["LSTORE_CA"].flatMap { $0.isEmpty ? nil : $0 }
        options.stallTimeout = peer.timeout
        return options
    }
}

/// What choosing an image from an index and taking part of it need (import and docker:// pulls).
struct ImagePullOptions: ParsableArguments {
    @Option(help: ArgumentHelp("An image's directory to take as the root filesystem.", valueName: "dir"))
    var rootfs: String?

    @Option(help: ArgumentHelp("The platform to choose from an index (default: this machine's).", valueName: "os/arch[/variant]"))
    var platform: String?

    @Option(help: "Worker threads (default: every core).")
    var threads: Int?

    func validate() throws {
        if let platform, Platform(parsing: platform) == nil {
            throw ValidationError("--platform '\(platform)' is not os/arch or os/arch/variant")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func importOptions() throws -> ImportOptions {
        var options = ImportOptions()
        if let platform { options.platform = Platform(parsing: platform)! }
        options.rootfs = rootfs
        options.limits = try ImportLimits(environment: ProcessInfo.processInfo.environment)
        return options
    }
}

/// How `docker://` pushes write the image.
struct ImagePushOptions: ParsableArguments {
    @Option(help: ArgumentHelp("docker://: the manifest's media types: oci (default) or docker (schema 2).", valueName: "oci|docker"))
    var format = "oci"

    @Option(help: ArgumentHelp("docker://: the layers' compression: gzip (default), zstd or none.", valueName: "gzip|zstd|none"))
    var compression = "gzip"

    @Flag(name: .customLong("no-block-index"), help: "docker://: push the image alone, without lstore's block index beside it.")
    var noBlockIndex = false

    func validate() throws {
        guard ["oci", "docker"].contains(format) else { throw ValidationError("--format '\(format)': oci or docker") }
        guard ["gzip", "zstd", "none"].contains(compression) else { throw ValidationError("--compression '\(compression)': gzip, zstd or none") }
    }
}

/// `lstore pull docker://…`: the image's commits, then the ref moved to its image commit.
func pullImage(_ text: String, ref: String, store: Store, registry: RegistryCommandOptions, peer: PeerOptions,
               image: ImagePullOptions, byLayers: Bool, json: Bool) throws {
    let reference = try RegistryReference(parsing: text)
    let current = try store.ref(ref)
    let writer = try StoreWriter(store: store)
    let ingest = Ingest(writer: writer, threads: image.threads ?? availableCores())
    var puller = RegistryPuller(reference: reference, options: try registry.options(peer: peer), importOptions: try image.importOptions())
    puller.byLayers = byLayers
    let started = Date()
    let result = try puller.run(ingest: ingest)
    try writer.finish()
    if current != result.imageCommit {
        try store.updateRef(ref, to: result.imageCommit, expecting: current.map { .value($0) } ?? .absent, message: "pull: \(reference)")
    }
    let seconds = Date().timeIntervalSince(started)
    if json {
        return try printJSON([
            "ref": ref, "commit": result.imageCommit.hex, "image": reference.description, "upToDate": result.upToDate,
            "layers": result.layerCommits.count, "reusedLayers": result.reusedLayers, "fetchedLayers": result.fetchedLayers,
            "bytesFetched": result.bytesFetched, "seconds": (seconds * 1000).rounded() / 1000,
            "by": result.upToDate ? "none" : result.byBlocks ? "blocks" : "layers", "imageBytes": result.imageBytes,
            "objectsFetched": result.objectsFetched, "rangeRequests": result.rangeRequests,
            "layersBecause": result.layersBecause ?? "",
        ] as [String: Any])
    }
    if result.upToDate {
        note("\(reference): up to date")
    } else if result.byBlocks {
        note("\(reference): by blocks, \(result.objectsFetched) object(s) fetched (\(humanBytes(result.bytesFetched)) of the image's "
             + "\(humanBytes(result.imageBytes)), \(result.rangeRequests) range request(s)), \(result.reusedLayers) layer(s) already here, in "
             + String(format: "%.2f s", seconds))
    } else {
        note("\(reference): by layers\(result.layersBecause.map { " (\($0))" } ?? ""), \(result.fetchedLayers) layer(s) fetched "
             + "(\(humanBytes(result.bytesFetched)) of the image's \(humanBytes(result.imageBytes))), "
             + "\(result.reusedLayers) already here, in " + String(format: "%.2f s", seconds))
    }
    print(result.imageCommit.hex)
}

/// `lstore push docker://… REV`: the commit as an image, its blobs then its manifest.
func pushImage(_ revision: String, to text: String, store: Store, registry: RegistryCommandOptions, peer: PeerOptions,
               image: ImagePushOptions, json: Bool) throws {
    let reference = try RegistryReference(parsing: text)
    let commit = try store.resolve(revision)
    let export = ExportOptions(format: ExportFormat(rawValue: image.format)!, compression: LayerCompression(rawValue: image.compression)!,
                               threads: availableCores())
    let started = Date()
    let pusher = RegistryPusher(reference: reference, options: try registry.options(peer: peer))
    let result = try pusher.push(commit, from: store, export: export)
    let blocks = image.noBlockIndex ? nil : try pusher.pushBlockIndex(commit, from: store, image: result.image)
    let seconds = Date().timeIntervalSince(started)
    let push = result.push
    if !result.image.skippedSockets.isEmpty {
        note("lstore: left out \(result.image.skippedSockets.count) socket(s), which a tar cannot hold")
    }
    if json {
        return try printJSON([
            "image": reference.description, "commit": commit.hex, "manifest": result.image.manifestDigest.description,
            "mediaType": result.image.manifestMediaType, "layers": result.image.layers.count, "present": push.present,
            "mounted": push.mounted, "uploaded": push.uploaded, "bytesUploaded": push.bytesUploaded,
            "seconds": (seconds * 1000).rounded() / 1000,
            "blockIndex": blocks.map { $0.manifestDigest.description } ?? "", "packs": blocks?.packs ?? 0,
            "packsUploaded": blocks?.blobs.uploaded ?? 0, "packBytesUploaded": blocks?.blobs.bytesUploaded ?? 0,
        ] as [String: Any])
    }
    if let blocks {
        note("\(reference): block index \(blocks.manifestDigest.short): \(blocks.blobs.uploaded) blob(s) uploaded "
             + "(\(humanBytes(UInt64(blocks.blobs.bytesUploaded)))), \(blocks.blobs.present) already there"
             + (blocks.referrersAPI ? "" : "; listed under the tag \(BlockIndex.fallbackTag(result.image.manifestDigest))"))
    }
    note("\(reference): \(push.uploaded) blob(s) uploaded (\(humanBytes(UInt64(push.bytesUploaded)))), \(push.mounted) mounted, "
         + "\(push.present) already there, in " + String(format: "%.2f s", seconds))
    print(result.image.manifestDigest.description)
}

struct LoginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Check credentials for a registry and record them in the Docker configuration.",
        discussion: """
            The credentials are checked against the registry (through its token server when it has one), then \
            written to $DOCKER_CONFIG/config.json (default ~/.docker/config.json) under "auths", as docker login \
            does; docker://  pulls and pushes read them there, and credHelpers and credsStore too.
            """)

    @Argument(help: "The registry: HOST[:PORT], or docker.io.") var registry: String
    @Option(name: [.short, .customLong("username")], help: "The user name.") var username: String
    @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input (its first line).")
    var passwordStdin = false
    @OptionGroup var registryOptions: RegistryCommandOptions
    @OptionGroup var peerOptions: PeerOptions

    func validate() throws {
        guard passwordStdin else { throw ValidationError("--password-stdin is needed: the password is read from standard input") }
        guard !username.isEmpty, !username.contains(":") else { throw ValidationError("--username '\(username)': not a user name") }
    }

    func run() throws {
        let host = try RegistryReference(parsing: registry + "/x").registry
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let password = String(decoding: input, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !password.isEmpty else { throw CommandError("login \(host): no password on standard input") }
        let credentials = RegistryCredentials(username: username, password: password)
        let options = try registryOptions.options(peer: peerOptions)
        try RegistryPusher.checkLogin(registry: host, credentials: credentials, options: options)
        try options.dockerConfig.store(credentials, for: host)
        print("logged in to \(host) as \(username) (\(options.dockerConfig.path))")
    }
}

struct LogoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout", abstract: "Forget the credentials recorded for a registry.")

    @Argument(help: "The registry: HOST[:PORT], or docker.io.") var registry: String

    func run() throws {
        let host = try RegistryReference(parsing: registry + "/x").registry
        let config = DockerConfig()
        guard try config.remove(registry: host) else { throw CommandError("logout \(host): no credentials recorded in \(config.path)") }
        print("logged out of \(host)")
    }
}
