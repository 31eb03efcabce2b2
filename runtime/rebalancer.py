"""The rebalancer: moves ``placement="data"`` activations toward what they use.

Every ``period`` seconds a hosting member folds the counters of its ``placement="data"``
activations into rates (``runtime.affinity``), asks :func:`~runtime.affinity.best_move` where
each would be cheapest, and moves the ones worth moving with the live migration
(``runtime.migration``: nothing is lost, messages follow). Moves toward one target go in one
batch, after the target agreed to take them (the control operation ``may_move``):

* a move paid for by the *data* an actor reads is always taken (the data is there: that is
  where it must run), if the target can host the type;
* a move paid for by the *calls* it makes (partner affinity) is taken only as far as it keeps
  the target's activation count within a slack of the source's (counting the moves it agreed
  to that have not arrived yet).

Two partners on two nodes must not swap places. When both nodes want to move toward each other
at once, the lower address's moves win (the other is told to take none). When moves arrive,
the target forgets its activations' calls toward the source: a partner left behind there, whose
rates would still remember the calls of the window before the move, does not follow it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final

from actors.errors import ActorError
from runtime import wire
from runtime.affinity import (
    BUDGET_PERIODS,
    DWELL_PERIODS,
    WINDOWS,
    Link,
    Move,
    best_move,
)
from runtime.context import TURN
from runtime.lifecycle import ACTIVE
from runtime.state import get_state

if TYPE_CHECKING:
    from runtime.activation import Activation
    from runtime.calls import Calls
    from runtime.catalog import Catalog
    from runtime.clock import Clock
    from runtime.cluster import Cluster
    from runtime.migration import Migrator

__all__ = ["DEFAULT_PERIOD", "Rebalancer"]

log = logging.getLogger("shoal.rebalancer")

#: Seconds between rebalancing rounds (the window, dwell and budget are counted in them).
DEFAULT_PERIOD: Final = 1.0
#: Most activations one round moves.
MAX_MOVES: Final = 256
#: How many more activations than the source a target may end up with by partner moves:
#: ``max(SLACK, SLACK_SHARE * mean of the two counts)``.
SLACK: Final = 4
SLACK_SHARE: Final = 0.1
#: A remote read of at least this many bytes brings the next round forward (at most every
#: quarter period): the actor need not read a large data set remotely for a whole period.
EAGER_BYTES: Final = 1 << 20
#: Periods a target counts the partner moves it agreed to as its own (until they arrive).
RESERVE_PERIODS: Final = 3


class Rebalancer:
    """The rebalancing loop of one hosting member, and its answers to ``may_move``."""

    __slots__ = (
        "_calls",
        "_catalog",
        "_clock",
        "_cluster",
        "_migrator",
        "_next_early",
        "_planning",
        "_reserved",
        "_task",
        "_wake",
        "links",
        "period",
        "stats",
        "window",
    )

    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        calls: Calls,
        migrator: Migrator,
        clock: Clock,
        period: float = DEFAULT_PERIOD,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._calls = calls
        self._migrator = migrator
        self._clock = clock
        self.period = period
        self.window = period * WINDOWS
        #: what this node measured of its link to each peer
        self.links: dict[str, Link] = {}
        #: peers this node is asking to take partner moves right now
        self._planning: set[str] = set()
        #: source -> [loop time, count] of the partner moves agreed to and not yet arrived
        self._reserved: dict[str, list[list[float]]] = {}
        #: counts of what its rounds did: rounds, moves planned, partner moves the targets
        #: took, moves refused (by the target), activations moved
        self.stats = {"rounds": 0, "planned": 0, "taken": 0, "refused": 0, "moved": 0}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._next_early = 0.0

    def link(self, peer: str) -> Link:
        """The measured link to ``peer`` (the assumed figures until measured)."""
        link = self.links.get(peer)
        if link is None:
            link = self.links[peer] = Link()
        return link

    def start(self) -> None:
        """Run rounds every ``period`` seconds until :meth:`close`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop the rounds (a move under way is finished or undone by the migration)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.period):
                    await wake.wait()
            wake.clear()
            # (an early round, for a large remote read, comes at most every quarter period)
            self._next_early = loop.time() + self.period / 4
            try:
                await self.round()
            except Exception:  # a bug here must not stop the node
                log.exception("rebalancing round failed")

    # -- one round ------------------------------------------------------------------------------

    def plan(self) -> dict[str, list[tuple[Activation, Move]]]:
        """The moves worth making now, by target (folds every activation's counters)."""
        cluster = self._cluster
        now = asyncio.get_running_loop().time()
        wall = self._clock.wall()
        members = cluster.membership.members
        here = cluster.address
        plans: dict[str, list[tuple[Activation, Move]]] = {}
        count = 0
        for act in list(self._catalog.tracked):
            aff = act.affinity
            if aff is None or act.status != ACTIVE:
                continue
            aff.fold(now, self.window)
            if not any(n != here for n in (*aff.data_rates, *aff.call_rates)):
                continue  # uses nothing elsewhere
            atype = act.type
            candidates = [
                a
                for a, m in members.items()
                if a != here and m.can_host(atype.name, atype.resources)
            ]
            if not candidates:
                continue
            size = _state_size(act)
            move = best_move(
                aff,
                here,
                candidates,
                self.link,
                size,
                self.window,
                now,
                wall,
                DWELL_PERIODS * self.period,
                BUDGET_PERIODS * self.period,
            )
            if move is not None:
                plans.setdefault(move.target, []).append((act, move))
                count += 1
                if count >= MAX_MOVES:
                    break
        return plans

    async def round(self) -> int:
        """Plan and make this round's moves; returns how many activations moved."""
        cluster = self._cluster
        if not cluster.serving() or not cluster.settled:
            return 0
        self.stats["rounds"] += 1
        plans = self.plan()
        if not plans:
            return 0
        self.stats["planned"] += sum(len(p) for p in plans.values())
        moved = await asyncio.gather(*(self._move_to(t, p) for t, p in plans.items()))
        return sum(moved)

    async def _move_to(self, target: str, plan: list[tuple[Activation, Move]]) -> int:
        by_data = [a for a, m in plan if m.by_data]
        partners = sorted((p for p in plan if not p[1].by_data), key=lambda p: -p[1].saving)
        loop = asyncio.get_running_loop()
        if partners:
            self._planning.add(target)
        try:
            sent = loop.time()
            try:
                answer = await self._calls.control(
                    target, "may_move", [len(partners), self._catalog.count]
                )
            except ActorError as err:
                log.debug("%s did not answer may_move: %s", target, err)
                return 0
            self.link(target).saw_round_trip(loop.time() - sent)
            taken = answer if isinstance(answer, int) and not isinstance(answer, bool) else 0
            log.debug(
                "%s -> %s: %d data moves, %d of %d partner moves taken",
                self._cluster.address,
                target,
                len(by_data),
                taken,
                len(partners),
            )
            taken_partners = [a for a, _ in partners[: max(0, taken)]]
            self.stats["taken"] += len(taken_partners)
            self.stats["refused"] += len(partners) - len(taken_partners)
            acts = [a for a in by_data + taken_partners if a.status == ACTIVE]
            if not acts:
                return 0
            try:
                # an actor busy for longer than a period moves in a later round
                moved = await self._migrator.migrate_many(acts, target, self.period)
            except ActorError as err:
                log.warning("moving %d activations to %s failed: %s", len(acts), target, err)
                return 0
            self.stats["moved"] += moved
            if moved:
                log.info("moved %d activations to %s (affinity)", moved, target)
            return moved
        finally:
            self._planning.discard(target)

    # -- the target's side ----------------------------------------------------------------------

    def may_move(self, source: str, partners: int, source_count: int) -> int:
        """How many of ``partners`` partner moves from ``source`` this node takes (data moves
        are always taken)."""
        if partners <= 0:
            return 0
        if source in self._planning and self._cluster.address < source:
            return 0  # both ends want to move toward each other: ours win
        now = asyncio.get_running_loop().time()
        # what we agreed to take from anyone lately counts as ours already: several sources
        # asking at once must not all fill the same room
        recent = now - RESERVE_PERIODS * self.period
        for peer in list(self._reserved):
            kept = [r for r in self._reserved[peer] if r[0] > recent and r[1] > 0]
            if kept:
                self._reserved[peer] = kept
            else:
                del self._reserved[peer]
        mine = self._catalog.count + int(sum(r[1] for rs in self._reserved.values() for r in rs))
        slack = max(SLACK, SLACK_SHARE * (mine + source_count) / 2)
        room = int((source_count - mine + slack) // 2)
        taken = max(0, min(partners, room))
        log.debug(
            "may_move from %s: %d partners, theirs %d, ours %d (+%d agreed), slack %.1f: %d",
            source,
            partners,
            source_count,
            self._catalog.count,
            mine - self._catalog.count,
            slack,
            taken,
        )
        if taken:
            self._reserved.setdefault(source, []).append([now, float(taken)])
        return taken

    def data_read(self, holder: str, nbytes: int, seconds: float) -> None:
        """``DataRef.get`` read ``nbytes`` held by ``holder`` in ``seconds`` (the data store's
        ``on_read``): the reading turn's activation counts it, the link learns from it."""
        if seconds > 0:
            self.link(holder).saw_transfer(nbytes, seconds)
        turn = TURN.get()
        if turn is not None and turn[0].affinity is not None:
            turn[0].affinity.fetched(holder, nbytes)
            if (
                nbytes >= EAGER_BYTES
                and holder != self._cluster.address
                and self._wake is not None
                and asyncio.get_running_loop().time() >= self._next_early
            ):
                self._wake.set()  # a large remote read: weigh the move now, not next period

    def arrived(self, source: str, count: int) -> None:
        """``count`` activations moved here from ``source``: they no longer count as agreed,
        and we forget our calls toward it (see the module docstring)."""
        for reservation in self._reserved.get(source, ()):
            took = min(reservation[1], count)
            reservation[1] -= took
            count -= int(took)
        for act in self._catalog.tracked:
            if act.affinity is not None:
                act.affinity.forget_calls(source)


def _state_size(act: Activation) -> int:
    """The encoded size of an activation's state (what a move carries)."""
    try:
        return len(wire.DEFAULT_CODEC.packb(get_state(act.instance)))
    except Exception:
        return 1 << 62
