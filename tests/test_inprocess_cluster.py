"""Clusters of nodes in one process over the in-memory network (``mem://``): what a member
serves, and the handoff of its activations when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from actors import Node, UnknownActorType
from actors.decorator import actor_type
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import until
from tests.sample_actors import Counter, Journal, Probe

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def net() -> AsyncIterator[MemoryNetwork]:
    yield MemoryNetwork()


def _member(net: MemoryNetwork, name: str, seeds: list[str], **kwargs: object) -> Node:
    return Node(
        listen=name,
        seeds=seeds,
        transport=MemoryTransport(net),
        default_timeout=5,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_stop_hands_every_activation_with_its_state_to_the_other_member(
    net: MemoryNetwork,
) -> None:
    a = _member(net, "mem://hand-a", [])
    b = _member(net, "mem://hand-b", ["mem://hand-a"])
    await a.start()
    try:
        await b.start()
        try:
            await until(lambda: len(a.members) == len(b.members) == 2, 10)
            keys = [f"hand-{i}" for i in range(40)]
            for i, k in enumerate(keys):
                assert await a.ref(Counter, k).incr(i + 1) == i + 1
            hosts = await asyncio.gather(*(a.locate(a.ref(Counter, k)) for k in keys))
            on_b = [k for k, h in zip(keys, hosts, strict=True) if h == b.address]
            assert 0 < len(on_b) < len(keys), hosts
            assert b.activation_count == len(on_b)
            assert a.activation_count == len(keys) - len(on_b)
        finally:
            await b.stop()
        # stop() returned: b's activations were handed over before it left
        assert b.activation_count == 0
        assert a.activation_count == len(keys)
        await until(lambda: a.members == [a.address], 10)
        for i, k in enumerate(keys):
            assert await a.locate(a.ref(Counter, k)) == a.address
            assert await a.ref(Counter, k).incr() == i + 2, k  # the count came along
    finally:
        await a.stop()


async def test_members_host_only_the_types_they_serve(net: MemoryNetwork) -> None:
    counters = _member(net, "mem://serve-c", [], serve=["Counter"])
    probes = _member(net, "mem://serve-p", ["mem://serve-c"], serve=[Probe])
    client = Node(seeds=["mem://serve-c"], serve=(), transport=MemoryTransport(net))
    started: list[Node] = []
    try:
        for n in (counters, probes, client):
            await n.start()
            started.append(n)
        await until(lambda: all(len(n.members) == 2 for n in started), 10)
        for i in range(20):
            c, p = client.ref(Counter, f"c-{i}"), client.ref(Probe, f"p-{i}")
            assert await c.incr() == 1
            assert (await p.touch(i))[0] == 1
            assert await client.locate(c) == counters.address
            assert await client.locate(p) == probes.address
        assert counters.activation_count == probes.activation_count == 20
        with pytest.raises(UnknownActorType):  # served by no member
            await client.ref(Journal, "j").read()
        with pytest.raises(UnknownActorType):  # nor from a member that does not serve it
            await counters.ref(Journal, "j").read()
    finally:
        for n in reversed(started):
            await n.stop()


async def test_an_owner_drops_its_own_activation_for_a_newer_one_not_an_older(
    net: MemoryNetwork,
) -> None:
    """Fencing at the owner: when it hosts an actor and hears of another activation of it,
    the older one is the stale duplicate. A newer one was made by a view without the owner
    (which had been removed: cut off, or stalled, and back before it heard so -- after a
    heal between network namespaces its view-sync round got the answers of the members that
    had taken its actors over, and it superseded their live activations with its own)."""
    a = _member(net, "mem://fence-a", [])
    b = _member(net, "mem://fence-b", ["mem://fence-a"])
    await a.start()
    try:
        await b.start()
        try:
            await until(lambda: len(a.members) == len(b.members) == 2, 10)
            assert a._cluster is not None
            key = next(
                k for k in (f"fence-{i}" for i in range(100)) if a._cluster.owns("Counter", k)
            )
            assert await a.ref(Counter, key).incr(5) == 5
            act = a._catalog.lookup("Counter", key)
            assert act is not None and not isinstance(act, list)
            # an older registration loses: a keeps its own (and tells b to drop its copy)
            assert a._cluster.register("Counter", key, b.address, act.epoch - 1) == a.address
            assert a._catalog.lookup("Counter", key) is act
            # a newer activation on b, as a view without a would have made it: b registers
            # it with a, the owner, which drops its own and sends calls to b from now on
            counter = actor_type(Counter)
            assert counter is not None
            b._catalog.receive_handoff(counter, key, {"count": 7})
            await until(lambda: a._catalog.lookup("Counter", key) is None, 5)
            assert b._catalog.lookup("Counter", key) is not None
            assert await a.ref(Counter, key).incr() == 8
            assert await a.locate(a.ref(Counter, key)) == b.address
        finally:
            await b.stop()
    finally:
        await a.stop()
