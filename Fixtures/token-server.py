#!/usr/bin/env python3
"""A token server for a registry with `auth: token` (Docker's token authentication: the
distribution project's docs/spec/auth/token.md, jwt.md and oauth.md), for the registry tests.

    token-server.py --key KEY.pem --cert CERT.pem --issuer ISSUER --service SERVICE --log FILE
                    [--tls-cert PEM --tls-key PEM]

Listens on 127.0.0.1 (a free port) and prints "127.0.0.1:PORT" once it accepts connections.
  GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]   optional Basic credentials
  POST /token   (grant_type=password with username/password, or anonymous; form-encoded)
answer {"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": ...}. The JWT is
signed ES256 with KEY (P-256) by the `openssl` command; its header carries CERT (x5c), which the
registry checks against its rootcertbundle. Anonymous requests get pull only, steve:s3cret gets
pull, push and delete (and registry:catalog:*); other credentials get 401. A service other
than SERVICE gets 400. Each request is one line in FILE:

    METHOD PATH STATUS ACCOUNT GRANTED

ACCOUNT is "anonymous", the user name, or "rejected:NAME"; GRANTED the granted scopes joined by
spaces as "type:name:actions" ("-" when none). The server exits on SIGTERM, and with
--exit-with-stdin when its standard input ends.
"""
import argparse
import base64
import http.server
import json
import os
import secrets
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

USERS = {"steve": "s3cret"}
ANONYMOUS_ACTIONS = {"pull"}
USER_ACTIONS = {"pull", "push", "delete", "*"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_ecdsa_signature(der):
    """openssl's DER ECDSA-Sig-Value (SEQUENCE of INTEGER r, s) → JWS's 64 bytes r || s."""
    def integer(data, at):
        if data[at] != 0x02:
            raise ValueError("not a DER INTEGER")
        length = data[at + 1]
        value = data[at + 2:at + 2 + length]
        return int.from_bytes(value, "big"), at + 2 + length
    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    at = 3 if der[1] & 0x80 else 2
    r, at = integer(der, at)
    s, _ = integer(der, at)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Signer:
    """Makes ES256 JWTs with the P-256 key and certificate the registry trusts."""

    def __init__(self, key, cert, issuer, service):
        self.key, self.issuer, self.service = key, issuer, service
        der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()

    def token(self, subject, access, lifetime=300):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + lifetime,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(16), "access": access}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return signing_input + "." + b64url(raw_ecdsa_signature(der)), now


def parse_scope(scope):
    """"repository:NAME:pull,push" → (type, name, {actions}); names may hold ':' (a port)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, {a for a in actions.split(",") if a}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, status, account, granted):
        text = " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in granted) or "-"
        with self.server.log_lock, open(self.server.log_path, "a") as log:
            log.write(f"{self.command} {self.path} {status} {account} {text}\n")

    def reply(self, status, value, headers=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, field in headers:
            self.send_header(name, field)
        self.end_headers()
        self.wfile.write(body)

    def basic_credentials(self):
        field = self.headers.get("Authorization", "")
        if not field.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(field[6:].strip()).decode().partition(":")
        except ValueError:
            return ("", "")
        return user, password

    def answer(self, service, scopes, credentials):
        account = "anonymous"
        allowed = ANONYMOUS_ACTIONS
        if credentials is not None:
            user, password = credentials
            if USERS.get(user) != password:
                self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials for " + user}]},
                           [("WWW-Authenticate", 'Basic realm="token"')])
                self.record(401, "rejected:" + (user or "-"), [])
                return
            account, allowed = user, USER_ACTIONS
        if service != self.server.signer.service:
            self.reply(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]})
            self.record(400, account, [])
            return
        granted = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if kind == "registry" and account == "anonymous":
                continue
            given = sorted(actions & allowed)
            if given:
                granted.append({"type": kind, "name": name, "actions": given})
        jwt, issued = self.server.signer.token("" if account == "anonymous" else account, granted)
        self.reply(200, {"token": jwt, "access_token": jwt, "expires_in": 300,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))})
        self.record(200, account, granted)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            self.record(404, "-", [])
            return
        query = urllib.parse.parse_qs(url.query)
        scopes = [part for scope in query.get("scope", []) for part in scope.split(" ")]
        self.answer(query.get("service", [""])[0], scopes, self.basic_credentials())

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0") or "0")
        form = urllib.parse.parse_qs(self.rfile.read(min(length, 65536)).decode(errors="replace"))
        if url.path != "/token":
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            self.record(404, "-", [])
            return
        credentials = self.basic_credentials()
        if form.get("grant_type", [""])[0] == "password":
            credentials = (form.get("username", [""])[0], form.get("password", [""])[0])
        scopes = [part for scope in form.get("scope", []) for part in scope.split(" ")]
        self.answer(form.get("service", [""])[0], scopes, credentials)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    tls = None

    def finish_request(self, request, client_address):
        # The TLS handshake in the connection's own thread: a client that never finishes
        # one holds up no other.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def main():
    parser = argparse.ArgumentParser(description="Docker token server for the registry tests")
    parser.add_argument("--key", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--exit-with-stdin", action="store_true", help="exit when standard input ends")
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.signer = Signer(args.key, args.cert, args.issuer, args.service)
    server.log_path, server.log_lock = args.log, threading.Lock()
    open(args.log, "a").close()
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.tls = context
    print(f"127.0.0.1:{server.server_address[1]}", flush=True)
    # With --exit-with-stdin it ends with the process that started it, whose end closes the pipe.
    def watch_stdin():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(0)
    if args.exit_with_stdin:
        threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
