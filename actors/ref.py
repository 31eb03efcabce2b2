"""Actor references: the handle through which callers ask and tell an actor.

A reference names an actor (type name + key), not an activation: it stays valid while the actor
is deactivated, reactivated or moved. ``await ref.method(...)`` asks (and waits for the reply),
``ref.method.tell(...)`` tells (fire and forget), ``await ref.method.ask(..., timeout=...)`` asks
with options. References are plain data: they can be kept in state and sent in messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final

from actors.decorator import actor_type
from actors.errors import UnknownActorType
from runtime import options

if TYPE_CHECKING:
    from runtime.calls import Calls
    from runtime.node import Node

__all__ = ["ActorRef", "MethodRef", "Sent"]


class Sent:
    """What ``tell`` returns: awaiting it waits until the message has left the sender.

    Tells never block. On a cluster, awaiting the returned value waits while the link to the
    target's node is over its high-water mark, which is how a fast teller applies
    backpressure; locally it completes at once. Not awaiting it is fine.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


SENT: Final = Sent()
_INF: Final = float("inf")


class MethodRef:
    """A bound method of a reference: call it to ask, ``.tell`` to tell, ``.ask`` for options."""

    __slots__ = ("_name", "_ref")

    def __init__(self, ref: ActorRef, name: str) -> None:
        self._ref = ref
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        ref = self._ref
        calls = ref._bound  # ref.node.calls, inline: this is the hot path of every ask
        if calls is None or calls.closed:
            calls = ref.node.calls
        return calls.ask(ref.type_name, ref.key, self._name, args, kwargs, None)

    def ask(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Awaitable[Any]:
        """Ask with options: ``timeout`` (seconds, finite and > 0) overrides the node's default
        deadline; any other value raises ``TypeError`` or ``ValueError`` naming it."""
        if timeout is not None and not (type(timeout) is float and 0.0 < timeout < _INF):
            timeout = options.timeout(timeout)  # an int made a float, or the error
        ref = self._ref
        calls = ref._bound  # as in __call__
        if calls is None or calls.closed:
            calls = ref.node.calls
        return calls.ask(ref.type_name, ref.key, self._name, args, kwargs, timeout)

    def tell(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Send without waiting for a reply; tells from one sender to one actor stay in order.

        An exception raised by the turn is logged on the hosting node (logger ``shoal.actor``).
        """
        ref = self._ref
        return ref.node.calls.tell(ref.type_name, ref.key, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<MethodRef {self._ref.type_name}/{self._ref.key}.{self._name}>"


class ActorRef:
    """A reference to the actor ``type_name``/``key``; equal and hashable by that pair."""

    # Method handles are cached in __dict__: after the first lookup, `ref.incr` is a plain
    # attribute hit and __getattr__ (costly on 3.11) no longer runs.
    __slots__ = ("__dict__", "_bound", "key", "type_name")

    def __init__(self, type_name: str, key: str, node: Node | None = None) -> None:
        if not isinstance(key, str):
            raise TypeError(f"an actor key is a str, not {options.shown(key)}")
        self.type_name = type_name
        self.key = key
        #: the outbound call path of the node it was made on (None: the current node's)
        self._bound: Calls | None = None if node is None else node.calls

    @property
    def node(self) -> Node:
        """The node that sends this reference's messages: the one it was made on, or else the
        node of the running actor or of the enclosing ``async with Node()``."""
        calls = self._bound
        if calls is None or calls.closed:
            from runtime.context import current_node

            return current_node()
        node: Node = calls.node
        return node

    def __getattr__(self, name: str) -> MethodRef:
        # Dunder lookups come from Python itself (copy, pickle, inspect): not messages. Other
        # `_private` names give a MethodRef so that the call fails with UnknownMethod.
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        method = self.__dict__[name] = MethodRef(self, name)
        return method

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self.type_name == other.type_name and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.type_name, self.key))

    def __repr__(self) -> str:
        return f"ActorRef({self.type_name!r}, {self.key!r})"

    def __reduce__(self) -> tuple[type[ActorRef], tuple[str, str]]:
        return (ActorRef, (self.type_name, self.key))


def type_name_of(target: type | str) -> str:
    """The actor name for a class or a name; classes must be decorated with ``@actor``."""
    if isinstance(target, str):
        return target
    if not isinstance(target, type):
        raise TypeError(
            f"an actor type is an @actor class or its name, not {options.shown(target)}"
        )
    atype = actor_type(target)
    if atype is None:
        raise UnknownActorType(f"{target.__qualname__} is not an @actor class")
    return atype.name


def ref(target: type | str, key: str) -> ActorRef:
    """A reference to the actor ``target``/``key`` on the current node.

    Inside an actor the current node is the one running it; outside, the node of the enclosing
    ``async with Node()``.
    """
    from runtime.context import current_node

    return ActorRef(type_name_of(target), key, current_node())
