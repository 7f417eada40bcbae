"""TCP keepalive configuration and connection status.

Every function takes a socket object (anything with ``fileno()``) or an int
fd. The socket is borrowed: nothing here closes it or keeps a reference to
it. Every call is one C call (one ctypes round trip, the GIL released
during it) making exactly the system calls that the C function documents.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from . import _lib
from ._constants import Peer
from ._errors import UINT_MAX, FdLike, c_int, c_uint, error, fd_of

_L = _lib.LIB
_heartbeat = _L.heartbeat
_disable = _L.heartbeat_disable
_get = _L.heartbeat_get
_apply = _L.heartbeat_apply
_system_defaults = _L.heartbeat_system_defaults
_deadline_ms = _L.heartbeat_deadline_ms
_status = _L.heartbeat_status


@dataclass(frozen=True)
class Config:
    """The five keepalive settings of a socket (``struct heartbeat_config``).

    Read by :func:`get` and :func:`system_defaults`, written all or nothing
    by :func:`apply`. Pass the fields by name; the positional order is
    ``idle, intvl, cnt, user_timeout_ms, enabled`` (the required ones first,
    unlike the C struct). Frozen: derive a changed copy with
    ``dataclasses.replace(cfg, idle=5)``.
    """

    #: TCP_KEEPIDLE: seconds without traffic before the first probe
    #: (IDLE_MIN..IDLE_MAX).
    idle: int
    #: TCP_KEEPINTVL: seconds between unanswered probes (INTVL_MIN..INTVL_MAX).
    intvl: int
    #: TCP_KEEPCNT: unanswered probes before the peer is dead (CNT_MIN..CNT_MAX).
    cnt: int
    #: TCP_USER_TIMEOUT: milliseconds sent data may stay unacknowledged,
    #: 0..2**31-1; 0 keeps the kernel's default. ``deadline_ms(idle, intvl,
    #: cnt)`` is the recommended value (see docs/keepalive.md for how it
    #: interacts with TCP_KEEPCNT).
    user_timeout_ms: int = 0
    #: SO_KEEPALIVE.
    enabled: bool = True

    @property
    def deadline_ms(self) -> int:
        """:func:`deadline_ms` of these settings."""
        return deadline_ms(self.idle, self.intvl, self.cnt)


@dataclass(frozen=True)
class Status:
    """Where a TCP connection stands (``struct heartbeat_status``), as read
    by :func:`status`. The kernel's figures (Linux TCP_INFO) at that moment."""

    #: The state; a :class:`Peer`.
    peer: Peer
    #: The pending socket error this call took from the kernel (an errno),
    #: or 0. Only RESET and TIMED_OUT have one; the kernel reports it once,
    #: so this is now the only record of why the connection ended.
    error: int
    #: Keepalive (or zero-window) probes sent and not yet answered.
    probes: int
    #: Consecutive unanswered retransmissions of sent data.
    retransmits: int
    #: Milliseconds since data was last received from the peer.
    last_data_recv_ms: int
    #: Smoothed round-trip time, microseconds.
    rtt_us: int
    #: The Linux TCP state (1 ESTABLISHED, 7 CLOSE, 8 CLOSE_WAIT, 10 LISTEN...).
    tcp_state: int


def configure(sock: FdLike, idle: int, intvl: int, cnt: int) -> None:
    """Enable keepalive: first probe after ``idle`` seconds of silence, then
    one every ``intvl`` seconds; after ``cnt`` unanswered probes the kernel
    fails the connection with ETIMEDOUT (``heartbeat()``).

    Out-of-range values raise :class:`HeartbeatError` with that option's
    code (``ERR_IDLE``, ``ERR_INTVL``, ``ERR_CNT``) and EINVAL, and change
    nothing; so does a socket that is not TCP (``ERR_IDLE``: EBADF,
    ENOTSOCK, ENOPROTOOPT or EOPNOTSUPP). Four setsockopt() calls; use
    :func:`apply` for all or nothing under a policy that refuses options.
    """
    # Fast path, inline (this is called per connection): an int or a
    # socket's fileno(), and int arguments, all in the C int range. Anything
    # else goes through the general conversions (TypeError, saturation).
    if type(sock) is int:
        fd = sock
    else:
        try:
            fd = sock.fileno()  # type: ignore[union-attr]
        except AttributeError:
            fd = fd_of(sock)
    if not (
        type(idle) is type(intvl) is type(cnt) is type(fd) is int
        and -2147483648 <= idle <= 2147483647
        and -2147483648 <= intvl <= 2147483647
        and -2147483648 <= cnt <= 2147483647
        and -2147483648 <= fd <= 2147483647
    ):
        fd, idle, intvl, cnt = fd_of(fd), c_int(idle), c_int(intvl), c_int(cnt)
    rc = _heartbeat(fd, idle, intvl, cnt)
    if rc:
        raise error(rc, "heartbeat")


def disable(sock: FdLike) -> None:
    """Turn keepalive off (SO_KEEPALIVE = 0); the timer values stay.

    Raises :class:`HeartbeatError` ``ERR_KEEPALIVE`` (EBADF, ENOTSOCK).
    Works on every socket type, as the kernel accepts SO_KEEPALIVE on all.
    """
    rc = _disable(fd_of(sock))
    if rc:
        raise error(rc, "heartbeat_disable")


def _config(c: _lib.ConfigStruct) -> Config:
    return Config(
        idle=c.idle,
        intvl=c.intvl,
        cnt=c.cnt,
        user_timeout_ms=c.user_timeout_ms,
        enabled=bool(c.enabled),
    )


def get(sock: FdLike) -> Config:
    """The socket's five keepalive settings (five getsockopt() calls).

    Settings never set read as the kernel's defaults. Raises
    :class:`HeartbeatError` with the code of the option that could not be
    read (a non-TCP socket: ``ERR_IDLE``).
    """
    out = _lib.ConfigStruct()
    rc = _get(fd_of(sock), ctypes.byref(out))
    if rc:
        raise error(rc, "heartbeat_get")
    return _config(out)


def apply(sock: FdLike, config: Config) -> None:
    """Set all five settings of ``config``, all or nothing (``heartbeat_apply()``).

    A bad field raises :class:`HeartbeatError` with that field's code and
    EINVAL, before anything changes. If the kernel refuses an option, the
    ones already changed are set back and the refused option's code is
    raised with its errno. Afterwards :func:`get` returns ``config``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"apply() needs a libheartbeat.Config, not {type(config).__name__}")
    c = _lib.ConfigStruct(
        c_int(config.enabled),
        c_int(config.idle),
        c_int(config.intvl),
        c_int(config.cnt),
        # A negative timeout is out of range like one above UINT_MAX.
        c_uint(config.user_timeout_ms, UINT_MAX),
    )
    rc = _apply(fd_of(sock), ctypes.byref(c))
    if rc:
        raise error(rc, "heartbeat_apply")


def system_defaults() -> Config:
    """The kernel's keepalive defaults for new sockets, from
    /proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes} of the calling
    thread's network namespace; ``enabled`` False, ``user_timeout_ms`` 0.

    Raises :class:`HeartbeatError` (``ERR_IDLE``, ``ERR_INTVL`` or
    ``ERR_CNT``) if a file cannot be read or holds no number.
    """
    out = _lib.ConfigStruct()
    rc = _system_defaults(ctypes.byref(out))
    if rc:
        raise error(rc, "heartbeat_system_defaults")
    return _config(out)


def deadline_ms(idle: int, intvl: int, cnt: int) -> int:
    """``(idle + intvl * cnt) * 1000``: when an idle connection with these
    settings is declared dead, in milliseconds after the last segment from
    the peer; also the recommended ``user_timeout_ms``. Negative arguments
    count as 0 and the result saturates at 2**32 - 1, as in C."""
    return int(_deadline_ms(c_int(idle), c_int(intvl), c_int(cnt)))


def status(sock: FdLike) -> Status:
    """Where the connection stands, without reading or consuming any data
    (one getsockopt(TCP_INFO); plus SO_ERROR on a closed socket, whose
    pending error this call takes and returns in :attr:`Status.error`).

    Raises :class:`HeartbeatError` ``ERR_TCP_INFO`` if the fd is not an open
    TCP socket (EBADF, ENOTSOCK, EOPNOTSUPP, ENOPROTOOPT).
    """
    out = _lib.StatusStruct()
    rc = _status(fd_of(sock), ctypes.byref(out))
    if rc:
        raise error(rc, "heartbeat_status")
    return Status(
        peer=Peer(out.peer),
        error=out.error,
        probes=out.probes,
        retransmits=out.retransmits,
        last_data_recv_ms=out.last_data_recv_ms,
        rtt_us=out.rtt_us,
        tcp_state=out.tcp_state,
    )


# heartbeat_within(fd, ms) and heartbeat_config_within(ms, &cfg) (issue 11)
# go here as within(sock, ms) -> None and config_within(ms) -> Config, each a
# copy of the pattern above; bind them in _lib.FUNCTIONS (in OPTIONAL if
# older 0.x libraries are still to be accepted) and add their codes to
# _constants.
