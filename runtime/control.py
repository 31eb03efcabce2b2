"""Control operations: what peers send a node besides actor messages, one handler each.

``OPERATIONS`` is the table (operation name -> handler); :meth:`Control.on_control` looks the
name up and runs its handler with the envelope's sender and body. A handler returns the answer
(sent back if the request carries a correlation id), or ``_LATER`` when it answers itself from
a task. A body that does not have the operation's shape raises ``ValueError``, which
``Messaging`` answers with a ``ProtocolError``; an unknown name is refused the same way.

===============  ===========================================================================
operation        what it does
===============  ===========================================================================
swim             a SWIM message (membership)
members          the member list (a pure client's refresh)
vsync            a peer's view: merge it, answer with what we host that it owns
register         a host registers an activation with us, its owner (fencing epochs)
unregister       a host's activation ended
not_here         a redirect named a host that does not have the actor: stale entry
supersede        our registration lost: drop our activation, reroute its queue
locate           where the actor lives, as far as we know
epoch            the fencing epoch of our activation of the actor
handoff          activate an actor here (with its state, or fresh: placement)
handoff_many     activate a batch of moved actors here (a migration or a leave)
claim            ``placement="local"``: record the claimant as the host, if none yet
migrate          move our activation of the actor to another member (or say where it lives)
may_move         how many partner-affinity moves we take from the sender (the rebalancer)
data             a chunk of a payload this node keeps (``actors.data``, ``DataStore.serve``)
===============  ===========================================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from actors.data import DataRef
from actors.errors import ActorError, NodeUnavailable, ProtocolError, UnknownActorType
from runtime import wire
from runtime.activation import Activation
from runtime.cluster import actor_body
from runtime.messaging import RemoteReply
from runtime.migration import join_buffers

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.calls import Calls
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.datastore import DataStore
    from runtime.locator import Locator
    from runtime.migration import Migrator
    from runtime.placement import Placement
    from runtime.rebalancer import Rebalancer
    from runtime.served import Served
    from runtime.transport import Route

__all__ = ["OPERATIONS", "Control"]

log = logging.getLogger("shoal.control")

#: A handler's answer when it replies by itself (from a task).
_LATER: Final[Any] = object()


def _handoff_item(item: Any) -> list[Any]:
    """A ``handoff_many`` item checked, as ``[type, key, state, epoch, moves, staged]``."""
    if isinstance(item, list) and len(item) == 6:
        type_name, key, state, epoch = actor_body(item[:4], 4)
        moves, staged = item[4], item[5]
        if moves is not None and not (
            isinstance(moves, list) and all(type(t) is float for t in moves)
        ):
            raise ValueError("a handoff's move history is a list of float")
        if not (
            staged is None
            or isinstance(staged, DataRef)
            or (
                isinstance(staged, list)
                and all(
                    isinstance(leaf, list)
                    and len(leaf) == 2
                    and isinstance(leaf[0], list)
                    and isinstance(leaf[1], DataRef)
                    for leaf in staged
                )
            )
        ):
            raise ValueError("a handoff's staged state is a DataRef or a list of [path, DataRef]")
    else:
        type_name, key, state, epoch = actor_body(item, 4)
        moves = staged = None
    return [type_name, key, state, _epoch(epoch, "handoff epoch"), moves, staged]


def _epoch(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an int")
    return value


class Control:
    """The handlers of the control operations, over the node's parts."""

    __slots__ = (
        "_calls",
        "_catalog",
        "_cluster",
        "_data",
        "_locator",
        "_migrator",
        "_placement",
        "_served",
        "address",
        "rebalancer",
    )

    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        served: Served,
        placement: Placement,
        locator: Locator,
        migrator: Migrator,
        calls: Calls,
        data: DataStore,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._served = served
        self._placement = placement
        self._locator = locator
        self._migrator = migrator
        self._calls = calls
        self._data = data
        self.address = cluster.address
        #: the node's rebalancer, if it runs one (answers ``may_move``)
        self.rebalancer: Rebalancer | None = None

    def on_control(self, env: wire.Envelope, route: Route) -> None:
        """A control message from a peer: run its operation's handler, answer if asked."""
        handler = OPERATIONS.get(env.method)
        if handler is None:
            raise ValueError(f"unknown control operation {env.method!r}")
        reply = RemoteReply(self._cluster.messaging, route, env.corr) if env.corr else None
        try:
            answer = handler(self, env.sender, env.body, reply)
        except (ActorError, ValueError, TypeError, KeyError) as err:
            if reply is not None:  # the requester learns why, instead of timing out
                reply.set_exception(
                    err
                    if isinstance(err, ActorError)
                    else ProtocolError(f"bad {env.method!r} request: {err}")
                )
            raise  # and Messaging logs it
        if reply is not None and answer is not _LATER:
            reply.set_result(answer)

    def _later(self, reply: RemoteReply | None, coro: Any) -> Any:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(lambda t: _answer(t, reply))
        return _LATER

    def _hosted(self, type_name: str) -> ActorType:
        atype = self._served.get(type_name)
        if atype is None:
            raise UnknownActorType(f"{self.address} serves no actor type {type_name!r}")
        return atype

    # -- membership and directory -------------------------------------------------------------

    def swim(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        self._cluster.on_swim(sender, body)
        return _LATER  # gossip is never answered

    def members(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        return self._cluster.members_wire()

    def vsync(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        return self._cluster.on_vsync(sender, body)

    def register(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        return self._cluster.on_register(body)

    def unregister(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        self._cluster.on_unregister(body)

    def not_here(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        self._cluster.on_not_here(sender, body)

    def supersede(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        """The owner says another activation of the actor won: drop ours (if it is still the
        one with ``epoch``) without ``on_deactivate``, and send what it held to the winner."""
        type_name, key, epoch, winner = actor_body(body, 4)
        if not isinstance(winner, str):
            raise ValueError("supersede body is [type_name, key, epoch, winner]")
        self.drop_superseded(type_name, key, _epoch(epoch, "supersede epoch"), winner)
        return None

    def drop_superseded(self, type_name: str, key: str, epoch: int, winner: str) -> None:
        """Drop our activation of the actor if it is still the one with ``epoch`` (no
        ``on_deactivate``), and send what it held to ``winner``."""
        act = self._catalog.lookup(type_name, key)
        if not isinstance(act, Activation) or act.epoch != epoch:
            return
        log.warning("%s/%s (epoch %d) superseded by %s: dropped", type_name, key, epoch, winner)
        backlog = act.take_backlog()
        self._catalog.remove(act, notify=False)
        self._locator.learned(type_name, key, winner)
        for msg in backlog:
            self._calls.reroute(msg, act.type, key, winner)

    # -- lookups --------------------------------------------------------------------------------

    def locate(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        type_name, key = actor_body(body, 2)
        return self._cluster.hosted_here(type_name, key)

    def epoch(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        type_name, key = actor_body(body, 2)
        act = self._catalog.lookup(type_name, key)
        return None if act is None or isinstance(act, list) else act.epoch

    # -- activations arriving -------------------------------------------------------------------

    def handoff(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        """Activate an actor here (fresh, from a placement, or with a handed-over state);
        answers its epoch."""
        type_name, key, state, epoch = actor_body(body, 4)
        self._cluster.observe_epoch(_epoch(epoch, "handoff epoch"))
        if not self._cluster.is_member(sender):
            # a pure client may ask for an inactive actor to be activated here (migrate),
            # but never plant a state
            if not sender.startswith("client://"):
                raise NodeUnavailable(f"handoff from {sender}, which is not a member: refused")
            if state is not None:
                raise NodeUnavailable(f"a handoff with a state from {sender} (a client): refused")
        return self._catalog.receive_handoff(self._hosted(type_name), key, state).epoch

    def handoff_many(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        """A batch of moved actors: each answer is its new epoch, or why it was refused.

        An item is ``[type_name, key, state, epoch]``, or ``[type_name, key, state, epoch,
        moves, staged]`` with the actor's move history (``placement="data"``) and, for a
        large state, a ``DataRef`` to it in the sender's data store (``state`` is then None):
        those are fetched first, and the batch is answered once all of them arrived."""
        if not isinstance(body, list):
            raise ValueError("handoff_many body is a list of [type_name, key, state, epoch]")
        items = [_handoff_item(item) for item in body]
        for item in items:
            self._cluster.observe_epoch(item[3])
        if any(item[5] is not None for item in items):
            return self._later(reply, self._receive_staged(sender, items))
        return self._receive(sender, items)

    async def _receive_staged(self, sender: str, items: list[list[Any]]) -> list[Any]:
        """Fetch the staged states of ``items`` (all at once), then take the batch."""
        await asyncio.gather(*(self._fetch_state(item) for item in items if item[5] is not None))
        return self._receive(sender, items)

    async def _fetch_state(self, item: list[Any]) -> None:
        """Put the state of a handoff ``item`` together from what the sender staged (a
        failure to fetch it becomes the item's state, which ``_receive`` refuses)."""
        staged, data = item[5], self._data
        try:
            if isinstance(staged, DataRef):
                item[2] = data.codec.unpackb(await data.fetch(staged))
            else:
                values = await asyncio.gather(
                    *(data.fetch(ref) for _, ref in staged), return_exceptions=True
                )
                for value in values:
                    if isinstance(value, BaseException):
                        raise value
                leaves = [(path, v) for (path, _), v in zip(staged, values, strict=True)]
                item[2] = join_buffers(item[2], leaves)
        except ActorError as err:
            item[2] = err
        except ValueError as err:
            item[2] = ProtocolError(f"staged state of {item[0]}/{item[1]}: {err}")

    def _receive(self, sender: str, items: list[list[Any]]) -> list[Any]:
        if not self._cluster.is_member(sender):
            # sent before the cluster removed the sender (it waited out a cut in a buffer):
            # its actors have been activated afresh since, its states are the stale ones
            log.warning("handoff of %d actors from %s refused: not a member", len(items), sender)
            return [f"NodeUnavailable: {sender} is not a member of the cluster"] * len(items)
        answer: list[Any] = []
        affine = 0
        for type_name, key, state, _, moves, _ in items:
            if moves is not None:
                affine += 1
            if isinstance(state, ActorError):  # its staged state could not be fetched
                answer.append(f"{type(state).__name__}: {state}")
                continue
            if self._catalog.lookup(type_name, key) is not None:
                # activated here meanwhile, by a view without the sender (which the cluster
                # had removed): the sender's state is the stale one
                answer.append(f"ActorError: {type_name}/{key} is already active here")
                log.warning("handoff of %s/%s refused: already active here", type_name, key)
                continue
            try:
                atype = self._hosted(type_name)
                act = self._catalog.receive_handoff(atype, key, state, False, moves)
                answer.append(act.epoch)
            except ActorError as refused:
                answer.append(f"{type(refused).__name__}: {refused}")
        if affine and self.rebalancer is not None:
            self.rebalancer.arrived(sender, affine)
        return answer

    def claim(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        type_name, key = actor_body(body, 2)
        atype = self._served.get(type_name)
        if atype is None:
            raise ValueError(f"{self.address} serves no actor type {type_name!r}")
        return self._later(reply, self._placement.claimed(atype, key, sender))

    def migrate(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        type_name, key, target = actor_body(body, 3)
        if not isinstance(target, str):
            raise ValueError("migrate body is [type_name, key, to]")
        return self._later(reply, self._migrator.move_or_where(type_name, key, target))

    def may_move(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        """``[partners, source_count]``: how many partner-affinity moves we take."""
        if not (isinstance(body, list) and len(body) == 2 and all(type(n) is int for n in body)):
            raise ValueError("may_move body is [partners, source_count]")
        rebalancer = self.rebalancer
        return 0 if rebalancer is None else rebalancer.may_move(sender, body[0], body[1])

    # -- data -----------------------------------------------------------------------------------

    def data(self, sender: str, body: Any, reply: RemoteReply | None) -> Any:
        """A chunk of a payload kept here (``DataStore.serve`` answers, maybe from a thread)."""
        self._data.serve(body, reply)
        return _LATER


#: Operation name -> handler (``Control.<name>``).
OPERATIONS: Final[dict[str, Callable[[Control, str, Any, RemoteReply | None], Any]]] = {
    name: getattr(Control, name)
    for name in (
        "swim",
        "members",
        "vsync",
        "register",
        "unregister",
        "not_here",
        "supersede",
        "locate",
        "epoch",
        "handoff",
        "handoff_many",
        "claim",
        "migrate",
        "may_move",
        "data",
    )
}


def _answer(task: asyncio.Task[Any], reply: RemoteReply | None) -> None:
    """Answer a control request that ran as a task: its result (a migration's: True)."""
    if task.cancelled():
        err: BaseException | None = ActorError("cancelled")
    else:
        err = task.exception()
    if reply is None:
        if err is not None:
            log.warning("%s failed: %s", task.get_name(), err)
    elif err is not None:
        reply.set_exception(err)
    else:
        result = task.result()
        reply.set_result(True if result is None else result)
