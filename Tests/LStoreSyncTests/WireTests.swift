import Foundation
import LStoreStore
@testable import LStoreSync
import LStoreTestSupport
import LStoreTree
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The protocol's pieces in process: URLs, frames and their limits, token comparison.
struct WireTests {
    @Test func remoteURLs() throws {
        #expect(try RemoteURL(parsing: "http://desk:7070") == .http(host: "desk", port: 7070, path: ""))
        #expect(try RemoteURL(parsing: "http://desk/lstore/") == .http(host: "desk", port: 80, path: "/lstore"))
        #expect(try RemoteURL(parsing: "http://[::1]:7070") == .http(host: "::1", port: 7070, path: ""))
        #expect(try RemoteURL(parsing: "ssh://steve@desk/var/lib/lstore") == .ssh(user: "steve", host: "desk", port: nil, path: "/var/lib/lstore"))
        #expect(try RemoteURL(parsing: "ssh://desk:2222/srv/store") == .ssh(user: nil, host: "desk", port: 2222, path: "/srv/store"))
        for bad in ["desk:7070", "ftp://desk", "http://desk:99999", "ssh://desk", "ssh://-oProxyCommand=x/store", "ssh://desk/", "http://:80"] {
            #expect(throws: SyncError.self, "\(bad)") { try RemoteURL(parsing: bad) }
        }
        #expect(try RemoteURL(parsing: "https://desk/") == .https(host: "desk", port: 443, path: ""))
        #expect(shellQuoted("/a b/it's") == "'/a b/it'\\''s'")
    }

    /// Frames written to one end of a pipe and read from the other.
    func readBack(_ bytes: [UInt8], allowing types: Set<FrameType>) throws -> (type: FrameType, payload: [UInt8]) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestFailure("pipe") }
        defer { close(fds[0]) }
        _ = bytes.withUnsafeBytes { write(fds[1], $0.baseAddress!, $0.count) }
        close(fds[1])
        return try FrameReader(channel: ChannelReader(fd: fds[0], name: "peer", timeout: 1)).next(allowing: types)
    }

    @Test func framesAndTheirLimits() throws {
        var frame = ByteWriter()
        frame.u32(FrameType.ref.rawValue)
        frame.u64(36)
        frame.digest(.zero)
        frame.append(Array("base".utf8))
        let (type, payload) = try readBack(frame.bytes, allowing: [.ref])
        #expect(type == .ref && payload.count == 36)

        var huge = ByteWriter()
        huge.u32(FrameType.object.rawValue)
        huge.u64(1 << 60)
        #expect { try readBack(huge.bytes, allowing: [.object]) } throws: { "\($0)".contains("a object frame of 1152921504606846976 bytes") }
        var control = ByteWriter()
        control.u32(FrameType.ids.rawValue)
        control.u64(UInt64(SyncProtocol.maxControlFrame + 1))
        #expect { try readBack(control.bytes, allowing: [.ids]) } throws: { "\($0)".contains("at most") }
        var unknown = ByteWriter()
        unknown.u32(77)
        unknown.u64(0)
        #expect { try readBack(unknown.bytes, allowing: [.ref]) } throws: { "\($0)".contains("unknown frame type 77") }
        #expect { try readBack(Array(frame.bytes.prefix(20)), allowing: [.ref]) } throws: { $0 as? SyncError == .truncated("peer") }
        #expect { try readBack(frame.bytes, allowing: [.object]) } throws: { "\($0)".contains("a ref frame where object belongs") }

        var error = ByteWriter()
        error.u32(FrameType.error.rawValue)
        error.u64(4 + 10)
        error.u32(PeerErrorCode.readOnly.rawValue)
        error.append(Array("read\u{1B}-only".utf8))
        #expect { try readBack(error.bytes, allowing: [.ref]) } throws: { $0 as? SyncError == .peer(.readOnly, "read?-only") }
    }

    @Test func refUpdatesRoundTrip() throws {
        let id = Digest(Array(repeating: 7, count: 32))
        for expected in [RefExpectation.any, .absent, .value(id)] {
            let update = RefUpdate(name: "steve/gaming", new: id, expected: expected)
            let decoded = try RefUpdate(decoding: update.encoded())
            #expect(decoded.name == "steve/gaming" && decoded.new == id && decoded.expected == expected)
        }
        #expect(throws: SyncError.self) { try RefUpdate(decoding: [9] + Array(repeating: 0, count: 64)) }
    }

    @Test func tokensCompareWholly() {
        let policy = ServePolicy(tokens: ["s3cret", "other"], readOnly: false, privatePulls: false, trusted: false)
        #expect(policy.accepts(Array("s3cret".utf8)))
        #expect(policy.accepts(Array("other".utf8)))
        #expect(!policy.accepts(Array("s3cre".utf8)))
        #expect(!policy.accepts(Array("s3cret ".utf8)))
        #expect(!policy.accepts([]))
    }
}
