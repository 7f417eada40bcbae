"""The Python examples of docs/python.md run, and print what the page says."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import pytest

from helpers import REPO, run_python

DOC = REPO / "docs" / "python.md"


def examples() -> List[Tuple[str, Optional[str]]]:
    """Each ```python block, and the ```text block that follows it after a
    line saying "prints", if any."""
    text = DOC.read_text()
    found = []
    for m in re.finditer(r"```python\n(.*?)```\n(?:\nprints\n\n```text\n(.*?)```\n)?", text, flags=re.S):
        found.append((m.group(1), m.group(2)))
    return found


def test_the_page_has_examples() -> None:
    assert len(examples()) >= 2
    assert all(out is not None for _, out in examples()), "every example shows what it prints"


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs_and_prints_what_the_page_says(index: int) -> None:
    code, printed = examples()[index]
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    if printed is not None:
        assert r.stdout == printed
