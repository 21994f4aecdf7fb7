#!/usr/bin/env python3
"""A client that speaks lstore's protocol (spec/protocol.md) to a server and misbehaves on purpose.

    hostile-client.py PORT MODE STORE

STORE is a store whose first pack supplies a real object. MODE:

  wrong-bytes   push a real pack entry whose header names another id
  huge-frame    push an object frame that claims 2^60 bytes
  missing       update-ref `evil` to a commit the server never received
  bad-name      update-ref with an invalid ref name
  garbage       a body that is not frames at all

Prints the server's answer on one line: `error CODE MESSAGE`, `ok`, or `closed`.
"""
import os
import socket
import struct
import sys

PORT, MODE, STORE = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def frame(kind, payload=b""):
    return struct.pack("<IQ", kind, len(payload)) + payload


def request(operation):
    return frame(1, struct.pack("<IBH", 1, operation, 0))


def first_entry():
    packs = sorted(p for p in os.listdir(STORE + "/packs") if p.endswith(".pack"))
    with open(STORE + "/packs/" + packs[0], "rb") as pack:
        data = pack.read()
    stored_length = struct.unpack_from("<I", data, 16 + 8)[0]
    return data[16:16 + 52], data[68:68 + stored_length]


if MODE == "wrong-bytes":
    header, stored = first_entry()
    body = request(4) + frame(6, header[:20] + bytes(range(32)) + stored) + frame(10)
elif MODE == "huge-frame":
    body = request(4) + struct.pack("<IQ", 6, 1 << 60) + bytes(4096)
elif MODE == "missing":
    body = request(5) + frame(7, bytes([0]) + bytes(32) + bytes(range(32)) + b"evil") + frame(10)
elif MODE == "bad-name":
    body = request(5) + frame(7, bytes([0]) + bytes(32) + bytes(range(32)) + b"../x") + frame(10)
else:
    body = b"GET / HTTP/1.0\r\n\r\n" * 4

conn = socket.create_connection(("127.0.0.1", PORT), timeout=10)
conn.sendall(b"POST /lstore/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
answer = b""
try:
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        answer += chunk
except OSError:
    pass
head, _, rest = answer.partition(b"\r\n\r\n")
while len(rest) >= 12:
    kind, length = struct.unpack_from("<IQ", rest)
    payload = rest[12:12 + length]
    if kind == 9:
        code = struct.unpack_from("<I", payload)[0]
        print("error", code, payload[4:].decode(errors="replace"))
        sys.exit(0)
    if kind == 8:
        print("ok")
        sys.exit(0)
    rest = rest[12 + length:]
print("closed", head.split(b"\r\n")[0].decode(errors="replace"))
