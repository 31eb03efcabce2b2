"""Messaging: envelopes between nodes (as Orleans' Messaging center).

Owns the transport, the table of asks awaiting a reply, and the dispatch of incoming frames:
asks and tells go to the node's activations, replies and errors to the callers waiting on them,
control messages to the node. Everything that crosses the wire is encoded here with
``runtime.wire``; nothing here touches activations directly.

Malformed input never stops the node: a frame that fails to decode is answered (where the
transport knows a route back) with an ERROR envelope carrying ``ProtocolError``, logged, and
dropped; the node keeps serving every other caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from actors.errors import (
    ActorError,
    ActorTimeout,
    MessageTooLarge,
    NodeUnavailable,
    ProtocolError,
    RemoteError,
    SerializationError,
)
from runtime import wire
from runtime.transport import Attachment, Route, Transport
from runtime.wire import F_BODY, F_CORR, F_KIND

__all__ = ["Messaging", "RemoteReply", "Request", "ask_timeout"]

log = logging.getLogger("shoal.messaging")

#: Most malformed-frame warnings logged per second (the rest are counted).
_LOG_INTERVAL: Final = 1.0


class Request(Protocol):
    """A control request to a peer and its answer (``Calls.control``: the node's default
    timeout unless given): what components that talk to peers are handed."""

    def __call__(
        self, peer: str, op: str, body: Any, timeout: float | None = None
    ) -> Awaitable[Any]: ...


class _Pending:
    """An ask in flight to ``peer``: the future its caller awaits and, for an actor ask, when
    and how it times out (``expires`` on the loop clock, 0.0 if its caller keeps the time)."""

    __slots__ = ("expires", "fut", "handle", "key", "method", "peer", "timeout", "type_name")

    def __init__(
        self,
        fut: asyncio.Future[Any],
        peer: str,
        type_name: str,
        key: str,
        method: str,
        timeout: float,
    ) -> None:
        self.fut = fut
        self.peer = peer
        self.type_name = type_name
        self.key = key
        self.method = method
        self.timeout = timeout
        self.expires = 0.0
        self.handle: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """Fail the caller with ActorTimeout (its deadline passed without an answer)."""
        if not self.fut.done():
            self.fut.set_exception(ask_timeout(self.type_name, self.key, self.method, self.timeout))


def ask_timeout(type_name: str, key: str, method: str, timeout: float) -> ActorTimeout:
    """The error of an ask to ``type_name``/``key``.``method`` that got no answer in time."""
    return ActorTimeout(f"{type_name}/{key}.{method} did not answer within {timeout:g} s")


class RemoteReply:
    """The reply sink of an ask that came over the wire: settling it sends the answer back."""

    __slots__ = ("_corr", "_done", "_messaging", "_route")

    def __init__(self, messaging: Messaging, route: Route, corr: int) -> None:
        self._messaging = messaging
        self._route = route
        self._corr = corr
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        if self._done:
            return
        self._done = True
        m = self._messaging
        try:
            chunk = wire.encode_reply(self._corr, "", result, max_size=m.max_frame)
        except SerializationError as err:
            kind = MessageTooLarge if isinstance(err, MessageTooLarge) else SerializationError
            chunk = m.encode_error(self._corr, kind(f"result: {err}"))
        m.transport.reply(self._route, chunk)

    def set_exception(self, exception: BaseException, /) -> None:
        if self._done:
            return
        self._done = True
        m = self._messaging
        m.transport.reply(self._route, m.encode_error(self._corr, exception))

    def set_attached(self, result: list[Any], attachment: Attachment, /) -> None:
        """Answer with ``result`` and ``attachment`` appended to it, the attachment sent
        beside the reply's frame instead of inside it (``wire`` "Attached reply"): the
        caller's future gets ``[*result, memoryview]``. Keep ``attachment`` unchanged until
        it is sent."""
        if self._done:
            return
        self._done = True
        m = self._messaging
        size = attachment.nbytes if isinstance(attachment, memoryview) else len(attachment)
        try:
            chunk = wire.encode_attached_reply(self._corr, result, size, max_size=m.max_frame)
        except SerializationError as err:
            kind = MessageTooLarge if isinstance(err, MessageTooLarge) else SerializationError
            m.transport.reply(self._route, m.encode_error(self._corr, kind(f"result: {err}")))
            return
        m.transport.reply_attached(self._route, chunk, attachment)


class Messaging:
    """Sends envelopes to peers, matches replies to asks and dispatches what arrives."""

    __slots__ = (
        "_corr",
        "_last_expiry",
        "_last_log",
        "_on_control",
        "_on_request",
        "_pending",
        "_sweeper",
        "address",
        "dropped",
        "forged",
        "max_frame",
        "received",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        on_request: Callable[[list[Any], Route], None],
        on_control: Callable[[wire.Envelope, Route], None],
        max_frame: int = wire.DEFAULT_MAX_FRAME,
    ) -> None:
        self.transport = transport
        self.address = ""
        self.max_frame = max_frame
        self._on_request = on_request
        self._on_control = on_control
        self._pending: dict[int, _Pending] = {}
        # Deadlines of actor asks: an ask whose deadline is not earlier than the one before
        # it (every ask with the default timeout) is timed by one shared sweep over
        # ``_pending``, which is in insertion order and so in deadline order for those; any
        # other gets a timer of its own. A timer per ask would cost more than the rest of
        # sending it.
        self._sweeper: asyncio.TimerHandle | None = None
        self._last_expiry = 0.0
        # Correlation ids start at a random point (not guessable from outside), and a reply
        # counts only if it came from the peer its ask went to (see ``_claim``).
        self._corr = itertools.count(int.from_bytes(os.urandom(6), "big") + 1)
        self.forged = 0
        """Replies dropped because they came from another peer than the ask went to."""
        self._last_log = 0.0
        self.dropped = 0
        """Frames dropped as malformed."""
        self.received = [0] * 6
        """Envelopes received, by kind (index ``wire.ASK`` ... ``wire.CONTROL``)."""

    async def start(self, listen: str | None) -> str:
        """Start the transport; returns the bound address ("" for a client)."""
        self.address = await self.transport.start(
            listen, self.on_frame, self.on_peer_down, self.on_attached
        )
        return self.address

    async def close(self) -> None:
        """Fail every ask in flight and close the transport."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for p in list(self._pending.values()):
            if p.handle is not None:
                p.handle.cancel()
            if not p.fut.done():
                p.fut.set_exception(NodeUnavailable("the local node is stopping"))
        self._pending.clear()
        await self.transport.close()

    # -- sending --------------------------------------------------------------------------------

    def encode_error(self, corr: int, exc: BaseException) -> bytes:
        """An ERROR envelope answering ``corr`` with ``exc`` (its traceback if it has one)."""
        tb = exc.remote_traceback if isinstance(exc, RemoteError) else ""
        env = wire.Envelope(wire.ERROR, corr, body=wire.error_to_body(exc, tb))
        return wire.encode_envelope(env, max_size=self.max_frame)

    def request(
        self, peer: str, env: wire.Envelope, loop: asyncio.AbstractEventLoop
    ) -> tuple[int, asyncio.Future[Any]]:
        """Send an ASK; the future gets the reply (or the typed error). An answered ask is
        forgotten on arrival; a caller that stops waiting earlier (timeout, cancellation) must
        :meth:`forget` the correlation id. Encoding errors (``SerializationError``,
        ``MessageTooLarge``) raise here, before anything is sent."""
        corr = next(self._corr)
        env.corr = corr
        chunk = wire.encode_envelope(env, max_size=self.max_frame)
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[corr] = _Pending(fut, peer, "", "", "", 0.0)
        self.transport.send(peer, chunk)
        return corr, fut

    async def control(self, peer: str, op: str, body: Any, timeout: float) -> Any:
        """A CONTROL request to ``peer`` and its answer; ``ActorTimeout`` after ``timeout``
        seconds, the peer's typed error if it failed."""
        env = wire.Envelope(wire.CONTROL, 0, self.address, method=op, body=body)
        loop = asyncio.get_running_loop()
        corr, fut = self.request(peer, env, loop)
        # its pending entry keeps the time, as an ask's does (a timer, not asyncio.timeout:
        # a turn's first step runs outside any task); forget() cancels it
        p = self._pending[corr]
        p.type_name, p.key, p.method, p.timeout = "node", peer, op, timeout
        p.handle = loop.call_later(timeout, p.expire)
        try:
            return await fut
        finally:
            self.forget(corr)

    def ask(
        self,
        peer: str,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        hops: int,
        trace: int,
        loop: asyncio.AbstractEventLoop,
        expires: float,
        timeout: float,
        waits: list[Any] | None = None,
        sender: str = "",
    ) -> tuple[int, asyncio.Future[Any]]:
        """Send an ASK for an actor (the hot path of :meth:`request`); ``deadline`` is absolute
        wall-clock time (for the callee), ``expires`` the same instant on the loop clock, when
        the future fails with ActorTimeout (naming ``timeout``); ``waits``: what waits on the
        ask (``runtime.chains``); ``sender``: this node's address when an actor asks (the
        callee's affinity counts it), else empty (the connection is the route back). As with
        :meth:`request`, a caller that stops waiting before the answer must :meth:`forget`
        the correlation id."""
        corr = next(self._corr)
        chunk = wire.encode_request(
            wire.ASK,
            corr,
            sender,
            type_name,
            key,
            method,
            args,
            kwargs,
            deadline,
            hops,
            trace,
            max_size=self.max_frame,
            waits=waits,
        )
        fut: asyncio.Future[Any] = loop.create_future()
        p = self._pending[corr] = _Pending(fut, peer, type_name, key, method, timeout)
        if expires >= self._last_expiry:
            self._last_expiry = p.expires = expires
            if self._sweeper is None:
                self._sweeper = loop.call_at(expires, self._sweep, loop)
        else:
            p.handle = loop.call_at(expires, p.expire)
        self.transport.send(peer, chunk)
        return corr, fut

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out the swept asks whose deadline has passed; re-arm for the next one."""
        self._sweeper = None
        # Timers may fire up to half a millisecond early (uvloop's clock counts milliseconds):
        # what is due within a millisecond is due now, or the sweep would re-arm and spin.
        now = loop.time() + 0.001
        due = []
        for p in self._pending.values():
            if p.expires:
                if p.expires > now:
                    self._sweeper = loop.call_at(p.expires, self._sweep, loop)
                    break
                if not p.fut.done():
                    due.append(p)
        for p in due:
            p.expire()

    def tell(
        self,
        peer: str,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        hops: int,
        sender: str = "",
    ) -> None:
        """Send a TELL for an actor (``sender`` as for :meth:`ask`)."""
        chunk = wire.encode_request(
            wire.TELL,
            0,
            sender,
            type_name,
            key,
            method,
            args,
            kwargs,
            0.0,
            hops,
            0,
            max_size=self.max_frame,
        )
        self.transport.send(peer, chunk)

    def paced_tell(
        self,
        peer: str,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        hops: int,
        timeout: float,
        sender: str = "",
    ) -> asyncio.Future[Any]:
        """Send a TELL that asks to be acknowledged (a correlation id instead of 0): the
        future gets the answer once the receiver has queued it with room to spare in the
        actor's mailbox (its ``mailbox_limit`` if there was room at once, else None:
        ``runtime.calls``, paced tells), ``ActorTimeout`` after ``timeout`` seconds.
        Forgotten once settled."""
        corr = next(self._corr)
        chunk = wire.encode_request(
            wire.TELL,
            corr,
            sender,
            type_name,
            key,
            method,
            args,
            kwargs,
            0.0,
            hops,
            0,
            max_size=self.max_frame,
        )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        p = self._pending[corr] = _Pending(fut, peer, type_name, key, method, timeout)
        p.handle = loop.call_later(timeout, p.expire)
        fut.add_done_callback(lambda _: self.forget(corr))
        self.transport.send(peer, chunk)
        return fut

    def forget(self, corr: int) -> None:
        """Stop waiting for the reply to ``corr`` (answered, timed out or cancelled)."""
        p = self._pending.pop(corr, None)
        if p is not None and p.handle is not None:
            p.handle.cancel()

    def post(self, peer: str, env: wire.Envelope) -> None:
        """Send a TELL or CONTROL envelope (no reply expected)."""
        self.transport.send(peer, wire.encode_envelope(env, max_size=self.max_frame))

    # -- receiving ------------------------------------------------------------------------------

    def on_frame(self, frame: bytes, route: Route) -> None:
        """Transport callback: decode a frame and dispatch each envelope in it."""
        try:
            items = wire.decode_fields(frame, max_size=self.max_frame)
        except ProtocolError as err:
            self._malformed(err, route)
            return
        received = self.received
        for fields in items:
            kind = fields[F_KIND]
            received[kind] += 1
            if kind == wire.REPLY or kind == wire.ERROR:
                # Replies need no Envelope object: just their corr and body.
                corr = fields[F_CORR]
                pending = self._pending.pop(corr, None)  # answered: forgotten here
                if pending is None:
                    if kind == wire.ERROR and corr == 0:
                        log.warning("peer reported: %s", wire.body_to_error(fields[F_BODY]))
                    continue  # the caller gave up already
                if pending.peer != route:
                    self._forged(corr, pending, route)
                    continue
                if pending.handle is not None:
                    pending.handle.cancel()
                fut = pending.fut
                if fut.done():
                    continue  # timed out or cancelled, not yet forgotten
                if kind == wire.REPLY:
                    fut.set_result(fields[F_BODY])
                else:
                    fut.set_exception(wire.body_to_error(fields[F_BODY]))
            elif kind == wire.CONTROL:
                env = wire.envelope_of(fields)
                try:
                    self._on_control(env, route)
                except (ActorError, ValueError, TypeError, KeyError) as err:
                    log.warning("bad control message from %s: %s", env.sender or route, err)
            else:
                self._on_request(fields, route)

    def on_attached(self, frame: bytes, attachment: memoryview, route: Route) -> None:
        """Transport callback: an attached reply (``wire`` "Attached reply") arrived."""
        try:
            fields = wire.decode_attached(frame, attachment, max_size=self.max_frame)
        except ProtocolError as err:
            self._malformed(err, route)
            return
        self.received[wire.REPLY] += 1
        corr = fields[F_CORR]
        pending = self._pending.pop(corr, None)
        if pending is None:
            return  # the caller gave up already
        if pending.peer != route:
            self._forged(corr, pending, route)
            return
        if pending.handle is not None:
            pending.handle.cancel()
        if not pending.fut.done():
            pending.fut.set_result(fields[F_BODY])

    def _forged(self, corr: int, pending: _Pending, route: Route) -> None:
        """A reply to ``corr`` came from ``route``, not from the peer the ask went to: the
        ask keeps waiting for its real answer, and the forgery is dropped (logged at most
        once an interval)."""
        self._pending[corr] = pending  # (now last: a swept ask gets a timer of its own)
        if pending.expires and pending.handle is None:
            loop = pending.fut.get_loop()
            pending.handle = loop.call_at(pending.expires, pending.expire)
            pending.expires = 0.0
        self.forged += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            self._last_log = now
            log.warning(
                "dropped a reply from %r to an ask sent to %r (%d so far)",
                route,
                pending.peer,
                self.forged,
            )

    def _malformed(self, err: ProtocolError, route: Route) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_INTERVAL:
            self._last_log = now
            log.warning("dropped a malformed frame (%d so far): %s", self.dropped, err)
        with contextlib.suppress(SerializationError, MessageTooLarge):
            self.transport.reply(route, self.encode_error(0, err))

    def on_peer_down(self, peer: str) -> None:
        """Transport callback: fail every ask in flight to ``peer`` with NodeUnavailable."""
        for p in [p for p in self._pending.values() if p.peer == peer]:
            if not p.fut.done():
                p.fut.set_exception(NodeUnavailable(f"{peer} is unreachable"))
