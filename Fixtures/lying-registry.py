#!/usr/bin/env python3
"""A fake OCI registry on loopback that serves a real image from an OCI layout and misbehaves
as its mode says, for the registry client's tests (the distribution spec's pull API:
opencontainers/distribution-spec spec.md; Docker Hub's token flow and rate-limit headers as
docs.docker.com describes them). Standard library only.

    lying-registry.py LAYOUT --mode MODE --log FILE [--other-log FILE] [--name NAME]
                      [--auth none|basic|bearer] [--rate-limit N] [--exit-with-stdin]

Prints two lines once it accepts connections: "127.0.0.1:PORT", the registry, and
"localhost:PORT2", another host (its own listener, reached by another name and port): the blob
storage that `redirect` and `dockerhub` send blob GETs to, and the token endpoint of
`--auth bearer` and `dockerhub`.

The registry answers GET and HEAD of /v2/, /v2/NAME/tags/list, /v2/NAME/manifests/TAG-or-DIGEST
(Content-Type the document's media type, Docker-Content-Digest, Content-Length) and
/v2/NAME/blobs/DIGEST (Docker-Content-Digest; one Range "bytes=A-B" or "bytes=A-" answered 206).
NAME is --name (default test/image; library/debian for dockerhub), the tags those of the
layout's index.json. Writes (POST, PUT, PATCH, DELETE) are answered 405 UNSUPPORTED.

MODE:
  honest            as above
  wrong-bytes       every layer blob has one byte changed (its size and digest header honest)
  endless           every layer blob GET is a chunked body that never ends
  wrong-size        every layer blob is 1024 bytes longer than its descriptor says, and its
                    Content-Length says so (HEAD too); wrong-size-short: a quarter shorter
  redirect-loop     every blob GET is redirected (307) to a new URL of the same blob, forever
  huge-manifest     every manifest GET is 100 MiB, chunked (no Content-Length);
                    huge-manifest-close: the same without chunks, the end of the connection
                    its only end
  flaky             the first GET of each blob answers 503, the second 429 with Retry-After: 1,
                    the rest honestly (HEAD always honestly)
  cut               the first GET of each blob sends its whole Content-Length head and half the
                    bytes, then closes the connection; later GETs (with Range) honestly
  redirect          every blob GET is redirected (307) to the other host, which serves it
                    (honestly, with Range); whether Authorization reached it is in its log
  dockerhub         Docker Hub as documented: every /v2/ request without a token is 401 with
                    WWW-Authenticate: Bearer realm="http://localhost:PORT2/token",
                    service="registry.docker.io"[,scope="repository:NAME:pull"]; the token
                    endpoint grants pull to anyone (steve:s3cret or no credentials; other
                    credentials 401); only NAME (library/debian by default) exists, any other
                    name is 401 as Hub answers for names it does not show; manifest GETs carry
                    ratelimit-limit: N;w=21600 and ratelimit-remaining: M;w=21600 and count
                    against N (default 100; HEADs do not count), then 429 TOOMANYREQUESTS;
                    blob GETs are redirected to the other host as Hub's are to its CDN

--auth (not for dockerhub, which is always bearer): basic wants Basic steve:s3cret on every /v2/
request; bearer wants a token from the other host's /token (service "lying-registry"; anonymous
gets pull, steve:s3cret pull and push).

Every request to the registry is one line in --log, every request to the other host one line
in --other-log (default: the --log path with ".other" appended):

    METHOD PATH STATUS BYTES AUTH

PATH as requested (query included), BYTES the body bytes sent (as far as the client took them),
AUTH "yes" when the request had an Authorization field, else "no". The server exits on SIGTERM,
and with --exit-with-stdin when its standard input ends.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

USERS = {"steve": "s3cret"}
HUGE_SIZE = 100 * 1024 * 1024
CHUNK = 64 * 1024
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
MODES = ["honest", "wrong-bytes", "endless", "wrong-size", "wrong-size-short", "redirect-loop", "huge-manifest",
         "huge-manifest-close", "flaky", "cut", "redirect", "dockerhub"]
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Image:
    """The layout's documents (by tag and digest, with media types), its blobs and which are layers."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "index.json"), "rb") as f:
            index = json.load(f)
        self.tags = {}
        self.manifests = {}
        self.layers = set()
        for desc in index.get("manifests", []):
            name = desc.get("annotations", {}).get("org.opencontainers.image.ref.name")
            if name:
                self.tags[name] = desc["digest"]
            self.walk(desc)

    def walk(self, desc):
        d = desc["digest"]
        data = self.read(d)
        document = json.loads(data)
        media = document.get("mediaType") or desc.get("mediaType")
        self.manifests[d] = (media, data)
        if media in INDEX_TYPES:
            for child in document.get("manifests", []):
                if child.get("mediaType", MANIFEST_TYPES) in MANIFEST_TYPES and os.path.exists(self.blob_path(child["digest"])):
                    self.walk(child)
        else:
            for layer in document.get("layers", []):
                self.layers.add(layer["digest"])

    def blob_path(self, d):
        return os.path.join(self.path, "blobs", "sha256", d.split(":", 1)[1])

    def read(self, d):
        with open(self.blob_path(d), "rb") as f:
            return f.read()

    def has_blob(self, d):
        return DIGEST.match(d) is not None and os.path.isfile(self.blob_path(d))


class State:
    """What the servers share: the image, the mode, counters and tokens, the logs."""

    def __init__(self, args):
        self.image = Image(args.layout)
        self.mode = args.mode
        self.name = args.name or ("library/debian" if args.mode == "dockerhub" else "test/image")
        self.auth = "bearer" if args.mode == "dockerhub" else args.auth
        self.service = "registry.docker.io" if args.mode == "dockerhub" else "lying-registry"
        self.rate_limit = args.rate_limit
        self.rate_used = 0
        self.gets = {}
        self.tokens = {}
        self.lock = threading.Lock()
        self.logs = {"registry": args.log, "other": args.other_log or args.log + ".other"}
        for path in self.logs.values():
            open(path, "a").close()
        self.other = ""

    def log(self, which, line):
        with self.lock, open(self.logs[which], "a") as f:
            f.write(line + "\n")

    def count_get(self, d):
        with self.lock:
            self.gets[d] = self.gets.get(d, 0) + 1
            return self.gets[d]

    def blob_bytes(self, d):
        """The bytes the registry sends for blob d, as the mode shapes them."""
        data = self.image.read(d)
        if d not in self.image.layers:
            return data
        if self.mode == "wrong-bytes" and data:
            middle = len(data) // 2
            return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        if self.mode == "wrong-size":
            return data + bytes(i % 251 for i in range(1024))
        if self.mode == "wrong-size-short":
            return data[:len(data) - max(1, len(data) // 4)]
        return data

    def issue_token(self, access):
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        claims = base64.urlsafe_b64encode(json.dumps({"access": access}).encode()).rstrip(b"=").decode()
        token = f"{header}.{claims}.{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens[token] = (access, time.time() + 300)
        return token

    def token_known(self, token):
        with self.lock:
            return self.tokens.get(token, ([], 0))[1] >= time.time()

    def token_allows(self, token, name, action):
        with self.lock:
            access, expiry = self.tokens.get(token, ([], 0))
        if time.time() > expiry:
            return False
        return any(a["type"] == "repository" and a["name"] == name and action in a["actions"] for a in access)


def parse_range(field, size):
    """"bytes=A-B" / "bytes=A-" → (start, end inclusive), None for no range, "bad" when unsatisfiable."""
    if not field:
        return None
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", field.strip())
    if not match:
        return None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection to the registry or the other host; `which` says which."""

    protocol_version = "HTTP/1.1"
    which = "registry"

    def log_message(self, *args):
        pass

    @property
    def state(self):
        return self.server.state

    # Every response goes through these, which count what reached the client.
    def start(self, status, headers=()):
        self.status = status
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)

    def body(self, data):
        if self.command == "HEAD" or not data:
            return
        self.wfile.write(data)
        self.sent += len(data)

    def reply(self, status, data=b"", headers=()):
        self.start(status, headers)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.body(data)

    def error(self, status, code, message, headers=()):
        data = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self.reply(status, data, [("Content-Type", "application/json")] + list(headers))

    def handle_request(self):
        self.status, self.sent = 0, 0
        try:
            if self.which == "registry":
                self.registry()
            else:
                self.other_host()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            auth = "yes" if self.headers.get("Authorization") else "no"
            self.state.log(self.which, f"{self.command} {self.path} {self.status} {self.sent} {auth}")

    do_GET = do_HEAD = handle_request

    def do_write(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        if length:
            self.rfile.read(min(length, 1 << 20))
        self.status, self.sent = 0, 0
        self.error(405, "UNSUPPORTED", "this registry only serves pulls")
        auth = "yes" if self.headers.get("Authorization") else "no"
        self.state.log(self.which, f"{self.command} {self.path} {self.status} {self.sent} {auth}")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_write

    # The registry.
    def challenge(self, scope=None, error=None):
        state = self.state
        if state.auth == "basic":
            return [("WWW-Authenticate", 'Basic realm="lying-registry"')]
        value = f'Bearer realm="http://{state.other}/token",service="{state.service}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return [("WWW-Authenticate", value)]

    def authorized(self, name):
        """Whether the request may pull `name` (None: any /v2/ access); answers 401 when not."""
        state = self.state
        field = self.headers.get("Authorization", "")
        if state.auth == "none":
            return True
        if state.auth == "basic":
            expected = "Basic " + base64.b64encode(b"steve:s3cret").decode()
            if field == expected:
                return True
            self.error(401, "UNAUTHORIZED", "authentication required", self.challenge())
            return False
        token = field[7:].strip() if field.lower().startswith("bearer ") else None
        scope = f"repository:{name}:pull" if name else None
        error = None
        if token is not None:
            if not state.token_known(token):
                error = "invalid_token"
            elif name is None or state.token_allows(token, name, "pull"):
                return True
            else:
                error = "insufficient_scope"
        self.error(401, "UNAUTHORIZED", "authentication required", self.challenge(scope, error))
        return False

    def registry(self):
        state = self.state
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path in ("/v2", "/v2/"):
            if self.authorized(None):
                self.reply(200, b"{}", [("Content-Type", "application/json"),
                                        ("Docker-Distribution-API-Version", "registry/2.0")])
            return
        match = re.fullmatch(r"/v2/(.+)/(manifests|blobs|tags)/(.+)", path)
        if not match:
            self.error(404, "NOT_FOUND", f"no route {path}")
            return
        name, kind, ref = match.groups()
        if not self.authorized(name):
            return
        if name != state.name:
            if state.mode == "dockerhub":
                self.error(401, "UNAUTHORIZED", "authentication required",
                           self.challenge(f"repository:{name}:pull", "insufficient_scope"))
            else:
                self.error(404, "NAME_UNKNOWN", f"repository name not known to registry: {name}")
            return
        if kind == "tags" and ref == "list":
            self.reply(200, json.dumps({"name": name, "tags": sorted(state.image.tags)}).encode(),
                       [("Content-Type", "application/json")])
        elif kind == "manifests":
            self.manifest(ref)
        elif kind == "blobs":
            self.blob(ref)
        else:
            self.error(404, "NOT_FOUND", f"no route {path}")

    def manifest(self, ref):
        state = self.state
        d = state.image.tags.get(ref, ref)
        if d not in state.image.manifests:
            self.error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
            return
        media, data = state.image.manifests[d]
        headers = [("Content-Type", media), ("Docker-Content-Digest", d)]
        if state.mode == "dockerhub":
            with state.lock:
                if self.command == "GET":
                    if state.rate_used >= state.rate_limit:
                        limited = True
                    else:
                        state.rate_used += 1
                        limited = False
                else:
                    limited = False
                remaining = max(0, state.rate_limit - state.rate_used)
            headers += [("ratelimit-limit", f"{state.rate_limit};w=21600"),
                        ("ratelimit-remaining", f"{remaining};w=21600"), ("docker-ratelimit-source", "127.0.0.1")]
            if limited:
                self.error(429, "TOOMANYREQUESTS", "You have reached your pull rate limit. You may increase "
                           "the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                           headers[2:])
                return
        if state.mode in ("huge-manifest", "huge-manifest-close"):
            self.huge(media)
            return
        self.reply(200, data, headers)

    def huge(self, media):
        """100 MiB of a manifest-shaped document, chunked or ended by closing the connection."""
        chunked = self.state.mode == "huge-manifest"
        self.start(200, [("Content-Type", media)])
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        head = b'{"schemaVersion":2,"mediaType":"' + media.encode() + b'","annotations":{"pad":"'
        tail = b'"}}'
        left = HUGE_SIZE - len(head) - len(tail)
        pieces = [head]
        while left > 0:
            n = min(CHUNK, left)
            pieces.append(b"a" * n)
            left -= n
        pieces.append(tail)
        for piece in pieces:
            if chunked:
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.wfile.write(piece)
            self.sent += len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def blob(self, d):
        state = self.state
        if not state.image.has_blob(d):
            self.error(404, "BLOB_UNKNOWN", f"blob unknown to registry: {d}")
            return
        mode, layer = state.mode, d in state.image.layers
        if self.command == "GET":
            if mode == "flaky":
                count = state.count_get(d)
                if count == 1:
                    self.error(503, "UNAVAILABLE", "service unavailable, try again")
                    return
                if count == 2:
                    self.error(429, "TOOMANYREQUESTS", "too many requests", [("Retry-After", "1")])
                    return
            elif mode == "cut":
                if state.count_get(d) == 1:
                    self.cut(d)
                    return
            elif mode == "redirect-loop":
                url = urllib.parse.urlsplit(self.path)
                hop = int(urllib.parse.parse_qs(url.query).get("hop", ["0"])[0]) + 1
                self.reply(307, b"", [("Location", f"{url.path}?hop={hop}"), ("Docker-Content-Digest", d)])
                return
            elif mode in ("redirect", "dockerhub"):
                self.reply(307, b"", [("Location", f"http://{state.other}/blobs/{d}"), ("Docker-Content-Digest", d)])
                return
            elif mode == "endless" and layer:
                self.endless(d)
                return
        self.serve_bytes(d, state.blob_bytes(d))

    def serve_bytes(self, d, data):
        """Blob bytes, whole or the one Range asked for."""
        wanted = parse_range(self.headers.get("Range"), len(data))
        headers = [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", d), ("Accept-Ranges", "bytes")]
        if wanted == "bad":
            self.reply(416, b"", headers + [("Content-Range", f"bytes */{len(data)}")])
        elif wanted is None:
            self.reply(200, data, headers)
        else:
            start, end = wanted
            self.reply(206, data[start:end + 1], headers + [("Content-Range", f"bytes {start}-{end}/{len(data)}")])

    def cut(self, d):
        data = self.state.blob_bytes(d)
        self.start(200, [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", d),
                         ("Content-Length", str(len(data)))])
        self.end_headers()
        self.body(data[:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def endless(self, d):
        self.start(200, [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", d),
                         ("Transfer-Encoding", "chunked")])
        self.end_headers()
        piece = bytes(i % 251 for i in range(CHUNK))
        frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
        while self.sent < 1 << 40:
            self.wfile.write(frame)
            self.sent += len(piece)

    # The other host: blob storage and the token endpoint.
    def other_host(self):
        state = self.state
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/blobs/"):
            d = url.path[len("/blobs/"):]
            if not state.image.has_blob(d):
                self.reply(404, b"no such blob\n", [("Content-Type", "text/plain")])
                return
            self.serve_bytes(d, state.blob_bytes(d))
        elif url.path == "/token" and self.command == "GET":
            self.token(urllib.parse.parse_qs(url.query))
        else:
            self.reply(404, b"not found\n", [("Content-Type", "text/plain")])

    def token(self, query):
        state = self.state
        field = self.headers.get("Authorization", "")
        user = None
        if field.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(field[6:].strip()).decode().partition(":")
            except ValueError:
                user, password = "", None
            if USERS.get(user) != password:
                self.reply(401, json.dumps({"details": "incorrect username or password"}).encode(),
                           [("Content-Type", "application/json")])
                return
        if query.get("service", [""])[0] != state.service:
            self.reply(400, json.dumps({"details": "unknown service"}).encode(), [("Content-Type", "application/json")])
            return
        allowed = {"pull"} if user is None or state.mode == "dockerhub" else {"pull", "push"}
        access = []
        for scope in (part for value in query.get("scope", []) for part in value.split(" ")):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            given = sorted(set(actions.split(",")) & allowed)
            if kind == "repository" and name and given:
                access.append({"type": "repository", "name": name, "actions": given})
        token = state.issue_token(access)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.reply(200, json.dumps({"token": token, "access_token": token, "expires_in": 300, "issued_at": now}).encode(),
                   [("Content-Type", "application/json")])


class OtherHandler(Handler):
    which = "other"


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description="a fake registry that misbehaves on purpose")
    parser.add_argument("layout", help="an OCI image layout directory")
    parser.add_argument("--mode", choices=MODES, default="honest")
    parser.add_argument("--log", required=True)
    parser.add_argument("--other-log")
    parser.add_argument("--name")
    parser.add_argument("--auth", choices=["none", "basic", "bearer"], default="none")
    parser.add_argument("--rate-limit", type=int, default=100)
    parser.add_argument("--exit-with-stdin", action="store_true", help="exit when standard input ends")
    args = parser.parse_args()
    try:
        state = State(args)
    except (OSError, ValueError, KeyError) as error:
        print(f"lying-registry.py: {args.layout}: not a readable OCI layout: {error}", file=sys.stderr)
        return 1
    registry = Server(("127.0.0.1", 0), Handler)
    other = Server(("127.0.0.1", 0), OtherHandler)
    registry.state = other.state = state
    state.other = f"localhost:{other.server_address[1]}"
    for server in (registry, other):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"127.0.0.1:{registry.server_address[1]}\n{state.other}", flush=True)
    if args.exit_with_stdin:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        return 0
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
