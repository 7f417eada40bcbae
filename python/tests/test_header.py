"""The package's copy of the C ABI against include/heartbeat.h, so they cannot drift.

The header is parsed here, at test time (the package never reads it):
every #define, struct field (names, order, and offsets and sizes from a C
program compiled from the header), callback typedef and function prototype
must match the package's declarations in libheartbeat._abi and
libheartbeat._constants, with nothing missing on either side. When the C
library gains a function or a code, this test names what the package lacks.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from helpers import REPO

import libheartbeat as hb
from libheartbeat import _abi, _constants

HEADER = REPO / "include" / "heartbeat.h"


def header_text() -> str:
    """The header without comments."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_defines() -> Dict[str, int]:
    # HEARTBEAT_VERSION_MAJOR/_MINOR/_PATCH say which header a C program was
    # compiled against; the package checks the loaded library's version at
    # run time instead (heartbeat_version(), test_loader.py).
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^#define (HEARTBEAT_\w+) (-?\d+)\s*$", header_text(), flags=re.M)
        if not m.group(1).startswith("HEARTBEAT_VERSION_")
    }


def package_defines() -> Dict[str, int]:
    out: Dict[str, int] = {}
    for code in hb.Code:
        out["HEARTBEAT_" + code.name] = int(code)
    for peer in hb.Peer:
        out["HEARTBEAT_PEER_" + peer.name] = int(peer)
    for reason in hb.DeadReason:
        out["HEARTBEAT_DEAD_" + reason.name] = int(reason)
    public = (
        "IDLE_MIN",
        "IDLE_MAX",
        "INTVL_MIN",
        "INTVL_MAX",
        "CNT_MIN",
        "CNT_MAX",
        "PING_MAX",
        "LATE_BUCKETS",
        "WITHIN_MIN_MS",
        "WITHIN_MAX_MS",
    )
    for name in public:
        out["HEARTBEAT_" + name] = getattr(hb, name)
    # C spellings of what the Python API says as a keyword argument
    # (keep_slow_readers=True) and as None (Status.peer_window): kept in
    # _constants for the wrappers, not exported.
    for name in ("WITHIN_KEEP_SLOW_READERS", "WINDOW_UNKNOWN"):
        assert not hasattr(hb, name), name
        out["HEARTBEAT_" + name] = getattr(_constants, name)
    return out


def test_every_define_is_in_the_package_with_its_value() -> None:
    header, package = header_defines(), package_defines()
    assert len(header) >= 30, "the header parser found too little"
    missing = {k: v for k, v in header.items() if k not in package}
    extra = {k: v for k, v in package.items() if k not in header}
    wrong = {k: (package[k], v) for k, v in header.items() if k in package and package[k] != v}
    assert not missing, f"in include/heartbeat.h, not in libheartbeat._constants: {missing}"
    assert not extra, f"in the package, not in include/heartbeat.h: {extra}"
    assert not wrong, f"(package, header) values differ: {wrong}"
    assert _abi.LATE_BUCKETS == header["HEARTBEAT_LATE_BUCKETS"]


# --- C types ------------------------------------------------------------------

STRUCTS: Dict[str, Any] = {
    "heartbeat_config": _abi.ConfigStruct,
    "heartbeat_status": _abi.StatusStruct,
    "heartbeat_status_ex": _abi.StatusExStruct,
    "heartbeat_monitor_options": _abi.MonitorOptionsStruct,
    "heartbeat_monitor_stats": _abi.MonitorStatsStruct,
}
SCALARS: Dict[str, Any] = {
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "unsigned long": ctypes.c_ulong,
    "size_t": ctypes.c_size_t,
    "void *": ctypes.c_void_p,
    "const void *": ctypes.c_void_p,
    "const char *": ctypes.c_char_p,
    "struct heartbeat_monitor *": ctypes.c_void_p,  # opaque
    "heartbeat_ping_fn": _abi.PING_FN,
    "heartbeat_dead_fn": _abi.DEAD_FN,
    "void": None,
}


def ctype_of(c: str) -> Any:
    """The ctypes type the package must use for a C type."""
    c = re.sub(r"\s*\*\s*", " *", " ".join(c.split())).strip()
    if c in SCALARS:
        return SCALARS[c]
    m = re.fullmatch(r"(?:const )?struct (\w+) \*", c)
    if m and m.group(1) in STRUCTS:
        return ctypes.POINTER(STRUCTS[m.group(1)])
    m = re.fullmatch(r"(int|unsigned long) \*", c)
    if m:
        return ctypes.POINTER(SCALARS[m.group(1)])
    raise AssertionError(f"test_header.py does not know the C type {c!r}: add it to SCALARS")


def split_decl(decl: str) -> Tuple[str, str]:
    """'const struct heartbeat_config *cfg' -> ('const struct heartbeat_config *', 'cfg')."""
    decl = " ".join(decl.split())
    m = re.fullmatch(r"(.*?)(\w+)", decl)
    assert m, decl
    return m.group(1).strip(), m.group(2)


def header_structs() -> Dict[str, List[Tuple[str, str, Optional[str]]]]:
    """struct name -> [(C type, field, array length or None)]."""
    out: Dict[str, List[Tuple[str, str, Optional[str]]]] = {}
    for m in re.finditer(r"struct (\w+) \{(.*?)\};", header_text(), flags=re.S):
        fields = []
        for raw in m.group(2).split(";"):
            if not raw.strip():
                continue
            am = re.fullmatch(r"(.*?)\[(\w+)\]", " ".join(raw.split()))
            decl, length = (am.group(1), am.group(2)) if am else (raw, None)
            ctype, name = split_decl(decl)
            fields.append((ctype, name, length))
        out[m.group(1)] = fields
    return out


def test_structs_have_the_headers_fields_in_order() -> None:
    structs = header_structs()
    assert set(structs) == set(STRUCTS), f"header structs {sorted(structs)} vs package {sorted(STRUCTS)}"
    defines = header_defines()
    for name, fields in structs.items():
        got = STRUCTS[name]._fields_
        assert [f[1] for f in fields] == [g[0] for g in got], f"struct {name}: field names or order"
        for (ctype, field, length), (_, pytype) in zip(fields, got):
            want = ctype_of(ctype)
            if length is not None:
                want = want * defines[length]
                assert pytype._length_ == want._length_ and pytype._type_ is want._type_, f"{name}.{field}"
            else:
                assert pytype is want, f"struct {name}.{field}: {ctype} needs {want}, package has {pytype}"


def test_struct_layout_matches_the_c_compiler(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "heartbeat.h"', "int main(void) {"]
    for name, fields in header_structs().items():
        lines.append(f'  printf("{name} %zu\\n", sizeof(struct {name}));')
        for _, field, _ in fields:
            lines.append(
                f'  printf("{name}.{field} %zu %zu\\n", offsetof(struct {name}, {field}),'
                f" sizeof(((struct {name} *)0)->{field}));"
            )
    lines += ["  return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c99", "-I", str(REPO / "include"), "-o", str(exe), str(src)], check=True)
    c_layout = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    py_layout = []
    for name, struct in STRUCTS.items():
        py_layout.append(f"{name} {ctypes.sizeof(struct)}")
        for fname, ftype in struct._fields_:
            py_layout.append(f"{name}.{fname} {getattr(struct, fname).offset} {ctypes.sizeof(ftype)}")
    assert sorted(filter(None, c_layout)) == sorted(py_layout)


def header_functions() -> Dict[str, Tuple[str, List[str]]]:
    """Function (and callback typedef) name -> (result C type, [argument C types])."""
    out: Dict[str, Tuple[str, List[str]]] = {}
    text = re.sub(r"struct \w+ \{.*?\};", " ", header_text(), flags=re.S)
    text = re.sub(r'extern "C" \{|^\s*\}', " ", text, flags=re.M)
    for decl in text.split(";"):
        decl = " ".join(line for line in decl.split("\n") if not line.strip().startswith("#"))
        decl = " ".join(decl.split())
        m = re.fullmatch(r"typedef (.*?)\(\*(heartbeat\w*)\)\((.*)\)", decl) or re.fullmatch(
            r"(.*?)\b(heartbeat\w*)\((.*)\)", decl
        )
        if not m:
            continue
        ret = m.group(1).strip()
        args = [] if m.group(3).strip() in ("", "void") else [split_decl(a)[0] for a in m.group(3).split(",")]
        out[m.group(2)] = (ret, args)
    return out


def test_every_function_is_bound_with_the_headers_types() -> None:
    funcs = header_functions()
    typedefs = {k: funcs.pop(k) for k in list(funcs) if k.endswith("_fn")}
    assert len(funcs) >= 16, "the header parser found too little"
    missing = sorted(set(funcs) - set(_abi.FUNCTIONS))
    assert not missing, (
        f"functions of include/heartbeat.h that the package does not bind: {missing}; add them to "
        "_abi.FUNCTIONS (in OPTIONAL if older 0.x libraries may lack them) and wrap them"
    )
    assert not set(_abi.FUNCTIONS) - set(funcs), "the package binds functions the header lacks"
    for name, (ret, args) in funcs.items():
        restype, argtypes = _abi.FUNCTIONS[name]
        assert restype is ctype_of(ret) or (
            restype is not None and ctype_of(ret) is not None and restype == ctype_of(ret)
        ), f"{name}: result {ret}"
        assert [ctype_of(a) for a in args] == argtypes, f"{name}: arguments {args}"
    # The bound library uses exactly these prototypes (the few bound without
    # argtypes for speed: the result type).
    assert _abi.UNCHECKED <= set(_abi.FUNCTIONS)
    for name, (restype, argtypes) in _abi.FUNCTIONS.items():
        fn = getattr(hb._lib.LIB, name)
        assert fn.restype is restype, name
        if name in _abi.UNCHECKED:
            assert fn.argtypes is None, name
        else:
            assert list(fn.argtypes) == argtypes, name
        # Every call that may wait releases the GIL (see monitor.py).
        keeps_gil = bool(fn._flags_ & ctypes._FUNCFLAG_PYTHONAPI)  # type: ignore[attr-defined]
        assert keeps_gil == (name in _abi.KEEPS_GIL), name
    # The callback types.
    assert set(typedefs) == {"heartbeat_ping_fn", "heartbeat_dead_fn"}
    for name, cfunc in (("heartbeat_ping_fn", _abi.PING_FN), ("heartbeat_dead_fn", _abi.DEAD_FN)):
        ret, args = typedefs[name]
        assert cfunc._restype_ is ctype_of(ret), name
        assert list(cfunc._argtypes_) == [ctype_of(a) for a in args], name


def test_the_parser_reads_known_items() -> None:
    # The checks above are only as good as the parser: it must read these
    # known declarations exactly.
    assert "heartbeat_monitor_new" in header_functions()
    assert header_functions()["heartbeat_monitor_new"] == (
        "struct heartbeat_monitor *",
        ["const struct heartbeat_monitor_options *", "int *"],
    )
    assert header_functions()["heartbeat_dead_fn"] == (
        "void",
        ["struct heartbeat_monitor *", "int", "int", "int", "void *"],
    )
    assert header_structs()["heartbeat_monitor_stats"][-1] == ("unsigned long", "ping_late", "HEARTBEAT_LATE_BUCKETS")
    assert header_defines()["HEARTBEAT_ERR_THREAD"] == -16
    assert header_defines()["HEARTBEAT_WINDOW_UNKNOWN"] == 2**32 - 1
    assert header_functions()["heartbeat_status_ex"] == ("int", ["int", "struct heartbeat_status_ex *", "size_t"])
    assert header_structs()["heartbeat_status_ex"][-1] == ("unsigned int", "last_ack_recv_ms", None)
