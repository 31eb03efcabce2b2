"""One activation, always: storms of first calls while the membership changes.

Every node is a real ``shoal node`` process on loopback. Each scenario sends waves of
concurrent first calls from several nodes at once (``NodeInfo.hit_all``: one fan-out per node,
each touching every key once with its own tag) while a member joins, leaves (SIGTERM), dies
(SIGKILL) or freezes (SIGSTOP/SIGCONT), and then checks exact counts: every acknowledged touch
is in its actor's record exactly once (a second activation that took some of them and was then
forgotten shows as a missing one), and no key is active on two nodes.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from actors import ActorError, Node
from tests.cluster import NodeProcess, cluster, converged_client, until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


async def agents(client: Node, addresses: list[str]) -> dict[str, str]:
    """A NodeInfo key that runs on each address (asked, not computed: after a join an actor
    may stay on a node that no longer owns its key)."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(addresses):
        batch = [f"agent-{j}" for j in range(i, i + 16)]
        i += 16
        where = await asyncio.gather(*(client.ref("NodeInfo", k).address() for k in batch))
        for key, address in zip(batch, where, strict=True):
            if address in addresses:
                found.setdefault(address, key)
        assert i < 4096, f"no NodeInfo key runs on {set(addresses) - set(found)}"
    return found


async def _storm(
    client: Node, procs: list[NodeProcess], keys: list[str], wave: str
) -> dict[str, Any]:
    """One fan-out from every node in ``procs`` to every key; returns each fan-out's outcome
    (the count of touches, or the error it raised) by tag."""
    infos = await agents(client, [p.address for p in procs])
    tags = [f"{wave}@{i}" for i in range(len(infos))]
    results = await asyncio.gather(
        *(
            client.ref("NodeInfo", k).hit_all.ask("Probe", keys, tag, timeout=120)
            for k, tag in zip(infos.values(), tags, strict=True)
        ),
        return_exceptions=True,
    )
    return dict(zip(tags, results, strict=True))


async def _check_exact(
    client: Node, procs: list[NodeProcess], keys: list[str], outcomes: dict[str, Any]
) -> None:
    """Every touch of an acknowledged fan-out ran once; no key is active twice."""
    records = await asyncio.gather(*(client.ref("Probe", k).ran() for k in keys))
    lost: dict[str, list[str]] = {}
    twice: dict[str, list[str]] = {}
    for key, calls in zip(keys, records, strict=True):
        tags = [c[0] for c in calls if isinstance(c, list)]
        for tag, result in outcomes.items():
            n = tags.count(tag)
            if result == len(keys) and n != 1:
                (lost if n == 0 else twice).setdefault(tag, []).append(key)
            elif n > 1:
                twice.setdefault(tag, []).append(key)
    assert not lost, {t: (len(ks), ks[:5]) for t, ks in lost.items()}
    assert not twice, {t: (len(ks), ks[:5]) for t, ks in twice.items()}
    infos = await agents(client, [p.address for p in procs])
    per_node = await asyncio.gather(
        *(client.ref("NodeInfo", k).active_keys("Probe") for k in infos.values())
    )
    seen = [k for node_keys in per_node for k in node_keys]
    dup = sorted({k for k in seen if seen.count(k) > 1})
    assert not dup, f"{len(dup)} keys active on two nodes: {dup[:5]}"


async def _members(client: Node, n: int) -> None:
    async def ok() -> bool:
        return len(client.members) == n

    await until(ok, 20)


def _failed(outcomes: dict[str, Any], n_keys: int) -> dict[str, Any]:
    return {t: r for t, r in outcomes.items() if r != n_keys}


class Waves:
    """Waves of first calls, one after the other, each to fresh keys, until stopped."""

    def __init__(self, client: Node, procs: list[NodeProcess], prefix: str, size: int) -> None:
        self.client, self.procs, self.prefix, self.size = client, procs, prefix, size
        self.waves: list[tuple[list[str], dict[str, Any]]] = []
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            n = len(self.waves)
            keys = [f"{self.prefix}{n}-{i}" for i in range(self.size)]
            self.waves.append((keys, {}))
            self.waves[-1][1].update(await _storm(self.client, self.procs, keys, f"w{n}"))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 150)

    async def check(self, procs: list[NodeProcess]) -> None:
        """No fan-out failed; every touch ran once; no key active twice."""
        failed = {t: r for _, o in self.waves for t, r in _failed(o, self.size).items()}
        assert not failed, failed
        keys = [k for ks, _ in self.waves for k in ks]
        outcomes = {t: r for _, o in self.waves for t, r in o.items()}
        for ks, o in self.waves:
            await _check_exact(self.client, procs, ks, o)
        print(f"{len(self.waves)} waves, {len(keys)} keys, {len(outcomes)} fan-outs: exact")


async def test_storm_of_first_calls_while_a_member_joins() -> None:
    with cluster(5) as procs:
        client = await converged_client(procs, 5)
        joiner: NodeProcess | None = None
        try:
            waves = Waves(client, procs, "join", 400)
            joiner = await asyncio.to_thread(NodeProcess, seeds=[procs[0].address])
            await _members(client, 6)
            await asyncio.sleep(1.0)  # the storm goes on while the join settles everywhere
            await waves.stop()
            await waves.check([*procs, joiner])
        finally:
            await client.stop()
            if joiner is not None:
                joiner.kill()
