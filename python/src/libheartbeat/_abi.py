"""The C library's ABI, and how it is found, checked and bound.

No side effects and no imports from the package: ``_lib`` calls
:func:`load` once; the tests also run this file on its own, to search for
the library in a clean interpreter.

Everything the package knows about ``libheartbeat.so`` is declared here: the
shapes of the C structs, the callback types, and the prototype of every
function. ``tests/test_header.py`` compares all of it with
``include/heartbeat.h`` (names, field order, offsets and sizes from a compiled
C program, argument and result types), so the two cannot drift apart.
The header itself is not needed at run time.

The library is searched for in this order (:func:`load`):

1. ``$HEARTBEAT_LIBRARY``: an explicit path; if it is set, nothing else is
   tried.
2. The dynamic loader's own search for the soname ``libheartbeat.so.0``
   (``LD_LIBRARY_PATH``, the ldconfig cache, ``/lib``, ``/usr/lib``): no
   subprocess, so the common case costs one ``dlopen()``.
3. ``ctypes.util.find_library("heartbeat")`` (ldconfig's cache, then the
   compiler's and linker's search paths).
4. ``libheartbeat.so.0`` in the usual install prefixes
   (:func:`default_dirs`): this is what finds a ``make install`` into
   ``/usr/local`` on which ``ldconfig`` was never run.

A candidate is used only if it loads, says through ``heartbeat_version()``
that its major version is :data:`MAJOR`, and exports every function bound
below; otherwise the search goes on, and if nothing fits, :class:`LibraryError`
lists every candidate and why it was refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import sysconfig
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

#: The library's major version this package is written for: the one in the
#: soname. Within a major version the C ABI only grows (codes are never
#: renumbered, structs never change), so any 0.x.y library that exports the
#: functions below works.
MAJOR = 0
#: The file name the loader looks for.
SONAME = f"libheartbeat.so.{MAJOR}"
#: The environment variable that names the library's path explicitly.
ENV = "HEARTBEAT_LIBRARY"


class LibraryError(ImportError):
    """libheartbeat could not be loaded, or no candidate was usable.

    Raised when ``import libheartbeat`` runs. ``tried`` lists every
    candidate as ``(where, why it was refused)``, in search order; the
    message says the same in words.
    """

    def __init__(self, message: str, tried: Sequence[Tuple[str, str]]) -> None:
        super().__init__(message)
        self.tried: List[Tuple[str, str]] = list(tried)


# --- the C types ---------------------------------------------------------

c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_ulong = ctypes.c_ulong


class ConfigStruct(ctypes.Structure):
    """struct heartbeat_config."""

    _fields_ = [
        ("enabled", c_int),
        ("idle", c_int),
        ("intvl", c_int),
        ("cnt", c_int),
        ("user_timeout_ms", c_uint),
    ]


class StatusStruct(ctypes.Structure):
    """struct heartbeat_status."""

    _fields_ = [
        ("peer", c_int),
        ("error", c_int),
        ("probes", c_uint),
        ("retransmits", c_uint),
        ("last_data_recv_ms", c_uint),
        ("rtt_us", c_uint),
        ("tcp_state", c_int),
    ]


class StatusExStruct(ctypes.Structure):
    """struct heartbeat_status_ex: struct heartbeat_status's seven fields,
    then four more. Passed to heartbeat_status_ex() with its size, so the
    library writes exactly this many bytes whatever its own version."""

    _fields_ = StatusStruct._fields_ + [
        ("notsent_bytes", c_uint),
        ("unacked", c_uint),
        ("peer_window", c_uint),
        ("last_ack_recv_ms", c_uint),
    ]


#: heartbeat_ping_fn: int (*)(struct heartbeat_monitor *, int fd, void *user)
PING_FN = ctypes.CFUNCTYPE(c_int, ctypes.c_void_p, c_int, ctypes.c_void_p)
#: heartbeat_dead_fn: void (*)(struct heartbeat_monitor *, int fd, int reason,
#: int error, void *user)
DEAD_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, c_int, c_int, c_int, ctypes.c_void_p)


class MonitorOptionsStruct(ctypes.Structure):
    """struct heartbeat_monitor_options."""

    _fields_ = [
        ("interval_ms", c_uint),
        ("timeout_ms", c_uint),
        ("ping_data", ctypes.c_void_p),
        ("ping_len", ctypes.c_size_t),
        ("ping_cb", PING_FN),
        ("dead_cb", DEAD_FN),
        ("user", ctypes.c_void_p),
    ]


#: HEARTBEAT_LATE_BUCKETS, the length of heartbeat_monitor_stats.ping_late.
LATE_BUCKETS = 20


class MonitorStatsStruct(ctypes.Structure):
    """struct heartbeat_monitor_stats."""

    _fields_ = [
        ("watched", c_ulong),
        ("pings", c_ulong),
        ("pings_blocked", c_ulong),
        ("deaths", c_ulong),
        ("wakeups", c_ulong),
        ("ping_late_max_us", c_ulong),
        ("ping_late", c_ulong * LATE_BUCKETS),
    ]


_P = ctypes.POINTER
_VP = ctypes.c_void_p  # struct heartbeat_monitor * (opaque)

#: Every C function of the library, bound: name -> (result type, argument
#: types). A function added to the library gets one line here and one
#: wrapper. All are required: a library that lacks one (a 0.x built before
#: it was added, such as one without heartbeat_status_ex() and
#: heartbeat_within()) is refused at import, naming what it lacks, rather
#: than accepted with functions that fail later or status fields that read
#: as unknown (and one without the thread-free monitor's four functions is
#: refused too, though the threaded Monitor would work with it: one rule,
#: "the package needs its whole header", says what a library must have).
#: Functions to be accepted as missing would go into OPTIONAL
#: (their wrapper then checks ``LIB`` for the attribute); none so far.
#: heartbeat_status() is bound but not called: status() uses
#: heartbeat_status_ex(), which reports the same seven fields and more.
FUNCTIONS: Dict[str, Tuple[Optional[type], List[type]]] = {
    "heartbeat": (c_int, [c_int, c_int, c_int, c_int]),
    "heartbeat_disable": (c_int, [c_int]),
    "heartbeat_get": (c_int, [c_int, _P(ConfigStruct)]),
    "heartbeat_apply": (c_int, [c_int, _P(ConfigStruct)]),
    "heartbeat_system_defaults": (c_int, [_P(ConfigStruct)]),
    "heartbeat_deadline_ms": (c_uint, [c_int, c_int, c_int]),
    "heartbeat_strerror": (ctypes.c_char_p, [c_int]),
    "heartbeat_version": (ctypes.c_char_p, []),
    "heartbeat_status": (c_int, [c_int, _P(StatusStruct)]),
    "heartbeat_status_ex": (c_int, [c_int, _P(StatusExStruct), ctypes.c_size_t]),
    "heartbeat_config_within": (c_int, [c_uint, c_uint, _P(ConfigStruct)]),
    "heartbeat_within": (c_int, [c_int, c_uint, c_uint]),
    "heartbeat_monitor_new": (_VP, [_P(MonitorOptionsStruct), _P(c_int)]),
    "heartbeat_monitor_watch": (c_int, [_VP, c_int]),
    "heartbeat_monitor_alive": (c_int, [_VP, c_int]),
    "heartbeat_monitor_unwatch": (c_int, [_VP, c_int]),
    "heartbeat_monitor_last_heard_ms": (c_int, [_VP, c_int, _P(c_ulong)]),
    "heartbeat_monitor_stats": (c_int, [_VP, _P(MonitorStatsStruct)]),
    "heartbeat_monitor_free": (None, [_VP]),
    "heartbeat_monitor_new_loop": (_VP, [_P(MonitorOptionsStruct), _P(c_int)]),
    "heartbeat_monitor_fd": (c_int, [_VP]),
    "heartbeat_monitor_timeout_ms": (c_int, [_VP]),
    "heartbeat_monitor_process": (c_int, [_VP]),
}
OPTIONAL: FrozenSet[str] = frozenset()
#: Functions bound without ctypes argtypes, for speed: argtypes convert each
#: argument through a from_param() call (measured here: 100-170 ns per
#: argument, more than the C function itself for heartbeat_monitor_alive).
#: Their wrappers pass only what ctypes converts exactly by itself: ints
#: already brought into the C int range (_errors.fd_of, _errors.c_int), a
#: ctypes.c_void_p or None for the monitor, byref() of the right struct, and
#: a ready ctypes.c_size_t for a size_t (a bare int is passed as a C int,
#: which the calling convention does not promise to widen to a size_t).
UNCHECKED: FrozenSet[str] = frozenset({"heartbeat", "heartbeat_status_ex", "heartbeat_monitor_alive"})
#: Functions called without releasing the GIL (through a ctypes.PyDLL view
#: of the same library): each is lock-free and makes no system call, so
#: holding the GIL for its ~30 ns is cheaper than dropping and retaking it.
#: Every other function releases the GIL (ctypes.CDLL), which those that
#: wait for the monitor thread (unwatch, free) need: see monitor.py.
KEEPS_GIL: FrozenSet[str] = frozenset({"heartbeat_monitor_alive"})


# --- finding the library ---------------------------------------------------


def default_dirs() -> List[str]:
    """The install prefixes searched last, in order.

    ``sys.prefix/lib`` first (a ``make install PREFIX=$VIRTUAL_ENV`` or a
    conda environment), then ``/usr/local`` (``make install``'s default
    PREFIX), then the system's library directories, multiarch ones
    included.
    """
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [os.path.join(sys.prefix, "lib"), "/usr/local/lib", "/usr/local/lib64"]
    if arch:
        dirs += [f"/usr/local/lib/{arch}", f"/usr/lib/{arch}", f"/lib/{arch}"]
    dirs += ["/usr/lib64", "/usr/lib", "/lib64", "/lib"]
    seen: List[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


class _Refused(Exception):
    pass


def _open(name: str) -> ctypes.CDLL:
    """dlopen() a candidate and check that it is a compatible libheartbeat.

    CDLL, not PyDLL: every call releases the GIL, so that a call that waits
    for the monitor thread (heartbeat_monitor_free, _unwatch) lets that
    thread run its Python callbacks meanwhile. use_errno: ctypes saves errno
    right after each call, read with ctypes.get_errno().
    """
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise _Refused(str(e)) from None
    try:
        version_fn = lib.heartbeat_version
    except AttributeError:
        raise _Refused("not libheartbeat: it has no heartbeat_version()") from None
    version_fn.restype = ctypes.c_char_p
    version_fn.argtypes = []
    raw = version_fn()
    version = raw.decode("ascii", "replace") if raw else ""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise _Refused(f"heartbeat_version() returned {version!r}, not MAJOR.MINOR.PATCH") from None
    if major != MAJOR:
        raise _Refused(
            f"version {version} has major version {major}; this package "
            f"(libheartbeat {MAJOR}.x) needs a {MAJOR}.x library"
        )
    missing = [f for f in FUNCTIONS if f not in OPTIONAL and not hasattr(lib, f)]
    if missing:
        raise _Refused(f"version {version} lacks {', '.join(missing)} (too old?)")
    gil_view = ctypes.PyDLL(name, handle=lib._handle, use_errno=True)
    for fname, (restype, argtypes) in FUNCTIONS.items():
        if hasattr(lib, fname):
            fn = getattr(gil_view if fname in KEEPS_GIL else lib, fname)
            setattr(lib, fname, fn)
            fn.restype = restype
            if fname not in UNCHECKED:
                fn.argtypes = argtypes
    return lib


def load(
    environ: Mapping[str, str] = os.environ,
    dirs: Optional[Sequence[str]] = None,
    find: Callable[[str], Optional[str]] = ctypes.util.find_library,
) -> Tuple[ctypes.CDLL, str]:
    """Find and load a compatible libheartbeat; return it and where it was found.

    ``environ``, ``dirs`` (default :func:`default_dirs`) and ``find``
    (default ``ctypes.util.find_library``) are parameters so that the search
    can be tested; the package calls ``load()`` once, at import.

    Raises :class:`LibraryError` naming every place searched.
    """
    explicit = environ.get(ENV, "")
    if explicit:
        try:
            return _open(explicit), explicit
        except _Refused as e:
            raise LibraryError(
                f"libheartbeat: {ENV}={explicit} cannot be used: {e}", [(explicit, str(e))]
            ) from None
    tried: List[Tuple[str, str]] = []

    def attempt(name: str, label: str) -> Optional[ctypes.CDLL]:
        try:
            return _open(name)
        except _Refused as e:
            tried.append((label, str(e)))
            return None

    lib = attempt(SONAME, f"{SONAME} (dynamic loader search)")
    if lib is not None:
        return lib, SONAME
    try:
        found = find("heartbeat")
    except Exception as e:  # find_library runs ldconfig, gcc, ld: never fatal
        tried.append(('ctypes.util.find_library("heartbeat")', f"failed: {e}"))
        found = ""
    if found is None:
        tried.append(('ctypes.util.find_library("heartbeat")', "found nothing"))
    elif found == SONAME:
        tried.append(('ctypes.util.find_library("heartbeat")', f"found {SONAME}, refused above"))
    elif found:
        lib = attempt(found, f'{found} (ctypes.util.find_library("heartbeat"))')
        if lib is not None:
            return lib, found
    for d in default_dirs() if dirs is None else dirs:
        path = os.path.join(d, SONAME)
        if not os.path.exists(path):
            tried.append((path, "no such file"))
            continue
        lib = attempt(path, path)
        if lib is not None:
            return lib, path
    lines = "\n".join(f"  {where}: {why}" for where, why in tried)
    raise LibraryError(
        "libheartbeat: no usable libheartbeat.so was found. Searched, in order:\n"
        f"{lines}\n"
        f"Install the C library (make install, then ldconfig), or set {ENV} "
        f"to the path of {SONAME}.",
        tried,
    )
