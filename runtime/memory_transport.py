"""An in-process transport for tests and simulation, with fault injection.

Several :class:`MemoryTransport` objects share one :class:`MemoryNetwork` (one event loop).
Addresses look like ``mem://name``; listening on ``mem://`` (or ``mem://auto``) picks a unique
name. The semantics mirror :class:`~runtime.zmq_transport.ZmqTransport` closely enough that a
node cannot tell them apart:

* chunks sent to one peer in one loop iteration are joined into one frame by a single
  ``call_soon`` flush, and delivered from that callback (never inside ``send``);
* a frame sent with ``send(peer)`` arrives with a ``bytes`` route (like a ROUTER identity);
  ``reply(route)`` to it arrives at the sender with the replier's address (a ``str``) as its
  route, like an answer coming in on a DEALER;
* order is preserved per connection, delivery is at most once;
* an attached message (``reply_attached``) travels alone, never joined with other chunks; its
  attachment is copied when it is queued (as a network would copy it), so the receiver never
  sees the sender's own buffer.

Faults (all deterministic -- no randomness, no wall clock):

* :meth:`MemoryNetwork.partition` drops traffic between two groups of names; senders on
  either side get ``peer_down`` for the peers they talk to across it. :meth:`~MemoryNetwork.heal`
  removes every partition.
* :meth:`MemoryNetwork.kill` makes a transport stop delivering and sending, as if its process
  died; every transport that sends to it gets ``peer_down``.
* :meth:`MemoryNetwork.pause` makes a transport stop reading: frames for it stay in the
  senders' outboxes, so their ``backlog()`` grows and ``drained()`` blocks (the backpressure
  case); :meth:`~MemoryNetwork.resume` lets them through, in order.
* :attr:`MemoryNetwork.delay`, if set, is called as ``delay(src_name, dst_name)`` for every
  frame and returns seconds of latency (per-connection order is still kept).

Unlike ZeroMQ, which keeps frames queued for a down peer and sends them if it comes back,
this transport DROPS frames it cannot deliver (to an unknown, dead or partitioned peer).
Both are allowed by the transport contract (at most once after ``peer_down``).
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from collections.abc import Callable, Iterable

from actors.errors import NodeUnavailable
from runtime.transport import (
    DEFAULT_BACKLOG_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    Attached,
    Attachment,
    Deliver,
    DeliverAttached,
    Outbox,
    PeerDown,
    Route,
    Transport,
    logger,
    nbytes_of,
)

__all__ = ["MemoryNetwork", "MemoryTransport"]

_SCHEME = "mem://"


class _Link(Outbox):
    """One connection's outbox plus the frames it has in flight (only when delayed)."""

    __slots__ = ("inflight", "last_due", "timer")

    def __init__(self, key: Route) -> None:
        super().__init__(key)
        self.inflight: deque[tuple[float, MemoryTransport, bytes | Attached, Route]] = deque()
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None


class MemoryNetwork:
    """The hub several in-process transports connect through; holds the fault state."""

    __slots__ = (
        "_by_name",
        "_by_route",
        "_counter",
        "_held",
        "_listeners",
        "_partitions",
        "_paused",
        "delay",
    )

    def __init__(self) -> None:
        self._listeners: dict[str, MemoryTransport] = {}
        """Listening transports by address: what ``send(peer)`` can reach."""
        self._by_name: dict[str, MemoryTransport] = {}
        """Every live transport (listening or client-only) by name."""
        self._by_route: dict[bytes, MemoryTransport] = {}
        """Every live transport by the route id its outgoing frames carry."""
        self._partitions: list[tuple[frozenset[str], frozenset[str]]] = []
        self._held: list[tuple[frozenset[str], frozenset[str]]] = []
        self._paused: set[str] = set()
        self._counter = 0
        self.delay: Callable[[str, str], float] | None = None
        """Optional ``delay(src_name, dst_name) -> seconds`` applied to every frame."""

    # ------------------------------------------------------------------ faults

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Drop all traffic between names in ``group_a`` and names in ``group_b``.

        Partitions accumulate until :meth:`heal`. Every live transport that has talked to a
        peer on the other side is told ``peer_down`` for it (as zmq heartbeats would).
        """
        a, b = frozenset(group_a), frozenset(group_b)
        self._partitions.append((a, b))
        for t in list(self._by_name.values()):
            for peer, link in t._links.items():
                if not self.reachable(t.name, peer):
                    t._report_down(link)

    def hold(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Hold all traffic between names in ``group_a`` and names in ``group_b``: frames wait
        in the senders' outboxes and nobody is told ``peer_down``, as TCP buffers what a cut
        link cannot carry; :meth:`heal` delivers what waited, in order (frames already in
        flight land)."""
        self._held.append((frozenset(group_a), frozenset(group_b)))

    def held(self, a: str, b: str) -> bool:
        """Whether a held partition keeps frames between ``a`` and ``b`` waiting."""
        return any((a in ga and b in gb) or (a in gb and b in ga) for ga, gb in self._held)

    @property
    def cut(self) -> bool:
        """Whether any partition, dropping or holding, is in place."""
        return bool(self._partitions or self._held)

    def heal(self) -> None:
        """Remove every partition (peers are reachable again on the next send; what a held
        partition kept waiting is delivered now)."""
        self._partitions.clear()
        if self._held:
            self._held.clear()
            for t in list(self._by_name.values()):
                for link in (*t._links.values(), *t._routes.values()):
                    if link.blocked and not self._paused_target(link):
                        link.blocked = False
                        t._queue(link)

    def kill(self, name: str) -> None:
        """Let the transport named ``name`` die: it stops delivering and sending at once.

        Frames queued or in flight to it are lost, and every transport that sends to it is
        told ``peer_down``. A new transport may then listen on the same address. No-op for an
        unknown name.
        """
        t = self._by_name.get(name)
        if t is None:
            return
        t._die()
        self._unregister(t)
        self._paused.discard(name)
        for other in list(self._by_name.values()):
            link = other._links.get(name)
            if link is not None:
                other._report_down(link)
            for link in (*other._links.values(), *other._routes.values()):
                if link.blocked and self._target_of(link) is None:
                    # Waiting for a paused peer that is now dead: let the flush drop it.
                    link.blocked = False
                    other._queue(link)

    def pause(self, name: str) -> None:
        """Stop delivering to ``name``: frames wait in the senders' outboxes (backpressure)."""
        self._paused.add(name)

    def _paused_target(self, link: _Link) -> bool:
        target = self._target_of(link)
        return target is not None and target.name in self._paused

    def resume(self, name: str) -> None:
        """Undo :meth:`pause`; the waiting frames are delivered in order."""
        self._paused.discard(name)
        target = self._by_name.get(name)
        if target is None:
            return
        for t in list(self._by_name.values()):
            for link in (*t._links.values(), *t._routes.values()):
                if link.blocked and self._target_of(link) is target:
                    link.blocked = False
                    t._queue(link)

    def reachable(self, a: str, b: str) -> bool:
        """Whether no partition separates names ``a`` and ``b``."""
        return not any(
            (a in ga and b in gb) or (a in gb and b in ga) for ga, gb in self._partitions
        )

    @property
    def addresses(self) -> list[str]:
        """The addresses currently listening."""
        return list(self._listeners)

    # ------------------------------------------------------------------ internals

    def _register(self, t: MemoryTransport, listen: str | None) -> str:
        self._counter += 1
        if listen is None:
            name = f"client-{self._counter}"
            address = ""
        else:
            if not listen.startswith(_SCHEME):
                raise ValueError(f"memory transport addresses look like mem://name, not {listen!r}")
            rest = listen[len(_SCHEME) :]
            if rest in ("", "auto"):
                rest = f"node-{self._counter}"
                while _SCHEME + rest in self._by_name:
                    self._counter += 1
                    rest = f"node-{self._counter}"
            name = address = _SCHEME + rest
            if name in self._by_name:
                raise OSError(errno.EADDRINUSE, f"{name} is already in use")
            self._listeners[address] = t
        t.name = name
        # Unique per transport, like a zmq identity is per connection: a reply to a route of a
        # dead transport must not reach a new one that took over its address.
        t.route_id = f"{name}#{self._counter}".encode()
        self._by_name[name] = t
        self._by_route[t.route_id] = t
        return address

    def _unregister(self, t: MemoryTransport) -> None:
        if self._by_name.get(t.name) is t:
            del self._by_name[t.name]
            self._by_route.pop(t.route_id, None)
            self._listeners.pop(t.name, None)

    def _target_of(self, link: Outbox) -> MemoryTransport | None:
        key = link.key
        if isinstance(key, str):
            return self._listeners.get(key)
        return self._by_route.get(key)


class MemoryTransport(Transport):
    """:class:`~runtime.transport.Transport` inside one process, over a :class:`MemoryNetwork`.

    ``name`` identifies the transport to the network's fault hooks: it is ``address`` for a
    listening transport and ``client-N`` for a client-only one.
    """

    __slots__ = (
        "_alive",
        "_backlog_hwm",
        "_deliver",
        "_deliver_attached",
        "_dirty",
        "_flush_scheduled",
        "_links",
        "_loop",
        "_max_frame",
        "_peer_down",
        "_routes",
        "address",
        "name",
        "network",
        "route_id",
    )

    def __init__(
        self,
        network: MemoryNetwork,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        backlog_hwm: int = DEFAULT_BACKLOG_HWM,
    ) -> None:
        if max_frame_bytes < 1 or backlog_hwm < 1:
            raise ValueError("max_frame_bytes and backlog_hwm must be positive")
        self.network = network
        self._max_frame = max_frame_bytes
        self._backlog_hwm = backlog_hwm
        self.address = ""
        self.name = ""
        self.route_id = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver = _ignore_frame
        self._deliver_attached: DeliverAttached | None = None
        self._peer_down: PeerDown = _ignore_peer
        self._links: dict[str, _Link] = {}
        self._routes: dict[bytes, _Link] = {}
        self._dirty: list[_Link] = []
        self._flush_scheduled = False
        self._alive = False

    async def start(
        self,
        listen: str | None,
        deliver: Deliver,
        peer_down: PeerDown,
        deliver_attached: DeliverAttached | None = None,
    ) -> str:
        if self._loop is not None:
            raise RuntimeError("a transport can be started only once")
        loop = asyncio.get_running_loop()
        self.address = self.network._register(self, listen)
        self._loop = loop
        self._deliver = deliver
        self._deliver_attached = deliver_attached
        self._peer_down = peer_down
        self._alive = True
        return self.address

    async def close(self) -> None:
        if self._loop is None or not self._alive:
            self._alive = False
            return
        self.network.kill(self.name)

    def forget(self, peer: str) -> None:
        link = self._links.pop(peer, None)
        if link is None:
            return
        self._drop_link(link, NodeUnavailable(f"peer {peer} was forgotten"))

    @staticmethod
    def _drop_link(link: _Link, exc: NodeUnavailable) -> None:
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        link.inflight.clear()
        link.clear()
        link.blocked = False
        link.fail(exc)

    # ------------------------------------------------------------------ sending

    def send(self, peer: str, chunk: bytes) -> None:
        self._append(self._link_to(peer), chunk)

    def _link_to(self, peer: str) -> _Link:
        link = self._links.get(peer)
        if link is None:
            if not peer.startswith(_SCHEME):
                raise ValueError(f"memory transport addresses look like mem://name, not {peer!r}")
            if self._loop is None:
                raise RuntimeError("send() before start()")
            link = self._links[peer] = _Link(peer)
        return link

    def reply(self, route: Route, chunk: bytes) -> None:
        if isinstance(route, str):
            self.send(route, chunk)
            return
        link = self._routes.get(route)
        if link is None:
            link = self._routes[route] = _Link(route)
        self._append(link, chunk)

    def reply_attached(self, route: Route, chunk: bytes, attachment: Attachment) -> None:
        if isinstance(route, str):
            link = self._link_to(route)
        else:
            found = self._routes.get(route)
            link = self._routes[route] = _Link(route) if found is None else found
        if not self._alive:
            return
        link.add_attached(chunk, bytes(attachment), self._max_frame)
        if not link.queued and not link.blocked:
            self._queue(link)

    def _append(self, link: _Link, chunk: bytes) -> None:
        if not self._alive:
            return  # closed or killed: a dead process sends nothing
        link.chunks.append(chunk)
        link.nbytes += len(chunk)
        if not link.queued and not link.blocked:
            self._queue(link)

    def _queue(self, link: _Link) -> None:
        link.queued = True
        self._dirty.append(link)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    @property
    def backlog_hwm(self) -> int:
        return self._backlog_hwm

    def backlog(self, peer: Route) -> int:
        link = self._links.get(peer) if isinstance(peer, str) else self._routes.get(peer)
        return 0 if link is None else link.nbytes

    async def drained(self, peer: Route) -> None:
        if not self._alive:
            raise NodeUnavailable("transport closed")
        link = self._links.get(peer) if isinstance(peer, str) else self._routes.get(peer)
        if link is not None:
            await link.wait_below(self._backlog_hwm, f"peer {peer!r}")

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            link.queued = False
            if self._alive and not link.blocked:
                self._flush_link(link)

    def _flush_link(self, link: _Link) -> None:
        net = self.network
        key = link.key
        target = net._target_of(link)
        if target is None or not net.reachable(self.name, target.name):
            if isinstance(key, str):
                logger.debug(
                    "%s: dropping %d bytes for unreachable %s", self.name, link.nbytes, key
                )
                link.clear()
                self._report_down(link)
            else:
                logger.debug(
                    "%s: dropping %d bytes for a caller that is gone", self.name, link.nbytes
                )
                link.clear()
                link.fail(NodeUnavailable("the caller's connection is gone"))
                del self._routes[key]
            return
        if target.name in net._paused or (net._held and net.held(self.name, target.name)):
            link.blocked = True
            return
        link.down = False
        frames = link.take_frames(self._max_frame)
        # An answer to send(peer) carries our address; a send() carries our route id.
        route: Route = self.address if isinstance(key, bytes) else self.route_id
        delay = net.delay
        while frames:
            frame = frames.popleft()
            link.nbytes -= nbytes_of(frame)
            if delay is None and not link.inflight:
                target._receive(self.name, frame, route)
            else:
                self._delay(
                    link, target, frame, route, delay(self.name, target.name) if delay else 0.0
                )
        if link.waiters:
            link.wake(self._backlog_hwm)
        if isinstance(key, bytes) and not link.chunks and not link.inflight:
            del self._routes[key]

    def _delay(
        self,
        link: _Link,
        target: MemoryTransport,
        frame: bytes | Attached,
        route: Route,
        seconds: float,
    ) -> None:
        """Deliver ``frame`` after ``seconds``, but never ahead of earlier frames on ``link``."""
        loop = self._loop
        assert loop is not None
        due = max(loop.time() + max(0.0, seconds), link.last_due)
        link.last_due = due
        link.inflight.append((due, target, frame, route))
        if link.timer is None:
            link.timer = loop.call_at(due, self._land, link)

    def _land(self, link: _Link) -> None:
        """Timer for a delayed link: deliver every frame that is due, re-arm for the rest."""
        link.timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        inflight = link.inflight
        while inflight and inflight[0][0] <= now:
            _, target, frame, route = inflight.popleft()
            if self._alive and self.network.reachable(self.name, target.name):
                target._receive(self.name, frame, route)
        if inflight:
            link.timer = loop.call_at(inflight[0][0], self._land, link)
        elif isinstance(link.key, bytes) and not link.chunks and self._routes.get(link.key) is link:
            del self._routes[link.key]

    # ------------------------------------------------------------------ receiving and faults

    def _receive(self, src: str, frame: bytes | Attached, route: Route) -> None:
        if not self._alive:
            return
        try:
            if not isinstance(frame, tuple):
                self._deliver(frame, route)
            elif self._deliver_attached is not None:
                chunk, attachment = frame
                self._deliver_attached(chunk, memoryview(attachment), route)
            else:
                logger.warning("%s: dropped an attached message from %s", self.name, src)
        except Exception:
            logger.exception("deliver() raised; frame from %s dropped", src)

    def _report_down(self, link: Outbox) -> None:
        """Tell the node, once per outage and from its own callback, that a peer is down."""
        if link.down or not self._alive or self._loop is None:
            return
        link.down = True
        peer = link.key
        assert isinstance(peer, str)
        link.fail(NodeUnavailable(f"peer {peer} is down"))
        self._loop.call_soon(self._notify_down, peer)

    def _notify_down(self, peer: str) -> None:
        if not self._alive:
            return
        try:
            self._peer_down(peer)
        except Exception:
            logger.exception("peer_down() raised")

    def _die(self) -> None:
        self._alive = False
        gone = NodeUnavailable("transport closed")
        for link in (*self._links.values(), *self._routes.values()):
            self._drop_link(link, gone)
        self._routes.clear()
        self._dirty.clear()


def _ignore_frame(frame: bytes, route: Route) -> None:
    """Placeholder ``deliver`` until :meth:`MemoryTransport.start`."""


def _ignore_peer(peer: str) -> None:
    """Placeholder ``peer_down`` until :meth:`MemoryTransport.start`."""
