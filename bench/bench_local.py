"""Benchmark local messaging on an embedded ``Node()`` beside a bare asyncio-queue actor.

Run: ``.venv/bin/python bench/bench_local.py`` (``--quick`` for a smoke run of a few seconds,
``--profile`` for a cProfile of the sequential ask instead of the benchmark).

Part 1, sequential ask: one caller does ``await c.incr(1)`` N times. Latency is timed two ways:
per call (``perf_counter_ns`` around each await: includes the timer's own cost, printed as
"timer overhead") and per batch of ``--batch`` calls divided by the batch size (the timer cost
is amortised away; its p99 smooths single-call spikes). calls/s comes from the batched pass.
The floor is a bare actor on uvloop: one task owning an ``asyncio.Queue``; per call the caller
does ``fut = loop.create_future(); q.put_nowait((n, fut)); await fut`` and the task does
``n, fut = await q.get(); state += n; fut.set_result(state)``. Rows: an ``async def`` method
and a plain ``def`` method (both finish without suspending, so shoal runs the turn inline in the
caller's task), and an ``async def`` that does ``await asyncio.sleep(0)`` (the non-inline path:
a task per turn), shown beside a floor whose task also sleeps(0) per message.

Rows marked "unchecked" run on ``Node(check_serializable=False)``; the others on ``Node()``,
which checks that arguments and results could cross the wire (the default: what that costs).
"ask(timeout=5.0)" passes a timeout on every call (checked on every call).

Part 2, tell throughput: ``c.incr.tell(1)`` N times, then ``await c.peek()`` (checked == N).
The floor does ``q.put_nowait((1, None))`` N times and then one ask.

Variants and repetitions are interleaved (floor, shoal, floor, shoal, ...) and the median over
repetitions is printed; ``gc.collect()`` runs between phases; each phase is warmed up first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from _util import median, percentile, ratio, run, settle, table

from actors import ActorRef, Node, actor

# -- the actors -----------------------------------------------------------------------------------


@actor(name="bench.Counter")
class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def incr(self, n: int) -> int:
        self.count += n
        return self.count

    async def peek(self) -> int:
        return self.count


@actor(name="bench.SyncCounter")
class SyncCounter:
    def __init__(self) -> None:
        self.count = 0

    def incr(self, n: int) -> int:
        self.count += n
        return self.count

    def peek(self) -> int:
        return self.count


@actor(name="bench.SuspendingCounter")
class SuspendingCounter:
    def __init__(self) -> None:
        self.count = 0

    async def incr(self, n: int) -> int:
        await asyncio.sleep(0)
        self.count += n
        return self.count

    async def peek(self) -> int:
        return self.count


# -- the floor: a bare asyncio-queue actor --------------------------------------------------------


async def _queue_actor(q: asyncio.Queue[tuple[int, asyncio.Future[int] | None]]) -> None:
    state = 0
    while True:
        n, fut = await q.get()
        state += n
        if fut is not None:
            fut.set_result(state)


async def _queue_actor_suspending(q: asyncio.Queue[tuple[int, asyncio.Future[int] | None]]) -> None:
    state = 0
    while True:
        n, fut = await q.get()
        await asyncio.sleep(0)
        state += n
        if fut is not None:
            fut.set_result(state)


class QueueActor:
    """Owns the floor actor's queue and task; ``async with`` cancels the task at the end."""

    def __init__(self, suspending: bool = False) -> None:
        self.q: asyncio.Queue[tuple[int, asyncio.Future[int] | None]] = asyncio.Queue()
        body = _queue_actor_suspending if suspending else _queue_actor
        self.task = asyncio.get_running_loop().create_task(body(self.q))

    async def __aenter__(self) -> QueueActor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# -- timing loops: ``out[b]`` = ns taken by batch ``b`` of ``batch`` sequential calls ------------


async def shoal_ask_loop(c: ActorRef, nbatches: int, batch: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    for b in range(nbatches):
        t0 = pc()
        for _ in range(batch):
            await c.incr(1)
        out[b] = pc() - t0


async def floor_ask_loop(q: asyncio.Queue[Any], nbatches: int, batch: int, out: list[int]) -> None:
    pc = time.perf_counter_ns
    loop = asyncio.get_running_loop()
    for b in range(nbatches):
        t0 = pc()
        for _ in range(batch):
            fut = loop.create_future()
            q.put_nowait((1, fut))
            await fut
        out[b] = pc() - t0


async def shoal_ask_timeout_loop(c: ActorRef, nbatches: int, batch: int, out: list[int]) -> None:
    """:func:`shoal_ask_loop` with an explicit ``timeout`` (checked on every call)."""
    pc = time.perf_counter_ns
    incr = c.incr
    for b in range(nbatches):
        t0 = pc()
        for _ in range(batch):
            await incr.ask(1, timeout=5.0)
        out[b] = pc() - t0


async def empty_loop(_: object, nbatches: int, batch: int, out: list[int]) -> None:
    """The timing loop with nothing inside: what the per-call timing itself costs."""
    pc = time.perf_counter_ns
    for b in range(nbatches):
        t0 = pc()
        for _ in range(batch):
            pass
        out[b] = pc() - t0


Loop = Callable[[Any, int, int, list[int]], Coroutine[Any, Any, None]]


class Stats:
    """Per-repetition figures of one row: per-call and per-batch p50/p99 (µs) and calls/s."""

    def __init__(self) -> None:
        self.call_p50: list[float] = []
        self.call_p99: list[float] = []
        self.batch_p50: list[float] = []
        self.batch_p99: list[float] = []
        self.rate: list[float] = []

    def add(self, per_call: list[int], per_batch: list[int], batch: int) -> None:
        per_call.sort()
        self.call_p50.append(percentile(per_call, 50) / 1e3)
        self.call_p99.append(percentile(per_call, 99) / 1e3)
        scaled = sorted(t / batch / 1e3 for t in per_batch)
        self.batch_p50.append(percentile(scaled, 50))
        self.batch_p99.append(percentile(scaled, 99))
        self.rate.append(len(per_batch) * batch / (sum(per_batch) / 1e9))


async def measure(loop_fn: Loop, target: Any, n: int, batch: int, stats: Stats) -> None:
    """One repetition of one row: a per-call pass and a batched pass of ``n`` calls each."""
    warm = max(1000, n // 10)
    scratch = [0] * warm
    await loop_fn(target, warm, 1, scratch)
    await loop_fn(target, max(1, warm // batch), batch, scratch)
    settle()
    per_call = [0] * n
    await loop_fn(target, n, 1, per_call)
    settle()
    nb = max(1, n // batch)
    per_batch = [0] * nb
    await loop_fn(target, nb, batch, per_batch)
    settle()
    stats.add(per_call, per_batch, batch)


async def bench_ask(n: int, n_suspending: int, batch: int, reps: int) -> None:
    rows: dict[str, Stats] = {
        name: Stats()
        for name in (
            "timer overhead (empty loop)",
            "floor: queue actor",
            "shoal: async def, inline",
            "shoal: async def, inline, unchecked",
            "shoal: async def, ask(timeout=5.0)",
            "shoal: def, inline",
            "shoal: def, inline, unchecked",
            "floor: queue actor, sleep(0)",
            "shoal: async def + sleep(0)",
        )
    }
    # Node() checks that local arguments and results could cross the wire (the default);
    # "unchecked" rows are Node(check_serializable=False), what that check costs
    async with Node() as node, Node(check_serializable=False) as unchecked:
        refs = {
            "shoal: async def, inline": node.ref(Counter, "ask"),
            "shoal: async def, inline, unchecked": unchecked.ref(Counter, "ask"),
            "shoal: async def, ask(timeout=5.0)": node.ref(Counter, "ask-timeout"),
            "shoal: def, inline": node.ref(SyncCounter, "ask"),
            "shoal: def, inline, unchecked": unchecked.ref(SyncCounter, "ask"),
            "shoal: async def + sleep(0)": node.ref(SuspendingCounter, "ask"),
        }
        for ref in refs.values():
            await ref.peek()  # activate outside the timing
        for _ in range(reps):
            await measure(empty_loop, None, n, batch, rows["timer overhead (empty loop)"])
            async with QueueActor() as qa:
                await measure(floor_ask_loop, qa.q, n, batch, rows["floor: queue actor"])
            for name in (
                "shoal: async def, inline",
                "shoal: async def, inline, unchecked",
                "shoal: def, inline",
                "shoal: def, inline, unchecked",
            ):
                await measure(shoal_ask_loop, refs[name], n, batch, rows[name])
            name = "shoal: async def, ask(timeout=5.0)"
            await measure(shoal_ask_timeout_loop, refs[name], n, batch, rows[name])
            async with QueueActor(suspending=True) as qa:
                await measure(
                    floor_ask_loop, qa.q, n_suspending, batch, rows["floor: queue actor, sleep(0)"]
                )
            name = "shoal: async def + sleep(0)"
            await measure(shoal_ask_loop, refs[name], n_suspending, batch, rows[name])

    floor = rows["floor: queue actor"]
    floor_s = rows["floor: queue actor, sleep(0)"]
    out = []
    for name, st in rows.items():
        base = floor_s if "sleep(0)" in name else floor
        is_timer = name.startswith("timer")
        out.append(
            [
                name,
                median(st.call_p50),
                median(st.call_p99),
                median(st.batch_p50),
                median(st.batch_p99),
                float("nan") if is_timer else median(st.rate),
                "" if is_timer else ratio(median(st.call_p50), median(base.call_p50)),
                "" if is_timer else ratio(median(st.batch_p50), median(base.batch_p50)),
            ]
        )
    table(
        [
            "sequential ask",
            "p50 µs",
            "p99 µs",
            f"p50 µs/{batch}",
            f"p99 µs/{batch}",
            "calls/s",
            "p50/floor",
            f"p50/{batch}/floor",
        ],
        out,
        title=(
            f"Sequential local ask: N={n:,} (sleep(0) rows N={n_suspending:,}), median of "
            f"{reps} reps; 'p50 µs' = each call timed, 'µs/{batch}' = batches of {batch} "
            f"timed and divided; ratio vs the floor above it (bar: p50 <= 2.0x)"
        ),
    )


async def shoal_tell_once(c: ActorRef, n: int) -> float:
    assert await c.peek() == 0  # activated (and warm) before the clock starts
    t0 = time.perf_counter_ns()
    for _ in range(n):
        c.incr.tell(1)
    count = await c.peek()
    elapsed = time.perf_counter_ns() - t0
    assert count == n, (count, n)
    return elapsed / 1e9


async def floor_tell_once(n: int) -> float:
    loop = asyncio.get_running_loop()
    async with QueueActor() as qa:
        q = qa.q
        t0 = time.perf_counter_ns()
        for _ in range(n):
            q.put_nowait((1, None))
        fut = loop.create_future()
        q.put_nowait((0, fut))
        count = await fut
        elapsed = time.perf_counter_ns() - t0
    assert count == n, (count, n)
    return elapsed / 1e9


async def bench_tell(n: int, reps: int) -> None:
    rows: dict[str, list[float]] = {
        "floor: queue actor": [],
        "shoal: tell async def": [],
        "shoal: tell async def, unchecked": [],
        "shoal: tell def": [],
        "shoal: tell def, unchecked": [],
    }
    async with Node() as node, Node(check_serializable=False) as unchecked:
        cases = [
            ("shoal: tell async def", node, Counter),
            ("shoal: tell async def, unchecked", unchecked, Counter),
            ("shoal: tell def", node, SyncCounter),
            ("shoal: tell def, unchecked", unchecked, SyncCounter),
        ]
        # warm-up on other keys
        await floor_tell_once(max(1000, n // 10))
        for _, on, cls in cases:
            await shoal_tell_once(on.ref(cls, "tell-warm"), max(1000, n // 10))
        for rep in range(reps):
            settle()
            rows["floor: queue actor"].append(await floor_tell_once(n))
            for name, on, cls in cases:
                settle()
                rows[name].append(await shoal_tell_once(on.ref(cls, f"tell-{rep}"), n))
    floor = median(rows["floor: queue actor"])
    out = []
    for name, secs in rows.items():
        s = median(secs)
        out.append([name, s * 1e3, n / s, s / n * 1e9, ratio(s, floor), ratio(floor, s)])
    table(
        ["tell", "ms total", "msgs/s", "ns/msg", "time/floor", "rate/floor"],
        out,
        title=(
            f"Local tell throughput: N={n:,} tells then one ask (count checked == N), "
            f"median of {reps} reps"
        ),
    )


# -- profile mode ---------------------------------------------------------------------------------


async def profile_ask(n: int) -> None:
    import cProfile
    import pstats
    import sys

    async with Node() as node:
        c = node.ref(Counter, "profile")
        out = [0] * n
        await shoal_ask_loop(c, n, 1, out)  # warm
        settle()
        blocks0 = sys.getallocatedblocks()
        await shoal_ask_loop(c, n // 100, 100, out)
        settle()
        print(f"net allocated blocks per ask: {(sys.getallocatedblocks() - blocks0) / n:+.4f}")
        prof = cProfile.Profile()
        prof.enable()
        await shoal_ask_loop(c, n // 100, 100, out)
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asks", type=int, default=200_000, help="sequential asks per pass")
    parser.add_argument(
        "--suspending-asks",
        type=int,
        default=50_000,
        help="sequential asks per pass in the sleep(0) rows (slower path)",
    )
    parser.add_argument("--tells", type=int, default=500_000, help="tells per repetition")
    parser.add_argument("--batch", type=int, default=100, help="calls per timed batch")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median is printed)")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile the sequential ask")
    args = parser.parse_args()
    if args.quick:
        args.asks, args.suspending_asks, args.tells, args.reps = 10_000, 5_000, 20_000, 2
    if args.profile:
        run(profile_ask(args.asks))
        return
    t0 = time.perf_counter()
    run(bench_ask(args.asks, args.suspending_asks, args.batch, args.reps))
    print()
    run(bench_tell(args.tells, args.reps))
    print(f"\n(total {time.perf_counter() - t0:.1f} s on uvloop)")


if __name__ == "__main__":
    main()
