"""pytest fixtures: loopback connections and the library path (see helpers.py)."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path
from typing import Iterator

import pytest

pytest.register_assert_rewrite("helpers")

from helpers import REPO, Pair, tcp_pair


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """A test that hangs (a deadlock between the GIL and the monitor thread,
    say) ends the run after 120 s with every thread's traceback, instead of
    hanging make test."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A connected loopback pair (client, accepted peer), closed afterwards."""
    client, peer = tcp_pair()
    yield client, peer
    client.close()
    peer.close()


@pytest.fixture
def library_path() -> str:
    """The C library under test."""
    return os.environ["HEARTBEAT_LIBRARY"]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The checkout's top directory."""
    return REPO
