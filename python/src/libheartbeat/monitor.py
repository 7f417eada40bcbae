"""Application-level heartbeats: :class:`Monitor` over ``heartbeat_monitor_*``,
and :class:`LoopMonitor`, the thread-free monitor that an asyncio loop (or
any selector loop) drives.

How Python and the monitor's C thread meet
------------------------------------------

- Callbacks (``ping`` when it is a callable, ``on_dead``) run on the
  monitor's C thread (for a :class:`LoopMonitor`: on the thread that calls
  :meth:`LoopMonitor.process`, the loop's); ctypes takes the GIL for them.
  Every C call of this module that can wait releases the GIL while it runs
  (the library is loaded with ``ctypes.CDLL``, not ``PyDLL``), so :meth:`Monitor.close` and
  :meth:`Monitor.unwatch`, which wait for a callback in progress, let that
  callback take the GIL and finish: no deadlock. Only ``alive()``, which is
  lock-free and makes no system call, keeps the GIL (see
  ``_abi.KEEPS_GIL``).
- No Python exception crosses into C. Each callback is wrapped: an exception
  is handed to ``on_error(exc)`` if given; otherwise, when the callback runs
  on a thread that runs an asyncio loop (a :class:`LoopMonitor` attached to
  it), to that loop's ``call_exception_handler()``, and else logged (with
  its traceback) on the ``"libheartbeat"`` logger at ERROR level; the
  callback returns a defined value to C (see :class:`Monitor`).
- The ctypes callback objects live as long as C may call them: they are
  referenced by the monitor's finalizer, which calls
  ``heartbeat_monitor_free()`` first (it returns only when no callback
  runs or will run) and drops them afterwards. A monitor closed from inside
  one of its own callbacks is released by C only when that callback
  returns, so its two callback objects are kept until the interpreter
  exits (a few hundred bytes); for a :class:`LoopMonitor` closed inside a
  callback run by :meth:`LoopMonitor.process`, only until that process()
  call returns.
- A monitor never closed is closed when it is garbage collected or, at the
  latest, when the interpreter exits (``weakref.finalize`` runs at exit,
  before Python stops threads from taking the GIL): its thread never
  calls into a finalizing interpreter.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from . import _lib
from ._constants import Code, DeadReason
from ._errors import UINT_MAX, FdLike, HeartbeatError, c_uint, error, fd_of

_L = _lib.LIB
_new = _L.heartbeat_monitor_new
_new_loop = _L.heartbeat_monitor_new_loop
_fd = _L.heartbeat_monitor_fd
_timeout = _L.heartbeat_monitor_timeout_ms
_process = _L.heartbeat_monitor_process
_watch = _L.heartbeat_monitor_watch
_alive = _L.heartbeat_monitor_alive
_unwatch = _L.heartbeat_monitor_unwatch
_last_heard = _L.heartbeat_monitor_last_heard_ms
_stats = _L.heartbeat_monitor_stats
_free = _L.heartbeat_monitor_free

_SOCKET = socket.socket
_log = logging.getLogger("libheartbeat")
_get_ident = threading.get_ident

#: ``on_dead(conn, reason, error)``: ``conn`` is watch()'s ``conn`` (by
#: default the socket given to watch()).
DeadCallback = Callable[[Any, DeadReason, int], Any]
#: ``ping(conn)``: send one ping on ``conn`` (watch()'s ``conn``).
PingCallback = Callable[[Any], Any]
#: ``on_error(exc)``: an exception raised by a callback.
ErrorCallback = Callable[[BaseException], Any]

# Callback objects of monitors freed from inside their own callbacks (see
# the module docstring): C returns through them after free() returned.
_kept: List[Tuple[Any, Any]] = []

_M = TypeVar("_M", bound="Monitor")


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
    #: Times the monitor thread woke up (a LoopMonitor: process() calls
    #: made when its fd was readable).
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

    __slots__ = ("on_dead", "ping", "on_error", "watched", "callback_thread", "closed_by")

    def __init__(
        self, on_dead: DeadCallback, ping: Optional[PingCallback], on_error: Optional[ErrorCallback]
    ) -> None:
        self.on_dead = on_dead
        self.ping = ping
        self.on_error = on_error
        # fd -> watch()'s conn (the socket by default): held while
        # watched, so that a socket cannot be garbage collected (closing
        # its fd, whose number another connection may then get) while the
        # monitor pings it.
        self.watched: Dict[int, Any] = {}
        # The thread running one of this monitor's callbacks, or 0.
        self.callback_thread = 0
        # The thread whose callback closed the monitor, or 0.
        self.closed_by = 0


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The asyncio loop running on this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _report(state: _State, exc: BaseException, which: str, conn: Any) -> None:
    """Hand a callback's exception to on_error, else to the exception
    handler of the asyncio loop running on this thread, else log it; never
    raise."""
    try:
        if state.on_error is not None:
            try:
                state.on_error(exc)
                return
            except BaseException as exc2:  # noqa: B036 - nothing may reach C
                _log.error("libheartbeat Monitor on_error raised (while reporting the above)", exc_info=exc2)
                return
        message = f"exception in libheartbeat Monitor {which} callback (ignored)"
        loop = _running_loop()
        if loop is not None:
            # As asyncio reports an exception of a call_soon() callback: the
            # default handler logs it on the "asyncio" logger with its
            # traceback; loop.set_exception_handler() chooses otherwise.
            loop.call_exception_handler({"message": message, "exception": exc, "conn": conn})
            return
        _log.error("%s", message, exc_info=exc)
    except BaseException:  # noqa: B036 - e.g. logging torn down at exit
        pass


def _dead_thunk(state: _State) -> Any:
    def dead(_m: Optional[int], fd: int, reason: int, err: int, _user: Optional[int]) -> None:
        conn: Any = fd
        try:
            state.callback_thread = _get_ident()
            try:
                conn = state.watched.pop(fd, fd)
                state.on_dead(conn, DeadReason(reason), err)
            finally:
                state.callback_thread = 0
        except BaseException as exc:  # noqa: B036 - nothing may reach C
            _report(state, exc, "on_dead", conn)

    return _lib.DEAD_FN(dead)


def _ping_thunk(state: _State) -> Any:
    def ping(_m: Optional[int], fd: int, _user: Optional[int]) -> int:
        conn: Any = fd
        try:
            state.callback_thread = _get_ident()
            try:
                assert state.ping is not None
                conn = state.watched.get(fd, fd)
                state.ping(conn)
            finally:
                state.callback_thread = 0
        except (BlockingIOError, InterruptedError):
            return 0  # would block: skip this ping, not a death
        except HeartbeatError as exc:  # a library call inside the callback: a bug
            _report(state, exc, "ping", conn)
            return 0
        except OSError as exc:
            if isinstance(exc.errno, int) and exc.errno > 0:
                return exc.errno  # the connection is broken: on_dead(SEND_FAILED, errno)
            _report(state, exc, "ping", conn)
            return 0
        except BaseException as exc:  # noqa: B036 - nothing may reach C
            _report(state, exc, "ping", conn)
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
    ident = _get_ident()
    inside = state.callback_thread == ident
    _free(address)
    if inside:
        _kept.append(thunks)
        state.closed_by = ident
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
    than PING_MAX), ``ERR_NOMEM``, ``ERR_THREAD`` (``ERR_FD`` for a
    :class:`LoopMonitor`). A timeout above 2**32 - 1 ms cannot be
    represented and raises OverflowError.

    :meth:`fileno`, :meth:`timeout_ms` and :meth:`process` belong to the
    thread-free mode (:class:`LoopMonitor`); on a threaded Monitor they
    raise ``ERR_MODE`` (EINVAL), as the C library refuses them.
    """

    #: The C constructor (LoopMonitor: the thread-free one).
    _c_new_name = "heartbeat_monitor_new"

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
        new = _new if self._c_new_name == "heartbeat_monitor_new" else _new_loop
        address = new(ctypes.byref(opts), ctypes.byref(code))  # copies the ping bytes
        if not address:
            raise error(code.value, self._c_new_name)
        self._state = state
        # Passed to every C call; the finalizer sets it to NULL.
        self._ptr = ctypes.c_void_p(address)
        self._thunks = (dead_fn, ping_fn)
        self._finalizer = weakref.finalize(self, _release, self._ptr, state, self._thunks)

    def _error(self, rc: int, function: str) -> Exception:
        if self._ptr.value is None and rc == Code.ERR_INVALID:
            return ValueError("operation on a closed libheartbeat.Monitor")
        return error(rc, function)

    def watch(self, sock: FdLike, conn: Any = None) -> None:
        """Start watching a connection; it counts as heard from now, and its
        first ping goes out within one interval.

        ``conn`` is what the callbacks receive for it (``ping(conn)``,
        ``on_dead(conn, ...)``); None (the default) means ``sock`` itself.
        With asyncio streams, watch ``writer.get_extra_info("socket")`` with
        ``conn=writer``. The monitor keeps a reference to ``conn`` until
        :meth:`unwatch` returns or ``on_dead`` has been called for it (so a
        socket is not closed by the garbage collector while watched). Raises
        :class:`HeartbeatError` ``ERR_ALREADY_WATCHED`` (EEXIST),
        ``ERR_INVALID`` (a negative fd), ``ERR_NOMEM``.
        """
        fd = fd_of(sock)
        watched = self._state.watched
        previous = watched.get(fd, watched)
        # Before the C call: the first callback may come at once.
        watched[fd] = sock if conn is None else conn
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
        if type(sock) is _SOCKET:
            # A socket.socket's fileno() is always a C int (-1 once
            # closed, which C refuses): no range check needed.
            fd = sock.fileno()
        else:
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

    def fileno(self) -> int:
        """The thread-free monitor's fd (``heartbeat_monitor_fd()``): readable
        exactly when something is due, then call :meth:`process`. For
        ``selectors``, ``select``, ``loop.add_reader`` (:meth:`LoopMonitor.attach`
        does that). A timerfd owned by the monitor: never read, write or
        close it; :meth:`close` closes it (remove it from your loop before).

        Raises :class:`HeartbeatError` ``ERR_MODE`` (EINVAL) on a threaded
        Monitor, ValueError after close().
        """
        rc = _fd(self._ptr)
        if rc < 0:
            raise self._error(rc, "heartbeat_monitor_fd")
        return int(rc)

    def timeout_ms(self) -> int:
        """Milliseconds until the next event is due (``heartbeat_monitor_timeout_ms()``),
        rounded up: 0 if something is due now, -1 if nothing is watched. For
        loops that wait with a timeout instead of :meth:`fileno`; ask again
        after every :meth:`process` or :meth:`watch`.

        Raises :class:`HeartbeatError` ``ERR_MODE`` (EINVAL) on a threaded
        Monitor, ValueError after close().
        """
        rc = _timeout(self._ptr)
        if rc < -1:
            raise self._error(rc, "heartbeat_monitor_timeout_ms")
        return int(rc)

    def process(self) -> int:
        """Run every ping and death that is due, on this thread
        (``heartbeat_monitor_process()``): the callbacks run inside this
        call. Returns how many pings and deaths it handled (0 with nothing
        due, also when called from one of this monitor's callbacks or while
        another thread is in process()); afterwards :meth:`fileno` is
        readable exactly when something is due again.

        Raises :class:`HeartbeatError` ``ERR_MODE`` (EINVAL) on a threaded
        Monitor, ValueError after close() (a callback that closes the
        monitor does not make this call raise).
        """
        rc = _process(self._ptr)
        if self._state.closed_by == _get_ident() and rc >= 0:
            # Closed by one of the callbacks this call ran (on this thread:
            # a nested process() call returns at once, and a call on another
            # thread runs no callback then): C has returned through their
            # thunks, which are no longer needed (see _release).
            self._state.closed_by = 0
            try:
                _kept.remove(self._thunks)
            except ValueError:
                pass
        if rc < 0:
            raise self._error(rc, "heartbeat_monitor_process")
        return int(rc)

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

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._ptr.value is None:
            return "<libheartbeat.Monitor closed>"
        return f"<libheartbeat.Monitor watching {len(self._state.watched)}>"


class LoopMonitor(Monitor):
    """A monitor without a thread (``heartbeat_monitor_new_loop()``), driven
    by the application's event loop: pings and deaths happen inside
    :meth:`process`, on the thread that calls it, so the callbacks may use
    asyncio objects directly (write to a ``StreamWriter``, close it, set an
    ``asyncio.Event``).

    Same arguments, methods and guarantees as :class:`Monitor` (with "the
    monitor thread" read as "the thread inside process()"), plus:

    - :meth:`attach` (``loop.add_reader(self.fileno(), self.process)``) and
      :meth:`detach`, for asyncio; :meth:`close` detaches first.
    - :meth:`fileno`, :meth:`timeout_ms`, :meth:`process`, for any other
      loop (``selectors``, ``select``, a loop with timeouts).

    ``ping=b"..."``: the library sends the bytes itself with ``send()``,
    inside process(), straight into the socket, past the asyncio
    transport's write buffer: when the transport holds bytes not yet sent
    (a write that did not fit the socket), the ping lands between two
    parts of the application's data, even in the middle of one
    ``writer.write()``. Prefer a ping callable that writes through the
    writer (``writer.write(b"PING\\n")``): its bytes queue behind the
    application's.

    An exception raised in a callback goes to ``on_error`` if given, else,
    when the callback runs in a running asyncio loop (attached), to
    ``loop.call_exception_handler()`` with ``message``, ``exception`` and
    ``conn``; else to the ``"libheartbeat"`` logger. The loop goes on.

    Creating one fails with ``ERR_FD`` (errno EMFILE, ENFILE, ENOMEM) when
    its timerfd cannot be created, instead of a threaded monitor's
    ``ERR_THREAD``.
    """

    _c_new_name = "heartbeat_monitor_new_loop"

    def __init__(
        self,
        interval_ms: int,
        timeout_ms: int,
        *,
        ping: Union[bytes, bytearray, memoryview, PingCallback, None] = None,
        on_dead: DeadCallback,
        on_error: Optional[ErrorCallback] = None,
    ) -> None:
        super().__init__(interval_ms, timeout_ms, ping=ping, on_dead=on_dead, on_error=on_error)
        # The loop attached to and the fd registered with it, or None.
        self._attached: Optional[Tuple[asyncio.AbstractEventLoop, int]] = None

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The loop this monitor is attached to, or None (also once that
        loop is closed: closing a loop drops its readers)."""
        if self._attached is None or self._attached[0].is_closed():
            return None
        return self._attached[0]

    def _check_thread(self, loop: asyncio.AbstractEventLoop, what: str) -> None:
        # add_reader()/remove_reader() are not thread-safe: a running loop
        # must be changed from its own thread.
        if loop.is_running() and _running_loop() is not loop:
            raise RuntimeError(
                f"LoopMonitor.{what}() called from outside the thread of its running loop; "
                f"use loop.call_soon_threadsafe(monitor.{what})"
            )

    def attach(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Let ``loop`` drive the monitor: ``loop.add_reader(self.fileno(),
        self.process)``. ``loop`` defaults to the running loop (call it from
        a coroutine, or pass a loop that is not running yet). The loop then
        holds a reference to the monitor until :meth:`detach` or
        :meth:`close`.

        Raises RuntimeError if already attached (to a loop that is not
        closed), if ``loop`` is closed, if no loop runs and none is given,
        or when called from another thread than that of the running
        ``loop``; ValueError after close().
        """
        if self.closed:
            raise ValueError("operation on a closed libheartbeat.Monitor")
        current = self.loop
        if current is not None:
            raise RuntimeError(f"this LoopMonitor is already attached to {current!r}")
        if loop is None:
            loop = asyncio.get_running_loop()
        if loop.is_closed():
            raise RuntimeError("cannot attach a LoopMonitor to a closed event loop")
        self._check_thread(loop, "attach")
        fd = self.fileno()
        loop.add_reader(fd, self.process)
        self._attached = (loop, fd)

    def detach(self) -> None:
        """Stop the loop from driving the monitor (``loop.remove_reader()``);
        nothing happens until it is attached again or :meth:`process` is
        called. Does nothing if not attached. Call it from the loop's
        thread (RuntimeError otherwise, while that loop runs)."""
        self._detach("detach")

    def _detach(self, what: str) -> None:
        attached = self._attached
        if attached is None:
            return
        loop, fd = attached
        if not loop.is_closed():
            self._check_thread(loop, what)
            loop.remove_reader(fd)
        self._attached = None

    def close(self) -> None:
        """:meth:`detach`, then :meth:`Monitor.close`: the loop stops polling
        the fd before ``heartbeat_monitor_free()`` closes it. From another
        thread than that of the running loop it is attached to, it raises
        RuntimeError and changes nothing (use
        ``loop.call_soon_threadsafe(monitor.close)``)."""
        self._detach("close")
        super().close()

    def __repr__(self) -> str:
        if self.closed:
            return "<libheartbeat.LoopMonitor closed>"
        where = "attached" if self.loop is not None else "not attached"
        return f"<libheartbeat.LoopMonitor watching {len(self._state.watched)}, {where}>"
