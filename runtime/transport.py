"""The transport interface: moving opaque byte chunks between nodes.

A transport knows nothing of envelopes. It moves *chunks* (each chunk is one encoded envelope)
and relies on one property of the wire format: the concatenation of chunks is a valid frame.
That lets every implementation coalesce cheaply: all chunks queued for one peer during one
event-loop iteration leave as ONE frame (``b"".join(chunks)``), which amortises the per-message
cost of the socket layer over every message produced in that iteration.

Contract shared by every implementation (see :class:`Transport`):

* ``send``/``reply`` never block and never await; they append to a per-connection outbox and
  schedule (``loop.call_soon``) one flush per iteration. They never call back into the node
  re-entrantly (``deliver`` and ``peer_down`` always run from their own loop callbacks).
  (The zmq transport also flushes right after a batch of ``deliver`` calls, so answers that
  ``deliver`` queues synchronously leave without waiting one more loop iteration, and it hands
  the first chunk of an iteration for an idle peer to the socket at once, so a lone request
  does not wait for the flush either; what follows it in the same iteration coalesces.)
* Chunks are delivered in order per connection; a frame arrives whole or not at all. A frame
  may hold any number of chunks (never split one), up to ``max_frame_bytes`` unless a single
  chunk is bigger.
* Delivery is at most once: when a peer is reported down, anything in flight may be lost.
* An *attached message* (:meth:`Transport.reply_attached`) is a chunk plus an attachment, a
  buffer of raw bytes that travels as a message of its own, never copied into a frame or
  coalesced with other chunks (the ZeroMQ transport hands it to zmq without copying it): it
  leaves after what was queued before it and before what is queued after it, and arrives
  through ``deliver_attached(chunk, attachment, route)`` (the attachment as a ``memoryview``),
  which ``start`` takes; a transport started without it drops such messages as malformed.
* Producers that await :meth:`Transport.drained` wait while a connection's backlog is over
  its high-water mark (which is how backpressure reaches them). The ZeroMQ transport also
  bounds each connection's outbox in bytes (``max_backlog``): a caller whose replies pile up
  there because it does not read them is cut off (what is queued for it is dropped, and so
  are its requests for a while), and chunks for a peer that takes nothing beyond it are
  dropped. (The in-memory transport, for tests and simulation, does not bound its memory.)

This module also holds the small pieces the implementations share: :class:`Outbox` (the
per-connection queue with its backlog accounting and ``drained`` waiters) and
:func:`coalesce`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TypeAlias

from actors.errors import NodeUnavailable

__all__ = [
    "DEFAULT_BACKLOG_HWM",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_FRAME_BYTES",
    "Attached",
    "Attachment",
    "Deliver",
    "DeliverAttached",
    "Outbox",
    "PeerDown",
    "Route",
    "Transport",
    "coalesce",
    "logger",
    "nbytes_of",
]

logger = logging.getLogger("shoal.transport")

Route: TypeAlias = bytes | str
"""Where to send an answer to a frame; opaque to the node.

For ZeroMQ a frame that came in on our ROUTER carries the connection's identity (``bytes``);
a frame that came in on one of our DEALERs (an answer from peer ``P``) carries ``P``'s address
(``str``), so :meth:`Transport.reply` to it is the same as :meth:`Transport.send` to ``P``.
"""

Deliver: TypeAlias = Callable[[bytes, Route], None]
"""``deliver(frame, route)``: one frame arrived; ``route`` is where answers to it should go."""

DeliverAttached: TypeAlias = Callable[[bytes, memoryview, Route], None]
"""``deliver_attached(chunk, attachment, route)``: an attached message arrived."""

Attachment: TypeAlias = bytes | memoryview
"""What an attached message carries beside its chunk (any contiguous bytes)."""

Attached: TypeAlias = tuple[bytes, Attachment]
"""An attached message waiting in an outbox: ``(chunk, attachment)``."""

PeerDown: TypeAlias = Callable[[str], None]
"""``peer_down(address)``: a peer we send to was judged unreachable or disconnected."""

DEFAULT_MAX_FRAME_BYTES = 1 << 20
"""Coalescing stops adding chunks to a frame at this size (a bigger single chunk goes alone).

Well below the wire format's frame limit, and it also bounds what one zmq message pins in
memory: the worst case a peer's socket queues is about ``sndhwm * max_frame_bytes``.
"""

DEFAULT_BACKLOG_HWM = 1 << 20
"""``drained(peer)`` returns at once while ``backlog(peer)`` is below this many bytes."""

DEFAULT_MAX_BACKLOG = 32 << 20
"""The most bytes one connection's outbox holds while its socket refuses more (the ZeroMQ
transport's ``max_backlog``): one chunk more may always be queued, so a single reply bigger
than this still waits for a caller that reads slowly."""


class Transport(ABC):
    """Moves chunks to peers (by address) and back along routes (by connection).

    Implementations: :class:`runtime.zmq_transport.ZmqTransport` (production) and
    :class:`runtime.memory_transport.MemoryTransport` (tests and simulation).
    """

    __slots__ = ()

    address: str
    """The bound endpoint after :meth:`start` (``""`` for a client-only transport)."""

    @abstractmethod
    async def start(
        self,
        listen: str | None,
        deliver: Deliver,
        peer_down: PeerDown,
        deliver_attached: DeliverAttached | None = None,
    ) -> str:
        """Bind ``listen`` (or, with ``None``, only connect out) and return the bound address.

        Ephemeral endpoints are resolved, e.g. ``tcp://127.0.0.1:0`` becomes
        ``tcp://127.0.0.1:54321``. Raises :class:`OSError` if the endpoint cannot be bound and
        :class:`ValueError` if it is malformed.
        """

    @abstractmethod
    def send(self, peer: str, chunk: bytes) -> None:
        """Queue ``chunk`` for ``peer``'s connection (created lazily); never blocks.

        A malformed address raises :class:`ValueError`; an unreachable peer is reported through
        ``peer_down`` instead. Sending after :meth:`close` is silently ignored.
        """

    @abstractmethod
    def reply(self, route: Route, chunk: bytes) -> None:
        """Queue ``chunk`` back along the connection a frame came in on (coalesced likewise)."""

    @abstractmethod
    def reply_attached(self, route: Route, chunk: bytes, attachment: Attachment) -> None:
        """Queue an attached message back along a route: ``chunk`` and, as a message part of
        its own that is never copied into a frame, ``attachment`` (see the module docstring).
        The transport keeps a reference to ``attachment`` until it is sent: do not change it
        meanwhile."""

    @abstractmethod
    def backlog(self, peer: Route) -> int:
        """Bytes queued for ``peer`` (an address or a route) that the socket has not accepted."""

    @property
    def backlog_hwm(self) -> int:
        """The mark :meth:`drained` waits under: ``backlog(peer) >= backlog_hwm`` means wait."""
        return DEFAULT_BACKLOG_HWM

    @abstractmethod
    async def drained(self, peer: Route) -> None:
        """Return once ``backlog(peer)`` is below the high-water mark (at once if it already is).

        Raises :class:`~actors.errors.NodeUnavailable` if the peer is, or goes, down while the
        backlog is over the mark, or if the transport is closed: waiting for a peer that is
        gone would otherwise hang the producer until it came back.
        """

    def forget(self, peer: str) -> None:  # noqa: B027 - optional: a no-op by default
        """Close the connection to ``peer`` and drop what is queued for it.

        For a peer that left the cluster for good: otherwise its connection (and, with zmq,
        its reconnection attempts) would live as long as the transport. A later ``send`` to
        the same address connects afresh. ``drained(peer)`` waiters get NodeUnavailable.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close every socket (linger 0: queued data is dropped) and cancel pending work."""


class Outbox:
    """The queue of one connection (one peer, or one route back to a caller).

    ``chunks`` collects what ``send`` queued since the last flush; a flush joins them into
    ``frames`` (each joined at most once, even when the socket pushes back) and hands frames to
    the socket until it refuses one. An attached message goes straight to ``frames`` as an
    :data:`Attached` tuple, after the chunks queued before it. ``nbytes`` counts all of it,
    which is the backlog.
    """

    __slots__ = ("blocked", "chunks", "down", "frames", "key", "nbytes", "queued", "waiters")

    def __init__(self, key: Route) -> None:
        self.key: Route = key
        self.chunks: list[bytes] = []
        self.frames: deque[bytes | Attached] = deque()
        self.nbytes = 0
        self.queued = False
        """Already on the transport's list of outboxes to flush this iteration."""
        self.blocked = False
        """The socket refused a frame; wait for it to become writable instead of retrying."""
        self.down = False
        """The peer was reported down (and not seen up since); reported once per outage."""
        self.waiters: list[asyncio.Future[None]] = []

    def take_frames(self, max_frame: int) -> deque[bytes | Attached]:
        """Move the queued chunks into ``frames`` (coalesced) and return ``frames``."""
        if self.chunks:
            self.frames.extend(coalesce(self.chunks, max_frame))
            self.chunks = []
        return self.frames

    def add_attached(self, chunk: bytes, attachment: Attachment, max_frame: int) -> None:
        """Queue an attached message after everything queued so far."""
        self.take_frames(max_frame).append((chunk, attachment))
        self.nbytes += len(chunk) + nbytes_of(attachment)

    def clear(self) -> None:
        """Drop everything queued (the data is lost)."""
        self.chunks = []
        self.frames.clear()
        self.nbytes = 0

    async def wait_below(self, hwm: int, what: str) -> None:
        """Wait until ``nbytes < hwm``; see :meth:`Transport.drained`."""
        if self.nbytes < hwm:
            return
        if self.down:
            raise NodeUnavailable(f"{what} is down with {self.nbytes} bytes queued")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        finally:
            if fut.cancelled():
                # Our caller was cancelled: forget the future so nothing resolves it later.
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)

    def wake(self, hwm: int) -> None:
        """Resolve the ``drained`` waiters if the backlog went below ``hwm``."""
        if self.waiters and self.nbytes < hwm:
            waiters, self.waiters = self.waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """Fail the ``drained`` waiters (peer down or transport closed)."""
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc)


def nbytes_of(item: bytes | Attached | Attachment) -> int:
    """The bytes an outbox item (a frame or an attached message) or an attachment holds."""
    if isinstance(item, tuple):
        return len(item[0]) + nbytes_of(item[1])
    return item.nbytes if isinstance(item, memoryview) else len(item)


def coalesce(chunks: list[bytes], max_frame: int) -> list[bytes]:
    """Join ``chunks`` in order into as few frames as possible, each at most ``max_frame``.

    A chunk larger than ``max_frame`` becomes a frame of its own. One chunk is returned as is
    (no copy), which keeps the latency path (one request per iteration) free of joins.
    """
    if len(chunks) == 1:
        return chunks
    total = 0
    for c in chunks:
        total += len(c)
    if total <= max_frame:
        return [b"".join(chunks)]
    frames: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for c in chunks:
        n = len(c)
        if group and size + n > max_frame:
            frames.append(group[0] if len(group) == 1 else b"".join(group))
            group = []
            size = 0
        group.append(c)
        size += n
    if group:
        frames.append(group[0] if len(group) == 1 else b"".join(group))
    return frames
