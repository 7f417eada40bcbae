"""status() on loopback connections in each state, checked against TCP_INFO."""

from __future__ import annotations

import errno
import socket
import struct
import time

import pytest

from helpers import Pair, tcp_pair

import libheartbeat as hb


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
    assert st == hb.Status(**{f: getattr(st, f) for f in st.__dataclass_fields__})
