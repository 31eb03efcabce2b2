"""Benchmark a large remote ``DataRef.get`` between node processes, beside raw pyzmq, and how
another actor on the holder answers while it moves.

Run: ``.venv/bin/python bench/bench_data.py`` (``--mb MB``, default 256, also ``--size``;
``--reps N``, default 3; ``--quick``: 32 MB, one repetition).

Setup: two ``shoal node`` processes on loopback (``tests.cluster.cluster(2)``). The holder A
makes the payload itself (``Shelf.make``: ``--mb`` MB of bytes, then a float64 numpy array of
the same bytes when numpy is installed), so it never travels in an ask; a ``Reader`` on B
fetches it with ``DataRef.get`` and times the get inside B (chunks of
``runtime.datastore.CHUNK_SIZE``, ``WINDOW`` in flight), first alone (the rows beside the
floors), then while this process's pure client pings a ``NodeInfo`` actor on A back to back
(that client, A's loop and their zmq threads then compete for the same CPUs); the pings'
latencies during those transfers are shown beside the same pings with nothing moving.

Floors, in the same run: a plain blocking pyzmq ROUTER in a process of its own holds the same
bytes; a blocking DEALER in this process pulls them (a) in the same chunks with the same window,
into a preallocated bytearray (``raw pyzmq, chunked``), and (b) as one message (``raw pyzmq,
one message``). Repetitions alternate the rows (after one get of each kind to warm the
connection and the allocators); medians are shown, and each repetition of the main rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any

import msgpack
import zmq
from _util import median, percentile, ratio, run, settle, table

from actors import Node
from runtime.datastore import CHUNK_SIZE, WINDOW
from tests.cluster import cluster, converged_client, ring_owner
from tests.sample_actors import pattern

MB = 1_000_000


# -- the floor ----------------------------------------------------------------------------------


def serve_floor(size: int) -> None:
    """The floor's server: ``[offset, length]`` -> that slice; ``[]`` -> everything."""
    payload = pattern(size)
    view = memoryview(payload)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:0")
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    while True:
        ident, msg = sock.recv_multipart()
        req = msgpack.unpackb(msg)
        part = view if not req else view[req[0] : req[0] + req[1]]
        sock.send(ident, zmq.SNDMORE)
        sock.send(part, copy=False)


def floor_chunked(sock: Any, size: int) -> float:
    """Pull ``size`` bytes in CHUNK_SIZE slices, WINDOW in flight; seconds taken."""
    buf = bytearray(size)
    t0 = time.perf_counter()
    offsets = list(range(0, size, CHUNK_SIZE))
    sent = 0
    inflight: list[int] = []
    while sent < len(offsets) and len(inflight) < WINDOW:
        sock.send(msgpack.packb([offsets[sent], CHUNK_SIZE]))
        inflight.append(offsets[sent])
        sent += 1
    while inflight:
        data = sock.recv(copy=False)
        offset = inflight.pop(0)
        buf[offset : offset + len(data)] = data.buffer
        if sent < len(offsets):
            sock.send(msgpack.packb([offsets[sent], CHUNK_SIZE]))
            inflight.append(offsets[sent])
            sent += 1
    took = time.perf_counter() - t0
    assert len(buf) == size
    return took


def floor_whole(sock: Any, size: int) -> float:
    t0 = time.perf_counter()
    sock.send(msgpack.packb([]))
    data = sock.recv(copy=False)
    took = time.perf_counter() - t0
    assert len(data) == size
    return took


# -- shoal --------------------------------------------------------------------------------------


def _key_on(client: Node, type_name: str, address: str) -> str:
    members = client.members
    for i in range(10_000):
        key = f"{type_name.lower()}-{i}"
        if ring_owner(members, type_name, key) == address:
            return key
    raise RuntimeError(f"no {type_name} key lands on {address}")


async def pings(ref: Any, until: asyncio.Future[Any] | None, n: int = 0) -> list[float]:
    """Back-to-back asks to ``ref`` until ``until`` is done (or ``n`` of them)."""
    out = []
    while (until is not None and not until.done()) or len(out) < n:
        t0 = time.perf_counter()
        await ref.address.ask(timeout=10)
        out.append(time.perf_counter() - t0)
    return out


async def bench_shoal(size: int, reps: int, sock: Any) -> None:
    kinds = ["bytes"]
    try:
        import numpy  # noqa: F401

        kinds.append("numpy")
    except ImportError:
        print("numpy is not installed: bytes only")
    alone: dict[str, list[float]] = {k: [] for k in kinds}
    pinged: dict[str, list[float]] = {k: [] for k in kinds}
    floors: dict[str, list[float]] = {"raw pyzmq, chunked": [], "raw pyzmq, one message": []}
    during: list[float] = []
    with cluster(2) as procs:
        async with converged_client(procs, 2) as client:
            holder, reader = (p.address for p in procs)
            shelf = client.ref("Shelf", _key_on(client, "Shelf", holder))
            fetcher = client.ref("Reader", _key_on(client, "Reader", reader))
            ping = client.ref("NodeInfo", _key_on(client, "NodeInfo", holder))
            assert await shelf.where() == holder and await fetcher.where() == reader
            assert await ping.address() == holder
            refs = {k: await shelf.make.ask(f"p-{k}", size, k, timeout=120) for k in kinds}
            for kind in kinds:  # one get each first: the connection and the allocator warm up
                await fetcher.digest.ask(refs[kind], timeout=300)
            idle = await pings(ping, None, 2_000)

            async def get(kind: str, rows: dict[str, list[float]], pinging: bool) -> None:
                settle()
                fetch = asyncio.ensure_future(fetcher.digest.ask(refs[kind], timeout=300))
                if pinging:
                    during.extend(await pings(ping, fetch))
                name, length, _, took = await fetch
                assert length == size, (name, length)
                rows[kind].append(took)

            for _ in range(reps):
                for kind in kinds:
                    await get(kind, alone, False)
                settle()
                floors["raw pyzmq, chunked"].append(
                    await asyncio.to_thread(floor_chunked, sock, size)
                )
                floors["raw pyzmq, one message"].append(
                    await asyncio.to_thread(floor_whole, sock, size)
                )
            for _ in range(reps):
                for kind in kinds:
                    await get(kind, pinged, True)
    floor = median(floors["raw pyzmq, chunked"])
    out = []
    for kind in kinds:
        t = median(alone[kind])
        out.append([f"shoal DataRef.get, {kind}", t, size / t / MB, ratio(floor, t)])
    for name, times in floors.items():
        t = median(times)
        out.append([name, t, size / t / MB, ratio(floor, t)])
    for kind in kinds:
        t = median(pinged[kind])
        row = f"(shoal DataRef.get, {kind}, while pinged)"
        out.append([row, t, size / t / MB, ratio(floor, t)])
    table(
        ["row", "seconds", "MB/s", "speed vs chunked floor"],
        out,
        f"remote get of {size / MB:.0f} MB between two processes (median of {reps}; the gets "
        "alone and the floors interleaved, then the gets while the holder is pinged)",
    )
    for kind in kinds:
        spread = ", ".join(f"{size / t / MB:.0f}" for t in alone[kind])
        print(f"  {kind} alone, each repetition: {spread} MB/s")
    spread = ", ".join(f"{size / t / MB:.0f}" for t in floors["raw pyzmq, chunked"])
    print(f"  raw pyzmq chunked, each repetition: {spread} MB/s")
    print()
    idle.sort()
    during.sort()
    table(
        ["pings to an actor on the holder", "n", "p50 ms", "p99 ms", "max ms"],
        [
            ["nothing moving", len(idle), *(1e3 * percentile(idle, p) for p in (50, 99, 100))],
            [
                "during the transfers",
                len(during),
                *(1e3 * percentile(during, p) for p in (50, 99, 100)),
            ],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", "--size", dest="mb", type=int, default=256, help="MB to move")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_floor(args.serve)
        return
    size = (32 if args.quick else args.mb) * MB
    reps = 1 if args.quick else args.reps
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(size)], stdout=subprocess.PIPE, text=True
    )
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        assert server.stdout is not None
        sock.connect(server.stdout.readline().strip())
        floor_whole(sock, size)  # warm the connection up
        run(bench_shoal(size, reps, sock))
    finally:
        sock.close(0)
        ctx.term()
        server.kill()
        server.wait()
        with contextlib.suppress(OSError):
            if server.stdout is not None:
                server.stdout.close()


if __name__ == "__main__":
    main()
