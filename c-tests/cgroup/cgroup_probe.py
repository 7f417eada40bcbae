"""The python3 twin of cgroup_probe.c for the heartbeat-cgroup tests: an
unmodified interpreter running plain socket code that never sets a socket
option (it only reads them back). Modes and output as cgroup_probe.c:

    pair 4|6 | connect HOST PORT | serve HOST PORT READY
    loop SECONDS MAX  pairs on IPv4 loopback, one after the other, for
                    SECONDS or MAX pairs: both sockets' lines for each
"""
import socket
import sys
import time


def show(name, s):
    g = s.getsockopt
    print("%s ka=%d idle=%d intvl=%d cnt=%d ut=%d" % (
        name, g(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        g(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), g(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        g(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), g(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)),
        flush=True)


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pair(host):
    l = socket.socket(family(host), socket.SOCK_STREAM)
    l.bind((host, 0))
    l.listen()
    c = socket.create_connection(l.getsockname()[:2])
    a, _ = l.accept()
    show("client", c)
    show("accepted", a)
    for s in (c, a, l):
        s.close()


def main(argv):
    if len(argv) == 2 and argv[0] == "pair":
        pair("::1" if argv[1] == "6" else "127.0.0.1")
        return 0
    if len(argv) == 3 and argv[0] == "loop":
        end = time.monotonic() + float(argv[1])
        n = 0
        while time.monotonic() < end and n < int(argv[2]):
            pair("127.0.0.1")
            n += 1
        return 0
    if len(argv) == 3 and argv[0] == "connect":
        c = socket.create_connection((argv[1], int(argv[2])), timeout=5)
        show("connected", c)
        c.close()
        return 0
    if len(argv) == 4 and argv[0] == "serve":
        l = socket.socket(family(argv[1]), socket.SOCK_STREAM)
        l.bind((argv[1], int(argv[2])))
        l.listen()
        open(argv[3], "w").close()
        l.settimeout(10)
        a, _ = l.accept()
        show("served", a)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


sys.exit(main(sys.argv[1:]))
