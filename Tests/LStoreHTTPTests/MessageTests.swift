import LStoreHTTP
import Testing

/// The HTTP/1.1 head and chunked-body parsing the server and the client share.
struct MessageTests {
    /// `body` decoded by a ChunkedDecoder that gets it `step` bytes at a time.
    func decode(_ body: String, step: Int) throws -> (String, Bool) {
        var decoder = ChunkedDecoder()
        var out: [UInt8] = []
        var bytes = Array(body.utf8)
        var index = 0
        while index < bytes.count {
            let count = min(step, bytes.count - index)
            let produced = try bytes.withUnsafeMutableBytes { try decoder.decode(UnsafeMutableRawBufferPointer(rebasing: $0[index..<index + count])) }
            out += bytes[index..<index + produced]
            index += count
        }
        return (String(decoding: out, as: UTF8.self), decoder.isComplete)
    }

    @Test func chunkedBodiesDecodeHoweverTheyAreCut() throws {
        let body = "7\r\nhello, \r\n8;name=value\r\nchunked \r\n5\nworld\n0\r\nTrailer: yes\r\n\r\nnext request"
        for step in 1...body.utf8.count {
            let (text, complete) = try decode(body, step: step)
            #expect(text == "hello, chunked world", "step \(step)")
            #expect(complete, "step \(step)")
        }
        let (partial, complete) = try decode("5\r\nhel", step: 100)
        #expect(partial == "hel" && !complete)
    }

    @Test(arguments: [
        ("zz\r\n", "chunk size 'zz' is not a hexadecimal number"),
        ("\r\n", "chunk size '' is not a hexadecimal number"),
        ("3\r\nabcdef\r\n", "a chunk longer than its size"),
        ("fffffffffffffffff\r\n", "is not a hexadecimal number"),
    ])
    func brokenChunkedBodiesAreRefused(body: String, expected: String) throws {
        #expect { try decode(body, step: 3) } throws: { "\($0)".contains(expected) }
    }

    @Test func headFields() throws {
        #expect(try HTTPHead.field("Content-Length:  12 \r") == ("Content-Length", "12"))
        #expect(throws: HTTPMessageError.self) { try HTTPHead.field("no colon") }
        #expect(throws: HTTPMessageError.self) { try HTTPHead.field("bad name: x") }
        #expect(try HTTPHead.requestLine("POST /lstore/v1 HTTP/1.1") == ("POST", "/lstore/v1", "HTTP/1.1"))
        #expect(throws: HTTPMessageError.self) { try HTTPHead.requestLine("GET /") }
        let status = try HTTPHead.statusLine("HTTP/1.1 503 Service Unavailable")
        #expect(status.status == 503 && status.reason == "Service Unavailable")
        #expect(try HTTPHead.statusLine("HTTP/2 200").status == 200)

        var lines = ["Host: a", "Set-Cookie: 1", "set-cookie: 2", ""].makeIterator()
        let headers = try HTTPHead.fields { lines.next()! }
        #expect(headers["HOST"] == "a")
        #expect(headers.values("Set-Cookie") == ["1", "2"])
        #expect(headers["Missing"] == nil)
    }

    @Test func bodyFraming() throws {
        #expect(try HTTPHead.bodyFraming(["Content-Length": "10"], request: true) == .length(10))
        #expect(try HTTPHead.bodyFraming(["Transfer-Encoding": "chunked"], request: true) == .chunked)
        #expect(try HTTPHead.bodyFraming(["transfer-encoding": "identity, Chunked"], request: true) == .chunked)
        #expect(try HTTPHead.bodyFraming([:], request: true) == .length(0))
        #expect(try HTTPHead.bodyFraming([:], request: false) == .toEnd)
        #expect(try HTTPHead.bodyFraming(HTTPHeaders([("Content-Length", "3"), ("Content-Length", "3")]), request: false) == .length(3))
        for bad: HTTPHeaders in [["Transfer-Encoding": "gzip"], ["Content-Length": "-1"], ["Content-Length": "1e3"],
                                 HTTPHeaders([("Content-Length", "3"), ("Content-Length", "4")]),
                                 HTTPHeaders([("Content-Length", "3"), ("Transfer-Encoding", "chunked")])] {
            #expect(throws: HTTPMessageError.self) { try HTTPHead.bodyFraming(bad, request: true) }
        }
    }
}
