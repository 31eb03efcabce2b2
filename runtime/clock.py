"""Time and randomness for one node: the one seam a simulator replaces.

Everything a node reads from the outside world's clock or its random source goes through a
:class:`Clock`: wall-clock time (deadlines that cross the wire, epochs, incarnations) and the
random generator its membership protocol and client draw from. Loop time (timers, timeouts)
comes from the event loop itself, so a virtual-time loop (``runtime.simloop``) together with
a :class:`Clock` whose ``wall`` follows that loop makes a whole cluster of nodes in one
process deterministic: the same seed replays the same schedule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """Wall-clock time and a random generator. The default reads the system clock."""

    __slots__ = ("random", "wall")

    def __init__(
        self, wall: Callable[[], float] = time.time, rng: random.Random | None = None
    ) -> None:
        #: seconds since the epoch (a plain callable, so the hot path pays one call)
        self.wall = wall
        #: the node's random source (SWIM's probe order, a client's choice of member)
        self.random = rng if rng is not None else random.Random()

    def derive(self) -> random.Random:
        """A generator of its own for a component, seeded from this one."""
        return random.Random(self.random.getrandbits(64))
