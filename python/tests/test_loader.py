"""Finding the library: HEARTBEAT_LIBRARY, the loader, find_library, the
install prefixes; clear errors; incompatible libraries refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence

import pytest

from helpers import SRC, run_python

import libheartbeat as hb
from libheartbeat import _abi as _lib

CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


#: The functions a 0.1.0 library had before heartbeat_status_ex(),
#: heartbeat_config_within() and heartbeat_within() were added (issue 11).
ADDED_BY_ISSUE_11 = ("heartbeat_status_ex", "heartbeat_config_within", "heartbeat_within")
#: The thread-free monitor's functions (issue 10).
ADDED_BY_ISSUE_10 = (
    "heartbeat_monitor_new_loop",
    "heartbeat_monitor_fd",
    "heartbeat_monitor_timeout_ms",
    "heartbeat_monitor_process",
)
BEFORE_LOOP = [f for f in _lib.FUNCTIONS if f not in ADDED_BY_ISSUE_10 and f != "heartbeat_version"]
BEFORE_WITHIN = [f for f in BEFORE_LOOP if f not in ADDED_BY_ISSUE_11]


def build_fake(
    directory: Path, version: Optional[str], name: str = _lib.SONAME, functions: Sequence[str] = ()
) -> Path:
    """A shared library that is not a usable libheartbeat 0.x (it exports
    heartbeat_version() and, as stubs, ``functions``)."""
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "fake.c"
    if version is None:
        src.write_text("int not_heartbeat(void) { return 0; }\n")
    else:
        stubs = "".join(f"int {f}(void) {{ return 0; }}\n" for f in functions)
        src.write_text(f'const char *heartbeat_version(void) {{ return "{version}"; }}\n' + stubs)
    out = directory / name
    assert CC is not None
    subprocess.run([CC, "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(out), str(src)], check=True)
    return out


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    if CC is None:
        pytest.skip("no C compiler to build the fake libraries")
    base = tmp_path_factory.mktemp("fakes")
    return {
        "v1": build_fake(base / "v1", "1.0.0"),
        "v2": build_fake(base / "v2", "2.3.4"),
        "old": build_fake(base / "old", "0.0.1"),
        "garbage": build_fake(base / "garbage", "banana"),
        "other": build_fake(base / "other", None),
        "before-within": build_fake(base / "before-within", "0.1.0", functions=BEFORE_WITHIN),
        "before-loop": build_fake(base / "before-loop", "0.1.0", functions=BEFORE_LOOP),
    }


@pytest.fixture
def real_dir(tmp_path: Path, library_path: str) -> Path:
    """A directory holding the real library as libheartbeat.so.0 (as an install would)."""
    d = tmp_path / "prefix" / "lib"
    d.mkdir(parents=True)
    (d / _lib.SONAME).symlink_to(os.path.realpath(library_path))
    return d


def none(_: str) -> Optional[str]:
    return None


def test_the_loaded_library_is_the_one_named(library_path: str) -> None:
    assert hb.library_path == library_path
    assert hb.library_version.split(".")[0] == str(_lib.MAJOR)


def test_package_major_matches_the_build(repo: Path) -> None:
    cargo = (repo / "Cargo.toml").read_text()
    version = next(line.split('"')[1] for line in cargo.splitlines() if line.startswith("version = "))
    assert int(version.split(".")[0]) == _lib.MAJOR
    assert hb.library_version == version
    assert os.environ.get("MAJOR", str(_lib.MAJOR)) == str(_lib.MAJOR)


def test_explicit_path_wins_and_is_not_second_guessed(library_path: str, real_dir: Path) -> None:
    lib, where = _lib.load({_lib.ENV: library_path}, dirs=[str(real_dir)], find=none)
    assert where == library_path
    assert lib.heartbeat_version() == hb.library_version.encode()


def test_explicit_wrong_path_is_a_clear_error(tmp_path: Path, real_dir: Path) -> None:
    missing = str(tmp_path / "nowhere" / "libheartbeat.so.0")
    with pytest.raises(_lib.LibraryError) as e:
        # A usable library elsewhere is not taken instead of the named one.
        _lib.load({_lib.ENV: missing}, dirs=[str(real_dir)], find=none)
    msg = str(e.value)
    assert isinstance(e.value, ImportError)
    assert f"HEARTBEAT_LIBRARY={missing} cannot be used" in msg
    assert "No such file" in msg  # dlopen's reason
    assert e.value.tried[0][0] == missing


def test_import_with_a_wrong_path_fails_with_the_path() -> None:
    r = run_python("import libheartbeat", env={_lib.ENV: "/nonexistent/libheartbeat.so.0"})
    assert r.returncode != 0
    assert "LibraryError" in r.stderr and "/nonexistent/libheartbeat.so.0" in r.stderr
    assert "ImportError" not in r.stderr or "LibraryError" in r.stderr


@pytest.mark.parametrize(
    ("fake", "why"),
    [
        ("v1", "version 1.0.0 has major version 1; this package (libheartbeat 0.x) needs a 0.x library"),
        ("v2", "version 2.3.4 has major version 2"),
        ("old", "version 0.0.1 lacks heartbeat, heartbeat_disable"),
        ("garbage", "heartbeat_version() returned 'banana', not MAJOR.MINOR.PATCH"),
        ("other", "not libheartbeat: it has no heartbeat_version()"),
        # A library from before issue 11 is refused, naming exactly what it lacks.
        (
            "before-within",
            "version 0.1.0 lacks heartbeat_status_ex, heartbeat_config_within, heartbeat_within, "
            "heartbeat_monitor_new_loop, heartbeat_monitor_fd, heartbeat_monitor_timeout_ms, "
            "heartbeat_monitor_process (too old?)",
        ),
        # One from before the thread-free monitor (issue 10): the same rule.
        (
            "before-loop",
            "version 0.1.0 lacks heartbeat_monitor_new_loop, heartbeat_monitor_fd, "
            "heartbeat_monitor_timeout_ms, heartbeat_monitor_process (too old?)",
        ),
    ],
)
def test_incompatible_library_is_refused(fakes: Dict[str, Path], fake: str, why: str) -> None:
    with pytest.raises(_lib.LibraryError) as e:
        _lib.load({_lib.ENV: str(fakes[fake])}, dirs=[], find=none)
    assert why in str(e.value)


def test_import_refuses_another_major_version(fakes: Dict[str, Path]) -> None:
    r = run_python("import libheartbeat", env={_lib.ENV: str(fakes["v1"])})
    assert r.returncode != 0
    assert "major version 1" in r.stderr and str(fakes["v1"]) in r.stderr


def test_import_refuses_a_library_older_than_the_package(fakes: Dict[str, Path]) -> None:
    r = run_python("import libheartbeat", env={_lib.ENV: str(fakes["before-within"])})
    assert r.returncode != 0
    assert "LibraryError" in r.stderr and "lacks heartbeat_status_ex" in r.stderr


def search(code: str, env: Dict[str, str]) -> str:
    """Run a search in a fresh interpreter in which no libheartbeat is
    loaded yet: _abi.py on its own, without the package (whose import loads
    the library, after which dlopen("libheartbeat.so.0") returns the copy
    already loaded), with LD_LIBRARY_PATH as given (the loader reads it at
    start-up only) and no HEARTBEAT_LIBRARY."""
    prelude = textwrap.dedent(
        f"""
        import importlib.util, json
        spec = importlib.util.spec_from_file_location("hb_abi", {str(SRC / "libheartbeat" / "_abi.py")!r})
        assert spec is not None and spec.loader is not None
        _lib = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_lib)
        """
    )
    r = run_python(prelude + textwrap.dedent(code), env=env, unset=[_lib.ENV])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_loader_search_refuses_a_wrong_major_and_goes_on(fakes: Dict[str, Path], real_dir: Path) -> None:
    # The loader finds the fake 1.0.0 first (LD_LIBRARY_PATH), find_library
    # nothing; the install prefix has the real one.
    out = search(
        f"""
        lib, where = _lib.load({{}}, dirs=["/nonexistent-dir", {str(real_dir)!r}], find=lambda n: None)
        print(where)
        """,
        {"LD_LIBRARY_PATH": str(fakes["v1"].parent)},
    )
    assert out == str(real_dir / _lib.SONAME)


def test_loader_search_comes_first(real_dir: Path) -> None:
    out = search(
        """
        lib, where = _lib.load({}, dirs=[], find=lambda n: 1 / 0)
        print(where)
        """,
        {"LD_LIBRARY_PATH": str(real_dir)},
    )
    assert out == _lib.SONAME


def test_find_library_is_used(fakes: Dict[str, Path], real_dir: Path) -> None:
    path = str(real_dir / _lib.SONAME)
    out = search(
        f"""
        lib, where = _lib.load({{}}, dirs=[], find=lambda n: {path!r} if n == "heartbeat" else None)
        print(where)
        """,
        {"LD_LIBRARY_PATH": str(fakes["v2"].parent)},
    )
    assert out == path


def test_nothing_found_lists_everything_searched(fakes: Dict[str, Path], tmp_path: Path) -> None:
    out = search(
        f"""
        try:
            _lib.load({{}}, dirs=[{str(tmp_path)!r}], find=lambda n: None)
        except _lib.LibraryError as e:
            print(json.dumps({{"msg": str(e), "tried": e.tried}}))
        """,
        {"LD_LIBRARY_PATH": str(fakes["v1"].parent)},
    )
    import json

    got = json.loads(out)
    tried = [tuple(t) for t in got["tried"]]
    assert tried[0][0] == "libheartbeat.so.0 (dynamic loader search)" and "major version 1" in tried[0][1]
    assert tried[1] == ('ctypes.util.find_library("heartbeat")', "found nothing")
    assert tried[2] == (str(tmp_path / _lib.SONAME), "no such file")
    assert len(tried) == 3
    for where, why in tried:
        assert where in got["msg"] and why in got["msg"]
    assert "HEARTBEAT_LIBRARY" in got["msg"]


def test_find_library_failure_is_not_fatal(real_dir: Path) -> None:
    def broken(_: str) -> Optional[str]:
        raise OSError("no ldconfig")

    lib, where = _lib.load({}, dirs=[str(real_dir)], find=broken)
    assert where == str(real_dir / _lib.SONAME) or where == _lib.SONAME


def test_default_dirs() -> None:
    dirs = _lib.default_dirs()
    arch = sysconfig.get_config_var("MULTIARCH")
    assert dirs[0] == os.path.join(sys.prefix, "lib")
    for d in ("/usr/local/lib", "/usr/lib", "/lib"):
        assert d in dirs
    if arch:
        assert f"/usr/lib/{arch}" in dirs and f"/usr/local/lib/{arch}" in dirs
    assert dirs.index("/usr/local/lib") < dirs.index("/usr/lib")
    assert len(dirs) == len(set(dirs))


def test_found_in_an_install_prefix_without_ldconfig(tmp_path: Path, library_path: str) -> None:
    # The layout `make install PREFIX=...` creates (c-tests/core checks it):
    # the real file, the soname link, the development link; no ldconfig run.
    # (Not `make install` itself here: its `lib` step rewrites
    # build/lib/libheartbeat.so.* in place with cp, and this process has
    # that file mapped.)
    lib_dir = tmp_path / "usr-local" / "lib"
    lib_dir.mkdir(parents=True)
    real = Path(os.path.realpath(library_path))
    shutil.copy2(real, lib_dir / real.name)
    (lib_dir / _lib.SONAME).symlink_to(real.name)
    (lib_dir / "libheartbeat.so").symlink_to(_lib.SONAME)
    out = search(
        f"""
        lib, where = _lib.load({{}}, dirs=["/nonexistent", {str(lib_dir)!r}], find=lambda n: None)
        print(where, lib.heartbeat_version().decode())
        """,
        {},
    )
    assert out == f"{lib_dir / _lib.SONAME} {hb.library_version}"
