"""Named data kept on nodes: put, get and delete on an embedded node, limits and spilling,
and gets between nodes over the in-memory network (chunks, numpy, holders gone)."""

from __future__ import annotations

import asyncio
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from actors import ActorError, DataLimitExceeded, Node, NodeUnavailable, RemoteError, data
from actors.data import DataRef
from runtime import wire
from runtime.datastore import CHUNK_SIZE
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import until
from tests.sample_actors import Reader, Shelf, pattern


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


# -- delete, clients, limits --------------------------------------------------------------------


async def test_delete_drops_the_payload() -> None:
    async with Node():
        ref = await data.put("k", b"x")
        assert await data.delete("k") is True
        assert await data.delete("k") is False
        with pytest.raises(ActorError, match="no data 'k'"):
            await ref.get()
        with pytest.raises(ActorError, match="non-empty str"):
            await data.delete("")


async def test_node_options_are_checked() -> None:
    with pytest.raises(TypeError, match="data_limit"):
        Node(data_limit="10 MB")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_spill_dir"):
        Node(data_spill_dir="/tmp")


async def test_beyond_the_limit_put_fails_with_a_typed_error() -> None:
    async with Node(data_limit=1000):
        await data.put("a", b"a" * 1000)
        with pytest.raises(DataLimitExceeded):
            await data.put("b", b"b")


async def test_a_node_spills_beyond_its_limit_and_removes_its_files_when_it_stops(
    tmp_path: Path,
) -> None:
    async with Node(data_limit=1000, data_spill_dir=tmp_path) as node:
        refs = [await data.put(f"k{i}", pattern(600) + bytes([i])) for i in range(4)]
        assert node.data.memory_used <= 1000
        for i, ref in enumerate(refs):
            assert await ref.get() == pattern(600) + bytes([i])
        assert any(tmp_path.iterdir())
    assert list(tmp_path.iterdir()) == []


async def test_the_limit_error_raised_in_a_remote_turn_names_its_type() -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "limit", data_limit=100)
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        with pytest.raises(RemoteError, match="data_limit=100") as caught:
            await b.ref(Shelf, "s").keep("k", b"x" * 101)  # raised in a's turn
        assert caught.value.type_name.endswith("DataLimitExceeded")


async def test_put_on_a_pure_client_fails_at_once() -> None:
    net = MemoryNetwork()
    member = Node(listen="mem://client-put-a", serve=[Shelf], transport=MemoryTransport(net))
    client = Node(seeds=["mem://client-put-a"], serve=(), transport=MemoryTransport(net))
    async with member, client:
        assert client.address.startswith("client://")
        with pytest.raises(ActorError, match="pure client"):
            await data.put("k", b"x")
        # what a member put, the client reads
        ref = await client.ref(Shelf, "s").keep("k", b"from the member")
        assert await ref.get() == b"from the member"


# -- remote gets --------------------------------------------------------------------------------


def _pair(
    net: MemoryNetwork, name: str, max_frame_bytes: int = 1 << 20, **kwargs: Any
) -> tuple[Node, Node]:
    """A holder (hosts Shelf) and a reader (hosts Reader) on ``net``."""

    def transport() -> MemoryTransport:
        return MemoryTransport(net, max_frame_bytes=max_frame_bytes)

    a = Node(listen=f"mem://{name}-a", serve=[Shelf], transport=transport(), **kwargs)
    b = Node(
        listen=f"mem://{name}-b",
        seeds=[f"mem://{name}-a"],
        serve=[Reader],
        transport=transport(),
        default_timeout=5,
        **kwargs,
    )
    return a, b


async def test_a_large_value_travels_in_bounded_chunks() -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "chunks")
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        size = 5 * CHUNK_SIZE + 12_345
        ref = await a.ref(Shelf, "s").make("big", size)
        before = a._messaging.received[wire.CONTROL] if a._messaging else 0
        kind, length, crc, _ = await a.ref(Reader, "r").digest(ref)
        assert (kind, length, crc) == ("bytes", size, zlib.crc32(pattern(size)))
        assert a._messaging is not None
        assert a._messaging.received[wire.CONTROL] - before >= 6  # one request per chunk


async def test_chunks_respect_a_small_frame_limit() -> None:
    net = MemoryNetwork()
    # (a transport given to a node coalesces up to its own max_frame_bytes)
    a, b = _pair(net, "frames", max_frame_size=64 * 1024, max_frame_bytes=64 * 1024)
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        size = 2 * 1024 * 1024 + 5
        ref = await a.ref(Shelf, "s").make("big", size)
        kind, length, crc, _ = await a.ref(Reader, "r").digest(ref)
        assert (kind, length, crc) == ("bytes", size, zlib.crc32(pattern(size)))


async def test_a_numpy_array_travels_with_its_dtype_and_shape() -> None:
    np = pytest.importorskip("numpy")
    net = MemoryNetwork()
    a, b = _pair(net, "numpy")
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        ref = await a.ref(Shelf, "s").make("arr", 3 * CHUNK_SIZE, kind="numpy")
        kind, length, crc, _ = await a.ref(Reader, "r").digest(ref)
        assert (kind, length, crc) == ("ndarray", 3 * CHUNK_SIZE, zlib.crc32(pattern(length)))
        # the reader's node rebuilds the array itself (read here, through b's store)
        array = await b.data.get(ref)
        assert array.dtype == np.float64 and array.shape == (3 * CHUNK_SIZE // 8,)
        assert array.flags.writeable
        assert bytes(memoryview(array).cast("B")) == pattern(3 * CHUNK_SIZE)


async def test_a_spilled_value_is_served_from_disk(tmp_path: Path) -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "spilled", data_limit=CHUNK_SIZE, data_spill_dir=tmp_path)
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        size = 3 * CHUNK_SIZE + 1
        ref = await a.ref(Shelf, "s").make("big", size)
        assert a.data.spilled() == ["big"]
        kind, length, crc, _ = await a.ref(Reader, "r").digest(ref)
        assert (kind, length, crc) == ("bytes", size, zlib.crc32(pattern(size)))


async def test_a_deleted_value_is_an_error_remotely() -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "deleted")
    async with a, b:
        await until(lambda: len(a.members) == len(b.members) == 2, 10)
        shelf = a.ref(Shelf, "s")
        ref = await shelf.keep("k", b"x")
        assert await shelf.drop("k") is True
        with pytest.raises(ActorError, match="no data 'k'"):
            await a.ref(Reader, "r").fetch(ref)


async def test_a_holder_that_died_fails_gets_with_node_unavailable_never_a_hang() -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "died")
    # a third member, so that the two survivors are a majority and remove the dead one
    c = Node(
        listen="mem://died-c",
        seeds=["mem://died-a"],
        serve=[Reader],
        transport=MemoryTransport(net),
    )
    await a.start()
    try:
        await b.start()
        await c.start()
        try:
            await until(lambda: len(a.members) == len(b.members) == len(c.members) == 3, 10)
            ref = await a.ref(Shelf, "s").make("k", 16 * CHUNK_SIZE)
            assert ref.node == a.address
            # a fetch in progress when the holder dies (frames slowed so that it lasts)
            assert a._messaging is not None
            served = a._messaging.received[wire.CONTROL]
            net.delay = lambda src, dst: 0.02
            fetch = asyncio.ensure_future(b.data.get(ref))
            await until(lambda: a._messaging.received[wire.CONTROL] > served + 2, 10, 0.005)
            assert not fetch.done()
            net.kill(a.address)
            t0 = time.monotonic()
            with pytest.raises(NodeUnavailable):
                await asyncio.wait_for(fetch, b.default_timeout + 1)
            # a get after it died
            with pytest.raises(NodeUnavailable):
                await b.data.get(ref)
            assert time.monotonic() - t0 < b.default_timeout + 1
            net.delay = None
            # once the membership has dropped it, a get fails at once
            await until(lambda: a.address not in b.members, 15)
            t0 = time.monotonic()
            with pytest.raises(NodeUnavailable, match="not a member"):
                await b.data.get(ref)
            assert time.monotonic() - t0 < 0.1
        finally:
            await c.stop()
            await b.stop()
    finally:
        await a.stop()


async def test_a_holder_that_left_fails_gets_at_once() -> None:
    net = MemoryNetwork()
    a, b = _pair(net, "left")
    await a.start()
    try:
        await b.start()
        try:
            await until(lambda: len(a.members) == len(b.members) == 2, 10)
            ref = await a.ref(Shelf, "s").keep("k", b"x")
        finally:
            await a.stop()
        await until(lambda: a.address not in b.members, 10)
        t0 = time.monotonic()
        with pytest.raises(NodeUnavailable, match="not a member"):
            await b.data.get(ref)
        assert time.monotonic() - t0 < 0.1
    finally:
        await b.stop()
