"""Checks of what users pass: decorator options, ``Node(...)`` arguments, ask timeouts,
resources, addresses and storage URLs.

Each check takes the option's name and its value and returns the value in the form the runtime
keeps (a float for seconds, a dict for resources), or raises ``TypeError`` (the value is of the
wrong type) or ``ValueError`` (the right type, a value out of range) with a message that names
the option, the value and what is expected::

    idle_after must be a positive number of seconds (or math.inf), not '10' (a str)

The same checks serve ``@actor``, ``Node``, ``MethodRef.ask`` and the command line, so a
mistake reads the same wherever it is made. Nothing here touches the runtime's state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ADDRESS_FORMS",
    "MIN_FRAME",
    "STORAGE_FORMS",
    "NodeOptions",
    "address",
    "addresses",
    "count",
    "flag",
    "instance",
    "node",
    "one_of",
    "resources",
    "seconds",
    "shown",
    "storage_url",
    "timeout",
]

#: What an address may look like (the schemes the transports support).
ADDRESS_FORMS: Final = "tcp://HOST:PORT, ipc://PATH or mem://NAME"
#: What a storage URL may look like (``Node(storage=...)``, ``--storage``).
STORAGE_FORMS: Final = "memory://, sqlite:///PATH, postgresql://... or redis://..."

_TCP: Final = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):(?P<port>[0-9]+)")
_STORAGE_SCHEMES: Final = ("postgresql://", "redis://")


def shown(value: object) -> str:
    """``value`` as a message shows it: its repr (shortened), and its type unless obvious."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if value is None or isinstance(value, bool):
        return text
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"{text} ({article} {kind})"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(name: str, value: object, *, infinite: bool = False) -> float:
    """A positive number of seconds (``math.inf`` too if ``infinite``), as a float."""
    if _is_number(value):
        f = float(value)  # type: ignore[arg-type]
        if f > 0 and (f < math.inf or infinite):
            return f
        kind: type[Exception] = ValueError
    else:
        kind = TypeError
    expected = "a positive number of seconds" + (" (or math.inf)" if infinite else " (finite, > 0)")
    raise kind(f"{name} must be {expected}, not {shown(value)}")


def timeout(value: object) -> float:
    """The ``timeout`` of an ask: a finite number of seconds > 0 (the hot path: one type
    test and one comparison for a float)."""
    if type(value) is float and 0.0 < value < math.inf:
        return value
    return seconds("timeout", value)


def flag(name: str, value: object) -> bool:
    """``True`` or ``False``, nothing else (``"no"`` is not false, ``1`` is not true)."""
    if value is True or value is False:
        return value
    raise TypeError(f"{name} must be True or False, not {shown(value)}")


def count(name: str, value: object, minimum: int = 0) -> int:
    """An int of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {minimum}, not {shown(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    return value


def one_of(name: str, value: object, choices: Iterable[str]) -> str:
    """One of the strings ``choices``."""
    options = tuple(choices)
    listed = ", ".join(repr(c) for c in options)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {listed}, not {shown(value)}")
    if value not in options:
        raise ValueError(f"{name} must be one of {listed}, not {value!r}")
    return value


def resources(name: str, value: object) -> dict[str, float]:
    """A mapping of resource names to finite numbers >= 0 (``{"gpu": 1}``), as floats keyed
    by str; ``None`` is no requirement (an empty dict)."""
    if value is None:
        return {}
    expected = "a mapping of resource names to numbers >= 0, e.g. {'gpu': 1}"
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be {expected}, not {shown(value)}")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"{name} must be {expected}: the name {shown(k)} is not a name")
        if not _is_number(v):
            raise TypeError(f"{name} must be {expected}: {k!r} is {shown(v)}")
        f = float(v)
        if not 0 <= f < math.inf:
            raise ValueError(f"{name} must be {expected}: {k!r} is {v!r}")
        out[k] = f
    return out


_resources: Final = resources  # (``node`` has an argument of that name)


def address(name: str, value: object) -> str:
    """A node address: ``tcp://HOST:PORT`` (port 0..65535; 0 = any, when listening),
    ``ipc://PATH`` or ``mem://NAME``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be an address ({ADDRESS_FORMS}), not {shown(value)}")
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(
            f"{name} {value!r} has no scheme: expected {ADDRESS_FORMS}"
            + (f" (did you mean 'tcp://{value}'?)" if ":" in value else "")
        )
    if scheme == "tcp":
        m = _TCP.fullmatch(value)
        if m is None or int(m.group("port")) > 65535:
            raise ValueError(f"{name} {value!r} is not tcp://HOST:PORT (a port in 0..65535)")
        return value
    if scheme in ("ipc", "mem"):
        if any(c.isspace() for c in rest) or (scheme == "ipc" and not rest):
            raise ValueError(
                f"{name} {value!r} is not {scheme}://{'PATH' if scheme == 'ipc' else 'NAME'}"
            )
        return value
    raise ValueError(f"{name} {value!r} has an unknown scheme {scheme!r}: expected {ADDRESS_FORMS}")


def addresses(name: str, value: object) -> list[str]:
    """A list of addresses (a single str is refused: ``seeds="tcp://..."`` is a mistake)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        hint = f": use {name}=[{value!r}]" if isinstance(value, str) else ""
        raise TypeError(f"{name} must be a list of addresses, not {shown(value)}{hint}")
    return [address(name, a) for a in value]


def storage_url(value: object) -> str:
    """A storage URL: ``memory://``, ``sqlite:///PATH``, ``postgresql://...`` or
    ``redis://...``; anything else is a ``ValueError`` naming it."""
    if not isinstance(value, str):
        raise TypeError(f"storage must be a URL ({STORAGE_FORMS}), not {shown(value)}")
    ok = (
        value == "memory://"
        or (value.startswith("sqlite:///") and len(value) > len("sqlite:///"))
        or any(value.startswith(s) and len(value) > len(s) for s in _STORAGE_SCHEMES)
    )
    if not ok or any(c.isspace() for c in value):
        raise ValueError(f"storage URL {value!r} is not supported: expected {STORAGE_FORMS}")
    return value


def instance(name: str, value: Any, kind: type | tuple[type, ...], expected: str) -> Any:
    """``value`` if it is an instance of ``kind`` (or None), else ``TypeError``."""
    if value is None or isinstance(value, kind):
        return value
    raise TypeError(f"{name} must be {expected}, not {shown(value)}")


# -- Node(...) -----------------------------------------------------------------------------------

#: The smallest ``max_frame_size`` a node accepts (control messages must fit).
MIN_FRAME: Final = 4096


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """The checked arguments of ``Node(...)`` (see :func:`node`)."""

    listen: str | None
    seeds: list[str]
    storage: str | None
    resources: dict[str, float] | None
    default_timeout: float
    check_serializable: bool
    serve: list[type | str] | None
    max_frame_size: int
    join_timeout: float
    rebalance_period: float


def node(
    *,
    listen: object,
    seeds: object,
    storage: object,
    resources: object,
    default_timeout: object,
    check_serializable: object,
    serve: object,
    transport: object,
    max_frame_size: object,
    join_timeout: object,
    clock: object,
    rebalance_period: object,
) -> NodeOptions:
    """Check ``Node(...)``'s arguments (``data_limit`` and ``data_spill_dir`` are the data
    store's to check). The storage URL is checked by ``Node.start`` (:func:`storage_url`), as
    the public API says; here only that it is a str."""
    from runtime.clock import Clock
    from runtime.transport import Transport

    where = None if listen is None else address("listen", listen)
    peers = addresses("seeds", seeds)
    url: str | None = instance("storage", storage, str, f"a URL ({STORAGE_FORMS})")
    instance("clock", clock, Clock, "a runtime.clock.Clock")
    instance("transport", transport, Transport, "a runtime.transport.Transport")
    if where is None and not peers and transport is not None:
        raise ValueError("a transport needs listen= or seeds=")
    if transport is None:
        endpoints = ([] if where is None else [where]) + peers
        memory = [a for a in endpoints if a.startswith("mem://")]
        if memory and len(memory) != len(endpoints):
            other = next(a for a in endpoints if not a.startswith("mem://"))
            raise ValueError(
                f"listen and seeds must be on one network: {memory[0]!r} is on the in-process "
                f"network (mem://), {other!r} is not"
            )
    return NodeOptions(
        listen=where,
        seeds=peers,
        storage=url,
        resources=None if resources is None else _resources("resources", resources),
        default_timeout=seconds("default_timeout", default_timeout),
        check_serializable=flag("check_serializable", check_serializable),
        serve=_serve(serve),
        max_frame_size=count("max_frame_size", max_frame_size, minimum=MIN_FRAME),
        join_timeout=seconds("join_timeout", join_timeout),
        rebalance_period=seconds("rebalance_period", rebalance_period),
    )


def _serve(value: object) -> list[type | str] | None:
    """``serve=``: None (every imported type) or an iterable of @actor classes and names."""
    if value is None:
        return None
    expected = "a list of @actor classes or actor names (or None: every imported type)"
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        hint = f": use serve=[{value!r}]" if isinstance(value, str) else ""
        raise TypeError(f"serve must be {expected}, not {shown(value)}{hint}")
    out: list[type | str] = []
    for item in value:
        if not isinstance(item, type | str) or item == "":
            raise TypeError(f"serve must be {expected}: {shown(item)} is neither")
        out.append(item)
    return out
