"""SWIM failure detection and gossip dissemination, as a sans-io state machine.

A :class:`Swim` holds one node's view of the cluster: every member's address, incarnation,
status (:class:`Status`) and opaque ``meta`` (the node stores there what the member serves).
It does no I/O and reads no clock: the caller passes ``now`` (monotonic seconds) and a
``random.Random``, feeds it what arrives (:meth:`Swim.receive`), calls :meth:`Swim.tick` at
least every ``period / 4``, sends the ``(address, message)`` pairs every call returns and
reads :meth:`Swim.drain_events`. Messages are plain msgpack-able lists; the node wraps them in
its own control envelopes. ``sender`` must be the member address the message came from (it
is the evidence that the sender is reachable, and where tombstone notices go); acks are
matched by sequence number, so a relayed ack counts for the probed member.

Protocol -- SWIM (Das, Gupta & Motivala, 2002) with suspicion and infection-style
dissemination, plus Lifeguard (Dadgar, Phillips & Currey, 2018: local health, dynamic
suspicion, buddy system):

* **Probing.** Every ``period`` a node pings the next member of a shuffled round-robin list
  (reshuffled after each pass; newcomers go in at a random later position; a member we hear
  is SUSPECT goes next, so that our probe confirms the suspicion or lets it refute). Without
  an ack after ``ping_timeout`` it pings again and asks ``indirect_probes`` random ALIVE
  members to ping the target for it (``ping-req``; they relay the ack, or send a ``nack``
  if the target has not acked within ``ping_timeout / 2``). If the period ends without any
  ack, the target becomes SUSPECT. Pings carry the sender's own record, so a member learns of
  whoever probes it even if the gossip about them missed it.
* **Local health** (Lifeguard's LHM). A node keeps a score, 0..``health_max``: +1 when a
  probe of its fails and it had no helper to ask, or, if it asked helpers, +1 per helper
  whose nack (or relayed ack) never came (within half a period after the probe's end: if
  they all answer, the target is at fault, not us); +1 when it must refute a suspicion of
  itself; +1 on a stall of its own (below); -1 on each acked probe. Its own probing --
  the period, ``ping_timeout`` and the failure deadline -- runs ``score + 1`` times slower:
  a node that is slow itself (loop stalled, CPU-starved, messages late) waits longer before
  accusing anyone. The reachability checks below are scaled the same way.
* **Suspicion.** A SUSPECT member that does not refute within its suspicion timeout (timed
  from when *this* node first heard of it) is declared DEAD -- subject to the quorum rule
  below. Lifeguard's *dynamic* timeout: with ``c`` independent confirmations (distinct
  members that suspected it at that incarnation: a SUSPECT record names its accuser, and a
  member whose own probe of an already-SUSPECT member fails gossips its confirmation) of
  ``k = min(suspicion_confirmations, view_size - 2)`` expected, it is ``max(min, max - (max -
  min) * ln(c + 1) / ln(k + 1))``, from ``max = min * suspicion_max_mult`` for a lone
  accuser down to ``min`` at ``k`` confirmations (``k < 1``: always ``min``). ``min`` is
  ``suspicion_timeout`` up to 10 members and grows with ``log10(view_size)`` beyond
  (:attr:`Swim.suspicion_timeout`). A member refutes by bumping its incarnation and
  gossiping ALIVE (and sending it straight back to whoever told it). Lifeguard's *buddy
  system*: every message to a member we hold SUSPECT carries that suspicion first, and a
  node that finds a suspect itself tells it at once, so it hears it and refutes.
* **Dissemination.** Every change is queued and piggybacked on pings, acks and gossip
  messages (at most ``max_piggyback`` per message, least-sent first); every
  ``gossip_interval`` a node with queued news also sends it to ``gossip_fanout`` random
  members. An update is sent ``ceil(retransmit_mult * ln(n + 1))`` times (n = live members),
  then dropped; newer news about a member replaces the queued one.
* **Join / anti-entropy.** :meth:`Swim.join` sends ``join`` to the seeds (retried every
  ``join_retry`` until a ``sync`` arrives); a seed adds the newcomer, gossips it and answers
  with its full member list (tombstones included): a newcomer learns everyone in one round
  trip. Every ``sync_interval`` (and once ``4 * period`` after joining, for members that
  joined at the same time) a node also pushes its list to a random member, which merges it
  and answers with its own. What a ``sync`` teaches is re-gossiped like any other
  change (as memberlist does): in a burst of joins the early joiners know few members and
  only the late ones, who got the full list, can spread everyone's news.
* **Leave.** :meth:`Swim.leave` sends LEFT for ourselves to every member: they drop us at
  once instead of after failure detection.
* **Own stalls.** If more than ``2 * period`` passed since the previous tick (or the
  join), *we* were stalled (GC, SIGSTOP, overload): the probes in flight are abandoned, the
  suspicion timers pushed back by the gap (so our pause never makes us declare anyone dead)
  and our health score goes up. A stall of (minimum) suspicion timeout plus a period or
  more is long enough for the others to have declared us dead (a probe of us fails after a
  period, then the timeout runs) -- but they may not have: a 2-node cluster has no quorum
  without us, and a suspicion may have reached us in time to refute. So we enter **doubt**
  (event ``("doubt", me, None)``, :attr:`Swim.doubting`) on the first tick or message after
  the stall, unless we are alone in our view. In doubt :meth:`Swim.has_quorum` is False
  (serve nothing, hold requests), we remove no one, and we check (ping, with ping-req) every
  live member not yet heard from, at the quorum-check rate (below; at least one per ``period
  / 4``). Doubt ends either way:

  - *trusted*: direct acks to pings we sent in doubt (however late: under overload the
    peers are slow too), each carrying our current incarnation and nothing against us (no
    suspicion, no tombstone of ours), from members that with us make a majority of the
    view -- they hold us ALIVE at this incarnation. We emit ``("trusted", me, None)`` and
    keep everything (activations, incarnation). Other
    messages do not count: held in buffers during the stall, they may predate our death. A
    member that still suspects us says so first in its ack (buddy system): we refute, and
    only acks at the new incarnation count from then on.
  - *dead*: we hear our DEAD/LEFT tombstone (a member holding it puts it first in its answer
    to us): ``self_dead`` as below, and no ``trusted`` follows.

  A member that revives us because of our refutation also puts our old tombstone first in
  its next message to us (it may overtake the one that told us), so its ack cannot pass for
  trust. If a majority never answers, doubt lasts (as a minority's lack of quorum does); a
  tombstone reaped after ``dead_retention`` is not heard, so a node in doubt that long
  should drop its activations.

Update precedence (about another member; ``i`` = the incarnation we hold for it):

* ALIVE ``j`` applies if ``j > i``, whatever the status; over DEAD/LEFT it is a new member.
* SUSPECT ``j`` applies if ``j > i``, or ``j == i`` while we hold it ALIVE.
* DEAD / LEFT ``j`` applies if ``j >= i`` while we hold it ALIVE/SUSPECT, over a tombstone
  only if ``j > i``: DEAD and LEFT are final for an incarnation. A dead member comes back
  only with a higher incarnation, as a new member -- and we then send it its tombstone, in
  case it came back by merely refuting a suspicion and never heard it had been declared dead.

About ourselves: SUSPECT (or ALIVE) at an incarnation ``>=`` ours makes us bump ours past it
and gossip ALIVE (refutation); stale hearsay makes us re-assert our record to its sender.
DEAD or LEFT at an incarnation ``>=`` the one we last (re)joined with means the cluster gave
up on this life of ours and may have reactivated our actors elsewhere: we emit
``("self_dead", me, None)`` -- the node must drop every activation --, move to a higher
incarnation, forget our own suspicions (our view was evidently unreliable) and rejoin
through the member that told us and random ALIVE ones (three in all). A member that hears
from a sender it holds DEAD/LEFT puts that tombstone first in its answer (or sends it on its
own), so a revived node learns its fate on first contact.

Quorum / partition rule -- the project's rule; the node must not activate or serve actors
while :meth:`Swim.has_quorum` is False:

* ``view_size`` is the last agreed size of the view: the live members (ALIVE and SUSPECT,
  ourselves included). Joins grow it; only removals shrink it, and a removal is a graceful
  LEFT, a DEAD learned from another member, or our own SUSPECT -> DEAD decision, which needs
  quorum.
* ``has_quorum()`` needs ``alive_count > view_size // 2``, where ``alive_count`` counts the
  ALIVE members (a SUSPECT one is unreachable) and ourselves -- and no failed quorum
  confirmation (below), and no doubt after a stall of ours ("Own stalls" above).
* Our own SUSPECT -> DEAD decision needs more: a *confirmed* majority -- more than
  ``view_size // 2`` of us plus ALIVE members we have direct evidence of (a message from
  them, an ack) since ``now - timeout``, i.e. since the suspicions being decided began.
  Counting every member not yet suspected is not enough, because a partition is noticed
  member by member: a 2-node minority of 5 that has suspected two of the three far members
  would count 3 of 5 and remove them.
* So, while no majority is confirmed since the newest suspicion, a node checks (pings, with
  ping-req) the ALIVE members it lacks such evidence of -- every node in a view of up to 64,
  only those that found a suspect themselves in a larger one; at ``quorum_probes`` per
  ``period / 4`` or more, so that a majority is covered within half a timeout. A failed
  check suspects no one (under overload, checking everyone must not snowball into
  suspecting everyone), but when the failed checks leave no way to a majority -- or no
  majority was confirmed for a whole timeout -- ``has_quorum()`` turns False, until a
  majority is confirmed again or no suspicion is pending. On a minority side that happens
  about a period after its first own suspicion, ahead of the majority side's verdict (which
  needs a whole timeout): over 660 random splits of 5-9 nodes in the simulator the minority
  had stopped at least 0.23 s (typically ~1 s) before the majority's first DEAD.
* Our own verdicts use each suspicion's dynamic timeout; the confirmation window and the
  checks' pace use the minimum one (:attr:`Swim.suspicion_timeout`), which is conservative.
* A suspicion that times out without quorum is *not* turned into DEAD: the member stays
  SUSPECT ("unreachable"), nobody is removed, ``view_size`` stays, ``has_quorum()`` stays
  False. When quorum comes back, pending suspicions are re-armed for a full timeout and
  re-gossiped, so members that were merely cut off can refute.
* Example, 5 nodes split 3/2: the 3-side confirms 3 > 5 // 2, removes the 2 (view 3) and
  keeps serving; the 2-side never reaches quorum, removes nobody, and must refuse to serve.
  After the heal, the 2-side nodes contact the 3-side, get their tombstones, emit
  ``self_dead`` and rejoin as new incarnations; the view converges to 5 everywhere.
* Consequences: a 2-node cluster cannot survive losing a node (1 > 1 is false); with an even
  split nobody has quorum. Tombstones are kept ``dead_retention`` seconds; a node cut off for
  longer is forgotten rather than told it was dead, so the node should also drop the
  activations it held while it had no quorum.

Detection time of a crashed member, defaults (period 0.5 s, suspicion 1.5 s..4.5 s, k=2),
5 nodes: the first probe of it comes within 1-2 periods on average (each of the 4 survivors
probes one member per period, round-robin), it fails at the end of its period, the
survivors hear the suspicion within a gossip round or two and probe the suspect next: their
failed probes confirm it, which brings the timeout down to the minimum, and the first to
time out confirms its quorum, declares DEAD and gossips it. In the simulator
(``tests/test_swim.py``, 1-10 ms latency, 300 kills, seeds 100-399): mean 2.4 s from crash
to every survivor agreeing, p99 3.5 s, max 3.7 s (the same as with Lifeguard off). The
worst case is the round-robin's: ``~(2 * (n - 1) - 1) * period`` until the first probe if
every survivor just passed the victim, plus ``period + timeout + ~2 gossip rounds`` --
bounded in practice by the 4 independent probe orders. (With ``suspicion_timeout=2.0`` add
0.5 s.) In larger views the timeout grows (x1.3 at 20 members, 200 kills: mean 3.0 s, p99
4.3 s, max 5.3 s, when a first probe comes after 3 s). A lone accuser (no member confirms:
it alone cannot reach the victim) waits the maximum timeout.

Wire formats (``record`` = ``[address, incarnation, status, meta]``, ``status`` the int of a
:class:`Status`, ``meta`` None for DEAD/LEFT; a SUSPECT record may add its accuser's address
as a fifth item; ``updates`` = a list of records):

* ``["ping", seq, updates]`` -- answered ``["ack", seq, updates]`` to the sender.
* ``["ack", seq, updates]``
* ``["ping-req", seq, target, updates]`` -- ping ``target``, relay its ack to the sender as
  ``["ack", seq, updates]``, or send ``["nack", seq, updates]`` if no ack came within
  ``ping_timeout / 2``.
* ``["nack", seq, updates]`` -- the helper is alive and tried (local health).
* ``["gossip", updates]``
* ``["join", record]`` -- answered ``["ping", seq, []]``; the joiner's ack to it (from the
  joiner's address) admits it, answered ``["sync", records, False]``.
* ``["sync", records, want_reply]`` -- merged; answered with ours if ``want_reply``.
* ``["leave", address, incarnation]``

:meth:`Swim.receive` validates the whole message before applying any of it and raises
``ValueError`` -- nothing else -- on a malformed one. Cost: a tick is O(probes in flight +
fanout + queued news), plus O(n) while suspicions are pending (counting confirmed members);
a message is O(its records + queued news); nothing is O(n^2) per tick. (In a view of up
to 64, a pending suspicion makes every node check the others: O(view) pings each.)
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

__all__ = ["MAX_AHEAD", "Event", "Message", "Outgoing", "Status", "Swim", "SwimConfig"]

Message: TypeAlias = list[Any]
"""A protocol message: a msgpack-able list whose first item names its kind."""

Outgoing: TypeAlias = list[tuple[str, Message]]
"""Messages to send, as ``(address, message)`` pairs."""

Event: TypeAlias = tuple[str, str, Any]
"""``(kind, address, meta-or-None)``; kinds: alive, suspect, dead, left, self_dead, doubt,
trusted (see :meth:`Swim.drain_events`)."""

_Record: TypeAlias = tuple[str, int, "Status", Any, "str | None"]
"""``(address, incarnation, status, meta, accuser)``; the accuser only for SUSPECT, if known."""

_INT_LIMIT = 2**63
"""Exclusive upper bound of sequence numbers."""

_INC_LIMIT = 2**62
"""Exclusive upper bound of incarnations from the wire (ours may be bumped past them)."""

MAX_AHEAD = 300.0
"""Seconds an incarnation may be ahead of this node's wall clock (see ``Swim._not_ahead``)."""

_MAX_JOINS = 64
"""Joins that may wait for their joiner's ack at once."""

_MAX_ADDRESS = 1024
"""Longest address accepted from the wire."""

_CHECK_ALL_VIEW = 64
"""Up to this view size every node with a pending suspicion checks reachability; beyond, only
the nodes that found a suspect themselves (checks cost O(view) messages per node)."""

_EPS = 1e-9
"""Tolerance on deadlines, so ticks at exact multiples of the period are not missed."""


class Status(IntEnum):
    """A member's status; the int value is what goes on the wire."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """Protocol timings and sizes (seconds, counts). See the module docstring."""

    period: float = 0.5
    """Protocol period: one probe per member per period."""
    ping_timeout: float = 0.2
    """Wait for a direct ack before asking others (ping-req); must be below ``period``."""
    indirect_probes: int = 3
    """k: members asked to ping an unresponsive target for us."""
    suspicion_timeout: float = 1.5
    """SUSPECT -> DEAD after this long without refutation (with quorum), for up to 10
    members; beyond, it grows with ``log10(view_size)`` (refutations need more gossip
    rounds to spread), e.g. x2 at 100 members, x3 at 1,000."""
    gossip_interval: float = 0.2
    """How often queued updates are pushed to ``gossip_fanout`` random members."""
    gossip_fanout: int = 3
    """Members each gossip round is sent to."""
    max_piggyback: int = 32
    """Most updates carried by one message."""
    retransmit_mult: float = 3.0
    """lambda: each update is sent ``ceil(lambda * ln(n + 1))`` times."""
    sync_interval: float = 15.0
    """Full-state push-pull with a random member this often (and ``4 * period`` after
    joining); 0 disables it."""
    join_retry: float = 1.0
    """Resend ``join`` to the seeds this often until a ``sync`` answers."""
    dead_retention: float = 3600.0
    """Keep DEAD/LEFT tombstones this long (they reject stale ALIVE hearsay)."""
    quorum_probes: int = 8
    """Reachability checks (extra probes) per ``period / 4`` while confirming a quorum (at
    least; more in a large view). 0 disables them (except in doubt: at least one then)."""
    health_max: int = 8
    """Lifeguard's Local Health Multiplier: our health score ranges 0..``health_max`` and
    our own probing runs at ``period`` and ``ping_timeout`` times ``score + 1``. 0
    disables it."""
    suspicion_max_mult: float = 3.0
    """Lifeguard's dynamic suspicion timeout: a suspicion starts at ``suspicion_timeout``
    times this and shrinks logarithmically to ``suspicion_timeout`` as independent
    confirmations arrive. 1 disables it (a fixed ``suspicion_timeout``)."""
    suspicion_confirmations: int = 2
    """k: independent confirmations (other members suspecting the same member) that bring a
    suspicion down to ``suspicion_timeout``; capped at ``view_size - 2``. 0 disables the
    dynamic timeout (a fixed ``suspicion_timeout``)."""

    def __post_init__(self) -> None:
        for name in (
            "period",
            "ping_timeout",
            "suspicion_timeout",
            "gossip_interval",
            "join_retry",
            "dead_retention",
            "retransmit_mult",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"SwimConfig.{name} must be a positive number, got {value!r}")
        if not self.ping_timeout < self.period:
            raise ValueError("SwimConfig.ping_timeout must be shorter than period")
        if not (math.isfinite(self.sync_interval) and self.sync_interval >= 0):
            raise ValueError("SwimConfig.sync_interval must be >= 0 (0 disables it)")
        for name in ("indirect_probes", "gossip_fanout", "max_piggyback", "quorum_probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SwimConfig.{name} must be a non-negative int, got {value!r}")
        if self.max_piggyback < 1:
            raise ValueError("SwimConfig.max_piggyback must be at least 1")
        for name in ("health_max", "suspicion_confirmations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
                raise ValueError(f"SwimConfig.{name} must be an int in 0..64, got {value!r}")
        mult = self.suspicion_max_mult
        if not (
            isinstance(mult, int | float)
            and not isinstance(mult, bool)
            and math.isfinite(mult)
            and 1 <= mult <= 100
        ):
            raise ValueError(f"SwimConfig.suspicion_max_mult must be in [1, 100], got {mult!r}")


class _Member:
    """What we know of another member (live or a tombstone)."""

    __slots__ = (
        "accuser",
        "accusers",
        "address",
        "checked",
        "heard",
        "incarnation",
        "meta",
        "notice",
        "since",
        "status",
        "unanswered",
        "verify",
    )

    def __init__(
        self, address: str, incarnation: int, status: Status, meta: Any, since: float
    ) -> None:
        self.address = address
        self.incarnation = incarnation
        self.status = status
        self.meta = meta
        self.since = since
        """When the current status began (suspicion start, death time)."""
        self.heard = -math.inf
        """When we last had direct evidence of it: a message from it, an ack for a probe."""
        self.checked = -math.inf
        """When we last sent it a reachability check (quorum verification)."""
        self.unanswered = -math.inf
        """When we sent it the first check it has not answered yet (if ``> heard``)."""
        self.verify = False
        """Whether its suspicion makes us check the others' reachability (quorum): it is our
        own finding (our probe failed), or it was re-armed when our quorum came back."""
        self.accusers: set[str] = set()
        """While SUSPECT: the members known to have suspected it independently (the first
        one and the confirmations; Lifeguard's dynamic suspicion timeout)."""
        self.accuser: str | None = None
        """While SUSPECT: the accuser named in the record we gossip about it."""
        self.notice: list[Any] | None = None
        """The tombstone of its previous life, if it came back by a mere refutation: it goes
        first in our next message to it (see :meth:`Swim._piggyback`)."""

    def record(self) -> list[Any]:
        """The wire record ``[address, incarnation, status, meta]`` (``+ [accuser]`` for a
        SUSPECT one whose accuser we know)."""
        if self.status is Status.SUSPECT and self.accuser is not None:
            return [self.address, self.incarnation, int(self.status), self.meta, self.accuser]
        return [self.address, self.incarnation, int(self.status), self.meta]


class _Broadcast:
    """A queued update and how many times it has been sent."""

    __slots__ = ("address", "record", "transmits")

    def __init__(self, address: str, record: list[Any]) -> None:
        self.address = address
        self.record = record
        self.transmits = 0


class _Probe:
    """A probe in flight: a ping awaiting its ack (directly or relayed)."""

    __slots__ = (
        "check",
        "ends",
        "escalates",
        "helpers",
        "indirect",
        "nacked",
        "seq",
        "target",
    )

    def __init__(self, target: str, seq: int, escalates: float, ends: float, check: bool) -> None:
        self.target = target
        self.seq = seq
        self.escalates = escalates
        """When to escalate: ``ping_timeout`` (times our health multiplier) after the ping."""
        self.ends = ends
        """When it fails without an ack: ``period`` (times our health multiplier) after."""
        self.check = check
        """A reachability check: it gathers evidence, its failure suspects no one."""
        self.indirect = False
        """Whether it was escalated (re-ping and ping-req)."""
        self.helpers: tuple[str, ...] = ()
        """The members asked to ping the target for us (ping-req)."""
        self.nacked: set[str] = set()
        """The helpers that answered (nack or relayed ack)."""


def _transmits(broadcast: _Broadcast) -> int:
    return broadcast.transmits


class Swim:
    """One node's SWIM state machine.

    Args:
        me: our address (how the other members reach us).
        meta: what we advertise (msgpack-able); see :meth:`update_meta`.
        incarnation: our starting incarnation; a restarted node should start above its
            previous life (if it does not, the cluster tells it and it bumps past it).
        rng: the source of every random choice (probe order, ping-req helpers, gossip
            targets), for deterministic tests.
        config: timings and sizes; defaults to :class:`SwimConfig()`.
    """

    __slots__ = (
        "_cfg",
        "_doubt_pings",
        "_doubting",
        "_events",
        "_had_quorum",
        "_health",
        "_inc",
        "_join_inc",
        "_join_targets",
        "_joined",
        "_joins",
        "_last_tick",
        "_left",
        "_live",
        "_live_pos",
        "_me",
        "_members",
        "_meta",
        "_nack_waits",
        "_next_check_at",
        "_next_gossip_at",
        "_next_join_at",
        "_next_probe_at",
        "_next_sync_at",
        "_probe_order",
        "_probe_pos",
        "_probes",
        "_queue",
        "_quorum_lost",
        "_relays",
        "_rng",
        "_seq",
        "_suspects",
        "_tombstones",
        "_trust",
        "_trust_inc",
        "_unconfirmed_since",
        "_view_size",
        "_wall",
    )

    def __init__(
        self,
        me: str,
        meta: Any,
        incarnation: int,
        rng: random.Random,
        config: SwimConfig | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(me, str) or not me:
            raise ValueError("me must be a non-empty str")
        if (
            isinstance(incarnation, bool)
            or not isinstance(incarnation, int)
            or not 0 <= incarnation < _INC_LIMIT
        ):
            raise ValueError(f"incarnation must be a non-negative int, got {incarnation!r}")
        self._me = me
        self._meta = meta
        self._wall = wall
        self._inc = incarnation
        self._join_inc = incarnation
        self._left = False
        self._rng = rng
        self._cfg = config if config is not None else SwimConfig()
        self._members: dict[str, _Member] = {}
        self._live: list[str] = []
        self._live_pos: dict[str, int] = {}
        self._suspects: dict[str, _Member] = {}
        self._view_size = 1
        self._had_quorum = True
        self._unconfirmed_since: float | None = None
        self._quorum_lost = False
        self._doubting = False
        self._doubt_pings: dict[int, tuple[str, int]] = {}
        self._trust: set[str] = set()
        self._trust_inc = incarnation
        self._health = 0
        self._nack_waits: dict[int, tuple[_Probe, float]] = {}
        self._queue: dict[str, _Broadcast] = {}
        self._events: list[Event] = []
        # Sequence numbers start at a random point: an ack cannot be forged by counting.
        self._seq = rng.getrandbits(40)
        self._probes: dict[int, _Probe] = {}
        self._probe_order: list[str] = []
        self._probe_pos = 0
        self._next_probe_at: float | None = None
        self._next_gossip_at = -math.inf
        self._next_check_at = -math.inf
        self._next_sync_at: float | None = None
        self._last_tick: float | None = None
        self._relays: dict[int, tuple[str, int, float, float]] = {}
        self._tombstones: deque[tuple[float, str, int]] = deque()
        self._join_targets: list[str] = []
        #: joins waiting for the joiner's ack to our ping: seq -> (its record, expiry)
        self._joins: dict[int, tuple[_Record, float]] = {}
        self._joined = True
        self._next_join_at = math.inf

    # -- read-only view -------------------------------------------------------

    @property
    def me(self) -> str:
        """Our address."""
        return self._me

    @property
    def incarnation(self) -> int:
        """Our current incarnation."""
        return self._inc

    @property
    def meta(self) -> Any:
        """What we advertise."""
        return self._meta

    @property
    def view_size(self) -> int:
        """The last agreed view size (live members, ourselves included); see the module doc."""
        return self._view_size

    @property
    def alive_count(self) -> int:
        """ALIVE members plus ourselves (SUSPECT ones count as unreachable)."""
        return len(self._live) - len(self._suspects) + 1

    @property
    def left(self) -> bool:
        """Whether :meth:`leave` was called (the instance is then inert)."""
        return self._left

    @property
    def suspicion_timeout(self) -> float:
        """The (minimum) suspicion timeout in force: ``config.suspicion_timeout`` scaled by
        ``max(1, log10(view_size))``. A suspicion starts at ``suspicion_max_mult`` times
        this and shrinks to it with confirmations (see :meth:`_suspect_timeout`)."""
        return self._cfg.suspicion_timeout * max(1.0, math.log10(self._view_size))

    def _suspect_timeout(self, m: _Member) -> float:
        """Lifeguard's dynamic suspicion timeout for ``m``: with ``c`` independent
        confirmations of ``k`` expected, ``max(min, max - (max - min) * ln(c + 1) /
        ln(k + 1))``, where ``min`` is :attr:`suspicion_timeout` and ``max`` that times
        ``suspicion_max_mult``; ``k = min(suspicion_confirmations, view_size - 2)`` (the
        suspect and ourselves do not confirm) and ``k < 1`` means ``min``."""
        low = self.suspicion_timeout
        cfg = self._cfg
        k = min(cfg.suspicion_confirmations, self._view_size - 2)
        if k < 1 or cfg.suspicion_max_mult <= 1:
            return low
        high = low * cfg.suspicion_max_mult
        confirmations = min(k, max(0, len(m.accusers) - 1))
        return max(low, high - (high - low) * math.log(confirmations + 1) / math.log(k + 1))

    def _scale(self) -> int:
        """Our Local Health Multiplier: how many times slower our own probing runs."""
        return self._health + 1

    def _health_delta(self, delta: int) -> None:
        self._health = max(0, min(self._cfg.health_max, self._health + delta))

    @property
    def doubting(self) -> bool:
        """Whether we are in *doubt* after a long stall of ours: we may have been declared
        dead meanwhile, so :meth:`has_quorum` is False until a majority of the view acks us
        at our current incarnation (event ``trusted``) or we hear our tombstone (event
        ``self_dead``). See "Own stalls" in the module doc."""
        return self._doubting

    @property
    def health(self) -> int:
        """Our Local Health Multiplier score, 0..``config.health_max`` (0: healthy); our
        own probing runs ``health + 1`` times slower."""
        return self._health

    def has_quorum(self) -> bool:
        """Whether we reach a majority of the last agreed view: ``alive > view_size // 2``,
        and, while suspicions are pending, we have not failed for a whole suspicion timeout
        to confirm such a majority (see the module doc), and we are not :attr:`doubting`.

        The node must not activate or serve actors without it. Always False after leave.
        """
        return (
            not self._left
            and not self._doubting
            and not self._quorum_lost
            and self._reaches_majority()
        )

    def majority_heard_since(self) -> float:
        """The latest time ``T`` such that we and the ALIVE members we had direct evidence of
        (a message, an ack) since ``T`` make a majority of the view; ``inf`` when we alone are
        a majority, ``-inf`` when no majority was ever heard. The runtime's lease on serving
        runs from here: the others cannot declare us dead sooner than a probe period plus the
        (minimum) suspicion timeout after they last heard from us, and in a partition that is
        when we last heard from them."""
        need = self._view_size // 2  # members besides ourselves
        if need <= 0:
            return math.inf
        members = self._members
        heard = sorted(
            (members[a].heard for a in self._live if members[a].status is Status.ALIVE),
            reverse=True,
        )
        return heard[need - 1] if len(heard) >= need else -math.inf

    def check_members(self, stale_since: float, now: float) -> Outgoing:
        """Ping (as reachability checks, which suspect no one) the ALIVE members we have not
        heard from since ``stale_since`` and are not probing already: the runtime calls this
        before its lease runs out, so a quiet cluster renews it."""
        out: Outgoing = []
        probing = {p.target for p in self._probes.values()}
        members = self._members
        for address in self._live:
            m = members[address]
            if m.status is Status.ALIVE and m.heard < stale_since and address not in probing:
                self._start_probe(address, now, out, check=True)
        return out

    def _reaches_majority(self) -> bool:
        return self.alive_count > self._view_size // 2

    def members(self) -> dict[str, tuple[int, Status, Any]]:
        """The live view (ALIVE and SUSPECT, ourselves included): address -> (inc, status, meta)."""
        view: dict[str, tuple[int, Status, Any]] = {}
        if not self._left:
            view[self._me] = (self._inc, Status.ALIVE, self._meta)
        members = self._members
        for address in self._live:
            m = members[address]
            view[address] = (m.incarnation, m.status, m.meta)
        return view

    def record(self, address: str) -> tuple[int, Status, Any] | None:
        """What we hold about ``address`` (tombstones included), or None if unknown."""
        if address == self._me:
            status = Status.LEFT if self._left else Status.ALIVE
            return (self._inc, status, self._meta)
        m = self._members.get(address)
        return None if m is None else (m.incarnation, m.status, m.meta)

    def drain_events(self) -> list[Event]:
        """The events since the last drain, in order of occurrence.

        ``("alive", address, meta)`` -- a member is new, came back, refuted a suspicion or
        changed its meta (treat it as an upsert); ``("suspect", address, None)``;
        ``("dead", address, None)``; ``("left", address, None)``; ``("self_dead", me, None)``
        -- the cluster declared *us* dead: drop every activation (we rejoin by ourselves);
        ``("doubt", me, None)`` -- after a long stall of ours we may have been declared dead:
        :meth:`has_quorum` is False (hold requests, keep the activations) until either
        ``("trusted", me, None)`` -- a majority still holds us ALIVE: go on with everything --
        or ``("self_dead", me, None)``. Every ``doubt`` is followed by exactly one of the two
        (unless the instance leaves first).
        """
        events = self._events
        self._events = []
        return events

    # -- commands ---------------------------------------------------------------

    def join(self, seeds: Iterable[str], now: float) -> Outgoing:
        """Ask the seeds to add us; retried by :meth:`tick` until one answers with a sync.

        With no seed other than ourselves we are the first member and nothing is sent.
        """
        targets: list[str] = []
        for seed in seeds:
            if not isinstance(seed, str) or not seed:
                raise ValueError(f"a seed must be a non-empty str, got {seed!r}")
            if seed != self._me and seed not in targets:
                targets.append(seed)
        if self._left:
            return []
        if self._last_tick is None:
            self._last_tick = now  # a stall before our first tick counts from here
        self._join_targets = targets
        self._joined = not targets
        self._next_join_at = now + self._cfg.join_retry
        return self._join_messages()

    def leave(self, now: float) -> Outgoing:
        """Leave gracefully: tell every member we are LEFT. The instance is inert afterwards."""
        if self._left:
            return []
        self._left = True
        message: Message = ["leave", self._me, self._inc]
        return [(address, message) for address in self._live]

    def update_meta(self, meta: Any) -> None:
        """Advertise new ``meta``: bumps our incarnation and gossips it."""
        self._meta = meta
        self._inc += 1
        self._enqueue(self._me, self._self_record())

    def tick(self, now: float) -> Outgoing:
        """Advance timers -- probes, ping-req, suspicion timeouts, quorum checks, gossip,
        push-pull, join retry -- and return the messages to send.

        Call at least every ``period / 4`` (a longer gap is taken as a stall of ours).
        """
        if self._left:
            return []
        cfg = self._cfg
        out: Outgoing = []
        self._check_stall(now, out)
        self._last_tick = now

        quorum = self._reaches_majority()
        if quorum and not self._had_quorum:
            self._rearm_suspicions(now)
        self._had_quorum = quorum

        if not self._joined and now + _EPS >= self._next_join_at:
            self._next_join_at = now + cfg.join_retry
            out.extend(self._join_messages())

        # Probes in flight: judge those whose period is over, escalate the slow ones.
        if self._probes:
            for probe in list(self._probes.values()):
                if now + _EPS >= probe.ends:
                    del self._probes[probe.seq]
                    self._probe_failed(probe, now, out)
                elif not probe.indirect and now + _EPS >= probe.escalates:
                    probe.indirect = True
                    self._escalate(probe, out)
        if self._nack_waits:
            for seq, (probe, judge_at) in list(self._nack_waits.items()):
                if now + _EPS >= judge_at:
                    del self._nack_waits[seq]
                    self._health_delta(len(probe.helpers) - len(probe.nacked))
        # The protocol period (times our health multiplier): the next member in round-robin.
        if self._next_probe_at is None:
            self._next_probe_at = now
        if now + _EPS >= self._next_probe_at:
            next_target = self._next_target()
            if next_target is not None:
                self._start_probe(next_target, now, out)
            self._next_probe_at += cfg.period * self._scale()
            if self._next_probe_at <= now:
                self._next_probe_at = now + cfg.period * self._scale()

        # Suspicion timeouts: only with a confirmed quorum (the partition rule).
        if self._suspects:
            self._settle_suspicions(now, quorum, out)
        else:
            self._unconfirmed_since = None
            self._quorum_lost = False
        if self._doubting:
            self._check_doubt(now, out)

        # Housekeeping.
        if self._relays:
            for seq, (origin, origin_seq, expiry, nack_at) in list(self._relays.items()):
                if expiry <= now:
                    del self._relays[seq]
                elif now + _EPS >= nack_at:  # no ack from the target yet: tell the origin
                    self._relays[seq] = (origin, origin_seq, expiry, math.inf)
                    out.append((origin, ["nack", origin_seq, self._piggyback(origin)]))
        tombstones = self._tombstones
        while tombstones and tombstones[0][0] + cfg.dead_retention <= now:
            _, address, incarnation = tombstones.popleft()
            tomb = self._members.get(address)
            if tomb is not None and tomb.status >= Status.DEAD and tomb.incarnation == incarnation:
                del self._members[address]
                self._queue.pop(address, None)

        # Gossip rounds.
        if self._queue and now + _EPS >= self._next_gossip_at:
            self._next_gossip_at = now + cfg.gossip_interval
            for dest in self._random_members(cfg.gossip_fanout, None, alive_only=False):
                updates = self._piggyback(dest)
                if updates:
                    out.append((dest, ["gossip", updates]))
                if not self._queue:
                    break

        # Anti-entropy push-pull.
        if self._live and (cfg.sync_interval > 0 or self._next_sync_at is not None):
            if self._next_sync_at is None:
                self._next_sync_at = now + cfg.sync_interval * (0.5 + self._rng.random())
            elif now >= self._next_sync_at:
                self._next_sync_at = now + cfg.sync_interval if cfg.sync_interval > 0 else None
                for dest in self._random_members(1, None, alive_only=True):
                    out.append((dest, ["sync", self._all_records(), True]))
        return out

    def receive(self, sender: str, message: Any, now: float) -> Outgoing:
        """Handle a message from ``sender``; returns the answers to send.

        Raises:
            ValueError: if ``sender`` or ``message`` is malformed (nothing is applied then).
        """
        if not isinstance(sender, str) or not sender:
            raise ValueError("sender must be a non-empty str")
        if not isinstance(message, list | tuple) or not message:
            raise ValueError("a SWIM message is a non-empty list")
        kind = message[0]
        out: Outgoing = []
        if kind == "ping":
            _expect_len(message, 3)
            seq = _check_int(message[1], "seq")
            updates = self._not_ahead(_check_records(message[2]))
            if self._ignoring(sender, now, out):
                return out
            self._apply_all(updates, sender, now, out, gossip=True)
            out.append((sender, ["ack", seq, self._piggyback(sender)]))
        elif kind == "ack":
            _expect_len(message, 3)
            seq = _check_int(message[1], "seq")
            updates = self._not_ahead(_check_records(message[2]))
            if self._ignoring(sender, now, out):
                return out
            join = self._joins.pop(seq, None)
            if join is not None and join[1] > now:
                record = join[0]
                if record[0] != sender:  # (not the joiner's answer: it waits on)
                    self._joins[seq] = join
                else:  # the joiner answered at its address: admit it, then its news
                    self._apply(record, sender, now, out, gossip=True, joining=True)
                    out.append((sender, ["sync", self._all_records(), False]))
                    self._apply_all(updates, sender, now, out, gossip=True)
                    return out
            self._apply_all(updates, sender, now, out, gossip=True)
            probe = self._probes.pop(seq, None)
            if probe is not None:
                probed = self._members.get(probe.target)
                if probed is not None:
                    probed.heard = now
                if not probe.check:
                    self._health_delta(-1)  # a successful probe
            if self._doubting:
                pinged = self._doubt_pings.pop(seq, None)
                if pinged is not None and pinged[0] == sender:
                    self._trusted_by(pinged[1], sender, updates)
            if probe is None:
                relay = self._relays.pop(seq, None)
                if relay is not None:
                    origin, origin_seq, _, _ = relay
                    out.append((origin, ["ack", origin_seq, self._piggyback(origin)]))
                else:  # a helper's late relayed ack: the helper, at least, answered
                    self._nacked(seq, sender)
        elif kind == "nack":
            _expect_len(message, 3)
            seq = _check_int(message[1], "seq")
            updates = self._not_ahead(_check_records(message[2]))
            if self._ignoring(sender, now, out):
                return out
            self._apply_all(updates, sender, now, out, gossip=True)
            self._nacked(seq, sender)
        elif kind == "ping-req":
            _expect_len(message, 4)
            seq = _check_int(message[1], "seq")
            target = _check_address(message[2])
            updates = self._not_ahead(_check_records(message[3]))
            if self._ignoring(sender, now, out):
                return out
            self._apply_all(updates, sender, now, out, gossip=True)
            if target == self._me:
                out.append((sender, ["ack", seq, self._piggyback(sender)]))
            else:
                self._seq += 1
                cfg = self._cfg
                self._relays[self._seq] = (
                    sender,
                    seq,
                    now + cfg.period,
                    now + cfg.ping_timeout / 2,
                )
                out.append((target, ["ping", self._seq, self._piggyback(target, introduce=True)]))
        elif kind == "gossip":
            _expect_len(message, 2)
            updates = self._not_ahead(_check_records(message[1]))
            if self._ignoring(sender, now, out):
                return out
            self._apply_all(updates, sender, now, out, gossip=True)
        elif kind == "join":
            _expect_len(message, 2)
            (record,) = self._not_ahead([_check_record(message[1])])
            if record[2] is not Status.ALIVE:
                raise ValueError("a join record must be ALIVE")
            if record[0] != sender:
                raise ValueError("a join record is the sender's own")
            if self._ignoring(sender, now, out):
                return out
            # Admitted only once it answers at its address: a join in its name by anyone
            # else (or by a node that died at once) must not become a member that never
            # answers, which would hold a small view's quorum for good.
            joins = self._joins
            for seq in [q for q, (_, expiry) in joins.items() if expiry <= now]:
                del joins[seq]
            if len(joins) < _MAX_JOINS:
                self._seq += 1
                joins[self._seq] = (record, now + 2 * self._cfg.period)
                out.append((sender, ["ping", self._seq, []]))
            return out
        elif kind == "sync":
            _expect_len(message, 3)
            records = self._not_ahead(_check_records(message[1]))
            want_reply = message[2]
            if not isinstance(want_reply, bool):
                raise ValueError("sync want_reply must be a bool")
            if self._ignoring(sender, now, out):
                return out
            if not self._joined:
                # (Re)joined. Members joining at the same time may be missing from this list
                # and their news may fade before anyone gossips to us: one more push-pull soon.
                self._joined = True
                self._next_sync_at = now + 4 * self._cfg.period
            self._apply_all(records, sender, now, out, gossip=True)
            if want_reply:
                out.append((sender, ["sync", self._all_records(), False]))
        elif kind == "leave":
            _expect_len(message, 3)
            address = _check_address(message[1])
            incarnation = _check_int(message[2], "incarnation", _INC_LIMIT)
            self._not_ahead([(address, incarnation, Status.LEFT, None, None)])
            if self._ignoring(sender, now, out):
                return out
            left = (address, incarnation, Status.LEFT, None, None)
            self._apply(left, sender, now, out, gossip=True)
            return out
        else:
            raise ValueError(f"unknown SWIM message kind {kind!r}")
        # A sender we hold DEAD/LEFT must learn it: our answer to it carries the tombstone
        # first (see _piggyback); without an answer it gets the tombstone on its own.
        known = self._members.get(sender)
        if (
            known is not None
            and known.status >= Status.DEAD
            and not any(dst == sender and msg[0] in ("ack", "sync") for dst, msg in out)
        ):
            out.append((sender, ["gossip", [known.record()]]))
        return out

    # -- internals --------------------------------------------------------------

    def _not_ahead(self, records: list[_Record]) -> list[_Record]:
        """``records``, unless one has an incarnation from the far future: incarnations start
        at the wall clock in microseconds (``runtime.cluster``) and grow by one a refutation,
        so one more than :data:`MAX_AHEAD` seconds ahead of our wall clock is a forgery or a
        badly wrong clock. Taken, it would make its member (us, if it names us) move past it
        toward the end of the range, where no refutation is accepted: it raises
        ``ValueError`` instead (the whole message is refused)."""
        wall = self._wall
        if wall is not None:
            ceiling = int((wall() + MAX_AHEAD) * 1_000_000)
            for record in records:
                if record[1] > ceiling:
                    raise ValueError(
                        f"incarnation {record[1]} of {record[0]!r} is more than "
                        f"{MAX_AHEAD:g} s ahead of this node's clock"
                    )
        return records

    def _ignoring(self, sender: str, now: float, out: Outgoing) -> bool:
        """Whether to drop a (valid) message; else notice a stall of ours and take the
        message as evidence that its sender is reachable."""
        if self._left or sender == self._me:
            return True
        self._check_stall(now, out)
        m = self._members.get(sender)
        if m is not None:
            m.heard = now
        return False

    def _confirmed(self, fresh_since: float) -> int:
        """Ourselves plus the ALIVE members we had direct evidence of since ``fresh_since``."""
        members = self._members
        count = 1
        for address in self._live:
            m = members[address]
            if m.heard >= fresh_since and m.status is Status.ALIVE:
                count += 1
        return count

    def _settle_suspicions(self, now: float, quorum: bool, out: Outgoing) -> None:
        """Turn expired suspicions into DEAD if we can *confirm* a majority of the view, and
        keep ``has_quorum()`` honest meanwhile.

        Counting every member not (yet) suspected as reachable is not enough: a partition is
        noticed member by member, so a minority would briefly count the far side as alive,
        "have quorum", and remove it. So we track *direct evidence* (a message from a
        member, an ack) and count "confirmed" members: ourselves plus the ALIVE members we
        have evidence of since a threshold.

        * A removal needs a confirmed majority of ``view_size`` since ``now - timeout``
          (which is after every suspicion being decided, hence after the trouble began),
          plus the plain ``has_quorum()`` rule.
        * While that majority is not confirmed since the newest suspicion, we check the
          ALIVE members we lack such evidence of: pings with ping-req, but a failed check
          suspects no one (under overload, checking everyone must not snowball into
          suspecting everyone). Checks go out every ``period / 4``, ``quorum_probes`` at a
          time, more in a large view so that a majority is checked within half a timeout.
          Every node with a pending suspicion checks in a view of up to ``_CHECK_ALL_VIEW``
          members; in a larger one only a node that found a suspect itself (or re-armed it,
          or whose suspicion is overdue by another timeout), as checks cost O(view) each.
        * When the checks leave no way to a majority (the unanswered ones failed by SWIM's
          own criterion: no ack within a period), or no majority was confirmed for a whole
          timeout, ``has_quorum()`` turns False, and stays so until a majority is confirmed
          since the newest suspicion or no suspicion is pending. On a minority side this
          happens about a period after its first suspicion, ahead of the majority's verdict.
        """
        cfg = self._cfg
        suspects = self._suspects.values()
        timeout = self.suspicion_timeout
        half = self._view_size // 2
        newest = max(m.since for m in suspects)
        fresh = self._confirmed(newest)  # evidence since the newest trouble
        if fresh > half:
            if self._quorum_lost:
                # Quorum is back (tick() misses this case: a minority side that has only
                # checked some far members still holds them ALIVE). Our suspicions ran out
                # while we could not confirm a majority; decided on the first evidence after
                # a heal (messages that waited out the cut in a buffer, ahead of the answers
                # that bring our tombstone), they would remove members only cut off from us.
                self._rearm_suspicions(now)
            self._quorum_lost = False
        # For a verdict, evidence since the suspicions being decided is enough: a removal
        # needs ``since <= now - timeout``, so older evidence (pre-partition) never counts.
        recent = fresh if newest <= now - timeout else self._confirmed(now - timeout)
        if recent > half:
            self._unconfirmed_since = None
            if quorum and not self._quorum_lost and not self._doubting:
                expired = [m for m in suspects if m.since + self._suspect_timeout(m) <= now + _EPS]
                for m in expired:
                    self._remove(m, Status.DEAD, m.incarnation, now)
                    self._enqueue(m.address, m.record())
        else:
            if self._unconfirmed_since is None:
                self._unconfirmed_since = now
            if now + _EPS >= self._unconfirmed_since + timeout:
                self._quorum_lost = True
        if fresh > half or not cfg.quorum_probes or self._doubting:
            return  # (in doubt, _check_doubt checks everyone)
        overdue = now - 2 * timeout
        if not (
            self._view_size <= _CHECK_ALL_VIEW
            or any(m.verify or m.since <= overdue for m in suspects)
        ):
            return
        members = self._members
        recheck = now - cfg.period * self._scale()
        stale = [
            m for a in self._live if (m := members[a]).status is Status.ALIVE and m.heard < newest
        ]
        # A member failed its check if it sent nothing since a check sent over a period ago
        # (SWIM's own criterion: no ack within a period, ping-req included); checking it
        # again does not undo that. The others (not checked yet, check still running) may
        # yet confirm us.
        failed = sum(1 for m in stale if m.heard < m.unanswered <= recheck)
        if fresh + len(stale) - failed <= half:
            self._quorum_lost = True
        if now + _EPS < self._next_check_at:
            return
        step = cfg.period / 4
        self._next_check_at = now + step
        batch = max(cfg.quorum_probes, math.ceil(2 * self._view_size * step / timeout))
        due = [m for m in stale if m.checked <= recheck]
        for m in self._rng.sample(due, min(batch, len(due))):
            m.checked = now
            if m.unanswered <= m.heard:
                m.unanswered = now
            self._start_probe(m.address, now, out, check=True)

    def _rearm_suspicions(self, now: float) -> None:
        """Quorum is back: give every pending suspicion a full timeout and re-announce it,
        so members that were only cut off from us hear it and refute."""
        for m in self._suspects.values():
            m.since = now
            m.verify = True
            self._enqueue(m.address, m.record())

    def _check_stall(self, now: float, out: Outgoing) -> None:
        """Notice that we were stalled (no tick for over ``2 * period``: GC, SIGSTOP,
        overload). What we failed to hear meanwhile is nobody else's fault: abandon the probes
        in flight, push the suspicion timers back by the gap, and count it against our health.
        A stall of a suspicion timeout plus a period or more is long enough for the others to
        have declared us dead (a probe of us fails after a period, then the timeout runs) --
        or not (no quorum without us, refutation in time): we enter *doubt* (``doubt``;
        :meth:`has_quorum` False) until a majority acks us (``trusted``) or we hear our
        tombstone (``self_dead``). Alone in our view we have nobody to doubt."""
        last = self._last_tick
        if last is None:  # a message before our first tick: time stalls from here
            self._last_tick = now
            return
        if now - last <= 2 * self._cfg.period:
            return
        gap = now - last
        self._last_tick = now
        for m in self._suspects.values():
            m.since += gap
        self._probes.clear()
        self._nack_waits.clear()
        self._next_probe_at = now
        self._health_delta(1)
        if gap >= self.suspicion_timeout + self._cfg.period and self._live:
            if not self._doubting:
                self._doubting = True
                self._events.append(("doubt", self._me, None))
            self._trust.clear()  # only acks to pings sent from now on count
            self._doubt_pings.clear()
            self._trust_inc = self._inc
            self._next_check_at = -math.inf

    def _trusted_by(self, inc: int, sender: str, updates: list[_Record]) -> None:
        """In doubt: a direct ack to a ping we sent in doubt (however late: a loaded peer
        is still a peer) that carried our current incarnation ``inc``, with nothing against
        us in it (no suspicion, no tombstone of ours), shows that ``sender`` holds us ALIVE
        at that incarnation."""
        if inc != self._inc:
            return
        me = self._me
        if any(r[0] == me and r[2] is not Status.ALIVE for r in updates):
            return
        if self._trust_inc != self._inc:
            self._trust.clear()
            self._trust_inc = self._inc
        self._trust.add(sender)
        self._maybe_trusted()

    def _maybe_trusted(self) -> None:
        """Leave doubt once we plus the members that acked us make a majority of the view."""
        if self._trust_inc != self._inc:
            self._trust.clear()
            self._trust_inc = self._inc
        live = self._live_pos
        if 1 + sum(1 for a in self._trust if a in live) > self._view_size // 2:
            self._doubting = False
            self._trust.clear()
            self._doubt_pings.clear()
            self._events.append(("trusted", self._me, None))

    def _check_doubt(self, now: float, out: Outgoing) -> None:
        """In doubt: ping (reachability checks) the live members that have not acked us at
        our current incarnation yet, ``quorum_probes`` (at least one) per ``period / 4``."""
        self._maybe_trusted()  # the view may have shrunk
        if not self._doubting or now + _EPS < self._next_check_at:
            return
        cfg = self._cfg
        step = cfg.period / 4
        self._next_check_at = now + step
        recheck = now - cfg.period * self._scale()
        members = self._members
        trust = self._trust
        due = [m for a in self._live if a not in trust and (m := members[a]).checked <= recheck]
        batch = max(
            1, cfg.quorum_probes, math.ceil(2 * self._view_size * step / self.suspicion_timeout)
        )
        for m in self._rng.sample(due, min(batch, len(due))):
            m.checked = now
            if m.unanswered <= m.heard:
                m.unanswered = now
            self._start_probe(m.address, now, out, check=True)

    def _nacked(self, seq: int, helper: str) -> None:
        """A helper we asked to ping a target for probe ``seq`` answered (nack, or a relayed
        ack): its silence would count against our health."""
        probe = self._probes.get(seq)
        if probe is not None:
            if helper in probe.helpers:
                probe.nacked.add(helper)
            return
        waiting = self._nack_waits.get(seq)
        if waiting is not None and helper in waiting[0].helpers:
            probe = waiting[0]
            probe.nacked.add(helper)
            if len(probe.nacked) >= len(probe.helpers):
                del self._nack_waits[seq]

    def _self_record(self) -> list[Any]:
        return [self._me, self._inc, int(Status.ALIVE), self._meta]

    def _all_records(self) -> list[list[Any]]:
        records = [self._self_record()]
        records.extend(m.record() for m in self._members.values())
        return records

    def _join_messages(self) -> Outgoing:
        record = self._self_record()
        return [(address, ["join", record]) for address in self._join_targets]

    def _enqueue(self, address: str, record: list[Any]) -> None:
        """Queue news about ``address`` for gossip, replacing older news about it."""
        queue = self._queue
        queue.pop(address, None)  # re-insert: the newest goes last among equals
        queue[address] = _Broadcast(address, record)

    def _retransmit_limit(self) -> int:
        n = len(self._live) + 1
        return max(1, math.ceil(self._cfg.retransmit_mult * math.log(n + 1)))

    def _piggyback(self, dest: str, *, introduce: bool = False) -> list[list[Any]]:
        """Updates for a message to ``dest``: what we hold against it first (its suspicion:
        Lifeguard's buddy system; its tombstone: it must rejoin), then (``introduce``: on
        pings and ping-reqs) our own record, so that a member we probe learns of us even if
        the gossip about us missed it, then the least-sent queued updates, each counting as
        one transmission. Queued news about ``dest`` itself is not sent to it."""
        updates: list[list[Any]] = []
        m = self._members.get(dest)
        if m is not None:
            if m.notice is not None:
                updates.append(m.notice)
                m.notice = None
            if m.status is not Status.ALIVE:
                updates.append(m.record())
        if introduce:
            updates.append(self._self_record())
        budget = self._cfg.max_piggyback - len(updates)
        queue = self._queue
        if queue and budget > 0:
            limit = self._retransmit_limit()
            for broadcast in heapq.nsmallest(budget + 2, queue.values(), key=_transmits):
                if broadcast.address == dest:
                    continue
                introduced = introduce and broadcast.address == self._me
                if not introduced:
                    if budget == 0:
                        continue
                    budget -= 1
                    updates.append(broadcast.record)
                broadcast.transmits += 1
                if broadcast.transmits >= limit:
                    del queue[broadcast.address]
        return updates

    def _random_members(self, k: int, exclude: str | None, *, alive_only: bool) -> list[str]:
        """Up to ``k`` distinct random live members, not ``exclude``, optionally ALIVE only."""
        live = self._live
        n = len(live)
        if k <= 0 or n == 0:
            return []
        suspects = self._suspects

        def ok(address: str) -> bool:
            return address != exclude and not (alive_only and address in suspects)

        if n <= 4 * k + 8:
            candidates = [a for a in live if ok(a)]
            return self._rng.sample(candidates, min(k, len(candidates)))
        chosen: list[str] = []
        for _ in range(8 * k):
            address = live[self._rng.randrange(n)]
            if ok(address) and address not in chosen:
                chosen.append(address)
                if len(chosen) == k:
                    break
        return chosen

    def _next_target(self) -> str | None:
        order = self._probe_order
        live_pos = self._live_pos
        while True:
            if self._probe_pos >= len(order):
                if not self._live:
                    return None
                order = self._probe_order = list(self._live)
                self._rng.shuffle(order)
                self._probe_pos = 0
            address = order[self._probe_pos]
            self._probe_pos += 1
            if address in live_pos:
                return address

    def _start_probe(self, target: str, now: float, out: Outgoing, *, check: bool = False) -> None:
        """Ping ``target``; escalate after ``ping_timeout`` and fail after ``period``, both
        times our health multiplier (Lifeguard: a slow node waits longer)."""
        cfg = self._cfg
        scale = self._scale()
        self._seq += 1
        self._probes[self._seq] = _Probe(
            target,
            self._seq,
            now + cfg.ping_timeout * scale,
            now + cfg.period * scale,
            check,
        )
        out.append((target, ["ping", self._seq, self._piggyback(target, introduce=True)]))
        if self._doubting:  # its ack, even late, may end the doubt
            pings = self._doubt_pings
            pings[self._seq] = (target, self._inc)
            if len(pings) > 4 * self._view_size:
                del pings[next(iter(pings))]

    def _escalate(self, probe: _Probe, out: Outgoing) -> None:
        """No ack within ``ping_timeout``: ping again and ask k others to ping it for us."""
        target = probe.target
        out.append((target, ["ping", probe.seq, self._piggyback(target, introduce=True)]))
        helpers = self._random_members(self._cfg.indirect_probes, target, alive_only=True)
        probe.helpers = tuple(helpers)
        for helper in helpers:
            updates = self._piggyback(helper, introduce=True)
            out.append((helper, ["ping-req", probe.seq, target, updates]))

    def _probe_failed(self, probe: _Probe, now: float, out: Outgoing) -> None:
        """A probe's period ended without an ack: its target becomes SUSPECT, or, if it
        already is, we confirm the suspicion (unless it was a mere reachability check:
        checking everyone at once must not turn an overload into a wave of suspicions).

        Local health: a missed ack counts against us (+1) -- unless we asked helpers
        (ping-req): then each helper that does not answer either (nack or relayed ack, within
        half a period more) counts (+1 each), and if they all answer the fault was the
        target's (memberlist's rule)."""
        if probe.check:
            return
        if not probe.helpers:
            self._health_delta(1)
        elif len(probe.nacked) < len(probe.helpers):
            self._nack_waits[probe.seq] = (probe, now + self._cfg.period / 2)
        m = self._members.get(probe.target)
        if m is None:
            return
        me = self._me
        if m.status is Status.ALIVE:
            m.status = Status.SUSPECT
            m.since = now
            m.accusers = {me}
            self._suspects[m.address] = m
            self._events.append(("suspect", m.address, None))
        elif m.status is not Status.SUSPECT or me in m.accusers:
            return
        else:  # an independent confirmation of a suspicion we heard of
            m.accusers.add(me)
            if len(m.accusers) - 1 > self._cfg.suspicion_confirmations:
                m.verify = True
                return
        m.verify = True
        m.accuser = me
        self._enqueue(m.address, m.record())
        if m.status is Status.SUSPECT and not m.accusers - {me}:
            # Buddy system, at once: the suspect hears it now (and can refute), not when it
            # next probes us or our gossip happens to pick it -- a slow node probes little.
            out.append((m.address, ["gossip", self._piggyback(m.address)]))

    def _add_live(self, m: _Member) -> None:
        self._live_pos[m.address] = len(self._live)
        self._live.append(m.address)
        order = self._probe_order
        order.insert(self._rng.randint(min(self._probe_pos, len(order)), len(order)), m.address)
        self._view_size = len(self._live) + 1

    def _remove(self, m: _Member, status: Status, incarnation: int, now: float) -> None:
        """Turn live member ``m`` into a DEAD/LEFT tombstone."""
        address = m.address
        i = self._live_pos.pop(address)
        last = self._live.pop()
        if last != address:
            self._live[i] = last
            self._live_pos[last] = i
        self._suspects.pop(address, None)
        m.status = status
        m.incarnation = incarnation
        m.meta = None
        m.since = now
        m.accusers = set()
        m.accuser = None
        m.notice = None
        self._tombstones.append((now, address, incarnation))
        self._view_size = len(self._live) + 1
        self._events.append(("dead" if status is Status.DEAD else "left", address, None))

    def _apply_all(
        self, records: list[_Record], sender: str, now: float, out: Outgoing, *, gossip: bool
    ) -> None:
        for record in records:
            self._apply(record, sender, now, out, gossip=gossip)

    def _apply(
        self,
        record: _Record,
        sender: str,
        now: float,
        out: Outgoing,
        *,
        gossip: bool,
        joining: bool = False,
    ) -> None:
        """Merge one record by the SWIM precedence rules; queue it for gossip if it changed
        our view (and ``gossip``). ``joining``: the record comes in the member's own join."""
        address, incarnation, status, meta, accuser = record
        if address == self._me:
            self._apply_self(incarnation, status, sender, now, out)
            return
        m = self._members.get(address)
        events = self._events
        if m is None or m.status >= Status.DEAD:
            if m is not None and incarnation <= m.incarnation:
                return
            if status >= Status.DEAD:  # a tombstone for a member we do not hold live
                if m is None:
                    m = self._members[address] = _Member(address, incarnation, status, None, now)
                else:
                    m.incarnation = incarnation
                    m.status = status
                    m.since = now
                self._tombstones.append((now, address, incarnation))
            else:  # a new member (or a dead one back with a higher incarnation)
                if m is None:
                    m = self._members[address] = _Member(address, incarnation, status, meta, now)
                else:
                    if not joining:
                        # Back by a mere refutation (it was paused or cut off, and never
                        # heard it was declared dead)? Tell it, now and first thing in our
                        # next message to it (which may overtake this one: it must not take
                        # that as a sign it is ALIVE to us); if it already rejoined, the
                        # tombstone is stale to it and changes nothing.
                        tomb = m.record()
                        out.append((address, ["gossip", [tomb]]))
                        m.notice = tomb
                    m.incarnation = incarnation
                    m.status = status
                    m.meta = meta
                    m.since = now
                self._add_live(m)
                events.append(("alive", address, meta))
                if status is Status.SUSPECT:
                    m.verify = False
                    m.accusers = set() if accuser is None else {accuser}
                    m.accuser = accuser
                    self._suspects[address] = m
                    events.append(("suspect", address, None))
        elif status is Status.ALIVE:
            if incarnation <= m.incarnation:
                return
            was_suspect = m.status is Status.SUSPECT
            changed = meta != m.meta
            m.incarnation = incarnation
            m.status = Status.ALIVE
            m.meta = meta
            m.notice = None
            m.accusers = set()
            m.accuser = None
            if was_suspect:
                del self._suspects[address]
            if was_suspect or changed:
                events.append(("alive", address, meta))
        elif status is Status.SUSPECT:
            if incarnation < m.incarnation:
                return
            if incarnation == m.incarnation and m.status is Status.SUSPECT:
                # An independent confirmation (Lifeguard): it shortens the timeout; spread
                # it while it still counts (up to k confirmations).
                if accuser is None or accuser in m.accusers:
                    return
                m.accusers.add(accuser)
                if len(m.accusers) - 1 > self._cfg.suspicion_confirmations:
                    return
                m.accuser = accuser
            else:
                if incarnation > m.incarnation:
                    m.notice = None
                    if meta != m.meta:
                        m.meta = meta
                        events.append(("alive", address, meta))
                was_alive = m.status is Status.ALIVE
                m.incarnation = incarnation
                m.status = Status.SUSPECT
                m.since = now
                m.verify = False
                m.accusers = set() if accuser is None else {accuser}
                m.accuser = accuser
                self._suspects[address] = m
                if was_alive:
                    events.append(("suspect", address, None))
                    # It goes next in our round-robin: our probe confirms the suspicion
                    # independently (the timeout shrinks) or lets it refute (buddy system).
                    self._probe_order.insert(self._probe_pos, address)
        else:  # DEAD or LEFT about a live member
            if incarnation < m.incarnation:
                return
            self._remove(m, status, incarnation, now)
        if gossip:
            self._enqueue(address, m.record())

    def _apply_self(
        self, incarnation: int, status: Status, sender: str, now: float, out: Outgoing
    ) -> None:
        """Hearsay about ourselves: refute, re-assert, or accept that we were declared dead."""
        if status is Status.ALIVE:
            if incarnation > self._inc:  # a former life of ours got further: move past it
                self._inc = incarnation + 1
                self._enqueue(self._me, self._self_record())
            return
        if status is Status.SUSPECT and incarnation >= self._inc:
            self._inc = incarnation + 1  # refutation
            self._health_delta(1)  # Lifeguard: being suspected hints that we are slow
            record = self._self_record()
            self._enqueue(self._me, record)
            if sender != self._me:  # straight back to who told us, too: the sooner the better
                out.append((sender, ["gossip", [record]]))
            return
        if status >= Status.DEAD and incarnation >= self._join_inc:
            self._declared_dead(incarnation, sender, now, out)
            return
        # Stale hearsay (an older incarnation): set the sender straight, and the others.
        record = self._self_record()
        self._enqueue(self._me, record)
        if sender != self._me:
            out.append((sender, ["gossip", [record]]))

    def _declared_dead(
        self, incarnation: int, informer: str | None, now: float, out: Outgoing
    ) -> None:
        """The cluster gave up on this life of ours: say so, move to a new incarnation,
        and rejoin through ``informer`` and random ALIVE members (three in all)."""
        self._events.append(("self_dead", self._me, None))
        self._inc = max(self._inc, incarnation) + 1
        self._join_inc = self._inc
        # Our suspicions were formed while the cluster could not hear us: drop them.
        for m in self._suspects.values():
            m.status = Status.ALIVE
            m.accusers = set()
            m.accuser = None
            self._events.append(("alive", m.address, m.meta))
        self._suspects.clear()
        self._probes.clear()
        self._nack_waits.clear()
        self._unconfirmed_since = None
        self._quorum_lost = False
        self._doubting = False  # settled: no ``trusted`` follows
        self._trust.clear()
        self._doubt_pings.clear()
        self._enqueue(self._me, self._self_record())
        targets = [informer] if informer is not None and informer != self._me else []
        targets.extend(self._random_members(3 - len(targets), informer, alive_only=True))
        if targets:
            self._join_targets = targets
            self._joined = False
            self._next_join_at = now + self._cfg.join_retry
            out.extend(self._join_messages())


# -- validation -------------------------------------------------------------------------


def _expect_len(message: list[Any] | tuple[Any, ...], n: int) -> None:
    if len(message) != n:
        raise ValueError(f"a {message[0]!r} message has {n} items, got {len(message)}")


def _check_int(value: Any, what: str, limit: int = _INT_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{what} must be an int in [0, {limit}), got {value!r}")
    return int(value)


def _check_address(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ADDRESS:
        raise ValueError(f"an address must be a non-empty str, got {value!r}")
    return value


def _check_record(value: Any) -> _Record:
    if not isinstance(value, list | tuple) or len(value) not in (4, 5):
        raise ValueError("a member record is [address, incarnation, status, meta(, accuser)]")
    address, incarnation, status, meta = value[:4]
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 3:
        raise ValueError(f"a member status is an int in 0..3, got {status!r}")
    accuser: str | None = None
    if len(value) == 5:
        if status != Status.SUSPECT:
            raise ValueError("only a SUSPECT record names an accuser")
        accuser = _check_address(value[4])
    incarnation = _check_int(incarnation, "incarnation", _INC_LIMIT)
    return (_check_address(address), incarnation, Status(status), meta, accuser)


def _check_records(value: Any) -> list[_Record]:
    if not isinstance(value, list | tuple):
        raise ValueError("updates must be a list of member records")
    return [_check_record(item) for item in value]
