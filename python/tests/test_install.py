"""`pip install ./python` into a fresh virtual environment, then use it.

The install is real: pip builds the package with its declared build
backend in an isolated environment (setuptools, from PyPI or pip's cache),
installs it into the venv's site-packages, and the installed copy (not
python/src) is imported from outside the checkout, with HEARTBEAT_LIBRARY
naming the build tree's library. The oldest Python the package claims
(requires-python) and the newest one, where this machine has them (pyenv),
install the wheel that pip builds from ./python (a pure-Python wheel, the
same for every version) without asking an index, to keep the time down.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

from helpers import REPO


def interpreters() -> List[str]:
    found = [sys.executable]
    pyproject = (REPO / "python" / "pyproject.toml").read_text()
    m = re.search(r'requires-python = ">=(\d+)\.(\d+)"', pyproject)
    assert m, "pyproject.toml states requires-python"
    oldest = f"{m.group(1)}.{m.group(2)}"
    for pattern in (f"{oldest}.*", "3.13.*"):
        for p in sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{pattern}/bin/python3"))):
            found.append(p)
            break
    return found


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def copy_source(dest: Path) -> Path:
    """python/ as a user's checkout has it (no build leftovers)."""
    shutil.copytree(
        REPO / "python",
        dest,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".mypy_cache", ".pytest_cache"),
    )
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from ./python."""
    base = tmp_path_factory.mktemp("wheel")
    copy_source(base / "python")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps", "-w", "dist", "./python"],
        cwd=base,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (found,) = (base / "dist").glob("libheartbeat-*-py3-none-any.whl")
    return found


def pip_install(python: str, tmp_path: Path, what: List[str], own_pip: bool = True) -> str:
    """A fresh venv with ``pip install WHAT`` done in tmp_path, by the venv's
    own pip or (faster: no ensurepip) by this pip with --python; its python."""
    copy_source(tmp_path / "python")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", *([] if own_pip else ["--without-pip"]), str(venv)], check=True, timeout=120)
    vpy = str(venv / "bin" / "python")
    pip = [vpy, "-m", "pip"] if own_pip else [sys.executable, "-m", "pip", "--python", vpy]
    r = subprocess.run(
        [*pip, "install", "--disable-pip-version-check", "-q", *what],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return vpy


def test_pip_install_into_a_venv(tmp_path: Path, library_path: str) -> None:
    use_installed(pip_install(sys.executable, tmp_path, ["./python"]), tmp_path, library_path)


@pytest.mark.parametrize("python", interpreters()[1:], ids=lambda p: Path(p).parents[1].name)
def test_the_wheel_on_other_pythons(tmp_path: Path, python: str, library_path: str, wheel: Path) -> None:
    vpy = pip_install(python, tmp_path, ["--no-index", str(wheel)], own_pip=False)
    use_installed(vpy, tmp_path, library_path)


def use_installed(vpy: str, tmp_path: Path, library_path: str) -> None:
    """Import the installed package from outside the checkout and use it."""
    env = clean_env()
    env["HEARTBEAT_LIBRARY"] = library_path
    program = textwrap.dedent(
        """
        import os, socket, sys
        import libheartbeat as hb
        here = os.path.dirname(hb.__file__)
        assert here.startswith(sys.prefix), here           # the installed copy
        assert os.path.exists(os.path.join(here, "py.typed"))
        srv = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(srv.getsockname())
        p, _ = srv.accept()
        hb.configure(c, 10, 5, 3)
        assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        try:
            hb.configure(c, 1, 1, 0)
        except OSError as e:
            assert e.name == "HEARTBEAT_ERR_CNT", e
        with hb.Monitor(10, 50, on_dead=lambda *a: None) as m:
            m.watch(c)
        from importlib.metadata import version
        assert version("libheartbeat") == hb.__version__   # the installed distribution
        print(hb.__version__, hb.library_version, hb.get(c).idle, hb.status(c).peer.name)
        """
    )
    r = subprocess.run([vpy, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import libheartbeat as hb

    assert r.stdout.split() == [hb.__version__, hb.library_version, "10", "ALIVE"]
