"""Every error path: the exception's type and fields, and nothing changed."""

from __future__ import annotations

import errno
import os
import pickle
import socket
from typing import Any, Iterator

import pytest

from helpers import Pair, check, keepalive_options, strerror

import libheartbeat as hb

C = hb.Code


@pytest.fixture
def configured(pair: Pair) -> Iterator[socket.socket]:
    """A connected socket with known settings, so 'nothing changed' can be checked."""
    client, _ = pair
    hb.apply(client, hb.Config(10, 5, 3, user_timeout_ms=7000))
    yield client
    assert keepalive_options(client) == (1, 10, 5, 3, 7000), "a failed call changed the socket"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((0, 1, 1), C.ERR_IDLE),
        ((32768, 1, 1), C.ERR_IDLE),
        ((-1, 1, 1), C.ERR_IDLE),
        ((2**31, 1, 1), C.ERR_IDLE),  # beyond a C int: saturated, not wrapped
        ((2**32 + 5, 1, 1), C.ERR_IDLE),  # would wrap to 5 in plain ctypes
        ((-(2**32) + 5, 1, 1), C.ERR_IDLE),
        ((1, 0, 1), C.ERR_INTVL),
        ((1, 32768, 1), C.ERR_INTVL),
        ((1, 2**32 + 1, 1), C.ERR_INTVL),
        ((1, 1, 0), C.ERR_CNT),
        ((1, 1, 128), C.ERR_CNT),
        ((1, 1, 2**32 + 3), C.ERR_CNT),
    ],
)
def test_configure_out_of_range(configured: socket.socket, args: tuple[int, int, int], code: hb.Code) -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.configure(configured, *args)
    check(e, code, errno.EINVAL, "heartbeat")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (dict(enabled=2), C.ERR_KEEPALIVE),
        (dict(enabled=-1), C.ERR_KEEPALIVE),
        (dict(idle=0), C.ERR_IDLE),
        (dict(intvl=40000), C.ERR_INTVL),
        (dict(cnt=200), C.ERR_CNT),
        (dict(user_timeout_ms=2**31), C.ERR_USER_TIMEOUT),
        (dict(user_timeout_ms=2**32 - 1), C.ERR_USER_TIMEOUT),
        (dict(user_timeout_ms=2**32), C.ERR_USER_TIMEOUT),  # would wrap to 0
        (dict(user_timeout_ms=-1), C.ERR_USER_TIMEOUT),  # would wrap to 2**32-1
    ],
)
def test_apply_bad_field(configured: socket.socket, fields: dict[str, Any], code: hb.Code) -> None:
    base: dict[str, Any] = dict(idle=1, intvl=1, cnt=1, user_timeout_ms=0, enabled=True)
    base.update(fields)
    with pytest.raises(hb.HeartbeatError) as e:
        hb.apply(configured, hb.Config(**base))
    check(e, code, errno.EINVAL, "heartbeat_apply")


@pytest.fixture(params=["closed", "minus-one", "huge", "pipe", "udp", "unix"])
def bad_fd(request: pytest.FixtureRequest) -> Iterator[tuple[Any, int, int, int]]:
    """(fd-like, errno when setting options, errno when reading them,
    errno of status) for things that are not an open TCP socket."""
    kind = request.param
    if kind == "closed":
        s = socket.socket()
        fd = s.fileno()
        s.close()
        yield fd, errno.EBADF, errno.EBADF, errno.EBADF
    elif kind == "minus-one":
        yield -1, errno.EBADF, errno.EBADF, errno.EBADF
    elif kind == "huge":  # ctypes alone would wrap it to 0 (stdin)
        yield 2**32, errno.EBADF, errno.EBADF, errno.EBADF
    elif kind == "pipe":
        r, w = os.pipe()
        yield r, errno.ENOTSOCK, errno.ENOTSOCK, errno.ENOTSOCK
        os.close(r)
        os.close(w)
    elif kind == "udp":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        yield u, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EOPNOTSUPP
        assert u.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        u.close()
    else:
        a, b = socket.socketpair()
        yield a, errno.EOPNOTSUPP, errno.EOPNOTSUPP, errno.EOPNOTSUPP
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        a.close()
        b.close()


def test_not_a_tcp_socket(bad_fd: tuple[Any, int, int, int]) -> None:
    fd, set_errno, get_errno, status_errno = bad_fd
    with pytest.raises(hb.HeartbeatError) as e:
        hb.configure(fd, 1, 1, 1)
    check(e, C.ERR_IDLE, set_errno, "heartbeat")
    with pytest.raises(hb.HeartbeatError) as e:
        hb.apply(fd, hb.Config(1, 1, 1))
    check(e, C.ERR_IDLE, get_errno, "heartbeat_apply")  # apply reads first
    with pytest.raises(hb.HeartbeatError) as e:
        hb.get(fd)
    check(e, C.ERR_IDLE, get_errno, "heartbeat_get")
    with pytest.raises(hb.HeartbeatError) as e:
        hb.status(fd)
    check(e, C.ERR_TCP_INFO, status_errno, "heartbeat_status")


def test_disable_bad_fds() -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.disable(-1)
    check(e, C.ERR_KEEPALIVE, errno.EBADF, "heartbeat_disable")
    r, w = os.pipe()
    try:
        with pytest.raises(hb.HeartbeatError) as e:
            hb.disable(r)
        check(e, C.ERR_KEEPALIVE, errno.ENOTSOCK, "heartbeat_disable")
    finally:
        os.close(r)
        os.close(w)


def test_closed_socket_object() -> None:
    s = socket.socket()
    s.close()  # fileno() is now -1
    with pytest.raises(hb.HeartbeatError) as e:
        hb.configure(s, 1, 1, 1)
    check(e, C.ERR_IDLE, errno.EBADF, "heartbeat")


def test_wrong_types(pair: Pair) -> None:
    client, _ = pair
    for bad in (None, "3", 3.0, object()):
        with pytest.raises(TypeError):
            hb.configure(bad, 1, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.configure(client, 1.5, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.configure(client, "1", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.apply(client, (1, 1, 1, 1, 0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.apply(client, hb.Config(1.0, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.deadline_ms(1, None, 1)  # type: ignore[arg-type]
    assert keepalive_options(client)[0] == 0, "a refused call changed the socket"


def test_every_code_has_a_name_and_the_library_message() -> None:
    for code in hb.Code:
        if code == C.OK:
            continue
        x = hb.HeartbeatError(code, errno.EIO, "f")
        assert x.name == "HEARTBEAT_" + code.name and x.message == strerror(code)
        assert x.errno == errno.EIO and x.code is code
        y = pickle.loads(pickle.dumps(x))
        assert (type(y), y.code, y.errno, y.function, str(y)) == (type(x), x.code, x.errno, x.function, str(x))


def test_unknown_code_from_a_newer_library() -> None:
    x = hb.HeartbeatError(-99, errno.EINVAL, "heartbeat_future")
    assert int(x.code) == -99 and isinstance(x.code, hb.Code)
    assert x.name == "HEARTBEAT_UNKNOWN(-99)"
    assert x.message == strerror(-99) == "unknown libheartbeat error code"
    assert hb.Peer(42) == 42 and hb.Peer(42).name == "UNKNOWN(42)"
    with pytest.raises(ValueError):
        hb.Peer("alive")  # type: ignore[arg-type]
