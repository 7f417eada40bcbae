"""`pip install ./python` into a fresh virtual environment, then use it.

The install is real: pip builds the package with its declared build
backend in an isolated environment (setuptools, from PyPI or pip's cache),
installs it into the venv's site-packages, and the installed copy (not
python/src) is imported from outside the checkout, with HEARTBEAT_LIBRARY
naming the build tree's library. Also run with the oldest Python the
package claims (requires-python) and the newest one, where this machine
has them (pyenv).
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


@pytest.mark.parametrize("python", interpreters(), ids=lambda p: "this-python" if p == sys.executable else Path(p).parents[1].name)
def test_pip_install_into_a_venv(tmp_path: Path, python: str, library_path: str) -> None:
    src = tmp_path / "python"
    shutil.copytree(
        REPO / "python",
        src,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".mypy_cache", ".pytest_cache"),
    )
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run(
        [vpy, "-m", "pip", "install", "--disable-pip-version-check", "-q", "./python"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
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
        print(hb.__version__, hb.library_version, hb.get(c).idle, hb.status(c).peer.name)
        """
    )
    r = subprocess.run([vpy, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import libheartbeat as hb

    assert r.stdout.split() == [hb.__version__, hb.library_version, "10", "ALIVE"]
    r = subprocess.run(
        [vpy, "-m", "pip", "show", "libheartbeat"], env=env, capture_output=True, text=True, timeout=60
    )
    assert f"Version: {hb.__version__}" in r.stdout
