"""The ``shoal`` command: ``shoal node`` runs a cluster member, ``shoal keygen`` writes a key
pair for keyed links, ``shoal demo`` runs the main job."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

import click
import uvloop

from runtime.rebalancer import DEFAULT_PERIOD
from runtime.security import keygen as write_key_pair
from runtime.security import load_keys

__all__ = ["GC_THRESHOLD", "main", "parse_resources", "tune_gc"]

GC_THRESHOLD: Final = 10_000
"""The young-generation collection threshold of a node process (CPython 3.11's is 700)."""


def tune_gc(threshold: int = GC_THRESHOLD) -> None:
    """Set this process's garbage collector up for a node (``threshold`` 0: leave it as is).

    A node allocates a great deal, and in a storm of calls most of what it allocates is still
    alive (pending tasks, futures, turns). With CPython's default threshold the collector then
    walks those survivors again and again: in ``bench/bench_storm.py`` a storm took 3-5x longer,
    and single loop iterations grew past a second, long enough for failure detection to take
    a live node for a dead one. Collecting the young generation every ``threshold``
    allocations, with what the imports made frozen out of the collector's way, avoids that.
    An embedded node leaves its host process's collector alone; this is for ``shoal node``.
    """
    if threshold <= 0:
        return
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def parse_resources(text: str | None) -> dict[str, float]:
    """Parse ``gpu=1,mem=16`` into ``{"gpu": 1.0, "mem": 16.0}``."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=NUMBER, got {part!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number") from None
    return out


def _loopback(endpoint: str) -> bool:
    """Whether ``endpoint`` can be reached from this machine only (loopback, ipc://)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.partition("://")[2].rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """shoal: floating, named, virtual actors."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@main.command()
@click.option("--listen", required=True, help="Endpoint to serve on, e.g. tcp://127.0.0.1:5700.")
@click.option("--seed", "seeds", multiple=True, help="A member to join through (repeatable).")
@click.option(
    "--import", "modules", multiple=True, help="Module defining @actor classes (repeatable)."
)
@click.option("--storage", default=None, help="State storage URL, e.g. sqlite:///state.db.")
@click.option("--resources", default=None, help="What this node offers, e.g. gpu=1,mem=16.")
@click.option(
    "--data-limit",
    default=None,
    type=click.IntRange(min=0),
    help="Most bytes of data.put payloads held in memory (default: no limit).",
)
@click.option(
    "--data-spill-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Directory for payloads beyond --data-limit (else put fails beyond it).",
)
@click.option(
    "--rebalance-period",
    default=DEFAULT_PERIOD,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help='Seconds between moves of placement="data" actors toward what they use.',
)
@click.option(
    "--gc-threshold",
    default=GC_THRESHOLD,
    show_default=True,
    help="Young-generation GC threshold of the process (0: Python's default).",
)
@click.option(
    "--key",
    default=None,
    metavar="FILE",
    help="This node's CURVE secret key file (shoal keygen); needs --trust.",
)
@click.option(
    "--trust",
    default=None,
    metavar="DIR",
    help="Directory of the public keys (*.key) of the peers let in; needs --key.",
)
def node(
    listen: str,
    seeds: Sequence[str],
    modules: Sequence[str],
    storage: str | None,
    resources: str | None,
    data_limit: int | None,
    data_spill_dir: str | None,
    rebalance_period: float,
    gc_threshold: int,
    key: str | None,
    trust: str | None,
) -> None:
    """Run a node until SIGTERM or SIGINT, then leave gracefully."""
    try:
        keyed = load_keys(key, trust, key_option="--key", trust_option="--trust") is not None
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    if not keyed and not _loopback(listen):
        click.echo(
            f"warning: {listen} without --key/--trust: anyone who can reach it can call actors "
            "and change the cluster (README: Authenticated, encrypted links)",
            err=True,
        )
    sys.path.insert(0, "")
    for name in modules:
        importlib.import_module(name)
    res = parse_resources(resources)
    tune_gc(gc_threshold)
    options = {
        "rebalance_period": rebalance_period,
        "data_limit": data_limit,
        "data_spill_dir": data_spill_dir,
        "key": key,
        "trust": trust,
    }
    uvloop.run(_serve(listen, list(seeds), storage, res, options))


async def _serve(
    listen: str,
    seeds: list[str],
    storage: str | None,
    resources: dict[str, float],
    options: dict[str, Any],
) -> None:
    from runtime.node import Node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Node(
        listen=listen,
        seeds=seeds,
        storage=storage,
        resources=resources,
        **options,
    ) as n:
        print(f"listening on {n.address}", flush=True)
        await stop.wait()


@main.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--name",
    default="node",
    show_default=True,
    help="File name of the pair: NAME.key (public) and NAME.key_secret (secret).",
)
def keygen(directory: str, name: str) -> None:
    """Write a new CURVE key pair into DIR (made if missing) and print the two paths.

    NAME.key_secret (mode 0600) is this node's --key; copy NAME.key into the --trust
    directory of every node that may talk to it."""
    try:
        public, secret = write_key_pair(directory, name)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    print(f"public key: {public}")
    print(f"secret key: {secret}")


@main.command()
@click.option("--nodes", default=3, show_default=True, help="Node processes to start.")
def demo(nodes: int) -> None:
    """Run the main job: a small local cluster and what it shows."""
    from runtime.demo import run_demo

    sys.exit(uvloop.run(run_demo(nodes)))
