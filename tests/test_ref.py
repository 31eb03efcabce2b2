"""Actor references: identity, method handles and the current-node lookup."""

from __future__ import annotations

import copy
import pickle

import pytest

import actors
from actors import ActorError, ActorRef, Node, UnknownActorType
from tests.sample_actors import Counter


def test_refs_compare_and_hash_by_type_and_key() -> None:
    a, b, c = ActorRef("Counter", "x"), ActorRef("Counter", "x"), ActorRef("Counter", "y")
    assert a == b and hash(a) == hash(b) and a != c
    assert len({a, b, c}) == 2
    assert repr(a) == "ActorRef('Counter', 'x')"


def test_refs_copy_and_pickle_as_names() -> None:
    a = ActorRef("Counter", "x")
    assert copy.copy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_key_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        ActorRef("Counter", 3)  # type: ignore[arg-type]


def test_method_handles_are_cached() -> None:
    a = ActorRef("Counter", "x")
    assert a.incr is a.incr
    with pytest.raises(AttributeError):
        _ = a.__nothing__


async def test_node_ref_accepts_class_or_name_but_not_plain_classes() -> None:
    async with Node() as node:
        assert node.ref(Counter, "a") == node.ref("Counter", "a")

        class NotAnActor:
            pass

        with pytest.raises(UnknownActorType):
            node.ref(NotAnActor, "a")


async def test_module_level_ref_uses_the_enclosing_node() -> None:
    async with Node() as node:
        r = actors.ref(Counter, "module-level")
        assert await r.incr(2) == 2
        assert await node.ref(Counter, "module-level").peek() == 2


async def test_unbound_ref_finds_the_current_node() -> None:
    async with Node():
        assert await ActorRef("Counter", "unbound").incr(1) == 1


def test_no_current_node_is_a_clear_error() -> None:
    with pytest.raises(ActorError):
        actors.ref(Counter, "nowhere")


async def test_refs_cross_the_wire_and_rebind_to_the_receiving_node() -> None:
    from runtime import wire

    back = wire.DEFAULT_CODEC.unpackb(wire.DEFAULT_CODEC.packb([ActorRef("Counter", "w")]))
    assert back == [ActorRef("Counter", "w")]
    async with Node():
        assert await back[0].incr(3) == 3


@pytest.mark.parametrize(
    ("timeout", "error"),
    [("2", TypeError), (-1, ValueError), (0, ValueError), (float("nan"), ValueError),
     (float("inf"), ValueError), (True, TypeError)],
)  # fmt: skip
async def test_ask_timeout_is_checked_where_it_is_passed(
    timeout: object, error: type[Exception]
) -> None:
    async with Node() as node:
        c = node.ref(Counter, "timeouts")
        with pytest.raises(error, match=r"^timeout must be a positive number of seconds"):
            c.incr.ask(1, timeout=timeout)  # type: ignore[arg-type]  # fails before awaiting
        assert await c.peek() == 0  # nothing was sent
        assert await c.incr.ask(1, timeout=2) == 1  # an int is seconds too
        assert await c.incr.ask(1, timeout=None) == 2  # the node's default


async def test_ref_arguments_are_checked() -> None:
    async with Node() as node:
        with pytest.raises(TypeError, match=r"^an actor key is a str, not 3 \(an int\)$"):
            node.ref(Counter, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^an actor type is an @actor class or its name, not"):
            node.ref(3, "k")  # type: ignore[arg-type]
