"""The ``shoal`` command: ``shoal node`` runs a cluster member, ``shoal demo`` the main job."""

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

from runtime.activation import DEFAULT_MAILBOX_LIMIT
from runtime.catalog import DEFAULT_MAX_ACTIVATIONS
from runtime.rebalancer import DEFAULT_PERIOD

__all__ = ["GC_THRESHOLD", "main", "parse_resources", "raise_descriptor_limit", "tune_gc"]

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


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise this process's limit of open descriptors (``RLIMIT_NOFILE``) to its hard limit;
    returns ``(soft, hard)`` as they are then.

    Every connection a node accepts costs a descriptor, and the common soft limit of 1,024
    let 1,100 silent TCP connections keep a new client waiting for 26 s. Raising the soft
    limit needs no privilege. A hard limit of "unlimited" is taken as the kernel's
    ``fs.nr_open`` (where the kernel refuses more, as much as it takes).
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if want == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                want = int(f.read())
        except (OSError, ValueError):
            want = 1 << 20
    while want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            break
        except (ValueError, OSError):
            want //= 2  # (macOS: at most OPEN_MAX without a hard limit)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


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
    "--mailbox-limit",
    default=DEFAULT_MAILBOX_LIMIT,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most messages one activation queues (asks beyond it wait, then fail Overloaded).",
)
@click.option(
    "--max-activations",
    default=DEFAULT_MAX_ACTIVATIONS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most activations this node hosts (beyond it idle ones are deactivated early).",
)
@click.option(
    "--gc-threshold",
    default=GC_THRESHOLD,
    show_default=True,
    help="Young-generation GC threshold of the process (0: Python's default).",
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
    mailbox_limit: int,
    max_activations: int,
    gc_threshold: int,
) -> None:
    """Run a node until SIGTERM or SIGINT, then leave gracefully."""
    sys.path.insert(0, "")
    for name in modules:
        importlib.import_module(name)
    res = parse_resources(resources)
    tune_gc(gc_threshold)
    raise_descriptor_limit()
    options = {
        "mailbox_limit": mailbox_limit,
        "max_activations": max_activations,
        "rebalance_period": rebalance_period,
        "data_limit": data_limit,
        "data_spill_dir": data_spill_dir,
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
@click.option("--nodes", default=3, show_default=True, help="Node processes to start.")
def demo(nodes: int) -> None:
    """Run the main job: a small local cluster and what it shows."""
    from runtime.demo import run_demo

    sys.exit(uvloop.run(run_demo(nodes)))
