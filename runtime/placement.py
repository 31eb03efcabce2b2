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
they answer an address; no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Protocol

__all__ = ["DIRECTORS", "Director", "HashDirector", "RandomDirector"]


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
