"""The other end for the heartbeat-cgroup tests (runs in the peer namespace,
outside any cgroup under test; it may set options: it is not under test).

    hold HOST PORT READY SECONDS   accept connections for SECONDS; on each,
                                   answer the client's first byte with
                                   b"hello", then stay silent (kept open)
    reset HOST PORT READY DELAY    accept one, answer its first byte with
                                   b"hello", wait DELAY seconds, then reset
                                   it (SO_LINGER 0)
    client HOST PORT               connect, wait (at most 5 s) for the close
"""
import socket
import struct
import sys
import threading
import time


def answer(a, timeout=30):
    """Waits for the client's first byte, answers b"hello"."""
    a.settimeout(timeout)
    try:
        if a.recv(1):
            a.sendall(b"hello")
    except OSError:
        pass


def listen(host, port, ready):
    l = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, int(port)))
    l.listen(16)
    open(ready, "w").close()
    return l


def main(argv):
    if len(argv) == 5 and argv[0] == "hold":
        l = listen(*argv[1:4])
        end = time.monotonic() + float(argv[4])
        held = []
        while time.monotonic() < end:
            l.settimeout(max(0.01, end - time.monotonic()))
            try:
                a, _ = l.accept()
            except socket.timeout:
                break
            threading.Thread(target=answer, args=(a,), daemon=True).start()
            held.append(a)
        return 0
    if len(argv) == 5 and argv[0] == "reset":
        l = listen(*argv[1:4])
        l.settimeout(10)
        a, _ = l.accept()
        answer(a, 10)
        time.sleep(float(argv[4]))
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        a.close()
        return 0
    if len(argv) == 3 and argv[0] == "client":
        deadline = time.monotonic() + 5
        while True:
            try:
                c = socket.create_connection((argv[1], int(argv[2])), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            c.recv(64)
        except OSError:
            pass
        return 0
    print(__doc__, file=sys.stderr)
    return 2


sys.exit(main(sys.argv[1:]))
