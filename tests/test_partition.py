"""Partitions: the minority side serves nothing; after the heal, one activation per actor.

Run over the in-memory transport's fault hook (always), with five nodes in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from actors import ActorError, ActorTimeout, Node, NodeUnavailable
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.sample_actors import Counter

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def _until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float) -> float:
    start = time.monotonic()
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def test_three_two_split_minority_refuses_majority_serves_heal_converges() -> None:
    net = MemoryNetwork()
    names = [f"mem://p{i}" for i in range(5)]
    nodes = [
        Node(listen=name, seeds=names[:1], transport=MemoryTransport(net), default_timeout=3)
        for name in names
    ]
    try:
        for n in nodes:
            await n.start()
        await _until(lambda: all(len(n.members) == 5 for n in nodes), 15)
        keys = [f"part-{i}" for i in range(100)]
        for k in keys:
            assert await nodes[0].ref(Counter, k).incr() == 1
        majority, minority = nodes[:3], nodes[3:]
        minority_hosted = {k for n in minority for k in n._catalog._by_type.get("Counter", {})}
        assert minority_hosted

        net.partition(names[:3], names[3:])
        took = await _until(lambda: all(len(n.members) == 3 for n in majority), 10)
        print(f"majority removed the minority {took:.2f} s after the split")
        assert all(n._cluster is not None and not n._cluster.serving() for n in minority)
        await _until(lambda: all(n.activation_count == 0 for n in minority), 5)

        # the majority serves every actor, the minority's reactivated afresh
        for k in keys:
            count = await majority[1].ref(Counter, k).incr()
            assert count == (1 if k in minority_hosted else 2), k
        # the minority refuses: no actor runs there
        for k in keys[:10]:
            with pytest.raises((NodeUnavailable, ActorTimeout)):
                await minority[0].ref(Counter, k).incr.ask(timeout=1.0)
        assert all(n.activation_count == 0 for n in minority)

        net.heal()

        def converged() -> bool:
            return all(len(n.members) == 5 and n._cluster.serving() for n in nodes)  # type: ignore[union-attr]

        took = await _until(converged, 20)
        print(f"converged to 5 members {took:.2f} s after the heal")

        async def all_reachable() -> bool:
            try:
                await asyncio.gather(*(minority[0].ref(Counter, k).peek() for k in keys))
            except ActorError:
                return False
            return True

        await _until(all_reachable, 10)
        hosted = [k for n in nodes for k in n._catalog._by_type.get("Counter", {})]
        assert len(hosted) == len(set(hosted)) == len(keys)
        for k in keys:
            expected = 2 if k in minority_hosted else 3
            assert await nodes[4].ref(Counter, k).incr() == expected, k
    finally:
        for n in reversed(nodes):
            await n.stop()
