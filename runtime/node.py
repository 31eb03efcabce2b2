"""The node: the process-level runtime that hosts activations and routes messages.

``Node()`` with no ``listen`` and no ``seeds`` is the embedded runtime: one process, no
network, messages passed as objects. The hot path of a local ask is

    MethodRef.__call__ -> Node._ask -> Catalog.get -> Activation.start_turn -> result

and a turn that does not suspend runs inline in the caller's task (see ``runtime.activation``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from collections.abc import Awaitable, Coroutine, Iterable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Any, Final

from actors.data import DataRef
from actors.decorator import ActorType, registered_types
from actors.errors import (
    ActorError,
    ActorTimeout,
    NodeUnavailable,
    SerializationError,
    UnknownActorType,
    UnknownMethod,
)
from actors.ref import SENT, ActorRef, type_name_of
from router.swim import SwimConfig
from runtime import migration, wire
from runtime.activation import (
    DONE,
    NO_REPLY,
    RAISED,
    Activation,
    log_tell_failure,
    new_chain,
)
from runtime.catalog import Catalog
from runtime.clock import Clock
from runtime.cluster import MAX_HOPS, MAX_REDIRECTS, Cluster
from runtime.context import NODE, TURN, node_started, node_stopped
from runtime.datastore import DataStore
from runtime.mailbox import Message, ReplySink
from runtime.messaging import Messaging, RemoteReply, ask_timeout
from runtime.transport import DEFAULT_MAX_FRAME_BYTES, Route, Transport
from runtime.wire import (
    F_ARGS,
    F_CORR,
    F_DEADLINE,
    F_KEY,
    F_KIND,
    F_KWARGS,
    F_METHOD,
    F_TRACE,
    F_TYPE,
)

__all__ = ["Node"]

log = logging.getLogger("shoal.node")


def _ref_from_wire(data: Any) -> ActorRef:
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        raise ValueError("an actor reference is [type_name, key]")
    return ActorRef(data[0], data[1])


def _data_ref_from_wire(data: Any) -> DataRef:
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        raise ValueError("a data reference is [key, node]")
    return DataRef(data[0], data[1])


# Ext codes 0..15 are shoal's own; users' registered types take 16..127.
wire.register(ActorRef, 1, lambda r: [r.type_name, r.key], _ref_from_wire)
wire.register(DataRef, 2, lambda r: [r.key, r.node], _data_ref_from_wire)

DEFAULT_TIMEOUT: Final = 30.0
#: Seconds a starting node keeps trying its seeds before it gives up.
DEFAULT_JOIN_TIMEOUT: Final = 10.0
#: Seconds ``stop()`` lets running turns finish before it cancels them.
DEFAULT_STOP_GRACE: Final = 5.0
_node_ids = itertools.count(1)
#: The in-process network that ``mem://`` nodes share unless given a transport.
_MEMORY_NETWORK: Any = None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (nobody may await a tell's backpressure future)."""
    if not fut.cancelled():
        fut.exception()


def _expire(
    fut: asyncio.Future[Any], type_name: str, key: str, method: str, timeout: float
) -> None:
    if not fut.done():
        fut.set_exception(ask_timeout(type_name, key, method, timeout))


class Node:
    """A shoal node. Use as ``async with Node(...) as node``.

    Parameters:
        listen: endpoint to serve on (``tcp://HOST:PORT``, port 0 for any); None = embedded.
        seeds: endpoints of cluster members to join through.
        storage: state storage URL (``sqlite:///path``); takes effect with the storage issue.
        resources: what this node offers to actors' ``resources`` requirements.
        default_timeout: the deadline of an ask, in seconds, unless the call gives one.
        check_serializable: reject local arguments and results that could not cross the wire
            with ``SerializationError`` (costs an encode per call; the test suite turns it on).
        serve: the actor types this node hosts (classes or names); default: every ``@actor``
            class imported in the process (for a cluster member, those imported by ``start``).
            ``serve=()`` makes a pure client.
        transport: the transport to use (default: ZeroMQ for ``tcp://``/``ipc://``, the
            process-wide in-memory network for ``mem://``).
        max_frame_size: the largest frame sent or accepted, in bytes (default 64 MiB).
        join_timeout: how long ``start`` keeps trying the seeds.
        clock: wall-clock time and randomness (``runtime.clock.Clock``); a simulator passes
            one that follows its virtual-time loop. Default: the system's.
        data_limit: the most bytes of ``data.put`` payloads held in memory (default: no
            limit); beyond it they spill to ``data_spill_dir`` or ``put`` fails with
            ``DataLimitExceeded``. See ``runtime.datastore``.
        data_spill_dir: a directory for payloads beyond ``data_limit`` (the node makes one of
            its own inside it, removed when it stops).

    A member without ``listen`` but with ``seeds`` is a client: it sends to the cluster and
    hosts nothing.
    """

    def __init__(
        self,
        listen: str | None = None,
        seeds: Sequence[str] = (),
        *,
        storage: str | None = None,
        resources: Mapping[str, float] | None = None,
        default_timeout: float = DEFAULT_TIMEOUT,
        check_serializable: bool = False,
        serve: Iterable[type | str] | None = None,
        transport: Transport | None = None,
        max_frame_size: int = wire.DEFAULT_MAX_FRAME,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT,
        clock: Clock | None = None,
        data_limit: int | None = None,
        data_spill_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not default_timeout > 0:
            raise ValueError("default_timeout must be positive")
        if listen is None and not seeds and transport is not None:
            raise ValueError("a transport needs listen= or seeds=")
        self.listen = listen
        self.seeds = list(seeds)
        self.storage = storage
        self.resources: dict[str, float] = dict(resources or {})
        self.default_timeout = float(default_timeout)
        self.check_serializable = check_serializable
        self._id = next(_node_ids)
        self._address = f"local://node-{self._id}"
        self._types: Mapping[str, ActorType] = registered_types()
        self._catalog = Catalog(self)
        self._data = DataStore(self._address, data_limit, data_spill_dir, max_frame_size)
        self._turn_tasks: set[asyncio.Task[Any]] = set()
        self.stop_grace = DEFAULT_STOP_GRACE
        self._tick = 0
        self._running = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._ctx_token: Token[Node | None] | None = None
        self._serve = None if serve is None else frozenset(type_name_of(t) for t in serve)
        self._transport = transport
        self.max_frame_size = max_frame_size
        self.join_timeout = join_timeout
        self._clock = clock if clock is not None else Clock()
        self._wall = self._clock.wall
        self._messaging: Messaging | None = None
        self._cluster: Cluster | None = None
        self.swim_config: SwimConfig | None = None
        self._hwm = 1 << 20
        self._congested: dict[str, asyncio.Future[None]] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The endpoint this node serves on (``local://...`` for an embedded node)."""
        return self._address

    async def start(self) -> Node:
        """Start serving (and join the cluster through ``seeds``). ``async with`` calls it."""
        if self._running:
            return self
        if self._closed:
            raise ActorError("a stopped node cannot be started again")
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            if self.listen is not None or self.seeds:
                await self._start_cluster()
        except BaseException:
            self._running = False
            self._closed = True
            if self._messaging is not None:
                await self._messaging.close()
            raise
        node_started(self)
        return self

    async def stop(self) -> None:
        """Leave: let running turns finish (up to ``stop_grace`` seconds, then cancel them);
        on a cluster hand every activation, state included, to its new owner and announce
        the leave; otherwise deactivate every activation (``on_deactivate`` runs)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._running:
                if self._turn_tasks:
                    _, late = await asyncio.wait(set(self._turn_tasks), timeout=self.stop_grace)
                    for task in late:
                        task.cancel()
                    if late:
                        await asyncio.wait(late)
                if self._cluster is not None:
                    await self._cluster.leave(self.stop_grace)
                    await self._cluster.close()
                await self._catalog.close()
        finally:
            self._running = False
            node_stopped(self)
            if self._messaging is not None:
                await self._messaging.close()
            await self._data.close()

    async def __aenter__(self) -> Node:
        await self.start()
        self._ctx_token = NODE.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            if self._ctx_token is not None:
                try:
                    NODE.reset(self._ctx_token)
                except ValueError:  # exited in another context than entered
                    NODE.set(None)
                self._ctx_token = None

    def __repr__(self) -> str:
        return f"<Node {self._address} activations={self._catalog.count}>"

    # -- references and inspection --------------------------------------------------------------

    def ref(self, target: type | str, key: str) -> ActorRef:
        """A reference to actor ``target`` (an ``@actor`` class or its name) with ``key``."""
        return ActorRef(type_name_of(target), key, self)

    @property
    def activation_count(self) -> int:
        """How many activations this node hosts now."""
        return self._catalog.count

    async def locate(self, ref: ActorRef) -> str | None:
        """The address of the node hosting ``ref``'s activation, or None if it is not active.
        Asks where this node would send the actor's messages, then its owner."""
        if self._catalog.lookup(ref.type_name, ref.key) is not None:
            return self._address
        cluster = self._cluster
        if cluster is None:
            return None
        places = [cluster.route(ref.type_name, ref.key), cluster.owner(ref.type_name, ref.key)]
        for host in dict.fromkeys(places):
            if host == self._address:
                entry = cluster.directory.lookup(ref.type_name, ref.key)
                answer: Any = entry.host if entry is not None else None
            else:
                answer = await self._control_request(host, "locate", [ref.type_name, ref.key])
            if isinstance(answer, str):
                return answer
        return None

    @property
    def members(self) -> list[str]:
        """Addresses of the hosting cluster members this node knows (itself included)."""
        if self._cluster is None:
            return [self._address]
        return sorted(a for a, m in self._cluster.membership.members.items() if m.types)

    async def migrate(self, ref: ActorRef, to: str) -> None:
        """Move ``ref``'s activation to the member at ``to``, state included, losing no
        message: messages that arrive meanwhile wait and then follow it. An actor that is not
        active is activated at ``to``. Stateless workers are not moved. See
        ``runtime.migration``."""
        await migration.migrate(self, ref, to)

    async def _data_put(self, key: str, payload: Any) -> DataRef:
        return await self._data.put(key, payload)

    async def _data_get(self, ref: DataRef) -> Any:
        return await self._data.get(ref)

    async def _data_delete(self, key: str) -> bool:
        return await self._data.delete(key)

    async def deactivate_idle(self) -> int:
        """Deactivate now every activation that has been idle for its ``idle_after``."""
        return await self._catalog.collect_idle()

    # -- the hot path ---------------------------------------------------------------------------

    def _served(self, type_name: str) -> ActorType | None:
        """The actor type if this node hosts it."""
        atype = self._types.get(type_name)
        if atype is None or (self._serve is not None and type_name not in self._serve):
            return None
        return atype

    def _method(self, atype: ActorType, method_name: str) -> Any:
        method = atype.methods.get(method_name)
        if method is None:
            raise UnknownMethod(
                f"{atype.name} has no public method {method_name!r}"
                + (" (names starting with '_' are private)" if method_name.startswith("_") else "")
            )
        return method

    def _activation(self, atype: ActorType, key: str) -> Activation:
        if not self._running:
            raise ActorError("the node is not running (use `async with Node()`)")
        act = self._catalog.get(atype, key)
        if act is None:
            cluster = self._cluster
            if cluster is None:
                act = self._catalog.activate(atype, key)
            else:
                act = self._catalog.activate(atype, key, cluster.new_epoch())
                cluster.activated(act)
        return act

    def _ask(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Coroutine[Any, Any, Any]:
        """The coroutine of an ask. When the ring sends the actor to another node and it is
        not active here, it is the remote ask itself (one coroutine less on the hot path), and
        deciding that has no side effect; anything else (local actors, placement, unknown
        names, no quorum) is decided by :meth:`_ask_any` when awaited."""
        cluster = self._cluster
        if cluster is not None:
            atype = self._types.get(type_name)
            active = self._catalog._by_type.get(type_name)
            if atype is None or (
                method_name in atype.methods
                and (active is None or key not in active)
                and atype.placement != "local"
            ):
                try:
                    host = cluster.route(type_name, key)
                except ActorError:
                    host = self._address  # raised again by _ask_any, when awaited
                # (a closed gate: no quorum, or a stall to notice first; _ask_any decides)
                if host != self._address and self._loop.time() < cluster.open_until:
                    return self._remote_ask(
                        host, type_name, key, method_name, args, kwargs, timeout
                    )
        return self._ask_any(type_name, key, method_name, args, kwargs, timeout)

    async def _ask_any(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        atype = self._types.get(type_name)
        method = None if atype is None else self._method(atype, method_name)
        if self._cluster is not None:
            host = self._elsewhere(atype, type_name, key)
            if host == "" and atype is not None:
                host = await self._cluster.place(atype, key)
            if host is not None and host != self._address:
                return await self._remote_ask(
                    host, type_name, key, method_name, args, kwargs, timeout
                )
        if atype is None or method is None or self._served(type_name) is None:
            raise UnknownActorType(f"no actor type {type_name!r} is served here")
        if self.check_serializable:
            self._check((args, kwargs), "arguments")
        act = self._activation(atype, key)
        if timeout is None:
            timeout = self.default_timeout
        deadline = self._loop.time() + timeout
        turn = TURN.get()
        if turn is None:
            chain = 0
        else:
            chain = turn[1]
            if 0.0 < turn[2] < deadline:
                deadline = turn[2]
        if act.can_run_now(chain):
            outcome, waiter = act.start_turn(method, args, kwargs, chain, deadline, None)
            if outcome == DONE:
                if self.check_serializable:
                    self._check(waiter, "result")
                return waiter
            if outcome == RAISED:
                raise waiter
        else:
            waiter = self._loop.create_future()
            act.enqueue(Message(method, args, kwargs, waiter, deadline, chain))
        return await self._wait(waiter, deadline, timeout, type_name, key, method_name)

    async def _remote_ask(
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
    ) -> Any:
        if not self._running:
            raise ActorError("the node is not running (use `async with Node()`)")
        loop = self._loop
        if timeout is None:
            timeout = self.default_timeout
        now = loop.time()
        if not deadline:
            deadline = now + timeout
            turn = TURN.get()
            if turn is not None:
                chain = turn[1]
                if 0.0 < turn[2] < deadline:
                    deadline = turn[2]
        if not chain:
            chain = new_chain()
        messaging, cluster = self._messaging, self._cluster
        assert messaging is not None and cluster is not None
        wall_deadline = self._wall() + (deadline - now)  # absolute: it survives hops
        visited: list[str] | None = None  # made on the first redirect: none on the hot path
        for hops in range(MAX_REDIRECTS + 1):
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
            )
            try:
                return await fut  # an answered ask is forgotten by Messaging
            except wire.Redirect as redirect:
                if visited is None:
                    visited = []
                visited.append(host)
                host = str(redirect)
                cluster.learned(type_name, key, host)
                if host in visited:
                    # Sent back: the two disagree about the ring until gossip reaches one of
                    # them. Give it a moment (growing) before following the redirect again.
                    pause = min(0.005 * (1 << visited.count(host)), 0.2)
                    if loop.time() + pause >= deadline:
                        raise ask_timeout(type_name, key, method_name, timeout) from None
                    await asyncio.sleep(pause)
                if host == self._address:
                    return await self._ask_any(
                        type_name, key, method_name, tuple(args), kwargs, timeout
                    )
            except BaseException:  # timed out or cancelled: stop waiting for the answer
                messaging.forget(corr)
                raise
        raise NodeUnavailable(
            f"{type_name}/{key} could not be located in {MAX_REDIRECTS} redirects"
        )

    async def _drained(self, peer: str, deadline: float) -> None:
        assert self._messaging is not None
        try:
            async with asyncio.timeout_at(deadline):
                await self._messaging.transport.drained(peer)
        except TimeoutError:
            raise ActorTimeout(f"the link to {peer} stayed congested until the deadline") from None

    async def _wait(
        self,
        waiter: asyncio.Future[Any],
        deadline: float,
        timeout: float,
        type_name: str,
        key: str,
        method_name: str,
    ) -> Any:
        if waiter.done():
            return waiter.result()
        handle = self._loop.call_at(deadline, _expire, waiter, type_name, key, method_name, timeout)
        try:
            return await waiter
        finally:
            handle.cancel()

    def _tell(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[None]:
        atype = self._types.get(type_name)
        if atype is not None and self._cluster is None and not self.check_serializable:
            # Fast path: an embedded node telling an actor that is active (no stateless pool).
            table = self._catalog._by_type.get(type_name)
            act = None if table is None else table.get(key)
            method = atype.methods.get(method_name)
            if type(act) is Activation and method is not None and self._serve is None:
                act.enqueue(Message(method, args, kwargs, None, 0.0, 0))
                return SENT
        method = None if atype is None else self._method(atype, method_name)
        if self._cluster is not None:
            host = self._elsewhere(atype, type_name, key)
            if host == "" and atype is not None:
                self._loop.create_task(
                    self._tell_when_placed(atype, key, method_name, args, kwargs)
                )
                return SENT
            if host is not None:
                return self._remote_tell(host, type_name, key, method_name, args, kwargs)
        if method is None or atype is None or self._served(type_name) is None:
            raise UnknownActorType(f"no actor type {type_name!r} is served here")
        if self.check_serializable:
            self._check((args, kwargs), "arguments")
        self._activation(atype, key).enqueue(Message(method, args, kwargs, None, 0.0, 0))
        return SENT

    def _elsewhere(self, atype: ActorType | None, type_name: str, key: str) -> str | None:
        """On a cluster: the node a message for the actor must go to, or None to deliver it
        here, or ``""`` when it must be placed first (``Cluster.place``: this node owns it but
        its view is not settled, it is leaving, its type's director places it elsewhere, or it
        is claimed for ``placement="local"``). ``NodeUnavailable`` on a member that may not
        serve (no quorum, or its lease ran out)."""
        cluster = self._cluster
        assert cluster is not None
        serving = cluster.serving()
        if cluster.hosting and not serving and not cluster.leaving:
            # a member cut off from the majority: whatever it would send across may be
            # served by the majority's activation, or time out; refuse at once instead
            raise NodeUnavailable(f"{self._address} has no quorum: it serves no actors")
        if (
            (serving or (cluster.leaving and cluster.may_serve()))
            and atype is not None
            and self._catalog.get(atype, key) is not None
        ):
            return None
        if (
            atype is not None
            and atype.placement == "local"
            and serving
            and self._served(type_name) is not None
        ):
            return ""  # claimed from its owner first (Cluster.place), then activated here
        host = cluster.route(type_name, key)
        if host != self._address:
            return host
        if atype is None:
            return None
        placed = cluster.place_now(atype, key)
        if placed is None:
            return ""
        return None if placed == self._address else placed

    async def _tell_when_placed(
        self,
        atype: ActorType,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        assert self._cluster is not None
        try:
            host = await self._cluster.place(atype, key)
            if host != self._address:
                self._remote_tell(host, atype.name, key, method_name, args, kwargs)
            else:
                self._tell(atype.name, key, method_name, args, kwargs)
        except ActorError as err:
            log.warning("tell to %s/%s.%s dropped: %s", atype.name, key, method_name, err)

    def _remote_tell(
        self,
        host: str,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        hops: int = 0,
    ) -> Awaitable[None]:
        if not self._running:
            raise ActorError("the node is not running (use `async with Node()`)")
        messaging = self._messaging
        assert messaging is not None
        messaging.tell(host, type_name, key, method_name, args, kwargs, hops)
        if messaging.transport.backlog(host) < self._hwm:
            return SENT
        # Congested: every teller to this peer shares one wait for the backlog to drain.
        waiter = self._congested.get(host)
        if waiter is None or waiter.done():
            waiter = asyncio.ensure_future(messaging.transport.drained(host))
            waiter.add_done_callback(_retrieve)
            self._congested[host] = waiter
        return waiter

    def _redeliver(self, msg: Message, atype: ActorType, key: str) -> None:
        """Hand a message left behind by a deactivated activation to its next activation: a
        fresh one here, or (leaving, no quorum, moved) wherever the actor now lives."""
        reply = msg.reply
        if reply is not None and reply.done():
            return
        cluster = self._cluster
        if cluster is not None and self._running and not cluster.serving():
            self._reroute(msg, atype, key)
            return
        try:
            act = self._activation(atype, key)
        except ActorError as err:
            if reply is not None:
                reply.set_exception(err)
            else:
                log.error("tell to %s/%s lost its activation: %s", atype.name, key, err)
            return
        act.enqueue(msg)

    def _reroute(self, msg: Message, atype: ActorType, key: str, host: str | None = None) -> None:
        """Send a message that can no longer run here to ``host`` (default: the owner on the
        ring without this node): a remote caller is redirected, a local one re-asks there, a
        tell is forwarded."""
        reply = msg.reply
        if host is None:
            assert self._cluster is not None
            host = self._cluster.successor(atype, key)
        if host is None:
            if reply is not None:
                reply.set_exception(NodeUnavailable(f"no other member can host {atype.name}/{key}"))
            return
        if reply is None:
            self._remote_tell(host, atype.name, key, msg.method.name, msg.args, msg.kwargs, 1)
        elif isinstance(reply, RemoteReply):
            reply.set_exception(wire.Redirect(host))
        else:
            task = self._loop.create_task(
                self._remote_ask(
                    host,
                    atype.name,
                    key,
                    msg.method.name,
                    msg.args,
                    msg.kwargs,
                    None,
                    msg.chain,
                    msg.deadline or self._loop.time() + self.default_timeout,
                )
            )
            task.add_done_callback(lambda t: _chain_future(t, reply))

    def _settle_result(self, reply: ReplySink, value: Any) -> None:
        if self.check_serializable:
            try:
                self._check(value, "result")
            except SerializationError as err:
                reply.set_exception(err)
                return
        reply.set_result(value)

    def _check(self, value: Any, what: str) -> None:
        try:
            wire.check_serializable(wire.DEFAULT_CODEC, value)
        except SerializationError as err:
            raise SerializationError(f"{what} cannot cross the wire: {err}") from None

    # -- cluster --------------------------------------------------------------------------------

    def _make_transport(self) -> Transport:
        if self._transport is not None:
            return self._transport
        endpoints = [self.listen] if self.listen is not None else list(self.seeds)
        # frames coalesced past max_frame_size would be refused by the receiving end
        coalesce = min(DEFAULT_MAX_FRAME_BYTES, self.max_frame_size)
        if endpoints and all(e.startswith("mem://") for e in endpoints):
            from runtime.memory_transport import MemoryNetwork, MemoryTransport

            global _MEMORY_NETWORK
            if _MEMORY_NETWORK is None:
                _MEMORY_NETWORK = MemoryNetwork()
            return MemoryTransport(_MEMORY_NETWORK, max_frame_bytes=coalesce)
        from runtime.zmq_transport import ZmqTransport

        return ZmqTransport(max_frame_bytes=coalesce)

    async def _start_cluster(self) -> None:
        transport = self._make_transport()
        self._hwm = transport.backlog_hwm
        messaging = self._messaging = Messaging(
            transport, self._on_request, self._on_control, self.max_frame_size
        )
        bound = await messaging.start(self.listen)
        if bound:
            self._address = bound
            types = sorted(self._types) if self._serve is None else sorted(self._serve)
        else:
            self._address = f"client://{uuid.uuid4().hex[:16]}"
            types = []
        self._cluster = Cluster(
            self,
            messaging,
            self._address,
            types,
            self.resources,
            hosting=bool(bound),
            swim_config=self.swim_config,
            clock=self._clock,
        )
        members = self._cluster.membership
        self._data.connect(self._address, self._control_request, members.__contains__)
        await self._cluster.start(list(self.seeds), self.join_timeout)

    def _on_control(self, env: wire.Envelope, route: Route) -> None:
        assert self._cluster is not None
        self._cluster.on_control(env, route)

    def _drop_all_activations(self, reason: str) -> None:
        """Forget every activation at once (the cluster declared this node dead): no
        ``on_deactivate``, queued asks fail with ``NodeUnavailable``."""
        err = NodeUnavailable(reason)
        for act in list(self._catalog):
            backlog = act.take_backlog()
            self._catalog._remove(act)  # owners elsewhere are told, if they can be reached
            for msg in backlog:
                if msg.reply is not None and not msg.reply.done():
                    msg.reply.set_exception(err)

    def _supersede(self, type_name: str, key: str, epoch: int, winner: str) -> None:
        """The owner says another activation of the actor won: drop ours (if it is still the
        one with ``epoch``) without ``on_deactivate``, and send what it held to ``winner``."""
        act = self._catalog.lookup(type_name, key)
        if not isinstance(act, Activation) or act.epoch != epoch:
            return
        log.warning("%s/%s (epoch %d) superseded by %s: dropped", type_name, key, epoch, winner)
        backlog = act.take_backlog()
        self._catalog._remove(act, notify=False)
        assert self._cluster is not None
        self._cluster.learned(type_name, key, winner)
        for msg in backlog:
            self._reroute(msg, act.type, key, winner)

    async def epoch(self, ref: ActorRef) -> int | None:
        """The fencing epoch of ``ref``'s live activation, or None if it is not active.

        Every activation is registered with the epoch it was created with; epochs grow with
        every new activation of an actor anywhere in the cluster, so storage can refuse a
        write that carries an older one."""
        act = self._catalog.lookup(ref.type_name, ref.key)
        if isinstance(act, Activation):
            return act.epoch
        host = await self.locate(ref)
        if host is None or host == self._address:
            return None
        answer = await self._control_request(host, "epoch", [ref.type_name, ref.key])
        return answer if isinstance(answer, int) and not isinstance(answer, bool) else None

    def _receive_handoff(self, type_name: str, key: str, state: Any, register: bool = True) -> int:
        """Activate an actor handed over (leave, migration) with its state; returns its epoch.
        ``register=False`` when the sender registers the move with the owner itself (a
        migration names the previous host, so the owner moves its entry)."""
        atype = self._served(type_name)
        if atype is None:
            raise UnknownActorType(f"{self._address} serves no actor type {type_name!r}")
        known = self._catalog.lookup(type_name, key)
        if known is not None and not isinstance(known, list):
            log.warning(
                "handoff of %s/%s: already active here, kept the running one", type_name, key
            )
            return known.epoch
        assert self._cluster is not None
        act = self._catalog.activate(atype, key, self._cluster.new_epoch(), state=state)
        if register:
            self._cluster.activated(act)
        return act.epoch

    def _on_request(self, fields: list[Any], route: Route) -> None:
        """An ASK or TELL from the wire (its validated array, see ``wire.decode_fields``):
        deliver it here, or say where the actor lives."""
        messaging, cluster = self._messaging, self._cluster
        assert messaging is not None and cluster is not None
        if self._loop.time() >= cluster.open_until and cluster.gate(fields, route):
            return
        is_ask = fields[F_KIND] == wire.ASK
        deadline = 0.0
        if is_ask and fields[F_DEADLINE]:
            remaining = fields[F_DEADLINE] - self._wall()
            if remaining <= 0:
                return  # the caller has given up already: never run it
            deadline = self._loop.time() + remaining
        # Fast path: a known method of an actor active here (no Envelope object).
        table = self._catalog._by_type.get(fields[F_TYPE])
        act = None if table is None else table.get(fields[F_KEY])
        if type(act) is Activation and (self._serve is None or fields[F_TYPE] in self._serve):
            method = act.type.methods.get(fields[F_METHOD])
            if method is not None:
                sink = RemoteReply(messaging, route, fields[F_CORR]) if is_ask else None
                self._deliver(
                    act, method, fields[F_ARGS], fields[F_KWARGS], fields[F_TRACE], deadline, sink
                )
                return
        self._on_request_slow(wire.envelope_of(fields), route, deadline)

    def _on_request_slow(self, env: wire.Envelope, route: Route, deadline: float) -> None:
        """:meth:`_on_request` for an actor not active here, or a type or method unknown."""
        messaging, cluster = self._messaging, self._cluster
        assert messaging is not None and cluster is not None
        sink = RemoteReply(messaging, route, env.corr) if env.kind == wire.ASK else None
        try:
            atype = self._served(env.type_name)
            if atype is None:
                raise UnknownActorType(f"{self._address} serves no actor type {env.type_name!r}")
            method = self._method(atype, env.method)
            act = self._catalog.get(atype, env.key)
            host = self._address
            if act is None:
                host = cluster.route(atype.name, env.key)
                if host == self._address and not cluster.serving() and not cluster.leaving:
                    raise NodeUnavailable(f"{self._address} serves no actors now")
                if host != self._address and env.hops:
                    # sent here by a redirect, but not here: the entry that named us is stale
                    cluster.not_here(atype.name, env.key, host)
                if host == self._address:
                    placed = cluster.place_now(atype, env.key)
                    if placed is None:
                        self._loop.create_task(
                            self._place_then_deliver(env, sink, atype, method, deadline)
                        )
                        return
                    host = placed
        except ActorError as err:
            _fail(env, sink, err)
            return
        if act is None:
            self._deliver_at(host, env, sink, atype, method, deadline)
        else:
            self._deliver(act, method, env.args, env.kwargs, env.trace, deadline, sink)

    def _deliver_at(
        self,
        host: str,
        env: wire.Envelope,
        sink: RemoteReply | None,
        atype: ActorType,
        method: Any,
        deadline: float,
    ) -> None:
        """A request for an actor not active here, once placed: forward it to ``host``, or
        activate the actor here and deliver it."""
        try:
            if host != self._address:
                self._send_elsewhere(env, sink, host)
                return
            act = self._activation(atype, env.key)
        except ActorError as err:
            _fail(env, sink, err)
            return
        self._deliver(act, method, env.args, env.kwargs, env.trace, deadline, sink)

    def _deliver(
        self,
        act: Activation,
        method: Any,
        args: Any,
        kwargs: dict[str, Any],
        chain: int,
        deadline: float,
        sink: RemoteReply | None,
    ) -> None:
        """Run a request from the wire on ``act`` now, or queue it: an ask answers ``sink``;
        a tell (``sink`` None) starts a call chain of its own."""
        if sink is None:
            if act.can_run_now(0):
                outcome, value = act.start_turn(method, args, kwargs, 0, 0.0, NO_REPLY)
                if outcome == RAISED:
                    log_tell_failure(act, value)
            else:
                act.enqueue(Message(method, args, kwargs, None, 0.0, 0))
            return
        if act.can_run_now(chain):
            outcome, value = act.start_turn(method, args, kwargs, chain, deadline, sink)
            if outcome == DONE:
                sink.set_result(value)
            elif outcome == RAISED:
                sink.set_exception(value)
        else:
            act.enqueue(Message(method, args, kwargs, sink, deadline, chain))

    def _send_elsewhere(self, env: wire.Envelope, sink: RemoteReply | None, host: str) -> None:
        """Redirect an ask (the caller re-sends it) or forward a tell to ``host``."""
        if sink is None and env.hops >= MAX_HOPS:
            err = NodeUnavailable(f"{env.type_name}/{env.key} not located in {MAX_HOPS} hops")
            log.warning("tell to %s/%s dropped: %s", env.type_name, env.key, err)
            return
        if sink is not None:  # the caller follows redirects, up to its own limit
            sink.set_exception(wire.Redirect(host))
        else:
            self._remote_tell(
                host, env.type_name, env.key, env.method, env.args, env.kwargs, env.hops + 1
            )

    async def _place_then_deliver(
        self,
        env: wire.Envelope,
        sink: RemoteReply | None,
        atype: ActorType,
        method: Any,
        deadline: float,
    ) -> None:
        assert self._cluster is not None
        try:
            host = await self._cluster.place(atype, env.key)
        except ActorError as err:
            _fail(env, sink, err)
            return
        self._deliver_at(host, env, sink, atype, method, deadline)

    async def _control_request(
        self, peer: str, op: str, body: Any, timeout: float | None = None
    ) -> Any:
        messaging = self._messaging
        assert messaging is not None
        env = wire.Envelope(wire.CONTROL, 0, messaging.address, method=op, body=body)
        corr, fut = messaging.request(peer, env, self._loop)
        t = self.default_timeout if timeout is None else timeout
        try:
            return await self._wait(fut, self._loop.time() + t, t, "node", peer, op)
        finally:
            messaging.forget(corr)


def _fail(env: wire.Envelope, sink: RemoteReply | None, err: ActorError) -> None:
    if sink is not None:
        sink.set_exception(err)
    else:
        log.warning("tell to %s/%s.%s dropped: %s", env.type_name, env.key, env.method, err)


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
