"""Activation lifecycle: creation, one activation per key, idle deactivation, reactivation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors import Node, RemoteError, actor
from tests.sample_actors import Counter, Ephemeral, Journal, Pool

pytestmark = pytest.mark.timeout(30)


async def _poll(predicate: Any, timeout: float = 5.0) -> None:
    """Wait for an async predicate to hold, polling with a deadline."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_one_activation_per_key() -> None:
    async with Node() as node:
        await asyncio.gather(*(node.ref(Counter, f"k{i % 10}").incr() for i in range(100)))
        assert node.activation_count == 10
        assert await node.ref(Counter, "k3").peek() == 10


async def test_activation_order_key_init_on_activate() -> None:
    async with Node() as node:
        assert await node.ref(Ephemeral, "order").incr() == 1
        assert await node.ref(Journal, "life").read() == [["activate", "order"]]


async def test_idle_deactivation_then_fresh_reactivation() -> None:
    async with Node() as node:
        e = node.ref(Ephemeral, "idle")
        assert await e.incr() == 1
        assert await e.incr() == 2
        journal = node.ref(Journal, "life")

        async def deactivated() -> bool:
            return ["deactivate", "idle", 2] in await journal.read()

        await _poll(deactivated)
        assert await node.locate(e) is None
        # next message activates it afresh: state was not persistent
        assert await e.incr() == 1
        assert (await journal.read()).count(["activate", "idle"]) == 2


async def test_busy_activation_is_not_collected() -> None:
    async with Node() as node:
        e = node.ref(Ephemeral, "busy")
        for _ in range(30):  # keeps it busy for about 3 idle periods' worth of quanta
            await e.incr()
            await asyncio.sleep(0.02)
        assert ["deactivate", "busy", 30] not in await node.ref(Journal, "life").read()


async def test_deactivate_idle_on_demand_and_stop_runs_on_deactivate() -> None:
    events: list[str] = []

    @actor(name="Hooked")
    class Hooked:
        async def on_activate(self) -> None:
            events.append(f"up {self.key}")

        async def on_deactivate(self) -> None:
            await asyncio.sleep(0)
            events.append(f"down {self.key}")

        def hello(self) -> str:
            return "hi"

    async with Node() as node:
        assert await node.ref(Hooked, "a").hello() == "hi"
        assert await node.ref("Hooked", "b").hello() == "hi"
        assert node.activation_count == 2
    assert sorted(events) == ["down a", "down b", "up a", "up b"]


async def test_messages_arriving_during_deactivation_reach_a_fresh_activation() -> None:
    gate = asyncio.Event()

    @actor(name="SlowDown")
    class SlowDown:
        def __init__(self) -> None:
            self.n = 0

        async def on_deactivate(self) -> None:
            await gate.wait()

        def bump(self) -> int:
            self.n += 1
            return self.n

    async with Node() as node:
        r = node.ref(SlowDown, "x")
        assert await r.bump() == 1
        act = node._catalog.lookup("SlowDown", "x")
        assert act is not None and not isinstance(act, list)
        deactivation = asyncio.ensure_future(node._catalog.deactivate(act))
        await asyncio.sleep(0)  # let the deactivation start and suspend in on_deactivate
        pending = asyncio.ensure_future(r.bump())
        await asyncio.sleep(0)
        assert not pending.done()
        gate.set()
        await deactivation
        assert await asyncio.wait_for(pending, 5) == 1  # a fresh activation served it


async def test_stateless_pool_is_bounded() -> None:
    async with Node() as node:
        p = node.ref(Pool, "bounded")
        await p.reset()
        await asyncio.gather(*(p.work(0.01) for _ in range(50)))
        pool = node._catalog.lookup("Pool", "bounded")
        assert isinstance(pool, list)
        assert 1 < len(pool) <= 4


async def test_failed_activation_is_not_kept() -> None:
    @actor(name="Flaky")
    class Flaky:
        attempts = 0

        def __init__(self) -> None:
            Flaky.attempts += 1
            if Flaky.attempts == 1:
                raise RuntimeError("first build fails")

        def ok(self) -> int:
            return Flaky.attempts

    async with Node() as node:
        with pytest.raises(RemoteError):
            await node.ref(Flaky, "f").ok()
        assert node.activation_count == 0
        assert await node.ref(Flaky, "f").ok() == 2


async def test_async_on_activate_failure_fails_queued_calls() -> None:
    @actor(name="LateFail")
    class LateFail:
        async def on_activate(self) -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("late")

        def ok(self) -> bool:
            return True

    async with Node() as node:
        results = await asyncio.gather(
            *(node.ref(LateFail, "l").ok() for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RemoteError) for r in results), results
        assert node.activation_count == 0


async def test_epochs_are_distinct_per_activation() -> None:
    async with Node() as node:
        await node.ref(Counter, "e1").incr()
        await node.ref(Counter, "e2").incr()
        a = node._catalog.lookup("Counter", "e1")
        b = node._catalog.lookup("Counter", "e2")
        assert not isinstance(a, list) and not isinstance(b, list)
        assert a is not None and b is not None and a.epoch != b.epoch
