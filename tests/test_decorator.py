"""The @actor decorator: registration, options and the method table."""

from __future__ import annotations

import math
import re

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
    ("kwargs", "error", "message"),
    [
        ({"idle_after": "10"}, TypeError,
         "idle_after must be a positive number of seconds (or math.inf), not '10' (a str)"),
        ({"idle_after": 0}, ValueError, "idle_after must be a positive number of seconds"),
        ({"idle_after": -1}, ValueError, "idle_after must be a positive number of seconds"),
        ({"idle_after": math.nan}, ValueError, "idle_after must be a positive number"),
        ({"reentrant": "no"}, TypeError, "reentrant must be True or False, not 'no' (a str)"),
        ({"stateless": 1}, TypeError, "stateless must be True or False, not 1 (an int)"),
        ({"persistent": None}, TypeError, "persistent must be True or False, not None"),
        ({"placement": "nowhere"}, ValueError,
         "placement must be one of 'hash', 'local', 'random', 'data', not 'nowhere'"),
        ({"placement": None}, TypeError, "placement must be one of 'hash', 'local', 'random', "
                                         "'data', not None"),
        ({"max_workers": 0}, ValueError, "max_workers must be an int >= 1, not 0"),
        ({"max_workers": "8"}, TypeError, "max_workers must be an int >= 1, not '8' (a str)"),
        ({"resources": {"gpu": -1}}, ValueError,
         "resources must be a mapping of resource names to numbers >= 0, e.g. {'gpu': 1}: "
         "'gpu' is -1"),
        ({"resources": {"gpu": "1"}}, TypeError,
         "resources must be a mapping of resource names to numbers >= 0, e.g. {'gpu': 1}: "
         "'gpu' is '1' (a str)"),
        ({"resources": ["gpu"]}, TypeError,
         "resources must be a mapping of resource names to numbers >= 0, e.g. {'gpu': 1}, "
         "not ['gpu'] (a list)"),
        ({"name": ""}, ValueError, "name must be a non-empty str of printable characters, "
                                   "not ''"),
        ({"name": "a\nb"}, ValueError, "name must be a non-empty str of printable characters"),
        ({"name": 3}, TypeError, "name must be a non-empty str, not 3 (an int)"),
        ({"stateless": True, "persistent": True}, ValueError,
         "stateless=True and persistent=True do not go together"),
    ],
)  # fmt: skip
def test_bad_options_are_rejected_where_they_are_written(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        actor(**kwargs)  # type: ignore[call-overload]  # (before any class is decorated)


def test_only_classes_can_be_actors() -> None:
    with pytest.raises(TypeError, match=r"^@actor decorates classes, not <function"):
        actor(lambda: None)  # type: ignore[type-var]
    with pytest.raises(
        TypeError,
        match=re.escape("@actor takes its options by keyword: @actor(name='Counter'), not "),
    ):
        actor("Counter")  # type: ignore[type-var]


def test_undecorated_class_has_no_actor_type() -> None:
    class Nothing:
        pass

    assert actor_type(Nothing) is None
    assert actor_type("NoSuchName") is None
