"""The loaded C library: found and checked once, when the package is imported.

Raises :class:`~libheartbeat._abi.LibraryError` (an ImportError) if no
usable library is found; see :mod:`libheartbeat._abi` for the search.
"""

from __future__ import annotations

import ctypes

from ._abi import (
    DEAD_FN,
    PING_FN,
    ConfigStruct,
    LibraryError,
    MonitorOptionsStruct,
    MonitorStatsStruct,
    StatusExStruct,
    StatusStruct,
    load,
)

LIB: ctypes.CDLL
LIBRARY_PATH: str
LIB, LIBRARY_PATH = load()
LIBRARY_VERSION: str = (LIB.heartbeat_version() or b"").decode("ascii", "replace")

__all__ = [
    "DEAD_FN",
    "LIB",
    "LIBRARY_PATH",
    "LIBRARY_VERSION",
    "PING_FN",
    "ConfigStruct",
    "LibraryError",
    "MonitorOptionsStruct",
    "MonitorStatsStruct",
    "StatusExStruct",
    "StatusStruct",
]
