"""Live migration between real node processes: state travels, no message is lost."""

from __future__ import annotations

import asyncio

import pytest

from actors import Node
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import cluster, converged_client
from tests.sample_actors import Follower

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def test_migrate_moves_state_and_loses_no_message() -> None:
    with cluster(3) as procs:
        async with converged_client(procs, 3) as client:
            key = "mover"
            c = client.ref("Counter", key)
            assert await c.incr(5) == 5
            home = await client.locate(c)  # activated by its first call: on its ring owner
            assert home in {p.address for p in procs}
            away = next(p.address for p in procs if p.address != home)
            elsewhere = next(p.address for p in procs if p.address not in (home, away))

            answered = 0
            under_load = asyncio.Event()

            async def load(n: int) -> list[int]:
                nonlocal answered
                results = []
                for _ in range(n):
                    results.append(await c.incr(1))
                    answered += 1
                    if answered >= 16:
                        under_load.set()
                return results

            loads = [asyncio.ensure_future(load(25)) for _ in range(8)]
            for _ in range(20):
                c.incr.tell(1)
            # migrate while the asks are flowing: 16 of the 200 answered, most still to come
            await asyncio.wait_for(under_load.wait(), 15)
            await client.migrate(c, to=away)
            print(f"{answered} of 200 asks answered when the migration ended")
            assert answered < 200, "the load ended before the migration: it proves nothing"
            results = await asyncio.wait_for(asyncio.gather(*loads), 30)
            assert await client.locate(c) == away
            total = 5 + 8 * 25 + 20
            assert await c.peek() == total
            seen = sorted(x for r in results for x in r)
            assert len(seen) == len(set(seen)) == 200  # every ask ran exactly once

            await client.migrate(c, to=elsewhere)  # from a non-owner to a third node
            assert await client.locate(c) == elsewhere
            assert await c.incr(1) == total + 1
            await client.migrate(c, to=home)  # and back to the owner
            assert await client.locate(c) == home
            assert await c.incr(1) == total + 2


async def test_a_large_state_moves_in_chunks_under_a_small_frame_limit() -> None:
    """A 3 MB state with frames limited to 1 MiB: it cannot travel in the handoff request, so
    it is staged in the source's data store, fetched by the target in chunks, and removed."""
    net = MemoryNetwork()
    nodes = [
        Node(
            listen=f"mem://big-{name}",
            seeds=[] if name == "a" else ["mem://big-a"],
            transport=MemoryTransport(net, max_frame_bytes=1 << 20),
            max_frame_size=1 << 20,
            default_timeout=10,
            serve=[Follower],
        )
        for name in ("a", "b")
    ]
    for node in nodes:
        await node.start()
    try:
        a, b = nodes
        ref = a.ref(Follower, "heavy")
        await ref.load(3_000_000)
        digest = await ref.ballast_digest()
        home = await a.locate(ref)
        source, target = (a, b) if home == a.address else (b, a)
        await a.migrate(ref, to=target.address)
        assert await a.locate(ref) == target.address
        assert await ref.ballast_digest() == digest
        assert len(source.data) == 0, "the staged state was left behind"
    finally:
        for node in reversed(nodes):
            await node.stop()
