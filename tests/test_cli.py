"""The ``shoal`` command: option parsing, ``shoal node`` lifecycle, ``shoal demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from actors import Node
from runtime import demo
from runtime.cli import GC_THRESHOLD, parse_resources
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


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keygen_writes_a_pair_and_prints_the_paths(tmp_path: Path) -> None:
    out = _shoal("keygen", str(tmp_path / "keys"), "--name", "n1")
    assert out.returncode == 0, out.stderr
    public, secret = tmp_path / "keys" / "n1.key", tmp_path / "keys" / "n1.key_secret"
    assert out.stdout.splitlines() == [f"public key: {public}", f"secret key: {secret}"]
    assert public.exists() and (secret.stat().st_mode & 0o777) == 0o600
    again = _shoal("keygen", str(tmp_path / "keys"), "--name", "n1")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [
        f"Error: {public} exists already: not overwriting a key"
    ]


def test_node_with_a_bad_key_or_trust_fails_in_one_line(tmp_path: Path) -> None:
    _shoal("keygen", str(tmp_path))
    secret, public = str(tmp_path / "node.key_secret"), str(tmp_path / "node.key")
    listen = ["node", "--listen", "tcp://127.0.0.1:0"]
    cases = {
        ("--key", secret): "--key needs --trust as well",
        ("--trust", str(tmp_path)): "--trust needs --key as well",
        ("--key", public, "--trust", str(tmp_path)): f"--key {public!r} holds a public key only",
        ("--key", str(tmp_path / "nope"), "--trust", str(tmp_path)): "no such file",
        ("--key", secret, "--trust", str(tmp_path / "nope")): "no such directory",
        ("--key", __file__, "--trust", str(tmp_path)): "is not a CURVE key file",
    }
    for args, message in cases.items():
        out = _shoal(*listen, *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1, (args, out.stderr)
        assert lines[0].startswith("Error: ") and message in lines[0], (args, lines)


async def test_a_keyed_node_serves_a_keyed_client(tmp_path: Path) -> None:
    _shoal("keygen", str(tmp_path / "trust"), "--name", "server")
    _shoal("keygen", str(tmp_path / "trust"), "--name", "client")
    trust = tmp_path / "trust"
    server = await NodeProcess.astart(
        extra=["--key", str(trust / "server.key_secret"), "--trust", str(trust)]
    )
    try:
        async with Node(
            seeds=[server.address],
            serve=(),
            key=trust / "client.key_secret",
            trust=trust,
            default_timeout=10,
        ) as client:
            assert await client.ref("Counter", "cli-keyed").incr(3) == 3
        assert await server.aterminate() == 0
    finally:
        server.kill()


def test_a_node_open_beyond_loopback_without_keys_warns(tmp_path: Path) -> None:
    exposed = NodeProcess(listen="tcp://0.0.0.0:0")
    try:
        assert "warning: tcp://0.0.0.0:0 without --key/--trust" in exposed.read_output()
        assert exposed.terminate() == 0
    finally:
        exposed.kill()
    _shoal("keygen", str(tmp_path))
    keys = ["--key", str(tmp_path / "node.key_secret"), "--trust", str(tmp_path)]
    for listen, extra in (("tcp://127.0.0.1:0", []), ("tcp://0.0.0.0:0", keys)):
        quiet = NodeProcess(listen=listen, extra=extra)
        try:
            assert "warning" not in quiet.read_output()
        finally:
            quiet.kill()
