#!/usr/bin/env python3
"""A TCP relay that passes bytes on at a limited rate each way, so that a test can kill a server or
a client in the middle of a transfer.

    slow-proxy.py TARGET_PORT BYTES_PER_SECOND

Listens on 127.0.0.1 (a free port, printed first), forwards each connection to 127.0.0.1:TARGET_PORT.
When either side closes, so does the other.
"""
import socket
import sys
import threading
import time

TARGET, RATE = int(sys.argv[1]), int(sys.argv[2])


def pump(source, sink, rate):
    try:
        while True:
            data = source.recv(65536 if rate is None else max(1, rate // 20))
            if not data:
                break
            sink.sendall(data)
            if rate is not None:
                time.sleep(len(data) / rate)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", TARGET))
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump, args=(client, server, RATE), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, RATE), daemon=True).start()


main()
