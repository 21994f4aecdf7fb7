import ArgumentParser
import Foundation
import LStoreBoot
import LStoreCompression
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// `lstore`: immutable, reproducible, inheritable root filesystems.
public struct LStoreCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "lstore",
        abstract: "Store root filesystems as layers, stacked like git commits, and check them out exactly.",
        version: "0.1.0",
        subcommands: [
            InitCommand.self, CommitCommand.self, CheckoutCommand.self, SquashfsCommand.self, InspectCommand.self,
            RefsCommand.self, RefCommand.self, LogCommand.self, ShowCommand.self, DiffCommand.self,
            FsckCommand.self, GCCommand.self, RepackCommand.self, StatsCommand.self, ReflogCommand.self, BootCommand.self,
            ServeCommand.self, RemoteCommand.self, PullCommand.self, PushCommand.self, ImportCommand.self, ExportCommand.self,
            LoginCommand.self, LogoutCommand.self, BuildCommand.self, BuildSandboxCommand.self,
        ])

    public init() {}

    /// Runs the command line `arguments` (without the program name) and exits. A leading
    /// `--store DIR` is accepted before the subcommand, as `git -C` is.
    public static func run(_ arguments: [String]) -> Never {
        var arguments = arguments
        if let index = arguments.firstIndex(where: { $0 == "--store" || $0.hasPrefix("--store=") }),
           index < (arguments.firstIndex { !$0.hasPrefix("-") } ?? arguments.count) {
            let option = arguments.remove(at: index)
            let value: String
            if option.hasPrefix("--store=") {
                value = String(option.dropFirst("--store=".count))
            } else if index < arguments.count {
                value = arguments.remove(at: index)
            } else {
                note("lstore: --store needs a directory")
                Glibc.exit(2)
            }
            setenv("LSTORE_STORE", value, 1)
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            Self.exit(withError: error)
        }
        do {
            try command.run()
            Glibc.exit(0)
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch where Self.exitCode(for: error) != .failure {
            // The parser's own errors, known by the exit it gives them: help (`--help`, `lstore
            // help`), printed with status 0; a ValidationError, with the usage and status 64.
            // Every other error is ours: one line, status 1.
            Self.exit(withError: error)
        } catch {
            note("lstore: \(error)")
            Glibc.exit(1)
        }
    }
}

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create a new, empty store.")

    @OptionGroup var storeOptions: StoreOptions

    @Option(help: ArgumentHelp("Codec and level of stored blocks: zstd[:1-22], lz4[:hc], gzip[:1-9], xz[:0-9], none.",
                               valueName: "codec[:level]"))
    var compression = "zstd:6"

    @Option(name: .customLong("block-size"), help: ArgumentHelp("Block size: a power of two from 4K to 1M.", valueName: "size"))
    var blockSize = "128K"

    func run() throws {
        guard let size = parseSize(blockSize) else { throw CommandError("invalid block size '\(blockSize)'") }
        let spec = try CompressionSpec(parsing: compression)
        let path = storeOptions.path
        try makeDirectories(URL(fileURLWithPath: path).deletingLastPathComponent().path)
        try Store.initialize(at: path, config: StoreConfig(blockSize: size, compression: spec))
        print("initialized store \(path) (\(spec), \(size / 1024)K blocks)")
    }
}
