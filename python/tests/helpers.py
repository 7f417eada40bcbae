"""Helpers shared by the tests (imported by conftest.py before anything else).

The tests run against the build tree's library: HEARTBEAT_LIBRARY (set by
c-tests/python/suite.sh; defaulted here to build/lib/libheartbeat.so.0 of
this checkout), and the package from python/src unless it is importable
already.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Tuple

if TYPE_CHECKING:
    import pytest

    import libheartbeat

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "python" / "src"

os.environ.setdefault("HEARTBEAT_LIBRARY", str(REPO / "build" / "lib" / "libheartbeat.so.0"))
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

Pair = Tuple[socket.socket, socket.socket]


def tcp_pair(family: int = socket.AF_INET) -> Pair:
    """A connected loopback pair (client, accepted peer) on a free port."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.create_server((host, 0), family=family) as server:
        client = socket.create_connection(server.getsockname()[:2], timeout=5)
        peer, _ = server.accept()
    client.settimeout(None)
    return client, peer


def keepalive_options(sock: socket.socket) -> Tuple[int, int, int, int, int]:
    """(SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
    TCP_USER_TIMEOUT) read with getsockopt: the kernel's view, not the
    library's."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


class TcpInfo(NamedTuple):
    """The fields of Linux's struct tcp_info that heartbeat_status_ex()
    reports, read raw with sock.getsockopt(TCP_INFO): the kernel's view."""

    state: int
    probes: int
    unacked: int
    last_data_recv: int
    last_ack_recv: int
    rtt: int
    notsent_bytes: int
    snd_wnd: Optional[int]  # None: the kernel is older than 5.4


# Offsets in struct tcp_info (include/uapi/linux/tcp.h).
_TCPI = {"state": 0, "probes": 3, "unacked": 24, "last_data_recv": 52, "last_ack_recv": 56, "rtt": 68}
_TCPI_NOTSENT, _TCPI_SND_WND = 144, 228


def tcp_info(sock: socket.socket) -> TcpInfo:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)

    def u32(off: int) -> int:
        return int(struct.unpack_from("=I", raw, off)[0])

    return TcpInfo(
        state=raw[0],
        probes=raw[3],
        unacked=u32(_TCPI["unacked"]),
        last_data_recv=u32(_TCPI["last_data_recv"]),
        last_ack_recv=u32(_TCPI["last_ack_recv"]),
        rtt=u32(_TCPI["rtt"]),
        notsent_bytes=u32(_TCPI_NOTSENT),
        snd_wnd=u32(_TCPI_SND_WND) if len(raw) >= _TCPI_SND_WND + 4 else None,
    )


def fill(sock: socket.socket) -> int:
    """Send without blocking until the kernel takes no more (the peer not
    reading: its window shuts, our send buffer fills); bounded at 256 MiB.
    Returns the bytes sent."""
    chunk = bytes(65536)
    sent = 0
    for _ in range(4096):
        try:
            sent += sock.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return sent
    raise AssertionError(f"the socket took {sent} bytes without blocking")


def wait_until(what: Callable[[], bool], seconds: float) -> bool:
    """Poll ``what`` every 5 ms until it is true or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def strerror(code: int) -> str:
    """The library's message for a code, asked of the C library directly."""
    lib = ctypes.CDLL(os.environ["HEARTBEAT_LIBRARY"])
    lib.heartbeat_strerror.restype = ctypes.c_char_p
    lib.heartbeat_strerror.argtypes = [ctypes.c_int]
    raw = lib.heartbeat_strerror(code)
    assert isinstance(raw, bytes)
    return raw.decode()


def check(
    e: "pytest.ExceptionInfo[libheartbeat.HeartbeatError]", code: "libheartbeat.Code", err: int, function: str
) -> None:
    """The exception carries the code, its C name, the library's message,
    the errno and the failing C function."""
    x = e.value
    assert isinstance(x, OSError)
    assert x.code == code and type(x.code) is type(code)
    assert x.name == "HEARTBEAT_" + code.name
    assert x.errno == err, f"errno {x.errno} ({os.strerror(x.errno or 0)}), expected {errno.errorcode[err]}"
    assert x.strerror == os.strerror(err)
    assert x.message == strerror(code)
    assert x.function == function
    assert x.name in str(x) and x.message in str(x) and function in str(x)


def run_python(
    code: str,
    timeout: float = 60,
    env: "dict[str, str] | None" = None,
    unset: "list[str] | None" = None,
    python: str = sys.executable,
) -> "subprocess.CompletedProcess[str]":
    """Run ``code`` in a fresh interpreter that imports the package under
    test (from python/src, the library from HEARTBEAT_LIBRARY unless
    ``unset`` removes it); bounded."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(SRC) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    for name in unset or []:
        full.pop(name, None)
    return subprocess.run(
        [python, "-c", code], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )
