"""An activation's state: what travels on migration and handoff, and what storage keeps.

State is the instance's public attributes (``key`` excluded: it is the actor's name, not its
state), or what the class's own ``__getstate__``/``__setstate__`` give. Restoring builds the
instance the usual way (``key``, then ``__init__``, so attributes added in newer code get their
defaults) and then applies the saved state on top.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_state", "set_state"]


def _custom(cls: type, name: str) -> bool:
    return getattr(cls, name, None) is not getattr(object, name, None)


def get_state(instance: Any) -> Any:
    """The state of an actor instance (a dict of its public attributes by default)."""
    cls = type(instance)
    if _custom(cls, "__getstate__"):
        return instance.__getstate__()
    return {k: v for k, v in vars(instance).items() if not k.startswith("_") and k != "key"}


def set_state(instance: Any, state: Any) -> None:
    """Apply ``state`` (as returned by :func:`get_state`) to a freshly built instance."""
    cls = type(instance)
    if _custom(cls, "__setstate__"):
        instance.__setstate__(state)
        return
    if not isinstance(state, dict):
        raise TypeError(f"state of {cls.__qualname__} must be a dict, not {type(state).__name__}")
    for k, v in state.items():
        if isinstance(k, str) and not k.startswith("_") and k != "key":
            setattr(instance, k, v)
