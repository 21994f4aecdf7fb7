#!/usr/bin/env python3
"""A client that speaks lstore's protocol (spec/protocol.md) to a server and misbehaves on purpose.

    hostile-client.py PORT MODE STORE

STORE is a store whose first pack supplies a real block. MODE:

  wrong-bytes   push a real pack entry whose header names another id
  huge-frame    push an object frame that claims 2^60 bytes
  missing       update-ref `evil` to a commit the server never received
  bad-name      update-ref with an invalid ref name
  garbage       a body that is not frames at all
  fuzz          500 requests of every operation with random bytes changed, cut or added;
                then an honest refs request (its answer is printed)

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
    """The header and stored bytes of the first block in the first pack (spec/store.md, 7.1).
    Writer threads may put a file object first, so the pack is walked to a block."""
    packs = sorted(p for p in os.listdir(STORE + "/packs") if p.endswith(".pack"))
    with open(STORE + "/packs/" + packs[0], "rb") as pack:
        data = pack.read()
    offset = 16
    while offset + 52 <= len(data) - 24:
        stored_length = struct.unpack_from("<I", data, offset + 8)[0]
        if data[offset] == 1:
            return data[offset:offset + 52], data[offset + 52:offset + 52 + stored_length]
        offset += 52 + stored_length
    sys.exit("hostile-client: no block in " + packs[0])


if MODE == "wrong-bytes":
    header, stored = first_entry()
    body = request(4) + frame(6, header[:20] + bytes(range(32)) + stored) + frame(10)
elif MODE == "huge-frame":
    body = request(4) + struct.pack("<IQ", 6, 1 << 60) + bytes(4096)
elif MODE == "missing":
    body = request(5) + frame(7, bytes([0]) + bytes(32) + bytes(range(32)) + b"evil") + frame(10)
elif MODE == "bad-name":
    body = request(5) + frame(7, bytes([0]) + bytes(32) + bytes(range(32)) + b"../x") + frame(10)
elif MODE == "fuzz":
    import random
    rng = random.Random(1)
    header, stored = first_entry()
    ident = header[20:52]
    templates = [
        request(1) + frame(10),
        request(2) + frame(4, bytes([1]) + ident + bytes([4]) + ident) + frame(10),
        request(3) + frame(4, bytes([header[0]]) + ident) + frame(10),
        request(4) + frame(6, header + stored) + frame(10),
        request(5) + frame(7, bytes([0]) + bytes(32) + ident + b"fuzzed") + frame(10),
    ]
    for _ in range(500):
        body = bytearray(rng.choice(templates))
        for _ in range(rng.randint(1, 4)):
            what = rng.random()
            if what < 0.6 and body:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif what < 0.8:
                del body[rng.randrange(len(body) + 1):]
            else:
                body[rng.randrange(len(body) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=10) as conn:
                conn.sendall(b"POST /lstore/v1 HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + bytes(body))
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
        except OSError:
            pass
    body = request(1) + frame(10)
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
if MODE == "fuzz":
    print("ok" if answer.startswith(b"HTTP/1.1 200") and b"fuzzed" not in answer else "broken")
    sys.exit(0)
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
