"""The @actor decorator: registration, options and the method table."""

from __future__ import annotations

import math

import pytest

from actors import actor
from actors.decorator import actor_type, registered_types


def test_bare_decorator_registers_under_class_name() -> None:
    @actor
    class Plain:
        def a(self) -> None: ...

        async def b(self) -> None: ...

        def _hidden(self) -> None: ...

        async def on_activate(self) -> None: ...

    atype = actor_type(Plain)
    assert atype is not None and atype.name == "Plain"
    assert registered_types()["Plain"] is atype
    assert set(atype.methods) == {"a", "b"}
    assert atype.methods["b"].is_async and not atype.methods["a"].is_async
    assert atype.on_activate is not None and atype.on_deactivate is None
    assert not atype.reentrant and not atype.stateless and atype.placement == "hash"


def test_options_are_recorded() -> None:
    @actor(
        name="Custom",
        idle_after=5,
        persistent=True,
        reentrant=True,
        placement="data",
        resources={"gpu": 1},
    )
    class Whatever:
        pass

    atype = actor_type("Custom")
    assert atype is not None and atype.cls is Whatever
    assert atype.idle_after == 5.0 and atype.persistent and atype.reentrant
    assert atype.placement == "data" and atype.resources == {"gpu": 1}


def test_idle_after_may_be_infinite() -> None:
    @actor(name="Forever", idle_after=math.inf)
    class Forever:
        pass

    assert actor_type(Forever) is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"placement": "nowhere"},
        {"idle_after": 0},
        {"idle_after": -1},
        {"max_workers": 0},
        {"resources": {"gpu": -1}},
        {"name": ""},
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):

        @actor(**kwargs)  # type: ignore[call-overload]
        class Bad:
            pass


def test_only_classes_can_be_actors() -> None:
    with pytest.raises(TypeError):
        actor(lambda: None)  # type: ignore[type-var]


def test_undecorated_class_has_no_actor_type() -> None:
    class Nothing:
        pass

    assert actor_type(Nothing) is None
    assert actor_type("NoSuchName") is None
