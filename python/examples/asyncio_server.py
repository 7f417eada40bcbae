#!/usr/bin/env python3
"""An asyncio streams server that finds silent clients with a LoopMonitor.

The server sends ``PING\\n`` to every client every ``--interval-ms`` through
the client's StreamWriter, counts any line it reads from a client as a sign
of life, and declares a client dead after ``--timeout-ms`` of silence: it
logs it and closes the connection. No thread: the monitor runs inside the
event loop (``LoopMonitor.attach()``), so its callbacks use the writer
directly. Other lines are answered with ``OK <line>``, through the same
writer: pings and replies never cut into each other.

The client mode answers every ``PING`` with ``PONG`` (``--answer-s``
limits for how long; afterwards it stays connected and reads nothing);
``--silent`` connects and never answers from the start.

    python3 asyncio_server.py server --port 7070 &
    python3 asyncio_server.py client 127.0.0.1 7070 --seconds 10
    python3 asyncio_server.py client 127.0.0.1 7070 --silent --seconds 10

The server logs ``dead`` for the silent client about 3 s after it
connected (and for an answering client stopped with ``kill -STOP``, about
3 s after its last pong). Every log line the server writes about a client
starts with ``client HOST:PORT``; a death line also says how long the
client had been silent and when it was declared dead (``time.monotonic()``,
for the test in python/tests/test_asyncio.py).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import sys
import time
from typing import List, Optional

import libheartbeat as hb

log = logging.getLogger("asyncio_server")

#: Bytes a client may leave unread in the server's write buffer before
#: pings are skipped (a skipped ping is not a death; silence still is).
BACKLOG_LIMIT = 64 * 1024


class Client:
    """One connection: what the monitor hands to the callbacks."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        host, port = writer.get_extra_info("peername")[:2]
        self.name = f"{host}:{port}"
        self.last_heard = time.monotonic()  # watch() counts as heard from
        self.dead = False


class Server:
    def __init__(self, interval_ms: int, timeout_ms: int) -> None:
        # Callbacks run inside mon.process(), on the loop's thread.
        self.mon = hb.LoopMonitor(interval_ms, timeout_ms, ping=self.ping, on_dead=self.on_dead)
        self.clients: List[Client] = []

    @staticmethod
    def ping(client: Client) -> None:
        writer = client.writer
        if writer.is_closing():  # the transport is gone: a broken connection
            raise ConnectionResetError(errno.ECONNRESET, "connection closing")
        if writer.transport.get_write_buffer_size() > BACKLOG_LIMIT:
            raise BlockingIOError(errno.EAGAIN, "client not reading: ping skipped")
        writer.write(b"PING\n")  # queued behind our own writes, never inside one

    def on_dead(self, client: Client, reason: hb.DeadReason, err: int) -> None:
        # No longer watched: closing it is ours to do, and safe right here.
        client.dead = True
        silent_ms = (time.monotonic() - client.last_heard) * 1000
        why = reason.name if not err else f"{reason.name} {errno.errorcode.get(err, err)}"
        log.info(
            "client %s dead: %s, silent for %.0f ms (monotonic %.6f)",
            client.name,
            why,
            silent_ms,
            time.monotonic(),
        )
        client.writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        client = Client(writer)
        self.mon.watch(sock, conn=client)
        log.info("client %s connected", client.name)
        try:
            while True:
                line = await reader.readline()
                if not line or client.dead:
                    break  # EOF, or on_dead closed it (a line may have been buffered)
                client.last_heard = time.monotonic()
                self.mon.alive(sock)
                if line.rstrip() != b"PONG":
                    writer.write(b"OK " + line)
        except ConnectionError as e:
            log.info("client %s: %s", client.name, e)
        finally:
            # No await between the read that ended and this unwatch(): when
            # the connection broke, asyncio closed the socket in a callback
            # that woke this task, and the loop runs this task before any
            # other readiness callback (the monitor's process() included).
            if not client.dead:
                self.mon.unwatch(sock)
                log.info("client %s closed the connection", client.name)
                writer.close()

    async def serve(self, host: str, port: int, seconds: Optional[float]) -> None:
        server = await asyncio.start_server(self.handle, host, port)
        self.mon.attach()  # the running loop: add_reader(mon.fileno(), mon.process)
        try:
            bound = server.sockets[0].getsockname()
            log.info("listening on %s %d", bound[0], bound[1])
            async with server:
                if seconds is None:
                    await server.serve_forever()
                else:
                    await asyncio.sleep(seconds)
        finally:
            self.mon.close()  # detaches first, then frees (and closes its fd)


async def client_main(host: str, port: int, silent: bool, seconds: float, answer_s: Optional[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    me = writer.get_extra_info("sockname")
    print(f"connected from {me[0]}:{me[1]}", flush=True)
    end = time.monotonic() + seconds
    answer_until = end if answer_s is None else time.monotonic() + answer_s
    pings = 0
    try:
        if not silent:
            while time.monotonic() < answer_until:
                try:
                    line = await asyncio.wait_for(reader.readline(), max(0.0, answer_until - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if not line:
                    print("server closed the connection", flush=True)
                    return 1
                if line == b"PING\n":
                    pings += 1
                    sent = time.monotonic()  # before the write: the server hears it later
                    writer.write(b"PONG\n")
                    print(f"pong {pings} at {sent:.6f}", flush=True)
        print(f"silent from {time.monotonic():.6f}, {pings} pings answered", flush=True)
        await asyncio.sleep(max(0.0, end - time.monotonic()))  # connected, reading nothing
    except ConnectionError as e:
        print(f"connection lost: {e}", flush=True)
        return 1
    finally:
        writer.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    s.add_argument("--interval-ms", type=int, default=1000)
    s.add_argument("--timeout-ms", type=int, default=3000)
    s.add_argument("--seconds", type=float, default=None, help="run that long (default: forever)")
    c = sub.add_parser("client")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--silent", action="store_true", help="never answer (nor read)")
    c.add_argument("--seconds", type=float, default=10.0, help="stay connected that long")
    c.add_argument("--answer-s", type=float, default=None, help="answer pings only that long")
    args = p.parse_args(argv)
    if args.mode == "server":
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        try:
            asyncio.run(Server(args.interval_ms, args.timeout_ms).serve(args.host, args.port, args.seconds))
        except KeyboardInterrupt:
            pass
        return 0
    return asyncio.run(client_main(args.host, args.port, args.silent, args.seconds, args.answer_s))


if __name__ == "__main__":
    sys.exit(main())
