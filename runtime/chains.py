"""Call chains: who waits on a call, and the deadlock a call would close.

Every ask carries its call chain's id, so A -> B -> A in one chain runs (call-chain
reentrancy; see ``runtime.activation``). Two *different* chains that wait on each other
cannot both run: A, busy in chain X, asks B while B, busy in chain Y, asks A. Each message
waits behind the other's turn; without help both end at their deadline with ``ActorTimeout``.

To fail such a call at once, with :class:`~actors.errors.Deadlock` naming the actors, every
ask made inside a turn carries *what waits on it*: the asking turn's actor, the callers
waiting on that turn (its chain so far), and the askers queued behind that turn at its actor,
each with what waits on *them*, and so on (a tree, at most ``wire.MAX_WAITS`` entries).
In memory that is the asking turn itself (``TURN``'s fourth element links each turn to what
waits on it), walked only when needed; on the wire it is the envelope's ``waits`` field
(``runtime.wire``, protocol version 4), a flat list of ``[type_name, key, chain, parent]``
entries where ``parent`` is the index of the entry it waits on (``-1``: it waits on the
message's target).

A message that cannot run at once at activation T (T is busy in another chain) closes a cycle
when

1. T's running turn is among the waiters: an entry for T with T's running chain (the turn
   that blocks the message waits, through the others, for the message itself); or
2. T's running turn has an ask outstanding to an actor that is among the waiters (that actor,
   non-reentrant, is busy waiting for the message, so T's ask waits behind it). This catches
   the two asks of a two-actor cycle crossing on the wire, when neither carried the other's
   news; only one side fails it, the one whose chain id is the larger.

Rule 1 sees every cycle whose last ask leaves after the others were queued; rule 2 adds the
crossing two-actor case. Longer cycles whose asks cross on the wire still end at the deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from actors.errors import Deadlock
from runtime.logs import escape
from runtime.wire import MAX_WAITS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actors.decorator import ActorType
    from runtime.activation import Activation

__all__ = ["deadlock", "flatten", "waiting"]

#: Items of a ``waits`` list at most (``wire.MAX_WAITS`` entries; further waiters are left
#: out, so that detection may miss a cycle through them).
_LIMIT: Final = 4 * MAX_WAITS


def _collect(source: Any, parent: int, out: list[Any]) -> None:
    """Append to ``out`` the entries of what waits on a call made from ``source`` (a turn's
    ``TURN`` tuple, a wire list, or None), the first of them waiting on ``parent``."""
    if source is None or len(out) >= _LIMIT:
        return
    if type(source) is list:  # from the wire: its parents count from its own first entry
        base = len(out) // 4
        for i in range(0, len(source), 4):
            if len(out) >= _LIMIT:
                return
            p = source[i + 3]
            out += [source[i], source[i + 1], source[i + 2], parent if p < 0 else base + p]
        return
    act, chain, _deadline, up = source
    me = len(out) // 4
    out += [act.type.name, act.key, chain, parent]
    _collect(up, me, out)  # the caller of this turn waits on it
    queue = act.queue
    if queue:
        for msg in queue:  # so do the askers queued behind it
            if msg.reply is not None and msg.waits is not None:
                _collect(msg.waits, me, out)
                if len(out) >= _LIMIT:
                    return


def flatten(source: Any) -> list[Any]:
    """The wire form of what waits on a call made from ``source`` ([] for none)."""
    out: list[Any] = []
    _collect(source, -1, out)
    return out


def waiting(act: Activation, type_name: str, key: str, delta: int) -> None:
    """Count an ask of ``act``'s running turn to ``type_name``/``key`` as outstanding
    (``delta`` 1) or answered (-1): rule 2 of the module docstring reads it."""
    awaiting = act.awaiting
    if awaiting is None:
        awaiting = act.awaiting = {}
    target = (type_name, key)
    n = awaiting.get(target, 0) + delta
    if n > 0:
        awaiting[target] = n
    else:
        awaiting.pop(target, None)


def _name(entries: list[Any], i: int) -> str:
    return f"{escape(entries[4 * i])}/{escape(entries[4 * i + 1])}"


def _cycle(entries: list[Any], start: int, target: str, via: str | None) -> str:
    names = [target] if via is not None else []
    i = start
    for _ in range(MAX_WAITS):
        names.append(_name(entries, i))
        i = entries[4 * i + 3]
        if i < 0:
            break
    names.append(target)
    return " -> ".join(names)


def deadlock(
    act: Activation, source: Any, chain: int, known: Mapping[str, ActorType]
) -> Deadlock | None:
    """The :class:`Deadlock` a message of ``chain``, sent with ``source`` waiting on it,
    would close by waiting at ``act`` (which cannot run it now), or None. ``known``: the
    actor types of this process (rule 2 needs to know which are non-reentrant)."""
    if act.running == 0 or source is None:
        return None
    entries = flatten(source)
    if not entries:
        return None
    name, key, lock = act.type.name, act.key, act.lock_chain
    target = f"{escape(name)}/{escape(key)}"
    n = len(entries) // 4
    for i in range(n):
        j = 4 * i
        if entries[j + 2] == lock and entries[j] == name and entries[j + 1] == key:
            return Deadlock(
                f"call-chain deadlock: {_cycle(entries, i, target, None)} (each waits for the "
                f"next; {target} is busy in a turn that waits for this call)"
            )
    awaiting = act.awaiting
    if awaiting and chain > lock:
        for i in range(n):
            j = 4 * i
            other = known.get(entries[j])
            if (
                (entries[j], entries[j + 1]) in awaiting
                and other is not None
                and not other.reentrant
                and not other.stateless
            ):
                return Deadlock(
                    f"call-chain deadlock: {_cycle(entries, i, target, target)} (each waits "
                    f"for the next; {target} is busy in a turn that waits for "
                    f"{_name(entries, i)})"
                )
    return None
