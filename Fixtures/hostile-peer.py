#!/usr/bin/env python3
"""A peer that speaks lstore's protocol (spec/protocol.md) over HTTP and misbehaves on purpose.

    hostile-peer.py MODE STORE

Lists one ref, `evil`, naming the commit of STORE's first ref, and answers every fetch according
to MODE:

  wrong-bytes  a real pack entry of STORE whose header names the object asked for: the stored bytes
               pass their XXH3 and decompress, but do not hash to the id
  truncated    half of an object frame, then the connection closes
  huge-frame   an object frame that claims 2^60 bytes
  missing      no object at all: the ref names a commit the peer never sends
  endless      (for the refs request) ref frames without end
  stall        (for the refs request) the HTTP head, then silence

Prints the port it listens on (127.0.0.1, a free port), then serves until killed.
"""
import socket
import struct
import sys
import threading
import time

MODE, STORE = sys.argv[1], sys.argv[2]
REQUEST, INFO, REF, IDS, BITS, OBJECT, UPDATE, RESULT, ERROR, END = range(1, 11)


def frame(kind, payload=b""):
    return struct.pack("<IQ", kind, len(payload)) + payload


def first_ref():
    with open(STORE + "/refs") as refs:
        commit, _name = refs.readline().split(" ", 1)
    return bytes.fromhex(commit)


def some_entry():
    """The first entry of some pack of STORE: (header, stored bytes)."""
    import os
    packs = sorted(p for p in os.listdir(STORE + "/packs") if p.endswith(".pack"))
    with open(STORE + "/packs/" + packs[0], "rb") as pack:
        data = pack.read()
    header = data[16:16 + 52]
    stored_length = struct.unpack_from("<I", header, 8)[0]
    return header, data[68:68 + stored_length]


def read_request(conn):
    reader = conn.makefile("rb")
    length = 0
    while True:
        line = reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = reader.read(length)
    frames = []
    offset = 0
    while offset < len(body):
        kind, size = struct.unpack_from("<IQ", body, offset)
        frames.append((kind, body[offset + 12:offset + 12 + size]))
        offset += 12 + size
    return frames


def serve(conn):
    try:
        frames = read_request(conn)
        operation = frames[0][1][4]
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        if operation == 1:  # refs
            if MODE == "stall":
                time.sleep(3600)
            conn.sendall(frame(INFO, struct.pack("<IIB", 1, 131072, 0)))
            if MODE == "endless":
                n = 0
                while True:
                    batch = b"".join(frame(REF, bytes(32) + b"r%d" % (n + i)) for i in range(1000))
                    conn.sendall(batch)
                    n += 1000
            conn.sendall(frame(REF, first_ref() + b"evil") + frame(END))
        elif operation == 3:  # fetch
            wanted = frames[1][1][:33]
            kind, wanted_id = wanted[0], wanted[1:]
            header, stored = some_entry()
            if MODE == "wrong-bytes":
                forged = bytes([kind]) + header[1:20] + wanted_id
                conn.sendall(frame(OBJECT, forged + stored) + frame(END))
            elif MODE == "truncated":
                whole = frame(OBJECT, bytes([kind]) + header[1:20] + wanted_id + stored)
                conn.sendall(whole[:len(whole) // 2])
            elif MODE == "huge-frame":
                conn.sendall(struct.pack("<IQ", OBJECT, 1 << 60) + b"\0" * 4096)
            elif MODE == "missing":
                conn.sendall(frame(END))
        else:
            conn.sendall(frame(ERROR, struct.pack("<I", 1) + b"not here") + frame(END))
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        conn.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
