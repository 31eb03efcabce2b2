"""Inbound dispatch: asks and tells that arrive from the wire (Orleans' Dispatcher).

A request passes the cluster's gate (quorum and lease; see ``Cluster.gate``), then either
runs on the activation here -- the fast path, for a known method of an actor active here,
builds no envelope object -- or goes where the locator says: activated here, placed first,
or redirected (an ask: the caller re-sends it and learns the host) or forwarded (a tell, up
to ``MAX_HOPS`` times).

Mailbox bounds (``runtime.activation``): an ask that finds the mailbox full is answered
``Overloaded``; a tell that finds it over twice its limit is dropped (counted in
``dropped_tells``, logged throttled); the acknowledgement a paced tell asks for
(``runtime.calls``) is sent once the mailbox has room, at once if it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from actors.errors import ActorError, NodeUnavailable, Overloaded, UnknownActorType
from runtime import wire
from runtime.activation import DONE, NO_REPLY, RAISED, Activation
from runtime.chains import deadlock
from runtime.locator import PLACE
from runtime.mailbox import Message
from runtime.messaging import RemoteReply
from runtime.served import method_of
from runtime.wire import (
    F_ARGS,
    F_CORR,
    F_DEADLINE,
    F_KEY,
    F_KIND,
    F_KWARGS,
    F_METHOD,
    F_SENDER,
    F_TRACE,
    F_TYPE,
    F_WAITS,
)

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.activation import Host
    from runtime.calls import Calls
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.locator import Locator
    from runtime.messaging import Messaging
    from runtime.served import Served
    from runtime.transport import Route

__all__ = ["MAX_HOPS", "Dispatcher"]

#: Most hops (forwards) one tell may take.
MAX_HOPS: Final = 3


class Dispatcher:
    """Delivers the requests that reach this node (``Messaging``'s request handler)."""

    __slots__ = (
        "_calls",
        "_catalog",
        "_cluster",
        "_host",
        "_locator",
        "_messaging",
        "_served",
        "_wall",
        "address",
        "dropped_tells",
    )

    def __init__(
        self,
        host: Host,
        catalog: Catalog,
        served: Served,
        cluster: Cluster,
        locator: Locator,
        calls: Calls,
        messaging: Messaging,
        wall: Any,
    ) -> None:
        self._host = host
        self._catalog = catalog
        self._served = served
        self._cluster = cluster
        self._locator = locator
        self._calls = calls
        self._messaging = messaging
        self._wall = wall
        self.address = cluster.address
        #: tells dropped because the actor's mailbox held twice its limit
        self.dropped_tells = 0

    def on_request(self, fields: list[Any], route: Route) -> None:
        """An ASK or TELL from the wire (its validated array, see ``wire.decode_fields``):
        deliver it here, or say where the actor lives."""
        cluster = self._cluster
        loop = self._host.loop
        if loop.time() >= cluster.open_until and cluster.gate(fields, route):
            return
        is_ask = fields[F_KIND] == wire.ASK
        deadline = 0.0
        if is_ask and fields[F_DEADLINE]:
            remaining = fields[F_DEADLINE] - self._wall()
            if remaining <= 0:
                return  # the caller has given up already: never run it
            deadline = loop.time() + remaining
        # Fast path: a known method of an actor active here (no Envelope object).
        table = self._catalog.by_type.get(fields[F_TYPE])
        act = None if table is None else table.get(fields[F_KEY])
        names = self._served.names
        if type(act) is Activation and (names is None or fields[F_TYPE] in names):
            method = act.type.methods.get(fields[F_METHOD])
            if method is not None:
                affinity = act.affinity
                if affinity is not None and fields[F_SENDER]:
                    affinity.sent(fields[F_SENDER])  # another node's actor calls this one
                corr = fields[F_CORR]
                if is_ask:
                    self._deliver(
                        act,
                        method,
                        fields[F_ARGS],
                        fields[F_KWARGS],
                        fields[F_TRACE],
                        deadline,
                        RemoteReply(self._messaging, route, corr),
                        fields[F_WAITS] or None,
                    )
                else:
                    ack = RemoteReply(self._messaging, route, corr) if corr else None
                    self._tell(act, method, fields[F_ARGS], fields[F_KWARGS], ack)
                return
        self._on_request_slow(wire.envelope_of(fields), route, deadline)

    def _on_request_slow(self, env: wire.Envelope, route: Route, deadline: float) -> None:
        """:meth:`on_request` for an actor not active here, or a type or method unknown. A
        paced tell (one that asks to be acknowledged) is acked by the activation here once
        its mailbox has room, else at once (forwarded, dropped)."""
        sink = RemoteReply(self._messaging, route, env.corr) if env.kind == wire.ASK else None
        ack = RemoteReply(self._messaging, route, env.corr) if sink is None and env.corr else None
        try:
            atype = self._served.get(env.type_name)
            if atype is None:
                raise UnknownActorType(f"{self.address} serves no actor type {env.type_name!r}")
            method = method_of(atype, env.method)
            act = self._catalog.get(atype, env.key)
            if act is not None:
                if act.affinity is not None and env.sender:
                    act.affinity.sent(env.sender)
                if sink is None:
                    self._tell(act, method, env.args, env.kwargs, ack)
                else:
                    waits = env.waits or None
                    self._deliver(
                        act, method, env.args, env.kwargs, env.trace, deadline, sink, waits
                    )
                return
            host = self._locator.inbound(atype, env.key, env.hops > 0)
        except ActorError as err:
            self._fail(env, sink, err)
            if ack is not None:
                ack.set_result(None)
            return
        if host == PLACE:
            self._host.loop.create_task(
                self._place_then_deliver(env, sink, atype, method, deadline, ack)
            )
        else:
            assert host is not None
            self._deliver_at(host, env, sink, atype, method, deadline, ack)

    def _deliver_at(
        self,
        host: str,
        env: wire.Envelope,
        sink: RemoteReply | None,
        atype: ActorType,
        method: Any,
        deadline: float,
        ack: RemoteReply | None = None,
    ) -> None:
        """A request for an actor not active here, once placed: forward it to ``host``, or
        activate the actor here and deliver it (``ack``: a paced tell's acknowledgement)."""
        try:
            if host != self.address:
                self._send_elsewhere(env, sink, host)
                if ack is not None:
                    ack.set_result(None)
                return
            act = self._catalog.activation(atype, env.key)
        except ActorError as err:
            self._fail(env, sink, err)
            if ack is not None:
                ack.set_result(None)
            return
        if sink is None:
            self._tell(act, method, env.args, env.kwargs, ack)
        else:
            self._deliver(
                act, method, env.args, env.kwargs, env.trace, deadline, sink, env.waits or None
            )

    def _deliver(
        self,
        act: Activation,
        method: Any,
        args: Any,
        kwargs: dict[str, Any],
        chain: int,
        deadline: float,
        sink: RemoteReply | None,
        waits: list[Any] | None = None,
    ) -> None:
        """Run a request from the wire on ``act`` now, or queue it (or refuse it: the mailbox
        is full): an ask answers ``sink``; a tell (``sink`` None) starts a call chain of its
        own. An ask that would wait, through the turn it waits behind, for itself (``waits``:
        what waits on it) fails at once with ``Deadlock`` (see ``runtime.chains``)."""
        if sink is None:
            self._tell(act, method, args, kwargs, None)
            return
        if act.can_run_now(chain):
            outcome, value = act.start_turn(method, args, kwargs, chain, deadline, sink, waits)
            if outcome == DONE:
                sink.set_result(value)
            elif outcome == RAISED:
                sink.set_exception(value)
        else:
            if waits is not None:
                cycle = deadlock(act, waits, chain, self._served.known)
                if cycle is not None:
                    sink.set_exception(cycle)
                    return
            if act.full():
                sink.set_exception(act.overloaded())
                return
            act.enqueue(Message(method, args, kwargs, sink, deadline, chain, waits))

    def _tell(
        self,
        act: Activation,
        method: Any,
        args: Any,
        kwargs: dict[str, Any],
        ack: RemoteReply | None,
    ) -> None:
        """Run a tell from the wire on ``act`` now or queue it (dropped past twice the mailbox
        limit); ``ack`` (a paced tell's) is answered once the mailbox has room, or with
        ``Overloaded`` if the tell was dropped (so nothing is kept for a dropped tell)."""
        if act.can_run_now(0):
            outcome, value = act.start_turn(method, args, kwargs, 0, 0.0, NO_REPLY)
            if outcome == RAISED:
                self._host.tell_failed(act, method.name, value)
        else:
            queued = 0 if act.queue is None else len(act.queue)
            limit = self._host.mailbox_limit
            if queued >= 2 * limit:
                self.dropped_tells += 1
                err = Overloaded(f"its mailbox holds {queued} messages, twice its limit")
                self._host.tell_dropped(act.type.name, act.key, method.name, err)
                if ack is not None:
                    ack.set_exception(
                        Overloaded(f"tells to {act.type.name}/{act.key} dropped: mailbox full")
                    )
                return
            act.enqueue(Message(method, args, kwargs, None, 0.0, 0))
            if ack is not None and queued >= limit:
                act.when_room(ack)  # (at most one per queued message)
                return
        if ack is not None:
            ack.set_result(self._host.mailbox_limit)  # (the sender sizes its window by it)

    def _send_elsewhere(self, env: wire.Envelope, sink: RemoteReply | None, host: str) -> None:
        """Redirect an ask (the caller re-sends it) or forward a tell to ``host``."""
        if sink is not None:  # the caller follows redirects, up to its own limit
            sink.set_exception(wire.Redirect(host))
            return
        if env.hops >= MAX_HOPS:
            err = NodeUnavailable(f"not located in {MAX_HOPS} hops")
            self._host.tell_dropped(env.type_name, env.key, env.method, err)
            return
        self._calls.remote_tell(
            host, env.type_name, env.key, env.method, env.args, env.kwargs, env.hops + 1
        )

    def _fail(self, env: wire.Envelope, sink: RemoteReply | None, err: ActorError) -> None:
        if sink is not None:
            sink.set_exception(err)
        else:
            self._host.tell_dropped(env.type_name, env.key, env.method, err)

    async def _place_then_deliver(
        self,
        env: wire.Envelope,
        sink: RemoteReply | None,
        atype: ActorType,
        method: Any,
        deadline: float,
        ack: RemoteReply | None = None,
    ) -> None:
        try:
            host = await self._locator.place(atype, env.key)
        except ActorError as err:
            self._fail(env, sink, err)
            if ack is not None:
                ack.set_result(None)
            return
        self._deliver_at(host, env, sink, atype, method, deadline, ack)
