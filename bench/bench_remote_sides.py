"""Which side of a sequential remote ask costs what: shoal's client and server, each against a
bare event-loop peer that speaks shoal's wire protocol.

Run: ``.venv/bin/python bench/bench_remote_sides.py`` (``--quick`` for a smoke run).

The bare peers are the event-loop floor of ``bench_remote.py`` (plain pyzmq sockets driven by
``add_reader`` on uvloop, nothing else) but encode and decode shoal's envelopes with
``runtime.wire`` (``decode_fields``, ``encode_request``, ``encode_reply``), so a shoal node and a
bare peer can talk. Rows, every one a sequential ``incr(1)`` timed per call:

* ``minimal protocol``: the event-loop floor itself (a 4-field msgpack request, a 3-field reply);
* ``bare -> bare``: the same loops speaking shoal's 14-field validated envelopes;
* ``bare -> shoal``: a bare client asking a shoal node process (shoal's server side);
* ``shoal -> bare``: a shoal client node asking the bare server (shoal's client side);
* ``shoal -> shoal``: what ``bench_remote.py`` measures.

The rows take turns every 500 calls (so a noisy neighbour hits them all alike) and the p50 is
over all calls of a row. Ratios to ``bare -> bare`` attribute shoal's cost per round trip to
its wire format, its server side and its client side.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import bench_remote as br
import uvloop
import zmq
from _util import percentile, run, table

from actors import Node
from bench.remote_actors import RemoteCounter
from runtime import wire
from tests.cluster import NodeProcess

NOBLOCK, SNDMORE, EVENTS, POLLIN = br.NOBLOCK, br.SNDMORE, br.EVENTS, br.POLLIN
TYPE = "bench.RemoteCounter"
BLOCK = 500


def serve_bare() -> None:
    """A bare event-loop ROUTER that answers shoal ASK envelopes for ``incr``."""

    async def main() -> None:
        sock, _ = br.floor_router(zmq.Context())
        count = 0
        recv, send, get = sock.recv, sock.send, sock.getsockopt

        def on_readable() -> None:
            nonlocal count
            while get(EVENTS) & POLLIN:
                ident = recv(NOBLOCK)
                for fields in wire.decode_fields(recv(NOBLOCK)):
                    if fields[wire.F_KIND] != wire.ASK:
                        continue  # membership and other control traffic: not for us
                    if fields[wire.F_METHOD] == "incr":
                        count += fields[wire.F_ARGS][0]
                    send(ident, NOBLOCK | SNDMORE)
                    send(wire.encode_reply(fields[wire.F_CORR], "", count), NOBLOCK)

        loop = asyncio.get_running_loop()
        loop.add_reader(sock.FD, on_readable)
        loop.call_soon(on_readable)
        await asyncio.Event().wait()

    br._exit_with_parent()
    uvloop.run(main())


class BareClient(br.LoopDealer):
    """The event-loop floor's client speaking shoal's envelopes: ASK out, REPLY back."""

    def __init__(self, ctx: Any, address: str) -> None:
        super().__init__(ctx, address)
        self.corr = 0

    def results(self, frame: bytes) -> list[Any]:
        return [f[wire.F_BODY] for f in wire.decode_fields(frame) if f[wire.F_KIND] == wire.REPLY]

    async def ask(self, i: int = 0) -> Any:
        self.corr += 1
        deadline = time.time() + 30
        chunk = wire.encode_request(
            wire.ASK, self.corr, "", TYPE, "x", "incr", (1,), {}, deadline, 0, 12345
        )
        return await self.request(chunk)


async def measure(rows: dict[str, Callable[[], Awaitable[Any]]], blocks: int) -> dict[str, float]:
    """p50 µs per row over ``blocks`` turns of BLOCK calls each, rows interleaved."""
    pc = time.perf_counter_ns
    names = list(rows)
    for fn in rows.values():  # warm
        for _ in range(BLOCK):
            await fn()
    got: dict[str, list[int]] = {name: [] for name in names}
    for b in range(blocks):
        for name in names[b % len(names) :] + names[: b % len(names)]:
            fn, out = rows[name], got[name]
            for _ in range(BLOCK):
                t0 = pc()
                await fn()
                out.append(pc() - t0)
    result = {}
    for name, ns in got.items():
        ns.sort()
        result[name] = percentile(ns, 50) / 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--blocks", type=int, default=60, help=f"turns of {BLOCK} calls per row")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.serve:
        return serve_bare()
    if args.quick:
        args.blocks = 5
    bare = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bare.stdout is not None
    bare_addr = bare.stdout.readline().strip()
    floor_proc, floor_addr = br.spawn_floor("loopzmq")
    server = NodeProcess(imports=["bench.remote_actors"])
    ctx = zmq.Context()
    clients = [
        BareClient(ctx, bare_addr),
        BareClient(ctx, server.address),
        br.LoopDealer(ctx, floor_addr),
    ]

    async def bench() -> dict[str, float]:
        to_bare, to_shoal, minimal = clients
        calls = iter(range(1, 1 << 62))
        async with Node(seeds=[server.address], serve=()) as node:
            c = node.ref(RemoteCounter, "x")

            def shoal_to_bare() -> Awaitable[Any]:
                # The client node routes by its ring, which does not know the bare server:
                # address it directly, as routing would once the ring said so.
                return node.calls.remote_ask(bare_addr, TYPE, "x", "incr", (1,), {}, None)

            return await measure(
                {
                    "minimal protocol (event-loop floor)": lambda: minimal.ask(next(calls)),
                    "bare -> bare (shoal's envelopes)": to_bare.ask,
                    "bare -> shoal (shoal's server side)": to_shoal.ask,
                    "shoal -> bare (shoal's client side)": shoal_to_bare,
                    "shoal -> shoal": lambda: c.incr(1),
                },
                args.blocks,
            )

    try:
        p50 = run(bench())
    finally:
        for client in clients:
            client.close()
        ctx.destroy(linger=0)
        server.kill()
        br.stop_floor(floor_proc)
        br.stop_floor(bare)
    base = p50["bare -> bare (shoal's envelopes)"]
    table(
        ["sequential ask", "p50 µs", "/ bare -> bare"],
        [[name, value, f"{value / base:.2f}x"] for name, value in p50.items()],
        title=(
            f"Sides of a remote ask: {args.blocks * BLOCK:,} calls per row, rows interleaved "
            f"every {BLOCK} calls"
        ),
    )


if __name__ == "__main__":
    main()
