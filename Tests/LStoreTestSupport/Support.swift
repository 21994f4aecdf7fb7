import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished process left: its exit status and what it printed.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public var succeeded: Bool { status == 0 }
}

/// The repository's root directory (where Package.swift is).
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
    }
    fatalError("Package.swift not found above \(#filePath)")
}()

/// The `lstore` binary under test: `$LSTORE_BIN`, else the debug build.
public let lstoreBinary: String = {
    if let path = ProcessInfo.processInfo.environment["LSTORE_BIN"], !path.isEmpty { return path }
    return repositoryRoot + "/.build/debug/lstore"
}()

/// SIGPIPE ignored in the test process, once: a write to a child or server that went away fails
/// with EPIPE instead of ending every test.
private let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()

/// Runs `executable` with `arguments`, waits, and returns what it printed.
@discardableResult
public func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                stdin: String? = nil, directory: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
    process.arguments = executable.hasPrefix("/") ? arguments : [executable] + arguments
    var env = ProcessInfo.processInfo.environment
    env["TERM"] = "dumb"
    for (key, value) in environment { env[key] = value }
    process.environment = env
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    ignoreBrokenPipes
    try process.run()
    // A child that exits before reading its input must not take the test process with it.
    if let stdin { try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    // Read both pipes while the process runs, so a full pipe never blocks it.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs a shell command line with bash; throws when it fails.
@discardableResult
public func sh(_ script: String, environment: [String: String] = [:]) throws -> String {
    let result = try run("/bin/bash", ["-c", "set -euo pipefail; " + script], environment: environment)
    guard result.succeeded else {
        throw TestFailure("command failed (\(result.status)): \(script)\n\(result.stderr)\(result.stdout)")
    }
    return result.stdout
}

/// Runs `lstore ARGS` with `--store store` prepended when given.
@discardableResult
public func lstore(_ arguments: [String], store: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
    try run(lstoreBinary, (store.map { ["--store", $0] } ?? []) + arguments, environment: environment)
}

/// Runs `lstore ARGS` and throws unless it succeeds; returns its standard output.
@discardableResult
public func lstoreOK(_ arguments: [String], store: String? = nil, environment: [String: String] = [:]) throws -> String {
    let result = try lstore(arguments, store: store, environment: environment)
    guard result.succeeded else {
        throw TestFailure("lstore \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
    }
    return result.stdout
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A new empty directory under /var/tmp (a real disk: xattrs of every namespace work there),
/// removed with everything in it when the value goes away.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ label: String = "test") {
        var template = Array("/var/tmp/lstore-\(label)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    public func sub(_ name: String) -> String { path + "/" + name }

    deinit {
        _ = try? run("/bin/rm", ["-rf", path])
    }
}

/// True when running as root: the tests that make device nodes and set owners need it.
public var isRoot: Bool { getuid() == 0 }

/// The directory of the Debian layer chain (`$LSTORE_CHAIN`, built by debian-chain.sh), when the
/// integration tests have one.
public let debianChain: String? = ProcessInfo.processInfo.environment["LSTORE_CHAIN"].flatMap { $0.isEmpty ? nil : $0 }

/// The manifest of a tree as `Fixtures/manifest.py` prints it: every entry, its metadata, content
/// hash and hardlink set; an oracle that shares no code with lstore.
public func manifest(_ directory: String, options: [String] = []) throws -> String {
    let result = try run("python3", [repositoryRoot + "/Fixtures/manifest.py"] + options + [directory])
    guard result.succeeded else { throw TestFailure("manifest.py \(directory) failed: \(result.stderr)") }
    return result.stdout
}

/// The manifest (`options` as for `manifest`) of what the kernel shows when it mounts the squashfs
/// `images` read-only, the first one the bottom layer, and stacks them with overlayfs, as lstore's
/// boot hooks do. The mounts are made in `scratch` and undone before it returns.
public func overlayManifest(_ images: [String], in scratch: TemporaryDirectory, options: [String]) throws -> String {
    var lowers: [String] = []
    defer { _ = try? sh("for m in \(lowers.joined(separator: " ")); do umount $m; done") }
    for (index, image) in images.enumerated() {
        let mountPoint = scratch.sub("layer-\(index)-\(UUID().uuidString.prefix(8))")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        lowers.insert(mountPoint, at: 0)
    }
    let merged = scratch.sub("merged-\(UUID().uuidString.prefix(8))")
    try sh("mkdir \(merged) && mount -t overlay lstore-test -o lowerdir=\(lowers.joined(separator: ":")) \(merged)")
    defer { _ = try? sh("umount \(merged)") }
    return try manifest(merged, options: options)
}

/// Makes the corner-case tree (`Fixtures/make-corner-tree.sh`) at `directory`.
public func makeCornerTree(_ directory: String) throws {
    let result = try run("/bin/bash", [repositoryRoot + "/Fixtures/make-corner-tree.sh", directory])
    guard result.succeeded else { throw TestFailure("make-corner-tree.sh failed: \(result.stderr)") }
}

/// The lines that differ between two manifests, for a readable failure.
public func manifestDifference(_ a: String, _ b: String) -> String {
    let left = Set(a.split(separator: "\n")), right = Set(b.split(separator: "\n"))
    let onlyLeft = left.subtracting(right).sorted().prefix(10).map { "- \($0)" }
    let onlyRight = right.subtracting(left).sorted().prefix(10).map { "+ \($0)" }
    return (onlyLeft + onlyRight).joined(separator: "\n")
}
