"""The ``shoal`` command: option parsing, ``shoal node`` lifecycle, ``shoal demo``."""

from __future__ import annotations

import click
import pytest

from runtime.cli import parse_resources
from runtime.demo import run_demo
from tests.cluster import NodeProcess

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


def test_node_with_unknown_import_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match="no_such_module"):
        NodeProcess(imports=["no_such_module"], timeout=20)


async def test_demo_runs() -> None:
    assert await run_demo(nodes=2, calls=50) == 0
