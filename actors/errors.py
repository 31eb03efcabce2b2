"""The typed errors that shoal gives to callers.

Every error is a subclass of :class:`ActorError`, so ``except ActorError`` catches all that the
runtime raises on its own account. Errors carry plain data (strings) only, so that each of them
can cross the wire and be raised again on the caller's node with the same type.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorTimeout",
    "DataLimitExceeded",
    "Deadlock",
    "MessageTooLarge",
    "NodeUnavailable",
    "Overloaded",
    "ProtocolError",
    "RemoteError",
    "SerializationError",
    "UnknownActorType",
    "UnknownMethod",
]


class ActorError(Exception):
    """Base class of every error raised by shoal."""


class RemoteError(ActorError):
    """The actor's method raised; the activation stays alive.

    ``type_name`` is the qualified name of the exception type raised inside the actor,
    ``message`` its ``str()``, and ``remote_traceback`` the formatted traceback text as seen on
    the node that ran the turn.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class UnknownActorType(ActorError):
    """No node serves an actor type of that name (or it is not registered here)."""


class UnknownMethod(ActorError):
    """The actor type has no public method of that name (``_private`` names are never callable)."""


class ActorTimeout(ActorError, TimeoutError):
    """The call's deadline passed before a reply arrived.

    The turn may or may not have run: a message that is still queued at its deadline is dropped
    and never runs, a turn that already started runs to its end and its result is discarded.
    """


class SerializationError(ActorError):
    """An argument, result or state value cannot cross the wire (msgpack plus registered types)."""


class MessageTooLarge(SerializationError):
    """An encoded message exceeds the configured frame size limit."""


class NodeUnavailable(ActorError):
    """The node that hosts (or should host) the actor cannot be reached."""


class ProtocolError(ActorError):
    """A frame on the wire was malformed, truncated, oversized or of an unknown version."""


class DataLimitExceeded(ActorError):
    """A payload given to ``data.put`` does not fit under the node's ``data_limit`` and the
    node has no ``data_spill_dir`` to move older payloads to; the earlier payload under the
    same key, if any, is kept."""


class Deadlock(ActorError):
    """The call would wait for itself: the actor it goes to is busy in a turn that waits,
    through the actors the message names (``A/x -> B/y -> A/x``), for this very call. Two
    different call chains that wait on each other (A, busy in one, asks B while B, busy in
    the other, asks A) cannot both run; one of the calls fails with this at once, and never
    runs, so the other can finish. (A -> B -> A in *one* chain runs: call-chain reentrancy.)
    Raised by a nested ask and not caught, it reaches every caller up the chain as itself."""


class Overloaded(ActorError):
    """A bound was reached, so nothing was queued: the activation's mailbox held
    ``mailbox_limit`` messages, or the node hosted ``max_activations`` and none of them was
    idle to make room, until the ask's deadline (shoal asks again meanwhile; a node refuses a
    raw request at once with it). The call did not run; retry later or raise the limit."""
