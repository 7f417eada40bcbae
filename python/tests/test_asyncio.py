"""LoopMonitor: the thread-free monitor driven by asyncio (or any loop).

The example server (python/examples/asyncio_server.py) as a test: a silent
client reported within its window, answering clients not reported. Then
the fd's readiness, process(), unwatch()/close() from inside callbacks
run by process(), the threaded monitor's refusals, exceptions raised in
callbacks inside a loop, attach/detach/close ordering, and where ping
bytes land in an asyncio stream.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Awaitable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from helpers import REPO, SRC, Pair, check, run_python, tcp_pair

import libheartbeat as hb
from libheartbeat import monitor as mm

C = hb.Code
EXAMPLE = REPO / "python" / "examples" / "asyncio_server.py"
# Deaths come at the documented time and about 1 ms later, plus the
# loop's latency in Python; the upper bounds allow for a loaded 2-core
# machine (other builds running). Lower bounds have no allowance.
LATE_ALLOWANCE_S = 0.3
T = TypeVar("T")


def run(coro: Awaitable[T], seconds: float = 20) -> T:
    """Run a coroutine in a new loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, seconds)

    return asyncio.run(bounded())


def readable(fd: int, seconds: float) -> bool:
    return bool(select.select([fd], [], [], seconds)[0])


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError as e:
        assert e.errno == errno.EBADF
        return False


# --- the example server ------------------------------------------------------


class Lines:
    """A subprocess whose stdout lines are collected by a thread, each
    with the time.monotonic() it was read at; stopped at the end."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: List[Tuple[float, str]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait_for(self, pattern: str, seconds: float) -> "re.Match[str]":
        """The first line matching ``pattern``, waiting at most ``seconds``."""
        deadline = time.monotonic() + seconds
        rx = re.compile(pattern)
        with self.cond:
            while True:
                for _, line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.thread.is_alive():
                    raise AssertionError(f"no line matching {pattern!r} in {self.text()!r}")
                self.cond.wait(left)

    def text(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def stop(self) -> str:
        """Ends the process (continued first if stopped); returns its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return err


# The example's window: interval 200 ms, timeout 1000 ms.
INTERVAL_S, TIMEOUT_S = 0.2, 1.0


@pytest.fixture(scope="module")
def example_server() -> Iterator[Tuple[Lines, int]]:
    server = Lines(
        "server", "--interval-ms", str(int(INTERVAL_S * 1000)), "--timeout-ms", str(int(TIMEOUT_S * 1000))
    )
    try:
        port = int(server.wait_for(r"^listening on 127\.0\.0\.1 (\d+)$", 30).group(1))
        yield server, port
    finally:
        err = server.stop()
        # Nothing went to the loop's exception handler or a traceback.
        assert "Traceback" not in err and "exception" not in err.lower(), err


def death_line(server: Lines, name: str, seconds: float) -> Tuple[str, float, float]:
    """(reason, silent for, monotonic stamp) of the server's death line for ``name``."""
    m = server.wait_for(
        rf"^client {re.escape(name)} dead: (\w+), silent for (\d+) ms \(monotonic ([\d.]+)\)$", seconds
    )
    return m.group(1), float(m.group(2)) / 1000, float(m.group(3))


def has_death(server: Lines, name: str) -> bool:
    return f"client {name} dead" in server.text()


def test_example_reports_a_silent_client_within_its_window(example_server: Tuple[Lines, int]) -> None:
    """A client that connects and never answers (nor reads). The guarantee:
    without an answer, the peer is dead at last_heard + timeout, later only
    by as much as the monitor was late; last_heard is the server's watch(),
    which follows our connect(). So its death comes at least TIMEOUT_S
    after we connected, and at most TIMEOUT_S plus the accept's latency and
    the loop's lateness."""
    server, port = example_server
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.monotonic()
    with sock:
        host, cport = sock.getsockname()[:2]
        name = f"{host}:{cport}"
        server.wait_for(rf"^client {re.escape(name)} connected$", 5)
        reason, silent, when = death_line(server, name, TIMEOUT_S + LATE_ALLOWANCE_S + 5)
        assert reason == "SILENCE"
        elapsed = when - t0
        assert TIMEOUT_S - 0.001 <= elapsed <= TIMEOUT_S + LATE_ALLOWANCE_S, f"dead after {elapsed:.3f} s"
        assert TIMEOUT_S - 0.001 <= silent <= TIMEOUT_S + LATE_ALLOWANCE_S
        # The server pinged it through its writer, then closed the connection.
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data and data == b"PING\n" * (len(data) // 5), data
        assert len(data) // 5 >= 3, "pings every 200 ms for 1 s"
    assert server.text().count(f"client {name} dead") == 1


def test_example_keeps_answering_clients_and_reports_them_when_they_stop(
    example_server: Tuple[Lines, int],
) -> None:
    """Two answering clients: A answers for 3 s (three windows) and then
    stays connected without answering; B answers until it is stopped with
    SIGSTOP. Neither is reported while it answers (the guarantee: a peer
    that answers every ping within timeout - interval of its send is never
    declared dead). Once silent, each is dead at last_heard + timeout,
    late only by the monitor's lateness: last_heard is at or after the
    client's last pong (each client stamps a pong before writing it) and,
    for B, at most the stop (nothing can be heard from a stopped process,
    but a pong written just before it). So A: [last pong + timeout, last
    pong + timeout + allowance]; B: [last pong + timeout, stop + timeout +
    allowance], where its last pong is at most about one interval before
    the stop (brief: [timeout - interval, timeout + margin] after it)."""
    server, port = example_server
    answer_s = 3.0
    a = Lines("client", "127.0.0.1", str(port), "--answer-s", str(answer_s), "--seconds", "30")
    b = Lines("client", "127.0.0.1", str(port), "--seconds", "30")
    try:
        name_a = a.wait_for(r"^connected from (\S+)$", 10).group(1)
        name_b = b.wait_for(r"^connected from (\S+)$", 10).group(1)
        # A answers, then goes silent.
        m = a.wait_for(r"^silent from [\d.]+, (\d+) pings answered$", answer_s + 10)
        assert int(m.group(1)) >= 10, "pings every 200 ms for 3 s"
        assert not has_death(server, name_a) and not has_death(server, name_b), server.text()
        pongs = re.findall(r"^pong \d+ at ([\d.]+)$", a.text(), flags=re.M)
        last_pong_a = float(pongs[-1])
        reason, _, when = death_line(server, name_a, TIMEOUT_S + LATE_ALLOWANCE_S + 5)
        assert reason == "SILENCE"
        assert TIMEOUT_S <= when - last_pong_a <= TIMEOUT_S + LATE_ALLOWANCE_S, f"{when - last_pong_a:.3f} s"
        # B has been answering all along (more than 3 windows): stop it.
        assert not has_death(server, name_b), server.text()
        b.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        reason, _, when = death_line(server, name_b, TIMEOUT_S + LATE_ALLOWANCE_S + 5)
        assert reason == "SILENCE"
        pongs = re.findall(r"^pong \d+ at ([\d.]+)$", b.text(), flags=re.M)
        last_pong_b = float(pongs[-1])
        assert len(pongs) >= 15, "B answered for more than 3 s"
        assert when - last_pong_b >= TIMEOUT_S, f"{when - last_pong_b:.3f} s after B's last pong"
        assert when - stopped <= TIMEOUT_S + LATE_ALLOWANCE_S, f"{when - stopped:.3f} s after the stop"
    finally:
        err_a, err_b = a.stop(), b.stop()
    assert "Traceback" not in err_a + err_b, err_a + err_b
    assert server.text().count(f"client {name_a} dead") == 1
    assert server.text().count(f"client {name_b} dead") == 1


def test_example_client_that_closes_is_unwatched(example_server: Tuple[Lines, int]) -> None:
    """A client that talks and then closes: answered through the writer,
    never reported dead (the handler unwatched it before closing)."""
    server, port = example_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        name = "%s:%d" % sock.getsockname()[:2]
        sock.sendall(b"hello\n")
        data = b""
        while b"OK hello\n" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
    server.wait_for(rf"^client {re.escape(name)} closed the connection$", 5)
    time.sleep(TIMEOUT_S + 0.2)
    assert not has_death(server, name), server.text()


# --- the fd and process() ----------------------------------------------------


def test_fileno_is_readable_exactly_when_something_is_due(pair: Pair) -> None:
    client, _ = pair
    pings: List[float] = []
    with hb.LoopMonitor(200, 5000, ping=lambda conn: pings.append(time.monotonic()), on_dead=print) as mon:
        fd = mon.fileno()
        assert mon.timeout_ms() == -1, "nothing watched"
        assert not readable(fd, 0.3)
        mon.watch(client)
        # The first ping comes within one interval, then one every interval:
        # take a cycle that starts with a fresh process().
        assert readable(fd, 0.2 + LATE_ALLOWANCE_S)
        assert mon.process() == 1 and len(pings) == 1
        for _ in range(3):
            assert not readable(fd, 0), "re-armed by process(): nothing due now"
            start = time.monotonic()
            wait = mon.timeout_ms()
            assert 150 <= wait <= 200, wait
            # Not readable until due...
            assert not readable(fd, (wait - 20) / 1000)
            assert mon.process() == 0 and len(pings) == 1 + _
            # ...and readable from then on.
            assert readable(fd, 0.02 + LATE_ALLOWANCE_S)
            assert time.monotonic() - start >= (wait - 1) / 1000
            assert mon.timeout_ms() == 0
            assert readable(fd, 0), "level-triggered: readable until processed"
            assert mon.process() == 1
        assert mon.stats().pings == 4


def test_process_with_nothing_due_does_nothing(pair: Pair) -> None:
    client, _ = pair
    calls: List[Any] = []
    with hb.LoopMonitor(1000, 3000, ping=calls.append, on_dead=lambda *a: calls.append(a)) as mon:
        assert mon.process() == 0, "nothing watched"
        mon.watch(client)
        # The first watch's first ping is due at once, rounded up to the
        # scheduler's next millisecond: wait for it and send it (bounded).
        give_up = time.monotonic() + 2.0
        while not calls and time.monotonic() < give_up:
            select.select([mon.fileno()], [], [], max(mon.timeout_ms(), 0) / 1000)
            mon.process()
        assert len(calls) == 1, "the first ping went out"
        calls.clear()
        before = mon.stats()
        assert before.watched == 1
        for _ in range(10):
            assert mon.process() == 0
        assert calls == []
        assert mon.stats() == before, "no ping, no wake-up counted, nothing changed"
        assert mon.timeout_ms() > 0


def test_unwatch_from_inside_a_callback_run_by_process() -> None:
    a, a2 = tcp_pair()
    b, b2 = tcp_pair()
    pinged: List[Any] = []
    nested: List[int] = []
    holder: List[hb.LoopMonitor] = []

    def ping(conn: socket.socket) -> None:
        pinged.append(conn)
        nested.append(holder[0].process())  # a nested call does nothing
        holder[0].unwatch(a)  # itself, and the other one
        holder[0].unwatch(b)

    with a, a2, b, b2, hb.LoopMonitor(20, 1000, ping=ping, on_dead=print) as mon:
        holder.append(mon)
        mon.watch(a)
        mon.watch(b)
        end = time.monotonic() + 5
        while not pinged and time.monotonic() < end:
            if readable(mon.fileno(), 0.1):
                mon.process()
        assert len(pinged) == 1 and nested == [0]
        assert mon.stats().watched == 0
        assert mon.timeout_ms() == -1, "nothing watched: the fd is disarmed"
        assert not readable(mon.fileno(), 0.2)
        assert mon.process() == 0 and len(pinged) == 1
        for s in (a, b):
            with pytest.raises(hb.HeartbeatError) as e:
                mon.alive(s)
            check(e, C.ERR_NOT_WATCHED, errno.ENOENT, "heartbeat_monitor_alive")


def test_close_from_inside_a_callback_in_a_running_loop() -> None:
    """on_dead closes an attached monitor: the loop stops polling its fd,
    process() returns normally, no callback runs afterwards, the callback
    objects are released when process() returns, and the loop goes on."""
    a, a2 = tcp_pair()
    b, b2 = tcp_pair()
    deaths: List[Any] = []
    handler_calls: List[Dict[str, Any]] = []

    async def main() -> Tuple[int, bool, int]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: handler_calls.append(ctx))
        done = asyncio.Event()

        def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
            deaths.append(conn)
            mon.close()
            done.set()

        mon = hb.LoopMonitor(10, 50, on_dead=on_dead)
        fd = mon.fileno()
        mon.watch(a)
        mon.watch(b)  # due at the same millisecond or the next: never reported
        mon.attach()
        await done.wait()
        kept_now = len(mm._kept)
        await asyncio.sleep(0.3)  # the loop goes on
        return fd, loop.remove_reader(fd), kept_now + len(mm._kept)

    with a, a2, b, b2:
        fd, reader_left, kept = run(main())
    assert deaths == [a], "one death, then nothing: the monitor was closed"
    assert not reader_left, "close() removed the reader"
    assert kept == 0, "the thunks are released once process() returned"
    assert handler_calls == []
    assert not fd_is_open(fd)


# --- the threaded monitor refuses the loop's calls ---------------------------


def test_threaded_monitor_refuses_fileno_timeout_and_process(pair: Pair) -> None:
    client, _ = pair
    with hb.Monitor(1000, 3000, on_dead=print) as mon:
        mon.watch(client)
        for call, function in (
            (mon.fileno, "heartbeat_monitor_fd"),
            (mon.timeout_ms, "heartbeat_monitor_timeout_ms"),
            (mon.process, "heartbeat_monitor_process"),
        ):
            with pytest.raises(hb.HeartbeatError) as e:
                call()
            check(e, C.ERR_MODE, errno.EINVAL, function)
        assert mon.stats().watched == 1, "nothing was done"
    assert not hasattr(mon, "attach"), "attach() is a LoopMonitor's"


def test_loop_monitor_creation_errors() -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.LoopMonitor(100, 100, on_dead=print)
    check(e, C.ERR_TIMEOUT, errno.EINVAL, "heartbeat_monitor_new_loop")
    with pytest.raises(hb.HeartbeatError) as e:
        hb.LoopMonitor(100, 200, ping=b"", on_dead=print)
    check(e, C.ERR_PING, errno.EINVAL, "heartbeat_monitor_new_loop")
    # No fd left for the timerfd: ERR_FD with EMFILE, nothing leaked.
    r = run_python(
        """
        import errno, os, resource
        import libheartbeat as hb
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as e:
            assert e.errno == errno.EMFILE
        try:
            hb.LoopMonitor(100, 300, on_dead=print)
        except hb.HeartbeatError as e:
            print(e.name, errno.errorcode[e.errno], e.function)
        os.close(fds.pop())
        with hb.LoopMonitor(100, 300, on_dead=print) as m:  # one fd free: it works
            print("fd", m.fileno() == fds[-1] + 1)
        """.replace("\n        ", "\n")
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HEARTBEAT_ERR_FD EMFILE heartbeat_monitor_new_loop\nfd True\n"


# --- exceptions in callbacks inside a loop ----------------------------------


def test_callback_that_raises_in_the_loop_goes_to_its_exception_handler() -> None:
    """on_dead and ping raise inside a running loop: each exception goes to
    loop.call_exception_handler() (with the connection), and the loop and
    the monitor go on: both peers die on time, a ticking task keeps
    ticking, and the monitor still works afterwards."""
    a, a2 = tcp_pair()
    b, b2 = tcp_pair()
    contexts: List[Dict[str, Any]] = []

    def ping(conn: socket.socket) -> None:
        raise ValueError(f"ping bug {conn.fileno()}")

    def on_dead(conn: socket.socket, reason: hb.DeadReason, err: int) -> None:
        raise RuntimeError(f"on_dead bug {conn.fileno()}")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: contexts.append(ctx))
        ticks = 0
        with hb.LoopMonitor(50, 300, ping=ping, on_dead=on_dead) as mon:
            mon.attach()
            mon.watch(a)
            mon.watch(b)
            end = time.monotonic() + 0.3 + 2
            while mon.stats().deaths < 2 and time.monotonic() < end:
                await asyncio.sleep(0.01)
                ticks += 1
            assert mon.stats().deaths == 2 and mon.loop is loop
            t = time.monotonic()
            await asyncio.sleep(0.1)  # the loop goes on after the last one
            assert time.monotonic() - t >= 0.1
            mon.watch(a)  # and so does the monitor
            assert mon.stats().watched == 1
        return ticks

    fa, fb = a.fileno(), b.fileno()
    with a, a2, b, b2:
        ticks = run(main())
    assert ticks >= 20
    dead = [c for c in contexts if isinstance(c.get("exception"), RuntimeError)]
    pings = [c for c in contexts if isinstance(c.get("exception"), ValueError)]
    assert sorted(str(c["exception"]) for c in dead) == sorted([f"on_dead bug {fa}", f"on_dead bug {fb}"])
    assert {c["conn"] for c in dead} == {a, b}
    assert len(pings) >= 4 and all(c["conn"] in (a, b) for c in pings)
    assert all("libheartbeat Monitor" in c["message"] for c in contexts)
    assert len(dead) + len(pings) == len(contexts)


def test_default_exception_handler_logs_on_the_asyncio_logger(caplog: pytest.LogCaptureFixture) -> None:
    a, a2 = tcp_pair()

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        raise KeyError("lost")

    async def main() -> None:
        with hb.LoopMonitor(20, 60, on_dead=on_dead) as mon:
            mon.attach()
            mon.watch(a)
            while mon.stats().deaths == 0:
                await asyncio.sleep(0.01)

    caplog.set_level(logging.ERROR)
    with a, a2:
        run(main())
    recs = [r for r in caplog.records if r.name == "asyncio"]
    assert len(recs) == 1 and "on_dead callback" in recs[0].getMessage()
    assert recs[0].exc_info is not None and isinstance(recs[0].exc_info[1], KeyError)
    assert [r for r in caplog.records if r.name == "libheartbeat"] == []


def test_on_error_wins_and_without_a_loop_the_logger_reports(caplog: pytest.LogCaptureFixture) -> None:
    a, a2 = tcp_pair()
    errors: List[BaseException] = []
    contexts: List[Dict[str, Any]] = []

    def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
        raise KeyError("lost")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: contexts.append(ctx))
        with hb.LoopMonitor(20, 60, on_dead=on_dead, on_error=errors.append) as mon:
            mon.attach()
            mon.watch(a)
            while mon.stats().deaths == 0:
                await asyncio.sleep(0.01)

    caplog.set_level(logging.ERROR)
    with a, a2:
        run(main())
        assert len(errors) == 1 and isinstance(errors[0], KeyError) and contexts == []
        # process() called outside any loop: the "libheartbeat" logger.
        with hb.LoopMonitor(20, 60, on_dead=on_dead) as mon:
            mon.watch(a)
            while mon.stats().deaths == 0:
                if readable(mon.fileno(), 1):
                    mon.process()
    recs = [r for r in caplog.records if r.name == "libheartbeat"]
    assert len(recs) == 1 and isinstance(recs[0].exc_info[1] if recs[0].exc_info else None, KeyError)


# --- attach, detach, close ---------------------------------------------------


def test_attach_detach_close_ordering() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        mon = hb.LoopMonitor(1000, 3000, on_dead=print)
        fd = mon.fileno()
        assert mon.loop is None
        mon.attach()
        assert mon.loop is loop
        with pytest.raises(RuntimeError, match="already attached"):
            mon.attach()
        with pytest.raises(RuntimeError, match="already attached"):
            mon.attach(asyncio.new_event_loop())
        mon.detach()
        assert mon.loop is None
        assert not loop.remove_reader(fd), "detach() removed the reader"
        mon.detach()  # not attached: nothing to do
        mon.attach(loop)
        assert mon.loop is loop
        mon.close()
        assert not loop.remove_reader(fd), "close() removed the reader before freeing"
        assert not fd_is_open(fd), "close() freed the monitor, which closed its fd"
        assert mon.loop is None
        with pytest.raises(ValueError):
            mon.attach()
        with pytest.raises(ValueError):
            mon.process()
        with pytest.raises(ValueError):
            mon.fileno()
        with pytest.raises(ValueError):
            mon.timeout_ms()
        mon.close()  # idempotent
        mon.detach()

    run(main())


def test_attach_needs_a_running_or_given_loop_that_is_open() -> None:
    died: List[Any] = []
    with hb.LoopMonitor(10, 50, on_dead=lambda *x: died.append(x)) as mon:
        with pytest.raises(RuntimeError):
            mon.attach()  # no running loop
        assert mon.loop is None
        closed = asyncio.new_event_loop()
        closed.close()
        with pytest.raises(RuntimeError, match="closed"):
            mon.attach(closed)
        assert mon.loop is None
        # A loop not running yet, then run; then closed while attached.
        loop = asyncio.new_event_loop()
        try:
            mon.attach(loop)
            assert mon.loop is loop
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()
        assert mon.loop is None, "a closed loop has dropped its readers"
        mon.detach()
        # Attached again, to another loop, the monitor works there.

        async def main() -> None:
            a, a2 = tcp_pair()
            with a, a2:
                mon.attach()
                mon.watch(a)
                while not died:
                    await asyncio.sleep(0.01)

        run(main())
        assert len(died) == 1


def test_close_from_another_thread_than_the_running_loops_is_refused() -> None:
    async def main() -> Tuple[Optional[BaseException], bool]:
        loop = asyncio.get_running_loop()
        mon = hb.LoopMonitor(1000, 3000, on_dead=print)
        mon.attach()
        seen: List[BaseException] = []

        def other() -> None:
            for call in (mon.close, mon.detach):
                try:
                    call()
                except RuntimeError as e:
                    seen.append(e)

        t = threading.Thread(target=other)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.01)
        still_open = not mon.closed and mon.loop is loop
        # The way that works: on the loop's thread.
        done = asyncio.Event()

        def close_there() -> None:
            mon.close()
            done.set()

        threading.Thread(target=lambda: loop.call_soon_threadsafe(close_there)).start()
        await done.wait()
        assert mon.closed and mon.loop is None
        assert len(seen) == 2 and "monitor.detach" in str(seen[1])
        return (seen[0] if seen else None), still_open

    exc, still_open = run(main())
    assert isinstance(exc, RuntimeError) and "call_soon_threadsafe(monitor.close)" in str(exc)
    assert still_open, "the refused close() changed nothing"


def test_watch_from_another_thread_wakes_the_loop() -> None:
    """The loop waits on the fd with nothing watched (no timer of its
    own would wake it for 10 s); a watch() from another thread must wake
    it in time for the death."""
    a, a2 = tcp_pair()
    deaths: List[float] = []

    async def main() -> float:
        done = asyncio.Event()

        def on_dead(conn: Any, reason: hb.DeadReason, err: int) -> None:
            deaths.append(time.monotonic())
            done.set()

        with hb.LoopMonitor(100, 300, on_dead=on_dead) as mon:
            mon.attach()
            started: List[float] = []

            def watcher() -> None:
                time.sleep(0.1)
                started.append(time.monotonic())
                mon.watch(a)

            threading.Thread(target=watcher).start()
            await asyncio.wait_for(done.wait(), 10)
            return deaths[0] - started[0]

    with a, a2:
        elapsed = run(main())
    assert 0.3 - 0.001 <= elapsed <= 0.3 + LATE_ALLOWANCE_S, f"{elapsed:.3f} s"


# --- ping bytes and asyncio streams -----------------------------------------


def ping_position(use_callable: bool) -> Tuple[bytes, int]:
    """The application writes N bytes of b"A" through a StreamWriter; the
    socket takes only part of them and the transport keeps the rest in its
    buffer. The receiver then makes room, a ping comes due and process()
    runs before the loop flushes the transport's buffer. Returns what the
    receiver got and N."""
    n = 32 * 1024 * 1024

    async def main() -> bytes:
        with socket.create_server(("127.0.0.1", 0)) as server:
            reader, writer = await asyncio.open_connection(*server.getsockname()[:2])
            peer, _ = server.accept()
        with peer:
            sock = writer.get_extra_info("socket")

            def ping(w: asyncio.StreamWriter) -> None:
                w.write(b"PING")

            with hb.LoopMonitor(50, 60000, ping=ping if use_callable else b"PING", on_dead=print) as mon:
                mon.watch(sock, conn=writer)
                writer.write(b"A" * n)  # no await: the loop does not run meanwhile
                assert writer.transport.get_write_buffer_size() > 0, "the socket took it all"
                # Make room: read what the socket sent, until nothing more comes.
                got = bytearray()
                quiet = 0
                while quiet < 3:
                    try:
                        got += peer.recv(1 << 20, socket.MSG_DONTWAIT)
                        quiet = 0
                    except BlockingIOError:
                        quiet += 1
                        time.sleep(0.02)
                assert 0 < len(got) < n
                assert readable(mon.fileno(), 1), "the first ping is due within 50 ms"
                assert mon.process() == 1 and mon.stats().pings == 1
                mon.unwatch(sock)
                # Now let the loop flush the rest, while a thread reads it all.
                peer.settimeout(10)

                def drain() -> None:
                    while len(got) < n + 4:
                        chunk = peer.recv(1 << 20)
                        if not chunk:
                            return
                        got.extend(chunk)

                t = threading.Thread(target=drain)
                t.start()
                await writer.drain()
                while t.is_alive():
                    await asyncio.sleep(0.01)
                writer.close()
                return bytes(got)

    return run(main(), 60), n


def test_ping_bytes_can_land_inside_one_buffered_write() -> None:
    """ping=b"...": the library's send() goes to the socket past the
    transport's buffer: here into the middle of one writer.write()."""
    data, n = ping_position(use_callable=False)
    assert len(data) == n + 4
    at = data.find(b"PING")
    assert 0 < at < n, at
    assert data[:at] == b"A" * at and data[at + 4 :] == b"A" * (n - at)


def test_a_ping_callable_writing_through_the_writer_queues_behind() -> None:
    data, n = ping_position(use_callable=True)
    assert data == b"A" * n + b"PING"
