"""``placement="data"`` with real node processes: actors move toward the data they read and
the actors they call, a bounded number of times, never where they cannot run, losing nothing."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from actors import Node
from actors.data import DataRef
from runtime.affinity import BUDGET
from tests.cluster import NodeProcess, converged_client, ring_owner, until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

PERIOD = 0.2  # rebalancing period of the node processes: window 1 s, dwell 0.4 s


@contextmanager
def data_cluster(
    resources: Sequence[str | None] = (None, None, None),
) -> Iterator[list[NodeProcess]]:
    """Node processes rebalancing every ``PERIOD`` s (``resources``: one entry per node)."""
    nodes: list[NodeProcess] = []

    def extra(res: str | None) -> list[str]:
        out = ["--rebalance-period", str(PERIOD)]
        return out + (["--resources", res] if res else [])

    try:
        nodes.append(NodeProcess(extra=extra(resources[0])))
        for res in resources[1:]:
            nodes.append(NodeProcess(seeds=[nodes[0].address], extra=extra(res)))
        yield nodes
    finally:
        for n in nodes:
            n.kill()


async def key_on(client: Node, type_name: str, address: str, prefix: str) -> str:
    """A fresh key whose first call activates ``type_name`` on ``address``."""
    for i in range(2000):
        key = f"{prefix}-{i}"
        if await client.ref(type_name, key).where() == address:
            return key
    raise AssertionError(f"no {type_name} key lands on {address}")


async def data_on(client: Node, address: str, name: str, nbytes: int) -> DataRef:
    shelf = await key_on(client, "Shelf", address, f"shelf-{name}")
    ref = await client.ref("Shelf", shelf).keep(name, b"d" * nbytes)
    assert isinstance(ref, DataRef) and ref.node == address
    return ref


async def test_a_reader_moves_to_its_data_within_bounded_reads() -> None:
    with data_cluster() as procs:
        async with converged_client(procs, 3) as client:
            a, b = procs[0].address, procs[1].address
            blob = await data_on(client, b, "blob", 200_000)
            reader = client.ref("Follower", await key_on(client, "Follower", a, "reader"))
            where: list[str] = []
            for _ in range(400):
                where.append(await reader.read(blob))
                if where[-1] == b and len(where) >= 20 and where[-20:] == [b] * 20:
                    break
                await asyncio.sleep(0.005)
            moved_at = where.index(b)
            print(f"moved to the data after {moved_at} reads; {len(where)} reads in all")
            assert moved_at <= 200, f"still away from its data after {moved_at} reads"
            assert set(where[moved_at:]) == {b}, "it moved away from its data again"
            # the state came along: every read counted once
            assert await reader.counts() == [len(where), 0]


async def test_chatty_pairs_end_up_together_without_ping_pong() -> None:
    with data_cluster() as procs:
        async with converged_client(procs, 3) as client:
            pairs = [(f"pa{i}", f"pb{i}") for i in range(30)]
            names = [k for p in pairs for k in p]

            async def where() -> dict[str, str]:
                found = await asyncio.gather(*(client.ref("Follower", k).where() for k in names))
                return dict(zip(names, found, strict=True))

            start = await where()
            apart = [p for p in pairs if start[p[0]] != start[p[1]]]
            print(f"{len(apart)} of {len(pairs)} pairs start apart")
            assert len(apart) >= 10, "hashing put too few pairs apart to prove anything"
            stop = asyncio.Event()
            chats = collections.Counter[str]()

            async def chat(x: str, y: str) -> None:
                while not stop.is_set():
                    await client.ref("Follower", x).chat(y, 10)
                    await client.ref("Follower", y).chat(x, 10)
                    chats[x] += 10
                    chats[y] += 10
                    await asyncio.sleep(0.01)

            tasks = [asyncio.ensure_future(chat(x, y)) for x, y in pairs]
            try:

                async def together() -> bool:
                    now = await where()
                    return all(now[x] == now[y] for x, y in pairs)

                took = await until(together, 60, step=0.5)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
            end = await where()
            moved = sum(start[k] != end[k] for k in names)
            per_node = collections.Counter(end.values())
            print(f"together after {took:.1f} s, {moved} actors moved, per node {per_node}")
            # one move per pair that started apart, none back: no ping-pong
            assert moved == len(apart)
            mean = len(names) / len(procs)
            assert max(per_node.values()) <= 1.5 * mean, per_node
            # every ping counted once where the actor is now
            for k in names:
                assert (await client.ref("Follower", k).counts())[1] == chats[k]


async def test_an_actor_that_only_answers_moves_to_the_actor_that_calls_it() -> None:
    """Calls count both ways: a ``placement="data"`` actor that makes no calls of its own
    moves to the node of the (pinned) actor that keeps calling it."""
    with data_cluster() as procs:
        async with converged_client(procs, 3) as client:
            a, b = procs[0].address, procs[1].address
            members = [p.address for p in procs]
            # keys picked on the ring, activating nothing else: the balance rule, which
            # weighs activation counts, must not be what keeps the two apart
            caller_key = next(
                k
                for k in (f"c-{i}" for i in range(999))
                if ring_owner(members, "PinnedFollower", k) == a
            )
            callee_key = next(
                k for k in (f"e-{i}" for i in range(999)) if ring_owner(members, "Follower", k) == b
            )
            caller = client.ref("PinnedFollower", caller_key)
            callee = client.ref("Follower", callee_key)
            pings = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert await caller.chat(callee_key, 20) == a  # the pinned caller stays
                pings += 20
                if await callee.where() == a:
                    break
            print(f"the callee moved to its caller after {pings} calls")
            assert await callee.where() == a, f"still apart after {pings} calls"
            assert (await callee.counts())[1] == pings  # its state came along, nothing lost


async def test_an_actor_alternating_between_two_data_sets_moves_a_bounded_number_of_times() -> None:
    with data_cluster() as procs:
        async with converged_client(procs, 3) as client:
            a, b, c = (p.address for p in procs)
            x = await data_on(client, b, "x", 200_000)
            y = await data_on(client, c, "y", 200_000)
            reader = client.ref("Follower", await key_on(client, "Follower", a, "alt"))
            where: list[str] = []
            for phase in range(8):  # 1.2 s on each data set in turn: 6 windows of the node
                ref = (x, y)[phase % 2]
                end = time.monotonic() + 1.2
                while time.monotonic() < end:
                    where.append(await reader.read(ref))
                    await asyncio.sleep(0.005)
            moves = sum(1 for i in range(1, len(where)) if where[i] != where[i - 1])
            print(f"{moves} moves over {len(where)} reads in 8 phases")
            assert 1 <= moves <= BUDGET
            assert await reader.counts() == [len(where), 0]


async def test_a_move_under_ten_thousand_concurrent_calls_loses_and_repeats_nothing() -> None:
    with data_cluster() as procs:
        async with converged_client(procs, 3) as client:
            a, b = procs[0].address, procs[1].address
            blob = await data_on(client, b, "blob", 20_000)
            key = await key_on(client, "Follower", a, "storm")
            reader = client.ref("Follower", key)
            results: list[Any] = await asyncio.wait_for(
                asyncio.gather(
                    *(reader.read.ask(blob, timeout=60) for _ in range(10_000)),
                    return_exceptions=True,
                ),
                120,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert not errors, f"{len(errors)} calls failed, first: {errors[0]!r}"
            hosts = collections.Counter(results)
            print(f"answered from {dict(hosts)}")
            assert hosts[b] > 0, "it never moved to its data during the storm"
            assert hosts[a] > 0, "it moved before the storm: the test proves nothing"
            # each of the 10,000 acknowledged reads ran exactly once, before or after the move
            assert await reader.counts() == [10_000, 0]


async def test_a_move_never_lands_where_the_type_cannot_run() -> None:
    # a and b offer a GPU, c does not: the data on c cannot draw the actor there
    with data_cluster(["gpu=1", "gpu=1", "gpu=0"]) as procs:
        async with converged_client(procs, 3) as client:
            a, b, c = (p.address for p in procs)
            blob = await data_on(client, c, "blob", 200_000)
            reader = client.ref("GpuFollower", await key_on(client, "GpuFollower", a, "gpu"))
            where = []
            deadline = time.monotonic() + 3  # 15 rebalancing periods
            while time.monotonic() < deadline:
                where.append(await reader.read(blob))
                await asyncio.sleep(0.005)
            assert set(where) == {a}, collections.Counter(where)
            # and where it may run, it does go: data on b draws it there
            near = await data_on(client, b, "near", 200_000)
            await until(lambda: _reads_on(reader, near, b), 10)


async def _reads_on(reader: Any, ref: DataRef, address: str) -> bool:
    return bool(await reader.read(ref) == address)
