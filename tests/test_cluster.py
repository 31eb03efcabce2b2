"""The router against real node processes: single activation, failures, leave, rejoin.

Every node here is a real ``shoal node`` process on loopback, killed for real (SIGKILL,
SIGSTOP); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from actors import Node
from tests.cluster import (
    NodeProcess,
    ProbeLoad,
    cluster,
    converged_client,
    info_keys,
    ring_owner,
    until,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


async def _hosts(client: Node, type_name: str, keys: list[str]) -> dict[str, str | None]:
    """Where each (active) actor runs, as the cluster answers ``locate``."""
    where = await asyncio.gather(*(client.locate(client.ref(type_name, k)) for k in keys))
    return dict(zip(keys, where, strict=True))


async def test_single_activation_under_concurrent_first_calls_from_every_node() -> None:
    with cluster(5) as procs:
        async with converged_client(procs, 5) as client:
            addresses = [p.address for p in procs]
            infos = await info_keys(client, addresses)
            keys = [f"id-{i}" for i in range(10_000)]
            # every node's view must have converged before the storm
            for key in infos.values():

                async def sees_all(key: str = key) -> bool:
                    view = await client.ref("NodeInfo", key).view()
                    return sorted(view) == sorted(addresses)

                await until(sees_all, 15)
            counts = await asyncio.gather(
                *(
                    client.ref("NodeInfo", k).hit_all.ask("Probe", keys, k, timeout=120)
                    for k in infos.values()
                )
            )
            assert counts == [len(keys)] * 5
            per_node = await asyncio.gather(
                *(client.ref("NodeInfo", k).activations("Probe") for k in infos.values())
            )
            assert sum(per_node) == len(keys), per_node
            sample = await asyncio.gather(*(client.ref("Probe", k).ran() for k in keys[:200]))
            assert all(len(calls) == 5 for calls in sample)


async def test_sigkill_one_of_five_under_load_recovers_and_never_runs_twice() -> None:
    with cluster(5) as procs:
        async with converged_client(procs, 5) as client:
            victim = procs[2]
            keys = [f"load-{i}" for i in range(60)]
            for k in keys:  # activate each on its owner (a call id of None is not counted)
                await client.ref("Probe", k).touch(None)
            owners = await _hosts(client, "Probe", keys)
            on_victim = [k for k in keys if owners[k] == victim.address]
            assert on_victim
            load = ProbeLoad(client, keys, timeout=2.0, backoff=0.05)
            await load.advance(3, timeout=15)  # the load runs on every key before the kill
            victim.kill()

            async def recovered() -> bool:
                results = await asyncio.gather(
                    *(client.ref("Probe", k).touch.ask(None, timeout=1.0) for k in on_victim),
                    return_exceptions=True,
                )
                return all(not isinstance(r, BaseException) for r in results)

            took = await until(recovered, 15, step=0.1)
            await load.advance(2, timeout=15)  # and goes on everywhere after the recovery
            await load.stop(10)
            print(f"calls to the killed node's actors succeed again {took:.2f} s after SIGKILL")
            assert took < 5.0 + 1.0
            # never run twice: no call id twice in any actor's record
            runs = await asyncio.gather(*(client.ref("Probe", k).ran() for k in keys))
            for key, ran in zip(keys, runs, strict=True):
                ids = [c for c in ran if c is not None]
                assert len(ids) == len(set(ids)), key
                ok_ids = load.acked(key)
                if owners[key] != victim.address:
                    # survivors' actors kept their state: every acknowledged call is there
                    assert ok_ids <= set(ids), key
            failures = sum(1 for o in load.outcomes.values() for kind, _ in o if kind != "ok")
            print(f"{failures} calls failed with a typed error around the kill")


async def test_graceful_leave_hands_actors_over_with_state() -> None:
    with cluster(3) as procs:
        async with converged_client(procs, 3) as client:
            leaver = procs[1]
            keys = [f"leave-{i}" for i in range(40)]
            for k in keys:
                await client.ref("Counter", k).incr(7)
            hosts = await _hosts(client, "Counter", keys)
            moved = [k for k in keys if hosts[k] == leaver.address]
            assert moved
            assert await leaver.aterminate() == 0

            async def left() -> bool:
                return leaver.address not in client.members

            await until(left, 10)
            counts = await asyncio.gather(*(client.ref("Counter", k).peek() for k in keys))
            assert counts == [7] * len(keys)
            after = await _hosts(client, "Counter", moved)
            assert all(h is not None and h != leaver.address for h in after.values()), after


async def test_join_keeps_activations_in_place_and_redirects_once() -> None:
    with cluster(2) as procs:
        async with converged_client(procs, 2) as client:
            newcomer: NodeProcess | None = None
            try:
                keys = [f"stay-{i}" for i in range(60)]
                for k in keys:
                    await client.ref("Counter", k).incr(3)
                before = await _hosts(client, "Counter", keys)
                newcomer = await NodeProcess.astart(seeds=[procs[0].address])

                async def three() -> bool:
                    return len(client.members) == 3

                await until(three, 15)
                members = client.members
                moved = [k for k in keys if ring_owner(members, "Counter", k) == newcomer.address]
                assert moved
                # A Meter hosted by the newcomer counts the asks that reach it.
                meter = next(
                    f"meter-{i}"
                    for i in range(1000)
                    if ring_owner(members, "Meter", f"meter-{i}") == newcomer.address
                )
                asks_seen = client.ref("Meter", meter).received
                first = (await asks_seen())[1]
                assert await client.locate(client.ref("Meter", meter)) == newcomer.address
                # state is where it was: the new owner redirects to the old host
                counts = await asyncio.gather(*(client.ref("Counter", k).incr(1) for k in keys))
                assert counts == [4] * len(keys)
                assert await _hosts(client, "Counter", keys) == before
                second = (await asks_seen())[1]
                assert second - first - 1 == len(moved)  # each moved key: one redirect
                # ... and once only: the next round goes straight to the old hosts
                counts = await asyncio.gather(*(client.ref("Counter", k).incr(1) for k in keys))
                assert counts == [5] * len(keys)
                assert (await asks_seen())[1] - second == 1  # only this Meter ask
            finally:
                if newcomer is not None:
                    newcomer.kill()


async def test_sigstop_then_resume_rejoins_without_duplicates() -> None:
    with cluster(4) as procs:
        async with converged_client(procs, 4) as client:
            sleeper = procs[3]
            keys = [f"nap-{i}" for i in range(40)]
            for k in keys:
                await client.ref("Probe", k).touch("before")
            sleeper.signal(signal.SIGSTOP)
            try:

                async def removed() -> bool:
                    return sleeper.address not in client.members

                await until(removed, 10)
                for k in keys:  # reactivated elsewhere
                    await client.ref("Probe", k).touch("during")
            finally:
                sleeper.signal(signal.SIGCONT)

            async def back() -> bool:
                return sleeper.address in client.members

            await until(back, 15)
            infos = await info_keys(client, [p.address for p in procs])
            per_node = await asyncio.gather(
                *(client.ref("NodeInfo", k).active_keys("Probe") for k in infos.values())
            )
            seen: list[str] = [k for node_keys in per_node for k in node_keys]
            assert len(seen) == len(set(seen)), "an actor is active twice"
            for k in keys:
                await client.ref("Probe", k).touch("after")


async def test_graceful_leave_under_load_runs_every_acknowledged_call_once() -> None:
    with cluster(3) as procs:
        async with converged_client(procs, 3) as client:
            leaver = procs[2]
            keys = [f"busy-leave-{i}" for i in range(30)]
            for k in keys:
                await client.ref("Probe", k).touch("start")
            hosts = await _hosts(client, "Probe", keys)
            keys = [k for k in keys if hosts[k] == leaver.address] or keys
            load = ProbeLoad(client, keys, timeout=3.0, backoff=0.02)
            await load.advance(3, timeout=15)  # the load runs before the leave
            assert await leaver.aterminate() == 0

            async def left() -> bool:
                return leaver.address not in client.members

            await until(left, 10)
            await load.advance(3, timeout=15)  # and goes on after it
            await load.stop(15)
            ran = await asyncio.gather(*(client.ref("Probe", k).ran() for k in keys))
            for key, calls in zip(keys, ran, strict=True):
                ids = [c for c in calls if isinstance(c, int)]
                assert calls[0] == "start", key  # the state came along
                assert len(ids) == len(set(ids)), key  # nothing ran twice
                assert load.acked(key) <= set(ids), key  # every acknowledged call is there


async def test_a_join_in_the_name_of_a_node_that_never_answers_leaves_the_view_alone() -> None:
    """Before, one forged SWIM join of a fake member stopped a one-node cluster for good (a
    view of two, one of them never answering, has no quorum): now a joiner is admitted only
    once it answers a ping at its address."""
    import zmq

    from runtime import wire

    node = NodeProcess()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(node.address)
        fake = "tcp://127.0.0.1:1"
        for incarnation in range(3):
            body = ["join", [fake, incarnation, 0, None]]
            env = wire.Envelope(wire.CONTROL, 0, fake, method="swim", body=body)
            sock.send(wire.encode_envelope(env))
        async with Node(seeds=[node.address], default_timeout=5) as client:
            for i in range(20):  # over two seconds: past any suspicion of the fake
                assert await client.ref("Counter", f"k{i}").incr(1) == 1
                await asyncio.sleep(0.1)
            assert list(client.members) == [node.address]
    finally:
        sock.close(linger=0)
        node.kill()
