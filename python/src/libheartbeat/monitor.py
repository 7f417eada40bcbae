"""Application-level heartbeats: :class:`Monitor` over ``heartbeat_monitor_*``.

How Python and the monitor's C thread meet
------------------------------------------

- Callbacks (``ping`` when it is a callable, ``on_dead``) run on the
  monitor's C thread; ctypes takes the GIL for them. Every C call of this
  module that can wait releases the GIL while it runs (the library is
  loaded with ``ctypes.CDLL``, not ``PyDLL``), so :meth:`Monitor.close` and
  :meth:`Monitor.unwatch`, which wait for a callback in progress, let that
  callback take the GIL and finish: no deadlock. Only ``alive()``, which is
  lock-free and makes no system call, keeps the GIL (see
  ``_abi.KEEPS_GIL``).
- No Python exception crosses into C. Each callback is wrapped: an exception
  is handed to ``on_error(exc)`` if given, otherwise logged (with its
  traceback) on the ``"libheartbeat"`` logger at ERROR level, and the
  callback returns a defined value to C (see :class:`Monitor`).
- The ctypes callback objects live as long as C may call them: they are
  referenced by the monitor's finalizer, which calls
  ``heartbeat_monitor_free()`` first (it returns only when no callback
  runs or will run) and drops them afterwards. A monitor closed from inside
  one of its own callbacks is released by C only when that callback
  returns, so its two callback objects are kept until the interpreter
  exits (a few hundred bytes).
- A monitor never closed is closed when it is garbage collected or, at the
  latest, when the interpreter exits (``weakref.finalize`` runs at exit,
  before Python stops threads from taking the GIL): its thread never
  calls into a finalizing interpreter.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _lib
from ._constants import Code, DeadReason
from ._errors import UINT_MAX, FdLike, HeartbeatError, c_uint, error, fd_of

_L = _lib.LIB
_new = _L.heartbeat_monitor_new
_watch = _L.heartbeat_monitor_watch
_alive = _L.heartbeat_monitor_alive
_unwatch = _L.heartbeat_monitor_unwatch
_last_heard = _L.heartbeat_monitor_last_heard_ms
_stats = _L.heartbeat_monitor_stats
_free = _L.heartbeat_monitor_free

_log = logging.getLogger("libheartbeat")
_get_ident = threading.get_ident

#: ``on_dead(conn, reason, error)``: ``conn`` is what was passed to watch().
DeadCallback = Callable[[Any, DeadReason, int], Any]
#: ``ping(conn)``: send one ping on ``conn`` (what was passed to watch()).
PingCallback = Callable[[Any], Any]
#: ``on_error(exc)``: an exception raised by a callback.
ErrorCallback = Callable[[BaseException], Any]

# Callback objects of monitors freed from inside their own callbacks (see
# the module docstring): C returns through them after free() returned.
_kept: List[Tuple[Any, Any]] = []


@dataclass(frozen=True)
class MonitorStats:
    """Counters of a monitor since its creation (``struct heartbeat_monitor_stats``)."""

    #: Fds watched now.
    watched: int
    #: Pings sent, or ping callbacks called.
    pings: int
    #: Pings skipped because the send would block.
    pings_blocked: int
    #: Peers declared dead.
    deaths: int
    #: Times the monitor thread woke up.
    wakeups: int
    #: Largest lateness of a ping behind its due time, microseconds.
    ping_late_max_us: int
    #: Histogram of ping lateness: bucket i counts pings less than B[i] µs
    #: late, B = 1, 2, 5, 10, ... 1000000 (see the C header); the last
    #: bucket counts the rest.
    ping_late: Tuple[int, ...]


class _State:
    """What the C callbacks need: deliberately not the Monitor itself, so
    that a Monitor nobody references is collected (and closed)."""

    __slots__ = ("on_dead", "ping", "on_error", "watched", "callback_thread")

    def __init__(
        self, on_dead: DeadCallback, ping: Optional[PingCallback], on_error: Optional[ErrorCallback]
    ) -> None:
        self.on_dead = on_dead
        self.ping = ping
        self.on_error = on_error
        # fd -> the object passed to watch(): held while watched, so that a
        # socket cannot be garbage collected (closing its fd, whose number
        # another connection may then get) while the monitor pings it.
        self.watched: Dict[int, Any] = {}
        # The thread running one of this monitor's callbacks, or 0.
        self.callback_thread = 0


def _report(state: _State, exc: BaseException, which: str) -> None:
    """Hand a callback's exception to on_error, or log it; never raise."""
    try:
        if state.on_error is not None:
            try:
                state.on_error(exc)
                return
            except BaseException as exc2:  # noqa: B036 - nothing may reach C
                _log.error("libheartbeat Monitor on_error raised (while reporting the above)", exc_info=exc2)
                return
        _log.error("exception in libheartbeat Monitor %s callback (ignored)", which, exc_info=exc)
    except BaseException:  # noqa: B036 - e.g. logging torn down at exit
        pass


def _dead_thunk(state: _State) -> Any:
    def dead(_m: Optional[int], fd: int, reason: int, err: int, _user: Optional[int]) -> None:
        try:
            state.callback_thread = _get_ident()
            try:
                conn = state.watched.pop(fd, fd)
                state.on_dead(conn, DeadReason(reason), err)
            finally:
                state.callback_thread = 0
        except BaseException as exc:  # noqa: B036 - nothing may reach C
            _report(state, exc, "on_dead")

    return _lib.DEAD_FN(dead)


def _ping_thunk(state: _State) -> Any:
    def ping(_m: Optional[int], fd: int, _user: Optional[int]) -> int:
        try:
            state.callback_thread = _get_ident()
            try:
                assert state.ping is not None
                state.ping(state.watched.get(fd, fd))
            finally:
                state.callback_thread = 0
        except (BlockingIOError, InterruptedError):
            return 0  # would block: skip this ping, not a death
        except HeartbeatError as exc:  # a library call inside the callback: a bug
            _report(state, exc, "ping")
            return 0
        except OSError as exc:
            if isinstance(exc.errno, int) and exc.errno > 0:
                return exc.errno  # the connection is broken: on_dead(SEND_FAILED, errno)
            _report(state, exc, "ping")
            return 0
        except BaseException as exc:  # noqa: B036 - nothing may reach C
            _report(state, exc, "ping")
            return 0
        return 0

    return _lib.PING_FN(ping)


def _release(ptr: ctypes.c_void_p, state: _State, thunks: Tuple[Any, Any]) -> None:
    """The finalizer (close(), garbage collection, interpreter exit): NULL
    the pointer the Monitor passes to C, so that later calls get
    ValueError instead of a freed monitor (at exit, daemon threads may
    still call), free the C monitor, then let go of the callbacks."""
    address = ptr.value
    ptr.value = None
    inside = state.callback_thread == _get_ident()
    _free(address)
    if inside:
        _kept.append(thunks)
    state.watched.clear()


class Monitor:
    """A heartbeat monitor: a C thread pings every watched connection every
    ``interval_ms`` and calls ``on_dead`` for a peer not heard from for
    ``timeout_ms`` (``heartbeat_monitor_new()``).

    ``ping`` is one of:

    - ``bytes`` (or any bytes-like object, 1..PING_MAX bytes): the monitor
      sends them itself, from its C thread, with
      ``send(fd, ping, MSG_NOSIGNAL | MSG_DONTWAIT)``, without the GIL. Use
      them only if ping bytes may appear between any two of your own writes.
    - a callable ``ping(conn)``: called on the monitor thread with what was
      passed to :meth:`watch`; it sends the ping itself. Its return value is
      ignored. Raising an OSError with an errno (``BrokenPipeError`` from
      ``sock.send()``) says the connection is broken: ``on_dead`` follows
      with ``DeadReason.SEND_FAILED`` and that errno. ``BlockingIOError``
      means "would block": the ping is skipped, not a death. Any other
      exception is reported (see ``on_error``) and counts as a skipped ping:
      a peer that gets no pings is then declared dead by silence, never
      earlier.
    - ``None``: no pings; a pure silence detector.

    ``on_dead(conn, reason, error)`` runs on the monitor thread, once per
    watch, when the peer is considered gone; ``conn`` is no longer watched
    and is never closed by the monitor. ``reason`` is a :class:`DeadReason`;
    ``error`` the errno for ``SEND_FAILED``, else 0. An exception it raises
    is reported and otherwise ignored.

    ``on_error(exc)``, if given, receives every exception raised by a
    callback (on the monitor thread); without it, they are logged with
    their traceback on the ``"libheartbeat"`` logger at ERROR level (shown
    on stderr when logging is not configured).

    Callbacks run one at a time and may call any method of this monitor,
    :meth:`close` included. Every method is safe from any thread, except
    that calls other than :meth:`alive` must not race with :meth:`close`
    from another thread (as in C: the monitor is freed meanwhile); after
    close(), every method raises ValueError. Use it as a context manager,
    or call :meth:`close`; a monitor left open is closed when garbage
    collected or at interpreter exit (stop threads that still call it
    before then; alive() alone is safe at any time).

    Errors raise :class:`HeartbeatError`: ``ERR_INTERVAL`` (interval 0 or
    negative), ``ERR_TIMEOUT`` (timeout not longer than the interval),
    ``ERR_DEAD_CALLBACK`` (``on_dead=None``), ``ERR_PING`` (empty or longer
    than PING_MAX), ``ERR_NOMEM``, ``ERR_THREAD``. A timeout above 2**32 - 1
    ms cannot be represented and raises OverflowError.
    """

    def __init__(
        self,
        interval_ms: int,
        timeout_ms: int,
        *,
        ping: Union[bytes, bytearray, memoryview, PingCallback, None] = None,
        on_dead: DeadCallback,
        on_error: Optional[ErrorCallback] = None,
    ) -> None:
        if on_dead is not None and not callable(on_dead):
            raise TypeError(f"on_dead must be callable, not {type(on_dead).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, not {type(on_error).__name__}")
        if timeout_ms > UINT_MAX:
            raise OverflowError(f"timeout_ms {timeout_ms} does not fit a C unsigned int")
        state = _State(on_dead, ping if callable(ping) else None, on_error)
        opts = _lib.MonitorOptionsStruct()
        # Negative values become 0, which the library refuses with the right
        # code (interval 0: ERR_INTERVAL; timeout 0: ERR_TIMEOUT); an
        # interval above UINT_MAX becomes UINT_MAX, leaving no longer
        # timeout: ERR_TIMEOUT.
        opts.interval_ms = c_uint(interval_ms, 0)
        opts.timeout_ms = c_uint(timeout_ms, 0)
        dead_fn = _dead_thunk(state)
        ping_fn = None
        data = b""
        if on_dead is not None:
            opts.dead_cb = dead_fn
        if state.ping is not None:
            ping_fn = _ping_thunk(state)
            opts.ping_cb = ping_fn
        elif ping is not None:
            try:
                data = bytes(memoryview(ping))  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(
                    f"ping must be bytes, a callable or None, not {type(ping).__name__}"
                ) from None
            # Non-NULL even when empty, so that b"" is refused (ERR_PING).
            opts.ping_data = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
            opts.ping_len = len(data)
        code = ctypes.c_int(0)
        address = _new(ctypes.byref(opts), ctypes.byref(code))  # copies the ping bytes
        if not address:
            raise error(code.value, "heartbeat_monitor_new")
        self._state = state
        # Passed to every C call; the finalizer sets it to NULL.
        self._ptr = ctypes.c_void_p(address)
        self._finalizer = weakref.finalize(self, _release, self._ptr, state, (dead_fn, ping_fn))

    # Thread-free mode (issue 10): fileno(), timeout_ms(), process() and
    # attach(loop) (loop.add_reader(self.fileno(), ...)) belong here once the
    # C library has heartbeat_monitor_fd(), _timeout_ms() and _process(); the
    # mode is a field of MonitorOptionsStruct, so __init__ gains one keyword.

    def _error(self, rc: int, function: str) -> Exception:
        if self._ptr.value is None and rc == Code.ERR_INVALID:
            return ValueError("operation on a closed libheartbeat.Monitor")
        return error(rc, function)

    def watch(self, sock: FdLike) -> None:
        """Start watching a connection; it counts as heard from now, and its
        first ping goes out within one interval.

        The monitor keeps a reference to ``sock`` until :meth:`unwatch`
        returns or ``on_dead`` has been called for it (so the socket is not
        closed by the garbage collector while watched), and hands it to the
        callbacks. Raises :class:`HeartbeatError` ``ERR_ALREADY_WATCHED``
        (EEXIST), ``ERR_INVALID`` (a negative fd), ``ERR_NOMEM``.
        """
        fd = fd_of(sock)
        watched = self._state.watched
        previous = watched.get(fd, watched)
        watched[fd] = sock  # before the C call: the first callback may come at once
        rc = _watch(self._ptr, fd)
        if rc:
            if previous is watched:
                watched.pop(fd, None)
            else:
                watched[fd] = previous
            raise self._error(rc, "heartbeat_monitor_watch")

    def alive(self, sock: FdLike) -> None:
        """Record that the peer was heard from now (a pong, or any data).
        No lock, no system call in C; call it on every read.

        Raises :class:`HeartbeatError` ``ERR_NOT_WATCHED`` (ENOENT) if the
        connection is not watched, e.g. already declared dead.
        """
        # The hot path, kept inline: an int or a socket's fileno(), in C range.
        if type(sock) is int:
            fd = sock
        else:
            try:
                fd = sock.fileno()  # type: ignore[union-attr]
            except AttributeError:
                fd = fd_of(sock)
        if not (type(fd) is int and -2147483648 <= fd <= 2147483647):
            fd = fd_of(fd)
        rc = _alive(self._ptr, fd)
        if rc:
            raise self._error(rc, "heartbeat_monitor_alive")

    def unwatch(self, sock: FdLike) -> None:
        """Stop watching. Outside a callback, waits for a ping or callback in
        progress for this connection, so that it may be closed at once
        afterwards; then drops the monitor's reference to it.

        Raises :class:`HeartbeatError` ``ERR_NOT_WATCHED`` (ENOENT) if it is
        not watched (never was, already unwatched, or declared dead).
        """
        fd = fd_of(sock)
        rc = _unwatch(self._ptr, fd)
        if rc:
            raise self._error(rc, "heartbeat_monitor_unwatch")
        self._state.watched.pop(fd, None)

    def last_heard_ms(self, sock: FdLike) -> int:
        """Milliseconds since the peer was last heard from (or since watch()).

        Raises :class:`HeartbeatError` ``ERR_NOT_WATCHED`` (ENOENT).
        """
        out = ctypes.c_ulong()
        rc = _last_heard(self._ptr, fd_of(sock), ctypes.byref(out))
        if rc:
            raise self._error(rc, "heartbeat_monitor_last_heard_ms")
        return int(out.value)

    def stats(self) -> MonitorStats:
        """The monitor's counters."""
        out = _lib.MonitorStatsStruct()
        rc = _stats(self._ptr, ctypes.byref(out))
        if rc:
            raise self._error(rc, "heartbeat_monitor_stats")
        return MonitorStats(
            watched=out.watched,
            pings=out.pings,
            pings_blocked=out.pings_blocked,
            deaths=out.deaths,
            wakeups=out.wakeups,
            ping_late_max_us=out.ping_late_max_us,
            ping_late=tuple(out.ping_late),
        )

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._ptr.value is None

    def close(self) -> None:
        """Stop the monitor and free it (``heartbeat_monitor_free()``).

        Outside the monitor's callbacks, waits for a callback in progress:
        when it returns, no callback runs or will run. From inside a
        callback it returns at once, and the monitor stops when that
        callback returns. Watched connections are left as they are (never
        closed). Idempotent; afterwards every method raises ValueError.
        """
        self._finalizer()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._ptr.value is None:
            return "<libheartbeat.Monitor closed>"
        return f"<libheartbeat.Monitor watching {len(self._state.watched)}>"
