"""The data store: named payloads kept by one node, so that actors can be placed near them.

``actors.data.put`` keeps a payload here and returns a ``DataRef`` naming this node;
``DataRef.get`` reads it here (the object itself, no copy) or fetches it from the holding
node over the ``data`` control operation, in chunks.

Memory and spill
----------------
Payloads are held in memory. ``data_limit`` (bytes, default: none) bounds what is held in
memory; a ``put`` beyond it moves the least recently used payloads to files in
``data_spill_dir`` (a directory of this node's own is made inside it, removed when the node
stops) or, without a spill directory, fails with ``DataLimitExceeded`` and keeps what was
there. A payload larger than the whole limit goes to disk at once. File writes and reads run
in a thread (``asyncio.to_thread``): the loop never waits on the disk. A spilled payload stays
on disk (reads of it read the file; a local get of it is a fresh object, no longer the one
put).

What counts toward the limit is the size of a payload's *wire form*: ``len`` of bytes and
bytearrays, ``nbytes`` of memoryviews and numpy arrays, and the length of the msgpack encoding
of any other value. Other values are encoded once, at ``put``, which also rejects at once
(``SerializationError``) what could not cross the wire; the node keeps both the object (for
local gets) and its encoding (for remote ones), so their object overhead is not counted.

Transfer (the ``data`` control operation)
-----------------------------------------
A request is ``[key, offset, length]``; the answer is ``[tag, total, kind, meta, chunk]``
with at most ``length`` bytes of the payload's wire form from ``offset`` (fewer when the
holder's own frame limit is smaller; the first answer tells the reader the chunk size), an
attached reply (``runtime.wire``): the chunk travels beside the reply's frame, a view of the
payload that zmq sends from where it is, and arrives as a view of what zmq received. The
reader keeps :data:`WINDOW` requests in flight, so a large payload moves as a pipelined series
of bounded replies and the holder's loop serves everything else between any two of them.
``tag`` identifies one stored version: a payload replaced during a fetch changes it and the
reader starts over (up to :data:`MAX_RESTARTS` times). :class:`Fetch` is the reader's side as
a plain object (no I/O), :func:`chunk_reply` the holder's.

Kinds: bytes, bytearray and memoryview travel as their bytes (a memoryview with its format
and shape where they can be rebuilt); a numpy array (exactly ``numpy.ndarray``, of a dtype
without objects or fields) travels as its C-ordered bytes with ``dtype.str`` and shape, and
is rebuilt with ``numpy.frombuffer`` over the received buffer (writable, no pickle, no extra
copy); anything else as its msgpack encoding. numpy is optional: it is never imported here
unless an array arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import mmap
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from actors.data import DataRef
from actors.errors import (
    ActorError,
    ActorTimeout,
    DataLimitExceeded,
    NodeUnavailable,
    ProtocolError,
    SerializationError,
)
from runtime import _zmqcalls, wire
from runtime.affinity import payload_size
from runtime.mailbox import ReplySink
from runtime.messaging import Request

__all__ = [
    "CHUNK_SIZE",
    "MAX_RESTARTS",
    "WINDOW",
    "DataStore",
    "Fetch",
    "chunk_limit",
    "chunk_reply",
    "from_wire",
    "to_wire",
]

CHUNK_SIZE: Final = 1 << 20
"""The most payload bytes one reply carries (less where the frame limit is smaller)."""
WINDOW: Final = 4
"""Chunk requests one fetch keeps in flight."""
MAX_RESTARTS: Final = 3
"""How often a fetch starts over because the payload was replaced meanwhile."""
FRAME_OVERHEAD: Final = 4096
"""Room left in a frame for the reply's envelope and header around the chunk."""
MIN_CHUNK: Final = 512
JOIN_IN_THREAD: Final = 8 << 20
"""From this size on, a fetched bytes payload's chunks are joined in a thread."""
MAP_FROM: Final = 4 << 20
"""From this size on, a payload written in place goes to a memory map (see :class:`Fetch`)."""

# Kinds of wire form.
BYTES: Final = 0
BYTEARRAY: Final = 1
MEMORYVIEW: Final = 2
NDARRAY: Final = 3
MSGPACK: Final = 4
_KINDS: Final = frozenset({BYTES, BYTEARRAY, MEMORYVIEW, NDARRAY, MSGPACK})

"""``request(peer, op, body)``: a control request, answered or failed within a timeout."""


class ChunkSink(ReplySink, Protocol):
    """Where the holder's answer to a chunk request goes (``messaging.RemoteReply``)."""

    def set_attached(self, result: list[Any], attachment: bytes | memoryview, /) -> None:
        """Answer ``[*result, attachment]``, the attachment beside the reply's frame."""


def chunk_limit(max_frame: int) -> int:
    """The largest chunk that fits a frame of ``max_frame`` bytes with its envelope."""
    return max(MIN_CHUNK, min(CHUNK_SIZE, max_frame - FRAME_OVERHEAD))


# -- wire forms (plain functions) ---------------------------------------------------------------


def to_wire(
    payload: Any, codec: wire.Codec = wire.DEFAULT_CODEC
) -> tuple[int, list[Any], memoryview, int]:
    """``(kind, meta, flat, extra)`` for ``payload``: ``flat`` is a 1-D byte ``memoryview`` of
    what travels, a view of the payload itself where it is contiguous (nothing is copied);
    ``extra`` is what the payload holds beside ``flat`` when ``flat`` had to be a copy.

    Raises ``SerializationError`` for what could not cross the wire (a numpy array of objects
    or with fields, a value the codec cannot encode)."""
    t = type(payload)
    if t is bytes:
        return BYTES, [], memoryview(payload), 0
    if t is bytearray:
        return BYTEARRAY, [], memoryview(payload), 0
    if t is memoryview:
        flat = _flat(payload)
        extra = 0 if flat.obj is payload.obj else payload.nbytes
        return MEMORYVIEW, [payload.format, list(payload.shape)], flat, extra
    np = sys.modules.get("numpy")  # an array can exist only if numpy was imported
    if np is not None and t is np.ndarray:
        dtype = payload.dtype
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise SerializationError(
                f"a numpy array of dtype {dtype} cannot be data: use a plain numeric dtype"
            )
        contiguous = payload.flags.c_contiguous
        array = np.ascontiguousarray(payload).reshape(-1).view(np.uint8)
        extra = 0 if contiguous else payload.nbytes
        return NDARRAY, [dtype.str, list(payload.shape)], memoryview(array), extra
    return MSGPACK, [], memoryview(codec.packb(payload)), 0


def _flat(view: memoryview) -> memoryview:
    """``view``'s bytes as a flat byte view (a copy only if it is not C-contiguous)."""
    if view.c_contiguous:
        try:
            return view.cast("B")
        except TypeError:  # a format cast() does not take (e.g. a struct): copy
            pass
    return memoryview(view.tobytes())


def from_wire(
    kind: int,
    meta: list[Any],
    buf: bytes | bytearray | mmap.mmap,
    codec: wire.Codec = wire.DEFAULT_CODEC,
) -> Any:
    """The payload rebuilt from its wire form (``buf`` holds all of it). A numpy array and a
    memoryview are views of ``buf`` (pass a bytearray or a memory map for a writable
    array)."""
    if kind == BYTES:
        return buf if type(buf) is bytes else bytes(buf)
    if kind == BYTEARRAY:
        return buf if type(buf) is bytearray else bytearray(buf)
    if kind == MEMORYVIEW:
        view: Any = memoryview(buf)  # Any: cast() to a format known only at run time
        fmt, shape = _meta(meta)
        if fmt in ("B", "@B") and len(shape) == 1:
            return view
        try:
            return view.cast(fmt, shape)
        except (TypeError, ValueError):
            return view  # a format that cannot be rebuilt here: its bytes
    if kind == NDARRAY:
        dtype_str, shape = _meta(meta)
        try:
            np: Any = importlib.import_module("numpy")
        except ImportError:
            raise SerializationError("a numpy array arrived but numpy is not installed") from None
        try:
            dtype = np.dtype(dtype_str)
            if dtype.hasobject:
                raise ValueError("object dtype")
            return np.frombuffer(buf, dtype=dtype).reshape(shape)
        except (TypeError, ValueError) as err:
            raise ProtocolError(f"bad numpy data ({dtype_str!r}, {shape!r}): {err}") from None
    if kind == MSGPACK:
        return codec.unpackb(bytes(buf) if type(buf) is not bytes else buf)
    raise ProtocolError(f"unknown data kind {kind!r}")


def _meta(meta: Any) -> tuple[str, list[int]]:
    if not (
        isinstance(meta, list)
        and len(meta) == 2
        and isinstance(meta[0], str)
        and isinstance(meta[1], list)
        and all(type(n) is int and n >= 0 for n in meta[1])
    ):
        raise ProtocolError(f"bad data meta {meta!r}")
    return meta[0], meta[1]


def chunk_reply(
    tag: int, kind: int, meta: list[Any], flat: Any, offset: int, length: int
) -> list[Any]:
    """The holder's answer to ``[key, offset, length]`` for a payload held in memory: at most
    ``length`` bytes of ``flat`` from ``offset`` (the slice is a view, which travels as the
    reply's attachment: nothing copies it on this side)."""
    total = flat.nbytes
    if not 0 <= offset <= total:
        raise ProtocolError(f"offset {offset} outside the payload's {total} bytes")
    return [tag, total, kind, meta, flat[offset : offset + length]]


def _parse_request(body: Any) -> tuple[str, int, int]:
    if not (isinstance(body, list) and len(body) == 3):
        raise ProtocolError("a data request is [key, offset, length]")
    key, offset, length = body
    if not isinstance(key, str) or type(offset) is not int or type(length) is not int:
        raise ProtocolError("a data request is [key: str, offset: int, length: int]")
    if offset < 0 or length <= 0:
        raise ProtocolError(f"bad data request range: offset {offset}, length {length}")
    return key, offset, length


# -- the reader's side of a transfer (sans-io) --------------------------------------------------


class Changed(ActorError):
    """The payload was replaced while it was being fetched (its tag changed): start over."""


class Fetch:
    """The reader's side of one chunked transfer, with no I/O: which requests to send and the
    reassembly of the answers.

    :meth:`first` is the first request; each answer goes to :meth:`feed` with the offset it
    was requested at, which returns the requests to send now (keeping ``window`` in flight).
    Once :attr:`done`, :meth:`result` rebuilds the payload. Answers may come in any order,
    their chunks as bytes or as memoryviews (of an attached reply: kept, never copied, until
    they are put in place). Raises ``ProtocolError`` for an answer that does not fit,
    :class:`Changed` when the payload's tag changed.

    Reassembly copies each byte once and never touches the whole payload at once while chunks
    arrive, so it costs the loop a bounded time per chunk: a numpy or memoryview payload is
    written in place, chunk by chunk in any order, into a buffer of its size made at the first
    answer (an anonymous memory map from :data:`MAP_FROM` bytes on, which takes memory only as
    it is written, in huge pages where the system offers them), which *is* the result; a
    bytearray grows chunk by chunk (``bytearray.extend``, in offset order) and is the result;
    a bytes or msgpack payload of more than one chunk is written in place too, into a bytes
    object made unfilled by the compiled accelerator (``runtime._zmqcalls.unfilled_bytes``,
    also in huge pages), and without it keeps its chunks (as bytes) and joins them once at the
    end (:attr:`joins`; ``bytes.join`` of bytes lets go of the GIL, so a caller may run
    :meth:`buffer` in a thread).
    """

    __slots__ = (
        "_chunk",
        "_dest",
        "_filled",
        "_got",
        "_missing",
        "_next",
        "_parts",
        "_view",
        "_window",
        "key",
        "kind",
        "meta",
        "tag",
        "total",
    )

    def __init__(self, key: str, chunk: int = CHUNK_SIZE, window: int = WINDOW) -> None:
        if chunk <= 0 or window <= 0:
            raise ValueError("chunk and window must be positive")
        self.key = key
        self._chunk = chunk
        self._window = window
        self.tag = -1
        self.total = -1
        self.kind = -1
        self.meta: list[Any] = []
        self._dest: bytes | bytearray | mmap.mmap | None = None  # None: chunks are joined
        self._view: memoryview | None = None  # of _dest, when chunks are written in place
        self._filled = 0  # bytes of a growing bytearray in place (the rest wait in _parts)
        self._parts: dict[int, bytes | memoryview] = {}
        self._got: set[int] = set()  # offsets answered
        self._next = 0
        self._missing = -1  # bytes still to arrive (-1: before the first answer)

    @property
    def done(self) -> bool:
        """Every byte has arrived."""
        return self._missing == 0

    @property
    def joins(self) -> bool:
        """The payload's chunks are joined at the end (bytes and msgpack payloads)."""
        return self._dest is None

    def first(self) -> list[Any]:
        """The first request: the start of the payload, which also tells its size."""
        return [self.key, 0, self._chunk]

    def feed(self, offset: int, answer: Any) -> list[list[Any]]:
        """Take the answer to the request for ``offset``; returns the requests to send next."""
        if not (isinstance(answer, list) and len(answer) == 5):
            raise ProtocolError(f"a data answer is [tag, total, kind, meta, chunk], got {answer!r}")
        tag, total, kind, meta, data = answer
        if type(tag) is not int or type(total) is not int or total < 0 or kind not in _KINDS:
            raise ProtocolError("bad data answer header")
        if type(data) is bytes:
            size = len(data)
        elif type(data) is memoryview and data.ndim == 1 and data.itemsize == 1:
            size = data.nbytes
        else:
            raise ProtocolError("a data chunk is bytes")
        if self._missing < 0:  # the first answer
            if offset != 0:
                raise ProtocolError("the first data answer must be for offset 0")
            if (size == 0 and total > 0) or size > total:
                raise ProtocolError(f"a first chunk of {size} bytes for {total}")
            self.tag, self.total, self.kind, self.meta = tag, total, kind, meta
            if size < total:
                self._chunk = min(self._chunk, size)  # the holder's chunk size
            self._missing = total
            self._next = size
            if kind == BYTEARRAY:
                self._dest = bytearray()  # grows chunk by chunk into the payload itself
            elif kind != BYTES and kind != MSGPACK:
                self._dest = _buffer_of(total)  # written in place: the payload itself
                self._view = memoryview(self._dest)
            elif _unfilled_bytes is not None and total > size:
                try:
                    self._dest, self._view = _unfilled_bytes(total)
                except (MemoryError, OverflowError) as err:
                    raise ProtocolError(f"cannot make room for {total} bytes: {err!r}") from None
        elif tag != self.tag:
            raise Changed(f"data {self.key!r} was replaced while it was fetched")
        elif total != self.total or kind != self.kind:
            raise ProtocolError("a data answer disagrees with the first one")
        if offset % self._chunk or offset >= max(self.total, 1) or offset in self._got:
            raise ProtocolError(f"a data answer for offset {offset}, which was not asked for")
        expected = min(self._chunk, self.total - offset)
        if size != expected and not (offset == 0 and size == self.total):
            raise ProtocolError(f"a chunk of {size} bytes at {offset}, expected {expected}")
        self._got.add(offset)
        self._missing -= size
        view = self._view
        if view is not None:
            view[offset : offset + size] = data
        else:
            dest = self._dest
            if dest is None:
                # kept as bytes: bytes.join lets go of the GIL only when every part is exact
                # bytes, and a join that holds it would stall the loop for the whole payload
                self._parts[offset] = data if type(data) is bytes else bytes(data)
            elif offset != self._filled:
                self._parts[offset] = data
            else:
                dest += data
                self._filled += size
                parts = self._parts
                while self._filled in parts:  # answers that came early
                    more = parts.pop(self._filled)
                    dest += more
                    self._filled += len(more)
        return self._requests(1 if offset else self._window)

    def _requests(self, n: int) -> list[list[Any]]:
        out = []
        while n > 0 and self._next < self.total:
            out.append([self.key, self._next, self._chunk])
            self._next += self._chunk
            n -= 1
        return out

    def buffer(self) -> bytes | bytearray | mmap.mmap:
        """All the payload's bytes (once :attr:`done`)."""
        if not self.done:
            raise ActorError("the fetch is not complete")
        if self._dest is not None:
            if self._view is not None:  # (a bytes payload is shown only now, once filled)
                self._view.release()
                self._view = None
            return self._dest
        parts, self._parts = self._parts, {}
        if len(parts) == 1:
            (part,) = parts.values()
            return part if type(part) is bytes else bytes(part)
        return b"".join([parts[k] for k in sorted(parts)])

    def result(self, codec: wire.Codec = wire.DEFAULT_CODEC) -> Any:
        """The payload, rebuilt (once :attr:`done`)."""
        return from_wire(self.kind, self.meta, self.buffer(), codec)


def _buffer_of(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``size`` bytes for a payload written in place: from
    :data:`MAP_FROM` bytes on a private anonymous memory map, which takes memory only as it is
    written (no pass over it first), advised to use huge pages (on the benchmark's machine
    that makes writing a fresh 256 MB about four times faster: far fewer page faults)."""
    if size < MAP_FROM:
        return bytearray(size)
    try:
        buf = mmap.mmap(-1, size, flags=_MAP_PRIVATE) if _MAP_PRIVATE else mmap.mmap(-1, size)
    except (OSError, OverflowError, ValueError) as err:
        raise ProtocolError(f"cannot make room for a payload of {size} bytes: {err}") from None
    if _HUGEPAGE is not None:
        with contextlib.suppress(OSError):
            buf.madvise(_HUGEPAGE)
    return buf


_unfilled_bytes: Final = _zmqcalls.unfilled_bytes
_MAP_PRIVATE: Final = getattr(mmap, "MAP_PRIVATE", 0)
_HUGEPAGE: Final = getattr(mmap, "MADV_HUGEPAGE", None)


# -- the store ----------------------------------------------------------------------------------


class _Entry:
    """One stored payload: the object and its wire form while in memory, else its file.
    ``total`` is the length of the wire form, ``size`` what it counts toward the limit."""

    __slots__ = ("flat", "key", "kind", "meta", "path", "size", "tag", "total", "value")

    def __init__(
        self,
        key: str,
        tag: int,
        kind: int,
        meta: list[Any],
        value: Any,
        flat: memoryview,
        extra: int,
    ) -> None:
        self.key = key
        self.tag = tag
        self.kind = kind
        self.meta = meta
        self.value = value
        self.flat: memoryview | None = flat  # None once spilled
        self.total = flat.nbytes
        self.size = self.total + extra
        self.path: str | None = None


def _check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"data_limit must be an int (bytes) or None, got {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"data_limit must be >= 0 bytes, got {limit}")
    return limit


def _check_spill_dir(spill_dir: object, limit: int | None) -> str | None:
    if spill_dir is None:
        return None
    if not isinstance(spill_dir, str | os.PathLike):
        raise TypeError(
            f"data_spill_dir must be a path (str or os.PathLike) or None, "
            f"got {type(spill_dir).__name__}"
        )
    path = os.fspath(spill_dir)
    if not isinstance(path, str) or not path:
        raise ValueError("data_spill_dir must be a non-empty str path")
    if limit is None:
        raise ValueError("data_spill_dir takes effect beyond data_limit: give data_limit too")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"data_spill_dir {path!r} exists and is not a directory")
    return path


class DataStore:
    """Payloads by key, held by one node (``address``): in memory up to ``limit`` bytes,
    beyond it in files under ``spill_dir`` (see the module docstring).

    Until :meth:`connect` it serves an embedded node: only its own payloads are readable.
    """

    __slots__ = (
        "_dir",
        "_is_member",
        "_items",
        "_lock",
        "_memory",
        "_request",
        "_resident",
        "_tags",
        "_tasks",
        "address",
        "chunk_size",
        "codec",
        "limit",
        "max_frame",
        "on_read",
        "spill_dir",
        "window",
    )

    def __init__(
        self,
        address: str,
        limit: int | None = None,
        spill_dir: str | os.PathLike[str] | None = None,
        max_frame: int = wire.DEFAULT_MAX_FRAME,
        codec: wire.Codec = wire.DEFAULT_CODEC,
    ) -> None:
        self.address = address
        self.limit = _check_limit(limit)
        self.spill_dir = _check_spill_dir(spill_dir, self.limit)
        self.max_frame = max_frame
        self.codec = codec
        self.chunk_size = chunk_limit(max_frame)
        """The chunk length this node asks for and serves at most."""
        self.window = WINDOW
        self._items: dict[str, _Entry] = {}
        self._resident: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._memory = 0
        self._lock = asyncio.Lock()
        # Tags tell versions apart, also across restarts of a node at the same address.
        self._tags = itertools.count(int.from_bytes(os.urandom(5), "big") << 16)
        self._dir: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._request: Request | None = None
        self._is_member: Callable[[str], bool] = lambda address: False
        #: told ``(holder, nbytes, seconds)`` after every read (affinity accounting; a local
        #: read takes 0 seconds)
        self.on_read: Callable[[str, int, float], None] | None = None

    def connect(self, address: str, request: Request, is_member: Callable[[str], bool]) -> None:
        """Join a cluster as ``address`` (``client://...`` for a pure client, which holds no
        data): fetch from other members with ``request``; ``is_member`` says whether a holder
        is still a member (a ref to one that is not fails at once)."""
        self.address = address
        self._request = request
        self._is_member = is_member

    # -- introspection ------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def memory_used(self) -> int:
        """Bytes of payload held in memory (what ``limit`` bounds)."""
        return self._memory

    def spilled(self) -> list[str]:
        """The keys whose payloads are on disk."""
        return [k for k, e in self._items.items() if e.flat is None]

    # -- put, get, delete ---------------------------------------------------------------------

    async def put(self, key: str, payload: Any) -> DataRef:
        """Keep ``payload`` under ``key`` (replacing any earlier one); see the module
        docstring for the limit. Raises ``ActorError`` on a pure client."""
        if self.address.startswith("client://"):
            raise ActorError(
                f"data.put({key!r}) on a pure client ({self.address}): a client holds no data "
                "and no member could reach it; put from a member (a node with listen=)"
            )
        kind, meta, flat, extra = to_wire(payload, self.codec)
        entry = _Entry(key, next(self._tags), kind, meta, payload, flat, extra)
        if self.limit is None:
            self._insert(entry)
        else:
            async with self._lock:
                await self._make_room(entry)
        return DataRef(key, self.address)

    def lend(self, key: str, payload: Any) -> DataRef:
        """Keep ``payload`` under ``key`` for a transfer only (a moving actor's state): other
        members can fetch it as any payload, but it is not counted under ``limit`` (its memory
        is its owner's, viewed where it lies, or a transient encoding) and it is never spilled.
        The lender deletes it once the transfer is over."""
        kind, meta, flat, extra = to_wire(payload, self.codec)
        entry = _Entry(key, next(self._tags), kind, meta, payload, flat, extra)
        old = self._items.get(key)
        if old is not None:
            self._discard(old)
        self._items[key] = entry
        return DataRef(key, self.address)

    async def _make_room(self, entry: _Entry) -> None:
        """Insert ``entry`` under the limit (the lock is held): evict, spill or refuse."""
        assert self.limit is not None
        old = self._items.get(entry.key)
        freed = old.size if old is not None and old.flat is not None else 0
        if self._memory - freed + entry.size <= self.limit:
            self._insert(entry)
            return
        if self.spill_dir is None:
            raise DataLimitExceeded(
                f"data {entry.key!r} of {entry.size} bytes does not fit: "
                f"{self._memory - freed} of data_limit={self.limit} bytes are in use on "
                f"{self.address} and it has no data_spill_dir (delete data, raise the limit "
                "or give a spill directory)"
            )
        if entry.size > self.limit:  # never fits in memory: straight to disk
            await self._spill(entry)
            self._insert(entry)
            return
        while self._memory - freed + entry.size > self.limit:
            victim = next((e for k, e in self._resident.items() if k != entry.key), None)
            if victim is None:  # pragma: no cover - entry.size <= limit always leaves room
                break
            await self._spill(victim)
            if self._items.get(victim.key) is not victim:
                await asyncio.to_thread(_unlink, victim.path)  # deleted or replaced meanwhile
            old = self._items.get(entry.key)  # may have been deleted or spilled meanwhile
            freed = old.size if old is not None and old.flat is not None else 0
        self._insert(entry)

    async def _spill(self, entry: _Entry) -> None:
        """Write ``entry``'s wire form to a file (in a thread) and drop it from memory."""
        assert self.spill_dir is not None and entry.flat is not None
        try:
            if self._dir is None:
                self._dir = await asyncio.to_thread(_make_dir, self.spill_dir)
            path = os.path.join(self._dir, f"{entry.tag:x}")
            await asyncio.to_thread(_write, path, entry.flat)
        except OSError as err:
            raise ActorError(f"spilling data {entry.key!r} to {self.spill_dir!r}: {err}") from err
        entry.path = path
        if self._resident.get(entry.key) is entry:
            del self._resident[entry.key]
            self._memory -= entry.size
        entry.value = entry.flat = None

    def _insert(self, entry: _Entry) -> None:
        old = self._items.get(entry.key)
        if old is not None:
            self._discard(old)
        self._items[entry.key] = entry
        if entry.flat is not None:
            self._resident[entry.key] = entry
            self._memory += entry.size

    def _discard(self, entry: _Entry) -> None:
        """Forget ``entry`` (its file is removed in a thread)."""
        if self._items.get(entry.key) is entry:
            del self._items[entry.key]
        if self._resident.get(entry.key) is entry:
            del self._resident[entry.key]
            self._memory -= entry.size
        entry.value = entry.flat = None
        if entry.path is not None:
            self._background(asyncio.to_thread(_unlink, entry.path))

    async def get(self, ref: DataRef) -> Any:
        """The payload ``ref`` names: read here when this node holds it, else fetched."""
        on_read = self.on_read
        if ref.node == self.address:
            value = await self.get_local(ref.key)
            if on_read is not None:
                on_read(ref.node, payload_size(value), 0.0)
            return value
        if on_read is None:
            return await self._fetch(ref)
        loop = asyncio.get_running_loop()
        started = loop.time()
        value = await self._fetch(ref)
        on_read(ref.node, payload_size(value), loop.time() - started)
        return value

    async def get_local(self, key: str) -> Any:
        """The payload kept here under ``key``: the object itself while it is in memory."""
        entry = self._items.get(key)
        if entry is None:
            raise ActorError(f"no data {key!r} is kept on {self.address}")
        if entry.flat is not None:
            if key in self._resident:  # (not a lent payload)
                self._resident.move_to_end(key)
            return entry.value
        assert entry.path is not None
        try:
            return await asyncio.to_thread(_load, entry.path, entry.kind, entry.meta, self.codec)
        except FileNotFoundError:
            raise ActorError(f"no data {key!r} is kept on {self.address}") from None

    async def delete(self, key: str) -> bool:
        """Drop the payload kept under ``key``; True if there was one."""
        entry = self._items.get(key)
        if entry is None:
            return False
        path = entry.path
        entry.path = None
        self._discard(entry)
        if path is not None:
            await asyncio.to_thread(_unlink, path)
        return True

    async def close(self) -> None:
        """Forget every payload and remove this node's spill directory."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        self._items.clear()
        self._resident.clear()
        self._memory = 0
        if self._dir is not None:
            directory, self._dir = self._dir, None
            await asyncio.to_thread(shutil.rmtree, directory, True)

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the holder's side: the ``data`` control operation ------------------------------------

    def serve(self, body: Any, reply: ChunkSink | None) -> None:
        """Answer a chunk request ``[key, offset, length]`` (see the module docstring): at
        once from memory, from a thread for a spilled payload, the chunk as the reply's
        attachment. Errors go to ``reply`` typed (``ActorError`` for no such data,
        ``ProtocolError`` for a malformed request)."""
        if reply is None:
            return
        try:
            key, offset, length = _parse_request(body)
            entry = self._items.get(key)
            if entry is None:
                raise ActorError(f"no data {key!r} is kept on {self.address}")
            length = min(length, self.chunk_size)
            if entry.flat is not None:
                if key in self._resident:  # (not a lent payload)
                    self._resident.move_to_end(key)
                answer = chunk_reply(entry.tag, entry.kind, entry.meta, entry.flat, offset, length)
            else:
                self._background(self._serve_spilled(entry, offset, length, reply))
                return
        except ActorError as err:
            reply.set_exception(err)
            return
        reply.set_attached(answer[:4], answer[4])

    async def _serve_spilled(
        self, entry: _Entry, offset: int, length: int, reply: ChunkSink
    ) -> None:
        try:
            if not 0 <= offset <= entry.total:
                raise ProtocolError(f"offset {offset} outside the payload's {entry.total} bytes")
            assert entry.path is not None
            chunk = await asyncio.to_thread(_read_at, entry.path, offset, length)
        except OSError:
            reply.set_exception(ActorError(f"no data {entry.key!r} is kept on {self.address}"))
        except ActorError as err:
            reply.set_exception(err)
        else:
            reply.set_attached([entry.tag, entry.total, entry.kind, entry.meta], chunk)

    # -- the reader's side ----------------------------------------------------------------------

    async def fetch(self, ref: DataRef) -> Any:
        """The payload ``ref`` names, fetched from its holder (another member) as ``get``
        does, but not told to ``on_read``: for the runtime's own transfers, which are no
        actor's reads."""
        return await self._fetch(ref)

    async def _fetch(self, ref: DataRef) -> Any:
        if self._request is None:
            raise NodeUnavailable(
                f"data {ref.key!r} is kept on {ref.node}, and this embedded node reaches no "
                "other node"
            )
        for _ in range(MAX_RESTARTS + 1):
            try:
                return await self._fetch_once(ref)
            except Changed:
                continue
        raise ActorError(f"data {ref.key!r} on {ref.node} kept changing while it was fetched")

    async def _ask(self, ref: DataRef, body: list[Any]) -> Any:
        """One chunk request to the holder; its absence or silence is ``NodeUnavailable``."""
        if not self._is_member(ref.node):
            raise NodeUnavailable(
                f"{ref.node}, which holds data {ref.key!r}, is not a member (it died or left)"
            )
        assert self._request is not None
        try:
            return await self._request(ref.node, "data", body)
        except ActorTimeout as err:
            raise NodeUnavailable(
                f"{ref.node}, which holds data {ref.key!r}, did not answer: {err}"
            ) from None

    async def _fetch_once(self, ref: DataRef) -> Any:
        fetch = Fetch(ref.key, self.chunk_size, self.window)
        todo = fetch.feed(0, await self._ask(ref, fetch.first()))
        inflight: dict[asyncio.Task[Any], int] = {}
        try:
            while not fetch.done:
                for body in todo:
                    inflight[asyncio.ensure_future(self._ask(ref, body))] = body[1]
                if not inflight:
                    raise ProtocolError(f"data {ref.key!r}: the transfer stalled")
                done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                todo = []
                for task in done:
                    offset = inflight.pop(task)
                    todo += fetch.feed(offset, task.result())
        finally:
            for task in inflight:
                if task.done():
                    if not task.cancelled():
                        task.exception()  # seen: the first failure is the one raised
                else:
                    task.cancel()
        if fetch.joins and fetch.total >= JOIN_IN_THREAD:
            buf = await asyncio.to_thread(fetch.buffer)  # bytes.join lets go of the GIL
        else:
            buf = fetch.buffer()
        return from_wire(fetch.kind, fetch.meta, buf, self.codec)


# -- file I/O (run in threads) ------------------------------------------------------------------


def _make_dir(parent: str) -> str:
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix="shoal-data-", dir=parent)


def _write(path: str, flat: Any) -> None:
    with open(path, "wb") as f:
        f.write(flat)


def _read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


def _load(path: str, kind: int, meta: list[Any], codec: wire.Codec) -> Any:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if kind in (BYTES, MSGPACK):
            data: bytes | bytearray = f.read()
        else:
            data = bytearray(size)
            f.readinto(data)
    return from_wire(kind, meta, data, codec)


def _unlink(path: str | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
