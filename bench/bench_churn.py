"""A steady load on a 5-node cluster of real processes while members come and go.

A client keeps ``--inflight`` asks in flight (64) to ``Probe`` actors, each call with a unique
id (``Probe.touch(call_id)``); most calls go to actors that already exist, one in ten
(``--fresh``) is a first call to a fresh key. Every ``--step`` seconds (5) a member leaves
(SIGTERM: a graceful leave, handing its activations over) or a fresh one joins, alternately,
so the cluster goes 5 -> 4 -> 5 -> 4 ... The floor is the same load for the same time on a
stable cluster of 5 (its own fresh processes), measured first in the same run.

Printed for both: calls/s (overall, and per ``--step`` window: min and median), failed calls
by error type, and exactness, counted after the load stopped:

* duplicate activations: keys active on two nodes at the end (``NodeInfo.active_keys``);
* calls that ran twice (a call id twice in the Probe records) and acknowledged calls missing
  from their actor's record (a second activation that took calls and was then lost).

A join or a graceful leave should fail no call, and the bar for duplicates is 0.

    .venv/bin/python bench/bench_churn.py            # 60 s each (~3 min)
    .venv/bin/python bench/bench_churn.py --quick    # 15 s each
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from _nodes import node_agents, wait_members
from _util import ratio, run, table

from actors import ActorError, Node
from tests.cluster import NodeProcess, converged_client

#: Actors activated before the timed load starts (the "existing" ones).
POOL = 2_000


class Load:
    """``inflight`` workers, each one ask after the other; every outcome recorded."""

    def __init__(self, client: Node, prefix: str, inflight: int, fresh: float, timeout: float):
        self.client = client
        self.prefix = prefix
        self.inflight = inflight
        self.fresh = fresh
        self.timeout = timeout
        self.keys: list[str] = []  # acknowledged at least once: existing actors
        self.sent: dict[int, str] = {}  # call id -> key, every call
        self.acked: dict[int, str] = {}  # call id -> key, answered calls
        self.done_at: list[float] = []  # when each answered call was answered
        self.failed: Counter[str] = Counter()
        self.sample: dict[str, str] = {}
        self.first_failed_at: dict[str, float] = {}
        self._seq = 0
        self._new = 0
        self._stop = asyncio.Event()
        self.t0 = 0.0

    def _fresh_key(self) -> str:
        self._new += 1
        return f"{self.prefix}-{self._new}"

    async def _call(self, key: str, new: bool) -> bool:
        self._seq += 1
        cid = self._seq
        self.sent[cid] = key
        try:
            await self.client.ref("Probe", key).touch.ask(cid, timeout=self.timeout)
        except ActorError as err:
            name = type(err).__name__
            self.failed[name] += 1
            self.sample.setdefault(name, str(err))
            self.first_failed_at.setdefault(name, time.monotonic() - self.t0)
            return False
        self.acked[cid] = key
        self.done_at.append(time.monotonic())
        if new:
            self.keys.append(key)
        return True

    async def warm_up(self, n: int) -> None:
        """Activate ``n`` actors (not timed)."""
        sem = asyncio.Semaphore(self.inflight)

        async def one() -> None:
            async with sem:
                await self._call(self._fresh_key(), True)

        await asyncio.gather(*(one() for _ in range(n)))
        self.done_at.clear()
        if self.failed:
            print(f"  {self.prefix}: warm-up calls failed: {dict(self.failed)} {self.sample}")
            self.failed.clear()
            self.sample.clear()
            self.first_failed_at.clear()

    async def _worker(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            new = rng.random() < self.fresh or not self.keys
            key = self._fresh_key() if new else rng.choice(self.keys)
            if not await self._call(key, new):
                await asyncio.sleep(0.05)  # a failing cluster is not hammered

    async def run(self, seconds: float) -> None:
        self.t0 = time.monotonic()
        workers = [
            asyncio.ensure_future(self._worker(random.Random(i))) for i in range(self.inflight)
        ]
        await asyncio.sleep(seconds)
        self._stop.set()
        await asyncio.gather(*workers)

    def rates(self, seconds: float, step: float) -> tuple[float, list[float]]:
        """Answered calls/s over the run (its first ``seconds``) and per ``step`` window."""
        n = int(seconds // step)
        counts = [0] * n
        total = 0
        for t in self.done_at:
            i = int((t - self.t0) // step)
            if t - self.t0 < seconds:
                total += 1
            if 0 <= i < n:
                counts[i] += 1
        return total / seconds, [c / step for c in counts]


@dataclass
class Exactness:
    twice: list[tuple[str, int]] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)
    failed_but_ran: int = 0
    doubled: list[str] = field(default_factory=list)
    keys: int = 0
    #: keys with missing calls: whose record starts after them (begun afresh: lost state), and
    #: whose record has gaps between calls it kept (calls taken by another activation)
    reset: int = 0
    gaps: int = 0


async def check(load: Load, live: list[str]) -> Exactness:
    """The exact counts of the module docstring, once the load stopped."""
    client = load.client
    keys = sorted(set(load.sent.values()))
    records: list[list[Any]] = []
    for i in range(0, len(keys), 1_000):
        batch = keys[i : i + 1_000]
        records += await asyncio.gather(
            *(client.ref("Probe", k).ran.ask(timeout=30) for k in batch)
        )
    ran: dict[str, Counter[Any]] = {
        k: Counter(calls) for k, calls in zip(keys, records, strict=True)
    }
    out = Exactness(keys=len(keys))
    every: Counter[Any] = Counter()
    for counts in ran.values():
        every.update(counts)
    out.twice = [(load.sent.get(c, "?"), c) for c, n in every.items() if n > 1]
    out.missing = [(k, c) for c, k in load.acked.items() if ran[k][c] == 0]
    lost: dict[str, list[int]] = {}
    for k, c in out.missing:
        lost.setdefault(k, []).append(c)
    for k, cids in lost.items():
        kept = [c for c in ran[k] if isinstance(c, int)]
        if not kept or max(cids) < min(kept):
            out.reset += 1
        else:
            out.gaps += 1
    out.failed_but_ran = sum(
        1 for c, k in load.sent.items() if c not in load.acked and ran[k][c] > 0
    )
    agents = await node_agents(client, live)
    per_node = await asyncio.gather(
        *(client.ref("NodeInfo", a).active_keys.ask("Probe", timeout=30) for a in agents.values())
    )
    active = Counter(k for node_keys in per_node for k in node_keys)
    out.doubled = sorted(k for k, n in active.items() if n > 1)
    return out


@dataclass
class Churn:
    """Alternately SIGTERM the oldest member and start a fresh one, every ``step`` seconds."""

    procs: list[NodeProcess]
    step: float
    events: list[str] = field(default_factory=list)
    leave_seconds: list[float] = field(default_factory=list)
    join_seconds: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    gone: list[NodeProcess] = field(default_factory=list)
    _exits: list[asyncio.Future[None]] = field(default_factory=list)

    async def run(self, seconds: float, t0: float) -> None:
        n = 0
        while True:
            at = t0 + (n + 1) * self.step
            if at >= t0 + seconds:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if n % 2 == 0:
                victim = self.procs.pop(0)
                self.gone.append(victim)
                victim.signal(signal.SIGTERM)
                self._exits.append(asyncio.ensure_future(self._exit(victim, time.monotonic())))
                self.events.append(f"{at - t0:5.1f} s  leave {victim.address}")
            else:
                s = time.monotonic()
                joiner = await NodeProcess.astart(seeds=[self.procs[-1].address])
                self.procs.append(joiner)
                self.join_seconds.append(time.monotonic() - s)
                self.events.append(f"{at - t0:5.1f} s  join  {joiner.address}")
            n += 1

    async def _exit(self, victim: NodeProcess, since: float) -> None:
        self.exit_codes.append(await victim.aterminate(timeout=30))
        self.leave_seconds.append(time.monotonic() - since)
        said = [
            line.rstrip()
            for line in victim.read_output().splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
        if said:
            self.events.append(f"        leaver {victim.address} logged: " + " | ".join(said[:4]))

    async def wait(self) -> None:
        await asyncio.gather(*self._exits)


@dataclass
class Result:
    rate: float
    windows: list[float]
    load: Load
    exact: Exactness


async def phase(args: argparse.Namespace, name: str, churn: bool) -> tuple[Result, Churn | None]:
    procs: list[NodeProcess] = []
    ch: Churn | None = None
    try:
        procs.append(await NodeProcess.astart())
        for _ in range(4):
            procs.append(await NodeProcess.astart(seeds=[procs[0].address]))
        async with converged_client(procs, 5) as client:
            load = Load(client, f"{name}-{random.getrandbits(32)}", args.inflight, args.fresh, 10)
            await load.warm_up(POOL)
            await asyncio.sleep(1.0)
            if churn:
                ch = Churn(procs, args.step)
                running = asyncio.ensure_future(load.run(args.seconds))
                await asyncio.sleep(0)
                await ch.run(args.seconds, load.t0)
                await running
                await ch.wait()
            else:
                await load.run(args.seconds)
            live = [p.address for p in procs]
            await wait_members(client, live)
            await asyncio.sleep(1.0)
            exact = await check(load, live)
            rate, windows = load.rates(args.seconds, args.step)
            return Result(rate, windows, load, exact), ch
    finally:
        for p in procs + (ch.gone if ch else []):
            p.kill()


def _row(name: str, r: Result, floor: Result) -> list[object]:
    failed = sum(r.load.failed.values())
    return [
        name,
        r.rate,
        min(r.windows),
        statistics.median(r.windows),
        ratio(r.rate, floor.rate),
        len(r.load.acked),
        failed,
        len(r.exact.doubled),
        len(r.exact.twice),
        len(r.exact.missing),
    ]


async def main(args: argparse.Namespace) -> None:
    floor, _ = await phase(args, "floor", churn=False)
    print(f"floor done: {floor.rate:.0f} calls/s")
    churned, ch = await phase(args, "churn", churn=True)
    assert ch is not None
    print()
    print("Membership changes (seconds into the load):")
    for e in ch.events:
        print(f"  {e}")
    print(
        f"  leaves: SIGTERM -> exit {statistics.mean(ch.leave_seconds):.2f} s mean, "
        f"exit codes {ch.exit_codes}; joins: process start -> serving "
        f"{statistics.mean(ch.join_seconds):.2f} s mean"
    )
    print()
    table(
        [
            "cluster",
            "calls/s",
            f"min / {args.step:g} s",
            "median",
            "/ floor",
            "answered",
            "failed",
            "active twice",
            "ran twice",
            "acked, missing",
        ],
        [_row("floor: stable, 5 nodes", floor, floor), _row("churn", churned, floor)],
        f"{args.inflight} asks in flight for {args.seconds:g} s, {args.fresh:.0%} first calls, "
        f"a member leaves or joins every {args.step:g} s",
    )
    for name, r in (("floor", floor), ("churn", churned)):
        print(
            f"  {name}: {r.exact.keys:,} actors, per-window calls/s "
            f"{', '.join(f'{w:.0f}' for w in r.windows)}"
        )
        if r.load.failed:
            print(f"  {name}: failed calls {dict(r.load.failed)}")
            for err, msg in r.load.sample.items():
                print(f"    {err} (first at {r.load.first_failed_at[err]:.1f} s): {msg}")
        if r.exact.failed_but_ran:
            print(f"  {name}: {r.exact.failed_but_ran} failed calls ran nevertheless")
        for what, items in (
            ("active twice", r.exact.doubled),
            ("ran twice", r.exact.twice),
            ("acked but missing", r.exact.missing),
        ):
            if items:
                print(f"  {name}: {what}, e.g. {items[:5]}")
        if r.exact.missing:
            print(
                f"  {name}: acknowledged calls missing on {r.exact.reset + r.exact.gaps:,} keys: "
                f"{r.exact.reset:,} whose record begins after them (begun afresh), "
                f"{r.exact.gaps:,} with gaps"
            )
    dup = len(churned.exact.doubled) + len(churned.exact.twice) + len(churned.exact.missing)
    print(f"  bar: no duplicate activation (0): {'met' if dup == 0 else 'NOT met'}")
    print(f"  planned changes fail no call: {'met' if not churned.load.failed else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--step", type=float, default=5.0, help="seconds between changes")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--fresh", type=float, default=0.1, help="share of first calls")
    parser.add_argument("--quick", action="store_true", help="15 s each")
    ns = parser.parse_args()
    if ns.quick:
        ns.seconds = 15
    run(main(ns))
