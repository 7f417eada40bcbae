"""The library's numbers: return codes, peer states, dead reasons and limits.

Copied from include/heartbeat.h (the C library never renumbers them); the
test suite parses the header and checks that every ``#define HEARTBEAT_*``
is here with the same value, and nothing else is.
"""

from __future__ import annotations

import enum
from typing import Any, Optional


class _OpenIntEnum(enum.IntEnum):
    """An IntEnum that also takes values it does not know.

    A newer 0.x library may return a code or state added after this package
    was written; such a value becomes a member named ``UNKNOWN(value)``
    instead of a ValueError, so that the caller still gets the number.
    """

    @classmethod
    def _missing_(cls, value: Any) -> Optional[Any]:
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN({value})"
            member._value_ = value
            return member
        return None


class Code(_OpenIntEnum):
    """Return codes (``HEARTBEAT_OK``, ``HEARTBEAT_ERR_*``): the C name
    without its ``HEARTBEAT_`` prefix. :attr:`HeartbeatError.code` is one."""

    OK = 0
    ERR_IDLE = -1
    ERR_INTVL = -2
    ERR_CNT = -3
    ERR_KEEPALIVE = -4
    ERR_USER_TIMEOUT = -5
    ERR_INVALID = -6
    ERR_INTERNAL = -7
    ERR_TCP_INFO = -8
    ERR_ALREADY_WATCHED = -9
    ERR_NOT_WATCHED = -10
    ERR_NOMEM = -11
    ERR_INTERVAL = -12
    ERR_TIMEOUT = -13
    ERR_DEAD_CALLBACK = -14
    ERR_PING = -15
    ERR_THREAD = -16
    ERR_ROLLBACK = -17
    ERR_WITHIN = -18
    ERR_MODE = -19
    ERR_DEADLOCK = -20
    ERR_FD = -21

    @property
    def c_name(self) -> str:
        """The name in the C header, e.g. ``"HEARTBEAT_ERR_INTVL"``."""
        return "HEARTBEAT_" + str(self._name_)


class Peer(_OpenIntEnum):
    """Where a connection stands (``HEARTBEAT_PEER_*``), :attr:`Status.peer`.

    States may be added in later library versions (they arrive as
    ``UNKNOWN(n)`` members): treat an unknown state as connected.
    """

    #: Connected; no keepalive probe is outstanding.
    ALIVE = 0
    #: Connected, but probes go out unanswered (:attr:`Status.probes`), or,
    #: with the peer's window shut, its last ACK is older than the probe
    #: interval allows: the peer may be gone.
    PROBING = 1
    #: Over, no error pending: the peer closed (FIN), or the error was taken.
    CLOSED = 2
    #: The peer answered with RST (:attr:`Status.error` ECONNRESET, ...).
    RESET = 3
    #: The local kernel gave up on a silent peer (ETIMEDOUT, EHOSTUNREACH...).
    TIMED_OUT = 4
    #: Listening, never connected, or connect() in progress.
    NOT_CONNECTED = 5
    #: Connected, alive, but not reading: the peer advertises a zero window
    #: while we have data for it, and answers the window probes
    #: (:attr:`Status.peer_window` 0, :attr:`Status.notsent_bytes`,
    #: :attr:`Status.last_ack_recv_ms`). Not dead; but a TCP_USER_TIMEOUT
    #: (:func:`within` without ``keep_slow_readers``) ends it. Linux 5.4 or
    #: later (older kernels report ALIVE).
    STALLED = 6


class DeadReason(_OpenIntEnum):
    """Why a monitor declared a peer dead (``HEARTBEAT_DEAD_*``)."""

    #: Nothing heard for ``timeout_ms`` (error 0).
    SILENCE = 1
    #: The ping could not be sent (error = its errno).
    SEND_FAILED = 2


#: Smallest and largest accepted ``idle`` (seconds).
IDLE_MIN = 1
IDLE_MAX = 32767
#: Smallest and largest accepted ``intvl`` (seconds).
INTVL_MIN = 1
INTVL_MAX = 32767
#: Smallest and largest accepted ``cnt`` (probes).
CNT_MIN = 1
CNT_MAX = 127
#: Largest ping accepted by :class:`Monitor`, in bytes.
PING_MAX = 4096
#: Number of buckets of :attr:`MonitorStats.ping_late`.
LATE_BUCKETS = 20
#: Smallest and largest ``ms`` accepted by :func:`within` and
#: :func:`config_within` (2785 ms: no smaller deadline can be guaranteed
#: with keepalive's whole seconds and late kernel timers; 24 hours).
WITHIN_MIN_MS = 2785
WITHIN_MAX_MS = 86400000

# The C spellings of what the Python API says otherwise (not exported):
#: heartbeat_within() flag: ``keep_slow_readers=True``.
WITHIN_KEEP_SLOW_READERS = 1
#: heartbeat_status_ex() ``peer_window`` when the kernel does not report it
#: (Linux before 5.4): :attr:`Status.peer_window` is then None.
WINDOW_UNKNOWN = 4294967295
