"""Router benchmarks on a 5-node loopback cluster of real processes.

1. Cold first call vs warm call to an actor: latency p50 and p90, and data-plane envelopes per
   call counted on every node (asks, tells, replies, errors; membership traffic and view syncs,
   which are CONTROL envelopes, excluded). The warm call is the floor each cold figure is given
   as a ratio of. Cold calls are measured in three cases, all in one run:

   * right after a ring change: a 6th node joins (or one of 6 leaves, SIGTERM: a graceful
     leave), and at once sequential first calls to fresh keys for ``--window`` seconds; until
     every member confirmed the new view ("settled views", ``router/directory.py``) first calls
     that reach an owner wait, and the client learns the new member list only on its next
     refresh (``CLIENT_REFRESH``, 1 s), so its first calls may go to a former owner first;
   * on a stable ring (the owner activates: one hop);
   * warm: the stable-ring keys called again.

   Stable and warm calls are measured before the ring changes and again after the last change,
   and pooled: the machine's speed drifts over a run.
2. Failure detection: SIGKILL one node, time until every survivor has removed it; repeated
   (a fresh node replaces each victim). The floor is SWIM's configured suspicion timeout.

Keys moved on a join are measured by ``bench/bench_ring.py``; a steady load while members
come and go by ``bench/bench_churn.py``.

    .venv/bin/python bench/bench_cluster.py            # 2 x 500 keys, 10 changes, 20 kills (~3 min)
    .venv/bin/python bench/bench_cluster.py --quick    # 2 x 100 keys, 4 changes, 3 kills
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import time
from dataclasses import dataclass, field

from _nodes import envelopes, node_agents, wait_members
from _util import percentile, ratio, run, table

from actors import ActorError, Node
from router.swim import SwimConfig
from tests.cluster import NodeProcess, converged_client, ring_owner

#: Calls this soon after a change are also reported apart (the narrowest "right after").
EARLY = 0.1


@dataclass
class Phase:
    """Sequential calls of one kind: latencies, envelopes, failures."""

    lat: list[float] = field(default_factory=list)
    early: list[float] = field(default_factory=list)  # latencies of calls sent < EARLY s in
    envelopes: int = 0
    metered: int = 0  # calls whose envelopes were counted
    failed: dict[str, int] = field(default_factory=dict)
    sample: dict[str, str] = field(default_factory=dict)
    #: (change, seconds since it began, error name, message) of every failed call
    failures: list[tuple[str, float, str, str]] = field(default_factory=list)

    def row(self, name: str, warm: Phase | None) -> list[object]:
        lat = sorted(self.lat)
        p50, p90 = percentile(lat, 50) * 1e6, percentile(lat, 90) * 1e6
        per_call = self.envelopes / self.metered if self.metered else float("nan")
        if warm is None:
            return [name, len(lat), p50, p90, per_call, "1.00x", "1.00x"]
        w = sorted(warm.lat)
        w50, w90 = percentile(w, 50) * 1e6, percentile(w, 90) * 1e6
        return [name, len(lat), p50, p90, per_call, ratio(p50, w50), ratio(p90, w90)]


class Meters:
    """Meter actors, several per member, to read every node's envelope counters. A reading goes
    to a Meter the client's current ring sends straight to its host (no redirect to count)."""

    def __init__(self, client: Node) -> None:
        self.client = client
        self.hosted: dict[str, list[str]] = {}
        self._n = 0

    def _pick(self) -> dict[str, str]:
        members = self.client.members
        chosen: dict[str, str] = {}
        for address in members:
            keys = self.hosted.setdefault(address, [])
            for key in keys:
                if ring_owner(members, "Meter", key) == address:
                    chosen[address] = key
                    break
            else:  # a fresh key this member owns: the reading activates it there
                while True:
                    self._n += 1
                    key = f"meter-{self._n}"
                    if ring_owner(members, "Meter", key) == address:
                        break
                keys.append(key)
                chosen[address] = key
        return chosen

    async def read(self) -> dict[str, int]:
        return await envelopes(self.client, self._pick())

    async def verify(self) -> bool:
        """Each Meter is where it was assumed to be (else the last figure is wrong)."""
        ok = True
        for address, keys in self.hosted.items():
            where = await asyncio.gather(
                *(self.client.locate(self.client.ref("Meter", k)) for k in keys)
            )
            kept = [k for k, host in zip(keys, where, strict=True) if host == address]
            ok = ok and len(kept) == len(keys)
            self.hosted[address] = kept
        return ok

    def forget(self, address: str) -> None:
        self.hosted.pop(address, None)


def _count(before: dict[str, int], after: dict[str, int], again: dict[str, int]) -> int:
    """Envelopes between readings ``before`` and ``after``, less the cost of ``after`` itself
    (seen as ``again - after``). Members missing from ``after`` (gone) are left out."""
    delta = sum(n - before.get(a, 0) for a, n in after.items())
    return delta - (sum(again.values()) - sum(after.values()))


async def _sequential(
    client: Node, keys: list[str] | None, prefix: str, window: float, phase: Phase, note: str = ""
) -> int:
    """Sequential asks: to ``keys``, or to fresh keys ``prefix-i`` for ``window`` seconds.
    Returns how many calls were sent."""
    t0 = time.perf_counter()
    i = 0
    while True:
        if keys is not None:
            if i >= len(keys):
                break
            key = keys[i]
        else:
            if time.perf_counter() - t0 >= window:
                break
            key = f"{prefix}-{i}"
        i += 1
        s = time.perf_counter()
        try:
            await client.ref("Probe", key).touch.ask(i, timeout=10)
        except ActorError as err:
            name = type(err).__name__
            phase.failed[name] = phase.failed.get(name, 0) + 1
            phase.sample.setdefault(name, str(err))
            phase.failures.append((note, s - t0, name, str(err)))
            continue
        took = time.perf_counter() - s
        phase.lat.append(took)
        if s - t0 < EARLY:
            phase.early.append(took)
    return i


async def _measure(client: Node, meters: Meters, keys: list[str], phase: Phase) -> None:
    before = await meters.read()
    before = await meters.read()  # the second: every Meter active, the cache warm
    await _sequential(client, keys, "", 0, phase)
    after = await meters.read()
    again = await meters.read()
    phase.envelopes += _count(before, after, again)
    phase.metered += len(keys)


async def cold_vs_warm(
    client: Node, procs: list[NodeProcess], n: int, changes: int, window: float
) -> None:
    meters = Meters(client)
    tag = random.getrandbits(40)
    stable, warm, joined, left, early = Phase(), Phase(), Phase(), Phase(), Phase()
    await asyncio.sleep(1.0)  # every view settled
    first = [f"cold-{tag}-s{i}" for i in range(n)]
    await _measure(client, meters, first, stable)
    await _measure(client, meters, first, warm)
    codes = []
    for c in range(changes):
        before = await meters.read()
        before = await meters.read()
        prefix = f"cold-{tag}-c{c}"
        if c % 2 == 0:  # a 6th node joins
            phase = joined
            procs.append(await NodeProcess.astart(seeds=[procs[0].address]))
            note = f"change {c + 1}: {procs[-1].address} joined"
            sent = await _sequential(client, None, prefix, window, phase, note)
        else:  # one of the 6 leaves gracefully
            phase = left
            victim = random.choice(procs[1:])
            procs.remove(victim)
            victim.signal(signal.SIGTERM)
            exiting = asyncio.ensure_future(victim.aterminate())
            note = f"change {c + 1}: SIGTERM to {victim.address}"
            sent = await _sequential(client, None, prefix, window, phase, note)
            codes.append(await exiting)
            meters.forget(victim.address)
            before.pop(victim.address, None)
        await wait_members(client, [p.address for p in procs])
        after = await meters.read()
        again = await meters.read()
        if await meters.verify():
            phase.envelopes += _count(before, after, again)
            phase.metered += sent
        else:
            print(f"  change {c + 1}: a Meter was not where assumed; its envelopes not counted")
        early.lat += phase.early
        phase.early = []
        await asyncio.sleep(1.0)  # let the ring be stable again before the next change
    await asyncio.sleep(1.0)
    last = [f"cold-{tag}-t{i}" for i in range(n)]
    await _measure(client, meters, last, stable)
    await _measure(client, meters, last, warm)

    rows = [
        joined.row(f"cold, first {window:g} s after a join (5 -> 6)", warm),
        left.row(f"cold, first {window:g} s after a leave (6 -> 5)", warm),
        early.row(f"cold, first {EARLY:g} s after either", warm),
        stable.row("cold, ring stable", warm),
        warm.row("warm", None),
    ]
    rows[2][4] = float("nan")  # envelopes are counted per change, not per part of one
    print()
    table(
        [
            "call (sequential asks)",
            "calls",
            "p50 us",
            "p90 us",
            "envelopes/call",
            "p50 / warm",
            "p90 / warm",
        ],
        rows,
        f"Cold first call vs warm call, 5 nodes + client, {changes} ring changes "
        f"({(changes + 1) // 2} joins, {changes // 2} graceful leaves)",
    )
    w50 = statistics.median(warm.lat)
    for name, ph in (("after a change", [*joined.lat, *left.lat]), ("ring stable", stable.lat)):
        r = statistics.median(ph) / w50 if ph else float("nan")
        print(f"  bar cold <= 1.5x warm, {name}: {r:.2f}x -> {'met' if r <= 1.5 else 'NOT met'}")
    for name, ph in (("join", joined), ("leave", left), ("stable", stable), ("warm", warm)):
        if ph.failed:
            print(f"  FAILED calls ({name}): {ph.failed}")
            for note, at, err, msg in ph.failures[:20]:
                print(f"    {note}, a call sent {at:.3f} s after: {err}: {msg}")
    if any(code != 0 for code in codes):
        print(f"  a leaver exited with codes {codes}")
    print(
        "  (a leaver's own counters are lost with it: envelopes it received in its last moments "
        "are not counted)"
    )


async def detection(procs: list[NodeProcess], client: Node, kills: int) -> None:
    cfg = SwimConfig()
    times = []
    for i in range(kills):
        addresses = [p.address for p in procs]
        infos = await node_agents(client, addresses)
        victim = random.choice(procs[1:])
        survivors = [a for a in addresses if a != victim.address]
        victim.kill()
        t0 = time.monotonic()
        while True:
            views = await asyncio.gather(
                *(client.ref("NodeInfo", infos[a]).view() for a in survivors),
                return_exceptions=True,
            )
            if all(isinstance(v, list) and victim.address not in v for v in views):
                break
            if time.monotonic() - t0 > 30:
                raise RuntimeError(f"a survivor never removed the victim: {views}")
            await asyncio.sleep(0.02)
        took = time.monotonic() - t0
        times.append(took)
        procs.remove(victim)
        procs.append(await NodeProcess.astart(seeds=[procs[0].address]))
        await wait_members(client, [p.address for p in procs])
        print(f"  kill {i + 1:2d}: every survivor removed the victim after {took:.2f} s")
    print(
        f"\nFailure detection over {kills} SIGKILLs (5 nodes, period {cfg.period} s, "
        f"suspicion {cfg.suspicion_timeout} s)"
    )
    print(f"{'':<26} {'seconds':>8}")
    print(f"{'floor: suspicion timeout':<26} {cfg.suspicion_timeout:8.2f}")
    print(f"{'mean':<26} {statistics.mean(times):8.2f}")
    print(f"{'p50':<26} {statistics.median(times):8.2f}")
    print(f"{'max':<26} {max(times):8.2f}   (bar: 5.0 s)")


async def main(args: argparse.Namespace) -> None:
    procs: list[NodeProcess] = []
    try:
        procs.append(await NodeProcess.astart())
        for _ in range(4):
            procs.append(await NodeProcess.astart(seeds=[procs[0].address]))
        async with converged_client(procs, 5) as client:
            await cold_vs_warm(client, procs, args.keys, args.changes, args.window)
            await detection(procs, client, args.kills)
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=500, help="stable-ring keys per pass")
    parser.add_argument("--changes", type=int, default=10, help="ring changes (join, leave, ...)")
    parser.add_argument("--window", type=float, default=1.0, help="seconds of calls per change")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    if ns.quick:
        ns.keys, ns.changes, ns.kills = 100, 4, 3
    run(main(ns))
