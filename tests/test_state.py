"""Actor state capture and restore (for migration, handoff and storage)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.state import get_state, set_state


class Plain:
    def __init__(self) -> None:
        self.key = "k"
        self.count = 0
        self.items: list[int] = []
        self._cache = object()


class Custom:
    def __init__(self) -> None:
        self.key = "k"
        self.value = 1

    def __getstate__(self) -> Any:
        return ["v", self.value]

    def __setstate__(self, state: Any) -> None:
        self.value = state[1] * 10


def test_public_attributes_without_key() -> None:
    p = Plain()
    p.count, p.items = 3, [1, 2]
    assert get_state(p) == {"count": 3, "items": [1, 2]}
    fresh = Plain()
    set_state(fresh, {"count": 3, "items": [1, 2], "key": "evil", "_cache": 1})
    assert fresh.count == 3 and fresh.items == [1, 2] and fresh.key == "k"
    assert not isinstance(fresh._cache, int)


def test_custom_getstate_and_setstate() -> None:
    c = Custom()
    assert get_state(c) == ["v", 1]
    set_state(c, ["v", 4])
    assert c.value == 40


def test_non_dict_state_is_rejected_for_plain_classes() -> None:
    with pytest.raises(TypeError):
        set_state(Plain(), [1, 2])
