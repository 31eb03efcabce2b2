"""The examples run as documented (each in its own process: they register their own actors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_counter_example() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "counter.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "incr -> 5" in out and "after a tell -> 6" in out and "still alive: 6" in out
