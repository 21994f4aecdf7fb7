import ArgumentParser
import Foundation
import LStoreSquashFS
import LStoreStore
import LStoreTar
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
        let absolute = source.hasPrefix("/") ? source : FileManager.default.currentDirectoryPath + "/" + source
        var st = stat()
        guard stat(source, &st) == 0 else { throw FileError(path: source, operation: "stat", errno: errno) }

        let started = Timestamp(seconds: Int64(Date().timeIntervalSince1970))
        var saveCache: () -> Void = {}
        let writer = try StoreWriter(store: store)
        let ingest = Ingest(writer: writer, threads: threads ?? availableCores())
        let root: Node
        if st.st_mode & S_IFMT == S_IFDIR {
            // Files are read, hashed and compressed while the scan goes on.
            let bar = ProgressBar("committing", total: 0, bytes: true)
            ingest.progress = { bar.update($0) }
            let absoluteSource = URL(fileURLWithPath: absolute).standardizedFileURL.path
            let pipeline = ingest.startFiles(cache: noCache ? FileCache() : FileCache.load(for: absoluteSource, in: store))
            let scanned: ScannedTree
            do {
                scanned = try Scanner(onFile: { pipeline.submit($0) }).scan(source)
            } catch {
                try? pipeline.finish()
                throw error
            }
            try pipeline.finish()
            bar.finish()
            root = scanned.root
            saveCache = { [started] in
                try? FileCache.save(scanned.files, since: started, for: absoluteSource, in: store)
            }
        } else if st.st_mode & S_IFMT == S_IFREG, isSquashFS(source) {
            root = try commitImage(source, ingest: ingest)
        } else if st.st_mode & S_IFMT == S_IFREG {
            let bar = ProgressBar("reading \(URL(fileURLWithPath: source).lastPathComponent)", total: 0, bytes: false)
            root = try TarReader(progress: { bar.update(UInt64($0)) }).read(source) { size, read in
                try ingest.ingestStream(size: size, read: read)
            }.root
            bar.finish()
        } else {
            throw CommandError("\(source): neither a directory nor a tarball")
        }
        let (tree, stats) = try ingest.storeTree(root)

        let explicitParents = try parent.map { try store.resolve($0) }
        var current = try store.ref(ref)
        let time = try commitTime()
        let author = self.author ?? defaultAuthor()
        // Another commit to the same ref may land while ours runs: then ours goes on top of it.
        for _ in 0..<100 {
            let commit = Commit(tree: tree, parents: parent.isEmpty ? (current.map { [$0] } ?? []) : explicitParents,
                                time: time, author: author, source: absolute, size: stats.size, files: stats.files,
                                entries: stats.entries, message: message)
            let id = try ingest.storeCommit(commit)
            try writer.finish()
            do {
                let firstLine = message.split(separator: "\n").first.map(String.init) ?? ""
                try store.updateRef(ref, to: id, expecting: parent.isEmpty ? (current.map { .value($0) } ?? .absent) : .any,
                                    message: "commit: \(firstLine)")
                saveCache()
                print(id.hex)
                return
            } catch StoreError.refMoved(_, _, let actual) {
                current = actual
            }
        }
        throw CommandError("ref '\(ref)' keeps moving; gave up")
    }

    private func commitTime() throws -> Int64 {
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], !epoch.isEmpty {
            guard let seconds = Int64(epoch) else { throw CommandError("SOURCE_DATE_EPOCH '\(epoch)' is not a number") }
            return seconds
        }
        return Int64(Date().timeIntervalSince1970)
    }
}

/// True when the file starts with squashfs's magic, `hsqs`.
func isSquashFS(_ path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    return (try? handle.read(upToCount: 4)) == Data("hsqs".utf8)
}

/// Reads a squashfs image's tree and stores its files' data, block by block.
func commitImage(_ path: String, ingest: Ingest) throws -> Node {
    let image = try SquashFSImage(path: path)
    let root = try image.readTree()
    let blockSize = ingest.writer.store.blockSize
    var files: [(path: [UInt8], node: Node)] = []
    root.walk { relative, node in
        if case .regular = node.content { files.append((relative, node)) }
    }
    for (relative, node) in files {
        guard case .regular(var file) = node.content else { continue }
        file.content = try ingest.ingestBlocks(size: file.size) { consume in
            try image.forEachBlock(of: file, path: relative, blockSize: blockSize) { block in
                switch block {
                case .hole, .zeros: try consume(.hole)
                case .raw(let bytes): try bytes.withUnsafeBytes { try consume(.data($0)) }
                case .stored: throw CommandError("\(path): the image reader handed over a compressed block")
                }
            }
        }
        file.sourcePath = nil
        node.content = .regular(file)
    }
    return root
}

func defaultAuthor() -> String {
    let environment = ProcessInfo.processInfo.environment
    if let author = environment["LSTORE_AUTHOR"], !author.isEmpty { return author }
    let user = environment["USER"] ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "unknown"
    return "\(user)@\(ProcessInfo.processInfo.hostName)"
}

