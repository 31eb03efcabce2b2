"""Which actor types exist in this process and which of them this node hosts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors.decorator import ActorType, registered_types
from actors.errors import UnknownMethod
from actors.ref import type_name_of

__all__ = ["Served"]


class Served:
    """The ``@actor`` types known here (``known``) and those this node hosts (``names``:
    None = every known type; an empty set makes a pure client)."""

    __slots__ = ("known", "names")

    def __init__(self, serve: Iterable[type | str] | None = None) -> None:
        self.known: Mapping[str, ActorType] = registered_types()
        self.names: frozenset[str] | None = (
            None if serve is None else frozenset(type_name_of(t) for t in serve)
        )

    def get(self, type_name: str) -> ActorType | None:
        """The actor type if this node hosts it."""
        atype = self.known.get(type_name)
        if atype is None or (self.names is not None and type_name not in self.names):
            return None
        return atype

    def hosted_names(self) -> list[str]:
        """The names of the types this node hosts, sorted (what it announces as a member)."""
        return sorted(self.known) if self.names is None else sorted(self.names)


def method_of(atype: ActorType, method_name: str) -> Any:
    """The public method ``method_name`` of ``atype``; ``UnknownMethod`` naming it if none."""
    method = atype.methods.get(method_name)
    if method is None:
        raise UnknownMethod(
            f"{atype.name} has no public method {method_name!r}"
            + (" (names starting with '_' are private)" if method_name.startswith("_") else "")
        )
    return method
