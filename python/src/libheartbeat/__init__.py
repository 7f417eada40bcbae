"""libheartbeat for Python: find out that the other end of a TCP connection is gone.

A thin, typed layer over the C library ``libheartbeat.so.0`` (ctypes; no
compiler needed)::

    import socket
    import libheartbeat

    sock = socket.create_connection(("127.0.0.1", 8080))
    libheartbeat.within(sock, 10_000)        # a vanished peer: dead within 10 s
    print(libheartbeat.status(sock).peer)    # Peer.ALIVE (STALLED: alive, not reading)

    with libheartbeat.Monitor(1000, 3000, ping=b"PING\\n",
                              on_dead=lambda conn, reason, err: print("gone", reason)) as mon:
        mon.watch(sock)
        ...                    # on every pong or any data: mon.alive(sock)

The library is found through ``$HEARTBEAT_LIBRARY``, the dynamic loader,
``ctypes.util.find_library`` and the usual install prefixes (see
``libheartbeat._lib``); importing this package raises :class:`LibraryError`
(an ImportError) naming every place searched if none fits. Failed calls
raise :class:`HeartbeatError` (an OSError) with the library's code, name,
message and errno.
"""

from __future__ import annotations

from ._constants import (
    CNT_MAX,
    CNT_MIN,
    IDLE_MAX,
    IDLE_MIN,
    INTVL_MAX,
    INTVL_MIN,
    LATE_BUCKETS,
    PING_MAX,
    WITHIN_MAX_MS,
    WITHIN_MIN_MS,
    Code,
    DeadReason,
    Peer,
)
from ._errors import FdLike, HeartbeatError, SupportsFileno
from ._lib import LIBRARY_PATH, LIBRARY_VERSION, LibraryError
from .keepalive import (
    Config,
    Status,
    apply,
    config_within,
    configure,
    deadline_ms,
    disable,
    get,
    status,
    system_defaults,
    within,
)
from .monitor import LoopMonitor, Monitor, MonitorStats

#: This package's version.
__version__ = "0.1.0"

#: Where the C library was loaded from, and its heartbeat_version().
library_path: str = LIBRARY_PATH
library_version: str = LIBRARY_VERSION

__all__ = [
    "CNT_MAX",
    "CNT_MIN",
    "IDLE_MAX",
    "IDLE_MIN",
    "INTVL_MAX",
    "INTVL_MIN",
    "LATE_BUCKETS",
    "PING_MAX",
    "WITHIN_MAX_MS",
    "WITHIN_MIN_MS",
    "Code",
    "Config",
    "DeadReason",
    "FdLike",
    "HeartbeatError",
    "LibraryError",
    "LoopMonitor",
    "Monitor",
    "MonitorStats",
    "Peer",
    "Status",
    "SupportsFileno",
    "apply",
    "config_within",
    "configure",
    "deadline_ms",
    "disable",
    "get",
    "library_path",
    "library_version",
    "status",
    "system_defaults",
    "within",
]
