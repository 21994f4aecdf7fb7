import CLStoreSys
import Foundation
import LStoreImage
import LStoreOCI
import LStoreStore
import LStoreTar
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// What a build asks for besides the recipes.
public struct BuildOptions: Sendable {
    /// Every step made again, none taken from the cache.
    public var noCache = false
    /// RUN in a network namespace of its own, with only loopback (`--network none`).
    public var isolateNetwork = false
    /// `--build-arg K=V`: values for the recipes' ARGs.
    public var buildArguments: [String: String] = [:]
    /// Commit times, and the latest file time (`SOURCE_DATE_EPOCH`); nil: from the recipe's parent.
    public var sourceDateEpoch: Int64?
    public var threads = 1
    /// How `FROM docker://…` reaches its registry.
    public var registry: RegistryOptions
    public var importOptions = ImportOptions()
    /// The lstore binary: runs the sandbox's keeper (`build-sandbox`).
    public var executable: String
    /// The host file a RUN sees as /etc/resolv.conf.
    public var resolvConf = "/etc/resolv.conf"

    public init(registry: RegistryOptions, executable: String) {
        self.registry = registry
        self.executable = executable
    }
}

/// What a build tells as it goes.
public enum BuildEvent {
    /// Step `number` of `count` starts (`cached`: taken from the cache as this commit).
    case step(number: Int, count: Int, instruction: String, cached: Digest?)
    /// What a RUN writes, as it writes it.
    case output([UInt8])
    case note(String)
}

/// One recipe to build: its file, the directory it copies from, and the ref it makes.
public struct RecipeJob: Sendable {
    /// The recipe's name: its directory's path under the recipe tree (`gaming`, `steve/gaming`).
    public var name: String
    public var ref: String
    public var recipe: Recipe
    /// The directory COPY and ADD read (the recipe's own).
    public var context: String

    public init(name: String, ref: String, recipe: Recipe, context: String) {
        self.name = name
        self.ref = ref
        self.recipe = recipe
        self.context = context
    }
}

/// What a build made.
public struct BuildOutcome: Sendable {
    public var name: String
    public var ref: String
    public var commit: Digest
    /// The ref's commit before.
    public var previous: Digest?
    public var stepsRun: Int
    public var stepsCached: Int
    public var upToDate: Bool { previous == commit }
}

/// Builds recipes into commits (spec/build.md): each instruction that changes the tree makes a
/// commit on the one before, taken from the build cache when the store has one for the same parent,
/// instruction and inputs; RUN runs in `Sandbox`, its upper directory read back by `UpperCapture`;
/// the build commit on top records the recipe, its arguments and the image settings. The ref moves
/// last, and only when everything is stored.
public final class Builder {
    public let store: Store
    public let options: BuildOptions
    private let report: (String, BuildEvent) -> Void
    private var cache: BuildCache?
    /// Commits of recipes built in this run, by name: what a `FROM name` means first.
    public var built: [String: Digest] = [:]

    /// The author of every commit a build makes.
    public static let author = "lstore build"

    public init(store: Store, options: BuildOptions, report: @escaping (_ recipe: String, BuildEvent) -> Void) {
        self.store = store
        self.options = options
        self.report = report
    }

    /// Builds `job` and moves its ref. With `check`, builds nothing: returns nil when a step is not
    /// in the cache (the reason in `staleReason`), else the outcome a build would have.
    public func build(_ job: RecipeJob, check: Bool = false) throws -> BuildOutcome? {
        if cache == nil { cache = try BuildCache(store: store) }
        var stage = try Stage(builder: self, job: job, check: check)
        do {
            return try stage.run()
        } catch let stale as StaleStep {
            staleReason = stale.reason
            return nil
        }
    }

    /// Why the last `build(check: true)` found the recipe out of date.
    public private(set) var staleReason = ""

    func cached(_ key: String, parent: Digest?) -> Digest? {
        guard !options.noCache, let id = cache?.commits[key], let commit = try? store.commit(id),
              commit.parents.first == parent else { return nil }
        return id
    }

    func remember(_ key: String, _ id: Digest) { cache?.commits[key] = id }

    func tell(_ job: RecipeJob, _ event: BuildEvent) { report(job.name, event) }
}

struct StaleStep: Error {
    var reason: String
}

/// The build cache: every step commit a ref or the reflog reaches, by its `build-cache` key.
struct BuildCache {
    var commits: [String: Digest] = [:]

    init(store: Store) throws {
        var heads = try store.refs().map(\.commit)
        heads += ((try? store.reflog()) ?? []).compactMap(\.new)
        // Every parent, not the first only: an image pulled by blocks has the pushed build's commits
        // as its second parent, so the cache travels through a registry too.
        var seen: Set<Digest> = []
        var pending = heads
        while let id = pending.popLast() {
            guard seen.insert(id).inserted, let commit = try? store.commit(id) else { continue }
            pending += commit.parents
            guard commit.author == Builder.author else { continue }
            for header in commit.extraHeaders where header.key == "build-cache" { commits[header.value] = id }
        }
    }
}

/// One recipe's build, instruction by instruction.
struct Stage {
    let builder: Builder
    let job: RecipeJob
    let check: Bool
    var store: Store { builder.store }
    var options: BuildOptions { builder.options }

    /// The commit the next step builds on; nil for `FROM scratch` before any step.
    var current: Digest?
    /// Its tree, loaded when a step needs it.
    var root: Node?
    var env: [(key: String, value: String)] = []
    var arguments: [String: String] = [:]
    var labels: [(key: String, value: String)] = []
    var workdir = "/"
    var user = ""
    var shell = ["/bin/sh", "-c"]
    var epoch: Int64 = 0
    var platform: String?
    var stepsRun = 0, stepsCached = 0
    var usedArguments: Set<String> = []
    var stepNumber = 1
    let stepCount: Int
    let context: BuildContext

    init(builder: Builder, job: RecipeJob, check: Bool) throws {
        self.builder = builder
        self.job = job
        self.check = check
        stepCount = job.recipe.instructions.count + 1
        context = BuildContext(directory: job.context, display: job.context)
    }

    func fail(_ instruction: Instruction, _ message: String) -> RecipeError {
        RecipeError(file: job.recipe.file, line: instruction.line, message)
    }

    var words: Words {
        var variables = arguments
        for (key, value) in env { variables[key] = value }
        return Words(escape: job.recipe.escape, variables: variables)
    }

    mutating func run() throws -> BuildOutcome {
        try from()
        for instruction in job.recipe.instructions {
            stepNumber += 1
            do {
                try perform(instruction)
            } catch let error as Words.Failure {
                throw fail(instruction, "\(instruction.keyword): \(error.message)")
            } catch let error as BuildError {
                throw fail(instruction, "\(instruction.keyword): \(error.description)")
            } catch let error as ChangeSetError {
                throw fail(instruction, "\(instruction.keyword): \(error)")
            }
            if lstore_cancel_signal() != 0 { throw BuildInterrupted(signal: lstore_cancel_signal()) }
        }
        let unused = options.buildArguments.keys.filter { !usedArguments.contains($0) }.sorted()
        if !unused.isEmpty && !check {
            builder.tell(job, .note("warning: build argument(s) not used by the recipe: \(unused.joined(separator: ", "))"))
        }
        return try finish()
    }

    // MARK: FROM

    mutating func from() throws {
        let instruction = job.recipe.from
        var globals: [String: String] = [:]
        for argument in job.recipe.globalArguments {
            for (key, value) in try Words(escape: job.recipe.escape, variables: globals).pairs(argument.arguments, legacy: false) {
                globals[key] = options.buildArguments[key] ?? value ?? ""
                if options.buildArguments[key] != nil { usedArguments.insert(key) }
            }
        }
        let fromWords: [String]
        do {
            fromWords = try Words(escape: job.recipe.escape, variables: globals).words(instruction.arguments)
        } catch let error as Words.Failure {
            throw fail(instruction, "FROM: \(error.message)")
        }
        if let flag = instruction.flags.first { throw fail(instruction, "FROM: --\(flag.name) is not supported") }
        guard fromWords.count == 1 || (fromWords.count == 3 && fromWords[1].lowercased() == "as") else {
            throw fail(instruction, "FROM: one image, optionally AS a name")
        }
        globalsBeforeFrom = globals
        let image = fromWords[0]
        builder.tell(job, .step(number: 1, count: stepCount, instruction: "FROM \(image)", cached: nil))
        if image == "scratch" {
            current = nil
            root = emptyRoot()
        } else if image.hasPrefix("docker://") {
            current = try pull(image, instruction)
        } else if let built = builder.built[image] {
            current = built
        } else {
            do {
                current = try store.resolve(image)
            } catch {
                throw fail(instruction, "FROM \(image): no recipe, ref or commit of that name")
            }
        }
        fromText = image
        if let current {
            let commit = try store.commit(current)
            // What the parent's image settings were, the build goes on with.
            func header(_ key: String) -> String? { commit.extraHeaders.last { $0.key == key }?.value }
            func json(_ key: String) -> Any? {
                header(key).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8), options: [.fragmentsAllowed]) }
            }
            for item in json("oci-env") as? [String] ?? [] {
                let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                setEnv(String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }
            if let value = (json("oci-workdir") as? [String])?.first, value.hasPrefix("/") { workdir = value }
            if let value = (json("oci-user") as? [String])?.first { user = value }
            for (key, value) in (json("oci-labels") as? [String: String] ?? [:]).sorted(by: { $0.key < $1.key }) { labels.append((key, value)) }
            platform = header("oci-platform")
            root = try store.loadTree(commit.tree)
        }
        epoch = options.sourceDateEpoch ?? newestTime(root!)
    }

    var globalsBeforeFrom: [String: String] = [:]
    var fromText = ""

    func emptyRoot() -> Node {
        Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
    }

    /// The newest modification time in `root`: the default epoch, which the same parent gives on
    /// every machine.
    func newestTime(_ root: Node) -> Int64 {
        var newest: Int64 = 0
        root.walk { _, node in
            if case .hardlink = node.content { return }
            newest = max(newest, node.metadata.mtime.seconds)
        }
        return newest
    }

    mutating func pull(_ image: String, _ instruction: Instruction) throws -> Digest {
        let reference: RegistryReference
        do {
            reference = try RegistryReference(parsing: image)
        } catch {
            throw fail(instruction, "FROM \(image): \(error)")
        }
        let writer = try StoreWriter(store: store)
        let ingest = Ingest(writer: writer, threads: options.threads)
        let puller = RegistryPuller(reference: reference, options: options.registry, importOptions: options.importOptions)
        do {
            let result = try puller.run(ingest: ingest)
            try writer.finish()
            return result.imageCommit
        } catch {
            throw fail(instruction, "FROM \(image): \(error)")
        }
    }

    // MARK: Instructions

    mutating func setEnv(_ key: String, _ value: String) {
        if let index = env.firstIndex(where: { $0.key == key }) { env[index].value = value } else { env.append((key, value)) }
    }

    mutating func perform(_ instruction: Instruction) throws {
        switch instruction.keyword {
        case "ARG":
            for (key, value) in try words.pairs(instruction.arguments, legacy: false) {
                guard isVariableName(key) else { throw fail(instruction, "ARG: '\(key)' is not a variable name") }
                if let given = options.buildArguments[key] {
                    arguments[key] = given
                    usedArguments.insert(key)
                } else if let value {
                    arguments[key] = value
                } else if let global = globalsBeforeFrom[key] {
                    arguments[key] = global
                } else {
                    arguments.removeValue(forKey: key)
                }
            }
        case "ENV":
            let pairs = try words.pairs(instruction.arguments, legacy: true)
            for (key, value) in pairs {
                guard let value, isVariableName(key) else { throw fail(instruction, "ENV: '\(key)' is not NAME=VALUE") }
                setEnv(key, value)
            }
        case "LABEL":
            for (key, value) in try words.pairs(instruction.arguments, legacy: false) {
                guard let value, !key.isEmpty else { throw fail(instruction, "LABEL: '\(key)' is not KEY=VALUE") }
                if let index = labels.firstIndex(where: { $0.key == key }) { labels[index].value = value } else { labels.append((key, value)) }
            }
        case "USER":
            let value = try words.word(instruction.arguments).trimmingCharacters(in: .whitespaces)
            guard !value.isEmpty, !value.contains(where: \.isWhitespace) else { throw fail(instruction, "USER: one user[:group]") }
            user = value
        case "SHELL":
            guard let json = instruction.json, !json.isEmpty else { throw fail(instruction, "SHELL: the JSON form, [\"executable\", \"parameters\"]") }
            shell = json
        case "WORKDIR":
            let value = try words.word(instruction.arguments).trimmingCharacters(in: .whitespaces)
            guard !value.isEmpty else { throw fail(instruction, "WORKDIR needs a path") }
            workdir = normalized(value.hasPrefix("/") ? value : workdir + "/" + value)
            try workdirStep(instruction)
        case "RUN":
            try runStep(instruction)
        case "COPY", "ADD":
            try copyStep(instruction)
        default:
            throw fail(instruction, "unknown instruction '\(instruction.keyword)'")
        }
    }

    func isVariableName(_ name: String) -> Bool {
        guard let first = name.first, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for component in path.split(separator: "/") where component != "." {
            if component == ".." { _ = parts.popLast() } else { parts.append(component) }
        }
        return "/" + parts.joined(separator: "/")
    }

    // MARK: Steps

    /// The key of a step: a digest of everything its result depends on (spec/build.md §6).
    func key(_ instruction: Instruction, _ lines: [String]) -> String {
        "sha256:" + sha256(Array(Self.keyText(parent: current, epoch: epoch, keyword: instruction.keyword, lines: lines).utf8)).hex
    }

    /// `value` as compact JSON, slashes as they are.
    static func json(_ value: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: value, options: [.withoutEscapingSlashes]), as: UTF8.self)
    }

    /// The text a step's key is the SHA-256 of (spec/build.md §6).
    static func keyText(parent: Digest?, epoch: Int64, keyword: String, lines: [String]) -> String {
        var text = "lstore-build-cache 1\nparent \(parent?.hex ?? "none")\nepoch \(epoch)\ninstruction \(keyword)\n"
        for line in lines { text += line.replacingOccurrences(of: "\n", with: "\\n") + "\n" }
        return text
    }

    /// A RUN's environment (spec/build.md §4): the ARGs no ENV names, the ENVs, then what is unset
    /// of PATH, HOME and SOURCE_DATE_EPOCH, and HOSTNAME.
    static func runEnvironment(arguments: [String: String], env: [(key: String, value: String)], owner: Account,
                               epoch: Int64) -> [String] {
        var environment: [(String, String)] = []
        for (key, value) in arguments.sorted(by: { $0.key < $1.key }) where !env.contains(where: { $0.key == key }) {
            environment.append((key, value))
        }
        environment += env.map { ($0.key, $0.value) }
        if !environment.contains(where: { $0.0 == "PATH" }) {
            environment.append(("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
        }
        if !environment.contains(where: { $0.0 == "HOME" }) { environment.append(("HOME", owner.home)) }
        if !environment.contains(where: { $0.0 == "SOURCE_DATE_EPOCH" }) { environment.append(("SOURCE_DATE_EPOCH", String(epoch))) }
        environment.append(("HOSTNAME", "lstore-build"))
        return environment.map { "\($0.0)=\($0.1)" }
    }

    /// A RUN's lines of its key: the command, the account, the directory, the environment.
    static func runKeyLines(argv: [String], owner: Account, cwd: String, environment: [String]) -> [String] {
        return ["argv " + json(argv), "user \(owner.uid):\(owner.gid):\(owner.groups.map(String.init).joined(separator: ","))", "cwd \(cwd)"]
            + environment.map { "env " + $0 }
    }

    /// Takes the step from the cache, or makes it: `make` changes the tree in place; its commit
    /// goes on `current`.
    mutating func step(_ instruction: Instruction, key: String, inputs: [CommitHeader] = [],
                       make: (inout Stage, Node, Ingest) throws -> Void) throws {
        if let hit = builder.cached(key, parent: current) {
            builder.tell(job, .step(number: stepNumber, count: stepCount, instruction: instruction.text, cached: hit))
            current = hit
            root = nil
            stepsCached += 1
            return
        }
        if check { throw StaleStep(reason: "step \(stepNumber) (\(instruction.text)) is not built") }
        builder.tell(job, .step(number: stepNumber, count: stepCount, instruction: instruction.text, cached: nil))
        let tree = try currentTree()
        let writer = try StoreWriter(store: store)
        let ingest = Ingest(writer: writer, threads: options.threads)
        try make(&self, tree, ingest)
        let (treeID, stats) = try ingest.storeTree(tree)
        let commit = Commit(tree: treeID, parents: current.map { [$0] } ?? [], time: epoch, author: Builder.author,
                            source: "recipe \(job.name), line \(instruction.line)", size: stats.size, files: stats.files,
                            entries: stats.entries, extraHeaders: [CommitHeader(key: "build-cache", value: key)] + inputs,
                            message: instruction.text + "\n")
        let id = try ingest.storeCommit(commit)
        try writer.finish()
        builder.remember(key, id)
        current = id
        root = try store.loadTree(treeID)
        stepsRun += 1
    }

    mutating func currentTree() throws -> Node {
        if let root { return root }
        guard let current else { return emptyRoot() }
        let tree = try store.loadTree(try store.commit(current).tree)
        root = tree
        return tree
    }

    mutating func workdirStep(_ instruction: Instruction) throws {
        let tree = try currentTree()
        if let found = tree.resolve(workdir) {
            guard found.node.directory != nil else { throw fail(instruction, "WORKDIR \(workdir): a \(found.node.metadata.kind) is there") }
            return
        }
        let owner = try account(tree, instruction)
        try step(instruction, key: key(instruction, ["path \(workdir)", "owner \(owner.uid):\(owner.gid)"])) { stage, tree, _ in
            let (parent, missing) = try stage.existingPrefix(tree, stage.workdir, instruction)
            let changes = ChangeSet(root: tree, form: .plain)
            var components = parent
            for name in missing {
                components.append(Array(name.utf8))
                try changes.apply(components: components, metadata: Metadata(kind: .directory, permissions: 0o755, uid: owner.uid,
                                                                             gid: owner.gid, mtime: Timestamp(seconds: stage.epoch)),
                                  content: .directory(Directory()))
            }
            try changes.finish()
        }
    }

    /// The real components of the longest existing directory prefix of `path` (symlinks followed
    /// inside the tree), and the names below it that are missing.
    func existingPrefix(_ tree: Node, _ path: String, _ instruction: Instruction) throws -> ([[UInt8]], [String]) {
        let parts = path.split(separator: "/").map(String.init)
        var count = parts.count
        while count > 0, tree.resolve("/" + parts[0..<count].joined(separator: "/")) == nil { count -= 1 }
        let found = tree.resolve("/" + parts[0..<count].joined(separator: "/"))!
        guard found.node.directory != nil else {
            throw fail(instruction, "\(instruction.keyword): \(found.path) is a \(found.node.metadata.kind), not a directory")
        }
        return (found.path.split(separator: "/").map { Array($0.utf8) }, Array(parts[count...]))
    }

    // MARK: The build commit

    mutating func finish() throws -> BuildOutcome {
        let base = current
        let tree = try currentTree()
        var headers: [CommitHeader] = [CommitHeader(key: "build-from", value: "\(fromText) \(base?.hex ?? "scratch")")]
        headers.append(CommitHeader(key: "build-recipe", value: "sha256:" + sha256(job.recipe.text).hex))
        for key in usedArguments.sorted() { headers.append(CommitHeader(key: "build-arg", value: "\(key)=\(options.buildArguments[key]!)")) }
        headers.append(CommitHeader(key: "build-epoch", value: String(epoch)))
        if let platform { headers.append(CommitHeader(key: "oci-platform", value: platform)) }
        func json(_ key: String, _ value: Any) {
            let data = try! JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
            headers.append(CommitHeader(key: key, value: String(decoding: data, as: UTF8.self)))
        }
        if !env.isEmpty { json("oci-env", env.map { "\($0.key)=\($0.value)" }) }
        if workdir != "/" { json("oci-workdir", [workdir]) }
        if !user.isEmpty { json("oci-user", [user]) }
        if !labels.isEmpty { json("oci-labels", Dictionary(labels.map { ($0.key, $0.value) }, uniquingKeysWith: { _, b in b })) }
        var text = String(decoding: job.recipe.text, as: UTF8.self)
        if !text.hasSuffix("\n") { text += "\n" }
        // The tree is the last step's (or the parent's); only FROM scratch alone stores one here.
        var writer: StoreWriter?
        let treeID: Digest, stats: TreeStats
        if let base {
            let commit = try store.commit(base)
            treeID = commit.tree
            stats = TreeStats(size: commit.size, files: commit.files, entries: commit.entries)
        } else {
            writer = try StoreWriter(store: store)
            (treeID, stats) = try Ingest(writer: writer!, threads: 1).storeTree(tree)
        }
        let commit = Commit(tree: treeID, parents: base.map { [$0] } ?? [], time: epoch, author: Builder.author,
                            source: "recipe \(job.name)", size: stats.size, files: stats.files, entries: stats.entries,
                            extraHeaders: headers, message: "build \(job.name)\n\n" + text)
        let previous = try store.ref(job.ref)
        let id: Digest
        if check {
            id = sha256(commit.encoded())
        } else {
            if writer == nil { writer = try StoreWriter(store: store) }
            id = try Ingest(writer: writer!, threads: 1).storeCommit(commit)
            try writer!.finish()
            if previous != id {
                try store.updateRef(job.ref, to: id, expecting: previous.map { .value($0) } ?? .absent, message: "build: recipe \(job.name)")
            }
        }
        return BuildOutcome(name: job.name, ref: job.ref, commit: id, previous: previous, stepsRun: stepsRun, stepsCached: stepsCached)
    }
}
