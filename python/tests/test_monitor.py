"""Monitor: deaths and non-deaths on loopback, callbacks that raise, the GIL,
lifetimes (close, garbage collection, interpreter exit), every error."""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest

from helpers import REPO, Pair, check, run_python, tcp_pair

import libheartbeat as hb

C = hb.Code
# Death must come after timeout_ms and should come about 1 ms later; the
# upper bound allows for a loaded 2-core machine (other builds running).
LATE_ALLOWANCE_S = 1.0

Death = Tuple[Any, hb.DeadReason, int, float]


class Recorder:
    """on_dead and on_error that record what they get, and when."""

    def __init__(self) -> None:
        self.deaths: List[Death] = []
        self.errors: List[BaseException] = []
        self.event = threading.Event()

    def on_dead(self, conn: Any, reason: hb.DeadReason, err: int) -> None:
        self.deaths.append((conn, reason, err, time.monotonic()))
        self.event.set()

    def on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


def heartbeat_threads() -> int:
    """Threads of this process named heartbeat-mon (one per C monitor)."""
    n = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "heartbeat-mon":
                n += 1
        except OSError:
            pass
    return n


# --- deaths and non-deaths --------------------------------------------------


def test_silent_peer_dies_within_its_window(pair: Pair) -> None:
    client, peer = pair
    rec = Recorder()
    with hb.Monitor(50, 400, ping=b"PING\n", on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        t0 = time.monotonic()
        mon.watch(client)
        assert rec.wait(0.4 + LATE_ALLOWANCE_S + 1)
        conn, reason, err, when = rec.deaths[0]
        elapsed = when - t0
        assert conn is client, "on_dead gets the object that was watched"
        assert (reason, err) == (hb.DeadReason.SILENCE, 0)
        assert 0.399 <= elapsed <= 0.4 + LATE_ALLOWANCE_S, f"death after {elapsed:.3f} s"
        time.sleep(0.2)
        assert len(rec.deaths) == 1, "one death per watch"
        st = mon.stats()
        assert (st.watched, st.deaths) == (0, 1)
        assert st.pings >= 5
        with pytest.raises(hb.HeartbeatError) as e:
            mon.alive(client)
        check(e, C.ERR_NOT_WATCHED, errno.ENOENT, "heartbeat_monitor_alive")
    # The monitor wrote its pings into the socket: the peer can read them.
    peer.settimeout(1)
    assert peer.recv(5) == b"PING\n"
    assert rec.errors == []


class Echo:
    """The peer answers each ping with a pong; the client side calls
    alive() for everything it reads. Both threads bounded."""

    def __init__(self, mon: hb.Monitor, client: socket.socket, peer: socket.socket) -> None:
        self.mon, self.client, self.peer = mon, client, peer
        self.answering = threading.Event()
        self.answering.set()
        self.stop = threading.Event()
        self.pongs = 0
        self.threads = [threading.Thread(target=self.echo), threading.Thread(target=self.read)]
        for s in (client, peer):
            s.settimeout(0.05)
        for t in self.threads:
            t.start()

    def echo(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.peer.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            if self.answering.is_set():
                self.peer.sendall(b"PONG" * data.count(b"P"))

    def read(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.client.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            self.pongs += data.count(b"PONG")
            try:
                self.mon.alive(self.client)
            except hb.HeartbeatError:
                pass  # declared dead meanwhile: the test will say

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def test_answering_peer_never_dies_then_silence_kills_it(pair: Pair) -> None:
    client, peer = pair
    rec = Recorder()
    with hb.Monitor(100, 1000, ping=b"P", on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        echo = Echo(mon, client, peer)
        try:
            mon.watch(client)
            end = time.monotonic() + 2.5
            worst = 0
            while time.monotonic() < end:
                worst = max(worst, mon.last_heard_ms(client))
                time.sleep(0.02)
            assert rec.deaths == [], f"false death; last heard at most {worst} ms ago"
            assert echo.pongs >= 15, f"only {echo.pongs} pongs: the pings did not flow"
            assert worst < 1000
            # Now the peer stops answering: the same connection dies.
            echo.answering.clear()
            t0 = time.monotonic()
            assert rec.wait(1.0 + LATE_ALLOWANCE_S + 1)
            assert rec.deaths[0][1] is hb.DeadReason.SILENCE
            assert time.monotonic() - t0 <= 1.0 + LATE_ALLOWANCE_S
        finally:
            echo.close()
    assert rec.errors == []


def test_last_heard_ms_and_alive(pair: Pair) -> None:
    client, _ = pair
    rec = Recorder()
    with hb.Monitor(1000, 60000, on_dead=rec.on_dead) as mon:
        mon.watch(client.fileno())
        time.sleep(0.25)
        assert 240 <= mon.last_heard_ms(client) < 60000
        mon.alive(client)
        assert mon.last_heard_ms(client.fileno()) < 100
        st = mon.stats()
        assert st.watched == 1 and len(st.ping_late) == hb.LATE_BUCKETS
        mon.unwatch(client)
        assert mon.stats().watched == 0


def test_ping_callable_gets_the_watched_object(pair: Pair) -> None:
    client, peer = pair
    rec = Recorder()
    seen: List[Any] = []

    def ping(conn: socket.socket) -> None:
        seen.append(conn)
        conn.send(b"hb")

    with hb.Monitor(30, 5000, ping=ping, on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        mon.watch(client)
        peer.settimeout(2)
        assert peer.recv(2) == b"hb"
        mon.unwatch(client)
        assert mon.stats().pings >= 1
    assert seen and all(s is client for s in seen)
    assert rec.deaths == [] and rec.errors == []


def test_ping_oserror_is_a_failed_send(pair: Pair) -> None:
    client, _ = pair
    rec = Recorder()

    def ping(conn: socket.socket) -> None:
        raise BrokenPipeError(errno.EPIPE, "gone")

    with hb.Monitor(30, 60000, ping=ping, on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        mon.watch(client)
        assert rec.wait(5)
    assert [(d[0], d[1], d[2]) for d in rec.deaths] == [(client, hb.DeadReason.SEND_FAILED, errno.EPIPE)]
    assert rec.errors == [], "a failed send is an answer, not an error to report"


def test_ping_on_a_reset_connection_reports_its_errno() -> None:
    client, peer = tcp_pair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # RST
    time.sleep(0.05)
    rec = Recorder()
    with client, hb.Monitor(30, 60000, ping=lambda c: c.send(b"x"), on_dead=rec.on_dead) as mon:
        mon.watch(client)
        assert rec.wait(5)
    _, reason, err, _ = rec.deaths[0]
    assert reason is hb.DeadReason.SEND_FAILED and err in (errno.ECONNRESET, errno.EPIPE)


def test_ping_would_block_is_not_a_death(pair: Pair) -> None:
    client, _ = pair
    rec = Recorder()
    calls = []

    def ping(conn: socket.socket) -> None:
        calls.append(1)
        raise BlockingIOError(errno.EAGAIN, "full")

    with hb.Monitor(30, 400, ping=ping, on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        t0 = time.monotonic()
        mon.watch(client)
        assert rec.wait(0.4 + LATE_ALLOWANCE_S + 1)
    assert rec.deaths[0][1] is hb.DeadReason.SILENCE
    assert rec.deaths[0][3] - t0 >= 0.399
    assert len(calls) >= 3 and rec.errors == []


def test_ping_that_raises_is_reported_and_skipped(pair: Pair) -> None:
    client, _ = pair
    rec = Recorder()

    def ping(conn: socket.socket) -> None:
        raise ValueError("bug in the ping callback")

    with hb.Monitor(30, 400, ping=ping, on_dead=rec.on_dead, on_error=rec.on_error) as mon:
        t0 = time.monotonic()
        mon.watch(client)
        assert rec.wait(0.4 + LATE_ALLOWANCE_S + 1)
        pings = mon.stats().pings
    # Not a send failure: the peer is declared dead by silence, not earlier.
    assert rec.deaths[0][1] is hb.DeadReason.SILENCE and rec.deaths[0][3] - t0 >= 0.399
    assert pings >= 3 and len(rec.errors) >= 3
    assert all(isinstance(e, ValueError) and str(e) == "bug in the ping callback" for e in rec.errors)
    assert rec.errors[0].__traceback__ is not None


def test_on_dead_that_raises_is_reported_and_the_monitor_goes_on() -> None:
    rec = Recorder()
    deaths: List[Any] = []

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        deaths.append(conn)
        raise RuntimeError(f"on_dead failed for {conn}")

    a, a2 = tcp_pair()
    b, b2 = tcp_pair()
    want = [f"on_dead failed for {a}", f"on_dead failed for {b}"]
    with a, a2, b, b2, hb.Monitor(20, 100, on_dead=on_dead, on_error=rec.on_error) as mon:
        mon.watch(a)
        time.sleep(0.1)
        mon.watch(b)
        end = time.monotonic() + 5
        while len(deaths) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert deaths == [a, b]
        assert mon.stats().deaths == 2
    assert [str(e) for e in rec.errors] == want


def test_default_report_is_logged_with_the_traceback(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = pair
    done = threading.Event()

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        done.set()
        raise KeyError("lost")

    caplog.set_level(logging.ERROR, logger="libheartbeat")
    with hb.Monitor(20, 60, on_dead=on_dead) as mon:
        mon.watch(client)
        assert done.wait(5)
    recs = [r for r in caplog.records if r.name == "libheartbeat"]
    assert len(recs) == 1 and recs[0].levelno == logging.ERROR
    assert "on_dead" in recs[0].getMessage()
    assert recs[0].exc_info is not None and isinstance(recs[0].exc_info[1], KeyError)


def test_on_error_that_raises_is_logged(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    client, _ = pair
    done = threading.Event()

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        raise KeyError("first")

    def on_error(exc: BaseException) -> None:
        done.set()
        raise RuntimeError("second")

    caplog.set_level(logging.ERROR, logger="libheartbeat")
    with hb.Monitor(20, 60, on_dead=on_dead, on_error=on_error) as mon:
        mon.watch(client)
        assert done.wait(5)
        time.sleep(0.05)
    recs = [r for r in caplog.records if r.name == "libheartbeat"]
    assert len(recs) == 1 and "on_error raised" in recs[0].getMessage()
    assert recs[0].exc_info is not None and isinstance(recs[0].exc_info[1], RuntimeError)


def test_rewatch_from_on_dead(pair: Pair) -> None:
    client, _ = pair
    deaths: List[float] = []
    mon: Optional[hb.Monitor] = None

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        deaths.append(time.monotonic())
        if len(deaths) < 3:
            assert mon is not None
            mon.watch(conn)

    with hb.Monitor(20, 80, on_dead=on_dead) as mon:
        mon.watch(client)
        end = time.monotonic() + 5
        while len(deaths) < 3 and time.monotonic() < end:
            time.sleep(0.01)
        assert len(deaths) == 3 and mon.stats().deaths == 3
        assert all(b - a >= 0.079 for a, b in zip(deaths, deaths[1:]))


# --- references and lifetimes ------------------------------------------------


def test_watched_socket_is_kept_alive_until_unwatch() -> None:
    client, peer = tcp_pair()
    ref = weakref.ref(client)
    fd = client.fileno()
    with peer, hb.Monitor(1000, 60000, on_dead=lambda *a: None) as mon:
        mon.watch(client)
        del client
        gc.collect()
        assert ref() is not None, "a watched socket must not be collected (its fd would close)"
        os.fstat(fd)  # still open
        mon.unwatch(fd)
        gc.collect()
        assert ref() is None


def test_dead_socket_is_released_after_on_dead() -> None:
    client, peer = tcp_pair()
    ref = weakref.ref(client)
    got = threading.Event()
    with peer, hb.Monitor(20, 60, on_dead=lambda c, r, e: got.set()) as mon:
        mon.watch(client)
        del client
        assert got.wait(5)
        time.sleep(0.05)
        gc.collect()
        assert ref() is None


def test_watch_twice_keeps_the_first(pair: Pair) -> None:
    client, _ = pair
    seen: List[Any] = []
    got = threading.Event()

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        seen.append(conn)
        got.set()

    with hb.Monitor(20, 100, on_dead=on_dead) as mon:
        mon.watch(client)
        with pytest.raises(hb.HeartbeatError) as e:
            mon.watch(client.fileno())
        check(e, C.ERR_ALREADY_WATCHED, errno.EEXIST, "heartbeat_monitor_watch")
        assert got.wait(5)
    assert seen == [client]


def test_close_is_idempotent_and_then_every_method_refuses(pair: Pair) -> None:
    client, _ = pair
    mon = hb.Monitor(100, 1000, on_dead=lambda *a: None)
    mon.watch(client)
    assert not mon.closed and "watching 1" in repr(mon)
    mon.close()
    mon.close()
    assert mon.closed and "closed" in repr(mon)
    calls: List[Callable[[], Any]] = [
        lambda: mon.watch(client),
        lambda: mon.alive(client),
        lambda: mon.unwatch(client),
        lambda: mon.last_heard_ms(client),
        mon.stats,
    ]
    for call in calls:
        with pytest.raises(ValueError, match="closed"):
            call()


def threads_become(n: int) -> bool:
    """The monitor thread names itself once it runs: wait (bounded) for it."""
    end = time.monotonic() + 5
    while heartbeat_threads() != n and time.monotonic() < end:
        time.sleep(0.005)
    return heartbeat_threads() == n


def test_finalizer_itself_makes_later_calls_refuse(pair: Pair) -> None:
    # What runs at interpreter exit is the finalizer, not close(): it must
    # leave the Monitor refusing calls (daemon threads may still call).
    client, _ = pair
    mon = hb.Monitor(100, 1000, on_dead=lambda *a: None)
    mon.watch(client)
    mon._finalizer()
    assert mon.closed
    with pytest.raises(ValueError, match="closed"):
        mon.alive(client)


def test_daemon_thread_calling_during_interpreter_exit() -> None:
    out = run_scenario(
        """
        m = hb.Monitor(5, 60000, ping=b"x", on_dead=lambda *a: None)
        m.watch(c)
        refused = []
        def spin():
            # alive() keeps the GIL through its C call, so it either runs
            # before the exit finalizer takes the pointer away, or after it
            # and is refused: never on a freed monitor.
            while True:
                try:
                    m.alive(c)
                except ValueError:
                    refused.append(1)
        threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.2)
        print("exiting")
        """
    )
    assert out.strip() == "exiting"


def test_context_manager_stops_the_thread() -> None:
    before = heartbeat_threads()
    with hb.Monitor(100, 1000, on_dead=lambda *a: None):
        assert threads_become(before + 1)
    assert threads_become(before), "the thread still runs after the with block"


def test_garbage_collection_closes_the_monitor() -> None:
    before = heartbeat_threads()
    mon = hb.Monitor(100, 1000, on_dead=lambda *a: None)
    assert threads_become(before + 1)
    del mon
    gc.collect()
    assert threads_become(before), "an unreferenced monitor keeps its thread"


def test_unwatch_waits_for_a_callback_in_progress(pair: Pair) -> None:
    client, _ = pair
    entered, finished = threading.Event(), threading.Event()

    def ping(conn: socket.socket) -> None:
        entered.set()
        time.sleep(0.3)  # releases the GIL; the test thread runs meanwhile
        finished.set()

    with hb.Monitor(20, 60000, ping=ping, on_dead=lambda *a: None) as mon:
        mon.watch(client)
        assert entered.wait(5)
        t0 = time.monotonic()
        mon.unwatch(client)
        assert finished.is_set(), "unwatch returned while the ping callback still ran"
        assert time.monotonic() - t0 >= 0.1


SCRIPT_PRELUDE = """
import gc, socket, sys, threading, time
import libheartbeat as hb
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname()); p, _ = srv.accept()
"""


def run_scenario(body: str, timeout: float = 30) -> str:
    """A scenario that could deadlock or crash runs in its own interpreter."""
    r = run_python(SCRIPT_PRELUDE + textwrap.dedent(body), timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Fatal Python error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_close_while_a_callback_holds_the_gil_does_not_deadlock() -> None:
    # The callback computes in Python (it needs the GIL, and takes it back
    # after every switch interval); close() on the main thread waits for it
    # inside heartbeat_monitor_free(). ctypes.CDLL releases the GIL around
    # that call, so the callback finishes and close() returns.
    out = run_scenario(
        """
        entered, finished = threading.Event(), threading.Event()
        def ping(conn):
            entered.set()
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                sum(range(1000))
            finished.set()
        m = hb.Monitor(10, 60000, ping=ping, on_dead=lambda *a: None)
        m.watch(c)
        assert entered.wait(5)
        t0 = time.monotonic()
        m.close()
        assert finished.is_set(), "close() returned while the callback ran"
        print("closed after", round(time.monotonic() - t0, 3))
        """
    )
    assert "closed after" in out


def test_close_from_inside_its_own_callback() -> None:
    out = run_scenario(
        """
        from libheartbeat import monitor as mm
        done = threading.Event()
        holder = []
        def on_dead(conn, reason, err):
            holder[0].close()           # returns at once: C frees after we return
            assert holder[0].closed
            done.set()
        holder.append(hb.Monitor(10, 30, on_dead=on_dead))
        holder[0].watch(c)
        assert done.wait(5)
        time.sleep(0.1)
        assert len(mm._kept) == 1, "the callback objects must outlive the callback"
        del holder[:]
        gc.collect()
        # The process goes on using monitors normally.
        got = threading.Event()
        with hb.Monitor(10, 30, on_dead=lambda *a: got.set()) as m2:
            m2.watch(c)
            assert got.wait(5)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_last_reference_dropped_inside_its_own_callback() -> None:
    # The finalizer then runs on the monitor thread, inside the callback.
    out = run_scenario(
        """
        from libheartbeat import monitor as mm
        done = threading.Event()
        box = {}
        def on_dead(conn, reason, err):
            box.clear()                 # the last reference: finalizer runs here
            done.set()
        box["m"] = hb.Monitor(10, 30, on_dead=on_dead)
        box["m"].watch(c)
        assert done.wait(5)
        time.sleep(0.1)
        gc.collect()
        assert len(mm._kept) == 1
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_interpreter_exit_with_open_monitors_and_busy_callbacks() -> None:
    # Never closed; one monitor referenced by its own callback (so only the
    # exit finalizer can close it), both calling into Python all the time.
    t0 = time.monotonic()
    out = run_scenario(
        """
        box = {}
        def ping(conn):
            box["m"].alive(conn)
            time.sleep(0.002)
        box["m"] = hb.Monitor(1, 60000, ping=ping, on_dead=lambda *a: None)
        box["m"].watch(c)
        m2 = hb.Monitor(1, 60000, ping=lambda conn: sum(range(100)), on_dead=lambda *a: None)
        m2.watch(p)
        time.sleep(0.3)
        assert box["m"].stats().pings > 10 and m2.stats().pings > 10
        print("exiting")
        """
    )
    assert out.strip() == "exiting"
    assert time.monotonic() - t0 < 20


def test_many_threads_use_one_monitor() -> None:
    pairs = [tcp_pair() for _ in range(8)]
    errors: List[BaseException] = []
    with hb.Monitor(5, 60000, ping=b"p", on_dead=lambda *a: None) as mon:

        def work(sock: socket.socket) -> None:
            try:
                for _ in range(200):
                    mon.watch(sock)
                    for _ in range(5):
                        mon.alive(sock)
                    mon.last_heard_ms(sock)
                    mon.unwatch(sock)
            except BaseException as e:  # noqa: B036
                errors.append(e)

        threads = [threading.Thread(target=work, args=(c,)) for c, _ in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and mon.stats().watched == 0
    for c, p in pairs:
        c.close()
        p.close()


# --- errors -------------------------------------------------------------------


def noop(*_: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("interval", "timeout", "code"),
    [
        (0, 1000, C.ERR_INTERVAL),
        (-1, 1000, C.ERR_INTERVAL),  # would wrap to 4294967295 in plain ctypes
        (-(2**40), 1000, C.ERR_INTERVAL),
        (100, 100, C.ERR_TIMEOUT),
        (100, 99, C.ERR_TIMEOUT),
        (100, -1, C.ERR_TIMEOUT),
        (2**40, 2**32 - 1, C.ERR_TIMEOUT),  # an interval no timeout can exceed
    ],
)
def test_new_bad_timing(interval: int, timeout: int, code: hb.Code) -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.Monitor(interval, timeout, on_dead=noop)
    check(e, code, errno.EINVAL, "heartbeat_monitor_new")


def test_new_bad_callbacks_and_pings() -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.Monitor(100, 200, on_dead=None)  # type: ignore[arg-type]
    check(e, C.ERR_DEAD_CALLBACK, errno.EINVAL, "heartbeat_monitor_new")
    for ping in (b"", b"x" * (hb.PING_MAX + 1)):
        with pytest.raises(hb.HeartbeatError) as e:
            hb.Monitor(100, 200, ping=ping, on_dead=noop)
        check(e, C.ERR_PING, errno.EINVAL, "heartbeat_monitor_new")
    # The order of the checks is the library's: interval first.
    with pytest.raises(hb.HeartbeatError) as e:
        hb.Monitor(0, 0, ping=b"", on_dead=None)  # type: ignore[arg-type]
    check(e, C.ERR_INTERVAL, errno.EINVAL, "heartbeat_monitor_new")
    for good in (b"x" * hb.PING_MAX, bytearray(b"ab"), memoryview(b"abc")):
        hb.Monitor(100, 200, ping=good, on_dead=noop).close()
    with pytest.raises(TypeError):
        hb.Monitor(100, 200, ping="PING", on_dead=noop)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.Monitor(100, 200, ping=7, on_dead=noop)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.Monitor(100, 200, on_dead=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.Monitor(100, 200, on_dead=noop, on_error="log")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        hb.Monitor(100, 2**32, on_dead=noop)


def test_watch_and_friends_errors(pair: Pair) -> None:
    client, _ = pair
    with hb.Monitor(100, 1000, on_dead=noop) as mon:
        with pytest.raises(hb.HeartbeatError) as e:
            mon.watch(-1)
        check(e, C.ERR_INVALID, errno.EINVAL, "heartbeat_monitor_watch")
        with pytest.raises(hb.HeartbeatError) as e:
            mon.watch(2**40)  # would wrap to fd 0 in plain ctypes
        check(e, C.ERR_INVALID, errno.EINVAL, "heartbeat_monitor_watch")
        for name in ("alive", "unwatch", "last_heard_ms"):
            with pytest.raises(hb.HeartbeatError) as e:
                getattr(mon, name)(client)
            check(e, C.ERR_NOT_WATCHED, errno.ENOENT, "heartbeat_monitor_" + name)
            with pytest.raises(hb.HeartbeatError) as e:
                getattr(mon, name)(-5)
            check(e, C.ERR_INVALID, errno.EINVAL, "heartbeat_monitor_" + name)
        with pytest.raises(hb.HeartbeatError) as e:
            mon.alive(2**32 + client.fileno())  # not the client's fd
        check(e, C.ERR_INVALID, errno.EINVAL, "heartbeat_monitor_alive")
        closed = socket.socket()
        closed.close()  # fileno() -1: alive()'s socket fast path passes it on
        with pytest.raises(hb.HeartbeatError) as e:
            mon.alive(closed)
        check(e, C.ERR_INVALID, errno.EINVAL, "heartbeat_monitor_alive")
        with pytest.raises(TypeError):
            mon.alive("3")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            mon.watch(None)  # type: ignore[arg-type]
        assert mon.stats().watched == 0


FAILALLOC = REPO / "build" / "c-tests" / "failalloc.so"
needs_failalloc = pytest.mark.skipif(
    not FAILALLOC.exists(), reason="build/c-tests/failalloc.so is not built (make test builds it)"
)
FAILALLOC_PRELUDE = """
import ctypes, errno, socket
import libheartbeat as hb
fa = ctypes.CDLL(None)   # the injector's controls, preloaded
for f in ("failalloc_counted", "failalloc_failed", "failalloc_live"):
    getattr(fa, f).restype = ctypes.c_long
fa.failalloc_arm.argtypes = [ctypes.c_long]
s = socket.socket()
"""
FAILALLOC_ENV = {"LD_PRELOAD": str(FAILALLOC), "HB_FAILALLOC_OBJ": "libheartbeat.so"}


@needs_failalloc
def test_watch_out_of_memory_is_err_nomem() -> None:
    # The allocation-failure injector fails the n-th allocation made inside
    # libheartbeat.so (nothing else), n = 1, 2, ... until watch() needs no
    # more: each failure is ERR_NOMEM with ENOMEM, and the fd is not watched.
    out = run_python(
        FAILALLOC_PRELUDE
        + textwrap.dedent(
            """
            fails = 0
            for n in range(1, 100):
                m = hb.Monitor(100, 1000, on_dead=lambda *a: None)
                fa.failalloc_arm(n)
                try:
                    m.watch(s)
                except hb.HeartbeatError as e:
                    fa.failalloc_arm(0)
                    assert e.code == hb.Code.ERR_NOMEM and e.errno == errno.ENOMEM, e
                    assert e.name == "HEARTBEAT_ERR_NOMEM"
                    assert m.stats().watched == 0
                    fails += 1
                    m.close()
                    continue
                fa.failalloc_arm(0)
                assert m.stats().watched == 1
                m.close()
                break
            print(fails, n)
            """
        ),
        env=FAILALLOC_ENV,
    )
    assert out.returncode == 0, out.stderr
    fails, n = map(int, out.stdout.split())
    assert fails >= 1 and n == fails + 1, out.stdout


@needs_failalloc
def test_monitor_new_out_of_memory_is_err_nomem() -> None:
    out = run_python(
        FAILALLOC_PRELUDE
        + textwrap.dedent(
            """
            fails = 0
            for n in range(1, 200):
                fa.failalloc_arm(n)
                try:
                    m = hb.Monitor(100, 1000, on_dead=lambda *a: None)
                except hb.HeartbeatError as e:
                    fa.failalloc_arm(0)
                    assert e.code == hb.Code.ERR_NOMEM and e.errno == errno.ENOMEM, e
                    assert fa.failalloc_live() == 0, "leak after a failed Monitor()"
                    fails += 1
                    continue
                fa.failalloc_arm(0)
                m.close()
                break
            print(fails, n)
            """
        ),
        env=FAILALLOC_ENV,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fails, n = map(int, out.stdout.split())
    assert fails >= 1 and n == fails + 1, out.stdout
