"""Which node the running code belongs to."""

from __future__ import annotations

import pytest

import actors
from actors import ActorError, Node, actor
from runtime.context import TURN, current_node


@actor(name="ContextProbe")
class ContextProbe:
    def node_address(self) -> str:
        return current_node().address

    def in_turn(self) -> bool:
        return TURN.get() is not None


async def test_inside_a_turn_the_current_node_is_the_hosting_one() -> None:
    async with Node() as a:
        assert await a.ref(ContextProbe, "x").node_address() == a.address
        assert await a.ref(ContextProbe, "x").in_turn() is True
        assert TURN.get() is None  # the caller is not in a turn


async def test_enclosing_node_then_the_single_started_node() -> None:
    async with Node() as a:
        assert current_node() is a
    with pytest.raises(ActorError):
        current_node()


async def test_several_nodes_need_an_explicit_choice() -> None:
    a, b = Node(), Node()
    await a.start()
    await b.start()
    try:
        with pytest.raises(ActorError, match="several nodes"):
            actors.ref(ContextProbe, "k")
    finally:
        await a.stop()
        await b.stop()
