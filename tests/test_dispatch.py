"""Inbound dispatch: requests from the wire that cannot be delivered."""

from __future__ import annotations

import logging

import pytest

from actors import Node
from runtime.clock import Clock
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import until
from tests.sample_actors import Counter

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
