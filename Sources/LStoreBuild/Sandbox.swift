import CLStoreSys
import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// One RUN's sandbox, as the build hands it to the keeper process (`lstore build-sandbox SPEC`):
/// spec/build.md §4.
public struct SandboxRequest: Codable, Sendable {
    public var image: String?
    public var lower: String
    public var mountPoints: String?
    public var upper: String
    public var work: String
    public var root: String
    public var resolvConf: String?
    public var isolateNetwork: Bool
    public var hostname: String
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    public var cwd: String
    public var argv: [String]
    public var environment: [String]
    /// Where the keeper writes how the command ended (`SandboxResult`, JSON).
    public var result: String
}

/// How the command ended, or why the sandbox could not be made.
public struct SandboxResult: Codable, Sendable {
    /// The command's exit status, 128 + the signal that killed it; nil when it never ran.
    public var status: Int32?
    public var error: String?
}

public enum Sandbox {
    /// The keeper's side: reads the request at `specPath`, runs it (the calling process keeps the
    /// namespaces), writes the result; returns the exit code for the keeper process.
    public static func keep(specPath: String) -> Int32 {
        guard let data = FileManager.default.contents(atPath: specPath),
              let request = try? JSONDecoder().decode(SandboxRequest.self, from: data) else {
            note("lstore build-sandbox: \(specPath): not a sandbox request")
            return 2
        }
        var error = [CChar](repeating: 0, count: 2048)
        let code: Int32 = withCStrings(request.argv) { argv in
            withCStrings(request.environment) { envp in
                request.groups.withUnsafeBufferPointer { groups in
                    optionalCString(request.image) { image in
                        optionalCString(request.mountPoints) { mountPoints in
                            optionalCString(request.resolvConf) { resolv in
                                var sandbox = lstore_sandbox()
                                sandbox.image = image
                                sandbox.mount_points = mountPoints
                                sandbox.resolv_conf = resolv
                                sandbox.isolate_network = request.isolateNetwork ? 1 : 0
                                sandbox.uid = request.uid
                                sandbox.gid = request.gid
                                sandbox.groups = groups.baseAddress
                                sandbox.group_count = Int32(groups.count)
                                sandbox.argv = argv
                                sandbox.envp = envp
                                return request.lower.withCString { lower in
                                    request.upper.withCString { upper in
                                        request.work.withCString { work in
                                            request.root.withCString { root in
                                                request.hostname.withCString { hostname in
                                                    request.cwd.withCString { cwd in
                                                        sandbox.lower = lower
                                                        sandbox.upper = upper
                                                        sandbox.work = work
                                                        sandbox.root = root
                                                        sandbox.hostname = hostname
                                                        sandbox.cwd = cwd
                                                        return lstore_sandbox_run(&sandbox, &error, Int32(error.count))
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let result = code >= 0 ? SandboxResult(status: code, error: nil) : SandboxResult(status: nil, error: message)
        if let bytes = try? JSONEncoder().encode(result) { _ = FileManager.default.createFile(atPath: request.result, contents: bytes) }
        return code >= 0 ? 0 : 1
    }

    /// The build's side: starts the keeper (`executable build-sandbox SPEC`), hands `output` what the
    /// command writes (standard output and error, in order) while it runs, and returns how it ended.
    /// A cancelling signal (`lstore_cancel_install`) ends the lifeline, and so the command.
    static func run(_ request: SandboxRequest, spec: String, executable: String,
                    output: ([UInt8]) -> Void) throws -> SandboxResult {
        try writeFileAtomically(Array(try JSONEncoder().encode(request)), to: spec, durable: false)
        unlink(request.result)
        var lifeline: [Int32] = [-1, -1], pipeOut: [Int32] = [-1, -1]
        guard lstore_pipe_cloexec(&lifeline) == 0 else { throw BuildError("pipe: \(String(cString: strerror(errno)))") }
        guard lstore_pipe_cloexec(&pipeOut) == 0 else {
            close(lifeline[0]); close(lifeline[1])
            throw BuildError("pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, lifeline[0], 0)
        posix_spawn_file_actions_adddup2(&actions, pipeOut[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeOut[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let arguments = [executable, "build-sandbox", spec]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
        close(lifeline[0])
        close(pipeOut[1])
        guard spawned == 0 else {
            close(lifeline[1])
            close(pipeOut[0])
            throw BuildError("\(executable): cannot start the sandbox: \(String(cString: strerror(spawned)))")
        }
        lstore_cancel_watch(lifeline[1])
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(pipeOut[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            output(Array(buffer[0..<count]))
        }
        close(pipeOut[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let fd = lstore_cancel_unwatch()
        if fd >= 0 { close(fd) }
        if lstore_cancel_signal() != 0 { throw BuildInterrupted(signal: lstore_cancel_signal()) }
        guard let data = FileManager.default.contents(atPath: request.result),
              let result = try? JSONDecoder().decode(SandboxResult.self, from: data) else {
            throw BuildError("the sandbox ended without saying how (status \(status))")
        }
        return result
    }
}

/// A build stopped by SIGINT, SIGTERM or SIGHUP: nothing of it is kept.
public struct BuildInterrupted: Error, CustomStringConvertible {
    public var signal: Int32
    public var description: String { "interrupted (signal \(signal)): no ref moved" }
}

/// A build that failed: one line.
public struct BuildError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `strings` as a NULL-terminated array of C strings, for the call's duration.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { body($0) }
    }
}

func optionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
