"""The data store without a network: wire forms, the chunked transfer as plain objects
(``Fetch`` against ``chunk_reply``), the memory limit, spilling and option checks."""

from __future__ import annotations

import contextlib
import mmap
import random
from pathlib import Path
from typing import Any

import pytest

from actors import ActorError, DataLimitExceeded, ProtocolError, SerializationError
from actors.data import DataRef
from runtime import datastore
from runtime.datastore import (
    CHUNK_SIZE,
    WINDOW,
    Changed,
    DataStore,
    Fetch,
    chunk_limit,
    chunk_reply,
    from_wire,
    to_wire,
)
from tests.sample_actors import pattern


def _holder(payload: Any, tag: int = 7, cap: int = CHUNK_SIZE, view: bool = False) -> Any:
    """A holder answering chunk requests for ``payload`` (at most ``cap`` bytes each), as the
    wire would deliver the answer: the chunk as bytes, or with ``view`` as the memoryview an
    attached reply arrives as (of a copy: what zmq received)."""
    kind, meta, flat, _ = to_wire(payload)

    def answer(body: list[Any]) -> list[Any]:
        _, offset, length = body
        out = chunk_reply(tag, kind, meta, flat, offset, min(length, cap))
        out[4] = memoryview(bytes(out[4])) if view else bytes(out[4])
        return out

    return answer


def _run(fetch: Fetch, answer: Any, shuffle: random.Random | None = None) -> tuple[Any, int]:
    """Drive ``fetch`` to the end; returns the payload and the most requests in flight."""
    inflight = [fetch.first()]
    most = 1
    while inflight:
        if shuffle is not None:
            shuffle.shuffle(inflight)
        body = inflight.pop(0)
        inflight += fetch.feed(body[1], answer(body))
        most = max(most, len(inflight))
    assert fetch.done
    return fetch.result(), most


# -- wire forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"abc" * 1000, bytearray(b"xyz" * 100), {"rows": [1, 2, 3], "name": "s"}, [1.5, None]],
)
def test_wire_forms_round_trip(payload: Any) -> None:
    kind, meta, flat, extra = to_wire(payload)
    back = from_wire(kind, meta, bytes(flat))
    assert back == payload and type(back) is type(payload) and extra == 0


def test_bytes_like_wire_forms_are_views_of_the_payload() -> None:
    payload = b"q" * 10_000
    _, _, flat, _ = to_wire(payload)
    assert flat.obj is payload  # nothing copied
    buf = bytearray(100)
    _, _, flat, _ = to_wire(buf)
    assert flat.obj is buf


def test_a_memoryview_keeps_its_format_and_shape() -> None:
    import array

    view = memoryview(array.array("d", [float(i) for i in range(6)])).cast("B").cast("d", [2, 3])
    kind, meta, flat, extra = to_wire(view)
    assert extra == 0 and flat.nbytes == 48
    back = from_wire(kind, meta, bytearray(flat))
    assert isinstance(back, memoryview) and back.format == "d" and back.shape == (2, 3)
    assert back.tolist() == view.tolist()


def test_a_value_the_codec_cannot_encode_is_refused_at_once() -> None:
    with pytest.raises(SerializationError):
        to_wire(object())


def test_numpy_arrays_travel_as_their_buffer_with_dtype_and_shape() -> None:
    np = pytest.importorskip("numpy")
    for array in (
        np.arange(24, dtype="<f8").reshape(2, 3, 4),
        np.arange(10, dtype=">i4"),  # byte order kept
        np.array(3.5),  # 0-d
        np.zeros((0, 5), dtype=np.int16),
        np.array(["2020-01-01", "2021-06-30"], dtype="M8[ns]"),
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),  # not C-ordered
        np.arange(20, dtype=np.uint8)[::3],  # strided
    ):
        kind, meta, flat, extra = to_wire(array)
        assert kind == datastore.NDARRAY and meta[0] == array.dtype.str
        assert extra == (0 if array.flags.c_contiguous else array.nbytes)
        back = from_wire(kind, meta, bytearray(flat))
        assert back.dtype == array.dtype and back.shape == array.shape
        assert np.array_equal(back, array) and back.flags.writeable


def test_numpy_arrays_of_objects_or_fields_cannot_be_data() -> None:
    np = pytest.importorskip("numpy")
    for array in (np.array([object()]), np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")])):
        with pytest.raises(SerializationError, match="dtype"):
            to_wire(array)
    with pytest.raises(ProtocolError):
        from_wire(datastore.NDARRAY, ["O", [1]], bytearray(8))


def test_a_malformed_wire_form_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        from_wire(99, [], b"")
    with pytest.raises(ProtocolError):
        from_wire(datastore.NDARRAY, ["<f8"], bytearray(8))
    with pytest.raises(ProtocolError):
        from_wire(datastore.MSGPACK, [], b"\xc1")


# -- the chunked transfer (sans-io) -------------------------------------------------------------


def test_a_small_payload_takes_one_request() -> None:
    fetch = Fetch("k", chunk=1024)
    assert fetch.first() == ["k", 0, 1024]
    assert fetch.feed(0, _holder(b"hello")(fetch.first())) == []
    assert fetch.done and fetch.result() == b"hello"


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 10 * 1000 + 17])
def test_a_payload_is_reassembled_whatever_the_order_of_the_answers(size: int) -> None:
    payload = pattern(size)
    for seed in range(3):
        back, most = _run(Fetch("k", chunk=1000, window=3), _holder(payload), random.Random(seed))
        assert back == payload and type(back) is bytes
        assert most <= 3  # never more than the window in flight


def test_the_holders_smaller_chunk_size_wins() -> None:
    payload = bytearray(pattern(50_000))
    back, _ = _run(Fetch("k", chunk=8192), _holder(payload, cap=3000))
    assert back == payload and type(back) is bytearray


def test_a_numpy_array_is_reassembled_in_place() -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(100_000, dtype=np.float64).reshape(1000, 100)
    back, _ = _run(Fetch("k", chunk=4096), _holder(array), random.Random(1))
    assert np.array_equal(back, array) and back.flags.writeable and back.dtype == np.float64


def test_a_replaced_payload_restarts_the_fetch() -> None:
    old, new = _holder(pattern(5000), tag=1), _holder(pattern(5000), tag=2)
    fetch = Fetch("k", chunk=1000)
    todo = fetch.feed(0, old(fetch.first()))
    with pytest.raises(Changed):
        fetch.feed(todo[0][1], new(todo[0]))


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [1, 2, 3],
        [1, -1, 0, [], b""],
        [1, 10, 42, [], b"x" * 10],  # unknown kind
        [1, 10, 0, [], "not bytes"],
        [1, 10, 0, [], b""],  # an empty first chunk of a non-empty payload
        [1, 10, 0, [], b"x" * 11],  # more than the total
    ],
)
def test_malformed_answers_are_protocol_errors(answer: Any) -> None:
    with pytest.raises(ProtocolError):
        Fetch("k", chunk=100).feed(0, answer)


def test_a_chunk_of_the_wrong_length_is_a_protocol_error() -> None:
    fetch = Fetch("k", chunk=100)
    fetch.feed(0, [1, 1000, datastore.BYTES, [], b"x" * 100])
    with pytest.raises(ProtocolError, match="expected 100"):
        fetch.feed(100, [1, 1000, datastore.BYTES, [], b"x" * 99])


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "msgpack"])
@pytest.mark.parametrize("size", [0, 1, 5000, datastore.MAP_FROM + 12_345])
def test_chunks_that_arrive_as_memoryviews_are_reassembled(kind: str, size: int) -> None:
    """Attached replies deliver chunks as memoryviews of what zmq received: every kind is
    rebuilt from them, in any order, as its own type (numpy in place, in a memory map when
    large), and nothing keeps a view of a chunk."""
    raw = pattern(size - size % 8)
    payload: Any = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw).cast("d") if raw else memoryview(raw),
        "msgpack": {"blob": raw},
    }.get(kind)
    if kind == "numpy":
        np = pytest.importorskip("numpy")
        payload = np.frombuffer(raw, np.float64).reshape(-1, 1)
    fetch = Fetch("k", chunk=4096)
    back, _ = _run(fetch, _holder(payload, view=True), random.Random(size))
    if kind == "numpy":  # (compared as bytes: the pattern's floats include NaNs)
        assert back.tobytes() == raw and back.shape == payload.shape and back.flags.writeable
        root = back
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        if isinstance(root, memoryview):  # (np.frombuffer keeps a view of the buffer)
            root = root.obj
        assert isinstance(root, mmap.mmap) == (len(raw) >= datastore.MAP_FROM)
    elif kind == "memoryview":
        assert back.tobytes() == raw and back.format == payload.format and not back.readonly
    else:
        assert back == payload and type(back) is type(payload)


def test_a_bytes_payload_is_written_in_place_or_joined() -> None:
    """With the compiled accelerator a bytes payload of several chunks is written in place
    into the result (no join at the end); without it, its chunks are joined."""
    payload = pattern(50_000)
    fetch = Fetch("k", chunk=4096)
    back, _ = _run(fetch, _holder(payload, view=True), random.Random(3))
    assert back == payload and type(back) is bytes
    assert fetch.joins == (datastore._unfilled_bytes is None)


def test_a_bytes_payload_is_joined_without_the_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datastore, "_unfilled_bytes", None)
    payload = pattern(50_000)
    fetch = Fetch("k", chunk=4096)
    todo = [fetch.first()]
    answer = _holder(payload, view=True)
    while todo:
        body = todo.pop()
        todo += fetch.feed(body[1], answer(body))
        # the chunks wait as bytes, never as views of what zmq received: bytes.join lets go
        # of the GIL (the join runs in a thread) only when every part is exact bytes
        assert all(type(part) is bytes for part in fetch._parts.values())
    assert fetch.joins and fetch.result() == payload


def test_a_chunk_view_that_is_not_flat_bytes_is_a_protocol_error() -> None:
    for data in (memoryview(bytes(80)).cast("d"), memoryview(bytes(100)).cast("B", [10, 10])):
        with pytest.raises(ProtocolError, match="chunk"):
            Fetch("k", chunk=100).feed(0, [1, 1000, datastore.BYTES, [], data])


def test_a_payload_too_large_to_make_room_for_is_a_protocol_error() -> None:
    kinds = [datastore.NDARRAY, datastore.MEMORYVIEW]
    if datastore._unfilled_bytes is not None:
        kinds.append(datastore.BYTES)
    for kind in kinds:
        fetch = Fetch("k", chunk=100)
        with pytest.raises(ProtocolError, match="room"):
            fetch.feed(0, [1, 1 << 62, kind, ["<f8", [1 << 59]], b"x" * 100])


def test_chunks_fit_the_frame_limit() -> None:
    assert chunk_limit(64 << 20) == CHUNK_SIZE
    assert chunk_limit(256 * 1024) == 256 * 1024 - datastore.FRAME_OVERHEAD
    assert WINDOW >= 2


# -- the store ----------------------------------------------------------------------------------


class _Sink:
    """A reply sink that records what it was given."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, result: Any, /) -> None:
        self.result, self.settled = result, True

    def set_exception(self, exception: BaseException, /) -> None:
        self.error, self.settled = exception, True

    def set_attached(self, result: list[Any], attachment: bytes | memoryview, /) -> None:
        self.set_result([*result, attachment])


async def test_local_gets_return_the_object_itself() -> None:
    store = DataStore("tcp://h:1")
    values: list[Any] = [b"x" * 1000, bytearray(10), memoryview(b"abc"), {"a": [1]}]
    with contextlib.suppress(ImportError):
        import numpy as np

        values.append(np.ones((3, 3)))
    for i, value in enumerate(values):
        ref = await store.put(f"k{i}", value)
        assert ref == DataRef(f"k{i}", "tcp://h:1")
        assert await store.get(ref) is value
    await store.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limit": "1MB"}, TypeError, "data_limit"),
        ({"limit": 1.5}, TypeError, "data_limit"),
        ({"limit": True}, TypeError, "data_limit"),
        ({"limit": -1}, ValueError, "data_limit"),
        ({"limit": 10, "spill_dir": 5}, TypeError, "data_spill_dir"),
        ({"limit": 10, "spill_dir": ""}, ValueError, "data_spill_dir"),
        ({"spill_dir": "/tmp"}, ValueError, "data_spill_dir takes effect beyond data_limit"),
    ],
)
def test_options_are_checked(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        DataStore("tcp://h:1", **kwargs)


def test_a_spill_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        DataStore("tcp://h:1", limit=10, spill_dir=f)


async def test_beyond_the_limit_without_a_spill_dir_put_fails_and_keeps_the_old_payload() -> None:
    store = DataStore("tcp://h:1", limit=1000)
    await store.put("a", b"a" * 600)
    await store.put("b", b"b" * 400)  # exactly at the limit
    with pytest.raises(DataLimitExceeded, match="data_limit=1000"):
        await store.put("c", b"c")
    with pytest.raises(DataLimitExceeded):
        await store.put("a", b"A" * 601)  # replacing: the old one's room counts, not more
    assert await store.get_local("a") == b"a" * 600
    await store.put("a", b"A" * 600)  # a replacement of the same size fits
    assert store.memory_used == 1000
    assert await store.delete("b") and not await store.delete("b")
    assert store.memory_used == 600
    await store.put("c", b"c" * 400)
    await store.close()


async def test_a_lent_payload_is_outside_the_limit_and_never_spills(tmp_path: Path) -> None:
    store = DataStore("tcp://h:1", limit=1000, spill_dir=tmp_path / "spill")
    big = pattern(5000)
    ref = store.lend("moving", big)
    assert ref == DataRef("moving", "tcp://h:1") and "moving" in store
    assert store.memory_used == 0  # its memory is its owner's
    assert await store.get_local("moving") is big  # viewed where it lies
    for key in "abc":
        await store.put(key, pattern(400))  # puts spill others, never the lent one
    assert "moving" not in store.spilled() and store.memory_used <= 1000
    assert await store.delete("moving") and "moving" not in store
    assert store.memory_used <= 1000
    await store.close()


async def test_beyond_the_limit_the_least_recently_used_payloads_spill(tmp_path: Path) -> None:
    store = DataStore("tcp://h:1", limit=1000, spill_dir=tmp_path / "spill")
    for key in "abc":
        await store.put(key, pattern(400) + key.encode())
    assert store.spilled() == ["a"] and store.memory_used == 802
    await store.get_local("b")  # b is now more recent than c
    await store.put("d", b"d" * 500)
    assert sorted(store.spilled()) == ["a", "c"] and store.memory_used == 901
    assert store.memory_used <= 1000
    assert await store.get_local("a") == pattern(400) + b"a"  # read back from its file
    files = list((tmp_path / "spill").rglob("*"))
    assert len([f for f in files if f.is_file()]) == 2
    assert await store.delete("a")
    assert len([f for f in (tmp_path / "spill").rglob("*") if f.is_file()]) == 1
    with pytest.raises(ActorError, match="no data 'a'"):
        await store.get_local("a")
    await store.close()
    assert list((tmp_path / "spill").iterdir()) == []  # its own directory is gone


async def test_a_payload_larger_than_the_limit_goes_to_disk_at_once(tmp_path: Path) -> None:
    store = DataStore("tcp://h:1", limit=100, spill_dir=str(tmp_path))
    await store.put("small", b"s" * 50)
    await store.put("big", {"blob": pattern(5000)})
    assert store.spilled() == ["big"] and store.memory_used == 50
    assert await store.get_local("big") == {"blob": pattern(5000)}
    await store.put("big", b"b" * 10)  # replaced by one that fits: its file goes
    assert store.spilled() == [] and store.memory_used == 60
    await store.close()


async def test_spilled_numpy_arrays_come_back_as_arrays(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    store = DataStore("tcp://h:1", limit=0, spill_dir=tmp_path)
    array = np.arange(1000, dtype=np.int64).reshape(10, 100)
    await store.put("a", array)
    back = await store.get_local("a")
    assert back is not array and np.array_equal(back, array) and back.flags.writeable
    await store.close()


async def test_serve_answers_chunks_from_memory_and_from_disk(tmp_path: Path) -> None:
    store = DataStore("tcp://h:1", limit=3000, spill_dir=tmp_path)
    store.chunk_size = 1000
    await store.put("m", pattern(2500))
    await store.put("d", pattern(5000))  # over the limit by itself: on disk
    for key, size in (("m", 2500), ("d", 5000)):
        fetch = Fetch(key, chunk=4000)  # asks for more than the holder serves
        todo = [fetch.first()]
        while todo:
            body = todo.pop()
            sink = _Sink()
            store.serve(body, sink)
            await _settled(sink)
            assert sink.error is None, sink.error
            todo += fetch.feed(body[1], sink.result)
        assert fetch.result() == pattern(size)
    for body, error in (
        (["nope", 0, 10], ActorError),
        (["m", 0, 0], ProtocolError),
        (["m", 99_999, 10], ProtocolError),
        ("m", ProtocolError),
    ):
        sink = _Sink()
        store.serve(body, sink)
        await _settled(sink)
        assert isinstance(sink.error, error), (body, sink.error)
    await store.close()


async def _settled(sink: _Sink) -> None:
    import asyncio

    async with asyncio.timeout(5):
        while not sink.settled:
            await asyncio.sleep(0)


async def test_a_pure_client_holds_no_data() -> None:
    store = DataStore("local://node-1")

    async def request(peer: str, op: str, body: Any) -> Any:  # pragma: no cover - not called
        raise AssertionError

    store.connect("client://abc", request, lambda address: True)
    with pytest.raises(ActorError, match="pure client"):
        await store.put("k", b"x")


async def test_a_holder_that_is_not_a_member_fails_at_once() -> None:
    from actors import NodeUnavailable

    calls: list[Any] = []

    async def request(peer: str, op: str, body: Any) -> Any:
        calls.append(body)
        raise AssertionError("a non-member is never asked")

    store = DataStore("local://node-1")
    with pytest.raises(NodeUnavailable, match="embedded"):
        await store.get(DataRef("k", "tcp://elsewhere:1"))
    store.connect("tcp://me:1", request, lambda address: False)
    with pytest.raises(NodeUnavailable, match="not a member"):
        await store.get(DataRef("k", "tcp://gone:1"))
    assert calls == []


async def test_spill_writes_and_reads_do_not_block_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file I/O runs in a thread: a slow disk (a write and a read that each take 0.3 s)
    leaves the loop free to run other coroutines meanwhile."""
    import asyncio
    import time

    slow_write, slow_read = datastore._write, datastore._read_at

    def write(path: str, flat: Any) -> None:
        time.sleep(0.3)
        slow_write(path, flat)

    def read_at(path: str, offset: int, length: int) -> bytes:
        time.sleep(0.3)
        return slow_read(path, offset, length)

    monkeypatch.setattr(datastore, "_write", write)
    monkeypatch.setattr(datastore, "_read_at", read_at)
    store = DataStore("tcp://h:1", limit=10, spill_dir=tmp_path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    try:
        await store.put("k", pattern(1000))
        after_put = ticks
        sink = _Sink()
        store.serve(["k", 0, 100], sink)
        await _settled(sink)
    finally:
        task.cancel()
    assert after_put >= 10 and ticks >= after_put + 10, (after_put, ticks)
    assert bytes(sink.result[4]) == pattern(100)
    await store.close()


def test_an_answer_for_an_offset_not_asked_for_is_a_protocol_error() -> None:
    for kind in (datastore.BYTES, datastore.BYTEARRAY):
        fetch = Fetch("k", chunk=100)
        todo = fetch.feed(0, [1, 1000, kind, [], b"x" * 100])
        fetch.feed(todo[0][1], [1, 1000, kind, [], b"x" * 100])
        with pytest.raises(ProtocolError, match="not asked for"):
            fetch.feed(todo[0][1], [1, 1000, kind, [], b"x" * 100])  # twice
        with pytest.raises(ProtocolError, match="not asked for"):
            fetch.feed(150, [1, 1000, kind, [], b"x" * 100])
