"""Live migration between real node processes: state travels, no message is lost."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from actors import Node, actor
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from runtime.migration import LARGE_LEAF, join_buffers, split_buffers
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


def test_split_buffers_takes_large_buffers_out_and_join_puts_them_back() -> None:
    big, other = b"x" * 100, bytearray(b"y" * 200)
    inner = [1, big, {"z": other, "small": b"s"}]
    state = {"a": inner, "n": 3, "t": (big,)}
    skeleton, leaves = split_buffers(state, 100)
    assert leaves == [(["a", 1], big), (["a", 2, "z"], other)]
    assert skeleton == {"a": [1, None, {"z": None, "small": b"s"}], "n": 3, "t": (big,)}
    assert state["a"] is inner and inner[1] is big  # the actor's own containers are unchanged
    back = join_buffers(skeleton, leaves)
    assert back == state and back["a"][1] is big and back["a"][2]["z"] is other
    assert split_buffers(big, 10) == (None, [([], big)])
    assert join_buffers(None, [([], big)]) is big
    assert split_buffers({"a": b"s"}, 10) == ({"a": b"s"}, [])


def test_split_buffers_keeps_no_reference_once_its_results_are_dropped() -> None:
    """No reference cycle holds a buffer (a moved actor's memory must go when it leaves,
    not at some later garbage collection)."""
    big = b"x" * 1000
    before = sys.getrefcount(big)
    skeleton, leaves = split_buffers({"a": [big], "b": {"c": big}}, 100)
    assert sys.getrefcount(big) == before + 2
    del skeleton, leaves
    assert sys.getrefcount(big) == before


@pytest.mark.parametrize("path", [["nope", 0], ["a", 5], ["a", -1], ["a", "x"], ["n", 0]])
def test_join_buffers_refuses_a_path_that_does_not_lead_into_the_state(path: Any) -> None:
    with pytest.raises(ValueError, match="does not lead into the state"):
        join_buffers({"a": [None], "n": 3}, [(path, b"x")])


@actor
class Hoard:
    """Holds buffers of every kind the data store sends as bytes, nested in its state."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.meta: dict[str, Any] = {}

    def fill(self, n: int) -> None:
        np = pytest.importorskip("numpy")
        self.parts = [bytes(range(256)) * (n // 256), {"ba": bytearray(b"q" * n)}, b"small"]
        self.meta = {"array": np.arange(n // 8, dtype=np.float64).reshape(-1, 2), "count": 7}

    def check(self) -> list[Any]:
        whole, nested, small = self.parts
        array = self.meta["array"]
        return [
            type(whole).__name__,
            len(whole),
            type(nested["ba"]).__name__,
            len(nested["ba"]),
            small,
            str(array.dtype),
            list(array.shape),
            float(array.sum()),
            self.meta["count"],
        ]


async def test_large_buffers_in_a_state_move_by_themselves_outside_the_data_limit() -> None:
    """Buffers of LARGE_LEAF or more inside the state are lent to the source's data store
    and fetched by the target, each keeping its type; the data limit (smaller than the state)
    does not stop the move, and nothing is left behind."""
    pytest.importorskip("numpy")
    net = MemoryNetwork()
    nodes = [
        Node(
            listen=f"mem://hoard-{name}",
            seeds=[] if name == "a" else ["mem://hoard-a"],
            transport=MemoryTransport(net),
            default_timeout=10,
            data_limit=1000,
            serve=[Hoard],
        )
        for name in ("a", "b")
    ]
    for node in nodes:
        await node.start()
    try:
        a, b = nodes
        ref = a.ref(Hoard, "h")
        n = 4 * LARGE_LEAF
        await ref.fill(n)
        before = await ref.check()
        home = await a.locate(ref)
        source, target = (a, b) if home == a.address else (b, a)
        await a.migrate(ref, to=target.address)
        assert await a.locate(ref) == target.address
        assert await ref.check() == before
        assert before[:5] == ["bytes", n, "bytearray", n, b"small"]
        assert len(source.data) == 0 and source.data.memory_used == 0
        await a.migrate(ref, to=source.address)  # and back
        assert await ref.check() == before
        assert len(target.data) == 0
    finally:
        for node in reversed(nodes):
            await node.stop()
