"""The catalog: this node's table of activations, their creation and their idle collection.

Named after Orleans' Catalog. Activations are kept in a two-level dict (type name, then key) so
that the hot-path lookup allocates nothing. Idleness is tracked with a coarse clock: the catalog
sets ``Host.tick`` to the loop's time once per collection quantum and every turn stamps its
activation with the current tick, so no timer, task or queue exists per idle actor.

The catalog is the one place activations are created and dropped. On a cluster it tells a
:class:`Registrar` (the node's directory client) of each, and takes each new activation's
fencing epoch from it; messages an ended activation leaves behind go to ``redeliver``.

Activations per node are bounded (``max_activations``, ``Node(max_activations=N)``). A new
activation beyond it first deactivates the least recently used idle one (as idle collection
would: ``on_deactivate`` runs as its last turn; state is saved as on an idle deactivation),
and is refused with ``Overloaded`` if none is idle. "Least recently used" is approximated as
the CLOCK algorithm does, at no cost to the hot path: activations wait in a ring in the order
they were created; an eviction takes the first idle one from its front that was not used since
it was made or since the eviction last passed it (its turn stamp is not newer than
``Activation.passed``) and moves every one it passes (busy, or used since: a second chance) to
the back. Turns stamp the coarse idle clock, which every new activation and every eviction
also advance, so that stamps tell apart what was used after each of them. A
handoff (migration, a leaving member's actors) is never refused: it evicts if it can and is
taken all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from actors.errors import ActorError, NodeUnavailable, Overloaded, RemoteError
from runtime.activation import DONE, RAISED, Activation, Host, remote_error
from runtime.affinity import Affinity
from runtime.lifecycle import ACTIVE, DEAD, transition
from runtime.state import set_state

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.mailbox import Message

__all__ = ["DEFAULT_MAX_ACTIVATIONS", "Catalog", "Registrar"]

log = logging.getLogger("shoal.catalog")

#: Bounds of the collection quantum (seconds between idle sweeps).
MIN_QUANTUM = 0.01
MAX_QUANTUM = 60.0

#: Activations a node hosts before new ones evict idle ones (``Node(max_activations=)``).
DEFAULT_MAX_ACTIVATIONS = 100_000
#: Seconds new activations are refused without looking again after none was found idle.
_REFUSE_FOR = 0.05
#: Seconds between two log lines about evictions.
_EVICT_LOG_INTERVAL = 10.0


class Registrar(Protocol):
    """The directory client a cluster member's catalog reports to (``runtime.cluster``)."""

    def new_epoch(self) -> int:
        """A fencing epoch for a new activation."""
        ...

    def activated(self, act: Activation) -> None:
        """``act`` was created here (register it with its owner)."""
        ...

    def deactivated(self, act: Activation) -> None:
        """``act`` ended here (unregister it)."""
        ...


def _last_turn(act: Activation) -> asyncio.Future[Any] | None:
    """Start ``on_deactivate`` as ``act``'s last turn: None if it ended at once (or there is
    none), else what it settles when it ends. Raises the hook's ``RemoteError``."""
    hook = act.type.on_deactivate
    if hook is None:
        return None
    outcome, value = act.start_turn(hook, (), None, 0, 0.0, None)
    if outcome == RAISED:
        raise value
    if outcome != DONE:
        return value  # type: ignore[no-any-return]
    return None


def _lost(msg: Message, atype: ActorType, key: str) -> None:
    if msg.reply is not None and not msg.reply.done():
        msg.reply.set_exception(ActorError(f"{atype.name}/{key} was deactivated"))


class Catalog:
    """Activations of this node, by type name and key (a list per key for stateless workers).

    ``by_type`` is the table itself: the hot paths read it directly (``by_type[name][key]``)
    to find an activation without a call; everything that changes it is a method here."""

    __slots__ = (
        "_collector",
        "_epochs",
        "_evict_logged",
        "_full_until",
        "_order",
        "_quantum",
        "_wake",
        "affinity",
        "by_type",
        "count",
        "evicted",
        "host",
        "max_activations",
        "observers",
        "redeliver",
        "registrar",
        "tracked",
    )

    def __init__(self, host: Host) -> None:
        self.host = host
        self.by_type: dict[str, dict[str, Any]] = {}
        #: the directory client of a cluster member (None: embedded, epochs counted here)
        self.registrar: Registrar | None = None
        #: where messages left behind by an ended activation go (the outbound call path)
        self.redeliver: Callable[[Message, ActorType, str], None] = _lost
        #: called with ``("handoff", act)`` for an activation handed over to this node and
        #: ``("dropped", act)`` for each one :meth:`drop_all` forgets (checkers, metrics)
        self.observers: list[Callable[[str, Activation], None]] = []
        #: whether ``placement="data"`` activations keep affinity counters (a rebalancer runs)
        self.affinity = False
        #: the activations that keep them (what the rebalancer looks at, not the whole table)
        self.tracked: set[Activation] = set()
        self._epochs = itertools.count(1)
        self._quantum = MAX_QUANTUM
        self._collector: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.count = 0
        #: the bound on ``count`` (see the module docstring)
        self.max_activations = DEFAULT_MAX_ACTIVATIONS
        #: activations deactivated early to make room for new ones
        self.evicted = 0
        #: eviction candidates, oldest first (dead ones are skipped, and swept now and then)
        self._order: deque[Activation] = deque()
        self._full_until = 0.0
        self._evict_logged = -_EVICT_LOG_INTERVAL

    # -- lookup and creation --------------------------------------------------------------------

    def get(self, atype: ActorType, key: str) -> Activation | None:
        """The activation to deliver to, or None if there is none yet."""
        table = self.by_type.get(atype.name)
        if table is None:
            return None
        found = table.get(key)
        if found is None or not atype.stateless:
            return found
        return self._pick_worker(atype, key, found)

    def lookup(self, type_name: str, key: str) -> Activation | list[Activation] | None:
        """The activation (or stateless worker pool) registered for ``type_name``/``key``."""
        table = self.by_type.get(type_name)
        return None if table is None else table.get(key)

    def activation(self, atype: ActorType, key: str) -> Activation:
        """The activation to deliver to, activating the actor here if it has none."""
        if not self.host.running:
            raise ActorError("the node is not running (use `async with Node()`)")
        act = self.get(atype, key)
        if act is None:
            if self.count >= self.max_activations and not self.make_room():
                raise Overloaded(
                    f"this node hosts {self.count} activations (max_activations "
                    f"{self.max_activations}) and none is idle: {atype.name}/{key} "
                    "was not activated"
                )
            registrar = self.registrar
            if registrar is None:
                act = self.activate(atype, key)
            else:
                act = self.activate(atype, key, registrar.new_epoch())
                registrar.activated(act)
        return act

    def receive_handoff(
        self,
        atype: ActorType,
        key: str,
        state: Any,
        register: bool = True,
        moves: list[float] | None = None,
    ) -> Activation:
        """Activate an actor handed over (leave, migration, placement) with its state, or
        return the one already running here. ``register=False`` when the sender registers
        the move with the owner itself (a migration names the previous host); ``moves``:
        when the actor moved before (its move budget travels with it)."""
        known = self.lookup(atype.name, key)
        if known is not None and not isinstance(known, list):
            log.warning(
                "handoff of %s/%s: already active here, kept the running one", atype.name, key
            )
            return known
        if self.count >= self.max_activations:
            self.make_room()  # taken all the same: refusing would lose the state
        registrar = self.registrar
        epoch = None if registrar is None else registrar.new_epoch()
        act = self.activate(atype, key, epoch, state=state)
        if moves and act.affinity is not None:
            act.affinity.moves = moves
        if register and registrar is not None:
            registrar.activated(act)
        for observer in self.observers:
            observer("handoff", act)
        return act

    def drop_all(self, reason: str) -> None:
        """Forget every activation at once (the cluster took them over): no
        ``on_deactivate``; queued asks fail with ``NodeUnavailable``; owners elsewhere are
        told, where they can be reached."""
        err = NodeUnavailable(reason)
        for act in list(self):
            backlog = act.take_backlog()
            self.remove(act)
            for observer in self.observers:
                observer("dropped", act)
            for msg in backlog:
                if msg.reply is not None and not msg.reply.done():
                    msg.reply.set_exception(err)

    def activate(
        self, atype: ActorType, key: str, epoch: int | None = None, state: Any = None
    ) -> Activation:
        """Create an activation: set ``key``, run ``__init__``, apply ``state`` (handed over or
        loaded), then run ``on_activate`` as the first turn. Raises ``RemoteError`` if
        construction or a synchronous ``on_activate`` fails; an ``on_activate`` that suspends
        holds back the queue until it ends."""
        act = Activation(self.host, atype, key, next(self._epochs) if epoch is None else epoch)
        cls: Any = atype.cls
        try:
            inst = cls.__new__(cls)
            object.__setattr__(inst, "key", key)
            inst.__init__()
            if state is not None:
                set_state(inst, state)
        except Exception as exc:
            raise remote_error(exc) from None
        act.instance = inst
        if self.affinity and atype.placement == "data" and not atype.stateless:
            act.affinity = Affinity(self.host.loop.time())
            self.tracked.add(act)
        self._insert(act)
        hook = atype.on_activate
        if hook is not None:
            outcome, value = act.start_turn(hook, (), None, 0, 0.0, None)
            if outcome == RAISED:
                self.remove(act)
                raise value
            if outcome != DONE:
                transition(act, "suspend")
                value.add_done_callback(lambda f: self._activated(act, f))
        if atype.idle_after < math.inf and (
            self._collector is None or atype.idle_after / 4 < self._quantum
        ):
            self._want_quantum(atype.idle_after / 4)
        return act

    def _activated(self, act: Activation, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            if transition(act, "activated"):
                act.schedule()
            return
        err = (
            done.exception()
            if not done.cancelled()
            else RemoteError("CancelledError", "on_activate was cancelled")
        )
        assert err is not None
        self.remove(act)
        for msg in act.take_backlog():
            if msg.reply is not None and not msg.reply.done():
                msg.reply.set_exception(err)

    def _pick_worker(self, atype: ActorType, key: str, pool: list[Activation]) -> Activation:
        best = pool[0]
        for act in pool:
            if act.status == ACTIVE and act.running == 0 and act.queue is None:
                return act
            if len(act.queue or ()) + act.running < len(best.queue or ()) + best.running:
                best = act
        if len(pool) < atype.max_workers and (
            self.count < self.max_activations or self.make_room()
        ):
            return self.activate(atype, key)
        return best

    def _insert(self, act: Activation) -> None:
        table = self.by_type.get(act.type.name)
        if table is None:
            table = self.by_type[act.type.name] = {}
        if act.type.stateless:
            table.setdefault(act.key, []).append(act)
        else:
            table[act.key] = act
        self.count += 1
        order = self._order
        order.append(act)
        if len(order) > 2 * self.count + 1024:
            self._order = deque(a for a in order if a.status != DEAD)
        # what is used from now on stamps a newer tick than what was made so far (evictions
        # go by these stamps)
        host = self.host
        host.tick = max(host.loop.time(), host.tick + 1e-6)
        act.tick = act.passed = host.tick  # (its first turn stamps the same: not "used since")

    def remove(self, act: Activation, notify: bool = True) -> None:
        """Drop ``act`` from the table (final: it is DEAD); ``notify=False`` when its
        directory entry is taken care of otherwise (moved, or superseded)."""
        if notify and act.status != DEAD and self.registrar is not None:
            self.registrar.deactivated(act)
        transition(act, "remove")
        if act.affinity is not None:
            self.tracked.discard(act)
        table = self.by_type.get(act.type.name)
        if table is None:
            return
        entry = table.get(act.key)
        if entry is act:
            del table[act.key]
            self.count -= 1
        elif isinstance(entry, list) and act in entry:
            entry.remove(act)
            self.count -= 1
            if not entry:
                del table[act.key]

    def __iter__(self) -> Any:
        for table in list(self.by_type.values()):
            for entry in list(table.values()):
                if isinstance(entry, list):
                    yield from list(entry)
                else:
                    yield entry

    # -- deactivation ---------------------------------------------------------------------------

    async def deactivate(self, act: Activation) -> None:
        """Run ``on_deactivate`` as the activation's last turn, then drop it. Messages that
        arrived meanwhile are handed to a fresh activation."""
        if not transition(act, "deactivate"):
            return
        try:
            last = _last_turn(act)
            if last is not None:
                await last
        except RemoteError as err:
            log.error("on_deactivate of %s/%s failed: %s", act.type.name, act.key, err)
        finally:
            self._ended(act)

    def _ended(self, act: Activation) -> None:
        self.remove(act)
        for msg in act.take_backlog():
            self.redeliver(msg, act.type, act.key)

    def make_room(self) -> bool:
        """Deactivate the least recently used idle activation, at once if its
        ``on_deactivate`` does not suspend (see the module docstring); False if none is
        idle."""
        host = self.host
        now = host.loop.time()
        if now < self._full_until:
            return False
        order = self._order
        clock = host.tick
        victim: Activation | None = None
        for _ in range(2 * len(order)):  # (a second time round: every chance was given)
            if not order:
                break
            act = order.popleft()
            if act.status == DEAD:
                continue  # removed meanwhile: forgotten here too
            order.append(act)
            if act.running or act.queue is not None or act.status != ACTIVE:
                continue
            if act.tick > act.passed:
                act.passed = clock  # used since it was last passed: a second chance
                continue
            victim = act
            break
        # what is used from now on stamps a newer tick than any ``passed`` set above
        host.tick = max(now, clock + 1e-6)
        if victim is None:
            self._full_until = now + _REFUSE_FOR
            return False
        self._evict(victim, now)
        return True

    def _evict(self, act: Activation, now: float) -> None:
        transition(act, "deactivate")
        self.evicted += 1
        if now - self._evict_logged >= _EVICT_LOG_INTERVAL:
            self._evict_logged = now
            log.info(
                "%d activations (max_activations): deactivating idle ones early, e.g. %s/%s "
                "(%d so far)",
                self.count,
                act.type.name,
                act.key,
                self.evicted,
            )
        try:
            last = _last_turn(act)
        except RemoteError as err:
            log.error("on_deactivate of %s/%s failed: %s", act.type.name, act.key, err)
            last = None
        if last is None:
            self._ended(act)
        else:
            last.add_done_callback(lambda done: self._evicted(act, done))

    def _evicted(self, act: Activation, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            err = done.exception()
            log.error("on_deactivate of %s/%s failed: %s", act.type.name, act.key, err)
        self._ended(act)

    def _want_quantum(self, quantum: float) -> None:
        quantum = min(MAX_QUANTUM, max(MIN_QUANTUM, quantum))
        if quantum < self._quantum:
            self._quantum = quantum
            if self._wake is not None:
                self._wake.set()
        if self._collector is None and self.host.running:
            self._wake = asyncio.Event()
            self._collector = self.host.loop.create_task(self._collect_forever())

    async def _collect_forever(self) -> None:
        assert self._wake is not None
        while True:
            try:
                async with asyncio.timeout(self._quantum):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            host = self.host
            host.tick = max(host.loop.time(), host.tick)
            await self.collect_idle()

    async def collect_idle(self) -> int:
        """Deactivate every activation idle for its type's ``idle_after``; returns how many."""
        tick = self.host.tick
        idle: list[Activation] = []
        for table in list(self.by_type.values()):
            for entry in table.values():
                for act in entry if isinstance(entry, list) else (entry,):
                    if (
                        act.running == 0
                        and act.queue is None
                        and act.status == ACTIVE
                        and tick - act.tick >= act.type.idle_after
                    ):
                        idle.append(act)
        for act in idle:
            if act.running == 0 and act.queue is None:
                await self.deactivate(act)
        return len(idle)

    async def close(self) -> None:
        """Stop collecting and deactivate everything (``on_deactivate`` runs for each)."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        for act in list(self):
            if act.status == ACTIVE:
                await self.deactivate(act)
            else:
                transition(act, "remove")
