"""Call chains: what waits on a call, and the deadlocks that fail at once with ``Deadlock``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

import actors
from actors import Deadlock, Node, actor
from runtime.chains import deadlock, flatten, waiting
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import ring_owner, until

pytestmark = pytest.mark.timeout(60)


@actor(name="Cyc")
class Cyc:
    """Holds its turn for a while, then asks another Cyc: cycles of chains that wait."""

    async def hold_then_call(self, other: str, seconds: float) -> Any:
        await asyncio.sleep(seconds)
        return await actors.ref(Cyc, other).quick()

    async def call_back(self, other: str) -> Any:
        return await actors.ref(Cyc, other).quick()

    def quick(self) -> str:
        return self.key


@actor(name="CycReentrant", reentrant=True)
class CycReentrant:
    async def hold_then_call(self, other: str, seconds: float) -> Any:
        await asyncio.sleep(seconds)
        return await actors.ref(CycReentrant, other).quick()

    def quick(self) -> str:
        return self.key


@actor(name="CycHook")
class CycHook:
    """Its on_activate asks a Cyc that calls it back: the message waits for on_activate."""

    async def on_activate(self) -> None:
        await asyncio.sleep(0)  # activating now: messages wait until on_activate ends
        await actors.ref(CycCaller, "back").call(self.key)

    def quick(self) -> str:
        return self.key


@actor(name="CycCaller")
class CycCaller:
    async def call(self, hook: str) -> Any:
        return await actors.ref(CycHook, hook).quick()


# -- the structure (sans-io: stand-ins for activations and turns) --------------------------------


def _act(name: str, key: str, running: int = 1, lock: int = 0, queue: Any = None) -> Any:
    kind = SimpleNamespace(name=name, reentrant=False, stateless=False)
    return SimpleNamespace(
        type=kind, key=key, running=running, lock_chain=lock, queue=queue, awaiting=None
    )


def test_flatten_lists_the_turn_its_callers_and_who_is_queued_behind_it() -> None:
    root = _act("A", "root")
    root_turn = (root, 5, 0.0, None)
    b = _act("B", "b")
    queued_from_wire = SimpleNamespace(reply=object(), waits=["W", "w", 9, -1, "V", "v", 9, 0])
    told = SimpleNamespace(reply=None, waits=None)  # a tell: nobody waits on it
    b.queue = [told, queued_from_wire]
    b_turn = (b, 5, 0.0, root_turn)  # root's turn asked b, in chain 5
    assert flatten(None) == []
    assert flatten(b_turn) == [
        "B", "b", 5, -1,  # the asking turn: waits on the target
        "A", "root", 5, 0,  # its caller waits on it
        "W", "w", 9, 0,  # the asker queued behind it (its list came from the wire)
        "V", "v", 9, 2,  # and who waits on that one
    ]  # fmt: skip


def test_flatten_keeps_at_most_the_wire_limit() -> None:
    many = SimpleNamespace(reply=object(), waits=["W", "w", 1, -1] * 1)
    head = _act("H", "h", queue=[many] * 100)
    assert len(flatten((head, 1, 0.0, None))) == 4 * 32


def test_deadlock_rule_1_the_target_turn_is_among_the_waiters() -> None:
    a = _act("A", "a", lock=7)
    # a message from B (chain 8) that A's turn of chain 7 waits for, through C
    waits = ["B", "b", 8, -1, "C", "c", 8, 0, "A", "a", 7, 1]
    found = deadlock(a, waits, 8, {})
    assert isinstance(found, Deadlock)
    assert str(found) == (
        "call-chain deadlock: A/a -> C/c -> B/b -> A/a (each waits for the next; A/a is busy "
        "in a turn that waits for this call)"
    )
    # a different turn of A (another chain): not the one that waits
    assert deadlock(_act("A", "a", lock=6), waits, 8, {}) is None
    assert deadlock(_act("A", "a", running=0), waits, 8, {}) is None
    assert deadlock(a, None, 8, {}) is None


def test_deadlock_rule_2_the_target_turn_waits_on_a_waiter() -> None:
    a = _act("A", "a", lock=7)
    waiting(a, "B", "b", 1)
    waits = ["B", "b", 8, -1]  # B (chain 8) asks A, which is asking B (chain 7): crossed
    known: Any = {"B": SimpleNamespace(reentrant=False, stateless=False)}
    found = deadlock(a, waits, 8, known)
    assert isinstance(found, Deadlock)
    assert str(found) == (
        "call-chain deadlock: A/a -> B/b -> A/a (each waits for the next; A/a is busy in a "
        "turn that waits for B/b)"
    )
    assert deadlock(a, waits, 6, known) is None  # the other side fails it (larger chain id)
    assert deadlock(a, waits, 8, {}) is None  # B's type unknown here: no conclusion
    reentrant: Any = {"B": SimpleNamespace(reentrant=True, stateless=False)}
    assert deadlock(a, waits, 8, reentrant) is None  # B would let A's ask in
    waiting(a, "B", "b", -1)
    assert a.awaiting == {} and deadlock(a, waits, 8, known) is None


def test_a_forged_key_is_escaped_in_the_message() -> None:
    a = _act("A", "a\nx", lock=7)
    found = deadlock(a, ["B", "b", 8, -1, "A", "a\nx", 7, 0], 8, {})
    assert found is not None and "\n" not in str(found) and "A/'a\\nx'" in str(found)


# -- embedded ------------------------------------------------------------------------------------


async def test_a_three_actor_cycle_of_three_chains_fails_naming_all_three() -> None:
    async with Node() as node:
        a, b, c = (node.ref(Cyc, k) for k in ("a", "b", "c"))
        t0 = time.monotonic()
        results = await asyncio.gather(
            a.hold_then_call.ask("b", 0.01, timeout=5.0),  # a asks b first: queued
            b.hold_then_call.ask("c", 0.02, timeout=5.0),  # then b asks c: queued
            c.hold_then_call.ask("a", 0.03, timeout=5.0),  # then c asks a: the cycle closes
            return_exceptions=True,
        )
        assert time.monotonic() - t0 < 2.0
        assert results[:2] == ["b", "c"]  # c's call failed: c, then b, then a could go on
        assert isinstance(results[2], Deadlock)
        assert str(results[2]) == (
            "call-chain deadlock: Cyc/a -> Cyc/b -> Cyc/c -> Cyc/a (each waits for the next; "
            "Cyc/a is busy in a turn that waits for this call)"
        )


async def test_one_chain_through_the_same_actors_runs() -> None:
    async with Node() as node:
        # a -> b -> a in one chain: call-chain reentrancy lets it in, nothing is reported
        assert await node.ref(Cyc, "one").call_back("one") == "one"


async def test_a_reentrant_actor_never_deadlocks() -> None:
    async with Node() as node:
        x, y = node.ref(CycReentrant, "x"), node.ref(CycReentrant, "y")
        assert await asyncio.gather(
            x.hold_then_call.ask("y", 0.02, timeout=5.0),
            y.hold_then_call.ask("x", 0.02, timeout=5.0),
        ) == ["y", "x"]


async def test_on_activate_that_is_called_back_fails_with_the_chain() -> None:
    async with Node() as node:
        with pytest.raises(Deadlock) as caught:
            await node.ref(CycHook, "h").quick.ask(timeout=5.0)
        assert str(caught.value) == (
            "call-chain deadlock: CycHook/h -> CycCaller/back -> CycHook/h (each waits for "
            "the next; CycHook/h is busy in a turn that waits for this call)"
        )


# -- across nodes (the in-memory network: the waiters travel in the envelope) --------------------


@pytest.fixture
async def pair() -> AsyncIterator[list[Node]]:
    net = MemoryNetwork()
    nodes = [
        Node(
            listen=f"mem://chains-{n}",
            seeds=[] if n == "a" else ["mem://chains-a"],
            serve=[Cyc],
            transport=MemoryTransport(net),
            default_timeout=5,
        )
        for n in "ab"
    ]
    async with nodes[0], nodes[1]:
        await until(lambda: all(len(n.members) == 2 for n in nodes), 10)
        yield nodes


def _one_key_per_node(nodes: list[Node], prefix: str) -> list[str]:
    members = [n.address for n in nodes]
    found: dict[str, str] = {}
    for i in range(1000):
        found.setdefault(ring_owner(members, "Cyc", f"{prefix}{i}"), f"{prefix}{i}")
        if len(found) == len(members):
            return [found[m] for m in members]
    raise AssertionError("no key for some node")


@pytest.mark.parametrize("second_after", [0.0, 0.1])
async def test_a_cycle_across_nodes_fails_at_once(pair: list[Node], second_after: float) -> None:
    """Crossing asks (both sent before either arrives) or one after the other: one fails
    with Deadlock, the other chain completes."""
    x, y = _one_key_per_node(pair, f"cross{second_after}-")
    t0 = time.monotonic()
    results = await asyncio.gather(
        pair[0].ref(Cyc, x).hold_then_call.ask(y, 0.05, timeout=5.0),
        pair[1].ref(Cyc, y).hold_then_call.ask(x, 0.05 + second_after, timeout=5.0),
        return_exceptions=True,
    )
    assert time.monotonic() - t0 < 2.0
    [failed] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(failed, Deadlock), results
    assert f"Cyc/{x}" in str(failed) and f"Cyc/{y}" in str(failed)
    assert [r for r in results if isinstance(r, str)] in ([x], [y])
    if second_after:  # y asked after x's ask was queued at y: x's news came with it
        assert results == [y, failed] and str(failed).startswith(
            f"call-chain deadlock: Cyc/{x} -> Cyc/{y} -> Cyc/{x} (each waits for the next; "
            f"Cyc/{x} is busy in a turn that waits for this call)"
        )
    assert await pair[0].ref(Cyc, x).quick() == x  # both actors are free again
    assert await pair[1].ref(Cyc, y).quick() == y
