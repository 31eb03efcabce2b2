"""The ``shoal`` command: option parsing, ``shoal node`` lifecycle, ``shoal demo``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from actors import Node
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


# -- mistakes: one line on stderr, a non-zero exit ------------------------------------------------


def _shoal(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``shoal ARGS`` (``python -m runtime``) to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    holder = NodeProcess()
    try:
        out = _shoal("node", "--listen", holder.address, "--import", "tests.sample_actors")
        assert out.returncode == 1, out
        assert out.stderr == (
            f"shoal node: error: cannot listen on {holder.address}: the address is in use\n"
        )
        assert out.stdout == ""
    finally:
        holder.kill()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--listen", "127.0.0.1:5700"],
         "shoal node: error: --listen '127.0.0.1:5700' has no scheme: expected tcp://HOST:PORT, "
         "ipc://PATH or mem://NAME (did you mean 'tcp://127.0.0.1:5700'?)"),
        (["--listen", "tcp://127.0.0.1:0", "--seed", "localhost:5700"],
         "shoal node: error: --seed 'localhost:5700' has no scheme: expected tcp://HOST:PORT, "
         "ipc://PATH or mem://NAME (did you mean 'tcp://localhost:5700'?)"),
        (["--listen", "tcp://127.0.0.1"],
         "shoal node: error: --listen 'tcp://127.0.0.1' is not tcp://HOST:PORT (a port in "
         "0..65535)"),
        (["--listen", "tcp://127.0.0.1:0", "--storage", "ftp://x/y"],
         "shoal node: error: --storage: storage URL 'ftp://x/y' is not supported: expected "
         "memory://, sqlite:///PATH, postgresql://... or redis://..."),
        (["--listen", "tcp://127.0.0.1:0", "--resources", "gpu=-1"],
         "shoal node: error: Invalid value for '--resources': 'gpu=-1': an amount is a finite "
         "number >= 0"),
        (["--listen", "tcp://127.0.0.1:0", "--resources", "gpu"],
         "shoal node: error: Invalid value for '--resources': expected NAME=NUMBER[,NAME=NUMBER"
         "...], got 'gpu'"),
        (["--listen", "tcp://127.0.0.1:0", "--data-limit", "-1"],
         "shoal node: error: Invalid value for '--data-limit': -1 is not in the range x>=0."),
        (["--listen", "tcp://127.0.0.1:0", "--data-spill-dir", "/tmp/spill"],
         "shoal node: error: data_spill_dir takes effect beyond data_limit: give data_limit too"),
        (["--listen", "tcp://127.0.0.1:0", "--join-timeout", "0"],
         "shoal node: error: Invalid value for '--join-timeout': 0.0 is not in the range x>0."),
        ([], "shoal node: error: Missing option '--listen'."),
    ],
)  # fmt: skip
def test_an_option_given_wrong_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    out = _shoal("node", *args, "--import", "tests.sample_actors")
    assert (out.returncode, out.stderr, out.stdout) == (2, line + "\n", ""), out


def test_a_module_that_does_not_import_is_named_with_its_error(tmp_path: Path) -> None:
    out = _shoal("node", "--listen", "tcp://127.0.0.1:0", "--import", "no_such_module")
    assert (out.returncode, out.stdout) == (1, ""), out
    assert out.stderr == (
        "shoal node: error: cannot import module 'no_such_module': ModuleNotFoundError: "
        "No module named 'no_such_module'\n"
    )
    (tmp_path / "broken_actors.py").write_text(
        "import actors\nraise RuntimeError('no database here\\nsecond line')\n"
    )
    out = _shoal("node", "--listen", "tcp://127.0.0.1:0", "--import", "broken_actors", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (1, ""), out
    assert out.stderr == (
        "shoal node: error: cannot import module 'broken_actors': RuntimeError: no database "
        "here second line\n"
    )
    (tmp_path / "typo_actors.py").write_text("def f(:\n")
    out = _shoal("node", "--listen", "tcp://127.0.0.1:0", "--import", "typo_actors", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out
    assert out.stderr.startswith(
        "shoal node: error: cannot import module 'typo_actors': SyntaxError: "
    ), out


def test_seeds_that_do_not_answer_are_named_with_how_long_they_were_tried() -> None:
    dead = [f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"]
    args = ["--listen", "tcp://127.0.0.1:0", "--import", "tests.sample_actors"]
    out = _shoal("node", *args, "--seed", dead[0], "--seed", dead[1], "--join-timeout", "1.5")
    assert (out.returncode, out.stdout) == (1, ""), out
    assert out.stderr == (
        f"shoal node: error: cannot join the cluster: no seed answered within 1.5 s "
        f"(tried {dead[0]}, {dead[1]})\n"
    )


def test_a_node_that_serves_no_actor_type_warns_in_one_line_and_runs() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "node", "--listen", "tcp://127.0.0.1:0"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the process ends (EOF) if it fails
        assert line.startswith("listening on tcp://127.0.0.1:"), line
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0 and stdout == ""
    assert stderr == (
        "shoal node: warning: this node serves no actor type (no --import defined an @actor "
        "class): it joins as a member that hosts nothing\n"
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
        f"shoal keygen: error: {public} exists already: not overwriting a key"
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
        assert lines[0].startswith("shoal node: error: ") and message in lines[0], (args, lines)


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
