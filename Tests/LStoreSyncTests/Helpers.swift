import Foundation
import LStoreTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A process the test started, killed (SIGKILL) when the value goes away. Its first line of
/// standard output is read at start: servers print their port there.
final class Background: @unchecked Sendable {
    let process = Process()
    private(set) var firstLine = ""

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], readFirstLine: Bool = true) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        guard readFirstLine else { return }
        let handle = out.fileHandleForReading
        var bytes: [UInt8] = []
        while true {
            var byte: UInt8 = 0
            let got = Glibc.read(handle.fileDescriptor, &byte, 1)
            if got <= 0 || byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        firstLine = String(decoding: bytes, as: UTF8.self)
    }

    /// The last word of the first line, as a port number.
    var port: Int { Int(firstLine.split(separator: " ").last ?? "") ?? 0 }

    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { kill() }
}

/// `lstore serve --listen 127.0.0.1:PORT` (a free port unless given) on `store`.
func serve(_ store: String, port: Int = 0, _ options: [String] = []) throws -> Background {
    let server = try Background(lstoreBinary, ["--store", store, "serve", "--listen", "127.0.0.1:\(port)"] + options)
    guard server.port > 0 else { throw TestFailure("lstore serve did not start: '\(server.firstLine)'") }
    return server
}

/// Runs `lstore ARGS --json` and returns the parsed object.
func jsonOK(_ arguments: [String], store: String, environment: [String: String] = [:]) throws -> [String: Any] {
    let out = try lstoreOK(arguments + ["--json"], store: store, environment: environment)
    guard let object = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(out)")
    }
    return object
}

/// Every ref of `store` as `lstore refs` prints it.
func refs(_ store: String) throws -> String {
    try lstoreOK(["refs"], store: store)
}

func fsckClean(_ store: String) throws -> Bool {
    let result = try lstore(["fsck"], store: store)
    return result.succeeded && result.stdout.contains(": clean")
}

/// Objects in the store's indexes (an object stored twice counts twice).
func objectCount(_ store: String) throws -> Int {
    try jsonOK(["stats"], store: store)["objects"] as! Int
}

/// Bytes of the store's packs and indexes.
func storedBytes(_ store: String) throws -> Int {
    try jsonOK(["stats"], store: store)["storedBytes"] as! Int
}

/// Writes `count` bytes of seeded random data to `path`: incompressible, so stored bytes equal file bytes.
func randomFile(_ path: String, bytes count: Int, seed: Int) throws {
    try sh("python3 -c \"import random; r=random.Random(\(seed)); open('\(path)','wb').write(r.randbytes(\(count)))\"")
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
    let fd = connection(port: port)
    defer { if fd >= 0 { close(fd) } }
    return fd >= 0
}

/// A TCP connection to 127.0.0.1:`port`, or -1.
func connection(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    if connected { return fd }
    close(fd)
    return -1
}
