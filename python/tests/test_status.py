"""status() on loopback connections in each state, checked against TCP_INFO."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import pickle
import socket
import struct
import time
from typing import Any, List

import pytest

from helpers import Pair, fill, tcp_info, tcp_pair, wait_until

import libheartbeat as hb
from libheartbeat import _abi, _constants, keepalive


def tcp_state(sock: socket.socket) -> int:
    """tcpi_state, the first byte of struct tcp_info, read raw."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def wait_for(sock: socket.socket, peer: hb.Peer, seconds: float = 5.0) -> hb.Status:
    deadline = time.monotonic() + seconds
    while True:
        st = hb.status(sock)
        if st.peer == peer or time.monotonic() > deadline:
            return st
        time.sleep(0.005)


def test_alive(pair: Pair) -> None:
    client, peer = pair
    client.sendall(b"ping")
    assert peer.recv(4) == b"ping"
    st = hb.status(client)
    assert st.peer is hb.Peer.ALIVE
    assert (st.error, st.probes, st.retransmits) == (0, 0, 0)
    assert st.tcp_state == tcp_state(client) == 1  # ESTABLISHED
    assert st.rtt_us > 0
    assert st.last_data_recv_ms < 5000


def test_last_data_recv_ms_grows(pair: Pair) -> None:
    client, peer = pair
    peer.sendall(b"x")
    assert client.recv(1) == b"x"
    time.sleep(0.3)
    assert hb.status(client).last_data_recv_ms >= 250


def test_orderly_close_keeps_data_readable(pair: Pair) -> None:
    client, peer = pair
    peer.sendall(b"bye")
    peer.close()
    st = wait_for(client, hb.Peer.CLOSED)
    assert st.peer is hb.Peer.CLOSED and st.error == 0
    assert st.tcp_state == tcp_state(client) == 8  # CLOSE_WAIT
    assert client.recv(3) == b"bye"  # nothing was consumed
    assert client.recv(1) == b""


def test_reset_reports_the_error_once() -> None:
    client, peer = tcp_pair()
    with client:
        # SO_LINGER 0: close() sends RST.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        st = wait_for(client, hb.Peer.RESET)
        assert st.peer is hb.Peer.RESET and st.error == errno.ECONNRESET
        assert st.tcp_state == 7  # CLOSE
        # The kernel reports a pending error once: it was handed to us.
        again = hb.status(client)
        assert again.peer is hb.Peer.CLOSED and again.error == 0
        assert client.recv(1) == b""


def test_listening_and_unconnected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        st = hb.status(server)
        assert st.peer is hb.Peer.NOT_CONNECTED and st.tcp_state == tcp_state(server) == 10
    with socket.socket() as fresh:
        assert hb.status(fresh).peer is hb.Peer.NOT_CONNECTED


def test_status_is_a_frozen_value(pair: Pair) -> None:
    st = hb.status(pair[0])
    with pytest.raises(AttributeError):
        st.peer = hb.Peer.CLOSED  # type: ignore[misc]
    # status() builds it without Status.__init__: the same value, every
    # field set, nothing else.
    names = [f.name for f in dataclasses.fields(hb.Status)]
    assert sorted(vars(st)) == sorted(names) and len(names) == 11
    same = hb.Status(**{f: getattr(st, f) for f in names})
    assert st == same and repr(st) == repr(same) and hash(st) == hash(same)
    assert pickle.loads(pickle.dumps(st)) == st
    assert dataclasses.replace(st, probes=3).probes == 3


# --- the fields of heartbeat_status_ex() ----------------------------------------


def test_extended_fields_on_a_live_connection(pair: Pair) -> None:
    client, peer = pair
    client.sendall(b"ping")
    assert peer.recv(4) == b"ping"
    peer.sendall(b"pong")
    assert client.recv(4) == b"pong"
    assert wait_until(lambda: tcp_info(client).unacked == 0, 5)
    time.sleep(0.3)
    before = tcp_info(client)
    st = hb.status(client)
    after = tcp_info(client)
    assert st.peer is hb.Peer.ALIVE
    assert st.notsent_bytes == before.notsent_bytes == 0
    assert st.unacked == before.unacked == 0
    if before.snd_wnd is None:
        pytest.skip("the kernel is older than 5.4: no peer window")
    assert st.peer_window == before.snd_wnd == after.snd_wnd
    assert st.peer_window is not None and st.peer_window > 0
    # The times grow between the reads; status() lies between them.
    assert 250 <= before.last_ack_recv <= st.last_ack_recv_ms <= after.last_ack_recv
    assert 250 <= before.last_data_recv <= st.last_data_recv_ms <= after.last_data_recv
    assert st.rtt_us in (before.rtt, after.rtt) and st.probes == before.probes == 0


def test_extended_fields_of_a_listening_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        st = hb.status(server)
        assert st.peer is hb.Peer.NOT_CONNECTED
        assert (st.notsent_bytes, st.unacked) == (0, 0)


def test_status_asks_for_the_whole_struct_and_maps_an_unknown_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel older than 5.4 cannot be had here: the C call is replaced by
    # one that answers as the library does there (peer_window
    # HEARTBEAT_WINDOW_UNKNOWN), and records the size it was given.
    sizes: List[int] = []

    def old_kernel(fd: int, ref: Any, size: ctypes.c_size_t) -> int:
        sizes.append(size.value)
        out = ref._obj
        assert isinstance(out, _abi.StatusExStruct) and fd == 7
        out.peer, out.tcp_state, out.unacked = hb.Peer.ALIVE, 1, 3
        out.peer_window, out.last_ack_recv_ms, out.notsent_bytes = _constants.WINDOW_UNKNOWN, 12, 34
        return 0

    monkeypatch.setattr(keepalive, "_status_ex", old_kernel)
    st = hb.status(7)
    assert sizes == [ctypes.sizeof(_abi.StatusExStruct)] and sizes[0] == 44
    assert st.peer_window is None
    assert (st.peer, st.unacked, st.last_ack_recv_ms, st.notsent_bytes) == (hb.Peer.ALIVE, 3, 12, 34)
    # A state from a newer library keeps its number.
    def newer_library(fd: int, ref: Any, size: ctypes.c_size_t) -> int:
        ref._obj.peer = 42
        return 0

    monkeypatch.setattr(keepalive, "_status_ex", newer_library)
    st = hb.status(7)
    assert st.peer == 42 and st.peer.name == "UNKNOWN(42)" and isinstance(st.peer, hb.Peer)


def wait_stalled(sock: socket.socket) -> hb.Status:
    """status() once the peer's window is shut and it answers the probes."""
    assert wait_until(lambda: hb.status(sock).peer is hb.Peer.STALLED, 5), hb.status(sock)
    return hb.status(sock)


def test_a_reader_that_stops_reading_is_stalled_then_alive(pair: Pair) -> None:
    client, peer = pair
    sent = fill(client)
    st = wait_stalled(client)
    # STALLED for the whole observation (several probe intervals), never
    # PROBING: the peer answers every window probe.
    t0 = time.monotonic()
    samples = 0
    while time.monotonic() - t0 < 1.5:
        st = hb.status(client)
        assert st.peer is hb.Peer.STALLED, st
        samples += 1
        time.sleep(0.01)
    raw = tcp_info(client)
    assert samples > 20
    assert st.peer_window == raw.snd_wnd == 0
    assert st.notsent_bytes > 0 and raw.notsent_bytes > 0
    assert (st.error, st.tcp_state) == (0, 1)
    # The reader reads everything: the window opens and the data flows.
    peer.settimeout(5)
    got = 0
    while got < sent:
        chunk = peer.recv(1 << 20)
        assert chunk, "the connection ended"
        got += len(chunk)
    assert wait_until(lambda: hb.status(client).peer is hb.Peer.ALIVE, 5)
    st = hb.status(client)
    assert st.notsent_bytes == 0 and st.peer_window is not None and st.peer_window > 0


def test_within_ends_a_stalled_reader_unless_it_keeps_slow_readers() -> None:
    # What docs/python.md says of keep_slow_readers, on loopback: the
    # default user timeout (2000 ms for 3000) ends a connection whose peer
    # is alive but not reading; keep_slow_readers=True keeps it.
    ended, kept = tcp_pair(), tcp_pair()
    try:
        hb.within(ended[0], 3000)
        hb.within(kept[0], 3000, keep_slow_readers=True)
        fill(ended[0])
        fill(kept[0])
        wait_stalled(kept[0])
        t0 = time.monotonic()
        states = set()
        while True:  # bounded: 10 s
            st = hb.status(ended[0])
            states.add(st.peer)
            if st.peer is hb.Peer.TIMED_OUT or time.monotonic() - t0 > 10:
                break
            assert hb.status(kept[0]).peer is hb.Peer.STALLED
            time.sleep(0.01)
        assert st.peer is hb.Peer.TIMED_OUT and st.error == errno.ETIMEDOUT, st
        assert hb.Peer.STALLED in states and hb.Peer.PROBING not in states, states
        # The kept one lives on, stalled, past the `ms` of its configuration.
        while time.monotonic() - t0 < 3.0:
            assert hb.status(kept[0]).peer is hb.Peer.STALLED
            time.sleep(0.05)
    finally:
        for s in ended + kept:
            s.close()
