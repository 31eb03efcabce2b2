"""Context variables: which node and which turn the running code belongs to.

A turn runs in its own copy of the caller's context with ``TURN`` set, so a nested ask knows
its call chain (for call-chain reentrancy) and ``actors.ref`` finds the node without globals.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from actors.errors import ActorError

if TYPE_CHECKING:
    from runtime.activation import Activation
    from runtime.node import Node

__all__ = ["NODE", "TURN", "current_node"]

#: The node of the enclosing ``async with Node()`` (or the node running the current turn).
NODE: ContextVar[Node | None] = ContextVar("shoal_node", default=None)

#: (activation, call-chain id, deadline on the loop clock or 0.0, what waits on the turn) of
#: the turn being run, or None outside any turn. Asks made by a turn inherit its chain and (if
#: sooner) its deadline; what waits on it is the asking turn's own tuple, or the list an ask
#: from the wire carried, or None (see ``runtime.chains``).
TURN: ContextVar[tuple[Activation, int, float, Any] | None] = ContextVar("shoal_turn", default=None)

_last_started: list[Node] = []


def current_node() -> Node:
    """The node to send through: the running turn's, the enclosing ``async with``'s, or the
    one node started in this process."""
    turn = TURN.get()
    if turn is not None:
        return turn[0].node
    node = NODE.get()
    if node is not None and not node.closed:
        return node
    live = [n for n in _last_started if not n.closed]
    if len(live) == 1:
        return live[0]
    raise ActorError(
        "no current node: use node.ref(...) or run inside `async with Node()`"
        if not live
        else "several nodes run in this process: use node.ref(...) to choose one"
    )


def node_started(node: Node) -> None:
    """Record a started node (for ``current_node`` outside any context)."""
    _last_started.append(node)


def node_stopped(node: Node) -> None:
    """Forget a stopped node."""
    if node in _last_started:
        _last_started.remove(node)
