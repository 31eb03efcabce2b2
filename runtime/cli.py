"""The ``shoal`` command: ``shoal node`` runs a cluster member, ``shoal keygen`` writes a key
pair for keyed links, ``shoal demo`` runs the main job.

A mistake is one line on stderr and a non-zero exit, never a traceback: ``shoal node: error:
...`` with exit code 2 for an option that is wrong as given (an address without a scheme, a
storage URL of no known kind, a negative limit) and 1 for a node that cannot start (a module
that does not import, a port in use, seeds that do not answer). A node that will serve no
actor type says so in one ``shoal node: warning: ...`` line and runs on (a member that hosts
nothing).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import logging
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

import click
import uvloop

from actors.decorator import registered_types
from actors.errors import NodeUnavailable
from runtime import options
from runtime.activation import DEFAULT_MAILBOX_LIMIT
from runtime.catalog import DEFAULT_MAX_ACTIVATIONS
from runtime.rebalancer import DEFAULT_PERIOD
from runtime.security import keygen as write_key_pair
from runtime.security import load_keys

__all__ = [
    "GC_THRESHOLD",
    "main",
    "one_line",
    "parse_resources",
    "raise_descriptor_limit",
    "tune_gc",
]

GC_THRESHOLD: Final = 10_000
"""The young-generation collection threshold of a node process (CPython 3.11's is 700)."""

#: Seconds ``shoal node`` keeps trying its seeds (``--join-timeout``).
JOIN_TIMEOUT: Final = 10.0


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


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with spaces, control characters escaped."""
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if joined.isprintable():
        return joined
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in joined)


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
            raise click.BadParameter(f"expected NAME=NUMBER[,NAME=NUMBER...], got {part!r}")
        try:
            amount = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number (in {part!r})") from None
        if not 0 <= amount < math.inf:
            raise click.BadParameter(f"{part!r}: an amount is a finite number >= 0")
        out[name.strip()] = amount
    return out


def _loopback(endpoint: str) -> bool:
    """Whether ``endpoint`` can be reached from this machine only (loopback, ipc://)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.partition("://")[2].rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


class _Shoal(click.Group):
    """The ``shoal`` group: every error is one line on stderr (see the module docstring)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        if not args and "prog_name" not in kwargs:
            kwargs["prog_name"] = "shoal"  # also as ``python -m runtime``
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `shoal`: the help
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if isinstance(ctx, click.Context) else "shoal"
            click.echo(f"{where}: error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("shoal: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class _Failed(click.ClickException):
    """A node that could not start: one line, exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.ctx = click.get_current_context(silent=True)


def _address(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    flag = param.opts[0] if param.opts else str(param.name)
    try:
        if isinstance(value, tuple):
            return tuple(options.address(flag, v) for v in value)
        return None if value is None else options.address(flag, value)
    except (TypeError, ValueError) as err:
        raise click.UsageError(str(err), ctx) from None


def _storage(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else options.storage_url(value)
    except (TypeError, ValueError) as err:
        raise click.UsageError(f"--storage: {err}", ctx) from None


@click.group(cls=_Shoal)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """shoal: floating, named, virtual actors."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@main.command()
@click.option(
    "--listen",
    required=True,
    callback=_address,
    help="Endpoint to serve on, e.g. tcp://127.0.0.1:5700 (port 0: any).",
)
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    callback=_address,
    help="A member to join through, e.g. tcp://127.0.0.1:5700 (repeatable).",
)
@click.option(
    "--import", "modules", multiple=True, help="Module defining @actor classes (repeatable)."
)
@click.option(
    "--storage",
    default=None,
    callback=_storage,
    help="State storage URL: memory://, sqlite:///PATH, postgresql://..., redis://...",
)
@click.option(
    "--resources",
    default=None,
    callback=lambda ctx, param, value: parse_resources(value),
    help="What this node offers, e.g. gpu=1,mem=16.",
)
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
    "--join-timeout",
    default=JOIN_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to keep trying the seeds before giving up.",
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
    resources: dict[str, float],
    data_limit: int | None,
    data_spill_dir: str | None,
    rebalance_period: float,
    join_timeout: float,
    mailbox_limit: int,
    max_activations: int,
    gc_threshold: int,
    key: str | None,
    trust: str | None,
) -> None:
    """Run a node until SIGTERM or SIGINT, then leave gracefully."""
    try:
        keyed = load_keys(key, trust, key_option="--key", trust_option="--trust") is not None
    except (ValueError, TypeError) as exc:
        raise _Failed(str(exc)) from None
    if not keyed and not _loopback(listen):
        click.echo(
            f"shoal node: warning: {listen} without --key/--trust: anyone who can reach it "
            "can call actors and change the cluster (README: Authenticated, encrypted links)",
            err=True,
        )
    sys.path.insert(0, "")
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, SyntaxError, whatever the module raised
            raise _Failed(f"cannot import module {name!r}: {type(exc).__name__}: {exc}") from None
    if not registered_types():
        click.echo(
            "shoal node: warning: this node serves no actor type (no --import defined an "
            "@actor class): it joins as a member that hosts nothing",
            err=True,
        )
    tune_gc(gc_threshold)
    raise_descriptor_limit()
    options_ = {
        "mailbox_limit": mailbox_limit,
        "max_activations": max_activations,
        "rebalance_period": rebalance_period,
        "data_limit": data_limit,
        "data_spill_dir": data_spill_dir,
        "join_timeout": join_timeout,
        "key": key,
        "trust": trust,
    }
    uvloop.run(_serve(listen, list(seeds), storage, resources, options_))


async def _serve(
    listen: str,
    seeds: list[str],
    storage: str | None,
    resources: dict[str, float],
    options_: dict[str, Any],
) -> None:
    from runtime.node import Node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        n = Node(listen=listen, seeds=seeds, storage=storage, resources=resources, **options_)
    except (TypeError, ValueError) as err:  # e.g. a spill directory without a limit
        raise click.UsageError(str(err), click.get_current_context(silent=True)) from None
    serving = False
    try:
        async with n:
            serving = True
            print(f"listening on {n.address}", flush=True)
            await stop.wait()
    except OSError as err:
        if serving:
            raise
        if err.errno == errno.EADDRINUSE:
            raise _Failed(f"cannot listen on {listen}: the address is in use") from None
        raise _Failed(f"cannot start: {err}") from None
    except NodeUnavailable as err:
        if serving:
            raise
        raise _Failed(f"cannot join the cluster: {err}") from None


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
        raise _Failed(str(exc)) from None
    print(f"public key: {public}")
    print(f"secret key: {secret}")


@main.command()
@click.option("--nodes", default=3, show_default=True, help="Node processes to start.")
def demo(nodes: int) -> None:
    """Run the main job: a small local cluster and what it shows."""
    from runtime.demo import run_demo

    sys.exit(uvloop.run(run_demo(nodes)))
