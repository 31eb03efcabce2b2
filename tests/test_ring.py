"""Tests for router.ring: determinism, balance, minimal movement, filters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ring import DEFAULT_VNODES, Ring, actor_id, key_position

REPO = Path(__file__).resolve().parent.parent


def addrs(n: int, base: int = 5700) -> list[str]:
    return [f"tcp://127.0.0.1:{base + i}" for i in range(n)]


def keys(n: int, prefix: str = "key") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


# -- basics ---------------------------------------------------------------------------------------


def test_empty_ring_raises_lookup_error() -> None:
    ring = Ring()
    assert len(ring) == 0
    assert ring.members == ()
    with pytest.raises(LookupError):
        ring.owner("k")
    with pytest.raises(LookupError):
        ring.owner("k", eligible=lambda m: True)
    with pytest.raises(LookupError):
        ring.owners("k", 2)
    with pytest.raises(LookupError):
        ring.owner_of("Counter", "k")
    assert ring.owners("k", 0) == []


def test_membership_api() -> None:
    a, b, c = addrs(3)
    ring = Ring([c, a], vnodes=16)
    assert ring.vnodes == 16
    assert len(ring) == 2
    assert list(ring.members) == [a, c]
    assert list(ring) == [a, c]
    assert a in ring and b not in ring
    assert ring.add(b) is True
    assert ring.add(b) is False
    assert list(ring.members) == [a, b, c]
    ring.remove(a)
    assert list(ring.members) == [b, c]
    with pytest.raises(KeyError):
        ring.remove(a)
    assert ring.discard(a) is False
    assert ring.discard(b) is True
    assert list(ring.members) == [c]
    assert repr(ring) == f"Ring(members={[c]!r}, vnodes=16)"


def test_duplicate_initial_members_are_ignored() -> None:
    a, b = addrs(2)
    assert Ring([a, b, a]).members == (a, b)
    ks = keys(500)
    r1, r2 = Ring([a, b, a, a]), Ring([a, b])
    assert [r1.owner(k) for k in ks] == [r2.owner(k) for k in ks]


def test_single_member_owns_everything() -> None:
    (a,) = addrs(1)
    ring = Ring([a])
    assert {ring.owner(k) for k in keys(1000)} == {a}
    assert ring.owners("k", 3) == [a]


@pytest.mark.parametrize("vnodes", [0, -1, True, 2.5])
def test_invalid_vnodes(vnodes: object) -> None:
    with pytest.raises(ValueError):
        Ring(vnodes=vnodes)  # type: ignore[arg-type]


def test_invalid_members() -> None:
    ring = Ring()
    with pytest.raises(ValueError):
        ring.add("")
    with pytest.raises(TypeError):
        ring.add(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Ring([b"tcp://x:1"])  # type: ignore[list-item]
    with pytest.raises(UnicodeEncodeError):
        ring.add("tcp://\ud800:1")
    assert len(ring) == 0


def test_surrogate_key_raises_instead_of_crashing() -> None:
    # mmh3 5.3.1 segfaults on a str with a lone surrogate; the ring encodes first.
    ring = Ring(addrs(2))
    with pytest.raises(UnicodeEncodeError):
        ring.owner("bad\udcffkey")
    with pytest.raises(UnicodeEncodeError):
        key_position("\ud800")


def test_actor_id() -> None:
    assert actor_id("Counter", "user/42") == "Counter/user/42"
    assert actor_id("Counter", "") == "Counter/"
    for bad in ("", "a/b"):
        with pytest.raises(ValueError):
            actor_id(bad, "k")
    ring = Ring(addrs(5))
    for k in keys(200):
        assert ring.owner_of("Counter", k) == ring.owner(f"Counter/{k}")


def test_key_position_is_unsigned_64_bit_and_pinned() -> None:
    # Pinned values: changing the hashing scheme breaks mixed-version clusters.
    assert key_position("") == 0
    assert key_position("Counter/1") == 4797418576689122099
    # this one is >= 2**63: it would come out negative if `signed` were lost
    assert key_position("tcp://127.0.0.1:5700#0") == 11497721255080895653
    for k in keys(1000):
        assert 0 <= key_position(k) < 2**64


def test_owners_pinned() -> None:
    members = addrs(3)
    ring = Ring(members)
    got = [members.index(ring.owner(k)) for k in ("a", "b", "c", "d", "e", "f")]
    assert got == [0, 2, 2, 1, 2, 2]


# -- determinism ----------------------------------------------------------------------------------


def test_deterministic_across_insertion_orders() -> None:
    members = addrs(12)
    ks = keys(3000)
    bulk = Ring(members)
    forward = Ring()
    for m in members:
        forward.add(m)
    backward = Ring()
    for m in reversed(members):
        backward.add(m)
    churned = Ring(addrs(5, base=9000) + members[:6])
    for m in addrs(5, base=9000):
        churned.remove(m)
    for m in members[6:]:
        churned.add(m)
    expected = [bulk.owner(k) for k in ks]
    for ring in (forward, backward, churned):
        assert ring._positions == bulk._positions
        assert ring._owners == bulk._owners
        assert [ring.owner(k) for k in ks] == expected


_CHILD = """
import json, sys
from router.ring import Ring
members, ks = json.load(sys.stdin)
ring = Ring(reversed(members))
json.dump([ring.owner(k) for k in ks], sys.stdout)
"""


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_deterministic_across_processes(seed: str) -> None:
    members = addrs(7)
    ks = keys(1000)
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps([members, ks]),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    ring = Ring(members)
    assert json.loads(proc.stdout) == [ring.owner(k) for k in ks]


# -- balance and movement -------------------------------------------------------------------------


def test_balance_ten_members() -> None:
    members = addrs(10)
    ring = Ring(members, vnodes=128)
    n = 100_000
    counts = Counter(ring.owner(k) for k in keys(n))
    assert set(counts) == set(members)
    for member in members:
        share = counts[member] / n
        assert 0.05 <= share <= 0.15, (member, share)


@pytest.mark.parametrize("n_before", [4, 9])
def test_join_moves_about_one_over_n_plus_one_to_the_new_node(n_before: int) -> None:
    members = addrs(n_before)
    newcomer = "tcp://10.0.0.99:5700"
    before = Ring(members)
    after = before.copy()
    after.add(newcomer)
    ks = keys(20_000, prefix="Counter/user")
    moved = [k for k in ks if before.owner(k) != after.owner(k)]
    ideal = 1 / (n_before + 1)
    fraction = len(moved) / len(ks)
    assert ideal * 0.6 <= fraction <= ideal * 1.4, (fraction, ideal)
    assert all(after.owner(k) == newcomer for k in moved)
    # and every key the newcomer owns is one that moved
    assert sum(after.owner(k) == newcomer for k in ks) == len(moved)


def test_leave_moves_only_the_leavers_keys() -> None:
    members = addrs(8)
    leaver = members[3]
    before = Ring(members)
    after = before.copy()
    after.remove(leaver)
    assert leaver in before and leaver not in after
    ks = keys(20_000)
    for k in ks:
        old, new = before.owner(k), after.owner(k)
        if old == leaver:
            assert new != leaver
            # the new owner is the leaver's clockwise successor for that key
            assert new == before.owners(k, 2)[1]
        else:
            assert new == old


# -- owners() and eligible ------------------------------------------------------------------------


def test_owners_distinct_and_first_is_owner() -> None:
    members = addrs(6)
    ring = Ring(members)
    for k in keys(500):
        got = ring.owners(k, 3)
        assert len(got) == 3
        assert len(set(got)) == 3
        assert got[0] == ring.owner(k)
        assert set(got) <= set(members)
        assert ring.owners(k, 100) == ring.owners(k, 6)
        assert sorted(ring.owners(k, 6)) == sorted(members)
        assert ring.owners(k, 2) == got[:2]
    with pytest.raises(ValueError):
        ring.owners("k", -1)


def test_eligible_filter() -> None:
    members = addrs(6)
    ring = Ring(members)
    allowed = set(members[::2])
    sub = Ring(allowed)
    calls: list[str] = []

    def eligible(member: str) -> bool:
        calls.append(member)
        return member in allowed

    for k in keys(1000):
        calls.clear()
        got = ring.owner(k, eligible)
        assert got in allowed
        assert got == sub.owner(k)
        assert len(calls) == len(set(calls))  # each member asked at most once
        calls.clear()
        assert ring.owners(k, 5, eligible) == sub.owners(k, 5)
        assert len(calls) == len(set(calls))
    assert ring.owner("k", lambda m: True) == ring.owner("k")
    with pytest.raises(LookupError):
        ring.owner("k", lambda m: False)
    with pytest.raises(LookupError):
        ring.owners("k", 2, lambda m: False)
    with pytest.raises(LookupError):
        ring.owner_of("Counter", "k", lambda m: False)


def test_copy_is_independent() -> None:
    ring = Ring(addrs(3))
    clone = ring.copy()
    clone.add("tcp://x:1")
    clone.remove(addrs(3)[0])
    assert ring.members == tuple(addrs(3))
    assert clone.members == (*addrs(3)[1:], "tcp://x:1")


def test_position_collision_tie_break_is_order_independent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Force every vnode of every member onto a handful of positions.
    import router.ring as ring_mod

    def colliding(member: str, vnodes: int) -> list[int]:
        return [i % 3 for i in range(vnodes)]

    monkeypatch.setattr(ring_mod, "_vnode_positions", colliding)
    members = ["c", "a", "b"]
    bulk = Ring(members, vnodes=4)
    inc = Ring(vnodes=4)
    for m in members:
        inc.add(m)
    assert inc._positions == bulk._positions
    assert inc._owners == bulk._owners
    inc.remove("a")
    assert inc._owners == Ring(["b", "c"], vnodes=4)._owners


# -- property tests -------------------------------------------------------------------------------

member_st = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20)
members_st = st.sets(member_st, min_size=1, max_size=8)
keys_st = st.lists(st.text(alphabet=st.characters(codec="utf-8")), max_size=30)
vnodes_st = st.integers(min_value=1, max_value=32)


@settings(max_examples=150, deadline=None)
@given(members=members_st, ks=keys_st, vnodes=vnodes_st, data=st.data())
def test_prop_order_independent(
    members: set[str], ks: list[str], vnodes: int, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(sorted(members)))
    bulk = Ring(members, vnodes=vnodes)
    inc = Ring(vnodes=vnodes)
    for m in order:
        inc.add(m)
    assert inc.members == tuple(sorted(members))
    for k in ks:
        owner = bulk.owner(k)
        assert owner in members
        assert inc.owner(k) == owner


@settings(max_examples=150, deadline=None)
@given(members=members_st, extra=member_st, ks=keys_st, vnodes=vnodes_st)
def test_prop_join_then_leave(members: set[str], extra: str, ks: list[str], vnodes: int) -> None:
    ring = Ring(members, vnodes=vnodes)
    before = {k: ring.owner(k) for k in ks}
    added = ring.add(extra)
    for k in ks:
        # a join only ever moves keys to the joining member
        assert ring.owner(k) in (before[k], extra)
    if added:
        ring.remove(extra)
    assert {k: ring.owner(k) for k in ks} == before
    assert ring._positions == Ring(members, vnodes=vnodes)._positions


@settings(max_examples=150, deadline=None)
@given(
    members=members_st,
    ks=keys_st,
    n=st.integers(min_value=0, max_value=10),
    vnodes=vnodes_st,
    data=st.data(),
)
def test_prop_owners_and_filter(
    members: set[str], ks: list[str], n: int, vnodes: int, data: st.DataObject
) -> None:
    ring = Ring(members, vnodes=vnodes)
    allowed = data.draw(st.sets(st.sampled_from(sorted(members))))
    for k in ks:
        got = ring.owners(k, n)
        assert len(got) == min(n, len(members))
        assert len(set(got)) == len(got)
        if n:
            assert got[0] == ring.owner(k)
        if allowed:
            sub = Ring(allowed, vnodes=vnodes)
            assert ring.owner(k, allowed.__contains__) == sub.owner(k)
            assert ring.owners(k, n, allowed.__contains__) == sub.owners(k, n)
        else:
            with pytest.raises(LookupError):
                ring.owner(k, allowed.__contains__)


def test_default_vnodes() -> None:
    assert Ring().vnodes == DEFAULT_VNODES == 128
