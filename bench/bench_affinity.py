"""Partner affinity: pairs of actors that call each other, placed apart by hashing, come together.

Three node processes on loopback (rebalancing every second: ``placement="data"``). 200 pairs of
``Follower`` actors, the two ends of each placed by hashing on different nodes (keys chosen so,
spread evenly), rally: one end asks the other ``--burst`` times, then tells it to do the same
back, and so on (``Follower.rally``; the client only starts them and reads each node's count
of partner calls). Every call crosses the wire until the rebalancer moves one end of the pair
next to the other.

Reported, in one run:

* calls/s (the actors' calls to each other) in the first and in the last ``--sample`` seconds
  of a ``--seconds`` run of pairs placed by hashing;
* the floor: calls/s of 200 pairs placed together from the start (keys chosen so that both ends
  hash to the same node), measured for ``--sample`` seconds on the same processes, first;
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
from tests.cluster import NodeProcess, converged_client, info_keys, ring_owner


class Pairs:
    """Rallies of ``pairs`` (``Follower.rally``: each end asks the other ``burst`` times, then
    tells it to do the same back; the client only starts them). ``info`` names a NodeInfo
    actor on every node, which counts the partner calls its node's rallies made."""

    def __init__(
        self,
        client: Node,
        pairs: list[tuple[str, str]],
        burst: int,
        info: dict[str, str],
        type_name: str = "Follower",
    ) -> None:
        self.type_name = type_name
        self.client = client
        self.pairs = pairs
        self.burst = burst
        self.info = info

    async def _all(self, method: str, *args: object) -> list[object]:
        return list(
            await asyncio.gather(
                *(
                    getattr(self.client.ref("NodeInfo", k), method)(*args)
                    for k in self.info.values()
                )
            )
        )

    async def calls(self) -> int:
        return sum(int(n) for n in await self._all("rally_calls"))  # type: ignore[call-overload]

    async def start(self) -> None:
        await self._all("rallies", True)
        for x, y in self.pairs:
            self.client.ref(self.type_name, x).rally.tell(y, self.burst)

    async def stop(self) -> None:
        """End every rally (each ends at its next turn) and wait until none is left."""
        await self._all("rallies", False)
        last = -1
        while (now := await self.calls()) != last:
            last = now
            await asyncio.sleep(0.5)

    async def rate(self, seconds: float) -> float:
        """Partner calls/s over the next ``seconds``."""
        before, t0 = await self.calls(), time.monotonic()
        await asyncio.sleep(seconds)
        return (await self.calls() - before) / (time.monotonic() - t0)

    async def where(self) -> dict[str, str]:
        names = [k for p in self.pairs for k in p]
        found = await asyncio.gather(*(self.client.ref(self.type_name, k).where() for k in names))
        return dict(zip(names, found, strict=True))


async def key_on(client: Node, address: str) -> str:
    """A Follower key whose first call lands on ``address``."""
    for i in range(5000):
        key = f"probe-{i}"
        if await client.ref("Follower", key).where() == address:
            return key
    raise RuntimeError(f"no Follower key lands on {address}")


def placed_pairs(
    members: list[str], n: int, prefix: str, together: bool, type_name: str = "Follower"
) -> list[tuple[str, str]]:
    """``n`` pairs whose two keys hash to the same member (``together``) or to two different
    ones, spread evenly over the members."""
    keys: dict[str, list[str]] = collections.defaultdict(list)
    i = 0
    pairs: list[tuple[str, str]] = []
    turn = 0
    while len(pairs) < n:
        key = f"{prefix}{i}"
        i += 1
        keys[ring_owner(members, type_name, key)].append(key)
        a = members[turn % len(members)]
        b = a if together else members[(turn + 1) % len(members)]
        if len(keys[a]) >= 1 + (a == b) and keys[b]:
            pairs.append((keys[a].pop(), keys[b].pop()))
            turn += 1
    return pairs


async def main(args: argparse.Namespace) -> None:
    extra = ["--rebalance-period", str(args.period)]
    procs: list[NodeProcess] = [await NodeProcess.astart(extra=extra)]
    try:
        for _ in range(2):
            procs.append(await NodeProcess.astart(seeds=[procs[0].address], extra=extra))
        async with converged_client(procs, 3) as client:
            members = sorted(p.address for p in procs)
            info = await info_keys(client, members)
            # the floor first: pairs together from the start (they stay: nothing to gain)
            floor_pairs = Pairs(
                client, placed_pairs(members, args.pairs, "t", together=True), args.burst, info
            )
            start = await floor_pairs.where()
            assert all(start[x] == start[y] for x, y in floor_pairs.pairs)
            await floor_pairs.start()
            await asyncio.sleep(2)  # warm up
            floor = await floor_pairs.rate(args.sample)
            await floor_pairs.stop()

            # the floor of apart pairs: the same placement, kept (PinnedFollower: hash)
            pinned = Pairs(
                client,
                placed_pairs(members, args.pairs, "p", False, "PinnedFollower"),
                args.burst,
                info,
                "PinnedFollower",
            )
            await pinned.start()
            await asyncio.sleep(2)
            apart_floor = await pinned.rate(args.sample)
            await pinned.stop()

            hashed = Pairs(
                client, placed_pairs(members, args.pairs, "p", together=False), args.burst, info
            )
            start = await hashed.where()
            apart = sum(start[x] != start[y] for x, y in hashed.pairs)
            t0 = time.monotonic()
            await hashed.start()
            first = await hashed.rate(args.sample)
            await asyncio.sleep(max(0.0, args.seconds - 2 * args.sample - (time.monotonic() - t0)))
            last = await hashed.rate(args.sample)
            await hashed.stop()
            # the floor again (the machine's speed drifts over a run): the mean of both
            await floor_pairs.start()
            await asyncio.sleep(2)
            floor_after = await floor_pairs.rate(args.sample)
            await floor_pairs.stop()
            floor_before, floor = floor, (floor + floor_after) / 2
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
                    [
                        "floor: together from the start (mean)",
                        f"{floor:,.0f}",
                        "1.00x",
                    ],
                    ["  floor before / after", f"{floor_before:,.0f} / {floor_after:,.0f}", ""],
                    [
                        "apart and kept apart (hash placement)",
                        f"{apart_floor:,.0f}",
                        f"{apart_floor / floor:.2f}x",
                    ],
                ],
            )
            print(
                f"moved {moved} actors ({apart} pairs started apart), {still_apart} pairs apart "
                f"at the end; activations per node {sorted(counts.values())} "
                f"(busiest {busiest:.2f}x the mean)"
            )
            for p in procs:
                key = await key_on(client, p.address)
                stats = await client.ref("Follower", key).rebalancer_stats()
                print(f"  rebalancer of {p.address}: {stats}")
            table(
                ["bar", "measured", "bar", "verdict"],
                [
                    [
                        "last / kept apart",
                        f"{last / apart_floor:.2f}x",
                        ">= 2x",
                        "PASS" if last >= 2 * apart_floor else "FAIL",
                    ],
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
    parser.add_argument("--burst", type=int, default=50, help="calls per chat")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=1.0, help="rebalancing period (s)")
    run(main(parser.parse_args()))
