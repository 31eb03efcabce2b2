"""Live migration between real node processes: state travels, no message is lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster import cluster, converged_client

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def test_migrate_moves_state_and_loses_no_message() -> None:
    with cluster(3) as procs:
        client = await converged_client(procs, 3)
        try:
            assert client._cluster is not None
            key = "mover"
            c = client.ref("Counter", key)
            assert await c.incr(5) == 5
            home = client._cluster.owner("Counter", key)
            assert await client.locate(c) == home
            away = next(p.address for p in procs if p.address != home)
            elsewhere = next(p.address for p in procs if p.address not in (home, away))

            async def load(n: int) -> list[int]:
                return [await c.incr(1) for _ in range(n)]

            loads = [asyncio.ensure_future(load(25)) for _ in range(8)]
            for _ in range(20):
                c.incr.tell(1)
            await asyncio.sleep(0.01)
            await client.migrate(c, to=away)
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
        finally:
            await client.stop()
