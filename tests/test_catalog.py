"""Activation lifecycle: creation, one activation per key, idle deactivation, reactivation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors import Node, Overloaded, RemoteError, actor
from actors.decorator import actor_type
from runtime.lifecycle import ACTIVE
from tests.sample_actors import Counter, Ephemeral, Gated, Journal, Pool, gate

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


async def test_busy_activation_is_not_collected_while_an_idle_one_is() -> None:
    async with Node() as node:
        journal = node.ref(Journal, "life")
        assert await node.ref(Ephemeral, "left-alone").incr() == 1
        e = node.ref(Ephemeral, "busy")
        start = time.monotonic()
        counts = []
        for _ in range(30):
            counts.append(await e.incr())
            # The sleep is the behaviour under test: time passes between messages, each gap
            # well under idle_after (0.2 s), all of them together three times over it.
            await asyncio.sleep(0.02)
        assert time.monotonic() - start >= 3 * 0.2
        assert counts == list(range(1, 31))  # never reactivated: the state was kept
        events = await journal.read()
        assert events.count(["activate", "busy"]) == 1, events
        assert not [ev for ev in events if ev[:2] == ["deactivate", "busy"]], events

        # ... while the collector was at work: the actor left alone went
        async def peer_collected() -> bool:
            return ["deactivate", "left-alone", 1] in await journal.read()

        await _poll(peer_collected)


async def test_stop_runs_on_deactivate_of_every_activation() -> None:
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
        assert sorted(events) == ["up a", "up b"]
    assert sorted(events) == ["down a", "down b", "up a", "up b"]
    assert node.activation_count == 0


async def test_deactivate_idle_takes_exactly_the_idle_activations() -> None:
    """``Node.deactivate_idle()`` deactivates now every activation idle for its
    ``idle_after`` (idleness on the catalog's coarse clock: the time since a turn last began)
    and leaves busy and recent ones. So that nothing but this call collects, the background
    collector is held first: it is made to collect a ``Holder`` whose ``on_deactivate`` waits
    (the collector deactivates one activation at a time, so it stops there)."""
    collector_held, unhold = asyncio.Event(), asyncio.Event()
    release, busy_release = asyncio.Event(), asyncio.Event()
    started: list[str] = []
    down: list[str] = []

    @actor(name="Idler", idle_after=0.2)
    class Idler:
        async def on_deactivate(self) -> None:
            down.append(self.key)

        async def long_turn(self) -> str:
            started.append(self.key)
            await release.wait()
            return self.key

        async def busy_turn(self) -> str:
            await busy_release.wait()
            return self.key

        def ping(self) -> str:
            return self.key

    @actor(name="Holder", idle_after=0.2)
    class Holder:
        async def on_deactivate(self) -> None:
            collector_held.set()
            await unhold.wait()

        def ping(self) -> str:
            return self.key

    async with Node() as node:
        idler = lambda key: node.ref(Idler, key)  # noqa: E731
        # Two turns begin, and go on past idle_after: once they end, their actors are idle.
        longs = [asyncio.ensure_future(idler(k).long_turn()) for k in ("idle-1", "idle-2")]

        async def both_started() -> bool:
            return len(started) == 2

        await _poll(both_started)
        busy = asyncio.ensure_future(idler("busy").busy_turn())  # still running at the end
        assert await node.ref(Holder, "h").ping() == "h"  # its turn began after the long ones
        await asyncio.wait_for(collector_held.wait(), 5)  # idle_after later: collector held
        try:
            assert await idler("recent").ping() == "recent"  # a turn just now: not idle
            release.set()
            assert await asyncio.wait_for(asyncio.gather(*longs), 5) == ["idle-1", "idle-2"]
            assert down == []
            assert node.activation_count == 5  # idle-1, idle-2, busy, recent, h (going)

            assert await node.deactivate_idle() == 2
            assert sorted(down) == ["idle-1", "idle-2"]
            assert node.activation_count == 3
            assert await node.locate(idler("idle-1")) is None
            assert await node.locate(idler("idle-2")) is None
            assert await node.locate(idler("busy")) == node.address
            assert await node.locate(idler("recent")) == node.address
            assert await node.deactivate_idle() == 0  # nothing else is idle
            assert sorted(down) == ["idle-1", "idle-2"]
        finally:
            unhold.set()
            busy_release.set()
        assert await asyncio.wait_for(busy, 5) == "busy"


async def test_calls_queued_during_async_on_activate_run_after_it_in_order() -> None:
    activating, gate = asyncio.Event(), asyncio.Event()

    @actor(name="SlowStart")
    class SlowStart:
        def __init__(self) -> None:
            self.log: list[object] = []

        async def on_activate(self) -> None:
            self.log.append("activate")
            activating.set()
            await gate.wait()
            self.log.append("activated")

        def note(self, i: int) -> list[object]:
            self.log.append(i)
            return list(self.log)

    async with Node() as node:
        r = node.ref(SlowStart, "s")
        calls = [asyncio.ensure_future(r.note(i)) for i in range(5)]
        await asyncio.wait_for(activating.wait(), 5)
        assert not any(c.done() for c in calls)  # all wait for on_activate
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*calls), 5)
        for i, log in enumerate(results):
            assert log == ["activate", "activated", *range(i + 1)], log


async def test_messages_arriving_during_deactivation_reach_a_fresh_activation() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    @actor(name="SlowDown", idle_after=0.2)
    class SlowDown:
        def __init__(self) -> None:
            self.n = 0

        async def on_deactivate(self) -> None:
            entered.set()
            await gate.wait()

        def bump(self) -> int:
            self.n += 1
            return self.n

    async with Node() as node:
        r = node.ref(SlowDown, "x")
        assert await r.bump() == 1
        await asyncio.wait_for(entered.wait(), 5)  # idle: the collector is deactivating it
        pending = asyncio.ensure_future(r.bump())
        done, _ = await asyncio.wait({pending}, timeout=0.05)
        assert not done  # it waits for the deactivation to end ...
        gate.set()
        assert await asyncio.wait_for(pending, 5) == 1  # ... and a fresh activation serves it


async def test_stateless_pool_is_bounded() -> None:
    async with Node() as node:
        p = node.ref(Pool, "bounded")
        await p.reset()
        await asyncio.gather(*(p.work(0.01) for _ in range(50)))
        assert 1 < node.activation_count <= 4  # the pool's workers are all that is active


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


# -- the bound on activations -----------------------------------------------------------------

#: What each Evictable's ``on_deactivate`` saw: ``[key, count]``.
EVICTED: list[list[Any]] = []


@actor(name="Evictable")
class Evictable:
    def __init__(self) -> None:
        self.count = 0

    def incr(self) -> int:
        self.count += 1
        return self.count

    def on_deactivate(self) -> None:
        EVICTED.append([self.key, self.count])


@actor(name="SlowGoodbye")
class SlowGoodbye:
    async def on_deactivate(self) -> None:
        await asyncio.sleep(0.01)

    def ok(self) -> bool:
        return True


async def test_beyond_max_activations_the_least_recently_used_idle_ones_go_first() -> None:
    EVICTED.clear()
    async with Node(max_activations=3) as node:

        async def incr(key: str) -> int:
            n = await node.ref(Evictable, key).incr()
            assert node.activation_count <= 3
            return n

        for key in "abc":
            assert await incr(key) == 1
        assert await incr("d") == 1  # all as old: the first made goes
        assert EVICTED == [["a", 1]]  # on_deactivate ran, as on an idle deactivation
        assert await incr("b") == 2  # used since: b is spared, c goes
        assert await incr("e") == 1
        assert await incr("b") == 3
        assert await incr("f") == 1  # d was not used since it was made
        assert EVICTED == [["a", 1], ["c", 1], ["d", 1]]
        for i in range(20):  # in a stream of new actors, the one in use stays
            assert await incr("b") == 4 + i
            await incr(f"new-{i}")
        assert "b" not in [k for k, _ in EVICTED]
        assert node._catalog.evicted == len(EVICTED) == 23
        assert await incr("a") == 1  # activated afresh


async def test_an_eviction_that_suspends_still_bounds_what_is_live() -> None:
    async with Node(max_activations=2) as node:
        for i in range(10):
            assert await node.ref(SlowGoodbye, f"sg{i}").ok()
        live = [a for a in node._catalog if a.status == ACTIVE]
        assert len(live) <= 2 and node.activation_count <= 10


async def test_with_no_idle_activation_a_new_one_is_refused_with_overloaded() -> None:
    async with Node(max_activations=2) as node:
        for key in ("busy-a", "busy-b"):
            node.ref(Gated, key).hold.tell("busy")
        with pytest.raises(Overloaded, match="max_activations 2"):
            await node.ref(Counter, "refused").incr.ask(timeout=0.1)  # asked until its deadline
        assert node.activation_count == 2
        pending = asyncio.ensure_future(node.ref(Counter, "refused").incr())
        gate("busy").set()  # once the turns ended, one of them makes room
        assert await asyncio.wait_for(pending, 5) == 1
        assert node.activation_count == 2


async def test_a_handoff_is_taken_beyond_max_activations() -> None:
    async with Node(max_activations=1) as node:
        node.ref(Gated, "handoff-busy").hold.tell("handoff")
        atype = actor_type(Counter)
        assert atype is not None
        act = node._catalog.receive_handoff(atype, "handed", {"count": 7})
        assert node.activation_count == 2 and act.instance.count == 7
        gate("handoff").set()


@pytest.mark.parametrize("bad", [0, "100", 1.0])
def test_max_activations_is_checked(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="max_activations"):
        Node(max_activations=bad)  # type: ignore[arg-type]
