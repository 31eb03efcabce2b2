"""shoal: floating, named, virtual actors.

The public API::

    from actors import actor, Node, ref, data

    @actor
    class Counter:
        def __init__(self):
            self.count = 0
        async def incr(self, n: int = 1) -> int:
            self.count += n
            return self.count

    async with Node() as node:
        assert await node.ref(Counter, "alice").incr(5) == 5
"""

from actors import data
from actors.decorator import actor
from actors.errors import (
    ActorError,
    ActorTimeout,
    DataLimitExceeded,
    Deadlock,
    MessageTooLarge,
    NodeUnavailable,
    Overloaded,
    ProtocolError,
    RemoteError,
    SerializationError,
    UnknownActorType,
    UnknownMethod,
)
from actors.ref import ActorRef, ref
from runtime.node import Node
from runtime.wire import register, register_dataclass

__all__ = [
    "ActorError",
    "ActorRef",
    "ActorTimeout",
    "DataLimitExceeded",
    "Deadlock",
    "MessageTooLarge",
    "Node",
    "NodeUnavailable",
    "Overloaded",
    "ProtocolError",
    "RemoteError",
    "SerializationError",
    "UnknownActorType",
    "UnknownMethod",
    "actor",
    "data",
    "ref",
    "register",
    "register_dataclass",
]
