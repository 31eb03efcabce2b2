"""The node: the composition root that builds a node's parts and wires them together.

``Node()`` with no ``listen`` and no ``seeds`` is the embedded runtime: one process, no
network, messages passed as objects. On a cluster the parts are (as in Orleans' runtime):

* ``Catalog`` (``runtime.catalog``): this node's activations, their creation and idle collection;
* ``Calls`` (``runtime.calls``): outbound asks and tells, what references call;
* ``Dispatcher`` (``runtime.dispatch``): inbound asks and tells from the wire;
* ``Locator`` (``runtime.locator``): where a call goes, with the location cache;
* ``Placement`` (``runtime.placement``): where a new activation goes, a director per strategy;
* ``Cluster`` (``runtime.cluster``): membership (SWIM), the directory partition, the gate;
* ``Migrator`` (``runtime.migration``): live moves, and the handoff of a graceful leave;
* ``Control`` (``runtime.control``): the control operations peers send, one handler each;
* ``DataStore`` (``runtime.datastore``): the payloads ``actors.data`` keeps here;
* ``Messaging`` (``runtime.messaging``) over a ``Transport``: envelopes on the wire.

Each gets the narrow handles it needs; none reaches into another's private members. The node
itself holds the public API (``ref``, ``locate``, ``migrate``, ``epoch``, ...) and the lifecycle.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Any, Final

from actors.data import DataRef
from actors.errors import ActorError, NodeUnavailable
from actors.ref import ActorRef, type_name_of
from router.swim import SwimConfig
from runtime import options, wire
from runtime.activation import DEFAULT_MAILBOX_LIMIT, Activation, Host
from runtime.calls import Calls
from runtime.catalog import DEFAULT_MAX_ACTIVATIONS, Catalog
from runtime.clock import Clock
from runtime.cluster import Cluster
from runtime.context import NODE, node_started, node_stopped
from runtime.control import Control
from runtime.datastore import DataStore
from runtime.dispatch import Dispatcher
from runtime.locator import LocationCache, Locator
from runtime.messaging import Messaging
from runtime.migration import Migrator
from runtime.placement import Placement
from runtime.rebalancer import DEFAULT_PERIOD, Rebalancer
from runtime.resources import detect_async, offered
from runtime.security import CurveKeys, load_keys
from runtime.served import Served
from runtime.transport import DEFAULT_MAX_FRAME_BYTES, Transport

__all__ = ["Node"]


def _ref_from_wire(data: Any) -> ActorRef:
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        raise ValueError("an actor reference is [type_name, key]")
    return ActorRef(data[0], data[1])


def _data_ref_from_wire(data: Any) -> DataRef:
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data)):
        raise ValueError("a data reference is [key, node]")
    return DataRef(data[0], data[1])


def _positive_count(name: str, value: object) -> int:
    """``value`` if it is an int of at least 1, else a TypeError or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of at least 1, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value!r}")
    return value


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


class Node:
    """A shoal node. Use as ``async with Node(...) as node``.

    Parameters:
        listen: endpoint to serve on (``tcp://HOST:PORT``, port 0 for any); None = embedded.
        seeds: endpoints of cluster members to join through.
        storage: state storage URL: ``memory://``, ``sqlite:///PATH``, ``postgresql://...``
            or ``redis://...`` (``start`` fails with ``ValueError`` naming any other); takes
            effect with the storage issue.
        resources: what this node offers to actors' ``resources`` requirements, on top of
            what a cluster member detects of its machine (``cpu``, ``mem`` in GiB, ``gpu``:
            see ``runtime.resources``); the given figures win.
        default_timeout: the deadline of an ask, in seconds, unless the call gives one.
        check_serializable: reject local arguments and results that could not cross the wire
            with ``SerializationError`` (default True: code that passes embedded does not fail
            on a cluster). Plain values (numbers, ASCII strings, bytes, None) are checked by
            type; anything else is encoded once. ``False`` opts out (objects still pass as
            they are, never copied).
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
        rebalance_period: seconds between the rounds in which a member moves its
            ``placement="data"`` actors toward the data they read and the actors they call
            (``runtime.rebalancer``; rates are smoothed over five periods).
        mailbox_limit: the most messages one activation queues (default 10,000): an ask
            beyond it waits for room within its deadline, then fails with ``Overloaded``; a
            local tell beyond it is queued and ``await``-ing the tell waits for room; a
            remote sender's tells wait for room (paced tells) and are dropped past twice the
            limit. See ``runtime.activation`` and ``runtime.calls``.
        max_activations: the most activations this node hosts (default 100,000): beyond it
            the least recently used idle ones are deactivated early, and if none is idle a new
            activation waits like an ask to a full mailbox. See ``runtime.catalog``.
        key: this node's CURVE secret key file (``shoal keygen``); with ``trust``, every link
            of the node is CurveZMQ and only peers whose public key is in ``trust`` get
            through (``runtime.security``). Both or neither.
        trust: the directory of the public keys (``*.key``) this node trusts.

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
        check_serializable: bool = True,
        serve: Iterable[type | str] | None = None,
        transport: Transport | None = None,
        max_frame_size: int = wire.DEFAULT_MAX_FRAME,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT,
        clock: Clock | None = None,
        data_limit: int | None = None,
        data_spill_dir: str | os.PathLike[str] | None = None,
        rebalance_period: float = DEFAULT_PERIOD,
        key: str | os.PathLike[str] | None = None,
        trust: str | os.PathLike[str] | None = None,
        mailbox_limit: int = DEFAULT_MAILBOX_LIMIT,
        max_activations: int = DEFAULT_MAX_ACTIVATIONS,
    ) -> None:
        checked = options.node(
            listen=listen,
            seeds=seeds,
            storage=storage,
            resources=resources,
            default_timeout=default_timeout,
            check_serializable=check_serializable,
            serve=serve,
            transport=transport,
            max_frame_size=max_frame_size,
            join_timeout=join_timeout,
            clock=clock,
            rebalance_period=rebalance_period,
        )  # every argument is checked where it is given (runtime.options says how)
        self._curve: CurveKeys | None = load_keys(key, trust)
        if self._curve is not None:
            endpoints = [listen] if listen is not None else list(seeds)
            if not endpoints:
                raise ValueError(
                    f"key={key!r} and trust={trust!r} secure the links between nodes: an "
                    "embedded node (no listen=, no seeds=) has none"
                )
            if transport is not None or any(str(e).startswith("mem://") for e in endpoints):
                raise ValueError(
                    "key= and trust= configure the node's own ZeroMQ transport (tcp://, "
                    "ipc://): not a transport= given, nor mem:// addresses"
                )
        self.rebalance_period = checked.rebalance_period
        self.listen = checked.listen
        self.seeds = checked.seeds
        self.storage = checked.storage
        given = checked.resources
        self._given_resources = given
        #: what this node offers (detected and given, once it started as a member)
        self.resources: dict[str, float] = dict(given or {})
        self.default_timeout = checked.default_timeout
        self.check_serializable = checked.check_serializable
        self.stop_grace = DEFAULT_STOP_GRACE
        self.max_frame_size = checked.max_frame_size
        self.join_timeout = checked.join_timeout
        #: SWIM's timing (tests and simulations shorten it); None = the defaults
        self.swim_config: SwimConfig | None = None
        self._address = f"local://node-{next(_node_ids)}"
        self._running = False
        self._closed = False
        self._ctx_token: Token[Node | None] | None = None
        self._transport = transport
        self._clock = clock if clock is not None else Clock()
        # the parts every node has; the cluster's are built by start()
        self._host = Host(self, checked.check_serializable, self._clock.wall)
        self._served = Served(checked.serve)
        self._catalog = Catalog(self._host)
        #: the payloads this node keeps (what ``actors.data`` puts, gets and deletes)
        self.data = DataStore(self._address, data_limit, data_spill_dir, max_frame_size)
        #: the outbound call path (what references call: ``calls.ask``, ``calls.tell``)
        self.calls = Calls(
            self._host, self._catalog, self._served, self.default_timeout, self._clock.wall
        )
        self._catalog.redeliver = self.calls.redeliver
        self._host.mailbox_limit = _positive_count("mailbox_limit", mailbox_limit)
        self._catalog.max_activations = _positive_count("max_activations", max_activations)
        self._messaging: Messaging | None = None
        self._cluster: Cluster | None = None
        self._locator: Locator | None = None
        self._migrator: Migrator | None = None
        self._rebalancer: Rebalancer | None = None
        self._dispatcher: Dispatcher | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The endpoint this node serves on (``local://...`` for an embedded node)."""
        return self._address

    @property
    def closed(self) -> bool:
        """Whether the node has stopped (or failed to start): references move on from it."""
        return self._closed

    async def start(self) -> Node:
        """Start serving (and join the cluster through ``seeds``). ``async with`` calls it."""
        if self._running:
            return self
        if self._closed:
            raise ActorError("a stopped node cannot be started again")
        if self.storage is not None:
            options.storage_url(self.storage)  # ValueError naming it (see shared API)
        self._host.loop = asyncio.get_running_loop()
        self._host.tick = self._host.loop.time()  # the idle clock starts now
        self._running = self._host.running = True
        try:
            if self.listen is not None or self.seeds:
                await self._start_cluster()
        except BaseException:
            self._stopped()
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
                turns = self._host.turn_tasks
                if turns:
                    _, late = await asyncio.wait(set(turns), timeout=self.stop_grace)
                    for task in late:
                        task.cancel()
                    if late:
                        await asyncio.wait(late)
                if self._rebalancer is not None:
                    await self._rebalancer.close()
                if self._cluster is not None and self._migrator is not None:
                    await self._cluster.leave(self.stop_grace, self._migrator.hand_off_all)
                    await self._cluster.close()
                await self._catalog.close()
        finally:
            self._stopped()
            node_stopped(self)
            self._host.flush_failures()
            if self._messaging is not None:
                await self._messaging.close()
            await self.data.close()

    def _stopped(self) -> None:
        self._running = self._host.running = False
        self._closed = self.calls.closed = True

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

    # -- the cluster's parts --------------------------------------------------------------------

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

        # libzmq drops a connection whose next message part is over the frame limit as soon
        # as it has read the part's size: an oversized frame is never assembled. (It checks
        # each part; each part of an attached message is within the limit too.)
        return ZmqTransport(
            max_frame_bytes=coalesce, max_message_size=self.max_frame_size, curve=self._curve
        )

    async def _start_cluster(self) -> None:
        """Build and wire the cluster's parts, then join."""
        calls, catalog, served = self.calls, self._catalog, self._served
        dispatch: list[Dispatcher] = []  # built once messaging has an address
        control: list[Control] = []
        messaging = self._messaging = Messaging(
            self._make_transport(),
            lambda fields, route: dispatch[0].on_request(fields, route),
            lambda env, route: control[0].on_control(env, route),
            self.max_frame_size,
        )
        bound = await messaging.start(self.listen)
        if bound:
            self._address = bound
            types = served.hosted_names()
            self.resources = offered(self._given_resources, await detect_async())
        else:
            self._address = f"client://{uuid.uuid4().hex[:16]}"
            types = []
        self.data.connect(self._address, calls.control, lambda a: a in cluster.membership)
        cache = LocationCache()
        cluster = self._cluster = Cluster(
            messaging,
            self._address,
            types,
            self.resources,
            hosting=bool(bound),
            catalog=catalog,
            known=served.known,
            locations=cache,
            request=calls.control,
            swim_config=self.swim_config,
            clock=self._clock,
        )
        placement = Placement(
            cluster, catalog, calls.control, self._clock.derive(), self.default_timeout
        )
        locator = self._locator = Locator(cluster, catalog, placement, cache, calls.control)
        calls.connect(messaging, locator, cluster)
        if bound:
            catalog.registrar = cluster
        migrator = self._migrator = Migrator(
            cluster, catalog, calls, locator, self.data, self.default_timeout, self._clock.wall
        )
        dispatch.append(
            Dispatcher(
                self._host, catalog, served, cluster, locator, calls, messaging, self._clock.wall
            )
        )
        cluster.release = dispatch[0].on_request
        self._dispatcher = dispatch[0]
        control.append(
            Control(cluster, catalog, served, placement, locator, migrator, calls, self.data)
        )
        cluster.superseded = control[0].drop_superseded
        if bound and any(getattr(served.get(t), "placement", "") == "data" for t in types):
            rebalancer = self._rebalancer = Rebalancer(
                cluster, catalog, calls, migrator, self._clock, self.rebalance_period
            )
            catalog.affinity = True
            control[0].rebalancer = rebalancer
            self.data.on_read = rebalancer.data_read
        await cluster.start(list(self.seeds), self.join_timeout)
        if self._rebalancer is not None:
            self._rebalancer.start()

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
        _check_ref(ref)
        if self._locator is None:
            return self._address if self._catalog.lookup(ref.type_name, ref.key) else None
        return await self._locator.locate(ref.type_name, ref.key)

    @property
    def bounds(self) -> dict[str, int]:
        """What this node's memory bounds refused or dropped so far (see the README's "Memory
        bounds"): ``activations`` hosted now and ``evicted`` (deactivated early beyond
        ``max_activations``), ``dropped_tells`` (past twice ``mailbox_limit``), and from the
        ZeroMQ transport ``cut_offs`` (callers that did not read their replies),
        ``dropped_bytes`` and ``ignored_frames`` (from callers while cut off)."""
        transport = None if self._messaging is None else self._messaging.transport
        return {
            "activations": self._catalog.count,
            "evicted": self._catalog.evicted,
            "dropped_tells": 0 if self._dispatcher is None else self._dispatcher.dropped_tells,
            "cut_offs": getattr(transport, "cut_offs", 0),
            "dropped_bytes": getattr(transport, "dropped_bytes", 0),
            "ignored_frames": getattr(transport, "ignored", 0),
        }

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
        _check_ref(ref)
        if to != self._address:  # (an embedded node's own is local://...)
            to = options.address("to", to)
        if self._migrator is None:
            if to == self._address:
                return
            raise NodeUnavailable(f"{to} is not a member of this (embedded) node's cluster")
        await self._migrator.migrate(ref, to)

    async def epoch(self, ref: ActorRef) -> int | None:
        """The fencing epoch of ``ref``'s live activation, or None if it is not active.

        Every activation is registered with the epoch it was created with; epochs grow with
        every new activation of an actor anywhere in the cluster, so storage can refuse a
        write that carries an older one."""
        _check_ref(ref)
        act = self._catalog.lookup(ref.type_name, ref.key)
        if isinstance(act, Activation):
            return act.epoch
        host = await self.locate(ref)
        if host is None or host == self._address:
            return None
        answer = await self.calls.control(host, "epoch", [ref.type_name, ref.key])
        return answer if isinstance(answer, int) and not isinstance(answer, bool) else None

    async def deactivate_idle(self) -> int:
        """Deactivate now every activation that has been idle for its ``idle_after``."""
        return await self._catalog.collect_idle()


def _check_ref(ref: object) -> None:
    if not isinstance(ref, ActorRef):
        raise TypeError(f"expected an actor reference (node.ref(...)), not {options.shown(ref)}")
