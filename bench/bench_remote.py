"""Benchmark remote ask/tell over ZeroMQ between two processes on loopback, beside raw floors.

Run: ``.venv/bin/python bench/bench_remote.py`` (``--quick`` for a smoke run of a few seconds,
``--profile`` for a cProfile of the client side of the sequential remote ask instead).

Setup: a node process (``python -m runtime node --import bench.remote_actors``, started with
``tests.cluster.NodeProcess``) serves ``bench.RemoteCounter``; this process runs a pure client
``Node(seeds=[server], serve=())`` on uvloop. The floors talk to three more server processes
that this script starts: ``--serve tcp`` and ``--serve zmq`` are plain blocking Python loops
(about the fastest a Python server gets), ``--serve azmq`` a zmq.asyncio ROUTER on uvloop that
awaits ``recv_multipart``/``send_multipart`` per message, ``--serve loopzmq`` a plain pyzmq
ROUTER driven by ``add_reader`` on uvloop. Each decodes a msgpack request
``[kind, corr, method, args]``, updates a counter and, for an ask, answers
``[3, corr, result]``. Every floor client encodes and decodes its msgpack payloads per message,
as shoal does. The zmq.asyncio floor of the bars is a zmq.asyncio DEALER against the zmq.asyncio
ROUTER (both ends on an event loop, as both shoal nodes are); a zmq.asyncio DEALER against the
blocking ROUTER is shown for information.

1. Sequential ask: ``await c.incr(1)`` N times, each call timed with ``perf_counter_ns``.
   Floors: raw blocking TCP (4-byte length prefix, TCP_NODELAY at both ends), raw sync pyzmq
   DEALER -> ROUTER, zmq.asyncio DEALER -> ROUTER, and for information a zmq.asyncio DEALER ->
   the blocking ROUTER and the event-loop floor: plain pyzmq sockets driven by ``add_reader``
   on uvloop at both ends (``--serve loopzmq``, :class:`LoopDealer`), no framework at all --
   what any event-loop node over pyzmq pays at least. The rows take turns every 500 calls, so
   that a noisy neighbour hits them all alike.
2. Tells: ``await c.incr.tell(1)`` N times (the await is the documented backpressure point; it
   does not yield while the link is below its high-water mark), then ``await c.peek()``, checked
   == N (a miscount is printed as a WARNING, not fatal); msgs/s from the first tell to that
   reply. Floors: sync pyzmq ``send`` per message, and zmq.asyncio ``await sock.send`` per
   message (to each ROUTER), each followed by an ask for the count (checked).
3. 100 in flight: 100 worker coroutines, each looping ``await c.incr(1)`` N/100 times, so 100
   asks are outstanding all the time but the tail. Floor: the same 100 workers over zmq.asyncio
   on one DEALER (correlation id -> future, one reader task settling them), to each ROUTER.
   Information only: sync pyzmq keeping a window of 100 requests outstanding.

Rows and repetitions are interleaved (floors, shoal, floors, shoal, ...), every row is warmed up
first, ``gc.collect()`` runs before each measurement, and the median over repetitions is shown.
The bars of the issue are checked under each table (PASS/FAIL is informational only). Whatever
the node process logged is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgpack
import uvloop
import zmq
import zmq.asyncio
from _util import median, percentile, ratio, run, settle, table

from actors import ActorRef, Node
from bench.remote_actors import Accounting, RemoteCounter, TaskCounter
from runtime import _zmqcalls
from tests.cluster import NodeProcess

# -- the floors' protocol and servers (each in a process of its own) -----------------------------

ASK, TELL, REPLY = 1, 2, 3
HWM = 10_000  # zmq SNDHWM/RCVHWM of every floor socket, as shoal's transport
# Plain ints for the event-loop floor's hot loop (zmq's IntFlag members are slow to combine).
NOBLOCK, SNDMORE, EVENTS, POLLIN = (
    int(zmq.NOBLOCK),
    int(zmq.SNDMORE),
    int(zmq.EVENTS),
    int(zmq.POLLIN),
)
HDR = struct.Struct("<I")  # the TCP floor's length prefix
WIDTH = 100  # asks in flight
BLOCK = 500  # sequential calls per row before the next row takes its turn
# Row names of the zmq.asyncio floors: both ends on zmq.asyncio (the floor of the bars), and,
# for information, a zmq.asyncio client against the blocking ROUTER.
ASYNC_SEQ = "raw zmq.asyncio DEALER->ROUTER"
LOOP_SEQ = "pyzmq add_reader on uvloop, both ends"
HYBRID_SEQ = "zmq.asyncio DEALER->blocking ROUTER"
ASYNC_TELL = "raw zmq.asyncio, await send per msg"
HYBRID_TELL = "zmq.asyncio -> blocking ROUTER"
ASYNC_INFLIGHT = "raw zmq.asyncio, 100 workers"
HYBRID_INFLIGHT = "zmq.asyncio -> blocking ROUTER"
packb = msgpack.packb
unpackb = msgpack.unpackb


def counter_handler() -> Callable[[bytes], bytes | None]:
    """The floor servers' "actor": decode, update the count, encode the answer to an ask."""
    count = 0

    def handle(msg: bytes) -> bytes | None:
        nonlocal count
        kind, corr, method, args = unpackb(msg)
        if method == "incr":
            count += args[0]
        elif method == "reset":
            count = 0
        return packb([REPLY, corr, count]) if kind == ASK else None

    return handle


def _exit_with_parent() -> None:
    """Exit once our stdin (a pipe from the benchmark) closes, even if the parent was killed."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def floor_router(ctx: Any) -> tuple[Any, str]:
    """A floor server's ROUTER (linger 0, the floors' HWM) bound to a free loopback port; its
    address is printed for the parent to read, and returned."""
    sock = ctx.socket(zmq.ROUTER)
    for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, HWM), (zmq.RCVHWM, HWM)):
        sock.setsockopt(opt, value)
    sock.bind("tcp://127.0.0.1:0")
    address: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    print(address, flush=True)
    return sock, address


def serve_zmq() -> None:
    sock, _ = floor_router(zmq.Context())
    _exit_with_parent()
    handle = counter_handler()
    recv, send, more = sock.recv, sock.send, zmq.SNDMORE
    while True:
        ident = recv()
        out = handle(recv())
        if out is not None:
            send(ident, more)
            send(out)


def serve_azmq() -> None:
    """The zmq.asyncio floor's server: a zmq.asyncio ROUTER on uvloop, one awaited
    ``recv_multipart``/``send_multipart`` per message (how zmq.asyncio code is written)."""

    async def main() -> None:
        sock, _ = floor_router(zmq.asyncio.Context())
        handle = counter_handler()
        recv, send = sock.recv_multipart, sock.send_multipart
        while True:
            ident, msg = await recv()
            out = handle(msg)
            if out is not None:
                await send([ident, out])

    _exit_with_parent()
    uvloop.run(main())


def serve_loopzmq() -> None:
    """The event-loop floor's server: a plain pyzmq ROUTER driven by ``add_reader`` on uvloop,
    reading while EVENTS says POLLIN and answering at once. No framework: the least an
    event-loop process does per message over pyzmq."""

    async def main() -> None:
        sock, _ = floor_router(zmq.Context())
        handle = counter_handler()
        recv, send, get = sock.recv, sock.send, sock.getsockopt

        def on_readable() -> None:
            while get(EVENTS) & POLLIN:
                ident = recv(NOBLOCK)
                out = handle(recv(NOBLOCK))
                if out is not None:
                    send(ident, NOBLOCK | SNDMORE)
                    send(out, NOBLOCK)

        loop = asyncio.get_running_loop()
        loop.add_reader(sock.FD, on_readable)
        loop.call_soon(on_readable)
        await asyncio.Event().wait()

    _exit_with_parent()
    uvloop.run(main())


def serve_tcp() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    print(f"127.0.0.1:{srv.getsockname()[1]}", flush=True)
    _exit_with_parent()
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handle = counter_handler()
        read = conn.makefile("rb").read
        try:
            while len(hdr := read(4)) == 4:
                out = handle(read(HDR.unpack(hdr)[0]))
                if out is not None:
                    conn.sendall(HDR.pack(len(out)) + out)
        finally:
            conn.close()


def collect_output(server: NodeProcess) -> list[str]:
    """Keep reading the node process's output (so that a chatty node never blocks on a full
    pipe); the lines are printed at the end of the run."""
    lines: list[str] = []

    def pump() -> None:
        with contextlib.suppress(OSError, ValueError):  # closed by NodeProcess.kill()
            assert server.proc.stdout is not None
            for line in server.proc.stdout:
                lines.append(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def spawn_floor(kind: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        raise RuntimeError(f"the {kind} floor server did not start")
    return proc, address


def stop_floor(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


# -- floor clients --------------------------------------------------------------------------------


class Tcp:
    """A blocking TCP connection speaking the length-prefixed floor protocol."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)
        self.read = self.sock.makefile("rb").read

    def close(self) -> None:
        self.sock.close()


def dealer(ctx: Any, address: str) -> Any:
    sock = ctx.socket(zmq.DEALER)
    for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, HWM), (zmq.RCVHWM, HWM)):
        sock.setsockopt(opt, value)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)  # a dead server fails the run instead of hanging it
    sock.connect(address)
    return sock


def sync_ask(sock: Any, method: str, arg: int = 0) -> int:
    sock.send(packb([ASK, 0, method, [arg]]))
    result: int = unpackb(sock.recv())[2]
    return result


async def async_ask(sock: Any, method: str, arg: int = 0) -> int:
    await sock.send(packb([ASK, 0, method, [arg]]))
    result: int = unpackb(await sock.recv())[2]
    return result


# -- 1. sequential ask: each fills ``out[i]`` with the ns taken by call ``i`` ------------------


async def tcp_seq(conn: Tcp, n: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    sendall, read, pack, unpack = conn.sock.sendall, conn.read, HDR.pack, HDR.unpack
    for i in range(n):
        t0 = pc()
        msg = packb([ASK, i, "incr", [1]])
        sendall(pack(len(msg)) + msg)
        unpackb(read(unpack(read(4))[0]))[2]
        out[i] = pc() - t0


async def zmq_sync_seq(sock: Any, n: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    send, recv = sock.send, sock.recv
    for i in range(n):
        t0 = pc()
        send(packb([ASK, i, "incr", [1]]))
        unpackb(recv())[2]
        out[i] = pc() - t0


async def zmq_async_seq(sock: Any, n: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    send, recv = sock.send, sock.recv
    for i in range(n):
        t0 = pc()
        await send(packb([ASK, i, "incr", [1]]))
        unpackb(await recv())[2]
        out[i] = pc() - t0


class LoopDealer:
    """The event-loop floor's client: a plain pyzmq DEALER driven by ``add_reader`` on the
    running loop; an ask sends at once and awaits a future that the reader settles."""

    def __init__(self, ctx: Any, address: str) -> None:
        self.sock = dealer(ctx, address)
        self.waiter: asyncio.Future[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def results(self, frame: bytes) -> list[Any]:
        """The answers a frame carries (the floor protocol: one, ``[3, corr, result]``)."""
        return [unpackb(frame)[2]]

    def _on_readable(self) -> None:
        sock = self.sock
        while sock.getsockopt(EVENTS) & POLLIN:
            for result in self.results(sock.recv(NOBLOCK)):
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(result)

    def request(self, chunk: bytes) -> asyncio.Future[Any]:
        """Send ``chunk`` at once; the future gets the answer."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
            loop.add_reader(self.sock.FD, self._on_readable)
        fut = self.waiter = loop.create_future()
        self.sock.send(chunk, NOBLOCK)
        if self.sock.getsockopt(EVENTS) & POLLIN:  # the send may have eaten the FD's edge
            loop.call_soon(self._on_readable)
        return fut

    async def ask(self, i: int) -> Any:
        return await self.request(packb([ASK, i, "incr", [1]]))

    def close(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.sock.FD)
        self.sock.close(linger=0)


async def loop_seq(d: LoopDealer, n: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        await d.ask(i)
        out[i] = pc() - t0


async def shoal_seq(c: ActorRef, n: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        await c.incr(1)
        out[i] = pc() - t0


SeqFn = Callable[[Any, int, list[int]], Coroutine[Any, Any, None]]


async def seq_pass(rows: list[tuple[str, SeqFn, Any]], n: int) -> dict[str, list[float]]:
    """One repetition: ``n`` timed calls per row, the rows taking turns every BLOCK calls (so
    that they all see the same machine); per row [p50 µs, p99 µs, calls/s]."""
    per_call = {name: [0] * n for name, _, _ in rows}
    total = dict.fromkeys(per_call, 0)
    pc = time.perf_counter_ns
    settle()
    for b, start in enumerate(range(0, n, BLOCK)):
        k = min(BLOCK, n - start)
        for name, fn, target in rows[b % len(rows) :] + rows[: b % len(rows)]:
            out = [0] * k
            t0 = pc()
            await fn(target, k, out)
            total[name] += pc() - t0
            per_call[name][start : start + k] = out
    result = {}
    for name, ns in per_call.items():
        ns.sort()
        result[name] = [percentile(ns, 50) / 1e3, percentile(ns, 99) / 1e3, n / (total[name] / 1e9)]
    return result


# -- 2. tells: each returns the seconds from the first send to the confirming reply ----------------


async def zmq_sync_tell(sock: Any, n: int) -> float:
    sync_ask(sock, "reset")
    send = sock.send
    t0 = time.perf_counter_ns()
    for _ in range(n):
        send(packb([TELL, 0, "incr", [1]]))
    count = sync_ask(sock, "peek")
    elapsed = time.perf_counter_ns() - t0
    assert count == n, (count, n)
    return elapsed / 1e9


async def zmq_async_tell(sock: Any, n: int) -> float:
    await async_ask(sock, "reset")
    send = sock.send
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await send(packb([TELL, 0, "incr", [1]]))
    count = await async_ask(sock, "peek")
    elapsed = time.perf_counter_ns() - t0
    assert count == n, (count, n)
    return elapsed / 1e9


_tell_keys = itertools.count()
#: Shoal tell runs whose final count was not N (printed under the table, not fatal).
miscounts: list[str] = []


async def shoal_tell(node: Node, n: int) -> float:
    key = f"tell-{next(_tell_keys)}"
    c = node.ref(RemoteCounter, key)
    assert await c.peek() == 0  # activated (and the link warm) before the clock starts
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await c.incr.tell(1)
    count = await c.peek()
    elapsed = time.perf_counter_ns() - t0
    if count != n:
        miscounts.append(f"{key}: counted {count:,} of {n:,} tells")
    return elapsed / 1e9


# -- 3. asks in flight: each returns the seconds taken by ``n`` calls -----------------------------


async def zmq_sync_window(sock: Any, n: int) -> float:
    """Sync pyzmq keeping WIDTH requests outstanding (send one more per reply)."""
    send, recv = sock.send, sock.recv
    t0 = time.perf_counter_ns()
    sent = 0
    for _ in range(min(WIDTH, n)):
        send(packb([ASK, sent, "incr", [1]]))
        sent += 1
    for _ in range(n):
        unpackb(recv())[2]
        if sent < n:
            send(packb([ASK, sent, "incr", [1]]))
            sent += 1
    return (time.perf_counter_ns() - t0) / 1e9


async def zmq_async_inflight(sock: Any, n: int) -> float:
    """WIDTH workers over zmq.asyncio on one DEALER; a reader task settles their futures."""
    loop = asyncio.get_running_loop()
    pending: dict[int, asyncio.Future[int]] = {}
    ids = itertools.count(1)
    send, recv = sock.send, sock.recv

    async def reader() -> None:
        while True:
            reply = unpackb(await recv())
            pending.pop(reply[1]).set_result(reply[2])

    async def worker(k: int) -> None:
        for _ in range(k):
            corr = next(ids)
            fut = pending[corr] = loop.create_future()
            await send(packb([ASK, corr, "incr", [1]]))
            await fut

    task = loop.create_task(reader())
    t0 = time.perf_counter_ns()
    await asyncio.gather(*[worker(n // WIDTH) for _ in range(WIDTH)])
    elapsed = time.perf_counter_ns() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return elapsed / 1e9


async def shoal_inflight(c: ActorRef, n: int) -> float:
    async def worker(k: int) -> None:
        for _ in range(k):
            await c.incr(1)

    t0 = time.perf_counter_ns()
    await asyncio.gather(*[worker(n // WIDTH) for _ in range(WIDTH)])
    return (time.perf_counter_ns() - t0) / 1e9


# -- the benchmark --------------------------------------------------------------------------------


def verdict(name: str, value: float, op: str, limit: float) -> list[Any]:
    ok = value <= limit if op == "<=" else value >= limit
    return [name, f"{value:.2f}x", f"{op} {limit:g}x", "PASS" if ok else "FAIL"]


class Clients:
    """The floors' client sockets and the shoal client node, opened and closed together."""

    def __init__(self, tcp_addr: str, zmq_addr: str, azmq_addr: str, loop_addr: str) -> None:
        self.ctx = zmq.Context()
        self.actx = zmq.asyncio.Context()
        self.tcp = Tcp(tcp_addr)
        self.zsync = dealer(self.ctx, zmq_addr)
        # zmq.asyncio DEALERs to the zmq.asyncio ROUTER (the floor) and, for information, to
        # the blocking ROUTER; the in-flight ones are sockets of their own (a reader task).
        self.zasync = dealer(self.actx, azmq_addr)
        self.zinflight = dealer(self.actx, azmq_addr)
        self.zhybrid = dealer(self.actx, zmq_addr)
        self.zhybrid_inflight = dealer(self.actx, zmq_addr)
        self.zloop = LoopDealer(self.ctx, loop_addr)

    def close(self) -> None:
        self.tcp.close()
        self.zloop.close()
        for s in (self.zsync, self.zasync, self.zinflight, self.zhybrid, self.zhybrid_inflight):
            s.close(linger=0)
        self.actx.destroy(linger=0)
        self.ctx.destroy(linger=0)


async def bench_seq(cl: Clients, node: Node, n: int, reps: int) -> None:
    c = node.ref(RemoteCounter, "seq")
    rows: list[tuple[str, SeqFn, Any]] = [
        ("raw TCP, blocking, len-prefixed", tcp_seq, cl.tcp),
        ("raw pyzmq sync DEALER->ROUTER", zmq_sync_seq, cl.zsync),
        (ASYNC_SEQ, zmq_async_seq, cl.zasync),
        (HYBRID_SEQ, zmq_async_seq, cl.zhybrid),
        (LOOP_SEQ, loop_seq, cl.zloop),
        ("shoal: await c.incr(1)", shoal_seq, c),
    ]
    warm = max(1000, n // 10)
    for _, fn, target in rows:
        await fn(target, warm, [0] * warm)
    got: dict[str, list[list[float]]] = {name: [] for name, _, _ in rows}
    for _ in range(reps):
        for name, figures in (await seq_pass(rows, n)).items():
            got[name].append(figures)
    med = {name: [median([r[i] for r in rs]) for i in range(3)] for name, rs in got.items()}
    sync_p50 = med["raw pyzmq sync DEALER->ROUTER"][0]
    async_p50 = med[ASYNC_SEQ][0]
    table(
        ["sequential ask", "p50 µs", "p99 µs", "calls/s", "p50/sync zmq", "p50/zmq.asyncio"],
        [[name, *m, ratio(m[0], sync_p50), ratio(m[0], async_p50)] for name, m in med.items()],
        title=(
            f"1. Sequential remote ask: N={n:,} per row per pass (rows take turns every "
            f"{BLOCK} calls), median of {reps} passes; 'p50/...' = ratio of p50 to that floor"
        ),
    )
    ours = med["shoal: await c.incr(1)"][0]
    table(
        ["bar", "measured", "bar", "verdict"],
        [
            verdict("shoal p50 / raw sync pyzmq p50", ours / sync_p50, "<=", 1.3),
            verdict("shoal p50 / zmq.asyncio p50", ours / async_p50, "<=", 0.7),
            verdict("(info) shoal / asyncio->blocking p50", ours / med[HYBRID_SEQ][0], "<=", 0.7),
            verdict("(info) event-loop floor / sync pyzmq", med[LOOP_SEQ][0] / sync_p50, "<=", 1.3),
            verdict(
                "(info) event-loop floor / zmq.asyncio", med[LOOP_SEQ][0] / async_p50, "<=", 0.7
            ),
        ],
    )


async def bench_tell(cl: Clients, node: Node, n: int, reps: int) -> None:
    rows: list[tuple[str, Callable[[int], Coroutine[Any, Any, float]]]] = [
        ("raw pyzmq sync, send per msg", lambda k: zmq_sync_tell(cl.zsync, k)),
        (ASYNC_TELL, lambda k: zmq_async_tell(cl.zasync, k)),
        (HYBRID_TELL, lambda k: zmq_async_tell(cl.zhybrid, k)),
        ("shoal: await c.incr.tell(1)", lambda k: shoal_tell(node, k)),
    ]
    for _, fn in rows:
        await fn(max(1000, n // 10))
    got: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(reps):
        for name, fn in rows:
            settle()
            got[name].append(await fn(n))
    secs = {name: median(s) for name, s in got.items()}
    sync_s = secs["raw pyzmq sync, send per msg"]
    async_s = secs[ASYNC_TELL]
    table(
        ["tells", "ms total", "msgs/s", "µs/msg", "rate/sync zmq", "rate/zmq.asyncio"],
        [
            [name, s * 1e3, n / s, s / n * 1e6, ratio(sync_s, s), ratio(async_s, s)]
            for name, s in secs.items()
        ],
        title=(
            f"2. One-way tells: N={n:,} then one ask (count checked == N), median of {reps} reps"
        ),
    )
    for line in miscounts:
        print(f"WARNING, shoal lost tells: {line}")
    miscounts.clear()
    ours = secs["shoal: await c.incr.tell(1)"]
    table(
        ["bar", "measured", "bar", "verdict"],
        [
            verdict("shoal msgs/s / zmq.asyncio msgs/s", async_s / ours, ">=", 2.0),
            verdict("(info) shoal / asyncio->blocking msgs/s", secs[HYBRID_TELL] / ours, ">=", 2.0),
            verdict("stretch: shoal / sync pyzmq msgs/s", sync_s / ours, ">=", 1.5),
        ],
    )


async def bench_inflight(cl: Clients, node: Node, n: int, reps: int) -> None:
    n -= n % WIDTH
    c = node.ref(RemoteCounter, "inflight")
    rows: list[tuple[str, Callable[[int], Coroutine[Any, Any, float]]]] = [
        ("raw pyzmq sync, window of 100 (info)", lambda k: zmq_sync_window(cl.zsync, k)),
        (ASYNC_INFLIGHT, lambda k: zmq_async_inflight(cl.zinflight, k)),
        (HYBRID_INFLIGHT, lambda k: zmq_async_inflight(cl.zhybrid_inflight, k)),
        ("shoal: 100 workers, await c.incr(1)", lambda k: shoal_inflight(c, k)),
    ]
    for _, fn in rows:
        await fn(max(10 * WIDTH, n // 10))
    got: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(reps):
        for name, fn in rows:
            settle()
            got[name].append(await fn(n))
    secs = {name: median(s) for name, s in got.items()}
    async_s = secs[ASYNC_INFLIGHT]
    window_s = secs["raw pyzmq sync, window of 100 (info)"]
    table(
        ["100 asks in flight", "ms total", "calls/s", "µs/call", "rate/zmq.asyncio", "rate/sync"],
        [
            [name, s * 1e3, n / s, s / n * 1e6, ratio(async_s, s), ratio(window_s, s)]
            for name, s in secs.items()
        ],
        title=(
            f"3. {WIDTH} asks in flight: N={n:,} calls by {WIDTH} worker coroutines looping "
            f"N/{WIDTH} times each, median of {reps} reps"
        ),
    )
    ours = secs["shoal: 100 workers, await c.incr(1)"]
    table(
        ["bar", "measured", "bar", "verdict"],
        [
            verdict("shoal calls/s / zmq.asyncio (100 in flight)", async_s / ours, ">=", 3.0),
            verdict(
                "(info) shoal / asyncio->blocking calls/s", secs[HYBRID_INFLIGHT] / ours, ">=", 3.0
            ),
        ],
    )


async def bench_accounting(node: Node, n: int) -> None:
    """Hot-path accounting: tasks created and net allocated blocks per sequential remote ask,
    on the client and on the serving node (a turn that does not suspend needs no task)."""
    c = node.ref(RemoteCounter, "accounting")
    acc = node.ref(Accounting, "only")
    counter = TaskCounter()
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    counter.install()
    try:
        for _ in range(max(1000, n // 10)):  # warm: activations, route cache, buffers
            await c.incr(1)
        settle()
        server0 = (await acc.tasks_created(), await acc.allocated_blocks())
        tasks0, blocks0 = counter.created, sys.getallocatedblocks()
        for _ in range(n):
            await c.incr(1)
        tasks, blocks = counter.created - tasks0, sys.getallocatedblocks() - blocks0
        server1 = (await acc.tasks_created(), await acc.allocated_blocks())
    finally:
        loop.set_task_factory(previous)
    table(
        ["per remote ask", "tasks created", "net allocated blocks"],
        [
            ["client node", f"{tasks / n:.4f}", f"{blocks / n:+.4f}"],
            [
                "serving node",
                f"{(server1[0] - server0[0]) / n:.4f}",
                f"{(server1[1] - server0[1]) / n:+.4f}",
            ],
        ],
        title=f"Hot-path accounting: {n:,} sequential remote asks (2 accounting asks included)",
    )


async def bench(args: argparse.Namespace, node_addr: str, floors: dict[str, str]) -> None:
    cl = Clients(floors["tcp"], floors["zmq"], floors["azmq"], floors["loopzmq"])
    try:
        async with Node(seeds=[node_addr], serve=()) as node:
            if args.only in (None, "seq"):
                await bench_seq(cl, node, args.asks, args.reps)
                print()
                await bench_accounting(node, args.asks)
                print()
            if args.only in (None, "tell"):
                await bench_tell(cl, node, args.tells, args.reps)
                print()
            if args.only in (None, "inflight"):
                await bench_inflight(cl, node, args.inflight, args.reps)
    finally:
        cl.close()


async def profile_client(node_addr: str, n: int) -> None:
    import cProfile
    import pstats

    async with Node(seeds=[node_addr], serve=()) as node:
        c = node.ref(RemoteCounter, "profile")
        out = [0] * n
        await shoal_seq(c, n, out)  # warm
        settle()
        prof = cProfile.Profile()
        t0 = time.perf_counter_ns()
        prof.enable()
        await shoal_seq(c, n, out)
        prof.disable()
        per_call = (time.perf_counter_ns() - t0) / n / 1e3
    print(f"{n:,} sequential remote asks under cProfile: {per_call:.1f} µs/call (with profiling)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--serve", choices=["tcp", "zmq", "azmq", "loopzmq"], help=argparse.SUPPRESS
    )
    parser.add_argument("--asks", type=int, default=20_000, help="sequential asks per pass")
    parser.add_argument("--tells", type=int, default=200_000, help="tells per repetition")
    parser.add_argument("--inflight", type=int, default=30_000, help="calls, 100 in flight")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median is printed)")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    parser.add_argument("--only", choices=["seq", "tell", "inflight"], help="one section only")
    parser.add_argument("--profile", action="store_true", help="cProfile the client's asks")
    args = parser.parse_args()
    if args.serve == "zmq":
        return serve_zmq()
    if args.serve == "azmq":
        return serve_azmq()
    if args.serve == "loopzmq":
        return serve_loopzmq()
    if args.serve == "tcp":
        return serve_tcp()
    if args.quick:
        args.asks, args.tells, args.inflight, args.reps = 2_000, 20_000, 10_000, 2
    t0 = time.perf_counter()
    server = NodeProcess(imports=["bench.remote_actors"])
    server_log = collect_output(server)
    floors: list[subprocess.Popen[str]] = []
    try:
        if args.profile:
            run(profile_client(server.address, args.asks))
            return
        addresses: dict[str, str] = {}
        for kind in ("tcp", "zmq", "azmq", "loopzmq"):
            proc, addresses[kind] = spawn_floor(kind)
            floors.append(proc)
        print(
            f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq "
            f"{zmq.zmq_version()}, uvloop {uvloop.__version__}, {os.cpu_count()} CPUs; "
            f"every server in its own process on 127.0.0.1; shoal's socket calls: "
            f"{'compiled (runtime._fastzmq)' if _zmqcalls.ACCELERATED else 'pure pyzmq'}\n"
        )
        run(bench(args, server.address, addresses))
    finally:
        for proc in floors:
            stop_floor(proc)
        server.kill()
    if server_log:
        print("\nthe node process logged:", *server_log[-20:], sep="\n  ")
    print(f"\n(total {time.perf_counter() - t0:.1f} s on uvloop)")


if __name__ == "__main__":
    main()
