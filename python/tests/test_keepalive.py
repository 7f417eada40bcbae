"""Keepalive functions on real loopback sockets, read back with getsockopt."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from helpers import Pair, keepalive_options, tcp_pair

import libheartbeat as hb


def test_configure_sets_the_four_options(pair: Pair) -> None:
    client, _ = pair
    hb.configure(client, 10, 5, 3)
    assert keepalive_options(client)[:4] == (1, 10, 5, 3)
    hb.configure(client, idle=hb.IDLE_MAX, intvl=hb.INTVL_MAX, cnt=hb.CNT_MAX)
    assert keepalive_options(client)[:4] == (1, 32767, 32767, 127)
    hb.configure(client, hb.IDLE_MIN, hb.INTVL_MIN, hb.CNT_MIN)
    assert keepalive_options(client)[:4] == (1, 1, 1, 1)


def test_an_int_fd_and_any_object_with_fileno(pair: Pair) -> None:
    client, _ = pair
    hb.configure(client.fileno(), 11, 6, 4)
    assert keepalive_options(client)[:4] == (1, 11, 6, 4)

    class Wrapper:
        def fileno(self) -> int:
            return client.fileno()

    hb.configure(Wrapper(), 12, 7, 5)
    assert keepalive_options(client)[:4] == (1, 12, 7, 5)
    assert hb.get(Wrapper()) == hb.get(client.fileno()) == hb.Config(12, 7, 5)


def test_the_socket_is_borrowed(pair: Pair) -> None:
    client, peer = pair
    hb.configure(client, 10, 5, 3)
    hb.apply(client, hb.Config(2, 1, 2))
    hb.get(client)
    hb.status(client)
    hb.disable(client)
    client.sendall(b"x")
    assert peer.recv(1) == b"x"
    assert client.fileno() >= 0


def test_get_set_get_with_apply(pair: Pair) -> None:
    client, _ = pair
    before = hb.get(client)
    assert before.enabled is False
    assert keepalive_options(client) == (0, before.idle, before.intvl, before.cnt, before.user_timeout_ms)
    want = hb.Config(idle=2, intvl=1, cnt=2, user_timeout_ms=hb.deadline_ms(2, 1, 2))
    hb.apply(client, want)
    assert keepalive_options(client) == (1, 2, 1, 2, 4000)
    assert hb.get(client) == want
    off = dataclasses.replace(want, enabled=False, user_timeout_ms=0)
    hb.apply(client, off)
    assert keepalive_options(client) == (0, 2, 1, 2, 0)
    assert hb.get(client) == off


def test_config_fields_and_types(pair: Pair) -> None:
    client, _ = pair
    hb.apply(client, hb.Config(idle=7, intvl=3, cnt=9, user_timeout_ms=2**31 - 1))
    got = hb.get(client)
    assert (got.idle, got.intvl, got.cnt, got.user_timeout_ms, got.enabled) == (7, 3, 9, 2**31 - 1, True)
    assert isinstance(got.enabled, bool)
    assert got.deadline_ms == 34000
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.idle = 1  # type: ignore[misc]


def test_disable_keeps_the_timers(pair: Pair) -> None:
    client, _ = pair
    hb.configure(client, 10, 5, 3)
    hb.disable(client)
    assert keepalive_options(client)[:4] == (0, 10, 5, 3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        hb.disable(udp)  # the kernel takes SO_KEEPALIVE on any socket
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    finally:
        udp.close()


def test_listening_socket_is_inherited_by_accept() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        hb.configure(server, 20, 4, 6)
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                assert keepalive_options(peer)[:4] == (1, 20, 4, 6)
                assert keepalive_options(client)[0] == 0


def test_ipv6() -> None:
    try:
        client, peer = tcp_pair(socket.AF_INET6)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    with client, peer:
        hb.apply(client, hb.Config(3, 2, 1, user_timeout_ms=5000))
        assert keepalive_options(client) == (1, 3, 2, 1, 5000)


def read_proc(name: str) -> int:
    return int(Path("/proc/sys/net/ipv4", name).read_text().split()[0])


def test_system_defaults_are_procs() -> None:
    d = hb.system_defaults()
    assert d == hb.Config(
        idle=read_proc("tcp_keepalive_time"),
        intvl=read_proc("tcp_keepalive_intvl"),
        cnt=read_proc("tcp_keepalive_probes"),
        user_timeout_ms=0,
        enabled=False,
    )


def test_untouched_socket_reads_as_system_defaults(pair: Pair) -> None:
    client, _ = pair
    assert hb.get(client) == hb.system_defaults()


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((10, 5, 3), 25000),
        ((2, 1, 2), 4000),
        ((0, 0, 0), 0),
        ((-5, 1, 1), 1000),  # negative counts as 0
        ((1, -1, 7), 1000),
        ((2**31 - 1, 2**31 - 1, 2**31 - 1), 2**32 - 1),  # saturates
        ((2**40, 0, 0), 2**32 - 1),  # beyond a C int: still saturates
        ((-(2**40), 1, 1), 1000),  # beyond a C int, negative: 0
    ],
)
def test_deadline_ms(args: tuple[int, int, int], want: int) -> None:
    assert hb.deadline_ms(*args) == want
    assert isinstance(hb.deadline_ms(*args), int)
