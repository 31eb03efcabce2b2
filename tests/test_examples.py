"""The examples run as documented."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_counter_example(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "counter.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "incr -> 5" in out and "after a tell -> 6" in out and "still alive: 6" in out
