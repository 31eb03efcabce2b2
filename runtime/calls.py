"""Outbound calls: asks and tells made on this node, to wherever the actor lives.

The hot path of a local ask is

    MethodRef.__call__ -> Calls.ask -> Catalog.get -> Activation.start_turn -> result

and a turn that does not suspend runs inline in the caller's task (see ``runtime.activation``).
A remote ask is ``Calls.ask -> Locator.direct -> Calls.remote_ask -> Messaging.ask``: no task,
one future. Where a call goes is the locator's answer (``runtime.locator``); this module
carries it there: deadlines (a nested ask inherits its turn's), call chains, redirects
(followed up to ``MAX_REDIRECTS``), and backpressure (a congested link makes askers wait and
tellers share one wait for it to drain).

Mailbox pushback (``runtime.activation``): an ask waits for room within its deadline and
then fails with ``Overloaded`` (nothing ran): a local one on the mailbox itself, a remote one
is refused by the receiver at once and asked again after a pause (1 ms, doubling up to 50 ms);
the same for a node at ``max_activations`` with none idle. A local tell to a full mailbox is
queued and returns what waits for room. A tell
to another node reaches the pushback through *paced tells*: every ``TELL_WINDOW``-th tell from
this node to one actor asks the receiver to acknowledge it, which the receiver does once the
actor's mailbox has room; the ``tell`` that sends the next paced tell while the one before is
still unacknowledged returns a wait for it. A sender that awaits its tells so has at most two
windows in flight per actor, and waits while the receiver's mailbox is full; one that does not
await them gets its tells dropped past ``2 * mailbox_limit`` on the receiver.

Messages that can no longer run where they were queued (an ended, superseded or moved
activation) come back here: :meth:`Calls.redeliver` and :meth:`Calls.reroute`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from actors.errors import ActorError, ActorTimeout, NodeUnavailable, Overloaded, UnknownActorType
from actors.ref import SENT
from runtime import wire
from runtime.activation import (
    DONE,
    RAISED,
    SCALARS,
    Activation,
    Host,
    check,
    check_args,
    new_chain,
)
from runtime.chains import deadlock, flatten, waiting
from runtime.context import TURN
from runtime.locator import PLACE
from runtime.mailbox import Message, ReplySink
from runtime.messaging import Messaging, RemoteReply, ask_timeout
from runtime.served import method_of

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.locator import Locator
    from runtime.served import Served

__all__ = ["MAX_REDIRECTS", "TELL_WINDOW", "TELL_WINDOWS", "Calls"]

#: Most redirects one ask follows. Members that disagree about the ring for a moment may send
#: an ask back and forth; the caller then waits a little before it follows the redirect again.
MAX_REDIRECTS: Final = 10

#: Every this many tells to one remote actor, one asks to be acknowledged once the actor's
#: mailbox has room (a paced tell); a sender has at most two windows unacknowledged. This is
#: the window until the receiver's first acknowledgement names its ``mailbox_limit``; then
#: it is an eighth of that, within ``TELL_WINDOWS`` (a sender that awaits its tells in a
#: tight loop waits for an acknowledgement once per window: bigger ones cost less).
TELL_WINDOW: Final = 128
TELL_WINDOWS: Final = (16, 1024)
#: Actors whose tells are counted for pacing, per type, before the counts start afresh.
_PACED_KEYS: Final = 65_536


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (nobody may await a tell's backpressure future)."""
    if not fut.cancelled():
        fut.exception()


def _expire(
    fut: asyncio.Future[Any], type_name: str, key: str, method: str, timeout: float
) -> None:
    if not fut.done():
        fut.set_exception(ask_timeout(type_name, key, method, timeout))


def _not_running() -> ActorError:
    return ActorError("the node is not running (use `async with Node()`)")


class Calls:
    """The outbound call path of one node: what references call (``ask``, ``tell``).

    ``closed`` is set when the node stops (references bound to it then use the current
    node); the cluster parts (``messaging``, ``locator``, ``cluster``) are wired by
    :meth:`connect` when a cluster member or client starts: without them calls are local."""

    __slots__ = (
        "_catalog",
        "_congested",
        "_hwm",
        "_paced",
        "_served",
        "_unacked",
        "_wall",
        "_windows",
        "address",
        "closed",
        "cluster",
        "default_timeout",
        "host",
        "locator",
        "messaging",
    )

    def __init__(
        self,
        host: Host,
        catalog: Catalog,
        served: Served,
        default_timeout: float,
        wall: Any,
    ) -> None:
        self.host = host
        self._catalog = catalog
        self._served = served
        self.default_timeout = default_timeout
        self._wall = wall
        self.closed = False
        self.address = ""
        self.messaging: Messaging | None = None
        self.locator: Locator | None = None
        self.cluster: Cluster | None = None
        self._hwm = 1 << 20
        self._congested: dict[str, asyncio.Future[None]] = {}
        #: tells to each remote actor before its next paced tell, by type name and key
        self._paced: dict[str, dict[str, int]] = {}
        #: the acknowledgement of the last paced tell to each actor, while it is awaited
        self._unacked: dict[tuple[str, str], asyncio.Future[Any]] = {}
        #: the pacing window toward each node, from the limit its acknowledgements name
        self._windows: dict[str, int] = {}

    @property
    def node(self) -> Any:
        """The node these calls are made on (``ActorRef.node``)."""
        return self.host.node

    def connect(self, messaging: Messaging, locator: Locator, cluster: Cluster) -> None:
        """Send across the cluster from now on."""
        self.messaging = messaging
        self.locator = locator
        self.cluster = cluster
        self.address = cluster.address
        self._hwm = messaging.transport.backlog_hwm

    # -- asks -----------------------------------------------------------------------------------

    def ask(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of an ask. When the locator sends it straight to another node, it is
        the remote ask itself (one coroutine less on the hot path); anything else (local
        actors, placement, unknown names, no quorum) is decided by :meth:`ask_any` when
        awaited."""
        locator = self.locator
        if locator is not None:
            host = locator.direct(self._served.known.get(type_name), type_name, key, method_name)
            if host is not None:
                return self.remote_ask(host, type_name, key, method_name, args, kwargs, timeout)
        return self.ask_any(type_name, key, method_name, args, kwargs, timeout)

    async def ask_any(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        """An ask, wherever the locator says it goes (placing the actor first if need be)."""
        atype = self._served.known.get(type_name)
        method = None if atype is None else method_of(atype, method_name)
        locator = self.locator
        if locator is not None:
            try:
                host = locator.outbound(atype, type_name, key)
            except NodeUnavailable:
                cluster = self.cluster
                if cluster is None or not cluster.lapsed():
                    raise
                # busy for longer than the lease: wait for a majority to answer, at most
                # until the call's deadline, rather than refuse
                wait = self.default_timeout if timeout is None else timeout
                await cluster.until_serving(self.host.loop.time() + wait)
                host = locator.outbound(atype, type_name, key)
            if host == PLACE and atype is not None:
                host = await locator.place(atype, key)
            if host is not None and host != self.address:
                return await self.remote_ask(
                    host, type_name, key, method_name, args, kwargs, timeout
                )
        if atype is None or method is None or self._served.get(type_name) is None:
            raise UnknownActorType(f"no actor type {type_name!r} is served here")
        host_env = self.host
        if host_env.check_serializable:
            # activation.plain, inline (this is the hot path of every local ask): plain
            # arguments need no encoding
            for arg in args:
                t = type(arg)
                if t is int:
                    if -0x8000000000000000 <= arg <= 0xFFFFFFFFFFFFFFFF:  # INT_MIN, INT_MAX
                        continue
                elif t is str:
                    if arg.isascii():
                        continue
                elif t in SCALARS:
                    continue
                check((args, kwargs), "arguments")
                break
            else:
                if kwargs:
                    check((args, kwargs), "arguments")
        if timeout is None:
            timeout = self.default_timeout
        try:
            act = self._catalog.activation(atype, key)
        except Overloaded as err:  # at max_activations, none idle: ask again in a moment
            until = host_env.loop.time() + timeout
            await self._pause(err, 3, until)
            left = until - host_env.loop.time()
            return await self.ask_any(type_name, key, method_name, args, kwargs, left)
        deadline = host_env.loop.time() + timeout
        turn = TURN.get()
        if turn is None:
            chain = 0
        else:
            chain = turn[1]
            if 0.0 < turn[2] < deadline:
                deadline = turn[2]
            affinity = turn[0].affinity
            if affinity is not None:
                affinity.sent(self.address)
        if act.can_run_now(chain):
            outcome, waiter = act.start_turn(method, args, kwargs, chain, deadline, None, turn)
            if outcome == DONE:
                if host_env.check_serializable:
                    t = type(waiter)
                    if not (
                        (t is int and -0x8000000000000000 <= waiter <= 0xFFFFFFFFFFFFFFFF)
                        or t in SCALARS
                        or (t is str and waiter.isascii())
                    ):
                        check(waiter, "result")
                return waiter
            if outcome == RAISED:
                raise waiter
        else:
            if turn is not None:  # asked from a turn: would it wait for itself?
                cycle = deadlock(act, turn, chain, self._served.known)
                if cycle is not None:
                    raise cycle
            if act.full():  # wait for room, within the deadline, then ask again
                await self._room(act, deadline)
                left = deadline - host_env.loop.time()
                return await self.ask_any(type_name, key, method_name, args, kwargs, left)
            waiter = host_env.loop.create_future()
            act.enqueue(Message(method, args, kwargs, waiter, deadline, chain, turn))
        return await self.wait(waiter, deadline, timeout, type_name, key, method_name)

    async def _room(self, act: Activation, deadline: float) -> None:
        """Wait until ``act``'s mailbox has room (or ``act`` ended); ``Overloaded`` if it is
        still full at ``deadline``."""
        room = act.room()
        await asyncio.wait({room}, timeout=max(0.0, deadline - self.host.loop.time()))
        if not room.done():
            raise act.overloaded()

    async def _pause(self, err: Overloaded, attempt: int, deadline: float) -> None:
        """Back off before asking again after ``err`` (1 ms, doubling up to 50 ms); raise
        ``err`` instead if the deadline would pass meanwhile."""
        pause = min(0.001 * (1 << attempt), 0.05)
        if self.host.loop.time() + pause >= deadline:
            raise err
        await asyncio.sleep(pause)

    async def remote_ask(
        self,
        host: str,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        chain: int = 0,
        deadline: float = 0.0,
        waits: list[Any] | None = None,
    ) -> Any:
        """An ask sent to ``host``, following redirects (each one teaches the locator).
        Asked from a turn, it carries what waits on it, and counts as outstanding for the
        turn's activation while it waits (``runtime.chains``)."""
        if not self.host.running:
            raise _not_running()
        loop = self.host.loop
        if timeout is None:
            timeout = self.default_timeout
        now = loop.time()
        asking: Activation | None = None
        turn = TURN.get()
        sender = "" if turn is None else self.address  # an actor asks: its callee counts it
        if not deadline:
            deadline = now + timeout
            if turn is not None:
                chain = turn[1]
                if 0.0 < turn[2] < deadline:
                    deadline = turn[2]
                asking = turn[0]
                affinity = asking.affinity
                if affinity is not None:
                    affinity.sent(host)
                waits = flatten(turn)
        if not chain:
            chain = new_chain()
        messaging, locator = self.messaging, self.locator
        assert messaging is not None and locator is not None
        wall_deadline = self._wall() + (deadline - now)  # absolute: it survives hops
        visited: list[str] | None = None  # made on the first redirect: none on the hot path
        if asking is not None:
            waiting(asking, type_name, key, 1)
        try:
            hops = refused = 0
            while hops <= MAX_REDIRECTS:
                if messaging.transport.backlog(host) >= self._hwm:
                    await self._drained(host, deadline)
                corr, fut = messaging.ask(
                    host,
                    type_name,
                    key,
                    method_name,
                    args,
                    kwargs,
                    wall_deadline,
                    hops,
                    chain,
                    loop,
                    deadline,
                    timeout,
                    waits,
                    sender,
                )
                try:
                    return await fut  # an answered ask is forgotten by Messaging
                except Overloaded as err:  # nothing was queued there: ask again in a moment
                    await self._pause(err, refused, deadline)
                    refused += 1
                    continue
                except wire.Redirect as redirect:
                    hops += 1
                    if visited is None:
                        visited = []
                    visited.append(host)
                    host = str(redirect)
                    locator.learned(type_name, key, host)
                    if host in visited:
                        # Sent back: the two disagree about the ring until gossip reaches one of
                        # them. Give it a moment (growing) before following the redirect again.
                        pause = min(0.005 * (1 << visited.count(host)), 0.2)
                        if loop.time() + pause >= deadline:
                            raise ask_timeout(type_name, key, method_name, timeout) from None
                        await asyncio.sleep(pause)
                    if host == self.address:
                        return await self.ask_any(
                            type_name, key, method_name, tuple(args), kwargs, timeout
                        )
                except BaseException:  # timed out or cancelled: stop waiting for the answer
                    messaging.forget(corr)
                    raise
            raise NodeUnavailable(
                f"{type_name}/{key} could not be located in {MAX_REDIRECTS} redirects"
            )
        finally:
            if asking is not None:
                waiting(asking, type_name, key, -1)

    async def _drained(self, peer: str, deadline: float) -> None:
        assert self.messaging is not None
        try:
            async with asyncio.timeout_at(deadline):
                await self.messaging.transport.drained(peer)
        except TimeoutError:
            raise ActorTimeout(f"the link to {peer} stayed congested until the deadline") from None

    async def wait(
        self,
        waiter: asyncio.Future[Any],
        deadline: float,
        timeout: float,
        type_name: str,
        key: str,
        method_name: str,
    ) -> Any:
        """``waiter``'s result, or ``ActorTimeout`` at ``deadline`` (loop clock)."""
        if waiter.done():
            return waiter.result()
        handle = self.host.loop.call_at(
            deadline, _expire, waiter, type_name, key, method_name, timeout
        )
        try:
            return await waiter
        finally:
            handle.cancel()

    async def control(self, peer: str, op: str, body: Any, timeout: float | None = None) -> Any:
        """A control request to ``peer`` (default timeout: the node's); see ``Messaging``."""
        messaging = self.messaging
        if messaging is None:
            raise NodeUnavailable(f"{peer} cannot be reached from an embedded node")
        return await messaging.control(
            peer, op, body, self.default_timeout if timeout is None else timeout
        )

    # -- tells ----------------------------------------------------------------------------------

    def tell(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[None]:
        """Send a tell; what it returns waits while the link is congested (``Sent``)."""
        served = self._served
        atype = served.known.get(type_name)
        locator = self.locator
        if atype is not None and locator is None:
            # Fast path: an embedded node telling an actor that is active (no stateless pool),
            # with arguments that need no check (activation.plain_args, inline)
            if self.host.check_serializable:
                if kwargs:
                    return self._tell_slow(atype, type_name, key, method_name, args, kwargs)
                for arg in args:
                    t = type(arg)
                    if t is int:
                        if -0x8000000000000000 <= arg <= 0xFFFFFFFFFFFFFFFF:
                            continue
                    elif t is str:
                        if arg.isascii():
                            continue
                    elif t in SCALARS:
                        continue
                    return self._tell_slow(atype, type_name, key, method_name, args, kwargs)
            table = self._catalog.by_type.get(type_name)
            act = None if table is None else table.get(key)
            method = atype.methods.get(method_name)
            if type(act) is Activation and method is not None and served.names is None:
                act.enqueue(Message(method, args, kwargs, None, 0.0, 0))
                if len(act.queue) > self.host.mailbox_limit:  # type: ignore[arg-type]
                    return act.room()  # queued all the same: a local tell is never dropped
                return SENT
        return self._tell_slow(atype, type_name, key, method_name, args, kwargs)

    def _tell_slow(
        self,
        atype: ActorType | None,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[None]:
        """:meth:`tell` past its fast path: placed, sent, checked, activated."""
        served = self._served
        locator = self.locator
        method = None if atype is None else method_of(atype, method_name)
        if locator is not None:
            host = locator.outbound(atype, type_name, key)
            if host == PLACE and atype is not None:
                self.host.loop.create_task(
                    self._tell_when_placed(atype, key, method_name, args, kwargs)
                )
                return SENT
            if host is not None:
                return self.remote_tell(host, type_name, key, method_name, args, kwargs)
        if method is None or atype is None or served.get(type_name) is None:
            raise UnknownActorType(f"no actor type {type_name!r} is served here")
        if self.host.check_serializable:
            check_args(args, kwargs)
        act = self._catalog.activation(atype, key)
        act.enqueue(Message(method, args, kwargs, None, 0.0, 0))
        if len(act.queue) > self.host.mailbox_limit:  # type: ignore[arg-type]
            return act.room()
        return SENT

    async def _tell_when_placed(
        self,
        atype: ActorType,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        assert self.locator is not None
        try:
            host = await self.locator.place(atype, key)
            if host != self.address:
                self.remote_tell(host, atype.name, key, method_name, args, kwargs)
            else:
                self.tell(atype.name, key, method_name, args, kwargs)
        except ActorError as err:
            self.host.tell_dropped(atype.name, key, method_name, err)

    def remote_tell(
        self,
        host: str,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        hops: int = 0,
    ) -> Awaitable[None]:
        """Send a tell to ``host`` (``hops``: how often it was forwarded already)."""
        if not self.host.running:
            raise _not_running()
        messaging = self.messaging
        assert messaging is not None
        turn = TURN.get()
        sender = "" if turn is None else self.address  # an actor tells: its callee counts it
        counts = self._paced.get(type_name)
        if counts is None:
            counts = self._paced[type_name] = {}
        left = counts.get(key)  # tells before the next paced one
        paced: Awaitable[None] | None = None
        if left is None:
            if len(counts) >= _PACED_KEYS:
                counts.clear()
            left = self._windows.get(host, TELL_WINDOW)
        if left > 1:
            counts[key] = left - 1
            messaging.tell(host, type_name, key, method_name, args, kwargs, hops, sender)
        else:
            counts[key] = self._windows.get(host, TELL_WINDOW)
            paced = self._paced_tell(host, type_name, key, method_name, args, kwargs, hops, sender)
        if turn is not None:
            affinity = turn[0].affinity
            if affinity is not None:
                affinity.sent(host)
        if paced is not None:
            return paced
        if messaging.transport.backlog(host) < self._hwm:
            return SENT
        # Congested: every teller to this peer shares one wait for the backlog to drain.
        waiter = self._congested.get(host)
        if waiter is None or waiter.done():
            waiter = asyncio.ensure_future(messaging.transport.drained(host))
            waiter.add_done_callback(_retrieve)
            self._congested[host] = waiter
        return waiter

    def _paced_tell(
        self,
        host: str,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        hops: int,
        sender: str = "",
    ) -> Awaitable[None] | None:
        """Send a tell that asks to be acknowledged once the actor's mailbox has room; return
        the wait for the one before it if that is still unacknowledged (None otherwise)."""
        messaging = self.messaging
        assert messaging is not None
        ack = messaging.paced_tell(
            host, type_name, key, method_name, args, kwargs, hops, self.default_timeout, sender
        )
        ack.add_done_callback(_retrieve)
        ack.add_done_callback(lambda f: self._learn_window(host, f))
        ident = (type_name, key)
        unacked = self._unacked
        before = unacked.get(ident)
        unacked[ident] = ack
        ack.add_done_callback(lambda f: _forget_ack(unacked, ident, f))
        if before is not None and not before.done():
            return before
        return None

    def _learn_window(self, host: str, ack: asyncio.Future[Any]) -> None:
        """An acknowledgement given at once names the receiver's ``mailbox_limit``."""
        if ack.cancelled() or ack.exception() is not None:
            return
        limit = ack.result()
        if isinstance(limit, int) and not isinstance(limit, bool):
            low, high = TELL_WINDOWS
            self._windows[host] = max(low, min(high, limit // 8))

    # -- messages that must run elsewhere -------------------------------------------------------

    def redeliver(self, msg: Message, atype: ActorType, key: str) -> None:
        """Hand a message left behind by a deactivated activation to its next activation: a
        fresh one here, or (leaving, no quorum, moved) wherever the actor now lives."""
        reply = msg.reply
        if reply is not None and reply.done():
            return
        cluster = self.cluster
        if cluster is not None and self.host.running and not cluster.serving():
            self.reroute(msg, atype, key)
            return
        try:
            act = self._catalog.activation(atype, key)
        except ActorError as err:
            if reply is not None:
                reply.set_exception(err)
            else:
                self.host.tell_dropped(atype.name, key, msg.method.name, err)
            return
        act.enqueue(msg)

    def reroute(self, msg: Message, atype: ActorType, key: str, host: str | None = None) -> None:
        """Send a message that can no longer run here to ``host`` (default: the owner on the
        ring without this node): a remote caller is redirected, a local one re-asks there, a
        tell is forwarded."""
        reply = msg.reply
        if host is None:
            assert self.cluster is not None
            host = self.cluster.successor(atype, key)
        if host is None:
            if reply is not None:
                reply.set_exception(NodeUnavailable(f"no other member can host {atype.name}/{key}"))
            return
        if reply is None:
            self.remote_tell(host, atype.name, key, msg.method.name, msg.args, msg.kwargs, 1)
        elif isinstance(reply, RemoteReply):
            reply.set_exception(wire.Redirect(host))
        else:
            loop = self.host.loop
            task = loop.create_task(
                self.remote_ask(
                    host,
                    atype.name,
                    key,
                    msg.method.name,
                    msg.args,
                    msg.kwargs,
                    None,
                    msg.chain,
                    msg.deadline or loop.time() + self.default_timeout,
                    flatten(msg.waits) or None,
                )
            )
            task.add_done_callback(lambda t: _chain_future(t, reply))


def _forget_ack(
    unacked: dict[tuple[str, str], asyncio.Future[Any]],
    ident: tuple[str, str],
    ack: asyncio.Future[Any],
) -> None:
    if unacked.get(ident) is ack:
        del unacked[ident]


def _chain_future(task: asyncio.Task[Any], reply: ReplySink) -> None:
    if reply.done():
        if not task.cancelled():
            task.exception()
        return
    if task.cancelled():
        reply.set_exception(ActorError("the rerouted call was cancelled"))
    elif task.exception() is not None:
        reply.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        reply.set_result(task.result())
