"""The data store: named payloads kept by this node, so that actors can be placed near them.

``actors.data.put`` keeps a payload here and returns a ``DataRef`` naming this node;
``DataRef.get`` reads it here without a copy, or from the holding node over the wire (the
``data`` control operation). The data-affinity issue grows it: limits, spill, chunked transfer.
"""

from __future__ import annotations

from typing import Any

from actors.data import DataRef
from actors.errors import ActorError

__all__ = ["DataStore"]


class DataStore:
    """Payloads by key, held in memory by one node (``address``)."""

    __slots__ = ("_items", "address")

    def __init__(self, address: str) -> None:
        self.address = address
        self._items: dict[str, Any] = {}

    def put(self, key: str, payload: Any) -> DataRef:
        """Keep ``payload`` under ``key`` (replacing any earlier one)."""
        self._items[key] = payload
        return DataRef(key, self.address)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> Any:
        """The payload kept under ``key`` (the object itself); ``ActorError`` if none."""
        try:
            return self._items[key]
        except KeyError:
            raise ActorError(f"no data {key!r} is kept on {self.address}") from None
