"""A plain Python socket program (it knows nothing of libheartbeat) run by
c-tests/preload/suite.sh under an unmodified python3, with or without
LD_PRELOAD=libheartbeat_preload.so.

    python3 preload_sockets.py KA IDLE INTVL CNT UT

Opens a TCP server and client on 127.0.0.1 and ::1, a UDP socket and a UNIX
stream pair, and makes calls that fail; prints one "ok - ..." or
"not ok - ..." line per check. KA IDLE INTVL CNT UT are the options every
TCP socket (listener, client, accepted) must have. The live client
connection is also inspected from outside with `ss -tno`: with KA=1 its
keepalive timer must be running.
"""
import errno
import os
import socket
import subprocess
import sys

want = tuple(int(v) for v in sys.argv[1:6])
failed = 0


def check(name, cond, detail=""):
    global failed
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else ": " + detail))
    sys.stdout.flush()
    if not cond:
        failed += 1


def tcp_opts(s):
    t = socket.IPPROTO_TCP
    return (
        s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        s.getsockopt(t, socket.TCP_KEEPIDLE),
        s.getsockopt(t, socket.TCP_KEEPINTVL),
        s.getsockopt(t, socket.TCP_KEEPCNT),
        s.getsockopt(t, socket.TCP_USER_TIMEOUT),
    )


def untouched(name, s):
    """A non-TCP socket: SO_KEEPALIVE still 0, TCP options do not exist."""
    ka = s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    check(name + " SO_KEEPALIVE untouched", ka == 0, "SO_KEEPALIVE=%d" % ka)


def ss_keepalive(port):
    """The timer column of the established client connection, from ss."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run(
        ["ss", "-tnoH", "state", "established", "( dport = :%d )" % port],
        capture_output=True, text=True, env=env, timeout=10,
    ).stdout
    return out


for fam, host, tag in [(socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")]:
    try:
        lst = socket.socket(fam, socket.SOCK_STREAM)
        lst.bind((host, 0))
    except OSError as e:
        print("SKIP - %s: %s" % (tag, e))
        continue
    lst.listen()
    port = lst.getsockname()[1]
    cli = socket.create_connection((host, port), timeout=5)
    acc, _ = lst.accept()
    for name, s in [("listener", lst), ("client", cli), ("accepted", acc)]:
        got = tcp_opts(s)
        check("%s %s options %s" % (tag, name, want), got == want, "got %s" % (got,))
    if tag == "tcp4":
        out = ss_keepalive(port)
        has = "timer:(keepalive," in out
        check("ss shows keepalive timer=%s on the live client" % bool(want[0]), has == bool(want[0]), out.strip())
    for s in (acc, cli, lst):
        s.close()

# UDP and UNIX sockets in the same program stay untouched.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", 9))
untouched("udp4 connected", u)
try:
    u.listen()
    check("udp4 listen fails", False, "listen succeeded")
except OSError as e:
    check("udp4 listen errno EOPNOTSUPP", e.errno == errno.EOPNOTSUPP, repr(e))
u.close()

# A raw socket whose protocol is TCP: SO_PROTOCOL says 6, but it is not a
# TCP stream; the library's first option call is refused and nothing changes.
if os.geteuid() == 0:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    raw.connect(("127.0.0.1", 0))
    untouched("raw IPPROTO_TCP connected", raw)
    raw.close()

path = "\0hbt-preload-py-%d" % os.getpid()
ul = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ul.bind(path)
ul.listen()
uc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
uc.connect(path)
ua, _ = ul.accept()
for name, s in [("unix listener", ul), ("unix client", uc), ("unix accepted", ua)]:
    untouched(name, s)
for s in (ua, uc, ul):
    s.close()

# Failing calls report exactly what they report without the library.
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
closed_port = probe.getsockname()[1]
probe.close()
c = socket.socket()
try:
    c.connect(("127.0.0.1", closed_port))
    check("connect to a closed port fails", False, "connected")
except OSError as e:
    check("connect to a closed port: ECONNREFUSED", e.errno == errno.ECONNREFUSED, repr(e))
c.close()
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP)
    check("socket() with bad args fails", False, "succeeded")
except OSError as e:
    check("socket() with bad args: EPROTONOSUPPORT", e.errno == errno.EPROTONOSUPPORT, repr(e))

sys.exit(1 if failed else 0)
