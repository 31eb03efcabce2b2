"""The actor directory: this node's partition of the DHT that says where each actor lives.

For every actor id the ring owner of its key is the authority on where its single activation
lives. By default the owner also hosts it, so a call takes one hop and needs no lookup; this
directory records only the exceptions: actors hosted by another node (placed elsewhere, moved,
or left where they were when a join moved ownership of their key to this node).

Each registration carries an epoch, a fencing token that grows with every new activation of an
actor anywhere in the cluster, so a stale duplicate left behind by a partition can be told from
the current activation (and refused when it tries to commit state).

Sans-io: plain data and decisions, no sockets, no clocks read (callers pass ``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["Directory", "Entry", "EpochClock"]

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

    def observe(self, epoch: int) -> None:
        """Account for an epoch issued elsewhere."""
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
        if known is not None and not (known.host == host and epoch >= known.epoch):
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
