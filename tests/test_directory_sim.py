"""Seeded random schedules of joins, leaves, kills and partitions, in virtual time.

``tests/sim_directory.py`` is the simulation (its docstring lists what it checks); this module
runs a batch of seeds in a child process with ``PYTHONHASHSEED=0``, so that a failing seed,
printed with the command that replays it, replays exactly. More seeds:
``PYTHONHASHSEED=0 .venv/bin/python -m tests.sim_directory --seeds 0-999``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cluster import ROOT

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

#: Seeds run by the suite (about 1.5 s each on this machine).
SEEDS = "0-59"


def _sim(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "tests.sim_directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_random_schedules_keep_one_activation_and_lose_nothing_acknowledged() -> None:
    done = _sim("--seeds", SEEDS, timeout=540)
    print(done.stdout[-20_000:])
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert " 0 with violations" in done.stdout


def test_a_seed_replays_exactly() -> None:
    first = _sim("--seeds", "3", "--trace", timeout=120)
    second = _sim("--seeds", "3", "--trace", timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    trace = [line for line in first.stdout.splitlines() if not line.endswith(" s")]
    again = [line for line in second.stdout.splitlines() if not line.endswith(" s")]
    assert len(trace) > 5 and trace == again
