"""TCP keepalive configuration and connection status.

Every function takes a socket object (anything with ``fileno()``) or an int
fd. The socket is borrowed: nothing here closes it or keeps a reference to
it. Every call is one C call (one ctypes round trip, the GIL released
during it) making exactly the system calls that the C function documents.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Optional

from . import _lib
from ._constants import WINDOW_UNKNOWN, WITHIN_KEEP_SLOW_READERS, Peer
from ._errors import UINT_MAX, FdLike, c_int, c_uint, error, fd_of

_L = _lib.LIB
_heartbeat = _L.heartbeat
_disable = _L.heartbeat_disable
_get = _L.heartbeat_get
_apply = _L.heartbeat_apply
_system_defaults = _L.heartbeat_system_defaults
_deadline_ms = _L.heartbeat_deadline_ms
_status_ex = _L.heartbeat_status_ex
_config_within = _L.heartbeat_config_within
_within = _L.heartbeat_within
#: sizeof(struct heartbeat_status_ex) as this package knows it, ready for the
#: unchecked call: the library writes exactly this many bytes (zeros beyond
#: its own struct, were it older; only the known fields, were it newer).
_STATUS_EX_SIZE = ctypes.c_size_t(ctypes.sizeof(_lib.StatusExStruct))
#: The known states by value: a dict lookup instead of Peer(value), whose
#: enum machinery costs more than the C call (a value from a newer library
#: still goes through Peer(), becoming UNKNOWN(n)).
_PEERS = {int(p): p for p in Peer}
_new_status = object.__new__


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
    """Where a TCP connection stands (``struct heartbeat_status_ex``), as
    read by :func:`status`. The kernel's figures (Linux TCP_INFO) at that
    moment, all from one getsockopt() call.

    The first seven fields are those of ``struct heartbeat_status``; the
    last four tell a peer that stopped reading (:attr:`Peer.STALLED`) from
    one that is gone (:attr:`Peer.PROBING`).
    """

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
    #: Bytes written by the program and not sent yet (tcpi_notsent_bytes):
    #: waiting for the peer's window or the congestion window. Sent but
    #: unacknowledged bytes are not included.
    notsent_bytes: int
    #: Segments sent and not yet acknowledged (tcpi_unacked).
    unacked: int
    #: The peer's receive window in bytes (tcpi_snd_wnd): 0 when its
    #: receive buffer is full. None when the kernel does not report it
    #: (Linux before 5.4; STALLED is then never reported).
    peer_window: Optional[int]
    #: Milliseconds since the last acknowledgement from the peer
    #: (tcpi_last_ack_recv): stays small while a stalled peer answers the
    #: window probes, grows when the peer is gone.
    last_ack_recv_ms: int


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
    raised with its errno; if they cannot all be set back exactly (a
    previous value beyond what setsockopt() accepts, such as idle 40000
    from a namespace's sysctl), ``ERR_ROLLBACK`` is raised instead, with the
    refused call's errno, and each option holds its previous or its new
    value. Afterwards :func:`get` returns ``config``.
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
    (``heartbeat_status_ex()``: one getsockopt(TCP_INFO); plus SO_ERROR on a
    closed socket, whose pending error this call takes and returns in
    :attr:`Status.error`).

    Raises :class:`HeartbeatError` ``ERR_TCP_INFO`` if the fd is not an open
    TCP socket (EBADF, ENOTSOCK, EOPNOTSUPP, ENOPROTOOPT).
    """
    out = _lib.StatusExStruct()
    rc = _status_ex(fd_of(sock), ctypes.byref(out), _STATUS_EX_SIZE)
    if rc:
        raise error(rc, "heartbeat_status_ex")
    peer = _PEERS.get(out.peer)
    window = out.peer_window
    # Built without Status.__init__: a frozen dataclass's __init__ makes an
    # object.__setattr__() call per field, which took about half of
    # status()'s time when measured. The same value as Status(**fields);
    # tests/test_status.py checks that.
    st = _new_status(Status)
    st.__dict__.update(
        peer=Peer(out.peer) if peer is None else peer,
        error=out.error,
        probes=out.probes,
        retransmits=out.retransmits,
        last_data_recv_ms=out.last_data_recv_ms,
        rtt_us=out.rtt_us,
        tcp_state=out.tcp_state,
        notsent_bytes=out.notsent_bytes,
        unacked=out.unacked,
        peer_window=None if window == WINDOW_UNKNOWN else window,
        last_ack_recv_ms=out.last_ack_recv_ms,
    )
    return st


def _within_args(ms: int, keep_slow_readers: bool) -> tuple[int, int]:
    # An ms beyond the C unsigned range saturates (plain ctypes would wrap
    # 2**32 + 5000 to 5000) and a negative one becomes 0: both are refused
    # with ERR_WITHIN, as any ms out of range.
    return c_uint(ms, 0), WITHIN_KEEP_SLOW_READERS if keep_slow_readers else 0


def config_within(ms: int, *, keep_slow_readers: bool = False) -> Config:
    """The configuration :func:`within` applies for ``ms``
    (``heartbeat_config_within()``); a pure function, no system call.

    Keepalive on, ``idle``/``intvl``/``cnt`` whose deadline is the largest
    whole number of seconds that meets ``ms`` with every kernel timer at its
    latest, and ``user_timeout_ms`` equal to that deadline (0 with
    ``keep_slow_readers``). For example 3000 gives 1/1/1 and 2000 ms, 5000
    gives 1/1/3 and 4000 ms, 10000 gives 5/1/3 and 8000 ms.

    Raises :class:`HeartbeatError` ``ERR_WITHIN`` (EINVAL) if ``ms`` is
    outside :data:`WITHIN_MIN_MS`..:data:`WITHIN_MAX_MS`.
    """
    c_ms, flags = _within_args(ms, keep_slow_readers)
    out = _lib.ConfigStruct()
    rc = _config_within(c_ms, flags, ctypes.byref(out))
    if rc:
        raise error(rc, "heartbeat_config_within")
    return _config(out)


def within(sock: FdLike, ms: int, *, keep_slow_readers: bool = False) -> None:
    """Tell me within ``ms`` milliseconds that the peer is gone
    (``heartbeat_within()``): keepalive and TCP_USER_TIMEOUT, set all or
    nothing exactly as :func:`apply` of :func:`config_within` ``(ms)``.

    A peer that vanishes is then declared dead (the socket fails with
    ETIMEDOUT) no later than ``ms`` after the last segment received from it
    when the connection was idle, and no later than ``ms`` after the send
    of the oldest unacknowledged data when data was in flight; never
    earlier than the configuration's ``user_timeout_ms`` after it.

    The price of the user timeout: a peer that is alive but stops reading
    while you have data to send (:attr:`Peer.STALLED`) is ended too, about
    ``user_timeout_ms`` after its window shut. With
    ``keep_slow_readers=True`` it is not (no user timeout: keepalive only),
    and then neither is a peer that vanishes while data is unacknowledged
    or waiting for its window, until the kernel's retransmission limit
    (about 15 minutes); idle connections are covered the same either way.

    Raises :class:`HeartbeatError`: ``ERR_WITHIN`` (EINVAL) for ``ms``
    outside :data:`WITHIN_MIN_MS`..:data:`WITHIN_MAX_MS`, before any system
    call; otherwise as :func:`apply` (not a TCP socket: ``ERR_IDLE``; an
    MPTCP socket without ``keep_slow_readers``: ``ERR_USER_TIMEOUT``,
    EOPNOTSUPP; ``ERR_ROLLBACK`` if a refused option could not be undone).
    Nothing changes when it raises, except with ``ERR_ROLLBACK``.
    """
    c_ms, flags = _within_args(ms, keep_slow_readers)
    rc = _within(fd_of(sock), c_ms, flags)
    if rc:
        raise error(rc, "heartbeat_within")
