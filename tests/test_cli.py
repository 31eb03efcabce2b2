"""The ``shoal`` command: option parsing, ``shoal node`` lifecycle, ``shoal demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from runtime import demo
from runtime.cli import GC_THRESHOLD, parse_resources, raise_descriptor_limit
from runtime.demo import run_demo
from tests.cluster import ROOT, NodeProcess, converged_client, until

pytestmark = pytest.mark.timeout(120)


def test_parse_resources() -> None:
    assert parse_resources("gpu=1, mem=16.5") == {"gpu": 1.0, "mem": 16.5}
    assert parse_resources(None) == {} and parse_resources("") == {}
    for bad in ("gpu", "=1", "gpu=x"):
        with pytest.raises(click.BadParameter):
            parse_resources(bad)


def test_node_prints_its_address_and_leaves_on_sigterm() -> None:
    node = NodeProcess(extra=["--resources", "gpu=1"])
    try:
        assert node.address.startswith("tcp://127.0.0.1:")
        assert not node.address.endswith(":0")
        assert node.terminate() == 0
    finally:
        node.kill()


@pytest.mark.parametrize("threshold", [None, 0, 5000])
def test_tune_gc_sets_the_young_generation_threshold(threshold: int | None) -> None:
    # In a process of its own: the collector's settings are process-wide.
    arg = "" if threshold is None else str(threshold)
    code = (
        "import gc; from runtime.cli import tune_gc; default = gc.get_threshold()[0]; "
        f"tune_gc({arg}); print(default, gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    default, now, frozen = out.stdout.split()
    expected = {None: GC_THRESHOLD, 0: int(default), 5000: 5000}[threshold]
    assert (int(now), frozen) == (expected, str(threshold != 0))


def test_node_takes_a_gc_threshold() -> None:
    node = NodeProcess(extra=["--gc-threshold", "0"])
    try:
        assert node.terminate() == 0
    finally:
        node.kill()


def test_node_with_unknown_import_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match="no_such_module"):
        NodeProcess(imports=["no_such_module"], timeout=20)


async def test_demo_runs_and_its_checks_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_demo(nodes=3, calls=50) == 0
    out = capsys.readouterr().out
    assert "CHECK FAILED" not in out and "all checks passed" in out, out
    assert "live migration of tally-0" in out and "SIGKILL of" in out, out


async def test_demo_exits_non_zero_when_a_check_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The storage half of the comparison stores nothing: the demo must notice and say so.
    monkeypatch.setattr(demo, "_storage_step", lambda db, key, n: n)
    assert await run_demo(nodes=2, calls=20) == 1
    out = capsys.readouterr().out
    assert "CHECK FAILED: storage counted 20 steps" in out, out
    assert "1 checks failed" in out and "all checks passed" not in out, out


async def test_node_takes_a_data_limit_and_a_spill_directory(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    node = await NodeProcess.astart(extra=["--data-limit", "1000", "--data-spill-dir", str(spill)])
    try:
        async with converged_client([node], 1) as client:
            shelf = client.ref("Shelf", "cli-spill")
            ref = await shelf.make("big", 5000)  # over the limit: spilled to the directory
            assert ref.node == node.address
            await until(lambda: spill.exists() and any(spill.rglob("*")), 10)
    finally:
        node.kill()


def test_node_refuses_a_negative_data_limit() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "node",
            "--listen",
            "tcp://127.0.0.1:0",
            "--data-limit",
            "-1",
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "--data-limit" in out.stderr


def test_raise_descriptor_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    # In a process of its own, started with a low soft limit (as a shell's 1,024 would be).
    code = (
        "import resource; from runtime.cli import raise_descriptor_limit; "
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE), *raise_descriptor_limit())"
    )

    def low_soft_limit() -> None:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=low_soft_limit,
    )
    soft0, hard0, soft, hard = map(int, out.stdout.split())
    assert soft0 == 256 and hard == hard0
    assert soft == hard or soft >= 1 << 16  # (an unlimited hard limit: as much as it takes)
    assert raise_descriptor_limit()[0] >= 256


def test_node_takes_a_mailbox_limit_and_max_activations() -> None:
    node = NodeProcess(extra=["--mailbox-limit", "5", "--max-activations", "10"])
    try:
        assert node.terminate() == 0
    finally:
        node.kill()


@pytest.mark.parametrize("option", ["--mailbox-limit", "--max-activations"])
def test_node_refuses_a_limit_below_one(option: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "node", "--listen", "tcp://127.0.0.1:0", option, "0"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and option in out.stderr
