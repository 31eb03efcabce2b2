"""Actor types used by the behaviour tests; importable by node processes (``--import``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import zlib
from typing import Any

import actors
from actors import actor, data
from actors.data import DataRef
from runtime.context import current_node


def pattern(nbytes: int) -> bytes:
    """``nbytes`` of a fixed, non-constant pattern (cheap to make, checkable with crc32)."""
    block = bytes(range(256)) * 4096
    whole, rest = divmod(nbytes, len(block))
    return b"".join([block] * whole + [block[:rest]])


#: Partner calls made by ``Follower.rally`` turns in this process, and whether rallies go on.
RALLY: dict[str, int] = {"calls": 0, "running": 1}

#: Turns in progress in this process per pool, and the most seen at once (stateless workers).
POOL_STATS: dict[str, int] = {"inflight": 0, "max": 0}


@actor
class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.seen: list[Any] = []
        self.inflight = 0
        self.max_inflight = 0
        self.timed: list[Any] = []

    async def incr(self, n: int = 1) -> int:
        self.count += n
        return self.count

    def peek(self) -> int:
        return self.count

    def whoami(self) -> str:
        return self.key

    async def record(self, item: Any) -> None:
        self.seen.append(item)

    def history(self) -> list[Any]:
        return self.seen

    async def work(self, seconds: float = 0.002) -> int:
        """Counts overlapping turns: stays 1 for a non-reentrant actor."""
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        await asyncio.sleep(seconds)
        self.inflight -= 1
        return self.max_inflight

    async def slow_incr(self, seconds: float) -> int:
        """Count one, after ``seconds`` (a turn that holds back what queues behind it)."""
        await asyncio.sleep(seconds)
        self.count += 1
        return self.count

    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    async def boom(self, message: str = "boom") -> None:
        raise ValueError(message)

    def sync_boom(self) -> None:
        raise KeyError("sync")

    def bad_result(self) -> Any:
        return object()

    def echo(self, *args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    async def call_other(self, key: str, method: str, *args: Any) -> Any:
        return await getattr(actors.ref(Counter, key), method)(*args)

    async def ping_back(self, other: str) -> int:
        """A -> B -> A: asks ``other`` to call this actor back within the same chain."""
        return int(await actors.ref(Counter, other).call_other(self.key, "peek"))

    async def tell_other(self, key: str, item: Any) -> None:
        actors.ref(Counter, key).record.tell(item)

    async def timed_call(self, key: str, method: str, timeout: float, *args: Any) -> Any:
        """Asks Counter ``key`` with a ``timeout`` of its own; records (see ``last_timed``) how
        the nested ask ended and after how many seconds, even if this turn's caller gave up."""
        t0 = time.monotonic()
        try:
            result = await getattr(actors.ref(Counter, key), method).ask(*args, timeout=timeout)
            outcome = "ok"
        except actors.ActorError as err:
            result, outcome = None, type(err).__name__
        self.timed = [outcome, time.monotonic() - t0]
        return result

    def last_timed(self) -> list[Any]:
        return self.timed

    def blob(self, size: int) -> bytes:
        """A result of ``size`` bytes (for frame-size limits)."""
        return b"x" * size

    def _secret(self) -> str:
        return "never"


#: Events that ``Gated.hold`` turns wait on, by name: set one to let its turns end.
GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    """The event ``Gated.hold(name)`` waits on (made on first use)."""
    event = GATES.get(name)
    if event is None:
        event = GATES[name] = asyncio.Event()
    return event


@actor
class Gated:
    """An actor whose ``hold`` turns wait for a gate: what is sent meanwhile queues up."""

    def __init__(self) -> None:
        self.held = 0
        self.seen: list[Any] = []

    async def hold(self, name: str) -> int:
        await gate(name).wait()
        self.held += 1
        return self.held

    def note(self, item: Any) -> None:
        self.seen.append(item)

    def notes(self) -> list[Any]:
        return self.seen

    def counts(self) -> list[int]:
        return [self.held, len(self.seen)]


@actor(reentrant=True)
class Interleaver:
    def __init__(self) -> None:
        self.inflight = 0
        self.max_inflight = 0

    async def work(self, seconds: float = 0.005) -> int:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        await asyncio.sleep(seconds)
        self.inflight -= 1
        return self.max_inflight

    def running(self) -> int:
        """Turns of ``work`` in progress now (reentrant: answers while they run)."""
        return self.inflight


@actor(stateless=True, max_workers=4)
class Pool:
    async def work(self, seconds: float = 0.005) -> int:
        POOL_STATS["inflight"] += 1
        POOL_STATS["max"] = max(POOL_STATS["max"], POOL_STATS["inflight"])
        await asyncio.sleep(seconds)
        POOL_STATS["inflight"] -= 1
        return POOL_STATS["max"]

    def reset(self) -> None:
        POOL_STATS.update(inflight=0, max=0)


@actor
class Journal:
    """Collects events sent by other actors (works the same across processes)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def add(self, event: Any) -> None:
        self.events.append(event)

    def read(self) -> list[Any]:
        return self.events


@actor(idle_after=0.2)
class Ephemeral:
    def __init__(self) -> None:
        self.count = 0

    async def on_activate(self) -> None:
        await actors.ref(Journal, "life").add(["activate", self.key])

    async def on_deactivate(self) -> None:
        actors.ref(Journal, "life").add.tell(["deactivate", self.key, self.count])

    def incr(self) -> int:
        self.count += 1
        return self.count


@actor
class Fragile:
    def __init__(self) -> None:
        if self.key.startswith("bad"):
            raise RuntimeError(f"cannot build {self.key}")

    async def on_activate(self) -> None:
        if self.key.startswith("hook"):
            raise RuntimeError("on_activate failed")

    def ok(self) -> bool:
        return True


@actor
class Deadlocker:
    """A -> B while B -> A in different call chains: deadlocks until the deadline."""

    async def hold_then_call(self, other: str, seconds: float) -> Any:
        await asyncio.sleep(seconds)
        return await actors.ref(Deadlocker, other).quick()

    def quick(self) -> str:
        return self.key


@actor
class Probe:
    """Records the ids of the calls it ran, so a test can tell a call that ran twice."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def touch(self, call_id: Any = None) -> list[Any]:
        self.calls.append(call_id)
        return [len(self.calls), os.getpid()]

    def ran(self) -> list[Any]:
        return self.calls

    def mark(self, tag: str) -> list[Any]:
        """Record ``[tag]``; answers who ran it and when: ``[pid, wall-clock time]``."""
        self.calls.append([tag])
        return [os.getpid(), time.time()]


@actor
class NodeInfo:
    """Answers questions about the node it runs on (place one per node by picking keys)."""

    def address(self) -> str:
        return current_node().address

    def activations(self, type_name: str) -> int:
        table = current_node()._catalog.by_type.get(type_name, {})
        return len(table)

    def bounds(self) -> dict[str, int]:
        """What the node's memory bounds refused or dropped so far (``Node.bounds``)."""
        return current_node().bounds

    def view(self) -> list[str]:
        """The hosting members this node knows."""
        return current_node().members

    def rally_calls(self) -> int:
        """Partner calls ``Follower.rally`` made on this node so far."""
        return RALLY["calls"]

    def rallies(self, running: bool) -> None:
        """Let rallies on this node go on, or end at their next turn."""
        RALLY["running"] = int(running)

    def active_keys(self, type_name: str) -> list[str]:
        return sorted(current_node()._catalog.by_type.get(type_name, {}))

    async def mark_all(self, type_name: str, keys: list[str], tag: str) -> list[Any]:
        """Concurrent first calls from this node: ``mark(tag)`` on every key. Each answer is
        ``[pid, time]`` for an acknowledged call, or ``"ErrorName: message"``."""
        results = await asyncio.gather(
            *(actors.ref(type_name, k).mark(tag) for k in keys), return_exceptions=True
        )
        return [f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else r for r in results]

    async def hit_all(self, type_name: str, keys: list[str], tag: str) -> int:
        """Concurrent first calls from this node to every key."""
        results = await asyncio.gather(
            *(actors.ref(type_name, k).touch([tag, k]) for k in keys), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise RuntimeError(f"{len(errors)} calls failed, first: {errors[0]!r}")
        return len(results)


@actor
class Meter:
    """Reports the data-plane envelopes its node received (asks, tells, replies, errors)."""

    def received(self) -> list[int]:
        messaging = current_node()._messaging
        return list(messaging.received) if messaging is not None else []


@actor
class Shelf:
    """Keeps named data on the node it runs on."""

    async def keep(self, key: str, payload: Any) -> DataRef:
        return await data.put(key, payload)

    async def make(self, key: str, nbytes: int, kind: str = "bytes") -> DataRef:
        """Keep a payload of ``nbytes`` made here (``pattern(nbytes)``; ``kind`` "numpy": a
        float64 array of those bytes), so that it need not travel in the ask."""
        # made in a thread (bytes.join and numpy's copy let go of the GIL): a few hundred MB
        # made on the loop would stall it for long enough to lose the cluster's quorum
        payload: Any = await asyncio.to_thread(pattern, nbytes)
        if kind == "numpy":
            import numpy as np

            raw = payload
            payload = await asyncio.to_thread(lambda: np.frombuffer(raw, np.float64).copy())
        return await data.put(key, payload)

    async def drop(self, key: str) -> bool:
        return await data.delete(key)

    def where(self) -> str:
        return current_node().address


@actor
class Reader:
    """Reads data kept on any node, from the node it runs on."""

    async def fetch(self, ref: DataRef) -> Any:
        return await ref.get()

    async def digest(self, ref: DataRef) -> list[Any]:
        """``[type name, length in bytes, crc32, seconds]`` of the payload fetched."""
        t0 = time.perf_counter()
        value = await ref.get()
        took = time.perf_counter() - t0
        raw = memoryview(value).cast("B") if not isinstance(value, bytes | bytearray) else value
        crc = await asyncio.to_thread(zlib.crc32, raw)  # (zlib lets go of the GIL)
        return [type(value).__name__, len(raw), crc, took]

    def where(self) -> str:
        return current_node().address


@actor(placement="data")
class Follower:
    """Reads data and calls partners; ``placement="data"`` moves it toward what it uses."""

    def __init__(self) -> None:
        self.reads = 0
        self.pings = 0
        self.ballast = b""

    async def read(self, ref: DataRef) -> str:
        """Read ``ref`` once; answers where it ran."""
        await ref.get()
        self.reads += 1
        return current_node().address

    async def chat(self, partner: str, n: int) -> str:
        """Ask ``ping`` of the Follower ``partner`` ``n`` times; answers where it ran."""
        for _ in range(n):
            await actors.ref(Follower, partner).ping()
        return current_node().address

    def ping(self) -> int:
        self.pings += 1
        return self.pings

    async def rally(self, partner: str, n: int) -> None:
        """Ask ``ping`` of ``partner`` ``n`` times, then tell it to do the same back: a
        rally that keeps itself going (between two turns both ends are idle, so movable)
        while ``RALLY["running"]``."""
        if not RALLY["running"]:
            return
        other = actors.ref(type(self), partner)
        for _ in range(n):
            await other.ping()
        RALLY["calls"] += n
        other.rally.tell(self.key, n)

    def load(self, nbytes: int) -> None:
        """Carry ``nbytes`` of state (what a move must transfer)."""
        self.ballast = os.urandom(nbytes)

    def ballast_digest(self) -> list[Any]:
        """``[size, sha256]`` of the state it carries."""
        return [len(self.ballast), hashlib.sha256(self.ballast).hexdigest()]

    def where(self) -> str:
        return current_node().address

    def counts(self) -> list[int]:
        return [self.reads, self.pings]

    def rebalancer_stats(self) -> dict[str, int]:
        """What the rebalancer of the node it runs on did so far."""
        rebalancer = current_node()._rebalancer
        return {} if rebalancer is None else dict(rebalancer.stats)


@actor(placement="hash")
class PinnedFollower(Follower):
    """A Follower that stays where hashing put it (the floor of apart partners)."""


@actor(placement="data", resources={"gpu": 1})
class GpuFollower(Follower):
    """A Follower that only a node offering a GPU may host."""


@actor(resources={"cpu": 1})
class CpuBound:
    """Needs a CPU: hosted by members that detected one (or were given ``cpu``)."""

    def where(self) -> str:
        return current_node().address
