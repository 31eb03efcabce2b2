"""Live migration: moving an activation to another node with its state, losing no message.

The host runs the move, whoever asked for it:

1. the activation is marked MIGRATING: new messages queue up behind it and wait;
2. the running turn (if any) ends;
3. its state is handed to the target (a ``handoff_many`` control request, up to ``BATCH``
   activations each), which activates the actor with that state (``on_activate`` runs there)
   and answers with the new activation's epoch;
4. the directory learns the move: the owner records the new host (or, if the target is the
   owner, forgets the old exception), and this node caches the new location;
5. the activation is dropped here and every held message follows it: remote callers are
   redirected (one extra hop), local callers re-ask at the target, tells are forwarded.

If the handoff fails, the activation goes back to ACTIVE and serves the held messages here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from actors.errors import ActorError, NodeUnavailable, UnknownActorType
from runtime.lifecycle import ACTIVE, transition
from runtime.state import get_state

if TYPE_CHECKING:
    from actors.ref import ActorRef
    from runtime.activation import Activation
    from runtime.node import Node

__all__ = ["migrate", "migrate_many", "migrate_out"]

log = logging.getLogger("shoal.migration")


async def migrate(node: Node, ref: ActorRef, to: str) -> None:
    """Move ``ref``'s activation to the member at ``to`` (see the module docstring)."""
    cluster = node._cluster
    if cluster is None:
        if to == node.address:
            return
        raise NodeUnavailable(f"{to} is not a member of this (embedded) node's cluster")
    member = cluster.membership.members.get(to)
    if member is None or not member.types:
        raise NodeUnavailable(f"{to} is not a hosting member of the cluster")
    if ref.type_name not in member.types:
        raise UnknownActorType(f"{to} does not serve actor type {ref.type_name!r}")
    host = await node.locate(ref)
    if host == to:
        return
    if host is None:
        await node._control_request(to, "handoff", [ref.type_name, ref.key, None, 0])
    elif host == node.address:
        await migrate_out(node, ref.type_name, ref.key, to)
    else:
        await node._control_request(host, "migrate", [ref.type_name, ref.key, to])


async def migrate_out(node: Node, type_name: str, key: str, to: str) -> None:
    """Move this node's activation of ``type_name``/``key`` to ``to``."""
    act = node._catalog.lookup(type_name, key)
    if act is None:
        raise NodeUnavailable(f"{type_name}/{key} is not active on {node.address}")
    if isinstance(act, list):
        raise ActorError("stateless workers are not migrated: each node runs its own")
    if act.status != ACTIVE:
        raise ActorError(f"{type_name}/{key} is activating or deactivating; try again")
    moved = await migrate_many(node, [act], to)
    if not moved:
        raise ActorError(f"{to} did not take {type_name}/{key} over")


#: Most activations one handoff request carries.
BATCH: Final = 256


async def migrate_many(node: Node, acts: list[Activation], to: str) -> int:
    """Move ``acts`` (active activations of this node) to ``to``, ``BATCH`` per request, one
    request at a time; returns how many moved. An activation that stays busy past the
    node's default timeout, or that ``to`` refuses, stays here and serves its queue."""
    moved = 0
    for i in range(0, len(acts), BATCH):
        moved += await _move(node, acts[i : i + BATCH], to)
    return moved


async def _move(node: Node, batch: list[Activation], to: str) -> int:
    cluster = node._cluster
    assert cluster is not None
    loop = asyncio.get_running_loop()
    batch = [a for a in batch if a.status == ACTIVE]
    for act in batch:
        transition(act, "migrate")
    give_up = loop.time() + node.default_timeout
    while any(a.running for a in batch) and loop.time() < give_up:
        await asyncio.sleep(0.001)
    for act in [a for a in batch if a.running]:
        log.warning("%s/%s stayed busy; not moved", act.type.name, act.key)
        _stay(act)
    batch = [a for a in batch if not a.running]
    if not batch:
        return 0
    try:
        body = [[a.type.name, a.key, get_state(a.instance), a.epoch] for a in batch]
        epochs = await node._control_request(to, "handoff_many", body)
        if not (isinstance(epochs, list) and len(epochs) == len(batch)):
            raise ActorError(f"{to} answered a handoff with {epochs!r}")
    except BaseException:
        for act in batch:
            _stay(act)
        raise
    moved = 0
    for act, epoch in zip(batch, epochs, strict=True):
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            log.warning("%s refused %s/%s: %s", to, act.type.name, act.key, epoch)
            _stay(act)
            continue
        moved += 1
        type_name, key = act.type.name, act.key
        node._catalog._remove(act, notify=False)
        cluster.learned(type_name, key, to)
        owner = cluster.owner(type_name, key)
        if owner == node.address:
            cluster.directory.register(type_name, key, to, epoch)
        elif owner == to:
            cluster.post(owner, "unregister", [type_name, key, node.address, act.epoch])
        else:
            cluster.post(owner, "register", [type_name, key, to, epoch, node.address])
        for msg in act.take_backlog():
            node._reroute(msg, act.type, key, to)
    return moved


def _stay(act: Activation) -> None:
    """A move that did not happen: the activation serves here again (and registers again
    with its owner, which may hold only a placeholder for it from a view sync meanwhile)."""
    if transition(act, "stay"):
        act.schedule()
        cluster = act.node._cluster
        if cluster is not None:
            cluster.activated(act)
