"""Where a call goes: the one owner of that answer, for calls sent from here and for calls
that arrive here (Orleans' GrainLocator and its location cache).

The answers, for an actor ``type``/``key``:

* ``HERE`` (None): deliver it on this node (it is active here, or this node is where it is
  to be activated);
* an address: send it there (its cached location: the ring owner, or the host a redirect or a
  directory entry named);
* ``PLACE`` (``""``): it must be placed first (``Placement.place``: this node owns it but its
  view is not settled, it is leaving, its type's director chooses, or it is claimed for
  ``placement="local"``), and the caller waits for the answer.

:class:`LocationCache` is plain data (no I/O): the cluster clears it whenever the ring changes
and drops the entries of a member that is gone.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from actors.errors import ActorError, NodeUnavailable

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.messaging import Request
    from runtime.placement import Placement

__all__ = ["HERE", "PLACE", "LocationCache", "Locator"]

#: Deliver on this node.
HERE: Final = None
#: Place the actor first (and wait for the answer).
PLACE: Final = ""
#: Most cached locations per actor type (beyond it, owners are computed on every call).
ROUTE_CACHE: Final = 1 << 17


class LocationCache:
    """Known locations by type name and key (the owner, or where a redirect pointed)."""

    __slots__ = ("_tables", "limit")

    def __init__(self, limit: int = ROUTE_CACHE) -> None:
        self._tables: dict[str, dict[str, str]] = {}
        self.limit = limit

    def get(self, type_name: str, key: str) -> str | None:
        """The cached host, or None."""
        table = self._tables.get(type_name)
        return None if table is None else table.get(key)

    def put(self, type_name: str, key: str, host: str) -> None:
        """Remember ``host`` (while the type's table has room)."""
        table = self._tables.get(type_name)
        if table is None:
            table = self._tables[type_name] = {}
        if len(table) < self.limit or key in table:
            table[key] = host

    def forget(self, type_name: str, key: str) -> None:
        """Drop the entry for one actor."""
        table = self._tables.get(type_name)
        if table is not None:
            table.pop(key, None)

    def drop_host(self, host: str) -> None:
        """Drop every entry naming ``host`` (a member that is gone)."""
        for table in self._tables.values():
            for key in [k for k, h in table.items() if h == host]:
                del table[key]

    def clear(self) -> None:
        """Forget everything (the ring changed)."""
        self._tables.clear()


class Locator:
    """Where a call for an actor goes, from this node's catalog, view and cache."""

    __slots__ = ("_catalog", "_cluster", "_loop", "_placement", "_request", "address", "cache")

    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        placement: Placement,
        cache: LocationCache,
        request: Request,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._placement = placement
        self._request = request
        self.cache = cache
        self.address = cluster.address
        self._loop = asyncio.get_running_loop()

    # -- calls sent from here -----------------------------------------------------------------

    def direct(self, atype: ActorType | None, type_name: str, key: str, method: str) -> str | None:
        """The hot path's answer: the host to send an ask to at once, if the ring sends it
        to another node, it is not active here, and the gate is open; None when anything
        else must be decided first (:meth:`outbound`). Has no side effect."""
        if atype is not None:
            if method not in atype.methods or atype.placement == "local":
                return None
            table = self._catalog.by_type.get(type_name)
            if table is not None and key in table:
                return None
        cluster = self._cluster
        try:
            host = self.route(type_name, key)
        except ActorError:
            return None  # raised again by outbound(), when the call is awaited
        if host == self.address or self._loop.time() >= cluster.open_until:
            return None  # (a closed gate: no quorum, or a stall to notice first)
        return host

    def route(self, type_name: str, key: str) -> str:
        """Where to send a message for the actor: its cached location, computed on the ring
        the first time (``UnknownActorType`` if no member serves its type)."""
        host = self.cache.get(type_name, key)
        if host is None:
            host = self._cluster.owner(type_name, key)
            self.cache.put(type_name, key, host)
        return host

    def outbound(self, atype: ActorType | None, type_name: str, key: str) -> str | None:
        """Where a call made on this node goes: ``HERE``, an address, or ``PLACE``.
        ``NodeUnavailable`` on a member that may not serve (no quorum, or its lease ran
        out): whatever it would send across may be served by the majority's activation, or
        time out; it refuses at once instead."""
        cluster = self._cluster
        serving = cluster.serving()
        if cluster.hosting and not serving and not cluster.leaving:
            raise NodeUnavailable(f"{self.address} has no quorum: it serves no actors")
        if atype is None:
            host = self.route(type_name, key)
            return HERE if host == self.address else host
        if (serving or (cluster.leaving and cluster.may_serve())) and self._catalog.get(
            atype, key
        ) is not None:
            return HERE
        if atype.placement == "local" and serving and cluster.serves(type_name):
            return PLACE  # claimed from its owner first, then activated here
        host = self.route(type_name, key)
        if host != self.address:
            return host
        placed = self._placement.place_now(atype, key)
        if placed is None:
            return PLACE
        return HERE if placed == self.address else placed

    async def place(self, atype: ActorType, key: str) -> str:
        """Where an actor that must be placed first goes (``Placement.place``)."""
        return await self._placement.place(atype, key)

    def learned(self, type_name: str, key: str, host: str) -> None:
        """A redirect (or a move) said the actor lives on ``host``: remember it."""
        if host in self._cluster.membership:
            self.cache.put(type_name, key, host)
        else:
            self.cache.forget(type_name, key)

    # -- calls that arrive here ---------------------------------------------------------------

    def inbound(self, atype: ActorType, key: str, redirected: bool) -> str | None:
        """Where a call that arrived here for an actor *not active here* goes: an address
        (this node's own: activate it here), or ``PLACE``. ``redirected``: the caller was
        sent here by a redirect, so an entry that named this node is stale (its owner is
        told). ``NodeUnavailable`` if this node owns it but may not serve."""
        cluster = self._cluster
        host = self.route(atype.name, key)
        if host == self.address:
            if not cluster.serving() and not cluster.leaving:
                raise NodeUnavailable(f"{self.address} serves no actors now")
            placed = self._placement.place_now(atype, key)
            return PLACE if placed is None else placed
        if redirected:
            cluster.not_here(atype.name, key, host)
        return host

    # -- inspection ---------------------------------------------------------------------------

    async def locate(self, type_name: str, key: str) -> str | None:
        """The address hosting the actor, or None if it is not active: asks where this node
        would send its messages, then its owner."""
        if self._catalog.lookup(type_name, key) is not None:
            return self.address
        cluster = self._cluster
        places = [self.route(type_name, key), cluster.owner(type_name, key)]
        for host in dict.fromkeys(places):
            if host == self.address:
                answer: Any = cluster.hosted_here(type_name, key)
            else:
                answer = await self._request(host, "locate", [type_name, key])
            if isinstance(answer, str):
                return answer
        return None
