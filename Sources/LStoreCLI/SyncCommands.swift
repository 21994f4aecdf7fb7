import ArgumentParser
import Foundation
import LStoreStore
import LStoreSync
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve this store to other machines: over HTTP (--listen) or on standard input and output (--stdio, what ssh runs).",
        discussion: """
            Anyone who reaches the port may pull, and push unless --read-only or --token-file is given. \
            With --token-file (one token per line), pushes need a valid token; with --private, pulls too.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Option(help: ArgumentHelp("Listen on HOST:PORT (0.0.0.0:7070, [::]:7070, 127.0.0.1:0 for any free port).", valueName: "addr:port"))
    var listen: String?

    @Flag(help: "Serve one client on standard input and output.")
    var stdio = false

    @Option(name: .customLong("token-file"), help: ArgumentHelp("Tokens that may push (and, with --private, pull).", valueName: "file"))
    var tokenFile: String?

    @Flag(name: .customLong("read-only"), help: "Refuse every push.")
    var readOnly = false

    @Flag(name: .customLong("private"), help: "Ask for a token for pulls too.")
    var privatePulls = false

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("Serve HTTPS with this certificate chain (PEM).", valueName: "file"))
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("The private key of --tls-cert (PEM).", valueName: "file"))
    var tlsKey: String?

    @Option(name: .customLong("max-connections"), help: "Clients served at once; more are turned away.")
    var maxConnections = 32

    @Option(help: ArgumentHelp("Seconds a client may stay silent.", valueName: "seconds"))
    var timeout = 60.0

    func validate() throws {
        guard (listen != nil) != stdio else { throw ValidationError("give either --listen ADDR:PORT or --stdio") }
        if privatePulls && tokenFile == nil { throw ValidationError("--private needs --token-file") }
        if (tlsCertificate == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if stdio && tlsCertificate != nil { throw ValidationError("--stdio does not speak TLS (ssh encrypts)") }
        guard maxConnections >= 1, timeout > 0 else { throw ValidationError("--max-connections and --timeout must be positive") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        _ = try storeOptions.open()
        let tokens = try tokenFile.map { try ServePolicy.readTokens($0) } ?? []
        if tokenFile != nil && tokens.isEmpty { throw CommandError("\(tokenFile!): no token in it") }
        let policy = ServePolicy(tokens: tokens, readOnly: readOnly, privatePulls: privatePulls, trusted: stdio)
        let service = Service(storePath: storeOptions.path, policy: policy)
        if stdio {
            try serveStandardStreams(service)
            return
        }
        let tls = try tlsCertificate.map { try TLSContext(certificate: $0, key: tlsKey!) }
        let server = try HTTPServer(service: service, address: listen!, tls: tls, maxConnections: maxConnections, timeout: timeout)
        print("serving \(storeOptions.path) over \(tls == nil ? "HTTP" : "HTTPS") on port \(server.port)")
        fflush(nil)
        try server.run()
    }
}

struct RemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote", abstract: "Name the stores this one pulls from and pushes to.",
        subcommands: [Add.self, Remove.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Name a peer: http://HOST:PORT or ssh://[USER@]HOST[:PORT]/STORE.")
        @OptionGroup var storeOptions: StoreOptions
        @Argument var name: String
        @Argument var url: String
        @Option(name: .customLong("token-file"), help: ArgumentHelp("The token to present to this peer.", valueName: "file"))
        var tokenFile: String?

        func run() throws {
            _ = try storeOptions.open()
            let absolute = tokenFile.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
            try Remotes(storePath: storeOptions.path).add(Remote(name: name, url: url, tokenFile: absolute))
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Forget a remote.")
        @OptionGroup var storeOptions: StoreOptions
        @Argument var name: String

        func run() throws {
            _ = try storeOptions.open()
            try Remotes(storePath: storeOptions.path).remove(name)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every remote and its URL.")
        @OptionGroup var storeOptions: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            _ = try storeOptions.open()
            let remotes = try Remotes(storePath: storeOptions.path).list()
            if output.json {
                return try printJSON(remotes.map { ["name": $0.name, "url": $0.url, "tokenFile": $0.tokenFile ?? NSNull()] as [String: Any] })
            }
            for remote in remotes { print("\(remote.name)\t\(remote.url)") }
        }
    }
}

/// What pull and push share: the peer, the token, the output.
struct PeerOptions: ParsableArguments {
    @Option(name: .customLong("token-file"), help: ArgumentHelp("The token to present (default: the remote's, else $LSTORE_TOKEN).", valueName: "file"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("Seconds to wait for the peer before giving up.", valueName: "seconds"))
    var timeout = 60.0

    @Option(name: .customLong("ca-file"), help: ArgumentHelp("Certificates an https peer's may chain to (PEM; default: $LSTORE_CA, else the system's).", valueName: "file"))
    var caFile: String?

    /// Connects to `remote`: a remote's name or a URL.
    func connect(_ remote: String, storePath: String) throws -> Peer {
        signal(SIGPIPE, SIG_IGN)
        let named = remote.contains("://") ? nil : try Remotes(storePath: storePath).find(remote)
        if !remote.contains("://") && named == nil { throw SyncError.unknownRemote(remote) }
        let url = try RemoteURL(parsing: named?.url ?? remote)
        var token = ProcessInfo.processInfo.environment["LSTORE_TOKEN"]
        if let file = tokenFile ?? named?.tokenFile {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        }
        let environment = ProcessInfo.processInfo.environment["LSTORE_CA"]
        return try Peer(url: url, token: token, authorities: caFile ?? (environment?.isEmpty == false ? environment : nil), timeout: timeout)
    }
}

/// `SRC[:DST]`: one ref name, or two.
func splitRefPair(_ text: String) throws -> (String, String) {
    let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    let pair = (parts[0], parts.count > 1 ? parts[1] : parts[0])
    guard !pair.0.isEmpty, !pair.1.isEmpty else { throw ValidationError("'\(text)': expected REF or REF:OTHER") }
    return pair
}

func describe(_ report: TransferReport, verb: String, peer: Peer, json: Bool) throws {
    let kinds: [ObjectKind] = [.commit, .tree, .file, .block]
    if json {
        var objects: [String: Int] = [:]
        for kind in kinds { objects["\(kind)s"] = report.objects[kind] ?? 0 }
        return try printJSON([
            "ref": report.ref, "old": report.old?.hex ?? NSNull(), "new": report.new.hex, "upToDate": report.upToDate,
            "objects": objects, "storedBytes": report.storedBytes, "blockBytes": report.blockBytes, "wireBytes": report.wireBytes,
            "seconds": (report.seconds * 1000).rounded() / 1000, "remote": "\(peer.url)",
        ] as [String: Any])
    }
    if report.upToDate {
        print("\(report.ref) is up to date at \(report.new.short)")
        return
    }
    let counts = kinds.map { "\(report.objects[$0] ?? 0) \($0)s" }.joined(separator: ", ")
    print("\(verb) \(report.ref): \(report.old?.short ?? "(new)") → \(report.new.short): \(counts), "
          + "\(humanBytes(report.storedBytes)) of objects, \(humanBytes(report.wireBytes)) on the wire in "
          + String(format: "%.2f s", report.seconds))
}

struct PullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Fetch a ref from a peer with every layer under it that this store lacks.",
        discussion: """
            REF:LOCAL stores it under another local name. Only objects this store lacks cross the network; \
            each is checked against its SHA-256 before the store takes it, and the local ref moves last, \
            only forward unless --force. A pull that was interrupted, run again, does not fetch again what had arrived.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A remote's name or a URL, or docker://[HOST/]NAME[:TAG|@DIGEST] for an image in a registry.") var remote: String
    @Argument(help: ArgumentHelp("The peer's ref, and optionally the local name (not for docker://).", valueName: "ref[:local]")) var ref: String?
    @Option(name: .customLong("ref"), help: ArgumentHelp("docker://: the local ref to point at the image's commit.", valueName: "name"))
    var imageRef: String?
    @Flag(help: "Move the local ref even when the pulled commit does not descend from it.") var force = false
    @Flag(help: "docker://: fetch whole layers even when the image has a block index.") var layers = false
    @Option(name: .customLong("pack-size"), help: ArgumentHelp("Make what arrived durable every SIZE of objects (an interrupted pull keeps it).", valueName: "size"))
    var packSize = "64M"
    @OptionGroup var peerOptions: PeerOptions
    @OptionGroup var registryOptions: RegistryCommandOptions
    @OptionGroup var imageOptions: ImagePullOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard let size = parseSize(packSize), size > 0 else { throw ValidationError("invalid --pack-size '\(packSize)'") }
        if remote.hasPrefix("docker://") {
            guard ref == nil else { throw ValidationError("docker:// takes no REF argument; name the local ref with --ref") }
            guard let imageRef else { throw ValidationError("docker:// needs --ref NAME: the local ref to point at the image") }
            try validateRefName(imageRef)
            return
        }
        guard imageRef == nil else { throw ValidationError("--ref is for docker:// images; a peer's ref is the REF argument") }
        guard let ref else { throw ValidationError("missing REF: the peer's ref to pull") }
        let (remoteRef, localRef) = try splitRefPair(ref)
        try validateRefName(remoteRef)
        try validateRefName(localRef)
    }

    func run() throws {
        if remote.hasPrefix("docker://") {
            return try pullImage(remote, ref: imageRef!, store: try storeOptions.open(), registry: registryOptions, peer: peerOptions,
                                 image: imageOptions, byLayers: layers, json: output.json)
        }
        let (remoteRef, localRef) = try splitRefPair(ref!)
        let store = try storeOptions.open()
        let peer = try peerOptions.connect(remote, storePath: storeOptions.path)
        let bar = ProgressBar("pulling \(remoteRef)", total: 0, bytes: true)
        let report = try LStoreSync.pull(into: store, from: peer, remoteRef: remoteRef, localRef: localRef, force: force,
                                         publishEvery: UInt64(parseSize(packSize)!), progress: { bar.update($0) })
        bar.finish()
        try describe(report, verb: "pulled", peer: peer, json: output.json)
    }
}

struct PushCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Send a layer to a peer with every layer under it that the peer lacks.",
        discussion: """
            REF:REMOTE names it differently on the peer. The peer's ref moves only if it still is what this \
            push saw at its start (compare-and-swap); --force moves it whatever it is.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A remote's name or a URL, or docker://[HOST/]NAME[:TAG] for an image in a registry.") var remote: String
    @Argument(help: ArgumentHelp("A local ref or commit, and optionally the peer's ref name (not for docker://).", valueName: "ref[:remote-ref]")) var ref: String
    @Flag(help: "Move the peer's ref whatever it points at now.") var force = false
    @Option(name: .customLong("pack-size"), help: ArgumentHelp("Send objects in batches of SIZE, each durable on the peer before the next.", valueName: "size"))
    var packSize = "64M"
    @OptionGroup var peerOptions: PeerOptions
    @OptionGroup var registryOptions: RegistryCommandOptions
    @OptionGroup var imageOptions: ImagePushOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard let size = parseSize(packSize), size > 0 else { throw ValidationError("invalid --pack-size '\(packSize)'") }
        if remote.hasPrefix("docker://") { return }
        try validateRefName(try splitRefPair(ref).1)
    }

    func run() throws {
        if remote.hasPrefix("docker://") {
            return try pushImage(ref, to: remote, store: try storeOptions.open(), registry: registryOptions, peer: peerOptions,
                                 image: imageOptions, json: output.json)
        }
        let (revision, remoteRef) = try splitRefPair(ref)
        let store = try storeOptions.open()
        let peer = try peerOptions.connect(remote, storePath: storeOptions.path)
        let bar = ProgressBar("pushing \(revision)", total: 0, bytes: true)
        let report: TransferReport
        do {
            report = try LStoreSync.push(from: store, to: peer, revision: revision, remoteRef: remoteRef, force: force,
                                         batchSize: parseSize(packSize)!, progress: { bar.update($0) })
        } catch SyncError.peer(.refMoved, let message) {
            bar.finish()
            throw CommandError("push to \(peer.url) refused: \(message) (someone else pushed meanwhile: pull, or push --force)")
        }
        bar.finish()
        try describe(report, verb: "pushed", peer: peer, json: output.json)
    }
}
