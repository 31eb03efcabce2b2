"""Named data kept on nodes (the embedded half: put and local get)."""

from __future__ import annotations

import pytest

from actors import ActorError, Node, data
from actors.data import DataRef


async def test_put_then_local_get_returns_the_same_object() -> None:
    async with Node() as node:
        payload = {"rows": list(range(10))}
        ref = await data.put("dataset/shard-3", payload)
        assert ref.key == "dataset/shard-3" and ref.node == node.address
        assert await ref.get() is payload


async def test_get_of_missing_key_is_an_actor_error() -> None:
    async with Node() as node:
        with pytest.raises(ActorError):
            await DataRef("missing", node.address).get()


async def test_refs_are_values() -> None:
    assert (
        DataRef("a", "n") == DataRef("a", "n")
        and len({DataRef("a", "n")} | {DataRef("a", "n")}) == 1
    )


async def test_remote_get_fetches_over_the_wire() -> None:
    from runtime.memory_transport import MemoryNetwork, MemoryTransport

    net = MemoryNetwork()
    a = Node(listen="mem://data-a", transport=MemoryTransport(net))
    b = Node(listen="mem://data-b", seeds=["mem://data-a"], transport=MemoryTransport(net))
    await a.start()
    await b.start()
    try:
        ref = a._data_put("shard-1", {"rows": [1, 2, 3]})
        assert ref.node == "mem://data-a"
        assert await b._data_get(ref) == {"rows": [1, 2, 3]}
        with pytest.raises(ActorError):
            await b._data_get(DataRef("missing", "mem://data-a"))
    finally:
        await b.stop()
        await a.stop()
