"""HeartbeatError, and the helpers that turn C arguments and results into Python."""

from __future__ import annotations

import ctypes
import operator
import os
from typing import Any, Protocol, Tuple, Union

from . import _lib
from ._constants import Code

_strerror = _lib.LIB.heartbeat_strerror


class HeartbeatError(OSError):
    """A libheartbeat call failed.

    An :class:`OSError`, so ``except OSError`` catches it, with the C
    library's report:

    - ``code``: the return code, a :class:`Code` (``Code.ERR_INTVL``, -2)
    - ``name``: its C name (``"HEARTBEAT_ERR_INTVL"``)
    - ``message``: the library's text for it (``heartbeat_strerror()``)
    - ``errno`` / ``strerror``: why, as the failing system call left it
      (``EINVAL`` for an argument refused before any system call)
    - ``function``: the C function that failed (``"heartbeat_apply"``)
    """

    code: Code
    name: str
    message: str
    function: str

    def __init__(self, code: int, errno: int, function: str) -> None:
        super().__init__(errno, os.strerror(errno) if errno else "no errno")
        self.code = Code(code)
        self.name = self.code.c_name
        raw = _strerror(code)
        self.message = raw.decode("utf-8", "replace") if raw else ""
        self.function = function

    def __str__(self) -> str:
        return (
            f"{self.function}: {self.name} ({int(self.code)}): {self.message} "
            f"[Errno {self.errno}] {self.strerror}"
        )

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (int(self.code), self.errno, self.function))


def error(code: int, function: str) -> HeartbeatError:
    """The exception for a failed call, with the errno ctypes saved after it."""
    return HeartbeatError(code, ctypes.get_errno(), function)


class SupportsFileno(Protocol):
    """Anything with a ``fileno()``: a socket.socket, an asyncio transport's
    socket, a file object."""

    def fileno(self) -> int: ...


#: What the functions accept as a connection: a socket object or an int fd.
FdLike = Union[int, SupportsFileno]

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1


def fd_of(sock: FdLike) -> int:
    """The fd of a socket object or int; borrowed, never closed.

    An int beyond the C int range becomes -1 (ctypes would wrap it, maybe
    onto a real fd): the library refuses it as it refuses any negative fd.
    """
    if isinstance(sock, int):
        fd = sock
    else:
        try:
            fileno = sock.fileno
        except AttributeError:
            raise TypeError(
                f"expected a socket (an object with fileno()) or an int fd, not {type(sock).__name__}"
            ) from None
        fd = operator.index(fileno())
    if INT_MIN <= fd <= INT_MAX:
        return fd
    return -1


def c_int(value: int) -> int:
    """``value`` as a C int argument: an int beyond the C range saturates
    (ctypes would wrap it silently), so that the library sees a value that
    is out of range in the same direction and refuses it with its own code.
    Non-integers raise TypeError."""
    if type(value) is not int:
        value = operator.index(value)
    if INT_MIN <= value <= INT_MAX:
        return value
    return INT_MAX if value > 0 else INT_MIN


def c_uint(value: int, negative: int) -> int:
    """``value`` as a C unsigned int: an int above UINT_MAX becomes UINT_MAX,
    a negative one ``negative`` (chosen by the caller as a value that the
    library refuses for the same reason)."""
    if type(value) is not int:
        value = operator.index(value)
    if 0 <= value <= UINT_MAX:
        return value
    return UINT_MAX if value > 0 else negative
