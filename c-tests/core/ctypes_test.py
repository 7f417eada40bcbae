"""Python ctypes: load libheartbeat.so.0 and configure a real socket's fileno().

Usage: python3 ctypes_test.py PATH-TO-libheartbeat.so.0 EXPECTED-VERSION
Prints "ok - ..." / "not ok - ..." lines; exits non-zero on any failure.
"""
import ctypes
import errno
import os
import socket
import sys

failures = 0


def expect(cond, what):
    global failures
    print(("ok - " if cond else "not ok - ") + what, flush=True)
    if not cond:
        failures += 1


class Config(ctypes.Structure):
    _fields_ = [
        ("enabled", ctypes.c_int),
        ("idle", ctypes.c_int),
        ("intvl", ctypes.c_int),
        ("cnt", ctypes.c_int),
        ("user_timeout_ms", ctypes.c_uint),
    ]


lib = ctypes.CDLL(sys.argv[1], use_errno=True)
lib.heartbeat.argtypes = [ctypes.c_int] * 4
lib.heartbeat.restype = ctypes.c_int
lib.heartbeat_get.argtypes = [ctypes.c_int, ctypes.POINTER(Config)]
lib.heartbeat_apply.argtypes = [ctypes.c_int, ctypes.POINTER(Config)]
lib.heartbeat_disable.argtypes = [ctypes.c_int]
lib.heartbeat_strerror.argtypes = [ctypes.c_int]
lib.heartbeat_strerror.restype = ctypes.c_char_p
lib.heartbeat_version.restype = ctypes.c_char_p
lib.heartbeat_deadline_ms.argtypes = [ctypes.c_int] * 3
lib.heartbeat_deadline_ms.restype = ctypes.c_uint

expect(lib.heartbeat_version().decode() == sys.argv[2], "version matches Cargo.toml")

server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
fd = client.fileno()

expect(lib.heartbeat(fd, 10, 5, 3) == 0, "heartbeat(fileno, 10, 5, 3)")
expect(client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1, "SO_KEEPALIVE on (read by Python)")
expect(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10, "TCP_KEEPIDLE 10")
expect(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5, "TCP_KEEPINTVL 5")
expect(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3, "TCP_KEEPCNT 3")

want = Config(1, 2, 1, 2, lib.heartbeat_deadline_ms(2, 1, 2))
expect(lib.heartbeat_apply(fd, ctypes.byref(want)) == 0, "heartbeat_apply")
got = Config()
expect(lib.heartbeat_get(fd, ctypes.byref(got)) == 0, "heartbeat_get")
expect(
    (got.enabled, got.idle, got.intvl, got.cnt, got.user_timeout_ms) == (1, 2, 1, 2, 4000),
    "round trip with user timeout = deadline 4000 ms",
)
expect(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000, "TCP_USER_TIMEOUT 4000")

ctypes.set_errno(0)
rc = lib.heartbeat(fd, 1, 1, 128)
expect(rc == -3 and ctypes.get_errno() == errno.EINVAL, "cnt 128: -3 and EINVAL")
msg = lib.heartbeat_strerror(rc).decode()
expect("TCP_KEEPCNT" in msg, "strerror(-3) names TCP_KEEPCNT: " + msg)

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ctypes.set_errno(0)
expect(lib.heartbeat(udp.fileno(), 1, 1, 1) == -1 and ctypes.get_errno() == errno.ENOPROTOOPT,
       "UDP socket: -1 and ENOPROTOOPT")
expect(udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0, "UDP socket untouched")
expect(lib.heartbeat_disable(fd) == 0 and client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0,
       "heartbeat_disable")
# The library borrows the fd: Python still owns and closes it.
client.sendall(b"x")
expect(peer.recv(1) == b"x", "socket still usable after configuration")
for s in (udp, client, peer, server):
    s.close()
sys.exit(1 if failures else 0)
