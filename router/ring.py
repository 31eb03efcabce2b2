"""Consistent-hash ring with virtual nodes (sans-io).

The ring maps an actor id to the cluster member (a node address such as
``"tcp://127.0.0.1:5700"``) that should host it.  Every member is placed on a
64-bit circle at ``vnodes`` pseudo-random positions; a key is owned by the first
member position found clockwise from the key's own position (a position equal
to the key's counts as clockwise).

Hashing scheme (wire-level contract: every process of a cluster must agree):

* A position is the first 64-bit word of MurmurHash3 x64-128 (seed 0) of the
  UTF-8 encoding of a string, read as an unsigned integer
  (``mmh3.hash64(data, signed=False)[0]``); see :func:`key_position`.
* Member ``m`` has positions ``key_position(f"{m}#{i}")`` for ``i`` in
  ``range(vnodes)``.  The suffix after the last ``#`` is a plain integer, so
  labels of distinct members never coincide.
* An actor is placed by its *actor id*, ``f"{type_name}/{key}"`` (see
  :func:`actor_id`); the type name must not contain ``"/"`` so the id is
  unambiguous, while the key may contain anything.
* If two points ever share a position (a 64-bit collision), the smaller member
  name comes first, so the result never depends on insertion order.

Why an own implementation on top of ``mmh3`` rather than a ring library:

* Python's built-in ``hash()`` of ``str`` is salted per process
  (``PYTHONHASHSEED``) and so useless for placement agreed on by many
  processes; ``mmh3`` is a small, well-kept C extension giving a fast, stable,
  platform-independent hash.
* We need members that carry metadata (which actor types a node serves,
  owned by the membership layer) applied per lookup through the ``eligible``
  filter, replica lists (:meth:`Ring.owners`), and lookups cheap enough for
  every message.  ``uhashring`` exists but is ketama/md5 based, does more
  Python work per lookup and brings weights/instances we do not need.
* The whole thing is a sorted ``list[int]`` of positions, a parallel
  ``list[str]`` of members and ``bisect``: a lookup is one hash (~0.1 µs) plus
  one C-level binary search, ~0.3-0.4 µs in all for 5-100 members, and
  ``add``/``remove`` are incremental (``vnodes`` list inserts/deletes, no
  full rebuild).  Key hashes are deliberately *not* cached: a cache hit saves
  only ~0.05 µs of that, while the cache grows with the key space (or, if
  bounded, misses on exactly the large key spaces where it would matter); see
  ``bench/bench_ring.py``.

Two ``mmh3`` 5.3.1 pitfalls are avoided on purpose (both pinned by tests):

* A ``str`` with a lone surrogate passed straight to ``mmh3`` crashes the
  interpreter (segmentation fault: the UTF-8 conversion is not checked for
  failure).  Keys are therefore encoded with strict UTF-8 first (~20 ns), so
  such a key raises :class:`UnicodeEncodeError` instead.
* ``hash64``'s 4th *positional* argument is ignored (``signed`` is read from
  the ``x64arch`` slot), so ``signed=False`` is always passed by keyword; a
  later fix of that bug cannot then silently move every position.

The class is plain data with no I/O and no locking; use it from one thread (or
one event loop) at a time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

import mmh3

__all__ = ["DEFAULT_VNODES", "Ring", "actor_id", "key_position"]

DEFAULT_VNODES = 128
"""Default virtual nodes per member: shares vary with ~1/sqrt(128) = 9% relative std. dev."""

_hash64 = mmh3.hash64


def key_position(key: str) -> int:
    """Return the position of ``key`` on the ring, an unsigned 64-bit integer.

    Raises:
        UnicodeEncodeError: if ``key`` is not encodable as UTF-8 (lone surrogates).
    """
    position: int = _hash64(key.encode(), signed=False)[0]
    return position


def actor_id(type_name: str, key: str) -> str:
    """Return the actor id ``f"{type_name}/{key}"`` hashed to place an actor.

    Raises:
        ValueError: if ``type_name`` is empty or contains ``"/"``.
    """
    if not type_name or "/" in type_name:
        raise ValueError(f"actor type name must be non-empty without '/': {type_name!r}")
    return f"{type_name}/{key}"


def _vnode_positions(member: str, vnodes: int) -> list[int]:
    """Return the ``vnodes`` ring positions of ``member``."""
    return [key_position(f"{member}#{i}") for i in range(vnodes)]


class Ring:
    """A consistent-hash ring of members (node addresses) with virtual nodes.

    Owners depend only on the *set* of members and ``vnodes``: never on
    insertion order, the process, or ``PYTHONHASHSEED``.

    Args:
        members: initial members (duplicates are ignored).
        vnodes: virtual nodes per member; more gives better balance at the
            cost of memory (``len(members) * vnodes`` points) and slower
            ``add``/``remove``.  Every process must use the same value.
    """

    __slots__ = ("_members", "_owners", "_positions", "_sorted_members", "_vnodes")

    def __init__(self, members: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if isinstance(vnodes, bool) or not isinstance(vnodes, int) or vnodes < 1:
            raise ValueError(f"vnodes must be a positive int, got {vnodes!r}")
        self._vnodes = vnodes
        self._members: set[str] = set()
        self._sorted_members: tuple[str, ...] | None = ()
        self._positions: list[int] = []
        self._owners: list[str] = []
        unique: set[str] = set()
        for member in members:
            _check_member(member)
            unique.add(member)
        if unique:
            # Bulk build: one sort instead of len(unique) * vnodes list inserts.
            points = sorted(
                (position, member)
                for member in unique
                for position in _vnode_positions(member, vnodes)
            )
            self._positions = [position for position, _ in points]
            self._owners = [member for _, member in points]
            self._members = unique
            self._sorted_members = None

    # -- membership ---------------------------------------------------------

    @property
    def vnodes(self) -> int:
        """Virtual nodes per member."""
        return self._vnodes

    @property
    def members(self) -> tuple[str, ...]:
        """The members, sorted."""
        cached = self._sorted_members
        if cached is None:
            cached = self._sorted_members = tuple(sorted(self._members))
        return cached

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        """Iterate over the members in sorted order."""
        return iter(self.members)

    def __repr__(self) -> str:
        return f"Ring(members={list(self.members)!r}, vnodes={self._vnodes})"

    def add(self, member: str) -> bool:
        """Add ``member``; return False (and change nothing) if already present.

        Raises:
            TypeError: if ``member`` is not a ``str``.
            ValueError: if ``member`` is empty.
            UnicodeEncodeError: if ``member`` is not encodable as UTF-8.
        """
        _check_member(member)
        if member in self._members:
            return False
        new_positions = _vnode_positions(member, self._vnodes)  # may raise: no change yet
        positions = self._positions
        owners = self._owners
        for position in new_positions:
            i = bisect_left(positions, position)
            # Tie-break equal positions by member name (insertion-order independent).
            while i < len(positions) and positions[i] == position and owners[i] < member:
                i += 1
            positions.insert(i, position)
            owners.insert(i, member)
        self._members.add(member)
        self._sorted_members = None
        return True

    def discard(self, member: str) -> bool:
        """Remove ``member`` if present; return whether it was present."""
        if member not in self._members:
            return False
        positions = self._positions
        owners = self._owners
        for position in _vnode_positions(member, self._vnodes):
            i = bisect_left(positions, position)
            while owners[i] != member:  # only on a position collision
                i += 1
            del positions[i]
            del owners[i]
        self._members.discard(member)
        self._sorted_members = None
        return True

    def remove(self, member: str) -> None:
        """Remove ``member``.

        Raises:
            KeyError: if ``member`` is not on the ring.
        """
        if not self.discard(member):
            raise KeyError(member)

    def copy(self) -> Ring:
        """Return an independent copy (e.g. to diff owners before/after a change)."""
        clone = Ring(vnodes=self._vnodes)
        clone._members = set(self._members)
        clone._sorted_members = self._sorted_members
        clone._positions = self._positions.copy()
        clone._owners = self._owners.copy()
        return clone

    # -- lookup -------------------------------------------------------------

    def owner(self, key: str, eligible: Callable[[str], bool] | None = None) -> str:
        """Return the member owning ``key``.

        With ``eligible``, walk clockwise to the first member for which
        ``eligible(member)`` is true; the answer equals ``owner(key)`` on a ring
        holding only the eligible members.  ``eligible`` is called at most once
        per member.

        Raises:
            LookupError: if the ring is empty or no member is eligible.
            UnicodeEncodeError: if ``key`` is not encodable as UTF-8.
        """
        positions = self._positions
        if not positions:
            raise LookupError("ring is empty")
        i = bisect_left(positions, _hash64(key.encode(), signed=False)[0])
        owners = self._owners
        first = owners[i] if i < len(owners) else owners[0]
        if eligible is None or eligible(first):
            return first
        # Slow path: walk clockwise, asking each further member once.
        rejected = {first}
        total = len(self._members)
        for j in chain(range(i, len(owners)), range(i)):
            member = owners[j]
            if member in rejected:
                continue
            if eligible(member):
                return member
            rejected.add(member)
            if len(rejected) == total:
                break
        raise LookupError(f"no eligible member for key {key!r}")

    def owners(self, key: str, n: int, eligible: Callable[[str], bool] | None = None) -> list[str]:
        """Return up to ``n`` distinct members clockwise from ``key``.

        The first is ``owner(key, eligible)``; the rest are the natural
        replica/fallback order.  Fewer than ``n`` are returned when fewer
        members (or eligible members) exist; ``n == 0`` returns ``[]``.
        ``eligible`` is called at most once per member.

        Raises:
            ValueError: if ``n`` is negative.
            LookupError: if ``n > 0`` and the ring is empty or no member is eligible.
            UnicodeEncodeError: if ``key`` is not encodable as UTF-8.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return []
        positions = self._positions
        if not positions:
            raise LookupError("ring is empty")
        i = bisect_left(positions, _hash64(key.encode(), signed=False)[0])
        owners = self._owners
        total = len(self._members)
        seen: set[str] = set()
        found: list[str] = []
        for j in chain(range(i, len(owners)), range(i)):
            member = owners[j]
            if member in seen:
                continue
            seen.add(member)
            if eligible is None or eligible(member):
                found.append(member)
                if len(found) == n:
                    break
            if len(seen) == total:
                break
        if not found:
            raise LookupError(f"no eligible member for key {key!r}")
        return found

    def owner_of(
        self, type_name: str, key: str, eligible: Callable[[str], bool] | None = None
    ) -> str:
        """Return the member hosting actor ``(type_name, key)``.

        Same as ``owner(actor_id(type_name, key), eligible)``.
        """
        return self.owner(actor_id(type_name, key), eligible)


def _check_member(member: object) -> None:
    if not isinstance(member, str):
        raise TypeError(f"ring member must be a str, got {type(member).__name__}")
    if not member:
        raise ValueError("ring member must be a non-empty string")
