"""Named data kept by nodes, so that actors can be placed next to what they read.

``await data.put(key, payload)`` keeps ``payload`` on the current node and returns a
:class:`DataRef`; ``await ref.get()`` returns the payload: the object itself when the current
node holds it (no copy, no network), else fetched from the holding node in chunks.
``await data.delete(key)`` drops what the current node keeps under ``key``. References are
plain data: keep them in actor state, pass them in messages.

Payloads are ``bytes``, ``bytearray``, ``memoryview``, numpy arrays (sent through the buffer
protocol with their dtype and shape, never pickled) or any value the wire codec encodes
(msgpack plus registered types). Treat a payload as a value: a remote reader may see it as it
was put. How a node keeps them (the memory limit, spilling to disk, chunked transfer) is
``runtime.datastore``'s business.
"""

from __future__ import annotations

from typing import Any

from actors.errors import ActorError

__all__ = ["DataRef", "delete", "put"]


class DataRef:
    """A reference to the payload stored under ``key`` on the node at ``node``."""

    __slots__ = ("key", "node")

    def __init__(self, key: str, node: str) -> None:
        self.key = key
        self.node = node

    async def get(self) -> Any:
        """The payload: the stored object itself when it is held by the current node, else
        fetched from ``node``. Raises ``NodeUnavailable`` when ``node`` is not a member (it
        died or left) or does not answer within the current node's ``default_timeout``, and
        ``ActorError`` when it keeps nothing under ``key``."""
        from runtime.context import current_node

        return await current_node().data.get(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataRef):
            return NotImplemented
        return self.key == other.key and self.node == other.node

    def __hash__(self) -> int:
        return hash((self.key, self.node))

    def __repr__(self) -> str:
        return f"DataRef({self.key!r}, {self.node!r})"


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ActorError(f"a data key is a non-empty str, not {key!r}")
    return key


async def put(key: str, payload: Any) -> DataRef:
    """Keep ``payload`` under ``key`` on the current node (replacing any earlier payload).

    Raises ``SerializationError`` for a payload that could not cross the wire,
    ``DataLimitExceeded`` when it does not fit under the node's ``data_limit`` and the node
    has no spill directory, and ``ActorError`` on a pure client (which holds no data)."""
    from runtime.context import current_node

    return await current_node().data.put(_check_key(key), payload)


async def delete(key: str) -> bool:
    """Drop what the current node keeps under ``key``; True if it kept something. A
    ``DataRef`` to it then fails with ``ActorError`` (no such data) on every node."""
    from runtime.context import current_node

    return await current_node().data.delete(_check_key(key))
