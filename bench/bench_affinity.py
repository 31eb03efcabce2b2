"""Partner affinity: pairs of actors that call each other, placed apart by hashing, come together.

Three node processes on loopback (rebalancing every second: ``placement="data"``). 200 pairs of
``Follower`` actors (``tests/sample_actors.py``); a driver per pair asks one end to call the
other ``--burst`` times, then the other way round, in a loop. Placed by hashing, about two in
three pairs start on different nodes, so most of their calls cross the wire until the
rebalancer moves one end next to the other.

Reported, in one run:

* calls/s (the actors' calls to each other) in the first and in the last ``--sample`` seconds
  of a ``--seconds`` run of pairs placed by hashing;
* the floor: calls/s of 200 pairs placed together from the start (keys chosen so that both ends
  hash to the same node), measured for ``--sample`` seconds on the same processes;
* actors moved, pairs still apart at the end, activations per node (balance).

Bars (issue "Actors that move toward their data"): last/first >= 2x, last within 1.2x of the
floor, no node over 1.5x the mean activation count.

    .venv/bin/python bench/bench_affinity.py                 # 60 s run (~2 min)
    .venv/bin/python bench/bench_affinity.py --seconds 20 --sample 5
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

import _util  # noqa: F401  (puts the repository on sys.path)
from _util import run, table

from actors import Node
from tests.cluster import NodeProcess, converged_client, ring_owner


class Pairs:
    """Drivers of ``pairs``; ``calls`` counts the actors' calls to each other."""

    def __init__(self, client: Node, pairs: list[tuple[str, str]], burst: int) -> None:
        self.client = client
        self.pairs = pairs
        self.burst = burst
        self.calls = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._drive(x, y)) for x, y in self.pairs]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 60)

    async def _drive(self, x: str, y: str) -> None:
        a, b = self.client.ref("Follower", x), self.client.ref("Follower", y)
        while not self._stop.is_set():
            try:
                await a.chat(y, self.burst)
                await b.chat(x, self.burst)
                self.calls += 2 * self.burst
            except Exception as err:
                self.errors[type(err).__name__] += 1

    async def rate(self, seconds: float) -> float:
        """Calls/s over the next ``seconds``."""
        before, t0 = self.calls, time.monotonic()
        await asyncio.sleep(seconds)
        return (self.calls - before) / (time.monotonic() - t0)

    async def where(self) -> dict[str, str]:
        names = [k for p in self.pairs for k in p]
        found = await asyncio.gather(*(self.client.ref("Follower", k).where() for k in names))
        return dict(zip(names, found, strict=True))


def together_pairs(members: list[str], n: int, prefix: str) -> list[tuple[str, str]]:
    """``n`` pairs whose two keys hash to the same member, spread evenly over the members."""
    by_owner: dict[str, list[str]] = collections.defaultdict(list)
    pairs: list[tuple[str, str]] = []
    i = 0
    per_member = collections.Counter[str]()
    while len(pairs) < n:
        key = f"{prefix}{i}"
        i += 1
        owner = ring_owner(members, "Follower", key)
        if per_member[owner] >= -(-n // len(members)):
            continue
        waiting = by_owner[owner]
        if waiting:
            pairs.append((waiting.pop(), key))
            per_member[owner] += 1
        else:
            waiting.append(key)
    return pairs


async def main(args: argparse.Namespace) -> None:
    extra = ["--rebalance-period", str(args.period)]
    procs: list[NodeProcess] = [await NodeProcess.astart(extra=extra)]
    try:
        for _ in range(2):
            procs.append(await NodeProcess.astart(seeds=[procs[0].address], extra=extra))
        async with converged_client(procs, 3) as client:
            members = sorted(p.address for p in procs)
            # the floor first: pairs together from the start (they stay: nothing to gain)
            floor_pairs = Pairs(client, together_pairs(members, args.pairs, "t"), args.burst)
            start = await floor_pairs.where()
            assert all(start[x] == start[y] for x, y in floor_pairs.pairs)
            floor_pairs.start()
            await asyncio.sleep(2)  # warm up
            floor = await floor_pairs.rate(args.sample)
            await floor_pairs.stop()

            hashed = Pairs(client, [(f"a{i}", f"b{i}") for i in range(args.pairs)], args.burst)
            start = await hashed.where()
            apart = sum(start[x] != start[y] for x, y in hashed.pairs)
            t0 = time.monotonic()
            hashed.start()
            first = await hashed.rate(args.sample)
            await asyncio.sleep(max(0.0, args.seconds - 2 * args.sample - (time.monotonic() - t0)))
            last = await hashed.rate(args.sample)
            await hashed.stop()
            end = await hashed.where()
            moved = sum(start[k] != end[k] for k in start)
            still_apart = sum(end[x] != end[y] for x, y in hashed.pairs)
            counts = collections.Counter(end.values())
            mean = 2 * args.pairs / len(procs)
            busiest = max(counts.values()) / mean

            print(
                f"{args.pairs} pairs over 3 node processes, bursts of {args.burst} calls, "
                f"rebalancing every {args.period:g} s; {apart} pairs start apart"
            )
            table(
                ["partner calls", "calls/s", "/ floor"],
                [
                    [f"hashed, first {args.sample:g} s", f"{first:,.0f}", f"{first / floor:.2f}x"],
                    [f"hashed, last {args.sample:g} s", f"{last:,.0f}", f"{last / floor:.2f}x"],
                    ["floor: together from the start", f"{floor:,.0f}", "1.00x"],
                ],
            )
            print(
                f"moved {moved} actors ({apart} pairs started apart), {still_apart} pairs apart "
                f"at the end; activations per node {sorted(counts.values())} "
                f"(busiest {busiest:.2f}x the mean); errors {dict(hashed.errors) or 'none'}"
            )
            table(
                ["bar", "measured", "bar", "verdict"],
                [
                    [
                        "last / first",
                        f"{last / first:.2f}x",
                        ">= 2x",
                        "PASS" if last >= 2 * first else "FAIL",
                    ],
                    [
                        "floor / last",
                        f"{floor / last:.2f}x",
                        "<= 1.2x",
                        "PASS" if floor <= 1.2 * last else "FAIL",
                    ],
                    [
                        "busiest node / mean",
                        f"{busiest:.2f}x",
                        "<= 1.5x",
                        "PASS" if busiest <= 1.5 else "FAIL",
                    ],
                ],
            )
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200, help="calls per chat")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=1.0, help="rebalancing period (s)")
    run(main(parser.parse_args()))
