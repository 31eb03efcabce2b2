"""Router benchmarks on a 5-node loopback cluster of real processes.

1. Cold first call vs warm call to an actor: latency p50 and data-plane envelopes per call,
   counted on every node (asks, tells, replies, errors; membership traffic excluded). The warm
   call is the floor the cold one is measured against. Cold calls are measured twice: right
   after the cluster formed (within ``HANDOFF_WINDOW`` of the last ring change an owner first
   asks the other members whether one of them still hosts the actor) and on a stable ring.
2. Failure detection: SIGKILL one node, time until every survivor has removed it; repeated
   (a fresh node replaces each victim). The floor is SWIM's configured suspicion timeout.

Keys moved on a join are measured by ``bench/bench_ring.py``.

    .venv/bin/python bench/bench_cluster.py            # 500 keys, 20 kills (~2 min)
    .venv/bin/python bench/bench_cluster.py --quick    # 100 keys, 3 kills
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Node
from router.swim import SwimConfig
from runtime.cluster import HANDOFF_WINDOW
from tests.cluster import NodeProcess


def _keys_per_node(client: Node, type_name: str, addresses: list[str]) -> dict[str, str]:
    assert client._cluster is not None
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(addresses):
        owner = client._cluster.owner(type_name, f"{type_name.lower()}-{i}")
        if owner in addresses:
            found.setdefault(owner, f"{type_name.lower()}-{i}")
        i += 1
    return found


async def _wait_members(client: Node, addresses: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sorted(client.members) != sorted(addresses):
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster did not reach {addresses}: {client.members}")
        await asyncio.sleep(0.05)


async def _envelopes(client: Node, meters: dict[str, str]) -> int:
    counts = await asyncio.gather(*(client.ref("Meter", k).received() for k in meters.values()))
    assert client._messaging is not None
    # data plane only: ASK=1, TELL=2, REPLY=3, ERROR=4
    return sum(sum(c[1:5]) for c in counts) + sum(client._messaging.received[1:5])


async def _calls(
    client: Node, meters: dict[str, str], keys: list[str]
) -> tuple[float, float, float]:
    """Sequential asks to ``keys``: (p50 µs, p99 µs, data-plane envelopes per call)."""
    n = len(keys)
    before = await _envelopes(client, meters)
    before_meta = await _envelopes(client, meters)  # the metering calls themselves
    meter_cost = before_meta - before
    lat = []
    for k in keys:
        t0 = time.perf_counter()
        await client.ref("Probe", k).touch()
        lat.append(time.perf_counter() - t0)
    after = await _envelopes(client, meters)
    per_call = (after - before_meta - meter_cost) / n
    return statistics.median(lat) * 1e6, sorted(lat)[int(n * 0.99)] * 1e6, per_call


async def cold_vs_warm(client: Node, addresses: list[str], n: int, converged_at: float) -> None:
    """Cold calls just after the ring changed (owners first ask the other members whether
    one of them still hosts the actor: the handoff window), cold calls on a stable ring,
    and warm calls."""
    meters = _keys_per_node(client, "Meter", addresses)
    tag = random.getrandbits(40)
    unsettled = [f"cold-{tag}-a{i}" for i in range(n)]
    stable = [f"cold-{tag}-b{i}" for i in range(n)]
    rows = [("cold, ring changed < 5 s ago", *await _calls(client, meters, unsettled))]
    await asyncio.sleep(max(0.0, converged_at + HANDOFF_WINDOW + 0.5 - time.monotonic()))
    rows.append(("cold, ring stable", *await _calls(client, meters, stable)))
    rows.append(("warm", *await _calls(client, meters, stable)))
    warm_p50 = rows[-1][1]
    print(f"\nCold first call vs warm call, {n} actors, 5 nodes + client (sequential asks)")
    print(f"{'call':<30} {'p50 us':>8} {'p99 us':>8} {'envelopes/call':>15} {'p50 / warm':>11}")
    for phase, p50, p99, per_call in rows:
        print(f"{phase:<30} {p50:8.0f} {p99:8.0f} {per_call:15.2f} {p50 / warm_p50:10.2f}x")


async def detection(procs: list[NodeProcess], client: Node, kills: int) -> None:
    cfg = SwimConfig()
    times = []
    for i in range(kills):
        addresses = [p.address for p in procs]
        infos = _keys_per_node(client, "NodeInfo", addresses)
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
        procs.append(NodeProcess(seeds=[procs[0].address]))
        await _wait_members(client, [p.address for p in procs])
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
        procs.append(NodeProcess())
        for _ in range(4):
            procs.append(NodeProcess(seeds=[procs[0].address]))
        async with Node(seeds=[procs[0].address], serve=(), default_timeout=10) as client:
            await _wait_members(client, [p.address for p in procs])
            converged = time.monotonic()
            await cold_vs_warm(client, [p.address for p in procs], args.keys, converged)
            await detection(procs, client, args.kills)
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    if ns.quick:
        ns.keys, ns.kills = 100, 3
    uvloop.run(main(ns))
