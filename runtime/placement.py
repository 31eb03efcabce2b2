"""Placement directors: where a new activation of an actor goes, one director per strategy.

The ring owner of an actor's key decides where its single activation lives (see
``runtime.cluster``). When the owner has no record of an activation and its view is settled,
it asks the director of the actor type's ``placement``:

* ``hash`` -- the owner itself (one hop, no lookup: the default);
* ``random`` -- a member chosen at random among those that serve the type and offer its
  ``resources``; the owner activates it there and records it in its directory;
* ``local`` -- the caller's node: a member calling an actor it serves claims it from the owner
  before activating it locally (``Cluster.claim``), so a second caller elsewhere finds it;
  a call that reaches the owner from a client is placed by hash;
* ``data`` -- until the data-affinity issue lands, placed as ``hash``.

``resources`` narrow every strategy to the members that offer them (the ring owner is chosen
among those already). Directors are plain objects: given the candidates and a random source,
they answer an address; no I/O. :class:`Placement` is the service that runs them: it decides,
as the owner, where an actor that lives nowhere yet goes, waiting for a settled view first.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from actors.errors import NodeUnavailable

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.catalog import Catalog
    from runtime.cluster import Cluster
    from runtime.messaging import Request

__all__ = ["DIRECTORS", "Director", "HashDirector", "Placement", "RandomDirector"]


class Director(Protocol):
    """Chooses the host of a new activation among ``candidates`` (``me`` is the owner)."""

    def choose(self, me: str, candidates: Sequence[str], rng: random.Random) -> str: ...


class HashDirector:
    """The ring owner hosts: the actor lives where its key hashes to."""

    def choose(self, me: str, candidates: Sequence[str], rng: random.Random) -> str:
        return me


class RandomDirector:
    """Any member that can host the type, with equal chances."""

    def choose(self, me: str, candidates: Sequence[str], rng: random.Random) -> str:
        return rng.choice(sorted(candidates)) if candidates else me


#: The director of each ``placement`` the owner decides on (``local`` is the caller's claim).
DIRECTORS: Final[dict[str, Director]] = {
    "hash": HashDirector(),
    "local": HashDirector(),
    "random": RandomDirector(),
    "data": HashDirector(),
}


class Placement:
    """Where a new activation of an actor this node owns goes (one decision per actor at a
    time: concurrent first calls share it), and the claims of ``placement="local"``."""

    __slots__ = ("_catalog", "_cluster", "_placing", "_request", "_rng", "timeout")

    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        request: Request,
        rng: random.Random,
        timeout: float,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._request = request
        self._rng = rng
        #: how long a decision may wait for the view to settle
        self.timeout = timeout
        self._placing: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def place(self, atype: ActorType, key: str) -> str:
        """Where an actor this node owns and does not host should live: the host its directory
        entry names, or here once the view is settled (or, while this node leaves, its
        successor, where it is activated first). The answer may also be another node, when the
        view that settled has given the actor to it."""
        actor_id = (atype.name, key)
        pending = self._placing.get(actor_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._placing[actor_id] = fut
        try:
            host = await self._place(atype, key)
            fut.set_result(host)
            return host
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._placing[actor_id]

    def place_now(self, atype: ActorType, key: str) -> str | None:
        """The placement decision if it needs no waiting, else None."""
        if (atype.name, key) in self._placing:
            return None
        return self._decide(atype, key)

    def _decide(self, atype: ActorType, key: str) -> str | None:
        cluster = self._cluster
        entry = cluster.directory.lookup(atype.name, key)
        if entry is not None:
            if entry.host != cluster.address and entry.host in cluster.membership:
                return entry.host
            cluster.directory.unregister(atype.name, key, entry.host)
        if cluster.leaving or not cluster.settled or atype.placement == "random":
            return None  # wait for the settle, or ask the type's director (may be elsewhere)
        return cluster.address

    async def _place(self, atype: ActorType, key: str) -> str:
        cluster = self._cluster
        if atype.placement == "local" and cluster.serving() and cluster.serves(atype.name):
            return await self.claim(atype, key)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.timeout
        while True:
            decided = self._decide(atype, key)
            if decided is not None:
                return decided
            if cluster.settled:
                # (also while leaving: only a settled view knows what the others host, and a
                # leaver that joined a moment ago may not have heard of it yet)
                if cluster.leaving:
                    target = cluster.successor(atype, key)
                    if target is None:
                        raise NodeUnavailable(f"no other member can host {atype.name}/{key}")
                    return await self._place_on(atype, key, target)
                target = DIRECTORS[atype.placement].choose(
                    cluster.address, self._candidates(atype), self._rng
                )
                if target == cluster.address:
                    return target
                return await self._place_on(atype, key, target)
            try:
                async with asyncio.timeout_at(give_up):
                    await cluster.wait_settled()
            except TimeoutError:
                raise NodeUnavailable(
                    f"{cluster.address} could not settle its view of the cluster "
                    f"(waiting for {sorted(cluster.sync.waiting)})"
                ) from None
            owner = cluster.owner(atype.name, key)
            if owner != cluster.address:
                return owner

    def _candidates(self, atype: ActorType) -> list[str]:
        """The members that can host ``atype`` (they serve it and offer its resources)."""
        return [
            a
            for a, m in self._cluster.membership.members.items()
            if m.can_host(atype.name, atype.resources)
        ]

    async def _place_on(self, atype: ActorType, key: str, target: str) -> str:
        """Activate a new actor on ``target`` and record it here (we own it): no call for it
        needs to be placed again. While leaving, ``target`` is our successor for the key."""
        epoch = await self._request(target, "handoff", [atype.name, key, None, 0])
        self._cluster.directory.register(
            atype.name, key, target, epoch if isinstance(epoch, int) else 0
        )
        return target

    async def claim(self, atype: ActorType, key: str) -> str:
        """``placement="local"``: where the actor lives, claiming it for this node if it lives
        nowhere yet (its owner records the claim before this node activates it)."""
        cluster = self._cluster
        owner = cluster.owner(atype.name, key)
        if owner == cluster.address:
            return await self.claimed(atype, key, cluster.address)
        answer = await self._request(owner, "claim", [atype.name, key])
        return answer if isinstance(answer, str) else owner

    async def claimed(self, atype: ActorType, key: str, claimant: str) -> str:
        """As the owner: the host of the actor, recording ``claimant`` as it if there is none."""
        cluster = self._cluster
        if not cluster.settled:
            async with asyncio.timeout(self.timeout):
                await cluster.wait_settled()
        if not cluster.owns(atype.name, key):
            return cluster.owner(atype.name, key)
        if self._catalog.lookup(atype.name, key) is not None:
            return cluster.address
        entry = cluster.directory.lookup(atype.name, key)
        if entry is not None and entry.host in cluster.membership:
            return entry.host
        if claimant != cluster.address:
            cluster.directory.register(atype.name, key, claimant, 0)
        return claimant
