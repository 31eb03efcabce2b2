"""Affinity: what an activation reads and whom it talks to, and where it would be cheapest.

Plain objects, no I/O, no clock of their own (times come in as arguments), so that they are
tested and simulated directly. The rebalancer (``runtime.rebalancer``) drives them.

Accounting (per activation of a ``placement="data"`` actor, on the hot path):

* ``sent(node)``: a call its turn made to an actor on ``node`` (this node's own address for a
  local call);
* ``fetched(node, nbytes)``: ``DataRef.get`` read ``nbytes`` held by ``node``.

These are plain counters; every rebalancing period :meth:`Affinity.fold` turns them into rates
(per second) smoothed over a window ``W`` (an exponentially weighted moving average with time
constant ``W``), so the hot path never decays anything.

The decision (:func:`best_move`) for an activation on node ``h`` with smoothed rates ``D[n]``
(bytes/s read from node ``n``) and ``M[n]`` (calls/s exchanged with actors on ``n``, both
ways), for each candidate ``t`` that can host its type::

    saving(t) = W * ( (D[t] - D[h]) / bw(t)  +  (M[t] - M[h]) * rtt(t) )
    cost(t)   = S / bw(t) + MOVE_OVERHEAD

where ``S`` is the size of its state, ``bw(t)`` the measured bandwidth of the link to ``t``
(bytes/s) and ``rtt(t)`` its measured round trip (s); what is local costs nothing. It moves to
the ``t`` with the largest saving if ``saving(t) > HYSTERESIS * cost(t)``: the time it would
save over the next window pays for the move several times over. A move that would save less
than ``HYSTERESIS`` times its cost, a move before an actor that moved has been ``dwell``
seconds in its new place, and a move beyond the budget (``BUDGET`` moves per
``budget_window`` seconds, carried along with the actor) are not made: an actor never
ping-pongs. The rebalancer sets the window to ``WINDOWS`` rebalancing periods, ``dwell`` to
``DWELL_PERIODS`` and ``budget_window`` to ``BUDGET_PERIODS`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "BUDGET",
    "BUDGET_PERIODS",
    "DWELL_PERIODS",
    "HYSTERESIS",
    "MOVE_OVERHEAD",
    "WINDOWS",
    "Affinity",
    "Link",
    "Move",
    "best_move",
    "payload_size",
]

#: How many times over the move must pay for itself within the window.
HYSTERESIS: Final = 2.0
#: Seconds a fixed part of every move costs (handoff round trip, activation), beside its bytes.
MOVE_OVERHEAD: Final = 0.005
#: The smoothing window, in rebalancing periods.
WINDOWS: Final = 5
#: Periods an activation stays where it is before it may move (again).
DWELL_PERIODS: Final = 2
#: Most moves of one actor per ``BUDGET_PERIODS`` periods.
BUDGET: Final = 3
BUDGET_PERIODS: Final = 60
#: Assumed link figures until one is measured: 100 MB/s, a quarter-millisecond round trip.
DEFAULT_BANDWIDTH: Final = 100e6
DEFAULT_RTT: Final = 250e-6


class Affinity:
    """The counters and smoothed rates of one activation (see the module docstring)."""

    __slots__ = ("_bytes", "_calls", "_last", "call_rates", "data_rates", "moves", "since")

    def __init__(self, now: float, moves: Iterable[float] = ()) -> None:
        self._calls: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        #: smoothed bytes/s read from each node (``D``), calls/s exchanged with each (``M``)
        self.data_rates: dict[str, float] = {}
        self.call_rates: dict[str, float] = {}
        #: when the actor moved (wall-clock seconds), oldest first: its move budget
        self.moves: list[float] = list(moves)
        #: when this activation started where it is
        self.since = now
        self._last = now

    def sent(self, node: str) -> None:
        """A call exchanged with an actor on ``node``: made by this activation, or made to
        it from there (hot path: one dict update)."""
        calls = self._calls
        calls[node] = calls.get(node, 0) + 1

    def fetched(self, node: str, nbytes: int) -> None:
        """``nbytes`` of data held by ``node`` read."""
        data = self._bytes
        data[node] = data.get(node, 0) + nbytes

    def fold(self, now: float, window: float) -> None:
        """Turn the counts since the last fold into rates, smoothed over ``window`` seconds."""
        dt = now - self._last
        if dt <= 0:
            return
        self._last = now
        keep = math.exp(-dt / window)
        for counts, rates in ((self._calls, self.call_rates), (self._bytes, self.data_rates)):
            for node in list(rates):
                rates[node] *= keep
                if rates[node] < 1e-6 and node not in counts:
                    del rates[node]
            for node, n in counts.items():
                rates[node] = rates.get(node, 0.0) + (1.0 - keep) * n / dt
            counts.clear()

    def forget_calls(self, node: str) -> None:
        """Drop what was counted of calls to ``node`` (the actors it called there moved)."""
        self._calls.pop(node, None)
        self.call_rates.pop(node, None)

    def moved_recently(self, wall: float, budget_window: float) -> int:
        """How many moves count against the budget at ``wall``."""
        self.moves = [t for t in self.moves if wall - t < budget_window]
        return len(self.moves)


class Link:
    """What this node measured of its link to one peer: bandwidth and round trip."""

    __slots__ = ("bandwidth", "rtt")

    def __init__(self, bandwidth: float = DEFAULT_BANDWIDTH, rtt: float = DEFAULT_RTT) -> None:
        self.bandwidth = bandwidth
        self.rtt = rtt

    def saw_transfer(self, nbytes: int, seconds: float) -> None:
        """A transfer of ``nbytes`` took ``seconds`` (only large ones say much of bandwidth)."""
        if nbytes >= 1 << 16 and seconds > 0:
            self.bandwidth = 0.7 * self.bandwidth + 0.3 * (nbytes / seconds)

    def saw_round_trip(self, seconds: float) -> None:
        """A small request took ``seconds`` to be answered."""
        if seconds > 0:
            self.rtt = 0.7 * self.rtt + 0.3 * seconds


class Move:
    """A move worth making: to ``target``, saving ``saving`` seconds per window for ``cost``;
    ``by_data``: the data it reads is what pays for it (else the calls it makes)."""

    __slots__ = ("by_data", "cost", "saving", "target")

    def __init__(self, target: str, saving: float, cost: float, by_data: bool) -> None:
        self.target = target
        self.saving = saving
        self.cost = cost
        self.by_data = by_data

    def __repr__(self) -> str:
        kind = "data" if self.by_data else "calls"
        return f"<Move to {self.target} saving={self.saving:.4f}s cost={self.cost:.4f}s ({kind})>"


def best_move(
    aff: Affinity,
    here: str,
    candidates: Sequence[str],
    links: Callable[[str], Link],
    state_size: int,
    window: float,
    now: float,
    wall: float,
    dwell: float,
    budget_window: float,
) -> Move | None:
    """The move the formula of the module docstring makes, or None to stay. ``dwell`` holds
    back an actor that arrived by a move; a fresh activation may move as soon as its rates
    say so."""
    if aff.moved_recently(wall, budget_window) >= BUDGET:
        return None
    if aff.moves and now - aff.since < dwell:
        return None
    data, calls = aff.data_rates, aff.call_rates
    d_here, m_here = data.get(here, 0.0), calls.get(here, 0.0)
    best: Move | None = None
    for target in candidates:
        if target == here:
            continue
        d, m = data.get(target, 0.0), calls.get(target, 0.0)
        if d <= d_here and m <= m_here:
            continue
        link = links(target)
        by_bytes = (d - d_here) / link.bandwidth
        by_calls = (m - m_here) * link.rtt
        saving = window * (by_bytes + by_calls)
        cost = state_size / link.bandwidth + MOVE_OVERHEAD
        if saving > HYSTERESIS * cost and (best is None or saving - cost > best.saving - best.cost):
            best = Move(target, saving, cost, by_bytes > by_calls)
    return best


def payload_size(value: Any) -> int:
    """Bytes a payload holds, as far as it says (buffers, containers of them), for accounting."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    nbytes = getattr(value, "nbytes", None)  # numpy arrays and the like
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(payload_size(k) + payload_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(payload_size(v) for v in value)
    return 8
