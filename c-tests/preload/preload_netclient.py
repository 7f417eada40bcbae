"""Plain Python TCP peer and client for c-tests/preload/net_preload.sh (nothing of
libheartbeat in here: the client is run by an unmodified python3 under
LD_PRELOAD=libheartbeat_preload.so, or without it as a control).

    preload_netclient.py server IP PORT READY_FILE
        accept one connection, send one byte, then stay silent (bounded:
        exits after 60 s).
    preload_netclient.py client IP PORT BOUND_SECS CUT_CMD
        connect, receive the byte, run CUT_CMD (it cuts the path), then block
        in recv(); print "detected errno=NAME after S s" when recv() fails,
        or "not detected within BOUND_SECS s" (a SIGALRM bound).
"""
import errno
import os
import signal
import socket
import subprocess
import sys
import time

mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET

if mode == "server":
    signal.alarm(60)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen()
    open(sys.argv[4], "w").close()
    c, _ = s.accept()
    c.sendall(b"x")
    time.sleep(60)
    sys.exit(0)


class Bound(Exception):
    pass


def on_alarm(signum, frame):
    raise Bound()


bound = int(sys.argv[4])
cut = sys.argv[5]
c = socket.create_connection((ip, port), timeout=5)
c.settimeout(None)  # blocking from here on: a plain blocked recv()
if c.recv(1) != b"x":
    print("unexpected data")
    sys.exit(1)
last = time.monotonic()
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
subprocess.run(cut, shell=True, check=True, env=env)
signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(bound)
try:
    data = c.recv(1)
    print("recv returned %r after %.2f s" % (data, time.monotonic() - last))
except Bound:
    print("not detected within %d s" % bound)
except OSError as e:
    print("detected errno=%s after %.2f s" % (errno.errorcode.get(e.errno, e.errno), time.monotonic() - last))
sys.stdout.flush()
