"""Locality: the seeds' model-training case, code moving to the data instead of data to code.

Three node processes on loopback (rebalancing every ``--period`` s). A data set of ``--mb`` MB
(float64 numpy, ``bench/locality_actors.py``) is made on node B and kept there. A trainer runs
``--iterations`` iterations, each reading the whole data set (``DataRef.get``) and taking one
logistic-regression gradient step on it. In one run:

* (a) remote: a trainer kept on node A (``placement="hash"``): every iteration fetches the data;
* (b) data: a trainer with ``placement="data"`` that starts on A and is moved by the runtime;
* (c) local: a trainer on B from the start (the floor).

Per-iteration time is measured at the client (the ask's round trip). (b)'s steady state is the
median of its iterations after the move. Bars (issue "Actors that move toward their data"):
(b) steady within 1.2x of (c), (a) at least 5x slower than (b), moved within 3 iterations.

Also, in the same run:

* migration of an actor holding 1 MB and 64 MB of state (``node.migrate``, timed at the client)
  beside the raw transfer of the same bytes over pyzmq between two processes (bar: <= 1.5x);
* a remote ``DataRef.get`` of the data set beside raw pyzmq moving the same bytes as one
  message (bar: >= 0.5x raw's speed).

    .venv/bin/python bench/bench_locality.py            # 100 MB, 30 iterations (~2 min)
    .venv/bin/python bench/bench_locality.py --mb 20 --iterations 12
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from typing import Any

import _util
import zmq
from _util import run, table
from bench_data import floor_whole

from actors import Node
from tests.cluster import NodeProcess, converged_client

MB = 1_000_000


async def key_on(client: Node, type_name: str, address: str, prefix: str) -> str:
    """A fresh key whose first call activates ``type_name`` on ``address``."""
    for i in range(5000):
        key = f"{prefix}-{i}"
        if await client.ref(type_name, key).where() == address:
            return key
    raise RuntimeError(f"no {type_name} key lands on {address}")


async def train(client: Node, type_name: str, key: str, ref: Any, n: int) -> list[list[Any]]:
    """``n`` iterations: ``[seconds at the client, node, fetch s, compute s, loss]`` each."""
    trainer = client.ref(type_name, key)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        node, fetch, compute, loss = await trainer.step.ask(ref, timeout=120)
        out.append([time.perf_counter() - t0, node, fetch, compute, loss])
    return out


class RawFloor:
    """A blocking pyzmq ROUTER process that sends ``size`` bytes on request (bench_data's)."""

    def __init__(self, size: int) -> None:
        here = str(_util.ROOT / "bench" / "bench_data.py")
        self.proc = subprocess.Popen(
            [sys.executable, here, "--serve", str(size)], stdout=subprocess.PIPE, text=True
        )
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        assert self.proc.stdout is not None
        self.sock.connect(self.proc.stdout.readline().strip())
        self.size = size
        floor_whole(self.sock, size)  # warm up

    def seconds(self, reps: int = 3) -> float:
        return statistics.median(floor_whole(self.sock, self.size) for _ in range(reps))

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            if self.proc.stdout is not None:
                self.proc.stdout.close()


async def migration_times(client: Node, a: str, b: str, size: int, reps: int) -> float:
    """Median seconds of ``node.migrate`` of a Follower holding ``size`` bytes, A <-> B, after
    one move there and back untimed (as the raw floor warms up with one transfer)."""
    ref = client.ref("Follower", await key_on(client, "Follower", a, f"heavy{size}"))
    await ref.load(size)
    await client.migrate(ref, to=b)
    await client.migrate(ref, to=a)
    times = []
    here, there = a, b
    for _ in range(reps):
        t0 = time.perf_counter()
        await client.migrate(ref, to=there)
        times.append(time.perf_counter() - t0)
        here, there = there, here
    assert (await ref.ballast_digest())[0] == size
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    extra = ["--rebalance-period", str(args.period)]
    imports = ("bench.locality_actors", "tests.sample_actors")
    procs = [await NodeProcess.astart(extra=extra, imports=imports)]
    try:
        for _ in range(2):
            procs.append(
                await NodeProcess.astart(seeds=[procs[0].address], extra=extra, imports=imports)
            )
        async with converged_client(procs, 3) as client:
            a, b = procs[0].address, procs[1].address
            maker = client.ref("DataSet", await key_on(client, "DataSet", b, "maker"))
            rows = args.mb * MB // 8 // args.cols
            dataset = await maker.make.ask("dataset", rows, args.cols, timeout=120)
            nbytes = rows * args.cols * 8
            n = args.iterations

            local = await train(
                client, "Trainer", await key_on(client, "Trainer", b, "local"), dataset, n
            )
            remote = await train(
                client,
                "PinnedTrainer",
                await key_on(client, "PinnedTrainer", a, "remote"),
                dataset,
                n,
            )
            moving = await train(
                client, "Trainer", await key_on(client, "Trainer", a, "moving"), dataset, n
            )
            assert all(r[1] == b for r in local) and all(r[1] == a for r in remote)
            moved_at = next((i for i, r in enumerate(moving) if r[1] == b), None)
            after = moving[moved_at + 1 :] if moved_at is not None else []
            t_local = statistics.median(r[0] for r in local[1:])
            t_remote = statistics.median(r[0] for r in remote[1:])
            t_steady = statistics.median(r[0] for r in after) if after else float("nan")
            fetch_remote = statistics.median(r[2] for r in remote[1:])
            compute = statistics.median(r[3] for r in local[1:])

            print(
                f"data set {nbytes / MB:.0f} MB ({rows:,} x {args.cols} float64) on node B; "
                f"{n} iterations each; rebalancing every {args.period:g} s"
            )
            table(
                ["per iteration", "ms", "/ local"],
                [
                    [
                        "(a) remote: kept on A",
                        f"{t_remote * 1e3:.1f}",
                        f"{t_remote / t_local:.2f}x",
                    ],
                    [
                        "(b) placement=data, after its move",
                        f"{t_steady * 1e3:.1f}",
                        f"{t_steady / t_local:.2f}x",
                    ],
                    ["(c) local: on B from the start", f"{t_local * 1e3:.1f}", "1.00x"],
                ],
            )
            print(
                f"(b) moved to the data after iteration {moved_at} "
                f"({'never' if moved_at is None else moved_at + 1} remote reads); "
                f"(a) spends {fetch_remote * 1e3:.1f} ms fetching, the step "
                f"{compute * 1e3:.1f} ms computing; (b)'s first iterations: "
                + ", ".join(f"{r[0] * 1e3:.0f}" for r in moving[:5])
                + " ms"
            )

            # migration of large states beside the raw transfer of the same bytes
            rows_mig = []
            for size in (1 * MB, 64 * MB):
                took = await migration_times(client, a, b, size, 2 * args.reps + 1)
                floor = RawFloor(size)
                try:
                    raw = floor.seconds(args.reps)
                finally:
                    floor.close()
                rows_mig.append((size, took, raw))
            table(
                ["migration", "ms", "raw pyzmq ms", "/ raw"],
                [
                    [f"{s // MB} MB of state", f"{t * 1e3:.1f}", f"{r * 1e3:.1f}", f"{t / r:.2f}x"]
                    for s, t, r in rows_mig
                ],
            )

            # a remote get of the data set beside raw pyzmq moving the same bytes
            fetches = sorted(r[2] for r in remote[1:])
            floor = RawFloor(nbytes)
            try:
                raw = floor.seconds(args.reps)
            finally:
                floor.close()
            get_s = statistics.median(fetches)
            table(
                ["remote get", "ms", "MB/s", "speed / raw"],
                [
                    [
                        f"DataRef.get, {nbytes / MB:.0f} MB",
                        f"{get_s * 1e3:.0f}",
                        f"{nbytes / get_s / MB:,.0f}",
                        f"{raw / get_s:.2f}x",
                    ],
                    [
                        "raw pyzmq, one message",
                        f"{raw * 1e3:.0f}",
                        f"{nbytes / raw / MB:,.0f}",
                        "1.00x",
                    ],
                ],
            )
            worst_mig = max(t / r for _, t, r in rows_mig)
            verdicts = [
                [
                    "(b) steady / (c) local",
                    f"{t_steady / t_local:.2f}x",
                    "<= 1.2x",
                    t_steady <= 1.2 * t_local,
                ],
                [
                    "(a) remote / (b) steady",
                    f"{t_remote / t_steady:.2f}x",
                    ">= 5x",
                    t_remote >= 5 * t_steady,
                ],
                [
                    "(b) moved within",
                    f"{moved_at}",
                    "<= 3 iterations",
                    moved_at is not None and moved_at <= 3,
                ],
                ["migration / raw (worst)", f"{worst_mig:.2f}x", "<= 1.5x", worst_mig <= 1.5],
                ["remote get speed / raw", f"{raw / get_s:.2f}x", ">= 0.5x", raw / get_s >= 0.5],
            ]
            table(
                ["bar", "measured", "bar", "verdict"],
                [[*v[:3], "PASS" if v[3] else "FAIL"] for v in verdicts],
            )
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the data set")
    parser.add_argument("--cols", type=int, default=100, help="columns of the data set")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the floors")
    parser.add_argument("--period", type=float, default=0.5, help="rebalancing period (s)")
    run(main(parser.parse_args()))
