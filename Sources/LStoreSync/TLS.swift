import COpenSSL
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// The server's TLS settings, through the system's OpenSSL: its certificate and key. One per
/// server; sessions are made from it per connection. (Clients speak TLS through LStoreHTTP.)
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer

    /// A server context: `certificate` (PEM, the chain) and `key` (PEM).
    public init(certificate: String, key: String) throws {
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSContext.error("cannot make a TLS context") }
        self.context = context
        SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
            throw TLSContext.error("\(certificate): not a PEM certificate chain")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(context) == 1 else {
            throw TLSContext.error("\(key): not the PEM private key of \(certificate)")
        }
    }

    deinit { SSL_CTX_free(context) }

    /// The most recent OpenSSL error, with `message` first.
    static func error(_ message: String) -> SyncError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return .connection(message) }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return .connection("\(message): \(String(cString: text))")
    }
}

/// One TLS connection a server accepted. Reads and writes block, bounded by the socket's
/// SO_RCVTIMEO and SO_SNDTIMEO, which `init` sets to `timeout`.
final class TLSSession {
    private let ssl: OpaquePointer
    let name: String

    private init(context: TLSContext, fd: Int32, name: String, timeout: Double) throws {
        guard let ssl = SSL_new(context.context) else { throw TLSContext.error("\(name): cannot start TLS") }
        self.ssl = ssl
        self.name = name
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        SSL_set_fd(ssl, fd)
    }

    deinit { SSL_free(ssl) }

    /// The server side: completes the handshake with a client.
    static func accept(_ context: TLSContext, fd: Int32, timeout: Double) throws -> TLSSession {
        let session = try TLSSession(context: context, fd: fd, name: "client", timeout: timeout)
        guard SSL_accept(session.ssl) == 1 else { throw TLSContext.error("client: TLS handshake failed") }
        return session
    }

    /// Bytes already decrypted and waiting: poll(2) on the socket does not see them.
    var pending: Bool { SSL_pending(ssl) > 0 }

    /// Reads up to `count` bytes; 0 at the end of the stream.
    func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        let got = SSL_read(ssl, buffer, Int32(min(count, Int(Int32.max))))
        if got > 0 { return Int(got) }
        let code = SSL_get_error(ssl, got)
        if code == SSL_ERROR_ZERO_RETURN { return 0 }
        if code == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK) {
            throw SyncError.timeout(name, seconds: 0)
        }
        if code == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 { return 0 }
        throw TLSContext.error("\(name): TLS read failed")
    }

    func write(_ bytes: UnsafeRawPointer, _ count: Int) throws -> Int {
        let done = SSL_write(ssl, bytes, Int32(min(count, Int(Int32.max))))
        guard done > 0 else { throw TLSContext.error("\(name): TLS write failed") }
        return Int(done)
    }

    /// Says goodbye (close_notify), without waiting for the peer's.
    func shutdown() {
        SSL_shutdown(ssl)
    }
}
