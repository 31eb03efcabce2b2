"""Inbound dispatch: requests from the wire that cannot be delivered, and what the mailbox
bound does to asks and tells from the wire."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from actors import Node, Overloaded
from runtime.activation import Activation
from runtime.clock import Clock
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import host_and_client, queued, until
from tests.sample_actors import Counter, Gated, gate

pytestmark = pytest.mark.timeout(60)


class Wall:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_undeliverable_tells_are_logged_once_per_kind_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.node")
    net = MemoryNetwork()
    wall = Wall()
    member = Node(
        listen="mem://dispatch-a",
        serve=[Counter],
        transport=MemoryTransport(net),
        clock=Clock(wall=wall),
        default_timeout=5,
    )
    client = Node(
        seeds=["mem://dispatch-a"], serve=(), transport=MemoryTransport(net), default_timeout=5
    )
    async with member, client:
        await until(lambda: client.members == [member.address], 10)
        c = client.ref(Counter, "dispatch")
        for i in range(30):  # as a peer would: a method Counter does not have
            client.calls.remote_tell(member.address, "Counter", f"k{i}\nforged", "nothing", [], {})
        assert await c.incr() == 1  # in order on the link: the tells were handled before it

        def dropped() -> list[str]:
            return [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]

        [line] = dropped()
        assert line == (
            "tell to Counter/'k0\\nforged'.nothing dropped: Counter has no public method 'nothing'"
        )
        wall.now += 10
        client.calls.remote_tell(member.address, "Counter", "again", "nothing", [], {})
        assert await c.incr() == 2
        assert len(dropped()) == 2
        assert dropped()[1].endswith("; 29 more like it since the last one logged")


LIMIT = 300


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    """A member that hosts everything (``mailbox_limit`` LIMIT) and a pure client of it."""
    async with host_and_client("dispatch-host", LIMIT) as nodes:
        yield nodes


def _queued(node: Node, key: str) -> int:
    return queued(node, "Gated", key)


async def test_a_remote_ask_to_a_full_mailbox_is_refused_at_once_and_asked_again(
    pair: tuple[Node, Node],
) -> None:
    host, client = pair
    g = client.ref(Gated, "asked")
    await g.counts()
    for _ in range(LIMIT + 1):  # one runs (and holds), LIMIT wait
        g.hold.tell("asked")
    await until(lambda: _queued(host, "asked") == LIMIT, 10)
    # the receiver refuses it at once (nothing queued there) ...
    messaging, loop = client._messaging, asyncio.get_running_loop()
    assert messaging is not None
    now = loop.time()
    _, refused = messaging.ask(
        host.address, "Gated", "asked", "counts", [], {}, time.time() + 5, 0, 0, loop, now + 5, 5
    )
    with pytest.raises(Overloaded, match=f"mailbox_limit {LIMIT}"):
        await asyncio.wait_for(refused, 5)
    assert loop.time() - now < 1
    # ... and the calling node asks again until its deadline
    with pytest.raises(Overloaded):
        await g.counts.ask(timeout=0.2)
    assert _queued(host, "asked") == LIMIT
    pending = asyncio.ensure_future(g.counts())
    gate("asked").set()
    assert await asyncio.wait_for(pending, 10) == [LIMIT + 1, 0]


async def test_a_remote_teller_that_does_not_await_loses_what_is_past_twice_the_limit(
    pair: tuple[Node, Node],
) -> None:
    host, client = pair
    g = client.ref(Gated, "flooded")
    await g.counts()
    await g.hold.tell("flooded")
    total = 5 * LIMIT
    for i in range(total):
        g.note.tell(i)  # not awaited: no pushback reaches this sender
    await until(lambda: _queued(host, "flooded") >= 2 * LIMIT, 10)
    await until(lambda: host.bounds["dropped_tells"] > 0, 10)
    assert _queued(host, "flooded") == 2 * LIMIT
    gate("flooded").set()

    async def drained() -> bool:
        return (await g.counts())[1] == 2 * LIMIT

    await until(drained, 10)
    seen = await g.notes()
    assert seen == list(range(len(seen)))  # a prefix: what arrived ran, in order


async def test_paced_tells_are_acknowledged_when_there_is_room_and_refused_when_dropped(
    pair: tuple[Node, Node],
) -> None:
    host, client = pair
    g = client.ref(Gated, "acked")
    await g.counts()
    await g.hold.tell("acked")
    messaging = client._messaging
    assert messaging is not None
    acks = [
        messaging.paced_tell(host.address, "Gated", "acked", "note", [i], {}, 0, 10)
        for i in range(3 * LIMIT)
    ]
    await until(lambda: sum(a.done() for a in acks) >= 2 * LIMIT, 10)
    assert all(a.done() and a.exception() is None for a in acks[:LIMIT])  # room: at once
    assert not any(a.done() for a in acks[LIMIT : 2 * LIMIT])  # held until there is room
    assert all(isinstance(a.exception(), Overloaded) for a in acks[2 * LIMIT :])  # dropped
    act = host._catalog.lookup("Gated", "acked")
    assert isinstance(act, Activation) and len(act.waiting or ()) == LIMIT
    gate("acked").set()
    await asyncio.wait_for(asyncio.gather(*acks[LIMIT : 2 * LIMIT]), 10)
