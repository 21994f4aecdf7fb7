import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("no free port: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Stops nginx with SIGTERM and waits for it: its master then stops its workers, which hold the
/// descriptors that tell Foundation the process is gone (SIGKILL would leave them running).
func stop(_ server: Background) {
    guard server.process.isRunning else { return }
    kill(server.process.processIdentifier, SIGTERM)
    server.process.waitUntilExit()
}

/// Waits until something accepts connections on `port`, at most 10 s.
func waitForListener(port: Int, _ what: String) throws {
    for _ in 0..<1000 {
        if canConnect(port: port) { return }
        usleep(10_000)
    }
    throw TestFailure("\(what) did not start listening on port \(port)")
}

/// `lstore serve` behind a real reverse proxy (Debian's nginx) and reached through a real forward
/// proxy (Debian's tinyproxy), each run by the test on a loopback port with its own configuration.
@Suite(.serialized)
struct ProxyTests {
    let scratch = TemporaryDirectory("proxy")
    var serverStore: String { scratch.sub("a") }
    var clientStore: String { scratch.sub("b") }
    var tree: String { scratch.sub("tree") }

    init() throws {
        for store in [serverStore, clientStore] { try lstoreOK(["init"], store: store) }
        try sh("mkdir -p \(tree)/etc && echo proxied > \(tree)/etc/hostname")
        try randomFile(tree + "/big", bytes: 3_000_000, seed: 11)
        try lstoreOK(["commit", tree, "--ref", "base"], store: serverStore)
    }

    func checkout(_ ref: String, from store: String) throws -> String {
        let directory = scratch.sub("out-\(UInt32.random(in: 0...UInt32.max))")
        try lstoreOK(["checkout", ref, "--dir", directory], store: store)
        return try manifest(directory)
    }

    /// nginx in front of `upstream`, streaming both ways: answers reach the client chunked, a
    /// chunked request body goes to the upstream chunked. Its access log records each request's
    /// Transfer-Encoding both ways.
    func nginx(upstream: Int) throws -> (Background, port: Int, log: String) {
        let directory = scratch.sub("nginx")
        try sh("mkdir -p \(directory)/logs \(directory)/tmp")
        let port = try freePort()
        let log = directory + "/logs/access.log"
        let config = """
            worker_processes 1;
            error_log \(directory)/logs/error.log;
            pid \(directory)/nginx.pid;
            \(isRoot ? "user root;" : "")
            events { worker_connections 64; }
            http {
                log_format lstore '$request $status reply=$sent_http_transfer_encoding request=$http_transfer_encoding';
                access_log \(log) lstore;
                client_body_temp_path \(directory)/tmp/body;
                proxy_temp_path \(directory)/tmp/proxy;
                fastcgi_temp_path \(directory)/tmp/fastcgi;
                uwsgi_temp_path \(directory)/tmp/uwsgi;
                scgi_temp_path \(directory)/tmp/scgi;
                client_max_body_size 0;
                server {
                    listen 127.0.0.1:\(port);
                    location / {
                        proxy_pass http://127.0.0.1:\(upstream);
                        proxy_http_version 1.1;
                        proxy_buffering off;
                        proxy_request_buffering off;
                    }
                }
            }
            """
        try config.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let process = try Background("/usr/sbin/nginx", ["-p", directory, "-c", directory + "/nginx.conf", "-g", "daemon off;"], readFirstLine: false)
        try waitForListener(port: port, "nginx")
        return (process, port, log)
    }

    @Test func pullAndPushThroughNginxWithChunkedBodies() throws {
        let server = try serve(serverStore)
        let (proxy, port, log) = try nginx(upstream: server.port)
        defer { stop(proxy) }
        let url = "http://127.0.0.1:\(port)"
        try lstoreOK(["pull", url, "base"], store: clientStore)
        #expect(try checkout("base", from: clientStore) == manifest(tree))
        #expect(try fsckClean(clientStore))

        try sh("cp -a \(tree) \(scratch.sub("next")) && echo next > \(scratch.sub("next"))/next")
        try randomFile(scratch.sub("next") + "/more", bytes: 2_000_000, seed: 12)
        try lstoreOK(["commit", scratch.sub("next"), "--ref", "next", "--parent", "base"], store: clientStore)
        try lstoreOK(["push", url, "next"], store: clientStore)
        #expect(try checkout("next", from: serverStore) == manifest(scratch.sub("next")))
        #expect(try fsckClean(serverStore))

        // A refs request whose body is chunked, as a client without a length sends it; nginx
        // passes it on chunked.
        #expect(try chunkedRefsRequest(url).contains("base"))

        // nginx logs a request after its answer has gone out: wait (bounded) for the last line.
        var lines: [Substring] = [], posts: [Substring] = []
        for _ in 0..<500 {
            lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            posts = lines.filter { $0.hasPrefix("POST /lstore/v1") }
            if posts.count >= 4 && posts.contains(where: { $0.hasSuffix("request=chunked") }) { break }
            usleep(10_000)
        }
        #expect(posts.count >= 4, "\(lines)")
        #expect(posts.allSatisfy { $0.contains(" 200 reply=chunked") }, "every answer reached the client chunked: \(lines)")
        #expect(posts.contains { $0.hasSuffix("request=chunked") }, "one request went chunked: \(lines)")
    }

    /// Posts a refs request (spec/protocol.md §3.1) to `url` with a chunked body, through curl(1);
    /// returns the answer as ASCII text (other bytes replaced).
    func chunkedRefsRequest(_ url: String) throws -> String {
        let request = scratch.sub("refs.request"), answer = scratch.sub("refs.answer")
        try sh("""
            python3 -c 'import struct, sys; sys.stdout.buffer.write(struct.pack("<IQ", 1, 7) + struct.pack("<IBH", 1, 1, 0) + struct.pack("<IQ", 10, 0))' > \(request)
            curl -sS --fail -H 'Transfer-Encoding: chunked' --data-binary @\(request) -o \(answer) \(url)/lstore/v1
            """)
        return String(decoding: try Data(contentsOf: URL(fileURLWithPath: answer)), as: Unicode.ASCII.self)
    }

    /// A request body sent chunked straight to `lstore serve` is read.
    @Test func serverTakesAChunkedRequestBody() throws {
        let server = try serve(serverStore)
        #expect(try chunkedRefsRequest("http://127.0.0.1:\(server.port)").contains("base"))
    }

    /// tinyproxy on a free loopback port, logging every request it carries.
    func tinyproxy() throws -> (Background, port: Int, log: String) {
        let directory = scratch.sub("tinyproxy")
        try sh("mkdir -p \(directory)")
        let port = try freePort()
        let log = directory + "/tinyproxy.log"
        let config = """
            Port \(port)
            Listen 127.0.0.1
            Timeout 60
            LogFile "\(log)"
            LogLevel Connect
            PidFile "\(directory)/tinyproxy.pid"
            MaxClients 16
            Allow 127.0.0.1
            """
        try config.write(toFile: directory + "/tinyproxy.conf", atomically: true, encoding: .utf8)
        let process = try Background("/usr/bin/tinyproxy", ["-d", "-c", directory + "/tinyproxy.conf"], readFirstLine: false)
        try waitForListener(port: port, "tinyproxy")
        return (process, port, log)
    }

    /// Requests tinyproxy logged as carried (`GET URL` or `CONNECT HOST:PORT`).
    func carried(_ log: String) throws -> [String] {
        try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "): ") , line.contains("Request (file descriptor") else { return nil }
            return String(line[range.upperBound...])
        }
    }

    @Test func pullThroughAForwardProxyFromTheEnvironment() throws {
        let server = try serve(serverStore)
        let (proxy, port, log) = try tinyproxy()
        defer { proxy.kill() }
        let environment = ["http_proxy": "http://127.0.0.1:\(port)", "HTTPS_PROXY": "http://127.0.0.1:\(port)", "NO_PROXY": ""]
        try lstoreOK(["pull", "http://127.0.0.1:\(server.port)", "base"], store: clientStore, environment: environment)
        #expect(try checkout("base", from: clientStore) == manifest(tree))
        #expect(try fsckClean(clientStore))
        let viaProxy = try carried(log)
        #expect(viaProxy.contains { $0.hasPrefix("POST http://127.0.0.1:\(server.port)/lstore/v1 ") }, "\(viaProxy)")

        // https goes through the proxy too, tunnelled with CONNECT.
        let tls = scratch.sub("tls")
        try sh("""
            mkdir -p \(tls) && cd \(tls)
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem \\
                -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
            """)
        let secure = try serve(serverStore, ["--tls-cert", tls + "/cert.pem", "--tls-key", tls + "/key.pem"])
        let other = scratch.sub("c")
        try lstoreOK(["init"], store: other)
        try lstoreOK(["pull", "https://localhost:\(secure.port)", "base", "--ca-file", tls + "/cert.pem"], store: other, environment: environment)
        let tunnelled = try carried(log)
        #expect(tunnelled.contains { $0.hasPrefix("CONNECT localhost:\(secure.port) ") }, "\(tunnelled)")

        // NO_PROXY names hosts reached directly: the proxy carries nothing more.
        let before = try carried(log).count
        let direct = scratch.sub("d")
        try lstoreOK(["init"], store: direct)
        var bypass = environment
        bypass["NO_PROXY"] = "127.0.0.1,localhost"
        try lstoreOK(["pull", "http://127.0.0.1:\(server.port)", "base"], store: direct, environment: bypass)
        #expect(try checkout("base", from: direct) == manifest(tree))
        let after = try carried(log)
        #expect(after.count == before, "\(after)")

        // A proxy that is not there is an error naming the peer.
        proxy.kill()
        let gone = try lstore(["pull", "http://127.0.0.1:\(server.port)", "base"], store: direct, environment: environment)
        #expect(!gone.succeeded && gone.stderr.contains("http://127.0.0.1:\(server.port): cannot connect"), "\(gone.stderr)")
    }
}
