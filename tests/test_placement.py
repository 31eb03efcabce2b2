"""Placement directors (sans-io) and the strategies end to end on an in-process cluster."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from actors import Node, UnknownActorType, actor
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from runtime.placement import DIRECTORS, HashDirector, RandomDirector
from tests.cluster import until

pytestmark = pytest.mark.timeout(60)


@actor(name="PlacedLocal", placement="local")
class PlacedLocal:
    def __init__(self) -> None:
        self.calls = 0

    def hit(self) -> int:
        self.calls += 1
        return self.calls


@actor(name="PlacedRandom", placement="random")
class PlacedRandom:
    def __init__(self) -> None:
        self.calls = 0

    def hit(self) -> int:
        self.calls += 1
        return self.calls


@actor(name="GpuWorker", resources={"gpu": 1})
class GpuWorker:
    def hit(self) -> str:
        return self.key


def test_directors_choose_as_their_strategy_says() -> None:
    rng = random.Random(5)
    assert HashDirector().choose("me", ["a", "b", "me"], rng) == "me"
    picks = {RandomDirector().choose("me", ["a", "b", "me"], rng) for _ in range(200)}
    assert picks == {"a", "b", "me"}
    assert RandomDirector().choose("me", [], rng) == "me"
    assert set(DIRECTORS) == {"hash", "local", "random", "data"}


@pytest.fixture
async def trio() -> AsyncIterator[list[Node]]:
    net = MemoryNetwork()
    nodes: list[Node] = []
    try:
        for i in range(3):
            node = Node(
                listen=f"mem://place-{i}",
                seeds=[nodes[0].address] if nodes else [],
                transport=MemoryTransport(net),
                default_timeout=5,
                resources={"gpu": 0},
            )
            await node.start()
            nodes.append(node)
        await until(lambda: all(len(n.members) == 3 for n in nodes), 10)
        yield nodes
    finally:
        for node in reversed(nodes):
            await node.stop()


async def test_local_placement_activates_on_the_first_callers_node_and_only_there(
    trio: list[Node],
) -> None:
    keys = [f"loc-{i}" for i in range(30)]
    for i, key in enumerate(keys):  # each key's first call from a different member
        caller = trio[i % 3]
        assert await caller.ref(PlacedLocal, key).hit() == 1
    for i, key in enumerate(keys):
        assert await trio[0].locate(trio[0].ref(PlacedLocal, key)) == trio[i % 3].address
    # calls from every member, concurrently, reach that one activation
    counts = await asyncio.gather(*(n.ref(PlacedLocal, k).hit() for k in keys for n in trio))
    assert sorted(counts) == sorted([2, 3, 4] * len(keys))
    assert sum(n.activation_count for n in trio) == len(keys)


async def test_random_placement_spreads_keys_and_keeps_one_activation_each(
    trio: list[Node],
) -> None:
    keys = [f"rnd-{i}" for i in range(60)]
    first = await asyncio.gather(
        *(trio[i % 3].ref(PlacedRandom, k).hit() for i, k in enumerate(keys))
    )
    assert first == [1] * len(keys)
    hosts = await asyncio.gather(*(trio[1].locate(trio[1].ref(PlacedRandom, k)) for k in keys))
    assert set(hosts) == {n.address for n in trio}  # 60 keys on 3 members: all are used
    counts = await asyncio.gather(*(n.ref(PlacedRandom, k).hit() for k in keys for n in trio))
    assert sorted(counts) == sorted([2, 3, 4] * len(keys))
    assert sum(n.activation_count for n in trio) == len(keys)


async def test_epoch_of_the_live_activation_from_any_member(trio: list[Node]) -> None:
    ref = trio[0].ref(PlacedLocal, "fenced")
    assert await trio[0].epoch(ref) is None  # not active anywhere
    await trio[2].ref(PlacedLocal, "fenced").hit()
    epochs = [await n.epoch(n.ref(PlacedLocal, "fenced")) for n in trio]
    assert epochs[0] == epochs[1] == epochs[2] and isinstance(epochs[0], int)
    await trio[2].migrate(ref, to=trio[1].address)
    moved = await trio[0].epoch(ref)
    assert isinstance(moved, int) and moved > epochs[0]  # a new activation, a newer epoch


async def test_a_type_no_member_has_resources_for_says_so(trio: list[Node]) -> None:
    # every member serves GpuWorker, none offers a GPU
    for node in trio:
        with pytest.raises(UnknownActorType) as caught:
            await node.ref(GpuWorker, "g").hit()
        assert (
            str(caught.value) == "no member offers resources {'gpu': 1} for actor type 'GpuWorker'"
        )
    with pytest.raises(UnknownActorType, match=r"^no member serves actor type 'Nobody'$"):
        await trio[0].ref("Nobody", "g").hit()
