"""The affinity model on its own: counters, smoothed rates and the move decision."""

from __future__ import annotations

import math

import pytest

from runtime.affinity import (
    BUDGET,
    HYSTERESIS,
    MOVE_OVERHEAD,
    Affinity,
    Link,
    best_move,
    payload_size,
)

WINDOW = 5.0


def decide(aff: Affinity, size: int = 1000, now: float = 100.0, links: Link | None = None):  # type: ignore[no-untyped-def]
    link = links or Link(bandwidth=100e6, rtt=250e-6)
    return best_move(aff, "h", ["a", "b"], lambda _: link, size, WINDOW, now, 1e6, 2.0, 60.0)


def reading(node: str, nbytes: int, seconds: float = 10.0, step: float = 1.0) -> Affinity:
    """An affinity that read ``nbytes`` per second from ``node`` for ``seconds``."""
    aff = Affinity(0.0)
    t = 0.0
    while t < seconds:
        t += step
        aff.fetched(node, int(nbytes * step))
        aff.fold(t, WINDOW)
    return aff


def test_fold_turns_counts_into_rates_that_converge() -> None:
    aff = reading("a", 1_000_000, seconds=60)
    assert aff.data_rates["a"] == pytest.approx(1_000_000, rel=0.01)
    assert aff._bytes == {}  # counters start again after every fold


def test_rates_decay_over_the_window_when_nothing_comes() -> None:
    aff = reading("a", 1_000_000, seconds=60)
    before = aff.data_rates["a"]
    aff.fold(60 + WINDOW, WINDOW)
    assert aff.data_rates["a"] == pytest.approx(before * math.exp(-1), rel=1e-6)


def test_an_actor_reading_remote_data_moves_to_it() -> None:
    move = decide(reading("a", 10_000_000, seconds=60))
    assert move is not None and move.target == "a" and move.by_data
    # the saving as the formula says: W * D / bw, against size / bw + overhead
    assert move.saving == pytest.approx(WINDOW * 10_000_000 / 100e6, rel=0.02)
    assert move.cost == pytest.approx(1000 / 100e6 + MOVE_OVERHEAD)


def test_a_saving_below_the_hysteresis_does_not_move() -> None:
    # saving W * D / bw just under HYSTERESIS * cost: stays
    cost = 1000 / 100e6 + MOVE_OVERHEAD
    rate = 0.9 * HYSTERESIS * cost * 100e6 / WINDOW
    assert decide(reading("a", int(rate), seconds=60)) is None
    assert decide(reading("a", int(rate * 1.3), seconds=60)) is not None


def test_a_large_state_must_pay_for_its_own_transfer() -> None:
    aff = reading("a", 10_000_000)
    assert decide(aff, size=1000) is not None
    assert decide(aff, size=400_000_000) is None  # 4 s to move, 0.5 s saved per window


def test_reading_locally_as_much_as_remotely_stays() -> None:
    aff = Affinity(0.0)
    for t in range(1, 20):
        aff.fetched("a", 1_000_000)
        aff.fetched("h", 1_000_000)
        aff.fold(float(t), WINDOW)
    assert decide(aff) is None


def test_calls_move_an_actor_toward_the_node_it_talks_to() -> None:
    aff = Affinity(0.0)
    for t in range(1, 20):
        for _ in range(2000):
            aff.sent("b")
        for _ in range(10):
            aff.sent("h")
        aff.fold(float(t), WINDOW)
    move = decide(aff)
    assert move is not None and move.target == "b" and not move.by_data


def test_data_outweighs_calls() -> None:
    aff = Affinity(0.0)
    for t in range(1, 20):
        aff.fetched("a", 20_000_000)
        for _ in range(500):
            aff.sent("b")
        aff.fold(float(t), WINDOW)
    move = decide(aff)
    assert move is not None and move.target == "a"


def test_an_actor_that_moved_stays_for_the_dwell_time() -> None:
    aff = reading("a", 10_000_000, seconds=1.5, step=0.5)
    assert decide(aff, now=1.5) is not None  # a fresh activation moves when the rates say so
    aff.moves = [1e6 - 1.0]  # it arrived here by a move, a second ago
    assert decide(aff, now=1.5) is None  # in place 1.5 s, dwell 2 s
    assert decide(aff, now=2.5) is not None


def test_the_move_budget_stops_a_fourth_move() -> None:
    aff = reading("a", 10_000_000)
    aff.moves = [1e6 - 10.0 * i for i in range(BUDGET)]  # BUDGET moves within the window
    assert decide(aff) is None
    aff.moves = [1e6 - 100.0] + [1e6 - 10.0 * i for i in range(BUDGET - 1)]  # one aged out
    assert decide(aff) is not None


def test_candidates_bound_the_targets() -> None:
    aff = reading("elsewhere", 10_000_000)
    assert decide(aff) is None  # "elsewhere" cannot host it: not a candidate


def test_links_learn_bandwidth_and_round_trip() -> None:
    link = Link(bandwidth=100e6, rtt=250e-6)
    link.saw_transfer(100, 1.0)  # too small to say anything of bandwidth
    assert link.bandwidth == 100e6
    for _ in range(30):
        link.saw_transfer(10_000_000, 0.01)
        link.saw_round_trip(0.001)
    assert link.bandwidth == pytest.approx(1e9, rel=0.01)
    assert link.rtt == pytest.approx(0.001, rel=0.01)


def test_payload_size_counts_buffers_and_containers() -> None:
    assert payload_size(b"x" * 10) == 10
    assert payload_size(memoryview(bytearray(12))) == 12
    assert payload_size([b"ab", "cde", {"k": b"xyz"}]) == 2 + 3 + 1 + 3


def test_payload_size_of_numpy_arrays_is_their_nbytes() -> None:
    np = pytest.importorskip("numpy")
    assert payload_size(np.zeros(100, dtype="float64")) == 800
