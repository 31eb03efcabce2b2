"""The activation lifecycle table (runtime.lifecycle)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runtime.lifecycle import (
    ACTIVATING,
    ACTIVE,
    DEACTIVATING,
    DEAD,
    MIGRATING,
    TRANSITIONS,
    transition,
)

STATES = (ACTIVE, DEACTIVATING, DEAD, ACTIVATING, MIGRATING)
EVENTS = ("suspend", "activated", "deactivate", "migrate", "stay")


def _act(status: int) -> Any:
    return SimpleNamespace(status=status)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("event", EVENTS)
def test_every_state_and_event_follows_the_table(state: int, event: str) -> None:
    act = _act(state)
    expected = TRANSITIONS.get((state, event))
    assert transition(act, event) is (expected is not None)
    assert act.status == (state if expected is None else expected)


@pytest.mark.parametrize("state", STATES)
def test_remove_is_final_from_any_state(state: int) -> None:
    act = _act(state)
    assert transition(act, "remove") and act.status == DEAD
    assert all(not transition(act, e) for e in EVENTS)  # nothing leaves DEAD


def test_the_paths_the_runtime_takes() -> None:
    act = _act(ACTIVE)
    assert transition(act, "suspend") and act.status == ACTIVATING  # async on_activate
    assert not transition(act, "deactivate")  # not while activating
    assert transition(act, "activated") and act.status == ACTIVE
    assert transition(act, "migrate") and act.status == MIGRATING
    assert not transition(act, "migrate")  # one move at a time
    assert transition(act, "stay") and act.status == ACTIVE  # the handoff failed
    assert transition(act, "deactivate") and act.status == DEACTIVATING
    assert not transition(act, "migrate")
