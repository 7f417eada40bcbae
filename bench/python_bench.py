"""Per-call cost of the Python package (run by bench/python.sh).

Usage: python3 bench/python_bench.py [ROUNDS]
Needs HEARTBEAT_LIBRARY (or an installed library) and the package on
PYTHONPATH. Prints figures only, as "NAME: VALUE" lines; nothing here
passes or fails.

Each round times every variant once, in rotating order, on the CPU time of
this thread (time.thread_time_ns: system calls included, other processes
excluded); the figures are medians over the rounds, ratios medians of the
per-round ratios.

- configure(): libheartbeat.configure(sock, 10, 5, 3), the package's whole
  path (argument checks, one ctypes call, the C function's four setsockopt
  calls), beside the four setsockopt calls made from Python directly, which
  is what a Python programmer writes without the package; and beside the
  bare ctypes call of heartbeat() with no package code around it.
- monitor.alive(): Monitor.alive(sock) on a watched socket, beside the
  bare ctypes call of heartbeat_monitor_alive(); the same on a LoopMonitor
  (the same C function), and LoopMonitor.process() with nothing due (what
  a spurious wake-up of the loop costs).
- status(): libheartbeat.status(sock) on a live connection (one
  heartbeat_status_ex() call, one getsockopt(TCP_INFO), and the Status
  value built from it), beside the bare ctypes call and beside
  sock.getsockopt(TCP_INFO) from Python, which returns raw bytes only.
"""

from __future__ import annotations

import ctypes
import socket
import statistics
import sys
import time
from typing import Callable, Dict, List

import libheartbeat as hb
from libheartbeat import _lib

SOL_SOCKET, SO_KEEPALIVE = socket.SOL_SOCKET, socket.SO_KEEPALIVE
TCP, KEEPIDLE, KEEPINTVL, KEEPCNT = socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT


def per_call_ns(fn: Callable[[int], None], n: int) -> float:
    t0 = time.thread_time_ns()
    fn(n)
    return (time.thread_time_ns() - t0) / n


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    fd = sock.fileno()
    raw_heartbeat = _lib.LIB.heartbeat
    raw_alive = _lib.LIB.heartbeat_monitor_alive
    mon = hb.Monitor(1000, 3_600_000, on_dead=lambda *a: None)  # no pings: its thread sleeps
    mon.watch(sock)
    ptr = mon._ptr
    # The thread-free monitor on the same socket: nothing comes due in the run.
    lmon = hb.LoopMonitor(1000, 3_600_000, on_dead=lambda *a: None)
    lmon.watch(sock)
    lalive, lprocess = lmon.alive, lmon.process
    configure, alive, status = hb.configure, mon.alive, hb.status
    raw_status_ex = _lib.LIB.heartbeat_status_ex
    status_out = _lib.StatusExStruct()
    status_size = ctypes.c_size_t(ctypes.sizeof(status_out))

    def v_configure(n: int) -> None:
        for _ in range(n):
            configure(sock, 10, 5, 3)

    def v_setsockopt(n: int) -> None:
        setsockopt = sock.setsockopt
        for _ in range(n):
            setsockopt(TCP, KEEPIDLE, 10)
            setsockopt(TCP, KEEPINTVL, 5)
            setsockopt(TCP, KEEPCNT, 3)
            setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)

    def v_raw_heartbeat(n: int) -> None:
        for _ in range(n):
            raw_heartbeat(fd, 10, 5, 3)

    def v_alive(n: int) -> None:
        for _ in range(n):
            alive(sock)

    def v_alive_fd(n: int) -> None:
        for _ in range(n):
            alive(fd)

    def v_loop_alive(n: int) -> None:
        for _ in range(n):
            lalive(sock)

    def v_loop_process(n: int) -> None:
        for _ in range(n):
            lprocess()

    def v_raw_alive(n: int) -> None:
        for _ in range(n):
            raw_alive(ptr, fd)

    def v_status(n: int) -> None:
        for _ in range(n):
            status(sock)

    def v_raw_status(n: int) -> None:
        for _ in range(n):
            raw_status_ex(fd, ctypes.byref(status_out), status_size)

    def v_tcp_info(n: int) -> None:
        getsockopt = sock.getsockopt
        for _ in range(n):
            getsockopt(TCP, socket.TCP_INFO, 232)

    variants: Dict[str, tuple[Callable[[int], None], int]] = {
        "configure": (v_configure, 2000),
        "setsockopt x4": (v_setsockopt, 2000),
        "raw ctypes heartbeat()": (v_raw_heartbeat, 2000),
        "monitor.alive(sock)": (v_alive, 50000),
        "monitor.alive(fd)": (v_alive_fd, 50000),
        "raw ctypes heartbeat_monitor_alive()": (v_raw_alive, 50000),
        "loop monitor.alive(sock)": (v_loop_alive, 50000),
        "loop monitor.process(), nothing due": (v_loop_process, 20000),
        "status(sock)": (v_status, 5000),
        "raw ctypes heartbeat_status_ex()": (v_raw_status, 5000),
        "sock.getsockopt(TCP_INFO)": (v_tcp_info, 5000),
    }
    for fn, n in variants.values():  # warm up
        fn(n // 10)
    results: Dict[str, List[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, n = variants[name]
            results[name].append(per_call_ns(fn, n))
    mon.close()
    lmon.close()
    for s in (sock, peer, server):
        s.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = statistics.median(c / s for c, s in zip(results["configure"], results["setsockopt x4"]))
    print(f"== Python package (ctypes): per call, thread CPU time, median of {rounds} rounds")
    print(f"libheartbeat {hb.library_version} from {hb.library_path}, Python {sys.version.split()[0]}")
    print()
    print("| variant | ns/call (median) | ns/call (min) |")
    print("|---|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {med[k]:.0f} | {min(v):.0f} |")
    print()
    print(f"python configure ns: {med['configure']:.0f}")
    print(f"python setsockopt x4 ns: {med['setsockopt x4']:.0f}")
    print(f"python raw ctypes heartbeat ns: {med['raw ctypes heartbeat()']:.0f}")
    print(f"python configure ratio: {ratio:.2f}  (configure() / 4 x sock.setsockopt; goal <= 1.5)")
    print(f"python monitor.alive ns: {med['monitor.alive(sock)']:.0f}  (goal <= 1000)")
    print(f"python monitor.alive fd ns: {med['monitor.alive(fd)']:.0f}")
    print(f"python loop monitor.alive ns: {med['loop monitor.alive(sock)']:.0f}  (LoopMonitor)")
    print(f"python loop process ns: {med['loop monitor.process(), nothing due']:.0f}  (LoopMonitor, nothing due)")
    print(f"python raw ctypes alive ns: {med['raw ctypes heartbeat_monitor_alive()']:.0f}")
    # What the package adds to the bare ctypes call (median of per-round
    # differences, measured side by side): the part it controls, steadier
    # than either figure on a noisy host.
    added = statistics.median(
        a - r for a, r in zip(results["monitor.alive(sock)"], results["raw ctypes heartbeat_monitor_alive()"])
    )
    print(f"python monitor.alive added to the raw ctypes call ns: {added:.0f}")
    print(f"python status ns: {med['status(sock)']:.0f}")
    print(f"python raw ctypes status_ex ns: {med['raw ctypes heartbeat_status_ex()']:.0f}")
    print(f"python getsockopt TCP_INFO ns: {med['sock.getsockopt(TCP_INFO)']:.0f}")
    print("(the C calls alone: heartbeat() in the keepalive section, alive() in the monitor section)")


if __name__ == "__main__":
    main()
