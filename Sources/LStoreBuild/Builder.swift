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

    // MARK: RUN

    mutating func runStep(_ instruction: Instruction) throws {
        if let flag = instruction.flags.first { throw fail(instruction, "RUN: --\(flag.name) is not supported") }
        let argv = instruction.json ?? (shell + [instruction.arguments])
        guard !argv.isEmpty, !argv[0].isEmpty else { throw fail(instruction, "RUN: no command") }
        let tree = try currentTree()
        let owner = try account(tree, instruction)
        let envList = Self.runEnvironment(arguments: arguments, env: env, owner: owner, epoch: epoch)
        let lines = Self.runKeyLines(argv: argv, owner: owner, cwd: workdir, environment: envList)
        try step(instruction, key: key(instruction, lines)) { stage, tree, ingest in
            try stage.execute(instruction, argv: argv, environment: envList, owner: owner, tree: tree, ingest: ingest)
        }
    }

    func execute(_ instruction: Instruction, argv: [String], environment: [String], owner: Account, tree: Node,
                 ingest: Ingest) throws {
        var scratch = store.scratchDirectory("build")
        if !scratch.hasPrefix("/") { scratch = FileManager.default.currentDirectoryPath + "/" + scratch }
        try FileManager.default.createDirectory(atPath: (scratch as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        defer { if getenv("LSTORE_DEBUG_KEEP") == nil { try? removeTree(scratch) } }
        let lower = scratch + "/lower", upper = scratch + "/upper", work = scratch + "/work", rootDir = scratch + "/root"
        let points = scratch + "/mount-points"
        for directory in [scratch, lower, upper, work, rootDir, points] {
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw BuildError("\(directory): cannot be made: \(String(cString: strerror(errno)))")
            }
        }
        // The lower layer: the parent's image, written from the store's blocks.
        var image: String?
        if current != nil {
            image = scratch + "/parent.sfs"
            let settings = ImageSettings(threads: options.threads)
            try writeImage(tree, source: StoreBlockSource(store: store), options: settings.options(for: store, time: epoch), to: image!)
        }
        // The upper directory stands for the root: it has the root's metadata.
        try copyMetadata(tree.metadata, to: upper)
        let pointsUsed = try makeMountPoints(tree, in: points)
        let request = SandboxRequest(image: image, lower: lower, mountPoints: pointsUsed ? points : nil, upper: upper, work: work,
                                     root: rootDir, resolvConf: resolvConf(tree), isolateNetwork: options.isolateNetwork,
                                     hostname: "lstore-build", uid: owner.uid, gid: owner.gid, groups: owner.groups, cwd: workdir,
                                     argv: argv, environment: environment, result: scratch + "/result.json")
        var tail = OutputTail()
        let result = try Sandbox.run(request, spec: scratch + "/sandbox.json", executable: options.executable) { bytes in
            tail.append(bytes)
            builder.tell(job, .output(bytes))
        }
        if let error = result.error { throw BuildError("the sandbox could not be made: \(error)") }
        let status = result.status ?? 255
        guard status == 0 else {
            let last = tail.lines(20)
            throw BuildError("\(instruction.text.prefix(200)): exited with status \(status)"
                             + (last.isEmpty ? "" : "; its last lines:\n" + last.map { "  " + $0 }.joined(separator: "\n")))
        }
        try UpperCapture(epoch: epoch).apply(upper: upper, onto: tree, ingest: ingest)
    }

    /// Makes, in `directory`, the mount points (/proc, /sys, /dev, /tmp, /etc/resolv.conf) the
    /// tree lacks, with the metadata of the directories above them that it has; false when none.
    func makeMountPoints(_ tree: Node, in directory: String) throws -> Bool {
        var made = false
        for name in ["proc", "sys", "dev", "tmp"] where tree.resolve("/" + name)?.node.directory == nil {
            guard tree.directory?.child(named: Array(name.utf8)) == nil else {
                throw BuildError("/\(name) is not a directory in the parent: RUN needs it for its mount")
            }
            mkdir(directory + "/" + name, 0o755)
            made = true
        }
        if !options.isolateNetwork, tree.resolve("/etc/resolv.conf") == nil, tree.directory?.child(named: Array("etc".utf8)).map({ $0.directory != nil }) ?? true {
            mkdir(directory + "/etc", 0o755)
            if let etc = tree.directory?.child(named: Array("etc".utf8)) { try copyMetadata(etc.metadata, to: directory + "/etc") }
            FileManager.default.createFile(atPath: directory + "/etc/resolv.conf", contents: Data())
            made = true
        }
        return made
    }

    func resolvConf(_ tree: Node) -> String? {
        guard !options.isolateNetwork, FileManager.default.fileExists(atPath: options.resolvConf) else { return nil }
        if let found = tree.resolve("/etc/resolv.conf"), case .regular = found.node.content, found.path == "/etc/resolv.conf" {
            return options.resolvConf
        }
        return tree.resolve("/etc/resolv.conf") == nil && tree.directory?.child(named: Array("etc".utf8)).map({ $0.directory != nil }) ?? true
            ? options.resolvConf : nil
    }

    func copyMetadata(_ metadata: Metadata, to path: String) throws {
        guard chown(path, metadata.uid, metadata.gid) == 0, chmod(path, mode_t(metadata.permissions)) == 0 else {
            throw BuildError("\(path): cannot set its owner and mode: \(String(cString: strerror(errno)))")
        }
        var times = [timespec(tv_sec: Int(metadata.mtime.seconds), tv_nsec: Int(metadata.mtime.nanoseconds)),
                     timespec(tv_sec: Int(metadata.mtime.seconds), tv_nsec: Int(metadata.mtime.nanoseconds))]
        utimensat(AT_FDCWD, path, &times, 0)
        for xattr in metadata.xattrs {
            _ = xattr.value.withUnsafeBytes { lsetxattr(path, String(decoding: xattr.name, as: UTF8.self), $0.baseAddress, $0.count, 0) }
        }
    }

    // MARK: COPY, ADD

    mutating func copyStep(_ instruction: Instruction) throws {
        var chownText: String?, chmodText: String?
        for flag in instruction.flags {
            switch flag.name {
            case "chown": chownText = try words.word(flag.value)
            case "chmod": chmodText = try words.word(flag.value)
            case "from": throw fail(instruction, "\(instruction.keyword) --from: multi-stage recipes are not supported")
            default: throw fail(instruction, "\(instruction.keyword): --\(flag.name) is not supported")
            }
        }
        let items = try instruction.json.map { try $0.map { try words.word($0) } } ?? words.words(instruction.arguments)
        guard items.count >= 2 else { throw fail(instruction, "\(instruction.keyword) needs a source and a destination") }
        let sources = Array(items.dropLast()), destination = items.last!
        if instruction.keyword == "ADD", let url = sources.first(where: { $0.contains("://") || $0.hasPrefix("git@") }) {
            throw fail(instruction, "ADD \(url): only files of the recipe's directory are added (fetch with RUN instead)")
        }
        var mode: UInt16?
        if let chmodText {
            guard let value = UInt16(chmodText, radix: 8), value <= 0o7777 else { throw fail(instruction, "--chmod=\(chmodText): an octal mode") }
            mode = value
        }
        let tree = try currentTree()
        var owner: (uid: UInt32, gid: UInt32)?
        if let chownText { owner = try chownAccount(chownText, tree, instruction) }
        var selections: [(name: [UInt8], node: Node)] = []
        for source in sources {
            do {
                selections += try context.select(source)
            } catch let error as BuildError {
                throw fail(instruction, "\(instruction.keyword) \(error.description)")
            }
        }
        let target = destination.hasPrefix("/") ? destination : workdir + "/" + destination
        let intoDirectory = destination.hasSuffix("/") || destination.hasSuffix("/.") || destination == "."
        if selections.count > 1 && !intoDirectory && tree.resolve(normalized(target))?.node.directory == nil {
            throw fail(instruction, "\(instruction.keyword): several sources go into a directory: end '\(destination)' with '/'")
        }
        let digest = try context.digest(selections)
        let archives = instruction.keyword == "ADD" ? selections.map { isArchive($0.node) } : selections.map { _ in false }
        let lines = ["sources \(Self.json(sources))", "destination \(target)\(intoDirectory ? "/" : "")", "chown \(owner.map { "\($0.uid):\($0.gid)" } ?? "-")",
                     "chmod \(mode.map { String($0, radix: 8) } ?? "-")", "inputs \(digest)", "archives \(Self.json(archives))"]
        try step(instruction, key: key(instruction, lines), inputs: [CommitHeader(key: "build-input", value: digest)]) { stage, tree, ingest in
            try stage.copy(selections, archives: archives, to: target, intoDirectory: intoDirectory, owner: owner, mode: mode,
                           tree: tree, ingest: ingest, instruction: instruction)
        }
    }

    func isArchive(_ node: Node) -> Bool {
        guard case .regular(let file) = node.content, let path = file.sourcePath else { return false }
        let fd = open(String(decoding: path, as: UTF8.self), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 512)
        let count = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, 512) }
        guard count >= 6 else { return false }
        if head.starts(with: [0x1f, 0x8b]) || head.starts(with: [0x42, 0x5a, 0x68]) || head.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])
            || head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return true }
        return count == 512 && Array(head[257..<262]) == Array("ustar".utf8)
    }

    func copy(_ selections: [(name: [UInt8], node: Node)], archives: [Bool], to target: String, intoDirectory: Bool,
              owner: (uid: UInt32, gid: UInt32)?, mode: UInt16?, tree: Node, ingest: Ingest, instruction: Instruction) throws {
        // The files' data first, from the recipe's directory (its file cache skips what is unchanged).
        let pipeline = ingest.startFiles(cache: FileCache.load(for: context.directory, in: store))
        var expanded: [(name: [UInt8], node: Node, archive: Bool)] = []
        for (index, selection) in selections.enumerated() {
            if archives[index], case .regular(let file) = selection.node.content {
                let path = String(decoding: file.sourcePath ?? [], as: UTF8.self)
                expanded.append((selection.name, try TarReader().read(path, ingest: { size, read in try ingest.ingestStream(size: size, read: read) }).root, true))
            } else {
                expanded.append((selection.name, selection.node, false))
                selection.node.walk { _, node in
                    if case .regular = node.content { pipeline.submit(node) }
                }
            }
        }
        try pipeline.finish()
        let changes = ChangeSet(root: tree, form: .plain)
        let time = Timestamp(seconds: epoch)
        func metadata(_ original: Metadata, keepOwner: Bool) -> Metadata {
            var metadata = original
            if !keepOwner || owner != nil {
                metadata.uid = owner?.uid ?? 0
                metadata.gid = owner?.gid ?? 0
            }
            if let mode, metadata.kind != .symlink { metadata.permissions = mode }
            if metadata.mtime > time { metadata.mtime = time }
            metadata.xattrs = keepOwner ? metadata.xattrs : []
            return metadata
        }
        for (name, node, archive) in expanded {
            let isDirectory = node.directory != nil
            let destination = normalized(target) + (isDirectory || intoDirectory ? "" : "")
            let (parent, missing): ([[UInt8]], [String])
            if isDirectory || intoDirectory {
                (parent, missing) = try existingPrefix(tree, destination, instruction)
            } else {
                let parentPath = (destination as NSString).deletingLastPathComponent
                let (p, m) = try existingPrefix(tree, parentPath, instruction)
                (parent, missing) = (p, m + [(destination as NSString).lastPathComponent])
            }
            var base = parent
            // Directories the destination lacks: made with the copy's owner.
            let madeCount = isDirectory || intoDirectory ? missing.count : missing.count - 1
            for component in missing.prefix(madeCount) {
                base.append(Array(component.utf8))
                let made = Metadata(kind: .directory, permissions: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mtime: time)
                try changes.apply(components: base, metadata: made, content: .directory(Directory()))
            }
            let top: [[UInt8]]
            if isDirectory {
                top = base
            } else if intoDirectory {
                top = base + [name]
            } else {
                top = base + [Array(missing.last!.utf8)]
            }
            var failure: Error?
            node.walk { relative, entry in
                guard failure == nil else { return }
                // A directory source gives its contents; the destination directory itself keeps its
                // metadata when it is there.
                if relative.isEmpty && isDirectory { return }
                let components = top + relative.split(separator: UInt8(ascii: "/")).map(Array.init)
                var content = entry.content
                var entryMetadata = entry.metadata
                if case .hardlink(let path) = entry.content, let holder = node.lookup(path) {
                    content = holder.content
                    entryMetadata = holder.metadata
                }
                switch content {
                case .directory: content = .directory(Directory())
                case .regular(var file):
                    file.sourcePath = nil
                    file.stamp = nil
                    content = .regular(file)
                default: break
                }
                do {
                    try changes.apply(components: components, metadata: metadata(entryMetadata, keepOwner: archive), content: content)
                } catch {
                    failure = error
                }
            }
            if let failure { throw failure }
        }
        try changes.finish()
    }

    // MARK: Accounts

    struct Account {
        var uid: UInt32
        var gid: UInt32
        var groups: [UInt32]
        var home: String
    }

    /// The USER in effect, from the tree's /etc/passwd and /etc/group.
    func account(_ tree: Node, _ instruction: Instruction) throws -> Account {
        guard !user.isEmpty else { return Account(uid: 0, gid: 0, groups: [0], home: "/root") }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = try accountFile(tree, "/etc/passwd")
        var account: Account
        if let entry = passwd.first(where: { $0[0] == parts[0] }) ?? UInt32(parts[0]).flatMap({ uid in passwd.first { $0[2] == String(uid) } }),
           entry.count >= 6, let uid = UInt32(entry[2]), let gid = UInt32(entry[3]) {
            account = Account(uid: uid, gid: gid, groups: [gid], home: entry[5])
            for group in try accountFile(tree, "/etc/group") where group.count >= 4 {
                if group[3].split(separator: ",").contains(Substring(entry[0])), let id = UInt32(group[2]), !account.groups.contains(id) {
                    account.groups.append(id)
                }
            }
        } else if let uid = UInt32(parts[0]) {
            account = Account(uid: uid, gid: uid, groups: [uid], home: "/")
        } else {
            throw fail(instruction, "USER \(user): no such user in /etc/passwd")
        }
        if parts.count > 1 {
            account.gid = try groupID(parts[1], tree, instruction)
            account.groups = [account.gid]
        }
        return account
    }

    func chownAccount(_ text: String, _ tree: Node, _ instruction: Instruction) throws -> (uid: UInt32, gid: UInt32) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard let name = parts.first else { throw fail(instruction, "--chown=\(text): user[:group]") }
        let passwd = try accountFile(tree, "/etc/passwd")
        let entry = passwd.first { $0[0] == name }
        guard let uid = UInt32(name) ?? entry.flatMap({ UInt32($0[2]) }) else {
            throw fail(instruction, "--chown=\(text): no user '\(name)' in /etc/passwd")
        }
        if parts.count > 1 { return (uid, try groupID(parts[1], tree, instruction)) }
        return (uid, entry.flatMap { UInt32($0[3]) } ?? uid)
    }

    func groupID(_ name: String, _ tree: Node, _ instruction: Instruction) throws -> UInt32 {
        if let id = UInt32(name) { return id }
        guard let group = try accountFile(tree, "/etc/group").first(where: { $0[0] == name }), group.count >= 3, let id = UInt32(group[2]) else {
            throw fail(instruction, "\(instruction.keyword): no group '\(name)' in /etc/group")
        }
        return id
    }

    /// The colon-separated lines of a file of the tree (at most 4 MiB).
    func accountFile(_ tree: Node, _ path: String) throws -> [[String]] {
        guard let found = tree.resolve(path), case .regular(let file) = found.node.content, file.size <= 4 << 20 else { return [] }
        var bytes: [UInt8] = []
        try StoreFileReader(store: store).stream(file) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 3 }
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

/// The last lines a RUN wrote, for its failure's message.
struct OutputTail {
    private var bytes: [UInt8] = []

    mutating func append(_ more: [UInt8]) {
        bytes += more
        if bytes.count > 16384 { bytes.removeFirst(bytes.count - 8192) }
    }

    func lines(_ count: Int) -> [String] {
        String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).suffix(count).map(String.init)
    }
}
