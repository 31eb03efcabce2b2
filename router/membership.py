"""Cluster membership: who the members are and what each of them serves (sans-io).

A :class:`Membership` is a plain object: the node feeds it what it hears (a join, a member
list from a peer, a peer judged dead) and asks it where an actor belongs. It owns the ring of
hosting members, so every node that agrees on the member set computes the same owner for each
actor id.

This is the static half: members join through a seed, which answers with the member list and
passes the newcomer on to everyone it knows. Failure detection and gossip come with the
router issue and extend this class rather than replace it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from router.ring import Ring

__all__ = ["Member", "Membership"]


class Member:
    """One node: its address, the actor types it serves, its resources and incarnation."""

    __slots__ = ("address", "incarnation", "resources", "types")

    def __init__(
        self,
        address: str,
        types: Iterable[str] = (),
        resources: Mapping[str, float] | None = None,
        incarnation: int = 0,
    ) -> None:
        self.address = address
        self.types = frozenset(types)
        self.resources = dict(resources or {})
        self.incarnation = incarnation

    def to_wire(self) -> list[Any]:
        """A msgpack-friendly form: ``[address, [types], {resources}, incarnation]``."""
        return [self.address, sorted(self.types), self.resources, self.incarnation]

    @classmethod
    def from_wire(cls, data: Any) -> Member:
        """Rebuild from :meth:`to_wire` output; raises ``ValueError`` on malformed data."""
        if not (isinstance(data, list | tuple) and len(data) == 4):
            raise ValueError("a member is [address, types, resources, incarnation]")
        address, types, resources, incarnation = data
        if not isinstance(address, str) or not address:
            raise ValueError("member address must be a non-empty str")
        if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
            raise ValueError("member types must be a list of str")
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in resources.items()
        ):
            raise ValueError("member resources must map str to numbers")
        if not isinstance(incarnation, int) or isinstance(incarnation, bool) or incarnation < 0:
            raise ValueError("member incarnation must be a non-negative int")
        return cls(address, types, resources, incarnation)

    def can_host(self, type_name: str, needs: Mapping[str, float]) -> bool:
        """Whether this member serves ``type_name`` and offers the resources it needs."""
        if type_name not in self.types:
            return False
        return all(self.resources.get(k, 0) >= v for k, v in needs.items())

    def __repr__(self) -> str:
        return f"<Member {self.address} types={sorted(self.types)} inc={self.incarnation}>"


class Membership:
    """The member table and the ring of hosting members, as seen by one node."""

    __slots__ = ("_members", "_ring", "me")

    def __init__(self, me: Member, vnodes: int = 128) -> None:
        self.me = me
        self._members: dict[str, Member] = {}
        self._ring = Ring(vnodes=vnodes)
        self._add(me)

    @property
    def members(self) -> Mapping[str, Member]:
        """Every known live member (this node included), by address."""
        return self._members

    @property
    def ring(self) -> Ring:
        """The ring of members that host at least one actor type."""
        return self._ring

    def __contains__(self, address: object) -> bool:
        return address in self._members

    def __len__(self) -> int:
        return len(self._members)

    def _add(self, member: Member) -> None:
        self._members[member.address] = member
        if member.types:
            self._ring.add(member.address)
        else:
            self._ring.discard(member.address)

    def merge(self, members: Iterable[Member]) -> list[Member]:
        """Learn members; a known address is replaced only by a newer or equal incarnation
        with different contents. Returns the members that were new or changed."""
        changed: list[Member] = []
        for member in members:
            if member.address == self.me.address:
                continue
            known = self._members.get(member.address)
            if known is not None and (
                member.incarnation < known.incarnation
                or (
                    member.incarnation == known.incarnation
                    and member.types == known.types
                    and member.resources == known.resources
                )
            ):
                continue
            self._add(member)
            changed.append(member)
        return changed

    def remove(self, address: str) -> Member | None:
        """Forget a member (it left or was judged dead); returns it if it was known."""
        if address == self.me.address:
            return None
        member = self._members.pop(address, None)
        if member is not None:
            self._ring.discard(address)
        return member

    def serves(self, type_name: str) -> bool:
        """Whether any known member serves ``type_name``."""
        return any(type_name in m.types for m in self._members.values())

    def owner(self, type_name: str, key: str, needs: Mapping[str, float] | None = None) -> str:
        """The address of the member that owns actor ``type_name``/``key``: the first member
        clockwise from the actor id's position that serves the type (and offers ``needs``).
        Raises ``LookupError`` if no member does."""
        members = self._members
        req = needs or {}

        def eligible(address: str) -> bool:
            member = members.get(address)
            return member is not None and member.can_host(type_name, req)

        return self._ring.owner_of(type_name, key, eligible)

    def to_wire(self) -> list[Any]:
        """Every member in wire form (for a join answer)."""
        return [m.to_wire() for m in self._members.values()]
