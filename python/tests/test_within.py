"""within() and config_within() on real loopback sockets, read back with getsockopt."""

from __future__ import annotations

import dataclasses
import itertools
import socket
from typing import Tuple

import pytest

from helpers import Pair, keepalive_options, tcp_pair

import libheartbeat as hb

MIN, MAX = hb.WITHIN_MIN_MS, hb.WITHIN_MAX_MS

# The examples of heartbeat_config_within() in include/heartbeat.h and
# docs/keepalive.md: ms -> (idle, intvl, cnt, user_timeout_ms).
DOCUMENTED = [(3000, (1, 1, 1, 2000)), (5000, (1, 1, 3, 4000)), (10000, (5, 1, 3, 8000))]


def test_the_range() -> None:
    assert (MIN, MAX) == (2785, 24 * 3600 * 1000)


@pytest.mark.parametrize(("ms", "want"), DOCUMENTED)
def test_config_within_documented_examples(ms: int, want: Tuple[int, int, int, int]) -> None:
    idle, intvl, cnt, user_timeout_ms = want
    assert hb.config_within(ms) == hb.Config(idle, intvl, cnt, user_timeout_ms=user_timeout_ms, enabled=True)
    assert hb.config_within(ms, keep_slow_readers=True) == hb.Config(idle, intvl, cnt, user_timeout_ms=0)


def test_config_within_over_the_range() -> None:
    # What the package passes through for any ms: a deadline in whole
    # seconds, at most ms, never decreasing as ms grows, with the user
    # timeout equal to it (0 when slow readers are kept).
    previous = 0
    for ms in itertools.chain(range(MIN, 200_000, 997), [10**6, 10**7, MAX - 1, MAX]):
        cfg = hb.config_within(ms)
        deadline = cfg.deadline_ms
        assert cfg.enabled and cfg.user_timeout_ms == deadline, (ms, cfg)
        assert 2000 <= deadline <= ms and deadline % 1000 == 0, (ms, cfg)
        assert deadline >= previous, (ms, cfg)
        previous = deadline
        assert hb.IDLE_MIN <= cfg.idle <= hb.IDLE_MAX and hb.INTVL_MIN <= cfg.intvl <= hb.INTVL_MAX
        assert hb.CNT_MIN <= cfg.cnt <= hb.CNT_MAX
        assert hb.config_within(ms, keep_slow_readers=True) == dataclasses.replace(cfg, user_timeout_ms=0)


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep_slow_readers"])
@pytest.mark.parametrize("ms", [MIN, 3000, 5000, 10000, 60000, MAX])
def test_within_sets_what_config_within_returns(pair: Pair, ms: int, keep: bool) -> None:
    client, _ = pair
    want = hb.config_within(ms, keep_slow_readers=keep)
    assert keepalive_options(client)[0] == 0
    hb.within(client, ms, keep_slow_readers=keep)
    assert keepalive_options(client) == (1, want.idle, want.intvl, want.cnt, want.user_timeout_ms)
    assert hb.get(client) == want


def test_keep_slow_readers_takes_the_user_timeout_away(pair: Pair) -> None:
    client, _ = pair
    hb.within(client, 10000)
    assert keepalive_options(client) == (1, 5, 1, 3, 8000)
    hb.within(client, 10000, keep_slow_readers=True)
    assert keepalive_options(client) == (1, 5, 1, 3, 0)
    hb.within(client, 5000)
    assert keepalive_options(client) == (1, 1, 1, 3, 4000)


def test_keep_slow_readers_is_a_truth_value(pair: Pair) -> None:
    # The Python API can pass only flag 0 or HEARTBEAT_WITHIN_KEEP_SLOW_READERS:
    # an unknown flag (HEARTBEAT_ERR_INVALID in C) cannot be reached from here.
    client, _ = pair
    hb.within(client, 5000, keep_slow_readers=2)  # type: ignore[arg-type]
    assert keepalive_options(client) == (1, 1, 1, 3, 0)
    hb.within(client, 5000, keep_slow_readers=0)  # type: ignore[arg-type]
    assert keepalive_options(client) == (1, 1, 1, 3, 4000)


def test_within_an_int_fd_and_the_socket_is_borrowed(pair: Pair) -> None:
    client, peer = pair
    hb.within(client.fileno(), 3000)
    assert keepalive_options(client) == (1, 1, 1, 1, 2000)
    client.sendall(b"x")
    assert peer.recv(1) == b"x"


def test_within_on_a_listening_socket_is_inherited_by_accept() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        hb.within(server, 10000)
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                assert keepalive_options(peer) == (1, 5, 1, 3, 8000)
                assert keepalive_options(client)[0] == 0


def test_within_ipv6() -> None:
    try:
        client, peer = tcp_pair(socket.AF_INET6)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    with client, peer:
        hb.within(client, 5000, keep_slow_readers=True)
        assert keepalive_options(client) == (1, 1, 1, 3, 0)


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        hb.config_within(5000, True)  # type: ignore[call-arg]
    with socket.socket() as s, pytest.raises(TypeError):
        hb.within(s, 5000, True)  # type: ignore[call-arg]
