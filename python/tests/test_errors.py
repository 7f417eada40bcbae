"""Every error path: the exception's type and fields, and nothing changed."""

from __future__ import annotations

import errno
import json
import os
import pickle
import socket
import subprocess
import sys
from typing import Any, Dict, Iterator, Optional

import pytest

from helpers import REPO, SRC, Pair, check, keepalive_options, strerror

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


OUT_OF_RANGE_MS = [
    0,
    1,
    hb.WITHIN_MIN_MS - 1,
    hb.WITHIN_MAX_MS + 1,
    2**31,
    2**32 - 1,  # UINT_MAX
    2**32,  # would wrap to 0 in plain ctypes
    2**32 + 5000,  # would wrap to 5000, a valid deadline: saturated instead
    -1,  # would wrap to UINT_MAX
    -(2**32) + 5000,  # would wrap to 5000
    -(2**70),
]


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep_slow_readers"])
@pytest.mark.parametrize("ms", OUT_OF_RANGE_MS)
def test_within_out_of_range(configured: socket.socket, ms: int, keep: bool) -> None:
    with pytest.raises(hb.HeartbeatError) as e:
        hb.within(configured, ms, keep_slow_readers=keep)
    check(e, C.ERR_WITHIN, errno.EINVAL, "heartbeat_within")
    with pytest.raises(hb.HeartbeatError) as e:
        hb.config_within(ms, keep_slow_readers=keep)
    check(e, C.ERR_WITHIN, errno.EINVAL, "heartbeat_config_within")


def test_within_edges_are_accepted(configured: socket.socket) -> None:
    # The two ends of the range are valid: the refusals above are not a
    # range off by one. (Then back to the fixture's settings.)
    for ms in (hb.WITHIN_MIN_MS, hb.WITHIN_MAX_MS):
        hb.within(configured, ms)
        assert keepalive_options(configured)[4] == hb.config_within(ms).user_timeout_ms
    hb.apply(configured, hb.Config(10, 5, 3, user_timeout_ms=7000))


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
    check(e, C.ERR_TCP_INFO, status_errno, "heartbeat_status_ex")
    for keep in (False, True):
        with pytest.raises(hb.HeartbeatError) as e:
            hb.within(fd, 5000, keep_slow_readers=keep)
        check(e, C.ERR_IDLE, get_errno, "heartbeat_within")  # within reads first, as apply
        # ms is checked before the fd is touched.
        with pytest.raises(hb.HeartbeatError) as e:
            hb.within(fd, 0, keep_slow_readers=keep)
        check(e, C.ERR_WITHIN, errno.EINVAL, "heartbeat_within")


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
    for ms in (5000.0, "5000", None):
        with pytest.raises(TypeError):
            hb.within(client, ms)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            hb.config_within(ms)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hb.within(None, 5000)  # type: ignore[arg-type]
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


def mptcp_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)  # IPPROTO_MPTCP
    except OSError as e:
        pytest.skip(f"no MPTCP: {e}")


def test_within_on_mptcp_needs_keep_slow_readers() -> None:
    # MPTCP has no TCP_USER_TIMEOUT: the default within() is refused and
    # changes nothing; keep_slow_readers (no user timeout) works.
    with mptcp_socket() as s:
        before = hb.get(s)
        with pytest.raises(hb.HeartbeatError) as e:
            hb.within(s, 5000)
        check(e, C.ERR_USER_TIMEOUT, errno.EOPNOTSUPP, "heartbeat_within")
        assert hb.get(s) == before
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        hb.within(s, 5000, keep_slow_readers=True)
        assert hb.get(s) == hb.config_within(5000, keep_slow_readers=True)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3


# --- options refused by the kernel: the fault injector -------------------------

FAULTINJECT = REPO / "build" / "c-tests" / "faultinject.so"
needs_faultinject = pytest.mark.skipif(
    not FAULTINJECT.exists(), reason="build/c-tests/faultinject.so is not built (make test builds it)"
)

# Run in a fresh interpreter under LD_PRELOAD=faultinject.so (see
# c-tests/core/faultinject.c): within(5000) on a fresh TCP socket, with the
# first setsockopt() of one option refused; prints what was raised and the
# five options before and after, as read by getsockopt (the injector
# refuses only the setsockopt).
FAULT_CHILD = """
import json, os, socket, sys
import libheartbeat as hb

def opts(s):
    return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)]

s = socket.socket()
out = {"before": opts(s)}
os.environ["HEARTBEAT_FAULT"] = sys.argv[1]
try:
    hb.within(s, 5000)
except hb.HeartbeatError as e:
    out.update(code=int(e.code), name=e.name, errno=e.errno, function=e.function, message=e.message)
os.environ["HEARTBEAT_FAULT"] = ""
out["after"] = opts(s)
print(json.dumps(out))
"""


def run_fault_child(spec: str, namespace_idle: Optional[int] = None) -> Dict[str, Any]:
    cmd = [sys.executable, "-c", FAULT_CHILD, spec]
    if namespace_idle is not None:
        # A private network namespace (gone with its process) whose new
        # sockets read idle namespace_idle, beyond what setsockopt accepts.
        if subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode != 0:
            pytest.skip("cannot create a network namespace (unshare -n): needs root")
        setup = f'echo {namespace_idle} >/proc/sys/net/ipv4/tcp_keepalive_time && exec "$@"'
        cmd = ["unshare", "-n", "sh", "-c", setup, "sh"] + cmd
    env = dict(os.environ, LD_PRELOAD=str(FAULTINJECT), HEARTBEAT_FAULT="", PYTHONPATH=str(SRC))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    result: Dict[str, Any] = json.loads(r.stdout)
    return result


@needs_faultinject
@pytest.mark.parametrize(
    ("option", "code", "err"),
    [
        ("TCP_KEEPIDLE", C.ERR_IDLE, errno.EPERM),
        ("TCP_KEEPCNT", C.ERR_CNT, errno.ENOBUFS),
        ("TCP_USER_TIMEOUT", C.ERR_USER_TIMEOUT, errno.EACCES),
        ("SO_KEEPALIVE", C.ERR_KEEPALIVE, errno.ENOMEM),
    ],
)
def test_within_refused_half_way_changes_nothing(option: str, code: hb.Code, err: int) -> None:
    got = run_fault_child(f"set:{option}:1:{err}")
    assert (got.get("code"), got.get("errno"), got.get("function")) == (code, err, "heartbeat_within"), got
    assert got["name"] == code.c_name and got["message"] == strerror(code)
    assert got["after"] == got["before"], "within() was not all or nothing"


@needs_faultinject
def test_within_rollback_that_cannot_be_exact_is_err_rollback() -> None:
    # In a namespace whose sockets read idle 40000 (setsockopt accepts at
    # most 32767), SO_KEEPALIVE refused last: idle cannot be set back.
    got = run_fault_child(f"set:SO_KEEPALIVE:1:{errno.ENOMEM}", namespace_idle=40000)
    assert got["before"][0] == 40000, got
    assert (got.get("code"), got.get("errno"), got.get("function")) == (
        C.ERR_ROLLBACK,
        errno.ENOMEM,
        "heartbeat_within",
    ), got
    assert got["name"] == "HEARTBEAT_ERR_ROLLBACK" and got["message"] == strerror(C.ERR_ROLLBACK)
    # Each option holds its previous or its new value; idle is the new one.
    cfg = hb.config_within(5000)
    new = [cfg.idle, cfg.intvl, cfg.cnt, cfg.user_timeout_ms, 1]
    assert all(a in (b, n) for a, b, n in zip(got["after"], got["before"], new)), got
    assert got["after"][0] == cfg.idle
