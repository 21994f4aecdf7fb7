import ArgumentParser
import Foundation
import LStoreImage
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

struct CommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Store a directory or a tarball as a new commit and point a ref at it.",
        discussion: """
            SOURCE is a directory, or a tarball (.tar, .tar.gz, .tar.zst, .tar.xz). Without --parent, \
            the ref's current commit (if any) becomes the parent, as in git. Prints the new commit id.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "A directory or a tarball.")
    var source: String

    @Option(help: "The ref to point at the new commit.")
    var ref: String

    @Option(name: .long, help: "A parent commit or ref (repeat for several).")
    var parent: [String] = []

    @Option(name: [.short, .customLong("message")], help: "The commit message.")
    var message = ""

    @Option(help: "The author (default: $LSTORE_AUTHOR, else user@host).")
    var author: String?

    @Option(help: "Worker threads (default: every core).")
    var threads: Int?

    @Flag(name: .customLong("no-cache"), help: "Read every file, even those unchanged since the last commit of this directory.")
    var noCache = false

    func validate() throws {
        try validateRefName(ref)
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        let store = try storeOptions.open()
        let layer = try LayerImport(source, store: store, threads: threads ?? availableCores())
        layer.useFileCache = !noCache
        let explicitParents = try parent.map { try store.resolve($0) }
        let time = try commitTime()
        let bar: ProgressBar? = switch layer.kind {
        case .directory: ProgressBar("committing", total: 0, bytes: true)
        case .tarball: ProgressBar("reading \(URL(fileURLWithPath: source).lastPathComponent)", total: 0, bytes: false)
        case .squashfs: nil
        }
        var progress: (@Sendable (UInt64) -> Void)?
        if let bar { progress = { bar.update($0) } }
        let id = try layer.commit(ref: ref, parents: parent.isEmpty ? nil : explicitParents, time: time,
                                  author: author ?? defaultAuthor(), message: message, progress: progress,
                                  treeStored: { bar?.finish() })
        print(id.hex)
    }

    private func commitTime() throws -> Int64 {
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], !epoch.isEmpty {
            guard let seconds = Int64(epoch) else { throw CommandError("SOURCE_DATE_EPOCH '\(epoch)' is not a number") }
            return seconds
        }
        return Int64(Date().timeIntervalSince1970)
    }
}

func defaultAuthor() -> String {
    let environment = ProcessInfo.processInfo.environment
    if let author = environment["LSTORE_AUTHOR"], !author.isEmpty { return author }
    let user = environment["USER"] ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "unknown"
    return "\(user)@\(ProcessInfo.processInfo.hostName)"
}

