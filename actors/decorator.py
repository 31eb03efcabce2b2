"""The ``@actor`` decorator and the per-type metadata the runtime reads.

Decorating a class registers it, under its actor name, in the process-wide registry of actor
types. A node serves exactly the types registered in its process: importing a module that
defines ``@actor`` classes is what makes a node able to host them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar, overload

from runtime import options

__all__ = ["ActorType", "actor", "actor_type", "registered_types"]

Placement = Literal["hash", "local", "random", "data"]
_PLACEMENTS: Final = ("hash", "local", "random", "data")

#: Names that are lifecycle hooks, never callable as messages.
HOOKS: Final = frozenset({"on_activate", "on_deactivate"})

#: Default idle time before an activation is collected (as Orleans' default collection age).
DEFAULT_IDLE_AFTER: Final = 900.0

C = TypeVar("C", bound=type)


class Method:
    """One callable method of an actor type: the function and whether it is a coroutine."""

    __slots__ = ("fn", "is_async", "name")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)


class ActorType:
    """What the runtime knows about one ``@actor`` class.

    Options that only take effect on a cluster (``placement``, ``resources``, ``persistent``)
    are recorded here and validated now, so code written today keeps its meaning when the
    cluster issues land.
    """

    __slots__ = (
        "cls",
        "idle_after",
        "max_workers",
        "methods",
        "name",
        "on_activate",
        "on_deactivate",
        "persistent",
        "placement",
        "reentrant",
        "resources",
        "stateless",
    )

    def __init__(
        self,
        cls: type,
        *,
        name: str,
        idle_after: float,
        persistent: bool,
        reentrant: bool,
        stateless: bool,
        placement: Placement,
        resources: Mapping[str, float],
        max_workers: int,
    ) -> None:
        self.cls = cls
        self.name = name
        self.idle_after = idle_after
        self.persistent = persistent
        self.reentrant = reentrant
        self.stateless = stateless
        self.placement: Placement = placement
        self.resources: dict[str, float] = dict(resources)
        self.max_workers = max_workers
        self.methods: dict[str, Method] = {}
        for attr_name, value in inspect.getmembers(cls):
            if attr_name.startswith("_") or attr_name in HOOKS:
                continue
            if inspect.isfunction(value):
                self.methods[attr_name] = Method(attr_name, value)
        hooks = {n: getattr(cls, n, None) for n in HOOKS}
        self.on_activate = (
            Method("on_activate", hooks["on_activate"]) if hooks["on_activate"] else None
        )
        self.on_deactivate = (
            Method("on_deactivate", hooks["on_deactivate"]) if hooks["on_deactivate"] else None
        )

    def __repr__(self) -> str:
        return f"<ActorType {self.name} ({self.cls.__module__}.{self.cls.__qualname__})>"


_REGISTRY: dict[str, ActorType] = {}


def registered_types() -> Mapping[str, ActorType]:
    """The actor types registered in this process, by name (a read-only view)."""
    return _REGISTRY


def actor_type(target: type | str) -> ActorType | None:
    """The registered :class:`ActorType` for a class or actor name, or ``None``."""
    if isinstance(target, str):
        return _REGISTRY.get(target)
    found: ActorType | None = getattr(target, "__actor_type__", None)
    return found if found is not None and found.cls is target else None


@overload
def actor(cls: C, /) -> C: ...


@overload
def actor(
    *,
    name: str | None = None,
    idle_after: float = DEFAULT_IDLE_AFTER,
    persistent: bool = False,
    reentrant: bool = False,
    stateless: bool = False,
    placement: Placement = "hash",
    resources: Mapping[str, float] | None = None,
    max_workers: int = 8,
) -> Callable[[C], C]: ...


def actor(
    cls: C | None = None,
    /,
    *,
    name: str | None = None,
    idle_after: float = DEFAULT_IDLE_AFTER,
    persistent: bool = False,
    reentrant: bool = False,
    stateless: bool = False,
    placement: Placement = "hash",
    resources: Mapping[str, float] | None = None,
    max_workers: int = 8,
) -> C | Callable[[C], C]:
    """Declare a class as a virtual actor type.

    Usable bare (``@actor``) or with options (``@actor(idle_after=60, reentrant=True)``):

    - ``name``: the actor type's name on the wire (default: the class name).
    - ``idle_after``: seconds without a message before the activation is deactivated
      (``on_deactivate`` runs); the next message activates it afresh. ``math.inf`` never.
    - ``reentrant``: let turns interleave at their ``await`` points (default: one turn at a time).
    - ``stateless``: a worker pool; up to ``max_workers`` activations of one key per node serve
      calls in parallel (as Orleans' stateless workers). They are never moved or persisted.
    - ``persistent``: save the state after every turn that changed it (takes effect with the
      storage issue; accepted and validated now).
    - ``placement``: ``"hash"`` (the key's ring owner), ``"local"`` (the caller's node),
      ``"random"``, ``"data"`` (follow the data the actor reads). Takes effect on a cluster.
    - ``resources``: what a hosting node must offer, e.g. ``{"gpu": 1}``. Takes effect on a
      cluster.

    Registering a second class under a name already taken replaces the first (so that
    re-importing a module during development keeps working).
    """

    # Every option is checked here, where the user wrote it (not when the first call arrives).
    actor_name = None if name is None else _check_name(name)
    idle = options.seconds("idle_after", idle_after, infinite=True)
    flags = {
        "persistent": options.flag("persistent", persistent),
        "reentrant": options.flag("reentrant", reentrant),
        "stateless": options.flag("stateless", stateless),
    }
    where: Placement = options.one_of("placement", placement, _PLACEMENTS)  # type: ignore[assignment]
    res = options.resources("resources", resources)
    workers = options.count("max_workers", max_workers, minimum=1)
    if flags["stateless"] and flags["persistent"]:
        raise ValueError(
            "stateless=True and persistent=True do not go together: stateless workers keep "
            "no state of their own (they are never moved or persisted)"
        )

    def wrap(target: C) -> C:
        if not isinstance(target, type):
            raise TypeError(f"@actor decorates classes, not {target!r}")
        type_name = actor_name if actor_name is not None else target.__name__
        atype = ActorType(
            target,
            name=type_name,
            idle_after=idle,
            persistent=flags["persistent"],
            reentrant=flags["reentrant"],
            stateless=flags["stateless"],
            placement=where,
            resources=res,
            max_workers=workers,
        )
        target.__actor_type__ = atype  # type: ignore[attr-defined]
        _REGISTRY[type_name] = atype
        return target

    if cls is not None:
        if isinstance(cls, str):
            raise TypeError(
                f"@actor takes its options by keyword: @actor(name={cls!r}), not @actor({cls!r})"
            )
        return wrap(cls)
    return wrap


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty str, not {options.shown(name)}")
    if not name or not name.isprintable():
        raise ValueError(f"name must be a non-empty str of printable characters, not {name!r}")
    return name
