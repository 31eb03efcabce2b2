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

A graceful leave is the same move for every activation at once (:meth:`Migrator.hand_off_all`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from actors.data import DataRef
from actors.errors import ActorError, NodeUnavailable, UnknownActorType
from runtime.affinity import payload_size
from runtime.lifecycle import ACTIVE, transition
from runtime.state import get_state

if TYPE_CHECKING:
    from actors.ref import ActorRef
    from runtime.activation import Activation
    from runtime.calls import Calls
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.datastore import DataStore
    from runtime.locator import Locator

__all__ = ["BATCH", "LARGE_LEAF", "LARGE_STATE", "Migrator", "join_buffers", "split_buffers"]

log = logging.getLogger("shoal.migration")

#: Most activations one handoff request carries.
BATCH: Final = 256
#: Encoded states of at least this many bytes (or of one data chunk, if that is less: see
#: ``DataStore.chunk_size``) are staged in the data store and fetched by the target in chunks,
#: instead of travelling in the handoff request.
LARGE_STATE: Final = 1 << 20
#: Buffers (bytes, bytearray, memoryview, numpy arrays) of at least this many bytes inside a
#: moving actor's state travel by themselves through the data store's chunked path (viewed
#: where they lie: no encoding copies them), each fetched by the target in parallel.
LARGE_LEAF: Final = 256 << 10
#: Seconds between attempts to hand over what a target did not take (it died meanwhile).
RETRY: Final = 0.2


class Migrator:
    """Moves this node's activations to other members (on request, or all when leaving)."""

    __slots__ = ("_calls", "_catalog", "_cluster", "_data", "_locator", "_wall", "timeout")

    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        calls: Calls,
        locator: Locator,
        data: DataStore,
        timeout: float,
        wall: Callable[[], float],
    ) -> None:
        self._wall = wall
        self._data = data
        self._cluster = cluster
        self._catalog = catalog
        self._calls = calls
        self._locator = locator
        #: how long a move waits for a busy activation's turn to end
        self.timeout = timeout

    async def migrate(self, ref: ActorRef, to: str) -> None:
        """Move ``ref``'s activation to the member at ``to`` (see the module docstring);
        one that is not active is activated at ``to``."""
        cluster = self._cluster
        self._check_target(ref.type_name, to)
        type_name, key = ref.type_name, ref.key
        # Ask where its calls would go (one round trip when the cache is right), then where
        # that node says it lives, then its owner; nowhere: activate it at ``to``.
        host = self._locator.route(type_name, key)
        asked: set[str] = set()
        while host not in asked:
            asked.add(host)
            if host == cluster.address:
                answer: Any = await self.move_or_where(type_name, key, to)
            else:
                answer = await self._calls.control(host, "migrate", [type_name, key, to])
            if answer is True:
                self._locator.learned(type_name, key, to)  # (the next move asks ``to`` first)
                return
            host = answer if isinstance(answer, str) and answer else cluster.owner(type_name, key)
        await self._calls.control(to, "handoff", [type_name, key, None, 0])

    def _check_target(self, type_name: str, to: str) -> None:
        """Refuse a move to anything but a hosting member that serves ``type_name`` (a
        state must never go where the cluster would not place the actor)."""
        member = self._cluster.membership.members.get(to)
        if member is None or not member.types:
            raise NodeUnavailable(f"{to} is not a hosting member of the cluster")
        if type_name not in member.types:
            raise UnknownActorType(f"{to} does not serve actor type {type_name!r}")

    async def move_or_where(self, type_name: str, key: str, to: str) -> bool | str:
        """Move our activation of the actor to ``to`` (True), or say where it lives as far
        as we know (an address, or ``""``: nowhere we know of). Raises for a ``to`` that is
        not a hosting member serving the type."""
        self._check_target(type_name, to)
        if self._catalog.lookup(type_name, key) is None:
            return self._cluster.hosted_here(type_name, key) or ""
        if to != self._cluster.address:
            await self.migrate_out(type_name, key, to)
        return True

    async def migrate_out(self, type_name: str, key: str, to: str) -> None:
        """Move this node's activation of ``type_name``/``key`` to ``to``."""
        act = self._catalog.lookup(type_name, key)
        if act is None:
            raise NodeUnavailable(f"{type_name}/{key} is not active on {self._cluster.address}")
        if isinstance(act, list):
            raise ActorError("stateless workers are not migrated: each node runs its own")
        if act.status != ACTIVE:
            raise ActorError(f"{type_name}/{key} is activating or deactivating; try again")
        moved = await self.migrate_many([act], to)
        if not moved:
            raise ActorError(f"{to} did not take {type_name}/{key} over")

    async def migrate_many(
        self, acts: list[Activation], to: str, patience: float | None = None
    ) -> int:
        """Move ``acts`` (active activations of this node) to ``to``, ``BATCH`` per request,
        one request at a time; returns how many moved. An activation that stays busy past
        ``patience`` seconds (default ``timeout``), or that ``to`` refuses, stays here and
        serves its queue."""
        moved = 0
        for i in range(0, len(acts), BATCH):
            moved += await self._move(acts[i : i + BATCH], to, patience)
        return moved

    async def _move(self, batch: list[Activation], to: str, patience: float | None) -> int:
        """Hold new messages for every activation of ``batch``, then hand over each as soon as
        its running turn has ended (those that ended together, in one request): a turn that
        waits on another activation of the batch must not hold that one back."""
        loop = asyncio.get_running_loop()
        waiting = [a for a in batch if a.status == ACTIVE]
        for act in waiting:
            transition(act, "migrate")
        give_up = loop.time() + (self.timeout if patience is None else patience)
        moved = 0
        try:
            while waiting:
                ready = [a for a in waiting if not a.running]
                if ready:
                    waiting = [a for a in waiting if a.running]
                    moved += await self._hand_over(ready, to)
                elif loop.time() < give_up:
                    await asyncio.sleep(0.001)
                else:
                    break
        finally:
            for act in waiting:  # (a rebalancing move that found it busy tries again later)
                level = logging.WARNING if patience is None else logging.DEBUG
                log.log(level, "%s/%s stayed busy; not moved", act.type.name, act.key)
                self._stay(act)
        return moved

    async def _hand_over(self, batch: list[Activation], to: str) -> int:
        """Send the state of ``batch`` (idle, held) to ``to``; returns how many it took.

        A state of ``LARGE_STATE`` or more encoded is staged in this node's data store and
        the target fetches it in chunks (``runtime.datastore``): the loops of both ends keep
        serving between chunks, and no frame grows with the state."""
        cluster, catalog = self._cluster, self._catalog
        staged: list[str] = []
        try:
            wall = self._wall()
            body = []
            for a in batch:
                state = get_state(a.instance)
                moves = None if a.affinity is None else [*a.affinity.moves, wall]
                state, lent = self._stage(a, state)
                if lent is not None:
                    refs = [lent] if isinstance(lent, DataRef) else [ref for _, ref in lent]
                    staged += [ref.key for ref in refs]
                    body.append([a.type.name, a.key, state, a.epoch, moves, lent])
                elif moves is not None:
                    body.append([a.type.name, a.key, state, a.epoch, moves, None])
                else:
                    body.append([a.type.name, a.key, state, a.epoch])
            epochs = await self._calls.control(to, "handoff_many", body)
            if not (isinstance(epochs, list) and len(epochs) == len(batch)):
                raise ActorError(f"{to} answered a handoff with {epochs!r}")
        except BaseException:
            for act in batch:
                self._stay(act)
            raise
        finally:
            for key in staged:
                await self._data.delete(key)
        moved = 0
        for act, epoch in zip(batch, epochs, strict=True):
            if not isinstance(epoch, int) or isinstance(epoch, bool):
                log.warning("%s refused %s/%s: %s", to, act.type.name, act.key, epoch)
                self._stay(act)
                continue
            moved += 1
            type_name, key = act.type.name, act.key
            catalog.remove(act, notify=False)
            self._locator.learned(type_name, key, to)
            owner = cluster.owner(type_name, key)
            if owner == cluster.address:
                cluster.directory.register(type_name, key, to, epoch)
            elif owner == to:
                cluster.post(owner, "unregister", [type_name, key, cluster.address, act.epoch])
            else:
                cluster.post(owner, "register", [type_name, key, to, epoch, cluster.address])
            for msg in act.take_backlog():
                self._calls.reroute(msg, act.type, key, to)
        return moved

    def _stage(self, act: Activation, state: Any) -> tuple[Any, Any]:
        """``(state, staged)`` as the handoff carries them: a small state as it is (staged
        None); large buffers inside it (``LARGE_LEAF`` or more) lent to the data store, each
        by itself (``staged`` is ``[[path, DataRef], ...]`` and the state has None in their
        places); what remains, if its encoding is still ``LARGE_STATE`` or more, lent whole
        (``staged`` is that DataRef and the state None)."""
        large = min(LARGE_STATE, self._data.chunk_size)
        if payload_size(state) < min(LARGE_LEAF, large // 2):
            return state, None
        prefix = f"shoal.move/{act.type.name}/{act.key}/{act.epoch}"
        skeleton, leaves = split_buffers(state, LARGE_LEAF)
        if leaves and payload_size(skeleton) < large // 2:
            lend = self._data.lend
            return skeleton, [[p, lend(f"{prefix}/{i}", v)] for i, (p, v) in enumerate(leaves)]
        encoded = self._data.codec.packb(state)
        if len(encoded) < large:
            return state, None
        return None, self._data.lend(prefix, encoded)

    def _stay(self, act: Activation) -> None:
        """A move that did not happen: the activation serves here again (and registers again
        with its owner, which may hold only a placeholder for it from a view sync meanwhile)."""
        if transition(act, "stay"):
            act.schedule()
            self._cluster.activated(act)

    # -- a graceful leave -----------------------------------------------------------------------

    async def hand_off_all(self, grace: float) -> None:
        """Move every activation to its owner on the ring without this node, as a migration:
        messages that arrive meanwhile wait and then follow it. One batch at a time per
        target, every target at once; what a target did not take (it died meanwhile) goes
        again to the owner the next view names, until ``grace`` runs out. What is still here
        then is dropped before the leave is announced: lost, but never left running beside
        the activation its new owner would start."""
        cluster, catalog = self._cluster, self._catalog
        loop = asyncio.get_running_loop()
        give_up = loop.time() + grace
        while True:
            by_target: dict[str, list[Activation]] = {}
            for act in list(catalog):
                if act.type.stateless:
                    continue
                target = cluster.successor(act.type, act.key)
                if target is not None:
                    by_target.setdefault(target, []).append(act)
            if not by_target:
                return
            remaining = give_up - loop.time()
            if remaining <= 0:
                break
            await asyncio.gather(
                *(self._hand_off(acts, t, remaining) for t, acts in by_target.items())
            )
            if catalog.count and loop.time() < give_up:
                await asyncio.sleep(RETRY)  # let the view drop the target that failed
        left = [a for a in catalog if not a.type.stateless]
        if left:
            log.error("%d activations could not be handed over: dropped", len(left))
            catalog.drop_all(f"{cluster.address} left before it could hand this over")

    async def _hand_off(self, acts: list[Activation], target: str, grace: float) -> None:
        try:
            async with asyncio.timeout(grace):
                moved = await self.migrate_many(acts, target)
        except (ActorError, TimeoutError) as err:
            log.warning("handoff of %d activations to %s failed: %s", len(acts), target, err)
            return
        if moved < len(acts):
            log.warning("handed %d of %d activations to %s", moved, len(acts), target)


# -- large buffers out of a state and back (plain functions) ------------------------------------

Path = list[Any]
"""Where a value sits in a state: the dict keys and list indices from the top."""


def _is_buffer(value: Any) -> bool:
    """A value the data store sends as its bytes (see ``runtime.datastore.to_wire``)."""
    t = type(value)
    if t is bytes or t is bytearray or t is memoryview:
        return True
    np = sys.modules.get("numpy")  # an array can exist only if numpy was imported
    return np is not None and t is np.ndarray and not value.dtype.hasobject


def split_buffers(state: Any, threshold: int) -> tuple[Any, list[tuple[Path, Any]]]:
    """``(skeleton, leaves)``: ``state`` with every buffer of at least ``threshold`` bytes
    (inside dicts and lists, at any depth) replaced by None, and those buffers with their
    paths. The containers on a buffer's path are new (the actor's own are left as they are);
    the rest is shared with ``state``. :func:`join_buffers` puts them back."""
    leaves: list[tuple[Path, Any]] = []
    return _take_buffers(state, [], threshold, leaves), leaves


def _take_buffers(value: Any, path: Path, threshold: int, leaves: list[tuple[Path, Any]]) -> Any:
    """``value`` with its large buffers out (into ``leaves``); a plain function, not a
    closure: a recursive closure is a reference cycle, which would keep the buffers alive
    until the next garbage collection."""
    if type(value) is dict:
        out = None
        for k, v in value.items():
            new = _take_buffers(v, [*path, k], threshold, leaves)
            if new is not v:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out
    if type(value) is list:
        items = None
        for i, v in enumerate(value):
            new = _take_buffers(v, [*path, i], threshold, leaves)
            if new is not v:
                if items is None:
                    items = list(value)
                items[i] = new
        return value if items is None else items
    if _is_buffer(value) and payload_size(value) >= threshold:
        leaves.append((path, value))
        return None
    return value


def join_buffers(skeleton: Any, leaves: list[tuple[Path, Any]]) -> Any:
    """``skeleton`` (decoded afresh: its containers are ours to change) with each buffer put
    back at its path; raises ``ValueError`` for a path that does not lead into it."""
    if any(not path for path, _ in leaves):
        if len(leaves) != 1:
            raise ValueError("a state that is one buffer has one path")
        return leaves[0][1]
    for path, value in leaves:
        where = skeleton
        try:
            for step in path[:-1]:
                where = where[step]
            if not isinstance(where, (dict, list)):
                raise TypeError
            if isinstance(where, list) and not (
                type(path[-1]) is int and 0 <= path[-1] < len(where)
            ):
                raise IndexError
            where[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"the path {path!r} does not lead into the state") from None
    return skeleton
