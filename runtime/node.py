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
from collections.abc import Mapping, Sequence
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
from actors.ref import SENT, ActorRef, Sent, type_name_of
from runtime import wire
from runtime.activation import DONE, RAISED, Activation
from runtime.catalog import Catalog
from runtime.context import NODE, TURN, node_started, node_stopped
from runtime.mailbox import Message, ReplySink

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
#: Seconds ``stop()`` lets running turns finish before it cancels them.
DEFAULT_STOP_GRACE: Final = 5.0
_node_ids = itertools.count(1)


def _expire(fut: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(ActorTimeout(f"{what} did not answer within {timeout:g} s"))


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
    ) -> None:
        if not default_timeout > 0:
            raise ValueError("default_timeout must be positive")
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
        self._data: dict[str, Any] = {}
        self._turn_tasks: set[asyncio.Task[Any]] = set()
        self.stop_grace = DEFAULT_STOP_GRACE
        self._tick = 0
        self._running = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._ctx_token: Token[Node | None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The endpoint this node serves on (``local://...`` for an embedded node)."""
        return self._address

    async def start(self) -> Node:
        """Start serving. Called by ``async with``; returns the node."""
        if self._running:
            return self
        if self._closed:
            raise ActorError("a stopped node cannot be started again")
        self._loop = asyncio.get_running_loop()
        self._running = True
        node_started(self)
        return self

    async def stop(self) -> None:
        """Let running turns finish (up to ``stop_grace`` seconds, then cancel them),
        deactivate every activation (``on_deactivate`` runs) and stop."""
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
                await self._catalog.close()
        finally:
            self._running = False
            node_stopped(self)

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

    # -- references -----------------------------------------------------------------------------

    def ref(self, target: type | str, key: str) -> ActorRef:
        """A reference to actor ``target`` (an ``@actor`` class or its name) with ``key``."""
        return ActorRef(type_name_of(target), key, self)

    @property
    def activation_count(self) -> int:
        """How many activations this node hosts now."""
        return self._catalog.count

    async def locate(self, ref: ActorRef) -> str | None:
        """The address of the node hosting ``ref``'s activation, or None if it is not active."""
        return self._address if self._catalog.lookup(ref.type_name, ref.key) else None

    async def migrate(self, ref: ActorRef, to: str) -> None:
        """Move ``ref``'s activation to the node at ``to``, state included."""
        if to == self._address:
            return
        raise NodeUnavailable(f"{to} is not a member of this (embedded) node's cluster")

    def _data_put(self, key: str, payload: Any) -> DataRef:
        self._data[key] = payload
        return DataRef(key, self._address)

    async def _data_get(self, ref: DataRef) -> Any:
        if ref.node == self._address:
            try:
                return self._data[ref.key]
            except KeyError:
                raise ActorError(f"no data {ref.key!r} is kept on {ref.node}") from None
        raise NodeUnavailable(f"data {ref.key!r} is kept on {ref.node}, which is not reachable")

    async def deactivate_idle(self) -> int:
        """Deactivate now every activation that has been idle for its ``idle_after``."""
        return await self._catalog.collect_idle()

    # -- the hot path ---------------------------------------------------------------------------

    def _resolve(self, type_name: str, method_name: str) -> tuple[ActorType, Any]:
        atype = self._types.get(type_name)
        if atype is None:
            raise UnknownActorType(f"no actor type {type_name!r} is served here")
        method = atype.methods.get(method_name)
        if method is None:
            raise UnknownMethod(
                f"{type_name} has no public method {method_name!r}"
                + (" (names starting with '_' are private)" if method_name.startswith("_") else "")
            )
        return atype, method

    def _activation(self, atype: ActorType, key: str) -> Activation:
        if not self._running:
            raise ActorError("the node is not running (use `async with Node()`)")
        act = self._catalog.get(atype, key)
        if act is None:
            act = self._catalog.activate(atype, key)
        return act

    async def _ask(
        self,
        type_name: str,
        key: str,
        method_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        atype, method = self._resolve(type_name, method_name)
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
        handle = self._loop.call_at(
            deadline, _expire, waiter, f"{type_name}/{key}.{method_name}", timeout
        )
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
    ) -> Sent:
        atype, method = self._resolve(type_name, method_name)
        if self.check_serializable:
            self._check((args, kwargs), "arguments")
        self._activation(atype, key).enqueue(Message(method, args, kwargs, None, 0.0, 0))
        return SENT

    def _redeliver(self, msg: Message, atype: ActorType, key: str) -> None:
        """Hand a message left behind by a deactivated activation to a fresh one."""
        reply = msg.reply
        if reply is not None and reply.done():
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
