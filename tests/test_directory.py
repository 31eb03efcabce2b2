"""The directory partition and the epoch clock (sans-io)."""

from __future__ import annotations

import pytest

from router.directory import MAX_AHEAD, MOVING, Directory, Entry, EpochClock, ViewSync


def test_first_registration_wins_and_is_returned() -> None:
    d = Directory()
    assert d.register("A", "k", "n1", 5) == Entry("n1", 5)
    assert d.register("A", "k", "n2", 9) == Entry("n1", 5)  # the duplicate loses
    assert d.register("A", "k", "n1", 7) == Entry("n1", 7)  # newer epoch, same host
    assert d.register("A", "k", "n1", 6) == Entry("n1", 7)  # an older one does not go back
    assert d.lookup("A", "k") == Entry("n1", 7) and d.lookup("A", "x") is None


def test_unregister_only_matching_host_and_epoch() -> None:
    d = Directory()
    d.register("A", "k", "n1", 5)
    assert not d.unregister("A", "k", "n2")
    assert not d.unregister("A", "k", "n1", epoch=4)
    assert d.unregister("A", "k", "n1", epoch=5) and len(d) == 0


def test_purge_host_and_take_unowned() -> None:
    d = Directory()
    for i in range(10):
        d.register("A", f"k{i}", "dead" if i % 2 else "alive", i)
    assert sorted(d.purge_host("dead")) == [("A", f"k{i}") for i in (1, 3, 5, 7, 9)]
    moved = d.take_unowned(lambda t, k: k in {"k0", "k2"})
    assert sorted(aid for aid, _ in moved) == [("A", "k4"), ("A", "k6"), ("A", "k8")]
    assert sorted(aid for aid, _ in d) == [("A", "k0"), ("A", "k2")]


def test_epochs_increase_and_pass_observed_ones() -> None:
    clock = EpochClock()
    a = clock.issue(100.0)
    b = clock.issue(100.0)  # same clock reading: still greater
    assert b > a
    clock.observe(b + 10_000_000, 100.0)
    assert clock.issue(100.0) > b + 10_000_000
    assert EpochClock().issue(200.0) > EpochClock().issue(150.0)  # later clock, later epoch


@pytest.mark.parametrize("epoch", [-1, int((100.0 + MAX_AHEAD) * 1e6) + 1, 2**64 - 1])
def test_an_epoch_from_the_far_future_or_below_zero_is_refused(epoch: int) -> None:
    """A forged epoch (the attack: 2**64 - 1) would push every later epoch out of msgpack's
    range; it is refused and the clock stays as it was."""
    clock = EpochClock()
    a = clock.issue(100.0)
    with pytest.raises(ValueError, match="outside"):
        clock.observe(epoch, 100.0)
    assert clock.last == a
    clock.observe(int((100.0 + MAX_AHEAD) * 1e6), 100.0)  # at the edge: taken


def test_view_sync_settles_when_every_other_member_confirmed_the_current_round() -> None:
    sync = ViewSync()
    assert sync.settled  # alone: nothing to confirm
    first = sync.begin(["b", "c"])
    assert not sync.settled and sync.waiting == {"b", "c"}
    assert sync.is_current(first, "b")
    assert not sync.confirmed(first, "b")
    assert not sync.is_current(first, "b")  # answered: no longer awaited
    second = sync.begin(["b", "c", "d"])  # the view changed before c answered
    assert not sync.confirmed(first, "c")  # an answer about the old view counts for nothing
    assert sync.waiting == {"b", "c", "d"}
    assert not sync.is_current(first, "c")
    for member in ("d", "b"):
        assert not sync.confirmed(second, member)
    assert sync.confirmed(second, "c") and sync.settled
    assert sync.begin([]) > second and sync.settled  # a view of one is settled at once


def test_a_moving_placeholder_gives_way_to_any_real_registration() -> None:
    d = Directory()
    d.register("A", "k", "source", MOVING)  # reported while its host was handing it over
    assert d.lookup("A", "k") == Entry("source", MOVING)
    assert d.register("A", "k", "target", 42) == Entry("target", 42)  # the new host wins
    assert d.register("A", "k", "source", MOVING) == Entry("target", 42)  # and stays
