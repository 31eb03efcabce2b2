"""What CurveZMQ costs: remote asks and tells over keyed links beside the same without keys,
in one run.

Run: ``.venv/bin/python bench/bench_curve.py`` (``--quick`` for a smoke run of a few seconds).

Setup: two node processes serve ``bench.RemoteCounter`` on loopback, one plain and one keyed
(``--key``/``--trust``; key pairs written by ``runtime.security.keygen`` into a temporary
directory, one trust directory for all). This process runs a pure client of each on one uvloop
(the keyed one with a trusted key pair of its own), so both see the same machine. For
information, raw sync pyzmq DEALER -> ROUTER (both ends blocking, ``--serve``) without and
with CURVE (the ROUTER a CURVE server without ZAP): what the encryption costs bare zmq.

1. Sequential ask: ``await c.incr(1)``, each call timed; the rows take turns every 500 calls
   (a noisy neighbour hits them alike); p50, p99, calls/s.
2. Tells: ``await c.incr.tell(1)`` N times, then one ask (count checked); msgs/s from the
   first tell to that answer.
3. 100 in flight: 100 worker coroutines, each looping ``await c.incr(1)``.

For 2 and 3 the rows run in an order that rotates by one each repetition, and CURVE's cost is
also given per repetition (plain rate / keyed rate within one repetition: a burst of noise from
a neighbour spoils one of them, not the median). Every row is warmed up first; the median over
passes or repetitions is shown. The bar (issue 12): keyed within 1.15x of plain, for the
ask's p50 and the tells' and in-flight rates.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import bench_remote as br
import uvloop
import zmq
from _util import median, ratio, run, settle, table

from actors import Node
from bench.remote_actors import RemoteCounter
from runtime import _zmqcalls
from runtime.security import keygen
from tests.cluster import NodeProcess

PLAIN_ASK = "shoal, plain links"
CURVE_ASK = "shoal, CurveZMQ links"
RAW_PLAIN = "(raw pyzmq sync)"
RAW_CURVE = "(raw pyzmq sync, CURVE)"


def serve_raw(curve: bool) -> None:
    """A blocking ROUTER answering the floor protocol of ``bench_remote``; with ``curve`` a
    CURVE server with a fresh key pair (no ZAP: any client key). Prints its address and, with
    CURVE, its public key."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, br.HWM), (zmq.RCVHWM, br.HWM)):
        sock.setsockopt(opt, value)
    public = b""
    if curve:
        public, secret = zmq.curve_keypair()
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.bind("tcp://127.0.0.1:0")
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), public.decode(), flush=True)
    br._exit_with_parent()
    handle = br.counter_handler()
    recv, send, more = sock.recv, sock.send, zmq.SNDMORE
    while True:
        ident = recv()
        out = handle(recv())
        if out is not None:
            send(ident, more)
            send(out)


class RawFloor:
    """A raw floor server process and a blocking DEALER to it."""

    def __init__(self, ctx: Any, curve: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "curve" if curve else "plain"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        address, _, server_key = self.proc.stdout.readline().strip().partition(" ")
        if not address:
            self.proc.kill()
            raise RuntimeError("the raw floor server did not start")
        self.sock = ctx.socket(zmq.DEALER)
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, br.HWM), (zmq.RCVHWM, br.HWM)):
            self.sock.setsockopt(opt, value)
        self.sock.setsockopt(zmq.RCVTIMEO, 30_000)
        if curve:
            public, secret = zmq.curve_keypair()
            self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
            self.sock.curve_serverkey = server_key.encode()
        self.sock.connect(address)

    def close(self) -> None:
        self.sock.close(linger=0)
        br.stop_floor(self.proc)


def make_keys(root: Path) -> tuple[list[str], list[str]]:
    """Key pairs for the keyed server and its client, and one trust directory: the options of
    ``shoal node`` and the client's ``key``/``trust``."""
    trust = root / "trust"
    trust.mkdir()
    secrets = []
    for name in ("server", "client"):
        public, secret = keygen(root / name)
        (trust / f"{name}.key").write_bytes(public.read_bytes())
        secrets.append(str(secret))
    return ["--key", secrets[0], "--trust", str(trust)], [secrets[1], str(trust)]


async def bench_seq(rows: list[tuple[str, br.SeqFn, Any]], n: int, reps: int) -> None:
    warm = max(1000, n // 10)
    for _, fn, target in rows:
        await fn(target, warm, [0] * warm)
    got: dict[str, list[list[float]]] = {name: [] for name, _, _ in rows}
    for _ in range(reps):
        for name, figures in (await br.seq_pass(rows, n)).items():
            got[name].append(figures)
    med = {name: [median([r[i] for r in rs]) for i in range(3)] for name, rs in got.items()}
    plain, raw = med[PLAIN_ASK][0], med[RAW_PLAIN][0]
    per_pass = [c[0] / p[0] for c, p in zip(got[CURVE_ASK], got[PLAIN_ASK], strict=True)]
    table(
        ["sequential ask", "p50 µs", "p99 µs", "calls/s", "p50 / plain"],
        [
            [name, *m, ratio(m[0], raw if name.startswith("(") else plain)]
            for name, m in med.items()
        ],
        title=(
            f"1. Sequential remote ask: N={n:,} per row per pass (rows take turns every "
            f"{br.BLOCK} calls), median of {reps} passes; the raw CURVE row / raw plain"
        ),
    )
    print(f"  CurveZMQ p50 / plain p50 per pass: {_range(per_pass)}")
    table(
        ["bar", "measured", "bar", "verdict"],
        [br.verdict("CurveZMQ p50 / plain p50", med[CURVE_ASK][0] / plain, "<=", 1.15)],
    )


async def raw_tell(sock: Any, n: int) -> float:
    return await br.zmq_sync_tell(sock, n)


async def bench_rates(
    title: str,
    rows: list[tuple[str, Callable[[int], Coroutine[Any, Any, float]]]],
    n: int,
    reps: int,
    unit: str,
    plain_name: str,
    curve_name: str,
) -> None:
    """``reps`` repetitions of every row, in an order that rotates by one row each time (each
    row takes each place in turn); the cost of CURVE is the median over repetitions of the
    ratio within one repetition, so a burst of noise spoils at most that one."""
    for _, fn in rows:
        await fn(max(1000, n // 10))
    got: dict[str, list[float]] = {name: [] for name, _ in rows}
    for rep in range(reps):
        k = rep % len(rows)
        for name, fn in rows[k:] + rows[:k]:
            settle()
            got[name].append(await fn(n))
    secs = {name: median(s) for name, s in got.items()}
    base = {name: secs[RAW_PLAIN if name.startswith("(") else plain_name] for name in secs}
    table(
        [title, "ms total", f"{unit}/s", f"µs/{unit}", "rate / plain"],
        [[name, s * 1e3, n / s, s / n * 1e6, ratio(base[name], s)] for name, s in secs.items()],
        title=f"N={n:,}, median of {reps} reps; the raw CURVE row / raw plain",
    )
    for line in br.miscounts:
        print(f"WARNING, shoal lost tells: {line}")
    br.miscounts.clear()
    per_rep = sorted(c / p for c, p in zip(got[curve_name], got[plain_name], strict=True))
    print(f"  plain rate / CurveZMQ rate per repetition: {_range(per_rep)}")
    table(
        ["bar", "measured", "bar", "verdict"],
        [br.verdict(f"plain / CurveZMQ rate ({title}), median of reps", median(per_rep), "<=",
                    1.15)],
    )  # fmt: skip


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}x-{max(values):.2f}x (median {median(values):.2f}x)"


async def bench(
    args: argparse.Namespace, plain_addr: str, curve_addr: str, client: list[str]
) -> None:
    ctx = zmq.Context()
    floors = [RawFloor(ctx, False), RawFloor(ctx, True)]
    try:
        async with (
            Node(seeds=[plain_addr], serve=()) as plain,
            Node(seeds=[curve_addr], serve=(), key=client[0], trust=client[1]) as keyed,
        ):
            rows: list[tuple[str, br.SeqFn, Any]] = [
                (RAW_PLAIN, br.zmq_sync_seq, floors[0].sock),
                (RAW_CURVE, br.zmq_sync_seq, floors[1].sock),
                (PLAIN_ASK, br.shoal_seq, plain.ref(RemoteCounter, "seq")),
                (CURVE_ASK, br.shoal_seq, keyed.ref(RemoteCounter, "seq")),
            ]
            await bench_seq(rows, args.asks, args.reps)
            print()
            print("2. One-way tells, then one ask (count checked)")
            await bench_rates(
                "tells",
                [
                    (RAW_PLAIN, lambda k: raw_tell(floors[0].sock, k)),
                    (RAW_CURVE, lambda k: raw_tell(floors[1].sock, k)),
                    ("shoal tells, plain links", lambda k: br.shoal_tell(plain, k)),
                    ("shoal tells, CurveZMQ links", lambda k: br.shoal_tell(keyed, k)),
                ],
                args.tells,
                args.rate_reps,
                "msg",
                "shoal tells, plain links",
                "shoal tells, CurveZMQ links",
            )
            print()
            print(f"3. {br.WIDTH} asks in flight")
            width_n = args.inflight - args.inflight % br.WIDTH
            pc, kc = plain.ref(RemoteCounter, "inflight"), keyed.ref(RemoteCounter, "inflight")
            await bench_rates(
                "100 in flight",
                [
                    (RAW_PLAIN, lambda k: br.zmq_sync_window(floors[0].sock, k)),
                    (RAW_CURVE, lambda k: br.zmq_sync_window(floors[1].sock, k)),
                    ("shoal, plain links", lambda k: br.shoal_inflight(pc, k)),
                    ("shoal, CurveZMQ links", lambda k: br.shoal_inflight(kc, k)),
                ],
                width_n,
                args.rate_reps,
                "call",
                "shoal, plain links",
                "shoal, CurveZMQ links",
            )
    finally:
        for floor in floors:
            floor.close()
        ctx.destroy(linger=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=["plain", "curve"], help=argparse.SUPPRESS)
    parser.add_argument("--asks", type=int, default=20_000, help="sequential asks per pass")
    parser.add_argument("--tells", type=int, default=50_000, help="tells per repetition")
    parser.add_argument("--inflight", type=int, default=10_000, help="calls, 100 in flight")
    parser.add_argument("--reps", type=int, default=3, help="passes of sequential asks")
    parser.add_argument("--rate-reps", type=int, default=8, help="repetitions of tells etc.")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.serve is not None:
        return serve_raw(args.serve == "curve")
    if args.quick:
        args.asks, args.tells, args.inflight, args.reps = 2_000, 20_000, 5_000, 2
        args.rate_reps = 4
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shoal-curve-") as tmp:
        server_args, client_keys = make_keys(Path(tmp))
        servers: list[NodeProcess] = []
        logs: list[list[str]] = []
        try:
            servers.append(NodeProcess(imports=["bench.remote_actors"]))
            servers.append(NodeProcess(imports=["bench.remote_actors"], extra=server_args))
            logs = [br.collect_output(s) for s in servers]
            print(
                f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq "
                f"{zmq.zmq_version()} (CURVE: {zmq.has('curve')}), uvloop {uvloop.__version__}, "
                f"{os.cpu_count()} CPUs, load {load:.2f} at the start; every server in its own "
                f"process on 127.0.0.1; shoal's socket calls: "
                f"{'compiled' if _zmqcalls.ACCELERATED else 'pure pyzmq'}\n"
            )
            run(bench(args, servers[0].address, servers[1].address, client_keys))
        finally:
            for s in servers:
                s.kill()
    for name, log in zip(("plain", "keyed"), logs, strict=True):
        if log:
            print(f"\nthe {name} node process logged:", *log[-10:], sep="\n  ")
    print(f"\n(total {time.perf_counter() - t0:.1f} s on uvloop, load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
