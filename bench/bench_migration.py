"""Live migration of large states on a fresh cluster, beside raw pyzmq moving the same bytes.

Three node processes (as ``bench_locality.py``, without its training phase first); a
``Follower`` holding 1 MB, 4 MB and 64 MB of state moves A <-> B with ``node.migrate``, timed at
the client (median of ``2 * reps + 1`` moves after one untimed move there and back), beside a
blocking pyzmq process sending the same bytes as one message to a DEALER here (the floor, in the
same run).

    .venv/bin/python bench/bench_migration.py
    .venv/bin/python bench/bench_migration.py --reps 9
"""

from __future__ import annotations

import argparse

from _util import run, table
from bench_locality import MB, RawFloor, migration_times

from tests.cluster import NodeProcess, converged_client


async def main(args: argparse.Namespace) -> None:
    imports = ("bench.locality_actors", "tests.sample_actors")
    extra = ["--rebalance-period", "0.5"]  # as bench_locality.py
    procs = [await NodeProcess.astart(extra=extra, imports=imports)]
    try:
        for _ in range(2):
            procs.append(
                await NodeProcess.astart(seeds=[procs[0].address], extra=extra, imports=imports)
            )
        async with converged_client(procs, 3) as client:
            a, b = procs[0].address, procs[1].address
            rows = []
            for size in (1 * MB, 4 * MB, 64 * MB):
                took = await migration_times(client, a, b, size, 2 * args.reps + 1)
                floor = RawFloor(size)
                try:
                    raw = floor.seconds(args.reps)
                finally:
                    floor.close()
                rows.append(
                    [
                        f"{size // MB} MB of state",
                        f"{took * 1e3:.2f}",
                        f"{raw * 1e3:.2f}",
                        f"{took / raw:.2f}x",
                        "<= 1.5x",
                    ]
                )
            table(["migration", "ms", "raw pyzmq ms", "/ raw", "bar"], rows)
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4, help="moves: 2 * reps + 1")
    run(main(parser.parse_args()))
