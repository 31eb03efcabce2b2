"""Live migration: moving an activation to another node with its state, losing no message.

The host runs the move, whoever asked for it:

1. the activation is marked MIGRATING: new messages queue up behind it and wait;
2. the running turn (if any) ends;
3. its state is handed to the target (a ``handoff`` control request), which activates the actor
   with that state (``on_activate`` runs there) and answers with the new activation's epoch;
4. the directory learns the move: the owner records the new host (or, if the target is the
   owner, forgets the old exception), and this node caches the new location;
5. the activation is dropped here and every held message follows it: remote callers are
   redirected (one extra hop), local callers re-ask at the target, tells are forwarded.

If the handoff fails, the activation goes back to ACTIVE and serves the held messages here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from actors.errors import ActorError, ActorTimeout, NodeUnavailable, UnknownActorType
from runtime.activation import ACTIVE, MIGRATING
from runtime.state import get_state

if TYPE_CHECKING:
    from actors.ref import ActorRef
    from runtime.node import Node

__all__ = ["migrate", "migrate_out"]


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
    cluster = node._cluster
    assert cluster is not None
    act = node._catalog.lookup(type_name, key)
    if act is None:
        raise NodeUnavailable(f"{type_name}/{key} is not active on {node.address}")
    if isinstance(act, list):
        raise ActorError("stateless workers are not migrated: each node runs its own")
    if act.status != ACTIVE:
        raise ActorError(f"{type_name}/{key} is activating or deactivating; try again")
    loop = asyncio.get_running_loop()
    act.status = MIGRATING
    try:
        give_up = loop.time() + node.default_timeout
        while act.running:
            if loop.time() > give_up:
                raise ActorTimeout(f"{type_name}/{key} stayed busy; migration abandoned")
            await asyncio.sleep(0.001)
        state = get_state(act.instance)
        epoch = await node._control_request(to, "handoff", [type_name, key, state, act.epoch])
    except BaseException:
        act.status = ACTIVE
        act.schedule()
        raise
    node._catalog._remove(act, notify=False)
    cluster.learned(type_name, key, to)
    owner = cluster.owner(type_name, key)
    new_epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0
    if owner == node.address:
        cluster.directory.register(type_name, key, to, new_epoch)
    elif owner == to:
        cluster.post(owner, "unregister", [type_name, key, node.address, act.epoch])
    else:
        cluster.post(owner, "register", [type_name, key, to, new_epoch, node.address])
    for msg in act.take_backlog():
        node._reroute(msg, act.type, key, to)
