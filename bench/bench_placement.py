"""How much of a remote round trip is CPU placement: the same ping-pongs with every process on
one CPU, and left to the scheduler.

Run: ``.venv/bin/python bench/bench_placement.py`` (Linux; needs at least 2 CPUs).

A request/reply between two processes wakes a sleeping thread at every hop: 2 hops for a pipe,
6 for ZeroMQ (each process's zmq I/O thread relays in both directions). Waking a thread on
another CPU, if that CPU sleeps, costs far more than a switch on the same CPU (on a virtual
machine the sleeping vCPU must be woken by the host). Rows, each a sequential ping-pong timed
per call (p50 over N calls, median of the repetitions):

* ``pipe``: two processes, one byte each way over a pair of pipes (os.read/os.write);
* ``sync pyzmq``: the blocking DEALER -> ROUTER floor of ``bench_remote.py``;
* ``shoal``: ``await c.incr(1)`` from a client node to a node process.

Each row runs "one CPU" (every process and thread pinned to CPU 0 with sched_setaffinity) and
"free" (the scheduler places them). What this shows: the floors and shoal differ by their CPU
work per call ("one CPU" column), while "free" adds each machine's cost of cross-CPU wake-ups.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import bench_remote as br
import zmq
from _util import median, percentile, run, table

from actors import Node
from bench.remote_actors import RemoteCounter
from tests.cluster import NodeProcess

CPU0 = {0}


def pin_process(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of ``pid`` (None: allow every CPU)."""
    allowed = cpus if cpus is not None else set(range(os.cpu_count() or 1))
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), allowed)


def p50_us(ns: list[int]) -> float:
    ns.sort()
    return percentile(ns, 50) / 1e3


def pipe_echo_child(rfd: int, wfd: int) -> None:
    while os.read(rfd, 1):
        os.write(wfd, b"y")


def pipe_row(n: int, cpus: set[int] | None) -> float:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(a_w)
        os.close(b_r)
        pipe_echo_child(a_r, b_w)
        os._exit(0)
    os.close(a_r)
    os.close(b_w)
    try:
        pin_process(pid, cpus)
        pin_process(os.getpid(), cpus)
        pc = time.perf_counter_ns
        out = []
        for _ in range(n):
            t0 = pc()
            os.write(a_w, b"x")
            os.read(b_r, 1)
            out.append(pc() - t0)
        return p50_us(out)
    finally:
        pin_process(os.getpid(), None)
        os.close(a_w)
        os.waitpid(pid, 0)
        os.close(b_r)


def zmq_row(sock: zmq.Socket, server_pid: int, n: int, cpus: set[int] | None) -> float:  # type: ignore[type-arg]
    pin_process(server_pid, cpus)
    pin_process(os.getpid(), cpus)
    try:
        out = [0] * n
        asyncio.run(br.zmq_sync_seq(sock, n, out))
        return p50_us(out)
    finally:
        pin_process(os.getpid(), None)


async def shoal_row(node: Node, server_pid: int, n: int, cpus: set[int] | None) -> float:
    c = node.ref(RemoteCounter, "placement")
    pin_process(server_pid, cpus)
    pin_process(os.getpid(), cpus)
    try:
        out = [0] * n
        await br.shoal_seq(c, n, out)
        return p50_us(out)
    finally:
        pin_process(os.getpid(), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls per row and placement")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median is printed)")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.reps = 1000, 1
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        print("needs Linux with at least 2 CPUs")
        return
    server = NodeProcess(imports=["bench.remote_actors"])
    zproc, zaddr = br.spawn_floor("zmq")
    ctx = zmq.Context()
    sock = br.dealer(ctx, zaddr)
    got: dict[tuple[str, str], list[float]] = {}
    placements: list[tuple[str, set[int] | None]] = [("one CPU", CPU0), ("free", None)]

    async def shoal_all() -> None:
        async with Node(seeds=[server.address], serve=()) as node:
            await shoal_row(node, server.proc.pid, 2000, None)  # warm
            for _ in range(args.reps):
                for label, cpus in placements:
                    got.setdefault(("shoal", label), []).append(
                        await shoal_row(node, server.proc.pid, args.calls, cpus)
                    )

    try:
        zmq_row(sock, zproc.pid, 2000, None)  # warm
        for _ in range(args.reps):
            for label, cpus in placements:
                got.setdefault(("pipe", label), []).append(pipe_row(args.calls, cpus))
                got.setdefault(("sync pyzmq", label), []).append(
                    zmq_row(sock, zproc.pid, args.calls, cpus)
                )
        run(shoal_all())
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)
        br.stop_floor(zproc)
        server.kill()
    rows = []
    for name in ("pipe", "sync pyzmq", "shoal"):
        one, free = median(got[(name, "one CPU")]), median(got[(name, "free")])
        rows.append([name, one, free, free - one])
    sync_one, sync_free = rows[1][1], rows[1][2]
    rows.append(
        [
            "shoal / sync pyzmq",
            f"{rows[2][1] / sync_one:.2f}x",
            f"{rows[2][2] / sync_free:.2f}x",
            "",
        ]
    )
    table(
        ["sequential ping-pong", "p50 µs, one CPU", "p50 µs, free", "free - one CPU"],
        rows,
        title=(
            f"Round trips with every process on CPU 0 and with free placement: N={args.calls:,} "
            f"per row, median of {args.reps} reps ({os.cpu_count()} CPUs, python "
            f"{sys.version.split()[0]})"
        ),
    )


if __name__ == "__main__":
    main()
