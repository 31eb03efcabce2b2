"""The member table: merging, removal, owners restricted to members serving a type."""

from __future__ import annotations

import pytest

from router.membership import Member, Membership


def _m(addr: str, *types: str, inc: int = 0, **res: float) -> Member:
    return Member(addr, types, res, inc)


def test_every_node_agrees_on_owners_whatever_it_learned_first() -> None:
    members = [_m(f"tcp://h:{p}", "Counter") for p in range(5700, 5705)]
    views = []
    for i in range(5):
        view = Membership(members[i])
        view.merge(members[i:] + members[:i])
        views.append(view)
    for key in (f"k{i}" for i in range(500)):
        owners = {v.owner("Counter", key) for v in views}
        assert len(owners) == 1


def test_owner_is_only_a_member_serving_the_type_with_resources() -> None:
    view = Membership(_m("a", "Counter"))
    view.merge([_m("b", "Model", gpu=1), _m("c", "Model"), _m("client")])
    assert {view.owner("Counter", f"k{i}") for i in range(100)} == {"a"}
    assert {view.owner("Model", f"k{i}", {"gpu": 1}) for i in range(100)} == {"b"}
    assert {view.owner("Model", f"k{i}") for i in range(200)} == {"b", "c"}
    assert "client" not in view.ring
    with pytest.raises(LookupError):
        view.owner("Nobody", "k")
    assert view.serves("Model") and not view.serves("Nobody")


def test_merge_keeps_newer_incarnations_and_reports_changes() -> None:
    view = Membership(_m("a", "X"))
    assert [m.address for m in view.merge([_m("b", "X", inc=2)])] == ["b"]
    assert view.merge([_m("b", "X", inc=2)]) == []
    assert view.merge([_m("b", "Y", inc=1)]) == []
    assert view.merge([_m("b", "Y", inc=3)])[0].types == {"Y"}
    assert view.merge([_m("a", "Z", inc=9)]) == []  # never overwritten by hearsay about itself


def test_remove_takes_member_off_the_ring() -> None:
    view = Membership(_m("a", "X"))
    view.merge([_m("b", "X")])
    assert view.remove("b") is not None and "b" not in view and "b" not in view.ring
    assert view.remove("a") is None and len(view) == 1


def test_wire_round_trip_and_validation() -> None:
    m = _m("tcp://h:1", "A", "B", inc=4, gpu=2)
    back = Member.from_wire(m.to_wire())
    assert (back.address, back.types, back.resources, back.incarnation) == (
        "tcp://h:1",
        frozenset({"A", "B"}),
        {"gpu": 2},
        4,
    )
    for bad in (
        None,
        [],
        ["", [], {}, 0],
        ["a", "A", {}, 0],
        ["a", [], {"x": "1"}, 0],
        ["a", [], {}, -1],
    ):
        with pytest.raises(ValueError):
            Member.from_wire(bad)
