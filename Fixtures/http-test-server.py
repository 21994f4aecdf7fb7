#!/usr/bin/env python3
"""A small HTTP/1.1 server on two loopback hosts, for LStoreHTTP's client tests.

Listens on 127.0.0.1 and 127.0.0.2 (free ports) and prints "listening PORT1 PORT2". Keeps
connections open between requests. Paths:
  /auth            200, the body the request's Authorization field (or "none")
  /to?url=U        302 to U
  /loop            302 to /loop
  /data            200, 1000 bytes (i % 251); honours Range: bytes=A-B with 206
  /chunked         200, chunked: 3 chunks and a trailer
  /connections     200, how many connections both hosts accepted so far
  /echo (POST/PUT) 200, the request body (Content-Length or chunked), its framing in X-Framing
  /stall           the head, then silence
"""
import http.server
import socketserver
import threading
import time
import urllib.parse

DATA = bytes(i % 251 for i in range(1000))
connections = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global connections
        with lock:
            connections += 1
        super().setup()

    def log_message(self, *args):
        pass

    def reply(self, body, status=200, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/auth":
            self.reply(self.headers.get("Authorization", "none").encode())
        elif url.path == "/to":
            target = urllib.parse.parse_qs(url.query)["url"][0]
            self.reply(b"", 302, [("Location", target)])
        elif url.path == "/loop":
            self.reply(b"", 302, [("Location", "/loop")])
        elif url.path == "/data":
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes="):
                first, _, last = wanted[6:].partition("-")
                first = int(first)
                last = int(last) if last else len(DATA) - 1
                self.reply(DATA[first:last + 1], 206, [("Content-Range", "bytes %d-%d/%d" % (first, last, len(DATA)))])
            else:
                self.reply(DATA)
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello, ", b"chunked ", b"world"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif url.path == "/connections":
            with lock:
                count = connections
            self.reply(str(count).encode())
        elif url.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.flush()
            time.sleep(30)
        else:
            self.reply(b"no such path", 404)

    def do_POST(self):
        if self.path != "/echo":
            return self.reply(b"no such path", 404)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            framing = "chunked"
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            framing = "length"
        self.reply(body, 200, [("X-Framing", framing), ("X-Method", self.command)])

    do_PUT = do_POST
    do_PATCH = do_POST


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


servers = [Server((host, 0), Handler) for host in ("127.0.0.1", "127.0.0.2")]
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("listening", *(server.server_address[1] for server in servers), flush=True)
threading.Event().wait()
