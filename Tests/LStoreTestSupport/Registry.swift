import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Real registries and a Docker engine on loopback for the registry tests: each fixture runs the
// script of Fixtures/ that starts it, keeps its files in a temporary directory, and stops it when
// the value goes away (and, for whatever is still running, when the test process exits).

/// True when `name` is an executable file in a directory of `$PATH`.
public func toolExists(_ name: String) -> Bool {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}

/// The fixtures still running, stopped by an atexit hook if their values were never released
/// (a test that crashed, or a shared fixture that lives as long as the process).
private final class RunningFixtures: @unchecked Sendable {
    static let shared = RunningFixtures()
    private let lock = NSLock()
    private var stops: [ObjectIdentifier: () -> Void] = [:]

    private init() {
        atexit { RunningFixtures.shared.stopAll() }
    }

    func add(_ owner: AnyObject, stop: @escaping () -> Void) {
        lock.lock(); defer { lock.unlock() }
        stops[ObjectIdentifier(owner)] = stop
    }

    func remove(_ owner: AnyObject) {
        lock.lock(); defer { lock.unlock() }
        stops[ObjectIdentifier(owner)] = nil
    }

    func stopAll() {
        lock.lock()
        let all = stops.values
        stops = [:]
        lock.unlock()
        for stop in all { stop() }
    }
}

/// One line of a fake registry's request log (`Fixtures/lying-registry.py`):
/// `METHOD PATH STATUS BYTES AUTH`.
public struct RegistryRequest: Sendable, Equatable, CustomStringConvertible {
    public var method: String
    /// The path as requested, query included.
    public var path: String
    public var status: Int
    /// The body bytes sent, as far as the client took them.
    public var bytes: Int
    /// Whether the request carried an Authorization field.
    public var authorized: Bool

    public var description: String { "\(method) \(path) \(status) \(bytes) \(authorized ? "yes" : "no")" }

    /// The path without its query.
    public var route: String { String(path.split(separator: "?", maxSplits: 1).first ?? "") }
    /// A request for a manifest (`/v2/NAME/manifests/REF`).
    public var isManifest: Bool { route.hasPrefix("/v2/") && route.contains("/manifests/") }
    /// A request for a blob, of the registry (`/v2/NAME/blobs/DIGEST`) or of blob storage (`/blobs/DIGEST`).
    public var isBlob: Bool { route.contains("/blobs/sha256:") }
    /// The digest of a blob request, the reference of a manifest request.
    public var reference: String? {
        guard isBlob || isManifest else { return nil }
        return route.split(separator: "/").last.map(String.init)
    }

    /// Parses one log line; nil for a line of another shape.
    public init?(line: Substring) {
        let fields = line.split(separator: " ")
        guard fields.count == 5, let status = Int(fields[2]), let bytes = Int(fields[3]) else { return nil }
        method = String(fields[0]); path = String(fields[1])
        self.status = status; self.bytes = bytes; authorized = fields[4] == "yes"
    }
}

/// One line of the token server's log (`Fixtures/token-server.py`): `METHOD PATH STATUS ACCOUNT GRANTED`.
public struct TokenRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var status: Int
    /// "anonymous", the user's name, or "rejected:NAME" for wrong credentials.
    public var account: String
    /// The scopes granted, as "repository:NAME:pull,push".
    public var granted: [String]

    /// Parses one log line; nil for a line of another shape.
    public init?(line: Substring) {
        let fields = line.split(separator: " ")
        guard fields.count >= 5, let status = Int(fields[2]) else { return nil }
        method = String(fields[0]); path = String(fields[1]); self.status = status
        account = String(fields[3])
        granted = fields[4] == "-" ? [] : fields[4...].map(String.init)
    }
}

/// Reads a log of one request per line, parsed by `parse`; empty when the file does not exist.
private func readLog<Line>(_ path: String, _ parse: (Substring) -> Line?) -> [Line] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap(parse)
}

/// The token server of a registry in `token` mode: its address and its request log.
public struct TokenServer: Sendable {
    /// "127.0.0.1:PORT".
    public let host: String
    /// The log file, one line per request.
    public let logPath: String

    /// Every request the token server answered so far.
    public func log() -> [TokenRequest] { readLog(logPath, TokenRequest.init(line:)) }
}

/// A real registry (`docker-registry serve`, distribution 2.8) on 127.0.0.1 at a free port,
/// started by `Fixtures/registry.sh` in a mode: "anonymous", "htpasswd" (steve / s3cret),
/// "token" (a token server: anonymous pulls, steve pulls and pushes), "tls" (HTTPS, a CA of its
/// own), or tls with one of the others ("tls,htpasswd", "tls,token"). Stopped on deinit.
public final class RegistryFixture: @unchecked Sendable {
    /// The user and password the htpasswd and token modes accept.
    public static let username = "steve", password = "s3cret"

    /// Whether this machine has what the fixture runs: docker-registry, htpasswd, openssl, curl,
    /// python3 and skopeo.
    public static var isAvailable: Bool {
        ["docker-registry", "htpasswd", "openssl", "curl", "python3", "skopeo"].allSatisfy(toolExists)
    }

    public let mode: String
    /// "127.0.0.1:PORT".
    public let host: String
    /// "http://HOST" or "https://HOST".
    public let url: String
    /// The CA certificate (PEM) clients must trust in tls modes, else nil.
    public let caFile: String?
    /// A directory holding that CA as ca.crt (skopeo's --cert-dir) in tls modes, else nil.
    public let certDirectory: String?
    /// The token server in token modes, else nil.
    public let tokenServer: TokenServer?
    /// The directory of the registry's configuration, storage and logs.
    public var directory: String { scratch.path }

    private let scratch: TemporaryDirectory
    private var stopped = false

    /// Starts a registry in `mode` (see the type's description); throws with the script's
    /// message when it does not start.
    public init(mode: String) throws {
        scratch = TemporaryDirectory("registry")
        self.mode = mode
        let result = try run("/bin/bash", [repositoryRoot + "/Fixtures/registry.sh", "start", scratch.path, mode])
        guard result.succeeded else {
            _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/registry.sh", "stop", scratch.path])
            throw TestFailure("registry.sh start \(mode) failed: \(result.stderr)")
        }
        host = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let tls = mode.split(separator: ",").contains("tls")
        url = (tls ? "https://" : "http://") + host
        caFile = tls ? scratch.sub("ca.pem") : nil
        certDirectory = tls ? scratch.sub("certs") : nil
        if mode.split(separator: ",").contains("token"),
           let tokenHost = try? String(contentsOfFile: scratch.sub("token-host"), encoding: .utf8) {
            tokenServer = TokenServer(host: tokenHost.trimmingCharacters(in: .whitespacesAndNewlines),
                                      logPath: scratch.sub("token.log"))
        } else {
            tokenServer = nil
        }
        let path = scratch.path
        RunningFixtures.shared.add(self) {
            // At exit (a registry shared by a whole run is never deinitialized): stopped, and its
            // directory removed, as deinit would.
            _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/registry.sh", "stop", path])
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Starts a registry in `mode`.
    public static func start(mode: String) throws -> RegistryFixture { try RegistryFixture(mode: mode) }

    /// Whether the mode wants credentials for pushing.
    public var needsCredentials: Bool {
        mode.split(separator: ",").contains { $0 == "htpasswd" || $0 == "token" }
    }

    /// skopeo's options for this registry as the source (`src`) or destination (`dest`) of a
    /// copy: its CA or plain HTTP, and steve's credentials when the mode has them (or
    /// `credentials` says otherwise, "USER:PASSWORD").
    public func skopeoOptions(_ side: String, credentials: String? = nil) -> [String] {
        var options = certDirectory.map { ["--\(side)-cert-dir", $0] } ?? ["--\(side)-tls-verify=false"]
        if let credentials = credentials ?? (needsCredentials ? "\(Self.username):\(Self.password)" : nil) {
            options += ["--\(side)-creds", credentials]
        }
        return options
    }

    /// The same for `skopeo inspect` and other one-image commands.
    public func skopeoInspectOptions(credentials: String? = nil) -> [String] {
        var options = certDirectory.map { ["--cert-dir", $0] } ?? ["--tls-verify=false"]
        if let credentials = credentials ?? (needsCredentials ? "\(Self.username):\(Self.password)" : nil) {
            options += ["--creds", credentials]
        }
        return options
    }

    /// Pushes tag `tag` of the OCI layout `layout` (every image of an index or manifest list,
    /// digests kept) as `name` (NAME:TAG, default "lstore/test:TAG"); returns the pushed digest.
    @discardableResult
    public func seed(layout: String, tag: String, name: String? = nil) throws -> String {
        let target = name ?? "lstore/test:\(tag)"
        let output = try seedScript([host, "\(layout):\(tag)", target])
        guard let digest = output.split(separator: " ").last, digest.hasPrefix("sha256:") else {
            throw TestFailure("seed-registry.sh printed no digest: \(output)")
        }
        return String(digest)
    }

    /// Pushes the import tests' images (`Fixtures/seed-registry.sh HOST IMAGES`, which makes
    /// IMAGES when it does not exist): lstore/base:latest, lstore/child:latest, lstore/child:zstd,
    /// lstore/system:latest, lstore/platforms:latest (an OCI index), lstore/manifest-list:latest
    /// (a Docker manifest list). Returns each NAME:TAG's digest.
    @discardableResult
    public func seedTestImages(images: String) throws -> [String: String] {
        let output = try seedScript([host, images])
        var digests: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2 { digests[String(fields[0])] = String(fields[1]) }
        }
        return digests
    }

    private func seedScript(_ arguments: [String]) throws -> String {
        var options: [String] = []
        if let certDirectory { options += ["--cert-dir", certDirectory] }
        if needsCredentials { options += ["--creds", "\(Self.username):\(Self.password)"] }
        let result = try run("/bin/bash", [repositoryRoot + "/Fixtures/seed-registry.sh"] + options + arguments)
        guard result.succeeded else {
            throw TestFailure("seed-registry.sh \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The registry's own log (one JSON-ish line per event and an access log).
    public func registryLog() -> String {
        (try? String(contentsOfFile: scratch.sub("registry.log"), encoding: .utf8)) ?? ""
    }

    /// Stops the registry and its token server; also done on deinit.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        RunningFixtures.shared.remove(self)
        _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/registry.sh", "stop", scratch.path])
    }

    deinit { stop() }
}

/// A fake registry (`Fixtures/lying-registry.py`) on 127.0.0.1 that serves one OCI layout's
/// image and misbehaves as its mode says; every request is logged, so a test can assert what
/// the client asked for. Stopped on deinit (and when the test process ends: the server exits
/// when its standard input, a pipe from here, closes).
public final class LyingRegistry: @unchecked Sendable {
    /// How the fake registry misbehaves (Fixtures/lying-registry.py describes each).
    public enum Mode: String, Sendable, CaseIterable {
        case honest
        case wrongBytes = "wrong-bytes"
        case endless
        case wrongSize = "wrong-size"
        case wrongSizeShort = "wrong-size-short"
        case redirectLoop = "redirect-loop"
        case hugeManifest = "huge-manifest"
        case hugeManifestClose = "huge-manifest-close"
        case flaky
        case cut
        case redirect
        case dockerhub
    }

    /// What the registry wants before it serves: nothing, Basic steve:s3cret, or a Bearer token
    /// from the other host's /token (dockerhub is always bearer).
    public enum Auth: String, Sendable {
        case none, basic, bearer
    }

    /// Whether this machine has python3, which runs the fake registry.
    public static var isAvailable: Bool { toolExists("python3") }

    public let mode: Mode
    /// "127.0.0.1:PORT", the registry.
    public let host: String
    /// "localhost:PORT2", the other host: blob storage for redirect and dockerhub, the token
    /// endpoint for bearer and dockerhub.
    public let otherHost: String
    /// The repository it serves: `name`, else library/debian for dockerhub and test/image otherwise.
    public let name: String

    private let scratch = TemporaryDirectory("lying")
    private let process = Process()
    private let input = Pipe()
    private var stopped = false

    /// Starts the fake registry on `layout` (an OCI image layout directory) in `mode`.
    public init(mode: Mode, layout: String, name: String? = nil, auth: Auth = .none, rateLimit: Int? = nil) throws {
        self.mode = mode
        self.name = name ?? (mode == .dockerhub ? "library/debian" : "test/image")
        var arguments = [repositoryRoot + "/Fixtures/lying-registry.py", layout, "--mode", mode.rawValue,
                         "--log", scratch.sub("requests.log"), "--other-log", scratch.sub("other.log"),
                         "--name", self.name, "--auth", auth.rawValue, "--exit-with-stdin"]
        if let rateLimit { arguments += ["--rate-limit", String(rateLimit)] }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        FileManager.default.createFile(atPath: scratch.sub("stderr"), contents: nil)
        process.standardError = FileHandle(forWritingAtPath: scratch.sub("stderr"))
        try process.run()
        // The two lines it prints once it listens, waited for at most 30 s.
        let lines = readLines(output.fileHandleForReading, count: 2, timeout: 30)
        guard lines.count == 2, lines[0].hasPrefix("127.0.0.1:") else {
            process.terminate()
            process.waitUntilExit()
            let stderr = (try? String(contentsOfFile: scratch.sub("stderr"), encoding: .utf8)) ?? ""
            throw TestFailure("lying-registry.py \(mode.rawValue) did not start: \(stderr)")
        }
        host = lines[0]
        otherHost = lines[1]
        let process = self.process
        RunningFixtures.shared.add(self) { if process.isRunning { process.terminate() } }
    }

    /// Starts the fake registry (see `init`).
    public static func start(mode: Mode, layout: String, name: String? = nil, auth: Auth = .none,
                             rateLimit: Int? = nil) throws -> LyingRegistry {
        try LyingRegistry(mode: mode, layout: layout, name: name, auth: auth, rateLimit: rateLimit)
    }

    /// Every request the registry answered so far. A response the client abandoned is logged
    /// when the server notices; `log(atLeast:)` waits for such lines.
    public func log() -> [RegistryRequest] { readLog(scratch.sub("requests.log"), RegistryRequest.init(line:)) }

    /// Every request the other host (blob storage, token endpoint) answered so far.
    public func otherLog() -> [RegistryRequest] { readLog(scratch.sub("other.log"), RegistryRequest.init(line:)) }

    /// The registry's log once it has at least `count` lines, or after `timeout` seconds.
    public func log(atLeast count: Int, timeout: Double = 10) -> [RegistryRequest] {
        let deadline = Date().addingTimeInterval(timeout)
        var lines = log()
        while lines.count < count && Date() < deadline {
            usleep(50_000)
            lines = log()
        }
        return lines
    }

    /// Stops the server; also done on deinit.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        RunningFixtures.shared.remove(self)
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Reads up to `count` lines from `handle`, waiting at most `timeout` seconds in all.
private func readLines(_ handle: FileHandle, count: Int, timeout: Double) -> [String] {
    final class Box: @unchecked Sendable { var text = "" }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        var bytes = Data()
        while bytes.filter({ $0 == UInt8(ascii: "\n") }).count < count {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            bytes.append(chunk)
        }
        box.text = String(decoding: bytes, as: UTF8.self)
        done.signal()
    }
    guard done.wait(timeout: .now() + timeout) == .success else { return [] }
    return box.text.split(separator: "\n").prefix(count).map(String.init)
}

/// A Docker engine of its own (`Fixtures/dockerd.sh`): data and socket in a temporary
/// directory, no bridge and no iptables rules. Stopped on deinit.
public final class DockerEngine: @unchecked Sendable {
    /// Whether this machine can run it: root, dockerd and the docker command.
    public static var isAvailable: Bool { getuid() == 0 && toolExists("dockerd") && toolExists("docker") }

    /// The engine's socket ("unix://" + socket is its -H).
    public let socket: String
    /// The engine's directory (data/, exec/, dockerd.log).
    public var directory: String { scratch.path }

    private let scratch = TemporaryDirectory("docker")
    private var stopped = false

    /// Starts the engine and waits until it answers.
    public init() throws {
        let result = try run("/bin/bash", [repositoryRoot + "/Fixtures/dockerd.sh", "start", scratch.path])
        guard result.succeeded else {
            _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/dockerd.sh", "stop", scratch.path])
            throw TestFailure("dockerd.sh start failed: \(result.stderr)")
        }
        socket = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let path = scratch.path
        RunningFixtures.shared.add(self) {
            _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/dockerd.sh", "stop", path])
        }
    }

    /// Starts an engine.
    public static func start() throws -> DockerEngine { try DockerEngine() }

    /// Runs `docker ARGS` against this engine (Debian's docker command, which speaks its API);
    /// throws unless it succeeds, returns its standard output.
    @discardableResult
    public func docker(_ arguments: [String]) throws -> String {
        let cli = FileManager.default.isExecutableFile(atPath: "/usr/bin/docker") ? "/usr/bin/docker" : "docker"
        let result = try run(cli, ["-H", "unix://" + socket] + arguments, environment: ["DOCKER_BUILDKIT": "0"])
        guard result.succeeded else {
            throw TestFailure("docker \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
        }
        return result.stdout
    }

    /// `Fixtures/docker-build.sh`: imports `rootfs` (a root tarball or directory with /bin/sh and
    /// /etc/motd) as `base`, builds `child` FROM it with one RUN (writes /etc/lstore-built and
    /// /opt/lstore/hello, deletes /etc/motd), and `docker save`s child to `output`.
    public func buildChild(rootfs: String, output: String) throws {
        let result = try run("/bin/bash", [repositoryRoot + "/Fixtures/docker-build.sh", scratch.path, rootfs, output])
        guard result.succeeded else { throw TestFailure("docker-build.sh failed: \(result.stderr)") }
    }

    /// Stops the engine; also done on deinit.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        RunningFixtures.shared.remove(self)
        _ = try? run("/bin/bash", [repositoryRoot + "/Fixtures/dockerd.sh", "stop", scratch.path])
    }

    deinit { stop() }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test only where `RegistryFixture` can start a registry.
    public static var registryAvailable: Self {
        .enabled(if: RegistryFixture.isAvailable, "needs docker-registry, apache2-utils (htpasswd), openssl, curl, python3, skopeo")
    }

    /// Runs the test only where `LyingRegistry` can start (python3) and skopeo reads from it.
    public static var lyingRegistryAvailable: Self {
        .enabled(if: LyingRegistry.isAvailable && toolExists("skopeo"), "needs python3 and skopeo")
    }

    /// Runs the test only where `DockerEngine` can start: as root, with docker.io.
    public static var dockerAvailable: Self {
        .enabled(if: DockerEngine.isAvailable, "needs root and docker.io (dockerd, docker)")
    }
}
