import Foundation
import LStoreHTTP
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Fixtures/http-test-server.py, on 127.0.0.1 and 127.0.0.2; killed when the value goes away.
final class TestServer: @unchecked Sendable {
    let process = Process()
    /// Its ports on 127.0.0.1 and 127.0.0.2.
    private(set) var ports: [Int] = []

    init() throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/Fixtures/http-test-server.py"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(out.fileHandleForReading.fileDescriptor, &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        ports = String(decoding: line, as: UTF8.self).split(separator: " ").dropFirst().compactMap { Int($0) }
        guard ports.count == 2 else { throw TestFailure("the test server did not start: '\(String(decoding: line, as: UTF8.self))'") }
    }

    /// `http://127.0.0.1:PORT` (host 1) or `http://127.0.0.2:PORT` (host 2).
    func url(_ host: Int = 1, _ path: String) -> String { "http://127.0.0.\(host):\(ports[host - 1])\(path)" }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// LStoreHTTP's client against a real HTTP/1.1 server on loopback.
@Suite(.serialized)
struct ClientTests {
    let server: TestServer

    init() throws {
        server = try TestServer()
    }

    func text(_ client: HTTPClient, _ url: String, headers: HTTPHeaders = [:]) throws -> (HTTPResponse, String) {
        let (response, body) = try client.fetch(HTTPRequest(url: url, headers: headers))
        return (response, String(decoding: body, as: UTF8.self))
    }

    @Test func chunkedReplyIsDecoded() throws {
        let (response, body) = try text(HTTPClient(), server.url(1, "/chunked"))
        #expect(response.status == 200)
        #expect(response.headers["transfer-encoding"] == "chunked")
        #expect(body == "hello, chunked world")
    }

    @Test func rangeRequestReturnsTheSlice() throws {
        var request = HTTPRequest(url: server.url(1, "/data"))
        request.setRange(100...199)
        let (response, body) = try HTTPClient().fetch(request)
        #expect(response.status == 206)
        #expect(response.headers["Content-Range"] == "bytes 100-199/1000")
        #expect(body == (100...199).map { UInt8($0 % 251) })
        request.setRange(from: 990)
        #expect(try HTTPClient().fetch(request).1 == (990..<1000).map { UInt8($0 % 251) })
    }

    @Test func keepAliveUsesOneConnectionForManyRequests() throws {
        let client = try HTTPClient()
        let before = try Int(text(client, server.url(1, "/connections")).1)!
        for _ in 0..<5 { #expect(try client.fetch(HTTPRequest(url: server.url(1, "/data"))).1.count == 1000) }
        #expect(try HTTPClient().fetch(HTTPRequest(method: "HEAD", url: server.url(1, "/data"))).0.status == 200)
        let after = try Int(text(client, server.url(1, "/connections")).1)!
        // Six requests on the first client's one connection; one more connection for the other client.
        #expect(after == before + 1)
        #expect(client.bytesReceived > 5000 && client.bytesSent > 0)
    }

    @Test func redirectToAnotherHostDropsAuthorization() throws {
        let client = try HTTPClient()
        let secret: HTTPHeaders = ["Authorization": "Bearer secret"]
        let (same, sameBody) = try text(client, server.url(1, "/to?url=/auth"), headers: secret)
        #expect(sameBody == "Bearer secret")
        #expect(same.url == server.url(1, "/auth"))
        let (other, otherBody) = try text(client, server.url(1, "/to?url=" + server.url(2, "/auth")), headers: secret)
        #expect(other.status == 200 && other.url == server.url(2, "/auth"))
        #expect(otherBody == "none")
    }

    @Test func redirectLoopIsRefused() throws {
        let url = server.url(1, "/loop")
        #expect {
            try HTTPClient().fetch(HTTPRequest(url: url))
        } throws: { error in
            guard let error = error as? HTTPError else { return false }
            return error.kind == .redirect && "\(error)" == "\(url): more than 10 redirects (a loop?); gave up"
        }
    }

    @Test func requestBodiesStreamWithAndWithoutALength() throws {
        let client = try HTTPClient()
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for (method, body) in [("POST", HTTPRequest.Body.unknownLength), ("POST", .length(payload.count)),
                               ("PUT", .length(payload.count)), ("PATCH", .unknownLength)] {
            var sent = 0
            var received: [UInt8] = []
            let response = try client.perform(HTTPRequest(method: method, url: server.url(1, "/echo"), body: body), body: { buffer in
                // Odd sizes, so writes and libcurl's reads do not line up.
                let count = min(buffer.count, 12_345, payload.count - sent)
                payload.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + sent, byteCount: count) }
                sent += count
                return count
            }, receive: { received += $0 })
            #expect(response.status == 200)
            #expect(response.headers["X-Method"] == method)
            #expect(response.headers["X-Framing"] == (body == .unknownLength ? "chunked" : "length"), "\(method) \(body)")
            #expect(received == payload, "\(method) \(body)")
        }
    }

    @Test func aStalledAnswerTimesOut() throws {
        var options = HTTPClientOptions()
        options.stallTimeout = 1
        let url = server.url(1, "/stall")
        #expect {
            try HTTPClient(options: options).fetch(HTTPRequest(url: url))
        } throws: { error in
            (error as? HTTPError)?.kind == .timeout && "\(error)".hasPrefix(url + ": ")
        }
    }

    @Test func aClosedPortCannotBeReached() throws {
        #expect {
            try HTTPClient().fetch(HTTPRequest(url: "http://127.0.0.1:1/x"))
        } throws: { error in
            (error as? HTTPError)?.kind == .connect && "\(error)".hasPrefix("http://127.0.0.1:1/x: cannot connect")
        }
    }
}
