import ArgumentParser
import CLStoreSys
import Foundation
import LStoreStore
import LStoreTree
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Options every subcommand that touches a store shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory.", discussion:
        "Default: $LSTORE_STORE, else /var/lib/lstore for root, else ~/.local/share/lstore.", valueName: "dir"))
    var store: String?

    /// The store's path: `--store`, `$LSTORE_STORE`, `/var/lib/lstore` (root) or `~/.local/share/lstore`.
    var path: String {
        if let store { return store }
        let environment = ProcessInfo.processInfo.environment
        if let fromEnvironment = environment["LSTORE_STORE"], !fromEnvironment.isEmpty { return fromEnvironment }
        if getuid() == 0 { return "/var/lib/lstore" }
        if let data = environment["XDG_DATA_HOME"], !data.isEmpty { return data + "/lstore" }
        return (environment["HOME"] ?? "/tmp") + "/.local/share/lstore"
    }

    func open() throws -> Store { try Store.open(at: path) }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false
}

/// Prints `value` as JSON (sorted keys) on standard output.
func printJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// Writes a line to standard error.
func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `1.5 GB`, `340 MB`, `12 KB`, `512 B`: decimal units, as `du -h --si` prints.
func humanBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: value < 10 ? "%.2f %@" : value < 100 ? "%.1f %@" : "%.0f %@", value, units[unit])
}

/// `128K`, `1M`, `4096`.
func parseSize(_ text: String) -> Int? {
    let upper = text.uppercased()
    let multipliers: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("K", 1 << 10), ("M", 1 << 20), ("KB", 1 << 10), ("MB", 1 << 20)]
    for (suffix, factor) in multipliers where upper.hasSuffix(suffix) {
        return Int(upper.dropLast(suffix.count)).map { $0 * factor }
    }
    return Int(upper)
}

func isoTime(_ seconds: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}

/// A progress bar on standard error when it is a terminal; nothing otherwise.
final class ProgressBar: Sendable {
    private let label: String
    private let total: UInt64
    private let unitIsBytes: Bool
    private let enabled: Bool
    private let last = Mutex<(time: Double, shown: Bool)>((0, false))

    init(_ label: String, total: UInt64, bytes: Bool) {
        self.label = label
        self.total = total
        unitIsBytes = bytes
        enabled = isatty(2) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    func update(_ done: UInt64) {
        guard enabled else { return }
        let now = ProcessInfo.processInfo.systemUptime
        let draw = last.withLock { state -> Bool in
            guard now - state.time >= 0.1 else { return false }
            state = (now, true)
            return true
        }
        guard draw else { return }
        let width = max(10, min(40, Int(lstore_terminal_width(2)) - 50))
        let shown = unitIsBytes ? humanBytes(done) : "\(done)"
        let count = total == 0 ? shown : shown + " / " + (unitIsBytes ? humanBytes(total) : "\(total)")
        var line = "\r\(label) "
        if total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let filled = Int(fraction * Double(width))
            line += "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
            line += String(format: "%3.0f%% ", fraction * 100)
        }
        line += count + "\u{1B}[K"
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled, last.withLock({ $0.shown }) else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// Errors a command reports as one line, exit status 1.
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func availableCores() -> Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
