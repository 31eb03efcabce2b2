"""The actor directory: this node's partition of the DHT that says where each actor lives.

For every actor id the ring owner of its key is the authority on where its single activation
lives. By default the owner also hosts it, so a call takes one hop and needs no lookup; this
directory records only the exceptions: actors hosted by another node (handed over, moved, or
left where they were when a join moved ownership of their key to this node).

One activation under churn: settled views
-----------------------------------------

SWIM's views are neither numbered nor agreed: while a member joins, leaves or dies, two nodes
may each compute that they own a key. The directory therefore does not trust a view until the
other members have confirmed it. A node's *view* is the set of hosting members it knows; each
change of it begins a new round (:class:`ViewSync`). The node sends the view (its SWIM records)
to every other member of it; a member that receives it merges it into its own SWIM state
*before* it answers, and answers with every activation it hosts and does not own. The view is
*settled* once every other member has answered for this round. A member answers only while
it may serve (quorum and a fresh lease): one cut off from the majority may have been removed,
and its activations must not be counted on. While an activation is being moved (a leave, a
migration) its host reports it as a placeholder (``MOVING``) that the target's own report
replaces, so an owner that hears from both in one round keeps the target's.

**Invariant.** A node activates an actor only as its owner in a settled view (or when one is
handed to it, by a leave or a migration, from the node that held it). Then no two live
activations of one actor exist, provided that SWIM removes only members that have stopped
serving (see below).

**Argument.** Let N own key ``k`` in its view V, settled at time t, and M be any other member of
V. M answered the round after merging V into its own view V_M, and it answered only if V_M
still holds N alive. The owner of ``k`` is the first eligible member clockwise from ``k``'s
position; N is first in V. V_M contains N, and every member of V_M that is not in V is a member
M learned of and N did not; members of V that M lacks were removed by M (dead). Removing members
other than N cannot move ``k`` away from N, and adding members can only put a newcomer before N.
So the owner of ``k`` in V_M is N or a member that is not in V -- never M. From its answer on,
M does not activate ``k``, and views M adopts later keep that property until M removes N.
Activations of ``k`` M held before answering are in the answer, so N records them as
exceptions (and redirects to them) instead of activating ``k`` again. A member that is not in V
either joined after N's round (it must settle too, so it hears from N first, and N then holds
it in its view) or was removed from V. Hence when N activates ``k``, no other member will, and
none hosts it unrecorded. Each change of V restarts the round, so N never activates on the
strength of answers about an older view.

**Removals.** A member removed by SWIM may still be alive (a partition, a frozen process). The
invariant then rests on the runtime's serving rule: a node without quorum serves nothing, and a
node whose own loop stalled serves nothing until the cluster confirms it is still a member
(SWIM's doubt state). A removed node learns it was removed and drops its activations; the
epochs below let storage refuse its stale writes if it ever gets that far.

**Cost.** A round is one request and one answer per member per view change (O(n) per node,
O(n^2) in the cluster), paid only when the membership changes. Until its view is settled a node
holds first calls to actors it owns (they wait, then go where the settled view says), but keeps
serving the activations it has; a member that does not answer (frozen, dead) holds the round
until SWIM removes it.

Epochs
------

Each registration carries an epoch, a fencing token that grows with every new activation of an
actor anywhere in the cluster, so a stale duplicate can be told from the current activation: the
first registration wins, and a host whose registration lost is told to drop its activation. An
owner that hosts the actor itself keeps its activation against an older registration but drops
it for a newer one: only a view without the owner can have made that (see Removals), so the
owner's is the stale duplicate.

Sans-io: plain data and decisions, no sockets, no clocks read (callers pass ``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

__all__ = ["MAX_AHEAD", "MOVING", "Directory", "Entry", "EpochClock", "ViewSync"]

#: The epoch of a placeholder entry: the host reported the activation while moving it away
#: (a migration or a leave in flight). Any other registration replaces it.
MOVING = -1

#: How far (seconds) an epoch heard from elsewhere may be ahead of this node's clock. One
#: further ahead is a clock that is badly wrong or a forgery: observing it would push every
#: later epoch past it (up to msgpack's integer range, where moves stop working).
MAX_AHEAD = 300.0

ActorId = tuple[str, str]


class Entry:
    """Where one actor's activation lives and the epoch it was registered with."""

    __slots__ = ("epoch", "host")

    def __init__(self, host: str, epoch: int) -> None:
        self.host = host
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Entry({self.host!r}, {self.epoch})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and (self.host, self.epoch) == (other.host, other.epoch)

    __hash__ = None  # type: ignore[assignment]


class EpochClock:
    """Issues epochs: strictly increasing here, and above any epoch seen from elsewhere.

    An epoch is a hybrid logical clock reading in microseconds: ``max(now_us, last + 1)``,
    advanced past every epoch this node hears of. Owners that take over a key after a failure
    therefore issue epochs above the ones issued before, as long as clocks are not wildly off.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def issue(self, now: float) -> int:
        """A new epoch, greater than every epoch issued or observed before."""
        self.last = max(int(now * 1_000_000), self.last + 1)
        return self.last

    def observe(self, epoch: int, now: float) -> None:
        """Account for an epoch issued elsewhere (``now``: this node's clock, seconds);
        raises ``ValueError`` for one below 0 or more than :data:`MAX_AHEAD` seconds ahead
        of ``now``, and leaves the clock as it was."""
        if not 0 <= epoch <= int((now + MAX_AHEAD) * 1_000_000):
            raise ValueError(
                f"epoch {epoch} is outside [0, now + {MAX_AHEAD:g} s] ({int(now * 1e6)} now)"
            )
        if epoch > self.last:
            self.last = epoch


class Directory:
    """Exception entries for actor ids this node owns, by (type name, key)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[ActorId, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[ActorId, Entry]]:
        return iter(list(self._entries.items()))

    def lookup(self, type_name: str, key: str) -> Entry | None:
        """The recorded location of an actor, or None (then the owner hosts it, or no one)."""
        return self._entries.get((type_name, key))

    def register(self, type_name: str, key: str, host: str, epoch: int) -> Entry:
        """Record that ``host`` holds the activation with ``epoch``, unless another live
        registration exists: first one wins, and the winner is returned (as Orleans'
        directory does), so the loser deactivates its duplicate. A registration with a newer
        epoch from the same host replaces the old one."""
        actor_id = (type_name, key)
        known = self._entries.get(actor_id)
        if (
            known is not None
            and known.epoch != MOVING
            and not (known.host == host and epoch >= known.epoch)
        ):
            return known
        entry = self._entries[actor_id] = Entry(host, epoch)
        return entry

    def unregister(self, type_name: str, key: str, host: str, epoch: int | None = None) -> bool:
        """Forget the entry if it still names ``host`` (and ``epoch``, if given)."""
        actor_id = (type_name, key)
        known = self._entries.get(actor_id)
        if known is None or known.host != host or (epoch is not None and known.epoch != epoch):
            return False
        del self._entries[actor_id]
        return True

    def purge_host(self, host: str) -> list[ActorId]:
        """Drop every entry that points at ``host`` (it died); returns their ids."""
        gone = [aid for aid, e in self._entries.items() if e.host == host]
        for aid in gone:
            del self._entries[aid]
        return gone

    def take_unowned(self, owns: Callable[[str, str], bool]) -> list[tuple[ActorId, Entry]]:
        """Remove and return the entries whose actor id this node no longer owns (after a
        membership change), to hand them to their new owners."""
        moved = [(aid, e) for aid, e in self._entries.items() if not owns(*aid)]
        for aid, _ in moved:
            del self._entries[aid]
        return moved


class ViewSync:
    """Which members have confirmed this node's current view (see the module docstring).

    :meth:`begin` starts a round for a new view and says whom to ask; :meth:`confirmed`
    records an answer and says whether the view is now settled. An answer for an older round
    counts for nothing.
    """

    __slots__ = ("_waiting", "round")

    def __init__(self) -> None:
        self.round = 0
        self._waiting: set[str] = set()

    @property
    def settled(self) -> bool:
        """Whether every other member of the current view has confirmed it."""
        return not self._waiting

    @property
    def waiting(self) -> frozenset[str]:
        """The members that have not confirmed the current view yet."""
        return frozenset(self._waiting)

    def begin(self, others: Iterable[str]) -> int:
        """A new view whose other members are ``others``: returns the new round's number."""
        self.round += 1
        self._waiting = set(others)
        return self.round

    def confirmed(self, round: int, member: str) -> bool:
        """``member`` confirmed round ``round``; returns whether the view is settled now."""
        if round == self.round:
            self._waiting.discard(member)
        return not self._waiting

    def is_current(self, round: int, member: str) -> bool:
        """Whether an answer from ``member`` for ``round`` is still awaited."""
        return round == self.round and member in self._waiting
