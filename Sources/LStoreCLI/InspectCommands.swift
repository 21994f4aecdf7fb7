import ArgumentParser
import Foundation
import LStoreStore
import LStoreTree

struct RefsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "refs", abstract: "List every ref, its commit and its parent chain.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let refs = try store.refs()
        var names: [Digest: [String]] = [:]
        for (name, id) in refs { names[id, default: []].append(name) }
        var rows: [[String: Any]] = []
        for (name, id) in refs {
            var chain: [Digest] = []
            var next = try store.commit(id).parents.first
            while let parent = next, chain.count < 64 {
                chain.append(parent)
                next = try store.commit(parent).parents.first
            }
            rows.append(["name": name, "commit": id.hex,
                         "chain": chain.map { ["commit": $0.hex, "refs": names[$0] ?? []] }])
            if !output.json {
                let shown = chain.map { names[$0]?.joined(separator: ",") ?? $0.short }
                print("\(name)\t\(id.short)" + (shown.isEmpty ? "" : "\t← " + shown.joined(separator: " ← ")))
            }
        }
        if output.json { try printJSON(rows) }
    }
}

struct RefCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ref", abstract: "Set or remove a ref.",
                                                    subcommands: [Set.self, Remove.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Point a ref at a commit.")
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The ref name.") var name: String
        @Argument(help: "A ref or commit id.") var commit: String

        func validate() throws { try validateRefName(name) }

        func run() throws {
            let store = try storeOptions.open()
            let id = try store.resolve(commit)
            try store.updateRef(name, to: id, expecting: .any, message: "ref set: \(commit)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a ref (gc then frees what only it reached).")
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The ref name.") var name: String

        func run() throws {
            let store = try storeOptions.open()
            guard let old = try store.ref(name) else { throw StoreError.unknownRef(name) }
            try store.updateRef(name, to: nil, expecting: .value(old), message: "ref rm")
        }
    }
}

/// A commit message as git prints it: after a blank line, each line indented by four spaces.
func printMessage(_ message: String) {
    guard !message.isEmpty else { return }
    print()
    for line in message.split(separator: "\n", omittingEmptySubsequences: false) { print("    \(line)") }
}

func commitJSON(_ id: Digest, _ commit: Commit) -> [String: Any] {
    ["commit": id.hex, "tree": commit.tree.hex, "parents": commit.parents.map(\.hex), "time": commit.time,
     "author": commit.author, "source": commit.source, "size": commit.size, "files": commit.files,
     "entries": commit.entries, "message": commit.message,
     "headers": Dictionary(commit.extraHeaders.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })]
}

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "A commit, its parent, its parent's parent ...")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "A ref or commit id.") var revision: String
    @Option(name: [.short, .customLong("max-count")], help: "Show at most this many commits.") var maxCount: Int?

    func run() throws {
        let store = try storeOptions.open()
        var next: Digest? = try store.resolve(revision)
        var rows: [[String: Any]] = []
        var seen = Swift.Set<Digest>()
        while let id = next, seen.insert(id).inserted, rows.count < (maxCount ?? Int.max) {
            let commit = try store.commit(id)
            rows.append(commitJSON(id, commit))
            if !output.json {
                if rows.count > 1 { print() }
                print("commit \(id.hex)")
                if commit.parents.count > 1 { print("Merge:  " + commit.parents.map(\.short).joined(separator: " ")) }
                print("Author: \(commit.author)")
                print("Date:   \(isoTime(commit.time))")
                print("Source: \(commit.source)")
                printMessage(commit.message)
            }
            next = commit.parents.first
        }
        if output.json { try printJSON(rows) }
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a commit: id, parents, time, author, message, source, size, file count.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "A ref or commit id.") var revision: String

    func run() throws {
        let store = try storeOptions.open()
        let id = try store.resolve(revision)
        let commit = try store.commit(id)
        if output.json { return try printJSON(commitJSON(id, commit)) }
        print("commit  \(id.hex)")
        for parent in commit.parents { print("parent  \(parent.hex)") }
        print("tree    \(commit.tree.hex)")
        print("date    \(isoTime(commit.time))")
        print("author  \(commit.author)")
        print("source  \(commit.source)")
        print("size    \(humanBytes(commit.size)) (\(commit.size) bytes)")
        print("files   \(commit.files) files, \(commit.entries) entries")
        // Headers lstore does not interpret (an imported image's digest, config, platform ...).
        for header in commit.extraHeaders { print("\(header.key) \(header.value)") }
        printMessage(commit.message)
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "List added (A), removed (D) and changed (M) paths between two commits.",
        discussion: "A changed path lists what changed: type, content, size, mode, owner, mtime, xattrs, target, device, hardlink.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The old ref or commit.") var old: String
    @Argument(help: "The new ref or commit.") var new: String

    func run() throws {
        let store = try storeOptions.open()
        let a = try store.commit(try store.resolve(old)), b = try store.commit(try store.resolve(new))
        let changes = try store.diff(a.tree, b.tree)
        if output.json {
            return try printJSON(changes.map { change -> [String: Any] in
                var row: [String: Any] = ["change": change.kind.rawValue, "path": "/" + change.path.printable]
                if change.path == [UInt8(ascii: "/")] { row["path"] = "/" }
                if change.kind == .changed { row["aspects"] = change.aspects }
                return row
            })
        }
        var out = ""
        for change in changes {
            let path = change.path == [UInt8(ascii: "/")] ? "/" : "/" + change.path.printable
            switch change.kind {
            case .added: out += "A \(path)\n"
            case .removed: out += "D \(path)\n"
            case .changed: out += "M \(path) (\(change.aspects.joined(separator: ", ")))\n"
            }
        }
        print(out, terminator: "")
    }
}

struct ReflogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reflog", abstract: "Every move of every ref (or of one), oldest first.")

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "Only this ref.") var name: String?

    func run() throws {
        let store = try storeOptions.open()
        for entry in try store.reflog(for: name) {
            print("\(isoTime(entry.time))  \(entry.name)  \(entry.old?.short ?? "(none)") → \(entry.new?.short ?? "(removed)")  \(entry.message)")
        }
    }
}
