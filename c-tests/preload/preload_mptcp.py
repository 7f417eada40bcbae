"""MPTCP sockets under libheartbeat_preload.so (run by c-tests/preload/suite.sh
with HEARTBEAT_HOOKS=connect,listen,accept HEARTBEAT_DEBUG=1): a listener, a
client and an accepted connection, all MPTCP, must be left exactly as without
the library (heartbeat_apply() is refused by one of its reads before it
changes anything). Prints ok/not ok lines, or one SKIP line if the kernel
has no MPTCP.

    python3 preload_mptcp.py
"""
import socket
import sys

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)


def options(s):
    return (s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))


try:
    fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
except OSError as e:
    print("SKIP - no MPTCP in this kernel: %s" % e)
    sys.exit(0)
want = options(fresh)
fresh.close()
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
l.bind(("127.0.0.1", 0))
l.listen(4)
c = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
c.connect(l.getsockname())
a, _ = l.accept()
failed = 0
for name, s in (("listener", l), ("client", c), ("accepted", a)):
    got = options(s)
    ok = got == want
    failed += not ok
    print("%s - MPTCP %s untouched: (keepalive, idle) %s, a new socket has %s"
          % ("ok" if ok else "not ok", name, got, want))
sys.exit(1 if failed else 0)
