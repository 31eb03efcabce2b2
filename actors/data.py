"""Named data kept by nodes, so that actors can be placed next to what they read.

``await data.put(key, payload)`` keeps ``payload`` on the current node and returns a
:class:`DataRef`; ``await ref.get()`` returns the payload (a local get hands back the object
itself, with no copy). References are plain data: keep them in actor state, pass them in
messages. Fetching from another node and data-affinity placement come with the placement issue.
"""

from __future__ import annotations

from typing import Any

from actors.errors import ActorError

__all__ = ["DataRef", "put"]


class DataRef:
    """A reference to the payload stored under ``key`` on the node at ``node``."""

    __slots__ = ("key", "node")

    def __init__(self, key: str, node: str) -> None:
        self.key = key
        self.node = node

    async def get(self) -> Any:
        """The payload: the stored object itself when it is held by the current node."""
        from runtime.context import current_node

        return await current_node()._data_get(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataRef):
            return NotImplemented
        return self.key == other.key and self.node == other.node

    def __hash__(self) -> int:
        return hash((self.key, self.node))

    def __repr__(self) -> str:
        return f"DataRef({self.key!r}, {self.node!r})"


async def put(key: str, payload: Any) -> DataRef:
    """Keep ``payload`` under ``key`` on the current node (replacing any earlier payload)."""
    if not isinstance(key, str) or not key:
        raise ActorError("a data key is a non-empty str")
    from runtime.context import current_node

    return current_node()._data_put(key, payload)
