import ArgumentParser
import CLStoreSys
import Foundation
import LStoreBuild
import LStoreImage
import LStoreOCI
import LStoreStore
#if canImport(Glibc)
import Glibc
#endif

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build layers from recipes (Dockerfile syntax) on their parents: cached, isolated, reproducible.",
        discussion: """
            PATH is a recipe directory (holding an Lstorefile, Containerfile or Dockerfile) or a recipe file; its \
            directory is what COPY and ADD read, less what .lstoreignore or .dockerignore leaves out. With --all or \
            --tree, PATH is a tree of recipe directories: recipes/gaming builds the ref gaming, and a FROM naming \
            another recipe builds that one first. Each step that changes the tree is a commit; a step whose parent, \
            instruction and inputs the store has built before is taken from there. RUN executes chrooted in the \
            parent's image under an overlay, in new mount, PID, UTS and IPC namespaces. Times: SOURCE_DATE_EPOCH, \
            else the newest file time of the parent. See spec/build.md.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "A recipe directory or file; with --all or --tree, a directory of recipes.")
    var path: String

    @Option(help: "The ref to build (default: the recipe directory's name).")
    var ref: String?

    @Flag(help: "Build every recipe under PATH, parents first; what is unchanged is taken from the cache.")
    var all = false

    @Flag(help: "Show the recipes' inheritance tree and which are out of date; build nothing.")
    var tree = false

    @Option(help: ArgumentHelp("Also write the built layer's squashfs image here.", valueName: "file"))
    var squashfs: String?

    @Flag(name: .customLong("no-cache"), help: "Run every step again.")
    var noCache = false

    @Option(help: ArgumentHelp("RUN's network: host (default) or none (only loopback).", valueName: "host|none"))
    var network = "host"

    @Option(name: .customLong("build-arg"), help: ArgumentHelp("A value for an ARG of the recipes.", valueName: "name=value"))
    var buildArgs: [String] = []

    @Option(help: ArgumentHelp("Push each built ref as REPO/NAME:latest and REPO/NAME:COMMIT.", valueName: "docker://registry/repo"))
    var push: String?

    @Option(help: "Worker threads (default: every core).")
    var threads: Int?

    @OptionGroup var registryOptions: RegistryCommandOptions
    @OptionGroup var peerOptions: PeerOptions
    @OptionGroup var pushOptions: ImagePushOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["host", "none"].contains(network) else { throw ValidationError("--network '\(network)': host or none") }
        for argument in buildArgs where !argument.contains("=") {
            throw ValidationError("--build-arg '\(argument)': name=value")
        }
        if all && tree { throw ValidationError("--all builds, --tree only shows: give one") }
        if (all || tree) && ref != nil { throw ValidationError("--ref names one recipe's ref: not with --all or --tree") }
        if all && squashfs != nil { throw ValidationError("--squashfs writes one recipe's image: not with --all") }
        if let push, !push.hasPrefix("docker://") { throw ValidationError("--push '\(push)': a docker://registry/repository") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        let store = try storeOptions.open()
        removeStaleBuildScratch(store)
        var options = BuildOptions(registry: try registryOptions.options(peer: peerOptions),
                                   executable: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                                       ?? CommandLine.arguments[0])
        options.noCache = noCache
        options.isolateNetwork = network == "none"
        options.threads = threads ?? availableCores()
        for argument in buildArgs {
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            options.buildArguments[String(parts[0])] = String(parts[1])
        }
        if let text = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"], !text.isEmpty {
            guard let value = Int64(text), value >= 0 else { throw CommandError("SOURCE_DATE_EPOCH '\(text)' is not a number of seconds") }
            options.sourceDateEpoch = value
        }
        var importOptions = ImportOptions()
        importOptions.limits = try ImportLimits(environment: ProcessInfo.processInfo.environment)
        options.importOptions = importOptions
        let json = output.json
        let builder = Builder(store: store, options: options) { recipe, event in
            switch event {
            case .step(let number, let count, let instruction, let cached):
                // Progress goes to standard error, with --json too: standard output is the result.
                note("\(recipe): step \(number)/\(count): \(instruction.prefix(160))" + (cached.map { ": cached \($0.short)" } ?? ""))
            case .output(let bytes):
                FileHandle.standardError.write(Data(bytes))
            case .note(let text):
                note("\(recipe): \(text)")
            }
        }
        let jobs: [RecipeSet.Entry]
        if all || tree {
            jobs = try RecipeSet(top: path, buildArguments: options.buildArguments).entries
        } else {
            let job = try RecipeSet.single(path, ref: ref)
            jobs = [RecipeSet.Entry(job: job, parent: nil, from: "")]
        }
        if tree { return try showTree(jobs, builder: builder) }

        lstore_cancel_install()
        var rows: [[String: Any]] = []
        for entry in jobs {
            let started = Date()
            guard let outcome = try builder.build(entry.job) else { continue }
            builder.built[entry.job.name] = outcome.commit
            let seconds = Date().timeIntervalSince(started)
            if outcome.upToDate {
                note("\(outcome.name): up to date, nothing built (\(outcome.stepsCached) step(s) cached): \(outcome.ref) is \(outcome.commit.short)")
            } else {
                note("\(outcome.name): \(outcome.ref) is \(outcome.commit.short)" + (outcome.previous.map { " (was \($0.short))" } ?? "")
                     + ": \(outcome.stepsRun) step(s) run, \(outcome.stepsCached) cached, in " + String(format: "%.2f s", seconds))
            }
            var row: [String: Any] = ["recipe": outcome.name, "ref": outcome.ref, "commit": outcome.commit.hex, "upToDate": outcome.upToDate,
                                      "stepsRun": outcome.stepsRun, "stepsCached": outcome.stepsCached,
                                      "seconds": (seconds * 1000).rounded() / 1000]
            if let squashfs {
                let commit = try store.commit(outcome.commit)
                let settings = ImageSettings(threads: options.threads)
                let result = try writeImageReporting(try store.loadTree(commit.tree), source: StoreBlockSource(store: store),
                                                     options: settings.options(for: store, time: commit.time), to: squashfs)
                note("\(outcome.name): image \(squashfs) (\(humanBytes(result.fileSize)))")
                row["squashfs"] = squashfs
            }
            if let push {
                let export = ExportOptions(format: ExportFormat(rawValue: pushOptions.format)!,
                                           compression: LayerCompression(rawValue: pushOptions.compression)!, threads: options.threads)
                let published = try publish(outcome, to: push, store: store, registry: options.registry, export: export,
                                            blockIndex: !pushOptions.noBlockIndex)
                note("\(outcome.name): pushed \(published.references.joined(separator: " and ")) (\(published.manifest.short)): "
                     + "\(published.uploaded) blob(s) uploaded (\(humanBytes(UInt64(published.bytesUploaded))))")
                row["pushed"] = published.references
                row["manifest"] = published.manifest.description
            }
            rows.append(row)
            if !json { print(outcome.commit.hex) }
        }
        if json { try printJSON(all ? rows as Any : rows.first as Any) }
    }

    /// `--tree`: each recipe under its parent, and whether building it would make anything.
    func showTree(_ jobs: [RecipeSet.Entry], builder: Builder) throws {
        var status: [String: String] = [:]
        var stale: Set<String> = []
        for entry in jobs {
            if let parent = entry.parent, stale.contains(parent) {
                stale.insert(entry.job.name)
                status[entry.job.name] = "out of date (its parent \(parent) is)"
                continue
            }
            if let outcome = try builder.build(entry.job, check: true) {
                builder.built[entry.job.name] = outcome.commit
                if outcome.upToDate {
                    status[entry.job.name] = "up to date (\(outcome.commit.short))"
                } else {
                    stale.insert(entry.job.name)
                    status[entry.job.name] = "out of date (\(entry.job.ref) is \(outcome.previous?.short ?? "not there"), the cache gives \(outcome.commit.short))"
                }
            } else {
                stale.insert(entry.job.name)
                status[entry.job.name] = "out of date (\(builder.staleReason))"
            }
        }
        if output.json {
            return try printJSON(jobs.map { entry -> [String: Any] in
                ["recipe": entry.job.name, "from": entry.from, "parent": entry.parent ?? "", "upToDate": !stale.contains(entry.job.name),
                 "status": status[entry.job.name] ?? ""]
            })
        }
        let set = jobs
        func children(_ name: String?) -> [RecipeSet.Entry] {
            set.filter { $0.parent == name }.sorted { $0.job.name < $1.job.name }
        }
        func show(_ entry: RecipeSet.Entry, prefix: String, last: Bool, top: Bool) {
            let branch = top ? "" : (last ? "└─ " : "├─ ")
            let from = top ? " (FROM \(entry.from))" : ""
            print("\(prefix)\(branch)\(entry.job.name)\(from): \(status[entry.job.name] ?? "")")
            let kids = children(entry.job.name)
            for (index, child) in kids.enumerated() {
                show(child, prefix: prefix + (top ? "" : (last ? "   " : "│  ")), last: index == kids.count - 1, top: false)
            }
        }
        for root in children(nil) { show(root, prefix: "", last: true, top: true) }
    }
}

/// The keeper of one RUN's sandbox, started by `lstore build` itself (spec/build.md §4).
struct BuildSandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "build-sandbox", abstract: "Keep one RUN's sandbox (used by lstore build).",
                                                    shouldDisplay: false)

    @Argument(help: "The sandbox request.") var spec: String

    func run() throws {
        let code = Sandbox.keep(specPath: spec)
        if code != 0 { throw ExitCode(code) }
    }
}
