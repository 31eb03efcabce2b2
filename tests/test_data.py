"""Named data kept on nodes (the embedded half: put and local get)."""

from __future__ import annotations

import pytest

from actors import ActorError, Node, data
from actors.data import DataRef
from tests.sample_actors import Reader, Shelf


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
    # a keeps the data (it hosts only Shelf), b reads it (it hosts only Reader)
    a = Node(listen="mem://data-a", serve=[Shelf], transport=MemoryTransport(net))
    b = Node(
        listen="mem://data-b",
        seeds=["mem://data-a"],
        serve=[Reader],
        transport=MemoryTransport(net),
        default_timeout=5,
    )
    await a.start()
    try:
        await b.start()
        try:
            shelf, reader = a.ref(Shelf, "s"), a.ref(Reader, "r")
            assert await shelf.where() == a.address
            assert await reader.where() == b.address
            ref = await shelf.keep("shard-1", {"rows": [1, 2, 3]})
            assert ref == DataRef("shard-1", a.address)  # a DataRef crossed the wire back
            assert await reader.fetch(ref) == {"rows": [1, 2, 3]}  # fetched from a by b
            with pytest.raises(ActorError, match="missing"):
                await reader.fetch(DataRef("missing", a.address))
        finally:
            await b.stop()
    finally:
        await a.stop()
