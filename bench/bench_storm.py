"""A storm of first calls on a 5-node cluster, with CPython's default garbage-collector
threshold (the floor) and with the one ``shoal node`` sets (``runtime.cli.tune_gc``).

Run: ``.venv/bin/python bench/bench_storm.py`` (``--quick`` for a smoke run).

Each of 5 node processes runs ``NodeInfo.hit_all``: concurrent first asks from that node to
``--keys`` Probe actors spread over the cluster (the storm of
``tests/test_cluster.py::test_single_activation...``), all five at once. Printed per setting
(median of the repetitions, settings alternating): how long the storm took, and the longest
a node's loop went without running a 10 ms timer (``bench.LoopLag``) -- SWIM declares a node
that stays silent for its ping timeout (0.2 s) plus suspicion timeout (1.5 s) dead.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _util import median, run, table

from runtime.cli import GC_THRESHOLD
from tests.cluster import cluster, converged_client, info_keys

FLOOR = "Python's default (700 on 3.11), floor"


async def storm(gc_threshold: int, keys: int) -> tuple[float, float, int]:
    """(storm seconds, worst loop lag over the nodes, failed calls) with one GC setting."""
    extra = ("--gc-threshold", str(gc_threshold))
    with cluster(5, imports=("tests.sample_actors", "bench.remote_actors"), extra=extra) as procs:
        client = await converged_client(procs, 5)
        try:
            addresses = [p.address for p in procs]
            infos = info_keys(client, addresses)
            assert client._cluster is not None
            lags = {}
            for i in range(100_000):
                owner = client._cluster.owner("bench.LoopLag", f"lag-{i}")
                lags.setdefault(owner, f"lag-{i}")
                if len(lags) == len(addresses):
                    break
            for key in lags.values():
                await client.ref("bench.LoopLag", key).start()
            names = [f"id-{i}" for i in range(keys)]
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    client.ref("NodeInfo", k).hit_all.ask("Probe", names, k, timeout=120)
                    for k in infos.values()
                ),
                return_exceptions=True,
            )
            seconds = time.perf_counter() - t0
            failed = sum(1 for r in results if not isinstance(r, int))
            worst = max([await client.ref("bench.LoopLag", k).max_lag() for k in lags.values()])
            return seconds, worst, failed
        finally:
            await client.stop()


async def bench(keys: int, reps: int) -> None:
    settings = {FLOOR: 0, f"shoal node ({GC_THRESHOLD:,})": GC_THRESHOLD}
    out: dict[str, list[tuple[float, float, int]]] = {name: [] for name in settings}
    for _ in range(reps):
        for name, threshold in settings.items():
            out[name].append(await storm(threshold, keys))
    floor = median([s for s, _, _ in out[FLOOR]])
    rows = []
    for name, results in out.items():
        seconds = median([s for s, _, _ in results])
        rows.append(
            [
                name,
                f"{seconds:.2f}",
                f"{median([lag for _, lag, _ in results]):.3f}",
                f"{max(lag for _, lag, _ in results):.3f}",
                sum(f for _, _, f in results),
                f"{seconds / floor:.2f}x",
            ]
        )
    table(
        ["GC of the node processes", "storm s", "worst lag s (median)", "worst lag s (max)",
         "failed hit_all", "time / floor"],
        rows,
        f"Storm of first calls: 5 nodes x {keys:,} concurrent asks each, {reps} repetitions",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000, help="first calls per node")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per setting")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.keys, args.reps = 2_000, 1
    run(bench(args.keys, args.reps))


if __name__ == "__main__":
    main()
