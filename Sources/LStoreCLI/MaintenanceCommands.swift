import ArgumentParser
import Foundation
import LStoreCompression
import LStoreStore
import LStoreTree

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check integrity: every reachable object present and its hash right.",
        discussion: "--full also reads every block, decompresses it and checks its SHA-256, and checks every pack's checksum.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Read and verify every block and pack.") var full = false

    func run() throws {
        let store = try storeOptions.open()
        let bar = ProgressBar("checking", total: 0, bytes: false)
        let report = store.fsck(full: full, progress: { bar.update(UInt64($0)) })
        bar.finish()
        if output.json {
            try printJSON(["clean": report.isClean, "errors": report.errors, "warnings": report.warnings,
                           "refs": report.refs, "commits": report.commits, "trees": report.trees, "files": report.files,
                           "blocks": report.blocks, "packs": report.packs, "verifiedBytes": report.verifiedBytes] as [String: Any])
        } else {
            for error in report.errors { print("error: \(error)") }
            for warning in report.warnings { print("warning: \(warning)") }
            print("\(report.refs) refs, \(report.commits) commits, \(report.trees) trees, \(report.files) files, "
                  + "\(report.blocks) blocks in \(report.packs) packs" + (full ? ", \(humanBytes(report.verifiedBytes)) verified" : "")
                  + (report.isClean ? ": clean" : ": \(report.errors.count) error(s)"))
        }
        if !report.isClean { throw ExitCode(1) }
    }
}

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "Drop what no ref reaches; say how much it freed.")

    @OptionGroup var storeOptions: StoreOptions
    @Flag(name: .customLong("dry-run"), help: "Only say what would be freed.") var dryRun = false

    func run() throws {
        let store = try storeOptions.open()
        let bar = ProgressBar("collecting", total: 0, bytes: false)
        let report = try store.gc(dryRun: dryRun, progress: { done, _ in bar.update(UInt64(done)) })
        bar.finish()
        let verb = dryRun ? "would remove" : "removed"
        print("\(verb) \(report.objectsRemoved) objects, \(dryRun ? "would free" : "freed") \(humanBytes(UInt64(max(0, report.freedBytes)))) "
              + "(\(report.packsBefore) packs → \(report.packsAfter))")
    }
}

struct RepackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repack",
        abstract: "Recompress every stored object with another codec or level, e.g. zstd:19 for smaller images.",
        discussion: "Drops unreachable objects too. Later commits use the new setting.")

    @OptionGroup var storeOptions: StoreOptions
    @Option(help: ArgumentHelp("The new codec and level.", valueName: "codec[:level]")) var compression: String
    @Option(help: "Worker threads (default: every core).") var threads: Int?

    func run() throws {
        let spec = try CompressionSpec(parsing: compression)
        let store = try storeOptions.open()
        let bar = ProgressBar("recompressing", total: 0, bytes: false)
        let report = try store.gc(dryRun: false, recompress: spec, threads: threads ?? availableCores(),
                                  progress: { done, _ in bar.update(UInt64(done)) })
        bar.finish()
        print("repacked with \(spec): \(humanBytes(report.bytesBefore)) → \(humanBytes(report.bytesAfter))")
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Stored bytes, logical bytes, dedup ratio, and per ref.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let stats = try store.stats()
        if output.json {
            return try printJSON([
                "storedBytes": stats.storedBytes, "logicalBytes": stats.logicalBytes, "dedupRatio": stats.dedupRatio,
                "packs": stats.packs, "objects": stats.objects, "blockSize": store.blockSize, "compression": "\(store.compression)",
                "refs": stats.refs.map { ["name": $0.name, "commit": $0.commit.hex, "logicalBytes": $0.logicalBytes,
                                          "files": $0.files, "storedBytes": $0.storedBytes, "ownBytes": $0.ownBytes] as [String: Any] },
            ] as [String: Any])
        }
        print("store:    \(store.path) (\(store.compression), \(store.blockSize / 1024)K blocks)")
        print("stored:   \(humanBytes(stats.storedBytes)) in \(stats.packs) packs, \(stats.objects) objects")
        print("logical:  \(humanBytes(stats.logicalBytes)) (the sum over refs)")
        print(String(format: "dedup:    %.2fx", stats.dedupRatio))
        if !stats.refs.isEmpty {
            print()
            print("ref\tcommit\tlogical\tstored\tadds over parent\tfiles")
            for ref in stats.refs {
                print("\(ref.name)\t\(ref.commit.short)\t\(humanBytes(ref.logicalBytes))\t\(humanBytes(ref.storedBytes))\t\(humanBytes(ref.ownBytes))\t\(ref.files)")
            }
        }
    }
}
