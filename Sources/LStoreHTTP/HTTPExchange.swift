import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// One request in flight on an `HTTPClient`, driven by its caller: `write` the body, `finishBody`,
/// then `response()` and `read` until 0. libcurl runs (curl_multi_perform) only inside these
/// calls; its callbacks move bytes between bounded buffers here, pausing the transfer while the
/// caller has not caught up, so neither side holds more than a few buffers' worth.
public final class HTTPExchange {
    public let request: HTTPRequest
    /// Strong: an exchange may outlive its caller's last use of the client (the client holds it weakly).
    private let client: HTTPClient
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var added = false

    /// Request body bytes written but not yet taken by libcurl.
    private var outgoing: [UInt8] = []
    private var outgoingStart = 0
    private var bodyFinished = false
    private var sendPaused = false
    private var bodyWritten = 0

    /// Answer body bytes libcurl delivered that the caller has not read.
    private var incoming: [UInt8] = []
    private var incomingStart = 0
    private var receivePaused = false
    private var bodyStarted = false

    /// The head being read, and the last complete one.
    private var partialHead: HTTPResponse?
    private var lastHead: HTTPResponse?
    private var done = false
    private var result = CURLE_OK
    private var lastProgress = monotonicSeconds()
    private var requestHeaderBytes: UInt64 = 0
    /// When the whole answer must have arrived (monotonic seconds), however the bytes trickle in.
    public var deadline: Double?

    /// Buffered bytes, each way, at which the other side waits.
    static let bufferLimit = 1 << 20

    init(client: HTTPClient, request: HTTPRequest) throws {
        self.client = client
        self.request = request
        let easy = client.easy
        curl_easy_reset(easy)
        let context = Unmanaged.passUnretained(self).toOpaque()
        var failed: CURLcode = CURLE_OK
        func set(_ code: CURLcode) { if code != CURLE_OK && failed == CURLE_OK { failed = code } }
        set(lstore_curl_setopt_string(easy, CURLOPT_URL, request.url))
        set(lstore_curl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https"))
        // A request made over TLS never follows a redirect to plain HTTP.
        let secure = request.url.lowercased().hasPrefix("https://")
        set(lstore_curl_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, secure ? "https" : "http,https"))
        set(lstore_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        client.errorBuffer[0] = 0
        set(lstore_curl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, client.errorBuffer))
        set(lstore_curl_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS)))
        set(lstore_curl_setopt_long(easy, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
        if let caFile = client.options.caFile {
            set(lstore_curl_setopt_string(easy, CURLOPT_CAINFO, caFile))
            set(lstore_curl_setopt_string(easy, CURLOPT_CAPATH, nil))
        }
        if !client.options.verifyCertificates {
            set(lstore_curl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0))
            set(lstore_curl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0))
        }
        set(lstore_curl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, client.options.maxRedirects > 0 ? 1 : 0))
        set(lstore_curl_setopt_long(easy, CURLOPT_MAXREDIRS, client.options.maxRedirects))
        set(lstore_curl_setopt_long(easy, CURLOPT_UNRESTRICTED_AUTH, 0))
        set(lstore_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(client.options.connectTimeout * 1000)))
        set(lstore_curl_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, 1))
        set(lstore_curl_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, max(1, Int(client.options.stallTimeout.rounded(.up)))))
        set(lstore_curl_setopt_long(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1))
        set(lstore_curl_setopt_string(easy, CURLOPT_USERAGENT, client.options.userAgent))
        set(lstore_curl_setopt_callback(easy, CURLOPT_HEADERFUNCTION, headerCallback))
        set(lstore_curl_setopt_pointer(easy, CURLOPT_HEADERDATA, context))
        set(lstore_curl_setopt_callback(easy, CURLOPT_WRITEFUNCTION, writeCallback))
        set(lstore_curl_setopt_pointer(easy, CURLOPT_WRITEDATA, context))

        var headers = request.headers
        // No `Expect: 100-continue` and its wait: the body follows the head at once.
        headers.set("Expect", "")
        switch (request.method, request.body) {
        case ("GET", .none):
            set(lstore_curl_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case ("HEAD", .none):
            set(lstore_curl_setopt_long(easy, CURLOPT_NOBODY, 1))
        case (_, .none):
            set(lstore_curl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method))
        case (let method, let body):
            set(lstore_curl_setopt_callback(easy, CURLOPT_READFUNCTION, readCallback))
            set(lstore_curl_setopt_pointer(easy, CURLOPT_READDATA, context))
            let length: curl_off_t
            if case .length(let count) = body { length = curl_off_t(count) } else { length = -1 }
            if length < 0 { headers.set("Transfer-Encoding", "chunked") }
            if method == "POST" {
                set(lstore_curl_setopt_long(easy, CURLOPT_POST, 1))
                set(lstore_curl_setopt_offset(easy, CURLOPT_POSTFIELDSIZE_LARGE, length))
            } else {
                set(lstore_curl_setopt_long(easy, CURLOPT_UPLOAD, 1))
                set(lstore_curl_setopt_offset(easy, CURLOPT_INFILESIZE_LARGE, length))
                if method != "PUT" { set(lstore_curl_setopt_string(easy, CURLOPT_CUSTOMREQUEST, method)) }
            }
        }
        for (name, value) in headers {
            // "Name;" sends a field with an empty value, "Name:" removes one curl would add.
            let line = value.isEmpty && name.lowercased() != "expect" ? "\(name);" : "\(name): \(value)"
            guard let list = curl_slist_append(headerList, line) else { throw HTTPError(.other, url: request.url, "out of memory") }
            headerList = list
        }
        set(lstore_curl_setopt_list(easy, CURLOPT_HTTPHEADER, headerList))
        guard failed == CURLE_OK else {
            curl_slist_free_all(headerList)
            throw HTTPError(.invalidRequest, url: request.url, "libcurl refused an option: \(String(cString: curl_easy_strerror(failed)))")
        }
        let added = curl_multi_add_handle(client.multi, easy)
        guard added == CURLM_OK else {
            curl_slist_free_all(headerList)
            throw HTTPError(.other, url: request.url, "libcurl: \(String(cString: curl_multi_strerror(added)))")
        }
        self.added = true
    }

    deinit { cancel() }

    /// Ends the exchange: a transfer not yet done is dropped with its connection. Counts its bytes.
    public func cancel() {
        guard added else { return }
        added = false
        var requestSize = 0
        _ = lstore_curl_getinfo_long(client.easy, CURLINFO_REQUEST_SIZE, &requestSize)
        client.bytesSent += UInt64(max(0, requestSize))
        curl_multi_remove_handle(client.multi, client.easy)
        curl_slist_free_all(headerList)
        headerList = nil
    }

    /// Bytes of this request so far: body bytes sent, head and body bytes received.
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0

    // MARK: The caller's side

    /// Appends `bytes` to the request body; returns once libcurl has taken most of what is waiting.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!bodyFinished, "write after finishBody")
        // The server answered before it took the whole body: the rest has nowhere to go.
        if done { return try check() }
        if case .length(let count) = request.body, bodyWritten + bytes.count > count {
            throw HTTPError(.invalidRequest, url: request.url, "a request body longer than the \(count) bytes announced")
        }
        bodyWritten += bytes.count
        if outgoingStart > 0 && outgoingStart == outgoing.count {
            outgoing.removeAll(keepingCapacity: true)
            outgoingStart = 0
        }
        outgoing.append(contentsOf: bytes)
        resume()
        try drive(until: { outgoing.count - outgoingStart < Self.bufferLimit })
        try check()
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Says the body is whole; returns once libcurl has taken all of it.
    public func finishBody() throws {
        guard !bodyFinished else { return }
        if case .length(let count) = request.body, bodyWritten != count {
            throw HTTPError(.invalidRequest, url: request.url, "a request body of \(bodyWritten) bytes where \(count) were announced")
        }
        bodyFinished = true
        resume()
        try drive(until: { outgoingStart == outgoing.count })
        try check()
    }

    /// The head of the final answer: waits for it (the body written first).
    public func response() throws -> HTTPResponse {
        if !bodyFinished { try finishBody() }
        try drive(until: { bodyStarted })
        // A transfer that failed after the head: the body's reader gets what arrived, then the error.
        if bodyStarted, let head = lastHead { return head }
        try check()
        guard let head = lastHead else {
            throw HTTPError(.protocolViolation, url: request.url, "the server closed the connection without an answer")
        }
        return head
    }

    /// Up to `buffer.count` bytes of the answer's body; 0 at its end.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if !bodyStarted { _ = try response() }
        try drive(until: { incomingStart < incoming.count })
        let count = min(buffer.count, incoming.count - incomingStart)
        if count == 0 {
            try check()
            return 0
        }
        incoming.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + incomingStart, byteCount: count) }
        incomingStart += count
        if incomingStart == incoming.count {
            incoming.removeAll(keepingCapacity: true)
            incomingStart = 0
        }
        if receivePaused && incoming.count - incomingStart < Self.bufferLimit { resume() }
        return count
    }

    // MARK: Driving libcurl

    /// Runs the transfer until `condition` holds or it is done; throws when it stalled. A failed
    /// transfer is the caller's to report (`check`), after what arrived before the failure.
    private func drive(until condition: () -> Bool) throws {
        lastProgress = max(lastProgress, monotonicSeconds() - 0.001)
        while !condition() && !done {
            var running: Int32 = 0
            let code = curl_multi_perform(client.multi, &running)
            guard code == CURLM_OK else {
                throw HTTPError(.other, url: request.url, "libcurl: \(String(cString: curl_multi_strerror(code)))")
            }
            collect()
            if condition() || done { break }
            let now = monotonicSeconds()
            let stall = client.options.stallTimeout
            if now - lastProgress > stall {
                throw HTTPError(.timeout, url: request.url, "nothing moved for \(Int(stall.rounded(.up))) s; gave up")
            }
            if let deadline, now > deadline {
                throw HTTPError(.timeout, url: request.url, "the answer did not arrive in time; gave up")
            }
            var ready: Int32 = 0
            let wait = min(1.0, stall - (now - lastProgress), (deadline ?? .infinity) - now)
            _ = curl_multi_poll(client.multi, nil, 0, Int32(max(1, wait * 1000)), &ready)
        }
    }

    /// Takes libcurl's word that the transfer is done.
    private func collect() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(client.multi, &left) {
            if message.pointee.msg == CURLMSG_DONE && message.pointee.easy_handle == client.easy {
                done = true
                result = message.pointee.data.result
            }
        }
    }

    /// Lets a paused transfer go on.
    private func resume() {
        guard sendPaused || receivePaused, added else { return }
        sendPaused = false
        receivePaused = false
        _ = curl_easy_pause(client.easy, lstore_curl_pause_cont)
    }

    /// Throws the transfer's failure, if it failed.
    private func check() throws {
        guard done, result != CURLE_OK else { return }
        let detail = String(cString: client.errorBuffer)
        let text = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
        let url = request.url
        switch result {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            throw HTTPError(.connect, url: url, "cannot connect: \(text)")
        case CURLE_OPERATION_TIMEDOUT:
            throw HTTPError(.timeout, url: url, "timed out: \(text)")
        case CURLE_PEER_FAILED_VERIFICATION:
            if text.contains("host name") || text.contains("hostname") {
                throw HTTPError(.hostMismatch, url: url, "the server's certificate is not for this host (hostname mismatch): \(text)")
            }
            throw HTTPError(.tls, url: url, "the server's certificate is not trusted: \(text)")
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM:
            throw HTTPError(.tls, url: url, "TLS failed: \(text)")
        case CURLE_TOO_MANY_REDIRECTS:
            throw HTTPError(.redirect, url: url, "more than \(client.options.maxRedirects) redirects (a loop?); gave up")
        case CURLE_SEND_FAIL_REWIND:
            throw HTTPError(.redirect, url: url, "redirected, but the request body cannot be sent again")
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING:
            throw HTTPError(.truncated, url: url, "the connection ended in the middle of the answer: \(text)")
        case CURLE_WEIRD_SERVER_REPLY, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_BAD_CONTENT_ENCODING:
            throw HTTPError(.protocolViolation, url: url, "not a valid HTTP answer: \(text)")
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            throw HTTPError(.invalidRequest, url: url, "not a URL this client takes: \(text)")
        default:
            throw HTTPError(.other, url: url, text)
        }
    }

    // MARK: libcurl's callbacks

    fileprivate func supply(_ buffer: UnsafeMutablePointer<CChar>, _ capacity: Int) -> Int {
        let waiting = outgoing.count - outgoingStart
        guard waiting > 0 else {
            if bodyFinished { return 0 }
            sendPaused = true
            return lstore_curl_readfunc_pause
        }
        let count = min(capacity, waiting)
        outgoing.withUnsafeBytes { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress! + outgoingStart, byteCount: count) }
        outgoingStart += count
        bytesSent += UInt64(count)
        client.bytesSent += UInt64(count)
        lastProgress = monotonicSeconds()
        return count
    }

    fileprivate func deliver(_ bytes: UnsafePointer<CChar>, _ count: Int) -> Int {
        if incoming.count - incomingStart >= Self.bufferLimit {
            receivePaused = true
            return lstore_curl_writefunc_pause
        }
        bodyStarted = true
        if let partialHead { lastHead = partialHead; self.partialHead = nil }
        incoming.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: count))
        bytesReceived += UInt64(count)
        client.bytesReceived += UInt64(count)
        lastProgress = monotonicSeconds()
        return count
    }

    fileprivate func headerLine(_ bytes: UnsafePointer<CChar>, _ count: Int) -> Int {
        bytesReceived += UInt64(count)
        client.bytesReceived += UInt64(count)
        lastProgress = monotonicSeconds()
        var length = count
        while length > 0, bytes[length - 1] == 0x0a || bytes[length - 1] == 0x0d { length -= 1 }
        let line = String(decoding: UnsafeRawBufferPointer(start: bytes, count: length), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            guard let status = try? HTTPHead.statusLine(line) else { return count }
            partialHead = HTTPResponse(version: status.version, status: status.status, reason: status.reason,
                                       headers: HTTPHeaders(), url: effectiveURL)
        } else if line.isEmpty {
            // A head is whole; an interim (1xx) one is not the answer.
            if let head = partialHead, head.status >= 200 { lastHead = head }
        } else if let field = try? HTTPHead.field(line) {
            partialHead?.headers.add(field.name, field.value)
        }
        return count
    }

    private var effectiveURL: String {
        var url: UnsafeMutablePointer<CChar>?
        guard lstore_curl_getinfo_string(client.easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK, let url else { return request.url }
        return String(cString: url)
    }
}

private func exchange(_ context: UnsafeMutableRawPointer?) -> HTTPExchange {
    Unmanaged<HTTPExchange>.fromOpaque(context!).takeUnretainedValue()
}

private let readCallback: lstore_curl_data_callback = { buffer, size, count, context in
    exchange(context).supply(buffer!, size * count)
}

private let writeCallback: lstore_curl_data_callback = { buffer, size, count, context in
    exchange(context).deliver(buffer!, size * count)
}

private let headerCallback: lstore_curl_data_callback = { buffer, size, count, context in
    exchange(context).headerLine(buffer!, size * count)
}
