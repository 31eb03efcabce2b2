"""The ZeroMQ transport: one ROUTER we listen on, one DEALER per peer we talk to.

Why plain (synchronous) pyzmq sockets and not ``zmq.asyncio``: ``zmq.asyncio`` wraps every
``recv`` in a future and every wake-up in extra callbacks; the node only needs "tell me when
frames arrive" and "send this now if you can", so we drive non-blocking sockets directly from
the event loop with ``loop.add_reader(sock.FD)``. There is no task and no future per message.
The hot calls (send, recv, ``getsockopt(EVENTS)``) go through :mod:`runtime._zmqcalls`:
straight to libzmq when the optional compiled accelerator is built, through pyzmq otherwise.

The ZMQ_FD pitfall. A zmq socket's FD is *edge triggered*: it becomes readable when commands
reach the socket's mailbox, and ANY zmq call on the socket (``recv``, ``send``,
``getsockopt(EVENTS)``) may consume those commands and clear it. Readable FD therefore does
not mean "a message is waiting", and a waiting message does not keep the FD readable. So:

* every wake-up asks ``getsockopt(EVENTS)`` what is really ready and reads until ``EAGAIN``
  (or until a per-wake-up budget runs out, in which case it re-schedules itself, because no
  new edge will come for messages that are already queued);
* after every batch of sends we ask ``EVENTS`` again and, if input (or, for a blocked DEALER,
  output) became ready, schedule the wake-up handler ourselves -- the send may have eaten the
  edge that would have woken us;
* as a last line of defence, while any outbox is blocked a 50 ms timer retries it.

Sending. ``send``/``reply`` append to the connection's :class:`~runtime.transport.Outbox` and
schedule one ``call_soon`` flush for the whole transport per loop iteration; the flush joins
each outbox's chunks into one frame and tries ``send(NOBLOCK)`` right away. ``EAGAIN`` means
the connection is at its high-water mark (or, thanks to ``IMMEDIATE``, not connected yet):
the frames stay queued, ``backlog()`` grows, and the outbox is retried when the socket turns
writable. Callers awaiting ``drained()`` wait while it is over ``backlog_hwm``; what does not
wait is bounded by ``max_backlog`` (below, "Bounds"). For latency the
first message of a burst skips the queue: the first ``send`` since the last flush or read
batch (to a peer with nothing queued) and the first ``reply`` since then (to a caller with
nothing queued) go to the socket at once, followed by a look at ``EVENTS``; the ones after
them coalesce as above.

Attached messages (``reply_attached``) travel as one zmq message of two parts, the chunk and
the attachment (three on the ROUTER, after the caller's identity). The attachment is handed to
zmq without a copy (``_zmqcalls.send_buffer``) and received without one
(``_zmqcalls.recv_buffer``: a view of the zmq message); it is never joined with other frames.
A message of two parts reaches ``deliver_attached``; one of more parts is malformed.

Dead peers. Each DEALER has a socket monitor (an inproc PAIR read the same way). A
disconnect, a failed handshake, a refused or timed-out connect, or a ZMTP heartbeat timeout
(which is how a SIGSTOPped or cut-off peer is noticed) reports ``peer_down(address)`` once per
outage; a successful handshake ends the outage. The DEALER is kept -- zmq reconnects by itself
-- and so are its unsent frames: they go out if the peer comes back, and it is the node's job
to fail the callers waiting on that peer. Frames already handed to zmq when the connection
dropped are lost (at most once delivery).

Keyed links (``curve=``, :class:`runtime.security.CurveKeys`). The ROUTER is a CURVE server
with the node's key pair and asks :class:`runtime.security.ZapHandler` (on the loop) about every
client; each DEALER is a CURVE client with the same pair. A CURVE client must know the
server's public key before it says anything, and an address does not say which trusted key
its node holds, so the first DEALER to a peer *resolves* it: one candidate DEALER per trusted
key connects at once, and only the one whose key the server holds completes the handshake
(the others fail it at the server's first step and are closed). That DEALER becomes the peer's;
its key is remembered for the address. Meanwhile frames wait in the outbox, as for a peer not
connected yet. A refused connection is the peer being down (reported, zmq retries); if every
candidate fails its handshake, or a known key stops working (a node with another key now at
that address), or the peer refuses *our* key, the peer is reported down and resolved afresh
``reconnect_ivl_max`` later (zmq itself would never retry a connection the peer refused).
A resolution costs one handshake per trusted key, once per peer address (and, while nobody
answers there, one reconnecting socket per trusted key).

Why ``IMMEDIATE`` on DEALERs: without it zmq would accept frames for a peer that is not
connected into an invisible pipe (and silently lose or replay them across reconnects).
With it, such frames wait in our outbox where ``backlog()`` shows them and ``drained()``
can push back.

Why ``ROUTER_MANDATORY`` on the ROUTER: without it a ROUTER silently DROPS replies when a
caller's pipe is full or the caller is gone. With it we get ``EAGAIN`` (keep the reply queued
and retry: backpressure) or ``EHOSTUNREACH`` (the caller is gone: drop, nothing to retry).

Bounds (what a peer or a caller can make a node hold):

* Inbound, libzmq drops a connection whose next message part is over ``max_message_size``
  (``ZMQ_MAXMSGSIZE``), as soon as it has read the part's size, before it allocates it: a
  1 GB frame costs nothing. (libzmq checks each part; an attached message's two parts are each
  within the node's frame limit.)
* Outbound, an outbox that the socket refuses (the caller's or peer's pipe is full: it does
  not read) holds at most ``max_backlog`` bytes plus one chunk. A *caller* over it is cut off:
  everything queued for it is dropped, and for ``cut_off`` seconds its requests are dropped
  unread and replies to it that the socket refuses are dropped instead of queued; then it is
  served again (and cut off again if it still does not read). A *peer* over it (our DEALER:
  requests, tells, forwards) gets nothing more queued until it takes some: new chunks are
  dropped (at most once delivery; producers that await ``drained()`` never get there). What
  libzmq holds beyond the outbox is bounded by ``sndhwm`` messages per connection, each at
  most ``max_frame_bytes`` (coalesced) or one chunk.
* Half-open connections: one that does not finish its ZMTP handshake within
  ``handshake_ivl`` is closed by libzmq (its default is 30 s); an established one that stops
  answering heartbeats within ``heartbeat_timeout`` too; TCP keepalive covers the rest.
  (``shoal node`` also raises its descriptor limit to the hard limit: ``runtime.cli``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from typing import Any, Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from actors.errors import NodeUnavailable
from runtime import _zmqcalls
from runtime.security import ZAP_DOMAIN, CurveKeys, ZapHandler
from runtime.transport import (
    DEFAULT_BACKLOG_HWM,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_FRAME_BYTES,
    Attached,
    Attachment,
    Deliver,
    DeliverAttached,
    Outbox,
    PeerDown,
    Route,
    Transport,
    coalesce,
    logger,
    nbytes_of,
)

__all__ = ["ZmqTransport"]

#: Bytes read from one socket per wake-up before yielding to the loop, so that a flood from
#: one peer cannot starve timers (failure detection) and other sockets.
_READ_BUDGET: Final = 1 << 20
#: Seconds one wake-up spends delivering frames before it yields (and flushes the answers):
#: frames full of requests from one caller cannot hold back another's answer for longer.
#: (2 ms made a 64 MB migration 3.5x slower, 185 ms against 53, and 20 ms 2x: yielding in the
#: middle of the chunks of a transfer; at 50 ms it moves at 1.1x raw pyzmq's time.)
_READ_TIME: Final = 0.05


# Plain ints: zmq's IntFlag members cost ~0.7 us per `&` or `|` on the hot path.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_SNDMORE: Final = int(zmq.SNDMORE)
_NOBLOCK_SNDMORE: Final = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS: Final = int(zmq.EVENTS)
_RCVMORE: Final = int(zmq.RCVMORE)
_POLLIN: Final = int(zmq.POLLIN)
_POLLOUT: Final = int(zmq.POLLOUT)
_Again: Final = zmq.Again
_ZMQError: Final = zmq.ZMQError
# The hot socket calls take a socket's token (None once closed): see runtime._zmqcalls.
# ``events`` (getsockopt EVENTS) costs half a ``recv`` that fails with EAGAIN (pyzmq builds an
# exception object, an Errno enum and imports for every EAGAIN).
_token: Final = _zmqcalls.token
_send: Final = _zmqcalls.send
_events: Final = _zmqcalls.events
_recv: Final = _zmqcalls.recv
_recv_routed: Final = _zmqcalls.recv_routed
_send_buffer: Final = _zmqcalls.send_buffer
_recv_buffer: Final = _zmqcalls.recv_buffer
_monotonic: Final = time.monotonic

_DOWN_EVENTS: Final = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_CLOSED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_UP_EVENTS: Final = zmq.EVENT_HANDSHAKE_SUCCEEDED
_HANDSHAKE_FAILED: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

_RETRY_INTERVAL: Final = 0.05
"""Safety-net retry period for blocked outboxes (normally the socket FD wakes us first)."""

_MALFORMED_LOG_INTERVAL: Final = 10.0
_BOUNDS_LOG_INTERVAL: Final = 10.0
#: Cut-off callers remembered before the expired entries are swept.
_CUT_SWEEP: Final = 1024


def _ignore_frame(frame: bytes, route: Route) -> None:
    """Placeholder ``deliver`` until :meth:`ZmqTransport.start`."""


def _ignore_peer(peer: str) -> None:
    """Placeholder ``peer_down`` until :meth:`ZmqTransport.start`."""


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class _Candidate:
    """A DEALER (and its monitor) trying one trusted server key while a peer is resolved."""

    __slots__ = ("key", "mon", "sock")

    def __init__(self, key: bytes, sock: Any, mon: Any) -> None:
        self.key = key
        self.sock: Any = sock
        self.mon: Any = mon


class _Dealer(Outbox):
    """The outbox of one peer together with the DEALER (and its monitor) that carries it.

    On a keyed transport the DEALER may not be there yet (``h`` None, ``blocked`` True) while
    ``candidates`` resolve the peer's key, or until ``retry`` starts a resolution again."""

    __slots__ = ("candidates", "fd", "h", "mon", "mon_fd", "peer", "retry", "serverkey", "sock")

    def __init__(self, peer: str) -> None:
        super().__init__(peer)
        self.peer = peer
        self.sock: Any = None
        self.h: Any = None
        """The socket's token for the hot calls; None once closed (or not connected yet)."""
        self.mon: Any = None
        self.fd = -1
        self.mon_fd = -1
        self.serverkey: bytes | None = None
        """The peer's public key, on a keyed transport once resolved."""
        self.candidates: list[_Candidate] = []
        self.retry: asyncio.TimerHandle | None = None

    def attach(self, sock: Any, mon: Any) -> None:
        self.sock, self.h, self.mon = sock, _token(sock), mon
        self.fd, self.mon_fd = sock.FD, mon.FD


class ZmqTransport(Transport):
    """:class:`~runtime.transport.Transport` over ZeroMQ (``tcp://`` and ``ipc://``).

    Works on the default asyncio loop and on uvloop (anything with ``add_reader``; not on the
    Windows proactor loop). All methods must be called from the loop thread.

    Keyword arguments (times in seconds):

    ``context``
        A zmq context to share; by default the transport owns one and terminates it on close.
    ``sndhwm``/``rcvhwm``
        zmq high-water marks in *messages* (frames) per connection (64: beyond what libzmq
        holds, the outbox shows the backlog, where ``max_backlog`` bounds it). A frame holds
        up to ``max_frame_bytes`` (or one larger chunk), so a connection pins at most about
        ``sndhwm * max_frame_bytes`` in libzmq.
    ``max_frame_bytes``
        Coalescing cap; see :data:`~runtime.transport.DEFAULT_MAX_FRAME_BYTES`.
    ``backlog_hwm``
        ``drained(peer)`` waits while ``backlog(peer)`` is at least this many bytes.
    ``heartbeat_ivl``/``heartbeat_timeout``
        ZMTP heartbeats (0 disables): a peer that does not answer within the timeout is
        disconnected, hence reported down. This catches frozen peers and silent network cuts.
    ``connect_timeout``
        A TCP connect that hangs this long counts as failed (reported down), then is retried.
    ``reconnect_ivl``/``reconnect_ivl_max``
        zmq's reconnect backoff towards an unreachable peer.
    ``max_message_size``
        Inbound frames larger than this make zmq drop the connection (-1: no limit).
    ``recv_batch``
        Most frames read from one socket per wake-up before yielding to the loop.
    ``curve``
        The node's key pair and trusted keys (:func:`runtime.security.load_keys`): every
        link is CurveZMQ, and only trusted peers get through (see "Keyed links" above).
    ``max_backlog``/``cut_off``
        The most bytes an outbox holds while its socket refuses more, and how long a caller
        that went over it is cut off (see "Bounds" in the module docstring).
    ``handshake_ivl``
        A connection that has not finished its handshake this long after it opened is closed.
    """

    __slots__ = (
        "_backlog_hwm",
        "_closed",
        "_ctx",
        "_curve",
        "_cut",
        "_cut_for",
        "_dealers",
        "_deliver",
        "_deliver_attached",
        "_dirty",
        "_flush_scheduled",
        "_last_bounds_log",
        "_last_malformed_log",
        "_loop",
        "_max_backlog",
        "_max_frame",
        "_opts",
        "_own_ctx",
        "_peer_down",
        "_reconnect_max",
        "_recv_batch",
        "_replied",
        "_retry_handle",
        "_router",
        "_router_blocked",
        "_router_fd",
        "_router_h",
        "_routes",
        "_sent_direct",
        "_server_keys",
        "_zap",
        "address",
        "cut_offs",
        "dropped_bytes",
        "ignored",
        "malformed",
    )

    def __init__(
        self,
        *,
        context: Any = None,
        sndhwm: int = 64,
        rcvhwm: int = 64,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        backlog_hwm: int = DEFAULT_BACKLOG_HWM,
        heartbeat_ivl: float = 1.0,
        heartbeat_timeout: float = 3.0,
        connect_timeout: float = 3.0,
        reconnect_ivl: float = 0.1,
        reconnect_ivl_max: float = 2.0,
        max_message_size: int = -1,
        recv_batch: int = 1024,
        curve: CurveKeys | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        cut_off: float = 1.0,
        handshake_ivl: float = 5.0,
    ) -> None:
        if max_frame_bytes < 1 or backlog_hwm < 1 or recv_batch < 1 or max_backlog < 1:
            raise ValueError(
                "max_frame_bytes, backlog_hwm, recv_batch and max_backlog must be positive"
            )
        self._own_ctx = context is None
        self._ctx: Any = context  # our own one is created by start(), so nothing leaks before
        common: dict[Any, int | bytes] = {
            zmq.LINGER: 0,
            zmq.SNDHWM: sndhwm,
            zmq.RCVHWM: rcvhwm,
            zmq.MAXMSGSIZE: max_message_size,
            zmq.HANDSHAKE_IVL: _ms(handshake_ivl),
            zmq.TCP_KEEPALIVE: 1,
            zmq.TCP_KEEPALIVE_IDLE: 10,
            zmq.TCP_KEEPALIVE_INTVL: 5,
            zmq.TCP_KEEPALIVE_CNT: 3,
        }
        if heartbeat_ivl > 0:
            common[zmq.HEARTBEAT_IVL] = _ms(heartbeat_ivl)
            common[zmq.HEARTBEAT_TIMEOUT] = _ms(heartbeat_timeout)
            # Tell the remote end to drop us if WE stop answering (frozen process).
            common[zmq.HEARTBEAT_TTL] = _ms(heartbeat_timeout)
        dealer = dict(common)
        dealer[zmq.IMMEDIATE] = 1
        dealer[zmq.CONNECT_TIMEOUT] = _ms(connect_timeout)
        dealer[zmq.RECONNECT_IVL] = _ms(reconnect_ivl)
        dealer[zmq.RECONNECT_IVL_MAX] = _ms(reconnect_ivl_max)
        router = dict(common)
        router[zmq.ROUTER_MANDATORY] = 1
        router[zmq.BACKLOG] = 1024  # connections waiting to be accepted (libzmq's is 100)
        if curve is not None:
            dealer[zmq.CURVE_PUBLICKEY] = curve.public
            dealer[zmq.CURVE_SECRETKEY] = curve.secret
            router[zmq.CURVE_SERVER] = 1
            router[zmq.CURVE_PUBLICKEY] = curve.public
            router[zmq.CURVE_SECRETKEY] = curve.secret
            # ZAP is mandatory: with no handler to ask, a handshake fails instead of passing.
            router[zmq.ZAP_DOMAIN] = ZAP_DOMAIN
            router[zmq.ZAP_ENFORCE_DOMAIN] = 1
        self._opts: dict[str, dict[Any, int | bytes]] = {"dealer": dealer, "router": router}
        self._curve = curve
        self._zap: ZapHandler | None = None
        self._server_keys: dict[str, bytes] = {}
        self._reconnect_max = reconnect_ivl_max
        self._max_frame = max_frame_bytes
        self._backlog_hwm = backlog_hwm
        self._recv_batch = recv_batch
        self._max_backlog = max_backlog
        self._cut_for = cut_off
        self._cut: dict[bytes, float] = {}
        """Callers cut off (they did not read their replies), until when (loop clock)."""
        self._last_bounds_log = -_BOUNDS_LOG_INTERVAL
        self.cut_offs = 0
        """How often a caller was cut off for not reading its replies."""
        self.dropped_bytes = 0
        """Bytes dropped by the bounds: queued for cut-off callers, or beyond ``max_backlog``."""
        self.ignored = 0
        """Frames from cut-off callers dropped unread."""
        self.address = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver = _ignore_frame
        self._deliver_attached: DeliverAttached | None = None
        self._peer_down: PeerDown = _ignore_peer
        self._router: Any = None
        self._router_fd = -1
        self._router_h: Any = None
        self._dealers: dict[str, _Dealer] = {}
        self._routes: dict[bytes, Outbox] = {}
        self._router_blocked: dict[bytes, Outbox] = {}
        self._dirty: list[Outbox] = []
        self._flush_scheduled = False
        self._replied = False
        """A reply went out on the ROUTER at once since the last flush (the rest coalesce)."""
        self._sent_direct = False
        """A send went out on a DEALER at once since the last flush or read batch."""
        self._retry_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self._last_malformed_log = -_MALFORMED_LOG_INTERVAL
        self.malformed = 0
        """Count of inbound messages dropped as malformed (multipart or empty)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self,
        listen: str | None,
        deliver: Deliver,
        peer_down: PeerDown,
        deliver_attached: DeliverAttached | None = None,
    ) -> str:
        if self._loop is not None or self._closed:
            raise RuntimeError("a transport can be started only once")
        self._loop = asyncio.get_running_loop()
        self._deliver = deliver
        self._deliver_attached = deliver_attached
        self._peer_down = peer_down
        if self._own_ctx:
            self._ctx = zmq.Context()
            # 3 zmq sockets per peer (DEALER, monitor PAIR and libzmq's own end of it): the
            # default limit of 1023 would cap a node at ~340 peers.
            self._ctx.set(zmq.MAX_SOCKETS, 16384)
        if listen is None:
            return ""
        if self._curve is not None:
            # before the bind: no handshake may come before the handler is there
            self._zap = ZapHandler(self._ctx, self._curve.trusted)
            self._zap.start(self._loop)
        sock = self._socket(zmq.ROUTER, "router")
        try:
            sock.bind(listen)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise _endpoint_error(exc, listen) from exc
        self._router = sock
        self._router_fd = sock.FD
        self._router_h = _token(sock)
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._loop.add_reader(self._router_fd, self._on_router)
        # The bind may already have left commands in the mailbox; look once.
        self._loop.call_soon(self._on_router)
        return self.address

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        gone = NodeUnavailable("transport closed")
        for d in self._dealers.values():
            self._close_dealer(d)
            d.fail(gone)
            d.clear()
        self._dealers.clear()
        if self._router is not None:
            if loop is not None:
                loop.remove_reader(self._router_fd)
            self._router_h = None
            self._router.close(linger=0)
            self._router = None
        if self._zap is not None:
            self._zap.close()
        for box in self._routes.values():
            box.fail(gone)
            box.clear()
        self._routes.clear()
        self._router_blocked.clear()
        self._dirty.clear()
        if self._own_ctx and self._ctx is not None:
            # Every socket is closed with linger 0, so this does not block; destroy() also
            # closes anything that slipped through rather than hanging in term().
            self._ctx.destroy(linger=0)

    def forget(self, peer: str) -> None:
        self._server_keys.pop(peer, None)
        d = self._dealers.pop(peer, None)
        if d is None:
            return
        self._close_dealer(d)
        d.fail(NodeUnavailable(f"peer {peer} was forgotten"))
        d.clear()

    def _close_dealer(self, d: _Dealer) -> None:
        if d.retry is not None:
            d.retry.cancel()
            d.retry = None
        self._drop_candidates(d)
        self._detach(d)
        d.blocked = False  # so the retry timer and queued flushes leave it alone

    def _detach(self, d: _Dealer) -> None:
        """Close ``d``'s DEALER and monitor, if it has them."""
        if d.sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(d.fd)
            self._loop.remove_reader(d.mon_fd)
        d.h = None
        _close_pair(d.sock, d.mon)
        d.sock = d.mon = None
        d.fd = d.mon_fd = -1

    # ------------------------------------------------------------------ sending (hot path)

    def send(self, peer: str, chunk: bytes) -> None:
        box = self._dealers.get(peer)
        if box is None:
            box = self._open_dealer(peer)
            if box is None:
                return
        if (
            not self._flush_scheduled
            and not self._sent_direct
            and not box.nbytes
            and not box.blocked
        ):
            # The first send since the last flush or read batch, to an idle peer, leaves at
            # once (latency); the ones after it coalesce until the flush.
            try:
                _send(box.h, chunk, _NOBLOCK)
            except _Again:
                pass
            except _ZMQError:
                pass  # the queued path below reports the failure
            else:
                self._sent_direct = True
                # The send may have consumed the FD edge that announces input: look now,
                # which is cheaper than a deferred flush (a loop iteration of its own). As
                # _recheck_dealer(box, False), inline.
                try:
                    if _events(box.h) & _POLLIN:
                        self._loop.call_soon(self._on_dealer, box)  # type: ignore[union-attr]
                except _ZMQError:
                    pass
                return
        if box.blocked and box.nbytes >= self._max_backlog:
            self._overflow(box.peer, box.nbytes, len(chunk))
            return
        box.chunks.append(chunk)
        box.nbytes += len(chunk)
        if not box.queued and not box.blocked:
            box.queued = True
            self._dirty.append(box)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def reply(self, route: Route, chunk: bytes) -> None:
        if isinstance(route, str):
            self.send(route, chunk)
            return
        box = self._routes.get(route)
        if box is None:
            sock = self._router_h
            if sock is None:
                return  # closed: nowhere to send it
            if not self._replied:
                # Nothing is queued for this caller and no reply left at once since the last
                # flush: this one does (latency); later ones coalesce until the flush.
                try:
                    _send(sock, route, _NOBLOCK_SNDMORE)
                    _send(sock, chunk, _NOBLOCK)
                except _Again:
                    pass  # at the caller's high-water mark: queue it below
                except _ZMQError as exc:
                    self._reply_failed(exc, len(chunk))
                    return
                else:
                    self._replied = True
                    if not self._flush_scheduled:
                        # Not inside a read batch (which looks at EVENTS after each frame)
                        # and no flush to come (which would look): re-check the edge now.
                        self._recheck_router(False)
                    return
            if self._cut and route in self._cut:
                self.dropped_bytes += len(chunk)  # cut off: nothing is queued for it
                return
            box = self._routes[route] = Outbox(route)
        elif box.blocked and box.nbytes >= self._max_backlog:
            self._cut_off(box, len(chunk))
            return
        box.chunks.append(chunk)
        box.nbytes += len(chunk)
        if not box.queued and not box.blocked:
            box.queued = True
            self._dirty.append(box)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def reply_attached(self, route: Route, chunk: bytes, attachment: Attachment) -> None:
        # Attached messages are large: they always wait for the flush (at the end of the read
        # batch that asked for them, or in the next loop iteration), which costs them nothing.
        box: Outbox | None
        if isinstance(route, str):
            d = self._dealers.get(route)
            if d is None:
                d = self._open_dealer(route)
                if d is None:
                    return
            elif d.blocked and d.nbytes >= self._max_backlog:
                self._overflow(route, d.nbytes, len(chunk) + nbytes_of(attachment))
                return
            box = d
        else:
            box = self._routes.get(route)
            if box is None:
                if self._router_h is None:
                    return  # closed: nowhere to send it
                if self._cut and route in self._cut:
                    self.dropped_bytes += len(chunk) + nbytes_of(attachment)
                    return
                box = self._routes[route] = Outbox(route)
            elif box.blocked and box.nbytes >= self._max_backlog:
                self._cut_off(box, len(chunk) + nbytes_of(attachment))
                return
        box.add_attached(chunk, attachment, self._max_frame)
        if not box.queued and not box.blocked:
            box.queued = True
            self._dirty.append(box)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    @property
    def backlog_hwm(self) -> int:
        return self._backlog_hwm

    def backlog(self, peer: Route) -> int:
        box = self._dealers.get(peer) if isinstance(peer, str) else self._routes.get(peer)
        return 0 if box is None else box.nbytes

    async def drained(self, peer: Route) -> None:
        if self._closed:
            raise NodeUnavailable("transport closed")
        box = self._dealers.get(peer) if isinstance(peer, str) else self._routes.get(peer)
        if box is not None:
            await box.wait_below(self._backlog_hwm, f"peer {peer!r}")

    def _flush(self) -> None:
        """The per-iteration flush: hand every dirty outbox's frames to its socket."""
        self._flush_scheduled = False
        self._sent_direct = False
        dirty, self._dirty = self._dirty, []
        routed, self._replied = self._replied, False
        for box in dirty:
            box.queued = False
            if box.blocked:
                continue
            if type(box) is _Dealer:
                self._send_dealer(box)
                self._recheck_dealer(box, True)
            else:
                self._send_route(box)
                routed = True
        if routed:
            self._recheck_router(True)

    def _send_dealer(self, d: _Dealer) -> int:
        """Send ``d``'s frames until zmq pushes back; return how many went out."""
        sock = d.h
        send = _send
        sent = 0
        frames = d.frames
        if not frames:
            # Common case: fresh chunks only. Skip the deque for the first frame.
            chunks = d.chunks
            d.chunks = []
            out = coalesce(chunks, self._max_frame) if len(chunks) > 1 else chunks
            for i, frame in enumerate(out):
                try:
                    send(sock, frame, _NOBLOCK)
                except _Again:
                    frames.extend(out[i:])
                    self._block(d)
                    break
                except _ZMQError as exc:
                    self._send_failed(d, exc)
                    return sent
                d.nbytes -= len(frame)
                sent += 1
        else:
            d.take_frames(self._max_frame)
            while frames:
                item = frames[0]
                try:
                    if not isinstance(item, tuple):
                        send(sock, item, _NOBLOCK)
                    else:
                        _send_attached(sock, d.sock, item)
                except _Again:
                    self._block(d)
                    break
                except _ZMQError as exc:
                    self._send_failed(d, exc)
                    return sent
                frames.popleft()
                d.nbytes -= len(item) if not isinstance(item, tuple) else nbytes_of(item)
                sent += 1
        if d.waiters:
            d.wake(self._backlog_hwm)
        return sent

    def _send_route(self, box: Outbox) -> int:
        """Send a reply outbox on the ROUTER (forgotten once empty); return frames sent."""
        sock = self._router_h
        ident = box.key
        assert isinstance(ident, bytes)
        frames = box.take_frames(self._max_frame)
        sent = 0
        try:
            while frames:
                item = frames[0]
                _send(sock, ident, _NOBLOCK_SNDMORE)
                if not isinstance(item, tuple):
                    _send(sock, item, _NOBLOCK)
                    box.nbytes -= len(item)
                else:
                    _send_attached(sock, self._router, item)
                    box.nbytes -= nbytes_of(item)
                frames.popleft()
                sent += 1
        except _Again:
            if not box.blocked:
                box.blocked = True
                self._router_blocked[ident] = box
                self._arm_retry()
            if sent and box.waiters:
                box.wake(self._backlog_hwm)
            return sent
        except _ZMQError as exc:
            self._reply_failed(exc, box.nbytes)
            box.clear()
            box.fail(NodeUnavailable("the caller's connection is gone"))
        box.blocked = False
        self._router_blocked.pop(ident, None)
        if not box.chunks and not box.queued and self._routes.get(ident) is box:
            del self._routes[ident]
        if box.waiters:
            box.wake(self._backlog_hwm)
        return sent

    def _cut_off(self, box: Outbox, extra: int) -> None:
        """A caller whose replies piled up to ``max_backlog`` because it does not read them:
        drop them (and ``extra`` bytes more), and ignore it for ``cut_off`` seconds."""
        ident = box.key
        assert isinstance(ident, bytes)
        dropped = box.nbytes + extra
        self.cut_offs += 1
        self.dropped_bytes += dropped
        box.clear()
        box.blocked = False
        box.fail(NodeUnavailable("the caller does not read its replies: cut off"))
        self._router_blocked.pop(ident, None)
        if self._routes.get(ident) is box:
            del self._routes[ident]
        now = self._loop.time()  # type: ignore[union-attr]
        cut = self._cut
        if len(cut) >= _CUT_SWEEP:
            for gone in [i for i, until in cut.items() if until <= now]:
                del cut[gone]
        cut[ident] = now + self._cut_for
        if now - self._last_bounds_log >= _BOUNDS_LOG_INTERVAL:
            self._last_bounds_log = now
            logger.warning(
                "a caller does not read its replies: cut off for %g s, %d bytes dropped "
                "(%d cut-offs, %d bytes dropped so far)",
                self._cut_for,
                dropped,
                self.cut_offs,
                self.dropped_bytes,
            )

    def _overflow(self, peer: str, queued: int, nbytes: int) -> None:
        """A chunk for ``peer`` dropped: ``queued`` bytes already wait for a socket that
        takes nothing."""
        self.dropped_bytes += nbytes
        now = self._loop.time()  # type: ignore[union-attr]
        if now - self._last_bounds_log >= _BOUNDS_LOG_INTERVAL:
            self._last_bounds_log = now
            logger.warning(
                "%s takes nothing of the %d bytes queued for it: dropping what is sent to it "
                "(%d bytes dropped so far)",
                peer,
                queued,
                self.dropped_bytes,
            )

    def _still_cut(self, ident: bytes) -> bool:
        """Whether ``ident`` is cut off now (forgotten once its cut-off ended)."""
        if self._loop.time() < self._cut[ident]:  # type: ignore[union-attr]
            return True
        del self._cut[ident]
        return False

    def _skip(self, h: Any) -> int:
        """Read and drop the rest of a message's parts; returns their bytes."""
        size = 0
        more = 1
        while more:  # a message arrives whole: its other parts are already here
            part, more = _recv(h)
            size += len(part)
        return size

    @staticmethod
    def _reply_failed(exc: zmq.ZMQError, nbytes: int) -> None:
        if exc.errno == errno.EHOSTUNREACH:
            logger.debug("dropping %d bytes for a caller that is gone", nbytes)
        else:
            logger.warning("reply on the ROUTER failed, dropping %d bytes: %s", nbytes, exc)

    def _block(self, d: _Dealer) -> None:
        d.blocked = True
        self._arm_retry()

    def _send_failed(self, d: _Dealer, exc: zmq.ZMQError) -> None:
        logger.warning("send to %s failed, dropping %d bytes: %s", d.peer, d.nbytes, exc)
        d.clear()
        d.wake(self._backlog_hwm)

    def _arm_retry(self) -> None:
        if self._retry_handle is None and not self._closed:
            self._retry_handle = self._loop.call_later(  # type: ignore[union-attr]
                _RETRY_INTERVAL, self._retry_blocked
            )

    def _retry_blocked(self) -> None:
        """Safety net: retry blocked outboxes in case a writable edge was consumed unseen."""
        self._retry_handle = None
        if self._closed:
            return
        pending = False
        for d in list(self._dealers.values()):
            if d.blocked and d.h is not None:  # (not a keyed peer still being resolved)
                d.blocked = False
                self._send_dealer(d)
                self._recheck_dealer(d, True)
                pending = pending or d.blocked
        if self._router_blocked:
            self._retry_router()
            self._recheck_router(True)
            pending = pending or bool(self._router_blocked)
        if pending:
            self._arm_retry()

    def _retry_router(self) -> int:
        sent = 0
        for box in list(self._router_blocked.values()):
            box.blocked = False
            sent += self._send_route(box)
        return sent

    # The rechecks run after sends, which may have consumed the FD edge that would have
    # announced input, or that the blocked socket became writable; they re-arm the wake-up
    # handler by hand. ``chase_out`` is False after an attempt that was woken by POLLOUT yet
    # made no progress: chasing POLLOUT again would spin (the retry timer covers that case).

    def _recheck_dealer(self, d: _Dealer, chase_out: bool) -> None:
        try:
            ev = _events(d.h)
        except _ZMQError:
            return
        if ev & _POLLIN or (chase_out and d.blocked and ev & _POLLOUT):
            self._loop.call_soon(self._on_dealer, d)  # type: ignore[union-attr]

    def _recheck_router(self, chase_out: bool) -> None:
        # With ROUTER_MANDATORY, POLLOUT means "SOME caller's pipe has room", not necessarily
        # a blocked one's; that is why a fruitless retry must not chase it again.
        try:
            ev = _events(self._router_h)
        except _ZMQError:
            return
        if ev & _POLLIN or (chase_out and self._router_blocked and ev & _POLLOUT):
            self._loop.call_soon(self._on_router)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ receiving

    # After a batch of deliveries we flush at once whatever the deliver() callbacks queued
    # (answers computed synchronously): still one frame per peer for the whole batch, and it
    # saves the loop iteration that waiting for the call_soon flush would cost.
    #
    # Wake-ups read first, without asking EVENTS (the wake-up is almost always for input),
    # then ask EVENTS after each frame delivered: that both tells whether another frame is
    # queued and processes the socket's pending commands, so the FD edge is re-armed when the
    # batch ends. (A recv that fails with EAGAIN would do the same at twice the cost.)

    def _on_router(self) -> None:
        """ROUTER wake-up: read every ready frame, then retry replies that were blocked."""
        if self._router_h is None:
            return
        # Sends made by deliver() wait for the flush at the end of this batch instead of
        # scheduling one of their own (which would run as a no-op in the next iteration);
        # the first reply of the batch still leaves at once (see reply()).
        scheduled, self._flush_scheduled = self._flush_scheduled, True
        self._replied = False
        deliver = self._deliver
        budget = _READ_BUDGET
        cut = self._cut
        stop = _monotonic() + _READ_TIME
        try:
            for _ in range(self._recv_batch):
                if budget <= 0 or _monotonic() > stop:
                    self._loop.call_soon(self._on_router)  # type: ignore[union-attr]
                    break
                try:
                    ident, frame, more = _recv_routed(self._router_h)
                    if cut and ident in cut and self._still_cut(ident):
                        self.ignored += 1
                        budget -= len(frame) + (self._skip(self._router_h) if more else 0)
                        continue
                    if more:
                        # A message arrives whole, so the rest of its parts are already here.
                        budget -= self._read_attached(self._router, self._router_h, frame, ident)
                        frame = b""
                except _ZMQError:  # EAGAIN: drained (or the socket was closed meanwhile)
                    break
                if frame:
                    budget -= len(frame)
                    try:
                        deliver(frame, ident)
                    except Exception:
                        logger.exception("deliver() raised; frame dropped")
                elif not more:
                    self._malformed("empty frame on the ROUTER")
                    continue
                # Ask EVENTS rather than recv until EAGAIN: half the cost, and it also
                # processes the socket's commands, which re-arms the FD edge (deliver() may
                # have sent).
                try:
                    if not _events(self._router_h) & _POLLIN:
                        break
                except _ZMQError:  # closed by deliver()
                    break
            else:
                # Batch used up: frames may still be queued, and no edge will announce them.
                self._loop.call_soon(self._on_router)  # type: ignore[union-attr]
        finally:
            self._flush_scheduled = scheduled
        # The batch ended with a look at EVENTS after its last reply: re-armed already.
        self._replied = self._sent_direct = False
        if self._dirty:
            self._flush()
        if self._router_blocked:
            try:
                ev = _events(self._router_h)
            except _ZMQError:
                return
            if ev & _POLLOUT:
                self._recheck_router(self._retry_router() > 0)

    def _on_dealer(self, d: _Dealer) -> None:
        """DEALER wake-up: read answers from the peer; resume sending if it became writable.
        Reads as :meth:`_on_router` does."""
        scheduled, self._flush_scheduled = self._flush_scheduled, True
        deliver = self._deliver
        peer = d.peer
        budget = _READ_BUDGET
        stop = _monotonic() + _READ_TIME
        try:
            for _ in range(self._recv_batch):
                if budget <= 0 or _monotonic() > stop:
                    self._loop.call_soon(self._on_dealer, d)  # type: ignore[union-attr]
                    break
                try:
                    frame, more = _recv(d.h)
                    if more:
                        budget -= self._read_attached(d.sock, d.h, frame, peer)
                        frame = b""
                except _ZMQError:  # EAGAIN: drained (or the socket was closed meanwhile)
                    break
                if frame:
                    budget -= len(frame)
                    try:
                        deliver(frame, peer)
                    except Exception:
                        logger.exception("deliver() raised; frame dropped")
                elif not more:
                    self._malformed(f"empty frame from {peer}")
                    continue
                try:
                    if not _events(d.h) & _POLLIN:
                        break
                except _ZMQError:  # closed by deliver() (the peer was forgotten)
                    break
            else:
                self._loop.call_soon(self._on_dealer, d)  # type: ignore[union-attr]
        finally:
            self._flush_scheduled = scheduled
        # Answers delivered: the next message sent (likely the next request) leaves at once.
        self._sent_direct = False
        if self._dirty:
            self._flush()
        if d.blocked:
            try:
                ev = _events(d.h)
            except _ZMQError:
                return
            if ev & _POLLOUT:
                d.blocked = False
                self._recheck_dealer(d, self._send_dealer(d) > 0)

    def _read_attached(self, sock: Any, h: Any, head: bytes, route: Route) -> int:
        """The rest of a message of several parts whose first part (after a ROUTER's identity)
        was ``head``: deliver an attached message (two parts), drop any other shape as
        malformed. Returns the bytes read. ``sock`` is the pyzmq socket, ``h`` its token."""
        attachment, more = _recv_buffer(sock)
        size = len(head) + attachment.nbytes
        if more:
            while more:  # a message arrives whole: its other parts are already here
                part, more = _recv(h)
                size += len(part)
            self._malformed(f"message of more than two parts from {route!r}")
            return size
        deliver = self._deliver_attached
        if not head or deliver is None:
            self._malformed(f"unexpected message of two parts from {route!r}")
            return size
        try:
            deliver(head, attachment, route)
        except Exception:
            logger.exception("deliver_attached() raised; message dropped")
        return size

    def _malformed(self, what: str) -> None:
        self.malformed += 1
        now = self._loop.time()  # type: ignore[union-attr]
        if now - self._last_malformed_log >= _MALFORMED_LOG_INTERVAL:
            self._last_malformed_log = now
            logger.warning("dropped %s (%d malformed so far)", what, self.malformed)
        else:
            logger.debug("dropped %s", what)

    # ------------------------------------------------------------------ peers

    def _socket(self, kind: int, role: str) -> Any:
        sock = self._ctx.socket(kind)
        for opt, value in self._opts[role].items():
            sock.setsockopt(opt, value)
        return sock

    def _connect(self, peer: str, serverkey: bytes | None) -> tuple[Any, Any]:
        """A DEALER connected to ``peer`` (a CURVE client of ``serverkey`` if given) and its
        monitor; ``ValueError`` for an address zmq cannot connect to."""
        sock = self._socket(zmq.DEALER, "dealer")
        if serverkey is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, serverkey)
        # The monitor must exist before connect() or we would miss the first events.
        mon = sock.get_monitor_socket(_DOWN_EVENTS | _UP_EVENTS)
        try:
            sock.connect(peer)
        except zmq.ZMQError as exc:
            _close_pair(sock, mon)
            raise ValueError(f"bad peer address {peer!r}: {exc}") from exc
        return sock, mon

    def _open_dealer(self, peer: str) -> _Dealer | None:
        """Create the DEALER for ``peer`` (first send to it); ``None`` once closed."""
        if self._closed:
            return None
        if self._loop is None:
            raise RuntimeError("send() before start()")
        d = _Dealer(peer)
        if self._curve is None:
            self._use(d, *self._connect(peer, None))
        else:
            d.blocked = True  # frames wait in the outbox until the peer's key is known
            self._resolve(d, None)
        self._dealers[peer] = d
        return d

    def _use(self, d: _Dealer, sock: Any, mon: Any) -> None:
        """Make ``sock`` (with its monitor ``mon``) the DEALER that carries ``d``."""
        loop = self._loop
        assert loop is not None
        d.attach(sock, mon)
        loop.add_reader(d.fd, self._on_dealer, d)
        loop.add_reader(d.mon_fd, self._on_monitor, d)
        # connect() may already have consumed the edges announcing the first events.
        loop.call_soon(self._on_monitor, d)

    def _on_monitor(self, d: _Dealer) -> None:
        mon = d.mon
        if mon is None or mon.closed:
            return
        while True:
            try:
                msg = mon.recv_multipart(_NOBLOCK)
            except _Again:
                return
            except _ZMQError:
                return
            try:
                event = parse_monitor_message(msg)["event"]
            except Exception:  # pragma: no cover - libzmq always sends well-formed events
                continue
            if event & _HANDSHAKE_FAILED and self._curve is not None:
                # zmq does not retry a connection whose handshake failed for a protocol
                # reason, and a key that stopped working may belong to a former node
                if event & zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._refused(d)
                self._mark_down(d)
                if self._dealers.get(d.peer) is d:
                    known = d.serverkey if event & zmq.EVENT_HANDSHAKE_FAILED_AUTH else None
                    self._resolve_later(d, known)
                return
            if event & _DOWN_EVENTS:
                self._mark_down(d)
            elif event & _UP_EVENTS:
                d.down = False

    # -- keyed links: finding the peer's server key (see "Keyed links" above)

    def _refused(self, d: _Dealer) -> None:
        if not d.down and self._curve is not None:
            logger.warning(
                "%s refused our key %s: is it in that node's trust directory?",
                d.peer,
                self._curve.public.decode(),
            )

    def _resolve(self, d: _Dealer, only: bytes | None) -> None:
        """Start resolving ``d``'s key: try ``only``, else the key remembered for the peer,
        else every trusted key at once."""
        assert self._curve is not None and self._loop is not None
        d.retry = None
        known = only or self._server_keys.get(d.peer)
        keys = [known] if known is not None else sorted(self._curve.trusted)
        try:
            for key in keys:
                sock, mon = self._connect(d.peer, key)
                c = _Candidate(key, sock, mon)
                d.candidates.append(c)
                self._loop.add_reader(mon.FD, self._on_candidate, d, c)
                self._loop.call_soon(self._on_candidate, d, c)
        except ValueError:
            self._drop_candidates(d)
            raise

    def _resolve_later(self, d: _Dealer, only: bytes | None) -> None:
        """Close ``d``'s candidates and DEALER (frames stay queued) and resolve it again
        ``reconnect_ivl_max`` later: with ``only``, the key known to be the peer's, else
        afresh."""
        self._drop_candidates(d)
        self._detach(d)
        d.blocked = True
        d.serverkey = only
        if only is None:
            self._server_keys.pop(d.peer, None)
        if d.retry is None and not self._closed:
            d.retry = self._loop.call_later(  # type: ignore[union-attr]
                self._reconnect_max, self._resolve, d, only
            )

    def _drop_candidates(self, d: _Dealer, keep: _Candidate | None = None) -> None:
        for c in d.candidates:
            if c is not keep:
                self._close_candidate(c)
        d.candidates = []

    def _close_candidate(self, c: _Candidate) -> None:
        if c.sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(c.mon.FD)
        _close_pair(c.sock, c.mon)
        c.sock = c.mon = None

    def _on_candidate(self, d: _Dealer, c: _Candidate) -> None:
        while c.mon is not None:
            try:
                msg = c.mon.recv_multipart(_NOBLOCK)
            except _ZMQError:  # EAGAIN (or closed)
                return
            try:
                event = parse_monitor_message(msg)["event"]
            except Exception:  # pragma: no cover - libzmq always sends well-formed events
                continue
            if event & _UP_EVENTS:  # the server holds this key: it carries the peer now
                assert self._loop is not None
                self._loop.remove_reader(c.mon.FD)
                self._drop_candidates(d, keep=c)
                self._server_keys[d.peer] = d.serverkey = c.key
                self._use(d, c.sock, c.mon)
                d.down = False
                d.blocked = False
                self._send_dealer(d)
                self._recheck_dealer(d, True)
                return
            if event & zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                # the server holds this key but refuses ours: try it again later
                self._server_keys[d.peer] = c.key
                self._refused(d)
                self._mark_down(d)
                if self._dealers.get(d.peer) is d:
                    self._resolve_later(d, c.key)
                return
            if event & _HANDSHAKE_FAILED:  # not this key (or the server went mid-handshake)
                self._close_candidate(c)
                d.candidates.remove(c)
                if not d.candidates:
                    if not d.down:
                        logger.warning(
                            "no trusted key works for %s: is its public key in our trust "
                            "directory?",
                            d.peer,
                        )
                    self._mark_down(d)
                    if self._dealers.get(d.peer) is d:
                        self._resolve_later(d, None)
                return
            if event & _DOWN_EVENTS:  # refused or cut: nobody there (zmq keeps trying)
                self._mark_down(d)

    def _mark_down(self, d: _Dealer) -> None:
        if d.down:
            return
        d.down = True
        peer = d.peer
        logger.info("peer %s is down (%d bytes queued)", peer, d.nbytes)
        d.fail(NodeUnavailable(f"peer {peer} is down"))
        try:
            self._peer_down(peer)
        except Exception:
            logger.exception("peer_down() raised")


def _send_attached(h: Any, sock: Any, item: Attached) -> None:
    """Send the parts of an attached message on a socket (token ``h``, pyzmq socket ``sock``),
    after a ROUTER's identity part if one was sent. zmq checks the high-water mark on a
    message's first part only, so a part after it is never refused with EAGAIN."""
    chunk, attachment = item
    _send(h, chunk, _NOBLOCK_SNDMORE)
    _send_buffer(sock, attachment, _NOBLOCK)


def _close_pair(sock: Any, mon: Any) -> None:
    """Close a DEALER and its monitor."""
    with contextlib.suppress(zmq.ZMQError):
        sock.disable_monitor()
    mon.close(linger=0)
    sock.close(linger=0)


def _endpoint_error(exc: zmq.ZMQError, endpoint: str) -> Exception:
    """Map a bind failure onto the interface's errors (ValueError / OSError)."""
    if exc.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, errno.ENODEV):
        return ValueError(f"cannot bind {endpoint!r}: {exc}")
    return OSError(exc.errno, f"cannot bind {endpoint!r}: {exc}")
